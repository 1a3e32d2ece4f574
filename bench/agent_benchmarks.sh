#!/usr/bin/env bash
# Node agent benchmarks (issue 4), with their peers, in one run. Root only. Results: docs/benchmarks.md
# ("Node agent"). Usage:
#
#   bench/agent_benchmarks.sh                      # everything
#   PODMAN=0 SLURM=0 bench/agent_benchmarks.sh     # Skiff only
#
# Sets up, in a fresh temporary directory: a docker-registry on a free loopback port holding a
# busybox-static image (built offline with umoci + skopeo, plus /bin/stamp from agent_stamp.cpp),
# skiffd on a free port, and one separate skiff-agent process (so its RSS is its own). Then:
#   1. start latency, like for like, once with a network and once without (START_NETWORKS): the
#      agent runs with its own-IP networking, then restarted with --no-network; podman with its
#      default network, then with --network none. Per network, START_RUNS rounds of:
#      - `skiff job run --wait JOB` wall time, CLI_RUNS times (a one-task `/bin/stamp` job);
#      - `podman run --rm IMAGE /bin/stamp` wall time, PODMAN_RUNS times for each runtime in
#        PODMAN_RUNTIMES (crun and runc), and podman's invocation → first instruction;
#      - agent_bench --mode start: START_JOBS sequential jobs, with the agent's assignment → first
#        instruction (the skiff-agent runtime is RUNTIME, crun by default, as podman's first one);
#      the image is cached on both sides (pulled and warmed up before the timed runs); then
#      START_JOBS jobs with the agent restarted with --no-disk-limits (where the time goes);
#   2. throughput: THROUGHPUT_JOBS `true` jobs, THROUGHPUT_RUNS times; then Slurm (one node, a
#      private copy of /etc/slurm/slurm.conf, or of docs/benchmarks.md's when the host has none)
#      running SLURM_JOBS `sbatch --wrap=true`, THROUGHPUT_RUNS times;
#   3. HOLD_JOBS `sleep 600` jobs: RSS of skiff-agent, skiffd and each skiff-monitor, disk of the
#      last container; then they are killed through the API.
# Percentiles are by nearest rank (the value at rank ceil(p*N) of the sorted samples); a p99 is
# printed only from 100 samples or more.
# A trap removes every container, mount, cgroup, process and directory the script created, also on
# failure or Ctrl-C. Slurm daemons are stopped only if this script started them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-agentbench}
# Absolute: the agent starts skiff-monitor by the path it is given, which must be absolute.
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
OUT=${OUT:-$BUILD/agent-bench-results}
START_RUNS=${START_RUNS:-3}
START_JOBS=${START_JOBS:-30}
PODMAN_RUNS=${PODMAN_RUNS:-10}
CLI_RUNS=${CLI_RUNS:-$PODMAN_RUNS}
PODMAN_RUNTIMES=${PODMAN_RUNTIMES:-crun runc}
START_NETWORKS=${START_NETWORKS:-network none}
THROUGHPUT_JOBS=${THROUGHPUT_JOBS:-1000}
THROUGHPUT_RUNS=${THROUGHPUT_RUNS:-3}
SLURM_JOBS=${SLURM_JOBS:-$THROUGHPUT_JOBS}
HOLD_JOBS=${HOLD_JOBS:-100}
PODMAN=${PODMAN:-1}
SLURM=${SLURM:-1}
NODISK=${NODISK:-1}   # also measure start latency with --no-disk-limits
NETWORK=${NETWORK:-1} # 0: skiff-agent --no-network (loopback-only containers) for parts 2 and 3
RUNTIME=${RUNTIME:-crun}  # --runtime of skiff-agent (crun, as podman's first runtime)
SKIP_BUILD=${SKIP_BUILD:-0}
VPC_CIDR=${VPC_CIDR:-10.112.0.0/12}  # skiffd --vpc-cidr: away from podman's 10.88.0.0/16
# CPU/memory requests. The CPU quota already applies while runc sets the container up (runc init
# compiles the seccomp filter inside the container's cgroup), so a 0.01-core task takes ~2.5 s to
# start: the latency and throughput jobs ask for 1 core; the held `sleep` jobs for 0.5.
JOB_CPU=${JOB_CPU:-1}
JOB_MEMORY_MB=${JOB_MEMORY_MB:-64}
HOLD_CPU=${HOLD_CPU:-0.5}
HOLD_MEMORY_MB=${HOLD_MEMORY_MB:-16}

