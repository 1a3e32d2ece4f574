#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>

#include "agent/agent_impl.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

Result<std::vector<int>> Agent::Impl::allocateGpus(int64_t count) {
  std::lock_guard lock(mutex);
  std::vector<int> picked;
  for (int gpu : gpuDevices) {
    if (static_cast<int64_t>(picked.size()) == count) break;
    if (!gpusInUse.contains(gpu)) picked.push_back(gpu);
  }
  if (static_cast<int64_t>(picked.size()) < count) {
    return fail(ErrorCode::kUnavailable, "not enough free GPUs on this node");
  }
  gpusInUse.insert(picked.begin(), picked.end());
  return picked;
}

void Agent::Impl::addGpuDevices(runtime::BundleSpec& spec, const std::vector<int>& gpus) {
  std::string indices;
  std::vector<std::string> paths;
  for (int gpu : gpus) {
    paths.push_back("/dev/nvidia" + std::to_string(gpu));
    if (!indices.empty()) indices += ",";
    indices += std::to_string(gpu);
  }
  if (gpus.empty()) return;
  for (const char* extra : {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}) {
    paths.push_back(extra);
  }
  for (const std::string& path : paths) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;
    spec.devices.push_back({path, static_cast<int64_t>(major(st.st_rdev)),
                            static_cast<int64_t>(minor(st.st_rdev)), 0666});
  }
  spec.gpuIndices = indices;
}

}  // namespace skiff::agent
