#include "controlplane/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <future>
#include <limits>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

// Propagates the error of a Status/Result expression unchanged.
#define SKIFF_SQLITE_TRY(expr)                                         \
  do {                                                                 \
    auto skiff_sqlite_status_ = (expr);                                \
    if (!skiff_sqlite_status_) {                                       \
      return std::unexpected(std::move(skiff_sqlite_status_).error()); \
    }                                                                  \
  } while (false)

namespace skiff::store {
namespace sqlite_detail {
namespace {

constexpr int64_t kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 5000;
constexpr size_t kMaxBatchSize = 1 << 16;
// Room for the record header and the integer columns next to a key and value.
constexpr int64_t kRowOverheadBytes = 1024;

enum ChangeKind : int64_t { kChangePut = 0, kChangeDelete = 1 };

Error sqliteError(sqlite3* db, int rc, std::string_view what, ErrorCode code = ErrorCode::kIo) {
  std::string message(what);
  message.append(": ");
  if (db != nullptr && (sqlite3_errcode(db) & 0xff) == (rc & 0xff)) {
    message.append(sqlite3_errmsg(db));
  } else {
    message.append(sqlite3_errstr(rc));
  }
  message.append(" (sqlite code ").append(std::to_string(rc)).append(")");
  return Error(code, std::move(message));
}

// Read failures that may pass on retrying are kUnavailable; everything else is an I/O failure.
ErrorCode readErrorCode(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? ErrorCode::kUnavailable
                                                            : ErrorCode::kIo;
}

// A prepared statement, finalized on destruction. `name` identifies it in error messages.
class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3_stmt* stmt, const char* name) : stmt_(stmt), name_(name) {}
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(Stmt&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)), name_(other.name_) {}
  Stmt& operator=(Stmt&& other) noexcept {
    if (this != &other) {
      sqlite3_finalize(stmt_);
      stmt_ = std::exchange(other.stmt_, nullptr);
      name_ = other.name_;
    }
    return *this;
  }

  sqlite3_stmt* get() const { return stmt_; }
  const char* name() const { return name_; }

  Error error(int rc, ErrorCode code = ErrorCode::kIo) const {
    return sqliteError(sqlite3_db_handle(stmt_), rc, name_, code);
  }

  Status bindBlob(int index, const std::string& value) const {
    // SQLITE_STATIC: every caller keeps `value` alive until the statement is reset.
    int rc = sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_STATIC);
    if (rc != SQLITE_OK) return std::unexpected(error(rc));
    return {};
  }

  Status bindInt(int index, int64_t value) const {
    int rc = sqlite3_bind_int64(stmt_, index, value);
    if (rc != SQLITE_OK) return std::unexpected(error(rc));
    return {};
  }

  // True when a row is available, false when the statement is done. Errors are kIo.
  Result<bool> step() const {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return std::unexpected(error(rc));
  }

  // Like `step`, for read connections: errors that may pass on retrying are kUnavailable.
  Result<bool> stepRead() const {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return std::unexpected(error(rc, readErrorCode(rc)));
  }

  // Steps through every remaining row (RETURNING statements must run to completion).
  Status finish() const {
    for (;;) {
      auto row = step();
      if (!row) return std::unexpected(std::move(row).error());
      if (!*row) return {};
    }
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  const char* name_ = "";
};

// Resets a statement and clears its bindings when leaving scope, so it is ready for reuse and
// holds no read lock and no pointer into the caller's strings.
class StmtScope {
 public:
  explicit StmtScope(const Stmt& stmt) : stmt_(stmt.get()) {}
  ~StmtScope() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

Result<Stmt> prepare(sqlite3* db, const char* name, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return std::unexpected(sqliteError(db, rc, std::string("prepare ") + name));
  }
  return Stmt(stmt, name);
}

Status execSql(sqlite3* db, const char* what, const char* sql) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sqliteError(db, rc, what));
  return {};
}

// Runs a statement (typically a PRAGMA) and returns the first column of its first row as text.
Result<std::string> queryText(sqlite3* db, const char* what, const char* sql) {
  auto stmt = prepare(db, what, sql);
  if (!stmt) return std::unexpected(std::move(stmt).error());
  auto row = stmt->step();
  if (!row) return std::unexpected(std::move(row).error());
  std::string text;
  if (*row) {
    const unsigned char* data = sqlite3_column_text(stmt->get(), 0);
    if (data != nullptr) text.assign(reinterpret_cast<const char*>(data));
  }
  SKIFF_SQLITE_TRY(stmt->finish());
  return text;
}

