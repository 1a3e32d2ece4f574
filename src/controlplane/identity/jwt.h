#pragma once

// Compact JWS / JWT with EdDSA (Ed25519) only (RFC 7515, RFC 7519, RFC 8037).
//
// Verification is strict: exactly three parts, a header whose `alg` is "EdDSA" (anything else,
// "none" included, is refused), a `kid` that names a key in the ring, the expected `typ`, and a
// valid signature over the first two parts exactly as sent. Claim checks (expiry, audience)
// belong to the caller; `decodeAndVerify` only proves who signed what.

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/identity/signing_keys.h"

namespace skiff::identity {

struct VerifiedJwt {
  nlohmann::json header;
  nlohmann::json claims;
};

// Signs `claims` with `key`: header {"alg":"EdDSA","typ":typ,"kid":key.kid()}.
Result<std::string> signJwt(const nlohmann::json& claims, const SigningKey& key,
                            std::string_view typ = "JWT");

// Checks the structure, algorithm, type and signature. Fails with kUnauthenticated and a short
// reason ("malformed token", "unknown key id", "bad signature", ...).
Result<VerifiedJwt> decodeAndVerify(std::string_view token, const KeyRing& keys,
                                    std::string_view expectedTyp = "JWT");

}  // namespace skiff::identity
