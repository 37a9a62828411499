// Integration tests of the HTTP API contract (DESIGN.md section 3): every endpoint and every error type that can be triggered, against the real binary.
#include <algorithm>
#include <chrono>
#include <cctype>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Activity "a1": gold 10/100, silver 40/1000, miss 50 (W = 100); "a2": a copy.
json main_config() {
  json config = json::object();
  config["activities"]["a1"] =
      activity_json("Main draw", 50, {prize_json("gold", 10, 100), prize_json("silver", 40, 1000)});
  config["activities"]["a2"] =
      activity_json("Second draw", 50, {prize_json("gold", 10, 100), prize_json("silver", 40, 1000)});
  return config;
}

bool is_ulid(const std::string& s) {
  static const std::string alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  return s.size() == 26 && std::all_of(s.begin(), s.end(), [](char c) {
           return alphabet.find(c) != std::string::npos;
         });
}

bool is_lower_hex(const json& v, std::size_t length) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  return s.size() == length &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'); });
}

bool list_contains(const std::optional<std::string>& list, const std::string& token) {
  if (!list) return false;
  std::string l = *list;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string t = token;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::size_t start = 0;
  while (start <= l.size()) {
    std::size_t end = l.find(',', start);
    if (end == std::string::npos) end = l.size();
    std::string item = l.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item == t) return true;
    start = end + 1;
  }
  return false;
}

// A 200 draw response of DESIGN.md: draw_id (ULID), activity_id, user_id, seq, epoch, slot,
// won, prize ({id, name} or null, non-null exactly when won), drawn_at_ms.
::testing::AssertionResult is_draw(const HttpResponse& r, const std::string& activity_id,
                                   const std::string& user_id) {
  auto fail = [&r](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\nresponse:\n" << r.describe();
  };
  if (r.status != 200) return fail("expected 200, got " + std::to_string(r.status));
  const auto content_type = r.header("content-type");
  if (!content_type || content_type->rfind("application/json", 0) != 0) return fail("Content-Type is not application/json");
  if (!r.header("x-request-id")) return fail("no X-Request-Id");
  const json d = r.json();
  if (!d.is_object()) return fail("the body is not a JSON object");
  for (const char* key : {"draw_id", "activity_id", "user_id", "seq", "epoch", "slot", "won", "prize", "drawn_at_ms"}) {
    if (!d.contains(key)) return fail(std::string("missing field ") + key);
  }
  if (!d["draw_id"].is_string() || !is_ulid(d["draw_id"].get<std::string>())) return fail("draw_id is not a ULID");
  if (d["activity_id"] != activity_id) return fail("activity_id differs");
  if (d["user_id"] != user_id) return fail("user_id differs");
  for (const char* key : {"seq", "epoch", "slot", "drawn_at_ms"}) {
    if (!d[key].is_number_integer() || d[key].get<std::int64_t>() < 0) return fail(std::string(key) + " is not a non-negative integer");
  }
  if (!d["won"].is_boolean()) return fail("won is not a boolean");
  if (d["won"].get<bool>()) {
    if (!d["prize"].is_object() || !d["prize"].contains("id") || !d["prize"].contains("name") ||
        !d["prize"]["id"].is_string() || !d["prize"]["name"].is_string()) {
      return fail("won, but prize is not {id, name}");
    }
  } else if (!d["prize"].is_null()) {
    return fail("not won, but prize is not null");
  }
  const std::int64_t drawn = d["drawn_at_ms"].get<std::int64_t>();
  if (std::llabs(drawn - now_ms()) > 60000) return fail("drawn_at_ms is not near the current time");
  return ::testing::AssertionSuccess();
}

json draw_request(const std::string& activity_id, const std::string& user_id) {
  return {{"activity_id", activity_id}, {"user_id", user_id}};
}

TEST(ApiTest, DrawResponseAndLookupById) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  const HttpResponse first = c.post_json("/draw", {{"activity_id", "a1"}, {"user_id", "alice"}, {"ts_ms", now_ms()}},
                                         {{"Idempotency-Key", "k-1"}});
  ASSERT_TRUE(is_draw(first, "a1", "alice"));
  const json d = first.json();
  EXPECT_EQ(d["seq"], 0) << first.body;
  EXPECT_EQ(d["epoch"], 0) << first.body;
  EXPECT_EQ(d["slot"], 0) << first.body;
  EXPECT_FALSE(first.header("idempotent-replayed").value_or("") == "true") << first.describe();

  const HttpResponse second = post_draw(c, "a1", "bob", "k-2");
  ASSERT_TRUE(is_draw(second, "a1", "bob"));
  EXPECT_EQ(second.json()["seq"], 1) << second.body;
  EXPECT_EQ(second.json()["slot"], 1) << second.body;
  EXPECT_NE(second.json()["draw_id"], d["draw_id"]);

  const std::string id = d["draw_id"].get<std::string>();
  const HttpResponse got = c.get("/draws/" + id);
  ASSERT_EQ(got.status, 200) << got.describe();
  EXPECT_TRUE(got.header("x-request-id").has_value()) << got.describe();
  const json g = got.json();
  ASSERT_TRUE(g.is_object()) << got.describe();
  for (const auto& [key, value] : d.items()) {
    EXPECT_EQ(g.value(key, json()), value) << "field " << key << " of GET /draws/" << id << ":\n" << got.body
                                           << "\ndraw response:\n" << first.body;
  }
  ASSERT_TRUE(g.contains("candidate_id")) << got.body;
  if (d["won"].get<bool>()) {
    EXPECT_EQ(g["candidate_id"], d["prize"]["id"]) << got.body;
  } else {
    // Stock is plentiful here, so a miss is a deck miss.
    EXPECT_TRUE(g["candidate_id"].is_null()) << got.body;
  }
}

