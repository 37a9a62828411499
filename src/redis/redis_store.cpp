// RedisStore: the clustered Store. A draw is one EVALSHA of the draw script (see
// redis_store_scripts.hpp for what each check guarantees); the client side only caches the
// activity's config (to compute the local day), consumes tokens, and prepares epochs.
//
// Epochs: any instance may create the next epoch of a chain. The create script lets exactly
// one seed win; every instance then builds the deck from the winning seed and stores it, or,
// when it is already there, compares it with the stored one, so an instance never trusts a
// deck it has not rebuilt from the seed, and a mismatch stops the epoch for everyone.
#include "fairdraw/redis/redis_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <exception>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fairdraw/engine/deck.hpp"
#include "fairdraw/engine/time_zone.hpp"
#include "fairdraw/engine/ulid.hpp"
#include "fairdraw/redis/script.hpp"
#include "redis_store_scripts.hpp"

namespace fairdraw::redis {
namespace {

using namespace std::chrono_literals;

constexpr const char* kActivitiesKey = "fd:activities";
constexpr const char* kTokenPrefix = "fd:tokens:";
// A draw gives up (503) after this many rounds of "reload the config" or "prepare the
// epoch": only a storm of admin changes or decks used up faster than built gets there.
constexpr int kMaxDrawAttempts = 8;
// Preparation stays at most this many epochs ahead (as the embedded engine's deck ring).
constexpr std::int64_t kMaxEpochsAhead = 15;
// Activities read concurrently by list_activities (well below the pipeline bound).
constexpr std::size_t kListBatch = 128;

std::string prefix_of(const std::string& id) { return "fd:{" + id + "}:"; }

std::optional<std::int64_t> to_int(std::string_view text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

Error internal(std::string detail) { return make_error(ErrorKind::internal, std::move(detail)); }

Error not_found(const std::string& id) {
  return make_error(ErrorKind::activity_not_found, "no activity with id '" + id + "'");
}

// A Redis error reply: the server is there but cannot serve now (unavailable), or the
// request or script is wrong (internal).
Error reply_error(const RedisReply& reply) {
  static constexpr std::array<std::string_view, 10> kTransient = {
      "LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "MOVED", "ASK",
      "NOREPLICAS"};
  const std::string_view code = reply.error_code();
  if (std::find(kTransient.begin(), kTransient.end(), code) != kTransient.end()) {
    return make_error(ErrorKind::unavailable, "redis: " + reply.str);
  }
  return internal("redis: " + reply.str);
}

// The first element of a script's array reply.
std::string_view tag_of(const RedisReply& reply) {
  if (!reply.is_array() || reply.elements.empty() || !reply.elements[0].is_string()) return {};
  return reply.elements[0].str;
}

std::string pack_deck(const std::vector<Card>& cards) {
  std::string out(cards.size() * 2, '\0');
  for (std::size_t i = 0; i < cards.size(); ++i) {
    out[2 * i] = static_cast<char>((cards[i] >> 8) & 0xFF);
    out[2 * i + 1] = static_cast<char>(cards[i] & 0xFF);
  }
  return out;
}

// Prize ids are [A-Za-z0-9._~-] (is_valid_id), so they need no JSON escaping.
std::string prizes_json(const ActivityConfig& config) {
  std::string out = "[";
  for (const Prize& prize : config.prizes) {
    if (out.size() > 1) out += ',';
    out += R"({"id":")" + prize.id + R"(","weight":)" + std::to_string(prize.weight) + "}";
  }
  return out + "]";
}

// Reads back what prizes_json wrote.
std::optional<std::vector<EpochPrize>> parse_prizes_json(std::string_view text) {
  std::vector<EpochPrize> prizes;
  static constexpr std::string_view kId = R"({"id":")";
  static constexpr std::string_view kWeight = R"(","weight":)";
  std::size_t pos = 0;
  while ((pos = text.find(kId, pos)) != std::string_view::npos) {
    pos += kId.size();
    const std::size_t id_end = text.find(kWeight, pos);
    if (id_end == std::string_view::npos) return std::nullopt;
    const std::size_t num = id_end + kWeight.size();
    const std::size_t num_end = text.find('}', num);
    if (num_end == std::string_view::npos) return std::nullopt;
    const auto weight = to_int(text.substr(num, num_end - num));
    if (!weight || *weight < 0) return std::nullopt;
    prizes.push_back(EpochPrize{std::string(text.substr(pos, id_end - pos)),
                                static_cast<std::uint32_t>(*weight)});
    pos = num_end;
  }
  return prizes;
}

// The field/value pairs of a flat array reply, from index `from`.
template <class F>
void for_each_pair(const RedisReply& reply, std::size_t from, F&& f) {
  for (std::size_t i = from; i + 1 < reply.elements.size(); i += 2) {
    f(std::string_view(reply.elements[i].str), reply.elements[i + 1].str);
  }
}

// The draw's reply as a record; its strings are moved out of the reply and the command (no
// copy per field): neither is used afterwards.
Result<DrawRecord> parse_record(RedisReply& reply, DrawCommand& command) {
  DrawRecord rec;
  rec.activity_id = std::move(command.activity_id);
  rec.idempotency_key = std::move(command.idempotency_key);
  bool complete = true;
  int seen = 0;
  auto number = [&](const std::string& value) {
    const auto n = to_int(value);
    if (!n) complete = false;
    ++seen;
    return n.value_or(0);
  };
  auto& e = reply.elements;
  for (std::size_t i = 1; i + 1 < e.size(); i += 2) {
    const std::string_view name = e[i].str;
    std::string& value = e[i + 1].str;
    if (name == "draw_id") {
      rec.draw_id = std::move(value);
    } else if (name == "user_id") {
      rec.user_id = std::move(value);
    } else if (name == "seq") {
      rec.seq = number(value);
    } else if (name == "epoch") {
      rec.epoch = number(value);
    } else if (name == "slot") {
      rec.slot = number(value);
    } else if (name == "drawn_at_ms") {
      rec.drawn_at_ms = number(value);
    } else if (name == "candidate_id") {
      rec.candidate_id = std::move(value);
    } else if (name == "prize_id") {
      rec.prize_id = std::move(value);
    } else if (name == "prize_name") {
      rec.prize_name = std::move(value);
    } else if (name == "won") {
      rec.won = value == "1";
    }
  }
  if (!complete || seen != 4 || rec.draw_id.empty()) return internal("redis: malformed draw result");
  return rec;
}

// A draw as its stream entry holds it ({field, value, ...}, as the draw script wrote it).
std::optional<DrawRecord> record_from_stream(const RedisReply& fields) {
  if (!fields.is_array()) return std::nullopt;
  DrawRecord rec;
  bool complete = true;
  int numbers = 0;
  auto number = [&](const std::string& value) {
    const auto n = to_int(value);
    if (!n) complete = false;
    ++numbers;
    return n.value_or(0);
  };
  for_each_pair(fields, 0, [&](std::string_view name, const std::string& value) {
    if (name == "draw_id") rec.draw_id = value;
    else if (name == "activity_id") rec.activity_id = value;
    else if (name == "idempotency_key") rec.idempotency_key = value;
    else if (name == "user_id") rec.user_id = value;
    else if (name == "seq") rec.seq = number(value);
    else if (name == "epoch") rec.epoch = number(value);
    else if (name == "slot") rec.slot = number(value);
    else if (name == "drawn_at_ms") rec.drawn_at_ms = number(value);
    else if (name == "candidate_id") rec.candidate_id = value;
    else if (name == "prize_id") rec.prize_id = value;
    else if (name == "prize_name") rec.prize_name = value;
    else if (name == "won") rec.won = value == "1";
  });
  if (!complete || numbers != 4 || rec.draw_id.empty() || rec.activity_id.empty()) return std::nullopt;
  return rec;
}

// The decoded config of one activity at one version, as this instance last read it.
struct CachedActivity {
  std::string id;
  std::string version;  // compared as stored, as a string, by the draw script
  std::string deck_version;
  bool ended = false;
  ActivityConfig config;
  TimeZone time_zone = TimeZone::utc();
  std::vector<std::uint32_t> weights;
  std::string prizes_json;
  // The draw's key prefixes ("fd:{A}:", and with "day:", "idem:"), made once.
  std::string prefix;
  std::string day_prefix;
  std::string idem_prefix;
};
using ActivityPtr = std::shared_ptr<const CachedActivity>;

// One draw in progress: it may go round (config reload, epoch preparation) a few times.
struct DrawOp {
  DrawCommand command;
  DrawCallback done;
  std::string draw_id;
  enum class Token { not_required, taken, missing } token = Token::not_required;
  std::int64_t token_expires_at_ms = 0;
  int attempts = 0;
};

}  // namespace

