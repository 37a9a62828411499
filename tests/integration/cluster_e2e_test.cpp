// Clustered mode end to end on a Redis Cluster: two real fairdraw processes on a private
// three-master cluster (scripts/redis-cluster-test.sh) and the run's PostgreSQL (a schema per
// test). Activities whose hash slots land on each of the three masters are drawn concurrently
// through both instances; then DESIGN.md section 5 is checked from PostgreSQL alone (seqs
// contiguous per activity, no oversell, one outcome per Idempotency-Key) and every 200 is read
// back through GET /draws/{id}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

#ifndef FAIRDRAW_SOURCE_DIR
#error "FAIRDRAW_SOURCE_DIR must name the repository root"
#endif

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kRedisCli = "/usr/bin/redis-cli";
constexpr const char* kScript = FAIRDRAW_SOURCE_DIR "/scripts/redis-cluster-test.sh";

// Runs a shell command; its stdout, and whether it exited 0.
bool capture(const std::string& command, std::string& out) {
  out.clear();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  return ::pclose(pipe) == 0;
}

// The three-master cluster of scripts/redis-cluster-test.sh, stopped in the destructor.
class ScriptCluster {
 public:
  ScriptCluster() {
    char pattern[] = "/tmp/fairdraw_rc_XXXXXX";
    if (const char* made = ::mkdtemp(pattern)) dir_ = made;
  }
  ~ScriptCluster() {
    if (dir_.empty()) return;
    std::string ignored;
    capture("timeout 30 bash " + shell_quote(kScript) + " stop " + shell_quote(dir_) + " 2>&1", ignored);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ScriptCluster(const ScriptCluster&) = delete;
  ScriptCluster& operator=(const ScriptCluster&) = delete;

  // Masters on base, base+1, base+2 and their bus ports +10000, all six checked free, below
  // the ephemeral range (so no outgoing connection takes one meanwhile); a few bases are tried.
  ::testing::AssertionResult start() {
    if (dir_.empty()) return ::testing::AssertionFailure() << "mkdtemp failed";
    std::string out = "no free ports";
    std::mt19937 random(std::random_device{}());
    int tries = 0;
    for (int attempt = 0; attempt < 20; ++attempt) {
      const auto base = static_cast<std::uint16_t>(12000 + random() % 10000);
      bool free = true;
      for (int i = 0; i < 3 && free; ++i) {
        free = port_free(static_cast<std::uint16_t>(base + i)) && port_free(static_cast<std::uint16_t>(base + 10000 + i));
      }
      if (!free) continue;
      if (++tries > 2) break;  // each failed start costs up to the script's 20 s
      if (capture("timeout 40 bash " + shell_quote(kScript) + " start " + shell_quote(dir_) + " " +
                      std::to_string(base) + " 2>&1",
                  out)) {
        base_ = base;
        url_ = out.substr(0, out.find('\n'));
        return ::testing::AssertionSuccess();
      }
      capture("timeout 30 bash " + shell_quote(kScript) + " stop " + shell_quote(dir_) + " 2>&1", out);
    }
    return ::testing::AssertionFailure() << "the cluster did not start: " << out;
  }

  const std::string& url() const { return url_; }

  static bool port_free(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  std::vector<std::uint16_t> ports() const {
    return {base_, static_cast<std::uint16_t>(base_ + 1), static_cast<std::uint16_t>(base_ + 2)};
  }

  // The master owning `key`'s slot: asked of the first node, which answers or says MOVED.
  // A command to one node, without following redirections: redis-cli's output.
  std::string on_node(std::uint16_t port, const std::string& args) const {
    std::string out;
    capture(std::string(kRedisCli) + " -p " + std::to_string(port) + " " + args + " 2>&1", out);
    return out;
  }

  std::uint16_t owner(const std::string& key) const {
    std::string out;
    capture(std::string(kRedisCli) + " -p " + std::to_string(base_) + " EXISTS " + shell_quote(key) + " 2>&1", out);
    if (out.rfind("MOVED", 0) != 0) return base_;
    const auto colon = out.rfind(':');
    return colon == std::string::npos ? 0 : static_cast<std::uint16_t>(std::atoi(out.c_str() + colon + 1));
  }

 private:
  std::string dir_;
  std::string url_;
  std::uint16_t base_ = 0;
};

struct Accepted {
  std::string activity;
  std::string user;
  std::string key;
  std::string draw_id;
  std::int64_t seq = -1;
  bool won = false;
  json prize;
};

class ClusterE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The "clustered." registration has the run's PostgreSQL.
    if (!clustered_mode()) GTEST_SKIP() << "clustered-mode test: runs as clustered.ClusterE2ETest.*";
    if (::access(kRedisCli, X_OK) != 0 || ::access("/usr/bin/redis-server", X_OK) != 0) {
      GTEST_SKIP() << "redis-server / redis-cli not installed";
    }
    ASSERT_TRUE(pg::new_schema(url_));
  }

