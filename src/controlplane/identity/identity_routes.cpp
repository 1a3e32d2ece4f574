#include "controlplane/identity/identity_routes.h"

#include <nlohmann/json.hpp>

namespace skiff::identity {
namespace {

namespace asio = boost::asio;
using http::Access;
using http::RequestContext;
using http::Response;
using http::Verb;
using nlohmann::json;

Response errorResponse(ErrorCode code, std::string message) {
  return Response::error(Error(code, std::move(message)));
}

// The request body as a JSON object; an empty body is an empty object.
Result<json> objectBody(const RequestContext& context) {
  const std::string& text = context.request.body();
  if (text.empty()) return json::object();
  auto body = json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return fail(ErrorCode::kInvalidArgument, "body: must be a JSON object");
  }
  return body;
}

// The optional string member `name` of `body`; an error names the field when it is not a string.
Result<std::string> optionalString(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return fail(ErrorCode::kInvalidArgument, std::string(name) + ": must be a string");
  return it->get<std::string>();
}

bool isLive(std::string_view state) {
  return state == "Launched" || state == "StartInitiated" || state == "Started" ||
         state == "KillInitiated";
}

// Finds the task an agent asks about and checks that the agent may speak for it: the task is
// placed on the agent's node and is live. Fills in the container address: the one the control
// plane recorded, else the one the agent reports (the agent created the namespace).
asio::awaitable<Result<TaskIdentity>> agentTask(IdentityApi& api, RequestContext& context,
                                                const json& body) {
  auto nodeId = optionalString(body, "nodeId");
  if (!nodeId) co_return std::unexpected(nodeId.error());
  if (nodeId->empty()) co_return fail(ErrorCode::kInvalidArgument, "nodeId: required");
  auto reportedIp = optionalString(body, "containerIp");
  if (!reportedIp) co_return std::unexpected(reportedIp.error());
  auto record = co_await api.tasks.lookup(context.params[0]);
  if (!record) co_return std::unexpected(record.error());
  if (record->identity.nodeId != *nodeId) {
    co_return fail(ErrorCode::kPermissionDenied, "the task is not placed on node " + *nodeId);
  }
  if (!isLive(record->state)) {
    co_return fail(ErrorCode::kFailedPrecondition,
                   "the task is " + record->state + ", not running on its node");
  }
  TaskIdentity identity = std::move(record->identity);
  if (!reportedIp->empty()) {
    auto ip = normalizeIp(*reportedIp);
    if (!ip) co_return fail(ErrorCode::kInvalidArgument, "containerIp: must be an IP address");
    if (identity.containerIp.empty()) {
      identity.containerIp = *ip;
    } else if (auto recorded = normalizeIp(identity.containerIp); !recorded || *recorded != *ip) {
      co_return fail(ErrorCode::kConflict,
                     "containerIp: the task's recorded address is " + identity.containerIp);
    }
  }
  co_return identity;
}

asio::awaitable<Response> taskToken(IdentityApi& api, RequestContext& context) {
  auto body = objectBody(context);
  if (!body) co_return Response::error(body.error());
  auto identity = co_await agentTask(api, context, *body);
  if (!identity) co_return Response::error(identity.error());
  if (identity->containerIp.empty()) {
    co_return errorResponse(ErrorCode::kInvalidArgument,
                            "containerIp: required, the task has no recorded address");
  }
  auto issued = api.service.issueTaskToken(*identity);
  if (!issued) co_return Response::error(issued.error());
  co_return Response::json(
      200, {{"token", issued->token}, {"expiresAtMs", issued->expiresAtMs}, {"kid", issued->kid}});
}

asio::awaitable<Response> taskCredentials(IdentityApi& api, RequestContext& context) {
  auto body = objectBody(context);
  if (!body) co_return Response::error(body.error());
  auto role = optionalString(*body, "role");
  if (!role) co_return Response::error(role.error());
  auto identity = co_await agentTask(api, context, *body);
  if (!identity) co_return Response::error(identity.error());
  if (identity->role.empty()) {
    co_return errorResponse(ErrorCode::kNotFound,
                            "the task's job has no container.securityProfile.iamRole");
  }
  if (!role->empty() && *role != identity->role) {
    co_return errorResponse(ErrorCode::kPermissionDenied, "the task's job has another role");
  }
  auto credentials = api.credentials.issue(*identity);
  if (!credentials) co_return Response::error(credentials.error());
  co_return Response::json(200, credentials->toAwsJson());
}

asio::awaitable<Response> verifyToken(IdentityApi& api, RequestContext& context) {
  auto body = objectBody(context);
  if (!body) co_return Response::error(body.error());
  auto token = optionalString(*body, "token");
  if (!token) co_return Response::error(token.error());
  if (token->empty()) co_return errorResponse(ErrorCode::kInvalidArgument, "token: required");
  auto presenterIp = optionalString(*body, "presenterIp");
  if (!presenterIp) co_return Response::error(presenterIp.error());
  // By default the presenter is whoever is connected. Only a caller holding the admin or agent
  // token may vouch for another address (a service relaying what its peer presented); anyone
  // else naming one is refused rather than ignored, so a mistake is loud.
  std::string presenter = context.remoteAddress;
  if (!presenterIp->empty()) {
    if (!api.trustedCaller(context.header("Authorization"))) {
      co_return errorResponse(ErrorCode::kPermissionDenied,
                              "presenterIp: only the admin or agent token may name a presenter");
    }
    auto ip = normalizeIp(*presenterIp);
    if (!ip)
      co_return errorResponse(ErrorCode::kInvalidArgument, "presenterIp: must be an IP address");
    presenter = *ip;
  }
  auto claims = api.service.verifyTaskToken(*token, presenter);
  if (!claims) co_return Response::error(claims.error());
  // A task's address goes back to the pool when it ends; after the quarantine another container
  // may hold it. So a token only speaks for a task that is still live.
  std::string taskId = (*claims)["task"].is_string() ? (*claims)["task"].get<std::string>() : "";
  auto record = co_await api.tasks.lookup(taskId);
  if (!record || !isLive(record->state)) {
    co_return errorResponse(ErrorCode::kUnauthenticated,
                            "token refused: its task is no longer running");
  }
  co_return Response::json(200, {{"valid", true}, {"claims", *claims}});
}

asio::awaitable<Response> rotateKeys(IdentityApi& api) {
  auto key = api.keys.rotate(api.keyRetainMs);
  if (!key) co_return Response::error(key.error());
  co_return Response::json(200, {{"kid", (*key)->kid()}, {"jwks", api.keys.jwks()}});
}

}  // namespace

void registerIdentityRoutes(http::Router& router, IdentityApi& api) {
  IdentityApi* ctx = &api;
  router.add(Verb::get, "/v1/identity/jwks", Access::kPublic,
             [ctx](RequestContext&) -> asio::awaitable<Response> {
               Response response = Response::json(200, ctx->service.jwks());
               response.contentType = "application/jwk-set+json";
               response.headers.emplace_back("Cache-Control", "max-age=300");
               co_return response;
             });
  router.add(Verb::post, "/v1/identity/verify", Access::kPublic,
             [ctx](RequestContext& c) { return verifyToken(*ctx, c); });
  router.add(Verb::post, "/v1/identity/tasks/{id}/token", Access::kAgent,
             [ctx](RequestContext& c) { return taskToken(*ctx, c); });
  router.add(Verb::post, "/v1/identity/tasks/{id}/credentials", Access::kAgent,
             [ctx](RequestContext& c) { return taskCredentials(*ctx, c); });
  router.add(Verb::post, "/v1/identity/keys/rotate", Access::kAdmin,
             [ctx](RequestContext&) { return rotateKeys(*ctx); });
}

}  // namespace skiff::identity
