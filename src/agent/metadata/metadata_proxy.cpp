#include "agent/metadata/metadata_proxy.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "agent/metadata/imds_handler.h"
#include "agent/metadata/netns_listener.h"
#include "common/async.h"

namespace skiff::agent::metadata {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

struct TaskEntry {
  TaskMetadata task;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::atomic<bool> removed = false;
};

ImdsRequest toImdsRequest(const bhttp::request<bhttp::string_body>& request) {
  ImdsRequest out;
  switch (request.method()) {
    case bhttp::verb::get:
      out.method = ImdsRequest::Method::kGet;
      break;
    case bhttp::verb::head:
      out.method = ImdsRequest::Method::kHead;
      break;
    case bhttp::verb::put:
      out.method = ImdsRequest::Method::kPut;
      break;
    default:
      out.method = ImdsRequest::Method::kOther;
  }
  out.target = std::string(request.target());
  if (auto it = request.find("X-aws-ec2-metadata-token"); it != request.end()) {
    out.token = std::string(it->value());
  }
  if (auto it = request.find("X-aws-ec2-metadata-token-ttl-seconds"); it != request.end()) {
    out.ttlSeconds = std::string(it->value());
  }
  out.forwarded = request.find("X-Forwarded-For") != request.end();
  return out;
}

}  // namespace

struct MetadataProxy::Impl {
  MetadataProxyOptions options;
  const Clock& clock;
  ImdsTokens tokens;
  CachingIdentityProvider cache;
  ImdsHandler handler;

  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::vector<std::thread> ioThreads;
  asio::thread_pool blocking;

  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<TaskEntry>> tasks;

  std::mutex renewMutex;
  std::condition_variable renewWake;
  bool stopping = false;
  std::thread renewer;

  Impl(MetadataProxyOptions opts, std::shared_ptr<IdentityProvider> upstream, const Clock& c)
      : options(std::move(opts)),
        clock(c),
        cache(std::move(upstream), c, options.cache),
        handler(tokens, cache, c),
        blocking(static_cast<size_t>(std::max(1, options.blockingThreads))) {}

  void start() {
    for (int i = 0; i < std::max(1, options.ioThreads); ++i) {
      ioThreads.emplace_back([this] { io.run(); });
    }
    renewer = std::thread([this] {
      std::unique_lock lock(renewMutex);
      while (!stopping) {
        renewWake.wait_for(lock, std::chrono::milliseconds(options.renewIntervalMs));
        if (stopping) break;
        lock.unlock();
        cache.retainOnly(liveTaskIds());
        cache.renewDue();
        lock.lock();
      }
    });
  }

  void stop() {
    {
      std::lock_guard lock(renewMutex);
      if (stopping) return;
      stopping = true;
    }
    renewWake.notify_all();
    if (renewer.joinable()) renewer.join();
    std::map<std::string, std::shared_ptr<TaskEntry>> all;
    {
      std::lock_guard lock(mutex);
      all.swap(tasks);
    }
    for (auto& [id, entry] : all) close(entry);
    work.reset();
    io.stop();
    for (auto& thread : ioThreads) thread.join();
    blocking.join();
  }

  std::set<std::string> liveTaskIds() const {
    std::set<std::string> ids;
    std::lock_guard lock(mutex);
    for (const auto& [id, entry] : tasks) ids.insert(id);
    return ids;
  }

  void close(const std::shared_ptr<TaskEntry>& entry) {
    entry->removed = true;
    asio::post(entry->acceptor->get_executor(), [entry] {
      boost::system::error_code ignored;
      entry->acceptor->close(ignored);
    });
  }

