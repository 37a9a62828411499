// StreamWorker: Redis streams -> Sink, through the consumer group "fairdraw-persist".
// One loop thread does everything in order (discover, claim, read, persist, ack), waiting on
// the Redis connections' callbacks and on the sink's acks; the io thread runs the two
// connections and, on a timer of its own, the maintenance pass (trim and lag), which never
// waits for the loop. See the header for the guarantees.
#include "fairdraw/redis/stream_worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "fairdraw/redis/cluster.hpp"
#include "fairdraw/redis/script.hpp"
#include "fairdraw/thread_name.hpp"
#include "redis_store_scripts.hpp"

#include "redis_asio.hpp"

namespace fairdraw::redis {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// RedisStore's key layout (redis_store.hpp): the activity set and each activity's stream.
constexpr const char* kActivitiesKey = "fd:activities";
// XAUTOCLAIM pages per stream and claim pass, so one huge backlog cannot starve the rest.
constexpr int kMaxClaimPages = 16;
// The same Redis or sink problem is logged at most this often.
constexpr auto kLogEvery = 10s;
constexpr auto kRedisBackoffMin = 100ms;
constexpr auto kRedisBackoffMax = 2000ms;

std::string stream_key(std::string_view activity) {
  return "fd:{" + std::string(activity) + "}:stream";
}

std::optional<std::int64_t> to_int(std::string_view text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// Trim and lag of one stream, atomically: the trim point is the group's oldest pending entry,
// or just past its last delivered entry when nothing is pending. Everything before it was
// delivered (">" delivers in id order) and is no longer pending, i.e. acked.
// KEYS: 1 stream. ARGV: 1 group.
// Returns {pending, lag (-1: unknown), length, trimmed}, or {} when the stream or group is missing.
constexpr const char* kMaintainScript = R"lua(
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) ~= 'table' or groups.err then return {} end
local last, lag = nil, false
for _, info in ipairs(groups) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == ARGV[1] then
    last = fields['last-delivered-id']
    lag = fields['lag']
  end
end
if not last then return {} end
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
local pending = summary[1]
local minid
if pending > 0 then
  minid = summary[2]
else
  local ms, seq = string.match(last, '^(%d+)%-(%d+)$')
  if not ms then return redis.error_reply('unexpected last-delivered-id ' .. tostring(last)) end
  minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
local trimmed = 0
if minid ~= '0-1' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minid) end
if type(lag) ~= 'number' then lag = -1 end
return {pending, lag, redis.call('XLEN', KEYS[1]), trimmed}
)lua";

// Removes consumers with nothing pending that have been idle for long (instances gone).
// KEYS: 1 stream. ARGV: 1 group, 2 idle ms, 3 this consumer. Returns how many went.
constexpr const char* kForgetConsumersScript = R"lua(
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) ~= 'table' or consumers.err then return 0 end
local limit, removed = tonumber(ARGV[2]), 0
for _, info in ipairs(consumers) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] ~= ARGV[3] and fields['pending'] == 0 and fields['idle'] > limit then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
)lua";

// One stream entry as read, with its record or what is wrong with it.
struct Entry {
  std::string activity_id;  // of the stream it came from
  std::string id;           // stream entry id
  std::optional<DrawRecord> record;
  std::string problem;              // set when malformed
  std::vector<std::string> fields;  // field/value pairs, kept only when malformed
  int healthy_refusals = 0;
};

