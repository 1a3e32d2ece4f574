#pragma once

// The embedded SQLite implementation of `Store`.
//
// On disk: one SQLite database in WAL mode with synchronous=FULL, so a commit is durable once its
// WAL frames are fsync'ed. It holds the current value of every key, a change log (one row per
// changed key per revision) that feeds `watch`, and a meta row with the current and compacted
// revisions. Next to the database the store keeps `<path>-lock`, an flock(2) lock that keeps a
// second process (or a second SqliteStore in this process) from opening the same database, because
// the writer keeps the revision counter in memory.
//
// Writes: one writer thread owns the only write connection. It drains the commit queue and applies
// every queued transaction (up to `maxBatchSize`) inside one SQLite transaction; each transaction
// sees the effects of the ones before it in the batch and gets its own revision. All of them
// complete after the single COMMIT. Any SQLite error on this path poisons the store (see store.h);
// the batch that hit it fails as a whole, and nothing in it becomes visible.
//
// Reads use a pool of separate read connections and never wait for the writer; `range` and
// `scanPrefix` each run in one read transaction, which WAL makes a consistent snapshot.
//
// Watches: `watch` reads the retained history for its prefix into memory, then a dedicated delivery
// thread calls every watcher's callback in turn, from a queue per watcher, so a slow watcher
// delays other watchers but never commits (its queue grows instead).
//
// Conventions beyond store.h:
//   - An empty `end` in `range` means "no upper bound"; `prefixEnd` returns "" for a prefix that
//     has no finite end ("" or all 0xff bytes).
//   - Keys of operations must not be empty (kInvalidArgument); a key plus value beyond SQLite's
//     row limit (about 1 GB) fails with kTooLarge. Neither poisons the store.
//   - Delete events carry createRevision 0 and version 0.
//   - The compacted revision of a fresh store is 0, so `watch(prefix, 0)` replays all history.
//   - `compact(revision)` with `revision` at or below the compacted revision is a no-op; above
//     `currentRevision() + 1` it fails with kInvalidArgument.
//   - A WatchHandle destroyed inside its own callback cannot wait for that callback to return (it
//     is the caller); the callback then finishes its current call and is never called again. Any
//     other destruction waits until the callback is not running.
//   - `commit` and `compact` called on the writer thread (from a `commitAsync` completion) fail
//     with kFailedPrecondition instead of deadlocking.
//   - Callbacks (`done`, watch callbacks) that throw are logged; a throwing watch callback is
//     cancelled.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::store {

struct SqliteStoreOptions {
  // Keep the change history of at least this many recent revisions for `watch`. The writer drops
  // older history by itself, in small steps, once it exceeds this by an eighth. 0 or less turns
  // automatic compaction off (only `compact` drops history).
  int64_t historyRetention = 200000;
  // The most transactions applied in one SQLite transaction (one fsync).
  size_t maxBatchSize = 1024;
  // Idle read connections kept open; more are opened on demand under concurrent reads.
  size_t maxIdleReadConnections = 8;
  // If positive, caps the database size at this many pages (PRAGMA max_page_count) on the write
  // connection: a write that needs more fails with SQLITE_FULL and poisons the store. A disk quota;
  // tests use it to provoke a write error.
  int64_t maxPageCount = 0;
};

class WatchHub;
namespace sqlite_detail {
class ReadPool;
class Writer;
}  // namespace sqlite_detail

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) the database at `path`. Fails with kUnavailable if the database is
  // already open elsewhere, kIo on SQLite or filesystem errors, kFailedPrecondition if the file
  // holds a schema from a newer version.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                   SqliteStoreOptions options = {});

  // Finishes every queued commit, stops the store's threads and closes the database. Pending watch
  // events are dropped; no callback runs after the destructor returns. WatchHandles may outlive
  // the store. Must not run inside one of the store's callbacks.
  ~SqliteStore() override;

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

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

 private:
  SqliteStore();

  int lockFd_ = -1;
  std::unique_ptr<sqlite_detail::ReadPool> readPool_;
  std::shared_ptr<WatchHub> hub_;
  std::unique_ptr<sqlite_detail::Writer> writer_;
};

}  // namespace skiff::store
