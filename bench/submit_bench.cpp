// submit_bench: durable job submissions acknowledged per second, measured the same way for Skiff
// and its peers.
//
// HTTP mode (per connection): keeps `--clients` requests in flight at all times (one libcurl multi
// handle, one keep-alive connection per client, all on one thread so the load generator takes as
// little of the machine's CPU as possible). By default each request is `POST /v1/jobs` with a small
// valid batch job and a unique Idempotency-Key; skiffd answers only once the job is durable
// (fsync'ed), so every 201 is an acknowledged durable submission. `--path`, `--body-file`,
// `--header`, `--expect-status` and `--expect-body` point the same harness at another API (e.g.
// slurmrestd's job submission); any other answer or a transport error is counted apart.
//
// Exec mode (per process): with `--exec "PROGRAM ARGS..."` it measures a command line instead
// (e.g. `skiff job run FILE` against `sbatch --hold --wrap=true`): it keeps `--clients` copies of
// the command running, starts a new one whenever one exits, and counts exit status 0 as
// acknowledged.
//
// The first `--warmup` seconds are not measured; then every answer that completes during the next
// `--duration` seconds is counted, and its latency (request or process start to answer or exit)
// recorded. Percentiles are by nearest rank (bench_util.h); `p99Ms` is null with fewer than 100
// samples.
//
// Output: one JSON object on stdout, e.g.
//   {"clients":64,"durationSec":10.0,"acknowledged":61234,"perSec":6123.4,"p50Ms":9.8,...}
//
// Usage:
//   submit_bench --url http://127.0.0.1:7070 --token-file STATE/admin.token
//                [--clients 64] [--duration 10] [--warmup 1] [--batch-size 1] [--server-pid PID]
//   submit_bench --exec "sbatch --hold --wrap=true -o /dev/null" [--clients 64] [--duration 10]
//
// With `--server-pid`, the CPU time the server process used during the measured window is reported
// too (`serverCpuSec`, `serverCpuUsPerAck`): unlike the rate, it does not depend on what else the
// machine runs at the time. `clientCpuSec` is this program's own CPU time over the whole run, and
// `loadAvg1` the 1-minute load average before and after.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string url = "http://127.0.0.1:7070";
  std::string token;
  int clients = 64;
  double durationSec = 10;
  double warmupSec = 1;
  int batchSize = 1;
  std::vector<std::string> exec;  // Measure this command line instead of the HTTP API.
  int serverPid = 0;
  // Another HTTP API through the same keep-alive harness (e.g. slurmrestd's job submission).
  std::string path = "/v1/jobs";
  std::string body;  // Empty: a small Skiff batch job.
  std::vector<std::string> headers;
  long expectStatus = 201;
  std::string expectBody;
};

Options parse(int argc, char** argv) {
  Options o;
  std::string tokenFile;
  std::string exec;
  std::string bodyFile;
  CLI::App app("Durable submissions acknowledged per second, over HTTP or by a command line.");
  app.add_option("--url", o.url, "Server base URL")->capture_default_str();
  app.add_option("--token", o.token, "Bearer token");
  app.add_option("--token-file", tokenFile, "File whose first line is the bearer token");
  app.add_option("--clients", o.clients, "Requests or commands kept in flight")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--duration", o.durationSec, "Measured seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmupSec, "Unmeasured seconds first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch-size", o.batchSize, "Tasks per submitted Skiff job")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--server-pid", o.serverPid, "Report this process's CPU time in the window");
  app.add_option("--exec", exec, "Measure this command line (split at spaces) instead of HTTP");
  app.add_option("--path", o.path, "Request path")->capture_default_str();
  app.add_option("--body-file", bodyFile, "Request body (default: a small Skiff batch job)");
  app.add_option("--header", o.headers, "Extra request header 'Name: value' (repeatable)");
  app.add_option("--expect-status", o.expectStatus, "The status that acknowledges a submission")
      ->capture_default_str();
  app.add_option("--expect-body", o.expectBody,
                 "A text the answer's first 4 KiB must contain to count as acknowledged");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  if (!tokenFile.empty()) {
    o.token = skiff::bench::readToken(tokenFile);
    if (o.token.empty()) {
      std::cerr << "submit_bench: cannot read " << tokenFile << "\n";
      std::exit(2);
    }
  }
  std::istringstream words(exec);
  for (std::string w; words >> w;) o.exec.push_back(w);
  if (!bodyFile.empty()) {
    std::ifstream in(bodyFile);
    std::ostringstream text;
    text << in.rdbuf();
    o.body = text.str();
    if (!in.is_open() || o.body.empty()) {
      std::cerr << "submit_bench: cannot read " << bodyFile << "\n";
      std::exit(2);
    }
  }
  if (o.token.empty() && o.exec.empty() && o.headers.empty()) {
    std::cerr << "submit_bench: a token (or --header with the credentials) is needed\n";
    std::exit(2);
  }
  while (!o.url.empty() && o.url.back() == '/') o.url.pop_back();
  return o;
}

