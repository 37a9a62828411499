// Tests of PgSink against a private PostgreSQL (scripts/pg-test-server.sh), one
// schema per test: migrations, idempotent group commit, reads and pagination,
// durability at flush, and a server restart in the middle of appends.
#include "fairdraw/sink/pg_sink.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "fairdraw/sink/migrations.hpp"

#include "support/gathered_totals.hpp"
#include "support/pg_test_tools.hpp"

namespace fairdraw {
namespace {

using namespace std::chrono_literals;


using test::kInitdb;
using test::pick_pg_port;

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

using test::load_totals;
using test::UserCounts;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

class PgSinkTest : public ::testing::Test {
 protected:
  // One server for the whole suite: initdb costs seconds, a database costs little.
  static void SetUpTestSuite() {
    if (::access(kInitdb, X_OK) != 0) return;
    char pattern[] = "/tmp/fairdraw_pg_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) {
      setup_error_ = "mkdtemp failed";
      return;
    }
    root_ = made;
    ::chmod(made, 0711);  // as root, the server runs as `postgres` and must reach root_/pg
    out_ = root_ + "/script.out";
    dir_ = root_ + "/pg";
    // Another process may take the port between the probe and the server's bind.
    for (int attempt = 0; attempt < 3 && !started_; ++attempt) {
      port_ = pick_pg_port();
      if (port_ == 0) continue;
      started_ = test::run_pg_script("start '" + dir_ + "' " + std::to_string(port_), out_);
    }
    if (!started_) {
      setup_error_ = "scripts/pg-test-server.sh start failed:\n" + test::read_text_file(out_);
      return;
    }
    base_url_ = test::pg_script_output("url '" + dir_ + "' " + std::to_string(port_));
    if (base_url_.rfind("postgresql://", 0) != 0) {
      setup_error_ = "scripts/pg-test-server.sh url printed '" + base_url_ + "'";
      started_ = false;
    }
  }

  static void TearDownTestSuite() {
    if (started_) test::run_pg_script("stop '" + dir_ + "'", out_);
    started_ = false;
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
    root_.clear();
  }

  void SetUp() override {
    if (::access(kInitdb, X_OK) != 0) GTEST_SKIP() << kInitdb << " is missing";
    ASSERT_TRUE(started_) << setup_error_;
    // A fresh schema first on the search_path gives each test its own tables (a
    // database per test would cost a template copy and a slower checkpoint at stop).
    const std::string name = "t_" + std::to_string(++schemas_);
    ASSERT_TRUE(test::pg_exec(base_url_, "CREATE SCHEMA " + name));
    url_ = base_url_ + "?options=-csearch_path%3D" + name;
  }

  PgSinkOptions options() const {
    PgSinkOptions o;
    o.url = url_;
    o.connect_timeout = 2s;
    return o;
  }

  std::unique_ptr<PgSink> open_sink(PgSinkOptions o) {
    auto opened = PgSink::open(std::move(o));
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().detail);
    return opened.ok() ? std::move(opened.value()) : nullptr;
  }
  std::unique_ptr<PgSink> open_sink() { return open_sink(options()); }

  std::int64_t query(const std::string& sql) const { return test::pg_query_int(url_, sql); }

  static bool restart_server(bool start) {
    return test::run_pg_script(start ? "start '" + dir_ + "' " + std::to_string(port_) : "stop '" + dir_ + "'",
                      out_);
  }

  // Appends seqs [from, to) of one activity and waits for their acks.
  static void append_and_wait(PgSink& sink, const std::string& activity, std::int64_t from,
                              std::int64_t to) {
    Acks acks;
    for (std::int64_t s = from; s < to; ++s) sink.append(make_draw(activity, s), acks.ack());
    ASSERT_TRUE(acks.wait_total(static_cast<int>(to - from)));
    ASSERT_EQ(acks.durable(), to - from);
  }

  static bool found(PgSink& sink, const std::string& draw_id) {
    auto r = sink.find_draw(draw_id);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return r.ok() && r.value().has_value();
  }

  std::string url_;

