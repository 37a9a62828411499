// Tests for config loading: defaults, the shipped file, environment overrides, validation, secret masking.
#include "fairdraw/app/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

namespace fairdraw::app {
namespace {

using Env = std::map<std::string, std::string>;

// A config file under /tmp, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    static std::atomic<int> counter{0};
    path_ = "/tmp/fairdraw_config_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".json";
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Result<Config> load_text(const std::string& text, const Env& env = {}) {
  TempFile file(text);
  return load_config(file.path(), env);
}

std::string error_of(const Result<Config>& result) {
  if (result.ok()) return "<loaded without error>";
  return result.error().detail;
}

TEST(ConfigTest, DefaultsWithNoFileAndNoEnv) {
  auto config = load_config(std::nullopt, {});
  ASSERT_TRUE(config.ok()) << config.error().detail;
  const Config& c = *config;
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.threads, 0u);
  EXPECT_EQ(c.admin_token, "");
  EXPECT_FALSE(c.redis_url.has_value());
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.zoneinfo_dir, "/usr/share/zoneinfo");
  EXPECT_EQ(c.database.url, "sqlite:fairdraw.db");
  EXPECT_EQ(c.database.synchronous, "full");
  EXPECT_EQ(c.database.batch_max, 1024u);
  EXPECT_EQ(c.database.max_queue, 100000u);
  EXPECT_EQ(c.http.max_connections, 20000u);
  EXPECT_EQ(c.http.max_header_bytes, 8192u);
  EXPECT_EQ(c.http.max_body_bytes, 16384u);
  EXPECT_EQ(c.http.read_timeout_ms, 10000);
  EXPECT_EQ(c.http.idle_timeout_ms, 60000);
  EXPECT_EQ(c.http.request_timeout_ms, 5000);
  EXPECT_EQ(c.http.shutdown_grace_ms, 10000);
  EXPECT_EQ(c.cors.allowed_origins, std::vector<std::string>{"*"});
  EXPECT_EQ(c.cors.max_age_s, 600);
  EXPECT_EQ(c.draw.max_clock_skew_ms, 30000);
  EXPECT_FALSE(c.draw.require_token);
  EXPECT_EQ(c.draw.token_ttl_s, 600);
  EXPECT_EQ(c.draw.max_tokens, 1000000u);
  EXPECT_EQ(c.draw.idempotency_ttl_s, 86400);
  EXPECT_EQ(c.draw.idempotency_capacity, 262144u);
  EXPECT_EQ(c.watchdog.interval_ms, 5000);
  EXPECT_EQ(c.watchdog.max_open_connections, 18000u);
  EXPECT_EQ(c.watchdog.max_in_flight_draws, 10000u);
  EXPECT_EQ(c.watchdog.max_sink_queue, 50000u);
  EXPECT_TRUE(c.activities.empty());
}

TEST(ConfigTest, EmptyFileObjectGivesDefaults) {
  auto config = load_text("{}");
  ASSERT_TRUE(config.ok()) << config.error().detail;
  EXPECT_EQ(config->database.url, "sqlite:fairdraw.db");
  EXPECT_EQ(config->listen_port, 8080);
}

