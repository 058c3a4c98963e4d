// Causal prefill attention on tensor cores (FlashAttention-2 tiles, mma.sync or wgmma, bf16).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Algorithm: FlashAttention-2 (Dao 2023, "FlashAttention-2: Faster Attention with Better
// Parallelism and Work Partitioning") with the online softmax of Milakov & Gimelshein 2018.
// Cost: 4 * visible_keys * head_dim FLOPs per (query, head) on the tensor cores, plus one
// exp2 per score on the SFU; K and V are read from L2 once per 128-query tile.
//
// Design (head_dim = D). Three tile shapes, all 128 query rows per CTA (AttentionPrefillTiles):
//   rows32 (default, D = 64 and 128): 4 warps x 32 rows (two m16 blocks of mma.m16n8k16
//     per warp, FlashAttention-2's split), so every K/V fragment read from shared memory
//     serves 32 rows; Q fragments re-read from shared memory each key tile. Key tiles of
//     32 keys at D = 128 (64 keys spill), 64 at D = 64. Two CTAs per SM.
//   rows16 (D = 256 always; D = 64 and 128 on request): 8 warps x 16 rows; Q fragments in
//     registers for D <= 128 (D = 256: from shared memory, registers do not allow it);
//     key tiles of 64 keys (32 at D = 256). One CTA per SM.
//   wgmma and wgmma-pipelined (D = 64 and 128, on request until timed on the GPU): 2
//     warpgroups x 64 rows, S and P·V on wgmma (sm_90a); the pipelined one overlaps the
//     softmax of one key tile with P·V of the previous (block comment above
//     AttentionPrefillWgmmaKernel).
//   Shared-memory traffic per FLOP, D = 128: rows16 reads 32 KiB of K/V fragments per
//   16 x 64 x 128 x 4 FLOPs (16 FLOP/B); rows32 reads 8 + 8 KiB of K/V and 8 KiB of Q per
//   32 x 32 x 128 x 4 (21.8 FLOP/B). At 128 B/clock/SM, 16 FLOP/B caps the tensor rate at
//   half the dense bf16 peak, the reason for rows32.
// - Grid: one CTA per (query tile, head, batch), flattened into blockIdx.x with the query
//   tile slowest and reversed, so that the latest tiles (the most keys under causality)
//   start first and the short ones fill the tail; neighbouring CTAs share a KV head (L2).
// - Key range: per query tile, the smallest visible key over its rows and the largest
//   (positions are arbitrary: chunked prefill, batches at different offsets) bound the key
//   loop. A key tile that every row of the query tile sees entirely skips the per-element
//   mask; others mask per element (j <= position, j > position - window, j < kv_len) from
//   the rows' ranges kept in shared memory. Key rows outside the tile's visible union are
//   zero-filled, never read, so unwritten cache rows (NaN) never reach P·V (0 * NaN = NaN).
// - Shared memory (bf16, rows padded by 16 bytes: conflict-free ldmatrix and cp.async):
//   Q [128][D+8], K [3][kBlockN][D+8], V [3][kBlockN][D+8], plus 1 KiB of row ranges.
//   rows32: D=64 72 KiB, D=128 85 KiB (two CTAs per SM); rows16: D=64 72 KiB, D=128
//   136 KiB, D=256 165 KiB.
// - Registers (ptxas, sm_90a, no spills): rows32 D=64 226, D=128 254; rows16 D=64 151,
//   D=128 213, D=256 240; wgmma D=64 120, D=128 167 (129 KiB shared memory, one CTA/SM);
//   wgmma-pipelined D=64 141, D=128 192 (161 KiB: four K/V stages).
//   Per warp, O holds kRowsPerWarp x D f32 and S kRowsPerWarp x kBlockN.
// - Pipeline: cp.async, three K/V stages: while key tile t is computed, tiles t+1 and t+2
//   are in flight. One barrier per tile: after it, tile t has landed for every warp and
//   every warp is done with tile t-1, whose stage receives tile t+2.
// - Per key tile, per warp: S = Q·K^T with mma.m16n8k16 (K fragments by ldmatrix.x4),
//   scores scaled by scale*log2(e) inside the exp2 FMA, online softmax in registers (row
//   max and sum across the 4 lanes of a quad), P converted to bf16 A fragments directly
//   from the S accumulators (the C layout of two m16n8 tiles is the A layout of one m16k16),
//   O += P·V with V fragments by ldmatrix.x4.trans.
// - Epilogue: O / l to bf16 staged through the warp's own Q rows in shared memory, then
//   stored with 16-byte coalesced writes; a row with no visible key gets zeros.
#include "runtime/cuda/attention_prefill.cuh"

#include <climits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"
#include "runtime/cuda/hopper.cuh"

