// Device helpers shared by the CUDA kernels: bf16 vectors, warp and block reductions, dtypes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_COMMON_CUH_
#define TESSEL_RUNTIME_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace tessel::cuda {

using bf16 = __nv_bfloat16;

/// Element types of kernel operands chosen at run time.
enum class DType { kF32, kBF16 };

/// Masking and score options of attention (cpu::AttentionParams with f32 scalars).
struct AttentionKernelParams {
  float scale = 1.0f;
  bool causal = true;
  int64_t sliding_window = 0;  // 0: none; else key j visible iff j > position - window
  float logit_softcap = 0.0f;  // 0: none; else s = cap * tanh(s / cap)
};

/// What RoPE needs besides the inverse-frequency table (rope.cuh); every scaling variant
/// (default, linear, dynamic NTK, llama3, yarn) differs only in that table and in
/// attention_factor.
struct RopeKernelParams {
  int64_t rotary_dim = 0;        // rotated features per head (even, <= head_dim, <= 1024)
  bool interleaved = false;      // pairs (2i, 2i+1), else (i, i + rotary_dim / 2)
  float attention_factor = 1.0f;  // yarn: cos and sin are multiplied by it
};

/// Bytes of global memory (the weights of a later kernel) to bring into L2 ahead of it
/// (LaunchL2Prefetch, l2_prefetch.cuh). Empty: nothing.
struct L2Prefetch {
  const void* data = nullptr;  // 16-byte aligned
  uint64_t bytes = 0;          // rounded down to a multiple of 16
};

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// True when p is 16-byte aligned (vector loads allowed); host checks and device code alike.
__host__ __device__ __forceinline__ bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

/// Eight bf16 values moved as one 16-byte access.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 v[4];
};

__device__ __forceinline__ void Unpack8(const Bf16x8& p, float* out) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(p.v[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ Bf16x8 Pack8(const float* in) {
  Bf16x8 p;
#pragma unroll
  for (int i = 0; i < 4; ++i) p.v[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  return p;
}

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 FromFloat<bf16>(float x) { return __float2bfloat16_rn(x); }

/// The shared-memory (state space) address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// Copies 16 bytes global -> shared without a register round trip (sm_80+); when `valid`
/// is false the 16 shared bytes are zero-filled and global memory is not read.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem),
               "r"(bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::); }

/// Applies the soft cap; scores are dot * scale.
__device__ __forceinline__ float CapScore(float s, float softcap) {
  return softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/// Two floats as bf16x2, `lo` in the low half (the lower column of a fragment pair).
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

/// 2^x; 2^-inf = +0.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// One online-softmax step (flash attention, base 2) for a row whose new tile of scores has
/// maximum `tile_max`: `running_max` becomes max(running_max, tile_max); `base` is set to the
/// new max times `score_mult`, to subtract from each score * score_mult inside Exp2 (0 while
/// nothing is visible and the max is -inf, so that exp2(-inf) = 0, not NaN); returns alpha,
/// the factor for what was accumulated under the old max.
__device__ __forceinline__ float OnlineSoftmaxRescale(float& running_max, float tile_max,
                                                      float score_mult, float& base) {
  const float new_max = fmaxf(running_max, tile_max);
  base = new_max == -INFINITY ? 0.0f : new_max * score_mult;
  const float alpha = Exp2(running_max * score_mult - base);
  running_max = new_max;
  return alpha;
}

/// Op over the warp's 32 lanes (butterfly); every lane gets it.
template <typename Op>
__device__ __forceinline__ float WarpReduce(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) { return WarpReduce<SumOp>(v); }
__device__ __forceinline__ float WarpMax(float v) { return WarpReduce<MaxOp>(v); }

/// Op over the block (blockDim.x a multiple of 32, at most 1024; `identity` fills the lanes
/// past the last warp); every thread gets it. `scratch` holds 32 floats; the function ends
/// with a barrier so it can be reused.
template <typename Op>
__device__ __forceinline__ float BlockReduce(float v, float identity, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpReduce<Op>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float total = lane < warps ? scratch[lane] : identity;
  total = WarpReduce<Op>(total);
  __syncthreads();
  return total;
}

/// Sum / max over the block: BlockReduce's contract.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  return BlockReduce<SumOp>(v, 0.0f, scratch);
}
__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  return BlockReduce<MaxOp>(v, -INFINITY, scratch);
}

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_COMMON_CUH_
