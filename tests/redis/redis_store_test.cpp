// RedisStore against a real redis-server: the draw path, idempotency, quotas, stock under
// concurrency, epochs and reveals, admin changes, tokens, two instances on one Redis, and
// Redis going away and coming back.
#include "fairdraw/redis/redis_store.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/engine/deck.hpp"
#include "fairdraw/redis/connection.hpp"
#include "redis_test_server.hpp"

namespace fairdraw::redis {
namespace {

using namespace std::chrono_literals;
using test::IoThreads;
using test::RedisTestServer;
using SteadyClock = std::chrono::steady_clock;

constexpr std::int64_t kStart = 1'790'000'000'000;  // 2026-09-21

ActivityConfig make_config(std::vector<std::pair<std::uint32_t, std::int64_t>> prizes,
                           std::uint32_t miss) {
  ActivityConfig c;
  c.name = "test";
  c.miss_weight = miss;
  for (std::size_t i = 0; i < prizes.size(); ++i) {
    c.prizes.push_back(Prize{"p" + std::to_string(i), "Prize " + std::to_string(i),
                             prizes[i].first, prizes[i].second});
  }
  return c;
}

std::string field(const RedisReply& pairs, const std::string& name) {
  for (std::size_t i = 0; i + 1 < pairs.elements.size(); i += 2) {
    if (pairs.elements[i].str == name) return pairs.elements[i + 1].str;
  }
  return "<absent>";
}

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::redis_server_available()) GTEST_SKIP() << "no " << test::kRedisServer;
    server_ = std::make_unique<RedisTestServer>(server_args());
    ASSERT_TRUE(server_->running());
    io_ = std::make_unique<IoThreads>();
    raw_ = RedisConnection::create(io_->io(), redis_options(5000ms));
    store_ = make_store(entropy_);
  }
  void TearDown() override {
    store_.reset();
    store2_.reset();
    raw_.reset();
    io_.reset();
    server_.reset();
  }

  virtual std::vector<std::string> server_args() { return {}; }

  RedisOptions redis_options(std::chrono::milliseconds command_timeout = 1000ms) {
    RedisOptions o;
    o.host = "127.0.0.1";
    o.port = server_->port();
    o.connect_timeout = 1000ms;
    o.command_timeout = command_timeout;
    o.reconnect_backoff_max = 200ms;
    return o;
  }

  std::unique_ptr<RedisStore> make_store(Entropy& entropy, RedisStoreOptions options = {}) {
    options.redis = redis_options();
    options.encode_config = [](const ActivityConfig& a) { return app::activity_config_json(a).dump(); };
    options.decode_config = [](const std::string& s) {
      return app::parse_activity(nlohmann::json::parse(s));
    };
    if (options.prepare_ahead_draws == RedisStoreOptions{}.prepare_ahead_draws) {
      options.prepare_ahead_draws = 1;
    }
    return std::make_unique<RedisStore>(io_->io(), std::move(options), clock_, entropy);
  }

  Result<DrawOutcome> draw(RedisStore& store, const std::string& user, const std::string& key,
                           const std::string& activity = "a") {
    auto promise = std::make_shared<std::promise<Result<DrawOutcome>>>();
    auto future = promise->get_future();
    auto calls = std::make_shared<std::atomic<int>>(0);
    store.draw(DrawCommand{activity, user, key, clock_.now_ms()},
               [promise, calls](Result<DrawOutcome> r) {
                 if (calls->fetch_add(1) == 0) promise->set_value(std::move(r));
                 else ADD_FAILURE() << "draw callback ran twice";
               });
    if (future.wait_for(10s) != std::future_status::ready) {
      return make_error(ErrorKind::internal, "test: no draw callback within 10 s");
    }
    return future.get();
  }
  Result<DrawOutcome> draw(const std::string& user, const std::string& key,
                           const std::string& activity = "a") {
    return draw(*store_, user, key, activity);
  }

  Result<RedisReply> run(std::vector<std::string> argv) {
    auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
    auto future = promise->get_future();
    raw_->command(std::move(argv), [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    if (future.wait_for(10s) != std::future_status::ready) {
      return make_error(ErrorKind::internal, "test: no reply within 10 s");
    }
    return future.get();
  }

  ManualClock clock_{kStart};
  FixedEntropy entropy_{7};
  FixedEntropy entropy2_{8};
  std::unique_ptr<RedisTestServer> server_;
  std::unique_ptr<IoThreads> io_;
  std::shared_ptr<RedisConnection> raw_;
  std::unique_ptr<RedisStore> store_;
  std::unique_ptr<RedisStore> store2_;
};

TEST_F(RedisStoreTest, DrawIsInTheStreamBeforeItIsAcknowledged) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto r = draw("alice", "k1");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->record.seq, 0);
  EXPECT_FALSE(r->replayed);
  EXPECT_EQ(r->record.activity_id, "a");
  EXPECT_EQ(r->record.user_id, "alice");
  EXPECT_EQ(r->record.idempotency_key, "k1");
  EXPECT_EQ(r->record.drawn_at_ms, kStart);
  EXPECT_EQ(r->record.draw_id.size(), 26u);
  auto entries = run({"XRANGE", "fd:{a}:stream", "-", "+"});
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->elements.size(), 1u) << "acknowledged draw must already be in the stream";
  const RedisReply& fields = entries->elements[0].elements.at(1);
  EXPECT_EQ(field(fields, "draw_id"), r->record.draw_id);
  EXPECT_EQ(field(fields, "activity_id"), "a");
  EXPECT_EQ(field(fields, "user_id"), "alice");
  EXPECT_EQ(field(fields, "idempotency_key"), "k1");
  EXPECT_EQ(field(fields, "seq"), "0");
  EXPECT_EQ(field(fields, "epoch"), "0");
  EXPECT_EQ(field(fields, "won"), r->record.won ? "1" : "0");
  EXPECT_EQ(field(fields, "drawn_at_ms"), std::to_string(kStart));
  if (r->record.won) {
    EXPECT_EQ(field(fields, "prize_id"), "p0");
    EXPECT_EQ(field(fields, "prize_name"), "Prize 0");
    EXPECT_EQ(r->record.prize_name, "Prize 0");
  } else {
    EXPECT_EQ(field(fields, "prize_id"), "<absent>");
  }
}

