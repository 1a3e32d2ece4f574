#pragma once

// The identity endpoints of skiffd (docs/api.md, "Identity"; docs/identity.md):
//   GET  /v1/identity/jwks                       public
//   POST /v1/identity/verify                     public; a trusted caller may name the presenter
//   POST /v1/identity/tasks/{id}/token           agents: a task-identity token for a task
//   POST /v1/identity/tasks/{id}/credentials     agents: role credentials for a task
//   POST /v1/identity/keys/rotate                admin: a new signing key

#include <functional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "common/error.h"
#include "common/http_server.h"
#include "controlplane/identity/identity_service.h"
#include "controlplane/identity/signing_keys.h"

namespace skiff::identity {

// What the control plane records about a task.
struct TaskRecordView {
  TaskIdentity identity;  // `containerIp` is the recorded address, empty when none is recorded.
  std::string state;      // The task state's name ("Started", ...).
};

// Looks tasks up; the seam between the identity endpoints and the job manager.
class TaskDirectory {
 public:
  virtual ~TaskDirectory() = default;
  // kNotFound for an unknown task.
  virtual boost::asio::awaitable<Result<TaskRecordView>> lookup(std::string taskId) = 0;
};

struct IdentityApi {
  KeyRing& keys;
  IdentityService& service;
  RoleCredentialIssuer& credentials;
  TaskDirectory& tasks;
  // True when the `Authorization` header carries the admin or agent token. Only such callers may
  // name a `presenterIp` in /v1/identity/verify.
  std::function<bool(std::string_view authorization)> trustedCaller;
  // Superseded keys stay published this long after a rotation (>= the longest token lifetime).
  int64_t keyRetainMs = 2 * 60 * 60 * 1000;
};

void registerIdentityRoutes(http::Router& router, IdentityApi& api);

}  // namespace skiff::identity
