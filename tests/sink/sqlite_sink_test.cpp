// Tests of SqliteSink: schema migrations, group commit, the contiguous-prefix
// rule, reads and pagination, durability across flush, restart and kill -9.
#include "fairdraw/sink/sqlite_sink.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "fairdraw/sink/migrations.hpp"
#include "support/gathered_totals.hpp"
#include "support/temp_dir.hpp"

namespace fairdraw {
namespace {

using namespace std::chrono_literals;

using test::TempDir;

// Counts acks; every wait is bounded.
class Acks {
 public:
  Sink::Ack ack() {
    return [this](bool durable) {
      std::lock_guard lock(mutex_);
      ++(durable ? durable_ : refused_);
      cv_.notify_all();
    };
  }
  bool wait_total(int n, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return durable_ + refused_ >= n; });
  }
  int durable() {
    std::lock_guard lock(mutex_);
    return durable_;
  }
  int refused() {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int durable_ = 0;
  int refused_ = 0;
};

DrawRecord make_draw(const std::string& activity, std::int64_t seq, const std::string& user = "u1",
                     std::int64_t drawn_at_ms = -1) {
  DrawRecord r;
  char id[64];
  std::snprintf(id, sizeof id, "%s-%08lld", activity.c_str(), static_cast<long long>(seq));
  r.draw_id = id;
  r.activity_id = activity;
  r.seq = seq;
  r.epoch = seq / 100;
  r.slot = seq % 100;
  r.user_id = user;
  r.idempotency_key = "key-" + activity + "-" + std::to_string(seq);
  r.drawn_at_ms = drawn_at_ms >= 0 ? drawn_at_ms : 1'700'000'000'000 + seq;
  return r;
}

DrawRecord make_win(const std::string& activity, std::int64_t seq, const std::string& prize) {
  DrawRecord r = make_draw(activity, seq);
  r.candidate_id = prize;
  r.prize_id = prize;
  r.prize_name = "Prize " + prize;
  r.won = true;
  return r;
}

std::unique_ptr<SqliteSink> open_sink(const std::string& path, SqliteSinkOptions options = {}) {
  options.path = path;
  auto opened = SqliteSink::open(std::move(options));
  EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().detail);
  return opened.ok() ? std::move(opened.value()) : nullptr;
}

// Runs one statement on a separate raw connection; returns the first column of
// the first row as an integer (or -1).
std::int64_t query_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::int64_t value = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

bool exec_raw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
  if (ok) {
    sqlite3_busy_timeout(db, 5000);
    ok = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  sqlite3_close(db);
  return ok;
}

bool found(SqliteSink& sink, const std::string& draw_id) {
  auto r = sink.find_draw(draw_id);
  EXPECT_TRUE(r.ok());
  return r.ok() && r.value().has_value();
}

// Appends seqs [from, to) of one activity in order and waits for their acks.
void append_and_wait(SqliteSink& sink, const std::string& activity, std::int64_t from,
                     std::int64_t to) {
  Acks acks;
  for (std::int64_t s = from; s < to; ++s) sink.append(make_draw(activity, s), acks.ack());
  ASSERT_TRUE(acks.wait_total(static_cast<int>(to - from)));
  ASSERT_EQ(acks.durable(), to - from);
}

using test::load_totals;
using test::UserCounts;

// ---------------------------------------------------------------------------

TEST(SqliteSink, MigrationsAreAppliedOnce) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.file("fd.db");
  ASSERT_FALSE(sqlite_migrations().empty());
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
  }
  {
    auto first = open_sink(path);
    auto second = open_sink(path);  // two at once: the second finds nothing to do
    ASSERT_TRUE(first && second);
  }
  const auto count = static_cast<std::int64_t>(sqlite_migrations().size());
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM schema_migrations"), count);
  EXPECT_EQ(query_int(path, "SELECT MAX(version) FROM schema_migrations"),
            sqlite_migrations().back().version);
  EXPECT_EQ(query_int(path,
                      "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                      " ('draws', 'activities', 'epochs')"),
            3);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(SqliteSink, RefusesASchemaNewerThanTheBuild) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
  }
  ASSERT_TRUE(exec_raw(path, "INSERT INTO schema_migrations VALUES (9999, '9999_future', 0)"));
  SqliteSinkOptions options;
  options.path = path;
  auto opened = SqliteSink::open(options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::unavailable);
  EXPECT_NE(opened.error().detail.find(path), std::string::npos) << opened.error().detail;
}

TEST(SqliteSink, OpenErrorNamesThePath) {
  SqliteSinkOptions options;
  options.path = "/nonexistent-fairdraw-dir/sub/fd.db";
  auto opened = SqliteSink::open(options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::unavailable);
  EXPECT_NE(opened.error().detail.find(options.path), std::string::npos) << opened.error().detail;
}

TEST(SqliteSink, AckedDrawIsReadable) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  Acks acks;
  DrawRecord miss = make_draw("a", 0);
  DrawRecord win = make_win("a", 1, "p1");
  win.user_id = "";  // empty strings stay strings, not NULL
  sink->append(miss, acks.ack());
  sink->append(win, acks.ack());
  ASSERT_TRUE(acks.wait_total(2));
  EXPECT_EQ(acks.durable(), 2);
  EXPECT_TRUE(sink->healthy());

  auto got = sink->find_draw(win.draw_id);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got.value().has_value());
  const DrawRecord& r = *got.value();
  EXPECT_EQ(r.draw_id, win.draw_id);
  EXPECT_EQ(r.activity_id, "a");
  EXPECT_EQ(r.seq, 1);
  EXPECT_EQ(r.epoch, win.epoch);
  EXPECT_EQ(r.slot, win.slot);
  EXPECT_EQ(r.user_id, "");
  EXPECT_EQ(r.idempotency_key, win.idempotency_key);
  EXPECT_EQ(r.candidate_id, std::optional<std::string>("p1"));
  EXPECT_EQ(r.prize_id, std::optional<std::string>("p1"));
  EXPECT_EQ(r.prize_name, std::optional<std::string>("Prize p1"));
  EXPECT_TRUE(r.won);
  EXPECT_EQ(r.drawn_at_ms, win.drawn_at_ms);

  auto m = sink->find_draw(miss.draw_id);
  ASSERT_TRUE(m.ok() && m.value().has_value());
  EXPECT_FALSE(m.value()->candidate_id.has_value());
  EXPECT_FALSE(m.value()->prize_id.has_value());
  EXPECT_FALSE(m.value()->prize_name.has_value());
  EXPECT_FALSE(m.value()->won);

  auto none = sink->find_draw("no-such-draw");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());

  const SinkStats s = sink->stats();
  EXPECT_EQ(s.committed_rows, 2u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_EQ(s.failed_batches, 0u);
  EXPECT_GT(s.last_commit_seconds, 0.0);
}

