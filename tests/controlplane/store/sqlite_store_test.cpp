#include "controlplane/store/sqlite_store.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace skiff::store {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "skiff-store-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Txn putTxn(std::string key, std::string value) {
  Txn txn;
  txn.onSuccess.push_back(Op::put(std::move(key), std::move(value)));
  return txn;
}

Txn deleteTxn(std::string key) {
  Txn txn;
  txn.onSuccess.push_back(Op::del(std::move(key)));
  return txn;
}

// Collects watch events from the delivery thread and lets the test wait for them.
class Collector {
 public:
  WatchCallback callback() {
    return [this](const std::vector<Event>& events) {
      std::lock_guard lock(mu_);
      events_.insert(events_.end(), events.begin(), events.end());
      cv_.notify_all();
    };
  }
  bool waitFor(size_t count, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= count; });
  }
  std::vector<Event> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> open(SqliteStoreOptions options = {}) {
    auto store = SqliteStore::open(path_, options);
    EXPECT_TRUE(store.has_value()) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }

  Revision put(Store& store, const std::string& key, const std::string& value) {
    auto result = store.commit(putTxn(key, value));
    EXPECT_TRUE(result.has_value()) << result.error().message();
    EXPECT_TRUE(result && result->succeeded);
    return result ? result->revision : -1;
  }

  TempDir dir_;
  std::string path_ = dir_.path() + "/store.db";
};

TEST(PrefixEnd, IncrementsTheLastByte) {
  EXPECT_EQ(prefixEnd("abc"), "abd");
}

TEST(PrefixEnd, DropsTrailing0xffAndCarries) {
  EXPECT_EQ(prefixEnd(std::string("ab\xff\xff", 4)), "ac");
  EXPECT_EQ(prefixEnd(std::string("a\x00", 2)), std::string("a\x01", 2));
}

TEST(PrefixEnd, IsUnboundedForEmptyOrAll0xffPrefix) {
  EXPECT_EQ(prefixEnd(""), "");
  EXPECT_EQ(prefixEnd("\xff\xff"), "");
}

TEST_F(SqliteStoreTest, FreshStoreStartsAtRevisionZero) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->currentRevision(), 0);
  EXPECT_EQ(store->compactedRevision(), 0);
  auto missing = store->get("nothing");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(SqliteStoreTest, PutRecordsCreateModRevisionAndVersion) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(put(*store, "a", "1"), 1);
  EXPECT_EQ(put(*store, "b", "x"), 2);
  EXPECT_EQ(put(*store, "a", "2"), 3);
  auto kv = store->get("a");
  ASSERT_TRUE(kv.has_value() && kv->has_value());
  EXPECT_EQ((*kv)->value, "2");
  EXPECT_EQ((*kv)->createRevision, 1);
  EXPECT_EQ((*kv)->modRevision, 3);
  EXPECT_EQ((*kv)->version, 2);
  EXPECT_EQ(store->currentRevision(), 3);
}

TEST_F(SqliteStoreTest, BinaryKeysAndValuesRoundTrip) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::string key("k\x00\xff", 3);
  std::string value("\x00\x01\x02\xff", 4);
  put(*store, key, value);
  put(*store, "empty", "");
  auto kv = store->get(key);
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value, value);
  auto empty = store->get("empty");
  ASSERT_TRUE(empty && *empty);
  EXPECT_EQ((*empty)->value, "");
}

TEST_F(SqliteStoreTest, TxnWithSeveralOpsAdvancesRevisionByOne) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Txn txn;
  txn.onSuccess = {Op::put("a", "1"), Op::put("b", "2"), Op::put("c", "3")};
  auto result = store->commit(txn);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, 1);
  for (const char* key : {"a", "b", "c"}) {
    auto kv = store->get(key);
    ASSERT_TRUE(kv && *kv);
    EXPECT_EQ((*kv)->modRevision, 1);
  }
}

TEST_F(SqliteStoreTest, DeleteRemovesKeyAndAdvancesRevision) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "a", "1");
  auto result = store->commit(deleteTxn("a"));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, 2);
  auto kv = store->get("a");
  ASSERT_TRUE(kv.has_value());
  EXPECT_FALSE(kv->has_value());
  // Recreating starts a new life: createRevision and version restart.
  EXPECT_EQ(put(*store, "a", "again"), 3);
  kv = store->get("a");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->createRevision, 3);
  EXPECT_EQ((*kv)->version, 1);
}

