// JSON codec: parsing the admin activity body (echoes, unknown and bad fields), round trips, and the shapes of draw, audit and fairness documents.
#include "fairdraw/app/json_codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fairdraw/engine/deck.hpp"

namespace fairdraw::app {
namespace {

using nlohmann::json;

// The activity body exactly as DESIGN.md section 3 shows it, every field set.
json design_body() {
  return json::parse(R"({
    "name": "Spring lottery",
    "starts_at_ms": 1700000000000,
    "ends_at_ms": 1800000000000,
    "time_zone": "Europe/Paris",
    "max_draws_per_user": 5,
    "max_draws_per_user_per_day": 2,
    "miss_weight": 90,
    "prizes": [
      {"id": "gold", "name": "Gold cup", "weight": 1, "stock": 1},
      {"id": "silver", "name": "Silver cup", "weight": 9, "stock": 20}
    ]
  })");
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.insert(key);
  return keys;
}

void expect_same_config(const ActivityConfig& got, const ActivityConfig& want) {
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.starts_at_ms, want.starts_at_ms);
  EXPECT_EQ(got.ends_at_ms, want.ends_at_ms);
  EXPECT_EQ(got.time_zone, want.time_zone);
  EXPECT_EQ(got.max_draws_per_user, want.max_draws_per_user);
  EXPECT_EQ(got.max_draws_per_user_per_day, want.max_draws_per_user_per_day);
  EXPECT_EQ(got.miss_weight, want.miss_weight);
  ASSERT_EQ(got.prizes.size(), want.prizes.size());
  for (std::size_t i = 0; i < got.prizes.size(); ++i) {
    SCOPED_TRACE("prize " + std::to_string(i));
    EXPECT_EQ(got.prizes[i].id, want.prizes[i].id);
    EXPECT_EQ(got.prizes[i].name, want.prizes[i].name);
    EXPECT_EQ(got.prizes[i].weight, want.prizes[i].weight);
    EXPECT_EQ(got.prizes[i].stock, want.prizes[i].stock);
  }
}

// ---- parse_activity ---------------------------------------------------------------------------

TEST(JsonCodecTest, ParsesDesignBody) {
  auto parsed = parse_activity(design_body());
  ASSERT_TRUE(parsed.ok()) << parsed.error().detail;
  const ActivityConfig& c = parsed.value();
  EXPECT_EQ(c.name, "Spring lottery");
  EXPECT_EQ(c.starts_at_ms, 1700000000000);
  EXPECT_EQ(c.ends_at_ms, 1800000000000);
  EXPECT_EQ(c.time_zone, "Europe/Paris");
  EXPECT_EQ(c.max_draws_per_user, 5);
  EXPECT_EQ(c.max_draws_per_user_per_day, 2);
  EXPECT_EQ(c.miss_weight, 90U);
  ASSERT_EQ(c.prizes.size(), 2U);
  EXPECT_EQ(c.prizes[0].id, "gold");
  EXPECT_EQ(c.prizes[0].name, "Gold cup");
  EXPECT_EQ(c.prizes[0].weight, 1U);
  EXPECT_EQ(c.prizes[0].stock, 1);
  EXPECT_EQ(c.prizes[1].id, "silver");
  EXPECT_EQ(c.prizes[1].weight, 9U);
  EXPECT_EQ(c.prizes[1].stock, 20);
  EXPECT_EQ(c.deck_size(), 100U);
}

