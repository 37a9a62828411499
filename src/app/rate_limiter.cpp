// Token buckets in sharded LRU maps, and X-Forwarded-For resolution behind trusted proxies.
#include "fairdraw/app/rate_limiter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>
#include <list>
#include <mutex>
#include <random>
#include <unordered_map>

namespace fairdraw::app {
namespace {

// Tokens are counted in nano-tokens so that refill over whole milliseconds is
// exact integer arithmetic: no float drift, so concurrent callers can never
// round their way to an extra token.
constexpr std::int64_t kUnit = 1'000'000'000;
constexpr std::size_t kMaxRawKeyBytes = 256;
// A long key is stored as a marker byte plus a 128-bit keyed digest.
constexpr std::size_t kDigestKeyBytes = 17;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

constexpr std::uint64_t rotl(std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

// SipHash-2-4 with a per-process random key: keys are chosen by clients, so an
// unkeyed hash would let them aim every key at one shard and one hash chain.
std::uint64_t siphash24(std::uint64_t k0, std::uint64_t k1, std::string_view data) {
  std::uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  std::uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  std::uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  std::uint64_t v3 = 0x7465646279746573ULL ^ k1;
  auto round = [&] {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = data.size();
  const std::size_t whole = n / 8 * 8;
  for (std::size_t i = 0; i < whole; i += 8) {
    std::uint64_t m = 0;
    for (int j = 7; j >= 0; --j) m = (m << 8) | p[i + static_cast<std::size_t>(j)];
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  std::uint64_t last = static_cast<std::uint64_t>(n) << 56;
  for (std::size_t j = 0; j < n - whole; ++j) last |= static_cast<std::uint64_t>(p[whole + j]) << (8 * j);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  round();
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

bool valid_policy_name(std::string_view name) {
  // Sent inside a structured-field string, so no quote, backslash or control characters.
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

struct IndexKey {
  std::string_view text;  // points into the Entry's own key string, stable in the list
  std::uint64_t hash;
};
struct IndexKeyHash {
  std::size_t operator()(const IndexKey& k) const noexcept { return k.hash; }
};
struct IndexKeyEqual {
  bool operator()(const IndexKey& a, const IndexKey& b) const noexcept {
    return a.hash == b.hash && a.text == b.text;
  }
};

struct Entry {
  std::string key;
  std::uint64_t hash = 0;
  std::int64_t tokens = 0;   // nano-tokens
  std::int64_t last_ms = 0;  // latest time seen; never moves backwards
};

}  // namespace

// One lock per shard; a shard is a map into an LRU list (front = most recent).
// alignas keeps two shards' mutexes off one cache line.
struct alignas(64) RateLimiter::Shard {
  mutable std::mutex mutex;
  std::list<Entry> lru;
  std::unordered_map<IndexKey, std::list<Entry>::iterator, IndexKeyHash, IndexKeyEqual> index;
  std::size_t capacity = 0;
};

Result<std::unique_ptr<RateLimiter>> RateLimiter::create(RateLimitOptions options) {
  auto bad = [](const char* what) { return make_error(ErrorKind::invalid_request, what); };
  if (!valid_policy_name(options.policy_name)) {
    return bad("rate_limit.policy_name: 1-64 characters of [A-Za-z0-9_.-]");
  }
  if (!std::isfinite(options.rate_per_s) || options.rate_per_s < 1e-6 || options.rate_per_s > 1e6) {
    return bad("rate_limit.rate_per_s: must be between 0.000001 and 1000000");
  }
  if (options.burst < 1 || options.burst > 1'000'000'000) {
    return bad("rate_limit.burst: must be between 1 and 1000000000");
  }
  if (options.max_keys < 1) return bad("rate_limit.max_keys: must be at least 1");
  if (options.shards < 1 || options.shards > 4096) return bad("rate_limit.shards: must be between 1 and 4096");
  return std::unique_ptr<RateLimiter>(new RateLimiter(std::move(options)));
}

RateLimiter::RateLimiter(RateLimitOptions options)
    : options_(std::move(options)),
      capacity_(options_.burst * kUnit),
      refill_per_ms_(std::max<std::int64_t>(1, std::llround(options_.rate_per_s * 1e6))),
      hash_key_{},
      shard_count_(std::min(options_.shards, options_.max_keys)),
      shards_(new Shard[shard_count_]) {
  std::random_device random;
  for (auto& word : hash_key_) word = (static_cast<std::uint64_t>(random()) << 32) ^ random();
  // Shard capacities add up to max_keys exactly: that sum is the memory bound.
  for (std::size_t i = 0; i < shard_count_; ++i) {
    shards_[i].capacity = options_.max_keys / shard_count_ + (i < options_.max_keys % shard_count_ ? 1 : 0);
  }
}

RateLimiter::~RateLimiter() = default;

namespace {

// Keys longer than kMaxRawKeyBytes are replaced by a keyed 128-bit digest, so
// a bucket costs bounded memory whatever the client sends. A client cannot
// compute the digest, so it cannot aim a short key at a long key's bucket.
std::string_view bucket_key(std::string_view key, const std::array<std::uint64_t, 6>& k,
                            std::array<char, kDigestKeyBytes>& buffer) {
  if (key.size() <= kMaxRawKeyBytes) return key;
  const std::uint64_t a = siphash24(k[2], k[3], key);
  const std::uint64_t b = siphash24(k[4], k[5], key);
  buffer[0] = '\0';
  for (int i = 0; i < 8; ++i) {
    buffer[1 + static_cast<std::size_t>(i)] = static_cast<char>(a >> (8 * i));
    buffer[9 + static_cast<std::size_t>(i)] = static_cast<char>(b >> (8 * i));
  }
  return {buffer.data(), buffer.size()};
}

}  // namespace

RateLimiter::Decision RateLimiter::take(std::string_view key, std::int64_t now_ms) {
  std::array<char, kDigestKeyBytes> digest{};
  const std::string_view k = bucket_key(key, hash_key_, digest);
  const std::uint64_t h = siphash24(hash_key_[0], hash_key_[1], k);
  // High bits pick the shard; the map's buckets use h modulo a prime.
  Shard& shard = shards_[static_cast<std::size_t>(((h >> 32) * shard_count_) >> 32)];

  std::lock_guard lock(shard.mutex);
  Entry* entry = nullptr;
  if (auto found = shard.index.find(IndexKey{k, h}); found != shard.index.end()) {
    // Existing key: a splice and arithmetic, no allocation.
    shard.lru.splice(shard.lru.begin(), shard.lru, found->second);
    entry = &*found->second;
    if (now_ms > entry->last_ms) {
      // Unsigned difference: exact even when the two times are far apart.
      const std::uint64_t elapsed = static_cast<std::uint64_t>(now_ms) - static_cast<std::uint64_t>(entry->last_ms);
      const std::int64_t deficit = capacity_ - entry->tokens;
      if (elapsed > static_cast<std::uint64_t>(deficit / refill_per_ms_)) {
        entry->tokens = capacity_;
      } else {
        entry->tokens += static_cast<std::int64_t>(elapsed) * refill_per_ms_;
      }
      entry->last_ms = now_ms;
    }
  } else {
    // New key. When the shard is full its least recently used bucket is
    // recycled. Trade-off: an evicted key comes back with a full bucket, so a
    // client able to push max_keys other keys through one shard between two of
    // its own requests gets a fresh burst; max_keys must be large against the
    // number of keys active within a refill period for the limit to hold.
    if (shard.lru.size() >= shard.capacity) {
      auto victim = std::prev(shard.lru.end());
      shard.index.erase(IndexKey{victim->key, victim->hash});
      shard.lru.splice(shard.lru.begin(), shard.lru, victim);
    } else {
      shard.lru.emplace_front();
    }
    // The front node is not indexed until emplace succeeds; on failure drop it
    // so the list and the map never disagree.
    try {
      Entry& fresh = shard.lru.front();
      fresh.key.assign(k);
      fresh.hash = h;
      fresh.tokens = capacity_;
      fresh.last_ms = now_ms;
      shard.index.emplace(IndexKey{fresh.key, h}, shard.lru.begin());
    } catch (...) {
      shard.lru.pop_front();
      throw;
    }
    entry = &shard.lru.front();
  }

  Decision decision;
  if (entry->tokens >= kUnit) {
    entry->tokens -= kUnit;
    decision.allowed = true;
  } else {
    const std::int64_t wait_ms = ceil_div(kUnit - entry->tokens, refill_per_ms_);
    decision.retry_after_s = std::max<std::int64_t>(1, ceil_div(wait_ms, 1000));
  }
  decision.remaining = entry->tokens / kUnit;
  decision.reset_after_ms = ceil_div(capacity_ - entry->tokens, refill_per_ms_);
  return decision;
}

std::string RateLimiter::policy_header() const {
  const std::int64_t window_s = std::max<std::int64_t>(1, ceil_div(capacity_, refill_per_ms_ * 1000));
  return "\"" + options_.policy_name + "\";q=" + std::to_string(options_.burst) + ";w=" + std::to_string(window_s);
}

std::string RateLimiter::limit_header(const Decision& decision) const {
  // Draft-08's t is "seconds until the quota resets": for a token bucket, until it is full.
  return "\"" + options_.policy_name + "\";r=" + std::to_string(decision.remaining) +
         ";t=" + std::to_string(ceil_div(decision.reset_after_ms, 1000));
}

std::size_t RateLimiter::size() const {
  std::size_t total = 0;
  for (std::size_t i = 0; i < shard_count_; ++i) {
    std::lock_guard lock(shards_[i].mutex);
    total += shards_[i].lru.size();
  }
  return total;
}

bool RateLimiter::contains(std::string_view key) const {
  std::array<char, kDigestKeyBytes> digest{};
  const std::string_view k = bucket_key(key, hash_key_, digest);
  const std::uint64_t h = siphash24(hash_key_[0], hash_key_[1], k);
  const Shard& shard = shards_[static_cast<std::size_t>(((h >> 32) * shard_count_) >> 32)];
  std::lock_guard lock(shard.mutex);
  return shard.index.find(IndexKey{k, h}) != shard.index.end();
}

// ---- addresses -------------------------------------------------------------

std::optional<IpAddress> parse_ip_address(std::string_view text) {
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  if (text.empty() || text.size() >= buffer.size()) return std::nullopt;
  std::copy(text.begin(), text.end(), buffer.begin());
  IpAddress address;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, buffer.data(), &v4) != 1) return std::nullopt;
    std::memcpy(address.bytes.data(), &v4, 4);
    return address;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buffer.data(), &v6) != 1) return std::nullopt;
  std::memcpy(address.bytes.data(), &v6, 16);
  static constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), address.bytes.begin())) {
    std::copy_n(address.bytes.begin() + 12, 4, address.bytes.begin());
    std::fill(address.bytes.begin() + 4, address.bytes.end(), 0);
    return address;
  }
  address.v6 = true;
  return address;
}

