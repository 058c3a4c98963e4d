// RoPE (Su et al. 2021, RoFormer) on the GPU; the scaling variants of transformers'
// modeling_rope_utils live in the host-computed inverse-frequency table (shared with the CPU
// kernel, runtime/cpu/kernels.cc), so this file holds only the rotation.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// One block per (token, group of kHeadsPerBlock heads): the rotary_dim / 2 (cos, sin) pairs
// are computed into shared memory, then the block's heads of q (and k) are rotated from them;
// with the cache write fused, k and v go straight to their cache rows. Memory bound: each
// element read once and written once; spreading heads over blocks keeps a one-token decode
// step from running on a single SM.
#include "runtime/cuda/rope.cuh"

#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/pdl.cuh"
#include "runtime/cuda/rope_math.cuh"

namespace tessel::cuda {
namespace {

constexpr int kThreads = 128;
// Heads one block rotates (or copies): a token's q, k and v heads are spread over
// ceil(heads / kHeadsPerBlock) blocks so that a decode step of one token still fills SMs.
constexpr int kHeadsPerBlock = 4;

// Rotates `heads` heads of src into dst (which may equal src); copies the features past
// rotary_dim when dst != src.
__device__ __forceinline__ void RotateHeads(const bf16* src, bf16* dst, int heads, int head_dim,
                                            int rotary_dim, bool interleaved,
                                            const float* cos_table, const float* sin_table) {
  const int half = rotary_dim / 2;
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx - h * half;
    int a, b;
    RopePairFeatures(i, half, interleaved, a, b);
    a += h * head_dim;
    b += h * head_dim;
    const float xa = __bfloat162float(src[a]), xb = __bfloat162float(src[b]);
    RopeRotatePair(xa, xb, RopeCosSin{cos_table[i], sin_table[i]}, dst[a], dst[b]);
  }
  if (dst != src) {
    const int pass = head_dim - rotary_dim;
    for (int idx = threadIdx.x; idx < heads * pass; idx += blockDim.x) {
      const int h = idx / pass, i = rotary_dim + (idx - h * pass);
      dst[h * head_dim + i] = src[h * head_dim + i];
    }
  }
}

// Token t = blockIdx.x of [batch * seq]; blockIdx.y picks kHeadsPerBlock heads of the list
// q heads, then (kCache) k heads, then v heads. q: rotated from q_in into q_out. With kCache,
// k is rotated into k_cache and v copied into v_cache at row positions[t] of batch t / seq.
template <bool kCache>
__global__ void __launch_bounds__(kThreads)
    RopeKernel(const bf16* q_in, bf16* q_out, const bf16* __restrict__ k,
               const bf16* __restrict__ v, const int32_t* __restrict__ positions, int64_t seq,
               int q_heads, int kv_heads, int head_dim, const float* inv_freq, int rotary_dim,
               bool interleaved, float attention_factor, bf16* k_cache, bf16* v_cache,
               int64_t capacity, int32_t* bad_position) {
  extern __shared__ float tables[];  // cos then sin, rotary_dim / 2 each
  PdlLaunchDependents();
  PdlWait();  // everything read here (q, k, v, positions, inverse frequencies) is computed
  const int half = rotary_dim / 2;
  float* cos_table = tables;
  float* sin_table = tables + half;
  const int64_t t = blockIdx.x;
  const int32_t position = positions[t];
  const int first = blockIdx.y * kHeadsPerBlock;
  const int total = q_heads + (kCache ? 2 * kv_heads : 0);
  const int last = min(first + kHeadsPerBlock, total);
  const int rotated_end = q_heads + (kCache ? kv_heads : 0);  // heads past it are copies
  if (first < rotated_end) {
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const RopeCosSin cs = RopeAngle(position, inv_freq[i], attention_factor);
      cos_table[i] = cs.c;
      sin_table[i] = cs.s;
    }
    __syncthreads();
  }
  if (first < q_heads) {
    const int64_t q_row = static_cast<int64_t>(q_heads) * head_dim;
    const int64_t offset = t * q_row + static_cast<int64_t>(first) * head_dim;
    RotateHeads(q_in + offset, q_out + offset, min(last, q_heads) - first, head_dim, rotary_dim,
                interleaved, cos_table, sin_table);
  }
  if constexpr (kCache) {
    if (last <= q_heads) return;
    if (position < 0 || position >= capacity) {
      if (threadIdx.x == 0 && bad_position != nullptr) {
        atomicCAS(bad_position, -1, static_cast<int32_t>(t));
      }
      return;
    }
    const int64_t kv_row = static_cast<int64_t>(kv_heads) * head_dim;
    const int64_t b = t / seq;
    const int64_t cache_row = (b * capacity + position) * kv_row;
    const int k_first = max(first, q_heads), k_last = min(last, rotated_end);
    if (k_first < k_last) {
      const int64_t offset = static_cast<int64_t>(k_first - q_heads) * head_dim;
      RotateHeads(k + t * kv_row + offset, k_cache + cache_row + offset, k_last - k_first,
                  head_dim, rotary_dim, interleaved, cos_table, sin_table);
    }
    const int v_first = max(first, rotated_end);
    if (v_first < last) {
      const int64_t offset = static_cast<int64_t>(v_first - rotated_end) * head_dim;
      const int count = (last - v_first) * head_dim;
      const bf16* v_src = v + t * kv_row + offset;
      bf16* v_dst = v_cache + cache_row + offset;
      if (head_dim % 8 == 0) {
        for (int i = threadIdx.x * 8; i < count; i += blockDim.x * 8) {
          *reinterpret_cast<Bf16x8*>(v_dst + i) = *reinterpret_cast<const Bf16x8*>(v_src + i);
        }
      } else {
        for (int i = threadIdx.x; i < count; i += blockDim.x) v_dst[i] = v_src[i];
      }
    }
  }
}

}  // namespace

