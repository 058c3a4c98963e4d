// Causal attention over whole prompts on the GPU (flash-style, GQA, sliding window).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_ATTENTION_PREFILL_CUH_
#define TESSEL_RUNTIME_CUDA_ATTENTION_PREFILL_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// cpu::Attention in bf16: q [batch, seq, heads, head_dim], k and v [batch, kv_len, kv_heads,
/// head_dim] (a KV cache with kv_len = capacity works: causality hides the unwritten rows),
/// positions [batch, seq]. Key j is visible to query (b, s) iff j <= positions[b, s] (causal),
/// j > positions[b, s] - sliding_window (if set) and j < kv_len; a query with no visible key
/// gets zeros. out [batch, seq, heads, head_dim]. head_dim: 64, 128 or 256; heads a multiple
/// of kv_heads. Softmax in f32 (online, Milakov & Gimelshein 2018; Dao et al. 2022).
absl::Status LaunchAttentionPrefill(const bf16* q, const bf16* k, const bf16* v,
                                    const int32_t* positions, int64_t batch, int64_t seq,
                                    int64_t heads, int64_t kv_len, int64_t kv_heads,
                                    int64_t head_dim, const AttentionKernelParams& params,
                                    bf16* out, cudaStream_t stream);

/// Tile shapes of the prefill kernel (all compute the same function; tests check each and
/// the benchmark times each). kRows16PerWarp: 8 warps x 16 query rows with mma.sync, Q
/// fragments kept in registers; kRows32PerWarp: 4 warps x 32 rows with mma.sync, each K/V
/// fragment serves 32 rows; kWgmma: 2 warpgroups x 64 rows with wgmma (sm_90a; head_dim 64
/// and 128); kWgmmaPipelined: the same with the softmax of key tile t+1 overlapping P V of
/// tile t (FlashAttention-3). head_dim 256 always runs 8 warps x 16 rows with mma.sync.
/// kDefault: the one LaunchAttentionPrefill uses.
enum class AttentionPrefillTiles {
  kDefault,
  kRows16PerWarp,
  kRows32PerWarp,
  kWgmma,
  kWgmmaPipelined
};

/// LaunchAttentionPrefill with an explicit tile shape.
absl::Status LaunchAttentionPrefillWithTiles(const bf16* q, const bf16* k, const bf16* v,
                                             const int32_t* positions, int64_t batch,
                                             int64_t seq, int64_t heads, int64_t kv_len,
                                             int64_t kv_heads, int64_t head_dim,
                                             const AttentionKernelParams& params,
                                             AttentionPrefillTiles tiles, bf16* out,
                                             cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ATTENTION_PREFILL_CUH_
