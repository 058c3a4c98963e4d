// How long does a kernel of a PDL chain wait for the one before it? A microbenchmark of the
// dependency mechanism alone, beside the decode step's measured 1.1-1.8 us per launch
// (docs/performance.md, tenth round).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// A CUDA graph of `--kernels` launches, each with the programmatic stream serialization
// attribute and `--ctas` CTAs of `--smem-kib` shared memory (100: two per SM, as the skinny
// GEMM). Every CTA signals launch_dependents at its start, waits for the previous kernel,
// reads one element of its output per thread (written by another CTA), busy-waits `--work-ns`
// (the weight stream) and writes its share of this kernel's output. The wait is either
//  - grid: griddepcontrol.wait (the previous grid completed, its memory flushed), or
//  - flag: thread 0 spins with ld.acquire.gpu on a counter that each CTA of the previous
//    kernel bumps with red.release.gpu after its stores (the counters are zeroed by a memset
//    node at the head of the graph).
// Each element of a kernel's output is one plus an element of the previous one's, read from
// another CTA's share, so after the chain every element must equal the number of kernels: a
// lost ordering shows as a wrong count. Prints microseconds per launch for each mode.
//
// Built with the CUDA backend (target pdl_flag_latency, bench/CMakeLists.txt), or alone:
//   nvcc -std=c++17 -O3 -arch=sm_90a -o pdl_flag_latency bench/pdl_flag_latency.cu
// Measured (H100, 2026-11-24, docs/performance.md eleventh round): grid 1.06 us per launch
// with no work, flag 1.72; with 5 us of work 5.76 vs 6.48. The flags lose: the dependency
// wait of griddepcontrol is not what a launch of the decode step waits for.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static void Check(cudaError_t error, const char* file, int line) {
  if (error == cudaSuccess) return;
  std::fprintf(stderr, "%s:%d: %s\n", file, line, cudaGetErrorString(error));
  std::exit(1);
}
#define CHECK(x) Check((x), __FILE__, __LINE__)

namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ unsigned long long GlobalTimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void __launch_bounds__(kThreads) Link(const float* in, float* out, int elements,
                                                 const unsigned* in_counter, unsigned target,
                                                 unsigned* out_counter, int work_ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (in_counter == nullptr) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
  } else {
    if (threadIdx.x == 0) {
      unsigned seen = 0;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];"
                     : "=r"(seen)
                     : "l"(in_counter)
                     : "memory");
      } while (seen < target);
    }
    __syncthreads();
  }
  const unsigned long long start = GlobalTimer();
  const int per_cta = elements / gridDim.x;
  // Every thread reads the element of another CTA's share (a quarter of the grid away).
  const int other = (blockIdx.x + gridDim.x / 4 + 1) % gridDim.x;
  float v[4];
  for (int j = 0; j < 4; ++j) {
    const int i = threadIdx.x + kThreads * j;
    v[j] = i < per_cta ? in[other * per_cta + i] : 0.0f;
  }
  while (GlobalTimer() - start < static_cast<unsigned long long>(work_ns)) {
  }
  for (int j = 0; j < 4; ++j) {
    const int i = threadIdx.x + kThreads * j;
    if (i < per_cta) out[blockIdx.x * per_cta + i] = v[j] + 1.0f;
  }
  if (out_counter != nullptr) {
    __syncthreads();
    if (threadIdx.x == 0) {
      asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(out_counter), "r"(1u)
                   : "memory");
    }
  }
#else
  __trap();  // programmatic dependent launch: compute capability 9.0+ (main checks)
#endif
}

struct Options {
  int kernels = 256, ctas = 264, smem_kib = 100, work_ns = 5000, replays = 50;
};