TEST(ApiTest, IdempotentReplayAndKeyScope) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  const HttpResponse original = c.post_json("/draw", {{"activity_id", "a1"}, {"user_id", "alice"}, {"ts_ms", now_ms()}},
                                            {{"Idempotency-Key", "same-key"}});
  ASSERT_TRUE(is_draw(original, "a1", "alice"));
  EXPECT_NE(original.header("idempotent-replayed").value_or(""), "true") << original.describe();

  // Same key and body; ts_ms is not part of the request identity.
  const HttpResponse replay = c.post_json("/draw", {{"activity_id", "a1"}, {"user_id", "alice"}, {"ts_ms", now_ms() + 7}},
                                          {{"Idempotency-Key", "same-key"}});
  ASSERT_EQ(replay.status, 200) << replay.describe();
  EXPECT_EQ(replay.body, original.body) << "a replay must return the identical body";
  EXPECT_EQ(replay.header("idempotent-replayed").value_or(""), "true") << replay.describe();

  // The IETF draft's quoted form names the same key.
  const HttpResponse quoted = post_draw(c, "a1", "alice", "\"same-key\"");
  ASSERT_EQ(quoted.status, 200) << quoted.describe();
  EXPECT_EQ(quoted.body, original.body);
  EXPECT_EQ(quoted.header("idempotent-replayed").value_or(""), "true") << quoted.describe();

  // Same key, another user: a different body.
  EXPECT_TRUE(is_problem(post_draw(c, "a1", "bob", "same-key"), 422, "idempotency_key_reused"));

  // Keys are scoped per activity: the same key in a2 is a new draw.
  const HttpResponse other = post_draw(c, "a2", "alice", "same-key");
  ASSERT_TRUE(is_draw(other, "a2", "alice"));
  EXPECT_NE(other.json()["draw_id"], original.json()["draw_id"]);
  EXPECT_NE(other.header("idempotent-replayed").value_or(""), "true") << other.describe();

  // request_id in the body works as the key.
  const json with_rid = {{"activity_id", "a1"}, {"user_id", "carol"}, {"request_id", "rid-1"}};
  const HttpResponse rid = c.post_json("/draw", with_rid);
  ASSERT_TRUE(is_draw(rid, "a1", "carol"));
  const HttpResponse rid_again = c.post_json("/draw", with_rid);
  ASSERT_EQ(rid_again.status, 200) << rid_again.describe();
  EXPECT_EQ(rid_again.body, rid.body);
  EXPECT_EQ(rid_again.header("idempotent-replayed").value_or(""), "true") << rid_again.describe();
  const HttpResponse rid_header = post_draw(c, "a1", "carol", "rid-1");
  ASSERT_EQ(rid_header.status, 200) << rid_header.describe();
  EXPECT_EQ(rid_header.body, rid.body) << "request_id and Idempotency-Key name the same key";

  // Exactly two draws happened in a1.
  std::vector<json> trail;
  ASSERT_TRUE(fetch_audit_trail(c, "a1", trail));
  EXPECT_EQ(trail.size(), 2u);
  const HttpResponse a1 = c.get("/activities/a1");
  ASSERT_EQ(a1.status, 200) << a1.describe();
  EXPECT_EQ(a1.json()["draws"], 2) << a1.body;
}

TEST(ApiTest, DrawWithoutKeyIsOneOff) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const HttpResponse one = c.post_json("/draw", draw_request("a1", "alice"));
  const HttpResponse two = c.post_json("/draw", draw_request("a1", "alice"));
  ASSERT_TRUE(is_draw(one, "a1", "alice"));
  ASSERT_TRUE(is_draw(two, "a1", "alice"));
  EXPECT_NE(one.json()["draw_id"], two.json()["draw_id"]) << one.body << "\n" << two.body;
  EXPECT_EQ(one.json()["seq"], 0);
  EXPECT_EQ(two.json()["seq"], 1);
  EXPECT_FALSE(two.has_header("idempotent-replayed")) << two.describe();
}

TEST(ApiTest, InvalidRequest) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  struct Case {
    std::string name;
    std::string body;
    std::optional<std::string> key;
  };
  const std::string ok_body = R"({"activity_id":"a1","user_id":"alice"})";
  const std::vector<Case> cases = {
      {"truncated JSON", R"({"activity_id": "a1", "user_id": )", std::nullopt},
      {"not JSON at all", "hello", std::nullopt},
      {"a JSON array", "[1, 2]", std::nullopt},
      {"missing user_id", R"({"activity_id":"a1"})", std::nullopt},
      {"missing activity_id", R"({"user_id":"alice"})", std::nullopt},
      {"user_id not a string", R"({"activity_id":"a1","user_id":42})", std::nullopt},
      {"empty user_id", R"({"activity_id":"a1","user_id":""})", std::nullopt},
      {"ts_ms not an integer", R"({"activity_id":"a1","user_id":"alice","ts_ms":"soon"})", std::nullopt},
      {"request_id not a string", R"({"activity_id":"a1","user_id":"alice","request_id":7})", std::nullopt},
      {"key with a space", ok_body, "bad key"},
      {"key of 129 characters", ok_body, std::string(129, 'k')},
      {"key with non-ASCII bytes", ok_body, "cl\xc3\xa9"},
      {"empty quoted key", ok_body, "\"\""},
  };
  for (const Case& test_case : cases) {
    Headers headers = {{"Content-Type", "application/json"}};
    if (test_case.key) headers.emplace_back("Idempotency-Key", *test_case.key);
    const HttpResponse r = c.request("POST", "/draw", headers, test_case.body);
    EXPECT_TRUE(is_problem(r, 400, "invalid_request")) << "case: " << test_case.name;
    EXPECT_EQ(r.json().value("instance", ""), "/draw") << "case: " << test_case.name << "\n" << r.body;
  }
  // A key of exactly 128 visible characters is fine.
  EXPECT_TRUE(is_draw(post_draw(c, "a1", "alice", std::string(128, 'k')), "a1", "alice"));

  // Bad query parameters.
  EXPECT_TRUE(is_problem(c.get("/activities?limit=0"), 400, "invalid_request"));
  EXPECT_TRUE(is_problem(c.get("/activities?limit=1001"), 400, "invalid_request"));
  EXPECT_TRUE(is_problem(c.get("/activities?limit=ten"), 400, "invalid_request"));
  EXPECT_TRUE(is_problem(c.get("/activities/a1/draws?after_seq=x"), 400, "invalid_request"));
  // Bad activity bodies.
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bad", {{"name", "no prizes"}, {"miss_weight", 1}}, admin_headers()),
                         400, "invalid_request"));
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/bad", activity_json("empty deck", 0, {prize_json("p", 0, 1)}),
                                    admin_headers()),
                         400, "invalid_request"));

  // Only the one valid draw was made.
  const HttpResponse a1 = c.get("/activities/a1");
  ASSERT_EQ(a1.status, 200) << a1.describe();
  EXPECT_EQ(a1.json()["draws"], 1) << a1.body;
}

