#include "controlplane/identity/signing_keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <mutex>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/encoding.h"

namespace skiff::identity {
namespace {

EVP_PKEY* asKey(void* pkey) {
  return static_cast<EVP_PKEY*>(pkey);
}

constexpr std::string_view kPrefix = "ed25519-";
constexpr std::string_view kSuffix = ".pem";

std::string keyFileName(int64_t createdMs) {
  return std::string(kPrefix) + std::to_string(createdMs) + std::string(kSuffix);
}

// The creation time encoded in a key file name, or -1 when the name is not a key file's.
int64_t createdFromName(std::string_view name) {
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return -1;
  std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || value < 0) return -1;
  return value;
}

Status fsyncDirectory(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errnoError("open " + path, errno));
  int rc = ::fsync(fd);
  int savedErrno = errno;
  ::close(fd);
  if (rc != 0) return std::unexpected(errnoError("fsync " + path, savedErrno));
  return {};
}

}  // namespace

Result<std::shared_ptr<const SigningKey>> SigningKey::wrap(void* pkey, int64_t createdMs,
                                                           bool hasPrivate) {
  std::shared_ptr<SigningKey> key(new SigningKey());
  key->pkey_ = pkey;
  key->hasPrivate_ = hasPrivate;
  key->createdMs_ = createdMs;
  unsigned char raw[32];
  size_t length = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(asKey(pkey), raw, &length) != 1 || length != sizeof(raw)) {
    return fail(ErrorCode::kInternal, "cannot read the Ed25519 public key");
  }
  key->public_.assign(reinterpret_cast<const char*>(raw), length);
  key->kid_ = jwkThumbprint(key->public_);
  return key;
}

Result<std::shared_ptr<const SigningKey>> SigningKey::generate(int64_t createdMs) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (pkey == nullptr) return fail(ErrorCode::kInternal, "Ed25519 key generation failed");
  return wrap(pkey, createdMs, true);
}

Result<std::shared_ptr<const SigningKey>> SigningKey::fromPem(std::string_view pem,
                                                              int64_t createdMs) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return fail(ErrorCode::kInternal, "out of memory");
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) return fail(ErrorCode::kInvalidArgument, "not a PEM private key");
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(pkey);
    return fail(ErrorCode::kInvalidArgument, "not an Ed25519 key");
  }
  return wrap(pkey, createdMs, true);
}

Result<std::shared_ptr<const SigningKey>> SigningKey::fromPublicKey(std::string_view raw32,
                                                                    int64_t createdMs) {
  if (raw32.size() != 32) return fail(ErrorCode::kInvalidArgument, "an Ed25519 key has 32 bytes");
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw32.data()), 32);
  if (pkey == nullptr) return fail(ErrorCode::kInvalidArgument, "bad Ed25519 public key");
  return wrap(pkey, createdMs, false);
}

SigningKey::~SigningKey() {
  EVP_PKEY_free(asKey(pkey_));
}

Result<std::string> SigningKey::sign(std::string_view data) const {
  if (!hasPrivate_) return fail(ErrorCode::kFailedPrecondition, "a public key cannot sign");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return fail(ErrorCode::kInternal, "out of memory");
  std::string signature(64, '\0');
  size_t length = signature.size();
  // Ed25519 is one-shot: no digest is named, the whole message goes to EVP_DigestSign.
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, asKey(pkey_)) == 1 &&
            EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                           reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return fail(ErrorCode::kInternal, "Ed25519 signing failed");
  signature.resize(length);
  return signature;
}

bool SigningKey::verify(std::string_view data, std::string_view signature) const {
  if (signature.size() != 64) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, asKey(pkey_)) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                             signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                             data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

