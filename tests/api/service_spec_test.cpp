// Service fields of the job model: health checks, ports, rollout strategy, disruption budget and
// autoscaling policies: defaults, round trips and the exact error lines.

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/job.h"

namespace skiff::api {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

const std::string kHeader = R"(
applicationName: web
owner: {teamEmail: web@example.com}
)";

std::expected<JobDescriptor, FieldErrors> validate(const std::string& body) {
  auto document = parseJobFileText(kHeader + body);
  EXPECT_TRUE(document.has_value()) << document.error().message();
  return validateJobDescriptor(*document);
}

std::vector<std::string> errorsOf(const std::string& body) {
  std::vector<std::string> lines;
  auto job = validate(body);
  if (!job) {
    for (const auto& error : job.error()) lines.push_back(error.toString());
  }
  return lines;
}

const std::string kFullService = R"(
container:
  image: busybox
  command: [httpd, -f, -p, "8080"]
  ports: [8080, 9090]
  liveness:
    exec: {command: [cat, /tmp/alive]}
    intervalMs: 500
    timeoutMs: 200
    failureThreshold: 2
    startPeriodMs: 3000
  readiness:
    http: {path: /healthz, port: 8080, expectedStatus: 204}
    intervalMs: 200
    successThreshold: 2
service:
  capacity: {min: 2, desired: 6, max: 20}
  rollout: {maxSurge: 2, maxUnavailable: "10%", minHealthyMs: 5000, canary: {tasks: 1}}
  disruptionBudget: {availabilityPercentage: 80, rate: {tasks: 1, intervalMs: 10000}}
  autoscaling:
    scaleOutCooldownMs: 1000
    scaleInCooldownMs: 20000
    policies:
      - targetTracking: {metric: cpu, target: 60}
      - stepScaling:
          metric: queueDepth
          steps:
            - {upper: 10, change: -1}
            - {lower: 100, upper: 500, change: 2}
            - {lower: 500, change: 5}
)";

