// Start-up, serving and graceful shutdown of the whole service.
#include "fairdraw/app/service.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "fairdraw/app/api.hpp"
#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/app/log.hpp"
#include "fairdraw/app/metrics.hpp"
#include "fairdraw/app/scheduler.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/engine/draw_engine.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/http/server.hpp"
#include "fairdraw/redis/read_through_sink.hpp"
#include "fairdraw/redis/redis_store.hpp"
#include "fairdraw/redis/stream_worker.hpp"
#include "fairdraw/redis/url.hpp"
#include "fairdraw/sink/pg_sink.hpp"
#include "fairdraw/sink/sqlite_sink.hpp"
#include "fairdraw/thread_name.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#pragma GCC diagnostic pop

namespace fairdraw::app {

namespace {
class DatabaseMirror;
}  // namespace

struct Service::Impl {
  Config config;
  SystemClock clock;
  CsprngEntropy entropy;
  std::unique_ptr<Sink> sink;
  std::unique_ptr<DrawEngine> engine;
  Metrics metrics;
  std::unique_ptr<Api> api;
  std::unique_ptr<RateLimiter> user_limiter;
  std::unique_ptr<RateLimiter> address_limiter;
  std::optional<TrustedProxies> trusted_proxies;
  std::optional<JwtVerifier> jwt;
  std::unique_ptr<http::Server> server;
  std::shared_ptr<http::Timer> deadline_timer;
  Scheduler scheduler{2};

  // The draw store the API and the scheduler use: `engine` (embedded) or `redis_store`.
  Store* store = nullptr;
  // Clustered mode only (redis.url set): RedisStore on an io_context of its own, whose
  // threads never make the store's blocking calls; the stream -> PostgreSQL worker.
  std::unique_ptr<boost::asio::io_context> redis_io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> redis_guard;
  std::vector<std::thread> redis_threads;
  std::unique_ptr<redis::RedisStore> redis_store;
  std::unique_ptr<redis::StreamWorker> worker;
  // Clustered: the sink the API reads through (PostgreSQL, plus draws not yet persisted).
  std::unique_ptr<Sink> read_sink;
  // Clustered: activities and epochs copied to PostgreSQL; the store that tells it of changes.
  std::shared_ptr<DatabaseMirror> mirror;
  std::unique_ptr<Store> mirroring_store;

  ~Impl() { stop_clustered(); }

  // Clustered shutdown, after the HTTP server has stopped: the worker persists and acks what
  // it has read, the sink commits everything queued, then Redis goes. Idempotent.
  void stop_clustered() {
    if (!redis_io) return;
    scheduler.stop();
    if (worker) worker->stop();
    if (sink) sink->flush_and_stop();
    redis_store.reset();
    redis_guard.reset();
    for (auto& t : redis_threads) t.join();
    redis_threads.clear();
  }

  std::string render_metrics() {
    ScrapeInput in;
    in.server = server->stats();
    in.io_threads = server->thread_count();
    in.sink = sink->stats();
    in.store = store->stats();
    in.activities = store->list_activities(clock.now_ms());
    in.scheduler = scheduler.stats();
    in.pending_timers = scheduler.pending_timers();
    std::string text = metrics.render(in);
    if (worker) text += stream_metrics(worker->stats());
    return text;
  }

