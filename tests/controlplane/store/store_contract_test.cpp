// The Store contract (store.h), run against every back end: SQLite, and etcd on a private etcd
// member (testing/etcd_process.h) started fresh for each test. Back-end-specific behaviour lives in
// sqlite_store_test.cpp and etcd_store_test.cpp.
//
// Revisions are counted from the store's revision when the test opened it (`rev(n)`): a fresh
// SQLite store starts at 0, a fresh etcd at 1.

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "controlplane/store/etcd_store.h"
#include "controlplane/store/sqlite_store.h"
#include "store_test_support.h"
#include "testing/etcd_process.h"

namespace skiff::store {
namespace {

using namespace std::chrono_literals;

class SqliteBackend {
 public:
  static constexpr const char* kName = "Sqlite";
  std::unique_ptr<Store> open() {
    auto store = SqliteStore::open(dir_.path() + "/store.db");
    EXPECT_TRUE(store.has_value()) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }

 private:
  TempDir dir_;
};

class EtcdBackend {
 public:
  static constexpr const char* kName = "Etcd";
  std::unique_ptr<Store> open() {
    if (etcd_.pid() <= 0 && !etcd_.start()) {
      ADD_FAILURE() << "cannot start etcd: " << etcd_.error();
      return nullptr;
    }
    EtcdStoreOptions options;
    options.endpoints = {etcd_.endpoint()};
    auto store = EtcdStore::open(options);
    EXPECT_TRUE(store.has_value()) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }

 private:
  testing::EtcdProcess etcd_;
};

template <typename Backend>
class StoreContractTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> open() {
    auto store = backend_.open();
    if (store) base_ = store->currentRevision();
    return store;
  }

  // The revision `n` commits after the store was opened.
  Revision rev(Revision n) const { return base_ + n; }

  Revision put(Store& store, const std::string& key, const std::string& value) {
    auto result = store.commit(putTxn(key, value));
    EXPECT_TRUE(result.has_value()) << result.error().message();
    EXPECT_TRUE(result && result->succeeded);
    return result ? result->revision : -1;
  }

  Backend backend_;
  Revision base_ = 0;
};

struct BackendNames {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};

using Backends = ::testing::Types<SqliteBackend, EtcdBackend>;
TYPED_TEST_SUITE(StoreContractTest, Backends, BackendNames);

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

TYPED_TEST(StoreContractTest, PutRecordsCreateModRevisionAndVersion) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(this->put(*store, "a", "1"), this->rev(1));
  EXPECT_EQ(this->put(*store, "b", "x"), this->rev(2));
  EXPECT_EQ(this->put(*store, "a", "2"), this->rev(3));
  auto kv = store->get("a");
  ASSERT_TRUE(kv.has_value() && kv->has_value());
  EXPECT_EQ((*kv)->value, "2");
  EXPECT_EQ((*kv)->createRevision, this->rev(1));
  EXPECT_EQ((*kv)->modRevision, this->rev(3));
  EXPECT_EQ((*kv)->version, 2);
  EXPECT_EQ(store->currentRevision(), this->rev(3));
}

TYPED_TEST(StoreContractTest, BinaryKeysAndValuesRoundTrip) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  std::string key("k\x00\xff", 3);
  std::string value("\x00\x01\x02\xff", 4);
  this->put(*store, key, value);
  this->put(*store, "empty", "");
  auto kv = store->get(key);
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value, value);
  auto empty = store->get("empty");
  ASSERT_TRUE(empty && *empty);
  EXPECT_EQ((*empty)->value, "");
}

TYPED_TEST(StoreContractTest, TxnWithSeveralOpsAdvancesRevisionByOne) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  Txn txn;
  txn.onSuccess = {Op::put("a", "1"), Op::put("b", "2"), Op::put("c", "3")};
  auto result = store->commit(txn);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, this->rev(1));
  for (const char* key : {"a", "b", "c"}) {
    auto kv = store->get(key);
    ASSERT_TRUE(kv && *kv);
    EXPECT_EQ((*kv)->modRevision, this->rev(1));
  }
}

TYPED_TEST(StoreContractTest, DeleteRemovesKeyAndAdvancesRevision) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "a", "1");
  auto result = store->commit(deleteTxn("a"));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, this->rev(2));
  auto kv = store->get("a");
  ASSERT_TRUE(kv.has_value());
  EXPECT_FALSE(kv->has_value());
  // Recreating starts a new life: createRevision and version restart.
  EXPECT_EQ(this->put(*store, "a", "again"), this->rev(3));
  kv = store->get("a");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->createRevision, this->rev(3));
  EXPECT_EQ((*kv)->version, 1);
}

