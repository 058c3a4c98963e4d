// Argmax and top-k / top-p sampling (Holtzman et al. 2019) on the GPU, one block per row.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// No sort: each element gets a 64-bit key (order-preserving logit bits, then the inverted id,
// so keys are distinct and order as the CPU sampler's "logit desc, id asc") and a weight
// (1 for top-k counting, its fixed-point probability for top-p). A most-significant-digit
// radix select over 8-bit digits finds the threshold key whose upper set reaches the target
// weight: at most 8 passes over the row, each a shared-memory histogram with integer atomics
// (deterministic). The draw walks the kept set in id order: per-thread contiguous chunks,
// a prefix over the chunk sums, then one chunk scanned. Cost: O(passes * vocab) reads of the
// (L2-resident) row.
#include "runtime/cuda/sampling.cuh"

#include <curand_kernel.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ float Sanitize(float x) { return isnan(x) ? -INFINITY : x; }

__device__ __forceinline__ uint64_t Key(float logit, int64_t id) {
  const uint32_t bits = __float_as_uint(Sanitize(logit));
  const uint32_t ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(ordered) << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}

// Block-wide argmax of a row: every thread gets (best id); ties: lowest id.
__device__ int64_t BlockArgmax(const float* row, int64_t vocab, float* best_value) {
  __shared__ float values[32];
  __shared__ int64_t ids[32];
  float best = -INFINITY;
  int64_t best_id = vocab;  // sentinel loses every tie
  const auto consider = [&](float value, int64_t i) {
    const float x = Sanitize(value);
    if (x > best || (x == best && i < best_id)) {
      best = x;
      best_id = i;
    }
  };
  // 16-byte loads, four per thread in flight: a scalar loop waits out one load latency per
  // element and took ~65 us for a 128256-entry row (one block); this is a few us.
  int64_t scalar_begin = 0;
  if (Aligned16(row)) {
    constexpr int kUnroll = 4;
    const float4* row4 = reinterpret_cast<const float4*>(row);
    const int64_t n4 = vocab / 4, step = blockDim.x;
    int64_t j = threadIdx.x;
    for (; j + (kUnroll - 1) * step < n4; j += kUnroll * step) {
      float4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = row4[j + u * step];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t i = 4 * (j + u * step);
        consider(v[u].x, i);
        consider(v[u].y, i + 1);
        consider(v[u].z, i + 2);
        consider(v[u].w, i + 3);
      }
    }
    for (; j < n4; j += step) {
      const float4 v = row4[j];
      consider(v.x, 4 * j);
      consider(v.y, 4 * j + 1);
      consider(v.z, 4 * j + 2);
      consider(v.w, 4 * j + 3);
    }
    scalar_begin = 4 * n4;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < vocab; i += blockDim.x) consider(row[i], i);
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t other_id = __shfl_xor_sync(0xffffffffu, best_id, o);
    if (other > best || (other == best && other_id < best_id)) {
      best = other;
      best_id = other_id;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    values[warp] = best;
    ids[warp] = best_id;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? values[lane] : -INFINITY;
    best_id = lane < warps ? ids[lane] : vocab;
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t other_id = __shfl_xor_sync(0xffffffffu, best_id, o);
      if (other > best || (other == best && other_id < best_id)) {
        best = other;
        best_id = other_id;
      }
    }
    if (lane == 0) {
      values[0] = best;
      ids[0] = best_id >= vocab ? 0 : best_id;  // all -inf / NaN: id 0
    }
  }
  __syncthreads();
  const int64_t result = ids[0];
  *best_value = values[0];
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* __restrict__ logits, int64_t vocab, int32_t* __restrict__ out) {
  float best;
  const int64_t id = BlockArgmax(logits + blockIdx.x * vocab, vocab, &best);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(id);
}

// Fixed-point (32.32) probability of a logit.
__device__ __forceinline__ uint64_t Weight(float logit, float max_logit, float inv_temperature) {
  const float p = expf((Sanitize(logit) - max_logit) * inv_temperature);
  return static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
}

