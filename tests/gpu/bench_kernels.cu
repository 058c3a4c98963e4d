// Times the decode-relevant CUDA kernels against their byte / FLOP floors; prints a table.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// CUDA events around 10 launches per sample, median of 30 samples after warm-up; inputs
// rotate among copies whose total exceeds twice the L2, so reads come from device memory.
// Floors: bytes / the device-to-device copy bandwidth measured here (read + write bytes),
// FLOPs / the dense bf16 rate (reported as achieved TFLOP/s only).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/cuda/attention_decode.cuh"
#include "runtime/cuda/attention_prefill.cuh"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/hopper.cuh"
#include "runtime/cuda/mla.cuh"
#include "runtime/cuda/moe.cuh"
#include "runtime/cuda/rms_norm.cuh"
#include "runtime/cuda/skinny_gemm.cuh"
#include "runtime/cuda/skinny_gemm_tma.cuh"
#include "runtime/cuda/swiglu.cuh"

namespace tessel::cuda {
namespace {

#define CHECK_CUDA(expr)                                                      \
  do {                                                                        \
    const cudaError_t e_ = (expr);                                            \
    if (e_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e_));        \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)
#define CHECK_OK(expr)                                                        \
  do {                                                                        \
    const absl::Status s_ = (expr);                                           \
    if (!s_.ok()) {                                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, std::string(s_.message()).c_str()); \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)

constexpr size_t kRotateBytes = size_t{256} << 20;  // > 2 x 50 MiB L2

// Random bf16 in device memory (never zeros: they can time faster than real data), drawn on
// the device (a hash of the index, Irwin-Hall sum of 4 uniforms ~ N(0, 1/3) rescaled) so that
// gigabytes of benchmark weights take milliseconds, not minutes of host work.
__global__ void FillRandomKernel(bf16* out, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint64_t h = (seed + i) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    float sum = 0.0f;
    for (int j = 0; j < 4; ++j) sum += static_cast<float>((h >> (16 * j)) & 0xffff) / 65535.0f;
    out[i] = __float2bfloat16_rn((sum - 2.0f) * 1.7320508f * scale);
  }
}

bf16* RandomDevice(size_t n, float scale = 1.0f) {
  static uint64_t seed = 1;
  bf16* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(bf16)));
  FillRandomKernel<<<1024, 256>>>(ptr, n, seed++ * 0x100000000ull, scale);
  CHECK_CUDA(cudaDeviceSynchronize());
  return ptr;
}

cudaStream_t g_stream = nullptr;

// Uniform bf16 in [-scale, scale) from a hash of the index, filled on the device: the expert
// weights run to gigabytes, too many for host-side normal draws.
__global__ void FillRandomKernel(bf16* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    p[i] = __float2bfloat16_rn(scale * (static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f));
  }
}

bf16* RandomDeviceFast(size_t n, float scale, uint32_t seed) {
  bf16* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(bf16)));
  FillRandomKernel<<<1024, 256>>>(ptr, n, seed, scale);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());  // the timed work runs on a non-blocking stream
  return ptr;
}

template <typename T>
T* Upload(const std::vector<T>& host) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(host.size(), 1) * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return ptr;
}

// The sections named on the command line (all when none): norm, swiglu, attention_decode,
// attention_prefill, gemm, skinny, moe, mla, readbw, wgmma. The copy bandwidth always runs.
std::vector<std::string> g_sections;

bool Section(const char* name) {
  return g_sections.empty() ||
         std::find(g_sections.begin(), g_sections.end(), name) != g_sections.end();
}

