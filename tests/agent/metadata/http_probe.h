#pragma once

// A minimal blocking HTTP/1.1 client for tests. The socket is created in the calling thread's
// network namespace, so called from inside `runInNetns` it connects from that namespace.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace skiff::agent::metadata::testing {

struct Probe {
  int status = 0;  // 0: no answer (connection refused, reset...).
  std::string body;
  std::string error;
};

inline Probe httpRequest(const std::string& ip, uint16_t port, boost::beast::http::verb method,
                         const std::string& target,
                         const std::vector<std::pair<std::string, std::string>>& headers = {},
                         const std::string& body = "") {
  namespace asio = boost::asio;
  namespace bhttp = boost::beast::http;
  Probe probe;
  try {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address(ip), port});
    bhttp::request<bhttp::string_body> request{method, target, 11};
    request.set(bhttp::field::host, ip);
    for (const auto& [name, value] : headers) request.set(name, value);
    if (!body.empty()) request.set(bhttp::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    bhttp::write(socket, request);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    bhttp::read(socket, buffer, response);
    probe.status = static_cast<int>(response.result_int());
    probe.body = response.body();
  } catch (const std::exception& e) {
    probe.error = e.what();
  }
  return probe;
}

}  // namespace skiff::agent::metadata::testing
