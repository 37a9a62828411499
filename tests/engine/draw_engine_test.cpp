// DrawEngine against the real SqliteSink: the draw path, idempotency, quotas,
// stock under concurrency, epochs and reveals, admin changes, and recovery.
#include "fairdraw/engine/draw_engine.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/sink/sqlite_sink.hpp"
#include "support/gated_sink.hpp"

namespace fairdraw {
namespace {

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

class DrawEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fd-engine-XXXXXX";
    dir_ = mkdtemp(tmpl);
    open();
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }

  void open(DrawEngineOptions options = {}, bool hold_live_keys = false) {
    SqliteSinkOptions sink_options;
    sink_options.path = dir_ + "/fd.db";
    auto sink = SqliteSink::open(sink_options);
    ASSERT_TRUE(sink.ok()) << sink.error().detail;
    sink_ = std::move(sink.value());
    gate_ = std::make_unique<test::GatedSink>(*sink_);
    if (hold_live_keys) gate_->hold_live_draws();
    options.encode_config = [](const ActivityConfig& a) { return app::activity_config_json(a).dump(); };
    options.decode_config = [](const std::string& s) {
      return app::parse_activity(nlohmann::json::parse(s));
    };
    if (options.prepare_ahead_draws == DrawEngineOptions{}.prepare_ahead_draws) {
      options.prepare_ahead_draws = 1;
    }
    engine_ = std::make_unique<DrawEngine>(options, *gate_, clock_, entropy_);
    auto recovered = engine_->recover();
    ASSERT_TRUE(recovered.ok()) << recovered.error().detail;
  }
  void close() {
    if (gate_) gate_->release_live_draws();  // the engine joins its restore
    engine_.reset();
    if (gate_) gate_->flush_and_stop();
    gate_.reset();
    sink_.reset();
  }

  Result<DrawOutcome> draw(const std::string& user, const std::string& key,
                           const std::string& activity = "a") {
    std::promise<Result<DrawOutcome>> promise;
    auto future = promise.get_future();
    engine_->draw(DrawCommand{activity, user, key, clock_.now_ms()},
                  [&promise](Result<DrawOutcome> r) { promise.set_value(std::move(r)); });
    return future.get();
  }

  std::string dir_;
  ManualClock clock_{kStart};
  FixedEntropy entropy_{7};
  std::unique_ptr<SqliteSink> sink_;
  std::unique_ptr<test::GatedSink> gate_;
  std::unique_ptr<DrawEngine> engine_;
};

TEST_F(DrawEngineTest, DrawIsRecordedBeforeItIsAcknowledged) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto r = draw("alice", "k1");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->record.seq, 0);
  EXPECT_FALSE(r->replayed);
  auto stored = sink_->find_draw(r->record.draw_id);
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(stored.value().has_value()) << "acknowledged draw must already be in the database";
  EXPECT_EQ(stored.value()->seq, 0);
  EXPECT_EQ(stored.value()->won, r->record.won);
}

TEST_F(DrawEngineTest, UnknownActivityIsNotFound) {
  auto r = draw("alice", "k1", "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::activity_not_found);
}

TEST_F(DrawEngineTest, SameKeyReplaysAndDifferentBodyIsRefused) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto first = draw("alice", "k1");
  ASSERT_TRUE(first.ok());
  auto again = draw("alice", "k1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->record.draw_id, first->record.draw_id);
  auto other = draw("bob", "k1");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::idempotency_key_reused);
  // Keys are scoped per activity.
  ASSERT_TRUE(engine_->put_activity("b", make_config({{1, 10}}, 1), kStart).ok());
  auto elsewhere = draw("alice", "k1", "b");
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_FALSE(elsewhere->replayed);
}

