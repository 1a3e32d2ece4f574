#include "cli/commands.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <random>
#include <set>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "api/job.h"
#include "api/states.h"
#include "cli/output.h"
#include "cli/util.h"
#include "cli/watch.h"

namespace skiff::cli {

using nlohmann::json;

namespace {

constexpr int kPostRetries = 5;
constexpr std::chrono::milliseconds kPostFirstBackoff{250};
constexpr int kStreamFailureLimit = 8;  // Consecutive failed (re)connects before giving up.
constexpr std::chrono::milliseconds kStreamFirstBackoff{500};
constexpr std::chrono::milliseconds kStreamMaxBackoff{8000};
constexpr int kMaxPages = 100'000;  // Guards `--all` against a server that never ends.

// The state names the server accepts as filters, from the shared model.
std::vector<std::string> jobStateNames() {
  std::vector<std::string> names;
  for (auto state :
       {api::JobState::kAccepted, api::JobState::kKillInitiated, api::JobState::kFinished}) {
    names.emplace_back(api::jobStateName(state));
  }
  return names;
}

std::vector<std::string> taskStateNames() {
  std::vector<std::string> names;
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    names.emplace_back(api::taskStateName(static_cast<api::TaskState>(i)));
  }
  return names;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
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

// Binds one verb's arguments to the Invocation and records completion hints.
struct Declarer {
  CLI::App& app;
  Invocation& inv;
  std::map<const CLI::Option*, ValueHint>& hints;

