#pragma once

// How the client shows server objects: aligned tables for people, the server's own objects as
// JSON or YAML for programs.
//
// Every function here is pure (time comes in as `nowMs`) and tolerant: a field that is missing or
// of the wrong type renders as "-" rather than failing, so an older client can still list objects
// from a newer server. Text taken from objects is passed through `sanitize`.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skiff::cli {

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml".
std::optional<OutputFormat> parseOutputFormat(std::string_view name);

// A table with a header row. Columns are left-aligned and separated by three spaces; the last
// column is not padded, so lines carry no trailing blanks.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // Adds a row; missing cells are blank, extra cells are dropped. Cells are sanitized.
  void addRow(std::vector<std::string> cells);
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// A duration as one unit, kubectl style: "45s", "12m", "3h", "5d". Negative durations (clock
// skew between client and server) read "0s".
std::string formatAge(int64_t durationMs);

// The word for a task state in summaries: "accepted", "launched", "starting", "started",
// "killing", "finished"; unknown states are lower-cased as they are.
std::string taskStateWord(std::string_view state);

// The table of `job ls` / `job get`: ID NAME TYPE STATE TASKS AGE.
std::string renderJobs(const std::vector<nlohmann::json>& jobs, int64_t nowMs);
// The table of `task ls` / `task get`: ID JOB INDEX STATE REASON NODE AGE MESSAGE (cut to 80
// characters).
std::string renderTasks(const std::vector<nlohmann::json>& tasks, int64_t nowMs);
// The table of `node ls` / `node get`: ID STATE CPU MEMORY TASKS HEARTBEAT.
std::string renderNodes(const std::vector<nlohmann::json>& nodes, int64_t nowMs);

// The non-zero entries of a job's `taskCounts`, in state order: "2 started, 1 finished";
// "none" when all are zero.
std::string summarizeTaskCounts(const nlohmann::json& taskCounts);

// `value` as pretty JSON or YAML, ending in a newline. kTable is treated as JSON.
std::string renderValue(const nlohmann::json& value, OutputFormat format);

// One line for an event of /v1/events (no newline), e.g.
// "57 update task job-1-0-0 Finished failed node-a: exit code 3". Keepalives give "".
std::string describeEvent(const nlohmann::json& event);

}  // namespace skiff::cli
