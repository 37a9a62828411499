// Configuration: defaults, then the JSON file, then FAIRDRAW_* environment overrides, all driven by one field table.
#include "fairdraw/app/config.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

extern char** environ;  // POSIX; declared again in case <unistd.h> hides it

namespace fairdraw::app {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr std::string_view kEnvPrefix = "FAIRDRAW_";
constexpr std::size_t kMaxFileBytes = 16 * 1024 * 1024;
constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::int64_t kDayMs = 86'400'000;
constexpr std::int64_t kWeekS = 604'800;
constexpr std::size_t kMaxAdminTokenLength = 1024;
constexpr std::size_t kMaxShownValue = 80;  // longer values are cut in error messages

// "listen" fills two members from one "host:port" string.
struct ListenTarget {
  std::string* host;
  std::uint16_t* port;
};

using Target = std::variant<std::int64_t*, std::size_t*, unsigned*, bool*, std::string*,
                            std::optional<std::string>*, std::vector<std::string>*, ListenTarget>;

// How describe_config shows a field.
enum class Secret { no, whole, url_password };

// Checks one string (or one list item) and may normalise it; returns the problem.
using StringCheck = std::optional<std::string> (*)(std::string&);

// One configurable field. The same row drives the file key (its dotted path),
// the environment variable (derived from the path), validation and describe_config.
struct Field {
  std::string_view path;
  Target (*bind)(Config&);
  std::int64_t min = 0;  // integer fields: inclusive bounds
  std::int64_t max = 0;
  StringCheck check = nullptr;  // string and list fields
  Secret secret = Secret::no;
};

Error config_error(std::string detail) { return make_error(ErrorKind::invalid_request, std::move(detail)); }

std::string shorten(std::string s) {
  if (s.size() > kMaxShownValue) {
    s.resize(kMaxShownValue);
    s += "...";
  }
  return s;
}

std::string show(const json& v) { return shorten(v.dump(-1, ' ', false, json::error_handler_t::replace)); }
std::string show(const std::string& s) {
  // Built by append: GCC 12 -O3 warns (-Wrestrict, a false positive) on "x" + std::string.
  std::string out(1, '"');
  out.append(shorten(s));
  out.push_back('"');
  return out;
}

std::string to_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); });
  return s;
}

std::string trim(std::string_view s) {
  constexpr std::string_view ws = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(ws);
  return std::string(s.substr(first, last - first + 1));
}

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '~' || c == '-';
}

// Same rule as the engine's is_valid_id (kept local so config has no engine dependency).
bool is_valid_activity_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), is_id_char);
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (!is_digits(s) || s.size() > 5) return std::nullopt;
  unsigned value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

bool is_ipv4(const std::string& s) {
  in_addr addr{};
  return inet_pton(AF_INET, s.c_str(), &addr) == 1;
}

bool is_ipv6(const std::string& s) {
  in6_addr addr{};
  return inet_pton(AF_INET6, s.c_str(), &addr) == 1;
}

// "host:port" with an IPv4 literal, "localhost" or "[IPv6]". The host is stored as a
// bare IP literal (localhost becomes 127.0.0.1, IPv6 loses its brackets) so the server
// can bind it without a resolver.
std::optional<std::string> parse_listen(const std::string& s, std::string& host, std::uint16_t& port) {
  const std::string expected = "expected host:port (IPv4 address, localhost or [IPv6]) with port 0..65535, got " + show(s);
  std::string h;
  std::string_view port_text;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return expected;
    h = s.substr(1, close - 1);
    if (!is_ipv6(h)) return "\"" + shorten(h) + "\" is not an IPv6 address";
    port_text = std::string_view(s).substr(close + 2);
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return expected;
    h = s.substr(0, colon);
    if (h.find(':') != std::string::npos) return "IPv6 addresses need brackets, as in [::1]:8080, got " + show(s);
    if (to_lower(h) == "localhost") {
      h = "127.0.0.1";
    } else if (!is_ipv4(h)) {
      return "host must be an IPv4 address, localhost or [IPv6], got " + show(s);
    }
    port_text = std::string_view(s).substr(colon + 1);
  }
  const auto p = parse_port(port_text);
  if (!p) return expected;
  host = std::move(h);
  port = *p;
  return std::nullopt;
}

