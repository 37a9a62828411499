// Integration tests of DESIGN.md section 5 under concurrency: no oversell, no loss, no duplicate, quotas, and the idempotency race.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <mutex>
#include <set>
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

constexpr int kThreads = 8;
constexpr int kDrawsPerThread = 150;
constexpr int kUsers = 100;
constexpr int kQuota = 3;

struct Accepted {
  std::string draw_id;
  std::string user_id;
  std::int64_t seq = 0;
  bool won = false;
  json prize;
};

TEST(InvariantsTest, ConcurrentDrawsKeepEveryInvariant) {
  json config = json::object();
  json activity = activity_json("Scarce", 50, {prize_json("p1", 30, 5), prize_json("p2", 20, 3)});
  activity["max_draws_per_user"] = kQuota;
  config["activities"]["inv"] = activity;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());

  std::mutex mutex;
  std::vector<Accepted> accepted;
  std::vector<std::string> unexpected;  // anything but 200 / 429 quota_exhausted
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  std::latch go(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      HttpClient c = server.client(15000ms);
      go.arrive_and_wait();
      for (int i = 0; i < kDrawsPerThread; ++i) {
        const int n = t * kDrawsPerThread + i;
        const std::string user = "user-" + std::to_string(n % kUsers);
        const std::string key = "inv-" + std::to_string(t) + "-" + std::to_string(i);
        const HttpResponse r = post_draw(c, "inv", user, key);
        if (r.status == 200) {
          const json d = r.json();
          std::lock_guard lock(mutex);
          if (!d.is_object() || !d.contains("seq") || !d.contains("draw_id")) {
            unexpected.push_back(key + ": " + r.describe());
            continue;
          }
          accepted.push_back({d["draw_id"].get<std::string>(), user, d["seq"].get<std::int64_t>(),
                              d.value("won", false), d.value("prize", json())});
        } else if (r.status == 429 && r.json().is_object() && r.json().value("type", "") == "quota_exhausted") {
          ++refused;
        } else {
          std::lock_guard lock(mutex);
          unexpected.push_back(key + " (" + user + "): " + r.describe());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected responses, the first:\n"
                                  << (unexpected.empty() ? "" : unexpected.front());
  const std::size_t n = accepted.size();
  EXPECT_EQ(n + static_cast<std::size_t>(refused.load()), static_cast<std::size_t>(kThreads * kDrawsPerThread));
  // Every user asked 12 times with a quota of 3.
  EXPECT_EQ(n, static_cast<std::size_t>(kUsers * kQuota));

  HttpClient c = server.client();
  std::vector<json> trail;
  ASSERT_TRUE(fetch_audit_trail(c, "inv", trail, 1000));
  ASSERT_EQ(trail.size(), n) << "the number of 200 responses must equal the number of recorded draws";
  std::map<std::string, std::int64_t> wins;
  for (std::size_t i = 0; i < trail.size(); ++i) {
    ASSERT_EQ(trail[i]["seq"], static_cast<std::int64_t>(i)) << "seq values must be exactly 0..n-1: " << trail[i].dump();
    const json& item = trail[i];
    if (item["won"].get<bool>()) {
      ASSERT_TRUE(item["prize_id"].is_string()) << item.dump();
      EXPECT_EQ(item["candidate_id"], item["prize_id"]) << "a win is the deck's candidate: " << item.dump();
      ++wins[item["prize_id"].get<std::string>()];
    } else {
      EXPECT_TRUE(item["prize_id"].is_null()) << item.dump();
    }
  }

  // No oversell; with 300 draws over W = 100 both prizes come up far more often than their stock.
  const HttpResponse a = c.get("/activities/inv");
  ASSERT_EQ(a.status, 200) << a.describe();
  const json view = a.json();
  EXPECT_EQ(view["draws"], static_cast<std::int64_t>(n)) << a.body;
  for (const json& p : view["prizes"]) {
    const std::string id = p["id"].get<std::string>();
    const std::int64_t stock = p["stock"].get<std::int64_t>();
    const std::int64_t remaining = p["remaining"].get<std::int64_t>();
    EXPECT_LE(wins[id], stock) << "oversold " << id;
    EXPECT_GE(remaining, 0) << id;
    EXPECT_EQ(wins[id], stock - remaining) << "wins of " << id << " in the trail vs remaining\n" << a.body;
    EXPECT_EQ(wins[id], stock) << id << " was a candidate far more often than its stock, so all of it must be won";
  }

  // Every 200 is the recorded draw at its seq; every win is readable by id.
  std::set<std::string> ids;
  for (const Accepted& d : accepted) {
    EXPECT_TRUE(ids.insert(d.draw_id).second) << "duplicate draw_id " << d.draw_id;
    ASSERT_GE(d.seq, 0);
    ASSERT_LT(static_cast<std::size_t>(d.seq), trail.size()) << d.draw_id;
    const json& item = trail[static_cast<std::size_t>(d.seq)];
    EXPECT_EQ(item["draw_id"], d.draw_id) << "seq " << d.seq;
    EXPECT_EQ(item["won"], d.won) << "seq " << d.seq;
    if (d.won) {
      EXPECT_EQ(item["prize_id"], d.prize.value("id", json())) << "seq " << d.seq;
      const HttpResponse got = c.get("/draws/" + d.draw_id);
      ASSERT_EQ(got.status, 200) << "a won draw must be readable\n" << got.describe();
      EXPECT_EQ(got.json()["seq"], d.seq) << got.body;
      EXPECT_EQ(got.json()["prize"], d.prize) << got.body;
      EXPECT_EQ(got.json()["user_id"], d.user_id) << got.body;
    }
  }

  // Quotas held.
  for (int u = 0; u < kUsers; ++u) {
    const std::string user = "user-" + std::to_string(u);
    const HttpResponse r = c.get("/users/" + user + "/draws?activity_id=inv&limit=1000");
    ASSERT_EQ(r.status, 200) << r.describe();
    const json body = r.json();
    EXPECT_LE(body["items"].size(), static_cast<std::size_t>(kQuota)) << user << ":\n" << r.body;
    EXPECT_EQ(body["items"].size(), static_cast<std::size_t>(kQuota)) << user << ":\n" << r.body;
  }
}

TEST(InvariantsTest, SameKeyRaceYieldsOneDraw) {
  constexpr int kRacers = 16;
  json config = json::object();
  config["activities"]["race"] = activity_json("Race", 50, {prize_json("p1", 50, 1000)});
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());

  std::vector<HttpClient> clients;
  for (int i = 0; i < kRacers; ++i) {
    clients.push_back(server.client(15000ms));
    ASSERT_TRUE(clients.back().connect()) << clients.back().last_error();
  }
  std::vector<HttpResponse> responses(kRacers);
  std::latch go(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      responses[static_cast<std::size_t>(i)] =
          post_draw(clients[static_cast<std::size_t>(i)], "race", "racer", std::string("the-one-key"));
    });
  }
  for (auto& thread : threads) thread.join();

  std::set<std::string> draw_ids;
  int ok = 0;
  for (const HttpResponse& r : responses) {
    if (r.status == 200) {
      ++ok;
      draw_ids.insert(r.json().value("draw_id", ""));
    } else {
      EXPECT_TRUE(is_problem(r, 409, "request_in_flight"));
    }
  }
  EXPECT_GE(ok, 1) << "at least the first request must have drawn";
  EXPECT_EQ(draw_ids.size(), 1u) << "every 200 must name the same draw";

  HttpClient c = server.client();
  const HttpResponse after = post_draw(c, "race", "racer", std::string("the-one-key"));
  ASSERT_EQ(after.status, 200) << after.describe();
  EXPECT_EQ(after.header("idempotent-replayed").value_or(""), "true") << after.describe();
  if (!draw_ids.empty()) {
    EXPECT_EQ(after.json()["draw_id"], *draw_ids.begin()) << after.body;
  }

  std::vector<json> trail;
  ASSERT_TRUE(fetch_audit_trail(c, "race", trail));
  EXPECT_EQ(trail.size(), 1u) << "one key must yield exactly one draw";
  const HttpResponse mine = c.get("/users/racer/draws?activity_id=race");
  ASSERT_EQ(mine.status, 200) << mine.describe();
  EXPECT_EQ(mine.json()["items"].size(), 1u) << mine.body;
}

}  // namespace
}  // namespace fairdraw::test
