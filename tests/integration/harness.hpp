// Process harness for the integration tests: runs the real fairdraw binary on a free loopback port with its own temp dir, plus shared request helpers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_client.hpp"

namespace fairdraw::test {

inline constexpr std::string_view kAdminToken = "test-admin-token";

std::int64_t now_ms();
// A free TCP port on 127.0.0.1 (bound to port 0, read back, closed).
std::uint16_t pick_free_port();
// Authorization: Bearer <the test admin token>.
Headers admin_headers();

// Polls `done` every 50 ms until true or `timeout`; a last look at the deadline.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
// `s` single-quoted for sh.
std::string shell_quote(const std::string& s);

// FAIRDRAW_TEST_MODE=clustered: every FairdrawServer runs in clustered mode (its own
// redis-server, a fresh PostgreSQL schema on the PostgreSQL shared by this run). ctest
// registers the integration binary twice: as is, and with the prefix "clustered.".
bool clustered_mode();

// For the few tests that are embedded-only by nature; `why` says why.
#define FAIRDRAW_SKIP_IF_CLUSTERED(why)                                      \
  do {                                                                     \
    if (::fairdraw::test::clustered_mode()) GTEST_SKIP() << "embedded only: " << (why); \
  } while (false)

// A private redis-server on a fixed free loopback port, its files (AOF, log) in `dir`.
// `extra_args` are appended to the defaults (no RDB, no AOF), so they may override them.
class RedisProcess {
 public:
  RedisProcess(std::string dir, std::vector<std::string> extra_args = {});
  ~RedisProcess();
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts (again, on the same port) and waits (bounded) until it answers PING.
  ::testing::AssertionResult start(std::chrono::milliseconds wait = std::chrono::seconds(10));
  // SIGTERM (redis-server then fsyncs and exits) / SIGKILL; both reap.
  int stop_sigterm(std::chrono::milliseconds wait = std::chrono::seconds(10));
  void kill9();
  bool running();

  std::uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_; }
  // One command over a fresh connection; the raw RESP reply ("" on failure).
  std::string command(const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  std::string dir_;
  std::vector<std::string> extra_args_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// The PostgreSQL of this test run (scripts/pg-test-server.sh). Under ctest its directory
// comes from FAIRDRAW_TEST_PG_DIR and it outlives the test process (a ctest fixture stops
// it); otherwise the first user starts one in a temp dir and it is stopped at exit.
namespace pg {
// Started (idempotent) and answering; the reason otherwise.
::testing::AssertionResult ensure();
// postgresql://… of the test database (no schema chosen).
std::string base_url();
// A fresh schema; the URL selecting it (search_path).
::testing::AssertionResult new_schema(std::string& url);
// Fault injection: a fast shutdown, and a start on the same port.
::testing::AssertionResult stop();
::testing::AssertionResult start();
// psql -tA: the output of one statement ("" and false on failure).
bool query(const std::string& url, const std::string& sql, std::string& out);
}  // namespace pg

// One fairdraw process. The config JSON is merged (RFC 7396) over the harness
// defaults (listen, admin_token, database.url, log_level); `env` adds or
// overrides environment variables. The child is always killed in the destructor;
// on a test failure its log is printed and its temp dir kept.
class FairdrawServer {
 public:
  explicit FairdrawServer(nlohmann::json config = nlohmann::json::object(),
                          std::map<std::string, std::string> env = {});
  ~FairdrawServer();
  FairdrawServer(const FairdrawServer&) = delete;
  FairdrawServer& operator=(const FairdrawServer&) = delete;

  // Starts the process (on a fresh free port) and waits (bounded) for GET /healthz == 200.
  ::testing::AssertionResult start(std::chrono::milliseconds wait = std::chrono::seconds(10));
  // Starts again on the same data dir after stop_sigterm() or kill9().
  ::testing::AssertionResult restart() { return start(); }
  // SIGTERM, then waits for the exit: the exit code, 128+signal when killed by a
  // signal, -1 when it did not exit within `wait` (it is then SIGKILLed).
  int stop_sigterm(std::chrono::milliseconds wait = std::chrono::seconds(20));
  // SIGKILL and reap.
  void kill9();
  bool running();

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;
  HttpClient client(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const {
    return HttpClient(port_, timeout);
  }

  // Clustered mode for this server whatever FAIRDRAW_TEST_MODE says (fault tests), with
  // extra redis-server arguments (e.g. AOF). Before the first start.
  void force_clustered(std::vector<std::string> redis_args = {});
  // Runs on `other`'s Redis and PostgreSQL schema: a second instance of the same cluster.
  // Before the first start; `other` must have started.
  void share_backend(const FairdrawServer& other);
  // Clustered mode: the Redis and the database URL this server uses (null / "" in embedded mode).
  bool clustered() const { return backend_ != nullptr; }
  RedisProcess* redis() const;
  std::string database_url() const;

 private:
  // Reaps the child if it has exited; its status as stop_sigterm() reports it.
  std::optional<int> try_reap();

  struct Backend;
  // Clustered mode: set up on the first start.
  ::testing::AssertionResult prepare_backend();

  nlohmann::json config_;
  std::map<std::string, std::string> env_;
  bool want_clustered_ = false;
  std::vector<std::string> redis_args_;
  std::shared_ptr<Backend> backend_;
  std::string dir_;
  std::string log_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  int starts_ = 0;
};

// A value of the server's /metrics, e.g. `fairdraw_stream_unread{activity_id="f1"}`
// (nullopt when absent or unreachable).
std::optional<double> metric(const FairdrawServer& server, const std::string& series);
// One integer from the server's PostgreSQL (-1 on failure).
std::int64_t pg_int(const FairdrawServer& server, const std::string& sql);

// Checks an RFC 9457 problem response: status, Content-Type application/problem+json,
// {"type", "title", "status", "detail"} (and "instance" unless told otherwise), X-Request-Id.
::testing::AssertionResult is_problem(const HttpResponse& r, int status, std::string_view type,
                                      bool require_instance = true);

// A prize entry for an activity body.
nlohmann::json prize_json(const std::string& id, std::int64_t weight, std::int64_t stock);
// An activity body as PUT /admin/activities/{id} takes it.
nlohmann::json activity_json(const std::string& name, std::int64_t miss_weight,
                             std::vector<nlohmann::json> prizes);

// POST /draw {"activity_id", "user_id"} with an optional Idempotency-Key.
HttpResponse post_draw(HttpClient& client, const std::string& activity_id, const std::string& user_id,
                       const std::optional<std::string>& key = std::nullopt);

// The whole audit trail of an activity, page by page.
::testing::AssertionResult fetch_audit_trail(HttpClient& client, const std::string& activity_id,
                                             std::vector<nlohmann::json>& items, int page_size = 1000);

}  // namespace fairdraw::test
