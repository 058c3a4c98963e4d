// SwiGLU activation on the GPU: out = silu(gate) * up (bf16, f32 math).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_SWIGLU_CUH_
#define TESSEL_RUNTIME_CUDA_SWIGLU_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// out[r, c] = silu(gate[r, c]) * up[r, c], r < rows, c < cols. gate and up rows are
/// `in_stride` elements apart (cols for separate tensors; 2 * cols for a fused gate_up
/// projection with up = gate + cols); out is [rows, cols] contiguous.
absl::Status LaunchSwiGlu(const bf16* gate, const bf16* up, int64_t in_stride, int64_t rows,
                          int64_t cols, bf16* out, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_SWIGLU_CUH_