TEST_F(RedisStoreTest, UnknownActivityIsNotFound) {
  auto r = draw("alice", "k1", "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::activity_not_found);
  EXPECT_EQ(store_->get_activity("nope", kStart).error().kind, ErrorKind::activity_not_found);
  EXPECT_EQ(store_->fairness("nope").error().kind, ErrorKind::activity_not_found);
  EXPECT_EQ(store_->end_activity("nope", kStart).error().kind, ErrorKind::activity_not_found);
}

TEST_F(RedisStoreTest, SameKeyReplaysAndDifferentBodyIsRefused) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto first = draw("alice", "k1");
  ASSERT_TRUE(first.ok());
  auto again = draw("alice", "k1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->record.draw_id, first->record.draw_id);
  EXPECT_EQ(again->record.seq, first->record.seq);
  EXPECT_EQ(again->record.won, first->record.won);
  EXPECT_EQ(again->record.candidate_id, first->record.candidate_id);
  auto other = draw("bob", "k1");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::idempotency_key_reused);
  EXPECT_EQ(run({"XLEN", "fd:{a}:stream"})->integer, 1);
  // Keys are scoped per activity.
  ASSERT_TRUE(store_->put_activity("b", make_config({{1, 10}}, 1), kStart).ok());
  auto elsewhere = draw("alice", "k1", "b");
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_FALSE(elsewhere->replayed);
  // The stored result expires with the idempotency TTL.
  const auto ttl = run({"PTTL", "fd:{a}:idem:k1"});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->integer, 0);
  EXPECT_LE(ttl->integer, RedisStoreOptions{}.idempotency_ttl_ms);
}

// Results stored before the result became one MessagePack string were a hash of the fields:
// a retry within their TTL still replays them (and still refuses another user).
TEST_F(RedisStoreTest, ResultStoredAsAHashByAnEarlierVersionStillReplays) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  ASSERT_TRUE(run({"HSET", "fd:{a}:idem:old", "draw_id", "01OLDDRAW0000000000000000A", "user_id",
                   "alice", "seq", "41", "epoch", "0", "slot", "41", "drawn_at_ms",
                   std::to_string(kStart - 5), "candidate_id", "p0", "prize_id", "p0",
                   "prize_name", "Prize 0", "won", "1"})
                  .ok());
  ASSERT_EQ(run({"PEXPIRE", "fd:{a}:idem:old", "60000"})->integer, 1);
  auto replay = draw("alice", "old");
  ASSERT_TRUE(replay.ok()) << replay.error().detail;
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->record.draw_id, "01OLDDRAW0000000000000000A");
  EXPECT_EQ(replay->record.seq, 41);
  EXPECT_EQ(replay->record.drawn_at_ms, kStart - 5);
  EXPECT_TRUE(replay->record.won);
  EXPECT_EQ(replay->record.prize_name, "Prize 0");
  auto other = draw("bob", "old");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::idempotency_key_reused);
  EXPECT_EQ(run({"XLEN", "fd:{a}:stream"})->integer, 0);
  EXPECT_EQ(run({"GET", "fd:{a}:seq"})->type, RedisReply::Type::nil);
  // A new key's result is one string (with its TTL), and replays the same.
  auto fresh = draw("carol", "new");
  ASSERT_TRUE(fresh.ok()) << fresh.error().detail;
  EXPECT_EQ(run({"TYPE", "fd:{a}:idem:new"})->str, "string");
  auto again = draw("carol", "new");
  ASSERT_TRUE(again.ok()) << again.error().detail;
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->record.draw_id, fresh->record.draw_id);
  EXPECT_EQ(again->record.seq, fresh->record.seq);
  EXPECT_EQ(again->record.drawn_at_ms, fresh->record.drawn_at_ms);
  EXPECT_EQ(again->record.won, fresh->record.won);
  EXPECT_EQ(again->record.candidate_id, fresh->record.candidate_id);
  EXPECT_EQ(again->record.prize_id, fresh->record.prize_id);
}

