// RedisRouter: the client RedisStore, RedisScript and StreamWorker talk through. Against a
// Redis Cluster it sends each command to the master owning its key's slot (slot map from
// CLUSTER SLOTS, MOVED/ASK followed, TRYAGAIN/CLUSTERDOWN retried); against a plain
// redis-server (CLUSTER SLOTS answers "cluster support disabled") every slot belongs to the
// one server, so the same code path serves both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/redis/connection.hpp"

namespace fairdraw::redis {

inline constexpr std::uint16_t kClusterSlots = 16384;

// CRC16-CCITT (XMODEM) of the key mod 16384, or of its hash tag: the part between the first
// '{' and the first '}' after it, when that part is not empty (Redis Cluster's rule).
std::uint16_t key_slot(std::string_view key);

struct RedisRouterStats {
  bool map_known = false;   // a CLUSTER SLOTS (or its refusal) has been answered
  bool clustered = false;   // the servers are a Redis Cluster
  std::size_t masters = 0;  // nodes owning slots in the current map
  std::uint64_t moved = 0;      // MOVED redirects followed
  std::uint64_t asked = 0;      // ASK redirects followed
  std::uint64_t retried = 0;    // TRYAGAIN / CLUSTERDOWN retries
  std::uint64_t refreshes = 0;  // slot maps read
};

// Thread-safe; never blocks the caller. Callbacks run exactly once on a connection's strand
// (never inline), as RedisConnection's. Commands issued before the map is known go to the
// first seed and are redirected if needed.
// Redirects: MOVED updates the slot's owner, asks for a full refresh and resends (at most 5
// redirects per command); ASK resends once to the target behind ASKING; TRYAGAIN and
// CLUSTERDOWN are retried after a short backoff (10 ms doubling) while the command's timeout
// (RedisOptions::command_timeout from the first send) allows, then the error reply is
// returned. A connection error or timeout fails the command (it may have run: never resent)
// and asks for a refresh. Refreshes are rate-limited (one at a time, 100 ms apart).
// Destroy it before its io_context.
class RedisRouter : public std::enable_shared_from_this<RedisRouter> {
 public:
  // `connections_per_node` pipelined connections to each master, used in turn. Seeds are
  // options.seeds, or options.host:port when empty. Reads the slot map at once.
  static std::shared_ptr<RedisRouter> create(boost::asio::io_context& io, RedisOptions options,
                                             std::size_t connections_per_node = 1);
  ~RedisRouter();  // close()
  RedisRouter(const RedisRouter&) = delete;
  RedisRouter& operator=(const RedisRouter&) = delete;

  // Routed by the slot of `key` (a command's keys must all share one slot).
  void command(std::string_view key, std::vector<std::string> argv, RedisCallback done);
  // A command without a key (PING, INFO): any master.
  void command_any(std::vector<std::string> argv, RedisCallback done);
  // The same with the command already formatted (format_command, CommandWriter).
  void command_formatted(std::string_view key, std::string formatted, RedisCallback done);
  void command_formatted_any(std::string formatted, RedisCallback done);
  // The same with shared bytes (see RedisConnection::command_shared), kept for resends.
  void command_shared(std::string_view key, SharedCommand formatted, RedisCallback done);

  // Fails what is unanswered, later commands fail with unavailable. Idempotent.
  void close();

  // The map of the last refresh says the servers form a cluster.
  bool clustered() const;
  // "host:port" of the master owning `slot` in the current map (empty if unknown).
  std::string owner_of(std::uint16_t slot) const;
  // Asks for a refresh of the slot map (asynchronous).
  void refresh();
  RedisRouterStats stats() const;
  const RedisOptions& options() const;

  class Impl;

 private:
  explicit RedisRouter(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace fairdraw::redis
