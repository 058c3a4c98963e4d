// Per-CTA timelines of a run, for measurements: where each CTA of the traced kernels ran
// (SM), when it started, when its inputs were in and when it ended.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Compiled in only when TESSEL_CTA_TRACE is defined (CMake -DTESSEL_CTA_TRACE=ON): compiled
// in but off, the per-CTA branch and the kernel parameter measured 0.08 ms slower per
// batch-16 decode step (5.58 -> 5.67 ms, H100), so a normal build has no trace code in its
// kernels. In a tracing build the environment's TESSEL_CTA_TRACE=path (read at the first
// launch) turns it on: each traced launch takes an id (a captured CUDA graph keeps the ids
// of its capture; every replay records again) and the first thread of each CTA writes one
// record into a device ring of TESSEL_CTA_TRACE_RECORDS (default 1M) records. At exit the
// ring is written to `path` (records, oldest first) and the launch names to
// `path.launches` ("id name" lines); bench/cta_timeline.py reads both. Traced: the TMA
// skinny GEMM and decode attention.
#ifndef TESSEL_RUNTIME_CUDA_CTA_TRACE_CUH_
#define TESSEL_RUNTIME_CUDA_CTA_TRACE_CUH_

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"

namespace tessel::cuda {

struct CtaTraceRecord {
  uint32_t launch;  // CtaTraceForLaunch's id
  uint32_t block;   // linear block index
  uint32_t smid;
  uint32_t flags;  // 1: Ready() was called
  uint64_t start, ready, end;         // %globaltimer (ns)
  uint64_t clock_start, clock_end;    // clock64 of the SM
  uint64_t reserved;
};
static_assert(sizeof(CtaTraceRecord) == 64, "the file format bench/cta_timeline.py reads");

/// A kernel parameter: records == nullptr when tracing is off.
struct CtaTrace {
  CtaTraceRecord* records = nullptr;
  unsigned long long* count = nullptr;
  uint32_t capacity = 0;
  uint32_t launch = 0;
};

/// The trace slot of one launch (host): {} unless TESSEL_CTA_TRACE is set in a tracing build
/// (or when its buffers cannot be allocated, said once on stderr). `name` is called only when
/// the launch is traced: launchers pay no string formatting otherwise.
CtaTrace CtaTraceForLaunch(absl::FunctionRef<std::string()> name);

#if defined(__CUDACC__) && !defined(TESSEL_CTA_TRACE)
// Not a tracing build: nothing recorded, nothing held.
class CtaTraceScope {
 public:
  __device__ explicit CtaTraceScope(const CtaTrace&) {}
  __device__ void Ready() {}
};
#elif defined(__CUDACC__)
__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ uint32_t SmId() {
  uint32_t id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

// Constructed by every thread at a kernel's start; only the CTA's first thread records. Its
// times live in shared memory (no registers held across the kernel); the destructor, at
// whichever return that thread takes, writes the record. `trace` must be a __grid_constant__
// kernel parameter (or a member of one): the scope keeps a reference to it.
class CtaTraceScope {
 public:
  __device__ explicit CtaTraceScope(const CtaTrace& trace) : trace_(trace) {
    if (On()) {
      times_[0] = GlobalTimerNs();
      times_[1] = static_cast<uint64_t>(clock64());
      times_[2] = 0;
    }
  }
  __device__ void Ready() {
    if (On() && times_[2] == 0) times_[2] = GlobalTimerNs();
  }
  __device__ ~CtaTraceScope() {
    if (!On()) return;
    CtaTraceRecord r;
    r.end = GlobalTimerNs();
    r.clock_end = static_cast<uint64_t>(clock64());
    r.launch = trace_.launch;
    r.block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    r.smid = SmId();
    r.start = times_[0];
    r.clock_start = times_[1];
    r.ready = times_[2];
    r.flags = times_[2] != 0 ? 1u : 0u;
    r.reserved = 0;
    const unsigned long long at = atomicAdd(trace_.count, 1ull) % trace_.capacity;
    trace_.records[at] = r;
  }

 private:
  __device__ bool On() const {
    return trace_.records != nullptr && threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0;
  }
  const CtaTrace& trace_;
  uint64_t* const times_ = times_storage();
  __device__ static uint64_t* times_storage() {
    __shared__ uint64_t times[3];
    return times;
  }
};
#endif  // __CUDACC__

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_CTA_TRACE_CUH_