// The reply's strings are moved into the entry (a round holds thousands), but only once the
// entry is known to be well-formed: a malformed one keeps every field for the dead letter.
Entry parse_entry(const std::string& activity, RedisReply& item) {
  Entry e;
  e.activity_id = activity;
  if (!item.is_array() || item.elements.size() != 2 || !item.elements[0].is_string()) {
    e.problem = "not a stream entry";
    return e;
  }
  e.id = std::move(item.elements[0].str);
  RedisReply& fields = item.elements[1];
  if (!fields.is_array()) {
    e.problem = "the entry has no fields";
    return e;
  }
  // Pass 1: where each field is, and whether the numbers parse.
  std::string* draw_id = nullptr;
  std::string* activity_field = nullptr;
  std::string* user = nullptr;
  std::string* key = nullptr;
  std::string* candidate = nullptr;
  std::string* prize = nullptr;
  std::string* prize_name = nullptr;
  std::optional<std::int64_t> seq, epoch, slot, drawn_at;
  std::optional<bool> won;
  for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    const std::string& name = fields.elements[i].str;
    std::string& value = fields.elements[i + 1].str;
    if (name == "draw_id") {
      draw_id = &value;
    } else if (name == "activity_id") {
      activity_field = &value;
    } else if (name == "seq") {
      seq = to_int(value);
    } else if (name == "epoch") {
      epoch = to_int(value);
    } else if (name == "slot") {
      slot = to_int(value);
    } else if (name == "user_id") {
      user = &value;
    } else if (name == "idempotency_key") {
      key = &value;
    } else if (name == "won") {
      if (value == "0" || value == "1") won = value == "1";
    } else if (name == "drawn_at_ms") {
      drawn_at = to_int(value);
    } else if (name == "candidate_id") {
      candidate = &value;
    } else if (name == "prize_id") {
      prize = &value;
    } else if (name == "prize_name") {
      prize_name = &value;
    }
  }
  if (draw_id == nullptr || draw_id->empty() || activity_field == nullptr || user == nullptr || key == nullptr ||
      !seq || !epoch || !slot || !drawn_at || !won) {
    e.problem = "a field of the draw is missing or malformed";
  } else if (*activity_field != activity) {
    e.problem = "activity_id '" + *activity_field + "' differs from the stream's";
  } else if (*won != (prize != nullptr)) {
    e.problem = "won and prize_id disagree";
  }
  if (!e.problem.empty()) {
    for (const RedisReply& f : fields.elements) e.fields.push_back(f.str);
    return e;
  }
  // Pass 2: well-formed, the strings move.
  DrawRecord r;
  r.draw_id = std::move(*draw_id);
  r.activity_id = std::move(*activity_field);
  r.user_id = std::move(*user);
  r.idempotency_key = std::move(*key);
  if (candidate != nullptr) r.candidate_id = std::move(*candidate);
  if (prize != nullptr) r.prize_id = std::move(*prize);
  if (prize_name != nullptr) r.prize_name = std::move(*prize_name);
  r.seq = *seq;
  r.epoch = *epoch;
  r.slot = *slot;
  r.drawn_at_ms = *drawn_at;
  r.won = *won;
  e.record = std::move(r);
  return e;
}

// Entries of a [[id, [field, value, …]], …] array.
void parse_entries(const std::string& activity, RedisReply& list, std::vector<Entry>& out) {
  if (!list.is_array()) return;
  out.reserve(out.size() + list.elements.size());
  for (RedisReply& item : list.elements) {
    Entry e = parse_entry(activity, item);
    if (!e.id.empty()) out.push_back(std::move(e));
  }
}

// The acks of one round: 0 waiting, 1 durable, 2 refused.
struct Round {
  explicit Round(std::size_t n) : state(n, 0), left(n) {}
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<char> state;
  std::size_t left;

  void done(std::size_t i, bool durable) {
    std::lock_guard lock(mutex);
    if (state[i] != 0) return;
    state[i] = durable ? 1 : 2;
    if (--left == 0) cv.notify_all();
  }
};

// One maintenance pass in flight: the replies of the maintain script, one per stream.
struct MaintainPass {
  explicit MaintainPass(std::vector<std::string> a) : activities(std::move(a)), replies(activities.size()) {}
  std::mutex mutex;
  std::vector<std::string> activities;
  std::vector<std::optional<Result<RedisReply>>> replies;
  std::size_t answered = 0;  // guarded by mutex
};

}  // namespace

struct StreamWorker::Impl {
  Impl(StreamWorkerOptions o, Sink& s)
      : options(std::move(o)),
        sink(s),
        guard(net::make_work_guard(io)),
        maintain_timer(io),
        maintain_script(kMaintainScript),
        forget_script(kForgetConsumersScript),
        forget_persisted_script(scripts::kForgetPersisted) {
    options.batch = std::max<std::size_t>(1, options.batch);
    options.max_round = std::max(options.max_round, options.batch);
    options.block = std::max(options.block, 1ms);
    options.poison_after = std::max(1, options.poison_after);
    if (options.consumer.empty()) options.consumer = default_consumer_name();
    call_limit = options.redis.connect_timeout + options.redis.command_timeout + options.block + 1000ms;
  }

  StreamWorkerOptions options;
  Sink& sink;
  net::io_context io;
  net::executor_work_guard<net::io_context::executor_type> guard;
  // The maintenance pass (trim and lag) runs on the io thread, by this timer, apart from the
  // loop: a round blocked on the sink (PostgreSQL down) must not freeze the lag figures.
  net::steady_timer maintain_timer;  // io thread only
  std::thread io_thread;
  std::thread loop_thread;
  std::shared_ptr<RedisRouter> reader;   // XREADGROUP only (it may BLOCK)
  std::shared_ptr<RedisRouter> control;  // everything else
  const RedisScript maintain_script;
  const RedisScript forget_script;
  const RedisScript forget_persisted_script;
  std::chrono::milliseconds call_limit{};

