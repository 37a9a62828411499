// The embedded draw engine: the path of one draw (DESIGN.md section 2) with
// in-process atomics, epochs and decks (section 4), and recovery from the sink.
//
// Concurrency model, in short:
// - The registry of activities is an immutable map, replaced whole
//   (copy-on-write) through a SharedSlot: a draw holds no lock while it works,
//   only a spin bit for the refcount increment of each snapshot it loads.
// - An activity's current Segment is an immutable config plus one atomic
//   counter of sequence numbers taken. A draw takes seq = base + fetch_add(1).
//   An admin change closes the segment by setting kClosed in that same counter
//   (fetch_or), which fixes the boundary b exactly: every draw that got a count
//   below the bit has seq < b and uses the old config; every later draw sees
//   the bit, reloads the new segment and takes seq >= b from it.
// - Stock is a per-prize win counter moved by CAS (wins < stock).
// - Decks of an epoch chain sit in a small ring of atomic slots, prepared ahead
//   by the scheduler; a draw whose deck is not ready builds it under the
//   activity's mutex (counted: it means preparation fell behind).
// - Every taken seq always produces exactly one appended record, so the sink's
//   contiguous-prefix rule never waits forever.
#include "fairdraw/engine/draw_engine.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <map>
#include <system_error>
#include <thread>

#include "fairdraw/engine/deck.hpp"
#include "fairdraw/engine/quota.hpp"
#include "fairdraw/engine/shared_slot.hpp"
#include "fairdraw/engine/time_zone.hpp"
#include "fairdraw/engine/ulid.hpp"
#include "fairdraw/thread_name.hpp"

namespace fairdraw {

const char* to_string(ActivityStatus status) {
  switch (status) {
    case ActivityStatus::scheduled: return "scheduled";
    case ActivityStatus::active: return "active";
    case ActivityStatus::ended: return "ended";
  }
  return "ended";
}

ActivityStatus activity_status_at(const ActivityConfig& config, bool ended, std::int64_t now_ms) {
  if (ended) return ActivityStatus::ended;
  if (config.starts_at_ms && now_ms < *config.starts_at_ms) return ActivityStatus::scheduled;
  if (config.ends_at_ms && now_ms >= *config.ends_at_ms) return ActivityStatus::ended;
  return ActivityStatus::active;
}

std::string encode_base64url(std::span<const std::uint8_t> bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(buffer >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (6 - bits)) & 0x3F]);
  return out;
}

namespace {

constexpr std::uint64_t kClosed = std::uint64_t{1} << 62;

Error not_found(const std::string& id) {
  return make_error(ErrorKind::activity_not_found, "no activity with id '" + id + "'");
}

}  // namespace

// One epoch's shuffled deck. Immutable once published.
struct DrawEngine::EpochDeck {
  std::int64_t epoch = 0;
  std::vector<Card> cards;
};

// Consecutive epochs that share one deck (same prizes, weights, W). Seq n of
// the chain falls in epoch first_epoch + (n - origin_seq) / W.
struct DrawEngine::EpochChain {
  static constexpr std::size_t kSlots = 32;
  std::int64_t first_epoch = 0;
  std::int64_t origin_seq = 0;
  std::uint64_t size = 0;  // W
  std::vector<std::uint32_t> weights;
  std::uint32_t miss_weight = 0;
  std::vector<EpochPrize> prizes;
  std::array<SharedSlot<const EpochDeck>, kSlots> decks;
  std::int64_t prepared_through = -1;  // guarded by Activity::mutex

  static std::shared_ptr<EpochChain> make(const ActivityConfig& config, std::int64_t first_epoch,
                                          std::int64_t origin_seq) {
    auto chain = std::make_shared<EpochChain>();
    chain->first_epoch = first_epoch;
    chain->origin_seq = origin_seq;
    chain->size = config.deck_size();
    chain->miss_weight = config.miss_weight;
    for (const Prize& prize : config.prizes) {
      chain->weights.push_back(prize.weight);
      chain->prizes.push_back(EpochPrize{prize.id, prize.weight});
    }
    chain->prepared_through = first_epoch - 1;
    return chain;
  }

  std::int64_t epoch_of(std::int64_t seq) const {
    return first_epoch + (seq - origin_seq) / static_cast<std::int64_t>(size);
  }
  std::int64_t slot_of(std::int64_t seq) const {
    return (seq - origin_seq) % static_cast<std::int64_t>(size);
  }
  std::int64_t first_seq_of(std::int64_t epoch) const {
    return origin_seq + (epoch - first_epoch) * static_cast<std::int64_t>(size);
  }
};

// An immutable config and the counter of seqs taken under it.
struct DrawEngine::Segment {
  std::shared_ptr<const ActivityConfig> config;
  std::shared_ptr<EpochChain> chain;  // null once ended
  std::int64_t base_seq = 0;
  bool ended = false;
  TimeZone time_zone = TimeZone::utc();
  std::vector<std::shared_ptr<std::atomic<std::int64_t>>> wins;  // per prize index
  std::atomic<std::uint64_t> taken{0};