Result<std::string> SigningKey::privatePem() const {
  if (!hasPrivate_) return fail(ErrorCode::kFailedPrecondition, "no private key");
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return fail(ErrorCode::kInternal, "out of memory");
  if (PEM_write_bio_PrivateKey(bio, asKey(pkey_), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    BIO_free(bio);
    return fail(ErrorCode::kInternal, "cannot encode the private key");
  }
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  return pem;
}

nlohmann::json SigningKey::publicJwk() const {
  return {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", base64UrlEncode(public_)},
          {"kid", kid_},  {"use", "sig"},     {"alg", "EdDSA"}};
}

std::string jwkThumbprint(std::string_view publicKey) {
  // RFC 7638 section 3.2: the required members only, in lexicographic order, no whitespace.
  std::string canonical =
      R"({"crv":"Ed25519","kty":"OKP","x":")" + base64UrlEncode(publicKey) + R"("})";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(canonical.data(), canonical.size(), digest, &length, EVP_sha256(), nullptr);
  return base64UrlEncode(std::string_view(reinterpret_cast<const char*>(digest), length));
}

Result<std::unique_ptr<KeyRing>> KeyRing::inMemory(const Clock& clock) {
  std::unique_ptr<KeyRing> ring(new KeyRing("", clock));
  auto key = SigningKey::generate(clock.nowMs());
  if (!key) return std::unexpected(key.error());
  ring->keys_.push_back(std::move(*key));
  return ring;
}

Result<std::unique_ptr<KeyRing>> KeyRing::loadOrCreate(std::string directory, const Clock& clock) {
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("create " + directory, errno));
  }
  std::unique_ptr<KeyRing> ring(new KeyRing(directory, clock));
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) return std::unexpected(errnoError("open " + directory, errno));
  std::vector<std::pair<int64_t, std::string>> files;
  while (dirent* entry = ::readdir(dir)) {
    int64_t created = createdFromName(entry->d_name);
    if (created >= 0) files.emplace_back(created, entry->d_name);
  }
  ::closedir(dir);
  for (const auto& [created, name] : files) {
    std::string path = directory + "/" + name;
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) return std::unexpected(errnoError("stat " + path, errno));
    if ((info.st_mode & 077) != 0) {
      return fail(ErrorCode::kFailedPrecondition,
                  path + ": a signing key must not be accessible to group or others (chmod 600)");
    }
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return fail(ErrorCode::kIo, "cannot read " + path);
    auto key = SigningKey::fromPem(text.str(), created);
    if (!key) return std::unexpected(key.error().wrap(path));
    ring->keys_.push_back(std::move(*key));
  }
  std::sort(ring->keys_.begin(), ring->keys_.end(),
            [](const auto& a, const auto& b) { return a->createdMs() > b->createdMs(); });
  if (ring->keys_.empty()) {
    auto key = SigningKey::generate(clock.nowMs());
    if (!key) return std::unexpected(key.error());
    SKIFF_TRY_STATUS(ring->persist(**key), "store the first signing key");
    ring->keys_.push_back(std::move(*key));
  }
  return ring;
}

Status KeyRing::persist(const SigningKey& key) const {
  if (directory_.empty()) return {};
  auto pem = key.privatePem();
  if (!pem) return std::unexpected(pem.error());
  std::string path = directory_ + "/" + keyFileName(key.createdMs());
  std::string temporary = path + ".tmp";
  ::unlink(temporary.c_str());
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + temporary, errno));
  bool ok = ::write(fd, pem->data(), pem->size()) == static_cast<ssize_t>(pem->size()) &&
            ::fsync(fd) == 0;
  int savedErrno = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(temporary.c_str());
    return std::unexpected(errnoError("write " + temporary, savedErrno));
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return std::unexpected(errnoError("rename to " + path, errno));
  }
  return fsyncDirectory(directory_);
}

std::shared_ptr<const SigningKey> KeyRing::active() const {
  std::shared_lock lock(mutex_);
  return keys_.front();
}

std::shared_ptr<const SigningKey> KeyRing::find(std::string_view kid) const {
  std::shared_lock lock(mutex_);
  for (const auto& key : keys_) {
    if (key->kid() == kid) return key;
  }
  return nullptr;
}

std::vector<std::shared_ptr<const SigningKey>> KeyRing::keys() const {
  std::shared_lock lock(mutex_);
  return keys_;
}

nlohmann::json KeyRing::jwks() const {
  nlohmann::json keys = nlohmann::json::array();
  for (const auto& key : this->keys()) keys.push_back(key->publicJwk());
  return {{"keys", std::move(keys)}};
}

Result<std::shared_ptr<const SigningKey>> KeyRing::rotate(int64_t retainMs) {
  std::unique_lock lock(mutex_);
  // File names carry the creation time, so a new key must be strictly newer than the last.
  int64_t created = std::max(clock_.nowMs(), keys_.front()->createdMs() + 1);
  auto key = SigningKey::generate(created);
  if (!key) return std::unexpected(key.error());
  SKIFF_TRY_STATUS(persist(**key), "store the new signing key");
  keys_.insert(keys_.begin(), *key);
  // keys_[i] was superseded when keys_[i - 1] was created.
  for (size_t i = keys_.size() - 1; i >= 1; --i) {
    if (clock_.nowMs() - keys_[i - 1]->createdMs() <= retainMs) break;
    if (!directory_.empty()) {
      std::string path = directory_ + "/" + keyFileName(keys_[i]->createdMs());
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        return std::unexpected(errnoError("remove retired key " + path, errno));
      }
    }
    keys_.erase(keys_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return *key;
}

}  // namespace skiff::identity
