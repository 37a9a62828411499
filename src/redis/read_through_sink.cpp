// ReadThroughSink: database reads completed with the draws still only in Redis.
#include "fairdraw/redis/read_through_sink.hpp"

#include <algorithm>
#include <charconv>
#include <string>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

namespace fairdraw::redis {
namespace {

// The user-draws cursor of the sinks (sink_common): "<drawn_at_ms>.<seq>.<draw_id>" of the
// last row shown. Parsed here only to filter Redis's draws; a bad one is refused by the
// database read before this matters.
struct Position {
  std::int64_t drawn_at_ms = 0;
  std::int64_t seq = 0;
  std::string draw_id;
};

std::optional<Position> parse_cursor(std::string_view cursor) {
  const auto first = cursor.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = cursor.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  Position p;
  const std::string_view ms = cursor.substr(0, first);
  const std::string_view seq = cursor.substr(first + 1, second - first - 1);
  if (std::from_chars(ms.data(), ms.data() + ms.size(), p.drawn_at_ms).ec != std::errc() ||
      std::from_chars(seq.data(), seq.data() + seq.size(), p.seq).ec != std::errc()) {
    return std::nullopt;
  }
  p.draw_id = std::string(cursor.substr(second + 1));
  return p;
}

std::string make_cursor(const DrawRecord& last) {
  return std::to_string(last.drawn_at_ms) + "." + std::to_string(last.seq) + "." + last.draw_id;
}

auto order_key(const DrawRecord& r) { return std::tie(r.drawn_at_ms, r.seq, r.draw_id); }

}  // namespace

// The worker removes a draw from Redis's index only after its row is committed, so a draw
// missing from Redis is in the database: reading Redis before the database (again) can never
// miss a draw that moves in between.
Result<std::optional<DrawRecord>> ReadThroughSink::find_draw(std::string_view draw_id) {
  auto stored = db_.find_draw(draw_id);
  if (stored.ok() && stored->has_value()) return stored;
  auto pending = store_.find_unpersisted_draw(std::string(draw_id));
  if (pending.ok() && pending->has_value()) return pending;
  if (!pending.ok()) return stored;  // Redis cannot tell: the database's answer stands
  return db_.find_draw(draw_id);     // persisted meanwhile, or not found at all
}

Result<DrawPage> ReadThroughSink::user_draws(std::string_view user_id, std::optional<std::string_view> activity_id,
                                             std::optional<std::string_view> cursor, std::size_t limit) {
  std::optional<Position> after;
  if (cursor) after = parse_cursor(*cursor);
  // Redis first (see find_draw). Per activity: the draws of the cursor's millisecond and the
  // `limit` + 1 newest before it (ties included): no more than `limit` can be shown, and more
  // than `limit` after the cursor says there are more.
  auto pending = limit == 0 || (cursor && !after)
                     ? Result<std::vector<DrawRecord>>(std::vector<DrawRecord>{})
                     : store_.unpersisted_user_draws(
                           std::string(user_id),
                           activity_id ? std::optional<std::string>(std::string(*activity_id)) : std::nullopt,
                           limit + 1, after ? std::optional<std::int64_t>(after->drawn_at_ms) : std::nullopt);
  auto page = db_.user_draws(user_id, activity_id, cursor, limit);
  if (!page.ok() || !pending.ok() || pending->empty()) return page;  // Redis unavailable: the database's page

  std::vector<DrawRecord> merged = std::move(page->items);
  std::unordered_set<std::string> seen;
  for (const DrawRecord& r : merged) seen.insert(r.draw_id);
  for (DrawRecord& r : pending.value()) {
    if (after && !(std::tie(r.drawn_at_ms, r.seq, r.draw_id) <
                   std::tie(after->drawn_at_ms, after->seq, after->draw_id))) {
      continue;
    }
    if (seen.insert(r.draw_id).second) merged.push_back(std::move(r));
  }
  std::sort(merged.begin(), merged.end(),
            [](const DrawRecord& a, const DrawRecord& b) { return order_key(a) > order_key(b); });
  DrawPage out;
  const bool more = merged.size() > limit || page->next.has_value();
  if (merged.size() > limit) merged.resize(limit);
  out.items = std::move(merged);
  if (more && !out.items.empty()) out.next = make_cursor(out.items.back());
  return out;
}

}  // namespace fairdraw::redis