TEST(JsonCodecTest, OptionalFieldsMayBeAbsentOrNull) {
  const json minimal = {{"name", "n"}, {"miss_weight", 1}, {"prizes", json::array()}};
  auto parsed = parse_activity(minimal);
  ASSERT_TRUE(parsed.ok()) << parsed.error().detail;
  EXPECT_FALSE(parsed->starts_at_ms.has_value());
  EXPECT_FALSE(parsed->ends_at_ms.has_value());
  EXPECT_FALSE(parsed->max_draws_per_user.has_value());
  EXPECT_FALSE(parsed->max_draws_per_user_per_day.has_value());
  EXPECT_EQ(parsed->time_zone, "UTC") << "the default time zone";
  EXPECT_TRUE(parsed->prizes.empty());

  json with_nulls = minimal;
  for (const char* key : {"starts_at_ms", "ends_at_ms", "time_zone", "max_draws_per_user",
                          "max_draws_per_user_per_day"}) {
    with_nulls[key] = nullptr;
  }
  auto parsed_nulls = parse_activity(with_nulls);
  ASSERT_TRUE(parsed_nulls.ok()) << parsed_nulls.error().detail;
  expect_same_config(parsed_nulls.value(), parsed.value());
}

TEST(JsonCodecTest, EchoedReadOnlyFieldsAreIgnored) {
  json body = design_body();
  body["id"] = "spring";
  body["status"] = "active";
  body["epoch_size"] = 100;
  body["prizes"][0]["remaining"] = 0;
  body["prizes"][1]["remaining"] = 17;
  auto echoed = parse_activity(body);
  ASSERT_TRUE(echoed.ok()) << echoed.error().detail;
  auto plain = parse_activity(design_body());
  ASSERT_TRUE(plain.ok());
  expect_same_config(echoed.value(), plain.value());
  EXPECT_EQ(echoed->prizes[0].stock, 1) << "remaining must not overwrite stock";
}

TEST(JsonCodecTest, WholeGetDocumentParsesBack) {
  auto config = parse_activity(design_body());
  ASSERT_TRUE(config.ok());
  ActivityView view;
  view.id = "spring";
  view.config = config.value();
  view.status = ActivityStatus::active;
  view.epoch_size = config->deck_size();
  view.draws = 42;
  for (const Prize& p : config->prizes) view.prizes.push_back(PrizeView{p, p.stock - 1});
  const json got = activity_view_json(view);
  EXPECT_EQ(got["id"], "spring");
  EXPECT_EQ(got["status"], "active");
  EXPECT_EQ(got["epoch_size"], 100);
  EXPECT_EQ(got["prizes"][1]["remaining"], 19);

  auto back = parse_activity(got);
  ASSERT_TRUE(back.ok()) << "a GET body must be accepted by PUT: " << back.error().detail;
  expect_same_config(back.value(), config.value());
}

