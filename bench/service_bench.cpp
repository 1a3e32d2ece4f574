// service_bench: services through the real control plane, with agents simulated at the protocol
// level (assignment long polls and status reports).
//
// 1. Starts skiffd (`--skiffd`) on a fresh `--state-dir` and a free loopback port, and registers
//    one large node.
// 2. Readiness to endpoint: a service of `--tasks` tasks with a readiness check; the simulated
// agent
//    reports every task Started but not ready. A watcher follows GET /v1/jobs/{id}/endpoints?watch
//    =true; the bench then reports each task ready, one at a time, and measures from just before
//    the report is sent until the watcher reads the task's "added" line.
// 3. Rolling update: a service of `--tasks` tasks (maxSurge `--surge`, maxUnavailable 0,
//    minHealthyMs `--min-healthy-ms`) whose simulated agent reports a task ready `--health-ms`
//    after it was launched and stops killed tasks at once. The bench PUTs a new container and
//    times until GET /v1/jobs/{id}/history shows the new revision current. The health waits on the
//    rollout's critical path are ceil(tasks / surge) waves of health-ms + min-healthy-ms; the
//    overhead is the rest of the total, as a share of those waits.
//
// Output: one JSON object on stdout.
//
// Usage:
//   service_bench --skiffd build/src/local/skiffd --state-dir DIR [--tasks 50]
//                 [--surge 5] [--health-ms 500] [--min-healthy-ms 0]

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "client/client.h"

namespace {

using skiff::bench::percentile;

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string skiffd;
  std::string stateDir;
  int tasks = 50;
  int surge = 5;
  int healthMs = 500;
  int minHealthyMs = 0;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "service_bench: " << problem << "\n"
            << "usage: service_bench --skiffd PATH --state-dir DIR [--tasks N] [--surge N]\n"
            << "       [--health-ms MS] [--min-healthy-ms MS]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--skiffd") {
      o.skiffd = value();
    } else if (arg == "--state-dir") {
      o.stateDir = value();
    } else if (arg == "--tasks") {
      o.tasks = std::stoi(value());
    } else if (arg == "--surge") {
      o.surge = std::stoi(value());
    } else if (arg == "--health-ms") {
      o.healthMs = std::stoi(value());
    } else if (arg == "--min-healthy-ms") {
      o.minHealthyMs = std::stoi(value());
    } else {
      usage("unknown argument " + arg);
    }
  }
  if (o.skiffd.empty() || o.stateDir.empty()) usage("--skiffd and --state-dir are required");
  return o;
}

int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

json serviceJob(const std::string& name, int tasks, int surge, int minHealthyMs) {
  return {{"applicationName", name},
          {"owner", {{"teamEmail", "bench@example.com"}}},
          {"container",
           {{"image", "busybox:1.36"},
            {"ports", {8080}},
            {"readiness", {{"tcp", {{"port", 8080}}}, {"intervalMs", 100}}},
            {"resources", {{"cpu", 0.1}, {"memoryMB", 16}, {"diskMB", 16}, {"networkMbps", 1}}}}},
          {"service",
           {{"capacity", {{"desired", tasks}, {"max", tasks * 2}}},
            {"rollout",
             {{"maxSurge", surge}, {"maxUnavailable", 0}, {"minHealthyMs", minHealthyMs}}}}}};
}

// A node agent at the protocol level: long-polls its assignments, reports each new task Started
// (not ready) at once and ready `healthMs` later (never, when negative), and reports killed tasks
// Finished at once.
class SimulatedAgent {
 public:
  SimulatedAgent(const std::string& address, const std::string& joinToken, int healthMs)
      : poller_(address, joinToken),
        reporter_(address, joinToken),
        manual_(address, joinToken),
        healthMs_(healthMs) {
    pollThread_ = std::thread([this] { poll(); });
    reportThread_ = std::thread([this] { report(); });
  }
  ~SimulatedAgent() {
    stop_ = true;
    wake_.notify_all();
    pollThread_.join();
    reportThread_.join();
  }

  // Reports `taskId` ready now (for agents that never do it themselves).
  void reportReady(const std::string& taskId) {
    json update;
    {
      std::lock_guard lock(mutex_);
      update = {
          {"taskId", taskId}, {"seq", ++seqs_[taskId]}, {"state", "Started"}, {"ready", true}};
    }
    std::lock_guard sending(sendMutex_);
    send(update);
  }

  // Task ids reported Started so far.
  size_t started() {
    std::lock_guard lock(mutex_);
    return startedIds_.size();
  }
  std::vector<std::string> startedIds() {
    std::lock_guard lock(mutex_);
    return {startedIds_.begin(), startedIds_.end()};
  }

 private:
  void send(json update) {
    json body = {{"updates", json::array({std::move(update)})}};
    manual_.call("POST", "/v1/nodes/bench-node/taskStatus", &body);
  }

