#pragma once

// Test doubles for the CLI: a scripted `Api` and a `Context` that captures output.

#include <deque>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "client/client.h"

namespace skiff::cli::testing {

using nlohmann::json;

inline client::ApiResponse reply(long status, json body = nullptr) {
  return client::ApiResponse{status, body};
}

inline client::ApiResponse errorReply(long status, const std::string& code,
                                      const std::string& message, json details = nullptr) {
  json error = {{"code", code}, {"message", message}};
  if (!details.is_null()) error["details"] = details;
  return client::ApiResponse{status, {{"error", error}}};
}

inline Result<client::ApiResponse> unreachable() {
  return fail(ErrorCode::kUnavailable, "cannot reach http://fake: Connection refused");
}

// Answers calls from a queue, in order, and records every request.
class FakeApi final : public client::Api {
 public:
  struct Request {
    std::string method;
    std::string target;
    json body;
    client::Headers headers;

    std::string header(const std::string& name) const {
      for (const auto& [key, value] : headers) {
        if (key == name) return value;
      }
      return {};
    }
  };
  struct Stream {
    std::vector<std::string> lines;
    Result<client::ApiResponse> end = reply(200);  // How the stream ends after its lines.
  };

  std::deque<Result<client::ApiResponse>> responses;
  std::deque<Stream> streams;
  std::vector<Request> requests;
  std::vector<std::string> streamTargets;

  const std::string& address() const override { return address_; }

  Result<client::ApiResponse> call(std::string_view method, std::string_view target,
                                   const json* body, const client::Headers& headers) override {
    requests.push_back({std::string(method), std::string(target),
                        body != nullptr ? *body : json(nullptr), headers});
    if (responses.empty()) return errorReply(500, "Internal", "no scripted response");
    Result<client::ApiResponse> next = responses.front();
    responses.pop_front();
    return next;
  }

  Result<client::ApiResponse> stream(std::string_view target,
                                     const client::LineHandler& onLine) override {
    streamTargets.emplace_back(target);
    if (streams.empty()) return unreachable();
    Stream next = streams.front();
    streams.pop_front();
    for (const auto& line : next.lines) {
      if (!onLine(line)) return reply(200);
    }
    return next.end;
  }

 private:
  std::string address_ = "http://fake";
};

// Forwards to a FakeApi the test keeps, since the command owns the Api it is given.
class ForwardingApi final : public client::Api {
 public:
  explicit ForwardingApi(FakeApi& target) : target_(target) {}
  const std::string& address() const override { return target_.address(); }
  Result<client::ApiResponse> call(std::string_view method, std::string_view target,
                                   const json* body, const client::Headers& headers) override {
    return target_.call(method, target, body, headers);
  }
  Result<client::ApiResponse> stream(std::string_view target,
                                     const client::LineHandler& onLine) override {
    return target_.stream(target, onLine);
  }

 private:
  FakeApi& target_;
};

// A Context over string streams and a FakeApi, with a fixed clock and key.
struct Harness {
  std::ostringstream out;
  std::ostringstream err;
  std::istringstream in;
  FakeApi api;
  int apisMade = 0;
  std::vector<ClientConfig> configs;
  std::vector<std::chrono::milliseconds> sleeps;
  Context context{.out = out, .err = err, .in = in};

  Harness() {
    context.config.adminTokenPath = "";  // Never pick up a real admin token.
    context.config.envHome = "/nonexistent-home";
    context.makeApi = [this](const ClientConfig& config) -> std::unique_ptr<client::Api> {
      ++apisMade;
      configs.push_back(config);
      return std::make_unique<ForwardingApi>(api);
    };
    context.sleep = [this](std::chrono::milliseconds delay) { sleeps.push_back(delay); };
    context.nowMs = [] { return int64_t{1'700'000'100'000}; };
    context.newIdempotencyKey = [] { return std::string("key-1"); };
  }

  int run(const std::vector<std::string>& args) { return runCommandLine(args, context); }
  void setStdin(const std::string& text) { in.str(text); }
};

}  // namespace skiff::cli::testing
