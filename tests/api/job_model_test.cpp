// The job model: parsing, defaults, the canonical wire form and its round trips.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/constraint.h"
#include "api/job.h"
#include "api/network.h"

namespace skiff::api {
namespace {

using nlohmann::json;

const std::string kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// A batch job that sets every field to something other than its default.
const std::string kFullBatchYaml = R"(
name: nightly-report
applicationName: reports
owner:
  teamEmail: data@example.com
capacityGroup: batch-pool
tier: critical
attributes:
  team: data
  cost: "12"
container:
  image: localhost:5000/data/report:2.1
  entryPoint: [/bin/sh, -c]
  command: ["echo \"done\" && exit 0"]
  env:
    MODE: full
    EMPTY: ""
  resources:
    cpu: 2.5
    memoryMB: 2048
    diskMB: 4096
    networkMbps: 256
    gpu: 1
  securityProfile:
    securityGroups: [sg-a, sg-b]
    iamRole: arn:aws:iam::123456789012:role/reports
  hardConstraints:
    uniqueHost: "true"
    zone: z1
  softConstraints:
    machineType: m5
batch:
  size: 4
  runtimeLimitSec: 3600
  retryOnRuntimeLimit: true
  retryPolicy:
    delayed: {initialDelayMs: 100, delayMs: 2000, retries: 3}
)";

// A service job.
const std::string kFullServiceYaml = R"(
applicationName: web
owner: {teamEmail: web@example.com}
container:
  image: {name: registry.example.com/web/frontend, digest: )" +
                                     kDigest + R"(}
  env: {PORT: "8080"}
service:
  capacity: {min: 1, desired: 2, max: 5}
  enabled: false
  retryPolicy:
    exponentialBackOff: {initialDelayMs: 500, maxDelayIntervalMs: 8000, retries: 10}
)";

json parseYaml(const std::string& text) {
  auto document = parseJobFileText(text);
  EXPECT_TRUE(document.has_value()) << document.error().message();
  return document.value_or(json());
}

template <typename T>
std::string errorsOf(const std::expected<T, FieldErrors>& result) {
  std::string out;
  if (!result) {
    for (const auto& error : result.error()) out += error.toString() + "\n";
  }
  return out;
}

// Parses and validates a job file, failing the test when it is not valid.
JobDescriptor load(const std::string& yaml) {
  auto job = validateJobDescriptor(parseYaml(yaml));
  EXPECT_TRUE(job.has_value()) << errorsOf(job);
  return job.value_or(JobDescriptor{});
}

const char* kMinimalBatch = R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)";

// --- Round trips. ---

TEST(JobModelTest, CanonicalJsonIsAFixedPointOfValidation) {
  for (const std::string& yaml : {kFullBatchYaml, kFullServiceYaml, std::string(kMinimalBatch)}) {
    json first = toJson(load(yaml));
    auto again = validateJobDescriptor(first);
    ASSERT_TRUE(again.has_value()) << errorsOf(again) << first.dump(2);
    EXPECT_EQ(toJson(*again), first) << yaml;
  }
}

TEST(JobModelTest, JsonTextIsTheDumpOfTheJsonTree) {
  for (const std::string& yaml : {kFullBatchYaml, kFullServiceYaml, std::string(kMinimalBatch)}) {
    JobDescriptor job = load(yaml);
    EXPECT_EQ(json::parse(toJsonText(job)), toJson(job)) << yaml;
    EXPECT_EQ(toJsonText(job), toJson(job).dump()) << "the same text, member order included";
  }
}