  // The persistence worker's figures, in Prometheus text format (clustered mode).
  static std::string stream_metrics(const redis::StreamWorkerStats& w) {
    std::string out;
    auto family = [&out](const char* name, const char* help, const char* type) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    auto per_stream = [&](const char* name, const char* help, auto field) {
      family(name, help, "gauge");
      for (const redis::StreamLag& l : w.streams) {
        // Activity ids are [A-Za-z0-9._~-]: nothing to escape.
        out += std::string(name) + "{activity_id=\"" + l.activity_id + "\"} " + std::to_string(field(l)) + "\n";
      }
    };
    per_stream("fairdraw_stream_pending",
               "Draws delivered to a persistence worker and not yet in PostgreSQL, by activity",
               [](const redis::StreamLag& l) { return l.pending; });
    per_stream("fairdraw_stream_unread",
               "Draws in the Redis stream not yet read by any persistence worker (-1: unknown)",
               [](const redis::StreamLag& l) { return l.unread; });
    per_stream("fairdraw_stream_length", "Entries in the activity's Redis stream",
               [](const redis::StreamLag& l) { return l.length; });
    family("fairdraw_stream_worker", "This instance's persistence worker, by counter", "gauge");
    const std::pair<const char*, std::uint64_t> counters[] = {
        {"read", w.read},         {"claimed", w.claimed},           {"acked", w.acked},
        {"refused", w.refused},   {"poisoned", w.poisoned},         {"dead_lettered", w.dead_lettered},
        {"trimmed", w.trimmed},   {"redis_errors", w.redis_errors}, {"retrying", w.retrying},
        {"redis_up", w.redis_ok ? 1u : 0u}};
    for (const auto& [name, value] : counters) {
      out += std::string("fairdraw_stream_worker{name=\"") + name + "\"} " + std::to_string(value) + "\n";
    }
    return out;
  }

  void watchdog() {
    const auto s = server->stats();
    const auto e = store->stats();
    const auto k = sink->stats();
    const auto& w = config.watchdog;
    const bool over = s.open_connections > w.max_open_connections ||
                      e.in_flight_draws > w.max_in_flight_draws || k.queue_depth > w.max_sink_queue;
    auto fields = {std::pair<std::string_view, nlohmann::json>{"open_connections", s.open_connections},
                   {"in_flight_requests", s.in_flight_requests},
                   {"in_flight_draws", e.in_flight_draws},
                   {"sink_queue_depth", k.queue_depth},
                   {"pending_timers", scheduler.pending_timers()},
                   {"io_threads", server->thread_count()},
                   {"scheduler_threads", scheduler.thread_count()},
                   {"epochs_built_on_draw_path", e.epochs_built_on_draw_path}};
    if (over) {
      log::warn("watchdog: a bound is exceeded", fields);
    } else {
      log::debug("watchdog", fields);
    }
  }
};

namespace {

// Rate limiters, trusted proxies and the JWT verifier, from the config; each
// refusal names the config field.
Status build_guards(Service::Impl& s) {
  const Config& c = s.config;
  auto limiter = [](const char* name, std::int64_t per_minute, std::int64_t burst,
                    std::size_t max_keys) -> Result<std::unique_ptr<RateLimiter>> {
    RateLimitOptions options;
    options.policy_name = name;
    options.rate_per_s = static_cast<double>(per_minute) / 60.0;
    options.burst = burst;
    options.max_keys = max_keys;
    return RateLimiter::create(options);
  };
  if (c.rate_limit.user_per_minute > 0) {
    auto made = limiter("user", c.rate_limit.user_per_minute, c.rate_limit.user_burst,
                        c.rate_limit.max_keys);
    if (!made.ok()) return make_error(ErrorKind::invalid_request, "rate_limit: " + made.error().detail);
    s.user_limiter = std::move(made.value());
  }
  if (c.rate_limit.address_per_minute > 0) {
    auto made = limiter("address", c.rate_limit.address_per_minute, c.rate_limit.address_burst,
                        c.rate_limit.max_keys);
    if (!made.ok()) return make_error(ErrorKind::invalid_request, "rate_limit: " + made.error().detail);
    s.address_limiter = std::move(made.value());
  }
  auto proxies = TrustedProxies::parse(c.rate_limit.trusted_proxies);
  if (!proxies.ok()) {
    return make_error(ErrorKind::invalid_request, "rate_limit." + proxies.error().detail);
  }
  s.trusted_proxies = std::move(proxies.value());

  const AuthConfig& a = c.auth;
  if (a.jwt_hs256_secret.empty() && a.jwt_rs256_public_key_file.empty()) {
    if (a.require_user_token) {
      return make_error(ErrorKind::invalid_request,
                        "auth.require_user_token: needs auth.jwt_hs256_secret or "
                        "auth.jwt_rs256_public_key_file");
    }
    return ok_status();
  }
  JwtOptions options;
  if (!a.jwt_hs256_secret.empty()) {
    options.algorithms.push_back(JwtAlgorithm::hs256);
    options.hs256_secret = a.jwt_hs256_secret;
  }
  if (!a.jwt_rs256_public_key_file.empty()) {
    std::ifstream in(a.jwt_rs256_public_key_file);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in) {
      return make_error(ErrorKind::invalid_request,
                        "auth.jwt_rs256_public_key_file: cannot read " + a.jwt_rs256_public_key_file);
    }
    options.algorithms.push_back(JwtAlgorithm::rs256);
    options.rs256_public_key_pem = pem.str();
  }
  options.issuer = a.jwt_issuer;
  options.audience = a.jwt_audience;
  options.leeway_s = a.jwt_leeway_s;
  options.user_claim = a.jwt_user_claim;
  auto verifier = JwtVerifier::create(std::move(options));
  if (!verifier.ok()) return make_error(ErrorKind::invalid_request, "auth: " + verifier.error().detail);
  s.jwt.emplace(std::move(verifier.value()));
  return ok_status();
}

// Embedded mode: SqliteSink + DrawEngine, recovered from the file.
Status build_embedded(Service::Impl& s, double& recover_seconds) {
  const Config& c = s.config;
  if (c.database.url.rfind("sqlite:", 0) != 0) {
    return make_error(ErrorKind::invalid_request,
                      "database.url: only sqlite:PATH is supported in embedded mode");
  }
  SqliteSinkOptions sink_options;
  sink_options.path = c.database.url.substr(std::string_view("sqlite:").size());
  sink_options.synchronous = c.database.synchronous == "normal" ? SqliteSinkOptions::Synchronous::normal
                                                                 : SqliteSinkOptions::Synchronous::full;
  sink_options.batch_max = c.database.batch_max;
  sink_options.max_queue = c.database.max_queue;
  if (const auto parent = std::filesystem::path(sink_options.path).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return make_error(ErrorKind::unavailable,
                        "database.url: cannot create directory " + parent.string() + ": " + ec.message());
    }
  }
  auto sink = SqliteSink::open(sink_options);
  if (!sink.ok()) return sink.error();
  s.sink = std::move(sink.value());

