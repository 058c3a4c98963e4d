// The CPU reference kernels: fp32 implementations of every plan instruction.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Numerics follow Hugging Face transformers 5.17 (see kernels.h). Reductions that feed a
// normalization (RMSNorm, LayerNorm, softmax sums) accumulate in double, which keeps the
// kernels at least as accurate as torch's fp32; where torch's exact fp32 rounding matters
// (RoPE inverse frequencies and angles, whose error grows with the position) we replay its
// fp32 operations step by step.
#include "runtime/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tessel::cpu {
namespace {

// Eight floats; compiles to one AVX or two SSE registers with GCC and Clang, no -m flag
// needed. Loads and stores go through memcpy, so no alignment is assumed.
typedef float Vec8 __attribute__((vector_size(32)));

inline Vec8 Load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float Sum8(Vec8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// Dot product of two contiguous float vectors with 16 independent partial sums.
inline float Dot(const float* a, const float* b, int64_t n) {
  Vec8 acc0 = {}, acc1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += Load8(a + i) * Load8(b + i);
    acc1 += Load8(a + i + 8) * Load8(b + i + 8);
  }
  if (i + 8 <= n) {
    acc0 += Load8(a + i) * Load8(b + i);
    i += 8;
  }
  float sum = Sum8(acc0 + acc1);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y[0:n] += alpha * x[0:n] (vectorizes without reassociation: lanes are independent).
inline void Axpy(float alpha, const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// out[r, c] = dot(x[r, :], w[c, :]) for an RB x CB tile, k contiguous in both operands:
// RB * CB vector accumulators share each load of x and w.
template <int RB, int CB>
inline void DotTile(const float* x, int64_t x_stride, const float* w, int64_t w_stride, int64_t k,
                    float* out, int64_t out_stride) {
  Vec8 acc[RB][CB] = {};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    Vec8 wv[CB];
    for (int c = 0; c < CB; ++c) wv[c] = Load8(w + c * w_stride + i);
    for (int r = 0; r < RB; ++r) {
      const Vec8 xv = Load8(x + r * x_stride + i);
      for (int c = 0; c < CB; ++c) acc[r][c] += xv * wv[c];
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < CB; ++c) {
      float sum = Sum8(acc[r][c]);
      for (int64_t j = i; j < k; ++j) sum += x[r * x_stride + j] * w[c * w_stride + j];
      out[r * out_stride + c] = sum;
    }
  }
}

// out_in matmul over rows [r0, r1) and columns [c0, c1).
void MatmulOutInBlock(const float* x, int64_t k, const float* w, int64_t n_out, float* out,
                      int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  constexpr int kRows = 2, kCols = 4;
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows) {
    int64_t c = c0;
    for (; c + kCols <= c1; c += kCols) {
      DotTile<kRows, kCols>(x + r * k, k, w + c * k, k, k, out + r * n_out + c, n_out);
    }
    for (; c < c1; ++c)
      DotTile<kRows, 1>(x + r * k, k, w + c * k, k, k, out + r * n_out + c, n_out);
  }
  for (; r < r1; ++r) {
    int64_t c = c0;
    for (; c + kCols <= c1; c += kCols) {
      DotTile<1, kCols>(x + r * k, k, w + c * k, k, k, out + r * n_out + c, n_out);
    }
    for (; c < c1; ++c) out[r * n_out + c] = Dot(x + r * k, w + c * k, k);
  }
}

void ParallelOrInline(ThreadPool* pool, int64_t n, int64_t grain,
                      const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n);
  } else {
    pool->ParallelFor(n, grain, fn);
  }
}

