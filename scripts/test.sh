#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite.
#   scripts/test.sh              the Release build in ./build
#   scripts/test.sh --sanitize   an ASan+UBSan build in ./build-sanitize
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  export LOWBIT_BUILD_DIR=build-sanitize
  scripts/setup.sh -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_SANITIZE=ON
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  export LOWBIT_BUILD_DIR=build
  scripts/setup.sh
fi
cd "$LOWBIT_BUILD_DIR"
# setup.sh installed every dependency the tests use (PyTorch, h5py, the
# fortunes corpus), so a test that finds one missing fails here instead of
# being skipped (by hand, ctest lists such a test as skipped).
export LOWBIT_REQUIRE_DEPS=1
# One test at a time: each test already uses every core through OpenMP, and
# two tests side by side oversubscribe the cores; spinning OpenMP threads then
# wait on descheduled ones and the suite gets slower, not faster.
ctest --output-on-failure
