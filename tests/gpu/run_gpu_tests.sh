#!/usr/bin/env bash
# The one script run on the GPU machine: lists the GPU, runs the kernel cross-check tests and
# the kernel benchmark from the carried .gpu-build/, logs to $OUT, prints a summary last.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Usage (repo root, on the device machine): bash tests/gpu/run_gpu_tests.sh [build_dir]
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

timeout 300 "$BUILD/cuda_kernels_test" 2>&1 | tee "$OUT/cuda_kernels_test.log"
test_rc=${PIPESTATUS[0]}
timeout 400 "$BUILD/cuda_moe_mla_test" 2>&1 | tee "$OUT/cuda_moe_mla_test.log"
moe_mla_rc=${PIPESTATUS[0]}
timeout 240 "$BUILD/bench_kernels" 2>&1 | tee "$OUT/bench_kernels.log"
bench_rc=${PIPESTATUS[0]}
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
grep -E "^\|" "$OUT/bench_kernels.log"
echo "test rc=$test_rc moe_mla test rc=$moe_mla_rc bench rc=$bench_rc"
exit $(( test_rc != 0 || moe_mla_rc != 0 || bench_rc != 0 ))
