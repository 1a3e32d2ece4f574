// Health checks: verdicts from attempts (thresholds, start period, intervals) with a manual clock,
// and real tcp/http attempts against servers on loopback.

#include "agent/health/prober.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"

namespace skiff::agent::health {
namespace {

api::HealthCheck tcpCheck(int64_t port) {
  api::HealthCheck check;
  check.kind = api::HealthCheck::Kind::kTcp;
  check.port = port;
  check.intervalMs = 1000;
  check.timeoutMs = 500;
  check.failureThreshold = 3;
  check.successThreshold = 2;
  return check;
}

const Attempt kPass{true, "ok"};
const Attempt kFail{false, "HTTP 503"};

TEST(CheckState, ReadinessPassesAfterSuccessThresholdPassesInARow) {
  ManualClock clock;
  CheckState state(tcpCheck(80), clock.nowMs(), /*passingAtStart=*/false);
  EXPECT_EQ(state.nextAttemptMs(), clock.nowMs());
  EXPECT_EQ(state.record(kPass, clock.nowMs()), std::nullopt);
  EXPECT_EQ(state.nextAttemptMs(), clock.nowMs() + 1000);
  clock.advanceMs(1000);
  EXPECT_EQ(state.record(kFail, clock.nowMs()), std::nullopt);  // The run of passes restarts.
  clock.advanceMs(1000);
  EXPECT_EQ(state.record(kPass, clock.nowMs()), std::nullopt);
  clock.advanceMs(1000);
  EXPECT_EQ(state.record(kPass, clock.nowMs()), true);
  EXPECT_TRUE(state.passing());
}

TEST(CheckState, FailsAfterFailureThresholdFailuresInARowAndKeepsTheOutput) {
  ManualClock clock;
  CheckState state(tcpCheck(80), clock.nowMs(), /*passingAtStart=*/true);
  EXPECT_EQ(state.record(kFail, clock.nowMs()), std::nullopt);
  EXPECT_EQ(state.record(kFail, clock.nowMs()), std::nullopt);
  EXPECT_EQ(state.record(kFail, clock.nowMs()), false);
  EXPECT_FALSE(state.passing());
  EXPECT_EQ(state.lastFailure(), "HTTP 503");
  // Failing stays failing without another transition.
  EXPECT_EQ(state.record(kFail, clock.nowMs()), std::nullopt);
}

TEST(CheckState, FailuresDuringTheStartPeriodDoNotCount) {
  ManualClock clock;
  api::HealthCheck check = tcpCheck(80);
  check.startPeriodMs = 5000;
  check.failureThreshold = 1;
  CheckState state(check, clock.nowMs(), /*passingAtStart=*/true);
  EXPECT_EQ(state.record(kFail, clock.nowMs() + 4999), std::nullopt);
  EXPECT_TRUE(state.passing());
  EXPECT_EQ(state.record(kFail, clock.nowMs() + 5000), false);
}

class ScriptedChecker final : public Checker {
 public:
  std::vector<Attempt> script;
  int runs = 0;
  Attempt run(const api::HealthCheck&, const Target&) override {
    return script.at(static_cast<size_t>(runs++));
  }
};

TEST(Prober, AttemptsOnlyWhenDue) {
  ManualClock clock;
  auto checker = std::make_shared<ScriptedChecker>();
  checker->script = {kPass, kPass};
  api::HealthCheck check = tcpCheck(80);
  Prober prober(check, {"10.0.0.1", "c1"}, checker, clock.nowMs(), false);
  EXPECT_EQ(prober.tick(clock.nowMs()), std::nullopt);
  EXPECT_EQ(prober.tick(clock.nowMs() + 999), std::nullopt);
  EXPECT_EQ(checker->runs, 1);
  EXPECT_EQ(prober.tick(clock.nowMs() + 1000), true);
  EXPECT_EQ(checker->runs, 2);
}

// A loopback listener on a free port, answering each connection with `answer` (if any).
class LoopbackServer {
 public:
  explicit LoopbackServer(std::string answer) : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] {
      for (;;) {
        int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0 || stop_) {
          if (client >= 0) ::close(client);
          return;
        }
        char buffer[1024];
        ssize_t ignored = ::recv(client, buffer, sizeof(buffer), 0);
        (void)ignored;
        if (!answer_.empty()) {
          ssize_t sent = ::send(client, answer_.data(), answer_.size(), MSG_NOSIGNAL);
          (void)sent;
        }
        ::close(client);
      }
    });
  }
  ~LoopbackServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::string answer_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(NetworkChecker, TcpPassesWhenSomethingListensAndFailsWhenNot) {
  NetworkChecker checker;
  int closedPort = 0;
  {
    LoopbackServer server("");
    closedPort = server.port();
    EXPECT_TRUE(checker.run(tcpCheck(server.port()), {"127.0.0.1", ""}).passed);
  }
  Attempt refused = checker.run(tcpCheck(closedPort), {"127.0.0.1", ""});
  EXPECT_FALSE(refused.passed);
  EXPECT_EQ(refused.output, "Connection refused");
  EXPECT_FALSE(checker.run(tcpCheck(80), {"", ""}).passed);
}

TEST(NetworkChecker, HttpComparesTheStatusWithTheExpectedOne) {
  LoopbackServer ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  LoopbackServer unavailable("HTTP/1.1 503 Service Unavailable\r\n\r\n");
  api::HealthCheck check = tcpCheck(ok.port());
  check.kind = api::HealthCheck::Kind::kHttp;
  NetworkChecker checker;
  Attempt passed = checker.run(check, {"127.0.0.1", ""});
  EXPECT_TRUE(passed.passed);
  EXPECT_EQ(passed.output, "HTTP 200 OK");
  check.port = unavailable.port();
  Attempt failed = checker.run(check, {"127.0.0.1", ""});
  EXPECT_FALSE(failed.passed);
  EXPECT_EQ(failed.output, "HTTP 503 Service Unavailable");
  check.expectedStatus = 503;
  EXPECT_TRUE(checker.run(check, {"127.0.0.1", ""}).passed);
}

TEST(NetworkChecker, HttpFailsWhenTheServerClosesWithoutAnAnswer) {
  LoopbackServer silent("");
  api::HealthCheck check = tcpCheck(silent.port());
  check.kind = api::HealthCheck::Kind::kHttp;
  check.timeoutMs = 200;
  Attempt attempt = NetworkChecker().run(check, {"127.0.0.1", ""});
  EXPECT_FALSE(attempt.passed);
  EXPECT_THAT(attempt.output, ::testing::StartsWith("not an HTTP answer"));
}

TEST(NetworkChecker, ExecGoesThroughTheRunner) {
  api::HealthCheck check = tcpCheck(0);
  check.kind = api::HealthCheck::Kind::kExec;
  check.command = {"cat", "/tmp/alive"};
  EXPECT_FALSE(NetworkChecker().run(check, {"", "c1"}).passed);
  std::vector<std::string> seen;
  NetworkChecker checker(
      [&](const std::string& container, const std::vector<std::string>& command, int64_t) {
        seen = command;
        return Attempt{container == "c1", "exit 0"};
      });
  EXPECT_TRUE(checker.run(check, {"", "c1"}).passed);
  EXPECT_EQ(seen, check.command);
}

}  // namespace
}  // namespace skiff::agent::health