// The per-day counts get their TTL when a user first draws that day; later draws of the
// same user leave it (and the count goes on).
TEST_F(RedisStoreTest, DayCountsExpireTwoDaysAfterTheDaysFirstUser) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 100}}, 1), kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  const std::string day_key = "fd:{a}:day:" + std::to_string(kStart / 86'400'000);
  const auto ttl = run({"TTL", day_key});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->integer, 172'000);
  EXPECT_LE(ttl->integer, 172'800);
  ASSERT_EQ(run({"EXPIRE", day_key, "1000"})->integer, 1);
  ASSERT_TRUE(draw("alice", "k2").ok());
  const auto kept = run({"TTL", day_key});
  ASSERT_TRUE(kept.ok());
  EXPECT_GT(kept->integer, 900);
  EXPECT_LE(kept->integer, 1000);
  EXPECT_EQ(run({"HGET", day_key, "alice"})->str, "2");
  // Two days from the day's first new user: later new users leave the TTL (EXPIRE NX, no AOF
  // record each), a key that lost its TTL gets one again.
  ASSERT_TRUE(draw("bob", "k3").ok());
  EXPECT_LE(run({"TTL", day_key})->integer, 1000);
  ASSERT_EQ(run({"PERSIST", day_key})->integer, 1);
  ASSERT_TRUE(draw("carol", "k4").ok());
  EXPECT_GT(run({"TTL", day_key})->integer, 172'000);
}

TEST_F(RedisStoreTest, ReplayStillWorksAfterTheActivityEnded) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto first = draw("alice", "k1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(store_->end_activity("a", kStart).ok());
  auto replay = draw("alice", "k1");
  ASSERT_TRUE(replay.ok()) << replay.error().detail;
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->record.draw_id, first->record.draw_id);
}

TEST_F(RedisStoreTest, QuotaRefusalTakesNoSequenceNumber) {
  auto config = make_config({{1, 100}}, 1);
  config.max_draws_per_user = 2;
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  ASSERT_TRUE(draw("alice", "k2").ok());
  auto third = draw("alice", "k3");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().kind, ErrorKind::quota_exhausted);
  auto bob = draw("bob", "k4");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->record.seq, 2);
  // Refused draws are not stored under their key: a retry is evaluated again.
  auto retry = draw("alice", "k3");
  ASSERT_FALSE(retry.ok());
  EXPECT_EQ(retry.error().kind, ErrorKind::quota_exhausted);
  EXPECT_EQ(run({"EXISTS", "fd:{a}:idem:k3"})->integer, 0);
  EXPECT_EQ(run({"XLEN", "fd:{a}:stream"})->integer, 3);
  EXPECT_EQ(run({"HGET", "fd:{a}:users", "alice"})->str, "2");
}

TEST_F(RedisStoreTest, PerDayQuotaResetsOnTheNextLocalDay) {
  auto config = make_config({{1, 100}}, 1);
  config.max_draws_per_user_per_day = 1;
  config.time_zone = "Asia/Kolkata";
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  auto refused = draw("alice", "k2");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::quota_exhausted);
  EXPECT_TRUE(draw("bob", "k2b").ok());
  clock_.advance(24 * 3600 * 1000);
  EXPECT_TRUE(draw("alice", "k3").ok());
}

TEST_F(RedisStoreTest, WindowAndEndMakeTheActivityInactive) {
  auto config = make_config({{1, 100}}, 1);
  config.starts_at_ms = kStart + 60'000;
  config.ends_at_ms = kStart + 3'600'000;
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  EXPECT_EQ(store_->get_activity("a", kStart)->status, ActivityStatus::scheduled);
  auto early = draw("alice", "k1");
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().kind, ErrorKind::activity_not_active);
  clock_.advance(60'000);
  ASSERT_TRUE(draw("alice", "k2").ok());
  EXPECT_EQ(store_->get_activity("a", clock_.now_ms())->status, ActivityStatus::active);
  ASSERT_TRUE(store_->end_activity("a", clock_.now_ms()).ok());
  ASSERT_TRUE(store_->end_activity("a", clock_.now_ms()).ok()) << "ending twice is harmless";
  auto late = draw("alice", "k3");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, ErrorKind::activity_not_active);
  auto put = store_->put_activity("a", config, clock_.now_ms());
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().kind, ErrorKind::activity_not_active);
  EXPECT_EQ(store_->get_activity("a", clock_.now_ms())->status, ActivityStatus::ended);
  // Ending reveals the epoch that was under way.
  auto fairness = store_->fairness("a");
  ASSERT_TRUE(fairness.ok());
  ASSERT_FALSE(fairness->empty());
  EXPECT_TRUE(fairness.value()[0].revealed);
  EXPECT_EQ(fairness.value()[0].first_seq, 0);
  EXPECT_EQ(commitment_hex(fairness.value()[0].record.seed), fairness.value()[0].record.commitment);
}

TEST_F(RedisStoreTest, TheWindowEndsTheActivityByItself) {
  auto config = make_config({{1, 100}}, 1);
  config.ends_at_ms = kStart + 1000;
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  clock_.advance(1000);
  auto late = draw("alice", "k2");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, ErrorKind::activity_not_active);
}

TEST_F(RedisStoreTest, ActivitiesShowRemainingStockAndDraws) {
  ASSERT_TRUE(store_->put_activity("b", make_config({{1, 2}}, 0), kStart).value());
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 5}, {0, 3}}, 0), kStart).value());
  for (int i = 0; i < 3; ++i) {
    auto r = draw("u", "k" + std::to_string(i), "b");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->record.won, i < 2) << "W = 1, a single prize with stock 2";
  }
  auto b = store_->get_activity("b", kStart);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->draws, 3);
  EXPECT_EQ(b->epoch_size, 1u);
  EXPECT_EQ(b->prizes[0].remaining, 0);
  const auto list = store_->list_activities(kStart);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, "a");
  EXPECT_EQ(list[1].id, "b");
  EXPECT_EQ(list[0].prizes[0].remaining, 5);
  EXPECT_EQ(list[0].prizes[1].remaining, 3);
  // Stock is the total ever to be won: lowering it below the wins shows 0, never less.
  EXPECT_FALSE(store_->put_activity("b", make_config({{1, 1}}, 0), kStart).value());
  EXPECT_EQ(store_->get_activity("b", kStart)->prizes[0].remaining, 0);
  EXPECT_FALSE(store_->put_activity("b", make_config({{1, 4}}, 0), kStart).value());
  EXPECT_EQ(store_->get_activity("b", kStart)->prizes[0].remaining, 2);
  auto more = draw("u", "k-more", "b");
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(more->record.won);
  EXPECT_EQ(store_->get_activity("b", kStart)->prizes[0].remaining, 1);
}

