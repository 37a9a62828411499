// Admin brute force against the real binary: failed admin authentications are
// counted per client address; past auth.admin_max_failures the address gets
// 429 (the right token included) until its window ends, other addresses are
// unaffected, and the log names the address, never a token.
#include <thread>

#include <gtest/gtest.h>

#include "hostile_support.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

Headers from(const std::string& client, const std::string& token) {
  Headers h = {{"X-Forwarded-For", client}};
  if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
  return h;
}

TEST(HostileAdminTest, BruteForceIsThrottledPerAddress) {
  // Behind a trusted proxy (127.0.0.1), each X-Forwarded-For is its own client.
  FairdrawServer server(json{{"auth", {{"admin_max_failures", 5}, {"admin_lockout_s", 2}}},
                             {"rate_limit", {{"trusted_proxies", json::array({"127.0.0.1"})}}}},
                        {{"FAIRDRAW_LOG_LEVEL", "info"}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const std::string good(kAdminToken);
  const json body = activity_json("bf", 1, {prize_json("p", 1, 1)});
  const std::string attacker = "198.51.100.1";

  for (int i = 0; i < 5; ++i) {
    const std::string guess = "guess-" + std::to_string(i) + "-secretish";
    EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bf", body, from(attacker, guess)), 403, "forbidden"))
        << "failure " << i;
  }
  // Locked: every admin call from the address gets 429, the right token too.
  const HttpResponse locked = c.put_json("/admin/activities/bf", body, from(attacker, good));
  ASSERT_TRUE(is_problem(locked, 429, "rate_limited")) << locked.describe();
  const auto retry_after = locked.header("retry-after");
  ASSERT_TRUE(retry_after.has_value());
  EXPECT_GE(std::stoi(*retry_after), 1);
  EXPECT_LE(std::stoi(*retry_after), 2);
  EXPECT_TRUE(is_problem(c.del("/admin/activities/bf", from(attacker, "")), 429, "rate_limited"));
  // Public routes from that address are not affected.
  EXPECT_EQ(c.get("/activities", from(attacker, "")).status, 200);

  // Another address is not affected.
  EXPECT_EQ(c.put_json("/admin/activities/bf", body, from("198.51.100.2", good)).status, 201);

  // A success starts the count over: 4 failures, a success, 4 more: never locked.
  const std::string operator_ip = "198.51.100.3";
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bf", body, from(operator_ip, "typo")), 403, "forbidden"));
    }
    EXPECT_EQ(c.put_json("/admin/activities/bf", body, from(operator_ip, good)).status, 200);
  }
  // Missing credentials are not a guess: 401, not counted.
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(is_problem(c.del("/admin/activities/none", from("198.51.100.4", "")), 401, "unauthorized"));
  }
  EXPECT_EQ(c.put_json("/admin/activities/bf", body, from("198.51.100.4", good)).status, 200);

  // The window ends 2 s after the first failure: the address is free again.
  std::this_thread::sleep_for(2100ms);
  EXPECT_EQ(c.put_json("/admin/activities/bf", body, from(attacker, good)).status, 200);

  // Counted in the request metrics by status; logged with the address, no token.
  const HttpResponse metrics = c.get("/metrics");
  EXPECT_NE(metrics.body.find("status=\"429\""), std::string::npos);
  const std::string log = server.log();
  EXPECT_NE(log.find("admin authentication locked out"), std::string::npos) << log;
  EXPECT_NE(log.find(attacker), std::string::npos);
  EXPECT_EQ(log.find("secretish"), std::string::npos) << "a guessed token reached the log";
  EXPECT_EQ(log.find(good), std::string::npos) << "the admin token reached the log";
  EXPECT_EQ(log.find("typo"), std::string::npos);
}

TEST(HostileAdminTest, SpoofedForwardedForFromAnUntrustedPeerDoesNotEscapeTheLock) {
  FairdrawServer server(json{{"auth", {{"admin_max_failures", 3}, {"admin_lockout_s", 60}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const json body = activity_json("bf", 1, {prize_json("p", 1, 1)});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bf", body, from("203.0.113." + std::to_string(i), "bad")),
                           403, "forbidden"));
  }
  // No trusted proxies: X-Forwarded-For is ignored, all of these were 127.0.0.1.
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bf", body, from("203.0.113.99", std::string(kAdminToken))),
                         429, "rate_limited"));
}

TEST(HostileAdminTest, ThrottlingCanBeTurnedOff) {
  FairdrawServer server(json{{"auth", {{"admin_max_failures", 0}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const json body = activity_json("bf", 1, {prize_json("p", 1, 1)});
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(is_problem(c.put_json("/admin/activities/bf", body, {{"Authorization", "Bearer bad"}}), 403,
                           "forbidden"));
  }
  EXPECT_EQ(c.put_json("/admin/activities/bf", body, admin_headers()).status, 201);
}

}  // namespace
}  // namespace fairdraw::test
