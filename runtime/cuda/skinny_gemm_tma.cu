// Skinny GEMM on Hopper: the weights stream through a TMA ring in shared memory into wgmma.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// The register kernel (skinny_gemm.cu) keeps its loads in flight in registers and re-reads
// x through L1 for every 16 weight rows: at 16 rows of x, x costs as many load instructions
// per tile as the weights. Here nothing is loaded through registers:
// - A tile is 64 weight rows (the M of wgmma.m64nNk16; with SwiGLU 64 rows of gate and of
//   up). x is the wgmma B operand: N = 8 (m <= 8) or 16 (m <= 16) rows, K-major like W.
// - A CTA takes one tile and one of `split` equal parts of k; the split CTAs of a tile form a
//   thread-block cluster, and the others hand their partial sums to the first through
//   distributed shared memory (up to 16 rows of x with st.async, counted on an mbarrier of
//   the first, and exit: no cluster barrier at the end), which adds them in rank order
//   (deterministic) and runs the epilogue. Split 2 for projections of under 120 tiles (q/k/v
//   of an 8B model: 96 tiles would leave SMs idle), 3 for o_proj and down (64 tiles, started
//   beside decode attention and gate/up's last wave), 4 above (gate/up, lm_head).
// - One producer thread issues TMA copies of 64 x 64 weight boxes and 64-wide x boxes (both
//   in the 128-byte swizzle wgmma reads) into a ring of stages of 128 k each, completing on
//   the stage's "full" mbarrier; the four consumer warps (one warpgroup) wait on it, run the
//   wgmmas of the stage, and release it on its "empty" mbarrier. The ring takes what a 100
//   KiB budget per CTA leaves (4 stages of 20 KiB, 2 of 36 KiB with SwiGLU): two CTAs per
//   SM; three (3 stages) for a grid of many waves (lm_head). Larger and smaller rings,
//   one-atom stages and 4-way splits everywhere all measured slower within the decode step
//   (docs/performance.md, fifth and tenth rounds).
// - PDL: the weight boxes of the first stages are issued before griddepcontrol.wait (no
//   kernel writes weights), x's after it.
// - RMSNorm prologue: the consumers read each landed x box, sum the squares of its rows
//   (f32), write back bf16(x * weight) and fence it to the async proxy before the wgmmas;
//   the dot products are multiplied by 1 / rms(row) in the epilogue (as the register kernel).
// - Epilogue: the leader stages the tile's values in shared memory and stores them 16 bytes
//   (8 features of one x row) per thread; the residual's chunks are loaded before the k loop.
//   Against one store (and residual load) per element as the wgmma layout holds them:
//   o_proj + residual 15.0 -> 13.9 us, down + residual 42.4 -> 41.2 at 16 rows; the batch-16
//   decode step 5.86 -> 5.78 ms, batch 64 7.38 -> 7.28 (docs/performance.md, eighth round).
// Rows past n and columns past m are zero-filled by TMA and never stored.
#include "runtime/cuda/skinny_gemm_tma.cuh"

#include <cuda.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status.h"
#include "runtime/cuda/cta_trace.cuh"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"
#include "runtime/cuda/hopper.cuh"
#include "runtime/cuda/pdl.cuh"
#include "runtime/cuda/skinny_gemm_epilogue.cuh"

