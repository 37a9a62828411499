// IANA time zones from the system's TZif files (/usr/share/zoneinfo), for
// per-day quotas counted in the activity's local day. libstdc++ 12 has no
// std::chrono::tzdb, hence this small reader.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/result.hpp"

namespace fairdraw {

class TimeZone {
 public:
  // "UTC" always works; other names load <zoneinfo_dir>/<name> (TZif v2+,
  // 64-bit section; the footer's POSIX TZ rule for instants past the last
  // transition). Names with ".." or a leading '/' are refused.
  static Result<TimeZone> load(std::string_view name,
                               std::string_view zoneinfo_dir = "/usr/share/zoneinfo");
  static TimeZone utc();

  const std::string& name() const { return name_; }
  // UTC offset in seconds at the instant `unix_s`.
  std::int64_t utc_offset_s(std::int64_t unix_s) const;
  // Local calendar day number (days since 1970-01-01 in local time) of an instant.
  std::int64_t local_day(std::int64_t unix_ms) const;
  // The first instant (unix ms) of a local day number.
  std::int64_t day_start_ms(std::int64_t local_day) const;

 private:
  struct Rule;  // parsed POSIX TZ footer
  std::string name_;
  std::vector<std::int64_t> transitions_;  // unix seconds, ascending
  std::vector<std::int32_t> offsets_;      // offset in force from transitions_[i]
  std::int32_t initial_offset_ = 0;
  std::shared_ptr<const Rule> rule_;       // may be null (fixed offset after last)
};

}  // namespace fairdraw
