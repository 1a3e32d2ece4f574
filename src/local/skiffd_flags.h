#pragma once

// skiffd's command line: the control plane's options and, with `--with-agent`, the all-in-one
// node's.

#include "controlplane/daemon.h"
#include "local/embedded_agent.h"

namespace CLI {
class App;
}

namespace skiff::local {

struct SkiffdFlags {
  controlplane::DaemonOptions daemon;
  bool withAgent = false;  // Also run a node agent in this process.
  EmbeddedAgentOptions agent;
};

// Declares every flag on `app`, writing into `flags` when `app` parses.
void addSkiffdFlags(CLI::App& app, SkiffdFlags& flags);

}  // namespace skiff::local
