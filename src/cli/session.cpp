#include "cli/session.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "cli/watch.h"

namespace skiff::cli {

using nlohmann::json;

namespace {

constexpr int kPostRetries = 5;
constexpr std::chrono::milliseconds kPostFirstBackoff{250};
constexpr int kMaxPages = 100'000;  // Guards `--all` against a server that never ends.

}  // namespace

std::string jsonString(const json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// Builds "path?k=v&..." from the parameters that are set, encoding every value.
std::string withQuery(
    std::string path,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& params) {
  char separator = '?';
  for (const auto& [key, value] : params) {
    if (!value) continue;
    path += separator;
    path += key + "=" + urlEncode(*value);
    separator = '&';
  }
  return path;
}

std::optional<std::string> numberText(const std::optional<int64_t>& value) {
  if (!value) return std::nullopt;
  return std::to_string(*value);
}

Result<client::ApiResponse> postWithRetry(Session& s, client::Api& api, const std::string& target,
                                          const json& body, const client::Headers& headers) {
  for (int attempt = 0;; ++attempt) {
    Result<client::ApiResponse> response = api.call("POST", target, &body, headers);
    bool retryable =
        response ? response->status == 503 : response.error().code() == ErrorCode::kUnavailable;
    if (!retryable || attempt == kPostRetries) return response;
    std::string reason =
        response ? client::describeServerError(*response).message : response.error().message();
    auto delay = kPostFirstBackoff * (1 << attempt);
    s.ctx.err << "skiff: " << sanitize(reason) << "; retrying in " << delay.count() << " ms ("
              << attempt + 1 << "/" << kPostRetries << ")\n";
    s.ctx.sleep(delay);
  }
}

using EventHandler = std::function<bool(const json& event, std::string_view line)>;

// Follows /v1/events, reconnecting after drops from the last revision seen (see EventCursor).
// `onEvent` returns false to stop; then this returns 0. Otherwise returns the exit code of the
// error that ended it, after printing it. With `restartOnCompacted`, a `410` after a reconnect
// starts over with a snapshot instead of failing.
int followEvents(Session& s, const std::optional<std::string>& jobId,
                 std::optional<int64_t> fromRevision, bool restartOnCompacted,
                 const EventHandler& onEvent, StatusLine* status) {
  auto api = s.api();
  if (!api) return s.error(api.error());
  EventCursor cursor(fromRevision);
  int failures = 0;
  bool reconnected = false;
  while (true) {
    std::optional<int64_t> from = cursor.resumeFrom();
    std::string target =
        withQuery("/v1/events", {{"jobId", jobId}, {"fromRevision", numberText(from)}});
    bool stopped = false;
    bool progressed = false;
    auto response = (*api)->stream(target, [&](std::string_view line) {
      json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (event.is_discarded() || !event.is_object()) return true;  // Not ours to judge.
      cursor.observe(event);
      progressed = true;
      if (!onEvent(event, line)) {
        stopped = true;
        return false;
      }
      return true;
    });
    if (stopped) return kExitOk;
    std::string problem;
    if (!response) {
      problem = response.error().message();
    } else if (!response->ok()) {
      if (response->status == 410 && from && (restartOnCompacted || reconnected)) {
        cursor.restart();  // History we missed is gone; a snapshot brings us up to date.
        reconnected = true;
        continue;
      }
      if (response->status != 503 && response->status != 502 && response->status != 504) {
        if (status != nullptr) status->interrupt();
        return s.serverError(*response);
      }
      problem = client::describeServerError(*response).message;
    } else {
      problem = "the server closed the event stream";
    }
    if (progressed) failures = 0;
    if (status != nullptr) status->interrupt();
    if (++failures > kStreamFailureLimit) {
      return s.error(Error(ErrorCode::kUnavailable, "giving up on the event stream: " + problem));
    }
    auto delay = std::min(kStreamMaxBackoff, kStreamFirstBackoff * (1 << (failures - 1)));
    s.ctx.err << "skiff: " << sanitize(problem) << "; reconnecting in " << delay.count() << " ms\n";
    s.ctx.sleep(delay);
    reconnected = true;
  }
}

std::expected<Listing, int> fetchList(
    Session& s, const std::string& path,
    std::vector<std::pair<std::string, std::optional<std::string>>> params, bool all) {
  auto api = s.api();
  if (!api) return std::unexpected(s.error(api.error()));
  Listing listing;
  std::set<std::string> seenCursors;
  std::optional<std::string> cursor = s.inv.cursor;
  for (int page = 0; page < kMaxPages; ++page) {
    auto query = params;
    query.emplace_back("cursor", cursor);
    auto response = (*api)->call("GET", withQuery(path, query), nullptr);
    if (!response) return std::unexpected(s.error(response.error()));
    if (!response->ok()) return std::unexpected(s.serverError(*response));
    const json& body = response->body;
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      return std::unexpected(
          s.error(Error(ErrorCode::kInternal, "unexpected answer from the server for " + path)));
    }
    for (const json& item : body["items"]) listing.items.push_back(item);
    listing.lastPage = body;
    listing.nextCursor = jsonString(body, "nextCursor");
    if (!all || listing.nextCursor.empty()) break;
    if (!seenCursors.insert(listing.nextCursor).second) {
      return std::unexpected(s.error(
          Error(ErrorCode::kInternal, "the server repeated page cursor " + listing.nextCursor)));
    }
    cursor = listing.nextCursor;
  }
  return listing;
}

// Prints a listing: a table, or the server's page (all items under "items" with --all).
int printList(Session& s, const Listing& listing, std::string_view noun,
              std::string (*render)(const std::vector<json>&, int64_t)) {
  if (s.format() != OutputFormat::kTable) {
    json value = listing.lastPage;
    if (s.inv.all) value = {{"items", listing.items}};
    s.print(renderValue(value, s.format()));
    return kExitOk;
  }
  if (listing.items.empty()) {
    s.ctx.err << "No " << noun << " found.\n";
  } else {
    s.print(render(listing.items, s.ctx.nowMs()));
  }
  if (!s.inv.all && !listing.nextCursor.empty()) {
    s.ctx.err << "More " << noun << " follow: use --all, or --cursor "
              << sanitize(listing.nextCursor) << "\n";
  }
  return kExitOk;
}

std::expected<json, int> fetchObject(Session& s, std::string_view method, const std::string& target,
                                     const json* body) {
  auto api = s.api();
  if (!api) return std::unexpected(s.error(api.error()));
  auto response = (*api)->call(method, target, body);
  if (!response) return std::unexpected(s.error(response.error()));
  if (!response->ok()) return std::unexpected(s.serverError(*response));
  return response->body;
}

// Prints an object in json/yaml mode, or `summary` in table mode.
int printObject(Session& s, const json& object, const std::string& summary) {
  if (s.format() == OutputFormat::kTable) {
    s.print(sanitize(summary) + "\n");
  } else {
    s.print(renderValue(object, s.format()));
  }
  return kExitOk;
}

std::string stateOf(const json& object) {
  if (object.is_object() && object.contains("status")) return jsonString(object["status"], "state");
  return jsonString(object, "state");
}

std::string resourceText(const json& resources) {
  if (!resources.is_object()) return std::string("-");
  auto number = [&](const char* key) -> std::string {
    auto it = resources.find(key);
    if (it == resources.end() || !it->is_number()) return "0";
    double value = it->get<double>();
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", value);
    return buffer;
  };
  std::string out = "cpu " + number("cpu") + ", " + number("memoryMB") + "MB";
  if (number("gpu") != "0") out += ", gpu " + number("gpu");
  return out;
}

}  // namespace skiff::cli
