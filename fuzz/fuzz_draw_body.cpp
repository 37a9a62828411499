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

  // No Idempotency-Key: the body alone decides (request_id in it, or a one-off draw).
  world->call(json_request("POST", "/draw", bytes));

  auto put = json_request("PUT", "/admin/activities/x", bytes);
  put.headers.emplace_back("authorization", "Bearer " + std::string(fairdraw::fuzz::kAdminToken));
  world->call(std::move(put));

  const auto parsed = nlohmann::json::parse(bytes, nullptr, false);
  if (!parsed.is_discarded()) check_parse_activity(parsed);
  return 0;
}