// The idempotency entry keeps the outcome packed; its replay is the original record field by
// field, with UUID-sized ids and the prize's name as it was when drawn.
TEST_F(DrawEngineTest, ReplayIsTheOriginalRecordAfterARename) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 0), kStart).ok());
  const std::string user = "3f2b8c1e-9a7d-4e6f-8b5a-1c2d3e4f5a6b";
  const std::string key = "7f1c2a9e-0000-4000-8000-100000000000";
  auto first = draw(user, key);
  ASSERT_TRUE(first.ok()) << first.error().detail;
  ASSERT_TRUE(first->record.won);
  ActivityConfig renamed = make_config({{1, 10}}, 0);
  renamed.prizes[0].name = "Renamed";
  ASSERT_TRUE(engine_->put_activity("a", renamed, kStart).ok());
  auto again = draw(user, key);
  ASSERT_TRUE(again.ok()) << again.error().detail;
  EXPECT_TRUE(again->replayed);
  const DrawRecord& a = first->record;
  const DrawRecord& b = again->record;
  EXPECT_EQ(b.draw_id, a.draw_id);
  EXPECT_EQ(b.activity_id, a.activity_id);
  EXPECT_EQ(b.seq, a.seq);
  EXPECT_EQ(b.epoch, a.epoch);
  EXPECT_EQ(b.slot, a.slot);
  EXPECT_EQ(b.user_id, a.user_id);
  EXPECT_EQ(b.idempotency_key, a.idempotency_key);
  EXPECT_EQ(b.candidate_id, a.candidate_id);
  EXPECT_EQ(b.prize_id, a.prize_id);
  EXPECT_EQ(b.prize_name, std::optional<std::string>("Prize 0"));
  EXPECT_EQ(b.won, a.won);
  EXPECT_EQ(b.drawn_at_ms, a.drawn_at_ms);
}

TEST_F(DrawEngineTest, DuplicateWhileDrawingIsInFlight) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  gate_->hold();
  std::promise<Result<DrawOutcome>> first;
  engine_->draw(DrawCommand{"a", "alice", "k1", kStart},
                [&first](Result<DrawOutcome> r) { first.set_value(std::move(r)); });
  auto second = draw("alice", "k1");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind, ErrorKind::request_in_flight);
  gate_->release();
  auto done = first.get_future().get();
  ASSERT_TRUE(done.ok());
  auto replay = draw("alice", "k1");
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
}

TEST_F(DrawEngineTest, QuotaRefusalTakesNoSequenceNumber) {
  auto config = make_config({{1, 100}}, 1);
  config.max_draws_per_user = 2;
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  ASSERT_TRUE(draw("alice", "k2").ok());
  auto third = draw("alice", "k3");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().kind, ErrorKind::quota_exhausted);
  auto bob = draw("bob", "k4");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->record.seq, 2);
  // The refused key was released: a retry is evaluated again (and refused again).
  auto retry = draw("alice", "k3");
  ASSERT_FALSE(retry.ok());
  EXPECT_EQ(retry.error().kind, ErrorKind::quota_exhausted);
}

TEST_F(DrawEngineTest, PerDayQuotaResetsOnTheNextLocalDay) {
  auto config = make_config({{1, 100}}, 1);
  config.max_draws_per_user_per_day = 1;
  config.time_zone = "Asia/Kolkata";
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  ASSERT_TRUE(draw("alice", "k1").ok());
  auto refused = draw("alice", "k2");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::quota_exhausted);
  clock_.advance(24 * 3600 * 1000);
  EXPECT_TRUE(draw("alice", "k3").ok());
}

TEST_F(DrawEngineTest, WindowAndEndMakeTheActivityInactive) {
  auto config = make_config({{1, 100}}, 1);
  config.starts_at_ms = kStart + 60'000;
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  auto early = draw("alice", "k1");
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().kind, ErrorKind::activity_not_active);
  clock_.advance(60'000);
  ASSERT_TRUE(draw("alice", "k2").ok());
  ASSERT_TRUE(engine_->end_activity("a", clock_.now_ms()).ok());
  auto late = draw("alice", "k3");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, ErrorKind::activity_not_active);
  auto put = engine_->put_activity("a", config, clock_.now_ms());
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().kind, ErrorKind::activity_not_active);
  EXPECT_EQ(engine_->get_activity("a", clock_.now_ms())->status, ActivityStatus::ended);
}

