#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/constraint.h"
#include "api/job_parsers.h"
#include "api/names.h"

namespace skiff::api::detail {
namespace {

struct ConstraintInfo {
  std::string_view name;
  bool boolean;
};
constexpr ConstraintInfo kConstraints[] = {
    {"uniqueHost", true},    {"exclusiveHost", true},     {"zoneBalance", true},
    {"activeHost", true},    {"availabilityZone", false}, {"machineId", false},
    {"machineGroup", false}, {"machineType", false},      {"zone", false},
};
void checkImageName(Checker& checker, const std::string& path, const std::string& name) {
  if (name.size() > 255 || !validImageName(name)) {
    checker.add(path,
                "must be an image name such as \"busybox\" or \"localhost:5000/team/app\": "
                "lowercase path components, optionally after a registry host (got " +
                    describeValue(name) + ")");
  }
}

std::optional<Image> parseImageReference(Checker& checker, const std::string& path,
                                         const std::string& reference) {
  Image image;
  std::string rest = reference;
  bool hasDigest = false;
  bool hasTag = false;
  if (auto at = rest.find('@'); at != std::string::npos) {
    hasDigest = true;
    image.digest = rest.substr(at + 1);
    rest.resize(at);
  }
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    hasTag = true;
    image.tag = rest.substr(colon + 1);
    rest.resize(colon);
  }
  image.name = rest;
  size_t before = checker.errors.size();
  checkImageName(checker, path, image.name);
  if (hasTag && hasDigest) {
    checker.add(path,
                "must have a tag or a digest, not both (got " + describeValue(reference) + ")");
  }
  if (hasTag && !validImageTag(image.tag)) {
    checker.add(path, "has an invalid tag (got " + describeValue(image.tag) + ")");
  }
  if (hasDigest && !validImageDigest(image.digest)) {
    checker.add(path, "has an invalid digest: must be sha256: and 64 lowercase hex digits (got " +
                          describeValue(image.digest) + ")");
  }
  if (image.tag.empty() && image.digest.empty()) image.tag = "latest";
  if (checker.errors.size() != before) return std::nullopt;
  return image;
}

std::optional<Image> parseImage(Checker& checker, const json& container, const std::string& path) {
  const json* value = checker.field(container, path, "image", true);
  if (value == nullptr) return std::nullopt;
  std::string imagePath = joinPath(path, "image");
  if (value->is_string()) {
    return parseImageReference(checker, imagePath, value->get<std::string>());
  }
  if (!checker.object(*value, imagePath, {"name", "tag", "digest"})) return std::nullopt;
  Image image;
  size_t before = checker.errors.size();
  auto name = checker.string(*value, imagePath, "name", true);
  auto tag = checker.string(*value, imagePath, "tag", false);
  auto digest = checker.string(*value, imagePath, "digest", false);
  if (name) {
    checkImageName(checker, joinPath(imagePath, "name"), *name);
    image.name = *name;
  }
  if (tag && digest) {
    checker.add(imagePath, "must have a tag or a digest, not both");
  }
  if (tag) {
    if (!validImageTag(*tag)) {
      checker.add(
          joinPath(imagePath, "tag"),
          "must be 1 to 128 letters, digits, '_', '.' or '-' (got " + describeValue(*tag) + ")");
    }
    image.tag = *tag;
  }
  if (digest) {
    if (!validImageDigest(*digest)) {
      checker.add(
          joinPath(imagePath, "digest"),
          "must be sha256: and 64 lowercase hex digits (got " + describeValue(*digest) + ")");
    }
    image.digest = *digest;
  }
  if (image.tag.empty() && image.digest.empty()) image.tag = "latest";
  if (checker.errors.size() != before) return std::nullopt;
  return image;
}

Resources parseResources(Checker& checker, const json& container, const std::string& path) {
  Resources resources;
  const json* value = checker.field(container, path, "resources", false);
  if (value == nullptr) return resources;
  std::string resPath = joinPath(path, "resources");
  if (!checker.object(*value, resPath, {"cpu", "memoryMB", "diskMB", "networkMbps", "gpu"})) {
    return resources;
  }
  if (const json* cpu = checker.field(*value, resPath, "cpu", false)) {
    std::string cpuPath = joinPath(resPath, "cpu");
    if (!cpu->is_number()) {
      checker.add(cpuPath, "must be a number of cores (got " + typeOf(*cpu) + ")");
    } else {
      double cores = cpu->get<double>();
      if (!(cores > 0) || cores > Limits::kMaxCpu) {
        checker.add(cpuPath, "must be greater than 0 and at most " + formatNumber(Limits::kMaxCpu) +
                                 " (got " + describeValue(*cpu) + ")");
      } else {
        resources.cpu = cores;
      }
    }
  }
  if (auto v = checker.integer(*value, resPath, "memoryMB", false, Limits::kMinMemoryMB,
                               Limits::kMaxMemoryMB)) {
    resources.memoryMB = *v;
  }
  if (auto v = checker.integer(*value, resPath, "diskMB", false, 1, Limits::kMaxDiskMB)) {
    resources.diskMB = *v;
  }
  if (auto v = checker.integer(*value, resPath, "networkMbps", false, 1, Limits::kMaxNetworkMbps)) {
    resources.networkMbps = *v;
  }
  if (auto v = checker.integer(*value, resPath, "gpu", false, 0, Limits::kMaxGpu)) {
    resources.gpu = *v;
  }
  return resources;
}

SecurityProfile parseSecurityProfile(Checker& checker, const json& container,
                                     const std::string& path) {
  SecurityProfile profile;
  const json* value = checker.field(container, path, "securityProfile", false);
  if (value == nullptr) return profile;
  std::string profilePath = joinPath(path, "securityProfile");
  if (!checker.object(*value, profilePath, {"securityGroups", "iamRole"})) return profile;
  if (const json* rawGroups = checker.field(*value, profilePath, "securityGroups", false)) {
    std::string groupsPath = joinPath(profilePath, "securityGroups");
    auto groups = checker.stringList(*value, profilePath, "securityGroups");
    const json& raw = *rawGroups;
    if (raw.is_array() &&
        (raw.size() < Limits::kMinSecurityGroups || raw.size() > Limits::kMaxSecurityGroups)) {
      checker.add(groupsPath, "must have between " + std::to_string(Limits::kMinSecurityGroups) +
                                  " and " + std::to_string(Limits::kMaxSecurityGroups) +
                                  " entries (got " + std::to_string(raw.size()) + ")");
    }
    for (size_t i = 0; i < groups.size(); ++i) {
      if (!validName(groups[i])) {
        checker.add(groupsPath + "[" + std::to_string(i) + "]",
                    "must be a security group name of letters, digits, '.', '_' or '-' (got " +
                        describeValue(groups[i]) + ")");
      }
    }
    if (raw.is_array()) {
      std::vector<std::string> sorted = groups;
      std::sort(sorted.begin(), sorted.end());
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
        checker.add(groupsPath, "must not repeat a security group");
      }
    }
    profile.securityGroups = std::move(groups);
  }
  if (auto role = checker.string(*value, profilePath, "iamRole", false, 2048)) {
    profile.iamRole = *role;
  }
  return profile;
}

