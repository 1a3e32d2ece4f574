#pragma once

// A `store::Store` held in memory, for tests: the revision model, compares, ranges, watches and
// compaction of store.h, without a disk or threads of its own.
//
// Everything happens on the calling thread. `commitAsync` applies the transaction and calls
// `done` before it returns, so a component that commits from its io_context sees its completion
// on that io_context's thread, and a test that runs the io_context itself stays single-threaded.
// Watch callbacks run before `commit` returns, on the committing thread or on one delivering
// for another commit at the same time; they run one at a time, in revision order. The retained
// history is delivered inside `watch`, and the changes a callback commits after that callback.
//
// Conventions, as the SQLite store's (sqlite_store.h):
//   - An empty `end` in `range` means "no upper bound".
//   - Keys of operations must not be empty (kInvalidArgument, nothing applied).
//   - Delete events carry createRevision 0 and version 0.
//   - The compacted revision of a fresh store is 0; `compact(revision)` at or below it is a
//     no-op, and above `currentRevision() + 1` fails with kInvalidArgument.
//   - A WatchHandle destroyed inside its own callback lets that call finish; the callback is never
//     called again.
//
// Commits never fail by themselves; `poison` makes every later commit fail, as a write error
// does on disk.

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::testing {

class MemoryStore final : public store::Store {
 public:
  MemoryStore();
  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  Result<store::TxnResult> commit(store::Txn txn) override;
  void commitAsync(store::Txn txn, std::function<void(Result<store::TxnResult>)> done) override;
  Result<std::optional<store::KeyValue>> get(const std::string& key) override;
  Result<store::RangeResult> range(const std::string& begin, const std::string& end,
                                   size_t limit = 0) override;
  Result<store::Revision> scanPrefix(
      const std::string& prefix, const std::function<void(const store::KeyValue&)>& fn) override;
  store::Revision currentRevision() override;
  Result<std::unique_ptr<store::WatchHandle>> watch(const std::string& prefix,
                                                    store::Revision fromRevision,
                                                    store::WatchCallback callback) override;
  Status compact(store::Revision revision) override;
  store::Revision compactedRevision() override;

  // Every later commit fails with `error` (the store's state stays readable).
  void poison(Error error);

 private:
  struct Watcher;
  class Handle;

  // Calls the watchers with the events committed but not yet delivered.
  void deliver();
  void cancel(const std::shared_ptr<Watcher>& watcher);

  // Guards the data below.
  std::mutex mutex_;
  std::map<std::string, store::KeyValue> data_;
  // Every change at or after `compacted_`, in revision order.
  std::vector<store::Event> history_;
  // Changes committed and not yet handed to the watchers, in revision order.
  std::vector<store::Event> undelivered_;
  store::Revision revision_ = 0;
  store::Revision compacted_ = 0;
  std::optional<Error> poisoned_;

  // Held while callbacks run, so they run one at a time and in order; recursive so that a
  // callback may destroy its handle or commit again.
  std::recursive_mutex delivery_;
  std::vector<std::shared_ptr<Watcher>> watchers_;  // Guarded by `delivery_`.
  // The thread running callbacks, if any (set while holding `delivery_`).
  std::atomic<std::thread::id> deliveringThread_;
};

}  // namespace skiff::testing