std::optional<std::string> check_log_level(std::string& s) {
  static const std::set<std::string, std::less<>> levels = {"trace", "debug", "info", "warn", "error"};
  if (levels.count(s) == 0) return "must be one of trace, debug, info, warn, error, got " + show(s);
  return std::nullopt;
}

std::optional<std::string> check_not_empty(std::string& s) {
  if (s.empty()) return "must not be empty";
  return std::nullopt;
}

// Sent as "Authorization: Bearer <token>", so visible ASCII only; never echoed.
std::optional<std::string> check_admin_token(std::string& s) {
  if (s.size() > kMaxAdminTokenLength) return "must be at most " + std::to_string(kMaxAdminTokenLength) + " characters";
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return "must contain only visible ASCII characters (no spaces)";
  }
  return std::nullopt;
}

// URLs may hold passwords, so their messages never echo the value.
std::optional<std::string> check_redis_url(std::string& s) {
  if (s.rfind("redis://", 0) != 0 || s.size() == std::string_view("redis://").size())
    return "must be a redis://host[:port] URL";
  return std::nullopt;
}

std::optional<std::string> check_database_url(std::string& s) {
  if (s.empty()) return std::nullopt;  // the default is applied after loading
  if (s.rfind("sqlite:", 0) == 0) {
    if (s.size() == std::string_view("sqlite:").size()) return "sqlite: URL needs a path, as in sqlite:data/fairdraw.db";
    return std::nullopt;
  }
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (s.rfind(scheme, 0) == 0) {
      if (s.size() == scheme.size()) return "postgresql:// URL needs a host or database";
      return std::nullopt;
    }
  }
  return "must start with sqlite: or postgresql:// (or postgres://)";
}

std::optional<std::string> check_synchronous(std::string& s) {
  if (s != "full" && s != "normal") return "must be full or normal, got " + show(s);
  return std::nullopt;
}

// "*" or a browser origin: scheme://host[:port], no path. Lower-cased, as browsers send it.
std::optional<std::string> check_origin(std::string& s) {
  if (s == "*") return std::nullopt;
  const std::string bad = "must be \"*\" or http(s)://host[:port] without a path, got " + show(s);
  std::string o = to_lower(s);
  std::string_view rest;
  if (o.rfind("http://", 0) == 0) {
    rest = std::string_view(o).substr(7);
  } else if (o.rfind("https://", 0) == 0) {
    rest = std::string_view(o).substr(8);
  } else {
    return bad;
  }
  std::string_view port_text;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || !is_ipv6(std::string(rest.substr(1, close - 1)))) return bad;
    const auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad;
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    const auto host = rest.substr(0, colon);
    if (host.empty() || host.front() == '.' || host.front() == '-') return bad;
    for (char c : host) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return bad;
    }
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = rest.substr(colon + 1);
    }
  }
  if (has_port) {
    const auto p = parse_port(port_text);
    if (!p || *p == 0) return bad;
  }
  s = std::move(o);
  return std::nullopt;
}

