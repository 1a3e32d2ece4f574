#pragma once

// The node's metadata proxy: one listener per task, at 169.254.169.254:80 inside the task's own
// network namespace, all served by one set of I/O threads in the agent (Boost.Beast).
//
// Wiring (node agent): create one `MetadataProxy` at start with a `SkiffdIdentityProvider`; once
// a task's network namespace exists and before its process starts, call `addTask(metadata,
// netnsPath)`; when the task ends (before its namespace is deleted), call `removeTask(id)`.
// Because the listener was created inside the namespace, every connection it accepts comes from
// that task, so the proxy trusts the listener, not the source address. Credentials and the
// identity token are prefetched on `addTask` and renewed in the background before they expire,
// so requests are answered from memory.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "agent/metadata/identity_provider.h"
#include "agent/metadata/task_metadata.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::metadata {

struct MetadataProxyOptions {
  std::string address = "169.254.169.254";
  uint16_t port = 80;
  int ioThreads = 2;
  int blockingThreads = 2;         // For the rare request that must wait for skiffd.
  int64_t renewIntervalMs = 1000;  // How often cached answers are checked for renewal.
  int idleTimeoutSec = 60;         // Idle keep-alive connections are closed after this.
  CacheOptions cache;
  // Opens a task's listening socket, bound to address:port inside the namespace at netnsPath,
  // and returns its descriptor (close-on-exec; the proxy owns it). Empty: `listenInNetns`.
  std::function<Result<int>(const std::string& netnsPath, const std::string& address,
                            uint16_t port)>
      listen;
};

class MetadataProxy {
 public:
  // Starts the I/O and renewal threads. `upstream` answers credential and token requests.
  static Result<std::unique_ptr<MetadataProxy>> create(
      MetadataProxyOptions options, std::shared_ptr<IdentityProvider> upstream,
      const Clock& clock = SystemClock::instance());
  ~MetadataProxy();  // Stops everything; listeners are closed.
  MetadataProxy(const MetadataProxy&) = delete;
  MetadataProxy& operator=(const MetadataProxy&) = delete;

  // Creates the task's listener inside the network namespace at `netnsPath` (see
  // netns_listener.h; needs CAP_SYS_ADMIN and CAP_NET_ADMIN) and starts serving it.
  // kAlreadyExists when the task is already served.
  Status addTask(TaskMetadata task, const std::string& netnsPath);
  // Serves `task` on a listening socket the caller made (tests, benchmarks). Takes ownership of
  // `listenFd`, also on failure.
  Status adoptListener(TaskMetadata task, int listenFd);
  // Stops serving the task: closes its listener, refuses further requests on its open
  // connections and forgets its credentials. kNotFound for an unknown task.
  Status removeTask(const std::string& taskId);
  bool hasTask(const std::string& taskId) const;

  CachingIdentityProvider& identity();

 private:
  MetadataProxy() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::agent::metadata
