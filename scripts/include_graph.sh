#!/usr/bin/env bash
# Prints which modules each module of lowbit includes, from the #include
# lines of src/<module>/*.[ch] and train/*.c: the include graph as it is.
# docs/architecture.md shows this output; tests/test_include_graph.sh checks
# that it still does and that no module includes one above it.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
# Bottom to top: each module may include only modules before it.
order="core quant autograd layers runtime optim dist data ptq io interop trainer api train"
for m in $order; do
    if [ "$m" = train ]; then files=("$root"/train/*.c "$root"/train/*.h); else files=("$root"/src/$m/*.[ch]); fi
    uses=$(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)/.*|\1|p' "${files[@]}" 2>/dev/null |
           sort -u | grep -vx "$m" || true)
    # keep the bottom-to-top order in the output
    line=""
    for u in $order; do
        if grep -qx "$u" <<<"$uses"; then line="$line $u"; fi
    done
    printf '%-9s->%s\n' "$m" "${line:- (none)}"
done
