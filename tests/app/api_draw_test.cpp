// Api's draw endpoint over the real engine and sink, without sockets: the
// request deadline answers 503 while the draw goes on, and a retry with the
// same key then gets 409 and finally the draw's stored outcome.
#include "fairdraw/app/api.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <future>
#include <thread>

#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/engine/draw_engine.hpp"
#include "fairdraw/sink/sqlite_sink.hpp"
#include "support/gated_sink.hpp"

namespace fairdraw::app {
namespace {

class ApiDrawTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fd-api-XXXXXX";
    dir_ = mkdtemp(tmpl);
    SqliteSinkOptions sink_options;
    sink_options.path = dir_ + "/fd.db";
    auto sink = SqliteSink::open(sink_options);
    ASSERT_TRUE(sink.ok()) << sink.error().detail;
    sink_ = std::move(sink.value());
    gate_ = std::make_unique<test::GatedSink>(*sink_);
    DrawEngineOptions options;
    options.encode_config = [](const ActivityConfig& a) { return activity_config_json(a).dump(); };
    options.decode_config = [](const std::string& s) {
      return parse_activity(nlohmann::json::parse(s));
    };
    engine_ = std::make_unique<DrawEngine>(options, *gate_, clock_, entropy_);
    ASSERT_TRUE(engine_->recover().ok());
    ActivityConfig config;
    config.name = "a";
    config.miss_weight = 1;
    config.prizes.push_back(Prize{"p", "P", 1, 10});
    ASSERT_TRUE(engine_->put_activity("a", config, clock_.now_ms()).ok());
    config_.http.request_timeout_ms = 50;
    api_ = std::make_unique<Api>(ApiContext{*engine_, *gate_, clock_, metrics_, config_,
                                            [](std::function<void()> fn) { fn(); },
                                            [] { return std::string(); }});
  }
  void TearDown() override {
    api_.reset();
    engine_.reset();
    gate_->flush_and_stop();
    std::filesystem::remove_all(dir_);
  }

  http::Request draw_request(const std::string& key) {
    http::Request r;
    r.method = "POST";
    r.target = r.path = "/draw";
    r.headers = {{"content-type", "application/json"}, {"idempotency-key", key}};
    r.body = R"({"activity_id":"a","user_id":"alice"})";
    r.request_id = "test";
    return r;
  }

  // Sends a request; the returned future is set when the Api responds.
  std::future<http::Response> send(http::Request request) {
    auto promise = std::make_shared<std::promise<http::Response>>();
    auto future = promise->get_future();
    api_->handle(std::move(request),
                 [promise](http::Response response) { promise->set_value(std::move(response)); });
    return future;
  }

  std::string dir_;
  SystemClock clock_;
  FixedEntropy entropy_{3};
  Config config_;
  Metrics metrics_;
  std::unique_ptr<SqliteSink> sink_;
  std::unique_ptr<test::GatedSink> gate_;
  std::unique_ptr<DrawEngine> engine_;
  std::unique_ptr<Api> api_;
};

TEST_F(ApiDrawTest, DeadlineAnswers503ThenTheRetryGetsTheOutcome) {
  gate_->hold();  // the record "stalls": the draw cannot complete
  auto first = send(draw_request("k1"));
  EXPECT_EQ(first.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  api_->expire_deadlines();  // before the deadline: nothing happens
  EXPECT_EQ(first.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);

  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  api_->expire_deadlines();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(1)), std::future_status::ready);
  const http::Response late = first.get();
  EXPECT_EQ(late.status, 503) << late.body;
  EXPECT_EQ(nlohmann::json::parse(late.body)["type"], "unavailable");
  EXPECT_TRUE(late.header("retry-after").has_value());

  // Still in flight: the retry is told so, and nothing is drawn twice.
  const http::Response busy = send(draw_request("k1")).get();
  EXPECT_EQ(busy.status, 409) << busy.body;
  EXPECT_EQ(nlohmann::json::parse(busy.body)["type"], "request_in_flight");

  gate_->release();  // the record catches up; the first completion is dropped quietly
  http::Response replay;
  for (int i = 0; i < 100; ++i) {
    replay = send(draw_request("k1")).get();
    if (replay.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(replay.header("idempotent-replayed"), "true");
  EXPECT_EQ(nlohmann::json::parse(replay.body)["seq"], 0);
  EXPECT_EQ(engine_->get_activity("a", clock_.now_ms())->draws, 1);
}

TEST_F(ApiDrawTest, DrawWithinTheDeadlineIsAnsweredOnce) {
  const http::Response ok = send(draw_request("k2")).get();
  EXPECT_EQ(ok.status, 200) << ok.body;
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  api_->expire_deadlines();  // must not answer a finished draw again
  const auto body = nlohmann::json::parse(ok.body);
  EXPECT_EQ(body["seq"], 0);
  EXPECT_EQ(body["activity_id"], "a");
}

}  // namespace
}  // namespace fairdraw::app