// The largest key T such that the elements with key >= max(T, floor) weigh at least `target`
// (weights: 1 when !by_mass, else the fixed-point probability). Block-wide.
__device__ uint64_t RadixSelect(const float* row, int64_t vocab, float max_logit,
                                float inv_temperature, uint64_t floor, bool by_mass,
                                uint64_t target, unsigned long long* hist) {
  __shared__ uint64_t prefix_s, remaining_s;
  __shared__ bool done_s;
  if (threadIdx.x == 0) {
    prefix_s = 0;
    remaining_s = target;
    done_s = false;
  }
  __syncthreads();
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    const uint64_t prefix = prefix_s;
    const uint64_t high_mask = shift == 56 ? 0 : ~((uint64_t{1} << (shift + 8)) - 1);
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float logit = row[i];
      const uint64_t key = Key(logit, i);
      if (key < floor || (key & high_mask) != (prefix & high_mask)) continue;
      const uint64_t w = by_mass ? Weight(logit, max_logit, inv_temperature) : 1;
      if (w != 0) atomicAdd(&hist[(key >> shift) & 255], static_cast<unsigned long long>(w));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t cumulative = 0, remaining = remaining_s;
      int digit = -1;
      for (int d = 255; d >= 0; --d) {
        if (cumulative + hist[d] >= remaining) {
          digit = d;
          break;
        }
        cumulative += hist[d];
      }
      if (digit < 0) {  // the whole candidate set is lighter than the target: keep it all
        prefix_s = shift == 56 ? floor : prefix;
        done_s = true;
      } else {
        prefix_s = prefix | (static_cast<uint64_t>(digit) << shift);
        remaining_s = remaining - cumulative;
        if (remaining_s == hist[digit]) done_s = true;  // the whole bucket is needed
      }
    }
    __syncthreads();
    if (done_s) break;
  }
  const uint64_t result = prefix_s > floor ? prefix_s : floor;
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* __restrict__ logits, int64_t vocab, SamplingKernelParams params,
                 int32_t* __restrict__ out) {
  __shared__ unsigned long long hist[256];
  __shared__ unsigned long long chunk_sums[kThreads];
  __shared__ int chosen_thread_s;
  __shared__ unsigned long long chosen_target_s;
  const float* row = logits + blockIdx.x * vocab;
  float max_logit;
  const int64_t best = BlockArgmax(row, vocab, &max_logit);
  const bool greedy = params.temperature <= 0.0f || params.top_k == 1 || max_logit == -INFINITY;
  if (greedy) {
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(best);
    return;
  }
  const float inv_temperature = 1.0f / params.temperature;

  uint64_t floor = 0;
  if (params.top_k > 0 && params.top_k < vocab) {
    floor = RadixSelect(row, vocab, max_logit, inv_temperature, 0, false,
                        static_cast<uint64_t>(params.top_k), hist);
  }
  const int64_t per_thread = (vocab + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * per_thread;
  const int64_t end = min(vocab, begin + per_thread);
  auto kept_mass = [&](uint64_t threshold) {
    unsigned long long sum = 0;
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t key = Key(row[i], i);
      if (key >= threshold) sum += Weight(row[i], max_logit, inv_temperature);
    }
    return sum;
  };
  if (params.top_p > 0.0f && params.top_p < 1.0f) {
    chunk_sums[threadIdx.x] = kept_mass(floor);
    __syncthreads();
    __shared__ unsigned long long total_s;
    if (threadIdx.x == 0) {
      unsigned long long total = 0;
      for (int t = 0; t < kThreads; ++t) total += chunk_sums[t];
      total_s = total;
    }
    __syncthreads();
    uint64_t target = static_cast<uint64_t>(ceil(static_cast<double>(params.top_p) *
                                                 static_cast<double>(total_s)));
    if (target == 0) target = 1;
    floor = RadixSelect(row, vocab, max_logit, inv_temperature, floor, true, target, hist);
  }

  // Draw in id order over the kept set {key >= floor}.
  chunk_sums[threadIdx.x] = kept_mass(floor);
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long total = 0;
    for (int t = 0; t < kThreads; ++t) total += chunk_sums[t];
    curandStatePhilox4_32_10_t state;
    curand_init(params.seed, blockIdx.x, params.offset, &state);
    const double u = 1.0 - curand_uniform_double(&state);  // [0, 1)
    unsigned long long target = static_cast<unsigned long long>(u * static_cast<double>(total));
    if (target >= total) target = total - 1;
    int chosen = kThreads - 1;
    for (int t = 0; t < kThreads; ++t) {
      if (target < chunk_sums[t]) {
        chosen = t;
        break;
      }
      target -= chunk_sums[t];
    }
    chosen_thread_s = chosen;
    chosen_target_s = target;
  }
  __syncthreads();
  if (threadIdx.x == chosen_thread_s) {
    unsigned long long target = chosen_target_s;
    int64_t pick = -1;
    for (int64_t i = begin; i < end; ++i) {
      if (Key(row[i], i) < floor) continue;
      const uint64_t w = Weight(row[i], max_logit, inv_temperature);
      pick = i;
      if (target < w) break;
      target -= w;
    }
    out[blockIdx.x] = static_cast<int32_t>(pick >= 0 ? pick : best);
  }
}

absl::Status CheckShape(int64_t rows, int64_t vocab) {
  if (vocab <= 0 || vocab > 0x7fffffff || rows > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: rows ", rows, " x vocab ", vocab, " out of range"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                          cudaStream_t stream) {
  if (rows <= 0) return absl::OkStatus();
  if (absl::Status status = CheckShape(rows, vocab); !status.ok()) return status;
  ArgmaxKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("ArgmaxKernel");
  return absl::OkStatus();
}

absl::Status LaunchSample(const float* logits, int64_t rows, int64_t vocab,
                          const SamplingKernelParams& params, int32_t* out,
                          cudaStream_t stream) {
  if (rows <= 0) return absl::OkStatus();
  if (absl::Status status = CheckShape(rows, vocab); !status.ok()) return status;
  if (std::isnan(params.temperature) || std::isnan(params.top_p) || params.top_k < 0 ||
      params.top_p < 0.0f) {
    return absl::InvalidArgumentError("sampling: expected temperature >= 0, top_k >= 0, "
                                      "top_p in [0, 1]");
  }
  SampleKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("SampleKernel");
  return absl::OkStatus();
}

}  // namespace tessel::cuda
