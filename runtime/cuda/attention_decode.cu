// Decode attention on tensor cores: one query per sequence, flash-decoding splits merged by
// the last block of each head group to finish (one launch).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Algorithm: flash-decoding (Dao et al. 2023, "Flash-Decoding for long-context inference"):
// the visible keys of a sequence are cut into splits computed by separate blocks, each with
// the online softmax of Milakov & Gimelshein 2018; the splits' partial softmaxes merge as
// O = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s. Cost: every visible K and V row is read
// once, 2 * visible * kv_heads * head_dim * 2 bytes per sequence; 4 * visible * head_dim FLOPs
// per head slot on the tensor cores (8 or 16 slots per group, padding included), negligible
// next to the bytes: the kernel is bound by memory latency and bandwidth.
//
// Block (split, kv head x head group, batch), kWarps warps. The heads of one GQA group (up to
// 16 per block: more make several head groups) share every K/V row the block reads.
// - Products, transposed so that the few query heads are the N of mma.m16n8k16 (n8 per 8
//   heads, kNTiles = 1 or 2) and 16 keys / 16 features are the M:
//     S^T (16 keys x 8 heads) = K (16 keys x D, A operand, ldmatrix) Q^T (D x 8, B operand),
//     O^T (D x 8 heads) += V^T (D x 16 keys, A operand, ldmatrix.trans) P^T (16 keys x 8).
//   Against M = heads (the prefill orientation) this halves the MMAs and the O registers at
//   groups <= 8 (Llama-3-8B's 4 heads fill half of n8 instead of a quarter of m16): O^T is
//   D / 16 x kNTiles x 4 f32 per lane (32 at D = 128, one n8 tile).
//   P^T's B fragment is the transpose of the S^T accumulator's pairs: each 8x8 bf16 block
//   (C layout: lane holds key g, heads 2c..2c+1) is turned by movmatrix.trans into the B
//   layout (keys 2c..2c+1, head g). Fragment layouts: runtime/cuda/mma.cuh (g = lane / 4,
//   c = lane % 4).
// - Each warp owns the 16-key tiles warp, warp + kWarps, ... of the block's split and runs
//   its own cp.async pipeline of kStages tiles in its own shared memory (no block barrier in
//   the key loop): while tile t is computed, tiles t+1..t+kStages-1 are in flight. Per warp
//   its own online softmax (per head: max across the 8 lanes of a column, xor 4, 8, 16).
//   Keys past the split's end are zero-filled, never read (unwritten cache rows may be NaN),
//   and masked to -inf.
// - Shared memory (bf16 rows padded by 16 bytes: conflict-free ldmatrix): Q [8 kNTiles][D+8],
//   tiles [kWarps][kStages][K, V][16][D+8]: D=64 4 warps x 4 stages 74 KiB, D=128 4 x 3
//   104 KiB, D=256 2 x 3 101 KiB: two blocks per SM on the H100, every block of a planned
//   launch (2 x SMs blocks) resident at once.
// - Q fragments stay in registers (D/8 x kNTiles registers) except at D = 256 with two n8
//   tiles, where they are re-read from shared memory each tile (O alone is 128 registers).
// - Splits: PlanAttentionDecode fixes their number for the cache's capacity (a captured CUDA
//   graph keeps it); each launch re-divides the keys visible at its step: active = min(splits,
//   ceil(visible / 128)) splits of equal multiples of 16 keys; the other blocks exit at once.
//   128 keys is what one block has in flight at once (4 warps x 2 tiles at D = 128): fewer
//   per split would only add a merge.
// - Merge, in the same launch: the warps of a block merge through shared memory (reusing the
//   tile buffers). With one active split the block writes the bf16 output. Else it writes its
//   (unnormalized o, log2-domain max m, sum l) to the workspace, __threadfence(), and counts
//   itself on the (sequence, kv head, head group)'s counter with atomicAdd; the block that
//   arrives last merges the splits in split order (the result does not depend on which block
//   is last: each thread merges its head's splits for 4 features with a running max, loads 16
//   splits at a time), writes the output and resets the counter to 0 for the next launch. The
//   workspace is zeroed once when allocated (attention_decode.cuh).
// - Programmatic dependent launch (pdl.cuh): the blocks let the next kernel launch at their
//   exit (PdlTriggersEarly), or at their start when that kernel does not rely on a large L1
//   (LaunchAttentionDecode's next_in_shared_memory), and wait for the previous kernel before
//   they read what it wrote (see positions_settled).
// - Fused RoPE (AttentionDecodeRope, the executor's decode step of up to 16 sequences): q
//   comes unrotated; each block copies its heads' rows into Q's shared rows with the same
//   cp.async group as the unfused path (the new K and V rows too, into shared rows of their
//   own past the tiles: K, V: 2 x (D+8) bf16, then the inverse frequencies, read before the
//   PDL wait), and rotates them there (rope_math.cuh, the arithmetic of rope.cu: the same
//   bits) while its first K/V tiles are in flight. Loaded from global memory pair by pair,
//   as before, a thread waited for up to four L2 round trips in a row: H100, Llama-3-8B
//   decode step, the same bits, 5.47-5.50 -> 5.43-5.46 ms at batch 1, 5.58-5.62 -> 5.57-5.59
//   at batch 16 (docs/performance.md, tenth round). The block whose keys include the
//   step's position writes the rotated key and the new value into the caches (the first
//   head group's block), and the warp that owns that key's tile patches the row into the
//   tile once it has landed: the cache row it loaded may be stale, and no other block reads
//   it in this launch.
// - Registers (ptxas sm_90a, no spills; one / two n8 head tiles): D=64 168 / 168, D=128
//   168 / 155, D=256 159 / 205, 32 bytes of stack (sincosf's argument reduction).
// Measured (H100, bench_kernels, 32 / 8 heads x 128, CUDA graph of back-to-back launches):
// b1 8K 18.4 us (61% of copy bandwidth; 31.9 before this design), b8 8K 97.8 (92%), b1 with
// 128 keys 3.1 us and b16 with 128 keys 5.8 (were ~13 plus 4.5 for the combine kernel), b1
// with 512 keys 6.6, b16 with 512 keys 15.4 (74%).
#include "runtime/cuda/attention_decode.cuh"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cta_trace.cuh"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"
#include "runtime/cuda/mma.cuh"
#include "runtime/cuda/pdl.cuh"
#include "runtime/cuda/rope.cuh"
#include "runtime/cuda/rope_math.cuh"