  DrawEngineOptions engine_options;
  engine_options.idempotency_capacity = c.draw.idempotency_capacity;
  engine_options.idempotency_ttl_ms = c.draw.idempotency_ttl_s * 1000;
  engine_options.require_token = c.draw.require_token;
  engine_options.token_ttl_ms = c.draw.token_ttl_s * 1000;
  engine_options.max_tokens = c.draw.max_tokens;
  engine_options.zoneinfo_dir = c.zoneinfo_dir;
  engine_options.max_in_flight_draws = std::max<std::uint64_t>(1, c.database.max_queue / 2);
  engine_options.encode_config = [](const ActivityConfig& a) {
    return activity_config_json(a).dump();
  };
  engine_options.decode_config = [](const std::string& text) -> Result<ActivityConfig> {
    auto parsed = nlohmann::json::parse(text, nullptr, false);
    if (parsed.is_discarded()) return make_error(ErrorKind::internal, "stored activity is not JSON");
    return parse_activity(parsed);
  };
  s.engine = std::make_unique<DrawEngine>(std::move(engine_options), *s.sink, s.clock, s.entropy);
  const auto recover_started = std::chrono::steady_clock::now();
  if (auto recovered = s.engine->recover(); !recovered.ok()) {
    return make_error(recovered.error().kind, "recovery: " + recovered.error().detail);
  }
  recover_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - recover_started).count();
  s.store = s.engine.get();
  return ok_status();
}

