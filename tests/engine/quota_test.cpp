// Per-user quotas: total and per-day limits, day rollover, give-back, restore, and exact limits under concurrent takes.
#include "fairdraw/engine/quota.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace fairdraw {
namespace {

using Limits = QuotaBook::Limits;

constexpr std::int64_t kDay = 19'700;  // a realistic local day number (2023-12-08)

// Takes `n` draws and returns how many succeeded.
int take_n(QuotaBook& book, const std::string& user, std::int64_t day, const Limits& limits, int n) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += book.take(user, day, limits) ? 1 : 0;
  return ok;
}

TEST(QuotaTest, NoLimitsNeverRefuses) {
  QuotaBook book;
  EXPECT_EQ(take_n(book, "alice", kDay, {}, 1000), 1000);
  EXPECT_EQ(book.total("alice"), 1000);
  EXPECT_EQ(book.on_day("alice", kDay), 1000);
}

TEST(QuotaTest, TotalLimit) {
  QuotaBook book;
  const Limits limits{3, std::nullopt};
  EXPECT_EQ(take_n(book, "alice", kDay, limits, 3), 3);
  EXPECT_FALSE(book.take("alice", kDay, limits)) << "the 4th draw passes a total of 3";
  EXPECT_FALSE(book.take("alice", kDay + 5, limits)) << "the total holds across days";
  EXPECT_EQ(book.total("alice"), 3) << "a refused draw takes nothing";
  EXPECT_EQ(book.on_day("alice", kDay), 3);
  EXPECT_EQ(book.on_day("alice", kDay + 5), 0);
  EXPECT_TRUE(book.take("bob", kDay, limits)) << "users are independent";
  EXPECT_EQ(book.total("bob"), 1);
}

TEST(QuotaTest, TotalLimitOfOne) {
  QuotaBook book;
  const Limits limits{1, std::nullopt};
  EXPECT_TRUE(book.take("alice", kDay, limits));
  EXPECT_FALSE(book.take("alice", kDay, limits));
}

TEST(QuotaTest, PerDayLimit) {
  QuotaBook book;
  const Limits limits{std::nullopt, 2};
  EXPECT_EQ(take_n(book, "alice", kDay, limits, 2), 2);
  EXPECT_FALSE(book.take("alice", kDay, limits)) << "the 3rd draw of the day passes 2 per day";
  EXPECT_EQ(book.on_day("alice", kDay), 2);
  EXPECT_EQ(book.total("alice"), 2) << "a draw refused by the day limit must not count in the total";
}

TEST(QuotaTest, DayRolloverResetsDayButNotTotal) {
  QuotaBook book;
  const Limits limits{5, 2};
  EXPECT_EQ(take_n(book, "alice", kDay, limits, 3), 2);
  EXPECT_EQ(take_n(book, "alice", kDay + 1, limits, 3), 2) << "a new day gets a fresh day count";
  EXPECT_EQ(book.on_day("alice", kDay + 1), 2);
  EXPECT_EQ(book.on_day("alice", kDay), 0) << "only the current day is tracked";
  EXPECT_EQ(book.total("alice"), 4) << "the total carries over the rollover";
  EXPECT_EQ(take_n(book, "alice", kDay + 2, limits, 3), 1) << "then the total limit of 5 stops it";
  EXPECT_EQ(book.total("alice"), 5);
  EXPECT_EQ(book.on_day("alice", kDay + 2), 1);
}

TEST(QuotaTest, GiveBack) {
  QuotaBook book;
  const Limits limits{2, 1};
  ASSERT_TRUE(book.take("alice", kDay, limits));
  EXPECT_FALSE(book.take("alice", kDay, limits));
  book.give_back("alice", kDay);
  EXPECT_EQ(book.total("alice"), 0);
  EXPECT_EQ(book.on_day("alice", kDay), 0);
  EXPECT_TRUE(book.take("alice", kDay, limits)) << "a given-back draw can be taken again";
  EXPECT_EQ(book.total("alice"), 1);
  EXPECT_EQ(book.on_day("alice", kDay), 1);
}

TEST(QuotaTest, GiveBackForAnOlderDayLeavesTodayAlone) {
  QuotaBook book;
  const Limits limits{10, 1};
  ASSERT_TRUE(book.take("alice", kDay, limits));
  ASSERT_TRUE(book.take("alice", kDay + 1, limits));
  book.give_back("alice", kDay);  // the draw taken yesterday was refused late
  EXPECT_EQ(book.total("alice"), 1);
  EXPECT_EQ(book.on_day("alice", kDay + 1), 1) << "today's count is not yesterday's to give back";
  EXPECT_FALSE(book.take("alice", kDay + 1, limits));
}

