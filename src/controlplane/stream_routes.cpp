#include "controlplane/stream_routes.h"

#include <deque>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/http_client.h"
#include "controlplane/event_stream.h"
#include "controlplane/route_params.h"

namespace skiff::controlplane {
namespace {

using http::Access;
using http::RequestContext;
using http::Response;
using http::Verb;
using nlohmann::json;

// Buffered update lines a slow /v1/events client may fall behind by before its stream ends.
constexpr size_t kMaxBufferedEventBytes = 64 << 20;

std::string eventLine(std::string_view type, const store::KeyValue& kv) {
  bool task = kv.key.find("/t/") != std::string::npos;
  std::string line = "{\"type\":\"";
  line.append(type).append("\",\"kind\":\"").append(task ? "task" : "job");
  line.append("\",\"revision\":").append(std::to_string(kv.modRevision));
  line.append(",\"object\":").append(kv.value).append("}\n");
  return line;
}

asio::awaitable<std::optional<Response>> streamEvents(ApiContext& api, RequestContext& context,
                                                      http::ResponseStream& out) {
  std::string prefix(kJobsPrefix);
  if (auto jobId = context.queryValue("jobId")) {
    if (jobId->empty() || jobId->find('/') != std::string::npos) {
      co_return Response::error(Error(ErrorCode::kInvalidArgument, "jobId: must be a job id"));
    }
    prefix = jobPrefix(*jobId);
  }
  auto from = parseInteger(context.queryValue("fromRevision"), "fromRevision", 0, 1, INT64_MAX);
  if (!from) co_return Response::error(from.error());

  auto executor = co_await asio::this_coro::executor;
  WatchStream stream(executor, kMaxBufferedEventBytes);

  store::Revision start = *from;
  std::string snapshot;
  if (*from == 0) {
    auto revision = api.store.scanPrefix(
        prefix, [&](const store::KeyValue& kv) { snapshot += eventLine("snapshot", kv); });
    if (!revision) co_return Response::error(revision.error());
    snapshot += "{\"type\":\"snapshotEnd\",\"revision\":" + std::to_string(*revision) + "}\n";
    start = *revision + 1;
  }
  auto watch = api.store.watch(prefix, start, stream.feeder());
  if (!watch) co_return Response::error(watch.error());

  if (!snapshot.empty()) {
    // Send the snapshot in pieces so one write never holds all of it twice.
    constexpr size_t kPiece = 1 << 20;
    for (size_t offset = 0; offset < snapshot.size(); offset += kPiece) {
      bool written = co_await out.write(snapshot.substr(offset, kPiece));
      if (!written) co_return std::nullopt;
    }
    std::string().swap(snapshot);
  } else {
    bool written = co_await out.write(std::string(kKeepaliveLine));
    if (!written) co_return std::nullopt;
  }

  // The client reconnects with fromRevision when the stream ends on an overflow.
  WatchStream::Renderer render = [](const std::deque<store::KeyValue>& records) {
    std::string lines;
    for (const store::KeyValue& kv : records) lines += eventLine("update", kv);
    return lines;
  };
  co_await stream.run(out, std::move(render));
  co_return std::nullopt;
}

// Percent-encodes a query value (unreserved characters pass).
std::string queryEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Response nodeUnreachable(const std::string& nodeId, const std::string& why) {
  return Response::error(
      Error(ErrorCode::kUnavailable, "cannot read logs from node " + nodeId + ": " + why));
}

// GET /v1/tasks/{id}/logs: finds the task's node and its `logAddress` attribute and relays the
// node agent's log stream (src/agent/log_server.h) chunk by chunk. The parameters are checked
// here and by the agent.
asio::awaitable<std::optional<Response>> streamTaskLogs(ApiContext& api, RequestContext& context,
                                                        http::ResponseStream& out) {
  const std::string taskId = context.params[0];
  std::string stream = context.queryValue("stream").value_or("stdout");
  if (stream != "stdout" && stream != "stderr") {
    co_return Response::error(
        Error(ErrorCode::kInvalidArgument, "stream: must be one of stdout, stderr"));
  }
  auto tail = parseInteger(context.queryValue("tail"), "tail", -1, 0, 10'000'000);
  if (!tail) co_return Response::error(tail.error());
  std::string follow = context.queryValue("follow").value_or("false");
  if (follow != "true" && follow != "false") {
    co_return Response::error(Error(ErrorCode::kInvalidArgument, "follow: must be true or false"));
  }
  auto task = co_await api.manager.getTask(taskId);
  if (!task) co_return Response::error(task.error());
  std::string nodeId = task->value("nodeId", "");
  if (nodeId.empty()) {
    co_return Response::error(
        Error(ErrorCode::kFailedPrecondition, "task " + taskId + " was never placed on a node"));
  }
  auto node = co_await api.manager.getNode(nodeId);
  if (!node) co_return nodeUnreachable(nodeId, node.error().message());
  std::string logAddress;
  if (node->contains("attributes") && (*node)["attributes"].is_object()) {
    const json& attributes = (*node)["attributes"];
    if (attributes.contains("logAddress") && attributes["logAddress"].is_string()) {
      logAddress = attributes["logAddress"].get<std::string>();
    }
  }
  std::string_view hostPortText = logAddress;
  if (!hostPortText.starts_with("http://")) {
    co_return nodeUnreachable(nodeId, "it advertises no log server (attribute logAddress)");
  }
  hostPortText.remove_prefix(7);
  if (!http::parseHostPort(hostPortText)) {
    co_return nodeUnreachable(nodeId, "bad logAddress " + logAddress);
  }

  std::string target =
      "/v1/logs/" + queryEncode(taskId) + "?stream=" + stream + "&follow=" + follow;
  if (*tail >= 0) target += "&tail=" + std::to_string(*tail);
  http::GetRequest request{
      std::string(hostPortText),
      target,
      {{"Authorization", "Bearer " + api.joinToken}, {"User-Agent", "skiffd/" SKIFF_VERSION}}};
  auto upstream = co_await http::StreamingGet::open(std::move(request));
  if (!upstream) co_return nodeUnreachable(nodeId, upstream.error().message());
  unsigned status = (*upstream)->status();
  bool relayError = status != 200;
  std::string errorBody;
  for (;;) {
    std::optional<std::string> piece = co_await (*upstream)->next();
    if (!piece) break;  // The end, or the node went away mid-stream: end ours.
    if (relayError) {
      if (errorBody.size() < (1 << 16)) errorBody += *piece;
      continue;
    }
    bool written = co_await out.write(std::move(*piece));
    if (!written) co_return std::nullopt;
  }
  if (relayError) {
    if (status == 401 || status == 403) {
      co_return nodeUnreachable(nodeId, "its log server refused skiffd's join token");
    }
    Response response;
    response.status = status;
    response.body = std::move(errorBody);
    co_return response;
  }
  co_return std::nullopt;
}

}  // namespace

void registerStreamRoutes(http::Router& router, ApiContext& api) {
  ApiContext* ctx = &api;
  router.addStream(
      Verb::get, "/v1/tasks/{id}/logs", Access::kAdmin,
      [ctx](RequestContext& c, http::ResponseStream& out) { return streamTaskLogs(*ctx, c, out); });
  router.addStream(
      Verb::get, "/v1/events", Access::kAdmin,
      [ctx](RequestContext& c, http::ResponseStream& out) { return streamEvents(*ctx, c, out); });
}

}  // namespace skiff::controlplane
