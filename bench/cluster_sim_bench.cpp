// cluster_sim_bench: a million tasks through the real control plane with simulated agents
// (docs/benchmarks.md, "Scheduler").
//
// 1. Starts skiffd (`--skiffd`) on a fresh `--state-dir` (SQLite store), on a free loopback port.
// 2. `--agents` simulated agents register over the agent API (POST /v1/nodes; 32 cores,
//    128 GiB each, zones z0..z2) and then each runs the agent's protocol loop on its own
//    keep-alive connection: long-poll GET /v1/nodes/{id}/assignments?delta=true (applying
//    deltas as the agent does), report every new Launched task as StartInitiated then Started
//    in one POST /v1/nodes/{id}/taskStatus, and heartbeat. Nothing is run; the agents share
//    `--threads` threads (Boost.Beast over one io_context). An answer without a Launched task
//    or a removed one is not parsed beyond its revision (unlike a real agent), so that the
//    simulation leaves the cores to skiffd.
// 3. Once every agent is registered, `--submitters` clients create `--jobs` batch jobs of
//    `--tasks-per-job` tasks (POST /v1/jobs), and the clock runs until the agents have reported
//    every task Started (each report answered 200). Then GET /v1/jobs checks the Started count.
//
// Prints progress once a second on stderr (jobs acknowledged, tasks seen Launched, tasks
// reported Started, CPU seconds of skiffd and of this program) and one JSON object on stdout.
//
// Usage:
//   cluster_sim_bench --skiffd build/src/local/skiffd --state-dir DIR [--agents 10000]
//                     [--jobs 1000] [--tasks-per-job 1000] [--cpu 0.25] [--memory-mb 1024]
//                     [--submitters 4] [--threads 2] [--poll-ms 5000] [--heartbeat-ms 10000]
//                     [--timeout 600] [--log-level warn] [--skiffd-threads N]

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "bench_util.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string skiffd;
  std::string stateDir;
  int agents = 10000;
  int jobs = 1000;
  int tasksPerJob = 1000;
  double cpu = 0.25;
  int64_t memoryMB = 1024;
  int submitters = 4;
  int threads = 2;
  int pollMs = 5000;
  int heartbeatMs = 10000;
  double timeoutSec = 600;
  std::string logLevel = "warn";
  int skiffdThreads = 0;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr
      << "cluster_sim_bench: " << problem << "\n"
      << "usage: cluster_sim_bench --skiffd PATH --state-dir DIR [--agents N] [--jobs N]\n"
      << "       [--tasks-per-job N] [--cpu C] [--memory-mb M] [--submitters N] [--threads N]\n"
      << "       [--poll-ms MS] [--heartbeat-ms MS] [--timeout SEC] [--log-level LEVEL]\n"
      << "       [--skiffd-threads N]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage(arg + " needs a value");
    std::string value = argv[++i];
    if (arg == "--skiffd") {
      o.skiffd = value;
    } else if (arg == "--state-dir") {
      o.stateDir = value;
    } else if (arg == "--agents") {
      o.agents = std::stoi(value);
    } else if (arg == "--jobs") {
      o.jobs = std::stoi(value);
    } else if (arg == "--tasks-per-job") {
      o.tasksPerJob = std::stoi(value);
    } else if (arg == "--cpu") {
      o.cpu = std::stod(value);
    } else if (arg == "--memory-mb") {
      o.memoryMB = std::stoll(value);
    } else if (arg == "--submitters") {
      o.submitters = std::stoi(value);
    } else if (arg == "--threads") {
      o.threads = std::stoi(value);
    } else if (arg == "--poll-ms") {
      o.pollMs = std::stoi(value);
    } else if (arg == "--heartbeat-ms") {
      o.heartbeatMs = std::stoi(value);
    } else if (arg == "--timeout") {
      o.timeoutSec = std::stod(value);
    } else if (arg == "--log-level") {
      o.logLevel = value;
    } else if (arg == "--skiffd-threads") {
      o.skiffdThreads = std::stoi(value);
    } else {
      usage("unknown argument " + arg);
    }
  }
  if (o.skiffd.empty() || o.stateDir.empty()) usage("--skiffd and --state-dir are needed");
  if (o.agents < 1 || o.jobs < 1 || o.tasksPerJob < 1 || o.submitters < 1 || o.threads < 1) {
    usage("bad numbers");
  }
  return o;
}

