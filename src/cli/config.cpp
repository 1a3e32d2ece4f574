#include "cli/config.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "api/job.h"
#include "cli/util.h"
#include "client/address.h"

namespace skiff::cli {
namespace {

using nlohmann::json;

std::optional<std::string> nonEmpty(const std::optional<std::string>& value) {
  if (value && !value->empty()) return value;
  return std::nullopt;
}

std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// The settings a config file holds; absent keys stay empty.
struct FileSettings {
  std::optional<std::string> addr;
  std::optional<std::string> token;
  std::optional<std::string> tokenFile;
};

Result<std::optional<std::string>> stringKey(const json& document, const std::string& key,
                                             const std::string& path) {
  auto it = document.find(key);
  if (it == document.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return fail(ErrorCode::kInvalidArgument, path + ": " + key + " must be a string");
  }
  return std::optional<std::string>(it->get<std::string>());
}

Result<FileSettings> parseConfigFile(const std::string& text, const std::string& path,
                                     std::vector<std::string>& warnings) {
  // The job file parser is a general YAML-to-JSON reader; a config file is just another document.
  auto document = api::parseJobFileText(text);
  if (!document) return std::unexpected(document.error().wrap(path));
  FileSettings settings;
  if (document->is_null()) return settings;  // An empty file sets nothing.
  if (!document->is_object()) {
    return fail(ErrorCode::kInvalidArgument, path + ": must be a map of settings");
  }
  for (const auto& [key, unused] : document->items()) {
    if (key != "addr" && key != "token" && key != "tokenFile") {
      // A warning, not an error, so a config written for a newer client still works here.
      warnings.push_back(path + ": unknown key \"" + sanitize(key) + "\" ignored");
    }
  }
  auto addr = stringKey(*document, "addr", path);
  if (!addr) return std::unexpected(addr.error());
  auto token = stringKey(*document, "token", path);
  if (!token) return std::unexpected(token.error());
  auto tokenFile = stringKey(*document, "tokenFile", path);
  if (!tokenFile) return std::unexpected(tokenFile.error());
  settings.addr = nonEmpty(*addr);
  settings.token = nonEmpty(*token);
  settings.tokenFile = nonEmpty(*tokenFile);
  if (settings.token && settings.tokenFile) {
    return fail(ErrorCode::kInvalidArgument, path + ": set token or tokenFile, not both");
  }
  return settings;
}

std::string expandTokenFilePath(const std::string& tokenFile, const std::string& configPath,
                                const ConfigSources& sources) {
  if (tokenFile.starts_with("~/")) {
    if (auto home = nonEmpty(sources.envHome)) return *home + tokenFile.substr(1);
    return tokenFile;
  }
  std::filesystem::path path(tokenFile);
  if (path.is_absolute()) return tokenFile;
  return (std::filesystem::path(configPath).parent_path() / path).string();
}

}  // namespace

ConfigSources ConfigSources::fromEnvironment() {
  ConfigSources sources;
  sources.envAddr = environment("SKIFF_ADDR");
  sources.envToken = environment("SKIFF_TOKEN");
  sources.envXdgConfigHome = environment("XDG_CONFIG_HOME");
  sources.envHome = environment("HOME");
  return sources;
}

std::string defaultConfigPath(const ConfigSources& sources) {
  if (auto xdg = nonEmpty(sources.envXdgConfigHome)) return *xdg + "/skiff/config.yaml";
  if (auto home = nonEmpty(sources.envHome)) return *home + "/.config/skiff/config.yaml";
  return {};
}

Result<ClientConfig> resolveConfig(const ConfigSources& sources) {
  ClientConfig config;

  // The config file is read even when flags and environment cover everything, so that a broken
  // file is reported the same way every time instead of only on some invocations.
  FileSettings file;
  std::string configPath;
  bool explicitConfig = false;
  if (auto flag = nonEmpty(sources.flagConfig)) {
    configPath = *flag;
    explicitConfig = true;
  } else {
    configPath = defaultConfigPath(sources);
  }
  if (!configPath.empty()) {
    std::error_code ec;
    bool exists = std::filesystem::exists(configPath, ec);
    if (!exists && explicitConfig) {
      return fail(ErrorCode::kInvalidArgument, "config file " + configPath + " does not exist");
    }
    if (exists) {
      auto text = readFile(configPath);
      if (!text) {
        return fail(ErrorCode::kInvalidArgument,
                    "config file " + configPath + ": " + text.error().message());
      }
      auto parsed = parseConfigFile(*text, configPath, config.warnings);
      if (!parsed) return std::unexpected(parsed.error());
      file = std::move(*parsed);
      config.configPath = configPath;
    }
  }

  std::string address;
  if (auto flag = nonEmpty(sources.flagAddr)) {
    address = *flag;
    config.addressSource = "--addr";
  } else if (auto env = nonEmpty(sources.envAddr)) {
    address = *env;
    config.addressSource = "SKIFF_ADDR";
  } else if (file.addr) {
    address = *file.addr;
    config.addressSource = config.configPath;
  } else {
    address = std::string(kDefaultAddress);
    config.addressSource = "default";
  }
  auto normalized = client::normalizeAddress(address);
  if (!normalized) return std::unexpected(normalized.error().wrap(config.addressSource));
  config.address = std::move(*normalized);

  if (auto flag = nonEmpty(sources.flagToken)) {
    config.token = *flag;
    config.tokenSource = "--token";
  } else if (auto env = nonEmpty(sources.envToken)) {
    config.token = *env;
    config.tokenSource = "SKIFF_TOKEN";
  } else if (file.token) {
    config.token = *file.token;
    config.tokenSource = config.configPath;
  } else if (file.tokenFile) {
    std::string path = expandTokenFilePath(*file.tokenFile, config.configPath, sources);
    auto token = client::readTokenFile(path);
    if (!token) return std::unexpected(token.error().wrap(config.configPath + ": tokenFile"));
    config.token = std::move(*token);
    config.tokenSource = path;
  } else if (!sources.adminTokenPath.empty() &&
             ::access(sources.adminTokenPath.c_str(), R_OK) == 0) {
    // The all-in-one convenience: on the control-plane machine an admin needs no setup. A file
    // we cannot read (the usual case for non-root users) is silently skipped.
    if (auto token = client::readTokenFile(sources.adminTokenPath)) {
      config.token = std::move(*token);
      config.tokenSource = sources.adminTokenPath;
    }
  }
  if (config.token.empty()) config.tokenSource = "none";
  return config;
}

}  // namespace skiff::cli