TYPED_TEST(StoreContractTest, TxnThatChangesNothingKeepsRevision) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "a", "1");
  auto deleteMissing = store->commit(deleteTxn("missing"));
  ASSERT_TRUE(deleteMissing.has_value());
  EXPECT_TRUE(deleteMissing->succeeded);
  EXPECT_EQ(deleteMissing->revision, this->rev(1));
  auto empty = store->commit(Txn{});
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->revision, this->rev(1));
  EXPECT_EQ(store->currentRevision(), this->rev(1));
}

TYPED_TEST(StoreContractTest, OperationWithEmptyKeyIsRejected) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  auto result = store->commit(putTxn("", "v"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store->currentRevision(), this->rev(0));
}

TYPED_TEST(StoreContractTest, CompareExistsAndNotExists) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "present", "1");

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
    EXPECT_EQ(result->revision, this->rev(2));
  }
  auto never = store->get("never");
  ASSERT_TRUE(never.has_value());
  EXPECT_FALSE(never->has_value());
}

TYPED_TEST(StoreContractTest, CompareOnModRevisionRejectsStaleWrite) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  Revision first = this->put(*store, "k", "v1");
  Revision second = this->put(*store, "k", "v2");

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
  EXPECT_EQ(accepted->revision, this->rev(3));
  auto kv = store->get("k");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value, "v3");
}

TYPED_TEST(StoreContractTest, CompareModRevisionZeroMeansKeyIsAbsent) {
  auto store = this->open();
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

TYPED_TEST(StoreContractTest, FailedCompareAppliesOnFailureBranch) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  Txn txn;
  txn.compares = {Compare::exists("missing")};
  txn.onSuccess = {Op::put("success", "1")};
  txn.onFailure = {Op::put("failure", "1")};
  auto result = store->commit(txn);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->succeeded);
  EXPECT_EQ(result->revision, this->rev(1));
  auto failure = store->get("failure");
  ASSERT_TRUE(failure && *failure);
  auto success = store->get("success");
  ASSERT_TRUE(success.has_value());
  EXPECT_FALSE(success->has_value());
}

TYPED_TEST(StoreContractTest, CompareSeesEarlierTxnsOfTheSameBatch) {
  auto store = this->open();
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
    EXPECT_EQ(results[i]->revision, this->rev(i + 1));
  }
}

TYPED_TEST(StoreContractTest, CasOnOneRevisionSucceedsExactlyOnceInABatch) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  Revision base = this->put(*store, "counter", "0");
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

TYPED_TEST(StoreContractTest, ConcurrentCasIncrementsEndAtTheNumberOfSuccesses) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "counter", "0");
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

TYPED_TEST(StoreContractTest, RangeReturnsKeysInOrderWithinBounds) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"d", "b", "a", "c", "e"}) this->put(*store, key, key);
  auto result = store->range("b", "e");
  ASSERT_TRUE(result.has_value());
  ASSERT_EQ(result->kvs.size(), 3u);
  EXPECT_EQ(result->kvs[0].key, "b");
  EXPECT_EQ(result->kvs[1].key, "c");
  EXPECT_EQ(result->kvs[2].key, "d");
  EXPECT_EQ(result->revision, this->rev(5));
  EXPECT_FALSE(result->more);
}

TYPED_TEST(StoreContractTest, RangeLimitCutsShortAndSetsMore) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"a", "b", "c"}) this->put(*store, key, key);
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

TYPED_TEST(StoreContractTest, RangeWithEmptyEndIsUnboundedAndOrdersBytesUnsigned) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  std::string high("\xff", 1);
  std::string low("\x01", 1);
  this->put(*store, high, "h");
  this->put(*store, "m", "m");
  this->put(*store, low, "l");
  auto all = store->range("", "");
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].key, low);
  EXPECT_EQ(all->kvs[1].key, "m");
  EXPECT_EQ(all->kvs[2].key, high);
}

TYPED_TEST(StoreContractTest, ScanPrefixVisitsOnlyPrefixedKeysInOrder) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  for (const char* key : {"p/2", "p0", "p/1", "q", "o"}) this->put(*store, key, key);
  std::vector<std::string> seen;
  auto revision = store->scanPrefix("p/", [&](const KeyValue& kv) { seen.push_back(kv.key); });
  ASSERT_TRUE(revision.has_value());
  EXPECT_EQ(*revision, this->rev(5));
  EXPECT_EQ(seen, (std::vector<std::string>{"p/1", "p/2"}));
}