  std::mutex lifecycle_mutex;  // start() and stop()
  bool started = false;
  bool stopped = false;

  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false;                 // guarded by stop_mutex
  SteadyClock::time_point drain_deadline;  // guarded by stop_mutex
  std::atomic<bool> stop_flag{false};

  // Counters (any thread reads them).
  std::atomic<std::uint64_t> read_count{0}, claimed_count{0}, acked_count{0}, refused_count{0},
      poisoned_count{0}, dead_count{0}, trimmed_count{0}, redis_error_count{0};
  std::atomic<std::size_t> retrying_count{0};
  std::atomic<bool> redis_ok{false};
  mutable std::mutex lag_mutex;
  std::vector<StreamLag> lag;  // guarded by lag_mutex
  std::vector<std::string> maintained;  // the streams with the group, for the maintenance pass; guarded by lag_mutex
  std::atomic<bool> groups_lost{false};  // the maintenance pass found a stream or group gone

  // Loop thread only.
  std::set<std::string> grouped;         // activities whose stream has the group
  std::vector<std::string> streams;      // the same, sorted
  std::size_t next_chunk = 0;
  std::size_t empty_chunks = 0;
  std::vector<Entry> retry;
  SteadyClock::time_point retry_at{};
  std::chrono::milliseconds retry_backoff{0};
  std::chrono::milliseconds redis_backoff{0};
  SteadyClock::time_point next_discover{}, next_claim{};
  std::mutex log_mutex;  // the loop and the io thread (maintenance) both log
  std::unordered_map<std::string, SteadyClock::time_point> logged_at;  // guarded by log_mutex

  // ---- logging --------------------------------------------------------------------------

  void log(WorkerLogLevel level, std::string_view message, std::string_view detail = {}) {
    if (options.log) options.log(level, message, detail);
  }

  // At most once per kLogEvery for the same message.
  void log_limited(WorkerLogLevel level, const std::string& message, std::string_view detail) {
    const auto now = SteadyClock::now();
    {
      std::lock_guard lock(log_mutex);
      auto [it, fresh] = logged_at.try_emplace(message, now);
      if (!fresh && now - it->second < kLogEvery) return;
      it->second = now;
    }
    log(level, message, detail);
  }

  // ---- stopping -------------------------------------------------------------------------

  bool stop_requested() const { return stop_flag.load(std::memory_order_acquire); }

  // Sleeps until `until` or stop; false when stopping.
  bool sleep_until(SteadyClock::time_point until) {
    std::unique_lock lock(stop_mutex);
    stop_cv.wait_until(lock, until, [&] { return stopping; });
    return !stopping;
  }

  bool drain_expired() {
    std::lock_guard lock(stop_mutex);
    return stopping && SteadyClock::now() >= drain_deadline;
  }

  // ---- Redis calls (blocking, on the loop thread) ----------------------------------------

  void note(const Result<RedisReply>& reply) {
    if (reply.ok() && !reply->is_error()) {
      redis_ok.store(true, std::memory_order_relaxed);
      return;
    }
    redis_error_count.fetch_add(1, std::memory_order_relaxed);
    if (!reply.ok() && reply.error().kind == ErrorKind::unavailable) {
      redis_ok.store(false, std::memory_order_relaxed);
    }
  }

  Result<RedisReply> wait(std::future<Result<RedisReply>>& future) {
    if (future.wait_for(call_limit) != std::future_status::ready) {
      return make_error(ErrorKind::unavailable, "redis: no answer in time");
    }
    auto reply = future.get();
    note(reply);
    return reply;
  }

