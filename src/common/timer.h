#pragma once

// Timers as a seam, beside `Clock`. Subsystems that wait for a deadline (the job manager's job
// loops, scheduler retries, node checks, long polls) make their timers through a `TimerSource`,
// so tests substitute a `ManualTimerSource` and fire them by advancing a `ManualClock` instead of
// sleeping (Envoy's simulated time, Mesos's `Clock::advance`).
//
// A `Timer` behaves like `asio::steady_timer`: setting a deadline ends a wait in progress,
// `cancel()` ends a wait in progress and does not affect later waits, and a wait on a deadline
// that has passed returns at once. A timer is used from one executor (a strand) only; a
// `ManualTimerSource` may be advanced from any thread.

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/clock.h"

namespace skiff {

namespace asio = boost::asio;

class Timer {
 public:
  virtual ~Timer() = default;
  // The deadline is `delayMs` from now (0 or less: it has passed).
  virtual void expiresAfterMs(int64_t delayMs) = 0;
  // No deadline: a wait lasts until `cancel()` or a new deadline.
  virtual void expiresNever() = 0;
  virtual void cancel() = 0;
  // Returns at the deadline, or earlier on `cancel()` or a new deadline. Never throws.
  virtual asio::awaitable<void> wait() = 0;
};

class TimerSource {
 public:
  virtual ~TimerSource() = default;
  // A timer without a deadline whose waits complete on `executor`.
  virtual std::unique_ptr<Timer> make(const asio::any_io_executor& executor) = 0;
};

// Real time: `asio::steady_timer`.
class SteadyTimerSource final : public TimerSource {
 public:
  std::unique_ptr<Timer> make(const asio::any_io_executor& executor) override;
  // A process-wide instance for production wiring.
  static SteadyTimerSource& instance();
};

// Time that moves only when told to. Deadlines are read from `clock`; `advanceMs` moves the
// clock and completes every wait whose deadline it reached (through the timer's executor, so
// the effects follow once that executor runs).
class ManualTimerSource final : public TimerSource {
 public:
  explicit ManualTimerSource(ManualClock& clock) : clock_(clock) {}
  std::unique_ptr<Timer> make(const asio::any_io_executor& executor) override;
  void advanceMs(int64_t deltaMs);
  ManualClock& clock() { return clock_; }

  struct State;

 private:
  ManualClock& clock_;
  std::mutex mutex_;
  std::vector<std::weak_ptr<State>> timers_;
};

}  // namespace skiff
