// FNV-1a 64: a small, fixed hash for values that are stored or compared
// across processes (request fingerprints, the record's hash columns), where
// std::hash may differ between builds.
#pragma once

#include <cstdint>
#include <string_view>

namespace fairdraw {

inline constexpr std::uint64_t kFnv1a64Offset = 0xcbf29ce484222325ULL;

// Hashes `text` continuing from `hash`, so fields can be hashed one after another.
constexpr std::uint64_t fnv1a64(std::string_view text, std::uint64_t hash = kFnv1a64Offset) {
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace fairdraw
