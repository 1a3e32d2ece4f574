#pragma once

// GET /v1/jobs/{id}/endpoints: a service's ready tasks, listed or watched (docs/api.md).
//
// Both forms read the store, not the job manager: the list is built from one consistent scan of
// the job's prefix, and the watch continues from that scan's revision, so no change is missed or
// seen twice.

#include "common/http_server.h"
#include "controlplane/api_routes.h"

namespace skiff::controlplane {

void registerEndpointRoutes(http::Router& router, ApiContext& context);

}  // namespace skiff::controlplane
