#pragma once

// Streaming routes (docs/api.md): GET /v1/events (job and task changes from a revision on, with
// keepalives) and GET /v1/tasks/{id}/logs (a task's output relayed from its node's log server).

#include "common/http_server.h"
#include "controlplane/api_routes.h"

namespace skiff::controlplane {

void registerStreamRoutes(http::Router& router, ApiContext& context);

}  // namespace skiff::controlplane
