#include "controlplane/api_routes.h"

#include <charconv>
#include <cmath>
#include <deque>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "api/constraint.h"
#include "api/names.h"
#include "api/network.h"
#include "controlplane/capacity_groups.h"
#include "controlplane/route_params.h"
#include "controlplane/service_routes.h"
#include "controlplane/stream_routes.h"

namespace skiff::controlplane {
namespace {

using http::Access;
using http::RequestContext;
using http::Response;
using http::Verb;
using nlohmann::json;

Response errorResponse(const Error& error) {
  return Response::error(error);
}

template <typename T>
Response okOr(const Result<T>& result, unsigned status = 200) {
  if (!result) return errorResponse(result.error());
  return Response::json(status, *result);
}

Response pageResponse(const Result<Page>& page) {
  if (!page) return errorResponse(page.error());
  json body = {{"items", page->items}};
  if (!page->nextCursor.empty()) body["nextCursor"] = page->nextCursor;
  return Response::json(200, body);
}

Result<json> parseBody(const RequestContext& context) {
  const std::string& body = context.request.body();
  std::string_view type = context.header("Content-Type");
  if (type.starts_with("application/yaml") || type.starts_with("application/x-yaml") ||
      type.starts_with("text/yaml")) {
    return api::parseJobFileText(body);
  }
  return api::parseJson(body);
}

bool validIdempotencyKey(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

Response validationFailure(const api::FieldErrors& errors) {
  json details = json::array();
  for (const auto& error : errors) {
    details.push_back({{"field", error.field}, {"message", error.message}});
  }
  std::string message =
      errors.size() == 1
          ? errors[0].toString()
          : std::to_string(errors.size()) + " problems in the job, first: " + errors[0].toString();
  return Response::error(Error(ErrorCode::kInvalidArgument, message), details);
}

asio::awaitable<Response> createJob(ApiContext& api, RequestContext& context) {
  auto body = parseBody(context);
  if (!body) co_return errorResponse(body.error());
  auto descriptor = api::validateJobDescriptor(*body);
  if (!descriptor) co_return validationFailure(descriptor.error());
  if (api.network != nullptr) {
    // A job naming a group that does not exist would start with no traffic allowed to it.
    api::FieldErrors unknown;
    const auto& groups = descriptor->container.securityProfile.securityGroups;
    for (size_t i = 0; i < groups.size(); ++i) {
      auto exists = api.network->exists(groups[i]);
      if (!exists) co_return errorResponse(exists.error());
      if (!*exists) {
        unknown.push_back({"container.securityProfile.securityGroups[" + std::to_string(i) + "]",
                           "security group " + groups[i] + " does not exist"});
      }
    }
    if (!unknown.empty()) co_return validationFailure(unknown);
  }
  std::string key(context.header("Idempotency-Key"));
  if (!key.empty() && !validIdempotencyKey(key)) {
    co_return errorResponse(Error(ErrorCode::kInvalidArgument,
                                  "Idempotency-Key: must be 1 to 128 printable ASCII characters"));
  }
  auto result = co_await api.manager.createJob(std::move(*descriptor), std::move(key));
  if (!result) co_return errorResponse(result.error());
  Response response = Response::jsonText(result->created ? 201 : 200, std::move(result->jobText));
  response.headers.emplace_back("Location", "/v1/jobs/" + result->id);
  co_return response;
}

asio::awaitable<Response> listJobs(ApiContext& api, RequestContext& context) {
  JobFilter filter;
  if (auto state = context.queryValue("state")) {
    filter.state = api::parseJobState(*state);
    if (!filter.state) {
      co_return errorResponse(Error(ErrorCode::kInvalidArgument,
                                    "state: must be one of Accepted, KillInitiated, Finished"));
    }
  }
  if (auto type = context.queryValue("type")) {
    if (*type != "batch" && *type != "service") {
      co_return errorResponse(
          Error(ErrorCode::kInvalidArgument, "type: must be one of batch, service"));
    }
    filter.batch = *type == "batch";
  }
  filter.applicationName = context.queryValue("applicationName").value_or("");
  filter.capacityGroup = context.queryValue("capacityGroup").value_or("");
  filter.owner = context.queryValue("owner").value_or("");
  auto limit = parseInteger(context.queryValue("limit"), "limit", 100, 1, 1000);
  if (!limit) co_return errorResponse(limit.error());
  co_return pageResponse(co_await api.manager.listJobs(
      std::move(filter), context.queryValue("cursor").value_or(""), static_cast<size_t>(*limit)));
}

asio::awaitable<Response> updateCapacity(ApiContext& api, RequestContext& context) {
  auto body = api::parseJson(context.request.body());
  if (!body) co_return errorResponse(body.error());
  if (!body->is_object()) {
    co_return errorResponse(Error(ErrorCode::kInvalidArgument, "capacity: must be an object"));
  }
  std::optional<int64_t> values[3];
  const char* names[3] = {"min", "desired", "max"};
  for (const auto& [key, value] : body->items()) {
    int slot = key == "min" ? 0 : key == "desired" ? 1 : key == "max" ? 2 : -1;
    if (slot < 0) {
      co_return errorResponse(
          Error(ErrorCode::kInvalidArgument, "capacity." + key + ": unknown field"));
    }
    if (!value.is_number_integer()) {
      co_return errorResponse(
          Error(ErrorCode::kInvalidArgument,
                std::string("capacity.") + names[slot] + ": must be an integer"));
    }
    values[slot] = value.get<int64_t>();
  }
  co_return okOr(
      co_await api.manager.updateCapacity(context.params[0], values[0], values[1], values[2]));
}

Response fieldErrors(const api::FieldErrors& errors, std::string_view what) {
  json details = json::array();
  for (const auto& error : errors) {
    details.push_back({{"field", error.field}, {"message", error.message}});
  }
  std::string message = errors.size() == 1
                            ? errors[0].toString()
                            : std::to_string(errors.size()) + " problems in the " +
                                  std::string(what) + ", first: " + errors[0].toString();
  return Response::error(Error(ErrorCode::kInvalidArgument, message), details);
}

asio::awaitable<Response> putCapacityGroup(ApiContext& api, RequestContext& context,
                                           bool createOnly) {
  auto body = parseBody(context);
  if (!body) co_return errorResponse(body.error());
  std::optional<std::string> pathName;
  if (!createOnly) pathName = context.params[0];
  auto spec = parseCapacityGroup(*body, pathName);
  if (!spec) co_return fieldErrors(spec.error(), "capacity group");
  co_return okOr(co_await api.manager.putCapacityGroup(std::move(*spec), createOnly),
                 createOnly ? 201 : 200);
}

// Body: {"set": {"key": "value", ...}, "remove": ["key", ...]}.
asio::awaitable<Response> labelNode(ApiContext& api, RequestContext& context) {
  auto body = api::parseJson(context.request.body());
  if (!body) co_return errorResponse(body.error());
  api::FieldErrors errors;
  std::map<std::string, std::optional<std::string>> changes;
  if (!body->is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body->items()) {
      if (key != "set" && key != "remove") errors.push_back({key, "unknown field"});
    }
    if (auto set = body->find("set"); set != body->end() && !set->is_null()) {
      if (!set->is_object()) {
        errors.push_back({"set", "must be an object of strings"});
      } else {
        for (const auto& [key, value] : set->items()) {
          if (!api::validAttributeName(key)) {
            errors.push_back({"set." + key, "label name must be 1 to 64 of [A-Za-z0-9_.-]"});
          } else if (!value.is_string() || value.get<std::string>().size() > 256) {
            errors.push_back({"set." + key, "must be a string of at most 256 bytes"});
          } else {
            changes[key] = value.get<std::string>();
          }
        }
      }
    }
    if (auto remove = body->find("remove"); remove != body->end() && !remove->is_null()) {
      if (!remove->is_array()) {
        errors.push_back({"remove", "must be an array of label names"});
      } else {
        for (size_t i = 0; i < remove->size(); ++i) {
          const json& key = (*remove)[i];
          if (!key.is_string() || !api::validAttributeName(key.get<std::string>())) {
            errors.push_back({"remove[" + std::to_string(i) + "]",
                              "label name must be 1 to 64 of [A-Za-z0-9_.-]"});
          } else {
            changes[key.get<std::string>()] = std::nullopt;
          }
        }
      }
    }
  }
  if (!errors.empty()) co_return fieldErrors(errors, "labels");
  co_return okOr(co_await api.manager.labelNode(context.params[0], std::move(changes)));
}

// The value of `field` in a request body that is empty or a JSON object with at most that field:
// null when absent. Other fields, or a body that is not an object, are added to `errors`.
Result<json> onlyFieldOfBody(const RequestContext& context, const std::string& field,
                             api::FieldErrors& errors) {
  if (context.request.body().empty()) return json();
  auto body = api::parseJson(context.request.body());
  if (!body) return std::unexpected(body.error());
  if (!body->is_object()) {
    errors.push_back({"", "must be an object"});
    return json();
  }
  json value;
  for (auto& [key, item] : body->items()) {
    if (key == field) {
      value = std::move(item);
    } else {
      errors.push_back({key, "unknown field"});
    }
  }
  return value;
}

// POST /v1/nodes/{id}/drain, optionally with {"deadlineMs": N}: how long batch tasks on the node
// may still run before they are moved (default one hour, at most a week).
asio::awaitable<Response> drainNode(ApiContext& api, RequestContext& context) {
  constexpr int64_t kMaxDeadlineMs = 7 * 24 * 3'600'000LL;
  api::FieldErrors errors;
  auto deadline = onlyFieldOfBody(context, "deadlineMs", errors);
  if (!deadline) co_return errorResponse(deadline.error());
  int64_t deadlineMs = kDefaultDrainDeadlineMs;
  if (!deadline->is_null()) {
    if (!deadline->is_number_integer() || deadline->get<int64_t>() < 0 ||
        deadline->get<int64_t>() > kMaxDeadlineMs) {
      errors.push_back({"deadlineMs", "must be an integer from 0 to 604800000"});
    } else {
      deadlineMs = deadline->get<int64_t>();
    }
  }
  if (!errors.empty()) co_return fieldErrors(errors, "drain");
  co_return okOr(co_await api.manager.drainNode(context.params[0], deadlineMs));
}

// POST /v1/nodes/{id}/heartbeat, optionally with {"usage": {"TASK": {"cpuCores": 0.48}}}: the CPU
// each running container used since the previous heartbeat.
asio::awaitable<Response> heartbeat(ApiContext& api, RequestContext& context) {
  std::map<std::string, TaskUsage> usage;
  api::FieldErrors errors;
  auto found = onlyFieldOfBody(context, "usage", errors);
  if (!found) co_return errorResponse(found.error());
  if (!found->is_null()) {
    if (!found->is_object() || found->size() > 10'000) {
      errors.push_back({"usage", "must be an object of at most 10000 tasks"});
    } else {
      for (const auto& [taskId, sample] : found->items()) {
        std::string path = "usage." + taskId.substr(0, 128);
        const json* cores =
            sample.is_object() && sample.contains("cpuCores") ? &sample["cpuCores"] : nullptr;
        if (cores == nullptr || !cores->is_number() || !std::isfinite(cores->get<double>()) ||
            cores->get<double>() < 0) {
          errors.push_back({path + ".cpuCores", "must be a finite number >= 0"});
          continue;
        }
        usage[taskId] = TaskUsage{cores->get<double>()};
      }
    }
  }
  if (!errors.empty()) co_return fieldErrors(errors, "heartbeat");
  co_return okOr(co_await api.manager.heartbeat(context.params[0], std::move(usage)));
}

asio::awaitable<Response> listTasks(ApiContext& api, RequestContext& context) {
  std::optional<api::TaskState> state;
  if (auto name = context.queryValue("state")) {
    state = api::parseTaskState(*name);
    if (!state) {
      co_return errorResponse(
          Error(ErrorCode::kInvalidArgument,
                "state: must be one of Accepted, Launched, StartInitiated, Started, KillInitiated, "
                "Finished"));
    }
  }
  auto limit = parseInteger(context.queryValue("limit"), "limit", 100, 1, 1000);
  if (!limit) co_return errorResponse(limit.error());
  co_return pageResponse(co_await api.manager.listTasks(
      context.queryValue("jobId").value_or(""), state, context.queryValue("cursor").value_or(""),
      static_cast<size_t>(*limit)));
}

Result<api::Resources> parseNodeResources(const json& value) {
  if (!value.is_object()) return fail(ErrorCode::kInvalidArgument, "resources: must be an object");
  api::Resources resources{0, 0, 0, 0, 0};
  for (const auto& [key, item] : value.items()) {
    if (!item.is_number() || item.get<double>() < 0) {
      return fail(ErrorCode::kInvalidArgument,
                  "resources." + key + ": must be a number of at least 0");
    }
    if (key == "cpu") {
      resources.cpu = item.get<double>();
    } else if (key == "memoryMB") {
      resources.memoryMB = item.get<int64_t>();
    } else if (key == "diskMB") {
      resources.diskMB = item.get<int64_t>();
    } else if (key == "networkMbps") {
      resources.networkMbps = item.get<int64_t>();
    } else if (key == "gpu") {
      resources.gpu = item.get<int64_t>();
    } else {
      return fail(ErrorCode::kInvalidArgument, "resources." + key + ": unknown field");
    }
  }
  if (!(resources.cpu > 0) || resources.memoryMB <= 0) {
    return fail(ErrorCode::kInvalidArgument, "resources: cpu and memoryMB must be greater than 0");
  }
  return resources;
}

asio::awaitable<Response> registerNode(ApiContext& api, RequestContext& context) {
  auto body = api::parseJson(context.request.body());
  if (!body) co_return errorResponse(body.error());
  if (!body->is_object()) {
    co_return errorResponse(Error(ErrorCode::kInvalidArgument, "node: must be an object"));
  }
  NodeRegistration registration;
  for (const auto& [key, value] : body->items()) {
    if (key != "id" && key != "resources" && key != "attributes") {
      co_return errorResponse(Error(ErrorCode::kInvalidArgument, key + ": unknown field"));
    }
  }
  if (!body->contains("id") || !(*body)["id"].is_string() ||
      !api::validName((*body)["id"].get_ref<const std::string&>())) {
    co_return errorResponse(Error(ErrorCode::kInvalidArgument,
                                  "id: must be 1 to 128 letters, digits, '.', '_' or '-'"));
  }
  registration.id = (*body)["id"].get<std::string>();
  auto resources = parseNodeResources(body->value("resources", json()));
  if (!resources) co_return errorResponse(resources.error());
  registration.resources = *resources;
  if (body->contains("attributes")) {
    const json& attributes = (*body)["attributes"];
    if (!attributes.is_object()) {
      co_return errorResponse(Error(ErrorCode::kInvalidArgument, "attributes: must be an object"));
    }
    for (const auto& [key, value] : attributes.items()) {
      bool labels = key == "labels" && value.is_object();
      if (!labels && !value.is_string()) {
        co_return errorResponse(
            Error(ErrorCode::kInvalidArgument, "attributes." + key + ": must be a string"));
      }
    }
    registration.attributes = attributes;
  }
  // Where other nodes route this node's container block: what the agent says, else the address
  // its registration came from.
  if (!registration.attributes.contains("hostAddress") && !context.remoteAddress.empty()) {
    registration.attributes["hostAddress"] = context.remoteAddress;
  }
  bool created = false;
  auto node = co_await api.manager.registerNode(std::move(registration), &created);
  co_return okOr(node, created ? 201 : 200);
}

Result<api::SecurityGroup> parseSecurityGroup(const RequestContext& context,
                                              const std::string& pathName) {
  auto body = api::parseJson(context.request.body());
  if (!body) return std::unexpected(body.error());
  if (!pathName.empty() && body->is_object() && !body->contains("name")) {
    (*body)["name"] = pathName;
  }
  auto group = api::validateSecurityGroup(*body);
  if (!group) {
    std::string message;
    for (const auto& error : group.error()) {
      if (!message.empty()) message += "; ";
      message += error.toString();
    }
    return fail(ErrorCode::kInvalidArgument, message);
  }
  if (!pathName.empty() && group->name != pathName) {
    return fail(ErrorCode::kInvalidArgument, "name: must match the path (" + pathName + ")");
  }
  return *group;
}

void registerNetworkRoutes(http::Router& router, ApiContext* ctx) {
  if (ctx->network == nullptr) return;
  router.add(Verb::get, "/v1/security-groups", Access::kAdmin,
             [ctx](RequestContext&) -> asio::awaitable<Response> {
               co_return Response::json(200, ctx->network->list());
             });
  router.add(Verb::post, "/v1/security-groups", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               auto group = parseSecurityGroup(c, "");
               if (!group) co_return errorResponse(group.error());
               co_return okOr(co_await ctx->network->create(std::move(*group)), 201);
             });
  router.add(Verb::get, "/v1/security-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(ctx->network->get(c.params[0]));
             });
  router.add(Verb::put, "/v1/security-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               auto group = parseSecurityGroup(c, c.params[0]);
               if (!group) co_return errorResponse(group.error());
               co_return okOr(co_await ctx->network->put(std::move(*group)));
             });
  router.add(Verb::delete_, "/v1/security-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               auto removed = co_await ctx->network->remove(c.params[0]);
               if (!removed) co_return errorResponse(removed.error());
               co_return Response::json(200, json{{"deleted", c.params[0]}});
             });
  router.add(Verb::get, "/v1/network", Access::kAgent,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               auto after =
                   parseInteger(c.queryValue("afterRevision"), "afterRevision", 0, 0, INT64_MAX);
               if (!after) co_return errorResponse(after.error());
               auto wait = parseInteger(c.queryValue("waitMs"), "waitMs", 0, 0, 300000);
               if (!wait) co_return errorResponse(wait.error());
               auto view = co_await ctx->network->view(*after, std::chrono::milliseconds(*wait));
               co_return Response::json(200, std::move(view));
             });
}

