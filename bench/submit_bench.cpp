// submit_bench: durable job submissions acknowledged per second, measured the same way for Skiff
// and its peers.
//
// HTTP mode (per connection): keeps `--clients` requests in flight at all times, one per
// keep-alive HTTP/1.1 connection (TCP_NODELAY, no pipelining): each connection sends its next
// request as soon as the previous answer is read. All connections are Boost.Beast coroutines on one
// io_context thread, so that the load generator takes as little of the machine's CPU as possible.
// By default each request is `POST /v1/jobs` with a small valid batch job and a unique
// Idempotency-Key; skiffd answers only once the job is durable (fsync'ed), so every 201 is an
// acknowledged durable submission. `--path`, `--body-file`, `--header`, `--expect-status` and
// `--expect-body` point the same harness at another API (e.g. slurmrestd's job submission); any
// other answer or a transport error is counted apart, and a connection that failed is opened
// again. A request gets 30 s from its start to its full answer.
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
// Usage (plain HTTP only; a name in the URL is resolved once):
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
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
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
  app.add_option("--url", o.url, "Server base URL: http://HOST[:PORT] (no https)")
      ->capture_default_str();
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

// Where `--url` points: plain HTTP only.
struct Target {
  std::string host;
  std::string port = "80";
  std::string authority;  // The Host header: the URL's host and port as written.
  std::string basePath;   // Any path in the URL, put before `--path`.
};

Target parseUrl(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) {
    std::cerr << "submit_bench: --url must be http://HOST[:PORT] (https is not supported)\n";
    std::exit(2);
  }
  Target t;
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    t.basePath = rest.substr(slash);
    rest.resize(slash);
  }
  t.authority = rest;
  // An IPv6 literal is bracketed: [::1]:7070.
  size_t hostEnd = 0;
  if (rest.starts_with('[')) {
    hostEnd = rest.find(']');
    if (hostEnd == std::string::npos) hostEnd = rest.size();
    t.host = rest.substr(1, hostEnd - 1);
    ++hostEnd;
  } else {
    hostEnd = rest.find(':');
    if (hostEnd == std::string::npos) hostEnd = rest.size();
    t.host = rest.substr(0, hostEnd);
  }
  if (hostEnd < rest.size() && rest[hostEnd] == ':') t.port = rest.substr(hostEnd + 1);
  if (t.host.empty() || t.port.empty()) {
    std::cerr << "submit_bench: cannot parse --url " << url << "\n";
    std::exit(2);
  }
  return t;
}

// A response body of which only the first 4 KiB are kept: enough to check it and to show what an
// unexpected answer said, while a larger answer is still read to its end.
struct PrefixBody {
  using value_type = std::string;
  static constexpr size_t kKept = 4096;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>& /*header*/, value_type& body) : body_(body) {}
    void init(const boost::optional<std::uint64_t>& /*length*/, beast::error_code& ec) { ec = {}; }
    template <class ConstBufferSequence>
    size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      ec = {};
      for (auto buffer : beast::buffers_range_ref(buffers)) {
        if (body_.size() >= kKept) break;
        body_.append(static_cast<const char*>(buffer.data()),
                     std::min(buffer.size(), kKept - body_.size()));
      }
      return beast::buffer_bytes(buffers);
    }
    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

// What every connection of the HTTP mode shares; all of it lives on the one io_context thread.
struct HttpRun {
  const Options& opt;
  Results& results;
  tcp::endpoint endpoint;
  http::request<http::string_body> prototype;  // Every request, less its Idempotency-Key.
  std::string keyPrefix;                       // "bench-RUNID-"
  uint64_t sequence = 0;
  Clock::time_point windowStart;
  Clock::time_point windowEnd;
};

http::request<http::string_body> makeRequest(const Options& opt, const Target& target,
                                             const std::string& body) {
  http::request<http::string_body> request{http::verb::post, target.basePath + opt.path, 11};
  request.set(http::field::host, target.authority);
  request.set(http::field::accept, "*/*");
  if (!opt.token.empty()) request.set(http::field::authorization, "Bearer " + opt.token);
  request.set(http::field::content_type, "application/json");
  // `--header` lines replace the harness's own header of the same name; "Name:" with no value
  // only removes it.
  std::vector<std::pair<std::string, std::string>> extra;
  for (const std::string& line : opt.headers) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      std::cerr << "submit_bench: --header must be 'Name: value': " << line << "\n";
      std::exit(2);
    }
    size_t valueStart = line.find_first_not_of(" \t", colon + 1);
    std::string value = valueStart == std::string::npos ? "" : line.substr(valueStart);
    extra.emplace_back(line.substr(0, colon), value);
  }
  for (auto& [name, value] : extra) request.erase(name);
  for (auto& [name, value] : extra) {
    if (!value.empty()) request.insert(name, value);
  }
  request.keep_alive(true);
  request.body() = body;
  request.prepare_payload();
  return request;
}