constexpr unsigned kRedisThreads = 2;

// Clustered mode's audit trail (GET /activities/{id}/draws) reads PostgreSQL, which the stream
// worker fills a few milliseconds after each 200. So that a page shows every draw acknowledged
// before it was asked for (as in embedded mode, where a 200 follows the commit), a short page
// waits, bounded by kAuditCatchUp, until PostgreSQL holds the seqs the store had taken when the
// read began; past the bound (worker behind, PostgreSQL down) it answers what is there.
// Everything else goes straight to the wrapped sink.
class AuditCatchUpSink final : public Sink {
 public:
  static constexpr auto kAuditCatchUp = std::chrono::milliseconds(1000);
  static constexpr auto kPoll = std::chrono::milliseconds(5);

  AuditCatchUpSink(std::unique_ptr<Sink> inner, Store& store, const Clock& clock)
      : inner_(std::move(inner)), store_(store), clock_(clock) {}

  Result<DrawPage> activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                  std::size_t limit) override {
    auto page = inner_->activity_draws(activity_id, after_seq, limit);
    if (!page.ok() || (page->items.size() >= limit && page->next)) return page;
    auto view = store_.get_activity(std::string(activity_id), clock_.now_ms());
    if (!view.ok()) return page;
    // Complete: it shows every seq up to the store's newest, or it is full and says more follow.
    const std::int64_t newest = view->draws - 1;
    auto complete = [&](const DrawPage& p) {
      if (newest <= after_seq) return true;
      if (p.items.empty()) return false;
      return p.items.back().seq >= newest || (p.items.size() >= limit && p.next.has_value());
    };
    const auto deadline = std::chrono::steady_clock::now() + kAuditCatchUp;
    while (!complete(*page) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(kPoll);
      page = inner_->activity_draws(activity_id, after_seq, limit);
      if (!page.ok()) return page;
    }
    return page;
  }

  void append(DrawRecord record, Ack ack) override { inner_->append(std::move(record), std::move(ack)); }
  void flush_and_stop() override { inner_->flush_and_stop(); }
  bool healthy() const override { return inner_->healthy(); }
  SinkStats stats() const override { return inner_->stats(); }
  Result<std::optional<DrawRecord>> find_draw(std::string_view draw_id) override {
    return inner_->find_draw(draw_id);
  }
  Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view activity_id,
                                                            std::string_view key) override {
    return inner_->find_by_idempotency_key(activity_id, key);
  }
  Result<DrawPage> user_draws(std::string_view user_id, std::optional<std::string_view> activity_id,
                              std::optional<std::string_view> cursor, std::size_t limit) override {
    return inner_->user_draws(user_id, activity_id, cursor, limit);
  }
  Result<std::vector<DrawRecord>> draws_since(std::string_view activity_id, std::int64_t since_ms,
                                              std::size_t limit) override {
    return inner_->draws_since(activity_id, since_ms, limit);
  }
  Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(
      std::string_view activity_id, std::int64_t since_ms) override {
    return inner_->user_counts_since(activity_id, since_ms);
  }
  Status save_activity(const StoredActivity& activity) override { return inner_->save_activity(activity); }
  Result<std::vector<StoredActivity>> load_activities() override { return inner_->load_activities(); }
  Status save_epoch(const EpochRecord& epoch) override { return inner_->save_epoch(epoch); }
  Result<std::vector<EpochRecord>> load_epochs(std::string_view activity_id) override {
    return inner_->load_epochs(activity_id);
  }
  Result<ActivityTotals> load_totals(std::string_view activity_id, std::int64_t since_ms,
                                     const AddUserCounts& add) override {
    return inner_->load_totals(activity_id, since_ms, add);
  }
  Result<LiveDraws> load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                    std::size_t limit, const OnDraw& on_draw) override {
    return inner_->load_live_draws(activity_id, since_ms, limit, on_draw);
  }

 private:
  std::unique_ptr<Sink> inner_;
  Store& store_;
  const Clock& clock_;
};

