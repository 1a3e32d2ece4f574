// skiffd: the Skiff control plane, and with --with-agent the all-in-one node. Parses flags and
// hands over to runDaemon (controlplane/daemon.h).

#include <malloc.h>

#include <memory>

#include <CLI/CLI.hpp>

#include "controlplane/daemon.h"
#include "local/embedded_agent.h"
#include "local/skiffd_flags.h"

int main(int argc, char** argv) {
  // Every request allocates and frees many small objects on several threads. glibc's defaults
  // return each arena's free top to the kernel (madvise) and grow it again (mprotect, page
  // faults) over and over under a steady load; keeping up to 64 MiB per arena and growing in
  // 16 MiB steps removed those system calls from the submission path (docs/benchmarks.md).
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  skiff::local::SkiffdFlags flags;
  CLI::App app{"skiffd: the Skiff control plane"};
  skiff::local::addSkiffdFlags(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::unique_ptr<skiff::local::EmbeddedAgent> agent;
  if (flags.withAgent) agent = std::make_unique<skiff::local::EmbeddedAgent>(flags.agent);
  return skiff::controlplane::runDaemon(flags.daemon, agent.get());
}
