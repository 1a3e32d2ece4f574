#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "common/encoding.h"
#include "controlplane/store/etcd_store_impl.h"

namespace skiff::store::etcd_detail {

// ------------------------------------------------------------------------------------------------
// Codec.

int64_t int64At(const json& object, const char* name) {
  if (!object.is_object()) return 0;
  auto it = object.find(name);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    // The gateway writes int64 as a decimal string; anything else is treated as absent.
    const std::string& text = it->get_ref<const std::string&>();
    int64_t value = 0;
    bool negative = false;
    size_t i = 0;
    if (!text.empty() && text[0] == '-') {
      negative = true;
      i = 1;
    }
    for (; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return 0;
      value = value * 10 + (text[i] - '0');
    }
    return negative ? -value : value;
  }
  return 0;
}

namespace {

Result<std::string> bytesAt(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return std::string();
  auto decoded = base64Decode(it->get_ref<const std::string&>());
  if (!decoded)
    return fail(ErrorCode::kInternal, std::string("etcd answer: bad base64 in ") + name);
  return decoded;
}

// The ops of one branch with only the last op per key kept, in their original order.
std::vector<const Op*> lastOpPerKey(const std::vector<Op>& ops) {
  std::map<std::string_view, size_t> last;
  for (size_t i = 0; i < ops.size(); ++i) last[ops[i].key] = i;
  std::vector<const Op*> kept;
  kept.reserve(last.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    if (last[ops[i].key] == i) kept.push_back(&ops[i]);
  }
  return kept;
}

json encodeOps(const std::vector<Op>& ops) {
  json out = json::array();
  for (const Op* op : lastOpPerKey(ops)) {
    if (op->kind == Op::Kind::kPut) {
      out.push_back(
          {{"request_put", {{"key", base64Encode(op->key)}, {"value", base64Encode(op->value)}}}});
    } else {
      out.push_back({{"request_delete_range", {{"key", base64Encode(op->key)}}}});
    }
  }
  return out;
}

}  // namespace

Result<KeyValue> decodeKeyValue(const json& kv) {
  KeyValue out;
  auto key = bytesAt(kv, "key");
  if (!key) return std::unexpected(std::move(key).error());
  auto value = bytesAt(kv, "value");
  if (!value) return std::unexpected(std::move(value).error());
  out.key = std::move(*key);
  out.value = std::move(*value);
  out.createRevision = int64At(kv, "create_revision");
  out.modRevision = int64At(kv, "mod_revision");
  out.version = int64At(kv, "version");
  return out;
}

std::string etcdRangeEnd(const std::string& end) {
  return end.empty() ? std::string(1, '\0') : end;
}

size_t txnWidth(const Txn& txn) {
  return std::max({txn.compares.size(), lastOpPerKey(txn.onSuccess).size(),
                   lastOpPerKey(txn.onFailure).size()});
}

Status validateTxn(const Txn& txn, size_t maxTxnOps) {
  for (const Compare& c : txn.compares) {
    if (c.key.empty()) return fail(ErrorCode::kInvalidArgument, "compare with an empty key");
  }
  for (const auto* ops : {&txn.onSuccess, &txn.onFailure}) {
    for (const Op& op : *ops) {
      if (op.key.empty()) return fail(ErrorCode::kInvalidArgument, "operation with an empty key");
    }
  }
  size_t width = txnWidth(txn);
  if (width > maxTxnOps) {
    return fail(ErrorCode::kTooLarge,
                "transaction has " + std::to_string(width) +
                    " compares or operations in one branch; etcd allows at most " +
                    std::to_string(maxTxnOps) + " (its --max-txn-ops)");
  }
  return {};
}

json encodeTxn(const Txn& txn) {
  json compares = json::array();
  for (const Compare& c : txn.compares) {
    // etcd reads an absent key's revisions as 0, so these three match Compare::holds.
    switch (c.kind) {
      case Compare::Kind::kExists:
        compares.push_back({{"key", base64Encode(c.key)},
                            {"target", "CREATE"},
                            {"result", "GREATER"},
                            {"create_revision", "0"}});
        break;
      case Compare::Kind::kNotExists:
        compares.push_back({{"key", base64Encode(c.key)},
                            {"target", "CREATE"},
                            {"result", "EQUAL"},
                            {"create_revision", "0"}});
        break;
      case Compare::Kind::kModRevisionIs:
        compares.push_back({{"key", base64Encode(c.key)},
                            {"target", "MOD"},
                            {"result", "EQUAL"},
                            {"mod_revision", std::to_string(c.revision)}});
        break;
    }
  }
  return {{"compare", std::move(compares)},
          {"success", encodeOps(txn.onSuccess)},
          {"failure", encodeOps(txn.onFailure)}};
}

std::vector<std::string> txnKeys(const Txn& txn) {
  std::vector<std::string> keys;
  for (const Compare& c : txn.compares) keys.push_back(c.key);
  for (const auto* ops : {&txn.onSuccess, &txn.onFailure}) {
    for (const Op& op : *ops) keys.push_back(op.key);
  }
  return keys;
}

size_t txnBytes(const Txn& txn) {
  // Field tags, lengths and revisions cost a few bytes each; 16 per entry is generous.
  size_t bytes = 16;
  for (const Compare& c : txn.compares) bytes += c.key.size() + 16;
  for (const auto* ops : {&txn.onSuccess, &txn.onFailure}) {
    for (const Op& op : *ops) bytes += op.key.size() + op.value.size() + 16;
  }
  return bytes;
}

