// MLA attention in the absorbed form (DeepSeek-V2 paper, section 2.1.2) with flash-decoding
// splits over the context; three kernels.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
//  1. MLAAbsorbQueryKernel, block (head, 128 latent features, 8 tokens): q_cat[t, h] =
//     [q_nope[t, h] kv_b[h, :nope] (rank values) | q_rope[t, h]] in bf16; kv_b's key rows
//     read once per 8 tokens.
//  2. MLAAttendKernel, block (token, 16-head group, split), 4 warps: the heads of a token share
//     one "KV head" of width rank + rope (the latent and the rope key), so the 16 heads are
//     the M = 16 rows of mma.sync m16n8k16 (FlashMLA's observation). Per 32-key tile, staged
//     with cp.async in two buffers: warp w scores keys 8w..8w+7 against all 16 heads over the
//     576 features (S = Q K^T); the block's online softmax goes through shared memory (row
//     maxima and sums of the 4 warps); P (bf16) is shared and warp w accumulates output
//     latent features 128w..128w+127 (O += P V with V = the latent rows, ldmatrix.trans).
//     Each block writes its unnormalized output latent, max and sum for its chunk.
//  3. MLAOutputKernel, block (head, 32 value rows, 8 tokens): merges the splits, O = sum_s e^(m_s - M) o_s /
//     sum_s e^(m_s - M) l_s, and projects out[t, h] = kv_b[h, nope:] O (kv_b's value rows read
//     once per 8 tokens).
// Cost per token: heads * (rank * (nope + v_dim) + visible * (2 rank + rope)) MACs; bytes:
// the visible latent + rope rows once per (token, 16 heads) (decode: once), kv_b once per 8
// tokens, and the splits' partials (heads * splits * (rank + 2) f32 written and read).
#include "runtime/cuda/mla.cuh"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"
#include "runtime/cuda/mma.cuh"

