// fairdraw: the HTTP prize-draw service. Parses the command line, loads the
// configuration and hands over to Service.
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "fairdraw/app/config.hpp"
#include "fairdraw/app/log.hpp"
#include "fairdraw/app/service.hpp"

namespace {

constexpr const char* kUsage =
    "usage: fairdraw [--config FILE] [--check-config] [--version] [--help]\n"
    "\n"
    "  --config FILE   JSON configuration (see docs/CONFIG.md); every field can be\n"
    "                  overridden by an environment variable FAIRDRAW_<PATH>\n"
    "  --check-config  validate the configuration, print it (secrets masked), exit\n"
    "  --version       print the version and exit\n"
    "  --help          this text\n"
    "\n"
    "With no flags: embedded mode on 127.0.0.1:8080, record in sqlite:fairdraw.db.\n";

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("fairdraw %s\n", FAIRDRAW_VERSION);
      return 0;
    }
    if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(std::strlen("--config="));
    } else {
      std::fprintf(stderr, "fairdraw: unknown argument '%s'\n\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }

  auto config = fairdraw::app::load_config(config_path, fairdraw::app::process_environment());
  if (!config.ok()) {
    std::fprintf(stderr, "fairdraw: invalid configuration: %s\n", config.error().detail.c_str());
    return 2;
  }
  if (check_only) {
    std::printf("%s\n", fairdraw::app::describe_config(config.value()).c_str());
    return 0;
  }
  if (!fairdraw::app::log::setup(config->log_level)) {
    std::fprintf(stderr, "fairdraw: invalid configuration: log_level: unknown level\n");
    return 2;
  }
  auto service = fairdraw::app::Service::create(std::move(config.value()));
  if (!service.ok()) {
    fairdraw::app::log::error("start-up failed", {{"error", service.error().detail}});
    fairdraw::app::log::flush();
    std::fprintf(stderr, "fairdraw: start-up failed: %s\n", service.error().detail.c_str());
    return 1;
  }
  return service.value()->run();
}
