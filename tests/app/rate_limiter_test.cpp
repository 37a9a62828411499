// Rate limiter: token-bucket arithmetic over simulated time, headers, bounded memory, concurrency, and X-Forwarded-For resolution.
#include "fairdraw/app/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fairdraw::app {
namespace {

std::unique_ptr<RateLimiter> make_limiter(double rate, std::int64_t burst, std::size_t max_keys = 1000,
                                          std::size_t shards = 64) {
  RateLimitOptions options;
  options.rate_per_s = rate;
  options.burst = burst;
  options.max_keys = max_keys;
  options.shards = shards;
  auto limiter = RateLimiter::create(options);
  EXPECT_TRUE(limiter.ok()) << (limiter.ok() ? "" : limiter.error().detail);
  return std::move(limiter).value();
}

constexpr std::int64_t kT0 = 1'700'000'000'000;  // a realistic epoch-ms start

TEST(RateLimiterTest, BurstThenRefillOverSimulatedTime) {
  auto limiter = make_limiter(10.0, 5);  // one token per 100 ms
  for (int i = 0; i < 5; ++i) {
    const auto d = limiter->take("alice", kT0);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 4 - i);
    EXPECT_EQ(d.retry_after_s, 0);
  }
  EXPECT_FALSE(limiter->take("alice", kT0).allowed);
  EXPECT_FALSE(limiter->take("alice", kT0 + 99).allowed);
  EXPECT_TRUE(limiter->take("alice", kT0 + 100).allowed);
  EXPECT_FALSE(limiter->take("alice", kT0 + 100).allowed);
  // 250 ms later: 2.5 tokens accrued, two whole ones usable.
  EXPECT_TRUE(limiter->take("alice", kT0 + 350).allowed);
  EXPECT_TRUE(limiter->take("alice", kT0 + 350).allowed);
  EXPECT_FALSE(limiter->take("alice", kT0 + 350).allowed);
  // The half token carries over: 50 ms more make one.
  EXPECT_TRUE(limiter->take("alice", kT0 + 400).allowed);
  // A long pause refills to the burst, never beyond.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter->take("alice", kT0 + 3'600'000).allowed) << i;
  EXPECT_FALSE(limiter->take("alice", kT0 + 3'600'000).allowed);
}

TEST(RateLimiterTest, TimeGoingBackwardsGrantsNothing) {
  auto limiter = make_limiter(10.0, 2);
  EXPECT_TRUE(limiter->take("k", kT0 + 1000).allowed);
  EXPECT_TRUE(limiter->take("k", kT0 + 1000).allowed);
  EXPECT_FALSE(limiter->take("k", kT0).allowed);
  EXPECT_FALSE(limiter->take("k", kT0 + 500).allowed);
  EXPECT_FALSE(limiter->take("k", kT0 + 1099).allowed);
  EXPECT_TRUE(limiter->take("k", kT0 + 1100).allowed);
}

TEST(RateLimiterTest, ExtremeTimesDoNotOverflow) {
  auto limiter = make_limiter(1e6, 1'000'000'000);
  EXPECT_TRUE(limiter->take("k", std::numeric_limits<std::int64_t>::min()).allowed);
  const auto d = limiter->take("k", std::numeric_limits<std::int64_t>::max());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 999'999'999);
}

TEST(RateLimiterTest, RetryAfterAndReset) {
  auto limiter = make_limiter(0.5, 2);  // one token per 2 s
  auto d = limiter->take("bob", kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 1);
  EXPECT_EQ(d.reset_after_ms, 2000);
  d = limiter->take("bob", kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after_ms, 4000);
  d = limiter->take("bob", kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.retry_after_s, 2);
  EXPECT_EQ(d.reset_after_ms, 4000);
  d = limiter->take("bob", kT0 + 1001);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);  // 999 ms rounds up, never down to 0
  EXPECT_EQ(d.reset_after_ms, 2999);
  EXPECT_TRUE(limiter->take("bob", kT0 + 2000).allowed);
}

TEST(RateLimiterTest, RetryAfterIsAtLeastOneSecond) {
  auto limiter = make_limiter(1000.0, 1);
  EXPECT_TRUE(limiter->take("k", kT0).allowed);
  const auto d = limiter->take("k", kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);
}

