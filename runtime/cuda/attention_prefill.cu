// Causal prefill attention on tensor cores (FlashAttention-2 style, mma.sync bf16, f32 softmax).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Algorithm: FlashAttention-2 (Dao 2023, "FlashAttention-2: Faster Attention with Better
// Parallelism and Work Partitioning") with the online softmax of Milakov & Gimelshein 2018.
// Cost: 4 * visible_keys * head_dim FLOPs per (query, head) on the tensor cores, plus one
// exp2 per score on the SFU; K and V are read from L2 once per 128-query tile.
//
// Design (head_dim = D):
// - Grid: one CTA per (128-query tile, head, batch), flattened into blockIdx.x with the
//   query tile slowest and reversed, so that the latest tiles (the most keys under
//   causality) start first and the short ones fill the tail. 8 warps; warp w owns query
//   rows 16w..16w+15 of the tile (one m16 row block of mma.m16n8k16).
// - Key range: per tile, the smallest visible key over its rows and the largest (positions
//   are arbitrary: chunked prefill, batches at different offsets) bound the key loop; key
//   tiles of kBlockN keys (64 for D <= 128, 32 for D = 256). A key tile that every row of
//   the query tile sees entirely skips the per-element mask; others mask per element
//   (j <= position, j > position - window, j < kv_len). Key rows outside the tile's
//   visible union are zero-filled, never read, so unwritten cache rows (NaN) never reach
//   P·V (0 * NaN would be NaN).
// - Shared memory (bf16, rows padded by 16 bytes: conflict-free ldmatrix and cp.async):
//   Q [128][D+8], K [2][kBlockN][D+8], V [2][kBlockN][D+8]. D=64: 54 KiB; D=128: 102 KiB;
//   D=256: 132 KiB. One CTA (8 warps) per SM: registers (ptxas, sm_90a: 151 / 222 / 240
//   for D = 64 / 128 / 256, no spills) do not allow two.
// - Pipeline: cp.async double buffering; while tile t is computed, K and V of tile t+1
//   are in flight. Two barriers per tile (data ready; stage free for reuse).
// - Per key tile, per warp: S = Q·K^T with mma.m16n8k16 (Q fragments kept in registers
//   for D <= 128, re-read with ldmatrix from shared memory for D = 256 where registers do
//   not allow it; K fragments by ldmatrix.x4), scores scaled by scale*log2(e) inside the
//   exp2 FMA, online softmax in registers (row max and sum across the 4 lanes of a quad),
//   P converted to bf16 A fragments directly from the S accumulators (the C layout of
//   m16n8 pairs is the A layout of m16k16), O += P·V with V fragments by ldmatrix.x4.trans.
// - Epilogue: O / l to bf16 staged through the warp's own Q rows in shared memory, then
//   stored with 16-byte coalesced writes; a row with no visible key gets zeros.
// Registers: O is 16 x D f32 per warp (D/2 per lane), S 16 x kBlockN (kBlockN/2 per lane),
// Q fragments D/4 per lane (D <= 128).
#include "runtime/cuda/attention_prefill.cuh"

#include <climits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