TEST(ApiTest, ClockSkew) {
  FairdrawServer server(main_config(), {{"FAIRDRAW_DRAW_MAX_CLOCK_SKEW_MS", "1000"}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  for (const std::int64_t offset : {-3600000LL, 3600000LL, -5000LL, 5000LL}) {
    const HttpResponse r = c.post_json("/draw", {{"activity_id", "a1"}, {"user_id", "alice"}, {"ts_ms", now_ms() + offset}});
    EXPECT_TRUE(is_problem(r, 400, "clock_skew")) << "ts_ms offset " << offset << " ms";
  }
  const HttpResponse ok = c.post_json("/draw", {{"activity_id", "a1"}, {"user_id", "alice"}, {"ts_ms", now_ms()}});
  EXPECT_TRUE(is_draw(ok, "a1", "alice"));
  EXPECT_EQ(ok.json().value("seq", -1), 0) << "a refused draw takes no sequence number\n" << ok.body;
}

TEST(ApiTest, DrawTokens) {
  FairdrawServer server(main_config(), {{"FAIRDRAW_DRAW_REQUIRE_TOKEN", "true"}});
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  const HttpResponse issued = c.request("POST", "/tokens");
  ASSERT_EQ(issued.status, 201) << issued.describe();
  const json t = issued.json();
  ASSERT_TRUE(t.is_object() && t.contains("token") && t["token"].is_string()) << issued.body;
  ASSERT_TRUE(t.contains("expires_at_ms") && t["expires_at_ms"].is_number_integer()) << issued.body;
  const std::string token = t["token"].get<std::string>();
  EXPECT_GE(token.size(), 22u) << "128 random bits in base64url: " << token;
  EXPECT_TRUE(std::all_of(token.begin(), token.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_';
  })) << "not base64url: " << token;
  EXPECT_GT(t["expires_at_ms"].get<std::int64_t>(), now_ms()) << issued.body;

  const HttpResponse second_token = c.request("POST", "/tokens");
  ASSERT_EQ(second_token.status, 201) << second_token.describe();
  EXPECT_NE(second_token.json()["token"], t["token"]);

  const HttpResponse drawn = post_draw(c, "a1", "alice", token);
  ASSERT_TRUE(is_draw(drawn, "a1", "alice"));
  const HttpResponse replay = post_draw(c, "a1", "alice", token);
  ASSERT_EQ(replay.status, 200) << replay.describe();
  EXPECT_EQ(replay.body, drawn.body);
  EXPECT_EQ(replay.header("idempotent-replayed").value_or(""), "true") << replay.describe();

  EXPECT_TRUE(is_problem(post_draw(c, "a1", "alice", "made-up-token-AAAAAAAAAA"), 400, "invalid_token"));
  EXPECT_TRUE(is_problem(post_draw(c, "a1", "alice"), 400, "invalid_token"));

  const HttpResponse other = post_draw(c, "a1", "bob", second_token.json()["token"].get<std::string>());
  ASSERT_TRUE(is_draw(other, "a1", "bob"));
  EXPECT_EQ(other.json()["seq"], 1) << other.body;
}

TEST(ApiTest, AdminAuthorization) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const json body = activity_json("New", 1, {prize_json("p", 1, 1)});
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/new", body), 401, "unauthorized"));
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/new", body, {{"Authorization", "Bearer wrong-token"}}), 403,
                         "forbidden"));
  EXPECT_TRUE(is_problem(c.del("/admin/activities/a1"), 401, "unauthorized"));
  EXPECT_TRUE(is_problem(c.del("/admin/activities/a1", {{"Authorization", "Bearer test-admin-tokeN"}}), 403,
                         "forbidden"));
  EXPECT_TRUE(is_problem(c.get("/activities/new"), 404, "activity_not_found")) << "nothing may have been created";
  const HttpResponse a1 = c.get("/activities/a1");
  ASSERT_EQ(a1.status, 200) << a1.describe();
  EXPECT_EQ(a1.json()["status"], "active") << "nothing may have been ended\n" << a1.body;
}

