// StreamWorker against a real redis-server (one per test) and a real PostgreSQL
// (scripts/pg-test-server.sh, one per suite, a schema per test): entries persisted once and
// acked, PostgreSQL stopped mid-way, a dead consumer's entries claimed, trimming that never
// drops pending or unread entries, malformed entries, and records as RedisStore writes them.
#include "fairdraw/redis/stream_worker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/redis/connection.hpp"
#include "fairdraw/redis/redis_store.hpp"
#include "fairdraw/sink/pg_sink.hpp"
#include "redis_test_server.hpp"
#include "support/pg_test_tools.hpp"


namespace fairdraw::redis {
namespace {

using namespace std::chrono_literals;
using test::IoThreads;
using test::RedisTestServer;
using fairdraw::test::kInitdb;
using fairdraw::test::pick_pg_port;
using test::wait_until;

constexpr const char* kGroup = "fairdraw-persist";

// ---- helpers (PostgreSQL ones are in tests/support/pg_test_tools.hpp) -----------------------

// A Sink decorator: can refuse every append at once (as a sink whose database is down
// would, after its retries), or hold appends (their acks never come until released).
class SwitchSink final : public Sink {
 public:
  explicit SwitchSink(Sink& inner) : inner_(inner) {}
  void refuse(bool on) { refuse_.store(on); }
  void hold(bool on) {
    std::vector<std::pair<DrawRecord, Ack>> release;
    {
      std::lock_guard lock(mutex_);
      hold_ = on;
      if (!on) release.swap(held_);
    }
    for (auto& [r, a] : release) inner_.append(std::move(r), std::move(a));
  }
  std::size_t appended() const { return appended_.load(); }

  void append(DrawRecord record, Ack ack) override {
    appended_.fetch_add(1);
    if (refuse_.load()) return ack(false);
    {
      std::lock_guard lock(mutex_);
      if (hold_) {
        held_.emplace_back(std::move(record), std::move(ack));
        return;
      }
    }
    inner_.append(std::move(record), std::move(ack));
  }
  void flush_and_stop() override {
    hold(false);
    inner_.flush_and_stop();
  }
  bool healthy() const override { return !refuse_.load() && inner_.healthy(); }
  SinkStats stats() const override { return inner_.stats(); }
  Result<std::optional<DrawRecord>> find_draw(std::string_view id) override { return inner_.find_draw(id); }
  Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view a, std::string_view k) override {
    return inner_.find_by_idempotency_key(a, k);
  }
  Result<DrawPage> activity_draws(std::string_view a, std::int64_t after, std::size_t n) override {
    return inner_.activity_draws(a, after, n);
  }
  Result<DrawPage> user_draws(std::string_view u, std::optional<std::string_view> a,
                              std::optional<std::string_view> c, std::size_t n) override {
    return inner_.user_draws(u, a, c, n);
  }
  Result<std::vector<DrawRecord>> draws_since(std::string_view a, std::int64_t s, std::size_t n) override {
    return inner_.draws_since(a, s, n);
  }
  Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(std::string_view a,
                                                                              std::int64_t s) override {
    return inner_.user_counts_since(a, s);
  }
  Status save_activity(const StoredActivity& a) override { return inner_.save_activity(a); }
  Result<std::vector<StoredActivity>> load_activities() override { return inner_.load_activities(); }
  Status save_epoch(const EpochRecord& e) override { return inner_.save_epoch(e); }
  Result<std::vector<EpochRecord>> load_epochs(std::string_view a) override { return inner_.load_epochs(a); }
  Result<ActivityTotals> load_totals(std::string_view a, std::int64_t s,
                                     const AddUserCounts& add) override {
    return inner_.load_totals(a, s, add);
  }
  Result<LiveDraws> load_live_draws(std::string_view a, std::int64_t s, std::size_t n,
                                    const OnDraw& on_draw) override {
    return inner_.load_live_draws(a, s, n, on_draw);
  }

