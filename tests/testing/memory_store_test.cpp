// The in-memory store keeps store.h's contract: revisions, compares, ranges, watches and
// compaction, with every callback on the calling thread.

#include "testing/memory_store.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace skiff::testing {
namespace {

using store::Compare;
using store::Event;
using store::Op;
using store::Revision;
using store::Txn;

Revision put(MemoryStore& store, std::string key, std::string value) {
  Txn txn;
  txn.onSuccess.push_back(Op::put(std::move(key), std::move(value)));
  auto result = store.commit(std::move(txn));
  EXPECT_TRUE(result.has_value());
  return result ? result->revision : -1;
}

// Collects the batches a watch delivers.
struct Collector {
  store::WatchCallback callback() {
    return [this](const std::vector<Event>& batch) {
      ++batches;
      events.insert(events.end(), batch.begin(), batch.end());
    };
  }
  std::vector<Revision> revisions() const {
    std::vector<Revision> out;
    for (const Event& event : events) out.push_back(event.kv.modRevision);
    return out;
  }
  int batches = 0;
  std::vector<Event> events;
};

TEST(MemoryStoreTest, PutsAdvanceTheRevisionAndKeepCreateRevisionAndVersion) {
  MemoryStore store;
  EXPECT_EQ(store.currentRevision(), 0);
  EXPECT_EQ(put(store, "a", "1"), 1);
  EXPECT_EQ(put(store, "b", "1"), 2);
  EXPECT_EQ(put(store, "a", "2"), 3);
  auto a = store.get("a");
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->value, "2");
  EXPECT_EQ((*a)->createRevision, 1);
  EXPECT_EQ((*a)->modRevision, 3);
  EXPECT_EQ((*a)->version, 2);
  EXPECT_FALSE(store.get("c")->has_value());

  // Deleting a missing key changes nothing: the revision stays.
  Txn missing;
  missing.onSuccess.push_back(Op::del("c"));
  auto unchanged = store.commit(std::move(missing));
  ASSERT_TRUE(unchanged.has_value());
  EXPECT_TRUE(unchanged->succeeded);
  EXPECT_EQ(unchanged->revision, 3);

  // Several operations share one revision; a key written again is created anew.
  Txn both;
  both.onSuccess.push_back(Op::del("a"));
  both.onSuccess.push_back(Op::put("a", "3"));
  both.onSuccess.push_back(Op::put("b", "2"));
  auto applied = store.commit(std::move(both));
  ASSERT_TRUE(applied.has_value());
  EXPECT_EQ(applied->revision, 4);
  EXPECT_EQ(store.get("a").value()->createRevision, 4);
  EXPECT_EQ(store.get("a").value()->version, 1);
  EXPECT_EQ(store.get("b").value()->version, 2);
  EXPECT_EQ(store.currentRevision(), 4);
}

TEST(MemoryStoreTest, ComparesChooseBetweenSuccessAndFailureOperations) {
  MemoryStore store;
  Revision created = put(store, "k", "v");

  Txn holds;
  holds.compares = {Compare::exists("k"), Compare::notExists("other"),
                    Compare::modRevisionIs("k", created), Compare::modRevisionIs("other", 0)};
  holds.onSuccess.push_back(Op::put("k", "w"));
  holds.onFailure.push_back(Op::put("failed", "1"));
  auto first = store.commit(std::move(holds));
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->succeeded);
  EXPECT_EQ(store.get("k").value()->value, "w");
  EXPECT_FALSE(store.get("failed").value().has_value());

  // The same compare on the old revision fails: onFailure applies instead.
  Txn stale;
  stale.compares = {Compare::exists("k"), Compare::modRevisionIs("k", created)};
  stale.onSuccess.push_back(Op::put("k", "x"));
  stale.onFailure.push_back(Op::put("failed", "1"));
  auto second = store.commit(std::move(stale));
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->succeeded);
  EXPECT_EQ(second->revision, first->revision + 1);
  EXPECT_EQ(store.get("k").value()->value, "w");
  EXPECT_TRUE(store.get("failed").value().has_value());

  // A failed compare without failure operations changes nothing.
  Txn taken;
  taken.compares = {Compare::notExists("k")};
  taken.onSuccess.push_back(Op::put("k", "y"));
  auto third = store.commit(std::move(taken));
  ASSERT_TRUE(third.has_value());
  EXPECT_FALSE(third->succeeded);
  EXPECT_EQ(third->revision, second->revision);
  EXPECT_EQ(store.get("k").value()->value, "w");
}

