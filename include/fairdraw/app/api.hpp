// The HTTP API of DESIGN.md section 3: one handler per endpoint behind the
// route table, CORS, admin authentication, and problem+json for every refusal.
// A plain function of the request (no sockets), so it is testable directly.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fairdraw/app/config.hpp"
#include "fairdraw/app/jwt.hpp"
#include "fairdraw/app/rate_limiter.hpp"
#include "fairdraw/app/metrics.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/engine/store.hpp"
#include "fairdraw/http/message.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::app {

class AdminGuard;

struct ApiContext {
  Store& store;
  Sink& sink;
  Clock& clock;
  Metrics& metrics;
  const Config& config;
  // Runs a function on an io thread (draw completions arrive on the sink's thread).
  std::function<void(std::function<void()>)> post;
  std::function<std::string()> render_metrics;
  // Optional guards (null: off). Owned by the service.
  RateLimiter* user_limiter = nullptr;
  RateLimiter* address_limiter = nullptr;
  const TrustedProxies* trusted_proxies = nullptr;
  const JwtVerifier* jwt = nullptr;
  // Runs a function on a given io thread (a Request's io_lane); null: `post`.
  std::function<void(unsigned, std::function<void()>)> post_to{};
};

class Api {
 public:
  explicit Api(ApiContext context);
  void handle(http::Request&& request, http::Responder respond);
  // Readiness turns false while the service drains for shutdown.
  void set_draining() { draining_.store(true); }
  // Answers 503 to draws still waiting past http.request_timeout_ms (call it
  // periodically). The draw itself goes on: a retry with the same key gets
  // 409 while it is in flight, then its stored outcome.
  void expire_deadlines();

 private:
  struct Answer;
  struct PendingDraw;
  void finish(const Answer& answer, http::Response response);
  struct DrawAnswer {
    std::shared_ptr<PendingDraw> draw;
    Result<DrawOutcome> outcome;
  };
  void queue_answer(const std::shared_ptr<PendingDraw>& draw, Result<DrawOutcome> outcome);
  void answer_draws(unsigned lane);

  ApiContext ctx_;
  std::atomic<bool> draining_{false};
  std::shared_ptr<AdminGuard> admin_guard_;  // from config.auth.admin_*; null when off
  std::mutex pending_mutex_;
  // In deadline order, since every draw gets the same timeout.
  std::deque<std::weak_ptr<PendingDraw>> pending_;  // guarded by pending_mutex_
  // Draws with their outcome, waiting for their connection's io thread to
  // answer them: one queue per io lane (lane % kAnswerLanes).
  struct AnswerQueue {
    std::mutex mutex;
    std::vector<DrawAnswer> answers;  // guarded by mutex
    std::vector<DrawAnswer> spare;    // empty; guarded by mutex
  };
  static constexpr unsigned kAnswerLanes = 64;
  std::array<AnswerQueue, kAnswerLanes> answer_lanes_;
};

// Exposed for tests: the Idempotency-Key header, bare or as a quoted string.
std::optional<std::string> parse_idempotency_key(std::string_view header_value);
// Constant-time check of "Bearer <token>" against the configured admin token.
bool admin_token_matches(std::string_view authorization, std::string_view admin_token);

}  // namespace fairdraw::app
