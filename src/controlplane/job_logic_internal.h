#pragma once

// Helpers shared by the files behind job_logic.h (internal to
// src/controlplane): job_logic.cpp (task transitions, drains, endpoints,
// `reconcile`), job_edit.cpp (`JobView` and `JobEdit`) and service_ops.cpp
// (capacity, rollouts, rollbacks, autoscaling and revision history).

#include <cstdint>

#include "controlplane/job_logic.h"

namespace skiff::controlplane::job_logic_detail {

// The job's revision `number`, or null when it has none.
SpecRevision* mutableRevision(JobEdit& edit, int64_t number);

// Points the job at revision `number` (which must exist): new tasks run its container.
void retarget(JobEdit& edit, int64_t number);

}  // namespace skiff::controlplane::job_logic_detail
