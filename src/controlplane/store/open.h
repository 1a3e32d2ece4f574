#pragma once

// Chooses and opens skiffd's store from its `--store` value.
//
//   "sqlite" (or "")                 SqliteStore at STATE_DIR/skiff.db (sqlite_store.h).
//   "etcd://HOST:PORT[,HOST:PORT]"   EtcdStore on those members (etcd_store.h).
//
// Any other value fails with kInvalidArgument naming `--store` and the accepted forms; opening
// fails as the chosen back end's `open` does.

#include <memory>
#include <string>

#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::store {

Result<std::unique_ptr<Store>> open(const std::string& spec, const std::string& stateDir);

// Checks `spec` without opening anything (for flag validation).
Status checkSpec(const std::string& spec);

}  // namespace skiff::store
