#pragma once

// A streaming answer fed by a store watch, shared by /v1/events and
// /v1/jobs/{id}/endpoints?watch=true: the buffer between the store's watch thread and the
// connection's coroutine, and the loop that drains it, writing a keepalive line after every quiet
// interval so proxies and clients can tell an idle stream from a dead one.

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/http_server.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

namespace asio = boost::asio;

// The line written when nothing else was for a while.
inline constexpr std::string_view kKeepaliveLine = "{\"type\":\"keepalive\"}\n";

class WatchStream {
 public:
  // Turns buffered records, in revision order, into the lines to write ("" writes nothing).
  // Runs on the connection's coroutine.
  using Renderer = std::function<std::string(const std::deque<store::KeyValue>& records)>;

  // `executor` is the connection's. Past `maxBytes` of buffered values the stream overflows: the
  // buffer is dropped and run() ends, and the client starts over (lists again or resumes from
  // its last revision).
  WatchStream(asio::any_io_executor executor, size_t maxBytes);
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // The callback for the store watch that feeds this stream: it buffers puts and ignores
  // deletes. It may outlive the stream; it then only fills a buffer nobody reads.
  store::WatchCallback feeder() const;

  // Writes what `render` makes of the buffered records as they come, and a keepalive line after
  // every quiet interval, until the client goes away or the buffer overflows.
  asio::awaitable<void> run(http::ResponseStream& out, Renderer render);

 private:
  struct Buffer;
  std::shared_ptr<asio::steady_timer> timer_;  // Woken by the feeder; owned only here.
  std::shared_ptr<Buffer> buffer_;             // Shared with the feeder.
};

}  // namespace skiff::controlplane
