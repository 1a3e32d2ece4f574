#pragma once

// An HTTP/1.1 client on Boost.Beast coroutines, for a server that relays another server's
// answer as it arrives (skiffd relays a node agent's log stream this way).
//
// `StreamingGet::open` resolves the host, connects (5 s limit), sends one GET (10 s limit) and
// reads the answer's header, with no limit: a quiet stream may not send its header until it
// has its first bytes. `next()` then hands over the body in pieces as they arrive. Every
// failure to get a header is kUnavailable, naming the step and the address ("connect to
// http://10.0.0.5:7071: Connection refused"). One `StreamingGet` is one connection, used by one
// coroutine at a time; destroying it closes the connection.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/error.h"

namespace skiff::http {

struct GetRequest {
  std::string hostPort;  // "HOST:PORT", IPv6 as "[::1]:PORT"; also sent as the Host header.
  std::string target;    // Path and query.
  std::vector<std::pair<std::string, std::string>> headers;  // Besides Host.
};

class StreamingGet {
 public:
  // Runs on the calling coroutine's executor; see the file comment.
  static boost::asio::awaitable<Result<std::unique_ptr<StreamingGet>>> open(GetRequest request);
  ~StreamingGet();
  StreamingGet(const StreamingGet&) = delete;
  StreamingGet& operator=(const StreamingGet&) = delete;

  // The answer's status code.
  unsigned status() const;

  // The next piece of the body (at most 64 KiB, never empty), or nullopt once the body is
  // complete or the connection broke.
  boost::asio::awaitable<std::optional<std::string>> next();

 private:
  struct Impl;
  explicit StreamingGet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::http
