#include "controlplane/store/etcd_store.h"

#include <future>
#include <string>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "controlplane/store/etcd_store_impl.h"

namespace skiff::store {

using etcd_detail::Idempotence;
using etcd_detail::int64At;
using etcd_detail::json;

namespace {

// Keys per request while scanning a prefix: bounded memory, few round trips.
constexpr size_t kScanPageSize = 1000;

bool validPort(const std::string& text) {
  if (text.empty() || text.size() > 5) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  int port = std::stoi(text);
  return port >= 1 && port <= 65535;
}

Status checkEndpoint(const std::string& endpoint) {
  const std::string rule =
      "each endpoint is HOST:PORT (an IPv6 host in brackets), as in "
      "etcd://127.0.0.1:2379,10.0.0.2:2379";
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return fail(ErrorCode::kInvalidArgument, "etcd endpoint '" + endpoint + "': " + rule);
  }
  std::string host = endpoint.substr(0, colon);
  if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']')) {
    return fail(ErrorCode::kInvalidArgument, "etcd endpoint '" + endpoint + "': " + rule);
  }
  if (host.find_first_of("/@?# ") != std::string::npos || !validPort(endpoint.substr(colon + 1))) {
    return fail(ErrorCode::kInvalidArgument, "etcd endpoint '" + endpoint + "': " + rule);
  }
  return {};
}

Result<RangeResult> decodeRange(const json& answer) {
  RangeResult result;
  result.revision = int64At(answer.value("header", json::object()), "revision");
  result.more = answer.value("more", false);
  if (auto kvs = answer.find("kvs"); kvs != answer.end() && kvs->is_array()) {
    result.kvs.reserve(kvs->size());
    for (const json& kv : *kvs) {
      auto decoded = etcd_detail::decodeKeyValue(kv);
      if (!decoded) return std::unexpected(std::move(decoded).error());
      result.kvs.push_back(std::move(*decoded));
    }
  }
  return result;
}

}  // namespace

Result<std::vector<std::string>> parseEtcdSpec(const std::string& spec) {
  constexpr std::string_view kScheme = "etcd://";
  if (!spec.starts_with(kScheme) || spec.size() == kScheme.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + spec + "' is not etcd://HOST:PORT[,HOST:PORT...]");
  }
  std::vector<std::string> endpoints;
  std::string rest = spec.substr(kScheme.size());
  size_t start = 0;
  for (;;) {
    size_t comma = rest.find(',', start);
    std::string endpoint = rest.substr(start, comma == std::string::npos ? comma : comma - start);
    if (auto valid = checkEndpoint(endpoint); !valid) return std::unexpected(valid.error());
    endpoints.push_back(std::move(endpoint));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return endpoints;
}

EtcdStore::EtcdStore() = default;

EtcdStore::~EtcdStore() {
  if (batcher_) batcher_->stop();
  if (watches_) watches_->stopAll();
}

Result<std::unique_ptr<EtcdStore>> EtcdStore::open(EtcdStoreOptions options) {
  if (options.endpoints.empty()) {
    return fail(ErrorCode::kInvalidArgument, "open etcd store: no endpoints");
  }
  for (const std::string& endpoint : options.endpoints) {
    SKIFF_TRY_STATUS(checkEndpoint(endpoint), "open etcd store");
  }
  std::unique_ptr<EtcdStore> store(new EtcdStore());
  store->options_ = options;
  store->transport_ = std::make_shared<etcd_detail::Transport>(std::move(options));
  auto status =
      store->transport_->call("/v3/maintenance/status", json::object(), Idempotence::kRead);
  if (!status) return std::unexpected(status.error().wrap("open etcd store"));
  SKIFF_TRY_STATUS(store->findCompactedRevision(), "open etcd store");
  store->watches_ = std::make_shared<etcd_detail::WatchRegistry>();
  store->batcher_ = std::make_unique<etcd_detail::Batcher>(store->transport_);
  store->batcher_->start();
  return store;
}

EtcdStoreStats EtcdStore::stats() const {
  return batcher_->stats();
}

Result<TxnResult> EtcdStore::commit(Txn txn) {
  if (batcher_->onThread()) {
    return fail(ErrorCode::kFailedPrecondition,
                "commit: called on the store's sending thread (from a commitAsync completion); "
                "it would wait for itself");
  }
  SKIFF_TRY_STATUS(etcd_detail::validateTxn(txn, options_.maxTxnOps), "commit");
  auto promise = std::make_shared<std::promise<Result<TxnResult>>>();
  auto future = promise->get_future();
  etcd_detail::PendingTxn pending;
  pending.txn = std::move(txn);
  pending.done = [promise](Result<TxnResult> result) { promise->set_value(std::move(result)); };
  batcher_->submit(std::move(pending));
  return future.get();
}

void EtcdStore::commitAsync(Txn txn, std::function<void(Result<TxnResult>)> done) {
  etcd_detail::PendingTxn pending;
  if (auto valid = etcd_detail::validateTxn(txn, options_.maxTxnOps); !valid) {
    pending.rejected = valid.error().wrap("commit");
  } else {
    pending.txn = std::move(txn);
  }
  pending.done = std::move(done);
  batcher_->submit(std::move(pending));
}

