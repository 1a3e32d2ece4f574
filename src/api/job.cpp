#include "api/job.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "api/constraint.h"

namespace skiff::api {
namespace {

using nlohmann::json;

// A user value rendered for an error message: JSON-escaped and cut short, so the message stays
// one readable line whatever the input holds.
std::string describeValue(const json& value) {
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  constexpr size_t kMax = 64;
  if (text.size() > kMax) {
    text.resize(kMax);
    text += "...";
  }
  return text;
}

std::string typeOf(const json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

std::string joinPath(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out = path;
  out += '.';
  out += key;
  return out;
}

std::string formatNumber(double value) {
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return json(value).dump();
}

bool matches(const std::regex& pattern, const std::string& text) {
  return std::regex_match(text, pattern);
}

const std::regex kNamePattern("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
const std::regex kEnvNamePattern("[A-Za-z_][A-Za-z0-9_]*");
const std::regex kEmailPattern("[^@\\s]+@[^@\\s]+\\.[^@\\s]+");
const std::regex kTagPattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
const std::regex kDigestPattern("sha256:[a-f0-9]{64}");
// Docker's reference grammar: an optional registry host (with a dot, a port or "localhost"), then
// lowercase path components separated by slashes.
const std::regex kImageNamePattern(
    "(([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
    "(:[0-9]{1,5})?|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?:[0-9]{1,5}|localhost)/)?"
    "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*");

struct ConstraintInfo {
  std::string_view name;
  bool boolean;
};
constexpr ConstraintInfo kConstraints[] = {
    {"uniqueHost", true},    {"exclusiveHost", true},     {"zoneBalance", true},
    {"activeHost", true},    {"availabilityZone", false}, {"machineId", false},
    {"machineGroup", false}, {"machineType", false},      {"zone", false},
};

// Walks a JSON document, collecting every violation with its path.
class Checker {
 public:
  FieldErrors errors;

  void add(std::string field, std::string message) {
    errors.push_back({std::move(field), std::move(message)});
  }

  // Checks that `value` is an object whose keys are all in `allowed`.
  bool object(const json& value, const std::string& path,
              std::initializer_list<std::string_view> allowed) {
    if (!value.is_object()) {
      add(path, "must be an object (got " + typeOf(value) + ")");
      return false;
    }
    for (const auto& [key, unused] : value.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        add(joinPath(path, key), "unknown field");
      }
    }
    return true;
  }

  const json* field(const json& object, const std::string& path, std::string_view key,
                    bool required) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) {
      if (required) add(joinPath(path, key), "is required");
      return nullptr;
    }
    return &*it;
  }

