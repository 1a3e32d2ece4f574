#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test, then builds again with
# AddressSanitizer and UndefinedBehaviorSanitizer and runs every test again.
# Set SKIFF_SKIP_SANITIZERS=1 to run the plain build only.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
jobs=$(nproc)

echo "== formatting"
scripts/check-format.sh

echo "== build (RelWithDebInfo, warnings are errors)"
# The options are explicit because the Quick start configures the same build directory without
# tests and benchmarks, and CMake keeps a cached option over its default.
scripts/build.sh build -DSKIFF_BUILD_TESTS=ON -DSKIFF_BUILD_BENCH=ON -DSKIFF_SANITIZE=OFF
echo "== tests"
ctest --test-dir build --output-on-failure --no-tests=error -j"$jobs" --timeout 300

if [[ "${SKIFF_SKIP_SANITIZERS:-0}" != "1" ]]; then
  echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  scripts/build.sh build-asan -DSKIFF_SANITIZE=ON -DSKIFF_BUILD_TESTS=ON -DSKIFF_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=Debug
  echo "== tests under sanitizers"
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j"$jobs" --timeout 600
fi
echo "== all tests passed"