TEST_F(SqliteStoreTest, TxnThatChangesNothingKeepsRevision) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "a", "1");
  auto deleteMissing = store->commit(deleteTxn("missing"));
  ASSERT_TRUE(deleteMissing.has_value());
  EXPECT_TRUE(deleteMissing->succeeded);
  EXPECT_EQ(deleteMissing->revision, 1);
  auto empty = store->commit(Txn{});
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->revision, 1);
  EXPECT_EQ(store->currentRevision(), 1);
}

TEST_F(SqliteStoreTest, OperationWithEmptyKeyIsRejected) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto result = store->commit(putTxn("", "v"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store->currentRevision(), 0);
}

TEST_F(SqliteStoreTest, CompareExistsAndNotExists) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "present", "1");

  Txn txn;
  txn.compares = {Compare::exists("present"), Compare::notExists("absent")};
  txn.onSuccess = {Op::put("ok", "1")};
  auto held = store->commit(txn);
  ASSERT_TRUE(held.has_value());
  EXPECT_TRUE(held->succeeded);

  for (const Compare& c : {Compare::exists("absent"), Compare::notExists("present")}) {
    Txn failing;
    failing.compares = {c};
    failing.onSuccess = {Op::put("never", "1")};
    auto result = store->commit(failing);
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(result->succeeded);
    EXPECT_EQ(result->revision, 2);
  }
  auto never = store->get("never");
  ASSERT_TRUE(never.has_value());
  EXPECT_FALSE(never->has_value());
}

TEST_F(SqliteStoreTest, CompareOnModRevisionRejectsStaleWrite) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Revision first = put(*store, "k", "v1");
  Revision second = put(*store, "k", "v2");

  Txn stale;
  stale.compares = {Compare::modRevisionIs("k", first)};
  stale.onSuccess = {Op::put("k", "stale")};
  auto rejected = store->commit(stale);
  ASSERT_TRUE(rejected.has_value());
  EXPECT_FALSE(rejected->succeeded);

  Txn fresh;
  fresh.compares = {Compare::modRevisionIs("k", second)};
  fresh.onSuccess = {Op::put("k", "v3")};
  auto accepted = store->commit(fresh);
  ASSERT_TRUE(accepted.has_value());
  EXPECT_TRUE(accepted->succeeded);
  EXPECT_EQ(accepted->revision, 3);
  auto kv = store->get("k");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value, "v3");
}

TEST_F(SqliteStoreTest, CompareModRevisionZeroMeansKeyIsAbsent) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Txn create;
  create.compares = {Compare::modRevisionIs("k", 0)};
  create.onSuccess = {Op::put("k", "v")};
  auto first = store->commit(create);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->succeeded);
  auto second = store->commit(create);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->succeeded);
}

TEST_F(SqliteStoreTest, FailedCompareAppliesOnFailureBranch) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Txn txn;
  txn.compares = {Compare::exists("missing")};
  txn.onSuccess = {Op::put("success", "1")};
  txn.onFailure = {Op::put("failure", "1")};
  auto result = store->commit(txn);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->succeeded);
  EXPECT_EQ(result->revision, 1);
  auto failure = store->get("failure");
  ASSERT_TRUE(failure && *failure);
  auto success = store->get("success");
  ASSERT_TRUE(success.has_value());
  EXPECT_FALSE(success->has_value());
}

TEST_F(SqliteStoreTest, CompareSeesEarlierTxnsOfTheSameBatch) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kCount = 200;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result<TxnResult>> results;
  // Each transaction needs the key written by the one before it. Queued back to back, most of
  // them share a batch, so they only hold if the compare sees the uncommitted batch state.
  for (int i = 0; i < kCount; ++i) {
    Txn txn;
    if (i > 0) txn.compares = {Compare::exists("chain/" + std::to_string(i - 1))};
    txn.onSuccess = {Op::put("chain/" + std::to_string(i), "x")};
    store->commitAsync(std::move(txn), [&](Result<TxnResult> result) {
      std::lock_guard lock(mu);
      results.push_back(std::move(result));
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return results.size() == kCount; }));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(results[i].has_value()) << results[i].error().message();
    EXPECT_TRUE(results[i]->succeeded) << i;
    EXPECT_EQ(results[i]->revision, i + 1);
  }
}

