// The HTTP server over real loopback sockets: keep-alive, pipelining, limits,
// timeouts, the connection cap, graceful shutdown and timers.
#include "fairdraw/http/server.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "raw_client.hpp"

namespace fairdraw::http {
namespace {

using namespace std::chrono_literals;
using test::RawClient;
using test::RawResponse;

Response text(int status, std::string body) {
  Response r;
  r.status = status;
  r.set_header("Content-Type", "text/plain");
  r.body = std::move(body);
  return r;
}

ServerOptions test_options() {
  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.max_header_bytes = 2048;
  o.max_body_bytes = 1024;
  o.read_timeout = 2000ms;
  o.idle_timeout = 5000ms;
  o.write_timeout = 2000ms;
  o.shutdown_grace = 3000ms;
  return o;
}

// A Server running on its own thread with a toy Handler:
//   /slow   answers "slow" from another thread after 200 ms
//   /never  drops the Responder uncalled
//   /twice  answers twice
//   /throw  throws
//   /id     answers the request id
//   other   echoes "METHOD target\nbody"
class TestServer {
 public:
  explicit TestServer(ServerOptions options = test_options()) {
    server_ = std::make_unique<Server>(std::move(options), [this](Request&& req, Responder respond) {
      handle(std::move(req), std::move(respond));
    });
    const Status listening = server_->listen();
    EXPECT_TRUE(listening.ok()) << (listening.ok() ? "" : listening.error().detail);
    auto done = std::make_shared<std::promise<void>>();
    run_returned_ = done->get_future();
    runner_ = std::thread([this, done] {
      server_->run([this] { stopping_calls_.fetch_add(1); });
      done->set_value();
    });
  }

  ~TestServer() {
    stop();
    server_.reset();
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  void stop() {
    if (runner_.joinable()) {
      server_->shutdown();
      runner_.join();
    }
    std::lock_guard lock(mu_);
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  bool run_returned_within(std::chrono::milliseconds d) {
    return run_returned_.wait_for(d) == std::future_status::ready;
  }

  Server& server() { return *server_; }
  std::uint16_t port() const { return server_->port(); }
  int stopping_calls() const { return stopping_calls_.load(); }

  Request last_request() {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  void handle(Request&& req, Responder respond) {
    {
      std::lock_guard lock(mu_);
      last_ = req;
    }
    if (req.path == "/slow") {
      std::lock_guard lock(mu_);
      workers_.emplace_back([respond] {
        std::this_thread::sleep_for(200ms);
        respond(text(200, "slow"));
      });
      return;
    }
    if (req.path == "/never") return;
    if (req.path == "/twice") {
      respond(text(200, "first"));
      respond(text(200, "second"));
      return;
    }
    if (req.path == "/throw") throw std::runtime_error("boom");
    if (req.path == "/id") return respond(text(200, req.request_id));
    respond(text(200, req.method + " " + req.target + "\n" + req.body));
  }

  std::unique_ptr<Server> server_;
  std::thread runner_;
  std::future<void> run_returned_;
  std::atomic<int> stopping_calls_{0};
  std::mutex mu_;
  std::vector<std::thread> workers_;
  Request last_;
};

std::string get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra_headers) + "\r\n";
}

std::string post(std::string_view target, std::string_view body) {
  return "POST " + std::string(target) + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

bool is_hex16(const std::string& s) {
  return s.size() == 16 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// A problem+json answer of the given status and type, after which the server closes.
void expect_problem_and_close(RawClient& c, int status, std::string_view type) {
  auto r = c.read_response();
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status);
  EXPECT_EQ(r->header("content-type"), "application/problem+json");
  EXPECT_NE(r->body.find("\"type\":\"" + std::string(type) + "\""), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("\"status\":" + std::to_string(status)), std::string::npos) << r->body;
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(r->header("x-request-id"));
  EXPECT_TRUE(c.wait_closed());
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 2000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

TEST(HttpServer, KeepAliveServesSequentialRequests) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(get("/echo?x=1")));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r1->body, "GET /echo?x=1\n");
  EXPECT_EQ(r1->header("server"), "fairdraw");
  EXPECT_EQ(r1->header("content-length"), "14");
  EXPECT_FALSE(r1->header("connection"));

