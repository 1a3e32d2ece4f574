#include "controlplane/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/store/sqlite_store_impl.h"
#include "controlplane/store/watch_hub.h"

namespace skiff::store {

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

  store->hub_ = std::make_shared<WatchHub>();
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
  return std::unique_ptr<WatchHandle>(std::make_unique<HubWatchHandle>(hub_, std::move(watcher)));
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
