#pragma once

// Time as a seam. Production code reads time only through a `Clock`, so tests can substitute a
// `ManualClock` and step time forward deterministically (as Mesos's `Clock::advance` does).

#include <atomic>
#include <chrono>
#include <cstdint>

namespace skiff {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. Used for timestamps that are persisted and compared.
  virtual int64_t nowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t nowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance for production wiring.
  static SystemClock& instance() {
    static SystemClock clock;
    return clock;
  }
};

// A clock that moves only when told to. Safe to read from several threads.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t startMs = 1'700'000'000'000) : nowMs_(startMs) {}
  int64_t nowMs() const override { return nowMs_.load(); }
  void advanceMs(int64_t deltaMs) { nowMs_ += deltaMs; }
  void setMs(int64_t nowMs) { nowMs_ = nowMs; }

 private:
  std::atomic<int64_t> nowMs_;
};

}  // namespace skiff