  static inline std::string root_;
  static inline std::string dir_;
  static inline std::string out_;
  static inline std::string base_url_;
  static inline std::string setup_error_;
  static inline int port_ = 0;
  static inline bool started_ = false;
  static inline int schemas_ = 0;
};

// ---------------------------------------------------------------------------------

TEST_F(PgSinkTest, MigrationsAreAppliedOnceWhenInstancesStartTogether) {
  ASSERT_FALSE(postgres_migrations().empty());
  std::vector<std::unique_ptr<PgSink>> sinks(3);
  std::vector<std::string> errors(3);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    threads.emplace_back([&, i] {
      auto opened = PgSink::open(options());
      if (opened.ok()) {
        sinks[i] = std::move(opened.value());
      } else {
        errors[i] = opened.error().detail;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < sinks.size(); ++i) EXPECT_TRUE(sinks[i]) << errors[i];
  sinks.clear();
  auto again = open_sink();  // a later start finds nothing to do
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->healthy());

  EXPECT_EQ(query("SELECT COUNT(*) FROM schema_migrations"),
            static_cast<std::int64_t>(postgres_migrations().size()));
  EXPECT_EQ(query("SELECT MAX(version) FROM schema_migrations"),
            postgres_migrations().back().version);
  EXPECT_EQ(query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()"
                  " AND table_name IN ('draws', 'activities', 'epochs')"),
            3);
  EXPECT_EQ(query("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema()"
                  " AND tablename = 'draws' AND indexname IN"
                  " ('draws_by_idempotency_key', 'draws_by_user', 'draws_by_time')"),
            3);
}

TEST_F(PgSinkTest, RefusesASchemaNewerThanTheBuild) {
  { ASSERT_TRUE(open_sink()); }
  ASSERT_TRUE(test::pg_exec(url_, "INSERT INTO schema_migrations VALUES (9999, '9999_future', 0)"));
  auto opened = PgSink::open(options());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::unavailable);
  EXPECT_NE(opened.error().detail.find("9999"), std::string::npos) << opened.error().detail;
}

TEST_F(PgSinkTest, OpenErrorsNameTheServerButNeverThePassword) {
  const int closed = pick_pg_port();
  ASSERT_NE(closed, 0);
  PgSinkOptions o;
  o.url = "postgresql://fairdraw:S3cret-pw%40x@127.0.0.1:" + std::to_string(closed) + "/fairdraw";
  o.connect_timeout = 1s;
  auto opened = PgSink::open(o);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::unavailable);
  const std::string& detail = opened.error().detail;
  EXPECT_NE(detail.find("127.0.0.1:" + std::to_string(closed)), std::string::npos) << detail;
  EXPECT_EQ(detail.find("S3cret"), std::string::npos) << detail;

  o.url = "postgresql://fairdraw:S3cret-pw@127.0.0.1:" + std::to_string(closed) + "/db?bogus=1";
  auto malformed = PgSink::open(o);
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().kind, ErrorKind::invalid_request);
  EXPECT_EQ(malformed.error().detail.find("S3cret"), std::string::npos) << malformed.error().detail;

  o.url = "";
  auto empty = PgSink::open(o);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().kind, ErrorKind::invalid_request);
}

TEST_F(PgSinkTest, AckedDrawIsReadable) {
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  Acks acks;
  DrawRecord miss = make_draw("a", 0);
  DrawRecord win = make_win("a", 1, "p1");
  win.user_id = "";  // empty strings stay strings, not NULL
  // Characters that matter to array literals, COPY's text format and quoting travel unchanged.
  DrawRecord odd = make_win("a", 2, "NULL");
  odd.user_id = R"(u "quoted", {braced} \back\ NULL \N)";
  odd.prize_name = "Prix d'été ☃ \t tab, 'single'\nsecond line\r\n\\.\n\\N";
  odd.idempotency_key = "k,\"}{";
  sink->append(miss, acks.ack());
  sink->append(win, acks.ack());
  sink->append(odd, acks.ack());
  ASSERT_TRUE(acks.wait_total(3));
  EXPECT_EQ(acks.durable(), 3) << sink->last_error();
  EXPECT_TRUE(sink->healthy());

  auto got = sink->find_draw(win.draw_id);
  ASSERT_TRUE(got.ok()) << got.error().detail;
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

  auto o = sink->find_draw(odd.draw_id);
  ASSERT_TRUE(o.ok() && o.value().has_value());
  EXPECT_EQ(o.value()->user_id, odd.user_id);
  EXPECT_EQ(o.value()->prize_id, std::optional<std::string>("NULL"));
  EXPECT_EQ(o.value()->prize_name, odd.prize_name);
  EXPECT_EQ(o.value()->idempotency_key, odd.idempotency_key);

  auto none = sink->find_draw("no-such-draw");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());

  const SinkStats s = sink->stats();
  EXPECT_EQ(s.committed_rows, 3u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_EQ(s.failed_batches, 0u);
  EXPECT_GT(s.last_commit_seconds, 0.0);
}