TEST(JsonCodecTest, UnknownFieldsAreRefusedByName) {
  struct Case {
    std::string what;
    json body;
    std::string field;
  };
  json top = design_body();
  top["colour"] = "red";
  json prize = design_body();
  prize["prizes"][1]["colour"] = "red";
  json typo = design_body();
  typo.erase("miss_weight");
  typo["miss_wieght"] = 1;
  const std::vector<Case> cases = {
      {"top level", top, "colour"},
      {"in a prize", prize, "prizes[1].colour"},
      {"a typo of a required field", typo, "miss_wieght"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto parsed = parse_activity(c.body);
    ASSERT_FALSE(parsed.ok()) << "accepted " << c.body.dump();
    EXPECT_EQ(parsed.error().kind, ErrorKind::invalid_request);
    EXPECT_NE(parsed.error().detail.find(c.field), std::string::npos)
        << "detail '" << parsed.error().detail << "' must name " << c.field;
    EXPECT_NE(parsed.error().detail.find("unknown"), std::string::npos) << parsed.error().detail;
  }
}

// One bad field per row: the body is the DESIGN.md body with `pointer` set to `value`
// (or removed when `remove`), and the error must name `field`.
struct BadField {
  std::string pointer;  // JSON pointer into design_body()
  json value;
  std::string field;    // what the detail must start with
  bool remove = false;
};

TEST(JsonCodecTest, EachBadFieldIsNamed) {
  const std::uint64_t huge = std::numeric_limits<std::uint64_t>::max();
  const std::vector<BadField> cases = {
      {"/name", nullptr, "name", true},
      {"/name", 7, "name"},
      {"/name", "", "name"},
      {"/name", std::string(257, 'n'), "name"},
      {"/name", nullptr, "name"},
      {"/starts_at_ms", "soon", "starts_at_ms"},
      {"/starts_at_ms", 1.5, "starts_at_ms"},
      {"/starts_at_ms", -1, "starts_at_ms"},
      {"/starts_at_ms", huge, "starts_at_ms"},
      {"/ends_at_ms", true, "ends_at_ms"},
      {"/ends_at_ms", 1700000000000, "ends_at_ms"},  // not after starts_at_ms
      {"/ends_at_ms", 1600000000000, "ends_at_ms"},  // before starts_at_ms
      {"/time_zone", 1, "time_zone"},
      {"/time_zone", "", "time_zone"},
      {"/time_zone", "Mars/Olympus_Mons", "time_zone"},
      {"/time_zone", "../../etc/passwd", "time_zone"},
      {"/max_draws_per_user", 0, "max_draws_per_user"},
      {"/max_draws_per_user", -3, "max_draws_per_user"},
      {"/max_draws_per_user", "5", "max_draws_per_user"},
      {"/max_draws_per_user_per_day", 0, "max_draws_per_user_per_day"},
      {"/max_draws_per_user_per_day", 2.5, "max_draws_per_user_per_day"},
      {"/miss_weight", nullptr, "miss_weight", true},
      {"/miss_weight", nullptr, "miss_weight"},
      {"/miss_weight", -1, "miss_weight"},
      {"/miss_weight", "90", "miss_weight"},
      {"/miss_weight", 10'000'001, "miss_weight"},
      {"/miss_weight", huge, "miss_weight"},
      {"/prizes", nullptr, "prizes", true},
      {"/prizes", json::object(), "prizes"},
      {"/prizes", "gold", "prizes"},
      {"/prizes/0", "gold", "prizes[0]"},
      {"/prizes/1/id", nullptr, "prizes[1].id", true},
      {"/prizes/1/id", 5, "prizes[1].id"},
      {"/prizes/1/id", "", "prizes[1].id"},
      {"/prizes/1/id", "has space", "prizes[1].id"},
      {"/prizes/1/id", std::string(129, 'x'), "prizes[1].id"},
      {"/prizes/1/id", "gold", "prizes[1].id"},  // duplicate
      {"/prizes/1/name", nullptr, "prizes[1].name", true},
      {"/prizes/1/name", "", "prizes[1].name"},
      {"/prizes/1/name", json::array(), "prizes[1].name"},
      {"/prizes/1/weight", nullptr, "prizes[1].weight", true},
      {"/prizes/1/weight", -1, "prizes[1].weight"},
      {"/prizes/1/weight", 1.0, "prizes[1].weight"},
      {"/prizes/1/weight", 10'000'001, "prizes[1].weight"},
      {"/prizes/1/stock", nullptr, "prizes[1].stock", true},
      {"/prizes/1/stock", -1, "prizes[1].stock"},
      {"/prizes/1/stock", "20", "prizes[1].stock"},
      {"/prizes/1/stock", huge, "prizes[1].stock"},
  };
  for (const BadField& c : cases) {
    json body = design_body();
    const json::json_pointer ptr(c.pointer);
    if (c.remove) {
      body[ptr.parent_pointer()].erase(ptr.back());
    } else {
      body[ptr] = c.value;
    }
    SCOPED_TRACE(c.pointer + (c.remove ? " removed" : " = " + c.value.dump()));
    auto parsed = parse_activity(body);
    ASSERT_FALSE(parsed.ok()) << "accepted " << body.dump();
    EXPECT_EQ(parsed.error().kind, ErrorKind::invalid_request);
    EXPECT_TRUE(parsed.error().detail.starts_with(c.field + ":"))
        << "detail '" << parsed.error().detail << "' must start with '" << c.field << ":'";
  }
}

TEST(JsonCodecTest, DeckSizeLimitsAreNamed) {
  struct Case {
    std::string what;
    std::uint32_t miss_weight;
    std::uint32_t weight;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"empty deck", 0, 0, false},
      {"one slot", 1, 0, true},
      {"exactly 10^7", 5'000'000, 5'000'000, true},
      {"10^7 + 1", 5'000'001, 5'000'000, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json body = {{"name", "n"},
                 {"miss_weight", c.miss_weight},
                 {"prizes", {{{"id", "p"}, {"name", "P"}, {"weight", c.weight}, {"stock", 1}}}}};
    auto parsed = parse_activity(body);
    EXPECT_EQ(parsed.ok(), c.ok) << (parsed.ok() ? "" : parsed.error().detail);
    if (!parsed.ok()) {
      EXPECT_TRUE(parsed.error().detail.starts_with("prizes:")) << parsed.error().detail;
    }
  }
}

TEST(JsonCodecTest, NonObjectBodyIsRefused) {
  for (const json& body : {json::array(), json("x"), json(1), json(nullptr)}) {
    SCOPED_TRACE(body.dump());
    auto parsed = parse_activity(body);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error().kind, ErrorKind::invalid_request);
  }
}

