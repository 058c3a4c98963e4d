// What the kernels' launchers ask of the current CUDA device.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_
#define TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_

namespace tessel::cuda {

/// Streaming multiprocessors of the device current at the first call (132 when the query
/// fails), cached: launchers size their grids with it.
int MultiprocessorCount();

/// True when the current device is compute capability 9.0 (where the sm_90a code runs).
bool DeviceIsSm90();

/// Whether launches through LaunchDependent (pdl.cuh) carry the programmatic-dependent-launch
/// attribute: compute capability 9.0 or newer and the environment's TESSEL_PDL is not "0"
/// (read at the first call).
bool PdlEnabled();

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_
