// ULID draw ids: 48-bit millisecond time and 80 random bits in Crockford base32.
#include "fairdraw/engine/ulid.hpp"

#include <algorithm>
#include <array>

namespace fairdraw {

namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t kUlidLength = 26;
constexpr std::int64_t kMaxUlidMs = (std::int64_t{1} << 48) - 1;

// Digit values, 0xFF for anything else (lower case included: only the canonical text
// decodes, so encoding the value again gives the identical string).
constexpr std::array<std::uint8_t, 256> kDigitValue = [] {
  std::array<std::uint8_t, 256> table{};
  table.fill(0xFF);
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}();

}  // namespace

std::string make_ulid(std::int64_t unix_ms, Entropy& entropy) {
  const auto ms = static_cast<std::uint64_t>(std::clamp<std::int64_t>(unix_ms, 0, kMaxUlidMs));
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < 6; ++i) {
    bytes[i] = static_cast<std::uint8_t>((ms >> (8 * (5 - i))) & 0xFFU);
  }
  entropy.fill(std::span<std::uint8_t>(bytes).subspan(6));

  UlidBits bits;
  for (std::size_t i = 0; i < 8; ++i) {
    bits.hi = (bits.hi << 8) | bytes[i];
    bits.lo = (bits.lo << 8) | bytes[8 + i];
  }
  return encode_ulid(bits);
}

std::string encode_ulid(UlidBits bits) {
  // 5 bits at a time from the top (one draw id per draw: the bit-by-bit loop cost
  // thousands of instructions). Character c holds bits [125 - 5c, 130 - 5c) of the value.
  std::string out(kUlidLength, '0');
  for (std::size_t c = 0; c < kUlidLength; ++c) {
    const std::size_t shift = 125 - 5 * c;
    std::uint64_t group = 0;
    if (shift >= 64) {
      group = bits.hi >> (shift - 64);
    } else if (shift > 59) {
      group = (bits.lo >> shift) | (bits.hi << (64 - shift));
    } else {
      group = bits.lo >> shift;
    }
    out[c] = kAlphabet[group & 31U];
  }
  return out;
}

std::optional<UlidBits> decode_ulid(std::string_view text) {
  if (text.size() != kUlidLength) return std::nullopt;
  UlidBits bits;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::uint8_t digit = kDigitValue[static_cast<unsigned char>(text[i])];
    if (digit > 31 || (i == 0 && digit > 7)) return std::nullopt;
    bits.hi = (bits.hi << 5) | (bits.lo >> 59);
    bits.lo = (bits.lo << 5) | digit;
  }
  return bits;
}

bool is_valid_ulid(std::string_view text) { return decode_ulid(text).has_value(); }

}  // namespace fairdraw
