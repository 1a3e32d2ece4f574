#include "testing/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace skiff::testing {
namespace {

// One GET to 127.0.0.1:port over a plain socket; the whole answer, or "" on any failure.
std::string httpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n <= 0) break;
        answer.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return answer;
}

std::string readTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

}  // namespace

std::string EtcdProcess::binary() {
  const char* overridden = std::getenv("SKIFF_TEST_ETCD");
  return overridden != nullptr ? overridden : "/usr/bin/etcd";
}

EtcdProcess::EtcdProcess(std::vector<std::string> extraFlags) : extraFlags_(std::move(extraFlags)) {
  char pattern[] = "/tmp/skiff-etcd-XXXXXX";
  char* dir = ::mkdtemp(pattern);
  dir_ = dir != nullptr ? dir : "";
}

EtcdProcess::EtcdProcess(std::string name, int clientPort, int peerPort, std::string initialCluster)
    : EtcdProcess() {
  name_ = std::move(name);
  clientPort_ = clientPort;
  peerPort_ = peerPort;
  initialCluster_ = std::move(initialCluster);
}

EtcdProcess::~EtcdProcess() {
  kill9();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string EtcdProcess::endpoint() const {
  return "127.0.0.1:" + std::to_string(clientPort_);
}

bool EtcdProcess::start(bool waitHealthy) {
  error_.clear();
  if (dir_.empty()) {
    error_ = "cannot create a temporary directory for etcd";
    return false;
  }
  if (::access(binary().c_str(), X_OK) != 0) {
    error_ = binary() + " is not installed (scripts/setup.sh installs etcd-server)";
    return false;
  }
  if (clientPort_ == 0) {
    clientPort_ = unusedLoopbackPort();
    peerPort_ = unusedLoopbackPort();
  }
  const std::string client = "http://127.0.0.1:" + std::to_string(clientPort_);
  const std::string peer = "http://127.0.0.1:" + std::to_string(peerPort_);
  const std::string cluster = initialCluster_.empty() ? name_ + "=" + peer : initialCluster_;
  // clang-format off
  std::vector<std::string> args = {
      binary(),
      "--name", name_,
      "--data-dir", dir_ + "/data",
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", cluster,
      "--heartbeat-interval", "10",
      "--election-timeout", "100",
      "--log-level", "warn"};
  // clang-format on
  args.insert(args.end(), extraFlags_.begin(), extraFlags_.end());
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string logPath = dir_ + "/etcd.log";
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls between fork and exec: the test process has threads.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // Never outlive a test binary that crashed.
    if (::getppid() != parent) ::_exit(127);
    int log = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  return !waitHealthy || this->waitHealthy();
}

bool EtcdProcess::waitHealthy() {
  const std::string logPath = dir_ + "/etcd.log";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "etcd exited during start; its log ends: " + readTail(logPath);
      return false;
    }
    if (httpGet(clientPort_, "/health").find("\"health\":\"true\"") != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error_ = "etcd did not become healthy within 20 s; its log ends: " + readTail(logPath);
  kill9();
  return false;
}

void EtcdProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void EtcdProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

EtcdCluster::EtcdCluster(size_t size) {
  std::vector<std::pair<int, int>> ports;
  std::string initialCluster;
  for (size_t i = 0; i < size; ++i) {
    ports.emplace_back(unusedLoopbackPort(), unusedLoopbackPort());
    if (!initialCluster.empty()) initialCluster += ",";
    initialCluster +=
        "m" + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(ports.back().second);
  }
  for (size_t i = 0; i < size; ++i) {
    members_.push_back(std::make_unique<EtcdProcess>("m" + std::to_string(i), ports[i].first,
                                                     ports[i].second, initialCluster));
  }
}

bool EtcdCluster::start() {
  for (auto& member : members_) {
    if (!member->start(/*waitHealthy=*/false)) {
      error_ = member->error();
      return false;
    }
  }
  for (auto& member : members_) {
    if (!member->waitHealthy()) {
      error_ = member->error();
      return false;
    }
  }
  return true;
}

std::string EtcdCluster::spec() const {
  std::string spec = "etcd://";
  for (size_t i = 0; i < members_.size(); ++i) {
    if (i > 0) spec += ",";
    spec += members_[i]->endpoint();
  }
  return spec;
}

}  // namespace skiff::testing
