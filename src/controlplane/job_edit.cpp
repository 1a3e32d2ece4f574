#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/job_logic.h"

namespace skiff::controlplane {

std::optional<size_t> JobView::findIndex(int64_t index) const {
  auto it = std::lower_bound(tasks.begin(), tasks.end(), index,
                             [](const TaskRecord& t, int64_t i) { return t.index < i; });
  if (it == tasks.end() || it->index != index) return std::nullopt;
  return static_cast<size_t>(it - tasks.begin());
}

JobRecord& JobEdit::mutableJob() {
  if (!job_) job_ = view_.job;
  return *job_;
}

const TaskRecord& JobEdit::task(size_t i) const {
  if (i >= view_.tasks.size()) return appended_[i - view_.tasks.size()];
  if (auto it = replacements_.find(i); it != replacements_.end()) return it->second;
  if (auto it = changed_.find(i); it != changed_.end()) return it->second;
  return view_.tasks[i];
}

TaskRecord& JobEdit::mutableTask(size_t i) {
  if (i >= view_.tasks.size()) return appended_[i - view_.tasks.size()];
  if (auto it = replacements_.find(i); it != replacements_.end()) return it->second;
  auto [it, inserted] = changed_.try_emplace(i);
  if (inserted) it->second = view_.tasks[i];
  return it->second;
}

std::optional<size_t> JobEdit::findIndex(int64_t index) const {
  if (auto position = view_.findIndex(index)) return position;
  for (size_t i = 0; i < appended_.size(); ++i) {
    if (appended_[i].index == index) return view_.tasks.size() + i;
  }
  return std::nullopt;
}

std::optional<size_t> JobEdit::findTaskId(const std::string& id) const {
  // Task ids are "<jobId>-<index>-<attempt>": find the slot by index, then match the attempt.
  size_t last = id.rfind('-');
  if (last == std::string::npos || last == 0) return std::nullopt;
  size_t before = id.rfind('-', last - 1);
  if (before == std::string::npos) return std::nullopt;
  int64_t index = 0;
  for (size_t i = before + 1; i < last; ++i) {
    if (id[i] < '0' || id[i] > '9') return std::nullopt;
    index = index * 10 + (id[i] - '0');
    if (index > 1'000'000'000) return std::nullopt;
  }
  auto position = findIndex(index);
  if (!position || task(*position).id != id) return std::nullopt;
  return position;
}

void JobEdit::appendTask(TaskRecord task) {
  appended_.push_back(std::move(task));
}

void JobEdit::replaceTask(size_t i, TaskRecord next) {
  if (i >= view_.tasks.size()) {
    // A task appended in this edit finished and is retried in the same edit: keep the finished
    // attempt as a changed record of its own by moving it into history.
    TaskRecord& slot = appended_[i - view_.tasks.size()];
    history_.push_back(std::move(slot));
    slot = std::move(next);
    return;
  }
  // Make sure the finished attempt is written before the slot moves on.
  mutableTask(i);
  replacements_[i] = std::move(next);
}

bool JobEdit::empty() const {
  return !job_ && changed_.empty() && replacements_.empty() && appended_.empty() &&
         history_.empty();
}

std::vector<const TaskRecord*> JobEdit::changedTasks() const {
  std::vector<const TaskRecord*> out;
  for (const auto& [i, task] : changed_) out.push_back(&task);
  for (const auto& task : history_) out.push_back(&task);
  for (const auto& [i, task] : replacements_) out.push_back(&task);
  for (const auto& task : appended_) out.push_back(&task);
  return out;
}

void JobEdit::applyTo(JobView& view, store::Revision revision) && {
  if (job_) {
    view.job = std::move(*job_);
    view.job.modRevision = revision;
  }
  for (auto& [i, task] : changed_) {
    view.tasks[i] = std::move(task);
    view.tasks[i].modRevision = revision;
  }
  for (auto& [i, task] : replacements_) {
    view.tasks[i] = std::move(task);
    view.tasks[i].modRevision = revision;
  }
  for (auto& task : appended_) {
    task.modRevision = revision;
    view.tasks.push_back(std::move(task));
  }
  std::sort(view.tasks.begin(), view.tasks.end(),
            [](const TaskRecord& a, const TaskRecord& b) { return a.index < b.index; });
}

}  // namespace skiff::controlplane