float ApplyUnary(UnaryOp op, float value) {
  const double x = value;
  switch (op) {
    case UnaryOp::kSilu:
      return static_cast<float>(x / (1.0 + std::exp(-x)));
    case UnaryOp::kSigmoid:
      return static_cast<float>(1.0 / (1.0 + std::exp(-x)));
    case UnaryOp::kRelu:
      return value > 0.0f ? value : (std::isnan(value) ? value : 0.0f);
    case UnaryOp::kExp:
      return static_cast<float>(std::exp(x));
    case UnaryOp::kTanh:
      return static_cast<float>(std::tanh(x));
    case UnaryOp::kNeg:
      return -value;
    case UnaryOp::kGelu:  // exact erf form (torch gelu, approximate='none')
      return static_cast<float>(0.5 * x * (1.0 + std::erf(x * std::numbers::sqrt2 / 2.0)));
    case UnaryOp::kGeluTanh: {  // torch gelu approximate='tanh' / gelu_new
      const double inner = std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x);
      return static_cast<float>(0.5 * x * (1.0 + std::tanh(inner)));
    }
  }
  return value;
}

// --- RoPE inverse frequencies --------------------------------------------------------------
//
// transformers computes these in fp32 torch ops; each step below rounds to float where torch
// does, so the angles position * inv_freq agree to an ulp or two even at large positions.

// fp32 base ** (2i / dim), as torch's `base ** (arange(0, dim, 2).float() / dim)`, correctly
// rounded. That equals torch's scalar (ATEN_CPU_CAPABILITY=default, glibc powf) result; its
// AVX2/AVX-512 kernels use SLEEF's powf (1 ulp), which differs in the last bit for a few
// frequencies of some (theta, dim): the angle then differs by ~position * 6e-8 relative.
float PowFreq(float base, int64_t i, int64_t dim) {
  const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
  return static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
}

std::vector<float> InverseFrequencies(const RopeParams& params, int64_t seq_len) {
  const int64_t dim = params.rotary_dim;
  const int64_t half = dim / 2;
  std::vector<float> inv(half);
  float base = static_cast<float>(params.theta);
  if (params.scaling == RopeScalingKind::kDynamic && seq_len > params.original_max_position &&
      params.original_max_position > 0) {
    // _compute_dynamic_ntk_parameters with a tensor seq_len: every step in fp32.
    const float factor = static_cast<float>(params.factor);
    float ratio = factor * static_cast<float>(seq_len);
    ratio = ratio / static_cast<float>(params.original_max_position);
    ratio = ratio - static_cast<float>(params.factor - 1.0);
    const float exponent = static_cast<float>(static_cast<double>(dim) / (dim - 2));
    const float scaled = static_cast<float>(std::pow(static_cast<double>(ratio), exponent));
    base = static_cast<float>(params.theta) * scaled;
  }
  for (int64_t i = 0; i < half; ++i) inv[i] = 1.0f / PowFreq(base, i, dim);

  switch (params.scaling) {
    case RopeScalingKind::kNone:
    case RopeScalingKind::kDynamic:
      break;
    case RopeScalingKind::kLinear: {
      const float factor = static_cast<float>(params.factor);
      for (float& f : inv) f = f / factor;
      break;
    }
    case RopeScalingKind::kLlama3: {
      // _compute_llama3_parameters: keep high frequencies, divide low ones by factor, blend
      // linearly in wavelength between.
      const double old_context = static_cast<double>(params.original_max_position);
      const double low_freq_wavelen = old_context / params.low_freq_factor;
      const double high_freq_wavelen = old_context / params.high_freq_factor;
      const float factor = static_cast<float>(params.factor);
      // torch evaluates `scalar / tensor` as reciprocal(tensor) * scalar; so do we.
      for (float& f : inv) {
        const float wavelen = (1.0f / f) * static_cast<float>(2.0 * std::numbers::pi);
        float scaled = wavelen > static_cast<float>(low_freq_wavelen) ? f / factor : f;
        const bool medium = !(wavelen < static_cast<float>(high_freq_wavelen)) &&
                            !(wavelen > static_cast<float>(low_freq_wavelen));
        if (medium) {
          const float smooth = ((1.0f / wavelen) * static_cast<float>(old_context) -
                                static_cast<float>(params.low_freq_factor)) /
                               static_cast<float>(params.high_freq_factor - params.low_freq_factor);
          scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        f = scaled;
      }
      break;
    }
    case RopeScalingKind::kYarn: {
      // _compute_yarn_parameters with truncate=True: extrapolated frequencies above the
      // correction range, interpolated (/ factor) below, a linear ramp between.
      const double two_pi = 2.0 * std::numbers::pi;
      auto correction_dim = [&](double rotations) {
        return (dim * std::log(params.original_max_position / (rotations * two_pi))) /
               (2.0 * std::log(params.theta));
      };
      double low = std::floor(correction_dim(params.beta_fast));
      double high = std::ceil(correction_dim(params.beta_slow));
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      const float factor = static_cast<float>(params.factor);
      for (int64_t i = 0; i < half; ++i) {
        const float pos_freq = PowFreq(base, i, dim);
        const float extrapolation = 1.0f / pos_freq;
        const float interpolation = 1.0f / (factor * pos_freq);
        const float linear =
            (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
        const float ramp = std::clamp(linear, 0.0f, 1.0f);
        const float extrapolation_factor = 1.0f - ramp;
        inv[i] =
            interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
      }
      break;
    }
  }
  return inv;
}

// Shared body of Attention and MLAAttention: the visible key range [*lo, *hi] of a query.
inline void VisibleKeys(int32_t position, int64_t kv_len, const AttentionParams& params,
                        int64_t* lo, int64_t* hi) {
  *hi = params.causal ? std::min<int64_t>(position, kv_len - 1) : kv_len - 1;
  *lo = params.sliding_window > 0
            ? std::max<int64_t>(0, static_cast<int64_t>(position) - params.sliding_window + 1)
            : 0;
}

// Scales, soft-caps and softmaxes scores[0:n] in place (max-subtracted, sum in double).
inline void SoftmaxScores(float* scores, int64_t n, const AttentionParams& params) {
  const float scale = static_cast<float>(params.scale);
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    float s = scores[j] * scale;
    if (params.logit_softcap > 0.0) {
      s = static_cast<float>(params.logit_softcap * std::tanh(s / params.logit_softcap));
    }
    scores[j] = s;
    max_score = std::max(max_score, s);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) scores[j] *= inv_sum;
}

}  // namespace