TEST(ConfigTest, ShippedConfigLoads) {
  auto config = load_config(std::string(FAIRDRAW_SOURCE_DIR) + "/config/fairdraw.json", {});
  ASSERT_TRUE(config.ok()) << config.error().detail;
  EXPECT_EQ(config->listen_host, "127.0.0.1");
  EXPECT_EQ(config->listen_port, 8080);
  EXPECT_EQ(config->database.url, "sqlite:data/fairdraw.db");
  EXPECT_EQ(config->admin_token, "change-me-admin-token");
  ASSERT_EQ(config->activities.count("demo"), 1u);
  const auto& demo = config->activities.at("demo");
  EXPECT_EQ(demo.at("name"), "Demo prize draw");
  EXPECT_EQ(demo.at("miss_weight"), 900);
  EXPECT_EQ(demo.at("max_draws_per_user"), 5);
  EXPECT_EQ(demo.at("max_draws_per_user_per_day"), 3);
  EXPECT_EQ(demo.at("time_zone"), "UTC");
  ASSERT_EQ(demo.at("prizes").size(), 3u);
  EXPECT_EQ(demo.at("prizes")[0].at("id"), "gold");
  EXPECT_EQ(demo.at("prizes")[0].at("weight"), 10);
  EXPECT_EQ(demo.at("prizes")[0].at("stock"), 10);
  EXPECT_EQ(demo.at("prizes")[1].at("id"), "silver");
  EXPECT_EQ(demo.at("prizes")[2].at("id"), "bronze");
  EXPECT_EQ(demo.at("prizes")[2].at("stock"), 200);
}

TEST(ConfigTest, FileValuesAreRead) {
  auto config = load_text(R"({"listen": "0.0.0.0:9090", "threads": 4, "log_level": "debug",
      "redis": {"url": "redis://cache:6379/0"},
      "database": {"url": "postgresql://fd@db/fairdraw", "synchronous": "normal", "batch_max": 10, "max_queue": 20},
      "http": {"max_body_bytes": 2048, "read_timeout_ms": 3000, "request_timeout_ms": 2000},
      "cors": {"allowed_origins": ["https://shop.example", "http://localhost:3000"], "max_age_s": 0},
      "draw": {"require_token": true, "max_clock_skew_ms": 50},
      "watchdog": {"max_sink_queue": 7}})");
  ASSERT_TRUE(config.ok()) << config.error().detail;
  EXPECT_EQ(config->listen_host, "0.0.0.0");
  EXPECT_EQ(config->listen_port, 9090);
  EXPECT_EQ(config->threads, 4u);
  EXPECT_EQ(config->log_level, "debug");
  EXPECT_EQ(config->redis_url, "redis://cache:6379/0");
  EXPECT_EQ(config->database.url, "postgresql://fd@db/fairdraw");
  EXPECT_EQ(config->database.synchronous, "normal");
  EXPECT_EQ(config->database.batch_max, 10u);
  EXPECT_EQ(config->database.max_queue, 20u);
  EXPECT_EQ(config->http.max_body_bytes, 2048u);
  EXPECT_EQ(config->http.read_timeout_ms, 3000);
  EXPECT_EQ(config->http.request_timeout_ms, 2000);
  EXPECT_EQ(config->cors.allowed_origins,
            (std::vector<std::string>{"https://shop.example", "http://localhost:3000"}));
  EXPECT_EQ(config->cors.max_age_s, 0);
  EXPECT_TRUE(config->draw.require_token);
  EXPECT_EQ(config->draw.max_clock_skew_ms, 50);
  EXPECT_EQ(config->watchdog.max_sink_queue, 7u);
}

TEST(ConfigTest, ListenForms) {
  struct Case {
    std::string listen;
    std::string host;
    std::uint16_t port;
  };
  for (const auto& c : std::vector<Case>{{"127.0.0.1:8080", "127.0.0.1", 8080},
                                         {"0.0.0.0:0", "0.0.0.0", 0},
                                         {"localhost:65535", "127.0.0.1", 65535},
                                         {"[::1]:9000", "::1", 9000},
                                         {"[::]:80", "::", 80}}) {
    auto config = load_config(std::nullopt, {{"FAIRDRAW_LISTEN", c.listen}});
    ASSERT_TRUE(config.ok()) << c.listen << ": " << config.error().detail;
    EXPECT_EQ(config->listen_host, c.host) << c.listen;
    EXPECT_EQ(config->listen_port, c.port) << c.listen;
  }
}

