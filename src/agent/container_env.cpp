#include "agent/container_env.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/http_server.h"

namespace skiff::agent {

Result<std::pair<uint32_t, uint32_t>> resolveUser(const std::string& user,
                                                  const std::string& rootfs) {
  if (user.empty()) return std::pair<uint32_t, uint32_t>{0, 0};
  std::string name = user;
  std::string group;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    name = user.substr(0, colon);
    group = user.substr(colon + 1);
  }
  auto numeric = [](const std::string& s) -> std::optional<uint32_t> {
    if (s.empty() || s.size() > 9 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(std::stoul(s));
  };
  // Looks up NAME in an /etc/passwd or /etc/group style file: field 3 is the id, field 4 (passwd)
  // the primary group.
  auto lookup = [&](const std::string& file, const std::string& key,
                    int field) -> std::optional<uint32_t> {
    std::ifstream in(rootfs + file);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> fields;
      std::stringstream split(line);
      std::string item;
      while (std::getline(split, item, ':')) fields.push_back(item);
      if (fields.size() > static_cast<size_t>(field) && fields[0] == key) {
        return numeric(fields[field]);
      }
    }
    return std::nullopt;
  };
  std::optional<uint32_t> uid = numeric(name);
  std::optional<uint32_t> gid;
  if (!uid) {
    uid = lookup("/etc/passwd", name, 2);
    if (!uid) return fail(ErrorCode::kInvalidArgument, "user " + name + " not found in the image");
    gid = lookup("/etc/passwd", name, 3);
  }
  if (!group.empty()) {
    gid = numeric(group);
    if (!gid) gid = lookup("/etc/group", group, 2);
    if (!gid)
      return fail(ErrorCode::kInvalidArgument, "group " + group + " not found in the image");
  }
  return std::pair<uint32_t, uint32_t>{*uid, gid.value_or(0)};
}

std::vector<std::string> mergeEnv(const std::vector<std::string>& imageEnv,
                                  const std::map<std::string, std::string>& taskEnv,
                                  const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  std::map<std::string, size_t> positions;
  auto set = [&](const std::string& key, const std::string& value) {
    auto it = positions.find(key);
    if (it != positions.end()) {
      env[it->second] = key + "=" + value;
    } else {
      positions[key] = env.size();
      env.push_back(key + "=" + value);
    }
  };
  for (const std::string& entry : imageEnv) {
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    set(entry.substr(0, eq), entry.substr(eq + 1));
  }
  for (const auto& [key, value] : taskEnv) set(key, value);
  for (const auto& [key, value] : extra) set(key, value);
  return env;
}

// A UDP connect sends nothing; it only makes the kernel pick the route and source address.
std::string localAddressToward(const std::string& server) {
  std::string_view rest = server;
  if (auto scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  auto hostPort = http::parseHostPort(rest);
  if (!hostPort) return "127.0.0.1";
  std::string host = hostPort->first;
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(hostPort->second).c_str(), &hints, &found) != 0) {
    return "127.0.0.1";
  }
  std::string address = "127.0.0.1";
  int fd = socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    char text[INET6_ADDRSTRLEN] = {};
    if (local.ss_family == AF_INET &&
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, text, sizeof text)) {
      address = text;
    } else if (local.ss_family == AF_INET6 &&
               inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, text,
                         sizeof text)) {
      address = "[" + std::string(text) + "]";
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return address;
}

}  // namespace skiff::agent
