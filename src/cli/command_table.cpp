#include <map>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "api/states.h"
#include "cli/commands.h"
#include "cli/session.h"
#include "cli/verbs/verbs.h"

namespace skiff::cli {

using nlohmann::json;

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
