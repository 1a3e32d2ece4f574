#pragma once

// Name rules shared by the API's resources.

#include <string_view>

namespace skiff::api {

// A short name: 1 to 64 letters, digits, '_', '.' or '-'. Capacity group names and attribute
// names (node attributes and `attribute.<name>` constraints) follow it.
bool validShortName(std::string_view name);

}  // namespace skiff::api
