#!/usr/bin/env bash
# Decode step time of tessel-run --bench (Llama-3-8B dummy weights by default, prompt 128,
# 64 new tokens) under environment settings given as arguments, for A/B measurements of
# launch-level options (programmatic dependent launch, L2 prefetch sizes, ...).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Device (after bench/gpu_decode.sh prepare here):
#   BATCHES="1 16" bash bench/gpu_decode_sweep.sh "" "TESSEL_PDL=0" "TESSEL_PDL_LATE=" ...
# Each argument is one setting: a space-separated list of VAR=VALUE ("" = defaults).
# The runtime's measurement switches (runtime/cuda/device_info.h), families skinny_gemm, rope,
# attention_decode: TESSEL_PDL (0, 1 or a family list: launched with programmatic dependent
# launch; default all), TESSEL_PDL_LATE (families that signal their dependents at exit instead
# of at start; default attention_decode, which still signals early before a TMA projection
# unless TESSEL_PDL_LATE is set), TESSEL_CARVEOUT (family=percent,...: preferred
# shared-memory carveout; default the driver's choice), TESSEL_SKINNY_PRELOAD=0 (the skinny
# GEMM's first weight loads after griddepcontrol.wait instead of before),
# TESSEL_SKINNY_KERNEL=registers|tma (one skinny GEMM kernel for every projection; default
# per shape), TESSEL_SKINNY_TMA_SPLIT (CTAs sharing a tile's k in the TMA kernel: 1, 2, 4 or
# 8, 0 for the default; "s" for every projection, "s,t" with t for gate/up, or per projection
# "qkv=2,o=2,gateup=4,down=8,head=4", any subset),
# TESSEL_SKINNY_TMA_SMEM_KIB (its shared-memory budget per CTA, default 100),
# TESSEL_SKINNY_TMA_STAGES (its ring stages instead, in the same forms: "a,b" for one or three
# weights / gate+up, or per projection "down=6,o=5"),
# TESSEL_SKINNY_TMA_MIN_TILES=N (by default, the TMA kernel only for projections of >= N
# tiles of 64 rows), TESSEL_L2_PREFETCH=0 (no L2 prefetch of o_proj's weights during RoPE
# and attention, decode of <= 8 sequences), TESSEL_L2_PREFETCH_MIB (its bytes; default 16),
# TESSEL_L2_PREFETCH_BLOCKS (the blocks issuing it; default 32), TESSEL_L2_PREFETCH_MAX_TOKENS
# (the most sequences it runs for; default 8), TESSEL_FUSE_ROPE_ATTENTION=0
# (RoPE and the KV-cache writes as their own launch instead of decode attention's prologue),
# TESSEL_ATTENTION_DECODE_SMEM_KIB (shared memory asked per decode-attention block, at least
# what it uses: 116 holds one block per SM), TESSEL_ATTENTION_DECODE_SPLITS (its planned
# splits). Per-CTA timelines of a step: bench/cta_timeline.py (a -DTESSEL_CTA_TRACE=ON build).
set -uo pipefail
cd "$(dirname "$0")/.."
E2E=.gpu-build/e2e
MODEL=${MODEL:-llama3-8b}
ART=$E2E/$MODEL
BATCHES=${BATCHES:-1 16}
REPEATS=${REPEATS:-2}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
PROMPT=$(python3 -c "import random;random.seed(1);print(','.join(str(random.randrange(128000)) for _ in range(128)))")
echo "| setting | batch | decode ms/step (each run) |"
echo "|---|---:|---|"
for setting in "$@"; do
  for B in $BATCHES; do
    times=""
    for r in $(seq "$REPEATS"); do
      env $setting timeout 200 $E2E/tessel-run $ART --device cuda --weights dummy \
        --prompt-ids "$PROMPT" --bench --batch "$B" --max-new-tokens 64 --max-context 512 \
        > /dev/null 2> "$OUT/sweep.err"
      t=$(grep -oE "median [0-9.]+ ms/step" "$OUT/sweep.err" | grep -oE "[0-9.]+" | head -1)
      [[ -z $t ]] && t="FAIL($(tail -1 "$OUT/sweep.err"))"
      times="$times $t"
    done
    echo "| ${setting:-defaults} | $B |$times |"
  done
done