TEST_F(RedisStoreTest, InvalidActivitiesAreRefused) {
  auto bad_id = store_->put_activity("a b", make_config({{1, 1}}, 1), kStart);
  ASSERT_FALSE(bad_id.ok());
  EXPECT_EQ(bad_id.error().kind, ErrorKind::invalid_request);
  auto empty = store_->put_activity("a", make_config({}, 0), kStart);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().kind, ErrorKind::invalid_request);
  auto config = make_config({{1, 1}}, 1);
  config.time_zone = "Mars/Olympus";
  auto tz = store_->put_activity("a", config, kStart);
  ASSERT_FALSE(tz.ok());
  EXPECT_EQ(tz.error().kind, ErrorKind::invalid_request);
}

TEST_F(RedisStoreTest, ConcurrentDrawsNeverOversellAndKeepSeqContiguous) {
  // W = 10: 4 gold (stock 3), 2 silver (stock 5), 4 misses.
  ASSERT_TRUE(store_->put_activity("a", make_config({{4, 3}, {2, 5}}, 4), kStart).ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::mutex m;
  std::vector<DrawRecord> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = draw("u" + std::to_string(i % 50), key);
        ASSERT_TRUE(r.ok()) << r.error().detail;
        std::lock_guard l(m);
        results.push_back(r->record);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::int64_t> seqs;
  std::map<std::string, int> wins;
  for (const auto& r : results) {
    seqs.insert(r.seq);
    EXPECT_EQ(r.epoch, r.seq / 10);
    EXPECT_EQ(r.slot, r.seq % 10);
    if (r.won) ++wins[*r.prize_id];
  }
  ASSERT_EQ(seqs.size(), results.size());
  EXPECT_EQ(*seqs.begin(), 0);
  EXPECT_EQ(*seqs.rbegin(), static_cast<std::int64_t>(results.size()) - 1);
  EXPECT_EQ(wins["p0"], 3);
  EXPECT_EQ(wins["p1"], 5);
  auto view = store_->get_activity("a", clock_.now_ms());
  EXPECT_EQ(view->draws, kThreads * kPerThread);
  EXPECT_EQ(view->prizes[0].remaining, 0);
  EXPECT_EQ(view->prizes[1].remaining, 0);
  EXPECT_EQ(run({"XLEN", "fd:{a}:stream"})->integer, kThreads * kPerThread);
  // Nothing prepared ahead here: every later epoch was prepared on the draw path.
  EXPECT_GT(store_->stats().epochs_built_on_draw_path, 0u);
  EXPECT_EQ(store_->stats().in_flight_draws, 0u);
  EXPECT_TRUE(store_->ready());
}

TEST_F(RedisStoreTest, FullEpochRevealsASeedThatReproducesEveryCandidate) {
  const auto config = make_config({{2, 100}, {3, 100}}, 5);  // W = 10
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  std::vector<DrawRecord> draws;
  for (int i = 0; i < 10; ++i) {
    auto before = store_->fairness("a");
    ASSERT_TRUE(before.ok());
    EXPECT_FALSE(before.value()[0].revealed) << "seed revealed before the epoch is over";
    EXPECT_EQ(before.value()[0].record.seed, Seed{});
    auto r = draw("u" + std::to_string(i), "k" + std::to_string(i));
    ASSERT_TRUE(r.ok());
    draws.push_back(r->record);
  }
  auto fairness = store_->fairness("a");
  ASSERT_TRUE(fairness.ok());
  const EpochView& epoch0 = fairness.value()[0];
  ASSERT_TRUE(epoch0.revealed);
  ASSERT_TRUE(epoch0.first_seq.has_value());
  EXPECT_EQ(*epoch0.first_seq, 0);
  EXPECT_EQ(epoch0.record.epoch_size, 10u);
  EXPECT_EQ(epoch0.record.miss_weight, 5u);
  ASSERT_EQ(epoch0.record.prizes.size(), 2u);
  EXPECT_EQ(epoch0.record.prizes[1].id, "p1");
  EXPECT_EQ(epoch0.record.prizes[1].weight, 3u);
  EXPECT_EQ(commitment_hex(epoch0.record.seed), epoch0.record.commitment);
  const std::vector<std::uint32_t> weights = {2, 3};
  const auto deck = build_deck(epoch0.record.seed, weights, 5);
  for (const auto& r : draws) {
    EXPECT_EQ(r.epoch, 0);
    const Card card = deck[static_cast<std::size_t>(r.slot)];
    if (card == kMissCard) {
      EXPECT_FALSE(r.candidate_id.has_value());
    } else {
      ASSERT_TRUE(r.candidate_id.has_value());
      EXPECT_EQ(*r.candidate_id, config.prizes[card].id);
    }
  }
  EXPECT_EQ(run({"EXISTS", "fd:{a}:deck:0"})->integer, 0) << "a used-up deck is dropped";
  // The next draw starts epoch 1, whose seed stays hidden.
  auto next = draw("late", "k-late");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->record.epoch, 1);
  EXPECT_EQ(next->record.slot, 0);
  auto after = store_->fairness("a");
  ASSERT_EQ(after->size(), 2u);
  EXPECT_FALSE(after.value()[1].revealed);
  EXPECT_EQ(after.value()[1].first_seq, 10);
}