 private:
  Sink& inner_;
  std::atomic<bool> refuse_{false};
  std::atomic<std::size_t> appended_{0};
  std::mutex mutex_;
  bool hold_ = false;
  std::vector<std::pair<DrawRecord, Ack>> held_;
};

class StreamWorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::access(kInitdb, X_OK) != 0 || !test::redis_server_available()) return;
    char pattern[] = "/tmp/fairdraw_sw_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) {
      setup_error_ = "mkdtemp failed";
      return;
    }
    root_ = made;
    ::chmod(made, 0711);  // as root, the server runs as `postgres` and must reach root_/pg
    out_ = root_ + "/script.out";
    dir_ = root_ + "/pg";
    for (int attempt = 0; attempt < 3 && !started_; ++attempt) {
      port_ = pick_pg_port();
      if (port_ == 0) continue;
      started_ = fairdraw::test::run_pg_script("start '" + dir_ + "' " + std::to_string(port_), out_);
    }
    if (!started_) {
      setup_error_ = "scripts/pg-test-server.sh start failed:\n" + fairdraw::test::read_text_file(out_);
      return;
    }
    base_url_ = fairdraw::test::pg_script_output("url '" + dir_ + "' " + std::to_string(port_));
    if (base_url_.rfind("postgresql://", 0) != 0) {
      setup_error_ = "scripts/pg-test-server.sh url printed '" + base_url_ + "'";
      started_ = false;
    }
  }

  static void TearDownTestSuite() {
    if (started_) fairdraw::test::run_pg_script("stop '" + dir_ + "'", out_);
    started_ = false;
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
    root_.clear();
  }

  void SetUp() override {
    if (!test::redis_server_available()) GTEST_SKIP() << "no " << test::kRedisServer;
    if (::access(kInitdb, X_OK) != 0) GTEST_SKIP() << kInitdb << " is missing";
    ASSERT_TRUE(started_) << setup_error_;
    const std::string schema = "sw_" + std::to_string(++schemas_);
    ASSERT_TRUE(fairdraw::test::pg_exec(base_url_, "CREATE SCHEMA " + schema));
    url_ = base_url_ + "?options=-csearch_path%3D" + schema;
    redis_ = std::make_unique<RedisTestServer>();
    ASSERT_TRUE(redis_->running());
    io_ = std::make_unique<IoThreads>();
    raw_ = RedisConnection::create(io_->io(), redis_options());
  }

  void TearDown() override {
    workers_.clear();
    sinks_.clear();
    if (raw_) raw_->close();
    raw_.reset();
    io_.reset();
    redis_.reset();
    // A running PostgreSQL is left for the next test (a test that stopped it restarts it).
    if (started_ && fairdraw::test::pg_query_int(base_url_, "SELECT 1") != 1) restart_pg(true);
    if (HasFailure()) {
      std::lock_guard lock(log_mutex_);
      for (const auto& line : logs_) std::fprintf(stderr, "worker log: %s\n", line.c_str());
    }
  }

  RedisOptions redis_options() const {
    RedisOptions o;
    o.host = "127.0.0.1";
    o.port = redis_->port();
    o.connect_timeout = 1000ms;
    o.command_timeout = 2000ms;
    o.reconnect_backoff_max = 200ms;
    return o;
  }

  PgSinkOptions sink_options() const {
    PgSinkOptions o;
    o.url = url_;
    o.connect_timeout = 2s;
    o.health_check_interval = 100ms;
    return o;
  }

  PgSink& open_sink(PgSinkOptions o) {
    auto opened = PgSink::open(std::move(o));
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().detail);
    if (!opened.ok()) throw std::runtime_error("PgSink::open failed");
    sinks_.push_back(std::move(opened.value()));
    return *sinks_.back();
  }
  PgSink& open_sink() { return open_sink(sink_options()); }

  // A RedisStore's options on the test's Redis, activity configs in JSON as the service stores them.
  RedisStoreOptions store_options() const {
    RedisStoreOptions o;
    o.redis = redis_options();
    o.prepare_ahead_draws = 1;
    o.encode_config = [](const ActivityConfig& a) { return app::activity_config_json(a).dump(); };
    o.decode_config = [](const std::string& s) { return app::parse_activity(nlohmann::json::parse(s)); };
    return o;
  }

  StreamWorkerOptions worker_options(const std::string& consumer) {
    StreamWorkerOptions o;
    o.redis = redis_options();
    o.consumer = consumer;
    o.batch = 64;
    o.max_round = 256;
    o.block = 50ms;
    o.discover_interval = 50ms;
    o.maintain_interval = 100ms;
    o.claim_interval = 100ms;
    o.claim_idle = std::chrono::hours(1);  // no claiming unless a test asks for it
    o.retry_backoff_min = 20ms;
    o.retry_backoff_max = 200ms;
    o.log = [this, consumer](WorkerLogLevel, std::string_view message, std::string_view detail) {
      std::lock_guard lock(log_mutex_);
      logs_.push_back(consumer + ": " + std::string(message) + " " + std::string(detail));
    };
    return o;
  }

  StreamWorker& start_worker(StreamWorkerOptions o, Sink& sink) {
    workers_.push_back(std::make_unique<StreamWorker>(std::move(o), sink));
    workers_.back()->start();
    return *workers_.back();
  }

  Result<RedisReply> redis(std::vector<std::string> argv) {
    auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
    auto future = promise->get_future();
    raw_->command(std::move(argv), [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    if (future.wait_for(5s) != std::future_status::ready) {
      return make_error(ErrorKind::internal, "test: no reply within 5 s");
    }
    return future.get();
  }

  std::int64_t redis_int(std::vector<std::string> argv) {
    auto r = redis(std::move(argv));
    return r.ok() && r->is_integer() ? r->integer : -1;
  }

  static std::string key(const std::string& activity) { return "fd:{" + activity + "}:stream"; }

  // An entry as RedisStore's draw script writes it; returns its stream id.
  std::string xadd_draw(const std::string& activity, std::int64_t seq, bool won = false) {
    char id[64];
    std::snprintf(id, sizeof id, "D%s%08lld", activity.c_str(), static_cast<long long>(seq));
    std::vector<std::string> argv{"XADD", key(activity), "*", "activity_id", activity,
                                  "idempotency_key", "k-" + std::to_string(seq), "draw_id", id,
                                  "user_id", "u" + std::to_string(seq % 7), "seq", std::to_string(seq),
                                  "epoch", std::to_string(seq / 100), "slot", std::to_string(seq % 100),
                                  "drawn_at_ms", std::to_string(1'790'000'000'000 + seq)};
    if (won) {
      argv.insert(argv.end(), {"candidate_id", "p1", "prize_id", "p1", "prize_name", "Prize one"});
    }
    argv.insert(argv.end(), {"won", won ? "1" : "0"});
    auto r = redis(std::move(argv));
    EXPECT_TRUE(r.ok() && r->is_string()) << (r.ok() ? r->str : r.error().detail);
    return r.ok() ? r->str : "";
  }

  void add_activity(const std::string& activity) {
    EXPECT_GE(redis_int({"SADD", "fd:activities", activity}), 0);
  }

  std::int64_t pending(const std::string& activity) {
    auto r = redis({"XPENDING", key(activity), kGroup});
    if (!r.ok() || !r->is_array() || r->elements.empty()) return -1;
    return r->elements[0].integer;
  }

  std::int64_t rows(const std::string& where = "TRUE") {
    return fairdraw::test::pg_query_int(url_, "SELECT COUNT(*) FROM draws WHERE " + where);
  }

  static bool restart_pg(bool start) {
    return fairdraw::test::run_pg_script(start ? "start '" + dir_ + "' " + std::to_string(port_) : "stop '" + dir_ + "'",
                         out_);
  }

  static std::optional<StreamLag> lag_of(const StreamWorker& w, const std::string& activity) {
    for (const StreamLag& l : w.stats().streams) {
      if (l.activity_id == activity) return l;
    }
    return std::nullopt;
  }

  std::string url_;
  std::unique_ptr<RedisTestServer> redis_;
  std::unique_ptr<IoThreads> io_;
  std::shared_ptr<RedisConnection> raw_;
  std::vector<std::unique_ptr<PgSink>> sinks_;          // destroyed after the workers
  std::vector<std::unique_ptr<StreamWorker>> workers_;
  std::mutex log_mutex_;
  std::vector<std::string> logs_;

  static inline std::string root_;
  static inline std::string dir_;
  static inline std::string out_;
  static inline std::string base_url_;
  static inline std::string setup_error_;
  static inline int port_ = 0;
  static inline bool started_ = false;
  static inline int schemas_ = 0;
};

// ---------------------------------------------------------------------------------------------

TEST_F(StreamWorkerTest, PersistsEveryEntryOnceAndAcksIt) {
  add_activity("a");
  add_activity("b");
  // Entries written before any worker (and before the group) exist are delivered too.
  for (int s = 0; s < 150; ++s) xadd_draw("a", s, s % 10 == 0);
  PgSink& sink = open_sink();
  StreamWorker& worker = start_worker(worker_options("w1"), sink);
  for (int s = 150; s < 300; ++s) xadd_draw("a", s, s % 10 == 0);
  for (int s = 0; s < 200; ++s) xadd_draw("b", s);

  ASSERT_TRUE(wait_until([&] { return rows() == 500 && pending("a") == 0 && pending("b") == 0; }, 20s))
      << "rows " << rows() << ", pending a " << pending("a") << ", b " << pending("b");
  EXPECT_EQ(rows("activity_id = 'a'"), 300);
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT COUNT(DISTINCT seq) FROM draws WHERE activity_id = 'a'"), 300);
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT MAX(seq) FROM draws WHERE activity_id = 'b'"), 199);
  EXPECT_EQ(rows("won"), 30);
  EXPECT_EQ(rows("won AND prize_id = 'p1' AND candidate_id = 'p1' AND prize_name = 'Prize one'"), 30);
  EXPECT_EQ(rows("NOT won AND prize_id IS NULL AND candidate_id IS NULL AND prize_name IS NULL"), 470);

  // Each entry was delivered once and acked once; then trimmed away.
  ASSERT_TRUE(wait_until([&] { return redis_int({"XLEN", key("a")}) == 0 && redis_int({"XLEN", key("b")}) == 0; },
                         5s))
      << "acked entries must be trimmed; XLEN a = " << redis_int({"XLEN", key("a")});
  const auto s = worker.stats();
  EXPECT_EQ(s.read, 500u);
  EXPECT_EQ(s.acked, 500u);
  EXPECT_EQ(s.claimed, 0u);
  EXPECT_EQ(s.refused, 0u);
  EXPECT_EQ(s.trimmed, 500u);
  EXPECT_TRUE(s.redis_ok);
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending == 0 && l->unread == 0 && l->length == 0;
  }, 2s));
}

