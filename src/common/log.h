#pragma once

// Structured logs: one JSON object per line on stderr, with `ts`, `level`, `msg` and any fields.
// Messages and fields are data, never format strings, so user text cannot change the output's
// shape.

#include <string_view>

#include <nlohmann/json.hpp>

namespace skiff::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Sets the minimum level and the component name added to every line ("skiffd", "agent").
void init(std::string_view component, Level level = Level::kInfo);
Level parseLevel(std::string_view name, Level fallback);

// Whether lines at `level` are written; lets hot paths skip building their fields.
bool enabled(Level level);

void write(Level level, std::string_view message, nlohmann::json fields = nlohmann::json::object());

inline void debug(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::kDebug, m, std::move(f));
}
inline void info(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::kInfo, m, std::move(f));
}
inline void warn(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::kWarn, m, std::move(f));
}
inline void error(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::kError, m, std::move(f));
}

}  // namespace skiff::log
