// Mixture-of-experts on the GPU: the router (top-k over softmax/sigmoid scores) and the routed
// experts as grouped GEMMs over device-built per-expert work lists.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_MOE_CUH_
#define TESSEL_RUNTIME_CUDA_MOE_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// cpu::RouterParams with int / f32 fields.
struct MoERouterKernelParams {
  int top_k = 1;
  int n_group = 1;
  int topk_group = 1;
  bool sigmoid = false;         // scoring: sigmoid, else softmax over experts
  bool norm_topk_prob = false;  // renormalize the chosen weights (sum + 1e-20)
  float routed_scaling_factor = 1.0f;
};

/// Device workspace of LaunchMoERouter for up to `tokens` tokens. Zero-fill it once after
/// allocation: its ticket counters are left at zero by every launch.
size_t MoERouterWorkspaceBytes(int64_t tokens, int64_t experts);

/// x [tokens, hidden] bf16, gate [experts, hidden] bf16, bias [experts] f32 (DeepSeek-V3's
/// e_score_correction_bias; may be null) -> weights [tokens, top_k] f32, indices [tokens,
/// top_k] int32: cpu::MoERouter (logits accumulated in f32, ties to the lower index).
/// experts <= 256, n_group <= 32 dividing experts, topk_group <= n_group, 1 <= top_k <= 32.
/// `workspace` from MoERouterWorkspaceBytes for at least `tokens`; with few tokens the gate is
/// split over many blocks and the last one of each token group selects.
absl::Status LaunchMoERouter(const bf16* x, int64_t tokens, int64_t hidden, const bf16* gate,
                             int64_t experts, const float* bias,
                             const MoERouterKernelParams& params, void* workspace,
                             float* weights, int32_t* indices, cudaStream_t stream);

/// The expert MLP's gate activation (cpu::UnaryOp subset): act(gate @ x) * (up @ x).
enum class MoEActivation { kSilu, kGelu, kGeluTanh, kRelu };

/// How one MoEExperts launch is cut, fixed by the shapes (not by the routing), so a captured
/// CUDA graph serves every step of a batch size.
struct MoEExpertsPlan {
  int64_t tokens = 0;      // most tokens a launch with this plan may pass
  int64_t top_k = 0;
  int64_t experts = 0;
  int64_t hidden = 0;
  int64_t inter = 0;
  int block_m = 16;        // rows (token, expert) pairs per GEMM tile: 16 or 64
  int64_t max_tiles = 0;   // bound on the sum over experts of ceil(rows_e / block_m)
  size_t workspace_bytes = 0;
};

/// Plan for up to `tokens` tokens.
MoEExpertsPlan PlanMoEExperts(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden,
                              int64_t inter);

/// out [tokens, hidden] bf16 = cpu::MoEExperts: for each token, the sum over its top_k slots
/// of weights[t, j] * down[e] @ (act(gate[e] @ x[t]) * (up[e] @ x[t])), e = indices[t, j]
/// (slots whose index is outside [0, experts) add nothing). gate/up [experts, inter, hidden],
/// down [experts, hidden, inter], all bf16; the activation product is rounded to bf16 before
/// the down projection. No host synchronization; deterministic (no float atomics).
/// hidden and inter multiples of 8, pointers 16-byte aligned, experts <= 1024,
/// tokens <= plan.tokens; `workspace` (device) of plan.workspace_bytes.
absl::Status LaunchMoEExperts(const bf16* x, int64_t tokens, const float* weights,
                              const int32_t* indices, const bf16* gate, const bf16* up,
                              const bf16* down, MoEActivation activation,
                              const MoEExpertsPlan& plan, void* workspace, bf16* out,
                              cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_MOE_CUH_
