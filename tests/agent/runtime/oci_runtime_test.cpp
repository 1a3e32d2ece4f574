#include "agent/runtime/oci_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <sstream>

#include <gtest/gtest.h>

#include "agent/runtime/process_runner.h"
#include "testing/fake_process_runner.h"

namespace skiff::agent::runtime {
namespace {

using FakeRunner = skiff::testing::FakeProcessRunner;

TEST(RuncRuntime, CommandLines) {
  FakeRunner runner;
  RuncCompatibleRuntime runtime({.binary = "/usr/sbin/runc", .root = "/run/skiff-runc"}, runner);
  ASSERT_TRUE(runtime.create("c1", "/b", {.pidFile = "/b/pid"}));
  ASSERT_TRUE(runtime.start("c1"));
  ASSERT_TRUE(runtime.kill("c1", SIGTERM, false));
  ASSERT_TRUE(runtime.kill("c1", SIGKILL, true));
  ASSERT_TRUE(runtime.remove("c1", true));
  using V = std::vector<std::string>;
  ASSERT_EQ(runner.calls.size(), 5u);
  EXPECT_EQ(runner.calls[0], (V{"/usr/sbin/runc", "--root", "/run/skiff-runc", "create", "--bundle",
                                "/b", "--pid-file", "/b/pid", "c1"}));
  EXPECT_EQ(runner.calls[1], (V{"/usr/sbin/runc", "--root", "/run/skiff-runc", "start", "c1"}));
  EXPECT_EQ(runner.calls[2],
            (V{"/usr/sbin/runc", "--root", "/run/skiff-runc", "kill", "c1", "15"}));
  EXPECT_EQ(runner.calls[3],
            (V{"/usr/sbin/runc", "--root", "/run/skiff-runc", "kill", "--all", "c1", "9"}));
  EXPECT_EQ(runner.calls[4],
            (V{"/usr/sbin/runc", "--root", "/run/skiff-runc", "delete", "--force", "c1"}));
}

TEST(RuncRuntime, StateAndErrors) {
  FakeRunner runner;
  RuncCompatibleRuntime runtime({}, runner);
  runner.next.out = R"({"ociVersion":"1.0.2","id":"c1","pid":42,"status":"running",
                        "bundle":"/b","rootfs":"/r"})";
  auto state = runtime.state("c1");
  ASSERT_TRUE(state) << state.error().message();
  EXPECT_EQ(state->status, "running");
  EXPECT_EQ(state->pid, 42);

  runner.next = {.exitCode = 1, .err = "container \"c2\" does not exist\n"};
  auto missing = runtime.state("c2");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(runtime.remove("c2", true));  // Deleting a missing container is fine.

  runner.next = {.exitCode = 1, .err = "boom"};
  auto failed = runtime.start("c1");
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("boom"), std::string::npos);
  EXPECT_FALSE(runtime.create("../evil", "/b", {}));
}

TEST(ContainerId, Validation) {
  EXPECT_TRUE(isValidContainerId("task-1.a_b"));
  EXPECT_FALSE(isValidContainerId(""));
  EXPECT_FALSE(isValidContainerId("-x"));
  EXPECT_FALSE(isValidContainerId("a/b"));
  EXPECT_FALSE(isValidContainerId(std::string(65, 'a')));
}

TEST(PosixRunner, ExitCodesSignalsTimeouts) {
  PosixProcessRunner runner;
  auto ok = runner.run({.argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->exitCode, 3);
  EXPECT_EQ(ok->out, "out\n");
  EXPECT_EQ(ok->err, "err\n");
  auto killed = runner.run({.argv = {"/bin/sh", "-c", "kill -9 $$"}});
  ASSERT_TRUE(killed);
  EXPECT_EQ(killed->signal, 9);
  auto slow = runner.run({.argv = {"/bin/sleep", "10"}, .timeout = std::chrono::milliseconds(100)});
  ASSERT_TRUE(slow);
  EXPECT_TRUE(slow->timedOut);
  EXPECT_FALSE(runner.run({.argv = {"sh"}}));  // Not absolute.
}

TEST(PosixRunner, NoDescriptorLeaks) {
  // A descriptor opened without O_CLOEXEC must still not reach the child.
  int leaky = open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 3);
  PosixProcessRunner runner;
  auto result = runner.run({.argv = {"/bin/sh", "-c", "ls /proc/$$/fd"}});
  close(leaky);
  ASSERT_TRUE(result);
  std::istringstream lines(result->out);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(line == "0" || line == "1" || line == "2") << "leaked fd " << line;
  }
}

TEST(PosixRunner, EnvironmentIsExactlyTheSpec) {
  PosixProcessRunner runner;
  auto result = runner.run({.argv = {"/usr/bin/env"}, .env = {"A=1"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->out, "A=1\n");
}

}  // namespace
}  // namespace skiff::agent::runtime

namespace skiff::agent::runtime {
namespace {

TEST(ChooseRuntime, HybridHostFallsBackToRunc) {
  CgroupLayout hybrid{.mode = CgroupMode::kHybrid,
                      .v1Mounts = {{"memory", "/sys/fs/cgroup/memory"}},
                      .v2Mount = "/sys/fs/cgroup/unified"};
  // /bin/true stands in for both binaries: only the layout decides here.
  auto choice = chooseRuntime(true, hybrid, "/bin/true", "/bin/sh");
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->binary, "/bin/sh");
  EXPECT_NE(choice->note.find("hybrid"), std::string::npos);
  hybrid.v1Mounts["hugetlb"] = "/sys/fs/cgroup/hugetlb";
  choice = chooseRuntime(true, hybrid, "/bin/true", "/bin/sh");
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->binary, "/bin/true");
  CgroupLayout v2{.mode = CgroupMode::kV2, .v2Mount = "/sys/fs/cgroup"};
  EXPECT_EQ(chooseRuntime(true, v2, "/bin/true", "/bin/sh")->binary, "/bin/true");
  EXPECT_EQ(chooseRuntime(false, v2, "/bin/true", "/bin/sh")->binary, "/bin/sh");
  EXPECT_FALSE(chooseRuntime(true, hybrid, "/no/crun", "/no/runc"));
}

}  // namespace
}  // namespace skiff::agent::runtime
