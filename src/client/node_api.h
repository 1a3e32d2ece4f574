#pragma once

// The calls a node agent makes to skiffd (docs/api.md, "Nodes", "Networking" and "Task
// identity"), with the agent's join token as the credential.
//
// Each method names one endpoint and takes its parameters typed; request bodies that the agent
// assembles from its own records (the registration, usage samples, status updates) stay JSON.
// As with `Api::call`, every HTTP answer, 4xx and 5xx included, is a value: only failing to get
// an answer is an `Error`. A `NodeApi` is used from one thread at a time; an agent gives each of
// its threads its own.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "client/client.h"
#include "common/error.h"

namespace skiff::client {

// Who asks for a task's identity: the node that runs it and, when it has one, its address.
struct TaskIdentityRequest {
  std::string nodeId;
  std::string containerIp;  // Empty: not sent.
};

class NodeApi {
 public:
  explicit NodeApi(std::unique_ptr<Api> api);
  // Over an `ApiClient` to `address` (normalized) presenting `joinToken`.
  NodeApi(std::string address, std::string joinToken, ClientOptions options = {});

  // POST /v1/nodes: registers the node, or registers it again. `registration` holds its id,
  // resources and attributes; the answer carries the node's network settings.
  Result<ApiResponse> registerNode(const nlohmann::json& registration);

  // POST /v1/nodes/{nodeId}/heartbeat. `usage` maps task ids to {"cpuCores": n}; an empty or
  // null one sends none. A 404 answer means skiffd no longer knows the node.
  Result<ApiResponse> heartbeat(std::string_view nodeId, const nlohmann::json& usage);

  // GET /v1/nodes/{nodeId}/assignments as a delta long poll: answers as soon as the assignments
  // changed after `afterRevision` (0 asks for the full list), or after `wait` with no change.
  Result<ApiResponse> pollAssignments(std::string_view nodeId, int64_t afterRevision,
                                      std::chrono::milliseconds wait);

  // POST /v1/nodes/{nodeId}/taskStatus with `updates`, an array of status updates.
  Result<ApiResponse> reportTaskStatus(std::string_view nodeId, const nlohmann::json& updates);

  // GET /v1/network: the cluster's network view (security groups, members, node blocks) as a
  // long poll, answering once the view is newer than `afterRevision` or after `wait`.
  Result<ApiResponse> pollNetwork(int64_t afterRevision, std::chrono::milliseconds wait);

  // POST /v1/identity/tasks/{taskId}/token: a signed identity token for the task.
  Result<ApiResponse> taskToken(std::string_view taskId, const TaskIdentityRequest& request);

  // POST /v1/identity/tasks/{taskId}/credentials: temporary credentials for the task's `role`.
  Result<ApiResponse> taskCredentials(std::string_view taskId, const TaskIdentityRequest& request,
                                      std::string_view role);

 private:
  std::unique_ptr<Api> api_;
};

}  // namespace skiff::client
