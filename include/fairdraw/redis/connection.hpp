// One pipelined, auto-reconnecting connection to a Redis server, driven by Asio
// (which owns the socket) with hiredis used only to format commands and parse replies.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/inline_function.hpp"
#include "fairdraw/redis/reply.hpp"
#include "fairdraw/redis/url.hpp"
#include "fairdraw/result.hpp"

// Only a reference crosses this header, so Asio stays out of its includers.
namespace boost::asio {
class io_context;
}

namespace fairdraw::redis {

struct RedisOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string user;      // with a password: `AUTH user password` (ACL); empty: `AUTH password`
  std::string password;  // empty: no AUTH
  int db = 0;            // != 0: SELECT db on every connect
  // Resolve + TCP connect + AUTH/SELECT; commands queued meanwhile wait at most command_timeout.
  std::chrono::milliseconds connect_timeout{1000};
  // The longest the oldest unanswered command may wait before the connection is dropped.
  std::chrono::milliseconds command_timeout{1000};
  // Commands accepted but not yet answered (queued while connecting included); more fail fast.
  std::size_t max_pipeline = 1024;
  // Reconnect delay after a failure: starts at the minimum, doubles up to the maximum,
  // back to the minimum once a connection is up.
  std::chrono::milliseconds reconnect_backoff_min{50};
  std::chrono::milliseconds reconnect_backoff_max{2000};
  // Every node of the URL (host:port first). A RedisConnection uses host and port only;
  // RedisRouter (cluster.hpp) asks these for the cluster's slot map. Empty: host:port.
  std::vector<RedisEndpoint> seeds;
};

// host, port, seeds, user, password and db from a parsed URL; timeouts and limits stay default.
RedisOptions make_redis_options(const RedisUrl& url);

// argv as RESP bytes (what command() sends); internal error for an empty argv.
Result<std::string> format_command(const std::vector<std::string>& argv);

// One command's RESP bytes built in place, as format_command makes them from an argv, for
// the paths that send a command per request: no argv of strings, no hiredis buffer to copy.
// Exactly `argc` arguments must be added before take().
class CommandWriter {
 public:
  explicit CommandWriter(std::size_t argc, std::size_t reserve = 256);
  CommandWriter& arg(std::string_view value);
  // `head` and `tail` concatenated as one argument (a key from its prefix and its name).
  CommandWriter& arg(std::string_view head, std::string_view tail);
  CommandWriter& arg(std::int64_t value);
  std::size_t left() const { return left_; }
  // The bytes; internal error if the count of arguments does not match argc.
  Result<std::string> take() &&;

 private:
  void bulk_header(std::size_t length);
  std::string out_;
  std::size_t left_;
};

// Move-only, with 48 bytes inline (three shared_ptrs): a draw's callbacks through the script,
// the router and the connection allocate nothing (std::function keeps 16 bytes, and a lambda
// holding a shared_ptr always went to the heap).
using RedisCallback = InlineFunction<void(Result<RedisReply>), 48>;

// A formatted command shared by whoever may have to send it again (the router after MOVED, a
// script after NOSCRIPT), so that a send copies nothing but into the connection's write buffer.
using SharedCommand = std::shared_ptr<const std::string>;

// Thread-safe: every call posts onto the connection's strand, and every callback runs on
// that strand exactly once (never inline in command()), so callbacks must neither block
// nor throw.
// Errors: ErrorKind::unavailable when the server cannot be reached, times out, rejects
// AUTH/SELECT, the pipeline is full or the connection is closed; ErrorKind::internal for
// a protocol error. A Redis error reply is a successful Result holding a reply of type error.
// Destroy it before its io_context.
class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  // Starts connecting at once; commands issued meanwhile are queued (up to max_pipeline).
  static std::shared_ptr<RedisConnection> create(boost::asio::io_context& io, RedisOptions options);

  // Closes the connection (as close()); operations still pending finish in the background.
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends argv (e.g. {"SET", key, value}) pipelined behind earlier commands; replies come
  // back in issue order. Fails fast with unavailable while the connection is down and the
  // reconnect backoff has not elapsed.
  void command(std::vector<std::string> argv, RedisCallback done);

  // The same with argv already formatted (format_command), so a caller that may resend a
  // command (RedisRouter after MOVED) formats it once. With `asking`, `ASKING` goes out
  // first, in the same write, so nothing can come between the two (a Cluster ASK redirect);
  // `done` gets the command's reply only.
  void command_formatted(std::string formatted, RedisCallback done, bool asking = false);
  // The same with shared bytes: they are appended to the write buffer on the connection's
  // strand, and must not change until then.
  void command_shared(SharedCommand formatted, RedisCallback done, bool asking = false);

  // Fails every unanswered command with unavailable and stops reconnecting; later commands
  // fail with unavailable. Idempotent.
  void close();

  const RedisOptions& options() const;

  class Impl;

 private:
  explicit RedisConnection(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace fairdraw::redis
