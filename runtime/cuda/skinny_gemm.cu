// Skinny GEMM: C_i = A W_i^T for A of at most 16 rows, streaming W from HBM once.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Decode reads every weight once per step and multiplies it by a handful of rows, so the
// kernel's only job is to keep enough weight bytes in flight. Design:
// - A CTA (8 warps) owns 16 output features (16 rows of each W: one mma "A" tile; two tiles,
//   gate and up, for SwiGLU). The activations are the mma "B" operand: 8 columns (rows of x)
//   per n-tile, one or two n-tiles (m <= 8 or <= 16). mma.sync m16n8k16 bf16 -> f32.
// - K is cut into 64-wide chunks dealt round-robin to the 8 warps. Per chunk a thread loads
//   16 bytes at k = 8 * (lane % 4) and at 32 + 8 * (lane % 4) of W rows lane / 4 and
//   lane / 4 + 8 — each warp reads whole 128-byte lines of 16 rows — and the same k of x.
//   No shared memory, no ldmatrix: a dot product does not care in which order k is summed,
//   so the fragment's logical k (2t, 2t+1, 2t+8, 2t+9 for thread t of a quad) is mapped onto
//   the 4 physical k the thread loaded (8t + 4s + {0..3} of the 32-wide half, for mma step
//   s = 0, 1). A and B use the same map, so the sum is the plain dot product.
// - Several chunks' loads are issued before their mmas (kUnroll) so each warp keeps 6-8 KB in
//   flight; W is read with L1::no_allocate (read once), x through the read-only path (every
//   CTA reads it: L2/L1 hits).
// - The 8 warps' partial tiles are summed through shared memory in a fixed order
//   (deterministic), then the epilogue adds bias / residual or applies SwiGLU and stores.
#include "runtime/cuda/skinny_gemm.cuh"

#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/pdl.cuh"
#include "runtime/cuda/skinny_gemm_epilogue.cuh"
#include "runtime/cuda/skinny_gemm_tma.cuh"

namespace tessel::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTileRows = 16;
constexpr int kChunk = 64;

struct Params {
  const bf16* x;
  int m, k;
  const bf16* w[kSkinnyMaxWeights];
  const bf16* bias[kSkinnyMaxWeights];
  int n[kSkinnyMaxWeights];
  void* out[kSkinnyMaxWeights];
  int tile_begin[kSkinnyMaxWeights + 1];  // first CTA of each weight; [weights] = grid size
  const bf16* residual;
  const bf16* norm_weight;  // RMSNorm prologue (see SkinnyGemmArgs), or null
  float norm_eps;
  int out_f32;
  int preload;  // the first weight loads before PdlWait (TESSEL_SKINNY_PRELOAD, default on)
  SkinnyEpilogue epilogue;
};