// --- Dense -------------------------------------------------------------------------------

absl::Status Embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t vocab,
                       int64_t hidden, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t id = ids[t];
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " at index ", t, " is outside the vocabulary [0, ", vocab, ")"));
    }
    std::memcpy(out + t * hidden, table + static_cast<int64_t>(id) * hidden,
                sizeof(float) * hidden);
  }
  return absl::OkStatus();
}

void RMSNorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
             float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(row[i]) * row[i];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
    float* dst = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) dst[i] = weight[i] * (row[i] * inv_rms);
  }
}

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    double sum = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum += row[i];
    const double mean = sum / dim;
    double var = 0.0;
    for (int64_t i = 0; i < dim; ++i) var += (row[i] - mean) * (row[i] - mean);
    const double inv_std = 1.0 / std::sqrt(var / dim + eps);
    float* dst = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) {
      const float normalized = static_cast<float>((row[i] - mean) * inv_std);
      dst[i] = normalized * weight[i] + (bias != nullptr ? bias[i] : 0.0f);
    }
  }
}

// Matmul, out_in layout: each output is a dot product of two contiguous rows. The output is
// cut into tiles of up to 64 rows x 64 columns, handed to the pool; inside a tile a 2 x 4
// register block of vector accumulators reuses each load of x and W. Cost: rows * n_out * k
// multiply-adds; for decode (rows = 1) it streams W once and is bandwidth bound.
// in_out layout: k outermost, an axpy of each W row segment into every output row of the
// tile (64 rows x 1024 columns), contiguous in W and out.
void Matmul(const float* x, int64_t rows, int64_t k, const float* weight, int64_t n_out,
            bool weight_out_in, const float* bias, float* out, ThreadPool* pool) {
  if (rows <= 0 || n_out <= 0) return;
  // in_out streams rows of W: wider column tiles keep those reads long and sequential.
  const int64_t tile_rows = 64;
  const int64_t tile_cols = weight_out_in ? 64 : 1024;
  const int64_t row_tiles = (rows + tile_rows - 1) / tile_rows;
  const int64_t col_tiles = (n_out + tile_cols - 1) / tile_cols;
  ParallelOrInline(pool, row_tiles * col_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = (tile / col_tiles) * tile_rows;
      const int64_t c0 = (tile % col_tiles) * tile_cols;
      const int64_t r1 = std::min(rows, r0 + tile_rows);
      const int64_t c1 = std::min(n_out, c0 + tile_cols);
      if (weight_out_in) {
        MatmulOutInBlock(x, k, weight, n_out, out, r0, r1, c0, c1);
      } else {
        for (int64_t r = r0; r < r1; ++r)
          std::fill(out + r * n_out + c0, out + r * n_out + c1, 0.0f);
        // k outermost: each W row segment is loaded once per tile and reused by every row.
        for (int64_t i = 0; i < k; ++i) {
          const float* w_row = weight + i * n_out + c0;
          for (int64_t r = r0; r < r1; ++r)
            Axpy(x[r * k + i], w_row, c1 - c0, out + r * n_out + c0);
        }
      }
      if (bias != nullptr) {
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t c = c0; c < c1; ++c) out[r * n_out + c] += bias[c];
        }
      }
    }
  });
}

