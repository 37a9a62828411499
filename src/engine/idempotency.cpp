// Idempotency table: per-shard open-addressing tables of (hash, entry) slots, entries of one
// heap block each, and a FIFO through the entries that expires them in insertion order.
// Lock order: ring_mutex_ before any shard mutex, never the reverse.
//
// Who frees an entry: whoever removes it from its shard, under the shard's mutex, and only
// when it is not Drawing (or, for a claim refused as `full`, the claimant that created it).
// A Drawing entry belongs to its claimant until complete() or release(), whose release-store
// is its last access; the remover's acquire-load of the state orders the free after it.
#include "fairdraw/engine/idempotency.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <utility>

#include "fairdraw/engine/ulid.hpp"
#include "fairdraw/fnv1a.hpp"

namespace fairdraw {

namespace {

constexpr std::size_t kShardBits = 6;
constexpr std::size_t kShardCount = std::size_t{1} << kShardBits;
constexpr std::size_t kFirstSlots = 16;

// ---------------------------------------------------------------------------
// Hashing. The scope is activity_id '\n' key; it is hashed as its two parts split at the
// first '\n', so an entry's hash can be recomputed from its stored scope alone.

std::uint64_t fmix64(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::uint64_t hash_parts(std::string_view activity, std::string_view key) {
  const std::uint64_t a = std::hash<std::string_view>{}(activity);
  const std::uint64_t k = std::hash<std::string_view>{}(key);
  return fmix64(a ^ (k * 0x9e3779b97f4a7c15ULL + 0x7f4a7c159e3779b9ULL));
}

std::pair<std::string_view, std::string_view> split_scope(std::string_view scope) {
  const std::size_t nl = scope.find('\n');
  return {scope.substr(0, nl), scope.substr(nl + 1)};
}

bool scope_equals(std::string_view scope, std::string_view activity, std::string_view key) {
  return scope.size() == activity.size() + 1 + key.size() &&
         std::memcmp(scope.data(), activity.data(), activity.size()) == 0 &&
         scope[activity.size()] == '\n' &&
         std::memcmp(scope.data() + activity.size() + 1, key.data(), key.size()) == 0;
}

// ---------------------------------------------------------------------------
// The outcome, packed: a flags byte, zigzag varints for the numbers (drawn_at_ms as a
// delta from created_ms, usually 0), the draw id as its 16 bytes when it is a canonical
// ULID (re-encoded to the identical text), then the strings as varint length + bytes.
// activity_id and idempotency_key are taken from the scope when they equal it.

enum OutcomeFlag : std::uint8_t {
  kWon = 1,
  kHasCandidate = 2,
  kHasPrizeId = 4,
  kPrizeIdIsCandidate = 8,
  kHasPrizeName = 16,
  kBinaryDrawId = 32,
  kOwnActivity = 64,  // activity_id differs from the scope's
  kOwnKey = 128,      // idempotency_key differs from the scope's
};

enum OutcomeForm : std::uint8_t { kNoOutcome = 0, kInline = 1, kOverflow = 2 };

// Writes what fits in [out, out + capacity) and counts every byte, so one pass both fills
// the entry's area and tells whether the outcome fitted (n <= capacity).
struct Writer {
  unsigned char* out = nullptr;
  std::size_t capacity = 0;
  std::size_t n = 0;
  void byte(std::uint8_t b) {
    if (n < capacity) out[n] = b;
    ++n;
  }
  void bytes(const void* p, std::size_t size) {
    if (n < capacity && size) std::memcpy(out + n, p, std::min(size, capacity - n));
    n += size;
  }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      byte(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    byte(static_cast<std::uint8_t>(v));
  }
  void signed_varint(std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    varint((u << 1) ^ (0 - (u >> 63)));
  }
  void text(std::string_view s) {
    varint(s.size());
    bytes(s.data(), s.size());
  }
};

struct Reader {
  const unsigned char* in;
  std::uint8_t byte() { return *in++; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const std::uint8_t b = byte();
      v |= std::uint64_t{b & 0x7FU} << shift;
      if (b < 0x80) return v;
    }
  }
  std::int64_t signed_varint() {
    const std::uint64_t u = varint();
    return static_cast<std::int64_t>((u >> 1) ^ (0 - (u & 1)));
  }
  std::string text() {
    const std::size_t size = varint();
    std::string s(reinterpret_cast<const char*>(in), size);
    in += size;
    return s;
  }
};

void put_ulid(Writer& w, UlidBits bits) {
  for (int i = 7; i >= 0; --i) w.byte(static_cast<std::uint8_t>(bits.hi >> (8 * i)));
  for (int i = 7; i >= 0; --i) w.byte(static_cast<std::uint8_t>(bits.lo >> (8 * i)));
}

std::string get_ulid(Reader& r) {
  UlidBits bits;
  for (int i = 0; i < 8; ++i) bits.hi = (bits.hi << 8) | r.byte();
  for (int i = 0; i < 8; ++i) bits.lo = (bits.lo << 8) | r.byte();
  return encode_ulid(bits);
}

void put_outcome(Writer& w, const DrawRecord& r, std::string_view scope_activity,
                 std::string_view scope_key, std::int64_t created_ms) {
  const std::optional<UlidBits> ulid = decode_ulid(r.draw_id);
  const bool binary_id = ulid.has_value();
  const bool prize_is_candidate = r.prize_id && r.candidate_id && *r.prize_id == *r.candidate_id;
  std::uint8_t flags = 0;
  if (r.won) flags |= kWon;
  if (r.candidate_id) flags |= kHasCandidate;
  if (r.prize_id) flags |= prize_is_candidate ? kPrizeIdIsCandidate : kHasPrizeId;
  if (r.prize_name) flags |= kHasPrizeName;
  if (binary_id) flags |= kBinaryDrawId;
  if (r.activity_id != scope_activity) flags |= kOwnActivity;
  if (r.idempotency_key != scope_key) flags |= kOwnKey;
  w.byte(flags);
  w.signed_varint(r.seq);
  w.signed_varint(r.epoch);
  w.signed_varint(r.slot);
  // Wrapping difference: exact for any pair of values.
  w.signed_varint(static_cast<std::int64_t>(static_cast<std::uint64_t>(r.drawn_at_ms) -
                                            static_cast<std::uint64_t>(created_ms)));
  if (binary_id) {
    put_ulid(w, *ulid);
  } else {
    w.text(r.draw_id);
  }
  w.text(r.user_id);
  if (flags & kOwnActivity) w.text(r.activity_id);
  if (flags & kOwnKey) w.text(r.idempotency_key);
  if (r.candidate_id) w.text(*r.candidate_id);
  if (flags & kHasPrizeId) w.text(*r.prize_id);
  if (r.prize_name) w.text(*r.prize_name);
}

DrawRecord get_outcome(const unsigned char* bytes, std::string_view scope, std::int64_t created_ms) {
  const auto [scope_activity, scope_key] = split_scope(scope);
  Reader r{bytes};
  DrawRecord rec;
  const std::uint8_t flags = r.byte();
  rec.won = (flags & kWon) != 0;
  rec.seq = r.signed_varint();
  rec.epoch = r.signed_varint();
  rec.slot = r.signed_varint();
  rec.drawn_at_ms = static_cast<std::int64_t>(static_cast<std::uint64_t>(created_ms) +
                                              static_cast<std::uint64_t>(r.signed_varint()));
  rec.draw_id = (flags & kBinaryDrawId) ? get_ulid(r) : r.text();
  rec.user_id = r.text();
  rec.activity_id = (flags & kOwnActivity) ? r.text() : std::string(scope_activity);
  rec.idempotency_key = (flags & kOwnKey) ? r.text() : std::string(scope_key);
  if (flags & kHasCandidate) rec.candidate_id = r.text();
  if (flags & kHasPrizeId) rec.prize_id = r.text();
  if (flags & kPrizeIdIsCandidate) rec.prize_id = rec.candidate_id;
  if (flags & kHasPrizeName) rec.prize_name = r.text();
  return rec;
}

std::size_t outcome_size(const DrawRecord& r, std::string_view scope_activity,
                         std::string_view scope_key, std::int64_t created_ms) {
  Writer counter;
  put_outcome(counter, r, scope_activity, scope_key, created_ms);
  return counter.n;
}

// ---------------------------------------------------------------------------
// Entries: one block, header + scope + outcome area.

IdemEntry* new_entry(std::string_view activity, std::string_view key, std::uint64_t fingerprint,
                     std::int64_t created_ms, IdemState state, std::size_t outcome_capacity) {
  // The area holds the outcome, or a pointer to it when it did not fit.
  outcome_capacity = std::clamp<std::size_t>(outcome_capacity, sizeof(void*), UINT16_MAX);
  const std::size_t scope_size = activity.size() + 1 + key.size();
  void* block = ::operator new(sizeof(IdemEntry) + scope_size + outcome_capacity);
  auto* entry = new (block) IdemEntry;
  entry->fingerprint = fingerprint;
  entry->created_ms = created_ms;
  entry->state.store(state, std::memory_order_relaxed);
  entry->outcome_capacity = static_cast<std::uint16_t>(outcome_capacity);
  entry->scope_size = static_cast<std::uint32_t>(scope_size);
  auto* scope = reinterpret_cast<char*>(entry + 1);
  std::memcpy(scope, activity.data(), activity.size());
  scope[activity.size()] = '\n';
  std::memcpy(scope + activity.size() + 1, key.data(), key.size());
  return entry;
}

unsigned char* overflow_block(const IdemEntry& entry) {
  unsigned char* block = nullptr;
  std::memcpy(&block, entry.outcome_area(), sizeof(block));
  return block;
}

void delete_entry(IdemEntry* entry) {
  if (entry->outcome_form == kOverflow) delete[] overflow_block(*entry);
  entry->~IdemEntry();
  ::operator delete(entry);
}

// Writes the outcome into the entry (before its state says Done): in one pass into the
// entry's own area when it fits, as on the draw path; else into a block of its own.
void store_outcome(IdemEntry& entry, const DrawRecord& result) {
  const auto [scope_activity, scope_key] = split_scope(entry.scope());
  Writer w{entry.outcome_area(), entry.outcome_capacity};
  put_outcome(w, result, scope_activity, scope_key, entry.created_ms);
  if (w.n <= entry.outcome_capacity) {
    entry.outcome_form = kInline;
    return;
  }
  Writer overflow{new unsigned char[w.n], w.n};
  put_outcome(overflow, result, scope_activity, scope_key, entry.created_ms);
  std::memcpy(entry.outcome_area(), &overflow.out, sizeof(overflow.out));
  entry.outcome_form = kOverflow;
}

DrawRecord load_outcome(const IdemEntry& entry) {
  const unsigned char* bytes =
      entry.outcome_form == kOverflow ? overflow_block(entry) : entry.outcome_area();
  return get_outcome(bytes, entry.scope(), entry.created_ms);
}

}  // namespace

// ---------------------------------------------------------------------------
// A shard: linear probing over a power-of-two array of (hash, entry) slots, at most 3/4
// full. The hash in the slot spares a visit to the entry for every probe and for growth.

struct IdempotencyTable::Shard {
  struct Slot {
    std::uint64_t hash = 0;
    IdemEntry* entry = nullptr;  // null: empty
  };
  std::mutex mutex;
  std::vector<Slot> slots;  // guarded by mutex
  std::size_t used = 0;     // guarded by mutex