TEST(JobModelTest, FullBatchJobKeepsEveryField) {
  JobDescriptor job = load(kFullBatchYaml);
  EXPECT_EQ(job.name, "nightly-report");
  EXPECT_EQ(job.applicationName, "reports");
  EXPECT_EQ(job.owner.teamEmail, "data@example.com");
  EXPECT_EQ(job.capacityGroup, "batch-pool");
  EXPECT_EQ(job.tier, Tier::kCritical);
  EXPECT_EQ(job.attributes, (std::map<std::string, std::string>{{"team", "data"}, {"cost", "12"}}));
  EXPECT_EQ(job.container.image.reference(), "localhost:5000/data/report:2.1");
  EXPECT_EQ(job.container.entryPoint, (std::vector<std::string>{"/bin/sh", "-c"}));
  EXPECT_EQ(job.container.command, (std::vector<std::string>{"echo \"done\" && exit 0"}));
  EXPECT_EQ(job.container.env,
            (std::map<std::string, std::string>{{"MODE", "full"}, {"EMPTY", ""}}));
  EXPECT_DOUBLE_EQ(job.container.resources.cpu, 2.5);
  EXPECT_EQ(job.container.resources.memoryMB, 2048);
  EXPECT_EQ(job.container.resources.diskMB, 4096);
  EXPECT_EQ(job.container.resources.networkMbps, 256);
  EXPECT_EQ(job.container.resources.gpu, 1);
  EXPECT_EQ(job.container.securityProfile.securityGroups,
            (std::vector<std::string>{"sg-a", "sg-b"}));
  EXPECT_EQ(job.container.securityProfile.iamRole, "arn:aws:iam::123456789012:role/reports");
  EXPECT_EQ(job.container.hardConstraints,
            (std::map<std::string, std::string>{{"uniqueHost", "true"}, {"zone", "z1"}}));
  EXPECT_EQ(job.container.softConstraints,
            (std::map<std::string, std::string>{{"machineType", "m5"}}));
  ASSERT_TRUE(job.isBatch());
  EXPECT_FALSE(job.service.has_value());
  EXPECT_EQ(job.batch->size, 4);
  EXPECT_EQ(job.batch->runtimeLimitSec, 3600);
  EXPECT_TRUE(job.batch->retryOnRuntimeLimit);
  EXPECT_EQ(job.batch->retryPolicy.kind, RetryPolicy::Kind::kDelayed);
  EXPECT_EQ(job.batch->retryPolicy.initialDelayMs, 100);
  EXPECT_EQ(job.batch->retryPolicy.delayMs, 2000);
  EXPECT_EQ(job.batch->retryPolicy.retries, 3);
}

TEST(JobModelTest, FullServiceJobKeepsEveryField) {
  JobDescriptor job = load(kFullServiceYaml);
  ASSERT_TRUE(job.service.has_value());
  EXPECT_FALSE(job.isBatch());
  EXPECT_EQ(job.service->capacity.min, 1);
  EXPECT_EQ(job.service->capacity.desired, 2);
  EXPECT_EQ(job.service->capacity.max, 5);
  EXPECT_FALSE(job.service->enabled);
  EXPECT_EQ(job.service->retryPolicy.kind, RetryPolicy::Kind::kExponentialBackOff);
  EXPECT_EQ(job.service->retryPolicy.initialDelayMs, 500);
  EXPECT_EQ(job.service->retryPolicy.maxDelayIntervalMs, 8000);
  EXPECT_EQ(job.service->retryPolicy.retries, 10);
  EXPECT_EQ(job.container.image.reference(), "registry.example.com/web/frontend@" + kDigest);
}

TEST(JobModelTest, JsonAndYamlTextOfTheSameJobGiveTheSameDescriptor) {
  const std::string jsonText = R"({
    "name": "nightly-report", "applicationName": "reports",
    "owner": {"teamEmail": "data@example.com"},
    "capacityGroup": "batch-pool", "tier": "critical",
    "attributes": {"team": "data", "cost": "12"},
    "container": {
      "image": "localhost:5000/data/report:2.1",
      "entryPoint": ["/bin/sh", "-c"], "command": ["echo \"done\" && exit 0"],
      "env": {"MODE": "full", "EMPTY": ""},
      "resources": {"cpu": 2.5, "memoryMB": 2048, "diskMB": 4096, "networkMbps": 256, "gpu": 1},
      "securityProfile": {"securityGroups": ["sg-a", "sg-b"],
                          "iamRole": "arn:aws:iam::123456789012:role/reports"},
      "hardConstraints": {"uniqueHost": "true", "zone": "z1"},
      "softConstraints": {"machineType": "m5"}},
    "batch": {"size": 4, "runtimeLimitSec": 3600, "retryOnRuntimeLimit": true,
              "retryPolicy": {"delayed": {"initialDelayMs": 100, "delayMs": 2000, "retries": 3}}}
  })";
  json fromYaml = toJson(load(kFullBatchYaml));

  auto wire = parseJson(jsonText);
  ASSERT_TRUE(wire.has_value()) << wire.error().message();
  auto fromWire = validateJobDescriptor(*wire);
  ASSERT_TRUE(fromWire.has_value()) << errorsOf(fromWire);
  EXPECT_EQ(toJson(*fromWire), fromYaml);

  // JSON is YAML: a job file may be written in JSON too.
  EXPECT_EQ(toJson(load(jsonText)), fromYaml);
}