TEST_F(RedisStoreTest, CardsBeyondIndex255ReadBackFromTheirTwoBytes) {
  // 300 prizes of weight 1 and 20 misses: W = 320, prize indices need both bytes.
  ActivityConfig config;
  config.name = "many";
  config.miss_weight = 20;
  for (int i = 0; i < 300; ++i) {
    config.prizes.push_back(Prize{"p" + std::to_string(i), "Prize " + std::to_string(i), 1, 1});
  }
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  std::vector<DrawRecord> draws;
  for (int i = 0; i < 320; ++i) {
    auto r = draw("u" + std::to_string(i), "k" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().detail;
    draws.push_back(r->record);
  }
  const auto fairness = store_->fairness("a").value();
  ASSERT_TRUE(fairness[0].revealed);
  std::vector<std::uint32_t> weights(300, 1);
  const auto deck = build_deck(fairness[0].record.seed, weights, 20);
  int won = 0;
  for (const auto& r : draws) {
    const Card card = deck[static_cast<std::size_t>(r.slot)];
    if (card == kMissCard) {
      EXPECT_FALSE(r.candidate_id.has_value());
      EXPECT_FALSE(r.won);
    } else {
      EXPECT_EQ(r.candidate_id, "p" + std::to_string(card));
      EXPECT_TRUE(r.won) << "every prize comes up once and has stock 1";
      EXPECT_EQ(r.prize_name, "Prize " + std::to_string(card));
      ++won;
    }
  }
  EXPECT_EQ(won, 300);
  const auto view = store_->get_activity("a", kStart);
  ASSERT_TRUE(view.ok());
  for (const auto& prize : view->prizes) EXPECT_EQ(prize.remaining, 0);
}

TEST_F(RedisStoreTest, ChangingTheDeckEndsTheEpochAtTheBoundaryAndVoidsPreparedEpochs) {
  store_.reset();
  RedisStoreOptions options;
  options.prepare_ahead_draws = 30;  // 3 epochs of 10 ahead
  store_ = make_store(entropy_, options);
  ASSERT_TRUE(store_->put_activity("a", make_config({{2, 100}}, 8), kStart).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(draw("u", "k" + std::to_string(i)).ok());
  store_->prepare_epochs();
  ASSERT_EQ(store_->fairness("a")->size(), 4u) << "epochs 1..3 prepared ahead";
  EXPECT_GE(store_->stats().epochs_prepared, 3u);
  // Same deck (only stock changes): the epoch goes on.
  ASSERT_FALSE(store_->put_activity("a", make_config({{2, 50}}, 8), kStart).value());
  auto same = draw("u", "k3");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->record.epoch, 0);
  EXPECT_EQ(same->record.slot, 3);
  // New weights: epoch 0 ends (seed revealed), a new epoch starts at seq 4, slot 0.
  ASSERT_FALSE(store_->put_activity("a", make_config({{5, 100}}, 5), kStart).value());
  auto changed = draw("u", "k4");
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->record.seq, 4);
  EXPECT_EQ(changed->record.slot, 0);
  EXPECT_EQ(changed->record.epoch, 4);
  auto fairness = store_->fairness("a").value();
  ASSERT_EQ(fairness.size(), 5u);
  EXPECT_TRUE(fairness[0].revealed);
  EXPECT_EQ(fairness[0].first_seq, 0);
  EXPECT_EQ(commitment_hex(fairness[0].record.seed), fairness[0].record.commitment);
  for (std::size_t e = 1; e <= 3; ++e) {
    EXPECT_TRUE(fairness[e].revealed) << "epoch prepared ahead for the old deck must be voided";
    EXPECT_FALSE(fairness[e].first_seq.has_value());
    EXPECT_EQ(commitment_hex(fairness[e].record.seed), fairness[e].record.commitment);
    EXPECT_EQ(run({"EXISTS", "fd:{a}:deck:" + std::to_string(e)})->integer, 0);
  }
  const auto& current = fairness[4];
  EXPECT_FALSE(current.revealed);
  EXPECT_EQ(current.first_seq, 4);
  EXPECT_EQ(current.record.epoch_size, 10u);
  EXPECT_EQ(current.record.prizes[0].weight, 5u);
  // The new chain goes on past its first epoch: seq 14 is epoch 5, slot 0.
  for (int i = 5; i < 15; ++i) ASSERT_TRUE(draw("u", "k" + std::to_string(i)).ok());
  auto later = draw("u", "k15");
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->record.seq, 15);
  EXPECT_EQ(later->record.epoch, 5);
  EXPECT_EQ(later->record.slot, 1);
  EXPECT_TRUE(store_->fairness("a").value()[4].revealed);
}