Result<std::optional<KeyValue>> EtcdStore::get(const std::string& key) {
  if (key.empty()) return std::optional<KeyValue>();
  auto answer = transport_->call("/v3/kv/range", {{"key", base64Encode(key)}}, Idempotence::kRead);
  if (!answer) return std::unexpected(answer.error().wrap("get"));
  auto range = decodeRange(*answer);
  if (!range) return std::unexpected(range.error().wrap("get"));
  if (range->kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(std::move(range->kvs.front()));
}

Result<RangeResult> EtcdStore::range(const std::string& begin, const std::string& end,
                                     size_t limit) {
  json request = {{"key", base64Encode(begin.empty() ? std::string(1, '\0') : begin)},
                  {"range_end", base64Encode(etcd_detail::etcdRangeEnd(end))}};
  if (limit != 0) request["limit"] = std::to_string(limit);
  auto answer = transport_->call("/v3/kv/range", request, Idempotence::kRead);
  if (!answer) return std::unexpected(answer.error().wrap("range"));
  auto result = decodeRange(*answer);
  if (!result) return std::unexpected(result.error().wrap("range"));
  return result;
}

Result<Revision> EtcdStore::scanPrefix(const std::string& prefix,
                                       const std::function<void(const KeyValue&)>& fn) {
  // Pages are read at the first page's revision, so together they form one snapshot.
  const std::string rangeEnd = base64Encode(etcd_detail::etcdRangeEnd(prefixEnd(prefix)));
  std::string from = prefix.empty() ? std::string(1, '\0') : prefix;
  Revision snapshot = 0;
  for (;;) {
    json request = {{"key", base64Encode(from)},
                    {"range_end", rangeEnd},
                    {"limit", std::to_string(kScanPageSize)}};
    if (snapshot != 0) request["revision"] = std::to_string(snapshot);
    auto answer = transport_->call("/v3/kv/range", request, Idempotence::kRead);
    if (!answer) return std::unexpected(answer.error().wrap("scan prefix"));
    auto page = decodeRange(*answer);
    if (!page) return std::unexpected(page.error().wrap("scan prefix"));
    if (snapshot == 0) snapshot = page->revision;
    for (const KeyValue& kv : page->kvs) fn(kv);
    if (!page->more || page->kvs.empty()) break;
    from = page->kvs.back().key;
    from.push_back('\0');  // The smallest key after the last one read.
  }
  return snapshot;
}

Revision EtcdStore::currentRevision() {
  json request = {{"key", base64Encode(std::string(1, '\0'))}, {"count_only", true}};
  auto answer = transport_->call("/v3/kv/range", request, Idempotence::kRead);
  if (!answer) return transport_->highestRevision();
  return std::max(int64At(answer->value("header", json::object()), "revision"),
                  transport_->highestRevision());
}

Revision EtcdStore::compactedRevision() {
  return transport_->compacted();
}

Result<bool> EtcdStore::revisionReadable(Revision revision) {
  json request = {{"key", base64Encode(std::string(1, '\0'))},
                  {"count_only", true},
                  {"revision", std::to_string(revision)}};
  auto answer = transport_->call("/v3/kv/range", request, Idempotence::kRead);
  if (answer) return true;
  if (answer.error().code() == ErrorCode::kCompacted) return false;
  // A revision beyond the current one is not compacted.
  if (answer.error().message().find("future revision") != std::string::npos) return true;
  return std::unexpected(answer.error());
}

Status EtcdStore::findCompactedRevision() {
  // The oldest readable revision is the compacted one: ranges below it fail.
  Revision current = currentRevision();
  auto oldest = revisionReadable(1);
  if (!oldest) return std::unexpected(oldest.error());
  if (*oldest) return {};   // Nothing compacted; report 0 as a fresh SQLite store does.
  Revision low = 1;         // Not readable.
  Revision high = current;  // Readable: etcd never compacts past its current revision.
  while (high - low > 1) {
    Revision mid = low + (high - low) / 2;
    auto readable = revisionReadable(mid);
    if (!readable) return std::unexpected(readable.error());
    (*readable ? high : low) = mid;
  }
  transport_->observeCompacted(high);
  return {};
}

Result<std::unique_ptr<WatchHandle>> EtcdStore::watch(const std::string& prefix,
                                                      Revision fromRevision,
                                                      WatchCallback callback) {
  if (!callback) return fail(ErrorCode::kInvalidArgument, "watch: no callback");
  const Revision from = std::max<Revision>(fromRevision, 1);
  auto compactedError = [&] {
    return fail(ErrorCode::kCompacted, "watch: revision " + std::to_string(fromRevision) +
                                           " is compacted; the oldest retained is " +
                                           std::to_string(compactedRevision()));
  };
  if (fromRevision < compactedRevision()) return compactedError();
  // etcd reports a compacted start revision only after confirming the watch; a read at that
  // revision answers at once.
  auto readable = revisionReadable(from);
  if (!readable) return std::unexpected(readable.error().wrap("watch"));
  if (!*readable) {
    if (Status found = findCompactedRevision(); !found) {
      return std::unexpected(found.error().wrap("watch"));
    }
    return compactedError();
  }
  return etcd_detail::startWatch(transport_, watches_, prefix, from, std::move(callback));
}

Status EtcdStore::compact(Revision revision) {
  if (batcher_->onThread()) {
    return fail(ErrorCode::kFailedPrecondition,
                "compact: called on the store's sending thread; it would wait for itself");
  }
  if (revision <= compactedRevision()) return {};
  Revision current = currentRevision();
  if (revision > current + 1) {
    return fail(ErrorCode::kInvalidArgument, "compact: revision " + std::to_string(revision) +
                                                 " is beyond the current " +
                                                 std::to_string(current) + " + 1");
  }
  // etcd keeps the revision it compacts at; compacting "past the current one" keeps that one.
  Revision at = std::min(revision, current);
  auto answer =
      transport_->call("/v3/kv/compaction", {{"revision", std::to_string(at)}}, Idempotence::kRead);
  if (!answer && answer.error().code() != ErrorCode::kCompacted) {
    return std::unexpected(answer.error().wrap("compact"));
  }
  transport_->observeCompacted(revision);
  return {};
}

}  // namespace skiff::store