TEST(MemoryStoreTest, EmptyKeysAndPoisonFailCommitsWithoutChanges) {
  MemoryStore store;
  Txn empty;
  empty.onSuccess = {Op::put("a", "1"), Op::put("", "1")};
  auto invalid = store.commit(std::move(empty));
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(store.get("a").value().has_value());
  EXPECT_EQ(store.currentRevision(), 0);

  put(store, "a", "1");
  store.poison(Error(ErrorCode::kIo, "disk full"));
  Txn later;
  later.onSuccess.push_back(Op::put("b", "1"));
  auto failed = store.commit(std::move(later));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), ErrorCode::kIo);
  EXPECT_EQ(store.currentRevision(), 1);
  EXPECT_EQ(store.get("a").value()->value, "1") << "the state stays readable";
}

TEST(MemoryStoreTest, CommitAsyncCompletesOnTheCallingThreadBeforeReturning) {
  MemoryStore store;
  Txn txn;
  txn.onSuccess.push_back(Op::put("k", "v"));
  bool done = false;
  std::thread::id completedOn;
  store.commitAsync(std::move(txn), [&](Result<store::TxnResult> result) {
    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(result->succeeded);
    EXPECT_EQ(result->revision, 1);
    done = true;
    completedOn = std::this_thread::get_id();
  });
  EXPECT_TRUE(done);
  EXPECT_EQ(completedOn, std::this_thread::get_id());
}

TEST(MemoryStoreTest, RangeHonoursBoundsAndLimitAndScanPrefixSeesOnlyThePrefix) {
  MemoryStore store;
  for (const char* key : {"a/1", "a/2", "a/3", "b/1", "ab"}) put(store, key, "v");

  auto all = store.range("a/", store::prefixEnd("a/"));
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].key, "a/1");
  EXPECT_EQ(all->kvs[2].key, "a/3");
  EXPECT_FALSE(all->more);
  EXPECT_EQ(all->revision, 5);

  auto limited = store.range("a/", store::prefixEnd("a/"), 2);
  ASSERT_TRUE(limited.has_value());
  ASSERT_EQ(limited->kvs.size(), 2u);
  EXPECT_TRUE(limited->more);
  auto exact = store.range("a/", store::prefixEnd("a/"), 3);
  ASSERT_TRUE(exact.has_value());
  EXPECT_FALSE(exact->more) << "the limit cut nothing off";

  auto unbounded = store.range("ab", "");
  ASSERT_TRUE(unbounded.has_value());
  ASSERT_EQ(unbounded->kvs.size(), 2u);
  EXPECT_EQ(unbounded->kvs[0].key, "ab");
  EXPECT_EQ(unbounded->kvs[1].key, "b/1");

  std::vector<std::string> scanned;
  auto revision =
      store.scanPrefix("a/", [&](const store::KeyValue& kv) { scanned.push_back(kv.key); });
  ASSERT_TRUE(revision.has_value());
  EXPECT_EQ(*revision, 5);
  EXPECT_EQ(scanned, (std::vector<std::string>{"a/1", "a/2", "a/3"}));
}

