#include "testing/memory_store.h"

#include <algorithm>
#include <iterator>
#include <thread>
#include <utility>

namespace skiff::testing {

using store::Compare;
using store::Event;
using store::KeyValue;
using store::Op;
using store::Revision;

struct MemoryStore::Watcher {
  Watcher(std::string prefixIn, Revision fromRevisionIn, store::WatchCallback callbackIn,
          Revision deliveredThroughIn)
      : prefix(std::move(prefixIn)),
        fromRevision(fromRevisionIn),
        callback(std::move(callbackIn)),
        deliveredThrough(deliveredThroughIn) {}

  bool wants(const Event& event) const {
    return event.kv.modRevision >= fromRevision && event.kv.modRevision > deliveredThrough &&
           event.kv.key.starts_with(prefix);
  }

  const std::string prefix;
  const Revision fromRevision;
  store::WatchCallback callback;
  // The last revision this watcher was handed (or chose not to need); guarded by `delivery_`.
  Revision deliveredThrough;
  bool cancelled = false;  // Guarded by `delivery_`.
};

class MemoryStore::Handle final : public store::WatchHandle {
 public:
  Handle(MemoryStore& store, std::shared_ptr<Watcher> watcher)
      : store_(store), watcher_(std::move(watcher)) {}
  ~Handle() override { store_.cancel(watcher_); }

