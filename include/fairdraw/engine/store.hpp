// The store: where stock, sequence, quotas and idempotency live. Embedded mode:
// DrawEngine, in-process atomics. Clustered mode: Redis (one Lua script per
// draw) behind the same interface. The HTTP handlers only see this interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fairdraw/engine/activity.hpp"
#include "fairdraw/inline_function.hpp"
#include "fairdraw/result.hpp"
#include "fairdraw/sink/records.hpp"

namespace fairdraw {

struct DrawCommand {
  std::string activity_id;
  std::string user_id;
  std::string idempotency_key;
  std::int64_t now_ms = 0;
};

struct DrawOutcome {
  DrawRecord record;
  bool replayed = false;  // an earlier draw with the same key and body
};

// Move-only; a lambda of up to 32 bytes (the API's: `this` and a shared_ptr)
// is kept inline, so handing a draw its callback allocates nothing.
using DrawCallback = InlineFunction<void(Result<DrawOutcome>), 32>;

enum class ActivityStatus { scheduled, active, ended };
const char* to_string(ActivityStatus status);

// Helpers every Store shares, so the modes cannot drift apart:
// the status an activity has at now_ms (ended by the admin API, or by its time window),
ActivityStatus activity_status_at(const ActivityConfig& config, bool ended, std::int64_t now_ms);
// and RFC 4648 base64url without padding, the text of an issued token's random bytes.
std::string encode_base64url(std::span<const std::uint8_t> bytes);

struct PrizeView {
  Prize prize;
  std::int64_t remaining = 0;  // stock - wins, never below 0
};

struct ActivityView {
  std::string id;
  ActivityConfig config;
  ActivityStatus status = ActivityStatus::active;
  std::uint64_t epoch_size = 0;
  std::vector<PrizeView> prizes;
  std::int64_t draws = 0;  // sequence numbers taken so far
};

struct EpochView {
  EpochRecord record;  // seed is meaningful only when revealed
  bool revealed = false;
  std::optional<std::int64_t> first_seq;
};

struct IssuedToken {
  std::string token;
  std::int64_t expires_at_ms = 0;
};

struct StoreStats {
  std::uint64_t in_flight_draws = 0;
  std::uint64_t draws_shed = 0;  // refused at once: too many draws in flight (clustered mode)
  std::size_t idempotency_entries = 0;
  std::uint64_t idempotency_evicted_early = 0;
  std::size_t live_tokens = 0;
  std::uint64_t epochs_prepared = 0;
  std::uint64_t epochs_built_on_draw_path = 0;  // preparation fell behind
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs `done` exactly once, on any thread, when the draw is durable or refused.
  virtual void draw(DrawCommand command, DrawCallback done) = 0;

  virtual Result<ActivityView> get_activity(const std::string& id, std::int64_t now_ms) = 0;
  virtual std::vector<ActivityView> list_activities(std::int64_t now_ms) = 0;
  // Creates (true) or replaces (false) an activity. A changed deck ends the epoch.
  virtual Result<bool> put_activity(const std::string& id, ActivityConfig config,
                                    std::int64_t now_ms) = 0;
  virtual Status end_activity(const std::string& id, std::int64_t now_ms) = 0;
  virtual Result<std::vector<EpochView>> fairness(const std::string& id) = 0;

  virtual Result<IssuedToken> issue_token(std::int64_t now_ms) = 0;

  // Background work, called by the scheduler.
  virtual void prepare_epochs() = 0;
  virtual void expire(std::int64_t now_ms) = 0;

  virtual bool ready() const = 0;
  virtual StoreStats stats() const = 0;
};

}  // namespace fairdraw
