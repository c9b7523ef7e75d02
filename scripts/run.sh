#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: training the
# default BitNet b1.58 model on the default corpus (Debian's fortunes).
#   scripts/run.sh [extra arguments for `lowbit train`]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec ./build/lowbit train configs/bitnet-b158-tiny.yaml "$@"
