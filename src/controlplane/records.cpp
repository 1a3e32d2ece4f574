#include "controlplane/records.h"

#include <random>

#include <openssl/rand.h>
#include <rapidjson/document.h>

#include "common/json_sink.h"

namespace skiff::controlplane {
namespace {

using nlohmann::json;

constexpr size_t kJobIdLength = 4 + 12 + 1 + 8;

std::string hex(uint64_t value, int digits) {
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[static_cast<size_t>(i)] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  }
  return out;
}

Result<json> parseStored(std::string_view value, std::string_view what) {
  json parsed = json::parse(value, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return fail(ErrorCode::kInternal, "corrupt stored " + std::string(what));
  }
  return parsed;
}

// Collects the strings of the array at one path of object keys, skipping everything else; the
// parse builds no tree. The root object is at depth 1 and the object reached by the first k
// path components at depth k + 1.
class PathStrings : public json::json_sax_t {
 public:
  explicit PathStrings(std::vector<std::string_view> path) : path_(std::move(path)) {}

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t&) override { return scalar(); }
  bool binary(binary_t&) override { return scalar(); }
  bool string(string_t& value) override {
    if (array_ != 0 && array_ == depth_) found.push_back(std::move(value));
    return scalar();
  }
  bool key(string_t& name) override {
    pending_ = depth_ == matched_ + 1 && matched_ < path_.size() && name == path_[matched_];
    return true;
  }
  bool start_object(std::size_t) override {
    ++depth_;
    if (pending_ && depth_ == matched_ + 2) ++matched_;
    pending_ = false;
    return true;
  }
  bool end_object() override {
    if (matched_ > 0 && depth_ == matched_ + 1) --matched_;
    --depth_;
    pending_ = false;
    return true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (pending_ && matched_ + 1 == path_.size() && depth_ == matched_ + 2) array_ = depth_;
    pending_ = false;
    return true;
  }
  bool end_array() override {
    if (array_ == depth_) array_ = 0;
    --depth_;
    pending_ = false;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  std::vector<std::string> found;

 private:
  bool scalar() {
    pending_ = false;
    return true;
  }

  std::vector<std::string_view> path_;
  size_t depth_ = 0;
  size_t matched_ = 0;    // Leading path components whose objects enclose the position.
  bool pending_ = false;  // The last key was the next path component.
  size_t array_ = 0;      // Depth of the target array while inside it.
};

}  // namespace

std::string jobKey(std::string_view jobId) {
  return std::string(kJobsPrefix).append(jobId);
}
std::string taskKey(std::string_view jobId, std::string_view taskId) {
  return jobKey(jobId).append("/t/").append(taskId);
}
std::string jobPrefix(std::string_view jobId) {
  return jobKey(jobId);
}
std::string nodeKey(std::string_view nodeId) {
  return std::string(kNodesPrefix).append(nodeId);
}
std::string idempotencyKey(std::string_view key) {
  return std::string(kIdempotencyPrefix).append(key);
}

std::string newJobId(int64_t nowMs) {
  // The random part keeps ids of one millisecond apart; it need not be secret, so a generator
  // seeded once per thread serves it without a call into OpenSSL (and its `getpid`) per job.
  thread_local std::mt19937 generator = [] {
    uint32_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof(seed)) != 1) {
      // RAND_bytes only fails when the system has no entropy source, which is unrecoverable.
      std::abort();
    }
    return std::mt19937(seed);
  }();
  return "job-" + hex(static_cast<uint64_t>(nowMs), 12) + "-" + hex(generator(), 8);
}

std::string taskId(std::string_view jobId, int64_t index, int64_t attempt) {
  return std::string(jobId) + "-" + std::to_string(index) + "-" + std::to_string(attempt);
}

std::optional<std::string> jobIdOfTask(std::string_view id) {
  if (id.size() <= kJobIdLength + 1 || !id.starts_with("job-") || id[kJobIdLength] != '-') {
    return std::nullopt;
  }
  return std::string(id.substr(0, kJobIdLength));
}

json resourcesToJson(const api::Resources& r) {
  return {{"cpu", r.cpu},
          {"memoryMB", r.memoryMB},
          {"diskMB", r.diskMB},
          {"networkMbps", r.networkMbps},
          {"gpu", r.gpu}};
}