std::string columnBytes(sqlite3_stmt* stmt, int column) {
  // sqlite3_column_blob before sqlite3_column_bytes, as the SQLite documentation requires.
  const void* data = sqlite3_column_blob(stmt, column);
  int size = sqlite3_column_bytes(stmt, column);
  if (data == nullptr || size <= 0) return {};
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

// Columns: key, value, create_rev, mod_rev, version.
void readKeyValue(sqlite3_stmt* stmt, KeyValue& kv) {
  kv.key = columnBytes(stmt, 0);
  kv.value = columnBytes(stmt, 1);
  kv.createRevision = sqlite3_column_int64(stmt, 2);
  kv.modRevision = sqlite3_column_int64(stmt, 3);
  kv.version = sqlite3_column_int64(stmt, 4);
}

Status fsyncDirectoryOf(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errnoError("open directory " + dir.string(), errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return std::unexpected(errnoError("fsync directory " + dir.string(), err));
  return {};
}

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

}  // namespace

// ------------------------------------------------------------------------------------------------
// Watch delivery.

struct Watcher {
  Watcher(std::string prefixIn, Revision fromRevisionIn, WatchCallback callbackIn)
      : prefix(std::move(prefixIn)),
        fromRevision(fromRevisionIn),
        callback(std::move(callbackIn)) {}

  const std::string prefix;
  const Revision fromRevision;
  // Everything below is guarded by WatchHub::mu_, except that the delivery thread calls
  // `callback` without the lock while `running` is set.
  WatchCallback callback;
  bool ready = false;      // History is queued; live events go straight to `queue`.
  bool cancelled = false;  // Never called again.
  bool running = false;    // The delivery thread is inside `callback`.
  bool queued = false;     // In WatchHub::ready_.
  // Events at or below this revision are already in the history read by `watch`. A batch may be
  // published after that read even though it committed before it, so live events are filtered
  // against this for as long as the watcher lives, not only while buffering.
  Revision snapshotRevision = 0;
  std::vector<Event> buffered;  // Live events that arrived while the history was being read.
  std::vector<Event> queue;     // Events waiting for delivery, in revision order.
};

class WatchHub {
 public:
  WatchHub() = default;
  ~WatchHub() { stop(); }
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  void start() {
    std::lock_guard lock(mu_);
    thread_ = std::thread([this] { run(); });
    threadId_ = thread_.get_id();
  }

  // Stops the delivery thread after the callback it may be running; drops undelivered events.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::vector<std::shared_ptr<Watcher>> watchers;
    std::deque<std::shared_ptr<Watcher>> ready;
    {
      std::lock_guard lock(mu_);
      watchers.swap(watchers_);
      ready.swap(ready_);
      for (auto& w : watchers) {
        w->cancelled = true;
        w->queue.clear();
        w->buffered.clear();
      }
    }
  }

  // Registers a watcher that buffers live events until `activate`.
  std::shared_ptr<Watcher> add(std::string prefix, Revision fromRevision, WatchCallback callback) {
    auto w = std::make_shared<Watcher>(std::move(prefix), fromRevision, std::move(callback));
    std::lock_guard lock(mu_);
    if (stopping_) {
      w->cancelled = true;
    } else {
      watchers_.push_back(w);
    }
    return w;
  }

  // Queues `history` (every matching change up to `snapshotRevision`), then the buffered live
  // events past the snapshot, and switches the watcher to live delivery.
  void activate(const std::shared_ptr<Watcher>& w, std::vector<Event> history,
                Revision snapshotRevision) {
    {
      std::lock_guard lock(mu_);
      if (w->cancelled) return;
      w->queue = std::move(history);
      w->snapshotRevision = snapshotRevision;
      for (Event& e : w->buffered) {
        if (e.kv.modRevision > snapshotRevision) w->queue.push_back(std::move(e));
      }
      w->buffered.clear();
      w->buffered.shrink_to_fit();
      w->ready = true;
      if (w->queue.empty()) return;
      enqueueLocked(w);
    }
    wake_.notify_one();
  }

  // Cancels `w`. Waits for a running callback unless called from inside the delivery thread,
  // where the running callback is the caller itself.
  void remove(const std::shared_ptr<Watcher>& w) {
    WatchCallback callback;
    {
      std::unique_lock lock(mu_);
      w->cancelled = true;
      std::erase(watchers_, w);
      if (std::this_thread::get_id() != threadId_) {
        idle_.wait(lock, [&] { return !w->running; });
      }
      w->queue.clear();
      w->buffered.clear();
      // The callback's captures are released here, on the caller's thread, unless the callback is
      // the caller; then the delivery thread releases them when it returns.
      if (!w->running) callback = std::move(w->callback);
    }
  }

  // Hands the events of one durable batch (in revision order) to every matching watcher.
  void publish(const std::vector<Event>& events) {
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      for (const auto& w : watchers_) {
        if (w->cancelled) continue;
        std::vector<Event>& dest = w->ready ? w->queue : w->buffered;
        const Revision after = w->ready ? w->snapshotRevision : 0;
        size_t before = dest.size();
        for (const Event& e : events) {
          if (e.kv.modRevision >= w->fromRevision && e.kv.modRevision > after &&
              e.kv.key.starts_with(w->prefix)) {
            dest.push_back(e);
          }
        }
        if (w->ready && dest.size() > before && !w->queued) {
          enqueueLocked(w);
          wake = true;
        }
      }
    }
    if (wake) wake_.notify_one();
  }

 private:
  void enqueueLocked(const std::shared_ptr<Watcher>& w) {
    if (w->queued) return;
    w->queued = true;
    ready_.push_back(w);
  }

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      std::shared_ptr<Watcher> w = std::move(ready_.front());
      ready_.pop_front();
      w->queued = false;
      if (w->cancelled || w->queue.empty()) continue;
      std::vector<Event> batch = std::move(w->queue);
      w->queue.clear();
      w->running = true;
      lock.unlock();

      bool threw = false;
      try {
        w->callback(batch);
      } catch (const std::exception& e) {
        threw = true;
        spdlog::error("sqlite store: watch callback for prefix '{}' threw, cancelling it: {}",
                      w->prefix, e.what());
      } catch (...) {
        threw = true;
        spdlog::error("sqlite store: watch callback for prefix '{}' threw, cancelling it",
                      w->prefix);
      }
      batch.clear();

      lock.lock();
      w->running = false;
      if (threw) {
        w->cancelled = true;
        w->queue.clear();
        std::erase(watchers_, w);
      }
      WatchCallback released;
      // A handle destroyed from inside its own callback left the callback to be released here.
      if (w->cancelled && !threw) released = std::move(w->callback);
      idle_.notify_all();
      lock.unlock();
      released = nullptr;
      w.reset();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;  // Work for the delivery thread, or stop.
  std::condition_variable idle_;  // A callback returned.
  std::vector<std::shared_ptr<Watcher>> watchers_;
  std::deque<std::shared_ptr<Watcher>> ready_;  // Watchers with queued events, round robin.
  bool stopping_ = false;
  std::thread::id threadId_;
  std::thread thread_;
};

