// Bad job files, each with the exact error lines a user sees.
//
// Every case is a whole job file (YAML, as a user writes it) and the exact `FieldError::toString()`
// lines that validation reports, in order; for files that do not even parse, the one parse error.

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/job.h"

namespace skiff::api {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Lines = std::vector<std::string>;

enum class Stage {
  kParse,     // parseJobFileText fails with the one message.
  kValidate,  // The file parses; validateJobDescriptor reports the lines.
};

struct BadJobCase {
  std::string name;
  std::string yaml;
  std::vector<std::string> errors;
  Stage stage = Stage::kValidate;
};

void PrintTo(const BadJobCase& c, std::ostream* os) {
  *os << c.name;
}

// What a user sees for `yaml`: the parse error, or every validation error, or nothing.
struct Outcome {
  Stage stage;
  std::vector<std::string> lines;
};

Outcome check(const std::string& yaml) {
  auto document = parseJobFileText(yaml);
  if (!document) return {Stage::kParse, {document.error().message()}};
  auto job = validateJobDescriptor(*document);
  std::vector<std::string> lines;
  if (!job) {
    for (const FieldError& error : job.error()) lines.push_back(error.toString());
  }
  return {Stage::kValidate, lines};
}

const std::string kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kKnownConstraints =
    "(known: uniqueHost, exclusiveHost, zoneBalance, activeHost, availabilityZone, machineId, "
    "machineGroup, machineType, zone, attribute.<name>)";
const std::string kNameRule =
    "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit";
const std::string kImageNameRule =
    "must be an image name such as \"busybox\" or \"localhost:5000/team/app\": lowercase path "
    "components, optionally after a registry host";
const std::string kOneRetryKind =
    "must set exactly one of immediate, delayed or exponentialBackOff";
const std::string kEnvNameRule =
    "must be a variable name of letters, digits and '_', not starting with a digit";

// One case: a name, a whole job file, and the exact error lines.
// clang-format off
const std::vector<BadJobCase> kBadJobs = {
    // --- Unknown fields, at every level. ---
    {"UnknownTopLevelField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
colour: blue
)",
     {"colour: unknown field"}},
    {"UnknownOwnerField", R"(
applicationName: app
owner: {teamEmail: team@example.com, slack: "#team"}
container: {image: busybox}
batch: {}
)",
     {"owner.slack: unknown field"}},
    {"UnknownContainerField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, volumes: [data]}
batch: {}
)",
     {"container.volumes: unknown field"}},
    {"UnknownImageObjectField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: busybox, registry: docker.io}
batch: {}
)",
     {"container.image.registry: unknown field"}},
    {"UnknownResourcesField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  resources: {memory: 512}
batch: {}
)",
     {"container.resources.memory: unknown field"}},
    {"UnknownSecurityProfileField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {groups: [sg-1]}
batch: {}
)",
     {"container.securityProfile.groups: unknown field"}},
    {"UnknownBatchField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 2, parallelism: 2}
)",
     {"batch.parallelism: unknown field"}},
    {"UnknownFieldInRetryPolicyKind", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    immediate: {retries: 1, delayMs: 5}
)",
     {"batch.retryPolicy.immediate.delayMs: unknown field"}},
    {"UnknownRetryPolicyKind", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    linear: {retries: 1}
)",
     {"batch.retryPolicy.linear: unknown field",
      "batch.retryPolicy: " + kOneRetryKind + " (got 0)"}},
    {"UnknownServiceField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service:
  capacity: {desired: 1, max: 1}
  replicas: 3
)",
     {"service.replicas: unknown field"}},
    {"UnknownCapacityField", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service:
  capacity: {desired: 1, max: 1, maximum: 3}
)",
     {"service.capacity.maximum: unknown field"}},

    // --- Wrong types. ---
    {"ApplicationNameNotString", R"(
applicationName: 42
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)",
     {"applicationName: must be a string (got integer)"}},
    {"OwnerNotObject", R"(
applicationName: app
owner: team@example.com
container: {image: busybox}
batch: {}
)",
     {"owner: must be an object (got string)"}},
    {"ContainerNotObject", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: busybox
batch: {}
)",
     {"container: must be an object (got string)"}},
    {"ImageNotStringOrObject", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: 5}
batch: {}
)",
     {"container.image: must be an object (got integer)"}},
    {"CommandNotList", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, command: echo hi}
