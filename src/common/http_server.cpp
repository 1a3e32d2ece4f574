#include "common/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

namespace skiff::http {
namespace {

using tcp = asio::ip::tcp;
namespace bhttp = beast::http;

std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> segments;
  size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
      continue;
    }
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    segments.emplace_back(path.substr(start, end - start));
    start = end;
  }
  return segments;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hexValue(text[i + 1]) >= 0 &&
        hexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(text[i + 1]) * 16 + hexValue(text[i + 2])));
      i += 2;
    } else if (text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> parseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= query.size() && !query.empty()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(start, end - start);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) {
        out[percentDecode(pair)] = "";
      } else {
        out[percentDecode(pair.substr(0, eq))] = percentDecode(pair.substr(eq + 1));
      }
    }
    if (end == query.size()) break;
    start = end + 1;
  }
  return out;
}

class ChunkedStream final : public ResponseStream {
 public:
  explicit ChunkedStream(beast::tcp_stream& stream) : stream_(stream) {}

  asio::awaitable<bool> write(std::string data) override {
    if (failed_) co_return false;
    if (data.empty()) co_return true;
    boost::system::error_code ec;
    stream_.expires_after(std::chrono::seconds(30));
    co_await asio::async_write(stream_, bhttp::make_chunk(asio::buffer(data)),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) failed_ = true;
    co_return !failed_;
  }

  bool failed() const { return failed_; }

 private:
  beast::tcp_stream& stream_;
  bool failed_ = false;
};

// A chunked response whose header goes out lazily, on the first chunk, so a streaming
// handler can still answer with a plain error before it writes anything.
struct LazyStream final : ResponseStream {
  beast::tcp_stream& stream;
  unsigned version;
  ChunkedStream chunks;
  bool headerSent = false;
  bool failed = false;
  LazyStream(beast::tcp_stream& s, unsigned v) : stream(s), version(v), chunks(s) {}

  asio::awaitable<bool> sendHeader() {
    headerSent = true;
    bhttp::response<bhttp::empty_body> header{bhttp::status::ok, version};
    header.set(bhttp::field::server, "skiffd");
    header.set(bhttp::field::content_type, "application/x-ndjson");
    header.set(bhttp::field::cache_control, "no-cache");
    header.chunked(true);
    bhttp::response_serializer<bhttp::empty_body> serializer{header};
    boost::system::error_code ec;
    stream.expires_after(std::chrono::seconds(30));
    co_await bhttp::async_write_header(stream, serializer,
                                       asio::redirect_error(asio::use_awaitable, ec));
    failed = static_cast<bool>(ec);
    co_return !failed;
  }
  asio::awaitable<bool> write(std::string data) override {
    // co_await stays out of compound conditions: GCC 12 miscompiles it there.
    if (!headerSent) {
      bool sent = co_await sendHeader();
      if (!sent) co_return false;
    }
    if (failed) co_return false;
    co_return co_await chunks.write(std::move(data));
  }
};

}  // namespace

