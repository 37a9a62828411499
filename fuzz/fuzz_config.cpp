// libFuzzer target: bytes as a config file through load_config (no environment), and describe_config of whatever loads.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fairdraw/app/config.hpp"

namespace {

std::string dir;
std::string path;

[[noreturn]] void fail(const std::string& what, const std::string& detail = {}) {
  std::fprintf(stderr, "\n==== fairdraw fuzz oracle: %s\n%s\n", what.c_str(), detail.c_str());
  std::fflush(stderr);
  std::abort();
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

// describe_config is what --check-config prints and logs carry, so the admin
// token must never be in it. A short token may occur by chance ("1" is in
// "127.0.0.1"), so the text is compared with the description of the same
// config without a token: the token may appear only where it appears anyway.
void check_description(const fairdraw::app::Config& config) {
  const std::string text = fairdraw::app::describe_config(config);
  const auto doc = nlohmann::ordered_json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) fail("describe_config is not a JSON object", text.substr(0, 2000));
  if (config.admin_token.empty()) return;
  const auto shown = doc.find("admin_token");
  if (shown == doc.end() || *shown != "***") fail("admin_token not masked", text.substr(0, 2000));

  fairdraw::app::Config without = config;
  without.admin_token.clear();
  std::string other = fairdraw::app::describe_config(without);
  // Same text except the masked field: "***" there, "" here.
  const std::string masked = "\"admin_token\": \"***\"";
  const std::string cleared = "\"admin_token\": \"\"";
  const auto at = other.find(cleared);
  if (at == std::string::npos) fail("describe_config without a token has no empty admin_token", other.substr(0, 2000));
  other.replace(at, cleared.size(), masked);
  // JSON escaping: compare the token as describe_config would print it.
  const std::string quoted = nlohmann::json(config.admin_token).dump();
  const std::string needle = quoted.substr(1, quoted.size() - 2);
  if (count(text, needle) > count(other, needle)) {
    fail("describe_config shows the admin token", "token: " + config.admin_token + "\n" + text.substr(0, 4000));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') base = t;
  std::string tmpl = base + "/fairdraw-fuzz-config-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed", tmpl);
  dir = tmpl;
  path = dir + "/fairdraw.json";
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) fail("cannot write the config file", path);
  }
  try {
    auto config = fairdraw::app::load_config(path, {});
    if (config.ok()) {
      check_description(config.value());
    } else if (config.error().detail.empty()) {
      fail("load_config error without detail");
    }
  } catch (const std::exception& e) {
    fail("load_config or describe_config threw", e.what());
  } catch (...) {
    fail("load_config or describe_config threw a non-std exception");
  }
  return 0;
}
