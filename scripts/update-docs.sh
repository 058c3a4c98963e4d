#!/usr/bin/env bash
# Regenerates docs/dialect/ from the ODS definitions (dialect and pass docs).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
cmake --build "$build_dir" --target mlir-doc
mkdir -p "$root/docs/dialect"
cp "$build_dir"/docs/tessel/*.md "$root/docs/dialect/"
echo "updated: $(ls "$root/docs/dialect")"