TEST(QuotaTest, RestoreTotalAndDay) {
  QuotaBook book;
  const Limits limits{10, 3};
  book.restore_total("alice", 9);
  book.restore_day("alice", kDay, 2);
  EXPECT_EQ(book.total("alice"), 9);
  EXPECT_EQ(book.on_day("alice", kDay), 2);
  EXPECT_EQ(book.on_day("alice", kDay - 1), 0);
  EXPECT_TRUE(book.take("alice", kDay, limits));
  EXPECT_FALSE(book.take("alice", kDay, limits)) << "restored total 9 + 1 reaches 10";
  EXPECT_EQ(book.on_day("alice", kDay), 3);

  book.restore_total("bob", 0);
  book.restore_day("bob", kDay, 3);
  EXPECT_FALSE(book.take("bob", kDay, limits)) << "restored day count 3 is the day limit";
  EXPECT_TRUE(book.take("bob", kDay + 1, limits)) << "the restored day does not bind the next one";
  EXPECT_EQ(book.total("bob"), 1);
}

TEST(QuotaTest, RestoreOverwrites) {
  QuotaBook book;
  ASSERT_EQ(take_n(book, "alice", kDay, {}, 5), 5);
  book.restore_total("alice", 2);
  book.restore_day("alice", kDay, 1);
  EXPECT_EQ(book.total("alice"), 2);
  EXPECT_EQ(book.on_day("alice", kDay), 1);
}

TEST(QuotaTest, ReadsDoNotCreateUsers) {
  QuotaBook book;
  EXPECT_EQ(book.users(), 0U);
  EXPECT_EQ(book.total("ghost"), 0);
  EXPECT_EQ(book.on_day("ghost", kDay), 0);
  EXPECT_EQ(book.users(), 0U);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(book.take("user" + std::to_string(i), kDay, {}));
  EXPECT_EQ(book.users(), 200U);
  ASSERT_TRUE(book.take("user0", kDay, {}));
  EXPECT_EQ(book.users(), 200U);
}

// 8 threads x 1000 takes on one user: exactly the limit succeeds.
struct RaceCase {
  std::string what;
  Limits limits;
  int expected;
};

TEST(QuotaTest, ConcurrentTakesNeverPassTheLimit) {
  constexpr int kThreads = 8;
  constexpr int kTakesPerThread = 1000;
  const std::vector<RaceCase> cases = {
      {"total 500", {500, std::nullopt}, 500},
      {"per day 300", {std::nullopt, 300}, 300},
      {"total 500, per day 300", {500, 300}, 300},
      {"total 300, per day 500", {300, 500}, 300},
      {"no limit", {}, kThreads * kTakesPerThread},
  };
  for (const RaceCase& c : cases) {
    SCOPED_TRACE(c.what);
    QuotaBook book;
    std::atomic<int> succeeded{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        int mine = 0;
        for (int i = 0; i < kTakesPerThread; ++i) mine += book.take("alice", kDay, c.limits) ? 1 : 0;
        succeeded.fetch_add(mine);
      });
    }
    go.store(true);
    for (auto& t : threads) t.join();
    EXPECT_EQ(succeeded.load(), c.expected);
    EXPECT_EQ(book.total("alice"), c.expected) << "refused takes must leave the total untouched";
    EXPECT_EQ(book.on_day("alice", kDay), c.expected);
  }
}

TEST(QuotaTest, ConcurrentTakesAndGiveBacksBalance) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 1000;
  QuotaBook book;
  const Limits limits{4, 4};
  std::atomic<int> held{0};
  std::atomic<int> max_held{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        if (!book.take("alice", kDay, limits)) continue;
        const int now = held.fetch_add(1) + 1;
        int seen = max_held.load();
        while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
        }
        held.fetch_sub(1);
        book.give_back("alice", kDay);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(max_held.load(), 4) << "never more than the limit held at once";
  EXPECT_EQ(book.total("alice"), 0);
  EXPECT_EQ(book.on_day("alice", kDay), 0);
}

TEST(QuotaTest, ConcurrentUsersAreIndependent) {
  constexpr int kThreads = 8;
  constexpr int kUsers = 100;
  QuotaBook book;
  const Limits limits{3, std::nullopt};
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int u = 0; u < kUsers; ++u) {
        succeeded.fetch_add(book.take("user" + std::to_string(u), kDay, limits) ? 1 : 0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(succeeded.load(), kUsers * 3);
  EXPECT_EQ(book.users(), static_cast<std::size_t>(kUsers));
  for (int u = 0; u < kUsers; ++u) EXPECT_EQ(book.total("user" + std::to_string(u)), 3) << u;
}

}  // namespace
}  // namespace fairdraw