TEST(JsonCodecTest, ConfigRoundTrips) {
  ActivityConfig full;
  full.name = "Full \"quoted\" \xC3\xA9t\xC3\xA9";
  full.starts_at_ms = 0;
  full.ends_at_ms = 4'102'444'800'000;
  full.time_zone = "America/New_York";
  full.max_draws_per_user = 1;
  full.max_draws_per_user_per_day = 1;
  full.miss_weight = 0;
  full.prizes = {{"a", "A", 3, 0}, {"b.b", "B", 0, 7}, {"c-c_c~", "C", 10'000'000 - 3, 1'000'000'000'000}};

  ActivityConfig minimal;
  minimal.name = "m";
  minimal.miss_weight = 1;

  for (const ActivityConfig* config : {&full, &minimal}) {
    SCOPED_TRACE(config->name);
    ASSERT_TRUE(validate_activity(*config).ok()) << validate_activity(*config).error().detail;
    const json encoded = activity_config_json(*config);
    EXPECT_EQ(keys_of(encoded),
              (std::set<std::string>{"name", "starts_at_ms", "ends_at_ms", "time_zone",
                                     "max_draws_per_user", "max_draws_per_user_per_day",
                                     "miss_weight", "prizes"}));
    for (const json& p : encoded["prizes"]) {
      EXPECT_EQ(keys_of(p), (std::set<std::string>{"id", "name", "weight", "stock"}));
    }
    // Through text too, as the API stores and serves it.
    auto decoded = parse_activity(json::parse(encoded.dump()));
    ASSERT_TRUE(decoded.ok()) << decoded.error().detail << " for " << encoded.dump();
    expect_same_config(decoded.value(), *config);
    EXPECT_EQ(activity_config_json(decoded.value()), encoded) << "encoding is canonical";
  }
}

// ---- draw, audit and fairness documents ------------------------------------------------------

DrawRecord sample_record() {
  DrawRecord r;
  r.draw_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  r.activity_id = "spring";
  r.seq = 41;
  r.epoch = 2;
  r.slot = 7;
  r.user_id = "alice";
  r.idempotency_key = "secret-key";
  r.drawn_at_ms = 1'700'000'000'123;
  return r;
}

DrawRecord won_record() {
  DrawRecord r = sample_record();
  r.candidate_id = "gold";
  r.prize_id = "gold";
  r.prize_name = "Gold cup";
  r.won = true;
  return r;
}

DrawRecord stock_out_record() {
  DrawRecord r = sample_record();
  r.candidate_id = "gold";  // the deck said gold, but none was left
  r.won = false;
  return r;
}

DrawRecord deck_miss_record() { return sample_record(); }

const std::set<std::string> kDrawKeys = {"draw_id", "activity_id", "user_id", "seq", "epoch",
                                         "slot", "won", "prize", "drawn_at_ms"};

