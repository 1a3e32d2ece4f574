#pragma once

// The agent's log server: serves the stdout/stderr files of this node's containers over HTTP so
// that skiffd can proxy `GET /v1/tasks/{id}/logs` (docs/agent.md, "Logs").
//
//   GET /v1/logs/{taskId}?stream=stdout|stderr&tail=N&follow=true|false
//
// Only the node's join token is accepted (`Authorization: Bearer TOKEN`; skiffd presents it).
// The answer is a chunked stream of the log's raw bytes: the last N lines across the rotated
// files (every line kept without `tail`), then, with follow=true, new bytes as they are written
// (polled every `pollInterval`) until the container has exited and the file is drained, or the
// client goes away. 404 when this node has no container directory for the task; 400 for bad
// parameters.
//
// Log files follow skiff-monitor's rotation: NAME is current, NAME.1 the newest rotated copy,
// NAME.N the oldest. While following, a rotation is noticed by the file's inode changing: the old
// file is drained before the new one is opened, so no byte is lost or repeated. A rotation in the
// instant between the tail being located and the files being opened may repeat or skip a piece.
//
// Runs its own io_context on one thread; file reads there are small (64 KiB) and bounded.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/error.h"

namespace skiff::agent {

// A place in a rotated log: `file` 0 is NAME, k is NAME.k.
struct LogPosition {
  int file = 0;
  uint64_t offset = 0;

  bool operator==(const LogPosition&) const = default;
};

// How many rotated copies NAME.1 .. NAME.K exist without a gap.
int rotatedCount(const std::string& path);

// Where the last `lines` lines of the log `path` begin, reading backwards through NAME, NAME.1,
// ... as one concatenated text. A final line without a newline counts as a line. With fewer
// lines than asked, the start of the oldest file. `lines` 0 is the end of NAME.
LogPosition findTailStart(const std::string& path, int64_t lines);

// Everything from `start` to the end of NAME, as one string (small logs and tests).
Result<std::string> readLogFrom(const std::string& path, LogPosition start);

// The last `lines` lines of the log `path` across its rotated copies; negative: all of it.
Result<std::string> tailLog(const std::string& path, int64_t lines);

struct LogServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 0;          // 0 picks a free port; see LogServer::port().
  std::string token;          // The join token; required.
  std::string containersDir;  // The supervisor's state directory: DIR/TASK/stdout.log.
  std::chrono::milliseconds pollInterval{250};
  // Whether the task's container may still write output. A follow ends once this is false or the
  // container's `exit` file exists, after the file is drained. Null: only the `exit` file counts.
  std::function<bool(const std::string& taskId)> mayWrite;
};

class LogServer {
 public:
  // Binds and starts serving on a thread of its own.
  static Result<std::unique_ptr<LogServer>> start(LogServerOptions options);
  // Stops serving; open streams are abandoned.
  ~LogServer();
  LogServer(const LogServer&) = delete;
  LogServer& operator=(const LogServer&) = delete;

  uint16_t port() const;
  // Stops accepting, ends the streams and joins the thread. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit LogServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::agent