namespace {

// The members of a job's stored form except "descriptor"; with `wire`, the wire form's
// (no "nextIndex", and "revision").
template <class Sink>
void emitJobFields(Sink& out, const JobRecord& job, bool wire) {
  out.field("id", job.id);
  out.beginObject("status");
  out.field("state", api::jobStateName(job.state));
  out.field("reason", job.reason);
  out.field("message", job.message);
  out.field("timestampMs", job.stateTimeMs);
  out.end();
  out.field("createdAtMs", job.createdAtMs);
  out.field("idempotencyKey", job.idempotencyKey);
  if (!wire && !job.requestHash.empty()) out.field("requestHash", job.requestHash);
  out.field("type", job.descriptor.isBatch() ? "batch" : "service");
  if (wire) {
    out.field("revision", job.modRevision);
  } else {
    out.field("nextIndex", job.nextIndex);
  }
  if (job.descriptor.isBatch()) return;
  out.beginObject("capacity");
  out.field("min", job.capacity.min);
  out.field("desired", job.capacity.desired);
  out.field("max", job.capacity.max);
  out.end();
  out.field("enabled", job.enabled);
  out.field("specRevision", job.specRevision);
  out.beginArray("revisions");
  for (const SpecRevision& revision : job.revisions) {
    api::JobDescriptor holder;
    holder.container = revision.container;
    out.beginObjectValue();
    out.field("number", revision.number);
    out.field("container", api::toJson(holder)["container"]);
    out.field("createdAtMs", revision.createdAtMs);
    out.field("outcome", revision.outcome);
    out.field("image", revision.image);
    out.field("message", revision.message);
    out.end();
  }
  out.end();
  if (job.descriptor.service->autoscaling) {
    out.beginObject("autoscaling");
    out.field("metrics", json(job.autoscale.metrics));
    out.field("metricsAtMs", job.autoscale.metricsAtMs);
    out.field("lastScaleOutMs", job.autoscale.lastScaleOutMs);
    out.field("lastScaleInMs", job.autoscale.lastScaleInMs);
    out.field("lastDecision", job.autoscale.lastDecision);
    out.end();
  }
  if (!job.disruptionsMs.empty()) {
    out.beginArray("disruptionsMs");
    for (int64_t atMs : job.disruptionsMs) out.value(atMs);
    out.end();
  }
  if (job.rollout.active) {
    out.beginObject("rollout");
    out.field("fromRevision", job.rollout.fromRevision);
    out.field("promoted", job.rollout.promoted);
    out.field("rollingBack", job.rollout.rollingBack);
    out.field("startedAtMs", job.rollout.startedAtMs);
    out.field("message", job.rollout.message);
    out.end();
  }
}

// A task's stored form; with `wire`, its wire form (plus "revision").
template <class Sink>
void emitTask(Sink& out, const TaskRecord& task, std::string_view jobId, bool wire) {
  out.beginObject();
  out.field("id", task.id);
  out.field("jobId", jobId);
  out.field("index", task.index);
  out.field("state", api::taskStateName(task.state));
  out.field("reason", api::taskReasonName(task.reason));
  out.field("message", task.message);
  out.field("nodeId", task.nodeId);
  out.field("resubmitNumber", task.resubmitNumber);
  out.field("systemResubmitNumber", task.systemResubmitNumber);
  out.field("evictionResubmitNumber", task.evictionResubmitNumber);
  out.field("resubmitOf", task.resubmitOf);
  out.beginObject("stateTimesMs");
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    if (task.stateTimesMs[static_cast<size_t>(i)] != 0) {
      out.field(api::taskStateName(static_cast<api::TaskState>(i)),
                task.stateTimesMs[static_cast<size_t>(i)]);
    }
  }
  out.end();
  if (task.hasExitCode) out.field("exitCode", task.exitCode);
  if (!task.image.empty()) out.field("image", task.image);
  if (!task.ip.empty()) out.field("ip", task.ip);
  if (task.specRevision != 1) out.field("specRevision", task.specRevision);
  if (task.draining) out.field("draining", true);
  if (task.drainDeadlineMs != 0) out.field("drainDeadlineMs", task.drainDeadlineMs);
  out.field("ready", task.ready);
  if (task.readySinceMs != 0) out.field("readySinceMs", task.readySinceMs);
  if (task.killReason != api::TaskReason::kNone) {
    out.field("killReason", api::taskReasonName(task.killReason));
  }
  if (task.notBeforeMs != 0) out.field("notBeforeMs", task.notBeforeMs);
  if (task.lastSeq != 0) out.field("lastSeq", task.lastSeq);
  if (task.systemErrorsInRow != 0) out.field("systemErrorsInRow", task.systemErrorsInRow);
  if (wire) out.field("revision", task.modRevision);
  out.end();
}

}  // namespace