std::string format_ip_address(const IpAddress& address) {
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  const int family = address.v6 ? AF_INET6 : AF_INET;
  if (inet_ntop(family, address.bytes.data(), buffer.data(), buffer.size()) == nullptr) return {};
  return buffer.data();
}

namespace {

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s, std::size_t max_len) {
  return !s.empty() && s.size() <= max_len &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool in_range(const IpAddress& network, int prefix, const IpAddress& address) {
  if (network.v6 != address.v6) return false;
  const auto whole = static_cast<std::size_t>(prefix / 8);
  if (!std::equal(network.bytes.begin(), network.bytes.begin() + static_cast<std::ptrdiff_t>(whole),
                  address.bytes.begin())) {
    return false;
  }
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (network.bytes[whole] & mask) == (address.bytes[whole] & mask);
}

void clear_host_bits(IpAddress& address, int prefix) {
  for (int bit = prefix; bit < 128; ++bit) {
    const auto byte = static_cast<std::size_t>(bit / 8);
    address.bytes[byte] = static_cast<std::uint8_t>(address.bytes[byte] & ~(0x80 >> (bit % 8)));
  }
}

// One X-Forwarded-For element: an address, optionally "a.b.c.d:port" or
// "[v6]" / "[v6]:port" as some proxies write them.
std::optional<IpAddress> parse_hop(std::string_view s) {
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view after = s.substr(close + 1);
    if (!after.empty() && (after.front() != ':' || !all_digits(after.substr(1), 5))) return std::nullopt;
    const std::string_view inner = s.substr(1, close - 1);
    if (inner.find(':') == std::string_view::npos) return std::nullopt;
    return parse_ip_address(inner);
  }
  if (std::count(s.begin(), s.end(), ':') == 1) {
    const auto colon = s.find(':');
    if (!all_digits(s.substr(colon + 1), 5)) return std::nullopt;
    return parse_ip_address(s.substr(0, colon));
  }
  return parse_ip_address(s);
}

}  // namespace