  Result<RedisReply> call(RedisRouter& router, const std::string& key, std::vector<std::string> argv) {
    auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
    auto future = promise->get_future();
    router.command(key, std::move(argv),
                   [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    return wait(future);
  }

  // Many commands at once (pipelined, each to the master of its key: argv[key_index]),
  // replies in order.
  std::vector<Result<RedisReply>> call_all(std::vector<std::vector<std::string>> commands,
                                           std::size_t key_index, RedisRouter* router = nullptr) {
    if (router == nullptr) router = control.get();
    std::vector<std::future<Result<RedisReply>>> futures;
    futures.reserve(commands.size());
    for (auto& argv : commands) {
      auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
      futures.push_back(promise->get_future());
      const std::string key = argv.at(key_index);
      router->command(key, std::move(argv),
                      [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    }
    std::vector<Result<RedisReply>> replies;
    replies.reserve(futures.size());
    for (auto& f : futures) replies.push_back(wait(f));
    return replies;
  }

  // One script per stream, pipelined.
  std::vector<Result<RedisReply>> script_all(const RedisScript& script,
                                             const std::vector<std::string>& activities,
                                             const std::vector<std::string>& args) {
    std::vector<std::future<Result<RedisReply>>> futures;
    futures.reserve(activities.size());
    for (const std::string& activity : activities) {
      auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
      futures.push_back(promise->get_future());
      script.call(*control, {stream_key(activity)}, args,
                  [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
    }
    std::vector<Result<RedisReply>> replies;
    replies.reserve(futures.size());
    for (auto& f : futures) replies.push_back(wait(f));
    return replies;
  }

  static std::string describe(const Result<RedisReply>& reply) {
    if (!reply.ok()) return reply.error().detail;
    if (reply->is_error()) return reply->str;
    return "unexpected reply type " + std::string(to_string(reply->type));
  }

  // ---- discovery ------------------------------------------------------------------------

  void discover() {
    auto members = call(*control, kActivitiesKey, {"SMEMBERS", kActivitiesKey});
    if (!members.ok() || !members->is_array()) {
      log_limited(WorkerLogLevel::warn, "stream worker: cannot list activities", describe(members));
      return;
    }
    std::vector<std::string> fresh;
    for (const RedisReply& m : members->elements) {
      if (m.is_string() && !m.str.empty() && grouped.count(m.str) == 0) fresh.push_back(m.str);
    }
    if (fresh.empty()) return;
    std::vector<std::vector<std::string>> commands;
    for (const std::string& id : fresh) {
      commands.push_back({"XGROUP", "CREATE", stream_key(id), options.group, "0", "MKSTREAM"});
    }
    auto replies = call_all(std::move(commands), 2);
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      const auto& r = replies[i];
      if (r.ok() && (!r->is_error() || r->error_code() == "BUSYGROUP")) {
        grouped.insert(fresh[i]);
      } else {
        log_limited(WorkerLogLevel::warn, "stream worker: cannot create the consumer group",
                    fresh[i] + ": " + describe(r));
      }
    }
    streams.assign(grouped.begin(), grouped.end());
    publish_streams();
  }

  void publish_streams() {
    std::lock_guard lock(lag_mutex);
    maintained = streams;
  }

  // A stream or its group vanished (FLUSHALL, a deleted key): create them all again.
  void forget_groups() {
    grouped.clear();
    streams.clear();
    publish_streams();
    next_discover = SteadyClock::now();
  }

  // ---- persisting -----------------------------------------------------------------------

  // Malformed entries are kept in `fd:{A}:stream:dead` (with the reason) and acked, so that
  // they neither block the trim nor come back forever.
  void dead_letter(std::vector<Entry>& bad) {
    for (Entry& e : bad) {
      std::vector<std::string> argv{"XADD", stream_key(e.activity_id) + ":dead", "*",
                                    "source_id", e.id, "reason", e.problem};
      if (e.fields.size() % 2 != 0) e.fields.pop_back();
      for (std::string& f : e.fields) argv.push_back(std::move(f));
      const std::string dead_key = argv[1];
      auto added = call(*control, dead_key, std::move(argv));
      if (!added.ok() || added->is_error()) {
        log_limited(WorkerLogLevel::warn, "stream worker: cannot dead-letter a malformed entry",
                    describe(added));
        continue;
      }
      auto acked = call(*control, stream_key(e.activity_id),
                        {"XACK", stream_key(e.activity_id), options.group, e.id});
      if (acked.ok() && acked->is_integer()) {
        dead_count.fetch_add(1, std::memory_order_relaxed);
        log(WorkerLogLevel::error, "stream worker: malformed stream entry moved to the dead-letter stream",
            e.activity_id + " " + e.id + ": " + e.problem);
      }
    }
  }

  // Waits for every ack of the round, or, once stopping, until the drain deadline.
  void wait_round(Round& round) {
    std::unique_lock lock(round.mutex);
    while (round.left > 0) {
      round.cv.wait_for(lock, 50ms, [&] { return round.left == 0; });
      if (round.left == 0) break;
      lock.unlock();
      const bool give_up = drain_expired();
      lock.lock();
      if (give_up) break;
    }
  }

  // XACK the durable entries (one command per stream), and take them out of RedisStore's
  // read index of unpersisted draws (one script per activity), all pipelined at once: both
  // only follow the commit. A reader asks PostgreSQL before and after the index, so a draw
  // leaving the index once committed is never missed, whatever the order of the two.
  void ack_and_forget(const std::vector<Entry>& good, const std::vector<char>& state) {
    // The durable entries by activity; the commands are written straight as RESP from the
    // entries (no argv of copied ids: a round holds up to thousands of them).
    std::map<std::string_view, std::vector<std::size_t>> durable;
    for (std::size_t i = 0; i < good.size(); ++i) {
      if (state[i] == 1) durable[good[i].activity_id].push_back(i);
    }
    std::vector<std::future<Result<RedisReply>>> acks;
    std::vector<std::future<Result<RedisReply>>> forgets;
    std::vector<std::string_view> forget_activities;
    for (const auto& [activity, rows] : durable) {
      const std::string key = stream_key(activity);
      CommandWriter ack(3 + rows.size(), 64 + rows.size() * 28);
      ack.arg("XACK").arg(key).arg(options.group);
      for (std::size_t i : rows) ack.arg(good[i].id);
      auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
      acks.push_back(promise->get_future());
      auto bytes = std::move(ack).take();
      if (!bytes.ok()) {
        promise->set_value(bytes.error());
      } else {
        control->command_formatted(key, std::move(bytes.value()),
                                   [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
      }

      const std::string prefix = "fd:{" + std::string(activity) + "}:";
      std::size_t size = 256;
      for (std::size_t i : rows) size += good[i].record->draw_id.size() + good[i].record->user_id.size() + 16;
      CommandWriter forget = forget_persisted_script.begin(2, 1 + 2 * rows.size(), size);
      forget.arg(prefix, "unpersisted").arg(prefix, "unpersisted:byuser").arg(prefix, "unpersisted:u:");
      for (std::size_t i : rows) forget.arg(good[i].record->draw_id).arg(good[i].record->user_id);
      auto forgot = std::make_shared<std::promise<Result<RedisReply>>>();
      forgets.push_back(forgot->get_future());
      forget_activities.push_back(activity);
      forget_persisted_script.call(*control, prefix, std::move(forget),
                                   [forgot](Result<RedisReply> r) { forgot->set_value(std::move(r)); });
    }
    for (auto& f : acks) {
      const auto r = wait(f);
      if (r.ok() && r->is_integer()) {
        acked_count.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, r->integer)),
                              std::memory_order_relaxed);
      } else {
        // Persisted but still pending: claimed again later and skipped by ON CONFLICT.
        log_limited(WorkerLogLevel::warn, "stream worker: XACK failed", describe(r));
      }
    }
    for (std::size_t i = 0; i < forgets.size(); ++i) {
      const auto r = wait(forgets[i]);
      if (!r.ok() || r->is_error()) {
        log_limited(WorkerLogLevel::warn, "stream worker: cannot clean the unpersisted-draws index",
                    std::string(forget_activities[i]) + ": " + describe(r));
      }
    }
  }

  // Appends the entries to the sink, waits for the acks and XACKs the durable ones.
  // Returns the entries the sink refused, to be retried (none once stopping).
  std::vector<Entry> persist(std::vector<Entry> batch) {
    std::vector<Entry> good;
    std::vector<Entry> bad;
    good.reserve(batch.size());
    for (Entry& e : batch) (e.record ? good : bad).push_back(std::move(e));
    if (!bad.empty()) dead_letter(bad);
    if (good.empty()) return {};

    auto round = std::make_shared<Round>(good.size());
    for (std::size_t i = 0; i < good.size(); ++i) {
      sink.append(*good[i].record, [round, i](bool durable) { round->done(i, durable); });
    }
    wait_round(*round);
    std::vector<char> state;
    {
      std::lock_guard lock(round->mutex);
      state = round->state;
    }

    ack_and_forget(good, state);
    std::vector<Entry> refused;
    for (std::size_t i = 0; i < good.size(); ++i) {
      if (state[i] == 2) refused.push_back(std::move(good[i]));
      // 0: no answer before the drain deadline; stays pending for another instance.
    }
    if (refused.empty()) return refused;

    refused_count.fetch_add(refused.size(), std::memory_order_relaxed);
    if (stop_requested()) return {};
    // A sink that refuses while it says it is healthy rejects the rows themselves.
    const bool healthy = sink.healthy();
    std::vector<Entry> again;
    for (Entry& e : refused) {
      if (healthy && ++e.healthy_refusals >= options.poison_after) {
        poisoned_count.fetch_add(1, std::memory_order_relaxed);
        log(WorkerLogLevel::error,
            "stream worker: the database keeps refusing a draw; left pending until claimed again",
            e.activity_id + " " + e.id + " draw " + e.record->draw_id + " seq " +
                std::to_string(e.record->seq));
        continue;
      }
      again.push_back(std::move(e));
    }
    if (!again.empty()) {
      log_limited(WorkerLogLevel::warn, "stream worker: the sink refused draws; retrying, nothing acked",
                  std::to_string(again.size()) + " entries");
    }
    return again;
  }

  // After a round: refused entries are retried after a backoff, new ones wait meanwhile.
  void settle(std::vector<Entry> refused) {
    if (refused.empty()) {
      retry_backoff = 0ms;
      retry.clear();
    } else {
      retry_backoff = retry_backoff.count() == 0 ? options.retry_backoff_min
                                                 : std::min(retry_backoff * 2, options.retry_backoff_max);
      retry_at = SteadyClock::now() + retry_backoff;
      retry = std::move(refused);
    }
    retrying_count.store(retry.size(), std::memory_order_relaxed);
  }

  void retry_round() {
    // Ours again (idle time reset), so that no one claims them meanwhile; entries no longer
    // pending were acked by another instance that claimed them: nothing left to do for them.
    std::map<std::string, std::vector<std::string>> by_activity;
    for (const Entry& e : retry) by_activity[e.activity_id].push_back(e.id);
    std::vector<std::vector<std::string>> commands;
    for (const auto& [activity, ids] : by_activity) {
      std::vector<std::string> argv{"XCLAIM", stream_key(activity), options.group, options.consumer, "0"};
      argv.insert(argv.end(), ids.begin(), ids.end());
      argv.push_back("JUSTID");
      commands.push_back(std::move(argv));
    }
    auto replies = call_all(std::move(commands), 1);
    std::set<std::pair<std::string, std::string>> still_pending;
    bool all_known = true;
    std::size_t i = 0;
    for (const auto& [activity, ids] : by_activity) {
      const auto& r = replies[i++];
      if (!r.ok() || !r->is_array()) {
        all_known = false;
        break;
      }
      for (const RedisReply& id : r->elements) still_pending.emplace(activity, id.str);
    }
    std::vector<Entry> batch;
    for (Entry& e : retry) {
      if (!all_known || still_pending.count({e.activity_id, e.id}) != 0) batch.push_back(std::move(e));
    }
    retry.clear();
    settle(persist(std::move(batch)));
  }

  // ---- reading ----------------------------------------------------------------------------

  // One round of reads over a chunk of the streams (max_round / batch of them). One server:
  // one XREADGROUP naming the whole chunk, with BLOCK when one chunk holds every stream.
  // Redis Cluster: the keys of one command must share a slot (else CROSSSLOT), so the chunk
  // is read with one XREADGROUP per slot (in practice per activity), pipelined at once to
  // each slot's master, without BLOCK (a blocked read would hold one node's connection while
  // the others have entries); a whole pass that finds nothing pauses `poll`.
  Result<std::vector<Entry>> read_new() {
    std::vector<Entry> out;
    if (streams.empty()) {
      sleep_until(SteadyClock::now() + options.block);
      return out;
    }
    const std::size_t per_read = std::max<std::size_t>(1, options.max_round / options.batch);
    const std::size_t chunks = (streams.size() + per_read - 1) / per_read;
    const std::size_t chunk = next_chunk++ % chunks;
    const std::size_t from = chunk * per_read;
    const std::size_t to = std::min(streams.size(), from + per_read);
    // Until the first slot map is known, read as for a cluster: right on both.
    const RedisRouterStats routing = reader->stats();
    const bool by_slot = routing.clustered || !routing.map_known;
    std::map<std::uint16_t, std::vector<std::string>> groups;  // slot (0 for one server) -> streams
    for (std::size_t i = from; i < to; ++i) {
      groups[by_slot ? key_slot(stream_key(streams[i])) : 0].push_back(streams[i]);
    }
    const bool blocking = chunks == 1 && groups.size() == 1;
    std::vector<std::vector<std::string>> commands;
    std::vector<std::unordered_map<std::string, std::string>> activity_of(groups.size());
    std::size_t g = 0;
    for (const auto& [slot, activities] : groups) {
      std::vector<std::string> argv{"XREADGROUP", "GROUP", options.group, options.consumer,
                                    "COUNT", std::to_string(options.batch)};
      if (blocking) argv.insert(argv.end(), {"BLOCK", std::to_string(options.block.count())});
      argv.push_back("STREAMS");
      for (const std::string& activity : activities) {
        argv.push_back(stream_key(activity));
        activity_of[g][argv.back()] = activity;
      }
      argv.insert(argv.end(), activities.size(), ">");
      commands.push_back(std::move(argv));
      ++g;
    }
    auto replies = call_all(std::move(commands), blocking ? 9 : 7, reader.get());
    std::optional<Error> failure;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      auto& reply = replies[i];
      if (!reply.ok()) {
        failure = reply.error();
        continue;
      }
      if (reply->is_error()) {
        if (reply->error_code() == "NOGROUP") {
          forget_groups();
          continue;
        }
        failure = make_error(ErrorKind::internal, "redis: " + reply->str);
        continue;
      }
      if (!reply->is_array()) continue;
      for (RedisReply& stream : reply->elements) {
        if (!stream.is_array() || stream.elements.size() != 2) continue;
        auto it = activity_of[i].find(stream.elements[0].str);
        if (it == activity_of[i].end()) continue;
        parse_entries(it->second, stream.elements[1], out);
      }
    }
    read_count.fetch_add(out.size(), std::memory_order_relaxed);
    // Entries read are persisted even if another slot's read failed (they are pending now).
    if (failure && out.empty()) return *failure;
    if (!blocking) {
      // Non-blocking reads: pause once a whole pass over the chunks found nothing.
      empty_chunks = out.empty() ? empty_chunks + 1 : 0;
      if (empty_chunks >= chunks) {
        empty_chunks = 0;
        sleep_until(SteadyClock::now() + std::min(options.block, options.poll));
      }
    }
    return out;
  }

  // ---- claiming, trimming, lag --------------------------------------------------------------

  // Entries pending for longer than claim_idle (a dead or stuck instance's) become ours.
  void claim() {
    const std::string idle = std::to_string(options.claim_idle.count());
    const std::vector<std::string> activities = streams;
    for (const std::string& activity : activities) {
      std::string cursor = "0-0";
      for (int page = 0; page < kMaxClaimPages && !stop_requested(); ++page) {
        auto reply = call(*control, stream_key(activity), {"XAUTOCLAIM", stream_key(activity), options.group, options.consumer,
                                     idle, cursor, "COUNT", std::to_string(options.batch)});
        if (!reply.ok() || !reply->is_array() || reply->elements.size() < 2) {
          if (reply.ok() && reply->error_code() == "NOGROUP") forget_groups();
          log_limited(WorkerLogLevel::warn, "stream worker: XAUTOCLAIM failed", describe(reply));
          return;
        }
        std::vector<Entry> entries;
        parse_entries(activity, reply->elements[1], entries);
        if (!entries.empty()) {
          claimed_count.fetch_add(entries.size(), std::memory_order_relaxed);
          log(WorkerLogLevel::info, "stream worker: claimed entries left pending by another consumer",
              activity + ": " + std::to_string(entries.size()));
          auto refused = persist(std::move(entries));
          if (!refused.empty()) return settle(std::move(refused));
        }
        cursor = reply->elements[0].str;
        if (cursor == "0-0") break;
      }
    }
    // Consumers of instances long gone (nothing pending) leave the group.
    auto replies = script_all(forget_script, activities,
                              {options.group, std::to_string(options.dead_consumer_idle.count()),
                               options.consumer});
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].ok() && replies[i]->is_integer() && replies[i]->integer > 0) {
        log(WorkerLogLevel::info, "stream worker: removed idle consumers",
            activities[i] + ": " + std::to_string(replies[i]->integer));
      }
    }
  }

