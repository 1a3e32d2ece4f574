#include "testing/fake_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>

namespace skiff::agent::image::testing {

FakeHttpServer::FakeHttpServer(Handler handler) : handler_(std::move(handler)) {
  listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listenFd_, 64);
  socklen_t len = sizeof addr;
  ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::jthread([this] { acceptLoop(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_ = true;
  acceptor_ = {};
  std::vector<std::jthread> connections;
  {
    std::lock_guard lock(mutex_);
    connections.swap(connections_);
  }
  connections.clear();
  ::close(listenFd_);
}

void FakeHttpServer::acceptLoop() {
  while (!stop_) {
    pollfd p{listenFd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {
      continue;
    }
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    std::lock_guard lock(mutex_);
    connections_.emplace_back([this, fd] { serve(fd); });
  }
}

void FakeHttpServer::serve(int fd) {
  timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string data;
  char buffer[4096];
  while (data.find("\r\n\r\n") == std::string::npos && data.size() < 65536) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) {
      ::close(fd);
      return;
    }
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) {
      ::close(fd);
      return;
    }
    data.append(buffer, static_cast<size_t>(n));
    if (!std::isupper(static_cast<unsigned char>(data[0]))) {
      ::close(fd);  // Not HTTP (a TLS hello): hang up at once, as a plain HTTP server would.
      return;
    }
  }
  Request request;
  size_t lineEnd = data.find("\r\n");
  std::string line = data.substr(0, lineEnd);
  size_t s1 = line.find(' ');
  size_t s2 = line.find(' ', s1 + 1);
  request.method = line.substr(0, s1);
  std::string target = line.substr(s1 + 1, s2 - s1 - 1);
  size_t q = target.find('?');
  request.path = target.substr(0, q);
  request.query = q == std::string::npos ? "" : target.substr(q + 1);
  size_t pos = lineEnd + 2;
  while (true) {
    size_t end = data.find("\r\n", pos);
    if (end == std::string::npos || end == pos) {
      break;
    }
    std::string header = data.substr(pos, end - pos);
    size_t colon = header.find(':');
    if (colon != std::string::npos) {
      std::string name = header.substr(0, colon);
      for (char& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      size_t v = header.find_first_not_of(' ', colon + 1);
      request.headers[name] = v == std::string::npos ? "" : header.substr(v);
    }
    pos = end + 2;
  }
  Response response = handler_(request);
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " X\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  out += "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    out += name + ": " + value + "\r\n";
  }
  out += "\r\n";
  if (request.method != "HEAD") {
    out += response.body;
  }
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  // Drain until the client closes, so it sees the whole response before the reset.
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
  ::close(fd);
}

std::string urlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string queryParam(std::string_view query, std::string_view key) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string_view pair =
        query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? "" : urlDecode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    pos = amp + 1;
  }
  return "";
}

}  // namespace skiff::agent::image::testing