#define FAIRDRAW_BIND(member) [](Config& c) -> Target { return &c.member; }

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      {.path = "listen",
       .bind = [](Config& c) -> Target { return ListenTarget{&c.listen_host, &c.listen_port}; }},
      {.path = "threads", .bind = FAIRDRAW_BIND(threads), .min = 0, .max = 1024},
      {.path = "admin_token", .bind = FAIRDRAW_BIND(admin_token), .check = check_admin_token, .secret = Secret::whole},
      {.path = "log_level", .bind = FAIRDRAW_BIND(log_level), .check = check_log_level},
      {.path = "zoneinfo_dir", .bind = FAIRDRAW_BIND(zoneinfo_dir), .check = check_not_empty},
      {.path = "redis.url", .bind = FAIRDRAW_BIND(redis_url), .check = check_redis_url, .secret = Secret::url_password},
      {.path = "redis.stream_batch", .bind = FAIRDRAW_BIND(redis_stream_batch), .min = 1, .max = 100'000},
      {.path = "redis.claim_idle_ms", .bind = FAIRDRAW_BIND(redis_claim_idle_ms), .min = 100, .max = kDayMs},
      {.path = "redis.max_in_flight_draws", .bind = FAIRDRAW_BIND(redis_max_in_flight_draws), .min = 1, .max = 10'000'000},
      {.path = "database.url",
       .bind = FAIRDRAW_BIND(database.url),
       .check = check_database_url,
       .secret = Secret::url_password},
      {.path = "database.synchronous", .bind = FAIRDRAW_BIND(database.synchronous), .check = check_synchronous},
      {.path = "database.batch_max", .bind = FAIRDRAW_BIND(database.batch_max), .min = 1, .max = 100'000},
      {.path = "database.max_queue", .bind = FAIRDRAW_BIND(database.max_queue), .min = 1, .max = 50'000'000},
      {.path = "http.max_connections", .bind = FAIRDRAW_BIND(http.max_connections), .min = 1, .max = 1'000'000},
      {.path = "http.max_header_bytes", .bind = FAIRDRAW_BIND(http.max_header_bytes), .min = 1024, .max = 1024 * 1024},
      {.path = "http.max_body_bytes", .bind = FAIRDRAW_BIND(http.max_body_bytes), .min = 1, .max = 16 * 1024 * 1024},
      {.path = "http.read_timeout_ms", .bind = FAIRDRAW_BIND(http.read_timeout_ms), .min = 1, .max = kHourMs},
      {.path = "http.idle_timeout_ms", .bind = FAIRDRAW_BIND(http.idle_timeout_ms), .min = 1, .max = kHourMs},
      {.path = "http.request_timeout_ms", .bind = FAIRDRAW_BIND(http.request_timeout_ms), .min = 1, .max = kHourMs},
      {.path = "http.shutdown_grace_ms", .bind = FAIRDRAW_BIND(http.shutdown_grace_ms), .min = 0, .max = kHourMs},
      {.path = "http.write_timeout_ms", .bind = FAIRDRAW_BIND(http.write_timeout_ms), .min = 1, .max = kHourMs},
      {.path = "http.max_connections_per_address",
       .bind = FAIRDRAW_BIND(http.max_connections_per_address),
       .min = 0,
       .max = 1'000'000},
      {.path = "cors.allowed_origins", .bind = FAIRDRAW_BIND(cors.allowed_origins), .check = check_origin},
      {.path = "cors.max_age_s", .bind = FAIRDRAW_BIND(cors.max_age_s), .min = 0, .max = 86'400},
      {.path = "draw.max_clock_skew_ms", .bind = FAIRDRAW_BIND(draw.max_clock_skew_ms), .min = 0, .max = kDayMs},
      {.path = "draw.require_token", .bind = FAIRDRAW_BIND(draw.require_token)},
      {.path = "draw.token_ttl_s", .bind = FAIRDRAW_BIND(draw.token_ttl_s), .min = 1, .max = kWeekS},
      {.path = "draw.max_tokens", .bind = FAIRDRAW_BIND(draw.max_tokens), .min = 1, .max = 50'000'000},
      {.path = "draw.idempotency_ttl_s", .bind = FAIRDRAW_BIND(draw.idempotency_ttl_s), .min = 1, .max = kWeekS},
      {.path = "draw.idempotency_capacity",
       .bind = FAIRDRAW_BIND(draw.idempotency_capacity),
       .min = 1,
       .max = 50'000'000},
      {.path = "watchdog.interval_ms", .bind = FAIRDRAW_BIND(watchdog.interval_ms), .min = 1, .max = kHourMs},
      {.path = "watchdog.max_open_connections",
       .bind = FAIRDRAW_BIND(watchdog.max_open_connections),
       .min = 1,
       .max = 1'000'000},
      {.path = "watchdog.max_in_flight_draws",
       .bind = FAIRDRAW_BIND(watchdog.max_in_flight_draws),
       .min = 1,
       .max = 10'000'000},
      {.path = "watchdog.max_sink_queue", .bind = FAIRDRAW_BIND(watchdog.max_sink_queue), .min = 1, .max = 50'000'000},
      {.path = "rate_limit.user_per_minute", .bind = FAIRDRAW_BIND(rate_limit.user_per_minute), .min = 0, .max = 6'000'000},
      {.path = "rate_limit.user_burst", .bind = FAIRDRAW_BIND(rate_limit.user_burst), .min = 1, .max = 1'000'000},
      {.path = "rate_limit.address_per_minute",
       .bind = FAIRDRAW_BIND(rate_limit.address_per_minute),
       .min = 0,
       .max = 60'000'000},
      {.path = "rate_limit.address_burst", .bind = FAIRDRAW_BIND(rate_limit.address_burst), .min = 1, .max = 1'000'000},
      {.path = "rate_limit.max_keys", .bind = FAIRDRAW_BIND(rate_limit.max_keys), .min = 1, .max = 50'000'000},
      {.path = "rate_limit.trusted_proxies", .bind = FAIRDRAW_BIND(rate_limit.trusted_proxies), .check = check_not_empty},
      {.path = "auth.admin_tokens",
       .bind = FAIRDRAW_BIND(auth.admin_tokens),
       .check = check_admin_token,
       .secret = Secret::whole},
      {.path = "auth.jwt_hs256_secret", .bind = FAIRDRAW_BIND(auth.jwt_hs256_secret), .secret = Secret::whole},
      {.path = "auth.jwt_rs256_public_key_file", .bind = FAIRDRAW_BIND(auth.jwt_rs256_public_key_file)},
      {.path = "auth.jwt_issuer", .bind = FAIRDRAW_BIND(auth.jwt_issuer)},
      {.path = "auth.jwt_audience", .bind = FAIRDRAW_BIND(auth.jwt_audience)},
      {.path = "auth.jwt_leeway_s", .bind = FAIRDRAW_BIND(auth.jwt_leeway_s), .min = 0, .max = 3600},
      {.path = "auth.jwt_user_claim", .bind = FAIRDRAW_BIND(auth.jwt_user_claim), .check = check_not_empty},
      {.path = "auth.require_user_token", .bind = FAIRDRAW_BIND(auth.require_user_token)},
      {.path = "auth.admin_max_failures", .bind = FAIRDRAW_BIND(auth.admin_max_failures), .min = 0, .max = 1'000'000},
      {.path = "auth.admin_lockout_s", .bind = FAIRDRAW_BIND(auth.admin_lockout_s), .min = 1, .max = kWeekS},
      {.path = "auth.admin_guard_max_addresses",
       .bind = FAIRDRAW_BIND(auth.admin_guard_max_addresses),
       .min = 1,
       .max = 10'000'000},
  };
  return table;
}

#undef FAIRDRAW_BIND

std::string env_name(std::string_view path) {
  std::string name(kEnvPrefix);
  for (char c : path) name += c == '.' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c);
  return name;
}

