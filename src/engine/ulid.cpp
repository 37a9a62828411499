// ULID draw ids: 48-bit millisecond time and 80 random bits in Crockford base32.
#include "fairdraw/engine/ulid.hpp"

#include <algorithm>
#include <array>

namespace fairdraw {

namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t kUlidLength = 26;
constexpr std::int64_t kMaxUlidMs = (std::int64_t{1} << 48) - 1;

// The 128-bit value read as 130 bits with two leading zero bits, so that it splits
// into 26 groups of 5 bits; the first group is therefore at most 0b00111 ('7').
unsigned padded_bit(const std::array<std::uint8_t, 16>& bytes, std::size_t pos) {
  if (pos < 2) return 0;
  const std::size_t bit = pos - 2;
  return (bytes[bit / 8] >> (7 - bit % 8)) & 1U;
}

}  // namespace

std::string make_ulid(std::int64_t unix_ms, Entropy& entropy) {
  const auto ms = static_cast<std::uint64_t>(std::clamp<std::int64_t>(unix_ms, 0, kMaxUlidMs));
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < 6; ++i) {
    bytes[i] = static_cast<std::uint8_t>((ms >> (8 * (5 - i))) & 0xFFU);
  }
  entropy.fill(std::span<std::uint8_t>(bytes).subspan(6));

  std::string out(kUlidLength, '0');
  for (std::size_t c = 0; c < kUlidLength; ++c) {
    unsigned group = 0;
    for (std::size_t b = 0; b < 5; ++b) group = (group << 1) | padded_bit(bytes, c * 5 + b);
    out[c] = kAlphabet[group];
  }
  return out;
}

bool is_valid_ulid(std::string_view text) {
  if (text.size() != kUlidLength || text[0] > '7') return false;
  for (char c : text) {
    if (kAlphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace fairdraw