// Clustered mode: PostgreSQL gets a copy of what Redis holds of activities and epochs, so an
// auditor can check every draw from PostgreSQL alone (DESIGN.md section 6): each activity as
// the admin left it (`activities`, plus one `activity_changes` row per change) and each epoch
// as the public sees it (its commitment from the start, its seed once revealed: the secret
// seed of a running epoch stays in Redis). One pass a second on the scheduler, so a record is
// in PostgreSQL about a second after Redis has it; a write that fails is retried next pass.
class DatabaseMirror {
 public:
  static constexpr std::int64_t kRefreshEpochsMs = 5000;

  DatabaseMirror(PgSink& pg, Store& store, const Clock& clock) : pg_(pg), store_(store), clock_(clock) {}

  // The scheduler's pass over every activity.
  void pass() {
    std::lock_guard lock(mutex_);
    const std::int64_t now = clock_.now_ms();
    for (const ActivityView& a : store_.list_activities(now)) sync(a, now);
  }

  // Right after an admin change (MirroringStore), so that each change gets its own row.
  void activity_changed(const std::string& id) {
    std::lock_guard lock(mutex_);
    const std::int64_t now = clock_.now_ms();
    if (auto a = store_.get_activity(id, now); a.ok()) sync(*a, now);
  }

 private:
  struct SeenEpoch {
    bool saved = false;
    bool revealed = false;
    std::optional<std::int64_t> first_seq;
  };
  struct Seen {
    std::string config;
    bool ended = false;
    std::int64_t created_at_ms = 0;
    std::int64_t draws = -1;
    std::int64_t epochs_at_ms = 0;
    std::map<std::int64_t, SeenEpoch> epochs;
  };

  void sync(const ActivityView& a, std::int64_t now) {
    Seen& seen = seen_[a.id];
    const std::string config = activity_config_json(a.config).dump();
    // Ended by the admin (DELETE), not by its window closing.
    const bool ended = a.status == ActivityStatus::ended && !(a.config.ends_at_ms && *a.config.ends_at_ms <= now);
    if (config != seen.config || ended != seen.ended) {
      const StoredActivity stored{a.id, config, ended, seen.created_at_ms != 0 ? seen.created_at_ms : now, now};
      if (!pg_.save_activity(stored).ok() || !pg_.save_activity_change(stored).ok()) return;
      seen.config = config;
      seen.ended = ended;
      seen.created_at_ms = stored.created_at_ms;
      seen.draws = -1;  // a change may end an epoch and start another
    }
    // Epochs change with draws (filled, prepared ahead) and admin changes; an epoch prepared
    // while no draw happens is picked up by the periodic refresh.
    if (a.draws == seen.draws && now - seen.epochs_at_ms < kRefreshEpochsMs) return;
    auto epochs = store_.fairness(a.id);
    if (!epochs.ok()) return;
    for (const EpochView& e : *epochs) {
      SeenEpoch& done = seen.epochs[e.record.epoch];
      if (done.saved && done.revealed == e.revealed && done.first_seq == e.first_seq) continue;
      EpochRecord record = e.record;
      record.first_seq = e.first_seq;
      if (e.revealed && !record.revealed_at_ms) record.revealed_at_ms = now;
      if (!pg_.save_public_epoch(record, e.revealed).ok()) return;
      done = {true, e.revealed, e.first_seq};
    }
    seen.draws = a.draws;
    seen.epochs_at_ms = now;
  }

  PgSink& pg_;
  Store& store_;
  const Clock& clock_;
  std::mutex mutex_;
  std::map<std::string, Seen> seen_;  // what PostgreSQL has, by activity
};