template <int kDim>
struct PrefillConfig {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps * 16;  // query rows per CTA
  static constexpr int kBlockN = kDim <= 128 ? 64 : 32;  // keys per tile
  static constexpr bool kQInRegisters = kDim <= 128;
  static constexpr int kMinBlocksPerSm = 1;
  static constexpr int kStride = kDim + 8;  // bf16 per shared row (16-byte pad)
  static constexpr int kChunksPerRow = kDim / 8;  // 16-byte chunks
  static constexpr int kKSteps = kDim / 16;       // k16 steps of Q·K^T
  static constexpr int kNTiles = kBlockN / 8;     // n8 tiles of S
  static constexpr int kDTiles = kDim / 8;        // n8 tiles of O
  static constexpr int kQElems = kBlockM * kStride;
  static constexpr int kKVElems = kBlockN * kStride;
  static constexpr size_t kSmemBytes = sizeof(bf16) * (kQElems + 4 * kKVElems);
  static_assert(kBlockN % 16 == 0 && kDim % 16 == 0, "mma tiles");
  static_assert((kBlockN * kChunksPerRow) % kThreads == 0, "K/V tile load is exact");
};

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i of
// lane l holds row l/4, columns 2(l%4), 2(l%4)+1 of matrix i (transposed with .trans).
__device__ __forceinline__ void LdMatrixX4(uint32_t address, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t address, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// d += a (16x16, row) * b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as bf16x2, `lo` in the low half (the lower column index of a fragment pair).
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// 2^x; 2^-inf = +0.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Visible keys [lo, hi] of a query at `position` (cpu::Attention's VisibleKeys); empty when
// hi < lo.
__device__ __forceinline__ void VisibleKeys(int position, int kv_len,
                                            const AttentionKernelParams& params, int* lo,
                                            int* hi) {
  *hi = params.causal ? min(position, kv_len - 1) : kv_len - 1;
  *lo = params.sliding_window > 0
            ? static_cast<int>(max(int64_t{0}, int64_t{position} - params.sliding_window + 1))
            : 0;
}

template <int kDim>
__global__ void __launch_bounds__(PrefillConfig<kDim>::kThreads,
                                  PrefillConfig<kDim>::kMinBlocksPerSm)
    AttentionPrefillKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                           const bf16* __restrict__ v, const int32_t* __restrict__ positions,
                           int batch, int seq, int heads, int kv_len, int kv_heads, int q_tiles,
                           AttentionKernelParams params, bf16* __restrict__ out) {
  using C = PrefillConfig<kDim>;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kBlockM][kStride]
  bf16* k_s = q_s + C::kQElems;               // [2][kBlockN][kStride]
  bf16* v_s = k_s + 2 * C::kKVElems;          // [2][kBlockN][kStride]
  // Union of the rows' visible keys [0]..[1]; keys every row sees [2]..[3].
  __shared__ int key_range[4];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = lane >> 2, quad = lane & 3;  // fragment row (and row + 8), column pair
  const int heads_x_batch = heads * batch;
  const int q_tile = q_tiles - 1 - static_cast<int>(blockIdx.x) / heads_x_batch;
  const int head_batch = static_cast<int>(blockIdx.x) % heads_x_batch;
  const int h = head_batch % heads, b = head_batch / heads;
  const int kvh = h / (heads / kv_heads);
  const int s0 = q_tile * C::kBlockM;

  if (tid == 0) {
    key_range[0] = INT_MAX;
    key_range[1] = -1;
    key_range[2] = INT_MIN;
    key_range[3] = INT_MAX;
  }

  // Q tile -> shared (rows past seq zero-filled: finite scores, never stored).
  {
    const int64_t q_row_stride = int64_t{heads} * kDim;
    const bf16* q_base = q + (int64_t{b} * seq * heads + h) * kDim;
    for (int idx = tid; idx < C::kBlockM * C::kChunksPerRow; idx += C::kThreads) {
      const int r = idx / C::kChunksPerRow, c = (idx % C::kChunksPerRow) * 8;
      const bool valid = s0 + r < seq;
      const int64_t offset = valid ? (s0 + r) * q_row_stride + c : 0;
      CpAsync16(q_s + r * C::kStride + c, q_base + offset, valid);
    }
    CpAsyncCommit();
  }

  // This thread's two rows (fragment rows group and group + 8 of the warp's 16).
  const int row0 = s0 + warp * 16 + group, row1 = row0 + 8;
  int lo0 = 0, hi0 = -1, lo1 = 0, hi1 = -1;  // rows past seq: nothing visible
  if (row0 < seq) VisibleKeys(positions[int64_t{b} * seq + row0], kv_len, params, &lo0, &hi0);
  if (row1 < seq) VisibleKeys(positions[int64_t{b} * seq + row1], kv_len, params, &lo1, &hi1);

  __syncthreads();  // key_range initialized
  if (tid < C::kBlockM) {
    // Threads 0..127 each reduce one row of the tile.
    int union_lo = INT_MAX, union_hi = -1, common_lo = INT_MIN, common_hi = INT_MAX;
    if (s0 + tid < seq) {
      int lo, hi;
      VisibleKeys(positions[int64_t{b} * seq + s0 + tid], kv_len, params, &lo, &hi);
      if (hi >= lo) {
        union_lo = lo;
        union_hi = hi;
      }
      common_lo = lo;
      common_hi = hi;
    }
    union_lo = __reduce_min_sync(0xffffffffu, union_lo);
    union_hi = __reduce_max_sync(0xffffffffu, union_hi);
    common_lo = __reduce_max_sync(0xffffffffu, common_lo);
    common_hi = __reduce_min_sync(0xffffffffu, common_hi);
    if (lane == 0) {
      atomicMin(&key_range[0], union_lo);
      atomicMax(&key_range[1], union_hi);
      atomicMax(&key_range[2], common_lo);
      atomicMin(&key_range[3], common_hi);
    }
  }
  __syncthreads();
  const int union_lo = key_range[0], union_hi = key_range[1];
  const int common_lo = key_range[2], common_hi = key_range[3];

  const int64_t kv_row_stride = int64_t{kv_heads} * kDim;
  const bf16* k_base = k + (int64_t{b} * kv_len * kv_heads + kvh) * kDim;
  const bf16* v_base = v + (int64_t{b} * kv_len * kv_heads + kvh) * kDim;
  auto load_kv_tile = [&](int tile, int stage) {
    const int j0 = tile * C::kBlockN;
    bf16* ks = k_s + stage * C::kKVElems;
    bf16* vs = v_s + stage * C::kKVElems;
#pragma unroll
    for (int i = 0; i < C::kBlockN * C::kChunksPerRow / C::kThreads; ++i) {
      const int idx = tid + i * C::kThreads;
      const int r = idx / C::kChunksPerRow, c = (idx % C::kChunksPerRow) * 8;
      const int key = j0 + r;
      const bool valid = key >= union_lo && key <= union_hi;
      const int64_t offset = valid ? key * kv_row_stride + c : 0;
      CpAsync16(ks + r * C::kStride + c, k_base + offset, valid);
      CpAsync16(vs + r * C::kStride + c, v_base + offset, valid);
    }
  };

  // Per-lane ldmatrix row addresses (bytes), see LdMatrixX4:
  // Q (A operand, 16x16 at k-step kk): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
  //   (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
  const uint32_t q_lane =
      SmemAddress(q_s + (warp * 16 + (lane & 15)) * C::kStride + (lane >> 4) * 8);
  // K (B operand of S = Q K^T, B[d][key] = K[key][d], for keys 16np..16np+15): matrices
  //   (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15) =
  //   b0, b1 of n-tile 2np, b0, b1 of n-tile 2np+1.
  const uint32_t k_lane =
      SmemAddress(k_s + ((lane & 7) + (lane >> 4) * 8) * C::kStride + ((lane >> 3) & 1) * 8);
  // V (B operand of O = P V, B[key][d] = V[key][d], transposed loads, for d 16dp..16dp+15
  //   at keys 16kk..16kk+15): matrices (keys 0-7, d 0-7), (keys 8-15, d 0-7),
  //   (keys 0-7, d 8-15), (keys 8-15, d 8-15) = b0, b1 of d-tile 2dp, b0, b1 of 2dp+1.
  const uint32_t v_lane =
      SmemAddress(v_s + ((lane & 7) + ((lane >> 3) & 1) * 8) * C::kStride + (lane >> 4) * 8);
  constexpr uint32_t kStageBytes = C::kKVElems * sizeof(bf16);
  constexpr uint32_t kRowBytes = C::kStride * sizeof(bf16);

  // Scores are dot * scale, soft-capped if asked; the softmax works in base 2. The fast
  // path folds scale * log2(e) into the exp2 FMA (needs scale > 0 so that the row max of
  // raw dots is the max of scores); otherwise scores are transformed in place first.
  const bool transform_scores = params.logit_softcap > 0.0f || !(params.scale > 0.0f);
  const float score_mult = transform_scores ? 1.0f : params.scale * kLog2e;

  float o[C::kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // row max of (transformed) scores
  float l0 = 0.0f, l1 = 0.0f;            // this lane's part of the row sum

  if (union_hi >= union_lo) {
    const int first_tile = union_lo / C::kBlockN, last_tile = union_hi / C::kBlockN;
    load_kv_tile(first_tile, 0);
    CpAsyncCommit();

    uint32_t q_frag[C::kQInRegisters ? C::kKSteps : 1][4];
    if constexpr (C::kQInRegisters) {
      CpAsyncWait<1>();  // Q landed (the first K/V tile may still be in flight)
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < C::kKSteps; ++kk) LdMatrixX4(q_lane + kk * 32, q_frag[kk]);
    }

    for (int tile = first_tile; tile <= last_tile; ++tile) {
      const int stage = (tile - first_tile) & 1;
      if (tile < last_tile) {
        load_kv_tile(tile + 1, stage ^ 1);
        CpAsyncCommit();
        CpAsyncWait<1>();
      } else {
        CpAsyncWait<0>();
      }
      __syncthreads();  // tile's K and V (and Q) visible to all warps

      // S = Q K^T (16 x kBlockN per warp).
      float s[C::kNTiles][4];
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
      const uint32_t k_stage = k_lane + stage * kStageBytes;
#pragma unroll
      for (int kk = 0; kk < C::kKSteps; ++kk) {
        uint32_t a_reg[4];
        if constexpr (C::kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a_reg[e] = q_frag[kk][e];
        } else {
          LdMatrixX4(q_lane + kk * 32, a_reg);
        }
#pragma unroll
        for (int np = 0; np < C::kNTiles / 2; ++np) {
          uint32_t b_reg[4];
          LdMatrixX4(k_stage + np * 16 * kRowBytes + kk * 32, b_reg);
          MmaBf16(s[2 * np], a_reg, b_reg[0], b_reg[1]);
          MmaBf16(s[2 * np + 1], a_reg, b_reg[2], b_reg[3]);
        }
      }

      if (transform_scores) {
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[nt][e] = CapScore(s[nt][e] * params.scale, params.logit_softcap) * kLog2e;
          }
      }
      // Element (nt, e) is row group + 8 * (e >> 1), key j0 + 8 nt + 2 quad + (e & 1).
      const int j0 = tile * C::kBlockN;
      const bool whole_tile_visible = j0 >= common_lo && j0 + C::kBlockN - 1 <= common_hi;
      if (!whole_tile_visible) {
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = j0 + nt * 8 + 2 * quad + (e & 1);
            const bool visible = e < 2 ? key >= lo0 && key <= hi0 : key >= lo1 && key <= hi1;
            if (!visible) s[nt][e] = -INFINITY;
          }
      }

      // Online softmax: the 4 lanes of a quad share a row.
      float max0 = -INFINITY, max1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt) {
        max0 = fmaxf(max0, fmaxf(s[nt][0], s[nt][1]));
        max1 = fmaxf(max1, fmaxf(s[nt][2], s[nt][3]));
      }
