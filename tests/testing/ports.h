#pragma once

// Ports for test servers that must be told theirs before they start (etcd, skiffd with --listen).

namespace skiff::testing {

// A loopback TCP port nobody listens on: the kernel's pick for a socket bound to port 0, closed
// again. Another process may take it before the caller does; tests start at once.
int unusedLoopbackPort();

}  // namespace skiff::testing
