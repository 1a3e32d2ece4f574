#pragma once

// Shortcuts the end-to-end tests share over the API client. A call that gets no answer or an
// unexpected status is a test failure (EXPECT) and gives an empty result, so a test reads as its
// scenario and still stops cleanly at its next assertion.

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/client.h"

namespace skiff::testing {

// POST /v1/jobs; the new job's id, or "" when it was not created (201).
inline std::string submitJob(client::Api& api, const nlohmann::json& job) {
  auto response = api.call("POST", "/v1/jobs", &job);
  EXPECT_TRUE(response && response->status == 201)
      << (response ? response->body.dump() : response.error().message());
  if (!response || !response->ok()) return "";
  return response->body.value("id", "");
}

// GET /v1/tasks?jobId=...: the job's tasks, or an empty array.
inline nlohmann::json tasksOfJob(client::Api& api, const std::string& jobId) {
  auto response = api.call("GET", "/v1/tasks?jobId=" + jobId, nullptr);
  if (!response || !response->ok()) return nlohmann::json::array();
  return response->body.value("items", nlohmann::json::array());
}

// GET /v1/tasks/ID: the task, or an empty object.
inline nlohmann::json getTask(client::Api& api, const std::string& taskId) {
  auto response = api.call("GET", "/v1/tasks/" + taskId, nullptr);
  if (!response || !response->ok()) return nlohmann::json::object();
  return response->body;
}

}  // namespace skiff::testing
