// Time zones: TZif offsets, footer rules past the last transition, local days across DST, bad names.
#include "fairdraw/engine/time_zone.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fairdraw {
namespace {

constexpr std::int64_t kHour = 3600;

TimeZone must_load(std::string_view name, std::string_view dir = "/usr/share/zoneinfo") {
  auto zone = TimeZone::load(name, dir);
  EXPECT_TRUE(zone.ok()) << name << ": " << (zone.ok() ? "" : zone.error().detail);
  return zone.ok() ? std::move(zone).value() : TimeZone::utc();
}

TEST(TimeZoneTest, BerlinWinterAndSummer2026) {
  const TimeZone berlin = must_load("Europe/Berlin");
  EXPECT_EQ(berlin.name(), "Europe/Berlin");
  EXPECT_EQ(berlin.utc_offset_s(1'768'478'400), 3600);  // 2026-01-15T12:00Z
  EXPECT_EQ(berlin.utc_offset_s(1'784'116'800), 7200);  // 2026-07-15T12:00Z
}

TEST(TimeZoneTest, NewYorkAndKolkata) {
  const TimeZone new_york = must_load("America/New_York");
  EXPECT_EQ(new_york.utc_offset_s(1'768'478'400), -5 * kHour);
  EXPECT_EQ(new_york.utc_offset_s(1'784'116'800), -4 * kHour);
  // DST 2026: starts 2026-03-08T07:00Z, ends 2026-11-01T06:00Z.
  EXPECT_EQ(new_york.utc_offset_s(1'772'953'200 - 1), -5 * kHour);
  EXPECT_EQ(new_york.utc_offset_s(1'772'953'200), -4 * kHour);
  EXPECT_EQ(new_york.utc_offset_s(1'793'512'800 - 1), -4 * kHour);
  EXPECT_EQ(new_york.utc_offset_s(1'793'512'800), -5 * kHour);
  const TimeZone kolkata = must_load("Asia/Kolkata");
  EXPECT_EQ(kolkata.utc_offset_s(1'784'116'800), 19'800);
  EXPECT_EQ(kolkata.utc_offset_s(1'768'478'400), 19'800);
}

TEST(TimeZoneTest, FarFutureUsesTheFooterRule) {
  const TimeZone berlin = must_load("Europe/Berlin");
  EXPECT_EQ(berlin.utc_offset_s(4'119'336'000), 7200);  // 2100-07-15T12:00Z
  EXPECT_EQ(berlin.utc_offset_s(4'103'697'600), 3600);  // 2100-01-15T12:00Z
  const TimeZone new_york = must_load("America/New_York");
  EXPECT_EQ(new_york.utc_offset_s(4'118'342'400), -4 * kHour);  // 2100-07-04T00:00Z
  // Southern hemisphere: DST spans the new year.
  const TimeZone sydney = must_load("Australia/Sydney");
  EXPECT_EQ(sydney.utc_offset_s(4'103'654'400), 11 * kHour);  // 2100-01-15T00:00Z
  EXPECT_EQ(sydney.utc_offset_s(4'119'292'800), 10 * kHour);  // 2100-07-15T00:00Z
}

TEST(TimeZoneTest, UtcNeedsNoFiles) {
  for (std::string_view name : {"UTC", "Etc/UTC"}) {
    const TimeZone zone = must_load(name, "/nonexistent-zoneinfo");
    EXPECT_EQ(zone.name(), name);
    EXPECT_EQ(zone.utc_offset_s(1'784'116'800), 0);
    EXPECT_EQ(zone.local_day(0), 0);
    EXPECT_EQ(zone.local_day(-1), -1);
    EXPECT_EQ(zone.local_day(86'399'999), 0);
    EXPECT_EQ(zone.local_day(86'400'000), 1);
    EXPECT_EQ(zone.day_start_ms(20'541), 20'541LL * 86'400'000);
    EXPECT_EQ(zone.day_start_ms(-3), -3LL * 86'400'000);
  }
  EXPECT_EQ(TimeZone::utc().name(), "UTC");
}

TEST(TimeZoneTest, LocalDayAndDayStartAcrossSpringForward) {
  const TimeZone berlin = must_load("Europe/Berlin");
  constexpr std::int64_t kDay = 20'541;                 // 2026-03-29, 23 hours long
  constexpr std::int64_t kStart = 1'774'738'800'000;    // 2026-03-28T23:00Z
  constexpr std::int64_t kNext = 1'774'821'600'000;     // 2026-03-29T22:00Z
  EXPECT_EQ(berlin.day_start_ms(kDay), kStart);
  EXPECT_EQ(berlin.day_start_ms(kDay + 1), kNext);
  EXPECT_EQ(berlin.local_day(kStart), kDay);
  EXPECT_EQ(berlin.local_day(kStart - 1), kDay - 1);
  EXPECT_EQ(berlin.local_day(kNext - 1), kDay);
  EXPECT_EQ(berlin.local_day(kNext), kDay + 1);
  EXPECT_EQ(berlin.local_day(1'774'746'000'000), kDay);  // the transition itself, 01:00Z
}

TEST(TimeZoneTest, LocalDayAndDayStartAcrossFallBack) {
  const TimeZone berlin = must_load("Europe/Berlin");
  constexpr std::int64_t kDay = 20'751;                 // 2026-10-25, 25 hours long
  constexpr std::int64_t kStart = 1'792'879'200'000;    // 2026-10-24T22:00Z
  constexpr std::int64_t kNext = 1'792'969'200'000;     // 2026-10-25T23:00Z
  EXPECT_EQ(berlin.day_start_ms(kDay), kStart);
  EXPECT_EQ(berlin.day_start_ms(kDay + 1), kNext);
  EXPECT_EQ(berlin.local_day(kStart - 1), kDay - 1);
  EXPECT_EQ(berlin.local_day(kStart), kDay);
  EXPECT_EQ(berlin.local_day(kNext - 1), kDay);
  EXPECT_EQ(berlin.local_day(kNext), kDay + 1);
}

TEST(TimeZoneTest, DayStartingInsideAGapBeginsAtTheTransition) {
  // Chile springs forward at local midnight: 2026-09-06 00:00 (-04) does not exist.
  const TimeZone santiago = must_load("America/Santiago");
  constexpr std::int64_t kDay = 20'702;
  constexpr std::int64_t kTransition = 1'788'667'200'000;  // 2026-09-06T04:00Z
  EXPECT_EQ(santiago.day_start_ms(kDay), kTransition);
  EXPECT_EQ(santiago.local_day(kTransition), kDay);
  EXPECT_EQ(santiago.local_day(kTransition - 1), kDay - 1);
}

TEST(TimeZoneTest, DayStartIsConsistentWithLocalDay) {
  for (std::string_view name : {"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
                                "America/Santiago", "Pacific/Chatham", "America/St_Johns"}) {
    const TimeZone zone = must_load(name);
    for (std::int64_t day = 20'400; day < 20'400 + 800; ++day) {
      const std::int64_t start = zone.day_start_ms(day);
      ASSERT_EQ(zone.local_day(start), day) << name << " day " << day;
      ASSERT_EQ(zone.local_day(start - 1), day - 1) << name << " day " << day;
    }
    for (std::int64_t day = 47'480; day < 47'480 + 400; day += 3) {  // around 2100, footer rules
      const std::int64_t start = zone.day_start_ms(day);
      ASSERT_EQ(zone.local_day(start), day) << name << " day " << day;
      ASSERT_EQ(zone.local_day(start - 1), day - 1) << name << " day " << day;
    }
  }
}

TEST(TimeZoneTest, LocalDayFloorsNegativeInstants) {
  const TimeZone new_york = must_load("America/New_York");
  EXPECT_EQ(new_york.local_day(0), -1);                  // 1969-12-31T19:00 local
  EXPECT_EQ(new_york.local_day(5 * kHour * 1000), 0);
  EXPECT_EQ(new_york.local_day(5 * kHour * 1000 - 1), -1);
  EXPECT_EQ(new_york.day_start_ms(0), 5 * kHour * 1000);
}

TEST(TimeZoneTest, RefusesBadNames) {
  const std::string long_name(129, 'a');
  for (std::string_view bad : {std::string_view("../etc/passwd"), std::string_view("/etc/localtime"),
                               std::string_view("Europe/../../etc/passwd"), std::string_view(""),
                               std::string_view("Europe/Berlin\n"), std::string_view(long_name)}) {
    auto zone = TimeZone::load(bad);
    ASSERT_FALSE(zone.ok()) << bad;
    EXPECT_EQ(zone.error().kind, ErrorKind::invalid_request);
    EXPECT_EQ(zone.error().detail.rfind("time_zone: ", 0), 0U) << zone.error().detail;
  }
  for (std::string_view unknown : {"Mars/Olympus_Mons", "Europe", "zone.tab", "Europe/Berlin/x"}) {
    auto zone = TimeZone::load(unknown);
    ASSERT_FALSE(zone.ok()) << unknown;
    EXPECT_EQ(zone.error().kind, ErrorKind::invalid_request);
    EXPECT_NE(zone.error().detail.find(std::string(unknown)), std::string::npos) << zone.error().detail;
  }
}

// A minimal TZif v2 file with no transitions: the footer alone decides every offset.
class FooterOnlyZone : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "fairdraw-tz-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TimeZone zone_with_footer(const std::string& footer, std::int32_t type0_offset) {
    std::string block;
    auto be32 = [&block](std::uint32_t v) {
      for (int shift = 24; shift >= 0; shift -= 8) block.push_back(static_cast<char>((v >> shift) & 0xFF));
    };
    auto header = [&] {
      block += "TZif2";
      block.append(15, '\0');
      for (std::uint32_t count : {0U, 0U, 0U, 0U, 1U, 4U}) be32(count);  // one type, 4 chars
      be32(static_cast<std::uint32_t>(type0_offset));
      block.push_back('\0');  // isdst
      block.push_back('\0');  // desigidx
      block.append("ABC", 4);
    };
    header();
    header();
    block += "\n" + footer + "\n";
    const std::string name = "Test/Zone" + std::to_string(counter_++);
    std::filesystem::create_directories(std::filesystem::path(dir_) / "Test");
    std::ofstream(std::filesystem::path(dir_) / name, std::ios::binary) << block;
    return must_load(name, dir_);
  }

  std::string dir_;
  int counter_ = 0;
};

TEST_F(FooterOnlyZone, FixedOffsetFooter) {
  const TimeZone zone = zone_with_footer("<+08>-8", 0);
  EXPECT_EQ(zone.utc_offset_s(0), 8 * kHour);
  EXPECT_EQ(zone.utc_offset_s(4'119'336'000), 8 * kHour);
  EXPECT_EQ(zone.day_start_ms(1), 16 * kHour * 1000);
}

TEST_F(FooterOnlyZone, JulianNoLeapDates) {
  // J60 is March 1 even in leap years; J300 is October 27. Times default to 02:00 local.
  const TimeZone zone = zone_with_footer("XXX3YYY,J60,J300", 0);
  const std::int64_t march1_2024 = 1'709'251'200;  // 2024-03-01T00:00Z
  EXPECT_EQ(zone.utc_offset_s(march1_2024 + 5 * kHour - 1), -3 * kHour);
  EXPECT_EQ(zone.utc_offset_s(march1_2024 + 5 * kHour), -2 * kHour);
  const std::int64_t oct27_2024 = 1'729'987'200;  // 2024-10-27T00:00Z
  EXPECT_EQ(zone.utc_offset_s(oct27_2024 + 4 * kHour - 1), -2 * kHour);
  EXPECT_EQ(zone.utc_offset_s(oct27_2024 + 4 * kHour), -3 * kHour);
}

TEST_F(FooterOnlyZone, ZeroBasedDates) {
  // Day 59 counts February 29: it is 2024-02-29 but 2023-03-01.
  const TimeZone zone = zone_with_footer("XXX3YYY,59/0,299/0", 0);
  const std::int64_t feb29_2024 = 1'709'164'800;  // 2024-02-29T00:00Z
  EXPECT_EQ(zone.utc_offset_s(feb29_2024 + 3 * kHour - 1), -3 * kHour);
  EXPECT_EQ(zone.utc_offset_s(feb29_2024 + 3 * kHour), -2 * kHour);
  const std::int64_t mar1_2023 = 1'677'628'800;  // 2023-03-01T00:00Z
  EXPECT_EQ(zone.utc_offset_s(mar1_2023 + 3 * kHour - 1), -3 * kHour);
  EXPECT_EQ(zone.utc_offset_s(mar1_2023 + 3 * kHour), -2 * kHour);
}

TEST_F(FooterOnlyZone, ExplicitDstOffsetAndNegativeTime) {
  // DST two hours ahead; the end time -1 means 23:00 on the previous day.
  const TimeZone zone = zone_with_footer("<+01>-1<+03>-3,M3.5.0/1,M10.5.0/-1", 0);
  const std::int64_t oct31_2100 = 4'128'624'000;  // 2100-10-31T00:00Z, the last Sunday
  EXPECT_EQ(zone.utc_offset_s(oct31_2100 - 4 * kHour - 1), 3 * kHour);
  EXPECT_EQ(zone.utc_offset_s(oct31_2100 - 4 * kHour), 1 * kHour);
}

TEST_F(FooterOnlyZone, DstWithoutRuleFallsBackToTheLastOffset) {
  const TimeZone zone = zone_with_footer("EST5EDT", -5 * kHour);
  EXPECT_EQ(zone.utc_offset_s(4'119'336'000), -5 * kHour);
}

TEST_F(FooterOnlyZone, RejectsTruncatedFiles) {
  std::filesystem::create_directories(std::filesystem::path(dir_) / "Bad");
  std::ofstream(std::filesystem::path(dir_) / "Bad/Short", std::ios::binary) << "TZif2";
  std::ofstream(std::filesystem::path(dir_) / "Bad/Empty", std::ios::binary) << "";
  EXPECT_FALSE(TimeZone::load("Bad/Short", dir_).ok());
  EXPECT_FALSE(TimeZone::load("Bad/Empty", dir_).ok());
}

}  // namespace
}  // namespace fairdraw