TEST(SqliteSink, GroupCommitBatchesConcurrentAppends) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  Acks acks;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string activity = "act" + std::to_string(t);
      for (int s = 0; s < kPerThread; ++s) sink->append(make_draw(activity, s), acks.ack());
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(acks.wait_total(kThreads * kPerThread));
  EXPECT_EQ(acks.durable(), kThreads * kPerThread);
  const SinkStats s = sink->stats();
  EXPECT_EQ(s.committed_rows, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_LT(s.committed_batches, s.committed_rows);
  EXPECT_EQ(s.queue_depth, 0u);
  for (int t = 0; t < kThreads; ++t) {
    auto totals = load_totals(*sink, "act" + std::to_string(t));
    ASSERT_TRUE(totals.ok());
    EXPECT_EQ(totals->next_seq, kPerThread);
  }
}

// The WAL goes back into the file on the checkpointer's thread while the
// writer keeps committing (WalCheckpointer's own tests cover the details).
TEST(SqliteSink, WalIsCheckpointedBesideTheWriter) {
  TempDir dir;
  SqliteSinkOptions options;
  options.synchronous = SqliteSinkOptions::Synchronous::normal;
  options.checkpoint.start_pages = 40;
  options.checkpoint.finish_pages = 10;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  // One commit per ten rows: a few WAL pages each.
  std::int64_t from = 0;
  for (; from < 4000 && sink->stats().checkpoints_background == 0; from += 10) {
    append_and_wait(*sink, "act", from, from + 10);
  }
  // The pass runs on the checkpointer's thread, which a loaded machine may not
  // have scheduled yet when the commits end: give it time, not more commits.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sink->stats().checkpoints_background == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const SinkStats s = sink->stats();
  EXPECT_GT(s.checkpoints_background, 0u) << from << " rows committed";
  EXPECT_GT(s.wal_pages, 0);
  auto totals = load_totals(*sink, "act");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(static_cast<std::uint64_t>(totals->next_seq), s.committed_rows);
}

// Like the engine: threads take seqs from one shared counter and append in
// whatever order they get there; the file still holds exactly 0..n-1.
TEST(SqliteSink, RacingSeqsOfOneActivityCommitContiguously) {
  TempDir dir;
  SqliteSinkOptions options;
  options.batch_max = 64;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  constexpr int kThreads = 4;
  constexpr int kTotal = 4000;
  std::atomic<std::int64_t> next{0};
  Acks acks;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        const std::int64_t seq = next.fetch_add(1);
        if (seq >= kTotal) return;
        sink->append(make_draw("shared", seq), acks.ack());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(acks.wait_total(kTotal));
  EXPECT_EQ(acks.durable(), kTotal);
  auto page = sink->activity_draws("shared", -1, kTotal + 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), static_cast<std::size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(page->items[static_cast<std::size_t>(i)].seq, i);
  EXPECT_TRUE(sink->healthy());
}

TEST(SqliteSink, HeldBackSeqBlocksLaterOnesUntilItArrives) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  Acks acks;
  sink->append(make_draw("a", 1), acks.ack());
  sink->append(make_draw("a", 2), acks.ack());
  sink->append(make_draw("b", 0), acks.ack());  // another activity is not held back
  ASSERT_TRUE(acks.wait_total(1));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(acks.durable(), 1);
  EXPECT_EQ(acks.refused(), 0);
  EXPECT_TRUE(found(*sink, make_draw("b", 0).draw_id));
  EXPECT_FALSE(found(*sink, make_draw("a", 1).draw_id));
  EXPECT_FALSE(found(*sink, make_draw("a", 2).draw_id));
  EXPECT_EQ(sink->stats().queue_depth, 2u);

  sink->append(make_draw("a", 0), acks.ack());
  ASSERT_TRUE(acks.wait_total(4));
  EXPECT_EQ(acks.durable(), 4);
  for (int s = 0; s < 3; ++s) EXPECT_TRUE(found(*sink, make_draw("a", s).draw_id)) << s;
  EXPECT_EQ(sink->stats().queue_depth, 0u);
}

TEST(SqliteSink, AuditTrailPagesInSeqOrder) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 25);
  append_and_wait(*sink, "other", 0, 3);

  std::vector<std::int64_t> seen;
  std::int64_t after = -1;
  std::vector<std::optional<std::string>> nexts;
  for (int guard = 0; guard < 10; ++guard) {
    auto page = sink->activity_draws("a", after, 10);
    ASSERT_TRUE(page.ok());
    for (const auto& r : page->items) {
      EXPECT_EQ(r.activity_id, "a");
      seen.push_back(r.seq);
    }
    nexts.push_back(page->next);
    if (!page->next) break;
    after = std::stoll(*page->next);
  }
  ASSERT_EQ(nexts.size(), 3u);
  EXPECT_EQ(nexts[0], std::optional<std::string>("9"));
  EXPECT_EQ(nexts[1], std::optional<std::string>("19"));
  EXPECT_EQ(nexts[2], std::nullopt);
  ASSERT_EQ(seen.size(), 25u);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<std::int64_t>(i));

  auto exact = sink->activity_draws("a", 14, 10);  // exactly the last 10 rows: no next page
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->items.size(), 10u);
  EXPECT_FALSE(exact->next.has_value());
  auto past = sink->activity_draws("a", 24, 10);
  ASSERT_TRUE(past.ok());
  EXPECT_TRUE(past->items.empty());
  EXPECT_FALSE(past->next.has_value());
  auto unknown = sink->activity_draws("nope", -1, 10);
  ASSERT_TRUE(unknown.ok());
  EXPECT_TRUE(unknown->items.empty());
}

TEST(SqliteSink, UserDrawsPageNewestFirst) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  // u1 draws in two activities, with ties on drawn_at_ms; u2 draws in between.
  Acks acks;
  std::vector<DrawRecord> mine;
  int n = 0;
  for (std::int64_t s = 0; s < 8; ++s) {
    for (const std::string activity : {"a", "b"}) {
      DrawRecord r = make_draw(activity, s, s % 3 == 2 ? "u2" : "u1", 5000 + (s / 2) * 10);
      if (r.user_id == "u1") mine.push_back(r);
      sink->append(r, acks.ack());
      ++n;
    }
  }
  ASSERT_TRUE(acks.wait_total(n));
  ASSERT_EQ(acks.durable(), n);
  std::sort(mine.begin(), mine.end(), [](const DrawRecord& x, const DrawRecord& y) {
    return std::tie(x.drawn_at_ms, x.seq, x.draw_id) > std::tie(y.drawn_at_ms, y.seq, y.draw_id);
  });

  auto collect = [&](std::optional<std::string_view> activity, std::size_t limit) {
    std::vector<std::string> ids;
    std::optional<std::string> cursor;
    for (int guard = 0; guard < 50; ++guard) {
      auto page = sink->user_draws(
          "u1", activity, cursor ? std::optional<std::string_view>(*cursor) : std::nullopt, limit);
      EXPECT_TRUE(page.ok());
      if (!page.ok()) break;
      EXPECT_LE(page->items.size(), limit);
      for (const auto& r : page->items) {
        EXPECT_EQ(r.user_id, "u1");
        ids.push_back(r.draw_id);
      }
      if (!page->next) break;
      cursor = page->next;
    }
    return ids;
  };

  std::vector<std::string> expected;
  for (const auto& r : mine) expected.push_back(r.draw_id);
  EXPECT_EQ(collect(std::nullopt, 3), expected);
  EXPECT_EQ(collect(std::nullopt, 1000), expected);
  EXPECT_EQ(collect(std::nullopt, expected.size()), expected);

  std::vector<std::string> only_b;
  for (const auto& r : mine) {
    if (r.activity_id == "b") only_b.push_back(r.draw_id);
  }
  EXPECT_EQ(collect(std::string_view("b"), 2), only_b);

  auto nobody = sink->user_draws("nobody", std::nullopt, std::nullopt, 10);
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->items.empty());
  EXPECT_FALSE(nobody->next.has_value());

  for (const std::string bad :
       {"", "abc", "12", ".x", "12.", "-5.x", "99999999999999999999.x", "1.a b", "1x.y"}) {
    auto page = sink->user_draws("u1", std::nullopt, std::string_view(bad), 10);
    ASSERT_FALSE(page.ok()) << bad;
    EXPECT_EQ(page.error().kind, ErrorKind::invalid_request) << bad;
  }
}

