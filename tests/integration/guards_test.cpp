// Rate limits (per address and per user, with RateLimit headers), user
// authentication by JWT, and rotated admin tokens, against the real binary.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "jwt_support.hpp"

namespace fairdraw::test {
namespace {

using nlohmann::json;

constexpr std::string_view kJwtSecret = "an-hs256-secret-of-at-least-32-bytes!!";

std::string hs256_token(const json& claims) { return test::hs256_token(claims, kJwtSecret); }

json one_activity() {
  return {{"demo", activity_json("demo", 10, {prize_json("p", 1, 1000)})}};
}

TEST(GuardsTest, AddressRateLimitAnswers429WithHeaders) {
  FairdrawServer server({{"activities", one_activity()},
                         {"rate_limit", {{"address_per_minute", 60}, {"address_burst", 3}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  for (int i = 0; i < 3; ++i) {
    const HttpResponse ok = post_draw(c, "demo", "u" + std::to_string(i));
    ASSERT_EQ(ok.status, 200) << ok.describe();
  }
  // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
  const HttpResponse limited = c.post_json("/draw", {{"activity_id", "demo"}, {"user_id", "u9"}},
                                           {{"X-Forwarded-For", "203.0.113.9"}});
  ASSERT_TRUE(is_problem(limited, 429, "rate_limited"));
  const auto retry_after = limited.header("Retry-After");
  ASSERT_TRUE(retry_after.has_value());
  EXPECT_GE(std::stoi(*retry_after), 1);
  EXPECT_TRUE(limited.header("RateLimit-Policy").has_value()) << limited.describe();
  EXPECT_TRUE(limited.header("RateLimit").has_value()) << limited.describe();
  // Reads are not limited.
  EXPECT_EQ(c.get("/activities/demo").status, 200);
}

TEST(GuardsTest, UserRateLimitIsPerUser) {
  FairdrawServer server({{"activities", one_activity()},
                         {"rate_limit", {{"user_per_minute", 60}, {"user_burst", 2}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  EXPECT_EQ(post_draw(c, "demo", "alice").status, 200);
  EXPECT_EQ(post_draw(c, "demo", "alice").status, 200);
  EXPECT_TRUE(is_problem(post_draw(c, "demo", "alice"), 429, "rate_limited"));
  EXPECT_EQ(post_draw(c, "demo", "bob").status, 200);
}

TEST(GuardsTest, JwtSuppliesTheUserAndNobodyDrawsAsAnother) {
  FairdrawServer server({{"activities", one_activity()},
                         {"auth",
                          {{"jwt_hs256_secret", std::string(kJwtSecret)},
                           {"jwt_issuer", "frontend"},
                           {"require_user_token", true}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const std::int64_t now_s = now_ms() / 1000;
  const std::string alice = hs256_token({{"sub", "alice"}, {"iss", "frontend"}, {"exp", now_s + 600}});

  // No token: 401 with a challenge.
  const HttpResponse anonymous = c.post_json("/draw", {{"activity_id", "demo"}, {"user_id", "alice"}});
  ASSERT_TRUE(is_problem(anonymous, 401, "unauthorized"));
  EXPECT_TRUE(anonymous.header("WWW-Authenticate").has_value());

  // The token's user draws; the body may omit user_id.
  const HttpResponse drawn =
      c.post_json("/draw", {{"activity_id", "demo"}}, {{"Authorization", "Bearer " + alice}});
  ASSERT_EQ(drawn.status, 200) << drawn.describe();
  EXPECT_EQ(drawn.json()["user_id"], "alice");

  // A body user_id that disagrees with the token: 403.
  EXPECT_TRUE(is_problem(c.post_json("/draw", {{"activity_id", "demo"}, {"user_id", "bob"}},
                                     {{"Authorization", "Bearer " + alice}}),
                         403, "forbidden"));
  // Expired, wrong issuer, or tampered tokens: 401.
  const std::string expired = hs256_token({{"sub", "alice"}, {"iss", "frontend"}, {"exp", now_s - 3600}});
  EXPECT_TRUE(is_problem(c.post_json("/draw", {{"activity_id", "demo"}}, {{"Authorization", "Bearer " + expired}}),
                         401, "unauthorized"));
  const std::string foreign = hs256_token({{"sub", "alice"}, {"iss", "elsewhere"}, {"exp", now_s + 600}});
  EXPECT_TRUE(is_problem(c.post_json("/draw", {{"activity_id", "demo"}}, {{"Authorization", "Bearer " + foreign}}),
                         401, "unauthorized"));
  std::string tampered = alice;
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_TRUE(is_problem(c.post_json("/draw", {{"activity_id", "demo"}}, {{"Authorization", "Bearer " + tampered}}),
                         401, "unauthorized"));
  // The secret never reaches the log.
  EXPECT_EQ(server.log().find(std::string(kJwtSecret)), std::string::npos);
}

TEST(GuardsTest, SeveralAdminTokensForRotation) {
  FairdrawServer server(json{{"auth", {{"admin_tokens", json::array({"next-admin-token"})}}}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const json body = activity_json("rotated", 1, {prize_json("p", 1, 1)});
  EXPECT_EQ(c.put_json("/admin/activities/r1", body, admin_headers()).status, 201);
  EXPECT_EQ(c.put_json("/admin/activities/r2", body, {{"Authorization", "Bearer next-admin-token"}}).status,
            201);
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/r3", body, {{"Authorization", "Bearer old-token"}}),
                         403, "forbidden"));
  EXPECT_EQ(server.log().find("next-admin-token"), std::string::npos);
}

TEST(GuardsTest, BadGuardConfigIsRefusedAtStart) {
  FairdrawServer server(json{{"auth", {{"require_user_token", true}}}});
  EXPECT_FALSE(server.start(std::chrono::milliseconds(3000)));
  EXPECT_NE(server.log().find("auth.require_user_token"), std::string::npos) << server.log();
}

}  // namespace
}  // namespace fairdraw::test
