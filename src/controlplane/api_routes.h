#pragma once

// The `/v1` REST API of skiffd (see docs/api.md), wired onto an HTTP router.

#include "common/http_server.h"
#include "controlplane/job_manager.h"
#include "controlplane/network_view.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

struct ApiContext {
  JobManager& manager;
  store::Store& store;
  // Reports whether the control plane is ready to serve (state loaded, store healthy).
  std::function<bool()> healthy;
  // The agent join token, presented to the agents' log servers when proxying task logs.
  std::string joinToken;
  // Security groups and the agents' network view; null disables those routes.
  NetworkView* network = nullptr;
};

void registerRoutes(http::Router& router, ApiContext& context);

}  // namespace skiff::controlplane