namespace tessel::cuda {
namespace {

constexpr int kMaxGroup = 16;         // query heads per block: two n8 tiles
constexpr int kKeys = 16;             // keys per warp tile: one k16 step of P V
constexpr int kMinKeysPerSplit = 128;  // visible keys per active split, at least
constexpr int kMaxSplits = 1024;      // splits per launch, at most
constexpr float kLog2e = 1.4426950408889634f;

template <int kDim>
struct DecodeConfig {
  static constexpr int kWarps = kDim == 256 ? 2 : 4;
  static constexpr int kStages = kDim == 64 ? 4 : 3;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStride = kDim + 8;             // bf16 per shared Q/K/V row
  static constexpr int kChunks = kDim / 8;             // 16-byte chunks per row
  static constexpr int kStageElems = 2 * kKeys * kStride;  // K tile then V tile
  static constexpr int kOStride = kDim + 4;            // f32 per shared O row of the merges
  // Q rows, the warps' tiles, then (fused RoPE) the step's new K and V rows and the rotary
  // inverse frequencies (kDim / 2 floats at most).
  static size_t SmemBytes(int n_tiles) {
    return sizeof(bf16) * (8 * n_tiles * kStride + kWarps * kStages * kStageElems + 2 * kStride) +
           sizeof(float) * (kDim / 2);
  }
  static_assert(kDim % 32 == 0 && (kKeys * kChunks) % 32 == 0, "tile load is exact");
  // The warps' merge reuses the tile buffers.
  static_assert(sizeof(float) * kWarps * kMaxGroup * kOStride <=
                sizeof(bf16) * kWarps * kStages * kStageElems);
};

// Transposes an 8x8 b16 matrix held in the ldmatrix / C-fragment layout (lane: row lane / 4,
// columns 2 (lane % 4) + {0, 1}): afterwards the lane holds the same positions of the
// transpose, i.e. rows 2 (lane % 4) + {0, 1} of column lane / 4 of the input.
__device__ __forceinline__ uint32_t TransposeB16(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

template <int kDim, int kNTiles>
__global__ void __launch_bounds__(DecodeConfig<kDim>::kThreads)
    AttentionDecodeKernel(const bf16* __restrict__ q, const bf16* k_cache, const bf16* v_cache,
                          const int32_t* __restrict__ positions, int64_t heads, int64_t capacity,
                          int64_t kv_heads, int group, int head_groups,
                          AttentionKernelParams params, int splits, bf16* __restrict__ out,
                          float* __restrict__ part_o, float* __restrict__ part_ml,
                          unsigned* __restrict__ counters, bool trigger_early,
                          bool positions_settled, AttentionDecodeRope rope,
                          const __grid_constant__ CtaTrace trace) {
  CtaTraceScope trace_scope(trace);
  using C = DecodeConfig<kDim>;
  constexpr int kWarps = C::kWarps, kStages = C::kStages, kStride = C::kStride;
  constexpr int kRows = 8 * kNTiles;  // head slots: the N of the products, rows of q_s
  constexpr bool kQInRegisters = kDim * kNTiles <= 256;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float warp_max[kWarps][kRows], warp_sum[kWarps][kRows];
  __shared__ bool last_block;
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kRows][kStride]
  bf16* tiles = q_s + kRows * kStride;        // [kWarps][kStages][K, V][kKeys][kStride]
  float* merge_s = reinterpret_cast<float*>(tiles);  // the warps' merge, after the key loop
  bf16* new_kv_s = tiles + kWarps * kStages * C::kStageElems;  // fused RoPE: [K, V][kStride]
  float* inv_freq_s = reinterpret_cast<float*>(new_kv_s + 2 * kStride);  // fused RoPE: [half]

  // By default the projection after this kernel starts only at its exit (PdlTriggersEarly):
  // started early, its CTAs would run under this kernel's shared-memory carveout (small L1);
  // the launcher sets trigger_early when that does not matter to it.
  if (trigger_early) PdlLaunchDependents();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, c = lane & 3;  // fragment row (and row + 8), column pair
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / head_groups, hg = blockIdx.y % head_groups;
  const int64_t b = blockIdx.z;
  const int g_count = min(kMaxGroup, group - hg * kMaxGroup);  // <= kRows (host's choice)
  const int64_t h0 = static_cast<int64_t>(kvh) * group + hg * kMaxGroup;

  // Visible keys [lo, hi] (cpu::Attention's VisibleKeys), cut among `active` splits. Settled
  // positions (LaunchAttentionDecode) are read before PdlWait, others after it.
  if (!positions_settled) PdlWait();
  const int pos = positions[b];
  const int hi = params.causal ? min(pos, static_cast<int>(capacity - 1))
                               : static_cast<int>(capacity - 1);
  const int lo = params.sliding_window > 0
                     ? static_cast<int>(max(int64_t{0}, int64_t{pos} - params.sliding_window + 1))
                     : 0;
  const int visible = max(0, hi - lo + 1);
  int active = 1, span = 0;
  if (visible > 0) {
    active = min(splits, (visible + kMinKeysPerSplit - 1) / kMinKeysPerSplit);
    span = ((visible + active - 1) / active + kKeys - 1) / kKeys * kKeys;
    active = (visible + span - 1) / span;
  }
  if (split >= active) return;  // writes nothing: needs no PdlWait
  const int c0 = lo + split * span;
  const int c1 = min(hi, c0 + span - 1);  // < c0 when nothing is visible: zeros are written
  const int n_tiles = c1 >= c0 ? (c1 - c0) / kKeys + 1 : 0;
  const int my_tiles = warp < n_tiles ? (n_tiles - 1 - warp) / kWarps + 1 : 0;

  const int64_t row_stride = kv_heads * kDim;
  const bf16* k_base = k_cache + (b * capacity * kv_heads + kvh) * kDim;
  const bf16* v_base = v_cache + (b * capacity * kv_heads + kvh) * kDim;
  bf16* warp_tiles = tiles + warp * kStages * C::kStageElems;
  // The warp's it-th tile (keys c0 + 16 (warp + kWarps it) + 0..15) into `stage`.
  auto tile_key0 = [&](int it) { return c0 + (warp + kWarps * it) * kKeys; };
  auto load_tile = [&](int it, int stage) {
    const int key0 = tile_key0(it);
    bf16* k_s = warp_tiles + stage * C::kStageElems;
    bf16* v_s = k_s + kKeys * kStride;
#pragma unroll
    for (int i = 0; i < kKeys * C::kChunks / 32; ++i) {
      const int idx = lane + 32 * i;
      const int r = idx / C::kChunks, col = (idx % C::kChunks) * 8;
      const bool valid = key0 + r <= c1;
      const int64_t offset = valid ? (key0 + r) * row_stride + col : 0;
      CpAsync16(k_s + r * kStride + col, k_base + offset, valid);
      CpAsync16(v_s + r * kStride + col, v_base + offset, valid);
    }
  };
  // With settled positions, a prologue tile whose keys all precede `pos` holds cache rows
  // written before this step's chain of kernels (the kernel right before, RoPE, writes row
  // `pos`): it is loaded before PdlWait, overlapping that kernel. Its copies join the first
  // commit group below (with Q), so the group count stays what the key loop expects.
  auto early = [&](int p) {
    return positions_settled && p < my_tiles && tile_key0(p) + kKeys - 1 < pos;
  };
#pragma unroll
  for (int p = 0; p < kStages - 1; ++p) {
    if (early(p)) load_tile(p, p);
  }
  // Fused RoPE: the inverse frequencies (uploaded at load, no kernel writes them).
  if (rope.k_new != nullptr) {
    for (int i = tid; i < rope.params.rotary_dim / 2; i += C::kThreads) {
      inv_freq_s[i] = rope.inv_freq[i];
    }
  }
  if (positions_settled) PdlWait();
  trace_scope.Ready();

  // Fused RoPE: the block whose keys include `pos` takes the step's new K and V row from
  // new_kv_s instead of the cache (its warp `new_warp` patches it into its tile `new_tile`).
  const bool fused = rope.k_new != nullptr;
  const bool new_key = fused && pos >= c0 && pos <= c1 && pos < capacity;
  const int new_tile = new_key ? (pos - c0) / kKeys : -1;
  const int new_warp = new_tile % kWarps, new_it = new_tile / kWarps;

  // Q rows of the group (rows past g_count zero-filled: finite scores, never stored); with
  // fused RoPE rotated in place below, once they and the first tiles are in flight. Every
  // global load of the rotation (Q, the new K and V rows) is issued here at once: loaded one
  // pair at a time, each thread waited for four L2 round trips in a row.
  {
    const bf16* q_group = q + (b * heads + h0) * kDim;
    for (int idx = tid; idx < kRows * C::kChunks; idx += C::kThreads) {
      const int r = idx / C::kChunks, col = (idx % C::kChunks) * 8;
      const bool valid = r < g_count;
      CpAsync16(q_s + r * kStride + col, valid ? q_group + r * kDim + col : q, valid);
    }
  }
  if (new_key) {
    const int64_t kv_offset = (b * kv_heads + kvh) * kDim;
    for (int ch = tid; ch < 2 * C::kChunks; ch += C::kThreads) {
      const int kv = ch / C::kChunks, col = (ch % C::kChunks) * 8;
      const bf16* from = (kv == 0 ? rope.k_new : rope.v_new) + kv_offset + col;
      CpAsync16(new_kv_s + kv * kStride + col, from, true);
    }
  }
  CpAsyncCommit();

  // Prologue: tiles 0..kStages-2 in flight, one commit group each (empty past the warp's
  // last tile or when loaded early, so that the group count stays uniform).
#pragma unroll
  for (int p = 0; p < kStages - 1; ++p) {
    if (p < my_tiles && !early(p)) load_tile(p, p);
    CpAsyncCommit();
  }
  CpAsyncWait<kStages - 1>();  // Q (and the new K, V rows) landed (this thread's part)
  __syncthreads();             // ... and every thread's
  if (fused) {  // while the first tiles are in flight
    // RoPE as rope.cu computes it (rope_math.cuh: the same bits): q rotated in q_s; the new
    // key rotated in new_kv_s and, with the new value, written by the first head group's
    // block into the caches at row pos. A position in [0, capacity) is always visible, so
    // exactly one active split holds it; outside, nothing is written (RoPE's cache write).
    // Features past rotary_dim stay as loaded.
    const int half = static_cast<int>(rope.params.rotary_dim / 2);
    const bool interleaved = rope.params.interleaved;
    const float factor = rope.params.attention_factor;
    for (int idx = tid; idx < g_count * half; idx += C::kThreads) {
      const int r = idx / half, i = idx - r * half;
      int fa, fb;
      RopePairFeatures(i, half, interleaved, fa, fb);
      bf16* row = q_s + r * kStride;
      RopeRotatePair(__bfloat162float(row[fa]), __bfloat162float(row[fb]),
                     RopeAngle(pos, inv_freq_s[i], factor), row[fa], row[fb]);
    }
    if (new_key) {
      for (int i = tid; i < half; i += C::kThreads) {
        int fa, fb;
        RopePairFeatures(i, half, interleaved, fa, fb);
        RopeRotatePair(__bfloat162float(new_kv_s[fa]), __bfloat162float(new_kv_s[fb]),
                       RopeAngle(pos, inv_freq_s[i], factor), new_kv_s[fa], new_kv_s[fb]);
      }
    }
    __syncthreads();  // rotated rows visible to every warp (and to the cache writes)
    if (new_key && hg == 0) {
      const int64_t cache_row = ((b * capacity + pos) * kv_heads + kvh) * kDim;
      for (int ch = tid; ch < 2 * C::kChunks; ch += C::kThreads) {
        const int kv = ch / C::kChunks, col = (ch % C::kChunks) * 8;
        *reinterpret_cast<uint4*>((kv == 0 ? rope.k_cache : rope.v_cache) + cache_row + col) =
            *reinterpret_cast<const uint4*>(new_kv_s + kv * kStride + col);
      }
    }
  }

  // Per-lane ldmatrix row addresses (see LdMatrixX4 in mma.cuh):
  // Q^T (B operand of S^T, B[d][head] = Q[head][d]) for heads 8nt..8nt+7 and the k16 steps
  //   2kp, 2kp+1: matrices (heads 0-7, d 0-7), (d 8-15), (d 16-23), (d 24-31) = b0, b1 of
  //   step 2kp, b0, b1 of step 2kp+1 (lanes 8i..8i+7 address matrix i).
  const bf16* q_lane = q_s + (lane & 7) * kStride + (lane >> 3) * 8;
  // K (A operand of S^T, 16 keys x 16 d of one k16 step): matrices (keys 0-7, d 0-7),
  //   (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15) = a0..a3.
  const bf16* k_lane = warp_tiles + (lane & 15) * kStride + (lane >> 4) * 8;
  // V^T (A operand of O^T, rows d 16dt..16dt+15, cols keys 0-15), transposed loads of V
  //   [key][d]: matrices (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7),
  //   (keys 8-15, d 8-15) = a0 (d g, keys 2c..), a1 (d g+8, keys 2c..), a2 (d g, keys
  //   2c+8..), a3 (d g+8, keys 2c+8..).
  const bf16* v_lane = warp_tiles + kKeys * kStride +
                       ((lane & 7) + (lane >> 4) * 8) * kStride + ((lane >> 3) & 1) * 8;

  uint32_t q_frag[kQInRegisters ? kDim / 32 : 1][kNTiles][4];
  if constexpr (kQInRegisters) {
#pragma unroll
    for (int kp = 0; kp < kDim / 32; ++kp)
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
        LdMatrixX4(q_frag[kp][nt], q_lane + nt * 8 * kStride + kp * 32);
  }

  // Scores are dot * scale, soft-capped if asked; the softmax works in base 2. The fast path
  // folds scale * log2(e) into the exp2 FMA (needs scale > 0 so that the max of raw dots is
  // the max of scores); otherwise scores are transformed in place first.
  const bool transform_scores = params.logit_softcap > 0.0f || !(params.scale > 0.0f);
  const float score_mult = transform_scores ? 1.0f : params.scale * kLog2e;

  // O^T accumulators: o[dt][nt][e] is feature 16 dt + g + 8 (e >> 1), head 8 nt + 2c + (e & 1).
  float o[kDim / 16][kNTiles][4];
  float head_max[kNTiles][2];  // of (transformed) scores, head 8 nt + 2c + j
  float head_sum[kNTiles][2];  // this lane's keys' part
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
    for (int dt = 0; dt < kDim / 16; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[dt][nt][e] = 0.0f;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      head_max[nt][j] = -INFINITY;
      head_sum[nt][j] = 0.0f;
    }
  }

