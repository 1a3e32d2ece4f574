#include <filesystem>
#include <limits>
#include <system_error>

#include "agent/agent_impl.h"
#include "agent/image/fs_util.h"
#include "common/log.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string_view phaseName(Phase phase) {
  switch (phase) {
    case Phase::kStarting:
      return "starting";
    case Phase::kLaunching:
      return "launching";
    case Phase::kRunning:
      return "running";
    case Phase::kFinished:
      return "finished";
  }
  return "finished";
}

Phase parsePhase(std::string_view name) {
  if (name == "starting") return Phase::kStarting;
  if (name == "launching") return Phase::kLaunching;
  if (name == "running") return Phase::kRunning;
  return Phase::kFinished;
}

}  // namespace

std::string Agent::Impl::recordPath(const std::string& taskId) const {
  return tasksDir + "/" + taskId + ".json";
}

Agent::Impl::StateWrite Agent::Impl::snapshotLocked(TaskRecord& task) {
  json outbox = json::array();
  for (const json& update : task.outbox) outbox.push_back(update);
  json doc = {{"taskId", task.taskId},
              {"jobId", task.jobId},
              {"seq", task.seq},
              {"phase", phaseName(task.phase)},
              {"outbox", outbox},
              {"gpus", task.gpus},
              {"writableLayer", task.writableLayer},
              {"metadata", task.metadata},
              {"netnsPath", task.netnsPath}};
  return {task.shared_from_this(), doc.dump(), ++task.stateVersion, task.seq};
}

void Agent::Impl::writeState(const StateWrite& write) {
  TaskRecord& task = *write.task;
  {
    std::lock_guard fileLock(task.fileMutex);
    if (write.version <= task.writtenVersion) return;
    if (auto written = image::fs::writeFileAtomic(recordPath(task.taskId), write.text,
                                                  image::fs::Durability::kProcessCrash);
        !written) {
      log::error("cannot persist task state",
                 {{"taskId", task.taskId}, {"error", written.error().message()}});
    }
    task.writtenVersion = write.version;
  }
  std::lock_guard lock(mutex);
  if (write.seq > task.durableSeq) {
    task.durableSeq = write.seq;
    outboxDirty = true;
    changed.notify_all();
  }
}

void Agent::Impl::removeStateLocked(TaskRecord& task) {
  std::lock_guard fileLock(task.fileMutex);
  task.writtenVersion = std::numeric_limits<uint64_t>::max();
  std::error_code ec;
  stdfs::remove(recordPath(task.taskId), ec);
  stdfs::remove(checksPath(task.taskId), ec);
}

void Agent::Impl::setPhase(TaskRecord& task, Phase phase) {
  StateWrite write;
  {
    std::lock_guard lock(mutex);
    task.phase = phase;
    write = snapshotLocked(task);
  }
  writeState(write);
}

void Agent::Impl::report(TaskRecord& task, std::string_view state, const std::string& reason,
                         const std::string& message, std::optional<int> exitCode,
                         const std::string& pinnedImage, const std::string& ip,
                         std::optional<bool> ready) {
  std::unique_lock lock(mutex);
  json update = {{"taskId", task.taskId}, {"seq", ++task.seq}, {"state", state}};
  if (!reason.empty()) update["reason"] = reason;
  if (!message.empty()) update["message"] = message;
  if (exitCode) update["exitCode"] = *exitCode;
  if (!pinnedImage.empty()) update["image"] = pinnedImage;
  if (!ip.empty()) update["ip"] = ip;
  if (ready) update["ready"] = *ready;
  task.outbox.push_back(std::move(update));
  if (state == "Finished") {
    task.phase = Phase::kFinished;
    for (int gpu : task.gpus) gpusInUse.erase(gpu);
  }
  StateWrite write = snapshotLocked(task);
  log::info("task status", {{"taskId", task.taskId},
                            {"seq", task.seq},
                            {"state", state},
                            {"reason", reason},
                            {"message", message}});
  lock.unlock();
  writeState(write);
}

void Agent::Impl::finish(TaskRecord& task, const std::string& reason, const std::string& message,
                         std::optional<int> exitCode) {
  report(task, "Finished", reason, message, exitCode);
}

Status Agent::Impl::loadRecords() {
  for (const std::string& name : image::fs::listDir(tasksDir)) {
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
    auto text = image::fs::readFile(tasksDir + "/" + name);
    if (!text) return std::unexpected(text.error());
    json doc = json::parse(*text, nullptr, false);
    if (!doc.is_object() || !doc.contains("taskId")) {
      log::error("skipping corrupt task record", {{"file", name}});
      continue;
    }
    auto task = std::make_shared<TaskRecord>();
    task->taskId = doc.value("taskId", "");
    task->jobId = doc.value("jobId", "");
    task->seq = doc.value("seq", int64_t{0});
    task->durableSeq = task->seq;  // Read from disk: every report in it may be sent.
    task->phase = parsePhase(doc.value("phase", "finished"));
    for (const json& update : doc.value("outbox", json::array())) task->outbox.push_back(update);
    task->gpus = doc.value("gpus", std::vector<int>{});
    task->writableLayer = doc.value("writableLayer", false);
    if (doc.contains("metadata")) task->metadata = doc["metadata"];
    task->netnsPath = doc.value("netnsPath", "");
    if (task->phase != Phase::kFinished) gpusInUse.insert(task->gpus.begin(), task->gpus.end());
    if (!task->outbox.empty()) outboxDirty = true;
    tasks[task->taskId] = task;
  }
  return {};
}

}  // namespace skiff::agent
