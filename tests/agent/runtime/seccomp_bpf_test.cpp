#include "agent/runtime/seccomp_bpf.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "agent/runtime/seccomp_profile.h"

namespace skiff::agent::runtime {
namespace {

using json = nlohmann::json;

// Loads `program` in a child and returns the child's exit code: what `probe` returned.
template <typename Probe>
int runUnderFilter(const std::string& program, Probe probe) {
  pid_t pid = fork();
  if (pid == 0) {
    sock_fprog fprog{static_cast<unsigned short>(program.size() / sizeof(sock_filter)),
                     reinterpret_cast<sock_filter*>(const_cast<char*>(program.data()))};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) _exit(101);
    _exit(probe());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

TEST(SeccompBpf, DefaultProfileCompilesAndFiltersLikeTheProfile) {
  auto program = compileSeccompBpf(defaultSeccompProfile());
  ASSERT_TRUE(program) << program.error().message();
  ASSERT_EQ(program->size() % sizeof(sock_filter), 0u);
  // Allowed: getpid; personality with an allowed argument (PER_LINUX).
  EXPECT_EQ(runUnderFilter(*program, [] { return getpid() > 0 ? 0 : 1; }), 0);
  EXPECT_EQ(runUnderFilter(*program, [] { return personality(0) < 0 ? 1 : 0; }), 0);
  // Denied by argument: personality with any other persona fails with EPERM.
  EXPECT_EQ(
      runUnderFilter(*program, [] { return personality(0x1234) < 0 && errno == EPERM ? 0 : 1; }),
      0);
  // Denied by name: acct is not on the allowlist.
  EXPECT_EQ(runUnderFilter(*program,
                           [] { return syscall(SYS_acct, nullptr) < 0 && errno == EPERM ? 0 : 1; }),
            0);
}

TEST(SeccompBpf, HonoursErrnoRetAndSkipsUnknownSyscalls) {
  json profile = {{"defaultAction", "SCMP_ACT_ALLOW"},
                  {"architectures", {"SCMP_ARCH_X86_64"}},
                  {"syscalls",
                   {{{"names", {"getppid", "no_such_syscall_anywhere"}},
                     {"action", "SCMP_ACT_ERRNO"},
                     {"errnoRet", 38}}}}};
  auto program = compileSeccompBpf(profile);
  ASSERT_TRUE(program) << program.error().message();
  // glibc's getppid() never sets errno; the raw syscall does.
  EXPECT_EQ(
      runUnderFilter(*program, [] { return syscall(SYS_getppid) < 0 && errno == 38 ? 0 : 1; }), 0);
  EXPECT_EQ(runUnderFilter(*program, [] { return getpid() > 0 ? 0 : 1; }), 0);
}

TEST(SeccompBpf, RejectsWhatItCannotCompile) {
  json base = {{"defaultAction", "SCMP_ACT_ERRNO"}, {"syscalls", json::array()}};
  json badAction = base;
  badAction["defaultAction"] = "SCMP_ACT_MAYBE";
  auto result = compileSeccompBpf(badAction);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find("SCMP_ACT_MAYBE"), std::string::npos);

  json badOp = base;
  badOp["syscalls"] = {{{"names", {"read"}},
                        {"action", "SCMP_ACT_ALLOW"},
                        {"args", {{{"index", 0}, {"value", 1}, {"op", "SCMP_CMP_ROUGHLY"}}}}}};
  EXPECT_FALSE(compileSeccompBpf(badOp));

  json badArch = base;
  badArch["architectures"] = {"SCMP_ARCH_PDP11"};
  EXPECT_FALSE(compileSeccompBpf(badArch));

  json flags = base;
  flags["flags"] = {"SECCOMP_FILTER_FLAG_LOG"};
  EXPECT_FALSE(compileSeccompBpf(flags));
}

TEST(SeccompBpf, Base64MatchesTheStandardAlphabet) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode(std::string("\xfb\xff", 2)), "+/8=");
}

}  // namespace
}  // namespace skiff::agent::runtime