  int stage = 0, refill = kStages - 1;  // it % kStages, (it + kStages - 1) % kStages
  for (int it = 0; it < my_tiles; ++it) {
    // Groups committed so far end with tiles it+1..it+kStages-2's (maybe empty): all but the
    // kStages-2 newest complete means tile `it` landed; the warp barrier makes every lane's
    // copies visible and ends every lane's reads of tile it-1, whose stage is refilled next.
    CpAsyncWait<kStages - 2>();
    __syncwarp();
    if (it + kStages - 1 < my_tiles) load_tile(it + kStages - 1, refill);
    CpAsyncCommit();
    if (warp == new_warp && it == new_it) {  // fused RoPE: the new key's row, fresh
      bf16* k_row = warp_tiles + stage * C::kStageElems + ((pos - c0) % kKeys) * kStride;
      for (int ch = lane; ch < 2 * C::kChunks; ch += 32) {
        const int kv = ch / C::kChunks, col = (ch % C::kChunks) * 8;
        *reinterpret_cast<uint4*>(k_row + kv * kKeys * kStride + col) =
            *reinterpret_cast<const uint4*>(new_kv_s + kv * kStride + col);
      }
      __syncwarp();
    }

    // S^T = K Q^T: s[nt][e] is key key0 + g + 8 (e >> 1), head 8 nt + 2c + (e & 1).
    float s[kNTiles][4];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
    const bf16* k_stage = k_lane + stage * C::kStageElems;
#pragma unroll
    for (int kp = 0; kp < kDim / 32; ++kp) {
      uint32_t q_reg[kNTiles][4];
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        if constexpr (kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) q_reg[nt][e] = q_frag[kp][nt][e];
        } else {
          LdMatrixX4(q_reg[nt], q_lane + nt * 8 * kStride + kp * 32);
        }
      }
      uint32_t k_lo[4], k_hi[4];  // d 32kp..32kp+15, 32kp+16..32kp+31
      LdMatrixX4(k_lo, k_stage + kp * 32);
      LdMatrixX4(k_hi, k_stage + kp * 32 + 16);
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        MmaBf16(s[nt], k_lo, q_reg[nt][0], q_reg[nt][1]);
        MmaBf16(s[nt], k_hi, q_reg[nt][2], q_reg[nt][3]);
      }
    }

    if (transform_scores) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          s[nt][e] = CapScore(s[nt][e] * params.scale, params.logit_softcap) * kLog2e;
    }
    const int key0 = c0 + (warp + kWarps * it) * kKeys;
    if (key0 + kKeys - 1 > c1) {  // the split's last tile: keys past c1 were zero-filled
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (key0 + g + 8 * (e >> 1) > c1) s[nt][e] = -INFINITY;
    }

    // Online softmax per head (a column of S^T: the 8 lanes of equal c, xor 4, 8, 16).
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        float tile_max = fmaxf(s[nt][j], s[nt][j + 2]);
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 4));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 8));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 16));
        float base;
        const float alpha = OnlineSoftmaxRescale(head_max[nt][j], tile_max, score_mult, base);
        s[nt][j] = Exp2(fmaf(s[nt][j], score_mult, -base));
        s[nt][j + 2] = Exp2(fmaf(s[nt][j + 2], score_mult, -base));
        head_sum[nt][j] = head_sum[nt][j] * alpha + s[nt][j] + s[nt][j + 2];