TEST_F(PgSinkTest, GroupCommitBatchesConcurrentAppends) {
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1500;
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
  EXPECT_EQ(query("SELECT COUNT(*) FROM draws"), kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    auto totals = load_totals(*sink, "act" + std::to_string(t));
    ASSERT_TRUE(totals.ok());
    EXPECT_EQ(totals->next_seq, kPerThread);
  }
}

TEST_F(PgSinkTest, DuplicateDrawIdIsStoredOnceAndAckedEachTime) {
  PgSinkOptions o = options();
  o.max_batch_delay = 300ms;  // the first three rows share one batch
  auto sink = open_sink(o);
  ASSERT_TRUE(sink);
  const DrawRecord first = make_draw("a", 0);
  DrawRecord redelivered = first;
  redelivered.user_id = "someone-else";  // the first write stands
  Acks acks;
  sink->append(first, acks.ack());
  sink->append(redelivered, acks.ack());
  sink->append(make_draw("a", 1), acks.ack());
  ASSERT_TRUE(acks.wait_total(3));
  EXPECT_EQ(acks.durable(), 3);
  // A later batch: one row stored already (the plain INSERT fails on it, the batch goes
  // again skipping it), one new row, which is stored.
  sink->append(first, acks.ack());
  sink->append(make_draw("a", 2), acks.ack());
  ASSERT_TRUE(acks.wait_total(5));
  EXPECT_EQ(acks.durable(), 5);
  EXPECT_EQ(query("SELECT COUNT(*) FROM draws"), 3);
  auto got = sink->find_draw(first.draw_id);
  ASSERT_TRUE(got.ok() && got.value().has_value());
  EXPECT_EQ(got.value()->user_id, "u1");
  EXPECT_TRUE(found(*sink, make_draw("a", 2).draw_id));
  EXPECT_TRUE(sink->healthy());
  EXPECT_EQ(sink->stats().failed_batches, 0u);
  EXPECT_EQ(sink->stats().committed_rows, 5u);
}

TEST_F(PgSinkTest, ARowTheDatabaseRejectsIsRefusedAloneAndOthersCommit) {
  PgSinkOptions o = options();
  o.max_batch_delay = 300ms;
  auto sink = open_sink(o);
  ASSERT_TRUE(sink);
  Acks acks;
  DrawRecord clash = make_draw("a", 1);
  clash.draw_id = "another-id";  // same (activity_id, seq), different draw: a real conflict
  sink->append(make_draw("a", 0), acks.ack());
  sink->append(make_draw("a", 1), acks.ack());
  sink->append(clash, acks.ack());
  sink->append(make_draw("a", 2), acks.ack());
  ASSERT_TRUE(acks.wait_total(4));
  EXPECT_EQ(acks.durable(), 3);
  EXPECT_EQ(acks.refused(), 1);
  EXPECT_FALSE(found(*sink, "another-id"));
  EXPECT_TRUE(found(*sink, make_draw("a", 2).draw_id));
  EXPECT_NE(sink->last_error().find("another-id"), std::string::npos) << sink->last_error();
  EXPECT_TRUE(sink->healthy());
  EXPECT_EQ(sink->stats().failed_batches, 0u);
}