TEST(JobModelTest, ToYamlOutputReparsesToTheSameJson) {
  for (const std::string& yaml : {kFullBatchYaml, kFullServiceYaml, std::string(kMinimalBatch)}) {
    json canonical = toJson(load(yaml));
    std::string rendered = toYaml(canonical);
    auto reparsed = parseJobFileText(rendered);
    ASSERT_TRUE(reparsed.has_value()) << reparsed.error().message() << "\n" << rendered;
    EXPECT_EQ(*reparsed, canonical) << rendered;
  }
}

TEST(JobModelTest, ToYamlQuotesStringsThatWouldReadBackAsAnotherType) {
  const std::vector<std::string> tricky = {
      "true",       "False",     "null",       "~",
      "",           "512",       "-7",         "0x10",
      "1.5",        ".5",        "1e3",        "yes",
      "no",         "on",        "0o17",       "a: b",
      "- x",        "#tag",      "%s%n{}",     "@at",
      "*alias",     "&anchor",   "!tag",       "{x: 1}",
      "[1]",        "'single'",  "\"double\"", " padded ",
      "two\nlines", "tab\there", "ünïcödé",    "key: value # not a comment",
      "---",        "...",       "|",          ">",
  };
  json value = json::object();
  json list = json::array();
  for (size_t i = 0; i < tricky.size(); ++i) {
    value["k" + std::to_string(i)] = tricky[i];
    list.push_back(tricky[i]);
  }
  value["list"] = list;
  value["numbers"] = {0, -1, 1.5, 1e-7, 12345678901234LL, true, false, nullptr};
  value["empty"] = {{"object", json::object()}, {"array", json::array()}};
  std::string rendered = toYaml(value);
  auto reparsed = parseJobFileText(rendered);
  ASSERT_TRUE(reparsed.has_value()) << reparsed.error().message() << "\n" << rendered;
  EXPECT_EQ(*reparsed, value) << rendered;
}

// --- Defaults. ---

TEST(JobModelTest, MinimalBatchJobGetsEveryDefault) {
  JobDescriptor job = load(kMinimalBatch);
  EXPECT_EQ(job.name, "app");  // The name defaults to the application name.
  EXPECT_EQ(job.capacityGroup, "DEFAULT");
  EXPECT_EQ(job.tier, Tier::kFlex);
  EXPECT_TRUE(job.attributes.empty());
  EXPECT_EQ(job.container.image.name, "busybox");
  EXPECT_EQ(job.container.image.tag, "latest");
  EXPECT_EQ(job.container.image.digest, "");
  EXPECT_TRUE(job.container.entryPoint.empty());
  EXPECT_TRUE(job.container.command.empty());
  EXPECT_TRUE(job.container.env.empty());
  EXPECT_DOUBLE_EQ(job.container.resources.cpu, 1.0);
  EXPECT_EQ(job.container.resources.memoryMB, 512);
  EXPECT_EQ(job.container.resources.diskMB, 1024);
  EXPECT_EQ(job.container.resources.networkMbps, 128);
  EXPECT_EQ(job.container.resources.gpu, 0);
  EXPECT_EQ(job.container.securityProfile.securityGroups, std::vector<std::string>{"default"});
  EXPECT_EQ(job.container.securityProfile.iamRole, "");
  EXPECT_TRUE(job.container.hardConstraints.empty());
  EXPECT_TRUE(job.container.softConstraints.empty());
  ASSERT_TRUE(job.batch.has_value());
  EXPECT_EQ(job.batch->size, 1);
  EXPECT_EQ(job.batch->runtimeLimitSec, 432000);
  EXPECT_FALSE(job.batch->retryOnRuntimeLimit);
  EXPECT_EQ(job.batch->retryPolicy.kind, RetryPolicy::Kind::kImmediate);
  EXPECT_EQ(job.batch->retryPolicy.retries, 0);
}