TEST_F(StreamWorkerTest, RecordsAreExactlyWhatRedisStoreDrew) {
  ManualClock clock{1'790'000'000'000};
  FixedEntropy entropy{11};
  RedisStore store(io_->io(), store_options(), clock, entropy);
  ActivityConfig config;
  config.name = "round trip";
  config.miss_weight = 5;
  config.prizes = {Prize{"gold", "Gold \"bar\" ✓", 3, 2}, Prize{"tin", "Tin", 2, 100}};
  ASSERT_TRUE(store.put_activity("rt", config, clock.now_ms()).ok());

  std::vector<DrawRecord> drawn;
  for (int i = 0; i < 40; ++i) {
    auto promise = std::make_shared<std::promise<Result<DrawOutcome>>>();
    auto future = promise->get_future();
    store.draw(DrawCommand{"rt", "user-" + std::to_string(i % 5), "key-" + std::to_string(i), clock.now_ms()},
               [promise](Result<DrawOutcome> r) { promise->set_value(std::move(r)); });
    ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
    auto outcome = future.get();
    ASSERT_TRUE(outcome.ok()) << outcome.error().detail;
    drawn.push_back(outcome->record);
    clock.advance(7);
  }

  PgSink& sink = open_sink();
  start_worker(worker_options("w1"), sink);
  ASSERT_TRUE(wait_until([&] { return rows() == 40 && pending("rt") == 0; }, 20s)) << rows();
  int wins = 0;
  for (const DrawRecord& want : drawn) {
    auto got = sink.find_draw(want.draw_id);
    ASSERT_TRUE(got.ok()) << got.error().detail;
    ASSERT_TRUE(got->has_value()) << want.draw_id;
    const DrawRecord& r = **got;
    EXPECT_EQ(r.activity_id, "rt");
    EXPECT_EQ(r.seq, want.seq);
    EXPECT_EQ(r.epoch, want.epoch);
    EXPECT_EQ(r.slot, want.slot);
    EXPECT_EQ(r.user_id, want.user_id);
    EXPECT_EQ(r.idempotency_key, want.idempotency_key);
    EXPECT_EQ(r.candidate_id, want.candidate_id);
    EXPECT_EQ(r.prize_id, want.prize_id);
    EXPECT_EQ(r.prize_name, want.prize_name);
    EXPECT_EQ(r.won, want.won);
    EXPECT_EQ(r.drawn_at_ms, want.drawn_at_ms);
    wins += r.won ? 1 : 0;
  }
  EXPECT_GT(wins, 0);
  EXPECT_EQ(rows("prize_id = 'gold'"), 2) << "stock of gold is 2";
}

