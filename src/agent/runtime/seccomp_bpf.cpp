#include "agent/runtime/seccomp_bpf.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "common/encoding.h"

namespace skiff::agent::runtime {
namespace {

using json = nlohmann::json;

struct ContextDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

Result<uint32_t> actionOf(const json& object, std::string_view actionKey, std::string_view errnoKey,
                          uint32_t defaultErrno) {
  std::string name = object.value(std::string(actionKey), "");
  uint32_t errnoRet = defaultErrno;
  const json* value = object.contains(errnoKey) ? &object[std::string(errnoKey)] : nullptr;
  if (value != nullptr && value->is_number_integer() && value->get<int64_t>() >= 0) {
    errnoRet = value->get<uint32_t>();
  }
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errnoRet);
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(errnoRet);
  return fail(ErrorCode::kInvalidArgument, "seccomp: unsupported action \"" + name + "\"");
}

Result<scmp_compare> operatorOf(const std::string& name) {
  if (name == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (name == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (name == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (name == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
  if (name == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (name == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (name == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  return fail(ErrorCode::kInvalidArgument, "seccomp: unsupported operator \"" + name + "\"");
}

Result<uint32_t> architectureOf(const std::string& name) {
  // "SCMP_ARCH_X86_64" -> libseccomp's "x86_64".
  constexpr std::string_view kPrefix = "SCMP_ARCH_";
  std::string shortName = name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : name;
  for (char& c : shortName) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  uint32_t token = seccomp_arch_resolve_name(shortName.c_str());
  if (token == 0) {
    return fail(ErrorCode::kInvalidArgument, "seccomp: unknown architecture \"" + name + "\"");
  }
  return token;
}

}  // namespace

Result<std::string> compileSeccompBpf(const json& seccomp) {
  if (!seccomp.is_object()) return fail(ErrorCode::kInvalidArgument, "seccomp: not an object");
  if (seccomp.contains("flags") && !seccomp["flags"].empty()) {
    return fail(ErrorCode::kInvalidArgument, "seccomp: flags cannot be precompiled");
  }
  uint32_t defaultErrno = EPERM;
  if (seccomp.contains("defaultErrnoRet") && seccomp["defaultErrnoRet"].is_number_integer() &&
      seccomp["defaultErrnoRet"].get<int64_t>() >= 0) {
    defaultErrno = seccomp["defaultErrnoRet"].get<uint32_t>();
  }
  auto defaultAction = actionOf(seccomp, "defaultAction", "defaultErrnoRet", defaultErrno);
  if (!defaultAction) return std::unexpected(defaultAction.error());

  Context ctx(seccomp_init(*defaultAction));
  if (!ctx) return fail(ErrorCode::kInternal, "seccomp_init failed");
  // The runtimes do not set no_new_privs through the filter attribute; the bundle does.
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  for (const json& arch : seccomp.value("architectures", json::array())) {
    if (!arch.is_string()) return fail(ErrorCode::kInvalidArgument, "seccomp: bad architecture");
    auto token = architectureOf(arch.get<std::string>());
    if (!token) return std::unexpected(token.error());
    int rc = seccomp_arch_add(ctx.get(), *token);
    if (rc != 0 && rc != -EEXIST) {
      return std::unexpected(errnoError("seccomp_arch_add " + arch.get<std::string>(), -rc));
    }
  }

  for (const json& rule : seccomp.value("syscalls", json::array())) {
    auto action = actionOf(rule, "action", "errnoRet", defaultErrno);
    if (!action) return std::unexpected(action.error());
    // libseccomp refuses rules that repeat the default action; they change nothing.
    if (*action == *defaultAction) continue;
    std::vector<scmp_arg_cmp> comparisons;
    for (const json& arg : rule.value("args", json::array())) {
      auto op = operatorOf(arg.value("op", ""));
      if (!op) return std::unexpected(op.error());
      comparisons.push_back(scmp_arg_cmp{arg.value("index", 0u), *op,
                                         arg.value("value", uint64_t{0}),
                                         arg.value("valueTwo", uint64_t{0})});
    }
    for (const json& name : rule.value("names", json::array())) {
      if (!name.is_string()) return fail(ErrorCode::kInvalidArgument, "seccomp: bad name");
      int number = seccomp_syscall_resolve_name(name.get<std::string>().c_str());
      if (number == __NR_SCMP_ERROR) continue;  // Not a syscall of this libseccomp/kernel.
      int rc = seccomp_rule_add_array(ctx.get(), *action, number,
                                      static_cast<unsigned int>(comparisons.size()),
                                      comparisons.empty() ? nullptr : comparisons.data());
      if (rc != 0) {
        return std::unexpected(errnoError("seccomp_rule_add " + name.get<std::string>(), -rc));
      }
    }
  }

  int fd = memfd_create("skiff-seccomp", MFD_CLOEXEC);
  if (fd < 0) return std::unexpected(errnoError("memfd_create", errno));
  int rc = seccomp_export_bpf(ctx.get(), fd);
  if (rc != 0) {
    close(fd);
    return std::unexpected(errnoError("seccomp_export_bpf", -rc));
  }
  std::string program;
  char buffer[4096];
  lseek(fd, 0, SEEK_SET);
  while (true) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return std::unexpected(errnoError("read seccomp program", err));
    }
    if (n == 0) break;
    program.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (program.empty() || program.size() % 8 != 0) {
    return fail(ErrorCode::kInternal, "seccomp: libseccomp exported no program");
  }
  return program;
}

std::string base64Encode(std::string_view bytes) {
  return skiff::base64Encode(bytes);
}

}  // namespace skiff::agent::runtime