TEST_F(DrawEngineTest, ConcurrentDrawsNeverOversellAndKeepSeqContiguous) {
  // W = 10: 4 gold (stock 3), 2 silver (stock 5), 4 misses.
  ASSERT_TRUE(engine_->put_activity("a", make_config({{4, 3}, {2, 5}}, 4), kStart).ok());
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
  auto view = engine_->get_activity("a", clock_.now_ms());
  EXPECT_EQ(view->prizes[0].remaining, 0);
  EXPECT_EQ(view->prizes[1].remaining, 0);
}

TEST_F(DrawEngineTest, FullEpochRevealsASeedThatReproducesEveryCandidate) {
  const auto config = make_config({{2, 100}, {3, 100}}, 5);  // W = 10
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  std::vector<DrawRecord> draws;
  for (int i = 0; i < 10; ++i) {
    auto before = engine_->fairness("a");
    ASSERT_TRUE(before.ok());
    EXPECT_FALSE(before.value()[0].revealed) << "seed revealed before the epoch is over";
    auto r = draw("u" + std::to_string(i), "k" + std::to_string(i));
    ASSERT_TRUE(r.ok());
    draws.push_back(r->record);
  }
  auto fairness = engine_->fairness("a");
  ASSERT_TRUE(fairness.ok());
  const EpochView& epoch0 = fairness.value()[0];
  ASSERT_TRUE(epoch0.revealed);
  ASSERT_TRUE(epoch0.first_seq.has_value());
  EXPECT_EQ(*epoch0.first_seq, 0);
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
  // The next draw starts epoch 1, whose seed stays hidden.
  auto next = draw("late", "k-late");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->record.epoch, 1);
  EXPECT_EQ(next->record.slot, 0);
  auto after = engine_->fairness("a");
  EXPECT_FALSE(after.value()[1].revealed);
}

TEST_F(DrawEngineTest, ChangingTheDeckEndsTheEpochAtTheBoundary) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{2, 100}}, 8), kStart).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(draw("u", "k" + std::to_string(i)).ok());
  // Same deck (only stock changes): the epoch goes on.
  ASSERT_FALSE(engine_->put_activity("a", make_config({{2, 50}}, 8), kStart).value());
  auto same = draw("u", "k3");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->record.epoch, 0);
  EXPECT_EQ(same->record.slot, 3);
  // New weights: epoch 0 ends (seed revealed), a new epoch starts at seq 4, slot 0.
  ASSERT_FALSE(engine_->put_activity("a", make_config({{5, 100}}, 5), kStart).value());
  auto changed = draw("u", "k4");
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->record.seq, 4);
  EXPECT_EQ(changed->record.slot, 0);
  EXPECT_GT(changed->record.epoch, 0);
  auto fairness = engine_->fairness("a").value();
  EXPECT_TRUE(fairness[0].revealed);
  EXPECT_EQ(fairness[0].first_seq, 0);
  const auto& current = fairness[static_cast<std::size_t>(changed->record.epoch)];
  EXPECT_FALSE(current.revealed);
  EXPECT_EQ(current.first_seq, 4);
  EXPECT_EQ(current.record.epoch_size, 10u);
  for (const auto& e : fairness) {
    if (e.record.epoch > 0 && e.record.epoch < changed->record.epoch) {
      EXPECT_TRUE(e.revealed) << "epoch prepared ahead for the old deck must be voided";
      EXPECT_FALSE(e.first_seq.has_value());
    }
  }
}

