#pragma once

// A private etcd member for tests that need the real thing: `/usr/bin/etcd` (Debian's
// etcd-server) on two free loopback ports with a fresh data directory of its own. `start` waits
// until the member reports itself healthy (it has elected itself leader); the destructor kills
// the process and removes the directory, also when a test fails. The member runs with short raft
// timings (10 ms heartbeat, 100 ms election) so it starts in a fraction of a second. etcd 3.4
// serves the JSON gateway on its client URL by default when configured by flags, as here
// (--enable-grpc-gateway only defaults to false with a config file). The member is started from
// the calling thread with PR_SET_PDEATHSIG, so call `start` from a thread that outlives it (the
// test's own thread).
//
// A fixture that cannot start etcd is a failure of the test, not a reason to skip it:
// `ASSERT_TRUE(etcd.start()) << etcd.error()`.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "testing/ports.h"

namespace skiff::testing {

class EtcdProcess {
 public:
  // A single-member cluster; `extraFlags` go to every start of the member.
  explicit EtcdProcess(std::vector<std::string> extraFlags = {});
  // One member of a cluster (see EtcdCluster): its name, its ports, and etcd's --initial-cluster
  // naming every member.
  EtcdProcess(std::string name, int clientPort, int peerPort, std::string initialCluster);
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts the member (again with the same ports and data after `kill9` or `stop`) and, with
  // `waitHealthy`, waits up to 20 s until /health answers true. Returns false with a reason in
  // `error()`.
  bool start(bool waitHealthy = true);
  // Waits up to 20 s until /health answers true.
  bool waitHealthy();
  // SIGKILL and wait: the crash path; the data directory stays.
  void kill9();
  // SIGTERM and wait.
  void stop();

  // "127.0.0.1:PORT" of the client URL, and the store spec "etcd://127.0.0.1:PORT".
  std::string endpoint() const;
  std::string spec() const { return "etcd://" + endpoint(); }
  const std::string& dataDir() const { return dir_; }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }

  // The path of the etcd binary the tests use.
  static std::string binary();

 private:
  std::vector<std::string> extraFlags_;
  std::string name_ = "test";
  std::string initialCluster_;
  std::string dir_;
  std::string error_;
  pid_t pid_ = -1;
  int clientPort_ = 0;
  int peerPort_ = 0;
};

// A cluster of `size` members on loopback, each an EtcdProcess with its own ports and directory.
class EtcdCluster {
 public:
  explicit EtcdCluster(size_t size);
  // Starts every member, then waits until each reports itself healthy (a leader is elected).
  bool start();
  EtcdProcess& member(size_t i) { return *members_[i]; }
  size_t size() const { return members_.size(); }
  // "etcd://A,B,C" in member order.
  std::string spec() const;
  const std::string& error() const { return error_; }

 private:
  std::vector<std::unique_ptr<EtcdProcess>> members_;
  std::string error_;
};

}  // namespace skiff::testing
