#pragma once

// Where a client finds skiffd and the credential it presents: the address forms every program
// accepts, and token files (the admin token, the agents' join token).

#include <string>
#include <string_view>

#include "common/error.h"

namespace skiff::client {

// Accepts "host:port", "http://host:port" and "https://host:port" (optionally with a path
// prefix) and returns it with a scheme and without trailing slashes. Fails (kInvalidArgument) for
// other schemes and for a missing host.
Result<std::string> normalizeAddress(std::string_view address);

// Reads a token file: its content without surrounding whitespace. Fails (kInvalidArgument) when
// the file cannot be read or holds no token.
Result<std::string> readTokenFile(const std::string& path);

}  // namespace skiff::client