#pragma unroll
        for (int dt = 0; dt < kDim / 16; ++dt) {
          o[dt][nt][j] *= alpha;
          o[dt][nt][j + 2] *= alpha;
        }
      }

    // P^T as the B operand (keys 2c..2c+1 and 2c+8..2c+9, head g): the C pairs (key g or
    // g+8, heads 2c..2c+1) as bf16, each 8x8 block transposed across the warp.
    uint32_t p_reg[kNTiles][2];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      p_reg[nt][0] = TransposeB16(PackBf16(s[nt][0], s[nt][1]));
      p_reg[nt][1] = TransposeB16(PackBf16(s[nt][2], s[nt][3]));
    }
    // O^T += V^T P^T.
    const bf16* v_stage = v_lane + stage * C::kStageElems;
#pragma unroll
    for (int dt = 0; dt < kDim / 16; ++dt) {
      uint32_t v_reg[4];
      LdMatrixX4Trans(v_reg, v_stage + dt * 16);
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) MmaBf16(o[dt][nt], v_reg, p_reg[nt][0], p_reg[nt][1]);
    }
    stage = stage == kStages - 1 ? 0 : stage + 1;
    refill = refill == kStages - 1 ? 0 : refill + 1;
  }

#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      head_sum[nt][j] += __shfl_xor_sync(0xffffffffu, head_sum[nt][j], 4);
      head_sum[nt][j] += __shfl_xor_sync(0xffffffffu, head_sum[nt][j], 8);
      head_sum[nt][j] += __shfl_xor_sync(0xffffffffu, head_sum[nt][j], 16);
    }
  CpAsyncWait<0>();  // only empty groups can remain; the tile buffers become merge_s
  __syncthreads();

  // The warps' states -> shared memory: O^T as [warp][head][kOStride] f32 (the pad makes the
  // scattered fragment stores conflict-free), max in the log2 domain, sums.
  {
    float* o_warp = merge_s + warp * kRows * C::kOStride;
#pragma unroll
    for (int dt = 0; dt < kDim / 16; ++dt)
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          o_warp[(8 * nt + 2 * c + (e & 1)) * C::kOStride + 16 * dt + g + 8 * (e >> 1)] =
              o[dt][nt][e];
    if (g == 0) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          warp_max[warp][8 * nt + 2 * c + j] = head_max[nt][j] * score_mult;
          warp_sum[warp][8 * nt + 2 * c + j] = head_sum[nt][j];
        }
    }
  }
  __syncthreads();

  // The block's result per (head, 4 features).
  const int64_t slot0 = (b * heads + h0) * splits + split;  // head h: slot0 + h * splits
  for (int idx = tid; idx < g_count * (kDim / 4); idx += C::kThreads) {
    const int h = idx / (kDim / 4), d = (idx % (kDim / 4)) * 4;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_max[w][h]);
    float sum = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float weight = warp_max[w][h] == -INFINITY ? 0.0f : Exp2(warp_max[w][h] - m_all);
      sum += weight * warp_sum[w][h];
      const float4 x =
          *reinterpret_cast<const float4*>(merge_s + (w * kRows + h) * C::kOStride + d);
      acc.x += weight * x.x;
      acc.y += weight * x.y;
      acc.z += weight * x.z;
      acc.w += weight * x.w;
    }
    if (active == 1) {
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const uint2 packed = make_uint2(PackBf16(acc.x * inv, acc.y * inv),
                                      PackBf16(acc.z * inv, acc.w * inv));
      *reinterpret_cast<uint2*>(out + (b * heads + h0 + h) * kDim + d) = packed;
    } else {
      const int64_t slot = slot0 + h * splits;
      *reinterpret_cast<float4*>(part_o + slot * kDim + d) = acc;
      if (d == 0) *reinterpret_cast<float2*>(part_ml + 2 * slot) = make_float2(m_all, sum);
    }
  }
  if (active == 1) return;

  // Count this split in; the last to arrive merges. As cooperative groups' grid barrier:
  // the block barrier orders every thread's partial stores before thread 0's fence and
  // arrival; after the last arrival, thread 0's fence and the barrier order the other
  // splits' partials before this block's reads (past L1: __ldcg).
  __syncthreads();
  unsigned* counter = counters + b * gridDim.y + blockIdx.y;
  if (tid == 0) {
    __threadfence();
    last_block = atomicAdd(counter, 1u) == static_cast<unsigned>(active - 1);
    __threadfence();
  }
  __syncthreads();
  if (!last_block) return;

  // Merge the splits in split order, kMergeLoads at a time (their loads in flight together),
  // each thread for its (head, 4 features) with its own running max and sum: the same values
  // in the same order on every thread of a head, whichever block is last.
  constexpr int kMergeLoads = 16;
  for (int idx = tid; idx < g_count * (kDim / 4); idx += C::kThreads) {
    const int h = idx / (kDim / 4), d4 = idx % (kDim / 4);
    const int64_t slot = (b * heads + h0 + h) * splits;
    const float2* ml = reinterpret_cast<const float2*>(part_ml) + slot;
    const float4* src = reinterpret_cast<const float4*>(part_o) + slot * (kDim / 4) + d4;
    float m_run = -INFINITY, l_run = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int s0 = 0; s0 < active; s0 += kMergeLoads) {
      float2 ml_v[kMergeLoads];
      float4 o_v[kMergeLoads];
#pragma unroll
      for (int i = 0; i < kMergeLoads; ++i) {
        const bool valid = s0 + i < active;
        ml_v[i] = valid ? __ldcg(ml + s0 + i) : make_float2(-INFINITY, 0.0f);
        o_v[i] = valid ? __ldcg(src + (s0 + i) * (kDim / 4)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
      float m_new = m_run;
#pragma unroll
      for (int i = 0; i < kMergeLoads; ++i) m_new = fmaxf(m_new, ml_v[i].x);
      const float alpha = m_run == -INFINITY ? 0.0f : Exp2(m_run - m_new);
      l_run *= alpha;
      acc.x *= alpha;
      acc.y *= alpha;
      acc.z *= alpha;
      acc.w *= alpha;
#pragma unroll
      for (int i = 0; i < kMergeLoads; ++i) {
        const float w = ml_v[i].x == -INFINITY ? 0.0f : Exp2(ml_v[i].x - m_new);
        l_run += w * ml_v[i].y;
        acc.x += w * o_v[i].x;
        acc.y += w * o_v[i].y;
        acc.z += w * o_v[i].z;
        acc.w += w * o_v[i].w;
      }
      m_run = m_new;
    }
    const float inv = l_run > 0.0f ? 1.0f / l_run : 0.0f;
    *reinterpret_cast<uint2*>(out + (b * heads + h0 + h) * kDim + 4 * d4) = make_uint2(
        PackBf16(acc.x * inv, acc.y * inv), PackBf16(acc.z * inv, acc.w * inv));
  }
  if (tid == 0) *counter = 0;  // every split has arrived: ready for the next launch
}

