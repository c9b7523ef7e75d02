#!/usr/bin/env bash
# A test whose dependency is missing is reported, never silently passed:
# with the dependency hidden, each test that needs one
#   - exits 77 with "SKIPPED: <dependency> is missing" when run by hand
#     (ctest's SKIP_RETURN_CODE then lists it as skipped, not passed);
#   - fails, naming the dependency, with LOWBIT_REQUIRE_DEPS=1 (which
#     scripts/test.sh sets, so the suite fails).
# PyTorch and h5py are hidden by a module on PYTHONPATH that raises
# ImportError, so the tests' real detection runs; the fortunes corpus, a
# fixed system directory, by LOWBIT_TEST_HIDE_DEPS (tests/testutil.h).
#   test_skips.sh BUILD_TESTS_DIR SOURCE_DIR
set -uo pipefail
bin=$1
export LOWBIT_SOURCE_DIR=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-skips.XXXXXX")
trap 'rm -rf "$work"' EXIT
for module in torch h5py; do
  mkdir -p "$work/no-$module/$module"
  echo "raise ImportError('$module hidden by tests/test_skips.sh')" >"$work/no-$module/$module/__init__.py"
done

passed=0 failed=0
check() { # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAIL: $what"; failed=$((failed + 1)); fi
}

# hidden DEPENDENCY PROGRAM CMOCKA_TEST ENV...: runs one cmocka test of
# PROGRAM with the dependency hidden, by hand and as scripts/test.sh does.
hidden() {
  local dep=$1 program=$2 test=$3; shift 3
  local out=$work/out rc
  env -u LOWBIT_REQUIRE_DEPS LOWBIT_TEST_FILTER="$test" "$@" "$bin/$program" >"$out" 2>&1
  rc=$?
  check "$program without $dep: exit status 77 (skipped), got $rc" [ "$rc" = 77 ]
  check "$program without $dep: says SKIPPED and names $dep" grep -q "SKIPPED: $dep is missing" "$out"
  [ "$rc" = 77 ] || cat "$out"

  env LOWBIT_REQUIRE_DEPS=1 LOWBIT_TEST_FILTER="$test" "$@" "$bin/$program" >"$out" 2>&1
  rc=$?
  check "$program without $dep, LOWBIT_REQUIRE_DEPS=1: fails, got $rc" [ "$rc" != 0 -a "$rc" != 77 ]
  check "$program without $dep, LOWBIT_REQUIRE_DEPS=1: names $dep" grep -q "$dep is missing" "$out"
  grep -q "$dep is missing" "$out" || cat "$out"
}

hidden torch test_torch_equivalence test_fp32 PYTHONPATH="$work/no-torch${PYTHONPATH:+:$PYTHONPATH}"
hidden h5py test_checkpoint test_h5py_and_h5dump_read_checkpoint PYTHONPATH="$work/no-h5py${PYTHONPATH:+:$PYTHONPATH}"
hidden fortunes test_data test_fortunes_corpus LOWBIT_TEST_HIDE_DEPS=fortunes

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
