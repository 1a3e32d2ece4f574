#include <algorithm>
#include <exception>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "controlplane/store/etcd_store_impl.h"

namespace skiff::store::etcd_detail {

namespace {

// Some room below --max-request-bytes for the JSON-to-protobuf framing the estimate misses.
constexpr size_t kRequestSlackBytes = 64 * 1024;

void complete(PendingTxn& pending, Result<TxnResult> result) {
  try {
    pending.done(std::move(result));
  } catch (const std::exception& e) {
    spdlog::error("etcd store: a commit completion threw: {}", e.what());
  } catch (...) {
    spdlog::error("etcd store: a commit completion threw a non-standard exception");
  }
}

}  // namespace

Batcher::Batcher(std::shared_ptr<Transport> transport) : transport_(std::move(transport)) {}

Batcher::~Batcher() {
  stop();
}

void Batcher::start() {
  thread_ = std::thread([this] { run(); });
}

void Batcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Batcher::submit(PendingTxn pending) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(pending));
      cv_.notify_one();
      return;
    }
  }
  complete(pending, fail(ErrorCode::kUnavailable, "commit: the etcd store is closed"));
}

EtcdStoreStats Batcher::stats() const {
  return {requests_.load(), committed_.load()};
}

void Batcher::run() {
  std::vector<PendingTxn> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // Stopping with nothing left.
      takeBatchLocked(batch);
    }
    send(batch);
    batch.clear();
  }
}

void Batcher::takeBatchLocked(std::vector<PendingTxn>& batch) {
  const size_t maxOps = transport_->options().maxTxnOps;
  const size_t maxBytes = transport_->options().maxRequestBytes > 2 * kRequestSlackBytes
                              ? transport_->options().maxRequestBytes - kRequestSlackBytes
                              : transport_->options().maxRequestBytes / 2;
  std::unordered_set<std::string> keys;
  size_t widest = 0;
  size_t bytes = 0;
  size_t sent = 0;  // Transactions in `batch` that go to etcd.
  while (!queue_.empty()) {
    PendingTxn& next = queue_.front();
    if (next.rejected) {
      // Rejected transactions take no room; they complete in their place in the order.
      batch.push_back(std::move(next));
      queue_.pop_front();
      continue;
    }
    const size_t width = txnWidth(next.txn);
    const size_t size = txnBytes(next.txn);
    std::vector<std::string> nextKeys = txnKeys(next.txn);
    if (sent > 0) {
      // etcd's checkTxnRequest: with N nested transactions each may be N ops narrower.
      if (sent + 1 + std::max(widest, width) > maxOps) break;
      if (bytes + size > maxBytes) break;
      bool overlaps = std::any_of(nextKeys.begin(), nextKeys.end(),
                                  [&](const std::string& k) { return keys.contains(k); });
      if (overlaps) break;
    }
    widest = std::max(widest, width);
    bytes += size;
    keys.insert(std::make_move_iterator(nextKeys.begin()), std::make_move_iterator(nextKeys.end()));
    batch.push_back(std::move(next));
    queue_.pop_front();
    ++sent;
  }
}

void Batcher::send(std::vector<PendingTxn>& batch) {
  std::vector<PendingTxn*> sent;
  for (PendingTxn& p : batch) {
    if (!p.rejected) sent.push_back(&p);
  }
  // A lone transaction goes out as itself: etcd's limits are then the plain ones.
  json request;
  if (sent.size() == 1) {
    request = encodeTxn(sent[0]->txn);
  } else if (sent.size() > 1) {
    json nested = json::array();
    for (PendingTxn* p : sent) nested.push_back({{"request_txn", encodeTxn(p->txn)}});
    request = {{"success", std::move(nested)}};
  }
  Result<json> answer = json();
  if (!sent.empty()) {
    requests_.fetch_add(1, std::memory_order_relaxed);
    answer = transport_->call("/v3/kv/txn", request, Idempotence::kWrite);
    if (answer) committed_.fetch_add(static_cast<int64_t>(sent.size()), std::memory_order_relaxed);
  }

  const Revision revision =
      answer ? int64At(answer->value("header", json::object()), "revision") : 0;
  const json* responses = nullptr;
  if (answer && sent.size() > 1) {
    auto it = answer->find("responses");
    if (it != answer->end() && it->is_array() && it->size() == sent.size()) responses = &*it;
  }
  size_t index = 0;
  for (PendingTxn& p : batch) {
    if (p.rejected) {
      complete(p, std::unexpected(*p.rejected));
      continue;
    }
    const size_t mine = index++;
    if (!answer) {
      complete(p, std::unexpected(answer.error().wrap("commit")));
      continue;
    }
    TxnResult result;
    result.revision = revision;
    if (sent.size() == 1) {
      result.succeeded = answer->value("succeeded", false);
    } else if (responses == nullptr) {
      complete(p, fail(ErrorCode::kInternal, "commit: etcd answered a batch of " +
                                                 std::to_string(sent.size()) +
                                                 " transactions without one response each"));
      continue;
    } else {
      const json& inner = (*responses)[mine];
      result.succeeded = inner.value("response_txn", json::object()).value("succeeded", false);
    }
    complete(p, result);
  }
}

}  // namespace skiff::store::etcd_detail
