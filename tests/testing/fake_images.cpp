#include "testing/fake_images.h"

#include <filesystem>
#include <system_error>

namespace skiff::testing {

namespace image = agent::image;

void FakeImages::add(const std::string& reference, image::ImageConfig config) {
  image::Image entry;
  entry.digest = image::sha256Of("manifest of " + reference);
  entry.names = {reference};
  entry.config = std::move(config);
  std::lock_guard lock(mutex_);
  images_[reference] = std::move(entry);
}

void FakeImages::failPull(const std::string& reference, Error error) {
  std::lock_guard lock(mutex_);
  failures_.insert_or_assign(reference, std::move(error));
}

int FakeImages::pullCount(const std::string& reference) const {
  std::lock_guard lock(mutex_);
  auto it = pulls_.find(reference);
  return it == pulls_.end() ? 0 : it->second;
}

std::set<std::string> FakeImages::mounted() const {
  std::lock_guard lock(mutex_);
  std::set<std::string> dirs;
  for (const auto& [dir, digest] : mounts_) dirs.insert(dir);
  return dirs;
}

Result<image::PulledImage> FakeImages::pull(std::string_view reference) {
  std::string name(reference);
  std::lock_guard lock(mutex_);
  ++pulls_[name];
  if (auto failure = failures_.find(name); failure != failures_.end()) {
    return std::unexpected(failure->second);
  }
  auto it = images_.find(name);
  if (it == images_.end()) {
    return fail(ErrorCode::kNotFound, "manifest unknown: " + name);
  }
  std::string repository = name;
  if (size_t colon = name.rfind(':');
      colon != std::string::npos &&
      (name.rfind('/') == std::string::npos || colon > name.rfind('/'))) {
    repository = name.substr(0, colon);
  }
  return image::PulledImage{it->second, repository + "@" + it->second.digest.str(), false};
}

Result<image::RootfsMount> FakeImages::prepareRootfs(const image::Digest& digest,
                                                     const std::string& containerDir) {
  std::lock_guard lock(mutex_);
  const image::Image* found = nullptr;
  for (const auto& [name, entry] : images_) {
    if (entry.digest == digest) found = &entry;
  }
  if (found == nullptr) return fail(ErrorCode::kNotFound, "image " + digest.str());
  std::error_code ec;
  std::filesystem::create_directories(containerDir + "/rootfs", ec);
  if (ec) return fail(ErrorCode::kIo, "create " + containerDir + "/rootfs: " + ec.message());
  mounts_[containerDir] = digest;
  image::RootfsMount mount;
  mount.rootfs = containerDir + "/rootfs";
  mount.upperDir = containerDir + "/upper";
  mount.workDir = containerDir + "/work";
  mount.image = digest;
  mount.config = found->config;
  return mount;
}

Status FakeImages::releaseRootfs(const std::string& containerDir) {
  std::lock_guard lock(mutex_);
  mounts_.erase(containerDir);
  return {};
}

Result<image::GcReport> FakeImages::collectGarbage(std::optional<int64_t>) {
  return image::GcReport{};
}

Result<image::FetchedManifest> FakeRegistry::fetchManifest(const image::ImageReference&) {
  ++manifestRequests_;
  return std::unexpected(answer_);
}

Status FakeRegistry::fetchBlob(const image::ImageReference&, const image::BlobRequest&) {
  return std::unexpected(answer_);
}

}  // namespace skiff::testing