// Shared memory asked per block: TESSEL_ATTENTION_DECODE_SMEM_KIB (measurements: more than a
// block uses, to hold one block per SM and leave the other half of the SM to the next
// kernel's early CTAs) or what a block uses.
size_t AskedSharedMemory(size_t used) {
  static const size_t forced = [] {
    const char* env = std::getenv("TESSEL_ATTENTION_DECODE_SMEM_KIB");
    const long kib = env != nullptr ? std::atol(env) : 0;
    return kib > 0 && kib <= 227 ? static_cast<size_t>(kib) * 1024 : size_t{0};
  }();
  return std::max(used, forced);
}

template <int kDim, int kNTiles>
absl::Status Launch(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                    const int32_t* positions, int64_t batch, int64_t heads, int64_t capacity,
                    int64_t kv_heads, const AttentionKernelParams& params,
                    const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                    cudaStream_t stream, bool positions_settled,
                    const AttentionDecodeRope& rope, bool signal_early) {
  using C = DecodeConfig<kDim>;
  const size_t smem = AskedSharedMemory(C::SmemBytes(kNTiles));
  static const cudaError_t attribute_error =
      cudaFuncSetAttribute(AttentionDecodeKernel<kDim, kNTiles>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  TESSEL_CUDA_RETURN_IF_ERROR(attribute_error);
  const int group = static_cast<int>(heads / kv_heads);
  const int head_groups = static_cast<int>(CeilDiv(group, kMaxGroup));
  const int splits = static_cast<int>(plan.splits);
  float* part_o = nullptr;
  float* part_ml = nullptr;
  unsigned* counters = nullptr;
  if (splits > 1) {
    part_o = static_cast<float*>(workspace);
    part_ml = part_o + batch * heads * splits * kDim;
    counters = reinterpret_cast<unsigned*>(part_ml + batch * heads * splits * 2);
  }
  const dim3 grid(splits, static_cast<unsigned>(kv_heads * head_groups),
                  static_cast<unsigned>(batch));
  TESSEL_CUDA_RETURN_IF_ERROR(LaunchDependent(
      PdlKernel::kAttentionDecode, AttentionDecodeKernel<kDim, kNTiles>, grid, dim3(C::kThreads), smem, stream, q, k_cache,
      v_cache, positions, heads, capacity, kv_heads, group, head_groups, params, splits, out,
      part_o, part_ml, counters, signal_early, positions_settled, rope,
      CtaTraceForLaunch([&] {
        return absl::StrCat("attention_decode b=", batch, " heads=", heads, " kv_heads=", kv_heads,
                            " dim=", kDim, " splits=", splits);
      })));
  return absl::OkStatus();
}

template <int kDim>
absl::Status LaunchForGroup(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                            const int32_t* positions, int64_t batch, int64_t heads,
                            int64_t capacity, int64_t kv_heads,
                            const AttentionKernelParams& params, const AttentionDecodeSplit& plan,
                            void* workspace, bf16* out, cudaStream_t stream,
                            bool positions_settled, const AttentionDecodeRope& rope,
                            bool signal_early) {
  // One n8 tile of heads when every head group fits in 8.
  if (heads / kv_heads <= 8) {
    return Launch<kDim, 1>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads,
                           params, plan, workspace, out, stream, positions_settled, rope,
                           signal_early);
  }
  return Launch<kDim, 2>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads, params,
                         plan, workspace, out, stream, positions_settled, rope, signal_early);
}

}  // namespace