struct RedisStore::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::io_context& io, RedisStoreOptions opts, Clock& clk, Entropy& ent)
      : options(std::move(opts)),
        clock(clk),
        entropy(ent),
        draw_script(scripts::kDraw),
        put_script(std::string(scripts::kCloseChain) + scripts::kPut),
        end_script(std::string(scripts::kCloseChain) + scripts::kEnd),
        create_epoch_script(scripts::kCreateEpoch),
        store_deck_script(scripts::kStoreDeck),
        read_script(scripts::kReadActivity),
        chain_script(scripts::kChainState),
        fairness_script(scripts::kFairness),
        find_unpersisted_script(scripts::kFindUnpersisted) {
    const std::size_t draw_connections = std::max<std::size_t>(1, options.draw_connections);
    RedisOptions draw_options = options.redis;
    // Room for every draw in flight plus its side commands (token GETDEL, refund).
    draw_options.max_pipeline = std::max<std::size_t>(
        draw_options.max_pipeline,
        static_cast<std::size_t>(std::min<std::uint64_t>(options.max_in_flight_draws, 10'000'000)) /
                draw_connections + 64);
    draws = RedisRouter::create(io, std::move(draw_options), draw_connections);
    admin = RedisRouter::create(io, options.redis, 1);
    const auto round_trip = options.redis.connect_timeout + options.redis.command_timeout;
    // Only a safety net: every callback of the connection runs within its own timeouts,
    // unless the io_context is not being run at all.
    sync_limit = 3 * round_trip + 2000ms;
  }

  RedisStoreOptions options;
  Clock& clock;  // not read today: every call brings its own now_ms
  Entropy& entropy;
  std::shared_ptr<RedisRouter> draws;  // the draw path
  std::shared_ptr<RedisRouter> admin;  // everything else
  std::chrono::milliseconds sync_limit{};

  const RedisScript draw_script;
  const RedisScript put_script;
  const RedisScript end_script;
  const RedisScript create_epoch_script;
  const RedisScript store_deck_script;
  const RedisScript read_script;
  const RedisScript chain_script;
  const RedisScript fairness_script;
  const RedisScript find_unpersisted_script;

  std::mutex cache_mutex;
  std::unordered_map<std::string, ActivityPtr> cache;  // guarded by cache_mutex

  // Epoch preparations in progress on this instance, each with everyone waiting for it.
  std::mutex builds_mutex;
  std::unordered_map<std::string, std::vector<std::function<void(Result<bool>)>>> builds;
  // Per activity, the highest epoch this instance has created or verified; guarded.
  std::mutex ensured_mutex;
  std::unordered_map<std::string, std::int64_t> ensured_through;

  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> shed{0};
  std::atomic<std::uint64_t> epochs_prepared{0};
  std::atomic<std::uint64_t> epochs_built_on_draw_path{0};
  std::atomic<bool> healthy{false};
  std::atomic<bool> closed{false};

  void close() {
    closed.store(true);
    draws->close();
    admin->close();
  }

  // ---- Redis calls, async and blocking -------------------------------------------------

  void note_health(const Result<RedisReply>& reply) {
    if (reply.ok()) {
      healthy.store(true, std::memory_order_relaxed);
    } else if (reply.error().kind == ErrorKind::unavailable) {
      healthy.store(false, std::memory_order_relaxed);
    }
  }

  RedisCallback track(RedisCallback done) {
    return [self = shared_from_this(), done = std::move(done)](Result<RedisReply> reply) {
      self->note_health(reply);
      done(std::move(reply));
    };
  }

  // Every command the store sends alone has its one key at argv[1] (none: PING).
  void command(RedisRouter& router, std::vector<std::string> argv, RedisCallback done) {
    if (argv.size() < 2) return router.command_any(std::move(argv), track(std::move(done)));
    const std::string key = argv[1];
    router.command(key, std::move(argv), track(std::move(done)));
  }

  void script(const RedisScript& s, RedisRouter& router, std::vector<std::string> keys,
              std::vector<std::string> args, RedisCallback done) {
    s.call(router, std::move(keys), std::move(args), track(std::move(done)));
  }

  template <class T>
  static Result<T> wait(std::future<Result<T>>& future, std::chrono::milliseconds limit) {
    if (future.wait_for(limit) != std::future_status::ready) {
      return make_error(ErrorKind::unavailable,
                        "redis: no answer within " + std::to_string(limit.count()) + " ms");
    }
    return future.get();
  }

  // Runs `start(callback)` and blocks for the callback's value.
  template <class T, class Start>
  Result<T> blocking(Start&& start, std::chrono::milliseconds limit) {
    auto promise = std::make_shared<std::promise<Result<T>>>();
    auto future = promise->get_future();
    start([promise](Result<T> value) { promise->set_value(std::move(value)); });
    return wait(future, limit);
  }

  Result<RedisReply> command_sync(std::vector<std::string> argv) {
    return blocking<RedisReply>(
        [&](RedisCallback cb) { command(*admin, std::move(argv), std::move(cb)); }, sync_limit);
  }

  Result<RedisReply> script_sync(const RedisScript& s, std::vector<std::string> keys,
                                 std::vector<std::string> args) {
    return blocking<RedisReply>(
        [&](RedisCallback cb) { script(s, *admin, std::move(keys), std::move(args), std::move(cb)); },
        sync_limit);
  }


  // ---- The config cache ----------------------------------------------------------------

  ActivityPtr cached(const std::string& id) {
    std::lock_guard lock(cache_mutex);
    auto it = cache.find(id);
    return it == cache.end() ? nullptr : it->second;
  }

  void forget(const std::string& id) {
    std::lock_guard lock(cache_mutex);
    cache.erase(id);
  }

  // The codec runs on io threads, where nothing may throw.
  Result<ActivityConfig> decode(const std::string& json) {
    if (!options.decode_config) return internal("redis store: no decode_config");
    try {
      return options.decode_config(json);
    } catch (const std::exception& e) {
      return internal(std::string("stored config unreadable: ") + e.what());
    }
  }

  // The decoded config for (json, version): the cached one when the version matches.
  Result<ActivityPtr> decoded(const std::string& id, const std::string& json,
                              const std::string& version, const std::string& deck_version,
                              bool ended) {
    if (auto current = cached(id); current && current->version == version &&
                                   current->deck_version == deck_version && current->ended == ended) {
      return current;
    }
    auto config = decode(json);
    if (!config.ok()) {
      return internal("activity '" + id + "': stored config unreadable: " + config.error().detail);
    }
    auto act = std::make_shared<CachedActivity>();
    act->id = id;
    act->prefix = prefix_of(id);
    act->day_prefix = act->prefix + "day:";
    act->idem_prefix = act->prefix + "idem:";
    act->version = version;
    act->deck_version = deck_version;
    act->ended = ended;
    act->config = std::move(config.value());
    if (auto tz = TimeZone::load(act->config.time_zone, options.zoneinfo_dir); tz.ok()) {
      act->time_zone = std::move(tz.value());
    }
    for (const Prize& prize : act->config.prizes) act->weights.push_back(prize.weight);
    act->prizes_json = prizes_json(act->config);
    ActivityPtr result = act;
    std::lock_guard lock(cache_mutex);
    auto& slot = cache[id];
    const auto newer = [](const std::string& a, const std::string& b) {
      return to_int(a).value_or(0) > to_int(b).value_or(0);
    };
    if (!slot || !newer(slot->version, version)) slot = result;
    return result;
  }

  Result<ActivityPtr> parse_config_reply(const std::string& id, const Result<RedisReply>& reply) {
    if (!reply.ok()) return reply.error();
    if (reply->is_error()) return reply_error(*reply);
    const auto& e = reply->elements;
    if (!reply->is_array() || e.size() != 4) return internal("redis: malformed config reply");
    if (e[0].is_nil() || e[1].is_nil()) return not_found(id);
    return decoded(id, e[0].str, e[1].str, e[3].is_nil() ? "0" : e[3].str, e[2].str == "1");
  }

  std::vector<std::string> config_argv(const std::string& id) {
    return {"HMGET", prefix_of(id) + "cfg", "json", "version", "ended", "deck_version"};
  }

  void load_config(const std::string& id, RedisRouter& router,
                   std::function<void(Result<ActivityPtr>)> done) {
    command(router, config_argv(id),
            [self = shared_from_this(), id, done = std::move(done)](Result<RedisReply> reply) {
              done(self->parse_config_reply(id, reply));
            });
  }

  Result<ActivityPtr> load_config_sync(const std::string& id) {
    return parse_config_reply(id, command_sync(config_argv(id)));
  }

  // ---- Epochs -------------------------------------------------------------------------

  // Makes epoch `epoch` of `act`'s chain ready (seed and verified deck in Redis). The value
  // is false when the chain is no longer the one `act` describes (reload the config).
  void ensure_epoch(const ActivityPtr& act, std::int64_t epoch,
                    std::function<void(Result<bool>)> done) {
    const std::string job = act->id + '\n' + act->deck_version + '\n' + std::to_string(epoch);
    {
      std::lock_guard lock(builds_mutex);
      auto& waiting = builds[job];
      waiting.push_back(std::move(done));
      if (waiting.size() > 1) return;  // being prepared already: wait for that one
    }
    auto finish = [self = shared_from_this(), job](Result<bool> result) {
      std::vector<std::function<void(Result<bool>)>> waiting;
      {
        std::lock_guard lock(self->builds_mutex);
        auto it = self->builds.find(job);
        if (it != self->builds.end()) {
          waiting = std::move(it->second);
          self->builds.erase(it);
        }
      }
      for (auto& w : waiting) w(result);
    };
    if (closed.load()) return finish(make_error(ErrorKind::unavailable, "redis store closed"));

    const std::string prefix = prefix_of(act->id);
    const std::string e = std::to_string(epoch);
    Seed seed{};
    entropy.fill(seed);
    const std::string commitment = commitment_hex(seed);
    script(create_epoch_script, *admin, {prefix + "chain", prefix + "epoch:" + e},
           {act->deck_version, e, to_hex(seed), commitment, act->prizes_json,
            std::to_string(act->config.miss_weight), std::to_string(act->config.deck_size())},
           [self = shared_from_this(), act, epoch, seed, finish](Result<RedisReply> reply) mutable {
             self->on_epoch_created(act, epoch, seed, reply, std::move(finish));
           });
  }

  void on_epoch_created(const ActivityPtr& act, std::int64_t epoch, Seed seed,
                        const Result<RedisReply>& reply, std::function<void(Result<bool>)> finish) {
    if (!reply.ok()) return finish(reply.error());
    if (reply->is_error()) return finish(reply_error(*reply));
    const std::string_view tag = tag_of(*reply);
    const std::string where = "epoch " + std::to_string(epoch) + " of activity '" + act->id + "'";
    const std::string prefix = prefix_of(act->id);
    const std::string epoch_key = prefix + "epoch:" + std::to_string(epoch);
    const std::string deck_key = prefix + "deck:" + std::to_string(epoch);
    if (tag == "stale") return finish(false);
    if (tag == "gap") return finish(internal(where + ": the epoch before it does not exist"));
    if (tag == "exists") {
      // Another instance's seed won (or ours, from an earlier attempt): take it, but only
      // after checking it against its public commitment.
      const auto& e = reply->elements;
      if (e.size() != 5) return finish(internal("redis: malformed epoch reply"));
      if (e[4].str == "1") return finish(internal(where + " failed verification"));
      if (e[3].str == "1") return finish(true);  // over: no deck needed any more
      const auto stored = seed_from_hex(e[1].str);
      if (!stored || commitment_hex(*stored) != e[2].str) {
        script(store_deck_script, *admin, {epoch_key, deck_key}, {"corrupt", act->deck_version, ""},
               [finish, where](Result<RedisReply>) {
                 finish(internal(where + ": its seed does not match its commitment"));
               });
        return;
      }
      seed = *stored;
    } else if (tag != "created") {
      return finish(internal("redis: unexpected epoch reply"));
    }
    // The deck is always rebuilt here from the seed that won: stored if absent, compared
    // byte for byte with the stored one otherwise.
    std::string deck = pack_deck(build_deck(seed, act->weights, act->config.miss_weight));
    script(store_deck_script, *admin, {epoch_key, deck_key},
           {"store", act->deck_version, std::move(deck)},
           [self = shared_from_this(), where, finish](Result<RedisReply> stored) {
             if (!stored.ok()) return finish(stored.error());
             if (stored->is_error()) return finish(reply_error(*stored));
             const std::string& s = stored->str;
             if (s == "stored" || s == "same") {
               self->epochs_prepared.fetch_add(1, std::memory_order_relaxed);
               return finish(true);
             }
             if (s == "revealed") return finish(true);
             if (s == "stale") return finish(false);
             if (s == "corrupt") {
               return finish(internal(where + ": the stored deck does not follow from its seed"));
             }
             finish(internal("redis: unexpected deck reply"));
           });
  }

  Result<bool> ensure_epoch_sync(const ActivityPtr& act, std::int64_t epoch) {
    // A shuffle of up to 10^7 cards plus two round trips: generous, it is a background job.
    return blocking<bool>(
        [&](std::function<void(Result<bool>)> cb) { ensure_epoch(act, epoch, std::move(cb)); },
        sync_limit + 60s);
  }

  // ---- The draw -----------------------------------------------------------------------

  void draw(DrawCommand command_in, DrawCallback done) {
    if (closed.load()) return done(make_error(ErrorKind::unavailable, "redis store closed"));
    // Load shedding: past the bound the draw fails at once instead of queueing behind the
    // others (and their command timeouts) in the pipelines.
    if (in_flight.fetch_add(1, std::memory_order_relaxed) >= options.max_in_flight_draws) {
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      shed.fetch_add(1, std::memory_order_relaxed);
      return done(make_error(ErrorKind::unavailable, "too many draws in flight to Redis"));
    }
    auto op = std::make_shared<DrawOp>();
    op->done = [self = shared_from_this(), done = std::move(done)](Result<DrawOutcome> r) {
      self->in_flight.fetch_sub(1, std::memory_order_relaxed);
      done(std::move(r));
    };
    op->draw_id = make_ulid(command_in.now_ms, entropy);
    op->command = std::move(command_in);
    // The activity's config, from the cache (no callback made on this path) or Redis; the
    // draw is refused if there is none.
    if (auto act = cached(op->command.activity_id)) return with_config(op, std::move(act));
    reload_config(op, [self = shared_from_this(), op](ActivityPtr act) { self->with_config(op, std::move(act)); });
  }

  void with_config(const std::shared_ptr<DrawOp>& op, ActivityPtr act) {
    if (!options.require_token) return run_draw(op, act);
    take_token(op, std::move(act));
  }

  void reload_config(const std::shared_ptr<DrawOp>& op, std::function<void(ActivityPtr)> next) {
    load_config(op->command.activity_id, *draws,
                [self = shared_from_this(), op, next = std::move(next)](Result<ActivityPtr> act) {
                  if (!act.ok()) return self->refuse(op, act.error());
                  next(std::move(act.value()));
                });
  }

  // Tokens live outside the activity's hash slot, so they are consumed by their own
  // command; the script then only learns whether this request holds a live one.
  void take_token(const std::shared_ptr<DrawOp>& op, ActivityPtr act) {
    command(*draws, {"GETDEL", kTokenPrefix + op->command.idempotency_key},
            [self = shared_from_this(), op, act](Result<RedisReply> reply) {
              if (!reply.ok()) return op->done(reply.error());
              if (reply->is_error()) return op->done(reply_error(*reply));
              op->token = DrawOp::Token::missing;
              if (reply->is_string()) {
                const auto expires = to_int(reply->str);
                if (expires && *expires > op->command.now_ms) {
                  op->token = DrawOp::Token::taken;
                  op->token_expires_at_ms = *expires;
                }
              }
              self->run_draw(op, act);
            });
  }

  void run_draw(const std::shared_ptr<DrawOp>& op, ActivityPtr act) {
    if (++op->attempts > kMaxDrawAttempts) {
      return refuse(op, make_error(ErrorKind::unavailable,
                                   "the draw did not settle (the activity keeps changing)"));
    }
    const DrawCommand& c = op->command;
    const std::string& prefix = act->prefix;
    const std::int64_t day = act->time_zone.local_day(c.now_ms);
    const char* token = op->token == DrawOp::Token::not_required ? "0"
                        : op->token == DrawOp::Token::taken      ? "1"
                                                                 : "2";
    // Written straight as RESP (one buffer, no argv of strings): this runs once per draw.
    std::array<char, 24> day_digits{};
    const auto day_end = std::to_chars(day_digits.data(), day_digits.data() + day_digits.size(), day).ptr;
    const std::string_view day_text(day_digits.data(), static_cast<std::size_t>(day_end - day_digits.data()));
    CommandWriter command = draw_script.begin(
        10, 9, 640 + 4 * (c.user_id.size() + c.idempotency_key.size() + c.activity_id.size()) + 12 * prefix.size());
    command.arg(prefix, "cfg").arg(prefix, "seq").arg(prefix, "wins").arg(prefix, "users");
    command.arg(act->day_prefix, day_text).arg(act->idem_prefix, c.idempotency_key);
    command.arg(prefix, "stream").arg(prefix, "chain").arg(prefix, "unpersisted");
    command.arg(prefix, "unpersisted:byuser");
    command.arg(c.user_id).arg(c.now_ms).arg(op->draw_id).arg(act->version).arg(token);
    command.arg(std::max<std::int64_t>(1, options.idempotency_ttl_ms)).arg(c.activity_id);
    command.arg(c.idempotency_key).arg(prefix);
    // Three shared_ptrs: the callback stays inline in RedisCallback (no allocation).
    draw_script.call(*draws, prefix, std::move(command),
                     [self = shared_from_this(), op, act](Result<RedisReply> reply) {
                       self->note_health(reply);
                       self->on_draw_reply(op, act, reply);
                     });
  }

  void on_draw_reply(const std::shared_ptr<DrawOp>& op, const ActivityPtr& act, Result<RedisReply>& reply) {
    // A failed call may or may not have run the script: the client retries with the same
    // key and gets either the stored result or a fresh draw, never two.
    if (!reply.ok()) return refuse(op, reply.error());
    if (reply->is_error()) return refuse(op, reply_error(*reply));
    const std::string_view tag = tag_of(*reply);
    const auto& e = reply->elements;
    if (tag == "ok" || tag == "replay") {
      auto record = parse_record(*reply, op->command);
      if (!record.ok()) return op->done(record.error());
      return op->done(DrawOutcome{std::move(record.value()), tag == "replay"});
    }
    if (tag == "mismatch") {
      return op->done(make_error(ErrorKind::idempotency_key_reused,
                                 "this Idempotency-Key was used with a different request body"));
    }
    if (tag == "invalid_token") {
      return op->done(make_error(ErrorKind::invalid_token,
                                 "the Idempotency-Key is not a live token issued by POST /tokens"));
    }
    if (tag == "not_found") {
      forget(op->command.activity_id);
      return refuse(op, not_found(op->command.activity_id));
    }
    if (tag == "not_active") {
      const std::string status = e.size() > 1 ? e[1].str : "ended";
      return refuse(op, make_error(ErrorKind::activity_not_active, "the activity is " + status));
    }
    if (tag == "quota") {
      return refuse(op, make_error(ErrorKind::quota_exhausted,
                                   "the user has no draws left in this activity"));
    }
    if (tag == "stale") {
      return reload_config(op, [self = shared_from_this(), op](ActivityPtr fresh) {
        self->run_draw(op, std::move(fresh));
      });
    }
    if (tag == "need_epoch" && e.size() > 1) {
      const auto epoch = to_int(e[1].str);
      if (!epoch) return refuse(op, internal("redis: malformed epoch number"));
      // Preparation fell behind: this draw prepares the epoch (shared with any other draw
      // of this instance waiting for it), then tries again.
      epochs_built_on_draw_path.fetch_add(1, std::memory_order_relaxed);
      return ensure_epoch(act, *epoch, [self = shared_from_this(), op, act](Result<bool> ready) {
        if (!ready.ok()) return self->refuse(op, ready.error());
        if (ready.value()) return self->run_draw(op, act);
        self->reload_config(op, [self, op](ActivityPtr fresh) { self->run_draw(op, std::move(fresh)); });
      });
    }
    if (tag == "corrupt") {
      const std::string why = e.size() > 1 ? e[1].str : "inconsistent state";
      return refuse(op, internal("activity '" + op->command.activity_id + "': " + why));
    }
    refuse(op, internal("redis: unexpected draw reply"));
  }

  // A refused draw gives its token back (as the embedded engine does), before it answers,
  // so that a retry with the same token finds it.
  void refuse(const std::shared_ptr<DrawOp>& op, Error error) {
    const std::int64_t left = op->token_expires_at_ms - op->command.now_ms;
    if (op->token != DrawOp::Token::taken || left <= 0 || closed.load()) {
      return op->done(std::move(error));
    }
    op->token = DrawOp::Token::missing;
    command(*draws,
            {"SET", kTokenPrefix + op->command.idempotency_key,
             std::to_string(op->token_expires_at_ms), "PX", std::to_string(left)},
            [op, error = std::move(error)](Result<RedisReply>) mutable { op->done(std::move(error)); });
  }

  // ---- Activities ---------------------------------------------------------------------

  Result<ActivityView> view_from(const std::string& id, const Result<RedisReply>& reply,
                                 std::int64_t now_ms) {
    if (!reply.ok()) return reply.error();
    if (reply->is_error()) return reply_error(*reply);
    if (!reply->is_array()) return internal("redis: malformed activity reply");
    const auto& e = reply->elements;
    if (e.empty()) return not_found(id);
    if (e.size() != 6 || !e[5].is_array()) return internal("redis: malformed activity reply");
    auto act = decoded(id, e[0].str, e[1].str, e[3].str, e[2].str == "1");
    if (!act.ok()) return act.error();
    const ActivityConfig& config = act.value()->config;
    std::unordered_map<std::string, std::int64_t> wins;
    for_each_pair(e[5], 0, [&](std::string_view prize, const std::string& count) {
      wins[std::string(prize)] = to_int(count).value_or(0);
    });
    ActivityView view;
    view.id = id;
    view.config = config;
    view.status = activity_status_at(config, act.value()->ended, now_ms);
    view.epoch_size = config.deck_size();
    view.draws = to_int(e[4].str).value_or(0);
    for (const Prize& prize : config.prizes) {
      const auto it = wins.find(prize.id);
      const std::int64_t won = it == wins.end() ? 0 : it->second;
      view.prizes.push_back(PrizeView{prize, std::max<std::int64_t>(0, prize.stock - won)});
    }
    return view;
  }

  std::vector<std::string> read_keys(const std::string& id) {
    const std::string prefix = prefix_of(id);
    return {prefix + "cfg", prefix + "seq", prefix + "wins"};
  }

  Result<ActivityView> get_activity(const std::string& id, std::int64_t now_ms) {
    if (!is_valid_id(id)) return not_found(id);
    return view_from(id, script_sync(read_script, read_keys(id), {}), now_ms);
  }

  std::vector<ActivityView> list_activities(std::int64_t now_ms) {
    std::vector<ActivityView> views;
    auto members = command_sync({"SMEMBERS", kActivitiesKey});
    if (!members.ok() || !members->is_array()) return views;
    std::vector<std::string> ids;
    for (const auto& m : members->elements) {
      if (is_valid_id(m.str)) ids.push_back(m.str);
    }
    std::sort(ids.begin(), ids.end());
    for (std::size_t from = 0; from < ids.size(); from += kListBatch) {
      const std::size_t to = std::min(ids.size(), from + kListBatch);
      std::vector<std::future<Result<RedisReply>>> replies;
      for (std::size_t i = from; i < to; ++i) {
        auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
        replies.push_back(promise->get_future());
        script(read_script, *admin, read_keys(ids[i]), {},
               [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
      }
      for (std::size_t i = from; i < to; ++i) {
        auto view = view_from(ids[i], wait(replies[i - from], sync_limit), now_ms);
        if (view.ok()) views.push_back(std::move(view.value()));
      }
    }
    return views;
  }

  Result<bool> put_activity(const std::string& id, ActivityConfig config, std::int64_t now_ms) {
    if (!is_valid_id(id)) return make_error(ErrorKind::invalid_request, "id: invalid activity id");
    if (auto valid = validate_activity(config); !valid.ok()) return valid.error();
    if (auto tz = TimeZone::load(config.time_zone, options.zoneinfo_dir); !tz.ok()) {
      return make_error(ErrorKind::invalid_request, "time_zone: " + tz.error().detail);
    }
    if (!options.encode_config) return internal("redis store: no encode_config");
    const std::string json = options.encode_config(config);
    const std::string prefix = prefix_of(id);

    std::vector<std::string> fields{"json", json};
    auto optional_field = [&](const char* name, const std::optional<std::int64_t>& value) {
      if (!value) return;
      fields.emplace_back(name);
      fields.push_back(std::to_string(*value));
    };
    optional_field("starts_at_ms", config.starts_at_ms);
    optional_field("ends_at_ms", config.ends_at_ms);
    optional_field("max_draws_per_user", config.max_draws_per_user);
    optional_field("max_draws_per_user_per_day", config.max_draws_per_user_per_day);
    for (std::size_t i = 0; i < config.prizes.size(); ++i) {
      const std::string n = std::to_string(i);
      const Prize& prize = config.prizes[i];
      fields.insert(fields.end(), {"prize_id:" + n, prize.id, "prize_stock:" + n,
                                   std::to_string(prize.stock), "prize_name:" + n, prize.name});
    }

    // Listed before it exists: list_activities skips ids without a config, and a PUT that
    // failed half-way is fixed by the next one.
    auto listed = command_sync({"SADD", kActivitiesKey, id});
    if (!listed.ok()) return listed.error();
    if (listed->is_error()) return reply_error(*listed);

    // The new chain's first epoch, built once (outside the script: the shuffle is the slow
    // part) and only published by the script.
    std::optional<std::array<std::string, 3>> fresh;  // seed hex, commitment, deck
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto current = command_sync({"HMGET", prefix + "cfg", "json", "version", "ended"});
      if (!current.ok()) return current.error();
      if (current->is_error()) return reply_error(*current);
      if (!current->is_array() || current->elements.size() != 3) {
        return internal("redis: malformed config reply");
      }
      const auto& e = current->elements;
      const bool creating = e[1].is_nil();
      bool new_deck = creating;
      if (!creating) {
        if (e[2].str == "1") {
          return make_error(ErrorKind::activity_not_active, "the activity has ended for good");
        }
        auto old = decode(e[0].str);
        if (!old.ok()) return internal("activity '" + id + "': stored config unreadable");
        new_deck = !old->same_deck(config);
      }
      if (new_deck && !fresh) {
        Seed seed{};
        entropy.fill(seed);
        std::vector<std::uint32_t> weights;
        for (const Prize& prize : config.prizes) weights.push_back(prize.weight);
        fresh = std::array<std::string, 3>{
            to_hex(seed), commitment_hex(seed), pack_deck(build_deck(seed, weights, config.miss_weight))};
      }
      std::vector<std::string> args{creating ? "0" : e[1].str,
                                    std::to_string(now_ms),
                                    prefix,
                                    new_deck ? "1" : "0",
                                    new_deck ? (*fresh)[0] : "",
                                    new_deck ? (*fresh)[1] : "",
                                    prizes_json(config),
                                    std::to_string(config.miss_weight),
                                    std::to_string(config.deck_size()),
                                    new_deck ? (*fresh)[2] : "",
                                    std::to_string(config.prizes.size())};
      args.insert(args.end(), fields.begin(), fields.end());
      auto reply = script_sync(put_script, {prefix + "cfg", prefix + "chain", prefix + "seq"},
                               std::move(args));
      if (!reply.ok()) return reply.error();
      if (reply->is_error()) return reply_error(*reply);
      const std::string_view tag = tag_of(*reply);
      if (tag == "conflict") continue;
      if (tag == "ended") {
        return make_error(ErrorKind::activity_not_active, "the activity has ended for good");
      }
      if (tag == "corrupt") return internal("activity '" + id + "': no epoch chain");
      if (tag != "ok") return internal("redis: unexpected put reply");
      forget(id);
      return creating;
    }
    return make_error(ErrorKind::unavailable, "the activity is being changed concurrently; retry");
  }

  Status end_activity(const std::string& id, std::int64_t now_ms) {
    if (!is_valid_id(id)) return not_found(id);
    const std::string prefix = prefix_of(id);
    auto reply = script_sync(end_script, {prefix + "cfg", prefix + "chain", prefix + "seq"},
                             {std::to_string(now_ms), prefix});
    if (!reply.ok()) return reply.error();
    if (reply->is_error()) return reply_error(*reply);
    if (reply->str == "not_found") return not_found(id);
    if (reply->str != "ok") return internal("redis: unexpected end reply");
    forget(id);
    return ok_status();
  }

  Result<std::vector<EpochView>> fairness(const std::string& id) {
    if (!is_valid_id(id)) return not_found(id);
    const std::string prefix = prefix_of(id);
    auto reply = script_sync(fairness_script, {prefix + "cfg", prefix + "chain"}, {prefix});
    if (!reply.ok()) return reply.error();
    if (reply->is_error()) return reply_error(*reply);
    const std::string_view tag = tag_of(*reply);
    if (tag == "not_found") return not_found(id);
    if (tag != "ok") return internal("redis: unexpected fairness reply");
    std::vector<EpochView> views;
    for (std::size_t i = 1; i < reply->elements.size(); ++i) {
      EpochView view;
      EpochRecord& rec = view.record;
      rec.activity_id = id;
      bool ok = true;
      for_each_pair(reply->elements[i], 0, [&](std::string_view name, const std::string& value) {
        if (name == "epoch") {
          rec.epoch = to_int(value).value_or(-1);
        } else if (name == "seed") {
          if (auto seed = seed_from_hex(value)) rec.seed = *seed; else ok = false;
        } else if (name == "commitment") {
          rec.commitment = value;
        } else if (name == "prizes") {
          if (auto prizes = parse_prizes_json(value)) rec.prizes = std::move(*prizes); else ok = false;
        } else if (name == "miss_weight") {
          rec.miss_weight = static_cast<std::uint32_t>(to_int(value).value_or(0));
        } else if (name == "size") {
          rec.epoch_size = static_cast<std::uint64_t>(to_int(value).value_or(0));
        } else if (name == "first_seq") {
          rec.first_seq = to_int(value);
        } else if (name == "revealed_at_ms") {
          rec.revealed_at_ms = to_int(value);
        }
      });
      if (!ok || rec.commitment.empty()) {
        return internal("activity '" + id + "': epoch record " + std::to_string(i - 1) + " is malformed");
      }
      view.first_seq = rec.first_seq;
      // Over: exhausted (its last slot drawn) or ended by a change: only then does Redis
      // hand the seed out at all.
      view.revealed = rec.revealed_at_ms.has_value();
      if (!view.revealed) rec.seed = Seed{};
      views.push_back(std::move(view));
    }
    return views;
  }

  Result<IssuedToken> issue_token(std::int64_t now_ms) {
    std::array<std::uint8_t, 16> bytes{};
    entropy.fill(bytes);
    IssuedToken token{encode_base64url(bytes), now_ms + options.token_ttl_ms};
    auto reply = command_sync({"SET", kTokenPrefix + token.token, std::to_string(token.expires_at_ms),
                               "PX", std::to_string(std::max<std::int64_t>(1, options.token_ttl_ms))});
    if (!reply.ok()) return reply.error();
    if (reply->is_error()) return reply_error(*reply);
    return token;
  }

  // ---- Draws not yet persisted ---------------------------------------------------------

  // One lookup script per activity, pipelined (each to its master); the records found.
  Result<std::vector<DrawRecord>> find_unpersisted(const std::vector<std::string>& activities,
                                                   const std::vector<std::string>& args,
                                                   const std::string& user) {
    std::vector<std::future<Result<RedisReply>>> replies;
    replies.reserve(activities.size());
    for (const std::string& id : activities) {
      const std::string prefix = prefix_of(id);
      std::vector<std::string> keys{prefix + "unpersisted", prefix + "stream"};
      if (!user.empty()) {
        keys.push_back(prefix + "unpersisted:u:" + user);  // written by versions before 2026-11-25
        keys.push_back(prefix + "unpersisted:byuser");
      }
      auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
      replies.push_back(promise->get_future());
      script(find_unpersisted_script, *admin, std::move(keys), args,
             [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    }
    std::vector<DrawRecord> out;
    for (auto& future : replies) {
      auto reply = wait(future, sync_limit);
      if (!reply.ok()) return reply.error();
      if (reply->is_error()) return reply_error(*reply);
      for (const RedisReply& fields : reply->elements) {
        if (auto rec = record_from_stream(fields)) out.push_back(std::move(*rec));
      }
    }
    return out;
  }

  std::vector<std::string> activity_ids() {
    std::vector<std::string> ids;
    auto members = command_sync({"SMEMBERS", kActivitiesKey});
    if (!members.ok() || !members->is_array()) return ids;
    for (const auto& m : members->elements) {
      if (is_valid_id(m.str)) ids.push_back(m.str);
    }
    return ids;
  }

  Result<std::optional<DrawRecord>> find_unpersisted_draw(const std::string& draw_id) {
    auto found = find_unpersisted(activity_ids(), {"id", draw_id}, "");
    if (!found.ok()) return found.error();
    for (DrawRecord& rec : found.value()) {
      if (rec.draw_id == draw_id) return std::optional<DrawRecord>(std::move(rec));
    }
    return std::optional<DrawRecord>();
  }

  Result<std::vector<DrawRecord>> unpersisted_user_draws(const std::string& user_id,
                                                         const std::optional<std::string>& activity_id,
                                                         std::size_t limit, std::optional<std::int64_t> at_or_before_ms) {
    if (user_id.empty() || limit == 0) return std::vector<DrawRecord>{};
    std::vector<std::string> ids;
    if (activity_id) {
      if (is_valid_id(*activity_id)) ids.push_back(*activity_id);
    } else {
      ids = activity_ids();
    }
    auto found = find_unpersisted(
        ids, {"user", std::to_string(limit), at_or_before_ms ? std::to_string(*at_or_before_ms) : "", user_id},
        user_id);
    if (!found.ok()) return found.error();
    std::vector<DrawRecord>& records = found.value();
    std::erase_if(records, [&](const DrawRecord& r) { return r.user_id != user_id; });
    return std::move(records);
  }

  // ---- Preparation --------------------------------------------------------------------

  // Keeps the decks of the next few epochs of the activity's chain ready and verified.
  Status prepare_activity(const std::string& id) {
    const std::string prefix = prefix_of(id);
    auto state = script_sync(chain_script, {prefix + "cfg", prefix + "chain", prefix + "seq"}, {});
    if (!state.ok()) return state.error();
    if (state->is_error()) return reply_error(*state);
    const auto& e = state->elements;
    if (e.empty()) return ok_status();
    if (e.size() != 8) return internal("redis: malformed chain reply");
    if (e[1].str == "1" || e[3].str.empty()) return ok_status();  // ended
    const auto first_epoch = to_int(e[3].str);
    const auto origin = to_int(e[4].str);
    const auto size = to_int(e[5].str);
    const auto seq = to_int(e[7].str);
    if (!first_epoch || !origin || !size || !seq || *size <= 0) {
      return internal("redis: malformed chain reply");
    }
    ActivityPtr act = cached(id);
    if (!act || act->deck_version != e[2].str) {
      auto loaded = load_config_sync(id);
      if (!loaded.ok()) return loaded.error();
      act = loaded.value();
      if (act->deck_version != e[2].str) return ok_status();  // changed meanwhile: next tick
    }
    const std::int64_t current = *first_epoch + std::max<std::int64_t>(0, *seq - *origin) / *size;
    const auto per_epoch = static_cast<std::uint64_t>(*size);
    const std::int64_t ahead = std::min<std::int64_t>(
        kMaxEpochsAhead, static_cast<std::int64_t>(std::max<std::uint64_t>(
                             1, (options.prepare_ahead_draws + per_epoch - 1) / per_epoch)));
    std::int64_t from = current;
    {
      std::lock_guard lock(ensured_mutex);
      if (auto it = ensured_through.find(id); it != ensured_through.end()) {
        from = std::max(from, it->second + 1);
      }
    }
    for (std::int64_t epoch = from; epoch <= current + ahead; ++epoch) {
      auto ready = ensure_epoch_sync(act, epoch);
      if (!ready.ok()) return ready.error();
      if (!ready.value()) return ok_status();  // the chain changed: next tick
      std::lock_guard lock(ensured_mutex);
      auto& through = ensured_through[id];
      through = std::max(through, epoch);
    }
    return ok_status();
  }

  void prepare_epochs() {
    auto members = command_sync({"SMEMBERS", kActivitiesKey});
    if (!members.ok() || !members->is_array()) return;
    for (const auto& m : members->elements) {
      if (is_valid_id(m.str)) (void)prepare_activity(m.str);
    }
  }

  Status prepare_epoch(const std::string& id, std::int64_t epoch) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto act = load_config_sync(id);
      if (!act.ok()) return act.error();
      if (act.value()->ended) return make_error(ErrorKind::activity_not_active, "the activity is ended");
      auto ready = ensure_epoch_sync(act.value(), epoch);
      if (!ready.ok()) return ready.error();
      if (ready.value()) return ok_status();
    }
    return make_error(ErrorKind::unavailable, "the activity is being changed concurrently; retry");
  }
};

