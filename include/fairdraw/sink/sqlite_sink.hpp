// SqliteSink: embedded mode's durable record in one SQLite file (WAL), with a
// writer thread doing group commits and a small pool of read-only connections.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fairdraw/result.hpp"
#include "fairdraw/sink/sink.hpp"
#include "fairdraw/sink/wal_checkpointer.hpp"

namespace fairdraw {

struct SqliteSinkOptions {
  // full: a commit is on disk (fsync) before its acks fire, so acknowledged
  // draws survive power loss. normal: they survive a process crash (kill -9)
  // but the last commits may be lost if the machine itself goes down.
  enum class Synchronous { full, normal };

  std::string path;  // a file; created with the schema if missing
  Synchronous synchronous = Synchronous::full;
  std::size_t batch_max = 1024;  // rows taken from the queue per commit
  // 0: commit as soon as the writer is free (natural group commit). Otherwise
  // wait up to this long after the first queued row for the batch to fill.
  std::chrono::milliseconds max_batch_delay{0};
  std::size_t max_queue = 100000;  // appended and not yet acknowledged; beyond it append refuses
  std::chrono::milliseconds busy_timeout{5000};
  std::size_t read_connections = 4;             // idle read-only connections kept open
  int commit_attempts = 4;                      // per batch, before its rows are refused
  std::chrono::milliseconds retry_backoff{25};  // doubled after each failed attempt
  // When the WAL is copied back into the file (its full_sync follows synchronous).
  WalCheckpointOptions checkpoint;
};

class SqliteSink final : public Sink {
 public:
  // Opens (or creates) the file, switches it to WAL, applies pending migrations
  // and starts the writer thread. Migration 002 rewrites the draws table of an
  // older file in one transaction (about 30-50 s and 6 CPU-s for 10^6 draws
  // here; the WAL grows to the new table's size meanwhile).
  static Result<std::unique_ptr<SqliteSink>> open(SqliteSinkOptions options);

  ~SqliteSink() override;  // flush_and_stop()
  SqliteSink(const SqliteSink&) = delete;
  SqliteSink& operator=(const SqliteSink&) = delete;

  void append(DrawRecord record, Ack ack) override;
  void flush_and_stop() override;
  bool healthy() const override;
  SinkStats stats() const override;

  // Declares that seqs below next_seq of the activity are settled (recorded, or
  // never to be), so the next row committed for it is next_seq. Without it the
  // writer starts from MAX(seq) + 1 in the file. Takes effect in append order;
  // clears a hole left by a refused row (the engine calls it after recovery).
  void set_next_seq(std::string activity_id, std::int64_t next_seq);

  // What the last failed commit or lane load said, for logs (empty if none).
  std::string last_error() const;

  Result<std::optional<DrawRecord>> find_draw(std::string_view draw_id) override;
  Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view activity_id,
                                                            std::string_view key) override;
  Result<DrawPage> activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                  std::size_t limit) override;
  Result<DrawPage> user_draws(std::string_view user_id, std::optional<std::string_view> activity_id,
                              std::optional<std::string_view> cursor, std::size_t limit) override;
  // The newest `limit` such draws, returned oldest first.
  Result<std::vector<DrawRecord>> draws_since(std::string_view activity_id, std::int64_t since_ms,
                                              std::size_t limit) override;
  Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(
      std::string_view activity_id, std::int64_t since_ms) override;

  Status save_activity(const StoredActivity& activity) override;
  Result<std::vector<StoredActivity>> load_activities() override;
  Status save_epoch(const EpochRecord& epoch) override;
  Result<std::vector<EpochRecord>> load_epochs(std::string_view activity_id) override;
  // Past 131,072 rows, reads the activity's rows in two halves on two
  // connections at once (the caller's thread and one more): `add` is then
  // called from both.
  Result<ActivityTotals> load_totals(std::string_view activity_id, std::int64_t since_ms,
                                     const AddUserCounts& add) override;
  Result<LiveDraws> load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                    std::size_t limit, const OnDraw& on_draw) override;

 private:
  struct Impl;
  explicit SqliteSink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairdraw
