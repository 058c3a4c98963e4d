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
  int64_t splits = 1;     // context chunks per (sequence, head group), at most 1024
  int64_t chunk = 0;      // keys per chunk at max_context, a multiple of 32
  size_t workspace_bytes = 0;  // partial results and arrival counters; > 0 iff splits > 1
};

/// Chooses the split for contexts of up to `max_context` visible keys (the cache capacity, or
/// the sliding window if smaller): as many blocks as stay resident at two per SM, chunks of at
/// least 512 keys. Each launch re-divides the keys visible at its step among the splits (at
/// least 128 keys each; the other splits' blocks exit at once).
AttentionDecodeSplit PlanAttentionDecode(int64_t batch, int64_t heads, int64_t kv_heads,
                                         int64_t head_dim, int64_t max_context);

/// Workspace bytes of a launch cut into `splits` (0 when splits <= 1): the splits' partial
/// results and one arrival counter per (sequence, kv head, head group). PlanAttentionDecode
/// fills workspace_bytes with it; a hand-made plan (benchmark sweeps) calls it directly.
size_t AttentionDecodeWorkspaceBytes(int64_t batch, int64_t heads, int64_t kv_heads,
                                     int64_t head_dim, int64_t splits);

/// RoPE and the KV-cache write fused into decode attention (LaunchAttentionDecode's `rope`):
/// q is given unrotated and rotated as the blocks load it; k_new and v_new [batch, kv_heads,
/// head_dim] (the projections' output for the step's token) are rotated / copied into the
/// caches at row positions[b] when it lies in [0, capacity), and straight into the shared
/// memory of the blocks that attend over that row. The same bits as LaunchRopeAndCacheWrite
/// then LaunchAttentionDecode, one launch fewer.
struct AttentionDecodeRope {
  const bf16* k_new = nullptr;  // null: q is rotated already and the caches are complete
  const bf16* v_new = nullptr;
  bf16* k_cache = nullptr;  // the caches attention reads (written at row positions[b])
  bf16* v_cache = nullptr;
  const float* inv_freq = nullptr;  // rotary_dim / 2 floats (UploadRopeInverseFrequencies)
  RopeKernelParams params;
};

/// q [batch, heads, head_dim], caches [batch, capacity, kv_heads, head_dim], positions
/// [batch] (the query's absolute position; keys j in [max(0, pos - window + 1), min(pos,
/// capacity - 1)] are visible), out [batch, heads, head_dim]; cpu::Attention with seq = 1.
/// `plan` from PlanAttentionDecode with max_context >= every visible range; `workspace`
/// (device, 16-byte aligned, as are q, the caches and out) of at least plan.workspace_bytes.
/// The workspace holds self-resetting counters: it must be zeroed once when allocated
/// (cudaMemset 0), and every launch leaves it zeroed again; launches sharing one workspace
/// must be ordered (one stream). head_dim 64, 128 or 256; any group size (heads / kv_heads).
/// One kernel launch (programmatic dependent launch where enabled, pdl.cuh): the splits merge
/// inside it. `positions_settled`: the positions, and the cache rows before each position,
/// were written before the kernels launched since the last full barrier (e.g. positions are
/// a step's input, copied in before its kernels, and only the kernel right before this one
/// writes the cache, at the positions): the kernel then reads them, and loads its first K/V
/// tiles, before waiting for the previous kernel (PdlWait). Otherwise everything is read after.
/// The kernel lets its dependents launch at its exit (PdlTriggersEarly): started early they
/// would run under its shared-memory carveout, a small L1; `next_in_shared_memory` says that
/// the next kernel does not rely on L1 (the TMA skinny GEMM stages x in shared memory), and it
/// then signals at its start (unless TESSEL_PDL_LATE is set: measurements).
absl::Status LaunchAttentionDecode(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                   const int32_t* positions, int64_t batch, int64_t heads,
                                   int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                   const AttentionKernelParams& params,
                                   const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                                   cudaStream_t stream, bool positions_settled = false,
                                   const AttentionDecodeRope& rope = {},
                                   bool next_in_shared_memory = false);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_ATTENTION_DECODE_CUH_
