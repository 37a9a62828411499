// Shared harness of the Api fuzz targets: a real DrawEngine + SqliteSink in a temp dir, one call through Api::handle, and the response oracles.
#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "fairdraw/app/api.hpp"
#include "fairdraw/app/config.hpp"
#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/app/log.hpp"
#include "fairdraw/app/metrics.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/engine/draw_engine.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/http/message.hpp"
#include "fairdraw/sink/sqlite_sink.hpp"

namespace fairdraw::fuzz {

// Fixed, so that time-dependent answers (windows, ts_ms skew, token expiry) reproduce.
inline constexpr std::int64_t kNowMs = 1'700'000'000'000;
inline constexpr std::string_view kAdminToken = "fuzz-admin-token";
inline constexpr std::string_view kActivityId = "a";
// A draw is answered after a SQLite commit on the sink's thread; far more than that means a lost answer.
inline constexpr std::chrono::seconds kAnswerWait{5};

// Every oracle failure goes through here: a message libFuzzer shows above the stack, then abort.
[[noreturn]] inline void fail(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "\n==== fairdraw fuzz oracle: %.*s\n%.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(detail.size()), detail.data());
  std::fflush(stderr);
  std::abort();
}

// Oracles for known, reported findings can be switched off while their fix is
// pending: FAIRDRAW_FUZZ_IGNORE=id1,id2 (ids are in brackets in the messages).
inline bool ignored(std::string_view id) {
  static const std::string list = [] {
    const char* v = std::getenv("FAIRDRAW_FUZZ_IGNORE");
    return "," + std::string(v != nullptr ? v : "") + ",";
  }();
  return list.find("," + std::string(id) + ",") != std::string::npos;
}

// FAIRDRAW_FUZZ_TRACE=1: one stderr line per answer, to see what an input does.
inline void trace(std::string_view what, int status) {
  static const bool on = std::getenv("FAIRDRAW_FUZZ_TRACE") != nullptr;
  if (on) std::fprintf(stderr, "fuzz: %.*s -> %d\n", static_cast<int>(what.size()), what.data(), status);
}

inline std::string describe(const http::Response& r) {
  std::string out = "status " + std::to_string(r.status) + "\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\n";
  out += "\n" + r.body.substr(0, 2000);
  return out;
}

// The problem types of DESIGN.md section 3 and their statuses.
inline const std::map<std::string, int>& problem_types() {
  static const std::map<std::string, int> types = {
      {"invalid_request", 400}, {"clock_skew", 400}, {"invalid_token", 400},
      {"method_not_allowed", 405}, {"request_timeout", 408}, {"uri_too_long", 414},
      {"headers_too_large", 431}, {"unauthorized", 401}, {"forbidden", 403},
      {"activity_not_found", 404}, {"draw_not_found", 404}, {"not_found", 404},
      {"activity_not_active", 409}, {"request_in_flight", 409}, {"payload_too_large", 413},
      {"unsupported_media_type", 415}, {"idempotency_key_reused", 422}, {"quota_exhausted", 429},
      {"rate_limited", 429}, {"unavailable", 503}};
  return types;
}

inline bool allowed_status(int status) {
  if (status == 200 || status == 201 || status == 204) return true;
  for (const auto& [type, s] : problem_types()) {
    if (s == status) return true;
  }
  return false;
}

// DESIGN.md section 3: the status is in the table (or 200/201/204), every
// error is RFC 9457 problem+json whose type matches its status, and the
// headers the table promises are there.
inline void check_response(const http::Response& r) {
  if (!allowed_status(r.status)) fail("status not in DESIGN.md section 3", describe(r));
  if (r.status >= 400) {
    if (r.header("content-type") != std::string_view("application/problem+json")) {
      fail("error without Content-Type: application/problem+json", describe(r));
    }
    const auto body = nlohmann::json::parse(r.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) fail("problem body is not a JSON object", describe(r));
    const auto type = body.find("type");
    if (type == body.end() || !type->is_string()) fail("problem without a string type", describe(r));
    const auto known = problem_types().find(type->get<std::string>());
    if (known == problem_types().end()) fail("problem type not in DESIGN.md", describe(r));
    if (known->second != r.status) fail("problem type does not match the status", describe(r));
    const auto status = body.find("status");
    if (status == body.end() || !status->is_number_integer() || status->get<int>() != r.status) {
      fail("problem status member differs from the HTTP status", describe(r));
    }
    const auto title = body.find("title");
    if (title == body.end() || !title->is_string() || title->get<std::string>().empty()) {
      fail("problem without a title", describe(r));
    }
    for (const char* optional : {"detail", "instance"}) {
      if (auto it = body.find(optional); it != body.end() && !it->is_string()) {
        fail("problem member is not a string", describe(r));
      }
    }
    if (r.status == 405 && !r.header("allow")) fail("405 without Allow", describe(r));
    if (r.status == 503 && !r.header("retry-after")) fail("503 without Retry-After", describe(r));
    if (r.status == 401 && !r.header("www-authenticate")) fail("401 without WWW-Authenticate", describe(r));
  } else if (r.status != 204 && r.header("content-type") == std::string_view("application/json")) {
    const auto body = nlohmann::json::parse(r.body, nullptr, false);
    if (body.is_discarded()) fail("2xx application/json body is not JSON", describe(r));
  }
}

// The service's state that outlives one input: engine and sink, as in production.
// Metrics and Api are made per call (see call()).
class World {
 public:
  explicit World(std::string admin_token) {
    config_.admin_token = std::move(admin_token);
    config_.draw.require_token = false;
    // Small bounds keep memory flat over millions of inputs (and reach the eviction paths).
    config_.draw.max_tokens = 256;
    config_.draw.idempotency_capacity = 4096;
    build();
  }