std::atomic<pid_t> childPid = 0;

void killChild() {
  pid_t pid = childPid.exchange(0);
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void die(const std::string& message) {
  std::cerr << "cluster_sim_bench: " << message << "\n";
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
    // Agents are simulated: a slow report must not mark nodes Lost or tasks timed out.
    std::vector<std::string> args = {opt.skiffd,    "--state-dir",
                                     opt.stateDir,  "--listen",
                                     "127.0.0.1:0", "--port-file",
                                     portFile,      "--log-level",
                                     opt.logLevel,  "--node-timeout",
                                     "600",         "--launched-timeout",
                                     "600",         "--start-initiated-timeout",
                                     "600"};
    // Room for 10,000+ node address blocks of 254 task addresses each.
    for (const char* arg : {"--vpc-cidr", "10.64.0.0/10", "--node-block-prefix", "24"}) {
      args.emplace_back(arg);
    }
    if (opt.skiffdThreads > 0) {
      args.push_back("--threads");
      args.push_back(std::to_string(opt.skiffdThreads));
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(opt.skiffd.c_str(), argv.data());
    ::_exit(127);
  }
  childPid = pid;
  return pid;
}

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Counters shared by the agents, the submitters and the monitor.
struct Progress {
  std::atomic<int64_t> registered{0};
  std::atomic<int64_t> jobsCreated{0};
  std::atomic<int64_t> launchedSeen{0};  // Distinct tasks seen Launched by their agent.
  std::atomic<int64_t> started{0};       // Tasks whose Started report was answered 200.
  std::atomic<int64_t> polls{0};
  std::atomic<int64_t> pollsSkipped{0};  // Answers with no Launched task, not parsed.
  std::atomic<int64_t> pollBytes{0};
  std::atomic<int64_t> fullAnswers{0};  // Answers listing all of the node's tasks.
  std::atomic<int64_t> reports{0};
  std::atomic<int64_t> heartbeats{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> submit{false};
  std::atomic<bool> stop{false};
};

// One keep-alive HTTP/1.1 connection to skiffd.
class Connection {
 public:
  Connection(asio::any_io_executor executor, int port, std::string token)
      : stream_(executor), port_(port), token_(std::move(token)) {}

  asio::awaitable<http::response<http::string_body>> request(http::verb verb, std::string target,
                                                             std::string body,
                                                             std::chrono::seconds timeout) {
    for (int attempt = 0;; ++attempt) {
      boost::system::error_code ec;
      if (!connected_) {
        stream_.expires_after(std::chrono::seconds(30));
        tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"),
                               static_cast<unsigned short>(port_));
        co_await stream_.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          stream_.close();
          if (attempt >= 20) throw boost::system::system_error(ec);
          asio::steady_timer pause(stream_.get_executor(), std::chrono::milliseconds(100));
          co_await pause.async_wait(asio::use_awaitable);
          continue;
        }
        stream_.socket().set_option(tcp::no_delay(true));
        connected_ = true;
      }
      http::request<http::string_body> request{verb, target, 11};
      request.set(http::field::host, "127.0.0.1");
      request.set(http::field::authorization, "Bearer " + token_);
      if (verb == http::verb::post) {
        request.set(http::field::content_type, "application/json");
        request.body() = body;
      }
      request.keep_alive(true);
      request.prepare_payload();
      stream_.expires_after(timeout);
      co_await http::async_write(stream_, request, asio::redirect_error(asio::use_awaitable, ec));
      http::response<http::string_body> response;
      if (!ec) {
        http::response_parser<http::string_body> parser;
        parser.body_limit(512u << 20);
        co_await http::async_read(stream_, buffer_, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) response = parser.release();
      }
      if (ec) {
        // A closed keep-alive connection: reconnect and send again (all requests here are
        // safe to repeat).
        stream_.close();
        connected_ = false;
        buffer_.clear();
        if (attempt >= 20) throw boost::system::system_error(ec);
        continue;
      }
      if (!response.keep_alive()) {
        stream_.close();
        connected_ = false;
        buffer_.clear();
      }
      co_return response;
    }
  }

 private:
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  int port_;
  std::string token_;
  bool connected_ = false;
};

