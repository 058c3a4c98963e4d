#!/usr/bin/env bash
# Where a decode step's time goes: Nsight Compute's per-kernel GPU time for every launch of
# `tessel-run --bench` (Llama-3-8B, dummy weights), summed per kernel over the decode steps
# and divided by their number. Launch gaps are not in these sums: step time minus the sum is
# the gap between graph nodes.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Device: bash bench/gpu_decode_profile.sh [BATCH...]   (after bench/gpu_decode.sh's setup)
set -uo pipefail
cd "$(dirname "$0")/.."
E2E=.gpu-build/e2e
ART=$E2E/llama3-8b
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
[[ -z $NCU ]] && { echo "ncu not found"; exit 0; }
PROMPT=$(python3 -c "import random;random.seed(1);print(','.join(str(random.randrange(128000)) for _ in range(128)))")
STEPS=4  # tessel-run --bench: 3 warm-up decode steps + --max-new-tokens 1
for B in "${@:-1 16}"; do
  timeout 400 "$NCU" --metrics gpu__time_duration.sum --csv --graph-profiling node \
    $E2E/tessel-run $ART --device cuda --weights dummy --prompt-ids "$PROMPT" --bench \
    --batch "$B" --max-new-tokens 1 --prefill-repeats 0 --max-context 512 \
    > "$OUT/ncu_decode_b$B.csv" 2> "$OUT/ncu_decode_b$B.err"
  python3 - "$OUT/ncu_decode_b$B.csv" "$B" "$STEPS" <<'PY'
import csv, sys, collections
path, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [r for r in csv.reader(l for l in open(path) if l.startswith('"'))]
head, rows = rows[0], rows[1:]
ki, gi, vi = head.index("Kernel Name"), head.index("Grid Size"), head.index("Metric Value")
ii, ui = head.index("ID"), head.index("Metric Unit")
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}
launches = [(int(r[ii]), r[ki], r[gi], float(r[vi].replace(",", "")) * scale.get(r[ui], 1.0))
            for r in rows]
launches.sort()
# The decode steps are the last launches: find the period from the last kernel (the argmax).
per_step = None
names = [l[1] for l in launches]
last = names[-1]
idx = [i for i, n in enumerate(names) if n == last]
if len(idx) >= 2:
    per_step = idx[-1] - idx[-2]
decode = launches[-per_step * steps:] if per_step else launches
agg = collections.OrderedDict()
for _, name, grid, ns in decode:
    key = (name[:60], grid)
    t, c = agg.get(key, (0.0, 0))
    agg[key] = (t + ns, c + 1)
total = sum(t for t, _ in agg.values()) / steps
print(f"batch {batch}: {per_step} launches per decode step, kernel time {total / 1e6:.3f} ms/step")
print("| kernel | grid | launches/step | us/step | share |")
print("|---|---|---:|---:|---:|")
for (name, grid), (t, c) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
    print(f"| {name} | {grid} | {c / steps:.0f} | {t / steps / 1e3:.1f} | {t / steps / total:.1%} |")
PY
done
