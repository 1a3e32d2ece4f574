#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running all-in-one Skiff: installs what is missing, builds,
# starts a local registry with the sample image, starts skiffd with its embedded node agent
# (state in /var/lib/skiff, API on 127.0.0.1:7070), creates the `web` security group the service
# example uses, runs the sample batch job in a real container and prints its output through
# `skiff logs`. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building"
scripts/build.sh build -DSKIFF_BUILD_TESTS=OFF -DSKIFF_BUILD_BENCH=OFF >/dev/null
install -m 0755 build/src/local/skiffd build/src/cli/skiff build/src/agent/skiff-agent \
  build/src/agent/runtime/skiff-monitor /usr/local/bin/

scripts/sample-image.sh

state_dir=/var/lib/skiff
mkdir -p "$state_dir" /var/log/skiff
if ! curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
  echo "== starting skiffd with its node agent (log: /var/log/skiff/skiffd.log)"
  nohup skiffd --state-dir "$state_dir" --listen 127.0.0.1:7070 --with-agent \
    --agent-state-dir /var/lib/skiff-agent >>/var/log/skiff/skiffd.log 2>&1 &
  for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
curl -fsS http://127.0.0.1:7070/healthz >/dev/null || {
  echo "skiffd did not start; see /var/log/skiff/skiffd.log" >&2
  exit 1
}

echo "== creating the security group examples/service.yaml uses"
skiff sg apply examples/web-sg.yaml >/dev/null

echo "== running examples/hello-batch.yaml"
skiff job validate examples/hello-batch.yaml
job_id=$(skiff job run examples/hello-batch.yaml)
echo "accepted: $job_id"
status=0
skiff job wait "$job_id" || status=$?
skiff task ls --job "$job_id"
task_id=$(skiff task ls --job "$job_id" -o json | sed -n 's/.*"id": *"\(job-[^"]*\)".*/\1/p' | tail -n 1)
echo "== output of $task_id (skiff logs $task_id)"
skiff logs "$task_id" || true
echo
echo "skiffd is running. Try: skiff job ls, skiff node ls, skiff events --job $job_id,"
echo "skiff job run examples/service.yaml, skiff job endpoints JOB_ID"
exit "$status"