const Field* find_field(std::string_view path) {
  for (const auto& f : fields()) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

// Sections are the prefixes of dotted paths ("http", "draw", ...).
bool is_section(std::string_view name) {
  return std::any_of(fields().begin(), fields().end(), [&](const Field& f) {
    return f.path.size() > name.size() && f.path.substr(0, name.size()) == name && f.path[name.size()] == '.';
  });
}

// ---- Reading raw values: JSON from the file, text from the environment ----

std::string out_of_bounds(const Field& field, const std::string& got) {
  return "must be between " + std::to_string(field.min) + " and " + std::to_string(field.max) + ", got " + got;
}

Result<std::int64_t> read_integer(const json& v, const Field& field, bool non_negative) {
  const std::string expected = non_negative ? "expected a non-negative integer" : "expected an integer";
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return config_error(out_of_bounds(field, show(v)));
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) {
    const auto n = v.get<std::int64_t>();
    if (non_negative && n < 0) return config_error(expected + ", got " + show(v));
    return n;
  }
  return config_error(expected + ", got " + show(v));
}

Result<std::int64_t> read_integer(const std::string& s, const Field& field, bool non_negative) {
  const std::string expected = non_negative ? "expected a non-negative integer" : "expected an integer";
  std::int64_t n = 0;
  const auto* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, n);
  if (s.empty() || ec == std::errc::invalid_argument || ptr != end) return config_error(expected + ", got " + show(s));
  if (ec == std::errc::result_out_of_range) return config_error(out_of_bounds(field, s));
  if (non_negative && n < 0) return config_error(expected + ", got " + show(s));
  return n;
}

Result<bool> read_bool(const json& v) {
  if (!v.is_boolean()) return config_error("expected true or false, got " + show(v));
  return v.get<bool>();
}

Result<bool> read_bool(const std::string& s) {
  const auto l = to_lower(s);
  if (l == "true" || l == "1") return true;
  if (l == "false" || l == "0") return false;
  return config_error("expected true, false, 1 or 0, got " + show(s));
}

Result<std::string> read_string(const json& v) {
  if (!v.is_string()) return config_error("expected a string, got " + show(v));
  return v.get<std::string>();
}

Result<std::string> read_string(const std::string& s) { return s; }

