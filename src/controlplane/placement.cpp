#include "controlplane/placement.h"

namespace skiff::controlplane {
namespace {

// Floating point cores are compared with a small tolerance so 0.1 + 0.2 fits in 0.3.
constexpr double kCpuEpsilon = 1e-9;

std::string attributeOf(const NodeRecord& node, const std::string& name) {
  auto it = node.attributes.find(name);
  if (it != node.attributes.end() && it->is_string()) return it->get<std::string>();
  return {};
}

bool satisfiesHardConstraints(const JobRecord& job, const NodeRecord& node) {
  for (const auto& [name, value] : job.descriptor.container.hardConstraints) {
    if (name == "zone" || name == "availabilityZone") {
      if (attributeOf(node, "zone") != value) return false;
    } else if (name == "machineType" || name == "machineGroup") {
      if (attributeOf(node, name) != value) return false;
    } else if (name == "machineId") {
      if (node.id != value) return false;
    }
  }
  return true;
}

}  // namespace

bool fits(const api::Resources& capacity, const api::Resources& allocated,
          const api::Resources& request) {
  return allocated.cpu + request.cpu <= capacity.cpu + kCpuEpsilon &&
         allocated.memoryMB + request.memoryMB <= capacity.memoryMB &&
         allocated.diskMB + request.diskMB <= capacity.diskMB &&
         allocated.networkMbps + request.networkMbps <= capacity.networkMbps &&
         allocated.gpu + request.gpu <= capacity.gpu;
}

void addResources(api::Resources& total, const api::Resources& delta) {
  total.cpu += delta.cpu;
  total.memoryMB += delta.memoryMB;
  total.diskMB += delta.diskMB;
  total.networkMbps += delta.networkMbps;
  total.gpu += delta.gpu;
}

void subtractResources(api::Resources& total, const api::Resources& delta) {
  total.cpu -= delta.cpu;
  if (total.cpu < kCpuEpsilon) total.cpu = 0;
  total.memoryMB -= delta.memoryMB;
  total.diskMB -= delta.diskMB;
  total.networkMbps -= delta.networkMbps;
  total.gpu -= delta.gpu;
}

std::optional<size_t> FirstFitPlacer::choose(const JobRecord& job,
                                             const std::vector<NodeCandidate>& candidates) {
  const api::Resources& request = job.descriptor.container.resources;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const NodeCandidate& candidate = candidates[i];
    if (fits(candidate.node->resources, candidate.allocated, request) &&
        satisfiesHardConstraints(job, *candidate.node)) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace skiff::controlplane
