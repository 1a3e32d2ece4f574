#pragma once

// The files through which skiff-monitor and the agent's ContainerSupervisor talk. Every file is
// written to a temporary name and renamed into place, so a reader sees all of it or nothing.
//
// In the container's directory:
//   monitor.pid    the monitor's pid, written once it has detached (setsid + double fork).
//   container.pid  the container init's host pid (written by the OCI runtime).
//   started        present once `run --detach` succeeded; holds the start time (ms since the
//                  epoch).
//   exit           the final status; its presence means the container is gone and deleted.
//                  Lines "key=value": exitCode (128+signal when killed by one; -1 when it never
//                  started), signal, oomKillCount (the memory cgroup's oom_kill counter at exit),
//                  startError (1 when create/start failed), finishedAtMs.
//   stdout.log, stderr.log (+ .1 .. .N)   the container's output, rotated by size.
//   runtime.log    the OCI runtime's own log (its errors on a failed create).
//
// Command line: skiff-monitor --dir DIR --id ID --bundle DIR [--oom-file PATH]
//                 [--log-max-bytes N] [--log-keep N] -- RUNTIME [RUNTIME GLOBAL ARGS...]

namespace skiff::agent::runtime::monitor_files {

inline constexpr const char* kMonitorPid = "monitor.pid";
inline constexpr const char* kContainerPid = "container.pid";
inline constexpr const char* kStarted = "started";
inline constexpr const char* kExit = "exit";
inline constexpr const char* kStdout = "stdout.log";
inline constexpr const char* kStderr = "stderr.log";
inline constexpr const char* kRuntimeLog = "runtime.log";

}  // namespace skiff::agent::runtime::monitor_files