[[ $(id -u) -eq 0 ]] || { echo "agent_benchmarks: run as root" >&2; exit 1; }
for tool in docker-registry skopeo umoci busybox runc crun jq curl g++; do
  command -v "$tool" >/dev/null || { echo "agent_benchmarks: $tool is missing (scripts/setup.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/skiff-agentbench.XXXXXX)
CGROUP_PARENT=/skiff-agentbench-$$
PIDS=()            # processes this script started (killed in reverse order)
SLURM_STARTED=()   # slurm/munge daemons this script started
AGENT_PID=""
mkdir -p "$OUT"

log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/run.log" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}

stop_agent_containers() {
  local state=$1
  [[ -d $state/runtime ]] || return 0
  local id
  local rt
  for rt in runc crun; do
    command -v "$rt" >/dev/null || continue
    for id in $($rt --root "$state/runtime" list -q 2>/dev/null); do
      $rt --root "$state/runtime" delete -f "$id" >/dev/null 2>&1 || true
    done
  done
  # Monitors exit once their container is gone; make sure of it.
  local pidfile pid
  for pidfile in "$state"/containers/*/monitor.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == skiff-monitor ]] && kill -9 "$pid" 2>/dev/null || true
  done
}

unmount_under() {
  local dir=$1 mnt
  awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  set +e
  trap '' INT TERM
  log "cleanup"
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  sleep 0.5
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -9 "${PIDS[i]}" 2>/dev/null; done
  [[ -n $AGENT_PID ]] && kill -9 "$AGENT_PID" 2>/dev/null
  stop_agent_containers "$WORK/agent"
  if [[ -d $WORK/podman ]]; then
    podman_cmd rm -af -t 0 >/dev/null 2>&1
    podman_cmd system reset -f >/dev/null 2>&1
  fi
  if ((${#SLURM_STARTED[@]} > 0)); then
    timeout 20 scancel -n agentbench 2>/dev/null
    for pidfile in "${SLURM_STARTED[@]}"; do [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null; done
  fi
  sleep 0.3
  unmount_under "$WORK/"
  find /sys/fs/cgroup -depth -type d -path "*$CGROUP_PARENT*" -exec rmdir {} \; 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PODMAN_RUNTIME=crun  # the runtime podman_cmd passes; the start rounds set it
podman_cmd() {
  podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --cgroup-manager=cgroupfs \
    --runtime "$PODMAN_RUNTIME" --events-backend=none "$@"
}

# ---------------------------------------------------------------------------------------------
# Machine facts.
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "runc: $(runc --version | head -1)"
  echo "crun: $(crun --version | head -1)"
  command -v podman >/dev/null && echo "podman: $(podman --version)"
  command -v slurmctld >/dev/null && echo "slurm: $(slurmctld -V)"
  echo "tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) (+ uncommitted work)"
  echo "loadavg at start: $(loadavg)"
} | tee "$OUT/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# Build.
if [[ $SKIP_BUILD != 1 ]]; then
  log "building (Release, $BUILD)"
  # -Wno-restrict: GCC 12 at -O3 reports a false -Wrestrict in src/agent/agent.cpp and
  # src/cli/watch.cpp (std::string operator+), which -Werror turns into a failed Release build.
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSKIFF_BUILD_TESTS=OFF \
    -DCMAKE_CXX_FLAGS=-Wno-restrict >/dev/null
  ninja -C "$BUILD" -j2 skiffd skiff skiff-agent skiff-monitor agent_bench >/dev/null
fi
SKIFFD=$(find "$BUILD" -type f -name skiffd -perm -u+x | head -1)
AGENT=$(find "$BUILD" -type f -name skiff-agent -perm -u+x | head -1)
SKIFF=$(find "$BUILD" -type f -name skiff -perm -u+x | head -1)
MONITOR=$(find "$BUILD" -type f -name skiff-monitor -perm -u+x | head -1)
BENCH=$(find "$BUILD" -type f -name agent_bench -perm -u+x | head -1)
INIT=$(command -v tini-static || echo /usr/bin/tini-static)
g++ -O2 -static -o "$WORK/stamp" "$ROOT/bench/agent_stamp.cpp"

# ---------------------------------------------------------------------------------------------
# Registry and image.
RPORT=$(free_port)
REGISTRY=127.0.0.1:$RPORT
IMAGE=$REGISTRY/agentbench/busybox:latest
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: $REGISTRY
YAML
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$REGISTRY/v2/" >/dev/null

log "building $IMAGE"
umoci init --layout "$WORK/oci" >/dev/null
umoci new --image "$WORK/oci:latest"
umoci unpack --image "$WORK/oci:latest" "$WORK/bundle" >/dev/null
mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/tmp"
cp "$(command -v busybox)" "$WORK/bundle/rootfs/bin/busybox"
for applet in sh echo cat ls sleep true false env id pwd; do
  ln -sf busybox "$WORK/bundle/rootfs/bin/$applet"
done
cp "$WORK/stamp" "$WORK/bundle/rootfs/bin/stamp"
umoci repack --image "$WORK/oci:latest" "$WORK/bundle"
umoci config --image "$WORK/oci:latest" --config.cmd /bin/sh --config.env PATH=/bin --config.workingdir /
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:latest" "docker://$IMAGE"
rm -rf "$WORK/bundle"

# ---------------------------------------------------------------------------------------------
# skiffd and a separate skiff-agent.
SPORT=$(free_port)
URL=http://127.0.0.1:$SPORT
# Its own address range and agent instance name (docs/networking.md, "Several clusters on one
# host"), so a cluster or a test suite elsewhere on the host neither disturbs nor refuses it.
"$SKIFFD" --state-dir "$WORK/skiffd" --listen "127.0.0.1:$SPORT" --vpc-cidr "$VPC_CIDR" --log-level warn 2>"$WORK/skiffd.log" &
SKIFFD_PID=$!
PIDS+=($SKIFFD_PID)
for _ in $(seq 1 100); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$URL/healthz" >/dev/null
TOKEN=$WORK/skiffd/admin.token

AGENT_NETWORK=$NETWORK  # 0: start_agent passes --no-network
start_agent() {  # extra agent flags...
  "$AGENT" --server "$URL" --join-token-file "$WORK/skiffd/join.token" --node-id agentbench \
    --instance agentbench --state-dir "$WORK/agent" --cpu 64 --memory-mb 65536 --disk-mb 4000000 --network-mbps 1000000 \
    ${RUNTIME:+--runtime "$RUNTIME"} $([[ $AGENT_NETWORK == 0 ]] && echo --no-network) --monitor "$MONITOR" --init "$INIT" --cgroup-parent "$CGROUP_PARENT" \
    --insecure-registry "$REGISTRY" "$@" 2>>"$WORK/agent.log" &
  AGENT_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -H "Authorization: Bearer $(cat "$TOKEN")" "$URL/v1/nodes/agentbench" 2>/dev/null |
      jq -e '.state == "Ready"' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "agent_benchmarks: the agent did not register" >&2
  return 1
}
stop_agent() {
  [[ -n $AGENT_PID ]] || return 0
  kill "$AGENT_PID"
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}
bench() { "$BENCH" --url "$URL" --token-file "$TOKEN" --image "$IMAGE" "$@"; }
# Nearest-rank percentiles of the numbers on stdin: the value at rank ceil(P*N) of the sorted
# values; "nan" when there are none. pct_p99 prints "n/a (< 100 samples)" with fewer than 100.
pct() { sort -g | awk -v p="$1" '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} r = p * NR; k = int(r); if (k < r - 1e-9) k++; if (k < 1) k = 1; print v[k]}'; }
median() { pct 0.5; }
pct_p99() { sort -g | awk '{v[NR] = $1} END {if (NR < 100) {print "n/a (< 100 samples)"; exit} r = 0.99 * NR; k = int(r); if (k < r - 1e-9) k++; print v[k]}'; }

start_agent

# ---------------------------------------------------------------------------------------------
# 1. Start latency.
if [[ $PODMAN == 1 ]]; then
  command -v podman >/dev/null || { echo "agent_benchmarks: podman is missing (scripts/setup.sh --bench-peers)" >&2; exit 1; }
  mkdir -p "$WORK/podman"
  podman_cmd pull --quiet --tls-verify=false "$IMAGE" >/dev/null
fi

# The one-task job `skiff job run --wait` submits: the same image and /bin/stamp as the others.
mkdir -p "$WORK/home"
cat >"$WORK/stamp-job.yaml" <<YAML
applicationName: agentbench
owner:
  teamEmail: bench@example.com
container:
  image: $IMAGE
  command: [/bin/stamp]
  resources:
    cpu: $JOB_CPU
    memoryMB: $JOB_MEMORY_MB
batch:
  size: 1
  runtimeLimitSec: 3600
YAML
skiff_cli() {
  SKIFF_ADDR=$URL SKIFF_TOKEN=$(cat "$TOKEN") HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home "$SKIFF" "$@"
}
cli_round() {  # → wall ms of each `skiff job run --wait`, one a line
  skiff_cli job run --wait "$WORK/stamp-job.yaml" >/dev/null  # warm-up
  for _ in $(seq 1 "$CLI_RUNS"); do
    local t0 t1
    t0=$(date +%s%N)
    skiff_cli job run --wait "$WORK/stamp-job.yaml" >/dev/null
    t1=$(date +%s%N)
    echo "scale=2; ($t1 - $t0) / 1000000" | bc
  done
}

podman_round() {  # NETWORK FIRST_FILE → wall ms of each run, one a line; invocation → first
  # instruction ms of each run into FIRST_FILE (the container runs /bin/stamp, which prints
  # CLOCK_REALTIME). NETWORK "none" runs with --network none, "network" with podman's default.
  local network=$1 first_file=$2
  local flags=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
  [[ $network == none ]] && flags+=(--network none)
  : >"$first_file"
  podman_cmd run --rm "${flags[@]}" "$IMAGE" /bin/stamp >/dev/null  # warm-up
  for _ in $(seq 1 "$PODMAN_RUNS"); do
    local t0 t1 stamp
    t0=$(date +%s%N)
    stamp=$(podman_cmd run --rm "${flags[@]}" "$IMAGE" /bin/stamp)
    t1=$(date +%s%N)
    echo "scale=2; ($t1 - $t0) / 1000000" | bc
    echo "scale=2; ($stamp - $t0) / 1000000" | bc >>"$first_file"
  done
}

start_rounds() {  # label network(network|none) [podman 0|1]
  local label=$1 network=$2 with_peer=${3:-1} round rt
  for round in $(seq 1 "$START_RUNS"); do
    log "start latency [$label] round $round (load $(loadavg))"
    bench --mode start --command /bin/stamp --count "$START_JOBS" --warmup 2 \
      --cpu "$JOB_CPU" --memory-mb "$JOB_MEMORY_MB" \
      --agent-log "$WORK/agent.log" --agent-state-dir "$WORK/agent" >"$OUT/start-$label-$round.json"
    echo "$(loadavg)" >"$OUT/start-$label-$round.load"
    [[ $with_peer == 1 ]] || continue
    log "skiff job run --wait [$label] round $round (load $(loadavg))"
    cli_round >"$OUT/cli-$network-$round.txt"
    [[ $PODMAN == 1 ]] || continue
    for rt in $PODMAN_RUNTIMES; do
      log "podman --runtime $rt run --rm [$network] round $round (load $(loadavg))"
      PODMAN_RUNTIME=$rt
      podman_round "$network" "$OUT/podman-$rt-$network-first-$round.txt" >"$OUT/podman-$rt-$network-$round.txt" ||
        log "podman --runtime $rt [$network] failed"
    done
  done
}
for network in $START_NETWORKS; do
  stop_agent
  AGENT_NETWORK=$([[ $network == none ]] && echo 0 || echo 1)
  start_agent
  start_rounds "$network" "$network"
done
if [[ $NODISK == 1 ]]; then
  stop_agent
  AGENT_NETWORK=$NETWORK
  start_agent --no-disk-limits
  start_rounds nodisk "$([[ $NETWORK == 0 ]] && echo none || echo network)" 0
fi
stop_agent
AGENT_NETWORK=$NETWORK
start_agent

# ---------------------------------------------------------------------------------------------
# 3. Holding HOLD_JOBS containers.
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
if ((HOLD_JOBS > 0)); then
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
log "hold: $HOLD_JOBS sleep 600 jobs (load $(loadavg))"
agent_rss_idle=$(rss_kb "$AGENT_PID")
du_before=$(du -sk "$WORK/agent" | cut -f1)
bench --mode hold --command sleep --command 600 --count "$HOLD_JOBS" --threads 4 --timeout-sec 600 \
  --cpu "$HOLD_CPU" --memory-mb "$HOLD_MEMORY_MB" \
  --ids-file "$WORK/hold.ids" >"$OUT/hold.json"
sleep 5  # let the agent settle (threads, buffers)
last_task=$(jq -r '.taskIds[-1]' "$OUT/hold.json")
monitor_rss=()
for pidfile in "$WORK"/agent/containers/*/monitor.pid; do
  pid=$(cat "$pidfile")
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == skiff-monitor ]] && monitor_rss+=("$(rss_kb "$pid")")
done
running=0  # Containers without an exit file (exited ones are kept for their logs).
for dir in "$WORK"/agent/containers/*/; do [[ -e $dir/exit ]] || running=$((running + 1)); done
{
  echo "runningContainers $running"
  echo "agentRssKbIdle $agent_rss_idle"
  echo "agentRssKb $(rss_kb "$AGENT_PID")"
  echo "agentHwmKb $(hwm_kb "$AGENT_PID")"
  echo "agentThreads $(awk '/^Threads/ {print $2}' "/proc/$AGENT_PID/status")"
  echo "skiffdRssKb $(rss_kb "$SKIFFD_PID")"
  echo "monitors ${#monitor_rss[@]}"
  echo "monitorRssKbMedian $(printf '%s\n' "${monitor_rss[@]}" | median)"
  echo "monitorRssKbMax $(printf '%s\n' "${monitor_rss[@]}" | sort -n | tail -1)"
  echo "lastContainerDirKb $(du -sk "$WORK/agent/containers/$last_task" | cut -f1)"
  echo "lastWritableLayerImgKb $(du -sk "$WORK/agent/rootfs/$last_task.img" 2>/dev/null | cut -f1)"
  echo "lastWritableLayerImgApparentMb $(( $(stat -c %s "$WORK/agent/rootfs/$last_task.img" 2>/dev/null || echo 0) >> 20 ))"
  echo "lastRootfsDirKb $(du -skx "$WORK/agent/rootfs/$last_task" | cut -f1)"
  echo "agentStateDirKbBefore $du_before"
  echo "agentStateDirKbAfter $(du -skx "$WORK/agent" | cut -f1)"  # -x: not through the mounts
  echo "imagesDirKb $(du -sk "$WORK/agent/images" | cut -f1)"
  echo "load $(loadavg)"
} | tee "$OUT/hold.txt" >&2
ls -la "$WORK/agent/containers/$last_task" >"$OUT/hold-last-container-ls.txt"
bench --mode kill --ids-file "$WORK/hold.ids" --timeout-sec 300 >"$OUT/kill.json" || true
fi
cp "$WORK/agent.log" "$OUT/agent.log"

# ---------------------------------------------------------------------------------------------
# 2. Throughput.
for round in $(seq 1 "$THROUGHPUT_RUNS"); do
  log "throughput: $THROUGHPUT_JOBS jobs, round $round (load $(loadavg))"
  bench --mode throughput --command true --count "$THROUGHPUT_JOBS" --threads 4 --timeout-sec 1200 \
    --cpu "$JOB_CPU" --memory-mb "$JOB_MEMORY_MB" \
    >"$OUT/throughput-$round.json" || true
  echo "$(loadavg)" >"$OUT/throughput-$round.load"
done
cp "$WORK/agent.log" "$OUT/agent.log"

slurm_throughput() {
  local n=$1 t0 t1 left deadline=$((SECONDS + 900))
  t0=$(date +%s%N)
  seq 1 "$n" | xargs -P 4 -I{} sbatch --quiet -J agentbench -o /dev/null --wrap=true
  while ((SECONDS < deadline)); do
    left=$(squeue -h -n agentbench 2>/dev/null | wc -l)
    ((left == 0)) && break
    sleep 0.1
  done
  t1=$(date +%s%N)
  echo "scale=2; $n * 1000000000 / ($t1 - $t0)" | bc
}
if [[ $SLURM == 1 ]] && { pgrep -x slurmctld || pgrep -x slurmd; } >/dev/null; then
  log "slurm is already running; skipping the Slurm peer (stop it first)"
  SLURM=0
fi
if [[ $SLURM == 1 ]] && ! command -v slurmctld >/dev/null; then
  log "slurmctld is missing; skipping the Slurm throughput peer (scripts/setup.sh --bench-peers)"
  SLURM=0
fi
if [[ $SLURM == 1 ]]; then
  # A private copy of /etc/slurm/slurm.conf: the node advertises SLURM_CPUS CPUs (as skiff-agent
  # advertises 64 with --cpu), and batch_sched_delay=0 (the default of 3 s made the default
  # configuration start 2 jobs every 3 s here: 0.67 jobs/s). SLURM_CONF=/etc/slurm/slurm.conf
  # SLURM_PRIVATE=0 uses the system file unchanged.
  # Without /etc/slurm/slurm.conf the private file is written whole: the configuration of
  # docs/benchmarks.md ("Slurm peer") with this host's name, its state, spool, pid and log files
  # under $WORK and free ports, so nothing outside $WORK is touched.
  if [[ ${SLURM_PRIVATE:-1} == 1 && ! -f /etc/slurm/slurm.conf ]]; then
    mkdir -p "$WORK/slurm/state" "$WORK/slurm/spool"
    cat >"$WORK/slurm.base.conf" <<CONF
ClusterName=agentbench
SlurmctldHost=$(hostname -s)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxJobCount=200000
MinJobAge=2
NodeName=$(hostname -s) CPUs=$(nproc) RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  fi
  if [[ ${SLURM_PRIVATE:-1} == 1 ]]; then
    base=/etc/slurm/slurm.conf
    [[ -f $base ]] || base=$WORK/slurm.base.conf
    sed -e "s/^NodeName=\(\S*\) CPUs=[0-9]*/NodeName=\1 CPUs=${SLURM_CPUS:-64}/" \
      -e '/^SchedulerParameters=/d' -e '/^SlurmdParameters=/d' "$base" >"$WORK/slurm.conf"
    printf '%s\n' 'SchedulerParameters=batch_sched_delay=0' 'SlurmdParameters=config_overrides' >>"$WORK/slurm.conf"
    export SLURM_CONF=$WORK/slurm.conf
    cp "$SLURM_CONF" "$OUT/slurm.conf"
  fi
  conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
  conf_value() { sed -n "s/^$1=//p" "$conf" | tail -1; }
  ctld_pidfile=$(conf_value SlurmctldPidFile)
  slurmd_pidfile=$(conf_value SlurmdPidFile)
  slurm_node=$(sed -n 's/^NodeName=\(\S*\).*/\1/p' "$conf" | head -1)
  # Daemons this script starts are stopped by the trap (through their pid files).
  if ! pgrep -x munged >/dev/null; then
    SLURM_STARTED+=(/run/munge/munged.pid)
    munged --force  # --force: /var/log/munge is owned by the munge user here
  fi
  if ! pgrep -x slurmctld >/dev/null; then
    SLURM_STARTED+=("${ctld_pidfile:-/run/slurmctld.pid}")
    slurmctld -f "$conf"
  fi
  if ! pgrep -x slurmd >/dev/null; then
    SLURM_STARTED+=("${slurmd_pidfile:-/run/slurmd.pid}")
    slurmd -f "$conf"
  fi
  for _ in $(seq 1 100); do sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)' && break; sleep 0.2; done
  scontrol update nodename="${slurm_node:-vm}" state=resume >/dev/null 2>&1 || true
  timeout 120 sbatch --quiet -J agentbench -o /dev/null --wait --wrap=true || log "slurm warm-up job failed"
  for round in $(seq 1 "$THROUGHPUT_RUNS"); do
    log "slurm: $SLURM_JOBS sbatch --wrap=true, round $round (load $(loadavg))"
    slurm_throughput "$SLURM_JOBS" >"$OUT/slurm-$round.txt" || log "slurm round $round failed"
    echo "$(loadavg)" >"$OUT/slurm-$round.load"
    sleep 3
  done
