#include "controlplane/identity/jwt.h"

#include "common/encoding.h"

namespace skiff::identity {
namespace {

std::unexpected<Error> refused(std::string reason) {
  return fail(ErrorCode::kUnauthenticated, "token refused: " + std::move(reason));
}

// Parses one base64url JSON object part.
Result<nlohmann::json> decodePart(std::string_view part) {
  auto text = base64UrlDecode(part);
  if (!text) return std::unexpected(text.error());
  auto value = nlohmann::json::parse(*text, nullptr, false);
  if (value.is_discarded() || !value.is_object()) {
    return fail(ErrorCode::kInvalidArgument, "not a JSON object");
  }
  return value;
}

// The string member `name`, or "" when it is missing or not a string (never throws).
std::string stringMember(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

}  // namespace

Result<std::string> signJwt(const nlohmann::json& claims, const SigningKey& key,
                            std::string_view typ) {
  nlohmann::json header = {{"alg", "EdDSA"}, {"typ", std::string(typ)}, {"kid", key.kid()}};
  std::string input = base64UrlEncode(header.dump()) + "." + base64UrlEncode(claims.dump());
  auto signature = key.sign(input);
  if (!signature) return std::unexpected(signature.error());
  return input + "." + base64UrlEncode(*signature);
}

Result<VerifiedJwt> decodeAndVerify(std::string_view token, const KeyRing& keys,
                                    std::string_view expectedTyp) {
  constexpr size_t kMaxTokenBytes = 8192;
  if (token.empty() || token.size() > kMaxTokenBytes) return refused("malformed token");
  size_t first = token.find('.');
  size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return refused("malformed token (a JWT has three parts)");
  }
  auto header = decodePart(token.substr(0, first));
  if (!header) return refused("malformed header");
  if (stringMember(*header, "alg") != "EdDSA") return refused("algorithm must be EdDSA");
  if (stringMember(*header, "typ") != expectedTyp) return refused("wrong token type");
  if (header->contains("crit")) return refused("unsupported critical header");
  std::string kid = stringMember(*header, "kid");
  if (kid.empty()) return refused("no key id");
  auto key = keys.find(kid);
  if (!key) return refused("unknown key id");
  auto signature = base64UrlDecode(token.substr(second + 1));
  if (!signature) return refused("malformed signature");
  if (!key->verify(token.substr(0, second), *signature)) return refused("bad signature");
  auto claims = decodePart(token.substr(first + 1, second - first - 1));
  if (!claims) return refused("malformed claims");
  return VerifiedJwt{std::move(*header), std::move(*claims)};
}

}  // namespace skiff::identity