TEST(ServiceSpecTest, FullServiceKeepsEveryField) {
  auto job = validate(kFullService);
  ASSERT_TRUE(job.has_value()) << ::testing::PrintToString(errorsOf(kFullService));
  const Container& c = job->container;
  EXPECT_THAT(c.ports, ElementsAre(8080, 9090));
  ASSERT_TRUE(c.liveness.has_value());
  EXPECT_EQ(c.liveness->kind, HealthCheck::Kind::kExec);
  EXPECT_THAT(c.liveness->command, ElementsAre("cat", "/tmp/alive"));
  EXPECT_EQ(c.liveness->intervalMs, 500);
  EXPECT_EQ(c.liveness->timeoutMs, 200);
  EXPECT_EQ(c.liveness->failureThreshold, 2);
  EXPECT_EQ(c.liveness->successThreshold, 1);
  EXPECT_EQ(c.liveness->startPeriodMs, 3000);
  ASSERT_TRUE(c.readiness.has_value());
  EXPECT_EQ(c.readiness->kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(c.readiness->path, "/healthz");
  EXPECT_EQ(c.readiness->port, 8080);
  EXPECT_EQ(c.readiness->expectedStatus, 204);
  EXPECT_EQ(c.readiness->successThreshold, 2);
  const ServiceSpec& s = *job->service;
  EXPECT_EQ(s.rollout.maxSurge.value, 2);
  EXPECT_FALSE(s.rollout.maxSurge.percent);
  EXPECT_EQ(s.rollout.maxUnavailable.value, 10);
  EXPECT_TRUE(s.rollout.maxUnavailable.percent);
  EXPECT_EQ(s.rollout.minHealthyMs, 5000);
  EXPECT_EQ(s.rollout.canaryTasks, 1);
  ASSERT_TRUE(s.disruptionBudget.has_value());
  EXPECT_EQ(s.disruptionBudget->availabilityPercentage, 80.0);
  EXPECT_FALSE(s.disruptionBudget->maxUnhealthy.has_value());
  EXPECT_EQ(s.disruptionBudget->rateTasks, 1);
  EXPECT_EQ(s.disruptionBudget->rateIntervalMs, 10000);
  ASSERT_TRUE(s.autoscaling.has_value());
  EXPECT_EQ(s.autoscaling->scaleOutCooldownMs, 1000);
  EXPECT_EQ(s.autoscaling->scaleInCooldownMs, 20000);
  ASSERT_EQ(s.autoscaling->policies.size(), 2u);
  EXPECT_EQ(s.autoscaling->policies[0].kind, ScalingPolicy::Kind::kTargetTracking);
  EXPECT_EQ(s.autoscaling->policies[0].metric, "cpu");
  EXPECT_EQ(s.autoscaling->policies[0].target, 60.0);
  const auto& steps = s.autoscaling->policies[1].steps;
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_FALSE(steps[0].lower.has_value());
  EXPECT_EQ(steps[0].change, -1);
  EXPECT_EQ(steps[2].lower, 500.0);
  EXPECT_FALSE(steps[2].upper.has_value());
}

TEST(ServiceSpecTest, CanonicalJsonRoundTripsThroughValidation) {
  auto job = validate(kFullService);
  ASSERT_TRUE(job.has_value());
  json canonical = toJson(*job);
  auto again = validateJobDescriptor(canonical);
  ASSERT_TRUE(again.has_value()) << again.error()[0].toString();
  EXPECT_EQ(toJson(*again), canonical);
  EXPECT_EQ(canonical["service"]["rollout"]["maxUnavailable"], "10%");
  EXPECT_EQ(canonical["container"]["readiness"]["http"]["path"], "/healthz");
}

TEST(ServiceSpecTest, MinimalServiceGetsRolloutDefaultsAndNoBudgetOrAutoscaling) {
  auto job = validate(R"(
container: {image: busybox}
service: {capacity: {desired: 4, max: 4}}
)");
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->service->rollout.maxSurge.toString(), "25%");
  EXPECT_EQ(job->service->rollout.maxUnavailable.toString(), "0%");
  EXPECT_EQ(job->service->rollout.minHealthyMs, 0);
  EXPECT_EQ(job->service->rollout.canaryTasks, 0);
  EXPECT_FALSE(job->service->disruptionBudget.has_value());
  EXPECT_FALSE(job->service->autoscaling.has_value());
  EXPECT_FALSE(job->container.readiness.has_value());
  EXPECT_TRUE(job->container.ports.empty());
}

TEST(ServiceSpecTest, TaskCountPercentagesRoundAsDocumented) {
  TaskCount quarter{25, true};
  EXPECT_EQ(quarter.resolve(6, true), 2);
  EXPECT_EQ(quarter.resolve(6, false), 1);
  EXPECT_EQ(quarter.resolve(0, true), 0);
  EXPECT_EQ((TaskCount{3, false}).resolve(100, true), 3);
}

TEST(ServiceSpecTest, HealthCheckErrorsNameTheFieldAndRule) {
  EXPECT_THAT(errorsOf(R"(
container:
  image: busybox
  readiness: {http: {port: 0, path: healthz}, tcp: {port: 80}}
  liveness: {tcp: {port: 80}, intervalMs: 50, timeoutMs: 200, failureThreshold: 0}
batch: {}
)"),
              ElementsAreArray({
                  "container.liveness.intervalMs: must be between 100 and 3600000 (got 50)",
                  "container.liveness.failureThreshold: must be between 1 and 100 (got 0)",
                  "container.readiness: must set exactly one of exec, http or tcp (got 2)",
              }));
  EXPECT_THAT(errorsOf(R"(
container:
  image: busybox
  readiness: {http: {port: 0, path: healthz}}
  liveness: {exec: {command: []}, intervalMs: 100, timeoutMs: 200}
batch: {}
)"),
              ElementsAreArray({
                  "container.liveness.exec.command: must not be empty",
                  "container.readiness.http.path: must start with '/' (got \"healthz\")",
                  "container.readiness.http.port: must be between 1 and 65535 (got 0)",
              }));
  EXPECT_THAT(
      errorsOf(R"(
container:
  image: busybox
  liveness: {tcp: {port: 80}, intervalMs: 100, timeoutMs: 200}
batch: {}
)"),
      ElementsAre("container.liveness.timeoutMs: must be at most intervalMs (got 200 > 100)"));
}

