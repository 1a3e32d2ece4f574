#pragma once

// Several agents on one host (two all-in-one clusters, say) each take an instance name; every
// host-wide name an agent makes is derived from it, so two agents with different names never
// touch each other's resources:
//
//                         default instance ("")   instance NAME
//   nftables table        ip skiff                ip skiff-NAME
//   host veth links       skv + hash(ID)          skv + hash(NAME/ID)
//   cgroup parent         /skiff                  /skiff-NAME        (unless set explicitly)
//   state directory       /var/lib/skiff-agent    /var/lib/skiff-agent-NAME (unless set)
//   table claim           abstract unix socket skiff-agent/TABLE in the network namespace
//
// Everything else an agent makes is under its state directory (namespaces, mounts, the OCI
// runtime's root) or inside its containers' own namespaces (the metadata proxy's listeners), and
// the containers' addresses come from the cluster's `skiffd --vpc-cidr`, so two clusters on one
// host need different state directories and address ranges besides different instance names.
// What is shared by design (IPv4 forwarding, the cgroup hierarchy mounts and mount options the
// runtime needs) is only ever turned on, never undone, by an agent.

#include <string>

#include "common/error.h"

namespace skiff::agent {

// An instance name: empty, or 1 to 32 of [a-z0-9-], starting with a letter or digit.
Status validateInstance(const std::string& instance);

// "/skiff" or "/skiff-NAME".
std::string defaultCgroupParent(const std::string& instance);

// "/var/lib/skiff-agent" or "/var/lib/skiff-agent-NAME".
std::string defaultStateDir(const std::string& instance);

}  // namespace skiff::agent
