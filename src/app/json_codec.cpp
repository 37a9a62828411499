// JSON encoding and decoding of activities, draws and fairness documents.
#include "fairdraw/app/json_codec.hpp"

#include "fairdraw/http/message.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>

namespace fairdraw::app {
namespace {

using nlohmann::json;

Error field_error(const std::string& field, const std::string& what) {
  return make_error(ErrorKind::invalid_request, field + ": " + what);
}

template <class Int>
Result<Int> get_int(const json& value, const std::string& field, Int min, Int max) {
  if (!value.is_number_integer()) return field_error(field, "must be an integer");
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(max)) return field_error(field, "out of range");
    if (static_cast<std::int64_t>(v) < static_cast<std::int64_t>(min)) {
      return field_error(field, "out of range");
    }
    return static_cast<Int>(v);
  }
  const auto v = value.get<std::int64_t>();
  if (v < static_cast<std::int64_t>(min) || v > static_cast<std::int64_t>(max)) {
    return field_error(field, "must be between " + std::to_string(min) + " and " +
                                  std::to_string(max));
  }
  return static_cast<Int>(v);
}

Result<std::string> get_string(const json& value, const std::string& field, std::size_t max_len) {
  if (!value.is_string()) return field_error(field, "must be a string");
  auto s = value.get<std::string>();
  if (s.empty() || s.size() > max_len) {
    return field_error(field, "must be 1 to " + std::to_string(max_len) + " characters");
  }
  return s;
}

// Optional integer: absent or null means unset.
Status get_optional_int(const json& body, const char* key, std::int64_t min,
                        std::optional<std::int64_t>& out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return ok_status();
  auto v = get_int<std::int64_t>(*it, key, min, std::numeric_limits<std::int64_t>::max());
  if (!v.ok()) return v.error();
  out = v.value();
  return ok_status();
}

json optional_json(const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); }
json optional_json(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

Result<ActivityConfig> parse_activity(const json& body) {
  if (!body.is_object()) return field_error("body", "must be a JSON object");
  static const std::set<std::string> known = {
      "name", "starts_at_ms", "ends_at_ms", "time_zone", "max_draws_per_user",
      "max_draws_per_user_per_day", "miss_weight", "prizes",
      // read-only, echoed from GET:
      "id", "status", "epoch_size", "draws"};
  for (const auto& [key, value] : body.items()) {
    if (!known.count(key)) return field_error(key, "unknown field");
  }
  ActivityConfig config;
  auto name = body.find("name");
  if (name == body.end()) return field_error("name", "is required");
  auto name_value = get_string(*name, "name", kMaxNameLength);
  if (!name_value.ok()) return name_value.error();
  config.name = std::move(name_value.value());

  for (auto [key, out] : {std::pair{"starts_at_ms", &config.starts_at_ms},
                          std::pair{"ends_at_ms", &config.ends_at_ms}}) {
    if (auto s = get_optional_int(body, key, 0, *out); !s.ok()) return s.error();
  }
  if (auto s = get_optional_int(body, "max_draws_per_user", 1, config.max_draws_per_user); !s.ok()) {
    return s.error();
  }
  if (auto s = get_optional_int(body, "max_draws_per_user_per_day", 1,
                                config.max_draws_per_user_per_day);
      !s.ok()) {
    return s.error();
  }
  if (auto tz = body.find("time_zone"); tz != body.end() && !tz->is_null()) {
    auto v = get_string(*tz, "time_zone", 128);
    if (!v.ok()) return v.error();
    config.time_zone = std::move(v.value());
  }
  auto miss = body.find("miss_weight");
  if (miss == body.end()) return field_error("miss_weight", "is required");
  auto miss_value =
      get_int<std::uint32_t>(*miss, "miss_weight", 0, static_cast<std::uint32_t>(kMaxDeckSize));
  if (!miss_value.ok()) return miss_value.error();
  config.miss_weight = miss_value.value();

  auto prizes = body.find("prizes");
  if (prizes == body.end()) return field_error("prizes", "is required");
  if (!prizes->is_array()) return field_error("prizes", "must be an array");
  if (prizes->size() > kMaxPrizes) {
    return field_error("prizes", "at most " + std::to_string(kMaxPrizes) + " prizes");
  }
  for (std::size_t i = 0; i < prizes->size(); ++i) {
    const json& p = (*prizes)[i];
    const std::string at = "prizes[" + std::to_string(i) + "]";
    if (!p.is_object()) return field_error(at, "must be an object");
    for (const auto& [key, value] : p.items()) {
      if (key != "id" && key != "name" && key != "weight" && key != "stock" && key != "remaining") {
        return field_error(at + "." + key, "unknown field");
      }
    }
    Prize prize;
    for (const char* required : {"id", "name", "weight", "stock"}) {
      if (!p.contains(required)) return field_error(at + "." + required, "is required");
    }
    auto id = get_string(p["id"], at + ".id", kMaxIdLength);
    if (!id.ok()) return id.error();
    auto prize_name = get_string(p["name"], at + ".name", kMaxNameLength);
    if (!prize_name.ok()) return prize_name.error();
    auto weight = get_int<std::uint32_t>(p["weight"], at + ".weight", 0,
                                         static_cast<std::uint32_t>(kMaxDeckSize));
    if (!weight.ok()) return weight.error();
    auto stock = get_int<std::int64_t>(p["stock"], at + ".stock", 0,
                                       std::numeric_limits<std::int64_t>::max() / 2);
    if (!stock.ok()) return stock.error();
    prize.id = std::move(id.value());
    prize.name = std::move(prize_name.value());
    prize.weight = weight.value();
    prize.stock = stock.value();
    config.prizes.push_back(std::move(prize));
  }
  if (auto valid = validate_activity(config); !valid.ok()) return valid.error();
  return config;
}

json activity_config_json(const ActivityConfig& config) {
  json prizes = json::array();
  for (const Prize& p : config.prizes) {
    prizes.push_back({{"id", p.id}, {"name", p.name}, {"weight", p.weight}, {"stock", p.stock}});
  }
  return {{"name", config.name},
          {"starts_at_ms", optional_json(config.starts_at_ms)},
          {"ends_at_ms", optional_json(config.ends_at_ms)},
          {"time_zone", config.time_zone},
          {"max_draws_per_user", optional_json(config.max_draws_per_user)},
          {"max_draws_per_user_per_day", optional_json(config.max_draws_per_user_per_day)},
          {"miss_weight", config.miss_weight},
          {"prizes", std::move(prizes)}};
}

json activity_view_json(const ActivityView& view) {
  json out = activity_config_json(view.config);
  out["id"] = view.id;
  out["status"] = to_string(view.status);
  out["epoch_size"] = view.epoch_size;
  out["draws"] = view.draws;
  json& prizes = out["prizes"];
  for (std::size_t i = 0; i < view.prizes.size() && i < prizes.size(); ++i) {
    prizes[i]["remaining"] = view.prizes[i].remaining;
  }
  return out;
}

json draw_json(const DrawRecord& r, bool with_candidate) {
  json prize = nullptr;
  if (r.won && r.prize_id) {
    prize = {{"id", *r.prize_id}, {"name", r.prize_name ? *r.prize_name : *r.prize_id}};
  }
  json out = {{"draw_id", r.draw_id}, {"activity_id", r.activity_id}, {"user_id", r.user_id},
              {"seq", r.seq},         {"epoch", r.epoch},             {"slot", r.slot},
              {"won", r.won},         {"prize", std::move(prize)},    {"drawn_at_ms", r.drawn_at_ms}};
  if (with_candidate) out["candidate_id"] = optional_json(r.candidate_id);
  return out;
}

// The hottest serialisation: written by hand into one string sized up front,
// byte for byte what draw_json(record).dump() gives (nlohmann's objects are
// sorted maps, hence the alphabetical key order). Strings that are plain
// printable ASCII without '"' or '\\' (ids, nearly always) are copied as they
// are; any other goes through nlohmann for its escaping and its replacement
// of invalid UTF-8.
namespace {
void append_json_string(std::string& out, const std::string& s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
  });
  if (plain) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
  } else {
    out.append(json(s).dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

void append_int(std::string& out, std::int64_t v) {
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, v).ptr);
}
}  // namespace

