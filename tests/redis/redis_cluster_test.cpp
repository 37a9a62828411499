// Redis Cluster support against a real three-master cluster (redis_cluster_fixture.hpp, one
// per suite): slot computation, routing of activities over the masters, MOVED after a slot
// migration, ASK and TRYAGAIN during one, RedisStore's draws holding the invariants across
// the masters (and across a migration), load shedding, and the StreamWorker persisting
// from every master into PostgreSQL.
#include "fairdraw/redis/cluster.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/clock.hpp"
#include "fairdraw/entropy.hpp"
#include "fairdraw/redis/read_through_sink.hpp"
#include "fairdraw/redis/redis_store.hpp"
#include "fairdraw/redis/stream_worker.hpp"
#include "fairdraw/redis/url.hpp"
#include "fairdraw/sink/pg_sink.hpp"
#include "redis_cluster_fixture.hpp"
#include "redis_test_server.hpp"
#include "support/pg_test_tools.hpp"


namespace fairdraw::redis {
namespace {

using namespace std::chrono_literals;
using test::IoThreads;
using test::RedisTestCluster;
using test::RedisTestServer;
using test::wait_until;
using SteadyClock = std::chrono::steady_clock;

constexpr std::int64_t kStart = 1'790'000'000'000;

Result<RedisReply> call(RedisRouter& router, const std::string& key, std::vector<std::string> argv) {
  auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
  auto future = promise->get_future();
  router.command(key, std::move(argv), [promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(10s) != std::future_status::ready) {
    return make_error(ErrorKind::internal, "test: no reply within 10 s");
  }
  return future.get();
}

std::string describe(const Result<RedisReply>& r) {
  if (!r.ok()) return "error: " + r.error().detail;
  return std::string(to_string(r->type)) + " " + r->str;
}

ActivityConfig make_config(std::vector<std::pair<std::uint32_t, std::int64_t>> prizes, std::uint32_t miss) {
  ActivityConfig c;
  c.name = "cluster test";
  c.miss_weight = miss;
  for (std::size_t i = 0; i < prizes.size(); ++i) {
    c.prizes.push_back(Prize{"p" + std::to_string(i), "Prize " + std::to_string(i), prizes[i].first,
                             prizes[i].second});
  }
  return c;
}

RedisStoreOptions store_options(RedisOptions redis) {
  RedisStoreOptions o;
  o.redis = std::move(redis);
  o.prepare_ahead_draws = 1;
  o.encode_config = [](const ActivityConfig& a) { return app::activity_config_json(a).dump(); };
  o.decode_config = [](const std::string& s) { return app::parse_activity(nlohmann::json::parse(s)); };
  return o;
}

Result<DrawOutcome> draw_sync(RedisStore& store, const std::string& activity, const std::string& user,
                              const std::string& key, std::int64_t now) {
  auto promise = std::make_shared<std::promise<Result<DrawOutcome>>>();
  auto future = promise->get_future();
  store.draw(DrawCommand{activity, user, key, now},
             [promise](Result<DrawOutcome> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(10s) != std::future_status::ready) {
    return make_error(ErrorKind::internal, "test: no draw callback within 10 s");
  }
  return future.get();
}

// ---- slot computation (no server) -----------------------------------------------------------

TEST(RedisKeySlot, KnownVectors) {
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("123456789"), 0x31C3 % kClusterSlots);  // the CRC16/XMODEM check value
  EXPECT_EQ(key_slot(""), 0);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  // Only the first {...} counts; an empty one means "hash the whole key".
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot(std::string_view("foo{}{bar}")));
  EXPECT_EQ(key_slot("no close {brace"), key_slot(std::string_view("no close {brace")));
  // Every key of an activity shares the activity's slot.
  EXPECT_EQ(key_slot("fd:{spring}:seq"), key_slot("fd:{spring}:stream"));
  EXPECT_EQ(key_slot("fd:{spring}:idem:abc{x}"), key_slot("spring"));
}

TEST(RedisUrlCluster, SeveralNodesAreSeeds) {
  auto url = parse_redis_url("redis://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,cache");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  ASSERT_EQ(url->nodes.size(), 4u);
  EXPECT_EQ(url->host, "10.0.0.1");
  EXPECT_EQ(url->port, 7000);
  EXPECT_EQ(url->nodes[1], (RedisEndpoint{"10.0.0.2", 7001}));
  EXPECT_EQ(url->nodes[2], (RedisEndpoint{"::1", 7002}));
  EXPECT_EQ(url->nodes[3], (RedisEndpoint{"cache", 6379}));
  EXPECT_EQ(url->password, "pw");
  const RedisOptions o = make_redis_options(url.value());
  EXPECT_EQ(o.seeds.size(), 4u);
  EXPECT_EQ(o.password, "pw");

  auto single = parse_redis_url("redis://localhost:6380/2");
  ASSERT_TRUE(single.ok());
  ASSERT_EQ(single->nodes.size(), 1u);
  EXPECT_EQ(single->db, 2);

  EXPECT_FALSE(parse_redis_url("redis://a:1,,b:2").ok());
  EXPECT_FALSE(parse_redis_url("redis://a:1,b:x").ok());
  auto db = parse_redis_url("redis://a:1,b:2/3");
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.error().detail.find("database 0"), std::string::npos) << db.error().detail;
}

// ---- the router on one plain server -----------------------------------------------------------

TEST(RedisRouterStandalone, AServerWithoutClusterSupportIsOneNode) {
  if (!test::redis_server_available()) GTEST_SKIP() << "no " << test::kRedisServer;
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  RedisOptions o;
  o.port = server.port();
  auto router = RedisRouter::create(io.io(), o, 2);
  for (int i = 0; i < 50; ++i) {
    const std::string key = "k{" + std::to_string(i) + "}";
    auto set = call(*router, key, {"SET", key, std::to_string(i)});
    ASSERT_TRUE(set.ok() && set->is_status()) << describe(set);
  }
  ASSERT_TRUE(wait_until([&] { return router->stats().map_known; }, 5s));
  const RedisRouterStats s = router->stats();
  EXPECT_FALSE(s.clustered);
  EXPECT_FALSE(router->clustered());
  EXPECT_EQ(s.masters, 1u);
  EXPECT_EQ(router->owner_of(12182), "127.0.0.1:" + std::to_string(server.port()));
  // Multi-key commands across "slots" are fine on one server.
  auto mget = call(*router, "k{1}", {"MGET", "k{1}", "k{2}", "k{3}"});
  ASSERT_TRUE(mget.ok() && mget->is_array()) << describe(mget);
  EXPECT_EQ(mget->elements[2].str, "3");
  router->close();
}

// ---- the cluster ------------------------------------------------------------------------------

class RedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::redis_server_available()) return;
    cluster_ = new RedisTestCluster();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!test::redis_server_available()) GTEST_SKIP() << "no " << test::kRedisServer;
    ASSERT_NE(cluster_, nullptr);
    ASSERT_TRUE(cluster_->ready()) << "the test cluster did not form";
    io_ = std::make_unique<IoThreads>();
  }
  void TearDown() override {
    stores_.clear();
    for (auto& r : routers_) r->close();
    routers_.clear();
    io_.reset();
  }

  RedisRouter& router(std::size_t per_node = 1, std::chrono::milliseconds timeout = 2000ms) {
    routers_.push_back(RedisRouter::create(io_->io(), cluster_->options(timeout), per_node));
    return *routers_.back();
  }

  RedisStore& store(RedisStoreOptions o) {
    stores_.push_back(std::make_unique<RedisStore>(io_->io(), std::move(o), clock_, entropy_));
    return *stores_.back();
  }
  RedisStore& store() { return store(store_options(cluster_->options())); }

  // A port of a master other than `port`.
  static std::uint16_t other_master(std::uint16_t port) {
    for (auto p : cluster_->ports()) {
      if (p != port) return p;
    }
    return 0;
  }

  static inline RedisTestCluster* cluster_ = nullptr;
  std::unique_ptr<IoThreads> io_;
  std::vector<std::shared_ptr<RedisRouter>> routers_;
  std::vector<std::unique_ptr<RedisStore>> stores_;
  ManualClock clock_{kStart};
  FixedEntropy entropy_{21};
};

