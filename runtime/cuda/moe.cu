// Mixture-of-experts kernels: router, counting sort by expert, grouped expert GEMMs, combine.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Router (cpu::MoERouter). Block of 8 warps per (8 tokens, expert slice): each warp computes
// the logits of experts warp, warp + 8, ... of the slice for the block's tokens (16-byte gate
// and x loads, f32 sums, butterfly reduce). Decode cuts the experts into slices of 8 so the
// gate streams through many SMs; the last block of a token group (ticket counter) gathers the
// logits; then warp w selects for token w: scores (softmax
// with a double sum as the CPU does, or sigmoid), choice = score + bias, group scores (top-2
// sum with bias, else max) and the topk_group best groups, top_k rounds of a warp arg-max over
// (value, -index) pairs so ties go to the lower index. Cost: tokens * experts * hidden MACs,
// the gate read once per 8 tokens.
//
// Experts (cpu::MoEExperts), after the grouped-GEMM designs of MegaBlocks (Gale et al. 2022)
// and vLLM's fused_moe: everything on the device, no host synchronization, so one captured
// graph serves any routing.
//  1. MoESortKernel (one block): counting sort of the tokens * top_k slots by expert: rows
//     offsets[e] .. offsets[e+1] of the expert-sorted order belong to expert e; row_slot /
//     slot_row map between the orders; a work list of (expert, first row) tiles of block_m
//     rows. Experts nobody chose get no tile, so decode reads only the touched experts'
//     weights. The order of rows within an expert (shared-memory atomics) does not matter:
//     each GEMM row is computed independently, in a fixed k order.
//  2. MoEGemmKernel<gate_up>: grid (work-list slot, 64-column tile); blocks past the list's
//     length exit at once. Tile block_m x 64, k step 64, 3-4 stage cp.async pipeline, bf16
//     mma.sync m16n8k16 with f32 accumulators. The A rows are gathered from x through
//     row_slot; gate and up share the A fragments and the epilogue writes
//     h = act(gate) * up (bf16) in expert-sorted order.
//  3. MoEGemmKernel<down>: A = h, B = down[e]; the epilogue scales each row by its routing
//     weight and writes y (bf16) in expert-sorted order.
//  4. MoECombineKernel: out[t] = sum over j = 0..top_k-1 of y[slot_row[t * top_k + j]], in
//     that fixed order, in f32 (deterministic; no atomics).
// Cost: 3 * rows * hidden * inter MACs; bytes: the touched experts' weights once per tile
// row (once in decode), plus activations.
#include "runtime/cuda/moe.cuh"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/mma.cuh"

