#include "testing/fake_runtime.h"

#include <utility>

namespace skiff::testing {

using agent::runtime::ExitReason;

void FakeRuntime::failStarts(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  startError_ = std::move(error);
}

void FakeRuntime::onExec(ExecHandler handler) {
  std::lock_guard lock(mutex_);
  execHandler_ = std::move(handler);
}

bool FakeRuntime::exit(const std::string& id, int exitCode, ExitReason reason) {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end() || it->second.exit) return false;
  it->second.exit = ExitStatus{.exitCode = exitCode, .reason = reason};
  changed_.notify_all();
  return true;
}

std::optional<FakeRuntime::ContainerConfig> FakeRuntime::waitStarted(
    const std::string& id, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return containers_.contains(id); })) {
    return std::nullopt;
  }
  return containers_.at(id).config;
}

bool FakeRuntime::running(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  return it != containers_.end() && !it->second.exit;
}

int FakeRuntime::startCount() const {
  std::lock_guard lock(mutex_);
  return starts_;
}

int FakeRuntime::stopCount(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  return it == containers_.end() ? 0 : it->second.stops;
}

int FakeRuntime::execCount(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  return it == containers_.end() ? 0 : it->second.execs;
}

Status FakeRuntime::start(const ContainerConfig& config) {
  std::lock_guard lock(mutex_);
  if (startError_) return std::unexpected(*startError_);
  if (containers_.contains(config.id)) {
    return fail(ErrorCode::kAlreadyExists, "container " + config.id + " exists");
  }
  containers_[config.id].config = config;
  ++starts_;
  changed_.notify_all();
  return {};
}

Status FakeRuntime::stop(const std::string& id, std::optional<std::chrono::milliseconds>) {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return fail(ErrorCode::kNotFound, "container " + id);
  ++it->second.stops;
  if (!it->second.exit) {
    it->second.exit = ExitStatus{.exitCode = 143, .signal = 15, .reason = ExitReason::kStopped};
  }
  changed_.notify_all();
  return {};
}

Result<std::optional<FakeRuntime::ExitStatus>> FakeRuntime::poll(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return fail(ErrorCode::kNotFound, "container " + id);
  return it->second.exit;
}

Result<FakeRuntime::ExitStatus> FakeRuntime::wait(const std::string& id,
                                                  std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  auto exited = [&] {
    auto it = containers_.find(id);
    return it == containers_.end() || it->second.exit.has_value();
  };
  changed_.wait_for(lock, timeout, exited);
  auto it = containers_.find(id);
  if (it == containers_.end()) return fail(ErrorCode::kNotFound, "container " + id);
  if (!it->second.exit) return fail(ErrorCode::kUnavailable, "container " + id + " is running");
  return *it->second.exit;
}

Result<std::vector<std::string>> FakeRuntime::adopt() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& [id, container] : containers_) ids.push_back(id);
  return ids;
}

Status FakeRuntime::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return {};
  if (!it->second.exit) return fail(ErrorCode::kFailedPrecondition, "container " + id + " runs");
  containers_.erase(it);
  return {};
}

Result<uint64_t> FakeRuntime::cpuUsageNs(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end() || it->second.exit) {
    return fail(ErrorCode::kNotFound, "container " + id);
  }
  return uint64_t{0};
}

Result<FakeRuntime::ProcessResult> FakeRuntime::exec(const std::string& id,
                                                     const std::vector<std::string>& command,
                                                     std::chrono::milliseconds) {
  ExecHandler handler;
  {
    std::lock_guard lock(mutex_);
    auto it = containers_.find(id);
    if (it == containers_.end() || it->second.exit) {
      return fail(ErrorCode::kNotFound, "container " + id + " is not running");
    }
    ++it->second.execs;
    handler = execHandler_;
  }
  if (!handler) return ProcessResult{.exitCode = 0};
  return handler(id, command);
}

}  // namespace skiff::testing
