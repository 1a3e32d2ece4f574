#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running all-in-one Skiff: installs what is missing, builds,
# starts skiffd in the background (state in /var/lib/skiff, API on 127.0.0.1:7070) and submits the
# sample batch job. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building"
scripts/build.sh build -DSKIFF_BUILD_TESTS=OFF -DSKIFF_BUILD_BENCH=OFF >/dev/null
install -m 0755 build/src/controlplane/skiffd build/src/cli/skiff /usr/local/bin/

state_dir=/var/lib/skiff
mkdir -p "$state_dir" /var/log/skiff
if ! skiff version >/dev/null 2>&1 || ! curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
  echo "== starting skiffd (log: /var/log/skiff/skiffd.log)"
  nohup skiffd --state-dir "$state_dir" --listen 127.0.0.1:7070 >>/var/log/skiff/skiffd.log 2>&1 &
  for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
curl -fsS http://127.0.0.1:7070/healthz >/dev/null || {
  echo "skiffd did not start; see /var/log/skiff/skiffd.log" >&2
  exit 1
}

echo "== submitting examples/hello-batch.yaml"
skiff job validate examples/hello-batch.yaml
job_id=$(skiff job run examples/hello-batch.yaml)
echo "accepted: $job_id"
skiff job get "$job_id"
echo
echo "skiffd is running. Try: skiff job ls, skiff task ls --job $job_id, skiff events --job $job_id"