RedisStore::RedisStore(boost::asio::io_context& io, RedisStoreOptions options, Clock& clock,
                       Entropy& entropy)
    : impl_(std::make_shared<Impl>(io, std::move(options), clock, entropy)) {
  // Settles ready() as soon as the server answers.
  impl_->command(*impl_->admin, {"PING"}, [](Result<RedisReply>) {});
}

RedisStore::~RedisStore() { impl_->close(); }

void RedisStore::draw(DrawCommand command, DrawCallback done) {
  impl_->draw(std::move(command), std::move(done));
}

Result<ActivityView> RedisStore::get_activity(const std::string& id, std::int64_t now_ms) {
  return impl_->get_activity(id, now_ms);
}

std::vector<ActivityView> RedisStore::list_activities(std::int64_t now_ms) {
  return impl_->list_activities(now_ms);
}

Result<bool> RedisStore::put_activity(const std::string& id, ActivityConfig config,
                                      std::int64_t now_ms) {
  return impl_->put_activity(id, std::move(config), now_ms);
}

Status RedisStore::end_activity(const std::string& id, std::int64_t now_ms) {
  return impl_->end_activity(id, now_ms);
}

Result<std::vector<EpochView>> RedisStore::fairness(const std::string& id) {
  return impl_->fairness(id);
}