  CLI::Option* hinted(CLI::Option* option, ValueHint hint) {
    hints[option] = std::move(hint);
    return option;
  }
  CLI::Option* file(CLI::Option* option) { return hinted(option, {ValueHint::Kind::kFile, {}}); }
  CLI::Option* choice(CLI::Option* option, const std::vector<std::string>& choices) {
    option->check(CLI::IsMember(choices));
    return hinted(option, {ValueHint::Kind::kChoice, choices});
  }
  void id(const std::string& what) { app.add_option("ID", inv.id, what)->required(); }
  void paging(const std::string& what) {
    app.add_option("--limit", inv.limit, "Page size (1-1000, server default 100)")
        ->check(CLI::Range(1, 1000));
    app.add_option("--cursor", inv.cursor, "Start at this page cursor (from an earlier listing)");
    app.add_flag("--all", inv.all, "Follow page cursors and list all " + what);
  }
};

struct Verb {
  std::vector<std::string> path;
  std::string help;
  void (*declare)(Declarer&);
  int (*run)(Session&);
};

namespace {

// ---------------------------------------------------------------------------------------------
// Helpers shared by the verbs.

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

// Reads, parses and validates a job file, printing "FILE: problem" lines to stderr on failure.
std::optional<api::JobDescriptor> loadJobFile(Session& s, const std::string& file,
                                              json* report = nullptr) {
  std::string name = file == "-" ? "<stdin>" : file;
  std::vector<std::string> problems;
  json errors = json::array();
  std::optional<api::JobDescriptor> descriptor;
  Result<std::string> text =
      file == "-" ? Result<std::string>(readStream(s.ctx.in)) : readFile(file);
  if (!text) {
    problems.push_back(text.error().message());
    errors.push_back({{"field", ""}, {"message", text.error().message()}});
  } else if (auto document = api::parseJobFileText(*text); !document) {
    problems.push_back(document.error().message());
    errors.push_back({{"field", ""}, {"message", document.error().message()}});
  } else if (auto validated = api::validateJobDescriptor(*document); !validated) {
    for (const auto& fieldError : validated.error()) {
      problems.push_back(fieldError.toString());
      errors.push_back({{"field", fieldError.field}, {"message", fieldError.message}});
    }
  } else {
    descriptor = std::move(*validated);
  }
  for (const auto& problem : problems)
    s.ctx.err << sanitize(name) << ": " << sanitize(problem) << "\n";
  if (report != nullptr) {
    *report = {{"file", name}, {"valid", descriptor.has_value()}, {"errors", std::move(errors)}};
  }
  return descriptor;
}

// POSTs with the same Idempotency-Key until the server answers with something other than 503,
// so a lost answer never creates the job twice.
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

// Follows a job until it finishes; returns 0 when it succeeded, 1 when it failed.
int waitForJob(Session& s, const std::string& jobId) {
  bool table = s.format() == OutputFormat::kTable;
  // In json/yaml mode stdout carries the objects, so progress goes to stderr.
  StatusLine status(table ? s.ctx.out : s.ctx.err, table ? s.ctx.outIsTty : s.ctx.errIsTty,
                    s.ctx.terminalColumns);
  JobWatch watch(jobId);
  int code = followEvents(
      s, jobId, std::nullopt, /*restartOnCompacted=*/true,
      [&](const json& event, std::string_view) {
        watch.apply(event);
        if (watch.missing()) return false;
        // Mid-snapshot counts are partial; showing them would only flicker.
        if (!watch.job().is_null() && !watch.inSnapshot() && !watch.settling()) {
          status.show(watch.statusLine());
        }
        return !watch.done();
      },
      &status);
  status.finish();
  if (code != kExitOk) return code;
  if (watch.missing()) {
    return s.error(Error(ErrorCode::kNotFound, "job " + jobId + " not found"));
  }
  JobWatch::Outcome outcome = watch.outcome();
  if (!table) {
    // Events carry objects in their stored form; print the API's form like `job get` does.
    json job = watch.job();
    if (auto api = s.api()) {
      auto response = (*api)->call("GET", "/v1/jobs/" + urlEncode(jobId), nullptr);
      if (response && response->ok()) job = response->body;
    }
    s.print(renderValue(job, s.format()));
  }
  if (outcome.succeeded) return kExitOk;
  s.ctx.err << "skiff: job " << sanitize(jobId) << " failed\n";
  for (const auto& failure : outcome.failures) s.ctx.err << "  " << failure << "\n";
  return kExitFailed;
}

// Fetches a list, following `nextCursor` when `all` is set. On failure prints the error and
// returns its exit code.
struct Listing {
  std::vector<json> items;
  json lastPage;           // The last page as the server sent it.
  std::string nextCursor;  // Of the last page fetched; empty when it was the last.
};

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

// Sends one request for a single object; prints it (table: `tableLine`) and returns the exit
// code.
std::expected<json, int> fetchObject(Session& s, std::string_view method, const std::string& target,
                                     const json* body = nullptr) {
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

// ---------------------------------------------------------------------------------------------
// The verbs.

int runJobValidate(Session& s) {
  bool allValid = true;
  json reports = json::array();
  for (const auto& file : s.inv.files) {
    json report;
    bool valid = loadJobFile(s, file, &report).has_value();
    allValid = allValid && valid;
    if (s.format() == OutputFormat::kTable) {
      if (valid) s.print(sanitize(report["file"].get<std::string>()) + ": valid\n");
    } else {
      reports.push_back(std::move(report));
    }
  }
  if (s.format() != OutputFormat::kTable) {
    s.print(renderValue(reports.size() == 1 ? reports[0] : reports, s.format()));
  }
  return allValid ? kExitOk : kExitFailed;
}

bool isValidIdempotencyKey(const std::string& key) {
  if (key.empty() || key.size() > 128) return false;
  return std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

int runJobRun(Session& s) {
  std::optional<api::JobDescriptor> descriptor = loadJobFile(s, s.inv.files.front());
  if (!descriptor) return kExitFailed;
  std::string key = s.inv.idempotencyKey ? *s.inv.idempotencyKey : s.ctx.newIdempotencyKey();
  if (!isValidIdempotencyKey(key)) {
    return s.usage("--idempotency-key must be 1 to 128 printable ASCII characters");
  }
  auto api = s.api();
  if (!api) return s.error(api.error());
  json body = api::toJson(*descriptor);
  auto response = postWithRetry(s, **api, "/v1/jobs", body, {{"Idempotency-Key", key}});
  if (!response) return s.error(response.error());
  if (!response->ok()) return s.serverError(*response);
  std::string id = jsonString(response->body, "id");
  if (id.empty()) {
    return s.error(Error(ErrorCode::kInternal, "the server answered without a job id"));
  }
  if (s.format() == OutputFormat::kTable) {
    s.print(sanitize(id) + "\n");
  } else if (!s.inv.wait) {
    s.print(renderValue(response->body, s.format()));
  }
  if (!s.inv.wait) return kExitOk;
  return waitForJob(s, id);
}

int runJobWait(Session& s) {
  return waitForJob(s, s.inv.id);
}

int runJobList(Session& s) {
  auto listing = fetchList(s, "/v1/jobs",
                           {{"state", s.inv.state},
                            {"type", s.inv.type},
                            {"applicationName", s.inv.app},
                            {"limit", numberText(s.inv.limit)}},
                           s.inv.all);
  if (!listing) return listing.error();
  return printList(s, *listing, "jobs", renderJobs);
}

int runJobGet(Session& s) {
  auto job = fetchObject(s, "GET", "/v1/jobs/" + urlEncode(s.inv.id));
  if (!job) return job.error();
  if (s.format() == OutputFormat::kTable) {
    std::string out = renderJobs({*job}, s.ctx.nowMs());
    // Why it finished: for a failed batch job, the last failed task's reason and message.
    if (auto status = job->find("status"); status != job->end() && status->is_object()) {
      std::string message = jsonString(*status, "message");
      if (!message.empty()) out += "\n" + sanitize(message) + "\n";
    }
    s.print(out);
    return kExitOk;
  }
  return printObject(s, *job, "");
}

int runJobKill(Session& s) {
  auto job = fetchObject(s, "POST", "/v1/jobs/" + urlEncode(s.inv.id) + "/kill");
  if (!job) return job.error();
  return printObject(s, *job, s.inv.id + ": " + stateOf(*job));
}

int runJobScale(Session& s) {
  json body = json::object();
  if (s.inv.min) body["min"] = *s.inv.min;
  if (s.inv.desired) body["desired"] = *s.inv.desired;
  if (s.inv.max) body["max"] = *s.inv.max;
  if (body.empty()) return s.usage("job scale needs at least one of --min, --desired, --max");
  auto job = fetchObject(s, "PUT", "/v1/jobs/" + urlEncode(s.inv.id) + "/capacity", &body);
  if (!job) return job.error();
  std::string summary = s.inv.id + ": capacity";
  if (job->contains("capacity") && (*job)["capacity"].is_object()) {
    for (const char* key : {"min", "desired", "max"}) {
      const json& capacity = (*job)["capacity"];
      if (capacity.contains(key)) summary += std::string(" ") + key + "=" + capacity[key].dump();
    }
  }
  return printObject(s, *job, summary);
}

int setEnabled(Session& s, bool enabled) {
  auto job = fetchObject(s, "POST",
                         "/v1/jobs/" + urlEncode(s.inv.id) + (enabled ? "/enable" : "/disable"));
  if (!job) return job.error();
  return printObject(s, *job, s.inv.id + (enabled ? ": enabled" : ": disabled"));
}

int runJobEnable(Session& s) {
  return setEnabled(s, true);
}
int runJobDisable(Session& s) {
  return setEnabled(s, false);
}

// One row of `job endpoints`: TASK IP PORTS NODE.
std::vector<std::string> endpointRow(const json& endpoint) {
  std::string ports;
  for (const json& port : endpoint.value("ports", json::array())) {
    if (!ports.empty()) ports += ",";
    ports += port.dump();
  }
  return {endpoint.value("taskId", ""), endpoint.value("ip", ""), ports,
          endpoint.value("nodeId", "")};
}

int runJobEndpoints(Session& s) {
  std::string target = "/v1/jobs/" + urlEncode(s.inv.id) + "/endpoints";
  if (!s.inv.watch) {
    auto listing = fetchObject(s, "GET", target);
    if (!listing) return listing.error();
    if (s.format() != OutputFormat::kTable) return printObject(s, *listing, "");
    Table table({"TASK", "IP", "PORTS", "NODE"});
    for (const json& endpoint : listing->value("items", json::array())) {
      table.addRow(endpointRow(endpoint));
    }
    s.print(table.render());
    return kExitOk;
  }
  auto api = s.api();
  if (!api) return s.error(api.error());
  // Table mode prints the snapshot's endpoints, then one line per change: "+ TASK IP PORTS NODE"
  // or "- TASK"; json and yaml print the stream's objects as they come.
  auto response = (*api)->stream(target + "?watch=true", [&](std::string_view line) {
    json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object()) return true;
    std::string type = event.value("type", "");
    if (type == "keepalive") return true;
    if (s.format() != OutputFormat::kTable) {
      s.print(s.format() == OutputFormat::kJson ? event.dump() + "\n"
                                                : renderValue(event, s.format()) + "---\n");
      return true;
    }
    auto joined = [](const std::vector<std::string>& cells) {
      std::string text;
      for (const auto& cell : cells) text += (text.empty() ? "" : " ") + sanitize(cell);
      return text;
    };
    if (type == "snapshot") {
      for (const json& endpoint : event.value("items", json::array())) {
        s.print("  " + joined(endpointRow(endpoint)) + "\n");
      }
    } else if (type == "added") {
      s.print("+ " + joined(endpointRow(event.value("endpoint", json::object()))) + "\n");
    } else if (type == "removed") {
      s.print("- " + sanitize(event.value("taskId", "")) + "\n");
    }
    return true;
  });
  if (!response) return s.error(response.error());
  if (!response->ok()) return s.serverError(*response);
  return kExitOk;
}

// `job update JOB FILE`: the container of a job file (validated locally first) becomes the
// service's next revision.
int runJobUpdate(Session& s) {
  std::optional<api::JobDescriptor> descriptor = loadJobFile(s, s.inv.files.front());
  if (!descriptor) return kExitFailed;
  json body = api::toJson(*descriptor)["container"];
  auto job = fetchObject(s, "PUT", "/v1/jobs/" + urlEncode(s.inv.id) + "/container", &body);
  if (!job) return job.error();
  std::string summary = s.inv.id + ": revision " + job->value("specRevision", json(1)).dump();
  if (job->contains("rollout")) summary += ", rolling out";
  return printObject(s, *job, summary);
}

int runJobHistory(Session& s) {
  auto history = fetchObject(s, "GET", "/v1/jobs/" + urlEncode(s.inv.id) + "/history");
  if (!history) return history.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *history, "");
  Table table({"REVISION", "OUTCOME", "TASKS", "IMAGE", "PINNED", "AGE", "MESSAGE"});
  for (const json& item : history->value("items", json::array())) {
    table.addRow({item.value("revision", json(0)).dump(), item.value("outcome", ""),
                  item.value("tasks", json(0)).dump(), item.value("image", ""),
                  item.value("pinnedImage", ""),
                  formatAge(s.ctx.nowMs() - item.value("createdAtMs", int64_t{0})),
                  item.value("message", "")});
  }
  std::string text = table.render();
  if (history->contains("rollout")) {
    text += "rollout: " + (*history)["rollout"].value("message", "") + "\n";
  }
  s.print(text);
  return kExitOk;
}

int runJobRollback(Session& s) {
  json body = json::object();
  if (s.inv.revision) body["revision"] = *s.inv.revision;
  auto job = fetchObject(s, "POST", "/v1/jobs/" + urlEncode(s.inv.id) + "/rollback", &body);
  if (!job) return job.error();
  return printObject(
      s, *job,
      s.inv.id + ": rolling back to revision " + job->value("specRevision", json(1)).dump());
}

int runJobPromote(Session& s) {
  auto job = fetchObject(s, "POST", "/v1/jobs/" + urlEncode(s.inv.id) + "/promote");
  if (!job) return job.error();
  return printObject(s, *job, s.inv.id + ": promoted");
}

int runTaskList(Session& s) {
  auto listing =
      fetchList(s, "/v1/tasks",
                {{"jobId", s.inv.job}, {"state", s.inv.state}, {"limit", numberText(s.inv.limit)}},
                s.inv.all);
  if (!listing) return listing.error();
  return printList(s, *listing, "tasks", renderTasks);
}

int runTaskGet(Session& s) {
  auto task = fetchObject(s, "GET", "/v1/tasks/" + urlEncode(s.inv.id));
  if (!task) return task.error();
  if (s.format() == OutputFormat::kTable) {
    s.print(renderTasks({*task}, s.ctx.nowMs()));
    return kExitOk;
  }
  return printObject(s, *task, "");
}

int runTaskKill(Session& s) {
  auto task = fetchObject(
      s, "POST",
      "/v1/tasks/" + urlEncode(s.inv.id) + "/kill?shrink=" + (s.inv.shrink ? "true" : "false"));
  if (!task) return task.error();
  return printObject(s, *task, s.inv.id + ": " + stateOf(*task));
}

int runNodeList(Session& s) {
  auto listing = fetchList(s, "/v1/nodes", {}, /*all=*/false);
  if (!listing) return listing.error();
  return printList(s, *listing, "nodes", renderNodes);
}

int runNodeGet(Session& s) {
  auto node = fetchObject(s, "GET", "/v1/nodes/" + urlEncode(s.inv.id));
  if (!node) return node.error();
  if (s.format() == OutputFormat::kTable) {
    s.print(renderNodes({*node}, s.ctx.nowMs()));
    return kExitOk;
  }
  return printObject(s, *node, "");
}

// "90s", "30m", "1h", "500ms" or plain seconds, as milliseconds; nullopt when malformed.
std::optional<int64_t> parseDurationMs(std::string_view text) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || value < 0 || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  static const std::map<std::string_view, int64_t> kUnits = {
      {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end() || value > std::numeric_limits<int64_t>::max() / it->second) {
    return std::nullopt;
  }
  return value * it->second;
}

int runNodeDrain(Session& s) {
  json body = json::object();
  if (s.inv.deadline) {
    auto deadlineMs = parseDurationMs(*s.inv.deadline);
    if (!deadlineMs) {
      return s.error(Error(ErrorCode::kInvalidArgument,
                           "--deadline: must be a duration such as 90s, 30m or 1h"));
    }
    body["deadlineMs"] = *deadlineMs;
  }
  auto node = fetchObject(s, "POST", "/v1/nodes/" + urlEncode(s.inv.id) + "/drain", &body);
  if (!node) return node.error();
  return printObject(s, *node, s.inv.id + ": " + stateOf(*node));
}

// "cpu 2, 4096MB" for a resources object.
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

int runTaskWhy(Session& s) {
  auto why = fetchObject(s, "GET", "/v1/tasks/" + urlEncode(s.inv.id) + "/why");
  if (!why) return why.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *why, "");
  std::string out = sanitize(s.inv.id) + " (" + sanitize(jsonString(*why, "state")) +
                    "): " + sanitize(jsonString(*why, "summary")) + "\n";
  // How this attempt ended, or how the one it retries did: the registry's answer for a missing
  // image, the exit code of a failed command.
  if (auto api = s.api()) {
    auto task = (*api)->call("GET", "/v1/tasks/" + urlEncode(s.inv.id), nullptr);
    if (task && task->ok()) {
      std::string state = jsonString(task->body, "state");
      std::string previous = jsonString(task->body, "resubmitOf");
      if (state == "Finished" && !jsonString(task->body, "message").empty()) {
        out += "  " + sanitize(jsonString(task->body, "reason")) + ": " +
               sanitize(jsonString(task->body, "message")) + "\n";
      } else if (state != "Finished" && !previous.empty()) {
        auto before = (*api)->call("GET", "/v1/tasks/" + urlEncode(previous), nullptr);
        if (before && before->ok()) {
          std::string message = jsonString(before->body, "message");
          out += "  previous attempt " + sanitize(previous) + " finished " +
                 sanitize(jsonString(before->body, "reason")) +
                 (message.empty() ? std::string() : ": " + sanitize(message)) + "\n";
        }
      }
    }
  }
  if (auto groups = why->find("groups"); groups != why->end() && groups->is_array()) {
    Table table({"NODE GROUP", "NODES", "FIT", "RULED OUT BY"});
    for (const json& group : *groups) {
      std::string reasons;
      if (auto list = group.find("reasons"); list != group.end() && list->is_object()) {
        for (const auto& [reason, count] : list->items()) {
          if (!reasons.empty()) reasons += ", ";
          reasons += sanitize(reason) + " (" + count.dump() + ")";
        }
      }
      table.addRow({sanitize(jsonString(group, "group")), group.value("nodes", json(0)).dump(),
                    group.value("feasible", json(0)).dump(),
                    reasons.empty() ? std::string("-") : reasons});
    }
    out += table.render();
  }
  s.print(out);
  return kExitOk;
}

int runNodeLabel(Session& s) {
  json set = json::object();
  json remove = json::array();
  for (const std::string& label : s.inv.labels) {
    if (label.size() > 1 && label.back() == '-' && label.find('=') == std::string::npos) {
      remove.push_back(label.substr(0, label.size() - 1));
    } else if (auto equals = label.find('='); equals != std::string::npos && equals > 0) {
      set[label.substr(0, equals)] = label.substr(equals + 1);
    } else {
      return s.usage("labels are KEY=VALUE to set or KEY- to remove (got '" + label + "')");
    }
  }
  json body = {{"set", set}, {"remove", remove}};
  auto node = fetchObject(s, "POST", "/v1/nodes/" + urlEncode(s.inv.id) + "/labels", &body);
  if (!node) return node.error();
  std::string labels;
  if (auto list = node->find("labels"); list != node->end() && list->is_object()) {
    for (const auto& [key, value] : list->items()) {
      labels += (labels.empty() ? "" : ",") + key + "=" +
                (value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  return printObject(s, *node,
                     s.inv.id + ": labels " + (labels.empty() ? std::string("-") : labels));
}

// The verbs of a named resource kept under `collection` ("/v1/capacity-groups"): capacity
// groups and security groups share them and differ only in their table.
using Renderer = std::string (*)(const std::vector<json>&);

int listNamed(Session& s, const std::string& collection, Renderer render) {
  auto listing = fetchObject(s, "GET", collection);
  if (!listing) return listing.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *listing, "");
  std::vector<json> items;
  if (auto list = listing->find("items"); list != listing->end() && list->is_array()) {
    items.assign(list->begin(), list->end());
  }
  s.print(render(items));
  return kExitOk;
}

int getNamed(Session& s, const std::string& collection, Renderer render) {
  auto item = fetchObject(s, "GET", collection + "/" + urlEncode(s.inv.id));
  if (!item) return item.error();
  if (s.format() != OutputFormat::kTable) return printObject(s, *item, "");
  s.print(render({*item}));
  return kExitOk;
}

// Creates or replaces the resource named in a YAML/JSON file.
int applyNamed(Session& s, const std::string& collection) {
  const std::string& file = s.inv.files.front();
  Result<std::string> text =
      file == "-" ? Result<std::string>(readStream(s.ctx.in)) : readFile(file);
  if (!text) return s.error(text.error());
  auto document = api::parseJobFileText(*text);
  if (!document) return s.error(document.error());
  std::string name = document->is_object() ? jsonString(*document, "name") : "";
  if (name.empty()) return s.usage("the file needs a name");
  auto saved = fetchObject(s, "PUT", collection + "/" + urlEncode(name), &*document);
  if (!saved) return saved.error();
  return printObject(s, *saved, name + ": saved");
}

int deleteNamed(Session& s, const std::string& collection) {
  auto deleted = fetchObject(s, "DELETE", collection + "/" + urlEncode(s.inv.id));
  if (!deleted) return deleted.error();
  return printObject(s, *deleted, s.inv.id + ": deleted");
}

std::string renderCapacity(const std::vector<json>& groups) {
  Table table({"GROUP", "TIER", "RESERVED", "USED", "BORROWED", "TASKS"});
  for (const json& group : groups) {
    for (const char* tier : {"critical", "flex"}) {
      auto usage = group.find(tier);
      if (usage == group.end() || !usage->is_object()) continue;
      int64_t count = usage->value("count", int64_t{0});
      int64_t tasks = usage->value("tasks", int64_t{0});
      if (count == 0 && tasks == 0) continue;
      std::string reserved =
          usage->contains("count")
              ? std::to_string(count) + " x (" + resourceText(usage->value("shape", json())) + ")"
              : std::string("-");
      table.addRow({sanitize(jsonString(group, "name")), tier, reserved,
                    resourceText(usage->value("used", json())),
                    resourceText(usage->value("borrowed", json())), std::to_string(tasks)});
    }
  }
  return table.render();
}

constexpr const char* kCapacityGroups = "/v1/capacity-groups";
int runCapacityList(Session& s) {
  return listNamed(s, kCapacityGroups, renderCapacity);
}
int runCapacityGet(Session& s) {
  return getNamed(s, kCapacityGroups, renderCapacity);
}
// The file: {name, applicationName, critical: {shape, count}, flex: {shape, count}}.
int runCapacityApply(Session& s) {
  return applyNamed(s, kCapacityGroups);
}
int runCapacityDelete(Session& s) {
  return deleteNamed(s, kCapacityGroups);
}

// Security groups: one row per group, its rules as "proto ports<-source" items.
std::string renderSecurityGroups(const std::vector<json>& groups) {
  Table table({"NAME", "RULES", "DESCRIPTION"});
  for (const json& group : groups) {
    std::string rules;
    if (auto list = group.find("ingress"); list != group.end() && list->is_array()) {
      for (const json& rule : *list) {
        if (!rules.empty()) rules += ", ";
        rules += jsonString(rule, "protocol");
        if (rule.contains("fromPort")) {
          rules += " " + rule["fromPort"].dump();
          if (rule.value("toPort", 0) != rule.value("fromPort", 0)) {
            rules += "-" + rule["toPort"].dump();
          }
        }
        rules +=
            " from " + (rule.contains("sourceCidr") ? jsonString(rule, "sourceCidr")
                                                    : "group " + jsonString(rule, "sourceGroup"));
      }
    }
    table.addRow({sanitize(jsonString(group, "name")), sanitize(rules.empty() ? "-" : rules),
                  sanitize(jsonString(group, "description"))});
  }
  return table.render();
}

constexpr const char* kSecurityGroups = "/v1/security-groups";
int runSecurityGroupList(Session& s) {
  return listNamed(s, kSecurityGroups, renderSecurityGroups);
}
int runSecurityGroupGet(Session& s) {
  return getNamed(s, kSecurityGroups, renderSecurityGroups);
}
// The file: see docs/networking.md.
int runSecurityGroupApply(Session& s) {
  return applyNamed(s, kSecurityGroups);
}
int runSecurityGroupDelete(Session& s) {
  return deleteNamed(s, kSecurityGroups);
}

// Prints a task's log as it arrives. With --follow, a stream that breaks is resumed (from the
// current end of the log, so nothing is repeated) until the task has finished.
int runLogs(Session& s) {
  auto api = s.api();
  if (!api) return s.error(api.error());
  std::string path = "/v1/tasks/" + urlEncode(s.inv.id) + "/logs";
  std::optional<int64_t> tail = s.inv.tail;
  int failures = 0;
  while (true) {
    std::string target =
        withQuery(path, {{"stream", std::string(s.inv.stderrStream ? "stderr" : "stdout")},
                         {"tail", numberText(tail)},
                         {"follow", std::string(s.inv.follow ? "true" : "false")}});
    bool progressed = false;
    auto response = (*api)->stream(target, [&](std::string_view line) {
      s.ctx.out << line << "\n";
      s.ctx.out.flush();
      progressed = true;
      return true;
    });
    if (response && response->ok()) return kExitOk;
    if (response) return s.serverError(*response);
    if (!s.inv.follow) return s.error(response.error());
    if (progressed) failures = 0;
    if (++failures > kStreamFailureLimit) return s.error(response.error());
    tail = 0;  // Resume at the end of what was already shown.
    auto delay = std::min(kStreamMaxBackoff, kStreamFirstBackoff * (1 << (failures - 1)));
    s.ctx.err << "skiff: " << sanitize(response.error().message()) << "; reconnecting in "
              << delay.count() << " ms\n";
    s.ctx.sleep(delay);
  }
}

int runEvents(Session& s) {
  OutputFormat format = s.format();
  return followEvents(
      s, s.inv.job, s.inv.fromRevision, /*restartOnCompacted=*/!s.inv.fromRevision,
      [&](const json& event, std::string_view line) {
        if (jsonString(event, "type") == "keepalive") return true;
        if (format == OutputFormat::kJson) {
          s.ctx.out << line << "\n";
        } else if (format == OutputFormat::kYaml) {
          s.ctx.out << "---\n" << renderValue(event, format);
        } else {
          s.ctx.out << describeEvent(event) << "\n";
        }
        s.ctx.out.flush();
        return true;
      },
      nullptr);
}

int runCompletion(Session& s) {
  s.print(s.inv.shell == "zsh" ? zshCompletion(s.commandLine) : bashCompletion(s.commandLine));
  return kExitOk;
}

int runVersion(Session& s) {
  json server = nullptr;
  std::string problem;
  auto api = s.api();
  if (!api) {
    problem = api.error().message();
  } else if (auto response = (*api)->call("GET", "/version", nullptr); !response) {
    problem = response.error().message();
  } else if (!response->ok()) {
    problem = client::describeServerError(*response).message;
  } else {
    server = response->body;
  }
  if (s.format() != OutputFormat::kTable) {
    s.print(
        renderValue({{"client", {{"version", SKIFF_VERSION}}}, {"server", server}}, s.format()));
  } else {
    std::string text = "client: skiff " SKIFF_VERSION "\n";
    if (server.is_object()) {
      text += "server: skiffd " + sanitize(jsonString(server, "version"));
      if (std::string apiVersion = jsonString(server, "api"); !apiVersion.empty()) {
        text += " (api " + sanitize(apiVersion) + ")";
      }
      text += "\n";
    }
    s.print(text);
  }
  // Not an error: the client version is still useful without a server.
  if (!problem.empty()) s.ctx.err << "skiff: server version unknown: " << sanitize(problem) << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// The command table.

const std::vector<std::pair<std::string, std::string>>& groups() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"job", "Submit, inspect and control jobs"},
      {"task", "Inspect and kill tasks"},
      {"node", "Inspect, label and drain nodes"},
      {"capacity", "Capacity groups: reservations, usage and borrowed capacity"},
      {"sg", "Security groups: who may connect to a job's containers"},
  };
  return table;
}

const std::vector<Verb>& verbs() {
  static const std::vector<Verb> table = {
      {{"job", "run"},
       "Validate a job file and submit it; prints the job id",
       [](Declarer& d) {
         d.file(d.app.add_option("FILE", d.inv.files, "Job file, YAML or JSON ('-' reads stdin)")
                    ->required()
                    ->expected(1));
         d.app.add_flag("--wait", d.inv.wait,
                        "Follow the job until it finishes; exit 1 unless every task ended normal");
         d.app.add_option("--idempotency-key", d.inv.idempotencyKey,
                          "Key that makes resubmitting safe (default: a random one)");
       },
       runJobRun},
      {{"job", "validate"},
       "Check job files locally, without a server",
       [](Declarer& d) {
         d.file(d.app.add_option("FILE", d.inv.files, "Job files, YAML or JSON ('-' reads stdin)")
                    ->required());
       },
       runJobValidate},
      {{"job", "ls"},
       "List jobs",
       [](Declarer& d) {
         d.choice(d.app.add_option("--state", d.inv.state, "Only jobs in this state"),
                  jobStateNames());
         d.choice(d.app.add_option("--type", d.inv.type, "Only batch or service jobs"),
                  {"batch", "service"});
         d.app.add_option("--app", d.inv.app, "Only jobs of this applicationName");
         d.paging("jobs");
       },
       runJobList},
      {{"job", "get"}, "Show a job", [](Declarer& d) { d.id("Job id"); }, runJobGet},
      {{"job", "wait"},
       "Follow a job until it finishes; exit 1 unless every task ended normal",
       [](Declarer& d) { d.id("Job id"); },
       runJobWait},
      {{"job", "kill"},
       "Kill a job and all its tasks",
       [](Declarer& d) { d.id("Job id"); },
       runJobKill},
      {{"job", "scale"},
       "Change a service job's capacity",
       [](Declarer& d) {
         d.id("Job id");
         d.app.add_option("--min", d.inv.min, "Minimum number of tasks")
             ->check(CLI::NonNegativeNumber);
         d.app.add_option("--desired", d.inv.desired, "Desired number of tasks")
             ->check(CLI::NonNegativeNumber);
         d.app.add_option("--max", d.inv.max, "Maximum number of tasks")
             ->check(CLI::NonNegativeNumber);
       },
       runJobScale},
      {{"job", "enable"},
       "Let a service job replace and add tasks again",
       [](Declarer& d) { d.id("Job id"); },
       runJobEnable},
      {{"job", "disable"},
       "Stop a service job from replacing or adding tasks",
       [](Declarer& d) { d.id("Job id"); },
       runJobDisable},
      {{"job", "endpoints"},
       "List a service's ready tasks (address and ports); --watch streams changes",
       [](Declarer& d) {
         d.id("Job id");
         d.app.add_flag("--watch", d.inv.watch, "Keep printing additions (+) and removals (-)");
       },
       runJobEndpoints},
      {{"job", "update"},
       "Roll a service to the container of a job file (a new revision)",
       [](Declarer& d) {
         d.id("Job id");
         d.file(d.app.add_option("FILE", d.inv.files, "Job file whose container to roll out")
                    ->required()
                    ->expected(1));
       },
       runJobUpdate},
      {{"job", "history"},
       "List a service's revisions: images, pinned digests and outcomes",
       [](Declarer& d) { d.id("Job id"); },
       runJobHistory},
      {{"job", "rollback"},
       "Roll a service back to revision REV (default: the previous one)",
       [](Declarer& d) {
         d.id("Job id");
         d.app.add_option("REV", d.inv.revision, "Revision number")->check(CLI::PositiveNumber);
       },
       runJobRollback},
      {{"job", "promote"},
       "Let a rollout paused after its canary tasks go on",
       [](Declarer& d) { d.id("Job id"); },
       runJobPromote},
      {{"task", "ls"},
       "List tasks",
       [](Declarer& d) {
         d.app.add_option("--job", d.inv.job, "Only tasks of this job");
         d.choice(d.app.add_option("--state", d.inv.state, "Only tasks in this state"),
                  taskStateNames());
         d.paging("tasks");
       },
       runTaskList},
      {{"task", "get"}, "Show a task", [](Declarer& d) { d.id("Task id"); }, runTaskGet},
      {{"task", "kill"},
       "Kill a task",
       [](Declarer& d) {
         d.id("Task id");
         d.app.add_flag("--shrink", d.inv.shrink,
                        "Also lower the service job's desired capacity so it is not replaced");
       },
       runTaskKill},
      {{"node", "ls"}, "List nodes", [](Declarer&) {}, runNodeList},
      {{"node", "get"}, "Show a node", [](Declarer& d) { d.id("Node id"); }, runNodeGet},
      {{"node", "label"},
       "Set (KEY=VALUE) or remove (KEY-) operator labels used for placement",
       [](Declarer& d) {
         d.id("Node id");
         d.app.add_option("LABELS", d.inv.labels, "KEY=VALUE or KEY-")->required();
       },
       runNodeLabel},
      {{"task", "why"},
       "Explain why a task has no node: what rules out each node group",
       [](Declarer& d) { d.id("Task id"); },
       runTaskWhy},
      {{"capacity", "ls"},
       "Show every capacity group's reservation, usage and borrowed capacity",
       [](Declarer&) {},
       runCapacityList},
      {{"capacity", "get"},
       "Show one capacity group",
       [](Declarer& d) { d.id("Capacity group name"); },
       runCapacityGet},
      {{"capacity", "apply"},
       "Create or replace a capacity group from a YAML or JSON file",
       [](Declarer& d) {
         d.file(d.app.add_option("FILE", d.inv.files, "Capacity group file ('-' reads stdin)")
                    ->required()
                    ->expected(1));
       },
       runCapacityApply},
      {{"capacity", "delete"},
       "Delete a capacity group",
       [](Declarer& d) { d.id("Capacity group name"); },
       runCapacityDelete},
      {{"sg", "ls"},
       "Show every security group and its ingress rules",
       [](Declarer&) {},
       runSecurityGroupList},
      {{"sg", "get"},
       "Show one security group",
       [](Declarer& d) { d.id("Security group name"); },
       runSecurityGroupGet},
      {{"sg", "apply"},
       "Create or replace a security group from a YAML or JSON file",
       [](Declarer& d) {
         d.file(d.app.add_option("FILE", d.inv.files, "Security group file ('-' reads stdin)")
                    ->required()
                    ->expected(1));
       },
       runSecurityGroupApply},
      {{"sg", "delete"},
       "Delete a security group",
       [](Declarer& d) { d.id("Security group name"); },
       runSecurityGroupDelete},
      {{"node", "drain"},
       "Stop placing new tasks on a node and move its tasks off (services within their "
       "disruption budgets, batch tasks at the deadline)",
       [](Declarer& d) {
         d.id("Node id");
         d.app.add_option("--deadline", d.inv.deadline,
                          "How long batch tasks may still run there (90s, 30m, 1h; default 1h)");
       },
       runNodeDrain},
      {{"events"},
       "Stream cluster events (Ctrl-C to stop)",
       [](Declarer& d) {
         d.app.add_option("--job", d.inv.job, "Only events of this job");
         d.app
             .add_option("--from-revision", d.inv.fromRevision,
                         "Replay changes from this revision instead of starting with a snapshot")
             ->check(CLI::NonNegativeNumber);
       },
       runEvents},
      {{"logs"},
       "Print a task's stdout (or stderr); -f follows it until the task ends",
       [](Declarer& d) {
         d.id("Task id");
         d.app.add_flag("-f,--follow", d.inv.follow,
                        "Keep printing new output until the task ends");
         d.app.add_option("--tail", d.inv.tail, "Only the last N lines (default: all)")
             ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
         d.app.add_flag("--stderr", d.inv.stderrStream, "The task's stderr instead of its stdout");
       },
       runLogs},
      {{"completion"},
       "Print a shell completion script",
       [](Declarer& d) {
         d.choice(d.app.add_option("SHELL", d.inv.shell, "bash or zsh")->required(),
                  {"bash", "zsh"});
       },
       runCompletion},
      {{"version"}, "Print the client and server versions", [](Declarer&) {}, runVersion},
  };
  return table;
}

std::string commandName(const CLI::App* app) {
  std::vector<std::string> names;
  for (; app != nullptr; app = app->get_parent()) names.push_back(app->get_name());
  std::string out;
  for (auto it = names.rbegin(); it != names.rend(); ++it) out += (out.empty() ? "" : " ") + *it;
  return out;
}

// The most specific command the parser got to, for pointing at the right --help.
const CLI::App* deepestParsed(const CLI::App* app) {
  for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->parsed()) return deepestParsed(sub);
  }
  return app;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

int exitCodeForStatus(long status) {
  if (status >= 200 && status < 300) return kExitOk;
  switch (status) {
    case 401:
    case 403:
      return kExitAuth;
    case 404:
      return kExitNotFound;
    case 409:
    case 412:
      return kExitConflict;
    default:
      return kExitServer;
  }
}

int exitCodeForError(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kUnavailable:
      return kExitUnreachable;
    case ErrorCode::kInvalidArgument:
      return kExitUsage;
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return kExitAuth;
    case ErrorCode::kNotFound:
      return kExitNotFound;
    case ErrorCode::kConflict:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kAlreadyExists:
      return kExitConflict;
    default:
      return kExitServer;
  }
}

