// AdminGuard: failed admin authentications per address, lockout window, bounded memory.
#include "fairdraw/app/admin_guard.hpp"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace fairdraw::app {
namespace {

AdminGuardOptions options(std::int64_t max_failures, std::int64_t window_ms, std::size_t max_addresses = 100) {
  return AdminGuardOptions{max_failures, window_ms, max_addresses};
}

TEST(AdminGuardTest, LocksAfterMaxFailuresUntilTheWindowEnds) {
  AdminGuard guard(options(3, 60'000));
  const std::int64_t t0 = 1'000'000;
  EXPECT_FALSE(guard.check("10.0.0.1", t0).locked);
  EXPECT_FALSE(guard.record_failure("10.0.0.1", t0).now_locked);
  EXPECT_FALSE(guard.record_failure("10.0.0.1", t0 + 10).now_locked);
  EXPECT_FALSE(guard.check("10.0.0.1", t0 + 20).locked);
  const auto third = guard.record_failure("10.0.0.1", t0 + 20'000);
  EXPECT_TRUE(third.now_locked);
  EXPECT_EQ(third.failures, 3);
  EXPECT_EQ(third.retry_after_s, 40);

  const auto locked = guard.check("10.0.0.1", t0 + 30'000);
  EXPECT_TRUE(locked.locked);
  EXPECT_EQ(locked.retry_after_s, 30);
  // Another address is not affected.
  EXPECT_FALSE(guard.check("10.0.0.2", t0 + 30'000).locked);
  // Checks while locked do not extend the lockout.
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(guard.check("10.0.0.1", t0 + 59'000).locked);
  EXPECT_EQ(guard.check("10.0.0.1", t0 + 59'001).retry_after_s, 1);
  // The window ends 60 s after the first failure.
  EXPECT_FALSE(guard.check("10.0.0.1", t0 + 60'000).locked);
  EXPECT_EQ(guard.tracked_addresses(), 0u);
  EXPECT_FALSE(guard.record_failure("10.0.0.1", t0 + 60'001).now_locked);
}

TEST(AdminGuardTest, FailuresOutsideTheWindowStartANewCount) {
  AdminGuard guard(options(2, 1'000));
  EXPECT_FALSE(guard.record_failure("a", 0).now_locked);
  EXPECT_FALSE(guard.record_failure("a", 1'000).now_locked);  // window over: count 1 again
  EXPECT_EQ(guard.record_failure("a", 1'500).failures, 2);
  EXPECT_TRUE(guard.check("a", 1'600).locked);
}

TEST(AdminGuardTest, SuccessResetsTheCount) {
  AdminGuard guard(options(2, 60'000));
  EXPECT_FALSE(guard.record_failure("a", 0).now_locked);
  guard.record_success("a");
  EXPECT_EQ(guard.tracked_addresses(), 0u);
  EXPECT_FALSE(guard.record_failure("a", 1).now_locked);
  EXPECT_TRUE(guard.record_failure("a", 2).now_locked);
}

TEST(AdminGuardTest, ClockGoingBackwardsNeverUnlocks) {
  AdminGuard guard(options(1, 10'000));
  EXPECT_TRUE(guard.record_failure("a", 50'000).now_locked);
  EXPECT_TRUE(guard.check("a", 40'000).locked);
  EXPECT_GE(guard.check("a", 40'000).retry_after_s, 1);
}

TEST(AdminGuardTest, MemoryStaysBoundedAndTheLeastRecentIsDropped) {
  AdminGuard guard(options(2, 60'000, 8));
  EXPECT_FALSE(guard.record_failure("attacker", 0).now_locked);
  for (int i = 0; i < 1000; ++i) {
    guard.record_failure("spray-" + std::to_string(i), 1);
    EXPECT_LE(guard.tracked_addresses(), 8u);
    if (i % 4 == 0) guard.record_failure("attacker", 1);  // kept recent: never evicted
    if (i == 0) {
      EXPECT_TRUE(guard.check("attacker", 1).locked);
    }
  }
  EXPECT_EQ(guard.tracked_addresses(), 8u);
  EXPECT_TRUE(guard.check("attacker", 2).locked);
  EXPECT_FALSE(guard.check("spray-0", 2).locked);
}

TEST(AdminGuardTest, ConcurrentFailuresLockExactlyOnce) {
  AdminGuard guard(options(50, 60'000));
  std::atomic<int> locked_reports{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (guard.record_failure("a", 5).now_locked) locked_reports.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(locked_reports.load(), 1);
  EXPECT_TRUE(guard.check("a", 6).locked);
}

TEST(AdminGuardTest, OutOfRangeOptionsAreClamped) {
  AdminGuard guard(options(0, 0, 0));
  EXPECT_EQ(guard.options().max_failures, 1);
  EXPECT_EQ(guard.options().window_ms, 1);
  EXPECT_EQ(guard.options().max_addresses, 1u);
}

}  // namespace
}  // namespace fairdraw::app
