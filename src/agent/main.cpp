// skiff-agent: the node agent. It registers a node with skiffd, receives assignments and runs
// them as containers. This build has the control plane only; the agent comes with the node agent
// work, so this binary says so and exits.

#include <cstdio>

int main() {
  std::fputs(
      "skiff-agent: the node agent is not part of this build yet; skiffd accepts and "
      "tracks jobs, but nothing runs their containers\n",
      stderr);
  return 2;
}
