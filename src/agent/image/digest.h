#pragma once

// Content digests (`sha256:<64 lowercase hex>`), streaming SHA-256, and the image error vocabulary.
//
// Errors of this library are ordinary `skiff::Error`s. Two kinds matter to callers:
//   - A blob or manifest whose bytes do not hash to the digest that named it fails with
//     `ErrorCode::kInvalidArgument` and a message that contains "digest mismatch" and the expected
//     digest (`isDigestMismatch` tells it apart). The content is bad at its source; retrying the
//     same pull will not help, and the task should fail as an image error, not a user error.
//   - Every error returned by `ImageStore` and `RegistryClient` names the image or the blob it was
//     about, so the message alone identifies it as an image problem.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <openssl/evp.h>

#include "common/error.h"

namespace skiff::agent::image {

// The message fragment every digest mismatch contains.
inline constexpr std::string_view kDigestMismatch = "digest mismatch";

// A validated `sha256:<hex>` digest. Other algorithms are refused when parsed: the store and the
// verification both assume SHA-256, which is what every registry serves.
class Digest {
 public:
  Digest() = default;

  // Fails with kInvalidArgument unless `text` is "sha256:" followed by 64 lowercase hex digits.
  static Result<Digest> parse(std::string_view text);
  // Builds a digest from a 32-byte raw SHA-256 value.
  static Digest fromRaw(const unsigned char* raw32);

  const std::string& str() const { return text_; }
  // The 64 hex digits without the "sha256:" prefix; what the store uses as a file name.
  std::string_view hex() const { return std::string_view(text_).substr(7); }
  bool empty() const { return text_.empty(); }

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;

 private:
  explicit Digest(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

// Streaming SHA-256 over OpenSSL EVP. Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  Digest finish();

 private:
  EVP_MD_CTX* ctx_;
};

Digest sha256Of(std::string_view data);
// Hashes a file; fails with kIo if it cannot be read.
Result<Digest> sha256File(const std::string& path);

// The error for bytes that hashed to `actual` where `expected` was required. `what` names the
// object ("blob", "manifest", "layer of docker-save archive").
Error digestMismatchError(std::string_view what, const Digest& expected, const Digest& actual);
bool isDigestMismatch(const Error& error);

}  // namespace skiff::agent::image
