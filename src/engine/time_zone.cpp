// TZif (RFC 8536) reader and POSIX TZ footer rules: UTC offsets and local day boundaries.
// Footer rules support all three date forms (Jn, n and Mm.w.d); a footer with DST but no
// rule, or one that does not parse, falls back to the last transition's offset.
#include "fairdraw/engine/time_zone.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <optional>

namespace fairdraw {

namespace {

constexpr std::int64_t kSecondsPerDay = 86400;
// RFC 8536 keeps UT offsets within (-25h, +26h); day_start_ms relies on this bound.
constexpr std::int64_t kMaxAbsOffset = 26 * 3600;
constexpr std::size_t kMaxZoneName = 128;
constexpr std::size_t kMaxTzifBytes = 1U << 20;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::int64_t floor_mod(std::int64_t a, std::int64_t b) { return a - floor_div(a, b) * b; }

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::int64_t year_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0);
}

bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned month_length(std::int64_t y, unsigned m) {
  static constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

struct RuleDate {
  enum class Form { julian_no_leap, zero_based, month_week_day } form = Form::month_week_day;
  unsigned day = 0;  // Jn: 1..365, n: 0..365
  unsigned month = 0, week = 0, weekday = 0;
  std::int64_t time_s = 2 * 3600;  // local time of day, may be negative or past 24h

  std::int64_t day_number(std::int64_t year) const {
    const std::int64_t jan1 = days_from_civil(year, 1, 1);
    switch (form) {
      case Form::julian_no_leap:
        return jan1 + day - 1 + (is_leap(year) && day >= 60 ? 1 : 0);
      case Form::zero_based:
        return jan1 + day;
      case Form::month_week_day:
        break;
    }
    const std::int64_t first = days_from_civil(year, month, 1);
    const std::int64_t first_weekday = floor_mod(first + 4, 7);  // 1970-01-01 was a Thursday
    std::int64_t day_no = first + (static_cast<std::int64_t>(weekday) - first_weekday + 7) % 7 +
                          7 * (static_cast<std::int64_t>(week) - 1);
    while (day_no >= first + month_length(year, month)) day_no -= 7;
    return day_no;
  }
};

// A POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3"; offsets here are east of UTC.
struct PosixRule {
  std::int64_t std_offset = 0;
  bool has_dst = false;
  std::int64_t dst_offset = 0;
  RuleDate start, end;

  // DST starts at a local standard time and ends at a local daylight time.
  std::int64_t start_instant(std::int64_t year) const {
    return start.day_number(year) * kSecondsPerDay + start.time_s - std_offset;
  }
  std::int64_t end_instant(std::int64_t year) const {
    return end.day_number(year) * kSecondsPerDay + end.time_s - dst_offset;
  }
  std::int64_t year_of(std::int64_t unix_s) const {
    return year_from_days(floor_div(unix_s + std_offset, kSecondsPerDay));
  }

  std::int64_t offset_at(std::int64_t unix_s) const {
    if (!has_dst) return std_offset;
    const std::int64_t year = year_of(unix_s);
    const std::int64_t s = start_instant(year);
    const std::int64_t e = end_instant(year);
    // Southern-hemisphere rules end DST earlier in the year than they start it.
    const bool dst = s < e ? (s <= unix_s && unix_s < e) : !(e <= unix_s && unix_s < s);
    return dst ? dst_offset : std_offset;
  }

  std::optional<std::int64_t> next_change_after(std::int64_t unix_s) const {
    if (!has_dst) return std::nullopt;
    std::optional<std::int64_t> best;
    const std::int64_t year = year_of(unix_s);
    for (std::int64_t y = year - 1; y <= year + 1; ++y) {
      for (std::int64_t at : {start_instant(y), end_instant(y)}) {
        if (at > unix_s && (!best || at < *best)) best = at;
      }
    }
    return best;
  }
};

class PosixParser {
 public:
  explicit PosixParser(std::string_view text) : s_(text) {}

  std::optional<PosixRule> parse() {
    PosixRule rule;
    if (!name()) return std::nullopt;
    auto std_west = hms(24);
    if (!std_west) return std::nullopt;
    rule.std_offset = -*std_west;
    if (done()) return rule;
    if (!name()) return std::nullopt;
    rule.has_dst = true;
    rule.dst_offset = rule.std_offset + 3600;
    if (!done() && peek() != ',') {
      auto dst_west = hms(24);
      if (!dst_west) return std::nullopt;
      rule.dst_offset = -*dst_west;
    }
    // DST without a rule: the default rule is implementation-defined, so the caller falls back.
    if (!eat(',')) return std::nullopt;
    auto start = date();
    if (!start || !eat(',')) return std::nullopt;
    auto end = date();
    if (!end || !done()) return std::nullopt;
    rule.start = *start;
    rule.end = *end;
    return rule;
  }

 private:
  bool done() const { return pos_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[pos_]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  bool name() {
    if (eat('<')) {
      const std::size_t begin = pos_;
      while (!done() && peek() != '>') {
        const char c = peek();
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-') return false;
        ++pos_;
      }
      return pos_ - begin >= 1 && eat('>');
    }
    const std::size_t begin = pos_;
    while (is_alpha(peek())) ++pos_;
    return pos_ - begin >= 3;
  }

  std::optional<unsigned> number(unsigned max) {
    if (!is_digit(peek())) return std::nullopt;
    unsigned value = 0;
    while (is_digit(peek())) {
      value = value * 10 + static_cast<unsigned>(s_[pos_++] - '0');
      if (value > max) return std::nullopt;
    }
    return value;
  }

  // [+-]hh[:mm[:ss]] in seconds.
  std::optional<std::int64_t> hms(unsigned max_hours) {
    std::int64_t sign = 1;
    if (eat('-')) {
      sign = -1;
    } else {
      eat('+');
    }
    auto hours = number(max_hours);
    if (!hours) return std::nullopt;
    std::int64_t total = std::int64_t{*hours} * 3600;
    for (std::int64_t unit : {60, 1}) {
      if (!eat(':')) break;
      auto part = number(59);
      if (!part) return std::nullopt;
      total += std::int64_t{*part} * unit;
    }
    return sign * total;
  }

  std::optional<RuleDate> date() {
    RuleDate d;
    if (eat('J')) {
      auto n = number(365);
      if (!n || *n < 1) return std::nullopt;
      d.form = RuleDate::Form::julian_no_leap;
      d.day = *n;
    } else if (eat('M')) {
      auto m = number(12);
      if (!m || *m < 1 || !eat('.')) return std::nullopt;
      auto w = number(5);
      if (!w || *w < 1 || !eat('.')) return std::nullopt;
      auto wd = number(6);
      if (!wd) return std::nullopt;
      d.form = RuleDate::Form::month_week_day;
      d.month = *m;
      d.week = *w;
      d.weekday = *wd;
    } else {
      auto n = number(365);
      if (!n) return std::nullopt;
      d.form = RuleDate::Form::zero_based;
      d.day = *n;
    }
    if (eat('/')) {
      auto t = hms(167);  // RFC 8536 extension: -167..167 hours
      if (!t) return std::nullopt;
      d.time_s = *t;
    }
    return d;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// Big-endian cursor over the file's bytes; every read is bounds-checked.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  bool has(std::uint64_t n) const { return n <= data_.size() - pos_; }
  void skip(std::size_t n) { pos_ += n; }
  std::size_t pos() const { return pos_; }
  std::string_view rest() const { return data_.substr(pos_); }
  std::uint64_t uint(std::size_t width) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<std::uint8_t>(data_[pos_ + i]);
    pos_ += width;
    return v;
  }
  std::int64_t sint(std::size_t width) {
    const std::uint64_t v = uint(width);
    if (width == 8) return static_cast<std::int64_t>(v);
    const std::uint64_t sign = std::uint64_t{1} << (width * 8 - 1);
    return static_cast<std::int64_t>(v ^ sign) - static_cast<std::int64_t>(sign);
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

struct TzifCounts {
  std::uint64_t isut = 0, isstd = 0, leap = 0, time = 0, type = 0, chars = 0;
  std::uint64_t data_size(std::size_t time_width) const {
    return time * (time_width + 1) + type * 6 + chars + leap * (time_width + 4) + isstd + isut;
  }
};

struct TzifData {
  std::vector<std::int64_t> transitions;
  std::vector<std::int32_t> offsets;
  std::int32_t initial_offset = 0;
  std::string footer;
};

std::optional<std::pair<char, TzifCounts>> read_header(ByteReader& in) {
  if (!in.has(44) || in.rest().substr(0, 4) != "TZif") return std::nullopt;
  in.skip(4);
  const auto version = static_cast<char>(in.uint(1));
  in.skip(15);
  TzifCounts c;
  c.isut = in.uint(4);
  c.isstd = in.uint(4);
  c.leap = in.uint(4);
  c.time = in.uint(4);
  c.type = in.uint(4);
  c.chars = in.uint(4);
  return std::make_pair(version, c);
}

std::optional<TzifData> read_block(ByteReader& in, const TzifCounts& c, std::size_t width) {
  if (c.type < 1 || !in.has(c.data_size(width))) return std::nullopt;
  TzifData out;
  out.transitions.reserve(c.time);
  for (std::uint64_t i = 0; i < c.time; ++i) {
    const std::int64_t at = in.sint(width);
    if (!out.transitions.empty() && at <= out.transitions.back()) return std::nullopt;
    out.transitions.push_back(at);
  }
  std::vector<std::uint64_t> type_index(c.time);
  for (auto& index : type_index) {
    index = in.uint(1);
    if (index >= c.type) return std::nullopt;
  }
  std::vector<std::int32_t> type_offsets;
  type_offsets.reserve(c.type);
  for (std::uint64_t i = 0; i < c.type; ++i) {
    const std::int64_t utoff = in.sint(4);
    if (utoff <= -kMaxAbsOffset || utoff >= kMaxAbsOffset) return std::nullopt;
    type_offsets.push_back(static_cast<std::int32_t>(utoff));
    in.skip(2);  // isdst, desigidx
  }
  in.skip(c.chars + c.leap * (width + 4) + c.isstd + c.isut);
  // RFC 8536: instants before the first transition use time type 0.
  out.initial_offset = type_offsets.empty() ? 0 : type_offsets.front();
  out.offsets.reserve(c.time);
  for (std::uint64_t index : type_index) out.offsets.push_back(type_offsets[index]);
  return out;
}

std::optional<TzifData> parse_tzif(std::string_view bytes) {
  ByteReader in(bytes);
  auto header = read_header(in);
  if (!header) return std::nullopt;
  if (header->first == '\0') return read_block(in, header->second, 4);
  // Version 2+: the 32-bit block is only for old readers; the 64-bit one follows it.
  if (!in.has(header->second.data_size(4))) return std::nullopt;
  in.skip(header->second.data_size(4));
  auto header64 = read_header(in);
  if (!header64) return std::nullopt;
  auto data = read_block(in, header64->second, 8);
  if (!data) return std::nullopt;
  const std::string_view rest = in.rest();
  if (rest.size() >= 2 && rest[0] == '\n') {
    const std::size_t end = rest.find('\n', 1);
    if (end != std::string_view::npos) data->footer = std::string(rest.substr(1, end - 1));
  }
  return data;
}

bool valid_zone_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxZoneName || name.front() == '/') return false;
  if (name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '_' || c == '-' || c == '+' || c == '.';
  });
}

std::string quoted_name(std::string_view name) {
  constexpr std::size_t kShown = 64;
  // Built by append: GCC 12 -O3 warns (-Wrestrict, a false positive) on "x" + std::string.
  std::string out(1, '"');
  out.append(name.substr(0, kShown));
  if (name.size() > kShown) out.append("...");
  out.push_back('"');
  return out;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  std::string bytes;
  bytes.resize(kMaxTzifBytes + 1);
  file.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (file.bad()) return std::nullopt;
  const auto n = static_cast<std::size_t>(file.gcount());
  if (n == 0 || n > kMaxTzifBytes) return std::nullopt;
  bytes.resize(n);
  return bytes;
}

}  // namespace