batch: {}
)",
     {"container.command: must be a list of strings (got string)"}},
    {"CommandItemNotString", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, command: [sleep, 10]}
batch: {}
)",
     {"container.command[1]: must be a string (got integer)"}},
    {"CpuNotNumber", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {cpu: two}}
batch: {}
)",
     {"container.resources.cpu: must be a number of cores (got string)"}},
    {"MemoryQuotedStringIsNotInteger", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {memoryMB: "512"}}
batch: {}
)",
     {"container.resources.memoryMB: must be an integer (got string)"}},
    {"BatchSizeFractional", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 1.5}
)",
     {"batch.size: must be an integer (got 1.5)"}},
    {"RetryOnRuntimeLimitYesIsNotBoolean", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryOnRuntimeLimit: yes}
)",
     {"batch.retryOnRuntimeLimit: must be true or false (got string)"}},
    {"ServiceEnabledNotBoolean", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {desired: 1, max: 1}, enabled: 1}
)",
     {"service.enabled: must be true or false (got integer)"}},
    {"AttributesNotMap", R"(
applicationName: app
owner: {teamEmail: team@example.com}
attributes: [team-a]
container: {image: busybox}
batch: {}
)",
     {"attributes: must be a map of strings (got array)"}},
    {"EnvValueNotString", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, env: {PORT: 8080}}
batch: {}
)",
     {"container.env.PORT: must be a string (got integer)"}},
    {"BatchNotObject", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: 3
)",
     {"batch: must be an object (got integer)"}},
    {"RetryPolicyKindNotObject", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {immediate: 3}}
)",
     {"batch.retryPolicy.immediate: must be an object (got integer)"}},

    // --- Missing required fields. ---
    {"MissingApplicationName", R"(
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)",
     {"applicationName: is required"}},
    {"MissingOwner", R"(
applicationName: app
container: {image: busybox}
batch: {}
)",
     {"owner: is required"}},
    {"MissingTeamEmail", R"(
applicationName: app
owner: {}
container: {image: busybox}
batch: {}
)",
     {"owner.teamEmail: is required"}},
    {"MissingContainer", R"(
applicationName: app
owner: {teamEmail: team@example.com}
batch: {}
)",
     {"container: is required"}},
    {"MissingImage", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {command: [echo, hi]}
batch: {}
)",
     {"container.image: is required"}},
    {"NullImageCountsAsMissing", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: ~}
batch: {}
)",
     {"container.image: is required"}},
    {"MissingImageNameInObjectForm", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {tag: "1.0"}
batch: {}
)",
     {"container.image.name: is required"}},
    {"MissingCapacity", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {enabled: true}
)",
     {"service.capacity: is required"}},
    {"MissingCapacityMaxAndDesired", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {min: 1}}
)",
     {"service.capacity.max: is required", "service.capacity.desired: is required"}},
    {"MissingImmediateRetries", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {immediate: {}}}
)",
     {"batch.retryPolicy.immediate.retries: is required"}},
    {"MissingDelayedDelayMs", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {delayed: {retries: 3, initialDelayMs: 100}}}
)",
     {"batch.retryPolicy.delayed.delayMs: is required"}},
    {"MissingExponentialFields", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {exponentialBackOff: {}}}
)",
     {"batch.retryPolicy.exponentialBackOff.retries: is required",
      "batch.retryPolicy.exponentialBackOff.initialDelayMs: is required",
      "batch.retryPolicy.exponentialBackOff.maxDelayIntervalMs: is required"}},

    // --- Numeric ranges. ---
    {"CpuZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {cpu: 0}}
batch: {}
)",
     {"container.resources.cpu: must be greater than 0 and at most 96 (got 0)"}},
    {"CpuNegative", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {cpu: -0.5}}
batch: {}
)",
     {"container.resources.cpu: must be greater than 0 and at most 96 (got -0.5)"}},
    {"CpuAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {cpu: 96.5}}
batch: {}
)",
     {"container.resources.cpu: must be greater than 0 and at most 96 (got 96.5)"}},
    {"MemoryBelowMin", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {memoryMB: 15}}
batch: {}
)",
     {"container.resources.memoryMB: must be between 16 and 1048576 (got 15)"}},
    {"MemoryAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {memoryMB: 1048577}}
batch: {}
)",
     {"container.resources.memoryMB: must be between 16 and 1048576 (got 1048577)"}},
    {"MemoryBeyondInt64IsOutOfRangeNotFractional", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {memoryMB: 99999999999999999999}}
