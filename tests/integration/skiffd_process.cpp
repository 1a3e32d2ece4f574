#include "skiffd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "testing/ports.h"

namespace skiff::testing {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

}  // namespace

std::string SkiffdProcess::skiffdPath() {
  return SKIFFD_PATH;
}
std::string SkiffdProcess::skiffCliPath() {
  return SKIFF_CLI_PATH;
}

SkiffdProcess::SkiffdProcess(std::vector<std::string> extraFlags)
    : extraFlags_(std::move(extraFlags)) {
  char pattern[] = "/tmp/skiff-it-XXXXXX";
  char* dir = ::mkdtemp(pattern);
  stateDir_ = dir != nullptr ? dir : "/tmp/skiff-it-fallback";
}

SkiffdProcess::~SkiffdProcess() {
  kill9();
  std::error_code ignored;
  std::filesystem::remove_all(stateDir_, ignored);
}

bool SkiffdProcess::start() {
  // A restart keeps the port, so clients can keep their address across a crash.
  if (port_ == 0) port_ = unusedLoopbackPort();
  std::string listen = listenHost_ + ":" + std::to_string(port_);
  std::vector<std::string> args = {skiffdPath(), "--state-dir", stateDir_, "--listen",
                                   listen,       "--log-level", "warn"};
  args.insert(args.end(), extraFlags_.begin(), extraFlags_.end());
  std::string logPath = stateDir_ + "/skiffd.log";
  pid_ = ::fork();
  if (pid_ == 0) {
    int log = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(log, 2);
    ::dup2(log, 1);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  client::ClientOptions options;
  options.connectTimeoutMs = 500;
  options.requestTimeoutMs = 2000;
  client::ApiClient probe(address(), "", options);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "skiffd exited during start; log: " + readFile(logPath);
      return false;
    }
    auto response = probe.call("GET", "/healthz", nullptr);
    if (response && response->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error_ = "skiffd did not answer /healthz within 20 s; log: " + readFile(logPath);
  return false;
}

void SkiffdProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 500; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill9();
}

void SkiffdProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string SkiffdProcess::adminToken() const {
  return readFile(stateDir_ + "/admin.token");
}
std::string SkiffdProcess::joinToken() const {
  return readFile(stateDir_ + "/join.token");
}

std::unique_ptr<client::ApiClient> SkiffdProcess::client(const std::string& token) const {
  return std::make_unique<client::ApiClient>(address(),
                                             token == "use-admin" ? adminToken() : token);
}

CommandResult runCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extraEnv, const std::string& stdinText) {
  CommandResult result;
  char outPath[] = "/tmp/skiff-cmd-out-XXXXXX";
  char errPath[] = "/tmp/skiff-cmd-err-XXXXXX";
  char inPath[] = "/tmp/skiff-cmd-in-XXXXXX";
  int outFd = ::mkstemp(outPath);
  int errFd = ::mkstemp(errPath);
  int inFd = ::mkstemp(inPath);
  if (::write(inFd, stdinText.data(), stdinText.size()) < 0) return result;
  ::lseek(inFd, 0, SEEK_SET);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(inFd, 0);
    ::dup2(outFd, 1);
    ::dup2(errFd, 2);
    for (const auto& assignment : extraEnv) ::putenv(const_cast<char*>(assignment.c_str()));
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::close(outFd);
  ::close(errFd);
  ::close(inFd);
  result.out = readFile(outPath);
  result.err = readFile(errPath);
  ::unlink(outPath);
  ::unlink(errPath);
  ::unlink(inPath);
  return result;
}

}  // namespace skiff::testing
