#include "controlplane/event_stream.h"

#include <chrono>
#include <mutex>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace skiff::controlplane {

namespace {

constexpr auto kKeepaliveInterval = std::chrono::seconds(10);
// One write takes at most about this many bytes of values, so a burst reaches the client in
// pieces instead of one copy of all of it.
constexpr size_t kMaxBatchBytes = 1 << 20;

}  // namespace

struct WatchStream::Buffer {
  std::mutex mutex;
  std::deque<store::KeyValue> records;
  size_t bytes = 0;
  bool overflowed = false;
  size_t maxBytes = 0;
  std::function<void()> notify;  // Wakes the connection; set before any watch can call push().

  void push(const store::KeyValue& kv) {
    {
      std::lock_guard lock(mutex);
      if (overflowed) return;
      bytes += kv.value.size();
      if (bytes > maxBytes) {
        overflowed = true;
        records.clear();
      } else {
        records.push_back(kv);
      }
    }
    notify();
  }
};

WatchStream::WatchStream(asio::any_io_executor executor, size_t maxBytes)
    : timer_(std::make_shared<asio::steady_timer>(executor)), buffer_(std::make_shared<Buffer>()) {
  buffer_->maxBytes = maxBytes;
  // The feeder runs on a store thread: it only posts a cancel to the connection's executor,
  // and the timer may be gone by then.
  std::weak_ptr<asio::steady_timer> weakTimer = timer_;
  buffer_->notify = [executor, weakTimer] {
    asio::post(executor, [weakTimer] {
      if (auto t = weakTimer.lock()) t->cancel();
    });
  };
}

WatchStream::~WatchStream() = default;

store::WatchCallback WatchStream::feeder() const {
  return [buffer = buffer_](const std::vector<store::Event>& events) {
    for (const store::Event& event : events) {
      if (event.kind == store::Event::Kind::kPut) buffer->push(event.kv);
    }
  };
}

asio::awaitable<void> WatchStream::run(http::ResponseStream& out, Renderer render) {
  for (;;) {
    std::deque<store::KeyValue> records;
    bool overflowed = false;
    {
      std::lock_guard lock(buffer_->mutex);
      overflowed = buffer_->overflowed;
      size_t batchBytes = 0;
      while (!buffer_->records.empty() && batchBytes < kMaxBatchBytes) {
        size_t size = buffer_->records.front().value.size();
        batchBytes += size;
        buffer_->bytes -= size;
        records.push_back(std::move(buffer_->records.front()));
        buffer_->records.pop_front();
      }
    }
    if (overflowed) co_return;
    if (!records.empty()) {
      std::string lines = render(records);
      if (!lines.empty()) {
        bool written = co_await out.write(std::move(lines));
        if (!written) co_return;
      }
      continue;
    }
    timer_->expires_after(kKeepaliveInterval);
    boost::system::error_code ec;
    co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;  // Woken by the feeder.
    bool empty = false;
    {
      std::lock_guard lock(buffer_->mutex);
      empty = buffer_->records.empty();
    }
    if (empty) {
      bool written = co_await out.write(std::string(kKeepaliveLine));
      if (!written) co_return;
    }
  }
}

}  // namespace skiff::controlplane