  ~World() { teardown(); }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // Sends one request through a fresh Api and returns its single answer;
  // aborts if the Responder is called twice, dropped uncalled, or not called in time.
  http::Response call(http::Request&& request) {
    restore_baseline();
    // Fresh per call, so an input's answers (GET /metrics included) do not
    // depend on the counters of every input before it.
    app::Metrics metrics;
    app::Api api(app::ApiContext{
        *engine_, *sink_, clock_, metrics, config_,
        // The production post() hops to an io thread; running inline keeps the
        // completion on the sink's thread, which is just another thread to the Api.
        [](std::function<void()> fn) { fn(); },
        [this, &metrics] {
          app::ScrapeInput in;
          in.sink = sink_->stats();
          in.store = engine_->stats();
          in.activities = engine_->list_activities(clock_.now_ms());
          return metrics.render(in);
        }});

    auto answer = std::make_shared<Answer>();
    // The guard lives as long as any copy of the Responder: when the last copy
    // goes without a call, the answer was dropped.
    auto guard = std::make_shared<DropGuard>(answer);
    const std::string what = request.method + " " + request.target;
    // The server turns a throwing handler into a 500, which DESIGN.md has no row for.
    try {
      api.handle(std::move(request), [answer, guard](http::Response r) {
        std::lock_guard lock(answer->mutex);
        if (++answer->calls > 1) fail("Responder called twice", describe(r));
        answer->response = std::move(r);
        answer->cv.notify_all();
      });
    } catch (const std::exception& e) {
      fail("Api::handle threw", what + "\n" + e.what());
    } catch (...) {
      fail("Api::handle threw a non-std exception", what);
    }
    guard.reset();

    std::unique_lock lock(answer->mutex);
    if (!answer->cv.wait_for(lock, kAnswerWait, [&] { return answer->calls > 0 || answer->dropped; })) {
      fail("Responder not called within 5 s", what);
    }
    if (answer->calls == 0) fail("Responder dropped without being called", what);
    http::Response response = std::move(answer->response);
    lock.unlock();

    // The server's 20 ms deadline sweep and the scheduler's jobs, once per call:
    // a finished draw must not be answered again (the Responder aborts if it is).
    api.expire_deadlines();
    engine_->prepare_epochs();
    engine_->expire(clock_.now_ms());
    // The draw's completion may still be unwinding on the sink's thread and
    // touching the Api (metrics); wait for its Responder copy to be released.
    wait_released(answer);
    trace(what, response.status);
    check_response(response);
    return response;
  }