std::string draw_body(const DrawRecord& r) {
  std::string out = http::take_body_buffer();  // built on the io thread that writes it
  out.reserve(160 + r.activity_id.size() + r.user_id.size() +
              (r.prize_id ? r.prize_id->size() : 0) + (r.prize_name ? r.prize_name->size() : 0));
  out.append("{\"activity_id\":");
  append_json_string(out, r.activity_id);
  out.append(",\"draw_id\":");
  append_json_string(out, r.draw_id);
  out.append(",\"drawn_at_ms\":");
  append_int(out, r.drawn_at_ms);
  out.append(",\"epoch\":");
  append_int(out, r.epoch);
  out.append(",\"prize\":");
  if (r.won && r.prize_id) {
    out.append("{\"id\":");
    append_json_string(out, *r.prize_id);
    out.append(",\"name\":");
    append_json_string(out, r.prize_name ? *r.prize_name : *r.prize_id);
    out.push_back('}');
  } else {
    out.append("null");
  }
  out.append(",\"seq\":");
  append_int(out, r.seq);
  out.append(",\"slot\":");
  append_int(out, r.slot);
  out.append(",\"user_id\":");
  append_json_string(out, r.user_id);
  out.append(r.won ? ",\"won\":true}" : ",\"won\":false}");
  return out;
}

json audit_json(const DrawRecord& r) {
  return {{"seq", r.seq},
          {"draw_id", r.draw_id},
          {"epoch", r.epoch},
          {"slot", r.slot},
          {"candidate_id", optional_json(r.candidate_id)},
          {"prize_id", r.won ? optional_json(r.prize_id) : json(nullptr)},
          {"won", r.won},
          {"drawn_at_ms", r.drawn_at_ms}};
}

json fairness_json(const std::string& activity_id, const std::vector<EpochView>& epochs) {
  json list = json::array();
  for (const EpochView& e : epochs) {
    json prizes = json::array();
    for (const EpochPrize& p : e.record.prizes) prizes.push_back({{"id", p.id}, {"weight", p.weight}});
    list.push_back({{"epoch", e.record.epoch},
                    {"first_seq", optional_json(e.first_seq)},
                    {"prizes", std::move(prizes)},
                    {"miss_weight", e.record.miss_weight},
                    {"epoch_size", e.record.epoch_size},
                    {"commitment", e.record.commitment},
                    {"seed", e.revealed ? json(to_hex(e.record.seed)) : json(nullptr)}});
  }
  return {{"activity_id", activity_id}, {"epochs", std::move(list)}};
}

}  // namespace fairdraw::app