namespace tessel::cuda {
namespace {

constexpr int kRank = 512;
constexpr int kRope = 64;
constexpr int kWidth = kRank + kRope;   // features of a key (and of an absorbed query)
constexpr int kRowStride = kWidth + 8;  // shared row stride: 1168 B = 73 x 16 B, conflict-free
constexpr int kHeads = 16;              // heads per attend block (the mma M)
constexpr int kKeys = 32;               // keys per tile
constexpr int kAttendWarps = 4;
constexpr int kAttendThreads = 32 * kAttendWarps;
constexpr int kPStride = kKeys + 8;     // 80 B rows
constexpr int kMaxSplits = 256;
constexpr int kTokenGroup = 8;          // tokens per absorb / output block
constexpr int kMaxNope = 256;

constexpr size_t kQSmemElems = kHeads * kRowStride;
constexpr size_t kKSmemElems = kKeys * kRowStride;  // per buffer
constexpr size_t kAttendSmem = sizeof(bf16) * (kQSmemElems + 2 * kKSmemElems + kHeads * kPStride);

static_assert(kAttendWarps * 128 == kRank, "each warp owns 128 output latent features");
static_assert(kAttendWarps * 8 == kKeys, "each warp scores 8 keys of a tile");

struct Workspace {
  bf16* q_cat;      // [tokens, heads, kWidth]
  float* part_o;    // [tokens, heads, splits, kRank]
  float* part_ml;   // [tokens, heads, splits, 2]
};

size_t Align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

Workspace Carve(void* base, int64_t tokens, int64_t heads, int64_t splits) {
  auto* p = static_cast<unsigned char*>(base);
  Workspace w;
  w.q_cat = reinterpret_cast<bf16*>(p);
  p += Align256(sizeof(bf16) * tokens * heads * kWidth);
  w.part_o = reinterpret_cast<float*>(p);
  p += Align256(sizeof(float) * tokens * heads * splits * kRank);
  w.part_ml = reinterpret_cast<float*>(p);
  return w;
}

size_t WorkspaceBytes(int64_t tokens, int64_t heads, int64_t splits) {
  return Align256(sizeof(bf16) * tokens * heads * kWidth) +
         Align256(sizeof(float) * tokens * heads * splits * kRank) +
         Align256(sizeof(float) * tokens * heads * splits * 2);
}

// --- 1. absorbed query ----------------------------------------------------------------------

// Block (head, 128-feature slice of the latent, 8 tokens), 8 warps: warp w sums the nope rows
// d = w, w + 8, ... (each lane 4 features: 256 contiguous bytes per warp and row), then the
// warps' partial sums are added in a fixed order through shared memory.
constexpr int kAbsorbSlice = 128;
constexpr int kAbsorbWarps = 8;

__global__ void __launch_bounds__(32 * kAbsorbWarps)
    MLAAbsorbQueryKernel(const bf16* __restrict__ q_nope, const bf16* __restrict__ q_rope,
                         const bf16* __restrict__ kv_b, int64_t tokens, int heads, int nope,
                         int v_dim, bf16* __restrict__ q_cat) {
  __shared__ float qn_s[kTokenGroup][kMaxNope];
  __shared__ __align__(16) float part_s[kAbsorbWarps][kTokenGroup][kAbsorbSlice];
  const int h = blockIdx.x;
  const int r0 = blockIdx.y * kAbsorbSlice;
  const int64_t t0 = static_cast<int64_t>(blockIdx.z) * kTokenGroup;
  const int count = static_cast<int>(tokens - t0 < kTokenGroup ? tokens - t0 : kTokenGroup);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int idx = threadIdx.x; idx < kTokenGroup * nope; idx += blockDim.x) {
    const int t = idx / nope, d = idx % nope;
    qn_s[t][d] = t < count ? __bfloat162float(q_nope[((t0 + t) * heads + h) * nope + d]) : 0.0f;
  }
  __syncthreads();
  const bf16* kv_b_key = kv_b + static_cast<int64_t>(h) * (nope + v_dim) * kRank + r0 + 4 * lane;
  float acc[kTokenGroup][4];
#pragma unroll
  for (int t = 0; t < kTokenGroup; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
#pragma unroll 4
  for (int d = warp; d < nope; d += kAbsorbWarps) {
    const uint2 raw = *reinterpret_cast<const uint2*>(kv_b_key + static_cast<int64_t>(d) * kRank);
    const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
#pragma unroll
    for (int t = 0; t < kTokenGroup; ++t) {
      const float q = qn_s[t][d];
      acc[t][0] = fmaf(q, w01.x, acc[t][0]);
      acc[t][1] = fmaf(q, w01.y, acc[t][1]);
      acc[t][2] = fmaf(q, w23.x, acc[t][2]);
      acc[t][3] = fmaf(q, w23.y, acc[t][3]);
    }
  }
#pragma unroll
  for (int t = 0; t < kTokenGroup; ++t) {
    *reinterpret_cast<float4*>(&part_s[warp][t][4 * lane]) =
        make_float4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < count * kAbsorbSlice; idx += blockDim.x) {
    const int t = idx / kAbsorbSlice, r = idx % kAbsorbSlice;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kAbsorbWarps; ++w) sum += part_s[w][t][r];
    q_cat[((t0 + t) * heads + h) * kWidth + r0 + r] = __float2bfloat16_rn(sum);
  }
  if (blockIdx.y == 0) {
    for (int idx = threadIdx.x; idx < count * kRope; idx += blockDim.x) {
      const int t = idx / kRope, d = idx % kRope;
      q_cat[((t0 + t) * heads + h) * kWidth + kRank + d] =
          q_rope[((t0 + t) * heads + h) * kRope + d];
    }
  }
}

// --- 2. attention over the latent -----------------------------------------------------------

__global__ void __launch_bounds__(kAttendThreads)
    MLAAttendKernel(const bf16* __restrict__ q_cat, const bf16* __restrict__ latent,
                    const bf16* __restrict__ key_rope, const int32_t* __restrict__ positions,
                    int seq, int heads, int kv_len, AttentionKernelParams params, int chunk,
                    int splits, float* __restrict__ part_o, float* __restrict__ part_ml) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red_max[kAttendWarps][kHeads], red_sum[kAttendWarps][kHeads];
  bf16* q_s = reinterpret_cast<bf16*>(smem_raw);
  bf16* k_s = q_s + kQSmemElems;           // two buffers of kKSmemElems
  bf16* p_s = k_s + 2 * kKSmemElems;       // [kHeads][kPStride]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int split = blockIdx.z;
  const int h0 = blockIdx.y * kHeads;
  const int64_t token = blockIdx.x;
  const int64_t b = token / seq;

