#include <algorithm>
#include <filesystem>

#include "agent/agent_impl.h"
#include "agent/image/fs_util.h"
#include "api/job.h"
#include "common/clock.h"
#include "common/log.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Outcome {
  std::string reason;
  std::string message;
  std::optional<int> exitCode;
};

Outcome outcomeOf(const runtime::ExitStatus& exit) {
  using runtime::ExitReason;
  switch (exit.reason) {
    case ExitReason::kExited:
      if (exit.exitCode == 0) return {"normal", "", 0};
      return {"failed", "exit code " + std::to_string(exit.exitCode), exit.exitCode};
    case ExitReason::kOOMKilled:
      return {"failed", "OOMKilled", exit.exitCode};
    case ExitReason::kStopped:
      return {"killed", "stopped", exit.exitCode};
    case ExitReason::kRuntimeLimitExceeded:
      return {"runtimeLimitExceeded", "runtime limit exceeded", exit.exitCode};
    case ExitReason::kStartFailed:
      return {"localSystemError", "the OCI runtime could not start the container", std::nullopt};
    case ExitReason::kLost:
      return {"lost", "the container's monitor died without recording an exit", std::nullopt};
  }
  return {"lost", "", std::nullopt};
}

}  // namespace

std::string Agent::Impl::checksPath(const std::string& taskId) const {
  return tasksDir + "/" + taskId + ".checks";
}

Agent::Impl::Probes Agent::Impl::loadProbes(const TaskRecord& task) {
  Probes probes;
  auto text = image::fs::readFile(checksPath(task.taskId));
  if (!text) return probes;
  auto doc = json::parse(*text, nullptr, false);
  if (!doc.is_object()) return probes;
  auto descriptor = api::validateJobDescriptor(doc.value("descriptor", json()));
  if (!descriptor) return probes;
  health::Target target{doc.value("ip", ""), task.taskId};
  auto checker = std::make_shared<health::NetworkChecker>(
      [this](const std::string& id, const std::vector<std::string>& command, int64_t timeoutMs) {
        return execCheck(id, command, timeoutMs);
      });
  int64_t now = clock->nowMs();
  const api::Container& container = descriptor->container;
  if (container.liveness) probes.liveness.emplace(*container.liveness, target, checker, now, true);
  if (container.readiness) {
    probes.readiness.emplace(*container.readiness, target, checker, now, false);
  }
  return probes;
}

health::Attempt Agent::Impl::execCheck(const std::string& containerId,
                                       const std::vector<std::string>& command, int64_t timeoutMs) {
  auto ran = containers->exec(containerId, command, std::chrono::milliseconds(timeoutMs));
  if (!ran) return {false, ran.error().message()};
  std::string output = ran->out + ran->err;
  if (ran->timedOut) output = "timed out after " + std::to_string(timeoutMs) + " ms";
  if (output.size() > 1024) output.resize(1024);
  if (!ran->ok() && output.empty()) output = "exit code " + std::to_string(ran->exitCode);
  return {ran->ok(), output};
}

void Agent::Impl::watch(TaskRecord& task) {
  bool stopSent = false;
  Probes probes = loadProbes(task);
  std::string livenessFailure;  // Set when a failed liveness check stopped the container.
  while (true) {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
    }
    if (!stopSent && killRequested(task)) {
      stopSent = true;
      if (auto stopped = containers->stop(task.taskId); !stopped) {
        log::warn("stop failed", {{"taskId", task.taskId}, {"error", stopped.error().message()}});
      }
    }
    auto waitFor = std::chrono::milliseconds(300);
    int64_t now = clock->nowMs();
    for (const auto* prober : {&probes.liveness, &probes.readiness}) {
      if (*prober && !stopSent) {
        waitFor = std::min(waitFor, std::chrono::milliseconds(std::max<int64_t>(
                                        1, (*prober)->state().nextAttemptMs() - now)));
      }
    }
    auto exit = containers->wait(task.taskId, waitFor);
    if (exit && !livenessFailure.empty()) {
      // The container was stopped because its liveness check failed: a failure of the task.
      cleanupRootfs(task);
      finish(task, "failed", "liveness check failed: " + livenessFailure,
             exit->exitCode >= 0 ? std::optional<int>(exit->exitCode) : std::nullopt);
      retire(task.taskId);
      return;
    }
    if (exit) {
      Outcome outcome = outcomeOf(*exit);
      cleanupRootfs(task);
      finish(task, outcome.reason, outcome.message, outcome.exitCode);
      retire(task.taskId);
      return;
    }
    if (exit.error().code() != ErrorCode::kUnavailable) {
      log::error("lost track of container",
                 {{"taskId", task.taskId}, {"error", exit.error().message()}});
      cleanupRootfs(task);
      finish(task, "lost", exit.error().message());
      retire(task.taskId);
      return;
    }
    if (stopSent) continue;
    now = clock->nowMs();
    if (probes.readiness) {
      if (auto ready = probes.readiness->tick(now)) {
        report(task, "Started", "",
               *ready ? "ready" : "not ready: " + probes.readiness->state().lastFailure(),
               std::nullopt, "", "", *ready);
      }
    }
    if (probes.liveness) {
      if (auto alive = probes.liveness->tick(now); alive && !*alive) {
        livenessFailure = probes.liveness->state().lastFailure();
        if (livenessFailure.empty()) livenessFailure = "no detail";
        log::info("liveness check failed; stopping the container",
                  {{"taskId", task.taskId}, {"output", livenessFailure}});
        stopSent = true;
        if (auto stopped = containers->stop(task.taskId); !stopped) {
          log::warn("stop failed", {{"taskId", task.taskId}, {"error", stopped.error().message()}});
        }
      }
    }
  }
}

void Agent::Impl::retire(const std::string& taskId) {
  std::vector<std::string> expired;
  {
    std::lock_guard lock(mutex);
    if (!retiredSet.insert(taskId).second) return;
    retired.push_back(taskId);
    while (retired.size() > options.keepFinishedContainers) {
      retiredSet.erase(retired.front());
      expired.push_back(std::move(retired.front()));
      retired.pop_front();
    }
  }
  for (const std::string& id : expired) {
    if (auto removed = containers->remove(id); !removed) {
      log::warn("cannot remove exited container",
                {{"taskId", id}, {"error", removed.error().message()}});
    }
  }
}

}  // namespace skiff::agent
