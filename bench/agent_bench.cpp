// Node agent benchmarks against a running skiffd with a registered agent (bench/agent_benchmarks.sh
// sets everything up). One program, three modes:
//
//   --mode start       sequential one-task jobs (after --warmup untimed ones). Per job: submit →
//                      201, submit → `Started` seen on the event stream, submit → `Finished` seen.
//                      With --agent-log and --agent-state-dir it also splits the time using the
//                      agent's "task status" log lines (ms) and the container's first output, a
//                      CLOCK_REALTIME stamp in ns printed by the image's /bin/stamp.
//   --mode throughput  --count jobs submitted by --threads clients; rate from the first submit
//                      to the last `Finished` seen on the event stream.
//   --mode hold        --count jobs submitted; waits until every one is `Started` and writes the
//                      job ids to --ids-file (e.g. `sleep 600` jobs for the RSS measurement).
//   --mode kill        kills the jobs listed in --ids-file and waits until they are Finished.
//
// One event stream (`GET /v1/events`, all jobs) is opened before the first submission and read on
// its own thread; every line is time-stamped when it arrives.
//
// Prints one JSON object on stdout.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string url = "http://127.0.0.1:7070";
  std::string tokenFile;
  std::string mode = "start";
  std::string image;
  std::vector<std::string> command = {"true"};
  int count = 30;
  int warmup = 2;
  int threads = 4;
  double cpu = 0.01;
  int memoryMB = 16;
  int diskMB = 0;  // 0: the job file's default
  int gapMs = 100;
  int timeoutSec = 300;
  std::string agentLog;
  std::string agentStateDir;
  std::string idsFile;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "agent_bench: " << why << "\n"
      << "usage: agent_bench --url URL --token-file F --image REF --mode "
         "start|throughput|hold|kill\n"
         "  [--command ARG]... [--count N] [--warmup N] [--threads N] [--cpu C] [--memory-mb M]\n"
         "  [--disk-mb D] [--gap-ms MS] [--timeout-sec S] [--agent-log F] [--agent-state-dir D]\n"
         "  [--ids-file F]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options opt;
  bool commandGiven = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--url")
      opt.url = next();
    else if (arg == "--token-file")
      opt.tokenFile = next();
    else if (arg == "--mode")
      opt.mode = next();
    else if (arg == "--image")
      opt.image = next();
    else if (arg == "--command") {
      if (!commandGiven) opt.command.clear();
      commandGiven = true;
      opt.command.push_back(next());
    } else if (arg == "--count")
      opt.count = std::stoi(next());
    else if (arg == "--warmup")
      opt.warmup = std::stoi(next());
    else if (arg == "--threads")
      opt.threads = std::stoi(next());
    else if (arg == "--cpu")
      opt.cpu = std::stod(next());
    else if (arg == "--memory-mb")
      opt.memoryMB = std::stoi(next());
    else if (arg == "--disk-mb")
      opt.diskMB = std::stoi(next());
    else if (arg == "--gap-ms")
      opt.gapMs = std::stoi(next());
    else if (arg == "--timeout-sec")
      opt.timeoutSec = std::stoi(next());
    else if (arg == "--agent-log")
      opt.agentLog = next();
    else if (arg == "--agent-state-dir")
      opt.agentStateDir = next();
    else if (arg == "--ids-file")
      opt.idsFile = next();
    else
      usage("unknown argument " + arg);
  }
  if (opt.tokenFile.empty()) usage("--token-file is required");
  if (opt.mode != "kill" && opt.image.empty()) usage("--image is required");
  if ((opt.mode == "hold" || opt.mode == "kill") && opt.idsFile.empty())
    usage("--ids-file is required");
  return opt;
}

int64_t wallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// What the event stream told us about one job (its single task).
struct Seen {
  std::optional<Clock::time_point> started;
  std::optional<Clock::time_point> finished;
  std::string taskId;
  std::string reason;
  std::string message;
  std::optional<int> exitCode;
};