TEST_F(SqliteStoreTest, CasOnOneRevisionSucceedsExactlyOnceInABatch) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Revision base = put(*store, "counter", "0");
  constexpr int kCount = 64;
  std::atomic<int> done{0};
  std::atomic<int> succeeded{0};
  for (int i = 0; i < kCount; ++i) {
    Txn txn;
    txn.compares = {Compare::modRevisionIs("counter", base)};
    txn.onSuccess = {Op::put("counter", std::to_string(i))};
    store->commitAsync(std::move(txn), [&](Result<TxnResult> result) {
      if (result && result->succeeded) ++succeeded;
      ++done;
    });
  }
  for (int i = 0; i < 1000 && done < kCount; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(done, kCount);
  EXPECT_EQ(succeeded, 1);
  EXPECT_EQ(store->currentRevision(), base + 1);
}

TEST_F(SqliteStoreTest, ConcurrentCasIncrementsEndAtTheNumberOfSuccesses) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "counter", "0");
  constexpr int kThreads = 16;
  constexpr int kAttempts = 100;
  std::atomic<int> successes{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAttempts; ++i) {
        auto kv = store->get("counter");
        if (!kv || !*kv) {
          ++errors;
          continue;
        }
        Txn txn;
        txn.compares = {Compare::modRevisionIs("counter", (*kv)->modRevision)};
        txn.onSuccess = {Op::put("counter", std::to_string(std::stoi((*kv)->value) + 1))};
        auto result = store->commit(std::move(txn));
        if (!result) {
          ++errors;
        } else if (result->succeeded) {
          ++successes;
        } else {
          ++conflicts;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  auto kv = store->get("counter");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ(std::stoi((*kv)->value), successes.load());
  EXPECT_EQ((*kv)->version, successes.load() + 1);
  EXPECT_EQ(successes + conflicts, kThreads * kAttempts);
}

TEST_F(SqliteStoreTest, ReopenPreservesValuesAndRevisions) {
  {
    auto store = open();
    ASSERT_NE(store, nullptr);
    put(*store, "a", "1");
    put(*store, "a", "2");
    put(*store, "b", "1");
    ASSERT_TRUE(store->commit(deleteTxn("b")).has_value());
    ASSERT_TRUE(store->compact(2).has_value());
  }
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->currentRevision(), 4);
  EXPECT_EQ(store->compactedRevision(), 2);
  auto a = store->get("a");
  ASSERT_TRUE(a && *a);
  EXPECT_EQ((*a)->value, "2");
  EXPECT_EQ((*a)->createRevision, 1);
  EXPECT_EQ((*a)->modRevision, 2);
  EXPECT_EQ((*a)->version, 2);
  auto b = store->get("b");
  ASSERT_TRUE(b.has_value());
  EXPECT_FALSE(b->has_value());
  EXPECT_EQ(put(*store, "c", "1"), 5);
}

TEST_F(SqliteStoreTest, SecondOpenOfTheSameDatabaseIsRefused) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto second = SqliteStore::open(path_);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
}

TEST_F(SqliteStoreTest, OpenOnADirectoryFailsWithContext) {
  auto store = SqliteStore::open(dir_.path());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kIo);
  EXPECT_NE(store.error().message().find("open"), std::string::npos) << store.error().message();
}

TEST_F(SqliteStoreTest, RangeReturnsKeysInOrderWithinBounds) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"d", "b", "a", "c", "e"}) put(*store, key, key);
  auto result = store->range("b", "e");
  ASSERT_TRUE(result.has_value());
  ASSERT_EQ(result->kvs.size(), 3u);
  EXPECT_EQ(result->kvs[0].key, "b");
  EXPECT_EQ(result->kvs[1].key, "c");
  EXPECT_EQ(result->kvs[2].key, "d");
  EXPECT_EQ(result->revision, 5);
  EXPECT_FALSE(result->more);
}

TEST_F(SqliteStoreTest, RangeLimitCutsShortAndSetsMore) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"a", "b", "c"}) put(*store, key, key);
  auto limited = store->range("a", "z", 2);
  ASSERT_TRUE(limited.has_value());
  ASSERT_EQ(limited->kvs.size(), 2u);
  EXPECT_EQ(limited->kvs[1].key, "b");
  EXPECT_TRUE(limited->more);
  auto exact = store->range("a", "z", 3);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->kvs.size(), 3u);
  EXPECT_FALSE(exact->more);
}

