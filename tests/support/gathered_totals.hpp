// load_totals with the per-user counts it hands over gathered into a map, for
// the sink tests (the counts may come from two threads at once).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "fairdraw/sink/sink.hpp"

namespace fairdraw::test {

// user id -> (draws, draws at or after since_ms), as load_totals hands them over.
using UserCounts = std::map<std::string, std::pair<std::int64_t, std::int64_t>>;

inline Result<ActivityTotals> load_totals(Sink& sink, const std::string& activity,
                                          UserCounts* users = nullptr, std::int64_t since_ms = 0) {
  std::mutex mutex;
  UserCounts gathered;
  auto totals = sink.load_totals(activity, since_ms,
                                 [&](std::string_view user, std::int64_t n, std::int64_t since) {
                                   std::lock_guard lock(mutex);
                                   auto& counts = gathered[std::string(user)];
                                   counts.first += n;
                                   counts.second += since;
                                 });
  if (users) *users = std::move(gathered);
  return totals;
}

}  // namespace fairdraw::test
