#!/usr/bin/env bash
# Installs every Debian package Skiff's build, tests and benchmarks need. Idempotent and
# non-interactive; run as root on Debian 12. `--bench-peers` also installs the peers the
# benchmarks compare against (Slurm with munge, its REST daemon and JWT plugin; podman) and
# valgrind (bench/submission_cost.sh callgrind).
set -euo pipefail

packages=(
  # Toolchain.
  g++ cmake ninja-build pkg-config git ca-certificates curl
  # Libraries.
  libboost-dev libboost-system-dev nlohmann-json3-dev libyaml-cpp-dev libsqlite3-dev sqlite3
  libspdlog-dev libcli11-dev libssl-dev libcurl4-openssl-dev libarchive-dev libzstd-dev
  libjemalloc-dev rapidjson-dev
  # Node agent images: local registry and offline test-image tools.
  docker-registry skopeo umoci busybox-static zstd
  # Node agent containers: OCI runtimes and the container init.
  runc crun tini e2fsprogs libseccomp-dev
  # Container networking: netlink (links, routes, tc), nftables (security groups), namespaces.
  libnl-3-dev libnl-route-3-dev libmnl-dev libnftables-dev nftables iproute2 util-linux iperf3
  # The etcd store back end (skiffd --store etcd://...) and its tests.
  etcd-server etcd-client
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev procps clang-format jq zsh
)
if [[ "${1:-}" == "--bench-peers" ]]; then
  packages+=(slurm-wlm munge slurmrestd slurm-wlm-jwt-plugin podman valgrind)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: every package is already installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