asio::awaitable<Response> nodeAssignments(ApiContext& api, RequestContext& context) {
  auto after = parseInteger(context.queryValue("afterRevision"), "afterRevision", 0, 0, INT64_MAX);
  if (!after) co_return errorResponse(after.error());
  auto wait = parseInteger(context.queryValue("waitMs"), "waitMs", 30000, 0, 300000);
  if (!wait) co_return errorResponse(wait.error());
  // Agents that apply deltas say so; others keep getting the full list every time.
  std::string delta = context.queryValue("delta").value_or("false");
  auto result = co_await api.manager.assignments(context.params[0], *after, *wait,
                                                 AssignmentsForm::kText, delta == "true");
  if (!result) co_return errorResponse(result.error());
  // The list comes as JSON text (a full answer lists all of the node's tasks).
  Response response;
  response.status = 200;
  response.body = R"({"revision":)" + std::to_string(result->revision) + R"(,"full":)" +
                  (result->full ? "true" : "false") + R"(,"assignments":)";
  response.body += result->assignmentsText;
  if (!result->full) response.body += R"(,"removed":)" + json(result->removed).dump();
  response.body += "}\n";
  co_return response;
}

asio::awaitable<Response> taskStatus(ApiContext& api, RequestContext& context) {
  auto body = api::parseJson(context.request.body());
  if (!body) co_return errorResponse(body.error());
  if (!body->is_object() || !body->contains("updates") || !(*body)["updates"].is_array()) {
    co_return errorResponse(Error(ErrorCode::kInvalidArgument, "updates: must be a list"));
  }
  std::vector<TaskStatusUpdate> updates;
  const json& list = (*body)["updates"];
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    std::string path = "updates[" + std::to_string(i) + "]";
    if (!item.is_object() || !item.contains("taskId") || !item["taskId"].is_string() ||
        !item.contains("seq") || !item["seq"].is_number_integer() || !item.contains("state") ||
        !item["state"].is_string()) {
      co_return errorResponse(Error(ErrorCode::kInvalidArgument,
                                    path + ": needs taskId (string), seq (integer), state"));
    }
    TaskStatusUpdate update;
    update.taskId = item["taskId"].get<std::string>();
    update.seq = item["seq"].get<int64_t>();
    auto state = api::parseTaskState(item["state"].get<std::string>());
    if (!state) {
      co_return errorResponse(
          Error(ErrorCode::kInvalidArgument, path + ".state: not a task state"));
    }
    update.state = *state;
    if (item.contains("reason") && item["reason"].is_string() &&
        !item["reason"].get_ref<const std::string&>().empty()) {
      auto reason = api::parseTaskReason(item["reason"].get<std::string>());
      if (!reason) {
        co_return errorResponse(
            Error(ErrorCode::kInvalidArgument, path + ".reason: not a task reason"));
      }
      update.reason = *reason;
    }
    if (item.contains("exitCode") && item["exitCode"].is_number_integer()) {
      update.exitCode = item["exitCode"].get<int32_t>();
    }
    if (item.contains("image") && item["image"].is_string()) {
      update.image = item["image"].get<std::string>().substr(0, 1024);
    }
    if (item.contains("ip") && item["ip"].is_string()) {
      if (!api::parseIpv4(item["ip"].get<std::string>())) {
        co_return errorResponse(
            Error(ErrorCode::kInvalidArgument, path + ".ip: not an IPv4 address"));
      }
      update.ip = item["ip"].get<std::string>();
    }
    if (item.contains("message") && item["message"].is_string()) {
      update.message = item["message"].get<std::string>().substr(0, 4096);
    }
    if (item.contains("ready")) {
      if (!item["ready"].is_boolean()) {
        co_return errorResponse(
            Error(ErrorCode::kInvalidArgument, path + ".ready: must be true or false"));
      }
      update.ready = item["ready"].get<bool>();
    }
    updates.push_back(std::move(update));
  }
  auto applied = co_await api.manager.applyTaskStatus(context.params[0], std::move(updates));
  if (!applied) co_return errorResponse(applied.error());
  co_return Response::json(200, {{"applied", *applied}});
}

}  // namespace

