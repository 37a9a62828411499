// Integration tests of DESIGN.md section 4: commitments, revealed seeds and every drawn candidate checked with an independent deck implementation.
#include <openssl/sha.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Bytes = std::vector<unsigned char>;

// ---- An independent implementation of the deck (DESIGN.md section 4) ----

Bytes sha256(const Bytes& data) {
  Bytes out(SHA256_DIGEST_LENGTH);
  SHA256(data.data(), data.size(), out.data());
  return out;
}

std::string to_hex(const Bytes& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}

std::optional<Bytes> from_hex(const std::string& hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return std::nullopt;
  Bytes out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return out;
}

// Block k = SHA-256(seed || uint64_be(k)); four big-endian 64-bit words per block, in order.
class WordStream {
 public:
  explicit WordStream(Bytes seed) : seed_(std::move(seed)) {}
  std::uint64_t next() {
    if (used_ == 4) {
      Bytes input = seed_;
      for (int shift = 56; shift >= 0; shift -= 8) input.push_back(static_cast<unsigned char>(block_index_ >> shift));
      block_ = sha256(input);
      ++block_index_;
      used_ = 0;
    }
    std::uint64_t word = 0;
    for (int b = 0; b < 8; ++b) word = (word << 8) | block_[static_cast<std::size_t>(used_ * 8 + b)];
    ++used_;
    return word;
  }

 private:
  Bytes seed_;
  Bytes block_;
  std::uint64_t block_index_ = 0;
  int used_ = 4;
};

// The shuffled deck: entries are prize indexes in declaration order, -1 a miss.
std::vector<int> build_deck(const std::vector<std::uint32_t>& weights, std::uint32_t miss_weight, const Bytes& seed) {
  std::vector<int> deck;
  for (std::size_t p = 0; p < weights.size(); ++p) deck.insert(deck.end(), weights[p], static_cast<int>(p));
  deck.insert(deck.end(), miss_weight, -1);
  WordStream words(seed);
  for (std::size_t i = deck.size() > 0 ? deck.size() - 1 : 0; i >= 1; --i) {
    const std::uint64_t bound = i + 1;
    const std::uint64_t rest = (std::uint64_t{0} - bound) % bound;  // 2^64 mod bound
    std::uint64_t u = words.next();
    while (rest != 0 && u >= std::uint64_t{0} - rest) u = words.next();  // reject u >= 2^64 - rest
    std::swap(deck[i], deck[static_cast<std::size_t>(u % bound)]);
  }
  return deck;
}

// ---- Helpers against the service ----

json get_fairness(HttpClient& c, const std::string& activity_id) {
  const HttpResponse r = c.get("/activities/" + activity_id + "/fairness");
  EXPECT_EQ(r.status, 200) << r.describe();
  return r.json();
}

const json* find_epoch(const json& doc, std::int64_t epoch) {
  if (!doc.is_object() || !doc.contains("epochs")) return nullptr;
  for (const json& e : doc["epochs"]) {
    if (e.value("epoch", std::int64_t{-1}) == epoch) return &e;
  }
  return nullptr;
}

