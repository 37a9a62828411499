// Structured logs: spdlog writing one JSON object per line to stderr.
// Messages carry fields (request_id first when there is one); never secrets.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace fairdraw::app::log {

using Fields = std::initializer_list<std::pair<std::string_view, nlohmann::json>>;

// level: trace, debug, info, warn, error. Returns false for an unknown level.
bool setup(std::string_view level);
void debug(std::string_view message, Fields fields = {});
void info(std::string_view message, Fields fields = {});
void warn(std::string_view message, Fields fields = {});
void error(std::string_view message, Fields fields = {});
bool debug_enabled();
void flush();

}  // namespace fairdraw::app::log