// The users' index of unpersisted draws is one sorted set per activity since 2026-11-25; draws
// indexed by earlier versions (a sorted set per user, ids scored by drawn_at_ms) are still found
// by a user's reads and cleaned by the worker once persisted, beside the new ones.
TEST_F(StreamWorkerTest, UnpersistedIndexOfEarlierVersionsIsReadAndCleaned) {
  ManualClock clock{1'790'000'000'000};
  FixedEntropy entropy{12};
  RedisStore store(io_->io(), store_options(), clock, entropy);
  ActivityConfig config;
  config.name = "index";
  config.miss_weight = 1;
  config.prizes = {Prize{"p", "P", 1, 100}};
  ASSERT_TRUE(store.put_activity("ix", config, clock.now_ms()).ok());

  // Draws of "old" and "new", two per millisecond, older first.
  std::vector<DrawRecord> old_draws;
  std::vector<DrawRecord> new_draws;
  for (int i = 0; i < 12; ++i) {
    auto promise = std::make_shared<std::promise<Result<DrawOutcome>>>();
    auto future = promise->get_future();
    const std::string user = i % 2 == 0 ? "old" : "new";
    store.draw(DrawCommand{"ix", user, "key-" + std::to_string(i), clock.now_ms()},
               [promise](Result<DrawOutcome> r) { promise->set_value(std::move(r)); });
    ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
    auto outcome = future.get();
    ASSERT_TRUE(outcome.ok()) << outcome.error().detail;
    (i % 2 == 0 ? old_draws : new_draws).push_back(outcome->record);
    if (i % 4 == 3) clock.advance(5);
  }
  // "old"'s draws as an earlier version indexed them.
  const std::string byuser = "fd:{ix}:unpersisted:byuser";
  for (const DrawRecord& r : old_draws) {
    auto moved = redis({"ZREM", byuser, "old" + std::string(1, '\0') + r.draw_id});
    ASSERT_TRUE(moved.ok() && moved->is_integer() && moved->integer == 1) << r.draw_id;
    ASSERT_TRUE(redis({"ZADD", "fd:{ix}:unpersisted:u:old", std::to_string(r.drawn_at_ms), r.draw_id}).ok());
  }
  ASSERT_EQ(redis({"ZCARD", byuser})->integer, 6);

  const auto ids_of = [](std::vector<DrawRecord> records) {
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.draw_id);
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  for (const auto* want : {&old_draws, &new_draws}) {
    const std::string user = want == &old_draws ? "old" : "new";
    auto all = store.unpersisted_user_draws(user, std::string("ix"), 100);
    ASSERT_TRUE(all.ok()) << all.error().detail;
    EXPECT_EQ(ids_of(all.value()), ids_of(*want)) << user;
    // The newest 1 before the last millisecond, with its millisecond's other draw, and every
    // draw at the cursor's millisecond.
    const std::int64_t last_ms = want->back().drawn_at_ms;
    auto page = store.unpersisted_user_draws(user, std::string("ix"), 1, last_ms);
    ASSERT_TRUE(page.ok()) << page.error().detail;
    std::vector<DrawRecord> expected;
    for (const auto& r : *want) {
      if (r.drawn_at_ms == last_ms || r.drawn_at_ms == last_ms - 5) expected.push_back(r);
    }
    EXPECT_EQ(ids_of(page.value()), ids_of(expected)) << user;
  }

  PgSink& sink = open_sink();
  start_worker(worker_options("w1"), sink);
  ASSERT_TRUE(wait_until([&] { return rows() == 12 && pending("ix") == 0; }, 20s)) << rows();
  ASSERT_TRUE(wait_until(
      [&] {
        return redis({"HLEN", "fd:{ix}:unpersisted"})->integer == 0 && redis({"ZCARD", byuser})->integer == 0 &&
               redis({"EXISTS", "fd:{ix}:unpersisted:u:old"})->integer == 0;
      },
      10s));
}