TEST(SqliteSink, FindsByIdempotencyKey) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 5);
  append_and_wait(*sink, "b", 0, 5);
  auto hit = sink->find_by_idempotency_key("a", "key-a-3");
  ASSERT_TRUE(hit.ok());
  ASSERT_TRUE(hit.value().has_value());
  EXPECT_EQ(hit.value()->seq, 3);
  EXPECT_EQ(hit.value()->activity_id, "a");
  auto other_activity = sink->find_by_idempotency_key("b", "key-a-3");
  ASSERT_TRUE(other_activity.ok());
  EXPECT_FALSE(other_activity.value().has_value());
  auto miss = sink->find_by_idempotency_key("a", "never");
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss.value().has_value());
}

TEST(SqliteSink, LoadsTotalsForRecovery) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  Acks acks;
  std::vector<DrawRecord> rows;
  for (std::int64_t s = 0; s < 250; ++s) {
    DrawRecord r =
        s % 10 == 0 ? make_win("a", s, s % 20 == 0 ? "gold" : "silver") : make_draw("a", s);
    r.user_id = "u" + std::to_string(s % 3);
    r.epoch = s < 40 ? 0 : (s < 140 ? 1 : 2);
    if (s % 10 == 5) r.candidate_id = "gold";  // a stock-out: candidate without a prize
    rows.push_back(r);
  }
  for (auto& r : rows) sink->append(r, acks.ack());
  append_and_wait(*sink, "other", 0, 7);
  ASSERT_TRUE(acks.wait_total(250));

  UserCounts users;
  // Rows were drawn at 1'700'000'000'000 + seq: "since" counts seqs 200..249.
  auto totals = load_totals(*sink, "a", &users, 1'700'000'000'000 + 200);
  ASSERT_TRUE(totals.ok()) << totals.error().detail;
  EXPECT_EQ(totals->next_seq, 250);
  using Pairs = std::vector<std::pair<std::string, std::int64_t>>;
  EXPECT_EQ(totals->wins_by_prize, (Pairs{{"gold", 13}, {"silver", 12}}));
  EXPECT_EQ(users, (UserCounts{{"u0", {84, 17}}, {"u1", {83, 16}}, {"u2", {83, 17}}}));
  using Epochs = std::vector<std::pair<std::int64_t, std::int64_t>>;
  EXPECT_EQ(totals->first_seq_by_epoch, (Epochs{{0, 0}, {1, 40}, {2, 140}}));

  auto empty = load_totals(*sink, "nope", &users);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->next_seq, 0);
  EXPECT_TRUE(empty->wins_by_prize.empty());
  EXPECT_TRUE(users.empty());
  EXPECT_TRUE(empty->first_seq_by_epoch.empty());
}

