#!/usr/bin/env bash
# Dependencies point one way: every module includes only modules below it in
# scripts/include_graph.sh's order, every src/ module is in that order, and
# docs/architecture.md shows the graph as it is.
set -euo pipefail
root=$1
graph=$(bash "$root/scripts/include_graph.sh" "$root")
order=$(sed -n 's/^order="\(.*\)"$/\1/p' "$root/scripts/include_graph.sh")
status=0

for dir in "$root"/src/*/; do
    m=$(basename "$dir")
    if ! grep -qw "$m" <<<"$order"; then
        echo "FAIL: src/$m is not in scripts/include_graph.sh's module order" >&2
        status=1
    fi
done

while read -r m arrow uses; do
    [ "$uses" = "(none)" ] && continue
    below=""
    for o in $order; do [ "$o" = "$m" ] && break; below="$below $o"; done
    for u in $uses; do
        if ! grep -qw "$u" <<<"$below"; then
            echo "FAIL: $m includes $u, which is not below it ($order)" >&2
            status=1
        fi
    done
done <<<"$(sed 's/->/ -> /' <<<"$graph")"

documented=$(awk '/^<!-- include graph: scripts\/include_graph.sh -->$/ { on = 1; next }
                  on && /^```$/ { if (++fence == 2) exit; next }
                  on && fence == 1' "$root/docs/architecture.md")
if [ "$documented" != "$graph" ]; then
    echo "FAIL: docs/architecture.md's include graph differs from scripts/include_graph.sh:" >&2
    diff <(echo "$documented") <(echo "$graph") >&2 || true
    status=1
fi
exit $status
