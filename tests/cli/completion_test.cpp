// The generated completion scripts, exercised in a real bash.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/commands.h"
#include "testing/requirements.h"

namespace skiff::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::UnorderedElementsAre;
namespace fs = std::filesystem;

std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class BashCompletionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::access("/bin/bash", X_OK) != 0) return;
    script_ = new fs::path(fs::temp_directory_path() /
                           ("skiff-completion-" + std::to_string(::getpid()) + ".bash"));
    CommandLine commandLine;
    std::ofstream(*script_) << bashCompletion(commandLine);
  }
  static void TearDownTestSuite() {
    if (script_ != nullptr) fs::remove(*script_);
    delete script_;
    script_ = nullptr;
  }
  void SetUp() override {
    if (script_ == nullptr) GTEST_SKIP() << "no bash";
  }

  // What bash offers for the command line `words`, whose last word is being completed.
  static std::vector<std::string> complete(const std::vector<std::string>& words) {
    std::string array;
    for (const auto& word : words) array += quote(word) + " ";
    std::string command = "bash --norc --noprofile -c " +
                          quote("source " + script_->string() + "; COMP_WORDS=(" + array +
                                "); COMP_CWORD=" + std::to_string(words.size() - 1) +
                                "; _skiff; printf '%s\\n' \"${COMPREPLY[@]}\"");
    std::vector<std::string> lines;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return lines;
    std::string output;
    char buffer[4096];
    while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
    ::pclose(pipe);
    size_t start = 0;
    for (size_t end; (end = output.find('\n', start)) != std::string::npos; start = end + 1) {
      if (end > start) lines.push_back(output.substr(start, end - start));
    }
    return lines;
  }

  static fs::path* script_;
};

fs::path* BashCompletionTest::script_ = nullptr;

TEST_F(BashCompletionTest, TopLevelCommands) {
  EXPECT_THAT(complete({"skiff", ""}),
              UnorderedElementsAre("job", "task", "node", "capacity", "sg", "logs", "events",
                                   "completion", "version"));
  EXPECT_THAT(complete({"skiff", "j"}), UnorderedElementsAre("job"));
}

TEST_F(BashCompletionTest, GroupCommandsAfterGlobalOptions) {
  EXPECT_THAT(
      complete({"skiff", "--addr", "h:1", "-o", "json", "job", ""}),
      UnorderedElementsAre("run", "validate", "ls", "get", "wait", "kill", "scale", "enable",
                           "disable", "endpoints", "update", "history", "rollback", "promote"));
  EXPECT_THAT(complete({"skiff", "node", ""}), UnorderedElementsAre("ls", "get", "label", "drain"));
}

TEST_F(BashCompletionTest, OptionsIncludeGlobals) {
  EXPECT_THAT(complete({"skiff", "job", "run", "--"}),
              IsSupersetOf({"--wait", "--idempotency-key", "--help", "--addr", "--token",
                            "--config", "--output"}));
  EXPECT_THAT(complete({"skiff", "task", "kill", "--s"}), UnorderedElementsAre("--shrink"));
}

TEST_F(BashCompletionTest, OptionValues) {
  EXPECT_THAT(complete({"skiff", "-o", ""}), UnorderedElementsAre("table", "json", "yaml"));
  EXPECT_THAT(complete({"skiff", "job", "ls", "--state", ""}),
              UnorderedElementsAre("Accepted", "KillInitiated", "Finished"));
  EXPECT_THAT(complete({"skiff", "task", "ls", "--state", "S"}),
              UnorderedElementsAre("StartInitiated", "Started"));
  EXPECT_THAT(complete({"skiff", "job", "ls", "--type", ""}),
              UnorderedElementsAre("batch", "service"));
  EXPECT_THAT(complete({"skiff", "completion", ""}), UnorderedElementsAre("bash", "zsh"));
  EXPECT_TRUE(complete({"skiff", "--token", ""}).empty());
}

TEST_F(BashCompletionTest, FileArguments) {
  fs::path dir = fs::temp_directory_path() / ("skiff-compl-files-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "job-a.yaml") << "x";
  std::ofstream(dir / "job-b.yaml") << "x";
  std::string prefix = (dir / "job-").string();
  EXPECT_THAT(complete({"skiff", "job", "run", prefix}),
              UnorderedElementsAre(prefix + "a.yaml", prefix + "b.yaml"));
  EXPECT_THAT(complete({"skiff", "job", "validate", "--wait", prefix}).size(), 2u);
  fs::remove_all(dir);
}

// Runs the zsh script with the completion builtins replaced by stubs that print what they were
// given: enough to check the script's logic without an interactive shell.
class ZshCompletionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE(::access("/usr/bin/zsh", X_OK) == 0 || ::access("/bin/zsh", X_OK) == 0,
                  "zsh is not installed");
  }

  static std::string complete(const std::vector<std::string>& words) {
    fs::path script =
        fs::temp_directory_path() / ("skiff-completion-" + std::to_string(::getpid()) + ".zsh");
    CommandLine commandLine;
    std::ofstream(script) << zshCompletion(commandLine);
    std::string array;
    for (const auto& word : words) array += quote(word) + " ";
    std::string program =
        "compdef() { :; }\n"
        "_describe() { shift 2; print -r -- \"${(P)2}\"; }\n"
        "compadd() { if [[ $1 == -a ]]; then print -r -- \"${(P)2}\"; return; fi; "
        "[[ $1 == -- ]] && shift; print -r -- \"$*\"; }\n"
        "_files() { print -r -- FILES; }\n"
        "_message() { print -r -- MESSAGE; }\n"
        "source " +
        quote(script.string()) +
        "\n"
        "words=(" +
        array + "); CURRENT=" + std::to_string(words.size()) + "; _skiff\n";
    std::string command = "zsh -f -c " + quote(program);
    std::string output;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      char buffer[4096];
      while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
      ::pclose(pipe);
    }
    fs::remove(script);
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return output;
  }
};

TEST_F(ZshCompletionTest, CompletesLikeBash) {
  EXPECT_THAT(complete({"skiff", ""}), HasSubstr("job:Submit, inspect and control jobs"));
  EXPECT_THAT(complete({"skiff", "--addr", "h:1", "job", ""}), HasSubstr("scale:"));
  EXPECT_THAT(complete({"skiff", "task", "kill", "--"}), HasSubstr("--shrink:"));
  EXPECT_EQ(complete({"skiff", "-o", ""}), "table json yaml");
  EXPECT_EQ(complete({"skiff", "task", "ls", "--state", ""}),
            "Accepted Launched StartInitiated Started KillInitiated Finished");
  EXPECT_EQ(complete({"skiff", "job", "run", ""}), "FILES");
  EXPECT_EQ(complete({"skiff", "completion", ""}), "bash zsh");
  EXPECT_EQ(complete({"skiff", "--token", ""}), "MESSAGE");
}

TEST(ZshCompletionScriptTest, MentionsEveryCommandAndOption) {
  CommandLine commandLine;
  std::string script = zshCompletion(commandLine);
  EXPECT_THAT(script, HasSubstr("#compdef skiff"));
  for (const char* text : {"'run:Validate a job file", "(\"/job/run\")", "(\"/task/kill\")",
                           "'--shrink:", "'--idempotency-key:",
                           "(-o|--output) compadd -- 'table' "
                           "'json' 'yaml'",
                           "compdef _skiff skiff"}) {
    EXPECT_THAT(script, HasSubstr(text));
  }
}

}  // namespace
}  // namespace skiff::cli