namespace tessel::cuda {
namespace {

// --- router ---------------------------------------------------------------------------------

constexpr int kRouterTokens = 8;  // tokens per block, one selecting warp each
constexpr int kRouterThreads = 32 * kRouterTokens;
constexpr int kRouterMaxExperts = 256;
constexpr int kRouterPerLane = kRouterMaxExperts / 32;

// (value, index) order of cpu::MoERouter's sort: larger value first, ties to the lower index.
__device__ __forceinline__ bool Before(float value, int index, float other_value,
                                       int other_index) {
  return value > other_value || (value == other_value && index < other_index);
}

// Block (8-token group, expert slice): logits of experts [slice * per_block, ...) for the
// group's tokens. With one slice per group they go straight to shared memory; else to the
// workspace, and the group's last block to finish (a ticket counter per group, reset by that
// block for the next launch) gathers them and selects.
__global__ void __launch_bounds__(kRouterThreads)
    MoERouterKernel(const bf16* __restrict__ x, int64_t tokens, int hidden,
                    const bf16* __restrict__ gate, int experts, int per_block,
                    const float* __restrict__ bias, MoERouterKernelParams p, bool vector,
                    float* __restrict__ logits_ws, unsigned* __restrict__ tickets,
                    float* __restrict__ weights, int32_t* __restrict__ indices) {
  __shared__ float logits_s[kRouterTokens][kRouterMaxExperts];
  __shared__ bool last_block;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRouterTokens;
  const int count = static_cast<int>(tokens - t0 < kRouterTokens ? tokens - t0 : kRouterTokens);
  const bf16* x_block = x + t0 * hidden;
  const bool sliced = gridDim.y > 1;
  const int e_begin = blockIdx.y * per_block;
  const int e_end = min(experts, e_begin + per_block);

  for (int e = e_begin + warp; e < e_end; e += kRouterTokens) {
    float acc[kRouterTokens];
#pragma unroll
    for (int t = 0; t < kRouterTokens; ++t) acc[t] = 0.0f;
    const bf16* g_row = gate + static_cast<int64_t>(e) * hidden;
    if (vector) {
      for (int k = lane * 8; k < hidden; k += 32 * 8) {
        float w[8];
        Unpack8(*reinterpret_cast<const Bf16x8*>(g_row + k), w);
#pragma unroll
        for (int t = 0; t < kRouterTokens; ++t) {
          if (t < count) {
            float xv[8];
            Unpack8(*reinterpret_cast<const Bf16x8*>(x_block + static_cast<int64_t>(t) * hidden + k),
                    xv);
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[t] = fmaf(xv[i], w[i], acc[t]);
          }
        }
      }
    } else {
      for (int k = lane; k < hidden; k += 32) {
        const float w = __bfloat162float(g_row[k]);
#pragma unroll
        for (int t = 0; t < kRouterTokens; ++t) {
          if (t < count) {
            acc[t] = fmaf(__bfloat162float(x_block[static_cast<int64_t>(t) * hidden + k]), w,
                          acc[t]);
          }
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kRouterTokens; ++t) {
      const float sum = WarpSum(acc[t]);
      if (lane == 0 && t < count) {
        if (sliced) {
          logits_ws[(t0 + t) * experts + e] = sum;
        } else {
          logits_s[t][e] = sum;
        }
      }
    }
  }
  if (sliced) {
    __threadfence();  // this block's logits are visible device-wide before its ticket
    __syncthreads();
    if (threadIdx.x == 0) {
      const unsigned ticket = atomicAdd(&tickets[blockIdx.x], 1u);
      last_block = ticket == gridDim.y - 1;
      if (last_block) tickets[blockIdx.x] = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    for (int idx = threadIdx.x; idx < count * experts; idx += kRouterThreads) {
      const int t = idx / experts, e = idx % experts;
      logits_s[t][e] = __ldcg(logits_ws + (t0 + t) * experts + e);
    }
  }
  __syncthreads();
  if (warp >= count) return;

  // Selection for token t0 + warp; lane owns experts lane + 32 i.
  float* row = logits_s[warp];
  float score[kRouterPerLane], choice[kRouterPerLane];
  if (p.sigmoid) {
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      score[i] = e < experts ? 1.0f / (1.0f + expf(-row[e])) : 0.0f;
    }
  } else {
    float max_logit = -INFINITY;
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < experts) max_logit = fmaxf(max_logit, row[e]);
    }
    max_logit = WarpMax(max_logit);
    double sum = 0.0;
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      score[i] = e < experts ? expf(row[e] - max_logit) : 0.0f;
      sum += score[i];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv_sum = static_cast<float>(1.0 / sum);
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) score[i] *= inv_sum;
  }
#pragma unroll
  for (int i = 0; i < kRouterPerLane; ++i) {
    const int e = lane + 32 * i;
    choice[i] = score[i] + (bias != nullptr && e < experts ? bias[e] : 0.0f);
  }

