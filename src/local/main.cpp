// skiffd: the Skiff control plane, and with --with-agent the all-in-one node. Parses flags and
// hands over to runDaemon (controlplane/daemon.h).

#include <memory>

#include <CLI/CLI.hpp>

#include "controlplane/daemon.h"
#include "local/embedded_agent.h"
#include "local/skiffd_flags.h"

int main(int argc, char** argv) {
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
