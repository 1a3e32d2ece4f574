#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"
#include "controlplane/store/etcd_store_impl.h"

namespace skiff::store::etcd_detail {

// One watch: its stream thread, the revision to resume from, and the handshake with `startWatch`.
struct WatchState {
  enum class Phase { kStarting, kRunning, kStopped };

  std::shared_ptr<Transport> transport;
  std::string key;  // etcd's `key` and `range_end`, raw bytes.
  std::string rangeEnd;
  WatchCallback callback;

  std::mutex mu;
  std::condition_variable cv;
  Phase phase = Phase::kStarting;
  std::optional<Error> startError;  // Why the watch never started.
  bool cancelled = false;
  CURLM* multi = nullptr;  // Set while the thread runs, for curl_multi_wakeup.
  Revision next = 1;       // The first revision not yet delivered. Stream thread only.
  bool confirmed = false;  // etcd confirmed the current stream's watch. Stream thread only.

  std::mutex joinMu;
  std::thread thread;

  // Cancels the watch and, unless called on the stream thread itself (from the callback), waits
  // for the thread to end. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mu);
      cancelled = true;
      if (multi != nullptr) curl_multi_wakeup(multi);
    }
    cv.notify_all();
    std::lock_guard join(joinMu);
    if (!thread.joinable()) return;
    if (thread.get_id() == std::this_thread::get_id()) {
      // The callback destroyed its own handle: the thread ends once the callback returns.
      thread.detach();
    } else {
      thread.join();
    }
  }
};

namespace {

class EtcdWatchHandle final : public WatchHandle {
 public:
  explicit EtcdWatchHandle(std::shared_ptr<WatchState> state) : state_(std::move(state)) {}
  ~EtcdWatchHandle() override { state_->stop(); }

