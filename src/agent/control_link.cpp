#include <algorithm>
#include <cmath>
#include <filesystem>

#include "agent/agent_impl.h"
#include "common/log.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

std::unique_ptr<client::NodeApi> Agent::Impl::makeClient(long requestTimeoutMs) const {
  client::ClientOptions clientOptions;
  clientOptions.connectTimeoutMs = 5000;
  clientOptions.requestTimeoutMs = requestTimeoutMs;
  clientOptions.userAgent = "skiff-agent/" SKIFF_VERSION;
  return std::make_unique<client::NodeApi>(options.server, options.joinToken, clientOptions);
}

bool Agent::Impl::sleepFor(std::chrono::milliseconds duration) {
  std::unique_lock lock(mutex);
  changed.wait_for(lock, duration, [&] { return stopping; });
  return !stopping;
}

json Agent::Impl::sampleUsage(std::map<std::string, CpuSample>& previous) {
  std::vector<std::string> running;
  if (!containers) return json::object();
  {
    std::lock_guard lock(mutex);
    for (const auto& [id, task] : tasks) {
      if (task->phase == Phase::kRunning && !task->killRequested) running.push_back(id);
    }
  }
  std::map<std::string, CpuSample> current;
  json usage = json::object();
  for (const std::string& id : running) {
    auto nanos = containers->cpuUsageNs(id);
    if (!nanos) continue;
    CpuSample sample{*nanos, std::chrono::steady_clock::now()};
    if (auto it = previous.find(id); it != previous.end() && sample.usageNs >= it->second.usageNs) {
      double seconds = std::chrono::duration<double>(sample.at - it->second.at).count();
      if (seconds > 0.05) {
        double cores = static_cast<double>(sample.usageNs - it->second.usageNs) / 1e9 / seconds;
        usage[id] = {{"cpuCores", std::round(cores * 1000) / 1000}};
      }
    }
    current.emplace(id, sample);
  }
  previous = std::move(current);
  return usage;
}

void Agent::Impl::heartbeatLoop() {
  auto client = makeClient(10'000);
  json body = registrationBody(options.nodeId, options.resources, options.attributes);
  if (!logAddress.empty()) body["attributes"]["logAddress"] = logAddress;
  bool warned = false;
  std::map<std::string, CpuSample> cpuSamples;
  while (true) {
    bool isRegistered;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      isRegistered = registered;
    }
    if (!isRegistered) {
      auto response = client->registerNode(body);
      if (response && response->ok()) {
        log::info("registered", {{"nodeId", options.nodeId}, {"server", options.server}});
        if (network) {
          if (auto configured = network->configure(response->body); !configured) {
            log::error("network setup", {{"error", configured.error().message()}});
          }
        }
        std::lock_guard lock(mutex);
        registered = true;
        changed.notify_all();
        warned = false;
        continue;
      }
      if (!warned) {
        warned = true;
        log::warn("registration failed; retrying",
                  {{"error", response ? client::describeServerError(*response).message
                                      : response.error().message()}});
      }
      if (!sleepFor(1s)) return;
      continue;
    }
    auto response = client->heartbeat(options.nodeId, sampleUsage(cpuSamples));
    if (response && response->status == 404) {
      log::warn("skiffd does not know this node; registering again");
      std::lock_guard lock(mutex);
      registered = false;
      continue;
    }
    if (!response || !response->ok()) {
      log::warn("heartbeat failed",
                {{"error", response ? client::describeServerError(*response).message
                                    : response.error().message()}});
    }
    if (!sleepFor(options.heartbeatInterval)) return;
  }
}

void Agent::Impl::pollLoop() {
  auto client = makeClient(options.pollWait.count() + 30'000);
  int64_t revision = 0;
  while (true) {
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return stopping || registered; });
      if (stopping) return;
    }
    int64_t generation = ++pollGeneration;
    // Revision 0 (at start, and after registering again) asks for the full list; later
    // answers are deltas whenever skiffd still remembers the changes since `revision`.
    auto response = client->pollAssignments(options.nodeId, revision, options.pollWait);
    if (!response || !response->ok()) {
      if (response && response->status == 404) {
        std::lock_guard lock(mutex);
        registered = false;
        revision = 0;
      }
      if (!sleepFor(1s)) return;
      continue;
    }
    const json& body = response->body;
    if (!body.is_object() || !body.contains("assignments") || !body["assignments"].is_array()) {
      log::warn("malformed assignments answer");
      if (!sleepFor(1s)) return;
      continue;
    }
    revision = body.value("revision", revision);
    handleAssignments(body, generation);
  }
}