  if (p.n_group > 1 && p.topk_group < p.n_group) {
    __syncwarp();
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < experts) row[e] = choice[i];
    }
    __syncwarp();
    const int group_size = experts / p.n_group;
    float group_score = -INFINITY;
    if (lane < p.n_group) {
      const float* member = row + lane * group_size;
      if (bias != nullptr) {
        float first = -INFINITY, second = -INFINITY;
        for (int i = 0; i < group_size; ++i) {
          if (member[i] > first) {
            second = first;
            first = member[i];
          } else if (member[i] > second) {
            second = member[i];
          }
        }
        group_score = group_size >= 2 ? first + second : first;
      } else {
        group_score = member[0];
        for (int i = 1; i < group_size; ++i) group_score = fmaxf(group_score, member[i]);
      }
    }
    unsigned kept = 0;
    for (int round = 0; round < p.topk_group; ++round) {
      const bool candidate = lane < p.n_group && !((kept >> lane) & 1u);
      float best = candidate ? group_score : -INFINITY;
      int best_index = candidate ? lane : INT_MAX;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, best, o);
        const int other_index = __shfl_xor_sync(0xffffffffu, best_index, o);
        if (Before(other, other_index, best, best_index)) {
          best = other;
          best_index = other_index;
        }
      }
      if (best_index < 32) kept |= 1u << best_index;
    }
    const float masked = bias != nullptr ? -INFINITY : 0.0f;
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < experts && !((kept >> (e / group_size)) & 1u)) choice[i] = masked;
    }
  }

  // top_k rounds of arg-max; lane j keeps the j-th choice.
  const int chosen = min(p.top_k, experts);
  unsigned taken = 0;
  int my_index = 0;
  float my_weight = 0.0f;
  for (int round = 0; round < chosen; ++round) {
    float best = -INFINITY, best_weight = 0.0f;
    int best_index = INT_MAX;
#pragma unroll
    for (int i = 0; i < kRouterPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < experts && !((taken >> i) & 1u) && Before(choice[i], e, best, best_index)) {
        best = choice[i];
        best_index = e;
        // Unbiased score; without a bias HF gathers from the masked scores (0 if masked).
        best_weight = bias != nullptr ? score[i] : choice[i];
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, best, o);
      const int other_index = __shfl_xor_sync(0xffffffffu, best_index, o);
      const float other_weight = __shfl_xor_sync(0xffffffffu, best_weight, o);
      if (Before(other, other_index, best, best_index)) {
        best = other;
        best_index = other_index;
        best_weight = other_weight;
      }
    }
    if (best_index != INT_MAX && (best_index & 31) == lane) taken |= 1u << (best_index >> 5);
    if (lane == round) {
      my_index = best_index == INT_MAX ? 0 : best_index;
      my_weight = best_index == INT_MAX ? 0.0f : best_weight;
    }
  }
  float sum = 0.0f;  // in slot order, as the CPU
  for (int j = 0; j < p.top_k; ++j) sum += __shfl_sync(0xffffffffu, my_weight, j);
  if (lane < p.top_k) {
    float w = my_weight;
    if (p.norm_topk_prob) w /= sum + 1e-20f;
    w *= p.routed_scaling_factor;
    const int64_t t = t0 + warp;
    weights[t * p.top_k + lane] = w;
    indices[t * p.top_k + lane] = my_index;
  }
}

// --- sort by expert -------------------------------------------------------------------------

constexpr int kSortThreads = 1024;
constexpr int kMaxExperts = kSortThreads;

