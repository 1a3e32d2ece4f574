#pragma once

// Security groups and the cluster-wide network view the agents enforce.
//
// Security groups are stored at /sg/<name> (the canonical JSON of api::SecurityGroup). A group
// named "default" (all traffic from its own members, like a VPC's default group) is created at
// start when missing: jobs that name no group are in it.
//
// The view is derived from the store, not from the job manager: a watch on the whole key space
// keeps, in memory, the groups, each live task's address (from /j/<id>/t/<task>, set by the
// agent's report; finished tasks drop out), the groups of the jobs those tasks belong to (read
// from /j/<id> when a job's first task has an address, so writing a job costs the view nothing)
// and each node's address block and host address (/nodes/<id>). Its revision is the store revision
// of the last change that altered it. Agents long-poll `view(afterRevision, wait)`: the answer
// comes as soon as the view is newer than `afterRevision`, or after `wait` with the same revision.
//
// View JSON: {"revision": R, "securityGroups": [group...], "members": {"group": ["10.64.0.2"...]},
//             "nodes": [{"id", "block", "hostAddress"}...]}
//
// Thread-safe; the coroutines run on the caller's executor (a connection's strand).

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "api/network.h"
#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

inline constexpr std::string_view kSecurityGroupsPrefix = "/sg/";

class NetworkView {
 public:
  // Loads the current state, creates the default group when missing and starts watching.
  static Result<std::unique_ptr<NetworkView>> start(store::Store& store);
  ~NetworkView();

  // Long poll (see above).
  boost::asio::awaitable<nlohmann::json> view(int64_t afterRevision,
                                              std::chrono::milliseconds wait);
  nlohmann::json viewNow() const;
  int64_t revision() const;

  // CRUD. Create fails with kAlreadyExists, get/replace/remove of a missing group kNotFound;
  // `put` creates or replaces. Answers once the change is durable.
  boost::asio::awaitable<Result<nlohmann::json>> create(api::SecurityGroup group);
  boost::asio::awaitable<Result<nlohmann::json>> put(api::SecurityGroup group);
  boost::asio::awaitable<Result<void>> remove(std::string name);
  Result<nlohmann::json> get(const std::string& name) const;
  // Whether the group exists: in the view, or else in the store (a group created a moment ago,
  // not yet delivered by the watch, is seen). A group deleted a moment ago may still be seen.
  Result<bool> exists(const std::string& name) const;
  nlohmann::json list() const;

 private:
  explicit NetworkView(store::Store& store) : store_(store) {}
  // Applies one stored change; true when the view changed.
  bool applyLocked(const std::string& key, const std::string* value);
  void onEvents(const std::vector<store::Event>& events);
  // Reads the groups of the jobs in `jobIds` that the view lacks, without holding `mutex_`, and
  // adds them.
  void resolveJobGroups(std::set<std::string> jobIds);
  boost::asio::awaitable<Result<nlohmann::json>> write(api::SecurityGroup group, bool mustBeNew);

  struct TaskEntry {
    std::string jobId;
    std::string ip;
  };
  struct NodeEntry {
    std::string block;
    std::string hostAddress;
    bool operator==(const NodeEntry&) const = default;
  };

  store::Store& store_;
  mutable std::mutex mutex_;
  int64_t revision_ = 0;
  int64_t applyingRevision_ = 0;
  std::map<std::string, api::SecurityGroup> groups_;
  std::map<std::string, std::vector<std::string>> jobGroups_;
  std::map<std::string, TaskEntry> tasks_;  // Live tasks with an address.
  std::map<std::string, NodeEntry> nodes_;
  std::set<std::shared_ptr<boost::asio::steady_timer>> waiters_;
  std::unique_ptr<store::WatchHandle> watch_;
};

}  // namespace skiff::controlplane
