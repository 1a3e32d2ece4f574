#pragma once

// The etcd implementation of `Store`, for etcd 3.4 and later through its JSON gRPC gateway
// (`/v3/kv/*`, `/v3/watch`, `/v3/maintenance/status`) over libcurl. Consensus, durability and the
// revision counter are etcd's; this class only translates.
//
// Durability: etcd acknowledges a transaction once its raft entry is committed, that is
// fsync'ed to the write-ahead log of a quorum of members, and applied by the member that answers.
// A successful `commit` therefore survives kill -9 of skiffd and of any minority of members.
//
// Endpoints: requests go to one endpoint at a time. A transport failure or a "no leader" answer
// moves to the next endpoint and retries there, once per endpoint. Every request carries
// `Grpc-Metadata-hasleader: true`, so a member cut off from its cluster answers "no leader" at
// once instead of waiting out its timeout (etcd-io/etcd#10819). A write is retried on the next
// endpoint only when etcd cannot have applied it (the connection was refused, or the member said
// "no leader" before proposing it); after any other failure mid-request its outcome is unknown
// and `commit` fails with kUnavailable saying so. When no endpoint answers, errors are
// kUnavailable and name every endpoint tried.
//
// Group commit: one thread sends transactions; the ones queued meanwhile go out together as one
// etcd transaction whose success branch holds each as a nested transaction (etcd >= 3.3). etcd
// evaluates every nested compare against the state before the outer transaction and refuses a
// key written twice in one request, so a transaction whose keys (compare and operation keys)
// overlap an earlier queued one waits for the next request; submission order is kept. A batch
// stays within etcd's limits: with N nested transactions, each may have at most
// `maxTxnOps - N` compares, success ops and failure ops (etcd's --max-txn-ops, 128 by default,
// counted as etcd's `checkTxnRequest` does), and the request stays below `maxRequestBytes`.
// Revisions: every transaction of one batch gets the batch's single etcd revision (see store.h).
//
// Compaction: `compact` calls `/v3/kv/compaction`, which drops history logically (etcd frees the
// space later). etcd does not report its compacted revision, so `compactedRevision` is tracked:
// at `open` the store finds the oldest readable revision (a binary search of ranges at old
// revisions), then raises it on every `compact` and whenever a read or watch meets a compaction.
// A compaction made by someone else (etcd's --auto-compaction-*, another client) is seen only then.
// The store never compacts by itself; run etcd with --auto-compaction-mode=revision to bound
// history.
//
// Watches: each watch holds one streaming `/v3/watch` request on a thread of its own, which also
// runs the callback. A watch whose connection drops reconnects (to the next endpoint) from the
// revision after the last one it delivered, so callbacks still see every change once, in order.
// Cancelling closes the connection (the gateway cannot send cancel requests, etcd-io/etcd#12333).
// If the history needed to resume was compacted while the watch was disconnected, the watch logs
// an error and stops: its callback is not called again.
//
// Conventions beyond store.h (where the SQLite store's conventions differ):
//   - A fresh etcd starts at revision 1, not 0.
//   - `watch(prefix, r)` with r < 1 starts at revision 1 (etcd's 0 means "from now").
//   - Within one branch of a transaction, several ops on the same key are reduced to the last one
//     (etcd refuses duplicates); a delete followed by a put of the same key then keeps the key's
//     createRevision and version instead of starting a new life.
//   - Empty keys, in compares or operations, are kInvalidArgument. A transaction wider than
//     `maxTxnOps` is kTooLarge before anything is sent, as is one etcd finds too large.
//   - `compact(r)` with r at or below the compacted revision is a no-op; r == currentRevision()+1
//     compacts at the current revision and reports r as compacted; beyond that kInvalidArgument.
//   - `currentRevision` asks etcd (a count-only range); when etcd does not answer it returns the
//     highest revision this store has seen.
//   - `commit` and `compact` called on the sending thread (from a `commitAsync` completion) fail
//     with kFailedPrecondition instead of deadlocking. A WatchHandle destroyed inside its own
//     callback returns at once and the callback is never called again.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::store {

struct EtcdStoreOptions {
  // HOST:PORT of each etcd member's client URL (plain HTTP), tried in this order.
  std::vector<std::string> endpoints;
  // etcd's --max-txn-ops and --max-request-bytes; the defaults are etcd's.
  size_t maxTxnOps = 128;
  size_t maxRequestBytes = 1536 * 1024;
  int64_t connectTimeoutMs = 1000;
  // A unary request (range, txn, compaction) that takes longer fails; etcd's own request timeout
  // is 5 s plus the election timeout.
  int64_t requestTimeoutMs = 15000;
  // Pause before a watch reconnects after its connection dropped; it doubles, up to 16 times
  // this, while reconnects keep failing.
  int64_t watchRetryMs = 200;
};

// Counters of what the store sent, for tests and diagnostics.
struct EtcdStoreStats {
  int64_t txnRequests = 0;    // Requests to /v3/kv/txn.
  int64_t txnsCommitted = 0;  // Store transactions those requests carried.
};

namespace etcd_detail {
class Transport;
class Batcher;
class WatchRegistry;
}  // namespace etcd_detail

// Parses "etcd://HOST:PORT[,HOST:PORT...]" into the endpoints. Fails with kInvalidArgument that
// states the rule.
Result<std::vector<std::string>> parseEtcdSpec(const std::string& spec);

class EtcdStore final : public Store {
 public:
  // Connects to the first endpoint that answers, learns the compacted revision and starts the
  // sending thread. Fails with kUnavailable when no endpoint answers (naming each), and with
  // kInvalidArgument on a malformed endpoint.
  static Result<std::unique_ptr<EtcdStore>> open(EtcdStoreOptions options);

  // Completes every queued commit, then stops every watch: no callback runs after it returns.
  // WatchHandles may outlive the store. Must not run inside one of the store's callbacks.
  ~EtcdStore() override;

  EtcdStore(const EtcdStore&) = delete;
  EtcdStore& operator=(const EtcdStore&) = delete;

  Result<TxnResult> commit(Txn txn) override;
  void commitAsync(Txn txn, std::function<void(Result<TxnResult>)> done) override;
  Result<std::optional<KeyValue>> get(const std::string& key) override;
  Result<RangeResult> range(const std::string& begin, const std::string& end,
                            size_t limit = 0) override;
  Result<Revision> scanPrefix(const std::string& prefix,
                              const std::function<void(const KeyValue&)>& fn) override;
  Revision currentRevision() override;
  Result<std::unique_ptr<WatchHandle>> watch(const std::string& prefix, Revision fromRevision,
                                             WatchCallback callback) override;
  Status compact(Revision revision) override;
  Revision compactedRevision() override;

  EtcdStoreStats stats() const;

 private:
  EtcdStore();

  // Fails when the range at `revision` cannot be read because it is compacted.
  Result<bool> revisionReadable(Revision revision);
  Status findCompactedRevision();

  EtcdStoreOptions options_;
  std::shared_ptr<etcd_detail::Transport> transport_;
  std::unique_ptr<etcd_detail::Batcher> batcher_;
  std::shared_ptr<etcd_detail::WatchRegistry> watches_;
};

}  // namespace skiff::store
