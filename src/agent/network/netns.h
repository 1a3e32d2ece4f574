#pragma once

// Persistent network namespaces: a fresh namespace bind-mounted on a file, as `ip netns add`
// does, so it outlives the agent and the OCI runtime can join it by path.

#include <memory>
#include <string>

#include "agent/network/netlink.h"
#include "common/error.h"

namespace skiff::agent::network {

// Makes `dir` a shared mount point (a bind mount on itself when it is not one yet), so that an
// unmount of a namespace file there also reaches copies of the mount table made since.
Status prepareNetnsDir(const std::string& dir);

// Undoes `prepareNetnsDir`: unmounts the bind mount on `dir` (every mount on it). No error when
// it is not a mount point.
Status releaseNetnsDir(const std::string& dir);

struct CreatedNetns {
  int fd = -1;                          // Open namespace file (O_CLOEXEC); the caller closes it.
  std::unique_ptr<RouteSocket> socket;  // A route socket inside the new namespace.
};

// Creates a new network namespace bound at `path` (the file is created) and returns a handle to
// it and a route socket inside it. Runs in a short-lived thread, so the caller's namespace never
// changes.
Result<CreatedNetns> createNetns(const std::string& path);

// Opens a route socket inside the namespace bound at `path`.
Result<std::unique_ptr<RouteSocket>> routeSocketIn(const std::string& path);

// Unmounts and removes `path`. No error when it does not exist.
Status deleteNetns(const std::string& path);

}  // namespace skiff::agent::network
