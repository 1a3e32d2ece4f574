// EtcdStore against a private etcd member: group commit, etcd's per-request limits, endpoint
// failover, watches across a member restart, compaction. The Store contract itself is in
// store_contract_test.cpp.

#include "controlplane/store/etcd_store.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "controlplane/store/open.h"
#include "store_test_support.h"
#include "testing/etcd_process.h"

namespace skiff::store {
namespace {

using namespace std::chrono_literals;

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(etcd_.start()) << etcd_.error(); }

  std::unique_ptr<EtcdStore> open(EtcdStoreOptions options = {}) {
    if (options.endpoints.empty()) options.endpoints = {etcd_.endpoint()};
    auto store = EtcdStore::open(options);
    EXPECT_TRUE(store.has_value()) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }

  // Commits asynchronously and waits for every completion; results in submission order.
  std::vector<Result<TxnResult>> commitAll(Store& store, std::vector<Txn> txns) {
    std::vector<std::promise<Result<TxnResult>>> promises(txns.size());
    for (size_t i = 0; i < txns.size(); ++i) {
      store.commitAsync(std::move(txns[i]), [&promises, i](Result<TxnResult> result) {
        promises[i].set_value(std::move(result));
      });
    }
    std::vector<Result<TxnResult>> results;
    for (auto& p : promises) results.push_back(p.get_future().get());
    return results;
  }

  testing::EtcdProcess etcd_;
};

TEST(EtcdSpec, ParsesEndpointsAndStatesTheRule) {
  auto one = parseEtcdSpec("etcd://127.0.0.1:2379");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(*one, (std::vector<std::string>{"127.0.0.1:2379"}));
  auto three = parseEtcdSpec("etcd://a:1,b.example:2379,[::1]:2380");
  ASSERT_TRUE(three.has_value());
  EXPECT_EQ(three->size(), 3u);
  for (const char* bad : {"etcd://", "etcd://host", "etcd://host:0", "etcd://host:99999",
                          "etcd://a:1,", "http://a:1", "etcd://::1:2379", "etcd://a:1/x"}) {
    auto parsed = parseEtcdSpec(bad);
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find("HOST:PORT"), std::string::npos)
        << parsed.error().message();
  }
}

TEST(StoreSpec, BadValuesNameTheFlagAndTheRule) {
  for (const char* bad : {"mysql", "etcd://nohost", "sqlite3"}) {
    auto checked = checkSpec(bad);
    ASSERT_FALSE(checked.has_value()) << bad;
    EXPECT_EQ(checked.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(checked.error().message().find("--store: must be sqlite or etcd://"),
              std::string::npos)
        << checked.error().message();
  }
  EXPECT_TRUE(checkSpec("sqlite").has_value());
  EXPECT_TRUE(checkSpec("etcd://127.0.0.1:2379,127.0.0.1:2380").has_value());
}

TEST_F(EtcdStoreTest, OpenThroughTheFactoryUsesEtcd) {
  TempDir dir;
  auto store = store::open(etcd_.spec(), dir.path());
  ASSERT_TRUE(store.has_value()) << store.error().message();
  auto result = (*store)->commit(putTxn("factory", "1"));
  ASSERT_TRUE(result && result->succeeded);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/skiff.db"));
}

TEST_F(EtcdStoreTest, AbsentKeysCompareAsRevisionZeroAsEtcdDefinesIt) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  struct Case {
    Compare compare;
    bool holds;
  };
  for (const Case& c :
       {Case{Compare::exists("absent"), false}, Case{Compare::notExists("absent"), true},
        Case{Compare::modRevisionIs("absent", 0), true},
        Case{Compare::modRevisionIs("absent", 1), false}}) {
    Txn txn;
    txn.compares = {c.compare};
    auto result = store->commit(txn);
    ASSERT_TRUE(result.has_value()) << result.error().message();
    EXPECT_EQ(result->succeeded, c.holds)
        << c.compare.key << " " << static_cast<int>(c.compare.kind);
    EXPECT_EQ(result->succeeded, c.compare.holds(0));
  }
}