namespace tessel::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// Tile shape: kWarps warps, each owning kMTiles blocks of 16 query rows (128 rows per CTA in
// both shapes used). One m16 block per warp keeps Q in registers (D <= 128) but reads each
// K/V fragment from shared memory for 16 rows only; two blocks per warp (FlashAttention-2's
// split) reuse each K/V fragment for 32 rows, halving the shared-memory traffic per FLOP,
// and re-read Q fragments from shared memory instead.
template <int kDim, int kWarpsArg, int kMTilesArg, int kBlockNArg>
struct PrefillConfig {
  static constexpr int kWarps = kWarpsArg;
  static constexpr int kMTiles = kMTilesArg;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = 16 * kMTiles;
  static constexpr int kBlockM = kWarps * kRowsPerWarp;  // query rows per CTA
  static constexpr int kBlockN = kBlockNArg;  // keys per tile
  static constexpr bool kQInRegisters = kMTiles == 1 && kDim <= 128;
  static constexpr int kStride = kDim + 8;  // bf16 per shared row (16-byte pad)
  static constexpr int kChunksPerRow = kDim / 8;  // 16-byte chunks
  static constexpr int kKSteps = kDim / 16;       // k16 steps of Q·K^T
  static constexpr int kNTiles = kBlockN / 8;     // n8 tiles of S
  static constexpr int kDTiles = kDim / 8;        // n8 tiles of O
  static constexpr int kQElems = kBlockM * kStride;
  static constexpr int kKVElems = kBlockN * kStride;
  static constexpr int kStages = 3;  // K/V tiles in shared memory: computing, two in flight
  static constexpr size_t kSmemBytes = sizeof(bf16) * (kQElems + 2 * kStages * kKVElems);
  // Two CTAs per SM where shared memory allows (registers decide in the end).
  static constexpr int kMinBlocksPerSm = 2 * kSmemBytes <= 220 * 1024 && kWarps <= 4 ? 2 : 1;
  static_assert(kBlockN % 16 == 0 && kDim % 16 == 0, "mma tiles");
  static_assert((kBlockN * kChunksPerRow) % kThreads == 0, "K/V tile load is exact");
  static_assert((kRowsPerWarp * kChunksPerRow) % 32 == 0, "output store is exact");
};

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

template <int kDim, int kWarps, int kMTiles, int kBlockN>
__global__ void __launch_bounds__(PrefillConfig<kDim, kWarps, kMTiles, kBlockN>::kThreads,
                                  PrefillConfig<kDim, kWarps, kMTiles, kBlockN>::kMinBlocksPerSm)
    AttentionPrefillKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                           const bf16* __restrict__ v, const int32_t* __restrict__ positions,
                           int batch, int seq, int heads, int kv_len, int kv_heads, int q_tiles,
                           AttentionKernelParams params, bf16* __restrict__ out) {
  using C = PrefillConfig<kDim, kWarps, kMTiles, kBlockN>;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kBlockM][kStride]
  bf16* k_s = q_s + C::kQElems;               // [kStages][kBlockN][kStride]
  bf16* v_s = k_s + C::kStages * C::kKVElems;  // [kStages][kBlockN][kStride]
  // Union of the rows' visible keys [0]..[1]; keys every row sees [2]..[3].
  __shared__ int key_range[4];
  // Visible keys [x, y] of each row of the tile (read only by tiles that need a mask).
  __shared__ int2 row_keys[C::kBlockM];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = lane >> 2, quad = lane & 3;  // fragment row (and row + 8), column pair
  const int heads_x_batch = heads * batch;
  const int q_tile = q_tiles - 1 - static_cast<int>(blockIdx.x) / heads_x_batch;
  const int head_batch = static_cast<int>(blockIdx.x) % heads_x_batch;
  const int h = head_batch % heads, b = head_batch / heads;
  const int kvh = h / (heads / kv_heads);
  const int s0 = q_tile * C::kBlockM;
  const int warp_row0 = warp * C::kRowsPerWarp;  // first row of this warp in the tile

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

  __syncthreads();  // key_range initialized
  {
    int union_lo = INT_MAX, union_hi = -1, common_lo = INT_MIN, common_hi = INT_MAX;
    for (int r = tid; r < C::kBlockM; r += C::kThreads) {
      int lo = 0, hi = -1;  // rows past seq see nothing (and do not narrow the ranges)
      if (s0 + r < seq) {
        VisibleKeys(positions[int64_t{b} * seq + s0 + r], kv_len, params, &lo, &hi);
        if (hi >= lo) {
          union_lo = min(union_lo, lo);
          union_hi = max(union_hi, hi);
        }
        common_lo = max(common_lo, lo);
        common_hi = min(common_hi, hi);
      }
      row_keys[r] = make_int2(lo, hi);
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

  constexpr uint32_t kStageBytes = C::kKVElems * sizeof(bf16);
  constexpr uint32_t kRowBytes = C::kStride * sizeof(bf16);
  // Per-lane ldmatrix row addresses (bytes), see LdMatrixX4:
  // Q (A operand, 16x16 at k-step kk, m16 block mt at + mt * 16 rows): matrices (rows 0-7,
  //   k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
  const uint32_t q_lane =
      SmemAddress(q_s + (warp_row0 + (lane & 15)) * C::kStride + (lane >> 4) * 8);
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

  // Scores are dot * scale, soft-capped if asked; the softmax works in base 2. The fast
  // path folds scale * log2(e) into the exp2 FMA (needs scale > 0 so that the row max of
  // raw dots is the max of scores); otherwise scores are transformed in place first.
  const bool transform_scores = params.logit_softcap > 0.0f || !(params.scale > 0.0f);
  const float score_mult = transform_scores ? 1.0f : params.scale * kLog2e;

  float o[kMTiles][C::kDTiles][4];
  float row_max[kMTiles][2];  // of (transformed) scores
  float row_sum[kMTiles][2];  // this lane's part
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_max[mt][half] = -INFINITY;
      row_sum[mt][half] = 0.0f;
    }
  }

  if (union_hi >= union_lo) {
    const int first_tile = union_lo / C::kBlockN, last_tile = union_hi / C::kBlockN;
    // Prologue: tiles first and first + 1 in flight, one commit group each (empty when
    // there is no second tile, so that the group count stays uniform).
    load_kv_tile(first_tile, 0);
    CpAsyncCommit();
    if (first_tile < last_tile) load_kv_tile(first_tile + 1, 1);
    CpAsyncCommit();

    uint32_t q_frag[C::kQInRegisters ? C::kKSteps : 1][4];
    if constexpr (C::kQInRegisters) {
      CpAsyncWait<2>();  // Q landed (the first K/V tiles may still be in flight)
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < C::kKSteps; ++kk) LdMatrixX4(q_lane + kk * 32, q_frag[kk]);
    }

    int stage = 0;  // (tile - first_tile) % kStages
    for (int tile = first_tile; tile <= last_tile; ++tile) {
      // Groups committed so far end with tile + 1's (maybe empty): all but the newest one
      // complete means this tile (and Q) landed.
      CpAsyncWait<1>();
      // This tile visible to all warps, and every warp done with tile - 1, whose stage
      // (tile + 2's, modulo kStages) is refilled next.
      __syncthreads();
      const int refill = stage == 0 ? C::kStages - 1 : stage - 1;
      if (tile + 2 <= last_tile) load_kv_tile(tile + 2, refill);
      CpAsyncCommit();

      // S = Q K^T (kRowsPerWarp x kBlockN per warp).
      float s[kMTiles][C::kNTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
      const uint32_t k_stage = k_lane + stage * kStageBytes;
      // Fully unrolled only where Q lives in registers (indexed by kk): a rolled loop keeps
      // ptxas from hoisting every step's fragment loads at once (spills at 32 rows / warp).
#pragma unroll(C::kQInRegisters ? C::kKSteps : 2)
      for (int kk = 0; kk < C::kKSteps; ++kk) {
        uint32_t a_reg[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          if constexpr (C::kQInRegisters) {
#pragma unroll
            for (int e = 0; e < 4; ++e) a_reg[mt][e] = q_frag[kk][e];
          } else {
            LdMatrixX4(q_lane + mt * 16 * kRowBytes + kk * 32, a_reg[mt]);
          }
        }
#pragma unroll
        for (int np = 0; np < C::kNTiles / 2; ++np) {
          uint32_t b_reg[4];
          LdMatrixX4(k_stage + np * 16 * kRowBytes + kk * 32, b_reg);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            MmaBf16(s[mt][2 * np], a_reg[mt], b_reg[0], b_reg[1]);
            MmaBf16(s[mt][2 * np + 1], a_reg[mt], b_reg[2], b_reg[3]);
          }
        }
      }

      if (transform_scores) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              s[mt][nt][e] = CapScore(s[mt][nt][e] * params.scale, params.logit_softcap) * kLog2e;
            }
      }
      // Element (mt, nt, e) is row 16 mt + group + 8 (e >> 1) of the warp's rows, key
      // j0 + 8 nt + 2 quad + (e & 1).
      const int j0 = tile * C::kBlockN;
      const bool whole_tile_visible = j0 >= common_lo && j0 + C::kBlockN - 1 <= common_hi;
      if (!whole_tile_visible) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int2 keys = row_keys[warp_row0 + mt * 16 + group + 8 * half];
