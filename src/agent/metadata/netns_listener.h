#pragma once

// Listening sockets inside other network namespaces.
//
// A socket belongs to the namespace it was created in, whatever thread later uses it. So the
// metadata proxy creates each task's listener from a short-lived thread that has entered the
// container's namespace (setns), and then serves it from its ordinary I/O threads in the host
// namespace. Every connection accepted on that socket was made from inside that container: the
// caller is known by where it is, not by its (spoofable) source address.

#include <cstdint>
#include <functional>
#include <string>

#include "common/error.h"

namespace skiff::agent::metadata {

// Runs `fn` on a new thread that has joined the network namespace at `netnsPath`
// (/run/netns/NAME or /proc/PID/ns/net) and waits for it. The calling thread never moves.
Status runInNetns(const std::string& netnsPath, const std::function<Status()>& fn);

// In the calling thread's namespace: brings `lo` up and adds `ipv4`/32 to it (scope host, so it
// is never chosen as a source address for outside traffic). Already present is fine. Netlink via
// libmnl.
Status addLoopbackAddress(const std::string& ipv4);

// In the namespace at `netnsPath`: adds `ipv4`/32 to lo, binds a TCP listener to ipv4:port and
// returns its descriptor (close-on-exec). The caller owns it.
Result<int> listenInNetns(const std::string& netnsPath, const std::string& ipv4, uint16_t port);

}  // namespace skiff::agent::metadata