asio::awaitable<void> runAgent(const Options& opt, int index, int port, std::string token,
                               Progress& progress) {
  Connection connection(co_await asio::this_coro::executor, port, token);
  const std::string id = "sim-" + std::to_string(index);
  json registration = {
      {"id", id},
      {"resources",
       {{"cpu", 32},
        {"memoryMB", 131072},
        {"diskMB", 1000000},
        {"networkMbps", 25000},
        {"gpu", 0}}},
      {"attributes",
       {{"zone", "z" + std::to_string(index % 3)}, {"machineType", index % 2 == 0 ? "m5" : "r5"}}}};
  auto registered = co_await connection.request(http::verb::post, "/v1/nodes", registration.dump(),
                                                std::chrono::seconds(120));
  if (registered.result_int() != 200 && registered.result_int() != 201) {
    ++progress.errors;
    std::cerr << "register " << id << ": " << registered.result_int() << " " << registered.body()
              << "\n";
    co_return;
  }
  ++progress.registered;

  int64_t revision = 0;
  std::unordered_set<std::string> reported;
  // Seen Launched but not yet reported: a delta lists a task once per change, so a report that
  // failed is sent again from here rather than after the next answer.
  std::vector<std::string> unreported;
  Clock::time_point lastHeartbeat = Clock::now();
  const std::string base = "/v1/nodes/" + id;
  while (!progress.stop) {
    if (secondsSince(lastHeartbeat) * 1000 >= opt.heartbeatMs) {
      auto beat = co_await connection.request(http::verb::post, base + "/heartbeat", "{}",
                                              std::chrono::seconds(120));
      if (beat.result_int() != 200) ++progress.errors;
      ++progress.heartbeats;
      lastHeartbeat = Clock::now();
    }
    std::string target = base +
                         "/assignments?delta=true&afterRevision=" + std::to_string(revision) +
                         "&waitMs=" + std::to_string(opt.pollMs);
    auto polled =
        co_await connection.request(http::verb::get, target, "", std::chrono::seconds(300));
    ++progress.polls;
    progress.pollBytes += static_cast<int64_t>(polled.body().size());
    if (polled.result_int() != 200) {
      ++progress.errors;
      continue;
    }
    // Most answers list only tasks already reported: read the revision and skip the parse (a
    // real agent parses every answer; the simulated ones share the cores with skiffd).
    const std::string& text = polled.body();
    if (text.find(R"("full":true)") != std::string::npos) ++progress.fullAnswers;
    if (unreported.empty() && text.find(R"("state":"Launched")") == std::string::npos &&
        text.find(R"("removed":[")") == std::string::npos) {
      constexpr std::string_view kRevision = R"({"revision":)";
      if (text.starts_with(kRevision)) {
        revision = std::strtoll(text.c_str() + kRevision.size(), nullptr, 10);
        ++progress.pollsSkipped;
        continue;
      }
    }
    json answer = json::parse(text, nullptr, false);
    if (!answer.is_object()) {
      ++progress.errors;
      continue;
    }
    revision = answer.value("revision", revision);
    if (auto removed = answer.find("removed"); removed != answer.end() && removed->is_array()) {
      for (const json& id : *removed) {
        if (id.is_string()) reported.erase(id.get<std::string>());
      }
    }
    std::vector<std::string> fresh = std::move(unreported);
    unreported.clear();
    for (const json& assignment : answer["assignments"]) {
      const json& task = assignment["task"];
      if (task.value("state", "") != "Launched") continue;
      std::string taskId = task.value("id", "");
      if (reported.contains(taskId) ||
          std::find(fresh.begin(), fresh.end(), taskId) != fresh.end()) {
        continue;
      }
      ++progress.launchedSeen;
      fresh.push_back(std::move(taskId));
    }
    if (fresh.empty()) continue;
    json updates = json::array();
    for (const std::string& taskId : fresh) {
      updates.push_back({{"taskId", taskId}, {"seq", 1}, {"state", "StartInitiated"}});
      updates.push_back({{"taskId", taskId}, {"seq", 2}, {"state", "Started"}});
    }
    json report = {{"updates", std::move(updates)}};
    auto answered = co_await connection.request(http::verb::post, base + "/taskStatus",
                                                report.dump(), std::chrono::seconds(300));
    ++progress.reports;
    if (answered.result_int() != 200) {
      ++progress.errors;
      unreported = std::move(fresh);  // Reported again after the next poll.
      continue;
    }
    progress.started += static_cast<int64_t>(fresh.size());
    for (std::string& taskId : fresh) reported.insert(std::move(taskId));
  }
}

