#!/usr/bin/env bash
# Are two runtime libraries' logits the same bits? For kernel changes meant to keep every
# bit: runs tessel-run on the tiny families' artifacts (tests/gpu/e2e_gpu.sh prepare) with
# the library in .gpu-build/e2e/lib and with the one in OLD_LIB, over the same random prompt
# (half prefilled, half decoded one step at a time), and compares the logits bit for bit.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# BATCH=16: 16 random prompts as one batch of lockstep sequences (tessel-run
# --batch-prompt-ids; the decode projections on the TMA skinny GEMM at 16 rows) instead of one.
#
# Device: OLD_LIB=.gpu-build/old-lib MODELS="llama3 qwen2 deepseek_v3" bash tests/gpu/ab_logits.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
E2E=.gpu-build/e2e
OLD_LIB=${OLD_LIB:-.gpu-build/old-lib}
MODELS=${MODELS:-"llama3 qwen2 mistral deepseek_v2 deepseek_v3"}
LEN=${LEN:-120}
BATCH=${BATCH:-1}
OUT=${OUT:-/tmp/ab-logits}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
new_path=$PWD/$E2E/lib:/usr/local/cuda/lib64
old_path=$PWD/$OLD_LIB:$PWD/$E2E/lib:/usr/local/cuda/lib64
fail=0
for m in $MODELS; do
  a=$E2E/art/$m
  python3 tests/gpu/random_prompts.py tests/models/tiny/$m $BATCH $LEN 7 > "$OUT/$m.ids"
  if [[ $BATCH == 1 ]]; then
    prompt=(--prompt-ids "$(cat "$OUT/$m.ids")" --max-new-tokens 0)
  else
    prompt=(--batch-prompt-ids "$OUT/$m.ids")
  fi
  for which in new old; do
    path_var=${which}_path
    if ! LD_LIBRARY_PATH=${!path_var} timeout 120 $E2E/tessel-run "$a" --device cuda \
         "${prompt[@]}" --prefill-tokens $((LEN / 2)) \
         --logits-out "$OUT/$m.$which.npy" > /dev/null 2> "$OUT/$m.$which.err"; then
      echo "$m: FAIL tessel-run ($which library): $(tail -2 "$OUT/$m.$which.err")"; fail=1
      continue 2
    fi
  done
  python3 - "$m" "$OUT/$m.new.npy" "$OUT/$m.old.npy" <<'PY' || fail=1
import sys
import numpy as np
name, new, old = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
if new.dtype == old.dtype and new.shape == old.shape and new.tobytes() == old.tobytes():
    print(f"{name}: same bits ({new.shape[0]} positions, all sequences)")
else:
    diff = np.abs(new.astype(np.float64) - old.astype(np.float64)).max() if new.shape == old.shape else float("nan")
    print(f"{name}: DIFFERENT logits (max abs difference {diff:.3e})")
    sys.exit(1)
PY
done
exit $fail