  const int pos = positions[token];
  const int hi = params.causal ? min(pos, kv_len - 1) : kv_len - 1;
  const int lo = params.sliding_window > 0
                     ? max(0, pos - static_cast<int>(params.sliding_window) + 1)
                     : 0;
  const int c0 = lo + split * chunk;
  const int c1 = split == splits - 1 ? hi : min(hi, c0 + chunk - 1);
  const int tiles = c1 >= c0 ? (c1 - c0 + kKeys) / kKeys : 0;

  // Q rows (zero for heads past the end), committed with the first K tile.
  for (int idx = tid; idx < kHeads * (kWidth / 8); idx += kAttendThreads) {
    const int row = idx / (kWidth / 8), col = (idx % (kWidth / 8)) * 8;
    const bool valid = h0 + row < heads;
    CpAsync16(q_s + row * kRowStride + col,
              valid ? q_cat + (token * heads + h0 + row) * kWidth + col : q_cat, valid);
  }
  const bf16* latent_b = latent + b * kv_len * kRank;
  const bf16* rope_b = key_rope + b * kv_len * kRope;
  auto load_tile = [&](int tile, int buffer) {
    bf16* dst = k_s + buffer * kKSmemElems;
    const int key0 = c0 + tile * kKeys;
    for (int idx = tid; idx < kKeys * (kWidth / 8); idx += kAttendThreads) {
      const int j = idx / (kWidth / 8), col = (idx % (kWidth / 8)) * 8;
      const int key = key0 + j;
      const bool valid = key <= c1;  // rows past the chunk are zero: p = 0 must not meet NaN
      const bf16* src = col < kRank
                            ? latent_b + static_cast<int64_t>(key) * kRank + col
                            : rope_b + static_cast<int64_t>(key) * kRope + (col - kRank);
      CpAsync16(dst + j * kRowStride + col, valid ? src : latent, valid);
    }
  };
  if (tiles > 0) load_tile(0, 0);
  CpAsyncCommit();