TEST_F(RedisClusterTest, OurSlotsAreTheServersSlots) {
  std::mt19937 rng(5);
  std::vector<std::string> keys{"foo", "{user1000}.following", "a{b}c", "{}x", "x{}", "{{a}}", "fd:activities"};
  for (int i = 0; i < 500; ++i) {
    std::string k;
    const int len = static_cast<int>(rng() % 24);
    for (int j = 0; j < len; ++j) k.push_back("ab{}:xyz019-_"[rng() % 13]);
    keys.push_back(k);
    keys.push_back("fd:{act-" + std::to_string(i) + "}:stream");
  }
  test::NodeClient node(cluster_->port(0));
  ASSERT_TRUE(node.ok());
  for (const auto& k : keys) {
    const RedisReply r = node.run({"CLUSTER", "KEYSLOT", k});
    ASSERT_TRUE(r.is_integer()) << r.str;
    EXPECT_EQ(key_slot(k), r.integer) << "key '" << k << "'";
  }
}

TEST_F(RedisClusterTest, ActivitiesSpreadOverTheThreeMastersAndEachKeyLivesOnItsOwner) {
  RedisRouter& r = router(2);
  ASSERT_TRUE(wait_until([&] { return r.stats().map_known; }, 5s));
  EXPECT_TRUE(r.clustered());
  EXPECT_EQ(r.stats().masters, 3u);
  constexpr int kActivities = 120;
  // Pipelined from one thread: every command straight to its owner.
  std::vector<std::future<Result<RedisReply>>> replies;
  for (int i = 0; i < kActivities; ++i) {
    const std::string key = "fd:{route-" + std::to_string(i) + "}:seq";
    auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
    replies.push_back(promise->get_future());
    r.command(key, {"SET", key, std::to_string(i)}, [promise](Result<RedisReply> x) { promise->set_value(std::move(x)); });
  }
  for (auto& f : replies) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    auto x = f.get();
    EXPECT_TRUE(x.ok() && x->is_status()) << describe(x);
  }
  EXPECT_EQ(r.stats().moved, 0u) << "with the map known, nothing is redirected";
  std::map<std::uint16_t, int> per_master;
  for (int i = 0; i < kActivities; ++i) {
    const std::string key = "fd:{route-" + std::to_string(i) + "}:seq";
    const std::uint16_t owner = cluster_->owner(key_slot(key));
    ASSERT_NE(owner, 0);
    EXPECT_EQ(r.owner_of(key_slot(key)), "127.0.0.1:" + std::to_string(owner));
    EXPECT_EQ(cluster_->run(owner, {"GET", key}).str, std::to_string(i)) << key;
    ++per_master[owner];
    // And on no other master.
    for (auto p : cluster_->ports()) {
      if (p != owner) {
        EXPECT_EQ(cluster_->run(p, {"EXISTS", key}).integer, 0);
      }
    }
  }
  EXPECT_EQ(per_master.size(), 3u);
  for (const auto& [port, n] : per_master) EXPECT_GT(n, kActivities / 6) << port;
  // A multi-key command within one slot works (the activity's keys share the hash tag).
  auto mget = call(r, "fd:{route-7}:seq", {"MGET", "fd:{route-7}:seq", "fd:{route-7}:other"});
  ASSERT_TRUE(mget.ok() && mget->is_array()) << describe(mget);
  EXPECT_EQ(mget->elements[0].str, "7");
}

