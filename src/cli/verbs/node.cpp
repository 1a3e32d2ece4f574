#include <charconv>
#include <limits>
#include <map>

#include "cli/session.h"
#include "cli/verbs/verbs.h"

namespace skiff::cli {

using nlohmann::json;

int runNodeList(Session& s) {
  auto listing = fetchList(s, "/v1/nodes", {}, /*all=*/false);
  if (!listing) return listing.error();
  return printList(s, *listing, "nodes", renderNodes);
}

int runNodeGet(Session& s) {
  auto node = fetchObject(s, "GET", "/v1/nodes/" + urlEncode(s.inv.id));
  if (!node) return node.error();
  if (s.format() == OutputFormat::kTable) {
    s.print(renderNodes({*node}, s.ctx.nowMs()));
    return kExitOk;
  }
  return printObject(s, *node, "");
}

namespace {

// "90s", "30m", "1h", "500ms" or plain seconds, as milliseconds; nullopt when malformed.
std::optional<int64_t> parseDurationMs(std::string_view text) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || value < 0 || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  static const std::map<std::string_view, int64_t> kUnits = {
      {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end() || value > std::numeric_limits<int64_t>::max() / it->second) {
    return std::nullopt;
  }
  return value * it->second;
}

}  // namespace

int runNodeDrain(Session& s) {
  json body = json::object();
  if (s.inv.deadline) {
    auto deadlineMs = parseDurationMs(*s.inv.deadline);
    if (!deadlineMs) {
      return s.error(Error(ErrorCode::kInvalidArgument,
                           "--deadline: must be a duration such as 90s, 30m or 1h"));
    }
    body["deadlineMs"] = *deadlineMs;
  }
  auto node = fetchObject(s, "POST", "/v1/nodes/" + urlEncode(s.inv.id) + "/drain", &body);
  if (!node) return node.error();
  return printObject(s, *node, s.inv.id + ": " + stateOf(*node));
}

int runNodeLabel(Session& s) {
  json set = json::object();
  json remove = json::array();
  for (const std::string& label : s.inv.labels) {
    if (label.size() > 1 && label.back() == '-' && label.find('=') == std::string::npos) {
      remove.push_back(label.substr(0, label.size() - 1));
    } else if (auto equals = label.find('='); equals != std::string::npos && equals > 0) {
      set[label.substr(0, equals)] = label.substr(equals + 1);
    } else {
      return s.usage("labels are KEY=VALUE to set or KEY- to remove (got '" + label + "')");
    }
  }
  json body = {{"set", set}, {"remove", remove}};
  auto node = fetchObject(s, "POST", "/v1/nodes/" + urlEncode(s.inv.id) + "/labels", &body);
  if (!node) return node.error();
  std::string labels;
  if (auto list = node->find("labels"); list != node->end() && list->is_object()) {
    for (const auto& [key, value] : list->items()) {
      labels += (labels.empty() ? "" : ",") + key + "=" +
                (value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  return printObject(s, *node,
                     s.inv.id + ": labels " + (labels.empty() ? std::string("-") : labels));
}

}  // namespace skiff::cli