 private:
  std::shared_ptr<WatchState> state_;
};

// How one stream connection ended.
struct StreamEnd {
  enum class Kind { kCancelled, kCompacted, kDropped };
  Kind kind;
  std::string reason;
  Revision compactRevision = 0;
};

// The bytes received on a stream that do not yet form a whole line.
struct LineBuffer {
  std::string pending;
  std::vector<std::string> lines;
};

size_t receive(char* data, size_t size, size_t count, void* user) {
  auto* buffer = static_cast<LineBuffer*>(user);
  buffer->pending.append(data, size * count);
  size_t start = 0;
  for (;;) {
    size_t newline = buffer->pending.find('\n', start);
    if (newline == std::string::npos) break;
    if (newline > start) buffer->lines.push_back(buffer->pending.substr(start, newline - start));
    start = newline + 1;
  }
  buffer->pending.erase(0, start);
  return size * count;
}

// Calls the watch's callback unless it was cancelled. Returns false once the watch is over.
bool deliver(WatchState& w, const std::vector<Event>& events) {
  {
    std::lock_guard lock(w.mu);
    if (w.cancelled) return false;
  }
  try {
    w.callback(events);
  } catch (const std::exception& e) {
    spdlog::error("etcd store: a watch callback threw: {}; the watch is cancelled", e.what());
    std::lock_guard lock(w.mu);
    w.cancelled = true;
    return false;
  } catch (...) {
    spdlog::error("etcd store: a watch callback threw; the watch is cancelled");
    std::lock_guard lock(w.mu);
    w.cancelled = true;
    return false;
  }
  return true;
}

void markRunning(WatchState& w) {
  {
    std::lock_guard lock(w.mu);
    if (w.phase != WatchState::Phase::kStarting) return;
    w.phase = WatchState::Phase::kRunning;
  }
  w.cv.notify_all();
}

// Handles one line of the stream. Returns a StreamEnd when the stream is over.
std::optional<StreamEnd> handleLine(WatchState& w, const std::string& line,
                                    const std::string& endpoint) {
  json message = json::parse(line, nullptr, false);
  if (message.is_discarded()) {
    return StreamEnd{StreamEnd::Kind::kDropped, endpoint + ": an answer that is not JSON", 0};
  }
  if (message.contains("error")) {
    return StreamEnd{
        StreamEnd::Kind::kDropped,
        errorFromAnswer(message.value("error", json::object()), endpoint, 200).message(), 0};
  }
  const json result = message.value("result", json::object());
  if (result.value("created", false)) {
    w.confirmed = true;
    markRunning(w);
  }
  if (result.value("canceled", false)) {
    Revision compact = int64At(result, "compact_revision");
    if (compact > 0) return StreamEnd{StreamEnd::Kind::kCompacted, "", compact};
    std::string reason = result.value("cancel_reason", std::string("the watch was cancelled"));
    return StreamEnd{StreamEnd::Kind::kDropped, "etcd at " + endpoint + ": " + reason, 0};
  }
  auto events = result.find("events");
  if (events == result.end() || !events->is_array() || events->empty()) return std::nullopt;
  std::vector<Event> batch;
  batch.reserve(events->size());
  for (const json& e : *events) {
    auto kv = decodeKeyValue(e.value("kv", json::object()));
    if (!kv) return StreamEnd{StreamEnd::Kind::kDropped, kv.error().message(), 0};
    // A reconnect asks for `next` on, so nothing older arrives; the check keeps that promise
    // even if a member answers otherwise.
    if (kv->modRevision < w.next) continue;
    Event event{
        e.value("type", std::string()) == "DELETE" ? Event::Kind::kDelete : Event::Kind::kPut,
        std::move(*kv)};
    batch.push_back(std::move(event));
  }
  if (batch.empty()) return std::nullopt;
  Revision last = batch.back().kv.modRevision;
  if (!deliver(w, batch)) return StreamEnd{StreamEnd::Kind::kCancelled, "", 0};
  w.next = last + 1;
  return std::nullopt;
}

// Runs one streaming request against `endpoint` until it ends.
StreamEnd runStream(WatchState& w, size_t endpointIndex) {
  const std::string endpoint = w.transport->options().endpoints[endpointIndex];
  json create = {{"key", base64Encode(w.key)},
                 {"range_end", base64Encode(w.rangeEnd)},
                 {"start_revision", std::to_string(w.next)}};
  const std::string body = json{{"create_request", std::move(create)}}.dump();
  const std::string url = w.transport->url(endpointIndex) + "/v3/watch";

  CURL* curl = curl_easy_init();
  if (curl == nullptr) return {StreamEnd::Kind::kDropped, "cannot create a curl handle", 0};
  LineBuffer buffer;
  curl_slist* headers = prepareGatewayPost(
      curl, url, body, static_cast<long>(w.transport->options().connectTimeoutMs));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, receive);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buffer);
  // A dead peer that never closes the connection is noticed by TCP keepalive.
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 5L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 2L);
  curl_multi_add_handle(w.multi, curl);
  w.confirmed = false;

  StreamEnd end{StreamEnd::Kind::kDropped, endpoint + ": the watch stream ended", 0};
  for (;;) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(w.multi, &running);
    bool over = false;
    for (const std::string& line : buffer.lines) {
      if (auto ended = handleLine(w, line, endpoint)) {
        end = std::move(*ended);
        over = true;
        break;
      }
    }
    buffer.lines.clear();
    if (over) break;
    {
      std::lock_guard lock(w.mu);
      if (w.cancelled) {
        end = {StreamEnd::Kind::kCancelled, "", 0};
        break;
      }
    }
    if (mc != CURLM_OK) {
      end.reason = endpoint + ": " + curl_multi_strerror(mc);
      break;
    }
    if (running == 0) {
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(w.multi, &queued)) {
        if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK) {
          end.reason = endpoint + ": " + curl_easy_strerror(msg->data.result);
        }
      }
      break;
    }
    curl_multi_poll(w.multi, nullptr, 0, 1000, nullptr);
  }
  // Removing the handle closes its connection, which is how the gateway's watch is cancelled.
  curl_multi_remove_handle(w.multi, curl);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);
  return end;
}

void failStart(WatchState& w, Error error) {
  {
    std::lock_guard lock(w.mu);
    w.startError = std::move(error);
    w.phase = WatchState::Phase::kStopped;
  }
  w.cv.notify_all();
}

