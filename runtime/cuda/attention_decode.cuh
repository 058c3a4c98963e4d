// Decode attention on the GPU: one query per sequence over its KV cache (flash-decoding).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_ATTENTION_DECODE_CUH_
#define TESSEL_RUNTIME_CUDA_ATTENTION_DECODE_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// How one decode launch is cut along the context; fixed by (batch, heads, max_context), so a
/// captured CUDA graph keeps it while the sequences grow.
struct AttentionDecodeSplit {
  int64_t splits = 1;     // context chunks per (sequence, head group)
  int64_t chunk = 0;      // keys per chunk, a multiple of 32
  size_t workspace_bytes = 0;  // partial results when splits > 1
};

/// Chooses the split for contexts of up to `max_context` visible keys (the cache capacity, or
/// the sliding window if smaller): enough blocks to fill the device twice, chunks of at least
/// 128 keys.
AttentionDecodeSplit PlanAttentionDecode(int64_t batch, int64_t heads, int64_t kv_heads,
                                         int64_t head_dim, int64_t max_context);

/// q [batch, heads, head_dim], caches [batch, capacity, kv_heads, head_dim], positions
/// [batch] (the query's absolute position; keys j in [max(0, pos - window + 1), min(pos,
/// capacity - 1)] are visible), out [batch, heads, head_dim]; cpu::Attention with seq = 1.
/// `plan` from PlanAttentionDecode with max_context >= every visible range; `workspace`
/// (device) of at least plan.workspace_bytes. head_dim 64, 128 or 256.
absl::Status LaunchAttentionDecode(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                   const int32_t* positions, int64_t batch, int64_t heads,
                                   int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                   const AttentionKernelParams& params,
                                   const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                                   cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ATTENTION_DECODE_CUH_
