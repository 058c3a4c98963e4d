#!/usr/bin/env bash
# Configures (once) and builds tessel into build/ with clang-22, lld, Ninja and ccache.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
# Usage: scripts/build.sh [extra cmake -D options]   (BUILD_DIR, BUILD_TYPE, JOBS override defaults)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
build_type=${BUILD_TYPE:-Release}
jobs=${JOBS:-$(nproc)}

if [[ ! -f $build_dir/build.ninja ]]; then
  cmake -S "$root" -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="$build_type" \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
    "$@"
fi
cmake --build "$build_dir" -j "$jobs"
