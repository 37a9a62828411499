// Activity configuration: deck size, deck identity, and validation with field-named errors.
#include "fairdraw/engine/activity.hpp"

#include <string_view>
#include <unordered_set>

#include "fairdraw/engine/time_zone.hpp"

namespace fairdraw {

namespace {

Status invalid(std::string detail) { return make_error(ErrorKind::invalid_request, std::move(detail)); }

std::string prize_field(std::size_t index, std::string_view field) {
  return "prizes[" + std::to_string(index) + "]." + std::string(field);
}

bool id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '~' || c == '-';
}

bool name_length_ok(std::string_view name) { return !name.empty() && name.size() <= kMaxNameLength; }

const std::string kNameLimits = "must be 1 to " + std::to_string(kMaxNameLength) + " bytes";
const std::string kIdLimits =
    "must be 1 to " + std::to_string(kMaxIdLength) + " characters of [A-Za-z0-9._~-]";
const std::string kWeightLimits = "must be between 0 and " + std::to_string(kMaxDeckSize);

Status validate_prizes(const ActivityConfig& config) {
  if (config.prizes.size() > kMaxPrizes) {
    return invalid("prizes: at most " + std::to_string(kMaxPrizes) + " prizes");
  }
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < config.prizes.size(); ++i) {
    const Prize& prize = config.prizes[i];
    if (!is_valid_id(prize.id)) return invalid(prize_field(i, "id") + ": " + kIdLimits);
    if (!seen.insert(prize.id).second) {
      return invalid(prize_field(i, "id") + ": duplicate prize id \"" + prize.id + "\"");
    }
    if (!name_length_ok(prize.name)) return invalid(prize_field(i, "name") + ": " + kNameLimits);
    if (prize.weight > kMaxDeckSize) return invalid(prize_field(i, "weight") + ": " + kWeightLimits);
    if (prize.stock < 0) return invalid(prize_field(i, "stock") + ": must be >= 0");
  }
  if (config.miss_weight > kMaxDeckSize) return invalid("miss_weight: " + kWeightLimits);
  const std::uint64_t w = config.deck_size();
  if (w < 1 || w > kMaxDeckSize) {
    return invalid("prizes: deck size (sum of weights + miss_weight) must be between 1 and " +
                   std::to_string(kMaxDeckSize));
  }
  return ok_status();
}

}  // namespace

std::uint64_t ActivityConfig::deck_size() const {
  std::uint64_t total = miss_weight;
  for (const Prize& prize : prizes) total += prize.weight;
  return total;
}

bool ActivityConfig::same_deck(const ActivityConfig& other) const {
  if (miss_weight != other.miss_weight || prizes.size() != other.prizes.size()) return false;
  for (std::size_t i = 0; i < prizes.size(); ++i) {
    if (prizes[i].id != other.prizes[i].id || prizes[i].weight != other.prizes[i].weight) {
      return false;
    }
  }
  return true;
}

const Prize* ActivityConfig::find_prize(std::string_view id) const {
  for (const Prize& prize : prizes) {
    if (prize.id == id) return &prize;
  }
  return nullptr;
}

Status validate_activity(const ActivityConfig& config) {
  if (!name_length_ok(config.name)) return invalid("name: " + kNameLimits);
  if (config.starts_at_ms && config.ends_at_ms && *config.ends_at_ms <= *config.starts_at_ms) {
    return invalid("ends_at_ms: must be after starts_at_ms");
  }
  if (config.time_zone.empty()) return invalid("time_zone: must not be empty");
  if (auto zone = TimeZone::load(config.time_zone); !zone) return invalid(zone.error().detail);
  if (config.max_draws_per_user && *config.max_draws_per_user < 1) {
    return invalid("max_draws_per_user: must be >= 1");
  }
  if (config.max_draws_per_user_per_day && *config.max_draws_per_user_per_day < 1) {
    return invalid("max_draws_per_user_per_day: must be >= 1");
  }
  return validate_prizes(config);
}

bool is_valid_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    if (!id_char(c)) return false;
  }
  return true;
}

}  // namespace fairdraw
