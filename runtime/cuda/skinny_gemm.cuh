// Projections of a few rows (decode: one row per sequence) at the HBM-bandwidth floor, with the
// epilogues that save the launches around them: q/k/v (up to three weights) in one launch, the
// residual add, and SwiGLU over a gate and an up projection.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_SKINNY_GEMM_CUH_
#define TESSEL_RUNTIME_CUDA_SKINNY_GEMM_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// What happens to an output element's f32 dot product (plus its bias, when given).
enum class SkinnyEpilogue {
  kStore,        // out_i = x W_i^T (+ bias_i) for each of the 1-3 weights
  kAddResidual,  // out_0 = residual + x W_0^T (+ bias_0); one weight; out_0 may be residual
  kSwiGlu,       // out_0 = silu(x W_0^T) * (x W_1^T): two weights (gate, up) of equal n
};

/// Which kernel computes the projection.
enum class SkinnyKernel {
  kAuto,       // the measured default for the GPU and shape; TESSEL_SKINNY_KERNEL=registers|tma
               // overrides it (measurements)
  kRegisters,  // loads in flight in registers, mma.sync (every GPU; skinny_gemm.cu)
  kTma,        // TMA into a shared-memory ring, wgmma (sm_90 only; skinny_gemm_tma.cu)
};

inline constexpr int kSkinnyMaxRows = 16;     // the register kernel's rows, at most
inline constexpr int kSkinnyTmaMaxRows = 64;  // the TMA kernel's
/// Largest k of the RMSNorm prologue (its weight is staged in shared memory).
inline constexpr int64_t kSkinnyMaxNormK = 8192;
inline constexpr int kSkinnyMaxWeights = 3;
/// The most CTAs (one thread-block cluster) sharing a TMA tile's k: the portable cluster size.
inline constexpr int kSkinnyMaxSplit = 8;

/// C_i [m, n_i] = A [m, k] @ W_i[n_i, k]^T (HF out x in layout), bf16 operands, f32
/// accumulation on tensor cores, rounded once. Every pointer 16-byte aligned; outputs must not
/// overlap x (the residual may be out_0 itself, element for element).
struct SkinnyGemmArgs {
  const bf16* x = nullptr;
  int64_t m = 0, k = 0;
  int weights = 1;
  const bf16* w[kSkinnyMaxWeights] = {};
  const bf16* bias[kSkinnyMaxWeights] = {};  // [n_i] bf16 or null
  int64_t n[kSkinnyMaxWeights] = {};
  void* out[kSkinnyMaxWeights] = {};  // bf16, or f32 when out_f32 (kStore only)
  bool out_f32 = false;
  SkinnyEpilogue epilogue = SkinnyEpilogue::kStore;
  const bf16* residual = nullptr;  // kAddResidual: [m, n_0]
  // RMSNorm prologue: when set, x is the input of an RMSNorm with this weight [k] (bf16) and
  // eps, and the projections take RMSNorm(x): each CTA sums the squares of the x rows it
  // reads anyway, multiplies x by the weight before the mma and the dot products by
  // 1 / rms(row) after it — the normalized activations are never stored.
  const bf16* norm_weight = nullptr;
  float norm_eps = 0.0f;
  int occupancy = 0;  // kRegisters: 0 the tuned default; 1 or 2 the variant for that many CTAs/SM
  SkinnyKernel kernel = SkinnyKernel::kAuto;
  // kTma: CTAs (a thread-block cluster) sharing the k of each 64-row tile, 1 to
  // kSkinnyMaxSplit; 0: the default (more for projections with few tiles).
  int split = 0;
};

/// The most rows of x a skinny GEMM takes here: kSkinnyTmaMaxRows where the TMA kernel runs
/// (sm_90, TESSEL_SKINNY_KERNEL not "registers"), else kSkinnyMaxRows.
int SkinnyGemmMaxRows();

/// True for the shapes the kernels take: 1 <= m <= SkinnyGemmMaxRows(), k a positive
/// multiple of 64. Larger m belongs to cuBLASLt.
bool SkinnyGemmSupports(int64_t m, int64_t k);

/// The kernel LaunchSkinnyGemm runs `args` with: args.kernel, or for kAuto the measured
/// choice (TESSEL_SKINNY_KERNEL overrides it): the TMA kernel on sm_90 for more than 8 rows
/// (the only one above kSkinnyMaxRows).
SkinnyKernel ResolveSkinnyKernel(const SkinnyGemmArgs& args);

/// Whether the skinny GEMM is the measured better choice than cuBLASLt for `args`: always up
/// to kSkinnyMaxRows rows; above (the TMA kernel, up to kSkinnyTmaMaxRows), only for two or
/// three weights of one x (q/k/v, gate/up: one launch where cuBLASLt takes two or three and
/// split-k reductions) without the RMSNorm prologue (at 64 rows it costs more than a norm
/// launch). H100, docs/performance.md seventh round.
bool SkinnyGemmPreferred(const SkinnyGemmArgs& args);

/// Enqueues the projection(s); errors name the argument that is wrong.
absl::Status LaunchSkinnyGemm(const SkinnyGemmArgs& args, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_SKINNY_GEMM_CUH_
