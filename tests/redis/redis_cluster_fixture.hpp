// A private three-master Redis Cluster on loopback for tests: three redis-server
// --cluster-enabled yes (free ports, bus ports chosen too, data in a temporary directory),
// joined the way `redis-cli --cluster create` does it (distinct config epochs, ADDSLOTSRANGE,
// MEET), ready once every node says cluster_state:ok (at most 15 s). Killed and removed in
// the destructor. scripts/redis-cluster-test.sh does the same from a shell.
// The helpers talk to single nodes with hiredis's blocking API (never through the code
// under test) and can move a slot between masters the way a resharding does.
#pragma once

#include <hiredis/hiredis.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fairdraw/redis/cluster.hpp"
#include "fairdraw/redis/connection.hpp"
#include "redis_test_server.hpp"

namespace fairdraw::redis::test {

// One blocking hiredis connection to one node.
class NodeClient {
 public:
  explicit NodeClient(std::uint16_t port) {
    timeval tv{2, 0};
    ctx_ = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx_ != nullptr && ctx_->err == 0) redisSetTimeout(ctx_, tv);
  }
  ~NodeClient() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  NodeClient(const NodeClient&) = delete;
  NodeClient& operator=(const NodeClient&) = delete;

  bool ok() const { return ctx_ != nullptr && ctx_->err == 0; }

  // The reply as a RedisReply (an I/O failure is an error reply "IOERR ...").
  RedisReply run(const std::vector<std::string>& argv) {
    RedisReply out;
    out.type = RedisReply::Type::error;
    if (!ok()) {
      out.str = "IOERR not connected";
      return out;
    }
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    for (const auto& a : argv) {
      args.push_back(a.data());
      lengths.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), args.data(), lengths.data()));
    if (reply == nullptr) {
      out.str = std::string("IOERR ") + ctx_->errstr;
      return out;
    }
    out = copy(*reply);
    freeReplyObject(reply);
    return out;
  }

 private:
  static RedisReply copy(const redisReply& in) {
    RedisReply out;
    switch (in.type) {
      case REDIS_REPLY_STRING: out.type = RedisReply::Type::string; break;
      case REDIS_REPLY_STATUS: out.type = RedisReply::Type::status; break;
      case REDIS_REPLY_ERROR: out.type = RedisReply::Type::error; break;
      case REDIS_REPLY_INTEGER: out.type = RedisReply::Type::integer; break;
      case REDIS_REPLY_ARRAY: out.type = RedisReply::Type::array; break;
      default: out.type = RedisReply::Type::nil; break;
    }
    if (in.str != nullptr) out.str.assign(in.str, in.len);
    out.integer = in.integer;
    for (std::size_t i = 0; in.type == REDIS_REPLY_ARRAY && i < in.elements; ++i) {
      out.elements.push_back(copy(*in.element[i]));
    }
    return out;
  }

  redisContext* ctx_ = nullptr;
};

class RedisTestCluster {
 public:
  static constexpr int kMasters = 3;