OutputFormat Invocation::format() const {
  return parseOutputFormat(output).value_or(OutputFormat::kTable);
}

std::string randomIdempotencyKey() {
  std::random_device device;
  std::string key = "skiff-";
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {
    uint32_t word = device();
    for (int j = 0; j < 8; ++j) key.push_back(kHex[(word >> (4 * j)) & 0xF]);
  }
  return key;
}

CommandLine::CommandLine() {
  build();
}
CommandLine::~CommandLine() = default;

ValueHint CommandLine::hint(const CLI::Option* option) const {
  auto it = hints_.find(option);
  return it == hints_.end() ? ValueHint{} : it->second;
}

void CommandLine::build() {
  app_ = std::make_unique<CLI::App>("Skiff command-line client", "skiff");
  CLI::App& root = *app_;
  // Global flags may come after the verb ("skiff job ls -o json"): subcommands pass options they
  // do not know up to their parents. Set before adding subcommands, which inherit it.
  root.fallthrough();
  root.require_subcommand(0, 1);
  root.footer(
      "Exit codes: 0 ok, 1 job failed or invalid job file, 2 usage, 3 server unreachable,\n"
      "4 authentication, 5 not found, 6 conflict, 7 other server error.");
  root.add_option("--addr", invocation_.addr,
                  "Server address, host:port or http[s]://host:port (env SKIFF_ADDR; default " +
                      std::string(kDefaultAddress) + ")");
  root.add_option("--token", invocation_.token, "API token (env SKIFF_TOKEN)");
  hints_[root.add_option("--config", invocation_.configPath,
                         "Config file (default $XDG_CONFIG_HOME/skiff/config.yaml)")] = {
      ValueHint::Kind::kFile, {}};
  std::vector<std::string> formats = {"table", "json", "yaml"};
  hints_[root.add_option("-o,--output", invocation_.output, "Output format: table, json or yaml")
             ->check(CLI::IsMember(formats))] = {ValueHint::Kind::kChoice, formats};

  std::map<std::string, CLI::App*> groupApps;
  for (const auto& [name, help] : groups()) {
    CLI::App* group = root.add_subcommand(name, help);
    group->require_subcommand(0, 1);
    groupApps[name] = group;
  }
  for (const Verb& verb : verbs()) {
    CLI::App* parent = verb.path.size() == 2 ? groupApps.at(verb.path[0]) : &root;
    CLI::App* leaf = parent->add_subcommand(verb.path.back(), verb.help);
    Declarer declarer{*leaf, invocation_, hints_};
    verb.declare(declarer);
    leaves_.emplace_back(leaf, &verb);
  }
}

