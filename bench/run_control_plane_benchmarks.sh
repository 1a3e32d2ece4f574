#!/usr/bin/env bash
# Control-plane benchmarks (docs/benchmarks.md, section "Control plane").
#
#   bench/run_control_plane_benchmarks.sh
#
# Builds skiffd, the skiff CLI and the bench programs in Release, then, RUNS rounds of each part
# (CLIENTS concurrent clients, WARMUP s warm-up, then DURATION s measured; each Skiff part against
# a fresh skiffd on a temp state dir and a free port, with no nodes, so tasks stay pending):
#   submit  per connection, Skiff: submit_bench's HTTP mode, one keep-alive connection per client
#           (`POST /v1/jobs`, acknowledged once durable);
#   pending the same as submit, against a skiffd already holding PENDING tasks (default 100,000,
#           jobs of 100 tasks submitted first) that no node can take;
#   cli     per process, Skiff: CLIENTS concurrent `skiff job run FILE` (one process per job, which
#           exits once the job is durable), through submit_bench --exec;
#   slurm   the peer, on a private Slurm this script starts (munged if not running, slurmctld and
#           slurmrestd with their own slurm.conf, ports and state under the temp dir; no slurmd, as
#           skiffd has no nodes): per process, CLIENTS concurrent `sbatch --hold --wrap=true`
#           through submit_bench --exec; per connection, the same HTTP harness as `submit` against
#           slurmrestd (`POST /slurm/v0.0.38/job/submit` of a held job, JWT auth). Held jobs are
#           accepted and not run, as skiffd's tasks without nodes; they are cancelled after each run.
#           Should slurmrestd not come up, the per-connection peer falls back to CLIENTS
#           concurrent `sbatch` and the table says so.
#   million MILLION_RUNS runs of million_tasks_bench (JOBS batch jobs of BATCH tasks, RSS, then
#           RESTARTS kill -9 + restart cycles timed until GET /v1/jobs serves a job).
# It prints a table of medians (nearest rank) with the ratio to the goal and, for each pair, the
# ratio of Skiff to the peer measured in the same run. Percentiles are by nearest rank; p99 is
# shown only from runs with >= 100 samples.
#
# Environment: BUILD_DIR (default build-bench), RUNS=3, CLIENTS=64, DURATION=10, WARMUP=1,
# MILLION_RUNS=3, JOBS=1000, BATCH=1000, RESTARTS=3, LOG_LEVEL=info, SLURM=auto|0|1 (auto: measure
# the peer when slurmctld, slurmrestd and munged are installed and this runs as root),
# SKIP_BUILD=1, ONLY=submit,pending,cli,slurm,million (comma-separated), PENDING=100000,
# KEEP_RESULTS=DIR (copy the raw JSON), QUIET_WAIT=120 and QUIET_BUSY=0.3: before each run, wait up to QUIET_WAIT s for the rest of
# the machine to use less than QUIET_BUSY cores (a shared box: other builds skew the numbers; each
# result records how busy the machine was, see docs/benchmarks.md).
# Needs cmake, ninja, jq, and root for the Slurm peer (scripts/setup.sh --bench-peers installs it).
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
ONLY="${ONLY:-submit,pending,cli,slurm,million}"
PENDING="${PENDING:-100000}"

# Goals. Every peer figure is measured in the same run.
GOAL_SUBMIT_PER_SEC=10000
GOAL_RSS_MIB=1536
GOAL_RESTART_SEC=10

command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/skiff-bench.XXXXXX")"
PIDS=()            # Processes to kill on exit.
SLURM_STARTED=()   # Daemons this script started: "name pidfile".

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
  ninja -C "$BUILD_DIR" -j"$(nproc)" skiffd skiff submit_bench million_tasks_bench >"$TMP/build.log" 2>&1 ||
    { tail -50 "$TMP/build.log" >&2; exit 1; }
fi
SKIFFD="$BUILD_DIR/src/local/skiffd"
SKIFF="$BUILD_DIR/src/cli/skiff"
SUBMIT="$BUILD_DIR/bench/submit_bench"
MILLION="$BUILD_DIR/bench/million_tasks_bench"
needed=("$SKIFFD" "$SKIFF" "$SUBMIT")
wants million && needed+=("$MILLION")
for bin in "${needed[@]}"; do [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 1; }; done
mkdir -p "$TMP/results"