  std::int64_t next_seq() const {
    return base_seq + static_cast<std::int64_t>(taken.load(std::memory_order_acquire) & ~kClosed);
  }
};

struct DrawEngine::Activity {
  std::string id;
  std::mutex mutex;  // admin changes, epoch preparation, fairness reads
  SharedSlot<Segment> segment;
  QuotaBook quotas;
  std::atomic<std::int64_t> durable_next_seq{0};  // every seq below is committed
  std::int64_t created_at_ms = 0;                  // guarded by mutex
  // Guarded by mutex.
  std::map<std::string, std::shared_ptr<std::atomic<std::int64_t>>> wins_by_prize;
  std::vector<EpochRecord> epochs;  // index == epoch number

  std::shared_ptr<std::atomic<std::int64_t>> wins_for(const std::string& prize_id) {
    auto& slot = wins_by_prize[prize_id];
    if (!slot) slot = std::make_shared<std::atomic<std::int64_t>>(0);
    return slot;
  }
};

// One-time draw tokens (draw.require_token). In memory: tokens do not survive a
// restart, which only makes clients ask for a new one.
struct DrawEngine::Tokens {
  std::mutex mutex;
  std::unordered_map<std::string, std::int64_t> live;  // token -> expires_at_ms

  bool consume(const std::string& token, std::int64_t now_ms) {
    std::lock_guard lock(mutex);
    auto it = live.find(token);
    if (it == live.end()) return false;
    const bool valid = it->second > now_ms;
    live.erase(it);
    return valid;
  }
  void give_back(const std::string& token, std::int64_t expires_at_ms) {
    std::lock_guard lock(mutex);
    live.emplace(token, expires_at_ms);
  }
  std::size_t expire(std::int64_t now_ms) {
    std::lock_guard lock(mutex);
    return std::erase_if(live, [&](const auto& kv) { return kv.second <= now_ms; });
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return live.size();
  }
};

// A draw between its append and its ack: what the ack needs to finish it (the
// record for the answer and the idempotency entry, the caller's callback).
// Recycled, so the ack is a pointer and the sink's Ack holds it inline. Taken
// on io threads and given back on the sink's writer thread: one shared list,
// owned by the engine and by every handle (an ack is destroyed after its call
// has woken whoever waits for the draw, possibly after the engine is gone).
struct DrawEngine::InFlight {
  std::shared_ptr<Activity> act;
  IdemEntry* entry = nullptr;
  DrawRecord record;
  DrawCallback done;
};

class DrawEngine::InFlightPool {
 public:
  struct Recycle {
    std::shared_ptr<InFlightPool> pool;
    void operator()(InFlight* draw) const noexcept { pool->give(draw); }
  };
  using Handle = std::unique_ptr<InFlight, Recycle>;

  static Handle take(const std::shared_ptr<InFlightPool>& pool) { return pool->take_one(pool); }

 private:
  Handle take_one(const std::shared_ptr<InFlightPool>& self) {
    InFlight* draw = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        draw = free_.back().release();
        free_.pop_back();
      }
    }
    return Handle(draw != nullptr ? draw : new InFlight, Recycle{self});
  }

  // Enough for the acks of a few large commits; more are freed.
  static constexpr std::size_t kKept = 512;

  void give(InFlight* draw) noexcept {
    std::unique_ptr<InFlight> owned(draw);
    owned->act.reset();
    owned->done = nullptr;
    owned->record = DrawRecord();
    try {
      std::lock_guard lock(mutex_);
      if (free_.size() < kKept) free_.push_back(std::move(owned));
    } catch (...) {
      // No room to keep it: freed below.
    }
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<InFlight>> free_;
};

DrawEngine::DrawEngine(DrawEngineOptions options, Sink& sink, Clock& clock, Entropy& entropy)
    : options_(std::move(options)),
      sink_(sink),
      clock_(clock),
      entropy_(entropy),
      idempotency_(options_.idempotency_capacity, options_.idempotency_ttl_ms),
      tokens_(std::make_unique<Tokens>()),
      in_flight_pool_(std::make_shared<InFlightPool>()),
      registry_(std::make_shared<const Registry>()) {}

DrawEngine::~DrawEngine() = default;

