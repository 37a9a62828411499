// PgSink: clustered mode's durable record in PostgreSQL, with a writer thread doing
// idempotent group commits (the stream worker may deliver a row twice) and a small
// pool of connections for reads and the save_* calls.
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

namespace fairdraw {

struct PgSinkOptions {
  // postgresql://user:password@host:port/db?param=… (or libpq key=value). The password
  // never appears in an error detail.
  std::string url;
  std::size_t batch_max = 1024;  // rows taken from the queue per commit
  // 0: commit as soon as the writer is free (natural group commit). Otherwise
  // wait up to this long after the first queued row for the batch to fill.
  std::chrono::milliseconds max_batch_delay{0};
  std::size_t max_queue = 100000;  // appended and not yet acknowledged; beyond it append refuses
  std::size_t read_connections = 4;  // at most this many pooled connections (reads, save_*)
  // libpq counts whole seconds (rounded up here) and waits at least 2 s.
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds statement_timeout{5000};  // server-side, every statement
  // Bounds the wait for the migration lock and each migration (schema changes may be slow).
  std::chrono::milliseconds migration_timeout{std::chrono::minutes(5)};
  int commit_attempts = 10;                          // per batch, before its rows are refused
  std::chrono::milliseconds retry_backoff{50};       // doubled after each failed attempt…
  std::chrono::milliseconds max_retry_backoff{2000};  // …up to this
  // An idle writer checks its connection this often (and reconnects), so healthy()
  // follows the database even when no draws arrive.
  std::chrono::milliseconds health_check_interval{1000};
  std::string application_name = "fairdraw";  // unless the URL names one
};

class PgSink final : public Sink {
 public:
  // Connects, applies pending migrations (under an advisory lock, so instances
  // starting together apply each one once) and starts the writer thread.
  static Result<std::unique_ptr<PgSink>> open(PgSinkOptions options);

  ~PgSink() override;  // flush_and_stop()
  PgSink(const PgSink&) = delete;
  PgSink& operator=(const PgSink&) = delete;

  // Rows are committed in append order; a draw_id already stored is a success
  // (the row stays as first written). Retries with reconnects; ack(false) only
  // once commit_attempts are used up or for a row the database rejects outright.
  void append(DrawRecord record, Ack ack) override;
  void flush_and_stop() override;
  // The writer's connection works (checked on every commit and, when idle,
  // every health_check_interval).
  bool healthy() const override;
  SinkStats stats() const override;

  // What the last failed commit or connection attempt said, for logs (empty if none).
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
  // Clustered mode's copy of the record Redis holds (app/service.cpp): an epoch as the public
  // sees it (the seed only when `revealed`; a stored seed is never erased), and one row per
  // admin change of an activity (activity_changes). Durable when they return.
  Status save_public_epoch(const EpochRecord& epoch, bool revealed);
  Status save_activity_change(const StoredActivity& activity);
  Result<ActivityTotals> load_totals(std::string_view activity_id, std::int64_t since_ms,
                                     const AddUserCounts& add) override;
  Result<LiveDraws> load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                    std::size_t limit, const OnDraw& on_draw) override;

 private:
  struct Impl;
  explicit PgSink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairdraw
