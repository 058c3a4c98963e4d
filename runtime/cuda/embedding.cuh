// Token embedding lookup on the GPU: a bf16 or f32 table gathered into bf16 activations.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_EMBEDDING_CUH_
#define TESSEL_RUNTIME_CUDA_EMBEDDING_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// out[t, :] = bf16(table[ids[t], :]); table [vocab, hidden] of `table_type`, out [tokens,
/// hidden]. An id outside [0, vocab) cannot be reported synchronously: its row is written as
/// zeros and, when `bad_token` (device, initialized to -1 by the caller) is not null, the
/// index of one offending token is stored there for the caller to check after the step.
absl::Status LaunchEmbedding(const int32_t* ids, int64_t tokens, const void* table,
                             DType table_type, int64_t vocab, int64_t hidden, bf16* out,
                             int32_t* bad_token, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_EMBEDDING_CUH_
