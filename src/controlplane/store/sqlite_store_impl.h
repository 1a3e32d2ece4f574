#pragma once

// The parts of SqliteStore (internal to src/controlplane/store): the pool of read connections
// (sqlite_read_pool.cpp) and the writer thread that owns the only write connection
// (sqlite_writer.cpp). sqlite_store.cpp is the facade that ties them to a WatchHub.
//
// Schema: `kv` holds the current value of every key; `changes` holds one row per changed key per
// revision (`sub` orders the keys of one revision) and feeds `watch`; `meta` holds the current and
// compacted revisions in its single row.

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "controlplane/store/sqlite_statement.h"
#include "controlplane/store/sqlite_store.h"
#include "controlplane/store/store.h"
#include "controlplane/store/watch_hub.h"

namespace skiff::store::sqlite_detail {

inline constexpr int kBusyTimeoutMs = 5000;

// The `kind` column of `changes`.
enum ChangeKind : int64_t { kChangePut = 0, kChangeDelete = 1 };

// Calls a user callback, logging instead of propagating what it throws.
template <typename Fn, typename... Args>
void invokeCallback(const char* what, Fn& fn, Args&&... args) {
  try {
    fn(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    spdlog::error("sqlite store: {} threw: {}", what, e.what());
  } catch (...) {
    spdlog::error("sqlite store: {} threw a non-standard exception", what);
  }
}

// ------------------------------------------------------------------------------------------------
// Read connections.

// A read-only connection with its prepared statements.
struct ReadConn {
  ~ReadConn() {
    // close_v2 defers the close until the member statements are finalized right after this.
    sqlite3_close_v2(db);
  }

  sqlite3* db = nullptr;
  Stmt begin;
  Stmt commit;
  Stmt get;             // ?1 key.
  Stmt rangeBounded;    // ?1 begin, ?2 end, ?3 limit; columns as readKeyValue.
  Stmt rangeOpen;       // ?1 begin, ?2 limit.
  Stmt meta;            // current_rev, compacted_rev.
  Stmt historyBounded;  // ?1 from revision, ?2 prefix, ?3 prefix end.
  Stmt historyOpen;     // ?1 from revision, ?2 prefix.
};

// Read connections, opened on demand and kept for reuse up to `maxIdle`. Thread-safe.
class ReadPool {
 public:
  ReadPool(std::string path, size_t maxIdle) : path_(std::move(path)), maxIdle_(maxIdle) {}

  // A connection on loan; it goes back to the pool when the lease is destroyed, unless it was
  // left inside a transaction.
  class Lease {
   public:
    Lease(ReadPool* pool, std::unique_ptr<ReadConn> conn) : pool_(pool), conn_(std::move(conn)) {}
    ~Lease() {
      if (conn_) pool_->release(std::move(conn_));
    }
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ReadConn* operator->() const { return conn_.get(); }
    ReadConn& operator*() const { return *conn_; }

   private:
    ReadPool* pool_;
    std::unique_ptr<ReadConn> conn_;
  };

  // An idle connection, or a new one. Fails with kIo when a new one cannot be opened.
  Result<Lease> acquire();

 private:
  Result<std::unique_ptr<ReadConn>> openConn();
  void release(std::unique_ptr<ReadConn> conn);

  const std::string path_;
  const size_t maxIdle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ReadConn>> idle_;
};

// One read transaction: every statement inside it reads the same WAL snapshot. It ends when the
// object is destroyed.
class ReadTxn {
 public:
  static Result<ReadTxn> begin(ReadConn& conn);
  ReadTxn(ReadTxn&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
  ReadTxn& operator=(ReadTxn&&) = delete;
  ~ReadTxn();

 private:
  explicit ReadTxn(ReadConn& conn) : conn_(&conn) {}
  ReadConn* conn_;
};

struct Meta {
  Revision current = 0;
  Revision compacted = 0;
};

// Reads the meta row on `conn` (inside a ReadTxn for a consistent snapshot).
Result<Meta> readMeta(ReadConn& conn);

// ------------------------------------------------------------------------------------------------
// The writer.

// One request to the writer: a transaction, or a compaction when `compactTo` is set.
struct Pending {
  Txn txn;
  std::optional<Revision> compactTo;  // Set for a compaction request instead of a transaction.
  std::optional<Error> rejected;      // Set when the request failed validation.
  std::function<void(Result<TxnResult>)> done;
};

// Owns the write connection and the thread that applies queued requests in batches, one SQLite
// transaction per batch, and publishes each durable batch's events to the hub. The revision
// counters are read from any thread; everything else runs on the writer thread.
class Writer {
 public:
  // Opens the database at `path`, creating the schema if needed.
  static Result<std::unique_ptr<Writer>> open(const std::string& path,
                                              const SqliteStoreOptions& options,
                                              std::shared_ptr<WatchHub> hub);

  ~Writer();

  void start();

  // Completes every queued request, then stops the writer thread.
  void stop();

  // Queues a request; after `stop` it completes at once with kUnavailable.
  void submit(Pending pending);

  bool onWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  Revision currentRevision() const { return currentRev_.load(std::memory_order_acquire); }
  Revision compactedRevision() const { return compactedRev_.load(std::memory_order_acquire); }
  // The largest key plus value that fits in one row.
  int64_t maxRowBytes() const { return maxRowBytes_; }

 private:
  Writer(const SqliteStoreOptions& options, std::shared_ptr<WatchHub> hub);

  Status openDb(const std::string& path);
  void run();
  void runBatch(std::vector<Pending>& batch);
  void complete(Pending& p, Result<TxnResult> result);
  Status applyBatch(std::vector<Pending>& batch, std::vector<Result<TxnResult>>& results,
                    std::vector<Event>& events);
  // Errors returned are write errors that abort the batch; the transaction's outcome goes to
  // `out`.
  Status applyTxn(Txn& txn, std::vector<Event>& events, TxnResult& out);
  Status insertChange(Revision rev, int64_t sub, ChangeKind kind, const std::string& key,
                      const std::string& value, int64_t createRevision, int64_t version);
  Status deleteHistoryBefore(Revision revision);
  Status applyCompact(Revision revision, Result<TxnResult>& out);
  Status autoCompact();

  SqliteStoreOptions options_;
  std::shared_ptr<WatchHub> hub_;
  int64_t autoCompactSlack_ = 1;
  int64_t autoCompactChunk_ = 4096;
  sqlite3* db_ = nullptr;
  int64_t maxRowBytes_ = 0;

  Stmt begin_;
  Stmt commit_;
  Stmt rollback_;
  Stmt lookup_;
  Stmt upsert_;
  Stmt delete_;
  Stmt insertChange_;
  Stmt updateMeta_;
  Stmt compact_;
  Stmt meta_;

  // Owned by the writer thread (and by `openDb` before it starts).
  Revision rev_ = 0;
  Revision compacted_ = 0;
  bool autoCompacting_ = false;
  std::optional<Error> poison_;

  std::atomic<Revision> currentRev_{0};
  std::atomic<Revision> compactedRev_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace skiff::store::sqlite_detail