batch: {}
)",
     {"container.resources.memoryMB: must be between 16 and 1048576 (got 1e+20)"}},
    {"DiskZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {diskMB: 0}}
batch: {}
)",
     {"container.resources.diskMB: must be between 1 and 16777216 (got 0)"}},
    {"DiskAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {diskMB: 16777217}}
batch: {}
)",
     {"container.resources.diskMB: must be between 1 and 16777216 (got 16777217)"}},
    {"NetworkZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {networkMbps: 0}}
batch: {}
)",
     {"container.resources.networkMbps: must be between 1 and 400000 (got 0)"}},
    {"NetworkAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {networkMbps: 400001}}
batch: {}
)",
     {"container.resources.networkMbps: must be between 1 and 400000 (got 400001)"}},
    {"GpuNegative", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {gpu: -1}}
batch: {}
)",
     {"container.resources.gpu: must be between 0 and 16 (got -1)"}},
    {"GpuAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, resources: {gpu: 17}}
batch: {}
)",
     {"container.resources.gpu: must be between 0 and 16 (got 17)"}},
    {"BatchSizeZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 0}
)",
     {"batch.size: must be between 1 and 10000 (got 0)"}},
    {"BatchSizeAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 10001}
)",
     {"batch.size: must be between 1 and 10000 (got 10001)"}},
    {"RuntimeLimitZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {runtimeLimitSec: 0}
)",
     {"batch.runtimeLimitSec: must be between 1 and 864000 (got 0)"}},
    {"RuntimeLimitAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {runtimeLimitSec: 864001}
)",
     {"batch.runtimeLimitSec: must be between 1 and 864000 (got 864001)"}},
    {"RetriesNegative", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {immediate: {retries: -1}}}
)",
     {"batch.retryPolicy.immediate.retries: must be between 0 and 1000000000 (got -1)"}},
    {"RetriesAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service:
  capacity: {desired: 1, max: 1}
  retryPolicy: {immediate: {retries: 1000000001}}
)",
     {"service.retryPolicy.immediate.retries: must be between 0 and 1000000000 (got 1000000001)"}},
    {"DelayedInitialDelayNegative", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {delayed: {retries: 1, initialDelayMs: -1, delayMs: 10}}}
)",
     {"batch.retryPolicy.delayed.initialDelayMs: must be between 0 and 86400000 (got -1)"}},
    {"DelayedDelayAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {delayed: {retries: 1, delayMs: 86400001}}}
)",
     {"batch.retryPolicy.delayed.delayMs: must be between 0 and 86400000 (got 86400001)"}},
    {"ExponentialInitialDelayZero", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    exponentialBackOff: {retries: 3, initialDelayMs: 0, maxDelayIntervalMs: 1000}
)",
     {"batch.retryPolicy.exponentialBackOff.initialDelayMs: must be between 1 and 86400000 (got "
      "0)"}},
    {"ExponentialMaxDelayAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    exponentialBackOff: {retries: 3, initialDelayMs: 10, maxDelayIntervalMs: 86400001}
)",
     {"batch.retryPolicy.exponentialBackOff.maxDelayIntervalMs: must be between 1 and 86400000 "
      "(got 86400001)"}},
    {"ExponentialMaxBelowInitial", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    exponentialBackOff: {retries: 3, initialDelayMs: 1000, maxDelayIntervalMs: 500}
)",
     {"batch.retryPolicy.exponentialBackOff.maxDelayIntervalMs: must be at least initialDelayMs "
      "(got 500 < 1000)"}},
    {"CapacityAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {desired: 1, max: 10001}}
)",
     {"service.capacity.max: must be between 0 and 10000 (got 10001)"}},
    {"CapacityMinAboveDesired", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {min: 3, desired: 2, max: 5}}
)",
     {"service.capacity: must satisfy min <= desired <= max (got min 3, desired 2, max 5)"}},
    {"CapacityDesiredAboveMax", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {desired: 6, max: 5}}
)",
     {"service.capacity: must satisfy min <= desired <= max (got min 0, desired 6, max 5)"}},

    // --- Image references. ---
    {"ImageTagAndDigest", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "busybox:1.36@)" + kDigest + R"("}
batch: {}
)",
     // The echoed value is cut at 64 characters.
     {"container.image: must have a tag or a digest, not both (got \"busybox:1.36@sha256:"
      "0123456789abcdef0123456789abcdef0123456789a...)"}},
    {"ImageObjectTagAndDigest", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: busybox, tag: "1.36", digest: ")" + kDigest + R"("}
