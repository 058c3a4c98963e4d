// Kernels only the CUDA plan executor uses (see executor.cuh).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/executor.cuh"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>(CeilDiv(std::max<int64_t>(n, 1), kThreads), 65535 * 8));
}

// SplitMix64 finalizer: a well-mixed 64-bit hash of (seed, index).
__device__ __forceinline__ uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void FillNormalKernel(bf16* out, int64_t n, uint64_t seed, float mean,
                                 float stddev) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t h = Mix(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i) + 1);
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);
    const float u2 = static_cast<float>((h >> 16) & 0xffffffu) * (1.0f / 16777216.0f);
    const float normal = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    out[i] = __float2bfloat16_rn(mean + stddev * normal);
  }
}

__global__ void KvCacheWriteKernel(const bf16* __restrict__ update,
                                   const int32_t* __restrict__ positions, int64_t seq,
                                   int64_t row, bf16* __restrict__ cache, int64_t capacity) {
  const int64_t token = blockIdx.x;  // b * seq + s
  const int64_t b = token / seq;
  const int32_t pos = positions[token];
  if (pos < 0 || pos >= capacity) return;
  const bf16* src = update + token * row;
  bf16* dst = cache + (b * capacity + pos) * row;
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) dst[i] = src[i];
}

template <typename T>
__global__ void StridedCopyKernel(const T* __restrict__ in, int64_t outer, int64_t in_dim,
                                  int64_t in_start, int64_t size, int64_t inner,
                                  int64_t out_dim, int64_t out_start, T* __restrict__ out) {
  const int64_t total = outer * size * inner;
  for (int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; n < total;
       n += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = n % inner, d = (n / inner) % size, o = n / (inner * size);
    out[(o * out_dim + out_start + d) * inner + i] = in[(o * in_dim + in_start + d) * inner + i];
  }
}

__global__ void SiluKernel(const bf16* x, int64_t n, bf16* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = __bfloat162float(x[i]);
    out[i] = __float2bfloat16_rn(v / (1.0f + expf(-v)));
  }
}

constexpr int kAttentionThreads = 128;

// scores[i] = exp(scores[i] - max over the block) for i < count, returning their sum (every
// thread gets it); `local_max` is each thread's max over its scores. Ends with a barrier.
__device__ float ExpScores(float* scores, int64_t count, float local_max, float* scratch) {
  const float max = BlockMax(local_max, scratch);
  float local_sum = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const float p = expf(scores[i] - max);
    scores[i] = p;
    local_sum += p;
  }
  return BlockSum(local_sum, scratch);
}

// One block per (b, s, h): q in shared memory, every visible key's score in shared memory,
// then the softmax-weighted sum of v, one output feature per thread. O(kv_len * head_dim).
__global__ void __launch_bounds__(kAttentionThreads)
    AttentionReferenceKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                             const bf16* __restrict__ v, const int32_t* __restrict__ positions,
                             int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
                             int64_t head_dim, AttentionKernelParams params,
                             bf16* __restrict__ out) {
  extern __shared__ float smem[];
  float* q_row = smem;             // head_dim
  float* scores = smem + head_dim;  // kv_len
  __shared__ float scratch[32];
  const int64_t h = blockIdx.x % heads, token = blockIdx.x / heads, b = token / seq;
  const int64_t kvh = h / (heads / kv_heads);
  const bf16* q_src = q + (token * heads + h) * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) q_row[d] = __bfloat162float(q_src[d]);
  __syncthreads();
  const int64_t pos = positions[token];
  int64_t last = params.causal ? std::min<int64_t>(pos, kv_len - 1) : kv_len - 1;
  int64_t first = 0;
  if (params.sliding_window > 0) first = std::max<int64_t>(0, pos - params.sliding_window + 1);
  float local_max = -INFINITY;
  for (int64_t j = first + threadIdx.x; j <= last; j += blockDim.x) {
    const bf16* key = k + ((b * kv_len + j) * kv_heads + kvh) * head_dim;
    float dot = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d) dot += q_row[d] * __bfloat162float(key[d]);
    const float s = CapScore(dot * params.scale, params.logit_softcap);
    scores[j - first] = s;
    local_max = fmaxf(local_max, s);
  }
  const float total = ExpScores(scores, last - first + 1, local_max, scratch);
  bf16* dst = out + (token * heads + h) * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = first; j <= last; ++j)
      acc += scores[j - first] * __bfloat162float(v[((b * kv_len + j) * kv_heads + kvh) * head_dim + d]);
    dst[d] = __float2bfloat16_rn(total > 0.0f ? acc / total : 0.0f);
  }
}

