// million_tasks_bench: memory and restart time of skiffd holding a million tasks.
//
// 1. Starts skiffd (`--skiffd`) on a fresh `--state-dir`, on a free loopback port.
// 2. Creates `--jobs` batch jobs of `--batch-size` tasks each through the REST API
//    (`--concurrency` requests in flight). No node is registered, so every task stays Accepted.
// 3. Checks through GET /v1/jobs that skiffd holds jobs * batch-size tasks, waits `--settle`
//    seconds and reads VmRSS and VmHWM from /proc/PID/status.
// 4. `--restarts` times: kill -9, wait for the process to be gone, start skiffd again on the same
//    state directory and time from that start until GET /v1/jobs?limit=1 answers 200 with a job
//    (also reported from the kill). Then checks the task count again and reads VmRSS.
// 5. Kills skiffd. The child is also killed if this program dies (PR_SET_PDEATHSIG).
//
// Output: one JSON object on stdout.
//
// Usage:
//   million_tasks_bench --skiffd build/src/local/skiffd --state-dir DIR
//                       [--jobs 1000] [--batch-size 1000] [--concurrency 4] [--restarts 3]
//                       [--settle 3] [--log-level info]

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string skiffd;
  std::string stateDir;
  int jobs = 1000;
  int batchSize = 1000;
  int concurrency = 4;
  int restarts = 3;
  double settleSec = 3;
  std::string logLevel = "info";
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr
      << "million_tasks_bench: " << problem << "\n"
      << "usage: million_tasks_bench --skiffd PATH --state-dir DIR [--jobs N] [--batch-size N]\n"
      << "       [--concurrency N] [--restarts N] [--settle SEC] [--log-level LEVEL]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--skiffd") {
      o.skiffd = value();
    } else if (arg == "--state-dir") {
      o.stateDir = value();
    } else if (arg == "--jobs") {
      o.jobs = std::stoi(value());
    } else if (arg == "--batch-size") {
      o.batchSize = std::stoi(value());
    } else if (arg == "--concurrency") {
      o.concurrency = std::stoi(value());
    } else if (arg == "--restarts") {
      o.restarts = std::stoi(value());
    } else if (arg == "--settle") {
      o.settleSec = std::stod(value());
    } else if (arg == "--log-level") {
      o.logLevel = value();
    } else {
      usage("unknown argument " + arg);
    }
  }
  if (o.skiffd.empty() || o.stateDir.empty()) usage("--skiffd and --state-dir are needed");
  if (o.jobs < 1 || o.batchSize < 1 || o.batchSize > 10000 || o.concurrency < 1 || o.restarts < 0) {
    usage("bad numbers");
  }
  return o;
}

[[noreturn]] void die(const std::string& message);

// ---- The skiffd child ----

std::atomic<pid_t> childPid = 0;

void killChild() {
  pid_t pid = childPid.exchange(0);
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void die(const std::string& message) {
  std::cerr << "million_tasks_bench: " << message << "\n";
  killChild();
  std::exit(1);
}

void onSignal(int) {
  pid_t pid = childPid.load();
  if (pid > 0) ::kill(pid, SIGKILL);
  ::_exit(130);
}

pid_t spawnSkiffd(const Options& opt, const std::string& portFile) {
  std::string logPath = opt.stateDir + "/skiffd.log";
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::string listen = "127.0.0.1:0";
    std::vector<std::string> args = {opt.skiffd, "--state-dir", opt.stateDir,
                                     "--listen", listen,        "--port-file",
                                     portFile,   "--log-level", opt.logLevel};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(opt.skiffd.c_str(), argv.data());
    ::_exit(127);
  }
  childPid = pid;
  return pid;
}

bool childAlive(pid_t pid) {
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  return r == 0;
}

// The port once skiffd wrote it (it writes the file after recovery, once it listens).
std::optional<int> readPort(const std::string& portFile) {
  std::ifstream in(portFile);
  int port = 0;
  if (in >> port && port > 0) return port;
  return std::nullopt;
}

// ---- HTTP ----

