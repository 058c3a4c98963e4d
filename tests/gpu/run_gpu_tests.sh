#!/usr/bin/env bash
# The one script run on the GPU machine: lists the GPU, runs the kernel cross-check tests and
# the kernel benchmark from the carried .gpu-build/, logs to $OUT, prints a summary last.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Usage (repo root, on the device machine): bash tests/gpu/run_gpu_tests.sh [build_dir]
#   TESSEL_GPU_BENCH=0     skip the kernel benchmark (tests only)
#   TESSEL_GPU_PROFILE=0   skip the Nsight Compute profile of the decode attention kernel
#   TESSEL_GPU_SANITIZE=1  also run the skinny GEMM test under compute-sanitizer memcheck,
#                          racecheck and synccheck (its TMA kernel's split-k CTAs exit right
#                          after their st.async stores into the leader's shared memory)
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-.gpu-build}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi -L | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv \
  >> "$OUT/device.txt" 2>&1

# ~100 s on the H100 machine (2026-11-24), 262 s before SkinnyGemm drew each shape's weights
# once per run instead of once per launch.
timeout 420 "$BUILD/cuda_kernels_test" 2>&1 | tee "$OUT/cuda_kernels_test.log"
test_rc=${PIPESTATUS[0]}
timeout 400 "$BUILD/cuda_moe_mla_test" 2>&1 | tee "$OUT/cuda_moe_mla_test.log"
moe_mla_rc=${PIPESTATUS[0]}
bench_rc=0
if [[ ${TESSEL_GPU_BENCH:-1} == 1 ]]; then
  timeout 240 "$BUILD/bench_kernels" 2>&1 | tee "$OUT/bench_kernels.log"
  bench_rc=${PIPESTATUS[0]}
fi
sanitize_rc=0
if [[ ${TESSEL_GPU_SANITIZE:-0} == 1 ]]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [[ -x $CS ]]; then
    for tool in memcheck racecheck synccheck; do
      # Only the TMA kernel is instrumented (the others run natively: the test's CPU
      # references dominate its time either way).
      timeout 190 "$CS" --tool $tool --error-exitcode 9 --kernel-name kns=SkinnyTmaKernel \
        "$BUILD/cuda_kernels_test" \
        --gtest_filter='CudaKernels.SkinnyGemm' > "$OUT/sanitize_$tool.log" 2>&1
      rc=$?
      echo "compute-sanitizer $tool (SkinnyGemm test): rc=$rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED)' "$OUT/sanitize_$tool.log" | tr '\n' ' ')" \
        | tee -a "$OUT/sanitize.txt"
      [[ $rc != 0 ]] && { grep -m5 -A8 "^========= [A-Z]" "$OUT/sanitize_$tool.log"; sanitize_rc=1; }
    done
  else
    echo "compute-sanitizer: not found" | tee -a "$OUT/sanitize.txt"
  fi
fi
# One profile of the batch-1 decode attention kernel (the first AttentionDecodeKernel launch),
# for tuning notes; skipped when ncu is absent.
if command -v ncu > /dev/null && [[ ${TESSEL_GPU_PROFILE:-1} == 1 ]]; then
  timeout 150 ncu --kernel-name regex:AttentionDecodeKernel --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
    "$BUILD/bench_kernels" > "$OUT/ncu_attention_decode.log" 2>&1
  grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit" \
    "$OUT/ncu_attention_decode.log" | head -20
fi

echo
echo "===== summary ====="
cat "$OUT/device.txt" | head -1
grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|seed" "$OUT/cuda_kernels_test.log" | tail -12
sed -n '/max relative error/,$p' "$OUT/cuda_kernels_test.log"
grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|seed" "$OUT/cuda_moe_mla_test.log" | tail -12
sed -n '/max relative error/,$p' "$OUT/cuda_moe_mla_test.log"
[[ -f $OUT/bench_kernels.log ]] && grep -E "^\|" "$OUT/bench_kernels.log"
[[ -f $OUT/sanitize.txt ]] && cat "$OUT/sanitize.txt"
echo "test rc=$test_rc moe_mla test rc=$moe_mla_rc bench rc=$bench_rc sanitize rc=$sanitize_rc"
exit $(( test_rc != 0 || moe_mla_rc != 0 || bench_rc != 0 || sanitize_rc != 0 ))