  std::size_t mask() const { return slots.size() - 1; }

  Slot* find(std::uint64_t hash, std::string_view activity, std::string_view key) {
    if (slots.empty()) return nullptr;
    for (std::size_t i = hash & mask();; i = (i + 1) & mask()) {
      Slot& slot = slots[i];
      if (!slot.entry) return nullptr;
      if (slot.hash == hash && scope_equals(slot.entry->scope(), activity, key)) return &slot;
    }
  }

  void insert(std::uint64_t hash, IdemEntry* entry) {
    if ((used + 1) * 4 > slots.size() * 3) grow();
    std::size_t i = hash & mask();
    while (slots[i].entry) i = (i + 1) & mask();
    slots[i] = Slot{hash, entry};
    ++used;
  }

  // Backward-shift deletion: no tombstones, so probes never lengthen with churn.
  void erase(std::uint64_t hash, const IdemEntry* entry) {
    std::size_t i = hash & mask();
    while (slots[i].entry != entry) i = (i + 1) & mask();
    for (std::size_t j = (i + 1) & mask(); slots[j].entry; j = (j + 1) & mask()) {
      const std::size_t home = slots[j].hash & mask();
      // Slot j may move back to i unless its home lies cyclically in (i, j].
      if (((j - home) & mask()) >= ((j - i) & mask())) {
        slots[i] = slots[j];
        i = j;
      }
    }
    slots[i] = Slot{};
    --used;
  }