TYPED_TEST(StoreContractTest, ScanPrefixIsASnapshotWhileCommitsContinue) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 50; ++i) this->put(*store, "s/" + std::to_string(100 + i), "v");
  size_t visited = 0;
  auto revision = store->scanPrefix("s/", [&](const KeyValue&) {
    // Commits made during the scan are not part of its snapshot.
    if (visited++ == 0) this->put(*store, "s/999", "late");
  });
  ASSERT_TRUE(revision.has_value());
  EXPECT_EQ(*revision, this->rev(50));
  EXPECT_EQ(visited, 50u);
}

TYPED_TEST(StoreContractTest, CommitAsyncCompletesOnAStoreThread) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  std::promise<std::pair<Result<TxnResult>, std::thread::id>> promise;
  store->commitAsync(putTxn("a", "1"), [&](Result<TxnResult> result) {
    promise.set_value({std::move(result), std::this_thread::get_id()});
  });
  auto [result, thread] = promise.get_future().get();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->revision, this->rev(1));
  EXPECT_NE(thread, std::this_thread::get_id());
}

TYPED_TEST(StoreContractTest, CommitFromACompletionFailsInsteadOfDeadlocking) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  std::promise<Result<TxnResult>> promise;
  store->commitAsync(putTxn("a", "1"), [&](Result<TxnResult>) {
    promise.set_value(store->commit(putTxn("b", "1")));
  });
  auto nested = promise.get_future().get();
  ASSERT_FALSE(nested.has_value());
  EXPECT_EQ(nested.error().code(), ErrorCode::kFailedPrecondition);
}

TYPED_TEST(StoreContractTest, WatchReplaysHistoryFromRevisionThenDeliversLiveChanges) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "w/a", "1");    // 1
  this->put(*store, "w/b", "1");    // 2
  this->put(*store, "other", "1");  // 3
  this->put(*store, "w/a", "2");    // 4
  Collector collector;
  auto handle = store->watch("w/", this->rev(2), collector.callback());
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  ASSERT_TRUE(collector.waitFor(2));
  this->put(*store, "w/c", "1");  // 5
  this->put(*store, "other", "2");
  this->put(*store, "w/b", "2");  // 7
  ASSERT_TRUE(collector.waitFor(4));
  std::this_thread::sleep_for(50ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 4u);
  std::vector<Revision> revisions;
  for (const auto& e : events) {
    EXPECT_EQ(e.kind, Event::Kind::kPut);
    revisions.push_back(e.kv.modRevision);
  }
  EXPECT_EQ(revisions,
            (std::vector<Revision>{this->rev(2), this->rev(4), this->rev(5), this->rev(7)}));
  EXPECT_EQ(events[1].kv.key, "w/a");
  EXPECT_EQ(events[1].kv.value, "2");
  EXPECT_EQ(events[1].kv.createRevision, this->rev(1));
  EXPECT_EQ(events[1].kv.version, 2);
}

TYPED_TEST(StoreContractTest, WatchDeliversDeleteEvents) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  Collector collector;
  auto handle = store->watch("k", store->currentRevision() + 1, collector.callback());
  ASSERT_TRUE(handle.has_value());
  this->put(*store, "k1", "v");
  ASSERT_TRUE(store->commit(deleteTxn("k1")).has_value());
  ASSERT_TRUE(store->commit(deleteTxn("k1")).has_value());  // Nothing to delete: no event.
  ASSERT_TRUE(collector.waitFor(2));
  std::this_thread::sleep_for(50ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind, Event::Kind::kDelete);
  EXPECT_EQ(events[1].kv.key, "k1");
  EXPECT_EQ(events[1].kv.value, "");
  EXPECT_EQ(events[1].kv.modRevision, this->rev(2));

  // The change log replays the delete identically.
  Collector replay;
  auto replayHandle = store->watch("k", this->rev(1), replay.callback());
  ASSERT_TRUE(replayHandle.has_value());
  ASSERT_TRUE(replay.waitFor(2));
  auto replayed = replay.events();
  ASSERT_EQ(replayed.size(), 2u);
  EXPECT_EQ(replayed[1].kind, Event::Kind::kDelete);
  EXPECT_EQ(replayed[1].kv.modRevision, this->rev(2));
}