batch: {}
)",
     {"container.image: must have a tag or a digest, not both"}},
    {"ImageShortDigest", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "busybox@sha256:0123abcd"}
batch: {}
)",
     {"container.image: has an invalid digest: must be sha256: and 64 lowercase hex digits (got "
      "\"sha256:0123abcd\")"}},
    {"ImageObjectDigestWrongAlgorithm", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: busybox, digest: "md5:0123456789abcdef0123456789abcdef"}
batch: {}
)",
     {"container.image.digest: must be sha256: and 64 lowercase hex digits (got "
      "\"md5:0123456789abcdef0123456789abcdef\")"}},
    {"ImageUppercaseName", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "BusyBox:1.36"}
batch: {}
)",
     {"container.image: " + kImageNameRule + " (got \"BusyBox\")"}},
    // A first component is a registry host only with a dot, a port or as "localhost"; otherwise it
    // is a path component and must be lowercase (as Docker reads references).
    {"ImageUppercaseFirstComponent", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "Team/app:1.0"}
batch: {}
)",
     {"container.image: " + kImageNameRule + " (got \"Team/app\")"}},
    {"ImageFirstComponentStartsWithDash", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "-team/app"}
batch: {}
)",
     {"container.image: " + kImageNameRule + " (got \"-team/app\")"}},
    {"ImageObjectUppercaseName", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: Team/App}
batch: {}
)",
     {"container.image.name: " + kImageNameRule + " (got \"Team/App\")"}},
    {"ImageEmptyName", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: ""}
batch: {}
)",
     {"container.image: " + kImageNameRule + " (got \"\")"}},
    {"ImageTagStartsWithDash", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "busybox:-rc1"}
batch: {}
)",
     {"container.image: has an invalid tag (got \"-rc1\")"}},
    {"ImageEmptyTagAfterColon", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "busybox:"}
batch: {}
)",
     {"container.image: has an invalid tag (got \"\")"}},
    {"ImageEmptyDigestAfterAt", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: "busybox@"}
batch: {}
)",
     {"container.image: has an invalid digest: must be sha256: and 64 lowercase hex digits (got "
      "\"\")"}},
    {"ImageObjectEmptyTag", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: {name: busybox, tag: ""}
batch: {}
)",
     {"container.image.tag: must be 1 to 128 letters, digits, '_', '.' or '-' (got \"\")"}},

    // --- Security groups. ---
    {"SecurityGroupsEmpty", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {securityGroups: []}
batch: {}
)",
     {"container.securityProfile.securityGroups: must have between 1 and 6 entries (got 0)"}},
    {"SecurityGroupsSeven", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {securityGroups: [sg-1, sg-2, sg-3, sg-4, sg-5, sg-6, sg-7]}
batch: {}
)",
     {"container.securityProfile.securityGroups: must have between 1 and 6 entries (got 7)"}},
    {"SecurityGroupsDuplicate", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {securityGroups: [sg-1, sg-2, sg-1]}
batch: {}
)",
     {"container.securityProfile.securityGroups: must not repeat a security group"}},
    {"SecurityGroupBadName", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  securityProfile: {securityGroups: [sg-1, "sg two"]}
batch: {}
)",
     {"container.securityProfile.securityGroups[1]: must be a security group name of letters, "
      "digits, '.', '_' or '-' (got \"sg two\")"}},

    // --- Retry policy kinds. ---
    {"RetryPolicyTwoKinds", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch:
  retryPolicy:
    immediate: {retries: 1}
    delayed: {retries: 1, delayMs: 10}
)",
     {"batch.retryPolicy: " + kOneRetryKind + " (got 2)"}},
    {"RetryPolicyNoKind", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {retryPolicy: {}}
)",
     {"batch.retryPolicy: " + kOneRetryKind + " (got 0)"}},

    // --- Batch or service. ---
    {"BatchAndService", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
service: {capacity: {desired: 1, max: 1}}
)",
     {"service: must not be set together with batch: a job is one or the other"}},
    {"NeitherBatchNorService", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
)",
     {"batch: is required unless service is set: a job is batch or service"}},

    // --- Names, tier, email, env, attributes. ---
    {"ApplicationNameWithSpace", R"(
applicationName: my app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)",
     {"applicationName: " + kNameRule + " (got \"my app\")"}},
    {"NameTooLong", R"(
applicationName: app
name: )" + std::string(129, 'a') + R"(
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)",
     {"name: " + kNameRule + " (got \"" + std::string(63, 'a') + "...)"}},
    {"CapacityGroupStartsWithDash", R"(
applicationName: app
owner: {teamEmail: team@example.com}
capacityGroup: -batch
container: {image: busybox}
batch: {}
)",
     {"capacityGroup: " + kNameRule + " (got \"-batch\")"}},
    {"TierUnknown", R"(
applicationName: app
owner: {teamEmail: team@example.com}
tier: gold
container: {image: busybox}
batch: {}
)",
     {"tier: must be one of critical, flex (got \"gold\")"}},
    {"TierIsCaseSensitive", R"(
applicationName: app
owner: {teamEmail: team@example.com}
tier: Critical
container: {image: busybox}
batch: {}
)",
     {"tier: must be one of critical, flex (got \"Critical\")"}},
    {"EmailWithoutAt", R"(
applicationName: app
owner: {teamEmail: team.example.com}
container: {image: busybox}
batch: {}
)",
     {"owner.teamEmail: must be an email address (got \"team.example.com\")"}},
    {"EmailWithoutDomainDot", R"(
applicationName: app
owner: {teamEmail: team@localhost}
container: {image: busybox}
batch: {}
)",
     {"owner.teamEmail: must be an email address (got \"team@localhost\")"}},
    {"EnvNameStartsWithDigit", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, env: {1PATH: /bin}}