std::optional<TrustedProxies::Range> TrustedProxies::parse_range(std::string_view entry) {
  entry = trim_ows(entry);
  const auto slash = entry.find('/');
  const std::string_view host = entry.substr(0, slash);
  auto address = parse_ip_address(host);
  if (!address) return std::nullopt;
  const bool written_as_v6 = host.find(':') != std::string_view::npos;
  int prefix = address->v6 ? 128 : 32;
  if (slash != std::string_view::npos) {
    const std::string_view digits = entry.substr(slash + 1);
    if (!all_digits(digits, 3)) return std::nullopt;
    std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    const int written_max = written_as_v6 ? 128 : 32;
    if (prefix > written_max) return std::nullopt;
    if (written_as_v6 && !address->v6) {
      // ::ffff:a.b.c.d/N is held as IPv4, so N counts from the mapped prefix.
      if (prefix < 96) return std::nullopt;
      prefix -= 96;
    }
  }
  clear_host_bits(*address, prefix);
  return Range{*address, prefix};
}

Result<TrustedProxies> TrustedProxies::parse(const std::vector<std::string>& entries) {
  TrustedProxies proxies;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto range = parse_range(entries[i]);
    if (!range) {
      return make_error(ErrorKind::invalid_request,
                        "trusted_proxies[" + std::to_string(i) + "]: not an IP address or CIDR range");
    }
    proxies.ranges_.push_back(*range);
  }
  return proxies;
}

