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
#include <vector>

namespace fairdraw {

class QuotaBook {
 public:
  // Hash of a user id. Tests pass a poor one to force collisions.
  using IdHash = std::uint64_t (*)(std::string_view user_id);

  explicit QuotaBook(IdHash hash = nullptr);
  ~QuotaBook();
  QuotaBook(const QuotaBook&) = delete;
  QuotaBook& operator=(const QuotaBook&) = delete;

  struct Limits {
    std::optional<std::int64_t> total;
    std::optional<std::int64_t> per_day;
  };

  // Takes one draw for the user on local day `day`; false if a limit is reached.
  bool take(std::string_view user_id, std::int64_t day, const Limits& limits);
  // Gives back a draw taken on `day` (the draw was refused later on).
  void give_back(std::string_view user_id, std::int64_t day);

  // Recovery: room for this many users in all (no rehashing while restoring),
  // then the recorded draws added to the user's counts: `draws` in all, of
  // which `day_draws` on local day `day` (the current one). Counts add up, so
  // a user's draws may come in several parts, from several threads at once.
  void reserve(std::size_t users);
  void restore_add(std::string_view user_id, std::int64_t draws, std::int64_t day,
                   std::int64_t day_draws);

  std::int64_t total(std::string_view user_id) const;
  std::int64_t on_day(std::string_view user_id, std::int64_t day) const;
  std::size_t users() const;

 private:
  struct Counter {
    std::atomic<std::int64_t> total{0};
    // (day << 24) | count: one word, so a new day resets the count in the same CAS.
    std::atomic<std::uint64_t> day_word{0};
  };

  // Per shard: an open-addressing table of 32-bit slots (a 4-bit hash tag and a
  // record index) over records of 32 bytes (the id inline up to 15 bytes, else in
  // a side arena, and the counter) kept in chunks that never move, so a counter's
  // address outlives the shard lock and growth. See quota.cpp.
  struct Shard;
  Shard& shard_for(std::uint64_t hash) const;
  Counter& counter(std::string_view user_id);
  const Counter* find(std::string_view user_id) const;

  static constexpr std::size_t kShards = 64;
  IdHash hash_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace fairdraw
