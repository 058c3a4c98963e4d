// L2 prefetch of a byte range by the TMA units of a few SMs (cp.async.bulk.prefetch.L2).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Why a kernel of its own on a parallel branch, and not prefetches issued by the kernels that
// leave HBM idle (RoPE, decode attention): issued from those, the step measured slower, as if
// the chain waited for the bytes (H100, Llama-3-8B decode, o_proj's 32 MiB prefetched by the
// blocks of RoPE and attention: 5.52 -> 5.83 ms per step at batch 1, 5.89 -> 6.13 at 16).
#include "runtime/cuda/l2_prefetch.cuh"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"

namespace tessel::cuda {
namespace {

__global__ void __launch_bounds__(32) L2PrefetchKernel(L2Prefetch range) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr uint64_t kChunk = 64 * 1024;  // bytes per prefetch instruction
  if (threadIdx.x != 0) return;
  const uint64_t units = range.bytes / 16, part = blockIdx.x, parts = gridDim.x;
  const uint64_t end = units * (part + 1) / parts * 16;
  const char* base = static_cast<const char*>(range.data);
  for (uint64_t at = units * part / parts * 16; at < end; at += kChunk) {
    const uint32_t size = static_cast<uint32_t>(end - at < kChunk ? end - at : kChunk);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(base + at), "r"(size)
                 : "memory");
  }
#endif
}

}  // namespace

bool L2PrefetchAvailable() { return ComputeCapabilityMajor() >= 9; }

absl::Status LaunchL2Prefetch(const L2Prefetch& range, int blocks, cudaStream_t stream) {
  if (range.bytes < 16) return absl::OkStatus();
  if (!Aligned16(range.data)) {
    return absl::InvalidArgumentError("l2 prefetch: the range must start 16-byte aligned");
  }
  if (blocks < 1 || blocks > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("l2 prefetch: ", blocks, " blocks (1 to 1024)"));
  }
  L2PrefetchKernel<<<blocks, 32, 0, stream>>>(range);
  TESSEL_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace tessel::cuda