TEST(SqliteSink, DrawsSinceAndUserCountsSince) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  Acks acks;
  for (std::int64_t s = 0; s < 20; ++s) {
    sink->append(make_draw("a", s, s % 2 == 0 ? "even" : "odd", 1000 + s * 100), acks.ack());
  }
  ASSERT_TRUE(acks.wait_total(20));

  auto since = sink->draws_since("a", 2000, 100);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->size(), 10u);
  for (std::size_t i = 0; i < since->size(); ++i)
    EXPECT_EQ((*since)[i].seq, 10 + static_cast<std::int64_t>(i));

  auto newest = sink->draws_since("a", 0, 3);  // the newest three, oldest first
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 3u);
  EXPECT_EQ((*newest)[0].seq, 17);
  EXPECT_EQ((*newest)[2].seq, 19);

  auto counts = sink->user_counts_since("a", 2500);
  ASSERT_TRUE(counts.ok());
  using Pairs = std::vector<std::pair<std::string, std::int64_t>>;
  EXPECT_EQ(counts.value(), (Pairs{{"even", 2}, {"odd", 3}}));
  auto none = sink->user_counts_since("a", 10'000);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Every field, for comparing records read back with what was written.
auto fields(const DrawRecord& r) {
  return std::tie(r.draw_id, r.activity_id, r.seq, r.epoch, r.slot, r.user_id, r.idempotency_key,
                  r.candidate_id, r.prize_id, r.prize_name, r.won, r.drawn_at_ms);
}

// Past 2 x 65536 rows load_totals reads two halves on two connections: through
// the table when the activity holds most of the file, else through its index.
TEST(SqliteSink, LoadsTotalsOfALargeActivityInTwoHalves) {
  TempDir dir;
  SqliteSinkOptions options;
  options.synchronous = SqliteSinkOptions::Synchronous::normal;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  constexpr std::int64_t kRows = 140'000;
  constexpr std::int64_t kUsers = 5000;
  constexpr std::int64_t kSince = 1'700'000'000'000 + 100'000;
  UserCounts expected;
  std::map<std::string, std::int64_t> expected_wins;
  Acks acks;
  for (std::int64_t s = 0; s < kRows; ++s) {
    // Users repeat across the two halves; every 97th draw wins one of two prizes.
    const std::string user = "user-" + std::to_string((s * 7919) % kUsers);
    DrawRecord r = s % 97 == 0 ? make_win("big", s, s % 2 == 0 ? "gold" : "silver")
                               : make_draw("big", s);
    r.user_id = user;
    r.drawn_at_ms = 1'700'000'000'000 + s;
    auto& counts = expected[user];
    ++counts.first;
    if (r.drawn_at_ms >= kSince) ++counts.second;
    if (r.won) ++expected_wins[*r.prize_id];
    sink->append(std::move(r), acks.ack());
    if (s % 4096 == 4095) {
      ASSERT_TRUE(acks.wait_total(static_cast<int>(s + 1), 60s));
    }
  }
  ASSERT_TRUE(acks.wait_total(static_cast<int>(kRows), 60s));
  ASSERT_EQ(acks.durable(), kRows);

  auto check = [&](const std::string& what) {
    UserCounts users;
    auto totals = load_totals(*sink, "big", &users, kSince);
    ASSERT_TRUE(totals.ok()) << what << ": " << totals.error().detail;
    EXPECT_EQ(totals->next_seq, kRows) << what;
    EXPECT_EQ(users, expected) << what;
    using Pairs = std::vector<std::pair<std::string, std::int64_t>>;
    EXPECT_EQ(totals->wins_by_prize, Pairs(expected_wins.begin(), expected_wins.end())) << what;
    ASSERT_EQ(totals->first_seq_by_epoch.size(), static_cast<std::size_t>(kRows / 100)) << what;
    for (std::size_t e = 0; e < totals->first_seq_by_epoch.size(); ++e) {
      ASSERT_EQ(totals->first_seq_by_epoch[e],
                (std::pair<std::int64_t, std::int64_t>(static_cast<std::int64_t>(e),
                                                       static_cast<std::int64_t>(e) * 100)))
          << what;
    }
  };
  check("the activity is the whole file");
  // Now a minority of the file: the same answer through the index.
  Acks more;
  for (std::int64_t s = 0; s < kRows + 1000; ++s) {
    sink->append(make_draw("other", s), more.ack());
    if (s % 4096 == 4095) {
      ASSERT_TRUE(more.wait_total(static_cast<int>(s + 1), 60s));
    }
  }
  ASSERT_TRUE(more.wait_total(static_cast<int>(kRows + 1000), 60s));
  check("the activity is under half of the file");
}

TEST(SqliteSink, LoadsTheLiveDrawsAmongTheLastSeqs) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  Acks acks;
  std::vector<DrawRecord> rows;
  for (std::int64_t s = 0; s < 20; ++s) {
    // Times follow seqs but not strictly: seq 13 was drawn "later" than 14..16.
    DrawRecord r = s % 5 == 0 ? make_win("a", s, "gold") : make_draw("a", s, "u" + std::to_string(s % 3));
    r.drawn_at_ms = 1000 + s * 100 + (s == 13 ? 350 : 0);
    rows.push_back(r);
    sink->append(std::move(r), acks.ack());
  }
  append_and_wait(*sink, "other", 0, 5);
  ASSERT_TRUE(acks.wait_total(20));

  auto load = [&](std::int64_t since_ms, std::size_t limit, std::vector<DrawRecord>& got) {
    got.clear();
    return sink->load_live_draws("a", since_ms, limit,
                                 [&](const DrawRecord& r) { got.push_back(r); });
  };
  std::vector<DrawRecord> got;
  // All live and within the limit: everything, in seq order, field by field.
  auto all = load(0, 100, got);
  ASSERT_TRUE(all.ok()) << all.error().detail;
  EXPECT_EQ(all->delivered, 20u);
  EXPECT_FALSE(all->newest_left_out_ms);
  ASSERT_EQ(got.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(fields(got[i]), fields(rows[i]));

  // The last 5 seqs (15..19); of the live draws before them, 13 is the newest.
  auto last = load(2000, 5, got);
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got.front().seq, 15);
  EXPECT_EQ(got.back().seq, 19);
  EXPECT_EQ(last->newest_left_out_ms, std::optional<std::int64_t>(1000 + 13 * 100 + 350));

  // Draws before since_ms are neither delivered nor left out: of the last 8
  // seqs (12..19), 12 (at 2200) is too old; before them none is live.
  auto recent = load(2350, 8, got);
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(got.size(), 7u);
  EXPECT_EQ(got.front().seq, 13);
  EXPECT_FALSE(recent->newest_left_out_ms);

  auto none = sink->load_live_draws("nope", 0, 10, [&](const DrawRecord&) { ADD_FAILURE(); });
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->delivered, 0u);
  EXPECT_FALSE(none->newest_left_out_ms);
}


