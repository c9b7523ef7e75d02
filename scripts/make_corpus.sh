#!/usr/bin/env bash
# Generates a text corpus of a given size for the token-shard measurements
# (docs/data.md): seeded random sentences over the words of Debian's fortunes
# package (scripts/setup.sh installs it), in files of at most 64 MB.
#   scripts/make_corpus.sh OUT_DIR SIZE_MB [SEED]
# The same SIZE_MB, SEED and mawk version give the same files.
set -euo pipefail
out=${1:?usage: make_corpus.sh OUT_DIR SIZE_MB [SEED]}
size_mb=${2:?usage: make_corpus.sh OUT_DIR SIZE_MB [SEED]}
seed=${3:-1}
fortunes=/usr/share/games/fortunes
[ -d "$fortunes" ] || { echo "make_corpus: $fortunes is missing (apt-get install fortunes)" >&2; exit 1; }
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then echo "make_corpus: $out exists and is not empty" >&2; exit 1; fi
mkdir -p "$out"

# The words of the fortunes text files, in order, repeats kept: a word is drawn
# as often as it occurs there.
words=$(mktemp)
trap 'rm -f "$words"' EXIT
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' -print0 | sort -z | xargs -0 cat |
  LC_ALL=C tr -cs "A-Za-z'" '\n' | grep -v '^$' >"$words"

per_file=$((64 * 1000 * 1000))
total=$((size_mb * 1000 * 1000))
LC_ALL=C mawk -v seed="$seed" -v total="$total" -v per_file="$per_file" -v out="$out" '
  NR == FNR { w[n++] = $0; next }
  END {
    srand(seed)
    written = 0; file = 0; in_file = 0
    name = sprintf("%s/part_%03d.txt", out, file)
    while (written < total) {
      k = 4 + int(rand() * 13)
      line = w[int(rand() * n)]
      line = toupper(substr(line, 1, 1)) substr(line, 2)
      for (i = 1; i < k; i++) line = line " " w[int(rand() * n)]
      line = line (rand() < 0.1 ? "?" : ".")
      if (rand() < 0.2) line = line "\n"      # paragraphs
      printf "%s\n", line > name
      len = length(line) + 1
      written += len; in_file += len
      if (in_file >= per_file && written < total) {
        close(name); file++; in_file = 0
        name = sprintf("%s/part_%03d.txt", out, file)
      }
    }
  }' "$words" /dev/null
du -sb "$out" | awk '{ printf "make_corpus: %.1f MB in ", $1 / 1e6 }'
ls "$out" | wc -l | awk '{ print $1 " files" }'
