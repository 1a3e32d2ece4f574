#pragma once

// Service routes (docs/api.md): GET /v1/jobs/{id}/endpoints (a service's ready tasks, listed or
// watched), and rolling updates: PUT /v1/jobs/{id}/container, POST .../promote, POST
// .../rollback, GET .../history.
//
// Both endpoint forms read the store, not the job manager: the list is built from one consistent
// scan of the job's prefix, and the watch continues from that scan's revision, so no change is
// missed or seen twice.

#include "common/http_server.h"
#include "controlplane/api_routes.h"

namespace skiff::controlplane {

void registerServiceRoutes(http::Router& router, ApiContext& context);

}  // namespace skiff::controlplane
