// Parsing of `redis://[[user]:password@]host[:port][,host[:port]...][/db]` into connection
// settings. Several comma-separated nodes are the seed nodes of a Redis Cluster (any one
// reachable is enough; the rest of the cluster is learned from CLUSTER SLOTS).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/result.hpp"

namespace fairdraw::redis {

struct RedisEndpoint {
  std::string host;
  std::uint16_t port = 6379;
  bool operator==(const RedisEndpoint&) const = default;
};

struct RedisUrl {
  // The first node; `nodes` holds every node of the URL, this one first.
  std::string host;      // a name, an IPv4 address or an IPv6 address (without brackets)
  std::uint16_t port = 6379;
  std::string user;      // empty: the default user (plain `AUTH password`)
  std::string password;  // empty: no AUTH
  int db = 0;
  std::vector<RedisEndpoint> nodes;
};

// Userinfo may be percent-encoded (%40 for '@', %3A for ':'). On failure the Error
// (ErrorKind::invalid_request) names what is wrong and never contains the password.
Result<RedisUrl> parse_redis_url(std::string_view url);

}  // namespace fairdraw::redis