  // Trims what every consumer has acked and refreshes the lag figures: every
  // maintain_interval, on the io thread, one script per stream pipelined on the control
  // router, answered by callbacks. Nothing here waits for the loop, which may be blocked for
  // long in a round the sink keeps refusing (PostgreSQL down): the figures stay live then.
  void schedule_maintain(std::chrono::milliseconds after) {
    maintain_timer.expires_after(after);
    maintain_timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && !stop_requested()) maintain();
    });
  }

  void maintain() {
    std::vector<std::string> activities;
    {
      std::lock_guard lock(lag_mutex);
      activities = maintained;
    }
    if (activities.empty()) {
      std::lock_guard lock(lag_mutex);
      lag.clear();
      schedule_maintain(options.maintain_interval);
      return;
    }
    auto pass = std::make_shared<MaintainPass>(std::move(activities));
    for (std::size_t i = 0; i < pass->activities.size(); ++i) {
      maintain_script.call(*control, {stream_key(pass->activities[i])}, {options.group},
                           [this, pass, i](Result<RedisReply> r) {
                             note(r);
                             std::lock_guard lock(pass->mutex);
                             pass->replies[i] = std::move(r);
                             if (++pass->answered == pass->replies.size()) maintained_pass(*pass);
                           });
    }
  }

  // Every reply of the pass is in (called with pass.mutex held, on the io thread).
  void maintained_pass(MaintainPass& pass) {
    std::vector<StreamLag> fresh;
    fresh.reserve(pass.activities.size());
    for (std::size_t i = 0; i < pass.replies.size(); ++i) {
      const auto& r = *pass.replies[i];
      if (!r.ok() || !r->is_array()) {
        log_limited(WorkerLogLevel::warn, "stream worker: stream maintenance failed",
                    pass.activities[i] + ": " + describe(r));
        continue;
      }
      if (r->elements.size() != 4) {
        groups_lost.store(true, std::memory_order_release);  // the stream or the group is gone
        continue;
      }
      StreamLag l;
      l.activity_id = pass.activities[i];
      l.pending = r->elements[0].integer;
      l.unread = r->elements[1].integer;
      l.length = r->elements[2].integer;
      trimmed_count.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, r->elements[3].integer)),
                              std::memory_order_relaxed);
      fresh.push_back(std::move(l));
    }
    {
      std::lock_guard lock(lag_mutex);
      lag = std::move(fresh);
    }
    if (!stop_requested()) schedule_maintain(options.maintain_interval);
  }

  // ---- the loop ------------------------------------------------------------------------------

  void run() {
    while (!stop_requested()) {
      if (groups_lost.exchange(false, std::memory_order_acq_rel)) forget_groups();
      auto now = SteadyClock::now();
      if (now >= next_discover) {
        discover();
        next_discover = SteadyClock::now() + options.discover_interval;
      }
      if (retry.empty() && now >= next_claim && !stop_requested()) {
        claim();
        next_claim = SteadyClock::now() + options.claim_interval;
      }
      if (stop_requested()) break;
      if (!retry.empty()) {
        now = SteadyClock::now();
        if (now < retry_at) {
          sleep_until(std::min(retry_at, next_discover));
          continue;
        }
        retry_round();
        continue;
      }
      auto batch = read_new();
      if (!batch.ok()) {
        log_limited(WorkerLogLevel::warn, "stream worker: XREADGROUP failed", batch.error().detail);
        redis_backoff = redis_backoff.count() == 0 ? std::chrono::milliseconds(kRedisBackoffMin)
                                                   : std::min<std::chrono::milliseconds>(redis_backoff * 2,
                                                                                         kRedisBackoffMax);
        sleep_until(SteadyClock::now() + redis_backoff);
        continue;
      }
      redis_backoff = 0ms;
      if (!batch->empty()) settle(persist(std::move(batch.value())));
    }
  }

  void start() {
    std::lock_guard lock(lifecycle_mutex);
    if (started) return;
    started = true;
    RedisOptions read_options = options.redis;
    // The read may legitimately wait `block` before its answer.
    read_options.command_timeout = options.redis.command_timeout + options.block;
    reader = RedisRouter::create(io, read_options);
    control = RedisRouter::create(io, options.redis);
    schedule_maintain(0ms);
    io_thread = std::thread([this] {
      name_this_thread("fd-stream-io");
      io.run();
    });
    loop_thread = std::thread([this] {
      name_this_thread("fd-stream");
      run();
    });
  }

  void stop(std::chrono::milliseconds drain) {
    std::lock_guard lock(lifecycle_mutex);
    if (stopped) return;
    stopped = true;
    {
      std::lock_guard stop_lock(stop_mutex);
      stopping = true;
      drain_deadline = SteadyClock::now() + drain;
    }
    stop_flag.store(true, std::memory_order_release);
    stop_cv.notify_all();
    if (loop_thread.joinable()) loop_thread.join();
    // The timer is the io thread's; a pass in flight ends with the routers (its callbacks
    // see stop_requested() and schedule nothing).
    if (io_thread.joinable()) net::post(io, [this] { maintain_timer.cancel(); });
    if (reader) reader->close();
    if (control) control->close();
    reader.reset();
    control.reset();
    guard.reset();
    if (io_thread.joinable()) io_thread.join();
    retrying_count.store(0, std::memory_order_relaxed);
  }
};

