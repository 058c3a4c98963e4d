// Bringing weights into L2 ahead of the kernel that reads them, from a kernel on a side stream
// (or a parallel branch of a captured graph) while the main chain leaves HBM idle.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_L2_PREFETCH_CUH_
#define TESSEL_RUNTIME_CUDA_L2_PREFETCH_CUH_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

/// True when LaunchL2Prefetch does anything on the current device (compute capability 9.0+:
/// cp.async.bulk.prefetch.L2).
bool L2PrefetchAvailable();

/// Enqueues `blocks` one-warp blocks on `stream` that each issue 1/blocks of `range` as bulk
/// L2 prefetches (fire and forget: a hint, nothing is written). Elsewhere than sm_90+ the
/// kernel does nothing. range.data 16-byte aligned; blocks in [1, 1024].
absl::Status LaunchL2Prefetch(const L2Prefetch& range, int blocks, cudaStream_t stream);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_L2_PREFETCH_CUH_
