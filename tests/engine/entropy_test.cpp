// Entropy sources: the fixed stream is the specified SHA-256 sequence; the CSPRNG fills buffers.
#include "fairdraw/entropy.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <set>
#include <thread>
#include <vector>

namespace fairdraw {
namespace {

std::array<std::uint8_t, 32> expected_block(std::uint64_t seed, std::uint64_t counter) {
  std::array<std::uint8_t, 16> message{};
  for (std::size_t i = 0; i < 8; ++i) {
    message[i] = static_cast<std::uint8_t>(seed >> (56 - 8 * i));
    message[8 + i] = static_cast<std::uint8_t>(counter >> (56 - 8 * i));
  }
  std::array<std::uint8_t, 32> digest{};
  SHA256(message.data(), message.size(), digest.data());
  return digest;
}

TEST(EntropyTest, FixedStreamIsSha256OfSeedAndCounter) {
  FixedEntropy entropy(0x0102030405060708ULL);
  std::array<std::uint8_t, 32> first{};
  entropy.fill(first);
  EXPECT_EQ(first, expected_block(0x0102030405060708ULL, 0));
  std::array<std::uint8_t, 48> next{};
  entropy.fill(next);
  const auto b1 = expected_block(0x0102030405060708ULL, 1);
  const auto b2 = expected_block(0x0102030405060708ULL, 2);
  EXPECT_TRUE(std::equal(b1.begin(), b1.end(), next.begin()));
  EXPECT_TRUE(std::equal(b2.begin(), b2.begin() + 16, next.begin() + 32));
}

TEST(EntropyTest, FixedStreamIsReproducibleAndSeedDependent) {
  FixedEntropy a(7);
  FixedEntropy b(7);
  FixedEntropy c(8);
  std::array<std::uint8_t, 10> x{}, y{}, z{};
  a.fill(x);
  b.fill(y);
  c.fill(z);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
}

TEST(EntropyTest, EmptyFillIsANoOp) {
  FixedEntropy fixed(1);
  fixed.fill({});
  std::array<std::uint8_t, 32> block{};
  fixed.fill(block);
  EXPECT_EQ(block, expected_block(1, 0));
  CsprngEntropy csprng;
  csprng.fill({});
}

TEST(EntropyTest, CsprngFillsDistinctBuffers) {
  CsprngEntropy entropy;
  std::array<std::uint8_t, 32> a{}, b{};
  entropy.fill(a);
  entropy.fill(b);
  EXPECT_NE(a, b);
  EXPECT_NE(a, (std::array<std::uint8_t, 32>{}));
}

TEST(EntropyTest, FixedStreamIsThreadSafe) {
  FixedEntropy entropy(99);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::vector<std::array<std::uint8_t, 32>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&entropy, &out = results[static_cast<std::size_t>(t)]] {
      for (int i = 0; i < kPerThread; ++i) {
        std::array<std::uint8_t, 32> block{};
        entropy.fill(block);
        out.push_back(block);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::array<std::uint8_t, 32>> all;
  for (const auto& list : results) all.insert(list.begin(), list.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (std::uint64_t counter = 0; counter < kThreads * kPerThread; ++counter) {
    EXPECT_EQ(all.count(expected_block(99, counter)), 1U);
  }
}

}  // namespace
}  // namespace fairdraw