Result<std::optional<std::string>> read_optional_string(const json& v) {
  if (v.is_null()) return std::optional<std::string>{};
  if (!v.is_string()) return config_error("expected a string or null, got " + show(v));
  return std::optional<std::string>{v.get<std::string>()};
}

// The environment cannot say null: an empty value unsets.
Result<std::optional<std::string>> read_optional_string(const std::string& s) {
  if (s.empty()) return std::optional<std::string>{};
  return std::optional<std::string>{s};
}

Result<std::vector<std::string>> read_list(const json& v) {
  if (!v.is_array()) return config_error("expected an array of strings, got " + show(v));
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string()) return config_error("expected an array of strings, got an item " + show(item));
    out.push_back(item.get<std::string>());
  }
  return out;
}

// Comma-separated; blanks around items and empty items are dropped.
Result<std::vector<std::string>> read_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    auto item = trim(std::string_view(s).substr(start, comma - start));
    if (!item.empty()) out.push_back(std::move(item));
    start = comma + 1;
  }
  return out;
}

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

// Parses `raw` (a JSON value or an environment string) into the field's member.
// Returns the problem without a prefix; the caller names the source.
template <class Raw>
std::optional<std::string> assign(const Field& field, Config& config, const Raw& raw) {
  auto integer = [&](auto* member, bool non_negative) -> std::optional<std::string> {
    auto n = read_integer(raw, field, non_negative);
    if (!n) return n.error().detail;
    if (*n < field.min || *n > field.max) return out_of_bounds(field, std::to_string(*n));
    *member = static_cast<std::remove_pointer_t<decltype(member)>>(*n);  // in range: bounds fit the type
    return std::nullopt;
  };
  return std::visit(
      overloaded{
          [&](std::int64_t* m) { return integer(m, false); },
          [&](std::size_t* m) { return integer(m, true); },
          [&](unsigned* m) { return integer(m, true); },
          [&](bool* m) -> std::optional<std::string> {
            auto b = read_bool(raw);
            if (!b) return b.error().detail;
            *m = *b;
            return std::nullopt;
          },
          [&](std::string* m) -> std::optional<std::string> {
            auto s = read_string(raw);
            if (!s) return s.error().detail;
            if (field.check) {
              if (auto problem = field.check(*s)) return problem;
            }
            *m = std::move(*s);
            return std::nullopt;
          },
          [&](std::optional<std::string>* m) -> std::optional<std::string> {
            auto s = read_optional_string(raw);
            if (!s) return s.error().detail;
            if (s->has_value() && field.check) {
              if (auto problem = field.check(**s)) return problem;
            }
            *m = std::move(*s);
            return std::nullopt;
          },
          [&](std::vector<std::string>* m) -> std::optional<std::string> {
            auto list = read_list(raw);
            if (!list) return list.error().detail;
            if (field.check) {
              for (std::size_t i = 0; i < list->size(); ++i) {
                if (auto problem = field.check((*list)[i])) return "item " + std::to_string(i) + ": " + *problem;
              }
            }
            *m = std::move(*list);
            return std::nullopt;
          },
          [&](ListenTarget t) -> std::optional<std::string> {
            auto s = read_string(raw);
            if (!s) return s.error().detail;
            return parse_listen(*s, *t.host, *t.port);
          },
      },
      field.bind(config));
}

// ---- The file ----

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string unknown_field(const std::string& path, std::string_view prefix) {
  std::string best;
  std::size_t best_distance = 3;  // suggest only close misspellings
  auto consider = [&](std::string_view candidate) {
    const auto d = edit_distance(path, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(candidate);
    }
  };
  for (const auto& f : fields()) {
    if (f.path.substr(0, prefix.size()) != prefix) continue;
    consider(f.path);
    const auto dot = f.path.find('.', prefix.size());
    if (dot != std::string_view::npos) consider(f.path.substr(0, dot));
  }
  if (prefix.empty()) consider("activities");
  std::string detail = path + ": unknown field";
  if (!best.empty()) detail += " (did you mean " + best + "?)";
  return detail;
}