#pragma unroll
            for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
              for (int e = 2 * half; e < 2 * half + 2; ++e) {
                const int key = j0 + nt * 8 + 2 * quad + (e & 1);
                if (key < keys.x || key > keys.y) s[mt][nt][e] = -INFINITY;
              }
          }
      }

      // Online softmax: the 4 lanes of a quad share a row.
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          float tile_max = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < C::kNTiles; ++nt) {
            tile_max = fmaxf(tile_max, fmaxf(s[mt][nt][2 * half], s[mt][nt][2 * half + 1]));
          }
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
          float base;
          const float alpha =
              OnlineSoftmaxRescale(row_max[mt][half], tile_max, score_mult, base);
          float tile_sum = 0.0f;
#pragma unroll
          for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
            for (int e = 2 * half; e < 2 * half + 2; ++e) {
              s[mt][nt][e] = Exp2(fmaf(s[mt][nt][e], score_mult, -base));
              tile_sum += s[mt][nt][e];
            }
          row_sum[mt][half] = row_sum[mt][half] * alpha + tile_sum;
#pragma unroll
          for (int dt = 0; dt < C::kDTiles; ++dt) {
            o[mt][dt][2 * half] *= alpha;
            o[mt][dt][2 * half + 1] *= alpha;
          }
        }

      // O += P V. P's A fragment for keys 16kk..16kk+15 is S n-tiles 2kk (a0: row g,
      // a1: row g+8) and 2kk+1 (a2: row g, a3: row g+8), columns 2 quad, 2 quad + 1.
      const uint32_t v_stage = v_lane + stage * kStageBytes;
#pragma unroll
      for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
        uint32_t p_reg[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          p_reg[mt][0] = PackBf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          p_reg[mt][1] = PackBf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          p_reg[mt][2] = PackBf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          p_reg[mt][3] = PackBf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
          uint32_t b_reg[4];
          LdMatrixX4Trans(v_stage + kk * 16 * kRowBytes + dp * 32, b_reg);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            MmaBf16(o[mt][2 * dp], p_reg[mt], b_reg[0], b_reg[1]);
            MmaBf16(o[mt][2 * dp + 1], p_reg[mt], b_reg[2], b_reg[3]);
          }
        }
      }
      stage = stage == C::kStages - 1 ? 0 : stage + 1;
    }
  }
  // No copy may still be writing Q rows (an empty key range never waited for them).
  CpAsyncWait<0>();
  __syncthreads();

  // Epilogue: O / l as bf16 into this warp's own Q rows, then 16-byte stores.
  bf16* out_rows = q_s + warp_row0 * C::kStride;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float total = row_sum[mt][half];
      total += __shfl_xor_sync(0xffffffffu, total, 1);
      total += __shfl_xor_sync(0xffffffffu, total, 2);
      const float inv = total > 0.0f ? 1.0f / total : 0.0f;
      bf16* dst = out_rows + (mt * 16 + group + 8 * half) * C::kStride + 2 * quad;
