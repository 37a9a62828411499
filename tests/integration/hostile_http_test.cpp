// Hostile clients against the real binary: slowloris, slow body, slow reader,
// a pipelining flood, thousands of idle connections, max_connections and the
// per-address cap, unknown methods. During each attack two honest clients keep
// drawing; their latency is bounded (FAIRDRAW_HOSTILE_P99_MS, default 500 ms)
// and printed as "[hostile] ..." lines (also appended to $FAIRDRAW_HOSTILE_REPORT).
// FAIRDRAW_HOSTILE_DEBUG=1 also prints every honest draw over 300 ms (and, for
// the slow reader, the server's request counts).
//
// Attack connections come from 127.0.0.2 and up (each octet is its own client
// address for the server), the honest clients from 127.0.0.1. The transport is
// the same in both modes, so these run in the embedded run only.
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "hostile_support.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using namespace hostile;

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (clustered_run()) GTEST_SKIP() << "transport attacks: the HTTP layer is the same in both modes";
    fd_limit_ = raise_fd_limit();
  }
  // At most `want` connections, so that the test and the server each stay within their descriptors.
  std::size_t fit(std::size_t want) const {
    return fd_limit_ > 400 ? std::min(want, fd_limit_ - 300) : std::min<std::size_t>(want, 100);
  }
  // SQLite without fsync per batch: the attacks are on the transport, not the disk.
  static json config(json overrides = json::object()) {
    json c = hostile_config({{"database", {{"synchronous", "normal"}}}});
    c.merge_patch(overrides);
    return c;
  }
  std::size_t fd_limit_ = 0;
};

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// ASan keeps freed memory in a quarantine (256 MiB by default), which would
// show as RSS growth; a small one keeps the memory checks meaningful.
std::map<std::string, std::string> small_quarantine_env() {
  const char* current = std::getenv("ASAN_OPTIONS");
  std::string options = current != nullptr ? current : "";
  if (!options.empty()) options += ":";
  return {{"ASAN_OPTIONS", options + "quarantine_size_mb=16"}};
}

std::string rss_note(const FairdrawServer& server) {
  return "server_rss=" + std::to_string(rss_kib(server.pid()) / 1024) + "MiB";
}

// A fresh connection from 127.0.0.1 is served promptly in the middle of an attack.
::testing::AssertionResult fresh_client_served(std::uint16_t port) {
  HttpClient fresh(port, 5000ms);
  const auto started = std::chrono::steady_clock::now();
  const HttpResponse r = fresh.get("/healthz");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  if (r.status != 200) return ::testing::AssertionFailure() << "fresh client: " << r.describe();
  if (ms.count() > static_cast<long>(p99_bound_ms()) * 2) {
    return ::testing::AssertionFailure() << "fresh client waited " << ms.count() << " ms";
  }
  return ::testing::AssertionSuccess();
}

TEST_F(HostileTest, BaselineHonestLatency) {
  FairdrawServer server(config());
  ASSERT_TRUE(server.start());
  HonestLoad honest(server.port(), "honest");
  std::this_thread::sleep_for(2s);
  const LatencyStats stats = honest.stop();
  report("baseline (no attack)", stats, rss_note(server));
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// Trickles `trickle` one byte per connection every 100 ms for `duration`, after `head`.
// Returns how many connections the server answered with `status_line` before closing.
struct TrickleResult {
  std::size_t closed = 0;
  std::size_t answered = 0;
  std::size_t other = 0;
  std::string sample;
};

TrickleResult trickle_attack(std::vector<RawConn>& conns, std::string_view head, std::string_view trickle,
                             std::chrono::milliseconds duration, std::uint16_t port, std::string_view status_line) {
  for (auto& c : conns) c.send_some(head);
  const auto end = std::chrono::steady_clock::now() + duration;
  bool probed = false;
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; std::chrono::steady_clock::now() < end; ++i) {
    const std::string byte(1, trickle[i % trickle.size()]);
    for (auto& c : conns) {
      if (!c.poll_closed()) c.send_some(byte);
    }
    if (!probed && std::chrono::steady_clock::now() - started > 1s) {
      probed = true;
      EXPECT_TRUE(fresh_client_served(port)) << "during the attack";
    }
    std::this_thread::sleep_for(100ms);
  }
  // Every attack connection is answered and closed by the server (read timeout + slack).
  wait_until(
      [&] {
        return std::all_of(conns.begin(), conns.end(), [](RawConn& c) { return c.poll_closed(); });
      },
      8s);
  TrickleResult r;
  for (auto& c : conns) {
    if (!c.closed_by_peer()) continue;
    ++r.closed;
    if (starts_with(c.received(), status_line)) {
      ++r.answered;
    } else if (!c.received().empty()) {
      ++r.other;
      if (r.sample.empty()) r.sample = c.received().substr(0, 300);
    }
  }
  return r;
}

