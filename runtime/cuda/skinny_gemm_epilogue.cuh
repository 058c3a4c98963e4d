// What the two skinny GEMM kernels (skinny_gemm.cu: registers; skinny_gemm_tma.cu: TMA +
// wgmma) share per element: the RMSNorm prologue's x * weight and the epilogue's value from
// the f32 dot products (each kernel adds the residual and stores in its own pattern).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_SKINNY_GEMM_EPILOGUE_CUH_
#define TESSEL_RUNTIME_CUDA_SKINNY_GEMM_EPILOGUE_CUH_

#include <cstdint>

#include "runtime/cuda/common.cuh"
#include "runtime/cuda/skinny_gemm.cuh"

namespace tessel::cuda {

__device__ __forceinline__ float SkinnySilu(float g) { return g / (1.0f + __expf(-g)); }

/// RMSNorm prologue on 8 bf16 of x: x = bf16(x * weight), the exact product rounded once
/// (the 1 / rms factor is applied to the dot products).
__device__ __forceinline__ void ScaleByNormWeight(uint4& x, const uint4& weight) {
  __nv_bfloat162* xs = reinterpret_cast<__nv_bfloat162*>(&x);
  const __nv_bfloat162* ws = reinterpret_cast<const __nv_bfloat162*>(&weight);
#pragma unroll
  for (int i = 0; i < 4; ++i) xs[i] = __hmul2(xs[i], ws[i]);
}

/// The output value of one element before a residual add: dot(mat) for each weight matrix
/// times inv_rms, plus the bias of weight seg + mat when given, then SwiGLU (kMats == 2).
/// `feature` < n: the bias is read there.
template <int kMats, typename Params, typename Dot>
__device__ __forceinline__ float SkinnyOutputValue(const Params& p, Dot dot, float inv_rms,
                                                   int seg, int feature) {
  float v[kMats];
#pragma unroll
  for (int mat = 0; mat < kMats; ++mat) {
    float s = dot(mat) * inv_rms;
    if (p.bias[seg + mat] != nullptr) s += __bfloat162float(p.bias[seg + mat][feature]);
    v[mat] = s;
  }
  if constexpr (kMats == 2) {
    return SkinnySilu(v[0]) * v[1];
  } else {
    return v[0];
  }
}

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_SKINNY_GEMM_EPILOGUE_CUH_