void Agent::Impl::handleAssignments(const json& body, int64_t generation) {
  const json& list = body["assignments"];
  if (body.value("full", true)) {
    assigned.clear();
  } else if (auto removed = body.find("removed"); removed != body.end() && removed->is_array()) {
    for (const json& id : *removed) {
      if (id.is_string()) assigned.erase(id.get<std::string>());
    }
  }
  std::vector<std::pair<std::shared_ptr<TaskRecord>, json>> toStart;
  std::vector<std::shared_ptr<TaskRecord>> toKillUnknown;
  std::vector<StateWrite> writes;
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    for (const json& assignment : list) {
      if (!assignment.is_object() || !assignment.contains("task")) continue;
      std::string taskId = assignment["task"].value("id", "");
      if (taskId.empty()) continue;
      assigned.insert(taskId);
      bool kill = assignment.value("desiredState", "") == "Killed";
      auto it = tasks.find(taskId);
      if (it == tasks.end()) {
        auto task = std::make_shared<TaskRecord>();
        task->taskId = taskId;
        task->jobId = assignment["task"].value("jobId", "");
        task->createdGeneration = generation;
        task->killRequested = kill;
        tasks[taskId] = task;
        writes.push_back(snapshotLocked(*task));
        if (kill) {
          toKillUnknown.push_back(task);
        } else {
          toStart.emplace_back(task, assignment);
        }
      } else if (kill && !it->second->killRequested) {
        it->second->killRequested = true;
        log::info("kill requested", {{"taskId", taskId}});
      }
    }
    // Forget finished tasks once skiffd stopped assigning them after their last report landed;
    // stop running ones that skiffd no longer assigns here.
    for (auto it = tasks.begin(); it != tasks.end();) {
      TaskRecord& task = *it->second;
      if (assigned.contains(task.taskId) || generation <= task.createdGeneration) {
        ++it;
        continue;
      }
      if (task.phase == Phase::kFinished && task.outbox.empty() && task.ackedGeneration >= 0 &&
          generation > task.ackedGeneration) {
        removeStateLocked(task);
        it = tasks.erase(it);
        continue;
      }
      if (task.phase != Phase::kFinished && !task.killRequested) {
        log::warn("task no longer assigned here; stopping it", {{"taskId", task.taskId}});
        task.killRequested = true;
      }
      ++it;
    }
  }
  for (const StateWrite& write : writes) writeState(write);
  for (auto& task : toKillUnknown) finish(*task, "killed", "killed before it started");
  for (auto& [task, assignment] : toStart) spawn(task, std::move(assignment));
}

void Agent::Impl::reportLoop() {
  auto client = makeClient(15'000);
  std::chrono::milliseconds backoff = 200ms;
  while (true) {
    json updates = json::array();
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return stopping || (outboxDirty && registered); });
      if (stopping) return;
      outboxDirty = false;
      for (const auto& [id, task] : tasks) {
        for (const json& update : task->outbox) {
          if (update["seq"].get<int64_t>() > task->durableSeq) break;  // Not on disk yet.
          updates.push_back(update);
        }
      }
    }
    if (updates.empty()) continue;
    auto response = client->reportTaskStatus(options.nodeId, updates);
    bool delivered = response && response->ok();
    bool refused = response && !response->ok() && response->status >= 400 &&
                   response->status < 500 && response->status != 401 && response->status != 404;
    if (refused) {
      log::error("skiffd refused task status reports; dropping them",
                 {{"error", client::describeServerError(*response).message}});
    }
    if (delivered || refused) {
      std::vector<StateWrite> writes;
      std::unique_lock lock(mutex);
      std::map<std::string, int64_t> sent;
      for (const json& update : updates) {
        int64_t& top = sent[update["taskId"].get<std::string>()];
        top = std::max(top, update["seq"].get<int64_t>());
      }
      for (const auto& [taskId, seq] : sent) {
        auto it = tasks.find(taskId);
        if (it == tasks.end()) continue;
        TaskRecord& task = *it->second;
        std::erase_if(task.outbox, [&](const json& u) { return u["seq"].get<int64_t>() <= seq; });
        if (task.outbox.empty()) task.ackedGeneration = pollGeneration.load();
        writes.push_back(snapshotLocked(task));
        if (!task.outbox.empty()) outboxDirty = true;
      }
      lock.unlock();
      for (const StateWrite& write : writes) writeState(write);
      backoff = 200ms;
      continue;
    }
    if (response && response->status == 404) {
      std::lock_guard lock(mutex);
      registered = false;
      changed.notify_all();
    }
    log::warn("sending task status failed; retrying",
              {{"error", response ? client::describeServerError(*response).message
                                  : response.error().message()}});
    {
      std::lock_guard lock(mutex);
      outboxDirty = true;
    }
    if (!sleepFor(backoff)) return;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
  }
}

}  // namespace skiff::agent
