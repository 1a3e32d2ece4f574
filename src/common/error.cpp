#include "common/error.h"

#include <cstring>

namespace skiff {

std::string_view errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "InvalidArgument";
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kAlreadyExists:
      return "AlreadyExists";
    case ErrorCode::kConflict:
      return "Conflict";
    case ErrorCode::kFailedPrecondition:
      return "FailedPrecondition";
    case ErrorCode::kUnauthenticated:
      return "Unauthenticated";
    case ErrorCode::kPermissionDenied:
      return "PermissionDenied";
    case ErrorCode::kTooLarge:
      return "TooLarge";
    case ErrorCode::kUnavailable:
      return "Unavailable";
    case ErrorCode::kIo:
      return "Io";
    case ErrorCode::kCompacted:
      return "Compacted";
    case ErrorCode::kInternal:
      return "Internal";
  }
  return "Unknown";
}

Error Error::wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).wrap(context);
}

Error Error::wrap(std::string_view context) && {
  std::string message;
  message.reserve(context.size() + 2 + message_.size());
  message.append(context).append(": ").append(message_);
  message_ = std::move(message);
  return std::move(*this);
}

Error errnoError(std::string_view what, int err) {
  std::string message(what);
  message.append(": ").append(std::strerror(err));
  return Error(ErrorCode::kIo, std::move(message));
}

}  // namespace skiff
