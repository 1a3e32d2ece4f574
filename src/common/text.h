#pragma once

// Text helpers shared by the programs that print what a server or a file said.

#include <string>
#include <string_view>

namespace skiff {

// `text` without leading and trailing ASCII whitespace.
std::string_view trim(std::string_view text);

// Replaces every control character (tabs and newlines included) with '?', so text from a server
// or from files cannot move the cursor or recolour the user's terminal when printed.
std::string sanitize(std::string_view text);

}  // namespace skiff