std::string toStored(const JobRecord& job) {
  return toStoredText(job, api::toJsonText(job.descriptor));
}

std::string toStoredText(const JobRecord& job, std::string_view descriptorText) {
  JsonTextSink out;
  out.beginObject();
  out.rawField("descriptor", descriptorText);
  emitJobFields(out, job, false);
  out.end();
  return out.take();
}

std::string toStored(const TaskRecord& task) {
  auto jobId = jobIdOfTask(task.id);
  JsonTextSink out;
  emitTask(out, task, jobId ? *jobId : std::string_view(), false);
  return out.take();
}

std::string toStored(const NodeRecord& node) {
  return json({{"id", node.id},
               {"resources", resourcesToJson(node.resources)},
               {"attributes", node.attributes},
               {"labels", node.labels},
               {"addressBlock", node.addressBlock},
               {"draining", node.draining},
               {"drainDeadlineMs", node.drainDeadlineMs},
               {"registeredAtMs", node.registeredAtMs}})
      .dump();
}

json toWire(const JobRecord& job) {
  JsonTreeSink out;
  out.beginObject();
  out.field("descriptor", api::toJson(job.descriptor));
  emitJobFields(out, job, true);
  out.end();
  return out.take();
}

std::string toWireText(const JobRecord& job, std::string_view descriptorText, json more) {
  JsonTextSink out;
  out.beginObject();
  out.rawField("descriptor", descriptorText);
  emitJobFields(out, job, true);
  for (const auto& [name, value] : more.items()) out.field(name, value);
  out.end();
  return out.take();
}

json toWire(const TaskRecord& task, std::string_view jobId) {
  JsonTreeSink out;
  emitTask(out, task, jobId, true);
  return out.take();
}

const SpecRevision* JobRecord::findRevision(int64_t number) const {
  for (const SpecRevision& revision : revisions) {
    if (revision.number == number) return &revision;
  }
  return nullptr;
}

std::expected<api::JobDescriptor, api::FieldErrors> descriptorWithContainer(
    const api::JobDescriptor& base, const json& container) {
  json document = api::toJson(base);
  document["container"] = container;
  return api::validateJobDescriptor(document);
}

