#pragma once

// Query parameters shared by the REST route files.

#include <cstdint>
#include <optional>
#include <string>

#include "common/error.h"

namespace skiff::controlplane {

// `text` as an integer in [min, max]; `fallback` when absent. The error names `name` and the
// range (kInvalidArgument).
Result<int64_t> parseInteger(const std::optional<std::string>& text, const std::string& name,
                             int64_t fallback, int64_t min, int64_t max);

}  // namespace skiff::controlplane
