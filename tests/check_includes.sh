#!/usr/bin/env bash
# Checks that includes in src/ point one way (README, "Layout"): each folder may include only
# the folders below it. Prints FILE:LINE and the rule for every include that crosses a forbidden
# direction, and exits 1 when there is one.
#
#   tests/check_includes.sh [ROOT]   checks ROOT/src (default: this repository)
#   tests/check_includes.sh --self-test
#                                    checks a scratch tree holding one violation of each rule and
#                                    fails unless every one is reported with its file and line
set -euo pipefail

# What each folder of src/ must not include. Quoted includes are resolved against src/ (the
# include root) and then against the including file's folder.
declare -A forbidden=(
  [common]="api client controlplane agent cli local"
  [api]="controlplane agent cli client local"
  [client]="cli agent controlplane local"
  [controlplane]="agent cli local"
  [agent]="cli controlplane local"
  [cli]="agent controlplane local"
  [local]=""
)

check() {
  local root=$1 status=0 file line text target module
  while IFS= read -r match; do
    file=${match%%:*}
    match=${match#*:}
    line=${match%%:*}
    text=${match#*:}
    target=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"$text")
    module=${file#"$root"/src/}
    module=${module%%/*}
    if [[ ! -e "$root/src/$target" && ! -e "$(dirname "$file")/$target" ]]; then
      if [[ "$target" == tests/* || "$target" == ../* || -e "$root/tests/$target" ]]; then
        echo "${file#"$root"/}:$line: src/ must not include test code ($target)"
        status=1
      fi
      continue
    fi
    [[ -e "$root/src/$target" ]] || continue  # Beside the including file: the same folder.
    local to=${target%%/*}
    for bad in ${forbidden[$module]-}; do
      if [[ "$to" == "$bad" ]]; then
        echo "${file#"$root"/}:$line: src/$module must not include src/$to ($target)"
        status=1
      fi
    done
  done < <(grep -rnE --include='*.h' --include='*.cpp' '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' \
             "$root/src" || true)
  return $status
}

self_test() {
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch"/src/{common,api,client,controlplane,agent,cli,local} "$scratch/tests/testing"
  for module in common api client controlplane agent cli local; do
    echo '#pragma once' >"$scratch/src/$module/ok.h"
  done
  echo '#pragma once' >"$scratch/tests/testing/helper.h"
  printf '#include "common/ok.h"\n#include "agent/ok.h"\n' >"$scratch/src/controlplane/a.cpp"
  printf '// x\n#include "cli/ok.h"\n' >"$scratch/src/agent/b.cpp"
  printf '#include "controlplane/ok.h"\n' >"$scratch/src/cli/c.cpp"
  printf '#include "cli/ok.h"\n' >"$scratch/src/client/d.cpp"
  printf '#include "client/ok.h"\n' >"$scratch/src/api/e.h"
  printf '#include "api/ok.h"\n' >"$scratch/src/common/f.cpp"
  printf '#include "ok.h"\n#include "testing/helper.h"\n' >"$scratch/src/local/g.cpp"
  printf '#include "agent/ok.h"\n#include "controlplane/ok.h"\n' >"$scratch/src/local/h.cpp"
  local output
  if output=$(check "$scratch"); then
    echo "self-test: the check passed a tree with violations"
    return 1
  fi
  local expected=(
    "src/controlplane/a.cpp:2: src/controlplane must not include src/agent (agent/ok.h)"
    "src/agent/b.cpp:2: src/agent must not include src/cli (cli/ok.h)"
    "src/cli/c.cpp:1: src/cli must not include src/controlplane (controlplane/ok.h)"
    "src/client/d.cpp:1: src/client must not include src/cli (cli/ok.h)"
    "src/api/e.h:1: src/api must not include src/client (client/ok.h)"
    "src/common/f.cpp:1: src/common must not include src/api (api/ok.h)"
    "src/local/g.cpp:2: src/ must not include test code (testing/helper.h)"
  )
  local missing=0
  for want in "${expected[@]}"; do
    if ! grep -qxF "$want" <<<"$output"; then
      echo "self-test: not reported: $want"
      missing=1
    fi
  done
  if [[ $(wc -l <<<"$output") -ne ${#expected[@]} ]]; then
    echo "self-test: expected ${#expected[@]} reports, got:"
    echo "$output"
    return 1
  fi
  [[ $missing -eq 0 ]] && echo "self-test: every violation reported"
  return $missing
}

if [[ "${1-}" == "--self-test" ]]; then
  self_test
else
  root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
  check "$root" && echo "includes point one way"
fi