// MLA in its absorbed form for any dims (mla.cu's kernel takes rank 512 / rope 64 only): one
// block per (token, head); q_latent = q_nope . kv_b[h, :nope], scores against the latent and
// rope-key rows, softmax in f32, o_latent = p . latent, out = kv_b[h, nope:] . o_latent.
__global__ void __launch_bounds__(kAttentionThreads)
    MlaReferenceKernel(const bf16* __restrict__ q_nope, const bf16* __restrict__ q_rope,
                       const bf16* __restrict__ latent, const bf16* __restrict__ key_rope,
                       const bf16* __restrict__ kv_b, const int32_t* __restrict__ positions,
                       int64_t seq, int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                       int64_t rank, int64_t v_dim, AttentionKernelParams params,
                       bf16* __restrict__ out) {
  extern __shared__ float smem[];
  float* q_lat = smem;            // rank
  float* o_lat = smem + rank;     // rank
  float* scores = smem + 2 * rank;  // kv_len
  __shared__ float scratch[32];
  const int64_t item = blockIdx.x, h = item % heads, token = item / heads, b = token / seq;
  const bf16* kvb = kv_b + h * (nope + v_dim) * rank;
  const bf16* qn = q_nope + item * nope;
  const bf16* qr = q_rope + item * rope;
  for (int64_t r = threadIdx.x; r < rank; r += blockDim.x) {
    float acc = 0.0f;
    for (int64_t d = 0; d < nope; ++d) acc += __bfloat162float(qn[d]) * __bfloat162float(kvb[d * rank + r]);
    q_lat[r] = acc;
  }
  __syncthreads();
  const int64_t pos = positions[token];
  const int64_t last = params.causal ? std::min<int64_t>(pos, kv_len - 1) : kv_len - 1;
  int64_t first = 0;
  if (params.sliding_window > 0) first = std::max<int64_t>(0, pos - params.sliding_window + 1);
  float local_max = -INFINITY;
  for (int64_t j = first + threadIdx.x; j <= last; j += blockDim.x) {
    const bf16* lat = latent + (b * kv_len + j) * rank;
    const bf16* kr = key_rope + (b * kv_len + j) * rope;
    float dot = 0.0f;
    for (int64_t r = 0; r < rank; ++r) dot += q_lat[r] * __bfloat162float(lat[r]);
    for (int64_t d = 0; d < rope; ++d) dot += __bfloat162float(qr[d]) * __bfloat162float(kr[d]);
    const float sc = CapScore(dot * params.scale, params.logit_softcap);
    scores[j - first] = sc;
    local_max = fmaxf(local_max, sc);
  }
  const float total = ExpScores(scores, last - first + 1, local_max, scratch);
  for (int64_t r = threadIdx.x; r < rank; r += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = first; j <= last; ++j)
      acc += scores[j - first] * __bfloat162float(latent[(b * kv_len + j) * rank + r]);
    o_lat[r] = total > 0.0f ? acc / total : 0.0f;
  }
  __syncthreads();
  bf16* dst = out + item * v_dim;
  for (int64_t d = threadIdx.x; d < v_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t r = 0; r < rank; ++r) acc += __bfloat162float(kvb[(nope + d) * rank + r]) * o_lat[r];
    dst[d] = __float2bfloat16_rn(acc);
  }
}

}  // namespace

absl::Status LaunchFillNormalBf16(bf16* out, int64_t n, uint64_t seed, float mean,
                                  float stddev, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  FillNormalKernel<<<Blocks(n), kThreads, 0, stream>>>(out, n, seed, mean, stddev);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("FillNormalKernel");
  return absl::OkStatus();
}