// A file as a build with only migration 001 left it, with rows in it.
bool make_v1_file(const std::string& path, const std::vector<DrawRecord>& rows) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return false;
  const std::string v1(sqlite_migrations().at(0).sql);
  bool ok = sqlite_migrations().at(0).version == 1 &&
            sqlite3_exec(db,
                         "PRAGMA journal_mode = WAL;"
                         "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT,"
                         " applied_at_ms INTEGER);"
                         "BEGIN;"
                         "INSERT INTO schema_migrations VALUES (1, '001_initial', 0);",
                         nullptr, nullptr, nullptr) == SQLITE_OK &&
            sqlite3_exec(db, v1.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_stmt* insert = nullptr;
  ok = ok && sqlite3_prepare_v2(db,
                                "INSERT INTO draws (draw_id, activity_id, seq, epoch, slot, user_id,"
                                " idempotency_key, candidate_id, prize_id, prize_name, won,"
                                " drawn_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                -1, &insert, nullptr) == SQLITE_OK;
  auto bind_opt = [&](int i, const std::optional<std::string>& v) {
    if (v) {
      sqlite3_bind_text(insert, i, v->c_str(), -1, SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(insert, i);
    }
  };
  for (const DrawRecord& r : rows) {
    if (!ok) break;
    sqlite3_bind_text(insert, 1, r.draw_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, r.activity_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert, 3, r.seq);
    sqlite3_bind_int64(insert, 4, r.epoch);
    sqlite3_bind_int64(insert, 5, r.slot);
    sqlite3_bind_text(insert, 6, r.user_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 7, r.idempotency_key.c_str(), -1, SQLITE_TRANSIENT);
    bind_opt(8, r.candidate_id);
    bind_opt(9, r.prize_id);
    bind_opt(10, r.prize_name);
    sqlite3_bind_int(insert, 11, r.won ? 1 : 0);
    sqlite3_bind_int64(insert, 12, r.drawn_at_ms);
    ok = sqlite3_step(insert) == SQLITE_DONE;
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  ok = ok && sqlite3_exec(db,
                          "INSERT INTO activities VALUES ('a', '{\"name\":\"A\"}', 0, 1, 2);"
                          "INSERT INTO epochs VALUES ('a', 0, zeroblob(32), 'c0', '[]', 9, 100, 0,"
                          " NULL);"
                          "COMMIT;",
                          nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_close(db);
  return ok;
}

TEST(SqliteSink, UpgradesAVersionOneFileWithItsRows) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  // Two activities inserted interleaved and out of seq order, ties on drawn_at_ms, wins,
  // stock-outs, non-ASCII and quoted ids: the copy must keep every field and every query.
  std::vector<DrawRecord> rows;
  for (std::int64_t s = 59; s >= 0; --s) {
    for (const std::string activity : {"a", "b"}) {
      if (activity == "b" && s >= 30) continue;
      DrawRecord r = s % 7 == 0 ? make_win(activity, s, s % 14 == 0 ? "gold" : "silver")
                                : make_draw(activity, s);
      const std::array<std::string, 5> users = {"u0", "u1", "\xc3\xbc-ser", "o'hara", "u4"};
      r.user_id = users[static_cast<std::size_t>(s % 5)];
      r.idempotency_key = "\"key\"-" + activity + "-" + std::to_string(s);
      r.drawn_at_ms = 1'700'000'000'000 + (s / 3) * 1000;
      r.epoch = s / 25;
      if (s % 7 == 3) r.candidate_id = "gold";  // a stock-out
      rows.push_back(r);
    }
  }
  ASSERT_TRUE(make_v1_file(path, rows));
  ASSERT_EQ(query_int(path, "SELECT COUNT(*) FROM draws"), static_cast<std::int64_t>(rows.size()));

  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  EXPECT_EQ(query_int(path, "SELECT MAX(version) FROM schema_migrations"),
            sqlite_migrations().back().version);
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM draws"), static_cast<std::int64_t>(rows.size()));
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM pragma_index_list('draws')"
                            " WHERE name IN ('draws_by_key_hash', 'draws_by_user_hash')"),
            2);

  for (const DrawRecord& r : rows) {
    auto by_id = sink->find_draw(r.draw_id);
    ASSERT_TRUE(by_id.ok() && by_id.value().has_value()) << r.draw_id;
    EXPECT_EQ(fields(*by_id.value()), fields(r)) << r.draw_id;
    auto by_key = sink->find_by_idempotency_key(r.activity_id, r.idempotency_key);
    ASSERT_TRUE(by_key.ok() && by_key.value().has_value()) << r.idempotency_key;
    EXPECT_EQ(fields(*by_key.value()), fields(r)) << r.idempotency_key;
  }

  auto in_seq_order = [&](const std::string& activity) {
    std::vector<DrawRecord> out;
    for (const auto& r : rows) {
      if (r.activity_id == activity) out.push_back(r);
    }
    std::sort(out.begin(), out.end(),
              [](const DrawRecord& x, const DrawRecord& y) { return x.seq < y.seq; });
    return out;
  };
  for (const std::string activity : {"a", "b"}) {
    const auto expected = in_seq_order(activity);
    auto page = sink->activity_draws(activity, -1, 1000);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->items.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(fields(page->items[i]), fields(expected[i]));
    }
  }

  for (const std::string user : {"u0", "\xc3\xbc-ser", "o'hara"}) {
    std::vector<DrawRecord> expected;
    for (const auto& r : rows) {
      if (r.user_id == user) expected.push_back(r);
    }
    std::sort(expected.begin(), expected.end(), [](const DrawRecord& x, const DrawRecord& y) {
      return std::tie(x.drawn_at_ms, x.seq, x.draw_id) > std::tie(y.drawn_at_ms, y.seq, y.draw_id);
    });
    std::vector<DrawRecord> got;
    std::optional<std::string> cursor;
    for (int guard = 0; guard < 100; ++guard) {
      auto page = sink->user_draws(
          user, std::nullopt, cursor ? std::optional<std::string_view>(*cursor) : std::nullopt, 3);
      ASSERT_TRUE(page.ok());
      got.insert(got.end(), page->items.begin(), page->items.end());
      if (!page->next) break;
      cursor = page->next;
    }
    ASSERT_EQ(got.size(), expected.size()) << user;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(fields(got[i]), fields(expected[i])) << user << " #" << i;
    }
  }

  UserCounts users;
  auto totals = load_totals(*sink, "a", &users);
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->next_seq, 60);
  using Pairs = std::vector<std::pair<std::string, std::int64_t>>;
  EXPECT_EQ(totals->wins_by_prize, (Pairs{{"gold", 5}, {"silver", 4}}));
  EXPECT_EQ(users, (UserCounts{{"u0", {12, 12}},
                               {"u1", {12, 12}},
                               {"\xc3\xbc-ser", {12, 12}},
                               {"o'hara", {12, 12}},
                               {"u4", {12, 12}}}));
  using Epochs = std::vector<std::pair<std::int64_t, std::int64_t>>;
  EXPECT_EQ(totals->first_seq_by_epoch, (Epochs{{0, 0}, {1, 25}, {2, 50}}));
  auto since = sink->draws_since("b", 1'700'000'000'000 + 8000, 100);  // seqs 24..29
  ASSERT_TRUE(since.ok());
  const auto b_rows = in_seq_order("b");
  ASSERT_EQ(since->size(), 6u);
  for (std::size_t i = 0; i < since->size(); ++i) {
    EXPECT_EQ(fields((*since)[i]), fields(b_rows[24 + i]));
  }
  auto counts = sink->user_counts_since("b", 1'700'000'000'000 + 8000);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts.value(),
            (Pairs{{"o'hara", 1}, {"u0", 1}, {"u1", 1}, {"u4", 2}, {"\xc3\xbc-ser", 1}}));

  auto activities = sink->load_activities();
  ASSERT_TRUE(activities.ok());
  ASSERT_EQ(activities->size(), 1u);
  EXPECT_EQ((*activities)[0].config_json, "{\"name\":\"A\"}");
  auto epochs = sink->load_epochs("a");
  ASSERT_TRUE(epochs.ok());
  ASSERT_EQ(epochs->size(), 1u);
  EXPECT_EQ((*epochs)[0].commitment, "c0");

  // New rows follow the copied ones; a seq already there is refused.
  append_and_wait(*sink, "a", 60, 62);
  auto next = sink->find_by_idempotency_key("a", make_draw("a", 61).idempotency_key);
  ASSERT_TRUE(next.ok() && next.value().has_value());
  EXPECT_EQ(next.value()->seq, 61);
  Acks acks;
  sink->set_next_seq("b", 0);  // pretend the engine lost track: the file keeps seq 0 unique
  sink->append(make_draw("b", 0, "dup"), acks.ack());
  ASSERT_TRUE(acks.wait_total(1));
  EXPECT_EQ(acks.refused(), 1);
}

// Migration 003 drops draws_by_time from a file made by an older build; the
// reads it served still answer the same.
TEST(SqliteSink, UpgradesAVersionTwoFileByDroppingTheTimeIndex) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  const std::string index_count =
      "SELECT COUNT(*) FROM pragma_index_list('draws') WHERE name = 'draws_by_time'";
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
    EXPECT_EQ(query_int(path, index_count), 0);  // a new file never has it
    Acks acks;
    for (std::int64_t s = 0; s < 50; ++s) {
      sink->append(make_draw("a", s, "u" + std::to_string(s % 4), 1000 + s * 10), acks.ack());
    }
    ASSERT_TRUE(acks.wait_total(50));
  }
  // As a build that knew only migrations 1 and 2 left the file.
  ASSERT_TRUE(exec_raw(path,
                       "CREATE INDEX draws_by_time ON draws (activity_id, drawn_at_ms, seq);"
                       " DELETE FROM schema_migrations WHERE version >= 3"));
  ASSERT_EQ(query_int(path, index_count), 1);
  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  EXPECT_EQ(query_int(path, index_count), 0);
  EXPECT_EQ(query_int(path, "SELECT MAX(version) FROM schema_migrations"),
            sqlite_migrations().back().version);
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM draws"), 50);
  auto since = sink->draws_since("a", 1000 + 40 * 10, 5);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since.value().size(), 5u);
  EXPECT_EQ(since.value().front().seq, 45);
  EXPECT_EQ(since.value().back().seq, 49);
  std::int64_t live = 0;
  auto loaded = sink->load_live_draws("a", 1000 + 20 * 10, 10, [&](const DrawRecord&) { ++live; });
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(live, 10);
  EXPECT_EQ(loaded.value().newest_left_out_ms, 1000 + 39 * 10);  // seq 39, the last not delivered
  append_and_wait(*sink, "a", 50, 60);  // and the writer goes on
}