  void grow() {
    const std::size_t bigger = std::max(kFirstSlots, slots.size() * 2);
    std::vector<Slot> old = std::exchange(slots, std::vector<Slot>(bigger));
    for (const Slot& slot : old) {
      if (!slot.entry) continue;
      std::size_t i = slot.hash & mask();
      while (slots[i].entry) i = (i + 1) & mask();
      slots[i] = slot;
    }
  }
};

namespace {

// Caller holds the entry's shard mutex. Idle -> Drawing happens only under that mutex, which
// is what lets expiry check "not Drawing" and erase atomically with respect to claims.
IdempotencyTable::Claim classify(IdemEntry* entry, std::uint64_t fingerprint) {
  using Kind = IdempotencyTable::Claim::Kind;
  // Unowned: the claim takes the key, and the key takes the claimant's fingerprint.
  IdemState unowned = IdemState::unowned;
  if (entry->state.compare_exchange_strong(unowned, IdemState::drawing, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
    entry->fingerprint = fingerprint;
    return {Kind::claimed, entry, std::nullopt};
  }
  if (entry->fingerprint != fingerprint) return {Kind::mismatch, nullptr, std::nullopt};
  // Acquire pairs with complete()'s release-store of Done, so the outcome may be read.
  IdemState state = entry->state.load(std::memory_order_acquire);
  if (state == IdemState::done) return {Kind::done, nullptr, load_outcome(*entry)};
  if (state == IdemState::drawing) return {Kind::in_flight, nullptr, std::nullopt};
  // Idle: only a claim, under this mutex, leaves Idle, so the CAS cannot fail; it is kept
  // so that a broken invariant shows up as in_flight rather than as two owners.
  if (!entry->state.compare_exchange_strong(state, IdemState::drawing, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    return {Kind::in_flight, nullptr, std::nullopt};
  }
  return {Kind::claimed, entry, std::nullopt};
}

}  // namespace

IdempotencyTable::IdempotencyTable(std::size_t capacity, std::int64_t ttl_ms, ScopeHash hash)
    : capacity_(std::max<std::size_t>(capacity, 1)), ttl_ms_(ttl_ms), hash_(hash ? hash : hash_parts) {
  shards_.reserve(kShardCount);
  for (std::size_t i = 0; i < kShardCount; ++i) shards_.push_back(std::make_unique<Shard>());
}

IdempotencyTable::~IdempotencyTable() {
  for (auto& shard : shards_) {
    for (auto& slot : shard->slots) {
      if (slot.entry) delete_entry(slot.entry);
    }
  }
}

std::size_t IdempotencyTable::outcome_reserve_for(std::string_view user_id) {
  // flags, four varints of up to 4 bytes (seq and slot below 2^27, the delta small),
  // a binary ULID, the user id with a one-byte length.
  return 1 + 4 * 4 + 16 + 1 + user_id.size();
}

std::uint64_t IdempotencyTable::hash_of(std::string_view activity_id, std::string_view key) const {
  if (activity_id.find('\n') == std::string_view::npos) return hash_(activity_id, key);
  // An activity id with a newline: hash the parts as the stored scope will split them.
  std::string scope(activity_id);
  scope.push_back('\n');
  scope.append(key);
  const auto [a, k] = split_scope(scope);
  return hash_(a, k);
}

std::uint64_t IdempotencyTable::hash_of(const IdemEntry& entry) const {
  const auto [a, k] = split_scope(entry.scope());
  return hash_(a, k);
}

IdempotencyTable::Shard& IdempotencyTable::shard_for(std::uint64_t hash) const {
  // The top bits pick the shard, the low bits the slot: independent for any table size.
  return *shards_[hash >> (64 - kShardBits)];
}

IdempotencyTable::Claim IdempotencyTable::claim(std::string_view activity_id, std::string_view key,
                                                std::uint64_t fingerprint, std::int64_t now_ms,
                                                std::size_t outcome_reserve) {
  const std::uint64_t hash = hash_of(activity_id, key);
  Shard& shard = shard_for(hash);
  IdemEntry* entry = nullptr;
  {
    std::lock_guard lock(shard.mutex);
    if (Shard::Slot* slot = shard.find(hash, activity_id, key)) {
      return classify(slot->entry, fingerprint);
    }
    entry = new_entry(activity_id, key, fingerprint, now_ms, IdemState::drawing, outcome_reserve);
    try {
      shard.insert(hash, entry);  // may grow the shard's table
    } catch (...) {
      delete_entry(entry);
      throw;
    }
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  // Published in the shard first: a duplicate arriving now sees Drawing and gets in_flight.
  {
    std::lock_guard lock(ring_mutex_);
    if (push_locked(entry, now_ms)) return {Claim::Kind::claimed, entry, std::nullopt};
  }
  erase_entry(entry);
  delete_entry(entry);  // still Drawing, so nobody else could have freed it
  return {Claim::Kind::full, nullptr, std::nullopt};
}

void IdempotencyTable::complete(IdemEntry* entry, const DrawRecord& result) {
  store_outcome(*entry, result);
  // Release publishes the outcome to whoever acquire-loads Done.
  entry->state.store(IdemState::done, std::memory_order_release);
}

void IdempotencyTable::complete_from_record(IdemEntry* entry, const DrawRecord& record,
                                            std::uint64_t fingerprint) {
  store_outcome(*entry, record);
  // classify() reads the fingerprint under the shard's mutex, whatever the state.
  std::lock_guard lock(shard_for(hash_of(*entry)).mutex);
  entry->fingerprint = fingerprint;
  entry->state.store(IdemState::done, std::memory_order_release);
}

void IdempotencyTable::release(IdemEntry* entry) {
  IdemState expected = IdemState::drawing;
  entry->state.compare_exchange_strong(expected, IdemState::idle, std::memory_order_release,
                                       std::memory_order_relaxed);
}

void IdempotencyTable::release_unowned(IdemEntry* entry) {
  // Under the shard's mutex, as classify() reads and sets the fingerprint there.
  std::lock_guard lock(shard_for(hash_of(*entry)).mutex);
  IdemState expected = IdemState::drawing;
  entry->state.compare_exchange_strong(expected, IdemState::unowned, std::memory_order_release,
                                       std::memory_order_relaxed);
}

void IdempotencyTable::restore(const DrawRecord& record, std::uint64_t fingerprint) {
  const std::uint64_t hash = hash_of(record.activity_id, record.idempotency_key);
  Shard& shard = shard_for(hash);
  IdemEntry* entry = nullptr;
  bool claimed_unfinished = false;
  {
    std::lock_guard lock(shard.mutex);
    if (Shard::Slot* slot = shard.find(hash, record.activity_id, record.idempotency_key)) {
      // Claimed while restoring. Done: its claimant found the record in the sink
      // (complete_from_record). Otherwise it may yet be released unfinished (the
      // sink failed), so later misses must keep looking in the sink.
      claimed_unfinished = slot->entry->state.load(std::memory_order_acquire) != IdemState::done;
    } else {
      // Sized exactly: the outcome is known, so it fits inline (unless over 64 KiB).
      const std::size_t size = outcome_size(record, record.activity_id, record.idempotency_key,
                                            record.drawn_at_ms);
      entry = new_entry(record.activity_id, record.idempotency_key, fingerprint,
                        record.drawn_at_ms, IdemState::done, size);
      store_outcome(*entry, record);
      shard.insert(hash, entry);
      size_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::lock_guard lock(ring_mutex_);  // only once the shard's is released (lock order)
  if (!entry) {
    if (claimed_unfinished) note_evicted_early_locked(record.drawn_at_ms);
    return;
  }
  if (push_locked(entry, record.drawn_at_ms)) return;
  // No room: forget it, but let maybe_evicted() send callers to the durable record.
  erase_entry(entry);
  evicted_early_.fetch_add(1, std::memory_order_relaxed);
  note_evicted_early_locked(entry->created_ms);
  delete_entry(entry);
}

void IdempotencyTable::note_left_out(std::int64_t created_ms) {
  std::lock_guard lock(ring_mutex_);
  note_evicted_early_locked(created_ms);
}

std::size_t IdempotencyTable::expire(std::int64_t now_ms) {
  std::lock_guard lock(ring_mutex_);
  return expire_locked(now_ms);
}

void IdempotencyTable::set_restoring(bool on) {
  // Release: the restores before it happen before any claim that reads false.
  restoring_.store(on, std::memory_order_release);
}

bool IdempotencyTable::restoring() const { return restoring_.load(std::memory_order_acquire); }

bool IdempotencyTable::maybe_evicted(std::int64_t now_ms) const {
  const std::int64_t newest = newest_evicted_early_ms_.load(std::memory_order_relaxed);
  return newest != INT64_MIN && newest + ttl_ms_ > now_ms;
}

std::size_t IdempotencyTable::size() const { return size_.load(std::memory_order_relaxed); }

std::uint64_t IdempotencyTable::evicted_early() const {
  return evicted_early_.load(std::memory_order_relaxed);
}

void IdempotencyTable::note_evicted_early_locked(std::int64_t created_ms) {
  // Written only under ring_mutex_, so a plain max is enough; readers just load it.
  if (created_ms > newest_evicted_early_ms_.load(std::memory_order_relaxed)) {
    newest_evicted_early_ms_.store(created_ms, std::memory_order_relaxed);
  }
}

bool IdempotencyTable::push_locked(IdemEntry* entry, std::int64_t now_ms) {
  if (ring_size_ == capacity_) expire_locked(now_ms);
  if (ring_size_ == capacity_) {
    if (!erase_unless_drawing(ring_head_)) return false;
    IdemEntry* head = pop_head_locked();
    evicted_early_.fetch_add(1, std::memory_order_relaxed);
    note_evicted_early_locked(head->created_ms);
    delete_entry(head);
  }
  entry->newer = nullptr;
  if (ring_tail_) {
    ring_tail_->newer = entry;
  } else {
    ring_head_ = entry;
  }
  ring_tail_ = entry;
  ++ring_size_;
  return true;
}

std::size_t IdempotencyTable::expire_locked(std::int64_t now_ms) {
  std::size_t expired = 0;
  // created_ms never changes after the entry is published, so it is read without its shard.
  while (ring_head_ && ring_head_->created_ms + ttl_ms_ <= now_ms &&
         erase_unless_drawing(ring_head_)) {
    delete_entry(pop_head_locked());
    ++expired;
  }
  return expired;
}

IdemEntry* IdempotencyTable::pop_head_locked() {
  IdemEntry* head = ring_head_;
  ring_head_ = head->newer;
  if (!ring_head_) ring_tail_ = nullptr;
  --ring_size_;
  return head;
}

bool IdempotencyTable::erase_unless_drawing(IdemEntry* entry) {
  const std::uint64_t hash = hash_of(*entry);
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  // The only way into Drawing (a claim) is serialised with us by the shard mutex. Acquire
  // pairs with the release of complete()/release(): their writes happen before our free.
  if (entry->state.load(std::memory_order_acquire) == IdemState::drawing) return false;
  shard.erase(hash, entry);
  size_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void IdempotencyTable::erase_entry(IdemEntry* entry) {
  const std::uint64_t hash = hash_of(*entry);
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  shard.erase(hash, entry);
  size_.fetch_sub(1, std::memory_order_relaxed);
}

std::uint64_t draw_fingerprint(std::string_view activity_id, std::string_view user_id) {
  return fnv1a64(user_id, fnv1a64("\n", fnv1a64(activity_id)));
}

}  // namespace fairdraw
