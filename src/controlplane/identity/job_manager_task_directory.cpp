#include "controlplane/identity/job_manager_task_directory.h"

#include "common/encoding.h"

namespace skiff::identity {
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
