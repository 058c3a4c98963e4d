// Token selection on the GPU: greedy argmax and seeded temperature / top-k / top-p sampling.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_SAMPLING_CUH_
#define TESSEL_RUNTIME_CUDA_SAMPLING_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace tessel::cuda {

/// out[r] = argmax of logits[r, :] (f32 [rows, vocab]); ties pick the lowest id, NaN counts
/// as -inf (as the CPU sampler's greedy path on finite logits).
absl::Status LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                          cudaStream_t stream);

/// The semantics of tessel_sampling_t (runtime/include/tessel/tessel.h).
struct SamplingKernelParams {
  float temperature = 1.0f;  // <= 0: greedy
  int32_t top_k = 0;         // 0: all; 1: greedy
  float top_p = 1.0f;        // 0 or >= 1: all
  uint64_t seed = 0;         // Philox key
  uint64_t offset = 0;       // Philox offset: the step number, so each step draws anew
};

/// Per row: probabilities exp((logit - max) / temperature), restricted to the top_k most
/// likely (ties: lower id first), then to the smallest most-likely prefix holding top_p of
/// their mass, then one token drawn with a Philox4x32-10 uniform (subsequence = row).
/// Probabilities are held as 32.32 fixed-point integers so every sum is exact and the result
/// depends only on (logits, params): the same seed and offset give the same tokens.
absl::Status LaunchSample(const float* logits, int64_t rows, int64_t vocab,
                          const SamplingKernelParams& params, int32_t* out, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_SAMPLING_CUH_