TEST_F(SqliteStoreTest, RangeWithEmptyEndIsUnboundedAndOrdersBytesUnsigned) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::string high("\xff", 1);
  std::string low("\x01", 1);
  put(*store, high, "h");
  put(*store, "m", "m");
  put(*store, low, "l");
  auto all = store->range("", "");
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].key, low);
  EXPECT_EQ(all->kvs[1].key, "m");
  EXPECT_EQ(all->kvs[2].key, high);
}

TEST_F(SqliteStoreTest, ScanPrefixVisitsOnlyPrefixedKeysInOrder) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"p/2", "p0", "p/1", "q", "o"}) put(*store, key, key);
  std::vector<std::string> seen;
  auto revision = store->scanPrefix("p/", [&](const KeyValue& kv) { seen.push_back(kv.key); });
  ASSERT_TRUE(revision.has_value());
  EXPECT_EQ(*revision, 5);
  EXPECT_EQ(seen, (std::vector<std::string>{"p/1", "p/2"}));
}

TEST_F(SqliteStoreTest, ScanPrefixIsASnapshotWhileCommitsContinue) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 50; ++i) put(*store, "s/" + std::to_string(100 + i), "v");
  size_t visited = 0;
  auto revision = store->scanPrefix("s/", [&](const KeyValue&) {
    // Commits made during the scan are not part of its snapshot.
    if (visited++ == 0) put(*store, "s/999", "late");
  });
  ASSERT_TRUE(revision.has_value());
  EXPECT_EQ(*revision, 50);
  EXPECT_EQ(visited, 50u);
}

TEST_F(SqliteStoreTest, CommitAsyncCompletesOnAStoreThread) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::promise<std::pair<Result<TxnResult>, std::thread::id>> promise;
  store->commitAsync(putTxn("a", "1"), [&](Result<TxnResult> result) {
    promise.set_value({std::move(result), std::this_thread::get_id()});
  });
  auto [result, thread] = promise.get_future().get();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, 1);
  EXPECT_NE(thread, std::this_thread::get_id());
}

TEST_F(SqliteStoreTest, CommitFromACompletionFailsInsteadOfDeadlocking) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::promise<Result<TxnResult>> promise;
  store->commitAsync(putTxn("a", "1"), [&](Result<TxnResult>) {
    promise.set_value(store->commit(putTxn("b", "1")));
  });
  auto nested = promise.get_future().get();
  ASSERT_FALSE(nested.has_value());
  EXPECT_EQ(nested.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, WatchReplaysHistoryFromRevisionThenDeliversLiveChanges) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "w/a", "1");    // 1
  put(*store, "w/b", "1");    // 2
  put(*store, "other", "1");  // 3
  put(*store, "w/a", "2");    // 4
  Collector collector;
  auto handle = store->watch("w/", 2, collector.callback());
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  ASSERT_TRUE(collector.waitFor(2));
  put(*store, "w/c", "1");  // 5
  put(*store, "other", "2");
  put(*store, "w/b", "2");  // 7
  ASSERT_TRUE(collector.waitFor(4));
  std::this_thread::sleep_for(50ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 4u);
  std::vector<Revision> revisions;
  for (const auto& e : events) {
    EXPECT_EQ(e.kind, Event::Kind::kPut);
    revisions.push_back(e.kv.modRevision);
  }
  EXPECT_EQ(revisions, (std::vector<Revision>{2, 4, 5, 7}));
  EXPECT_EQ(events[1].kv.key, "w/a");
  EXPECT_EQ(events[1].kv.value, "2");
  EXPECT_EQ(events[1].kv.createRevision, 1);
  EXPECT_EQ(events[1].kv.version, 2);
}