TEST(SqliteSink, HashCollisionsNeverReturnAnotherRow) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 3);  // user u1, keys key-a-0..2
  // Rows whose hashes equal those of another key and another user (copied from seq 2),
  // with lower seqs in another activity and newer times: what a collision would look like.
  ASSERT_TRUE(exec_raw(
      path,
      "INSERT INTO draws (activity_id, seq, draw_id, epoch, slot, user_id, idempotency_key,"
      " won, drawn_at_ms, key_hash, user_hash)"
      " SELECT 'a', -1, 'fake-1', 0, 0, 'intruder', 'other-key', 0, drawn_at_ms + 1000,"
      " key_hash, user_hash FROM draws WHERE activity_id = 'a' AND seq = 2"));
  auto by_key = sink->find_by_idempotency_key("a", "key-a-2");
  ASSERT_TRUE(by_key.ok() && by_key.value().has_value());
  EXPECT_EQ(by_key.value()->draw_id, make_draw("a", 2).draw_id);
  auto mine = sink->user_draws("u1", std::nullopt, std::nullopt, 10);
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->items.size(), 3u);
  for (const auto& r : mine->items) EXPECT_EQ(r.user_id, "u1");
}

TEST(SqliteSink, ActivitiesAndEpochsRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  EpochRecord e0;
  e0.activity_id = "a";
  e0.epoch = 0;
  for (std::size_t i = 0; i < e0.seed.size(); ++i)
    e0.seed[i] = static_cast<std::uint8_t>(i * 7 + 1);
  e0.seed[3] = 0;  // a zero byte inside the blob
  e0.commitment = "abc123";
  e0.prizes = {{"gold", 1}, {"silver", 4294967295u}};
  e0.miss_weight = 90;
  e0.epoch_size = 10'000'000;
  e0.first_seq = 0;
  EpochRecord e1 = e0;
  e1.epoch = 1;
  e1.prizes = {};
  e1.first_seq.reset();
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->save_activity({"a", R"({"name":"A"})", false, 10, 10}).ok());
    ASSERT_TRUE(sink->save_activity({"b", R"({"name":"B"})", false, 20, 20}).ok());
    ASSERT_TRUE(sink->save_activity({"a", R"({"name":"A2"})", true, 10, 30}).ok());  // replace
    ASSERT_TRUE(sink->save_epoch(e1).ok());
    ASSERT_TRUE(sink->save_epoch(e0).ok());
    e0.revealed_at_ms = 12345;
    ASSERT_TRUE(sink->save_epoch(e0).ok());  // reveal: replaces the row
  }
  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  auto activities = sink->load_activities();
  ASSERT_TRUE(activities.ok());
  ASSERT_EQ(activities->size(), 2u);
  const StoredActivity& a = (*activities)[0];
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.config_json, R"({"name":"A2"})");
  EXPECT_TRUE(a.ended);
  EXPECT_EQ(a.created_at_ms, 10);
  EXPECT_EQ(a.updated_at_ms, 30);
  EXPECT_EQ((*activities)[1].id, "b");
  EXPECT_FALSE((*activities)[1].ended);

  auto epochs = sink->load_epochs("a");
  ASSERT_TRUE(epochs.ok()) << epochs.error().detail;
  ASSERT_EQ(epochs->size(), 2u);
  const EpochRecord& got = (*epochs)[0];
  EXPECT_EQ(got.activity_id, "a");
  EXPECT_EQ(got.epoch, 0);
  EXPECT_EQ(got.seed, e0.seed);
  EXPECT_EQ(got.commitment, "abc123");
  ASSERT_EQ(got.prizes.size(), 2u);
  EXPECT_EQ(got.prizes[0].id, "gold");
  EXPECT_EQ(got.prizes[0].weight, 1u);
  EXPECT_EQ(got.prizes[1].id, "silver");
  EXPECT_EQ(got.prizes[1].weight, 4294967295u);
  EXPECT_EQ(got.miss_weight, 90u);
  EXPECT_EQ(got.epoch_size, 10'000'000u);
  EXPECT_EQ(got.first_seq, std::optional<std::int64_t>(0));
  EXPECT_EQ(got.revealed_at_ms, std::optional<std::int64_t>(12345));
  EXPECT_EQ((*epochs)[1].epoch, 1);
  EXPECT_TRUE((*epochs)[1].prizes.empty());
  EXPECT_FALSE((*epochs)[1].first_seq.has_value());
  EXPECT_FALSE((*epochs)[1].revealed_at_ms.has_value());

  auto none = sink->load_epochs("b");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  ASSERT_TRUE(exec_raw(path, "UPDATE epochs SET seed = x'0102' WHERE epoch = 1"));
  auto corrupt = sink->load_epochs("a");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().kind, ErrorKind::internal);
}

TEST(SqliteSink, FlushAndStopCommitsEverythingDurably) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  Acks acks;
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
    for (std::int64_t s = 0; s < 500; ++s) sink->append(make_draw("a", s), acks.ack());
    sink->append(make_draw("a", 501), acks.ack());  // behind a gap: can never be recorded
    sink->flush_and_stop();
    EXPECT_EQ(acks.durable(), 500);  // every ack fired before flush_and_stop returned
    EXPECT_EQ(acks.refused(), 1);
    sink->flush_and_stop();  // idempotent
    sink->append(make_draw("a", 500), acks.ack());
    EXPECT_EQ(acks.refused(), 2);                            // refused at once after stop
    EXPECT_TRUE(found(*sink, make_draw("a", 499).draw_id));  // reads still work
  }
  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  auto totals = load_totals(*sink, "a");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->next_seq, 500);
  auto page = sink->activity_draws("a", -1, 1000);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 500u);
  EXPECT_EQ(page->items.back().seq, 499);
}

TEST(SqliteSink, ResumesAfterTheLastSeqInTheFile) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
    append_and_wait(*sink, "a", 0, 10);
  }
  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  Acks acks;
  sink->append(make_draw("a", 3), acks.ack());  // already recorded: refused, no hole
  ASSERT_TRUE(acks.wait_total(1));
  EXPECT_EQ(acks.refused(), 1);
  append_and_wait(*sink, "a", 10, 12);
  EXPECT_TRUE(sink->healthy());

  // set_next_seq: the engine says seqs below 50 of "fresh" are settled.
  sink->set_next_seq("fresh", 50);
  append_and_wait(*sink, "fresh", 50, 52);
  EXPECT_TRUE(found(*sink, make_draw("fresh", 51).draw_id));
}