batch: {}
)",
     {"container.env.1PATH: " + kEnvNameRule}},
    {"EnvNameWithDash", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, env: {MY-VAR: x}}
batch: {}
)",
     {"container.env.MY-VAR: " + kEnvNameRule}},
    {"AttributeReservedPrefix", R"(
applicationName: app
owner: {teamEmail: team@example.com}
attributes: {skiff.owner: me, team: a}
container: {image: busybox}
batch: {}
)",
     {"attributes.skiff.owner: uses the reserved prefix \"skiff.\""}},
    {"AttributeValueNotString", R"(
applicationName: app
owner: {teamEmail: team@example.com}
attributes: {cost: 12}
container: {image: busybox}
batch: {}
)",
     {"attributes.cost: must be a string (got integer)"}},

    // --- Constraints. ---
    {"UnknownHardConstraint", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {rackId: r1}
batch: {}
)",
     {"container.hardConstraints.rackId: is not a known constraint " + kKnownConstraints}},
    {"UnknownSoftConstraint", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  softConstraints: {uniqueHosts: "true"}
batch: {}
)",
     {"container.softConstraints.uniqueHosts: is not a known constraint " + kKnownConstraints}},
    {"BooleanConstraintYes", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {uniqueHost: "yes"}
batch: {}
)",
     {"container.hardConstraints.uniqueHost: must be \"true\" or \"false\" (got \"yes\")"}},
    {"BooleanConstraintUnquotedIsNotString", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {exclusiveHost: true}
batch: {}
)",
     {"container.hardConstraints.exclusiveHost: must be a string (got boolean)"}},
    {"ValueConstraintEmpty", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  softConstraints: {zone: ""}
batch: {}
)",
     {"container.softConstraints.zone: must not be empty"}},
    {"ConstraintBothHardAndSoft", R"(
applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  hardConstraints: {uniqueHost: "true"}
  softConstraints: {UNIQUEHOST: "false"}
batch: {}
)",
     {"container.softConstraints.uniqueHost: must not also be a hard constraint"}},

    // --- Documents that are not job objects, and YAML that does not parse. ---
    {"DocumentIsList", "- applicationName: app\n", {"a job must be an object (got array)"}},
    {"DocumentIsScalar", "hello\n", {"a job must be an object (got string)"}},
    {"DocumentIsEmpty", "", {"a job must be an object (got null)"}},
    {"YamlUnclosedFlowSequence", R"(applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox, command: [echo, hi}
batch: {}
)",
     {"line 3, column 47: illegal flow end"},
     Stage::kParse},
    {"YamlBadIndentation", R"(applicationName: app
owner:
  teamEmail: team@example.com
   extra: 1
)",
     {"line 4, column 9: illegal map value"},
     Stage::kParse},
    // (yaml-cpp 0.7 accepts an unterminated quote that runs into a final newline.)
    {"YamlUnterminatedQuote", "applicationName: \"app\nowner: x",
     {"line 2, column 9: illegal EOF in scalar"},
     Stage::kParse},
    {"YamlDuplicateTopLevelKey", R"(applicationName: app
owner: {teamEmail: team@example.com}
applicationName: other
container: {image: busybox}
batch: {}
)",
     {"line 3, column 1: duplicate key \"applicationName\""},
     Stage::kParse},
    {"YamlDuplicateNestedKey", R"(applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  resources:
    cpu: 1
    cpu: 2
batch: {}
)",
     {"line 7, column 5: duplicate key \"cpu\""},
     Stage::kParse},
    {"YamlMapKeyIsNotScalar", R"([applicationName]: app
)",
     {"line 1, column 1: map keys must be plain strings"},
     Stage::kParse},
};
// clang-format on