Response Response::json(unsigned status, const nlohmann::json& body) {
  return jsonText(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Response Response::jsonText(unsigned status, std::string body) {
  Response response;
  response.status = status;
  response.body = std::move(body);
  response.body.push_back('\n');
  return response;
}

unsigned statusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kCompacted:
      return 410;
    case ErrorCode::kFailedPrecondition:
      return 412;
    case ErrorCode::kTooLarge:
      return 413;
    case ErrorCode::kUnavailable:
    case ErrorCode::kIo:
      return 503;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

Response Response::error(const Error& error, const nlohmann::json& details) {
  nlohmann::json body = {{"code", errorCodeName(error.code())}, {"message", error.message()}};
  if (!details.is_null()) body["details"] = details;
  Response response = json(statusFor(error.code()), {{"error", std::move(body)}});
  if (error.code() == ErrorCode::kUnauthenticated) {
    response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"skiff\"");
  }
  return response;
}

std::optional<std::string> RequestContext::queryValue(const std::string& key) const {
  auto it = query.find(key);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

std::string_view RequestContext::header(std::string_view name) const {
  auto it = request.find(name);
  if (it == request.end()) return {};
  return it->value();
}

void Router::add(Verb verb, std::string pattern, Access access, Handler handler) {
  routes_.push_back({verb, splitPath(pattern), access, std::move(handler), nullptr});
}

void Router::addStream(Verb verb, std::string pattern, Access access, StreamHandler handler) {
  routes_.push_back({verb, splitPath(pattern), access, nullptr, std::move(handler)});
}

std::pair<Router::MatchKind, const Router::Route*> Router::match(
    Verb verb, std::string_view path, std::vector<std::string>& params) const {
  std::vector<std::string> segments = splitPath(path);
  bool pathMatched = false;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string> captured;
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      const std::string& pattern = route.segments[i];
      if (pattern.size() >= 2 && pattern.front() == '{' && pattern.back() == '}') {
        captured.push_back(percentDecode(segments[i]));
      } else {
        ok = pattern == segments[i];
      }
    }
    if (!ok) continue;
    pathMatched = true;
    if (route.verb == verb) {
      params = std::move(captured);
      return {MatchKind::kFound, &route};
    }
  }
  return {pathMatched ? MatchKind::kMethodNotAllowed : MatchKind::kNotFound, nullptr};
}

struct Server::Impl {
  asio::io_context& io;
  const Router& router;
  Authenticator authenticator;
  ServerOptions options;
  std::optional<tcp::acceptor> acceptor;
  uint16_t port = 0;

  Impl(asio::io_context& ioContext, const Router& r, Authenticator auth, ServerOptions opts)
      : io(ioContext), router(r), authenticator(std::move(auth)), options(opts) {}

