// Elementwise kernels (see elementwise.cuh): one templated grid-stride kernel; each thread
// handles 8 elements per step with 16-byte (bf16) or 2 x 16-byte (f32) accesses when n and
// the pointers allow, else one element. Memory bound: bytes = n * (inputs + output) sizes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/elementwise.cuh"

#include <algorithm>

#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

template <typename T>
__device__ __forceinline__ void Load8(const T* p, float* v) {
  if constexpr (sizeof(T) == 2) {
    Unpack8(*reinterpret_cast<const Bf16x8*>(p), v);
  } else {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  }
}

template <typename T>
__device__ __forceinline__ void Store8(T* p, const float* v) {
  if constexpr (sizeof(T) == 2) {
    *reinterpret_cast<Bf16x8*>(p) = Pack8(v);
  } else {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
}

struct AddFn {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MulFn {
  __device__ float operator()(float a, float b) const { return a * b; }
};
struct ScaleFn {
  float factor;
  __device__ float operator()(float a, float) const { return a * factor; }
};
struct CopyFn {
  __device__ float operator()(float a, float) const { return a; }
};

// out = fn(a, b); b may be null when fn ignores it.
template <typename In, typename Out, typename Fn, bool kVector>
__global__ void ElementwiseKernel(const In* a, const In* b, int64_t n, Out* out, Fn fn) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if constexpr (kVector) {
    for (int64_t v = first; v < n / 8; v += stride) {
      float x[8], y[8] = {};
      Load8(a + v * 8, x);
      if (b != nullptr) Load8(b + v * 8, y);
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = fn(x[j], y[j]);
      Store8(out + v * 8, x);
    }
  } else {
    for (int64_t i = first; i < n; i += stride) {
      const float y = b != nullptr ? ToFloat(b[i]) : 0.0f;
      out[i] = FromFloat<Out>(fn(ToFloat(a[i]), y));
    }
  }
}

template <typename In, typename Out, typename Fn>
absl::Status Launch(const In* a, const In* b, int64_t n, Out* out, Fn fn, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  const int threads = 256;
  const bool vector = n % 8 == 0 && Aligned16(a) && (b == nullptr || Aligned16(b)) &&
                      Aligned16(out);
  const int64_t work = vector ? n / 8 : n;
  const int64_t blocks = std::min<int64_t>(CeilDiv(work, threads), 132 * 16);
  if (vector) {
    ElementwiseKernel<In, Out, Fn, true><<<blocks, threads, 0, stream>>>(a, b, n, out, fn);
  } else {
    ElementwiseKernel<In, Out, Fn, false><<<blocks, threads, 0, stream>>>(a, b, n, out, fn);
  }
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("ElementwiseKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status BinaryTyped(ElementwiseOp op, const T* a, const T* b, int64_t n, T* out,
                         cudaStream_t stream) {
  switch (op) {
    case ElementwiseOp::kAdd:
      return Launch(a, b, n, out, AddFn{}, stream);
    case ElementwiseOp::kMul:
      return Launch(a, b, n, out, MulFn{}, stream);
  }
  return absl::InvalidArgumentError("elementwise: unknown op");
}

}  // namespace

absl::Status LaunchBinary(ElementwiseOp op, DType type, const void* a, const void* b, int64_t n,
                          void* out, cudaStream_t stream) {
  if (type == DType::kBF16) {
    return BinaryTyped(op, static_cast<const bf16*>(a), static_cast<const bf16*>(b), n,
                       static_cast<bf16*>(out), stream);
  }
  return BinaryTyped(op, static_cast<const float*>(a), static_cast<const float*>(b), n,
                     static_cast<float*>(out), stream);
}

absl::Status LaunchScale(DType type, const void* x, double factor, int64_t n, void* out,
                         cudaStream_t stream) {
  const ScaleFn fn{static_cast<float>(factor)};
  if (type == DType::kBF16) {
    return Launch(static_cast<const bf16*>(x), static_cast<const bf16*>(nullptr), n,
                  static_cast<bf16*>(out), fn, stream);
  }
  return Launch(static_cast<const float*>(x), static_cast<const float*>(nullptr), n,
                static_cast<float*>(out), fn, stream);
}

absl::Status LaunchCastF32ToBf16(const float* x, int64_t n, bf16* out, cudaStream_t stream) {
  return Launch(x, static_cast<const float*>(nullptr), n, out, CopyFn{}, stream);
}

absl::Status LaunchCastBf16ToF32(const bf16* x, int64_t n, float* out, cudaStream_t stream) {
  return Launch(x, static_cast<const bf16*>(nullptr), n, out, CopyFn{}, stream);
}

}  // namespace tessel::cuda
