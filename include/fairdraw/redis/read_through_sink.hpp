// ReadThroughSink: the clustered mode's Sink as the API sees it. Writes and every other read
// go to PostgreSQL (the wrapped sink); the reads of single draws and of a user's draws also
// find the draws that are in Redis but not yet persisted by the stream worker (DESIGN.md:
// "Reads come from the database, and from Redis for results not yet persisted").
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "fairdraw/redis/redis_store.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::redis {

class ReadThroughSink final : public Sink {
 public:
  // Both must outlive it.
  ReadThroughSink(Sink& database, RedisStore& store) : db_(database), store_(store) {}

  // GET /draws/{id}: the database first; when it has no such draw (or cannot answer), Redis.
  Result<std::optional<DrawRecord>> find_draw(std::string_view draw_id) override;
  // GET /users/{id}/draws: the database's page merged with the user's unpersisted draws, in
  // the database's order (drawn_at_ms, seq, draw_id, all descending), without duplicates;
  // the cursor stays the database's format, so every page follows from the last one shown.
  Result<DrawPage> user_draws(std::string_view user_id, std::optional<std::string_view> activity_id,
                              std::optional<std::string_view> cursor, std::size_t limit) override;

  void append(DrawRecord record, Ack ack) override { db_.append(std::move(record), std::move(ack)); }
  void flush_and_stop() override { db_.flush_and_stop(); }
  bool healthy() const override { return db_.healthy(); }
  SinkStats stats() const override { return db_.stats(); }
  Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view activity_id,
                                                            std::string_view key) override {
    return db_.find_by_idempotency_key(activity_id, key);
  }
  Result<DrawPage> activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                  std::size_t limit) override {
    return db_.activity_draws(activity_id, after_seq, limit);
  }
  Result<std::vector<DrawRecord>> draws_since(std::string_view activity_id, std::int64_t since_ms,
                                              std::size_t limit) override {
    return db_.draws_since(activity_id, since_ms, limit);
  }
  Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(std::string_view activity_id,
                                                                              std::int64_t since_ms) override {
    return db_.user_counts_since(activity_id, since_ms);
  }
  Status save_activity(const StoredActivity& activity) override { return db_.save_activity(activity); }
  Result<std::vector<StoredActivity>> load_activities() override { return db_.load_activities(); }
  Status save_epoch(const EpochRecord& epoch) override { return db_.save_epoch(epoch); }
  Result<std::vector<EpochRecord>> load_epochs(std::string_view activity_id) override {
    return db_.load_epochs(activity_id);
  }
  Result<ActivityTotals> load_totals(std::string_view activity_id, std::int64_t since_ms,
                                     const AddUserCounts& add) override {
    return db_.load_totals(activity_id, since_ms, add);
  }
  Result<LiveDraws> load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                    std::size_t limit, const OnDraw& on_draw) override {
    return db_.load_live_draws(activity_id, since_ms, limit, on_draw);
  }

 private:
  Sink& db_;
  RedisStore& store_;
};

}  // namespace fairdraw::redis