TEST_F(DrawEngineTest, RecoveryContinuesSequenceStockQuotasEpochAndKeys) {
  auto config = make_config({{3, 2}}, 97);  // W = 100
  config.max_draws_per_user = 3;
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  std::vector<DrawRecord> before;
  for (int i = 0; i < 30; ++i) {
    auto r = draw("u" + std::to_string(i % 10), "k" + std::to_string(i));
    ASSERT_TRUE(r.ok());
    before.push_back(r->record);
  }
  const auto view_before = engine_->get_activity("a", clock_.now_ms()).value();
  const auto commitment = engine_->fairness("a").value()[0].record.commitment;
  close();
  open();
  auto view = engine_->get_activity("a", clock_.now_ms());
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->draws, 30);
  EXPECT_EQ(view->prizes[0].remaining, view_before.prizes[0].remaining);
  // Quota: every user has 3 draws already.
  auto refused = draw("u1", "k-new");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::quota_exhausted);
  // Keys survive.
  auto replay = draw("u0", "k0");
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->record.draw_id, before[0].draw_id);
  // Sequence and epoch continue where they were.
  auto next = draw("fresh", "k-fresh");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->record.seq, 30);
  EXPECT_EQ(next->record.epoch, 0);
  EXPECT_EQ(next->record.slot, 30);
  EXPECT_EQ(engine_->fairness("a").value()[0].record.commitment, commitment);
}