#pragma unroll
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        *reinterpret_cast<uint32_t*>(dst + dt * 8) =
            PackBf16(o[mt][dt][2 * half] * inv, o[mt][dt][2 * half + 1] * inv);
      }
    }
  __syncwarp();
  const int64_t out_row_stride = int64_t{heads} * kDim;
  bf16* out_base = out + (int64_t{b} * seq * heads + h) * kDim;
#pragma unroll
  for (int i = 0; i < C::kRowsPerWarp * C::kChunksPerRow / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = idx / C::kChunksPerRow, c = (idx % C::kChunksPerRow) * 8;
    const int s_idx = s0 + warp_row0 + r;
    if (s_idx < seq) {
      *reinterpret_cast<Bf16x8*>(out_base + s_idx * out_row_stride + c) =
          *reinterpret_cast<const Bf16x8*>(out_rows + r * C::kStride + c);
    }
  }
}

template <int kDim, int kWarps, int kMTiles, int kBlockN>
absl::Status Launch(const bf16* q, const bf16* k, const bf16* v, const int32_t* positions,
                    int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
                    const AttentionKernelParams& params, bf16* out, cudaStream_t stream) {
  using C = PrefillConfig<kDim, kWarps, kMTiles, kBlockN>;
  static const cudaError_t attribute_error =
      cudaFuncSetAttribute(AttentionPrefillKernel<kDim, kWarps, kMTiles, kBlockN>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(C::kSmemBytes));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const int64_t q_tiles = CeilDiv(seq, C::kBlockM);
  const int64_t blocks = q_tiles * heads * batch;
  if (blocks > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: ", blocks, " blocks (seq x heads x batch) is too many"));
  }
  AttentionPrefillKernel<kDim, kWarps, kMTiles, kBlockN>
      <<<static_cast<unsigned>(blocks), C::kThreads, C::kSmemBytes, stream>>>(
          q, k, v, positions, static_cast<int>(batch), static_cast<int>(seq),
          static_cast<int>(heads), static_cast<int>(kv_len), static_cast<int>(kv_heads),
          static_cast<int>(q_tiles), params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionPrefillKernel");
  return absl::OkStatus();
}

// --- wgmma shapes (sm_90a): AttentionPrefillTiles::kWgmma, kWgmmaPipelined ---------------
//
// Same algorithm, tiles and masks as the 8-warp mma.sync shape (128 query rows, warp w owns
// rows 16w..16w+15, key tiles of 64, three K/V stages, one barrier per tile), with the two
// products on warpgroup MMA: warpgroup g (warps 4g..4g+3) owns rows 64g..64g+63.
//   S = Q K^T: wgmma.m64n64k16, Q and K from shared memory (both K-major), D/16 steps.
//   O += P V: wgmma.m64n{D}k16, P from registers (the S accumulators repacked as bf16: the
//     accumulator layout of wgmma per warp is the C layout of mma.m16n8k16, the register A
//     layout is its A layout), V from shared memory N-major (imm-trans-b = 1), 4 steps.
// Shared memory is in the 128-byte swizzle of wgmma: a row of 64 bf16 (128 bytes) per
// "atom row", 16-byte chunk c of row r stored at chunk c ^ (r % 8), atoms of 8 rows 1024
// bytes apart (SBO); head_dim 128 is two atoms wide: [D / 64][rows][64]. For V (N-major
// B) the 64-wide d blocks are LBO apart and 8-key groups SBO = 1024 apart.
// Pipelined (AttentionPrefillTiles::kWgmmaPipelined, FlashAttention-3's intra-warpgroup
// overlap, Shah et al. 2024): per key tile t a warpgroup issues S(t+1) = Q K(t+1)^T and
// O += P(t) V(t) back to back, waits for S(t+1) only, runs the softmax of t+1 while
// P(t) V(t) is on the tensor cores, then waits for it and rescales O. K(t+1) is needed one
// tile earlier, so four K/V stages keep one tile of prefetch slack.
constexpr int kWgmmaBlockM = 128;
constexpr int kWgmmaBlockN = 64;
constexpr int kWgmmaThreads = 256;

template <int kDim, bool kPipelined>
struct WgmmaConfig {
  static constexpr int kStages = kPipelined ? 4 : 3;
  static constexpr int kAtoms = kDim / 64;                     // 128-byte column blocks
  static constexpr uint32_t kQAtomBytes = kWgmmaBlockM * 128;  // one column block of Q
  static constexpr uint32_t kKVAtomBytes = kWgmmaBlockN * 128;
  static constexpr uint32_t kQBytes = kAtoms * kQAtomBytes;
  static constexpr uint32_t kKVBytes = kAtoms * kKVAtomBytes;  // one stage of K (or V)
  static constexpr int kStride = kDim + 8;  // epilogue staging rows (bf16), in the K stages
  static constexpr size_t kSmemBytes =
      1024 + kQBytes + 2 * kStages * static_cast<size_t>(kKVBytes);  // + alignment
  static_assert(kWgmmaBlockM * kStride * 2 <= kStages * kKVBytes, "staging fits");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // device helpers of the wgmma shape: sm_90a only
// Byte offset of element (row, col) in a 128-byte-swizzled [kDim / 64][rows][64] tile.
__device__ __forceinline__ uint32_t SwizzledOffset(int row, int col, uint32_t atom_bytes) {
  const int chunk = (col & 63) >> 3;
  return (col >> 6) * atom_bytes + row * 128 + ((chunk ^ (row & 7)) << 4) + (col & 7) * 2;
}

// D (64 x 64 f32) += A (64 x 16 bf16) * B (16 x 64 bf16), both K-major in shared memory.
__device__ __forceinline__ void WgmmaSS64(float (&d)[32], uint64_t desc_a,
                                          uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
        "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
        "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "n"(1));
}

// D (64 x 64 f32) += A (64 x 16 bf16 in registers, each warp's 16 rows in the A layout of
// mma.m16n8k16) * B (16 x 64 bf16 in shared memory, N-major: imm-trans-b = 1).
__device__ __forceinline__ void WgmmaRS64(float (&d)[32], const uint32_t (&a)[4],
                                          uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
        "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
        "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1));
}

// D (64 x 128 f32) += A (64 x 16 bf16 in registers, each warp's 16 rows in the A layout of
// mma.m16n8k16) * B (16 x 128 bf16 in shared memory, N-major: imm-trans-b = 1).
__device__ __forceinline__ void WgmmaRS128(float (&d)[64], const uint32_t (&a)[4],
                                          uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
        "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
        "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
        "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
        "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
        "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1));
}

template <int kDim>
__device__ __forceinline__ void WgmmaPV(float (&o)[kDim / 2], const uint32_t (&a)[4],
                                        uint64_t desc_b);
template <>
__device__ __forceinline__ void WgmmaPV<64>(float (&o)[32], const uint32_t (&a)[4],
                                            uint64_t desc_b) {
  WgmmaRS64(o, a, desc_b);
}
template <>
__device__ __forceinline__ void WgmmaPV<128>(float (&o)[64], const uint32_t (&a)[4],
                                             uint64_t desc_b) {
  WgmmaRS128(o, a, desc_b);
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <int kDim, bool kPipelined>
__global__ void __launch_bounds__(kWgmmaThreads, 1)
    AttentionPrefillWgmmaKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                const bf16* __restrict__ v,
                                const int32_t* __restrict__ positions, int batch, int seq,
                                int heads, int kv_len, int kv_heads, int q_tiles,
                                AttentionKernelParams params, bf16* __restrict__ out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgmmaConfig<kDim, kPipelined>;
  constexpr int kStages = C::kStages;
  constexpr int kNTiles = kWgmmaBlockN / 8;
  constexpr int kDTiles = kDim / 8;
  constexpr int kChunksPerRow = kDim / 8;
  constexpr int kPSteps = kWgmmaBlockN / 16;  // k16 steps of P V
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // 1024-byte aligned base: the swizzle pattern repeats every 1024 bytes (base offset 0).
  const uint32_t raw_address = SmemAddress(smem_raw);
  const uint32_t align_pad = ((raw_address + 1023) & ~1023u) - raw_address;
  unsigned char* smem = smem_raw + align_pad;
  const uint32_t q_address = raw_address + align_pad;
  const uint32_t k_address = q_address + C::kQBytes;
  const uint32_t v_address = k_address + kStages * C::kKVBytes;
  __shared__ int key_range[4];
  __shared__ int2 row_keys[kWgmmaBlockM];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = lane >> 2, quad = lane & 3;
  const int warpgroup = warp >> 2;
  const int heads_x_batch = heads * batch;
  const int q_tile = q_tiles - 1 - static_cast<int>(blockIdx.x) / heads_x_batch;
  const int head_batch = static_cast<int>(blockIdx.x) % heads_x_batch;
  const int h = head_batch % heads, b = head_batch / heads;
  const int kvh = h / (heads / kv_heads);
  const int s0 = q_tile * kWgmmaBlockM;
  const int warp_row0 = warp * 16;

  if (tid == 0) {
    key_range[0] = INT_MAX;
    key_range[1] = -1;
    key_range[2] = INT_MIN;
    key_range[3] = INT_MAX;
  }
  {
    const int64_t q_row_stride = int64_t{heads} * kDim;
    const bf16* q_base = q + (int64_t{b} * seq * heads + h) * kDim;
    for (int idx = tid; idx < kWgmmaBlockM * kChunksPerRow; idx += kWgmmaThreads) {
      const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
      const bool valid = s0 + r < seq;
      const int64_t offset = valid ? (s0 + r) * q_row_stride + c : 0;
      CpAsync16(smem + SwizzledOffset(r, c, C::kQAtomBytes), q_base + offset, valid);
    }
    CpAsyncCommit();
  }
  __syncthreads();  // key_range initialized
  {
    int union_lo = INT_MAX, union_hi = -1, common_lo = INT_MIN, common_hi = INT_MAX;
    for (int r = tid; r < kWgmmaBlockM; r += kWgmmaThreads) {
      int lo = 0, hi = -1;
      if (s0 + r < seq) {
        VisibleKeys(positions[int64_t{b} * seq + s0 + r], kv_len, params, &lo, &hi);
        if (hi >= lo) {
          union_lo = min(union_lo, lo);
          union_hi = max(union_hi, hi);
        }
        common_lo = max(common_lo, lo);
        common_hi = min(common_hi, hi);
      }
      row_keys[r] = make_int2(lo, hi);
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
    const int j0 = tile * kWgmmaBlockN;
    unsigned char* ks = smem + C::kQBytes + stage * C::kKVBytes;
    unsigned char* vs = smem + C::kQBytes + (kStages + stage) * C::kKVBytes;
#pragma unroll
    for (int i = 0; i < kWgmmaBlockN * kChunksPerRow / kWgmmaThreads; ++i) {
      const int idx = tid + i * kWgmmaThreads;
      const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
      const int key = j0 + r;
      const bool valid = key >= union_lo && key <= union_hi;
      const int64_t offset = valid ? key * kv_row_stride + c : 0;
      const uint32_t dst = SwizzledOffset(r, c, C::kKVAtomBytes);
      CpAsync16(ks + dst, k_base + offset, valid);
      CpAsync16(vs + dst, v_base + offset, valid);
    }
  };

  const bool transform_scores = params.logit_softcap > 0.0f || !(params.scale > 0.0f);
  const float score_mult = transform_scores ? 1.0f : params.scale * kLog2e;

  // o[4 dt + e] and s[4 nt + e]: the mma.m16n8 C layout per n8 tile (row group + 8 (e >> 1),
  // column 8 tile + 2 quad + (e & 1)).
  float o[kDim / 2];
#pragma unroll
  for (int i = 0; i < kDim / 2; ++i) o[i] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

  // Issues S = Q K^T of the tile in `stage` for this warpgroup's 64 rows (not waited).
  auto issue_scores = [&](float (&s)[kNTiles * 4], int stage) {
    const uint32_t k_stage = k_address + stage * C::kKVBytes;
#pragma unroll
    for (int kk = 0; kk < kDim / 16; ++kk) {
      const uint32_t column = (kk & 3) * 32;  // k16 step inside the 128-byte row
      const uint64_t desc_q = WgmmaDescriptor(
          q_address + (kk >> 2) * C::kQAtomBytes + warpgroup * 64 * 128 + column, 16, 1024);
      const uint64_t desc_k =
          WgmmaDescriptor(k_stage + (kk >> 2) * C::kKVAtomBytes + column, 16, 1024);
      WgmmaSS64(s, desc_q, desc_k);
    }
  };
  // Issues O += P V of the tile in `stage` (not waited).
  auto issue_pv = [&](const uint32_t (&p)[kPSteps][4], int stage) {
    const uint32_t v_stage = v_address + stage * C::kKVBytes;
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) {
      const uint64_t desc_v = WgmmaDescriptor(v_stage + kk * 16 * 128, C::kKVAtomBytes, 1024);
      WgmmaPV<kDim>(o, p[kk], desc_v);
    }
  };
  // Masks, soft-caps and exponentiates the scores of `tile` in place (online softmax: the
  // row max and sum move on; alpha rescales what O held before this tile).
  auto softmax = [&](float (&s)[kNTiles * 4], int tile, float (&alpha)[2]) {
    if (transform_scores) {
#pragma unroll
      for (int i = 0; i < kNTiles * 4; ++i) {
        s[i] = CapScore(s[i] * params.scale, params.logit_softcap) * kLog2e;
      }
    }
    const int j0 = tile * kWgmmaBlockN;
    if (!(j0 >= common_lo && j0 + kWgmmaBlockN - 1 <= common_hi)) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int2 keys = row_keys[warp_row0 + group + 8 * half];
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            const int key = j0 + nt * 8 + 2 * quad + (e & 1);
            if (key < keys.x || key > keys.y) s[4 * nt + e] = -INFINITY;
          }
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        tile_max = fmaxf(tile_max, fmaxf(s[4 * nt + 2 * half], s[4 * nt + 2 * half + 1]));
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      float base;
      alpha[half] = OnlineSoftmaxRescale(row_max[half], tile_max, score_mult, base);
      float tile_sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 2 * half; e < 2 * half + 2; ++e) {
          s[4 * nt + e] = Exp2(fmaf(s[4 * nt + e], score_mult, -base));
          tile_sum += s[4 * nt + e];
        }
      row_sum[half] = row_sum[half] * alpha[half] + tile_sum;
    }
  };
  auto rescale_o = [&](const float (&alpha)[2]) {
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      o[4 * dt + 0] *= alpha[0];
      o[4 * dt + 1] *= alpha[0];
      o[4 * dt + 2] *= alpha[1];
      o[4 * dt + 3] *= alpha[1];
    }
  };
  // P's A fragment for keys 16kk..16kk+15: S n-tiles 2kk (a0: row g, a1: row g+8) and
  // 2kk+1 (a2: row g, a3: row g+8), columns 2 quad, 2 quad + 1.
  auto pack_p = [&](const float (&s)[kNTiles * 4], uint32_t (&p)[kPSteps][4]) {
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) {
      p[kk][0] = PackBf16(s[8 * kk + 0], s[8 * kk + 1]);
      p[kk][1] = PackBf16(s[8 * kk + 2], s[8 * kk + 3]);
      p[kk][2] = PackBf16(s[8 * kk + 4], s[8 * kk + 5]);
      p[kk][3] = PackBf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
  };
  auto fence_o = [&]() {
#pragma unroll
    for (int i = 0; i < kDim / 2; ++i) FenceOperand(o[i]);
  };
  auto fence_s = [&](float (&s)[kNTiles * 4]) {
#pragma unroll
    for (int i = 0; i < kNTiles * 4; ++i) FenceOperand(s[i]);
  };
  auto fence_p = [&](uint32_t (&p)[kPSteps][4]) {
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
      for (int e = 0; e < 4; ++e) FenceOperand(p[kk][e]);
  };

  if (union_hi >= union_lo) {
    const int first_tile = union_lo / kWgmmaBlockN, last_tile = union_hi / kWgmmaBlockN;
    // Prologue: the first kStages - 1 tiles in flight, one commit group each (empty past
    // the last tile, so that the group count stays uniform).
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) {
      if (first_tile + i <= last_tile) load_kv_tile(first_tile + i, i);
      CpAsyncCommit();
    }
    float s[kNTiles * 4];
    float alpha[2];
    if constexpr (!kPipelined) {
      int stage = 0;  // (tile - first_tile) % kStages
      for (int tile = first_tile; tile <= last_tile; ++tile) {
        // Groups committed so far end with tile + 1's: all but the newest complete means
        // this tile (and Q) landed.
        CpAsyncWait<kStages - 2>();
        FenceProxyAsync();  // this thread's cp.async writes -> visible to the async proxy
        // This tile visible to all warps, and every warp done with tile - 1, whose stage
        // receives tile + kStages - 1.
        __syncthreads();
        const int refill = stage == 0 ? kStages - 1 : stage - 1;
        if (tile + kStages - 1 <= last_tile) load_kv_tile(tile + kStages - 1, refill);
        CpAsyncCommit();

#pragma unroll
        for (int i = 0; i < kNTiles * 4; ++i) s[i] = 0.0f;
        fence_s(s);
        WgmmaFence();
        issue_scores(s, stage);
        WgmmaCommit();
        WgmmaWaitAll();
        fence_s(s);
        softmax(s, tile, alpha);
        rescale_o(alpha);
        uint32_t p[kPSteps][4];
        pack_p(s, p);
        fence_p(p);
        fence_o();
        WgmmaFence();
        issue_pv(p, stage);
        WgmmaCommit();
        WgmmaWaitAll();
        fence_o();
        stage = stage == kStages - 1 ? 0 : stage + 1;
      }
    } else {
      // Scores of the first tile, alone.
      CpAsyncWait<kStages - 2>();  // Q and the first tile landed
      FenceProxyAsync();
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kNTiles * 4; ++i) s[i] = 0.0f;
      fence_s(s);
      WgmmaFence();
      issue_scores(s, 0);
      WgmmaCommit();
      WgmmaWaitAll();
      fence_s(s);
      softmax(s, first_tile, alpha);  // O is still zero: nothing to rescale
      uint32_t p[kPSteps][4];
      pack_p(s, p);

      int stage = 0;  // (tile - first_tile) % kStages
      // Every tile but the last: S(tile + 1) and P(tile) V(tile) in flight together. The last
      // tile is peeled off so that the loop body has no branch around the wgmma groups
      // (ptxas serializes wgmma when it cannot match waits to groups on every path).
      for (int tile = first_tile; tile < last_tile; ++tile) {
        const int next_stage = stage == kStages - 1 ? 0 : stage + 1;
        // Groups committed so far end with tile + 2's: all but the newest complete means
        // tile + 1 landed.
        CpAsyncWait<1>();
        FenceProxyAsync();
        // Tile + 1 visible to all warps, and every warp done with tile - 1 (its P V was
        // waited for), whose stage receives tile + 3.
        __syncthreads();
        const int refill = stage == 0 ? kStages - 1 : stage - 1;
        if (tile + 3 <= last_tile) load_kv_tile(tile + 3, refill);
        CpAsyncCommit();

#pragma unroll
        for (int i = 0; i < kNTiles * 4; ++i) s[i] = 0.0f;
        fence_s(s);
        WgmmaFence();
        issue_scores(s, next_stage);
        WgmmaCommit();
        fence_p(p);
        fence_o();
        WgmmaFence();
        issue_pv(p, stage);
        WgmmaCommit();
        // S(tile + 1) done (groups complete in order); P(tile) V(tile) may still run.
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
        fence_s(s);
        softmax(s, tile + 1, alpha);
        WgmmaWaitAll();
        fence_o();
        fence_p(p);
        rescale_o(alpha);
        pack_p(s, p);
        stage = next_stage;
      }
      // The last tile: P V only (its K/V landed before its scores were computed).
      fence_p(p);
      fence_o();
      WgmmaFence();
      issue_pv(p, stage);
      WgmmaCommit();
      WgmmaWaitAll();
      fence_o();
    }
  }
  CpAsyncWait<0>();
  __syncthreads();  // every warp done with the K stages (the epilogue staging area)

  bf16* staging = reinterpret_cast<bf16*>(smem + C::kQBytes);
  bf16* out_rows = staging + warp_row0 * C::kStride;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float total = row_sum[half];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    bf16* dst = out_rows + (group + 8 * half) * C::kStride + 2 * quad;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      *reinterpret_cast<uint32_t*>(dst + dt * 8) =
          PackBf16(o[4 * dt + 2 * half] * inv, o[4 * dt + 2 * half + 1] * inv);
    }
  }
  __syncwarp();
  const int64_t out_row_stride = int64_t{heads} * kDim;
  bf16* out_base = out + (int64_t{b} * seq * heads + h) * kDim;
