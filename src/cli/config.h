#pragma once

// Where the client finds the server and its credentials.
//
// Each setting resolves in one order: command-line flag, then environment (`SKIFF_ADDR`,
// `SKIFF_TOKEN`), then the config file, then the default. When no token comes from any of those
// and the all-in-one admin token file (/var/lib/skiff/admin.token) is readable, it is used.
//
// The config file is YAML with the keys `addr`, `token` and `tokenFile` (a relative `tokenFile`
// is relative to the config file's folder; a leading `~/` means $HOME). It is
// `--config`, else `$XDG_CONFIG_HOME/skiff/config.yaml`, else `~/.config/skiff/config.yaml`; a
// missing default file is not an error, a missing `--config` file is.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace skiff::cli {

inline constexpr std::string_view kDefaultAddress = "http://127.0.0.1:7070";
inline constexpr std::string_view kAdminTokenPath = "/var/lib/skiff/admin.token";

// The raw inputs, kept apart from the process so tests can supply them. Empty strings count as
// unset, as shells make it awkward to unset a variable for one command.
struct ConfigSources {
  std::optional<std::string> flagAddr;
  std::optional<std::string> flagToken;
  std::optional<std::string> flagConfig;
  std::optional<std::string> envAddr;           // SKIFF_ADDR
  std::optional<std::string> envToken;          // SKIFF_TOKEN
  std::optional<std::string> envXdgConfigHome;  // XDG_CONFIG_HOME
  std::optional<std::string> envHome;           // HOME
  std::string adminTokenPath = std::string(kAdminTokenPath);

  // The environment variables of this process; the flag fields stay empty.
  static ConfigSources fromEnvironment();
};

struct ClientConfig {
  std::string address;  // Normalized: "http[s]://host[:port][/prefix]", no trailing '/'.
  std::string token;    // Empty when none was found.
  std::string
      addressSource;        // Where `address` came from, for messages ("--addr", "SKIFF_ADDR"...).
  std::string tokenSource;  // Likewise for `token`; "none" when empty.
  std::string configPath;   // The config file that was read; empty when none was.
  std::vector<std::string> warnings;  // Non-fatal problems (unknown config keys), one line each.
};

// The config file consulted when `--config` is not given; empty when neither XDG_CONFIG_HOME
// nor HOME is set.
std::string defaultConfigPath(const ConfigSources& sources);

// Resolves the settings (the address through client::normalizeAddress, token files through
// client::readTokenFile). Fails with kInvalidArgument, naming the culprit, for a malformed
// address, a missing `--config` file, a malformed config file, a config file that sets both
// `token` and `tokenFile`, or an unreadable or empty token file that was asked for.
Result<ClientConfig> resolveConfig(const ConfigSources& sources);

}  // namespace skiff::cli
