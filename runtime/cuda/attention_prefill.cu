// Flash-style prefill attention (Dao et al. 2022) on CUDA cores, f32 online softmax.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// A block owns 32 consecutive queries of one (batch, head): 4 warps x 8 query rows. It walks
// the keys its queries can see in tiles of kKeys, staged in shared memory with cp.async
// (rows outside the visible range zero-filled, so unwritten cache rows never reach the math).
// Per tile each lane scores kKeys / 32 keys against the warp's 8 queries (each K element read
// from shared memory once serves 8 queries), updates the running max and sum, writes the
// probabilities to shared memory, then accumulates P V with each lane owning head_dim / 32
// output features. Cost: 2 * visible * head_dim FMAs per (query, head) on the FP32 pipes;
// tensor cores (wgmma) are the next step for long prompts.
#include "runtime/cuda/attention_prefill.cuh"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 8;
constexpr int kQueries = kWarps * kRowsPerWarp;  // per block
constexpr int kThreads = kWarps * 32;

template <int kDim>
struct PrefillShape {
  static constexpr int kKeys = kDim <= 128 ? 64 : 32;
  static constexpr int kKeysPerLane = kKeys / 32;
  static constexpr int kKStride = kDim + 8;  // bf16; 16-byte pad: conflict-free 16B reads
  static constexpr int kWordsPerLane = kDim / 64;  // bf16x2 output words per lane
  static constexpr size_t kQBytes = sizeof(float) * kQueries * kDim;
  static constexpr size_t kKBytes = sizeof(bf16) * kKeys * kKStride;
  static constexpr size_t kVBytes = sizeof(bf16) * kKeys * kDim;
  static constexpr size_t kPBytes = sizeof(float) * kWarps * kRowsPerWarp * kKeys;
  static constexpr size_t kSmem = kQBytes + kKBytes + kVBytes + kPBytes;
};

template <int kDim>
__global__ void __launch_bounds__(kThreads)
    AttentionPrefillKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                           const bf16* __restrict__ v, const int32_t* __restrict__ positions,
                           int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
                           AttentionKernelParams params, bf16* __restrict__ out) {
  using S = PrefillShape<kDim>;
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);
  bf16* k_s = reinterpret_cast<bf16*>(smem + S::kQBytes);
  bf16* v_s = reinterpret_cast<bf16*>(smem + S::kQBytes + S::kKBytes);
  float* p_s = reinterpret_cast<float*>(smem + S::kQBytes + S::kKBytes + S::kVBytes);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Latest query tiles first: under causality they have the most keys.
  const int64_t q_tile = gridDim.x - 1 - blockIdx.x;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t kvh = h / (heads / kv_heads);
  const int64_t s0 = q_tile * kQueries;

  // Visible key range of each of this warp's rows, and of the whole block.
  int row_lo[kRowsPerWarp], row_hi[kRowsPerWarp];
  int block_lo = 0x7fffffff, block_hi = -1;