// The clustered Store as the API and the scheduler see it: RedisStore, plus the mirror told
// of every admin change as it succeeds (the change is in PostgreSQL before its 200, unless
// PostgreSQL is down: then the next pass writes the state as it is by then).
class MirroringStore final : public Store {
 public:
  MirroringStore(Store& inner, DatabaseMirror& mirror) : inner_(inner), mirror_(mirror) {}

  Result<bool> put_activity(const std::string& id, ActivityConfig config, std::int64_t now_ms) override {
    auto put = inner_.put_activity(id, std::move(config), now_ms);
    if (put.ok()) mirror_.activity_changed(id);
    return put;
  }
  Status end_activity(const std::string& id, std::int64_t now_ms) override {
    auto ended = inner_.end_activity(id, now_ms);
    if (ended.ok()) mirror_.activity_changed(id);
    return ended;
  }

  void draw(DrawCommand command, DrawCallback done) override { inner_.draw(std::move(command), std::move(done)); }
  Result<ActivityView> get_activity(const std::string& id, std::int64_t now_ms) override {
    return inner_.get_activity(id, now_ms);
  }
  std::vector<ActivityView> list_activities(std::int64_t now_ms) override { return inner_.list_activities(now_ms); }
  Result<std::vector<EpochView>> fairness(const std::string& id) override { return inner_.fairness(id); }
  Result<IssuedToken> issue_token(std::int64_t now_ms) override { return inner_.issue_token(now_ms); }
  void prepare_epochs() override { inner_.prepare_epochs(); }
  void expire(std::int64_t now_ms) override { inner_.expire(now_ms); }
  bool ready() const override { return inner_.ready(); }
  StoreStats stats() const override { return inner_.stats(); }

 private:
  Store& inner_;
  DatabaseMirror& mirror_;
};

// postgresql://user:secret@host:port/db?… -> postgresql://host:port/db, for logs.
std::string loggable_url(const std::string& url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "(not a URL)";
  std::string rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find('?'));
  if (const std::size_t at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  return url.substr(0, scheme + 3) + rest;
}