  float o[16][4];
#pragma unroll
  for (int f = 0; f < 16; ++f) o[f][0] = o[f][1] = o[f][2] = o[f][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;  // rows g, g + 8

  // ldmatrix lane coordinates: A (Q, P) rows lane % 16, k half lane / 16; B for S (K rows as
  // n) key lane % 8, k offset 8 (lane / 8) over two k16 steps; B for O (K rows as k, trans)
  // key lane % 8 + 8 ((lane / 8) % 2), n half lane / 16.
  const int a_row = lane & 15, a_col = (lane >> 4) * 8;
  const int s_key = warp * 8 + (lane & 7), s_col = (lane >> 3) * 8;
  const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = warp * 128 + (lane >> 4) * 8;

  for (int tile = 0; tile < tiles; ++tile) {
    CpAsyncWait<0>();
    __syncthreads();  // tile visible; everyone is done with the other buffer and with p_s
    if (tile + 1 < tiles) load_tile(tile + 1, (tile + 1) & 1);
    CpAsyncCommit();
    const bf16* kt = k_s + (tile & 1) * kKSmemElems;

    // S = Q K^T for this warp's 8 keys: two independent accumulator chains.
    float s0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 6
    for (int kk = 0; kk < kWidth; kk += 32) {
      uint32_t a0[4], a1[4], bk[4];
      LdMatrixX4(a0, q_s + a_row * kRowStride + kk + a_col);
      LdMatrixX4(a1, q_s + a_row * kRowStride + kk + 16 + a_col);
      LdMatrixX4(bk, kt + s_key * kRowStride + kk + s_col);
      MmaBf16(s0, a0, bk[0], bk[1]);
      MmaBf16(s1, a1, bk[2], bk[3]);
    }
    const int key0 = c0 + tile * kKeys + warp * 8 + 2 * c;
    float s[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool valid = key0 + (i & 1) <= c1;
      s[i] = valid ? CapScore((s0[i] + s1[i]) * params.scale, params.logit_softcap) : -INFINITY;
    }
    float max_lo = fmaxf(s[0], s[1]), max_hi = fmaxf(s[2], s[3]);
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      max_lo = fmaxf(max_lo, __shfl_xor_sync(0xffffffffu, max_lo, off));
      max_hi = fmaxf(max_hi, __shfl_xor_sync(0xffffffffu, max_hi, off));
    }
    if (c == 0) {
      red_max[warp][g] = max_lo;
      red_max[warp][g + 8] = max_hi;
    }
    __syncthreads();
    float tile_lo = red_max[0][g], tile_hi = red_max[0][g + 8];
#pragma unroll
    for (int w = 1; w < kAttendWarps; ++w) {
      tile_lo = fmaxf(tile_lo, red_max[w][g]);
      tile_hi = fmaxf(tile_hi, red_max[w][g + 8]);
    }
    const float new_lo = fmaxf(m_lo, tile_lo), new_hi = fmaxf(m_hi, tile_hi);
    const float alpha_lo = new_lo == -INFINITY ? 1.0f : __expf(m_lo - new_lo);
    const float alpha_hi = new_hi == -INFINITY ? 1.0f : __expf(m_hi - new_hi);
    float p[4];
    p[0] = new_lo == -INFINITY ? 0.0f : __expf(s[0] - new_lo);
    p[1] = new_lo == -INFINITY ? 0.0f : __expf(s[1] - new_lo);
    p[2] = new_hi == -INFINITY ? 0.0f : __expf(s[2] - new_hi);
    p[3] = new_hi == -INFINITY ? 0.0f : __expf(s[3] - new_hi);
    *reinterpret_cast<__nv_bfloat162*>(p_s + g * kPStride + warp * 8 + 2 * c) =
        __floats2bfloat162_rn(p[0], p[1]);
    *reinterpret_cast<__nv_bfloat162*>(p_s + (g + 8) * kPStride + warp * 8 + 2 * c) =
        __floats2bfloat162_rn(p[2], p[3]);
    float sum_lo = p[0] + p[1], sum_hi = p[2] + p[3];
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      sum_lo += __shfl_xor_sync(0xffffffffu, sum_lo, off);
      sum_hi += __shfl_xor_sync(0xffffffffu, sum_hi, off);
    }
    if (c == 0) {
      red_sum[warp][g] = sum_lo;
      red_sum[warp][g + 8] = sum_hi;
    }
    __syncthreads();
    float tile_sum_lo = 0.0f, tile_sum_hi = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttendWarps; ++w) {
      tile_sum_lo += red_sum[w][g];
      tile_sum_hi += red_sum[w][g + 8];
    }
    l_lo = l_lo * alpha_lo + tile_sum_lo;
    l_hi = l_hi * alpha_hi + tile_sum_hi;
    m_lo = new_lo;
    m_hi = new_hi;
#pragma unroll
    for (int f = 0; f < 16; ++f) {
      o[f][0] *= alpha_lo;
      o[f][1] *= alpha_lo;
      o[f][2] *= alpha_hi;
      o[f][3] *= alpha_hi;
    }
    // O += P V over the tile's 32 keys (two k16 steps); V = the latent part of the K rows.
#pragma unroll
    for (int ks = 0; ks < kKeys; ks += 16) {
      uint32_t a[4];
      LdMatrixX4(a, p_s + a_row * kPStride + ks + a_col);
#pragma unroll
      for (int fp = 0; fp < 8; ++fp) {
        uint32_t bv[4];
        LdMatrixX4Trans(bv, kt + (ks + v_key) * kRowStride + v_col + fp * 16);
        MmaBf16(o[2 * fp], a, bv[0], bv[1]);
        MmaBf16(o[2 * fp + 1], a, bv[2], bv[3]);
      }
    }
  }
  CpAsyncWait<0>();

  // Partials of this split: rows g (head h0 + g) and g + 8.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int h = h0 + g + 8 * half;
    if (h >= heads) continue;
    const int64_t slot = (token * heads + h) * splits + split;
    float* dst = part_o + slot * kRank + warp * 128 + 2 * c;
#pragma unroll
    for (int f = 0; f < 16; ++f) {
      *reinterpret_cast<float2*>(dst + f * 8) = make_float2(o[f][2 * half], o[f][2 * half + 1]);
    }
    if (warp == 0 && c == 0) {
      part_ml[2 * slot] = half == 0 ? m_lo : m_hi;
      part_ml[2 * slot + 1] = half == 0 ? l_lo : l_hi;
    }
  }
}

// --- 3. merge the splits and project through kv_b's value rows ------------------------------