absl::Status LaunchKvCacheWrite(const bf16* update, const int32_t* positions, int64_t batch,
                                int64_t seq, int64_t row, bf16* cache, int64_t capacity,
                                cudaStream_t stream) {
  if (batch * seq <= 0) return absl::OkStatus();
  KvCacheWriteKernel<<<static_cast<unsigned>(batch * seq), 128, 0, stream>>>(
      update, positions, seq, row, cache, capacity);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("KvCacheWriteKernel");
  return absl::OkStatus();
}

absl::Status LaunchStridedCopy(const void* in, int64_t outer, int64_t in_dim, int64_t in_start,
                               int64_t size, int64_t inner, int64_t out_dim, int64_t out_start,
                               int element_bytes, void* out, cudaStream_t stream) {
  const int64_t total = outer * size * inner;
  if (total <= 0) return absl::OkStatus();
  if (element_bytes == 2) {
    StridedCopyKernel<uint16_t><<<Blocks(total), kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(in), outer, in_dim, in_start, size, inner, out_dim,
        out_start, static_cast<uint16_t*>(out));
  } else if (element_bytes == 4) {
    StridedCopyKernel<uint32_t><<<Blocks(total), kThreads, 0, stream>>>(
        static_cast<const uint32_t*>(in), outer, in_dim, in_start, size, inner, out_dim,
        out_start, static_cast<uint32_t*>(out));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchStridedCopy: element size ", element_bytes, " is not 2 or 4"));
  }
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("StridedCopyKernel");
  return absl::OkStatus();
}

absl::Status LaunchSilu(const bf16* x, int64_t n, bf16* out, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  SiluKernel<<<Blocks(n), kThreads, 0, stream>>>(x, n, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("SiluKernel");
  return absl::OkStatus();
}

absl::Status LaunchAttentionReference(const bf16* q, const bf16* k, const bf16* v,
                                      const int32_t* positions, int64_t batch, int64_t seq,
                                      int64_t heads, int64_t kv_len, int64_t kv_heads,
                                      int64_t head_dim, const AttentionKernelParams& params,
                                      bf16* out, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim > 256 || kv_len <= 0 || kv_len > 32768 || kv_heads <= 0 ||
      heads % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LaunchAttentionReference: unsupported shape (heads ", heads, ", kv_heads ", kv_heads,
        ", head_dim ", head_dim, ", kv_len ", kv_len, ")"));
  }
  const size_t smem = (head_dim + kv_len) * sizeof(float);
  if (smem > 48 * 1024) {
    TESSEL_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        AttentionReferenceKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(smem)));
  }
  const int64_t blocks = batch * seq * heads;
  if (blocks <= 0) return absl::OkStatus();
  AttentionReferenceKernel<<<static_cast<unsigned>(blocks), kAttentionThreads, smem, stream>>>(
      q, k, v, positions, seq, heads, kv_len, kv_heads, head_dim, params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionReferenceKernel");
  return absl::OkStatus();
}

absl::Status LaunchMlaReference(const bf16* q_nope, const bf16* q_rope, const bf16* latent,
                                const bf16* key_rope, const bf16* kv_b,
                                const int32_t* positions, int64_t batch, int64_t seq,
                                int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                                int64_t rank, int64_t v_dim, const AttentionKernelParams& params,
                                bf16* out, cudaStream_t stream) {
  if (kv_len <= 0 || kv_len > 32768 || rank <= 0 || rank > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mla reference: kv_len ", kv_len, " / rank ", rank, " outside (0, 32768] / (0, 4096]"));
  }
  const size_t smem = sizeof(float) * (2 * rank + kv_len);
  if (smem > 48 * 1024) {
    TESSEL_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        MlaReferenceKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  const int64_t blocks = batch * seq * heads;
  if (blocks <= 0) return absl::OkStatus();
  MlaReferenceKernel<<<static_cast<unsigned>(blocks), kAttentionThreads, smem, stream>>>(
      q_nope, q_rope, latent, key_rope, kv_b, positions, seq, heads, kv_len, nope, rope, rank,
      v_dim, params, out);
  TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR("MlaReferenceKernel");
  return absl::OkStatus();
}

}  // namespace tessel::cuda
