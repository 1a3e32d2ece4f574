#include "controlplane/route_params.h"

#include <charconv>

namespace skiff::controlplane {

Result<int64_t> parseInteger(const std::optional<std::string>& text, const std::string& name,
                             int64_t fallback, int64_t min, int64_t max) {
  if (!text) return fallback;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < min || value > max) {
    return fail(ErrorCode::kInvalidArgument, name + ": must be an integer between " +
                                                 std::to_string(min) + " and " +
                                                 std::to_string(max));
  }
  return value;
}

}  // namespace skiff::controlplane
