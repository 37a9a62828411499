// Idempotency table: sharded map of (activity, key) entries plus a fixed ring that expires
// them in insertion order. Lock order: ring_mutex_ before any shard mutex, never the reverse.
#include "fairdraw/engine/idempotency.hpp"

#include <algorithm>
#include <climits>
#include <functional>
#include <unordered_map>
#include <utility>

namespace fairdraw {

namespace {

constexpr std::size_t kShardCount = 64;

// The scope key is built in a per-thread buffer for the lookup; only an entry
// that is created gets its own copy.
std::string_view make_scope_key(std::string_view activity_id, std::string_view key) {
  thread_local std::string scope;
  scope.clear();
  scope.append(activity_id).push_back('\n');
  scope.append(key);
  return scope;
}

// Caller holds the entry's shard mutex. Idle -> Drawing happens only under that mutex, which
// is what lets expiry check "not Drawing" and erase atomically with respect to claims.
IdempotencyTable::Claim classify(const std::shared_ptr<IdemEntry>& entry, std::uint64_t fingerprint) {
  using Kind = IdempotencyTable::Claim::Kind;
  if (entry->fingerprint != fingerprint) return {Kind::mismatch, entry};
  // Acquire pairs with complete()'s release-store of Done, so the caller may read result.
  IdemState state = entry->state.load(std::memory_order_acquire);
  for (;;) {
    if (state == IdemState::done) return {Kind::done, entry};
    if (state == IdemState::drawing) return {Kind::in_flight, entry};
    if (entry->state.compare_exchange_weak(state, IdemState::drawing, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      return {Kind::claimed, entry};
    }
  }
}

}  // namespace

struct IdempotencyTable::Shard {
  std::mutex mutex;
  // Keys view the entries' own scope_key: an entry is erased from the map
  // before it can be destroyed (the map holds a reference to it).
  std::unordered_map<std::string_view, std::shared_ptr<IdemEntry>> entries;  // guarded by mutex
};

IdempotencyTable::IdempotencyTable(std::size_t capacity, std::int64_t ttl_ms)
    : capacity_(std::max<std::size_t>(capacity, 1)), ttl_ms_(ttl_ms), ring_(capacity_) {
  shards_.reserve(kShardCount);
  for (std::size_t i = 0; i < kShardCount; ++i) shards_.push_back(std::make_unique<Shard>());
}

IdempotencyTable::~IdempotencyTable() = default;

IdempotencyTable::Shard& IdempotencyTable::shard_for(std::string_view scope_key) const {
  return *shards_[std::hash<std::string_view>{}(scope_key) % shards_.size()];
}

IdempotencyTable::Claim IdempotencyTable::claim(std::string_view activity_id, std::string_view key,
                                                std::uint64_t fingerprint, std::int64_t now_ms) {
  const std::string_view scope = make_scope_key(activity_id, key);
  Shard& shard = shard_for(scope);
  std::shared_ptr<IdemEntry> entry;
  {
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.entries.find(scope); it != shard.entries.end()) {
      return classify(it->second, fingerprint);
    }
    entry = std::make_shared<IdemEntry>();
    entry->scope_key = scope;
    entry->fingerprint = fingerprint;
    entry->created_ms = now_ms;
    entry->state.store(IdemState::drawing, std::memory_order_relaxed);
    shard.entries.emplace(entry->scope_key, entry);
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  // Published in the map first: a duplicate arriving now sees Drawing and gets in_flight.
  {
    std::lock_guard lock(ring_mutex_);
    if (push_locked(entry, now_ms)) return {Claim::Kind::claimed, entry};
  }
  erase_entry(entry);
  return {Claim::Kind::full, nullptr};
}

void IdempotencyTable::complete(const std::shared_ptr<IdemEntry>& entry, DrawRecord result) {
  entry->result = std::move(result);
  // Release publishes result to whoever acquire-loads Done.
  entry->state.store(IdemState::done, std::memory_order_release);
}

void IdempotencyTable::release(const std::shared_ptr<IdemEntry>& entry) {
  IdemState expected = IdemState::drawing;
  entry->state.compare_exchange_strong(expected, IdemState::idle, std::memory_order_release,
                                       std::memory_order_relaxed);
}

void IdempotencyTable::restore(const DrawRecord& record, std::uint64_t fingerprint) {
  auto entry = std::make_shared<IdemEntry>();
  entry->scope_key = make_scope_key(record.activity_id, record.idempotency_key);
  entry->fingerprint = fingerprint;
  entry->created_ms = record.drawn_at_ms;
  entry->result = record;
  entry->state.store(IdemState::done, std::memory_order_relaxed);
  {
    Shard& shard = shard_for(entry->scope_key);
    std::lock_guard lock(shard.mutex);
    if (!shard.entries.emplace(entry->scope_key, entry).second) return;
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  {
    std::lock_guard lock(ring_mutex_);
    if (push_locked(entry, record.drawn_at_ms)) return;
  }
  // No room: forget it, but let maybe_evicted() send callers to the durable record.
  erase_entry(entry);
  std::lock_guard lock(ring_mutex_);
  evicted_early_.fetch_add(1, std::memory_order_relaxed);
  if (entry->created_ms > newest_evicted_early_ms_.load(std::memory_order_relaxed)) {
    newest_evicted_early_ms_.store(entry->created_ms, std::memory_order_relaxed);
  }
}

std::size_t IdempotencyTable::expire(std::int64_t now_ms) {
  std::lock_guard lock(ring_mutex_);
  return expire_locked(now_ms);
}

bool IdempotencyTable::maybe_evicted(std::int64_t now_ms) const {
  const std::int64_t newest = newest_evicted_early_ms_.load(std::memory_order_relaxed);
  return newest != INT64_MIN && newest + ttl_ms_ > now_ms;
}

std::size_t IdempotencyTable::size() const { return size_.load(std::memory_order_relaxed); }

std::uint64_t IdempotencyTable::evicted_early() const {
  return evicted_early_.load(std::memory_order_relaxed);
}

bool IdempotencyTable::push_locked(const std::shared_ptr<IdemEntry>& entry, std::int64_t now_ms) {
  if (ring_size_ == capacity_) expire_locked(now_ms);
  if (ring_size_ == capacity_) {
    const std::shared_ptr<IdemEntry>& head = ring_[ring_head_];
    if (!erase_unless_drawing(head)) return false;
    evicted_early_.fetch_add(1, std::memory_order_relaxed);
    // Written only under ring_mutex_, so a plain max is enough; readers just load it.
    if (head->created_ms > newest_evicted_early_ms_.load(std::memory_order_relaxed)) {
      newest_evicted_early_ms_.store(head->created_ms, std::memory_order_relaxed);
    }
    pop_head_locked();
  }
  ring_[(ring_head_ + ring_size_) % capacity_] = entry;
  ++ring_size_;
  return true;
}

std::size_t IdempotencyTable::expire_locked(std::int64_t now_ms) {
  std::size_t expired = 0;
  while (ring_size_ > 0) {
    const std::shared_ptr<IdemEntry>& head = ring_[ring_head_];
    if (head->created_ms + ttl_ms_ > now_ms || !erase_unless_drawing(head)) break;
    pop_head_locked();
    ++expired;
  }
  return expired;
}

void IdempotencyTable::pop_head_locked() {
  ring_[ring_head_].reset();
  ring_head_ = (ring_head_ + 1) % capacity_;
  --ring_size_;
}

bool IdempotencyTable::erase_unless_drawing(const std::shared_ptr<IdemEntry>& entry) {
  Shard& shard = shard_for(entry->scope_key);
  std::lock_guard lock(shard.mutex);
  // Relaxed is enough: nothing of the entry is read after this check, and the only way into
  // Drawing (a claim's CAS) is serialised with us by the shard mutex.
  if (entry->state.load(std::memory_order_relaxed) == IdemState::drawing) return false;
  if (auto it = shard.entries.find(entry->scope_key); it != shard.entries.end() && it->second == entry) {
    shard.entries.erase(it);
    size_.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

void IdempotencyTable::erase_entry(const std::shared_ptr<IdemEntry>& entry) {
  Shard& shard = shard_for(entry->scope_key);
  std::lock_guard lock(shard.mutex);
  if (auto it = shard.entries.find(entry->scope_key); it != shard.entries.end() && it->second == entry) {
    shard.entries.erase(it);
    size_.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::uint64_t draw_fingerprint(std::string_view activity_id, std::string_view user_id) {
  std::uint64_t hash = 14695981039346656037ULL;
  auto mix = [&hash](char c) {
    hash ^= static_cast<std::uint8_t>(c);
    hash *= 1099511628211ULL;
  };
  for (char c : activity_id) mix(c);
  mix('\n');
  for (char c : user_id) mix(c);
  return hash;
}

}  // namespace fairdraw
