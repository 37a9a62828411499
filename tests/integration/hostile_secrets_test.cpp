// Secrets never leave the process: a full scenario against the real binary with
// two admin tokens, a JWT HS256 secret, debug logging, bad credentials and
// errors of every kind; then the whole log, every response (status line, headers,
// body), /metrics and --check-config output (with Redis and PostgreSQL passwords)
// are searched for each secret and for every unrevealed epoch seed (hex).
#include <sqlite3.h>

#include <array>
#include <cstdio>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "hostile_support.hpp"
#include "jwt_support.hpp"

namespace fairdraw::test {
namespace {

using nlohmann::json;

std::string random_hex(std::size_t bytes) {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rd() & 0xFF);
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  return out;
}

std::string to_hex(const std::string& bytes, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

// Seeds of the epochs not yet revealed, from the embedded record.
std::vector<std::string> unrevealed_seeds(const std::string& db_path, std::string& error) {
  std::vector<std::string> seeds;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    error = "cannot open " + db_path;
    sqlite3_close(db);
    return seeds;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT seed FROM epochs WHERE revealed_at IS NULL", -1, &stmt, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db);
  } else {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, 0));
      seeds.emplace_back(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt, 0)));
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return seeds;
}

// Runs a command, returns what it wrote to stdout and stderr.
std::string run_capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  ::pclose(pipe);
  return out;
}

