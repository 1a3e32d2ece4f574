#include "controlplane/store/watch_hub.h"

#include <exception>
#include <utility>

#include <spdlog/spdlog.h>

namespace skiff::store {

void WatchHub::start() {
  std::lock_guard lock(mu_);
  thread_ = std::thread([this] { run(); });
  threadId_ = thread_.get_id();
}

void WatchHub::stop() {
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

std::shared_ptr<Watcher> WatchHub::add(std::string prefix, Revision fromRevision,
                                       WatchCallback callback) {
  auto w = std::make_shared<Watcher>(std::move(prefix), fromRevision, std::move(callback));
  std::lock_guard lock(mu_);
  if (stopping_) {
    w->cancelled = true;
  } else {
    watchers_.push_back(w);
  }
  return w;
}

void WatchHub::activate(const std::shared_ptr<Watcher>& w, std::vector<Event> history,
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

void WatchHub::remove(const std::shared_ptr<Watcher>& w) {
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

void WatchHub::publish(const std::vector<Event>& events) {
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

void WatchHub::enqueueLocked(const std::shared_ptr<Watcher>& w) {
  if (w->queued) return;
  w->queued = true;
  ready_.push_back(w);
}

void WatchHub::run() {
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
      spdlog::error("store: watch callback for prefix '{}' threw, cancelling it: {}", w->prefix,
                    e.what());
    } catch (...) {
      threw = true;
      spdlog::error("store: watch callback for prefix '{}' threw, cancelling it", w->prefix);
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

}  // namespace skiff::store
