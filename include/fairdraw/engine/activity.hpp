// An activity's configuration as the admin API sets it (DESIGN.md section 3).
// Immutable once built; the engine swaps whole snapshots when an admin changes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fairdraw/result.hpp"

namespace fairdraw {

struct Prize {
  std::string id;
  std::string name;
  std::uint32_t weight = 0;
  std::int64_t stock = 0;  // total ever to be won
};

// Sane limits; every one is checked by validate_activity().
inline constexpr std::size_t kMaxPrizes = 1000;
inline constexpr std::uint64_t kMaxDeckSize = 10'000'000;  // W, DESIGN.md section 4
inline constexpr std::size_t kMaxIdLength = 128;
inline constexpr std::size_t kMaxNameLength = 256;

struct ActivityConfig {
  std::string name;
  std::optional<std::int64_t> starts_at_ms;
  std::optional<std::int64_t> ends_at_ms;
  std::string time_zone = "UTC";
  std::optional<std::int64_t> max_draws_per_user;
  std::optional<std::int64_t> max_draws_per_user_per_day;
  std::uint32_t miss_weight = 0;
  std::vector<Prize> prizes;

  // W: sum of weights plus miss_weight.
  std::uint64_t deck_size() const;
  // True when both configs give the same deck (same prize ids in the same order,
  // same weights, same miss_weight). Names and stock do not change the deck.
  bool same_deck(const ActivityConfig& other) const;
  const Prize* find_prize(std::string_view id) const;
};

// Checks limits and consistency: 1 <= W <= 10^7, unique non-empty prize ids,
// stock >= 0, window ordered, quotas >= 1. The detail names the bad field.
Status validate_activity(const ActivityConfig& config);

// Activity ids and prize ids: 1..128 chars of [A-Za-z0-9._~-] (safe in URLs and Redis keys).
bool is_valid_id(std::string_view id);

}  // namespace fairdraw
