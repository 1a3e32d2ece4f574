#pragma once

// The default seccomp profile: an allowlist in the spirit of Docker's default.json (moby/profiles
// seccomp/default.json): defaultAction SCMP_ACT_ERRNO (EPERM), the syscalls an ordinary
// unprivileged program uses allowed, and the dangerous ones (mount, umount2, pivot_root, ptrace,
// bpf, keyctl, add_key, request_key, kexec_*, init_module, reboot, setns, unshare, acct, swapon,
// clock_settime, settimeofday, open_by_handle_at, perf_event_open, userfaultfd, ...) left out so
// they fail with EPERM. clone is allowed only without namespace flags; clone3 fails with ENOSYS so
// libc falls back to clone, as Docker does.

#include <nlohmann/json.hpp>

namespace skiff::agent::runtime {

// The `linux.seccomp` object for an x86_64 / aarch64 host.
nlohmann::json defaultSeccompProfile();

}  // namespace skiff::agent::runtime
