#pragma once

// Helpers that turn an image's config and a job's container into what the container sees.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace skiff::agent {

// Resolves an image config `user` ("uid[:gid]" or names) against the root filesystem at
// `rootfs` (its /etc/passwd and /etc/group). Empty: root. Fails when a name is not found.
Result<std::pair<uint32_t, uint32_t>> resolveUser(const std::string& user,
                                                  const std::string& rootfs);

// The image's environment ("KEY=VALUE"), overridden by the task's, then by `extra`; keys keep the
// position of their first appearance.
std::vector<std::string> mergeEnv(const std::vector<std::string>& imageEnv,
                                  const std::map<std::string, std::string>& taskEnv,
                                  const std::vector<std::pair<std::string, std::string>>& extra);

// The local address the kernel would use to reach `server` ("http://HOST:PORT"): how skiffd sees
// this machine. Falls back to 127.0.0.1.
std::string localAddressToward(const std::string& server);

}  // namespace skiff::agent