// --- Elementwise -------------------------------------------------------------------------

void Binary(BinaryOp op, const float* a, const float* b, int64_t n, float* out) {
  switch (op) {
    case BinaryOp::kAdd:
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
      break;
    case BinaryOp::kSub:
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
      break;
    case BinaryOp::kMul:
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
      break;
    case BinaryOp::kDiv:
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] / b[i];
      break;
    case BinaryOp::kMax:  // torch.maximum: NaN propagates
      for (int64_t i = 0; i < n; ++i) {
        out[i] = (std::isnan(a[i]) || std::isnan(b[i])) ? std::numeric_limits<float>::quiet_NaN()
                                                        : std::max(a[i], b[i]);
      }
      break;
  }
}

void Unary(UnaryOp op, const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = ApplyUnary(op, x[i]);
}

void Scale(const float* x, double factor, int64_t n, float* out) {
  const float f = static_cast<float>(factor);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * f;
}

void Softmax(const float* x, int64_t outer, int64_t dim, int64_t inner, float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const float* src = x + o * dim * inner + in;
      float* dst = out + o * dim * inner + in;
      float max_value = -std::numeric_limits<float>::infinity();
      for (int64_t d = 0; d < dim; ++d) max_value = std::max(max_value, src[d * inner]);
      double sum = 0.0;
      for (int64_t d = 0; d < dim; ++d) {
        const float e = std::exp(src[d * inner] - max_value);
        dst[d * inner] = e;
        sum += e;
      }
      const float inv_sum = static_cast<float>(1.0 / sum);
      for (int64_t d = 0; d < dim; ++d) dst[d * inner] *= inv_sum;
    }
  }
}

// --- Layout ------------------------------------------------------------------------------

void Slice(const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t size,
           float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(out + o * size * inner, x + (o * dim + start) * inner,
                sizeof(float) * size * inner);
  }
}

void ConcatInto(const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t out_dim,
                int64_t offset, float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(out + (o * out_dim + offset) * inner, x + o * dim * inner,
                sizeof(float) * dim * inner);
  }
}

