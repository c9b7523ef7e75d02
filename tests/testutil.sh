# Helpers of the shell tests: source after setting WORK (a scratch directory).
#   ok / bad DESCRIPTION       count a passed / failed check and print it
#   expect CODE DESCRIPTION -- command...   run it (output in $WORK/out, $WORK/err), check the exit code
#   contains FILE TEXT DESCRIPTION          check that FILE holds TEXT
#   finish                     print the counts; the status fails on a failure
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAILED: $1"; }
expect() {
  local want=$1 what=$2
  shift 3
  "$@" >"$WORK/out" 2>"$WORK/err"
  local got=$?
  if [ "$got" = "$want" ]; then ok "$what (exit $got)"; else
    bad "$what: exit $got, expected $want"; sed 's/^/  | /' "$WORK/out" "$WORK/err" | tail -20; fi
}
contains() {
  if grep -qF -- "$2" "$1"; then ok "$3"; else bad "$3: no '$2' in:"; sed 's/^/  | /' "$1" | tail -10; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}
