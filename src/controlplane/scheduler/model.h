#pragma once

// The scheduler's in-memory model of the cluster: nodes with their used resources, placed tasks,
// and what constraints need to know of each job (tasks per node and per zone). Internal to the
// scheduler module; filters and fitness policies read it.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "controlplane/scheduler/scheduler.h"

namespace skiff::controlplane::scheduler {

class ConstraintFilter;

struct NodeState {
  NodeSpec spec;
  bool present = true;  // False once removed (slots are not reused while tasks point at them).
  Resources used{0, 0, 0, 0, 0};
  // Room promised to preemptors (reserved tasks waiting for evicted tasks to stop).
  Resources nominated{0, 0, 0, 0, 0};
  int64_t taskCount = 0;
  int64_t addressLimit = -1;    // -1: no limit.
  int zone = -1;                // Interned `zone` attribute, -1 when absent.
  std::string group;            // The node group reported by `explain`.
  int64_t distinctJobs = 0;     // Jobs with at least one task here.
  int64_t exclusiveJob = -1;    // The job of an exclusive task here, -1 when none.
  std::deque<int> images;       // Interned images of tasks placed here, newest last.
  std::vector<uint32_t> tasks;  // Task slots placed here.

  bool hasImage(int image) const;
};

struct JobState {
  JobShape shape;
  int64_t index = 0;
  int image = -1;
  bool exclusive = false;
  bool spreading = false;  // Critical-tier service: spread instead of packing.
  std::vector<std::unique_ptr<ConstraintFilter>> hard;
  std::vector<std::unique_ptr<ConstraintFilter>> soft;
  std::string classKey;  // Jobs with the same key fail on the same nodes for class reasons.
  std::unordered_map<uint32_t, int32_t> perNode;  // Node slot -> tasks of this job there.
  std::vector<int64_t> perZone;                   // Zone -> tasks of this job there.
  int64_t placed = 0;
  int group = -1;  // Interned capacity group.
  // Per iteration: nodes before `cursor` fail for job-monotone reasons, nodes before
  // `*classCursor` for reasons shared by the job's class.
  size_t cursor = 0;
  size_t* classCursor = nullptr;

  int32_t tasksOn(uint32_t node) const {
    auto it = perNode.find(node);
    return it == perNode.end() ? 0 : it->second;
  }
};

// What filters see besides the node and the job.
struct ClusterView {
  const std::vector<NodeState>* nodes = nullptr;
  int64_t zoneCount = 0;             // Distinct zones among schedulable nodes.
  std::vector<uint8_t> zonePresent;  // Zone -> 1 when some schedulable node has it.
};

}  // namespace skiff::controlplane::scheduler
