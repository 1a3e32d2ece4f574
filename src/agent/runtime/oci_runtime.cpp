#include "agent/runtime/oci_runtime.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

namespace skiff::agent::runtime {
namespace {

// The runtime's stderr is the only diagnosis we get; keep its tail, trimmed.
std::string describe(const ProcessResult& result) {
  std::string text = result.err.empty() ? result.out : result.err;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  if (result.timedOut) return "timed out";
  if (result.signal != 0) return "killed by signal " + std::to_string(result.signal);
  return "exit " + std::to_string(result.exitCode) + (text.empty() ? "" : ": " + text);
}

bool looksNotFound(const ProcessResult& result) {
  const std::string& err = result.err;
  return err.find("does not exist") != std::string::npos ||
         err.find("not found") != std::string::npos ||
         err.find("No such file") != std::string::npos;
}

}  // namespace

Result<RuntimeChoice> chooseRuntime(bool preferCrun, const CgroupLayout& layout,
                                    const std::string& crunPath, const std::string& runcPath) {
  bool haveCrun = access(crunPath.c_str(), X_OK) == 0;
  bool haveRunc = access(runcPath.c_str(), X_OK) == 0;
  if (preferCrun) {
    auto incompatible = crunIncompatibility(layout);
    if (haveCrun && !incompatible) return RuntimeChoice{crunPath, ""};
    if (haveRunc) {
      return RuntimeChoice{runcPath, incompatible ? *incompatible : crunPath + " is not installed"};
    }
    return fail(ErrorCode::kFailedPrecondition,
                incompatible ? "crun unusable (" + *incompatible + ") and runc is not installed"
                             : "neither crun nor runc is installed");
  }
  if (haveRunc) return RuntimeChoice{runcPath, ""};
  return fail(ErrorCode::kFailedPrecondition, runcPath + " is not installed");
}

bool isValidContainerId(std::string_view id) {
  if (id.empty() || id.size() > 64 || id.front() == '.' || id.front() == '-') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

RuncCompatibleRuntime::RuncCompatibleRuntime(RuncOptions options, ProcessRunner& runner)
    : options_(std::move(options)), runner_(runner) {}

std::vector<std::string> RuncCompatibleRuntime::commandPrefix() const {
  std::vector<std::string> argv{options_.binary};
  if (!options_.root.empty()) {
    argv.push_back("--root");
    argv.push_back(options_.root);
  }
  if (!options_.logFile.empty()) {
    argv.push_back("--log");
    argv.push_back(options_.logFile);
  }
  return argv;
}

Result<ProcessResult> RuncCompatibleRuntime::invoke(std::vector<std::string> args) {
  ProcessSpec spec;
  spec.argv = commandPrefix();
  for (std::string& arg : args) spec.argv.push_back(std::move(arg));
  // runc reads XDG_RUNTIME_DIR and friends; give it a fixed, minimal environment.
  spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.timeout = options_.timeout;
  auto result = runner_.run(spec);
  if (!result) return std::unexpected(result.error().wrap(options_.binary));
  return result;
}

Status RuncCompatibleRuntime::create(const std::string& id, const std::string& bundleDir,
                                     const CreateOptions& options) {
  if (!isValidContainerId(id)) return fail(ErrorCode::kInvalidArgument, "invalid container id");
  std::vector<std::string> args{"create", "--bundle", bundleDir};
  if (!options.pidFile.empty()) {
    args.push_back("--pid-file");
    args.push_back(options.pidFile);
  }
  args.push_back(id);
  auto result = invoke(std::move(args));
  if (!result) return std::unexpected(result.error());
  if (!result->ok()) return fail(ErrorCode::kInternal, "runtime create: " + describe(*result));
  return {};
}

Status RuncCompatibleRuntime::start(const std::string& id) {
  auto result = invoke({"start", id});
  if (!result) return std::unexpected(result.error());
  if (!result->ok()) return fail(ErrorCode::kInternal, "runtime start: " + describe(*result));
  return {};
}

Result<ContainerState> RuncCompatibleRuntime::state(const std::string& id) {
  auto result = invoke({"state", id});
  if (!result) return std::unexpected(result.error());
  if (!result->ok()) {
    if (looksNotFound(*result)) return fail(ErrorCode::kNotFound, "container " + id);
    return fail(ErrorCode::kInternal, "runtime state: " + describe(*result));
  }
  auto json = nlohmann::json::parse(result->out, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return fail(ErrorCode::kInternal, "runtime state: unparsable output");
  }
  ContainerState state;
  state.id = json.value("id", id);
  state.status = json.value("status", "");
  state.pid = json.value("pid", 0);
  state.bundle = json.value("bundle", "");
  return state;
}

Status RuncCompatibleRuntime::kill(const std::string& id, int signal, bool all) {
  std::vector<std::string> args{"kill"};
  if (all) args.push_back("--all");
  args.push_back(id);
  args.push_back(std::to_string(signal));
  auto result = invoke(std::move(args));
  if (!result) return std::unexpected(result.error());
  if (!result->ok()) {
    if (looksNotFound(*result)) return fail(ErrorCode::kNotFound, "container " + id);
    // Signalling a container that already stopped is reported by runc as an error; the caller
    // learns the exit from the monitor, so say so precisely.
    if (result->err.find("not running") != std::string::npos ||
        result->err.find("process already finished") != std::string::npos) {
      return fail(ErrorCode::kFailedPrecondition, "container " + id + " is not running");
    }
    return fail(ErrorCode::kInternal, "runtime kill: " + describe(*result));
  }
  return {};
}

Status RuncCompatibleRuntime::remove(const std::string& id, bool force) {
  std::vector<std::string> args{"delete"};
  if (force) args.push_back("--force");
  args.push_back(id);
  auto result = invoke(std::move(args));
  if (!result) return std::unexpected(result.error());
  if (!result->ok() && !looksNotFound(*result)) {
    return fail(ErrorCode::kInternal, "runtime delete: " + describe(*result));
  }
  return {};
}

}  // namespace skiff::agent::runtime