#pragma unroll
  for (int r = 0; r < kQueries; ++r) {
    int lo = 0, hi = -1;
    if (s0 + r < seq) {
      const int pos = positions[b * seq + s0 + r];
      hi = params.causal ? min(pos, static_cast<int>(kv_len - 1)) : static_cast<int>(kv_len - 1);
      lo = params.sliding_window > 0 ? max(0, pos - static_cast<int>(params.sliding_window) + 1)
                                     : 0;
    }
    if (hi >= lo) {
      block_lo = min(block_lo, lo);
      block_hi = max(block_hi, hi);
    }
    if (r / kRowsPerWarp == warp) {
      row_lo[r % kRowsPerWarp] = lo;
      row_hi[r % kRowsPerWarp] = hi;
    }
  }

  // Queries to shared memory as f32 (rows past seq: zeros, never stored).
  for (int idx = threadIdx.x; idx < kQueries * kDim / 8; idx += kThreads) {
    const int r = idx / (kDim / 8), d = (idx % (kDim / 8)) * 8;
    float vals[8] = {};
    if (s0 + r < seq) {
      Unpack8(*reinterpret_cast<const Bf16x8*>(q + ((b * seq + s0 + r) * heads + h) * kDim + d),
              vals);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) q_s[r * kDim + d + i] = vals[i];
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][2 * S::kWordsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < 2 * S::kWordsPerLane; ++c) o[r][c] = 0.0f;
  }

  const float* q_warp = q_s + warp * kRowsPerWarp * kDim;
  float* p_warp = p_s + warp * kRowsPerWarp * S::kKeys;
  const int64_t row_stride = kv_heads * kDim;
  const bf16* k_base = k + (b * kv_len * kv_heads + kvh) * kDim;
  const bf16* v_base = v + (b * kv_len * kv_heads + kvh) * kDim;

  if (block_hi >= block_lo) {
    const int first_tile = block_lo / S::kKeys, last_tile = block_hi / S::kKeys;
    for (int tile = first_tile; tile <= last_tile; ++tile) {
      const int j0 = tile * S::kKeys;
      __syncthreads();  // the previous tile is consumed (and q_s written, first time)
      for (int idx = threadIdx.x; idx < S::kKeys * kDim / 8; idx += kThreads) {
        const int j = idx / (kDim / 8), d = (idx % (kDim / 8)) * 8;
        const int key = j0 + j;
        const bool valid = key >= block_lo && key <= block_hi;
        const int64_t offset = valid ? key * row_stride + d : 0;
        CpAsync16(k_s + j * S::kKStride + d, k_base + offset, valid);
        CpAsync16(v_s + j * kDim + d, v_base + offset, valid);
      }
      CpAsyncCommit();
      CpAsyncWaitAll();
      __syncthreads();

      // Scores: lane owns keys lane + 32 * kk.
      float s[kRowsPerWarp][S::kKeysPerLane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int kk = 0; kk < S::kKeysPerLane; ++kk) s[r][kk] = 0.0f;
#pragma unroll 2
      for (int d = 0; d < kDim; d += 8) {
        float kv[S::kKeysPerLane][8];
#pragma unroll
        for (int kk = 0; kk < S::kKeysPerLane; ++kk) {
          Unpack8(*reinterpret_cast<const Bf16x8*>(k_s + (lane + 32 * kk) * S::kKStride + d),
                  kv[kk]);
        }
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float4 qa = *reinterpret_cast<const float4*>(q_warp + r * kDim + d);
          const float4 qb = *reinterpret_cast<const float4*>(q_warp + r * kDim + d + 4);
#pragma unroll
          for (int kk = 0; kk < S::kKeysPerLane; ++kk) {
            s[r][kk] += qa.x * kv[kk][0] + qa.y * kv[kk][1] + qa.z * kv[kk][2] +
                        qa.w * kv[kk][3] + qb.x * kv[kk][4] + qb.y * kv[kk][5] +
                        qb.z * kv[kk][6] + qb.w * kv[kk][7];
          }
        }
      }

      // Online softmax per row; l keeps per-lane partial sums (alpha is warp-uniform).
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int kk = 0; kk < S::kKeysPerLane; ++kk) {
          const int key = j0 + lane + 32 * kk;
          const bool visible = key >= row_lo[r] && key <= row_hi[r];
          s[r][kk] = visible ? CapScore(s[r][kk] * params.scale, params.logit_softcap) : -INFINITY;
          tile_max = fmaxf(tile_max, s[r][kk]);
        }
        tile_max = WarpMax(tile_max);
        const float m_new = fmaxf(m[r], tile_max);
        const float alpha = m_new == -INFINITY ? 1.0f : __expf(m[r] - m_new);
        m[r] = m_new;
        float p_sum = 0.0f;