class EventStream {
 public:
  EventStream(std::string url, std::string token) : url_(std::move(url)), token_(std::move(token)) {
    thread_ = std::thread([this] { run(); });
  }
  ~EventStream() {
    stop_ = true;
    thread_.join();
  }

  bool waitSnapshotEnd(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return snapshotEnd_ || failed_; }) && snapshotEnd_;
  }

  // Waits until pred(seen) holds for jobId (or the deadline passes); returns a copy.
  template <typename Pred>
  std::optional<Seen> waitFor(const std::string& jobId, Clock::time_point deadline, Pred pred) {
    std::unique_lock lock(mutex_);
    bool ok = cv_.wait_until(lock, deadline, [&] {
      auto it = seen_.find(jobId);
      return it != seen_.end() && pred(it->second);
    });
    if (!ok) return std::nullopt;
    return seen_[jobId];
  }

  // Waits until pred holds for every job in ids; returns how many satisfy it.
  template <typename Pred>
  size_t waitAll(const std::vector<std::string>& ids, Clock::time_point deadline, Pred pred) {
    std::unique_lock lock(mutex_);
    auto count = [&] {
      size_t n = 0;
      for (const auto& id : ids) {
        auto it = seen_.find(id);
        if (it != seen_.end() && pred(it->second)) ++n;
      }
      return n;
    };
    cv_.wait_until(lock, deadline, [&] { return count() == ids.size(); });
    return count();
  }

  std::map<std::string, Seen> snapshot() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  static size_t onData(char* data, size_t size, size_t n, void* self) {
    auto* es = static_cast<EventStream*>(self);
    auto now = Clock::now();
    es->buffer_.append(data, size * n);
    size_t pos;
    while ((pos = es->buffer_.find('\n')) != std::string::npos) {
      std::string line = es->buffer_.substr(0, pos);
      es->buffer_.erase(0, pos + 1);
      if (!line.empty()) es->onLine(line, now);
    }
    return size * n;
  }
  static int onProgress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<EventStream*>(self)->stop_ ? 1 : 0;
  }

  void onLine(const std::string& line, Clock::time_point now) {
    json event = json::parse(line, nullptr, false);
    if (event.is_discarded()) return;
    std::string type = event.value("type", "");
    std::lock_guard lock(mutex_);
    if (type == "snapshotEnd") {
      snapshotEnd_ = true;
      cv_.notify_all();
      return;
    }
    if (type != "update" || event.value("kind", "") != "task") return;
    const json& task = event["object"];
    std::string state = task.value("state", "");
    Seen& seen = seen_[task.value("jobId", "")];
    seen.taskId = task.value("id", "");
    if (state == "Started" && !seen.started) seen.started = now;
    if (state == "Finished" && !seen.finished) {
      seen.finished = now;
      seen.reason = task.value("reason", "");
      seen.message = task.value("message", "");
      if (task.contains("exitCode") && task["exitCode"].is_number())
        seen.exitCode = task["exitCode"].get<int>();
    }
    cv_.notify_all();
  }

  void run() {
    CURL* curl = curl_easy_init();
    std::string endpoint = url_ + "/v1/events";
    std::string auth = "Authorization: Bearer " + token_;
    curl_slist* headers = curl_slist_append(nullptr, auth.c_str());
    curl_easy_setopt(curl, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &EventStream::onData);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &EventStream::onProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    CURLcode rc = curl_easy_perform(curl);
    if (!stop_) std::cerr << "agent_bench: event stream ended: " << curl_easy_strerror(rc) << "\n";
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    std::lock_guard lock(mutex_);
    failed_ = true;
    cv_.notify_all();
  }

  std::string url_, token_, buffer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool snapshotEnd_ = false;
  bool failed_ = false;
  std::map<std::string, Seen> seen_;
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One keep-alive connection.
class Client {
 public:
  Client(const std::string& url, const std::string& token) : url_(url) {
    curl_ = curl_easy_init();
    headers_ = curl_slist_append(nullptr, ("Authorization: Bearer " + token).c_str());
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &collect);
    curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, 30L);
  }
  ~Client() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  // Returns the HTTP status (0 on transport error) and the body.
  std::pair<long, std::string> post(const std::string& path, const std::string& body) {
    std::string out;
    curl_easy_setopt(curl_, CURLOPT_URL, (url_ + path).c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &out);
    long status = 0;
    if (curl_easy_perform(curl_) == CURLE_OK)
      curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    return {status, out};
  }

 private:
  std::string url_;
  CURL* curl_;
  curl_slist* headers_;
};

