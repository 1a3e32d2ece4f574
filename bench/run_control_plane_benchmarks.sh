#!/usr/bin/env bash
# Control-plane benchmarks (docs/benchmarks.md, section "Control plane").
#
#   bench/run_control_plane_benchmarks.sh
#
# Builds skiffd and the bench programs in Release, then
#   (a) submit: RUNS runs of submit_bench (CLIENTS concurrent HTTP clients, WARMUP s warm-up, then
#       DURATION s measured) against a fresh skiffd each, on a temp state dir and a free port;
#   (b) million: MILLION_RUNS runs of million_tasks_bench (JOBS batch jobs of BATCH tasks, RSS,
#       then RESTARTS kill -9 + restart cycles timed until GET /v1/jobs serves a job);
#   (peer) with SLURM=1 (or SLURM=auto and a reachable slurmctld): RUNS runs of CLIENTS concurrent
#       `sbatch --hold --wrap=true` submitters (held, so they are accepted but not run, as skiffd's
#       tasks without nodes; cancelled after each run). SLURM=1 starts munged, slurmctld and slurmd from
#       /etc/slurm/slurm.conf when they are not running, and stops the ones it started.
# and prints a table of medians with the ratio to the goal and to the peer.
#
# Environment: BUILD_DIR (default build-bench), RUNS=3, CLIENTS=64, DURATION=10, WARMUP=1,
# MILLION_RUNS=3, JOBS=1000, BATCH=1000, RESTARTS=3, LOG_LEVEL=info, SLURM=auto|0|1,
# SKIP_BUILD=1, ONLY=submit|million|slurm (comma-separated), KEEP_RESULTS=DIR (copy the raw JSON),
# QUIET_WAIT=120 and QUIET_BUSY=0.3: before each run, wait up to QUIET_WAIT s for the rest of the
# machine to use less than QUIET_BUSY cores (a shared box: other builds skew the numbers; each
# result records how busy the machine was, see docs/benchmarks.md).
# Needs cmake, ninja, jq, and root only for SLURM=1.
#
# Every process this script starts and its temp directory are removed on exit, also on failure or
# Ctrl-C.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
RUNS="${RUNS:-3}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
MILLION_RUNS="${MILLION_RUNS:-3}"
JOBS="${JOBS:-1000}"
BATCH="${BATCH:-1000}"
RESTARTS="${RESTARTS:-3}"
LOG_LEVEL="${LOG_LEVEL:-info}"
SLURM="${SLURM:-auto}"
QUIET_WAIT="${QUIET_WAIT:-120}"
QUIET_BUSY="${QUIET_BUSY:-0.3}"
ONLY="${ONLY:-submit,million,slurm}"

# Goals and the peer's documented figure.
GOAL_SUBMIT_PER_SEC=5000
GOAL_RSS_MIB=1536
GOAL_RESTART_SEC=10
SLURM_DOCUMENTED_PER_SEC=500