__device__ __forceinline__ uint4 LoadStream(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 LoadShared(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void Mma(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The mmas of one 64-wide chunk: for each 32-wide half, step 0 takes physical k 8t + {0..3}
// (registers .x, .y), step 1 takes 8t + {4..7} (.z, .w).
template <int kMats, int kNTiles>
__device__ __forceinline__ void ChunkMma(float (&acc)[kMats][kNTiles][4],
                                         const uint4 (&wv)[kMats][2][2],
                                         const uint4 (&xv)[kNTiles][2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int mat = 0; mat < kMats; ++mat) {
      const uint4 lo = wv[mat][0][half], hi = wv[mat][1][half];
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const uint4 b = xv[nt][half];
        Mma(acc[mat][nt], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
        Mma(acc[mat][nt], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
      }
    }
  }
}

// kMats: 1 (each CTA one tile of one weight) or 2 (the same tile of gate and up: SwiGLU).
// kNTiles: 1 (m <= 8) or 2 (m <= 16).
// RMSNorm prologue, sums of squares: the x rows' B fragments of one chunk are also the A
// fragments of X (rows 0-7 from n-tile 0, rows 8-15 from n-tile 1, under the same k map), so
// X X^T on the tensor cores gives every row's sum of squares on its diagonal: one mma per
// k16 step and n-tile instead of a multiply-add per value. sq[nt]: the accumulator of
// X X[8 nt .. 8 nt + 7]^T.
template <int kNTiles>
__device__ __forceinline__ void SquaresMma(float (&sq)[kNTiles][4],
                                           const uint4 (&xv)[kNTiles][2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const uint4 x0 = xv[0][half];
    const uint4 x1 = kNTiles > 1 ? xv[kNTiles - 1][half] : make_uint4(0, 0, 0, 0);
    Mma(sq[0], x0.x, x1.x, x0.y, x1.y, x0.x, x0.y);
    Mma(sq[0], x0.z, x1.z, x0.w, x1.w, x0.z, x0.w);
    if constexpr (kNTiles > 1) {
      Mma(sq[kNTiles - 1], x0.x, x1.x, x0.y, x1.y, x1.x, x1.y);
      Mma(sq[kNTiles - 1], x0.z, x1.z, x0.w, x1.w, x1.z, x1.w);
    }
  }
}

// kMinBlocks: CTAs per SM the registers are sized for (1: up to 24 uint4 of loads in flight
// per thread; 2: up to 16).
// kNorm: x is the input of an RMSNorm whose weight is p.norm_weight (see SkinnyGemmArgs).
template <int kMats, int kNTiles, int kMinBlocks, bool kNorm>
__global__ void __launch_bounds__(kThreads, kMinBlocks) SkinnyGemmKernel(const Params p) {
  // Registers per chunk: 4 uint4 of W per matrix, 2 of x per n-tile (the RMSNorm weights
  // are read from shared memory when used).
  constexpr int kPerChunk = kMats * 4 + kNTiles * 2;
  constexpr int kBudget = kMinBlocks == 1 ? 24 : 16;
  constexpr int kUnroll = kBudget / kPerChunk > 0 ? kBudget / kPerChunk : 1;
  __shared__ float partial[kWarps][kMats][kTileRows][kNTiles * 8];
  __shared__ float row_squares[kWarps][kNTiles * 8];  // kNorm: per warp, per x row
  extern __shared__ __align__(16) bf16 norm_s[];  // kNorm: the RMSNorm weight, k values

  const int tile = blockIdx.x;
  int seg = 0;
  if (kMats == 1) {
    while (seg + 1 < kSkinnyMaxWeights && tile >= p.tile_begin[seg + 1]) ++seg;
  }
  const int n = p.n[seg];
  const int row0 = (tile - p.tile_begin[seg]) * kTileRows;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int k = p.k;

  // Rows past n and columns past m read a valid row (the last) and are never stored, so the
  // loads need no predicates.
  const bf16* wrow[kMats][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = min(row0 + g + 8 * h, n - 1);
#pragma unroll
    for (int mat = 0; mat < kMats; ++mat) {
      wrow[mat][h] = p.w[seg + mat] + static_cast<int64_t>(r) * k + 8 * t;
    }
  }
  const bf16* xrow[kNTiles];
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) {
    xrow[nt] = p.x + static_cast<int64_t>(min(g + 8 * nt, p.m - 1)) * k + 8 * t;
  }

  const int chunks = k / kChunk;
  // The weights of the warp's first group of kUnroll chunks (wv; loaded before PdlWait).
  uint4 wv[kUnroll][kMats][2][2];  // [chunk][matrix][row g / g + 8][k half]
  auto load_weights = [&](int first) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int off = (first + kWarps * u) * kChunk;
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
          for (int h = 0; h < 2; ++h) wv[u][mat][h][half] = LoadStream(wrow[mat][h] + off + 32 * half);
    }
  };
  // Full groups of kUnroll chunks per warp, then the rest one chunk at a time.
  int c0 = warp;
  auto full_group = [&] { return c0 + kWarps * (kUnroll - 1) < chunks; };

  // Programmatic dependent launch (pdl.cuh): the next kernel may be scheduled once every CTA
  // of this one has started; what does not depend on the previous kernel (the weights, never
  // written, and the RMSNorm weights) is read before waiting for it, so the first weight
  // loads overlap the previous kernel's tail.
  PdlLaunchDependents();
  if (p.preload && full_group()) load_weights(c0);
  if constexpr (kNorm) {
    for (int i = threadIdx.x * 8; i < k; i += kThreads * 8) {
      *reinterpret_cast<uint4*>(norm_s + i) = LoadShared(p.norm_weight + i);
    }
  }
  PdlWait();
  if constexpr (kNorm) __syncthreads();
  if (!p.preload && full_group()) load_weights(c0);
  // The epilogue's output element of this thread (below) and its residual, loaded now: the
  // load's latency hides behind the k loop instead of ending the CTA.
  const int out_r = threadIdx.x % kTileRows, out_col = threadIdx.x / kTileRows;
  const bool stores = threadIdx.x < kTileRows * kNTiles * 8 && out_col < p.m && row0 + out_r < n;
  const int64_t out_offset = static_cast<int64_t>(out_col) * n + row0 + out_r;
  float residual = 0.0f;
  if (kMats == 1 && p.epilogue == SkinnyEpilogue::kAddResidual && stores) {
    residual = __bfloat162float(p.residual[out_offset]);
  }

  const bf16* norm_w = kNorm ? norm_s + 8 * t : nullptr;
  float squares[kNTiles][4] = {};  // kNorm: SquaresMma's accumulators

  float acc[kMats][kNTiles][4];
#pragma unroll
  for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mat][nt][i] = 0.0f;

  while (full_group()) {
    // wv holds this group's weights; its x, then the products; then the next group's weights.
    uint4 xv[kUnroll][kNTiles][2];  // [chunk][n-tile][k half]
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int off = (c0 + kWarps * u) * kChunk;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) xv[u][nt][half] = LoadShared(xrow[nt] + off + 32 * half);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if constexpr (kNorm) {
        SquaresMma<kNTiles>(squares, xv[u]);
        const int off = (c0 + kWarps * u) * kChunk;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint4 nw = *reinterpret_cast<const uint4*>(norm_w + off + 32 * half);
#pragma unroll
          for (int nt = 0; nt < kNTiles; ++nt) ScaleByNormWeight(xv[u][nt][half], nw);
        }
      }
      ChunkMma<kMats, kNTiles>(acc, wv[u], xv[u]);
    }
    c0 += kWarps * kUnroll;
    if (full_group()) load_weights(c0);
  }
  for (; c0 < chunks; c0 += kWarps) {
    uint4 wt[kMats][2][2];
    uint4 xv[kNTiles][2];
    const int off = c0 * kChunk;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
        for (int h = 0; h < 2; ++h) wt[mat][h][half] = LoadStream(wrow[mat][h] + off + 32 * half);
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) xv[nt][half] = LoadShared(xrow[nt] + off + 32 * half);
    }
    if constexpr (kNorm) {
      SquaresMma<kNTiles>(squares, xv);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint4 nw = *reinterpret_cast<const uint4*>(norm_w + off + 32 * half);
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) ScaleByNormWeight(xv[nt][half], nw);
      }
    }
    ChunkMma<kMats, kNTiles>(acc, wt, xv);
  }

  // c0, c1: (row g, cols 2t, 2t + 1); c2, c3: (row g + 8, the same cols) of each n-tile.
