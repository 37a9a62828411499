// The fairness deck of DESIGN.md section 4: a deterministic random stream from
// a 32-byte seed, a Fisher-Yates (Durstenfeld) shuffle of the weighted deck,
// and the public commitment SHA-256(seed).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fairdraw {

using Seed = std::array<std::uint8_t, 32>;

// A card is a prize index in declaration order, or kMissCard.
using Card = std::uint16_t;
inline constexpr Card kMissCard = 0xFFFF;

// Block k = SHA-256(seed || uint64_be(k)); each block yields four 64-bit
// big-endian words, used in order.
class DeckRng {
 public:
  explicit DeckRng(const Seed& seed);
  std::uint64_t next_word();
  // Unbiased value in [0, bound) by rejection: take words until
  // u < 2^64 - (2^64 mod bound), then u mod bound. bound >= 1.
  std::uint64_t uniform(std::uint64_t bound);

 private:
  void refill();
  Seed seed_;
  std::uint64_t block_ = 0;
  std::array<std::uint64_t, 4> words_{};
  std::size_t next_ = 4;
};

// weight_i copies of prize i in order, then miss_weight misses, shuffled with
// the seed: for i from W-1 down to 1, j = uniform(i+1), swap(deck[i], deck[j]).
std::vector<Card> build_deck(const Seed& seed, std::span<const std::uint32_t> weights,
                             std::uint32_t miss_weight);

std::string to_hex(std::span<const std::uint8_t> bytes);
std::optional<Seed> seed_from_hex(std::string_view hex);
// hex(SHA-256(seed)).
std::string commitment_hex(const Seed& seed);

}  // namespace fairdraw