#pragma unroll
      for (int offset = 1; offset <= 2; offset <<= 1) {
        max0 = fmaxf(max0, __shfl_xor_sync(0xffffffffu, max0, offset));
        max1 = fmaxf(max1, __shfl_xor_sync(0xffffffffu, max1, offset));
      }
      const float new_m0 = fmaxf(m0, max0), new_m1 = fmaxf(m1, max1);
      // A row with nothing visible yet keeps m = -inf: subtract 0 so exp2(-inf) = 0, not NaN.
      const float base0 = new_m0 == -INFINITY ? 0.0f : new_m0 * score_mult;
      const float base1 = new_m1 == -INFINITY ? 0.0f : new_m1 * score_mult;
      const float alpha0 = Exp2(m0 * score_mult - base0);
      const float alpha1 = Exp2(m1 * score_mult - base1);
      m0 = new_m0;
      m1 = new_m1;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt) {
        s[nt][0] = Exp2(fmaf(s[nt][0], score_mult, -base0));
        s[nt][1] = Exp2(fmaf(s[nt][1], score_mult, -base0));
        s[nt][2] = Exp2(fmaf(s[nt][2], score_mult, -base1));
        s[nt][3] = Exp2(fmaf(s[nt][3], score_mult, -base1));
        sum0 += s[nt][0] + s[nt][1];
        sum1 += s[nt][2] + s[nt][3];
      }
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
#pragma unroll
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        o[dt][0] *= alpha0;
        o[dt][1] *= alpha0;
        o[dt][2] *= alpha1;
        o[dt][3] *= alpha1;
      }

      // O += P V. P's A fragment for keys 16kk..16kk+15 is S n-tiles 2kk (a0: row g,
      // a1: row g+8) and 2kk+1 (a2: row g, a3: row g+8), columns 2 quad, 2 quad + 1.
      const uint32_t v_stage = v_lane + stage * kStageBytes;
