// Tiny static program put into the node-agent benchmark image as /bin/stamp: prints
// CLOCK_REALTIME in nanoseconds, so the first instruction a container runs can be compared with
// the agent's log timestamps. Built by bench/agent_benchmarks.sh with `g++ -static`.
#include <cstdio>
#include <ctime>

int main() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::printf("%lld\n", static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec);
  return 0;
}
