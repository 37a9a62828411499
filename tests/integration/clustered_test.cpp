// Clustered mode end to end: two real fairdraw processes sharing one redis-server and one
// PostgreSQL (the run's, see harness.hpp pg::, a schema per test).
// DESIGN.md section 5 under concurrency through both instances, and kill -9 of one instance
// mid-load while its persistence worker holds entries: the survivor claims and writes them.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../redis/redis_test_server.hpp"
#include "harness.hpp"
#include "http_client.hpp"

#ifndef FAIRDRAW_SOURCE_DIR
#error "FAIRDRAW_SOURCE_DIR must name the repository root"
#endif

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";

bool pg_available() { return ::access((std::string(kPgBin) + "/initdb").c_str(), X_OK) == 0; }

// Runs a command (bounded by timeout(1)); its output is appended to `log`.
bool run(const std::string& command, const std::string& log) {
  return std::system((command + " >>" + shell_quote(log) + " 2>&1").c_str()) == 0;
}

struct Accepted {
  std::string draw_id;
  std::string user_id;
  std::int64_t seq = 0;
  bool won = false;
  json prize;
};

class ClusteredTest : public ::testing::Test {
 protected:
  // Redis once for the suite (each test uses its own activities); PostgreSQL is the run's
  // (harness pg::), a fresh schema per test.
  static void SetUpTestSuite() {
    if (!clustered_mode() || !redis::test::redis_server_available()) return;
    redis_ = new redis::test::RedisTestServer();
    if (!redis_->running()) {
      setup_error_ = "redis-server did not start";
      return;
    }
    char pattern[] = "/tmp/fairdraw_cl_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) {
      setup_error_ = "mkdtemp failed";
      return;
    }
    root_ = made;
    log_ = root_ + "/script.out";
  }

  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
    root_.clear();
  }

  void SetUp() override {
    // Started by the "clustered." registration, which has the run's PostgreSQL.
    if (!clustered_mode()) GTEST_SKIP() << "clustered-mode test: runs as clustered.ClusteredTest.*";
    if (!redis::test::redis_server_available()) GTEST_SKIP() << "no " << redis::test::kRedisServer;
    if (!pg_available()) GTEST_SKIP() << kPgBin << "/initdb is missing";
    ASSERT_TRUE(redis_ != nullptr && redis_->running()) << setup_error_;
    ASSERT_TRUE(pg::new_schema(url_));
  }

  static bool psql(const std::string& url, const std::string& sql) {
    return run("timeout 30 " + std::string(kPgBin) + "/psql -X -q -v ON_ERROR_STOP=1 " + shell_quote(url) +
                   " -c " + shell_quote(sql),
               log_);
  }

  // Environment of a clustered instance.
  std::map<std::string, std::string> env(std::int64_t claim_idle_ms = 30000) const {
    return {{"FAIRDRAW_REDIS_URL", "redis://127.0.0.1:" + std::to_string(redis_->port())},
            {"FAIRDRAW_DATABASE_URL", url_},
            {"FAIRDRAW_REDIS_CLAIM_IDLE_MS", std::to_string(claim_idle_ms)}};
  }

  static void put_activity(FairdrawServer& server, const std::string& id, const json& body) {
    HttpClient c = server.client();
    const HttpResponse r = c.put_json("/admin/activities/" + id, body, admin_headers());
    ASSERT_EQ(r.status, 201) << r.describe();
  }

  // Polls (bounded) until the audit trail, read from PostgreSQL, holds `n` draws.
  static ::testing::AssertionResult wait_for_trail(FairdrawServer& server, const std::string& activity,
                                                   std::size_t n, std::vector<json>& trail,
                                                   std::chrono::milliseconds bound = 20s) {
    HttpClient c = server.client();
    const bool caught_up = wait_until(
        [&] { return fetch_audit_trail(c, activity, trail, 1000) && trail.size() >= n; }, bound);
    if (!caught_up) {
      return ::testing::AssertionFailure() << "the audit trail has " << trail.size() << " draws after "
                                           << bound.count() << " ms, expected " << n;
    }
    return ::testing::AssertionSuccess();
  }

  std::string url_;

  static inline redis::test::RedisTestServer* redis_ = nullptr;
  static inline std::string root_;
  static inline std::string log_;
  static inline std::string setup_error_;
};

// ---------------------------------------------------------------------------------------------

TEST_F(ClusteredTest, RefusesASqliteDatabaseNamingTheField) {
  auto e = env();
  e.erase("FAIRDRAW_DATABASE_URL");  // the harness's sqlite: default
  FairdrawServer server(json::object(), e);
  const auto started = server.start(5s);
  EXPECT_FALSE(started);
  EXPECT_NE(server.log().find("database.url"), std::string::npos) << server.log();
}