TEST_F(RedisClusterTest, AnUnreachableFirstSeedIsSkipped) {
  RedisOptions o = cluster_->options();
  const std::uint16_t dead = test::pick_free_port();  // nothing listens there
  o.host = "127.0.0.1";
  o.port = dead;
  o.seeds = {RedisEndpoint{"127.0.0.1", dead}, RedisEndpoint{"127.0.0.1", cluster_->port(2)}};
  routers_.push_back(RedisRouter::create(io_->io(), o, 1));
  RedisRouter& r = *routers_.back();
  ASSERT_TRUE(wait_until([&] { return r.stats().map_known; }, 5s)) << "the second seed answers CLUSTER SLOTS";
  EXPECT_TRUE(r.clustered());
  EXPECT_EQ(r.stats().masters, 3u);
  for (int i = 0; i < 30; ++i) {
    const std::string key = "fd:{seed-" + std::to_string(i) + "}:x";
    auto set = call(r, key, {"SET", key, "v"});
    ASSERT_TRUE(set.ok() && set->is_status()) << describe(set);
  }
  EXPECT_EQ(r.stats().moved, 0u);
}

TEST_F(RedisClusterTest, MovedAfterASlotMigrationIsFollowedAndTheMapPatched) {
  RedisRouter& r = router();
  const std::string key = "fd:{moving}:seq";
  const std::uint16_t slot = key_slot(key);
  // Map first: a command sent before it may be redirected, and the refresh that MOVED asks for
  // could then land after the migration below and hide it.
  ASSERT_TRUE(wait_until([&] { return r.stats().map_known; }, 5s));
  ASSERT_TRUE(call(r, key, {"SET", key, "41"}).ok());
  const std::uint16_t from = cluster_->owner(slot);
  const std::uint16_t to = other_master(from);
  ASSERT_TRUE(cluster_->move_slot(slot, to));
  ASSERT_EQ(cluster_->owner(slot), to);
  const std::uint64_t moved_before = r.stats().moved;
  auto incr = call(r, key, {"INCR", key});
  ASSERT_TRUE(incr.ok() && incr->is_integer()) << describe(incr);
  EXPECT_EQ(incr->integer, 42);
  EXPECT_GE(r.stats().moved, moved_before + 1);
  EXPECT_EQ(r.owner_of(slot), "127.0.0.1:" + std::to_string(to));
  EXPECT_EQ(cluster_->run(to, {"GET", key}).str, "42");
  // Patched: the next command goes straight to the new owner.
  const std::uint64_t moved_after = r.stats().moved;
  auto get = call(r, key, {"GET", key});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->str, "42");
  EXPECT_EQ(r.stats().moved, moved_after);
  ASSERT_TRUE(cluster_->move_slot(slot, from));  // back, for the other tests
}

TEST_F(RedisClusterTest, AskDuringAMigrationGoesToTheImportingNodeOnce) {
  RedisRouter& r = router();
  const std::string moved_key = "fd:{asking}:a";
  const std::string new_key = "fd:{asking}:b";
  const std::uint16_t slot = key_slot(moved_key);
  ASSERT_TRUE(wait_until([&] { return r.stats().map_known; }, 5s));
  ASSERT_TRUE(call(r, moved_key, {"SET", moved_key, "here"}).ok());
  const std::uint16_t from = cluster_->owner(slot);
  const std::uint16_t to = other_master(from);
  // The slot is half-way: its key already on `to`, the slot still `from`'s.
  ASSERT_TRUE(cluster_->begin_migration(slot, from, to, true));
  ASSERT_EQ(cluster_->run(to, {"EXISTS", moved_key}).integer, 0) << "not visible without ASKING";
  const std::uint64_t asked = r.stats().asked;
  const std::uint64_t moved = r.stats().moved;
  auto get = call(r, moved_key, {"GET", moved_key});
  ASSERT_TRUE(get.ok()) << describe(get);
  EXPECT_EQ(get->str, "here");
  // A new key of a migrating slot is created on the importing node.
  auto set = call(r, new_key, {"SET", new_key, "new"});
  ASSERT_TRUE(set.ok() && set->is_status()) << describe(set);
  EXPECT_GE(r.stats().asked, asked + 2);
  EXPECT_EQ(r.stats().moved, moved) << "ASK does not change the map";
  EXPECT_EQ(r.owner_of(slot), "127.0.0.1:" + std::to_string(from));
  ASSERT_TRUE(cluster_->finish_migration(slot, to));
  EXPECT_EQ(cluster_->run(to, {"GET", new_key}).str, "new");
  auto after = call(r, new_key, {"GET", new_key});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->str, "new");
  EXPECT_GE(r.stats().moved, moved + 1);
  ASSERT_TRUE(cluster_->move_slot(slot, from));
}

