#pragma once

// Small text and file helpers shared by the CLI's modules (trim and sanitize are in
// common/text.h).

#include <istream>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/text.h"

namespace skiff::cli {

// Reads a whole file. Fails with kIo whose message is the OS error alone ("No such file or
// directory"): callers name the file in their own words.
Result<std::string> readFile(const std::string& path);

// Reads a stream to its end.
std::string readStream(std::istream& in);

// Percent-encodes everything except the RFC 3986 unreserved characters, so any user text is safe
// as a path segment or a query value.
std::string urlEncode(std::string_view text);

// The number of terminal columns `text` takes, counting each UTF-8 code point as one.
size_t displayWidth(std::string_view text);

}  // namespace skiff::cli
