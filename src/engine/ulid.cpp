// ULID draw ids: 48-bit millisecond time and 80 random bits in Crockford base32.
#include "fairdraw/engine/ulid.hpp"

#include <algorithm>
#include <array>

namespace fairdraw {

namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t kUlidLength = 26;
constexpr std::int64_t kMaxUlidMs = (std::int64_t{1} << 48) - 1;

}  // namespace

std::string make_ulid(std::int64_t unix_ms, Entropy& entropy) {
  const auto ms = static_cast<std::uint64_t>(std::clamp<std::int64_t>(unix_ms, 0, kMaxUlidMs));
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < 6; ++i) {
    bytes[i] = static_cast<std::uint8_t>((ms >> (8 * (5 - i))) & 0xFFU);
  }
  entropy.fill(std::span<std::uint8_t>(bytes).subspan(6));

  // Read the 128 bits as two big-endian words and take 5 bits at a time from
  // the top (one draw id per draw: the bit-by-bit loop cost thousands of
  // instructions). Character c holds bits [125 - 5c, 130 - 5c) of the value.
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    hi = (hi << 8) | bytes[i];
    lo = (lo << 8) | bytes[8 + i];
  }
  std::string out(kUlidLength, '0');
  for (std::size_t c = 0; c < kUlidLength; ++c) {
    const std::size_t shift = 125 - 5 * c;
    std::uint64_t group = 0;
    if (shift >= 64) {
      group = hi >> (shift - 64);
    } else if (shift > 59) {
      group = (lo >> shift) | (hi << (64 - shift));
    } else {
      group = lo >> shift;
    }
    out[c] = kAlphabet[group & 31U];
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