#pragma unroll
  for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      partial[warp][mat][g][nt * 8 + 2 * t] = acc[mat][nt][0];
      partial[warp][mat][g][nt * 8 + 2 * t + 1] = acc[mat][nt][1];
      partial[warp][mat][g + 8][nt * 8 + 2 * t] = acc[mat][nt][2];
      partial[warp][mat][g + 8][nt * 8 + 2 * t + 1] = acc[mat][nt][3];
    }
  if constexpr (kNorm) {
    // Row 8 nt + g's sum is the diagonal element (row 8 nt + g, column g) of sq[nt]: held by
    // the quad's thread whose columns 2t, 2t + 1 include g (registers 0, 1 for the rows g,
    // 2, 3 for the rows g + 8); a quad sum brings it to the thread t = 0, which writes.
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      float q = g == 2 * t ? squares[nt][2 * nt] : g == 2 * t + 1 ? squares[nt][2 * nt + 1] : 0.0f;
      q += __shfl_xor_sync(0xffffffffu, q, 1);
      q += __shfl_xor_sync(0xffffffffu, q, 2);
      if (t == 0) row_squares[warp][nt * 8 + g] = q;
    }
  }
  __syncthreads();

  // One thread per output element: consecutive threads write consecutive features.
  if (!stores) return;
  const int r = out_r, col = out_col;
  float inv_rms = 1.0f;
  if constexpr (kNorm) {
    float q = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) q += row_squares[w][col];
    inv_rms = rsqrtf(q / static_cast<float>(k) + p.norm_eps);
  }
  auto dot = [&](int mat) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += partial[w][mat][r][col];
    return s;
  };
  float value = SkinnyOutputValue<kMats>(p, dot, inv_rms, seg, row0 + r);
  if (kMats == 1 && p.epilogue == SkinnyEpilogue::kAddResidual) value += residual;
  if (p.out_f32) {
    static_cast<float*>(p.out[seg])[out_offset] = value;
  } else {
    static_cast<bf16*>(p.out[seg])[out_offset] = __float2bfloat16_rn(value);
  }
}

template <int kMats, int kMinBlocks, bool kNorm>
cudaError_t LaunchVariant(const Params& p, int grid, int m, cudaStream_t stream) {
  const size_t smem = kNorm ? sizeof(bf16) * p.k : 0;
  return m <= 8 ? LaunchDependent(PdlKernel::kSkinnyGemm,
                                  SkinnyGemmKernel<kMats, 1, kMinBlocks, kNorm>, grid, kThreads,
                                  smem, stream, p)
                : LaunchDependent(PdlKernel::kSkinnyGemm,
                                  SkinnyGemmKernel<kMats, 2, kMinBlocks, kNorm>, grid, kThreads,
                                  smem, stream, p);
}

