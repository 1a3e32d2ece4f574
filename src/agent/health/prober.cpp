#include "agent/health/prober.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace skiff::agent::health {
namespace {

constexpr size_t kMaxOutput = 1024;

int64_t steadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string cut(std::string text) {
  if (text.size() > kMaxOutput) text.resize(kMaxOutput);
  return text;
}

// A socket connected to ip:port within `deadlineMs` (steady clock), or the reason it is not.
struct Connection {
  int fd = -1;
  std::string error;
  ~Connection() {
    if (fd >= 0) ::close(fd);
  }
};

void connectTo(Connection& out, const std::string& ip, int64_t port, int64_t deadlineMs) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, ip.c_str(), &address.sin_addr) != 1) {
    out.error = "no IPv4 address for the task";
    return;
  }
  out.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (out.fd < 0) {
    out.error = std::string("socket: ") + std::strerror(errno);
    return;
  }
  if (::connect(out.fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) return;
  if (errno != EINPROGRESS) {
    out.error = std::strerror(errno);
    return;
  }
  pollfd waiting{out.fd, POLLOUT, 0};
  int64_t left = deadlineMs - steadyMs();
  if (left <= 0 || ::poll(&waiting, 1, static_cast<int>(left)) <= 0) {
    out.error = "timed out connecting";
    return;
  }
  int error = 0;
  socklen_t length = sizeof(error);
  ::getsockopt(out.fd, SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) out.error = std::strerror(error);
}

Attempt httpGet(const api::HealthCheck& check, const Target& target, int64_t deadlineMs) {
  Connection connection;
  connectTo(connection, target.ip, check.port, deadlineMs);
  if (!connection.error.empty()) return {false, cut(connection.error)};
  std::string request = "GET " + check.path + " HTTP/1.0\r\nHost: " + target.ip + ":" +
                        std::to_string(check.port) + "\r\nUser-Agent: skiff-prober\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    pollfd waiting{connection.fd, POLLOUT, 0};
    int64_t left = deadlineMs - steadyMs();
    if (left <= 0 || ::poll(&waiting, 1, static_cast<int>(left)) <= 0) {
      return {false, "timed out sending the request"};
    }
    ssize_t n = ::send(connection.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) return {false, cut(std::string("send: ") + std::strerror(errno))};
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string answer;
  while (answer.find("\r\n") == std::string::npos && answer.size() < kMaxOutput) {
    pollfd waiting{connection.fd, POLLIN, 0};
    int64_t left = deadlineMs - steadyMs();
    if (left <= 0 || ::poll(&waiting, 1, static_cast<int>(left)) <= 0) {
      return {false, "timed out waiting for the answer"};
    }
    char buffer[512];
    ssize_t n = ::recv(connection.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  // "HTTP/1.1 200 OK": the status is the second word.
  std::string line = answer.substr(0, answer.find("\r\n"));
  size_t space = line.find(' ');
  if (!line.starts_with("HTTP/") || space == std::string::npos) {
    return {false, cut("not an HTTP answer: " + line)};
  }
  int status = std::atoi(line.c_str() + space + 1);
  std::string output = cut("HTTP " + line.substr(space + 1));
  return {status == check.expectedStatus, output};
}

}  // namespace

Attempt NetworkChecker::run(const api::HealthCheck& check, const Target& target) {
  int64_t deadlineMs = steadyMs() + check.timeoutMs;
  switch (check.kind) {
    case api::HealthCheck::Kind::kTcp: {
      Connection connection;
      connectTo(connection, target.ip, check.port, deadlineMs);
      if (!connection.error.empty()) return {false, cut(connection.error)};
      return {true, "connected"};
    }
    case api::HealthCheck::Kind::kHttp:
      return httpGet(check, target, deadlineMs);
    case api::HealthCheck::Kind::kExec:
      if (!exec_) return {false, "exec checks are not available on this agent"};
      return exec_(target.containerId, check.command, check.timeoutMs);
  }
  return {false, "unknown check"};
}

CheckState::CheckState(api::HealthCheck check, int64_t startedAtMs, bool passingAtStart)
    : check_(std::move(check)),
      startedAtMs_(startedAtMs),
      passing_(passingAtStart),
      nextAttemptMs_(startedAtMs) {}

std::optional<bool> CheckState::record(const Attempt& attempt, int64_t nowMs) {
  nextAttemptMs_ = nowMs + check_.intervalMs;
  if (attempt.passed) {
    failures_ = 0;
    ++successes_;
    if (!passing_ && successes_ >= check_.successThreshold) {
      passing_ = true;
      return true;
    }
    return std::nullopt;
  }
  lastFailure_ = attempt.output;
  successes_ = 0;
  // Failures during the start period do not count: the service may still be starting.
  if (nowMs < startedAtMs_ + check_.startPeriodMs) return std::nullopt;
  ++failures_;
  if (passing_ && failures_ >= check_.failureThreshold) {
    passing_ = false;
    return false;
  }
  return std::nullopt;
}

Prober::Prober(api::HealthCheck check, Target target, std::shared_ptr<Checker> checker,
               int64_t startedAtMs, bool passingAtStart)
    : check_(check),
      target_(std::move(target)),
      checker_(std::move(checker)),
      state_(std::move(check), startedAtMs, passingAtStart) {}

std::optional<bool> Prober::tick(int64_t nowMs) {
  if (nowMs < state_.nextAttemptMs()) return std::nullopt;
  return state_.record(checker_->run(check_, target_), nowMs);
}

}  // namespace skiff::agent::health
