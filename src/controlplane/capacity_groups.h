#pragma once

// Capacity groups: reservations of a task shape x count per tier for an application. Jobs join
// a group through their `capacityGroup` field. Stored under /capacity-groups/<name>; the wire
// form adds usage and borrowed capacity from the scheduler (see docs/api.md).

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"
#include "common/error.h"
#include "controlplane/scheduler/scheduler.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

inline constexpr std::string_view kCapacityGroupsPrefix = "/capacity-groups/";
std::string capacityGroupKey(std::string_view name);

struct CapacityGroupRecord {
  scheduler::CapacityGroupSpec spec;
  int64_t createdAtMs = 0;
  store::Revision modRevision = 0;
};

// Checks a request body. `pathName`, when set (PUT /v1/capacity-groups/{name}), is the name; a
// `name` in the body must then match it. Reports every violation with its field path.
std::expected<scheduler::CapacityGroupSpec, api::FieldErrors> parseCapacityGroup(
    const nlohmann::json& body, const std::optional<std::string>& pathName);

std::string toStored(const CapacityGroupRecord& group);
Result<CapacityGroupRecord> capacityGroupFromStored(std::string_view value,
                                                    store::Revision modRevision);
// The wire form: the spec, then per tier `reserved`, `used`, `borrowed` and `tasks` from `usage`.
nlohmann::json toWire(const CapacityGroupRecord& group,
                      const std::vector<scheduler::CapacityUsage>& usage);
// The wire form of usage for a group that is not defined (jobs name it, nothing is reserved).
nlohmann::json undefinedGroupToWire(const std::string& name,
                                    const std::vector<scheduler::CapacityUsage>& usage);

}  // namespace skiff::controlplane