  std::optional<std::string> string(const json& object, const std::string& path,
                                    std::string_view key, bool required,
                                    size_t maxBytes = Limits::kMaxStringBytes) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) return std::nullopt;
    std::string fieldPath = joinPath(path, key);
    return stringValue(*value, fieldPath, maxBytes);
  }

  std::optional<std::string> stringValue(const json& value, const std::string& path,
                                         size_t maxBytes = Limits::kMaxStringBytes) {
    if (!value.is_string()) {
      add(path, "must be a string (got " + typeOf(value) + ")");
      return std::nullopt;
    }
    const auto& text = value.get_ref<const std::string&>();
    if (text.size() > maxBytes) {
      add(path, "must be at most " + std::to_string(maxBytes) + " bytes (got " +
                    std::to_string(text.size()) + ")");
      return std::nullopt;
    }
    return text;
  }

  std::optional<int64_t> integer(const json& object, const std::string& path, std::string_view key,
                                 bool required, int64_t min, int64_t max) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) return std::nullopt;
    std::string fieldPath = joinPath(path, key);
    std::optional<int64_t> number;
    if (value->is_number_unsigned()) {
      uint64_t raw = value->get<uint64_t>();
      number = raw > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(raw);
    } else if (value->is_number_integer()) {
      number = value->get<int64_t>();
    } else if (value->is_number_float()) {
      double raw = value->get<double>();
      if (std::floor(raw) == raw) {
        // Integral but beyond int64: clamp, so the range check below reports it.
        number = std::fabs(raw) < 9e15 ? static_cast<int64_t>(raw)
                 : raw > 0             ? INT64_MAX
                                       : INT64_MIN;
      }
    }
    if (!number) {
      add(fieldPath, "must be an integer (got " +
                         (value->is_number() ? describeValue(*value) : typeOf(*value)) + ")");
      return std::nullopt;
    }
    if (*number < min || *number > max) {
      add(fieldPath, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                         " (got " + describeValue(*value) + ")");
      return std::nullopt;
    }
    return number;
  }

  std::optional<bool> boolean(const json& object, const std::string& path, std::string_view key) {
    const json* value = field(object, path, key, false);
    if (value == nullptr) return std::nullopt;
    if (!value->is_boolean()) {
      add(joinPath(path, key), "must be true or false (got " + typeOf(*value) + ")");
      return std::nullopt;
    }
    return value->get<bool>();
  }

  std::optional<double> number(const json& object, const std::string& path, std::string_view key,
                               bool required, double min, double max) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) return std::nullopt;
    std::string fieldPath = joinPath(path, key);
    if (!value->is_number()) {
      add(fieldPath, "must be a number (got " + typeOf(*value) + ")");
      return std::nullopt;
    }
    double number = value->get<double>();
    if (!(number >= min && number <= max)) {
      add(fieldPath, "must be between " + formatNumber(min) + " and " + formatNumber(max) +
                         " (got " + describeValue(*value) + ")");
      return std::nullopt;
    }
    return number;
  }

  std::optional<std::string> name(const json& object, const std::string& path, std::string_view key,
                                  bool required) {
    auto text = string(object, path, key, required);
    if (text && !matches(kNamePattern, *text)) {
      add(joinPath(path, key),
          "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit "
          "(got " +
              describeValue(*text) + ")");
      return std::nullopt;
    }
    return text;
  }

  std::vector<std::string> stringList(const json& object, const std::string& path,
                                      std::string_view key) {
    std::vector<std::string> out;
    const json* value = field(object, path, key, false);
    if (value == nullptr) return out;
    std::string fieldPath = joinPath(path, key);
    if (!value->is_array()) {
      add(fieldPath, "must be a list of strings (got " + typeOf(*value) + ")");
      return out;
    }
    size_t total = 0;
    for (size_t i = 0; i < value->size(); ++i) {
      auto item = stringValue((*value)[i], fieldPath + "[" + std::to_string(i) + "]");
      if (item) {
        total += item->size();
        out.push_back(std::move(*item));
      }
    }
    if (total > Limits::kMaxEnvBytes) {
      add(fieldPath, "must hold at most " + std::to_string(Limits::kMaxEnvBytes) +
                         " bytes in all (got " + std::to_string(total) + ")");
    }
    return out;
  }

  std::map<std::string, std::string> stringMap(const json& object, const std::string& path,
                                               std::string_view key, size_t maxEntries) {
    std::map<std::string, std::string> out;
    const json* value = field(object, path, key, false);
    if (value == nullptr) return out;
    std::string fieldPath = joinPath(path, key);
    if (!value->is_object()) {
      add(fieldPath, "must be a map of strings (got " + typeOf(*value) + ")");
      return out;
    }
    if (value->size() > maxEntries) {
      add(fieldPath, "must have at most " + std::to_string(maxEntries) + " entries (got " +
                         std::to_string(value->size()) + ")");
    }
    for (const auto& [entryKey, entryValue] : value->items()) {
      std::string entryPath = joinPath(fieldPath, entryKey);
      if (entryKey.empty() || entryKey.size() > 256) {
        add(fieldPath, "keys must be 1 to 256 bytes (got " + describeValue(entryKey) + ")");
        continue;
      }
      auto text = stringValue(entryValue, entryPath);
      if (text) out.emplace(entryKey, std::move(*text));
    }
    return out;
  }
};

