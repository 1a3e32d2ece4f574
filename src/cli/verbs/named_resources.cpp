#include "api/job.h"
#include "cli/session.h"
#include "cli/verbs/verbs.h"

namespace skiff::cli {

using nlohmann::json;

namespace {

// groups and security groups share them and differ only in their table.
using Renderer = std::string (*)(const std::vector<json>&);

int listNamed(Session& s, const std::string& collection, Renderer render) {
  auto listing = fetchObject(s, "GET", collection);
  if (!listing) return listing.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *listing, "");
  std::vector<json> items;
  if (auto list = listing->find("items"); list != listing->end() && list->is_array()) {
    items.assign(list->begin(), list->end());
  }
  s.print(render(items));
  return kExitOk;
}

int getNamed(Session& s, const std::string& collection, Renderer render) {
  auto item = fetchObject(s, "GET", collection + "/" + urlEncode(s.inv.id));
  if (!item) return item.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *item, "");
  s.print(render({*item}));
  return kExitOk;
}

// Creates or replaces the resource named in a YAML/JSON file.
int applyNamed(Session& s, const std::string& collection) {
  const std::string& file = s.inv.files.front();
  Result<std::string> text =
      file == "-" ? Result<std::string>(readStream(s.ctx.in)) : readFile(file);
  if (!text) return s.error(text.error());
  auto document = api::parseJobFileText(*text);
  if (!document) return s.error(document.error());
  std::string name = document->is_object() ? jsonString(*document, "name") : "";
  if (name.empty()) return s.usage("the file needs a name");
  auto saved = fetchObject(s, "PUT", collection + "/" + urlEncode(name), &*document);
  if (!saved) return saved.error();
  return printObject(s, *saved, name + ": saved");
}

int deleteNamed(Session& s, const std::string& collection) {
  auto deleted = fetchObject(s, "DELETE", collection + "/" + urlEncode(s.inv.id));
  if (!deleted) return deleted.error();
  return printObject(s, *deleted, s.inv.id + ": deleted");
}

std::string renderCapacity(const std::vector<json>& groups) {
  Table table({"GROUP", "TIER", "RESERVED", "USED", "BORROWED", "TASKS"});
  for (const json& group : groups) {
    for (const char* tier : {"critical", "flex"}) {
      auto usage = group.find(tier);
      if (usage == group.end() || !usage->is_object()) continue;
      int64_t count = usage->value("count", int64_t{0});
      int64_t tasks = usage->value("tasks", int64_t{0});
      if (count == 0 && tasks == 0) continue;
      std::string reserved =
          usage->contains("count")
              ? std::to_string(count) + " x (" + resourceText(usage->value("shape", json())) + ")"
              : std::string("-");
      table.addRow({sanitize(jsonString(group, "name")), tier, reserved,
                    resourceText(usage->value("used", json())),
                    resourceText(usage->value("borrowed", json())), std::to_string(tasks)});
    }
  }
  return table.render();
}

std::string renderSecurityGroups(const std::vector<json>& groups) {
  Table table({"NAME", "RULES", "DESCRIPTION"});
  for (const json& group : groups) {
    std::string rules;
    if (auto list = group.find("ingress"); list != group.end() && list->is_array()) {
      for (const json& rule : *list) {
        if (!rules.empty()) rules += ", ";
        rules += jsonString(rule, "protocol");
        if (rule.contains("fromPort")) {
          rules += " " + rule["fromPort"].dump();
          if (rule.value("toPort", 0) != rule.value("fromPort", 0)) {
            rules += "-" + rule["toPort"].dump();
          }
        }
        rules +=
            " from " + (rule.contains("sourceCidr") ? jsonString(rule, "sourceCidr")
                                                    : "group " + jsonString(rule, "sourceGroup"));
      }
    }
    table.addRow({sanitize(jsonString(group, "name")), sanitize(rules.empty() ? "-" : rules),
                  sanitize(jsonString(group, "description"))});
  }
  return table.render();
}

}  // namespace

constexpr const char* kCapacityGroups = "/v1/capacity-groups";
int runCapacityList(Session& s) {
  return listNamed(s, kCapacityGroups, renderCapacity);
}
int runCapacityGet(Session& s) {
  return getNamed(s, kCapacityGroups, renderCapacity);
}
// The file: {name, applicationName, critical: {shape, count}, flex: {shape, count}}.
int runCapacityApply(Session& s) {
  return applyNamed(s, kCapacityGroups);
}
int runCapacityDelete(Session& s) {
  return deleteNamed(s, kCapacityGroups);
}

// Security groups: one row per group, its rules as "proto ports<-source" items.

constexpr const char* kSecurityGroups = "/v1/security-groups";
int runSecurityGroupList(Session& s) {
  return listNamed(s, kSecurityGroups, renderSecurityGroups);
}
int runSecurityGroupGet(Session& s) {
  return getNamed(s, kSecurityGroups, renderSecurityGroups);
}
// The file: see docs/networking.md.
int runSecurityGroupApply(Session& s) {
  return applyNamed(s, kSecurityGroups);
}
int runSecurityGroupDelete(Session& s) {
  return deleteNamed(s, kSecurityGroups);
}

}  // namespace skiff::cli