size_t AttentionDecodeWorkspaceBytes(int64_t batch, int64_t heads, int64_t kv_heads,
                                     int64_t head_dim, int64_t splits) {
  if (splits <= 1 || batch <= 0 || heads <= 0 || kv_heads <= 0) return 0;
  const int64_t head_groups = CeilDiv(std::max<int64_t>(heads / kv_heads, 1), kMaxGroup);
  return sizeof(float) * batch * heads * splits * (head_dim + 2) +
         sizeof(unsigned) * batch * kv_heads * head_groups;
}

AttentionDecodeSplit PlanAttentionDecode(int64_t batch, int64_t heads, int64_t kv_heads,
                                         int64_t head_dim, int64_t max_context) {
  AttentionDecodeSplit plan;
  max_context = std::max<int64_t>(max_context, 1);
  const int64_t group = kv_heads > 0 ? heads / kv_heads : 1;
  const int64_t blocks_per_split =
      std::max<int64_t>(1, batch * kv_heads * CeilDiv(std::max<int64_t>(group, 1), kMaxGroup));
  // Every block resident at once (two per SM, rounded down), chunks of at least 512 keys at
  // max_context: within 10% of the best cut in every H100 sweep (32/8 x 128, bench_kernels):
  // b1 8K 16 splits 18.4 us (best: 8, 17.6), b8 8K 4 splits 97.8 (best), b1 2K 4 splits 9.4
  // (best: 8, 8.6), b16 2K 2 splits 51.9 (best), b16 512 keys 1 split 15.4 (best), b1 512
  // keys 1 split 6.6 (best: 4, 6.0). More splits add partials to merge, fewer leave blocks
  // with more keys than one block streams quickly.
  int64_t splits = std::max<int64_t>(1, 2 * MultiprocessorCount() / blocks_per_split);
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, CeilDiv(max_context, 512)));
  // TESSEL_ATTENTION_DECODE_SPLITS=n (measurements): n splits planned instead.
  static const int64_t forced = [] {
    const char* env = std::getenv("TESSEL_ATTENTION_DECODE_SPLITS");
    return env != nullptr ? std::max<int64_t>(0, std::atoll(env)) : int64_t{0};
  }();
  if (forced > 0) splits = std::min<int64_t>(forced, max_context);
  splits = std::min<int64_t>(splits, kMaxSplits);
  plan.chunk = CeilDiv(CeilDiv(max_context, splits), 32) * 32;
  plan.splits = CeilDiv(max_context, plan.chunk);
  plan.workspace_bytes =
      AttentionDecodeWorkspaceBytes(batch, heads, kv_heads, head_dim, plan.splits);
  return plan;
}

