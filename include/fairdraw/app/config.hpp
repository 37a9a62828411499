// Service configuration: a JSON file (--config), every field overridable by an
// environment variable FAIRDRAW_<PATH> (e.g. FAIRDRAW_HTTP_MAX_BODY_BYTES),
// validated at start with an error that names the bad field.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fairdraw/result.hpp"

namespace fairdraw::app {

struct HttpConfig {
  std::size_t max_connections = 20000;
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 16384;
  std::int64_t read_timeout_ms = 10000;
  std::int64_t idle_timeout_ms = 60000;
  std::int64_t request_timeout_ms = 5000;  // deadline of one request, < read timeout
  std::int64_t shutdown_grace_ms = 10000;
  std::int64_t write_timeout_ms = 10000;          // a response must be taken by the client within this
  std::size_t max_connections_per_address = 256;  // open connections per peer address; 0: no cap
};

struct CorsConfig {
  std::vector<std::string> allowed_origins = {"*"};  // "*" = any origin (no credentials)
  std::int64_t max_age_s = 600;
};

struct DatabaseConfig {
  std::string url;                 // "sqlite:PATH" (default sqlite:fairdraw.db, relative to the working dir) or postgresql://...
  std::string synchronous = "full";  // sqlite: "full" or "normal"
  std::size_t batch_max = 1024;
  std::size_t max_queue = 100000;
};

struct DrawConfig {
  std::int64_t max_clock_skew_ms = 30000;
  bool require_token = false;
  std::int64_t token_ttl_s = 600;
  std::size_t max_tokens = 1000000;
  std::int64_t idempotency_ttl_s = 86400;
  std::size_t idempotency_capacity = 262144;
};

struct WatchdogConfig {
  std::int64_t interval_ms = 5000;
  std::size_t max_open_connections = 18000;
  std::size_t max_in_flight_draws = 10000;
  std::size_t max_sink_queue = 50000;
};

// Token buckets (off while the rate is 0). Client addresses come from
// X-Forwarded-For only when the peer is one of trusted_proxies (IPs or CIDRs).
struct RateLimitConfig {
  std::int64_t user_per_minute = 0;
  std::int64_t user_burst = 10;
  std::int64_t address_per_minute = 0;
  std::int64_t address_burst = 20;
  std::size_t max_keys = 1'000'000;
  std::vector<std::string> trusted_proxies;
};

// User authentication by the frontend's JWT (on when a key is set) and extra
// admin tokens (several, so they can be rotated).
struct AuthConfig {
  std::vector<std::string> admin_tokens;
  std::string jwt_hs256_secret;
  std::string jwt_rs256_public_key_file;  // PEM
  std::string jwt_issuer;
  std::string jwt_audience;
  std::int64_t jwt_leeway_s = 30;
  std::string jwt_user_claim = "sub";
  bool require_user_token = false;  // POST /draw without a valid JWT: 401
  // Admin brute-force throttling (AdminGuard): an address with this many failed
  // admin authentications within admin_lockout_s gets 429 until the window ends.
  std::int64_t admin_max_failures = 10;  // 0: off
  std::int64_t admin_lockout_s = 900;
  std::size_t admin_guard_max_addresses = 10000;
};

struct Config {
  std::string listen_host = "127.0.0.1";  // from "listen": "host:port"
  std::uint16_t listen_port = 8080;
  unsigned threads = 0;  // 0: one per core
  std::string admin_token;  // empty: admin API disabled (401/403 for every call)
  std::optional<std::string> redis_url;  // unset: embedded mode
  // Clustered mode's persistence worker (Redis stream -> PostgreSQL): entries per
  // XREADGROUP, and how long an entry stays pending before another worker claims it.
  std::int64_t redis_stream_batch = 512;
  std::int64_t redis_claim_idle_ms = 30000;
  // Draws sent to Redis and not yet answered, per instance; past it a draw gets 503 at once.
  std::int64_t redis_max_in_flight_draws = 4096;
  std::string log_level = "info";
  std::string zoneinfo_dir = "/usr/share/zoneinfo";
  HttpConfig http;
  CorsConfig cors;
  DatabaseConfig database;
  DrawConfig draw;
  WatchdogConfig watchdog;
  RateLimitConfig rate_limit;
  AuthConfig auth;
  // Activities created at start when absent from the database (e.g. the demo),
  // id -> the admin API's activity body, validated by the app when applied.
  std::map<std::string, nlohmann::json> activities;
};

// Reads the file (if path given), applies environment overrides, validates.
// `env` is the environment as name=value pairs (tests pass their own).
Result<Config> load_config(const std::optional<std::string>& path,
                           const std::map<std::string, std::string>& env);
std::map<std::string, std::string> process_environment();
// FAIRDRAW_* names in `env` that configure nothing (typos; FAIRDRAW_CONFIG excluded), for a start-up warning.
std::vector<std::string> unknown_environment_overrides(const std::map<std::string, std::string>& env);

// The effective configuration as JSON with secrets masked (for --check-config and logs).
std::string describe_config(const Config& config);

}  // namespace fairdraw::app