void runWatch(const std::shared_ptr<WatchState>& w) {
  const size_t count = w->transport->options().endpoints.size();
  size_t endpoint = w->transport->preferred();
  size_t failedStarts = 0;
  std::string failures;
  // Reconnects back off while no stream gets confirmed, so an outage is not a busy loop.
  const int64_t baseDelayMs = w->transport->options().watchRetryMs;
  int64_t delayMs = baseDelayMs;
  for (;;) {
    StreamEnd end = runStream(*w, endpoint);
    bool started = false;
    {
      std::lock_guard lock(w->mu);
      started = w->phase == WatchState::Phase::kRunning;
      if (w->cancelled) break;
    }
    if (end.kind == StreamEnd::Kind::kCancelled) break;
    if (end.kind == StreamEnd::Kind::kCompacted) {
      w->transport->observeCompacted(end.compactRevision);
      Error error(ErrorCode::kCompacted, "watch: revision " + std::to_string(w->next) +
                                             " is compacted; the oldest retained is " +
                                             std::to_string(end.compactRevision));
      if (!started) {
        failStart(*w, std::move(error));
        break;
      }
      spdlog::error("etcd store: a watch lost history while reconnecting and stops: {}",
                    error.message());
      break;
    }
    if (!started) {
      failures += failures.empty() ? end.reason : "; " + end.reason;
      if (++failedStarts >= count) {
        failStart(*w, Error(ErrorCode::kUnavailable,
                            "watch: no etcd endpoint accepted the watch (" + failures + ")"));
        break;
      }
    } else {
      delayMs = w->confirmed ? baseDelayMs : std::min(delayMs * 2, baseDelayMs * 16);
      spdlog::warn("etcd store: a watch stream dropped ({}); resuming from revision {}", end.reason,
                   w->next);
    }
    w->transport->failOver(endpoint);
    endpoint = (endpoint + 1) % count;
    std::unique_lock lock(w->mu);
    if (started) {
      w->cv.wait_for(lock, std::chrono::milliseconds(delayMs), [&] { return w->cancelled; });
    }
    if (w->cancelled) break;
  }
  std::lock_guard lock(w->mu);
  w->phase = WatchState::Phase::kStopped;
  curl_multi_cleanup(w->multi);
  w->multi = nullptr;
  w->cv.notify_all();
}

}  // namespace

void WatchRegistry::add(const std::shared_ptr<WatchState>& state) {
  std::lock_guard lock(mu_);
  std::erase_if(watches_, [](const std::weak_ptr<WatchState>& w) { return w.expired(); });
  watches_.push_back(state);
}

bool WatchRegistry::stopped() {
  std::lock_guard lock(mu_);
  return stopped_;
}

void WatchRegistry::stopAll() {
  std::vector<std::weak_ptr<WatchState>> watches;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    watches.swap(watches_);
  }
  for (auto& weak : watches) {
    if (auto state = weak.lock()) state->stop();
  }
}

Result<std::unique_ptr<WatchHandle>> startWatch(std::shared_ptr<Transport> transport,
                                                std::shared_ptr<WatchRegistry> registry,
                                                const std::string& prefix, Revision fromRevision,
                                                WatchCallback callback) {
  auto state = std::make_shared<WatchState>();
  state->transport = std::move(transport);
  state->key = prefix.empty() ? std::string(1, '\0') : prefix;
  state->rangeEnd = etcdRangeEnd(prefixEnd(prefix));
  state->callback = std::move(callback);
  state->next = fromRevision;
  state->multi = curl_multi_init();
  if (state->multi == nullptr) return fail(ErrorCode::kInternal, "watch: cannot create curl");
  registry->add(state);
  if (registry->stopped()) {
    curl_multi_cleanup(state->multi);
    return fail(ErrorCode::kUnavailable, "watch: the etcd store is closed");
  }
  {
    std::lock_guard join(state->joinMu);
    state->thread = std::thread([state] { runWatch(state); });
  }
  auto handle = std::make_unique<EtcdWatchHandle>(state);
  std::unique_lock lock(state->mu);
  const auto limit = std::chrono::milliseconds(state->transport->options().requestTimeoutMs);
  bool decided =
      state->cv.wait_for(lock, limit, [&] { return state->phase != WatchState::Phase::kStarting; });
  if (decided && state->phase == WatchState::Phase::kRunning) {
    return std::unique_ptr<WatchHandle>(std::move(handle));
  }
  std::optional<Error> error = state->startError;
  lock.unlock();
  handle.reset();  // Stops the thread.
  if (error) return std::unexpected(std::move(*error));
  return fail(ErrorCode::kUnavailable, "watch: etcd did not confirm the watch in time");
}

}  // namespace skiff::store::etcd_detail
