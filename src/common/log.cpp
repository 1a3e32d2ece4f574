#include "common/log.h"

#include <chrono>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace skiff::log {
namespace {

std::string& component() {
  static std::string name = "skiff";
  return name;
}

spdlog::level::level_enum toSpd(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string_view levelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void init(std::string_view name, Level level) {
  component() = std::string(name);
  auto logger = spdlog::stderr_logger_mt("skiff");
  // The JSON line is the whole message; spdlog adds nothing around it.
  logger->set_pattern("%v");
  logger->set_level(toSpd(level));
  spdlog::set_default_logger(logger);
}

Level parseLevel(std::string_view name, Level fallback) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  return fallback;
}

bool enabled(Level level) {
  return spdlog::default_logger()->should_log(toSpd(level));
}

void write(Level level, std::string_view message, nlohmann::json fields) {
  if (!enabled(level)) return;
  auto now = std::chrono::system_clock::now();
  nlohmann::json line = {
      {"ts", std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count()},
      {"level", levelName(level)},
      {"component", component()},
      {"msg", message}};
  if (fields.is_object()) {
    for (auto& [key, value] : fields.items()) line[key] = std::move(value);
  }
  spdlog::log(toSpd(level), "{}",
              line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace skiff::log