TEST_F(SqliteStoreTest, WatchDeliversDeleteEvents) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Collector collector;
  auto handle = store->watch("k", store->currentRevision() + 1, collector.callback());
  ASSERT_TRUE(handle.has_value());
  put(*store, "k1", "v");
  ASSERT_TRUE(store->commit(deleteTxn("k1")).has_value());
  ASSERT_TRUE(store->commit(deleteTxn("k1")).has_value());  // Nothing to delete: no event.
  ASSERT_TRUE(collector.waitFor(2));
  std::this_thread::sleep_for(50ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind, Event::Kind::kDelete);
  EXPECT_EQ(events[1].kv.key, "k1");
  EXPECT_EQ(events[1].kv.value, "");
  EXPECT_EQ(events[1].kv.modRevision, 2);

  // The change log replays the delete identically.
  Collector replay;
  auto replayHandle = store->watch("k", 1, replay.callback());
  ASSERT_TRUE(replayHandle.has_value());
  ASSERT_TRUE(replay.waitFor(2));
  auto replayed = replay.events();
  ASSERT_EQ(replayed.size(), 2u);
  EXPECT_EQ(replayed[1].kind, Event::Kind::kDelete);
  EXPECT_EQ(replayed[1].kv.modRevision, 2);
}

TEST_F(SqliteStoreTest, WatchFromCompactedRevisionFails) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) put(*store, "k", std::to_string(i));
  ASSERT_TRUE(store->compact(4).has_value());
  EXPECT_EQ(store->compactedRevision(), 4);
  Collector collector;
  auto stale = store->watch("k", 3, collector.callback());
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code(), ErrorCode::kCompacted);

  auto retained = store->watch("k", 4, collector.callback());
  ASSERT_TRUE(retained.has_value());
  ASSERT_TRUE(collector.waitFor(2));
  auto events = collector.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.modRevision, 4);
  EXPECT_EQ(events[1].kv.modRevision, 5);
}

TEST_F(SqliteStoreTest, CompactKeepsCurrentValuesAndRejectsFutureRevisions) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  put(*store, "a", "1");
  put(*store, "b", "1");
  ASSERT_TRUE(store->compact(3).has_value());  // Drops all history; currentRevision() + 1.
  EXPECT_TRUE(store->get("a").value().has_value());
  EXPECT_TRUE(store->get("b").value().has_value());
  ASSERT_TRUE(store->compact(1).has_value());  // Already compacted: no-op.
  EXPECT_EQ(store->compactedRevision(), 3);
  auto future = store->compact(10);
  ASSERT_FALSE(future.has_value());
  EXPECT_EQ(future.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, AutomaticCompactionKeepsTheRetainedHistory) {
  SqliteStoreOptions options;
  options.historyRetention = 20;
  auto store = open(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 200; ++i) put(*store, "k", std::to_string(i));
  EXPECT_GT(store->compactedRevision(), 0);
  EXPECT_LE(store->compactedRevision(), store->currentRevision() - 20);
  Collector collector;
  auto handle = store->watch("k", store->currentRevision() - 19, collector.callback());
  ASSERT_TRUE(handle.has_value());
  EXPECT_TRUE(collector.waitFor(20));
}

TEST_F(SqliteStoreTest, WatchRegisteredDuringCommitsSeesEveryRevisionOnce) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kWrites = 3000;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < kWrites && !stop; ++i) {
      store->commitAsync(putTxn("r/" + std::to_string(i % 37), std::to_string(i)),
                         [](Result<TxnResult>) {});
      if (i % 64 == 0) store->commit(putTxn("r/sync", "x"));
    }
  });
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::unique_ptr<WatchHandle>> handles;
  std::vector<Revision> starts;
  for (int w = 0; w < 8; ++w) {
    std::this_thread::sleep_for(5ms);
    Revision from = std::max<Revision>(1, store->currentRevision() - 10 * w);
    collectors.push_back(std::make_unique<Collector>());
    auto handle = store->watch("r/", from, collectors.back()->callback());
    ASSERT_TRUE(handle.has_value());
    handles.push_back(std::move(*handle));
    starts.push_back(from);
  }
  writer.join();
  // A synchronous commit after the asynchronous ones: once it is in, all of them are.
  Revision last = put(*store, "r/final", "x");
  for (size_t w = 0; w < collectors.size(); ++w) {
    size_t expected = static_cast<size_t>(last - starts[w] + 1);
    ASSERT_TRUE(collectors[w]->waitFor(expected)) << w;
    std::this_thread::sleep_for(20ms);
    auto events = collectors[w]->events();
    ASSERT_EQ(events.size(), expected) << w;
    for (size_t i = 0; i < events.size(); ++i) {
      ASSERT_EQ(events[i].kv.modRevision, starts[w] + static_cast<Revision>(i)) << w;
    }
  }
}

