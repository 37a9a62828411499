// Integration tests of DESIGN.md section 5.5: kill -9 and SIGTERM under load lose no acknowledged draw, and sequence, stock and quotas resume.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kLoadThreads = 4;

// "rs": p1 10/20, p2 20/100000, miss 70 (W = 100), no quota; "q": at most 2 draws per user.
json restart_config() {
  json config = json::object();
  config["activities"]["rs"] = activity_json("Restart", 70, {prize_json("p1", 10, 20), prize_json("p2", 20, 100000)});
  json limited = activity_json("Quota", 1, {prize_json("p", 1, 100)});
  limited["max_draws_per_user"] = 2;
  config["activities"]["q"] = limited;
  return config;
}

struct Acknowledged {
  std::string key;
  std::string user_id;
  std::string draw_id;
  std::int64_t seq = 0;
  bool won = false;
  json prize_id;  // null on a miss
};

// Draws on "rs" from several threads until stopped, recording every 200.
class DrawLoad {
 public:
  explicit DrawLoad(const FairdrawServer& server) {
    for (int t = 0; t < kLoadThreads; ++t) {
      threads_.emplace_back([this, t, port = server.port()] { run(t, port); });
    }
  }
  ~DrawLoad() { stop(); }
  DrawLoad(const DrawLoad&) = delete;
  DrawLoad& operator=(const DrawLoad&) = delete;