namespace tessel::cuda {
namespace {

constexpr int kTileRows = 64;       // weight rows per CTA (wgmma M)
constexpr int kAtomK = 64;          // k per 128-byte swizzle atom (one TMA box)
constexpr int kConsumers = 128;     // one warpgroup
constexpr int kThreads = kConsumers + 32;  // + the producer warp
constexpr uint32_t kWAtomBytes = kTileRows * 128;
constexpr int kDefaultSmemKiB = 100;  // two CTAs per SM (110 measured slower at b16)
constexpr int kMaxSmemKiB = 200;  // dynamic; the static and reserved bytes come on top
constexpr int kWideSmemKiB = 200;  // more than 16 rows of x: one CTA per SM
// One weight streamed by a grid of many waves (at least kManyWaves times two CTAs per SM:
// lm_head, 8016 CTAs at 16 rows): three CTAs per SM with three-stage rings, so that more CTAs
// overlap their starts and ends. Batch-16 decode step (H100, Llama-3-8B; old and new rings
// alternated) 5.58-5.60 -> 5.55-5.57 ms; two-stage rings (four CTAs per SM) about the same,
// five stages 5.70 (docs/performance.md, tenth round).
constexpr int kManyWavesSmemKiB = 75;
constexpr int kManyWaves = 8;

// Two 64-wide k atoms per ring stage (one measured slower: 7.1 vs 6.3 ms per b16 step, the
// per-stage handshake dominating).
constexpr int kAtomsPerStage = 2;

template <int kMats, int kN>
struct Layout {
  static constexpr uint32_t kXAtomBytes = kN * 128;
  static constexpr uint32_t kStageBytes = kAtomsPerStage * (kMats * kWAtomBytes + kXAtomBytes);
};

struct TmaParams {
  CUtensorMap w_map[kSkinnyMaxWeights];
  CUtensorMap x_map;
  const bf16* bias[kSkinnyMaxWeights];
  void* out[kSkinnyMaxWeights];
  int n[kSkinnyMaxWeights];
  int tile_begin[kSkinnyMaxWeights + 1];  // first CTA of each weight; [weights] = grid size
  const bf16* residual;
  const bf16* norm_weight;
  float norm_eps;
  int m, k;
  int stages;  // ring depth
  int split;   // CTAs (one cluster) sharing each tile's k; 1: no clusters
  int out_f32;
  SkinnyEpilogue epilogue;
  CtaTrace trace;  // TESSEL_CTA_TRACE
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void NamedBarrierSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// 16 bytes into the shared memory of another CTA of the cluster (`remote`: a shared::cluster
// address, MapaShared), completing 16 bytes of transaction on that CTA's mbarrier `remote_bar`.
__device__ __forceinline__ void StoreAsyncCluster(uint32_t remote, float a, float b, float c,
                                                  float d, uint32_t remote_bar) {
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, "
      "[%5];\n" ::"r"(remote),
      "r"(__float_as_uint(a)), "r"(__float_as_uint(b)), "r"(__float_as_uint(c)),
      "r"(__float_as_uint(d)), "r"(remote_bar)
      : "memory");
}
// The same as plain stores (completed by a cluster barrier).
__device__ __forceinline__ void StoreSharedClusterV4(uint32_t remote, float a, float b, float c,
                                                     float d) {
  asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(remote), "f"(a),
               "f"(b), "f"(c), "f"(d)
               : "memory");
}
__device__ __forceinline__ void StoreAsyncCluster(uint32_t remote, float a, uint32_t remote_bar) {
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(remote),
      "r"(__float_as_uint(a)), "r"(remote_bar)
      : "memory");
}

// dst[i] = src[i] for i < count of an epilogue chunk's 8 elements: the ragged end of a row
// (or an unaligned one), where one 16-byte access does not fit. Unrolled with a constant
// index, so that a register array on either side stays in registers.
template <typename T>
__device__ __forceinline__ void CopyChunkHead(T* dst, const T* src, int count) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
    if (i < count) dst[i] = src[i];
}

__device__ __forceinline__ uint4 LoadSharedV4(uint32_t address) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(address));
  return v;
}
__device__ __forceinline__ void StoreSharedV4(uint32_t address, const uint4& v) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}

// D (64 x kN f32) += A (64 x 16 bf16) * B (16 x kN bf16), both K-major in shared memory.
template <int kN>
__device__ __forceinline__ void WgmmaSS(float (&d)[kN / 2], uint64_t desc_a, uint64_t desc_b);
template <>
__device__ __forceinline__ void WgmmaSS<8>(float (&d)[4], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, "
      "0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "l"(desc_a), "l"(desc_b), "n"(1));
}
template <>
__device__ __forceinline__ void WgmmaSS<16>(float (&d)[8], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, "
      "%8, %9, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7])
      : "l"(desc_a), "l"(desc_b), "n"(1));
}

template <>
__device__ __forceinline__ void WgmmaSS<32>(float (&d)[16], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, "
      "%8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15])
      : "l"(desc_a), "l"(desc_b), "n"(1));
}
template <>
__device__ __forceinline__ void WgmmaSS<64>(float (&d)[32], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, "
      "%8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, "
      "%26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
        "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "n"(1));
}

// The wgmmas of one stage (its first kAtoms atoms: fewer at the end of k), issued,
// committed and waited for.
template <int kMats, int kN, int kAtoms>
__device__ __forceinline__ void StageMma(float (&acc)[kMats][kN / 2], uint32_t w_stage,
                                         uint32_t x_stage) {
  using L = Layout<kMats, kN>;
  WgmmaFence();
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
    for (int kk = 0; kk < kAtomK / 16; ++kk) {
      const uint64_t desc_x =
          WgmmaDescriptor(x_stage + a * L::kXAtomBytes + 32 * kk, 16, 1024);
#pragma unroll
      for (int mat = 0; mat < kMats; ++mat) {
        const uint64_t desc_w =
            WgmmaDescriptor(w_stage + (mat * kAtomsPerStage + a) * kWAtomBytes + 32 * kk, 16, 1024);
        WgmmaSS<kN>(acc[mat], desc_w, desc_x);
      }
    }
  }
  WgmmaCommit();
  WgmmaWaitAll();