TEST_F(RedisStoreTest, DeckChangesDuringConcurrentDrawsSplitTheSequenceExactly) {
  const ActivityConfig configs[2] = {make_config({{2, 1000}}, 8), make_config({{5, 1000}}, 5)};
  ASSERT_TRUE(store_->put_activity("a", configs[0], kStart).ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 150;
  std::mutex m;
  std::vector<DrawRecord> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = draw("u" + std::to_string(t), "t" + std::to_string(t) + "-" + std::to_string(i));
        ASSERT_TRUE(r.ok()) << r.error().detail;
        std::lock_guard l(m);
        results.push_back(r->record);
      }
    });
  }
  for (int change = 1; change <= 10; ++change) {
    std::this_thread::sleep_for(5ms);
    auto put = store_->put_activity("a", configs[change % 2], kStart);
    ASSERT_TRUE(put.ok()) << put.error().detail;
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(store_->end_activity("a", kStart).ok());
  // Every epoch is over now: each draw must follow from its epoch's revealed seed and deck.
  const auto fairness = store_->fairness("a").value();
  std::set<std::int64_t> seqs;
  std::set<std::uint32_t> decks_used;  // by the first prize's weight: 2 or 5
  for (const auto& r : results) {
    seqs.insert(r.seq);
    ASSERT_LT(static_cast<std::size_t>(r.epoch), fairness.size());
    decks_used.insert(fairness[static_cast<std::size_t>(r.epoch)].record.prizes.at(0).weight);
    const EpochView& e = fairness[static_cast<std::size_t>(r.epoch)];
    ASSERT_TRUE(e.revealed);
    ASSERT_TRUE(e.first_seq.has_value()) << "epoch " << r.epoch << " was used";
    EXPECT_EQ(r.slot, r.seq - *e.first_seq);
    std::vector<std::uint32_t> weights;
    for (const auto& p : e.record.prizes) weights.push_back(p.weight);
    const auto deck = build_deck(e.record.seed, weights, e.record.miss_weight);
    const Card card = deck.at(static_cast<std::size_t>(r.slot));
    EXPECT_EQ(r.candidate_id.has_value(), card != kMissCard) << "seq " << r.seq;
  }
  ASSERT_EQ(seqs.size(), results.size());
  EXPECT_EQ(*seqs.rbegin(), static_cast<std::int64_t>(results.size()) - 1);
  EXPECT_EQ(decks_used.size(), 2u) << "the changes landed between draws";
  // Epochs of one chain never overlap, and a started epoch holds at most W draws.
  for (std::size_t i = 0; i + 1 < fairness.size(); ++i) {
    if (!fairness[i].first_seq) continue;
    for (std::size_t j = i + 1; j < fairness.size(); ++j) {
      if (!fairness[j].first_seq) continue;
      EXPECT_LT(*fairness[i].first_seq, *fairness[j].first_seq);
      EXPECT_LE(*fairness[j].first_seq - *fairness[i].first_seq,
                static_cast<std::int64_t>(fairness[i].record.epoch_size));
      break;
    }
  }
}

TEST_F(RedisStoreTest, TokensAreRequiredWhenConfigured) {
  store_.reset();
  RedisStoreOptions options;
  options.require_token = true;
  store_ = make_store(entropy_, options);
  auto config = make_config({{1, 10}}, 1);
  config.max_draws_per_user = 1;
  ASSERT_TRUE(store_->put_activity("a", config, kStart).ok());
  auto bogus = draw("alice", "not-a-token");
  ASSERT_FALSE(bogus.ok());
  EXPECT_EQ(bogus.error().kind, ErrorKind::invalid_token);
  auto token = store_->issue_token(clock_.now_ms());
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token.size(), 22u);
  EXPECT_EQ(token->expires_at_ms, kStart + RedisStoreOptions{}.token_ttl_ms);
  auto first = draw("alice", token->token);
  ASSERT_TRUE(first.ok()) << first.error().detail;
  auto replay = draw("alice", token->token);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  // A refused draw gives its token back.
  auto second = store_->issue_token(clock_.now_ms());
  auto refused = draw("alice", second->token);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::quota_exhausted);
  auto bob = draw("bob", second->token);
  ASSERT_TRUE(bob.ok()) << bob.error().detail;
  EXPECT_FALSE(bob->replayed);
  // An expired token is refused.
  auto expired = store_->issue_token(clock_.now_ms());
  clock_.advance(RedisStoreOptions{}.token_ttl_ms + 1);
  auto late = draw("carol", expired->token);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, ErrorKind::invalid_token);
}

