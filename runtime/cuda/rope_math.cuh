// The arithmetic of one RoPE rotation, shared by the kernels that apply it (rope.cu, and the
// decode attention that fuses it, attention_decode.cu), so that they give the same bits.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_ROPE_MATH_CUH_
#define TESSEL_RUNTIME_CUDA_ROPE_MATH_CUH_

#include <cstdint>

#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

struct RopeCosSin {
  float c, s;
};

/// cos and sin of position * inv_freq, times attention_factor (yarn); the angle is the fp32
/// product rounded once, as torch's inv_freq @ positions and cpu::Rope.
__device__ __forceinline__ RopeCosSin RopeAngle(int32_t position, float inv_freq,
                                                float attention_factor) {
  const float angle = __fmul_rn(static_cast<float>(position), inv_freq);
  float s, c;
  sincosf(angle, &s, &c);
  return {c * attention_factor, s * attention_factor};
}

/// The pair (xa, xb) rotated: (xa c - xb s, xb c + xa s), each rounded to bf16 once.
__device__ __forceinline__ void RopeRotatePair(float xa, float xb, RopeCosSin cs, bf16& ya,
                                               bf16& yb) {
  ya = __float2bfloat16_rn(__fsub_rn(__fmul_rn(xa, cs.c), __fmul_rn(xb, cs.s)));
  yb = __float2bfloat16_rn(__fadd_rn(__fmul_rn(xb, cs.c), __fmul_rn(xa, cs.s)));
}

/// The features of rotary pair i of a head: (2i, 2i+1) interleaved, else (i, i + half).
__device__ __forceinline__ void RopePairFeatures(int i, int half, bool interleaved, int& a,
                                                 int& b) {
  a = interleaved ? 2 * i : i;
  b = interleaved ? 2 * i + 1 : i + half;
}

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ROPE_MATH_CUH_
