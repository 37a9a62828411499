// Helpers for the hostile-client tests (hostile_*_test.cpp): raw attack
// connections from chosen loopback source addresses, an honest load whose
// latency is measured, /metrics and RSS probes, and the report of the numbers.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace fairdraw::test::hostile {

// True when the integration run is the clustered one (FAIRDRAW_TEST_MODE=clustered).
bool clustered_run();

// Raises RLIMIT_NOFILE to its hard limit (the server child inherits it); the new soft limit.
std::size_t raise_fd_limit();

// One raw TCP connection from 127.0.0.<source_octet> (Linux routes all of 127/8
// to lo, so each octet is a distinct client address for the server).
class RawConn {
 public:
  RawConn() = default;
  ~RawConn();
  RawConn(RawConn&& other) noexcept;
  RawConn& operator=(RawConn&& other) noexcept;
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // Blocking connect (bounded), then non-blocking. rcvbuf > 0 sets SO_RCVBUF before connecting.
  bool connect(std::uint16_t port, int source_octet, int rcvbuf = 0);
  bool is_open() const { return fd_ >= 0; }
  // Non-blocking send (MSG_NOSIGNAL): bytes written, 0 when the socket is full,
  // -1 when the peer is gone (the connection is then marked closed_by_peer).
  long send_some(std::string_view bytes);
  // Reads whatever has arrived (non-blocking) into received(); true once the
  // peer has closed (EOF or reset).
  bool poll_closed();
  bool closed_by_peer() const { return peer_closed_; }
  // Appends what has arrived (non-blocking) to `out`: bytes read, 0 when nothing
  // is there, -1 once the peer has closed.
  long recv_some(std::string& out);
  int fd() const { return fd_; }
  const std::string& received() const { return received_; }
  void close();

 private:
  int fd_ = -1;
  bool peer_closed_ = false;
  std::string received_;
};

// Opens `count` connections spread over source addresses 127.0.0.<first_octet..>
// with at most `per_address` each. Connections that fail are skipped; check size().
std::vector<RawConn> open_many(std::uint16_t port, std::size_t count, int first_octet, std::size_t per_address);

struct LatencyStats {
  std::size_t requests = 0;
  std::size_t failures = 0;  // not 200
  std::string first_failure;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

// Honest clients: `threads` keep-alive connections from 127.0.0.1, each drawing
// in a loop (a fresh user per draw, `pause` between draws) until stop().
class HonestLoad {
 public:
  HonestLoad(std::uint16_t port, std::string activity_id, int threads = 2,
             std::chrono::milliseconds pause = std::chrono::milliseconds(10));
  ~HonestLoad();
  HonestLoad(const HonestLoad&) = delete;
  HonestLoad& operator=(const HonestLoad&) = delete;
  LatencyStats stop();

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::vector<std::vector<double>> samples_;
  std::vector<std::size_t> failures_;
  std::vector<std::string> first_failure_;
  bool stopped_ = false;
};

// An activity that never runs out and has no per-user quota (for the honest load).
nlohmann::json honest_activity();
// Server config with the honest activity "honest" and the given overrides merged in.
nlohmann::json hostile_config(nlohmann::json overrides = nlohmann::json::object());

// fairdraw_state{name="<name>"} from /metrics (nullopt when absent or unreachable).
std::optional<double> state_metric(std::uint16_t port, std::string_view name);
// A whole metric line's value, e.g. `fairdraw_http_requests_total{...}` (first match of `prefix`).
std::optional<double> metric_value(const std::string& metrics_text, std::string_view prefix);
// VmRSS of a process in KiB (0 when unknown).
std::size_t rss_kib(pid_t pid);

// The p99 bound the honest clients must keep during an attack:
// FAIRDRAW_HOSTILE_P99_MS, default 500 ms.
double p99_bound_ms();
// Prints one line "[hostile] <attack>: honest n=.. p50=.. p99=.. max=.. ..." and,
// when FAIRDRAW_HOSTILE_REPORT names a file, appends it there too.
void report(std::string_view attack, const LatencyStats& stats, std::string_view extra = "");
// Checks the honest clients' record: every draw 200, enough of them, p99 within the bound.
::testing::AssertionResult honest_kept_up(const LatencyStats& stats, std::size_t min_requests);

}  // namespace fairdraw::test::hostile