void registerRoutes(http::Router& router, ApiContext& api) {
  ApiContext* ctx = &api;
  router.add(Verb::get, "/healthz", Access::kPublic,
             [ctx](RequestContext&) -> asio::awaitable<Response> {
               if (!ctx->healthy()) {
                 co_return errorResponse(Error(ErrorCode::kUnavailable, "not ready"));
               }
               co_return Response::json(200, {{"status", "ok"}});
             });
  router.add(Verb::get, "/version", Access::kPublic,
             [](RequestContext&) -> asio::awaitable<Response> {
               co_return Response::json(200, {{"version", SKIFF_VERSION}, {"api", "v1"}});
             });

  router.add(Verb::post, "/v1/jobs", Access::kAdmin,
             [ctx](RequestContext& c) { return createJob(*ctx, c); });
  router.add(Verb::get, "/v1/jobs", Access::kAdmin,
             [ctx](RequestContext& c) { return listJobs(*ctx, c); });
  router.add(Verb::get, "/v1/jobs/{id}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.getJob(c.params[0]));
             });
  router.add(Verb::post, "/v1/jobs/{id}/kill", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.killJob(c.params[0]), 202);
             });
  router.add(Verb::put, "/v1/jobs/{id}/capacity", Access::kAdmin,
             [ctx](RequestContext& c) { return updateCapacity(*ctx, c); });
  router.add(Verb::post, "/v1/jobs/{id}/enable", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.setEnabled(c.params[0], true));
             });
  router.add(Verb::post, "/v1/jobs/{id}/disable", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.setEnabled(c.params[0], false));
             });

  router.add(Verb::get, "/v1/tasks", Access::kAdmin,
             [ctx](RequestContext& c) { return listTasks(*ctx, c); });
  router.add(Verb::get, "/v1/tasks/{id}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.getTask(c.params[0]));
             });
  router.add(Verb::get, "/v1/tasks/{id}/why", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.whyTask(c.params[0]));
             });
  router.add(Verb::post, "/v1/capacity-groups", Access::kAdmin,
             [ctx](RequestContext& c) { return putCapacityGroup(*ctx, c, true); });
  router.add(Verb::get, "/v1/capacity-groups", Access::kAdmin,
             [ctx](RequestContext&) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.listCapacityGroups());
             });
  router.add(Verb::get, "/v1/capacity-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.getCapacityGroup(c.params[0]));
             });
  router.add(Verb::put, "/v1/capacity-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) { return putCapacityGroup(*ctx, c, false); });
  router.add(Verb::delete_, "/v1/capacity-groups/{name}", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.deleteCapacityGroup(c.params[0]));
             });
  router.add(Verb::post, "/v1/tasks/{id}/kill", Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               auto shrink = c.queryValue("shrink").value_or("false");
               if (shrink != "true" && shrink != "false") {
                 co_return errorResponse(
                     Error(ErrorCode::kInvalidArgument, "shrink: must be true or false"));
               }
               co_return okOr(co_await ctx->manager.killTask(c.params[0], shrink == "true"), 202);
             });

  router.add(Verb::post, "/v1/nodes", Access::kAgent,
             [ctx](RequestContext& c) { return registerNode(*ctx, c); });
  router.add(Verb::get, "/v1/nodes", Access::kAdmin,
             [ctx](RequestContext&) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.listNodes());
             });
  router.add(Verb::get, "/v1/nodes/{id}", Access::kAgent,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.getNode(c.params[0]));
             });
  router.add(Verb::post, "/v1/nodes/{id}/heartbeat", Access::kAgent,
             [ctx](RequestContext& c) { return heartbeat(*ctx, c); });
  router.add(Verb::post, "/v1/nodes/{id}/drain", Access::kAdmin,
             [ctx](RequestContext& c) { return drainNode(*ctx, c); });
  router.add(Verb::post, "/v1/nodes/{id}/labels", Access::kAdmin,
             [ctx](RequestContext& c) { return labelNode(*ctx, c); });
  router.add(Verb::get, "/v1/nodes/{id}/assignments", Access::kAgent,
             [ctx](RequestContext& c) { return nodeAssignments(*ctx, c); });
  router.add(Verb::post, "/v1/nodes/{id}/taskStatus", Access::kAgent,
             [ctx](RequestContext& c) { return taskStatus(*ctx, c); });

  registerNetworkRoutes(router, ctx);
  registerServiceRoutes(router, api);

  registerStreamRoutes(router, api);
}

}  // namespace skiff::controlplane