TEST_F(HostileTest, SlowlorisHeadersByteByByteGet408WhileHonestClientsDraw) {
  FairdrawServer server(config({{"http", {{"read_timeout_ms", 2000}, {"request_timeout_ms", 1000}}}}));
  ASSERT_TRUE(server.start());
  const std::size_t n = fit(1000);
  HonestLoad honest(server.port(), "honest");
  auto conns = open_many(server.port(), n, 2, 200);
  ASSERT_GE(conns.size(), n * 9 / 10) << "could not open the attack connections";
  // 3.5 s of one header byte every 100 ms per connection: past the 2 s read timeout,
  // which is absolute for the first request, so trickling does not extend it.
  const TrickleResult r = trickle_attack(conns, "GET /activities HTTP/1.1\r\nHost: x\r\n",
                                         "X-Slow: abcdefghijklmnopqrstuvwxyz\r\n", 3500ms, server.port(),
                                         "HTTP/1.1 408");
  const LatencyStats stats = honest.stop();
  const auto timeouts = state_metric(server.port(), "read_timeouts");
  report("slowloris (" + std::to_string(conns.size()) + " conns)", stats,
         "closed=" + std::to_string(r.closed) + " got408=" + std::to_string(r.answered) + " " + rss_note(server));
  EXPECT_EQ(r.closed, conns.size()) << "attack connections still open after the read timeout";
  EXPECT_EQ(r.other, 0u) << "unexpected answer: " << r.sample;
  ASSERT_TRUE(timeouts.has_value());
  EXPECT_GE(*timeouts, static_cast<double>(conns.size()) * 0.9);
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

TEST_F(HostileTest, SlowBodyGets408WhileHonestClientsDraw) {
  FairdrawServer server(config({{"http", {{"read_timeout_ms", 2000}, {"request_timeout_ms", 1000}}}}));
  ASSERT_TRUE(server.start());
  const std::size_t n = fit(500);
  HonestLoad honest(server.port(), "honest");
  auto conns = open_many(server.port(), n, 2, 200);
  ASSERT_GE(conns.size(), n * 9 / 10);
  const TrickleResult r = trickle_attack(
      conns,
      "POST /draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
      "{\"activity_id\":\"honest\",\"user_id\":\"",
      "slow", 3500ms, server.port(), "HTTP/1.1 408");
  const LatencyStats stats = honest.stop();
  const auto timeouts = state_metric(server.port(), "read_timeouts");
  report("slow body (" + std::to_string(conns.size()) + " conns)", stats,
         "closed=" + std::to_string(r.closed) + " got408=" + std::to_string(r.answered) + " " + rss_note(server));
  EXPECT_EQ(r.closed, conns.size());
  EXPECT_EQ(r.other, 0u) << "unexpected answer: " << r.sample;
  ASSERT_TRUE(timeouts.has_value());
  EXPECT_GE(*timeouts, static_cast<double>(conns.size()) * 0.9);
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// Clients that pipeline requests and never read: the server answers one request
// at a time and reads no further while a response is unsent, so each such client
// can only fill the socket buffers; the write timeout then closes it.
TEST_F(HostileTest, SlowReaderIsCutOffByTheWriteTimeoutAndCannotQueueWork) {
  // Until the socket buffers are full (a few MiB per connection) the server
  // does answer; that work is what each reader costs, so a few readers suffice.
  FairdrawServer server(config({{"http", {{"write_timeout_ms", 1000}}}}), small_quarantine_env());
  ASSERT_TRUE(server.start());
  const std::size_t rss_before = rss_kib(server.pid());
  constexpr std::size_t kReaders = 4;
  HonestLoad honest(server.port(), "honest");
  std::vector<RawConn> conns;
  for (std::size_t i = 0; i < kReaders; ++i) {
    RawConn c;
    ASSERT_TRUE(c.connect(server.port(), 2, 4096));
    conns.push_back(std::move(c));
  }
  std::string burst;
  for (int i = 0; i < 100; ++i) burst += "GET /activities HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<std::size_t> sent(kReaders, 0);
  const auto end = std::chrono::steady_clock::now() + 4s;
  bool probed = false;
  const auto started = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < end) {
    for (std::size_t i = 0; i < kReaders; ++i) {
      const long n = conns[i].send_some(burst);
      if (n > 0) sent[i] += static_cast<std::size_t>(n);
    }
    if (!probed && std::chrono::steady_clock::now() - started > 2s) {
      probed = true;
      EXPECT_TRUE(fresh_client_served(server.port())) << "during the attack";
    }
    std::this_thread::sleep_for(5ms);
  }
  const bool cut_off = wait_until(
      [&] {
        const auto t = state_metric(server.port(), "write_timeouts");
        return t && *t >= static_cast<double>(kReaders);
      },
      30s);
  const LatencyStats stats = honest.stop();
  if (std::getenv("FAIRDRAW_HOSTILE_DEBUG") != nullptr) {
    HttpClient m(server.port(), 5000ms);
    const std::string text = m.get("/metrics").body;
    for (std::size_t pos = 0; (pos = text.find("fairdraw_http_requests_total{", pos)) != std::string::npos; ++pos) {
      std::printf("%s\n", text.substr(pos, text.find('\n', pos) - pos).c_str());
    }
  }
  std::size_t total_sent = 0;
  for (std::size_t s : sent) total_sent += s;
  const std::size_t rss_after = rss_kib(server.pid());
  report("slow read (" + std::to_string(kReaders) + " pipelining conns)", stats,
         "sent=" + std::to_string(total_sent / 1024) + "KiB " + rss_note(server));
  EXPECT_TRUE(cut_off) << "write_timeouts=" << state_metric(server.port(), "write_timeouts").value_or(-1);
  // Backpressure: what a non-reading client can push is bounded by the kernel's
  // socket buffers (tens of MiB at most), not by the attack's length.
  EXPECT_LT(total_sent, std::size_t{128} << 20);
  for (auto& c : conns) {
    std::string ignored;
    EXPECT_TRUE(wait_until([&] { return c.recv_some(ignored) < 0; }, 5s)) << "a slow reader is still connected";
  }
  EXPECT_LT(rss_after, rss_before + (std::size_t{256} << 10)) << "RSS grew from " << rss_before << " to "
                                                                << rss_after << " KiB";
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// One connection pipelines thousands of requests while reading: every one is
// answered, in order, and the server's memory does not grow with the backlog.
TEST_F(HostileTest, PipeliningFloodIsAnsweredInOrderWithBoundedMemory) {
  FairdrawServer server(config(), small_quarantine_env());
  ASSERT_TRUE(server.start());
  const std::size_t rss_before = rss_kib(server.pid());
  HonestLoad honest(server.port(), "honest");
  // At least 20000 requests and at least 2.5 s of flooding, made up as they go out.
  constexpr std::size_t kMinRequests = 20000;
  const auto flood_for = 2500ms;
  std::string requests;
  std::size_t made = 0;
  bool flooding = true;
  auto make_more = [&] {
    for (int i = 0; i < 1000; ++i, ++made) {
      requests += "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: flood-" + std::to_string(made) + "\r\n\r\n";
    }
  };
  RawConn c;
  ASSERT_TRUE(c.connect(server.port(), 2));
  std::size_t offset = 0;
  std::size_t answered = 0;
  std::size_t out_of_order = 0;
  std::size_t not_ok = 0;
  std::string in;
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + 60s;
  while ((flooding || answered < made) && std::chrono::steady_clock::now() < deadline) {
    if (flooding && offset == requests.size()) {
      flooding = made < kMinRequests || std::chrono::steady_clock::now() - started < flood_for;
      if (flooding) {
        requests.erase(0, offset);
        offset = 0;
        make_more();
      }
    }
    pollfd p{c.fd(), static_cast<short>(POLLIN | (offset < requests.size() ? POLLOUT : 0)), 0};
    ::poll(&p, 1, 100);
    if (offset < requests.size()) {
      const long n = c.send_some(std::string_view(requests).substr(offset, 65536));
      if (n > 0) offset += static_cast<std::size_t>(n);
    }
    if (c.recv_some(in) < 0 && in.empty()) break;
    // Parse the complete responses received so far.
    std::size_t pos = 0;
    for (;;) {
      const std::size_t head_end = in.find("\r\n\r\n", pos);
      if (head_end == std::string::npos) break;
      const std::string_view head(in.data() + pos, head_end - pos);
      std::size_t length = 0;
      if (const std::size_t cl = head.find("Content-Length: "); cl != std::string_view::npos) {
        std::from_chars(head.data() + cl + 16, head.data() + head.size(), length);
      }
      if (in.size() < head_end + 4 + length) break;
      if (!starts_with(std::string(head.substr(0, 12)), "HTTP/1.1 200")) ++not_ok;
      const std::string expected = "X-Request-Id: flood-" + std::to_string(answered) + "\r\n";
      if (std::string(head).append("\r\n").find(expected) == std::string::npos) ++out_of_order;
      ++answered;
      pos = head_end + 4 + length;
    }
    in.erase(0, pos);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const LatencyStats stats = honest.stop();
  const std::size_t rss_after = rss_kib(server.pid());
  report("pipelining flood (1 conn)", stats,
         std::to_string(answered) + " answered in " + std::to_string(static_cast<int>(seconds * 1000)) + "ms " +
             rss_note(server));
  EXPECT_GE(answered, kMinRequests);
  EXPECT_EQ(answered, made) << "not every pipelined request was answered";
  EXPECT_EQ(not_ok, 0u);
  EXPECT_EQ(out_of_order, 0u) << "responses out of request order";
  EXPECT_LT(rss_after, rss_before + (std::size_t{128} << 10));
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// Thousands of connections that go quiet: those that never send are closed at
// the read timeout (the first request's deadline), kept-alive ones at the idle
// timeout; none gets a response it did not ask for.
TEST_F(HostileTest, ThousandsOfIdleConnectionsAreReaped) {
  FairdrawServer server(config(
      {{"http", {{"read_timeout_ms", 1500}, {"idle_timeout_ms", 1000}, {"request_timeout_ms", 1000}}}}));
  ASSERT_TRUE(server.start());
  const std::size_t n = fit(2000);
  HonestLoad honest(server.port(), "honest");
  auto silent = open_many(server.port(), n / 2, 2, 200);
  auto kept = open_many(server.port(), n / 2, 20, 200);
  ASSERT_GE(silent.size() + kept.size(), n * 9 / 10);
  for (auto& c : kept) c.send_some("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  // During: a fresh client is served while thousands of connections sit idle.
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(fresh_client_served(server.port()));
  const auto open_during = state_metric(server.port(), "open_connections");
  const auto all_closed = [](std::vector<RawConn>& v) {
    return std::all_of(v.begin(), v.end(), [](RawConn& c) { return c.poll_closed(); });
  };
  const bool reaped = wait_until([&] { return all_closed(silent) && all_closed(kept); }, 10s);
  const LatencyStats stats = honest.stop();
  std::size_t silent_answered = 0;
  std::size_t kept_ok = 0;
  for (auto& c : silent) silent_answered += c.received().empty() ? 0 : 1;
  for (auto& c : kept) kept_ok += starts_with(c.received(), "HTTP/1.1 200") ? 1 : 0;
  const auto idle = state_metric(server.port(), "idle_timeouts");
  const auto open_after = state_metric(server.port(), "open_connections");
  report("idle (" + std::to_string(silent.size() + kept.size()) + " conns)", stats,
         "open_during=" + std::to_string(static_cast<long>(open_during.value_or(-1))) +
             " open_after=" + std::to_string(static_cast<long>(open_after.value_or(-1))) + " " + rss_note(server));
  EXPECT_TRUE(reaped) << "idle connections still open";
  EXPECT_GE(open_during.value_or(0), static_cast<double>(silent.size() + kept.size()) * 0.5);
  EXPECT_EQ(silent_answered, 0u) << "silent connections must be closed without a response";
  EXPECT_EQ(kept_ok, kept.size());
  ASSERT_TRUE(idle.has_value());
  EXPECT_GE(*idle, static_cast<double>(silent.size() + kept.size()) * 0.95);
  ASSERT_TRUE(open_after.has_value());
  EXPECT_LE(*open_after, 4.0);  // the scraper, perhaps a closing honest connection
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// Past http.max_connections new connections get a short 503 (with Retry-After)
// and are closed at once, while the connections already open keep being served.
TEST_F(HostileTest, PastMaxConnectionsNewOnesAreRefusedWhileOpenOnesAreServed) {
  constexpr std::size_t kMax = 300;
  FairdrawServer server(config({{"http", {{"max_connections", kMax}}}}));
  ASSERT_TRUE(server.start());
  HonestLoad honest(server.port(), "honest");  // connects first: its 2 connections are among the open
  std::this_thread::sleep_for(300ms);
  const std::size_t n = fit(2 * kMax);
  auto conns = open_many(server.port(), n, 2, 100);
  ASSERT_GE(conns.size(), n * 9 / 10);
  std::this_thread::sleep_for(1500ms);
  std::size_t refused = 0;
  std::size_t refused_503 = 0;
  std::size_t still_open = 0;
  for (auto& c : conns) {
    if (!c.poll_closed()) {
      ++still_open;
      continue;
    }
    ++refused;
    const std::string& r = c.received();
    if (starts_with(r, "HTTP/1.1 503") && r.find("Retry-After: ") != std::string::npos) ++refused_503;
  }
  // The attack connections that got in are still served.
  std::size_t served = 0;
  for (auto& c : conns) {
    if (c.closed_by_peer() || served >= 5) continue;
    std::string in;
    c.send_some("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_until([&] { return c.recv_some(in) < 0 || in.find("\r\n\r\n") != std::string::npos; }, 3s);
    if (starts_with(in, "HTTP/1.1 200")) ++served;
  }
  const LatencyStats stats = honest.stop();
  for (auto& c : conns) c.close();
  // Once they are gone, new connections are accepted again.
  const bool accepted_again = wait_until([&] { return state_metric(server.port(), "open_connections").has_value(); }, 5s);
  const auto refused_metric = state_metric(server.port(), "refused_connections");
  report("past max_connections (" + std::to_string(conns.size()) + " conns, max " + std::to_string(kMax) + ")",
         stats, "refused=" + std::to_string(refused) + " " + rss_note(server));
  EXPECT_LE(still_open, kMax);
  EXPECT_GE(refused, conns.size() - kMax);
  EXPECT_EQ(refused_503, refused) << "every refused connection gets a 503 with Retry-After";
  EXPECT_EQ(served, 5u);
  EXPECT_TRUE(accepted_again);
  EXPECT_GE(refused_metric.value_or(0), static_cast<double>(refused));
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// http.max_connections_per_address: one address cannot take every slot.
TEST_F(HostileTest, PerAddressConnectionCap) {
  constexpr std::size_t kCap = 20;
  FairdrawServer server(config({{"http", {{"max_connections_per_address", kCap}}}}));
  ASSERT_TRUE(server.start());
  HonestLoad honest(server.port(), "honest");
  auto ask = [](RawConn& c) {
    std::string in;
    c.send_some("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_until([&] { return c.recv_some(in) < 0 || in.find("\r\n\r\n") != std::string::npos; }, 3s);
    return in.substr(0, 12);
  };
  std::vector<RawConn> first(kCap);
  for (auto& c : first) {
    ASSERT_TRUE(c.connect(server.port(), 2));
    ASSERT_EQ(ask(c), "HTTP/1.1 200");
  }
  // More from the same address: a 503 and closed.
  std::vector<RawConn> over(10);
  for (auto& c : over) {
    ASSERT_TRUE(c.connect(server.port(), 2));
    EXPECT_TRUE(wait_until([&] { return c.poll_closed(); }, 3s)) << "over the cap but still open";
    EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 503")) << c.received();
  }
  // Another address is not affected.
  std::vector<RawConn> other(kCap);
  for (auto& c : other) {
    ASSERT_TRUE(c.connect(server.port(), 3));
    EXPECT_EQ(ask(c), "HTTP/1.1 200");
  }
  // The ones already open are still served.
  EXPECT_EQ(ask(first[0]), "HTTP/1.1 200");
  // Slots come back when connections close.
  for (std::size_t i = 0; i < 5; ++i) first[i].close();
  std::size_t readmitted = 0;
  for (int i = 0; i < 5; ++i) {
    RawConn c;
    const bool ok = wait_until([&] { return c.connect(server.port(), 2) && ask(c) == "HTTP/1.1 200"; }, 3s);
    if (ok) ++readmitted;
    first[static_cast<std::size_t>(i)] = std::move(c);
  }
  const LatencyStats stats = honest.stop();
  const auto metric = state_metric(server.port(), "refused_per_address_connections");
  report("per-address cap (" + std::to_string(kCap) + ")", stats, "refused=" + std::to_string(static_cast<long>(metric.value_or(-1))));
  EXPECT_EQ(readmitted, 5u);
  ASSERT_TRUE(metric.has_value());
  EXPECT_GE(*metric, 10.0);
  EXPECT_TRUE(honest_kept_up(stats, 20));
}

// Unknown or unsupported methods on known paths: 405 with Allow; metrics count
// them under the method label OTHER, so made-up methods create no new series.
TEST_F(HostileTest, UnknownMethodsGet405WithAllowAndOneMetricLabel) {
  FairdrawServer server(config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client(3000ms);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"BREW", "/draw"}, {"PROPFIND", "/activities"}, {"TRACE", "/activities/honest"},
      {"PATCH", "/draw"}, {"XYZZY", "/healthz"},      {"GET", "/draw"},
  };
  for (const auto& [method, target] : cases) {
    const HttpResponse r = c.request(method, target);
    EXPECT_TRUE(is_problem(r, 405, "method_not_allowed")) << method << " " << target << ": " << r.describe();
    const auto allow = r.header("allow");
    ASSERT_TRUE(allow.has_value()) << method << " " << target;
    EXPECT_EQ(allow->find(method), std::string::npos) << "Allow lists the refused method: " << *allow;
    if (target == "/draw") {
      EXPECT_NE(allow->find("POST"), std::string::npos) << *allow;
    }
    if (!c.is_open()) c.connect();
  }
  const HttpResponse unknown_path = c.request("BREW", "/coffee");
  EXPECT_TRUE(is_problem(unknown_path, 404, "not_found")) << unknown_path.describe();
  const HttpResponse metrics = c.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("method=\"OTHER\""), std::string::npos);
  for (const char* made_up : {"BREW", "PROPFIND", "XYZZY", "TRACE"}) {
    EXPECT_EQ(metrics.body.find(std::string("method=\"") + made_up + "\""), std::string::npos) << made_up;
  }
}

}  // namespace
}  // namespace fairdraw::test
