#include "agent/metadata/task_metadata.h"

#include <initializer_list>

namespace skiff::agent::metadata {
namespace {

std::string stringAt(const nlohmann::json& value, std::initializer_list<const char*> path) {
  const nlohmann::json* node = &value;
  for (const char* name : path) {
    if (!node->is_object()) return {};
    auto it = node->find(name);
    if (it == node->end()) return {};
    node = &*it;
  }
  return node->is_string() ? node->get<std::string>() : std::string();
}

}  // namespace

TaskMetadata taskMetadataFromAssignment(const nlohmann::json& assignment, std::string ipv4,
                                        std::string nodeId, std::string availabilityZone,
                                        std::string region, std::string instanceType,
                                        int64_t launchTimeMs) {
  TaskMetadata task;
  task.taskId = stringAt(assignment, {"task", "id"});
  task.jobId = stringAt(assignment, {"task", "jobId"});
  task.applicationName = stringAt(assignment, {"job", "descriptor", "applicationName"});
  task.iamRole =
      stringAt(assignment, {"job", "descriptor", "container", "securityProfile", "iamRole"});
  task.imageId = stringAt(assignment, {"task", "image"});
  task.ipv4 = std::move(ipv4);
  task.nodeId = std::move(nodeId);
  task.availabilityZone = std::move(availabilityZone);
  task.region = std::move(region);
  task.instanceType = std::move(instanceType);
  task.launchTimeMs = launchTimeMs;
  return task;
}

}  // namespace skiff::agent::metadata
