// libFuzzer target: bytes as the JSON body of POST /draw and PUT /admin/activities/x through Api::handle, and through parse_activity.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fairdraw/app/json_codec.hpp"
#include "fuzz_support.hpp"

namespace {

using fairdraw::fuzz::fail;

fairdraw::fuzz::World* world = nullptr;

fairdraw::http::Request json_request(std::string method, std::string target, std::string body) {
  fairdraw::http::Request r;
  r.method = std::move(method);
  r.target = r.path = std::move(target);
  r.headers = {{"content-type", "application/json"}, {"content-length", std::to_string(body.size())}};
  r.body = std::move(body);
  r.request_id = "fuzz";
  r.remote_addr = "127.0.0.1";
  return r;
}

// parse_activity is the only gate between an admin body and the engine, and the
// engine stores what activity_config_json makes of it (recovery parses that
// again): an accepted body must survive that round trip unchanged.
void check_parse_activity(const nlohmann::json& body) {
  auto config = fairdraw::app::parse_activity(body);
  if (!config.ok()) return;
  const nlohmann::json stored = fairdraw::app::activity_config_json(config.value());
  auto again = fairdraw::app::parse_activity(stored);
  if (!again.ok()) fail("parse_activity refuses its own activity_config_json", stored.dump() + "\n" + again.error().detail);
  if (fairdraw::app::activity_config_json(again.value()) != stored) {
    fail("activity_config_json/parse_activity round trip changed the activity", stored.dump());
  }
}

// DESIGN.md section 3's draw response, for the draw that was asked for.
void check_draw_answer(const nlohmann::json& request, const fairdraw::http::Response& r) {
  if (r.status != 200) return;
  const auto body = nlohmann::json::parse(r.body, nullptr, false);
  const std::string shown = r.body.substr(0, 2000);
  if (!body.is_object()) fail("draw answer is not an object", shown);
  for (const char* key : {"activity_id", "user_id"}) {
    if (!request.is_object() || body.value(key, nlohmann::json()) != request.value(key, nlohmann::json())) {
      fail("draw answer is for another activity or user", shown);
    }
  }
  const auto won = body.find("won");
  const auto prize = body.find("prize");
  if (won == body.end() || !won->is_boolean() || prize == body.end()) fail("draw answer without won/prize", shown);
  if (won->get<bool>() != prize->is_object()) fail("won and prize disagree", shown);
  for (const char* key : {"seq", "epoch", "slot", "drawn_at_ms"}) {
    if (!body.contains(key) || !body[key].is_number_integer() || body[key].get<std::int64_t>() < 0) {
      fail("draw answer member missing or negative", std::string(key) + "\n" + shown);
    }
  }
  if (!body.contains("draw_id") || !body["draw_id"].is_string() || body["draw_id"].get<std::string>().size() != 26) {
    fail("draw answer without a ULID draw_id", shown);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  fairdraw::fuzz::init_process();
  world = new fairdraw::fuzz::World(std::string(fairdraw::fuzz::kAdminToken));
  std::atexit([] {
    delete world;
    world = nullptr;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The server never hands the Api a body over http.max_body_bytes.
  if (size > 16384) return -1;
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  const auto parsed = nlohmann::json::parse(bytes, nullptr, false);
  // No Idempotency-Key: the body alone decides (request_id in it, or a one-off draw).
  const auto drawn = world->call(json_request("POST", "/draw", bytes));
  check_draw_answer(parsed, drawn);

  auto put = json_request("PUT", "/admin/activities/x", bytes);
  put.headers.emplace_back("authorization", "Bearer " + std::string(fairdraw::fuzz::kAdminToken));
  world->call(std::move(put));

  if (!parsed.is_discarded()) check_parse_activity(parsed);
  return 0;
}