// Walks one object of the file; `prefix` is "" at the root, "http." inside "http".
std::optional<std::string> apply_object(const json& object, const std::string& prefix, Config& config) {
  for (const auto& [key, value] : object.items()) {
    const std::string path = prefix + key;
    if (key.find('.') != std::string::npos || key.empty()) return unknown_field(path, prefix);
    if (const Field* field = find_field(path)) {
      if (auto problem = assign(*field, config, value)) return path + ": " + *problem;
    } else if (prefix.empty() && key == "activities") {
      if (!value.is_object()) return "activities: expected an object of id -> activity, got " + show(value);
      for (const auto& [id, body] : value.items()) {
        if (!is_valid_activity_id(id))
          return "activities." + shorten(id) + ": activity id must be 1..128 characters of [A-Za-z0-9._~-]";
        if (!body.is_object()) return "activities." + id + ": expected an object, got " + show(body);
        config.activities[id] = body;
      }
    } else if (is_section(path)) {
      if (!value.is_object()) return path + ": expected an object, got " + show(value);
      if (auto problem = apply_object(value, path + ".", config)) return problem;
    } else {
      return unknown_field(path, prefix);
    }
  }
  return std::nullopt;
}

// nlohmann keeps the last of repeated keys silently; a repeated key in a config file is
// almost always a mistake, so the parser callback reports the first one.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        levels_.emplace_back();
        break;
      case json::parse_event_t::key:
        if (!levels_.empty() && parsed.is_string()) {
          auto& level = levels_.back();
          level.current = parsed.get<std::string>();
          if (!level.seen.insert(level.current).second && duplicate_.empty()) duplicate_ = current_path();
        }
        break;
      case json::parse_event_t::object_end:
        if (!levels_.empty()) levels_.pop_back();
        break;
      default:
        break;
    }
    return true;
  }
  const std::string& duplicate() const { return duplicate_; }

 private:
  struct Level {
    std::set<std::string> seen;
    std::string current;
  };
  std::string current_path() const {
    std::string path;
    for (const auto& level : levels_) path += (path.empty() ? "" : ".") + level.current;
    return path;
  }
  std::vector<Level> levels_;
  std::string duplicate_;
};

Result<json> read_json_file(const std::string& path) {
  const std::string prefix = "config file " + path + ": ";
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) return config_error(prefix + "does not exist");
  if (std::filesystem::is_directory(status)) return config_error(prefix + "is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return config_error(prefix + "cannot be opened: " + std::strerror(errno));
  // Read in chunks with a cap: the path may be a pipe (e.g. <(...)) or a device.
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxFileBytes) return config_error(prefix + "larger than 16 MiB");
  }
  if (in.bad()) return config_error(prefix + "read failed");
  DuplicateKeyFinder duplicates;
  try {
    json document = json::parse(text, std::ref(duplicates));
    if (!duplicates.duplicate().empty()) return config_error(prefix + duplicates.duplicate() + ": duplicate key");
    return document;
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    if (const auto bracket = what.find("] "); what.rfind("[json.exception", 0) == 0 && bracket != std::string::npos)
      what = what.substr(bracket + 2);
    return config_error(prefix + "invalid JSON: " + what);
  }
}

// ---- Whole-config checks, after file and environment ----

std::optional<std::string> check_cross_fields(const Config& c) {
  if (c.http.request_timeout_ms >= c.http.read_timeout_ms)
    return "http.request_timeout_ms: must be less than http.read_timeout_ms (" + std::to_string(c.http.read_timeout_ms) +
           "), got " + std::to_string(c.http.request_timeout_ms);
  if (c.database.batch_max > c.database.max_queue)
    return "database.batch_max: must be at most database.max_queue (" + std::to_string(c.database.max_queue) +
           "), got " + std::to_string(c.database.batch_max);
  return std::nullopt;
}

// ---- describe_config ----

// user:PASSWORD@ -> user:***@ (a lone userinfo is masked too when it may be a password,
// as redis://secret@host), and any query parameter named like *password*.
std::string mask_url(const std::string& url, bool lone_userinfo_is_secret) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const auto start = scheme_end + 3;
  auto query = url.find_first_of("?#", start);
  if (query == std::string::npos) query = url.size();
  std::string out = url.substr(0, start);
  std::string main = url.substr(start, query - start);
  // The last '@' before the query ends the userinfo; unescaped '@' or '/' in a
  // password then still ends up masked (over-masking beats leaking).
  if (const auto at = main.rfind('@'); at != std::string::npos) {
    const std::string userinfo = main.substr(0, at);
    const auto colon = userinfo.find(':');
    if (colon != std::string::npos) {
      main = userinfo.substr(0, colon + 1) + "***" + main.substr(at);
    } else if (lone_userinfo_is_secret) {
      main = "***" + main.substr(at);
    }
  }
  out += main;
  if (query < url.size()) {
    std::string rest = url.substr(query);
    std::string masked;
    std::size_t i = 0;
    while (i < rest.size()) {
      auto end = rest.find_first_of("&#", i + 1);
      if (end == std::string::npos) end = rest.size();
      std::string part = rest.substr(i, end - i);  // "?k=v" or "&k=v" or "#frag"
      const auto eq = part.find('=');
      if (part.size() > 1 && part[0] != '#' && eq != std::string::npos &&
          to_lower(part.substr(1, eq - 1)).find("password") != std::string::npos)
        part = part.substr(0, eq + 1) + "***";
      masked += part;
      i = end;
    }
    out += masked;
  }
  return out;
}

