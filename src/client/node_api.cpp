#include "client/node_api.h"

namespace skiff::client {
namespace {

using nlohmann::json;

std::string nodePath(std::string_view nodeId) {
  return "/v1/nodes/" + std::string(nodeId);
}

json identityBody(const TaskIdentityRequest& request) {
  json body = {{"nodeId", request.nodeId}};
  if (!request.containerIp.empty()) body["containerIp"] = request.containerIp;
  return body;
}

}  // namespace

NodeApi::NodeApi(std::unique_ptr<Api> api) : api_(std::move(api)) {}

NodeApi::NodeApi(std::string address, std::string joinToken, ClientOptions options)
    : api_(std::make_unique<ApiClient>(std::move(address), std::move(joinToken),
                                       std::move(options))) {}

Result<ApiResponse> NodeApi::registerNode(const json& registration) {
  return api_->call("POST", "/v1/nodes", &registration);
}

Result<ApiResponse> NodeApi::heartbeat(std::string_view nodeId, const json& usage) {
  json body = json::object();
  if (usage.is_object() && !usage.empty()) body["usage"] = usage;
  return api_->call("POST", nodePath(nodeId) + "/heartbeat", &body);
}

Result<ApiResponse> NodeApi::pollAssignments(std::string_view nodeId, int64_t afterRevision,
                                             std::chrono::milliseconds wait) {
  std::string target = nodePath(nodeId) +
                       "/assignments?delta=true&afterRevision=" + std::to_string(afterRevision) +
                       "&waitMs=" + std::to_string(wait.count());
  return api_->call("GET", target, nullptr);
}

Result<ApiResponse> NodeApi::reportTaskStatus(std::string_view nodeId, const json& updates) {
  json body = {{"updates", updates}};
  return api_->call("POST", nodePath(nodeId) + "/taskStatus", &body);
}

Result<ApiResponse> NodeApi::pollNetwork(int64_t afterRevision, std::chrono::milliseconds wait) {
  std::string target = "/v1/network?afterRevision=" + std::to_string(afterRevision) +
                       "&waitMs=" + std::to_string(wait.count());
  return api_->call("GET", target, nullptr);
}

Result<ApiResponse> NodeApi::taskToken(std::string_view taskId,
                                       const TaskIdentityRequest& request) {
  json body = identityBody(request);
  return api_->call("POST", "/v1/identity/tasks/" + std::string(taskId) + "/token", &body);
}

Result<ApiResponse> NodeApi::taskCredentials(std::string_view taskId,
                                             const TaskIdentityRequest& request,
                                             std::string_view role) {
  json body = identityBody(request);
  body["role"] = role;
  return api_->call("POST", "/v1/identity/tasks/" + std::string(taskId) + "/credentials", &body);
}

}  // namespace skiff::client
