#!/usr/bin/env bash
# End-to-end GPU check of the CUDA executor: tessel-run --device cuda on the tiny checkpoints
# vs the Hugging Face reference logits, batched decode vs one sequence at a time
# (batch_decode_check.sh), then compute-sanitizer memcheck on a batch-1 and a batch-16 run. The
# artifacts are compiled with fusion on, so the generated (NVRTC) kernels run here too:
# sm_90a cubins, and one artifact through compute_80 PTX.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Here (no GPU needed):  tests/gpu/e2e_gpu.sh prepare   -> .gpu-build/e2e (carry it)
# On the device machine: bash tests/gpu/e2e_gpu.sh run
set -uo pipefail
cd "$(dirname "$0")/../.."
E2E=.gpu-build/e2e
MODELS=${MODELS:-"llama3 llama_plain smollm_tied llama_yarn mistral qwen2 mixtral deepseek_v2 deepseek_v3"}

if [[ ${1:-run} == prepare ]]; then
  set -e
  cmake --build build --target tessel-run tessel-compile -j2
  mkdir -p $E2E/lib $E2E/art
  for m in $MODELS llama_dynamic; do
    # llama_dynamic's config says 16 positions; its prompt is longer (what dynamic NTK is for).
    build/bin/tessel-compile tests/models/tiny/$m -o $E2E/art/$m --quiet \
      $([[ $m == llama_dynamic ]] && echo --max-context 64)
    cp tests/models/tiny/$m/reference_logits.npy tests/models/tiny/$m/reference.json $E2E/art/$m/
  done
  # The fused kernels through the PTX path: only an sm_80 cubin and compute_80 PTX, which
  # the driver compiles for a Hopper GPU (the artifacts above run the sm_90a cubin).
  build/bin/tessel-compile tests/models/tiny/llama3 -o $E2E/art/llama3_ptx --quiet --gpu-arch=sm_80
  cp tests/models/tiny/llama3/reference_logits.npy tests/models/tiny/llama3/reference.json \
     $E2E/art/llama3_ptx/
  cp -L build/bin/tessel-run $E2E/
  cp -a build/lib/libtessel_runtime.so* $E2E/lib/
  # Debian's shared absl/tokenizer libraries are not on the device (Ubuntu 24.04): carry them.
  for l in $(ldd build/bin/tessel-run | awk '/=> \/lib/{print $3}' |
             grep -E "absl|sentencepiece|pcre2|utf8proc|protobuf"); do cp -L "$l" $E2E/lib/; done
  du -sh $E2E
  exit 0
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$E2E/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
missing=$(ldd $E2E/tessel-run | grep "not found")
[[ -n $missing ]] && echo "missing libraries: $missing"
fail=0
# MoE families: expert routing at near-ties is discontinuous under bf16; the bar for the
# relative error widens by the largest error of runs with bf16-sized noise at the routers, and
# positions those runs re-routed are not decisive for top-1 (hf_bf16_logits.py writes them
# next to its reference; compare_logits.py --routing-noise).
# $1: that reference without .npy.
is_moe() { [[ $m == mixtral || $m == deepseek* ]]; }
moe() { is_moe && echo "--routing-noise $1.routing_noise.npz"; }
# Dense families over the long sequence: bf16 rounding compounds along it, so the bar is 1e-2
# or HF's own bf16 error on the same tokens, whichever is larger (compare_logits.py
# --hf16-bar; MoE runs keep their routing-noise bar: HF's error there includes its flips).
dense_long() { is_moe || echo "--hf16-bar"; }
for m in $MODELS; do
  a=$E2E/art/$m
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$a/reference.json'))['prompt_ids'])))")
  if ! timeout 120 $E2E/tessel-run $a --device cuda --prompt-ids "$ids" --max-new-tokens 16 \
        --no-stop-at-eos --logits-out "$OUT/$m.npy" > "$OUT/$m.gen.txt" 2> "$OUT/$m.err"; then
    echo "$m: FAIL tessel-run: $(tail -3 "$OUT/$m.err")"; fail=1; continue
  fi
  # References on the GPU: HF f32 on the bf16-rounded weights (the criterion) and HF bf16.
  refs=""
  if python3 tests/gpu/hf_bf16_logits.py tests/models/tiny/$m "$a/reference.json" "$OUT/$m.w16.npy" \
       "$OUT/$m.hf16.npy" > "$OUT/$m.hf16.log" 2>&1; then
    refs="$OUT/$m.w16.npy $OUT/$m.hf16.npy"
  else
    echo "$m: FAIL could not make the bf16-weight reference: $(tail -1 "$OUT/$m.hf16.log")"; fail=1
  fi
  # Top-1 >= 99% over the decisive positions (compare_logits.py --top1-decisive: margins
  # beyond HF bf16's own noise; the tiny random models have near-ties).
  python3 tests/gpu/compare_logits.py "$m" "$OUT/$m.npy" "$a/reference_logits.npy" $refs \
    --top1-decisive $(moe "$OUT/$m.w16") || fail=1
  # Greedy continuation vs HF (informative: a flip at a small margin changes the rest).
  python3 - "$m" "$a/reference.json" "$OUT/$m.gen.txt" <<'PY'
