#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "controlplane/store/sqlite_store_impl.h"

namespace skiff::store::sqlite_detail {

Result<ReadPool::Lease> ReadPool::acquire() {
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

Result<std::unique_ptr<ReadConn>> ReadPool::openConn() {
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
      {&ReadConn::meta, "select meta", "SELECT current_rev, compacted_rev FROM meta WHERE id = 1"},
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

void ReadPool::release(std::unique_ptr<ReadConn> conn) {
  // A connection left inside a transaction (an error or exception mid-read) is not reused.
  if (sqlite3_get_autocommit(conn->db) == 0) return;
  std::lock_guard lock(mu_);
  if (idle_.size() < maxIdle_) idle_.push_back(std::move(conn));
}

Result<ReadTxn> ReadTxn::begin(ReadConn& conn) {
  StmtScope scope(conn.begin);
  auto done = conn.begin.stepRead();
  if (!done) return std::unexpected(std::move(done).error());
  return ReadTxn(conn);
}

ReadTxn::~ReadTxn() {
  if (conn_ == nullptr) return;
  StmtScope scope(conn_->commit);
  // A failure leaves the connection in a transaction; ReadPool::release then discards it.
  (void)conn_->commit.step();
}

Result<Meta> readMeta(ReadConn& conn) {
  StmtScope scope(conn.meta);
  auto row = conn.meta.stepRead();
  if (!row) return std::unexpected(std::move(row).error());
  if (!*row) return fail(ErrorCode::kIo, "select meta: the meta row is missing");
  return Meta{sqlite3_column_int64(conn.meta.get(), 0), sqlite3_column_int64(conn.meta.get(), 1)};
}

}  // namespace skiff::store::sqlite_detail