// Exclusive prefix sum over the block (kSortThreads threads); *total gets the sum. Ends with a
// barrier so `scratch` (32 ints) can be reused.
__device__ int BlockExclusiveScan(int value, int* scratch, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int inclusive = value;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int other = __shfl_up_sync(0xffffffffu, inclusive, o);
    if (lane >= o) inclusive += other;
  }
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int w = scratch[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int other = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += other;
    }
    scratch[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const int result = inclusive - value + (warp > 0 ? scratch[warp - 1] : 0);
  *total = scratch[31];
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(kSortThreads)
    MoESortKernel(const int32_t* __restrict__ indices, int slots, int experts, int block_m,
                  int32_t* __restrict__ offsets, int2* __restrict__ tile_list,
                  int32_t* __restrict__ tile_count, int32_t* __restrict__ row_slot,
                  int32_t* __restrict__ slot_row) {
  __shared__ int count_s[kMaxExperts];
  __shared__ int scratch[32];
  const int tid = threadIdx.x;
  count_s[tid] = 0;
  __syncthreads();
  for (int slot = tid; slot < slots; slot += kSortThreads) {
    const int e = indices[slot];
    if (e >= 0 && e < experts) atomicAdd(&count_s[e], 1);
  }
  __syncthreads();
  const int count = tid < experts ? count_s[tid] : 0;
  const int tiles = (count + block_m - 1) / block_m;
  int total_rows = 0, total_tiles = 0;
  const int row_offset = BlockExclusiveScan(count, scratch, &total_rows);
  const int tile_offset = BlockExclusiveScan(tiles, scratch, &total_tiles);
  if (tid < experts) {
    offsets[tid] = row_offset;
    for (int i = 0; i < tiles; ++i) tile_list[tile_offset + i] = make_int2(tid, row_offset + i * block_m);
  }
  if (tid == 0) {
    offsets[experts] = total_rows;
    *tile_count = total_tiles;
  }
  count_s[tid] = row_offset;  // becomes the placement cursor (all counts were read above)
  __syncthreads();
  for (int slot = tid; slot < slots; slot += kSortThreads) {
    const int e = indices[slot];
    int row = -1;
    if (e >= 0 && e < experts) {
      row = atomicAdd(&count_s[e], 1);
      row_slot[row] = slot;
    }
    slot_row[slot] = row;
  }
}

// --- grouped GEMM ---------------------------------------------------------------------------

constexpr int kGemmThreads = 128;
constexpr int kBN = 64;
constexpr int kBK = 64;
constexpr int kStride = kBK + 8;  // shared row stride (elements): 144 B, ldmatrix conflict-free

template <int kBM, bool kGateUp>
struct GemmShape {
  // Decode (16-row tiles) streams weights: deep pipelines keep bytes in flight; the down
  // projection has the fewest blocks (hidden / 64 per expert), so the deepest.
  static constexpr int kStages = kBM == 16 ? (kGateUp ? 4 : 8) : 3;
  static constexpr int kMatrices = kGateUp ? 2 : 1;
  static constexpr int kAElems = kBM * kStride;
  static constexpr int kBElems = kBN * kStride;
  static constexpr int kStageElems = kAElems + kMatrices * kBElems;
  static constexpr size_t kSmem = sizeof(bf16) * kStages * kStageElems;
  static constexpr int kWarpsM = kBM / 16;
  static constexpr int kWarpsN = 4 / kWarpsM;
  static constexpr int kWarpN = kBN / kWarpsN;  // columns per warp
  static constexpr int kFrags = kWarpN / 8;     // n8 fragments per warp
  static constexpr int kAChunks = kBM * (kBK / 8) / kGemmThreads;
  static constexpr int kBChunks = kBN * (kBK / 8) / kGemmThreads;
  static_assert(kWarpsM * kWarpsN == 4 && kFrags % 2 == 0 && kAChunks >= 1);
};

__device__ __forceinline__ float Activate(int activation, float g) {
  switch (activation) {
    case static_cast<int>(MoEActivation::kSilu):
      return g / (1.0f + expf(-g));
    case static_cast<int>(MoEActivation::kGelu):
      return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
    case static_cast<int>(MoEActivation::kGeluTanh):
      return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    default:
      return g > 0.0f ? g : 0.0f;
  }
}

// gate_up: c = h [rows, N = inter] from a = x [tokens, K = hidden] gathered, b0 = gate, b1 = up.
// down:    c = y [rows, N = hidden] from a = h [rows, K = inter], b0 = down; rows scaled by
//          their routing weight.
template <int kBM, bool kGateUp>
__global__ void __launch_bounds__(kGemmThreads)
    MoEGemmKernel(const bf16* __restrict__ a_src, const bf16* __restrict__ b0_src,
                  const bf16* __restrict__ b1_src, int n_total, int k_total, int top_k,
                  const int32_t* __restrict__ offsets, const int2* __restrict__ tile_list,
                  const int32_t* __restrict__ tile_count, const int32_t* __restrict__ row_slot,
                  const float* __restrict__ weights, int activation, bf16* __restrict__ c) {
  using S = GemmShape<kBM, kGateUp>;
  if (static_cast<int>(blockIdx.x) >= *tile_count) return;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int2 tile = tile_list[blockIdx.x];
  const int expert = tile.x, row0 = tile.y;
  const int rows = min(kBM, offsets[expert + 1] - row0);
  const int n0 = blockIdx.y * kBN;

  // Each thread copies fixed 16-byte chunks of every stage: A rows (gathered) and B rows.
  const bf16* a_ptr[S::kAChunks];
  int a_smem[S::kAChunks], a_kc[S::kAChunks];
  bool a_valid[S::kAChunks];
#pragma unroll
  for (int i = 0; i < S::kAChunks; ++i) {
    const int chunk = tid + i * kGemmThreads;
    const int r = chunk / (kBK / 8), kc = (chunk % (kBK / 8)) * 8;
    a_valid[i] = r < rows;
    int64_t src_row = 0;
    if (a_valid[i]) {
      src_row = kGateUp ? row_slot[row0 + r] / top_k : row0 + r;
    }
    a_ptr[i] = a_src + src_row * k_total + kc;
    a_smem[i] = r * kStride + kc;
    a_kc[i] = kc;
  }
  const bf16* b_ptr[S::kMatrices][S::kBChunks];
  int b_smem[S::kBChunks], b_kc[S::kBChunks];
  bool b_valid[S::kBChunks];
#pragma unroll
  for (int i = 0; i < S::kBChunks; ++i) {
    const int chunk = tid + i * kGemmThreads;
    const int n = chunk / (kBK / 8), kc = (chunk % (kBK / 8)) * 8;
    b_valid[i] = n0 + n < n_total;
    const int64_t src_row =
        static_cast<int64_t>(expert) * n_total + (b_valid[i] ? n0 + n : 0);
    b_ptr[0][i] = b0_src + src_row * k_total + kc;
    if constexpr (kGateUp) b_ptr[1][i] = b1_src + src_row * k_total + kc;
    b_smem[i] = n * kStride + kc;
    b_kc[i] = kc;
  }
  const int k_tiles = (k_total + kBK - 1) / kBK;
  auto load_stage = [&](int stage, int kt) {
    bf16* a_s = smem + stage * S::kStageElems;
    const int k0 = kt * kBK;
#pragma unroll
    for (int i = 0; i < S::kAChunks; ++i) {
      const bool valid = a_valid[i] && k0 + a_kc[i] < k_total;
      CpAsync16(a_s + a_smem[i], valid ? a_ptr[i] + k0 : a_src, valid);
    }
#pragma unroll
    for (int m = 0; m < S::kMatrices; ++m) {
      bf16* b_s = a_s + S::kAElems + m * S::kBElems;
#pragma unroll
      for (int i = 0; i < S::kBChunks; ++i) {
        const bool valid = b_valid[i] && k0 + b_kc[i] < k_total;
        CpAsync16(b_s + b_smem[i], valid ? b_ptr[m][i] + k0 : b0_src, valid);
      }
    }
  };

  float acc[S::kMatrices][S::kFrags][4];
#pragma unroll
  for (int m = 0; m < S::kMatrices; ++m)
#pragma unroll
    for (int f = 0; f < S::kFrags; ++f)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[m][f][i] = 0.0f;

#pragma unroll
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    CpAsyncCommit();
  }
  const int warp_m = warp / S::kWarpsN, warp_n = warp % S::kWarpsN;
  // ldmatrix source coordinates of this lane (see the PTX ISA's fragment layouts for
  // mma.m16n8k16: A rows lane % 16, k half lane / 16; B n rows lane % 8 + 8 (lane / 16), k
  // half (lane / 8) % 2).
  const int a_row = warp_m * 16 + (lane & 15), a_col = (lane >> 4) * 8;
  const int b_row = warp_n * S::kWarpN + (lane & 7) + ((lane >> 4) << 3);
  const int b_col = ((lane >> 3) & 1) * 8;

  for (int kt = 0; kt < k_tiles; ++kt) {
    CpAsyncWait<S::kStages - 2>();
    __syncthreads();  // stage kt visible; stage (kt - 1) % kStages free for the prefetch
    const int next = kt + S::kStages - 1;
    if (next < k_tiles) load_stage(next % S::kStages, next);
    CpAsyncCommit();
    const bf16* a_s = smem + (kt % S::kStages) * S::kStageElems;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[4];
      LdMatrixX4(a, a_s + a_row * kStride + kk + a_col);
#pragma unroll
      for (int m = 0; m < S::kMatrices; ++m) {
        const bf16* b_s = a_s + S::kAElems + m * S::kBElems;
#pragma unroll
        for (int fp = 0; fp < S::kFrags / 2; ++fp) {
          uint32_t b[4];
          LdMatrixX4(b, b_s + (b_row + fp * 16) * kStride + kk + b_col);
          MmaBf16(acc[m][2 * fp], a, b[0], b[1]);
          MmaBf16(acc[m][2 * fp + 1], a, b[2], b[3]);
        }
      }
    }
  }
  CpAsyncWait<0>();

  // Accumulator fragment: c0, c1 at (row lane / 4, cols 2 (lane % 4) + {0, 1}); c2, c3 at
  // row + 8.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = warp_m * 16 + (lane >> 2) + 8 * half;
    if (r >= rows) continue;
    float row_weight = 1.0f;
    if constexpr (!kGateUp) row_weight = weights[row_slot[row0 + r]];
    bf16* c_row = c + static_cast<int64_t>(row0 + r) * n_total;
