#pragma once

// Name rules shared by the API's resources. Each is a plain character scan: these run on every
// submission, where std::regex cost a sizeable share of the request.

#include <string_view>

namespace skiff::api {

// A short name: 1 to 64 letters, digits, '_', '.' or '-'. Capacity group names and attribute
// names (node attributes and `attribute.<name>` constraints) follow it.
bool validShortName(std::string_view name);

// A resource name (applications, security groups, node ids): a letter or digit, then up to 127
// letters, digits, '.', '_' or '-' ([A-Za-z0-9][A-Za-z0-9._-]{0,127}).
bool validName(std::string_view name);

// A metric name: a letter, then up to 127 letters, digits, '.', '_' or '-'.
bool validMetricName(std::string_view name);

// An environment variable name: [A-Za-z_][A-Za-z0-9_]*.
bool validEnvName(std::string_view name);

// An image tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool validImageTag(std::string_view tag);

// An image digest: "sha256:" and 64 lowercase hex digits.
bool validImageDigest(std::string_view digest);

// An image name in Docker's reference grammar: an optional registry host ("localhost", a name
// with a dot, or any host name with a port) and '/', then lowercase path components of
// letters and digits joined by '.', '_', "__" or runs of '-', separated by '/'. The length
// limit is the caller's.
bool validImageName(std::string_view name);

// An email address as the job's owner gives it: no whitespace, one '@' with text before it, and
// a '.' inside the part after it.
bool validEmail(std::string_view email);

}  // namespace skiff::api