  ASSERT_TRUE(c.send(post("/echo", "hello")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "POST /echo\nhello");
  EXPECT_EQ(s.server().stats().accepted_connections, 1U);
}

TEST(HttpServer, BuildsRequestFields) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/a/b?x=1&y=%20z", "X-Custom-Thing:   value  \r\n")));
  ASSERT_TRUE(c.read_response());
  const Request req = s.last_request();
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/a/b?x=1&y=%20z");
  EXPECT_EQ(req.path, "/a/b");
  EXPECT_EQ(req.query, "x=1&y=%20z");
  EXPECT_EQ(req.query_param("y"), " z");
  EXPECT_EQ(req.remote_addr, "127.0.0.1");
  EXPECT_TRUE(req.keep_alive);
  bool found = false;
  for (const auto& [name, value] : req.headers) {
    if (name == "x-custom-thing") found = value == "value";
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(req.header("X-CUSTOM-THING"), "value");
}

// The connection reuses its Request (and its strings) from one request to the
// next: nothing of the first may show in the second.
TEST(HttpServer, KeepAliveRequestsShareNoFields) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(post("/first?q=1", "a body")));
  ASSERT_TRUE(c.read_response());
  ASSERT_TRUE(c.send(get("/second", "X-A: 1\r\nX-B: 2\r\nX-Request-Id: first-id\r\n")));
  ASSERT_TRUE(c.read_response());
  ASSERT_TRUE(c.send(get("/third")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /third\n");
  EXPECT_NE(r->header("x-request-id"), "first-id");
  const Request req = s.last_request();
  EXPECT_EQ(req.path, "/third");
  EXPECT_TRUE(req.query.empty());
  EXPECT_TRUE(req.body.empty());
  EXPECT_FALSE(req.header("x-a"));
  EXPECT_FALSE(req.header("content-length"));
  ASSERT_EQ(req.headers.size(), 1U);
  EXPECT_EQ(req.headers[0].first, "host");
  EXPECT_NE(req.request_id, "first-id");
}

TEST(HttpServer, ConstantContentTypeIsWritten) {
  ServerOptions o = test_options();
  Server server(o, [](Request&&, Responder respond) {
    Response r;
    r.content_type = "application/json";
    r.headers.emplace_back("X-After", "1");
    r.body = "{}";
    respond(std::move(r));
  });
  ASSERT_TRUE(server.listen().ok());
  std::thread runner([&server] { server.run(); });
  {
    RawClient c(server.port());
    ASSERT_TRUE(c.send(get("/")));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("content-type"), "application/json");
    EXPECT_EQ(r->header("x-after"), "1");
    EXPECT_EQ(r->body, "{}");
  }
  server.shutdown();
  runner.join();
}

TEST(HttpServer, ChunkedBodyIsDecoded) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /echo\nhello world");
}

TEST(HttpServer, PipelinedRequestsAnsweredInOrder) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/echo?n=1") + post("/echo?n=2", "two") + get("/echo?n=3")));
  for (const char* expected : {"GET /echo?n=1\n", "POST /echo?n=2\ntwo", "GET /echo?n=3\n"}) {
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, expected);
  }
}

TEST(HttpServer, PipelinedRequestsWaitForASlowFirst) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/slow") + get("/echo?n=2") + get("/echo?n=3")));
  for (const char* expected : {"slow", "GET /echo?n=2\n", "GET /echo?n=3\n"}) {
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, expected);
  }
}

TEST(HttpServer, RequestIdEchoedOrGenerated) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/id", "X-Request-Id: abc-123\r\n")));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->header("x-request-id"), "abc-123");
  EXPECT_EQ(r1->body, "abc-123");

  ASSERT_TRUE(c.send(get("/id")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_TRUE(is_hex16(r2->body)) << r2->body;
  EXPECT_EQ(r2->header("x-request-id"), r2->body);

  ASSERT_TRUE(c.send(get("/id", "X-Request-Id: " + std::string(129, 'a') + "\r\n")));
  auto r3 = c.read_response();
  ASSERT_TRUE(r3);
  EXPECT_TRUE(is_hex16(r3->body)) << r3->body;
  EXPECT_NE(r3->body, r2->body);
}

TEST(HttpServer, HeadersOverLimitGet431) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/echo", "X-Big: " + std::string(3000, 'a') + "\r\n")));
  expect_problem_and_close(c, 431, "headers_too_large");
  EXPECT_EQ(s.server().stats().headers_too_large, 1U);
}

