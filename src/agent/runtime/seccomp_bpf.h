#pragma once

// Compiling an OCI `linux.seccomp` object to the BPF program the kernel loads.
//
// crun and runc compile the profile with libseccomp inside every `create`, which for the default
// allowlist costs ~18 ms per container here. crun also accepts the finished program through the
// `run.oci.seccomp_bpf_data` annotation (base64 of the bytes given to
// seccomp(SECCOMP_SET_MODE_FILTER)); the agent compiles the profile once, with the same library
// and the same rules, and hands crun the result.

#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff::agent::runtime {

inline constexpr std::string_view kSeccompBpfAnnotation = "run.oci.seccomp_bpf_data";

// The classic BPF program (an array of struct sock_filter) for `seccomp`, an OCI linux.seccomp
// object: defaultAction (+ defaultErrnoRet), architectures, and syscalls with names, action,
// errnoRet and args (index, value, valueTwo, op). Syscall names unknown to this libseccomp are
// skipped, as the runtimes do; unknown actions, operators or architectures are kInvalidArgument.
// `flags` is not supported (kInvalidArgument) because the annotation has no place for them.
Result<std::string> compileSeccompBpf(const nlohmann::json& seccomp);

// The annotation's value for `program`: standard base64 without line breaks.
std::string base64Encode(std::string_view bytes);

}  // namespace skiff::agent::runtime
