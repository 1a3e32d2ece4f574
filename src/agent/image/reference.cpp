#include "agent/image/reference.h"

#include <arpa/inet.h>

#include <cstring>

namespace skiff::agent::image {
namespace {

bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// One path component: runs of [a-z0-9] joined by exactly one of '.', '_', '__' or '-'+.
bool validComponent(std::string_view c) {
  if (c.empty() || !isLowerAlnum(c.front()) || !isLowerAlnum(c.back())) {
    return false;
  }
  size_t i = 0;
  while (i < c.size()) {
    if (isLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    size_t run = 0;
    while (i + run < c.size() && !isLowerAlnum(c[i + run])) {
      ++run;
    }
    std::string_view sep = c.substr(i, run);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) {
      return false;
    }
    i += run;
  }
  return true;
}

bool validTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag.front())) {
    return false;
  }
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool validHost(std::string_view host) {
  if (host.empty()) {
    return false;
  }
  std::string_view name = host;
  std::string_view port;
  if (host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    std::string addr(host.substr(1, close - 1));
    in6_addr parsed{};
    if (::inet_pton(AF_INET6, addr.c_str(), &parsed) != 1) {
      return false;
    }
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return false;
      }
      port = rest.substr(1);
      if (port.empty()) {
        return false;
      }
    }
    name = {};
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
    if (port.empty()) {
      return false;
    }
  }
  for (char c : port) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  if (port.size() > 5) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

Error invalid(std::string_view text, std::string_view why) {
  std::string message = "invalid image reference '";
  message.append(text).append("': ").append(why);
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

Result<ImageReference> ImageReference::parse(std::string_view text,
                                             const ReferenceOptions& options) {
  if (text.empty()) {
    return std::unexpected(invalid(text, "empty"));
  }
  if (text.size() > 1024) {
    return std::unexpected(invalid(text.substr(0, 64), "longer than 1024 characters"));
  }
  ImageReference ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    auto digest = Digest::parse(rest.substr(at + 1));
    if (!digest) {
      return std::unexpected(invalid(text, digest.error().message()));
    }
    ref.digest_ = *digest;
    rest = rest.substr(0, at);
  }
  // The registry is the first component when it looks like a host.
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    bool isHost = first.find_first_of(".:[") != std::string_view::npos || first == "localhost";
    if (isHost) {
      if (!validHost(first)) {
        return std::unexpected(invalid(text, "bad registry host"));
      }
      ref.registry_ = std::string(first);
      rest = rest.substr(slash + 1);
    }
  }
  if (ref.registry_.empty()) {
    ref.registry_ = options.defaultRegistry;
    if (!validHost(ref.registry_)) {
      return std::unexpected(invalid(text, "bad default registry"));
    }
  }
  // A tag is a ':' in the last path component.
  size_t lastSlash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (lastSlash == std::string_view::npos || colon > lastSlash)) {
    std::string_view tag = rest.substr(colon + 1);
    if (!validTag(tag)) {
      return std::unexpected(invalid(text, "bad tag"));
    }
    ref.tag_ = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty() || rest.size() > 255) {
    return std::unexpected(invalid(text, "bad repository length"));
  }
  size_t start = 0;
  int components = 0;
  while (start <= rest.size()) {
    size_t end = rest.find('/', start);
    std::string_view component =
        rest.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!validComponent(component)) {
      return std::unexpected(
          invalid(text, "repository components must be lowercase letters, digits and separators"));
    }
    ++components;
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  ref.repository_ = std::string(rest);
  if (ref.registry_ == "docker.io" && components == 1) {
    ref.repository_ = "library/" + ref.repository_;
  }
  if (ref.tag_.empty() && !ref.digest_) {
    ref.tag_ = "latest";
  }
  return ref;
}

std::string ImageReference::apiHost() const {
  return registry_ == "docker.io" ? std::string("registry-1.docker.io") : registry_;
}

std::string ImageReference::hostName() const {
  if (!registry_.empty() && registry_.front() == '[') {
    return registry_.substr(1, registry_.find(']') - 1);
  }
  return registry_.substr(0, registry_.rfind(':'));
}

std::string ImageReference::manifestReference() const {
  return digest_ ? digest_->str() : tag_;
}

std::string ImageReference::name() const {
  return registry_ + "/" + repository_;
}

std::string ImageReference::str() const {
  std::string out = name();
  if (!tag_.empty()) {
    out.append(":").append(tag_);
  }
  if (digest_) {
    out.append("@").append(digest_->str());
  }
  return out;
}

ImageReference ImageReference::withDigest(const Digest& digest) const {
  ImageReference copy = *this;
  copy.tag_.clear();
  copy.digest_ = digest;
  return copy;
}

bool isLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1") {
    return true;
  }
  std::string text(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&v6, &kLoopback, sizeof v6) == 0;
  }
  return false;
}

}  // namespace skiff::agent::image
