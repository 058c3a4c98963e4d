#!/usr/bin/env bash
# CUDA benchmark of a reference config (default Llama-3-8B) in bf16 with dummy weights through
# tessel-run --device cuda: decode at batch 1/16/64 (prompt 128) vs the HBM floor, prefill of
# 2048 tokens vs the GEMM floor, and HF transformers (eager, torch.compile) on the same GPU in
# the same run. Prints a table and writes $OUT/gpu_bench.json.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# MODEL: a directory of models/configs (llama3-8b, qwen2.5-7b, deepseek-v2-lite, llama3-70b,
# ...); LAYERS: keep the first N decoder layers (real-size layers of a model too large for one
# GPU, e.g. MODEL=llama3-70b LAYERS=8).
# Here:   [MODEL=.. LAYERS=..] bench/gpu_decode.sh prepare   (+ tests/gpu/e2e_gpu.sh prepare)
# Device: [MODEL=.. LAYERS=..] bash bench/gpu_decode.sh [--no-hf]
set -uo pipefail
cd "$(dirname "$0")/.."
E2E=.gpu-build/e2e
MODEL=${MODEL:-llama3-8b}
LAYERS=${LAYERS:-0}
NAME=$MODEL$([[ $LAYERS != 0 ]] && echo "-${LAYERS}l")
ART=$E2E/$NAME
if [[ ${1:-} == prepare ]]; then
  set -e
  CKPT=$(mktemp -d)
  python3 bench/make_header_only_checkpoint.py models/configs/$MODEL "$CKPT" --layers "$LAYERS"
  rm -rf "$ART"
  build/bin/tessel-compile "$CKPT" -o "$ART" --weights=none --max-context 4096 --quiet
  mkdir -p "$ART/hf-config" && cp "$CKPT/config.json" "$ART/hf-config/"
  rm -rf "$CKPT"
  du -sh "$ART"
  exit 0