template <int kMats, int kMinBlocks>
cudaError_t LaunchVariant(const Params& p, int grid, int m, cudaStream_t stream) {
  return p.norm_weight != nullptr ? LaunchVariant<kMats, kMinBlocks, true>(p, grid, m, stream)
                                  : LaunchVariant<kMats, kMinBlocks, false>(p, grid, m, stream);
}

template <int kMats>
absl::Status Launch(const Params& p, int grid, int m, int occupancy, cudaStream_t stream) {
  const cudaError_t launch_of_SkinnyGemmKernel =
      occupancy == 2 ? LaunchVariant<kMats, 2>(p, grid, m, stream)
                     : LaunchVariant<kMats, 1>(p, grid, m, stream);
  TESSEL_CUDA_RETURN_IF_ERROR(launch_of_SkinnyGemmKernel);
  return absl::OkStatus();
}

}  // namespace

// SkinnyKernel::kAuto resolved: TESSEL_SKINNY_KERNEL=registers|tma when set (tma only where
// the GPU has it), else the TMA kernel for more than 8 rows on sm_90, the register kernel
// otherwise. Measured on the H100 (docs/performance.md, fifth round): alone, the TMA kernel
// wins at 16 rows by 1-8 us per projection and at one row for the large ones, but within
// the decode step (PDL) only its 16-row use gains (b16 5.89 vs 6.10 ms; b1 5.61 vs 5.53 ms
// with it on q/k/v, gate/up and lm_head), and one step must not mix the two: register-kernel
// CTAs starting on SMs configured for the TMA kernel's shared memory run with a small L1 (b16
// 6.72-6.94 ms with o_proj/down or more on registers). An explicit kTma stays kTma (and
// fails to launch without sm_90).
namespace {
SkinnyKernel ForcedSkinnyKernel() {
  static const SkinnyKernel forced = [] {
    const char* env = std::getenv("TESSEL_SKINNY_KERNEL");
    if (env == nullptr) return SkinnyKernel::kAuto;
    const std::string_view value(env);
    return value == "tma"         ? SkinnyKernel::kTma
           : value == "registers" ? SkinnyKernel::kRegisters
                                  : SkinnyKernel::kAuto;
  }();
  return forced;
}
}  // namespace

int SkinnyGemmMaxRows() {
  return SkinnyGemmTmaAvailable() && ForcedSkinnyKernel() != SkinnyKernel::kRegisters
             ? kSkinnyTmaMaxRows
             : kSkinnyMaxRows;
}

SkinnyKernel ResolveSkinnyKernel(const SkinnyGemmArgs& args) {
  if (args.kernel != SkinnyKernel::kAuto) return args.kernel;
  const SkinnyKernel forced = ForcedSkinnyKernel();
  if (forced == SkinnyKernel::kRegisters || !SkinnyGemmTmaAvailable()) {
    return SkinnyKernel::kRegisters;
  }
  if (forced == SkinnyKernel::kTma) return SkinnyKernel::kTma;
  // TESSEL_SKINNY_TMA_MIN_TILES=N (measurements): the TMA kernel only for projections of at
  // least N tiles of 64 rows.
  static const int64_t min_tiles = [] {
    const char* env = std::getenv("TESSEL_SKINNY_TMA_MIN_TILES");
    return env != nullptr ? std::atoll(env) : int64_t{0};
  }();
  if (args.m > kSkinnyMaxRows) return SkinnyKernel::kTma;
  return args.m > 8 && SkinnyGemmTmaTiles(args) >= min_tiles ? SkinnyKernel::kTma
                                                            : SkinnyKernel::kRegisters;
}

bool SkinnyGemmPreferred(const SkinnyGemmArgs& args) {
  if (args.m <= kSkinnyMaxRows) return true;
  return ResolveSkinnyKernel(args) == SkinnyKernel::kTma && args.weights >= 2 &&
         args.norm_weight == nullptr;
}

bool SkinnyGemmSupports(int64_t m, int64_t k) {
  return m >= 1 && m <= SkinnyGemmMaxRows() && k > 0 && k % kChunk == 0 &&
         k <= (int64_t{1} << 30);
}

