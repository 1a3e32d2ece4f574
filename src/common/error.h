#pragma once

// The one error vocabulary used across module boundaries.
//
// Functions that can fail return `Result<T>` (a `std::expected<T, Error>`) or `Status` for no
// value. An `Error` carries a category (`ErrorCode`) that callers branch on, and a human-readable
// message. Layers add context as an error travels up with `wrap()`, so the final message reads
// "outer context: inner context: root cause" (as crun's `crun_error_wrap` does).

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace skiff {

enum class ErrorCode {
  kInvalidArgument,     // The caller sent something malformed; retrying will not help.
  kNotFound,            // The named thing does not exist.
  kAlreadyExists,       // A create collided with an existing thing.
  kConflict,            // A compare-and-set or a state precondition failed.
  kFailedPrecondition,  // The operation is not allowed in the current state.
  kUnauthenticated,     // Missing or wrong credentials.
  kPermissionDenied,    // Credentials are valid but not for this operation.
  kTooLarge,            // The request exceeds a size limit.
  kUnavailable,         // A transient failure; the caller may retry.
  kIo,                  // A disk or network failure.
  kCompacted,           // The requested revision is older than the retained history.
  kInternal,            // A bug or an impossible state.
};

std::string_view errorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns this error with `context` prepended ("context: message"); the code is kept.
  Error wrap(std::string_view context) const&;
  Error wrap(std::string_view context) &&;

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}

// Builds an error from the current `errno` (or `err`), naming the failed operation.
Error errnoError(std::string_view what, int err);

// Propagates the error of `expr` to the caller, adding `context`.
#define SKIFF_TRY_STATUS(expr, context)                            \
  do {                                                             \
    auto skiff_status_ = (expr);                                   \
    if (!skiff_status_) {                                          \
      return std::unexpected(skiff_status_.error().wrap(context)); \
    }                                                              \
  } while (false)

}  // namespace skiff
