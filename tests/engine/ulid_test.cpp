// ULIDs: format, time-ordered prefix, validity check.
#include "fairdraw/engine/ulid.hpp"

#include <gtest/gtest.h>

#include <set>

namespace fairdraw {
namespace {

TEST(UlidTest, HasTheUlidFormat) {
  FixedEntropy entropy(1);
  const std::string id = make_ulid(1'767'225'600'000, entropy);
  EXPECT_EQ(id.size(), 26U);
  EXPECT_TRUE(is_valid_ulid(id)) << id;
  for (char c : id) EXPECT_EQ(std::string_view("ILOU").find(c), std::string_view::npos) << id;
}

TEST(UlidTest, EncodesTheTimeInTheFirstTenCharacters) {
  FixedEntropy entropy(2);
  EXPECT_EQ(make_ulid(0, entropy).substr(0, 10), "0000000000");
  EXPECT_EQ(make_ulid(1, entropy).substr(0, 10), "0000000001");
  EXPECT_EQ(make_ulid(32, entropy).substr(0, 10), "0000000010");
  // The ULID spec's example time 1469918176385 encodes as 01ARYZ6S41.
  EXPECT_EQ(make_ulid(1'469'918'176'385, entropy).substr(0, 10), "01ARYZ6S41");
  EXPECT_EQ(make_ulid((std::int64_t{1} << 48) - 1, entropy).substr(0, 10), "7ZZZZZZZZZ");
  EXPECT_EQ(make_ulid(-5, entropy).substr(0, 10), "0000000000");
}

TEST(UlidTest, RandomPartComesFromEntropy) {
  FixedEntropy a(3);
  FixedEntropy b(3);
  EXPECT_EQ(make_ulid(1000, a), make_ulid(1000, b));
  CsprngEntropy csprng;
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(make_ulid(1000, csprng));
  EXPECT_EQ(ids.size(), 1000U);
}

TEST(UlidTest, SortsByTime) {
  CsprngEntropy entropy;
  std::string previous = make_ulid(1'700'000'000'000, entropy);
  for (std::int64_t ms = 1'700'000'000'001; ms < 1'700'000'002'000; ms += 7) {
    const std::string id = make_ulid(ms, entropy);
    EXPECT_LT(previous.substr(0, 10), id.substr(0, 10));
    EXPECT_LT(previous, id);
    previous = id;
  }
}

TEST(UlidTest, ValidityCheck) {
  EXPECT_TRUE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
  EXPECT_TRUE(is_valid_ulid("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
  EXPECT_FALSE(is_valid_ulid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
  EXPECT_FALSE(is_valid_ulid(""));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FA"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAVV"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAI"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAL"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAO"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAU"));
  EXPECT_FALSE(is_valid_ulid("01arz3ndektsv4rrffq69g5fav"));
  EXPECT_FALSE(is_valid_ulid("01ARZ3NDEKTSV4RRFFQ69G5FA-"));
}

TEST(UlidTest, DecodeAndEncodeRoundTripCanonicalText) {
  CsprngEntropy entropy;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = make_ulid(1'700'000'000'000 + i, entropy);
    const auto bits = decode_ulid(id);
    ASSERT_TRUE(bits.has_value()) << id;
    EXPECT_EQ(encode_ulid(*bits), id);
  }
  const auto max = decode_ulid("7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
  ASSERT_TRUE(max.has_value());
  EXPECT_EQ(max->hi, ~std::uint64_t{0});
  EXPECT_EQ(max->lo, ~std::uint64_t{0});
  const auto zero = decode_ulid("00000000000000000000000000");
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->hi, 0U);
  EXPECT_EQ(zero->lo, 0U);
  EXPECT_EQ(encode_ulid({0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL}),
            encode_ulid(*decode_ulid(encode_ulid({0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL}))));
  // Only the canonical text decodes: lower case or the excluded letters would not come back
  // identical from encode_ulid.
  EXPECT_FALSE(decode_ulid("01arz3ndektsv4rrffq69g5fav").has_value());
  EXPECT_FALSE(decode_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAO").has_value());
  EXPECT_FALSE(decode_ulid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ").has_value());
}

}  // namespace
}  // namespace fairdraw
