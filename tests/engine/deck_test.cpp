// Fairness deck: published test vectors, exact weight counts, rejection sampling, hex helpers.
#include "fairdraw/engine/deck.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <cctype>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "fairdraw/entropy.hpp"

namespace fairdraw {
namespace {

nlohmann::json load_vectors() {
  std::ifstream file(std::string(FAIRDRAW_TEST_DATA) + "/deck_vectors.json");
  EXPECT_TRUE(file.good());
  return nlohmann::json::parse(file);
}

std::vector<int> as_ints(const std::vector<Card>& deck) {
  std::vector<int> out;
  out.reserve(deck.size());
  for (Card c : deck) out.push_back(c == kMissCard ? -1 : static_cast<int>(c));
  return out;
}

std::string deck_digest(const std::vector<int>& deck) {
  std::string joined;
  for (std::size_t i = 0; i < deck.size(); ++i) {
    if (i > 0) joined += ',';
    joined += std::to_string(deck[i]);
  }
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), digest.data());
  return to_hex(digest);
}

TEST(DeckTest, MatchesPublishedVectors) {
  const nlohmann::json vectors = load_vectors();
  ASSERT_FALSE(vectors.at("cases").empty());
  for (const auto& c : vectors.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto seed = seed_from_hex(c.at("seed_hex").get<std::string>());
    ASSERT_TRUE(seed.has_value());
    EXPECT_EQ(commitment_hex(*seed), c.at("commitment").get<std::string>());
    const auto weights = c.at("weights").get<std::vector<std::uint32_t>>();
    const auto deck = as_ints(build_deck(*seed, weights, c.at("miss_weight").get<std::uint32_t>()));
    if (c.contains("deck")) {
      EXPECT_EQ(deck, c.at("deck").get<std::vector<int>>());
    }
    if (c.contains("deck_first_20")) {
      const auto first = c.at("deck_first_20").get<std::vector<int>>();
      ASSERT_GE(deck.size(), first.size());
      EXPECT_EQ(std::vector<int>(deck.begin(), deck.begin() + static_cast<std::ptrdiff_t>(first.size())),
                first);
    }
    if (c.contains("deck_sha256")) {
      EXPECT_EQ(deck_digest(deck), c.at("deck_sha256").get<std::string>());
    }
  }
}