std::optional<int> CommandLine::parse(const std::vector<std::string>& args, std::ostream& out,
                                      std::ostream& err) {
  std::vector<const char*> argv = {"skiff"};
  for (const auto& arg : args) argv.push_back(arg.c_str());
  try {
    app_->parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app_->exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    return app_->exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << "skiff: " << sanitize(e.what()) << " (see '" << commandName(deepestParsed(app_.get()))
        << " --help')\n";
    return kExitUsage;
  }
  for (const auto& [leaf, verb] : leaves_) {
    if (leaf->parsed()) {
      selected_ = verb;
      invocation_.path = verb->path;
      return std::nullopt;
    }
  }
  const CLI::App* where = deepestParsed(app_.get());
  std::string choices;
  for (const CLI::App* sub : where->get_subcommands([](const CLI::App*) { return true; })) {
    choices += (choices.empty() ? "" : ", ") + sub->get_name();
  }
  err << "skiff: missing command for '" << commandName(where) << "'; one of: " << choices
      << " (see '" << commandName(where) << " --help')\n";
  return kExitUsage;
}

int runCommandLine(const std::vector<std::string>& args, Context& context) {
  try {
    CommandLine commandLine;
    if (auto code = commandLine.parse(args, context.out, context.err)) return *code;
    Session session(context, commandLine.invocation(), commandLine);
    return commandLine.verb()->run(session);
  } catch (const std::exception& e) {
    // A bug or an out-of-memory; still one line and a documented code.
    context.err << "skiff: internal error: " << sanitize(e.what()) << "\n";
    return kExitServer;
  }
}

}  // namespace skiff::cli
