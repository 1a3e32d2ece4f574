#include <array>

#include <openssl/evp.h>

#include "common/encoding.h"
#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

namespace manager_internal {

std::string sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return hexEncode(digest, length);
}

bool autoscalesOnCpu(const api::JobDescriptor& descriptor) {
  if (!descriptor.service || !descriptor.service->autoscaling) return false;
  for (const api::ScalingPolicy& policy : descriptor.service->autoscaling->policies) {
    if (policy.metric == "cpu") return true;
  }
  return false;
}

std::optional<double> averageCpuPercent(JobActor& actor, int64_t nowMs, int64_t freshMs) {
  double requested = actor.view.job.descriptor.container.resources.cpu;
  if (requested <= 0) return std::nullopt;
  std::unordered_map<std::string, JobActor::CpuReport> kept;
  double sum = 0;
  int64_t count = 0;
  for (const TaskRecord& task : actor.view.tasks) {
    auto it = actor.cpuReports.find(task.id);
    if (it == actor.cpuReports.end() || task.finished()) continue;
    kept.insert(*it);
    if (task.state != api::TaskState::kStarted || task.killReason != api::TaskReason::kNone ||
        nowMs - it->second.atMs > freshMs) {
      continue;
    }
    sum += it->second.cores / requested * 100.0;
    ++count;
  }
  actor.cpuReports = std::move(kept);
  if (count == 0) return std::nullopt;
  return sum / static_cast<double>(count);
}

std::string nodeStateName(const NodeState& node) {
  if (node.lost) return "Lost";
  return node.record.draining ? "Draining" : "Ready";
}

json nodeToWire(const NodeState& node, const api::Resources& allocated) {
  json out = {{"id", node.record.id},
              {"resources", resourcesToJson(node.record.resources)},
              {"allocated", resourcesToJson(allocated)},
              {"attributes", node.record.attributes},
              {"labels", node.record.labels},
              {"network", {{"block", node.record.addressBlock}}},
              {"state", nodeStateName(node)},
              {"lastHeartbeatMs", node.lastHeartbeatMs},
              {"registeredAtMs", node.record.registeredAtMs},
              {"taskCount", node.tasks.size()},
              {"revision", node.record.modRevision}};
  if (node.record.draining) out["drainDeadlineMs"] = node.record.drainDeadlineMs;
  return out;
}

namespace {

json taskCounts(const JobView& view) {
  std::array<int64_t, api::kTaskStateCount> counts{};
  for (const TaskRecord& task : view.tasks) counts[static_cast<size_t>(task.state)]++;
  json out = json::object();
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    out[std::string(api::taskStateName(static_cast<api::TaskState>(i)))] =
        counts[static_cast<size_t>(i)];
  }
  return out;
}

}  // namespace

json jobToWire(const JobView& view) {
  json out = toWire(view.job);
  out["taskCounts"] = taskCounts(view);
  return out;
}

std::string jobToWireText(const JobView& view, std::string_view descriptorText) {
  return toWireText(view.job, descriptorText, {{"taskCounts", taskCounts(view)}});
}

bool matchesFilter(const JobRecord& job, const JobFilter& filter) {
  if (filter.state && job.state != *filter.state) return false;
  if (filter.batch && job.descriptor.isBatch() != *filter.batch) return false;
  if (!filter.applicationName.empty() && job.descriptor.applicationName != filter.applicationName) {
    return false;
  }
  if (!filter.capacityGroup.empty() && job.descriptor.capacityGroup != filter.capacityGroup) {
    return false;
  }
  if (!filter.owner.empty() && job.descriptor.owner.teamEmail != filter.owner) return false;
  return true;
}

scheduler::NodeSpec nodeSpec(const NodeState& node) {
  scheduler::NodeSpec spec;
  spec.id = node.record.id;
  spec.capacity = node.record.resources;
  if (node.record.attributes.is_object()) {
    for (const auto& [key, value] : node.record.attributes.items()) {
      spec.attributes[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  for (const auto& [key, value] : node.record.labels) spec.attributes[key] = value;
  spec.schedulable = !node.lost && !node.record.draining;
  return spec;
}

std::string dumpText(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Error unavailable() {
  return Error(ErrorCode::kUnavailable, "skiffd is shutting down");
}

}  // namespace manager_internal

}  // namespace skiff::controlplane