import json, sys
ref = json.load(open(sys.argv[2]))["greedy_ids"]
ours = [int(x) for x in open(sys.argv[3]).read().split()]
n = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
print(f"{sys.argv[1]}: greedy ids match HF for the first {n} of {len(ref)}")
PY
  # Prefill-then-decode path: the prompt's last 8 tokens one decode step each (graphs).
  n=$(python3 -c "print(len('$ids'.split(','))-8)")
  if timeout 120 $E2E/tessel-run $a --device cuda --prompt-ids "$ids" --max-new-tokens 0 \
       --prefill-tokens $n --logits-out "$OUT/$m.dec.npy" > /dev/null 2>> "$OUT/$m.err"; then
    python3 tests/gpu/compare_logits.py "$m(decode)" "$OUT/$m.dec.npy" "$a/reference_logits.npy" $refs \
      --top1-decisive $(moe "$OUT/$m.w16") || fail=1
  else
    echo "$m(decode): FAIL $(tail -2 "$OUT/$m.err")"; fail=1
  fi
  # Long check: 200 random ids (fewer when the model's context is shorter); HF's references
  # made here on the GPU; the first half prefilled, the second half one decode step each (the
  # captured graphs); top-1 >= 99% over the decisive positions.
  L=$OUT/$m.long
  len=$(python3 -c "import json;print(min(200, json.load(open('tests/models/tiny/$m/config.json'))['max_position_embeddings'] - 8))")
  if python3 tests/gpu/hf_bf16_logits.py tests/models/tiny/$m random:$len:$RANDOM "$L.w16.npy" \
       "$L.hf16.npy" > "$L.log" 2>&1 &&
     timeout 120 $E2E/tessel-run $a --device cuda --prompt-ids "$(cat "$L.w16.ids")" \
       --max-new-tokens 0 --prefill-tokens $((len / 2)) --logits-out "$L.npy" > /dev/null \
       2>> "$OUT/$m.err"; then
    python3 tests/gpu/compare_logits.py "$m($len tokens: half prefill, half decode)" "$L.npy" \
      "$L.w16.npy" "$L.w16.npy" "$L.hf16.npy" --top1-decisive $(moe "$L.w16") $(dense_long) || fail=1
  else
    echo "$m(200 tokens): FAIL $(tail -1 "$L.log") $(tail -1 "$OUT/$m.err")"; fail=1
  fi
done

# Dynamic-NTK RoPE: the prompt's logits only (HF's cached decoding uses other frequencies
# than its prefill, as the CPU e2e test notes), tables uploaded per call by the executor.
a=$E2E/art/llama_dynamic
if [[ -d $a ]]; then
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$a/reference.json'))['prompt_ids'])))")
  refs=""
  python3 tests/gpu/hf_bf16_logits.py tests/models/tiny/llama_dynamic "$a/reference.json" \
    "$OUT/llama_dynamic.w16.npy" "$OUT/llama_dynamic.hf16.npy" > "$OUT/llama_dynamic.hf16.log" 2>&1 &&
    refs="$OUT/llama_dynamic.w16.npy $OUT/llama_dynamic.hf16.npy"
  if timeout 120 $E2E/tessel-run $a --device cuda --prompt-ids "$ids" --max-new-tokens 0 \
       --logits-out "$OUT/llama_dynamic.npy" > /dev/null 2> "$OUT/llama_dynamic.err"; then
    python3 tests/gpu/compare_logits.py "llama_dynamic(prefill)" "$OUT/llama_dynamic.npy" \
      "$a/reference_logits.npy" $refs --top1-decisive || fail=1
  else
    echo "llama_dynamic: FAIL $(tail -2 "$OUT/llama_dynamic.err")"; fail=1
  fi