// A restart over a record large enough to be read in two halves and larger than
// the idempotency ring: every recorded key still replays its draw (restored, or
// looked up in the file), quotas in all and per day hold exactly, and seq and
// stock go on where they were.
TEST_F(DrawEngineTest, RecoveryOfALargeRecordKeepsEveryKeyAndQuota) {
  auto config = make_config({{1, 1'000'000}}, 199'999);  // W = 200,000
  config.max_draws_per_user = 3;
  config.max_draws_per_user_per_day = 1;
  ASSERT_TRUE(engine_->put_activity("a", config, kStart).ok());
  auto first = draw("u0", "key-0");  // seq 0 through the engine: epoch 0 starts
  ASSERT_TRUE(first.ok()) << first.error().detail;
  close();

  // Seqs 1.. straight into the file. User k draws at seqs k, k + 50,000 and
  // k + 100,000: the first half of the seqs yesterday (UTC), the rest today,
  // but the last 10 two days ago (a clock set back): they are past the TTL, so
  // the ring is not full after recovery and nothing gets evicted by a claim.
  constexpr std::int64_t kRows = 140'000;
  constexpr std::int64_t kUsers = 50'000;
  constexpr std::int64_t kDay = 86'400'000;
  const std::int64_t today_start = kStart - kStart % kDay;
  std::vector<DrawRecord> rows{first->record};
  {
    SqliteSinkOptions sink_options;
    sink_options.path = dir_ + "/fd.db";
    sink_options.synchronous = SqliteSinkOptions::Synchronous::normal;
    sink_options.max_queue = kRows;  // all queued at once, then flushed
    auto sink = SqliteSink::open(sink_options);
    ASSERT_TRUE(sink.ok()) << sink.error().detail;
    std::atomic<std::int64_t> durable{0};
    for (std::int64_t s = 1; s < kRows; ++s) {
      DrawRecord r;
      r.draw_id = "draw-" + std::to_string(s);
      r.activity_id = "a";
      r.seq = s;
      r.slot = s;
      r.user_id = "u" + std::to_string(s % kUsers);
      r.idempotency_key = "key-" + std::to_string(s);
      r.drawn_at_ms = s < kRows / 2 ? today_start - 3'600'000 + s / 100 : today_start + s / 100;
      if (s >= kRows - 10) r.drawn_at_ms = today_start - 2 * kDay;
      if (s % 1000 == 0) {
        r.candidate_id = "p0";
        r.prize_id = "p0";
        r.prize_name = "Prize 0";
        r.won = true;
      }
      rows.push_back(r);
      sink.value()->append(std::move(r), [&durable](bool ok) { durable += ok ? 1 : 0; });
    }
    sink.value()->flush_and_stop();
    ASSERT_EQ(durable.load(), kRows - 1);
  }

  DrawEngineOptions options;
  options.idempotency_capacity = 1000;  // most live keys are left to the file
  open(options);
  auto view = engine_->get_activity("a", clock_.now_ms());
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->draws, kRows);
  EXPECT_EQ(view->prizes[0].remaining, 1'000'000 - 139 - (first->record.won ? 1 : 0));

  // Every live key replays its own draw, whether it is in the ring (the last
  // 1000 seqs) or only in the file; with another user it is a reused key, and
  // trying that first leaves the key to its owner.
  for (const std::int64_t s : {0L, 1L, 12'345L, 69'999L, 70'000L, 139'000L, kRows - 11}) {
    const DrawRecord& original = rows[static_cast<std::size_t>(s)];
    if (s % 2 == 1) {
      auto first_try = draw("someone-else", original.idempotency_key);
      ASSERT_FALSE(first_try.ok()) << s;
      EXPECT_EQ(first_try.error().kind, ErrorKind::idempotency_key_reused) << s;
    }
    auto replay = draw(original.user_id, original.idempotency_key);
    ASSERT_TRUE(replay.ok()) << s << ": " << replay.error().detail;
    EXPECT_TRUE(replay->replayed) << s;
    EXPECT_EQ(replay->record.draw_id, original.draw_id) << s;
    EXPECT_EQ(replay->record.seq, s);
    EXPECT_EQ(replay->record.won, original.won) << s;
    EXPECT_EQ(replay->record.prize_id, original.prize_id) << s;
    auto reused = draw("someone-else", original.idempotency_key);
    ASSERT_FALSE(reused.ok()) << s;
    EXPECT_EQ(reused.error().kind, ErrorKind::idempotency_key_reused) << s;
  }

  // u5: 3 draws in all. u45000: 2 in all, 1 today (the daily limit). u25000: 3,
  // 2 of them today (more than today's limit: the file is what it is).
  auto refused = [&](const std::string& user, const std::string& key) {
    auto r = draw(user, key);
    return !r.ok() && r.error().kind == ErrorKind::quota_exhausted;
  };
  EXPECT_TRUE(refused("u5", "new-1"));
  EXPECT_TRUE(refused("u45000", "new-2"));
  EXPECT_TRUE(refused("u25000", "new-3"));
  auto fresh = draw("fresh", "new-4");
  ASSERT_TRUE(fresh.ok()) << fresh.error().detail;
  EXPECT_EQ(fresh->record.seq, kRows);
  EXPECT_EQ(fresh->record.epoch, 0);

  // The next day: u45000 has one draw left in all, the others none.
  clock_.advance(kDay);
  auto next_day = draw("u45000", "new-5");
  ASSERT_TRUE(next_day.ok()) << next_day.error().detail;
  EXPECT_EQ(next_day->record.seq, kRows + 1);
  EXPECT_TRUE(refused("u45000", "new-6"));
  EXPECT_TRUE(refused("u5", "new-7"));
  EXPECT_TRUE(refused("u25000", "new-8"));
}

