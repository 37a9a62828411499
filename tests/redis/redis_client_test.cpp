// The Redis client against a real redis-server: round trips, reply types, pipelining
// from several threads, AUTH/SELECT, command timeouts, server death and restart,
// EVALSHA with NOSCRIPT recovery, the pipeline bound and close().
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "fairdraw/redis/connection.hpp"
#include "fairdraw/redis/script.hpp"
#include "redis_test_server.hpp"

namespace fairdraw::redis {
namespace {

using namespace std::chrono_literals;
using test::IoThreads;
using test::RedisTestServer;
using Clock = std::chrono::steady_clock;

RedisOptions local_options(std::uint16_t port) {
  RedisOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  options.connect_timeout = 1000ms;
  options.command_timeout = 2000ms;
  return options;
}

// Every wait in these tests is bounded: a missing callback fails the test, never hangs it.
std::pair<std::shared_ptr<std::promise<Result<RedisReply>>>, std::future<Result<RedisReply>>> make_slot() {
  auto promise = std::make_shared<std::promise<Result<RedisReply>>>();
  auto future = promise->get_future();
  return {std::move(promise), std::move(future)};
}

Result<RedisReply> wait_for(std::future<Result<RedisReply>>& future, std::chrono::milliseconds limit = 3000ms) {
  if (future.wait_for(limit) != std::future_status::ready) {
    return make_error(ErrorKind::internal, "test: no callback within " + std::to_string(limit.count()) + " ms");
  }
  return future.get();
}

std::future<Result<RedisReply>> send(RedisConnection& connection, std::vector<std::string> argv) {
  auto [promise, future] = make_slot();
  connection.command(std::move(argv), [promise = promise](Result<RedisReply> reply) { promise->set_value(std::move(reply)); });
  return std::move(future);
}

Result<RedisReply> run(RedisConnection& connection, std::vector<std::string> argv) {
  auto future = send(connection, std::move(argv));
  return wait_for(future);
}

Result<RedisReply> run_script(const RedisScript& script, RedisConnection& connection, std::vector<std::string> keys,
                              std::vector<std::string> args) {
  auto [promise, future] = make_slot();
  script.call(connection, std::move(keys), std::move(args),
              [promise = promise](Result<RedisReply> reply) { promise->set_value(std::move(reply)); });
  return wait_for(future);
}

// PINGs until one succeeds (bounded): after a failure the client reconnects by itself.
bool wait_until_up(RedisConnection& connection, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    const auto reply = run(connection, {"PING"});
    if (reply.ok() && reply->is_status() && reply->str == "PONG") return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string describe(const Result<RedisReply>& reply) {
  if (!reply.ok()) return "Error: " + reply.error().detail;
  return std::string(to_string(reply->type)) + " '" + reply->str + "' " + std::to_string(reply->integer);
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::redis_server_available()) GTEST_SKIP() << test::kRedisServer << " not installed";
  }
};

TEST_F(RedisClientTest, RoundTrips) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));

  auto reply = run(*connection, {"PING"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_status());
  EXPECT_EQ(reply->str, "PONG");

  const std::string binary("a\0b\r\nc", 6);
  reply = run(*connection, {"SET", "fd:{t}:k", binary});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->str, "OK");
  reply = run(*connection, {"GET", "fd:{t}:k"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_string());
  EXPECT_EQ(reply->str, binary);

  for (int i = 1; i <= 3; ++i) {
    reply = run(*connection, {"INCR", "fd:{t}:n"});
    ASSERT_TRUE(reply.ok()) << describe(reply);
    EXPECT_TRUE(reply->is_integer());
    EXPECT_EQ(reply->integer, i);
  }
  connection->close();
}