#pragma unroll
  for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) FenceOperand(acc[mat][i]);
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// kMats: 1, or 2 (gate and up: SwiGLU). kN: 8, 16, 32 or 64 (the x rows rounded up: m <= kN).
// kNorm: the RMSNorm prologue.
template <int kMats, int kN, bool kNorm>
__global__ void __launch_bounds__(kThreads, 1) SkinnyTmaKernel(const __grid_constant__ TmaParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = Layout<kMats, kN>;
  constexpr int kRegs = kMats * kN / 2;  // accumulators per consumer thread
  CtaTraceScope trace(p.trace);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t base = (SmemAddress(smem_raw) + 1023) & ~1023u;
  const int stages = p.stages, split = p.split;
  // The ring: [stages] stages of L::kStageBytes, then [stages] "full" mbarriers and
  // [stages] "empty" ones.
  const uint32_t full_bar = base + stages * L::kStageBytes;
  const uint32_t empty_bar = full_bar + 8 * stages;
  // Split k (clusters): the leader's landing area for the other CTAs' partial sums,
  // [split - 1][kRegs / 4][kConsumers] float4, then their sums of squares [split - 1][kN] (a
  // region of its own: the leader may still be consuming its ring when they arrive, and
  // waiting for it would cost a second cluster barrier: measured slower).
  const uint32_t partials = empty_bar + 8 * stages;
  const uint32_t partial_squares = partials + (split - 1) * kRegs * kConsumers * 4;
  __shared__ float row_inv_rms[kN];  // kNorm: 1 / rms of each x row
  // Up to 16 rows of x the other CTAs write their partial sums with st.async, counted as
  // bytes on the leader's partials_bar, and exit at once instead of holding their SM slot at
  // a cluster barrier until the leader arrives (batch-16 decode step 5.71-5.74 -> 5.58-5.61
  // ms). Above 16 rows they store them and meet the leader at the cluster barrier: one CTA
  // per SM there, and the st.async way measured slower (a first version: 7.31 vs 7.19-7.22 ms
  // per batch-64 step; not re-measured with the conflict-free layout).
  constexpr bool kAsyncPartials = kN <= 16;
  __shared__ __align__(8) uint64_t partials_bar_storage;
  const uint32_t partials_bar = SmemAddress(&partials_bar_storage);

  const int rank = split > 1 ? static_cast<int>(ClusterCtaRank()) : 0;
  const int tile = blockIdx.x / split;
  int seg = 0;
  if constexpr (kMats == 1) {
    while (seg + 1 < kSkinnyMaxWeights && tile >= p.tile_begin[seg + 1]) ++seg;
  }
  const int row0 = (tile - p.tile_begin[seg]) * kTileRows;
  const int atoms = p.k / kAtomK;
  const int all_stages = (atoms + kAtomsPerStage - 1) / kAtomsPerStage;
  // This CTA's share of the k stages: [stage0, stage0 + k_stages).
  const int stage0 = rank * all_stages / split;
  const int k_stages = (rank + 1) * all_stages / split - stage0;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // Local stage i is global stage stage0 + i, in ring slot i % stages.
  auto stage_atoms = [&](int i) {
    return min(kAtomsPerStage, atoms - kAtomsPerStage * (stage0 + i));
  };
  auto w_stage = [&](int slot) { return base + slot * L::kStageBytes; };
  auto x_stage = [&](int slot) {
    return base + slot * L::kStageBytes + kAtomsPerStage * kMats * kWAtomBytes;
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      MbarrierInit(full_bar + 8 * s, 1);
      MbarrierInit(empty_bar + 8 * s, kConsumers / 32);
    }
    MbarrierInit(partials_bar, 1);
    MbarrierInitFence();
  }
  __syncthreads();
  // Split k: the partial sums go to the leader's shared memory at the end; each thread waits
  // on this arrival (long complete by then) before that, so every CTA of the cluster is known
  // to have started (and initialized its barriers) before any writes into another.
  if (split > 1) ClusterArriveRelaxed();
  PdlLaunchDependents();

  if (warp == kConsumers / 32) {  // the producer
    if (lane == 0) {
      const uint64_t evict_first = CreatePolicyEvictFirst();
      auto issue_weights = [&](int i) {
        const int slot = i % stages, n_atoms = stage_atoms(i);
        MbarrierArriveExpectTx(full_bar + 8 * slot,
                               n_atoms * (kMats * kWAtomBytes + L::kXAtomBytes));
        for (int a = 0; a < n_atoms; ++a)
          for (int mat = 0; mat < kMats; ++mat)
            TmaLoad2dHint(w_stage(slot) + (mat * kAtomsPerStage + a) * kWAtomBytes,
                          &p.w_map[seg + mat], full_bar + 8 * slot,
                          (kAtomsPerStage * (stage0 + i) + a) * kAtomK, row0, evict_first);
      };
      auto issue_x = [&](int i) {
        const int slot = i % stages, n_atoms = stage_atoms(i);
        for (int a = 0; a < n_atoms; ++a)
          TmaLoad2d(x_stage(slot) + a * L::kXAtomBytes, &p.x_map, full_bar + 8 * slot,
                    (kAtomsPerStage * (stage0 + i) + a) * kAtomK, 0);
      };
      const int first = min(stages, k_stages);
      for (int i = 0; i < first; ++i) issue_weights(i);
      PdlWait();  // x is the previous kernel's output
      for (int i = 0; i < first; ++i) issue_x(i);
      for (int i = first; i < k_stages; ++i) {
        MbarrierWait(empty_bar + 8 * (i % stages), ((i / stages) - 1) & 1);
        issue_weights(i);
        issue_x(i);
      }
    }
    if (split > 1) {  // every thread of the cluster takes part
      ClusterWait();
      if constexpr (!kAsyncPartials) ClusterSync();
    }
    return;
  }

  // The consumer warpgroup.
  PdlWait();  // the residual and the outputs (an earlier kernel may still read them)
  // The epilogue stores 8 consecutive features of one x row per thread and chunk (below);
  // the residual's chunks are loaded now, their latency hidden behind the k loop.
  constexpr int kChunks = (kN * kTileRows / 8 + kConsumers - 1) / kConsumers;
  const int n = p.n[seg];
  uint4 residual[kChunks];
  if constexpr (kMats == 1) {
    if (p.epilogue == SkinnyEpilogue::kAddResidual && rank == 0) {
#pragma unroll
      for (int q = 0; q < kChunks; ++q) {
        const int c = threadIdx.x + kConsumers * q;
        const int col = c >> 3, feature = row0 + (c & 7) * 8;
        residual[q] = make_uint4(0, 0, 0, 0);
        if (c >= kN * kTileRows / 8 || col >= p.m || feature >= n) continue;
        const bf16* src = p.residual + static_cast<int64_t>(col) * n + feature;
        if (feature + 8 <= n && Aligned16(src)) {
          residual[q] = *reinterpret_cast<const uint4*>(src);
        } else {
          CopyChunkHead(reinterpret_cast<bf16*>(&residual[q]), src, n - feature);
        }
      }
    }
  }
  float acc[kMats][kN / 2];