// Microseconds per launch of a chain in `flag` mode or not; checks the final output.
double Run(const Options& o, bool flag, cudaStream_t stream) {
  const int elements = o.ctas * 4 * kThreads;
  float* buffers[2];
  unsigned* counters;
  for (float*& b : buffers) CHECK(cudaMalloc(&b, elements * sizeof(float)));
  CHECK(cudaMalloc(&counters, (o.kernels + 1) * sizeof(unsigned)));
  const size_t smem = static_cast<size_t>(o.smem_kib) * 1024;
  CHECK(cudaFuncSetAttribute(Link, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)));

  cudaGraph_t graph;
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  CHECK(cudaMemsetAsync(buffers[0], 0, elements * sizeof(float), stream));
  CHECK(cudaMemsetAsync(counters, 0, (o.kernels + 1) * sizeof(unsigned), stream));
  for (int i = 0; i < o.kernels; ++i) {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(o.ctas);
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    // The first kernel follows the memsets: it waits for the grid (nothing signals it).
    const unsigned* in_counter = flag && i > 0 ? counters + i : nullptr;
    unsigned* out_counter = flag ? counters + i + 1 : nullptr;
    CHECK(cudaLaunchKernelEx(&config, Link, static_cast<const float*>(buffers[i % 2]),
                             buffers[(i + 1) % 2], elements, in_counter,
                             static_cast<unsigned>(o.ctas), out_counter, o.work_ns));
  }
  CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CHECK(cudaGraphLaunch(exec, stream));  // warm-up
  CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t begin, end;
  CHECK(cudaEventCreate(&begin));
  CHECK(cudaEventCreate(&end));
  CHECK(cudaEventRecord(begin, stream));
  for (int r = 0; r < o.replays; ++r) CHECK(cudaGraphLaunch(exec, stream));
  CHECK(cudaEventRecord(end, stream));
  CHECK(cudaEventSynchronize(end));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, begin, end));

  std::vector<float> result(elements);
  CHECK(cudaMemcpy(result.data(), buffers[o.kernels % 2], elements * sizeof(float),
                   cudaMemcpyDeviceToHost));
  int wrong = 0;
  for (float v : result) wrong += v != static_cast<float>(o.kernels);
  if (wrong != 0) {
    std::fprintf(stderr, "FAILED: %s mode, %d of %d elements are not %d (first %g)\n",
                 flag ? "flag" : "grid", wrong, elements, o.kernels, result[0]);
    std::exit(1);
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  for (float* b : buffers) CHECK(cudaFree(b));
  CHECK(cudaFree(counters));
  return 1000.0 * ms / o.replays / o.kernels;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    auto value = [&](const char* name, int* out) {
      const size_t len = std::strlen(name);
      if (std::strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') {
        *out = std::atoi(argv[i] + len + 1);
        return true;
      }
      return false;
    };
    if (!value("--kernels", &o.kernels) && !value("--ctas", &o.ctas) &&
        !value("--smem-kib", &o.smem_kib) && !value("--work-ns", &o.work_ns) &&
        !value("--replays", &o.replays)) {
      std::fprintf(stderr,
                   "usage: %s [--kernels=256] [--ctas=264] [--smem-kib=100] [--work-ns=5000] "
                   "[--replays=50]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.kernels < 1 || o.ctas < 4 || o.smem_kib < 0 || o.smem_kib > 227 || o.work_ns < 0 ||
      o.replays < 1) {
    std::fprintf(stderr, "out-of-range option\n");
    return 2;
  }
  int device = 0, major = 0;
  CHECK(cudaGetDevice(&device));
  CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 9) {
    std::fprintf(stderr, "programmatic dependent launch needs compute capability 9.0+ (this "
                         "GPU: %d.x)\n", major);
    return 1;
  }
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::printf("kernels %d, ctas %d, smem %d KiB, work %d ns\n", o.kernels, o.ctas, o.smem_kib,
              o.work_ns);
  for (int round = 0; round < 2; ++round) {
    const double grid = Run(o, false, stream);
    const double flag = Run(o, true, stream);
    std::printf("us per launch: grid wait %.3f, flag wait %.3f, difference %.3f\n", grid, flag,
                grid - flag);
  }
  return 0;
}