// Median time (microseconds) of one call of fn(i), i rotating over `copies` input sets. Each
// sample replays a CUDA graph of max(10, copies) calls, so launch gaps stay out of the time
// as they will in the executor's captured decode step.
double TimeUs(int copies, const std::function<void(int)>& fn) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < 2 * copies + 5; ++i) fn(i % copies);  // warm-up (and one-time setup)
  CHECK_CUDA(cudaStreamSynchronize(g_stream));
  const int per_graph = std::max(10, copies);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < per_graph; ++i) fn(i % copies);
  CHECK_CUDA(cudaStreamEndCapture(g_stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphLaunch(exec, g_stream));
  constexpr int kSamples = 30;
  std::vector<double> samples;
  for (int s = 0; s < kSamples; ++s) {
    CHECK_CUDA(cudaEventRecord(start, g_stream));
    CHECK_CUDA(cudaGraphLaunch(exec, g_stream));
    CHECK_CUDA(cudaEventRecord(stop, g_stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(1000.0 * ms / per_graph);
  }
  CHECK_CUDA(cudaGetLastError());
  std::sort(samples.begin(), samples.end());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return samples[kSamples / 2];
}

int Copies(size_t bytes_per_copy) {
  return static_cast<int>(std::clamp<size_t>(kRotateBytes / std::max<size_t>(bytes_per_copy, 1),
                                             2, 64));
}

struct Row {
  std::string kernel, shape;
  double us, bytes, flops;
};

void Print(const std::vector<Row>& rows, double copy_gbs) {
  std::printf("\n| kernel | shape | time (us) | floor (us) | GB/s | %% of copy BW | TFLOP/s |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& r : rows) {
    const double gbs = r.bytes / (r.us * 1e3);
    const double floor_us = r.bytes / (copy_gbs * 1e3);
    std::printf("| %s | %s | %.1f | %.1f | %.0f | %.0f%% | %s |\n", r.kernel.c_str(),
                r.shape.c_str(), r.us, floor_us, gbs, 100.0 * gbs / copy_gbs,
                r.flops > 0 ? std::to_string(r.flops / (r.us * 1e6)).substr(0, 6).c_str() : "-");
  }
}

// Prefill attention, causal, through each tile shape in `shapes` (head_dim 256 runs only the
// default). FLOPs counted as 4 * seq^2 / 2 * heads * head_dim (Q K^T and P V, 2 FLOPs per
// multiply-add, half the score matrix under causality; the diagonal's extra
// seq * heads * head_dim * 2 is left out), the count FlashAttention's benchmarks use.
void BenchPrefill(const std::vector<std::pair<AttentionPrefillTiles, std::string>>& shapes,
                  std::vector<Row>* rows) {
  struct PrefillShape {
    int64_t batch, seq, heads, kv_heads, dim;
  };
  for (const PrefillShape& p : std::vector<PrefillShape>{{1, 2048, 32, 8, 128},
                                                         {1, 2048, 32, 8, 64},
                                                         {1, 2048, 16, 4, 256},
                                                         {4, 2048, 32, 8, 128},
                                                         {1, 8192, 32, 8, 128}}) {
    const int64_t q_elems = p.batch * p.seq * p.heads * p.dim;
    const int64_t kv_elems = p.batch * p.seq * p.kv_heads * p.dim;
    bf16* q = RandomDevice(q_elems);
    bf16* k = RandomDevice(kv_elems);
    bf16* v = RandomDevice(kv_elems);
    bf16* out = RandomDevice(q_elems);
    std::vector<int32_t> positions(p.batch * p.seq);
    for (int64_t i = 0; i < p.batch * p.seq; ++i) positions[i] = static_cast<int32_t>(i % p.seq);
    int32_t* pos_d = nullptr;
    CHECK_CUDA(cudaMalloc(&pos_d, positions.size() * sizeof(int32_t)));
    CHECK_CUDA(cudaMemcpy(pos_d, positions.data(), positions.size() * sizeof(int32_t),
                          cudaMemcpyHostToDevice));
    AttentionKernelParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(p.dim));
    std::string shape = std::to_string(p.seq) + " tok " + std::to_string(p.heads) + "/" +
                        std::to_string(p.kv_heads) + "x" + std::to_string(p.dim) + " causal";
    if (p.batch > 1) shape = "b" + std::to_string(p.batch) + " " + shape;
    for (const auto& entry : shapes) {
      const AttentionPrefillTiles tiles = entry.first;
      const std::string& tiles_name = entry.second;
      if (p.dim > 128 && tiles != AttentionPrefillTiles::kDefault) continue;
      const double us = TimeUs(1, [&](int) {
        CHECK_OK(LaunchAttentionPrefillWithTiles(q, k, v, pos_d, p.batch, p.seq, p.heads, p.seq,
                                                 p.kv_heads, p.dim, params, tiles, out,
                                                 g_stream));
      });
      rows->push_back({tiles_name.empty() ? "attention_prefill" : "attention_prefill (sweep)",
                       shape + tiles_name, us, 2.0 * (2 * q_elems + 2 * kv_elems),
                       4.0 * p.batch * p.seq * p.seq / 2 * p.heads * p.dim});
    }
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(out);
    cudaFree(pos_d);
  }
}


// --- Read bandwidth: how fast a kernel can only read (no writes), two ways --------------------
// The decode floor divides by the copy bandwidth (read + write bytes); a decode step only
// reads. These say how far a pure read stream can go past that, and what it takes.

// Streaming 16-byte load that allocates in neither L1 nor (beyond the 256 B sector prefetch) L2.
__device__ __forceinline__ uint4 LdgStream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Grid-stride 16-byte loads, kUnroll of them in flight per thread before any is used.
template <int kUnroll>
__global__ void __launch_bounds__(512) ReadLdgKernel(const uint4* __restrict__ p, size_t n16,
                                                     unsigned* sink) {
  uint32_t acc = 0;
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n16; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = LdgStream(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = LdgStream(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads; (almost) never taken
}

// Each CTA streams its contiguous share of the buffer through a ring of `stages` chunks in
// shared memory with 1-D bulk copies (one producer thread, mbarriers), as the TMA projection
// kernel streams its weights; one consumer warp touches a word of each chunk and frees it.
__global__ void __launch_bounds__(64) ReadBulkKernel(const char* __restrict__ p, size_t chunks,
                                                     uint32_t chunk, int stages, unsigned* sink) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char ring[];
  __shared__ __align__(8) uint64_t full[32], empty[32];
  const size_t first = chunks * blockIdx.x / gridDim.x;
  const size_t last = chunks * (blockIdx.x + 1) / gridDim.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      MbarrierInit(static_cast<uint32_t>(__cvta_generic_to_shared(&full[s])), 1);
      MbarrierInit(static_cast<uint32_t>(__cvta_generic_to_shared(&empty[s])), 1);
    }
    MbarrierInitFence();
  }
  __syncthreads();
  uint32_t acc = 0;
  if (warp == 0) {
    if (lane == 0) {
      for (size_t k = first; k < last; ++k) {
        const size_t j = k - first;
        const int s = static_cast<int>(j % stages);
        const uint32_t e = static_cast<uint32_t>(__cvta_generic_to_shared(&empty[s]));
        const uint32_t f = static_cast<uint32_t>(__cvta_generic_to_shared(&full[s]));
        if (j >= static_cast<size_t>(stages)) MbarrierWait(e, ((j / stages) - 1) & 1);
        MbarrierArriveExpectTx(f, chunk);
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
            "[%3];\n" ::"r"(ring_s + s * chunk),
            "l"(p + k * chunk), "r"(chunk), "r"(f)
            : "memory");
      }
    }
  } else {
    for (size_t k = first; k < last; ++k) {
      const size_t j = k - first;
      const int s = static_cast<int>(j % stages);
      MbarrierWait(static_cast<uint32_t>(__cvta_generic_to_shared(&full[s])), (j / stages) & 1);
      acc ^= reinterpret_cast<const uint32_t*>(ring + s * chunk)[lane * 33];
      __syncwarp();
      if (lane == 0) MbarrierArrive(static_cast<uint32_t>(__cvta_generic_to_shared(&empty[s])));
    }
  }
  if (acc == 0x9e3779b9u) *sink = acc;