void record(HttpRun& run, Clock::time_point started, const beast::error_code& ec,
            const http::response<PrefixBody>* response) {
  Clock::time_point now = Clock::now();
  if (now < run.windowStart || now >= run.windowEnd) return;
  Results& r = run.results;
  ++r.total;
  if (ec) {
    ++r.transportErrors;
    if (r.firstUnexpected.empty()) r.firstUnexpected = ec.message();
    return;
  }
  long status = static_cast<long>(response->result_int());
  const std::string& body = response->body();
  if (status == run.opt.expectStatus &&
      (run.opt.expectBody.empty() || body.find(run.opt.expectBody) != std::string::npos)) {
    ++r.acknowledged;
    r.latenciesMs.push_back(std::chrono::duration<double, std::milli>(now - started).count());
  } else {
    ++r.otherStatuses[status];
    if (r.firstUnexpected.empty()) r.firstUnexpected = std::to_string(status) + " " + body;
  }
}

// One keep-alive connection with one request in flight; the next request goes out as soon as
// the previous answer is read, until the window ends.
asio::awaitable<void> runConnection(HttpRun& run) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  beast::flat_buffer buffer;
  // Beast reads no more than the buffer's free capacity (at least 512 bytes) at a time; room for
  // its largest read (64 KiB) takes most answers in one read.
  buffer.reserve(64 * 1024);
  http::request<http::string_body> request = run.prototype;
  bool connected = false;
  bool reused = false;  // The connection has answered before.
  while (Clock::now() < run.windowEnd) {
    request.set("Idempotency-Key", run.keyPrefix + std::to_string(run.sequence++));
    const Clock::time_point started = Clock::now();
    // One deadline for the whole request, reconnecting included.
    stream.expires_after(std::chrono::seconds(30));
    beast::error_code ec;
    std::optional<http::response_parser<PrefixBody>> parser;
    for (int attempt = 0; attempt < 2; ++attempt) {
      ec = {};
      parser.reset();
      if (!connected) {
        co_await stream.async_connect(run.endpoint, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) stream.socket().set_option(tcp::no_delay(true), ec);
        connected = !ec;
      }
      if (!ec) {
        co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec) {
        parser.emplace();
        parser->body_limit(std::numeric_limits<std::uint64_t>::max());
        co_await http::async_read(stream, buffer, *parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec) break;
      // A kept-alive connection the server closed before answering is opened again and the
      // request sent once more, as libcurl does; anything else is a transport error.
      bool unanswered = !parser.has_value() || !parser->got_some();
      bool retry = reused && unanswered && ec != beast::error::timeout;
      stream.close();
      connected = false;
      reused = false;
      buffer.consume(buffer.size());
      if (!retry) break;
    }
    if (ec) {
      record(run, started, ec, nullptr);
      continue;
    }
    record(run, started, ec, &parser->get());
    reused = true;
    if (!parser->get().keep_alive()) {
      stream.close();
      connected = false;
      reused = false;
      buffer.consume(buffer.size());
    }
  }
}

// Takes the CPU counters at the window's edges.
asio::awaitable<void> runWindow(HttpRun& run, Window& window) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  beast::error_code ec;
  timer.expires_at(run.windowStart);
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  window.open(run.opt);
  timer.expires_at(run.windowEnd);
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  window.close(run.opt, run.results);
}

// The server's address, looked up once. Of a name with several addresses, the first that accepts
// a connection now (the first address when none does), so that no request waits on an address the
// server does not listen on.
std::optional<tcp::endpoint> resolveOnce(asio::io_context& io, const Target& target) {
  tcp::resolver resolver(io);
  beast::error_code ec;
  tcp::resolver::results_type endpoints = resolver.resolve(target.host, target.port, ec);
  if (ec || endpoints.empty()) {
    std::cerr << "submit_bench: cannot resolve " << target.host << ": " << ec.message() << "\n";
    return std::nullopt;
  }
  if (endpoints.size() == 1) return endpoints.begin()->endpoint();
  for (const auto& entry : endpoints) {
    tcp::socket probe(io);
    probe.connect(entry.endpoint(), ec);
    if (!ec) return entry.endpoint();
  }
  return endpoints.begin()->endpoint();
}

int runHttp(const Options& opt) {
  const Target target = parseUrl(opt.url);
  const std::string body =
      !opt.body.empty() ? opt.body : skiff::bench::benchBatchJob(opt.batchSize);
  asio::io_context io(1);
  std::optional<tcp::endpoint> endpoint = resolveOnce(io, target);
  if (!endpoint) return 2;
  // Keys stay unique across runs against the same server.
  std::mt19937_64 rng(std::random_device{}());
  Results r;
  r.latenciesMs.reserve(1 << 20);
  r.loadBefore = loadAvg1();
  const Clock::time_point t0 = Clock::now();
  HttpRun run{.opt = opt,
              .results = r,
              .endpoint = *endpoint,
              .prototype = makeRequest(opt, target, body),
              .keyPrefix = "bench-" + std::to_string(rng() % 1000000000000ULL) + "-",
              .windowStart = t0 + seconds(opt.warmupSec),
              .windowEnd = t0 + seconds(opt.warmupSec) + seconds(opt.durationSec)};
  auto rethrow = [](std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
  };
  Window window;
  asio::co_spawn(io, runWindow(run, window), rethrow);
  for (int i = 0; i < opt.clients; ++i) asio::co_spawn(io, runConnection(run), rethrow);
  // Requests in flight when the window ends are answered or time out (30 s) before this returns.
  io.run();
  r.loadAfter = loadAvg1();
  std::cout << report(opt, r).dump() << std::endl;
  return r.acknowledged > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  return opt.exec.empty() ? runHttp(opt) : runExec(opt);
}