#pragma unroll
      for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
        const uint32_t p_reg[4] = {PackBf16(s[2 * kk][0], s[2 * kk][1]),
                                   PackBf16(s[2 * kk][2], s[2 * kk][3]),
                                   PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
          uint32_t b_reg[4];
          LdMatrixX4Trans(v_stage + kk * 16 * kRowBytes + dp * 32, b_reg);
          MmaBf16(o[2 * dp], p_reg, b_reg[0], b_reg[1]);
          MmaBf16(o[2 * dp + 1], p_reg, b_reg[2], b_reg[3]);
        }
      }
      __syncthreads();  // every warp is done with this stage before it is refilled
    }
  }
  // No copy may still be writing Q rows (an empty key range never waited for them).
  CpAsyncWait<0>();
  __syncthreads();

  // Epilogue: O / l as bf16 into this warp's own 16 Q rows, then 16-byte stores.
#pragma unroll
  for (int offset = 1; offset <= 2; offset <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, offset);
    l1 += __shfl_xor_sync(0xffffffffu, l1, offset);
  }
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f;
  const float inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  bf16* out_rows = q_s + warp * 16 * C::kStride;
#pragma unroll
  for (int dt = 0; dt < C::kDTiles; ++dt) {
    const int col = dt * 8 + 2 * quad;
    *reinterpret_cast<uint32_t*>(out_rows + group * C::kStride + col) =
        PackBf16(o[dt][0] * inv0, o[dt][1] * inv0);
    *reinterpret_cast<uint32_t*>(out_rows + (group + 8) * C::kStride + col) =
        PackBf16(o[dt][2] * inv1, o[dt][3] * inv1);
  }
  __syncwarp();
  const int64_t out_row_stride = int64_t{heads} * kDim;
  bf16* out_base = out + (int64_t{b} * seq * heads + h) * kDim;
