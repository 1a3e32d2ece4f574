#include "controlplane/capacity_groups.h"

#include <cmath>

#include "api/names.h"

namespace skiff::controlplane {
namespace {

using nlohmann::json;

json resourcesJson(const api::Resources& r) {
  return {{"cpu", r.cpu},
          {"memoryMB", r.memoryMB},
          {"diskMB", r.diskMB},
          {"networkMbps", r.networkMbps},
          {"gpu", r.gpu}};
}

json reservationJson(const scheduler::Reservation& reservation) {
  return {{"shape", resourcesJson(reservation.shape)}, {"count", reservation.count}};
}

std::string_view typeOf(const json& value) {
  return value.type_name();
}

void parseInteger(const json& object, const std::string& path, const char* key, int64_t max,
                  int64_t& out, api::FieldErrors& errors) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;
  std::string field = path + "." + key;
  if (!it->is_number() ||
      (it->is_number_float() && std::floor(it->get<double>()) != it->get<double>())) {
    errors.push_back({field, "must be an integer (got " + std::string(typeOf(*it)) + ")"});
    return;
  }
  double value = it->get<double>();
  if (value < 0 || value > static_cast<double>(max)) {
    errors.push_back({field, "must be between 0 and " + std::to_string(max)});
    return;
  }
  out = static_cast<int64_t>(value);
}

void checkKeys(const json& object, const std::string& path,
               std::initializer_list<std::string_view> allowed, api::FieldErrors& errors) {
  for (const auto& [key, unused] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      errors.push_back({path.empty() ? key : path + "." + key, "unknown field"});
    }
  }
}

scheduler::Reservation parseReservation(const json& body, const std::string& path,
                                        api::FieldErrors& errors) {
  scheduler::Reservation reservation;
  auto it = body.find(path);
  if (it == body.end() || it->is_null()) return reservation;
  if (!it->is_object()) {
    errors.push_back({path, "must be an object (got " + std::string(typeOf(*it)) + ")"});
    return reservation;
  }
  checkKeys(*it, path, {"shape", "count"}, errors);
  parseInteger(*it, path, "count", 1'000'000, reservation.count, errors);
  auto shape = it->find("shape");
  if (shape == it->end() || shape->is_null()) {
    if (reservation.count > 0) errors.push_back({path + ".shape", "is required when count > 0"});
    return reservation;
  }
  std::string shapePath = path + ".shape";
  if (!shape->is_object()) {
    errors.push_back({shapePath, "must be an object (got " + std::string(typeOf(*shape)) + ")"});
    return reservation;
  }
  checkKeys(*shape, shapePath, {"cpu", "memoryMB", "diskMB", "networkMbps", "gpu"}, errors);
  if (auto cpu = shape->find("cpu"); cpu != shape->end() && !cpu->is_null()) {
    if (!cpu->is_number() || cpu->get<double>() < 0 || cpu->get<double>() > api::Limits::kMaxCpu) {
      errors.push_back({shapePath + ".cpu", "must be a number between 0 and 96"});
    } else {
      reservation.shape.cpu = cpu->get<double>();
    }
  }
  parseInteger(*shape, shapePath, "memoryMB", api::Limits::kMaxMemoryMB, reservation.shape.memoryMB,
               errors);
  parseInteger(*shape, shapePath, "diskMB", api::Limits::kMaxDiskMB, reservation.shape.diskMB,
               errors);
  parseInteger(*shape, shapePath, "networkMbps", api::Limits::kMaxNetworkMbps,
               reservation.shape.networkMbps, errors);
  parseInteger(*shape, shapePath, "gpu", api::Limits::kMaxGpu, reservation.shape.gpu, errors);
  return reservation;
}

json usageJson(const std::vector<scheduler::CapacityUsage>& usage, const std::string& group,
               api::Tier tier, const scheduler::Reservation* reservation) {
  json out = {{"reserved", resourcesJson(reservation != nullptr ? reservation->total()
                                                                : api::Resources{0, 0, 0, 0, 0})},
              {"used", resourcesJson({0, 0, 0, 0, 0})},
              {"borrowed", resourcesJson({0, 0, 0, 0, 0})},
              {"tasks", 0}};
  if (reservation != nullptr) {
    out["shape"] = resourcesJson(reservation->shape);
    out["count"] = reservation->count;
  }
  for (const scheduler::CapacityUsage& u : usage) {
    if (u.group != group || u.tier != tier) continue;
    out["used"] = resourcesJson(u.used);
    out["borrowed"] = resourcesJson(u.borrowed);
    out["tasks"] = u.tasks;
  }
  return out;
}

}  // namespace

