// Host side of the per-CTA timelines (cta_trace.cuh): the device ring, launch ids, and the
// files written at exit.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/cuda/cta_trace.cuh"

namespace tessel::cuda {
#if defined(TESSEL_CTA_TRACE)
namespace {

struct TraceState {
  std::mutex mutex;
  bool initialized = false;
  std::string path;
  CtaTraceRecord* records = nullptr;
  unsigned long long* count = nullptr;
  uint32_t capacity = 0;
  std::vector<std::string> names;  // by launch id
};

TraceState& State() {
  static TraceState* state = new TraceState;  // never destroyed: the exit handler uses it
  return *state;
}

// At exit (registered after the CUDA runtime initialized, so it runs before its teardown).
void WriteTrace() {
  TraceState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.records == nullptr) return;
  if (cudaDeviceSynchronize() != cudaSuccess) {
    std::fprintf(stderr, "cta trace: the device failed; %s not written\n", s.path.c_str());
    return;
  }
  unsigned long long total = 0;
  std::vector<CtaTraceRecord> ring(s.capacity);
  if (cudaMemcpy(&total, s.count, sizeof(total), cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemcpy(ring.data(), s.records, ring.size() * sizeof(CtaTraceRecord),
                 cudaMemcpyDeviceToHost) != cudaSuccess) {
    std::fprintf(stderr, "cta trace: cannot read the records; %s not written\n", s.path.c_str());
    return;
  }
  const unsigned long long kept = total < s.capacity ? total : s.capacity;
  const unsigned long long first = total < s.capacity ? 0 : total % s.capacity;
  std::FILE* out = std::fopen(s.path.c_str(), "wb");
  std::FILE* names = std::fopen((s.path + ".launches").c_str(), "w");
  if (out == nullptr || names == nullptr) {
    std::fprintf(stderr, "cta trace: cannot write %s\n", s.path.c_str());
    if (out != nullptr) std::fclose(out);
    if (names != nullptr) std::fclose(names);
    return;
  }
  for (unsigned long long i = 0; i < kept; ++i) {
    std::fwrite(&ring[(first + i) % s.capacity], sizeof(CtaTraceRecord), 1, out);
  }
  for (size_t id = 0; id < s.names.size(); ++id) {
    std::fprintf(names, "%zu %s\n", id, s.names[id].c_str());
  }
  std::fclose(out);
  std::fclose(names);
  std::fprintf(stderr, "cta trace: %llu of %llu records in %s\n", kept, total, s.path.c_str());
}

}  // namespace
#endif  // TESSEL_CTA_TRACE

CtaTrace CtaTraceForLaunch(absl::FunctionRef<std::string()> name) {
#if !defined(TESSEL_CTA_TRACE)
  static const bool said = [] {
    const char* path = std::getenv("TESSEL_CTA_TRACE");
    if (path != nullptr && *path != '\0') {
      std::fprintf(stderr,
                   "cta trace: TESSEL_CTA_TRACE is set, but this build has no trace code "
                   "(configure with -DTESSEL_CTA_TRACE=ON)\n");
    }
    return true;
  }();
  (void)said;
  (void)name;
  return {};
#else
  TraceState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.initialized) {
    s.initialized = true;
    const char* path = std::getenv("TESSEL_CTA_TRACE");
    if (path != nullptr && *path != '\0') {
      const char* records = std::getenv("TESSEL_CTA_TRACE_RECORDS");
      const long long wanted = records != nullptr ? std::atoll(records) : (1 << 20);
      s.capacity = static_cast<uint32_t>(wanted > 0 && wanted < (1ll << 26) ? wanted : (1 << 20));
      const size_t bytes = size_t{s.capacity} * sizeof(CtaTraceRecord);
      if (cudaMalloc(reinterpret_cast<void**>(&s.records), bytes) != cudaSuccess ||
          cudaMalloc(reinterpret_cast<void**>(&s.count), sizeof(unsigned long long)) !=
              cudaSuccess ||
          cudaMemset(s.count, 0, sizeof(unsigned long long)) != cudaSuccess) {
        cudaGetLastError();
        std::fprintf(stderr, "cta trace: cannot allocate %u records; tracing off\n", s.capacity);
        s.records = nullptr;
      } else {
        s.path = path;
        std::atexit(WriteTrace);
      }
    }
  }
  if (s.records == nullptr) return {};
  CtaTrace trace;
  trace.records = s.records;
  trace.count = s.count;
  trace.capacity = s.capacity;
  trace.launch = static_cast<uint32_t>(s.names.size());
  s.names.push_back(name());
  return trace;
#endif
}

}  // namespace tessel::cuda
