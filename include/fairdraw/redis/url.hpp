// Parsing of `redis://[[user]:password@]host[:port][/db]` into connection settings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fairdraw/result.hpp"

namespace fairdraw::redis {

struct RedisUrl {
  std::string host;      // a name, an IPv4 address or an IPv6 address (without brackets)
  std::uint16_t port = 6379;
  std::string user;      // empty: the default user (plain `AUTH password`)
  std::string password;  // empty: no AUTH
  int db = 0;
};

// Userinfo may be percent-encoded (%40 for '@', %3A for ':'). On failure the Error
// (ErrorKind::invalid_request) names what is wrong and never contains the password.
Result<RedisUrl> parse_redis_url(std::string_view url);

}  // namespace fairdraw::redis
