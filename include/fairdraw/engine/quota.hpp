// Per-user draw quotas of one activity: a total count and a count for the
// current local day, each taken by CAS so that concurrent draws of one user can
// never pass the limit together. A refused draw takes nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fairdraw {

class QuotaBook {
 public:
  QuotaBook();

  struct Limits {
    std::optional<std::int64_t> total;
    std::optional<std::int64_t> per_day;
  };

  // Takes one draw for the user on local day `day`; false if a limit is reached.
  bool take(std::string_view user_id, std::int64_t day, const Limits& limits);
  // Gives back a draw taken on `day` (the draw was refused later on).
  void give_back(std::string_view user_id, std::int64_t day);

  // Recovery: room for this many users in all (no rehashing while restoring),
  // totals, and counts for the current day.
  void reserve(std::size_t users);
  void restore_total(std::string_view user_id, std::int64_t count);
  void restore(std::string_view user_id, std::int64_t total, std::int64_t day,
               std::int64_t day_count);  // both at once
  void restore_day(std::string_view user_id, std::int64_t day, std::int64_t count);

  std::int64_t total(std::string_view user_id) const;
  std::int64_t on_day(std::string_view user_id, std::int64_t day) const;
  std::size_t users() const;

 private:
  struct Counter {
    std::atomic<std::int64_t> total{0};
    // (day << 24) | count: one word, so a new day resets the count in the same CAS.
    std::atomic<std::uint64_t> day_word{0};
  };
  // Transparent hashing: lookups by string_view build no std::string. Not
  // noexcept on purpose: libstdc++ then keeps each node's hash, so a lookup
  // compares strings only on a hash match and a rehash does not hash every id
  // again (a noexcept custom hash counts as "fast" and is not cached).
  struct IdHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Shard {
    mutable std::mutex mutex;
    // Counters live in the map's nodes: one allocation per user (two with an
    // id over 15 bytes); nodes never move, so references survive rehashing.
    std::unordered_map<std::string, Counter, IdHash, std::equal_to<>> users;
  };
  Counter& counter(std::string_view user_id);
  const Counter* find(std::string_view user_id) const;

  static constexpr std::size_t kShards = 64;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace fairdraw