class Transcript {
 public:
  void add(const std::string& what, const HttpResponse& r) {
    // In full (describe() shortens long bodies such as /metrics).
    text_ += "---- " + what + "\nHTTP " + std::to_string(r.status) + " " + r.reason + "\n";
    for (const auto& [name, value] : r.headers) text_ += name + ": " + value + "\n";
    text_ += "\n" + r.body + "\n";
  }
  void add_text(const std::string& what, const std::string& text) { text_ += "---- " + what + "\n" + text + "\n"; }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

TEST(HostileSecretsTest, NoSecretInLogsResponsesMetricsOrConfigOutput) {
  const std::string admin_token = "adm-" + random_hex(16);
  const std::string rotated_token = "rot-" + random_hex(16);
  const std::string jwt_secret = "jwt-" + random_hex(24);
  const std::string redis_password = "rpw" + random_hex(12);
  const std::string pg_password = "pgpw" + random_hex(12);
  const std::int64_t now_s = now_ms() / 1000;

  // The admin token through the environment, the others through the config file;
  // debug logging, so every request is logged.
  FairdrawServer server(json{{"admin_token", admin_token},
                             {"auth", {{"admin_tokens", json::array({rotated_token})},
                                       {"jwt_hs256_secret", jwt_secret},
                                       {"admin_max_failures", 3}}},
                             {"activities", {{"demo", activity_json("demo", 90, {prize_json("p", 10, 1000)})}}}},
                        {{"FAIRDRAW_ADMIN_TOKEN", admin_token}, {"FAIRDRAW_LOG_LEVEL", "debug"}});
  ASSERT_TRUE(server.start());
  Transcript t;
  HttpClient c = server.client();
  const Headers admin = {{"Authorization", "Bearer " + admin_token}};
  const Headers rotated = {{"Authorization", "Bearer " + rotated_token}};

  // Admin: create with one token, replace with the other, a second activity, end it.
  const json body = activity_json("Secret draw", 90, {prize_json("mug", 10, 100)});
  t.add("put", c.put_json("/admin/activities/s1", body, admin));
  t.add("put rotated", c.put_json("/admin/activities/s1", body, rotated));
  t.add("put s2", c.put_json("/admin/activities/s2", body, admin));
  t.add("delete s2", c.del("/admin/activities/s2", rotated));

  // Draws with user tokens; a few bad ones.
  for (int i = 0; i < 30; ++i) {
    const std::string user = "user-" + std::to_string(i);
    const std::string token = hs256_token({{"sub", user}, {"exp", now_s + 300}}, jwt_secret);
    t.add("draw", c.post_json("/draw", {{"activity_id", i % 2 == 0 ? "s1" : "demo"}},
                              {{"Authorization", "Bearer " + token},
                               {"Idempotency-Key", "k-" + std::to_string(i)}}));
  }
  const std::string good_jwt = hs256_token({{"sub", "alice"}, {"exp", now_s + 300}}, jwt_secret);
  t.add("draw as another", c.post_json("/draw", {{"activity_id", "s1"}, {"user_id", "bob"}},
                                       {{"Authorization", "Bearer " + good_jwt}}));
  t.add("expired jwt", c.post_json("/draw", {{"activity_id", "s1"}},
                                   {{"Authorization", "Bearer " + hs256_token({{"sub", "a"}, {"exp", now_s - 600}}, jwt_secret)}}));
  t.add("tampered jwt", c.post_json("/draw", {{"activity_id", "s1"}},
                                    {{"Authorization", "Bearer " + good_jwt.substr(0, good_jwt.size() - 2) + "AA"}}));
  t.add("wrong-key jwt", c.post_json("/draw", {{"activity_id", "s1"}},
                                     {{"Authorization", "Bearer " + hs256_token({{"sub", "a"}, {"exp", now_s + 60}}, jwt_secret + "x")}}));
  // The admin token sent where it does not belong: as a user token, with the wrong scheme.
  t.add("admin token as jwt", c.post_json("/draw", {{"activity_id", "s1"}}, admin));
  t.add("basic scheme", c.put_json("/admin/activities/s1", body, {{"Authorization", "Basic " + admin_token}}));
  // Guesses close to the real tokens, until the address is locked out.
  t.add("guess 1", c.put_json("/admin/activities/s1", body, {{"Authorization", "Bearer " + admin_token + "x"}}));
  t.add("guess 2", c.del("/admin/activities/s1", {{"Authorization", "Bearer " + rotated_token.substr(1)}}));
  t.add("locked", c.put_json("/admin/activities/s1", body, admin));
  // Errors of every kind.
  t.add("404", c.get("/activities/nope"));
  t.add("405", c.request("BREW", "/draw"));
  t.add("400", c.request("POST", "/draw", {{"Content-Type", "application/json"}}, std::string_view("{not json")));
  t.add("415", c.request("POST", "/draw", {{"Content-Type", "text/plain"}}, std::string_view("x")));
  t.add("413", c.request("POST", "/draw", {{"Content-Type", "application/json"}}, std::string(20000, ' ')));
  if (!c.is_open()) c.connect();
  t.add("unknown activity", c.post_json("/draw", {{"activity_id", "ghost"}},
                                        {{"Authorization", "Bearer " + good_jwt}}));
  // Every read, the fairness documents (commitments only while epochs run) and metrics.
  for (const char* path : {"/activities", "/activities/s1", "/activities/s1/fairness", "/activities/demo/fairness",
                           "/activities/s1/draws?after_seq=-1&limit=1000", "/users/user-0/draws?activity_id=s1",
                           "/healthz", "/readyz", "/metrics"}) {
    t.add(path, c.get(path));
  }
  t.add("tokens", c.request("POST", "/tokens"));
  EXPECT_EQ(server.stop_sigterm(), 0);

  // What --check-config prints, with passwords in the Redis and database URLs too,
  // and a refused config whose error names the field, not the value.
  const std::string env = "FAIRDRAW_ADMIN_TOKEN=" + admin_token + " FAIRDRAW_AUTH_ADMIN_TOKENS=" + rotated_token +
                          " FAIRDRAW_AUTH_JWT_HS256_SECRET=" + jwt_secret;
  const std::string bin = FAIRDRAW_BIN;
  t.add_text("check-config", run_capture("env " + env + " FAIRDRAW_REDIS_URL=redis://:" + redis_password +
                                         "@127.0.0.1:6390/0 FAIRDRAW_DATABASE_URL=postgresql://fd:" + pg_password +
                                         "@127.0.0.1:5999/fd " + bin + " --check-config"));
  t.add_text("bad redis url", run_capture("env " + env + " FAIRDRAW_REDIS_URL=redis://:" + redis_password +
                                          "@127.0.0.1:notaport " + bin + " --check-config"));
  t.add_text("bad database url", run_capture("env " + env + " FAIRDRAW_DATABASE_URL=mysql://fd:" + pg_password +
                                             "@127.0.0.1/fd " + bin + " --check-config"));

  const std::string log = server.log();
  const std::string transcript = t.text();
  // Sanity: the scenario did what it says.
  EXPECT_NE(transcript.find("HTTP 201"), std::string::npos);
  EXPECT_NE(transcript.find("\"won\""), std::string::npos);
  EXPECT_NE(transcript.find("HTTP 429"), std::string::npos) << "the guesses did not lock the address";
  EXPECT_NE(transcript.find("***"), std::string::npos) << "--check-config output missing:\n" << transcript.substr(transcript.rfind("---- check-config"));
  EXPECT_NE(log.find("\"request\""), std::string::npos) << "debug request logs missing";

  std::vector<std::pair<std::string, std::string>> secrets = {
      {"admin_token", admin_token},       {"auth.admin_tokens", rotated_token}, {"jwt_hs256_secret", jwt_secret},
      {"redis password", redis_password}, {"database password", pg_password},
  };
  std::vector<std::string> seeds;
  if (!server.clustered()) {
    std::string error;
    seeds = unrevealed_seeds(server.dir() + "/fd.db", error);
    ASSERT_TRUE(error.empty()) << error;
    ASSERT_FALSE(seeds.empty()) << "no unrevealed epoch to check";
  } else {
    // Clustered: the seeds the stream worker has written to PostgreSQL by now
    // (Redis holds them first; those not yet in PostgreSQL are not searched).
    std::string out;
    if (pg::query(server.database_url(), "SELECT encode(seed, 'hex') FROM epochs WHERE revealed_at IS NULL", out)) {
      std::istringstream lines(out);
      for (std::string line; std::getline(lines, line);) {
        if (line.size() < 2 || line.size() % 2 != 0) continue;
        std::string bytes;
        for (std::size_t i = 0; i + 1 < line.size(); i += 2) {
          bytes.push_back(static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16)));
        }
        seeds.push_back(std::move(bytes));
      }
    }
  }
  {
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      secrets.emplace_back("unrevealed seed " + std::to_string(i) + " (hex)", to_hex(seeds[i], false));
      secrets.emplace_back("unrevealed seed " + std::to_string(i) + " (HEX)", to_hex(seeds[i], true));
      secrets.emplace_back("unrevealed seed " + std::to_string(i) + " (base64url)", base64url(seeds[i]));
    }
  }
  for (const auto& [name, value] : secrets) {
    EXPECT_EQ(log.find(value), std::string::npos) << name << " appears in the server log";
    const std::size_t at = transcript.find(value);
    EXPECT_EQ(at, std::string::npos) << name << " appears in a response or command output: ..."
                                     << (at == std::string::npos ? "" : transcript.substr(at > 300 ? at - 300 : 0, 600));
  }
  std::printf("[hostile] secrets: searched %zu bytes of log and %zu bytes of responses for %zu secrets (%zu unrevealed seeds)\n",
              log.size(), transcript.size(), secrets.size(), seeds.size());
}

}  // namespace
}  // namespace fairdraw::test