TEST(HttpServer, ManySmallHeadersOverLimitGet431) {
  TestServer s;
  RawClient c(s.port());
  std::string headers;
  for (int i = 0; i < 100; ++i) headers += "X-H" + std::to_string(i) + ": " + std::string(30, 'v') + "\r\n";
  ASSERT_TRUE(c.send(get("/echo", headers)));
  expect_problem_and_close(c, 431, "headers_too_large");
}

TEST(HttpServer, RequestLineOverLimitGets414) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/" + std::string(3000, 'a'))));
  expect_problem_and_close(c, 414, "uri_too_long");
  EXPECT_EQ(s.server().stats().uri_too_long, 1U);
}

TEST(HttpServer, RequestLineOverLimitSentInPiecesGets414) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send("GET /" + std::string(1000, 'a')));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.send(std::string(2000, 'a')));
  expect_problem_and_close(c, 414, "uri_too_long");
}

TEST(HttpServer, ContentLengthOverLimitGets413BeforeTheBody) {
  TestServer s;
  RawClient c(s.port());
  // The body is never sent: the answer must come from the header alone.
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"));
  expect_problem_and_close(c, 413, "payload_too_large");
  EXPECT_EQ(s.server().stats().payload_too_large, 1U);
}

TEST(HttpServer, ChunkedBodyOverLimitGets413) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "800\r\n" + std::string(2048, 'x') + "\r\n0\r\n\r\n"));
  expect_problem_and_close(c, 413, "payload_too_large");
}

TEST(HttpServer, ExpectContinueGets100ThenTheAnswer) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  auto interim = c.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.send("hello"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /echo\nhello");
}

TEST(HttpServer, SmugglingShapesGet400) {
  TestServer s;
  const std::vector<std::string> bad = {
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nhello",
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      "HELLO\r\n\r\n",
      "GET /echo HTTP/2.0\r\nHost: t\r\n\r\n",
      // Found by fuzz_http_request: Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 6.1).
      "POST /echo HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
  };
  for (const auto& bytes : bad) {
    SCOPED_TRACE(bytes);
    RawClient c(s.port());
    ASSERT_TRUE(c.send(bytes));
    expect_problem_and_close(c, 400, "invalid_request");
  }
  EXPECT_EQ(s.server().stats().bad_requests, bad.size());
}

TEST(HttpServer, HalfSentRequestGets408AfterReadTimeout) {
  ServerOptions o = test_options();
  o.read_timeout = 300ms;
  TestServer s(o);
  RawClient c(s.port());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhal"));
  expect_problem_and_close(c, 408, "request_timeout");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 2000ms);
  EXPECT_EQ(s.server().stats().read_timeouts, 1U);
}

TEST(HttpServer, HalfSentHeaderOnKeepAliveGets408) {
  ServerOptions o = test_options();
  o.read_timeout = 300ms;
  TestServer s(o);
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/echo")));
  ASSERT_TRUE(c.read_response());
  ASSERT_TRUE(c.send("GET /echo HTTP/1.1\r\nHost:"));
  expect_problem_and_close(c, 408, "request_timeout");
}

TEST(HttpServer, IdleKeepAliveConnectionClosedSilently) {
  ServerOptions o = test_options();
  o.read_timeout = 300ms;
  o.idle_timeout = 400ms;
  TestServer s(o);
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/echo")));
  ASSERT_TRUE(c.read_response());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.wait_closed());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 2000ms);
  EXPECT_TRUE(c.pending().empty());
  EXPECT_TRUE(eventually([&] { return s.server().stats().idle_timeouts == 1; }));
  EXPECT_TRUE(eventually([&] { return s.server().stats().open_connections == 0; }));
}

TEST(HttpServer, ConnectionsOverLimitGet503) {
  ServerOptions o = test_options();
  o.max_connections = 2;
  TestServer s(o);
  RawClient c1(s.port());
  RawClient c2(s.port());
  for (RawClient* c : {&c1, &c2}) {
    ASSERT_TRUE(c->send(get("/echo")));
    ASSERT_TRUE(c->read_response());
  }
  RawClient c3(s.port());
  ASSERT_TRUE(c3.connected());
  auto r = c3.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->header("retry-after"), "1");
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_NE(r->body.find("\"type\":\"unavailable\""), std::string::npos);
  EXPECT_TRUE(c3.wait_closed());

  for (RawClient* c : {&c1, &c2}) {
    ASSERT_TRUE(c->send(get("/echo?again")));
    auto again = c->read_response();
    ASSERT_TRUE(again);
    EXPECT_EQ(again->body, "GET /echo?again\n");
  }
  const ServerStats st = s.server().stats();
  EXPECT_EQ(st.refused_connections, 1U);
  EXPECT_EQ(st.open_connections, 2U);
}