TEST_F(StreamWorkerTest, PostgresStoppedMidwayBacklogGrowsNothingAckedThenAllPersistedOnce) {
  add_activity("a");
  PgSinkOptions o = sink_options();
  o.commit_attempts = 2;  // refuse quickly while the server is down
  o.retry_backoff = 20ms;
  o.max_retry_backoff = 50ms;
  PgSink& sink = open_sink(o);
  StreamWorker& worker = start_worker(worker_options("w1"), sink);
  for (int s = 0; s < 100; ++s) xadd_draw("a", s);
  ASSERT_TRUE(wait_until([&] { return rows() == 100 && pending("a") == 0; }, 20s)) << rows();
  const auto acked_before = worker.stats().acked;
  EXPECT_EQ(acked_before, 100u);

  ASSERT_TRUE(restart_pg(false)) << fairdraw::test::read_text_file(out_);
  for (int s = 100; s < 400; ++s) xadd_draw("a", s);
  ASSERT_TRUE(wait_until([&] { return worker.stats().refused > 0; }, 20s))
      << "the sink must have refused while the database is down";
  std::this_thread::sleep_for(600ms);
  // The backlog is all in the stream: delivered-but-unacked plus never read, nothing trimmed.
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending + l->unread == 300;
  }, 3s));
  const auto l = lag_of(worker, "a");
  EXPECT_GT(l->unread, 0) << "no new entries are read while the sink refuses";
  EXPECT_GE(l->length, 300);
  EXPECT_EQ(redis_int({"XLEN", key("a")}), l->length);
  EXPECT_EQ(worker.stats().acked, acked_before) << "nothing may be acked while the database is down";
  EXPECT_GT(worker.stats().retrying, 0u);

  ASSERT_TRUE(restart_pg(true)) << fairdraw::test::read_text_file(out_);
  ASSERT_TRUE(wait_until([&] { return rows() == 400 && pending("a") == 0; }, 30s))
      << "rows " << rows() << ", pending " << pending("a");
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT COUNT(DISTINCT seq) FROM draws"), 400);
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT MIN(seq) FROM draws"), 0);
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT MAX(seq) FROM draws"), 399);
  ASSERT_TRUE(wait_until([&] { return worker.stats().acked == 400; }, 5s)) << worker.stats().acked;
  EXPECT_EQ(worker.stats().retrying, 0u);
  EXPECT_EQ(worker.stats().poisoned, 0u);
  ASSERT_TRUE(wait_until([&] { return redis_int({"XLEN", key("a")}) == 0; }, 5s));
}

