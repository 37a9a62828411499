// The HTTP API of DESIGN.md section 3: one handler per endpoint behind the
// route table, CORS, admin authentication, and problem+json for every refusal.
// A plain function of the request (no sockets), so it is testable directly.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "fairdraw/app/config.hpp"
#include "fairdraw/app/metrics.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/engine/store.hpp"
#include "fairdraw/http/message.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::app {

struct ApiContext {
  Store& store;
  Sink& sink;
  Clock& clock;
  Metrics& metrics;
  const Config& config;
  // Runs a function on an io thread (draw completions arrive on the sink's thread).
  std::function<void(std::function<void()>)> post;
  std::function<std::string()> render_metrics;
};

class Api {
 public:
  explicit Api(ApiContext context);
  void handle(http::Request&& request, http::Responder respond);
  // Readiness turns false while the service drains for shutdown.
  void set_draining() { draining_.store(true); }

 private:
  ApiContext ctx_;
  std::atomic<bool> draining_{false};
};

// Exposed for tests: the Idempotency-Key header, bare or as a quoted string.
std::optional<std::string> parse_idempotency_key(std::string_view header_value);
// Constant-time check of "Bearer <token>" against the configured admin token.
bool admin_token_matches(std::string_view authorization, std::string_view admin_token);

}  // namespace fairdraw::app