class BadJobFileTest : public ::testing::TestWithParam<BadJobCase> {};

TEST_P(BadJobFileTest, ReportsExactlyTheExpectedErrors) {
  const BadJobCase& c = GetParam();
  Outcome outcome = check(c.yaml);
  EXPECT_EQ(outcome.stage, c.stage)
      << (outcome.stage == Stage::kParse ? "failed to parse" : "parsed");
  EXPECT_THAT(outcome.lines, ElementsAreArray(c.errors)) << "job file:\n" << c.yaml;
}

INSTANTIATE_TEST_SUITE_P(JobFiles, BadJobFileTest, ::testing::ValuesIn(kBadJobs),
                         [](const ::testing::TestParamInfo<BadJobCase>& info) {
                           return info.param.name;
                         });

TEST(BadJobFileTableTest, HasAtLeastFortyFiveCasesWithUniqueNames) {
  EXPECT_GE(kBadJobs.size(), 45u);
  std::vector<std::string> names;
  for (const auto& c : kBadJobs) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
}

// The table's files are these valid ones with something broken.
TEST(JobValidationTest, MinimalBatchAndServiceFilesAreValid) {
  const std::string batch = R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
)";
  const std::string service = R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
service: {capacity: {desired: 1, max: 1}}
)";
  EXPECT_EQ(check(batch).lines, Lines{});
  EXPECT_EQ(check(service).lines, Lines{});
}

TEST(JobValidationTest, ReportsEveryErrorOfAFileAtOnce) {
  Outcome outcome = check(R"(
applicationName: "my app"
owner: {teamEmail: nobody}
tier: gold
container: {image: busybox, resources: {memoryMB: 0}}
batch: {size: 0}
)");
  ASSERT_EQ(outcome.stage, Stage::kValidate);
  EXPECT_EQ(outcome.lines,
            Lines({
                "applicationName: " + kNameRule + " (got \"my app\")",
                "owner.teamEmail: must be an email address (got \"nobody\")",
                "tier: must be one of critical, flex (got \"gold\")",
                "container.resources.memoryMB: must be between 16 and 1048576 (got 0)",
                "batch.size: must be between 1 and 10000 (got 0)",
            }));
}

TEST(JobValidationTest, EchoesFormatStringLookingValuesLiterally) {
  Outcome outcome = check(R"(
applicationName: app
name: "%s%n{}"
owner: {teamEmail: "%n%n%n@{}.%s"}
tier: "{0}%d"
container: {image: "%s%n{}", env: {A: "%s%n{}"}}
batch: {}
)");
  ASSERT_EQ(outcome.stage, Stage::kValidate);
  EXPECT_EQ(outcome.lines, Lines({
                               "name: " + kNameRule + " (got \"%s%n{}\")",
                               "tier: must be one of critical, flex (got \"{0}%d\")",
                               "container.image: " + kImageNameRule + " (got \"%s%n{}\")",
                           }));

  // A valid job keeps such values byte for byte.
  auto document = parseJobFileText(R"(
applicationName: app
owner: {teamEmail: team@example.com}
attributes: {note: "%s%n{}%x%p"}
container: {image: busybox, env: {FMT: "%s%n{}"}, command: ["printf", "%s%n{}"]}
batch: {}
)");
  ASSERT_TRUE(document.has_value());
  auto job = validateJobDescriptor(*document);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->attributes.at("note"), "%s%n{}%x%p");
  EXPECT_EQ(job->container.env.at("FMT"), "%s%n{}");
  EXPECT_EQ(job->container.command.at(1), "%s%n{}");
  EXPECT_EQ(toJson(*job)["container"]["env"]["FMT"], "%s%n{}");
}

