#pragma once

// Watch delivery for a `Store` back end, independent of how the back end stores its history.
//
// A back end registers a watcher (`add`), reads the retained history for its prefix, then hands
// that history to `activate`; meanwhile `publish` buffers the live events of every durable batch,
// and `activate` keeps only those past the history's snapshot. One delivery thread then calls each
// watcher's callback in turn, from a queue per watcher, so a slow watcher delays other watchers but
// never the back end's commits (its queue grows instead).
//
// Callbacks: a callback that throws is logged and cancelled. A watcher removed from inside its own
// callback cannot wait for that callback to return (it is the caller); the callback then finishes
// its current call and is never called again. Any other removal waits until the callback is not
// running.
//
// Thread safety: every method may be called from any thread, except that `start` and `stop` are
// called once each by the owner.

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/store/store.h"

namespace skiff::store {

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

  // Starts the delivery thread.
  void start();

  // Stops the delivery thread after the callback it may be running; drops undelivered events and
  // cancels every watcher. Watchers added afterwards start cancelled.
  void stop();

  // Registers a watcher that buffers live events until `activate`.
  std::shared_ptr<Watcher> add(std::string prefix, Revision fromRevision, WatchCallback callback);

  // Queues `history` (every matching change up to `snapshotRevision`), then the buffered live
  // events past the snapshot, and switches the watcher to live delivery.
  void activate(const std::shared_ptr<Watcher>& w, std::vector<Event> history,
                Revision snapshotRevision);

  // Cancels `w`. Waits for a running callback unless called from inside the delivery thread,
  // where the running callback is the caller itself.
  void remove(const std::shared_ptr<Watcher>& w);

  // Hands the events of one durable batch (in revision order) to every matching watcher.
  void publish(const std::vector<Event>& events);

 private:
  void enqueueLocked(const std::shared_ptr<Watcher>& w);
  void run();

  std::mutex mu_;
  std::condition_variable wake_;  // Work for the delivery thread, or stop.
  std::condition_variable idle_;  // A callback returned.
  std::vector<std::shared_ptr<Watcher>> watchers_;
  std::deque<std::shared_ptr<Watcher>> ready_;  // Watchers with queued events, round robin.
  bool stopping_ = false;
  std::thread::id threadId_;
  std::thread thread_;
};

// The handle `Store::watch` returns: destroying it removes the watcher from its hub. It keeps the
// hub alive, so it may outlive the store.
class HubWatchHandle final : public WatchHandle {
 public:
  HubWatchHandle(std::shared_ptr<WatchHub> hub, std::shared_ptr<Watcher> watcher)
      : hub_(std::move(hub)), watcher_(std::move(watcher)) {}
  ~HubWatchHandle() override { hub_->remove(watcher_); }

 private:
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<Watcher> watcher_;
};

}  // namespace skiff::store
