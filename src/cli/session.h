#pragma once

// A running `skiff` command and the helpers its verbs share: error reporting, a self-rewriting
// status line, POST retries, the event-stream follower, listings and single-object requests.

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/output.h"
#include "cli/util.h"
#include "client/client.h"
#include "common/error.h"

namespace skiff::cli {

// Reconnecting streams (events, logs) give up after this many consecutive failed (re)connects,
// backing off from the first delay, doubling up to the maximum.
inline constexpr int kStreamFailureLimit = 8;
inline constexpr std::chrono::milliseconds kStreamFirstBackoff{500};
inline constexpr std::chrono::milliseconds kStreamMaxBackoff{8000};

// A running command: the context, the parsed invocation, and the API client made on first use so
// that local verbs (validate, completion) never need a server or a config file.
class Session {
 public:
  Session(Context& context, const Invocation& invocation, const CommandLine& commandLine)
      : ctx(context), inv(invocation), commandLine(commandLine) {}

  Context& ctx;
  const Invocation& inv;
  const CommandLine& commandLine;

  OutputFormat format() const { return inv.format(); }

  Result<client::Api*> api() {
    if (api_) return api_.get();
    ConfigSources sources = ctx.config;
    sources.flagAddr = inv.addr;
    sources.flagToken = inv.token;
    sources.flagConfig = inv.configPath;
    auto config = resolveConfig(sources);
    if (!config) return std::unexpected(config.error());
    for (const auto& warning : config->warnings) {
      ctx.err << "skiff: warning: " << sanitize(warning) << "\n";
    }
    config_ = *config;
    api_ = ctx.makeApi(*config);
    if (!api_) return fail(ErrorCode::kInternal, "no API client");
    return api_.get();
  }

  // Prints `skiff: <message>` and returns the exit code for the error.
  int error(const Error& error) {
    std::string message = error.message();
    if (error.code() == ErrorCode::kUnavailable && config_ && config_->addressSource == "default") {
      message += " (is skiffd running? set the address with --addr or SKIFF_ADDR)";
    }
    ctx.err << "skiff: " << sanitize(message) << "\n";
    return exitCodeForError(error);
  }

  // Prints the server's message and validation details, and returns the exit code for the status.
  int serverError(const client::ApiResponse& response) {
    client::ServerError described = client::describeServerError(response);
    std::string message = described.message;
    if (response.status == 401 && config_ && config_->token.empty()) {
      message += " (no token configured: use --token, SKIFF_TOKEN or the config file)";
    }
    ctx.err << "skiff: " << message << "\n";
    // The message already names one problem (the only one, or the first): print each once.
    for (const auto& detail : described.details) {
      if (!described.message.ends_with(detail)) ctx.err << "  " << detail << "\n";
    }
    return exitCodeForStatus(response.status);
  }

  int usage(const std::string& message) {
    ctx.err << "skiff: " << sanitize(message) << "\n";
    return kExitUsage;
  }

  void print(const std::string& text) {
    ctx.out << text;
    ctx.out.flush();
  }

 private:
  std::unique_ptr<client::Api> api_;
  std::optional<ClientConfig> config_;
};

// The string at `key` of a JSON object; empty when absent or not a string.
std::string jsonString(const nlohmann::json& object, std::string_view key);

// Builds "path?k=v&..." from the parameters that are set, encoding every value.
std::string withQuery(
    std::string path,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& params);

std::optional<std::string> numberText(const std::optional<int64_t>& value);

// Shows a one-line status that rewrites itself on a terminal and prints one line per change
// otherwise (so CI logs are readable).
class StatusLine {
 public:
  StatusLine(std::ostream& out, bool live, int columns)
      : out_(out), live_(live), columns_(columns) {}

  void show(std::string line) {
    if (line == last_) return;
    last_ = line;
    if (live_) {
      // A line wider than the terminal would wrap, and '\r' only returns to the last row.
      if (columns_ > 1 && line.size() >= static_cast<size_t>(columns_)) {
        line.resize(static_cast<size_t>(columns_ - 1));
      }
      out_ << "\r" << line << "\x1b[K";
      open_ = true;
    } else {
      out_ << line << "\n";
    }
    out_.flush();
  }
  // Ends a live line so other output starts on a fresh one. On a terminal the next show()
  // repeats the status below that output; in a log the unchanged line is not repeated.
  void interrupt() {
    if (open_) out_ << "\n";
    open_ = false;
    if (live_) last_.clear();
    out_.flush();
  }
  void finish() {
    if (open_) out_ << "\n";
    open_ = false;
    out_.flush();
  }

 private:
  std::ostream& out_;
  bool live_;
  int columns_;
  bool open_ = false;
  std::string last_;
};

// POSTs with the same Idempotency-Key until the server answers with something other than 503,
// so a lost answer never creates the job twice.
Result<client::ApiResponse> postWithRetry(Session& s, client::Api& api, const std::string& target,
                                          const nlohmann::json& body,
                                          const client::Headers& headers);

using EventHandler = std::function<bool(const nlohmann::json& event, std::string_view line)>;

// Follows /v1/events, reconnecting after drops from the last revision seen (see EventCursor).
// `onEvent` returns false to stop; then this returns 0. Otherwise returns the exit code of the
// error that ended it, after printing it. With `restartOnCompacted`, a `410` after a reconnect
// starts over with a snapshot instead of failing.
int followEvents(Session& s, const std::optional<std::string>& jobId,
                 std::optional<int64_t> fromRevision, bool restartOnCompacted,
                 const EventHandler& onEvent, StatusLine* status);

// Fetches a list, following `nextCursor` when `all` is set. On failure prints the error and
// returns its exit code.
struct Listing {
  std::vector<nlohmann::json> items;
  nlohmann::json lastPage;  // The last page as the server sent it.
  std::string nextCursor;   // Of the last page fetched; empty when it was the last.
};

std::expected<Listing, int> fetchList(
    Session& s, const std::string& path,
    std::vector<std::pair<std::string, std::optional<std::string>>> params, bool all);

// Prints a listing: a table, or the server's page (all items under "items" with --all).
int printList(Session& s, const Listing& listing, std::string_view noun,
              std::string (*render)(const std::vector<nlohmann::json>&, int64_t));

// Sends one request for a single object and returns the answer's body; on failure prints the
// error and returns its exit code.
std::expected<nlohmann::json, int> fetchObject(Session& s, std::string_view method,
                                               const std::string& target,
                                               const nlohmann::json* body = nullptr);

// Prints an object in json/yaml mode, or `summary` in table mode.
int printObject(Session& s, const nlohmann::json& object, const std::string& summary);

// The state of a job, task or node, whether under "status" or at the top level.
std::string stateOf(const nlohmann::json& object);

// "cpu 2, 4096MB" for a resources object.
std::string resourceText(const nlohmann::json& resources);

}  // namespace skiff::cli