TEST_F(ClusteredTest, ConcurrentDrawsThroughTwoInstancesKeepEveryInvariant) {
  constexpr int kThreadsPerInstance = 4;
  constexpr int kDrawsPerThread = 150;
  constexpr int kUsers = 100;
  constexpr int kQuota = 3;
  FairdrawServer a(json::object(), env());
  FairdrawServer b(json::object(), env());
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  for (FairdrawServer* s : {&a, &b}) {
    ASSERT_TRUE(wait_until([&] { return s->client().get("/readyz").status == 200; }, 5s)) << "not ready";
  }
  json activity = activity_json("Scarce", 50, {prize_json("p1", 30, 5), prize_json("p2", 20, 3)});
  activity["max_draws_per_user"] = kQuota;
  put_activity(a, "cl1", activity);

  std::mutex mutex;
  std::vector<Accepted> accepted;
  std::vector<std::string> unexpected;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  std::latch go(2 * kThreadsPerInstance);
  for (int t = 0; t < 2 * kThreadsPerInstance; ++t) {
    threads.emplace_back([&, t] {
      HttpClient c = (t % 2 == 0 ? a : b).client(15000ms);
      go.arrive_and_wait();
      for (int i = 0; i < kDrawsPerThread; ++i) {
        const int n = t * kDrawsPerThread + i;
        const std::string user = "user-" + std::to_string(n % kUsers);
        const std::string key = "cl1-" + std::to_string(t) + "-" + std::to_string(i);
        const HttpResponse r = post_draw(c, "cl1", user, key);
        if (r.status == 200) {
          const json d = r.json();
          std::lock_guard lock(mutex);
          accepted.push_back({d.value("draw_id", ""), user, d.value("seq", std::int64_t{-1}), d.value("won", false),
                              d.value("prize", json())});
        } else if (r.status == 429 && r.json().value("type", "") == "quota_exhausted") {
          ++refused;
        } else {
          std::lock_guard lock(mutex);
          unexpected.push_back(key + ": " + r.describe());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected responses, the first:\n"
                                  << unexpected.front();
  const std::size_t n = accepted.size();
  EXPECT_EQ(n + static_cast<std::size_t>(refused.load()),
            static_cast<std::size_t>(2 * kThreadsPerInstance * kDrawsPerThread));
  EXPECT_EQ(n, static_cast<std::size_t>(kUsers * kQuota)) << "every user asked 12 times with a quota of 3";

  // No loss: once the workers catch up, every 200 is a row, at its seq, read from either side.
  std::vector<json> trail;
  ASSERT_TRUE(wait_for_trail(b, "cl1", n, trail));
  ASSERT_EQ(trail.size(), n) << "one row per taken seq, no more";
  std::map<std::string, std::int64_t> wins;
  for (std::size_t i = 0; i < trail.size(); ++i) {
    ASSERT_EQ(trail[i]["seq"], static_cast<std::int64_t>(i)) << "seqs must be exactly 0..n-1: " << trail[i].dump();
    if (trail[i]["won"].get<bool>()) ++wins[trail[i]["prize_id"].get<std::string>()];
  }
  HttpClient ca = a.client();
  HttpClient cb = b.client();
  const HttpResponse view = ca.get("/activities/cl1");
  ASSERT_EQ(view.status, 200) << view.describe();
  const json view_body = view.json();
  EXPECT_EQ(view_body["draws"], static_cast<std::int64_t>(n));
  for (const json& p : view_body["prizes"]) {
    const std::string id = p["id"].get<std::string>();
    EXPECT_LE(wins[id], p["stock"].get<std::int64_t>()) << "oversold " << id;
    EXPECT_EQ(wins[id], p["stock"].get<std::int64_t>() - p["remaining"].get<std::int64_t>()) << id;
    EXPECT_EQ(wins[id], p["stock"].get<std::int64_t>()) << id << " came up far more often than its stock";
  }
  std::set<std::string> ids;
  for (const Accepted& d : accepted) {
    EXPECT_TRUE(ids.insert(d.draw_id).second) << "duplicate draw_id " << d.draw_id;
    ASSERT_GE(d.seq, 0);
    ASSERT_LT(static_cast<std::size_t>(d.seq), trail.size());
    EXPECT_EQ(trail[static_cast<std::size_t>(d.seq)]["draw_id"], d.draw_id) << "seq " << d.seq;
    if (d.won) {
      for (HttpClient* c : {&ca, &cb}) {
        const HttpResponse got = c->get("/draws/" + d.draw_id);
        ASSERT_EQ(got.status, 200) << "a won draw must be readable from every instance\n" << got.describe();
        EXPECT_EQ(got.json()["seq"], d.seq) << got.body;
        EXPECT_EQ(got.json()["prize"], d.prize) << got.body;
        EXPECT_EQ(got.json()["user_id"], d.user_id) << got.body;
      }
    }
  }
  for (int u = 0; u < kUsers; ++u) {
    const std::string user = "user-" + std::to_string(u);
    const HttpResponse r = (u % 2 == 0 ? ca : cb).get("/users/" + user + "/draws?activity_id=cl1&limit=1000");
    ASSERT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.json()["items"].size(), static_cast<std::size_t>(kQuota)) << user << ":\n" << r.body;
  }
  // Everything acked: nothing pending in the stream any more.
  EXPECT_TRUE(wait_until([&] { return metric(a, R"(fairdraw_stream_pending{activity_id="cl1"})") == 0.0; }, 5s));
  // SIGTERM: stop HTTP, the worker finishes its round, the sink flushes, exit 0 (a sanitizer
  // report in the server would make it non-zero).
  EXPECT_EQ(a.stop_sigterm(), 0) << a.log();
  EXPECT_EQ(b.stop_sigterm(), 0) << b.log();
}

TEST_F(ClusteredTest, KillNineOfOneInstanceMidLoadTheSurvivorPersistsItsPendingEntries) {
  // Entries left pending by the dead instance are claimed after 1 s.
  FairdrawServer a(json::object(), env(1000));
  FairdrawServer b(json::object(), env(1000));
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  put_activity(a, "cl2", activity_json("Plenty", 90, {prize_json("p1", 10, 1'000'000)}));

  std::mutex mutex;
  std::vector<Accepted> accepted;
  std::atomic<bool> stop_a{false}, stop_b{false};
  std::atomic<int> a_failures{0};
  std::vector<std::string> unexpected;
  auto load = [&](FairdrawServer& server, std::atomic<bool>& stop, int t, bool may_die) {
    HttpClient c = server.client(5000ms);
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "cl2-" + std::to_string(t) + "-" + std::to_string(i);
      const HttpResponse r = post_draw(c, "cl2", "user-" + std::to_string(i % 50), key);
      std::lock_guard lock(mutex);
      if (r.status == 200) {
        const json d = r.json();
        accepted.push_back({d.value("draw_id", ""), "", d.value("seq", std::int64_t{-1}), d.value("won", false),
                            d.value("prize", json())});
      } else if (may_die && r.status == 0) {
        ++a_failures;  // the instance is gone
        return;
      } else {
        unexpected.push_back(key + ": " + r.describe());
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back(load, std::ref(a), std::ref(stop_a), t, true);
  for (int t = 3; t < 6; ++t) threads.emplace_back(load, std::ref(b), std::ref(stop_b), t, false);

  std::this_thread::sleep_for(500ms);
  // Stall the database for a moment, so that both workers hold a round they cannot ack yet...
  std::thread lock_holder([this] {
    psql(url_, "BEGIN; LOCK TABLE draws IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;");
  });
  std::this_thread::sleep_for(1000ms);
  // ...and kill one instance while its worker holds entries delivered but never acked.
  a.kill9();
  lock_holder.join();
  std::this_thread::sleep_for(1500ms);  // the survivor goes on
  stop_a = true;
  stop_b = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected responses, the first:\n"
                                  << unexpected.front();

  HttpClient cb = b.client();
  const HttpResponse view = cb.get("/activities/cl2");
  ASSERT_EQ(view.status, 200) << view.describe();
  // Every taken seq has its stream entry: draws cut off by the kill (taken, never answered) too.
  const auto taken = static_cast<std::size_t>(view.json()["draws"].get<std::int64_t>());
  ASSERT_GE(taken, accepted.size());
  ASSERT_GT(accepted.size(), 0u);
  std::vector<json> trail;
  ASSERT_TRUE(wait_for_trail(b, "cl2", taken, trail, 30s));
  ASSERT_EQ(trail.size(), taken);
  for (std::size_t i = 0; i < trail.size(); ++i) {
    ASSERT_EQ(trail[i]["seq"], static_cast<std::int64_t>(i)) << trail[i].dump();
  }
  std::set<std::string> ids;
  for (const Accepted& d : accepted) {
    EXPECT_TRUE(ids.insert(d.draw_id).second) << "duplicate draw_id " << d.draw_id;
    ASSERT_GE(d.seq, 0);
    ASSERT_LT(static_cast<std::size_t>(d.seq), trail.size());
    EXPECT_EQ(trail[static_cast<std::size_t>(d.seq)]["draw_id"], d.draw_id) << "seq " << d.seq;
    if (d.won) {
      const HttpResponse got = cb.get("/draws/" + d.draw_id);
      ASSERT_EQ(got.status, 200) << got.describe();
      EXPECT_EQ(got.json()["prize"], d.prize) << got.body;
    }
  }
  // The survivor claimed the dead instance's pending entries, and nothing is pending now.
  ASSERT_TRUE(wait_until([&] { return metric(b, R"(fairdraw_stream_pending{activity_id="cl2"})") == 0.0; }, 10s))
      << "entries still pending";
  const auto claimed = metric(b, R"(fairdraw_stream_worker{name="claimed"})");
  ASSERT_TRUE(claimed.has_value());
  EXPECT_GT(*claimed, 0.0) << "the survivor must have claimed the dead instance's entries";
  EXPECT_EQ(b.stop_sigterm(), 0);
}

}  // namespace
}  // namespace fairdraw::test
