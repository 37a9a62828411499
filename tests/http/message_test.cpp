// Request/Response helpers: percent-decoding, query parameters, header lookup.
#include "fairdraw/http/message.hpp"

#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace fairdraw::http {
namespace {

TEST(PercentDecode, DecodesEscapes) {
  EXPECT_EQ(percent_decode("a%20b"), "a b");
  EXPECT_EQ(percent_decode("%41%62%7e"), "Ab~");
  EXPECT_EQ(percent_decode("%e2%82%AC"), "\xe2\x82\xac");
  EXPECT_EQ(percent_decode("plain"), "plain");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_EQ(percent_decode("%2F"), "/");
}

TEST(PercentDecode, KeepsMalformedEscapesAndPlus) {
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz1"), "%zz1");
  EXPECT_EQ(percent_decode("%%41"), "%A");
  EXPECT_EQ(percent_decode("a+b"), "a+b");  // '+' is a space only in query strings
}

TEST(QueryParam, FindsDecodedValues) {
  Request req;
  req.query = "a=1&b=hello%20world&c=x+y&flag&empty=&a=2&k%31=v&&eq=a=b";
  EXPECT_EQ(req.query_param("a"), "1");  // the first one wins
  EXPECT_EQ(req.query_param("b"), "hello world");
  EXPECT_EQ(req.query_param("c"), "x y");
  EXPECT_EQ(req.query_param("flag"), "");
  EXPECT_EQ(req.query_param("empty"), "");
  EXPECT_EQ(req.query_param("k1"), "v");
  EXPECT_EQ(req.query_param("eq"), "a=b");
  EXPECT_FALSE(req.query_param("missing"));
  EXPECT_FALSE(req.query_param("A"));  // names are case-sensitive
}

TEST(QueryParam, EmptyQuery) {
  Request req;
  EXPECT_FALSE(req.query_param("a"));
  req.query = "&&";
  EXPECT_FALSE(req.query_param(""));
}

TEST(RequestHeader, CaseInsensitiveFirstValue) {
  Request req;
  req.headers = {{"content-type", "application/json"}, {"x-a", "1"}, {"x-a", "2"}};
  EXPECT_EQ(req.header("Content-Type"), "application/json");
  EXPECT_EQ(req.header("X-A"), "1");
  EXPECT_FALSE(req.header("x-b"));
}

TEST(ResponseHeader, SetReplacesCaseInsensitively) {
  Response res;
  res.set_header("Content-Type", "text/plain");
  res.set_header("X-A", "1");
  res.set_header("content-type", "application/json");
  ASSERT_EQ(res.headers.size(), 2U);
  EXPECT_EQ(res.header("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(res.header("x-a"), "1");
  EXPECT_FALSE(res.header("x-b"));

  res.headers.emplace_back("x-a", "dup");
  res.set_header("X-A", "3");
  EXPECT_EQ(res.headers.size(), 2U);
  EXPECT_EQ(res.header("x-a"), "3");
}

TEST(ResponseHeader, ConstantContentTypeIsAHeaderUntilOneIsSet) {
  Response res;
  res.content_type = "application/json";
  EXPECT_EQ(res.header("Content-Type"), "application/json");
  EXPECT_TRUE(res.headers.empty());
  res.set_header("content-type", "text/plain");
  EXPECT_TRUE(res.content_type.empty());
  EXPECT_EQ(res.header("Content-Type"), "text/plain");
}

TEST(ResponderTest, WrappedCallableIsCalledEveryTimeAndDroppedWithTheLastCopy) {
  auto calls = std::make_shared<int>(0);
  std::weak_ptr<int> alive = calls;
  {
    Responder a = [calls](Response) { ++*calls; };
    calls.reset();
    Responder b = a;
    Responder c = std::move(a);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
    b(Response{});
    c(Response{});
    EXPECT_EQ(*alive.lock(), 2);
    b = Responder();
    EXPECT_FALSE(alive.expired());  // c still holds it
  }
  EXPECT_TRUE(alive.expired());
}

TEST(ResponderTest, TargetHearsOfTheLastCopy) {
  struct Probe final : Responder::Target {
    int delivered = 0;
    int unreferenced_calls = 0;
    void deliver(Response) override { ++delivered; }
    void unreferenced() noexcept override { ++unreferenced_calls; }
  } probe;
  {
    Responder a(probe);
    Responder b = a;
    a(Response{});
    a = Responder();
    EXPECT_EQ(probe.unreferenced_calls, 0);
  }
  EXPECT_EQ(probe.delivered, 1);
  EXPECT_EQ(probe.unreferenced_calls, 1);
}

// On a thread of its own, so the list starts empty and ends with the thread.
TEST(BodyBuffers, AWrittenBodysBufferIsHandedOutAgainOnItsThread) {
  std::thread([] {
    EXPECT_EQ(take_body_buffer().capacity(), std::string().capacity());  // none kept yet
    std::string body(300, 'x');
    const char* storage = body.data();
    recycle_body_buffer(std::move(body));
    std::string again = take_body_buffer();
    EXPECT_TRUE(again.empty());
    EXPECT_EQ(again.data(), storage);  // the same buffer, not a new one
    EXPECT_GE(again.capacity(), 300U);
    EXPECT_EQ(take_body_buffer().capacity(), std::string().capacity());  // it was the only one

    recycle_body_buffer(std::string("short"));       // inside the string object: nothing to keep
    recycle_body_buffer(std::string(100'000, 'y'));  // too large to keep
    EXPECT_EQ(take_body_buffer().capacity(), std::string().capacity());

    for (int i = 0; i < 100; ++i) recycle_body_buffer(std::string(200, 'z'));
    int kept = 0;
    while (take_body_buffer().capacity() >= 200) ++kept;
    EXPECT_EQ(kept, 64);  // a short list per thread
  }).join();
}

}  // namespace
}  // namespace fairdraw::http
