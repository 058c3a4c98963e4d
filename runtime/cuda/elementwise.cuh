// Elementwise kernels on the GPU: add, mul, scale (f32 or bf16) and f32 <-> bf16 casts.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_ELEMENTWISE_CUH_
#define TESSEL_RUNTIME_CUDA_ELEMENTWISE_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

enum class ElementwiseOp { kAdd, kMul };

/// out[i] = a[i] op b[i], i < n, all of `type` (math in f32, one rounding). out may alias a or b.
absl::Status LaunchBinary(ElementwiseOp op, DType type, const void* a, const void* b, int64_t n,
                          void* out, cudaStream_t stream);
/// out[i] = x[i] * factor (factor rounded to f32 first, as the CPU kernel does).
absl::Status LaunchScale(DType type, const void* x, double factor, int64_t n, void* out,
                         cudaStream_t stream);
/// out = bf16(x), round to nearest even.
absl::Status LaunchCastF32ToBf16(const float* x, int64_t n, bf16* out, cudaStream_t stream);
/// out = float(x), exact.
absl::Status LaunchCastBf16ToF32(const bf16* x, int64_t n, float* out, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ELEMENTWISE_CUH_