TEST_F(RedisClientTest, ArrayNilAndErrorReplies) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));

  auto reply = run(*connection, {"GET", "missing"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_nil());

  ASSERT_TRUE(run(*connection, {"RPUSH", "l", "a", "b", "c"}).ok());
  reply = run(*connection, {"LRANGE", "l", "0", "-1"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  ASSERT_TRUE(reply->is_array());
  ASSERT_EQ(reply->elements.size(), 3U);
  EXPECT_EQ(reply->elements[0].str, "a");
  EXPECT_EQ(reply->elements[2].str, "c");

  ASSERT_TRUE(run(*connection, {"SET", "s", "v"}).ok());
  reply = run(*connection, {"MGET", "s", "missing"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  ASSERT_EQ(reply->elements.size(), 2U);
  EXPECT_EQ(reply->elements[0].str, "v");
  EXPECT_TRUE(reply->elements[1].is_nil());

  reply = run(*connection, {"EVAL", "return {1, {'x', 2}, false}", "0"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  ASSERT_EQ(reply->elements.size(), 3U);
  EXPECT_EQ(reply->elements[0].integer, 1);
  ASSERT_TRUE(reply->elements[1].is_array());
  EXPECT_EQ(reply->elements[1].elements[0].str, "x");
  EXPECT_EQ(reply->elements[1].elements[1].integer, 2);
  EXPECT_TRUE(reply->elements[2].is_nil());

  // Redis's own error is a reply value, and the connection carries on.
  reply = run(*connection, {"INCR", "s"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_error());
  EXPECT_EQ(reply->error_code(), "ERR");
  EXPECT_NE(reply->str.find("not an integer"), std::string::npos);
  reply = run(*connection, {"LPUSH", "s", "x"});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->error_code(), "WRONGTYPE");
  EXPECT_TRUE(wait_until_up(*connection, 500ms));

  // An empty command never reaches the wire.
  reply = run(*connection, {});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().kind, ErrorKind::internal);
}

TEST_F(RedisClientTest, PipelinedIncrsFromFourThreadsStayInOrder) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  ASSERT_TRUE(wait_until_up(*connection));

  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  struct PerThread {
    int next_index = 0;        // replies must come back in issue order
    long long last_value = 0;  // and, on one connection, with rising counter values
    int out_of_order = 0;
    std::counting_semaphore<256> window{200};  // 4 x 200 in flight stays under max_pipeline
  };
  // Shared with the callbacks, so an early ASSERT cannot leave them pointing at the stack.
  struct Shared {
    std::vector<std::unique_ptr<PerThread>> per;
    std::atomic<int> failures{0};
    std::atomic<int> remaining{kThreads * kPerThread};
    std::promise<void> all_done;
  };
  auto shared = std::make_shared<Shared>();
  for (int t = 0; t < kThreads; ++t) shared->per.push_back(std::make_unique<PerThread>());
  auto all_done = shared->all_done.get_future();

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&connection, shared, t] {
      PerThread& mine = *shared->per[static_cast<std::size_t>(t)];
      for (int i = 0; i < kPerThread; ++i) {
        if (!mine.window.try_acquire_for(5s)) {
          ++shared->failures;
          return;
        }
        connection->command({"INCR", "fd:{p}:counter"}, [shared, &mine, i](Result<RedisReply> reply) {
          // Callbacks run on the connection's strand, one at a time.
          if (i != mine.next_index++) ++mine.out_of_order;
          if (!reply.ok() || !reply->is_integer()) {
            ++shared->failures;
          } else {
            if (reply->integer <= mine.last_value) ++mine.out_of_order;
            mine.last_value = reply->integer;
          }
          mine.window.release();
          if (--shared->remaining == 0) shared->all_done.set_value();
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(all_done.wait_for(10s), std::future_status::ready);
  ASSERT_EQ(shared->failures.load(), 0);
  for (const auto& p : shared->per) {
    EXPECT_EQ(p->out_of_order, 0);
    EXPECT_EQ(p->next_index, kPerThread);
  }
  const auto total = run(*connection, {"GET", "fd:{p}:counter"});
  ASSERT_TRUE(total.ok()) << describe(total);
  EXPECT_EQ(total->str, "10000");
}

TEST_F(RedisClientTest, AuthWithPassword) {
  RedisTestServer server({"--requirepass", "s3cret-pw"});
  ASSERT_TRUE(server.running());
  IoThreads io;

  auto options = local_options(server.port());
  options.password = "s3cret-pw";
  auto good = RedisConnection::create(io.io(), options);
  auto reply = run(*good, {"SET", "k", "v"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->str, "OK");

  options.user = "default";  // the ACL form: AUTH user password
  auto with_user = RedisConnection::create(io.io(), options);
  reply = run(*with_user, {"GET", "k"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->str, "v");

  // Without AUTH, the server's NOAUTH is a reply value like any other error reply.
  auto anonymous = RedisConnection::create(io.io(), local_options(server.port()));
  reply = run(*anonymous, {"GET", "k"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->error_code(), "NOAUTH");
}

TEST_F(RedisClientTest, WrongPasswordFailsWithTheServersReason) {
  RedisTestServer server({"--requirepass", "s3cret-pw"});
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto options = local_options(server.port());
  options.password = "not-the-pw-123";
  auto connection = RedisConnection::create(io.io(), options);

  const auto reply = run(*connection, {"PING"});
  ASSERT_FALSE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
  EXPECT_NE(reply.error().detail.find("AUTH rejected"), std::string::npos) << reply.error().detail;
  EXPECT_NE(reply.error().detail.find("WRONGPASS"), std::string::npos) << reply.error().detail;
  EXPECT_EQ(reply.error().detail.find("not-the-pw-123"), std::string::npos) << reply.error().detail;
}

TEST_F(RedisClientTest, SelectDb) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto options = local_options(server.port());
  options.db = 3;
  auto db3 = RedisConnection::create(io.io(), options);
  auto db0 = RedisConnection::create(io.io(), local_options(server.port()));

  ASSERT_TRUE(run(*db3, {"SET", "where", "three"}).ok());
  auto reply = run(*db0, {"GET", "where"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_nil());
  reply = run(*db0, {"SELECT", "3"});  // prove the key really is in db 3
  ASSERT_TRUE(reply.ok());
  reply = run(*db0, {"GET", "where"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->str, "three");

  options.db = 100000;  // beyond the server's 16 databases: SELECT fails like a bad AUTH
  auto bad = RedisConnection::create(io.io(), options);
  reply = run(*bad, {"PING"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
  EXPECT_NE(reply.error().detail.find("SELECT rejected"), std::string::npos) << reply.error().detail;
}

TEST_F(RedisClientTest, CommandTimeoutDropsTheConnectionWhichRecovers) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto options = local_options(server.port());
  options.command_timeout = 200ms;
  auto connection = RedisConnection::create(io.io(), options);
  ASSERT_TRUE(wait_until_up(*connection));

  const auto start = Clock::now();
  auto sleeping = send(*connection, {"DEBUG", "SLEEP", "1"});
  auto behind = send(*connection, {"PING"});
  const auto slept = wait_for(sleeping);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(slept.ok()) << describe(slept);
  EXPECT_EQ(slept.error().kind, ErrorKind::unavailable);
  EXPECT_NE(slept.error().detail.find("timed out"), std::string::npos) << slept.error().detail;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 900ms);
  // Everything outstanding on the dropped connection fails with it.
  const auto behind_reply = wait_for(behind);
  ASSERT_FALSE(behind_reply.ok());
  EXPECT_EQ(behind_reply.error().kind, ErrorKind::unavailable);

  ASSERT_TRUE(wait_until_up(*connection));
  ASSERT_TRUE(run(*connection, {"SET", "after", "timeout"}).ok());
  const auto reply = run(*connection, {"GET", "after"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->str, "timeout");
}

TEST_F(RedisClientTest, ServerKilledFailsFastAndRestartReconnects) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  ASSERT_TRUE(wait_until_up(*connection));

  server.kill();
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    const auto reply = run(*connection, {"PING"});
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(reply.ok()) << describe(reply);
    EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
    EXPECT_LT(elapsed, 1s) << reply.error().detail;
    std::this_thread::sleep_for(30ms);
  }

  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until_up(*connection));
  const auto reply = run(*connection, {"INCR", "back"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 1);
}

TEST_F(RedisClientTest, NoServerFailsFast) {
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(test::pick_free_port()));
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    const auto reply = run(*connection, {"PING"});
    ASSERT_FALSE(reply.ok()) << describe(reply);
    EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
    EXPECT_LT(Clock::now() - start, 1s);
  }
}

TEST_F(RedisClientTest, EvalshaRecoversFromNoscript) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  const RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  EXPECT_FALSE(script.sha().has_value());

  auto reply = run_script(script, *connection, {"fd:{s}:n"}, {"5"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 5);
  ASSERT_TRUE(script.sha().has_value());
  EXPECT_EQ(script.sha()->size(), 40U);

  reply = run_script(script, *connection, {"fd:{s}:n"}, {"1"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 6);

  ASSERT_TRUE(run(*connection, {"SCRIPT", "FLUSH"}).ok());
  reply = run(*connection, {"EVALSHA", *script.sha(), "0"});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->error_code(), "NOSCRIPT");  // the flush really forgot it

  reply = run_script(script, *connection, {"fd:{s}:n"}, {"10"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 16);

  // A script's runtime error is an error reply, not a retry.
  const RedisScript failing("return redis.call('INCR', KEYS[1])");
  ASSERT_TRUE(run(*connection, {"SET", "text", "abc"}).ok());
  reply = run_script(failing, *connection, {"text"}, {});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_TRUE(reply->is_error());
}

TEST(RedisCommandWriter, WritesTheBytesFormatCommandWrites) {
  const std::string binary("a\0b\r\nc", 7);
  CommandWriter writer(6);
  writer.arg("EVALSHA").arg("").arg("fd:{x}:", "cfg").arg(std::int64_t{-42}).arg(binary).arg(std::int64_t{1795563254000});
  EXPECT_EQ(writer.left(), 0u);
  auto bytes = std::move(writer).take();
  ASSERT_TRUE(bytes.ok());
  auto expected = format_command({"EVALSHA", "", "fd:{x}:cfg", "-42", binary, "1795563254000"});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(bytes.value(), expected.value());

  CommandWriter too_few(2);
  too_few.arg("PING");
  EXPECT_FALSE(std::move(too_few).take().ok());
  CommandWriter too_many(1);
  too_many.arg("PING").arg("x");
  EXPECT_FALSE(std::move(too_many).take().ok());
}

// Replies are parsed straight into RedisReply (hiredis's reply functions): nesting, nil
// elements, status and error elements inside an array.
TEST_F(RedisClientTest, NestedRepliesKeepEveryElementsType) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  const auto reply = run(*connection, {"EVAL",
                                       "return {1, 'two', {3, false, {}}, redis.status_reply('FINE'), "
                                       "redis.error_reply('ERR nested')}",
                                       "0"});
  ASSERT_TRUE(reply.ok()) << describe(reply);
  ASSERT_TRUE(reply->is_array());
  ASSERT_EQ(reply->elements.size(), 5u);
  EXPECT_TRUE(reply->elements[0].is_integer());
  EXPECT_EQ(reply->elements[0].integer, 1);
  EXPECT_TRUE(reply->elements[1].is_string());
  EXPECT_EQ(reply->elements[1].str, "two");
  ASSERT_TRUE(reply->elements[2].is_array());
  ASSERT_EQ(reply->elements[2].elements.size(), 3u);
  EXPECT_EQ(reply->elements[2].elements[0].integer, 3);
  EXPECT_TRUE(reply->elements[2].elements[1].is_nil());
  EXPECT_TRUE(reply->elements[2].elements[2].is_array());
  EXPECT_TRUE(reply->elements[2].elements[2].elements.empty());
  EXPECT_TRUE(reply->elements[3].is_status());
  EXPECT_EQ(reply->elements[3].str, "FINE");
  EXPECT_TRUE(reply->elements[4].is_error());
  EXPECT_EQ(reply->elements[4].error_code(), "ERR");

  // A large bulk reply arriving over several reads, then a small one behind it.
  const std::string big(200000, 'x');
  ASSERT_TRUE(run(*connection, {"SET", "big", big}).ok());
  auto first = send(*connection, {"GET", "big"});
  auto second = send(*connection, {"PING"});
  const auto got = wait_for(first);
  ASSERT_TRUE(got.ok() && got->is_string()) << describe(got);
  EXPECT_EQ(got->str, big);
  const auto pong = wait_for(second);
  ASSERT_TRUE(pong.ok() && pong->is_status()) << describe(pong);
}

// The draw path's form: EVALSHA written by RedisScript::begin, sent through a router, and
// the same bytes resent (the SHA patched in) after SCRIPT LOAD when the server lost the script.
TEST_F(RedisClientTest, PreformattedScriptCallsThroughARouterRecoverFromNoscript) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto options = local_options(server.port());
  auto router = RedisRouter::create(io.io(), options, 1);
  auto connection = RedisConnection::create(io.io(), options);
  const RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1]) + ARGV[2]");
  auto call = [&](std::int64_t by) {
    CommandWriter command = script.begin(1, 2);
    command.arg("fd:{s}:", "n").arg(by).arg("1000");
    auto [promise, future] = make_slot();
    script.call(*router, "fd:{s}:n", std::move(command),
                [promise = promise](Result<RedisReply> reply) { promise->set_value(std::move(reply)); });
    return wait_for(future);
  };
  auto reply = call(5);
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 1005);
  ASSERT_TRUE(script.sha().has_value());
  ASSERT_TRUE(run(*connection, {"SCRIPT", "FLUSH"}).ok());
  reply = call(2);
  ASSERT_TRUE(reply.ok()) << describe(reply);
  EXPECT_EQ(reply->integer, 1007);

  // A wrong argument count never reaches the server.
  CommandWriter wrong = script.begin(1, 2);
  wrong.arg("fd:{s}:n");
  auto [promise, future] = make_slot();
  script.call(*router, "fd:{s}:n", std::move(wrong),
              [promise = promise](Result<RedisReply> r) { promise->set_value(std::move(r)); });
  const auto refused = wait_for(future);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::internal);
  router->close();
}

TEST_F(RedisClientTest, PipelineBoundFailsFast) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto options = local_options(server.port());
  options.max_pipeline = 4;
  auto connection = RedisConnection::create(io.io(), options);
  ASSERT_TRUE(wait_until_up(*connection));

  auto sleeping = send(*connection, {"DEBUG", "SLEEP", "0.5"});
  std::vector<std::future<Result<RedisReply>>> pings;
  for (int i = 0; i < 10; ++i) pings.push_back(send(*connection, {"PING"}));
  int ok = 0;
  int full = 0;
  for (auto& ping : pings) {
    const auto reply = wait_for(ping);
    if (reply.ok()) {
      ++ok;
    } else if (reply.error().kind == ErrorKind::unavailable &&
               reply.error().detail.find("pipeline full") != std::string::npos) {
      ++full;
    }
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(full, 7);
  EXPECT_TRUE(wait_for(sleeping).ok());
}

TEST_F(RedisClientTest, CloseFailsOutstandingAndLaterCommands) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  ASSERT_TRUE(wait_until_up(*connection));

  auto sleeping = send(*connection, {"DEBUG", "SLEEP", "0.5"});
  const auto start = Clock::now();
  connection->close();
  auto reply = wait_for(sleeping);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
  EXPECT_LT(Clock::now() - start, 400ms);

  reply = run(*connection, {"PING"});
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.error().detail.find("closed"), std::string::npos);
  connection->close();  // idempotent
}

TEST_F(RedisClientTest, DroppingTheLastHandleClosesIt) {
  RedisTestServer server;
  ASSERT_TRUE(server.running());
  IoThreads io;
  auto connection = RedisConnection::create(io.io(), local_options(server.port()));
  ASSERT_TRUE(wait_until_up(*connection));
  auto sleeping = send(*connection, {"DEBUG", "SLEEP", "0.3"});
  connection.reset();  // the in-flight command still gets its callback
  const auto reply = wait_for(sleeping);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().kind, ErrorKind::unavailable);
}

}  // namespace
}  // namespace fairdraw::redis
