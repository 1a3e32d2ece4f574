#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <set>

#include <nlohmann/json.hpp>

#include "agent/image/archive_import.h"
#include "agent/image/fs_util.h"
#include "agent/image/image_store_impl.h"
#include "agent/image/layer.h"
#include "common/log.h"

namespace skiff::agent::image {

using nlohmann::json;
using store_detail::dumpJson;

namespace {

// The overlay mount options cannot escape these characters reliably across kernel versions.
bool validContainerDir(std::string_view dir) {
  return !dir.empty() && dir.front() == '/' &&
         dir.find_first_of(",:\\\n") == std::string_view::npos;
}

}  // namespace

Result<RootfsMount> ImageStore::prepareRootfs(const Digest& imageDigest,
                                              const std::string& containerDir) {
  Impl& impl = *impl_;
  if (!validContainerDir(containerDir)) {
    return fail(ErrorCode::kInvalidArgument,
                "container directory '" + containerDir +
                    "' must be absolute and free of ',', ':' and '\\'");
  }
  RootfsMount mount;
  mount.rootfs = containerDir + "/rootfs";
  mount.upperDir = containerDir + "/upper";
  mount.workDir = containerDir + "/work";
  mount.image = imageDigest;
  {
    std::lock_guard lock(impl.mutex);
    auto it = impl.images.find(imageDigest);
    if (it == impl.images.end()) {
      return fail(ErrorCode::kNotFound, "image " + imageDigest.str() + " is not in the store");
    }
    Image& image = it->second;
    mount.config = image.config;
    for (auto layer = image.layers.rbegin(); layer != image.layers.rend(); ++layer) {
      mount.lowerDirs.push_back(impl.layerPath(layer->digest));
    }
    if (auto lease = impl.leases.find(containerDir); lease != impl.leases.end()) {
      if (lease->second != imageDigest) {
        return fail(ErrorCode::kFailedPrecondition,
                    "container directory " + containerDir + " holds image " + lease->second.str());
      }
    } else {
      impl.leases[containerDir] = imageDigest;
    }
    image.lastUsedMs = impl.clock->nowMs();
  }
  auto dropLease = [&] {
    std::lock_guard lock(impl.mutex);
    impl.leases.erase(containerDir);
    ::unlink(impl.leasePath(containerDir).c_str());
  };
  // The lease is durable before the mount exists, so a restarted agent never garbage-collects
  // the layers under a container that is still running.
  json leaseDoc = {{"containerDir", containerDir}, {"image", imageDigest.str()}};
  if (Status s = fs::writeFileAtomic(impl.leasePath(containerDir), dumpJson(leaseDoc)); !s) {
    dropLease();
    return std::unexpected(s.error().wrap("rootfs lease"));
  }
  if (mount.lowerDirs.empty()) {
    // overlayfs needs a lower directory; an image without layers gets an empty one.
    std::string empty = options_.root + "/layers/empty";
    (void)fs::makeDirs(empty, 0755);
    mount.lowerDirs.push_back(empty);
  }
  mount.mountOptions = "lowerdir=";
  for (size_t i = 0; i < mount.lowerDirs.size(); ++i) {
    mount.mountOptions.append(i == 0 ? "" : ":").append(mount.lowerDirs[i]);
  }
  mount.mountOptions.append(",upperdir=").append(mount.upperDir);
  mount.mountOptions.append(",workdir=").append(mount.workDir);
  if (fs::isMountPoint(mount.rootfs)) {
    return mount;  // Prepared before (for instance by an agent that restarted).
  }
  // mount(2) takes at most one page of options.
  if (mount.mountOptions.size() >= 4096) {
    dropLease();
    return fail(ErrorCode::kTooLarge, "image " + imageDigest.str() + " has too many layers (" +
                                          std::to_string(mount.lowerDirs.size()) +
                                          ") for one overlay mount");
  }
  for (const std::string* dir : {&mount.rootfs, &mount.upperDir, &mount.workDir}) {
    if (Status s = fs::makeDirs(*dir, 0755); !s) {
      dropLease();
      return std::unexpected(s.error().wrap("prepare rootfs"));
    }
  }
  if (::mount("overlay", mount.rootfs.c_str(), "overlay", 0, mount.mountOptions.c_str()) != 0) {
    int err = errno;
    dropLease();
    return std::unexpected(errnoError("mount overlay at " + mount.rootfs, err));
  }
  return mount;
}

Status ImageStore::releaseRootfs(const std::string& containerDir) {
  Impl& impl = *impl_;
  std::string rootfs = containerDir + "/rootfs";
  if (fs::isMountPoint(rootfs)) {
    if (::umount2(rootfs.c_str(), 0) != 0) {
      if (errno != EBUSY || ::umount2(rootfs.c_str(), MNT_DETACH) != 0) {
        return std::unexpected(errnoError("unmount " + rootfs, errno));
      }
    }
  }
  std::lock_guard lock(impl.mutex);
  auto lease = impl.leases.find(containerDir);
  if (lease == impl.leases.end()) {
    return {};
  }
  if (auto it = impl.images.find(lease->second); it != impl.images.end()) {
    it->second.lastUsedMs = impl.clock->nowMs();
    if (Status s = impl.persistImage(it->second); !s) {
      log::warn("image store: cannot persist last use",
                {{"image", it->first.str()}, {"error", s.error().message()}});
    }
  }
  impl.leases.erase(lease);
  ::unlink(impl.leasePath(containerDir).c_str());
  return {};
}

int64_t ImageStore::diskUsage() const {
  std::lock_guard lock(impl_->mutex);
  int64_t total = 0;
  for (const auto& [hex, bytes] : impl_->layerBytes) {
    total += bytes;
  }
  for (const auto& [hex, bytes] : impl_->blobBytes) {
    total += bytes;
  }
  return total;
}

Result<GcReport> ImageStore::collectGarbage(std::optional<int64_t> budgetBytes) {
  Impl& impl = *impl_;
  GcReport report;
  report.budgetBytes = budgetBytes.value_or(options_.diskBudgetBytes);
  std::vector<std::string> doomed;  // Renamed into tmp/, deleted after the lock is released.
  {
    std::lock_guard lock(impl.mutex);
    int64_t usage = 0;
    for (const auto& [hex, bytes] : impl.layerBytes) {
      usage += bytes;
    }
    for (const auto& [hex, bytes] : impl.blobBytes) {
      usage += bytes;
    }
    std::set<Digest> leased;
    for (const auto& [dir, digest] : impl.leases) {
      leased.insert(digest);
    }
    std::vector<const Image*> order;
    for (const auto& [digest, image] : impl.images) {
      order.push_back(&image);
    }
    std::sort(order.begin(), order.end(), [](const Image* a, const Image* b) {
      return a->lastUsedMs != b->lastUsedMs ? a->lastUsedMs < b->lastUsedMs : a->digest < b->digest;
    });
    std::vector<Digest> victims;
    // Orphans first (layers and blobs no image needs), then whole images, oldest use first.
    // Usage is estimated per image as what removing it would free.
    auto referenced = [&](const std::set<Digest>& excluded) {
      std::set<std::string> refs;
      for (const auto& [digest, image] : impl.images) {
        if (excluded.contains(digest)) {
          continue;
        }
        for (const Descriptor& l : image.layers) {
          refs.emplace(l.digest.hex());
        }
        for (const Digest& d : Impl::blobsOf(image)) {
          refs.emplace(d.hex());
        }
      }
      for (const auto& [hex, count] : impl.pinnedLayers) {
        refs.insert(hex);
      }
      for (const auto& [hex, job] : impl.layerJobs) {
        refs.insert(hex);
      }
      return refs;
    };
    std::set<Digest> removed;
    auto freeable = [&](const std::set<std::string>& refs) {
      int64_t bytes = 0;
      for (const auto& [hex, b] : impl.layerBytes) {
        bytes += refs.contains(hex) ? 0 : b;
      }
      for (const auto& [hex, b] : impl.blobBytes) {
        bytes += refs.contains(hex) ? 0 : b;
      }
      return bytes;
    };
    int64_t projected = usage - freeable(referenced(removed));
    for (const Image* image : order) {
      if (report.budgetBytes <= 0 || projected <= report.budgetBytes) {
        break;
      }
      if (leased.contains(image->digest)) {
        report.keptInUse.push_back(image->digest);
        continue;
      }
      removed.insert(image->digest);
      projected = usage - freeable(referenced(removed));
    }
    std::set<std::string> keep = referenced(removed);
    for (const Digest& digest : removed) {
      Image& image = impl.images.at(digest);
      for (const std::string& n : image.names) {
        impl.names.erase(n);
      }
      for (const std::string& n : image.repoDigests) {
        impl.names.erase(n);
      }
      ::unlink(impl.imagePath(digest).c_str());
      impl.images.erase(digest);
      report.removedImages.push_back(digest);
    }
    for (auto it = impl.layerBytes.begin(); it != impl.layerBytes.end();) {
      if (keep.contains(it->first)) {
        ++it;
        continue;
      }
      std::string path = options_.root + "/layers/" + it->first;
      std::string grave = impl.tmpDir() + "/gc-" + it->first + "-" + std::to_string(++impl.graves);
      ::unlink((path + ".size").c_str());
      if (::rename(path.c_str(), grave.c_str()) == 0) {
        doomed.push_back(grave);
      }
      report.freedBytes += it->second;
      it = impl.layerBytes.erase(it);
    }
    for (auto it = impl.blobBytes.begin(); it != impl.blobBytes.end();) {
      if (keep.contains(it->first)) {
        ++it;
        continue;
      }
      ::unlink((options_.root + "/blobs/sha256/" + it->first).c_str());
      report.freedBytes += it->second;
      it = impl.blobBytes.erase(it);
    }
    report.usageBytes = usage - report.freedBytes;
  }
  for (const std::string& dir : doomed) {
    if (Status s = fs::removeTree(dir); !s) {
      log::warn("image gc: cannot remove layer", {{"error", s.error().message()}});
    }
  }
  if (!report.removedImages.empty() || report.freedBytes > 0) {
    log::info("image gc", {{"removedImages", report.removedImages.size()},
                           {"freedBytes", report.freedBytes},
                           {"usageBytes", report.usageBytes},
                           {"budgetBytes", report.budgetBytes}});
  }
  return report;
}

}  // namespace skiff::agent::image
