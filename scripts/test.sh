#!/usr/bin/env bash
# Sets up, builds and runs every tessel test (lit + gtest + end-to-end, through ctest).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
# GPU tests need a CUDA device; without one they say so here (ctest lists them as skipped).
gpu_test="$build_dir/bin/cuda_kernels_test"
if [[ -x $gpu_test ]] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "cuda_kernels_test: $("$gpu_test" 2>&1 | tail -1)"
fi
cd "$build_dir"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
