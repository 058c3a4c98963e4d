// Flash-decoding (Dao et al. 2023): one query per sequence, the context split into chunks
// processed by separate blocks, then a second pass merging the chunks' partial softmaxes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Pass 1, block (split, kv head x head group, batch): the (up to 8) query heads sharing one KV
// head read each K/V row once. Each of the 4 warps takes 32-key tiles of the chunk in turn,
// staged in its own shared memory with cp.async; lane j scores key j against every head of
// the group, the running max / sum / output are updated per head (f32), and the warps' states
// are merged through shared memory. With one split the block writes the output; else it
// writes (unnormalized output, max, sum) and pass 2 combines the splits:
// O = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s. Memory bound: every visible K and V
// row is read once, 2 * visible * kv_heads * head_dim * 2 bytes per sequence.
#include "runtime/cuda/attention_decode.cuh"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"

namespace tessel::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxGroup = 8;  // query heads per block
constexpr int kTile = 32;     // keys per warp tile

template <int kDim>
struct DecodeShape {
  static constexpr int kKStride = kDim + 8;
  static constexpr int kWordsPerLane = kDim / 64;
  static constexpr size_t kQBytes = sizeof(float) * kMaxGroup * kDim;
  static constexpr size_t kKBytes = sizeof(bf16) * kTile * kKStride;  // per warp
  static constexpr size_t kVBytes = sizeof(bf16) * kTile * kDim;      // per warp
  static constexpr size_t kPBytes = sizeof(float) * kMaxGroup * kTile;  // per warp
  static constexpr size_t kWarpBytes = kKBytes + kVBytes + kPBytes;
  static constexpr size_t kSmem = kQBytes + kWarps * kWarpBytes;
  static_assert(sizeof(float) * kWarps * kMaxGroup * kDim <= kWarps * kWarpBytes);
};

template <int kDim>
__global__ void __launch_bounds__(kThreads)
    AttentionDecodeKernel(const bf16* __restrict__ q, const bf16* __restrict__ k_cache,
                          const bf16* __restrict__ v_cache, const int32_t* __restrict__ positions,
                          int64_t heads, int64_t capacity, int64_t kv_heads, int group,
                          int head_groups, AttentionKernelParams params, int chunk, int splits,
                          bf16* __restrict__ out, float* __restrict__ part_o,
                          float* __restrict__ part_ml) {
  using S = DecodeShape<kDim>;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float m_s[kWarps][kMaxGroup], l_s[kWarps][kMaxGroup];
  float* q_s = reinterpret_cast<float*>(smem);
  unsigned char* warp_smem = smem + S::kQBytes + threadIdx.x / 32 * S::kWarpBytes;
  bf16* k_s = reinterpret_cast<bf16*>(warp_smem);
  bf16* v_s = reinterpret_cast<bf16*>(warp_smem + S::kKBytes);
  float* p_s = reinterpret_cast<float*>(warp_smem + S::kKBytes + S::kVBytes);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / head_groups, hg = blockIdx.y % head_groups;
  const int64_t b = blockIdx.z;
  const int g_count = min(kMaxGroup, group - hg * kMaxGroup);
  const int64_t h0 = static_cast<int64_t>(kvh) * group + hg * kMaxGroup;

  const int pos = positions[b];
  const int hi = params.causal ? min(pos, static_cast<int>(capacity - 1))
                               : static_cast<int>(capacity - 1);
  const int lo = params.sliding_window > 0
                     ? max(0, pos - static_cast<int>(params.sliding_window) + 1)
                     : 0;
  // The splits share the keys actually visible at this step (planned `chunk` is for the
  // whole capacity): at short contexts every split gets a few tiles instead of split 0 all.
  const int visible = hi - lo + 1;
  const int per_split = max(kTile, (visible + splits - 1) / splits);
  const int span = min(chunk, (per_split + kTile - 1) / kTile * kTile);
  const int c0 = lo + split * span;
  const int c1 = split == splits - 1 ? hi : min(hi, c0 + span - 1);

  for (int idx = threadIdx.x; idx < kMaxGroup * kDim; idx += kThreads) {
    const int g = idx / kDim, d = idx % kDim;
    q_s[idx] = g < g_count ? __bfloat162float(q[(b * heads + h0 + g) * kDim + d]) : 0.0f;
  }
  __syncthreads();

  float m[kMaxGroup], l[kMaxGroup], o[kMaxGroup][2 * S::kWordsPerLane];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int c = 0; c < 2 * S::kWordsPerLane; ++c) o[g][c] = 0.0f;
  }

  const int64_t row_stride = kv_heads * kDim;
  const bf16* k_base = k_cache + (b * capacity * kv_heads + kvh) * kDim;
  const bf16* v_base = v_cache + (b * capacity * kv_heads + kvh) * kDim;

  for (int t0 = c0 + warp * kTile; t0 <= c1; t0 += kWarps * kTile) {
    for (int idx = lane; idx < kTile * kDim / 8; idx += 32) {
      const int j = idx / (kDim / 8), d = (idx % (kDim / 8)) * 8;
      const bool valid = t0 + j <= c1;
      const int64_t offset = valid ? (t0 + j) * row_stride + d : 0;
      CpAsync16(k_s + j * S::kKStride + d, k_base + offset, valid);
      CpAsync16(v_s + j * kDim + d, v_base + offset, valid);
    }
    CpAsyncCommit();
    CpAsyncWaitAll();
    __syncwarp();

    float s[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) s[g] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < kDim; d += 8) {
      float kv[8];
      Unpack8(*reinterpret_cast<const Bf16x8*>(k_s + lane * S::kKStride + d), kv);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < g_count) {
          const float4 qa = *reinterpret_cast<const float4*>(q_s + g * kDim + d);
          const float4 qb = *reinterpret_cast<const float4*>(q_s + g * kDim + d + 4);
          s[g] += qa.x * kv[0] + qa.y * kv[1] + qa.z * kv[2] + qa.w * kv[3] + qb.x * kv[4] +
                  qb.y * kv[5] + qb.z * kv[6] + qb.w * kv[7];
        }
      }
    }
    const bool visible = t0 + lane <= c1;
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      const float score =
          visible ? CapScore(s[g] * params.scale, params.logit_softcap) : -INFINITY;
      const float m_new = fmaxf(m[g], WarpMax(score));
      const float alpha = m_new == -INFINITY ? 1.0f : __expf(m[g] - m_new);
      const float p = m_new == -INFINITY ? 0.0f : __expf(score - m_new);
      m[g] = m_new;
      l[g] = l[g] * alpha + p;
      p_s[g * kTile + lane] = p;