#endif
}

int Main() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  std::vector<Row> rows;
  CHECK_CUDA(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));

  // Copy bandwidth: 1 GiB device-to-device, read + write bytes.
  const size_t copy_bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, copy_bytes));
  CHECK_CUDA(cudaMalloc(&dst, copy_bytes));
  CHECK_CUDA(cudaMemset(src, 0x3c, copy_bytes));
  // Not through a graph: a captured memcpy node ran 20% slower than cudaMemcpyAsync (2.43 vs
  // 3.03 TB/s, H100, 2026-11-24), which would understate the floor.
  double copy_us = 0.0;
  {
    cudaEvent_t start, stop;
    CHECK_CUDA(cudaEventCreate(&start));
    CHECK_CUDA(cudaEventCreate(&stop));
    std::vector<double> samples;
    for (int s = 0; s < 23; ++s) {
      CHECK_CUDA(cudaEventRecord(start, g_stream));
      CHECK_CUDA(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, g_stream));
      CHECK_CUDA(cudaEventRecord(stop, g_stream));
      CHECK_CUDA(cudaEventSynchronize(stop));
      float ms = 0.0f;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      if (s >= 3) samples.push_back(1000.0 * ms);
    }
    std::sort(samples.begin(), samples.end());
    copy_us = samples[samples.size() / 2];
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));
  const double copy_gbs = 2.0 * copy_bytes / (copy_us * 1e3);
  std::printf("copy bandwidth (read + write): %.0f GB/s\n", copy_gbs);
  rows.push_back({"memcpy D2D", "1 GiB", copy_us, 2.0 * copy_bytes, 0});

  // RMSNorm and fused add + RMSNorm.
  if (Section("norm"))
  for (int64_t tokens : {int64_t{1}, int64_t{4096}}) {
    const int64_t dim = 4096, n = tokens * dim;
    const int copies = Copies(3 * n * sizeof(bf16));
    std::vector<bf16*> x, res, out;
    for (int i = 0; i < copies; ++i) {
      x.push_back(RandomDevice(n));
      res.push_back(RandomDevice(n));
      out.push_back(RandomDevice(n));
    }
    bf16* w = RandomDevice(dim);
    const double us = TimeUs(copies, [&](int i) {
      CHECK_OK(LaunchRmsNorm(x[i], w, tokens, dim, 1e-5f, out[i], g_stream));
    });
    rows.push_back({"rms_norm", std::to_string(tokens) + "x4096", us, 4.0 * n + 2.0 * dim, 0});
    const double us_add = TimeUs(copies, [&](int i) {
      CHECK_OK(LaunchAddRmsNorm(res[i], x[i], w, tokens, dim, 1e-5f, out[i], g_stream));
    });
    rows.push_back({"add_rms_norm", std::to_string(tokens) + "x4096", us_add, 8.0 * n + 2.0 * dim,
                    0});
    for (int i = 0; i < copies; ++i) {
      cudaFree(x[i]);
      cudaFree(res[i]);
      cudaFree(out[i]);
    }
    cudaFree(w);
  }

  // SwiGLU over a fused gate_up projection.
  if (Section("swiglu"))
  for (int64_t tokens : {int64_t{1}, int64_t{4096}}) {
    const int64_t inter = 14336, n = tokens * inter;
    const int copies = Copies(3 * n * sizeof(bf16));
    std::vector<bf16*> gate_up, out;
    for (int i = 0; i < copies; ++i) {
      gate_up.push_back(RandomDevice(2 * n));
      out.push_back(RandomDevice(n));
    }
    const double us = TimeUs(copies, [&](int i) {
      CHECK_OK(LaunchSwiGlu(gate_up[i], gate_up[i] + inter, 2 * inter, tokens, inter, out[i],
                            g_stream));
    });
    rows.push_back({"swiglu", std::to_string(tokens) + "x14336", us, 6.0 * n, 0});
    for (int i = 0; i < copies; ++i) {
      cudaFree(gate_up[i]);
      cudaFree(out[i]);
    }
  }

  // Decode attention: Llama-3-8B layer (32 / 8 heads x 128), batch 1 and 8, 8K context, then
  // the short contexts of decode benchmarks: 128 and 512 keys visible in a cache of 512 rows
  // (the executor plans PlanAttentionDecode(batch, 32, 8, 128, capacity)). Floor: the visible
  // K/V rows plus q and out. Inputs rotate over enough copies that the visible rows exceed
  // twice the L2 (as in a decode step, where the weights flush it between layers).
  struct DecodeShape {
    int64_t batch, capacity, visible;
    bool sweep;
  };
  if (Section("attention_decode"))
  for (const DecodeShape& d : std::vector<DecodeShape>{{1, 8192, 8192, true},
                                                       {8, 8192, 8192, true},
                                                       {1, 512, 128, false},
                                                       {16, 512, 128, false},
                                                       {1, 512, 512, true},
                                                       {16, 512, 512, true},
                                                       {1, 2048, 2048, true},
                                                       {16, 2048, 2048, true}}) {
    const int64_t batch = d.batch, heads = 32, kv_heads = 8, dim = 128;
    const int64_t cache = batch * d.capacity * kv_heads * dim;
    const double visible_bytes = 2.0 * batch * d.visible * kv_heads * dim * sizeof(bf16);
    const double bytes = visible_bytes + 2.0 * batch * heads * dim * sizeof(bf16);
    const int copies = static_cast<int>(
        std::clamp<double>(std::ceil(kRotateBytes / visible_bytes), 2, 512));
    std::vector<bf16*> k, v;
    for (int i = 0; i < copies; ++i) {
      k.push_back(RandomDevice(cache));
      v.push_back(RandomDevice(cache));
    }
    bf16* q = RandomDevice(batch * heads * dim);
    bf16* out = RandomDevice(batch * heads * dim);
    std::vector<int32_t> positions(batch, static_cast<int32_t>(d.visible - 1));
    int32_t* pos_d = Upload(positions);
    const AttentionDecodeSplit plan =
        PlanAttentionDecode(batch, heads, kv_heads, dim, d.capacity);
    void* workspace = nullptr;
    CHECK_CUDA(cudaMalloc(&workspace, std::max<size_t>(plan.workspace_bytes, 16)));
    CHECK_CUDA(cudaMemset(workspace, 0, std::max<size_t>(plan.workspace_bytes, 16)));
    AttentionKernelParams params;
    params.scale = 0.08838834764f;
    const double us = TimeUs(copies, [&](int i) {
      CHECK_OK(LaunchAttentionDecode(q, k[i], v[i], pos_d, batch, heads, d.capacity, kv_heads,
                                     dim, params, plan, workspace, out, g_stream));
    });
    const std::string context =
        d.visible >= 1024
            ? std::to_string(d.visible / 1024) + "K ctx"
            : std::to_string(d.visible) + " keys (cap " + std::to_string(d.capacity) + ")";
    rows.push_back({"attention_decode", "b" + std::to_string(batch) + " " + context +
                                            " 32/8x128 (" + std::to_string(plan.splits) +
                                            " splits)",
                    us, bytes, 4.0 * batch * heads * d.visible * dim});
    // Other cuts of the context, for tuning PlanAttentionDecode (the kernel keeps at least
    // 128 visible keys per split).
    for (int64_t chunk : {128, 256, 512, 1024, 2048, 4096}) {
      if (!d.sweep) break;
      AttentionDecodeSplit other = plan;
      other.chunk = chunk;
      other.splits = (d.capacity + chunk - 1) / chunk;
      if (other.splits == plan.splits || chunk >= d.capacity) continue;
      other.workspace_bytes =
          AttentionDecodeWorkspaceBytes(batch, heads, kv_heads, dim, other.splits);
      void* other_workspace = nullptr;
      CHECK_CUDA(cudaMalloc(&other_workspace, other.workspace_bytes));
      CHECK_CUDA(cudaMemset(other_workspace, 0, other.workspace_bytes));
      const double other_us = TimeUs(copies, [&](int i) {
        CHECK_OK(LaunchAttentionDecode(q, k[i], v[i], pos_d, batch, heads, d.capacity, kv_heads,
                                       dim, params, other, other_workspace, out, g_stream));
      });
      rows.push_back({"attention_decode (sweep)", "b" + std::to_string(batch) + " " + context +
                                                      " chunk " +
                                                      std::to_string(chunk) + " (" +
                                                      std::to_string(other.splits) + " splits)",
                      other_us, bytes, 4.0 * batch * heads * d.visible * dim});
      cudaFree(other_workspace);
    }
    for (int i = 0; i < copies; ++i) {
      cudaFree(k[i]);
      cudaFree(v[i]);
    }
    cudaFree(q);
    cudaFree(out);
    cudaFree(pos_d);
    cudaFree(workspace);
  }

  // Prefill attention: the default tile shape and the other mma.sync one; the wgmma shapes
  // run after the table is printed (a fault there must not lose the other numbers).
  if (Section("attention_prefill"))
  BenchPrefill({{AttentionPrefillTiles::kDefault, ""},
                {AttentionPrefillTiles::kRows32PerWarp, " (rows32)"},
                {AttentionPrefillTiles::kRows16PerWarp, " (rows16)"}},
               &rows);

  // GEMM through cuBLASLt: decode GEMV (M = 1) and prefill (M = 2048).
  auto gemm = CublasLtGemm::Create();
  CHECK_OK(gemm.status());
  struct Shape {
    int64_t m, n, k;
  };
  if (Section("gemm"))
  for (const Shape& s : std::vector<Shape>{{1, 4096, 4096},   {1, 14336, 4096},
                                           {1, 4096, 14336},  {1, 28672, 4096},
                                           {2048, 4096, 4096}, {2048, 14336, 4096},
                                           {2048, 4096, 14336}}) {
    const size_t weight_bytes = s.n * s.k * sizeof(bf16);
    const int copies = s.m == 1 ? Copies(weight_bytes) : 1;
    std::vector<bf16*> w;
    for (int i = 0; i < copies; ++i) w.push_back(RandomDevice(s.n * s.k, 0.02f));
    bf16* a = RandomDevice(s.m * s.k);
    bf16* c = RandomDevice(s.m * s.n);
    const double us = TimeUs(copies, [&](int i) {
      CHECK_OK((*gemm)->Run(a, w[i], nullptr, c, s.m, s.n, s.k, GemmOutput::kBF16, g_stream));
    });
    rows.push_back({"gemm", "M=" + std::to_string(s.m) + " N=" + std::to_string(s.n) +
                                " K=" + std::to_string(s.k),
                    us, 2.0 * (s.m * s.k + s.n * s.k + s.m * s.n), 2.0 * s.m * s.n * s.k});
    for (bf16* p : w) cudaFree(p);
    cudaFree(a);
    cudaFree(c);
  }
  // Skinny GEMM (decode projections with their epilogues), both occupancy variants, beside
  // cuBLASLt at the same M where it computes the same thing (kStore, one weight).
  struct Skinny {
    const char* what;
    int64_t m, k;
    std::vector<int64_t> n;
    SkinnyEpilogue epilogue;
    bool f32;
    bool norm = false;  // the RMSNorm prologue, as the executor runs q/k/v and gate/up
  };
  if (Section("skinny"))
  for (int64_t m : {1, 16, 64}) {
    if (m > SkinnyGemmMaxRows()) continue;  // 64 rows: the TMA kernel (sm_90)
    // TESSEL_BENCH_SKINNY_ROWS=16: only that many rows of x.
    if (const char* only = std::getenv("TESSEL_BENCH_SKINNY_ROWS");
        only != nullptr && std::atoi(only) != m) {
      continue;
    }
    for (const Skinny& s : std::vector<Skinny>{
             {"o_proj", m, 4096, {4096}, SkinnyEpilogue::kStore, false},
             {"o_proj+residual", m, 4096, {4096}, SkinnyEpilogue::kAddResidual, false},
             {"qkv (3 weights)", m, 4096, {4096, 1024, 1024}, SkinnyEpilogue::kStore, false},
             {"qkv+norm", m, 4096, {4096, 1024, 1024}, SkinnyEpilogue::kStore, false, true},
             {"gate/up+swiglu", m, 4096, {14336, 14336}, SkinnyEpilogue::kSwiGlu, false},
             {"gate/up+swiglu+norm", m, 4096, {14336, 14336}, SkinnyEpilogue::kSwiGlu, false,
              true},
             {"down+residual", m, 14336, {4096}, SkinnyEpilogue::kAddResidual, false},
             {"lm_head f32", m, 4096, {128256}, SkinnyEpilogue::kStore, true}}) {
      int64_t weight_elems = 0, out_elems = 0;
      for (int64_t n : s.n) weight_elems += n * s.k;
      out_elems = s.epilogue == SkinnyEpilogue::kSwiGlu ? s.n[0] : 0;
      if (s.epilogue != SkinnyEpilogue::kSwiGlu)
        for (int64_t n : s.n) out_elems += n;
      const int copies = Copies(weight_elems * sizeof(bf16));
      std::vector<std::vector<bf16*>> w(copies);
      for (auto& set : w)
        for (int64_t n : s.n) set.push_back(RandomDevice(n * s.k, 0.02f));
      bf16* x = RandomDevice(m * s.k);
      bf16* norm_weight = s.norm ? RandomDevice(s.k) : nullptr;
      std::vector<void*> outs;
      for (int64_t n : s.n) {
        void* o = nullptr;
        CHECK_CUDA(cudaMalloc(&o, m * n * sizeof(float)));
        CHECK_CUDA(cudaMemset(o, 0, m * n * sizeof(float)));
        outs.push_back(o);
      }
      const std::string shape = absl::StrCat(s.what, " M=", m, " N=", absl::StrJoin(s.n, "+"),
                                             " K=", s.k);
      const double bytes = 2.0 * (weight_elems + m * s.k) +
                           m * out_elems * (s.f32 ? 4.0 : 2.0) *
                               (s.epilogue == SkinnyEpilogue::kAddResidual ? 2.0 : 1.0);
      // The projection on weight copy i, the kernel left to the default choice.
      const auto args_for = [&](int i) {
        SkinnyGemmArgs args;
        args.x = x;
        args.m = m;
        args.k = s.k;
        args.weights = static_cast<int>(s.n.size());
        for (size_t j = 0; j < s.n.size(); ++j) {
          args.w[j] = w[i][j];
          args.n[j] = s.n[j];
          args.out[j] = outs[j];
        }
        args.epilogue = s.epilogue;
        args.residual = static_cast<const bf16*>(outs[0]);
        args.out_f32 = s.f32;
        args.norm_weight = norm_weight;
        args.norm_eps = 1e-5f;
        return args;
      };
      // The register kernel at 1 and 2 CTAs/SM; TMA (sm_90) with k split over 1, 2, 4, 8 CTAs.
      for (int variant : {1, 2, 3, 4, 5, 6}) {
        if (variant >= 3 && !SkinnyGemmTmaAvailable()) continue;
        if (variant < 3 && m > kSkinnyMaxRows) continue;  // the register kernel's limit
        const int occupancy = variant < 3 ? variant : 0;
        const double us = TimeUs(copies, [&](int i) {
          SkinnyGemmArgs args = args_for(i);
          args.occupancy = occupancy;
          args.kernel = variant >= 3 ? SkinnyKernel::kTma : SkinnyKernel::kRegisters;
          args.split = variant >= 3 ? 1 << (variant - 3) : 0;
          CHECK_OK(LaunchSkinnyGemm(args, g_stream));
        });
        rows.push_back({variant >= 3 ? absl::StrCat("skinny_gemm tma split", 1 << (variant - 3))
                                     : absl::StrCat("skinny_gemm occ", occupancy),
                        shape, us, bytes,
                        2.0 * m * weight_elems});
      }
      // The same weights every launch (L2-resident as far as they fit): what reading them
      // from L2 instead of HBM would give (the default kernel choice).
      if (s.epilogue == SkinnyEpilogue::kAddResidual || s.norm) {
        const double us =
            TimeUs(1, [&](int) { CHECK_OK(LaunchSkinnyGemm(args_for(0), g_stream)); });
        rows.push_back({"skinny_gemm default, same weights (L2-hot)", shape, us, bytes,
                        2.0 * m * weight_elems});
      }
      if (s.n.size() == 1 && s.epilogue == SkinnyEpilogue::kStore) {
        const double us = TimeUs(copies, [&](int i) {
          CHECK_OK((*gemm)->Run(x, w[i][0], nullptr, outs[0], m, s.n[0], s.k,
                                s.f32 ? GemmOutput::kF32 : GemmOutput::kBF16, g_stream));
        });
        rows.push_back({"gemm (cuBLASLt)", shape, us, bytes, 2.0 * m * weight_elems});
      }
      for (auto& set : w)
        for (bf16* p : set) cudaFree(p);
      for (void* o : outs) cudaFree(o);
      cudaFree(x);
      if (norm_weight != nullptr) cudaFree(norm_weight);
    }
  }

  // MoE: router and routed experts of one layer, decode batches 1 and 16 (and one prefill
  // chunk). Bytes: the weights of the experts the routing touches (each read once) plus the
  // activations; the expert weights rotate among copies.
  if (Section("moe"))
  {
    struct MoEConfig {
      const char* name;
      int64_t experts, top_k, hidden, inter;
    };
    std::mt19937 rng(7);
    for (const MoEConfig& c : std::vector<MoEConfig>{{"mixtral 8e top2 4096/14336", 8, 2, 4096, 14336},
                                                     {"v2-lite 64e top6 2048/1408", 64, 6, 2048, 1408}}) {
      const size_t expert_elems = static_cast<size_t>(c.experts) * c.hidden * c.inter;
      for (int64_t batch : {int64_t{1}, int64_t{16}, int64_t{512}}) {
        if (batch == 512 && c.experts == 8) continue;
        std::vector<int32_t> indices(batch * c.top_k), order(c.experts);
        std::vector<float> weights(batch * c.top_k, 0.5f);
        std::iota(order.begin(), order.end(), 0);
        std::vector<bool> touched(c.experts, false);
        for (int64_t t = 0; t < batch; ++t) {
          std::shuffle(order.begin(), order.end(), rng);
          for (int64_t j = 0; j < c.top_k; ++j) {
            indices[t * c.top_k + j] = order[j];
            touched[order[j]] = true;
          }
        }
        const int64_t used = std::count(touched.begin(), touched.end(), true);
        const double weight_bytes = 3.0 * used * c.hidden * c.inter * sizeof(bf16);
        const int copies = batch == 512 ? 1 : Copies(static_cast<size_t>(weight_bytes));
        std::vector<bf16*> gate, up, down;
        for (int i = 0; i < copies; ++i) {
          gate.push_back(RandomDeviceFast(expert_elems, 0.03f, 100 + 3 * i));
          up.push_back(RandomDeviceFast(expert_elems, 0.03f, 101 + 3 * i));
          down.push_back(RandomDeviceFast(expert_elems, 0.03f, 102 + 3 * i));
        }
        bf16* x = RandomDevice(batch * c.hidden);
        bf16* out = RandomDevice(batch * c.hidden);
        int32_t* idx_d = Upload(indices);
        float* w_d = Upload(weights);
        const MoEExpertsPlan plan = PlanMoEExperts(batch, c.top_k, c.experts, c.hidden, c.inter);
        void* workspace = nullptr;
        CHECK_CUDA(cudaMalloc(&workspace, plan.workspace_bytes));
        const double us = TimeUs(copies, [&](int i) {
          CHECK_OK(LaunchMoEExperts(x, batch, w_d, idx_d, gate[i], up[i], down[i],
                                    MoEActivation::kSilu, plan, workspace, out, g_stream));
        });
        rows.push_back({"moe_experts", std::string(c.name) + " b" + std::to_string(batch) + " (" +
                                           std::to_string(used) + " experts, block_m " +
                                           std::to_string(plan.block_m) + ")",
                        us, weight_bytes + 2.0 * batch * c.hidden * sizeof(bf16),
                        2.0 * 3.0 * batch * c.top_k * c.hidden * c.inter});
        // Router of the same layer: logits, scores and top-k.
        if (batch != 512) {
          const int router_copies = 8;
          std::vector<bf16*> router_gate;
          for (int i = 0; i < router_copies; ++i) {
            router_gate.push_back(RandomDeviceFast(c.experts * c.hidden, 0.03f, 900 + i));
          }
          MoERouterKernelParams rp;
          rp.top_k = static_cast<int>(c.top_k);
          rp.norm_topk_prob = c.experts == 8;
          int32_t* r_idx = nullptr;
          float* r_w = nullptr;
          CHECK_CUDA(cudaMalloc(&r_idx, batch * c.top_k * sizeof(int32_t)));
          CHECK_CUDA(cudaMalloc(&r_w, batch * c.top_k * sizeof(float)));
          void* r_ws = nullptr;
          const size_t r_ws_bytes = MoERouterWorkspaceBytes(batch, c.experts);
          CHECK_CUDA(cudaMalloc(&r_ws, r_ws_bytes));
          CHECK_CUDA(cudaMemset(r_ws, 0, r_ws_bytes));
          const double router_us = TimeUs(router_copies, [&](int i) {
            CHECK_OK(LaunchMoERouter(x, batch, c.hidden, router_gate[i], c.experts, nullptr, rp,
                                     r_ws, r_w, r_idx, g_stream));
          });
          cudaFree(r_ws);
          rows.push_back({"moe_router", std::string(c.name) + " b" + std::to_string(batch),
                          router_us, 1.0 * c.experts * c.hidden * sizeof(bf16),
                          2.0 * batch * c.experts * c.hidden});
          for (bf16* p : router_gate) cudaFree(p);
          cudaFree(r_idx);
          cudaFree(r_w);
        }
        for (int i = 0; i < copies; ++i) {
          cudaFree(gate[i]);
          cudaFree(up[i]);
          cudaFree(down[i]);
        }
        cudaFree(x);
        cudaFree(out);
        cudaFree(idx_d);
        cudaFree(w_d);
        cudaFree(workspace);
      }
    }
  }

  // MLA decode, DeepSeek-V2-Lite layer (16 heads, rank 512, rope 64, nope 128, v 128), 4K
  // context. Bytes: latent + rope key rows, kv_b (rotated with the cache, as every layer has
  // its own), queries and outputs.
  if (Section("mla"))
  for (int64_t batch : {int64_t{1}, int64_t{16}}) {
    const int64_t heads = 16, nope = 128, rope = 64, rank = 512, v_dim = 128, context = 4096;
    const size_t cache_elems = static_cast<size_t>(batch) * context * (rank + rope);
    const size_t kv_b_elems = static_cast<size_t>(heads) * (nope + v_dim) * rank;
    const double bytes = 2.0 * (cache_elems + kv_b_elems + batch * heads * (nope + rope + v_dim));
    const int copies = Copies(static_cast<size_t>(bytes));
    std::vector<bf16*> latent, key_rope, kv_b;
    for (int i = 0; i < copies; ++i) {
      latent.push_back(RandomDeviceFast(batch * context * rank, 1.0f, 300 + 3 * i));
      key_rope.push_back(RandomDeviceFast(batch * context * rope, 1.0f, 301 + 3 * i));
      kv_b.push_back(RandomDeviceFast(kv_b_elems, 0.1f, 302 + 3 * i));
    }
    bf16* q_nope = RandomDevice(batch * heads * nope);
    bf16* q_rope = RandomDevice(batch * heads * rope);
    bf16* out = RandomDevice(batch * heads * v_dim);
    int32_t* pos_d = Upload(std::vector<int32_t>(batch, static_cast<int32_t>(context - 1)));
    AttentionKernelParams params;
    params.scale = 0.0721687836f;  // 1 / sqrt(192)
    const double flops = 2.0 * batch * heads * (rank * (nope + v_dim) + context * (2 * rank + rope));
    const MLAAttentionPlan plan = PlanMLAAttention(batch, 1, heads, context);
    std::vector<int64_t> chunks = {plan.chunk};
    if (batch == 1) chunks.insert(chunks.end(), {64, 128, 256, 512, 1024});
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      MLAAttentionPlan p = plan;
      p.chunk = chunks[ci];
      p.splits = (context + p.chunk - 1) / p.chunk;
      if (ci > 0 && p.splits == plan.splits) continue;
      p.workspace_bytes = PlanMLAAttention(batch, 1, heads, 1).workspace_bytes +
                          sizeof(float) * batch * heads * p.splits * (rank + 2) + 1024;
      void* workspace = nullptr;
      CHECK_CUDA(cudaMalloc(&workspace, std::max(p.workspace_bytes, plan.workspace_bytes)));
      const double us = TimeUs(copies, [&](int i) {
        CHECK_OK(LaunchMLAAttention(q_nope, q_rope, latent[i], key_rope[i], kv_b[i], pos_d, batch,
                                    1, heads, context, nope, rope, rank, v_dim, params, p,
                                    workspace, out, g_stream));
      });
      rows.push_back({ci == 0 ? "mla_decode" : "mla_decode (sweep)",
                      "b" + std::to_string(batch) + " 4K ctx v2-lite 16h (" +
                          std::to_string(p.splits) + " splits of " + std::to_string(p.chunk) + ")",
                      us, bytes, flops});
      cudaFree(workspace);
    }
    for (int i = 0; i < copies; ++i) {
      cudaFree(latent[i]);
      cudaFree(key_rope[i]);
      cudaFree(kv_b[i]);
    }
    cudaFree(q_nope);
    cudaFree(q_rope);
    cudaFree(out);
    cudaFree(pos_d);
  }
  Print(rows, copy_gbs);

  // Pure read bandwidth (see ReadLdgKernel / ReadBulkKernel): the sizes of one gate/up, down,
  // q/k/v and o_proj of Llama-3-8B, and 1 GiB.
  std::vector<Row> read_rows;
  if (Section("readbw")) {
    const size_t buffer_bytes = size_t{2} << 30;
    char* buffer = nullptr;
    unsigned* sink = nullptr;
    CHECK_CUDA(cudaMalloc(&buffer, buffer_bytes));
    CHECK_CUDA(cudaMalloc(&sink, sizeof(unsigned)));
    CHECK_CUDA(cudaMemset(buffer, 0x3c, buffer_bytes));
    const int sms = prop.multiProcessorCount;
    // Input copies of `bytes` rotating through the buffer.
    auto copies_of = [&](size_t bytes) {
      return static_cast<int>(std::min<size_t>(Copies(bytes), buffer_bytes / bytes));
    };
    // ReadBulkKernel over `bytes` in `ctas` CTAs with a ring of `stages` x `chunk_kib` KiB and
    // `smem` bytes of dynamic shared memory per CTA (which bounds the CTAs per SM).
    auto time_bulk = [&](size_t bytes, int ctas, int chunk_kib, int stages, int smem) {
      if (stages > 32) {  // the kernel's mbarrier arrays
        std::fprintf(stderr, "readbw: %d stages (at most 32)\n", stages);
        std::exit(1);
      }
      const uint32_t chunk = static_cast<uint32_t>(chunk_kib) << 10;
      CHECK_CUDA(cudaFuncSetAttribute(ReadBulkKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      smem));
      return TimeUs(copies_of(bytes), [&](int i) {
        ReadBulkKernel<<<ctas, 64, smem, g_stream>>>(buffer + i * bytes, bytes / chunk, chunk,
                                                     stages, sink);
      });
    };
    for (size_t bytes : {size_t{1} << 30, size_t{234881024}, size_t{117440512},
                         size_t{50331648}, size_t{33554432}}) {
      const int copies = copies_of(bytes);
      const std::string shape = absl::StrCat(bytes >> 20, " MiB");
      for (int blocks_per_sm : {2, 4, 8}) {
        for (int unroll : {4, 8}) {
          const int grid = blocks_per_sm * sms;
          const double us = TimeUs(copies, [&](int i) {
            const uint4* src = reinterpret_cast<const uint4*>(buffer + i * bytes);
            if (unroll == 4) {
              ReadLdgKernel<4><<<grid, 512, 0, g_stream>>>(src, bytes / 16, sink);
            } else {
              ReadLdgKernel<8><<<grid, 512, 0, g_stream>>>(src, bytes / 16, sink);
            }
          });
          read_rows.push_back({absl::StrCat("read ldg ", blocks_per_sm, "x512/SM unroll ", unroll),
                               shape, us, static_cast<double>(bytes), 0});
        }
      }
      for (auto [chunk_kib, stages, per_sm] :
           {std::tuple{16, 8, 1}, std::tuple{32, 6, 1}, std::tuple{32, 4, 1}, std::tuple{16, 12, 1},
            std::tuple{8, 24, 1}, std::tuple{16, 6, 2}, std::tuple{32, 3, 2}, std::tuple{64, 3, 1}}) {
        const double us =
            time_bulk(bytes, per_sm * sms, chunk_kib, stages, (chunk_kib << 10) * stages);
        read_rows.push_back({absl::StrCat("read bulk ", per_sm, " CTA/SM, ", stages, " x ",
                                          chunk_kib, " KiB"),
                             shape, us, static_cast<double>(bytes), 0});
      }
    }
    // The same bytes in the TMA projection kernel's decomposition at 16 rows of x (grid,
    // ring, 100 KiB per CTA: two per SM), beside one and two CTAs per SM streaming it evenly.
    struct Shape {
      const char* name;
      int ctas, stage_kib, stages;
      size_t bytes;
    };
    for (const Shape& sh : {Shape{"q/k/v 96 tiles x split 2", 192, 16, 4, size_t{50331648}},
                            Shape{"o_proj 64 tiles x split 2", 128, 16, 4, size_t{33554432}},
                            Shape{"gate/up 224 tiles x split 4", 896, 32, 2, size_t{234881024}},
                            Shape{"down 64 tiles x split 2", 128, 16, 4, size_t{117440512}}}) {
      for (int ctas : {sh.ctas, sms, 2 * sms}) {
        const double us = time_bulk(sh.bytes, ctas, sh.stage_kib, sh.stages, 100 << 10);
        read_rows.push_back({absl::StrCat("read bulk, ", ctas, " CTAs, ", sh.stages, " x ",
                                          sh.stage_kib, " KiB"),
                             sh.name, us, static_cast<double>(sh.bytes), 0});
      }
    }
    CHECK_CUDA(cudaGetLastError());
    cudaFree(buffer);
    cudaFree(sink);
  }
  Print(read_rows, copy_gbs);

  std::vector<Row> wgmma_rows;
  if (Section("wgmma"))
  BenchPrefill({{AttentionPrefillTiles::kWgmma, " (wgmma)"},
                {AttentionPrefillTiles::kWgmmaPipelined, " (wgmma-pipelined)"}},
               &wgmma_rows);
  Print(wgmma_rows, copy_gbs);
  return 0;
}

}  // namespace
}  // namespace tessel::cuda

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) tessel::cuda::g_sections.push_back(argv[i]);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED (no CUDA device)\n");
    return 0;
  }
  return tessel::cuda::Main();
}