#pragma unroll
  for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) acc[mat][i] = 0.0f;
  // RMSNorm prologue: thread i works on x row i / kPerRow, 16-byte chunks i % kPerRow + j kPerRow
  // of the stage; its norm weights are loaded before the stage's wait.
  constexpr int kPerRow = kConsumers / kN;
  constexpr int kNormChunks = (kAtomsPerStage * 8 + kPerRow - 1) / kPerRow;
  const int norm_row = threadIdx.x / kPerRow, norm_sub = threadIdx.x % kPerRow;
  float squares = 0.0f;

  for (int i = 0; i < k_stages; ++i) {
    const int slot = i % stages, n_atoms = stage_atoms(i);
    uint4 norm_w[kNormChunks];
    if constexpr (kNorm) {
#pragma unroll
      for (int j = 0; j < kNormChunks; ++j) {
        const int chunk = norm_sub + kPerRow * j;
        if (chunk < n_atoms * 8) {
          norm_w[j] = __ldg(reinterpret_cast<const uint4*>(
              p.norm_weight + kAtomsPerStage * (stage0 + i) * kAtomK + 8 * chunk));
        }
      }
    }
    MbarrierWait(full_bar + 8 * slot, (i / stages) & 1);
    if (i == 0) trace.Ready();
    if constexpr (kNorm) {
#pragma unroll
      for (int j = 0; j < kNormChunks; ++j) {
        const int chunk = norm_sub + kPerRow * j;
        if (chunk >= n_atoms * 8) continue;
        const int a = chunk >> 3, c = chunk & 7;
        const uint32_t address =
            x_stage(slot) + a * L::kXAtomBytes + norm_row * 128 + ((c ^ (norm_row & 7)) << 4);
        uint4 v = LoadSharedV4(address);
        const __nv_bfloat162* xs = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __bfloat1622float2(xs[e]);
          squares = fmaf(f.x, f.x, fmaf(f.y, f.y, squares));
        }
        ScaleByNormWeight(v, norm_w[j]);
        StoreSharedV4(address, v);
      }
      FenceProxyAsync();
      NamedBarrierSync(1, kConsumers);
    }
    if (n_atoms == kAtomsPerStage) {
      StageMma<kMats, kN, kAtomsPerStage>(acc, w_stage(slot), x_stage(slot));
    } else {
      StageMma<kMats, kN, 1>(acc, w_stage(slot), x_stage(slot));
    }
    if (lane == 0) MbarrierArrive(empty_bar + 8 * slot);
  }

  if constexpr (kNorm) {
#pragma unroll
    for (int o = kPerRow / 2; o > 0; o >>= 1) squares += __shfl_xor_sync(0xffffffffu, squares, o);
  }
  if (split > 1) {
    // The other CTAs of the cluster hand their partial sums to the leader (rank 0), which
    // adds them in rank order (deterministic) and alone runs the epilogue (kAsyncPartials).
    ClusterWait();
    if (rank != 0) {
      // [split - 1][kRegs / 4][kConsumers] float4: each warp's store is 512 contiguous bytes.
      const uint32_t bar = MapaShared(partials_bar, 0);
      const uint32_t mine =
          MapaShared(partials + ((rank - 1) * kRegs / 4 * kConsumers + threadIdx.x) * 16, 0);
      const uint32_t my_squares = MapaShared(partial_squares + ((rank - 1) * kN + norm_row) * 4, 0);
      float flat[kRegs];
#pragma unroll
      for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
        for (int r = 0; r < kN / 2; ++r) flat[mat * kN / 2 + r] = acc[mat][r];
#pragma unroll
      for (int r = 0; r < kRegs; r += 4) {
        const uint32_t to = mine + r / 4 * kConsumers * 16;
        if constexpr (kAsyncPartials) {
          StoreAsyncCluster(to, flat[r], flat[r + 1], flat[r + 2], flat[r + 3], bar);
        } else {
          StoreSharedClusterV4(to, flat[r], flat[r + 1], flat[r + 2], flat[r + 3]);
        }
      }
      if (kNorm && norm_sub == 0) {
        if constexpr (kAsyncPartials) {
          StoreAsyncCluster(my_squares, squares, bar);
        } else {
          StoreSharedCluster(my_squares, squares);
        }
      }
      // The stores land in the leader, which stays resident until its mbarrier has counted
      // every byte (a CTA's shared memory must outlive the remote accesses to it).
      if constexpr (kAsyncPartials) return;
    }
    if constexpr (kAsyncPartials) {
      if (threadIdx.x == 0) {
        MbarrierArriveExpectTx(partials_bar,
                               (split - 1) * (kRegs * kConsumers + (kNorm ? kN : 0)) * 4);
      }
      MbarrierWait(partials_bar, 0);
    } else {
      ClusterSync();
      if (rank != 0) return;
    }
    const float* landed = reinterpret_cast<const float*>(smem_raw + (partials - SmemAddress(smem_raw)));
    for (int peer = 0; peer < split - 1; ++peer) {
      const float4* from =
          reinterpret_cast<const float4*>(landed) + peer * kRegs / 4 * kConsumers + threadIdx.x;
#pragma unroll
      for (int q = 0; q < kRegs / 4; ++q) {
        const float4 v = from[q * kConsumers];
        const float part[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = 4 * q + i;
          acc[r / (kN / 2)][r % (kN / 2)] += part[i];
        }
      }
      if (kNorm && norm_sub == 0) {
        squares += landed[(split - 1) * kRegs * kConsumers + peer * kN + norm_row];
      }
    }
  }
  if constexpr (kNorm) {
    // Once per x row here, not per output element below (the division and rsqrt are most of
    // the epilogue's arithmetic).
    if (norm_sub == 0) {
      row_inv_rms[norm_row] = rsqrtf(squares / static_cast<float>(p.k) + p.norm_eps);
    }
    NamedBarrierSync(1, kConsumers);
  }

  // Accumulator (wgmma D) layout: warp w, g = lane / 4, t = lane % 4; element 4 j + e is
  // (weight row 16 w + g + 8 (e / 2), x row 8 j + 2 t + e % 2).
  const int g = lane >> 2, t = lane & 3;
  // Staged epilogue: the values (before a residual add) go to shared memory as f32 [x row]
  // [feature] (ring slot 0: every stage has been consumed), then each thread stores whole
  // 16-byte chunks of 8 features of one x row; the wgmma layout spreads a row's features
  // over the warps (header comment).
  constexpr int kPitch = kTileRows + 4;  // f32 per staged row: +4 spreads the banks
  static_assert(kN * kPitch * sizeof(float) <= L::kStageBytes, "the staged tile fits one stage");
  float* staged = reinterpret_cast<float*>(smem_raw + (base - SmemAddress(smem_raw)));
