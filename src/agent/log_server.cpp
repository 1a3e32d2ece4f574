#include "agent/log_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <thread>
#include <utility>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/http_server.h"
#include "common/log.h"

namespace skiff::agent {
namespace {

namespace asio = boost::asio;
using http::Response;

constexpr size_t kChunk = 64 * 1024;
constexpr int64_t kMaxTail = 10'000'000;

std::string rotatedName(const std::string& path, int index) {
  return index == 0 ? path : path + "." + std::to_string(index);
}

// Closes its descriptor when it goes.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor() { reset(); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

int openRead(const std::string& path) {
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
}

// Reads from `fd`'s offset to its end, appending to `out`.
Status appendRest(int fd, const std::string& name, std::string& out) {
  char buffer[kChunk];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(errnoError("read " + name, errno));
    if (n == 0) return {};
    out.append(buffer, static_cast<size_t>(n));
  }
}

bool validTaskId(std::string_view id) {
  if (id.empty() || id.size() > 256 || id.front() == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

int rotatedCount(const std::string& path) {
  int count = 0;
  struct stat st {};
  while (::stat(rotatedName(path, count + 1).c_str(), &st) == 0) ++count;
  return count;
}

LogPosition findTailStart(const std::string& path, int64_t lines) {
  int rotated = rotatedCount(path);
  if (lines <= 0) {
    struct stat st {};
    return {0, ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0};
  }
  int64_t newlines = 0;
  bool atEnd = true;  // Nothing but the very end of the text seen yet.
  char buffer[kChunk];
  for (int index = 0; index <= rotated; ++index) {
    FileDescriptor file(openRead(rotatedName(path, index)));
    struct stat st {};
    if (file.get() < 0 || ::fstat(file.get(), &st) != 0) continue;
    uint64_t pos = static_cast<uint64_t>(st.st_size);
    while (pos > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(pos, sizeof buffer));
      pos -= n;
      ssize_t got = ::pread(file.get(), buffer, n, static_cast<off_t>(pos));
      if (got != static_cast<ssize_t>(n)) return {index, pos + n};  // Shrunk under us.
      for (size_t i = n; i-- > 0;) {
        if (buffer[i] != '\n') {
          atEnd = false;
          continue;
        }
        if (atEnd) {  // The final newline ends the last line; it does not start one.
          atEnd = false;
          continue;
        }
        if (++newlines == lines) {
          uint64_t offset = pos + i + 1;
          // The end of a rotated file is the start of the next newer one.
          if (index > 0 && offset == static_cast<uint64_t>(st.st_size)) return {index - 1, 0};
          return {index, offset};
        }
      }
    }
  }
  return {rotated, 0};
}

Result<std::string> readLogFrom(const std::string& path, LogPosition start) {
  std::string text;
  for (int index = start.file; index >= 0; --index) {
    std::string name = rotatedName(path, index);
    FileDescriptor file(openRead(name));
    if (file.get() < 0) {
      if (errno == ENOENT) continue;
      return std::unexpected(errnoError("open " + name, errno));
    }
    if (index == start.file &&
        ::lseek(file.get(), static_cast<off_t>(start.offset), SEEK_SET) < 0) {
      return std::unexpected(errnoError("seek " + name, errno));
    }
    SKIFF_TRY_STATUS(appendRest(file.get(), name, text), "log");
  }
  return text;
}

Result<std::string> tailLog(const std::string& path, int64_t lines) {
  LogPosition start = lines < 0 ? LogPosition{rotatedCount(path), 0} : findTailStart(path, lines);
  return readLogFrom(path, start);
}

struct LogServer::Impl {
  LogServerOptions options;
  asio::io_context io{1};
  http::Router router;
  std::unique_ptr<http::Server> server;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<bool> stopped{false};

  explicit Impl(LogServerOptions o) : options(std::move(o)) {}

  // True once the container of `taskId` can write no more.
  bool containerDone(const std::string& taskId) const {
    struct stat st {};
    if (::stat((options.containersDir + "/" + taskId + "/exit").c_str(), &st) == 0) return true;
    return options.mayWrite && !options.mayWrite(taskId);
  }
};

namespace {

// Sends what `fd` holds from its offset to its end. Returns false once the client is gone.
asio::awaitable<bool> sendRest(int fd, http::ResponseStream& out) {
  std::string chunk;
  while (true) {
    chunk.resize(kChunk);
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) co_return true;
    chunk.resize(static_cast<size_t>(n));
    bool written = co_await out.write(std::move(chunk));
    if (!written) co_return false;
  }
}

asio::awaitable<std::optional<Response>> serveLog(LogServer::Impl& impl,
                                                  http::RequestContext& context,
                                                  http::ResponseStream& out) {
  const std::string taskId = context.params[0];
  if (!validTaskId(taskId)) {
    co_return Response::error(Error(ErrorCode::kInvalidArgument, "task id: not a valid id"));
  }
  std::string stream = context.queryValue("stream").value_or("stdout");
  if (stream != "stdout" && stream != "stderr") {
    co_return Response::error(
        Error(ErrorCode::kInvalidArgument, "stream: must be one of stdout, stderr"));
  }
  int64_t tail = -1;
  if (auto text = context.queryValue("tail")) {
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), tail);
    if (ec != std::errc() || end != text->data() + text->size() || tail < 0 || tail > kMaxTail) {
      co_return Response::error(
          Error(ErrorCode::kInvalidArgument,
                "tail: must be an integer between 0 and " + std::to_string(kMaxTail)));
    }
  }
  std::string followText = context.queryValue("follow").value_or("false");
  if (followText != "true" && followText != "false") {
    co_return Response::error(Error(ErrorCode::kInvalidArgument, "follow: must be true or false"));
  }
  bool follow = followText == "true";
  std::string dir = impl.options.containersDir + "/" + taskId;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    co_return Response::error(
        Error(ErrorCode::kNotFound, "no logs for task " + taskId + " on this node"));
  }
  std::string path = dir + "/" + stream + ".log";
  LogPosition start = tail < 0 ? LogPosition{rotatedCount(path), 0} : findTailStart(path, tail);

  for (int index = start.file; index >= 1; --index) {
    FileDescriptor file(openRead(rotatedName(path, index)));
    if (file.get() < 0) continue;
    if (index == start.file) ::lseek(file.get(), static_cast<off_t>(start.offset), SEEK_SET);
    bool sent = co_await sendRest(file.get(), out);
    if (!sent) co_return std::nullopt;
  }
  FileDescriptor current(openRead(path));
  if (current.get() >= 0 && start.file == 0) {
    ::lseek(current.get(), static_cast<off_t>(start.offset), SEEK_SET);
  }
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    // Decided before draining: output written before the exit is recorded is still sent.
    bool done = !follow || impl.containerDone(taskId);
    if (current.get() >= 0) {
      bool sent = co_await sendRest(current.get(), out);
      if (!sent) co_return std::nullopt;
    }
    if (follow) {
      // A rotation renamed the file being read; its rest was just sent. Go on with the new one.
      struct stat now {};
      struct stat reading {};
      bool exists = ::stat(path.c_str(), &now) == 0;
      bool replaced = exists && (current.get() < 0 || ::fstat(current.get(), &reading) != 0 ||
                                 reading.st_ino != now.st_ino || reading.st_dev != now.st_dev);
      if (replaced) {
        current.reset(openRead(path));
        continue;
      }
    }
    if (done || impl.stopping) break;
    timer.expires_after(impl.options.pollInterval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return std::nullopt;
}

}  // namespace