absl::Status LaunchAttentionDecode(const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                   const int32_t* positions, int64_t batch, int64_t heads,
                                   int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                   const AttentionKernelParams& params,
                                   const AttentionDecodeSplit& plan, void* workspace, bf16* out,
                                   cudaStream_t stream, bool positions_settled,
                                   const AttentionDecodeRope& rope,
                                   bool next_in_shared_memory) {
  if (batch <= 0 || heads <= 0) return absl::OkStatus();
  // With the default signalling, a next kernel that stages its activations in shared memory
  // may start under this kernel's carveout: H100, Llama-3-8B batch 16 (TMA projections),
  // 5.87-5.88 -> 5.81-5.84 ms per step (batch 64, cuBLASLt after it, unchanged); at batch 1
  // the register kernel after it would lose 1.2 ms (device_info.cc).
  const bool signal_early = PdlTriggersEarly(PdlKernel::kAttentionDecode) ||
                            (next_in_shared_memory && PdlLateIsDefault());
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention decode: heads ", heads, " is not a multiple of kv_heads ",
                     kv_heads));
  }
  if (plan.splits < 1 || plan.chunk < 1 || (plan.splits > 1 && workspace == nullptr)) {
    return absl::InvalidArgumentError(
        "attention decode: plan from PlanAttentionDecode and its workspace are required");
  }
  if (plan.splits > kMaxSplits) {
    return absl::InvalidArgumentError(absl::StrCat("attention decode: ", plan.splits,
                                                   " splits (at most ", kMaxSplits, ")"));
  }
  if (capacity <= 0 || capacity > 0x7fffffff || batch > 65535 ||
      kv_heads * CeilDiv(heads / kv_heads, kMaxGroup) > 65535) {
    return absl::InvalidArgumentError("attention decode: capacity, batch or heads out of range");
  }
  if (!Aligned16(q) || !Aligned16(k_cache) || !Aligned16(v_cache) || !Aligned16(out) ||
      !Aligned16(workspace)) {
    return absl::InvalidArgumentError(
        "attention decode: q, caches, out and workspace must be 16-byte aligned");
  }
  if (rope.k_new != nullptr) {
    if (rope.v_new == nullptr || rope.inv_freq == nullptr || rope.k_cache != k_cache ||
        rope.v_cache != v_cache || rope.k_cache == nullptr || rope.v_cache == nullptr) {
      return absl::InvalidArgumentError(
          "attention decode: fused RoPE needs k_new, v_new, the inverse frequencies and the "
          "caches attention reads");
    }
    if (!Aligned16(rope.k_new) || !Aligned16(rope.v_new)) {
      return absl::InvalidArgumentError(
          "attention decode: fused RoPE's new key and value rows must be 16-byte aligned");
    }
    if (absl::Status status = CheckRopeKernelParams(head_dim, rope.params); !status.ok()) {
      return status;
    }
  }
  switch (head_dim) {
    case 64:
      return LaunchForGroup<64>(q, k_cache, v_cache, positions, batch, heads, capacity, kv_heads,
                                params, plan, workspace, out, stream, positions_settled, rope,
                                signal_early);
    case 128:
      return LaunchForGroup<128>(q, k_cache, v_cache, positions, batch, heads, capacity,
                                 kv_heads, params, plan, workspace, out, stream,
                                 positions_settled, rope, signal_early);
    case 256:
      return LaunchForGroup<256>(q, k_cache, v_cache, positions, batch, heads, capacity,
                                 kv_heads, params, plan, workspace, out, stream,
                                 positions_settled, rope, signal_early);
    default:
      return absl::UnimplementedError(
          absl::StrCat("attention decode: head_dim ", head_dim, " (supported: 64, 128, 256)"));
  }
}

}  // namespace tessel::cuda