// Block (head, 32 value rows, 8 tokens): every block of a (head, token group) merges the
// splits (the partials are L2-resident) so the projection spreads over 4x more blocks.
constexpr int kOutputRows = 32;

__global__ void __launch_bounds__(256)
    MLAOutputKernel(const float* __restrict__ part_o, const float* __restrict__ part_ml,
                    const bf16* __restrict__ kv_b, int64_t tokens, int heads, int nope,
                    int v_dim, int splits, bf16* __restrict__ out) {
  __shared__ __align__(16) float o_s[kTokenGroup][kRank];
  __shared__ float w_s[kTokenGroup][kMaxSplits];
  const int h = blockIdx.x;
  const int d_begin = blockIdx.y * kOutputRows;
  const int d_end = min(v_dim, d_begin + kOutputRows);
  const int64_t t0 = static_cast<int64_t>(blockIdx.z) * kTokenGroup;
  const int count = static_cast<int>(tokens - t0 < kTokenGroup ? tokens - t0 : kTokenGroup);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;  // 8 warps

  // Split weights e^(m_s - M) / sum_s e^(m_s - M) l_s; warp t handles token t.
  if (warp < count) {
    const float* ml = part_ml + ((t0 + warp) * heads + h) * splits * 2;
    float max_all = -INFINITY;
    for (int s = lane; s < splits; s += 32) max_all = fmaxf(max_all, ml[2 * s]);
    max_all = WarpMax(max_all);
    float sum = 0.0f;
    for (int s = lane; s < splits; s += 32) {
      const float w = ml[2 * s] == -INFINITY ? 0.0f : __expf(ml[2 * s] - max_all);
      w_s[warp][s] = w;
      sum += w * ml[2 * s + 1];
    }
    sum = WarpSum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // no visible key: zeros, as the CPU
    __syncwarp();
    for (int s = lane; s < splits; s += 32) w_s[warp][s] *= inv;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTokenGroup * kRank; idx += blockDim.x) {
    const int t = idx / kRank, r = idx % kRank;
    float acc = 0.0f;
    if (t < count) {
      const float* src = part_o + ((t0 + t) * heads + h) * splits * kRank + r;
      for (int s = 0; s < splits; ++s) acc = fmaf(w_s[t][s], src[static_cast<int64_t>(s) * kRank], acc);
    }
    o_s[t][r] = acc;
  }
  __syncthreads();
  const bf16* kv_b_value = kv_b + (static_cast<int64_t>(h) * (nope + v_dim) + nope) * kRank;
  for (int d = d_begin + warp; d < d_end; d += 8) {
    float acc[kTokenGroup];
#pragma unroll
    for (int t = 0; t < kTokenGroup; ++t) acc[t] = 0.0f;
#pragma unroll
    for (int part = 0; part < kRank / 256; ++part) {
      const int r = part * 256 + lane * 8;
      float w[8];
      Unpack8(*reinterpret_cast<const Bf16x8*>(kv_b_value + static_cast<int64_t>(d) * kRank + r), w);
#pragma unroll
      for (int t = 0; t < kTokenGroup; ++t) {
        const float4 oa = *reinterpret_cast<const float4*>(&o_s[t][r]);
        const float4 ob = *reinterpret_cast<const float4*>(&o_s[t][r + 4]);
        acc[t] += w[0] * oa.x + w[1] * oa.y + w[2] * oa.z + w[3] * oa.w + w[4] * ob.x +
                  w[5] * ob.y + w[6] * ob.z + w[7] * ob.w;
      }
    }
#pragma unroll
    for (int t = 0; t < kTokenGroup; ++t) {
      const float sum = WarpSum(acc[t]);
      if (lane == 0 && t < count) {
        out[((t0 + t) * heads + h) * v_dim + d] = __float2bfloat16_rn(sum);
      }
    }
  }
}

}  // namespace

MLAAttentionPlan PlanMLAAttention(int64_t batch, int64_t seq, int64_t heads,
                                  int64_t max_context) {
  MLAAttentionPlan plan;
  plan.tokens = batch * seq;
  plan.heads = heads;
  max_context = std::max<int64_t>(max_context, 1);
  const int64_t blocks_per_split =
      std::max<int64_t>(1, plan.tokens * CeilDiv(std::max<int64_t>(heads, 1), kHeads));
  int64_t splits = CeilDiv(MultiprocessorCount(), blocks_per_split);
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, CeilDiv(max_context, 128)));
  splits = std::min<int64_t>(splits, kMaxSplits);
  plan.chunk = CeilDiv(CeilDiv(max_context, splits), kKeys) * kKeys;
  plan.splits = CeilDiv(max_context, plan.chunk);
  plan.workspace_bytes = WorkspaceBytes(plan.tokens, heads, plan.splits);
  return plan;
}