TEST(JobModelTest, MinimalServiceJobGetsEveryDefault) {
  JobDescriptor job = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {desired: 3, max: 3}}
)");
  ASSERT_TRUE(job.service.has_value());
  EXPECT_EQ(job.service->capacity.min, 0);
  EXPECT_EQ(job.service->capacity.desired, 3);
  EXPECT_EQ(job.service->capacity.max, 3);
  EXPECT_TRUE(job.service->enabled);
  EXPECT_EQ(job.service->retryPolicy.kind, RetryPolicy::Kind::kExponentialBackOff);
  EXPECT_EQ(job.service->retryPolicy.retries, 1'000'000'000);
  EXPECT_EQ(job.service->retryPolicy.initialDelayMs, 1000);
  EXPECT_EQ(job.service->retryPolicy.maxDelayIntervalMs, 60000);
}

TEST(JobModelTest, CanonicalJsonSpellsOutEveryDefault) {
  json expected = R"({
    "name": "app", "applicationName": "app", "owner": {"teamEmail": "team@example.com"},
    "capacityGroup": "DEFAULT", "tier": "flex", "attributes": {},
    "container": {
      "image": {"name": "busybox", "tag": "latest"},
      "entryPoint": [], "command": [], "env": {},
      "resources": {"cpu": 1.0, "memoryMB": 512, "diskMB": 1024, "networkMbps": 128, "gpu": 0},
      "securityProfile": {"securityGroups": ["default"], "iamRole": ""},
      "hardConstraints": {}, "softConstraints": {}, "ports": []},
    "batch": {"size": 1, "runtimeLimitSec": 432000, "retryOnRuntimeLimit": false,
              "gang": false, "retryPolicy": {"immediate": {"retries": 0}}}
  })"_json;
  EXPECT_EQ(toJson(load(kMinimalBatch)), expected);
}

TEST(JobModelTest, NullMeansNotSet) {
  JobDescriptor job = load(R"(
applicationName: app
name: ~
owner: {teamEmail: team@example.com}
tier: null
container:
  image: busybox
  command: ~
  resources: {memoryMB: ~, cpu: }
  securityProfile: {iamRole: ~}
batch: {size: ~, retryPolicy: ~}
)");
  EXPECT_EQ(job.name, "app");
  EXPECT_EQ(job.tier, Tier::kFlex);
  EXPECT_TRUE(job.container.command.empty());
  EXPECT_EQ(job.container.resources.memoryMB, 512);
  EXPECT_DOUBLE_EQ(job.container.resources.cpu, 1.0);
  EXPECT_EQ(job.container.securityProfile.iamRole, "");
  ASSERT_TRUE(job.batch.has_value());
  EXPECT_EQ(job.batch->size, 1);
  EXPECT_EQ(job.batch->retryPolicy.kind, RetryPolicy::Kind::kImmediate);
}

// Like every other field, a null list of security groups is not set, so the default applies; it
// must not become an empty list that bypasses the 1..6 rule.
TEST(JobModelTest, NullSecurityGroupsMeansTheDefaultGroup) {
  JobDescriptor job = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {securityGroups: ~}
batch: {}
)");
  EXPECT_EQ(job.container.securityProfile.securityGroups, std::vector<std::string>{"default"});
}

TEST(JobModelTest, RangeLimitsAreInclusive) {
  JobDescriptor low = load(R"(
applicationName: a
owner: {teamEmail: a@b.co}
container:
  image: busybox
  resources: {cpu: 0.001, memoryMB: 16, diskMB: 1, networkMbps: 1, gpu: 0}
  securityProfile: {securityGroups: [g]}
batch:
  size: 1
  runtimeLimitSec: 1
  retryPolicy: {delayed: {initialDelayMs: 0, delayMs: 0, retries: 0}}
)");
  EXPECT_EQ(low.container.resources.memoryMB, Limits::kMinMemoryMB);
  JobDescriptor high = load(R"(
applicationName: a
owner: {teamEmail: a@b.co}
container:
  image: busybox
  resources: {cpu: 96, memoryMB: 1048576, diskMB: 16777216, networkMbps: 400000, gpu: 16}
  securityProfile: {securityGroups: [g1, g2, g3, g4, g5, g6]}
batch:
  size: 10000
  runtimeLimitSec: 864000
  retryPolicy:
    exponentialBackOff: {initialDelayMs: 86400000, maxDelayIntervalMs: 86400000,
                         retries: 1000000000}
)");
  EXPECT_DOUBLE_EQ(high.container.resources.cpu, Limits::kMaxCpu);
  EXPECT_EQ(high.container.resources.memoryMB, Limits::kMaxMemoryMB);
  EXPECT_EQ(high.container.resources.diskMB, Limits::kMaxDiskMB);
  EXPECT_EQ(high.container.resources.networkMbps, Limits::kMaxNetworkMbps);
  EXPECT_EQ(high.container.resources.gpu, Limits::kMaxGpu);
  EXPECT_EQ(high.batch->size, Limits::kMaxBatchSize);
  EXPECT_EQ(high.batch->runtimeLimitSec, Limits::kMaxRuntimeLimitSec);
  EXPECT_EQ(high.batch->retryPolicy.retries, Limits::kMaxRetries);
  JobDescriptor service = load(R"(
applicationName: a
owner: {teamEmail: a@b.co}
container: {image: busybox}
service: {capacity: {min: 10000, desired: 10000, max: 10000}}
)");
  EXPECT_EQ(service.service->capacity.max, Limits::kMaxServiceCapacity);
}