TEST(ApiTest, AdminPutGetDelete) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  // Every draw of this deck is a candidate for "p" (W = 1).
  json body = activity_json("Only prizes", 0, {prize_json("p", 1, 3)});
  body["max_draws_per_user"] = 100;
  const HttpResponse created = c.put_json("/admin/activities/new", body, admin_headers());
  ASSERT_EQ(created.status, 201) << created.describe();
  json a = created.json();
  EXPECT_EQ(a["id"], "new") << created.body;
  EXPECT_EQ(a["name"], "Only prizes") << created.body;
  EXPECT_EQ(a["status"], "active") << created.body;
  EXPECT_EQ(a["epoch_size"], 1) << created.body;
  EXPECT_EQ(a["draws"], 0) << created.body;
  EXPECT_EQ(a["miss_weight"], 0) << created.body;
  EXPECT_EQ(a["max_draws_per_user"], 100) << created.body;
  ASSERT_TRUE(a["prizes"].is_array() && a["prizes"].size() == 1) << created.body;
  EXPECT_EQ(a["prizes"][0]["id"], "p") << created.body;
  EXPECT_EQ(a["prizes"][0]["weight"], 1) << created.body;
  EXPECT_EQ(a["prizes"][0]["stock"], 3) << created.body;
  EXPECT_EQ(a["prizes"][0]["remaining"], 3) << created.body;

  const HttpResponse got = c.get("/activities/new");
  ASSERT_EQ(got.status, 200) << got.describe();
  EXPECT_EQ(got.json(), a) << "GET differs from the PUT response";

  const HttpResponse won = post_draw(c, "new", "alice", "w-1");
  ASSERT_TRUE(is_draw(won, "new", "alice"));
  EXPECT_EQ(won.json()["won"], true) << won.body;
  EXPECT_EQ(won.json()["prize"], json({{"id", "p"}, {"name", "p prize"}})) << won.body;
  const HttpResponse after_win = c.get("/activities/new");
  ASSERT_EQ(after_win.status, 200) << after_win.describe();
  EXPECT_EQ(after_win.json()["prizes"][0]["remaining"], 2) << after_win.body;
  EXPECT_EQ(after_win.json()["draws"], 1) << after_win.body;

  // Replace (name only): 200.
  body["name"] = "Renamed";
  const HttpResponse replaced = c.put_json("/admin/activities/new", body, admin_headers());
  ASSERT_EQ(replaced.status, 200) << replaced.describe();
  EXPECT_EQ(replaced.json()["name"], "Renamed") << replaced.body;
  EXPECT_EQ(replaced.json()["prizes"][0]["remaining"], 2) << replaced.body;

  // Not JSON: 415.
  EXPECT_TRUE(is_problem(c.request("PUT", "/admin/activities/new", {{"Content-Type", "text/plain"}, admin_headers()[0]},
                                   body.dump()),
                         415, "unsupported_media_type"));

  // End it.
  const HttpResponse ended = c.del("/admin/activities/new", admin_headers());
  ASSERT_EQ(ended.status, 200) << ended.describe();
  EXPECT_EQ(ended.json()["status"], "ended") << ended.body;
  const HttpResponse still = c.get("/activities/new");
  ASSERT_EQ(still.status, 200) << still.describe();
  EXPECT_EQ(still.json()["status"], "ended") << still.body;
  EXPECT_TRUE(is_problem(post_draw(c, "new", "alice", "w-2"), 409, "activity_not_active"));
  EXPECT_TRUE(is_problem(c.put_json("/admin/activities/new", body, admin_headers()), 409, "activity_not_active"));
  EXPECT_TRUE(is_problem(c.del("/admin/activities/missing", admin_headers()), 404, "activity_not_found"));
}

TEST(ApiTest, ActivityNotActiveOutsideWindow) {
  json config = main_config();
  json later = activity_json("Later", 1, {prize_json("p", 1, 1)});
  later["starts_at_ms"] = now_ms() + 3600000;
  config["activities"]["later"] = later;
  json over = activity_json("Over", 1, {prize_json("p", 1, 1)});
  over["starts_at_ms"] = now_ms() - 7200000;
  over["ends_at_ms"] = now_ms() - 3600000;
  config["activities"]["over"] = over;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  EXPECT_TRUE(is_problem(post_draw(c, "later", "alice", "k1"), 409, "activity_not_active"));
  const HttpResponse scheduled = c.get("/activities/later");
  ASSERT_EQ(scheduled.status, 200) << scheduled.describe();
  EXPECT_EQ(scheduled.json()["status"], "scheduled") << scheduled.body;

  EXPECT_TRUE(is_problem(post_draw(c, "over", "alice", "k1"), 409, "activity_not_active"));
  const HttpResponse ended = c.get("/activities/over");
  ASSERT_EQ(ended.status, 200) << ended.describe();
  EXPECT_EQ(ended.json()["status"], "ended") << ended.body;
  EXPECT_EQ(ended.json()["draws"], 0) << ended.body;
}