TEST(ConfigTest, EnvOverridesBeatTheFile) {
  const std::string file = R"({"threads": 4, "admin_token": "file-token",
      "draw": {"require_token": false, "max_clock_skew_ms": 1000},
      "cors": {"allowed_origins": ["https://file.example"]},
      "redis": {"url": "redis://file:6379"}})";
  const Env env = {
      {"FAIRDRAW_THREADS", "8"},
      {"FAIRDRAW_ADMIN_TOKEN", "env-token\n"},  // trailing newline as from a secret file
      {"FAIRDRAW_DRAW_REQUIRE_TOKEN", "true"},
      {"FAIRDRAW_DRAW_MAX_CLOCK_SKEW_MS", "50"},
      {"FAIRDRAW_CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example:8443"},
      {"FAIRDRAW_REDIS_URL", ""},  // empty unsets: embedded mode
      {"FAIRDRAW_HTTP_MAX_BODY_BYTES", "4096"},
      {"HOME", "/root"},  // unrelated variables are ignored
  };
  auto config = load_text(file, env);
  ASSERT_TRUE(config.ok()) << config.error().detail;
  EXPECT_EQ(config->threads, 8u);
  EXPECT_EQ(config->admin_token, "env-token");
  EXPECT_TRUE(config->draw.require_token);
  EXPECT_EQ(config->draw.max_clock_skew_ms, 50);
  EXPECT_EQ(config->cors.allowed_origins, (std::vector<std::string>{"https://a.example", "https://b.example:8443"}));
  EXPECT_FALSE(config->redis_url.has_value());
  EXPECT_EQ(config->http.max_body_bytes, 4096u);
}

TEST(ConfigTest, EnvBooleans) {
  for (const auto& [text, value] : std::vector<std::pair<std::string, bool>>{
           {"true", true}, {"1", true}, {"TRUE", true}, {"false", false}, {"0", false}, {"False", false}}) {
    auto config = load_text(R"({"draw": {"require_token": )" + std::string(value ? "false" : "true") + "}}",
                            {{"FAIRDRAW_DRAW_REQUIRE_TOKEN", text}});
    ASSERT_TRUE(config.ok()) << text << ": " << config.error().detail;
    EXPECT_EQ(config->draw.require_token, value) << text;
  }
}