#pragma unroll
  for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int local = 16 * warp + g + 8 * (e >> 1);
      const int col = 8 * j + 2 * t + (e & 1);
      float inv_rms = 1.0f;
      if constexpr (kNorm) {
        inv_rms = row_inv_rms[col];
      }
      // Rows past n are computed (their weights are zero-filled) and never stored.
      staged[col * kPitch + local] = SkinnyOutputValue<kMats>(
          p, [&](int mat) { return acc[mat][4 * j + e]; }, inv_rms, seg,
          min(row0 + local, n - 1));
    }
  }
  NamedBarrierSync(1, kConsumers);
#pragma unroll
  for (int q = 0; q < kChunks; ++q) {
    const int c = threadIdx.x + kConsumers * q;
    const int col = c >> 3, f0 = (c & 7) * 8, feature = row0 + f0;
    if (c >= kN * kTileRows / 8 || col >= p.m || feature >= n) continue;
    float v[8];
    const float4 lo = *reinterpret_cast<const float4*>(staged + col * kPitch + f0);
    const float4 hi = *reinterpret_cast<const float4*>(staged + col * kPitch + f0 + 4);
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
    v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
    if constexpr (kMats == 1) {
      if (p.epilogue == SkinnyEpilogue::kAddResidual) {
        const bf16* r = reinterpret_cast<const bf16*>(&residual[q]);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] += __bfloat162float(r[i]);
      }
    }
    const int64_t o = static_cast<int64_t>(col) * n + feature;
    const bool whole = feature + 8 <= n;
    if (p.out_f32) {
      float* dst = static_cast<float*>(p.out[seg]) + o;
      if (whole && Aligned16(dst)) {
        reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
      } else {
        CopyChunkHead(dst, v, n - feature);
      }
    } else {
      bf16* dst = static_cast<bf16*>(p.out[seg]) + o;
      uint4 packed;
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
      for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
      if (whole && Aligned16(dst)) {
        *reinterpret_cast<uint4*>(dst) = packed;
      } else {
        CopyChunkHead(dst, reinterpret_cast<const bf16*>(&packed), n - feature);
      }
    }
  }