// Clustered mode: RedisStore (draws, activities, epochs, tokens) on its own io_context,
// PgSink (the durable record and the reads of draws), and the StreamWorker between them.
Status build_clustered(Service::Impl& s) {
  const Config& c = s.config;
  auto url = redis::parse_redis_url(*c.redis_url);
  if (!url.ok()) return make_error(ErrorKind::invalid_request, "redis.url: " + url.error().detail);
  if (c.database.url.rfind("postgresql://", 0) != 0 && c.database.url.rfind("postgres://", 0) != 0) {
    return make_error(ErrorKind::invalid_request,
                      "database.url: clustered mode (redis.url set) needs a postgresql:// URL");
  }

  PgSinkOptions sink_options;
  sink_options.url = c.database.url;
  sink_options.batch_max = c.database.batch_max;
  sink_options.max_queue = c.database.max_queue;
  auto sink = PgSink::open(std::move(sink_options));
  if (!sink.ok()) return make_error(sink.error().kind, "database.url: " + sink.error().detail);
  s.sink = std::move(sink.value());

  s.redis_io = std::make_unique<boost::asio::io_context>();
  s.redis_guard.emplace(boost::asio::make_work_guard(*s.redis_io));
  for (unsigned i = 0; i < kRedisThreads; ++i) {
    s.redis_threads.emplace_back([io = s.redis_io.get()] {
      name_this_thread("fd-redis-io");
      io->run();
    });
  }
  redis::RedisStoreOptions store_options;
  store_options.redis = redis::make_redis_options(url.value());
  store_options.idempotency_ttl_ms = c.draw.idempotency_ttl_s * 1000;
  store_options.require_token = c.draw.require_token;
  store_options.token_ttl_ms = c.draw.token_ttl_s * 1000;
  store_options.zoneinfo_dir = c.zoneinfo_dir;
  store_options.max_in_flight_draws = static_cast<std::uint64_t>(c.redis_max_in_flight_draws);
  store_options.encode_config = [](const ActivityConfig& a) { return activity_config_json(a).dump(); };
  store_options.decode_config = [](const std::string& text) -> Result<ActivityConfig> {
    auto parsed = nlohmann::json::parse(text, nullptr, false);
    if (parsed.is_discarded()) return make_error(ErrorKind::internal, "stored activity is not JSON");
    return parse_activity(parsed);
  };
  s.redis_store = std::make_unique<redis::RedisStore>(*s.redis_io, std::move(store_options), s.clock,
                                                      s.entropy);
  s.store = s.redis_store.get();
  s.read_sink = std::make_unique<redis::ReadThroughSink>(*s.sink, *s.redis_store);
  s.read_sink = std::make_unique<AuditCatchUpSink>(std::move(s.read_sink), *s.store, s.clock);
  s.mirror = std::make_shared<DatabaseMirror>(static_cast<PgSink&>(*s.sink), *s.redis_store, s.clock);
  s.mirroring_store = std::make_unique<MirroringStore>(*s.redis_store, *s.mirror);
  s.store = s.mirroring_store.get();
  s.scheduler.add("mirror_to_database", std::chrono::milliseconds(1000), [m = s.mirror.get()] { m->pass(); });

  redis::StreamWorkerOptions worker_options;
  worker_options.redis = redis::make_redis_options(url.value());
  worker_options.consumer = redis::default_consumer_name();
  worker_options.batch = static_cast<std::size_t>(c.redis_stream_batch);
  worker_options.max_round = std::max<std::size_t>(worker_options.batch, std::min<std::size_t>(
      8192, std::max<std::size_t>(1, c.database.max_queue / 2)));
  worker_options.claim_idle = std::chrono::milliseconds(c.redis_claim_idle_ms);
  worker_options.claim_interval =
      std::min(std::chrono::milliseconds(5000), std::max(worker_options.claim_idle / 2,
                                                         std::chrono::milliseconds(100)));
  worker_options.log = [](redis::WorkerLogLevel level, std::string_view message, std::string_view detail) {
    switch (level) {
      case redis::WorkerLogLevel::debug: return log::debug(message, {{"detail", detail}});
      case redis::WorkerLogLevel::info: return log::info(message, {{"detail", detail}});
      case redis::WorkerLogLevel::warn: return log::warn(message, {{"detail", detail}});
      case redis::WorkerLogLevel::error: return log::error(message, {{"detail", detail}});
    }
  };
  log::info("stream worker configured", {{"consumer", worker_options.consumer},
                                          {"claim_idle_ms", c.redis_claim_idle_ms},
                                          {"batch", worker_options.batch}});
  s.worker = std::make_unique<redis::StreamWorker>(std::move(worker_options), *s.sink);
  return ok_status();
}

}  // namespace

Service::Service() : impl_(std::make_unique<Impl>()) {}
Service::~Service() = default;