fi
HF_CONFIG=$ART/hf-config
VOCAB=$(python3 -c "import json;print(min(128000, json.load(open('$ART/manifest.json'))['model']['vocab_size']))")
[[ -f $HF_CONFIG/config.json ]] || HF_CONFIG=models/configs/$MODEL
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
ids() {  # ids N SEED: N random token ids, comma-separated
  python3 -c "import random;random.seed($2);print(','.join(str(random.randrange($VOCAB)) for _ in range($1)))"
}
# The two floors' rates, measured here: copy bandwidth (read + write) by a 4 GiB
# device-to-device copy; bf16 GEMM rate by 8192^3 matmuls (median of 20).
python3 - > "$OUT/rates.txt" <<'PY'
import torch, statistics
def median_ms(fn, n):
    ts = []
    for _ in range(n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    return statistics.median(ts)
n = 4 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
a.random_(0, 255)
ms = median_ms(lambda: b.copy_(a), 10)
del a, b
x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
y = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
for _ in range(3): x @ y
gemm_ms = median_ms(lambda: x @ y, 20)
print(f"{2 * n / (ms / 1e3) / 1e9:.1f} {2 * 8192**3 / (gemm_ms / 1e3) / 1e12:.1f}")
PY
read BW GEMM < "$OUT/rates.txt"
read WEIGHT_BYTES PARAMS < <(python3 -c "
import json;w=json.load(open('$ART/manifest.json'))['weights'];print(w['bytes'] or 2*w['parameters'], w['parameters'])")
echo "$NAME: copy bandwidth ${BW} GB/s; bf16 GEMM ${GEMM} TFLOP/s; weights ${WEIGHT_BYTES} bytes, ${PARAMS} parameters"

for B in 1 16 64; do
  timeout 200 $E2E/tessel-run $ART --device cuda --weights dummy --prompt-ids "$(ids 128 1)" \
    --bench --batch $B --max-new-tokens 64 --max-context 512 > /dev/null 2> "$OUT/tessel_b$B.txt"
  echo "tessel rc=$? $(grep bench: "$OUT/tessel_b$B.txt" || tail -2 "$OUT/tessel_b$B.txt")"
done
timeout 200 $E2E/tessel-run $ART --device cuda --weights dummy --prompt-ids "$(ids 2048 2)" \
  --bench --batch 1 --max-new-tokens 4 --max-context 2560 --prefill-repeats 5 > /dev/null \
  2> "$OUT/tessel_prefill.txt"
echo "tessel prefill rc=$? $(grep bench: "$OUT/tessel_prefill.txt" || tail -2 "$OUT/tessel_prefill.txt")"

if [[ ${1:-} != --no-hf ]]; then
  : > "$OUT/hf.txt"
  for B in 1 16; do
    PYTHONUNBUFFERED=1 timeout 240 python3 bench/hf_decode_peer.py "$HF_CONFIG" \
      --batch $B --steps 32 2>&1 | grep -E "^hf|Error" | tee -a "$OUT/hf.txt"
    # The compiled peer with HF's SDPA attention too; the faster of the two is the peer.
    PYTHONUNBUFFERED=1 timeout 240 python3 bench/hf_decode_peer.py "$HF_CONFIG" --attn sdpa \
      --compile-only --batch $B --steps 32 2>&1 | grep -E "^hf|Error" | tee -a "$OUT/hf.txt"
  done
  for attn in eager sdpa; do
    PYTHONUNBUFFERED=1 timeout 300 python3 bench/hf_decode_peer.py "$HF_CONFIG" --attn $attn \
      --prefill-only 2048 2>&1 | grep -E "^hf|Error" | tee -a "$OUT/hf.txt"
  done
fi

ART=$ART HF_CONFIG=$HF_CONFIG python3 - "$OUT" "$BW" "$GEMM" "$WEIGHT_BYTES" "$PARAMS" <<'PY'
import json, re, sys, os
out, bw, gemm, wbytes, params = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# Two decode floors. "weights": every weight byte once per step / copy bandwidth (the issue's
# definition). "read": the bytes a step must read from HBM: the weights except an untied
# embedding table (a step gathers only its tokens' rows), plus the KV cache the attention
# reads at the benchmark's median context (prompt 128 + 3 warm-up steps + half of 64 new
# tokens), at each batch size.
decode_floor = wbytes / (bw * 1e9) * 1e3
cfg = json.load(open(os.path.join(os.environ["HF_CONFIG"], "config.json")))
hidden, vocab = cfg["hidden_size"], cfg["vocab_size"]
heads = cfg["num_attention_heads"]
kv_heads = cfg.get("num_key_value_heads") or heads
head_dim = cfg.get("head_dim") or hidden // heads
layers = cfg["num_hidden_layers"]
embed_bytes = 0 if cfg.get("tie_word_embeddings", False) else 2 * vocab * hidden
context = 128 + 3 + 64 // 2
def read_floor(b):
    kv = layers * b * context * kv_heads * head_dim * 2 * 2  # K and V, bf16
    return (wbytes - embed_bytes + b * hidden * 2 + kv) / (bw * 1e9) * 1e3
if cfg.get("kv_lora_rank"):  # MLA caches a compressed latent: the KV term above does not hold
    read_floor = lambda b: (wbytes - embed_bytes) / (bw * 1e9) * 1e3
tokens = 2048
prefill_floor = 2 * params * tokens / (gemm * 1e12) * 1e3
res = {"copy_gbs": bw, "gemm_tflops": gemm, "weight_bytes": wbytes, "parameters": params,
       "decode_floor_ms": decode_floor,
       "decode_read_floor_ms": {f"b{b}": read_floor(b) for b in (1, 16, 64)},
       "prefill_tokens": tokens, "prefill_floor_ms": prefill_floor,
       "tessel": {}, "hf": {}}
for b in (1, 16, 64):
    t = open(f"{out}/tessel_b{b}.txt").read()
    m = re.search(r"median ([0-9.]+) ms/step", t)
    res["tessel"][f"decode_b{b}_ms"] = float(m.group(1)) if m else None
t = open(f"{out}/tessel_prefill.txt").read()
m = re.search(r"warm median ([0-9.]+) ms", t)
res["tessel"]["prefill_ms"] = float(m.group(1)) if m else None
if os.path.exists(f"{out}/hf.txt"):
    for line in open(f"{out}/hf.txt"):
        # "hf ENGINE[ (sdpa)] batch B: X ms/step" or "hf ENGINE[ (sdpa)] prefill N: X ms".
        # ENGINE_decode_bB_ms / ENGINE_prefill_ms: the faster of eager and SDPA attention;
        # each is also kept (..._eager_attn_ms, ..._sdpa_ms).
        m = re.match(r"hf (eager|compile)( \(sdpa\))? (batch|prefill) (\d+): ([0-9.]+) ms", line)
        if m:
            work = f"decode_b{m.group(4)}" if m.group(3) == "batch" else "prefill"
            key = f"{m.group(1)}_{work}_ms"
            ms = float(m.group(5))
            res["hf"][key.replace("_ms", "_sdpa_ms" if m.group(2) else "_eager_attn_ms")] = ms
            res["hf"][key] = min(ms, res["hf"].get(key, ms))
json.dump(res, open(f"{out}/gpu_bench.json", "w"), indent=1)
def f(x, fmt="{:.2f}"): return "n/a" if x is None else fmt.format(x)
print()
print("Decode floors: 'weights' = all weight bytes / copy bandwidth; 'read' = the bytes a step "
      "reads (no untied embedding table; + KV cache at this batch). Prefill: FLOPs / GEMM rate.")
print(f"| engine | work | ms | floor ms (weights / read) | floor/ours (weights / read) | tok/s | TFLOP/s |")
print("|---|---|---:|---:|---:|---:|---:|")
def floors(b, ms):
    r = read_floor(b)
    return (f"{decode_floor:.2f} / {r:.2f}",
            "n/a" if ms is None else f"{decode_floor / ms:.2f} / {r / ms:.2f}")
for b in (1, 16, 64):
    ms = res["tessel"][f"decode_b{b}_ms"]
    fl, ratio = floors(b, ms)
    print(f"| tessel (CUDA graphs) | decode b{b} | {f(ms)} | {fl} | {ratio} | "
          f"{f(ms and 1e3 * b / ms, '{:.0f}')} | - |")
for eng, label in (("eager", "eager"), ("compile", "torch.compile, eager attention"),
                   ("compile", "torch.compile, SDPA attention")):
    for b in (1, 16):
        suffix = "_sdpa_ms" if "SDPA" in label else "_eager_attn_ms" if eng == "compile" else "_ms"
        ms = res["hf"].get(f"{eng}_decode_b{b}{suffix}")
        if ms: print(f"| HF {label} | decode b{b} | {ms:.2f} | {' | '.join(floors(b, ms))} | {1e3 * b / ms:.0f} | - |")
ms = res["tessel"]["prefill_ms"]
print(f"| tessel | prefill {tokens} | {f(ms)} | {prefill_floor:.2f} | {f(ms and prefill_floor / ms)} | "
      f"{f(ms and 1e3 * tokens / ms, '{:.0f}')} | {f(ms and 2 * params * tokens / (ms / 1e3) / 1e12, '{:.0f}')} |")
for eng in ("eager", "compile"):
    ms = res["hf"].get(f"{eng}_prefill_ms")
    if ms: print(f"| HF {eng} (faster attention) | prefill {tokens} | {ms:.2f} | {prefill_floor:.2f} | {prefill_floor / ms:.2f} | "
                 f"{1e3 * tokens / ms:.0f} | {2 * params * tokens / (ms / 1e3) / 1e12:.0f} |")
import os.path
mt = json.load(open(os.path.join(os.environ["ART"], "manifest.json")))["model"]["model_type"]
if mt in ("mixtral", "deepseek_v2", "deepseek_v3"):
    print("\nMoE model: both decode floors above count every expert's weights; a decode step "
          "reads only the routed experts (and the shared ones), so its true floor is lower.")
b16 = res["tessel"]["decode_b16_ms"]; c16 = res["hf"].get("compile_decode_b16_ms")
if b16 and c16: print(f"\nbatch 16 vs torch.compile (the faster attention): {c16 / b16:.2f}x")
PY