#pragma unroll
    for (int f = 0; f < S::kFrags; ++f) {
      const int col = n0 + warp_n * S::kWarpN + f * 8 + 2 * (lane & 3);
      if (col >= n_total) continue;
      float v0, v1;
      if constexpr (kGateUp) {
        v0 = Activate(activation, acc[0][f][2 * half]) * acc[1][f][2 * half];
        v1 = Activate(activation, acc[0][f][2 * half + 1]) * acc[1][f][2 * half + 1];
      } else {
        v0 = acc[0][f][2 * half] * row_weight;
        v1 = acc[0][f][2 * half + 1] * row_weight;
      }
      *reinterpret_cast<__nv_bfloat162*>(c_row + col) = __floats2bfloat162_rn(v0, v1);
    }
  }
}

// --- combine --------------------------------------------------------------------------------

constexpr int kCombineThreads = 256;

__global__ void __launch_bounds__(kCombineThreads)
    MoECombineKernel(const bf16* __restrict__ y, const int32_t* __restrict__ slot_row, int top_k,
                     int hidden, bf16* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const int32_t* rows = slot_row + t * top_k;
  for (int c = threadIdx.x * 8; c < hidden; c += kCombineThreads * 8) {
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < top_k; ++j) {
      const int row = rows[j];
      if (row < 0) continue;
      float v[8];
      Unpack8(*reinterpret_cast<const Bf16x8*>(y + static_cast<int64_t>(row) * hidden + c), v);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] += v[i];
    }
    *reinterpret_cast<Bf16x8*>(out + t * hidden + c) = Pack8(acc);
  }
}