// The names scripts and containers use are fixed: each must reach its field.
TEST(ConfigTest, EveryScalarFieldHasItsEnvVar) {
  struct Case {
    std::string var;
    std::string value;
    std::function<bool(const Config&)> applied;
  };
  const std::vector<Case> cases = {
      {"FAIRDRAW_LISTEN", "127.0.0.1:1234", [](const Config& c) { return c.listen_port == 1234; }},
      {"FAIRDRAW_THREADS", "3", [](const Config& c) { return c.threads == 3; }},
      {"FAIRDRAW_ADMIN_TOKEN", "tok", [](const Config& c) { return c.admin_token == "tok"; }},
      {"FAIRDRAW_LOG_LEVEL", "warn", [](const Config& c) { return c.log_level == "warn"; }},
      {"FAIRDRAW_ZONEINFO_DIR", "/tz", [](const Config& c) { return c.zoneinfo_dir == "/tz"; }},
      {"FAIRDRAW_REDIS_URL", "redis://r:6379", [](const Config& c) { return c.redis_url == "redis://r:6379"; }},
      {"FAIRDRAW_REDIS_MAX_IN_FLIGHT_DRAWS", "64",
       [](const Config& c) { return c.redis_max_in_flight_draws == 64; }},
      {"FAIRDRAW_DATABASE_URL", "sqlite:/x.db", [](const Config& c) { return c.database.url == "sqlite:/x.db"; }},
      {"FAIRDRAW_DATABASE_SYNCHRONOUS", "normal", [](const Config& c) { return c.database.synchronous == "normal"; }},
      {"FAIRDRAW_DATABASE_BATCH_MAX", "7", [](const Config& c) { return c.database.batch_max == 7; }},
      {"FAIRDRAW_DATABASE_MAX_QUEUE", "7000", [](const Config& c) { return c.database.max_queue == 7000; }},
      {"FAIRDRAW_HTTP_MAX_CONNECTIONS", "11", [](const Config& c) { return c.http.max_connections == 11; }},
      {"FAIRDRAW_HTTP_MAX_HEADER_BYTES", "2048", [](const Config& c) { return c.http.max_header_bytes == 2048; }},
      {"FAIRDRAW_HTTP_MAX_BODY_BYTES", "99", [](const Config& c) { return c.http.max_body_bytes == 99; }},
      {"FAIRDRAW_HTTP_READ_TIMEOUT_MS", "12000", [](const Config& c) { return c.http.read_timeout_ms == 12000; }},
      {"FAIRDRAW_HTTP_IDLE_TIMEOUT_MS", "13", [](const Config& c) { return c.http.idle_timeout_ms == 13; }},
      {"FAIRDRAW_HTTP_REQUEST_TIMEOUT_MS", "14", [](const Config& c) { return c.http.request_timeout_ms == 14; }},
      {"FAIRDRAW_HTTP_SHUTDOWN_GRACE_MS", "15", [](const Config& c) { return c.http.shutdown_grace_ms == 15; }},
      {"FAIRDRAW_CORS_ALLOWED_ORIGINS", "https://x.example",
       [](const Config& c) { return c.cors.allowed_origins == std::vector<std::string>{"https://x.example"}; }},
      {"FAIRDRAW_CORS_MAX_AGE_S", "16", [](const Config& c) { return c.cors.max_age_s == 16; }},
      {"FAIRDRAW_DRAW_MAX_CLOCK_SKEW_MS", "17", [](const Config& c) { return c.draw.max_clock_skew_ms == 17; }},
      {"FAIRDRAW_DRAW_REQUIRE_TOKEN", "1", [](const Config& c) { return c.draw.require_token; }},
      {"FAIRDRAW_DRAW_TOKEN_TTL_S", "18", [](const Config& c) { return c.draw.token_ttl_s == 18; }},
      {"FAIRDRAW_DRAW_MAX_TOKENS", "19", [](const Config& c) { return c.draw.max_tokens == 19; }},
      {"FAIRDRAW_DRAW_IDEMPOTENCY_TTL_S", "20", [](const Config& c) { return c.draw.idempotency_ttl_s == 20; }},
      {"FAIRDRAW_DRAW_IDEMPOTENCY_CAPACITY", "21", [](const Config& c) { return c.draw.idempotency_capacity == 21; }},
      {"FAIRDRAW_WATCHDOG_INTERVAL_MS", "22", [](const Config& c) { return c.watchdog.interval_ms == 22; }},
      {"FAIRDRAW_WATCHDOG_MAX_OPEN_CONNECTIONS", "23",
       [](const Config& c) { return c.watchdog.max_open_connections == 23; }},
      {"FAIRDRAW_WATCHDOG_MAX_IN_FLIGHT_DRAWS", "24", [](const Config& c) { return c.watchdog.max_in_flight_draws == 24; }},
      {"FAIRDRAW_WATCHDOG_MAX_SINK_QUEUE", "25", [](const Config& c) { return c.watchdog.max_sink_queue == 25; }},
  };
  Env all;
  for (const auto& c : cases) {
    auto config = load_config(std::nullopt, {{c.var, c.value}});
    ASSERT_TRUE(config.ok()) << c.var << ": " << config.error().detail;
    EXPECT_TRUE(c.applied(*config)) << c.var << " did not reach its field";
    all[c.var] = c.value;
  }
  all["FAIRDRAW_CONFIG"] = "/etc/fairdraw.json";  // main's, not a field, not a typo
  EXPECT_TRUE(unknown_environment_overrides(all).empty());
  all["FAIRDRAW_DATABASE_URLL"] = "x";
  EXPECT_EQ(unknown_environment_overrides(all), std::vector<std::string>{"FAIRDRAW_DATABASE_URLL"});
}