std::string jobBody(const Options& opt) {
  json resources = {{"cpu", opt.cpu}, {"memoryMB", opt.memoryMB}};
  if (opt.diskMB > 0) resources["diskMB"] = opt.diskMB;
  return json{
      {"applicationName", "agentbench"},
      {"owner", {{"teamEmail", "bench@example.com"}}},
      {"container", {{"image", opt.image}, {"command", opt.command}, {"resources", resources}}},
      {"batch", {{"size", 1}, {"runtimeLimitSec", 3600}}}}
      .dump();
}

std::optional<std::string> submit(Client& client, const std::string& body) {
  auto [status, answer] = client.post("/v1/jobs", body);
  if (status != 201 && status != 200) {
    std::cerr << "agent_bench: submit answered " << status << ": " << answer << "\n";
    return std::nullopt;
  }
  json job = json::parse(answer, nullptr, false);
  if (job.is_discarded() || !job.contains("id")) return std::nullopt;
  return job["id"].get<std::string>();
}

// Percentiles by nearest rank (bench_util.h); p99 is null with fewer than 100 samples.
json stats(std::vector<double> v) {
  if (v.empty()) return json{{"n", 0}};
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  auto round2 = [](double x) { return std::round(x * 100) / 100; };
  std::optional<double> p99 = skiff::bench::p99(v);
  return json{{"n", v.size()},
              {"min", round2(v.front())},
              {"p50", round2(skiff::bench::percentile(v, 0.5))},
              {"p90", round2(skiff::bench::percentile(v, 0.9))},
              {"p99", p99 ? json(round2(*p99)) : json(nullptr)},
              {"max", round2(v.back())},
              {"mean", round2(sum / static_cast<double>(v.size()))}};
}

// taskId → state → agent log ts (ms), from the agent's "task status" lines.
std::map<std::string, std::map<std::string, int64_t>> agentTimes(const std::string& path) {
  std::map<std::string, std::map<std::string, int64_t>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("task status") == std::string::npos) continue;
    auto start = line.find('{');
    if (start == std::string::npos) continue;
    json j = json::parse(line.substr(start), nullptr, false);
    if (j.is_discarded() || j.value("msg", "") != "task status") continue;
    auto& slot = out[j.value("taskId", "")];
    std::string state = j.value("state", "");
    if (!slot.contains(state)) slot[state] = j.value("ts", int64_t{0});
  }
  return out;
}

