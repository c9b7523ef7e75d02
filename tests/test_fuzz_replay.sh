#!/usr/bin/env bash
# Every input that once crashed a reader (fuzz/regressions/NAME/) and the seed
# corpus (fuzz/corpus/NAME/) through the fuzz harnesses' replay programs
# (fuzz/replay_main.c): each reader must refuse or read every one without a
# crash, in this build (and under ASan/UBSan in the sanitizer build).
#   test_fuzz_replay.sh FUZZ_BINARY_DIR SOURCE_DIR
set -u
BIN=$1
SRC=$2
failed=0
# libhdf5's own leak on a corrupt object header (docs/reliability.md).
export LSAN_OPTIONS="suppressions=$SRC/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for name in config safetensors gguf tokenizer shards checkpoint; do
  prog=$BIN/fuzz_${name}_replay
  dirs=()
  for d in "$SRC/fuzz/regressions/$name" "$SRC/fuzz/corpus/$name"; do [ -d "$d" ] && dirs+=("$d"); done
  if [ ! -x "$prog" ]; then echo "FAILED: $prog is missing"; failed=1; continue; fi
  if [ ${#dirs[@]} = 0 ]; then echo "FAILED: no inputs for $name"; failed=1; continue; fi
  if out=$(TMPDIR=${TMPDIR:-/tmp} "$prog" "${dirs[@]}" 2>&1); then
    echo "ok: $name: $(echo "$out" | tail -1)"
  else
    echo "FAILED: $name"; echo "$out" | tail -30 | sed 's/^/  | /'; failed=1
  fi
done
exit $failed
