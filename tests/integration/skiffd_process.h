#pragma once

// Runs the real `skiffd` binary for integration tests: a fresh state directory, a free loopback
// port, and clean shutdown (or kill -9) on demand. Every process and directory it creates is
// removed by its destructor, also when a test fails.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "client/client.h"

namespace skiff::testing {

class SkiffdProcess {
 public:
  // Creates a temporary state directory; `extraFlags` are passed to every start.
  explicit SkiffdProcess(std::vector<std::string> extraFlags = {});
  ~SkiffdProcess();

  // Starts skiffd and waits until /healthz answers. Returns false (with a reason in `error()`)
  // when it does not come up within 20 s.
  bool start();
  // SIGTERM and wait.
  void stop();
  // SIGKILL and wait: the crash path.
  void kill9();

  // The host skiffd listens on (default 127.0.0.1). "0.0.0.0" makes it reachable from test
  // network namespaces; `address()` still uses loopback. Call before `start()`.
  void setListenHost(std::string host) { listenHost_ = std::move(host); }

  const std::string& stateDir() const { return stateDir_; }
  std::string address() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string adminToken() const;
  std::string joinToken() const;
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }

  // A client with the admin token (or `token` when given).
  std::unique_ptr<client::ApiClient> client(const std::string& token = "use-admin") const;

  // Paths of the binaries under test.
  static std::string skiffdPath();
  static std::string skiffCliPath();

 private:
  std::vector<std::string> extraFlags_;
  std::string stateDir_;
  std::string error_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string listenHost_ = "127.0.0.1";
};

// Runs a command, returning its exit code and what it wrote to stdout and stderr.
struct CommandResult {
  int exitCode = -1;
  std::string out;
  std::string err;
};
CommandResult runCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extraEnv = {},
                         const std::string& stdinText = "");

}  // namespace skiff::testing