// The lag figures come from a pass of their own: they follow the stream while a round waits
// for a sink that does not answer (PostgreSQL down), instead of keeping their last value.
TEST_F(StreamWorkerTest, LagStaysLiveWhileARoundWaitsForTheSink) {
  add_activity("a");
  PgSink& pg = open_sink();
  SwitchSink stuck(pg);
  stuck.hold(true);
  StreamWorkerOptions o = worker_options("w1");
  o.batch = 40;
  o.max_round = 40;
  for (int s = 0; s < 100; ++s) xadd_draw("a", s);
  StreamWorker& worker = start_worker(o, stuck);
  ASSERT_TRUE(wait_until([&] { return stuck.appended() == 40; }, 10s)) << stuck.appended();
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending == 40 && l->unread == 60;
  }, 3s));
  for (int s = 100; s < 150; ++s) xadd_draw("a", s);
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending == 40 && l->unread == 110 && l->length == 150;
  }, 3s)) << "the lag must follow the stream while the round is blocked";
  EXPECT_EQ(stuck.appended(), 40u) << "no new entry is read while a round waits";

  stuck.hold(false);
  ASSERT_TRUE(wait_until([&] { return rows() == 150 && pending("a") == 0; }, 20s)) << rows();
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending == 0 && l->unread == 0;
  }, 3s));
}

TEST_F(StreamWorkerTest, ASecondWorkerClaimsEntriesPendingForADeadOne) {
  add_activity("a");
  PgSink& pg = open_sink();
  SwitchSink stuck(pg);
  stuck.hold(true);  // the first worker's database never answers: its round stays pending
  StreamWorkerOptions first = worker_options("dying");
  first.batch = 40;
  first.max_round = 40;
  for (int s = 0; s < 100; ++s) xadd_draw("a", s);
  StreamWorker& dying = start_worker(first, stuck);
  ASSERT_TRUE(wait_until([&] { return stuck.appended() == 40; }, 10s)) << stuck.appended();
  dying.stop(0ms);  // "dies" with its round unacknowledged
  EXPECT_EQ(pending("a"), 40);
  EXPECT_EQ(dying.stats().acked, 0u);

  StreamWorkerOptions second = worker_options("survivor");
  second.claim_idle = 300ms;
  second.dead_consumer_idle = 500ms;
  StreamWorker& survivor = start_worker(second, pg);
  ASSERT_TRUE(wait_until([&] { return rows() == 100 && pending("a") == 0; }, 20s))
      << "rows " << rows() << ", pending " << pending("a");
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT COUNT(DISTINCT seq) FROM draws"), 100);
  const auto s = survivor.stats();
  EXPECT_EQ(s.claimed, 40u);
  EXPECT_EQ(s.read, 60u);
  EXPECT_EQ(s.acked, 100u);
  // The dead consumer, with nothing pending any more, leaves the group.
  ASSERT_TRUE(wait_until([&] {
    auto r = redis({"XINFO", "CONSUMERS", key("a"), kGroup});
    if (!r.ok() || !r->is_array()) return false;
    for (const auto& c : r->elements) {
      for (std::size_t i = 0; i + 1 < c.elements.size(); i += 2) {
        if (c.elements[i].str == "name" && c.elements[i + 1].str == "dying") return false;
      }
    }
    return true;
  }, 5s));
  // The held appends reach the database late: stored once all the same.
  stuck.hold(false);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(rows(), 100);
}

