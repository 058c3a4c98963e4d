// Rotary position embeddings on the GPU, alone and fused with the KV-cache write.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_ROPE_CUH_
#define TESSEL_RUNTIME_CUDA_ROPE_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// OK when `params` fit heads of `head_dim` features: rotary_dim even, in (0, head_dim].
absl::Status CheckRopeKernelParams(int64_t head_dim, const RopeKernelParams& params);

/// The kernel parameters of a CPU RopeParams (the same rules as cpu::Rope).
RopeKernelParams MakeRopeKernelParams(const cpu::RopeParams& params);

/// Computes cpu::RopeInverseFrequencies(params, seq_len) on the host and copies it
/// (synchronously) into `device_table` (rotary_dim / 2 floats). Dynamic NTK depends on
/// seq_len = max(position) + 1 of the call, so such plans refresh it when that grows.
absl::Status UploadRopeInverseFrequencies(const cpu::RopeParams& params, int64_t seq_len,
                                          float* device_table);

/// out[t, h, :] = rope(x[t, h, :], positions[t]) for x [tokens, heads, head_dim] bf16; the
/// angle is fp32 position * inv_freq[i] as in cpu::Rope, cos/sin in f32. out may equal x.
absl::Status LaunchRope(const bf16* x, const int32_t* positions, int64_t tokens, int64_t heads,
                        int64_t head_dim, const float* inv_freq, const RopeKernelParams& params,
                        bf16* out, cudaStream_t stream);

/// The attention prologue in one pass per token: q [batch, seq, q_heads, head_dim] rotated
/// into q_out (which may be q itself); k [batch, seq, kv_heads, head_dim] rotated and v copied
/// into the caches [batch, capacity, kv_heads, head_dim] at row positions[b, s]
/// (cpu::KVCacheWrite's layout). A position outside [0, capacity) writes nothing to the caches
/// and, when `bad_position` (device, initialized to -1) is not null, records that token's
/// index there.
absl::Status LaunchRopeAndCacheWrite(const bf16* q, bf16* q_out, const bf16* k, const bf16* v,
                                     const int32_t* positions, int64_t batch, int64_t seq,
                                     int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                     const float* inv_freq, const RopeKernelParams& params,
                                     bf16* k_cache, bf16* v_cache, int64_t capacity,
                                     int32_t* bad_position, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ROPE_CUH_
