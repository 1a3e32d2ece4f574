#pragma once

// The control plane's Ed25519 signing keys.
//
// A `KeyRing` lives in one directory (mode 0700) with one PEM file per key (mode 0600), named
// `ed25519-<createdMs>.pem`. The newest key is the active one and signs everything; older keys
// stay published and keep verifying what they signed until they are pruned, so a rotation never
// invalidates a token that is still within its lifetime. A key's id (`kid`) is its RFC 7638
// JWK thumbprint, so it is stable across restarts and derivable by anyone holding the public key.
// All methods are safe to call from several threads.

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/error.h"

namespace skiff::identity {

class SigningKey {
 public:
  // Generates a fresh key pair.
  static Result<std::shared_ptr<const SigningKey>> generate(int64_t createdMs);
  // Reads a PKCS#8 PEM private key; fails unless it is Ed25519.
  static Result<std::shared_ptr<const SigningKey>> fromPem(std::string_view pem, int64_t createdMs);
  // A verification-only key from the 32 raw public bytes.
  static Result<std::shared_ptr<const SigningKey>> fromPublicKey(std::string_view raw32,
                                                                 int64_t createdMs);
  ~SigningKey();
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  const std::string& kid() const { return kid_; }
  int64_t createdMs() const { return createdMs_; }
  bool hasPrivateKey() const { return hasPrivate_; }
  // The 32 raw public key bytes.
  const std::string& publicKey() const { return public_; }

  // An Ed25519 signature (64 bytes) over `data`.
  Result<std::string> sign(std::string_view data) const;
  // True when `signature` is this key's signature over `data`.
  bool verify(std::string_view data, std::string_view signature) const;
  // PKCS#8 PEM of the private key.
  Result<std::string> privatePem() const;
  // The public JWK: {"kty":"OKP","crv":"Ed25519","x",...,"kid","use":"sig","alg":"EdDSA"}.
  nlohmann::json publicJwk() const;

 private:
  SigningKey() = default;
  static Result<std::shared_ptr<const SigningKey>> wrap(void* pkey, int64_t createdMs,
                                                        bool hasPrivate);

  void* pkey_ = nullptr;  // EVP_PKEY*.
  bool hasPrivate_ = false;
  int64_t createdMs_ = 0;
  std::string public_;
  std::string kid_;
};

// The RFC 7638 thumbprint of an Ed25519 public key: base64url(SHA-256 of the canonical JWK).
std::string jwkThumbprint(std::string_view publicKey);

class KeyRing {
 public:
  // Loads every key in `directory`, creating the directory (0700) and a first key when there is
  // none. Refuses key files that group or others may read.
  static Result<std::unique_ptr<KeyRing>> loadOrCreate(std::string directory, const Clock& clock);
  // A ring held only in memory (tests, benchmarks): one fresh key.
  static Result<std::unique_ptr<KeyRing>> inMemory(const Clock& clock);

  // The key that signs.
  std::shared_ptr<const SigningKey> active() const;
  // The key with id `kid`, or null.
  std::shared_ptr<const SigningKey> find(std::string_view kid) const;
  // Every published key, newest first.
  std::vector<std::shared_ptr<const SigningKey>> keys() const;
  // `{"keys": [jwk, ...]}`, newest first.
  nlohmann::json jwks() const;

  // Makes a new key active and persists it. Keys that were superseded more than `retainMs` ago
  // are removed (pass at least the longest token lifetime). Returns the new key.
  Result<std::shared_ptr<const SigningKey>> rotate(int64_t retainMs);

 private:
  KeyRing(std::string directory, const Clock& clock)
      : directory_(std::move(directory)), clock_(clock) {}
  Status persist(const SigningKey& key) const;

  std::string directory_;  // Empty for an in-memory ring.
  const Clock& clock_;
  mutable std::shared_mutex mutex_;
  std::vector<std::shared_ptr<const SigningKey>> keys_;  // Newest first.
};

}  // namespace skiff::identity