// ------------------------------------------------------------------------------------------------
// Errors.

bool isNoLeader(const json& answer) {
  std::string message = stringAt(answer, {"error"});
  return message.find("no leader") != std::string::npos;
}

Error errorFromAnswer(const json& answer, const std::string& endpoint, long httpStatus) {
  std::string message = stringAt(answer, {"error"});
  if (message.empty()) message = stringAt(answer, {"message"});
  if (message.empty()) message = "HTTP status " + std::to_string(httpStatus);
  const int64_t code = answer.is_object() ? answer.value("code", int64_t{0}) : 0;
  const std::string text = "etcd at " + endpoint + ": " + message;
  // gRPC status codes: 3 InvalidArgument, 4 DeadlineExceeded, 11 OutOfRange, 14 Unavailable.
  if (message.find("compacted") != std::string::npos) return Error(ErrorCode::kCompacted, text);
  if (message.find("too many operations") != std::string::npos ||
      message.find("too large") != std::string::npos ||
      message.find("larger than max") != std::string::npos) {
    return Error(ErrorCode::kTooLarge, text);
  }
  if (code == 14 || code == 4 || message.find("deadline exceeded") != std::string::npos ||
      message.find("timed out") != std::string::npos) {
    return Error(ErrorCode::kUnavailable, text);
  }
  if (code == 3 || code == 11) return Error(ErrorCode::kInvalidArgument, text);
  return Error(ErrorCode::kIo, text);
}

// ------------------------------------------------------------------------------------------------
// Transport.

namespace {

std::once_flag curlInit;

size_t appendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// Connection failures where the request never reached etcd.
bool notSent(CURLcode code) {
  return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
         code == CURLE_COULDNT_RESOLVE_PROXY;
}

}  // namespace

curl_slist* prepareGatewayPost(CURL* curl, const std::string& url, std::string_view body,
                               long connectTimeoutMs) {
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  // Without it a request (a watch above all) on a member that lost its leader waits instead of
  // failing (etcd#10819).
  headers = curl_slist_append(headers, "Grpc-Metadata-hasleader: true");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMs);
  return headers;
}

Transport::Transport(EtcdStoreOptions options) : options_(std::move(options)) {
  std::call_once(curlInit, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Transport::~Transport() {
  for (void* handle : idle_) curl_easy_cleanup(static_cast<CURL*>(handle));
}

void* Transport::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* handle = idle_.back();
      idle_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void Transport::release(void* handle) {
  std::lock_guard lock(mu_);
  idle_.push_back(handle);
}

void Transport::failOver(size_t from) {
  size_t expected = from;
  preferred_.compare_exchange_strong(expected, (from + 1) % options_.endpoints.size());
}

void Transport::observe(Revision revision) {
  Revision seen = highest_.load(std::memory_order_relaxed);
  while (revision > seen && !highest_.compare_exchange_weak(seen, revision)) {
  }
}

void Transport::observeCompacted(Revision revision) {
  Revision seen = compacted_.load(std::memory_order_relaxed);
  while (revision > seen && !compacted_.compare_exchange_weak(seen, revision)) {
  }
}

Result<json> Transport::call(std::string_view path, const json& body, Idempotence idempotence) {
  const std::string payload = body.dump();
  std::string failures;
  const size_t count = options_.endpoints.size();
  const size_t first = preferred();
  for (size_t attempt = 0; attempt < count; ++attempt) {
    const size_t index = (first + attempt) % count;
    const std::string& endpoint = options_.endpoints[index];
    CURL* curl = static_cast<CURL*>(acquire());
    if (curl == nullptr) return fail(ErrorCode::kInternal, "etcd: cannot create a curl handle");
    std::string url = this->url(index).append(path);
    std::string answer;
    curl_slist* headers =
        prepareGatewayPost(curl, url, payload, static_cast<long>(options_.connectTimeoutMs));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, appendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.requestTimeoutMs));
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    // Unset the borrowed pointers before the handle goes back to the pool.
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, nullptr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, nullptr);

    if (code != CURLE_OK) {
      curl_easy_cleanup(curl);  // Its connection may be half-used; do not keep it.
      std::string reason = endpoint + ": " + curl_easy_strerror(code);
      failures += failures.empty() ? reason : "; " + reason;
      if (idempotence == Idempotence::kWrite && !notSent(code)) {
        failOver(index);
        return fail(ErrorCode::kUnavailable,
                    "etcd at " + reason +
                        " (the request may or may not have been applied; read to find out)");
      }
      failOver(index);
      continue;
    }
    release(curl);
    json parsed = json::parse(answer, nullptr, false);
    if (parsed.is_discarded()) {
      return fail(ErrorCode::kIo, "etcd at " + endpoint + ": answer is not JSON (HTTP status " +
                                      std::to_string(status) + ")");
    }
    if (status == 200 && !parsed.contains("error")) {
      if (auto header = parsed.find("header"); header != parsed.end()) {
        observe(int64At(*header, "revision"));
      }
      return parsed;
    }
    if (isNoLeader(parsed)) {
      std::string reason = endpoint + ": no leader";
      failures += failures.empty() ? reason : "; " + reason;
      failOver(index);
      continue;
    }
    return std::unexpected(errorFromAnswer(parsed, endpoint, status));
  }
  return fail(ErrorCode::kUnavailable,
              "etcd is unavailable: no endpoint is reachable with a leader (" + failures + ")");
}

}  // namespace skiff::store::etcd_detail