TEST_F(RedisStoreTest, TwoInstancesShareOneSequenceAndNeverOversell) {
  store2_ = make_store(entropy2_);
  ASSERT_TRUE(store_->put_activity("a", make_config({{4, 3}, {2, 5}}, 4), kStart).ok());
  constexpr int kThreadsPerStore = 2;
  constexpr int kPerThread = 250;
  std::mutex m;
  std::vector<DrawRecord> results;
  std::atomic<bool> drawing{true};
  std::vector<std::thread> threads;
  // Both instances also prepare epochs meanwhile, racing each other and the draw path.
  threads.emplace_back([&] {
    while (drawing.load()) {
      store_->prepare_epochs();
      store2_->prepare_epochs();
    }
  });
  std::vector<std::thread> drawers;
  for (int t = 0; t < 2 * kThreadsPerStore; ++t) {
    drawers.emplace_back([&, t] {
      RedisStore& store = t % 2 == 0 ? *store_ : *store2_;
      for (int i = 0; i < kPerThread; ++i) {
        auto r = draw(store, "u" + std::to_string(i % 50), "t" + std::to_string(t) + "-" + std::to_string(i));
        ASSERT_TRUE(r.ok()) << r.error().detail;
        std::lock_guard l(m);
        results.push_back(r->record);
      }
    });
  }
  for (auto& t : drawers) t.join();
  drawing.store(false);
  for (auto& t : threads) t.join();
  ASSERT_EQ(results.size(), static_cast<std::size_t>(2 * kThreadsPerStore * kPerThread));
  std::set<std::int64_t> seqs;
  std::map<std::string, int> wins;
  for (const auto& r : results) {
    seqs.insert(r.seq);
    if (r.won) ++wins[*r.prize_id];
  }
  ASSERT_EQ(seqs.size(), results.size());
  EXPECT_EQ(*seqs.begin(), 0);
  EXPECT_EQ(*seqs.rbegin(), static_cast<std::int64_t>(results.size()) - 1);
  EXPECT_EQ(wins["p0"], 3);
  EXPECT_EQ(wins["p1"], 5);
  EXPECT_EQ(run({"XLEN", "fd:{a}:stream"})->integer, static_cast<std::int64_t>(results.size()));
  // Every epoch used up is revealed and reproduces its draws' candidates.
  const auto fairness = store2_->fairness("a").value();
  const std::vector<std::uint32_t> weights = {4, 2};
  std::map<std::int64_t, std::vector<Card>> decks;
  for (const auto& e : fairness) {
    if (!e.revealed) continue;
    EXPECT_EQ(commitment_hex(e.record.seed), e.record.commitment);
    decks[e.record.epoch] = build_deck(e.record.seed, weights, 4);
  }
  for (const auto& r : results) {
    auto it = decks.find(r.epoch);
    if (it == decks.end()) continue;  // the last, unfinished epoch
    const Card card = it->second[static_cast<std::size_t>(r.slot)];
    EXPECT_EQ(r.candidate_id.has_value(), card != kMissCard) << "seq " << r.seq;
    if (card != kMissCard && r.candidate_id) {
      EXPECT_EQ(*r.candidate_id, "p" + std::to_string(card));
    }
  }
  EXPECT_GE(decks.size(), 99u);
}

TEST_F(RedisStoreTest, TwoInstancesRacingToCreateAnEpochEndWithOneSeed) {
  store2_ = make_store(entropy2_);
  ASSERT_TRUE(store_->put_activity("a", make_config({{3, 100}, {2, 100}}, 5), kStart).ok());
  constexpr int kEpochs = 20;
  std::barrier sync(2);
  std::vector<Status> results(2 * kEpochs, ok_status());
  auto racer = [&](RedisStore& store, int offset) {
    for (int e = 1; e <= kEpochs; ++e) {
      sync.arrive_and_wait();
      results[static_cast<std::size_t>(offset + e - 1)] = store.prepare_epoch("a", e);
    }
  };
  std::thread first(racer, std::ref(*store_), 0);
  std::thread second(racer, std::ref(*store2_), kEpochs);
  first.join();
  second.join();
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.error().detail;
  // Each instance either created the epoch or rebuilt the winner's deck and found it equal.
  EXPECT_EQ(store_->stats().epochs_prepared, static_cast<std::uint64_t>(kEpochs));
  EXPECT_EQ(store2_->stats().epochs_prepared, static_cast<std::uint64_t>(kEpochs));
  std::map<std::int64_t, Seed> seeds;
  for (int e = 1; e <= kEpochs; ++e) {
    const std::string n = std::to_string(e);
    auto seed_hex = run({"HGET", "fd:{a}:epoch:" + n, "seed"});
    ASSERT_TRUE(seed_hex.ok());
    auto seed = seed_from_hex(seed_hex->str);
    ASSERT_TRUE(seed.has_value());
    EXPECT_EQ(run({"HGET", "fd:{a}:epoch:" + n, "commitment"})->str, commitment_hex(*seed));
    const std::vector<std::uint32_t> weights = {3, 2};
    const auto deck = build_deck(*seed, weights, 5);
    const auto stored = run({"GET", "fd:{a}:deck:" + n});
    ASSERT_TRUE(stored.ok());
    ASSERT_EQ(stored->str.size(), 20u);
    for (std::size_t i = 0; i < deck.size(); ++i) {
      const auto hi = static_cast<unsigned char>(stored->str[2 * i]);
      const auto lo = static_cast<unsigned char>(stored->str[2 * i + 1]);
      EXPECT_EQ(static_cast<Card>(hi * 256 + lo), deck[i]);
    }
    seeds[e] = *seed;
  }
  EXPECT_EQ(run({"HGET", "fd:{a}:chain", "last_epoch"})->str, std::to_string(kEpochs));
  // Draws from both instances use those seeds, and the fairness document reveals them.
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(draw(i % 2 ? *store_ : *store2_, "u", "k" + std::to_string(i)).ok());
  }
  const auto fairness = store_->fairness("a").value();
  ASSERT_EQ(fairness.size(), static_cast<std::size_t>(kEpochs + 1));
  EXPECT_TRUE(fairness[1].revealed);
  EXPECT_TRUE(fairness[2].revealed);
  EXPECT_FALSE(fairness[3].revealed);
  EXPECT_EQ(fairness[1].record.seed, seeds[1]);
  EXPECT_EQ(fairness[2].record.seed, seeds[2]);
}

