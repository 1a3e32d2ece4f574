#include "common/timer.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace skiff {
namespace {

class SteadyTimer final : public Timer {
 public:
  explicit SteadyTimer(const asio::any_io_executor& executor) : timer_(executor) {
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  void expiresAfterMs(int64_t delayMs) override {
    timer_.expires_after(std::chrono::milliseconds(std::max<int64_t>(delayMs, 0)));
  }
  void expiresNever() override { timer_.expires_at(asio::steady_timer::time_point::max()); }
  void cancel() override { timer_.cancel(); }
  asio::awaitable<void> wait() override {
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

 private:
  asio::steady_timer timer_;
};

}  // namespace

std::unique_ptr<Timer> SteadyTimerSource::make(const asio::any_io_executor& executor) {
  return std::make_unique<SteadyTimer>(executor);
}

SteadyTimerSource& SteadyTimerSource::instance() {
  static SteadyTimerSource source;
  return source;
}

// A manual timer waits on a steady timer that never expires by itself; the source cancels that
// wait once the manual clock reaches the deadline. The state is shared with the source (weakly)
// and with the completions it posts, so either side may go first.
struct ManualTimerSource::State {
  State(const asio::any_io_executor& executor, const Clock& clock) : inner(executor), clock(clock) {
    inner.expires_at(asio::steady_timer::time_point::max());
  }
  bool due() const { return deadline && *deadline <= clock.nowMs(); }

  asio::steady_timer inner;
  const Clock& clock;
  std::optional<int64_t> deadline;  // Read and written on the timer's executor only.
};

namespace {

class ManualTimer final : public Timer {
 public:
  explicit ManualTimer(std::shared_ptr<ManualTimerSource::State> state)
      : state_(std::move(state)) {}
  ~ManualTimer() override { state_->inner.cancel(); }
  void expiresAfterMs(int64_t delayMs) override {
    state_->deadline = state_->clock.nowMs() + std::max<int64_t>(delayMs, 0);
    state_->inner.cancel();
  }
  void expiresNever() override {
    state_->deadline.reset();
    state_->inner.cancel();
  }
  void cancel() override { state_->inner.cancel(); }
  asio::awaitable<void> wait() override {
    // The state is held for the whole wait: the timer may be destroyed while a wait is parked.
    auto state = state_;
    if (state->due()) co_return;
    boost::system::error_code ec;
    co_await state->inner.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

 private:
  std::shared_ptr<ManualTimerSource::State> state_;
};

}  // namespace

std::unique_ptr<Timer> ManualTimerSource::make(const asio::any_io_executor& executor) {
  auto state = std::make_shared<State>(executor, clock_);
  std::lock_guard lock(mutex_);
  std::erase_if(timers_, [](const std::weak_ptr<State>& timer) { return timer.expired(); });
  timers_.push_back(state);
  return std::make_unique<ManualTimer>(std::move(state));
}

void ManualTimerSource::advanceMs(int64_t deltaMs) {
  clock_.advanceMs(deltaMs);
  std::vector<std::shared_ptr<State>> live;
  {
    std::lock_guard lock(mutex_);
    std::erase_if(timers_, [](const std::weak_ptr<State>& timer) { return timer.expired(); });
    for (const auto& timer : timers_) {
      if (auto state = timer.lock()) live.push_back(std::move(state));
    }
  }
  for (auto& state : live) {
    auto executor = state->inner.get_executor();
    asio::post(executor, [state = std::move(state)] {
      if (state->due()) state->inner.cancel();
    });
  }
}

}  // namespace skiff