void Transpose(const float* x, const int64_t* shape, const int64_t* perm, int rank, float* out) {
  if (rank == 0) {
    out[0] = x[0];
    return;
  }
  // Input strides, reordered into output axis order; then walk the output linearly with an
  // odometer over its index, moving the input offset by those strides.
  std::vector<int64_t> in_strides(rank);
  int64_t total = 1;
  for (int i = rank - 1; i >= 0; --i) {
    in_strides[i] = total;
    total *= shape[i];
  }
  if (total == 0) return;
  std::vector<int64_t> out_shape(rank), stride(rank), index(rank, 0);
  for (int i = 0; i < rank; ++i) {
    out_shape[i] = shape[perm[i]];
    stride[i] = in_strides[perm[i]];
  }
  const int64_t last_size = out_shape[rank - 1];
  const int64_t last_stride = stride[rank - 1];
  int64_t in_offset = 0;
  for (int64_t o = 0; o < total; o += last_size) {
    for (int64_t j = 0; j < last_size; ++j) out[o + j] = x[in_offset + j * last_stride];
    for (int axis = rank - 2; axis >= 0; --axis) {
      in_offset += stride[axis];
      if (++index[axis] < out_shape[axis]) break;
      in_offset -= stride[axis] * out_shape[axis];
      index[axis] = 0;
    }
  }
}

// --- Rotary position embeddings ------------------------------------------------------------

// Angles are fp32 position * fp32 inv_freq, rounded once as torch's `inv_freq @ positions`
// does; cos and sin of that float are computed in double and rounded, within an ulp of
// torch's fp32 cos/sin. Yarn multiplies both by attention_factor (HF attention_scaling).
// Half-split layout (Llama): pairs (i, i + rotary_dim / 2), HF rotate_half. Interleaved
// (DeepSeek): pairs (2i, 2i + 1) rotated by frequency i and written back in place. HF's
// DeepSeek-V3 `apply_rotary_pos_emb_interleave` instead writes the rotated evens then the
// rotated odds (de-interleaving); since q and k get the same permutation, q . k and so the
// attention output are unchanged. DeepSeek-V2's complex-number form keeps the layout, as here.
// Dynamic NTK: HF recomputes inv_freq whenever max(position_ids) + 1 exceeds the longest length
// it has seen so far and keeps that; recomputing from this call's positions is the same as
// long as calls move forward (prefill, then decode), which is how plans run.
void Rope(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
          const RopeParams& params, float* out) {
  if (tokens <= 0) return;
  int64_t seq_len = 0;
  for (int64_t t = 0; t < tokens; ++t) seq_len = std::max<int64_t>(seq_len, positions[t] + 1LL);
  const std::vector<float> inv_freq = RopeInverseFrequencies(params, seq_len);
  const int64_t half = params.rotary_dim / 2;
  const bool has_attention_factor =
      params.scaling == RopeScalingKind::kYarn && params.attention_factor != 0.0;
  const float attention_factor =
      has_attention_factor ? static_cast<float>(params.attention_factor) : 1.0f;
  std::vector<float> cos_table(half), sin_table(half);
  for (int64_t t = 0; t < tokens; ++t) {
    const float position = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(position * inv_freq[i]);
      cos_table[i] = static_cast<float>(std::cos(angle));
      sin_table[i] = static_cast<float>(std::sin(angle));
      if (has_attention_factor) {
        cos_table[i] *= attention_factor;
        sin_table[i] *= attention_factor;
      }
    }
    for (int64_t h = 0; h < heads; ++h) {
      const float* src = x + (t * heads + h) * head_dim;
      float* dst = out + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = params.interleaved ? 2 * i : i;
        const int64_t b = params.interleaved ? 2 * i + 1 : i + half;
        const float xa = src[a], xb = src[b];  // read both before writing (in place)
        dst[a] = xa * cos_table[i] - xb * sin_table[i];
        dst[b] = xb * cos_table[i] + xa * sin_table[i];
      }
      if (dst != src) {
        for (int64_t i = params.rotary_dim; i < head_dim; ++i) dst[i] = src[i];
      }
    }
  }
}

std::vector<float> RopeInverseFrequencies(const RopeParams& params, int64_t seq_len) {
  return InverseFrequencies(params, seq_len);
}

// --- KV cache and attention ----------------------------------------------------------------

