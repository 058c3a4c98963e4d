#!/usr/bin/env bash
# Builds the CUDA kernel library, its cross-check test and its benchmark for Hopper (sm_90a
# machine code + compute_90 PTX) on a machine without a GPU, into .gpu-build/ (carried to
# the device machine). Abseil and GoogleTest are linked statically, CUDA runtime statically,
# cuBLASLt dynamically (the device machine has CUDA 13's libraries).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Usage: tests/gpu/build_gpu_tests.sh [out_dir]   (one compile at a time: -j1 by design)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-.gpu-build}
OBJ=$OUT_DIR/obj
mkdir -p "$OBJ"
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
CXX=${CXX:-g++}
GENCODE="-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=compute_90"
NVFLAGS="-std=c++20 -O3 -I. -Xcompiler=-fPIC --expt-relaxed-constexpr $GENCODE -Xptxas=-v"
CXXFLAGS="-std=c++20 -O2 -fPIC -I. -I/usr/local/cuda/include"
LIB=/usr/lib/x86_64-linux-gnu

build() {  # build <object> <command...>: only when a source or header is newer
  local obj=$1; shift
  local src=${@: -1}
  if [[ -f $obj && $obj -nt $src && -z $(find runtime/cuda runtime/cpu/kernels.h -newer "$obj" -name '*.h' -o -newer "$obj" -name '*.cuh' | head -1) ]]; then
    return
  fi
  echo "  $(basename "$obj")"
  "$@" -o "$obj" 2> "$obj.log" || { cat "$obj.log"; exit 1; }
  grep -E "registers|spill|stack" "$obj.log" | grep -vE "^ptxas info *: Compiling|0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" > "$obj.ptxas" || true
}

echo "building into $OUT_DIR"
KERNEL_OBJS=()
for name in embedding rms_norm rope l2_prefetch swiglu skinny_gemm skinny_gemm_tma elementwise attention_prefill attention_decode sampling moe mla; do
  build "$OBJ/$name.o" "$NVCC" $NVFLAGS -c runtime/cuda/$name.cu
  KERNEL_OBJS+=("$OBJ/$name.o")
done
for name in cuda_status cta_trace cublaslt_gemm device_info; do
  build "$OBJ/$name.o" "$CXX" $CXXFLAGS -c runtime/cuda/$name.cc
  KERNEL_OBJS+=("$OBJ/$name.o")
done
for name in kernels thread_pool; do
  build "$OBJ/cpu_$name.o" "$CXX" $CXXFLAGS -O3 -c runtime/cpu/$name.cc
done
build "$OBJ/cuda_kernels_test.o" "$NVCC" $NVFLAGS -c tests/gpu/cuda_kernels_test.cu
build "$OBJ/moe_mla_test.o" "$NVCC" $NVFLAGS -c tests/gpu/moe_mla_test.cu
build "$OBJ/bench_kernels.o" "$NVCC" $NVFLAGS -c tests/gpu/bench_kernels.cu

ABSL=$(ls $LIB/libabsl_*.a)
link() {  # link <binary> <objects...>
  local bin=$1; shift
  echo "  $(basename "$bin")"
  "$NVCC" $GENCODE -cudart static -o "$bin" "$@" \
    -Xlinker --start-group $ABSL $LIB/libgtest.a -Xlinker --end-group \
    -L/usr/local/cuda/lib64 -lcublasLt -lpthread
}
link "$OUT_DIR/cuda_kernels_test" "$OBJ/cuda_kernels_test.o" "${KERNEL_OBJS[@]}" \
  "$OBJ/cpu_kernels.o" "$OBJ/cpu_thread_pool.o"
link "$OUT_DIR/cuda_moe_mla_test" "$OBJ/moe_mla_test.o" "${KERNEL_OBJS[@]}" \
  "$OBJ/cpu_kernels.o" "$OBJ/cpu_thread_pool.o"
link "$OUT_DIR/bench_kernels" "$OBJ/bench_kernels.o" "${KERNEL_OBJS[@]}" \
  "$OBJ/cpu_kernels.o" "$OBJ/cpu_thread_pool.o"
cp tests/gpu/run_gpu_tests.sh "$OUT_DIR/"
du -sh "$OUT_DIR"/cuda_kernels_test "$OUT_DIR"/cuda_moe_mla_test "$OUT_DIR"/bench_kernels