Result<JobRecord> jobFromStored(std::string_view value, store::Revision modRevision) {
  auto parsed = parseStored(value, "job");
  if (!parsed) return std::unexpected(parsed.error());
  const json& j = *parsed;
  try {
    JobRecord job;
    job.id = j.at("id").get<std::string>();
    auto descriptor = api::validateJobDescriptor(j.at("descriptor"));
    if (!descriptor) {
      return fail(ErrorCode::kInternal, "stored job " + job.id + " fails validation: " +
                                            descriptor.error()[0].toString());
    }
    job.descriptor = std::move(*descriptor);
    const json& status = j.at("status");
    auto state = api::parseJobState(status.at("state").get<std::string>());
    if (!state) return fail(ErrorCode::kInternal, "stored job " + job.id + " has a bad state");
    job.state = *state;
    job.reason = status.value("reason", "");
    job.message = status.value("message", "");
    job.stateTimeMs = status.value("timestampMs", int64_t{0});
    job.createdAtMs = j.value("createdAtMs", int64_t{0});
    job.idempotencyKey = j.value("idempotencyKey", "");
    job.requestHash = j.value("requestHash", "");
    job.nextIndex = j.value("nextIndex", int64_t{0});
    if (j.contains("capacity")) {
      const json& c = j["capacity"];
      job.capacity = {c.value("min", int64_t{0}), c.value("desired", int64_t{0}),
                      c.value("max", int64_t{0})};
    } else if (job.descriptor.service) {
      job.capacity = job.descriptor.service->capacity;
    }
    job.enabled = j.value("enabled", true);
    job.specRevision = j.value("specRevision", int64_t{1});
    for (const json& r : j.value("revisions", json::array())) {
      auto descriptor = descriptorWithContainer(job.descriptor, r.at("container"));
      if (!descriptor) {
        return fail(ErrorCode::kInternal, "stored job " + job.id + " has a bad revision: " +
                                              descriptor.error()[0].toString());
      }
      job.revisions.push_back({r.at("number").get<int64_t>(), std::move(descriptor->container),
                               r.value("createdAtMs", int64_t{0}), r.value("outcome", ""),
                               r.value("image", ""), r.value("message", "")});
    }
    job.disruptionsMs = j.value("disruptionsMs", std::vector<int64_t>{});
    if (auto it = j.find("autoscaling"); it != j.end()) {
      job.autoscale.metrics = it->value("metrics", std::map<std::string, double>{});
      job.autoscale.metricsAtMs = it->value("metricsAtMs", int64_t{0});
      job.autoscale.lastScaleOutMs = it->value("lastScaleOutMs", int64_t{0});
      job.autoscale.lastScaleInMs = it->value("lastScaleInMs", int64_t{0});
      job.autoscale.lastDecision = it->value("lastDecision", json(nullptr));
    }
    if (auto it = j.find("rollout"); it != j.end()) {
      job.rollout.active = true;
      job.rollout.fromRevision = it->value("fromRevision", int64_t{0});
      job.rollout.promoted = it->value("promoted", false);
      job.rollout.rollingBack = it->value("rollingBack", false);
      job.rollout.startedAtMs = it->value("startedAtMs", int64_t{0});
      job.rollout.message = it->value("message", "");
    }
    job.modRevision = modRevision;
    return job;
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInternal, std::string("corrupt stored job: ") + e.what());
  }
}

Result<std::vector<std::string>> securityGroupsOfStoredJob(std::string_view value) {
  PathStrings reader({"descriptor", "container", "securityProfile", "securityGroups"});
  if (!json::sax_parse(value, &reader)) return fail(ErrorCode::kInternal, "corrupt stored job");
  return std::move(reader.found);
}

namespace {

// Typed reads of one stored object's members. A member of the wrong type, or a required member
// that is missing, makes the record corrupt: `error` names the first one.
class StoredReader {
 public:
  explicit StoredReader(const rapidjson::Value& object) : object_(object) {}

  const rapidjson::Value* find(const char* name) const {
    auto it = object_.FindMember(name);
    return it == object_.MemberEnd() ? nullptr : &it->value;
  }
  std::string text(const char* name, bool required = false) {
    const rapidjson::Value* v = find(name);
    if (v == nullptr) {
      if (required) bad(name, "is missing");
      return {};
    }
    if (!v->IsString()) {
      bad(name, "is not a string");
      return {};
    }
    return std::string(v->GetString(), v->GetStringLength());
  }
  int64_t integer(const char* name, int64_t fallback, bool required = false) {
    const rapidjson::Value* v = find(name);
    if (v == nullptr) {
      if (required) bad(name, "is missing");
      return fallback;
    }
    return integerOf(*v, name);
  }
  bool boolean(const char* name, bool fallback) {
    const rapidjson::Value* v = find(name);
    if (v == nullptr) return fallback;
    if (!v->IsBool()) {
      bad(name, "is not a boolean");
      return fallback;
    }
    return v->GetBool();
  }
  int64_t integerOf(const rapidjson::Value& v, std::string_view name) {
    if (v.IsInt64()) return v.GetInt64();
    if (v.IsNumber()) return static_cast<int64_t>(v.GetDouble());
    bad(name, "is not a number");
    return 0;
  }
  void bad(std::string_view name, std::string_view rule) {
    if (error.empty()) error = std::string(name) + " " + std::string(rule);
  }

  std::string error;

 private:
  const rapidjson::Value& object_;
};

}  // namespace

