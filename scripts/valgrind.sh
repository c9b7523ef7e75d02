#!/usr/bin/env bash
# Runs the test programs under valgrind memcheck. valgrind does not decode
# AVX-512, so this uses its own build without -march=native (build-valgrind).
#   scripts/valgrind.sh [ctest regex]     default: every test but the long
#                                         end-to-end ones (those run under ASan)
set -euo pipefail
cd "$(dirname "$0")/.."
export LOWBIT_BUILD_DIR=build-valgrind
scripts/setup.sh -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_NATIVE=OFF >/dev/null
command -v valgrind >/dev/null || { echo "valgrind: apt-get install valgrind" >&2; exit 1; }
regex=${1:-.}
# Products on the OpenBLAS backend: memcheck cannot follow oneDNN's JIT
# kernels (they read whole vectors past the ends of oneDNN's own buffers,
# reported from code at "???" that no suppression can name). test_gemm then
# tests that backend alone; the oneDNN backend is covered by the ordinary and
# the ASan runs (scripts/test.sh --sanitize).
export LOWBIT_GEMM=openblas
status=0
for t in build-valgrind/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  [[ "$name" =~ $regex ]] || continue
  if [ -z "${1:-}" ] && [ "$name" = test_trainer ]; then continue; fi
  log=build-valgrind/valgrind-$name.log
  if LOWBIT_SOURCE_DIR=$PWD OMP_NUM_THREADS=2 valgrind -q --error-exitcode=99 --leak-check=full \
       --suppressions=tests/valgrind.supp \
       --errors-for-leak-kinds=definite "$t" >"$log" 2>&1; then
    echo "clean: $name"
  else
    echo "NOT CLEAN: $name (see $log)"
    status=1
  fi
done
exit $status