void checkImageName(Checker& checker, const std::string& path, const std::string& name) {
  if (name.size() > 255 || !matches(kImageNamePattern, name)) {
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
  if (hasTag && !matches(kTagPattern, image.tag)) {
    checker.add(path, "has an invalid tag (got " + describeValue(image.tag) + ")");
  }
  if (hasDigest && !matches(kDigestPattern, image.digest)) {
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
    if (!matches(kTagPattern, *tag)) {
      checker.add(
          joinPath(imagePath, "tag"),
          "must be 1 to 128 letters, digits, '_', '.' or '-' (got " + describeValue(*tag) + ")");
    }
    image.tag = *tag;
  }
  if (digest) {
    if (!matches(kDigestPattern, *digest)) {
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
      if (!matches(kNamePattern, groups[i])) {
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

std::optional<RetryPolicy> parseRetryPolicy(Checker& checker, const json& spec,
                                            const std::string& path) {
  const json* value = checker.field(spec, path, "retryPolicy", false);
  if (value == nullptr) return std::nullopt;
  std::string policyPath = joinPath(path, "retryPolicy");
  if (!checker.object(*value, policyPath, {"immediate", "delayed", "exponentialBackOff"})) {
    return std::nullopt;
  }
  size_t kinds =
      value->count("immediate") + value->count("delayed") + value->count("exponentialBackOff");
  if (kinds != 1) {
    checker.add(policyPath,
                "must set exactly one of immediate, delayed or exponentialBackOff (got " +
                    std::to_string(kinds) + ")");
    return std::nullopt;
  }
  RetryPolicy policy;
  size_t before = checker.errors.size();
  if (value->contains("immediate")) {
    std::string p = joinPath(policyPath, "immediate");
    const json& body = (*value)["immediate"];
    policy.kind = RetryPolicy::Kind::kImmediate;
    if (checker.object(body, p, {"retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
    }
  } else if (value->contains("delayed")) {
    std::string p = joinPath(policyPath, "delayed");
    const json& body = (*value)["delayed"];
    policy.kind = RetryPolicy::Kind::kDelayed;
    if (checker.object(body, p, {"initialDelayMs", "delayMs", "retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
      policy.initialDelayMs =
          checker.integer(body, p, "initialDelayMs", false, 0, Limits::kMaxDelayMs).value_or(0);
      policy.delayMs =
          checker.integer(body, p, "delayMs", true, 0, Limits::kMaxDelayMs).value_or(0);
    }
  } else {
    std::string p = joinPath(policyPath, "exponentialBackOff");
    const json& body = (*value)["exponentialBackOff"];
    policy.kind = RetryPolicy::Kind::kExponentialBackOff;
    if (checker.object(body, p, {"initialDelayMs", "maxDelayIntervalMs", "retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
      auto initial = checker.integer(body, p, "initialDelayMs", true, 1, Limits::kMaxDelayMs);
      auto maxDelay = checker.integer(body, p, "maxDelayIntervalMs", true, 1, Limits::kMaxDelayMs);
      if (initial && maxDelay && *maxDelay < *initial) {
        checker.add(joinPath(p, "maxDelayIntervalMs"), "must be at least initialDelayMs (got " +
                                                           std::to_string(*maxDelay) + " < " +
                                                           std::to_string(*initial) + ")");
      }
      policy.initialDelayMs = initial.value_or(0);
      policy.maxDelayIntervalMs = maxDelay.value_or(0);
    }
  }
  if (checker.errors.size() != before) return std::nullopt;
  return policy;
}

std::optional<BatchSpec> parseBatch(Checker& checker, const json& value) {
  const std::string path = "batch";
  if (!checker.object(value, path,
                      {"size", "runtimeLimitSec", "retryPolicy", "retryOnRuntimeLimit", "gang"})) {
    return std::nullopt;
  }
  BatchSpec batch;
  if (auto v = checker.integer(value, path, "size", false, 1, Limits::kMaxBatchSize)) {
    batch.size = *v;
  }
  if (auto v =
          checker.integer(value, path, "runtimeLimitSec", false, 1, Limits::kMaxRuntimeLimitSec)) {
    batch.runtimeLimitSec = *v;
  }
  if (auto v = parseRetryPolicy(checker, value, path)) batch.retryPolicy = *v;
  if (auto v = checker.boolean(value, path, "retryOnRuntimeLimit")) batch.retryOnRuntimeLimit = *v;
  if (auto v = checker.boolean(value, path, "gang")) batch.gang = *v;
  return batch;
}

const std::regex kMetricPattern("[A-Za-z][A-Za-z0-9._-]{0,127}");
const std::regex kPercentPattern("([0-9]{1,3})%");

// A task count: a non-negative integer or "N%" with N from 0 to 100.
std::optional<TaskCount> parseTaskCount(Checker& checker, const json& object,
                                        const std::string& path, std::string_view key) {
  const json* value = checker.field(object, path, key, false);
  if (value == nullptr) return std::nullopt;
  std::string fieldPath = joinPath(path, key);
  if (value->is_string()) {
    std::smatch match;
    const auto& text = value->get_ref<const std::string&>();
    if (std::regex_match(text, match, kPercentPattern) && std::stoi(match[1].str()) <= 100) {
      return TaskCount{std::stoi(match[1].str()), true};
    }
    checker.add(fieldPath, "must be a task count or a percentage from 0% to 100% (got " +
                               describeValue(*value) + ")");
    return std::nullopt;
  }
  auto count = checker.integer(object, path, key, false, 0, Limits::kMaxServiceCapacity);
  if (!count) return std::nullopt;
  return TaskCount{*count, false};
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

RolloutStrategy parseRollout(Checker& checker, const json& service) {
  RolloutStrategy rollout;
  const std::string path = "service.rollout";
  const json* value = checker.field(service, "service", "rollout", false);
  if (value == nullptr) return rollout;
  if (!checker.object(*value, path, {"maxSurge", "maxUnavailable", "minHealthyMs", "canary"})) {
    return rollout;
  }
  if (auto v = parseTaskCount(checker, *value, path, "maxSurge")) rollout.maxSurge = *v;
  if (auto v = parseTaskCount(checker, *value, path, "maxUnavailable")) {
    rollout.maxUnavailable = *v;
  }
  if (rollout.maxSurge.value == 0 && rollout.maxUnavailable.value == 0) {
    checker.add(path, "maxSurge and maxUnavailable must not both be 0: the rollout could not move");
  }
  if (auto v =
          checker.integer(*value, path, "minHealthyMs", false, 0, Limits::kMaxCheckDurationMs)) {
    rollout.minHealthyMs = *v;
  }
  if (const json* canary = checker.field(*value, path, "canary", false)) {
    std::string p = joinPath(path, "canary");
    if (checker.object(*canary, p, {"tasks"})) {
      rollout.canaryTasks =
          checker.integer(*canary, p, "tasks", true, 1, Limits::kMaxServiceCapacity).value_or(0);
    }
  }
  return rollout;
}

std::optional<DisruptionBudget> parseDisruptionBudget(Checker& checker, const json& service) {
  const std::string path = "service.disruptionBudget";
  const json* value = checker.field(service, "service", "disruptionBudget", false);
  if (value == nullptr) return std::nullopt;
  if (!checker.object(*value, path, {"maxUnhealthy", "availabilityPercentage", "rate"})) {
    return std::nullopt;
  }
  DisruptionBudget budget;
  size_t limits = value->count("maxUnhealthy") + value->count("availabilityPercentage");
  if (limits != 1) {
    checker.add(path, "must set exactly one of maxUnhealthy or availabilityPercentage (got " +
                          std::to_string(limits) + ")");
  }
  budget.maxUnhealthy =
      checker.integer(*value, path, "maxUnhealthy", false, 0, Limits::kMaxServiceCapacity);
  budget.availabilityPercentage =
      checker.number(*value, path, "availabilityPercentage", false, 0, 100);
  if (const json* rate = checker.field(*value, path, "rate", false)) {
    std::string p = joinPath(path, "rate");
    if (checker.object(*rate, p, {"tasks", "intervalMs"})) {
      budget.rateTasks =
          checker.integer(*rate, p, "tasks", true, 1, Limits::kMaxServiceCapacity).value_or(0);
      budget.rateIntervalMs =
          checker.integer(*rate, p, "intervalMs", true, 1, Limits::kMaxDelayMs).value_or(0);
    }
  }
  return budget;
}

std::string parseMetric(Checker& checker, const json& body, const std::string& path) {
  auto metric = checker.string(body, path, "metric", true, 128);
  if (metric && !matches(kMetricPattern, *metric)) {
    checker.add(joinPath(path, "metric"),
                "must be \"cpu\" or a metric name of letters, digits, '.', '_' or '-', starting "
                "with a letter (got " +
                    describeValue(*metric) + ")");
  }
  return metric.value_or("");
}

std::optional<Autoscaling> parseAutoscaling(Checker& checker, const json& service) {
  const std::string path = "service.autoscaling";
  const json* value = checker.field(service, "service", "autoscaling", false);
  if (value == nullptr) return std::nullopt;
  if (!checker.object(*value, path, {"policies", "scaleOutCooldownMs", "scaleInCooldownMs"})) {
    return std::nullopt;
  }
  Autoscaling autoscaling;
  if (auto v = checker.integer(*value, path, "scaleOutCooldownMs", false, 0, Limits::kMaxDelayMs)) {
    autoscaling.scaleOutCooldownMs = *v;
  }
  if (auto v = checker.integer(*value, path, "scaleInCooldownMs", false, 0, Limits::kMaxDelayMs)) {
    autoscaling.scaleInCooldownMs = *v;
  }
  const json* policies = checker.field(*value, path, "policies", true);
  if (policies == nullptr) return autoscaling;
  std::string policiesPath = joinPath(path, "policies");
  if (!policies->is_array() || policies->empty() ||
      policies->size() > Limits::kMaxScalingPolicies) {
    checker.add(policiesPath, "must be a list of 1 to " +
                                  std::to_string(Limits::kMaxScalingPolicies) + " policies");
    return autoscaling;
  }
  for (size_t i = 0; i < policies->size(); ++i) {
    std::string p = policiesPath + "[" + std::to_string(i) + "]";
    const json& item = (*policies)[i];
    if (!checker.object(item, p, {"targetTracking", "stepScaling"})) continue;
    size_t kinds = item.count("targetTracking") + item.count("stepScaling");
    if (kinds != 1) {
      checker.add(p, "must set exactly one of targetTracking or stepScaling (got " +
                         std::to_string(kinds) + ")");
      continue;
    }
    ScalingPolicy policy;
    if (item.contains("targetTracking")) {
      std::string tp = joinPath(p, "targetTracking");
      const json& body = item["targetTracking"];
      policy.kind = ScalingPolicy::Kind::kTargetTracking;
      if (!checker.object(body, tp, {"metric", "target"})) continue;
      policy.metric = parseMetric(checker, body, tp);
      if (auto target = checker.number(body, tp, "target", true, -1e15, 1e15)) {
        if (*target <= 0) {
          checker.add(joinPath(tp, "target"),
                      "must be greater than 0 (got " + formatNumber(*target) + ")");
        }
        policy.target = *target;
      }
    } else {
      std::string sp = joinPath(p, "stepScaling");
      const json& body = item["stepScaling"];
      policy.kind = ScalingPolicy::Kind::kStepScaling;
      if (!checker.object(body, sp, {"metric", "steps"})) continue;
      policy.metric = parseMetric(checker, body, sp);
      const json* steps = checker.field(body, sp, "steps", true);
      std::string stepsPath = joinPath(sp, "steps");
      if (steps == nullptr) continue;
      if (!steps->is_array() || steps->empty() || steps->size() > Limits::kMaxScalingSteps) {
        checker.add(stepsPath, "must be a list of 1 to " +
                                   std::to_string(Limits::kMaxScalingSteps) + " steps");
        continue;
      }
      for (size_t j = 0; j < steps->size(); ++j) {
        std::string stepPath = stepsPath + "[" + std::to_string(j) + "]";
        const json& stepJson = (*steps)[j];
        if (!checker.object(stepJson, stepPath, {"lower", "upper", "change"})) continue;
        ScalingPolicy::Step step;
        step.lower = checker.number(stepJson, stepPath, "lower", false, -1e15, 1e15);
        step.upper = checker.number(stepJson, stepPath, "upper", false, -1e15, 1e15);
        step.change = checker
                          .integer(stepJson, stepPath, "change", true, -Limits::kMaxServiceCapacity,
                                   Limits::kMaxServiceCapacity)
                          .value_or(0);
        if (step.lower && step.upper && !(*step.lower < *step.upper)) {
          checker.add(stepPath, "lower must be below upper");
        }
        policy.steps.push_back(step);
      }
      // Steps must be ordered and not overlap, so at most one applies to any value.
      for (size_t j = 1; j < policy.steps.size(); ++j) {
        const auto& previous = policy.steps[j - 1];
        const auto& step = policy.steps[j];
        if (!previous.upper || !step.lower || *step.lower < *previous.upper) {
          checker.add(stepsPath + "[" + std::to_string(j) + "]",
                      "must start at or above the upper bound of the step before it");
        }
      }
    }
    autoscaling.policies.push_back(std::move(policy));
  }
  return autoscaling;
}

json healthCheckToJson(const HealthCheck& check) {
  json out = {{"intervalMs", check.intervalMs},
              {"timeoutMs", check.timeoutMs},
              {"failureThreshold", check.failureThreshold},
              {"successThreshold", check.successThreshold},
              {"startPeriodMs", check.startPeriodMs}};
  switch (check.kind) {
    case HealthCheck::Kind::kExec:
      out["exec"] = {{"command", check.command}};
      break;
    case HealthCheck::Kind::kHttp:
      out["http"] = {
          {"path", check.path}, {"port", check.port}, {"expectedStatus", check.expectedStatus}};
      break;
    case HealthCheck::Kind::kTcp:
      out["tcp"] = {{"port", check.port}};
      break;
  }
  return out;
}

json taskCountToJson(const TaskCount& count) {
  if (count.percent) return count.toString();
  return count.value;
}

json serviceExtrasToJson(const ServiceSpec& service, json out) {
  json rollout = {{"maxSurge", taskCountToJson(service.rollout.maxSurge)},
                  {"maxUnavailable", taskCountToJson(service.rollout.maxUnavailable)},
                  {"minHealthyMs", service.rollout.minHealthyMs}};
  if (service.rollout.canaryTasks > 0) {
    rollout["canary"] = {{"tasks", service.rollout.canaryTasks}};
  }
  out["rollout"] = std::move(rollout);
  if (const auto& budget = service.disruptionBudget) {
    json b = json::object();
    if (budget->maxUnhealthy) b["maxUnhealthy"] = *budget->maxUnhealthy;
    if (budget->availabilityPercentage) {
      b["availabilityPercentage"] = *budget->availabilityPercentage;
    }
    if (budget->rateTasks > 0) {
      b["rate"] = {{"tasks", budget->rateTasks}, {"intervalMs", budget->rateIntervalMs}};
    }
    out["disruptionBudget"] = std::move(b);
  }
  if (const auto& autoscaling = service.autoscaling) {
    json policies = json::array();
    for (const auto& policy : autoscaling->policies) {
      if (policy.kind == ScalingPolicy::Kind::kTargetTracking) {
        policies.push_back(
            {{"targetTracking", {{"metric", policy.metric}, {"target", policy.target}}}});
        continue;
      }
      json steps = json::array();
      for (const auto& step : policy.steps) {
        json s = {{"change", step.change}};
        if (step.lower) s["lower"] = *step.lower;
        if (step.upper) s["upper"] = *step.upper;
        steps.push_back(std::move(s));
      }
      policies.push_back({{"stepScaling", {{"metric", policy.metric}, {"steps", steps}}}});
    }
    out["autoscaling"] = {{"policies", std::move(policies)},
                          {"scaleOutCooldownMs", autoscaling->scaleOutCooldownMs},
                          {"scaleInCooldownMs", autoscaling->scaleInCooldownMs}};
  }
  return out;
}

std::optional<ServiceSpec> parseService(Checker& checker, const json& value) {
  const std::string path = "service";
  if (!checker.object(
          value, path,
          {"capacity", "enabled", "retryPolicy", "rollout", "disruptionBudget", "autoscaling"})) {
    return std::nullopt;
  }
  ServiceSpec service;
  if (const json* capacity = checker.field(value, path, "capacity", true)) {
    std::string capPath = "service.capacity";
    if (checker.object(*capacity, capPath, {"min", "desired", "max"})) {
      auto max = checker.integer(*capacity, capPath, "max", true, 0, Limits::kMaxServiceCapacity);
      auto min = checker.integer(*capacity, capPath, "min", false, 0, Limits::kMaxServiceCapacity);
      auto desired =
          checker.integer(*capacity, capPath, "desired", true, 0, Limits::kMaxServiceCapacity);
      if (max && desired) {
        service.capacity = {min.value_or(0), *desired, *max};
        if (!(service.capacity.min <= service.capacity.desired &&
              service.capacity.desired <= service.capacity.max)) {
          checker.add(capPath, "must satisfy min <= desired <= max (got min " +
                                   std::to_string(service.capacity.min) + ", desired " +
                                   std::to_string(service.capacity.desired) + ", max " +
                                   std::to_string(service.capacity.max) + ")");
        }
      }
    }
  }
  if (auto v = checker.boolean(value, path, "enabled")) service.enabled = *v;
  if (auto v = parseRetryPolicy(checker, value, path)) service.retryPolicy = *v;
  service.rollout = parseRollout(checker, value);
  service.disruptionBudget = parseDisruptionBudget(checker, value);
  service.autoscaling = parseAutoscaling(checker, value);
  return service;
}

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
    if (!matches(kEnvNamePattern, key)) {
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

json retryPolicyToJson(const RetryPolicy& policy) {
  switch (policy.kind) {
    case RetryPolicy::Kind::kImmediate:
      return {{"immediate", {{"retries", policy.retries}}}};
    case RetryPolicy::Kind::kDelayed:
      return {{"delayed",
               {{"initialDelayMs", policy.initialDelayMs},
                {"delayMs", policy.delayMs},
                {"retries", policy.retries}}}};
    case RetryPolicy::Kind::kExponentialBackOff:
      return {{"exponentialBackOff",
               {{"initialDelayMs", policy.initialDelayMs},
                {"maxDelayIntervalMs", policy.maxDelayIntervalMs},
                {"retries", policy.retries}}}};
  }
  return {};
}

}  // namespace

std::string FieldError::toString() const {
  if (field.empty()) return message;
  return field + ": " + message;
}

std::string Image::reference() const {
  if (!digest.empty()) return name + "@" + digest;
  return name + ":" + tag;
}

int64_t RetryPolicy::delayBeforeRetryMs(int64_t retryNumber) const {
  if (retryNumber < 1) retryNumber = 1;
  switch (kind) {
    case Kind::kImmediate:
      return 0;
    case Kind::kDelayed:
      return retryNumber == 1 ? initialDelayMs : delayMs;
    case Kind::kExponentialBackOff: {
      int64_t delay = initialDelayMs;
      for (int64_t i = 1; i < retryNumber && delay > 0 && delay < maxDelayIntervalMs; ++i) {
        delay = delay > maxDelayIntervalMs / 2 ? maxDelayIntervalMs : delay * 2;
      }
      return std::min(delay, maxDelayIntervalMs);
    }
  }
  return 0;
}

int64_t TaskCount::resolve(int64_t total, bool roundUp) const {
  if (!percent) return value;
  int64_t scaled = total * value;
  return roundUp ? (scaled + 99) / 100 : scaled / 100;
}

std::string TaskCount::toString() const {
  return std::to_string(value) + (percent ? "%" : "");
}

std::string_view tierName(Tier tier) {
  return tier == Tier::kCritical ? "critical" : "flex";
}

std::expected<JobDescriptor, FieldErrors> validateJobDescriptor(const json& document) {
  Checker checker;
  JobDescriptor job;
  if (!checker.object(document, "",
                      {"name", "applicationName", "owner", "capacityGroup", "tier", "attributes",
                       "container", "batch", "service"})) {
    checker.errors.back().message = "a job must be an object (got " + typeOf(document) + ")";
    return std::unexpected(std::move(checker.errors));
  }
  auto applicationName = checker.name(document, "", "applicationName", true);
  if (applicationName) job.applicationName = *applicationName;
  auto name = checker.name(document, "", "name", false);
  job.name = name ? *name : job.applicationName;
  if (const json* owner = checker.field(document, "", "owner", true)) {
    if (checker.object(*owner, "owner", {"teamEmail"})) {
      auto email = checker.string(*owner, "owner", "teamEmail", true, 254);
      if (email && !matches(kEmailPattern, *email)) {
        checker.add("owner.teamEmail",
                    "must be an email address (got " + describeValue(*email) + ")");
      }
      if (email) job.owner.teamEmail = *email;
    }
  }
  if (auto group = checker.name(document, "", "capacityGroup", false)) job.capacityGroup = *group;
  if (auto tier = checker.string(document, "", "tier", false)) {
    if (*tier == "critical") {
      job.tier = Tier::kCritical;
    } else if (*tier == "flex") {
      job.tier = Tier::kFlex;
    } else {
      checker.add("tier", "must be one of critical, flex (got " + describeValue(*tier) + ")");
    }
  }
  job.attributes = checker.stringMap(document, "", "attributes", Limits::kMaxAttributes);
  for (const auto& [key, unused] : job.attributes) {
    if (key.starts_with("skiff.")) {
      checker.add("attributes." + key, "uses the reserved prefix \"skiff.\"");
    }
  }
  if (const json* container = checker.field(document, "", "container", true)) {
    job.container = parseContainer(checker, *container);
  }
  const json* batch = checker.field(document, "", "batch", false);
  const json* service = checker.field(document, "", "service", false);
  if (batch != nullptr && service != nullptr) {
    checker.add("service", "must not be set together with batch: a job is one or the other");
  } else if (batch == nullptr && service == nullptr) {
    checker.add("batch", "is required unless service is set: a job is batch or service");
  } else if (batch != nullptr) {
    job.batch = parseBatch(checker, *batch);
  } else {
    job.service = parseService(checker, *service);
  }
  if (!checker.errors.empty()) return std::unexpected(std::move(checker.errors));
  return job;
}

json toJson(const JobDescriptor& job) {
  json image = {{"name", job.container.image.name}};
  if (!job.container.image.digest.empty()) {
    image["digest"] = job.container.image.digest;
  } else {
    image["tag"] = job.container.image.tag;
  }
  const Resources& r = job.container.resources;
  json container = {
      {"image", std::move(image)},
      {"entryPoint", job.container.entryPoint},
      {"command", job.container.command},
      {"env", job.container.env},
      {"resources",
       {{"cpu", r.cpu},
        {"memoryMB", r.memoryMB},
        {"diskMB", r.diskMB},
        {"networkMbps", r.networkMbps},
        {"gpu", r.gpu}}},
      {"securityProfile",
       {{"securityGroups", job.container.securityProfile.securityGroups},
        {"iamRole", job.container.securityProfile.iamRole}}},
      {"hardConstraints", job.container.hardConstraints},
      {"softConstraints", job.container.softConstraints},
      {"ports", job.container.ports},
  };
  if (job.container.liveness) container["liveness"] = healthCheckToJson(*job.container.liveness);
  if (job.container.readiness) {
    container["readiness"] = healthCheckToJson(*job.container.readiness);
  }
  json out = {
      {"name", job.name},
      {"applicationName", job.applicationName},
      {"owner", {{"teamEmail", job.owner.teamEmail}}},
      {"capacityGroup", job.capacityGroup},
      {"tier", tierName(job.tier)},
      {"attributes", job.attributes},
      {"container", std::move(container)},
  };
  if (job.batch) {
    out["batch"] = {{"size", job.batch->size},
                    {"runtimeLimitSec", job.batch->runtimeLimitSec},
                    {"retryPolicy", retryPolicyToJson(job.batch->retryPolicy)},
                    {"retryOnRuntimeLimit", job.batch->retryOnRuntimeLimit},
                    {"gang", job.batch->gang}};
  } else if (job.service) {
    out["service"] = {{"capacity",
                       {{"min", job.service->capacity.min},
                        {"desired", job.service->capacity.desired},
                        {"max", job.service->capacity.max}}},
                      {"enabled", job.service->enabled},
                      {"retryPolicy", retryPolicyToJson(job.service->retryPolicy)}};
    out["service"] = serviceExtrasToJson(*job.service, std::move(out["service"]));
  }
  return out;
}

Result<json> parseJson(std::string_view text) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    auto start = what.find("] ");
    return fail(ErrorCode::kInvalidArgument,
                "malformed JSON: " + (start == std::string::npos ? what : what.substr(start + 2)));
  }
}

}  // namespace skiff::api
