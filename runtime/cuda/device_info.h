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

/// The kernel families launched through LaunchDependent (pdl.cuh).
enum class PdlKernel { kSkinnyGemm, kRope, kAttentionDecode };

/// Whether launches of `family` through LaunchDependent (pdl.cuh) carry the
/// programmatic-dependent-launch attribute: compute capability 9.0 or newer, and the
/// environment's TESSEL_PDL (read at the first call): unset or "1": all (the measured best,
/// see device_info.cc); "0": none; else a comma-separated list of the families on
/// ("skinny_gemm", "rope", "attention_decode"; for measurements).
bool PdlEnabled(PdlKernel family);

/// Whether kernels of `family` signal their dependents at their start rather than at their
/// exit: the environment's TESSEL_PDL_LATE (read at the first call) lists the families that
/// signal at exit, comma-separated; unset: decode attention only (see device_info.cc: the
/// projections after it must not start under its shared-memory carveout).
bool PdlTriggersEarly(PdlKernel family);

/// The shared-memory carveout (percent of the unified L1/shared storage, 0-100) that launches
/// of `family` through LaunchDependent ask for, or -1 to leave the driver's choice: the
/// environment's TESSEL_CARVEOUT (read at the first call), a comma-separated list of
/// family=percent (for measurements of how the SMs' L1 size interacts with early launch).
int CarveoutPercent(PdlKernel family);

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_