TEST_F(RedisStoreTest, ATamperedDeckStopsItsEpoch) {
  store2_ = make_store(entropy2_);
  ASSERT_TRUE(store_->put_activity("a", make_config({{3, 100}, {2, 100}}, 5), kStart).ok());
  ASSERT_TRUE(store_->prepare_epoch("a", 1).ok());
  // Swap two cards that differ: same multiset, different order.
  auto deck = run({"GET", "fd:{a}:deck:1"})->str;
  std::size_t other = 2;
  while (other < deck.size() && deck.compare(other, 2, deck, 0, 2) == 0) other += 2;
  ASSERT_LT(other, deck.size());
  std::swap(deck[0], deck[other]);
  std::swap(deck[1], deck[other + 1]);
  ASSERT_TRUE(run({"SET", "fd:{a}:deck:1", deck}).ok());
  // The second instance rebuilds the deck from the seed and finds the difference.
  auto verified = store2_->prepare_epoch("a", 1);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.error().kind, ErrorKind::internal);
  EXPECT_EQ(run({"HGET", "fd:{a}:epoch:1", "corrupt"})->str, "1");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(draw("u", "k" + std::to_string(i)).ok());
  auto refused = draw("u", "k10");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::internal);
  EXPECT_EQ(store_->get_activity("a", kStart)->draws, 10) << "a refused draw takes no seq";
  // A deck change starts a new chain and draws go on.
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 100}}, 1), kStart).ok());
  auto after = draw("u", "k11");
  ASSERT_TRUE(after.ok()) << after.error().detail;
  EXPECT_EQ(after->record.seq, 10);
  EXPECT_EQ(after->record.epoch, 2);
}

TEST_F(RedisStoreTest, ASlowRedisTimesOutAndTheRetryReplaysOrDraws) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 100}}, 1), kStart).ok());
  ASSERT_TRUE(draw("alice", "k0").ok());
  // The server sleeps 2 s: the draw's command times out after 1 s.
  auto sleeper = RedisConnection::create(io_->io(), redis_options(5000ms));
  auto slept = std::make_shared<std::promise<Result<RedisReply>>>();
  sleeper->command({"DEBUG", "SLEEP", "2"}, [slept](Result<RedisReply> r) { slept->set_value(std::move(r)); });
  std::this_thread::sleep_for(100ms);
  const auto t0 = SteadyClock::now();
  auto slow = draw("alice", "k1");
  const auto elapsed = SteadyClock::now() - t0;
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.error().kind, ErrorKind::unavailable);
  EXPECT_LT(elapsed, 1800ms);
  EXPECT_FALSE(store_->ready());
  ASSERT_EQ(slept->get_future().wait_for(5s), std::future_status::ready);
  // The timed-out script may have run once the server woke up: the retry replays it, or
  // draws now; either way there is exactly one draw for the key.
  Result<DrawOutcome> retry = make_error(ErrorKind::unavailable, "not yet");
  const auto deadline = SteadyClock::now() + 5s;
  while (SteadyClock::now() < deadline) {
    retry = draw("alice", "k1");
    if (retry.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(retry.ok()) << retry.error().detail;
  EXPECT_EQ(retry->record.seq, 1);
  auto next = draw("bob", "k2");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->record.seq, 2);
  EXPECT_TRUE(store_->ready());
}

// A server with an append-only file, so a kill -9 keeps what was acknowledged.
class RedisStoreRestartTest : public RedisStoreTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fd-redis-store-XXXXXX";
    const char* dir = mkdtemp(tmpl);
    ASSERT_NE(dir, nullptr);
    dir_ = dir;
    RedisStoreTest::SetUp();
  }
  void TearDown() override {
    RedisStoreTest::TearDown();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::vector<std::string> server_args() override {
    return {"--appendonly", "yes", "--appendfsync", "always", "--dir", dir_};
  }
  std::string dir_;
};

TEST_F(RedisStoreRestartTest, RedisKilledFailsDrawsWithUnavailableAndTheyResumeAfterRestart) {
  ASSERT_TRUE(store_->put_activity("a", make_config({{1, 100}}, 1), kStart).ok());
  auto first = draw("alice", "k0");
  ASSERT_TRUE(first.ok());
  server_->kill();
  const auto t0 = SteadyClock::now();
  for (int i = 0; i < 3; ++i) {
    auto down = draw("alice", "k-down-" + std::to_string(i));
    ASSERT_FALSE(down.ok());
    EXPECT_EQ(down.error().kind, ErrorKind::unavailable) << down.error().detail;
  }
  EXPECT_LT(SteadyClock::now() - t0, 1500ms) << "each failure within the command timeout";
  EXPECT_FALSE(store_->ready());
  EXPECT_EQ(store_->get_activity("a", kStart).error().kind, ErrorKind::unavailable);
  ASSERT_TRUE(server_->start());
  Result<DrawOutcome> after = make_error(ErrorKind::unavailable, "not yet");
  const auto deadline = SteadyClock::now() + 5s;
  while (SteadyClock::now() < deadline) {
    after = draw("bob", "k1");
    if (after.ok()) break;
    EXPECT_EQ(after.error().kind, ErrorKind::unavailable) << after.error().detail;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(after.ok()) << after.error().detail;
  EXPECT_EQ(after->record.seq, 1) << "the sequence resumes where it was";
  auto replay = draw("alice", "k0");
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->record.draw_id, first->record.draw_id);
  EXPECT_TRUE(store_->ready());
}

}  // namespace
}  // namespace fairdraw::redis
