#include "cli/session.h"
#include "cli/verbs/verbs.h"
#include "cli/watch.h"

namespace skiff::cli {

using nlohmann::json;

namespace {

// One row of `job endpoints`: TASK IP PORTS NODE.
std::vector<std::string> endpointRow(const json& endpoint) {
  std::string ports;
  for (const json& port : endpoint.value("ports", json::array())) {
    if (!ports.empty()) ports += ",";
    ports += port.dump();
  }
  return {endpoint.value("taskId", ""), endpoint.value("ip", ""), ports,
          endpoint.value("nodeId", "")};
}

}  // namespace

int runJobEndpoints(Session& s) {
  std::string target = "/v1/jobs/" + urlEncode(s.inv.id) + "/endpoints";
  if (!s.inv.watch) {
    auto listing = fetchObject(s, "GET", target);
    if (!listing) return listing.error();
    if (s.format() != OutputFormat::kTable) return printObject(s, *listing, "");
    Table table({"TASK", "IP", "PORTS", "NODE"});
    for (const json& endpoint : listing->value("items", json::array())) {
      table.addRow(endpointRow(endpoint));
    }
    s.print(table.render());
    return kExitOk;
  }
  auto api = s.api();
  if (!api) return s.error(api.error());
  // Table mode prints the snapshot's endpoints, then one line per change: "+ TASK IP PORTS NODE"
  // or "- TASK"; json and yaml print the stream's objects as they come.
  auto response = (*api)->stream(target + "?watch=true", [&](std::string_view line) {
    json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object()) return true;
    std::string type = event.value("type", "");
    if (type == "keepalive") return true;
    if (s.format() != OutputFormat::kTable) {
      s.print(s.format() == OutputFormat::kJson ? event.dump() + "\n"
                                                : renderValue(event, s.format()) + "---\n");
      return true;
    }
    auto joined = [](const std::vector<std::string>& cells) {
      std::string text;
      for (const auto& cell : cells) text += (text.empty() ? "" : " ") + sanitize(cell);
      return text;
    };
    if (type == "snapshot") {
      for (const json& endpoint : event.value("items", json::array())) {
        s.print("  " + joined(endpointRow(endpoint)) + "\n");
      }
    } else if (type == "added") {
      s.print("+ " + joined(endpointRow(event.value("endpoint", json::object()))) + "\n");
    } else if (type == "removed") {
      s.print("- " + sanitize(event.value("taskId", "")) + "\n");
    }
    return true;
  });
  if (!response) return s.error(response.error());
  if (!response->ok()) return s.serverError(*response);
  return kExitOk;
}

// Prints a task's log as it arrives. With --follow, a stream that breaks is resumed (from the
// current end of the log, so nothing is repeated) until the task has finished.
int runLogs(Session& s) {
  auto api = s.api();
  if (!api) return s.error(api.error());
  std::string path = "/v1/tasks/" + urlEncode(s.inv.id) + "/logs";
  std::optional<int64_t> tail = s.inv.tail;
  int failures = 0;
  while (true) {
    std::string target =
        withQuery(path, {{"stream", std::string(s.inv.stderrStream ? "stderr" : "stdout")},
                         {"tail", numberText(tail)},
                         {"follow", std::string(s.inv.follow ? "true" : "false")}});
    bool progressed = false;
    auto response = (*api)->stream(target, [&](std::string_view line) {
      s.ctx.out << line << "\n";
      s.ctx.out.flush();
      progressed = true;
      return true;
    });
    if (response && response->ok()) return kExitOk;
    if (response) return s.serverError(*response);
    if (!s.inv.follow) return s.error(response.error());
    if (progressed) failures = 0;
    if (++failures > kStreamFailureLimit) return s.error(response.error());
    tail = 0;  // Resume at the end of what was already shown.
    auto delay = std::min(kStreamMaxBackoff, kStreamFirstBackoff * (1 << (failures - 1)));
    s.ctx.err << "skiff: " << sanitize(response.error().message()) << "; reconnecting in "
              << delay.count() << " ms\n";
    s.ctx.sleep(delay);
  }
}

int runEvents(Session& s) {
  OutputFormat format = s.format();
  return followEvents(
      s, s.inv.job, s.inv.fromRevision, /*restartOnCompacted=*/!s.inv.fromRevision,
      [&](const json& event, std::string_view line) {
        if (jsonString(event, "type") == "keepalive") return true;
        if (format == OutputFormat::kJson) {
          s.ctx.out << line << "\n";
        } else if (format == OutputFormat::kYaml) {
          s.ctx.out << "---\n" << renderValue(event, format);
        } else {
          s.ctx.out << describeEvent(event) << "\n";
        }
        s.ctx.out.flush();
        return true;
      },
      nullptr);
}

}  // namespace skiff::cli
