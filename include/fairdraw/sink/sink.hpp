// The sink: the durable record of every draw, plus activities and epochs.
// Embedded mode: SqliteSink (group commit). Clustered mode: PostgreSQL behind
// the same interface. Reads may block briefly; append never blocks.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/inline_function.hpp"
#include "fairdraw/result.hpp"
#include "fairdraw/sink/records.hpp"

namespace fairdraw {

struct SinkStats {
  std::size_t queue_depth = 0;         // appended, not yet committed
  std::uint64_t committed_rows = 0;
  std::uint64_t committed_batches = 0;
  std::uint64_t failed_batches = 0;
  double last_commit_seconds = 0;       // duration of the last commit
  // SQLite only (zero elsewhere): see WalCheckpointer.
  std::int64_t wal_pages = 0;
  std::uint64_t checkpoints_background = 0;
  std::uint64_t checkpoints_writer = 0;
  double checkpoint_writer_seconds_max = 0;  // the longest the writer's commits waited for one
};

class Sink {
 public:
  virtual ~Sink() = default;

  // Called once the record is durable (true) or can never be (false). Runs on
  // the sink's writer thread: keep it short (post elsewhere for real work).
  // Move-only; a lambda of up to 32 bytes is kept inline (no allocation).
  using Ack = InlineFunction<void(bool durable), 32>;

  // Queues a draw for the next group commit. SqliteSink (embedded mode, where
  // the engine takes seqs in memory) commits the rows of one activity in seq
  // order and only as a contiguous prefix, so the record never has a gap even
  // after kill -9. PgSink (clustered mode, where Redis assigns seqs and the
  // stream redelivers) keeps append order and ignores a row already stored.
  virtual void append(DrawRecord record, Ack ack) = 0;

  // Commits everything queued, then stops the writer. Idempotent.
  virtual void flush_and_stop() = 0;
  virtual bool healthy() const = 0;
  virtual SinkStats stats() const = 0;

  virtual Result<std::optional<DrawRecord>> find_draw(std::string_view draw_id) = 0;
  virtual Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view activity_id,
                                                                    std::string_view key) = 0;
  // Audit trail: draws with seq > after_seq, in seq order.
  virtual Result<DrawPage> activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                          std::size_t limit) = 0;
  // A user's draws, newest first; `cursor` is the `next` of the previous page.
  virtual Result<DrawPage> user_draws(std::string_view user_id,
                                      std::optional<std::string_view> activity_id,
                                      std::optional<std::string_view> cursor, std::size_t limit) = 0;
  // Draws of an activity made at or after since_ms (rebuilds live idempotency keys).
  virtual Result<std::vector<DrawRecord>> draws_since(std::string_view activity_id,
                                                      std::int64_t since_ms, std::size_t limit) = 0;
  // Per-user draw counts at or after since_ms (rebuilds per-day quotas).
  virtual Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(
      std::string_view activity_id, std::int64_t since_ms) = 0;

  // Durable when they return.
  virtual Status save_activity(const StoredActivity& activity) = 0;
  virtual Result<std::vector<StoredActivity>> load_activities() = 0;
  virtual Status save_epoch(const EpochRecord& epoch) = 0;  // insert or replace
  virtual Result<std::vector<EpochRecord>> load_epochs(std::string_view activity_id) = 0;

  // Recovery. Per-user counts are not returned but handed to `add` as they are
  // read, as (user_id, draws, draws at or after since_ms): a user may come
  // several times (the counts add up), from several threads at once, in no
  // particular order. Nothing of them is kept once `add` returns.
  using AddUserCounts =
      std::function<void(std::string_view user_id, std::int64_t draws, std::int64_t draws_since)>;
  virtual Result<ActivityTotals> load_totals(std::string_view activity_id, std::int64_t since_ms,
                                             const AddUserCounts& add) = 0;
  // Recovery of live idempotency keys: the activity's draws at or after
  // since_ms among its last `limit` seqs, handed to on_draw one at a time in seq
  // order (the record is reused for the next one). Every other draw at or
  // after since_ms is counted in the answer's newest_left_out_ms.
  using OnDraw = std::function<void(const DrawRecord& record)>;
  virtual Result<LiveDraws> load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                            std::size_t limit, const OnDraw& on_draw) = 0;
};

}  // namespace fairdraw