  void stop() {
    stop_ = true;
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  std::size_t acknowledged_count() {
    std::lock_guard lock(mutex_);
    return acknowledged_.size();
  }
  std::vector<Acknowledged> acknowledged() {
    std::lock_guard lock(mutex_);
    return acknowledged_;
  }
  std::vector<std::string> unexpected() {
    std::lock_guard lock(mutex_);
    return unexpected_;
  }

 private:
  void run(int t, std::uint16_t port) {
    HttpClient c(port, 5000ms);
    for (int i = 0; !stop_; ++i) {
      const std::string key = "load-" + std::to_string(t) + "-" + std::to_string(i);
      const std::string user = "user-" + std::to_string(t) + "-" + std::to_string(i % 50);
      const HttpResponse r = post_draw(c, "rs", user, key);
      if (r.status == 200) {
        const json d = r.json();
        std::lock_guard lock(mutex_);
        if (!d.is_object() || !d.contains("seq") || !d.contains("draw_id") || !d.contains("won")) {
          unexpected_.push_back(key + ": " + r.describe());
          continue;
        }
        const json prize = d.value("prize", json());
        acknowledged_.push_back({key, user, d["draw_id"].get<std::string>(), d["seq"].get<std::int64_t>(),
                                 d["won"].get<bool>(), prize.is_object() ? prize.value("id", json()) : json()});
      } else if (r.status == 0 || r.status == 503) {
        // The server is going away (or gone): no acknowledgement, retry until stopped.
        c.close();
        std::this_thread::sleep_for(5ms);
      } else {
        std::lock_guard lock(mutex_);
        unexpected_.push_back(key + ": " + r.describe());
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<Acknowledged> acknowledged_;
  std::vector<std::string> unexpected_;
  std::vector<std::thread> threads_;
};

// Waits (bounded) until the load has at least `count` acknowledged draws.
bool wait_for_acknowledged(DrawLoad& load, std::size_t count, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (load.acknowledged_count() < count) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Every acknowledged draw is in the record with its seq, outcome and prize; the trail is 0..n-1.
void expect_all_recorded(HttpClient& c, const std::vector<Acknowledged>& acknowledged, std::vector<json>& trail) {
  if (clustered_mode()) {
    // The record is PostgreSQL, written by the stream workers: the draws the killed instance's
    // worker had read but not acked are claimed by the new one after redis.claim_idle_ms.
    const HttpResponse view = c.get("/activities/rs");
    ASSERT_EQ(view.status, 200) << view.describe();
    const auto taken = static_cast<std::size_t>(view.json()["draws"].get<std::int64_t>());
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!(fetch_audit_trail(c, "rs", trail) && trail.size() >= taken) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
    }
  }
  ASSERT_TRUE(fetch_audit_trail(c, "rs", trail));
  for (std::size_t i = 0; i < trail.size(); ++i) {
    ASSERT_EQ(trail[i]["seq"], static_cast<std::int64_t>(i)) << "the trail must be contiguous: " << trail[i].dump();
  }
  ASSERT_GE(trail.size(), acknowledged.size());
  for (const Acknowledged& a : acknowledged) {
    ASSERT_LT(static_cast<std::size_t>(a.seq), trail.size()) << "acknowledged draw " << a.draw_id << " (seq " << a.seq
                                                             << ") is beyond the recorded trail";
    const json& item = trail[static_cast<std::size_t>(a.seq)];
    EXPECT_EQ(item["draw_id"], a.draw_id) << "seq " << a.seq;
    EXPECT_EQ(item["won"], a.won) << "seq " << a.seq;
    EXPECT_EQ(item["prize_id"], a.prize_id) << "seq " << a.seq;
    const HttpResponse got = c.get("/draws/" + a.draw_id);
    ASSERT_EQ(got.status, 200) << "acknowledged draw lost: " << a.draw_id << "\n" << got.describe();
    const json g = got.json();
    EXPECT_EQ(g["seq"], a.seq) << got.body;
    EXPECT_EQ(g["won"], a.won) << got.body;
    EXPECT_EQ(g["user_id"], a.user_id) << got.body;
    EXPECT_EQ(g["prize"].is_object() ? g["prize"].value("id", json()) : json(), a.prize_id) << got.body;
  }
}

TEST(RestartTest, KillNineUnderLoadLosesNothing) {
  FairdrawServer server(restart_config());
  ASSERT_TRUE(server.start());
  {
    HttpClient c = server.client();
    ASSERT_EQ(post_draw(c, "q", "limited-user", std::string("q-1")).status, 200);
    ASSERT_EQ(post_draw(c, "q", "limited-user", std::string("q-2")).status, 200);
    ASSERT_TRUE(is_problem(post_draw(c, "q", "limited-user", std::string("q-3")), 429, "quota_exhausted"));
  }

  DrawLoad load(server);
  ASSERT_TRUE(wait_for_acknowledged(load, 20, 10s)) << "the load made no progress";
  std::this_thread::sleep_for(1s);
  server.kill9();
  load.stop();
  const std::vector<Acknowledged> acknowledged = load.acknowledged();
  EXPECT_TRUE(load.unexpected().empty()) << load.unexpected().front();
  ASSERT_FALSE(acknowledged.empty());
  RecordProperty("acknowledged_before_kill", static_cast<int>(acknowledged.size()));

  ASSERT_TRUE(server.restart());
  HttpClient c = server.client();
  std::vector<json> trail;
  expect_all_recorded(c, acknowledged, trail);
  if (HasFatalFailure()) return;
  RecordProperty("recorded_after_restart", static_cast<int>(trail.size()));
  const std::int64_t n = static_cast<std::int64_t>(trail.size());

  // The sequence resumes where the record ends.
  const HttpResponse next = post_draw(c, "rs", "after-restart", std::string("after-restart-1"));
  ASSERT_EQ(next.status, 200) << next.describe();
  EXPECT_EQ(next.json()["seq"], n) << next.body;

  // Stock resumes: remaining = stock - wins in the trail.
  ASSERT_TRUE(fetch_audit_trail(c, "rs", trail));
  std::map<std::string, std::int64_t> wins;
  for (const json& item : trail) {
    if (item["won"].get<bool>()) ++wins[item["prize_id"].get<std::string>()];
  }
  const HttpResponse view = c.get("/activities/rs");
  ASSERT_EQ(view.status, 200) << view.describe();
  EXPECT_EQ(view.json()["draws"], n + 1) << view.body;
  const json view_body = view.json();  // the loop must not range over a temporary's member
  for (const json& p : view_body["prizes"]) {
    const std::string id = p["id"].get<std::string>();
    EXPECT_EQ(p["remaining"].get<std::int64_t>(), p["stock"].get<std::int64_t>() - wins[id])
        << id << " after restart:\n" << view.body;
  }

  // Quotas survived.
  EXPECT_TRUE(is_problem(post_draw(c, "q", "limited-user", std::string("q-4")), 429, "quota_exhausted"));
  // Idempotency keys of acknowledged draws survived too.
  const Acknowledged& first = acknowledged.front();
  const HttpResponse replay = post_draw(c, "rs", first.user_id, first.key);
  ASSERT_EQ(replay.status, 200) << replay.describe();
  EXPECT_EQ(replay.json()["draw_id"], first.draw_id) << replay.body;
  EXPECT_EQ(replay.header("idempotent-replayed").value_or(""), "true") << replay.describe();
}

TEST(RestartTest, SigtermUnderLoadExitsCleanly) {
  json config = restart_config();
  config["http"]["shutdown_grace_ms"] = 5000;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());

  DrawLoad load(server);
  ASSERT_TRUE(wait_for_acknowledged(load, 20, 10s)) << "the load made no progress";
  std::this_thread::sleep_for(500ms);
  const auto started = std::chrono::steady_clock::now();
  const int status = server.stop_sigterm(20s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  load.stop();
  EXPECT_EQ(status, 0) << "SIGTERM must end in exit code 0 (-1: still running after 20 s, >128: killed by a signal)";
  EXPECT_LT(took.count(), 10000) << "shutdown took " << took.count() << " ms";
  const std::vector<Acknowledged> acknowledged = load.acknowledged();
  EXPECT_TRUE(load.unexpected().empty()) << load.unexpected().front();
  ASSERT_FALSE(acknowledged.empty());
  RecordProperty("acknowledged_before_sigterm", static_cast<int>(acknowledged.size()));

  ASSERT_TRUE(server.restart());
  HttpClient c = server.client();
  std::vector<json> trail;
  expect_all_recorded(c, acknowledged, trail);
  if (HasFatalFailure()) return;
  RecordProperty("recorded_after_restart", static_cast<int>(trail.size()));
  const HttpResponse next = post_draw(c, "rs", "after-restart", std::string("after-restart-1"));
  ASSERT_EQ(next.status, 200) << next.describe();
  EXPECT_EQ(next.json()["seq"], static_cast<std::int64_t>(trail.size())) << next.body;
}

}  // namespace
}  // namespace fairdraw::test
