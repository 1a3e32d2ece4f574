#pragma once

// The parsers behind `validateJobDescriptor` (internal to src/api), one file per part of a job:
// job.cpp (the document, batch, retry policies), container_spec.cpp (image, resources, security
// profile, constraints, health checks) and service_spec.cpp (capacity, rollout, disruption
// budget, autoscaling). Each records violations in the checker and returns what it could read.

#include <optional>
#include <string>

#include "api/job.h"
#include "api/json_checker.h"

namespace skiff::api::detail {

// The `container` object.
Container parseContainer(Checker& checker, const json& value);
// The `service` object.
std::optional<ServiceSpec> parseService(Checker& checker, const json& value);
// The `retryPolicy` field of `spec` (a batch or service object at `path`); nothing when absent.
std::optional<RetryPolicy> parseRetryPolicy(Checker& checker, const json& spec,
                                            const std::string& path);

}  // namespace skiff::api::detail
