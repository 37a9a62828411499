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

TEST(QuotaTest, RestoreAddsTotalAndDay) {
  QuotaBook book;
  const Limits limits{10, 3};
  // Recovery hands a user's draws over in parts: they add up.
  book.restore_add("alice", 6, kDay, 0);
  book.restore_add("alice", 3, kDay, 2);
  EXPECT_EQ(book.total("alice"), 9);
  EXPECT_EQ(book.on_day("alice", kDay), 2);
  EXPECT_EQ(book.on_day("alice", kDay - 1), 0);
  EXPECT_TRUE(book.take("alice", kDay, limits));
  EXPECT_FALSE(book.take("alice", kDay, limits)) << "restored total 9 + 1 reaches 10";
  EXPECT_EQ(book.on_day("alice", kDay), 3);

  book.restore_add("bob", 1, kDay, 1);
  book.restore_add("bob", 2, kDay, 2);
  EXPECT_FALSE(book.take("bob", kDay, limits)) << "restored day count 3 is the day limit";
  EXPECT_TRUE(book.take("bob", kDay + 1, limits)) << "the restored day does not bind the next one";
  EXPECT_EQ(book.total("bob"), 4);
}

TEST(QuotaTest, RestoreAddsFromSeveralThreads) {
  QuotaBook book;
  constexpr int kThreads = 4;
  constexpr int kUsers = 20'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int u = 0; u < kUsers; ++u) book.restore_add("user-" + std::to_string(u), 2, kDay, 1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(book.users(), static_cast<std::size_t>(kUsers));
  for (int u = 0; u < kUsers; u += 37) {
    EXPECT_EQ(book.total("user-" + std::to_string(u)), 2 * kThreads);
    EXPECT_EQ(book.on_day("user-" + std::to_string(u), kDay), kThreads);
  }
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

// Ids up to 15 bytes live in the record, longer ones in the shard's arena: around that
// boundary, and for ids that share prefixes, every user keeps a counter of its own.
TEST(QuotaTest, IdsOfAnyLengthAreDistinct) {
  QuotaBook book;
  std::vector<std::string> ids;
  for (std::size_t n = 0; n <= 70; ++n) ids.push_back(std::string(n, 'a'));
  for (std::size_t n = 14; n <= 17; ++n) ids.push_back(std::string(n - 1, 'a') + "b");
  ids.push_back(std::string(100'000, 'z'));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(take_n(book, ids[i], kDay, {}, static_cast<int>(i + 1)), static_cast<int>(i + 1));
  }
  EXPECT_EQ(book.users(), ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(book.total(ids[i]), static_cast<std::int64_t>(i + 1)) << ids[i].size();
  }
}

// Every id hashes alike (one shard, one probe run, the same tag): ids are told apart by
// their bytes, and counters survive the table's growth.
std::uint64_t same_hash(std::string_view) { return 0xfedcba9876543210ULL; }

TEST(QuotaTest, CollidingHashesKeepUsersApart) {
  QuotaBook book(same_hash);
  const Limits limits{3, std::nullopt};
  constexpr int kUsers = 2'000;
  for (int u = 0; u < kUsers; ++u) {
    const std::string id = u % 2 ? "user-" + std::to_string(u) : "a-long-user-id-" + std::to_string(u);
    ASSERT_TRUE(book.take(id, kDay, limits)) << id;
  }
  EXPECT_EQ(book.users(), static_cast<std::size_t>(kUsers));
  for (int u = 0; u < kUsers; ++u) {
    const std::string id = u % 2 ? "user-" + std::to_string(u) : "a-long-user-id-" + std::to_string(u);
    EXPECT_EQ(book.total(id), 1) << id;
  }
  EXPECT_EQ(book.total("user-0"), 0);
}

TEST(QuotaTest, ReserveThenRestore) {
  QuotaBook book;
  constexpr int kUsers = 50'000;
  book.reserve(kUsers);
  for (int u = 0; u < kUsers; ++u) book.restore_add("user-" + std::to_string(u), u % 7, kDay, u % 3);
  EXPECT_EQ(book.users(), static_cast<std::size_t>(kUsers));
  for (int u = 0; u < kUsers; u += 97) {
    EXPECT_EQ(book.total("user-" + std::to_string(u)), u % 7);
    EXPECT_EQ(book.on_day("user-" + std::to_string(u), kDay), u % 3);
  }
}

// A counter being CASed while other threads add users (so the shards' tables grow and
// their chunks are added) never moves: the limit still holds exactly.
TEST(QuotaTest, ConcurrentTakesWhileTheBookGrows) {
  constexpr int kTakers = 4;
  constexpr int kInserters = 4;
  constexpr int kTakesPerThread = 2'000;
  constexpr int kUsersPerInserter = 20'000;
  QuotaBook book;
  const Limits limits{1'000, std::nullopt};
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kTakers; ++t) {
    threads.emplace_back([&] {
      int mine = 0;
      for (int i = 0; i < kTakesPerThread; ++i) mine += book.take("alice", kDay, limits) ? 1 : 0;
      succeeded.fetch_add(mine);
    });
  }
  for (int t = 0; t < kInserters; ++t) {
    threads.emplace_back([&, t] {
      for (int u = 0; u < kUsersPerInserter; ++u) {
        book.take("u" + std::to_string(t) + "-" + std::to_string(u), kDay, {});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(succeeded.load(), 1'000);
  EXPECT_EQ(book.total("alice"), 1'000);
  EXPECT_EQ(book.users(), static_cast<std::size_t>(1 + kInserters * kUsersPerInserter));
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