TEST_F(EtcdStoreTest, ConcurrentCommitsShareEtcdRequestsAndRevisions) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 64;
  constexpr int kEach = 20;
  std::mutex mu;
  std::vector<Revision> revisions;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto result =
            store->commit(putTxn("g/" + std::to_string(t) + "/" + std::to_string(i), "v"));
        if (!result || !result->succeeded) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        revisions.push_back(result->revision);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  auto stats = store->stats();
  EXPECT_EQ(stats.txnsCommitted, kThreads * kEach);
  // Batching happened: fewer etcd requests than transactions, and revisions are shared.
  EXPECT_LT(stats.txnRequests, stats.txnsCommitted / 2) << stats.txnRequests;
  std::set<Revision> distinct(revisions.begin(), revisions.end());
  EXPECT_EQ(static_cast<int64_t>(distinct.size()), stats.txnRequests);
  // Every key carries its batch's revision.
  auto kv = store->get("g/0/0");
  ASSERT_TRUE(kv && *kv);
  EXPECT_TRUE(distinct.contains((*kv)->modRevision));
}

TEST_F(EtcdStoreTest, OverlappingTransactionsGoToSeparateRequestsInSubmissionOrder) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kCount = 40;
  std::vector<Txn> txns;
  for (int i = 0; i < kCount; ++i) {
    if (i % 2 == 0) {
      txns.push_back(putTxn("shared", std::to_string(i)));  // Overlaps every other even one.
    } else {
      Txn txn;  // Reads "shared" through a compare: overlaps too.
      txn.compares = {Compare::exists("shared")};
      txn.onSuccess = {Op::put("odd/" + std::to_string(i), "v")};
      txns.push_back(std::move(txn));
    }
  }
  auto results = commitAll(*store, std::move(txns));
  Revision previous = 0;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(results[i].has_value()) << results[i].error().message();
    EXPECT_TRUE(results[i]->succeeded) << i;
    EXPECT_GT(results[i]->revision, previous) << i;  // Each in a later request than the one before.
    previous = results[i]->revision;
  }
  auto kv = store->get("shared");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value, std::to_string(kCount - 2));
  EXPECT_EQ((*kv)->version, kCount / 2);
}

TEST_F(EtcdStoreTest, BatchesStayWithinEtcdsOpAndSizeLimits) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  // 100-op transactions: two of them nested would need 2 + 100 <= 128, three would not.
  std::vector<Txn> wide;
  for (int t = 0; t < 8; ++t) {
    Txn txn;
    for (int i = 0; i < 100; ++i) {
      txn.onSuccess.push_back(Op::put("wide/" + std::to_string(t) + "/" + std::to_string(i), "v"));
    }
    wide.push_back(std::move(txn));
  }
  for (auto& result : commitAll(*store, std::move(wide))) {
    ASSERT_TRUE(result.has_value()) << result.error().message();
    EXPECT_TRUE(result->succeeded);
  }
  // At the boundary: four nested transactions of 124 ops each make 4 + 124 = 128.
  std::vector<Txn> edge;
  for (int t = 0; t < 6; ++t) {
    Txn txn;
    for (int i = 0; i < 124; ++i) {
      txn.onSuccess.push_back(Op::put("edge/" + std::to_string(t) + "/" + std::to_string(i), "v"));
    }
    edge.push_back(std::move(txn));
  }
  int64_t requestsBefore = store->stats().txnRequests;
  for (auto& result : commitAll(*store, std::move(edge))) {
    ASSERT_TRUE(result.has_value()) << result.error().message();
    EXPECT_TRUE(result->succeeded);
  }
  EXPECT_GE(store->stats().txnRequests - requestsBefore, 2);  // Never all six in one request.
  // 20 values of 200 KiB: about 4 MiB in all, more than one request may carry.
  std::vector<Txn> big;
  for (int t = 0; t < 20; ++t) {
    big.push_back(putTxn("big/" + std::to_string(t), std::string(200 * 1024, 'x')));
  }
  for (auto& result : commitAll(*store, std::move(big))) {
    ASSERT_TRUE(result.has_value()) << result.error().message();
    EXPECT_TRUE(result->succeeded);
  }
  auto kv = store->get("big/19");
  ASSERT_TRUE(kv && *kv);
  EXPECT_EQ((*kv)->value.size(), 200u * 1024);
}