#else
  __trap();  // TMA and wgmma exist only in sm_90a machine code (LaunchSkinnyGemmTma checks)
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

absl::StatusOr<EncodeTiledFn> EncodeTiled() {
  static const absl::StatusOr<EncodeTiledFn> fn = []() -> absl::StatusOr<EncodeTiledFn> {
    absl::StatusOr<void*> pointer =
        DriverEntryPoint("cuTensorMapEncodeTiled", "the TMA skinny GEMM needs a CUDA 12+ driver");
    if (!pointer.ok()) return pointer.status();
    return reinterpret_cast<EncodeTiledFn>(*pointer);
  }();
  return fn;
}

// A [rows, k] bf16 row-major tensor read in boxes of 64 k x box_rows, 128-byte swizzle.
absl::Status EncodeMap(EncodeTiledFn encode, CUtensorMap* map, const bf16* base, int64_t rows,
                       int64_t k, int box_rows, const std::string& what) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(k) * sizeof(bf16)};
  const cuuint32_t box[2] = {kAtomK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult result =
      encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims, strides,
             box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: cannot describe ", what, " [",
                                                   rows, ", ", k, "] to TMA (CUDA driver error ",
                                                   static_cast<int>(result), ")"));
  }
  return absl::OkStatus();
}

// The shared-memory budget of a CTA: TESSEL_SKINNY_TMA_SMEM_KIB (measurements), else 100 KiB
// (two CTAs per SM) up to 16 rows of x (kManyWavesSmemKiB for one weight streamed in many
// waves), and kWideSmemKiB (one CTA per SM) above, where x's stages are as large as the
// weights' and the split-k partial sums grow with the rows.
int SmemBudgetBytes(int kn, bool many_waves) {
  static const int forced = [] {
    const char* env = std::getenv("TESSEL_SKINNY_TMA_SMEM_KIB");
    const int kib = env != nullptr ? std::atoi(env) : 0;
    return kib > 0 ? std::min(kib, kMaxSmemKiB) * 1024 : 0;
  }();
  if (forced > 0) return forced;
  if (kn > 16) return kWideSmemKiB * 1024;
  return (many_waves ? kManyWavesSmemKiB : kDefaultSmemKiB) * 1024;
}

// Which projection a launch is, for the measurement switches below: q/k/v (three weights),
// gate/up (SwiGLU), down (one weight deeper than wide, k > n), lm_head (one weight, n >= 8 k),
// o (every other one-weight projection: o_proj).
enum Projection { kQkv, kO, kGateUp, kDown, kHead, kProjections };
constexpr const char* kProjectionNames[kProjections] = {"qkv", "o", "gateup", "down", "head"};

Projection ClassifyProjection(const SkinnyGemmArgs& args) {
  if (args.epilogue == SkinnyEpilogue::kSwiGlu) return kGateUp;
  if (args.weights > 1) return kQkv;
  if (args.k > args.n[0]) return kDown;
  return args.n[0] >= 8 * args.k ? kHead : kO;
}