TEST(SqliteSink, FullQueueRefusesAndLeavesNoGap) {
  TempDir dir;
  SqliteSinkOptions options;
  options.max_queue = 4;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  Acks acks;
  for (std::int64_t s = 1; s <= 4; ++s) sink->append(make_draw("a", s), acks.ack());  // held back
  std::this_thread::sleep_for(50ms);  // the writer is idle again: a refusal alone must wake it
  sink->append(make_draw("a", 5), acks.ack());
  EXPECT_EQ(acks.refused(), 1);                 // at once, on this thread
  sink->append(make_draw("a", 0), acks.ack());  // over the limit as well: a hole at 0
  ASSERT_TRUE(acks.wait_total(6, 5s));
  EXPECT_EQ(acks.durable(), 0);
  EXPECT_EQ(acks.refused(), 6);
  EXPECT_FALSE(sink->healthy());

  // Recovery: the engine settles the lane, the sink records again.
  sink->set_next_seq("a", 0);
  append_and_wait(*sink, "a", 0, 4);  // at most max_queue in flight
  append_and_wait(*sink, "a", 4, 6);
  EXPECT_TRUE(sink->healthy());
  auto totals = load_totals(*sink, "a");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->next_seq, 6);
}

TEST(SqliteSink, FullQueueBelowTheHoleStillCommitsThePrefix) {
  TempDir dir;
  SqliteSinkOptions options;
  options.max_queue = 3;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  Acks acks;
  sink->append(make_draw("a", 1), acks.ack());
  sink->append(make_draw("a", 2), acks.ack());
  sink->append(make_draw("a", 4), acks.ack());
  sink->append(make_draw("a", 3), acks.ack());  // refused: hole at 3, so 4 goes too
  ASSERT_TRUE(acks.wait_total(2, 5s));
  sink->append(make_draw("a", 0), acks.ack());
  ASSERT_TRUE(acks.wait_total(5, 5s));
  EXPECT_EQ(acks.durable(), 3);
  EXPECT_EQ(acks.refused(), 2);
  auto totals = load_totals(*sink, "a");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->next_seq, 3);
  EXPECT_FALSE(found(*sink, make_draw("a", 4).draw_id));
}

TEST(SqliteSink, RefusingAnAlreadyRecordedSeqLeavesNoHole) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
    append_and_wait(*sink, "a", 0, 10);
  }
  SqliteSinkOptions options;
  options.max_queue = 1;
  auto sink = open_sink(path, options);
  ASSERT_TRUE(sink);
  Acks acks;
  sink->append(make_draw("b", 1), acks.ack());  // held back: the queue is full
  sink->append(make_draw("a", 3), acks.ack());  // refused, but seq 3 is in the file already
  EXPECT_EQ(acks.refused(), 1);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(sink->healthy());
  sink->flush_and_stop();
  EXPECT_EQ(acks.refused(), 2);  // b1 never saw its b0
  EXPECT_TRUE(sink->healthy());
}

TEST(SqliteSink, FailedBatchIsRetriedThenRefusedAndOthersGoOn) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  SqliteSinkOptions options;
  options.commit_attempts = 3;
  options.retry_backoff = 1ms;
  auto sink = open_sink(path, options);
  ASSERT_TRUE(sink);
  // RAISE(ROLLBACK) aborts the whole transaction, like an I/O error would.
  ASSERT_TRUE(exec_raw(path,
                       "CREATE TRIGGER poison BEFORE INSERT ON draws WHEN NEW.user_id = 'poison'"
                       " BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END"));
  Acks acks;
  sink->append(make_draw("b", 0, "poison"), acks.ack());
  ASSERT_TRUE(acks.wait_total(1));
  EXPECT_EQ(acks.refused(), 1);
  EXPECT_EQ(sink->stats().failed_batches, 1u);
  EXPECT_FALSE(sink->healthy());
  EXPECT_NE(sink->last_error().find("poisoned"), std::string::npos) << sink->last_error();

  sink->append(make_draw("b", 1), acks.ack());  // after the hole: refused
  ASSERT_TRUE(acks.wait_total(2));
  EXPECT_EQ(acks.refused(), 2);
  append_and_wait(*sink, "a", 0, 3);  // other activities are still recorded
  EXPECT_FALSE(found(*sink, make_draw("b", 1).draw_id));
  EXPECT_EQ(sink->stats().failed_batches, 1u);
}

TEST(SqliteSink, ConstraintViolationRefusesOnlyThatActivity) {
  TempDir dir;
  auto sink = open_sink(dir.file("fd.db"));
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 1);
  Acks acks;
  DrawRecord dup = make_draw("b", 0);
  dup.draw_id = make_draw("a", 0).draw_id;  // primary key taken
  sink->append(dup, acks.ack());
  sink->append(make_draw("b", 1), acks.ack());
  sink->append(make_draw("c", 0), acks.ack());
  ASSERT_TRUE(acks.wait_total(3));
  EXPECT_EQ(acks.durable(), 1);
  EXPECT_EQ(acks.refused(), 2);
  EXPECT_TRUE(found(*sink, make_draw("c", 0).draw_id));
  EXPECT_FALSE(found(*sink, make_draw("b", 1).draw_id));
  EXPECT_FALSE(sink->healthy());
  EXPECT_EQ(sink->stats().failed_batches, 0u);
}

TEST(SqliteSink, MaxBatchDelayGathersRows) {
  TempDir dir;
  SqliteSinkOptions options;
  options.max_batch_delay = 50ms;
  auto sink = open_sink(dir.file("fd.db"), options);
  ASSERT_TRUE(sink);
  Acks acks;
  for (std::int64_t s = 0; s < 100; ++s) sink->append(make_draw("a", s), acks.ack());
  ASSERT_TRUE(acks.wait_total(100));
  EXPECT_EQ(acks.durable(), 100);
  EXPECT_LE(sink->stats().committed_batches, 3u);
}

// One batch of 90 rows goes in as multi-row INSERTs (64 + 16 + 8 + 2 rows): a
// constraint error inside a chunk keeps the rows before it, refuses that row
// and the rest of its activity, and the other activities' rows still commit.
TEST(SqliteSink, ConstraintViolationInsideAMultiRowInsert) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  SqliteSinkOptions options;
  options.max_batch_delay = 500ms;  // the 90 rows below make one batch
  auto sink = open_sink(path, options);
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "x", 0, 1);
  const std::uint64_t batches_before = sink->stats().committed_batches;
  Acks acks;
  for (const char* activity : {"a", "b", "c"}) {
    for (std::int64_t s = 0; s < 30; ++s) {
      DrawRecord r = make_draw(activity, s);
      if (r.activity_id == "b" && s == 10) r.draw_id = make_draw("x", 0).draw_id;  // in the file
      if (r.activity_id == "c" && s == 7) r.draw_id = make_draw("a", 3).draw_id;  // same chunk
      sink->append(std::move(r), acks.ack());
    }
  }
  ASSERT_TRUE(acks.wait_total(90));
  EXPECT_EQ(sink->stats().committed_batches, batches_before + 1);
  EXPECT_EQ(acks.durable(), 30 + 10 + 7);
  EXPECT_EQ(acks.refused(), 20 + 23);
  sink->flush_and_stop();
  EXPECT_EQ(query_int(path, "SELECT MAX(seq) FROM draws WHERE activity_id = 'a'"), 29);
  EXPECT_EQ(query_int(path, "SELECT MAX(seq) FROM draws WHERE activity_id = 'b'"), 9);
  EXPECT_EQ(query_int(path, "SELECT MAX(seq) FROM draws WHERE activity_id = 'c'"), 6);
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM draws"), 1 + 30 + 10 + 7);
  EXPECT_FALSE(sink->healthy());
  EXPECT_EQ(sink->stats().failed_batches, 0u);
  EXPECT_NE(sink->last_error().find("seq 7 of 'c'"), std::string::npos) << sink->last_error();
}