LogServer::LogServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LogServer::~LogServer() {
  stop();
}

Result<std::unique_ptr<LogServer>> LogServer::start(LogServerOptions options) {
  if (options.token.empty()) {
    return fail(ErrorCode::kInvalidArgument, "the log server needs the join token");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  Impl* self = impl.get();
  impl->router.addStream(http::Verb::get, "/v1/logs/{taskId}", http::Access::kAgent,
                         [self](http::RequestContext& c, http::ResponseStream& out) {
                           return serveLog(*self, c, out);
                         });
  std::string token = self->options.token;
  impl->server = std::make_unique<http::Server>(
      impl->io, impl->router,
      [token](http::Access access, std::string_view authorization) -> std::optional<Error> {
        if (access == http::Access::kPublic) return std::nullopt;
        constexpr std::string_view kBearer = "Bearer ";
        if (authorization.starts_with(kBearer) &&
            constantTimeEquals(authorization.substr(kBearer.size()), token)) {
          return std::nullopt;
        }
        return Error(ErrorCode::kUnauthenticated, "the node's join token is required");
      });
  if (auto listening = impl->server->listen(impl->options.host, impl->options.port); !listening) {
    return std::unexpected(listening.error().wrap("log server"));
  }
  impl->thread = std::thread([self] { self->io.run(); });
  return std::unique_ptr<LogServer>(new LogServer(std::move(impl)));
}

uint16_t LogServer::port() const {
  return impl_->server->port();
}

void LogServer::stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->stopping = true;
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->server->stop();
}

}  // namespace skiff::agent
