#pragma once

// The client side of the skiffd REST API (docs/api.md), shared by the CLI, the node agent
// (through node_api.h), the tests and the benchmarks.
//
// `Api` is the narrow interface its users hold, so tests can stand in for the server;
// `ApiClient` implements it over libcurl. Every HTTP answer, 4xx and 5xx included, is a value
// (`ApiResponse`): only failing to get an answer at all is an `Error`, always kUnavailable and
// always naming the address, so callers can tell "the server said no" from "no server".

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff::client {

struct ApiResponse {
  long status = 0;
  // The parsed JSON body; null when the body was empty, a JSON string holding the raw text when
  // it was not JSON (a proxy's HTML error page, say).
  nlohmann::json body;

  bool ok() const { return status >= 200 && status < 300; }
};

// What a non-2xx answer says, from the `{"error": {...}}` body when there is one.
struct ServerError {
  std::string code;                  // "NotFound"...; empty when the body had none.
  std::string message;               // One line, never empty.
  std::vector<std::string> details;  // "field: message" per validation violation.
};

// Describes a non-2xx response for the user. Falls back to "HTTP <status>" plus the start of a
// non-JSON body when the server did not send the documented error shape.
ServerError describeServerError(const ApiResponse& response);

using Headers = std::vector<std::pair<std::string, std::string>>;

// Called with each line of an NDJSON stream, without its newline; empty lines are skipped.
// Returning false ends the stream early.
using LineHandler = std::function<bool(std::string_view line)>;

class Api {
 public:
  virtual ~Api() = default;

  // The normalized base address ("http://127.0.0.1:7070"), for messages.
  virtual const std::string& address() const = 0;

  // Sends one request to `target` (path plus query, e.g. "/v1/jobs?limit=5"). `body`, when not
  // null, is sent as JSON. Fails only when no HTTP answer arrived.
  virtual Result<ApiResponse> call(std::string_view method, std::string_view target,
                                   const nlohmann::json* body, const Headers& headers = {}) = 0;

  // GETs `target` and hands each line of a 2xx answer to `onLine` as it arrives. Returns when the
  // server ends the stream (status 2xx, null body), when `onLine` returns false (likewise), or
  // with the whole answer when the status is not 2xx (no line is handed over then). Fails when
  // the connection cannot be made or breaks, or when the stream goes silent for longer than the
  // idle timeout; lines received before a break have already been handed over.
  virtual Result<ApiResponse> stream(std::string_view target, const LineHandler& onLine) = 0;
};

struct ClientOptions {
  long connectTimeoutMs = 10'000;
  long requestTimeoutMs = 60'000;  // Whole request, for `call`.
  // A stream with no byte for this long is treated as broken. The server sends a keepalive every
  // 10 s, so this leaves room for two lost ones.
  long streamIdleTimeoutSec = 35;
  std::string userAgent = "skiff/" SKIFF_VERSION;
};

class ApiClient final : public Api {
 public:
  // `address` must already be normalized (see normalizeAddress); `token` may be empty, in which
  // case no Authorization header is sent.
  ApiClient(std::string address, std::string token, ClientOptions options = {});
  ~ApiClient() override;
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  const std::string& address() const override { return address_; }
  Result<ApiResponse> call(std::string_view method, std::string_view target,
                           const nlohmann::json* body, const Headers& headers = {}) override;
  Result<ApiResponse> stream(std::string_view target, const LineHandler& onLine) override;

 private:
  struct Transfer;
  Result<ApiResponse> perform(Transfer& transfer, std::string_view method, std::string_view target,
                              const std::string* body, const Headers& headers, bool streaming);

  std::string address_;
  std::string token_;
  ClientOptions options_;
  void* curl_ = nullptr;  // CURL*, kept across calls so the connection is reused.
};

}  // namespace skiff::client
