#!/usr/bin/env bash
# Sets up, builds and runs tessel's main job: compile the bundled tiny Llama-3 checkpoint
# into an artifact and generate from it on the CPU.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
bin="${BUILD_DIR:-$root/build}/bin"
checkpoint="$root/tests/models/tiny/llama3"
artifact="${BUILD_DIR:-$root/build}/artifacts/llama3-tiny"
prompt=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_ids"])))' \
  "$checkpoint/reference.json")

echo "== tessel-compile $checkpoint -o $artifact"
"$bin/tessel-compile" "$checkpoint" -o "$artifact"
echo "== tessel-run (CPU): prompt ids $prompt"
"$bin/tessel-run" "$artifact" --prompt-ids "$prompt" --max-new-tokens 16 --no-stop-at-eos
echo "== the same continuation from HF transformers (tests/models/tiny/llama3/reference.json):"
python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["greedy_ids"])))' \
  "$checkpoint/reference.json"
