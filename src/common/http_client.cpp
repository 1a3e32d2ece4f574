#include "common/http_client.h"

#include <chrono>
#include <cstdint>
#include <limits>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "common/http_server.h"

namespace skiff::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kPieceBytes = 64 * 1024;

Error unreachable(const std::string& step, const std::string& hostPort,
                  const boost::system::error_code& ec) {
  return Error(ErrorCode::kUnavailable, step + " http://" + hostPort + ": " + ec.message());
}

}  // namespace

struct StreamingGet::Impl {
  explicit Impl(const asio::any_io_executor& executor) : stream(executor) {}

  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
};

StreamingGet::StreamingGet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StreamingGet::~StreamingGet() = default;

unsigned StreamingGet::status() const {
  return impl_->parser.get().result_int();
}

asio::awaitable<Result<std::unique_ptr<StreamingGet>>> StreamingGet::open(GetRequest request) {
  auto hostPort = parseHostPort(request.hostPort);
  if (!hostPort) {
    co_return fail(ErrorCode::kInvalidArgument, "bad address " + request.hostPort);
  }
  std::string host = hostPort->first;
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);

  auto executor = co_await asio::this_coro::executor;
  boost::system::error_code ec;
  tcp::resolver resolver(executor);
  auto endpoints = co_await resolver.async_resolve(host, std::to_string(hostPort->second),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::unexpected(unreachable("resolve", request.hostPort, ec));
  auto impl = std::make_unique<Impl>(executor);
  impl->stream.expires_after(std::chrono::seconds(5));
  co_await impl->stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::unexpected(unreachable("connect to", request.hostPort, ec));

  bhttp::request<bhttp::empty_body> get{bhttp::verb::get, request.target, 11};
  get.set(bhttp::field::host, request.hostPort);
  for (const auto& [name, value] : request.headers) get.set(name, value);
  impl->stream.expires_after(std::chrono::seconds(10));
  co_await bhttp::async_write(impl->stream, get, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::unexpected(unreachable("send to", request.hostPort, ec));

  // The server may send its header only with the first bytes of the body: no deadline from here.
  impl->stream.expires_never();
  // Any length: a relayed stream has none. Boost 1.74 compares a Content-Length with an empty
  // limit as exceeding it, hence the largest value rather than boost::none.
  impl->parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  co_await bhttp::async_read_header(impl->stream, impl->buffer, impl->parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::unexpected(unreachable("read from", request.hostPort, ec));
  co_return std::unique_ptr<StreamingGet>(new StreamingGet(std::move(impl)));
}

asio::awaitable<std::optional<std::string>> StreamingGet::next() {
  auto& parser = impl_->parser;
  while (!parser.is_done()) {
    std::string piece(kPieceBytes, '\0');
    parser.get().body().data = piece.data();
    parser.get().body().size = piece.size();
    parser.get().body().more = true;
    boost::system::error_code ec;
    co_await bhttp::async_read_some(impl_->stream, impl_->buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec == bhttp::error::need_buffer) ec = {};
    size_t got = piece.size() - parser.get().body().size;
    if (ec) co_return std::nullopt;  // The server went away mid-body.
    if (got == 0) continue;
    piece.resize(got);
    co_return piece;
  }
  co_return std::nullopt;
}

}  // namespace skiff::http
