#pragma once

// Small helpers shared by the benchmark programs.

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace skiff::bench {

// The first line of a token file, without trailing spaces; empty when it cannot be read.
inline std::string readToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

// The batch job the submission benchmarks send: `size` tasks of `busybox:latest` running `true`,
// 0.1 CPU and 64 MB each, as JSON text.
inline std::string benchBatchJob(int64_t size) {
  return nlohmann::json{{"applicationName", "bench"},
                        {"owner", {{"teamEmail", "bench@example.com"}}},
                        {"container",
                         {{"image", "busybox:latest"},
                          {"command", {"true"}},
                          {"resources", {{"cpu", 0.1}, {"memoryMB", 64}}}}},
                        {"batch", {{"size", size}}}}
      .dump();
}

// utime + stime of a process in seconds, or -1.
inline double processCpuSec(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  // Fields after the command: state(3) ... utime(14) stime(15).
  for (int index = 3; fields >> field; ++index) {
    if (index == 14 || index == 15) ticks += std::stod(field);
    if (index == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The `p`-th percentile of `values` (`p` a fraction: 0.5 for the median) by nearest rank: the
// value at 1-based rank ceil(p * N) of the N values sorted in ascending order (rank 1 for p = 0),
// so it is always one of the samples and never an interpolation. 0 when `values` is empty. Every
// benchmark program and script in bench/ uses this definition.
inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // The small slack keeps p * N from landing one rank too high through rounding (0.99 * 100).
  double rank = std::ceil(p * static_cast<double>(values.size()) - 1e-9);
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

// The fewest samples a p99 is reported from: with fewer, the value at rank ceil(0.99 * N) is the
// maximum, not a 99th percentile.
inline constexpr size_t kMinSamplesForP99 = 100;

// The p99 of `values` by nearest rank, or nothing with fewer than kMinSamplesForP99 samples.
inline std::optional<double> p99(const std::vector<double>& values) {
  if (values.size() < kMinSamplesForP99) return std::nullopt;
  return percentile(values, 0.99);
}

// p99(values) as a JSON value: null with fewer than kMinSamplesForP99 samples.
template <typename Json>
Json p99OrNull(const std::vector<double>& values) {
  std::optional<double> value = p99(values);
  return value ? Json(*value) : Json(nullptr);
}

}  // namespace skiff::bench
