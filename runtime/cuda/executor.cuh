// Kernels only the CUDA plan executor uses: dummy weights, KV-cache rows, strided copies,
// SiLU and an attention fallback for head sizes the tuned kernels do not cover.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_EXECUTOR_CUH_
#define TESSEL_RUNTIME_CUDA_EXECUTOR_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// out[i] = bf16(mean + stddev * N(0, 1)), the normal drawn from a hash of (seed, i)
/// (Box-Muller over two 24-bit uniforms): the same seed gives the same weights.
absl::Status LaunchFillNormalBf16(bf16* out, int64_t n, uint64_t seed, float mean,
                                  float stddev, cudaStream_t stream);

/// cache[b, positions[b, s], :] = update[b, s, :] for rows of `row` bf16 elements
/// (cpu::KVCacheWrite); positions outside [0, capacity) write nothing.
absl::Status LaunchKvCacheWrite(const bf16* update, const int32_t* positions, int64_t batch,
                                int64_t seq, int64_t row, bf16* cache, int64_t capacity,
                                cudaStream_t stream);

/// The copy behind Slice and Concat: out[o, out_start + d, i] = in[o, in_start + d, i] for
/// o < outer, d < size, i < inner; in has in_dim and out has out_dim along the middle axis.
/// element_bytes 2 or 4.
absl::Status LaunchStridedCopy(const void* in, int64_t outer, int64_t in_dim, int64_t in_start,
                               int64_t size, int64_t inner, int64_t out_dim, int64_t out_start,
                               int element_bytes, void* out, cudaStream_t stream);

/// out = silu(x) = x / (1 + exp(-x)), bf16, f32 math.
absl::Status LaunchSilu(const bf16* x, int64_t n, bf16* out, cudaStream_t stream);

/// cpu::Attention in bf16 for any head_dim <= 256 and kv_len <= 32768: one block per
/// (batch, query, head), scores in shared memory, f32 softmax. Slow but exact; the executor
/// uses it only for head sizes the flash kernels do not support (tiny test models).
absl::Status LaunchAttentionReference(const bf16* q, const bf16* k, const bf16* v,
                                      const int32_t* positions, int64_t batch, int64_t seq,
                                      int64_t heads, int64_t kv_len, int64_t kv_heads,
                                      int64_t head_dim, const AttentionKernelParams& params,
                                      bf16* out, cudaStream_t stream);

/// cpu::MLAAttention in bf16 for any dims (kv_len <= 32768, rank <= 4096): one block per
/// (token, head), the absorbed form, f32 softmax. The executor uses it where mla.cuh's tuned
/// kernel does not apply (it takes kv_lora_rank 512 and rope 64: DeepSeek-V2/V3's dims).
absl::Status LaunchMlaReference(const bf16* q_nope, const bf16* q_rope, const bf16* latent,
                                const bf16* key_rope, const bf16* kv_b,
                                const int32_t* positions, int64_t batch, int64_t seq,
                                int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                                int64_t rank, int64_t v_dim, const AttentionKernelParams& params,
                                bf16* out, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_EXECUTOR_CUH_
