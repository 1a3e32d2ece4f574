#pragma once

// Non-cryptographic hashing for stable names derived from identifiers.

#include <cstdint>
#include <string_view>

namespace skiff {

// 64-bit FNV-1a: stable across builds and hosts, so names derived from it can be recomputed.
constexpr uint64_t fnv1a64(std::string_view data) {
  uint64_t hash = 14695981039346656037ull;
  for (char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace skiff