size_t collect(char* data, size_t size, size_t count, void* user) {
  auto* out = static_cast<std::string*>(user);
  // Keep only the start of a body: enough to check it and to show what an unexpected answer said.
  if (out->size() < 4096) out->append(data, std::min(size * count, 4096 - out->size()));
  return size * count;
}

struct Slot {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string response;
  Clock::time_point started;
  bool active = false;
};

// CPU seconds of this program and of the commands it ran and reaped (exec mode).
double selfCpuSec() {
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage{};
    ::getrusage(who, &usage);
    total += sec(usage.ru_utime) + sec(usage.ru_stime);
  }
  return total;
}

// Busy and total jiffies of the whole machine (all cores) from /proc/stat.
std::pair<double, double> machineJiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double total = 0;
  double idle = 0;
  double value = 0;
  for (int i = 0; i < 10 && in >> value; ++i) {
    total += value;
    if (i == 3 || i == 4) idle += value;  // idle, iowait
  }
  return {total - idle, total};
}

double loadAvg1() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

struct Results {
  uint64_t total = 0;  // Every answer in the window, acknowledged or not.
  uint64_t acknowledged = 0;
  uint64_t transportErrors = 0;
  std::map<long, uint64_t> otherStatuses;
  std::string firstUnexpected;
  std::vector<double> latenciesMs;
  double serverCpuSec = -1;  // During the measured window.
  double clientCpuSecWindow = -1;
  double machineBusyCores = -1;  // Average busy cores of the whole machine during the window.
  double loadBefore = -1;
  double loadAfter = -1;
};

// CPU use during the measured window: the server's, this program's (with its commands) and the
// whole machine's.
class Window {
 public:
  void open(const Options& opt) {
    if (opt.serverPid > 0) serverCpuAtStart_ = skiff::bench::processCpuSec(opt.serverPid);
    clientCpuAtStart_ = selfCpuSec();
    jiffiesAtStart_ = machineJiffies();
  }
  void close(const Options& opt, Results& r) const {
    if (opt.serverPid > 0) {
      double end = skiff::bench::processCpuSec(opt.serverPid);
      if (serverCpuAtStart_ >= 0 && end >= 0) r.serverCpuSec = end - serverCpuAtStart_;
    }
    r.clientCpuSecWindow = selfCpuSec() - clientCpuAtStart_;
    auto [busy, total] = machineJiffies();
    double cores = static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
    if (total > jiffiesAtStart_.second) {
      r.machineBusyCores =
          (busy - jiffiesAtStart_.first) / (total - jiffiesAtStart_.second) * cores;
    }
  }

 private:
  double serverCpuAtStart_ = -1;
  double clientCpuAtStart_ = 0;
  std::pair<double, double> jiffiesAtStart_;
};

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