  asio::awaitable<void> acceptLoop(std::shared_ptr<TaskEntry> entry) {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket(asio::make_strand(io));
      co_await entry->acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !entry->acceptor->is_open()) co_return;
        continue;  // A transient failure (out of descriptors); the next accept may succeed.
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto executor = socket.get_executor();
      asio::co_spawn(executor, session(entry, beast::tcp_stream(std::move(socket))),
                     asio::detached);
    }
  }

  asio::awaitable<ImdsResponse> respond(std::shared_ptr<TaskEntry> entry, ImdsRequest request) {
    std::optional<ImdsResponse> response = handler.handle(entry->task, request, false);
    if (response) co_return std::move(*response);
    // Nothing cached: fetch on the blocking pool so the I/O threads keep serving other tasks.
    Completion<ImdsResponse> done;
    auto fetch = [this, entry, request = std::move(request), done] {
      std::optional<ImdsResponse> answer = handler.handle(entry->task, request, true);
      done.set(answer ? std::move(*answer) : ImdsResponse{500, "internal error"});
    };
    asio::post(blocking, std::move(fetch));
    co_return co_await done.wait();
  }

  asio::awaitable<void> session(std::shared_ptr<TaskEntry> entry, beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    for (;;) {
      boost::system::error_code ec;
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(4096);
      parser.header_limit(8192);
      stream.expires_after(std::chrono::seconds(options.idleTimeoutSec));
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec || entry->removed) break;
      auto request = parser.release();
      bool keepAlive = request.keep_alive();
      bool head = request.method() == bhttp::verb::head;
      ImdsResponse answer = co_await respond(entry, toImdsRequest(request));

      bhttp::response<bhttp::string_body> message{static_cast<bhttp::status>(answer.status),
                                                  request.version()};
      message.set(bhttp::field::server, "skiff-metadata");
      message.set(bhttp::field::content_type, answer.contentType);
      for (const auto& [name, value] : answer.headers) message.set(name, value);
      message.keep_alive(keepAlive);
      size_t length = answer.body.size();
      if (!head) message.body() = std::move(answer.body);
      message.prepare_payload();
      if (head) message.content_length(length);
      stream.expires_after(std::chrono::seconds(10));
      co_await bhttp::async_write(stream, message, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keepAlive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  Status adopt(TaskMetadata task, int fd) {
    auto entry = std::make_shared<TaskEntry>();
    entry->task = std::move(task);
    entry->acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(io));
    boost::system::error_code ec;
    entry->acceptor->assign(tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      return fail(ErrorCode::kInvalidArgument, "not a listening socket: " + ec.message());
    }
    {
      std::lock_guard lock(mutex);
      if (stopping) return fail(ErrorCode::kFailedPrecondition, "the proxy is stopped");
      auto [it, inserted] = tasks.emplace(entry->task.taskId, entry);
      if (!inserted) {
        return fail(ErrorCode::kAlreadyExists, "task " + entry->task.taskId + " is served");
      }
    }
    asio::co_spawn(entry->acceptor->get_executor(), acceptLoop(entry), asio::detached);
    // Warm the cache so the container's first requests are answered from memory.
    std::weak_ptr<TaskEntry> weak = entry;
    auto prefetch = [this, weak] {
      auto live = weak.lock();
      if (!live || live->removed) return;
      cache.refresh(live->task);
      if (live->removed) cache.forget(live->task.taskId);  // Removed while fetching.
    };
    asio::post(blocking, std::move(prefetch));
    return {};
  }
};

Result<std::unique_ptr<MetadataProxy>> MetadataProxy::create(
    MetadataProxyOptions options, std::shared_ptr<IdentityProvider> upstream, const Clock& clock) {
  if (!upstream) return fail(ErrorCode::kInvalidArgument, "an identity provider is required");
  std::unique_ptr<MetadataProxy> proxy(new MetadataProxy());
  proxy->impl_ = std::make_unique<Impl>(std::move(options), std::move(upstream), clock);
  proxy->impl_->start();
  return proxy;
}

MetadataProxy::~MetadataProxy() {
  if (impl_) impl_->stop();
}

Status MetadataProxy::addTask(TaskMetadata task, const std::string& netnsPath) {
  if (hasTask(task.taskId)) {
    return fail(ErrorCode::kAlreadyExists, "task " + task.taskId + " is served");
  }
  const MetadataProxyOptions& options = impl_->options;
  auto fd = options.listen ? options.listen(netnsPath, options.address, options.port)
                           : listenInNetns(netnsPath, options.address, options.port);
  if (!fd) return std::unexpected(fd.error().wrap("metadata listener for " + task.taskId));
  return impl_->adopt(std::move(task), *fd);
}

Status MetadataProxy::adoptListener(TaskMetadata task, int listenFd) {
  return impl_->adopt(std::move(task), listenFd);
}

Status MetadataProxy::removeTask(const std::string& taskId) {
  std::shared_ptr<TaskEntry> entry;
  {
    std::lock_guard lock(impl_->mutex);
    auto it = impl_->tasks.find(taskId);
    if (it == impl_->tasks.end()) return fail(ErrorCode::kNotFound, "task " + taskId);
    entry = std::move(it->second);
    impl_->tasks.erase(it);
  }
  impl_->close(entry);
  impl_->cache.forget(taskId);
  return {};
}

bool MetadataProxy::hasTask(const std::string& taskId) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->tasks.contains(taskId);
}

CachingIdentityProvider& MetadataProxy::identity() {
  return impl_->cache;
}

}  // namespace skiff::agent::metadata