struct TimeZone::Rule {
  PosixRule posix;
};

TimeZone TimeZone::utc() {
  TimeZone zone;
  zone.name_ = "UTC";
  return zone;
}

Result<TimeZone> TimeZone::load(std::string_view name, std::string_view zoneinfo_dir) {
  if (name == "UTC" || name == "Etc/UTC") {
    TimeZone zone = utc();
    zone.name_ = std::string(name);
    return zone;
  }
  if (!valid_zone_name(name)) {
    return make_error(ErrorKind::invalid_request,
                      "time_zone: invalid time zone name " + quoted_name(name));
  }
  auto bytes = read_file(std::string(zoneinfo_dir) + "/" + std::string(name));
  if (!bytes) {
    return make_error(ErrorKind::invalid_request, "time_zone: unknown time zone " + quoted_name(name));
  }
  auto data = parse_tzif(*bytes);
  if (!data) {
    return make_error(ErrorKind::invalid_request,
                      "time_zone: unreadable time zone data for " + quoted_name(name));
  }
  TimeZone zone;
  zone.name_ = std::string(name);
  zone.transitions_ = std::move(data->transitions);
  zone.offsets_ = std::move(data->offsets);
  zone.initial_offset_ = data->initial_offset;
  if (auto rule = PosixParser(data->footer).parse()) {
    zone.rule_ = std::make_shared<const Rule>(Rule{*rule});
  }
  return zone;
}