TEST(ApiTest, NotFoundKinds) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  EXPECT_TRUE(is_problem(c.get("/activities/nope"), 404, "activity_not_found"));
  EXPECT_TRUE(is_problem(c.get("/activities/nope/fairness"), 404, "activity_not_found"));
  EXPECT_TRUE(is_problem(c.get("/activities/nope/draws"), 404, "activity_not_found"));
  EXPECT_TRUE(is_problem(post_draw(c, "nope", "alice", "k1"), 404, "activity_not_found"));
  EXPECT_TRUE(is_problem(c.get("/draws/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404, "draw_not_found"));
  EXPECT_TRUE(is_problem(c.get("/draws/not-a-draw-id"), 404, "draw_not_found"));
  const HttpResponse nowhere = c.get("/nowhere");
  EXPECT_TRUE(is_problem(nowhere, 404, "not_found"));
  EXPECT_EQ(nowhere.json().value("instance", ""), "/nowhere") << nowhere.body;
  EXPECT_TRUE(is_problem(c.get("/activities/a1/unknown"), 404, "not_found"));
  EXPECT_TRUE(is_problem(c.get("/admin"), 404, "not_found"));
  // A user without draws is an empty list, not an error.
  const HttpResponse empty = c.get("/users/nobody/draws");
  ASSERT_EQ(empty.status, 200) << empty.describe();
  EXPECT_EQ(empty.json(), json({{"items", json::array()}, {"next", nullptr}})) << empty.body;
}

TEST(ApiTest, MethodNotAllowedWithAllow) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  struct Case {
    std::string method, target;
    std::vector<std::string> allowed;
  };
  const std::vector<Case> cases = {
      {"GET", "/draw", {"POST"}},
      {"DELETE", "/draw", {"POST"}},
      {"GET", "/tokens", {"POST"}},
      {"POST", "/activities", {"GET"}},
      {"DELETE", "/activities/a1", {"GET"}},
      {"POST", "/healthz", {"GET"}},
      {"PUT", "/draws/01ARZ3NDEKTSV4RRFFQ69G5FAV", {"GET"}},
      {"GET", "/admin/activities/a1", {"PUT", "DELETE"}},
  };
  for (const Case& test_case : cases) {
    const HttpResponse r = c.request(test_case.method, test_case.target);
    EXPECT_TRUE(is_problem(r, 405, "method_not_allowed")) << test_case.method << " " << test_case.target;
    for (const std::string& method : test_case.allowed) {
      EXPECT_TRUE(list_contains(r.header("allow"), method))
          << test_case.method << " " << test_case.target << ": Allow lacks " << method << "\n" << r.describe();
    }
  }
}

TEST(ApiTest, RequestTimeoutClosesTheConnection) {
  json config = main_config();
  config["http"]["request_timeout_ms"] = 250;  // must stay below the read timeout
  FairdrawServer server(config, {{"FAIRDRAW_HTTP_READ_TIMEOUT_MS", "500"}});
  ASSERT_TRUE(server.start());
  const std::vector<std::pair<std::string, std::string>> halves = {
      {"half a body", "POST /draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"activity_id\":"},
      {"half the headers", "GET /activities HTTP/1.1\r\nHost: x\r\nAccept: appl"},
  };
  for (const auto& [name, bytes] : halves) {
    HttpClient c = server.client(4000ms);
    ASSERT_TRUE(c.send_raw(bytes)) << name << ": " << c.last_error();
    const auto started = std::chrono::steady_clock::now();
    const HttpResponse r = c.read_response();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    EXPECT_TRUE(is_problem(r, 408, "request_timeout", false)) << name << " (after " << elapsed.count() << " ms)";
    EXPECT_LT(elapsed.count(), 2000) << name << ": the 408 came too late";
    EXPECT_TRUE(c.wait_closed(2000ms)) << name << ": the connection was not closed after the 408";
  }
  // The server still serves.
  HttpClient fresh = server.client();
  EXPECT_EQ(fresh.get("/healthz").status, 200);
}

TEST(ApiTest, PayloadTooLargeAnsweredFromContentLength) {
  json config = main_config();
  config["http"]["max_body_bytes"] = 1024;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());
  HttpClient c = server.client(3000ms);
  // Only the head: the answer must come from Content-Length, without the body.
  ASSERT_TRUE(c.send_raw("POST /draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 1000000\r\n\r\n"))
      << c.last_error();
  EXPECT_TRUE(is_problem(c.read_response(), 413, "payload_too_large", false));

  // A body within the limit is fine.
  HttpClient ok = server.client();
  json small = draw_request("a1", "alice");
  small["user_id"] = std::string(200, 'u');
  EXPECT_TRUE(is_draw(ok.post_json("/draw", small), "a1", std::string(200, 'u')));
}

TEST(ApiTest, UnsupportedMediaType) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const std::string body = draw_request("a1", "alice").dump();
  EXPECT_TRUE(is_problem(c.request("POST", "/draw", {{"Content-Type", "text/plain"}}, body), 415,
                         "unsupported_media_type"));
  EXPECT_TRUE(is_problem(c.request("POST", "/draw", {{"Content-Type", "application/x-www-form-urlencoded"}},
                                   "activity_id=a1&user_id=alice"),
                         415, "unsupported_media_type"));
  // Media type parameters are fine.
  EXPECT_TRUE(is_draw(c.request("POST", "/draw", {{"Content-Type", "application/json; charset=utf-8"}}, body), "a1",
                      "alice"));
}

TEST(ApiTest, QuotaExhausted) {
  json config = main_config();
  json limited = activity_json("Limited", 50, {prize_json("gold", 50, 1000)});
  limited["max_draws_per_user"] = 2;
  config["activities"]["q"] = limited;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  ASSERT_TRUE(is_draw(post_draw(c, "q", "alice", "q1"), "q", "alice"));
  ASSERT_TRUE(is_draw(post_draw(c, "q", "alice", "q2"), "q", "alice"));
  EXPECT_TRUE(is_problem(post_draw(c, "q", "alice", "q3"), 429, "quota_exhausted"));
  EXPECT_TRUE(is_problem(post_draw(c, "q", "alice"), 429, "quota_exhausted"));
  // A replay of an earlier draw is not a new draw.
  const HttpResponse replay = post_draw(c, "q", "alice", "q1");
  EXPECT_EQ(replay.status, 200) << replay.describe();
  EXPECT_EQ(replay.header("idempotent-replayed").value_or(""), "true") << replay.describe();
  // Other users are unaffected, and refused draws took no sequence numbers.
  const HttpResponse bob = post_draw(c, "q", "bob", "q4");
  ASSERT_TRUE(is_draw(bob, "q", "bob"));
  EXPECT_EQ(bob.json()["seq"], 2) << bob.body;
}

TEST(ApiTest, HeadersTooLarge) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client(3000ms);
  EXPECT_TRUE(is_problem(c.get("/healthz", {{"X-Padding", std::string(10000, 'h')}}), 431, "headers_too_large", false));
  HttpClient many = server.client(3000ms);
  Headers headers;
  for (int i = 0; i < 40; ++i) headers.emplace_back("X-Pad-" + std::to_string(i), std::string(250, 'p'));
  EXPECT_TRUE(is_problem(many.get("/healthz", headers), 431, "headers_too_large", false));
}

TEST(ApiTest, UriTooLong) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client(3000ms);
  EXPECT_TRUE(is_problem(c.get("/activities?pad=" + std::string(9000, 'x')), 414, "uri_too_long", false));
  HttpClient path = server.client(3000ms);
  EXPECT_TRUE(is_problem(path.get("/activities/" + std::string(9000, 'y')), 414, "uri_too_long", false));
}

