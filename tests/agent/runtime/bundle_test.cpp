#include "agent/runtime/bundle.h"

#include <algorithm>

#include <gtest/gtest.h>

namespace skiff::agent::runtime {
namespace {

BundleSpec baseSpec() {
  BundleSpec spec;
  spec.rootfsPath = "/var/lib/skiff/rootfs/c1";
  spec.args = {"/bin/sh", "-c", "echo hi"};
  spec.env = {"FOO=bar"};
  spec.uid = 1000;
  spec.gid = 1000;
  spec.cgroupsPath = "/skiff/c1";
  spec.initPath = "/usr/bin/tini-static";
  return spec;
}

bool contains(const nlohmann::json& array, const std::string& value) {
  return std::find(array.begin(), array.end(), value) != array.end();
}

TEST(Bundle, HardeningDefaults) {
  auto config = buildOciConfig(baseSpec());
  ASSERT_TRUE(config) << config.error().message();
  const auto& process = (*config)["process"];
  EXPECT_EQ(process["noNewPrivileges"], true);
  EXPECT_EQ(process["user"]["uid"], 1000);
  for (const char* set : {"bounding", "effective", "permitted"}) {
    EXPECT_EQ(process["capabilities"][set].size(), 14u) << set;
    EXPECT_TRUE(contains(process["capabilities"][set], "CAP_AUDIT_WRITE"));
    EXPECT_FALSE(contains(process["capabilities"][set], "CAP_SYS_ADMIN"));
  }
  EXPECT_FALSE(process["capabilities"].contains("ambient"));
  EXPECT_FALSE(process["capabilities"].contains("inheritable"));
  EXPECT_EQ(defaultCapabilityMask(), 0xa80425fbULL);

  const auto& lin = (*config)["linux"];
  std::vector<std::string> namespaces;
  for (const auto& ns : lin["namespaces"]) namespaces.push_back(ns["type"]);
  EXPECT_EQ(namespaces,
            (std::vector<std::string>{"pid", "mount", "uts", "ipc", "network", "cgroup"}));
  EXPECT_TRUE(contains(lin["maskedPaths"], "/proc/kcore"));
  EXPECT_TRUE(contains(lin["maskedPaths"], "/sys/firmware"));
  EXPECT_TRUE(contains(lin["readonlyPaths"], "/proc/sys"));
  EXPECT_EQ(lin["cgroupsPath"], "/skiff/c1");
  EXPECT_EQ(lin["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");

  bool sysReadonly = false;
  for (const auto& mount : (*config)["mounts"]) {
    if (mount["destination"] == "/sys") sysReadonly = contains(mount["options"], "ro");
  }
  EXPECT_TRUE(sysReadonly);
  // tini is pid 1 and execs the user's args.
  EXPECT_EQ(process["args"][0], "/.skiff/init");
  EXPECT_EQ(process["args"][1], "--");
  EXPECT_EQ(process["args"][2], "/bin/sh");
  EXPECT_EQ(process["cwd"], "/");
  EXPECT_TRUE(contains(process["env"], "FOO=bar"));
}

TEST(Bundle, SeccompLeavesDangerousCallsOut) {
  auto config = buildOciConfig(baseSpec());
  ASSERT_TRUE(config);
  nlohmann::json allowed = nlohmann::json::array();
  for (const auto& rule : (*config)["linux"]["seccomp"]["syscalls"]) {
    if (rule["action"] == "SCMP_ACT_ALLOW" && !rule.contains("args")) allowed = rule["names"];
  }
  ASSERT_GT(allowed.size(), 250u);
  for (const char* name : {"mount", "umount2", "pivot_root", "ptrace", "bpf", "keyctl", "add_key",
                           "kexec_load", "reboot", "setns", "unshare", "init_module", "acct",
                           "open_by_handle_at", "perf_event_open", "userfaultfd", "clone3"}) {
    EXPECT_FALSE(contains(allowed, name)) << name;
  }
  EXPECT_TRUE(contains(allowed, "read"));
  EXPECT_TRUE(contains(allowed, "execve"));
}

TEST(Bundle, PrecompiledSeccompGoesIntoCrunsAnnotation) {
  auto plain = buildOciConfig(baseSpec());
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->contains("annotations"));
  BundleSpec spec = baseSpec();
  spec.seccompBpfBase64 = "AAAA";
  auto config = buildOciConfig(spec);
  ASSERT_TRUE(config);
  EXPECT_EQ((*config)["annotations"]["run.oci.seccomp_bpf_data"], "AAAA");
  // runc ignores the annotation: the profile stays.
  EXPECT_TRUE((*config)["linux"].contains("seccomp"));
  spec.seccomp = false;
  auto without = buildOciConfig(spec);
  ASSERT_TRUE(without);
  EXPECT_FALSE(without->contains("annotations"));
}

TEST(Bundle, Limits) {
  BundleSpec spec = baseSpec();
  spec.cpuCores = 1.5;
  spec.memoryBytes = 16 << 20;
  spec.pidsLimit = 100;
  spec.nofile = 4096;
  auto config = buildOciConfig(spec);
  ASSERT_TRUE(config);
  const auto& resources = (*config)["linux"]["resources"];
  EXPECT_EQ(resources["cpu"]["shares"], 1536);
  EXPECT_EQ(resources["cpu"]["quota"], 150000);
  EXPECT_EQ(resources["cpu"]["period"], 100000);
  EXPECT_EQ(resources["memory"]["limit"], 16 << 20);
  EXPECT_EQ(resources["memory"]["swap"], 16 << 20);
  EXPECT_EQ(resources["pids"]["limit"], 100);
  EXPECT_EQ((*config)["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
  EXPECT_EQ((*config)["process"]["rlimits"][0]["hard"], 4096);

  spec.swapAccounting = false;
  auto noSwap = buildOciConfig(spec);
  ASSERT_TRUE(noSwap);
  EXPECT_FALSE((*noSwap)["linux"]["resources"]["memory"].contains("swap"));
}

TEST(Bundle, GpuDevices) {
  BundleSpec spec = baseSpec();
  spec.devices = {{"/dev/nvidia0", 195, 0}, {"/dev/nvidiactl", 195, 255}};
  spec.gpuIndices = "0";
  auto config = buildOciConfig(spec);
  ASSERT_TRUE(config);
  EXPECT_EQ((*config)["linux"]["devices"].size(), 2u);
  EXPECT_TRUE(contains((*config)["process"]["env"], "NVIDIA_VISIBLE_DEVICES=0"));
  bool allowed = false;
  for (const auto& rule : (*config)["linux"]["resources"]["devices"]) {
    if (rule.value("major", -1) == 195 && rule.value("minor", -1) == 255) allowed = rule["allow"];
  }
  EXPECT_TRUE(allowed);
  spec.devices = {{"/etc/passwd", 1, 1}};
  EXPECT_FALSE(buildOciConfig(spec));
}

TEST(Bundle, RejectsBadInput) {
  BundleSpec spec = baseSpec();
  spec.cwd = "/proc/self/fd/7";
  auto config = buildOciConfig(spec);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(config.error().message().find("cwd"), std::string::npos);
  spec.cwd = "/app/../..";
  EXPECT_FALSE(buildOciConfig(spec));
  spec = baseSpec();
  spec.args.clear();
  EXPECT_FALSE(buildOciConfig(spec));
  spec = baseSpec();
  spec.rootfsPath = "relative";
  EXPECT_FALSE(buildOciConfig(spec));
  spec = baseSpec();
  spec.env = {"NOEQUALS"};
  EXPECT_FALSE(buildOciConfig(spec));
}

TEST(Bundle, ResolveArgsFollowsDocker) {
  std::vector<std::string> ep{"/entry"};
  std::vector<std::string> cmd{"a", "b"};
  EXPECT_EQ(resolveArgs(ep, cmd, std::nullopt, std::nullopt),
            (std::vector<std::string>{"/entry", "a", "b"}));
  EXPECT_EQ(resolveArgs(ep, cmd, std::nullopt, std::vector<std::string>{"c"}),
            (std::vector<std::string>{"/entry", "c"}));
  EXPECT_EQ(resolveArgs(ep, cmd, std::vector<std::string>{"/other"}, std::nullopt),
            (std::vector<std::string>{"/other"}));
  EXPECT_EQ(resolveArgs({}, cmd, std::nullopt, std::nullopt), cmd);
}

}  // namespace
}  // namespace skiff::agent::runtime