TYPED_TEST(StoreContractTest, WatchFromCompactedRevisionFails) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) this->put(*store, "k", std::to_string(i));
  ASSERT_TRUE(store->compact(this->rev(4)).has_value());
  EXPECT_EQ(store->compactedRevision(), this->rev(4));
  Collector collector;
  auto stale = store->watch("k", this->rev(3), collector.callback());
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code(), ErrorCode::kCompacted);

  auto retained = store->watch("k", this->rev(4), collector.callback());
  ASSERT_TRUE(retained.has_value());
  ASSERT_TRUE(collector.waitFor(2));
  auto events = collector.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.modRevision, this->rev(4));
  EXPECT_EQ(events[1].kv.modRevision, this->rev(5));
}

TYPED_TEST(StoreContractTest, CompactKeepsCurrentValuesAndRejectsFutureRevisions) {
  auto store = this->open();
  ASSERT_NE(store, nullptr);
  this->put(*store, "a", "1");
  this->put(*store, "b", "1");
  ASSERT_TRUE(
      store->compact(this->rev(3)).has_value());  // Drops all history; currentRevision() + 1.
  EXPECT_TRUE(store->get("a").value().has_value());
  EXPECT_TRUE(store->get("b").value().has_value());
  ASSERT_TRUE(store->compact(this->rev(1)).has_value());  // Already compacted: no-op.
  EXPECT_EQ(store->compactedRevision(), this->rev(3));
  auto future = store->compact(this->rev(10));
  ASSERT_FALSE(future.has_value());
  EXPECT_EQ(future.error().code(), ErrorCode::kInvalidArgument);
}

TYPED_TEST(StoreContractTest, WatchRegisteredDuringCommitsSeesEveryRevisionOnce) {
  auto store = this->open();
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
  Revision last = this->put(*store, "r/final", "x");
  // The retained history, replayed by a watch opened after every write, is the reference: each
  // watcher must have seen exactly its suffix, in order. (Several transactions may share one
  // revision on a back end that batches them; see store.h.)
  Collector reference;
  auto referenceHandle = store->watch("r/", this->rev(1), reference.callback());
  ASSERT_TRUE(referenceHandle.has_value());
  auto historyDone = [&] {
    auto events = reference.events();
    return !events.empty() && events.back().kv.modRevision == last;
  };
  for (int i = 0; i < 1000 && !historyDone(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(historyDone());
  auto history = reference.events();
  for (size_t w = 0; w < collectors.size(); ++w) {
    std::vector<Event> expected;
    for (const Event& e : history) {
      if (e.kv.modRevision >= starts[w]) expected.push_back(e);
    }
    ASSERT_TRUE(collectors[w]->waitFor(expected.size())) << w;
    std::this_thread::sleep_for(20ms);
    auto events = collectors[w]->events();
    ASSERT_EQ(events.size(), expected.size()) << w;
    for (size_t i = 0; i < events.size(); ++i) {
      ASSERT_EQ(events[i].kv.modRevision, expected[i].kv.modRevision) << w << " " << i;
      ASSERT_EQ(events[i].kv.key, expected[i].kv.key) << w << " " << i;
    }
  }
}

TYPED_TEST(StoreContractTest, DestroyedWatchHandleWaitsForAndStopsItsCallback) {
  auto store = this->open();
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
  this->put(*store, "k", "1");
  while (!inside) std::this_thread::sleep_for(1ms);
  handle->reset();
  EXPECT_TRUE(returned);
  int seen = calls;
  this->put(*store, "k", "2");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls, seen);
}

TYPED_TEST(StoreContractTest, WatchHandleDestroyedInsideItsCallbackStopsFurtherCalls) {
  auto store = this->open();
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
  this->put(*store, "k", "1");
  for (int i = 0; i < 1000 && calls == 0; ++i) std::this_thread::sleep_for(1ms);
  this->put(*store, "k", "2");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls, 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(handle, nullptr);
}

TYPED_TEST(StoreContractTest, SlowWatcherDoesNotBlockCommits) {
  auto store = this->open();
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
  this->put(*store, "k", "first");  // The slow watcher is now stuck in its callback.
  std::this_thread::sleep_for(20ms);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) this->put(*store, "k", std::to_string(i));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  release.set_value();
  for (int i = 0; i < 1000 && received < 101; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(received, 101u);
  EXPECT_TRUE(fast.waitFor(101));
}

}  // namespace
}  // namespace skiff::store
