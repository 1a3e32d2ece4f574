#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "controlplane/store/sqlite_store_impl.h"

namespace skiff::store::sqlite_detail {
namespace {

constexpr int64_t kSchemaVersion = 1;
constexpr size_t kMaxBatchSize = 1 << 16;
// Room for the record header and the integer columns next to a key and value.
constexpr int64_t kRowOverheadBytes = 1024;

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

}  // namespace

Result<std::unique_ptr<Writer>> Writer::open(const std::string& path,
                                             const SqliteStoreOptions& options,
                                             std::shared_ptr<WatchHub> hub) {
  std::unique_ptr<Writer> w(new Writer(options, std::move(hub)));
  SKIFF_SQLITE_TRY(w->openDb(path));
  return w;
}

Writer::~Writer() {
  stop();
  // close_v2 defers the close until the member statements are finalized right after this.
  sqlite3_close_v2(db_);
}

void Writer::start() {
  thread_ = std::thread([this] { run(); });
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

void Writer::submit(Pending pending) {
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

Writer::Writer(const SqliteStoreOptions& options, std::shared_ptr<WatchHub> hub)
    : options_(options), hub_(std::move(hub)) {
  options_.maxBatchSize = std::clamp<size_t>(options_.maxBatchSize, 1, kMaxBatchSize);
  autoCompactSlack_ = std::max<int64_t>(options_.historyRetention / 8, 1);
  autoCompactChunk_ = std::max<int64_t>(4096, 2 * static_cast<int64_t>(options_.maxBatchSize));
}

Status Writer::openDb(const std::string& path) {
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
  SKIFF_SQLITE_TRY(execSql(db_, "set journal_size_limit", "PRAGMA journal_size_limit = 67108864"));
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

void Writer::run() {
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

void Writer::runBatch(std::vector<Pending>& batch) {
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

void Writer::complete(Pending& p, Result<TxnResult> result) {
  if (p.done) invokeCallback("commit completion", p.done, std::move(result));
}

Status Writer::applyBatch(std::vector<Pending>& batch, std::vector<Result<TxnResult>>& results,
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

Status Writer::applyTxn(Txn& txn, std::vector<Event>& events, TxnResult& out) {
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
    holds = c.holds(modRevision);
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

Status Writer::insertChange(Revision rev, int64_t sub, ChangeKind kind, const std::string& key,
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

Status Writer::deleteHistoryBefore(Revision revision) {
  StmtScope scope(compact_);
  SKIFF_SQLITE_TRY(compact_.bindInt(1, revision));
  SKIFF_SQLITE_TRY(compact_.finish());
  compacted_ = revision;
  return {};
}

Status Writer::applyCompact(Revision revision, Result<TxnResult>& out) {
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
Status Writer::autoCompact() {
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

}  // namespace skiff::store::sqlite_detail
