#pragma once

// The `skiff` verbs: the command table, argument parsing, and running a parsed command.
//
// The command table (command_table.cpp) is the single description of every verb: its place in the
// tree, help text, arguments and handler. Parsing, `--help` and shell completion are all derived
// from it, so adding a verb is one table entry plus its handler.
//
// Exit codes (docs/cli.md): 0 success; 1 job failed or invalid job file; 2 usage error; 3 cannot
// reach the server; 4 authentication (401/403); 5 not found (404); 6 conflict/precondition
// (409/412); 7 other server error.

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/config.h"
#include "cli/output.h"
#include "client/client.h"
#include "common/error.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace skiff::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,       // The job failed, or the job file is invalid.
  kExitUsage = 2,        // Bad arguments or configuration.
  kExitUnreachable = 3,  // No answer from the server.
  kExitAuth = 4,         // 401, 403.
  kExitNotFound = 5,     // 404.
  kExitConflict = 6,     // 409, 412.
  kExitServer = 7,       // Any other non-2xx answer.
};

// The exit code for a non-2xx HTTP status.
int exitCodeForStatus(long status);
// The exit code for a client-side error: kUnavailable (no answer) is 3, kInvalidArgument (bad
// flags or config) is 2, the categories that mirror HTTP statuses map as those statuses do, and
// anything else is 7.
int exitCodeForError(const Error& error);

// Everything a command line can say. Each verb reads only the fields its table entry binds.
struct Invocation {
  // Global flags.
  std::optional<std::string> addr;
  std::optional<std::string> token;
  std::optional<std::string> configPath;
  std::string output = "table";

  std::vector<std::string> path;  // The verb, e.g. {"job", "run"}.

  // Verb arguments.
  std::vector<std::string> files;  // job validate (several), job run (one).
  std::string id;
  bool wait = false;
  std::optional<std::string> idempotencyKey;
  std::optional<std::string> state;
  std::optional<std::string> type;
  std::optional<std::string> app;
  std::optional<std::string> job;
  std::optional<int64_t> limit;
  std::optional<std::string> cursor;
  bool all = false;
  std::optional<int64_t> min;
  std::optional<int64_t> desired;
  std::optional<int64_t> max;
  bool shrink = false;
  bool watch = false;               // job endpoints --watch.
  std::optional<int64_t> revision;  // job rollback [REV].
  std::optional<int64_t> fromRevision;
  bool follow = false;          // logs -f.
  std::optional<int64_t> tail;  // logs --tail.
  bool stderrStream = false;    // logs --stderr.
  std::string shell;
  std::vector<std::string> labels;      // node label: KEY=VALUE to set, KEY- to remove.
  std::optional<std::string> deadline;  // node drain --deadline: "90s", "30m", "1h".

  OutputFormat format() const;  // `output`, already checked by the parser.
};

// The process around a command, injectable for tests.
struct Context {
  std::ostream& out;
  std::ostream& err;
  std::istream& in;
  bool outIsTty = false;
  bool errIsTty = false;
  int terminalColumns = 0;  // Width of the terminal on stdout; 0 when unknown.
  ConfigSources config;     // Flags are filled in from the Invocation.
  // Builds the API client for a resolved configuration.
  std::function<std::unique_ptr<client::Api>(const ClientConfig&)> makeApi;
  std::function<void(std::chrono::milliseconds)> sleep;
  std::function<int64_t()> nowMs;
  std::function<std::string()> newIdempotencyKey;
};

// A fresh random Idempotency-Key: "skiff-" and 32 hex digits.
std::string randomIdempotencyKey();

// How to complete the value of an option or positional argument.
struct ValueHint {
  enum class Kind { kFree, kFile, kChoice };
  Kind kind = Kind::kFree;
  std::vector<std::string> choices;
};

struct Verb;

// The parsed command tree. Owns the CLI11 app, whose options write into `invocation()`; not
// copyable or movable for that reason.
class CommandLine {
 public:
  CommandLine();
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // Parses `args` (without the program name). Returns nullopt when a verb was selected and is
  // ready to run; otherwise the exit code to end with, having printed help (0) or a usage error
  // (2) to `out` / `err`. Never throws.
  std::optional<int> parse(const std::vector<std::string>& args, std::ostream& out,
                           std::ostream& err);

  const Invocation& invocation() const { return invocation_; }
  // The selected verb after a successful parse.
  const Verb* verb() const { return selected_; }
  const CLI::App& app() const { return *app_; }
  // The completion hint of an option or positional, kFree when none was declared.
  ValueHint hint(const CLI::Option* option) const;

 private:
  void build();

  std::unique_ptr<CLI::App> app_;
  Invocation invocation_;
  std::vector<std::pair<CLI::App*, const Verb*>> leaves_;
  std::map<const CLI::Option*, ValueHint> hints_;
  const Verb* selected_ = nullptr;
};

// Parses and runs one command line (without the program name); returns the exit code. Never
// throws.
int runCommandLine(const std::vector<std::string>& args, Context& context);

// Shell completion scripts generated from the command tree (completion.cpp).
std::string bashCompletion(const CommandLine& commandLine);
std::string zshCompletion(const CommandLine& commandLine);

}  // namespace skiff::cli
