// What the kernels' launchers ask of the current CUDA device.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_
#define TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_

namespace tessel::cuda {

/// Streaming multiprocessors of the device current at the first call (132 when the query
/// fails), cached: launchers size their grids with it.
int MultiprocessorCount();

/// The compute capability major of the device current at the first call (0 when the query
/// fails), cached.
int ComputeCapabilityMajor();

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

/// True when TESSEL_PDL_LATE is unset, i.e. PdlTriggersEarly gives the built-in defaults and
/// a launcher may refine them (decode attention signals early before the TMA projection).
bool PdlLateIsDefault();

/// The shared-memory carveout (percent of the unified L1/shared storage, 0-100) that launches
/// of `family` through LaunchDependent ask for, or -1 to leave the driver's choice: the
/// environment's TESSEL_CARVEOUT (read at the first call), a comma-separated list of
/// family=percent (for measurements of how the SMs' L1 size interacts with early launch).
int CarveoutPercent(PdlKernel family);

/// Whether decode attention takes RoPE and the KV-cache writes before it into its own launch
/// (AttentionDecodeRope, attention_decode.cuh) when the plan allows: the environment's
/// TESSEL_FUSE_ROPE_ATTENTION (read at the first call), "0" for off (measurements); on by
/// default.
bool FuseRopeIntoAttention();

/// Whether a decode step brings the weights of the projection after attention (o_proj) into
/// L2 from a parallel branch while RoPE and attention leave HBM idle (l2_prefetch.cuh, the
/// CUDA executor): the environment's TESSEL_L2_PREFETCH (read at the first call), "0" for
/// off (measurements); on by default where L2PrefetchAvailable().
bool L2PrefetchEnabled();

/// Blocks of that prefetch kernel (each issues its share from one SM's TMA unit): the
/// environment's TESSEL_L2_PREFETCH_BLOCKS, default 32.
int L2PrefetchBlocks();

/// The most bytes of one such prefetch (the first bytes of the weights): the environment's
/// TESSEL_L2_PREFETCH_MIB, else 16 MiB or a third of the device's L2 cache if less (0 when
/// the query fails). H100 (50 MB of L2), batch 1: 16 MiB measured ahead of all 32 MiB of
/// Llama-3-8B's o_proj (5.47 vs 5.51 ms per step).
unsigned long long L2PrefetchLimitBytes();

/// The most tokens of a decode step that prefetches: the environment's
/// TESSEL_L2_PREFETCH_MAX_TOKENS (measurements), default 8.
int L2PrefetchMaxTokens();

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_DEVICE_INFO_H_
