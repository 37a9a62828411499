// redis:// URL parsing: defaults, credentials, IPv6, percent-encoding and error messages.
#include "fairdraw/redis/url.hpp"

#include <gtest/gtest.h>

#include "fairdraw/redis/connection.hpp"

namespace fairdraw::redis {
namespace {

TEST(RedisUrl, HostOnlyTakesDefaults) {
  const auto url = parse_redis_url("redis://cache.internal");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->host, "cache.internal");
  EXPECT_EQ(url->port, 6379);
  EXPECT_EQ(url->user, "");
  EXPECT_EQ(url->password, "");
  EXPECT_EQ(url->db, 0);
}

TEST(RedisUrl, AllParts) {
  const auto url = parse_redis_url("redis://draw:s3cret@10.0.0.7:6380/3");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->host, "10.0.0.7");
  EXPECT_EQ(url->port, 6380);
  EXPECT_EQ(url->user, "draw");
  EXPECT_EQ(url->password, "s3cret");
  EXPECT_EQ(url->db, 3);
}

TEST(RedisUrl, PasswordWithoutUserAndTrailingSlash) {
  const auto url = parse_redis_url("REDIS://:pw@localhost/");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->user, "");
  EXPECT_EQ(url->password, "pw");
  EXPECT_EQ(url->host, "localhost");
  EXPECT_EQ(url->db, 0);
}

TEST(RedisUrl, PercentEncodedAndRawSpecialCharactersInPassword) {
  auto url = parse_redis_url("redis://:p%40ss%3Aw%2Fd@h:1");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->password, "p@ss:w/d");
  EXPECT_EQ(url->port, 1);
  url = parse_redis_url("redis://u:a@b/c@h");  // the last '@' ends the userinfo
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->password, "a@b/c");
  EXPECT_EQ(url->host, "h");
}

TEST(RedisUrl, Ipv6Host) {
  auto url = parse_redis_url("redis://[::1]:7000/2");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 7000);
  EXPECT_EQ(url->db, 2);
  url = parse_redis_url("redis://[fe80::1]");
  ASSERT_TRUE(url.ok()) << url.error().detail;
  EXPECT_EQ(url->host, "fe80::1");
  EXPECT_EQ(url->port, 6379);
}

void expect_error(std::string_view text, std::string_view mentions) {
  const auto url = parse_redis_url(text);
  ASSERT_FALSE(url.ok()) << text;
  EXPECT_EQ(url.error().kind, ErrorKind::invalid_request);
  EXPECT_NE(url.error().detail.find(mentions), std::string::npos) << text << " -> " << url.error().detail;
}

TEST(RedisUrl, ErrorsNameTheProblem) {
  expect_error("http://h", "redis://");
  expect_error("h:6379", "redis://");
  expect_error("rediss://h", "TLS");
  expect_error("redis://", "missing host");
  expect_error("redis://:6379", "missing host");
  expect_error("redis://h:", "empty port");
  expect_error("redis://h:0", "invalid port '0'");
  expect_error("redis://h:65536", "invalid port '65536'");
  expect_error("redis://h:63x", "invalid port '63x'");
  expect_error("redis://h/x", "invalid database 'x'");
  expect_error("redis://h/-1", "invalid database '-1'");
  expect_error("redis://h/99999999999", "invalid database");
  expect_error("redis://h?db=1", "query");
  expect_error("redis://[::1", "IPv6");
  expect_error("redis://[::1]x", "after the IPv6 host");
  expect_error("redis://user@h", "user:password@");
  expect_error("redis://user:@h", "empty password");
  expect_error("redis://:%zz@h", "percent-encoding in the password");
}

TEST(RedisUrl, ErrorsNeverContainThePassword) {
  for (const char* text : {"redis://u:topsecret@h:bad", "redis://u:topsecret@/0", "redis://u:topsecret@h/z"}) {
    const auto url = parse_redis_url(text);
    ASSERT_FALSE(url.ok()) << text;
    EXPECT_EQ(url.error().detail.find("topsecret"), std::string::npos) << url.error().detail;
  }
}

TEST(RedisUrl, ToOptions) {
  const auto url = parse_redis_url("redis://a:b@h:1234/5");
  ASSERT_TRUE(url.ok());
  const RedisOptions options = make_redis_options(*url);
  EXPECT_EQ(options.host, "h");
  EXPECT_EQ(options.port, 1234);
  EXPECT_EQ(options.user, "a");
  EXPECT_EQ(options.password, "b");
  EXPECT_EQ(options.db, 5);
  EXPECT_EQ(options.max_pipeline, RedisOptions{}.max_pipeline);
}

}  // namespace
}  // namespace fairdraw::redis
