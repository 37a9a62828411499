// Per-key token-bucket rate limiting (bounded memory, sharded, thread-safe) and
// client address resolution behind trusted proxies (X-Forwarded-For).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/result.hpp"

namespace fairdraw::app {

struct RateLimitOptions {
  // Quota policy name sent in RateLimit-Policy / RateLimit: 1-64 of [A-Za-z0-9_.-].
  std::string policy_name = "default";
  double rate_per_s = 1.0;           // refill rate R in tokens per second, 1e-6 .. 1e6
  std::int64_t burst = 10;           // bucket size B, 1 .. 1e9
  std::size_t max_keys = 1'000'000;  // hard bound on buckets (~140 bytes each, plus key bytes past 15)
  std::size_t shards = 64;           // lock shards (capped at max_keys)
};

class RateLimiter {
 public:
  struct Decision {
    bool allowed = false;
    std::int64_t remaining = 0;       // whole tokens left after this request
    std::int64_t reset_after_ms = 0;  // until the bucket is full again
    std::int64_t retry_after_s = 0;   // 0 when allowed; else >= 1 (for Retry-After)
  };

  // Refuses (invalid_request, naming the field) options out of range.
  static Result<std::unique_ptr<RateLimiter>> create(RateLimitOptions options);

  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes one token from `key`'s bucket at time `now_ms` (pass a monotonic
  // clock if possible; time going backwards never grants tokens).
  Decision take(std::string_view key, std::int64_t now_ms);

  // RateLimit-Policy value `"<policy_name>";q=B;w=W` (draft-ietf-httpapi-ratelimit-headers-08),
  // W = seconds to refill a whole burst.
  std::string policy_header() const;
  // RateLimit value `"<policy_name>";r=REMAINING;t=SECONDS`, t = seconds until the bucket is full.
  std::string limit_header(const Decision& decision) const;

  std::size_t size() const;  // buckets tracked now, never above max_keys
  bool contains(std::string_view key) const;
  const RateLimitOptions& options() const { return options_; }

 private:
  struct Shard;
  explicit RateLimiter(RateLimitOptions options);

  RateLimitOptions options_;
  std::int64_t capacity_;                  // burst in nano-tokens
  std::int64_t refill_per_ms_;             // nano-tokens per millisecond
  std::array<std::uint64_t, 6> hash_key_;  // SipHash keys: index (0,1), long-key digest (2..5)
  std::size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
};

// An IPv4 or IPv6 address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is held as IPv4 so
// a dual-stack socket and a v4 proxy list agree.
struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4, network order
};
// Strict textual form only (inet_pton: dotted quad, no leading zeros; no zone id).
std::optional<IpAddress> parse_ip_address(std::string_view text);
std::string format_ip_address(const IpAddress& address);

// Trusted proxies, parsed once: exact addresses or CIDR ranges, IPv4 and IPv6
// (10.0.0.0/8, 127.0.0.1, ::1/128, 2001:db8::/32).
class TrustedProxies {
 public:
  // invalid_request naming the first bad entry.
  static Result<TrustedProxies> parse(const std::vector<std::string>& entries);
  // Skips entries that do not parse (trusting less than asked, never more).
  static TrustedProxies parse_skipping_invalid(const std::vector<std::string>& entries);
  bool contains(const IpAddress& address) const;
  bool contains(std::string_view address) const;
  bool empty() const { return ranges_.empty(); }

 private:
  struct Range {
    IpAddress network;
    int prefix = 0;
  };
  static std::optional<Range> parse_range(std::string_view entry);
  std::vector<Range> ranges_;
};

// The client's address for rate limiting and logs: the peer, unless the peer is
// a trusted proxy; then X-Forwarded-For is walked from the right, skipping
// trusted hops, and the first untrusted hop is the client. A malformed entry
// stops the walk at the last address seen (a trusted one). The result is in
// canonical text form (IPv4-mapped IPv6 as IPv4). Several X-Forwarded-For
// fields must be joined with "," in order before the call.
std::string client_address(std::string_view peer_ip, std::optional<std::string_view> x_forwarded_for,
                           const TrustedProxies& trusted_proxies);
// Convenience form; entries that do not parse are ignored (trusting less), so
// validate configuration with TrustedProxies::parse at start.
std::string client_address(std::string_view peer_ip, std::optional<std::string_view> x_forwarded_for,
                           const std::vector<std::string>& trusted_proxies);

// A rate-limit key for an address: IPv6 is cut to its /64, since one host
// usually owns a whole /64 and could otherwise get 2^64 fresh buckets. Other
// inputs are returned unchanged.
std::string address_rate_key(std::string_view address);

}  // namespace fairdraw::app
