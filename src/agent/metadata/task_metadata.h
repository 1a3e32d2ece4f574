#pragma once

// What the metadata proxy tells one container about itself.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace skiff::agent::metadata {

struct TaskMetadata {
  std::string taskId;  // Served as the instance id.
  std::string jobId;
  std::string applicationName;
  std::string iamRole;  // The job's container.securityProfile.iamRole; empty: no role.
  std::string ipv4;     // The container's address (local-ipv4).
  std::string nodeId;
  std::string availabilityZone;  // The node's zone attribute.
  std::string region;
  std::string instanceType;  // The node's machine type; empty: 404.
  std::string imageId;       // The pinned image reference.
  std::string accountId = "000000000000";
  int64_t launchTimeMs = 0;
};

// Builds the metadata of a task from one entry of GET /v1/nodes/{id}/assignments (its "task" and
// "job" objects) plus what the agent knows: the container's address, the node's zone, region and
// machine type. Missing fields stay empty.
TaskMetadata taskMetadataFromAssignment(const nlohmann::json& assignment, std::string ipv4,
                                        std::string nodeId, std::string availabilityZone,
                                        std::string region, std::string instanceType,
                                        int64_t launchTimeMs);

// The agent keeps a task's metadata in its state file so a restarted agent serves it again.
nlohmann::json toJson(const TaskMetadata& task);
TaskMetadata taskMetadataFromJson(const nlohmann::json& value);  // Missing fields stay empty.

}  // namespace skiff::agent::metadata
