// Version and identity of the plan format (runtime/schema/plan.fbs).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_PLAN_FORMAT_H_
#define TESSEL_RUNTIME_PLAN_FORMAT_H_

#include <cstdint>

namespace tessel::plan_format {

/// Major: bumped when an older runtime could misread a newer plan. Minor: fields added.
inline constexpr uint32_t kMajor = 1;
inline constexpr uint32_t kMinor = 1;
/// The FlatBuffers file identifier (bytes 4..8 of plan.tsl).
inline constexpr char kIdentifier[] = "TSLP";
/// Weight tensors start at multiples of this in weights.rank<N>.bin.
inline constexpr uint64_t kWeightAlignment = 256;
/// Arena offsets (bytes per token) are multiples of this.
inline constexpr uint64_t kArenaAlignment = 64;
/// Symbolic dimensions in plan shapes.
inline constexpr int64_t kBatch = -1;
inline constexpr int64_t kSeq = -2;

/// FNV-1a 64 over `size` bytes: the weight manifest's checksum.
inline uint64_t Fnv1a64(const uint8_t* data, uint64_t size, uint64_t hash = 0xcbf29ce484222325ull) {
  for (uint64_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

}  // namespace tessel::plan_format

#endif  // TESSEL_RUNTIME_PLAN_FORMAT_H_
