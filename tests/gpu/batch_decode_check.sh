#!/usr/bin/env bash
# Batched decode on the GPU against one sequence at a time: 16 random prompts of the tiny dense
# families run as one batch of lockstep sequences (tessel-run --batch-prompt-ids: 8 positions
# prefilled together, the other 32 one batched decode step each, so the decode projections run
# on the TMA skinny GEMM at 16 rows, split-k partials by st.async), and each prompt alone (the
# register kernel at one row). A sequence's logits may differ only by bf16 rounding between
# the two kernels: relative error by norm <= 1e-2 per sequence and top-1 >= 95% of its
# positions (the tiny random models have near-ties; a sequence mixed up with another, a stale
# row or a missing partial sum is off by far more).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Device (after tests/gpu/e2e_gpu.sh prepare here): bash tests/gpu/batch_decode_check.sh
# Written 2026-11-24 without device time left to run it: run it, then wire it into e2e_gpu.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
E2E=.gpu-build/e2e
MODELS=${MODELS:-"llama3 qwen2 mistral"}
SEQUENCES=${SEQUENCES:-16}
LEN=${LEN:-40}
PREFILL=${PREFILL:-8}
OUT=${OUT:-/tmp/batch-decode}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fail=0
for m in $MODELS; do
  a=$E2E/art/$m
  vocab=$(python3 -c "import json;print(json.load(open('tests/models/tiny/$m/config.json'))['vocab_size'])")
  python3 -c "
import random
random.seed($RANDOM)
for _ in range($SEQUENCES):
    print(','.join(str(random.randrange($vocab)) for _ in range($LEN)))" > "$OUT/$m.prompts"
  if ! timeout 120 $E2E/tessel-run "$a" --device cuda --batch-prompt-ids "$OUT/$m.prompts" \
       --prefill-tokens $PREFILL --logits-out "$OUT/$m.batch.npy" > /dev/null 2> "$OUT/$m.err"; then
    echo "$m: FAIL batched run: $(tail -2 "$OUT/$m.err")"; fail=1; continue
  fi
  s=0
  while IFS= read -r ids; do
    if ! timeout 120 $E2E/tessel-run "$a" --device cuda --prompt-ids "$ids" --max-new-tokens 0 \
         --prefill-tokens $PREFILL --logits-out "$OUT/$m.single$s.npy" > /dev/null 2>> "$OUT/$m.err"; then
      echo "$m: FAIL single run $s: $(tail -2 "$OUT/$m.err")"; fail=1; continue 2
    fi
    s=$((s + 1))
  done < "$OUT/$m.prompts"
  python3 - "$m" "$OUT" "$SEQUENCES" "$LEN" <<'PY' || fail=1
import sys
import numpy as np
name, out, sequences, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batch = np.load(f"{out}/{name}.batch.npy").reshape(sequences, length, -1).astype(np.float64)
worst_rel, worst_top1, bad = 0.0, 1.0, []
for s in range(sequences):
    single = np.load(f"{out}/{name}.single{s}.npy").astype(np.float64)
    ours = batch[s]
    if single.shape != ours.shape or not np.all(np.isfinite(ours)):
        bad.append(s)
        continue
    rel = np.linalg.norm(ours - single) / np.linalg.norm(single)
    top1 = float(np.mean(ours.argmax(-1) == single.argmax(-1)))
    worst_rel, worst_top1 = max(worst_rel, rel), min(worst_top1, top1)
    if not (rel <= 1e-2 and top1 >= 0.95):
        bad.append(s)
ok = not bad
print(f"{name}(batch of {sequences} vs one at a time): {'PASS' if ok else 'FAIL'} "
      f"worst rel_err {worst_rel:.3e} (<= 1e-2), worst top1 {worst_top1 * 100:.1f}% (>= 95%), "
      f"failing sequences {bad}")
sys.exit(0 if ok else 1)
PY
done
echo "batch decode rc=$fail"
exit $fail