TEST(ConfigTest, BadEnvValueNamesTheVariable) {
  auto config = load_config(std::nullopt, {{"FAIRDRAW_THREADS", "x"}});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().kind, ErrorKind::invalid_request);
  EXPECT_NE(config.error().detail.find(R"(FAIRDRAW_THREADS: expected a non-negative integer, got "x")"),
            std::string::npos)
      << config.error().detail;

  struct Case {
    std::string var;
    std::string value;
  };
  for (const auto& c : std::vector<Case>{{"FAIRDRAW_THREADS", "-1"},
                                         {"FAIRDRAW_THREADS", "5000"},
                                         {"FAIRDRAW_THREADS", "4x"},
                                         {"FAIRDRAW_THREADS", ""},
                                         {"FAIRDRAW_THREADS", "99999999999999999999999"},
                                         {"FAIRDRAW_DRAW_REQUIRE_TOKEN", "yes"},
                                         {"FAIRDRAW_DRAW_MAX_CLOCK_SKEW_MS", "-5"},
                                         {"FAIRDRAW_HTTP_MAX_BODY_BYTES", "0"},
                                         {"FAIRDRAW_LISTEN", "8080"},
                                         {"FAIRDRAW_LOG_LEVEL", "verbose"},
                                         {"FAIRDRAW_DATABASE_URL", "mysql://db"},
                                         {"FAIRDRAW_REDIS_URL", "http://cache"},
                                         {"FAIRDRAW_REDIS_MAX_IN_FLIGHT_DRAWS", "0"},
                                         {"FAIRDRAW_CORS_ALLOWED_ORIGINS", "https://a.example,https://b.example/path"},
                                         {"FAIRDRAW_ADMIN_TOKEN", "has space"}}) {
    auto result = load_config(std::nullopt, {{c.var, c.value}});
    ASSERT_FALSE(result.ok()) << c.var << "=" << c.value;
    EXPECT_EQ(result.error().kind, ErrorKind::invalid_request);
    EXPECT_NE(result.error().detail.find(c.var + ":"), std::string::npos) << result.error().detail;
  }
}