TEST(JobModelTest, IntegralFloatsAreAcceptedAsIntegers) {
  auto job = validateJobDescriptor(json::parse(R"({"applicationName": "a",
      "owner": {"teamEmail": "a@b.co"}, "container": {"image": "busybox",
      "resources": {"memoryMB": 256.0}}, "batch": {"size": 2.0}})"));
  ASSERT_TRUE(job.has_value()) << errorsOf(job);
  EXPECT_EQ(job->container.resources.memoryMB, 256);
  EXPECT_EQ(job->batch->size, 2);
}

TEST(JobModelTest, ConstraintNamesAreCaseInsensitiveAndStoredCanonically) {
  JobDescriptor job = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {UNIQUEHOST: "false", availabilityzone: us-east-1a}
  softConstraints: {MachineType: m5}
batch: {}
)");
  EXPECT_EQ(job.container.hardConstraints,
            (std::map<std::string, std::string>{{"uniqueHost", "false"},
                                                {"availabilityZone", "us-east-1a"}}));
  EXPECT_EQ(job.container.softConstraints,
            (std::map<std::string, std::string>{{"machineType", "m5"}}));
}

// --- Image references. ---

struct ImageCase {
  std::string reference;
  std::string name;
  std::string tag;
  std::string digest;
  std::string canonical;
};

TEST(JobModelTest, ImageStringFormsAreSplitIntoNameTagAndDigest) {
  const std::vector<ImageCase> cases = {
      {"busybox", "busybox", "latest", "", "busybox:latest"},
      {"busybox:1.36", "busybox", "1.36", "", "busybox:1.36"},
      {"localhost:5000/team/app:1.0", "localhost:5000/team/app", "1.0", "",
       "localhost:5000/team/app:1.0"},
      // A port is not a tag.
      {"localhost:5000/team/app", "localhost:5000/team/app", "latest", "",
       "localhost:5000/team/app:latest"},
      {"127.0.0.1:5000/skiff/busybox:latest", "127.0.0.1:5000/skiff/busybox", "latest", "",
       "127.0.0.1:5000/skiff/busybox:latest"},
      {"registry.example.com/a_b/c-d.e:v1_2.3-rc", "registry.example.com/a_b/c-d.e", "v1_2.3-rc",
       "", "registry.example.com/a_b/c-d.e:v1_2.3-rc"},
      {"repo@" + kDigest, "repo", "", kDigest, "repo@" + kDigest},
      {"localhost:5000/repo@" + kDigest, "localhost:5000/repo", "", kDigest,
       "localhost:5000/repo@" + kDigest},
  };
  for (const ImageCase& c : cases) {
    SCOPED_TRACE(c.reference);
    auto job = validateJobDescriptor(json{{"applicationName", "app"},
                                          {"owner", {{"teamEmail", "t@example.com"}}},
                                          {"container", {{"image", c.reference}}},
                                          {"batch", json::object()}});
    ASSERT_TRUE(job.has_value()) << errorsOf(job);
    const Image& image = job->container.image;
    EXPECT_EQ(image.name, c.name);
    EXPECT_EQ(image.tag, c.tag);
    EXPECT_EQ(image.digest, c.digest);
    EXPECT_EQ(image.reference(), c.canonical);
  }
}

TEST(JobModelTest, ImageObjectFormMatchesTheStringForm) {
  JobDescriptor tagged = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: localhost:5000/team/app, tag: "1.0"}
batch: {}
)");
  EXPECT_EQ(tagged.container.image.reference(), "localhost:5000/team/app:1.0");
  JobDescriptor untagged = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: busybox}
