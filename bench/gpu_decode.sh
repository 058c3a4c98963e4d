#!/usr/bin/env bash
# CUDA decode benchmark: Llama-3-8B bf16 (dummy weights) through tessel-run --device cuda at
# batch 1/16/64, prompt 128, vs the HBM floor and HF transformers (eager, torch.compile).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Here: python3 bench/make_header_only_checkpoint.py models/configs/llama3-8b /tmp/l8
#       build/bin/tessel-compile /tmp/l8 -o .gpu-build/e2e/llama3-8b --weights=none --max-context 4096
#       tests/gpu/e2e_gpu.sh prepare      (tessel-run + libraries into .gpu-build/e2e)
# Device: bash bench/gpu_decode.sh [--no-hf]
set -uo pipefail
cd "$(dirname "$0")/.."
E2E=.gpu-build/e2e
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
PROMPT=$(python3 -c "import random;random.seed(1);print(','.join(str(random.randrange(128000)) for _ in range(128)))")
# Copy bandwidth (read + write) by a 4 GiB device-to-device copy; weight bytes from the plan
# manifest (bf16: 2 bytes per parameter).
python3 - > "$OUT/membw.txt" <<'PY'
import torch, statistics
n = 4 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
a.random_(0, 255)
ts = []
for _ in range(10):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
print(f"{2 * n / (statistics.median(ts) / 1e3) / 1e9:.1f}")
PY
BW=$(cat "$OUT/membw.txt")
WEIGHT_BYTES=$(python3 -c "
import json;m=json.load(open('$E2E/llama3-8b/manifest.json'));print(m.get('total_bytes') or m.get('weights_bytes') or 0)" 2>/dev/null || echo 0)
[[ $WEIGHT_BYTES == 0 ]] && WEIGHT_BYTES=16060522496
echo "copy bandwidth ${BW} GB/s; weights ${WEIGHT_BYTES} bytes"
for B in 1 16 64; do
  timeout 200 $E2E/tessel-run $E2E/llama3-8b --device cuda --weights dummy --prompt-ids "$PROMPT" \
    --bench --batch $B --max-new-tokens 64 --max-context 512 > /dev/null 2> "$OUT/tessel_b$B.txt"
  echo "tessel rc=$? $(grep bench: "$OUT/tessel_b$B.txt" || tail -2 "$OUT/tessel_b$B.txt")"
done
if [[ ${1:-} != --no-hf ]]; then
  for B in 1 16; do
    PYTHONUNBUFFERED=1 timeout 240 python3 bench/hf_decode_peer.py models/configs/llama3-8b \
      --batch $B --steps 32 2>&1 | grep -E "^hf|Error" | tee -a "$OUT/hf.txt"
  done
fi
echo
echo "| engine | batch | decode ms/step | HBM floor ms |"
echo "|---|---|---|---|"
floor=$(python3 -c "print(f'{$WEIGHT_BYTES/($BW*1e9)*1e3:.3f}')")
for B in 1 16 64; do
  ms=$(grep -o "median [0-9.]* ms/step" "$OUT/tessel_b$B.txt" | awk '{print $2}')
  echo "| tessel (CUDA graphs) | $B | ${ms:-n/a} | $floor |"
done
[[ -f $OUT/hf.txt ]] && sed -E 's/^hf (eager|compile) batch ([0-9]+): ([0-9.]+) ms\/step/| HF \1 | \2 | \3 | '"$floor"' |/' "$OUT/hf.txt"