TEST_F(SqliteStoreTest, DestroyedWatchHandleWaitsForAndStopsItsCallback) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::atomic<int> calls{0};
  std::atomic<bool> inside{false};
  std::atomic<bool> returned{false};
  auto handle = store->watch("k", 1, [&](const std::vector<Event>&) {
    inside = true;
    std::this_thread::sleep_for(100ms);
    ++calls;
    returned = true;
  });
  ASSERT_TRUE(handle.has_value());
  put(*store, "k", "1");
  while (!inside) std::this_thread::sleep_for(1ms);
  handle->reset();
  EXPECT_TRUE(returned);
  int seen = calls;
  put(*store, "k", "2");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls, seen);
}

TEST_F(SqliteStoreTest, WatchHandleDestroyedInsideItsCallbackStopsFurtherCalls) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::mutex mu;
  std::unique_ptr<WatchHandle> handle;
  std::atomic<int> calls{0};
  {
    std::lock_guard lock(mu);
    auto watch = store->watch("k", 1, [&](const std::vector<Event>&) {
      ++calls;
      std::lock_guard inner(mu);
      handle.reset();  // Cannot wait for itself: returns at once, no more calls follow.
    });
    ASSERT_TRUE(watch.has_value());
    handle = std::move(*watch);
  }
  put(*store, "k", "1");
  for (int i = 0; i < 1000 && calls == 0; ++i) std::this_thread::sleep_for(1ms);
  put(*store, "k", "2");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls, 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(handle, nullptr);
}

TEST_F(SqliteStoreTest, SlowWatcherDoesNotBlockCommits) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<size_t> received{0};
  auto handle = store->watch("k", 1, [&](const std::vector<Event>& events) {
    released.wait();
    received += events.size();
  });
  ASSERT_TRUE(handle.has_value());
  Collector fast;
  auto fastHandle = store->watch("k", 1, fast.callback());
  ASSERT_TRUE(fastHandle.has_value());
  put(*store, "k", "first");  // The slow watcher is now stuck in its callback.
  std::this_thread::sleep_for(20ms);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) put(*store, "k", std::to_string(i));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  release.set_value();
  for (int i = 0; i < 1000 && received < 101; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(received, 101u);
  EXPECT_TRUE(fast.waitFor(101));
}

TEST_F(SqliteStoreTest, WriteErrorPoisonsEveryLaterCommit) {
  // PRAGMA max_page_count (the `maxPageCount` option) caps the database: once a batch needs more
  // pages, SQLite fails it with SQLITE_FULL, as a full disk would.
  SqliteStoreOptions options;
  options.maxPageCount = 64;
  {
    auto store = open(options);
    ASSERT_NE(store, nullptr);
    Revision kept = put(*store, "kept", "v");
    std::string big(16 * 1024, 'x');
    std::optional<Error> error;
    for (int i = 0; i < 100 && !error; ++i) {
      auto result = store->commit(putTxn("big/" + std::to_string(i), big));
      if (!result) error = result.error();
    }
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->code(), ErrorCode::kIo);
    EXPECT_NE(error->message().find("full"), std::string::npos) << error->message();
    Revision before = store->currentRevision();

    auto small = store->commit(putTxn("small", "v"));
    ASSERT_FALSE(small.has_value());
    EXPECT_EQ(small.error().code(), ErrorCode::kIo);
    EXPECT_EQ(small.error().message(), error->message());
    std::promise<Result<TxnResult>> async;
    store->commitAsync(putTxn("small", "v"),
                       [&](Result<TxnResult> result) { async.set_value(std::move(result)); });
    EXPECT_FALSE(async.get_future().get().has_value());
    EXPECT_FALSE(store->compact(1).has_value());
    EXPECT_EQ(store->currentRevision(), before);
    // Reads still serve the last durable state.
    auto kv = store->get("kept");
    ASSERT_TRUE(kv && *kv);
    EXPECT_EQ((*kv)->modRevision, kept);
  }
  // Reopening without the cap clears the poison; the failed batch left nothing behind.
  auto store = open();
  ASSERT_NE(store, nullptr);
  Revision current = store->currentRevision();
  auto all = store->range("", "");
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->kvs.size(), static_cast<size_t>(current));
  EXPECT_EQ(put(*store, "after", "v"), current + 1);
}

// The child commits in a loop from several threads and reports each acknowledged commit.
struct Ack {
  int64_t revision;
  int64_t thread;
  int64_t index;
};

