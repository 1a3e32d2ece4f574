#pragma once

// The parts of EtcdStore (internal to src/controlplane/store): the JSON codec and the HTTP
// transport with endpoint failover (etcd_transport.cpp), the group-commit sender
// (etcd_batcher.cpp) and the watch streams (etcd_watch.cpp). etcd_store.cpp is the facade.
//
// Wire format (etcd's gRPC gateway): keys and values are base64 strings, int64 fields are JSON
// strings, fields holding their default value (0, false, empty) are left out of answers.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/store/etcd_store.h"
#include "controlplane/store/store.h"

namespace skiff::store::etcd_detail {

using nlohmann::json;

// ------------------------------------------------------------------------------------------------
// Codec.

// The int64 field `name` of `object` (a JSON string or number); 0 when absent.
int64_t int64At(const json& object, const char* name);

// The KeyValue etcd encodes as `kv`. Fails with kInternal on bad base64.
Result<KeyValue> decodeKeyValue(const json& kv);

// etcd's `range_end` for the Store's `end`: "" (no upper bound) becomes "\0", etcd's "every key
// from `key` on".
std::string etcdRangeEnd(const std::string& end);

// The most compares, success ops or failure ops of `txn`: what etcd counts against --max-txn-ops.
size_t txnWidth(const Txn& txn);

// Checks what etcd would refuse: empty keys (kInvalidArgument), more than `maxTxnOps`
// compares or ops per branch (kTooLarge).
Status validateTxn(const Txn& txn, size_t maxTxnOps);

// The TxnRequest for `txn`. Several ops on one key in a branch are reduced to the last one.
json encodeTxn(const Txn& txn);

// Every key `txn` compares or may write.
std::vector<std::string> txnKeys(const Txn& txn);

// A rough size of `txn` in etcd's protobuf encoding, for the request size limit.
size_t txnBytes(const Txn& txn);

// ------------------------------------------------------------------------------------------------
// Transport.

// Whether a request may be sent again after a failure that left its outcome unknown.
enum class Idempotence {
  kRead,   // Retried on the next endpoint after any transport failure.
  kWrite,  // Retried only when etcd cannot have applied it.
};

// Sets what every request to etcd's gateway carries on the libcurl easy handle `curl`: a JSON
// POST of `body` (borrowed until the request is done) to `url`, the has-leader header, no
// signals, the connect timeout. Returns the header list; the caller frees it after the request.
curl_slist* prepareGatewayPost(CURL* curl, const std::string& url, std::string_view body,
                               long connectTimeoutMs);

// Unary requests to etcd's gateway over a pool of libcurl handles (kept connections), with
// failover across endpoints. Thread-safe.
class Transport {
 public:
  explicit Transport(EtcdStoreOptions options);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // POSTs `body` to `path` ("/v3/kv/range") and returns the answer. etcd's error answers become
  // errors (see errorFromAnswer); "no leader" and connection failures move to the next endpoint.
  Result<json> call(std::string_view path, const json& body, Idempotence idempotence);

  const EtcdStoreOptions& options() const { return options_; }
  // The endpoint requests go to first, and the one after it.
  size_t preferred() const { return preferred_.load(std::memory_order_relaxed); }
  void failOver(size_t from);
  std::string url(size_t endpoint) const { return "http://" + options_.endpoints[endpoint]; }

  // The highest etcd revision any answer carried.
  void observe(Revision revision);
  Revision highestRevision() const { return highest_.load(std::memory_order_acquire); }

  // The compacted revision as tracked by the store (see etcd_store.h).
  void observeCompacted(Revision revision);
  Revision compacted() const { return compacted_.load(std::memory_order_acquire); }

 private:
  void* acquire();
  void release(void* handle);

  const EtcdStoreOptions options_;
  std::atomic<size_t> preferred_{0};
  std::atomic<Revision> highest_{0};
  std::atomic<Revision> compacted_{0};
  std::mutex mu_;
  std::vector<void*> idle_;  // CURL easy handles.
};

// The Error for an etcd error answer ({"error", "code", "message"}) from `endpoint`:
// Unavailable → kUnavailable, compacted → kCompacted, too many ops / too large / larger than
// the gRPC message limit → kTooLarge,
// other InvalidArgument and future revisions → kInvalidArgument, anything else kIo.
Error errorFromAnswer(const json& answer, const std::string& endpoint, long httpStatus);

// Whether an etcd error says the member has no leader (the request was not proposed).
bool isNoLeader(const json& answer);

// ------------------------------------------------------------------------------------------------
// Group commit.

struct PendingTxn {
  Txn txn;
  std::optional<Error> rejected;  // Set when validation failed; completes without being sent.
  std::function<void(Result<TxnResult>)> done;
};

// Owns the sending thread: it takes as many queued transactions as fit one etcd request (see
// etcd_store.h, "Group commit"), sends them and completes each with its own outcome, in
// submission order. One request is in flight at a time; what queues meanwhile is the next batch.
class Batcher {
 public:
  explicit Batcher(std::shared_ptr<Transport> transport);
  ~Batcher();

  void start();
  // Completes every queued transaction, then stops the thread.
  void stop();
  // Queues `pending`; after `stop` it completes at once with kUnavailable.
  void submit(PendingTxn pending);

  bool onThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  EtcdStoreStats stats() const;

 private:
  void run();
  // Moves the longest prefix of `queue_` that fits one request into `batch`. Called locked.
  void takeBatchLocked(std::vector<PendingTxn>& batch);
  void send(std::vector<PendingTxn>& batch);

  std::shared_ptr<Transport> transport_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingTxn> queue_;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> committed_{0};
};

// ------------------------------------------------------------------------------------------------
// Watches.

struct WatchState;

// The live watches of one store, so the store's destructor can stop them all.
class WatchRegistry {
 public:
  void add(const std::shared_ptr<WatchState>& state);
  // Stops every watch and waits for its thread; watches started afterwards stop at once.
  void stopAll();
  bool stopped();

 private:
  std::mutex mu_;
  bool stopped_ = false;
  std::vector<std::weak_ptr<WatchState>> watches_;
};

// Opens a watch stream for keys with `prefix` from `fromRevision` (>= 1) and waits until etcd
// confirms it. Fails with kCompacted when etcd answers that the revision is compacted, and with
// kUnavailable when no endpoint accepts the watch.
Result<std::unique_ptr<WatchHandle>> startWatch(std::shared_ptr<Transport> transport,
                                                std::shared_ptr<WatchRegistry> registry,
                                                const std::string& prefix, Revision fromRevision,
                                                WatchCallback callback);

}  // namespace skiff::store::etcd_detail