absl::Status CheckRopeKernelParams(int64_t head_dim, const RopeKernelParams& params) {
  if (params.rotary_dim <= 0 || params.rotary_dim % 2 != 0 || params.rotary_dim > head_dim ||
      params.rotary_dim > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("rope: rotary_dim ", params.rotary_dim,
                                                   " must be even and in (0, head_dim ",
                                                   head_dim, "]"));
  }
  return absl::OkStatus();
}

RopeKernelParams MakeRopeKernelParams(const cpu::RopeParams& params) {
  RopeKernelParams out;
  out.rotary_dim = params.rotary_dim;
  out.interleaved = params.interleaved;
  const bool has_attention_factor =
      params.scaling == cpu::RopeScalingKind::kYarn && params.attention_factor != 0.0;
  out.attention_factor = has_attention_factor ? static_cast<float>(params.attention_factor) : 1.0f;
  return out;
}

absl::Status UploadRopeInverseFrequencies(const cpu::RopeParams& params, int64_t seq_len,
                                          float* device_table) {
  const std::vector<float> table = cpu::RopeInverseFrequencies(params, seq_len);
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpy(device_table, table.data(), table.size() * sizeof(float),
                                         cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status LaunchRope(const bf16* x, const int32_t* positions, int64_t tokens, int64_t heads,
                        int64_t head_dim, const float* inv_freq, const RopeKernelParams& params,
                        bf16* out, cudaStream_t stream) {
  if (tokens <= 0) return absl::OkStatus();
  if (absl::Status status = CheckRopeKernelParams(head_dim, params); !status.ok()) return status;
  const size_t smem = params.rotary_dim * sizeof(float);
  const dim3 grid(static_cast<unsigned>(tokens),
                  static_cast<unsigned>(CeilDiv(heads, kHeadsPerBlock)));
  TESSEL_CUDA_RETURN_IF_ERROR(LaunchDependent(
      PdlKernel::kRope, RopeKernel<false>, grid, kThreads, smem, stream, x, out, nullptr, nullptr, positions,
      int64_t{1}, static_cast<int>(heads), 0, static_cast<int>(head_dim), inv_freq,
      params.rotary_dim, params.interleaved, params.attention_factor, nullptr, nullptr,
      int64_t{0}, nullptr));
  return absl::OkStatus();
}

absl::Status LaunchRopeAndCacheWrite(const bf16* q, bf16* q_out, const bf16* k, const bf16* v,
                                     const int32_t* positions, int64_t batch, int64_t seq,
                                     int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                     const float* inv_freq, const RopeKernelParams& params,
                                     bf16* k_cache, bf16* v_cache, int64_t capacity,
                                     int32_t* bad_position, cudaStream_t stream) {
  if (batch * seq <= 0) return absl::OkStatus();
  if (absl::Status status = CheckRopeKernelParams(head_dim, params); !status.ok()) return status;
  if (head_dim % 8 == 0 &&
      (!Aligned16(v) || !Aligned16(v_cache))) {
    return absl::InvalidArgumentError("rope: v and v_cache must be 16-byte aligned");
  }
  const size_t smem = params.rotary_dim * sizeof(float);
  const dim3 grid(static_cast<unsigned>(batch * seq),
                  static_cast<unsigned>(CeilDiv(q_heads + 2 * kv_heads, kHeadsPerBlock)));
  TESSEL_CUDA_RETURN_IF_ERROR(LaunchDependent(
      PdlKernel::kRope, RopeKernel<true>, grid, kThreads, smem, stream, q, q_out, k, v, positions, seq,
      static_cast<int>(q_heads), static_cast<int>(kv_heads), static_cast<int>(head_dim),
      inv_freq, params.rotary_dim, params.interleaved, params.attention_factor, k_cache,
      v_cache, capacity, bad_position));
  return absl::OkStatus();
}

}  // namespace tessel::cuda
