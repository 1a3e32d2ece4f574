#pragma once

// The durable store behind skiffd: an ordered key/value map with etcd's revision model.
//
// Every committed write advances one global revision. Each key records the revision that
// created it (`createRevision`), the revision of its last change (`modRevision`) and how many
// times it was written since creation (`version`). Transactions are compare-and-set: all
// compares are checked against the state left by every earlier transaction, and either all
// operations apply or none do. Watchers receive every change from a given revision on, in
// revision order, with no gaps and no duplicates.
//
// Revisions per transaction depend on the back end:
//   - SqliteStore (sqlite_store.h): every transaction that changes anything gets a revision of
//     its own, one more than the previous one.
//   - EtcdStore (etcd_store.h): the transactions sent together in one group commit share etcd's
//     single revision for that request. What holds for every back end: a transaction's changed
//     keys all carry its `TxnResult::revision` as their modRevision; revisions never decrease
//     in commit order; a transaction whose keys overlap an earlier one's gets a greater
//     revision; a watch delivers all events of one revision before any later one. Code must not
//     assume that revisions are dense or that one revision means one transaction.
//
// Durability contract: once `commit` reports success, the transaction survives kill -9 of the
// process and a power loss (SQLite: it has been fsync'ed; etcd: a quorum of members fsync'ed
// it). The SQLite store is poisoned after any write error: every later `commit` fails with the
// original error, because the on-disk state is then unknown.
//
// Thread safety: every method may be called from any thread concurrently.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace skiff::store {

using Revision = int64_t;

struct KeyValue {
  std::string key;
  std::string value;
  Revision createRevision = 0;
  Revision modRevision = 0;
  int64_t version = 0;
};

// A condition a transaction checks before it applies.
struct Compare {
  enum class Kind {
    kExists,        // The key exists.
    kNotExists,     // The key does not exist.
    kModRevisionIs  // The key's modRevision equals `revision` (0 means: the key does not exist).
  };
  Kind kind;
  std::string key;
  Revision revision = 0;

  static Compare exists(std::string key) { return {Kind::kExists, std::move(key), 0}; }
  static Compare notExists(std::string key) { return {Kind::kNotExists, std::move(key), 0}; }
  static Compare modRevisionIs(std::string key, Revision revision) {
    return {Kind::kModRevisionIs, std::move(key), revision};
  }
  // Whether the compare holds for a key whose modRevision is `modRevision` (0: it does not exist).
  // Every back end evaluates compares through this.
  bool holds(Revision modRevision) const {
    switch (kind) {
      case Kind::kExists:
        return modRevision != 0;
      case Kind::kNotExists:
        return modRevision == 0;
      case Kind::kModRevisionIs:
        return modRevision == revision;
    }
    return false;
  }
};

struct Op {
  enum class Kind { kPut, kDelete };
  Kind kind;
  std::string key;
  std::string value;  // Only for kPut.

  static Op put(std::string key, std::string value) {
    return {Kind::kPut, std::move(key), std::move(value)};
  }
  static Op del(std::string key) { return {Kind::kDelete, std::move(key), {}}; }
};

struct Txn {
  std::vector<Compare> compares;
  std::vector<Op> onSuccess;
  std::vector<Op> onFailure;  // Applied instead of onSuccess when a compare fails. Often empty.
};

struct TxnResult {
  bool succeeded = false;  // All compares held and `onSuccess` was applied.
  // The store's revision after this transaction: every key it changed carries it as
  // modRevision. When nothing changed (no ops, or deletes of missing keys only) it is the
  // revision the transaction observed, which on etcd may be the revision its batch created.
  Revision revision = 0;
};

struct Event {
  enum class Kind { kPut, kDelete };
  Kind kind;
  KeyValue kv;  // For kDelete, `value` is empty and `modRevision` is the deleting revision.
};

// Receives a batch of events in revision order. Called on a store-owned thread; it must not block
// for long and must not call back into the store's `commit`.
using WatchCallback = std::function<void(const std::vector<Event>&)>;

// Cancels its watch when destroyed. Once the destructor returns, the callback is not running and
// will not be called again.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  Revision revision = 0;  // The revision at which this read was taken.
  bool more = false;      // True when `limit` cut the result short.
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `txn` atomically and durably. Blocks the calling thread until it is durable.
  // Concurrent callers are grouped into one disk commit or etcd request (group commit); each
  // transaction still gets its own compare evaluation and outcome (revisions: see above).
  virtual Result<TxnResult> commit(Txn txn) = 0;

  // Like `commit`, but returns at once and calls `done` on a store-owned thread when the
  // transaction is durable (or failed). `done` must not block.
  virtual void commitAsync(Txn txn, std::function<void(Result<TxnResult>)> done) = 0;

  virtual Result<std::optional<KeyValue>> get(const std::string& key) = 0;

  // Keys in [begin, end) in key order, at most `limit` of them (0 means no limit). All rows come
  // from one consistent snapshot taken at `RangeResult::revision`.
  virtual Result<RangeResult> range(const std::string& begin, const std::string& end,
                                    size_t limit = 0) = 0;

  // Calls `fn` for every key with `prefix`, in key order, from one consistent snapshot, without
  // holding all of them in memory at once. Returns the snapshot's revision.
  virtual Result<Revision> scanPrefix(const std::string& prefix,
                                      const std::function<void(const KeyValue&)>& fn) = 0;

  // The latest committed revision.
  virtual Revision currentRevision() = 0;

  // Delivers every change to keys with `prefix` whose revision is >= `fromRevision`: first the
  // retained history, then live changes, in order and without gaps. Fails with kCompacted if
  // `fromRevision` is older than the oldest retained change.
  virtual Result<std::unique_ptr<WatchHandle>> watch(const std::string& prefix,
                                                     Revision fromRevision,
                                                     WatchCallback callback) = 0;

  // Drops change history older than `revision`. Current values are never dropped.
  virtual Status compact(Revision revision) = 0;

  // The oldest revision still available to `watch`.
  virtual Revision compactedRevision() = 0;
};

// The end key for a prefix range: the smallest key greater than every key starting with `prefix`.
std::string prefixEnd(const std::string& prefix);

}  // namespace skiff::store
