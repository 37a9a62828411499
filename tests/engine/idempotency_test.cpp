// Idempotency table: the Idle/Drawing/Done state machine, ring-ordered expiry, eviction, restore,
// and claims from many threads.
#include "fairdraw/engine/idempotency.hpp"

#include <gtest/gtest.h>

#include <array>
#include <climits>
#include <string>
#include <thread>
#include <vector>

namespace fairdraw {
namespace {

using Kind = IdempotencyTable::Claim::Kind;

DrawRecord record(std::string_view activity, std::string_view key, std::int64_t seq, std::int64_t at_ms) {
  DrawRecord r;
  r.draw_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  r.activity_id = std::string(activity);
  r.idempotency_key = std::string(key);
  r.user_id = "user";
  r.seq = seq;
  r.drawn_at_ms = at_ms;
  return r;
}

TEST(IdempotencyTest, StateMachine) {
  IdempotencyTable table(16, 60'000);
  const std::uint64_t fp = draw_fingerprint("act", "alice");
  auto first = table.claim("act", "k1", fp, 1'000);
  ASSERT_EQ(first.kind, Kind::claimed);
  ASSERT_NE(first.entry, nullptr);
  EXPECT_EQ(first.entry->state.load(), IdemState::drawing);
  EXPECT_EQ(first.entry->created_ms, 1'000);
  EXPECT_EQ(table.size(), 1U);

  EXPECT_EQ(table.claim("act", "k1", fp, 1'001).kind, Kind::in_flight);
  EXPECT_EQ(table.claim("act", "k1", draw_fingerprint("act", "bob"), 1'001).kind, Kind::mismatch);

  table.complete(first.entry, record("act", "k1", 7, 1'000));
  auto again = table.claim("act", "k1", fp, 1'002);
  ASSERT_EQ(again.kind, Kind::done);
  EXPECT_EQ(again.entry, nullptr) << "a replay hands out a copy, not the entry";
  ASSERT_TRUE(again.replay.has_value());
  EXPECT_EQ(again.replay->seq, 7);
  EXPECT_EQ(table.claim("act", "k1", draw_fingerprint("act", "bob"), 1'002).kind, Kind::mismatch);

  // The scope is (activity, key): the same key elsewhere is a different entry.
  EXPECT_EQ(table.claim("other", "k1", fp, 1'003).kind, Kind::claimed);
  EXPECT_EQ(table.claim("act", "k2", fp, 1'003).kind, Kind::claimed);
  EXPECT_EQ(table.size(), 3U);
}

TEST(IdempotencyTest, ReleasedUnownedTheNextClaimTakesTheKeyWhateverItsFingerprint) {
  IdempotencyTable table(16, 60'000);
  auto first = table.claim("act", "k", 42, 0);
  ASSERT_EQ(first.kind, Kind::claimed);
  table.release_unowned(first.entry);
  EXPECT_EQ(first.entry->state.load(), IdemState::unowned);
  auto second = table.claim("act", "k", 43, 1);  // another fingerprint: not a mismatch
  ASSERT_EQ(second.kind, Kind::claimed);
  EXPECT_EQ(second.entry, first.entry);
  EXPECT_EQ(table.claim("act", "k", 43, 2).kind, Kind::in_flight);
  table.release(second.entry);  // a plain release keeps the new claimant's fingerprint
  EXPECT_EQ(table.claim("act", "k", 42, 3).kind, Kind::mismatch);
  auto third = table.claim("act", "k", 43, 3);
  ASSERT_EQ(third.kind, Kind::claimed);
  table.complete(third.entry, record("act", "k", 1, 1));
  table.release_unowned(third.entry);  // too late: a Done entry stays Done
  EXPECT_EQ(table.claim("act", "k", 43, 4).kind, Kind::done);
  EXPECT_EQ(table.claim("act", "k", 42, 4).kind, Kind::mismatch);
}

TEST(IdempotencyTest, ReleaseAllowsAReclaim) {
  IdempotencyTable table(16, 60'000);
  auto first = table.claim("act", "k", 42, 0);
  ASSERT_EQ(first.kind, Kind::claimed);
  table.release(first.entry);
  EXPECT_EQ(first.entry->state.load(), IdemState::idle);
  EXPECT_EQ(table.claim("act", "k", 43, 1).kind, Kind::mismatch);
  auto second = table.claim("act", "k", 42, 1);
  ASSERT_EQ(second.kind, Kind::claimed);
  EXPECT_EQ(second.entry, first.entry);
  EXPECT_EQ(table.claim("act", "k", 42, 2).kind, Kind::in_flight);
  table.complete(second.entry, record("act", "k", 1, 1));
  table.release(second.entry);  // too late: a Done entry stays Done
  EXPECT_EQ(table.claim("act", "k", 42, 3).kind, Kind::done);
}

TEST(IdempotencyTest, ExpiresInRingOrderWhileTheRingWraps) {
  constexpr std::int64_t kTtl = 100;
  IdempotencyTable table(4, kTtl);
  for (int i = 0; i < 41; ++i) {
    const std::int64_t now = 50 * i;
    // Entries created at or before now - ttl go: exactly the one from two steps ago.
    EXPECT_EQ(table.expire(now), i >= 2 ? 1U : 0U) << "step " << i;
    auto claim = table.claim("act", "key" + std::to_string(i), 1, now);
    ASSERT_EQ(claim.kind, Kind::claimed) << "step " << i;
    table.complete(claim.entry, record("act", "key" + std::to_string(i), i, now));
    EXPECT_EQ(table.size(), i >= 1 ? 2U : 1U);
    if (i >= 1) {
      EXPECT_EQ(table.claim("act", "key" + std::to_string(i - 1), 1, now).kind, Kind::done);
    }
  }
  EXPECT_EQ(table.evicted_early(), 0U);
  EXPECT_FALSE(table.maybe_evicted(2'000));
  // An expired key is forgotten: it can be drawn again.
  EXPECT_EQ(table.claim("act", "key0", 1, 2'050).kind, Kind::claimed);
  EXPECT_EQ(table.expire(1'000'000), 2U);  // key39 and key40; then key0, Drawing, stops it
  EXPECT_EQ(table.size(), 1U);
}

TEST(IdempotencyTest, ExpiryStopsAtADrawingHead) {
  IdempotencyTable table(8, 100);
  auto slow = table.claim("act", "slow", 1, 0);
  auto fast = table.claim("act", "fast", 1, 10);
  auto idle = table.claim("act", "idle", 1, 20);
  table.complete(fast.entry, record("act", "fast", 1, 10));
  table.release(idle.entry);
  EXPECT_EQ(table.expire(1'000), 0U);
  EXPECT_EQ(table.size(), 3U);
  table.complete(slow.entry, record("act", "slow", 0, 0));
  EXPECT_EQ(table.expire(109), 1U);  // slow (created at 0); fast (10) is due at 110
  EXPECT_EQ(table.size(), 2U);
  EXPECT_EQ(table.expire(119), 1U);  // fast; idle (20) is due at 120
  EXPECT_EQ(table.size(), 1U);
  EXPECT_EQ(table.expire(120), 1U);
  EXPECT_EQ(table.size(), 0U);
  EXPECT_EQ(table.claim("act", "fast", 1, 130).kind, Kind::claimed);
}

TEST(IdempotencyTest, FullRingExpiresThenEvictsTheFinishedHead) {
  IdempotencyTable table(3, 1'000);
  for (int i = 0; i < 3; ++i) {
    auto claim = table.claim("act", "k" + std::to_string(i), 1, i);
    ASSERT_EQ(claim.kind, Kind::claimed);
    table.complete(claim.entry, record("act", "k" + std::to_string(i), i, i));
  }
  EXPECT_FALSE(table.maybe_evicted(3));
  auto fourth = table.claim("act", "k3", 1, 3);
  ASSERT_EQ(fourth.kind, Kind::claimed);
  EXPECT_EQ(table.evicted_early(), 1U);
  EXPECT_EQ(table.size(), 3U);
  EXPECT_TRUE(table.maybe_evicted(3));
  EXPECT_TRUE(table.maybe_evicted(999));    // k0 was created at 0 and would live until 1000
  EXPECT_FALSE(table.maybe_evicted(1'000));
  EXPECT_EQ(table.claim("act", "k1", 1, 4).kind, Kind::done);

  // When the full ring's head has expired, expiry makes room and nothing is evicted early.
  table.complete(fourth.entry, record("act", "k3", 3, 3));
  EXPECT_EQ(table.claim("act", "k4", 1, 1'001).kind, Kind::claimed);
  EXPECT_EQ(table.evicted_early(), 1U);
  EXPECT_EQ(table.claim("act", "k0", 1, 1'002).kind, Kind::claimed);  // forgotten, drawn anew
}

TEST(IdempotencyTest, FullWhenTheHeadIsDrawing) {
  IdempotencyTable table(2, 1'000);
  auto a = table.claim("act", "a", 1, 0);
  auto b = table.claim("act", "b", 1, 1);
  ASSERT_EQ(a.kind, Kind::claimed);
  ASSERT_EQ(b.kind, Kind::claimed);
  table.complete(b.entry, record("act", "b", 1, 1));
  auto refused = table.claim("act", "c", 1, 2);
  EXPECT_EQ(refused.kind, Kind::full);
  EXPECT_EQ(refused.entry, nullptr);
  EXPECT_EQ(table.size(), 2U);
  EXPECT_EQ(table.claim("act", "c", 1, 3).kind, Kind::full);  // not left behind as in-flight
  EXPECT_EQ(table.evicted_early(), 0U);

  table.complete(a.entry, record("act", "a", 0, 0));
  EXPECT_EQ(table.claim("act", "c", 1, 4).kind, Kind::claimed);
  EXPECT_EQ(table.evicted_early(), 1U);
  EXPECT_EQ(table.claim("act", "b", 1, 5).kind, Kind::done);
}

TEST(IdempotencyTest, RestoreBringsBackDoneEntries) {
  IdempotencyTable table(8, 1'000);
  const std::uint64_t fp = draw_fingerprint("act", "user");
  table.restore(record("act", "r1", 10, 100), fp);
  table.restore(record("act", "r2", 11, 200), fp);
  table.restore(record("act", "r2", 99, 250), fp);  // already known: ignored
  EXPECT_EQ(table.size(), 2U);
  auto r2 = table.claim("act", "r2", fp, 300);
  ASSERT_EQ(r2.kind, Kind::done);
  ASSERT_TRUE(r2.replay.has_value());
  EXPECT_EQ(r2.replay->seq, 11);
  EXPECT_EQ(r2.replay->drawn_at_ms, 200);
  EXPECT_EQ(table.claim("act", "r1", fp + 1, 300).kind, Kind::mismatch);
  EXPECT_EQ(table.expire(1'100), 1U);  // r1 (drawn at 100) goes first
  EXPECT_EQ(table.claim("act", "r2", fp, 1'100).kind, Kind::done);
  EXPECT_EQ(table.expire(1'200), 1U);
  EXPECT_EQ(table.size(), 0U);
}

// A claim that found its key in the durable record under another body: the
// entry becomes the recorded draw, with the record's fingerprint.
TEST(IdempotencyTest, CompleteFromRecordTakesTheRecordsFingerprint) {
  IdempotencyTable table(8, 1'000);
  auto claim = table.claim("act", "k", /*fingerprint=*/1, 100);
  ASSERT_EQ(claim.kind, Kind::claimed);
  table.complete_from_record(claim.entry, record("act", "k", 5, 50), /*fingerprint=*/2);
  auto owner = table.claim("act", "k", 2, 200);
  ASSERT_EQ(owner.kind, Kind::done);
  ASSERT_TRUE(owner.replay.has_value());
  EXPECT_EQ(owner.replay->seq, 5);
  EXPECT_EQ(table.claim("act", "k", 1, 200).kind, Kind::mismatch);
}

TEST(IdempotencyTest, NoteLeftOutSendsMissesToTheRecordUntilTheTtl) {
  IdempotencyTable table(8, 1'000);
  EXPECT_FALSE(table.maybe_evicted(0));
  table.note_left_out(500);
  EXPECT_TRUE(table.maybe_evicted(1'499));
  EXPECT_FALSE(table.maybe_evicted(1'500));
  EXPECT_EQ(table.evicted_early(), 0U);  // nothing was dropped from the ring
}

// A restore running while claims are served (set_restoring) leaves a key
// claimed meanwhile to its claimant; unless that key is Done, later misses keep
// looking in the record.
TEST(IdempotencyTest, RestoreMeetsKeysClaimedMeanwhile) {
  IdempotencyTable table(8, 1'000);
  table.set_restoring(true);
  EXPECT_TRUE(table.restoring());
  auto done = table.claim("act", "done", 1, 100);
  ASSERT_EQ(done.kind, Kind::claimed);
  table.complete_from_record(done.entry, record("act", "done", 1, 50), 1);
  table.restore(record("act", "done", 1, 50), 1);
  EXPECT_FALSE(table.maybe_evicted(100));

  auto released = table.claim("act", "released", 1, 100);
  ASSERT_EQ(released.kind, Kind::claimed);
  table.release(released.entry);  // the record could not be read: nothing known
  table.restore(record("act", "released", 2, 60), 1);
  table.set_restoring(false);
  EXPECT_FALSE(table.restoring());
  EXPECT_TRUE(table.maybe_evicted(1'059));
  EXPECT_FALSE(table.maybe_evicted(1'060));
  EXPECT_EQ(table.size(), 2U);
}

TEST(IdempotencyTest, RestoreIntoAFullRingEvictsTheOldest) {
  IdempotencyTable table(2, 1'000);
  for (int i = 0; i < 5; ++i) table.restore(record("act", "r" + std::to_string(i), i, 100 + i), 1);
  EXPECT_EQ(table.size(), 2U);
  EXPECT_EQ(table.evicted_early(), 3U);
  EXPECT_TRUE(table.maybe_evicted(1'101));
  EXPECT_FALSE(table.maybe_evicted(1'102));
  EXPECT_EQ(table.claim("act", "r4", 1, 200).kind, Kind::done);
}

// Every field of a replay equals the original, whatever the outcome holds: a win, a prize id
// other than the candidate, text draw ids, long strings (more than the claim reserved),
// numbers of any sign, and a record whose activity or key differ from the scope.
void expect_same_record(const DrawRecord& a, const DrawRecord& b) {
  EXPECT_EQ(a.draw_id, b.draw_id);
  EXPECT_EQ(a.activity_id, b.activity_id);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.slot, b.slot);
  EXPECT_EQ(a.user_id, b.user_id);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.candidate_id, b.candidate_id);
  EXPECT_EQ(a.prize_id, b.prize_id);
  EXPECT_EQ(a.prize_name, b.prize_name);
  EXPECT_EQ(a.won, b.won);
  EXPECT_EQ(a.drawn_at_ms, b.drawn_at_ms);
}

std::vector<DrawRecord> varied_records() {
  std::vector<DrawRecord> out;
  DrawRecord miss = record("act", "miss", 123'456, 1'700'000'000'000);
  miss.draw_id = "01JDRAWXDFRZMTHERESPQNSE00";  // a canonical ULID: packed as 16 bytes
  miss.epoch = 12;
  miss.slot = 9'999'999;
  out.push_back(miss);

  DrawRecord win = miss;
  win.idempotency_key = "win";
  win.draw_id = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ";  // the largest ULID
  win.candidate_id = "gold";
  win.prize_id = "gold";
  win.prize_name = "A gold coin, as it was called then";
  win.won = true;
  out.push_back(win);

  DrawRecord lost = miss;  // the deck's candidate, out of stock
  lost.idempotency_key = "lost";
  lost.draw_id = "00000000000000000000000000";
  lost.candidate_id = "gold";
  out.push_back(lost);

  DrawRecord odd = miss;
  odd.idempotency_key = "odd";
  odd.draw_id = "01jdrawxdfrzmtherespqnse00";  // lowercase: not canonical, kept as text
  odd.candidate_id = "";
  odd.prize_id = "silver";  // differs from the candidate
  odd.prize_name = "";
  odd.seq = -1;
  odd.epoch = INT64_MIN;
  odd.slot = INT64_MAX;
  odd.drawn_at_ms = INT64_MIN;
  odd.user_id = std::string(300, 'u');
  out.push_back(odd);

  for (const char* not_canonical : {"8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01JDRAWIDFROMTHERESPONSE00",
                                    "01JDRAWXDFRZMTHERESPQNSE0", "01JDRAWXDFRZMTHERESPQNSE000"}) {
    DrawRecord text_id = miss;  // too big, letters outside Crockford's, too short, too long
    text_id.idempotency_key = std::string("text-") + not_canonical;
    text_id.draw_id = not_canonical;
    out.push_back(text_id);
  }

  DrawRecord empty;  // all defaults, as a benchmark completes
  empty.activity_id = "act";
  empty.idempotency_key = "empty";
  out.push_back(empty);
  return out;
}

TEST(IdempotencyTest, ReplayEqualsTheOriginalFieldByField) {
  for (const std::size_t reserve : {std::size_t{0}, IdempotencyTable::outcome_reserve_for("user"),
                                    std::size_t{4096}}) {
    SCOPED_TRACE(reserve);
    IdempotencyTable table(64, 60'000);
    for (const DrawRecord& original : varied_records()) {
      SCOPED_TRACE(original.idempotency_key);
      auto claim = table.claim("act", original.idempotency_key, 1, 5, reserve);
      ASSERT_EQ(claim.kind, Kind::claimed);
      table.complete(claim.entry, original);
      auto replay = table.claim("act", original.idempotency_key, 1, 6);
      ASSERT_EQ(replay.kind, Kind::done);
      expect_same_record(*replay.replay, original);
    }
  }
  // A record whose activity and key are not the scope's is still given back as it was.
  IdempotencyTable table(4, 60'000);
  auto claim = table.claim("scope-act", "scope-key", 1, 5);
  DrawRecord foreign = varied_records()[1];
  table.complete(claim.entry, foreign);
  auto replay = table.claim("scope-act", "scope-key", 1, 6);
  ASSERT_EQ(replay.kind, Kind::done);
  expect_same_record(*replay.replay, foreign);
}

TEST(IdempotencyTest, RestoredRecordsReplayFieldByField) {
  IdempotencyTable table(64, 1'000);
  const auto originals = varied_records();
  for (const DrawRecord& original : originals) table.restore(original, 9);
  EXPECT_EQ(table.size(), originals.size());
  for (const DrawRecord& original : originals) {
    SCOPED_TRACE(original.idempotency_key);
    auto replay = table.claim("act", original.idempotency_key, 9, 0);
    ASSERT_EQ(replay.kind, Kind::done);
    expect_same_record(*replay.replay, original);
  }
}

// Every key hashes alike: lookups must tell keys apart by their text, and deleting from the
// middle of one long probe run must leave every other key findable.
std::uint64_t same_hash(std::string_view, std::string_view) { return 0x0123456789abcdefULL; }

TEST(IdempotencyTest, CollidingHashesKeepKeysApart) {
  constexpr int kKeys = 300;
  constexpr std::int64_t kTtl = 1'000;
  IdempotencyTable table(kKeys + 10, kTtl, same_hash);  // room: nothing is evicted early
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "k" + std::to_string(i);
    // Early keys are old enough to expire at kTtl + 99; the rest stay.
    auto claim = table.claim("act", key, 1, i < 100 ? 0 : 100);
    ASSERT_EQ(claim.kind, Kind::claimed) << key;
    if (i % 3 == 0) {
      table.release(claim.entry);
    } else {
      table.complete(claim.entry, record("act", key, i, claim.entry->created_ms));
    }
  }
  EXPECT_EQ(table.claim("other", "k1", 1, 100).kind, Kind::claimed) << "same key, other activity";
  EXPECT_EQ(table.claim("act", "k1", 2, 100).kind, Kind::mismatch);
  EXPECT_EQ(table.expire(kTtl + 99), 100U);
  EXPECT_EQ(table.size(), static_cast<std::size_t>(kKeys - 100 + 1));
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto claim = table.claim("act", key, 1, 200);
    if (i < 100 || i % 3 == 0) {
      EXPECT_EQ(claim.kind, Kind::claimed) << key << ": expired or released";
    } else {
      ASSERT_EQ(claim.kind, Kind::done) << key;
      EXPECT_EQ(claim.replay->seq, i);
      EXPECT_EQ(claim.replay->idempotency_key, key);
    }
  }
}

TEST(IdempotencyTest, KeysOfAnyLength) {
  IdempotencyTable table(16, 60'000);
  const std::vector<std::string> keys = {"", "k", std::string(15, 'x'), std::string(16, 'x'),
                                         std::string(255, 'y'), std::string(70'000, 'z'),
                                         std::string(70'000, 'z') + "!"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto claim = table.claim("act", keys[i], 1, 0);
    ASSERT_EQ(claim.kind, Kind::claimed) << i;
    DrawRecord r = record("act", keys[i], static_cast<std::int64_t>(i), 0);
    r.user_id = std::string(70'000, 'u');  // far beyond the room the claim kept
    table.complete(claim.entry, r);
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto replay = table.claim("act", keys[i], 1, 1);
    ASSERT_EQ(replay.kind, Kind::done) << i;
    EXPECT_EQ(replay.replay->seq, static_cast<std::int64_t>(i));
    EXPECT_EQ(replay.replay->idempotency_key, keys[i]);
    EXPECT_EQ(replay.replay->user_id.size(), 70'000U);
  }
  EXPECT_EQ(table.claim(std::string(300, 'a'), std::string(300, 'b'), 1, 2).kind, Kind::claimed);
}

TEST(IdempotencyTest, EntriesSurviveGrowth) {
  constexpr int kKeys = 20'000;
  IdempotencyTable table(kKeys, 60'000);
  std::vector<IdemEntry*> drawing;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "key-" + std::to_string(i);
    auto claim = table.claim("act", key, 1, i, IdempotencyTable::outcome_reserve_for("user"));
    ASSERT_EQ(claim.kind, Kind::claimed);
    // Half stay Drawing while the shards grow around them, and are completed afterwards.
    if (i % 2 == 0) {
      table.complete(claim.entry, record("act", key, i, i));
    } else {
      drawing.push_back(claim.entry);
    }
  }
  for (std::size_t j = 0; j < drawing.size(); ++j) {
    const int i = static_cast<int>(2 * j + 1);
    table.complete(drawing[j], record("act", "key-" + std::to_string(i), i, i));
  }
  EXPECT_EQ(table.size(), static_cast<std::size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    auto replay = table.claim("act", "key-" + std::to_string(i), 1, kKeys);
    ASSERT_EQ(replay.kind, Kind::done) << i;
    EXPECT_EQ(replay.replay->seq, i);
  }
  EXPECT_EQ(table.expire(60'000 + kKeys), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(table.size(), 0U);
}

TEST(IdempotencyTest, FingerprintIsFnv1aOfActivityAndUser) {
  EXPECT_EQ(draw_fingerprint("act-1", "user-9"), 0x004d09c0870dbe48ULL);
  EXPECT_NE(draw_fingerprint("ab", "c"), draw_fingerprint("a", "bc"));
  EXPECT_EQ(draw_fingerprint("a", "b"), draw_fingerprint("a", "b"));
}

TEST(IdempotencyTest, ConcurrentClaimsOwnEachKeyOnceAtATime) {
  constexpr int kThreads = 8;
  constexpr int kClaimsPerThread = 10'000;
  constexpr int kKeys = 64;
  IdempotencyTable table(1'024, 3'600'000);
  std::array<std::atomic<int>, kKeys> holders{};
  std::array<std::atomic<int>, kKeys> completions{};
  std::array<std::atomic<int>, kKeys> claims{};
  std::atomic<int> overlaps{0}, wrong_results{0}, unexpected{0};

  auto worker = [&](int thread) {
    for (int i = 0; i < kClaimsPerThread; ++i) {
      const int key = (i * 7 + thread * 13) % kKeys;
      const std::string key_text = "key-" + std::to_string(key);
      auto claim = table.claim("act", key_text, static_cast<std::uint64_t>(key), 1'000 + i);
      const auto k = static_cast<std::size_t>(key);
      switch (claim.kind) {
        case Kind::claimed:
          if (holders[k].fetch_add(1) != 0) overlaps.fetch_add(1);
          std::this_thread::yield();
          holders[k].fetch_sub(1);
          // The first two owners of a key give it back; the third finishes it.
          if (claims[k].fetch_add(1) < 2) {
            table.release(claim.entry);
          } else {
            completions[k].fetch_add(1);
            table.complete(claim.entry, record("act", key_text, key, 1'000 + i));
          }
          break;
        case Kind::done:
          if (claim.replay->seq != key || claim.replay->idempotency_key != key_text) {
            wrong_results.fetch_add(1);
          }
          break;
        case Kind::in_flight:
          break;
        case Kind::mismatch:
        case Kind::full:
          unexpected.fetch_add(1);
          break;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(wrong_results.load(), 0);
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(table.size(), static_cast<std::size_t>(kKeys));
  for (std::size_t k = 0; k < kKeys; ++k) {
    EXPECT_EQ(claims[k].load(), 3) << "key " << k;
    EXPECT_EQ(completions[k].load(), 1) << "key " << k;
    const auto final_claim = table.claim("act", "key-" + std::to_string(k), k, 0);
    EXPECT_EQ(final_claim.kind, Kind::done) << "key " << k;
  }
}

TEST(IdempotencyTest, ConcurrentChurnWithExpiryAndEviction) {
  constexpr int kThreads = 8;
  constexpr int kClaimsPerThread = 5'000;
  constexpr std::size_t kCapacity = 32;
  IdempotencyTable table(kCapacity, 50);
  std::atomic<std::int64_t> clock{0};
  std::atomic<int> mismatches{0};

  auto worker = [&](int thread) {
    for (int i = 0; i < kClaimsPerThread; ++i) {
      const std::int64_t now = clock.fetch_add(1);
      const int key = (i * 31 + thread * 17) % 200;
      auto claim = table.claim("act", "k" + std::to_string(key), 5, now);
      if (claim.kind == Kind::mismatch) mismatches.fetch_add(1);
      if (claim.kind == Kind::claimed) {
        if (i % 5 == 0) {
          table.release(claim.entry);
        } else {
          table.complete(claim.entry, record("act", "k" + std::to_string(key), key, now));
        }
      } else if (claim.kind == Kind::done) {
        EXPECT_EQ(claim.replay->seq, key);
      }
      if (i % 64 == thread) table.expire(now);
      (void)table.maybe_evicted(now);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_LE(table.size(), kCapacity);
  table.expire(clock.load() + 1'000);
  EXPECT_EQ(table.size(), 0U);
}

}  // namespace
}  // namespace fairdraw