#pragma unroll
      for (int c = 0; c < 2 * S::kWordsPerLane; ++c) o[g][c] *= alpha;
    }
    __syncwarp();
#pragma unroll 2
    for (int j = 0; j < kTile; j += 4) {
      float2 vv[4][S::kWordsPerLane];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
#pragma unroll
        for (int c = 0; c < S::kWordsPerLane; ++c)
          vv[jj][c] = __bfloat1622float2(
              reinterpret_cast<const __nv_bfloat162*>(v_s + (j + jj) * kDim)[lane + 32 * c]);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < g_count) {
          const float4 p4 = *reinterpret_cast<const float4*>(p_s + g * kTile + j);
          const float p[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
          for (int jj = 0; jj < 4; ++jj)
#pragma unroll
            for (int c = 0; c < S::kWordsPerLane; ++c) {
              o[g][2 * c] += p[jj] * vv[jj][c].x;
              o[g][2 * c + 1] += p[jj] * vv[jj][c].y;
            }
        }
      }
    }
    __syncwarp();  // the next tile's copies overwrite k_s, v_s and p_s
  }

  // Merge the warps' states through shared memory (reusing the tile buffers).
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) l[g] = WarpSum(l[g]);
  __syncthreads();
  float* o_s = reinterpret_cast<float*>(smem + S::kQBytes);  // [warp][group][dim]
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (lane == 0) {
      m_s[warp][g] = m[g];
      l_s[warp][g] = l[g];
    }
    float2* row = reinterpret_cast<float2*>(o_s + (warp * kMaxGroup + g) * kDim);
#pragma unroll
    for (int c = 0; c < S::kWordsPerLane; ++c)
      row[lane + 32 * c] = make_float2(o[g][2 * c], o[g][2 * c + 1]);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < g_count * kDim; idx += kThreads) {
    const int g = idx / kDim, d = idx % kDim;
    float max_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) max_all = fmaxf(max_all, m_s[w][g]);
    float sum = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float weight = m_s[w][g] == -INFINITY ? 0.0f : __expf(m_s[w][g] - max_all);
      sum += weight * l_s[w][g];
      acc += weight * o_s[(w * kMaxGroup + g) * kDim + d];
    }
    const int64_t h = h0 + g;
    if (splits == 1) {
      out[(b * heads + h) * kDim + d] = __float2bfloat16_rn(sum > 0.0f ? acc / sum : 0.0f);
    } else {
      const int64_t slot = (b * heads + h) * splits + split;
      part_o[slot * kDim + d] = acc;
      if (d == 0) {
        part_ml[2 * slot] = max_all;
        part_ml[2 * slot + 1] = sum;
      }
    }
  }
}