absl::Status KVCacheWrite(float* cache, int64_t batch, int64_t capacity, int64_t row,
                          const float* update, int64_t seq, const int32_t* positions) {
  // Validate everything first so that an error leaves the cache untouched.
  for (int64_t i = 0; i < batch * seq; ++i) {
    if (positions[i] < 0 || positions[i] >= capacity) {
      return absl::OutOfRangeError(
          absl::StrCat("KV cache write at position ", positions[i], " (batch ", i / seq, ", step ",
                       i % seq, ") is outside the cache capacity ", capacity,
                       "; the sequence is longer than the plan's max context"));
    }
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < seq; ++s) {
      std::memcpy(cache + (b * capacity + positions[b * seq + s]) * row,
                  update + (b * seq + s) * row, sizeof(float) * row);
    }
  }
  return absl::OkStatus();
}

// Attention, one (batch, query, head) per work item: scores over the visible key range, a
// max-subtracted fp32 softmax, then a weighted sum of values. Cost per item: visible * (dim
// + v_dim) multiply-adds. GQA: query head h reads kv head h / (heads / kv_heads), as HF's
// repeat_kv. Masking matches transformers' masking_utils: causal kv_idx <= q_idx, sliding
// window kv_idx > q_idx - window, on absolute positions.
void Attention(const float* q, const float* k, const float* v, const int32_t* positions,
               int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
               int64_t dim, int64_t v_dim, const AttentionParams& params, float* out,
               ThreadPool* pool) {
  const int64_t group = heads / kv_heads;
  ParallelOrInline(pool, batch * seq * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(std::max<int64_t>(kv_len, 1));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t h = item % heads;
      const int64_t bs = item / heads;  // b * seq + s
      const int64_t b = bs / seq;
      const int64_t kvh = h / group;
      const float* query = q + item * dim;
      float* dst = out + item * v_dim;
      std::fill(dst, dst + v_dim, 0.0f);
      int64_t lo, hi;
      VisibleKeys(positions[bs], kv_len, params, &lo, &hi);
      if (hi < lo) continue;  // no visible key: zeros, not NaN
      const int64_t n = hi - lo + 1;
      for (int64_t j = lo; j <= hi; ++j) {
        scores[j - lo] = Dot(query, k + ((b * kv_len + j) * kv_heads + kvh) * dim, dim);
      }
      SoftmaxScores(scores.data(), n, params);
      for (int64_t j = lo; j <= hi; ++j) {
        Axpy(scores[j - lo], v + ((b * kv_len + j) * kv_heads + kvh) * v_dim, v_dim, dst);
      }
    }
  });
}

// MLA in the absorbed form of the DeepSeek-V2 paper (section 2.1.2): instead of expanding
// every cached latent into per-head keys and values (kv_len * H * (nope + v_dim) * rank),
// fold kv_b into the query and the output: q_latent = kv_b[h, :nope]^T q_nope, score_j =
// q_latent . latent_j + q_rope . key_rope_j, out = kv_b[h, nope:] (sum_j p_j latent_j).
// Cost per (query, head): rank * (nope + v_dim) + kv_len * (2 rank + rope). Equal to HF's
// expanded form up to fp32 rounding.
void MLAAttention(const float* q_nope, const float* q_rope, const float* latent,
                  const float* key_rope, const float* kv_b, const int32_t* positions, int64_t batch,
                  int64_t seq, int64_t heads, int64_t kv_len, int64_t nope, int64_t rope,
                  int64_t rank, int64_t v_dim, const AttentionParams& params, float* out,
                  ThreadPool* pool) {
  const int64_t head_rows = nope + v_dim;
  ParallelOrInline(pool, batch * seq * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(std::max<int64_t>(kv_len, 1));
    std::vector<float> q_latent(rank), o_latent(rank);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t h = item % heads;
      const int64_t bs = item / heads;
      const int64_t b = bs / seq;
      float* dst = out + item * v_dim;
      std::fill(dst, dst + v_dim, 0.0f);
      int64_t lo, hi;
      VisibleKeys(positions[bs], kv_len, params, &lo, &hi);
      if (hi < lo) continue;
      const float* kv_b_head = kv_b + h * head_rows * rank;
      const float* qn = q_nope + item * nope;
      const float* qr = q_rope + item * rope;
      std::fill(q_latent.begin(), q_latent.end(), 0.0f);
      for (int64_t d = 0; d < nope; ++d) Axpy(qn[d], kv_b_head + d * rank, rank, q_latent.data());
      for (int64_t j = lo; j <= hi; ++j) {
        scores[j - lo] = Dot(q_latent.data(), latent + (b * kv_len + j) * rank, rank) +
                         Dot(qr, key_rope + (b * kv_len + j) * rope, rope);
      }
      SoftmaxScores(scores.data(), hi - lo + 1, params);
      std::fill(o_latent.begin(), o_latent.end(), 0.0f);
      for (int64_t j = lo; j <= hi; ++j) {
        Axpy(scores[j - lo], latent + (b * kv_len + j) * rank, rank, o_latent.data());
      }
      for (int64_t d = 0; d < v_dim; ++d) {
        dst[d] = Dot(kv_b_head + (nope + d) * rank, o_latent.data(), rank);
      }
    }
  });
}

