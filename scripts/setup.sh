#!/usr/bin/env bash
# Installs what lowbit needs from Debian's packages (only what is missing),
# then configures and builds into ./build (or $LOWBIT_BUILD_DIR).
#   scripts/setup.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev   # BLAS whose threads are OpenMP threads (see README: Threads)
  libdnnl-dev              # oneDNN: the matrix products (OpenMP runtime, the same threads)
  libhdf5-dev hdf5-tools   # checkpoints; h5dump to inspect them
  libyaml-dev              # configs
  libjansson-dev           # metrics (JSON lines), tokenizer.json
  libpcre2-dev             # tokenizer.json regexes
  libutf8proc-dev          # tokenizer.json Unicode normalization (NFC, ...)
  libzstd-dev zstd         # lowbit export --report and --zstd
  libcmocka-dev            # tests
  libopenmpi-dev openmpi-bin  # data-parallel training (src/dist; lowbit builds without it too)
  fortunes                 # the default corpus
  python3 python3-h5py python3-numpy  # checkpoint interoperability tests
  python3-torch            # PyTorch reference: equivalence tests and scripts/bench_vs_torch.sh
  nodejs                   # scripts/reference: @huggingface/gguf (tests/test_gguf), the tokenizers library (tests/test_tokenizer_reference); Node.js >= 20
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# `npm ci` in directory $1 with the options that follow; once more after a
# pause when the registry fails it (a dropped connection fails a whole setup).
npm_ci() {
  local dir=$1; shift
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error "$@") && return 0
  echo "setup: npm ci in $dir failed; trying once more in 10 s" >&2
  sleep 10
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error "$@")
}

# npm packages the tests use as independent readers, pinned by
# scripts/reference/package-lock.json, into scripts/reference/node_modules
# (git-ignored): installed when one of them is missing or of another version.
if ! node -e '
  const lock = require("./scripts/reference/package-lock.json").packages;
  for (const [p, v] of Object.entries(lock)) {
    if (!p || (v.optional && !p.includes("linux-x64-gnu"))) continue;
    if (require("./scripts/reference/" + p + "/package.json").version !== v.version) process.exit(1);
  }' 2>/dev/null; then
  command -v npm >/dev/null || { echo "setup: npm is missing (it comes with Node.js)" >&2; exit 1; }
  echo "setup: installing the npm packages of scripts/reference"
  npm_ci scripts/reference
fi

# llama.cpp for the GGUF export check (tests/test_gguf_export, scripts/llama_check.sh): the
# prebuilt CPU build node-llama-cpp ships, pinned by scripts/llama/package-lock.json, into
# scripts/llama/node_modules (git-ignored), installed when missing or of another version;
# --omit=optional leaves out the CUDA, Vulkan and other platforms' builds.
if ! node -e '
  const want = require("./scripts/llama/package.json").dependencies;
  for (const [p, v] of Object.entries(want))
    if (require("./scripts/llama/node_modules/" + p + "/package.json").version !== v) process.exit(1);' 2>/dev/null; then
  command -v npm >/dev/null || { echo "setup: npm is missing (it comes with Node.js)" >&2; exit 1; }
  echo "setup: installing node-llama-cpp into scripts/llama"
  npm_ci scripts/llama --omit=optional
fi

BUILD_DIR=${LOWBIT_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "setup: built $BUILD_DIR/lowbit"
