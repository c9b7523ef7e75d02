#!/usr/bin/env bash
# llama.cpp against lowbit on a checkpoint: exports it as every GGUF type, runs each file with
# llama.cpp (node-llama-cpp's prebuilt build, scripts/llama) on windows of validation text and
# prints the agreement with lowbit's forward pass of the checkpoint (log-probabilities, greedy
# tokens, perplexity), with the other checks of tests/test_gguf_export.
#   scripts/llama_check.sh CHECKPOINT [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:?usage: scripts/llama_check.sh CHECKPOINT [BUILD_DIR]}
build=${2:-build}
LOWBIT_GGUF_CHECKPOINT=$(realpath "$ckpt") LOWBIT_SOURCE_DIR=$PWD LOWBIT_BINARY_DIR=$PWD/$build \
  LOWBIT_REQUIRE_DEPS=1 "$build/tests/test_gguf_export"
