// Prometheus metrics (prometheus-cpp core, served by our own /metrics route):
// requests and latency by route and status, draws by outcome, and gauges read
// from the store, the sink and the server at scrape time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/engine/store.hpp"
#include "fairdraw/http/server.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::app {

struct SchedulerStats {
  std::string job;
  std::uint64_t runs = 0;
  std::uint64_t skipped = 0;
  double last_run_seconds = 0;
};

// Everything read at scrape time.
struct ScrapeInput {
  http::ServerStats server;
  unsigned io_threads = 0;
  SinkStats sink;
  StoreStats store;
  std::vector<ActivityView> activities;
  std::vector<SchedulerStats> scheduler;
  std::size_t pending_timers = 0;
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Thread-safe, cheap after the first call for a (route, method, status).
  void observe_request(std::string_view route, std::string_view method, int status,
                       double seconds);
  // outcome: "won", "miss", "replayed", or a refusal's problem type.
  void count_draw(std::string_view outcome);
  std::string render(const ScrapeInput& input);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairdraw::app
