// Programmatic dependent launch (PDL, compute capability 9.0+): a kernel launched with
// LaunchDependent may start while the kernel before it in the stream is still finishing, so
// its prologue (loads of weights, which no kernel writes) overlaps that kernel's tail.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// The contract, for every kernel launched through LaunchDependent:
// - it calls PdlWait() before it reads anything an earlier kernel wrote and before it writes
//   anything (an earlier kernel may still read it); griddepcontrol.wait returns once the
//   previous grid has completed and its memory is visible, and is a no-op when the kernel was
//   launched without the attribute;
// - it may call PdlLaunchDependents() early (every CTA, at its start): the next kernel's CTAs
//   are then scheduled once all of this grid's CTAs have started, into the SMs its tail frees.
// Because each such kernel waits for the whole previous grid, completion stays ordered along
// the stream: a kernel two launches later still sees every earlier kernel's writes.
// Kernels that do not follow the contract are launched with <<<>>> as usual and are full
// barriers.
#ifndef TESSEL_RUNTIME_CUDA_PDL_CUH_
#define TESSEL_RUNTIME_CUDA_PDL_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda/device_info.h"

namespace tessel::cuda {

__device__ __forceinline__ void PdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void PdlLaunchDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/// Launches kernel<<<grid, block, smem, stream>>>(args...) in thread-block clusters of
/// `cluster` CTAs along x (1: no clusters) and with the programmatic stream serialization
/// attribute when PdlEnabled(family); the kernel must follow the contract above.
template <typename... Params, typename... Args>
cudaError_t LaunchDependentClusters(PdlKernel family, void (*kernel)(Params...), dim3 grid,
                                    dim3 block, size_t smem, int cluster, cudaStream_t stream,
                                    Args&&... args) {
  cudaLaunchAttribute attribute[2];
  unsigned attributes = 0;
  if (PdlEnabled(family)) {
    attribute[attributes].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[attributes].val.programmaticStreamSerializationAllowed = 1;
    ++attributes;
  }
  if (cluster > 1) {
    attribute[attributes].id = cudaLaunchAttributeClusterDimension;
    attribute[attributes].val.clusterDim.x = static_cast<unsigned>(cluster);
    attribute[attributes].val.clusterDim.y = 1;
    attribute[attributes].val.clusterDim.z = 1;
    ++attributes;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = attributes;
  if (const int carveout = CarveoutPercent(family); carveout >= 0) {
    const cudaError_t error = cudaFuncSetAttribute(
        kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
    if (error != cudaSuccess) return error;
  }
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

/// LaunchDependentClusters without clusters.
template <typename... Params, typename... Args>
cudaError_t LaunchDependent(PdlKernel family, void (*kernel)(Params...), dim3 grid, dim3 block,
                            size_t smem, cudaStream_t stream, Args&&... args) {
  return LaunchDependentClusters(family, kernel, grid, block, smem, 1, stream,
                                 std::forward<Args>(args)...);
}

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_PDL_CUH_