ordered_json field_value(const Field& field, Config& config) {
  return std::visit(overloaded{
                        [](std::int64_t* m) { return ordered_json(*m); },
                        [](std::size_t* m) { return ordered_json(*m); },
                        [](unsigned* m) { return ordered_json(*m); },
                        [](bool* m) { return ordered_json(*m); },
                        [](std::string* m) { return ordered_json(*m); },
                        [](std::optional<std::string>* m) { return *m ? ordered_json(**m) : ordered_json(nullptr); },
                        [](std::vector<std::string>* m) { return ordered_json(*m); },
                        [](ListenTarget t) {
                          const bool v6 = t.host->find(':') != std::string::npos;
                          return ordered_json((v6 ? "[" + *t.host + "]" : *t.host) + ":" + std::to_string(*t.port));
                        },
                    },
                    field.bind(config));
}

}  // namespace

Result<Config> load_config(const std::optional<std::string>& path, const std::map<std::string, std::string>& env) {
  Config config;
  const std::string file_prefix = path ? "config file " + *path + ": " : "config: ";
  if (path) {
    auto document = read_json_file(*path);
    if (!document) return document.error();
    if (!document->is_object()) return config_error(file_prefix + "expected a JSON object at the top level");
    if (auto problem = apply_object(*document, "", config)) return config_error(file_prefix + *problem);
  }
  for (const auto& field : fields()) {
    const auto name = env_name(field.path);
    const auto it = env.find(name);
    if (it == env.end()) continue;
    // Trimmed: values from env files and secrets often carry a trailing newline.
    if (auto problem = assign(field, config, trim(it->second))) return config_error("environment " + name + ": " + *problem);
  }
  if (config.database.url.empty()) config.database.url = "sqlite:fairdraw.db";
  if (auto problem = check_cross_fields(config)) return config_error(file_prefix + *problem);
  return config;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.substr(0, kEnvPrefix.size()) != kEnvPrefix) continue;
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return env;
}

std::vector<std::string> unknown_environment_overrides(const std::map<std::string, std::string>& env) {
  std::set<std::string> known = {"FAIRDRAW_CONFIG"};
  for (const auto& field : fields()) known.insert(env_name(field.path));
  std::vector<std::string> unknown;
  for (const auto& [name, value] : env) {
    if (name.rfind(kEnvPrefix, 0) == 0 && known.count(name) == 0) unknown.push_back(name);
  }
  return unknown;
}

std::string describe_config(const Config& config) {
  Config copy = config;  // the field table binds mutable members
  ordered_json out = ordered_json::object();
  for (const auto& field : fields()) {
    ordered_json value = field_value(field, copy);
    if (field.secret == Secret::whole && value.is_string() && !value.get<std::string>().empty()) value = "***";
    if (field.secret == Secret::whole && value.is_array()) {
      for (auto& item : value) item = "***";
    }
    if (field.secret == Secret::url_password && value.is_string())
      value = mask_url(value.get<std::string>(), field.path == "redis.url");
    const auto dot = field.path.find('.');
    if (dot == std::string_view::npos) {
      out[std::string(field.path)] = std::move(value);
    } else {
      out[std::string(field.path.substr(0, dot))][std::string(field.path.substr(dot + 1))] = std::move(value);
    }
  }
  ordered_json activities = ordered_json::object();
  for (const auto& [id, body] : config.activities) {
    try {
      activities[id] = ordered_json::parse(body.dump(-1, ' ', false, json::error_handler_t::replace));
    } catch (const ordered_json::exception&) {
      activities[id] = nullptr;  // unreachable for bodies read from a file
    }
  }
  out["activities"] = std::move(activities);
  return out.dump(2, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace fairdraw::app
