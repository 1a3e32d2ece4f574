#pragma once

// Constraint filters: each hard constraint of a job becomes a `ConstraintFilter` that accepts or
// rejects a node; soft constraints use the same filters as fitness (the share of them a node
// meets). `compileConstraints` maps the job model's constraint names (src/api/job.h) to filters.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/scheduler/model.h"

namespace skiff::controlplane::scheduler {

// How long a rejection holds within one scheduling iteration (resources only shrink during an
// iteration); lets the search skip nodes it already ruled out.
enum class Monotonicity {
  kClass,    // Holds for every job with the same class key (static node attributes).
  kJob,      // Holds for this job (its own tasks only accumulate).
  kDynamic,  // May change as other tasks are placed (balance across zones).
};

class ConstraintFilter {
 public:
  virtual ~ConstraintFilter() = default;
  // The constraint's name as `explain` reports it ("uniqueHost", "machineType").
  virtual std::string_view name() const = 0;
  virtual Monotonicity monotonicity() const = 0;
  // Part of the class key: filters with the same signature reject the same nodes.
  virtual std::string signature() const = 0;
  virtual bool accepts(const JobState& job, uint32_t node, const NodeState& state,
                       const ClusterView& cluster) const = 0;
};

// Builds the filters for `constraints` (names as validated by the job model; unknown names and
// "false" booleans give no filter).
std::vector<std::unique_ptr<ConstraintFilter>> compileConstraints(
    const std::map<std::string, std::string>& constraints);

}  // namespace skiff::controlplane::scheduler