TEST(ApiTest, ConnectionLimit) {
  json config = main_config();
  config["http"]["max_connections"] = 2;
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());
  // The harness's readiness probe may still count for a moment: retry briefly.
  auto open_working = [&server](HttpClient& c) {
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    HttpResponse r;
    while (std::chrono::steady_clock::now() < deadline) {
      r = c.get("/healthz");
      if (r.status == 200) return r;
      c.close();
      std::this_thread::sleep_for(50ms);
    }
    return r;
  };
  HttpClient first = server.client(3000ms);
  HttpClient second = server.client(3000ms);
  ASSERT_EQ(open_working(first).status, 200);
  ASSERT_EQ(open_working(second).status, 200);

  // A third connection: 503, whether the server answers at once or after reading a request.
  HttpClient third = server.client(3000ms);
  ASSERT_TRUE(third.connect()) << third.last_error();
  third.wait_closed(800ms);
  const HttpResponse refused = third.has_buffered_data() ? third.read_response() : third.get("/healthz");
  EXPECT_TRUE(is_problem(refused, 503, "unavailable", false));
  EXPECT_TRUE(refused.has_header("retry-after")) << refused.describe();

  // The first two still work on their kept-alive connections.
  const HttpResponse again1 = first.get("/activities/a1");
  EXPECT_EQ(again1.status, 200) << again1.describe();
  const HttpResponse again2 = second.get("/healthz");
  EXPECT_EQ(again2.status, 200) << again2.describe();
  EXPECT_TRUE(first.is_open()) << "the first connection must stay open";

  // Once one closes, a new connection is accepted.
  first.close();
  third.close();
  HttpClient fourth = server.client(3000ms);
  EXPECT_EQ(open_working(fourth).status, 200);
}

TEST(ApiTest, CorsOnPublicRoutesOnly) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const HttpResponse preflight = c.request("OPTIONS", "/draw",
                                           {{"Origin", "https://shop.example"},
                                            {"Access-Control-Request-Method", "POST"},
                                            {"Access-Control-Request-Headers", "content-type, idempotency-key"}});
  EXPECT_EQ(preflight.status, 204) << preflight.describe();
  const auto allow_origin = preflight.header("access-control-allow-origin");
  EXPECT_TRUE(allow_origin == "*" || allow_origin == "https://shop.example") << preflight.describe();
  EXPECT_TRUE(list_contains(preflight.header("access-control-allow-methods"), "POST")) << preflight.describe();
  EXPECT_TRUE(list_contains(preflight.header("access-control-allow-headers"), "idempotency-key")) << preflight.describe();
  EXPECT_TRUE(list_contains(preflight.header("access-control-allow-headers"), "content-type")) << preflight.describe();
  EXPECT_FALSE(preflight.header("access-control-allow-credentials").value_or("") == "true") << preflight.describe();
  EXPECT_TRUE(preflight.has_header("x-request-id")) << preflight.describe();

  const HttpResponse drawn = post_draw(c, "a1", "alice", std::string("cors-1"));
  EXPECT_EQ(drawn.status, 200) << drawn.describe();
  const HttpResponse draw_with_origin = c.post_json("/draw", draw_request("a1", "bob"), {{"Origin", "https://shop.example"}});
  EXPECT_EQ(draw_with_origin.status, 200) << draw_with_origin.describe();
  EXPECT_TRUE(draw_with_origin.has_header("access-control-allow-origin")) << draw_with_origin.describe();
  const HttpResponse list = c.get("/activities", {{"Origin", "https://shop.example"}});
  EXPECT_TRUE(list.has_header("access-control-allow-origin")) << list.describe();

  // Never on /admin/...
  Headers admin = admin_headers();
  admin.emplace_back("Origin", "https://shop.example");
  const HttpResponse put = c.put_json("/admin/activities/corsy", activity_json("Cors", 1, {prize_json("p", 1, 1)}), admin);
  EXPECT_EQ(put.status, 201) << put.describe();
  EXPECT_FALSE(put.has_header("access-control-allow-origin")) << put.describe();
  const HttpResponse admin_preflight = c.request("OPTIONS", "/admin/activities/corsy",
                                                 {{"Origin", "https://shop.example"},
                                                  {"Access-Control-Request-Method", "PUT"}});
  EXPECT_NE(admin_preflight.status, 0) << admin_preflight.describe();
  EXPECT_FALSE(admin_preflight.has_header("access-control-allow-origin")) << admin_preflight.describe();
  EXPECT_FALSE(admin_preflight.has_header("access-control-allow-methods")) << admin_preflight.describe();
}

TEST(ApiTest, PipelinedRequestsAnsweredInOrder) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client(5000ms);
  auto draw_bytes = [](const std::string& user, const std::string& key) {
    const std::string body = draw_request("a1", user).dump();
    return "POST /draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: " + key +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  const std::string bytes = draw_bytes("u1", "p1") + draw_bytes("u2", "p2") +
                            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" +
                            draw_bytes("u3", "p3") + "GET /activities/a1 HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(c.send_raw(bytes)) << c.last_error();
  const HttpResponse r1 = c.read_response();
  const HttpResponse r2 = c.read_response();
  const HttpResponse r3 = c.read_response();
  const HttpResponse r4 = c.read_response();
  const HttpResponse r5 = c.read_response();
  const HttpResponse r6 = c.read_response();
  ASSERT_TRUE(is_draw(r1, "a1", "u1"));
  ASSERT_TRUE(is_draw(r2, "a1", "u2"));
  EXPECT_EQ(r1.json()["seq"], 0) << r1.body;
  EXPECT_EQ(r2.json()["seq"], 1) << r2.body;
  EXPECT_EQ(r3.status, 200) << r3.describe();
  EXPECT_EQ(r3.json(), json({{"status", "ok"}})) << r3.describe();
  EXPECT_TRUE(is_problem(r4, 404, "not_found"));
  ASSERT_TRUE(is_draw(r5, "a1", "u3"));
  EXPECT_EQ(r5.json()["seq"], 2) << r5.body;
  ASSERT_EQ(r6.status, 200) << r6.describe();
  EXPECT_EQ(r6.json()["id"], "a1") << r6.body;
  EXPECT_EQ(r6.json()["draws"], 3) << r6.body;
  // Still usable afterwards.
  EXPECT_EQ(c.get("/healthz").status, 200);
}

