// Per-user quotas: sharded map of counters; the counts themselves move by CAS.
#include "fairdraw/engine/quota.hpp"

#include <functional>

namespace fairdraw {
namespace {

constexpr std::uint64_t kCountBits = 24;
constexpr std::uint64_t kCountMask = (std::uint64_t{1} << kCountBits) - 1;

std::uint64_t pack(std::int64_t day, std::uint64_t count) {
  return (static_cast<std::uint64_t>(day) << kCountBits) | (count & kCountMask);
}
std::int64_t day_of(std::uint64_t word) { return static_cast<std::int64_t>(word >> kCountBits); }
std::uint64_t count_of(std::uint64_t word) { return word & kCountMask; }

}  // namespace

QuotaBook::QuotaBook() {
  shards_.reserve(kShards);
  for (std::size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

QuotaBook::Counter& QuotaBook::counter(std::string_view user_id) {
  Shard& shard = *shards_[std::hash<std::string_view>{}(user_id) % kShards];
  std::lock_guard lock(shard.mutex);
  auto it = shard.users.find(user_id);
  if (it == shard.users.end()) {
    it = shard.users.try_emplace(std::string(user_id)).first;
  }
  // Counters are never erased, so the reference outlives the lock.
  return it->second;
}

const QuotaBook::Counter* QuotaBook::find(std::string_view user_id) const {
  const Shard& shard = *shards_[std::hash<std::string_view>{}(user_id) % kShards];
  std::lock_guard lock(shard.mutex);
  auto it = shard.users.find(user_id);
  return it == shard.users.end() ? nullptr : &it->second;
}

bool QuotaBook::take(std::string_view user_id, std::int64_t day, const Limits& limits) {
  Counter& c = counter(user_id);
  std::int64_t total = c.total.load(std::memory_order_relaxed);
  do {
    if (limits.total && total >= *limits.total) return false;
  } while (!c.total.compare_exchange_weak(total, total + 1, std::memory_order_acq_rel));

  std::uint64_t word = c.day_word.load(std::memory_order_relaxed);
  std::uint64_t next = 0;
  do {
    const std::uint64_t count = day_of(word) == day ? count_of(word) : 0;
    if ((limits.per_day && static_cast<std::int64_t>(count) >= *limits.per_day) ||
        count >= kCountMask) {
      c.total.fetch_sub(1, std::memory_order_acq_rel);  // undo: a refused draw takes nothing
      return false;
    }
    next = pack(day, count + 1);
  } while (!c.day_word.compare_exchange_weak(word, next, std::memory_order_acq_rel));
  return true;
}

void QuotaBook::give_back(std::string_view user_id, std::int64_t day) {
  Counter& c = counter(user_id);
  c.total.fetch_sub(1, std::memory_order_acq_rel);
  std::uint64_t word = c.day_word.load(std::memory_order_relaxed);
  while (day_of(word) == day && count_of(word) > 0 &&
         !c.day_word.compare_exchange_weak(word, pack(day, count_of(word) - 1),
                                           std::memory_order_acq_rel)) {
  }
}

void QuotaBook::reserve(std::size_t users) {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    shard->users.reserve(shard->users.size() + users / kShards + users / (4 * kShards) + 1);
  }
}

void QuotaBook::restore_total(std::string_view user_id, std::int64_t count) {
  counter(user_id).total.store(count, std::memory_order_relaxed);
}

void QuotaBook::restore(std::string_view user_id, std::int64_t total, std::int64_t day,
                        std::int64_t day_count) {
  Counter& c = counter(user_id);
  c.total.store(total, std::memory_order_relaxed);
  c.day_word.store(pack(day, static_cast<std::uint64_t>(day_count)), std::memory_order_relaxed);
}

void QuotaBook::restore_day(std::string_view user_id, std::int64_t day, std::int64_t count) {
  counter(user_id).day_word.store(pack(day, static_cast<std::uint64_t>(count)),
                                  std::memory_order_relaxed);
}

std::int64_t QuotaBook::total(std::string_view user_id) const {
  const Counter* c = find(user_id);
  return c ? c->total.load(std::memory_order_relaxed) : 0;
}

std::int64_t QuotaBook::on_day(std::string_view user_id, std::int64_t day) const {
  const Counter* c = find(user_id);
  if (!c) return 0;
  const std::uint64_t word = c->day_word.load(std::memory_order_relaxed);
  return day_of(word) == day ? static_cast<std::int64_t>(count_of(word)) : 0;
}

std::size_t QuotaBook::users() const {
  std::size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    n += shard->users.size();
  }
  return n;
}

}  // namespace fairdraw