StreamWorker::StreamWorker(StreamWorkerOptions options, Sink& sink)
    : impl_(std::make_unique<Impl>(std::move(options), sink)) {}

StreamWorker::~StreamWorker() { stop(); }

void StreamWorker::start() { impl_->start(); }

void StreamWorker::stop(std::chrono::milliseconds drain) { impl_->stop(drain); }

const StreamWorkerOptions& StreamWorker::options() const { return impl_->options; }

StreamWorkerStats StreamWorker::stats() const {
  const Impl& i = *impl_;
  StreamWorkerStats s;
  s.read = i.read_count.load(std::memory_order_relaxed);
  s.claimed = i.claimed_count.load(std::memory_order_relaxed);
  s.acked = i.acked_count.load(std::memory_order_relaxed);
  s.refused = i.refused_count.load(std::memory_order_relaxed);
  s.poisoned = i.poisoned_count.load(std::memory_order_relaxed);
  s.dead_lettered = i.dead_count.load(std::memory_order_relaxed);
  s.trimmed = i.trimmed_count.load(std::memory_order_relaxed);
  s.redis_errors = i.redis_error_count.load(std::memory_order_relaxed);
  s.retrying = i.retrying_count.load(std::memory_order_relaxed);
  s.redis_ok = i.redis_ok.load(std::memory_order_relaxed);
  std::lock_guard lock(i.lag_mutex);
  s.streams = i.lag;
  return s;
}

std::string default_consumer_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "host");
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(rd()));
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + suffix;
}

}  // namespace fairdraw::redis