TEST(ApiTest, HealthReadinessAndMetrics) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const HttpResponse health = c.get("/healthz");
  EXPECT_EQ(health.status, 200) << health.describe();
  EXPECT_TRUE(health.has_header("x-request-id")) << health.describe();
  const HttpResponse ready = c.get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.describe();
  ASSERT_TRUE(is_draw(post_draw(c, "a1", "alice", "m1"), "a1", "alice"));
  const HttpResponse metrics = c.get("/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.describe();
  EXPECT_EQ(metrics.header("content-type").value_or("").rfind("text/plain", 0), 0u) << metrics.describe();
  for (const char* name : {"fairdraw_http_requests_total", "fairdraw_draws_total", "fairdraw_stock_remaining"}) {
    EXPECT_NE(metrics.body.find(name), std::string::npos) << "metrics lack " << name << ":\n" << metrics.body.substr(0, 6000);
  }
  EXPECT_NE(metrics.body.find("# TYPE"), std::string::npos) << "not Prometheus text format";
}

TEST(ApiTest, FairnessDocumentShape) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  ASSERT_TRUE(is_draw(post_draw(c, "a1", "alice", "f1"), "a1", "alice"));
  const HttpResponse r = c.get("/activities/a1/fairness");
  ASSERT_EQ(r.status, 200) << r.describe();
  const json doc = r.json();
  ASSERT_TRUE(doc.is_object()) << r.body;
  EXPECT_EQ(doc["activity_id"], "a1") << r.body;
  ASSERT_TRUE(doc["epochs"].is_array() && !doc["epochs"].empty()) << r.body;
  for (const json& e : doc["epochs"]) {
    for (const char* key : {"epoch", "first_seq", "prizes", "miss_weight", "epoch_size", "commitment", "seed"}) {
      EXPECT_TRUE(e.contains(key)) << "epoch lacks " << key << ": " << e.dump();
    }
    EXPECT_TRUE(is_lower_hex(e["commitment"], 64)) << e.dump();
  }
  const json& e0 = doc["epochs"][0];
  EXPECT_EQ(e0["epoch"], 0) << r.body;
  EXPECT_EQ(e0["first_seq"], 0) << r.body;
  EXPECT_EQ(e0["prizes"], json::parse(R"([{"id":"gold","weight":10},{"id":"silver","weight":40}])")) << r.body;
  EXPECT_EQ(e0["miss_weight"], 50) << r.body;
  EXPECT_EQ(e0["epoch_size"], 100) << r.body;
  EXPECT_TRUE(e0["seed"].is_null()) << "the seed of a running epoch must stay secret\n" << r.body;
}

TEST(ApiTest, ActivitiesListAndPagination) {
  json config = json::object();
  for (const char* id : {"alpha", "beta", "gamma"}) {
    config["activities"][id] = activity_json(std::string("Activity ") + id, 5, {prize_json("p", 5, 10)});
  }
  FairdrawServer server(config);
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  const HttpResponse all = c.get("/activities");
  ASSERT_EQ(all.status, 200) << all.describe();
  const json list = all.json();
  ASSERT_TRUE(list.is_object() && list["items"].is_array()) << all.body;
  EXPECT_TRUE(list.contains("next") && list["next"].is_null()) << all.body;
  ASSERT_EQ(list["items"].size(), 3u) << all.body;
  for (const json& a : list["items"]) {
    for (const char* key : {"id", "name", "status", "epoch_size", "draws", "miss_weight", "prizes"}) {
      EXPECT_TRUE(a.contains(key)) << "activity lacks " << key << ": " << a.dump();
    }
    EXPECT_EQ(a["status"], "active") << a.dump();
    EXPECT_EQ(a["epoch_size"], 10) << a.dump();
    ASSERT_TRUE(a["prizes"].is_array() && a["prizes"].size() == 1) << a.dump();
    EXPECT_EQ(a["prizes"][0]["remaining"], 10) << a.dump();
  }

  std::set<std::string> seen;
  std::string target = "/activities?limit=1";
  int pages = 0;
  for (; pages < 10; ++pages) {
    const HttpResponse page = c.get(target);
    ASSERT_EQ(page.status, 200) << target << "\n" << page.describe();
    const json body = page.json();
    ASSERT_TRUE(body["items"].is_array() && body["items"].size() <= 1) << target << "\n" << page.body;
    for (const json& a : body["items"]) {
      EXPECT_TRUE(seen.insert(a["id"].get<std::string>()).second) << "repeated " << a["id"] << " at " << target;
    }
    if (body["next"].is_null()) break;
    ASSERT_TRUE(body["next"].is_string()) << "the cursor must be an opaque string\n" << page.body;
    ASSERT_EQ(body["items"].size(), 1u) << page.body;
    target = "/activities?limit=1&cursor=" + body["next"].get<std::string>();
  }
  EXPECT_EQ(seen, (std::set<std::string>{"alpha", "beta", "gamma"}));
  EXPECT_LE(pages, 3) << "three activities with limit=1 need at most four pages";
}