 private:
  struct Answer {
    std::mutex mutex;
    std::condition_variable cv;
    int calls = 0;
    bool dropped = false;
    bool released = false;
    http::Response response;
  };
  struct DropGuard {
    std::shared_ptr<Answer> answer;
    explicit DropGuard(std::shared_ptr<Answer> a) : answer(std::move(a)) {}
    DropGuard(const DropGuard&) = delete;
    DropGuard& operator=(const DropGuard&) = delete;
    ~DropGuard() {
      std::lock_guard lock(answer->mutex);
      if (answer->calls == 0) answer->dropped = true;
      answer->released = true;
      answer->cv.notify_all();
    }
  };

  static void wait_released(const std::shared_ptr<Answer>& answer) {
    std::unique_lock lock(answer->mutex);
    if (!answer->cv.wait_for(lock, kAnswerWait, [&] { return answer->released; })) {
      fail("Responder still held 5 s after its answer (a pending draw never finished)");
    }
  }

  static ActivityConfig baseline() {
    ActivityConfig c;
    c.name = "Fuzz activity";
    c.time_zone = "UTC";
    c.max_draws_per_user = 3;
    c.max_draws_per_user_per_day = 2;
    c.miss_weight = 2;
    c.prizes.push_back(Prize{"p", "Plenty", 1, 1'000'000'000});
    c.prizes.push_back(Prize{"q", "Rare", 1, 1});  // runs out: the stock-out path
    return c;
  }

  void build() {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') base = t;
    std::string tmpl = base + "/fairdraw-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed", tmpl);
    dir_ = tmpl;
    SqliteSinkOptions options;
    options.path = dir_ + "/fuzz.db";
    options.synchronous = SqliteSinkOptions::Synchronous::normal;  // no fsync per draw: speed
    auto sink = SqliteSink::open(options);
    if (!sink.ok()) fail("cannot open the SQLite sink", sink.error().detail);
    sink_ = std::move(sink.value());

    DrawEngineOptions engine_options;
    engine_options.idempotency_capacity = config_.draw.idempotency_capacity;
    engine_options.require_token = config_.draw.require_token;
    engine_options.max_tokens = config_.draw.max_tokens;
    engine_options.prepare_ahead_draws = 16;
    engine_options.encode_config = [](const ActivityConfig& a) { return app::activity_config_json(a).dump(); };
    engine_options.decode_config = [](const std::string& text) -> Result<ActivityConfig> {
      auto parsed = nlohmann::json::parse(text, nullptr, false);
      if (parsed.is_discarded()) return make_error(ErrorKind::internal, "stored activity is not JSON");
      return app::parse_activity(parsed);
    };
    engine_ = std::make_unique<DrawEngine>(std::move(engine_options), *sink_, clock_, entropy_);
    if (auto recovered = engine_->recover(); !recovered.ok()) fail("recover failed", recovered.error().detail);
    if (auto put = engine_->put_activity(std::string(kActivityId), baseline(), kNowMs); !put.ok()) {
      fail("cannot create the baseline activity", put.error().detail);
    }
  }

  void teardown() {
    engine_.reset();
    if (sink_) sink_->flush_and_stop();
    sink_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Every input starts with activity "a" as configured, so most inputs behave
  // alike whatever ran before (stock, quotas and keys still carry over). An
  // input that ended "a" for good (DELETE) costs a fresh engine and sink.
  void restore_baseline() {
    static const std::string wanted = app::activity_config_json(baseline()).dump();
    auto view = engine_->get_activity(std::string(kActivityId), kNowMs);
    if (view.ok() && app::activity_config_json(view->config).dump() == wanted &&
        view->status == ActivityStatus::active) {
      return;
    }
    if (engine_->put_activity(std::string(kActivityId), baseline(), kNowMs).ok()) return;
    teardown();
    build();
  }

  ManualClock clock_{kNowMs};
  FixedEntropy entropy_{42};
  app::Config config_;
  std::string dir_;
  std::unique_ptr<SqliteSink> sink_;
  std::unique_ptr<DrawEngine> engine_;
};

// Quiet logs (the fuzzer runs millions of requests) and a stable environment.
inline void init_process() {
  app::log::setup("error");
}

}  // namespace fairdraw::fuzz