asio::awaitable<void> runSubmitter(const Options& opt, int port, std::string token,
                                   std::atomic<int>& next, Progress& progress) {
  Connection connection(co_await asio::this_coro::executor, port, token);
  const std::string body = json{{"applicationName", "c1m"},
                                {"owner", {{"teamEmail", "bench@example.com"}}},
                                {"container",
                                 {{"image", "busybox:latest"},
                                  {"command", {"true"}},
                                  {"resources", {{"cpu", opt.cpu}, {"memoryMB", opt.memoryMB}}}}},
                                {"batch", {{"size", opt.tasksPerJob}}}}
                               .dump();
  for (int job = next++; job < opt.jobs && !progress.stop; job = next++) {
    auto answer =
        co_await connection.request(http::verb::post, "/v1/jobs", body, std::chrono::seconds(300));
    if (answer.result_int() != 201 && answer.result_int() != 200) {
      ++progress.errors;
      std::cerr << "create job: " << answer.result_int() << " " << answer.body() << "\n";
      continue;
    }
    ++progress.jobsCreated;
  }
}

// Started tasks over all jobs, from GET /v1/jobs.
asio::awaitable<int64_t> countStarted(int port, std::string token) {
  Connection connection(co_await asio::this_coro::executor, port, token);
  int64_t started = 0;
  std::string cursor;
  for (;;) {
    std::string target = "/v1/jobs?limit=1000";
    if (!cursor.empty()) target += "&cursor=" + cursor;
    auto answer =
        co_await connection.request(http::verb::get, target, "", std::chrono::seconds(300));
    if (answer.result_int() != 200) co_return -1;
    json page = json::parse(answer.body());
    for (const json& job : page["items"]) started += job["taskCounts"].value("Started", 0);
    if (!page.contains("nextCursor")) break;
    cursor = page["nextCursor"].get<std::string>();
  }
  co_return started;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  ::signal(SIGINT, onSignal);
  ::signal(SIGTERM, onSignal);
  ::signal(SIGHUP, onSignal);
  std::filesystem::create_directories(opt.stateDir);
  const std::string portFile = opt.stateDir + "/port";
  std::filesystem::remove(portFile);
  pid_t pid = spawnSkiffd(opt, portFile);

  int port = 0;
  Clock::time_point bootStart = Clock::now();
  while (port == 0) {
    if (secondsSince(bootStart) > 60) die("skiffd did not write its port within 60 s");
    std::ifstream in(portFile);
    if (!(in >> port)) port = 0;
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string token = skiff::bench::readToken(opt.stateDir + "/admin.token");
  if (token.empty()) die("no admin token in " + opt.stateDir);

  Progress progress;
  asio::io_context io;
  auto failed = [&progress](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      ++progress.errors;
      std::cerr << "cluster_sim_bench: " << e.what() << "\n";
    }
  };
  Clock::time_point registerStart = Clock::now();
  for (int i = 0; i < opt.agents; ++i) {
    asio::co_spawn(io, runAgent(opt, i, port, token, progress), failed);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < opt.threads; ++i) threads.emplace_back([&io] { io.run(); });

  const int64_t total = static_cast<int64_t>(opt.jobs) * opt.tasksPerJob;
  auto cpuOf = [](pid_t process) { return skiff::bench::processCpuSec(process); };
  double registerSec = 0;
  while (progress.registered < opt.agents) {
    if (secondsSince(registerStart) > opt.timeoutSec) die("agents did not register in time");
    if (progress.errors > 0 && progress.registered + progress.errors >= opt.agents) {
      die("some agents failed to register");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  registerSec = secondsSince(registerStart);
  std::cerr << "registered " << opt.agents << " agents in " << registerSec << " s\n";

  double skiffdCpu0 = cpuOf(pid);
  double selfCpu0 = cpuOf(::getpid());
  Clock::time_point start = Clock::now();
  std::atomic<int> nextJob = 0;
  for (int i = 0; i < opt.submitters; ++i) {
    asio::co_spawn(io, runSubmitter(opt, port, token, nextJob, progress), failed);
  }
  double submittedSec = -1;
  double firstLaunchSec = -1;
  std::vector<json> timeline;
  Clock::time_point lastPrint = start;
  bool timedOut = false;
  while (progress.started < total) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    double now = secondsSince(start);
    if (submittedSec < 0 && progress.jobsCreated >= opt.jobs) submittedSec = now;
    if (firstLaunchSec < 0 && progress.launchedSeen > 0) firstLaunchSec = now;
    if (now > opt.timeoutSec) {
      timedOut = true;
      break;
    }
    if (secondsSince(lastPrint) >= 1) {
      lastPrint = Clock::now();
      json point = {{"t", std::round(now * 10) / 10},
                    {"jobs", progress.jobsCreated.load()},
                    {"launchedSeen", progress.launchedSeen.load()},
                    {"started", progress.started.load()},
                    {"skiffdCpu", cpuOf(pid) - skiffdCpu0},
                    {"benchCpu", cpuOf(::getpid()) - selfCpu0}};
      std::cerr << point.dump() << "\n";
      timeline.push_back(std::move(point));
    }
  }
  double elapsed = secondsSince(start);
  double skiffdCpu = cpuOf(pid) - skiffdCpu0;
  double selfCpu = cpuOf(::getpid()) - selfCpu0;
  progress.stop = true;

  // Check the store's view through the API while the agents wind down.
  int64_t startedInApi = -1;
  if (!timedOut) {
    std::promise<int64_t> counted;
    auto result = counted.get_future();
    asio::co_spawn(io, countStarted(port, token), [&counted](std::exception_ptr error, int64_t n) {
      counted.set_value(error ? -1 : n);
    });
    startedInApi = result.get();
  }
  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) < 0) load[0] = -1;
  killChild();
  io.stop();
  for (std::thread& thread : threads) thread.join();

  json out = {{"agents", opt.agents},
              {"jobs", opt.jobs},
              {"tasksPerJob", opt.tasksPerJob},
              {"tasks", total},
              {"registerSec", registerSec},
              {"allStartedSec", timedOut ? -1.0 : elapsed},
              {"timedOut", timedOut},
              {"submittedSec", submittedSec},
              {"firstLaunchSeenSec", firstLaunchSec},
              {"started", progress.started.load()},
              {"startedInApi", startedInApi},
              {"tasksPerSec", elapsed > 0 ? static_cast<double>(progress.started) / elapsed : 0},
              {"skiffdCpuSec", skiffdCpu},
              {"benchCpuSec", selfCpu},
              {"polls", progress.polls.load()},
              {"pollsNotParsed", progress.pollsSkipped.load()},
              {"pollMiB", static_cast<double>(progress.pollBytes) / (1 << 20)},
              {"fullAnswers", progress.fullAnswers.load()},
              {"reports", progress.reports.load()},
              {"heartbeats", progress.heartbeats.load()},
              {"errors", progress.errors.load()},
              {"loadAverage1m", load[0]},
              {"timeline", timeline}};
  std::cout << out.dump() << "\n";
  return timedOut || progress.errors > 0 ? 1 : 0;
}