  void poll() {
    int64_t revision = 0;
    while (!stop_) {
      auto answer = poller_.call("GET",
                                 "/v1/nodes/bench-node/assignments?afterRevision=" +
                                     std::to_string(revision) + "&waitMs=500",
                                 nullptr);
      if (!answer || answer->status != 200) continue;
      revision = answer->body.value("revision", revision);
      std::lock_guard lock(mutex_);
      for (const json& a : answer->body["assignments"]) {
        std::string id = a["task"]["id"];
        if (a["desiredState"] == "Killed") {
          if (killed_.insert(id).second) work_.push_back({Clock::now(), id, "Finished"});
        } else if (seen_.insert(id).second) {
          trace_.push_back({Clock::now(), "seen"});
          int64_t launched = a["task"]["stateTimesMs"].value("Launched", int64_t{0});
          int64_t wallNow = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
          if (launched > 0) launchedToSeenMs_.push_back(static_cast<double>(wallNow - launched));
          work_.push_back({Clock::now(), id, "Started"});
          if (healthMs_ >= 0) {
            work_.push_back({Clock::now() + std::chrono::milliseconds(healthMs_), id, "ready"});
          }
        }
      }
      wake_.notify_all();
    }
  }

  void report() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      std::sort(work_.begin(), work_.end(),
                [](const Work& a, const Work& b) { return a.due < b.due; });
      if (work_.empty()) {
        wake_.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      if (work_.front().due > Clock::now()) {
        wake_.wait_until(lock, work_.front().due);
        continue;
      }
      // Everything due goes in one report, as a real agent batches its updates.
      json updates = json::array();
      while (!work_.empty() && work_.front().due <= Clock::now()) {
        Work next = work_.front();
        work_.erase(work_.begin());
        json update = {{"taskId", next.taskId}, {"seq", ++seqs_[next.taskId]}};
        if (next.kind == "Finished") {
          update["state"] = "Finished";
          update["exitCode"] = 0;
        } else {
          update["state"] = "Started";
          update["ready"] = next.kind == "ready";
          update["ip"] = "10.64.0.2";
          if (next.kind == "Started") startedIds_.insert(next.taskId);
        }
        updates.push_back(std::move(update));
      }
      for (const json& u : updates) {
        if (u.value("ready", false)) trace_.push_back({Clock::now(), "ready"});
      }
      json body = {{"updates", std::move(updates)}};
      lock.unlock();
      reporter_.call("POST", "/v1/nodes/bench-node/taskStatus", &body);
      lock.lock();
    }
  }

  struct Work {
    Clock::time_point due;
    std::string taskId;
    std::string kind;  // "Started", "ready", "Finished".
  };

  skiff::client::ApiClient poller_;
  skiff::client::ApiClient reporter_;
  skiff::client::ApiClient manual_;  // reportReady's client.
  std::mutex sendMutex_;
  int healthMs_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Work> work_;

 public:
  // When tasks were first seen in assignments and when readiness was reported, for the gaps
  // between a ready report and the next wave's tasks.
  std::vector<std::pair<Clock::time_point, std::string>> trace_;
  std::vector<double> launchedToSeenMs_;  // From Launched (skiffd's clock) to the agent seeing it.

 private:
  std::set<std::string> seen_;
  std::set<std::string> killed_;
  std::set<std::string> startedIds_;
  std::map<std::string, int64_t> seqs_;
  std::atomic<bool> stop_{false};
  std::thread pollThread_;
  std::thread reportThread_;
};

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  std::filesystem::create_directories(options.stateDir);
  int port = freePort();
  std::string listen = "127.0.0.1:" + std::to_string(port);
  pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execl(options.skiffd.c_str(), options.skiffd.c_str(), "--state-dir", options.stateDir.c_str(),
            "--listen", listen.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string address = "http://" + listen;
  skiff::client::ApiClient probe(address, "");
  for (int i = 0; i < 200; ++i) {
    auto health = probe.call("GET", "/healthz", nullptr);
    if (health && health->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string admin = skiff::bench::readToken(options.stateDir + "/admin.token");
  std::string join = skiff::bench::readToken(options.stateDir + "/join.token");
  skiff::client::ApiClient api(address, admin);
  skiff::client::ApiClient agentApi(address, join);
  json node = {{"id", "bench-node"},
               {"resources",
                {{"cpu", 64}, {"memoryMB", 262144}, {"diskMB", 1000000}, {"networkMbps", 10000}}},
               {"attributes", {{"zone", "z1"}}}};
  agentApi.call("POST", "/v1/nodes", &node);
  json out = {{"tasks", options.tasks}};

  // ---- Readiness to endpoint on the watch. ----
  {
    SimulatedAgent agent(address, join, /*healthMs=*/-1);
    json job = serviceJob("ready-bench", options.tasks, options.surge, 0);
    auto created = api.call("POST", "/v1/jobs", &job);
    std::string jobId = created->body["id"];
    while (agent.started() < static_cast<size_t>(options.tasks)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::mutex mutex;
    std::condition_variable seen;
    std::map<std::string, Clock::time_point> addedAt;
    std::atomic<bool> watching{false};
    std::thread watcher([&] {
      skiff::client::ApiClient client(address, admin);
      client.stream("/v1/jobs/" + jobId + "/endpoints?watch=true", [&](std::string_view line) {
        json event = json::parse(line);
        watching = true;
        if (event["type"] == "added") {
          std::lock_guard lock(mutex);
          addedAt[event["endpoint"]["taskId"]] = Clock::now();
          seen.notify_all();
        }
        std::lock_guard lock(mutex);
        return addedAt.size() < static_cast<size_t>(options.tasks);
      });
    });
    while (!watching) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::vector<double> latencies;
    for (const std::string& taskId : agent.startedIds()) {
      auto start = Clock::now();
      agent.reportReady(taskId);
      std::unique_lock lock(mutex);
      seen.wait_for(lock, std::chrono::seconds(5), [&] { return addedAt.contains(taskId); });
      if (addedAt.contains(taskId)) {
        latencies.push_back(
            std::chrono::duration<double, std::milli>(addedAt[taskId] - start).count());
      }
    }
    watcher.join();
    out["readyToEndpointMs"] = {{"samples", latencies.size()},
                                {"p50", percentile(latencies, 0.5)},
                                {"p90", percentile(latencies, 0.9)},
                                {"p99", skiff::bench::p99OrNull<json>(latencies)},
                                {"max", percentile(latencies, 1.0)}};
    api.call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  }

  // ---- Rolling update. ----
  {
    SimulatedAgent agent(address, join, options.healthMs);
    json job = serviceJob("roll-bench", options.tasks, options.surge, options.minHealthyMs);
    auto created = api.call("POST", "/v1/jobs", &job);
    std::string jobId = created->body["id"];
    for (int i = 0; i < 3000; ++i) {
      auto endpoints = api.call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
      if (endpoints && endpoints->body["items"].size() == static_cast<size_t>(options.tasks)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    json container = job["container"];
    container["image"] = "busybox:1.37";
    auto start = Clock::now();
    api.call("PUT", "/v1/jobs/" + jobId + "/container", &container);
    double totalMs = 0;
    for (int i = 0; i < 600'000; ++i) {
      auto history = api.call("GET", "/v1/jobs/" + jobId + "/history", nullptr);
      if (history && history->status == 200 && !history->body.contains("rollout")) {
        totalMs = msSince(start);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // The critical path's gaps: from a ready report to the first task seen after it.
    std::vector<double> gaps;
    Clock::time_point lastReady{};
    for (const auto& [at, kind] : agent.trace_) {
      if (at < start) continue;
      if (kind == "ready") {
        lastReady = at;
      } else if (lastReady != Clock::time_point{}) {
        gaps.push_back(std::chrono::duration<double, std::milli>(at - lastReady).count());
        lastReady = Clock::time_point{};
      }
    }
    out["readyToNextWaveMs"] = {
        {"samples", gaps.size()}, {"p50", percentile(gaps, 0.5)}, {"max", percentile(gaps, 1.0)}};
    int waves = (options.tasks + options.surge - 1) / options.surge;
    double waitsMs = waves * static_cast<double>(options.healthMs + options.minHealthyMs);
    out["rollingUpdate"] = {{"surge", options.surge},
                            {"healthMs", options.healthMs},
                            {"minHealthyMs", options.minHealthyMs},
                            {"waves", waves},
                            {"totalMs", totalMs},
                            {"healthWaitsMs", waitsMs},
                            {"overheadPercent", (totalMs - waitsMs) / waitsMs * 100.0}};
    // Where the gaps go, from the tasks' own times: ready -> next task accepted -> launched.
    auto tasks = api.call("GET", "/v1/tasks?jobId=" + jobId + "&limit=1000", nullptr);
    std::vector<int64_t> readyTimes;
    std::vector<std::pair<int64_t, int64_t>> acceptedLaunched;
    if (tasks && tasks->status == 200) {
      for (const json& task : tasks->body["items"]) {
        if (task.contains("readySinceMs")) readyTimes.push_back(task["readySinceMs"]);
        if (task.value("specRevision", 1) == 2) {
          const json& times = task["stateTimesMs"];
          acceptedLaunched.emplace_back(times.value("Accepted", int64_t{0}),
                                        times.value("Launched", int64_t{0}));
        }
      }
    }
    std::sort(readyTimes.begin(), readyTimes.end());
    std::vector<double> toAccepted;
    std::vector<double> toLaunched;
    for (const auto& [accepted, launched] : acceptedLaunched) {
      toLaunched.push_back(static_cast<double>(launched - accepted));
      auto it = std::upper_bound(readyTimes.begin(), readyTimes.end(), accepted);
      if (it != readyTimes.begin()) toAccepted.push_back(static_cast<double>(accepted - *(it - 1)));
    }
    out["readyToAcceptedMs"] = percentile(toAccepted, 0.5);
    out["launchedToSeenMs"] = percentile(agent.launchedToSeenMs_, 0.5);
    out["acceptedToLaunchedMs"] = percentile(toLaunched, 0.5);
    api.call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  }

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  std::cout << out.dump(2) << "\n";
  return 0;
}
