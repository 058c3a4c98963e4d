// What the kernels' launchers ask of the current CUDA device.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/device_info.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/numbers.h"
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

int ComputeCapabilityMajor() {
  static const int major = [] {
    int device = 0, value = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, device) !=
            cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return value;
  }();
  return major;
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

namespace {

// The environment's names of the PdlKernel families, in enum order.
constexpr absl::string_view kFamilyNames[] = {"skinny_gemm", "rope", "attention_decode"};

// Bit i set for each name in the comma-separated `list` that is kFamilyNames[i].
unsigned FamilyMask(absl::string_view list) {
  unsigned mask = 0;
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    for (unsigned i = 0; i < std::size(kFamilyNames); ++i) {
      if (name == kFamilyNames[i]) mask |= 1u << i;
    }
  }
  return mask;
}

}  // namespace

bool PdlEnabled(PdlKernel family) {
  static const unsigned enabled = []() -> unsigned {
    if (ComputeCapabilityMajor() < 9) return 0;
    // Default: every family. The skinny GEMM under PDL once measured 0.9 ms (batch 1) and
    // 2.3 ms (batch 16) slower per Llama-3-8B step: its CTAs, launched early into SMs still
    // running decode attention, ran under attention's shared-memory carveout (212 KiB of
    // shared memory, 28 KiB of L1), and with the SMs never idle between chained kernels the
    // small L1 stayed for the rest of the step; the projections re-read x through L1. Forcing
    // that carveout on the skinny GEMM alone (TESSEL_CARVEOUT=skinny_gemm=100) reproduces it:
    // 7.59 / 9.14 ms instead of 5.78 / 6.30. Now decode attention signals its dependents at
    // its exit (PdlTriggersEarly), so o_proj starts on idle SMs and sets its own carveout:
    // 5.65 / 6.12 ms, against 5.77 / 6.30 with PDL on RoPE and attention only (H100,
    // bench/gpu_decode_sweep.sh, 2026-11-24).
    const char* env = std::getenv("TESSEL_PDL");
    if (env == nullptr) return ~0u;
    if (std::strcmp(env, "1") == 0) return ~0u;
    return FamilyMask(env);
  }();
  return (enabled >> static_cast<unsigned>(family)) & 1u;
}

bool PdlTriggersEarly(PdlKernel family) {
  static const unsigned late = []() -> unsigned {
    const char* env = std::getenv("TESSEL_PDL_LATE");
    // Default: decode attention signals at its exit (see PdlEnabled); "" = every family early.
    if (env == nullptr) return 1u << static_cast<unsigned>(PdlKernel::kAttentionDecode);
    return FamilyMask(env);
  }();
  return ((late >> static_cast<unsigned>(family)) & 1u) == 0;
}

bool PdlLateIsDefault() {
  static const bool unset = std::getenv("TESSEL_PDL_LATE") == nullptr;
  return unset;
}

int CarveoutPercent(PdlKernel family) {
  static const std::array<int, std::size(kFamilyNames)> percent = []() {
    std::array<int, std::size(kFamilyNames)> result = {-1, -1, -1};
    const char* env = std::getenv("TESSEL_CARVEOUT");
    if (env == nullptr) return result;
    for (absl::string_view item : absl::StrSplit(env, ',', absl::SkipEmpty())) {
      const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
      int value = -1;
      if (!absl::SimpleAtoi(kv.second, &value) || value < 0 || value > 100) continue;
      for (unsigned i = 0; i < std::size(kFamilyNames); ++i) {
        if (kv.first == kFamilyNames[i]) result[i] = value;
      }
    }
    return result;
  }();
  return percent[static_cast<unsigned>(family)];
}

bool FuseRopeIntoAttention() {
  static const bool enabled = [] {
    const char* env = std::getenv("TESSEL_FUSE_ROPE_ATTENTION");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

bool L2PrefetchEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("TESSEL_L2_PREFETCH");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

int L2PrefetchBlocks() {
  static const int blocks = [] {
    int value = 0;
    const char* env = std::getenv("TESSEL_L2_PREFETCH_BLOCKS");
    if (env != nullptr && absl::SimpleAtoi(env, &value) && value >= 1 && value <= 1024) {
      return value;
    }
    return 32;
  }();
  return blocks;
}

int L2PrefetchMaxTokens() {
  static const int tokens = [] {
    int value = 0;
    const char* env = std::getenv("TESSEL_L2_PREFETCH_MAX_TOKENS");
    if (env != nullptr && absl::SimpleAtoi(env, &value) && value >= 0) return value;
    if (env != nullptr) {
      std::fprintf(stderr, "TESSEL_L2_PREFETCH_MAX_TOKENS=%s: not a token count; 8 used\n", env);
    }
    return 8;
  }();
  return tokens;
}

unsigned long long L2PrefetchLimitBytes() {
  static const unsigned long long limit = []() -> unsigned long long {
    if (const char* env = std::getenv("TESSEL_L2_PREFETCH_MIB"); env != nullptr) {
      unsigned long long mib = 0;
      if (absl::SimpleAtoi(env, &mib)) return mib << 20;
    }
    int device = 0, l2 = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return std::min<unsigned long long>(16ull << 20, static_cast<unsigned long long>(l2) / 3);
  }();
  return limit;
}

}  // namespace tessel::cuda