absl::Status LaunchMLAAttention(const bf16* q_nope, const bf16* q_rope, const bf16* latent,
                                const bf16* key_rope, const bf16* kv_b,
                                const int32_t* positions, int64_t batch, int64_t seq,
                                int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                                int64_t rank, int64_t v_dim,
                                const AttentionKernelParams& params,
                                const MLAAttentionPlan& plan, void* workspace, bf16* out,
                                cudaStream_t stream) {
  const int64_t tokens = batch * seq;
  if (tokens <= 0 || heads <= 0) return absl::OkStatus();
  if (rank != kRank || rope != kRope || nope < 1 || nope > kMaxNope || v_dim < 1) {
    return absl::UnimplementedError(absl::StrCat(
        "mla attention: rank ", rank, ", rope ", rope, ", nope ", nope, ", v_dim ", v_dim,
        " (supported: rank 512, rope 64, nope <= 256)"));
  }
  if (tokens > plan.tokens || heads != plan.heads || plan.splits < 1 ||
      plan.splits > kMaxSplits || plan.chunk < 1 || workspace == nullptr) {
    return absl::InvalidArgumentError(
        "mla attention: a plan from PlanMLAAttention for these tokens and heads, and its "
        "workspace, are required");
  }
  if (kv_len <= 0 || kv_len > 0x7fffffff || tokens > 0x7fffffff ||
      CeilDiv(heads, kHeads) > 65535 || CeilDiv(tokens, kTokenGroup) > 65535 || heads > 65535 ||
      CeilDiv(v_dim, kOutputRows) > 65535) {
    return absl::InvalidArgumentError("mla attention: kv_len, tokens or heads out of range");
  }
  if (!Aligned16(latent) || !Aligned16(key_rope) || !Aligned16(kv_b) || !Aligned16(workspace)) {
    return absl::InvalidArgumentError("mla attention: latent, key_rope and kv_b must be 16-byte "
                                      "aligned");
  }
  static const cudaError_t attribute_error = cudaFuncSetAttribute(
      MLAAttendKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(kAttendSmem));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const Workspace ws = Carve(workspace, plan.tokens, heads, plan.splits);
  const unsigned token_groups = static_cast<unsigned>(CeilDiv(tokens, kTokenGroup));
  const dim3 absorb_grid(static_cast<unsigned>(heads), kRank / kAbsorbSlice, token_groups);
  MLAAbsorbQueryKernel<<<absorb_grid, 32 * kAbsorbWarps, 0, stream>>>(
      q_nope, q_rope, kv_b, tokens, static_cast<int>(heads), static_cast<int>(nope),
      static_cast<int>(v_dim), ws.q_cat);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MLAAbsorbQueryKernel");
  const dim3 attend_grid(static_cast<unsigned>(tokens),
                         static_cast<unsigned>(CeilDiv(heads, kHeads)),
                         static_cast<unsigned>(plan.splits));
  MLAAttendKernel<<<attend_grid, kAttendThreads, kAttendSmem, stream>>>(
      ws.q_cat, latent, key_rope, positions, static_cast<int>(seq), static_cast<int>(heads),
      static_cast<int>(kv_len), params, static_cast<int>(plan.chunk),
      static_cast<int>(plan.splits), ws.part_o, ws.part_ml);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MLAAttendKernel");
  const dim3 output_grid(static_cast<unsigned>(heads),
                         static_cast<unsigned>(CeilDiv(v_dim, kOutputRows)), token_groups);
  MLAOutputKernel<<<output_grid, 256, 0, stream>>>(
      ws.part_o, ws.part_ml, kv_b, tokens, static_cast<int>(heads), static_cast<int>(nope),
      static_cast<int>(v_dim), static_cast<int>(plan.splits), out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MLAOutputKernel");
  return absl::OkStatus();
}

}  // namespace tessel::cuda
