// Parsing of redis:// URLs (the `redis.url` setting) into host, port, credentials and db.
#include "fairdraw/redis/url.hpp"

#include <charconv>
#include <limits>
#include <optional>

namespace fairdraw::redis {
namespace {

constexpr std::string_view kScheme = "redis://";

Error url_error(std::string detail) {
  return make_error(ErrorKind::invalid_request, "redis url: " + std::move(detail));
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

template <class Int>
std::optional<Int> parse_decimal(std::string_view s, Int max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::uint64_t value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  if (value > static_cast<std::uint64_t>(max)) return std::nullopt;
  return static_cast<Int>(value);
}

// One `host[:port]` (IPv6 in brackets) of the URL's node list.
Result<RedisEndpoint> parse_endpoint(std::string_view authority) {
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return url_error("unterminated '[' in the IPv6 host");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return url_error("unexpected characters after the IPv6 host");
      port = after.substr(1);
      if (port.empty()) return url_error("empty port");
    }
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return url_error("empty port");
    }
  }
  if (host.empty()) return url_error("missing host");
  RedisEndpoint out;
  out.host = std::string(host);
  if (!port.empty()) {
    const auto value = parse_decimal<std::uint16_t>(port, std::numeric_limits<std::uint16_t>::max());
    if (!value || *value == 0) return url_error("invalid port '" + std::string(port) + "' (1-65535)");
    out.port = *value;
  }
  return out;
}

}  // namespace

Result<RedisUrl> parse_redis_url(std::string_view url) {
  if (iequals_prefix(url, "rediss://")) return url_error("TLS (rediss://) is not supported");
  if (iequals_prefix(url, "unix://")) return url_error("unix sockets are not supported");
  if (!iequals_prefix(url, kScheme)) return url_error("must start with redis://");
  std::string_view rest = url.substr(kScheme.size());

  RedisUrl out;
  // The last '@' ends the userinfo, so an unencoded '@' or '/' in a password still parses.
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return url_error("credentials must be user:password@ or :password@");
    }
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user) return url_error("bad percent-encoding in the user name");
    auto password = percent_decode(userinfo.substr(colon + 1));
    if (!password) return url_error("bad percent-encoding in the password");
    if (password->empty()) return url_error("empty password");
    out.user = std::move(*user);
    out.password = std::move(*password);
  }

  if (rest.find_first_of("?#") != std::string_view::npos) {
    return url_error("query parameters and fragments are not supported");
  }
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);

  std::string_view nodes = authority;
  while (true) {
    const auto comma = nodes.find(',');
    auto node = parse_endpoint(nodes.substr(0, comma));
    if (!node.ok()) return node.error();
    out.nodes.push_back(std::move(node.value()));
    if (comma == std::string_view::npos) break;
    nodes = nodes.substr(comma + 1);
  }
  out.host = out.nodes.front().host;
  out.port = out.nodes.front().port;
  if (!path.empty()) {
    const auto value = parse_decimal<int>(path, std::numeric_limits<int>::max());
    if (!value) return url_error("invalid database '" + std::string(path) + "' (a non-negative integer)");
    out.db = *value;
    if (out.db != 0 && out.nodes.size() > 1) {
      return url_error("a Redis Cluster (several nodes) has only database 0");
    }
  }
  return out;
}

}  // namespace fairdraw::redis