json report(const Options& opt, Results& r) {
  std::sort(r.latenciesMs.begin(), r.latenciesMs.end());
  json others = json::object();
  for (auto& [status, count] : r.otherStatuses) others[std::to_string(status)] = count;
  json out = {{"clients", opt.clients},
              {"batchSize", opt.batchSize},
              {"durationSec", opt.durationSec},
              {"answers", r.total},
              {"acknowledged", r.acknowledged},
              {"perSec", static_cast<double>(r.acknowledged) / opt.durationSec},
              {"samples", r.latenciesMs.size()},
              {"p50Ms", skiff::bench::percentile(r.latenciesMs, 0.5)},
              {"p90Ms", skiff::bench::percentile(r.latenciesMs, 0.9)},
              {"p99Ms", skiff::bench::p99OrNull<json>(r.latenciesMs)},
              {"maxMs", r.latenciesMs.empty() ? 0.0 : r.latenciesMs.back()},
              {"transportErrors", r.transportErrors},
              {"otherStatuses", others}};
  if (!r.firstUnexpected.empty()) out["firstUnexpected"] = r.firstUnexpected;
  if (r.serverCpuSec >= 0) {
    out["serverCpuSec"] = r.serverCpuSec;
    out["serverCpuUsPerAck"] =
        r.acknowledged > 0 ? r.serverCpuSec * 1e6 / static_cast<double>(r.acknowledged) : 0.0;
  }
  out["clientCpuSec"] = selfCpuSec();
  if (r.machineBusyCores >= 0) {
    out["machineBusyCores"] = r.machineBusyCores;
    // What the rest of the machine (other processes) used while this ran.
    if (r.serverCpuSec >= 0 && r.clientCpuSecWindow >= 0) {
      out["otherBusyCores"] = std::max(
          0.0, r.machineBusyCores - (r.serverCpuSec + r.clientCpuSecWindow) / opt.durationSec);
    }
  }
  out["loadAvg1"] = {r.loadBefore, r.loadAfter};
  return out;
}

