// RMSNorm on the GPU, plain and fused with the residual add (bf16 in/out, f32 math).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_RMS_NORM_CUH_
#define TESSEL_RUNTIME_CUDA_RMS_NORM_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// out = x / sqrt(mean(x^2) + eps) * weight per row of `dim` (x, weight, out bf16; the sum of
/// squares and the scaling in f32, rounded once to bf16). x [rows, dim], weight [dim].
absl::Status LaunchRmsNorm(const bf16* x, const bf16* weight, int64_t rows, int64_t dim,
                           float eps, bf16* out, cudaStream_t stream);

/// residual = bf16(residual + x); out = RMSNorm(residual) — the transformer block's
/// "add then normalize", reading x and residual once and writing both outputs once.
/// residual is updated in place; out must not alias residual or x.
absl::Status LaunchAddRmsNorm(bf16* residual, const bf16* x, const bf16* weight, int64_t rows,
                              int64_t dim, float eps, bf16* out, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_RMS_NORM_CUH_
