#include "api/names.h"

namespace skiff::api {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isLower(char c) {
  return c >= 'a' && c <= 'z';
}
bool isLetter(char c) {
  return isLower(c) || (c >= 'A' && c <= 'Z');
}
bool isAlnum(char c) {
  return isLetter(c) || isDigit(c);
}
bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

template <typename Pred>
bool all(std::string_view text, Pred pred) {
  for (char c : text) {
    if (!pred(c)) return false;
  }
  return true;
}

bool nameTail(char c) {
  return isAlnum(c) || c == '.' || c == '_' || c == '-';
}

// [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?
bool hostComponent(std::string_view part) {
  if (part.empty() || !isAlnum(part.front()) || !isAlnum(part.back())) return false;
  return all(part, [](char c) { return isAlnum(c) || c == '-'; });
}

// [0-9]{1,5}
bool port(std::string_view text) {
  return !text.empty() && text.size() <= 5 && all(text, isDigit);
}

// A dotted host with an optional port, a single host component with a port, or "localhost".
bool registryHost(std::string_view domain) {
  if (domain == "localhost") return true;
  std::string_view host = domain;
  bool hasPort = false;
  if (auto colon = domain.rfind(':'); colon != std::string_view::npos) {
    if (!port(domain.substr(colon + 1))) return false;
    host = domain.substr(0, colon);
    hasPort = true;
  }
  size_t components = 0;
  while (true) {
    auto dot = host.find('.');
    if (!hostComponent(host.substr(0, dot))) return false;
    ++components;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
  }
  return components >= 2 || hasPort;
}

bool pathAlnum(char c) {
  return isLower(c) || isDigit(c);
}

// [a-z0-9]+(([._]|__|-+)[a-z0-9]+)*
bool pathComponent(std::string_view part) {
  size_t i = 0;
  while (true) {
    size_t start = i;
    while (i < part.size() && pathAlnum(part[i])) ++i;
    if (i == start) return false;
    if (i == part.size()) return true;
    size_t separator = i;
    while (i < part.size() && !pathAlnum(part[i])) ++i;
    std::string_view between = part.substr(separator, i - separator);
    bool ok = between == "." || between == "_" || between == "__" ||
              all(between, [](char c) { return c == '-'; });
    if (!ok) return false;
  }
}

bool imagePath(std::string_view path) {
  while (true) {
    auto slash = path.find('/');
    if (!pathComponent(path.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

}  // namespace

bool validShortName(std::string_view name) {
  return !name.empty() && name.size() <= 64 && all(name, nameTail);
}

bool validName(std::string_view name) {
  return !name.empty() && name.size() <= 128 && isAlnum(name.front()) && all(name, nameTail);
}

bool validMetricName(std::string_view name) {
  return !name.empty() && name.size() <= 128 && isLetter(name.front()) && all(name, nameTail);
}

bool validEnvName(std::string_view name) {
  return !name.empty() && !isDigit(name.front()) &&
         all(name, [](char c) { return isAlnum(c) || c == '_'; });
}

bool validImageTag(std::string_view tag) {
  return !tag.empty() && tag.size() <= 128 && tag.front() != '.' && tag.front() != '-' &&
         all(tag, nameTail);
}

bool validImageDigest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || !digest.starts_with(kPrefix)) return false;
  return all(digest.substr(kPrefix.size()),
             [](char c) { return isDigit(c) || (c >= 'a' && c <= 'f'); });
}

bool validImageName(std::string_view name) {
  // The host, when there is one, ends at the first '/'; a first part that is no host is a path
  // component instead (as "library/busybox").
  if (auto slash = name.find('/'); slash != std::string_view::npos) {
    if (registryHost(name.substr(0, slash)) && imagePath(name.substr(slash + 1))) return true;
  }
  return imagePath(name);
}

bool validEmail(std::string_view email) {
  if (!all(email, [](char c) { return !isSpace(c); })) return false;
  auto at = email.find('@');
  if (at == 0 || at == std::string_view::npos) return false;
  std::string_view domain = email.substr(at + 1);
  if (domain.find('@') != std::string_view::npos) return false;
  // A '.' with text on both sides.
  return domain.size() >= 3 &&
         domain.substr(1, domain.size() - 2).find('.') != std::string_view::npos;
}

}  // namespace skiff::api