TEST(JsonCodecTest, DrawJsonOnAWin) {
  const json j = draw_json(won_record());
  EXPECT_EQ(keys_of(j), kDrawKeys) << j.dump();
  EXPECT_EQ(j["draw_id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV");
  EXPECT_EQ(j["activity_id"], "spring");
  EXPECT_EQ(j["user_id"], "alice");
  EXPECT_EQ(j["seq"], 41);
  EXPECT_EQ(j["epoch"], 2);
  EXPECT_EQ(j["slot"], 7);
  EXPECT_EQ(j["won"], true);
  EXPECT_EQ(j["drawn_at_ms"], 1'700'000'000'123);
  EXPECT_EQ(j["prize"], (json{{"id", "gold"}, {"name", "Gold cup"}}));
  EXPECT_EQ(keys_of(j["prize"]), (std::set<std::string>{"id", "name"}));
}

TEST(JsonCodecTest, DrawJsonOnAMiss) {
  for (const DrawRecord& r : {stock_out_record(), deck_miss_record()}) {
    SCOPED_TRACE(r.candidate_id ? "stock-out" : "deck miss");
    const json j = draw_json(r);
    EXPECT_EQ(keys_of(j), kDrawKeys) << j.dump();
    EXPECT_EQ(j["won"], false);
    ASSERT_TRUE(j.contains("prize"));
    EXPECT_TRUE(j["prize"].is_null()) << "prize is null on a miss: " << j.dump();
  }
}

TEST(JsonCodecTest, DrawJsonWithCandidate) {
  const json won = draw_json(won_record(), true);
  std::set<std::string> keys = kDrawKeys;
  keys.insert("candidate_id");
  EXPECT_EQ(keys_of(won), keys);
  EXPECT_EQ(won["candidate_id"], "gold");
  EXPECT_EQ(draw_json(stock_out_record(), true)["candidate_id"], "gold");
  EXPECT_TRUE(draw_json(deck_miss_record(), true)["candidate_id"].is_null());
}

TEST(JsonCodecTest, DrawJsonNeverLeaksTheKey) {
  EXPECT_EQ(draw_json(won_record(), true).dump().find("secret-key"), std::string::npos);
  EXPECT_EQ(audit_json(won_record()).dump().find("secret-key"), std::string::npos);
}

TEST(JsonCodecTest, DrawBodyIsTheDrawJson) {
  const DrawRecord r = won_record();
  EXPECT_EQ(json::parse(draw_body(r)), draw_json(r));
  DrawRecord bad = r;
  bad.user_id = "bad \xFF utf8";
  EXPECT_NO_THROW({
    const json parsed = json::parse(draw_body(bad));
    EXPECT_TRUE(parsed.is_object());
  }) << "invalid UTF-8 in a user id must not break the body";
}

TEST(JsonCodecTest, AuditJsonShape) {
  const std::set<std::string> keys = {"seq", "draw_id", "epoch", "slot", "candidate_id",
                                      "prize_id", "won", "drawn_at_ms"};
  const json won = audit_json(won_record());
  EXPECT_EQ(keys_of(won), keys) << "no user ids in the audit trail: " << won.dump();
  EXPECT_EQ(won["seq"], 41);
  EXPECT_EQ(won["draw_id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV");
  EXPECT_EQ(won["epoch"], 2);
  EXPECT_EQ(won["slot"], 7);
  EXPECT_EQ(won["candidate_id"], "gold");
  EXPECT_EQ(won["prize_id"], "gold");
  EXPECT_EQ(won["won"], true);
  EXPECT_EQ(won["drawn_at_ms"], 1'700'000'000'123);

  const json stock_out = audit_json(stock_out_record());
  EXPECT_EQ(keys_of(stock_out), keys);
  EXPECT_EQ(stock_out["candidate_id"], "gold");
  EXPECT_TRUE(stock_out["prize_id"].is_null()) << "null on a stock-out: " << stock_out.dump();
  EXPECT_EQ(stock_out["won"], false);

  const json miss = audit_json(deck_miss_record());
  EXPECT_TRUE(miss["candidate_id"].is_null());
  EXPECT_TRUE(miss["prize_id"].is_null());

  DrawRecord inconsistent = stock_out_record();
  inconsistent.prize_id = "gold";  // a prize id on a record that did not win
  EXPECT_TRUE(audit_json(inconsistent)["prize_id"].is_null()) << "prize_id is null unless won";
}

TEST(JsonCodecTest, FairnessJsonRevealsSeedOnlyWhenRevealed) {
  Seed seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i * 7 + 1);

  EpochView over;
  over.record.activity_id = "spring";
  over.record.epoch = 0;
  over.record.seed = seed;
  over.record.commitment = commitment_hex(seed);
  over.record.prizes = {{"gold", 1}, {"silver", 9}};
  over.record.miss_weight = 90;
  over.record.epoch_size = 100;
  over.revealed = true;
  over.first_seq = 0;

  EpochView current = over;
  current.record.epoch = 1;
  current.revealed = false;
  current.first_seq = 100;

  EpochView ahead = over;
  ahead.record.epoch = 2;
  ahead.revealed = false;
  ahead.first_seq = std::nullopt;

  const json doc = fairness_json("spring", {over, current, ahead});
  EXPECT_EQ(keys_of(doc), (std::set<std::string>{"activity_id", "epochs"}));
  EXPECT_EQ(doc["activity_id"], "spring");
  ASSERT_TRUE(doc["epochs"].is_array());
  ASSERT_EQ(doc["epochs"].size(), 3U);

  const std::set<std::string> keys = {"epoch", "first_seq", "prizes", "miss_weight",
                                      "epoch_size", "commitment", "seed"};
  for (const json& e : doc["epochs"]) {
    SCOPED_TRACE(e.dump());
    EXPECT_EQ(keys_of(e), keys);
    EXPECT_EQ(e["commitment"], commitment_hex(seed));
    EXPECT_EQ(e["commitment"].get<std::string>().size(), 64U);
    EXPECT_EQ(e["miss_weight"], 90);
    EXPECT_EQ(e["epoch_size"], 100);
    EXPECT_EQ(e["prizes"], json::parse(R"([{"id":"gold","weight":1},{"id":"silver","weight":9}])"));
  }
  const json& e0 = doc["epochs"][0];
  EXPECT_EQ(e0["epoch"], 0);
  EXPECT_EQ(e0["first_seq"], 0);
  EXPECT_EQ(e0["seed"], to_hex(seed)) << "a finished epoch reveals its seed";
  EXPECT_EQ(e0["seed"].get<std::string>().size(), 64U);

  const json& e1 = doc["epochs"][1];
  EXPECT_EQ(e1["epoch"], 1);
  EXPECT_EQ(e1["first_seq"], 100);
  EXPECT_TRUE(e1["seed"].is_null()) << "the current epoch's seed must stay secret";

  const json& e2 = doc["epochs"][2];
  EXPECT_EQ(e2["epoch"], 2);
  EXPECT_TRUE(e2["first_seq"].is_null()) << "an epoch committed ahead has no first_seq";
  EXPECT_TRUE(e2["seed"].is_null());

  const std::string text = doc.dump();
  std::size_t occurrences = 0;
  for (auto at = text.find(to_hex(seed)); at != std::string::npos; at = text.find(to_hex(seed), at + 1)) {
    ++occurrences;
  }
  EXPECT_EQ(occurrences, 1U) << "the seed appears once, in the revealed epoch only: " << text;
}

TEST(JsonCodecTest, FairnessJsonWithNoEpochs) {
  const json doc = fairness_json("new", {});
  EXPECT_EQ(doc["activity_id"], "new");
  EXPECT_TRUE(doc["epochs"].is_array());
  EXPECT_TRUE(doc["epochs"].empty());
}

}  // namespace
}  // namespace fairdraw::app
