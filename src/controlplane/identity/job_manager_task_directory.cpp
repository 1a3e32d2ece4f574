#include "controlplane/identity/job_manager_task_directory.h"

namespace skiff::identity {
namespace {

// Reads a string at `path` in `value`, or "" when any step is missing or of another type.
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

boost::asio::awaitable<Result<TaskRecordView>> JobManagerTaskDirectory::lookup(std::string taskId) {
  auto task = co_await manager_.getTask(taskId);
  if (!task) co_return std::unexpected(task.error());
  std::string jobId = stringAt(*task, {"jobId"});
  auto job = co_await manager_.getJob(jobId);
  if (!job) co_return std::unexpected(job.error().wrap("the task's job"));
  TaskRecordView view;
  view.identity.taskId = taskId;
  view.identity.jobId = jobId;
  view.identity.applicationName = stringAt(*job, {"descriptor", "applicationName"});
  view.identity.role = stringAt(*job, {"descriptor", "container", "securityProfile", "iamRole"});
  view.identity.nodeId = stringAt(*task, {"nodeId"});
  view.identity.containerIp = stringAt(*task, {"ip"});
  view.state = stringAt(*task, {"state"});
  co_return view;
}

}  // namespace skiff::identity
