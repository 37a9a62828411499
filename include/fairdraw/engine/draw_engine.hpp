// The embedded store: every draw decided in-process with atomics (DESIGN.md
// section 2), every result made durable through the Sink before it is
// acknowledged, and the whole state rebuilt from the Sink on start.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "fairdraw/clock.hpp"
#include "fairdraw/engine/idempotency.hpp"
#include "fairdraw/engine/shared_slot.hpp"
#include "fairdraw/engine/store.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw {

struct DrawEngineOptions {
  std::size_t idempotency_capacity = 262144;
  std::int64_t idempotency_ttl_ms = 86'400'000;
  bool require_token = false;
  std::int64_t token_ttl_ms = 600'000;
  std::size_t max_tokens = 1'000'000;
  // Keep shuffled decks ready for at least this many draws ahead (at least one epoch).
  std::uint64_t prepare_ahead_draws = 8192;
  // Draws waiting for the record beyond this get 503 before taking a seq: a
  // seq the sink would refuse (its queue full) would block the activity.
  std::uint64_t max_in_flight_draws = 50000;
  std::string zoneinfo_dir = "/usr/share/zoneinfo";
  // The activity's stored form (the admin API's JSON); the engine knows no JSON.
  std::function<std::string(const ActivityConfig&)> encode_config;
  std::function<Result<ActivityConfig>(const std::string&)> decode_config;
};

class DrawEngine final : public Store {
 public:
  DrawEngine(DrawEngineOptions options, Sink& sink, Clock& clock, Entropy& entropy);
  ~DrawEngine() override;
  DrawEngine(const DrawEngine&) = delete;
  DrawEngine& operator=(const DrawEngine&) = delete;

  // Rebuilds sequence, stock, quotas and epochs from the sink. Call once,
  // before serving. The live idempotency keys are restored on a thread of their
  // own after it returns; meanwhile a key not found in memory is looked up in
  // the sink, so a replay answers the same either way.
  Status recover();

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

 private:
  struct Activity;
  struct Segment;
  struct EpochChain;
  struct EpochDeck;
  struct Tokens;
  struct InFlight;
  class InFlightPool;
  using Registry = std::unordered_map<std::string, std::shared_ptr<Activity>>;

  std::shared_ptr<Activity> find(const std::string& id) const;
  void finish_draw(const std::shared_ptr<Activity>& act, const std::shared_ptr<Segment>& seg,
                   std::int64_t seq, DrawCommand&& command,
                   IdemEntry* entry, DrawCallback&& done);
  std::shared_ptr<const EpochDeck> deck_for(Activity& act, EpochChain& chain, std::int64_t epoch);
  Status prepare_one_locked(Activity& act, EpochChain& chain);
  Status close_chain_locked(Activity& act, const Segment& old_segment, std::int64_t boundary,
                            std::int64_t now_ms);
  Result<std::shared_ptr<EpochChain>> new_chain_locked(Activity& act, const ActivityConfig& config,
                                                       std::int64_t origin_seq);
  std::shared_ptr<Segment> make_segment(Activity& act, std::shared_ptr<const ActivityConfig> config,
                                        std::shared_ptr<EpochChain> chain, std::int64_t base_seq,
                                        bool ended);
  Status recover_activity(const StoredActivity& stored);
  Result<LiveDraws> restore_live_keys(const std::string& activity_id, std::int64_t now_ms);
  ActivityView view_of(const Activity& act, std::int64_t now_ms) const;

  DrawEngineOptions options_;
  Sink& sink_;
  Clock& clock_;
  Entropy& entropy_;
  IdempotencyTable idempotency_;
  std::unique_ptr<Tokens> tokens_;
  std::shared_ptr<InFlightPool> in_flight_pool_;

  mutable std::mutex registry_mutex_;  // writers of registry_ only
  SharedSlot<const Registry> registry_;
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<std::uint64_t> epochs_prepared_{0};
  std::atomic<std::uint64_t> epochs_built_on_draw_path_{0};
  std::atomic<bool> sink_failed_{false};
  // Last: joined first on destruction, while all it restores into still lives.
  std::jthread live_keys_restore_;
};

}  // namespace fairdraw