TEST_F(EtcdStoreTest, TransactionOverTheOpLimitFailsClearly) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Txn txn;
  for (int i = 0; i < 129; ++i) txn.onSuccess.push_back(Op::put("k/" + std::to_string(i), "v"));
  auto result = store->commit(txn);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge);
  EXPECT_NE(result.error().message().find("at most 128"), std::string::npos)
      << result.error().message();

  // With the store's own check widened, etcd itself refuses it, with the same code.
  EtcdStoreOptions lax;
  lax.maxTxnOps = 1000;
  auto laxStore = open(lax);
  ASSERT_NE(laxStore, nullptr);
  auto refused = laxStore->commit(txn);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kTooLarge);
  EXPECT_NE(refused.error().message().find("too many operations"), std::string::npos)
      << refused.error().message();

  // Exactly 128 is allowed alone.
  txn.onSuccess.pop_back();
  auto allowed = store->commit(txn);
  ASSERT_TRUE(allowed.has_value()) << allowed.error().message();
  EXPECT_TRUE(allowed->succeeded);
}

TEST_F(EtcdStoreTest, AValueOverTheRequestLimitFailsAsTooLarge) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto result = store->commit(putTxn("huge", std::string(2 * 1024 * 1024, 'x')));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_TRUE(store->commit(putTxn("after", "v")).has_value());
}

TEST_F(EtcdStoreTest, WatchResumesAfterTheMemberIsKilledAndRestarted) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Collector collector;
  auto handle = store->watch("w/", store->currentRevision() + 1, collector.callback());
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->commit(putTxn("w/" + std::to_string(i), "v")).has_value());
  }
  ASSERT_TRUE(collector.waitFor(5));
  etcd_.kill9();
  std::this_thread::sleep_for(300ms);  // The watch notices and retries meanwhile.
  ASSERT_TRUE(etcd_.start()) << etcd_.error();
  for (int i = 5; i < 10; ++i) {
    auto result = store->commit(putTxn("w/" + std::to_string(i), "v"));
    ASSERT_TRUE(result.has_value()) << result.error().message();
  }
  ASSERT_TRUE(collector.waitFor(10, 20s));
  std::this_thread::sleep_for(100ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(events[i].kv.key, "w/" + std::to_string(i));
    if (i > 0) {
      EXPECT_GT(events[i].kv.modRevision, events[i - 1].kv.modRevision);
    }
  }
}

TEST_F(EtcdStoreTest, CommitWhileTheOnlyMemberIsDownFailsAsUnavailableNamingIt) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  etcd_.kill9();
  auto result = store->commit(putTxn("k", "v"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find(etcd_.endpoint()), std::string::npos)
      << result.error().message();
  auto read = store->get("k");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code(), ErrorCode::kUnavailable);
  ASSERT_TRUE(etcd_.start()) << etcd_.error();
  EXPECT_TRUE(store->commit(putTxn("k", "v")).has_value());
}

TEST_F(EtcdStoreTest, ADeadFirstEndpointIsSkipped) {
  const std::string dead = "127.0.0.1:" + std::to_string(testing::unusedLoopbackPort());
  EtcdStoreOptions options;
  options.endpoints = {dead, etcd_.endpoint()};
  auto store = open(options);
  ASSERT_NE(store, nullptr);
  auto result = store->commit(putTxn("k", "v"));
  ASSERT_TRUE(result.has_value()) << result.error().message();
  Collector collector;
  auto handle = store->watch("k", result->revision, collector.callback());
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  EXPECT_TRUE(collector.waitFor(1));

  // With no live endpoint, opening fails and names each one.
  EtcdStoreOptions none;
  none.endpoints = {dead, "127.0.0.1:" + std::to_string(testing::unusedLoopbackPort())};
  auto failed = EtcdStore::open(none);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(failed.error().message().find(none.endpoints[0]), std::string::npos);
  EXPECT_NE(failed.error().message().find(none.endpoints[1]), std::string::npos);
}