#pragma unroll
  for (int i = 0; i < 16 * C::kChunksPerRow / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = idx / C::kChunksPerRow, c = (idx % C::kChunksPerRow) * 8;
    const int s_idx = s0 + warp * 16 + r;
    if (s_idx < seq) {
      *reinterpret_cast<Bf16x8*>(out_base + s_idx * out_row_stride + c) =
          *reinterpret_cast<const Bf16x8*>(out_rows + r * C::kStride + c);
    }
  }
}

template <int kDim>
absl::Status Launch(const bf16* q, const bf16* k, const bf16* v, const int32_t* positions,
                    int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
                    const AttentionKernelParams& params, bf16* out, cudaStream_t stream) {
  using C = PrefillConfig<kDim>;
  static const cudaError_t attribute_error = cudaFuncSetAttribute(
      AttentionPrefillKernel<kDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(C::kSmemBytes));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const int64_t q_tiles = CeilDiv(seq, C::kBlockM);
  const int64_t blocks = q_tiles * heads * batch;
  if (blocks > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: ", blocks, " blocks (seq x heads x batch) is too many"));
  }
  AttentionPrefillKernel<kDim><<<static_cast<unsigned>(blocks), C::kThreads, C::kSmemBytes,
                                 stream>>>(
      q, k, v, positions, static_cast<int>(batch), static_cast<int>(seq),
      static_cast<int>(heads), static_cast<int>(kv_len), static_cast<int>(kv_heads),
      static_cast<int>(q_tiles), params, out);
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
  if (kv_len <= 0 || kv_len > 0x7fffffff || seq > 0x7fffffff || heads > 65535 ||
      batch > 65535) {
    return absl::InvalidArgumentError("attention: kv_len, seq, heads or batch out of range");
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
