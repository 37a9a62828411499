// What every Sink implementation shares: the user-draws cursor format, the
// epochs' prize list as JSON, and running an ack without letting it throw.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/sink/records.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::sink_common {

// The user_draws cursor: "<drawn_at_ms>.<seq>.<draw_id>" of the last row
// returned. Within one millisecond, seq orders one activity's draws as they
// were made (ULIDs of one millisecond are random, not ordered).
struct UserCursor {
  std::int64_t drawn_at_ms = 0;
  std::int64_t seq = 0;
  std::string draw_id;
};

std::string encode_user_cursor(const DrawRecord& last);
std::optional<UserCursor> decode_user_cursor(std::string_view cursor);
// 1..19 decimal digits, no sign.
std::optional<std::int64_t> parse_decimal(std::string_view digits);

// An epoch's prizes as stored: [{"id": ..., "weight": ...}].
std::string prizes_to_json(const std::vector<EpochPrize>& prizes);
std::optional<std::vector<EpochPrize>> prizes_from_json(const std::string& text);

// Runs an ack; an exception from it must not take the writer thread down.
void call_ack(Sink::Ack& ack, bool durable);

}  // namespace fairdraw::sink_common
