#!/usr/bin/env bash
# Sets up, builds and runs tessel's main job: today, tessel-opt verifying and printing the
# example model IR (a Llama-3 decoder layer and a DeepSeek-V3 MLA + MoE layer).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
opt="${BUILD_DIR:-$root/build}/bin/tessel-opt"
for f in "$root"/models/examples/*.mlir; do
  echo "== $(basename "$f"): verified, canonicalized, weight statistics =="
  "$opt" "$f" --canonicalize --tessel-weight-stats
done
