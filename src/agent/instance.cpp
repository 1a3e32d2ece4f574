#include "agent/instance.h"

namespace skiff::agent {

Status validateInstance(const std::string& instance) {
  // The name becomes part of an nftables identifier and of paths, so it keeps to characters
  // that need no quoting in either.
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  bool valid = instance.size() <= 32 && (instance.empty() || instance.front() != '-');
  for (char c : instance) valid = valid && allowed(c);
  if (valid) return {};
  return fail(ErrorCode::kInvalidArgument,
              "instance name \"" + instance +
                  "\": 1 to 32 lowercase letters, digits or '-', not starting with '-'");
}

std::string defaultCgroupParent(const std::string& instance) {
  return instance.empty() ? "/skiff" : "/skiff-" + instance;
}

std::string defaultStateDir(const std::string& instance) {
  return instance.empty() ? "/var/lib/skiff-agent" : "/var/lib/skiff-agent-" + instance;
}

}  // namespace skiff::agent