TEST_F(RedisClusterTest, TryAgainDuringAMigrationIsRetriedUntilItSettles) {
  RedisRouter& r = router(1, 3000ms);
  const std::string a = "fd:{retry}:a";
  const std::string b = "fd:{retry}:b";
  const std::uint16_t slot = key_slot(a);
  ASSERT_TRUE(wait_until([&] { return r.stats().map_known; }, 5s));
  ASSERT_TRUE(call(r, a, {"SET", a, "1"}).ok());
  ASSERT_TRUE(call(r, b, {"SET", b, "2"}).ok());
  const std::uint16_t from = cluster_->owner(slot);
  const std::uint16_t to = other_master(from);
  ASSERT_TRUE(cluster_->begin_migration(slot, from, to, false));
  // Only `a` moves: a command on both keys gets TRYAGAIN while they are split.
  ASSERT_FALSE(cluster_->run(from, {"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS", a}).is_error());
  std::thread finisher([&] {
    std::this_thread::sleep_for(150ms);
    cluster_->begin_migration(slot, from, to, true);
    cluster_->finish_migration(slot, to);
  });
  auto mget = call(r, a, {"MGET", a, b});
  finisher.join();
  ASSERT_TRUE(mget.ok() && mget->is_array()) << describe(mget);
  EXPECT_EQ(mget->elements[0].str, "1");
  EXPECT_EQ(mget->elements[1].str, "2");
  EXPECT_GE(r.stats().retried, 1u);
  ASSERT_TRUE(cluster_->move_slot(slot, from));
}

TEST_F(RedisClusterTest, ConcurrentDrawsOverManyActivitiesHoldTheInvariants) {
  RedisStore& s = store();
  constexpr int kActivities = 9;
  std::vector<std::string> ids;
  std::set<std::uint16_t> masters;
  for (int a = 0; a < kActivities; ++a) {
    ids.push_back("inv-" + std::to_string(a));
    // W = 10: 3 gold (stock 4), 2 silver (stock 6), 5 misses; stock runs out mid-way.
    ASSERT_TRUE(s.put_activity(ids.back(), make_config({{3, 4}, {2, 6}}, 5), kStart).ok());
    masters.insert(cluster_->owner(key_slot("fd:{" + ids.back() + "}:seq")));
  }
  EXPECT_EQ(masters.size(), 3u) << "the activities should live on all three masters";
  constexpr int kThreads = 6;
  constexpr int kPerThread = 150;
  std::mutex m;
  std::map<std::string, std::vector<DrawRecord>> by_activity;
  std::map<std::string, std::vector<DrawOutcome>> of_key;  // activity/key -> every answer
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every 5th request uses a key every thread uses (same activity, same user): one
        // draw for it, the others replay it.
        const bool shared = i % 5 == 4;
        const std::string& activity = ids[static_cast<std::size_t>((shared ? i : t + i) % kActivities)];
        const std::string key = shared ? "shared-" + std::to_string(i) : "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = draw_sync(s, activity, shared ? "shared-user" : "u" + std::to_string(i % 13), key, kStart + i);
        if (!r.ok()) {
          failures.fetch_add(1);
          ADD_FAILURE() << r.error().detail;
          continue;
        }
        std::lock_guard lock(m);
        of_key[activity + "/" + key].push_back(r.value());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  // One draw per key: every answer for a key is the same draw, exactly one not a replay.
  for (const auto& [key, answers] : of_key) {
    int fresh = 0;
    for (const DrawOutcome& o : answers) {
      EXPECT_EQ(o.record.draw_id, answers.front().record.draw_id) << key << ": two draws for one key";
      if (!o.replayed) ++fresh;
    }
    EXPECT_EQ(fresh, 1) << key;
    by_activity[answers.front().record.activity_id].push_back(answers.front().record);
  }
  std::size_t total = 0;
  for (const auto& id : ids) {
    const auto& records = by_activity[id];
    total += records.size();
    std::set<std::int64_t> seqs;
    std::map<std::string, int> wins;
    for (const auto& r : records) {
      seqs.insert(r.seq);
      EXPECT_EQ(r.slot, r.seq % 10);
      if (r.won) ++wins[*r.prize_id];
    }
    ASSERT_EQ(seqs.size(), records.size()) << id << ": a seq taken twice";
    ASSERT_FALSE(seqs.empty());
    EXPECT_EQ(*seqs.begin(), 0) << id;
    EXPECT_EQ(*seqs.rbegin(), static_cast<std::int64_t>(records.size()) - 1) << id << ": a gap";
    EXPECT_LE(wins["p0"], 4) << id;
    EXPECT_LE(wins["p1"], 6) << id;
    auto view = s.get_activity(id, kStart);
    ASSERT_TRUE(view.ok()) << view.error().detail;
    EXPECT_EQ(view->draws, static_cast<std::int64_t>(records.size()));
    EXPECT_EQ(view->prizes[0].remaining, 4 - wins["p0"]);
    EXPECT_EQ(view->prizes[1].remaining, 6 - wins["p1"]);
    // The stream holds exactly the draws, on the activity's master.
    const std::uint16_t owner = cluster_->owner(key_slot("fd:{" + id + "}:stream"));
    EXPECT_EQ(cluster_->run(owner, {"XLEN", "fd:{" + id + "}:stream"}).integer,
              static_cast<std::int64_t>(records.size()));
  }
  EXPECT_EQ(total, of_key.size());
  EXPECT_LT(of_key.size(), static_cast<std::size_t>(kThreads * kPerThread)) << "shared keys were replayed";
  EXPECT_EQ(s.stats().in_flight_draws, 0u);
  EXPECT_TRUE(s.ready());
  EXPECT_GE(s.list_activities(kStart).size(), ids.size());
}