TEST_F(PgSinkTest, AuditTrailPagesInSeqOrder) {
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 25);
  append_and_wait(*sink, "other", 0, 3);

  std::vector<std::int64_t> seen;
  std::int64_t after = -1;
  std::vector<std::optional<std::string>> nexts;
  for (int guard = 0; guard < 10; ++guard) {
    auto page = sink->activity_draws("a", after, 10);
    ASSERT_TRUE(page.ok()) << page.error().detail;
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
  auto zero = sink->activity_draws("a", -1, 0);
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->items.empty());
}

TEST_F(PgSinkTest, UserDrawsPageNewestFirst) {
  auto sink = open_sink();
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

  auto first = sink->user_draws("u1", std::nullopt, std::nullopt, 2);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->next.has_value());
  const DrawRecord& last = first->items.back();
  EXPECT_EQ(*first->next, std::to_string(last.drawn_at_ms) + "." + std::to_string(last.seq) + "." +
                              last.draw_id);

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

TEST_F(PgSinkTest, FindsByIdempotencyKey) {
  auto sink = open_sink();
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

TEST_F(PgSinkTest, LoadsTotalsForRecovery) {
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  Acks acks;
  for (std::int64_t s = 0; s < 250; ++s) {
    DrawRecord r =
        s % 10 == 0 ? make_win("a", s, s % 20 == 0 ? "gold" : "silver") : make_draw("a", s);
    r.user_id = "u" + std::to_string(s % 3);
    r.epoch = s < 40 ? 0 : (s < 140 ? 1 : 2);
    if (s % 10 == 5) r.candidate_id = "gold";  // a stock-out: candidate without a prize
    sink->append(r, acks.ack());
  }
  append_and_wait(*sink, "other", 0, 7);
  ASSERT_TRUE(acks.wait_total(250));

  UserCounts users;
  // make_draw's rows were drawn at 1'700'000'000'000 + seq: "since" counts seqs 200..249.
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

  // The live draws among the last 100 seqs (150..249), those at or after seq 200's time;
  // seqs 0..149 are all older, so none is left out.
  std::vector<std::int64_t> seqs;
  auto live = sink->load_live_draws("a", 1'700'000'000'000 + 200, 100,
                                    [&](const DrawRecord& r) { seqs.push_back(r.seq); });
  ASSERT_TRUE(live.ok()) << live.error().detail;
  EXPECT_EQ(live->delivered, 50u);
  ASSERT_EQ(seqs.size(), 50u);
  EXPECT_EQ(seqs.front(), 200);
  EXPECT_EQ(seqs.back(), 249);
  EXPECT_FALSE(live->newest_left_out_ms);
  // The last 10 only: seqs 200..239 are live and left out.
  auto fewer = sink->load_live_draws("a", 1'700'000'000'000 + 200, 10, [](const DrawRecord&) {});
  ASSERT_TRUE(fewer.ok());
  EXPECT_EQ(fewer->delivered, 10u);
  EXPECT_EQ(fewer->newest_left_out_ms, std::optional<std::int64_t>(1'700'000'000'000 + 239));
}

TEST_F(PgSinkTest, DrawsSinceAndUserCountsSince) {
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  Acks acks;
  for (std::int64_t s = 0; s < 20; ++s) {
    sink->append(make_draw("a", s, s % 2 == 0 ? "even" : "odd", 1000 + s * 100), acks.ack());
  }
  ASSERT_TRUE(acks.wait_total(20));

  auto since = sink->draws_since("a", 2000, 100);
  ASSERT_TRUE(since.ok()) << since.error().detail;
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

TEST_F(PgSinkTest, ActivitiesAndEpochsRoundTrip) {
  EpochRecord e0;
  e0.activity_id = "a";
  e0.epoch = 0;
  for (std::size_t i = 0; i < e0.seed.size(); ++i)
    e0.seed[i] = static_cast<std::uint8_t>(i * 7 + 1);
  e0.seed[3] = 0;  // a zero byte inside the seed
  e0.seed[4] = 0xff;
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
    auto sink = open_sink();
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->save_activity({"a", R"({"name":"A"})", false, 10, 10}).ok());
    ASSERT_TRUE(sink->save_activity({"b", R"({"name":"B'; --"})", false, 20, 20}).ok());
    ASSERT_TRUE(sink->save_activity({"a", R"({"name":"A2"})", true, 10, 30}).ok());  // replace
    ASSERT_TRUE(sink->save_epoch(e1).ok());
    ASSERT_TRUE(sink->save_epoch(e0).ok());
    e0.revealed_at_ms = 12345;
    auto revealed = sink->save_epoch(e0);  // reveal: replaces the row
    ASSERT_TRUE(revealed.ok()) << revealed.error().detail;
  }
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  auto activities = sink->load_activities();
  ASSERT_TRUE(activities.ok()) << activities.error().detail;
  ASSERT_EQ(activities->size(), 2u);
  const StoredActivity& a = (*activities)[0];
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.config_json, R"({"name":"A2"})");
  EXPECT_TRUE(a.ended);
  EXPECT_EQ(a.created_at_ms, 10);
  EXPECT_EQ(a.updated_at_ms, 30);
  EXPECT_EQ((*activities)[1].id, "b");
  EXPECT_EQ((*activities)[1].config_json, R"({"name":"B'; --"})");
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
  EXPECT_EQ(query("SELECT length(seed) FROM epochs WHERE epoch = 0"), 32);

  auto none = sink->load_epochs("b");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  ASSERT_TRUE(test::pg_exec(url_, "UPDATE epochs SET seed = '\\x0102' WHERE epoch = 1"));
  auto corrupt = sink->load_epochs("a");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().kind, ErrorKind::internal);
}

TEST_F(PgSinkTest, FlushAndStopCommitsEverythingDurably) {
  Acks acks;
  constexpr int kRows = 3000;
  {
    auto sink = open_sink();
    ASSERT_TRUE(sink);
    for (std::int64_t s = 0; s < kRows; ++s) sink->append(make_draw("a", s), acks.ack());
    sink->flush_and_stop();
    EXPECT_EQ(acks.durable(), kRows);  // every ack fired before flush_and_stop returned
    sink->flush_and_stop();            // idempotent
    sink->append(make_draw("a", kRows), acks.ack());
    EXPECT_EQ(acks.refused(), 1);  // refused at once after stop
    EXPECT_TRUE(found(*sink, make_draw("a", kRows - 1).draw_id));  // reads still work
    EXPECT_TRUE(sink->save_activity({"a", "{}", false, 1, 1}).ok());
  }
  EXPECT_EQ(query("SELECT COUNT(*) FROM draws"), kRows);
  auto sink = open_sink();
  ASSERT_TRUE(sink);
  auto totals = load_totals(*sink, "a");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->next_seq, kRows);
}

TEST_F(PgSinkTest, SmallPoolServesManyConcurrentReaders) {
  PgSinkOptions o = options();
  o.read_connections = 2;
  o.application_name = "fairdraw-small-pool";
  auto sink = open_sink(o);
  ASSERT_TRUE(sink);
  append_and_wait(*sink, "a", 0, 50);
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 6; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 30; ++i) {
        auto page = sink->activity_draws("a", -1, 100);
        if (!page.ok() || page->items.size() != 50u) ++failures;
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(query("SELECT COUNT(*) FROM pg_stat_activity"
                  " WHERE application_name = 'fairdraw-small-pool'"),
            3);  // the writer and at most two pooled connections
}

// The server goes away under load and comes back: the writer reconnects, every
// appended row ends up stored once with ack(true), and health reflects the outage.
TEST_F(PgSinkTest, SurvivesAServerRestartWhileAppending) {
  PgSinkOptions o = options();
  o.commit_attempts = 400;  // outlasts the outage: ~40 s at the capped backoff
  o.retry_backoff = 10ms;
  o.max_retry_backoff = 100ms;
  o.health_check_interval = 50ms;
  o.connect_timeout = 1s;
  auto sink = open_sink(o);
  ASSERT_TRUE(sink);
  Acks acks;
  std::atomic<int> appended{0};
  std::atomic<bool> stop_appending{false};
  std::thread appender([&] {
    while (!stop_appending.load()) {
      const int seq = appended.load();
      sink->append(make_draw("r", seq), acks.ack());
      appended.store(seq + 1);
      std::this_thread::sleep_for(1ms);
    }
  });

  ASSERT_TRUE(wait_until([&] { return acks.durable() >= 100; }, 20s));
  {
    // Concurrent reads leave several connections in the pool, all to die with the server.
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) {
      readers.emplace_back([&] {
        for (int i = 0; i < 5; ++i) EXPECT_TRUE(sink->activity_draws("r", -1, 50).ok());
      });
    }
    for (auto& t : readers) t.join();
  }
  ASSERT_TRUE(restart_server(false)) << test::read_text_file(out_);
  const bool went_unhealthy = wait_until([&] { return !sink->healthy(); }, 10s);
  EXPECT_TRUE(went_unhealthy);
  std::this_thread::sleep_for(300ms);  // appends keep queueing while it is down
  EXPECT_FALSE(sink->healthy());
  const int during_outage = appended.load();
  ASSERT_TRUE(restart_server(true)) << test::read_text_file(out_);
  EXPECT_TRUE(wait_until([&] { return sink->healthy(); }, 20s)) << sink->last_error();
  ASSERT_TRUE(wait_until([&] { return appended.load() >= during_outage + 100; }, 20s));
  stop_appending.store(true);
  appender.join();

  const int total = appended.load();
  ASSERT_TRUE(acks.wait_total(total, 40s)) << sink->last_error();
  EXPECT_EQ(acks.durable(), total) << sink->last_error();
  EXPECT_EQ(query("SELECT COUNT(*) FROM draws"), total);
  EXPECT_EQ(query("SELECT COUNT(DISTINCT seq) FROM draws WHERE seq >= 0 AND seq < " +
                  std::to_string(total)),
            total);
  EXPECT_TRUE(sink->healthy());
  // Pooled connections died with the server; reads reconnect by themselves.
  for (int i = 0; i < 6; ++i) {
    auto page = sink->activity_draws("r", -1, 10);
    ASSERT_TRUE(page.ok()) << page.error().detail;
    EXPECT_EQ(page->items.size(), 10u);
  }
  EXPECT_TRUE(found(*sink, make_draw("r", total - 1).draw_id));
}

