#include "controlplane/service_routes.h"

#include <cmath>
#include <deque>
#include <map>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "api/names.h"
#include "controlplane/event_stream.h"
#include "controlplane/job_logic.h"
#include "controlplane/records.h"

namespace skiff::controlplane {
namespace {

using http::RequestContext;
using http::Response;
using nlohmann::json;

// The job and its unfinished tasks as the store holds them, folded from a scan and a watch.
class EndpointState {
 public:
  // Applies one stored record; corrupt records are skipped.
  void apply(const store::KeyValue& kv) {
    if (kv.key.find("/t/") != std::string::npos) {
      auto task = taskFromStored(kv.value, kv.modRevision);
      if (!task) return;
      if (task->finished()) {
        tasks_.erase(task->id);
      } else {
        tasks_[task->id] = std::move(*task);
      }
    } else if (auto job = jobFromStored(kv.value, kv.modRevision)) {
      job_ = std::move(*job);
    }
  }

  bool hasJob() const { return job_.has_value(); }

  std::map<std::string, Endpoint> endpoints() const {
    std::map<std::string, Endpoint> out;
    if (!job_) return out;
    for (const auto& [id, task] : tasks_) {
      if (auto endpoint = endpointOf(*job_, task)) out.emplace(id, std::move(*endpoint));
    }
    return out;
  }

