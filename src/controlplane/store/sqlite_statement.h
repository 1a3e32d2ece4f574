#pragma once

// Prepared SQLite statements for the SQLite store (internal to src/controlplane/store).
//
// Every helper here returns `Status`/`Result` with an `Error` that names the statement, the SQLite
// message and the SQLite result code. Errors are kIo unless stated otherwise. A statement is bound,
// stepped and reset on one connection at a time; none of these types is thread-safe.

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"
#include "controlplane/store/store.h"

// Propagates the error of a Status/Result expression unchanged: inside the store an error already
// names the statement that failed, and the store's public methods add the operation's context.
#define SKIFF_SQLITE_TRY(expr)                                         \
  do {                                                                 \
    auto skiff_sqlite_status_ = (expr);                                \
    if (!skiff_sqlite_status_) {                                       \
      return std::unexpected(std::move(skiff_sqlite_status_).error()); \
    }                                                                  \
  } while (false)

namespace skiff::store::sqlite_detail {

// An Error for SQLite result code `rc` of an operation `what` on `db` (which may be null).
Error sqliteError(sqlite3* db, int rc, std::string_view what, ErrorCode code = ErrorCode::kIo);

// Read failures that may pass on retrying are kUnavailable; everything else is kIo.
ErrorCode readErrorCode(int rc);

// A prepared statement, finalized on destruction. `name` identifies it in error messages and must
// outlive the statement (a string literal).
class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3_stmt* stmt, const char* name) : stmt_(stmt), name_(name) {}
  ~Stmt();
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&& other) noexcept;

  sqlite3_stmt* get() const { return stmt_; }
  const char* name() const { return name_; }

  Error error(int rc, ErrorCode code = ErrorCode::kIo) const;

  // Binds without copying: `value` must stay alive until the statement is reset.
  Status bindBlob(int index, const std::string& value) const;
  Status bindInt(int index, int64_t value) const;

  // True when a row is available, false when the statement is done.
  Result<bool> step() const;
  // Like `step`, for read connections: errors that may pass on retrying are kUnavailable.
  Result<bool> stepRead() const;
  // Steps through every remaining row (RETURNING statements must run to completion).
  Status finish() const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  const char* name_ = "";
};

// Resets a statement and clears its bindings when leaving scope, so it is ready for reuse and
// holds no read lock and no pointer into the caller's strings.
class StmtScope {
 public:
  explicit StmtScope(const Stmt& stmt) : stmt_(stmt.get()) {}
  ~StmtScope();
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

// Prepares a statement that lives as long as its connection (SQLITE_PREPARE_PERSISTENT).
Result<Stmt> prepare(sqlite3* db, const char* name, const char* sql);

// Runs one or more statements that return no rows.
Status execSql(sqlite3* db, const char* what, const char* sql);

// Runs a statement (typically a PRAGMA) and returns the first column of its first row as text, or
// "" when there is no row.
Result<std::string> queryText(sqlite3* db, const char* what, const char* sql);

// The bytes of a BLOB or TEXT column of the current row ("" for NULL).
std::string columnBytes(sqlite3_stmt* stmt, int column);

// Reads the current row's columns key, value, create_rev, mod_rev, version into `kv`.
void readKeyValue(sqlite3_stmt* stmt, KeyValue& kv);

}  // namespace skiff::store::sqlite_detail