TEST_F(EtcdStoreTest, CompactionByAnotherClientMakesOldWatchesFailWithCompacted) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  Revision first = 0;
  for (int i = 0; i < 10; ++i) {
    auto result = store->commit(putTxn("c", std::to_string(i)));
    ASSERT_TRUE(result.has_value());
    if (i == 0) first = result->revision;
  }
  auto other = open();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->compact(first + 5).has_value());

  Collector collector;
  auto stale = store->watch("c", first + 2, collector.callback());
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code(), ErrorCode::kCompacted) << stale.error().message();
  EXPECT_EQ(store->compactedRevision(), first + 5);
  auto retained = store->watch("c", first + 5, collector.callback());
  ASSERT_TRUE(retained.has_value()) << retained.error().message();
  EXPECT_TRUE(collector.waitFor(5));

  // A store opened later finds the compacted revision by itself.
  auto later = open();
  ASSERT_NE(later, nullptr);
  EXPECT_EQ(later->compactedRevision(), first + 5);
}

TEST_F(EtcdStoreTest, ScanPrefixPagesThroughOneSnapshot) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  std::vector<Txn> txns;
  for (int i = 0; i < 2500; ++i) txns.push_back(putTxn("s/" + std::to_string(10000 + i), "v"));
  for (auto& result : commitAll(*store, std::move(txns))) ASSERT_TRUE(result.has_value());
  size_t visited = 0;
  std::string last;
  auto revision = store->scanPrefix("s/", [&](const KeyValue& kv) {
    if (visited++ == 1500) store->commit(putTxn("s/99999", "late"));  // After the snapshot.
    EXPECT_LT(last, kv.key);
    last = kv.key;
  });
  ASSERT_TRUE(revision.has_value()) << revision.error().message();
  EXPECT_EQ(visited, 2500u);
}

TEST(EtcdClusterStoreTest, QuorumLossIsUnavailableAtOnceAndWritesResumeWithQuorum) {
  testing::EtcdCluster cluster(3);
  ASSERT_TRUE(cluster.start()) << cluster.error();
  auto parsed = parseEtcdSpec(cluster.spec());
  ASSERT_TRUE(parsed.has_value());
  EtcdStoreOptions options;
  options.endpoints = *parsed;
  auto opened = EtcdStore::open(options);
  ASSERT_TRUE(opened.has_value()) << opened.error().message();
  auto& store = **opened;
  Collector collector;
  auto handle = store.watch("q/", store.currentRevision() + 1, collector.callback());
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  ASSERT_TRUE(store.commit(putTxn("q/1", "v")).has_value());

  // The first endpoint dies: requests and the watch move to the others. When it led, the others
  // elect a leader first, and a write in that window may time out with its outcome unknown:
  // retry, guarded so that a first attempt that did apply is not applied twice.
  cluster.member(0).kill9();
  Txn once;
  once.compares.push_back(Compare::notExists("q/2"));
  once.onSuccess.push_back(Op::put("q/2", "v"));
  Result<TxnResult> second = fail(ErrorCode::kUnavailable, "not tried");
  for (auto deadline = std::chrono::steady_clock::now() + 20s;
       !second && std::chrono::steady_clock::now() < deadline;) {
    second = store.commit(once);
    if (!second) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(second.has_value()) << second.error().message();

  // A majority dies: the last member has no leader and says so at once.
  cluster.member(1).kill9();
  std::this_thread::sleep_for(500ms);  // Past its election timeout: it knows it has no leader.
  auto start = std::chrono::steady_clock::now();
  auto refused = store.commit(putTxn("q/3", "v"));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_NE(refused.error().message().find("no leader"), std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find(cluster.member(2).endpoint()), std::string::npos)
      << refused.error().message();
  auto read = store.get("q/1");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code(), ErrorCode::kUnavailable);

  // Quorum returns: writes resume, and the watch saw every change once, in order.
  ASSERT_TRUE(cluster.member(1).start()) << cluster.member(1).error();
  Result<TxnResult> resumed = fail(ErrorCode::kUnavailable, "not tried");
  for (int i = 0; i < 100 && !resumed; ++i) {
    resumed = store.commit(putTxn("q/3", "v"));
    if (!resumed) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(resumed.has_value()) << resumed.error().message();
  ASSERT_TRUE(collector.waitFor(3, 20s));
  std::this_thread::sleep_for(100ms);
  auto events = collector.events();
  ASSERT_EQ(events.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(events[i].kv.key, "q/" + std::to_string(i + 1));
}

}  // namespace
}  // namespace skiff::store
