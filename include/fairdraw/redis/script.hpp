// A Lua script run with EVALSHA, loaded on demand (SCRIPT LOAD) and reloaded once when
// a server answers NOSCRIPT (restart, failover, SCRIPT FLUSH).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/redis/cluster.hpp"
#include "fairdraw/redis/connection.hpp"

namespace fairdraw::redis {

class RedisScript {
 public:
  explicit RedisScript(std::string source);

  const std::string& source() const;
  // The SHA1 Redis returned for the source once any call has loaded it.
  std::optional<std::string> sha() const;

  // EVALSHA sha numkeys keys... args...; loads the script first if no SHA is known yet,
  // and on a NOSCRIPT error reply runs SCRIPT LOAD and retries EVALSHA once. `done` gets
  // the script's reply (a Lua error is an error reply) or an Error as from
  // RedisConnection::command. Thread-safe; the script and the connection may be destroyed
  // while calls are in flight (a retry on a destroyed connection fails with unavailable).
  void call(RedisConnection& connection, std::vector<std::string> keys, std::vector<std::string> args,
            RedisCallback done) const;
  // The same through a router: EVALSHA (and SCRIPT LOAD) go to the master owning the slot of
  // keys[0] (every key of a script must share that slot), any master when there is no key.
  void call(RedisRouter& router, std::vector<std::string> keys, std::vector<std::string> args,
            RedisCallback done) const;

  // The hot path's form, with no argv of strings: begin() starts the EVALSHA (its SHA is
  // written in at send time), the caller adds exactly `keys` keys and `args` arguments, and
  // call() sends it through the router to the master of `key`'s slot (the first key's).
  // A command with the wrong number of arguments fails at once, inline, with internal.
  CommandWriter begin(std::size_t keys, std::size_t args, std::size_t reserve = 512) const;
  void call(RedisRouter& router, std::string_view key, CommandWriter command, RedisCallback done) const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace fairdraw::redis