namespace {

class SqliteWatchHandle final : public WatchHandle {
 public:
  SqliteWatchHandle(std::shared_ptr<WatchHub> hub, std::shared_ptr<Watcher> watcher)
      : hub_(std::move(hub)), watcher_(std::move(watcher)) {}
  ~SqliteWatchHandle() override { hub_->remove(watcher_); }

 private:
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<Watcher> watcher_;
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Read connections.

struct ReadConn {
  ~ReadConn() {
    // close_v2 defers the close until the member statements are finalized right after this.
    sqlite3_close_v2(db);
  }

  sqlite3* db = nullptr;
  Stmt begin;
  Stmt commit;
  Stmt get;
  Stmt rangeBounded;
  Stmt rangeOpen;
  Stmt meta;
  Stmt historyBounded;
  Stmt historyOpen;
};

class ReadPool {
 public:
  ReadPool(std::string path, size_t maxIdle) : path_(std::move(path)), maxIdle_(maxIdle) {}

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

  Result<Lease> acquire() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn));
      }
    }
    auto conn = openConn();
    if (!conn) return std::unexpected(std::move(conn).error());
    return Lease(this, std::move(*conn));
  }

 private:
  Result<std::unique_ptr<ReadConn>> openConn() {
    auto conn = std::make_unique<ReadConn>();
    int rc = sqlite3_open_v2(path_.c_str(), &conn->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      return std::unexpected(sqliteError(conn->db, rc, "open read connection to " + path_));
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, kBusyTimeoutMs);
    SKIFF_SQLITE_TRY(execSql(conn->db, "set query_only", "PRAGMA query_only = ON"));
    struct Spec {
      Stmt ReadConn::*member;
      const char* name;
      const char* sql;
    };
    static constexpr Spec kSpecs[] = {
        {&ReadConn::begin, "begin read", "BEGIN"},
        {&ReadConn::commit, "end read", "COMMIT"},
        {&ReadConn::get, "select key",
         "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?1"},
        {&ReadConn::rangeBounded, "select range",
         "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key >= ?1 AND key < ?2 "
         "ORDER BY key LIMIT ?3"},
        {&ReadConn::rangeOpen, "select open range",
         "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key >= ?1 "
         "ORDER BY key LIMIT ?2"},
        {&ReadConn::meta, "select meta",
         "SELECT current_rev, compacted_rev FROM meta WHERE id = 1"},
        {&ReadConn::historyBounded, "select history",
         "SELECT rev, kind, key, value, create_rev, version FROM changes "
         "WHERE rev >= ?1 AND key >= ?2 AND key < ?3 ORDER BY rev, sub"},
        {&ReadConn::historyOpen, "select open history",
         "SELECT rev, kind, key, value, create_rev, version FROM changes "
         "WHERE rev >= ?1 AND key >= ?2 ORDER BY rev, sub"},
    };
    for (const Spec& spec : kSpecs) {
      auto stmt = prepare(conn->db, spec.name, spec.sql);
      if (!stmt) return std::unexpected(std::move(stmt).error());
      (*conn).*(spec.member) = std::move(*stmt);
    }
    return conn;
  }

  void release(std::unique_ptr<ReadConn> conn) {
    // A connection left inside a transaction (an error or exception mid-read) is not reused.
    if (sqlite3_get_autocommit(conn->db) == 0) return;
    std::lock_guard lock(mu_);
    if (idle_.size() < maxIdle_) idle_.push_back(std::move(conn));
  }

  const std::string path_;
  const size_t maxIdle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ReadConn>> idle_;
};