  asio::awaitable<void> acceptLoop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket(asio::make_strand(io));
      co_await acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        spdlog::warn("{}",
                     nlohmann::json({{"msg", "accept failed"}, {"error", ec.message()}}).dump());
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto executor = socket.get_executor();
      asio::co_spawn(executor, session(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  static Response plainError(ErrorCode code, std::string message) {
    return Response::error(Error(code, std::move(message)));
  }

  asio::awaitable<void> writeResponse(beast::tcp_stream& stream, const Response& response,
                                      unsigned version, bool keepAlive,
                                      boost::system::error_code& ec) {
    bhttp::response<bhttp::string_body> message{static_cast<bhttp::status>(response.status),
                                                version};
    message.set(bhttp::field::server, "skiffd");
    message.set(bhttp::field::content_type, response.contentType);
    for (const auto& [name, value] : response.headers) message.set(name, value);
    message.keep_alive(keepAlive);
    message.body() = response.body;
    message.prepare_payload();
    stream.expires_after(std::chrono::seconds(30));
    co_await bhttp::async_write(stream, message, asio::redirect_error(asio::use_awaitable, ec));
  }

  static std::string peerAddress(const tcp::socket& socket) {
    boost::system::error_code ec;
    auto endpoint = socket.remote_endpoint(ec);
    if (ec) return {};
    auto address = endpoint.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
    }
    return address.to_string();
  }

  asio::awaitable<void> session(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    const std::string remoteAddress = peerAddress(stream.socket());
    for (;;) {
      boost::system::error_code ec;
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(options.bodyLimit);
      parser.header_limit(64 * 1024);
      stream.expires_after(std::chrono::seconds(options.idleTimeoutSec));
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec == bhttp::error::body_limit) {
        Response response =
            plainError(ErrorCode::kTooLarge,
                       "request body exceeds " + std::to_string(options.bodyLimit) + " bytes");
        co_await writeResponse(stream, response, 11, false, ec);
        break;
      }
      if (ec == bhttp::error::end_of_stream || ec) break;
      Request request = parser.release();
      bool keepAlive = request.keep_alive();

      RequestContext context{request, {}, {}, {}, remoteAddress};
      std::string_view target = request.target();
      size_t question = target.find('?');
      context.path = std::string(target.substr(0, question));
      if (question != std::string_view::npos)
        context.query = parseQuery(target.substr(question + 1));

      auto [kind, route] = router.match(request.method(), context.path, context.params);
      std::optional<Response> response;
      if (kind == Router::MatchKind::kNotFound) {
        response = plainError(ErrorCode::kNotFound, "no such endpoint");
      } else if (kind == Router::MatchKind::kMethodNotAllowed) {
        response = plainError(ErrorCode::kInvalidArgument, "method not allowed on this endpoint");
        response->status = 405;
      } else if (auto refused = authenticator(route->access, context.header("Authorization"))) {
        response = Response::error(*refused);
      }

      if (!response && route->streamHandler) {
        bool streamed = co_await runStream(stream, *route, context, request.version(), response);
        if (streamed) break;  // A finished stream ends the connection.
      } else if (!response) {
        try {
          response = co_await route->handler(context);
        } catch (const std::exception& e) {
          spdlog::error(
              "{}", nlohmann::json(
                        {{"msg", "handler failed"}, {"path", context.path}, {"error", e.what()}})
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
          response = plainError(ErrorCode::kInternal, "internal error");
        }
      }
      co_await writeResponse(stream, *response, request.version(), keepAlive, ec);
      if (ec || !keepAlive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Runs a streaming handler. Returns true when the body was streamed; false when the handler
  // answered with a plain response, which is left in `response`.
  asio::awaitable<bool> runStream(beast::tcp_stream& stream, const Router::Route& route,
                                  RequestContext& context, unsigned version,
                                  std::optional<Response>& response) {
    LazyStream lazy(stream, version);

    try {
      response = co_await route.streamHandler(context, lazy);
    } catch (const std::exception& e) {
      spdlog::error("{}", nlohmann::json({{"msg", "stream handler failed"}, {"error", e.what()}})
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!lazy.headerSent) response = plainError(ErrorCode::kInternal, "internal error");
    }
    if (response && !lazy.headerSent) co_return false;
    if (!lazy.headerSent) co_await lazy.sendHeader();
    if (!lazy.failed && !lazy.chunks.failed()) {
      boost::system::error_code ec;
      co_await asio::async_write(stream, bhttp::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return true;
  }
};

Server::Server(asio::io_context& io, const Router& router, Authenticator authenticator,
               ServerOptions options)
    : impl_(std::make_unique<Impl>(io, router, std::move(authenticator), options)) {}

Server::~Server() {
  stop();
}

Status Server::listen(const std::string& host, uint16_t port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    return fail(ErrorCode::kInvalidArgument, "bad listen address " + host + ": " + ec.message());
  tcp::endpoint endpoint(address, port);
  impl_->acceptor.emplace(asio::make_strand(impl_->io));
  auto& acceptor = *impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail(ErrorCode::kIo,
                "listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  impl_->port = acceptor.local_endpoint().port();
  asio::co_spawn(acceptor.get_executor(), impl_->acceptLoop(), asio::detached);
  return {};
}

uint16_t Server::port() const {
  return impl_->port;
}

void Server::stop() {
  if (impl_ && impl_->acceptor && impl_->acceptor->is_open()) {
    asio::post(impl_->acceptor->get_executor(), [acceptor = &*impl_->acceptor] {
      boost::system::error_code ignored;
      acceptor->close(ignored);
    });
  }
}

Result<std::pair<std::string, uint16_t>> parseHostPort(std::string_view address) {
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return fail(ErrorCode::kInvalidArgument, "address must be HOST:PORT");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "address must be HOST:PORT");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  int value = 0;
  if (port.empty() || port.size() > 5) return fail(ErrorCode::kInvalidArgument, "bad port");
  for (char c : port) {
    if (c < '0' || c > '9') return fail(ErrorCode::kInvalidArgument, "bad port");
    value = value * 10 + (c - '0');
  }
  if (value > 65535) return fail(ErrorCode::kInvalidArgument, "port out of range");
  return std::make_pair(std::string(host), static_cast<uint16_t>(value));
}

}  // namespace skiff::http