int runStart(const Options& opt, const std::string& token, EventStream& events) {
  Client client(opt.url, token);
  const std::string body = jobBody(opt);
  struct Record {
    std::string jobId;
    int64_t submitWallNs;
    double acked, started, finished;
    Seen seen;
  };
  std::vector<Record> records;
  int failures = 0;
  for (int i = 0; i < opt.warmup + opt.count; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(opt.gapMs));
    int64_t wall = wallNs();
    auto t0 = Clock::now();
    auto id = submit(client, body);
    auto t1 = Clock::now();
    if (!id) return 1;
    auto seen = events.waitFor(*id, Clock::now() + std::chrono::seconds(opt.timeoutSec),
                               [](const Seen& s) { return s.finished.has_value(); });
    if (!seen) {
      std::cerr << "agent_bench: job " << *id << " did not finish in time\n";
      return 1;
    }
    if (seen->reason != "normal") {
      ++failures;
      std::cerr << "agent_bench: job " << *id << " finished " << seen->reason << ": "
                << seen->message << "\n";
    }
    if (i < opt.warmup) continue;
    records.push_back({*id, wall, ms(t1 - t0), seen->started ? ms(*seen->started - t0) : -1,
                       ms(*seen->finished - t0), *seen});
  }

  std::vector<double> acked, started, finished;
  for (const auto& r : records) {
    acked.push_back(r.acked);
    if (r.started >= 0) started.push_back(r.started);
    finished.push_back(r.finished);
  }
  json out = {{"mode", "start"},
              {"jobs", records.size()},
              {"notNormal", failures},
              {"submitToAckMs", stats(acked)},
              {"submitToStartedSeenMs", stats(started)},
              {"submitToFinishedSeenMs", stats(finished)}};

  if (!opt.agentLog.empty() && !opt.agentStateDir.empty()) {
    auto times = agentTimes(opt.agentLog);
    std::vector<double> toAssigned, assignedToStarted, assignedToFirstInstr, firstInstrToStartedLog,
        startedLogToSeen, submitToFirstInstr;
    for (const auto& r : records) {
      auto it = times.find(r.seen.taskId);
      if (it == times.end()) continue;
      auto& t = it->second;
      double submitMs = static_cast<double>(r.submitWallNs) / 1e6;
      if (!t.contains("StartInitiated")) continue;
      double assigned = static_cast<double>(t["StartInitiated"]);
      toAssigned.push_back(assigned - submitMs);
      if (t.contains("Started")) {
        double startedLog = static_cast<double>(t["Started"]);
        assignedToStarted.push_back(startedLog - assigned);
        startedLogToSeen.push_back(r.started - (startedLog - submitMs));
      }
      std::ifstream stamp(opt.agentStateDir + "/containers/" + r.seen.taskId + "/stdout.log");
      int64_t ns = 0;
      if (stamp >> ns && ns > 0) {
        double first = static_cast<double>(ns) / 1e6;
        assignedToFirstInstr.push_back(first - assigned);
        submitToFirstInstr.push_back(first - submitMs);
        if (t.contains("Started"))
          firstInstrToStartedLog.push_back(static_cast<double>(t["Started"]) - first);
      }
    }
    out["breakdown"] = {
        {"note",
         "agent log timestamps have 1 ms resolution; 'assignment received' = the agent's "
         "StartInitiated log line (the first thing it does for a new assignment); 'first "
         "instruction' = CLOCK_REALTIME printed by the container's /bin/stamp"},
        {"submitToAssignmentMs", stats(toAssigned)},
        {"assignmentToFirstInstructionMs", stats(assignedToFirstInstr)},
        {"firstInstructionToStartedLogMs", stats(firstInstrToStartedLog)},
        {"assignmentToStartedLogMs", stats(assignedToStarted)},
        {"startedLogToStartedSeenMs", stats(startedLogToSeen)},
        {"submitToFirstInstructionMs", stats(submitToFirstInstr)}};
  }
  std::cout << out.dump(2) << std::endl;
  return failures == 0 ? 0 : 1;
}

// Submits opt.count jobs from opt.threads clients; returns the ids (empty on failure).
std::vector<std::string> submitMany(const Options& opt, const std::string& token,
                                    Clock::time_point* firstSubmit, Clock::time_point* lastAck) {
  const std::string body = jobBody(opt);
  std::vector<std::vector<std::string>> perThread(static_cast<size_t>(opt.threads));
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  *firstSubmit = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < opt.threads; ++t) {
    threads.emplace_back([&, t] {
      Client client(opt.url, token);
      while (!failed && next.fetch_add(1) < opt.count) {
        auto id = submit(client, body);
        if (!id) {
          failed = true;
          return;
        }
        perThread[static_cast<size_t>(t)].push_back(*id);
      }
    });
  }
  for (auto& t : threads) t.join();
  *lastAck = Clock::now();
  std::vector<std::string> ids;
  if (failed) return ids;
  for (auto& v : perThread) ids.insert(ids.end(), v.begin(), v.end());
  return ids;
}