// Polls the fairness document (bounded) until `epoch` has a seed.
json wait_for_seed(HttpClient& c, const std::string& activity_id, std::int64_t epoch) {
  json doc;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  do {
    doc = get_fairness(c, activity_id);
    const json* e = find_epoch(doc, epoch);
    if (e && e->contains("seed") && !(*e)["seed"].is_null()) return doc;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return doc;
}

// Checks a revealed epoch (seed matches commitment) and every trail item of it against the
// recomputed deck: candidate_id == deck[seq - first_seq].
void expect_epoch_verifies(const json& epoch, const std::vector<json>& trail) {
  ASSERT_TRUE(epoch["seed"].is_string()) << "seed not revealed: " << epoch.dump();
  const auto seed = from_hex(epoch["seed"].get<std::string>());
  ASSERT_TRUE(seed && seed->size() == 32) << "the seed must be 32 bytes of hex: " << epoch.dump();
  EXPECT_EQ(to_hex(sha256(*seed)), epoch["commitment"]) << "SHA-256(seed) != commitment: " << epoch.dump();
  std::vector<std::uint32_t> weights;
  std::vector<std::string> ids;
  for (const json& p : epoch["prizes"]) {
    ids.push_back(p["id"].get<std::string>());
    weights.push_back(p["weight"].get<std::uint32_t>());
  }
  const std::vector<int> deck = build_deck(weights, epoch["miss_weight"].get<std::uint32_t>(), *seed);
  ASSERT_EQ(deck.size(), epoch["epoch_size"].get<std::size_t>()) << epoch.dump();
  const std::int64_t e = epoch["epoch"].get<std::int64_t>();
  const std::int64_t first = epoch["first_seq"].get<std::int64_t>();
  int checked = 0;
  for (const json& item : trail) {
    if (item["epoch"] != e) continue;
    ++checked;
    const std::int64_t slot = item["slot"].get<std::int64_t>();
    EXPECT_EQ(slot, item["seq"].get<std::int64_t>() - first) << item.dump();
    ASSERT_GE(slot, 0) << item.dump();
    ASSERT_LT(static_cast<std::size_t>(slot), deck.size()) << item.dump();
    const int entry = deck[static_cast<std::size_t>(slot)];
    const json expected = entry < 0 ? json(nullptr) : json(ids[static_cast<std::size_t>(entry)]);
    EXPECT_EQ(item["candidate_id"], expected) << "epoch " << e << " slot " << slot << ": " << item.dump();
    // Stock is plentiful: a prize candidate wins it, a deck miss is a miss.
    EXPECT_EQ(item["prize_id"], expected) << item.dump();
    EXPECT_EQ(item["won"], entry >= 0) << item.dump();
  }
  EXPECT_GT(checked, 0) << "no trail item of epoch " << e;
}

json ten_slot_config(const std::string& id) {
  json config = json::object();
  config["activities"][id] = activity_json("Fair", 5, {prize_json("a", 2, 100000), prize_json("b", 3, 100000)});
  return config;
}

TEST(FairnessTest, DeckVectorsPassTheIndependentImplementation) {
  std::ifstream in(std::string(FAIRDRAW_TEST_DATA) + "/deck_vectors.json");
  ASSERT_TRUE(in) << "cannot read deck_vectors.json";
  std::stringstream text;
  text << in.rdbuf();
  const json vectors = json::parse(text.str(), nullptr, false);
  ASSERT_TRUE(vectors.is_object() && vectors["cases"].is_array()) << text.str();
  ASSERT_FALSE(vectors["cases"].empty());
  for (const json& test_case : vectors["cases"]) {
    SCOPED_TRACE(test_case.value("name", "?"));
    const auto seed = from_hex(test_case["seed_hex"].get<std::string>());
    ASSERT_TRUE(seed && seed->size() == 32);
    EXPECT_EQ(to_hex(sha256(*seed)), test_case["commitment"]);
    const std::vector<int> deck = build_deck(test_case["weights"].get<std::vector<std::uint32_t>>(),
                                             test_case["miss_weight"].get<std::uint32_t>(), *seed);
    if (test_case.contains("deck")) {
      EXPECT_EQ(deck, test_case["deck"].get<std::vector<int>>());
    }
    if (test_case.contains("deck_first_20")) {
      const auto first = test_case["deck_first_20"].get<std::vector<int>>();
      ASSERT_GE(deck.size(), first.size());
      EXPECT_EQ(std::vector<int>(deck.begin(), deck.begin() + static_cast<std::ptrdiff_t>(first.size())), first);
    }
    if (test_case.contains("deck_sha256")) {
      std::string joined;
      for (std::size_t i = 0; i < deck.size(); ++i) joined += (i ? "," : "") + std::to_string(deck[i]);
      EXPECT_EQ(to_hex(sha256(Bytes(joined.begin(), joined.end()))), test_case["deck_sha256"]);
    }
  }
}

TEST(FairnessTest, EpochSeedRevealedAfterWDrawsAndEveryCandidateVerifies) {
  FairdrawServer server(ten_slot_config("f"));
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();

  for (int i = 0; i < 9; ++i) {
    const HttpResponse r = post_draw(c, "f", "user-" + std::to_string(i), "f-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.json()["seq"], i) << r.body;
    EXPECT_EQ(r.json()["epoch"], 0) << r.body;
    EXPECT_EQ(r.json()["slot"], i) << r.body;
  }
  const json before = get_fairness(c, "f");
  const json* e0 = find_epoch(before, 0);
  ASSERT_NE(e0, nullptr) << before.dump();
  EXPECT_EQ((*e0)["first_seq"], 0) << before.dump();
  EXPECT_EQ((*e0)["epoch_size"], 10) << before.dump();
  EXPECT_EQ((*e0)["miss_weight"], 5) << before.dump();
  EXPECT_EQ((*e0)["prizes"], json::parse(R"([{"id":"a","weight":2},{"id":"b","weight":3}])")) << before.dump();
  const std::string commitment = (*e0)["commitment"].get<std::string>();
  EXPECT_EQ(commitment.size(), 64u) << before.dump();
  for (const json& e : before["epochs"]) {
    EXPECT_TRUE(e["seed"].is_null()) << "no seed may be published before its epoch is over: " << before.dump();
  }

  const HttpResponse tenth = post_draw(c, "f", "user-9", std::string("f-9"));
  ASSERT_EQ(tenth.status, 200) << tenth.describe();
  EXPECT_EQ(tenth.json()["slot"], 9) << tenth.body;

  const json after = wait_for_seed(c, "f", 0);
  const json* revealed = find_epoch(after, 0);
  ASSERT_NE(revealed, nullptr) << after.dump();
  EXPECT_EQ((*revealed)["commitment"], commitment) << "the commitment must not change";
  std::vector<json> trail;
  ASSERT_TRUE(fetch_audit_trail(c, "f", trail));
  ASSERT_EQ(trail.size(), 10u);
  expect_epoch_verifies(*revealed, trail);
  // Within the epoch every prize came up exactly its weight.
  std::map<std::string, int> counts;
  for (const json& item : trail) counts[item["candidate_id"].is_null() ? "" : item["candidate_id"].get<std::string>()]++;
  EXPECT_EQ(counts, (std::map<std::string, int>{{"", 5}, {"a", 2}, {"b", 3}}));

  // The 11th draw starts epoch 1 at slot 0, on a fresh commitment.
  const HttpResponse eleventh = post_draw(c, "f", "user-10", std::string("f-10"));
  ASSERT_EQ(eleventh.status, 200) << eleventh.describe();
  EXPECT_EQ(eleventh.json()["seq"], 10) << eleventh.body;
  EXPECT_EQ(eleventh.json()["epoch"], 1) << eleventh.body;
  EXPECT_EQ(eleventh.json()["slot"], 0) << eleventh.body;
  const json next = get_fairness(c, "f");
  const json* e1 = find_epoch(next, 1);
  ASSERT_NE(e1, nullptr) << next.dump();
  EXPECT_EQ((*e1)["first_seq"], 10) << next.dump();
  EXPECT_TRUE((*e1)["seed"].is_null()) << next.dump();
  EXPECT_NE((*e1)["commitment"], commitment) << next.dump();
}

TEST(FairnessTest, ReplacementEndsTheEpochAndStartsANewDeck) {
  FairdrawServer server(ten_slot_config("g"));
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  for (int i = 0; i < 3; ++i) {
    const HttpResponse r = post_draw(c, "g", "user-" + std::to_string(i), "g-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
  }
  const json before = get_fairness(c, "g");
  const json* e0_before = find_epoch(before, 0);
  ASSERT_NE(e0_before, nullptr) << before.dump();
  EXPECT_TRUE((*e0_before)["seed"].is_null()) << before.dump();
  const json commitment0 = (*e0_before)["commitment"];

  // Change the weights (W stays 10).
  const json changed = activity_json("Fair", 3, {prize_json("a", 4, 100000), prize_json("b", 3, 100000)});
  const HttpResponse put = c.put_json("/admin/activities/g", changed, admin_headers());
  ASSERT_EQ(put.status, 200) << put.describe();

  // The old epoch is over: its seed is revealed and its three draws verify.
  const json after_put = wait_for_seed(c, "g", 0);
  const json* e0 = find_epoch(after_put, 0);
  ASSERT_NE(e0, nullptr) << after_put.dump();
  EXPECT_EQ((*e0)["commitment"], commitment0);
  std::vector<json> trail;
  ASSERT_TRUE(fetch_audit_trail(c, "g", trail));
  ASSERT_EQ(trail.size(), 3u);
  expect_epoch_verifies(*e0, trail);

  // The next draw starts a new epoch on the new deck, at slot 0.
  const HttpResponse first_new = post_draw(c, "g", "user-3", std::string("g-3"));
  ASSERT_EQ(first_new.status, 200) << first_new.describe();
  EXPECT_EQ(first_new.json()["seq"], 3) << first_new.body;
  EXPECT_EQ(first_new.json()["slot"], 0) << first_new.body;
  const std::int64_t new_epoch = first_new.json()["epoch"].get<std::int64_t>();
  EXPECT_GT(new_epoch, 0) << first_new.body;
  const json doc = get_fairness(c, "g");
  const json* e_new = find_epoch(doc, new_epoch);
  ASSERT_NE(e_new, nullptr) << doc.dump();
  EXPECT_EQ((*e_new)["first_seq"], 3) << doc.dump();
  EXPECT_EQ((*e_new)["prizes"], json::parse(R"([{"id":"a","weight":4},{"id":"b","weight":3}])")) << doc.dump();
  EXPECT_EQ((*e_new)["miss_weight"], 3) << doc.dump();
  EXPECT_EQ((*e_new)["epoch_size"], 10) << doc.dump();
  EXPECT_TRUE((*e_new)["seed"].is_null()) << doc.dump();
  EXPECT_NE((*e_new)["commitment"], commitment0) << doc.dump();
  for (const json& e : doc["epochs"]) {
    if (e["epoch"].get<std::int64_t>() > 0 && e["epoch"].get<std::int64_t>() < new_epoch) {
      EXPECT_TRUE(e["first_seq"].is_null()) << "an epoch between the old and the new one must not hold draws: " << doc.dump();
    }
  }

  // Fill the new epoch; then its seed is revealed and all ten draws verify on the new weights.
  for (int i = 4; i < 13; ++i) {
    const HttpResponse r = post_draw(c, "g", "user-" + std::to_string(i), "g-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.json()["epoch"], new_epoch) << r.body;
    EXPECT_EQ(r.json()["slot"], i - 3) << r.body;
  }
  const json filled = wait_for_seed(c, "g", new_epoch);
  const json* e_done = find_epoch(filled, new_epoch);
  ASSERT_NE(e_done, nullptr) << filled.dump();
  ASSERT_TRUE(fetch_audit_trail(c, "g", trail));
  ASSERT_EQ(trail.size(), 13u);
  expect_epoch_verifies(*e_done, trail);
}

}  // namespace
}  // namespace fairdraw::test
