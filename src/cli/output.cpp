#include "cli/output.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "api/job.h"
#include "api/states.h"
#include "cli/util.h"

namespace skiff::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kNone = "-";

const json* member(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

constexpr size_t kMaxMessageColumn = 80;

std::string text(const json& object, std::string_view key) {
  const json* value = member(object, key);
  if (value == nullptr || !value->is_string() || value->get_ref<const std::string&>().empty()) {
    return std::string(kNone);
  }
  return value->get<std::string>();
}

std::optional<int64_t> integer(const json& object, std::string_view key) {
  const json* value = member(object, key);
  if (value == nullptr || !value->is_number()) return std::nullopt;
  return value->get<int64_t>();
}

std::optional<double> number(const json& object, std::string_view key) {
  const json* value = member(object, key);
  if (value == nullptr || !value->is_number()) return std::nullopt;
  return value->get<double>();
}

std::string formatNumber(double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return "?";
  return std::string(buffer, end);
}

std::string ageSince(const std::optional<int64_t>& thenMs, int64_t nowMs) {
  if (!thenMs || *thenMs <= 0) return std::string(kNone);
  return formatAge(nowMs - *thenMs);
}

// "used/total" for a resource, with a unit suffix; "-" parts where a value is missing.
std::string usage(const json& node, std::string_view key, std::string_view unit) {
  auto part = [&](std::string_view section) {
    const json* resources = member(node, section);
    std::optional<double> value = resources != nullptr ? number(*resources, key) : std::nullopt;
    return value ? formatNumber(*value) : std::string(kNone);
  };
  return part("allocated") + "/" + part("resources") + std::string(unit);
}

}  // namespace

std::optional<OutputFormat> parseOutputFormat(std::string_view name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "yaml") return OutputFormat::kYaml;
  return std::nullopt;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::addRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& cell : cells) cell = sanitize(cell);
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> widths(headers_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], displayWidth(row[i]));
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  std::string out;
  auto append = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out.append(widths[i] - displayWidth(row[i]) + 3, ' ');
    }
    out += '\n';
  };
  append(headers_);
  for (const auto& row : rows_) append(row);
  return out;
}

std::string formatAge(int64_t durationMs) {
  int64_t seconds = std::max<int64_t>(durationMs, 0) / 1000;
  if (seconds < 120) return std::to_string(seconds) + "s";
  int64_t minutes = seconds / 60;
  if (minutes < 120) return std::to_string(minutes) + "m";
  int64_t hours = minutes / 60;
  if (hours < 48) return std::to_string(hours) + "h";
  return std::to_string(hours / 24) + "d";
}

std::string taskStateWord(std::string_view state) {
  if (state == "StartInitiated") return "starting";
  if (state == "KillInitiated") return "killing";
  std::string word(state);
  std::transform(word.begin(), word.end(), word.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return word;
}

std::string summarizeTaskCounts(const json& taskCounts) {
  std::string out;
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    std::string_view state = api::taskStateName(static_cast<api::TaskState>(i));
    std::optional<int64_t> count = integer(taskCounts, state);
    if (!count || *count == 0) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(*count) + " " + taskStateWord(state);
  }
  return out.empty() ? "none" : out;
}

std::string renderJobs(const std::vector<json>& jobs, int64_t nowMs) {
  Table table({"ID", "NAME", "TYPE", "STATE", "TASKS", "AGE"});
  for (const json& job : jobs) {
    const json* descriptor = member(job, "descriptor");
    const json* status = member(job, "status");
    std::string type = text(job, "type");
    if (type == kNone && descriptor != nullptr) {
      if (member(*descriptor, "batch") != nullptr) type = "batch";
      if (member(*descriptor, "service") != nullptr) type = "service";
    }
    std::string state = status != nullptr ? text(*status, "state") : std::string(kNone);
    if (const json* enabled = member(job, "enabled");
        enabled != nullptr && enabled->is_boolean() && !*enabled) {
      state += " (disabled)";
    }
    const json* counts = member(job, "taskCounts");
    table.addRow({text(job, "id"),
                  descriptor != nullptr ? text(*descriptor, "name") : std::string(kNone), type,
                  state, counts != nullptr ? summarizeTaskCounts(*counts) : std::string(kNone),
                  ageSince(integer(job, "createdAtMs"), nowMs)});
  }
  return table.render();
}

std::string renderTasks(const std::vector<json>& tasks, int64_t nowMs) {
  Table table({"ID", "JOB", "INDEX", "STATE", "REASON", "NODE", "AGE", "MESSAGE"});
  for (const json& task : tasks) {
    std::optional<int64_t> index = integer(task, "index");
    std::optional<int64_t> since;
    if (const json* times = member(task, "stateTimesMs"); times != nullptr && times->is_object()) {
      for (const auto& [state, value] : times->items()) {
        if (value.is_number() && (!since || value.get<int64_t>() < *since)) {
          since = value.get<int64_t>();
        }
      }
    }
    // The message says why an attempt failed (the registry's answer, the exit code); the whole
    // of it is in `task get -o json`.
    std::string message = text(task, "message");
    if (message.size() > kMaxMessageColumn) {
      message = message.substr(0, kMaxMessageColumn - 3) + "...";
    }
    table.addRow({text(task, "id"), text(task, "jobId"),
                  index ? std::to_string(*index) : std::string(kNone), text(task, "state"),
                  text(task, "reason"), text(task, "nodeId"), ageSince(since, nowMs), message});
  }
  return table.render();
}

std::string renderNodes(const std::vector<json>& nodes, int64_t nowMs) {
  Table table({"ID", "STATE", "CPU", "MEMORY", "TASKS", "HEARTBEAT"});
  for (const json& node : nodes) {
    std::optional<int64_t> tasks = integer(node, "taskCount");
    table.addRow({text(node, "id"), text(node, "state"), usage(node, "cpu", ""),
                  usage(node, "memoryMB", "MB"),
                  tasks ? std::to_string(*tasks) : std::string(kNone),
                  ageSince(integer(node, "lastHeartbeatMs"), nowMs)});
  }
  return table.render();
}

std::string renderValue(const json& value, OutputFormat format) {
  if (format == OutputFormat::kYaml) return api::toYaml(value);
  return value.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string describeEvent(const json& event) {
  std::string type = text(event, "type");
  if (type == "keepalive") return "";
  std::optional<int64_t> revision = integer(event, "revision");
  std::string out = (revision ? std::to_string(*revision) : std::string(kNone)) + " " + type;
  const json* object = member(event, "object");
  if (object == nullptr) return sanitize(out);
  std::string kind = text(event, "kind");
  out += " " + kind + " " + text(*object, "id");
  std::string state;
  std::string reason;
  std::string message;
  if (kind == "job") {
    if (const json* status = member(*object, "status")) {
      state = text(*status, "state");
      reason = text(*status, "reason");
      message = text(*status, "message");
    }
  } else {
    state = text(*object, "state");
    reason = text(*object, "reason");
    message = text(*object, "message");
  }
  if (!state.empty() && state != kNone) out += " " + state;
  if (!reason.empty() && reason != kNone) out += " " + reason;
  if (std::string node = text(*object, "nodeId"); node != kNone) out += " on " + node;
  if (!message.empty() && message != kNone) out += ": " + message;
  return sanitize(out);
}

}  // namespace skiff::cli