// Each bad value must be refused with a detail naming the field and the file.
TEST(ConfigTest, EveryValidationErrorNamesItsField) {
  struct Case {
    std::string json;
    std::string field;
  };
  const std::vector<Case> cases = {
      {R"({"listen": "127.0.0.1"})", "listen"},
      {R"({"listen": "127.0.0.1:65536"})", "listen"},
      {R"({"listen": "127.0.0.1:-1"})", "listen"},
      {R"({"listen": "example.com:80"})", "listen"},
      {R"({"listen": "::1:80"})", "listen"},
      {R"({"listen": "[::1]"})", "listen"},
      {R"({"listen": "[nope]:80"})", "listen"},
      {R"({"listen": ":80"})", "listen"},
      {R"({"listen": 8080})", "listen"},
      {R"({"threads": 1025})", "threads"},
      {R"({"threads": -1})", "threads"},
      {R"({"threads": 2.5})", "threads"},
      {R"({"threads": "4"})", "threads"},
      {R"({"admin_token": 42})", "admin_token"},
      {R"({"admin_token": "tab\there"})", "admin_token"},
      {R"({"log_level": "verbose"})", "log_level"},
      {R"({"zoneinfo_dir": ""})", "zoneinfo_dir"},
      {R"({"redis": {"url": "localhost:6379"}})", "redis.url"},
      {R"({"redis": {"url": "redis://"}})", "redis.url"},
      {R"({"redis": {"url": 1}})", "redis.url"},
      {R"({"redis": "redis://x"})", "redis"},
      {R"({"database": {"url": "sqlite:"}})", "database.url"},
      {R"({"database": {"url": "mysql://db/x"}})", "database.url"},
      {R"({"database": {"url": "postgresql://"}})", "database.url"},
      {R"({"database": {"synchronous": "off"}})", "database.synchronous"},
      {R"({"database": {"batch_max": 0}})", "database.batch_max"},
      {R"({"database": {"max_queue": 0}})", "database.max_queue"},
      {R"({"database": {"batch_max": 100, "max_queue": 50}})", "database.batch_max"},
      {R"({"http": {"max_connections": 0}})", "http.max_connections"},
      {R"({"http": {"max_header_bytes": 1023}})", "http.max_header_bytes"},
      {R"({"http": {"max_header_bytes": 1048577}})", "http.max_header_bytes"},
      {R"({"http": {"max_body_bytes": 0}})", "http.max_body_bytes"},
      {R"({"http": {"max_body_bytes": 16777217}})", "http.max_body_bytes"},
      {R"({"http": {"read_timeout_ms": 0}})", "http.read_timeout_ms"},
      {R"({"http": {"read_timeout_ms": 3600001}})", "http.read_timeout_ms"},
      {R"({"http": {"idle_timeout_ms": 0}})", "http.idle_timeout_ms"},
      {R"({"http": {"request_timeout_ms": 0}})", "http.request_timeout_ms"},
      {R"({"http": {"request_timeout_ms": 10000}})", "http.request_timeout_ms"},
      {R"({"http": {"shutdown_grace_ms": -1}})", "http.shutdown_grace_ms"},
      {R"({"http": []})", "http"},
      {R"({"cors": {"allowed_origins": "*"}})", "cors.allowed_origins"},
      {R"({"cors": {"allowed_origins": ["https://a.example/"]}})", "cors.allowed_origins"},
      {R"({"cors": {"allowed_origins": ["ftp://a.example"]}})", "cors.allowed_origins"},
      {R"({"cors": {"allowed_origins": ["https://a.example:0"]}})", "cors.allowed_origins"},
      {R"({"cors": {"allowed_origins": ["https://"]}})", "cors.allowed_origins"},
      {R"({"cors": {"allowed_origins": [1]}})", "cors.allowed_origins"},
      {R"({"cors": {"max_age_s": -1}})", "cors.max_age_s"},
      {R"({"cors": {"max_age_s": 86401}})", "cors.max_age_s"},
      {R"({"draw": {"max_clock_skew_ms": -1}})", "draw.max_clock_skew_ms"},
      {R"({"draw": {"require_token": "true"}})", "draw.require_token"},
      {R"({"draw": {"require_token": 1}})", "draw.require_token"},
      {R"({"draw": {"token_ttl_s": 0}})", "draw.token_ttl_s"},
      {R"({"draw": {"max_tokens": 0}})", "draw.max_tokens"},
      {R"({"draw": {"max_tokens": 50000001}})", "draw.max_tokens"},
      {R"({"draw": {"idempotency_ttl_s": 0}})", "draw.idempotency_ttl_s"},
      {R"({"draw": {"idempotency_capacity": 0}})", "draw.idempotency_capacity"},
      {R"({"draw": {"idempotency_capacity": 50000001}})", "draw.idempotency_capacity"},
      {R"({"draw": {"idempotency_capacity": 18446744073709551615}})", "draw.idempotency_capacity"},
      {R"({"watchdog": {"interval_ms": 0}})", "watchdog.interval_ms"},
      {R"({"watchdog": {"max_open_connections": 0}})", "watchdog.max_open_connections"},
      {R"({"watchdog": {"max_in_flight_draws": 0}})", "watchdog.max_in_flight_draws"},
      {R"({"watchdog": {"max_sink_queue": 0}})", "watchdog.max_sink_queue"},
      {R"({"activities": []})", "activities"},
      {R"({"activities": {"bad id": {}}})", "activities.bad id"},
      {R"({"activities": {"": {}}})", "activities."},
      {R"({"activities": {"demo": "not an object"}})", "activities.demo"},
  };
  for (const auto& c : cases) {
    TempFile file(c.json);
    auto result = load_config(file.path(), {});
    ASSERT_FALSE(result.ok()) << c.json;
    EXPECT_EQ(result.error().kind, ErrorKind::invalid_request) << c.json;
    EXPECT_NE(result.error().detail.find(c.field + ":"), std::string::npos)
        << c.json << " -> " << result.error().detail;
    EXPECT_NE(result.error().detail.find("config file " + file.path() + ": "), std::string::npos)
        << result.error().detail;
  }
  // The example of the brief, verbatim.
  auto result = load_text(R"({"http": {"max_body_bytes": 16777217}})");
  EXPECT_NE(error_of(result).find("http.max_body_bytes: must be between 1 and 16777216"), std::string::npos)
      << error_of(result);
}

TEST(ConfigTest, ActivityIdLimits) {
  const std::string ok_id(128, 'a');
  EXPECT_TRUE(load_text(R"({"activities": {")" + ok_id + R"(": {}, "A.b_c~d-9": {}}})").ok());
  EXPECT_FALSE(load_text(R"({"activities": {")" + ok_id + R"(a": {}}})").ok());
}

TEST(ConfigTest, OriginsAreLowerCased) {
  auto config = load_text(R"({"cors": {"allowed_origins": ["HTTPS://Shop.Example:8443", "*", "http://[::1]:3000"]}})");
  ASSERT_TRUE(config.ok()) << config.error().detail;
  EXPECT_EQ(config->cors.allowed_origins,
            (std::vector<std::string>{"https://shop.example:8443", "*", "http://[::1]:3000"}));
}

TEST(ConfigTest, UnknownKeysAreRejected) {
  auto nested = load_text(R"({"http": {"max_body_byte": 10}})");
  EXPECT_NE(error_of(nested).find("http.max_body_byte: unknown field"), std::string::npos) << error_of(nested);
  EXPECT_NE(error_of(nested).find("did you mean http.max_body_bytes?"), std::string::npos) << error_of(nested);

  auto top = load_text(R"({"listne": "127.0.0.1:80"})");
  EXPECT_NE(error_of(top).find("listne: unknown field"), std::string::npos) << error_of(top);

  auto section = load_text(R"({"metrics": {}})");
  EXPECT_NE(error_of(section).find("metrics: unknown field"), std::string::npos) << error_of(section);

  auto dotted = load_text(R"({"http.max_body_bytes": 10})");
  EXPECT_NE(error_of(dotted).find("http.max_body_bytes: unknown field"), std::string::npos) << error_of(dotted);

  auto deep = load_text(R"({"draw": {"watchdog": {}}})");
  EXPECT_NE(error_of(deep).find("draw.watchdog: unknown field"), std::string::npos) << error_of(deep);
}

TEST(ConfigTest, DuplicateKeysAreRejected) {
  auto result = load_text(R"({"http": {"max_body_bytes": 10, "max_body_bytes": 20}})");
  EXPECT_NE(error_of(result).find("http.max_body_bytes: duplicate key"), std::string::npos) << error_of(result);
  // The same key in different objects is fine.
  EXPECT_TRUE(load_text(R"({"activities": {"a": {"name": "x"}, "b": {"name": "y"}}})").ok());
}

TEST(ConfigTest, BadJsonNamesThePathAndPosition) {
  TempFile file("{\n  \"threads\": 4,\n  oops\n}");
  auto result = load_config(file.path(), {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().kind, ErrorKind::invalid_request);
  EXPECT_NE(result.error().detail.find(file.path()), std::string::npos) << result.error().detail;
  EXPECT_NE(result.error().detail.find("line 3"), std::string::npos) << result.error().detail;

  auto not_object = load_text("[1, 2]");
  EXPECT_NE(error_of(not_object).find("top level"), std::string::npos) << error_of(not_object);

  auto empty = load_text("");
  EXPECT_NE(error_of(empty).find("invalid JSON"), std::string::npos) << error_of(empty);
}

TEST(ConfigTest, MissingFileNamesThePath) {
  const std::string path = "/tmp/fairdraw_config_test_does_not_exist.json";
  auto result = load_config(path, {});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().detail.find(path), std::string::npos) << result.error().detail;
  EXPECT_NE(result.error().detail.find("does not exist"), std::string::npos) << result.error().detail;

  auto directory = load_config(std::string("/tmp"), {});
  EXPECT_NE(error_of(directory).find("/tmp: is a directory"), std::string::npos) << error_of(directory);
}

TEST(ConfigTest, DescribeMasksSecrets) {
  auto config = load_text(R"({"admin_token": "s3cret-admin-token",
      "database": {"url": "postgresql://fairdraw:db-pa55word@db:5432/fairdraw?sslmode=require&password=qpass"},
      "redis": {"url": "redis://default:redis-pa55word@cache:6379/0"}})");
  ASSERT_TRUE(config.ok()) << config.error().detail;
  const std::string text = describe_config(*config);
  EXPECT_EQ(text.find("s3cret-admin-token"), std::string::npos) << text;
  EXPECT_EQ(text.find("db-pa55word"), std::string::npos) << text;
  EXPECT_EQ(text.find("redis-pa55word"), std::string::npos) << text;
  EXPECT_EQ(text.find("qpass"), std::string::npos) << text;

  const auto described = nlohmann::json::parse(text);
  EXPECT_EQ(described.at("admin_token"), "***");
  EXPECT_EQ(described.at("database").at("url"),
            "postgresql://fairdraw:***@db:5432/fairdraw?sslmode=require&password=***");
  EXPECT_EQ(described.at("redis").at("url"), "redis://default:***@cache:6379/0");

  // A bare userinfo is a password in redis URLs.
  config->redis_url = "redis://lonesecret@cache:6379";
  EXPECT_EQ(describe_config(*config).find("lonesecret"), std::string::npos);
}

// describe_config writes the file layout, so its output (without secrets) loads back unchanged.
TEST(ConfigTest, DescribeRoundTrips) {
  auto shipped = load_config(std::string(FAIRDRAW_SOURCE_DIR) + "/config/fairdraw.json",
                             {{"FAIRDRAW_ADMIN_TOKEN", ""}, {"FAIRDRAW_LISTEN", "[::1]:8081"}});
  ASSERT_TRUE(shipped.ok()) << shipped.error().detail;
  const std::string text = describe_config(*shipped);
  auto again = load_text(text);
  ASSERT_TRUE(again.ok()) << again.error().detail << "\n" << text;
  EXPECT_EQ(describe_config(*again), text);
  EXPECT_EQ(again->listen_host, "::1");
  EXPECT_EQ(again->activities, shipped->activities);
  EXPECT_EQ(nlohmann::json::parse(text).at("admin_token"), "");  // empty: admin API off, nothing to hide
}

TEST(ConfigTest, ProcessEnvironmentReadsFairdrawVariables) {
  ASSERT_EQ(setenv("FAIRDRAW_TEST_ONLY_VARIABLE", "v=1", 1), 0);
  ASSERT_EQ(setenv("NOT_FAIRDRAW_VARIABLE", "x", 1), 0);
  const auto env = process_environment();
  unsetenv("FAIRDRAW_TEST_ONLY_VARIABLE");
  unsetenv("NOT_FAIRDRAW_VARIABLE");
  ASSERT_EQ(env.count("FAIRDRAW_TEST_ONLY_VARIABLE"), 1u);
  EXPECT_EQ(env.at("FAIRDRAW_TEST_ONLY_VARIABLE"), "v=1");
  EXPECT_EQ(env.count("NOT_FAIRDRAW_VARIABLE"), 0u);
}

}  // namespace
}  // namespace fairdraw::app