// Tasks are the bulk of what a restart reads (a million of them in the benchmark): RapidJSON
// parses them several times faster than an nlohmann tree.
Result<TaskRecord> taskFromStored(std::string_view value, store::Revision modRevision) {
  rapidjson::Document doc;
  doc.Parse(value.data(), value.size());
  if (doc.HasParseError() || !doc.IsObject())
    return fail(ErrorCode::kInternal, "corrupt stored task");
  StoredReader r(doc);
  TaskRecord task;
  task.id = r.text("id", true);
  task.index = r.integer("index", 0, true);
  std::string state = r.text("state", true);
  std::string reason = r.text("reason", true);
  if (!r.error.empty()) {
    return fail(ErrorCode::kInternal, "corrupt stored task " + task.id + ": " + r.error);
  }
  auto parsedState = api::parseTaskState(state);
  if (!parsedState)
    return fail(ErrorCode::kInternal, "stored task " + task.id + " has a bad state");
  task.state = *parsedState;
  task.reason = reason.empty() ? api::TaskReason::kNone
                               : api::parseTaskReason(reason).value_or(api::TaskReason::kNone);
  if (r.find("killReason") != nullptr) {
    task.killReason = api::parseTaskReason(r.text("killReason")).value_or(api::TaskReason::kNone);
  }
  if (r.find("exitCode") != nullptr) {
    task.exitCode = static_cast<int32_t>(r.integer("exitCode", 0));
    task.hasExitCode = true;
  }
  task.message = r.text("message");
  task.image = r.text("image");
  task.ip = r.text("ip");
  task.specRevision = r.integer("specRevision", 1);
  task.draining = r.boolean("draining", false);
  task.drainDeadlineMs = r.integer("drainDeadlineMs", 0);
  task.ready = r.boolean("ready", false);
  task.readySinceMs = r.integer("readySinceMs", 0);
  task.nodeId = r.text("nodeId");
  task.resubmitNumber = r.integer("resubmitNumber", 0);
  task.systemResubmitNumber = r.integer("systemResubmitNumber", 0);
  task.evictionResubmitNumber = r.integer("evictionResubmitNumber", 0);
  task.systemErrorsInRow = r.integer("systemErrorsInRow", 0);
  task.resubmitOf = r.text("resubmitOf");
  task.notBeforeMs = r.integer("notBeforeMs", 0);
  task.lastSeq = r.integer("lastSeq", 0);
  if (const rapidjson::Value* times = r.find("stateTimesMs")) {
    if (!times->IsObject()) {
      r.bad("stateTimesMs", "is not an object");
    } else {
      for (const auto& member : times->GetObject()) {
        std::string_view name(member.name.GetString(), member.name.GetStringLength());
        int64_t atMs = r.integerOf(member.value, name);
        if (auto s = api::parseTaskState(name)) task.stateTimesMs[static_cast<size_t>(*s)] = atMs;
      }
    }
  }
  if (!r.error.empty()) {
    return fail(ErrorCode::kInternal, "corrupt stored task " + task.id + ": " + r.error);
  }
  task.modRevision = modRevision;
  return task;
}

Result<NodeRecord> nodeFromStored(std::string_view value, store::Revision modRevision) {
  auto parsed = parseStored(value, "node");
  if (!parsed) return std::unexpected(parsed.error());
  const json& j = *parsed;
  try {
    NodeRecord node;
    node.id = j.at("id").get<std::string>();
    const json& r = j.at("resources");
    node.resources = {r.value("cpu", 0.0), r.value("memoryMB", int64_t{0}),
                      r.value("diskMB", int64_t{0}), r.value("networkMbps", int64_t{0}),
                      r.value("gpu", int64_t{0})};
    node.attributes = j.value("attributes", json::object());
    node.labels = j.value("labels", std::map<std::string, std::string>{});
    node.addressBlock = j.value("addressBlock", "");
    node.draining = j.value("draining", false);
    node.drainDeadlineMs = j.value("drainDeadlineMs", int64_t{0});
    node.registeredAtMs = j.value("registeredAtMs", int64_t{0});
    node.modRevision = modRevision;
    return node;
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInternal, std::string("corrupt stored node: ") + e.what());
  }
}

}  // namespace skiff::controlplane
