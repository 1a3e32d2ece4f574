#pragma once

// A tiny HTTP/1.1 server on a loopback port for client tests: one thread per connection, one
// request per connection (responses say `Connection: close`), GET and HEAD only. The handler runs
// on the connection's thread; it must be thread-safe.

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace skiff::agent::image::testing {

class FakeHttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;                            // Without the query.
    std::string query;                           // Without the '?'.
    std::map<std::string, std::string> headers;  // Names lowercased.
  };
  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
  };
  using Handler = std::function<Response(const Request&)>;

  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void acceptLoop();
  void serve(int fd);

  Handler handler_;
  int listenFd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::jthread> connections_;  // Guarded by mutex_.
  std::jthread acceptor_;
};

// Decodes %XX escapes of a query value.
std::string urlDecode(std::string_view s);
// The value of `key` in a query string ("" if absent), decoded.
std::string queryParam(std::string_view query, std::string_view key);

}  // namespace skiff::agent::image::testing
