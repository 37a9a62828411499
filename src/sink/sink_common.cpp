// Helpers shared by SqliteSink and PgSink (see sink_common.hpp).
#include "fairdraw/sink/sink_common.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <limits>

namespace fairdraw::sink_common {

std::string encode_user_cursor(const DrawRecord& last) {
  return std::to_string(last.drawn_at_ms) + "." + std::to_string(last.seq) + "." + last.draw_id;
}

std::optional<std::int64_t> parse_decimal(std::string_view digits) {
  if (digits.empty() || digits.size() > 19 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

std::optional<UserCursor> decode_user_cursor(std::string_view cursor) {
  const std::size_t first_dot = cursor.find('.');
  if (first_dot == std::string_view::npos) return std::nullopt;
  const std::size_t second_dot = cursor.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos) return std::nullopt;
  const auto ms = parse_decimal(cursor.substr(0, first_dot));
  const auto seq = parse_decimal(cursor.substr(first_dot + 1, second_dot - first_dot - 1));
  const std::string_view id_part = cursor.substr(second_dot + 1);
  if (!ms || !seq || id_part.empty() || id_part.size() > 128) return std::nullopt;
  if (!std::all_of(id_part.begin(), id_part.end(), [](char c) { return c > ' ' && c <= '~'; })) {
    return std::nullopt;
  }
  return UserCursor{*ms, *seq, std::string(id_part)};
}

std::string prizes_to_json(const std::vector<EpochPrize>& prizes) {
  nlohmann::json array = nlohmann::json::array();
  for (const EpochPrize& p : prizes) array.push_back({{"id", p.id}, {"weight", p.weight}});
  return array.dump();
}

std::optional<std::vector<EpochPrize>> prizes_from_json(const std::string& text) {
  const nlohmann::json array = nlohmann::json::parse(text, nullptr, false);
  if (array.is_discarded() || !array.is_array()) return std::nullopt;
  std::vector<EpochPrize> prizes;
  prizes.reserve(array.size());
  for (const nlohmann::json& item : array) {
    if (!item.is_object()) return std::nullopt;
    const auto id = item.find("id");
    const auto weight = item.find("weight");
    if (id == item.end() || !id->is_string() || weight == item.end() ||
        !weight->is_number_unsigned() ||
        weight->get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max()) {
      return std::nullopt;
    }
    prizes.push_back(
        {id->get<std::string>(), static_cast<std::uint32_t>(weight->get<std::uint64_t>())});
  }
  return prizes;
}

void call_ack(Sink::Ack& ack, bool durable) {
  if (!ack) return;
  try {
    ack(durable);
  } catch (...) {
    // An ack must not take the writer thread down; the caller owns its errors.
  }
}

}  // namespace fairdraw::sink_common