batch: {}
)");
  EXPECT_EQ(untagged.container.image.tag, "latest");
  // clang-format off
  JobDescriptor digested = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: repo, digest: ")" + kDigest + R"("}
batch: {}
)");
  // clang-format on
  EXPECT_EQ(digested.container.image.reference(), "repo@" + kDigest);
  EXPECT_EQ(digested.container.image.tag, "");

  // The wire form is always the object form, with exactly one of tag and digest.
  EXPECT_EQ(toJson(tagged)["container"]["image"],
            json({{"name", "localhost:5000/team/app"}, {"tag", "1.0"}}));
  EXPECT_EQ(toJson(digested)["container"]["image"], json({{"name", "repo"}, {"digest", kDigest}}));
}

// --- YAML scalar typing (YAML 1.2 core schema). ---

TEST(JobModelTest, PlainYamlScalarsFollowTheCoreSchema) {
  json value = parseYaml(R"(
quoted: "512"
singleQuoted: '512'
int: 512
negative: -3
hex: 0x10
float: 1.5
exponent: 1e3
tilde: ~
nullWord: null
empty:
true: true
trueCaps: True
false: FALSE
yes: yes
on: on
leadingZero: 012
dotted: 1.2.3
str: !!str 42
)");
  EXPECT_EQ(value["quoted"], json("512"));
  EXPECT_EQ(value["singleQuoted"], json("512"));
  EXPECT_EQ(value["int"], json(512));
  EXPECT_TRUE(value["int"].is_number_integer());
  EXPECT_EQ(value["negative"], json(-3));
  EXPECT_EQ(value["hex"], json(16));
  EXPECT_TRUE(value["float"].is_number_float());
  EXPECT_DOUBLE_EQ(value["float"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(value["exponent"].get<double>(), 1000.0);
  EXPECT_TRUE(value["tilde"].is_null());
  EXPECT_TRUE(value["nullWord"].is_null());
  EXPECT_TRUE(value["empty"].is_null());
  EXPECT_EQ(value["true"], json(true));
  EXPECT_EQ(value["trueCaps"], json(true));
  EXPECT_EQ(value["false"], json(false));
  EXPECT_EQ(value["yes"], json("yes"));  // YAML 1.1 booleans are strings in 1.2.
  EXPECT_EQ(value["on"], json("on"));
  EXPECT_EQ(value["leadingZero"], json(12));
  EXPECT_EQ(value["dotted"], json("1.2.3"));
  EXPECT_EQ(value["str"], json("42"));
}

TEST(JobModelTest, QuotedNumberIsRejectedWhereAnIntegerIsNeeded) {
  auto job = validateJobDescriptor(parseYaml(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {memoryMB: "512"}}
batch: {}
)"));
  ASSERT_FALSE(job.has_value());
  EXPECT_EQ(errorsOf(job), "container.resources.memoryMB: must be an integer (got string)\n");
}

TEST(JobModelTest, TypedScalarsAreAcceptedWhereTheyFit) {
  JobDescriptor job = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  resources: {cpu: 1.5, memoryMB: 0x100, gpu: ~}
  env: {FLAG: "true", COUNT: "3"}
batch: {retryOnRuntimeLimit: true}
)");
  EXPECT_DOUBLE_EQ(job.container.resources.cpu, 1.5);
  EXPECT_EQ(job.container.resources.memoryMB, 256);
  EXPECT_EQ(job.container.resources.gpu, 0);
  EXPECT_EQ(job.container.env.at("FLAG"), "true");
  EXPECT_TRUE(job.batch->retryOnRuntimeLimit);
}

TEST(JobModelTest, TierCriticalIsParsedAndNamed) {
  JobDescriptor job = load(R"(
applicationName: app
owner: {teamEmail: team@example.com}
tier: critical
container: {image: busybox}
batch: {}
)");
  EXPECT_EQ(job.tier, Tier::kCritical);
  EXPECT_EQ(tierName(Tier::kCritical), "critical");
  EXPECT_EQ(tierName(Tier::kFlex), "flex");
  EXPECT_EQ(toJson(job)["tier"], "critical");
}

// --- The shipped examples. ---

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(JobExamplesTest, EveryExampleFileValidates) {
  const std::filesystem::path dir = std::filesystem::path(SKIFF_SOURCE_DIR) / "examples";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    auto ext = entry.path().extension();
    if (ext != ".yaml" && ext != ".yml" && ext != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    auto document = parseJobFileText(readFile(entry.path()));
    ASSERT_TRUE(document.has_value()) << document.error().message();
    // Security group files (`skiff sg apply`) are named *-sg.yaml; every other file is a job.
    if (entry.path().stem().string().ends_with("-sg")) {
      auto group = validateSecurityGroup(*document);
      EXPECT_TRUE(group.has_value()) << errorsOf(group);
      continue;
    }
    ++count;
    auto job = validateJobDescriptor(*document);
    EXPECT_TRUE(job.has_value()) << errorsOf(job);
  }
  EXPECT_GE(count, 3);
}

TEST(JobExamplesTest, HelloBatchIsTheQuickStartJob) {
  const auto path = std::filesystem::path(SKIFF_SOURCE_DIR) / "examples" / "hello-batch.yaml";
  JobDescriptor job = load(readFile(path));
  EXPECT_EQ(job.container.image.reference(), "127.0.0.1:5000/skiff/busybox:latest");
  ASSERT_TRUE(job.isBatch());
  EXPECT_EQ(job.batch->size, 1);
  EXPECT_EQ(job.batch->retryPolicy.kind, RetryPolicy::Kind::kImmediate);
  EXPECT_EQ(job.batch->retryPolicy.retries, 2);
  EXPECT_THAT(job.container.command, ::testing::Contains("hello from skiff"));
}

// --- Scheduler fields. ---

TEST(JobModelTest, AttributeConstraintsKeepTheAttributeNameAndCheckTheExpression) {
  auto parsed = parseJobFileText(R"yaml(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {ATTRIBUTE.kernelVersion: ">=6.1", attribute.ssd: exists}
  softConstraints: {attribute.rack: "in(r1, r2)"}
batch: {gang: true}
)yaml");
  ASSERT_TRUE(parsed.has_value());
  auto job = validateJobDescriptor(*parsed);
  ASSERT_TRUE(job.has_value()) << job.error()[0].toString();
  EXPECT_EQ(job->container.hardConstraints.at("attribute.kernelVersion"), ">=6.1");
  EXPECT_TRUE(job->container.hardConstraints.contains("attribute.ssd"));
  EXPECT_TRUE(job->batch->gang);

  auto bad = parseJobFileText(R"yaml(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {attribute.cores: ">= many", "attribute.bad name": x, attribute.rack: "in(r1,"}
batch: {}
)yaml");
  ASSERT_TRUE(bad.has_value());
  auto errors = validateJobDescriptor(*bad);
  ASSERT_FALSE(errors.has_value());
  std::vector<std::string> messages;
  for (const auto& error : errors.error()) messages.push_back(error.toString());
  EXPECT_THAT(messages, ::testing::UnorderedElementsAre(
                            "container.hardConstraints.attribute.bad name: attribute name must "
                            "be 1 to 64 of [A-Za-z0-9_.-]",
                            "container.hardConstraints.attribute.cores: invalid attribute "
                            "expression: a comparison needs a number after the operator",
                            "container.hardConstraints.attribute.rack: invalid attribute "
                            "expression: a list must end with \")\""));
}

TEST(AttributeExpression, MatchesByOperator) {
  auto match = [](std::string_view text, const std::string* value) {
    auto expression = parseAttributeExpression(text);
    EXPECT_TRUE(expression.has_value()) << text;
    return expression && expression->matches(value);
  };
  std::string m5 = "m5";
  std::string sixteen = "16";
  EXPECT_TRUE(match("m5", &m5));
  EXPECT_TRUE(match("=m5", &m5));
  EXPECT_FALSE(match("m5", nullptr));
  EXPECT_TRUE(match("!=r5", &m5));
  EXPECT_TRUE(match("!=r5", nullptr));
  EXPECT_TRUE(match("in(r5, m5)", &m5));
  EXPECT_FALSE(match("notin(r5,m5)", &m5));
  EXPECT_TRUE(match("exists", &m5));
  EXPECT_TRUE(match("!exists", nullptr));
  EXPECT_TRUE(match(">=16", &sixteen));
  EXPECT_FALSE(match(">16", &sixteen));
  EXPECT_TRUE(match("<32", &sixteen));
  EXPECT_FALSE(match("<32", &m5)) << "not a number";
}

}  // namespace
}  // namespace skiff::api