namespace {

// One read transaction: every statement inside it reads the same WAL snapshot.
class ReadTxn {
 public:
  static Result<ReadTxn> begin(ReadConn& conn) {
    StmtScope scope(conn.begin);
    auto done = conn.begin.stepRead();
    if (!done) return std::unexpected(std::move(done).error());
    return ReadTxn(conn);
  }
  ReadTxn(ReadTxn&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
  ReadTxn& operator=(ReadTxn&&) = delete;
  ~ReadTxn() {
    if (conn_ == nullptr) return;
    StmtScope scope(conn_->commit);
    // A failure leaves the connection in a transaction; ReadPool::release then discards it.
    (void)conn_->commit.step();
  }

 private:
  explicit ReadTxn(ReadConn& conn) : conn_(&conn) {}
  ReadConn* conn_;
};

struct Meta {
  Revision current = 0;
  Revision compacted = 0;
};

Result<Meta> readMeta(ReadConn& conn) {
  StmtScope scope(conn.meta);
  auto row = conn.meta.stepRead();
  if (!row) return std::unexpected(std::move(row).error());
  if (!*row) return fail(ErrorCode::kIo, "select meta: the meta row is missing");
  return Meta{sqlite3_column_int64(conn.meta.get(), 0), sqlite3_column_int64(conn.meta.get(), 1)};
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// The writer.

struct Pending {
  Txn txn;
  std::optional<Revision> compactTo;  // Set for a compaction request instead of a transaction.
  std::optional<Error> rejected;      // Set when the request failed validation.
  std::function<void(Result<TxnResult>)> done;
};

class Writer {
 public:
  static Result<std::unique_ptr<Writer>> open(const std::string& path,
                                              const SqliteStoreOptions& options,
                                              std::shared_ptr<WatchHub> hub) {
    std::unique_ptr<Writer> w(new Writer(options, std::move(hub)));
    SKIFF_SQLITE_TRY(w->openDb(path));
    return w;
  }

  ~Writer() {
    stop();
    // close_v2 defers the close until the member statements are finalized right after this.
    sqlite3_close_v2(db_);
  }

  void start() {
    thread_ = std::thread([this] { run(); });
  }

  // Completes every queued request, then stops the writer thread.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
  }

  void submit(Pending pending) {
    {
      std::unique_lock lock(mu_);
      if (!stopping_) {
        bool wasEmpty = queue_.empty();
        queue_.push_back(std::move(pending));
        lock.unlock();
        // The writer only sleeps on an empty queue.
        if (wasEmpty) cv_.notify_one();
        return;
      }
    }
    invokeCallback("commit completion", pending.done,
                   fail(ErrorCode::kUnavailable, "commit: the store is closed"));
  }

  bool onWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  Revision currentRevision() const { return currentRev_.load(std::memory_order_acquire); }
  Revision compactedRevision() const { return compactedRev_.load(std::memory_order_acquire); }
  // The largest key plus value that fits in one row.
  int64_t maxRowBytes() const { return maxRowBytes_; }

 private:
  Writer(const SqliteStoreOptions& options, std::shared_ptr<WatchHub> hub)
      : options_(options), hub_(std::move(hub)) {
    options_.maxBatchSize = std::clamp<size_t>(options_.maxBatchSize, 1, kMaxBatchSize);
    autoCompactSlack_ = std::max<int64_t>(options_.historyRetention / 8, 1);
    autoCompactChunk_ = std::max<int64_t>(4096, 2 * static_cast<int64_t>(options_.maxBatchSize));
  }

  Status openDb(const std::string& path) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(sqliteError(db_, rc, "open " + path));
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);

    auto mode = queryText(db_, "set journal_mode", "PRAGMA journal_mode = WAL");
    if (!mode) return std::unexpected(std::move(mode).error());
    if (*mode != "wal") {
      return fail(ErrorCode::kIo, "set journal_mode: SQLite kept mode '" + *mode + "', not WAL");
    }
    SKIFF_SQLITE_TRY(execSql(db_, "set synchronous", "PRAGMA synchronous = FULL"));
    // Keep a large WAL from lingering after a burst; the checkpoint itself is automatic.
    SKIFF_SQLITE_TRY(
        execSql(db_, "set journal_size_limit", "PRAGMA journal_size_limit = 67108864"));
    SKIFF_SQLITE_TRY(execSql(db_, "set cache_size", "PRAGMA cache_size = -16384"));
    if (options_.maxPageCount > 0) {
      std::string sql = "PRAGMA max_page_count = " + std::to_string(options_.maxPageCount);
      SKIFF_SQLITE_TRY(queryText(db_, "set max_page_count", sql.c_str()));
    }