TEST(RateLimiterTest, HeadersFollowDraft08) {
  auto limiter = make_limiter(10.0, 100);
  EXPECT_EQ(limiter->policy_header(), "\"default\";q=100;w=10");
  auto d = limiter->take("k", kT0);
  EXPECT_EQ(limiter->limit_header(d), "\"default\";r=99;t=1");
  for (int i = 0; i < 99; ++i) d = limiter->take("k", kT0);
  EXPECT_EQ(limiter->limit_header(d), "\"default\";r=0;t=10");

  RateLimitOptions slow;
  slow.policy_name = "draws.per-user";
  slow.rate_per_s = 3.0;
  slow.burst = 10;  // 10 / 3 s rounds up to a 4 s window
  auto named = RateLimiter::create(slow);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ((*named)->policy_header(), "\"draws.per-user\";q=10;w=4");
  d = (*named)->take("k", kT0);
  EXPECT_EQ((*named)->limit_header(d), "\"draws.per-user\";r=9;t=1");
}

TEST(RateLimiterTest, RejectsBadOptions) {
  auto with = [](auto change) {
    RateLimitOptions o;
    change(o);
    return RateLimiter::create(o);
  };
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.rate_per_s = 0; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.rate_per_s = -1; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.rate_per_s = std::numeric_limits<double>::quiet_NaN(); }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.rate_per_s = std::numeric_limits<double>::infinity(); }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.burst = 0; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.burst = 2'000'000'000; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.max_keys = 0; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.shards = 0; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.policy_name = "a\"b"; }).ok());
  EXPECT_FALSE(with([](RateLimitOptions& o) { o.policy_name = ""; }).ok());
  auto error = with([](RateLimitOptions& o) { o.burst = 0; });
  EXPECT_EQ(error.error().kind, ErrorKind::invalid_request);
  EXPECT_NE(error.error().detail.find("burst"), std::string::npos);
}

TEST(RateLimiterTest, KeysAreIndependent) {
  auto limiter = make_limiter(1.0, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter->take("alice", kT0).allowed);
  EXPECT_FALSE(limiter->take("alice", kT0).allowed);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter->take("bob", kT0).allowed);
  EXPECT_FALSE(limiter->take("bob", kT0).allowed);
  EXPECT_TRUE(limiter->take("alic", kT0).allowed);
  EXPECT_TRUE(limiter->take("alice ", kT0).allowed);
  EXPECT_TRUE(limiter->take(std::string_view("alice\0", 6), kT0).allowed);
  EXPECT_TRUE(limiter->take("", kT0).allowed);
  EXPECT_EQ(limiter->size(), 6U);
}

TEST(RateLimiterTest, LongKeysAreHashedButStayDistinct) {
  auto limiter = make_limiter(1.0, 1);
  const std::string a(300, 'x');
  std::string b = a;
  b.back() = 'y';
  const std::string exactly_256(256, 'x');
  EXPECT_TRUE(limiter->take(a, kT0).allowed);
  EXPECT_FALSE(limiter->take(a, kT0).allowed);
  EXPECT_TRUE(limiter->take(b, kT0).allowed);
  EXPECT_TRUE(limiter->take(exactly_256, kT0).allowed);
  EXPECT_TRUE(limiter->contains(a));
  EXPECT_TRUE(limiter->contains(b));
  const std::string huge(1 << 20, 'z');
  EXPECT_TRUE(limiter->take(huge, kT0).allowed);
  EXPECT_FALSE(limiter->take(huge, kT0).allowed);
  EXPECT_EQ(limiter->size(), 4U);
}

TEST(RateLimiterTest, MemoryStaysBoundedAtMaxKeys) {
  auto limiter = make_limiter(1.0, 5, /*max_keys=*/100, /*shards=*/8);
  for (int i = 0; i < 10'000; ++i) {
    EXPECT_TRUE(limiter->take("user-" + std::to_string(i), kT0).allowed);
    ASSERT_LE(limiter->size(), 100U) << i;
  }
  EXPECT_EQ(limiter->size(), 100U);
}

TEST(RateLimiterTest, MoreShardsThanKeysStillBounded) {
  auto limiter = make_limiter(1.0, 5, /*max_keys=*/3, /*shards=*/64);
  for (int i = 0; i < 1000; ++i) limiter->take("k" + std::to_string(i), kT0);
  EXPECT_LE(limiter->size(), 3U);
  EXPECT_GE(limiter->size(), 1U);
}