// A trigger's RAISE(ABORT) undoes its whole statement (every row of the chunk,
// sqlite3_changes() 0): still only the row that raised it and the rest of its
// activity are refused.
TEST(SqliteSink, AbortingTriggerInsideAMultiRowInsertRefusesOnlyItsRow) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  SqliteSinkOptions options;
  options.max_batch_delay = 500ms;
  auto sink = open_sink(path, options);
  ASSERT_TRUE(sink);
  ASSERT_TRUE(exec_raw(path,
                       "CREATE TRIGGER picky BEFORE INSERT ON draws WHEN NEW.user_id = 'bad'"
                       " BEGIN SELECT RAISE(ABORT, 'bad row'); END"));
  Acks acks;
  for (std::int64_t s = 0; s < 10; ++s) {
    sink->append(make_draw("a", s, s == 5 ? "bad" : "u1"), acks.ack());
  }
  for (std::int64_t s = 0; s < 10; ++s) sink->append(make_draw("c", s), acks.ack());
  ASSERT_TRUE(acks.wait_total(20));
  EXPECT_EQ(acks.durable(), 5 + 10);
  EXPECT_EQ(acks.refused(), 5);
  sink->flush_and_stop();
  EXPECT_EQ(query_int(path, "SELECT MAX(seq) FROM draws WHERE activity_id = 'a'"), 4);
  EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM draws WHERE activity_id = 'c'"), 10);
  EXPECT_NE(sink->last_error().find("bad row"), std::string::npos) << sink->last_error();
}

// ---------------------------------------------------------------------------
// kill -9 in the middle of a stream of appends.

struct AckMessage {
  std::int64_t activity;
  std::int64_t seq;
};

[[noreturn]] void crash_child(const std::string& path, int ack_fd) {
  SqliteSinkOptions options;
  options.path = path;
  auto opened = SqliteSink::open(options);
  if (!opened.ok()) ::_exit(2);
  SqliteSink& sink = *opened.value();
  constexpr int kActivities = 3;
  constexpr int kThreads = 4;
  std::array<std::atomic<std::int64_t>, kActivities> next{};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::atomic<int> in_flight{0};
      for (std::int64_t i = 0; i < 200'000; ++i) {
        while (in_flight.load() > 64)
          std::this_thread::sleep_for(50us);  // like clients awaiting responses
        const std::int64_t activity = (i + t) % kActivities;
        const std::int64_t seq = next[static_cast<std::size_t>(activity)].fetch_add(1);
        DrawRecord r = make_draw("act" + std::to_string(activity), seq, "u" + std::to_string(t));
        in_flight.fetch_add(1);
        sink.append(std::move(r), [&in_flight, ack_fd, activity, seq](bool durable) {
          if (durable) {
            const AckMessage m{activity, seq};
            // Sent only after the ack: the parent learns of no row that is not committed.
            if (::write(ack_fd, &m, sizeof m) != static_cast<ssize_t>(sizeof m)) ::_exit(3);
          }
          in_flight.fetch_sub(1);
        });
      }
      while (in_flight.load() > 0) std::this_thread::sleep_for(1ms);
    });
  }
  for (auto& th : threads) th.join();
  ::_exit(0);
}

constexpr const char* kCrashChildPath = "FAIRDRAW_SINK_CRASH_CHILD_DB";
constexpr const char* kCrashChildFd = "FAIRDRAW_SINK_CRASH_CHILD_FD";

// Runs before main() in the re-executed child and never returns there.
struct CrashChildHook {
  CrashChildHook() {
    const char* path = std::getenv(kCrashChildPath);
    const char* fd = std::getenv(kCrashChildFd);
    if (path != nullptr && fd != nullptr) crash_child(path, std::atoi(fd));
  }
};
const CrashChildHook crash_child_hook;

TEST(SqliteSinkCrash, KillNineKeepsAContiguousPrefixAndEveryAck) {
  TempDir dir;
  const std::string path = dir.file("fd.db");
  {
    auto sink = open_sink(path);
    ASSERT_TRUE(sink);
  }  // schema in place before the child starts

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A fresh image of this binary runs the child (see CrashChildHook), so no
    // thread or lock of the parent's other tests is inherited half-way.
    ::close(fds[0]);
    ::setenv(kCrashChildPath, path.c_str(), 1);
    ::setenv(kCrashChildFd, std::to_string(fds[1]).c_str(), 1);
    ::execl("/proc/self/exe", "/proc/self/exe", static_cast<char*>(nullptr));
    ::_exit(4);
  }
  ::close(fds[1]);

  constexpr std::size_t kKillAfter = 5000;
  std::map<std::int64_t, std::set<std::int64_t>> acked;
  std::size_t acked_count = 0;
  bool killed = false;
  std::vector<char> buffer;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << "the child did not finish in time";
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n == 0) break;
    if (n < 0) continue;
    buffer.insert(buffer.end(), chunk, chunk + n);
    std::size_t used = 0;
    for (; buffer.size() - used >= sizeof(AckMessage); used += sizeof(AckMessage)) {
      AckMessage m{};
      std::memcpy(&m, buffer.data() + used, sizeof m);
      acked[m.activity].insert(m.seq);
      ++acked_count;
    }
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
    if (!killed && acked_count >= kKillAfter) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(killed) << "the child finished before it could be killed";
  ASSERT_TRUE(WIFSIGNALED(status)) << "child status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_GE(acked_count, kKillAfter);

  auto sink = open_sink(path);
  ASSERT_TRUE(sink);
  std::int64_t total = 0;
  for (std::int64_t a = 0; a < 3; ++a) {
    const std::string activity = "act" + std::to_string(a);
    auto totals = load_totals(*sink, activity);
    ASSERT_TRUE(totals.ok());
    const std::int64_t n = totals->next_seq;
    EXPECT_EQ(query_int(path, "SELECT COUNT(*) FROM draws WHERE activity_id = '" + activity + "'"),
              n)
        << activity << ": seqs are not 0..n-1";
    EXPECT_EQ(query_int(path, "SELECT COUNT(DISTINCT seq) FROM draws WHERE activity_id = '" +
                                  activity + "' AND seq >= 0 AND seq < " + std::to_string(n)),
              n);
    if (!acked[a].empty()) {
      EXPECT_LT(*acked[a].rbegin(), n) << activity << ": an acked row is missing";
    }
    EXPECT_LE(static_cast<std::int64_t>(acked[a].size()), n);
    total += n;
  }
  EXPECT_GE(total, static_cast<std::int64_t>(acked_count));
  // The sink resumes each activity right after its last row.
  Acks acks;
  auto totals = load_totals(*sink, "act0");
  ASSERT_TRUE(totals.ok());
  sink->append(make_draw("act0", totals->next_seq), acks.ack());
  ASSERT_TRUE(acks.wait_total(1));
  EXPECT_EQ(acks.durable(), 1);
}

}  // namespace
}  // namespace fairdraw
