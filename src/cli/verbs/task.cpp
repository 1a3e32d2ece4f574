#include "cli/session.h"
#include "cli/verbs/verbs.h"

namespace skiff::cli {

using nlohmann::json;

int runTaskList(Session& s) {
  auto listing =
      fetchList(s, "/v1/tasks",
                {{"jobId", s.inv.job}, {"state", s.inv.state}, {"limit", numberText(s.inv.limit)}},
                s.inv.all);
  if (!listing) return listing.error();
  return printList(s, *listing, "tasks", renderTasks);
}

int runTaskGet(Session& s) {
  auto task = fetchObject(s, "GET", "/v1/tasks/" + urlEncode(s.inv.id));
  if (!task) return task.error();
  if (s.format() == OutputFormat::kTable) {
    s.print(renderTasks({*task}, s.ctx.nowMs()));
    return kExitOk;
  }
  return printObject(s, *task, "");
}

int runTaskKill(Session& s) {
  auto task = fetchObject(
      s, "POST",
      "/v1/tasks/" + urlEncode(s.inv.id) + "/kill?shrink=" + (s.inv.shrink ? "true" : "false"));
  if (!task) return task.error();
  return printObject(s, *task, s.inv.id + ": " + stateOf(*task));
}

int runTaskWhy(Session& s) {
  auto why = fetchObject(s, "GET", "/v1/tasks/" + urlEncode(s.inv.id) + "/why");
  if (!why) return why.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *why, "");
  std::string out = sanitize(s.inv.id) + " (" + sanitize(jsonString(*why, "state")) +
                    "): " + sanitize(jsonString(*why, "summary")) + "\n";
  // How this attempt ended, or how the one it retries did: the registry's answer for a missing
  // image, the exit code of a failed command.
  if (auto api = s.api()) {
    auto task = (*api)->call("GET", "/v1/tasks/" + urlEncode(s.inv.id), nullptr);
    if (task && task->ok()) {
      std::string state = jsonString(task->body, "state");
      std::string previous = jsonString(task->body, "resubmitOf");
      if (state == "Finished" && !jsonString(task->body, "message").empty()) {
        out += "  " + sanitize(jsonString(task->body, "reason")) + ": " +
               sanitize(jsonString(task->body, "message")) + "\n";
      } else if (state != "Finished" && !previous.empty()) {
        auto before = (*api)->call("GET", "/v1/tasks/" + urlEncode(previous), nullptr);
        if (before && before->ok()) {
          std::string message = jsonString(before->body, "message");
          out += "  previous attempt " + sanitize(previous) + " finished " +
                 sanitize(jsonString(before->body, "reason")) +
                 (message.empty() ? std::string() : ": " + sanitize(message)) + "\n";
        }
      }
    }
  }
  if (auto groups = why->find("groups"); groups != why->end() && groups->is_array()) {
    Table table({"NODE GROUP", "NODES", "FIT", "RULED OUT BY"});
    for (const json& group : *groups) {
      std::string reasons;
      if (auto list = group.find("reasons"); list != group.end() && list->is_object()) {
        for (const auto& [reason, count] : list->items()) {
          if (!reasons.empty()) reasons += ", ";
          reasons += sanitize(reason) + " (" + count.dump() + ")";
        }
      }
      table.addRow({sanitize(jsonString(group, "group")), group.value("nodes", json(0)).dump(),
                    group.value("feasible", json(0)).dump(),
                    reasons.empty() ? std::string("-") : reasons});
    }
    out += table.render();
  }
  s.print(out);
  return kExitOk;
}

}  // namespace skiff::cli
