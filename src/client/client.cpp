#include "client/client.h"

#include <curl/curl.h>

#include "common/text.h"

namespace skiff::client {
namespace {

using nlohmann::json;

// Bodies this large are not something skiffd sends; stop reading rather than grow without bound.
constexpr size_t kMaxBodyBytes = 256 * 1024 * 1024;
constexpr size_t kMaxLineBytes = 64 * 1024 * 1024;

json parseBody(const std::string& text) {
  if (trim(text).empty()) return nullptr;
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return json(text);
  return parsed;
}

// A string member, or "" when it is absent or not a string (json::value would throw then).
std::string stringMember(const json& object, std::string_view key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool isHeaderSafe(std::string_view text) {
  return text.find_first_of("\r\n") == std::string_view::npos;
}

}  // namespace

ServerError describeServerError(const ApiResponse& response) {
  ServerError out;
  const json& body = response.body;
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& error = body["error"];
    if (auto it = error.find("code"); it != error.end() && it->is_string()) {
      out.code = sanitize(it->get<std::string>());
    }
    if (auto it = error.find("message"); it != error.end() && it->is_string()) {
      out.message = sanitize(it->get<std::string>());
    }
    if (auto it = error.find("details"); it != error.end() && it->is_array()) {
      for (const json& detail : *it) {
        if (!detail.is_object()) continue;
        std::string field = stringMember(detail, "field");
        std::string message = stringMember(detail, "message");
        out.details.push_back(sanitize(field.empty() ? message : field + ": " + message));
      }
    }
  }
  if (out.message.empty()) {
    out.message = "HTTP " + std::to_string(response.status);
    if (!out.code.empty()) out.message += " " + out.code;
    if (body.is_string()) {
      // Some proxy's page: its first line is usually enough to say what happened.
      std::string text(trim(body.get<std::string>()));
      text = text.substr(0, text.find('\n'));
      if (text.size() > 200) text = text.substr(0, 200) + "...";
      if (!text.empty()) out.message += ": " + sanitize(text);
    }
  }
  return out;
}

struct ApiClient::Transfer {
  CURL* curl = nullptr;
  bool streaming = false;
  const LineHandler* onLine = nullptr;
  long status = 0;       // Known once the first body byte arrives.
  std::string body;      // The whole body, except for a 2xx stream.
  std::string pending;   // A 2xx stream's incomplete last line.
  bool stopped = false;  // The line handler asked to end the stream.
  bool tooLarge = false;

  static size_t write(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<Transfer*>(user);
    size_t bytes = size * count;
    if (self->streaming && self->status == 0) {
      curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, &self->status);
    }
    if (self->streaming && self->status >= 200 && self->status < 300) {
      self->pending.append(data, bytes);
      size_t start = 0;
      for (size_t end; (end = self->pending.find('\n', start)) != std::string::npos;
           start = end + 1) {
        std::string_view line(self->pending.data() + start, end - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (trim(line).empty()) continue;
        if (!(*self->onLine)(line)) {
          self->stopped = true;
          return 0;  // Makes curl abort the transfer with CURLE_WRITE_ERROR.
        }
      }
      self->pending.erase(0, start);
      if (self->pending.size() > kMaxLineBytes) {
        self->tooLarge = true;
        return 0;
      }
      return bytes;
    }
    if (self->body.size() + bytes > kMaxBodyBytes) {
      self->tooLarge = true;
      return 0;
    }
    self->body.append(data, bytes);
    return bytes;
  }
};

ApiClient::ApiClient(std::string address, std::string token, ClientOptions options)
    : address_(std::move(address)), token_(std::move(token)), options_(std::move(options)) {
  curl_ = curl_easy_init();
}

ApiClient::~ApiClient() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<ApiResponse> ApiClient::call(std::string_view method, std::string_view target,
                                    const json* body, const Headers& headers) {
  Transfer transfer;
  if (body == nullptr) return perform(transfer, method, target, nullptr, headers, false);
  std::string text = body->dump(-1, ' ', false, json::error_handler_t::replace);
  return perform(transfer, method, target, &text, headers, false);
}

Result<ApiResponse> ApiClient::stream(std::string_view target, const LineHandler& onLine) {
  Transfer transfer;
  transfer.onLine = &onLine;
  return perform(transfer, "GET", target, nullptr, {}, true);
}

Result<ApiResponse> ApiClient::perform(Transfer& transfer, std::string_view method,
                                       std::string_view target, const std::string* body,
                                       const Headers& headers, bool streaming) {
  auto* curl = static_cast<CURL*>(curl_);
  if (curl == nullptr) return fail(ErrorCode::kUnavailable, "cannot initialize libcurl");
  for (const auto& [name, value] : headers) {
    if (!isHeaderSafe(name) || !isHeaderSafe(value)) {
      return fail(ErrorCode::kInvalidArgument, "header " + sanitize(name) + " contains a newline");
    }
  }
  curl_easy_reset(curl);
  transfer.curl = curl;
  transfer.streaming = streaming;

  std::string url = address_ + std::string(target);
  std::string methodText(method);
  char errorBuffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // Timeouts must not use SIGALRM.
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errorBuffer);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.userAgent.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, options_.connectTimeoutMs);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Transfer::write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  if (streaming) {
    // No overall limit: a stream lasts as long as the user watches. Silence means a dead peer.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, options_.streamIdleTimeoutSec);
  } else {
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options_.requestTimeoutMs);
  }

  if (methodText == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    if (methodText != "POST") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, methodText.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    const char* data = body != nullptr ? body->data() : "";
    curl_off_t size = body != nullptr ? static_cast<curl_off_t>(body->size()) : 0;
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, size);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, data);
  }

  curl_slist* headerList = nullptr;
  auto addHeader = [&headerList](const std::string& line) {
    headerList = curl_slist_append(headerList, line.c_str());
  };
  addHeader(streaming ? "Accept: application/x-ndjson, application/json"
                      : "Accept: application/json");
  // curl would otherwise send "Expect: 100-continue" for larger bodies and wait for an answer.
  addHeader("Expect:");
  if (body != nullptr) addHeader("Content-Type: application/json");
  if (!token_.empty()) addHeader("Authorization: Bearer " + token_);
  for (const auto& [name, value] : headers) addHeader(name + ": " + value);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headerList);

  CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headerList);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);

  if (code == CURLE_WRITE_ERROR && transfer.stopped) return ApiResponse{200, nullptr};
  if (transfer.tooLarge) {
    return fail(ErrorCode::kUnavailable, "the answer from " + address_ + " is too large");
  }
  if (code != CURLE_OK) {
    std::string reason = errorBuffer[0] != '\0' ? errorBuffer : curl_easy_strerror(code);
    bool broke = streaming && transfer.status >= 200 && transfer.status < 300;
    return fail(ErrorCode::kUnavailable, (broke ? "lost the connection to " : "cannot reach ") +
                                             address_ + ": " + sanitize(reason));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  ApiResponse response;
  response.status = status;
  if (streaming && response.ok()) {
    // The server may end without a final newline; the last line still counts.
    if (!trim(transfer.pending).empty()) (*transfer.onLine)(trim(transfer.pending));
    return response;
  }
  response.body = parseBody(transfer.body);
  return response;
}

}  // namespace skiff::client
