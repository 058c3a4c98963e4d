// What the kernels' launchers ask of the current CUDA device.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/device_info.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <iterator>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tessel::cuda {

int MultiprocessorCount() {
  static const int count = [] {
    int device = 0, sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    return sms;
  }();
  return count;
}

bool DeviceIsSm90() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    return false;
  }
  return major == 9 && minor == 0;
}

bool PdlEnabled(PdlKernel family) {
  static const unsigned enabled = []() -> unsigned {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    if (major < 9) return 0;
    // Default: RoPE and decode attention only. With the skinny GEMM launched early too, a
    // Llama-3-8B decode step measured 6.70-6.76 ms instead of 5.83-5.86 at batch 1 and
    // 8.8-8.9 instead of 6.52-6.55 at batch 16 (H100, bench/gpu_decode_sweep.sh; cause not
    // found: its CTAs then wait on SMs while the attention kernel runs); RoPE + attention
    // alone: 5.81 ms.
    const char* env = std::getenv("TESSEL_PDL");
    if (env == nullptr) return (1u << static_cast<unsigned>(PdlKernel::kRope)) |
                               (1u << static_cast<unsigned>(PdlKernel::kAttentionDecode));
    if (std::strcmp(env, "1") == 0) return ~0u;
    constexpr absl::string_view kNames[] = {"skinny_gemm", "rope", "attention_decode"};
    unsigned mask = 0;
    for (absl::string_view name : absl::StrSplit(env, ',')) {
      for (unsigned i = 0; i < std::size(kNames); ++i) {
        if (name == kNames[i]) mask |= 1u << i;
      }
    }
    return mask;
  }();
  return (enabled >> static_cast<unsigned>(family)) & 1u;
}

}  // namespace tessel::cuda
