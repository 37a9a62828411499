// Per-user quotas: 64 shards, each an open-addressing table of small slots over records
// that never move; the counts themselves move by CAS outside the shard's lock.
//
// Memory per user (12-byte ids): a 32-byte record plus a 4-byte slot at a load of 1/2..3/4,
// instead of a node map's node, bucket and heap string. Records sit in chunks of doubling
// size (4, 8, 16, ... records), so a small book stays small and nothing is copied on growth.
#include "fairdraw/engine/quota.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

std::uint64_t default_hash(std::string_view id) { return std::hash<std::string_view>{}(id); }

// Slots: 0 is empty, else (tag << 28) | (record index + 1). The tag, 4 bits of the hash,
// settles most mismatching probes without touching the record. 28 bits of index allow
// 2^28 - 1 users per shard: the shard is picked by the hash of a client-chosen id, so ids
// crafted to share a shard must not find a limit before memory itself runs out (2^28
// records are 8 GiB).
constexpr std::uint32_t kIndexBits = 28;
constexpr std::uint32_t kMaxRecords = (std::uint32_t{1} << kIndexBits) - 1;
constexpr std::size_t kFirstChunk = 4;   // records in chunk 0; chunk k holds kFirstChunk << k
constexpr std::size_t kFirstSlots = 16;
constexpr std::size_t kFirstArenaBlock = 256;
constexpr std::size_t kMaxArenaBlock = 64 * 1024;

std::uint32_t tag_of(std::uint64_t hash) { return static_cast<std::uint32_t>(hash >> 50) & 0xFU; }

// The home slot: the low 32 bits scaled to the table size (any size, not only powers of two,
// so a table can grow by half and stay between 1/2 and 3/4 full).
std::size_t home_of(std::uint64_t hash, std::size_t size) {
  return static_cast<std::size_t>(((hash & 0xFFFFFFFFULL) * size) >> 32);
}

// A user id in 16 bytes: [0] its length (0..15) and the bytes after it; or, for a longer
// id, [0] = kLongId, [4..8) its length and [8..16) a pointer into the shard's arena.
constexpr unsigned char kLongId = 0xFF;
constexpr std::size_t kInlineMax = 15;

struct UserId {
  unsigned char raw[16];

  std::string_view view() const {
    if (raw[0] != kLongId) return {reinterpret_cast<const char*>(raw + 1), raw[0]};
    std::uint32_t size = 0;
    const char* data = nullptr;
    std::memcpy(&size, raw + 4, sizeof(size));
    std::memcpy(&data, raw + 8, sizeof(data));
    return {data, size};
  }
  bool equals(std::string_view id) const {
    if (id.size() <= kInlineMax) {
      return raw[0] == id.size() && std::memcmp(raw + 1, id.data(), id.size()) == 0;
    }
    return raw[0] == kLongId && view() == id;
  }
};

}  // namespace

struct QuotaBook::Shard {
  struct Record {
    UserId id;
    Counter counter;
  };
  static_assert(sizeof(Record) == 32);

  mutable std::mutex mutex;
  // All guarded by mutex; a Record's counter is not (it moves by CAS).
  std::vector<std::uint32_t> slots;
  std::vector<std::unique_ptr<Record[]>> chunks;
  std::uint32_t count = 0;
  std::vector<std::unique_ptr<char[]>> arena;  // bytes of ids longer than kInlineMax
  char* arena_next = nullptr;
  std::size_t arena_left = 0;

  Record& record(std::uint32_t index) const {
    const std::size_t chunk = std::bit_width(index / kFirstChunk + 1) - 1;
    return chunks[chunk][index - kFirstChunk * ((std::size_t{1} << chunk) - 1)];
  }

  Record* find(std::uint64_t hash, std::string_view id) const {
    if (slots.empty()) return nullptr;
    const std::uint32_t tag = tag_of(hash);
    for (std::size_t i = home_of(hash, slots.size());; i = i + 1 == slots.size() ? 0 : i + 1) {
      const std::uint32_t slot = slots[i];
      if (slot == 0) return nullptr;
      if ((slot >> kIndexBits) != tag) continue;
      Record& rec = record((slot & kMaxRecords) - 1);
      if (rec.id.equals(id)) return &rec;
    }
  }

  Record& insert(std::uint64_t hash, std::string_view id, IdHash hasher) {
    if (count == kMaxRecords) {
      std::fputs("fairdraw: quota book shard full (2^28 users)\n", stderr);
      std::abort();
    }
    if ((std::size_t{count} + 1) * 4 > slots.size() * 3) {
      resize(std::max(kFirstSlots, slots.size() + slots.size() / 2), hasher);
    }
    const std::uint32_t index = count++;
    if (record_capacity() <= index) {
      chunks.push_back(std::make_unique<Record[]>(kFirstChunk << chunks.size()));
    }
    Record& rec = record(index);
    set_id(rec.id, id);
    place(hash, index);
    return rec;
  }

