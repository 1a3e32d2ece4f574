#!/usr/bin/env bash
# What one acknowledged submission costs skiffd, for same-minutes A/B comparisons of two binaries
# (docs/benchmarks.md, "Control plane"). Each call starts a fresh skiffd with no nodes on a temp
# state directory and a free loopback port, and removes both afterwards.
#
#   bench/submission_cost.sh cpu SKIFFD [SKIFFD FLAGS...]
#       1 s of 64 clients (warm-up), then 5 s of 64 clients (`submit_bench`); prints the rate and
#       skiffd's user and system CPU per acknowledged submission, from /proc/PID/stat.
#   bench/submission_cost.sh callgrind SKIFFD
#       skiffd under valgrind's callgrind: 3 s of 16 clients uncounted, then instructions counted
#       over 20 s of 16 clients; prints instructions per acknowledged submission. Unlike CPU time it
#       does not move with the machine's load (it does count each byte of `rep stos`/`rep movs`).
#
# SUBMIT_BENCH (default build/bench/submit_bench) is the load generator. Needs jq; callgrind needs
# valgrind.
set -euo pipefail
mode=${1:?usage: $0 cpu|callgrind SKIFFD [FLAGS...]}
skiffd=${2:?usage: $0 cpu|callgrind SKIFFD [FLAGS...]}
shift 2
submit=${SUBMIT_BENCH:-build/bench/submit_bench}
dir=$(mktemp -d /tmp/submission-cost.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

wrapper=()
if [[ $mode == callgrind ]]; then
  wrapper=(valgrind --tool=callgrind "--callgrind-out-file=$dir/cg.out" --instr-atstart=no)
elif [[ $mode != cpu ]]; then
  echo "submission_cost: unknown mode $mode (cpu or callgrind)" >&2
  exit 2
fi
"${wrapper[@]}" "$skiffd" --state-dir "$dir" --listen 127.0.0.1:0 --port-file "$dir/port" \
  --log-level info "$@" >"$dir/skiffd.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [[ -s $dir/port ]] && break; sleep 0.1; done
[[ -s $dir/port ]] || { echo "submission_cost: skiffd did not start" >&2; cat "$dir/skiffd.log" >&2; exit 1; }
url=http://127.0.0.1:$(cat "$dir/port")
run() { "$submit" --url "$url" --token-file "$dir/admin.token" --warmup 0 "$@"; }

if [[ $mode == cpu ]]; then
  run --clients 64 --duration 1 >/dev/null
  read -r user1 sys1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  acked=$(run --clients 64 --duration 5 | jq .acknowledged)
  read -r user2 sys2 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  hz=$(getconf CLK_TCK)
  echo "acknowledged=$acked perSec=$((acked / 5)) userUsPerAck=$(((user2 - user1) * 1000000 / hz / acked))" \
    "sysUsPerAck=$(((sys2 - sys1) * 1000000 / hz / acked)) load=$(cut -d' ' -f1 /proc/loadavg)"
else
  run --clients 16 --duration 3 >/dev/null
  callgrind_control -z "$pid" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  acked=$(run --clients 16 --duration 20 | jq .acknowledged)
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  sleep 2
  profile=$(ls -S "$dir"/cg.out.* | head -1)
  total=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "acknowledged=$acked instructions=$total instructionsPerAck=$((total / acked))"
fi