 private:
  std::optional<JobRecord> job_;
  std::map<std::string, TaskRecord> tasks_;
};

// Buffered record values a slow watcher may fall behind by before its stream ends.
constexpr size_t kMaxBufferedBytes = 16 << 20;

json endpointList(const std::map<std::string, Endpoint>& endpoints) {
  json items = json::array();
  for (const auto& [id, endpoint] : endpoints) items.push_back(toWire(endpoint));
  return items;
}

asio::awaitable<std::optional<Response>> endpoints(ApiContext& api, RequestContext& context,
                                                   http::ResponseStream& out) {
  const std::string& jobId = context.params[0];
  if (jobId.empty() || jobId.find('/') != std::string::npos) {
    co_return Response::error(Error(ErrorCode::kNotFound, "job " + jobId + " not found"));
  }
  auto watchParam = context.queryValue("watch");
  bool watch = watchParam && (*watchParam == "true" || *watchParam == "1");
  if (watchParam && !watch && *watchParam != "false" && *watchParam != "0") {
    co_return Response::error(Error(ErrorCode::kInvalidArgument, "watch: must be true or false"));
  }

  EndpointState state;
  std::string prefix = jobPrefix(jobId);
  auto revision = api.store.scanPrefix(prefix, [&](const store::KeyValue& kv) { state.apply(kv); });
  if (!revision) co_return Response::error(revision.error());
  if (!state.hasJob()) {
    co_return Response::error(Error(ErrorCode::kNotFound, "job " + jobId + " not found"));
  }
  auto current = state.endpoints();
  if (!watch) {
    co_return Response::json(
        200, {{"jobId", jobId}, {"revision", *revision}, {"items", endpointList(current)}});
  }

  auto executor = co_await asio::this_coro::executor;
  WatchStream stream(executor, kMaxBufferedBytes);
  auto handle = api.store.watch(prefix, *revision + 1, stream.feeder());
  if (!handle) co_return Response::error(handle.error());

  json snapshot = {{"type", "snapshot"},
                   {"jobId", jobId},
                   {"revision", *revision},
                   {"items", endpointList(current)}};
  bool sent = co_await out.write(snapshot.dump() + "\n");
  if (!sent) co_return std::nullopt;

  // Removals first in each record's lines, so a client never sees more endpoints than there
  // are. The client lists again and watches anew when the stream ends on an overflow.
  WatchStream::Renderer render = [&state, &current](const std::deque<store::KeyValue>& records) {
    std::string lines;
    for (const store::KeyValue& kv : records) {
      state.apply(kv);
      auto next = state.endpoints();
      for (const auto& [id, endpoint] : current) {
        if (!next.contains(id)) {
          lines +=
              json{{"type", "removed"}, {"taskId", id}, {"revision", kv.modRevision}}.dump() + "\n";
        }
      }
      for (const auto& [id, endpoint] : next) {
        if (!current.contains(id)) {
          lines +=
              json{{"type", "added"}, {"endpoint", toWire(endpoint)}, {"revision", kv.modRevision}}
                  .dump() +
              "\n";
        }
      }
      current = std::move(next);
    }
    return lines;
  };
  co_await stream.run(out, std::move(render));
  co_return std::nullopt;
}

Response okOr(const Result<json>& result) {
  if (!result) return Response::error(result.error());
  return Response::json(200, *result);
}

asio::awaitable<Response> updateContainer(ApiContext& api, RequestContext& context) {
  auto body = api::parseJobFileText(context.request.body());
  if (!body) co_return Response::error(body.error());
  auto job = co_await api.manager.getJob(context.params[0]);
  if (!job) co_return Response::error(job.error());
  auto currentDescriptor = api::validateJobDescriptor((*job)["descriptor"]);
  if (!currentDescriptor) {
    co_return Response::error(Error(ErrorCode::kInternal, "the job's descriptor is invalid"));
  }
  auto descriptor = descriptorWithContainer(*currentDescriptor, *body);
  if (!descriptor) {
    json details = json::array();
    for (const auto& error : descriptor.error()) {
      details.push_back({{"field", error.field}, {"message", error.message}});
    }
    const auto& errors = descriptor.error();
    std::string message = errors.size() == 1
                              ? errors[0].toString()
                              : std::to_string(errors.size()) +
                                    " problems in the container, first: " + errors[0].toString();
    co_return Response::error(Error(ErrorCode::kInvalidArgument, message), details);
  }
  co_return okOr(
      co_await api.manager.updateContainer(context.params[0], std::move(descriptor->container)));
}

asio::awaitable<Response> rollback(ApiContext& api, RequestContext& context) {
  std::optional<int64_t> revision;
  if (!context.request.body().empty()) {
    auto body = api::parseJson(context.request.body());
    if (!body) co_return Response::error(body.error());
    if (!body->is_object()) {
      co_return Response::error(Error(ErrorCode::kInvalidArgument, "body: must be an object"));
    }
    if (auto it = body->find("revision"); it != body->end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 1) {
        co_return Response::error(
            Error(ErrorCode::kInvalidArgument, "revision: must be an integer of at least 1"));
      }
      revision = it->get<int64_t>();
    }
  }
  co_return okOr(co_await api.manager.rollback(context.params[0], revision));
}

// POST /v1/jobs/{id}/metrics: {"metrics": {"cpu": 73.5, "queueDepth": 120}}.
asio::awaitable<Response> pushMetrics(ApiContext& api, RequestContext& context) {
  auto body = api::parseJson(context.request.body());
  if (!body) co_return Response::error(body.error());
  if (!body->is_object() || !body->contains("metrics") || !(*body)["metrics"].is_object() ||
      (*body)["metrics"].empty() || (*body)["metrics"].size() > 32) {
    co_return Response::error(
        Error(ErrorCode::kInvalidArgument, "metrics: must be an object of 1 to 32 metric values"));
  }
  std::map<std::string, double> metrics;
  for (const auto& [name, value] : (*body)["metrics"].items()) {
    if (!api::validMetricName(name)) {
      co_return Response::error(Error(ErrorCode::kInvalidArgument,
                                      "metrics." + name.substr(0, 128) +
                                          ": must be a name of letters, digits, '.', '_' or '-', "
                                          "starting with a letter"));
    }
    if (!value.is_number() || !std::isfinite(value.get<double>())) {
      co_return Response::error(
          Error(ErrorCode::kInvalidArgument, "metrics." + name + ": must be a finite number"));
    }
    metrics[name] = value.get<double>();
  }
  co_return okOr(co_await api.manager.pushMetrics(context.params[0], std::move(metrics)));
}

}  // namespace

void registerServiceRoutes(http::Router& router, ApiContext& api) {
  ApiContext* ctx = &api;
  router.addStream(
      http::Verb::get, "/v1/jobs/{id}/endpoints", http::Access::kAdmin,
      [ctx](RequestContext& c, http::ResponseStream& out) { return endpoints(*ctx, c, out); });
  router.add(http::Verb::put, "/v1/jobs/{id}/container", http::Access::kAdmin,
             [ctx](RequestContext& c) { return updateContainer(*ctx, c); });
  router.add(http::Verb::post, "/v1/jobs/{id}/promote", http::Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.promote(c.params[0]));
             });
  router.add(http::Verb::post, "/v1/jobs/{id}/rollback", http::Access::kAdmin,
             [ctx](RequestContext& c) { return rollback(*ctx, c); });
  router.add(http::Verb::post, "/v1/jobs/{id}/metrics", http::Access::kAgent,
             [ctx](RequestContext& c) { return pushMetrics(*ctx, c); });
  router.add(http::Verb::get, "/v1/jobs/{id}/history", http::Access::kAdmin,
             [ctx](RequestContext& c) -> asio::awaitable<Response> {
               co_return okOr(co_await ctx->manager.history(c.params[0]));
             });
}

}  // namespace skiff::controlplane
