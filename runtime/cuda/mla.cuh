// DeepSeek multi-head latent attention (MLA) on the GPU over the compressed latent cache, in
// the absorbed form, for decode and prefill.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_MLA_CUH_
#define TESSEL_RUNTIME_CUDA_MLA_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// How one MLA launch is cut along the context; fixed by (tokens, heads, max_context), so a
/// captured CUDA graph keeps it while the sequences grow.
struct MLAAttentionPlan {
  int64_t tokens = 0;   // batch * seq the plan was made for (a launch may pass fewer)
  int64_t heads = 0;
  int64_t splits = 1;   // context chunks per (token, 16-head group)
  int64_t chunk = 0;    // keys per chunk, a multiple of 32
  size_t workspace_bytes = 0;
};

/// Chooses the split for contexts of up to `max_context` visible keys: about one block per
/// multiprocessor, chunks of at least 128 keys, at most 256 splits.
MLAAttentionPlan PlanMLAAttention(int64_t batch, int64_t seq, int64_t heads,
                                  int64_t max_context);

/// cpu::MLAAttention: q_nope [B, S, H, nope], q_rope [B, S, H, rope], latent [B, L, rank],
/// key_rope [B, L, rope], kv_b [H * (nope + v_dim), rank], positions [B, S] -> out [B, S, H,
/// v_dim]; all tensors bf16, f32 accumulation (the absorbed query q_nope kv_b[h, :nope] and
/// the softmax probabilities are rounded to bf16 for the tensor cores). rank 512, rope 64
/// (DeepSeek V2, V2-Lite, V3), nope <= 256; `plan` from PlanMLAAttention for at least B * S
/// tokens, these heads and a max_context covering every visible range; `workspace` (device)
/// of plan.workspace_bytes.
absl::Status LaunchMLAAttention(const bf16* q_nope, const bf16* q_rope, const bf16* latent,
                                const bf16* key_rope, const bf16* kv_b,
                                const int32_t* positions, int64_t batch, int64_t seq,
                                int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                                int64_t rank, int64_t v_dim,
                                const AttentionKernelParams& params,
                                const MLAAttentionPlan& plan, void* workspace, bf16* out,
                                cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_MLA_CUH_