TEST(JobValidationTest, EchoedValuesAreEscapedToOneLine) {
  Outcome outcome = check(R"(
applicationName: app
owner: {teamEmail: team@example.com}
tier: "two\nlines\t\"quoted\""
container: {image: busybox}
batch: {}
)");
  EXPECT_EQ(outcome.lines, Lines({"tier: must be one of critical, flex (got "
                                  "\"two\\nlines\\t\\\"quoted\\\"\")"}));
}

TEST(JobValidationTest, NumberOutOfDoubleRangeIsAnErrorNotACrash) {
  const std::string yaml = R"(applicationName: app
owner: {teamEmail: team@example.com}
container:
  image: busybox
  resources: {cpu: 1e400}
batch: {}
)";
  Outcome outcome{Stage::kParse, {}};
  ASSERT_NO_THROW(outcome = check(yaml));
  ASSERT_EQ(outcome.lines.size(), 1u);
  if (outcome.stage == Stage::kParse) {
    EXPECT_THAT(outcome.lines[0], HasSubstr("line 5"));
  } else {
    EXPECT_THAT(outcome.lines[0], HasSubstr("container.resources.cpu: "));
  }
}

// A few hundred bytes of nested aliases expand to over 100000 values. Job files (which the control
// plane also takes as YAML request bodies) must be refused, not expanded into memory.
TEST(JobValidationTest, AliasExpansionBombIsRejected) {
  std::string yaml = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 5; ++level) {
    std::string previous = "*l" + std::to_string(level - 1);
    yaml += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [" + previous;
    for (int i = 1; i < 10; ++i) yaml += ", " + previous;
    yaml += "]\n";
  }
  ASSERT_LT(yaml.size(), 400u);
  auto document = parseJobFileText(yaml);
  ASSERT_FALSE(document.has_value());
  EXPECT_EQ(document.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(document.error().message(), ::testing::StartsWith("line "));
}

// Aliases that stay small are still plain YAML.
TEST(JobValidationTest, SmallAliasesAreExpanded) {
  auto document = parseJobFileText(R"(
applicationName: app
owner: &owner {teamEmail: team@example.com}
attributes: {a: &v shared, b: *v}
container: {image: busybox}
batch: {}
)");
  ASSERT_TRUE(document.has_value()) << document.error().message();
  auto job = validateJobDescriptor(*document);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->attributes.at("b"), "shared");
}

TEST(JobValidationTest, UnknownFieldsAreReportedInKeyOrderBeforeOtherErrors) {
  Outcome outcome = check(R"(
zeta: 1
applicationName: app
alpha: 2
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 0}
)");
  EXPECT_EQ(outcome.lines, Lines({"alpha: unknown field", "zeta: unknown field",
                                  "batch.size: must be between 1 and 10000 (got 0)"}));
}

TEST(JobValidationTest, TooManyAttributesIsAnError) {
  std::string yaml = R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {}
attributes:
)";
  for (int i = 0; i < 65; ++i) yaml += "  key" + std::to_string(i) + ": v\n";
  EXPECT_EQ(check(yaml).lines, Lines({"attributes: must have at most 64 entries (got "
                                      "65)"}));
}

TEST(JobValidationTest, WireJsonWithWrongTypesIsRejectedWithPaths) {
  auto document = parseJson(R"({"applicationName": "app", "owner": {"teamEmail": "t@example.com"},
      "container": {"image": {"name": "busybox", "tag": 1}, "resources": {"gpu": true}},
      "batch": {"size": 2.5}})");
  ASSERT_TRUE(document.has_value());
  auto job = validateJobDescriptor(*document);
  ASSERT_FALSE(job.has_value());
  std::vector<std::string> lines;
  for (const auto& error : job.error()) lines.push_back(error.toString());
  EXPECT_EQ(lines, Lines({
                       "container.image.tag: must be a string (got integer)",
                       "container.resources.gpu: must be an integer (got boolean)",
                       "batch.size: must be an integer (got 2.5)",
                   }));
}

TEST(JobValidationTest, MalformedWireJsonIsAnError) {
  auto document = parseJson(R"({"applicationName": "app",)");
  ASSERT_FALSE(document.has_value());
  EXPECT_EQ(document.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(document.error().message(), ::testing::StartsWith("malformed JSON: "));
}

}  // namespace
}  // namespace skiff::api