// --- Mixture of experts ----------------------------------------------------------------------

// Routers of Mixtral / Qwen2-MoE (softmax, top-k), DeepSeek-V2 (softmax, group-limited greedy:
// group score = max, experts outside the kept groups masked to 0.0) and DeepSeek-V3 (sigmoid,
// noaux_tc: choice = score + e_score_correction_bias, group score = top-2 sum, masked to
// -inf as transformers 5.17 does, weights gathered from the unbiased scores). Ties go to the
// lower expert index. Cost: tokens * experts * hidden for the logits, the rest is small.
void MoERouter(const float* x, int64_t tokens, int64_t hidden, const float* gate, int64_t experts,
               const float* bias, const RouterParams& params, float* weights, int32_t* indices,
               ThreadPool* pool) {
  std::vector<float> logits(tokens * experts);
  Matmul(x, tokens, hidden, gate, experts, /*weight_out_in=*/true, nullptr, logits.data(), pool);
  const int64_t n_group = std::max<int64_t>(params.n_group, 1);
  const int64_t group_size = experts / n_group;
  const int64_t top_k = params.top_k;
  const int64_t chosen = std::min(top_k, experts);  // top_k > experts is invalid: pad
  std::vector<float> scores(experts), choice(experts), group_scores(n_group);
  std::vector<int64_t> order(std::max(experts, n_group));
  // Descending by value, ties to the lower index; returns the first `count` indices in order.
  auto top = [&order](const float* values, int64_t n, int64_t count) {
    count = std::min(count, n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    std::partial_sort(order.begin(), order.begin() + count, order.begin() + n,
                      [values](int64_t a, int64_t b) {
                        return values[a] > values[b] || (values[a] == values[b] && a < b);
                      });
  };
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = logits.data() + t * experts;
    if (params.sigmoid) {
      for (int64_t e = 0; e < experts; ++e) scores[e] = 1.0f / (1.0f + std::exp(-row[e]));
    } else {
      float max_logit = -std::numeric_limits<float>::infinity();
      for (int64_t e = 0; e < experts; ++e) max_logit = std::max(max_logit, row[e]);
      double sum = 0.0;
      for (int64_t e = 0; e < experts; ++e) {
        scores[e] = std::exp(row[e] - max_logit);
        sum += scores[e];
      }
      const float inv_sum = static_cast<float>(1.0 / sum);
      for (int64_t e = 0; e < experts; ++e) scores[e] *= inv_sum;
    }
    for (int64_t e = 0; e < experts; ++e) choice[e] = scores[e] + (bias ? bias[e] : 0.0f);

    if (n_group > 1 && params.topk_group < n_group) {
      for (int64_t g = 0; g < n_group; ++g) {
        const float* member = choice.data() + g * group_size;
        if (bias != nullptr) {
          float first = -std::numeric_limits<float>::infinity(), second = first;
          for (int64_t i = 0; i < group_size; ++i) {
            if (member[i] > first) {
              second = first;
              first = member[i];
            } else if (member[i] > second) {
              second = member[i];
            }
          }
          group_scores[g] = group_size >= 2 ? first + second : first;
        } else {
          group_scores[g] = *std::max_element(member, member + group_size);
        }
      }
      top(group_scores.data(), n_group, params.topk_group);
      std::vector<bool> kept(n_group, false);
      for (int64_t i = 0; i < params.topk_group; ++i) kept[order[i]] = true;
      const float masked = bias != nullptr ? -std::numeric_limits<float>::infinity() : 0.0f;
      for (int64_t e = 0; e < experts; ++e) {
        if (!kept[e / group_size]) choice[e] = masked;
      }
    }
    top(choice.data(), experts, chosen);
    float* w = weights + t * top_k;
    int32_t* idx = indices + t * top_k;
    float sum = 0.0f;
    for (int64_t i = 0; i < top_k; ++i) {
      if (i >= chosen) {
        idx[i] = 0;
        w[i] = 0.0f;
        continue;
      }
      const int64_t e = order[i];
      idx[i] = static_cast<int32_t>(e);
      // Unbiased score; without a bias HF gathers from the masked scores (0 if masked).
      w[i] = bias != nullptr ? scores[e] : choice[e];
      sum += w[i];
    }
    if (params.norm_topk_prob) {
      const float denominator = sum + 1e-20f;
      for (int64_t i = 0; i < top_k; ++i) w[i] /= denominator;
    }
    const float scaling = static_cast<float>(params.routed_scaling_factor);
    for (int64_t i = 0; i < top_k; ++i) w[i] *= scaling;
  }
}