std::int64_t TimeZone::utc_offset_s(std::int64_t unix_s) const {
  if (transitions_.empty()) return rule_ ? rule_->posix.offset_at(unix_s) : initial_offset_;
  if (unix_s < transitions_.front()) return initial_offset_;
  if (rule_ && unix_s > transitions_.back()) return rule_->posix.offset_at(unix_s);
  const auto next = std::upper_bound(transitions_.begin(), transitions_.end(), unix_s);
  return offsets_[static_cast<std::size_t>(std::distance(transitions_.begin(), next)) - 1];
}

std::int64_t TimeZone::local_day(std::int64_t unix_ms) const {
  const std::int64_t unix_s = floor_div(unix_ms, 1000);
  return floor_div(unix_s + utc_offset_s(unix_s), kSecondsPerDay);
}

std::int64_t TimeZone::day_start_ms(std::int64_t day) const {
  // The offset is constant between changes, so local time rises with the instant inside each
  // such segment. Walk the segments from an instant surely before the day (offsets stay under
  // 26h) and take the first instant whose local time reaches the day's midnight: this handles
  // midnights skipped by a gap (the day starts at the transition) and repeated by an overlap.
  const std::int64_t midnight = day * kSecondsPerDay;
  std::int64_t at = midnight - kMaxAbsOffset;
  for (int segment = 0; segment < 64; ++segment) {
    const std::int64_t candidate = std::max(at, midnight - utc_offset_s(at));
    std::optional<std::int64_t> change;
    if (!transitions_.empty() && at < transitions_.back()) {
      change = *std::upper_bound(transitions_.begin(), transitions_.end(), at);
    } else if (rule_) {
      change = rule_->posix.next_change_after(at);
    }
    if (!change || candidate < *change) return candidate * 1000;
    at = *change;
  }
  return (midnight - utc_offset_s(midnight)) * 1000;
}

}  // namespace fairdraw
