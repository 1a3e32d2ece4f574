#include "agent/network/ipam.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

namespace skiff::agent::network {
namespace {

using json = nlohmann::json;

// Atomic replace without fsync: survives kill -9 (the page cache outlives the process) at the
// cost of a file write, not a disk flush, on the container start path.
Status writeReplace(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + tmp, errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return std::unexpected(errnoError("write " + tmp, err));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return std::unexpected(errnoError("rename " + tmp, errno));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Ipam>> Ipam::open(IpamOptions options, const Clock& clock) {
  if (options.block.prefix > 30) {
    return fail(ErrorCode::kInvalidArgument, "address block must be /30 or larger");
  }
  std::unique_ptr<Ipam> ipam(new Ipam(std::move(options), clock));
  int fd = ::open(ipam->options_.statePath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return ipam;
    return std::unexpected(errnoError("open " + ipam->options_.statePath, errno));
  }
  std::string text;
  char buffer[65536];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) {
    return fail(ErrorCode::kInternal, "corrupt address state " + ipam->options_.statePath);
  }
  json allocated = doc.value("allocated", json::object());
  json quarantined = doc.value("quarantined", json::object());
  for (const auto& [owner, address] : allocated.items()) {
    auto ip = address.is_string() ? api::parseIpv4(address.get<std::string>()) : std::nullopt;
    if (!ip) continue;
    ipam->byOwner_[owner] = *ip;
    ipam->byAddress_[*ip] = owner;
  }
  for (const auto& [address, until] : quarantined.items()) {
    auto ip = api::parseIpv4(address);
    if (ip && until.is_number_integer()) ipam->quarantine_[*ip] = until.get<int64_t>();
  }
  if (auto cursor = api::parseIpv4(doc.value("cursor", ""))) ipam->cursor_ = *cursor;
  return ipam;
}

Status Ipam::saveLocked() const {
  json allocated = json::object();
  for (const auto& [owner, ip] : byOwner_) allocated[owner] = api::formatIpv4(ip);
  json quarantined = json::object();
  for (const auto& [ip, until] : quarantine_) quarantined[api::formatIpv4(ip)] = until;
  json doc = {{"block", options_.block.toString()},
              {"cursor", api::formatIpv4(cursor_)},
              {"allocated", std::move(allocated)},
              {"quarantined", std::move(quarantined)}};
  return writeReplace(options_.statePath, doc.dump());
}

Result<api::Ipv4> Ipam::allocate(const std::string& owner) {
  std::lock_guard lock(mutex_);
  if (auto it = byOwner_.find(owner); it != byOwner_.end()) return it->second;
  int64_t now = clock_.nowMs();
  std::erase_if(quarantine_, [&](const auto& entry) { return entry.second <= now; });
  const api::Ipv4Cidr& block = options_.block;
  api::Ipv4 first = block.base + 1;
  api::Ipv4 last = block.base + static_cast<api::Ipv4>(block.size() - 2);
  uint64_t usable = last - first + 1;
  api::Ipv4 start = block.contains(cursor_) && cursor_ >= first && cursor_ <= last ? cursor_ : last;
  for (uint64_t step = 1; step <= usable; ++step) {
    api::Ipv4 candidate = first + static_cast<api::Ipv4>((start - first + step) % usable);
    if (byAddress_.contains(candidate) || quarantine_.contains(candidate)) continue;
    byOwner_[owner] = candidate;
    byAddress_[candidate] = owner;
    api::Ipv4 previous = cursor_;
    cursor_ = candidate;
    if (auto saved = saveLocked(); !saved) {
      byOwner_.erase(owner);
      byAddress_.erase(candidate);
      cursor_ = previous;
      return std::unexpected(saved.error().wrap("address state"));
    }
    return candidate;
  }
  return fail(ErrorCode::kUnavailable, "no free address in " + block.toString() + " (" +
                                           std::to_string(quarantine_.size()) + " in quarantine)");
}

Status Ipam::release(const std::string& owner) {
  std::lock_guard lock(mutex_);
  auto it = byOwner_.find(owner);
  if (it == byOwner_.end()) return {};
  api::Ipv4 ip = it->second;
  byOwner_.erase(it);
  byAddress_.erase(ip);
  quarantine_[ip] = clock_.nowMs() + options_.quarantineMs;
  return saveLocked();
}

std::optional<api::Ipv4> Ipam::addressOf(const std::string& owner) const {
  std::lock_guard lock(mutex_);
  auto it = byOwner_.find(owner);
  if (it == byOwner_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, api::Ipv4> Ipam::allocations() const {
  std::lock_guard lock(mutex_);
  return byOwner_;
}

std::map<api::Ipv4, int64_t> Ipam::quarantined() const {
  std::lock_guard lock(mutex_);
  return quarantine_;
}

}  // namespace skiff::agent::network
