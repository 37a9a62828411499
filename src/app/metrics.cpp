// Prometheus metrics: counters and histograms on the request path (label sets
// cached per thread, so the hot path is one atomic add), gauges set at scrape.
#include "fairdraw/app/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <mutex>
#include <unordered_map>

namespace fairdraw::app {

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::mutex families_mutex;  // Family::Add is itself locked; this guards first-use races of ours
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter().Name("fairdraw_http_requests_total")
          .Help("HTTP requests by route, method and status").Register(*registry);
  prometheus::Family<prometheus::Histogram>& latency =
      prometheus::BuildHistogram().Name("fairdraw_http_request_duration_seconds")
          .Help("HTTP request latency by route and status").Register(*registry);
  prometheus::Family<prometheus::Counter>& draws =
      prometheus::BuildCounter().Name("fairdraw_draws_total")
          .Help("Draw requests by outcome (won, miss, replayed, or the refusal type)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& gauges =
      prometheus::BuildGauge().Name("fairdraw_state")
          .Help("Service state read at scrape time, by name").Register(*registry);
  prometheus::Family<prometheus::Gauge>& stock =
      prometheus::BuildGauge().Name("fairdraw_stock_remaining")
          .Help("Remaining stock per activity and prize").Register(*registry);
  prometheus::Family<prometheus::Gauge>& scheduler_runs =
      prometheus::BuildGauge().Name("fairdraw_scheduler_runs")
          .Help("Runs of each scheduler job since start").Register(*registry);
  prometheus::Family<prometheus::Gauge>& scheduler_skips =
      prometheus::BuildGauge().Name("fairdraw_scheduler_skipped_ticks")
          .Help("Ticks skipped because the job's previous run was still going").Register(*registry);
  std::uint64_t generation = 0;  // identifies this instance in thread-local caches

  static const prometheus::Histogram::BucketBoundaries& buckets() {
    static const prometheus::Histogram::BucketBoundaries b = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    return b;
  }
};

namespace {
std::atomic<std::uint64_t> next_generation{1};

// A thread's cached children of the request families. Looked up by a linear
// scan comparing the status first: a thread sees a few dozen label sets at
// most, and the scan costs neither a key string nor a hash per request.
struct RequestSeries {
  int status;
  std::string route;
  std::string method;
  prometheus::Counter* count;
  prometheus::Histogram* latency;
};
}  // namespace

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
  impl_->generation = next_generation.fetch_add(1);
}
Metrics::~Metrics() = default;

void Metrics::observe_request(std::string_view route, std::string_view method, int status,
                              double seconds) {
  thread_local std::uint64_t cache_generation = 0;
  thread_local std::vector<RequestSeries> cache;
  if (cache_generation != impl_->generation) {
    cache.clear();
    cache_generation = impl_->generation;
  }
  const RequestSeries* series = nullptr;
  for (const RequestSeries& s : cache) {
    if (s.status == status && s.route == route && s.method == method) {
      series = &s;
      break;
    }
  }
  if (series == nullptr) {
    std::lock_guard lock(impl_->families_mutex);
    const std::map<std::string, std::string> labels = {
        {"route", std::string(route)}, {"method", std::string(method)},
        {"status", std::to_string(status)}};
    series = &cache.emplace_back(RequestSeries{status, std::string(route), std::string(method),
                                               &impl_->requests.Add(labels),
                                               &impl_->latency.Add(labels, Impl::buckets())});
  }
  series->count->Increment();
  series->latency->Observe(seconds);
}

void Metrics::count_draw(std::string_view outcome) {
  thread_local std::uint64_t cache_generation = 0;
  thread_local std::unordered_map<std::string, prometheus::Counter*> cache;
  if (cache_generation != impl_->generation) {
    cache.clear();
    cache_generation = impl_->generation;
  }
  auto it = cache.find(std::string(outcome));
  if (it == cache.end()) {
    std::lock_guard lock(impl_->families_mutex);
    auto* counter = &impl_->draws.Add({{"outcome", std::string(outcome)}});
    it = cache.emplace(std::string(outcome), counter).first;
  }
  it->second->Increment();
}

std::string Metrics::render(const ScrapeInput& in) {
  {
    std::lock_guard lock(impl_->families_mutex);
    auto set = [&](const char* name, double value) {
      impl_->gauges.Add({{"name", name}}).Set(value);
    };
    set("open_connections", static_cast<double>(in.server.open_connections));
    set("accepted_connections", static_cast<double>(in.server.accepted_connections));
    set("refused_connections", static_cast<double>(in.server.refused_connections));
    set("refused_per_address_connections", static_cast<double>(in.server.refused_per_address));
    set("write_timeouts", static_cast<double>(in.server.write_timeouts));
    set("read_timeouts", static_cast<double>(in.server.read_timeouts));
    set("idle_timeouts", static_cast<double>(in.server.idle_timeouts));
    set("in_flight_requests", static_cast<double>(in.server.in_flight_requests));
    set("bad_requests", static_cast<double>(in.server.bad_requests));
    set("io_threads", in.io_threads);
    set("in_flight_draws", static_cast<double>(in.store.in_flight_draws));
    set("draws_shed", static_cast<double>(in.store.draws_shed));
    set("idempotency_entries", static_cast<double>(in.store.idempotency_entries));
    set("idempotency_evicted_early", static_cast<double>(in.store.idempotency_evicted_early));
    set("live_tokens", static_cast<double>(in.store.live_tokens));
    set("epochs_prepared", static_cast<double>(in.store.epochs_prepared));
    set("epochs_built_on_draw_path", static_cast<double>(in.store.epochs_built_on_draw_path));
    set("sink_queue_depth", static_cast<double>(in.sink.queue_depth));
    set("sink_committed_rows", static_cast<double>(in.sink.committed_rows));
    set("sink_committed_batches", static_cast<double>(in.sink.committed_batches));
    set("sink_failed_batches", static_cast<double>(in.sink.failed_batches));
    set("sink_last_commit_seconds", in.sink.last_commit_seconds);
    set("sink_wal_pages", static_cast<double>(in.sink.wal_pages));
    set("sink_checkpoints_background", static_cast<double>(in.sink.checkpoints_background));
    set("sink_checkpoints_writer", static_cast<double>(in.sink.checkpoints_writer));
    set("sink_checkpoint_writer_seconds_max", in.sink.checkpoint_writer_seconds_max);
    set("pending_timers", static_cast<double>(in.pending_timers));
    for (const ActivityView& a : in.activities) {
      for (const PrizeView& p : a.prizes) {
        impl_->stock.Add({{"activity", a.id}, {"prize", p.prize.id}})
            .Set(static_cast<double>(p.remaining));
      }
    }
    for (const SchedulerStats& s : in.scheduler) {
      impl_->scheduler_runs.Add({{"job", s.job}}).Set(static_cast<double>(s.runs));
      impl_->scheduler_skips.Add({{"job", s.job}}).Set(static_cast<double>(s.skipped));
    }
  }
  prometheus::TextSerializer serializer;
  return serializer.Serialize(impl_->registry->Collect());
}

}  // namespace fairdraw::app