// Keeps `clients` copies of `opt.exec` running; exit status 0 counts as acknowledged.
int runExec(const Options& opt) {
  std::vector<char*> argv;
  std::vector<std::string> words = opt.exec;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);

  std::map<pid_t, Clock::time_point> running;
  Results r;
  r.latenciesMs.reserve(1 << 16);
  r.loadBefore = loadAvg1();
  auto spawnOne = [&]() -> bool {
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    if (rc != 0) {
      std::cerr << "submit_bench: cannot run " << opt.exec[0] << ": " << std::strerror(rc) << "\n";
      return false;
    }
    running.emplace(pid, Clock::now());
    return true;
  };
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point windowStart = t0 + seconds(opt.warmupSec);
  const Clock::time_point windowEnd = windowStart + seconds(opt.durationSec);
  for (int i = 0; i < opt.clients; ++i) {
    if (!spawnOne()) return 1;
  }
  Window window;
  bool windowOpen = false;
  bool windowClosed = false;
  while (!running.empty()) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    Clock::time_point now = Clock::now();
    // The window's edges are taken at the first exit past them (exits come every few ms).
    if (!windowOpen && now >= windowStart) {
      windowOpen = true;
      window.open(opt);
    }
    if (!windowClosed && now >= windowEnd) {
      windowClosed = true;
      window.close(opt, r);
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    Clock::time_point started = it->second;
    running.erase(it);
    if (now >= windowStart && now < windowEnd) {
      ++r.total;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ++r.acknowledged;
        r.latenciesMs.push_back(std::chrono::duration<double, std::milli>(now - started).count());
      } else {
        long code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ++r.otherStatuses[code];
        if (r.firstUnexpected.empty()) r.firstUnexpected = "exit " + std::to_string(code);
      }
    }
    if (now < windowEnd && !spawnOne()) break;
  }
  posix_spawn_file_actions_destroy(&actions);
  r.loadAfter = loadAvg1();
  json out = report(opt, r);
  out["command"] = opt.exec;
  std::cout << out.dump() << std::endl;
  return r.acknowledged > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  if (!opt.exec.empty()) return runExec(opt);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::cerr << "submit_bench: curl_global_init failed\n";
    return 1;
  }

  const std::string body = !opt.body.empty()
                               ? opt.body
                               : json{{"applicationName", "bench"},
                                      {"owner", {{"teamEmail", "bench@example.com"}}},
                                      {"container",
                                       {{"image", "busybox:latest"},
                                        {"command", {"true"}},
                                        {"resources", {{"cpu", 0.1}, {"memoryMB", 64}}}}},
                                      {"batch", {{"size", opt.batchSize}}}}
                                     .dump();
  const std::string endpoint = opt.url + opt.path;
  const std::string authorization = "Authorization: Bearer " + opt.token;
  // Keys stay unique across runs against the same server.
  std::mt19937_64 rng(std::random_device{}());
  const std::string runId = std::to_string(rng() % 1000000000000ULL);

  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(opt.clients * 2));
  std::vector<Slot> slots(static_cast<size_t>(opt.clients));
  uint64_t sequence = 0;

  auto start = [&](Slot& slot) {
    curl_slist_free_all(slot.headers);
    slot.headers = nullptr;
    if (!opt.token.empty()) slot.headers = curl_slist_append(slot.headers, authorization.c_str());
    for (const std::string& header : opt.headers) {
      slot.headers = curl_slist_append(slot.headers, header.c_str());
    }
    slot.headers = curl_slist_append(slot.headers, "Content-Type: application/json");
    slot.headers = curl_slist_append(slot.headers, "Expect:");
    std::string key = "Idempotency-Key: bench-" + runId + "-" + std::to_string(sequence++);
    slot.headers = curl_slist_append(slot.headers, key.c_str());
    curl_easy_setopt(slot.easy, CURLOPT_HTTPHEADER, slot.headers);
    slot.response.clear();
    slot.started = Clock::now();
    slot.active = true;
    curl_multi_add_handle(multi, slot.easy);
  };

  for (Slot& slot : slots) {
    slot.easy = curl_easy_init();
    curl_easy_setopt(slot.easy, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(slot.easy, CURLOPT_POST, 1L);
    curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(slot.easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(slot.easy, CURLOPT_WRITEDATA, &slot.response);
    curl_easy_setopt(slot.easy, CURLOPT_PRIVATE, &slot);
    curl_easy_setopt(slot.easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(slot.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(slot.easy, CURLOPT_TIMEOUT_MS, 30000L);
  }

  const Clock::time_point t0 = Clock::now();
  const Clock::time_point windowStart = t0 + seconds(opt.warmupSec);
  const Clock::time_point windowEnd = windowStart + seconds(opt.durationSec);
  // Requests still in flight this long after the window are abandoned.
  const Clock::time_point drainEnd = windowEnd + std::chrono::seconds(30);

  for (Slot& slot : slots) start(slot);

  Results r;
  r.latenciesMs.reserve(1 << 20);
  r.loadBefore = loadAvg1();
  size_t active = slots.size();
  Window window;
  bool windowOpen = false;
  bool windowClosed = false;

  while (active > 0) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Slot* slot = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &slot);
      CURLcode result = msg->data.result;
      curl_multi_remove_handle(multi, msg->easy_handle);
      Clock::time_point now = Clock::now();
      slot->active = false;
      --active;
      if (now >= windowStart && now < windowEnd) {
        ++r.total;
        if (result != CURLE_OK) {
          ++r.transportErrors;
          if (r.firstUnexpected.empty()) r.firstUnexpected = curl_easy_strerror(result);
        } else {
          long status = 0;
          curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
          if (status == opt.expectStatus &&
              (opt.expectBody.empty() ||
               slot->response.find(opt.expectBody) != std::string::npos)) {
            ++r.acknowledged;
            r.latenciesMs.push_back(
                std::chrono::duration<double, std::milli>(now - slot->started).count());
          } else {
            ++r.otherStatuses[status];
            if (r.firstUnexpected.empty()) {
              r.firstUnexpected = std::to_string(status) + " " + slot->response;
            }
          }
        }
      }
      if (now < windowEnd) {
        start(*slot);
        ++active;
      }
    }
    Clock::time_point now = Clock::now();
    if (!windowOpen && now >= windowStart) {
      windowOpen = true;
      window.open(opt);
    }
    if (!windowClosed && now >= windowEnd) {
      windowClosed = true;
      window.close(opt, r);
    }
    if (now >= drainEnd) break;
    if (active > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }

  for (Slot& slot : slots) {
    if (slot.active) curl_multi_remove_handle(multi, slot.easy);
    curl_easy_cleanup(slot.easy);
    curl_slist_free_all(slot.headers);
  }
  curl_multi_cleanup(multi);
  curl_global_cleanup();

  r.loadAfter = loadAvg1();
  std::cout << report(opt, r).dump() << std::endl;
  return r.acknowledged > 0 ? 0 : 1;
}