TEST_F(RedisClusterTest, DrawsGoOnAcrossAMigrationOfTheActivitysSlot) {
  RedisStore& s = store();
  const std::string id = "migrating-activity";
  const std::uint16_t slot = key_slot(id);
  ASSERT_TRUE(s.put_activity(id, make_config({{1, 1000}}, 1), kStart).ok());
  std::vector<DrawRecord> records;
  for (int i = 0; i < 60; ++i) {
    auto r = draw_sync(s, id, "u" + std::to_string(i % 7), "before-" + std::to_string(i), kStart + i);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    records.push_back(r->record);
  }
  const std::uint16_t from = cluster_->owner(slot);
  const std::uint16_t to = other_master(from);
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::mutex m;
  std::thread drawer([&] {
    for (int i = 0; !stop.load() && i < 2000; ++i) {
      auto r = draw_sync(s, id, "v" + std::to_string(i % 7), "during-" + std::to_string(i), kStart + i);
      // During the key move a draw may fail (unavailable: TRYAGAIN past its timeout); it
      // must then have left nothing behind, which the seq check below verifies.
      if (!r.ok()) {
        failed.fetch_add(1);
        continue;
      }
      std::lock_guard lock(m);
      records.push_back(r->record);
    }
  });
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(cluster_->move_slot(slot, to));
  std::this_thread::sleep_for(100ms);
  stop = true;
  drawer.join();
  for (int i = 0; i < 60; ++i) {
    auto r = draw_sync(s, id, "w" + std::to_string(i % 7), "after-" + std::to_string(i), kStart + i);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    records.push_back(r->record);
  }
  EXPECT_GE(s.router_stats().moved, 1u);
  std::set<std::int64_t> seqs;
  for (const auto& r : records) seqs.insert(r.seq);
  EXPECT_EQ(seqs.size(), records.size());
  EXPECT_EQ(*seqs.begin(), 0);
  EXPECT_EQ(*seqs.rbegin(), static_cast<std::int64_t>(records.size()) - 1);
  EXPECT_EQ(cluster_->run(to, {"GET", "fd:{" + id + "}:seq"}).str, std::to_string(records.size()));
  EXPECT_EQ(cluster_->run(to, {"XLEN", "fd:{" + id + "}:stream"}).integer, static_cast<std::int64_t>(records.size()));
  ASSERT_TRUE(cluster_->move_slot(slot, from));
}

TEST_F(RedisClusterTest, DrawsPastTheInFlightBoundFailFastWithUnavailableAndAreCounted) {
  RedisStoreOptions o = store_options(cluster_->options());
  o.max_in_flight_draws = 8;
  RedisStore& s = store(std::move(o));
  ASSERT_TRUE(s.put_activity("shed", make_config({{1, 100000}}, 1), kStart).ok());
  ASSERT_TRUE(draw_sync(s, "shed", "u", "warm-up", kStart).ok());  // config cached, epoch ready
  constexpr int kDraws = 400;
  std::atomic<int> ok{0}, shed{0}, other{0}, left{kDraws};
  std::promise<void> all_done;
  for (int i = 0; i < kDraws; ++i) {
    s.draw(DrawCommand{"shed", "u" + std::to_string(i % 10), "burst-" + std::to_string(i), kStart},
           [&](Result<DrawOutcome> r) {
             if (r.ok()) {
               ok.fetch_add(1);
             } else if (r.error().kind == ErrorKind::unavailable &&
                        r.error().detail.find("in flight") != std::string::npos) {
               shed.fetch_add(1);
             } else {
               other.fetch_add(1);
             }
             if (left.fetch_sub(1) == 1) all_done.set_value();
           });
  }
  ASSERT_EQ(all_done.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(ok.load(), 8);
  EXPECT_GT(shed.load(), 0);
  EXPECT_EQ(ok.load() + shed.load(), kDraws);
  EXPECT_EQ(s.draws_shed(), static_cast<std::uint64_t>(shed.load()));
  EXPECT_EQ(s.stats().in_flight_draws, 0u);
  auto view = s.get_activity("shed", kStart);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->draws, ok.load() + 1) << "a shed draw takes no seq";
}

