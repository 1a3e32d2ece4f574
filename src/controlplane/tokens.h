#pragma once

// Bearer tokens for skiffd: an admin token (the whole API) and an agent join token (the node
// endpoints only). Both are created on first start in the state directory with mode 0600.

#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/http_server.h"

namespace skiff::controlplane {

struct Tokens {
  std::string admin;
  std::string join;
};

// Reads `DIR/admin.token` and `DIR/join.token`, creating each that is missing (0600, fsync'ed).
Result<Tokens> loadOrCreateTokens(const std::string& stateDir);

// Checks an `Authorization` header against `access`. Compares in constant time.
std::optional<Error> authenticate(const Tokens& tokens, http::Access access,
                                  std::string_view authorization);

}  // namespace skiff::controlplane