TEST(HttpServer, ShutdownFinishesInFlightRequestAndRefusesNewOnes) {
  TestServer s;
  RawClient idle(s.port());
  ASSERT_TRUE(idle.send(get("/echo")));
  ASSERT_TRUE(idle.read_response());

  RawClient busy(s.port());
  ASSERT_TRUE(busy.send(get("/slow")));
  ASSERT_TRUE(eventually([&] { return s.server().stats().in_flight_requests == 1; }));
  s.server().shutdown();
  EXPECT_EQ(s.stopping_calls(), 1);

  auto r = busy.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "slow");
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(busy.wait_closed());
  EXPECT_TRUE(idle.wait_closed());
  EXPECT_TRUE(s.run_returned_within(2000ms));
  EXPECT_FALSE(RawClient(s.port()).connected());
  s.server().shutdown();  // a second call is harmless
  EXPECT_EQ(s.stopping_calls(), 1);
}

TEST(HttpServer, ShutdownWithoutConnectionsReturnsPromptly) {
  TestServer s;
  const auto start = std::chrono::steady_clock::now();
  s.server().shutdown();
  EXPECT_TRUE(s.run_returned_within(2000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
}

TEST(HttpServer, GraceEndsUnansweredRequestsAndLateRespondersAreHarmless) {
  std::mutex mu;
  std::vector<Responder> stash;
  ServerOptions o = test_options();
  o.shutdown_grace = 300ms;
  auto server = std::make_unique<Server>(o, [&](Request&&, Responder respond) {
    std::lock_guard lock(mu);
    stash.push_back(std::move(respond));
  });
  ASSERT_TRUE(server->listen().ok());
  std::thread runner([&server] { server->run(); });
  RawClient c(server->port());
  ASSERT_TRUE(c.send(get("/kept")));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return stash.size() == 1;
  }));
  const auto start = std::chrono::steady_clock::now();
  server->shutdown();
  runner.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 2000ms);
  server.reset();
  EXPECT_TRUE(c.wait_closed());
  // The Responder outlives the Server: calling it, then dropping it, must be harmless.
  std::lock_guard lock(mu);
  stash.front()(text(200, "late"));
  stash.push_back(Responder(stash.front()));
  stash.clear();
}

TEST(HttpServer, AcceptBacksOffWhenOutOfDescriptors) {
  TestServer s;
  {
    RawClient warm_up(s.port());  // run() is past its own start-up (signal pipe) once this is served
    ASSERT_TRUE(warm_up.send(get("/echo", "Connection: close\r\n")));
    ASSERT_TRUE(warm_up.read_response());
    ASSERT_TRUE(warm_up.wait_closed());
  }
  ASSERT_TRUE(eventually([&] { return s.server().stats().open_connections == 0; }));
  const std::uint64_t accepted_before = s.server().stats().accepted_connections;
  RawClient c(3000ms);  // the socket is made while descriptors are available
  ASSERT_TRUE(c.connected());
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit none = old;
  none.rlim_cur = 0;
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &none), 0);
  // The kernel completes the handshake; the server's accept() fails with EMFILE.
  const bool connected = c.connect_to(s.port());
  std::this_thread::sleep_for(300ms);
  const std::uint64_t accepted_meanwhile = s.server().stats().accepted_connections;
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);

  ASSERT_TRUE(connected);
  EXPECT_EQ(accepted_meanwhile, accepted_before);
  auto cpu_us = [](const rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000L + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  };
  EXPECT_LT(cpu_us(after) - cpu_us(before), 150000L) << "accept loop spinning on EMFILE";
  ASSERT_TRUE(c.send(get("/echo")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServer, ResponderGuards) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/never")));
  auto never = c.read_response();
  ASSERT_TRUE(never);
  EXPECT_EQ(never->status, 500);
  EXPECT_EQ(never->header("content-type"), "application/problem+json");

  ASSERT_TRUE(c.send(get("/throw")));
  auto thrown = c.read_response();
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->status, 500);

  ASSERT_TRUE(c.send(get("/twice") + get("/echo?after")));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body, "first");
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /echo?after\n");
  EXPECT_EQ(s.server().stats().in_flight_requests, 0U);
}

