#pragma once

// Images without a registry or mounts, for the agent's logic tests (no root):
//   FakeImages    an ImageService whose images are configs the test adds; a container's root
//                 filesystem is a plain directory.
//   FakeRegistry  a Registry that gives every request one answer (a definitive "manifest
//                 unknown", a refusal, an outage), for tests of the real ImageStore's callers.

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "agent/image/image_service.h"
#include "agent/image/registry.h"

namespace skiff::testing {

class FakeImages final : public agent::image::ImageService {
 public:
  // Pulls of `reference` give an image with `config`; its digest is derived from the reference.
  void add(const std::string& reference, agent::image::ImageConfig config);
  // Pulls of `reference` fail with `error` (before or after `add`: the failure wins).
  void failPull(const std::string& reference, Error error);

  int pullCount(const std::string& reference) const;
  // Container directories whose root filesystem is prepared and not released.
  std::set<std::string> mounted() const;

  // Unknown references fail with kNotFound, as a registry's "manifest unknown" does.
  Result<agent::image::PulledImage> pull(std::string_view reference) override;
  Result<agent::image::RootfsMount> prepareRootfs(const agent::image::Digest& image,
                                                  const std::string& containerDir) override;
  Status releaseRootfs(const std::string& containerDir) override;
  Result<agent::image::GcReport> collectGarbage(
      std::optional<int64_t> budgetBytes = std::nullopt) override;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, agent::image::Image> images_;
  std::map<std::string, Error> failures_;
  std::map<std::string, int> pulls_;
  std::map<std::string, agent::image::Digest> mounts_;  // Container directory -> image.
};

class FakeRegistry final : public agent::image::Registry {
 public:
  // Every manifest and blob request fails with `answer`.
  explicit FakeRegistry(Error answer) : answer_(std::move(answer)) {}

  Result<agent::image::FetchedManifest> fetchManifest(
      const agent::image::ImageReference& ref) override;
  Status fetchBlob(const agent::image::ImageReference& repo,
                   const agent::image::BlobRequest& blob) override;

  int manifestRequests() const { return manifestRequests_; }

 private:
  Error answer_;
  std::atomic<int> manifestRequests_ = 0;
};

}  // namespace skiff::testing