int runThroughput(const Options& opt, const std::string& token, EventStream& events) {
  Clock::time_point first, lastAck;
  auto ids = submitMany(opt, token, &first, &lastAck);
  if (ids.size() != static_cast<size_t>(opt.count)) return 1;
  size_t done = events.waitAll(ids, Clock::now() + std::chrono::seconds(opt.timeoutSec),
                               [](const Seen& s) { return s.finished.has_value(); });
  auto seen = events.snapshot();
  Clock::time_point last = first;
  int normal = 0;
  std::map<std::string, int> reasons;
  std::vector<double> latencies;
  for (const auto& id : ids) {
    const Seen& s = seen[id];
    if (!s.finished) continue;
    last = std::max(last, *s.finished);
    reasons[s.reason]++;
    if (s.reason == "normal") ++normal;
  }
  double seconds = std::chrono::duration<double>(last - first).count();
  json out = {{"mode", "throughput"},
              {"jobs", ids.size()},
              {"finished", done},
              {"normal", normal},
              {"reasons", reasons},
              {"submitSeconds", std::chrono::duration<double>(lastAck - first).count()},
              {"firstSubmitToLastFinishedSeconds", seconds},
              {"jobsPerSecond", seconds > 0 ? static_cast<double>(done) / seconds : 0}};
  std::cout << out.dump(2) << std::endl;
  return done == ids.size() && normal == static_cast<int>(ids.size()) ? 0 : 1;
}

int runHold(const Options& opt, const std::string& token, EventStream& events) {
  Clock::time_point first, lastAck;
  auto ids = submitMany(opt, token, &first, &lastAck);
  if (ids.size() != static_cast<size_t>(opt.count)) return 1;
  {
    std::ofstream out(opt.idsFile);
    for (const auto& id : ids) out << id << "\n";
  }
  size_t started = events.waitAll(ids, Clock::now() + std::chrono::seconds(opt.timeoutSec),
                                  [](const Seen& s) { return s.started.has_value(); });
  auto seen = events.snapshot();
  Clock::time_point last = first;
  for (const auto& id : ids)
    if (seen[id].started) last = std::max(last, *seen[id].started);
  json out = {
      {"mode", "hold"},
      {"jobs", ids.size()},
      {"started", started},
      {"firstSubmitToLastStartedSeconds", std::chrono::duration<double>(last - first).count()}};
  // The task ids, in submission order (the last one is "the 100th container").
  json tasks = json::array();
  for (const auto& id : ids) tasks.push_back(seen[id].taskId);
  out["taskIds"] = tasks;
  std::cout << out.dump(2) << std::endl;
  return started == ids.size() ? 0 : 1;
}

int runKill(const Options& opt, const std::string& token, EventStream& events) {
  std::vector<std::string> ids;
  {
    std::ifstream in(opt.idsFile);
    std::string id;
    while (in >> id) ids.push_back(id);
  }
  Client client(opt.url, token);
  auto start = Clock::now();
  for (const auto& id : ids) client.post("/v1/jobs/" + id + "/kill", "");
  size_t done = events.waitAll(ids, Clock::now() + std::chrono::seconds(opt.timeoutSec),
                               [](const Seen& s) { return s.finished.has_value(); });
  json out = {{"mode", "kill"},
              {"jobs", ids.size()},
              {"finished", done},
              {"seconds", std::chrono::duration<double>(Clock::now() - start).count()}};
  std::cout << out.dump(2) << std::endl;
  return done == ids.size() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  std::string token = skiff::bench::readToken(opt.tokenFile);
  if (token.empty()) usage("cannot read " + opt.tokenFile);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc;
  {
    EventStream events(opt.url, token);
    if (!events.waitSnapshotEnd(std::chrono::seconds(30))) {
      std::cerr << "agent_bench: no snapshotEnd on the event stream\n";
      return 1;
    }
    if (opt.mode == "start")
      rc = runStart(opt, token, events);
    else if (opt.mode == "throughput")
      rc = runThroughput(opt, token, events);
    else if (opt.mode == "hold")
      rc = runHold(opt, token, events);
    else if (opt.mode == "kill")
      rc = runKill(opt, token, events);
    else
      usage("unknown mode " + opt.mode);
  }
  curl_global_cleanup();
  return rc;
}