absl::Status LaunchSkinnyGemm(const SkinnyGemmArgs& args, cudaStream_t stream) {
  if (!SkinnyGemmSupports(args.m, args.k)) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: m = ", args.m, ", k = ", args.k,
                                                   " (needs 1 <= m <= ", SkinnyGemmMaxRows(),
                                                   ", k a multiple of ", kChunk, ")"));
  }
  if (args.weights < 1 || args.weights > kSkinnyMaxWeights) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: ", args.weights, " weights"));
  }
  if (args.split < 0 || args.split > kSkinnyMaxSplit) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: split ", args.split,
                                                   " (0 for the default, or 1 to ",
                                                   kSkinnyMaxSplit, ")"));
  }
  const bool swiglu = args.epilogue == SkinnyEpilogue::kSwiGlu;
  const bool residual = args.epilogue == SkinnyEpilogue::kAddResidual;
  if (swiglu && (args.weights != 2 || args.n[0] != args.n[1])) {
    return absl::InvalidArgumentError("skinny gemm: SwiGLU needs a gate and an up weight of equal n");
  }
  if (residual && (args.weights != 1 || args.residual == nullptr)) {
    return absl::InvalidArgumentError("skinny gemm: the residual epilogue takes one weight and a residual");
  }
  if (args.out_f32 && args.epilogue != SkinnyEpilogue::kStore) {
    return absl::InvalidArgumentError("skinny gemm: f32 output only without an epilogue");
  }
  if (!Aligned16(args.x)) return absl::InvalidArgumentError("skinny gemm: x is not 16-byte aligned");
  if (args.norm_weight != nullptr && !Aligned16(args.norm_weight)) {
    return absl::InvalidArgumentError("skinny gemm: norm_weight is not 16-byte aligned");
  }
  if (args.norm_weight != nullptr && args.k > kSkinnyMaxNormK) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: the RMSNorm prologue takes k <= ",
                                                   kSkinnyMaxNormK, ", not ", args.k));
  }
  for (int i = 0; i < args.weights; ++i) {
    if (args.n[i] <= 0 || args.n[i] > (int64_t{1} << 30) || args.w[i] == nullptr ||
        args.out[i] == nullptr || !Aligned16(args.w[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "skinny gemm: weight ", i, " has n = ", args.n[i], " or a null/unaligned pointer"));
    }
  }
  if (ResolveSkinnyKernel(args) == SkinnyKernel::kTma) return LaunchSkinnyGemmTma(args, stream);
  if (args.m > kSkinnyMaxRows) {
    return absl::InvalidArgumentError(absl::StrCat("skinny gemm: the register kernel takes m <= ",
                                                   kSkinnyMaxRows, ", not ", args.m));
  }
  Params p = {};
  p.x = args.x;
  p.m = static_cast<int>(args.m);
  p.k = static_cast<int>(args.k);
  p.residual = args.residual;
  p.norm_weight = args.norm_weight;
  p.norm_eps = args.norm_eps;
  p.out_f32 = args.out_f32 ? 1 : 0;
  static const int preload = [] {
    const char* env = std::getenv("TESSEL_SKINNY_PRELOAD");
    return env != nullptr && env[0] == '0' ? 0 : 1;
  }();
  p.preload = preload;
  p.epilogue = args.epilogue;
  int64_t tiles = 0;
  for (int i = 0; i < kSkinnyMaxWeights; ++i) {
    p.tile_begin[i] = static_cast<int>(tiles);
    if (i >= args.weights) continue;
    p.w[i] = args.w[i];
    p.bias[i] = args.bias[i];
    p.n[i] = static_cast<int>(args.n[i]);
    p.out[i] = args.out[i];
    if (!swiglu || i == 0) tiles += CeilDiv(args.n[i], kTileRows);
  }
  p.tile_begin[kSkinnyMaxWeights] = static_cast<int>(tiles);
  if (tiles > (int64_t{1} << 31) - 1) return absl::InvalidArgumentError("skinny gemm: too many rows");
  const int grid = static_cast<int>(tiles);
  // bench_kernels (H100): gate/up+SwiGLU is faster sized for one CTA per SM (80.9 vs 83.6 us
  // at m = 1) except with the RMSNorm prologue at m > 8 (93.0 vs 90.7 us at m = 16); single
  // projections (o, down, lm_head, q/k/v) for two, most at m = 16.
  const bool one_per_sm = swiglu && !(args.norm_weight != nullptr && args.m > 8);
  const int occupancy = args.occupancy != 0 ? args.occupancy : one_per_sm ? 1 : 2;
  return swiglu ? Launch<2>(p, grid, p.m, occupancy, stream)
                : Launch<1>(p, grid, p.m, occupancy, stream);
}

}  // namespace tessel::cuda