// ---- the stream worker on the cluster, into PostgreSQL ----------------------------------------

using fairdraw::test::kInitdb;

class RedisClusterWorkerTest : public RedisClusterTest {
 protected:
  static void SetUpTestSuite() {
    RedisClusterTest::SetUpTestSuite();
    if (::access(kInitdb, X_OK) != 0) return;
    char pattern[] = "/tmp/fairdraw_cw_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) return;
    root_ = made;
    ::chmod(made, 0711);
    const std::string out = root_ + "/script.out";
    for (int attempt = 0; attempt < 3 && !pg_started_; ++attempt) {
      pg_port_ = test::pick_free_port();
      if (pg_port_ == 0) continue;
      pg_started_ = fairdraw::test::run_pg_script("start '" + root_ + "/pg' " + std::to_string(pg_port_), out);
    }
    if (pg_started_) {
      pg_url_ = fairdraw::test::pg_script_output("url '" + root_ + "/pg' " + std::to_string(pg_port_));
    }
  }
  static void TearDownTestSuite() {
    if (pg_started_) fairdraw::test::run_pg_script("stop '" + root_ + "/pg'", root_ + "/script.out");
    pg_started_ = false;
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
    root_.clear();
    RedisClusterTest::TearDownTestSuite();
  }
  void SetUp() override {
    RedisClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (::access(kInitdb, X_OK) != 0) GTEST_SKIP() << kInitdb << " is missing";
    ASSERT_TRUE(pg_started_) << "scripts/pg-test-server.sh start failed";
  }
  void TearDown() override {
    workers_.clear();
    sinks_.clear();
    RedisClusterTest::TearDown();
  }

  static inline std::string root_;
  static inline std::string pg_url_;
  static inline std::uint16_t pg_port_ = 0;
  static inline bool pg_started_ = false;
  std::vector<std::unique_ptr<PgSink>> sinks_;
  std::vector<std::unique_ptr<StreamWorker>> workers_;
};

TEST_F(RedisClusterWorkerTest, TheWorkerPersistsTheDrawsOfEveryMaster) {
  ASSERT_TRUE(fairdraw::test::pg_exec(pg_url_, "CREATE SCHEMA cw_1"));
  const std::string url = pg_url_ + "?options=-csearch_path%3Dcw_1";
  RedisStore& s = store();
  constexpr int kActivities = 9;
  constexpr int kPerActivity = 40;
  std::set<std::uint16_t> masters;
  std::vector<std::string> ids;
  for (int a = 0; a < kActivities; ++a) {
    ids.push_back("pers-" + std::to_string(a));
    ASSERT_TRUE(s.put_activity(ids.back(), make_config({{2, 5}}, 3), kStart).ok());
    masters.insert(cluster_->owner(key_slot(ids.back())));
  }
  ASSERT_EQ(masters.size(), 3u);
  // Half before the worker starts (read as a backlog), half while it runs.
  std::vector<DrawRecord> drawn;
  auto draw_some = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      for (const auto& id : ids) {
        auto r = draw_sync(s, id, "user-" + std::to_string(i % 4), "k" + std::to_string(i), kStart + i);
        ASSERT_TRUE(r.ok()) << r.error().detail;
        drawn.push_back(r->record);
      }
    }
  };
  draw_some(0, kPerActivity / 2);

  PgSinkOptions sink_options;
  sink_options.url = url;
  sink_options.connect_timeout = 2s;
  auto opened = PgSink::open(std::move(sink_options));
  ASSERT_TRUE(opened.ok()) << opened.error().detail;
  sinks_.push_back(std::move(opened.value()));
  PgSink& sink = *sinks_.back();
  StreamWorkerOptions wo;
  wo.redis = cluster_->options();
  wo.consumer = "cluster-worker";
  wo.batch = 16;  // several rounds per stream
  wo.max_round = 64;  // 4 streams per round: chunks rotate over the 9 streams
  wo.block = 50ms;
  wo.discover_interval = 50ms;
  wo.maintain_interval = 100ms;
  wo.claim_interval = 100ms;
  wo.claim_idle = std::chrono::hours(1);
  workers_.push_back(std::make_unique<StreamWorker>(wo, sink));
  StreamWorker& worker = *workers_.back();
  worker.start();
  draw_some(kPerActivity / 2, kPerActivity);

  const auto rows = [&](const std::string& where) {
    return fairdraw::test::pg_query_int(url, "SELECT COUNT(*) FROM draws WHERE " + where);
  };
  ASSERT_TRUE(wait_until([&] { return rows("TRUE") == kActivities * kPerActivity; }, 20s)) << rows("TRUE");
  for (const auto& id : ids) {
    EXPECT_EQ(rows("activity_id = '" + id + "'"), kPerActivity) << id;
    EXPECT_EQ(fairdraw::test::pg_query_int(url, "SELECT MAX(seq) FROM draws WHERE activity_id = '" + id + "'"),
              kPerActivity - 1);
  }
  for (const DrawRecord& want : drawn) {
    auto got = sink.find_draw(want.draw_id);
    ASSERT_TRUE(got.ok() && got->has_value()) << want.draw_id;
    EXPECT_EQ((*got)->seq, want.seq);
    EXPECT_EQ((*got)->activity_id, want.activity_id);
  }
  // Acked on every master: nothing pending anywhere.
  ASSERT_TRUE(wait_until([&] { return worker.stats().acked == static_cast<std::uint64_t>(kActivities * kPerActivity); }, 10s))
      << worker.stats().acked;
  for (const auto& id : ids) {
    const std::uint16_t owner = cluster_->owner(key_slot(id));
    const RedisReply p = cluster_->run(owner, {"XPENDING", "fd:{" + id + "}:stream", "fairdraw-persist"});
    ASSERT_TRUE(p.is_array() && !p.elements.empty()) << p.str;
    EXPECT_EQ(p.elements[0].integer, 0) << id;
  }
  const StreamWorkerStats st = worker.stats();
  EXPECT_EQ(st.read, static_cast<std::uint64_t>(kActivities * kPerActivity));
  EXPECT_TRUE(st.redis_ok);
}

