// Warp-level tensor-core helpers (sm_80+): ldmatrix and bf16 mma.sync m16n8k16.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .bf16), g = lane / 4,
// c = lane % 4: A (16 x 16, row) a0 = (g, 2c..2c+1), a1 = (g + 8, 2c..), a2 = (g, 2c + 8..),
// a3 = (g + 8, 2c + 8..); B (16 x 8, col) b0 = (k 2c..2c+1, n g), b1 = (k 2c + 8.., n g);
// C/D (16 x 8, f32) d0, d1 = (g, 2c..2c+1), d2, d3 = (g + 8, 2c..2c+1).
#ifndef TESSEL_RUNTIME_CUDA_MMA_CUH_
#define TESSEL_RUNTIME_CUDA_MMA_CUH_

#include <cstdint>

#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// Four 8x8 b16 matrices from shared memory; lane i gives the address of row i % 8 of
/// matrix i / 8; register j of every lane holds (row lane / 4, cols 2 (lane % 4) + {0, 1}) of
/// matrix j.
__device__ __forceinline__ void LdMatrixX4(uint32_t* r, const bf16* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// As LdMatrixX4 with each matrix transposed: register j holds (rows 2 (lane % 4) + {0, 1},
/// col lane / 4) of matrix j.
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t* r, const bf16* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// d += a (16x16 bf16, row) * b (16x8 bf16, col), f32 accumulators.
__device__ __forceinline__ void MmaBf16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// Waits until at most kPending committed cp.async groups of this thread are outstanding.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_MMA_CUH_