  std::string url_;
};

TEST_F(ClusterE2ETest, TwoInstancesOnAThreeMasterClusterKeepEveryInvariant) {
  constexpr int kPerMaster = 2;          // activities per master
  constexpr int kThreadsPerInstance = 4;
  constexpr int kDrawsPerThread = 40;
  constexpr int kUsers = 40;
  constexpr std::int64_t kStock1 = 4, kStock2 = 2;

  const auto began = std::chrono::steady_clock::now();
  auto elapsed_ms = [&began] {
    return static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count());
  };
  ScriptCluster cluster;
  ASSERT_TRUE(cluster.start());
  RecordProperty("cluster_started_ms", elapsed_ms());

  // Activities, kPerMaster on each master (by the slot of their hash tag).
  std::map<std::uint16_t, std::vector<std::string>> by_master;
  for (int i = 0; i < 200; ++i) {
    const std::string id = "cx" + std::to_string(i);
    auto& list = by_master[cluster.owner("fd:{" + id + "}:seq")];
    if (list.size() < static_cast<std::size_t>(kPerMaster)) list.push_back(id);
    bool full = by_master.size() == 3;
    for (const auto& [port, ids] : by_master) full = full && ids.size() == static_cast<std::size_t>(kPerMaster);
    if (full) break;
  }
  std::vector<std::string> activities;
  for (const std::uint16_t port : cluster.ports()) {
    ASSERT_EQ(by_master[port].size(), static_cast<std::size_t>(kPerMaster)) << "no activity on master " << port;
    for (const std::string& id : by_master[port]) activities.push_back(id);
  }
  ASSERT_EQ(by_master.size(), 3u) << "an owner outside the three masters";

  const std::map<std::string, std::string> env = {{"FAIRDRAW_REDIS_URL", cluster.url()},
                                                  {"FAIRDRAW_DATABASE_URL", url_},
                                                  {"FAIRDRAW_REDIS_CLAIM_IDLE_MS", "2000"}};
  FairdrawServer a(json::object(), env);
  FairdrawServer b(json::object(), env);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  for (FairdrawServer* s : {&a, &b}) {
    ASSERT_TRUE(wait_until([&] { return s->client().get("/readyz").status == 200; }, 5s)) << "not ready";
  }
  {
    HttpClient c = a.client();
    for (const std::string& id : activities) {
      const json body = activity_json(id, 40, {prize_json("p1", 30, kStock1), prize_json("p2", 30, kStock2)});
      const HttpResponse r = c.put_json("/admin/activities/" + id, body, admin_headers());
      ASSERT_EQ(r.status, 201) << r.describe();
    }
  }
  // Both instances see every activity (created through a only).
  for (const std::string& id : activities) {
    ASSERT_TRUE(wait_until([&] { return b.client().get("/activities/" + id).status == 200; }, 5s)) << id;
  }

  std::mutex mutex;
  std::vector<Accepted> accepted;
  std::vector<std::string> unexpected;
  std::vector<std::thread> threads;
  std::latch go(2 * kThreadsPerInstance);
  for (int t = 0; t < 2 * kThreadsPerInstance; ++t) {
    threads.emplace_back([&, t] {
      HttpClient c = (t % 2 == 0 ? a : b).client(15000ms);
      go.arrive_and_wait();
      for (int i = 0; i < kDrawsPerThread; ++i) {
        const std::string& activity = activities[static_cast<std::size_t>(t + i) % activities.size()];
        const std::string user = "u" + std::to_string((t * kDrawsPerThread + i) % kUsers);
        const std::string key = "e2e-" + std::to_string(t) + "-" + std::to_string(i);
        const HttpResponse r = post_draw(c, activity, user, key);
        std::lock_guard lock(mutex);
        if (r.status == 200) {
          const json d = r.json();
          accepted.push_back({activity, user, key, d.value("draw_id", ""), d.value("seq", std::int64_t{-1}),
                              d.value("won", false), d.value("prize", json())});
        } else {
          unexpected.push_back(key + ": " + r.describe());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected responses, the first:\n"
                                  << unexpected.front();
  const std::size_t n = accepted.size();
  ASSERT_EQ(n, static_cast<std::size_t>(2 * kThreadsPerInstance * kDrawsPerThread));

  RecordProperty("drawn_ms", elapsed_ms());
  // Each activity's sequence lives on the master chosen for it: the draws ran on all three.
  for (const auto& [port, ids] : by_master) {
    for (const std::string& id : ids) {
      EXPECT_EQ(cluster.on_node(port, "EXISTS " + shell_quote("fd:{" + id + "}:seq")), "1\n") << id << " on " << port;
    }
  }
  // A retry of some keys through the other instance replays the same outcome.
  {
    HttpClient ca = a.client();
    HttpClient cb = b.client();
    for (std::size_t i = 0; i < accepted.size(); i += 17) {
      const Accepted& d = accepted[i];
      const HttpResponse again = post_draw(i % 2 == 0 ? cb : ca, d.activity, d.user, d.key);
      ASSERT_EQ(again.status, 200) << again.describe();
      EXPECT_EQ(again.json().value("draw_id", ""), d.draw_id) << "a key must keep its one outcome: " << d.key;
      EXPECT_EQ(again.header("idempotent-replayed").value_or(""), "true") << again.describe();
    }
  }

  // The workers of both instances write every draw to PostgreSQL (from all three masters).
  std::string out;
  ASSERT_TRUE(wait_until(
      [&] { return pg::query(url_, "SELECT count(*) FROM draws", out) && std::atoll(out.c_str()) == static_cast<long long>(n); },
      15s))
      << "rows in PostgreSQL: " << out << ", expected " << n;

  RecordProperty("persisted_ms", elapsed_ms());
  // Seqs 0..k-1 per activity, each once.
  ASSERT_TRUE(pg::query(url_,
                        "SELECT activity_id || ' ' || count(*) || ' ' || count(DISTINCT seq) || ' ' || min(seq) || ' ' "
                        "|| max(seq) FROM draws GROUP BY activity_id ORDER BY activity_id",
                        out))
      << out;
  std::map<std::string, std::size_t> per_activity;
  for (const Accepted& d : accepted) ++per_activity[d.activity];
  {
    std::istringstream lines(out);
    std::string id;
    long long count = 0, distinct = 0, min = 0, max = 0;
    std::size_t seen = 0;
    while (lines >> id >> count >> distinct >> min >> max) {
      ++seen;
      EXPECT_EQ(static_cast<std::size_t>(count), per_activity[id]) << id;
      EXPECT_EQ(distinct, count) << id << ": a seq twice";
      EXPECT_EQ(min, 0) << id;
      EXPECT_EQ(max, count - 1) << id << ": seqs not contiguous";
    }
    EXPECT_EQ(seen, activities.size()) << out;
  }
  // No oversell: wins per prize within its stock.
  ASSERT_TRUE(pg::query(url_,
                        "SELECT activity_id || ' ' || prize_id || ' ' || count(*) FROM draws WHERE won "
                        "GROUP BY activity_id, prize_id",
                        out))
      << out;
  {
    std::istringstream lines(out);
    std::string id, prize;
    long long wins = 0;
    while (lines >> id >> prize >> wins) {
      EXPECT_LE(wins, prize == "p1" ? kStock1 : kStock2) << "oversold " << id << " " << prize;
    }
  }
  // One outcome per (activity, Idempotency-Key).
  ASSERT_TRUE(pg::query(url_,
                        "SELECT count(*) FROM (SELECT 1 FROM draws GROUP BY activity_id, idempotency_key "
                        "HAVING count(*) > 1) twice",
                        out))
      << out;
  EXPECT_EQ(std::atoll(out.c_str()), 0) << "an Idempotency-Key with two rows";
  // Every 200 is its row: draw_id, seq and key.
  ASSERT_TRUE(pg::query(url_, "SELECT draw_id || ' ' || activity_id || ' ' || seq || ' ' || idempotency_key FROM draws",
                        out))
      << out;
  std::map<std::string, std::string> rows;
  {
    std::istringstream lines(out);
    std::string id, activity, seq, key;
    while (lines >> id >> activity >> seq >> key) rows[id] = activity + " " + seq + " " + key;
  }
  HttpClient ca = a.client();
  HttpClient cb = b.client();
  std::set<std::string> ids;
  for (std::size_t i = 0; i < accepted.size(); ++i) {
    const Accepted& d = accepted[i];
    EXPECT_TRUE(ids.insert(d.draw_id).second) << "duplicate draw_id " << d.draw_id;
    EXPECT_EQ(rows[d.draw_id], d.activity + " " + std::to_string(d.seq) + " " + d.key) << d.draw_id;
    const HttpResponse got = (i % 2 == 0 ? cb : ca).get("/draws/" + d.draw_id);
    ASSERT_EQ(got.status, 200) << got.describe();
    EXPECT_EQ(got.json()["seq"], d.seq) << got.body;
    EXPECT_EQ(got.json()["activity_id"], d.activity) << got.body;
    if (d.won) {
      EXPECT_EQ(got.json()["prize"], d.prize) << got.body;
    }
  }
  EXPECT_EQ(a.stop_sigterm(), 0) << a.log();
  EXPECT_EQ(b.stop_sigterm(), 0) << b.log();
}

}  // namespace
}  // namespace fairdraw::test
