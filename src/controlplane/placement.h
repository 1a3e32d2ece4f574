#pragma once

// Choosing a node for a task. The cluster scheduler replaces `FirstFitPlacer` with fitness
// policies behind the same interface.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/job.h"
#include "controlplane/records.h"

namespace skiff::controlplane {

// What the placer sees of a node.
struct NodeCandidate {
  const NodeRecord* node;
  api::Resources allocated;  // The sum of the resources of unfinished tasks placed there.
};

class Placer {
 public:
  virtual ~Placer() = default;
  // Picks a node with room for `job`'s task among `candidates` (all Ready, not draining), or
  // nullopt when none fits. Returns an index into `candidates`.
  virtual std::optional<size_t> choose(const JobRecord& job,
                                       const std::vector<NodeCandidate>& candidates) = 0;
};

// The first node, in id order, with enough free resources whose attributes satisfy the job's
// hard constraints on `zone`/`availabilityZone`, `machineType`, `machineId` and `machineGroup`.
class FirstFitPlacer final : public Placer {
 public:
  std::optional<size_t> choose(const JobRecord& job,
                               const std::vector<NodeCandidate>& candidates) override;
};

bool fits(const api::Resources& capacity, const api::Resources& allocated,
          const api::Resources& request);
void addResources(api::Resources& total, const api::Resources& delta);
void subtractResources(api::Resources& total, const api::Resources& delta);

}  // namespace skiff::controlplane