fi

a=$E2E/art/llama3_ptx
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$a/reference.json'))['prompt_ids'])))")
if timeout 120 $E2E/tessel-run $a --device cuda --prompt-ids "$ids" --max-new-tokens 0 \
     --logits-out "$OUT/llama3_ptx.npy" > /dev/null 2> "$OUT/llama3_ptx.err"; then
  # The bf16-weight references of llama3's prompt (made here when MODELS left llama3 out).
  if [[ ! -f $OUT/llama3.w16.npy ]]; then
    python3 tests/gpu/hf_bf16_logits.py tests/models/tiny/llama3 "$a/reference.json" \
      "$OUT/llama3.w16.npy" "$OUT/llama3.hf16.npy" > "$OUT/llama3.hf16.log" 2>&1 ||
      rm -f "$OUT/llama3.w16.npy"
  fi
  refs=""
  [[ -f $OUT/llama3.w16.npy ]] && refs="$OUT/llama3.w16.npy $OUT/llama3.hf16.npy"
  python3 tests/gpu/compare_logits.py "llama3(fused kernels from PTX)" "$OUT/llama3_ptx.npy" \
    "$a/reference_logits.npy" $refs --top1-decisive || fail=1
else
  echo "llama3(fused kernels from PTX): FAIL $(tail -2 "$OUT/llama3_ptx.err")"; fail=1
fi

# Batched decode (16 lockstep sequences: the TMA projections at 16 rows) vs one sequence at a
# time, on the dense families.
OUT=$OUT/batch bash tests/gpu/batch_decode_check.sh || fail=1

if command -v compute-sanitizer > /dev/null || [[ -x /usr/local/cuda/bin/compute-sanitizer ]]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  a=$E2E/art/llama3
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$a/reference.json'))['prompt_ids'])))")
  timeout 240 "$CS" --tool memcheck --leak-check full --error-exitcode 9 $E2E/tessel-run $a \
    --device cuda --prompt-ids "$ids" --prefill-tokens 16 --max-new-tokens 8 > "$OUT/memcheck.log" 2>&1
  rc=$?
  echo "memcheck (tessel-run llama3 tiny, prefill + 8 prompt decodes + 8 new tokens): rc=$rc; $(grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$OUT/memcheck.log" | tr '\n' ' ')"
  [[ $rc != 0 ]] && { grep -m5 -A6 "=====.*Invalid\|=====.*Error" "$OUT/memcheck.log"; fail=1; }
  # The same over a batch of 16 sequences (batched prefill, then batched decode steps).
  python3 tests/gpu/random_prompts.py tests/models/tiny/llama3 16 12 > "$OUT/memcheck_batch.ids"
  timeout 240 "$CS" --tool memcheck --leak-check full --error-exitcode 9 $E2E/tessel-run $a \
    --device cuda --batch-prompt-ids "$OUT/memcheck_batch.ids" --prefill-tokens 4 \
    > "$OUT/memcheck_batch.log" 2>&1
  rc=$?
  echo "memcheck (tessel-run llama3 tiny, 16 sequences: prefill 4 + 8 batched decode steps): rc=$rc; $(grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$OUT/memcheck_batch.log" | tr '\n' ' ')"
  [[ $rc != 0 ]] && { grep -m5 -A6 "=====.*Invalid\|=====.*Error" "$OUT/memcheck_batch.log"; tail -3 "$OUT/memcheck_batch.log"; fail=1; }
else
  echo "memcheck: compute-sanitizer not found"
fi
echo "e2e rc=$fail"
exit $fail