// The live keys come back after recover() returns. Meanwhile every key is
// answered from the record: replays replay, a foreign body is refused and leaves
// the key to its owner, a new key draws; once they are back, nothing changed.
TEST_F(DrawEngineTest, LiveKeysComeBackAfterRecoveryAndReplayMeanwhile) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  std::vector<DrawRecord> before;
  for (int i = 0; i < 4; ++i) {
    auto r = draw("user" + std::to_string(i), "k" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().detail;
    before.push_back(r->record);
  }
  close();
  open({}, /*hold_live_keys=*/true);
  EXPECT_EQ(engine_->stats().idempotency_entries, 0U);

  auto replay = draw("user0", "k0");
  ASSERT_TRUE(replay.ok()) << replay.error().detail;
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->record.draw_id, before[0].draw_id);
  auto foreign = draw("eve", "k1");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().kind, ErrorKind::idempotency_key_reused);
  auto owner = draw("user1", "k1");
  ASSERT_TRUE(owner.ok()) << owner.error().detail;
  EXPECT_TRUE(owner->replayed);
  EXPECT_EQ(owner->record.draw_id, before[1].draw_id);
  auto fresh = draw("user9", "k9");
  ASSERT_TRUE(fresh.ok()) << fresh.error().detail;
  EXPECT_FALSE(fresh->replayed);
  EXPECT_EQ(fresh->record.seq, 4);

  gate_->release_live_draws();
  // k2 and k3 come back beside the three entries made meanwhile.
  for (int i = 0; i < 500 && engine_->stats().idempotency_entries < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine_->stats().idempotency_entries, 5U);
  for (int i = 0; i < 4; ++i) {
    auto again = draw("user" + std::to_string(i), "k" + std::to_string(i));
    ASSERT_TRUE(again.ok()) << i << ": " << again.error().detail;
    EXPECT_TRUE(again->replayed) << i;
    EXPECT_EQ(again->record.draw_id, before[static_cast<std::size_t>(i)].draw_id) << i;
  }
  auto fresh_again = draw("user9", "k9");
  ASSERT_TRUE(fresh_again.ok());
  EXPECT_TRUE(fresh_again->replayed);
  EXPECT_EQ(fresh_again->record.seq, 4);
}

// A key looked up in the record (here: while the live keys come back) when the
// record cannot be read: the request gets 503, and the key is nobody's yet,
// so its owner, retrying with its own body, gets its draw back, not a 422.
TEST_F(DrawEngineTest, KeyLookupFailureLeavesTheKeyToItsOwner) {
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto original = draw("user1", "k1");
  ASSERT_TRUE(original.ok()) << original.error().detail;
  close();
  open({}, /*hold_live_keys=*/true);

  gate_->fail_key_lookups(true);
  auto foreign = draw("eve", "k1");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().kind, ErrorKind::unavailable);
  auto owner_meanwhile = draw("user1", "k1");
  ASSERT_FALSE(owner_meanwhile.ok());
  EXPECT_EQ(owner_meanwhile.error().kind, ErrorKind::unavailable);

  gate_->fail_key_lookups(false);
  auto owner = draw("user1", "k1");
  ASSERT_TRUE(owner.ok()) << owner.error().detail;
  EXPECT_TRUE(owner->replayed);
  EXPECT_EQ(owner->record.draw_id, original->record.draw_id);
  auto foreign_again = draw("eve", "k1");
  ASSERT_FALSE(foreign_again.ok());
  EXPECT_EQ(foreign_again.error().kind, ErrorKind::idempotency_key_reused);
}

TEST_F(DrawEngineTest, TokensAreRequiredWhenConfigured) {
  close();
  DrawEngineOptions options;
  options.require_token = true;
  open(options);
  ASSERT_TRUE(engine_->put_activity("a", make_config({{1, 10}}, 1), kStart).ok());
  auto bogus = draw("alice", "not-a-token");
  ASSERT_FALSE(bogus.ok());
  EXPECT_EQ(bogus.error().kind, ErrorKind::invalid_token);
  auto token = engine_->issue_token(clock_.now_ms());
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token.size(), 22u);
  auto first = draw("alice", token->token);
  ASSERT_TRUE(first.ok());
  auto replay = draw("alice", token->token);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  auto expired = engine_->issue_token(clock_.now_ms());
  clock_.advance(DrawEngineOptions{}.token_ttl_ms + 1);
  auto late = draw("bob", expired->token);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, ErrorKind::invalid_token);
}

}  // namespace
}  // namespace fairdraw
