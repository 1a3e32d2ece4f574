#include "agent/image/registry.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace skiff::agent::image {

PullFailure classifyPullError(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kNotFound:
      return PullFailure::kNotFound;
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return PullFailure::kDenied;
    case ErrorCode::kUnavailable:
    case ErrorCode::kIo:
      return PullFailure::kTransient;
    default:
      return PullFailure::kLocal;
  }
}

Status Registry::fetchBlobs(const ImageReference& repo, std::span<const BlobRequest> blobs,
                            int parallelism, const std::function<Status(size_t)>& onFetched) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::optional<Error> firstError;
  auto worker = [&] {
    while (!failed.load()) {
      size_t i = next.fetch_add(1);
      if (i >= blobs.size()) {
        return;
      }
      Status status = fetchBlob(repo, blobs[i]);
      if (status && onFetched) {
        status = onFetched(i);
      }
      if (!status) {
        std::lock_guard lock(mutex);
        if (!firstError) {
          firstError = status.error();
        }
        failed = true;
      }
    }
  };
  size_t threads = std::min<size_t>(blobs.size(), static_cast<size_t>(std::max(1, parallelism)));
  std::vector<std::jthread> pool;
  // The calling thread is one of the workers, so a single blob costs no thread.
  for (size_t t = 1; t < threads; ++t) {
    pool.emplace_back(worker);
  }
  worker();
  pool.clear();
  if (firstError) {
    return std::unexpected(*firstError);
  }
  return {};
}

}  // namespace skiff::agent::image