TEST(RateLimiterTest, EvictsLeastRecentlyUsedAndEvictedKeyStartsFull) {
  auto limiter = make_limiter(1.0, 2, /*max_keys=*/3, /*shards=*/1);
  for (const char* k : {"a", "b", "c"}) {
    EXPECT_TRUE(limiter->take(k, kT0).allowed);
    EXPECT_TRUE(limiter->take(k, kT0).allowed);
  }
  EXPECT_FALSE(limiter->take("a", kT0).allowed);  // touches a: b is now the oldest
  EXPECT_TRUE(limiter->take("d", kT0).allowed);   // evicts b
  EXPECT_EQ(limiter->size(), 3U);
  EXPECT_FALSE(limiter->contains("b"));
  EXPECT_TRUE(limiter->contains("a"));
  EXPECT_TRUE(limiter->contains("c"));
  EXPECT_TRUE(limiter->contains("d"));
  EXPECT_FALSE(limiter->take("a", kT0).allowed);  // a kept its empty bucket
  // The documented trade-off: b comes back with a full bucket (and evicts c).
  EXPECT_TRUE(limiter->take("b", kT0).allowed);
  EXPECT_TRUE(limiter->take("b", kT0).allowed);
  EXPECT_FALSE(limiter->take("b", kT0).allowed);
  EXPECT_FALSE(limiter->contains("c"));
}

