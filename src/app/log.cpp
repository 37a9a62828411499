// JSON-lines logging on spdlog: the pattern frames the line, fields are
// serialised here so every value is escaped.
#include "fairdraw/app/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace fairdraw::app::log {
namespace {

std::string render(std::string_view message, Fields fields) {
  nlohmann::json line = nlohmann::json::object();
  line["msg"] = message;
  for (const auto& [key, value] : fields) line[std::string(key)] = value;
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Drop the braces: the pattern below puts ts and level in front.
  return text.substr(1, text.size() - 2);
}

void emit(spdlog::level::level_enum level, std::string_view message, Fields fields) {
  auto logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  logger->log(level, "{}", render(message, fields));
}

}  // namespace

bool setup(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_logger_mt("fairdraw");
  logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","thread":%t,%v})",
                      spdlog::pattern_time_type::utc);
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return true;
}

void debug(std::string_view message, Fields fields) { emit(spdlog::level::debug, message, fields); }
void info(std::string_view message, Fields fields) { emit(spdlog::level::info, message, fields); }
void warn(std::string_view message, Fields fields) { emit(spdlog::level::warn, message, fields); }
void error(std::string_view message, Fields fields) { emit(spdlog::level::err, message, fields); }
bool debug_enabled() { return spdlog::default_logger_raw()->should_log(spdlog::level::debug); }
void flush() { spdlog::default_logger_raw()->flush(); }

}  // namespace fairdraw::app::log
