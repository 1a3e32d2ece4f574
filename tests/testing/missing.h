#pragma once

// What the host lacks for a test, as a reason a person can act on ("needs root (WHY)", "iperf3 is
// not installed"); empty when nothing is missing. requirements.h turns a reason into a skip; test
// support that does not link gtest (local_registry, netns_cluster) reports with these too.

#include <unistd.h>

#include <cstdlib>
#include <initializer_list>
#include <string>

namespace skiff::testing {

// Empty when the process runs as root; otherwise "needs root (WHY)".
inline std::string missingRoot(const std::string& why) {
  return ::geteuid() == 0 ? "" : "needs root (" + why + ")";
}

// Empty when `path` is executable; otherwise "PATH is not installed".
inline std::string missingExecutable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0 ? "" : path + " is not installed";
}

// Whether `program` is an executable file in a directory of $PATH (/usr/bin:/bin without one).
inline bool onPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    std::string dir =
        dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return false;
}

// Empty when `program` is on $PATH; otherwise "PROGRAM is not installed".
inline std::string missingProgram(const std::string& program) {
  return onPath(program) ? "" : program + " is not installed";
}

// The first non-empty reason; empty when every one is.
inline std::string firstMissing(std::initializer_list<std::string> reasons) {
  for (const std::string& reason : reasons) {
    if (!reason.empty()) return reason;
  }
  return "";
}

}  // namespace skiff::testing