// A per-projection setting from the environment variable `name` (measurements):
// "qkv=2,o=4,gateup=4,down=8,head=4" (any subset), or positionally "a" (every projection) /
// "a,b" (a, and b for gate/up). 0 where unset; what it cannot read is said on stderr.
struct ProjectionSetting {
  int value[kProjections] = {};
};

ProjectionSetting ParseProjectionSetting(const char* name) {
  ProjectionSetting setting;
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return setting;
  if (std::strchr(env, '=') == nullptr) {
    int a = 0, b = 0;
    const int fields = std::sscanf(env, "%d,%d", &a, &b);
    if (fields < 1) {
      std::fprintf(stderr, "%s=%s: expected a number, 'a,b' or 'projection=n,...'; ignored\n",
                   name, env);
      return setting;
    }
    for (int& v : setting.value) v = a;
    setting.value[kGateUp] = fields == 2 ? b : a;
    return setting;
  }
  const std::string text(env);
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, end - at);
    const size_t eq = item.find('=');
    bool known = false;
    for (int c = 0; c < kProjections && eq != std::string::npos; ++c) {
      if (item.compare(0, eq, kProjectionNames[c]) == 0) {
        setting.value[c] = std::atoi(item.c_str() + eq + 1);
        known = true;
      }
    }
    if (!known) {
      std::fprintf(stderr, "%s: '%s' ignored (projections: qkv, o, gateup, down, head)\n", name,
                   item.c_str());
    }
    at = end + 1;
  }
  return setting;
}

// Ring stages: TESSEL_SKINNY_TMA_STAGES (ParseProjectionSetting; legacy "a,b": a for one or
// three weights, b for gate/up) overrides the shared-memory budget's count.
int ForcedStages(Projection projection) {
  static const ProjectionSetting forced =
      ParseProjectionSetting("TESSEL_SKINNY_TMA_STAGES");
  return std::max(0, forced.value[projection]);
}

// Split k: TESSEL_SKINNY_TMA_SPLIT (ParseProjectionSetting; 1 to kSkinnyMaxSplit CTAs, 0 for
// the default; measurements) or the caller's (LaunchSkinnyGemm checks it), else the default.
int ChooseSplit(int requested, int64_t tiles, Projection projection) {
  static const ProjectionSetting forced_by_env =
      ParseProjectionSetting("TESSEL_SKINNY_TMA_SPLIT");
  const int forced = forced_by_env.value[projection];
  if (forced >= 1 && forced <= kSkinnyMaxSplit) return forced;
  if (requested != 0) return requested;
  // bench_kernels (H100): 64-96 tiles (o_proj, down, q/k/v) fastest at 2 (1 leaves SMs idle,
  // 4 loses: 17.7 vs 14.4 us for o_proj at m = 16); gate/up and lm_head at 4 (81.5 vs 83.5
  // us for gate/up+norm at m = 16; lm_head within 1%). o_proj and down at 3 within the
  // decode step: o_proj's CTAs start on the SMs decode attention leaves free, two per SM, and
  // a third more of them (192) streams faster once attention's SMs free up; down's start
  // beside gate/up's last wave. Llama-3-8B batch 16, old and new libraries alternated, ms per
  // step: 5.53-5.56 -> o 3 5.50-5.53 -> o and down 3 5.49 (q/k/v 3: 5.70, gate/up 3: 5.75;
  // docs/performance.md, eleventh round).
  if (tiles < 120) return projection == kO || projection == kDown ? 3 : 2;
  return 4;
}

template <int kMats, int kN, bool kNorm>
absl::Status LaunchVariant(TmaParams& p, int64_t tiles, int split, int forced_stages,
                           cudaStream_t stream) {
  using L = Layout<kMats, kN>;
  const int all_stages = (p.k / kAtomK + kAtomsPerStage - 1) / kAtomsPerStage;
  // Above 16 rows, at most two CTAs per tile: the partial sums landing in the leader take
  // kMats * kN / 2 * 512 bytes per other CTA.
  split = std::min(split, kN <= 16 ? all_stages : std::min(2, all_stages));
  const int cta_stages = (all_stages + split - 1) / split;
  const int partials = (split - 1) * (kMats * kN / 2 * kConsumers + kN) * 4;
  const bool many_waves =
      kMats == 1 && tiles * split >= int64_t{kManyWaves} * 2 * MultiprocessorCount();
  const int fit = static_cast<int>((SmemBudgetBytes(kN, many_waves) - 1024 - partials) /
                                   (L::kStageBytes + 16));
  const int most = static_cast<int>((kMaxSmemKiB * 1024 - 1024 - partials) / (L::kStageBytes + 16));
  p.stages = std::max(
      1, std::min(forced_stages > 0 ? std::min(forced_stages, most) : fit, cta_stages));
  p.split = split;
  const size_t smem = 1024 + static_cast<size_t>(p.stages) * (L::kStageBytes + 16) + partials;
  auto* kernel = SkinnyTmaKernel<kMats, kN, kNorm>;
  static const cudaError_t attribute =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmemKiB * 1024);
  TESSEL_CUDA_RETURN_IF_ERROR(attribute);
  const cudaError_t launch_of_SkinnyTmaKernel = LaunchDependentClusters(
      PdlKernel::kSkinnyGemm, kernel, static_cast<unsigned>(tiles * split), kThreads, smem, split,
      stream, p);
  TESSEL_CUDA_RETURN_IF_ERROR(launch_of_SkinnyTmaKernel);
  return absl::OkStatus();
}

