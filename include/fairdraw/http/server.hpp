// The HTTP/1.1 server: an Asio io_context thread pool, one Beast session per
// connection. It moves bytes and enforces transport limits; everything else is
// the Handler's. Keep-alive and pipelining (answered in order, one request at a
// time per connection), read/idle timeouts, header and body limits, a
// connection limit, graceful shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "fairdraw/http/message.hpp"
#include "fairdraw/result.hpp"

namespace fairdraw::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: pick a free port (tests)
  unsigned threads = 0;       // 0: hardware concurrency
  std::size_t max_connections = 20000;
  std::size_t max_connections_per_address = 0;  // per peer IP; 0: no cap
  std::size_t max_header_bytes = 8192;   // request line limit is the same: 414 / 431
  std::size_t max_body_bytes = 16384;    // 413, answered from Content-Length
  std::chrono::milliseconds read_timeout{10000};   // a request must arrive in full within this
  std::chrono::milliseconds idle_timeout{60000};   // keep-alive connection with no request
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds shutdown_grace{10000}; // in-flight requests may finish within this
};

// Counters the server keeps; read by the metrics endpoint.
struct ServerStats {
  std::uint64_t open_connections = 0;
  std::uint64_t accepted_connections = 0;  // became sessions (refused ones not included)
  std::uint64_t refused_connections = 0;  // over max_connections
  std::uint64_t refused_per_address = 0;  // over max_connections_per_address (not in refused_connections)
  std::uint64_t read_timeouts = 0;        // answered 408
  std::uint64_t idle_timeouts = 0;        // closed silently, no request had started
  std::uint64_t write_timeouts = 0;
  std::uint64_t in_flight_requests = 0;
  std::uint64_t bad_requests = 0;  // unparseable, answered 400 and closed
  std::uint64_t uri_too_long = 0;       // answered 414
  std::uint64_t headers_too_large = 0;  // answered 431
  std::uint64_t payload_too_large = 0;  // answered 413
};

// Repeating job on the io_context's timers (the scheduler builds on this).
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void cancel() = 0;
};

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. Error detail names the address.
  Status listen();
  std::uint16_t port() const;  // the bound port (after listen)

  // Runs the io threads and blocks until shutdown completes. SIGTERM/SIGINT
  // trigger shutdown(); `on_stopping` runs once, on shutdown's start.
  void run(std::function<void()> on_stopping = {});
  // Graceful: stop accepting, close idle connections, let in-flight requests
  // finish (up to shutdown_grace), then stop the io threads. Thread-safe.
  void shutdown();

  // Runs fn on an io thread.
  void post(std::function<void()> fn);
  // Runs fn on io thread `lane` (a Request's io_lane): work that ends in
  // responses on that thread's connections, with no hop between threads.
  void post_to(unsigned lane, std::function<void()> fn);
  // Calls fn every period on an io thread until cancelled or shutdown (each
  // period counts from the end of the previous call). Dropping the handle does
  // not cancel. May be called before run().
  std::shared_ptr<Timer> every(std::chrono::milliseconds period, std::function<void()> fn);

  ServerStats stats() const;
  unsigned thread_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};


// For fuzz/fuzz_http_request.cpp and the tests: the request reading of a
// connection (the same parser, limits, refusals and 100-continue as a
// Server's sessions) over a byte string instead of a socket.
namespace fuzzing {

// A transport refusal: the server answers it as problem+json and closes.
struct Refusal {
  int status = 0;  // 400, 413, 414 or 431
  std::string type;
  std::string detail;
};

struct StreamCallbacks {
  // A whole request, as a Handler would get it, except that request_id is the
  // client's X-Request-Id when valid and empty otherwise (the server would
  // generate one) and remote_addr is empty. It may be moved from: the next
  // request is parsed into the same object, as on a connection. version is 10
  // or 11; head: a HEAD request. Return false to close the connection (as a
  // response with Connection: close does); it also closes when
  // request.keep_alive is false.
  std::function<bool(Request& request, unsigned version, bool head)> on_request;
  std::function<void(const Refusal&)> on_refusal;  // the last call: nothing more is read
  std::function<void()> on_continue;                // a 100 Continue is sent here
};

enum class StreamEnd {
  closed,      // after a request that ends the connection
  refused,     // after on_refusal
  incomplete,  // the bytes ran out (mid-request or between requests): the server would wait
};

// Parses `bytes` as one connection's input: pipelined requests one after the
// other, stopping at the first refusal or closing request. `piece`: bytes per
// read (0: all of them in one read), to exercise requests arriving in parts.
StreamEnd parse_stream(std::string_view bytes, const ServerOptions& limits, const StreamCallbacks& callbacks,
                       std::size_t piece = 0);

}  // namespace fuzzing

}  // namespace fairdraw::http