// Not part of the suite (run with --gtest_also_run_disabled_tests): insert
// throughput of one writer, rows appended by 4 threads.
TEST_F(PgSinkTest, DISABLED_Throughput) {
  constexpr int kThreads = 4;
  const int per_thread = std::getenv("FAIRDRAW_PG_BENCH_ROWS") != nullptr
                             ? std::atoi(std::getenv("FAIRDRAW_PG_BENCH_ROWS")) / kThreads
                             : 50000;
  PgSinkOptions o = options();
  o.max_queue = static_cast<std::size_t>(kThreads * per_thread);  // measure commits, not refusals
  auto sink = open_sink(o);
  ASSERT_TRUE(sink);
  Acks acks;
  const auto begun = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string activity = "bench" + std::to_string(t);
      for (int s = 0; s < per_thread; ++s) {
        DrawRecord r = make_draw(activity, s, "user-" + std::to_string(s % 1000));
        if (s % 3 == 0) {
          r.candidate_id = "p1";
          r.prize_id = "p1";
          r.prize_name = "Prize one";
          r.won = true;
        }
        sink->append(std::move(r), acks.ack());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(acks.wait_total(kThreads * per_thread, 300s));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begun).count();
  EXPECT_EQ(acks.durable(), kThreads * per_thread);
  const SinkStats s = sink->stats();
  std::printf("PgSink: %d rows in %.2f s = %.0f rows/s, %llu batches (%.0f rows/batch)\n",
              kThreads * per_thread, seconds, kThreads * per_thread / seconds,
              static_cast<unsigned long long>(s.committed_batches),
              static_cast<double>(s.committed_rows) /
                  static_cast<double>(std::max<std::uint64_t>(s.committed_batches, 1)));
}

}  // namespace
}  // namespace fairdraw