// Eight threads hammer one key at one instant, then at one later instant:
// exactly the burst, then exactly the refill, get through; never more.
TEST(RateLimiterTest, ConcurrentTakesOnOneKeyNeverExceedBurstPlusRefill) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerPhase = 2000;
  auto limiter = make_limiter(50.0, 100);
  std::atomic<int> allowed_phase1{0};
  std::atomic<int> allowed_phase2{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      sync.arrive_and_wait();
      for (int i = 0; i < kCallsPerPhase; ++i) {
        if (limiter->take("hot", kT0).allowed) allowed_phase1.fetch_add(1);
      }
      sync.arrive_and_wait();
      for (int i = 0; i < kCallsPerPhase; ++i) {
        if (limiter->take("hot", kT0 + 1000).allowed) allowed_phase2.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(allowed_phase1.load(), 100);
  EXPECT_EQ(allowed_phase2.load(), 50);
  EXPECT_EQ(allowed_phase1.load() + allowed_phase2.load(), 100 + 50);
}

// Threads walk simulated time independently (so calls arrive out of order):
// allowed never exceeds burst + rate * elapsed, and what is left adds up exactly.
TEST(RateLimiterTest, ConcurrentTakesWithInterleavedTimesAddUpExactly) {
  constexpr int kThreads = 8;
  auto limiter = make_limiter(50.0, 100);  // one token per 20 ms
  std::atomic<int> allowed{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      for (std::int64_t ms = 0; ms <= 2000; ms += 1 + t % 3) {
        for (int i = 0; i < 2; ++i) {
          if (limiter->take("hot", kT0 + ms).allowed) allowed.fetch_add(1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const int expected = 100 + 50 * 2;
  EXPECT_LE(allowed.load(), expected);
  int leftover = 0;
  while (limiter->take("hot", kT0 + 2000).allowed) ++leftover;
  EXPECT_EQ(allowed.load() + leftover, expected);
}

TEST(RateLimiterTest, ConcurrentManyKeysWithEvictionStaysBounded) {
  constexpr int kThreads = 8;
  auto limiter = make_limiter(1.0, 3, /*max_keys=*/256, /*shards=*/16);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        limiter->take("t" + std::to_string(t) + "-" + std::to_string(i % 700), kT0 + i);
        if (i % 500 == 0) {
          EXPECT_LE(limiter->size(), 256U);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(limiter->size(), 256U);
}

// ---- client address --------------------------------------------------------

TEST(IpAddressTest, ParsesStrictlyAndCanonicalises) {
  EXPECT_EQ(format_ip_address(*parse_ip_address("192.0.2.1")), "192.0.2.1");
  EXPECT_EQ(format_ip_address(*parse_ip_address("2001:DB8:0:0::1")), "2001:db8::1");
  EXPECT_EQ(format_ip_address(*parse_ip_address("::ffff:192.0.2.1")), "192.0.2.1");
  EXPECT_FALSE(parse_ip_address("").has_value());
  EXPECT_FALSE(parse_ip_address("192.0.2").has_value());
  EXPECT_FALSE(parse_ip_address("192.0.2.256").has_value());
  EXPECT_FALSE(parse_ip_address("010.0.0.1").has_value());
  EXPECT_FALSE(parse_ip_address(" 192.0.2.1").has_value());
  EXPECT_FALSE(parse_ip_address("example.com").has_value());
  EXPECT_FALSE(parse_ip_address("fe80::1%eth0").has_value());
  EXPECT_FALSE(parse_ip_address(std::string(100, '1')).has_value());
}

TEST(TrustedProxiesTest, ParsesAddressesAndRanges) {
  auto proxies = TrustedProxies::parse({"10.0.0.0/8", "127.0.0.1/32", "192.0.2.7", "fd00::/8", "::1",
                                        "::ffff:172.16.0.0/108"});
  ASSERT_TRUE(proxies.ok()) << proxies.error().detail;
  EXPECT_TRUE(proxies->contains("10.1.2.3"));
  EXPECT_TRUE(proxies->contains("10.255.255.255"));
  EXPECT_FALSE(proxies->contains("11.0.0.1"));
  EXPECT_TRUE(proxies->contains("127.0.0.1"));
  EXPECT_FALSE(proxies->contains("127.0.0.2"));
  EXPECT_TRUE(proxies->contains("192.0.2.7"));
  EXPECT_FALSE(proxies->contains("192.0.2.8"));
  EXPECT_TRUE(proxies->contains("fd12:3456::1"));
  EXPECT_FALSE(proxies->contains("fe80::1"));
  EXPECT_TRUE(proxies->contains("::1"));
  EXPECT_TRUE(proxies->contains("::ffff:10.0.0.1"));  // dual-stack peer form
  EXPECT_TRUE(proxies->contains("172.16.5.5"));       // from the mapped /108 = /12
  EXPECT_FALSE(proxies->contains("172.32.0.1"));
  EXPECT_FALSE(proxies->contains("garbage"));
}

TEST(TrustedProxiesTest, OddPrefixesAndHostBits) {
  auto proxies = TrustedProxies::parse({"192.0.2.129/25", "2001:db8::/33", "0.0.0.0/0"});
  ASSERT_TRUE(proxies.ok());
  auto narrow = TrustedProxies::parse({"192.0.2.129/25", "2001:db8::/33"});
  ASSERT_TRUE(narrow.ok());
  EXPECT_TRUE(narrow->contains("192.0.2.200"));
  EXPECT_FALSE(narrow->contains("192.0.2.100"));
  EXPECT_TRUE(narrow->contains("2001:db8:7fff::1"));
  EXPECT_FALSE(narrow->contains("2001:db8:8000::1"));
  EXPECT_TRUE(proxies->contains("8.8.8.8"));
  EXPECT_FALSE(proxies->contains("2001:db9::1"));  // /0 of IPv4 is not IPv6
}

TEST(TrustedProxiesTest, RejectsMalformedEntriesNamingThem) {
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8x", "10.0.0/8", "host.local",
                          "10.0.0.0/-1", "::ffff:10.0.0.0/95", ""}) {
    auto proxies = TrustedProxies::parse({"127.0.0.1", bad});
    ASSERT_FALSE(proxies.ok()) << bad;
    EXPECT_EQ(proxies.error().kind, ErrorKind::invalid_request);
    EXPECT_NE(proxies.error().detail.find("trusted_proxies[1]"), std::string::npos) << bad;
  }
}

struct XffCase {
  const char* name;
  const char* peer;
  std::optional<std::string_view> xff;
  const char* expected;
};

TEST(ClientAddressTest, ResolutionTable) {
  const std::vector<std::string> trusted = {"10.0.0.0/8", "127.0.0.1/32", "2001:db8:ffff::/48"};
  const std::vector<XffCase> cases = {
      {"no header: the peer", "203.0.113.9", std::nullopt, "203.0.113.9"},
      {"spoofed header from an untrusted peer is ignored", "203.0.113.9", "1.2.3.4", "203.0.113.9"},
      {"spoofed chain from an untrusted peer is ignored", "203.0.113.9", "10.0.0.1, 1.2.3.4", "203.0.113.9"},
      {"one trusted proxy", "10.0.0.1", "198.51.100.7", "198.51.100.7"},
      {"two trusted proxies", "10.0.0.1", "198.51.100.7, 10.0.0.2", "198.51.100.7"},
      {"client-written entries left of the client are ignored", "10.0.0.1",
       "6.6.6.6, 1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"},
      {"client forging a trusted address only reaches itself", "10.0.0.1", "10.9.9.9, 198.51.100.7",
       "198.51.100.7"},
      {"loopback proxy by /32", "127.0.0.1", "198.51.100.7", "198.51.100.7"},
      {"127.0.0.2 is not trusted", "127.0.0.2", "198.51.100.7", "127.0.0.2"},
      {"all hops trusted: the leftmost", "10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"},
      {"malformed entry stops at the last trusted hop", "10.0.0.1", "198.51.100.7, bogus, 10.0.0.2",
       "10.0.0.2"},
      {"malformed rightmost: the peer", "10.0.0.1", "198.51.100.7, not-an-ip", "10.0.0.1"},
      {"empty element is malformed", "10.0.0.1", "198.51.100.7,,10.0.0.2", "10.0.0.2"},
      {"empty header: the peer", "10.0.0.1", "", "10.0.0.1"},
      {"whitespace and tabs are trimmed", "10.0.0.1", " 198.51.100.7 ,\t10.0.0.2\t", "198.51.100.7"},
      {"IPv4 with port", "10.0.0.1", "198.51.100.7:5555", "198.51.100.7"},
      {"bad port is malformed", "10.0.0.1", "198.51.100.7:55x", "10.0.0.1"},
      {"IPv6 client behind IPv4 proxy", "10.0.0.1", "2001:DB8::5", "2001:db8::5"},
      {"bracketed IPv6 with port", "10.0.0.1", "[2001:db8::5]:443", "2001:db8::5"},
      {"IPv6 trusted proxy range", "2001:db8:ffff::1", "2001:db8:ffff:1::2, 2001:db8::5", "2001:db8::5"},
      {"IPv6 chain through two trusted proxies", "2001:db8:ffff::1", "192.0.2.44, 2001:db8:ffff::9",
       "192.0.2.44"},
      {"IPv6 peer outside the range is not trusted", "2001:db8:fffe::1", "192.0.2.44", "2001:db8:fffe::1"},
      {"dual-stack mapped peer matches an IPv4 range", "::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"},
      {"mapped untrusted peer is reported as IPv4", "::ffff:203.0.113.9", "1.2.3.4", "203.0.113.9"},
      {"mapped client address is canonicalised", "10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"},
      {"non-IP peer returned as is", "unix:/run/fairdraw.sock", "1.2.3.4", "unix:/run/fairdraw.sock"},
  };
  auto parsed = TrustedProxies::parse(trusted);
  ASSERT_TRUE(parsed.ok());
  for (const auto& c : cases) {
    EXPECT_EQ(client_address(c.peer, c.xff, trusted), c.expected) << c.name;
    EXPECT_EQ(client_address(c.peer, c.xff, *parsed), c.expected) << c.name;
  }
}

TEST(ClientAddressTest, NoTrustedProxiesMeansHeaderIgnored) {
  EXPECT_EQ(client_address("10.0.0.1", "1.2.3.4", std::vector<std::string>{}), "10.0.0.1");
  // The convenience form drops entries it cannot parse instead of trusting more.
  EXPECT_EQ(client_address("10.0.0.1", "1.2.3.4", std::vector<std::string>{"10.0.0.0/99", "junk"}),
            "10.0.0.1");
}

TEST(ClientAddressTest, LongChainOfTrustedHopsIsWalked) {
  std::string xff = "198.51.100.7";
  for (int i = 0; i < 2000; ++i) xff += ", 10.0.0.5";
  EXPECT_EQ(client_address("10.0.0.1", xff, std::vector<std::string>{"10.0.0.0/8"}), "198.51.100.7");
}

TEST(AddressRateKeyTest, GroupsIpv6By64) {
  EXPECT_EQ(address_rate_key("198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(address_rate_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_rate_key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
  EXPECT_NE(address_rate_key("2001:db8:1:3::1"), address_rate_key("2001:db8:1:2::1"));
  EXPECT_EQ(address_rate_key("::ffff:198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(address_rate_key("unix:/x"), "unix:/x");
}

}  // namespace
}  // namespace fairdraw::app