TEST_F(RedisClusterWorkerTest, ReadsFindDrawsNotYetPersistedAndPagesStayConsistent) {
  ASSERT_TRUE(fairdraw::test::pg_exec(pg_url_, "CREATE SCHEMA cw_2"));
  const std::string url = pg_url_ + "?options=-csearch_path%3Dcw_2";
  RedisStore& s = store();
  const std::vector<std::string> ids{"read-a", "read-b", "read-c"};
  for (const auto& id : ids) ASSERT_TRUE(s.put_activity(id, make_config({{1, 100}}, 1), kStart).ok());
  // 12 draws of "alice" over the three activities (distinct times), 3 of "bob"; no worker yet.
  std::vector<DrawRecord> alice;
  for (int i = 0; i < 12; ++i) {
    auto r = draw_sync(s, ids[static_cast<std::size_t>(i % 3)], "alice", "a" + std::to_string(i), kStart + 10 * i);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    alice.push_back(r->record);
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(draw_sync(s, ids[0], "bob", "b" + std::to_string(i), kStart + i).ok());
  // 7 draws of "carol" in one millisecond, 2 more in an older one: pages cut through ties.
  std::vector<DrawRecord> carol;
  for (int i = 0; i < 9; ++i) {
    auto r = draw_sync(s, ids[1], "carol", "c" + std::to_string(i), i < 2 ? kStart + 400 : kStart + 500);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    carol.push_back(r->record);
  }

  PgSinkOptions sink_options;
  sink_options.url = url;
  sink_options.connect_timeout = 2s;
  auto opened = PgSink::open(std::move(sink_options));
  ASSERT_TRUE(opened.ok()) << opened.error().detail;
  sinks_.push_back(std::move(opened.value()));
  PgSink& db = *sinks_.back();
  ReadThroughSink reads(db, s);

  // Nothing in the database yet: every draw is found in Redis.
  ASSERT_EQ(fairdraw::test::pg_query_int(url, "SELECT COUNT(*) FROM draws"), 0);
  for (const DrawRecord& want : alice) {
    auto got = reads.find_draw(want.draw_id);
    ASSERT_TRUE(got.ok()) << got.error().detail;
    ASSERT_TRUE(got->has_value()) << want.draw_id;
    EXPECT_EQ((*got)->seq, want.seq);
    EXPECT_EQ((*got)->activity_id, want.activity_id);
    EXPECT_EQ((*got)->user_id, "alice");
    EXPECT_EQ((*got)->idempotency_key, want.idempotency_key);
    EXPECT_EQ((*got)->drawn_at_ms, want.drawn_at_ms);
    EXPECT_EQ((*got)->won, want.won);
  }
  auto none = reads.find_draw("01ARZ3NDEKTSV4RRFFQ69G5FAV");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  // Pages of 5, newest first, then the same after the worker persisted everything.
  const auto all_pages = [&](std::optional<std::string> activity, std::string user = "alice",
                            std::size_t limit = 5) {
    std::vector<std::string> seen;
    std::optional<std::string> cursor;
    for (int page = 0; page < 20; ++page) {
      auto p = reads.user_draws(user, activity ? std::optional<std::string_view>(*activity) : std::nullopt,
                                cursor ? std::optional<std::string_view>(*cursor) : std::nullopt, limit);
      EXPECT_TRUE(p.ok()) << p.error().detail;
      if (!p.ok()) break;
      for (const auto& r : p->items) seen.push_back(r.draw_id);
      if (!p->next) break;
      cursor = p->next;
    }
    return seen;
  };
  std::vector<std::string> newest_first;
  for (auto it = alice.rbegin(); it != alice.rend(); ++it) newest_first.push_back(it->draw_id);
  EXPECT_EQ(all_pages(std::nullopt), newest_first);
  std::vector<std::string> of_b;
  for (auto it = alice.rbegin(); it != alice.rend(); ++it) {
    if (it->activity_id == "read-b") of_b.push_back(it->draw_id);
  }
  EXPECT_EQ(all_pages(std::string("read-b")), of_b);
  // Newest first: the 7 of the later millisecond by seq descending, then the 2 older ones.
  std::vector<std::string> carol_order;
  for (auto it = carol.rbegin(); it != carol.rend(); ++it) carol_order.push_back(it->draw_id);
  EXPECT_EQ(all_pages(std::nullopt, "carol", 2), carol_order);
  EXPECT_EQ(all_pages(std::string("read-b"), "carol", 3), carol_order);

  StreamWorkerOptions wo;
  wo.redis = cluster_->options();
  wo.consumer = "reads-worker";
  wo.block = 50ms;
  wo.discover_interval = 50ms;
  wo.claim_idle = std::chrono::hours(1);
  workers_.push_back(std::make_unique<StreamWorker>(wo, db));
  workers_.back()->start();
  ASSERT_TRUE(wait_until([&] { return fairdraw::test::pg_query_int(url, "SELECT COUNT(*) FROM draws") == 24; }, 20s));
  // The worker cleans the index once the rows are committed.
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& id : ids) {
          if (cluster_->run(cluster_->owner(key_slot(id)), {"HLEN", "fd:{" + id + "}:unpersisted"}).integer != 0) return false;
          if (cluster_->run(cluster_->owner(key_slot(id)), {"EXISTS", "fd:{" + id + "}:unpersisted:u:alice"}).integer != 0) return false;
        }
        return true;
      },
      10s));
  EXPECT_EQ(all_pages(std::nullopt), newest_first);
  EXPECT_EQ(all_pages(std::string("read-b")), of_b);
  EXPECT_EQ(all_pages(std::nullopt, "carol", 2), carol_order);
  for (const DrawRecord& want : alice) {
    auto got = reads.find_draw(want.draw_id);
    ASSERT_TRUE(got.ok() && got->has_value()) << want.draw_id;
    EXPECT_EQ((*got)->seq, want.seq);
  }
}