  RedisTestCluster() {
    char pattern[] = "/tmp/fairdraw_cluster_XXXXXX";
    if (const char* made = ::mkdtemp(pattern)) dir_ = made;
    if (dir_.empty()) return;
    for (int i = 0; i < kMasters; ++i) {
      const std::uint16_t bus = pick_free_port();
      const std::string node_dir = dir_ + "/n" + std::to_string(i);
      std::filesystem::create_directories(node_dir);
      servers_.push_back(std::make_unique<RedisTestServer>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-port", std::to_string(bus), "--cluster-node-timeout", "2000",
          "--dir", node_dir, "--cluster-config-file", "nodes.conf"}));
      if (!servers_.back()->running()) return;
      buses_.push_back(bus);
    }
    ready_ = form();
  }
  ~RedisTestCluster() {
    servers_.clear();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  RedisTestCluster(const RedisTestCluster&) = delete;
  RedisTestCluster& operator=(const RedisTestCluster&) = delete;

  bool ready() const { return ready_; }
  std::uint16_t port(int i) const { return servers_[static_cast<std::size_t>(i)]->port(); }
  std::vector<std::uint16_t> ports() const {
    std::vector<std::uint16_t> out;
    for (const auto& s : servers_) out.push_back(s->port());
    return out;
  }
  std::string url() const {
    std::string out = "redis://";
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      out += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(servers_[i]->port());
    }
    return out;
  }
  // Seeds: every master, host:port the first one.
  RedisOptions options(std::chrono::milliseconds command_timeout = std::chrono::milliseconds(2000)) const {
    RedisOptions o;
    o.host = "127.0.0.1";
    o.port = port(0);
    for (auto p : ports()) o.seeds.push_back(RedisEndpoint{"127.0.0.1", p});
    o.connect_timeout = std::chrono::milliseconds(1000);
    o.command_timeout = command_timeout;
    o.reconnect_backoff_max = std::chrono::milliseconds(200);
    return o;
  }

  RedisReply run(std::uint16_t node_port, const std::vector<std::string>& argv) const {
    NodeClient c(node_port);
    return c.run(argv);
  }

  std::string node_id(std::uint16_t node_port) const { return run(node_port, {"CLUSTER", "MYID"}).str; }

  // The port of the master owning `slot`, as node 0 sees it (0 if unknown).
  std::uint16_t owner(std::uint16_t slot) const {
    const RedisReply slots = run(port(0), {"CLUSTER", "SLOTS"});
    for (const auto& range : slots.elements) {
      if (range.elements.size() >= 3 && range.elements[0].integer <= slot && slot <= range.elements[1].integer) {
        return static_cast<std::uint16_t>(range.elements[2].elements[1].integer);
      }
    }
    return 0;
  }

  // Marks `slot` migrating from -> to and moves every key of it (MIGRATE), leaving the slot
  // in migration: a command on a moved key then gets ASK from the old owner.
  bool begin_migration(std::uint16_t slot, std::uint16_t from, std::uint16_t to, bool move_keys = true) const {
    const std::string s = std::to_string(slot);
    if (run(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", node_id(from)}).is_error()) return false;
    if (run(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", node_id(to)}).is_error()) return false;
    if (!move_keys) return true;
    for (int round = 0; round < 1000; ++round) {
      const RedisReply keys = run(from, {"CLUSTER", "GETKEYSINSLOT", s, "100"});
      if (!keys.is_array()) return false;
      if (keys.elements.empty()) return true;
      std::vector<std::string> argv{"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS"};
      for (const auto& k : keys.elements) argv.push_back(k.str);
      if (run(from, argv).is_error()) return false;
    }
    return false;
  }

  // Gives `slot` to `to` on every node (the end of a migration, or a plain reassignment).
  bool finish_migration(std::uint16_t slot, std::uint16_t to) const {
    const std::string id = node_id(to);
    for (auto p : ports()) {
      if (run(p, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id}).is_error()) return false;
    }
    return true;
  }

  // A whole migration of `slot` (with its keys) to `to`.
  bool move_slot(std::uint16_t slot, std::uint16_t to) const {
    const std::uint16_t from = owner(slot);
    if (from == 0) return false;
    if (from == to) return true;
    return begin_migration(slot, from, to) && finish_migration(slot, to);
  }

 private:
  bool form() {
    const int per = kClusterSlots / kMasters;
    for (int i = 0; i < kMasters; ++i) {
      const int first = i * per;
      const int last = i == kMasters - 1 ? kClusterSlots - 1 : (i + 1) * per - 1;
      if (run(port(i), {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)}).is_error()) return false;
      if (run(port(i), {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)}).is_error()) {
        return false;
      }
    }
    for (int i = 1; i < kMasters; ++i) {
      const auto meet = run(port(0), {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i)),
                                      std::to_string(buses_[static_cast<std::size_t>(i)])});
      if (meet.is_error()) return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (int i = 0; i < kMasters && all; ++i) {
        const std::string info = run(port(i), {"CLUSTER", "INFO"}).str;
        all = info.find("cluster_state:ok") != std::string::npos &&
              info.find("cluster_known_nodes:" + std::to_string(kMasters)) != std::string::npos;
        // Every node must also see the others' slots, or it would answer CLUSTERDOWN / MOVED wrongly.
        all = all && run(port(i), {"CLUSTER", "SLOTS"}).elements.size() == static_cast<std::size_t>(kMasters);
      }
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::string dir_;
  std::vector<std::unique_ptr<RedisTestServer>> servers_;
  std::vector<std::uint16_t> buses_;
  bool ready_ = false;
};

}  // namespace fairdraw::redis::test
