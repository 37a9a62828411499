// ULIDs for draw ids: 48-bit millisecond time + 80 random bits, Crockford
// base32, 26 characters, sortable by time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fairdraw/entropy.hpp"

namespace fairdraw {

std::string make_ulid(std::int64_t unix_ms, Entropy& entropy);
bool is_valid_ulid(std::string_view text);

// A ULID's 128-bit value as two words (hi holds the first 64 bits): 16 bytes instead of 26
// characters, for tables that keep draw ids (the idempotency table).
struct UlidBits {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
};
std::string encode_ulid(UlidBits bits);
// The value of a canonical ULID (upper-case Crockford digits, the first at most 7: exactly
// what encode_ulid writes), so that encoding it again gives the identical text; else nullopt.
std::optional<UlidBits> decode_ulid(std::string_view text);

}  // namespace fairdraw
