#pragma once

// Helpers shared by the store tests: a temporary directory, one-op transactions, and a watch
// callback that collects events for a test to wait on.

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/store/store.h"

namespace skiff::store {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "skiff-store-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline Txn putTxn(std::string key, std::string value) {
  Txn txn;
  txn.onSuccess.push_back(Op::put(std::move(key), std::move(value)));
  return txn;
}

inline Txn deleteTxn(std::string key) {
  Txn txn;
  txn.onSuccess.push_back(Op::del(std::move(key)));
  return txn;
}

// Collects watch events from the delivery thread and lets the test wait for them.
class Collector {
 public:
  WatchCallback callback() {
    return [this](const std::vector<Event>& events) {
      std::lock_guard lock(mu_);
      events_.insert(events_.end(), events.begin(), events.end());
      cv_.notify_all();
    };
  }
  bool waitFor(size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= count; });
  }
  std::vector<Event> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

}  // namespace skiff::store