TEST(ApiTest, UserDrawsPagination) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  std::set<std::string> alice_a1;
  for (int i = 0; i < 5; ++i) {
    const HttpResponse r = post_draw(c, "a1", "alice", "alice-" + std::to_string(i));
    ASSERT_TRUE(is_draw(r, "a1", "alice"));
    alice_a1.insert(r.json()["draw_id"].get<std::string>());
  }
  ASSERT_TRUE(is_draw(post_draw(c, "a2", "alice", "alice-a2"), "a2", "alice"));
  ASSERT_TRUE(is_draw(post_draw(c, "a1", "bob", "bob-1"), "a1", "bob"));
  ASSERT_TRUE(is_draw(post_draw(c, "a1", "carol smith", "carol-1"), "a1", "carol smith"));

  std::set<std::string> seen;
  std::int64_t last_seq = std::numeric_limits<std::int64_t>::max();
  std::string target = "/users/alice/draws?activity_id=a1&limit=2";
  std::vector<std::size_t> sizes;
  for (int pages = 0; pages < 10; ++pages) {
    const HttpResponse page = c.get(target);
    ASSERT_EQ(page.status, 200) << target << "\n" << page.describe();
    const json body = page.json();
    ASSERT_TRUE(body.is_object() && body["items"].is_array() && body.contains("next")) << page.body;
    sizes.push_back(body["items"].size());
    for (const json& d : body["items"]) {
      for (const char* key : {"draw_id", "activity_id", "user_id", "seq", "epoch", "slot", "won", "prize",
                              "drawn_at_ms", "candidate_id"}) {
        EXPECT_TRUE(d.contains(key)) << "item lacks " << key << ": " << d.dump();
      }
      EXPECT_EQ(d["user_id"], "alice") << d.dump();
      EXPECT_EQ(d["activity_id"], "a1") << d.dump();
      EXPECT_LT(d["seq"].get<std::int64_t>(), last_seq) << "not newest first: " << page.body;
      last_seq = d["seq"].get<std::int64_t>();
      seen.insert(d["draw_id"].get<std::string>());
    }
    if (body["next"].is_null()) break;
    ASSERT_TRUE(body["next"].is_string()) << page.body;
    target = "/users/alice/draws?activity_id=a1&limit=2&cursor=" + body["next"].get<std::string>();
  }
  EXPECT_EQ(seen, alice_a1);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{2, 2, 1}));

  const HttpResponse everything = c.get("/users/alice/draws");
  ASSERT_EQ(everything.status, 200) << everything.describe();
  EXPECT_EQ(everything.json()["items"].size(), 6u) << everything.body;
  const HttpResponse carol = c.get("/users/carol%20smith/draws?activity_id=a1");
  ASSERT_EQ(carol.status, 200) << carol.describe();
  ASSERT_EQ(carol.json()["items"].size(), 1u) << carol.body;
  EXPECT_EQ(carol.json()["items"][0]["user_id"], "carol smith") << carol.body;
}

TEST(ApiTest, AuditTrailPagination) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  std::vector<json> draws;
  for (int i = 0; i < 5; ++i) {
    const HttpResponse r = post_draw(c, "a1", "user-" + std::to_string(i), "t-" + std::to_string(i));
    ASSERT_TRUE(is_draw(r, "a1", "user-" + std::to_string(i)));
    draws.push_back(r.json());
  }
  const std::set<std::string> keys = {"seq", "draw_id", "epoch", "slot", "candidate_id", "prize_id", "won", "drawn_at_ms"};
  auto check_page = [&](const std::string& target, std::vector<std::int64_t> seqs, json next) {
    const HttpResponse page = c.get(target);
    ASSERT_EQ(page.status, 200) << target << "\n" << page.describe();
    const json body = page.json();
    ASSERT_TRUE(body.is_object() && body["items"].is_array()) << page.body;
    std::vector<std::int64_t> got;
    for (const json& item : body["items"]) {
      std::set<std::string> item_keys;
      for (const auto& [key, value] : item.items()) item_keys.insert(key);
      EXPECT_EQ(item_keys, keys) << target << ": " << item.dump();
      const std::int64_t seq = item["seq"].get<std::int64_t>();
      got.push_back(seq);
      if (seq >= 0 && seq < static_cast<std::int64_t>(draws.size())) {
        const json& d = draws[static_cast<std::size_t>(seq)];
        EXPECT_EQ(item["draw_id"], d["draw_id"]) << item.dump();
        EXPECT_EQ(item["won"], d["won"]) << item.dump();
        EXPECT_EQ(item["epoch"], d["epoch"]) << item.dump();
        EXPECT_EQ(item["slot"], d["slot"]) << item.dump();
        EXPECT_EQ(item["prize_id"], d["won"].get<bool>() ? d["prize"]["id"] : json(nullptr)) << item.dump();
      }
    }
    EXPECT_EQ(got, seqs) << target << "\n" << page.body;
    EXPECT_EQ(body["next"], next) << target << "\n" << page.body;
  };
  check_page("/activities/a1/draws?limit=2", {0, 1}, 1);
  check_page("/activities/a1/draws?after_seq=1&limit=2", {2, 3}, 3);
  check_page("/activities/a1/draws?after_seq=3&limit=2", {4}, nullptr);
  check_page("/activities/a1/draws?after_seq=4", {}, nullptr);
  check_page("/activities/a1/draws", {0, 1, 2, 3, 4}, nullptr);
}

TEST(ApiTest, EveryResponseHasRequestId) {
  FairdrawServer server(main_config());
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  const std::vector<HttpResponse> responses = {
      c.get("/healthz"),
      c.get("/readyz"),
      c.get("/metrics"),
      c.get("/activities"),
      c.get("/activities/a1"),
      c.get("/activities/a1/fairness"),
      c.get("/activities/a1/draws"),
      post_draw(c, "a1", "alice", "rid"),
      c.request("POST", "/tokens"),
      c.get("/nowhere"),
      c.request("PATCH", "/draw"),
      c.put_json("/admin/activities/x", activity_json("x", 1, {prize_json("p", 1, 1)})),
      c.request("OPTIONS", "/draw", {{"Origin", "https://a.example"}, {"Access-Control-Request-Method", "POST"}}),
  };
  for (const HttpResponse& r : responses) {
    ASSERT_NE(r.status, 0) << r.describe();
    EXPECT_FALSE(r.header("x-request-id").value_or("").empty()) << r.describe();
  }
  // Generated ids differ.
  EXPECT_NE(responses[0].header("x-request-id"), responses[1].header("x-request-id"));
}

}  // namespace
}  // namespace fairdraw::test
