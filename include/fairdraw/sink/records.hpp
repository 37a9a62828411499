// The rows of the durable record (DESIGN.md section 6), shared by the engine,
// the sinks and the HTTP handlers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fairdraw/engine/deck.hpp"

namespace fairdraw {

struct DrawRecord {
  std::string draw_id;  // ULID, 26 chars
  std::string activity_id;
  std::int64_t seq = 0;
  std::int64_t epoch = 0;
  std::int64_t slot = 0;
  std::string user_id;
  std::string idempotency_key;
  std::optional<std::string> candidate_id;  // deck's candidate; null for a deck miss
  std::optional<std::string> prize_id;      // what was won; null on every miss
  std::optional<std::string> prize_name;    // name at the time of the draw
  bool won = false;
  std::int64_t drawn_at_ms = 0;
};

struct DrawPage {
  std::vector<DrawRecord> items;
  std::optional<std::string> next;  // cursor for the next page, if any
};

struct EpochPrize {
  std::string id;
  std::uint32_t weight = 0;
};

struct EpochRecord {
  std::string activity_id;
  std::int64_t epoch = 0;
  Seed seed{};
  std::string commitment;  // hex(SHA-256(seed))
  std::vector<EpochPrize> prizes;
  std::uint32_t miss_weight = 0;
  std::uint64_t epoch_size = 0;              // W
  std::optional<std::int64_t> first_seq;     // null until started
  std::optional<std::int64_t> revealed_at_ms;  // set once over (or voided)
};

struct StoredActivity {
  std::string id;
  std::string config_json;  // the admin API's body, canonicalised by the app layer
  bool ended = false;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
};

// What recovery needs from the record of one activity (the per-user counts
// are handed over while they are read: see Sink::load_totals).
struct ActivityTotals {
  std::int64_t next_seq = 0;  // max(seq) + 1, or 0
  std::vector<std::pair<std::string, std::int64_t>> wins_by_prize;        // sorted by prize id
  std::vector<std::pair<std::int64_t, std::int64_t>> first_seq_by_epoch;  // (epoch, min seq), sorted
};

// What Sink::load_live_draws left out.
struct LiveDraws {
  std::size_t delivered = 0;
  // The newest drawn_at_ms among draws at or after since_ms that were not
  // delivered (beyond the limit); their keys must still be looked up in the sink.
  std::optional<std::int64_t> newest_left_out_ms;
};

}  // namespace fairdraw