TrustedProxies TrustedProxies::parse_skipping_invalid(const std::vector<std::string>& entries) {
  TrustedProxies proxies;
  for (const auto& entry : entries) {
    if (auto range = parse_range(entry)) proxies.ranges_.push_back(*range);
  }
  return proxies;
}

bool TrustedProxies::contains(const IpAddress& address) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [&](const Range& r) { return in_range(r.network, r.prefix, address); });
}

bool TrustedProxies::contains(std::string_view address) const {
  const auto parsed = parse_ip_address(trim_ows(address));
  return parsed && contains(*parsed);
}

std::string client_address(std::string_view peer_ip, std::optional<std::string_view> x_forwarded_for,
                           const TrustedProxies& trusted_proxies) {
  const auto peer = parse_ip_address(peer_ip);
  // Not an IP (a Unix socket, a scoped address): nothing to resolve or to trust.
  if (!peer) return std::string(peer_ip);
  // The header is client-controlled unless a trusted proxy sent the request.
  if (!x_forwarded_for || !trusted_proxies.contains(*peer)) return format_ip_address(*peer);

  // Walk from the right: each trusted proxy appended the address it received
  // from, so the first untrusted hop is the furthest address anyone we trust
  // vouches for. Anything left of it may have been written by the client.
  IpAddress current = *peer;
  std::string_view rest = *x_forwarded_for;
  for (;;) {
    const auto comma = rest.rfind(',');
    const std::string_view item = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
    const auto hop = parse_hop(trim_ows(item));
    if (!hop) break;  // malformed: keep the last address a trusted hop gave us
    current = *hop;
    if (!trusted_proxies.contains(current) || comma == std::string_view::npos) break;
    rest = rest.substr(0, comma);
  }
  return format_ip_address(current);
}

std::string client_address(std::string_view peer_ip, std::optional<std::string_view> x_forwarded_for,
                           const std::vector<std::string>& trusted_proxies) {
  return client_address(peer_ip, x_forwarded_for, TrustedProxies::parse_skipping_invalid(trusted_proxies));
}

std::string address_rate_key(std::string_view address) {
  auto parsed = parse_ip_address(address);
  if (!parsed) return std::string(address);
  if (!parsed->v6) return format_ip_address(*parsed);
  clear_host_bits(*parsed, 64);
  return format_ip_address(*parsed) + "/64";
}

}  // namespace fairdraw::app
