// The Hopper variant of the skinny GEMM (skinny_gemm_tma.cu): TMA into a shared-memory ring,
// wgmma. LaunchSkinnyGemm picks it (SkinnyKernel::kTma); callers use that entry point.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_SKINNY_GEMM_TMA_CUH_
#define TESSEL_RUNTIME_CUDA_SKINNY_GEMM_TMA_CUH_

#include "runtime/cuda/skinny_gemm.cuh"

namespace tessel::cuda {

/// True on an sm_90 GPU (the kernel is sm_90a machine code).
bool SkinnyGemmTmaAvailable();

/// Tiles of 64 weight rows the TMA kernel cuts `args` into (gate and up share theirs).
int64_t SkinnyGemmTmaTiles(const SkinnyGemmArgs& args);

/// Enqueues the projection(s) of already validated `args` (LaunchSkinnyGemm's checks).
absl::Status LaunchSkinnyGemmTma(const SkinnyGemmArgs& args, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_SKINNY_GEMM_TMA_CUH_