std::string crashKey(int round, int64_t thread, int64_t index) {
  return "crash/" + std::to_string(round) + "/" + std::to_string(thread) + "/" +
         std::to_string(index);
}

[[noreturn]] void runCrashChild(const std::string& path, int round, int ackFd) {
  auto store = SqliteStore::open(path);
  if (!store) _exit(2);
  std::mutex writeMu;
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t i = 0;; ++i) {
        auto result = (*store)->commit(putTxn(crashKey(round, t, i), std::to_string(i)));
        if (!result) _exit(3);
        Ack ack{result->revision, t, i};
        std::lock_guard lock(writeMu);
        if (::write(ackFd, &ack, sizeof ack) != static_cast<ssize_t>(sizeof ack)) _exit(4);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  _exit(0);
}

TEST_F(SqliteStoreTest, KillDuringCommitsLosesNoAcknowledgedTransaction) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      runCrashChild(path_, round, fds[1]);
    }
    ::close(fds[1]);

    std::vector<Ack> acks;
    std::mutex acksMu;
    std::thread reader([&] {
      Ack ack;
      while (::read(fds[0], &ack, sizeof ack) == static_cast<ssize_t>(sizeof ack)) {
        std::lock_guard lock(acksMu);
        acks.push_back(ack);
      }
    });
    // Let it get going, then kill it at a random moment.
    for (int i = 0; i < 5000; ++i) {
      {
        std::lock_guard lock(acksMu);
        if (acks.size() >= 50) break;
      }
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    reader.join();
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    ASSERT_FALSE(acks.empty());

    auto store = open();
    ASSERT_NE(store, nullptr);
    Revision maxAcked = 0;
    for (const Ack& ack : acks) {
      auto kv = store->get(crashKey(round, ack.thread, ack.index));
      ASSERT_TRUE(kv.has_value()) << kv.error().message();
      ASSERT_TRUE(kv->has_value()) << "acknowledged revision " << ack.revision << " is lost";
      EXPECT_EQ((*kv)->value, std::to_string(ack.index));
      EXPECT_EQ((*kv)->modRevision, ack.revision);
      maxAcked = std::max(maxAcked, ack.revision);
    }
    // Every commit wrote one new key, so the survivors must carry exactly revisions 1..current,
    // and the change log must hold the same revisions.
    Revision current = store->currentRevision();
    EXPECT_GE(current, maxAcked);
    std::vector<Revision> revisions;
    auto scanned = store->scanPrefix(
        "crash/", [&](const KeyValue& kv) { revisions.push_back(kv.modRevision); });
    ASSERT_TRUE(scanned.has_value());
    EXPECT_EQ(*scanned, current);
    std::sort(revisions.begin(), revisions.end());
    ASSERT_EQ(revisions.size(), static_cast<size_t>(current));
    for (size_t i = 0; i < revisions.size(); ++i) ASSERT_EQ(revisions[i], Revision(i + 1));
    Collector history;
    auto handle = store->watch("crash/", 1, history.callback());
    ASSERT_TRUE(handle.has_value());
    ASSERT_TRUE(history.waitFor(static_cast<size_t>(current)));
    auto events = history.events();
    ASSERT_EQ(events.size(), static_cast<size_t>(current));
    EXPECT_EQ(events.back().kv.modRevision, current);
  }
}

// Throughput of small transactions from 64 concurrent committers. Not part of the suite; run with
// --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'.
TEST_F(SqliteStoreTest, DISABLED_GroupCommitThroughputWith64Committers) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 64;
  const auto duration = 3s;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> commits{0};
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> threads;
  auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string value(100, 'v');
      for (int64_t i = 0; !stop; ++i) {
        auto result = store->commit(
            putTxn("bench/" + std::to_string(t) + "/" + std::to_string(i % 1000), value));
        if (result) {
          ++commits;
        } else {
          ++errors;
        }
      }
    });
  }
  std::this_thread::sleep_for(duration);
  stop = true;
  for (auto& thread : threads) thread.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%lld commits in %.2fs: %.0f txn/s (%lld errors)\n",
              static_cast<long long>(commits.load()), seconds, commits / seconds,
              static_cast<long long>(errors.load()));
  EXPECT_EQ(errors, 0);
}

}  // namespace
}  // namespace skiff::store