    auto version = queryText(db_, "read user_version", "PRAGMA user_version");
    if (!version) return std::unexpected(std::move(version).error());
    if (std::stoll(version->empty() ? "0" : *version) > kSchemaVersion) {
      return fail(ErrorCode::kFailedPrecondition, "open " + path + ": schema version " + *version +
                                                      " is newer than this build supports");
    }
    SKIFF_SQLITE_TRY(execSql(db_, "create schema", R"sql(
      BEGIN IMMEDIATE;
      CREATE TABLE IF NOT EXISTS kv (
        key BLOB NOT NULL PRIMARY KEY,
        value BLOB NOT NULL,
        create_rev INTEGER NOT NULL,
        mod_rev INTEGER NOT NULL,
        version INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS changes (
        rev INTEGER NOT NULL,
        sub INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        create_rev INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (rev, sub)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        current_rev INTEGER NOT NULL,
        compacted_rev INTEGER NOT NULL
      );
      INSERT OR IGNORE INTO meta (id, current_rev, compacted_rev) VALUES (1, 0, 0);
      PRAGMA user_version = 1;
      COMMIT;
    )sql"));
    // The database and WAL files may be new; make their directory entries durable too.
    SKIFF_SQLITE_TRY(fsyncDirectoryOf(path));

    struct Spec {
      Stmt Writer::*member;
      const char* name;
      const char* sql;
    };
    static constexpr Spec kSpecs[] = {
        {&Writer::begin_, "begin batch", "BEGIN IMMEDIATE"},
        {&Writer::commit_, "commit batch", "COMMIT"},
        {&Writer::rollback_, "rollback batch", "ROLLBACK"},
        {&Writer::lookup_, "compare lookup", "SELECT mod_rev FROM kv WHERE key = ?1"},
        {&Writer::upsert_, "upsert key",
         "INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?1, ?2, ?3, ?3, 1) "
         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev, "
         "version = version + 1 RETURNING create_rev, version"},
        {&Writer::delete_, "delete key", "DELETE FROM kv WHERE key = ?1 RETURNING mod_rev"},
        {&Writer::insertChange_, "insert change",
         "INSERT INTO changes (rev, sub, kind, key, value, create_rev, version) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
        {&Writer::updateMeta_, "update meta",
         "UPDATE meta SET current_rev = ?1, compacted_rev = ?2 WHERE id = 1"},
        {&Writer::compact_, "delete history", "DELETE FROM changes WHERE rev < ?1"},
        {&Writer::meta_, "select meta", "SELECT current_rev, compacted_rev FROM meta WHERE id = 1"},
    };
    for (const Spec& spec : kSpecs) {
      auto stmt = prepare(db_, spec.name, spec.sql);
      if (!stmt) return std::unexpected(std::move(stmt).error());
      this->*(spec.member) = std::move(*stmt);
    }

    {
      StmtScope scope(meta_);
      auto row = meta_.step();
      if (!row) return std::unexpected(std::move(row).error());
      if (!*row) return fail(ErrorCode::kIo, "select meta: the meta row is missing");
      rev_ = sqlite3_column_int64(meta_.get(), 0);
      compacted_ = sqlite3_column_int64(meta_.get(), 1);
    }
    currentRev_.store(rev_);
    compactedRev_.store(compacted_);
    maxRowBytes_ = sqlite3_limit(db_, SQLITE_LIMIT_LENGTH, -1) - kRowOverheadBytes;
    return {};
  }

  void run() {
    std::vector<Pending> batch;
    batch.reserve(std::min<size_t>(options_.maxBatchSize, 4096));
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        size_t n = std::min(queue_.size(), options_.maxBatchSize);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      runBatch(batch);
      batch.clear();
    }
  }

  void runBatch(std::vector<Pending>& batch) {
    if (poison_) {
      for (Pending& p : batch) complete(p, std::unexpected(*poison_));
      return;
    }
    const Revision startRev = rev_;
    const Revision startCompacted = compacted_;
    const bool startAutoCompacting = autoCompacting_;
    std::vector<Result<TxnResult>> results;
    results.reserve(batch.size());
    std::vector<Event> events;

    Status applied = applyBatch(batch, results, events);
    if (!applied) {
      if (sqlite3_get_autocommit(db_) == 0) {
        StmtScope scope(rollback_);
        if (auto rolledBack = rollback_.finish(); !rolledBack) {
          spdlog::error("sqlite store: {}", rolledBack.error().message());
        }
      }
      rev_ = startRev;
      compacted_ = startCompacted;
      autoCompacting_ = startAutoCompacting;
      poison_ = Error(ErrorCode::kIo, applied.error().message());
      spdlog::error("sqlite store: write failed, refusing further commits: {}", poison_->message());
      for (Pending& p : batch) complete(p, std::unexpected(*poison_));
      return;
    }

    currentRev_.store(rev_, std::memory_order_release);
    compactedRev_.store(compacted_, std::memory_order_release);
    for (size_t i = 0; i < batch.size(); ++i) complete(batch[i], std::move(results[i]));
    if (!events.empty()) hub_->publish(events);
  }

  void complete(Pending& p, Result<TxnResult> result) {
    if (p.done) invokeCallback("commit completion", p.done, std::move(result));
  }

  Status applyBatch(std::vector<Pending>& batch, std::vector<Result<TxnResult>>& results,
                    std::vector<Event>& events) {
    const Revision startRev = rev_;
    const Revision startCompacted = compacted_;
    {
      StmtScope scope(begin_);
      SKIFF_SQLITE_TRY(begin_.finish());
    }
    for (Pending& p : batch) {
      if (p.rejected) {
        results.push_back(std::unexpected(*p.rejected));
      } else if (p.compactTo) {
        results.emplace_back();
        SKIFF_SQLITE_TRY(applyCompact(*p.compactTo, results.back()));
      } else {
        results.emplace_back();
        SKIFF_SQLITE_TRY(applyTxn(p.txn, events, *results.back()));
      }
    }
    SKIFF_SQLITE_TRY(autoCompact());
    if (rev_ != startRev || compacted_ != startCompacted) {
      StmtScope scope(updateMeta_);
      SKIFF_SQLITE_TRY(updateMeta_.bindInt(1, rev_));
      SKIFF_SQLITE_TRY(updateMeta_.bindInt(2, compacted_));
      SKIFF_SQLITE_TRY(updateMeta_.finish());
    }
    StmtScope scope(commit_);
    return commit_.finish();
  }

  // Errors returned are write errors that abort the batch; the transaction's outcome goes to
  // `out`.
  Status applyTxn(Txn& txn, std::vector<Event>& events, TxnResult& out) {
    bool holds = true;
    for (const Compare& c : txn.compares) {
      Revision modRevision = 0;
      {
        StmtScope scope(lookup_);
        SKIFF_SQLITE_TRY(lookup_.bindBlob(1, c.key));
        auto row = lookup_.step();
        if (!row) return std::unexpected(std::move(row).error());
        if (*row) modRevision = sqlite3_column_int64(lookup_.get(), 0);
      }
      switch (c.kind) {
        case Compare::Kind::kExists:
          holds = modRevision != 0;
          break;
        case Compare::Kind::kNotExists:
          holds = modRevision == 0;
          break;
        case Compare::Kind::kModRevisionIs:
          holds = modRevision == c.revision;
          break;
      }
      if (!holds) break;
    }

    std::vector<Op>& ops = holds ? txn.onSuccess : txn.onFailure;
    const Revision next = rev_ + 1;
    int64_t sub = 0;
    for (Op& op : ops) {
      if (op.kind == Op::Kind::kPut) {
        int64_t createRevision = 0;
        int64_t version = 0;
        {
          StmtScope scope(upsert_);
          SKIFF_SQLITE_TRY(upsert_.bindBlob(1, op.key));
          SKIFF_SQLITE_TRY(upsert_.bindBlob(2, op.value));
          SKIFF_SQLITE_TRY(upsert_.bindInt(3, next));
          auto row = upsert_.step();
          if (!row) return std::unexpected(std::move(row).error());
          if (!*row) return fail(ErrorCode::kIo, "upsert key: no row returned");
          createRevision = sqlite3_column_int64(upsert_.get(), 0);
          version = sqlite3_column_int64(upsert_.get(), 1);
          SKIFF_SQLITE_TRY(upsert_.finish());
        }
        SKIFF_SQLITE_TRY(
            insertChange(next, sub++, kChangePut, op.key, op.value, createRevision, version));
        events.push_back(Event{Event::Kind::kPut, KeyValue{std::move(op.key), std::move(op.value),
                                                           createRevision, next, version}});
      } else {
        bool existed = false;
        {
          StmtScope scope(delete_);
          SKIFF_SQLITE_TRY(delete_.bindBlob(1, op.key));
          auto row = delete_.step();
          if (!row) return std::unexpected(std::move(row).error());
          existed = *row;
          SKIFF_SQLITE_TRY(delete_.finish());
        }
        if (!existed) continue;
        SKIFF_SQLITE_TRY(insertChange(next, sub++, kChangeDelete, op.key, {}, 0, 0));
        events.push_back(Event{Event::Kind::kDelete, KeyValue{std::move(op.key), {}, 0, next, 0}});
      }
    }
    if (sub > 0) rev_ = next;
    out = TxnResult{holds, rev_};
    return {};
  }

  Status insertChange(Revision rev, int64_t sub, ChangeKind kind, const std::string& key,
                      const std::string& value, int64_t createRevision, int64_t version) {
    StmtScope scope(insertChange_);
    SKIFF_SQLITE_TRY(insertChange_.bindInt(1, rev));
    SKIFF_SQLITE_TRY(insertChange_.bindInt(2, sub));
    SKIFF_SQLITE_TRY(insertChange_.bindInt(3, kind));
    SKIFF_SQLITE_TRY(insertChange_.bindBlob(4, key));
    SKIFF_SQLITE_TRY(insertChange_.bindBlob(5, value));
    SKIFF_SQLITE_TRY(insertChange_.bindInt(6, createRevision));
    SKIFF_SQLITE_TRY(insertChange_.bindInt(7, version));
    return insertChange_.finish();
  }

  Status deleteHistoryBefore(Revision revision) {
    StmtScope scope(compact_);
    SKIFF_SQLITE_TRY(compact_.bindInt(1, revision));
    SKIFF_SQLITE_TRY(compact_.finish());
    compacted_ = revision;
    return {};
  }

  Status applyCompact(Revision revision, Result<TxnResult>& out) {
    if (revision > rev_ + 1) {
      out = fail(ErrorCode::kInvalidArgument, "compact: revision " + std::to_string(revision) +
                                                  " is past the current revision " +
                                                  std::to_string(rev_));
      return {};
    }
    out = TxnResult{true, rev_};
    if (revision <= compacted_) return {};
    return deleteHistoryBefore(revision);
  }

  // Drops history beyond the retention in steps of at most `autoCompactChunk_` revisions per
  // batch, so no single batch stalls on a large delete. It starts once the excess reaches
  // `autoCompactSlack_`, so it does not run on every batch.
  Status autoCompact() {
    if (options_.historyRetention <= 0) return {};
    const Revision target = rev_ - options_.historyRetention;
    if (target <= compacted_) {
      autoCompacting_ = false;
      return {};
    }
    if (!autoCompacting_ && target - compacted_ < autoCompactSlack_) return {};
    autoCompacting_ = true;
    const Revision to = std::min(target, compacted_ + autoCompactChunk_);
    SKIFF_SQLITE_TRY(deleteHistoryBefore(to));
    if (to >= target) autoCompacting_ = false;
    return {};
  }

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

}  // namespace sqlite_detail

// ------------------------------------------------------------------------------------------------
// SqliteStore.

using sqlite_detail::Pending;
using sqlite_detail::ReadTxn;
using sqlite_detail::StmtScope;

namespace {

Status validateTxn(const Txn& txn, int64_t maxRowBytes) {
  for (const Compare& c : txn.compares) {
    if (static_cast<int64_t>(c.key.size()) > maxRowBytes) {
      return fail(ErrorCode::kTooLarge, "compare key is too large");
    }
  }
  for (const auto* ops : {&txn.onSuccess, &txn.onFailure}) {
    for (const Op& op : *ops) {
      if (op.key.empty()) return fail(ErrorCode::kInvalidArgument, "operation with an empty key");
      if (static_cast<int64_t>(op.key.size() + op.value.size()) > maxRowBytes) {
        return fail(ErrorCode::kTooLarge, "key and value of '" + op.key.substr(0, 64) +
                                              "' exceed " + std::to_string(maxRowBytes) + " bytes");
      }
    }
  }
  return {};
}

int64_t sqlLimit(size_t limit, size_t extra) {
  if (limit == 0) return -1;
  constexpr auto kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max() - 1);
  return static_cast<int64_t>(std::min(limit, kMax) + extra);
}

}  // namespace

SqliteStore::SqliteStore() = default;

SqliteStore::~SqliteStore() {
  if (writer_) writer_->stop();
  if (hub_) hub_->stop();
  readPool_.reset();
  writer_.reset();
  if (lockFd_ >= 0) ::close(lockFd_);
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       SqliteStoreOptions options) {
  if (path.empty() || path == ":memory:" || path.starts_with("file:")) {
    return fail(ErrorCode::kInvalidArgument, "open sqlite store: needs a plain file path");
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore());

  std::string lockPath = path + "-lock";
  store->lockFd_ = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (store->lockFd_ < 0) return std::unexpected(errnoError("open " + lockPath, errno));
  if (::flock(store->lockFd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      return fail(ErrorCode::kUnavailable, "open sqlite store " + path + ": already open");
    }
    return std::unexpected(errnoError("lock " + lockPath, err));
  }

  store->hub_ = std::make_shared<sqlite_detail::WatchHub>();
  auto writer = sqlite_detail::Writer::open(path, options, store->hub_);
  if (!writer) return std::unexpected(writer.error().wrap("open sqlite store"));
  store->writer_ = std::move(*writer);
  store->readPool_ =
      std::make_unique<sqlite_detail::ReadPool>(path, options.maxIdleReadConnections);
  {
    // Fail at open, not at the first read, if read connections cannot work.
    auto lease = store->readPool_->acquire();
    if (!lease) return std::unexpected(lease.error().wrap("open sqlite store"));
  }
  store->hub_->start();
  store->writer_->start();
  return store;
}

Result<TxnResult> SqliteStore::commit(Txn txn) {
  if (writer_->onWriterThread()) {
    return fail(ErrorCode::kFailedPrecondition,
                "commit: called on the store's writer thread (from a commitAsync completion); "
                "it would wait for itself");
  }
  SKIFF_TRY_STATUS(validateTxn(txn, writer_->maxRowBytes()), "commit");
  auto promise = std::make_shared<std::promise<Result<TxnResult>>>();
  auto future = promise->get_future();
  Pending pending;
  pending.txn = std::move(txn);
  // The promise is shared so the writer never touches a promise the caller already destroyed.
  pending.done = [promise](Result<TxnResult> result) { promise->set_value(std::move(result)); };
  writer_->submit(std::move(pending));
  return future.get();
}

void SqliteStore::commitAsync(Txn txn, std::function<void(Result<TxnResult>)> done) {
  Pending pending;
  if (auto valid = validateTxn(txn, writer_->maxRowBytes()); !valid) {
    pending.rejected = valid.error().wrap("commit");
  } else {
    pending.txn = std::move(txn);
  }
  pending.done = std::move(done);
  writer_->submit(std::move(pending));
}

Result<std::optional<KeyValue>> SqliteStore::get(const std::string& key) {
  auto lease = readPool_->acquire();
  if (!lease) return std::unexpected(lease.error().wrap("get"));
  const auto& stmt = (*lease)->get;
  StmtScope scope(stmt);
  SKIFF_TRY_STATUS(stmt.bindBlob(1, key), "get");
  auto row = stmt.stepRead();
  if (!row) return std::unexpected(row.error().wrap("get"));
  if (!*row) return std::optional<KeyValue>();
  KeyValue kv;
  sqlite_detail::readKeyValue(stmt.get(), kv);
  return std::optional<KeyValue>(std::move(kv));
}

Result<RangeResult> SqliteStore::range(const std::string& begin, const std::string& end,
                                       size_t limit) {
  auto lease = readPool_->acquire();
  if (!lease) return std::unexpected(lease.error().wrap("range"));
  auto txn = ReadTxn::begin(**lease);
  if (!txn) return std::unexpected(txn.error().wrap("range"));
  auto meta = sqlite_detail::readMeta(**lease);
  if (!meta) return std::unexpected(meta.error().wrap("range"));

  RangeResult result;
  result.revision = meta->current;
  const bool bounded = !end.empty();
  const auto& stmt = bounded ? (*lease)->rangeBounded : (*lease)->rangeOpen;
  StmtScope scope(stmt);
  SKIFF_TRY_STATUS(stmt.bindBlob(1, begin), "range");
  if (bounded) SKIFF_TRY_STATUS(stmt.bindBlob(2, end), "range");
  // One row past the limit tells whether the result was cut short.
  SKIFF_TRY_STATUS(stmt.bindInt(bounded ? 3 : 2, sqlLimit(limit, 1)), "range");
  for (;;) {
    auto row = stmt.stepRead();
    if (!row) return std::unexpected(row.error().wrap("range"));
    if (!*row) break;
    if (limit != 0 && result.kvs.size() == limit) {
      result.more = true;
      break;
    }
    sqlite_detail::readKeyValue(stmt.get(), result.kvs.emplace_back());
  }
  return result;
}

Result<Revision> SqliteStore::scanPrefix(const std::string& prefix,
                                         const std::function<void(const KeyValue&)>& fn) {
  auto lease = readPool_->acquire();
  if (!lease) return std::unexpected(lease.error().wrap("scan prefix"));
  auto txn = ReadTxn::begin(**lease);
  if (!txn) return std::unexpected(txn.error().wrap("scan prefix"));
  auto meta = sqlite_detail::readMeta(**lease);
  if (!meta) return std::unexpected(meta.error().wrap("scan prefix"));

  const std::string end = prefixEnd(prefix);
  const bool bounded = !end.empty();
  const auto& stmt = bounded ? (*lease)->rangeBounded : (*lease)->rangeOpen;
  StmtScope scope(stmt);
  SKIFF_TRY_STATUS(stmt.bindBlob(1, prefix), "scan prefix");
  if (bounded) SKIFF_TRY_STATUS(stmt.bindBlob(2, end), "scan prefix");
  SKIFF_TRY_STATUS(stmt.bindInt(bounded ? 3 : 2, -1), "scan prefix");
  KeyValue kv;
  for (;;) {
    auto row = stmt.stepRead();
    if (!row) return std::unexpected(row.error().wrap("scan prefix"));
    if (!*row) break;
    sqlite_detail::readKeyValue(stmt.get(), kv);
    fn(kv);
  }
  return meta->current;
}

Revision SqliteStore::currentRevision() {
  return writer_->currentRevision();
}

Revision SqliteStore::compactedRevision() {
  return writer_->compactedRevision();
}

Result<std::unique_ptr<WatchHandle>> SqliteStore::watch(const std::string& prefix,
                                                        Revision fromRevision,
                                                        WatchCallback callback) {
  if (!callback) return fail(ErrorCode::kInvalidArgument, "watch: no callback");
  auto compactedError = [&](Revision compacted) {
    return fail(ErrorCode::kCompacted, "watch: revision " + std::to_string(fromRevision) +
                                           " is compacted; the oldest retained is " +
                                           std::to_string(compacted));
  };
  if (Revision compacted = compactedRevision(); fromRevision < compacted) {
    return compactedError(compacted);
  }

  // Subscribe first, so every change committed after the history snapshot below reaches the
  // watcher's buffer; `activate` then drops the buffered ones the snapshot already holds.
  auto watcher = hub_->add(prefix, fromRevision, std::move(callback));
  std::vector<Event> history;
  Revision snapshotRevision = 0;
  Status read = [&]() -> Status {
    auto lease = readPool_->acquire();
    if (!lease) return std::unexpected(std::move(lease).error());
    auto txn = ReadTxn::begin(**lease);
    if (!txn) return std::unexpected(std::move(txn).error());
    auto meta = sqlite_detail::readMeta(**lease);
    if (!meta) return std::unexpected(std::move(meta).error());
    if (fromRevision < meta->compacted) return compactedError(meta->compacted);
    snapshotRevision = meta->current;

    const std::string end = prefixEnd(prefix);
    const bool bounded = !end.empty();
    const auto& stmt = bounded ? (*lease)->historyBounded : (*lease)->historyOpen;
    StmtScope scope(stmt);
    SKIFF_SQLITE_TRY(stmt.bindInt(1, fromRevision));
    SKIFF_SQLITE_TRY(stmt.bindBlob(2, prefix));
    if (bounded) SKIFF_SQLITE_TRY(stmt.bindBlob(3, end));
    for (;;) {
      auto row = stmt.stepRead();
      if (!row) return std::unexpected(std::move(row).error());
      if (!*row) break;
      sqlite3_stmt* s = stmt.get();
      Event& e = history.emplace_back();
      e.kv.modRevision = sqlite3_column_int64(s, 0);
      e.kind = sqlite3_column_int64(s, 1) == sqlite_detail::kChangeDelete ? Event::Kind::kDelete
                                                                          : Event::Kind::kPut;
      e.kv.key = sqlite_detail::columnBytes(s, 2);
      e.kv.value = sqlite_detail::columnBytes(s, 3);
      e.kv.createRevision = sqlite3_column_int64(s, 4);
      e.kv.version = sqlite3_column_int64(s, 5);
    }
    return {};
  }();
  if (!read) {
    hub_->remove(watcher);
    if (read.error().code() == ErrorCode::kCompacted) return std::unexpected(read.error());
    return std::unexpected(read.error().wrap("watch"));
  }
  hub_->activate(watcher, std::move(history), snapshotRevision);
  return std::unique_ptr<WatchHandle>(
      std::make_unique<sqlite_detail::SqliteWatchHandle>(hub_, std::move(watcher)));
}

Status SqliteStore::compact(Revision revision) {
  if (writer_->onWriterThread()) {
    return fail(ErrorCode::kFailedPrecondition,
                "compact: called on the store's writer thread; it would wait for itself");
  }
  auto promise = std::make_shared<std::promise<Result<TxnResult>>>();
  auto future = promise->get_future();
  Pending pending;
  pending.compactTo = revision;
  pending.done = [promise](Result<TxnResult> result) { promise->set_value(std::move(result)); };
  writer_->submit(std::move(pending));
  auto result = future.get();
  if (!result) return std::unexpected(std::move(result).error());
  return {};
}

}  // namespace skiff::store

#undef SKIFF_SQLITE_TRY