// ---- throughput, run by hand ------------------------------------------------------------------

// --gtest_also_run_disabled_tests --gtest_filter='*RedisClusterThroughput*'
// Draws through RedisStore with a bounded number in flight, 16 activities, on one server and
// then on the three-master cluster.
double draws_per_second(RedisStore& store, int activities, int draws, int in_flight) {
  for (int a = 0; a < activities; ++a) {
    EXPECT_TRUE(store.put_activity("tp-" + std::to_string(a), make_config({{10, 1'000'000}}, 90), kStart).ok());
    EXPECT_TRUE(store.prepare_epoch("tp-" + std::to_string(a), 0).ok());
  }
  // Shared with the callbacks, which may still run (issuing nothing) after the last draw.
  struct Run {
    RedisStore* store = nullptr;
    int activities = 0;
    int draws = 0;
    std::atomic<int> issued{0}, done{0}, failed{0};
    std::promise<void> finished;
    static void issue(const std::shared_ptr<Run>& run) {
      const int i = run->issued.fetch_add(1);
      if (i >= run->draws) return;
      run->store->draw(DrawCommand{"tp-" + std::to_string(i % run->activities), "u" + std::to_string(i % 1000),
                                   "k" + std::to_string(i), kStart},
                       [run](Result<DrawOutcome> r) {
                         if (!r.ok()) run->failed.fetch_add(1);
                         issue(run);
                         if (run->done.fetch_add(1) + 1 == run->draws) run->finished.set_value();
                       });
    }
  };
  auto run = std::make_shared<Run>();
  run->store = &store;
  run->activities = activities;
  run->draws = draws;
  auto finished = run->finished.get_future();
  const auto started = SteadyClock::now();
  for (int i = 0; i < in_flight; ++i) Run::issue(run);
  EXPECT_EQ(finished.wait_for(120s), std::future_status::ready);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  EXPECT_EQ(run->failed.load(), 0);
  return run->done.load() / seconds;
}

TEST_F(RedisClusterTest, DISABLED_RedisClusterThroughputOneServerVersusThreeMasters) {
  constexpr int kDraws = 60'000;
  constexpr int kActivities = 16;
  constexpr int kInFlight = 512;
  RedisTestServer single;
  ASSERT_TRUE(single.running());
  RedisOptions one;
  one.port = single.port();
  one.command_timeout = 5000ms;
  const double single_rate = draws_per_second(store(store_options(one)), kActivities, kDraws, kInFlight);
  const double cluster_rate =
      draws_per_second(store(store_options(cluster_->options(5000ms))), kActivities, kDraws, kInFlight);
  std::printf("RedisStore draws: one server %.0f draws/s, three-master cluster %.0f draws/s (%d draws, %d in flight)\n",
              single_rate, cluster_rate, kDraws, kInFlight);
}

}  // namespace
}  // namespace fairdraw::redis