TEST(MemoryStoreTest, WatchReplaysHistoryThenDeliversLiveChangesInOrder) {
  MemoryStore store;
  put(store, "k/a", "1");  // 1
  put(store, "x", "1");    // 2
  put(store, "k/b", "1");  // 3
  Txn remove;
  remove.onSuccess.push_back(Op::del("k/a"));
  ASSERT_TRUE(store.commit(std::move(remove)).has_value());  // 4

  Collector collector;
  auto handle = store.watch("k/", 2, collector.callback());
  ASSERT_TRUE(handle.has_value());
  // History from revision 2 on, delivered before `watch` returns.
  EXPECT_EQ(collector.revisions(), (std::vector<Revision>{3, 4}));
  ASSERT_EQ(collector.events.size(), 2u);
  EXPECT_EQ(collector.events[1].kind, Event::Kind::kDelete);
  EXPECT_EQ(collector.events[1].kv.key, "k/a");
  EXPECT_EQ(collector.events[1].kv.createRevision, 0);

  put(store, "k/c", "1");  // 5
  put(store, "y", "1");    // 6: another prefix.
  put(store, "k/b", "2");  // 7
  EXPECT_EQ(collector.revisions(), (std::vector<Revision>{3, 4, 5, 7}));
  EXPECT_EQ(collector.events.back().kv.version, 2);
  EXPECT_EQ(collector.events.back().kv.value, "2");

  // A watch from a revision still to come hears only from that revision on.
  Collector future;
  auto later = store.watch("k/", 9, future.callback());
  ASSERT_TRUE(later.has_value());
  put(store, "k/d", "1");  // 8
  put(store, "k/e", "1");  // 9
  EXPECT_EQ(future.revisions(), (std::vector<Revision>{9}));

  // Once the handle is gone, nothing more arrives.
  handle->reset();
  put(store, "k/f", "1");
  EXPECT_EQ(collector.events.size(), 6u);
}

TEST(MemoryStoreTest, WatchCallbacksMayCommitAndCancelThemselves) {
  MemoryStore store;
  Collector other;
  auto otherHandle = store.watch("", 0, other.callback());
  ASSERT_TRUE(otherHandle.has_value());
  std::unique_ptr<store::WatchHandle> self;
  std::vector<Revision> seen;
  auto handle = store.watch("k", 0, [&](const std::vector<Event>& batch) {
    for (const Event& event : batch) seen.push_back(event.kv.modRevision);
    if (seen.size() == 1) put(store, "k2", "echo");  // Delivered after this batch, in order.
    if (seen.size() == 2) self.reset();
  });
  ASSERT_TRUE(handle.has_value());
  self = std::move(*handle);
  put(store, "k1", "1");
  EXPECT_EQ(seen, (std::vector<Revision>{1, 2}));
  EXPECT_EQ(self, nullptr);
  put(store, "k3", "1");
  EXPECT_EQ(seen.size(), 2u) << "cancelled inside its own callback";
  EXPECT_EQ(other.revisions(), (std::vector<Revision>{1, 2, 3}));
}

TEST(MemoryStoreTest, WatchSeesConcurrentCommitsInRevisionOrderWithoutGaps) {
  MemoryStore store;
  Collector collector;
  auto handle = store.watch("", 0, collector.callback());
  ASSERT_TRUE(handle.has_value());
  constexpr int kThreads = 4;
  constexpr int kCommits = 200;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&store, t] {
      for (int i = 0; i < kCommits; ++i) put(store, "k" + std::to_string(t), std::to_string(i));
    });
  }
  for (std::thread& writer : writers) writer.join();
  std::vector<Revision> expected;
  for (Revision r = 1; r <= kThreads * kCommits; ++r) expected.push_back(r);
  EXPECT_EQ(collector.revisions(), expected);
}

TEST(MemoryStoreTest, CompactionDropsHistoryNotValuesAndFailsOlderWatches) {
  MemoryStore store;
  for (int i = 0; i < 5; ++i) put(store, "k", std::to_string(i));
  EXPECT_EQ(store.compactedRevision(), 0);
  ASSERT_TRUE(store.compact(4).has_value());
  EXPECT_EQ(store.compactedRevision(), 4);
  EXPECT_EQ(store.get("k").value()->value, "4");

  Collector collector;
  auto stale = store.watch("k", 3, collector.callback());
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code(), ErrorCode::kCompacted);
  auto retained = store.watch("k", 4, collector.callback());
  ASSERT_TRUE(retained.has_value());
  EXPECT_EQ(collector.revisions(), (std::vector<Revision>{4, 5}));

  ASSERT_TRUE(store.compact(2).has_value()) << "already compacted: a no-op";
  EXPECT_EQ(store.compactedRevision(), 4);
  ASSERT_TRUE(store.compact(6).has_value()) << "currentRevision() + 1 drops all history";
  EXPECT_EQ(store.compactedRevision(), 6);
  auto future = store.compact(8);
  ASSERT_FALSE(future.has_value());
  EXPECT_EQ(future.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace skiff::testing