  // Room for `users` in all without growing the table on the way.
  void reserve(std::size_t users, IdHash hasher) {
    const std::size_t wanted = (users * 4 + 2) / 3 + 1;
    if (wanted > slots.size()) resize(wanted, hasher);
  }

 private:
  std::size_t record_capacity() const { return kFirstChunk * ((std::size_t{1} << chunks.size()) - 1); }

  void place(std::uint64_t hash, std::uint32_t index) {
    std::size_t i = home_of(hash, slots.size());
    while (slots[i] != 0) i = i + 1 == slots.size() ? 0 : i + 1;
    slots[i] = (tag_of(hash) << kIndexBits) | (index + 1);
  }

  // Records stay where they are; only their slots are placed again.
  void resize(std::size_t size, IdHash hasher) {
    slots.assign((size + 15) & ~std::size_t{15}, 0);
    for (std::uint32_t index = 0; index < count; ++index) {
      place(hasher(record(index).id.view()), index);
    }
  }

  void set_id(UserId& out, std::string_view id) {
    if (id.size() <= kInlineMax) {
      out.raw[0] = static_cast<unsigned char>(id.size());
      std::memcpy(out.raw + 1, id.data(), id.size());
      return;
    }
    const char* stored = store_long(id);
    const auto size = static_cast<std::uint32_t>(id.size());
    out.raw[0] = kLongId;
    std::memcpy(out.raw + 4, &size, sizeof(size));
    std::memcpy(out.raw + 8, &stored, sizeof(stored));
  }

  // Bump allocation in blocks of doubling size: ids are never freed before the book.
  const char* store_long(std::string_view id) {
    if (arena_left < id.size()) {
      const std::size_t grown = arena.empty() ? kFirstArenaBlock
                                              : std::min(kMaxArenaBlock, 2 * arena_block_size_);
      arena_block_size_ = std::max(grown, id.size());
      arena.push_back(std::make_unique<char[]>(arena_block_size_));
      arena_next = arena.back().get();
      arena_left = arena_block_size_;
    }
    char* out = arena_next;
    std::memcpy(out, id.data(), id.size());
    arena_next += id.size();
    arena_left -= id.size();
    return out;
  }
  std::size_t arena_block_size_ = 0;
};

QuotaBook::QuotaBook(IdHash hash)
    : hash_(hash ? hash : default_hash), shards_(std::make_unique<Shard[]>(kShards)) {}

QuotaBook::~QuotaBook() = default;

QuotaBook::Shard& QuotaBook::shard_for(std::uint64_t hash) const {
  // The top 6 bits pick the shard; the tag and the home slot use other bits.
  return shards_[hash >> 58];
}

QuotaBook::Counter& QuotaBook::counter(std::string_view user_id) {
  const std::uint64_t hash = hash_(user_id);
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  Shard::Record* rec = shard.find(hash, user_id);
  if (!rec) rec = &shard.insert(hash, user_id, hash_);
  // Records never move nor go away, so the reference outlives the lock.
  return rec->counter;
}

const QuotaBook::Counter* QuotaBook::find(std::string_view user_id) const {
  const std::uint64_t hash = hash_(user_id);
  const Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  const Shard::Record* rec = shard.find(hash, user_id);
  return rec ? &rec->counter : nullptr;
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
  for (std::size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard lock(shard.mutex);
    shard.reserve(shard.count + users / kShards + users / (16 * kShards) + 16, hash_);
  }
}

void QuotaBook::restore_add(std::string_view user_id, std::int64_t draws, std::int64_t day,
                            std::int64_t day_draws) {
  Counter& c = counter(user_id);
  c.total.fetch_add(draws, std::memory_order_relaxed);
  if (day_draws <= 0) return;
  std::uint64_t word = c.day_word.load(std::memory_order_relaxed);
  std::uint64_t next = 0;
  do {
    const std::uint64_t count = day_of(word) == day ? count_of(word) : 0;
    // Saturates: take() refuses at kCountMask whatever the limit.
    next = pack(day, std::min(kCountMask, count + static_cast<std::uint64_t>(day_draws)));
  } while (!c.day_word.compare_exchange_weak(word, next, std::memory_order_relaxed));
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
  for (std::size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mutex);
    n += shards_[i].count;
  }
  return n;
}

}  // namespace fairdraw
