// Activity configuration: validation errors name the bad field; deck identity and lookups.
#include "fairdraw/engine/activity.hpp"

#include <gtest/gtest.h>

namespace fairdraw {
namespace {

ActivityConfig valid_config() {
  ActivityConfig config;
  config.name = "Spring draw";
  config.starts_at_ms = 1'000;
  config.ends_at_ms = 2'000;
  config.time_zone = "Europe/Berlin";
  config.max_draws_per_user = 3;
  config.max_draws_per_user_per_day = 1;
  config.miss_weight = 90;
  config.prizes = {{"gold", "Gold", 1, 1}, {"silver", "Silver", 4, 10}, {"bronze", "Bronze", 5, 100}};
  return config;
}

// The detail of a refused config, or "" when it is accepted.
std::string refusal(const ActivityConfig& config) {
  const Status status = validate_activity(config);
  if (status.ok()) return "";
  EXPECT_EQ(status.error().kind, ErrorKind::invalid_request);
  return status.error().detail;
}

bool starts_with(const std::string& text, std::string_view prefix) { return text.rfind(prefix, 0) == 0; }

TEST(ActivityTest, AcceptsAValidConfig) {
  EXPECT_EQ(refusal(valid_config()), "");
  ActivityConfig minimal;
  minimal.name = "x";
  minimal.miss_weight = 1;
  EXPECT_EQ(refusal(minimal), "");
}

TEST(ActivityTest, DeckSizeSumsWeightsAndMisses) {
  EXPECT_EQ(valid_config().deck_size(), 100U);
  ActivityConfig big;
  big.prizes = {{"a", "A", 4'000'000'000U, 0}, {"b", "B", 4'000'000'000U, 0}};
  big.miss_weight = 4'000'000'000U;
  EXPECT_EQ(big.deck_size(), 12'000'000'000ULL);
}

TEST(ActivityTest, ErrorsNameTheField) {
  struct Case {
    const char* prefix;
    void (*mutate)(ActivityConfig&);
  };
  const Case cases[] = {
      {"name:", [](ActivityConfig& c) { c.name.clear(); }},
      {"name:", [](ActivityConfig& c) { c.name.assign(kMaxNameLength + 1, 'n'); }},
      {"ends_at_ms: must be after starts_at_ms", [](ActivityConfig& c) { c.ends_at_ms = 1'000; }},
      {"ends_at_ms: must be after starts_at_ms", [](ActivityConfig& c) { c.ends_at_ms = 999; }},
      {"time_zone:", [](ActivityConfig& c) { c.time_zone = "Mars/Olympus_Mons"; }},
      {"time_zone:", [](ActivityConfig& c) { c.time_zone = "../etc/passwd"; }},
      {"time_zone:", [](ActivityConfig& c) { c.time_zone = ""; }},
      {"max_draws_per_user: must be >= 1", [](ActivityConfig& c) { c.max_draws_per_user = 0; }},
      {"max_draws_per_user_per_day: must be >= 1", [](ActivityConfig& c) { c.max_draws_per_user_per_day = -2; }},
      {"prizes[1].id:", [](ActivityConfig& c) { c.prizes[1].id = ""; }},
      {"prizes[1].id:", [](ActivityConfig& c) { c.prizes[1].id = "has space"; }},
      {"prizes[1].id:", [](ActivityConfig& c) { c.prizes[1].id.assign(kMaxIdLength + 1, 'a'); }},
      {"prizes[2].id: duplicate prize id \"gold\"", [](ActivityConfig& c) { c.prizes[2].id = "gold"; }},
      {"prizes[0].name:", [](ActivityConfig& c) { c.prizes[0].name.clear(); }},
      {"prizes[2].name:", [](ActivityConfig& c) { c.prizes[2].name.assign(kMaxNameLength + 1, 'n'); }},
      {"prizes[2].weight:", [](ActivityConfig& c) { c.prizes[2].weight = 10'000'001; }},
      {"prizes[1].stock: must be >= 0", [](ActivityConfig& c) { c.prizes[1].stock = -1; }},
      {"miss_weight:", [](ActivityConfig& c) { c.miss_weight = 4'000'000'000U; }},
      {"prizes: deck size (sum of weights + miss_weight) must be between 1 and 10000000",
       [](ActivityConfig& c) {
         c.miss_weight = 0;
         for (auto& p : c.prizes) p.weight = 0;
       }},
      {"prizes: deck size (sum of weights + miss_weight) must be between 1 and 10000000",
       [](ActivityConfig& c) {
         c.miss_weight = 5'000'000;
         c.prizes[0].weight = 5'000'000;
       }},
      {"prizes: at most 1000 prizes",
       [](ActivityConfig& c) {
         c.prizes.clear();
         for (std::size_t i = 0; i <= kMaxPrizes; ++i) c.prizes.push_back({"p" + std::to_string(i), "P", 1, 1});
       }},
  };
  for (const Case& test : cases) {
    ActivityConfig config = valid_config();
    test.mutate(config);
    const std::string detail = refusal(config);
    EXPECT_TRUE(starts_with(detail, test.prefix)) << "expected '" << test.prefix << "', got '" << detail << "'";
  }
}

TEST(ActivityTest, LimitsAreInclusive) {
  ActivityConfig config = valid_config();
  config.name.assign(kMaxNameLength, 'n');
  config.prizes[0].id.assign(kMaxIdLength, 'a');
  config.prizes[0].weight = 0;
  config.prizes[1].stock = 0;
  config.miss_weight = static_cast<std::uint32_t>(kMaxDeckSize) - 9;
  config.max_draws_per_user = 1;
  config.starts_at_ms.reset();
  EXPECT_EQ(refusal(config), "");
  config.prizes.clear();
  for (std::size_t i = 0; i < kMaxPrizes; ++i) config.prizes.push_back({"p" + std::to_string(i), "P", 0, 0});
  EXPECT_EQ(refusal(config), "");
}

TEST(ActivityTest, UtcTimeZonesAlwaysValidate) {
  ActivityConfig config = valid_config();
  for (const char* zone : {"UTC", "Etc/UTC", "Asia/Kolkata"}) {
    config.time_zone = zone;
    EXPECT_EQ(refusal(config), "") << zone;
  }
}

TEST(ActivityTest, SameDeckIgnoresNamesAndStock) {
  const ActivityConfig base = valid_config();
  ActivityConfig other = base;
  other.name = "Renamed";
  other.prizes[0].name = "Golden";
  other.prizes[1].stock = 0;
  other.ends_at_ms = 9'999;
  other.max_draws_per_user = 10;
  EXPECT_TRUE(base.same_deck(other));
  EXPECT_TRUE(other.same_deck(base));
  EXPECT_TRUE(base.same_deck(base));
}

TEST(ActivityTest, SameDeckSeesDeckChanges) {
  const ActivityConfig base = valid_config();
  ActivityConfig weight = base;
  weight.prizes[1].weight += 1;
  ActivityConfig miss = base;
  miss.miss_weight -= 1;
  ActivityConfig order = base;
  std::swap(order.prizes[0], order.prizes[1]);
  ActivityConfig id = base;
  id.prizes[2].id = "copper";
  ActivityConfig extra = base;
  extra.prizes.push_back({"zero", "Zero", 0, 0});
  for (const ActivityConfig* changed : {&weight, &miss, &order, &id, &extra}) {
    EXPECT_FALSE(base.same_deck(*changed));
    EXPECT_FALSE(changed->same_deck(base));
  }
}

TEST(ActivityTest, FindPrize) {
  const ActivityConfig config = valid_config();
  const Prize* silver = config.find_prize("silver");
  ASSERT_NE(silver, nullptr);
  EXPECT_EQ(silver->name, "Silver");
  EXPECT_EQ(silver, &config.prizes[1]);
  EXPECT_EQ(config.find_prize("platinum"), nullptr);
  EXPECT_EQ(config.find_prize(""), nullptr);
}

TEST(ActivityTest, IdCharset) {
  EXPECT_TRUE(is_valid_id("a"));
  EXPECT_TRUE(is_valid_id("Spring-2026_draw.v1~x"));
  EXPECT_TRUE(is_valid_id(std::string(kMaxIdLength, 'z')));
  EXPECT_FALSE(is_valid_id(""));
  EXPECT_FALSE(is_valid_id(std::string(kMaxIdLength + 1, 'z')));
  for (const char* bad : {"a b", "a/b", "a{b}", "a:b", "a\nb", "caf\xc3\xa9", "a%20", "a+b"}) {
    EXPECT_FALSE(is_valid_id(bad)) << bad;
  }
}

}  // namespace
}  // namespace fairdraw