TEST(ServiceSpecTest, PortErrorsNameTheListItem) {
  EXPECT_THAT(errorsOf(R"(
container: {image: busybox, ports: [80, 70000, 80, "x"]}
batch: {}
)"),
              ElementsAre("container.ports[1]: must be between 1 and 65535 (got 70000)",
                          "container.ports[2]: repeats port 80",
                          "container.ports[3]: must be an integer (got string)"));
}

TEST(ServiceSpecTest, RolloutAndBudgetErrorsNameTheFieldAndRule) {
  EXPECT_THAT(errorsOf(R"(
container: {image: busybox}
service:
  capacity: {desired: 2, max: 2}
  rollout: {maxSurge: 0, maxUnavailable: "150%", canary: {tasks: 0}}
  disruptionBudget: {maxUnhealthy: 1, availabilityPercentage: 120, rate: {tasks: 1}}
)"),
              ElementsAreArray({
                  "service.rollout.maxUnavailable: must be a task count or a percentage from 0% "
                  "to 100% (got \"150%\")",
                  "service.rollout: maxSurge and maxUnavailable must not both be 0: the rollout "
                  "could not move",
                  "service.rollout.canary.tasks: must be between 1 and 10000 (got 0)",
                  "service.disruptionBudget: must set exactly one of maxUnhealthy or "
                  "availabilityPercentage (got 2)",
                  "service.disruptionBudget.availabilityPercentage: must be between 0 and 100 "
                  "(got 120)",
                  "service.disruptionBudget.rate.intervalMs: is required",
              }));
}

TEST(ServiceSpecTest, AutoscalingErrorsNameTheFieldAndRule) {
  EXPECT_THAT(errorsOf(R"(
container: {image: busybox}
service:
  capacity: {desired: 2, max: 2}
  autoscaling:
    policies:
      - targetTracking: {metric: "cpu%", target: 0}
      - stepScaling:
          metric: q
          steps: [{lower: 10, upper: 5, change: 1}, {lower: 0, change: 2}]
      - {targetTracking: {metric: cpu, target: 50}, stepScaling: {metric: q, steps: []}}
)"),
              ElementsAreArray({
                  "service.autoscaling.policies[0].targetTracking.metric: must be \"cpu\" or a "
                  "metric name of letters, digits, '.', '_' or '-', starting with a letter (got "
                  "\"cpu%\")",
                  "service.autoscaling.policies[0].targetTracking.target: must be greater than 0 "
                  "(got 0)",
                  "service.autoscaling.policies[1].stepScaling.steps[0]: lower must be below upper",
                  "service.autoscaling.policies[1].stepScaling.steps[1]: must start at or above "
                  "the upper bound of the step before it",
                  "service.autoscaling.policies[2]: must set exactly one of targetTracking or "
                  "stepScaling (got 2)",
              }));
  EXPECT_THAT(errorsOf(R"(
container: {image: busybox}
service:
  capacity: {desired: 2, max: 2}
  autoscaling: {scaleInCooldownMs: -1}
)"),
              ElementsAre("service.autoscaling.scaleInCooldownMs: must be between 0 and 86400000 "
                          "(got -1)",
                          "service.autoscaling.policies: is required"));
}

TEST(ServiceSpecTest, UnknownServiceFieldsAreErrors) {
  EXPECT_THAT(errorsOf(R"(
container: {image: busybox, readiness: {tcp: {port: 80, host: x}}}
service:
  capacity: {desired: 2, max: 2}
  rollout: {surge: 1}
)"),
              ElementsAre("container.readiness.tcp.host: unknown field",
                          "service.rollout.surge: unknown field"));
}

}  // namespace
}  // namespace skiff::api
