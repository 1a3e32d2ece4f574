#include "cli/watch.h"

#include <algorithm>
#include <set>

#include "api/states.h"
#include "cli/output.h"
#include "cli/util.h"

namespace skiff::cli {
namespace {

using nlohmann::json;

std::string stringField(const json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::optional<int64_t> intField(const json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}

std::string jobState(const json& job) {
  if (!job.is_object()) return {};
  auto status = job.find("status");
  return status == job.end() ? std::string() : stringField(*status, "state");
}

std::string describeAttempt(const json& task) {
  std::string out = "task ";
  if (auto index = intField(task, "index")) out += std::to_string(*index) + " ";
  out += "(" + stringField(task, "id") + ")";
  std::string state = stringField(task, "state");
  if (state != "Finished") return out + " did not finish (" + (state.empty() ? "?" : state) + ")";
  std::string reason = stringField(task, "reason");
  out += " finished " + (reason.empty() ? std::string("without a reason") : reason);
  if (std::string message = stringField(task, "message"); !message.empty()) out += ": " + message;
  return sanitize(out);
}

}  // namespace

EventCursor::EventCursor(std::optional<int64_t> fromRevision) : next_(fromRevision) {}

void EventCursor::observe(const json& event) {
  std::string type = stringField(event, "type");
  std::optional<int64_t> revision = intField(event, "revision");
  if (type == "snapshot") {
    // Until the snapshot ends, a reconnect has to take the whole snapshot again.
    next_.reset();
  } else if ((type == "snapshotEnd" || type == "update") && revision) {
    next_ = std::max(next_.value_or(0), *revision + 1);
  }
}

JobWatch::JobWatch(std::string jobId) : jobId_(std::move(jobId)) {}

void JobWatch::apply(const json& event) {
  std::string type = stringField(event, "type");
  std::optional<int64_t> revision = intField(event, "revision");
  if (type == "keepalive") {
    if (jobFinished()) settled_ = true;
    return;
  }
  if (type == "snapshotEnd") {
    inSnapshot_ = false;
    if (job_.is_null()) missing_ = true;
    if (jobFinished()) settled_ = true;  // A snapshot is consistent: nothing is in flight.
    return;
  }
  if (type != "snapshot" && type != "update") return;
  if (type == "snapshot") inSnapshot_ = true;
  if (type == "update" && finishedAtRevision_ && revision && *revision > *finishedAtRevision_) {
    settled_ = true;  // Changes are sent in revision order, so the job's last one is behind us.
  }
  auto found = event.find("object");
  if (found == event.end() || !found->is_object()) return;
  json copy = *found;
  // Objects in events may lack their own revision (skiffd sends the stored form); the event's
  // revision is the object's, and ordering attempts needs it.
  if (!copy.contains("revision") && revision) copy["revision"] = *revision;
  const json* object = &copy;
  std::string kind = stringField(event, "kind");
  if (kind == "job" && stringField(*object, "id") == jobId_) {
    job_ = std::move(copy);
    missing_ = false;
    if (jobState(job_) == "Finished" && !finishedAtRevision_) {
      finishedAtRevision_ = revision ? revision : intField(job_, "revision");
      if (!finishedAtRevision_) finishedAtRevision_ = 0;
    }
  } else if (kind == "task" && stringField(*object, "jobId") == jobId_) {
    std::string id = stringField(*object, "id");
    auto known = tasks_.find(id);
    // A snapshot after a reconnect may carry an older copy than an update we already applied.
    if (known != tasks_.end() && intField(known->second, "revision").value_or(0) >
                                     intField(*object, "revision").value_or(0)) {
      return;
    }
    tasks_[id] = std::move(copy);
  }
}

bool JobWatch::jobFinished() const {
  return jobState(job_) == "Finished";
}

bool JobWatch::done() const {
  if (inSnapshot_ || !jobFinished()) return false;
  if (settled_) return true;
  return std::all_of(tasks_.begin(), tasks_.end(), [](const auto& entry) {
    return stringField(entry.second, "state") == "Finished";
  });
}

std::vector<const json*> JobWatch::finalAttempts() const {
  std::set<std::string> replaced;
  for (const auto& [id, task] : tasks_) {
    if (std::string previous = stringField(task, "resubmitOf"); !previous.empty()) {
      replaced.insert(previous);
    }
  }
  std::map<int64_t, const json*> byIndex;
  std::vector<const json*> unindexed;
  for (const auto& [id, task] : tasks_) {
    if (replaced.contains(id)) continue;
    std::optional<int64_t> index = intField(task, "index");
    if (!index) {
      unindexed.push_back(&task);
      continue;
    }
    auto [it, inserted] = byIndex.emplace(*index, &task);
    if (!inserted &&
        intField(task, "revision").value_or(0) > intField(*it->second, "revision").value_or(0)) {
      it->second = &task;
    }
  }
  std::vector<const json*> out;
  for (const auto& [index, task] : byIndex) out.push_back(task);
  out.insert(out.end(), unindexed.begin(), unindexed.end());
  return out;
}

std::string JobWatch::statusLine() const {
  std::string state = jobState(job_);
  std::string out = jobId_ + "  " + (state.empty() ? std::string("Pending") : state) + "  tasks: ";
  std::map<std::string, int64_t> byState;
  std::map<std::string, int64_t> finishedByReason;
  std::vector<const json*> attempts = finalAttempts();
  for (const json* task : attempts) {
    std::string taskState = stringField(*task, "state");
    ++byState[taskState];
    if (taskState == "Finished") {
      std::string reason = stringField(*task, "reason");
      ++finishedByReason[reason.empty() ? "unknown" : reason];
    }
  }
  std::string counts;
  auto add = [&counts](std::string text) {
    if (!counts.empty()) counts += ", ";
    counts += text;
  };
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    std::string_view name = api::taskStateName(static_cast<api::TaskState>(i));
    auto it = byState.find(std::string(name));
    if (it == byState.end()) continue;
    std::string part = std::to_string(it->second) + " " + taskStateWord(name);
    if (name == "Finished") {
      // "normal" first: it is the one people look for; the rest alphabetically.
      std::string reasons;
      if (auto normal = finishedByReason.find("normal"); normal != finishedByReason.end()) {
        reasons = std::to_string(normal->second) + " normal";
      }
      for (const auto& [reason, count] : finishedByReason) {
        if (reason == "normal") continue;
        if (!reasons.empty()) reasons += ", ";
        reasons += std::to_string(count) + " " + reason;
      }
      part += " (" + reasons + ")";
    }
    add(std::move(part));
  }
  for (const auto& [name, count] : byState) {  // States this client does not know.
    if (!api::parseTaskState(name)) {
      add(std::to_string(count) + " " + taskStateWord(name.empty() ? "unknown" : name));
    }
  }
  out += counts.empty() ? "none yet" : counts;
  // Why the latest retry was needed: without it a task that keeps failing before it starts (an
  // unreachable registry) shows only as "accepted".
  const json* retried = nullptr;
  const json* failedAttempt = nullptr;
  for (const json* task : attempts) {
    if (stringField(*task, "state") == "Finished") continue;
    auto previous = tasks_.find(stringField(*task, "resubmitOf"));
    if (previous == tasks_.end()) continue;
    std::string reason = stringField(previous->second, "reason");
    if (reason.empty() || reason == "normal" || reason == "killed" || reason == "scaledDown") {
      continue;
    }
    if (retried == nullptr ||
        intField(*task, "revision").value_or(0) > intField(*retried, "revision").value_or(0)) {
      retried = task;
      failedAttempt = &previous->second;
    }
  }
  if (retried != nullptr) {
    std::string message = stringField(*failedAttempt, "message");
    if (message.size() > 160) message = message.substr(0, 157) + "...";
    out += "; retrying task ";
    if (auto index = intField(*retried, "index")) out += std::to_string(*index) + " ";
    out += "after " + stringField(*failedAttempt, "reason");
    if (!message.empty()) out += ": " + message;
  }
  return sanitize(out);
}

JobWatch::Outcome JobWatch::outcome() const {
  Outcome result;
  std::vector<const json*> attempts = finalAttempts();
  std::set<int64_t> seenIndexes;
  for (const json* task : attempts) {
    if (auto index = intField(*task, "index")) seenIndexes.insert(*index);
    if (stringField(*task, "state") != "Finished" || stringField(*task, "reason") != "normal") {
      result.failures.push_back(describeAttempt(*task));
    }
  }
  // A batch index that never got a task (the job was killed first) did not succeed either.
  if (auto descriptor = job_.find("descriptor"); descriptor != job_.end()) {
    if (auto batch = descriptor->find("batch"); batch != descriptor->end()) {
      int64_t size = intField(*batch, "size").value_or(0);
      for (int64_t index = 0; index < size; ++index) {
        if (!seenIndexes.contains(index)) {
          result.failures.push_back("task " + std::to_string(index) + " never ran");
        }
      }
    }
  }
  result.succeeded = result.failures.empty();
  return result;
}

}  // namespace skiff::cli
