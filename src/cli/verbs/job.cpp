#include "api/job.h"

#include "cli/session.h"
#include "cli/verbs/verbs.h"
#include "cli/watch.h"

namespace skiff::cli {

using nlohmann::json;

namespace {

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

bool isValidIdempotencyKey(const std::string& key) {
  if (key.empty() || key.size() > 128) return false;
  return std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

}  // namespace

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

}  // namespace skiff::cli
