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
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "runtime/cuda/attention_decode.cuh"
#include "runtime/cuda/attention_prefill.cuh"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/rms_norm.cuh"
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

// Random bf16 in device memory (never zeros: they can time faster than real data).
bf16* RandomDevice(size_t n, float scale = 1.0f) {
  std::vector<bf16> host(n);
  std::mt19937 rng(static_cast<unsigned>(n));
  std::normal_distribution<float> dist(0.0f, scale);
  for (auto& x : host) x = __float2bfloat16_rn(dist(rng));
  bf16* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, n * sizeof(bf16)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
  return ptr;
}

cudaStream_t g_stream = nullptr;

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

  // Decode attention: Llama-3-8B layer, batch 1 and 8, 8K context.
  for (int64_t batch : {int64_t{1}, int64_t{8}}) {
    const int64_t heads = 32, kv_heads = 8, dim = 128, context = 8192;
    const int64_t cache = batch * context * kv_heads * dim;
    const int copies = Copies(2 * cache * sizeof(bf16));
    std::vector<bf16*> k, v;
    for (int i = 0; i < copies; ++i) {
      k.push_back(RandomDevice(cache));
      v.push_back(RandomDevice(cache));
    }
    bf16* q = RandomDevice(batch * heads * dim);
    bf16* out = RandomDevice(batch * heads * dim);
    std::vector<int32_t> positions(batch, static_cast<int32_t>(context - 1));
    int32_t* pos_d = nullptr;
    CHECK_CUDA(cudaMalloc(&pos_d, batch * sizeof(int32_t)));
    CHECK_CUDA(cudaMemcpy(pos_d, positions.data(), batch * sizeof(int32_t),
                          cudaMemcpyHostToDevice));
    const AttentionDecodeSplit plan = PlanAttentionDecode(batch, heads, kv_heads, dim, context);
    void* workspace = nullptr;
    CHECK_CUDA(cudaMalloc(&workspace, std::max<size_t>(plan.workspace_bytes, 16)));
    AttentionKernelParams params;
    params.scale = 0.08838834764f;
    const double us = TimeUs(copies, [&](int i) {
      CHECK_OK(LaunchAttentionDecode(q, k[i], v[i], pos_d, batch, heads, context, kv_heads, dim,
                                     params, plan, workspace, out, g_stream));
    });
    rows.push_back({"attention_decode", "b" + std::to_string(batch) + " 8K ctx 32/8x128 (" +
                                            std::to_string(plan.splits) + " splits)",
                    us, 2.0 * cache * sizeof(bf16), 4.0 * batch * heads * context * dim});
    // Other cuts of the context, for tuning PlanAttentionDecode.
    for (int64_t chunk : {64, 128, 512, 1024}) {
      AttentionDecodeSplit other = plan;
      other.chunk = chunk;
      other.splits = (context + chunk - 1) / chunk;
      if (other.splits == plan.splits) continue;
      other.workspace_bytes = sizeof(float) * batch * heads * other.splits * (dim + 2);
      void* other_workspace = nullptr;
      CHECK_CUDA(cudaMalloc(&other_workspace, other.workspace_bytes));
      const double other_us = TimeUs(copies, [&](int i) {
        CHECK_OK(LaunchAttentionDecode(q, k[i], v[i], pos_d, batch, heads, context, kv_heads,
                                       dim, params, other, other_workspace, out, g_stream));
      });
      rows.push_back({"attention_decode (sweep)", "b" + std::to_string(batch) + " chunk " +
                                                      std::to_string(chunk) + " (" +
                                                      std::to_string(other.splits) + " splits)",
                      other_us, 2.0 * cache * sizeof(bf16), 4.0 * batch * heads * context * dim});
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
  Print(rows, copy_gbs);

  std::vector<Row> wgmma_rows;
  BenchPrefill({{AttentionPrefillTiles::kWgmma, " (wgmma)"},
                {AttentionPrefillTiles::kWgmmaPipelined, " (wgmma-pipelined)"}},
               &wgmma_rows);
  Print(wgmma_rows, copy_gbs);
  return 0;
}

}  // namespace
}  // namespace tessel::cuda

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED (no CUDA device)\n");
    return 0;
  }
  return tessel::cuda::Main();
}