TEST_F(StreamWorkerTest, TrimNeverDropsPendingOrUnreadEntries) {
  add_activity("a");
  ASSERT_TRUE(redis({"XGROUP", "CREATE", key("a"), kGroup, "0", "MKSTREAM"}).ok());
  std::vector<std::string> ids;
  for (int s = 0; s < 100; ++s) ids.push_back(xadd_draw("a", s));
  // A dead consumer took entries 0..9 and acked 0..4 only.
  auto taken = redis({"XREADGROUP", "GROUP", kGroup, "ghost", "COUNT", "10", "STREAMS", key("a"), ">"});
  ASSERT_TRUE(taken.ok() && taken->is_array());
  ASSERT_EQ(redis_int({"XACK", key("a"), kGroup, ids[0], ids[1], ids[2], ids[3], ids[4]}), 5);

  PgSink& pg = open_sink();
  SwitchSink sink(pg);
  sink.refuse(true);  // the database refuses everything for now
  StreamWorkerOptions o = worker_options("w1");
  o.batch = 10;
  o.max_round = 10;
  StreamWorker& worker = start_worker(o, sink);
  // The worker read one batch (10..19), which the sink refuses: pending 15, unread 80.
  ASSERT_TRUE(wait_until([&] { return worker.stats().refused >= 10; }, 10s));
  ASSERT_TRUE(wait_until([&] {
    auto l = lag_of(worker, "a");
    return l && l->pending == 15 && l->unread == 80;
  }, 5s));
  std::this_thread::sleep_for(400ms);  // a few maintenance passes
  EXPECT_EQ(redis_int({"XLEN", key("a")}), 95) << "only the acked entries before the oldest pending go";
  EXPECT_EQ(worker.stats().acked, 0u);

  sink.refuse(false);
  ASSERT_TRUE(wait_until([&] { return rows() == 90 && pending("a") == 5; }, 20s))
      << "rows " << rows() << ", pending " << pending("a");
  // Everything but the ghost's 5..9 is persisted and acked; the trim stops at entry 5 (the
  // oldest pending one), so 5..99 stay for now.
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(redis_int({"XLEN", key("a")}), 95);
  auto left = redis({"XRANGE", key("a"), "-", "+", "COUNT", "5"});
  ASSERT_TRUE(left.ok() && left->is_array());
  ASSERT_EQ(left->elements.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(left->elements[i].elements[0].str, ids[5 + i]);

  // New entries are persisted as usual and kept until the ghost's are done with.
  for (int s = 100; s < 120; ++s) xadd_draw("a", s);
  ASSERT_TRUE(wait_until([&] { return rows() == 110; }, 10s)) << rows();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(redis_int({"XLEN", key("a")}), 115);

  // Once someone claims the ghost's entries, the stream empties.
  StreamWorkerOptions claimer = worker_options("w2");
  claimer.claim_idle = 200ms;
  start_worker(claimer, pg);
  ASSERT_TRUE(wait_until([&] { return rows() == 115 && pending("a") == 0; }, 20s)) << rows();
  ASSERT_TRUE(wait_until([&] { return redis_int({"XLEN", key("a")}) == 0; }, 5s));
  EXPECT_EQ(rows("seq < 5"), 0) << "entries 0..4 were acked by the ghost (never ours to write)";
}

TEST_F(StreamWorkerTest, MalformedEntryGoesToTheDeadLetterStreamAndOthersAreWritten) {
  add_activity("a");
  xadd_draw("a", 0);
  ASSERT_TRUE(redis({"XADD", key("a"), "*", "activity_id", "a", "draw_id", "broken", "seq", "x"}).ok());
  ASSERT_TRUE(redis({"XADD", key("a"), "*", "activity_id", "other", "idempotency_key", "k", "draw_id", "D2",
                     "user_id", "u", "seq", "2", "epoch", "0", "slot", "2", "drawn_at_ms", "1", "won", "0"})
                  .ok());
  xadd_draw("a", 3);
  PgSink& sink = open_sink();
  StreamWorker& worker = start_worker(worker_options("w1"), sink);
  ASSERT_TRUE(wait_until([&] { return rows() == 2 && pending("a") == 0; }, 10s)) << rows();
  EXPECT_EQ(worker.stats().dead_lettered, 2u);
  EXPECT_EQ(redis_int({"XLEN", key("a") + ":dead"}), 2);
  auto dead = redis({"XRANGE", key("a") + ":dead", "-", "+"});
  ASSERT_TRUE(dead.ok() && dead->is_array() && dead->elements.size() == 2);
  const RedisReply& fields = dead->elements[0].elements[1];
  ASSERT_GE(fields.elements.size(), 4u);
  EXPECT_EQ(fields.elements[0].str, "source_id");
  EXPECT_EQ(fields.elements[2].str, "reason");
  ASSERT_TRUE(wait_until([&] { return redis_int({"XLEN", key("a")}) == 0; }, 5s));
}

TEST_F(StreamWorkerTest, TwoWorkersShareTheStreamsAndWriteEachRowOnce) {
  for (const char* a : {"a", "b", "c"}) add_activity(a);
  PgSink& sink = open_sink();
  StreamWorkerOptions o1 = worker_options("w1");
  StreamWorkerOptions o2 = worker_options("w2");
  o1.claim_idle = o2.claim_idle = 200ms;  // they may even claim from each other: still once
  start_worker(o1, sink);
  start_worker(o2, sink);
  std::vector<std::thread> writers;
  for (const char* a : {"a", "b", "c"}) {
    writers.emplace_back([this, a] {
      for (int s = 0; s < 300; ++s) xadd_draw(a, s, s % 50 == 0);
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_TRUE(wait_until([&] { return rows() == 900 && pending("a") == 0 && pending("b") == 0 && pending("c") == 0; },
                         20s))
      << rows();
  EXPECT_EQ(fairdraw::test::pg_query_int(url_, "SELECT COUNT(DISTINCT (activity_id, seq)) FROM draws"), 900);
  std::uint64_t acked = 0;
  for (const auto& w : workers_) acked += w->stats().acked;
  EXPECT_EQ(acked, 900u);
}

// Run by hand: --gtest_also_run_disabled_tests --gtest_filter='*StreamWorker*Throughput*'.
TEST_F(StreamWorkerTest, DISABLED_Throughput) {
  constexpr int kActivities = 4;
  constexpr int kPerActivity = 25'000;
  for (int a = 0; a < kActivities; ++a) add_activity("t" + std::to_string(a));
  // Pipelined XADDs (in chunks below the connection's max_pipeline), as draws leave them.
  std::atomic<int> failed{0};
  for (int s = 0; s < kPerActivity; s += 128) {
    std::atomic<int> left{0};
    std::promise<void> chunk_done;
    const int n = std::min(128, kPerActivity - s);
    left = n * kActivities;
    for (int i = s; i < s + n; ++i) {
      for (int a = 0; a < kActivities; ++a) {
        const std::string activity = "t" + std::to_string(a);
        raw_->command({"XADD", key(activity), "*", "activity_id", activity, "idempotency_key",
                       "k-" + std::to_string(i), "draw_id", activity + "-" + std::to_string(i), "user_id", "u",
                       "seq", std::to_string(i), "epoch", "0", "slot", std::to_string(i), "drawn_at_ms", "1",
                       "won", "0"},
                      [&](Result<RedisReply> r) {
                        if (!r.ok() || !r->is_string()) failed.fetch_add(1);
                        if (left.fetch_sub(1) == 1) chunk_done.set_value();
                      });
      }
    }
    chunk_done.get_future().wait();
  }
  ASSERT_EQ(failed.load(), 0);
  for (int a = 0; a < kActivities; ++a) ASSERT_EQ(redis_int({"XLEN", key("t" + std::to_string(a))}), kPerActivity);
  PgSink& sink = open_sink();
  StreamWorkerOptions o = worker_options("bench");
  o.batch = 512;
  o.max_round = 8192;
  const auto started = std::chrono::steady_clock::now();
  StreamWorker& worker = start_worker(o, sink);
  ASSERT_TRUE(wait_until([&] { return worker.stats().acked == kActivities * kPerActivity; }, 120s))
      << worker.stats().acked;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(rows(), kActivities * kPerActivity);
  std::printf("stream -> PostgreSQL: %d rows in %.2f s = %.0f rows/s\n", kActivities * kPerActivity, seconds,
              kActivities * kPerActivity / seconds);
}

}  // namespace
}  // namespace fairdraw::redis
