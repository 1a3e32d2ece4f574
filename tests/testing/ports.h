#pragma once

// Ports for test servers that must be told theirs before they start (etcd, skiffd, the registry).

namespace skiff::testing {

// A loopback TCP port nobody listens on: the kernel's pick for a socket bound to port 0, closed
// again (0 when the kernel gave none). Another process may take it before the caller does; tests
// start their server at once.
int unusedLoopbackPort();

}  // namespace skiff::testing
