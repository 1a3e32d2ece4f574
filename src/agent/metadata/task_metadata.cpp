#include "agent/metadata/task_metadata.h"

#include <initializer_list>

#include "common/encoding.h"

namespace skiff::agent::metadata {
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

nlohmann::json toJson(const TaskMetadata& task) {
  return {{"taskId", task.taskId},
          {"jobId", task.jobId},
          {"applicationName", task.applicationName},
          {"iamRole", task.iamRole},
          {"ipv4", task.ipv4},
          {"nodeId", task.nodeId},
          {"availabilityZone", task.availabilityZone},
          {"region", task.region},
          {"instanceType", task.instanceType},
          {"imageId", task.imageId},
          {"accountId", task.accountId},
          {"launchTimeMs", task.launchTimeMs}};
}

TaskMetadata taskMetadataFromJson(const nlohmann::json& value) {
  TaskMetadata task;
  if (!value.is_object()) return task;
  task.taskId = stringAt(value, {"taskId"});
  task.jobId = stringAt(value, {"jobId"});
  task.applicationName = stringAt(value, {"applicationName"});
  task.iamRole = stringAt(value, {"iamRole"});
  task.ipv4 = stringAt(value, {"ipv4"});
  task.nodeId = stringAt(value, {"nodeId"});
  task.availabilityZone = stringAt(value, {"availabilityZone"});
  task.region = stringAt(value, {"region"});
  task.instanceType = stringAt(value, {"instanceType"});
  task.imageId = stringAt(value, {"imageId"});
  if (std::string account = stringAt(value, {"accountId"}); !account.empty()) {
    task.accountId = account;
  }
  auto launch = value.find("launchTimeMs");
  if (launch != value.end() && launch->is_number_integer())
    task.launchTimeMs = launch->get<int64_t>();
  return task;
}

}  // namespace skiff::agent::metadata