TEST(HttpServer, Http10ClosesAfterTheResponse) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send("GET /echo HTTP/1.0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.wait_closed());
}

TEST(HttpServer, ConnectionCloseRequestIsHonoured) {
  TestServer s;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(get("/echo", "Connection: close\r\n") + get("/echo?ignored")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(c.wait_closed());
}

TEST(HttpServer, EveryFiresRepeatedlyUntilCancelled) {
  TestServer s;
  std::atomic<int> ticks{0};
  auto timer = s.server().every(20ms, [&ticks] { ticks.fetch_add(1); });
  ASSERT_TRUE(eventually([&] { return ticks.load() >= 3; }));
  timer->cancel();
  std::this_thread::sleep_for(100ms);
  const int after_cancel = ticks.load();
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(ticks.load(), after_cancel);
}

TEST(HttpServer, EveryBeforeRunAndPost) {
  std::atomic<int> ticks{0};
  std::atomic<int> posted{0};
  ServerOptions o = test_options();
  Server server(o, [](Request&&, Responder respond) { respond(text(200, "")); });
  ASSERT_TRUE(server.listen().ok());
  auto timer = server.every(10ms, [&ticks] { ticks.fetch_add(1); });
  server.post([&posted] { posted.fetch_add(1); });
  std::thread runner([&server] { server.run(); });
  EXPECT_TRUE(eventually([&] { return ticks.load() >= 2 && posted.load() == 1; }));
  server.shutdown();  // also stops the timer
  runner.join();
  EXPECT_EQ(server.thread_count(), 2U);
}

// Each io thread runs its own io_context: connections are dealt to them in
// turn, a connection's requests all arrive on one thread, and post_to(lane)
// runs work on the thread of that lane's connections (the draw answers' path).
TEST(HttpServer, ConnectionsAreDealtToIoThreadsAndPostToRunsOnTheirThread) {
  std::mutex mu;
  std::map<unsigned, std::set<std::thread::id>> handler_threads;  // by io_lane
  std::map<unsigned, std::set<std::thread::id>> posted_threads;
  Server* server_ptr = nullptr;
  Server server(test_options(), [&](Request&& req, Responder respond) {
    const unsigned lane = req.io_lane;
    {
      std::lock_guard lock(mu);
      handler_threads[lane].insert(std::this_thread::get_id());
    }
    server_ptr->post_to(lane, [&, lane, respond = std::move(respond)] {
      {
        std::lock_guard lock(mu);
        posted_threads[lane].insert(std::this_thread::get_id());
      }
      respond(text(200, std::to_string(lane)));
    });
  });
  server_ptr = &server;
  ASSERT_TRUE(server.listen().ok());
  std::thread runner([&server] { server.run(); });
  std::vector<std::unique_ptr<RawClient>> clients;
  std::set<std::string> lanes_seen;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
    ASSERT_TRUE(clients.back()->connected());
  }
  for (int round = 0; round < 3; ++round) {
    for (auto& c : clients) {
      ASSERT_TRUE(c->send(get("/lane")));
      auto r = c->read_response();
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200);
      lanes_seen.insert(r->body);
    }
  }
  server.shutdown();
  runner.join();
  EXPECT_EQ(lanes_seen, (std::set<std::string>{"0", "1"}));
  ASSERT_EQ(handler_threads.size(), 2U);
  for (const auto& [lane, threads] : handler_threads) {
    EXPECT_EQ(threads.size(), 1U) << "lane " << lane << " ran on more than one thread";
    EXPECT_EQ(posted_threads[lane], threads) << "post_to(" << lane << ") ran on another thread";
  }
  EXPECT_NE(*handler_threads[0].begin(), *handler_threads[1].begin());
}

TEST(HttpServer, ListenFailureNamesTheAddress) {
  ServerOptions o = test_options();
  o.host = "203.0.113.7";  // TEST-NET-3: not an address of this host
  o.port = 1;
  Server server(o, [](Request&&, Responder) {});
  const Status st = server.listen();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().detail.find("203.0.113.7:1"), std::string::npos) << st.error().detail;
}


