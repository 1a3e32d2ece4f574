#pragma once

// Small coroutine primitives on Boost.Asio.
//
// `Completion<T>` hands one value from any thread to one coroutine that awaits it. The awaiting
// coroutine is always resumed through its own executor, never inline on the setting thread.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace skiff {

namespace asio = boost::asio;

template <typename T>
class Completion {
 public:
  Completion() : state_(std::make_shared<State>()) {}

  // Delivers the value. Only the first call has an effect. Safe from any thread.
  void set(T value) const {
    std::move_only_function<void(T)> waiter;
    {
      std::lock_guard lock(state_->mutex);
      if (state_->done) return;
      state_->done = true;
      if (state_->waiter) {
        waiter = std::move(state_->waiter);
      } else {
        state_->value.emplace(std::move(value));
        return;
      }
    }
    waiter(std::move(value));
  }

  // Waits for the value. Call at most once.
  asio::awaitable<T> wait() const {
    auto state = state_;
    // The initiation is a named local: GCC 12 destroys lambda temporaries that appear inside a
    // co_await expression twice.
    auto initiation = [state](auto handler) {
      auto executor = asio::get_associated_executor(handler);
      std::unique_lock lock(state->mutex);
      if (state->value) {
        T value = std::move(*state->value);
        lock.unlock();
        asio::post(executor, [handler = std::move(handler), value = std::move(value)]() mutable {
          std::move(handler)(std::move(value));
        });
        return;
      }
      state->waiter = [handler = std::move(handler), executor](T value) mutable {
        asio::post(executor, [handler = std::move(handler), value = std::move(value)]() mutable {
          std::move(handler)(std::move(value));
        });
      };
    };
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
        std::move(initiation), asio::use_awaitable);
  }

 private:
  struct State {
    std::mutex mutex;
    bool done = false;
    std::optional<T> value;
    std::move_only_function<void(T)> waiter;
  };
  std::shared_ptr<State> state_;
};

}  // namespace skiff