// --- workspace ------------------------------------------------------------------------------

struct WorkspaceLayout {
  size_t offsets = 0, tile_list = 0, tile_count = 0, row_slot = 0, slot_row = 0, h = 0, y = 0;
  size_t total = 0;
};

WorkspaceLayout Layout(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden,
                       int64_t inter, int64_t max_tiles) {
  WorkspaceLayout l;
  size_t at = 0;
  auto take = [&at](size_t bytes) {
    const size_t start = at;
    at += (bytes + 255) / 256 * 256;
    return start;
  };
  const int64_t slots = tokens * top_k;
  l.offsets = take(sizeof(int32_t) * (experts + 1));
  l.tile_list = take(sizeof(int2) * std::max<int64_t>(max_tiles, 1));
  l.tile_count = take(sizeof(int32_t));
  l.row_slot = take(sizeof(int32_t) * slots);
  l.slot_row = take(sizeof(int32_t) * slots);
  l.h = take(sizeof(bf16) * slots * inter);
  l.y = take(sizeof(bf16) * slots * hidden);
  l.total = at;
  return l;
}

template <int kBM>
absl::Status LaunchGemms(const bf16* x, const float* weights, const bf16* gate, const bf16* up,
                         const bf16* down, int activation, const MoEExpertsPlan& plan,
                         const WorkspaceLayout& l, unsigned char* ws, int64_t tokens,
                         cudaStream_t stream) {
  using GateUp = GemmShape<kBM, true>;
  using Down = GemmShape<kBM, false>;
  static const cudaError_t gate_up_attribute =
      cudaFuncSetAttribute(MoEGemmKernel<kBM, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(GateUp::kSmem));
  static const cudaError_t down_attribute =
      cudaFuncSetAttribute(MoEGemmKernel<kBM, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(Down::kSmem));
  TESSEL_CUDA_RETURN_IF_ERROR(gate_up_attribute);
  TESSEL_CUDA_RETURN_IF_ERROR(down_attribute);
  const auto* offsets = reinterpret_cast<const int32_t*>(ws + l.offsets);
  const auto* tile_list = reinterpret_cast<const int2*>(ws + l.tile_list);
  const auto* tile_count = reinterpret_cast<const int32_t*>(ws + l.tile_count);
  const auto* row_slot = reinterpret_cast<const int32_t*>(ws + l.row_slot);
  auto* h = reinterpret_cast<bf16*>(ws + l.h);
  auto* y = reinterpret_cast<bf16*>(ws + l.y);
  // Tiles bound for this launch's tokens (fewer than the plan's blocks when tokens is smaller).
  const int64_t slots = tokens * plan.top_k;
  const int64_t tiles =
      std::min(plan.max_tiles, CeilDiv(slots, kBM) + std::min(plan.experts, slots));
  const dim3 gate_up_grid(static_cast<unsigned>(tiles),
                          static_cast<unsigned>(CeilDiv(plan.inter, kBN)));
  MoEGemmKernel<kBM, true><<<gate_up_grid, kGemmThreads, GateUp::kSmem, stream>>>(
      x, gate, up, static_cast<int>(plan.inter), static_cast<int>(plan.hidden),
      static_cast<int>(plan.top_k), offsets, tile_list, tile_count, row_slot, weights, activation,
      h);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MoEGemmKernel<gate_up>");
  const dim3 down_grid(static_cast<unsigned>(tiles),
                       static_cast<unsigned>(CeilDiv(plan.hidden, kBN)));
  MoEGemmKernel<kBM, false><<<down_grid, kGemmThreads, Down::kSmem, stream>>>(
      h, down, nullptr, static_cast<int>(plan.hidden), static_cast<int>(plan.inter),
      static_cast<int>(plan.top_k), offsets, tile_list, tile_count, row_slot, weights, activation,
      y);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MoEGemmKernel<down>");
  return absl::OkStatus();
}

