// Token embedding lookup on the GPU (see embedding.cuh). One block per token; 16-byte
// accesses when the row allows them. Cost: tokens * hidden * (table bytes + 2) moved.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/embedding.cuh"

#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

template <typename T, bool kVector>
__global__ void EmbeddingKernel(const int32_t* __restrict__ ids, const T* __restrict__ table,
                                int64_t vocab, int64_t hidden, bf16* __restrict__ out,
                                int32_t* bad_token) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  bf16* dst = out + t * hidden;
  const bool valid = id >= 0 && id < vocab;
  if (!valid && threadIdx.x == 0 && bad_token != nullptr) {
    atomicCAS(bad_token, -1, static_cast<int32_t>(t));
  }
  const T* src = table + (valid ? static_cast<int64_t>(id) : 0) * hidden;
  if constexpr (kVector) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8) {
      float v[8];
      if constexpr (sizeof(T) == 2) {
        Unpack8(*reinterpret_cast<const Bf16x8*>(src + i), v);
      } else {
        const float4 a = *reinterpret_cast<const float4*>(src + i);
        const float4 b = *reinterpret_cast<const float4*>(src + i + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
      }
      if (!valid) {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = 0.0f;
      }
      *reinterpret_cast<Bf16x8*>(dst + i) = Pack8(v);
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      dst[i] = __float2bfloat16_rn(valid ? ToFloat(src[i]) : 0.0f);
    }
  }
}

template <typename T>
absl::Status Launch(const int32_t* ids, int64_t tokens, const T* table, int64_t vocab,
                    int64_t hidden, bf16* out, int32_t* bad_token, cudaStream_t stream) {
  const bool vector = hidden % 8 == 0 && Aligned16(table) && Aligned16(out);
  const int threads = 256;
  if (vector) {
    EmbeddingKernel<T, true><<<tokens, threads, 0, stream>>>(ids, table, vocab, hidden, out,
                                                             bad_token);
  } else {
    EmbeddingKernel<T, false><<<tokens, threads, 0, stream>>>(ids, table, vocab, hidden, out,
                                                              bad_token);
  }
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingKernel");
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchEmbedding(const int32_t* ids, int64_t tokens, const void* table,
                             DType table_type, int64_t vocab, int64_t hidden, bf16* out,
                             int32_t* bad_token, cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0) return absl::OkStatus();
  if (tokens > 0x7fffffff) return absl::InvalidArgumentError("embedding: too many tokens");
  if (table_type == DType::kBF16) {
    return Launch(ids, tokens, static_cast<const bf16*>(table), vocab, hidden, out, bad_token,
                  stream);
  }
  return Launch(ids, tokens, static_cast<const float*>(table), vocab, hidden, out, bad_token,
                stream);
}

}  // namespace tessel::cuda