// Pass 2: one block per (head, batch), one thread per feature.
__global__ void AttentionDecodeCombineKernel(const float* __restrict__ part_o,
                                             const float* __restrict__ part_ml, int64_t heads,
                                             int head_dim, int splits, bf16* __restrict__ out) {
  const int64_t bh = blockIdx.y * heads + blockIdx.x;
  const float* ml = part_ml + 2 * bh * splits;
  float max_all = -INFINITY;
  for (int s = 0; s < splits; ++s) max_all = fmaxf(max_all, ml[2 * s]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f, acc = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float weight = ml[2 * s] == -INFINITY ? 0.0f : __expf(ml[2 * s] - max_all);
      sum += weight * ml[2 * s + 1];
      acc += weight * part_o[(bh * splits + s) * head_dim + d];
    }
    out[bh * head_dim + d] = __float2bfloat16_rn(sum > 0.0f ? acc / sum : 0.0f);
  }
}

template <int kDim>
absl::Status Launch(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                    const int32_t* positions, int64_t batch, int64_t heads, int64_t capacity,
                    int64_t kv_heads, const AttentionKernelParams& params,
                    const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                    cudaStream_t stream) {
  using S = DecodeShape<kDim>;
  static const cudaError_t attribute_error = cudaFuncSetAttribute(
      AttentionDecodeKernel<kDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(S::kSmem));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const int group = static_cast<int>(heads / kv_heads);
  const int head_groups = static_cast<int>(CeilDiv(group, kMaxGroup));
  const int splits = static_cast<int>(plan.splits);
  float* part_o = static_cast<float*>(workspace);
  float* part_ml = part_o == nullptr ? nullptr : part_o + batch * heads * splits * kDim;
  const dim3 grid(splits, kv_heads * head_groups, batch);
  AttentionDecodeKernel<kDim><<<grid, kThreads, S::kSmem, stream>>>(
      q, k_cache, v_cache, positions, heads, capacity, kv_heads, group, head_groups, params,
      static_cast<int>(plan.chunk), splits, out, part_o, part_ml);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionDecodeKernel");
  if (splits > 1) {
    AttentionDecodeCombineKernel<<<dim3(heads, batch), kDim, 0, stream>>>(part_o, part_ml, heads,
                                                                         kDim, splits, out);
    TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionDecodeCombineKernel");
  }
  return absl::OkStatus();
}

}  // namespace

AttentionDecodeSplit PlanAttentionDecode(int64_t batch, int64_t heads, int64_t kv_heads,
                                         int64_t head_dim, int64_t max_context) {
  AttentionDecodeSplit plan;
  max_context = std::max<int64_t>(max_context, 1);
  const int64_t group = kv_heads > 0 ? heads / kv_heads : 1;
  const int64_t blocks_per_split =
      std::max<int64_t>(1, batch * kv_heads * CeilDiv(std::max<int64_t>(group, 1), kMaxGroup));
  int64_t splits = CeilDiv(2 * MultiprocessorCount(), blocks_per_split);
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, CeilDiv(max_context, 128)));
  splits = std::min<int64_t>(splits, 1024);
  plan.chunk = CeilDiv(CeilDiv(max_context, splits), kTile) * kTile;
  plan.splits = CeilDiv(max_context, plan.chunk);
  plan.workspace_bytes =
      plan.splits > 1 ? sizeof(float) * batch * heads * plan.splits * (head_dim + 2) : 0;
  return plan;
}

absl::Status LaunchAttentionDecode(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                   const int32_t* positions, int64_t batch, int64_t heads,
                                   int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                   const AttentionKernelParams& params,
                                   const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                                   cudaStream_t stream) {
  if (batch <= 0 || heads <= 0) return absl::OkStatus();
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention decode: heads ", heads, " is not a multiple of kv_heads ",
                     kv_heads));
  }
  if (plan.splits < 1 || plan.chunk < 1 || (plan.splits > 1 && workspace == nullptr)) {
    return absl::InvalidArgumentError(
        "attention decode: plan from PlanAttentionDecode and its workspace are required");
  }
  if (capacity <= 0 || capacity > 0x7fffffff || batch > 65535 ||
      kv_heads * CeilDiv(heads / kv_heads, kMaxGroup) > 65535) {
    return absl::InvalidArgumentError("attention decode: capacity, batch or heads out of range");
  }
  if (!Aligned16(k_cache) || !Aligned16(v_cache)) {
    return absl::InvalidArgumentError("attention decode: caches must be 16-byte aligned");
  }
  switch (head_dim) {
    case 64:
      return Launch<64>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads, params,
                        plan, workspace, out, stream);
    case 128:
      return Launch<128>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads,
                         params, plan, workspace, out, stream);
    case 256:
      return Launch<256>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads,
                         params, plan, workspace, out, stream);
    default:
      return absl::UnimplementedError(
          absl::StrCat("attention decode: head_dim ", head_dim, " (supported: 64, 128, 256)"));
  }
}

}  // namespace tessel::cuda
