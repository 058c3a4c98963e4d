// RMSNorm (Zhang & Sennrich 2019) as HF LlamaRMSNorm: y = w * x * rsqrt(mean(x^2) + eps).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// One block per row. The row is read from device memory once into shared memory (bf16,
// dim * 2 bytes) while the sum of squares accumulates, then scaled from there: the cost is
// the byte floor, rows * dim * (2 read + 2 written) (+2 +2 for the fused residual add).
#include "runtime/cuda/rms_norm.cuh"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

constexpr int kThreads = 256;

template <bool kAdd, bool kVector>
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(bf16* residual, const bf16* __restrict__ x, const bf16* __restrict__ weight,
                  int64_t dim, float eps, bf16* __restrict__ out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* row = reinterpret_cast<bf16*>(smem_raw);
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const bf16* src = kAdd ? residual + r * dim : x + r * dim;
  float sum_sq = 0.0f;
  if constexpr (kVector) {
    for (int64_t i = threadIdx.x * 8; i < dim; i += kThreads * 8) {
      float v[8];
      Unpack8(*reinterpret_cast<const Bf16x8*>(src + i), v);
      if constexpr (kAdd) {
        float a[8];
        Unpack8(*reinterpret_cast<const Bf16x8*>(x + r * dim + i), a);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += a[j];
        const Bf16x8 packed = Pack8(v);
        *reinterpret_cast<Bf16x8*>(residual + r * dim + i) = packed;
        Unpack8(packed, v);  // normalize the rounded sum, as HF does
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sum_sq += v[j] * v[j];
      *reinterpret_cast<Bf16x8*>(row + i) = Pack8(v);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
      float v = __bfloat162float(src[i]);
      if constexpr (kAdd) {
        const bf16 sum = __float2bfloat16_rn(v + __bfloat162float(x[r * dim + i]));
        residual[r * dim + i] = sum;
        v = __bfloat162float(sum);
      }
      sum_sq += v * v;
      row[i] = __float2bfloat16_rn(v);
    }
  }
  sum_sq = BlockSum(sum_sq, scratch);  // ends with a barrier: `row` is complete
  const float inv_rms = rsqrtf(sum_sq / static_cast<float>(dim) + eps);
  bf16* dst = out + r * dim;
  if constexpr (kVector) {
    for (int64_t i = threadIdx.x * 8; i < dim; i += kThreads * 8) {
      float v[8], w[8];
      Unpack8(*reinterpret_cast<const Bf16x8*>(row + i), v);
      Unpack8(*reinterpret_cast<const Bf16x8*>(weight + i), w);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = w[j] * (v[j] * inv_rms);
      *reinterpret_cast<Bf16x8*>(dst + i) = Pack8(v);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
      dst[i] = __float2bfloat16_rn(__bfloat162float(weight[i]) *
                                   (__bfloat162float(row[i]) * inv_rms));
    }
  }
}

template <bool kAdd>
absl::Status Launch(bf16* residual, const bf16* x, const bf16* weight, int64_t rows, int64_t dim,
                    float eps, bf16* out, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return absl::OkStatus();
  const size_t smem = static_cast<size_t>(dim) * sizeof(bf16);
  if (smem > 200 * 1024) {
    return absl::InvalidArgumentError(absl::StrCat("rms_norm: dim ", dim, " is too large"));
  }
  const bool vector = dim % 8 == 0 && Aligned16(x) && Aligned16(weight) && Aligned16(out) &&
                      (!kAdd || Aligned16(residual));
  auto kernel = vector ? RmsNormKernel<kAdd, true> : RmsNormKernel<kAdd, false>;
  if (smem > 48 * 1024) {
    TESSEL_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<rows, kThreads, smem, stream>>>(residual, x, weight, dim, eps, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("RmsNormKernel");
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchRmsNorm(const bf16* x, const bf16* weight, int64_t rows, int64_t dim,
                           float eps, bf16* out, cudaStream_t stream) {
  return Launch<false>(nullptr, x, weight, rows, dim, eps, out, stream);
}

absl::Status LaunchAddRmsNorm(bf16* residual, const bf16* x, const bf16* weight, int64_t rows,
                              int64_t dim, float eps, bf16* out, cudaStream_t stream) {
  return Launch<true>(residual, x, weight, rows, dim, eps, out, stream);
}

}  // namespace tessel::cuda