// Experts per router block: 8 (one per warp) when the token groups alone leave the device
// mostly idle (decode: the gate is then read by many blocks at once), else all of them.
constexpr int64_t kMaxSlicedGroups = 128;
int RouterExpertsPerBlock(int64_t tokens, int64_t experts) {
  return CeilDiv(tokens, kRouterTokens) >= kMaxSlicedGroups ? static_cast<int>(experts)
                                                             : kRouterTokens;
}

// Router workspace: the tickets of up to kMaxSlicedGroups groups at a fixed place (so a
// workspace zeroed once serves launches of any token count), then the logits.
constexpr size_t kTicketBytes = sizeof(unsigned) * kMaxSlicedGroups;

}  // namespace

size_t MoERouterWorkspaceBytes(int64_t tokens, int64_t experts) {
  return kTicketBytes + sizeof(float) * std::max<int64_t>(tokens, 1) * experts;
}

absl::Status LaunchMoERouter(const bf16* x, int64_t tokens, int64_t hidden, const bf16* gate,
                             int64_t experts, const float* bias,
                             const MoERouterKernelParams& params, void* workspace,
                             float* weights, int32_t* indices, cudaStream_t stream) {
  if (tokens <= 0) return absl::OkStatus();
  if (experts < 1 || experts > kRouterMaxExperts || hidden < 1 || hidden > 0x7fffffff ||
      CeilDiv(tokens, kRouterTokens) > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat("moe router: experts ", experts,
                                                   " (1..256), hidden ", hidden,
                                                   " or tokens ", tokens, " out of range"));
  }
  const int n_group = std::max(params.n_group, 1);
  if (params.top_k < 1 || params.top_k > 32 || n_group > 32 || experts % n_group != 0 ||
      (n_group > 1 && (params.topk_group < 1 || params.topk_group > n_group))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "moe router: top_k ", params.top_k, " (1..32), n_group ", params.n_group,
        " (<= 32, dividing ", experts, " experts) or topk_group ", params.topk_group,
        " out of range"));
  }
  const int per_block = RouterExpertsPerBlock(tokens, experts);
  const int64_t slices = CeilDiv(experts, per_block);
  if (slices > 1 && workspace == nullptr) {
    return absl::InvalidArgumentError(
        "moe router: a workspace of MoERouterWorkspaceBytes (zeroed once) is required");
  }
  MoERouterKernelParams p = params;
  p.n_group = n_group;
  const bool vector = hidden % 8 == 0 && Aligned16(x) && Aligned16(gate);
  auto* tickets = static_cast<unsigned*>(workspace);
  auto* logits_ws = workspace == nullptr
                        ? nullptr
                        : reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) +
                                                   kTicketBytes);
  const dim3 grid(static_cast<unsigned>(CeilDiv(tokens, kRouterTokens)),
                  static_cast<unsigned>(slices));
  MoERouterKernel<<<grid, kRouterThreads, 0, stream>>>(
      x, tokens, static_cast<int>(hidden), gate, static_cast<int>(experts), per_block, bias, p,
      vector, logits_ws, tickets, weights, indices);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MoERouterKernel");
  return absl::OkStatus();
}

