#include "controlplane/store/open.h"

#include <utility>

#include "controlplane/store/etcd_store.h"
#include "controlplane/store/sqlite_store.h"

namespace skiff::store {

namespace {

constexpr const char* kRule = "--store: must be sqlite or etcd://HOST:PORT[,HOST:PORT...]";

}  // namespace

Status checkSpec(const std::string& spec) {
  if (spec.empty() || spec == "sqlite") return {};
  if (!spec.starts_with("etcd://")) {
    return fail(ErrorCode::kInvalidArgument, std::string(kRule) + " (got '" + spec + "')");
  }
  auto endpoints = parseEtcdSpec(spec);
  if (!endpoints) return std::unexpected(endpoints.error().wrap(kRule));
  return {};
}

Result<std::unique_ptr<Store>> open(const std::string& spec, const std::string& stateDir) {
  SKIFF_TRY_STATUS(checkSpec(spec), "open the store");
  if (spec.empty() || spec == "sqlite") {
    auto sqlite = SqliteStore::open(stateDir + "/skiff.db");
    if (!sqlite) return std::unexpected(std::move(sqlite).error());
    return std::unique_ptr<Store>(std::move(*sqlite));
  }
  EtcdStoreOptions options;
  options.endpoints = parseEtcdSpec(spec).value();
  auto etcd = EtcdStore::open(std::move(options));
  if (!etcd) return std::unexpected(std::move(etcd).error());
  return std::unique_ptr<Store>(std::move(*etcd));
}

}  // namespace skiff::store