fi

# ---------------------------------------------------------------------------------------------
# Summary.
# Median over rounds of a field of the JSON files matching $2; null fields (a p99 from fewer than
# 100 samples) are left out, so "nan" means no round had one.
summ() { jq -r "$1 // empty" "$OUT"/$2 | median; }
# "p50 X ms, p99 Y" over files matching $1 (one sample a line): the median of the rounds' p50s and
# the p99 of all samples together.
round_p50s() { local f; for f in "$OUT"/$1; do [[ -s $f ]] && median <"$f"; done; }
cell() { echo "p50 $(round_p50s "$1" | median) ms (rounds: $(round_p50s "$1" | tr '\n' ' ')), p99 $(cat "$OUT"/$1 2>/dev/null | pct_p99)"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2fx", a / b}'; }
{
  echo "### summary ($(date -u '+%Y-%m-%d %H:%M UTC')); skiff-agent runtime ${RUNTIME:-default}"
  echo "percentiles by nearest rank; p50 = median over rounds of each round's p50; p99 over all samples, only from 100 or more;"
  echo "podman / skiff = how many times faster Skiff is (above 1.00x: Skiff is faster)"
  for network in $START_NETWORKS; do
    ls "$OUT"/cli-$network-*.txt >/dev/null 2>&1 || continue
    echo
    echo "start latency, $network ($([[ $network == none ]] && echo 'skiff-agent --no-network vs podman --network none' || echo "Skiff's own-IP networking vs podman's default network")), image cached:"
    skiff_wall=$(round_p50s "cli-$network-*.txt" | median)
    echo "  skiff job run --wait wall: $(cell "cli-$network-*.txt")"
    for rt in $PODMAN_RUNTIMES; do
      ls "$OUT"/podman-$rt-$network-[0-9]*.txt >/dev/null 2>&1 || continue
      podman_wall=$(round_p50s "podman-$rt-$network-[0-9]*.txt" | median)
      echo "  podman --runtime $rt run --rm wall: $(cell "podman-$rt-$network-[0-9]*.txt"); podman-$rt / skiff: $(ratio "$podman_wall" "$skiff_wall")"
    done
    skiff_first=$(summ '.breakdown.assignmentToFirstInstructionMs.p50' "start-$network-*.json")
    echo "  skiff (runtime ${RUNTIME:-default}) assignment → first instruction p50: $skiff_first ms"
    if ls "$OUT"/podman-crun-$network-first-*.txt >/dev/null 2>&1; then
      podman_first=$(round_p50s "podman-crun-$network-first-*.txt" | median)
      echo "  podman --runtime crun invocation → first instruction: $(cell "podman-crun-$network-first-*.txt"); podman / skiff: $(ratio "$podman_first" "$skiff_first")"
    fi
  done
  echo
  for label in $START_NETWORKS nodisk; do
    ls "$OUT"/start-$label-*.json >/dev/null 2>&1 || continue
    p99=$(summ '.submitToStartedSeenMs.p99' "start-$label-*.json")
    [[ $p99 == nan ]] && p99="n/a (< 100 samples per round)"
    echo "start[$label] submit→Started p50 (median of rounds): $(summ '.submitToStartedSeenMs.p50' "start-$label-*.json") ms; p99: $p99"
    echo "start[$label] submit→Finished p50: $(summ '.submitToFinishedSeenMs.p50' "start-$label-*.json") ms"
    echo "start[$label] assignment→first instruction p50: $(summ '.breakdown.assignmentToFirstInstructionMs.p50' "start-$label-*.json") ms"
    echo "start[$label] submit→assignment p50: $(summ '.breakdown.submitToAssignmentMs.p50' "start-$label-*.json") ms"
    echo "start[$label] Started log→seen p50: $(summ '.breakdown.startedLogToStartedSeenMs.p50' "start-$label-*.json") ms"
  done
  if [[ -f $OUT/agent.log ]]; then
    # Nearest rank: the value at rank ceil(N/2), index ceil(N/2) - 1.
    echo "skiff start timings p50 over all starts: $(jq -sc '[.[] | select(.msg == "start timings") | .timings] as $t | ($t[0] | keys) | map({(.): ([$t[][.] // 0] | sort | .[((length + 1) / 2 | floor) - 1])}) | add' "$OUT/agent.log")"
  fi
  if ls "$OUT"/throughput-*.json >/dev/null 2>&1; then
    echo "throughput jobs/s (median): $(summ '.jobsPerSecond' 'throughput-*.json') (rounds: $(jq -r .jobsPerSecond "$OUT"/throughput-*.json | tr '\n' ' '))"
  fi
  if ls "$OUT"/slurm-*.txt >/dev/null 2>&1; then
    echo "slurm jobs/s (median): $(cat "$OUT"/slurm-*.txt | median) (rounds: $(cat "$OUT"/slurm-*.txt | tr '\n' ' '))"
  fi
  echo "loadavg at end: $(loadavg)"
} | tee "$OUT/summary.txt"