median() {  # median of the numbers on stdin, by nearest rank (the value at rank ceil(N/2))
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"} else {print v[int((NR+1)/2)]}}'
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN {printf f, v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2fx", a / b}'; }
# A p99 column: "n/a (< 100 samples)" where no run had 100 samples (submit_bench wrote null).
fmt_p99() { if [[ "$1" == nan ]]; then echo "n/a (< 100 samples)"; else fmt "$1" "%.1f ms"; fi; }

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

# ---- The Slurm peer: a private Slurm ----
free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}
start_daemon() {  # name pidfile command...: starts a daemon that writes its pid file
  local name="$1" pidfile="$2"
  shift 2
  "$@"
  SLURM_STARTED+=("$name $pidfile")
  for _ in $(seq 50); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
}
slurm_up() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
# Writes a slurm.conf of its own under $TMP/slurm (ports, state, JWT key), so a Slurm already on
# the machine is neither used nor disturbed; starts munged when none runs, slurmctld and
# slurmrestd. Sets SLURM_CONF (exported: sbatch, scancel and scontrol read it), SLURMRESTD_URL and
# SLURM_JWT_TOKEN; SLURMRESTD_URL stays empty when slurmrestd did not come up.
SLURMRESTD_URL=""
start_private_slurm() {
  local dir="$TMP/slurm" host
  host="$(hostname -s)"
  mkdir -p "$dir/state"
  dd if=/dev/urandom of="$dir/jwt.key" bs=32 count=1 2>/dev/null
  chmod 600 "$dir/jwt.key"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=skiffbench
SlurmctldHost=$host
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$dir/jwt.key
SlurmUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/slurmd
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MaxJobCount=200000
MinJobAge=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=bench Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge
    chown munge:munge /run/munge 2>/dev/null || true
    start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
  fi
  start_daemon slurmctld "$dir/slurmctld.pid" /usr/sbin/slurmctld -f "$SLURM_CONF"
  for _ in $(seq 100); do slurm_up && break; sleep 0.2; done
  slurm_up || { cat "$dir/slurmctld.log" >&2; echo "the private slurmctld did not come up" >&2; exit 1; }
  # slurmrestd refuses to run as root unless told; it authenticates each request by its JWT.
  local port
  port="$(free_port)"
  SLURM_JWT=daemon SLURMRESTD_SECURITY=disable_user_check /usr/sbin/slurmrestd -f "$SLURM_CONF" \
    -a rest_auth/jwt -s openapi/v0.0.38 "127.0.0.1:$port" >"$dir/slurmrestd.log" 2>&1 &
  PIDS+=("$!")
  SLURM_JWT_TOKEN="$(scontrol token username=root lifespan=86400 | sed -n 's/^SLURM_JWT=//p')"
  for _ in $(seq 50); do
    if curl -fsS -o /dev/null -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $SLURM_JWT_TOKEN" \
      "http://127.0.0.1:$port/slurm/v0.0.38/ping" 2>/dev/null; then
      SLURMRESTD_URL="http://127.0.0.1:$port"
      break
    fi
    sleep 0.2
  done
  if [[ -z "$SLURMRESTD_URL" ]]; then
    log "slurmrestd did not answer (log below); the per-connection peer falls back to concurrent sbatch"
    cat "$dir/slurmrestd.log" >&2
  fi
  # The held job slurmrestd is sent: the same `true` as sbatch --hold --wrap=true.
  cat >"$TMP/slurm-job.json" <<'JSON'
{"job": {"name": "skiffbench", "current_working_directory": "/tmp", "hold": true,
         "environment": {"PATH": "/usr/bin:/bin"},
         "standard_output": "/dev/null", "standard_error": "/dev/null"},
 "script": "#!/bin/sh\ntrue\n"}
JSON
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
  missing=""
  for tool in slurmctld slurmrestd munged sbatch scontrol; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || missing+=" $tool"
  done
  [[ "$(id -u)" == 0 ]] || missing+=" root"
  if [[ -z "$missing" ]]; then
    log "starting a private Slurm (munged, slurmctld, slurmrestd)"
    start_private_slurm
    SLURM_MEASURED=1
  elif [[ "$SLURM" == 1 ]]; then
    echo "SLURM=1 needs$missing (scripts/setup.sh --bench-peers; run as root)" >&2
    exit 1
  else
    log "the Slurm peer is not measured: needs$missing (scripts/setup.sh --bench-peers; SLURM=1 insists)"
  fi
fi

# ---- Submissions, RUNS rounds; each round measures every part once ----
SKIFF_JOB="$TMP/skiff-job.yaml"
cat >"$SKIFF_JOB" <<'YAML'
applicationName: bench
owner:
  teamEmail: bench@example.com
container:
  image: busybox:latest
  command: ["true"]
  resources:
    cpu: 0.1
    memoryMB: 64
batch:
  size: 1
YAML
mkdir -p "$TMP/home"
for i in $(seq "$RUNS"); do
  if wants submit; then
    wait_quiet
    start_skiffd
    log "submit run $i/$RUNS (per connection): $CLIENTS keep-alive clients, ${WARMUP}s warm-up + ${DURATION}s (skiffd pid $SKIFFD_PID, port $SKIFFD_PORT)"
    "$SUBMIT" --url "http://127.0.0.1:$SKIFFD_PORT" --token-file "$STATE/admin.token" \
      --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SKIFFD_PID" \
      >"$TMP/results/submit-$i.json"
    jq -c . "$TMP/results/submit-$i.json" >&2
    stop_skiffd
  fi
  if wants pending; then
    # The same measurement against a skiffd that already holds PENDING tasks no node can take
    # (jobs of 100 tasks submitted first): a submission must not cost work for what waits.
    wait_quiet
    start_skiffd
    loaded=0
    while ((loaded < PENDING)); do
      acked="$("$SUBMIT" --url "http://127.0.0.1:$SKIFFD_PORT" --token-file "$STATE/admin.token" \
        --clients "$CLIENTS" --duration 1 --warmup 0 --batch-size 100 | jq -r .acknowledged)"
      ((acked > 0)) || { log "pending preload acknowledged nothing"; exit 1; }
      loaded=$((loaded + acked * 100))
    done
    log "pending run $i/$RUNS: $loaded tasks pending; $CLIENTS keep-alive clients, ${WARMUP}s warm-up + ${DURATION}s"
    "$SUBMIT" --url "http://127.0.0.1:$SKIFFD_PORT" --token-file "$STATE/admin.token" \
      --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SKIFFD_PID" |
      jq -c --argjson pending "$loaded" '. + {pendingTasks: $pending}' >"$TMP/results/pending-$i.json"
    jq -c . "$TMP/results/pending-$i.json" >&2
    stop_skiffd
  fi
  if wants cli; then
    wait_quiet
    start_skiffd
    log "cli run $i/$RUNS (per process): $CLIENTS concurrent skiff job run, ${WARMUP}s + ${DURATION}s"
    # The CLI finds skiffd and its token through the environment; an empty HOME keeps any config
    # file of the person running this out of it.
    SKIFF_ADDR="http://127.0.0.1:$SKIFFD_PORT" SKIFF_TOKEN="$(cat "$STATE/admin.token")" \
      HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/home" \
      "$SUBMIT" --exec "$SKIFF job run $SKIFF_JOB" --clients "$CLIENTS" --duration "$DURATION" \
      --warmup "$WARMUP" --server-pid "$SKIFFD_PID" >"$TMP/results/cli-$i.json" ||
      log "cli run $i acknowledged nothing"
    jq -c . "$TMP/results/cli-$i.json" >&2
    stop_skiffd
  fi
  if [[ "$SLURM_MEASURED" == 1 ]]; then
    wait_quiet
    slurm_ready
    log "sbatch run $i/$RUNS (per process): $CLIENTS concurrent sbatch --hold --wrap=true, ${WARMUP}s + ${DURATION}s"
    "$SUBMIT" --exec "sbatch --hold --wrap=true -o /dev/null -e /dev/null" --clients "$CLIENTS" \
      --duration "$DURATION" --warmup "$WARMUP" --server-pid "$(cat "$TMP/slurm/slurmctld.pid")" \
      >"$TMP/results/sbatch-$i.json" ||
      log "sbatch run $i acknowledged nothing"
    jq -c . "$TMP/results/sbatch-$i.json" >&2
    # Cancel the held jobs so the next run starts from the same state.
    scancel --state=PENDING 2>/dev/null || true
    wait_quiet
    slurm_ready
    if [[ -n "$SLURMRESTD_URL" ]]; then
      log "slurmrestd run $i/$RUNS (per connection): $CLIENTS keep-alive clients, ${WARMUP}s + ${DURATION}s"
      "$SUBMIT" --url "$SLURMRESTD_URL" --path /slurm/v0.0.38/job/submit --body-file "$TMP/slurm-job.json" \
        --header "X-SLURM-USER-NAME: root" --header "X-SLURM-USER-TOKEN: $SLURM_JWT_TOKEN" \
        --expect-status 200 --expect-body '"job_id"' --clients "$CLIENTS" --duration "$DURATION" \
        --warmup "$WARMUP" --server-pid "$(cat "$TMP/slurm/slurmctld.pid")" \
        >"$TMP/results/slurmrest-$i.json" || log "slurmrestd run $i acknowledged nothing"
      jq -c . "$TMP/results/slurmrest-$i.json" >&2
      scancel --state=PENDING 2>/dev/null || true
    fi
  fi
done

# ---- A million tasks ----
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

# ---- Table ----
have() { compgen -G "$TMP/results/$1-*.json" >/dev/null; }
# Median over the runs of a field; null fields (a p99 from fewer than 100 samples) are left out.
col() { local name="$1" expr="$2"; for f in "$TMP"/results/"$name"-*.json; do [[ -e "$f" ]] && jq -r "$expr // empty" "$f"; done | median; }
# "R/s (p50 X ms, p99 Y ms)" for the results named $1.
rate_cell() { echo "$(fmt "$(col "$1" .perSec)" %.0f)/s (p50 $(fmt "$(col "$1" .p50Ms)" %.1f) ms, p99 $(fmt_p99 "$(col "$1" .p99Ms)"))"; }
echo
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit+=" + uncommitted changes"
echo "Control plane benchmarks: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), commit $commit"
echo "Medians of $RUNS runs (nearest rank); $CLIENTS clients, ${WARMUP} s warm-up + ${DURATION} s measured per run."
echo
echo "| goal | measured median | ratio to goal |"
echo "| --- | --- | --- |"
if have submit; then
  echo "| durable submissions/s, $CLIENTS clients ≥ $GOAL_SUBMIT_PER_SEC | $(rate_cell submit) | $(ratio "$(col submit .perSec)" "$GOAL_SUBMIT_PER_SEC") |"
fi
if have pending; then
  echo "| the same with $(fmt "$(col pending .pendingTasks)" %.0f) tasks pending ≥ $GOAL_SUBMIT_PER_SEC | $(rate_cell pending) | $(ratio "$(col pending .perSec)" "$GOAL_SUBMIT_PER_SEC") |"
fi
if have million; then
  tasks="$(col million .tasks)"
  rss="$(col million .rssMiB)"
  rss2="$(col million .restartRssMiBMedian)"
  restart="$(col million .restartSecMedian)"
  # Ratio to goal for limits: measured / limit (below 1.00x meets the goal).
  echo "| RSS with $(fmt "$tasks" %.0f) tasks ≤ $GOAL_RSS_MIB MiB | $(fmt "$rss" %.0f) MiB (after restart $(fmt "$rss2" %.0f) MiB) | $(ratio "$rss" "$GOAL_RSS_MIB") of the limit |"
  echo "| restart (kill -9) until GET /v1/jobs serves ≤ ${GOAL_RESTART_SEC} s | $(fmt "$restart" %.2f) s | $(ratio "$restart" "$GOAL_RESTART_SEC") of the limit |"
fi
if have submit || have cli || have sbatch || have slurmrest; then
  echo
  echo "Submissions, like for like ($CLIENTS concurrent clients each; Skiff with no nodes, Slurm jobs held):"
  echo
  echo "| pair | Skiff | Slurm (same run) | Skiff / Slurm |"
  echo "| --- | --- | --- | --- |"
  cell() { if have "$1"; then rate_cell "$1"; else echo "not measured"; fi; }
  echo "| per process: \`skiff job run FILE\` vs \`sbatch --hold --wrap=true\` (one process per job) | $(cell cli) | $(cell sbatch) | $(ratio "$(col cli .perSec)" "$(col sbatch .perSec)") |"
  if have slurmrest; then
    echo "| per connection: keep-alive \`POST /v1/jobs\` vs slurmrestd \`POST /slurm/v0.0.38/job/submit\` (JWT; same harness) | $(cell submit) | $(cell slurmrest) | $(ratio "$(col submit .perSec)" "$(col slurmrest .perSec)") |"
  else
    echo "| per connection: keep-alive \`POST /v1/jobs\` vs **fallback** concurrent \`sbatch\` (slurmrestd not measured) | $(cell submit) | $(cell sbatch) | $(ratio "$(col submit .perSec)" "$(col sbatch .perSec)") |"
  fi
fi
echo
for name in submit pending cli sbatch slurmrest; do
  have "$name" || continue
  server=skiffd
  [[ $name == sbatch || $name == slurmrest ]] && server="slurmctld (not slurmrestd)"
  echo "$server CPU per acknowledged submission ($name): median $(fmt "$(col "$name" .serverCpuUsPerAck)" %.0f) µs;" \
    "other processes used $(fmt "$(col "$name" .otherBusyCores)" %.2f) of $(nproc) cores (median) during those runs."
done
echo
echo "raw results:" && for f in "$TMP"/results/*.json; do [[ -e "$f" ]] && echo "  $(basename "$f"): $(cat "$f")"; done
