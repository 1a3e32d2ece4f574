#include "controlplane/store/sqlite_statement.h"

#include <utility>

namespace skiff::store::sqlite_detail {

Error sqliteError(sqlite3* db, int rc, std::string_view what, ErrorCode code) {
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

ErrorCode readErrorCode(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? ErrorCode::kUnavailable
                                                            : ErrorCode::kIo;
}

Stmt::~Stmt() {
  sqlite3_finalize(stmt_);
}

Stmt::Stmt(Stmt&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), name_(other.name_) {}

Stmt& Stmt::operator=(Stmt&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    name_ = other.name_;
  }
  return *this;
}

Error Stmt::error(int rc, ErrorCode code) const {
  return sqliteError(sqlite3_db_handle(stmt_), rc, name_, code);
}

Status Stmt::bindBlob(int index, const std::string& value) const {
  // SQLITE_STATIC: every caller keeps `value` alive until the statement is reset.
  int rc = sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) return std::unexpected(error(rc));
  return {};
}

Status Stmt::bindInt(int index, int64_t value) const {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) return std::unexpected(error(rc));
  return {};
}

Result<bool> Stmt::step() const {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(error(rc));
}

Result<bool> Stmt::stepRead() const {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(error(rc, readErrorCode(rc)));
}

Status Stmt::finish() const {
  for (;;) {
    auto row = step();
    if (!row) return std::unexpected(std::move(row).error());
    if (!*row) return {};
  }
}

StmtScope::~StmtScope() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

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

void readKeyValue(sqlite3_stmt* stmt, KeyValue& kv) {
  kv.key = columnBytes(stmt, 0);
  kv.value = columnBytes(stmt, 1);
  kv.createRevision = sqlite3_column_int64(stmt, 2);
  kv.modRevision = sqlite3_column_int64(stmt, 3);
  kv.version = sqlite3_column_int64(stmt, 4);
}

}  // namespace skiff::store::sqlite_detail