#pragma unroll
  for (int i = 0; i < 16 * kChunksPerRow / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
    const int s_idx = s0 + warp_row0 + r;
    if (s_idx < seq) {
      *reinterpret_cast<Bf16x8*>(out_base + s_idx * out_row_stride + c) =
          *reinterpret_cast<const Bf16x8*>(out_rows + r * C::kStride + c);
    }
  }
#else
  __trap();  // wgmma exists only in sm_90a code (the compute_90 PTX cannot run this shape)
#endif
}

template <int kDim, bool kPipelined>
absl::Status LaunchWgmma(const bf16* q, const bf16* k, const bf16* v, const int32_t* positions,
                         int64_t batch, int64_t seq, int64_t heads, int64_t kv_len,
                         int64_t kv_heads, const AttentionKernelParams& params, bf16* out,
                         cudaStream_t stream) {
  using C = WgmmaConfig<kDim, kPipelined>;
  static const cudaError_t attribute_error =
      cudaFuncSetAttribute(AttentionPrefillWgmmaKernel<kDim, kPipelined>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(C::kSmemBytes));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const int64_t q_tiles = CeilDiv(seq, kWgmmaBlockM);
  const int64_t blocks = q_tiles * heads * batch;
  if (blocks > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: ", blocks, " blocks (seq x heads x batch) is too many"));
  }
  AttentionPrefillWgmmaKernel<kDim, kPipelined>
      <<<static_cast<unsigned>(blocks), kWgmmaThreads, C::kSmemBytes, stream>>>(
          q, k, v, positions, static_cast<int>(batch), static_cast<int>(seq),
          static_cast<int>(heads), static_cast<int>(kv_len), static_cast<int>(kv_heads),
          static_cast<int>(q_tiles), params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionPrefillWgmmaKernel");
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchAttentionPrefillWithTiles(const bf16* q, const bf16* k, const bf16* v,
                                             const int32_t* positions, int64_t batch,
                                             int64_t seq, int64_t heads, int64_t kv_len,
                                             int64_t kv_heads, int64_t head_dim,
                                             const AttentionKernelParams& params,
                                             AttentionPrefillTiles tiles, bf16* out,
                                             cudaStream_t stream) {
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
  if (tiles == AttentionPrefillTiles::kDefault) {
    // wgmma (sm_90a machine code only; the PTX of other GPUs has no wgmma body) measured
    // fastest on the H100 (bench_kernels: 342 vs 262 TFLOP/s at 2048 tokens, D 128).
    tiles = (head_dim == 64 || head_dim == 128) && DeviceIsSm90()
                ? AttentionPrefillTiles::kWgmma
                : AttentionPrefillTiles::kRows32PerWarp;
  }
  if ((tiles == AttentionPrefillTiles::kWgmma ||
       tiles == AttentionPrefillTiles::kWgmmaPipelined) && !DeviceIsSm90()) {
    return absl::InvalidArgumentError("attention: the wgmma tiles need an sm_90 GPU");
  }
  const bool rows32 = tiles == AttentionPrefillTiles::kRows32PerWarp;
  const bool wgmma = tiles == AttentionPrefillTiles::kWgmma;
  const bool wgmma_pipelined = tiles == AttentionPrefillTiles::kWgmmaPipelined;
  if (head_dim == 64 && (wgmma || wgmma_pipelined)) {
    return wgmma ? LaunchWgmma<64, false>(q, k, v, positions, batch, seq, heads, kv_len,
                                          kv_heads, params, out, stream)
                 : LaunchWgmma<64, true>(q, k, v, positions, batch, seq, heads, kv_len,
                                         kv_heads, params, out, stream);
  }
  if (head_dim == 128 && (wgmma || wgmma_pipelined)) {
    return wgmma ? LaunchWgmma<128, false>(q, k, v, positions, batch, seq, heads, kv_len,
                                           kv_heads, params, out, stream)
                 : LaunchWgmma<128, true>(q, k, v, positions, batch, seq, heads, kv_len,
                                          kv_heads, params, out, stream);
  }
  switch (head_dim) {
    case 64:
      return rows32 ? Launch<64, 4, 2, 64>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads,
                                       params, out, stream)
                    : Launch<64, 8, 1, 64>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads,
                                       params, out, stream);
    case 128:
      return rows32 ? Launch<128, 4, 2, 32>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads,
                                        params, out, stream)
                    : Launch<128, 8, 1, 64>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads,
                                        params, out, stream);
    case 256:  // 32 rows per warp would need 256 registers of O alone
      return Launch<256, 8, 1, 32>(q, k, v, positions, batch, seq, heads, kv_len, kv_heads, params,
                               out, stream);
    default:
      return absl::UnimplementedError(
          absl::StrCat("attention: head_dim ", head_dim, " (supported: 64, 128, 256)"));
  }
}

absl::Status LaunchAttentionPrefill(const bf16* q, const bf16* k, const bf16* v,
                                    const int32_t* positions, int64_t batch, int64_t seq,
                                    int64_t heads, int64_t kv_len, int64_t kv_heads,
                                    int64_t head_dim, const AttentionKernelParams& params,
                                    bf16* out, cudaStream_t stream) {
  return LaunchAttentionPrefillWithTiles(q, k, v, positions, batch, seq, heads, kv_len,
                                         kv_heads, head_dim, params,
                                         AttentionPrefillTiles::kDefault, out, stream);
}

}  // namespace tessel::cuda