TEST(DeckTest, CountsEqualWeights) {
  FixedEntropy entropy(42);
  Seed seed{};
  entropy.fill(seed);
  const std::vector<std::uint32_t> weights = {1, 0, 999, 25'000, 50'000};
  const std::uint32_t miss_weight = 100'000 - 76'000;
  const auto deck = build_deck(seed, weights, miss_weight);
  ASSERT_EQ(deck.size(), 100'000U);
  std::vector<std::uint64_t> counts(weights.size(), 0);
  std::uint64_t misses = 0;
  for (Card c : deck) {
    if (c == kMissCard) {
      ++misses;
    } else {
      ASSERT_LT(c, weights.size());
      ++counts[c];
    }
  }
  for (std::size_t p = 0; p < weights.size(); ++p) EXPECT_EQ(counts[p], weights[p]) << "prize " << p;
  EXPECT_EQ(misses, miss_weight);
}

TEST(DeckTest, MaximumDeckHasExactCounts) {
  Seed seed{};
  seed[5] = 0x5a;
  const std::vector<std::uint32_t> weights = {1, 2'000'000, 3'000'000};
  const auto deck = build_deck(seed, weights, 4'999'999);
  ASSERT_EQ(deck.size(), 10'000'000U);
  std::array<std::uint64_t, 4> counts{};
  for (Card c : deck) ++counts[c == kMissCard ? 3 : c];
  EXPECT_EQ(counts, (std::array<std::uint64_t, 4>{1, 2'000'000, 3'000'000, 4'999'999}));
}

TEST(DeckTest, ShuffleActuallyMovesCards) {
  Seed seed{};
  seed[0] = 7;
  const auto deck = build_deck(seed, std::vector<std::uint32_t>{500, 500}, 0);
  std::size_t zeros_in_first_half = 0;
  for (std::size_t i = 0; i < 500; ++i) zeros_in_first_half += deck[i] == 0 ? 1 : 0;
  EXPECT_GT(zeros_in_first_half, 150U);
  EXPECT_LT(zeros_in_first_half, 350U);
}

TEST(DeckTest, EmptyAndSingleDecks) {
  const Seed seed{};
  EXPECT_TRUE(build_deck(seed, std::vector<std::uint32_t>{}, 0).empty());
  EXPECT_EQ(build_deck(seed, std::vector<std::uint32_t>{0, 0}, 1), std::vector<Card>{kMissCard});
}

TEST(DeckTest, WordsFollowTheSpecifiedStream) {
  Seed seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  DeckRng rng(seed);
  for (std::uint64_t block = 0; block < 3; ++block) {
    std::array<std::uint8_t, 40> message{};
    std::copy(seed.begin(), seed.end(), message.begin());
    for (int b = 0; b < 8; ++b) message[32 + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(block >> (56 - 8 * b));
    std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
    SHA256(message.data(), message.size(), digest.data());
    for (std::size_t w = 0; w < 4; ++w) {
      std::uint64_t expected = 0;
      for (std::size_t b = 0; b < 8; ++b) expected = (expected << 8) | digest[8 * w + b];
      EXPECT_EQ(rng.next_word(), expected) << "block " << block << " word " << w;
    }
  }
}

TEST(DeckTest, UniformOfOneIsZeroAndConsumesAWord) {
  const Seed seed{};
  DeckRng a(seed);
  DeckRng b(seed);
  EXPECT_EQ(a.uniform(1), 0U);
  b.next_word();
  EXPECT_EQ(a.next_word(), b.next_word());
}

TEST(DeckTest, PowerOfTwoBoundsNeverReject) {
  const Seed seed{};
  DeckRng a(seed);
  DeckRng b(seed);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.uniform(std::uint64_t{1} << 63), b.next_word() % (std::uint64_t{1} << 63));
}

TEST(DeckTest, RejectionPathStaysInRangeAndMatchesTheRule) {
  // With bound = 2^63 + 1 the limit is 2^64 - (2^63 - 1), so nearly half the words are rejected.
  const std::uint64_t bound = (std::uint64_t{1} << 63) + 1;
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - ((std::uint64_t{1} << 63) - 1) + 1;
  Seed seed{};
  seed[31] = 1;
  DeckRng rng(seed);
  DeckRng reference(seed);
  int rejected = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t value = rng.uniform(bound);
    EXPECT_LT(value, bound);
    std::uint64_t u = reference.next_word();
    while (u >= limit) {
      ++rejected;
      u = reference.next_word();
    }
    ASSERT_EQ(value, u % bound);
  }
  EXPECT_GT(rejected, 300);
}

TEST(DeckTest, UniformSmallBoundsCoverTheRange) {
  const Seed seed{};
  DeckRng rng(seed);
  std::array<int, 6> seen{};
  for (int i = 0; i < 6000; ++i) {
    const auto v = rng.uniform(6);
    ASSERT_LT(v, 6U);
    ++seen[v];
  }
  for (int count : seen) EXPECT_GT(count, 800);
}

TEST(DeckTest, HexRoundTrip) {
  Seed seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i * 37 + 5);
  const std::string hex = to_hex(seed);
  EXPECT_EQ(hex.size(), 64U);
  EXPECT_EQ(hex, "052a4f74"  "99bee308" "2d52779c" "c1e60b30" "557a9fc4" "e90e3358" "7da2c7ec" "11365b80");
  EXPECT_EQ(seed_from_hex(hex), seed);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(seed_from_hex(upper), seed);
  EXPECT_EQ(to_hex(std::vector<std::uint8_t>{0x00, 0xff, 0x0a}), "00ff0a");
}

TEST(DeckTest, SeedFromHexRejectsBadInput) {
  const std::string good(64, 'a');
  EXPECT_TRUE(seed_from_hex(good).has_value());
  EXPECT_FALSE(seed_from_hex("").has_value());
  EXPECT_FALSE(seed_from_hex(good.substr(1)).has_value());
  EXPECT_FALSE(seed_from_hex(good + "a").has_value());
  EXPECT_FALSE(seed_from_hex(good + "aa").has_value());
  for (char bad : {'g', 'G', ' ', '-', 'x', '\0'}) {
    std::string text = good;
    text[17] = bad;
    EXPECT_FALSE(seed_from_hex(text).has_value()) << "char " << static_cast<int>(bad);
  }
}

TEST(DeckTest, CommitmentIsSha256OfSeed) {
  const Seed seed{};
  EXPECT_EQ(commitment_hex(seed), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
}

}  // namespace
}  // namespace fairdraw