// Experts, grouped by expert as HF's loop over hit experts: gather the expert's tokens,
// two matmuls and the gated activation, the down matmul, then a weighted scatter-add.
// Each matmul uses the pool, so decode (one token) still spreads over all threads.
// Cost: tokens * top_k * 3 * hidden * inter multiply-adds.
void MoEExperts(const float* x, int64_t tokens, int64_t hidden, const float* weights,
                const int32_t* indices, int64_t top_k, const float* gate, const float* up,
                const float* down, int64_t experts, int64_t inter, UnaryOp activation, float* out,
                ThreadPool* pool) {
  std::fill(out, out + tokens * hidden, 0.0f);
  std::vector<std::vector<int64_t>> routed(experts);  // (token * top_k + slot) per expert
  for (int64_t i = 0; i < tokens * top_k; ++i) {
    const int32_t e = indices[i];
    if (e >= 0 && e < experts) routed[e].push_back(i);
  }
  std::vector<float> gathered, gate_out, up_out, down_out;
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t n = static_cast<int64_t>(routed[e].size());
    if (n == 0) continue;
    gathered.resize(n * hidden);
    gate_out.resize(n * inter);
    up_out.resize(n * inter);
    down_out.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(gathered.data() + i * hidden, x + (routed[e][i] / top_k) * hidden,
                  sizeof(float) * hidden);
    }
    Matmul(gathered.data(), n, hidden, gate + e * inter * hidden, inter, true, nullptr,
           gate_out.data(), pool);
    Matmul(gathered.data(), n, hidden, up + e * inter * hidden, inter, true, nullptr, up_out.data(),
           pool);
    for (int64_t i = 0; i < n * inter; ++i) {
      gate_out[i] = ApplyUnary(activation, gate_out[i]) * up_out[i];
    }
    Matmul(gate_out.data(), n, inter, down + e * hidden * inter, hidden, true, nullptr,
           down_out.data(), pool);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t slot = routed[e][i];
      Axpy(weights[slot], down_out.data() + i * hidden, hidden, out + (slot / top_k) * hidden);
    }
  }
}

}  // namespace tessel::cpu