Result<IssuedToken> RedisStore::issue_token(std::int64_t now_ms) { return impl_->issue_token(now_ms); }

void RedisStore::prepare_epochs() { impl_->prepare_epochs(); }

Status RedisStore::prepare_epoch(const std::string& id, std::int64_t epoch) {
  return impl_->prepare_epoch(id, epoch);
}

// Idempotency results and tokens expire in Redis (PX); nothing to do here.
void RedisStore::expire(std::int64_t) {}

bool RedisStore::ready() const {
  return !impl_->closed.load() && impl_->healthy.load(std::memory_order_relaxed);
}

Result<std::optional<DrawRecord>> RedisStore::find_unpersisted_draw(const std::string& draw_id) {
  return impl_->find_unpersisted_draw(draw_id);
}

Result<std::vector<DrawRecord>> RedisStore::unpersisted_user_draws(const std::string& user_id,
                                                                    const std::optional<std::string>& activity_id,
                                                                    std::size_t limit,
                                                                    std::optional<std::int64_t> at_or_before_ms) {
  return impl_->unpersisted_user_draws(user_id, activity_id, limit, at_or_before_ms);
}

std::uint64_t RedisStore::draws_shed() const { return impl_->shed.load(std::memory_order_relaxed); }

RedisRouterStats RedisStore::router_stats() const { return impl_->draws->stats(); }

StoreStats RedisStore::stats() const {
  StoreStats s;
  s.in_flight_draws = impl_->in_flight.load(std::memory_order_relaxed);
  s.draws_shed = impl_->shed.load(std::memory_order_relaxed);
  s.epochs_prepared = impl_->epochs_prepared.load(std::memory_order_relaxed);
  s.epochs_built_on_draw_path = impl_->epochs_built_on_draw_path.load(std::memory_order_relaxed);
  return s;
}

}  // namespace fairdraw::redis
