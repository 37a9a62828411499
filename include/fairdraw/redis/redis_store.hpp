// The clustered mode's Store: stock, sequence, quotas, idempotency and epochs live in Redis,
// every draw decided by one atomic Lua script, every result XADDed to the activity's stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fairdraw/clock.hpp"
#include "fairdraw/engine/activity.hpp"
#include "fairdraw/engine/store.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/redis/cluster.hpp"
#include "fairdraw/redis/connection.hpp"
#include "fairdraw/result.hpp"

namespace fairdraw::redis {

struct RedisStoreOptions {
  // One server, or the seed nodes of a Redis Cluster (redis.seeds): see RedisRouter.
  RedisOptions redis;
  // Draws are spread over these (pipelined), per master; admin calls and epoch preparation
  // use one more per master, so that a large deck upload never queues in front of draws.
  // One by default: every draw in flight then goes out in one write and Redis reads the
  // batch with one read (per-command overhead and syscalls on both sides are per batch).
  // Each holds at least max_in_flight_draws / draw_connections commands, so that the
  // in-flight bound below, not a full pipeline, is what refuses draws.
  std::size_t draw_connections = 1;
  // Draws sent to Redis and not yet answered, at most; past it a draw fails at once with
  // `unavailable` (503 + Retry-After), counted in StoreStats::draws_shed.
  std::uint64_t max_in_flight_draws = 4096;
  std::int64_t idempotency_ttl_ms = 86'400'000;
  bool require_token = false;
  std::int64_t token_ttl_ms = 600'000;
  std::string zoneinfo_dir = "/usr/share/zoneinfo";
  // Keep decks ready for at least this many draws ahead (at least one epoch, at most 15).
  std::uint64_t prepare_ahead_draws = 8192;
  // The activity's stored form (the admin API's JSON); the store knows no JSON.
  std::function<std::string(const ActivityConfig&)> encode_config;
  std::function<Result<ActivityConfig>(const std::string&)> decode_config;
};

// Redis keys (all of an activity under the hash tag {A}, so one activity is one Cluster slot):
//   fd:{A}:cfg          hash: json, version, ended, deck_version, created_at_ms, updated_at_ms,
//                       starts_at_ms, ends_at_ms, max_draws_per_user, max_draws_per_user_per_day,
//                       prize_count, prize_id:<i>, prize_stock:<i>, prize_name:<i>
//   fd:{A}:seq          next sequence number (INCR)
//   fd:{A}:wins         hash prize_id -> wins
//   fd:{A}:users        hash user_id -> draws in total
//   fd:{A}:day:<d>      hash user_id -> draws on local day d (expires 2 days after its first)
//   fd:{A}:idem:<key>   the stored result of the draw with that key, MessagePack (PX: idempotency TTL;
//                       a hash of the fields when written by versions before 2026-11-25)
//   fd:{A}:stream       one entry per draw, for the persistence worker; fields: draw_id,
//                       activity_id, seq, epoch, slot, user_id, idempotency_key, won ("0"/"1"),
//                       drawn_at_ms, and when not null candidate_id, prize_id, prize_name.
//                       Never trimmed here: only the worker may drop what it has persisted.
//   fd:{A}:chain        hash: first_epoch, origin_seq, size (W), deck_version, last_epoch
//   fd:{A}:epoch:<e>    hash: seed (hex), commitment, prizes (JSON [{"id","weight"}]),
//                       miss_weight, size, deck_version, first_seq, revealed_at_ms, corrupt
//   fd:{A}:deck:<e>     the shuffled deck, 2 bytes big-endian per slot, 0xFFFF = miss
//   fd:{A}:unpersisted  hash draw_id -> stream entry id, and fd:{A}:unpersisted:byuser
//                       zset of '<user_id>\0<draw_id>' (scores 0: by user, then time): draws not
//                       yet persisted, for reads (written by the draw script, removed by the
//                       worker after its XACK). Versions before 2026-11-25 indexed users in
//                       fd:{A}:unpersisted:u:<user> (draw ids by drawn_at_ms): still read, cleaned
//   fd:activities       set of activity ids (one key: its own slot; only ever read or
//                       written alone, by SADD / SMEMBERS)
//   fd:tokens:<token>   expires_at_ms, PX = token TTL (POST /tokens); one key per token, each
//                       in its own slot, consumed alone by GETDEL before the draw script
//
// Redis Cluster: every command and script names keys of one slot only (the activity's, or
// one global key alone), so no CROSSSLOT can occur; RedisRouter sends each to its master.
//
// Threads: draw() never blocks; its callback runs exactly once on an io thread of `io`.
// Every other call blocks until Redis answers (bounded by the connection's timeouts), so it
// must not be made from a thread running `io`: give the store an io_context of its own.
class RedisStore final : public Store {
 public:
  RedisStore(boost::asio::io_context& io, RedisStoreOptions options, Clock& clock, Entropy& entropy);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  void draw(DrawCommand command, DrawCallback done) override;
  Result<ActivityView> get_activity(const std::string& id, std::int64_t now_ms) override;
  std::vector<ActivityView> list_activities(std::int64_t now_ms) override;
  Result<bool> put_activity(const std::string& id, ActivityConfig config,
                            std::int64_t now_ms) override;
  Status end_activity(const std::string& id, std::int64_t now_ms) override;
  Result<std::vector<EpochView>> fairness(const std::string& id) override;
  Result<IssuedToken> issue_token(std::int64_t now_ms) override;
  void prepare_epochs() override;
  void expire(std::int64_t now_ms) override;
  bool ready() const override;
  StoreStats stats() const override;
  // Draws in Redis not yet persisted by the stream worker (the read index the draw script
  // writes, cleaned by the worker): by draw id (every activity is asked), and a user's: per
  // activity every draw made at `at_or_before_ms` (a page cursor's millisecond), then the
  // newest `limit` before it (all of them before any cursor), plus those sharing the last
  // one's millisecond; unordered. Blocking, as the other reads.
  Result<std::optional<DrawRecord>> find_unpersisted_draw(const std::string& draw_id);
  Result<std::vector<DrawRecord>> unpersisted_user_draws(const std::string& user_id,
                                                         const std::optional<std::string>& activity_id,
                                                         std::size_t limit,
                                                         std::optional<std::int64_t> at_or_before_ms = std::nullopt);

  // Draws refused because max_in_flight_draws were in flight.
  std::uint64_t draws_shed() const;
  // The router of the draws (slot map, redirects), for tests and metrics.
  RedisRouterStats router_stats() const;

  // Makes sure epoch `epoch` of the activity's current chain has its seed and deck in Redis,
  // creating them or verifying another instance's (what prepare_epochs does for each epoch).
  Status prepare_epoch(const std::string& id, std::int64_t epoch);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace fairdraw::redis
