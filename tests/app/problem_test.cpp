// Problem details: every ErrorKind maps to DESIGN.md's status and type slug; the body is RFC 9457 JSON.
#include "fairdraw/app/problem.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fairdraw::app {
namespace {

using nlohmann::json;

// DESIGN.md section 3's error table, written out independently of problem.cpp.
struct Expected {
  ErrorKind kind;
  int status;
  std::string_view type;
  bool retry_after;
};

const std::vector<Expected>& design_table() {
  static const std::vector<Expected> table = {
      {ErrorKind::invalid_request, 400, "invalid_request", false},
      {ErrorKind::clock_skew, 400, "clock_skew", false},
      {ErrorKind::invalid_token, 400, "invalid_token", false},
      {ErrorKind::method_not_allowed, 405, "method_not_allowed", false},
      {ErrorKind::request_timeout, 408, "request_timeout", false},
      {ErrorKind::uri_too_long, 414, "uri_too_long", false},
      {ErrorKind::headers_too_large, 431, "headers_too_large", false},
      {ErrorKind::unauthorized, 401, "unauthorized", false},
      {ErrorKind::forbidden, 403, "forbidden", false},
      {ErrorKind::activity_not_found, 404, "activity_not_found", false},
      {ErrorKind::draw_not_found, 404, "draw_not_found", false},
      {ErrorKind::not_found, 404, "not_found", false},
      {ErrorKind::activity_not_active, 409, "activity_not_active", false},
      {ErrorKind::request_in_flight, 409, "request_in_flight", false},
      {ErrorKind::payload_too_large, 413, "payload_too_large", false},
      {ErrorKind::unsupported_media_type, 415, "unsupported_media_type", false},
      {ErrorKind::idempotency_key_reused, 422, "idempotency_key_reused", false},
      {ErrorKind::quota_exhausted, 429, "quota_exhausted", false},
      {ErrorKind::rate_limited, 429, "rate_limited", true},
      {ErrorKind::unavailable, 503, "unavailable", true},
      // Not in DESIGN.md's table: the catch-all for bugs.
      {ErrorKind::internal, 500, "internal", false},
  };
  return table;
}

TEST(ProblemTest, TableCoversEveryErrorKind) {
  // ErrorKind::internal is the last enumerator; the table must list each value once.
  std::set<int> seen;
  for (const Expected& e : design_table()) {
    EXPECT_TRUE(seen.insert(static_cast<int>(e.kind)).second) << "listed twice: " << e.type;
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(ErrorKind::internal) + 1)
      << "a new ErrorKind needs a row here and in DESIGN.md";
}

TEST(ProblemTest, InfoMatchesDesignTable) {
  std::set<std::string_view> slugs;
  for (const Expected& e : design_table()) {
    SCOPED_TRACE(std::string(e.type));
    const ProblemInfo info = problem_info(e.kind);
    EXPECT_EQ(info.status, e.status);
    EXPECT_EQ(info.type, e.type);
    EXPECT_FALSE(info.title.empty()) << "every problem has a title";
    EXPECT_TRUE(slugs.insert(info.type).second) << "type slugs are unique";
  }
}

TEST(ProblemTest, ResponseIsProblemJson) {
  for (const Expected& e : design_table()) {
    SCOPED_TRACE(std::string(e.type));
    const std::string detail = "detail for " + std::string(e.type);
    const http::Response r = problem_response(make_error(e.kind, detail));
    EXPECT_EQ(r.status, e.status);
    ASSERT_TRUE(r.header("Content-Type").has_value());
    EXPECT_EQ(*r.header("Content-Type"), "application/problem+json");

    const json body = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << "not JSON: " << r.body;
    ASSERT_TRUE(body.is_object()) << r.body;
    ASSERT_TRUE(body.contains("type") && body["type"].is_string()) << r.body;
    ASSERT_TRUE(body.contains("title") && body["title"].is_string()) << r.body;
    ASSERT_TRUE(body.contains("status") && body["status"].is_number_integer()) << r.body;
    ASSERT_TRUE(body.contains("detail") && body["detail"].is_string()) << r.body;
    EXPECT_EQ(body["type"], std::string(e.type));
    EXPECT_EQ(body["title"], std::string(problem_info(e.kind).title));
    EXPECT_EQ(body["status"], e.status) << "body status equals the HTTP status";
    EXPECT_EQ(body["detail"], detail);
    EXPECT_FALSE(body.contains("instance")) << "no instance unless given";

    const auto retry = r.header("Retry-After");
    EXPECT_EQ(retry.has_value(), e.retry_after) << "Retry-After only on 503 and rate_limited";
    if (retry) {
      int seconds = -1;
      ASSERT_NO_THROW(seconds = std::stoi(std::string(*retry)));
      EXPECT_GE(seconds, 0) << "Retry-After is a delay in seconds";
    }
  }
}

TEST(ProblemTest, InstanceIsIncludedWhenGiven) {
  const http::Response r =
      problem_response(make_error(ErrorKind::activity_not_found, "no activity x"), "/activities/x");
  const json body = json::parse(r.body);
  EXPECT_EQ(body.value("instance", ""), "/activities/x");
}

TEST(ProblemTest, DetailIsEscapedAndInvalidUtf8IsReplaced) {
  const std::string detail = "quote \" backslash \\ newline \n bad utf8 \xFF\xFE end";
  const http::Response r = problem_response(make_error(ErrorKind::invalid_request, detail));
  const json body = json::parse(r.body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << "body must stay valid JSON: " << r.body;
  const std::string got = body["detail"].get<std::string>();
  EXPECT_TRUE(got.starts_with("quote \" backslash \\ newline \n bad utf8 ")) << got;
  EXPECT_TRUE(got.ends_with(" end")) << got;
}

}  // namespace
}  // namespace fairdraw::app