 private:
  MemoryStore& store_;
  std::shared_ptr<Watcher> watcher_;
};

namespace {

bool validKeys(const std::vector<Op>& ops) {
  return std::ranges::none_of(ops, [](const Op& op) { return op.key.empty(); });
}

}  // namespace

MemoryStore::MemoryStore() = default;
MemoryStore::~MemoryStore() = default;

Result<store::TxnResult> MemoryStore::commit(store::Txn txn) {
  Result<store::TxnResult> result;
  {
    std::lock_guard lock(mutex_);
    if (poisoned_) return std::unexpected(*poisoned_);
    if (!validKeys(txn.onSuccess) || !validKeys(txn.onFailure)) {
      return fail(ErrorCode::kInvalidArgument, "commit: an operation has an empty key");
    }
    bool holds = true;
    for (const Compare& compare : txn.compares) {
      auto it = data_.find(compare.key);
      Revision modRevision = it == data_.end() ? 0 : it->second.modRevision;
      holds = compare.holds(modRevision);
      if (!holds) break;
    }
    const Revision next = revision_ + 1;
    std::vector<Event> events;
    for (Op& op : holds ? txn.onSuccess : txn.onFailure) {
      if (op.kind == Op::Kind::kPut) {
        auto [it, created] = data_.try_emplace(op.key);
        KeyValue& kv = it->second;
        if (created) {
          kv.key = op.key;
          kv.createRevision = next;
        }
        kv.value = std::move(op.value);
        kv.modRevision = next;
        ++kv.version;
        events.push_back(Event{Event::Kind::kPut, kv});
      } else if (data_.erase(op.key) > 0) {
        events.push_back(Event{Event::Kind::kDelete, KeyValue{op.key, {}, 0, next, 0}});
      }
    }
    if (!events.empty()) {
      revision_ = next;
      history_.insert(history_.end(), events.begin(), events.end());
      undelivered_.insert(undelivered_.end(), std::make_move_iterator(events.begin()),
                          std::make_move_iterator(events.end()));
    }
    result = store::TxnResult{holds, revision_};
  }
  deliver();
  return result;
}

void MemoryStore::commitAsync(store::Txn txn, std::function<void(Result<store::TxnResult>)> done) {
  auto result = commit(std::move(txn));
  if (done) done(std::move(result));
}

Result<std::optional<KeyValue>> MemoryStore::get(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(it->second);
}

Result<store::RangeResult> MemoryStore::range(const std::string& begin, const std::string& end,
                                              size_t limit) {
  std::lock_guard lock(mutex_);
  store::RangeResult out;
  out.revision = revision_;
  for (auto it = data_.lower_bound(begin); it != data_.end(); ++it) {
    if (!end.empty() && it->first >= end) break;
    if (limit != 0 && out.kvs.size() == limit) {
      out.more = true;
      break;
    }
    out.kvs.push_back(it->second);
  }
  return out;
}

Result<Revision> MemoryStore::scanPrefix(const std::string& prefix,
                                         const std::function<void(const KeyValue&)>& fn) {
  // The snapshot is copied so that `fn` runs without the lock and may read the store.
  auto snapshot = range(prefix, store::prefixEnd(prefix));
  if (!snapshot) return std::unexpected(snapshot.error());
  for (const KeyValue& kv : snapshot->kvs) fn(kv);
  return snapshot->revision;
}

Revision MemoryStore::currentRevision() {
  std::lock_guard lock(mutex_);
  return revision_;
}

Result<std::unique_ptr<store::WatchHandle>> MemoryStore::watch(const std::string& prefix,
                                                               Revision fromRevision,
                                                               store::WatchCallback callback) {
  std::lock_guard delivery(delivery_);
  std::vector<Event> retained;
  std::shared_ptr<Watcher> watcher;
  {
    std::lock_guard lock(mutex_);
    if (fromRevision < compacted_) {
      return fail(ErrorCode::kCompacted, "watch: revision " + std::to_string(fromRevision) +
                                             " is compacted; the oldest retained is " +
                                             std::to_string(compacted_));
    }
    for (const Event& event : history_) {
      if (event.kv.modRevision >= fromRevision && event.kv.key.starts_with(prefix)) {
        retained.push_back(event);
      }
    }
    // Events committed but not delivered yet are in `retained` already.
    watcher = std::make_shared<Watcher>(prefix, fromRevision, std::move(callback), revision_);
  }
  watchers_.push_back(watcher);
  if (!retained.empty()) {
    auto outer = deliveringThread_.exchange(std::this_thread::get_id());
    watcher->callback(retained);
    deliveringThread_ = outer;
    deliver();  // What the callback committed meanwhile.
  }
  return std::make_unique<Handle>(*this, std::move(watcher));
}

void MemoryStore::deliver() {
  // A callback that commits must not deliver the newer events itself, ahead of older ones that
  // other watchers have not seen yet: the delivery in progress below picks them up.
  if (deliveringThread_ == std::this_thread::get_id()) return;
  std::lock_guard delivery(delivery_);
  deliveringThread_ = std::this_thread::get_id();
  for (;;) {
    std::vector<Event> events;
    {
      std::lock_guard lock(mutex_);
      events.swap(undelivered_);
    }
    if (events.empty()) break;
    auto watchers = watchers_;
    for (const auto& watcher : watchers) {
      if (watcher->cancelled) continue;
      std::vector<Event> batch;
      for (const Event& event : events) {
        if (watcher->wants(event)) batch.push_back(event);
      }
      watcher->deliveredThrough = std::max(watcher->deliveredThrough, events.back().kv.modRevision);
      if (!batch.empty()) watcher->callback(batch);
    }
  }
  deliveringThread_ = std::thread::id();
}

void MemoryStore::cancel(const std::shared_ptr<Watcher>& watcher) {
  std::lock_guard delivery(delivery_);
  watcher->cancelled = true;
  std::erase(watchers_, watcher);
}

Status MemoryStore::compact(Revision revision) {
  std::lock_guard lock(mutex_);
  if (poisoned_) return std::unexpected(*poisoned_);
  if (revision <= compacted_) return {};
  if (revision > revision_ + 1) {
    return fail(ErrorCode::kInvalidArgument, "compact: revision " + std::to_string(revision) +
                                                 " is after the next revision " +
                                                 std::to_string(revision_ + 1));
  }
  std::erase_if(history_,
                [revision](const Event& event) { return event.kv.modRevision < revision; });
  compacted_ = revision;
  return {};
}

Revision MemoryStore::compactedRevision() {
  std::lock_guard lock(mutex_);
  return compacted_;
}

void MemoryStore::poison(Error error) {
  std::lock_guard lock(mutex_);
  if (!poisoned_) poisoned_ = std::move(error);
}

}  // namespace skiff::testing
