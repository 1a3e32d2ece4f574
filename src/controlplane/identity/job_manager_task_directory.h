#pragma once

// `TaskDirectory` over the job manager: a task's job, application, role, node and state.

#include "controlplane/identity/identity_routes.h"
#include "controlplane/job_manager.h"

namespace skiff::identity {

class JobManagerTaskDirectory final : public TaskDirectory {
 public:
  explicit JobManagerTaskDirectory(controlplane::JobManager& manager) : manager_(manager) {}
  // The container address is read from the task's `ip` field (reported by its agent) when the
  // control plane has recorded one.
  boost::asio::awaitable<Result<TaskRecordView>> lookup(std::string taskId) override;

 private:
  controlplane::JobManager& manager_;
};

}  // namespace skiff::identity