template <int kMats, int kN>
absl::Status LaunchNorm(TmaParams& p, int64_t tiles, int split, int stages, cudaStream_t stream) {
  return p.norm_weight != nullptr
             ? LaunchVariant<kMats, kN, true>(p, tiles, split, stages, stream)
             : LaunchVariant<kMats, kN, false>(p, tiles, split, stages, stream);
}

// The variant for kn (8, 16, 32 or 64) rows of x.
template <int kMats>
absl::Status LaunchRows(int kn, TmaParams& p, int64_t tiles, int split, int stages,
                        cudaStream_t stream) {
  switch (kn) {
    case 8: return LaunchNorm<kMats, 8>(p, tiles, split, stages, stream);
    case 16: return LaunchNorm<kMats, 16>(p, tiles, split, stages, stream);
    case 32: return LaunchNorm<kMats, 32>(p, tiles, split, stages, stream);
    default: return LaunchNorm<kMats, 64>(p, tiles, split, stages, stream);
  }
}

}  // namespace

bool SkinnyGemmTmaAvailable() { return DeviceIsSm90(); }

int64_t SkinnyGemmTmaTiles(const SkinnyGemmArgs& args) {
  const bool swiglu = args.epilogue == SkinnyEpilogue::kSwiGlu;
  int64_t tiles = 0;
  for (int i = 0; i < args.weights; ++i) {
    if (!swiglu || i == 0) tiles += CeilDiv(args.n[i], kTileRows);
  }
  return tiles;
}

absl::Status LaunchSkinnyGemmTma(const SkinnyGemmArgs& args, cudaStream_t stream) {
  if (!SkinnyGemmTmaAvailable()) {
    return absl::FailedPreconditionError("skinny gemm: the TMA kernel needs an sm_90 GPU");
  }
  absl::StatusOr<EncodeTiledFn> encode = EncodeTiled();
  if (!encode.ok()) return encode.status();
  const bool swiglu = args.epilogue == SkinnyEpilogue::kSwiGlu;
  const int kn = args.m <= 8 ? 8 : args.m <= 16 ? 16 : args.m <= 32 ? 32 : 64;
  TmaParams p = {};
  TESSEL_RETURN_IF_ERROR(EncodeMap(*encode, &p.x_map, args.x, args.m, args.k, kn, "x"));
  p.m = static_cast<int>(args.m);
  p.k = static_cast<int>(args.k);
  p.residual = args.residual;
  p.norm_weight = args.norm_weight;
  p.norm_eps = args.norm_eps;
  p.out_f32 = args.out_f32 ? 1 : 0;
  p.epilogue = args.epilogue;
  int64_t tiles = 0;
  for (int i = 0; i < kSkinnyMaxWeights; ++i) {
    p.tile_begin[i] = static_cast<int>(tiles);
    if (i >= args.weights) continue;
    TESSEL_RETURN_IF_ERROR(EncodeMap(*encode, &p.w_map[i], args.w[i], args.n[i], args.k,
                                     kTileRows, absl::StrCat("weight ", i)));
    p.bias[i] = args.bias[i];
    p.n[i] = static_cast<int>(args.n[i]);
    p.out[i] = args.out[i];
    if (!swiglu || i == 0) tiles += CeilDiv(args.n[i], kTileRows);
  }
  p.tile_begin[kSkinnyMaxWeights] = static_cast<int>(tiles);
  // The grid is tiles x split CTAs, split at most kSkinnyMaxSplit.
  if (tiles * kSkinnyMaxSplit > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError("skinny gemm: too many rows");
  }
  const Projection projection = ClassifyProjection(args);
  const int split = ChooseSplit(args.split, tiles, projection);
  p.trace = CtaTraceForLaunch([&] {
    return absl::StrCat("skinny_tma ", kProjectionNames[projection], " m=", args.m, " k=", args.k,
                        " n=", args.n[0], " weights=", args.weights, " split=", split);
  });
  const int stages = ForcedStages(projection);
  return swiglu ? LaunchRows<2>(kn, p, tiles, split, stages, stream)
                : LaunchRows<1>(kn, p, tiles, split, stages, stream);
}

}  // namespace tessel::cuda