// fuzzing::parse_stream: the sessions' request reader without a socket (what
// fuzz_http_request drives). Each case also runs in 1- and 7-byte reads.
struct Stream {
  std::vector<std::string> requests;  // "METHOD target version body"
  int refusal = 0;
  std::string refusal_type;
  int continues = 0;
  fuzzing::StreamEnd end = fuzzing::StreamEnd::incomplete;
};

Stream parse(std::string_view bytes, std::size_t piece) {
  Stream s;
  fuzzing::StreamCallbacks cb;
  cb.on_request = [&](Request& r, unsigned version, bool) {
    s.requests.push_back(r.method + " " + r.target + " " + std::to_string(version) + " " + r.body);
    const Request moved = std::move(r);  // as the Handler gets it: the next request reuses the object
    return true;
  };
  cb.on_refusal = [&](const fuzzing::Refusal& r) {
    s.refusal = r.status;
    s.refusal_type = r.type;
  };
  cb.on_continue = [&] { ++s.continues; };
  s.end = fuzzing::parse_stream(bytes, test_options(), cb, piece);
  return s;
}

void expect_stream(std::string_view bytes, const std::vector<std::string>& requests, int refusal,
                   fuzzing::StreamEnd end) {
  for (const std::size_t piece : {0, 1, 7}) {
    SCOPED_TRACE("piece " + std::to_string(piece));
    const Stream s = parse(bytes, piece);
    EXPECT_EQ(s.requests, requests);
    EXPECT_EQ(s.refusal, refusal);
    EXPECT_EQ(s.end, end);
  }
}

TEST(RequestReaderStream, PipelinedRequestsThenIncomplete) {
  expect_stream("GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                "PUT /c HTTP/1.1\r\nContent-Length: 2\r\n\r\nh",
                {"GET /a?x=1 11 ", "POST /b 11 abc"}, 0, fuzzing::StreamEnd::incomplete);
}

TEST(RequestReaderStream, StopsAtTheFirstRefusal) {
  expect_stream("GET /a HTTP/1.1\r\n\r\n"
                "POST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                "GET /c HTTP/1.1\r\n\r\n",
                {"GET /a 11 "}, 400, fuzzing::StreamEnd::refused);
  expect_stream("POST /b HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", {}, 413, fuzzing::StreamEnd::refused);
  expect_stream("GET /" + std::string(3000, 'a') + " HTTP/1.1\r\n\r\n", {}, 414, fuzzing::StreamEnd::refused);
  expect_stream("GET / HTTP/1.1\r\nX-Big: " + std::string(3000, 'a') + "\r\n\r\n", {}, 431,
                fuzzing::StreamEnd::refused);
}

TEST(RequestReaderStream, ClosesAfterARequestWithoutKeepAlive) {
  expect_stream("GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\n", {"GET /a 10 "}, 0, fuzzing::StreamEnd::closed);
  expect_stream("GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n", {"GET /a 11 "}, 0,
                fuzzing::StreamEnd::closed);
}

TEST(RequestReaderStream, ExpectContinueAndFields) {
  const std::string bytes =
      "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nX-Request-Id: abc\r\nX-Mixed-Case:  v \r\n"
      "Content-Length: 5\r\n\r\nhello";
  for (const std::size_t piece : {0, 1}) {
    fuzzing::StreamCallbacks cb;
    int continues = 0;
    int requests = 0;
    cb.on_continue = [&] { ++continues; };
    cb.on_request = [&](Request& r, unsigned version, bool head) {
      ++requests;
      EXPECT_EQ(version, 11U);
      EXPECT_FALSE(head);
      EXPECT_EQ(r.request_id, "abc");
      EXPECT_EQ(r.header("x-mixed-case"), std::optional<std::string_view>("v"));
      EXPECT_EQ(r.headers.at(2).first, "x-mixed-case");
      EXPECT_EQ(r.body, "hello");
      return true;
    };
    EXPECT_EQ(fuzzing::parse_stream(bytes, test_options(), cb, piece), fuzzing::StreamEnd::incomplete);
    EXPECT_EQ(requests, 1);
    // Due once the header is read, even if the body came with it (as a session does).
    EXPECT_EQ(continues, 1);
  }
}

}  // namespace
}  // namespace fairdraw::http