size_t collect(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct HttpClient {
  CURL* easy = curl_easy_init();
  std::string token;
  ~HttpClient() { curl_easy_cleanup(easy); }

  // Returns the status (0 on a transport error) and fills `body`.
  long request(const std::string& method, const std::string& url, const std::string& payload,
               std::string& body, const std::string& idempotencyKey = "") {
    body.clear();
    curl_slist* headers = nullptr;
    std::string auth = "Authorization: Bearer " + token;
    headers = curl_slist_append(headers, auth.c_str());
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    std::string key = "Idempotency-Key: " + idempotencyKey;
    if (!idempotencyKey.empty()) headers = curl_slist_append(headers, key.c_str());
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    if (method == "POST") {
      curl_easy_setopt(easy, CURLOPT_POST, 1L);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    } else {
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = curl_easy_perform(easy);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) return 0;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
  }
};

// ---- Measurements ----

struct Memory {
  long rssKiB = 0;
  long hwmKiB = 0;
};

Memory readMemory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  Memory m;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) m.rssKiB = std::stol(line.substr(6));
    if (line.starts_with("VmHWM:")) m.hwmKiB = std::stol(line.substr(6));
  }
  return m;
}

// Average busy cores of the whole machine since `since` (from /proc/stat).
struct MachineCpu {
  double busy = 0;
  double total = 0;
  static MachineCpu now() {
    std::ifstream in("/proc/stat");
    std::string cpu;
    in >> cpu;
    MachineCpu m;
    double value = 0;
    for (int i = 0; i < 10 && in >> value; ++i) {
      m.total += value;
      if (i != 3 && i != 4) m.busy += value;  // Not idle, not iowait.
    }
    return m;
  }
  double busyCoresSince(const MachineCpu& start) const {
    if (total <= start.total) return -1;
    return (busy - start.busy) / (total - start.total) *
           static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
  }
};

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls until GET /v1/jobs?limit=1 answers 200 with one job. Returns the port; `listeningSec`
// gets the time until skiffd wrote its port file (it does so after recovery, once it listens).
int waitServing(pid_t pid, const std::string& portFile, const std::string& token, double timeoutSec,
                double& listeningSec) {
  Clock::time_point start = Clock::now();
  std::optional<int> port;
  HttpClient client;
  client.token = token;
  std::string body;
  while (secondsSince(start) < timeoutSec) {
    if (!childAlive(pid)) die("skiffd exited while starting; see its log in the state directory");
    if (!port) {
      port = readPort(portFile);
      if (port) listeningSec = secondsSince(start);
    }
    if (port) {
      std::string url = "http://127.0.0.1:" + std::to_string(*port) + "/v1/jobs?limit=1";
      if (client.request("GET", url, "", body) == 200) {
        json page = json::parse(body, nullptr, false);
        if (page.is_object() && page.contains("items") && page["items"].is_array() &&
            !page["items"].empty()) {
          return *port;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  die("skiffd did not serve GET /v1/jobs within " + std::to_string(timeoutSec) + " s");
}

// Sums taskCounts over every job, paging through GET /v1/jobs.
std::pair<long, long> countJobsAndTasks(int port, const std::string& token) {
  HttpClient client;
  client.token = token;
  long jobs = 0;
  long tasks = 0;
  std::string cursor;
  std::string body;
  for (;;) {
    std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/jobs?limit=1000";
    if (!cursor.empty()) {
      char* escaped =
          curl_easy_escape(client.easy, cursor.c_str(), static_cast<int>(cursor.size()));
      url += "&cursor=";
      url += escaped;
      curl_free(escaped);
    }
    long status = client.request("GET", url, "", body);
    if (status != 200) die("GET /v1/jobs answered " + std::to_string(status) + ": " + body);
    json page = json::parse(body);
    for (const json& job : page["items"]) {
      ++jobs;
      for (auto& [state, count] : job["taskCounts"].items()) tasks += count.get<long>();
    }
    if (!page.contains("nextCursor")) break;
    cursor = page["nextCursor"].get<std::string>();
  }
  return {jobs, tasks};
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  ::signal(SIGINT, onSignal);
  ::signal(SIGTERM, onSignal);
  ::signal(SIGHUP, onSignal);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) die("curl_global_init failed");
  std::filesystem::create_directories(opt.stateDir);
  const std::string portFile = opt.stateDir + "/port";
  const long expectedTasks = static_cast<long>(opt.jobs) * opt.batchSize;
  const double startTimeoutSec = 600;

  // ---- Start and fill ----
  std::filesystem::remove(portFile);
  pid_t pid = spawnSkiffd(opt, portFile);
  std::optional<int> port;
  {
    Clock::time_point start = Clock::now();
    while (!(port = readPort(portFile))) {
      if (!childAlive(pid)) die("skiffd exited at start; see " + opt.stateDir + "/skiffd.log");
      if (secondsSince(start) > 30) die("skiffd wrote no port file in 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const std::string token = skiff::bench::readToken(opt.stateDir + "/admin.token");
  if (token.empty()) die("no admin token in " + opt.stateDir);
  const std::string jobsUrl = "http://127.0.0.1:" + std::to_string(*port) + "/v1/jobs";
  const std::string body = skiff::bench::benchBatchJob(opt.batchSize);

  std::atomic<int> next = 0;
  std::atomic<int> created = 0;
  std::mutex errorMu;
  std::string firstError;
  Clock::time_point fillStart = Clock::now();
  {
    std::vector<std::thread> workers;
    for (int w = 0; w < opt.concurrency; ++w) {
      workers.emplace_back([&] {
        HttpClient client;
        client.token = token;
        std::string answer;
        for (int i = next++; i < opt.jobs; i = next++) {
          long status = client.request("POST", jobsUrl, body, answer, "fill-" + std::to_string(i));
          if (status == 201) {
            ++created;
          } else {
            std::lock_guard lock(errorMu);
            if (firstError.empty())
              firstError = std::to_string(status) + " " + answer.substr(0, 300);
          }
        }
      });
    }
    for (auto& w : workers) w.join();
  }
  double fillSec = secondsSince(fillStart);
  if (created != opt.jobs) {
    die("created " + std::to_string(created.load()) + " of " + std::to_string(opt.jobs) +
        " jobs; first failure: " + firstError);
  }
  auto [jobsHeld, tasksHeld] = countJobsAndTasks(*port, token);
  if (tasksHeld != expectedTasks) {
    die("skiffd holds " + std::to_string(tasksHeld) + " tasks, expected " +
        std::to_string(expectedTasks));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(opt.settleSec));
  Memory filled = readMemory(pid);

  json out = {{"jobs", opt.jobs},
              {"batchSize", opt.batchSize},
              {"tasks", tasksHeld},
              {"fillSec", fillSec},
              {"tasksPerSecFill", static_cast<double>(tasksHeld) / fillSec},
              {"rssMiB", filled.rssKiB / 1024.0},
              {"hwmMiB", filled.hwmKiB / 1024.0}};

  // ---- Restarts ----
  json restarts = json::array();
  for (int r = 0; r < opt.restarts; ++r) {
    Clock::time_point killed = Clock::now();
    killChild();
    std::filesystem::remove(portFile);
    Clock::time_point started = Clock::now();
    MachineCpu machineAtStart = MachineCpu::now();
    pid = spawnSkiffd(opt, portFile);
    double listeningSec = 0;
    int newPort = waitServing(pid, portFile, token, startTimeoutSec, listeningSec);
    double fromStart = secondsSince(started);
    double fromKill = secondsSince(killed);
    double cpuSec = skiff::bench::processCpuSec(pid);
    double machineBusy = MachineCpu::now().busyCoresSince(machineAtStart);
    Memory justServing = readMemory(pid);
    auto [jobsAfter, tasksAfter] = countJobsAndTasks(newPort, token);
    if (tasksAfter != expectedTasks || jobsAfter != jobsHeld) {
      die("after restart skiffd holds " + std::to_string(jobsAfter) + " jobs and " +
          std::to_string(tasksAfter) + " tasks");
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.settleSec));
    Memory after = readMemory(pid);
    restarts.push_back({{"serveSecFromStart", fromStart},
                        {"listeningSecFromStart", listeningSec},
                        {"serveSecFromKill", fromKill},
                        // skiffd's CPU time until it served: independent of other load.
                        {"cpuSecUntilServing", cpuSec},
                        // Busy cores of the whole machine meanwhile (skiffd uses at most ~1).
                        {"machineBusyCores", machineBusy},
                        {"rssMiBWhenServing", justServing.rssKiB / 1024.0},
                        {"rssMiB", after.rssKiB / 1024.0},
                        {"hwmMiB", after.hwmKiB / 1024.0}});
  }
  out["restarts"] = restarts;
  if (!restarts.empty()) {
    std::vector<double> times;
    std::vector<double> rss;
    for (const json& r : restarts) {
      times.push_back(r["serveSecFromStart"].get<double>());
      rss.push_back(r["rssMiB"].get<double>());
    }
    out["restartSecMedian"] = skiff::bench::percentile(times, 0.5);
    out["restartRssMiBMedian"] = skiff::bench::percentile(rss, 0.5);
  }

  std::error_code ec;
  out["storeMiB"] = 0.0;
  double storeBytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(opt.stateDir, ec)) {
    if (entry.path().filename().string().starts_with("skiff.db")) {
      storeBytes += static_cast<double>(entry.file_size(ec));
    }
  }
  out["storeMiB"] = storeBytes / (1024.0 * 1024.0);
  killChild();
  curl_global_cleanup();
  std::cout << out.dump() << std::endl;
  return 0;
}