std::string capacityGroupKey(std::string_view name) {
  return std::string(kCapacityGroupsPrefix) + std::string(name);
}

std::expected<scheduler::CapacityGroupSpec, api::FieldErrors> parseCapacityGroup(
    const json& body, const std::optional<std::string>& pathName) {
  api::FieldErrors errors;
  if (!body.is_object()) {
    return std::unexpected(
        api::FieldErrors{{"", "must be an object (got " + std::string(typeOf(body)) + ")"}});
  }
  checkKeys(body, "", {"name", "applicationName", "critical", "flex"}, errors);
  scheduler::CapacityGroupSpec spec;
  auto name = body.find("name");
  if (name != body.end() && !name->is_null()) {
    if (!name->is_string()) {
      errors.push_back({"name", "must be a string"});
    } else {
      spec.name = name->get<std::string>();
    }
  }
  if (pathName) {
    if (!spec.name.empty() && spec.name != *pathName) {
      errors.push_back({"name", "must match the name in the path"});
    }
    spec.name = *pathName;
  }
  if (spec.name.empty()) {
    errors.push_back({"name", "is required"});
  } else if (!api::validShortName(spec.name)) {
    errors.push_back({"name", "must be 1 to 64 of [A-Za-z0-9_.-]"});
  }
  auto application = body.find("applicationName");
  if (application != body.end() && !application->is_null()) {
    if (!application->is_string() || application->get<std::string>().size() > 4096) {
      errors.push_back({"applicationName", "must be a string of at most 4096 bytes"});
    } else {
      spec.applicationName = application->get<std::string>();
    }
  }
  spec.critical = parseReservation(body, "critical", errors);
  spec.flex = parseReservation(body, "flex", errors);
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return spec;
}

std::string toStored(const CapacityGroupRecord& group) {
  return json({{"name", group.spec.name},
               {"applicationName", group.spec.applicationName},
               {"critical", reservationJson(group.spec.critical)},
               {"flex", reservationJson(group.spec.flex)},
               {"createdAtMs", group.createdAtMs}})
      .dump();
}

Result<CapacityGroupRecord> capacityGroupFromStored(std::string_view value,
                                                    store::Revision modRevision) {
  json stored = json::parse(value, nullptr, false);
  if (!stored.is_object()) return fail(ErrorCode::kInternal, "corrupt stored capacity group");
  int64_t createdAtMs = stored.value("createdAtMs", int64_t{0});
  stored.erase("createdAtMs");
  auto spec = parseCapacityGroup(stored, std::nullopt);
  if (!spec) {
    return fail(ErrorCode::kInternal,
                "corrupt stored capacity group: " + spec.error().front().toString());
  }
  return CapacityGroupRecord{std::move(*spec), createdAtMs, modRevision};
}

json toWire(const CapacityGroupRecord& group, const std::vector<scheduler::CapacityUsage>& usage) {
  return {
      {"name", group.spec.name},
      {"applicationName", group.spec.applicationName},
      {"defined", true},
      {"critical", usageJson(usage, group.spec.name, api::Tier::kCritical, &group.spec.critical)},
      {"flex", usageJson(usage, group.spec.name, api::Tier::kFlex, &group.spec.flex)},
      {"createdAtMs", group.createdAtMs},
      {"revision", group.modRevision}};
}

json undefinedGroupToWire(const std::string& name,
                          const std::vector<scheduler::CapacityUsage>& usage) {
  return {{"name", name},
          {"applicationName", ""},
          {"defined", false},
          {"critical", usageJson(usage, name, api::Tier::kCritical, nullptr)},
          {"flex", usageJson(usage, name, api::Tier::kFlex, nullptr)}};
}

}  // namespace skiff::controlplane