std::shared_ptr<DrawEngine::Activity> DrawEngine::find(const std::string& id) const {
  auto registry = registry_.load();
  auto it = registry->find(id);
  return it == registry->end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------
// The draw path.

void DrawEngine::draw(DrawCommand command, DrawCallback done) {
  if (sink_failed_.load(std::memory_order_acquire)) {
    return done(make_error(ErrorKind::unavailable, "the draw record cannot be written"));
  }
  auto act = find(command.activity_id);
  if (!act) return done(not_found(command.activity_id));
  if (in_flight_.load(std::memory_order_relaxed) >= options_.max_in_flight_draws) {
    return done(make_error(ErrorKind::unavailable, "too many draws waiting for the record"));
  }

  const std::int64_t now = command.now_ms;
  bool token_taken = false;
  if (options_.require_token) token_taken = tokens_->consume(command.idempotency_key, now);

  // Before the claim (see IdempotencyTable::set_restoring): while the live keys
  // are still being restored, a miss is checked against the durable record.
  const bool restoring = idempotency_.restoring();
  const std::uint64_t fingerprint = draw_fingerprint(command.activity_id, command.user_id);
  auto claim = idempotency_.claim(command.activity_id, command.idempotency_key, fingerprint, now,
                                  IdempotencyTable::outcome_reserve_for(command.user_id));
  using Kind = IdempotencyTable::Claim::Kind;
  switch (claim.kind) {
    case Kind::done:
      return done(DrawOutcome{std::move(*claim.replay), true});
    case Kind::in_flight:
      return done(make_error(ErrorKind::request_in_flight,
                             "a draw with this Idempotency-Key is in progress"));
    case Kind::mismatch:
      return done(make_error(ErrorKind::idempotency_key_reused,
                             "this Idempotency-Key was used with a different request body"));
    case Kind::full:
      return done(make_error(ErrorKind::unavailable, "too many draws in flight"));
    case Kind::claimed:
      break;
  }
  IdemEntry* const entry = claim.entry;  // ours until complete() or release()
  // owner_known false: whose key this is could not be read (see release_unowned).
  auto refuse = [&](Error error, bool owner_known = true) {
    if (owner_known) {
      idempotency_.release(entry);
    } else {
      idempotency_.release_unowned(entry);
    }
    if (token_taken) tokens_->give_back(command.idempotency_key, now + options_.token_ttl_ms);
    done(std::move(error));
  };

  if (options_.require_token && !token_taken) {
    return refuse(make_error(ErrorKind::invalid_token,
                             "the Idempotency-Key is not a live token issued by POST /tokens"));
  }
  // The in-memory ring dropped keys before their TTL (or has not got them all
  // back yet): this key may have been one of them, so the durable record decides.
  if (restoring || idempotency_.maybe_evicted(now)) {
    auto found = sink_.find_by_idempotency_key(command.activity_id, command.idempotency_key);
    if (!found.ok()) return refuse(found.error(), /*owner_known=*/false);
    if (found.value()) {
      const DrawRecord& earlier = *found.value();
      const std::uint64_t owner = draw_fingerprint(earlier.activity_id, earlier.user_id);
      // The entry becomes the recorded draw whoever asked: released instead, it
      // would keep this request's fingerprint and refuse the key's owner.
      idempotency_.complete_from_record(entry, earlier, owner);
      if (owner != fingerprint) {
        if (token_taken) tokens_->give_back(command.idempotency_key, now + options_.token_ttl_ms);
        return done(make_error(ErrorKind::idempotency_key_reused,
                               "this Idempotency-Key was used with a different request body"));
      }
      return done(DrawOutcome{earlier, true});
    }
  }

  auto seg = act->segment.load();
  const ActivityStatus status = activity_status_at(*seg->config, seg->ended, now);
  if (status != ActivityStatus::active) {
    return refuse(make_error(ErrorKind::activity_not_active,
                             std::string("the activity is ") + to_string(status)));
  }

  const std::int64_t day = seg->time_zone.local_day(now);
  const QuotaBook::Limits limits{seg->config->max_draws_per_user,
                                 seg->config->max_draws_per_user_per_day};
  if (!act->quotas.take(command.user_id, day, limits)) {
    return refuse(make_error(ErrorKind::quota_exhausted,
                             "the user has no draws left in this activity"));
  }

  // Take the sequence number. A closed segment means an admin change is being
  // published: reload and retry (the window is a few instructions wide).
  std::int64_t seq = 0;
  for (;;) {
    seg = act->segment.load();
    if (seg->ended) {
      act->quotas.give_back(command.user_id, day);
      return refuse(make_error(ErrorKind::activity_not_active, "the activity is ended"));
    }
    const std::uint64_t count = seg->taken.fetch_add(1, std::memory_order_acq_rel);
    if ((count & kClosed) == 0) {
      seq = seg->base_seq + static_cast<std::int64_t>(count);
      break;
    }
    std::this_thread::yield();
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  finish_draw(act, seg, seq, std::move(command), entry, std::move(done));
}

void DrawEngine::finish_draw(const std::shared_ptr<Activity>& act,
                             const std::shared_ptr<Segment>& seg, std::int64_t seq,
                             DrawCommand&& command, IdemEntry* entry, DrawCallback&& done) {
  EpochChain& chain = *seg->chain;
  const std::int64_t epoch = chain.epoch_of(seq);
  const std::int64_t slot = chain.slot_of(seq);

  auto pending = InFlightPool::take(in_flight_pool_);
  pending->act = act;
  pending->entry = entry;
  pending->done = std::move(done);
  DrawRecord& record = pending->record;
  record.draw_id = make_ulid(command.now_ms, entropy_);
  record.activity_id = std::move(command.activity_id);
  record.seq = seq;
  record.epoch = epoch;
  record.slot = slot;
  record.user_id = std::move(command.user_id);
  record.idempotency_key = std::move(command.idempotency_key);
  record.drawn_at_ms = command.now_ms;

  auto deck = deck_for(*act, chain, epoch);
  if (deck) {
    const Card card = deck->cards[static_cast<std::size_t>(slot)];
    if (card != kMissCard) {
      const Prize& prize = seg->config->prizes[card];
      record.candidate_id = prize.id;
      auto& wins = *seg->wins[card];
      std::int64_t won = wins.load(std::memory_order_relaxed);
      while (won < prize.stock &&
             !wins.compare_exchange_weak(won, won + 1, std::memory_order_acq_rel)) {
      }
      if (won < prize.stock) {
        record.won = true;
        record.prize_id = prize.id;
        record.prize_name = prize.name;
      }
    }
  } else {
    // The epoch's seed could not be stored: nothing can be decided fairly and
    // the sink is failing. The seq is still recorded (a miss) if the sink can.
    sink_failed_.store(true, std::memory_order_release);
  }

  // The sink queues its own copy; the acknowledgement keeps the record for the
  // answer (and packs it into the idempotency entry), so no shared block is needed.
  DrawRecord for_sink = record;
  auto ack = [this, pending = std::move(pending)](bool durable) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    InFlight& draw = *pending;
    if (!durable) {
      // A taken seq that cannot be recorded leaves a hole no later draw may
      // pass: stop drawing (503) until a restart rebuilds from the record.
      sink_failed_.store(true, std::memory_order_release);
      idempotency_.release(draw.entry);
      return draw.done(make_error(ErrorKind::unavailable, "the draw could not be recorded"));
    }
    const std::int64_t seq_done = draw.record.seq + 1;
    std::int64_t next = draw.act->durable_next_seq.load(std::memory_order_relaxed);
    while (next < seq_done && !draw.act->durable_next_seq.compare_exchange_weak(
                                  next, seq_done, std::memory_order_acq_rel)) {
    }
    idempotency_.complete(draw.entry, draw.record);
    draw.done(DrawOutcome{std::move(draw.record), false});
  };
  static_assert(Sink::Ack::stored_inline<decltype(ack)>, "the ack of every draw is kept inline");
  sink_.append(std::move(for_sink), std::move(ack));
}

std::shared_ptr<const DrawEngine::EpochDeck> DrawEngine::deck_for(Activity& act, EpochChain& chain,
                                                                  std::int64_t epoch) {
  auto& slot = chain.decks[static_cast<std::size_t>(epoch) % EpochChain::kSlots];
  auto deck = slot.load();
  if (deck && deck->epoch == epoch) return deck;

  std::lock_guard lock(act.mutex);
  deck = slot.load();
  if (deck && deck->epoch == epoch) return deck;
  if (epoch <= chain.prepared_through) {
    // A straggler whose deck was already replaced in the ring: rebuild it from
    // its stored seed (deterministic), without publishing it.
    const EpochRecord& rec = act.epochs[static_cast<std::size_t>(epoch)];
    auto rebuilt = std::make_shared<EpochDeck>();
    rebuilt->epoch = epoch;
    rebuilt->cards = build_deck(rec.seed, chain.weights, chain.miss_weight);
    return rebuilt;
  }
  epochs_built_on_draw_path_.fetch_add(1, std::memory_order_relaxed);
  while (chain.prepared_through < epoch) {
    if (!prepare_one_locked(act, chain).ok()) return nullptr;
  }
  return slot.load();
}

// Creates (or reuses, after a restart) the chain's next epoch: its seed stored
// durably before any draw can use it, then its deck published in the ring.
Status DrawEngine::prepare_one_locked(Activity& act, EpochChain& chain) {
  const std::int64_t epoch = chain.prepared_through + 1;
  const auto index = static_cast<std::size_t>(epoch);
  if (index > act.epochs.size()) {
    return make_error(ErrorKind::internal, "epoch numbering out of order");
  }
  if (index == act.epochs.size()) {
    EpochRecord rec;
    rec.activity_id = act.id;
    rec.epoch = epoch;
    entropy_.fill(rec.seed);
    rec.commitment = commitment_hex(rec.seed);
    rec.prizes = chain.prizes;
    rec.miss_weight = chain.miss_weight;
    rec.epoch_size = chain.size;
    if (auto saved = sink_.save_epoch(rec); !saved.ok()) return saved;
    act.epochs.push_back(std::move(rec));
  }
  auto deck = std::make_shared<EpochDeck>();
  deck->epoch = epoch;
  deck->cards = build_deck(act.epochs[index].seed, chain.weights, chain.miss_weight);
  chain.decks[index % EpochChain::kSlots].store(std::move(deck));
  chain.prepared_through = epoch;
  epochs_prepared_.fetch_add(1, std::memory_order_relaxed);
  return ok_status();
}

void DrawEngine::prepare_epochs() {
  auto registry = registry_.load();
  for (const auto& [id, act] : *registry) {
    auto seg = act->segment.load();
    if (seg->ended || !seg->chain) continue;
    EpochChain& chain = *seg->chain;
    const std::int64_t current = chain.epoch_of(std::max(seg->next_seq(), chain.origin_seq));
    const auto ahead = static_cast<std::int64_t>(
        std::max<std::uint64_t>(1, (options_.prepare_ahead_draws + chain.size - 1) / chain.size));
    const std::int64_t target =
        current + std::min<std::int64_t>(ahead, EpochChain::kSlots / 2 - 1);
    std::lock_guard lock(act->mutex);
    if (act->segment.load() != seg) continue;  // changed meanwhile
    while (chain.prepared_through < target) {
      if (!prepare_one_locked(*act, chain).ok()) break;
    }
  }
}

// ---------------------------------------------------------------------------
// Activities: create, replace, end.

std::shared_ptr<DrawEngine::Segment> DrawEngine::make_segment(
    Activity& act, std::shared_ptr<const ActivityConfig> config, std::shared_ptr<EpochChain> chain,
    std::int64_t base_seq, bool ended) {
  auto seg = std::make_shared<Segment>();
  seg->base_seq = base_seq;
  seg->ended = ended;
  seg->chain = std::move(chain);
  if (auto tz = TimeZone::load(config->time_zone, options_.zoneinfo_dir); tz.ok()) {
    seg->time_zone = std::move(tz.value());
  }
  for (const Prize& prize : config->prizes) seg->wins.push_back(act.wins_for(prize.id));
  seg->config = std::move(config);
  return seg;
}

Result<std::shared_ptr<DrawEngine::EpochChain>> DrawEngine::new_chain_locked(
    Activity& act, const ActivityConfig& config, std::int64_t origin_seq) {
  auto chain = EpochChain::make(config, static_cast<std::int64_t>(act.epochs.size()), origin_seq);
  if (auto prepared = prepare_one_locked(act, *chain); !prepared.ok()) return prepared.error();
  return chain;
}

// Ends every epoch of the old segment's chain at the boundary: started epochs
// get their first_seq, and all of them have their seed revealed.
Status DrawEngine::close_chain_locked(Activity& act, const Segment& old_segment,
                                      std::int64_t boundary, std::int64_t now_ms) {
  if (!old_segment.chain) return ok_status();
  const EpochChain& chain = *old_segment.chain;
  for (std::int64_t e = chain.first_epoch; e <= chain.prepared_through; ++e) {
    EpochRecord& rec = act.epochs[static_cast<std::size_t>(e)];
    if (rec.revealed_at_ms) continue;
    const std::int64_t first = chain.first_seq_of(e);
    if (first < boundary) rec.first_seq = first;  // started; else voided, never used
    rec.revealed_at_ms = now_ms;
    if (auto saved = sink_.save_epoch(rec); !saved.ok()) return saved;
  }
  return ok_status();
}

Result<bool> DrawEngine::put_activity(const std::string& id, ActivityConfig config,
                                      std::int64_t now_ms) {
  if (!is_valid_id(id)) return make_error(ErrorKind::invalid_request, "id: invalid activity id");
  if (auto valid = validate_activity(config); !valid.ok()) return valid.error();
  if (auto tz = TimeZone::load(config.time_zone, options_.zoneinfo_dir); !tz.ok()) {
    return make_error(ErrorKind::invalid_request, "time_zone: " + tz.error().detail);
  }
  auto shared_config = std::make_shared<const ActivityConfig>(std::move(config));

  std::lock_guard registry_lock(registry_mutex_);
  auto act = find(id);
  if (!act) {
    act = std::make_shared<Activity>();
    act->id = id;
    act->created_at_ms = now_ms;
    std::lock_guard lock(act->mutex);
    StoredActivity stored{id, options_.encode_config(*shared_config), false, now_ms, now_ms};
    if (auto saved = sink_.save_activity(stored); !saved.ok()) return saved.error();
    auto chain = new_chain_locked(*act, *shared_config, 0);
    if (!chain.ok()) return chain.error();
    act->segment.store(make_segment(*act, shared_config, std::move(chain.value()), 0, false));
    auto next = std::make_shared<Registry>(*registry_.load());
    next->emplace(id, act);
    registry_.store(std::move(next));
    return true;
  }

  std::lock_guard lock(act->mutex);
  auto old = act->segment.load();
  if (old->ended) {
    return make_error(ErrorKind::activity_not_active, "the activity has ended for good");
  }
  StoredActivity stored{id, options_.encode_config(*shared_config), false, act->created_at_ms,
                        now_ms};
  if (auto saved = sink_.save_activity(stored); !saved.ok()) return saved.error();

  const bool same_deck = old->config->same_deck(*shared_config);
  std::shared_ptr<EpochChain> chain = old->chain;
  if (!same_deck) {
    // Build the new epoch before closing the old segment, so draws wait only
    // for the pointer swap below, never for a shuffle. Its origin is fixed
    // once the boundary is known.
    auto fresh = new_chain_locked(*act, *shared_config, 0);
    if (!fresh.ok()) return fresh.error();
    chain = std::move(fresh.value());
  }
  const std::uint64_t count =
      old->taken.fetch_or(kClosed, std::memory_order_acq_rel) & ~kClosed;
  const std::int64_t boundary = old->base_seq + static_cast<std::int64_t>(count);
  if (!same_deck) chain->origin_seq = boundary;
  act->segment.store(make_segment(*act, shared_config, chain, boundary, false));
  if (!same_deck) {
    if (auto closed = close_chain_locked(*act, *old, boundary, now_ms); !closed.ok()) {
      return closed.error();
    }
  }
  return false;
}

Status DrawEngine::end_activity(const std::string& id, std::int64_t now_ms) {
  auto act = find(id);
  if (!act) return not_found(id);
  std::lock_guard lock(act->mutex);
  auto old = act->segment.load();
  if (old->ended) return ok_status();  // ending twice is harmless
  StoredActivity stored{id, options_.encode_config(*old->config), true, act->created_at_ms, now_ms};
  if (auto saved = sink_.save_activity(stored); !saved.ok()) return saved;
  const std::uint64_t count =
      old->taken.fetch_or(kClosed, std::memory_order_acq_rel) & ~kClosed;
  const std::int64_t boundary = old->base_seq + static_cast<std::int64_t>(count);
  act->segment.store(make_segment(*act, old->config, nullptr, boundary, true));
  return close_chain_locked(*act, *old, boundary, now_ms);
}

// ---------------------------------------------------------------------------
// Reads.

ActivityView DrawEngine::view_of(const Activity& act, std::int64_t now_ms) const {
  auto seg = act.segment.load();
  ActivityView view;
  view.id = act.id;
  view.config = *seg->config;
  view.status = activity_status_at(*seg->config, seg->ended, now_ms);
  view.epoch_size = seg->config->deck_size();
  view.draws = seg->next_seq();
  for (std::size_t i = 0; i < seg->config->prizes.size(); ++i) {
    const Prize& prize = seg->config->prizes[i];
    const std::int64_t wins = seg->wins[i]->load(std::memory_order_acquire);
    view.prizes.push_back(PrizeView{prize, std::max<std::int64_t>(0, prize.stock - wins)});
  }
  return view;
}

Result<ActivityView> DrawEngine::get_activity(const std::string& id, std::int64_t now_ms) {
  auto act = find(id);
  if (!act) return not_found(id);
  return view_of(*act, now_ms);
}

std::vector<ActivityView> DrawEngine::list_activities(std::int64_t now_ms) {
  auto registry = registry_.load();
  std::vector<ActivityView> views;
  views.reserve(registry->size());
  for (const auto& [id, act] : *registry) views.push_back(view_of(*act, now_ms));
  std::sort(views.begin(), views.end(),
            [](const ActivityView& a, const ActivityView& b) { return a.id < b.id; });
  return views;
}

Result<std::vector<EpochView>> DrawEngine::fairness(const std::string& id) {
  auto act = find(id);
  if (!act) return not_found(id);
  std::lock_guard lock(act->mutex);
  auto seg = act->segment.load();
  const std::int64_t next_seq = seg->next_seq();
  const std::int64_t durable = act->durable_next_seq.load(std::memory_order_acquire);
  std::vector<EpochView> views;
  for (const EpochRecord& rec : act->epochs) {
    EpochView view;
    view.record = rec;
    view.first_seq = rec.first_seq;
    if (!view.first_seq && seg->chain && rec.epoch >= seg->chain->first_epoch) {
      const std::int64_t first = seg->chain->first_seq_of(rec.epoch);
      if (first < next_seq) view.first_seq = first;  // started
    }
    // Over: ended by an admin change (revealed_at), or all W draws durable,
    // so no slot of it can ever be drawn again, even after a crash.
    view.revealed = rec.revealed_at_ms.has_value() ||
                    (view.first_seq &&
                     durable >= *view.first_seq + static_cast<std::int64_t>(rec.epoch_size));
    if (!view.revealed) view.record.seed = Seed{};
    views.push_back(std::move(view));
  }
  return views;
}

Result<IssuedToken> DrawEngine::issue_token(std::int64_t now_ms) {
  if (tokens_->size() >= options_.max_tokens) {
    tokens_->expire(now_ms);
    if (tokens_->size() >= options_.max_tokens) {
      return make_error(ErrorKind::unavailable, "too many live tokens");
    }
  }
  std::array<std::uint8_t, 16> bytes{};
  entropy_.fill(bytes);
  IssuedToken token{encode_base64url(bytes), now_ms + options_.token_ttl_ms};
  tokens_->give_back(token.token, token.expires_at_ms);
  return token;
}

void DrawEngine::expire(std::int64_t now_ms) {
  idempotency_.expire(now_ms);
  tokens_->expire(now_ms);
}

bool DrawEngine::ready() const {
  return !sink_failed_.load(std::memory_order_acquire) && sink_.healthy();
}

StoreStats DrawEngine::stats() const {
  StoreStats s;
  s.in_flight_draws = in_flight_.load(std::memory_order_relaxed);
  s.idempotency_entries = idempotency_.size();
  s.idempotency_evicted_early = idempotency_.evicted_early();
  s.live_tokens = tokens_->size();
  s.epochs_prepared = epochs_prepared_.load(std::memory_order_relaxed);
  s.epochs_built_on_draw_path = epochs_built_on_draw_path_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------------------
// Recovery.

Status DrawEngine::recover() {
  auto stored = sink_.load_activities();
  if (!stored.ok()) return stored.error();
  std::lock_guard registry_lock(registry_mutex_);
  for (const StoredActivity& activity : stored.value()) {
    if (auto recovered = recover_activity(activity); !recovered.ok()) {
      return make_error(recovered.error().kind,
                        "activity '" + activity.id + "': " + recovered.error().detail);
    }
  }
  // Sequence, stock and quotas are exact now. The live idempotency keys are
  // restored after recover() returns, so serving need not wait for them: until
  // they are all back a miss is checked against the record (set_restoring),
  // which answers as the restored entry would.
  std::vector<std::string> ids;
  ids.reserve(stored->size());
  for (const StoredActivity& activity : stored.value()) ids.push_back(activity.id);
  const std::int64_t now = clock_.now_ms();
  idempotency_.set_restoring(true);
  auto restore_all = [this, ids = std::move(ids), now]() noexcept {
    for (const std::string& id : ids) {
      bool restored = false;
      try {
        restored = restore_live_keys(id, now).ok();
      } catch (...) {
      }
      // Some of its keys may be missing: the record stays the judge for a TTL.
      if (!restored) idempotency_.note_left_out(now);
    }
    idempotency_.set_restoring(false);
  };
  try {
    // restore_all is copied into the thread's callable: still whole if this throws.
    live_keys_restore_ = std::jthread([restore_all] {
      name_this_thread("fd-restore");
      restore_all();
    });
  } catch (const std::system_error&) {
    restore_all();  // no thread to be had: before serving, then
  }
  return ok_status();
}

// The activity's live idempotency keys (draws younger than the TTL), the last
// `idempotency_capacity` of them by seq; any left out are looked up in the
// sink on a miss until they expire.
Result<LiveDraws> DrawEngine::restore_live_keys(const std::string& activity_id,
                                                std::int64_t now_ms) {
  auto live = sink_.load_live_draws(
      activity_id, now_ms - options_.idempotency_ttl_ms, options_.idempotency_capacity,
      [this](const DrawRecord& record) {
        idempotency_.restore(record, draw_fingerprint(record.activity_id, record.user_id));
      });
  if (live.ok() && live->newest_left_out_ms) idempotency_.note_left_out(*live->newest_left_out_ms);
  return live;
}

Status DrawEngine::recover_activity(const StoredActivity& stored) {
  auto decoded = options_.decode_config(stored.config_json);
  if (!decoded.ok()) return decoded.error();
  auto config = std::make_shared<const ActivityConfig>(std::move(decoded.value()));
  const std::int64_t now = clock_.now_ms();
  TimeZone tz = TimeZone::utc();
  if (auto loaded = TimeZone::load(config->time_zone, options_.zoneinfo_dir); loaded.ok()) {
    tz = std::move(loaded.value());
  }
  const std::int64_t today = tz.local_day(now);

  auto act = std::make_shared<Activity>();
  act->id = stored.id;
  act->created_at_ms = stored.created_at_ms;

  // Every recorded draw counts towards its user's total, those since the start
  // of the activity's current local day towards today's count as well.
  auto totals = sink_.load_totals(
      stored.id, tz.day_start_ms(today),
      [&quotas = act->quotas, today](std::string_view user, std::int64_t draws,
                                     std::int64_t draws_today) {
        quotas.restore_add(user, draws, today, draws_today);
      });
  if (!totals.ok()) return totals.error();
  auto epochs = sink_.load_epochs(stored.id);
  if (!epochs.ok()) return epochs.error();

  act->durable_next_seq.store(totals->next_seq);
  std::lock_guard lock(act->mutex);
  act->epochs = std::move(epochs.value());
  for (std::size_t i = 0; i < act->epochs.size(); ++i) {
    if (act->epochs[i].epoch != static_cast<std::int64_t>(i)) {
      return make_error(ErrorKind::internal, "epochs are not numbered 0..n-1");
    }
  }
  for (const auto& [epoch, first] : totals->first_seq_by_epoch) {
    if (epoch >= 0 && static_cast<std::size_t>(epoch) < act->epochs.size() &&
        !act->epochs[static_cast<std::size_t>(epoch)].first_seq) {
      act->epochs[static_cast<std::size_t>(epoch)].first_seq = first;
    }
  }
  for (const auto& [prize_id, wins] : totals->wins_by_prize) act->wins_for(prize_id)->store(wins);

  const std::int64_t next_seq = totals->next_seq;
  auto same_deck_as_config = [&](const EpochRecord& rec) {
    if (rec.miss_weight != config->miss_weight || rec.prizes.size() != config->prizes.size()) {
      return false;
    }
    for (std::size_t i = 0; i < rec.prizes.size(); ++i) {
      if (rec.prizes[i].id != config->prizes[i].id ||
          rec.prizes[i].weight != config->prizes[i].weight) {
        return false;
      }
    }
    return true;
  };
  auto reveal = [&](EpochRecord& rec) -> Status {
    rec.revealed_at_ms = now;
    return sink_.save_epoch(rec);
  };

  if (stored.ended) {
    for (EpochRecord& rec : act->epochs) {
      if (!rec.revealed_at_ms) {
        if (auto saved = reveal(rec); !saved.ok()) return saved;
      }
    }
    act->segment.store(make_segment(*act, config, nullptr, next_seq, true));
  } else {
    // The current epoch is the last one that started and was not ended, if it
    // still has slots and was shuffled from the current config. Otherwise the
    // chain starts at the first epoch prepared ahead (never started) for this
    // config. Every other epoch that is not over yet is ended now.
    const auto count = static_cast<std::int64_t>(act->epochs.size());
    std::int64_t current = -1;
    for (std::int64_t e = count - 1; e >= 0; --e) {
      const EpochRecord& rec = act->epochs[static_cast<std::size_t>(e)];
      if (rec.first_seq && !rec.revealed_at_ms) {
        current = e;
        break;
      }
    }
    std::int64_t chain_first = -1;
    std::int64_t origin = next_seq;
    if (current >= 0) {
      const EpochRecord& rec = act->epochs[static_cast<std::size_t>(current)];
      if (same_deck_as_config(rec) &&
          *rec.first_seq + static_cast<std::int64_t>(rec.epoch_size) > next_seq) {
        chain_first = current;
        origin = *rec.first_seq;
      }
    }
    if (chain_first < 0) {
      for (std::int64_t e = current + 1; e < count; ++e) {
        const EpochRecord& rec = act->epochs[static_cast<std::size_t>(e)];
        if (!rec.first_seq && !rec.revealed_at_ms && same_deck_as_config(rec)) {
          chain_first = e;
          break;
        }
      }
    }
    // The chain may only reuse epochs up to the end of the table if all of them
    // fit it (prepared ahead, same deck); otherwise a fresh chain starts after.
    for (std::int64_t e = chain_first + 1; chain_first >= 0 && e < count; ++e) {
      const EpochRecord& rec = act->epochs[static_cast<std::size_t>(e)];
      if (rec.first_seq || rec.revealed_at_ms || !same_deck_as_config(rec)) chain_first = -1;
    }
    for (std::int64_t e = 0; e < count; ++e) {
      EpochRecord& rec = act->epochs[static_cast<std::size_t>(e)];
      const bool in_chain = chain_first >= 0 && e >= chain_first;
      const bool exhausted =
          rec.first_seq && *rec.first_seq + static_cast<std::int64_t>(rec.epoch_size) <= next_seq;
      if (in_chain || rec.revealed_at_ms || exhausted) continue;
      if (auto saved = reveal(rec); !saved.ok()) return saved;
    }
    std::shared_ptr<EpochChain> chain;
    if (chain_first >= 0) {
      chain = EpochChain::make(*config, chain_first, origin);
      while (chain->prepared_through < chain->epoch_of(next_seq)) {
        if (auto prepared = prepare_one_locked(*act, *chain); !prepared.ok()) return prepared;
      }
    } else {
      auto fresh = new_chain_locked(*act, *config, next_seq);
      if (!fresh.ok()) return fresh.error();
      chain = std::move(fresh.value());
    }
    act->segment.store(make_segment(*act, config, std::move(chain), next_seq, false));
  }

  auto next = std::make_shared<Registry>(*registry_.load());
  next->emplace(stored.id, act);
  registry_.store(std::move(next));
  return ok_status();
}

}  // namespace fairdraw
