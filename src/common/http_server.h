#pragma once

// An HTTP/1.1 server on Boost.Beast with C++20 coroutines, and a small router.
//
// Each connection runs as one coroutine on its own strand. Handlers are coroutines that return a
// `Response`; streaming handlers write chunks until the client goes away. Request bodies larger
// than `ServerOptions::bodyLimit` are refused with 413 before they are read in full.
// Exceptions never leave this module: a handler that throws gets a 500 and a log line.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

using Request = beast::http::request<beast::http::string_body>;
using Verb = beast::http::verb;

struct Response {
  unsigned status = 200;
  std::string body;
  std::string contentType = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;

  static Response json(unsigned status, const nlohmann::json& body);
  // A body that is already JSON text.
  static Response jsonText(unsigned status, std::string body);
  // The standard error body `{"error": {"code", "message", "details"?}}` with the status that
  // matches the error's code.
  static Response error(const Error& error, const nlohmann::json& details = nullptr);
};

// Maps an error code to its HTTP status.
unsigned statusFor(ErrorCode code);

// Who may call a route.
enum class Access {
  kPublic,  // No token needed.
  kAdmin,   // The admin token.
  kAgent,   // The admin token or the agent join token.
};

struct RequestContext {
  const Request& request;
  std::string path;
  std::map<std::string, std::string> query;  // Percent-decoded.
  std::vector<std::string> params;           // The `{...}` segments of the route, in order.
  // The peer's IP address as text; an IPv4-mapped IPv6 peer is given as plain IPv4. Empty when
  // the socket could not say.
  std::string remoteAddress;

  std::optional<std::string> queryValue(const std::string& key) const;
  std::string_view header(std::string_view name) const;
};

// Writes a chunked response body piece by piece.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  // Writes one chunk. Returns false once the client has gone away; the handler should return.
  virtual asio::awaitable<bool> write(std::string data) = 0;
};

using Handler = std::function<asio::awaitable<Response>(RequestContext&)>;
// A streaming handler may return a `Response` before streaming (an error, say) by returning it;
// returning nullopt means it streamed (200, chunked) and is done.
using StreamHandler =
    std::function<asio::awaitable<std::optional<Response>>(RequestContext&, ResponseStream&)>;
// Checks credentials for a route. Returns an error (401/403) to refuse the request.
using Authenticator = std::function<std::optional<Error>(Access, std::string_view authorization)>;

class Router {
 public:
  // `pattern` is a path with `{name}` placeholders, e.g. "/v1/jobs/{id}/kill".
  void add(Verb verb, std::string pattern, Access access, Handler handler);
  void addStream(Verb verb, std::string pattern, Access access, StreamHandler handler);

  struct Route {
    Verb verb;
    std::vector<std::string> segments;
    Access access;
    Handler handler;
    StreamHandler streamHandler;
  };
  enum class MatchKind { kFound, kNotFound, kMethodNotAllowed };
  // Finds the route for `verb` and `path`, filling `params`.
  std::pair<MatchKind, const Route*> match(Verb verb, std::string_view path,
                                           std::vector<std::string>& params) const;

 private:
  std::vector<Route> routes_;
};

struct ServerOptions {
  size_t bodyLimit = 1 << 20;
  int idleTimeoutSec = 75;
};

class Server {
 public:
  Server(asio::io_context& io, const Router& router, Authenticator authenticator,
         ServerOptions options = {});
  ~Server();

  // Binds and starts accepting. `port` 0 picks a free port; see `port()`.
  Status listen(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Stops accepting; open connections finish their current request.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT" (IPv6 as "[::1]:PORT").
Result<std::pair<std::string, uint16_t>> parseHostPort(std::string_view address);

}  // namespace skiff::http
