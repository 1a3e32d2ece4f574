// scheduler_bench: the cluster scheduler alone, in process (docs/benchmarks.md, "Scheduler").
//
// Builds a cluster of `--nodes` identical nodes (32 cores, 128 GiB, 3 zones, two machine types,
// a `rack` attribute) and a mixed workload of batch jobs (several task shapes, sizes 1 to 200)
// whose hard constraints are: none (45%), availabilityZone (15%), machineType (10%), uniqueHost
// (10%), zoneBalance (10%), an attribute expression (10%); a quarter of the jobs also carry a
// soft constraint. The workload asks for `--fill` of the cluster's cpu. With `--services`, that
// share of the jobs are critical-tier services (spreading) instead.
//
// The workload is handed to `Scheduler::schedule` in iterations of at most `--batch` tasks (as
// the job manager does) until everything is placed or an iteration places nothing. Reports
// placements per second (time inside `schedule` only), nodes used, and a packing lower bound: the
// most of ceil(total demand / node capacity) over cpu, memory, disk and network, and of what the
// constraints force (the largest uniqueHost job; the demand pinned to a zone, machine type or
// rack range over those nodes' capacity, and summed over the disjoint zones).
//
// Output: one JSON object on stdout.
//
// Usage: scheduler_bench [--nodes 10000] [--fill 0.85] [--batch 20000] [--services 0] [--seed 1]
//                        [--complement 1] [--largest-first 0] [--scored 8] [--constraints 1]

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "common/clock.h"
#include "controlplane/scheduler/scheduler.h"

using namespace skiff;
using namespace skiff::controlplane::scheduler;

namespace {

struct Options {
  int nodes = 10000;
  double fill = 0.85;
  int64_t batch = 20000;
  double services = 0;
  bool constraints = true;
  unsigned seed = 1;
  SchedulerConfig config;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--nodes")
      options.nodes = std::stoi(value);
    else if (flag == "--fill")
      options.fill = std::stod(value);
    else if (flag == "--batch")
      options.batch = std::stoll(value);
    else if (flag == "--services")
      options.services = std::stod(value);
    else if (flag == "--scored")
      options.config.maxFeasibleNodesScored = std::stoll(value);
    else if (flag == "--good-enough")
      options.config.goodEnoughFitness = std::stod(value);
    else if (flag == "--largest-first")
      options.config.largestFirst = value == "1";
    else if (flag == "--complement")
      options.config.complementOrder = value == "1";
    else if (flag == "--imbalance")
      options.config.imbalanceWeight = std::stod(value);
    else if (flag == "--constraints")
      options.constraints = value == "1";
    else if (flag == "--seed")
      options.seed = static_cast<unsigned>(std::stoul(value));
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      std::exit(2);
    }
  }
  return options;
}

double threadCpuSeconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  std::mt19937 random(options.seed);
  ManualClock clock;
  auto scheduler = makeScheduler(clock, options.config);
  const Resources nodeCapacity{32, 131072, 1'000'000, 25'000, 0};
  for (int i = 0; i < options.nodes; ++i) {
    NodeSpec node;
    node.id = "node-" + std::to_string(i);
    node.capacity = nodeCapacity;
    node.attributes = {{"zone", "z" + std::to_string(i % 3)},
                       {"machineType", (i / 3) % 2 == 0 ? "m5" : "r5"},
                       {"rack", std::to_string(i % 40)}};
    scheduler->upsertNode(node);
  }

  // Task shapes: cpu-heavy, balanced and memory-heavy.
  const std::vector<Resources> shapes = {
      {0.5, 1024, 1024, 10, 0}, {1, 4096, 1024, 10, 0},  {2, 8192, 2048, 20, 0},
      {4, 16384, 4096, 50, 0},  {1, 8192, 1024, 10, 0},  {4, 4096, 1024, 50, 0},
      {8, 32768, 8192, 100, 0}, {2, 16384, 2048, 20, 0},
  };
  std::vector<std::unique_ptr<JobShape>> jobs;
  std::vector<std::vector<std::string>> taskIds;
  double cpuWanted = options.fill * nodeCapacity.cpu * options.nodes;
  double cpuTotal = 0;
  double memoryTotal = 0;
  Resources total{0, 0, 0, 0, 0};
  // Demand only some nodes may take, for the lower bound: per zone (availabilityZone), per
  // machine type, and racks below 30; and the most tasks of one uniqueHost job.
  std::map<std::string, Resources> pinned;
  int64_t uniqueHostTasks = 0;
  int64_t tasks = 0;
  std::uniform_real_distribution<double> unit(0, 1);
  while (cpuTotal < cpuWanted) {
    auto job = std::make_unique<JobShape>();
    job->id = "job-" + std::to_string(jobs.size());
    job->resources = shapes[random() % shapes.size()];
    job->capacityGroup = "DEFAULT";
    job->image = "registry/app-" + std::to_string(random() % 50) + ":1";
    int size = 1 + static_cast<int>(random() % 200);
    double kind = options.constraints ? unit(random) : 1.0;
    if (kind < 0.15) {
      job->hardConstraints["availabilityZone"] = "z" + std::to_string(random() % 3);
    } else if (kind < 0.25) {
      job->hardConstraints["machineType"] = random() % 2 ? "m5" : "r5";
    } else if (kind < 0.35) {
      job->hardConstraints["uniqueHost"] = "true";
    } else if (kind < 0.45) {
      job->hardConstraints["zoneBalance"] = "true";
    } else if (kind < 0.55) {
      job->hardConstraints["attribute.rack"] = "<30";
    }
    if (unit(random) < 0.25) job->softConstraints["zone"] = "z" + std::to_string(random() % 3);
    if (unit(random) < options.services) {
      job->tier = api::Tier::kCritical;
      job->service = true;
    }
    std::vector<std::string> ids;
    std::string pin;
    if (auto it = job->hardConstraints.find("availabilityZone"); it != job->hardConstraints.end())
      pin = "zone " + it->second;
    if (auto it = job->hardConstraints.find("machineType"); it != job->hardConstraints.end())
      pin = "machineType " + it->second;
    if (job->hardConstraints.contains("attribute.rack")) pin = "rack<30";
    for (int t = 0; t < size && cpuTotal < cpuWanted; ++t) {
      ids.push_back(job->id + "-" + std::to_string(t) + "-0");
      cpuTotal += job->resources.cpu;
      memoryTotal += static_cast<double>(job->resources.memoryMB);
      addResources(total, job->resources);
      if (!pin.empty())
        addResources(pinned.try_emplace(pin, Resources{0, 0, 0, 0, 0}).first->second,
                     job->resources);
      ++tasks;
    }
    if (job->hardConstraints.contains("uniqueHost"))
      uniqueHostTasks = std::max<int64_t>(uniqueHostTasks, static_cast<int64_t>(ids.size()));
    jobs.push_back(std::move(job));
    taskIds.push_back(std::move(ids));
  }

  // Iterations of at most `batch` tasks, in submission order, as the job manager builds them.
  std::vector<size_t> next(jobs.size(), 0);
  int64_t placed = 0;
  int64_t evaluated = 0;
  int64_t iterations = 0;
  double seconds = 0;
  double cpuSeconds = 0;  // CPU time of this thread inside `schedule` (robust on a busy machine).
  std::vector<double> iterationMs;
  size_t firstPending = 0;
  while (true) {
    std::vector<PendingJob> pending;
    int64_t taken = 0;
    for (size_t j = firstPending; j < jobs.size() && taken < options.batch; ++j) {
      if (next[j] >= taskIds[j].size()) {
        if (j == firstPending) ++firstPending;
        continue;
      }
      PendingJob p{jobs[j].get(), {}};
      for (size_t t = next[j]; t < taskIds[j].size() && taken < options.batch; ++t, ++taken) {
        p.taskIds.push_back(taskIds[j][t]);
      }
      pending.push_back(std::move(p));
    }
    if (pending.empty()) break;
    if (std::getenv("SCHED_BENCH_DUMP")) {
      double c = 0, m = 0;
      for (const PendingJob& p : pending) {
        c += p.job->resources.cpu / nodeCapacity.cpu * static_cast<double>(p.taskIds.size());
        m += static_cast<double>(p.job->resources.memoryMB) /
             static_cast<double>(nodeCapacity.memoryMB) * static_cast<double>(p.taskIds.size());
      }
      std::fprintf(stderr, "iteration %lld: %zu jobs, %.1f node-cpus, %.1f node-memories\n",
                   static_cast<long long>(iterations), pending.size(), c, m);
    }
    auto start = std::chrono::steady_clock::now();
    double cpuStart = threadCpuSeconds();
    IterationResult result = scheduler->schedule(pending);
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    seconds += elapsed;
    cpuSeconds += threadCpuSeconds() - cpuStart;
    iterationMs.push_back(elapsed * 1000);
    ++iterations;
    placed += static_cast<int64_t>(result.assignments.size());
    evaluated += result.nodesEvaluated;
    if (result.assignments.empty()) break;
    // Tasks of a job are placed in order; skip past the placed ones.
    std::unordered_map<std::string, size_t> jobOf;
    for (size_t j = 0; j < pending.size(); ++j) jobOf[pending[j].job->id] = j;
    for (const Assignment& a : result.assignments) {
      size_t index = static_cast<size_t>(std::stoll(a.jobId.substr(4)));
      ++next[index];
    }
    // Jobs left with unplaceable tasks are dropped from later iterations.
    for (const PendingJob& p : pending) {
      size_t index = static_cast<size_t>(std::stoll(p.job->id.substr(4)));
      size_t placedHere = 0;
      for (const Assignment& a : result.assignments) placedHere += a.jobId == p.job->id;
      if (placedHere < p.taskIds.size()) next[index] = taskIds[index].size();
    }
  }

  int64_t nodesUsed = 0;
  double cpuShare = 0;
  double memoryShare = 0;
  for (int i = 0; i < options.nodes; ++i) {
    auto used = scheduler->allocated("node-" + std::to_string(i));
    if (!used || used->cpu <= 0) continue;
    ++nodesUsed;
    if (std::getenv("SCHED_BENCH_DUMP")) {
      std::fprintf(
          stderr, "%d %.3f %.3f\n", i, used->cpu / nodeCapacity.cpu,
          static_cast<double>(used->memoryMB) / static_cast<double>(nodeCapacity.memoryMB));
    }
    cpuShare += used->cpu / nodeCapacity.cpu;
    memoryShare += static_cast<double>(used->memoryMB) / static_cast<double>(nodeCapacity.memoryMB);
  }
  // A lower bound on the nodes any placement needs (see docs/benchmarks.md, "Scheduler"): the
  // most of (a) per dimension, ceil(demand / node capacity); (b) the largest uniqueHost job
  // (one node per task); (c) per node subset a constraint pins jobs to, the nodes the pinned
  // demand needs there; (d) the sum of (c) over the three zones (disjoint node sets).
  auto nodesFor = [&](const Resources& demand) {
    auto need = [](double amount, double capacity) {
      return capacity > 0 ? static_cast<int64_t>(std::ceil(amount / capacity - 1e-9)) : 0;
    };
    return std::max(
        {need(demand.cpu, nodeCapacity.cpu),
         need(static_cast<double>(demand.memoryMB), static_cast<double>(nodeCapacity.memoryMB)),
         need(static_cast<double>(demand.diskMB), static_cast<double>(nodeCapacity.diskMB)),
         need(static_cast<double>(demand.networkMbps),
              static_cast<double>(nodeCapacity.networkMbps))});
  };
  int64_t resourceBound = nodesFor(total);
  int64_t constraintBound = uniqueHostTasks;
  int64_t zonesBound = 0;
  for (const auto& [subset, demand] : pinned) {
    constraintBound = std::max(constraintBound, nodesFor(demand));
    if (subset.starts_with("zone ")) zonesBound += nodesFor(demand);
  }
  constraintBound = std::max(constraintBound, zonesBound);
  int64_t lowerBound = std::max(resourceBound, constraintBound);
  std::sort(iterationMs.begin(), iterationMs.end());
  nlohmann::json out = {
      {"nodes", options.nodes},
      {"jobs", jobs.size()},
      {"tasks", tasks},
      {"placed", placed},
      {"iterations", iterations},
      {"seconds", seconds},
      {"placementsPerSec", seconds > 0 ? static_cast<double>(placed) / seconds : 0},
      {"cpuSeconds", cpuSeconds},
      {"placementsPerCpuSec", cpuSeconds > 0 ? static_cast<double>(placed) / cpuSeconds : 0},
      {"nodesEvaluatedPerPlacement",
       placed > 0 ? static_cast<double>(evaluated) / static_cast<double>(placed) : 0},
      {"iterationMsMedian", skiff::bench::percentile(iterationMs, 0.5)},
      {"iterationMsMax", iterationMs.empty() ? 0 : iterationMs.back()},
      {"nodesUsed", nodesUsed},
      {"lowerBound", lowerBound},
      {"resourceBound", resourceBound},
      {"constraintBound", constraintBound},
      {"packingRatio",
       lowerBound > 0 ? static_cast<double>(nodesUsed) / static_cast<double>(lowerBound) : 0},
      {"usedNodeCpuShare", nodesUsed > 0 ? cpuShare / static_cast<double>(nodesUsed) : 0},
      {"usedNodeMemoryShare", nodesUsed > 0 ? memoryShare / static_cast<double>(nodesUsed) : 0},
      {"services", options.services},
      {"fill", options.fill}};
  std::cout << out.dump() << "\n";
  return 0;
}
