// SwiGLU (Shazeer 2020) as HF LlamaMLP's act_fn(gate) * up, rounded once to bf16.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Memory bound: 6 bytes per element (two bf16 reads, one write). Each thread moves 16-byte
// vectors (8 elements) in a grid-stride loop with two vectors in flight per iteration.
#include "runtime/cuda/swiglu.cuh"

#include <algorithm>

#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

__device__ __forceinline__ float Silu(float g) { return g / (1.0f + __expf(-g)); }

__global__ void SwiGluVectorKernel(const bf16* __restrict__ gate, const bf16* __restrict__ up,
                                   int64_t in_stride, int64_t cols, int64_t total_vectors,
                                   bf16* __restrict__ out) {
  const int64_t vectors_per_row = cols / 8;
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       v < total_vectors; v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = v / vectors_per_row;
    const int64_t c = (v - r * vectors_per_row) * 8;
    float g[8], u[8];
    Unpack8(*reinterpret_cast<const Bf16x8*>(gate + r * in_stride + c), g);
    Unpack8(*reinterpret_cast<const Bf16x8*>(up + r * in_stride + c), u);
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = Silu(g[j]) * u[j];
    *reinterpret_cast<Bf16x8*>(out + r * cols + c) = Pack8(g);
  }
}

__global__ void SwiGluScalarKernel(const bf16* __restrict__ gate, const bf16* __restrict__ up,
                                   int64_t in_stride, int64_t cols, int64_t total,
                                   bf16* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const float g = __bfloat162float(gate[r * in_stride + c]);
    out[i] = __float2bfloat16_rn(Silu(g) * __bfloat162float(up[r * in_stride + c]));
  }
}

}  // namespace

absl::Status LaunchSwiGlu(const bf16* gate, const bf16* up, int64_t in_stride, int64_t rows,
                          int64_t cols, bf16* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return absl::OkStatus();
  const int threads = 256;
  const bool vector = cols % 8 == 0 && in_stride % 8 == 0 && Aligned16(gate) && Aligned16(up) &&
                      Aligned16(out);
  const int64_t work = vector ? rows * cols / 8 : rows * cols;
  // Enough blocks to fill the chip several times over; the loop covers the rest.
  const int64_t blocks = std::min<int64_t>(CeilDiv(work, threads), 132 * 16);
  if (vector) {
    SwiGluVectorKernel<<<blocks, threads, 0, stream>>>(gate, up, in_stride, cols, work, out);
  } else {
    SwiGluScalarKernel<<<blocks, threads, 0, stream>>>(gate, up, in_stride, cols, work, out);
  }
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("SwiGluKernel");
  return absl::OkStatus();
}

}  // namespace tessel::cuda
