#!/usr/bin/env bash
# A multi-node Skiff cluster on one machine: skiffd and N agents, each agent on its own test host
# (a network namespace with its own address), as tests/testing/netns_cluster.h builds it.
#
#   scripts/cluster-netns.sh up N [BUILD_DIR]   # namespaces, skiffd, N agents; stays in the
#                                               # foreground, removes everything on Ctrl-C/exit
#   scripts/cluster-netns.sh down               # remove what an interrupted run left behind
#
# Layout: namespace ${PREFIX}-fabric holds bridge br0 with 10.213.0.1/24 (skiffd listens there on
# port 7070); ${PREFIX}-hI holds eth0 with 10.213.0.(11+I)/24 and a default route through the
# fabric. Agent I runs in ${PREFIX}-hI with node id host-I, zone zone-(I%2), machine type m.test,
# state in $WORK/agent-I. Export SKIFF_ADDR=http://10.213.0.1:7070 and run `skiff` through
# `ip netns exec ${PREFIX}-fabric` (or any host namespace) to use the cluster.
# Environment: PREFIX (default skc), WORK (default /tmp/skiff-cluster), AGENT_FLAGS (extra flags
# for every agent, e.g. --insecure-registry 10.213.0.1:5000).
set -euo pipefail

PREFIX=${PREFIX:-skc}
WORK=${WORK:-/tmp/skiff-cluster}
FABRIC_ADDR=10.213.0.1

down() {
  set +e
  for pid in $(cat "$WORK"/*.pid 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
  sleep 1
  for pid in $(cat "$WORK"/*.pid 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^${PREFIX}-"); do ip netns del "$ns"; done
  # Container mounts of the agents' state directories.
  grep " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$WORK"
}

up() {
  local hosts=$1 build=${2:-build}
  [[ $(id -u) == 0 ]] || { echo "cluster-netns: needs root" >&2; exit 1; }
  trap down EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$WORK"
  ip netns add "$PREFIX-fabric"
  ip -n "$PREFIX-fabric" link set lo up
  ip -n "$PREFIX-fabric" link add br0 type bridge
  ip -n "$PREFIX-fabric" addr add "$FABRIC_ADDR/24" dev br0
  ip -n "$PREFIX-fabric" link set br0 up
  for ((i = 0; i < hosts; i++)); do
    local ns="$PREFIX-h$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$PREFIX-fabric" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$PREFIX-fabric" link set "p$i" master br0 up
    ip -n "$ns" addr add "10.213.0.$((11 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$FABRIC_ADDR"
  done
  nsenter --net="/run/netns/$PREFIX-fabric" "$build/src/local/skiffd" \
    --state-dir "$WORK/skiffd" --listen "$FABRIC_ADDR:7070" >"$WORK/skiffd.log" 2>&1 &
  echo $! >"$WORK/skiffd.pid"
  for _ in $(seq 100); do [[ -s $WORK/skiffd/join.token ]] && break; sleep 0.1; done
  for ((i = 0; i < hosts; i++)); do
    # shellcheck disable=SC2086
    nsenter --net="/run/netns/$PREFIX-h$i" "$build/src/agent/skiff-agent" \
      --server "http://$FABRIC_ADDR:7070" --join-token-file "$WORK/skiffd/join.token" \
      --node-id "host-$i" --state-dir "$WORK/agent-$i" --zone "zone-$((i % 2))" \
      --machine-type m.test --cgroup-parent "/skiff-cluster-$i" \
      --monitor "$build/src/agent/runtime/skiff-monitor" ${AGENT_FLAGS:-} \
      >"$WORK/agent-$i.log" 2>&1 &
    echo $! >"$WORK/agent-$i.pid"
  done
  echo "cluster up: skiffd at http://$FABRIC_ADDR:7070 (admin token $WORK/skiffd/admin.token)," \
    "$hosts agents; logs in $WORK. Ctrl-C removes everything."
  wait
}

case ${1:-} in
  up) up "${2:?number of hosts}" "${3:-build}" ;;
  down) down ;;
  *) echo "usage: $0 up N [BUILD_DIR] | down" >&2; exit 2 ;;
esac