std::map<std::string, std::string> parseConstraints(Checker& checker, const json& container,
                                                    const std::string& path, std::string_view key) {
  auto constraints = checker.stringMap(container, path, key, 32);
  std::map<std::string, std::string> normalized;
  for (const auto& [name, value] : constraints) {
    std::string constraintPath = joinPath(joinPath(path, key), name);
    if (name.size() >= kAttributeConstraintPrefix.size() &&
        std::equal(
            kAttributeConstraintPrefix.begin(), kAttributeConstraintPrefix.end(), name.begin(),
            [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      // An attribute expression: the attribute name keeps its case, the prefix is normalized.
      std::string attribute = name.substr(kAttributeConstraintPrefix.size());
      if (!validAttributeName(attribute)) {
        checker.add(constraintPath, "attribute name must be 1 to 64 of [A-Za-z0-9_.-]");
        continue;
      }
      if (auto expression = parseAttributeExpression(value); !expression) {
        checker.add(constraintPath, "invalid attribute expression: " + expression.error());
        continue;
      }
      normalized.emplace(std::string(kAttributeConstraintPrefix) + attribute, value);
      continue;
    }
    const ConstraintInfo* info = nullptr;
    for (const auto& candidate : kConstraints) {
      if (candidate.name.size() == name.size() &&
          std::equal(name.begin(), name.end(), candidate.name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        info = &candidate;
      }
    }
    if (info == nullptr) {
      std::string known;
      for (const auto& candidate : kConstraints) {
        if (!known.empty()) known += ", ";
        known += candidate.name;
      }
      checker.add(constraintPath,
                  "is not a known constraint (known: " + known + ", attribute.<name>)");
      continue;
    }
    if (info->boolean && value != "true" && value != "false") {
      checker.add(constraintPath,
                  "must be \"true\" or \"false\" (got " + describeValue(value) + ")");
      continue;
    }
    if (!info->boolean && value.empty()) {
      checker.add(constraintPath, "must not be empty");
      continue;
    }
    normalized.emplace(std::string(info->name), value);
  }
  return normalized;
}

std::optional<HealthCheck> parseHealthCheck(Checker& checker, const json& container,
                                            const std::string& containerPath,
                                            std::string_view key) {
  const json* value = checker.field(container, containerPath, key, false);
  if (value == nullptr) return std::nullopt;
  std::string path = joinPath(containerPath, key);
  if (!checker.object(*value, path,
                      {"exec", "http", "tcp", "intervalMs", "timeoutMs", "failureThreshold",
                       "successThreshold", "startPeriodMs"})) {
    return std::nullopt;
  }
  size_t before = checker.errors.size();
  size_t kinds = value->count("exec") + value->count("http") + value->count("tcp");
  HealthCheck check;
  if (kinds != 1) {
    checker.add(path,
                "must set exactly one of exec, http or tcp (got " + std::to_string(kinds) + ")");
  } else if (value->contains("exec")) {
    std::string p = joinPath(path, "exec");
    check.kind = HealthCheck::Kind::kExec;
    if (checker.object((*value)["exec"], p, {"command"})) {
      check.command = checker.stringList((*value)["exec"], p, "command");
      if (check.command.empty()) checker.add(joinPath(p, "command"), "must not be empty");
    }
  } else if (value->contains("http")) {
    std::string p = joinPath(path, "http");
    const json& body = (*value)["http"];
    check.kind = HealthCheck::Kind::kHttp;
    if (checker.object(body, p, {"path", "port", "expectedStatus"})) {
      if (auto v = checker.string(body, p, "path", false, 2048)) {
        if (!v->starts_with('/')) {
          checker.add(joinPath(p, "path"), "must start with '/' (got " + describeValue(*v) + ")");
        }
        check.path = *v;
      }
      check.port = checker.integer(body, p, "port", true, 1, 65535).value_or(0);
      check.expectedStatus =
          checker.integer(body, p, "expectedStatus", false, 100, 599).value_or(200);
    }
  } else {
    std::string p = joinPath(path, "tcp");
    check.kind = HealthCheck::Kind::kTcp;
    if (checker.object((*value)["tcp"], p, {"port"})) {
      check.port = checker.integer((*value)["tcp"], p, "port", true, 1, 65535).value_or(0);
    }
  }
  if (auto v = checker.integer(*value, path, "intervalMs", false, Limits::kMinCheckIntervalMs,
                               Limits::kMaxCheckDurationMs)) {
    check.intervalMs = *v;
  }
  if (auto v = checker.integer(*value, path, "timeoutMs", false, 1, Limits::kMaxCheckDurationMs)) {
    check.timeoutMs = *v;
  } else if (!value->contains("timeoutMs")) {
    // The default timeout never exceeds a short interval.
    check.timeoutMs = std::min(check.timeoutMs, check.intervalMs);
  }
  if (auto v = checker.integer(*value, path, "failureThreshold", false, 1, Limits::kMaxThreshold)) {
    check.failureThreshold = *v;
  }
  if (auto v = checker.integer(*value, path, "successThreshold", false, 1, Limits::kMaxThreshold)) {
    check.successThreshold = *v;
  }
  if (auto v =
          checker.integer(*value, path, "startPeriodMs", false, 0, Limits::kMaxCheckDurationMs)) {
    check.startPeriodMs = *v;
  }
  if (check.timeoutMs > check.intervalMs && checker.errors.size() == before) {
    checker.add(joinPath(path, "timeoutMs"), "must be at most intervalMs (got " +
                                                 std::to_string(check.timeoutMs) + " > " +
                                                 std::to_string(check.intervalMs) + ")");
  }
  if (checker.errors.size() != before) return std::nullopt;
  return check;
}

}  // namespace

Container parseContainer(Checker& checker, const json& value) {
  const std::string path = "container";
  Container container;
  if (!checker.object(value, path,
                      {"image", "entryPoint", "command", "env", "resources", "securityProfile",
                       "hardConstraints", "softConstraints", "ports", "liveness", "readiness"})) {
    return container;
  }
  if (auto image = parseImage(checker, value, path)) container.image = *image;
  container.entryPoint = checker.stringList(value, path, "entryPoint");
  container.command = checker.stringList(value, path, "command");
  container.env = checker.stringMap(value, path, "env", 4096);
  size_t envBytes = 0;
  for (const auto& [key, envValue] : container.env) {
    envBytes += key.size() + envValue.size();
    if (!validEnvName(key)) {
      checker.add("container.env." + key,
                  "must be a variable name of letters, digits and '_', not starting with a digit");
    }
  }
  if (envBytes > Limits::kMaxEnvBytes) {
    checker.add("container.env", "must hold at most " + std::to_string(Limits::kMaxEnvBytes) +
                                     " bytes in all (got " + std::to_string(envBytes) + ")");
  }
  container.resources = parseResources(checker, value, path);
  container.securityProfile = parseSecurityProfile(checker, value, path);
  container.hardConstraints = parseConstraints(checker, value, path, "hardConstraints");
  container.softConstraints = parseConstraints(checker, value, path, "softConstraints");
  for (const auto& [name, unused] : container.hardConstraints) {
    if (container.softConstraints.contains(name)) {
      checker.add("container.softConstraints." + name, "must not also be a hard constraint");
    }
  }
  if (const json* ports = checker.field(value, path, "ports", false)) {
    if (!ports->is_array() || ports->size() > Limits::kMaxPorts) {
      checker.add("container.ports", "must be a list of at most " +
                                         std::to_string(Limits::kMaxPorts) + " port numbers");
    } else {
      for (size_t i = 0; i < ports->size(); ++i) {
        json holder = {{"port", (*ports)[i]}};
        std::string itemPath = "container.ports[" + std::to_string(i) + "]";
        size_t before = checker.errors.size();
        auto port = checker.integer(holder, "", "port", true, 1, 65535);
        if (checker.errors.size() != before) {
          // Name the list item rather than the holder's key.
          checker.errors.back().field = itemPath;
        } else if (std::find(container.ports.begin(), container.ports.end(), *port) !=
                   container.ports.end()) {
          checker.add(itemPath, "repeats port " + std::to_string(*port));
        } else {
          container.ports.push_back(*port);
        }
      }
    }
  }
  container.liveness = parseHealthCheck(checker, value, path, "liveness");
  container.readiness = parseHealthCheck(checker, value, path, "readiness");
  return container;
}

}  // namespace skiff::api::detail