Result<std::unique_ptr<Service>> Service::create(Config config) {
  std::unique_ptr<Service> service(new Service());
  Impl& s = *service->impl_;
  s.config = std::move(config);
  const Config& c = s.config;

  double recover_seconds = 0;
  if (c.redis_url) {
    if (auto built = build_clustered(s); !built.ok()) return built.error();
  } else if (auto built = build_embedded(s, recover_seconds); !built.ok()) {
    return built.error();
  }

  for (const auto& [id, body] : c.activities) {
    if (s.store->get_activity(id, s.clock.now_ms()).ok()) continue;  // the database wins
    auto activity = parse_activity(body);
    if (!activity.ok()) {
      return make_error(ErrorKind::invalid_request,
                        "activities." + id + "." + activity.error().detail);
    }
    auto created = s.store->put_activity(id, std::move(activity.value()), s.clock.now_ms());
    if (!created.ok()) {
      return make_error(created.error().kind, "activities." + id + ": " + created.error().detail);
    }
    log::info("activity created from config", {{"activity_id", id}});
  }

  http::ServerOptions server_options;
  server_options.host = c.listen_host;
  server_options.port = c.listen_port;
  server_options.threads = c.threads;
  server_options.max_connections = c.http.max_connections;
  server_options.max_header_bytes = c.http.max_header_bytes;
  server_options.max_body_bytes = c.http.max_body_bytes;
  server_options.read_timeout = std::chrono::milliseconds(c.http.read_timeout_ms);
  server_options.idle_timeout = std::chrono::milliseconds(c.http.idle_timeout_ms);
  server_options.shutdown_grace = std::chrono::milliseconds(c.http.shutdown_grace_ms);
  server_options.write_timeout = std::chrono::milliseconds(c.http.write_timeout_ms);
  server_options.max_connections_per_address = c.http.max_connections_per_address;

  if (auto guards = build_guards(s); !guards.ok()) return guards.error();

  Impl* impl = &s;
  ApiContext api_context{*s.store, s.read_sink ? *s.read_sink : *s.sink, s.clock, s.metrics, s.config,
                         [impl](std::function<void()> fn) { impl->server->post(std::move(fn)); },
                         [impl] { return impl->render_metrics(); }};
  api_context.user_limiter = s.user_limiter.get();
  api_context.address_limiter = s.address_limiter.get();
  api_context.trusted_proxies = s.trusted_proxies ? &*s.trusted_proxies : nullptr;
  api_context.jwt = s.jwt ? &*s.jwt : nullptr;
  api_context.post_to = [impl](unsigned lane, std::function<void()> fn) {
    impl->server->post_to(lane, std::move(fn));
  };
  s.api = std::make_unique<Api>(std::move(api_context));
  s.server = std::make_unique<http::Server>(
      server_options, [impl](http::Request&& request, http::Responder respond) {
        impl->api->handle(std::move(request), std::move(respond));
      });
  if (auto listening = s.server->listen(); !listening.ok()) return listening.error();
  s.deadline_timer = s.server->every(std::chrono::milliseconds(20),
                                     [impl] { impl->api->expire_deadlines(); });

  s.scheduler.add("prepare_epochs", std::chrono::milliseconds(100),
                  [impl] { impl->store->prepare_epochs(); });
  s.scheduler.add("expire", std::chrono::milliseconds(1000),
                  [impl] { impl->store->expire(impl->clock.now_ms()); });
  s.scheduler.add("watchdog", std::chrono::milliseconds(c.watchdog.interval_ms),
                  [impl] { impl->watchdog(); });

  if (c.redis_url) {
    log::info("fairdraw ready", {{"listen", c.listen_host + ":" + std::to_string(s.server->port())},
                                 {"database", loggable_url(c.database.url)},
                                 {"redis", loggable_url(*c.redis_url)},
                                 {"mode", "clustered"}});
  } else {
    log::info("fairdraw ready", {{"listen", c.listen_host + ":" + std::to_string(s.server->port())},
                                 {"database", c.database.url},
                                 {"mode", "embedded"},
                                 {"recovery_seconds", recover_seconds}});
  }
  return service;
}

std::uint16_t Service::port() const { return impl_->server->port(); }

int Service::run() {
  Impl& s = *impl_;
  s.store->prepare_epochs();
  s.scheduler.start();
  if (s.worker) s.worker->start();
  s.server->run([&s] {
    log::info("shutting down: no new connections, finishing in-flight requests");
    s.api->set_draining();
  });
  s.scheduler.stop();
  s.stop_clustered();  // clustered: the worker persists what it has read, then Redis goes
  s.sink->flush_and_stop();
  const auto stats = s.sink->stats();
  log::info("fairdraw stopped", {{"committed_rows", stats.committed_rows}});
  log::flush();
  return 0;
}

}  // namespace fairdraw::app