command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/skiff-bench.XXXXXX")"
PIDS=()            # Processes to kill on exit.
SLURM_STARTED=()   # Slurm daemons this script started: "name pidfile".

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  for entry in "${SLURM_STARTED[@]}"; do
    local name="${entry%% *}" pidfile="${entry#* }"
    if [[ -s "$pidfile" ]]; then
      local pid
      pid="$(cat "$pidfile")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      echo "stopped $name ($pid)" >&2
    fi
  done
  if [[ -n "${KEEP_RESULTS:-}" && -d "$TMP/results" ]]; then
    mkdir -p "$KEEP_RESULTS" && cp "$TMP"/results/*.json "$KEEP_RESULTS"/ 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wants() { [[ ",$ONLY," == *",$1,"* ]]; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- Build ----
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building Release in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSKIFF_BUILD_TESTS=OFF \
    -DSKIFF_BUILD_BENCH=ON >"$TMP/cmake.log" 2>&1 || { cat "$TMP/cmake.log" >&2; exit 1; }
  ninja -C "$BUILD_DIR" -j"$(nproc)" skiffd submit_bench million_tasks_bench >"$TMP/build.log" 2>&1 ||
    { tail -50 "$TMP/build.log" >&2; exit 1; }
fi
SKIFFD="$BUILD_DIR/src/local/skiffd"
SUBMIT="$BUILD_DIR/bench/submit_bench"
MILLION="$BUILD_DIR/bench/million_tasks_bench"
for bin in "$SKIFFD" "$SUBMIT" "$MILLION"; do [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 1; }; done
mkdir -p "$TMP/results"

median() {  # median of the numbers on stdin
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN {printf f, v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0 || a == "nan") print "n/a"; else printf "%.2fx", a / b}'; }

# Busy cores of the whole machine over the next $1 seconds.
busy_cores() {
  local a b
  a="$(head -1 /proc/stat)"
  sleep "$1"
  b="$(head -1 /proc/stat)"
  awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " "); tot = 0; idle = 0
    for (i = 2; i <= 11; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
    printf "%.2f", (tot > 0 ? (tot - idle) / tot * n : 0) }'
}
# Waits (at most QUIET_WAIT s) until the machine is nearly idle.
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) busy
  while :; do
    busy="$(busy_cores 2)"
    if awk -v b="$busy" -v q="$QUIET_BUSY" 'BEGIN {exit !(b < q)}'; then return; fi
    if ((SECONDS >= deadline)); then
      log "machine still busy ($busy cores in use by other processes); running anyway"
      return
    fi
  done
}

# Starts skiffd on a fresh state dir and a free port; sets SKIFFD_PID, SKIFFD_PORT, STATE.
start_skiffd() {
  STATE="$(mktemp -d "$TMP/state.XXXXXX")"
  "$SKIFFD" --state-dir "$STATE" --listen 127.0.0.1:0 --port-file "$STATE/port" \
    --log-level "$LOG_LEVEL" >"$STATE/skiffd.log" 2>&1 &
  SKIFFD_PID=$!
  PIDS+=("$SKIFFD_PID")
  for _ in $(seq 300); do
    [[ -s "$STATE/port" ]] && break
    kill -0 "$SKIFFD_PID" 2>/dev/null || { cat "$STATE/skiffd.log" >&2; exit 1; }
    sleep 0.1
  done
  SKIFFD_PORT="$(cat "$STATE/port")"
  curl -fsS "http://127.0.0.1:$SKIFFD_PORT/healthz" >/dev/null
}

stop_skiffd() {
  kill -TERM "$SKIFFD_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SKIFFD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SKIFFD_PID" 2>/dev/null || true
  wait "$SKIFFD_PID" 2>/dev/null || true
  rm -rf "$STATE"
}

# ---- (a) Submissions ----
if wants submit; then
  for i in $(seq "$RUNS"); do
    wait_quiet
    start_skiffd
    log "submit run $i/$RUNS: $CLIENTS clients, ${WARMUP}s warm-up + ${DURATION}s (skiffd pid $SKIFFD_PID, port $SKIFFD_PORT)"
    "$SUBMIT" --url "http://127.0.0.1:$SKIFFD_PORT" --token-file "$STATE/admin.token" \
      --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SKIFFD_PID" \
      >"$TMP/results/submit-$i.json"
    jq -c . "$TMP/results/submit-$i.json" >&2
    stop_skiffd
  done
fi

# ---- (b) A million tasks ----
if wants million; then
  for i in $(seq "$MILLION_RUNS"); do
    log "million run $i/$MILLION_RUNS: $JOBS jobs x $BATCH tasks, $RESTARTS restarts"
    wait_quiet
    dir="$(mktemp -d "$TMP/million.XXXXXX")"
    "$MILLION" --skiffd "$SKIFFD" --state-dir "$dir" --jobs "$JOBS" --batch-size "$BATCH" \
      --restarts "$RESTARTS" --log-level "$LOG_LEVEL" >"$TMP/results/million-$i.json" &
    PIDS+=("$!")
    wait "$!"
    jq -c . "$TMP/results/million-$i.json" >&2
    rm -rf "$dir"
  done
fi

# ---- Peer: Slurm ----
slurm_up() { command -v scontrol >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
start_slurm_daemon() {  # name pidfile command...
  local name="$1" pidfile="$2"
  shift 2
  if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  "$@"
  SLURM_STARTED+=("$name $pidfile")
  for _ in $(seq 50); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
}
# slurmctld stalls for many seconds after a mass cancel while it purges the job records: wait
# until a held probe submission is answered within 0.5 s again (at most 180 s).
slurm_ready() {
  local deadline=$((SECONDS + 180)) t0 t1
  while ((SECONDS < deadline)); do
    t0=$(date +%s%N)
    timeout 30 sbatch --hold --wrap=true -o /dev/null -e /dev/null >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    (((t1 - t0) < 500000000)) && { scancel --state=PENDING 2>/dev/null || true; sleep 1; return; }
    sleep 1
  done
  log "slurmctld still slow after 180 s; measuring anyway"
}
SLURM_MEASURED=0
if wants slurm && [[ "$SLURM" != 0 ]]; then
  if [[ "$SLURM" == 1 ]] && ! slurm_up; then
    command -v slurmctld >/dev/null || { echo "SLURM=1 needs slurm-wlm and munge" >&2; exit 1; }
    log "starting munged, slurmctld and slurmd"
    mkdir -p /run/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown munge:munge /run/munge 2>/dev/null || true
    start_slurm_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
    start_slurm_daemon slurmctld /run/slurmctld.pid /usr/sbin/slurmctld
    start_slurm_daemon slurmd /run/slurmd.pid /usr/sbin/slurmd
    for _ in $(seq 100); do
      slurm_up && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
      sleep 0.2
    done
  fi
  if slurm_up; then
    for i in $(seq "$RUNS"); do
      wait_quiet
      slurm_ready
      log "slurm run $i/$RUNS: $CLIENTS concurrent sbatch --hold --wrap=true, ${WARMUP}s + ${DURATION}s"
      "$SUBMIT" --exec "sbatch --hold --wrap=true -o /dev/null -e /dev/null" --clients "$CLIENTS" \
        --duration "$DURATION" --warmup "$WARMUP" >"$TMP/results/slurm-$i.json" ||
        log "slurm run $i acknowledged nothing"
      jq -c . "$TMP/results/slurm-$i.json" >&2
      # The jobs are held (accepted, not run, like skiffd's tasks without nodes); cancel them so
      # the next run starts from the same state.
      scancel --state=PENDING 2>/dev/null || true
    done
    SLURM_MEASURED=1
  elif [[ "$SLURM" == 1 ]]; then
    echo "slurmctld is not reachable" >&2
    exit 1
  else
    log "no reachable slurmctld: the Slurm peer is not measured (SLURM=1 starts it)"
  fi
fi

# ---- Table ----
col() { local pattern="$1" expr="$2"; for f in "$TMP"/results/$pattern; do [[ -e "$f" ]] && jq -r "$expr" "$f"; done | median; }
echo
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit+=" + uncommitted changes"
echo "Control plane benchmarks: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), commit $commit"
echo
echo "| goal | measured median | ratio to goal | peer |"
echo "| --- | --- | --- | --- |"
if wants submit && compgen -G "$TMP/results/submit-*.json" >/dev/null; then
  rate="$(col 'submit-*.json' .perSec)"
  p50="$(col 'submit-*.json' .p50Ms)"
  p99="$(col 'submit-*.json' .p99Ms)"
  peer="Slurm documented ≈ ${SLURM_DOCUMENTED_PER_SEC}/s ($(ratio "$rate" "$SLURM_DOCUMENTED_PER_SEC") of it)"
  if [[ "$SLURM_MEASURED" == 1 ]]; then
    srate="$(col 'slurm-*.json' .perSec)"
    sp50="$(col 'slurm-*.json' .p50Ms)"
    sp99="$(col 'slurm-*.json' .p99Ms)"
    peer+="; sbatch measured here $(fmt "$srate" %.0f)/s, p50 $(fmt "$sp50" %.1f) ms, p99 $(fmt "$sp99" %.1f) ms ($(ratio "$rate" "$srate") of it)"
  fi
  echo "| durable submissions/s, $CLIENTS clients ≥ $GOAL_SUBMIT_PER_SEC | $(fmt "$rate" %.0f)/s (p50 $(fmt "$p50" %.1f) ms, p99 $(fmt "$p99" %.1f) ms) | $(ratio "$rate" "$GOAL_SUBMIT_PER_SEC") | $peer |"
fi
if wants million && compgen -G "$TMP/results/million-*.json" >/dev/null; then
  tasks="$(col 'million-*.json' .tasks)"
  rss="$(col 'million-*.json' .rssMiB)"
  rss2="$(col 'million-*.json' .restartRssMiBMedian)"
  restart="$(col 'million-*.json' .restartSecMedian)"
  # Ratio to goal for limits: measured / limit (below 1.00x meets the goal).
  echo "| RSS with $(fmt "$tasks" %.0f) tasks ≤ $GOAL_RSS_MIB MiB | $(fmt "$rss" %.0f) MiB (after restart $(fmt "$rss2" %.0f) MiB) | $(ratio "$rss" "$GOAL_RSS_MIB") of the limit | — |"
  echo "| restart (kill -9) until GET /v1/jobs serves ≤ ${GOAL_RESTART_SEC} s | $(fmt "$restart" %.2f) s | $(ratio "$restart" "$GOAL_RESTART_SEC") of the limit | — |"
fi
if wants submit && compgen -G "$TMP/results/submit-*.json" >/dev/null; then
  echo
  echo "skiffd CPU per acknowledged submission: median $(fmt "$(col 'submit-*.json' .serverCpuUsPerAck)" %.0f) µs;" \
    "other processes used $(fmt "$(col 'submit-*.json' .otherBusyCores)" %.2f) of $(nproc) cores (median) during the submission runs."
fi
echo
echo "raw results:" && for f in "$TMP"/results/*.json; do [[ -e "$f" ]] && echo "  $(basename "$f"): $(cat "$f")"; done