MoEExpertsPlan PlanMoEExperts(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden,
                              int64_t inter) {
  MoEExpertsPlan plan;
  plan.tokens = tokens;
  plan.top_k = top_k;
  plan.experts = experts;
  plan.hidden = hidden;
  plan.inter = inter;
  const int64_t slots = std::max<int64_t>(tokens * top_k, 1);
  // Rows per touched expert on average: small (decode, fine-grained experts) -> 16-row tiles,
  // which read each weight once per 16 rows with little padding; else 64-row tiles.
  const int64_t touched = std::max<int64_t>(1, std::min(experts, slots));
  plan.block_m = slots / touched <= 24 ? 16 : 64;
  plan.max_tiles = CeilDiv(slots, plan.block_m) + std::min(experts, slots);
  plan.workspace_bytes = Layout(tokens, top_k, experts, hidden, inter, plan.max_tiles).total;
  return plan;
}

absl::Status LaunchMoEExperts(const bf16* x, int64_t tokens, const float* weights,
                              const int32_t* indices, const bf16* gate, const bf16* up,
                              const bf16* down, MoEActivation activation,
                              const MoEExpertsPlan& plan, void* workspace, bf16* out,
                              cudaStream_t stream) {
  if (tokens <= 0) return absl::OkStatus();
  if (tokens > plan.tokens || workspace == nullptr || plan.max_tiles < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "moe experts: ", tokens, " tokens need a plan from PlanMoEExperts for at least that "
        "many (plan: ", plan.tokens, ") and its workspace"));
  }
  if (plan.experts < 1 || plan.experts > kMaxExperts || plan.top_k < 1 ||
      plan.hidden % 8 != 0 || plan.inter % 8 != 0 || plan.hidden <= 0 || plan.inter <= 0 ||
      plan.tokens * plan.top_k > 0x7fffffff / 2 || plan.max_tiles > 0x7fffffff ||
      CeilDiv(std::max(plan.hidden, plan.inter), kBN) > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "moe experts: experts ", plan.experts, " (1..1024), top_k ", plan.top_k, ", hidden ",
        plan.hidden, " and inter ", plan.inter, " (multiples of 8) out of range"));
  }
  if (!Aligned16(x) || !Aligned16(gate) || !Aligned16(up) || !Aligned16(down) ||
      !Aligned16(out) || !Aligned16(workspace)) {
    return absl::InvalidArgumentError("moe experts: tensors must be 16-byte aligned");
  }
  const WorkspaceLayout l =
      Layout(plan.tokens, plan.top_k, plan.experts, plan.hidden, plan.inter, plan.max_tiles);
  auto* ws = static_cast<unsigned char*>(workspace);
  const int slots = static_cast<int>(tokens * plan.top_k);
  MoESortKernel<<<1, kSortThreads, 0, stream>>>(
      indices, slots, static_cast<int>(plan.experts), plan.block_m,
      reinterpret_cast<int32_t*>(ws + l.offsets), reinterpret_cast<int2*>(ws + l.tile_list),
      reinterpret_cast<int32_t*>(ws + l.tile_count), reinterpret_cast<int32_t*>(ws + l.row_slot),
      reinterpret_cast<int32_t*>(ws + l.slot_row));
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MoESortKernel");
  const int act = static_cast<int>(activation);
  absl::Status status =
      plan.block_m == 16
          ? LaunchGemms<16>(x, weights, gate, up, down, act, plan, l, ws, tokens, stream)
          : LaunchGemms<64>(x, weights, gate, up, down, act, plan, l, ws, tokens, stream);
  if (!status.ok()) return status;
  MoECombineKernel<<<static_cast<unsigned>(tokens), kCombineThreads, 0, stream>>>(
      reinterpret_cast<const bf16*>(ws + l.y), reinterpret_cast<const int32_t*>(ws + l.slot_row),
      static_cast<int>(plan.top_k), static_cast<int>(plan.hidden), out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MoECombineKernel");
  return absl::OkStatus();
}

}  // namespace tessel::cuda