#pragma unroll
        for (int kk = 0; kk < S::kKeysPerLane; ++kk) {
          const float p = m_new == -INFINITY ? 0.0f : __expf(s[r][kk] - m_new);
          p_sum += p;
          p_warp[r * S::kKeys + lane + 32 * kk] = p;
        }
        l[r] = l[r] * alpha + p_sum;
#pragma unroll
        for (int c = 0; c < 2 * S::kWordsPerLane; ++c) o[r][c] *= alpha;
      }
      __syncwarp();

      // o += P V: lane owns bf16x2 words lane + 32 * c of each value row.
#pragma unroll 2
      for (int j = 0; j < S::kKeys; j += 4) {
        float2 vv[4][S::kWordsPerLane];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj)
#pragma unroll
          for (int c = 0; c < S::kWordsPerLane; ++c)
            vv[jj][c] = __bfloat1622float2(reinterpret_cast<const __nv_bfloat162*>(
                v_s + (j + jj) * kDim)[lane + 32 * c]);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float4 p4 = *reinterpret_cast<const float4*>(p_warp + r * S::kKeys + j);
          const float p[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
          for (int jj = 0; jj < 4; ++jj)
#pragma unroll
            for (int c = 0; c < S::kWordsPerLane; ++c) {
              o[r][2 * c] += p[jj] * vv[jj][c].x;
              o[r][2 * c + 1] += p[jj] * vv[jj][c].y;
            }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float total = WarpSum(l[r]);
    const int64_t s_idx = s0 + warp * kRowsPerWarp + r;
    if (s_idx >= seq) continue;
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    __nv_bfloat162* dst =
        reinterpret_cast<__nv_bfloat162*>(out + ((b * seq + s_idx) * heads + h) * kDim);
#pragma unroll
    for (int c = 0; c < S::kWordsPerLane; ++c) {
      dst[lane + 32 * c] = __floats2bfloat162_rn(o[r][2 * c] * inv, o[r][2 * c + 1] * inv);
    }
  }
}

template <int kDim>
absl::Status Launch(const bf16* q, const bf16* k, const bf16* v, const int32_t* positions,
                    int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
                    const AttentionKernelParams& params, bf16* out, cudaStream_t stream) {
  using S = PrefillShape<kDim>;
  static const cudaError_t attribute_error = cudaFuncSetAttribute(
      AttentionPrefillKernel<kDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(S::kSmem));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const dim3 grid(CeilDiv(seq, kQueries), heads, batch);
  AttentionPrefillKernel<kDim><<<grid, kThreads, S::kSmem, stream>>>(
      q, k, v, positions, seq, heads, kv_len, kv_heads, params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionPrefillKernel");
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchAttentionPrefill(const bf16* q, const bf16* k, const bf16* v,
                                    const int32_t* positions, int64_t batch, int64_t seq,
                                    int64_t heads, int64_t kv_len, int64_t kv_heads,
                                    int64_t head_dim, const AttentionKernelParams& params,
                                    bf16* out, cudaStream_t stream) {
  if (batch <= 0 || seq <= 0 || heads <= 0) return absl::OkStatus();
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: heads ", heads, " is not a multiple of kv_heads ", kv_heads));
  }
  if (kv_len <= 0 || kv_len > 0x7fffffff || heads > 65535 || batch > 65535) {
    return absl::InvalidArgumentError("attention: kv_len, heads or batch out of range");
  }
  if (!Aligned16(q) || !Aligned16(k) || !Aligned16(v) || !Aligned16(out)) {
    return absl::InvalidArgumentError("attention: operands must be 16-byte aligned");
  }
  switch (head_dim) {
    case 64:
      return Launch<64>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads, params, out,
                        stream);
    case 128:
      return Launch<128>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads, params, out,
                         stream);
    case 256:
      return Launch<256>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads, params, out,
                         stream);
    default:
      return absl::UnimplementedError(
          absl::StrCat("attention: head_dim ", head_dim, " (supported: 64, 128, 256)"));
  }
}

}  // namespace tessel::cuda
