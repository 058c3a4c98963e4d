// Tests of the CPU reference kernels against naive double-precision references.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Every random check draws fresh inputs (seeded from std::random_device, the seed printed on
// failure) and compares by relative error of norms, ||out - ref|| / ||ref||; NaN never
// passes. Outputs are poisoned with NaN first, so an unwritten element fails.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "runtime/cpu/kernels.h"

namespace tessel::cpu {
namespace {

constexpr double kFp32Tolerance = 1e-5;

class Random {
 public:
  Random() : seed_(std::random_device{}()), engine_(seed_) {}
  uint32_t seed() const { return seed_; }
  std::vector<float> Normal(int64_t n, double stddev = 1.0) {
    std::normal_distribution<float> dist(0.0f, static_cast<float>(stddev));
    std::vector<float> v(n);
    for (float& x : v) x = dist(engine_);
    return v;
  }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }

 private:
  uint32_t seed_;
  std::mt19937 engine_;
};

std::vector<float> Poisoned(int64_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// ||out - ref|| / ||ref||; infinity if anything is NaN or the sizes differ.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i]) || std::isnan(ref[i])) return std::numeric_limits<double>::infinity();
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// max_i |out_i - ref_i| / magnitude_i, magnitude_i being the sum of the absolute values of the
// terms that make ref_i (a dot product's rounding error is bounded relative to that, not to
// |ref_i|, which cancellation can make arbitrarily small); infinity on NaN or a size mismatch.
double ErrorOverMagnitude(const std::vector<float>& out, const std::vector<double>& ref,
                          const std::vector<double>& magnitude) {
  if (out.size() != ref.size() || out.size() != magnitude.size()) {
    return std::numeric_limits<double>::infinity();
  }
  double worst = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i]) || std::isnan(ref[i])) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(out[i] - ref[i]) / std::max(magnitude[i], 1e-30));
  }
  return worst;
}

// Streams extra context like any EXPECT_*.
#define EXPECT_CLOSE(out, ref, tol, rng) \
  EXPECT_LE(RelativeError((out), (ref)), (tol)) << "seed " << (rng).seed() << ": "

// ---- ThreadPool ----------------------------------------------------------------------------

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  for (int64_t n : {0, 1, 3, 7, 64, 1000, 12345}) {
    for (int64_t grain : {1, 5, 100}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<bool> short_chunk{false};
      pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
        if (end - begin < grain && end != n) short_chunk = true;
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " i " << i;
      EXPECT_FALSE(short_chunk) << "n " << n << " grain " << grain;
    }
  }
}

TEST(ThreadPoolTest, RepeatedAndNestedCalls) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 200; ++round) {
    pool.ParallelFor(10, 1, [&](int64_t begin, int64_t end) {
      // A nested call runs inline instead of deadlocking on the busy workers.
      pool.ParallelFor(end - begin, 1, [&](int64_t b, int64_t e) { total += e - b; });
    });
  }
  EXPECT_EQ(total.load(), 200 * 10);
  ThreadPool single(1);
  int64_t covered = 0;
  single.ParallelFor(17, 1, [&](int64_t b, int64_t e) { covered += e - b; });
  EXPECT_EQ(covered, 17);
}

// ---- Dense ---------------------------------------------------------------------------------

TEST(EmbeddingTest, GathersRowsAndRejectsOutOfRangeIds) {
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<float> out(4);
  const int32_t ids[] = {2, 0};
  ASSERT_TRUE(Embedding(ids, 2, table.data(), 3, 2, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1}));
  for (int32_t bad : {3, -1}) {
    const int32_t bad_ids[] = {1, bad};
    const absl::Status status = Embedding(bad_ids, 2, table.data(), 3, 2, out.data());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(status.message(), std::to_string(bad))) << status;
  }
}

TEST(NormTest, RMSNormAndLayerNormMatchDoubleReference) {
  Random rng;
  const int64_t rows = 5, dim = 37;
  const std::vector<float> x = rng.Normal(rows * dim, 3.0), w = rng.Normal(dim),
                           b = rng.Normal(dim);
  const double eps = 1e-6;
  std::vector<double> rms_ref(rows * dim), ln_ref(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double sq = 0, sum = 0;
    for (int64_t i = 0; i < dim; ++i) {
      sq += double(x[r * dim + i]) * x[r * dim + i];
      sum += x[r * dim + i];
    }
    const double mean = sum / dim;
    double var = 0;
    for (int64_t i = 0; i < dim; ++i) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
    for (int64_t i = 0; i < dim; ++i) {
      rms_ref[r * dim + i] = x[r * dim + i] / std::sqrt(sq / dim + eps) * w[i];
      ln_ref[r * dim + i] = (x[r * dim + i] - mean) / std::sqrt(var / dim + eps) * w[i] + b[i];
    }
  }
  std::vector<float> out = Poisoned(rows * dim);
  RMSNorm(x.data(), w.data(), rows, dim, eps, out.data());
  EXPECT_CLOSE(out, rms_ref, kFp32Tolerance, rng);
  out = Poisoned(rows * dim);
  LayerNorm(x.data(), w.data(), b.data(), rows, dim, eps, out.data());
  EXPECT_CLOSE(out, ln_ref, kFp32Tolerance, rng);
}

TEST(MatmulTest, BothLayoutsMatchDoubleReference) {
  Random rng;
  ThreadPool pool(3);
  // Odd sizes exercise every tile remainder; 130 x 70 spans several 64 x 64 tiles.
  struct Shape {
    int64_t rows, k, n;
  };
  for (const Shape& s :
       {Shape{1, 1, 1}, Shape{1, 67, 133}, Shape{3, 19, 5}, Shape{130, 45, 70}, Shape{7, 256, 9}}) {
    for (bool out_in : {true, false}) {
      for (bool with_bias : {false, true}) {
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          const std::vector<float> x = rng.Normal(s.rows * s.k), w = rng.Normal(s.k * s.n),
                                   bias = rng.Normal(s.n);
          std::vector<double> ref(s.rows * s.n), magnitude(s.rows * s.n);
          for (int64_t r = 0; r < s.rows; ++r) {
            for (int64_t c = 0; c < s.n; ++c) {
              double acc = with_bias ? bias[c] : 0.0;
              double sum_abs = std::abs(acc);
              for (int64_t i = 0; i < s.k; ++i) {
                const double term =
                    double(x[r * s.k + i]) * (out_in ? w[c * s.k + i] : w[i * s.n + c]);
                acc += term;
                sum_abs += std::abs(term);
              }
              ref[r * s.n + c] = acc;
              magnitude[r * s.n + c] = sum_abs;
            }
          }
          std::vector<float> out = Poisoned(s.rows * s.n);
          Matmul(x.data(), s.rows, s.k, w.data(), s.n, out_in, with_bias ? bias.data() : nullptr,
                 out.data(), p);
          // Per element against the terms' magnitude: 1x1x1 with a bias can cancel to nearly
          // zero, where a relative error by norm measures the cancellation, not the kernel.
          EXPECT_LE(ErrorOverMagnitude(out, ref, magnitude), kFp32Tolerance)
              << "seed " << rng.seed() << ": " << s.rows << "x" << s.k << "x" << s.n
              << " out_in " << out_in;
        }
      }
    }
  }
}

// ---- Elementwise and layout ----------------------------------------------------------------

TEST(ElementwiseTest, UnaryBinaryScaleSoftmax) {
  Random rng;
  const int64_t n = 101;
  const std::vector<float> a = rng.Normal(n, 2.0), b = rng.Normal(n, 2.0);
  struct UnaryCase {
    UnaryOp op;
    double (*ref)(double);
  };
  const UnaryCase unary_cases[] = {
      {UnaryOp::kSilu, [](double x) { return x / (1 + std::exp(-x)); }},
      {UnaryOp::kSigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }},
      {UnaryOp::kRelu, [](double x) { return std::max(x, 0.0); }},
      {UnaryOp::kExp, [](double x) { return std::exp(x); }},
      {UnaryOp::kTanh, [](double x) { return std::tanh(x); }},
      {UnaryOp::kNeg, [](double x) { return -x; }},
      {UnaryOp::kGelu, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
      {UnaryOp::kGeluTanh,
       [](double x) {
         return 0.5 * x *
                (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
       }},
  };
  for (const UnaryCase& c : unary_cases) {
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = c.ref(a[i]);
    std::vector<float> out = Poisoned(n);
    Unary(c.op, a.data(), n, out.data());
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng) << "unary op " << static_cast<int>(c.op);
  }
  struct BinaryCase {
    BinaryOp op;
    double (*ref)(double, double);
  };
  const BinaryCase binary_cases[] = {
      {BinaryOp::kAdd, [](double x, double y) { return x + y; }},
      {BinaryOp::kSub, [](double x, double y) { return x - y; }},
      {BinaryOp::kMul, [](double x, double y) { return x * y; }},
      {BinaryOp::kDiv, [](double x, double y) { return x / y; }},
      {BinaryOp::kMax, [](double x, double y) { return std::max(x, y); }},
  };
  for (const BinaryCase& c : binary_cases) {
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = c.ref(a[i], b[i]);
    std::vector<float> out = Poisoned(n);
    Binary(c.op, a.data(), b.data(), n, out.data());
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng) << "binary op " << static_cast<int>(c.op);
  }
  {
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = a[i] * 0.125;
    std::vector<float> out = Poisoned(n);
    Scale(a.data(), 0.125, n, out.data());
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng);
  }
  {
    const int64_t outer = 3, dim = 7, inner = 4;
    const std::vector<float> x = rng.Normal(outer * dim * inner, 5.0);
    std::vector<double> ref(x.size());
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        double sum = 0;
        for (int64_t d = 0; d < dim; ++d) sum += std::exp(double(x[(o * dim + d) * inner + in]));
        for (int64_t d = 0; d < dim; ++d) {
          const int64_t i = (o * dim + d) * inner + in;
          ref[i] = std::exp(double(x[i])) / sum;
        }
      }
    }
    std::vector<float> out = Poisoned(x.size());
    Softmax(x.data(), outer, dim, inner, out.data());
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng);
  }
}

TEST(LayoutTest, SliceConcatTranspose) {
  // x [2, 3, 2] = 0..11.
  std::vector<float> x(12);
  for (int i = 0; i < 12; ++i) x[i] = static_cast<float>(i);
  std::vector<float> sliced = Poisoned(4);
  Slice(x.data(), 2, 3, 2, 1, 1, sliced.data());
  EXPECT_EQ(sliced, (std::vector<float>{2, 3, 8, 9}));

  std::vector<float> concat = Poisoned(2 * 4 * 2);
  ConcatInto(x.data(), 2, 3, 2, 4, 0, concat.data());
  const std::vector<float> extra = {100, 101, 200, 201};
  ConcatInto(extra.data(), 2, 1, 2, 4, 3, concat.data());
  EXPECT_EQ(concat, (std::vector<float>{0, 1, 2, 3, 4, 5, 100, 101, 6, 7, 8, 9, 10, 11, 200, 201}));

  Random rng;
  const int64_t shape[] = {2, 3, 4, 5};
  const int64_t perm[] = {2, 0, 3, 1};
  const std::vector<float> t = rng.Normal(120);
  std::vector<float> out = Poisoned(120);
  Transpose(t.data(), shape, perm, 4, out.data());
  std::vector<double> ref(120);
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c)
        for (int64_t d = 0; d < 5; ++d)  // out [4, 2, 5, 3] at (c, a, d, b)
          ref[((c * 2 + a) * 5 + d) * 3 + b] = t[((a * 3 + b) * 4 + c) * 5 + d];
  EXPECT_CLOSE(out, ref, 0.0, rng);
}

// ---- RoPE ----------------------------------------------------------------------------------

// Reference inverse frequencies in double, straight from modeling_rope_utils' formulas.
std::vector<double> ReferenceInverseFrequencies(const RopeParams& p, int64_t seq_len) {
  const int64_t dim = p.rotary_dim;
  double base = p.theta;
  if (p.scaling == RopeScalingKind::kDynamic && seq_len > p.original_max_position) {
    base *= std::pow(p.factor * seq_len / p.original_max_position - (p.factor - 1),
                     double(dim) / (dim - 2));
  }
  std::vector<double> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) inv[i] = 1.0 / std::pow(base, 2.0 * i / dim);
  if (p.scaling == RopeScalingKind::kLinear) {
    for (double& f : inv) f /= p.factor;
  } else if (p.scaling == RopeScalingKind::kLlama3) {
    const double low_wavelen = p.original_max_position / p.low_freq_factor;
    const double high_wavelen = p.original_max_position / p.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= p.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (p.original_max_position / wavelen - p.low_freq_factor) /
                              (p.high_freq_factor - p.low_freq_factor);
        f = (1 - smooth) * f / p.factor + smooth * f;
      }
    }
  } else if (p.scaling == RopeScalingKind::kYarn) {
    auto correction = [&](double rotations) {
      return dim * std::log(p.original_max_position / (rotations * 2 * std::numbers::pi)) /
             (2 * std::log(p.theta));
    };
    const double low = std::max(std::floor(correction(p.beta_fast)), 0.0);
    double high = std::min(std::ceil(correction(p.beta_slow)), double(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      inv[i] = inv[i] / p.factor * ramp + inv[i] * (1 - ramp);
    }
  }
  return inv;
}

std::vector<RopeParams> AllRopeVariants(int64_t rotary_dim) {
  std::vector<RopeParams> variants;
  for (bool interleaved : {false, true}) {
    RopeParams p;
    p.rotary_dim = rotary_dim;
    p.interleaved = interleaved;
    variants.push_back(p);
    p.scaling = RopeScalingKind::kLinear;
    p.factor = 2.0;
    variants.push_back(p);
    p.scaling = RopeScalingKind::kDynamic;
    p.original_max_position = 40;
    variants.push_back(p);
    p.scaling = RopeScalingKind::kLlama3;
    p.theta = 500000.0;
    p.factor = 8.0;
    p.original_max_position = 64;
    variants.push_back(p);
    p.scaling = RopeScalingKind::kYarn;
    p.theta = 10000.0;
    p.factor = 4.0;
    p.attention_factor = 1.1386;
    variants.push_back(p);
  }
  return variants;
}

TEST(RopeTest, MatchesDoubleReferenceForEveryScaling) {
  Random rng;
  const int64_t tokens = 6, heads = 3, head_dim = 20, rotary_dim = 16;
  for (const RopeParams& p : AllRopeVariants(rotary_dim)) {
    const std::vector<float> x = rng.Normal(tokens * heads * head_dim);
    std::vector<int32_t> positions(tokens);
    for (int32_t& pos : positions) pos = rng.Int(0, 120);
    int64_t seq_len = 0;
    for (int32_t pos : positions) seq_len = std::max<int64_t>(seq_len, pos + 1);
    const std::vector<double> inv = ReferenceInverseFrequencies(p, seq_len);
    const double mult = p.scaling == RopeScalingKind::kYarn ? p.attention_factor : 1.0;
    std::vector<double> ref(x.begin(), x.end());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = (t * heads + h) * head_dim;
        for (int64_t i = 0; i < rotary_dim / 2; ++i) {
          const int64_t a = p.interleaved ? 2 * i : i;
          const int64_t b = p.interleaved ? 2 * i + 1 : i + rotary_dim / 2;
          const double c = std::cos(positions[t] * inv[i]) * mult;
          const double s = std::sin(positions[t] * inv[i]) * mult;
          ref[base + a] = x[base + a] * c - x[base + b] * s;
          ref[base + b] = x[base + b] * c + x[base + a] * s;
        }
      }
    }
    std::vector<float> out = Poisoned(x.size());
    Rope(x.data(), positions.data(), tokens, heads, head_dim, p, out.data());
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng)
        << "scaling " << static_cast<int>(p.scaling) << " interleaved " << p.interleaved;
    // In place gives the same result.
    std::vector<float> in_place = x;
    Rope(in_place.data(), positions.data(), tokens, heads, head_dim, p, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

TEST(RopeTest, PositionZeroIsIdentity) {
  Random rng;
  for (const RopeParams& p : AllRopeVariants(8)) {
    if (p.scaling == RopeScalingKind::kYarn) continue;  // cos/sin carry attention_factor
    const std::vector<float> x = rng.Normal(2 * 12);
    const int32_t positions[] = {0, 0};
    std::vector<float> out = Poisoned(x.size());
    Rope(x.data(), positions, 2, 1, 12, p, out.data());
    EXPECT_EQ(out, x);
  }
}

// Recovers the inverse frequencies from Rope itself: at position 1 a unit vector on the
// first element of pair i rotates to (cos f_i, sin f_i), so f_i = atan2(sin, cos).
std::vector<double> MeasuredInverseFrequencies(const RopeParams& p, int32_t max_position) {
  const int64_t dim = p.rotary_dim, half = dim / 2;
  std::vector<float> x(2 * half * dim, 0.0f);  // 2 * half tokens, 1 head
  std::vector<int32_t> positions(2 * half, 1);
  for (int64_t i = 0; i < half; ++i) {
    x[i * dim + i] = 1.0f;
    positions[half + i] = max_position;  // only sets seq_len for dynamic NTK
  }
  std::vector<float> out = Poisoned(x.size());
  Rope(x.data(), positions.data(), 2 * half, 1, dim, p, out.data());
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = std::atan2(out[i * dim + i + half], out[i * dim + i]);
  return inv;
}

// Expected values produced with transformers 5.17 (torch 2.11, CPU) by:
//   import torch
//   from transformers import LlamaConfig
//   from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
//   def inv(rope_parameters, head_dim=16, max_pos=64, seq_len=None):
//       cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=head_dim,
//                         max_position_embeddings=max_pos, rope_parameters=rope_parameters)
//       return ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](cfg, "cpu", seq_len=seq_len)
//   inv({"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
//   inv({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, seq_len=torch.tensor(100))
//   inv({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
//        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, max_pos=128)
//   inv({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
//        "original_max_position_embeddings": 64}, max_pos=256)   # attention_factor 1.1386...
TEST(RopeTest, InverseFrequenciesMatchTransformers) {
  struct Case {
    const char* name;
    RopeParams params;
    int32_t max_position;
    std::vector<double> expected;
  };
  RopeParams linear;
  linear.rotary_dim = 16;
  linear.scaling = RopeScalingKind::kLinear;
  linear.factor = 2.0;
  RopeParams dynamic = linear;
  dynamic.scaling = RopeScalingKind::kDynamic;
  dynamic.original_max_position = 64;
  RopeParams llama3 = linear;
  llama3.scaling = RopeScalingKind::kLlama3;
  llama3.theta = 500000.0;
  llama3.factor = 8.0;
  llama3.original_max_position = 64;
  RopeParams yarn = linear;
  yarn.scaling = RopeScalingKind::kYarn;
  yarn.factor = 4.0;
  yarn.original_max_position = 64;
  yarn.attention_factor = 1.138629436111989;
  const Case cases[] = {
      {"linear",
       linear,
       1,
       {0.5, 0.15811388194561005, 0.05000000074505806, 0.015811389312148094, 0.004999999888241291,
        0.0015811389312148094, 0.0005000000237487257, 0.00015811389312148094}},
      {"dynamic seq_len 100",
       dynamic,
       99,
       {1.0, 0.28394514322280884, 0.08062484115362167, 0.0228930301964283, 0.0065003652125597,
        0.0018457469996064901, 0.0005240908940322697, 0.00014881306560710073}},
      {"llama3",
       llama3,
       1,
       {1.0, 0.07940301299095154, 0.004700753837823868, 0.0009115831344388425,
        0.00017677668074611574, 3.428102354519069e-05, 6.647869668086059e-06,
        1.289173155782919e-06}},
      {"yarn",
       yarn,
       1,
       {1.0, 0.23717081546783447, 0.04999999701976776, 0.007905694656074047, 0.0024999999441206455,
        0.0007905694656074047, 0.0002500000118743628, 7.905694656074047e-05}},
  };
  for (const Case& c : cases) {
    const std::vector<double> measured = MeasuredInverseFrequencies(c.params, c.max_position);
    ASSERT_EQ(measured.size(), c.expected.size());
    for (size_t i = 0; i < measured.size(); ++i) {
      EXPECT_NEAR(measured[i], c.expected[i], 1e-6 * c.expected[i]) << c.name << " i " << i;
    }
  }
  // Below the trained context dynamic NTK leaves the default frequencies.
  const std::vector<double> unscaled = MeasuredInverseFrequencies(dynamic, 63);
  EXPECT_NEAR(unscaled[1], 1.0 / std::pow(10000.0, 2.0 / 16), 1e-7);
  // Yarn's cos and sin carry attention_factor.
  const int32_t position = 3;
  const std::vector<float> unit = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::vector<float> out(16);
  Rope(unit.data(), &position, 1, 1, 16, yarn, out.data());
  EXPECT_NEAR(std::hypot(out[0], out[8]), yarn.attention_factor, 1e-6);
}

// ---- KV cache ------------------------------------------------------------------------------

TEST(KVCacheWriteTest, WritesRowsAndRejectsOutOfRangePositions) {
  const int64_t batch = 2, capacity = 4, row = 3, seq = 2;
  std::vector<float> cache(batch * capacity * row, -1.0f);
  const std::vector<float> update = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
  const int32_t positions[] = {1, 2, 0, 3};
  ASSERT_TRUE(KVCacheWrite(cache.data(), batch, capacity, row, update.data(), seq, positions).ok());
  const std::vector<float> expected = {-1, -1, -1, 1,  1,  1,  2,  2,  2,  -1, -1, -1,
                                       3,  3,  3,  -1, -1, -1, -1, -1, -1, 4,  4,  4};
  EXPECT_EQ(cache, expected);
  const int32_t bad[] = {1, 2, 4, 3};
  const absl::Status status =
      KVCacheWrite(cache.data(), batch, capacity, row, update.data(), seq, bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(absl::StrContains(status.message(), "position 4")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "capacity 4")) << status;
  EXPECT_EQ(cache, expected);  // untouched on error
  const int32_t negative[] = {-1, 0, 0, 0};
  EXPECT_EQ(KVCacheWrite(cache.data(), batch, capacity, row, update.data(), seq, negative).code(),
            absl::StatusCode::kOutOfRange);
}

// ---- Attention -----------------------------------------------------------------------------

bool Visible(int64_t j, int32_t pos, int64_t kv_len, const AttentionParams& p) {
  if (j >= kv_len) return false;
  if (p.causal && j > pos) return false;
  if (p.sliding_window > 0 && !(j > pos - p.sliding_window)) return false;
  return true;
}

// Softmax over the visible keys of double scores (already scaled) into weights.
std::vector<double> ReferenceSoftmax(std::vector<double> scores, const std::vector<bool>& visible) {
  double max_score = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < scores.size(); ++j) {
    if (visible[j]) max_score = std::max(max_score, scores[j]);
  }
  double sum = 0;
  for (size_t j = 0; j < scores.size(); ++j) {
    scores[j] = visible[j] ? std::exp(scores[j] - max_score) : 0.0;
    sum += scores[j];
  }
  for (double& s : scores) s = sum > 0 ? s / sum : 0.0;
  return scores;
}

TEST(AttentionTest, MatchesDoubleReferenceWithGqaWindowAndSoftcap) {
  Random rng;
  ThreadPool pool(3);
  struct Case {
    int64_t seq, kv_len;
    int32_t first_position;
    AttentionParams params;
  };
  AttentionParams causal{.scale = 0.25};
  AttentionParams window{.scale = 0.25, .sliding_window = 3};
  AttentionParams softcap{.scale = 0.25, .logit_softcap = 5.0};
  AttentionParams bidirectional{.scale = 0.25, .causal = false};
  const Case cases[] = {
      {7, 7, 0, causal}, {7, 7, 0, window},  {1, 12, 9, window},  // decode, keys past 9
      {5, 9, 4, causal}, {6, 6, 0, softcap}, {4, 4, 0, bidirectional},
  };
  const int64_t batch = 2, heads = 6, kv_heads = 2, dim = 12, v_dim = 10;
  for (const Case& c : cases) {
    const std::vector<float> q = rng.Normal(batch * c.seq * heads * dim, 2.0);
    const std::vector<float> k = rng.Normal(batch * c.kv_len * kv_heads * dim, 2.0);
    const std::vector<float> v = rng.Normal(batch * c.kv_len * kv_heads * v_dim);
    std::vector<int32_t> positions(batch * c.seq);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t s = 0; s < c.seq; ++s) positions[b * c.seq + s] = c.first_position + s + b;
    }
    std::vector<double> ref(batch * c.seq * heads * v_dim, 0.0);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t s = 0; s < c.seq; ++s) {
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t kvh = h / (heads / kv_heads);
          std::vector<double> scores(c.kv_len);
          std::vector<bool> visible(c.kv_len);
          for (int64_t j = 0; j < c.kv_len; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < dim; ++d) {
              dot += double(q[((b * c.seq + s) * heads + h) * dim + d]) *
                     k[((b * c.kv_len + j) * kv_heads + kvh) * dim + d];
            }
            dot *= c.params.scale;
            if (c.params.logit_softcap > 0) {
              dot = c.params.logit_softcap * std::tanh(dot / c.params.logit_softcap);
            }
            scores[j] = dot;
            visible[j] = Visible(j, positions[b * c.seq + s], c.kv_len, c.params);
          }
          const std::vector<double> p = ReferenceSoftmax(scores, visible);
          for (int64_t j = 0; j < c.kv_len; ++j) {
            for (int64_t d = 0; d < v_dim; ++d) {
              ref[((b * c.seq + s) * heads + h) * v_dim + d] +=
                  p[j] * v[((b * c.kv_len + j) * kv_heads + kvh) * v_dim + d];
            }
          }
        }
      }
    }
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      std::vector<float> out = Poisoned(ref.size());
      Attention(q.data(), k.data(), v.data(), positions.data(), batch, c.seq, heads, c.kv_len,
                kv_heads, dim, v_dim, c.params, out.data(), p);
      EXPECT_CLOSE(out, ref, kFp32Tolerance, rng)
          << "seq " << c.seq << " kv_len " << c.kv_len << " window " << c.params.sliding_window;
    }
  }
}

// Masks on a tiny example: one head, dim 1, q = k = 1 so every visible key gets the same
// score and the output is the mean of the visible values; values are 10^j to read them off.
TEST(AttentionTest, CausalAndSlidingWindowMasks) {
  const int64_t len = 5;
  std::vector<float> q(len, 1.0f), k(len, 1.0f), v(len);
  for (int64_t j = 0; j < len; ++j) v[j] = static_cast<float>(std::pow(10.0, j));
  const int32_t positions[] = {0, 1, 2, 3, 4};
  std::vector<float> out(len);
  // Causal: query i sees keys 0..i.
  Attention(q.data(), k.data(), v.data(), positions, 1, len, 1, len, 1, 1, 1,
            AttentionParams{.scale = 1.0}, out.data(), nullptr);
  EXPECT_NEAR(out[0], 1.0, 1e-5);
  EXPECT_NEAR(out[2], 111.0 / 3, 1e-4);
  EXPECT_NEAR(out[4], 11111.0 / 5, 1e-2);
  // Window 2 (transformers: kv_idx > q_idx - window): query i sees keys i-1 and i.
  Attention(q.data(), k.data(), v.data(), positions, 1, len, 1, len, 1, 1, 1,
            AttentionParams{.scale = 1.0, .sliding_window = 2}, out.data(), nullptr);
  EXPECT_NEAR(out[0], 1.0, 1e-5);
  EXPECT_NEAR(out[1], 11.0 / 2, 1e-5);
  EXPECT_NEAR(out[3], 1100.0 / 2, 1e-3);
  EXPECT_NEAR(out[4], 11000.0 / 2, 1e-2);
  // A query with no visible key (position past a window that excludes everything cached)
  // gives zeros, not NaN.
  const int32_t far = 100;
  float lone = std::numeric_limits<float>::quiet_NaN();
  Attention(q.data(), k.data(), v.data(), &far, 1, 1, 1, len, 1, 1, 1,
            AttentionParams{.scale = 1.0, .sliding_window = 2}, &lone, nullptr);
  EXPECT_EQ(lone, 0.0f);
}

TEST(MLAAttentionTest, MatchesExpandedDoubleReference) {
  Random rng;
  ThreadPool pool(2);
  const int64_t batch = 2, seq = 3, heads = 4, kv_len = 7, nope = 8, rope = 4, rank = 16, v_dim = 6;
  for (AttentionParams params :
       {AttentionParams{.scale = 0.3}, AttentionParams{.scale = 0.3, .sliding_window = 3}}) {
    const std::vector<float> q_nope = rng.Normal(batch * seq * heads * nope);
    const std::vector<float> q_rope = rng.Normal(batch * seq * heads * rope);
    const std::vector<float> latent = rng.Normal(batch * kv_len * rank);
    const std::vector<float> key_rope = rng.Normal(batch * kv_len * rope);
    const std::vector<float> kv_b = rng.Normal(heads * (nope + v_dim) * rank, 0.5);
    std::vector<int32_t> positions(batch * seq);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < seq; ++s) positions[b * seq + s] = 3 + s + b;  // up to 6
    std::vector<double> ref(batch * seq * heads * v_dim, 0.0);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < heads; ++h) {
        // Expand keys and values per position, as transformers' kv_b_proj does.
        std::vector<double> k_nope(kv_len * nope, 0.0), value(kv_len * v_dim, 0.0);
        for (int64_t j = 0; j < kv_len; ++j) {
          for (int64_t r = 0; r < nope + v_dim; ++r) {
            double acc = 0;
            for (int64_t c = 0; c < rank; ++c) {
              acc += double(kv_b[(h * (nope + v_dim) + r) * rank + c]) *
                     latent[(b * kv_len + j) * rank + c];
            }
            if (r < nope) {
              k_nope[j * nope + r] = acc;
            } else {
              value[j * v_dim + r - nope] = acc;
            }
          }
        }
        for (int64_t s = 0; s < seq; ++s) {
          const int64_t item = (b * seq + s) * heads + h;
          std::vector<double> scores(kv_len);
          std::vector<bool> visible(kv_len);
          for (int64_t j = 0; j < kv_len; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < nope; ++d)
              dot += q_nope[item * nope + d] * k_nope[j * nope + d];
            for (int64_t d = 0; d < rope; ++d) {
              dot += double(q_rope[item * rope + d]) * key_rope[(b * kv_len + j) * rope + d];
            }
            scores[j] = dot * params.scale;
            visible[j] = Visible(j, positions[b * seq + s], kv_len, params);
          }
          const std::vector<double> p = ReferenceSoftmax(scores, visible);
          for (int64_t j = 0; j < kv_len; ++j)
            for (int64_t d = 0; d < v_dim; ++d)
              ref[item * v_dim + d] += p[j] * value[j * v_dim + d];
        }
      }
    }
    std::vector<float> out = Poisoned(ref.size());
    MLAAttention(q_nope.data(), q_rope.data(), latent.data(), key_rope.data(), kv_b.data(),
                 positions.data(), batch, seq, heads, kv_len, nope, rope, rank, v_dim, params,
                 out.data(), &pool);
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng) << "window " << params.sliding_window;
  }
}

// ---- Mixture of experts --------------------------------------------------------------------

struct RouterReference {
  std::vector<double> weights;
  std::vector<int32_t> indices;
};

// transformers' routers in double: Mixtral/Qwen2-MoE, DeepSeek-V2 group_limited_greedy,
// DeepSeek-V3 noaux_tc.
RouterReference ReferenceRouter(const std::vector<float>& x, int64_t tokens, int64_t hidden,
                                const std::vector<float>& gate, int64_t experts, const float* bias,
                                const RouterParams& p) {
  RouterReference ref;
  const int64_t group_size = experts / p.n_group;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> logits(experts), scores(experts);
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t i = 0; i < hidden; ++i)
        logits[e] += double(x[t * hidden + i]) * gate[e * hidden + i];
    }
    if (p.sigmoid) {
      for (int64_t e = 0; e < experts; ++e) scores[e] = 1 / (1 + std::exp(-logits[e]));
    } else {
      double sum = 0;
      for (int64_t e = 0; e < experts; ++e) sum += std::exp(logits[e]);
      for (int64_t e = 0; e < experts; ++e) scores[e] = std::exp(logits[e]) / sum;
    }
    std::vector<double> choice(experts);
    for (int64_t e = 0; e < experts; ++e) choice[e] = scores[e] + (bias ? bias[e] : 0.0);
    if (p.n_group > 1) {
      std::vector<std::pair<double, int64_t>> groups;
      for (int64_t g = 0; g < p.n_group; ++g) {
        std::vector<double> member(choice.begin() + g * group_size,
                                   choice.begin() + (g + 1) * group_size);
        std::sort(member.rbegin(), member.rend());
        groups.push_back({bias ? member[0] + member[1] : member[0], g});
      }
      std::sort(groups.rbegin(), groups.rend());
      std::vector<bool> kept(p.n_group, false);
      for (int64_t i = 0; i < p.topk_group; ++i) kept[groups[i].second] = true;
      for (int64_t e = 0; e < experts; ++e) {
        if (!kept[e / group_size]) choice[e] = bias ? -INFINITY : 0.0;
      }
    }
    std::vector<std::pair<double, int64_t>> ranked;
    for (int64_t e = 0; e < experts; ++e) ranked.push_back({choice[e], -e});
    std::sort(ranked.rbegin(), ranked.rend());
    double sum = 0;
    std::vector<double> w(p.top_k);
    for (int64_t i = 0; i < p.top_k; ++i) {
      const int64_t e = -ranked[i].second;
      ref.indices.push_back(static_cast<int32_t>(e));
      w[i] = bias ? scores[e] : choice[e];
      sum += w[i];
    }
    for (int64_t i = 0; i < p.top_k; ++i) {
      if (p.norm_topk_prob) w[i] /= sum + 1e-20;
      ref.weights.push_back(w[i] * p.routed_scaling_factor);
    }
  }
  return ref;
}

TEST(MoERouterTest, MatchesDoubleReferenceForEveryRouter) {
  Random rng;
  ThreadPool pool(2);
  const int64_t tokens = 9, hidden = 24, experts = 16;
  struct Case {
    const char* name;
    RouterParams params;
    bool with_bias;
  };
  const Case cases[] = {
      {"mixtral", RouterParams{.top_k = 2, .norm_topk_prob = true}, false},
      {"qwen2-moe", RouterParams{.top_k = 4}, false},
      {"deepseek-v2",
       RouterParams{.top_k = 3, .n_group = 4, .topk_group = 2, .routed_scaling_factor = 16.0},
       false},
      {"deepseek-v3",
       RouterParams{.top_k = 4,
                    .n_group = 4,
                    .topk_group = 2,
                    .sigmoid = true,
                    .norm_topk_prob = true,
                    .routed_scaling_factor = 2.5},
       true},
  };
  for (const Case& c : cases) {
    const std::vector<float> x = rng.Normal(tokens * hidden);
    const std::vector<float> gate = rng.Normal(experts * hidden, 0.5);
    const std::vector<float> bias = rng.Normal(experts, 0.3);
    const RouterReference ref = ReferenceRouter(x, tokens, hidden, gate, experts,
                                                c.with_bias ? bias.data() : nullptr, c.params);
    std::vector<float> weights = Poisoned(tokens * c.params.top_k);
    std::vector<int32_t> indices(tokens * c.params.top_k, -1);
    MoERouter(x.data(), tokens, hidden, gate.data(), experts, c.with_bias ? bias.data() : nullptr,
              c.params, weights.data(), indices.data(), &pool);
    EXPECT_EQ(indices, ref.indices) << c.name << " seed " << rng.seed();
    EXPECT_CLOSE(weights, ref.weights, kFp32Tolerance, rng) << c.name;
  }
}

// Four experts in two groups with hidden = 4 and gate = identity, so the router logits are x.
// Group 0 holds experts {0, 1}, group 1 {2, 3}.
TEST(MoERouterTest, GroupLimitingChangesTheChoice) {
  const std::vector<float> gate = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  float weights[2];
  int32_t indices[2];
  // DeepSeek-V2 (group score = max): group 0 max 3.0 beats group 1 max 2.9, so the second
  // expert is 0 (score of logit 0.0) although 2 and 3 (2.9, 2.8) rank higher overall.
  const std::vector<float> x = {3.0f, 0.0f, 2.9f, 2.8f};
  const RouterParams v2{.top_k = 2, .n_group = 2, .topk_group = 1};
  MoERouter(x.data(), 1, 4, gate.data(), 4, nullptr, v2, weights, indices, nullptr);
  EXPECT_EQ(indices[0], 0);
  EXPECT_EQ(indices[1], 1);
  const double denominator = std::exp(3.0) + 1 + std::exp(2.9) + std::exp(2.8);
  EXPECT_NEAR(weights[0], std::exp(3.0) / denominator, 1e-6);
  EXPECT_NEAR(weights[1], 1.0 / denominator, 1e-6);
  // Without group limiting the top two are experts 0 and 2.
  const RouterParams flat{.top_k = 2};
  MoERouter(x.data(), 1, 4, gate.data(), 4, nullptr, flat, weights, indices, nullptr);
  EXPECT_EQ(indices[0], 0);
  EXPECT_EQ(indices[1], 2);
  // DeepSeek-V3 (group score = top-2 sum of biased sigmoid scores): group 1 (2.9 + 2.8) beats
  // group 0 (3.0 + 0.0), so the choice is {2, 3} although expert 0 scores highest; a bias
  // on expert 3 puts it first, while the weights stay the unbiased scores.
  const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.1f};
  const RouterParams v3{.top_k = 2, .n_group = 2, .topk_group = 1, .sigmoid = true};
  MoERouter(x.data(), 1, 4, gate.data(), 4, bias.data(), v3, weights, indices, nullptr);
  EXPECT_EQ(indices[0], 3);
  EXPECT_EQ(indices[1], 2);
  EXPECT_NEAR(weights[0], 1 / (1 + std::exp(-2.8)), 1e-6);
  EXPECT_NEAR(weights[1], 1 / (1 + std::exp(-2.9)), 1e-6);
}

TEST(MoEExpertsTest, MatchesNaiveLoop) {
  Random rng;
  ThreadPool pool(3);
  const int64_t hidden = 20, inter = 13, experts = 5, top_k = 2;
  for (int64_t tokens : {1, 7}) {
    const std::vector<float> x = rng.Normal(tokens * hidden);
    const std::vector<float> gate = rng.Normal(experts * inter * hidden, 0.3);
    const std::vector<float> up = rng.Normal(experts * inter * hidden, 0.3);
    const std::vector<float> down = rng.Normal(experts * hidden * inter, 0.3);
    const std::vector<float> weights = rng.Normal(tokens * top_k);
    std::vector<int32_t> indices(tokens * top_k);
    for (int64_t t = 0; t < tokens; ++t) {
      indices[t * top_k] = rng.Int(0, experts - 1);
      indices[t * top_k + 1] = (indices[t * top_k] + rng.Int(1, experts - 1)) % experts;
    }
    std::vector<double> ref(tokens * hidden, 0.0);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t slot = 0; slot < top_k; ++slot) {
        const int64_t e = indices[t * top_k + slot];
        std::vector<double> h(inter);
        for (int64_t i = 0; i < inter; ++i) {
          double g = 0, u = 0;
          for (int64_t d = 0; d < hidden; ++d) {
            g += double(gate[(e * inter + i) * hidden + d]) * x[t * hidden + d];
            u += double(up[(e * inter + i) * hidden + d]) * x[t * hidden + d];
          }
          h[i] = g / (1 + std::exp(-g)) * u;
        }
        for (int64_t d = 0; d < hidden; ++d) {
          double acc = 0;
          for (int64_t i = 0; i < inter; ++i) acc += down[(e * hidden + d) * inter + i] * h[i];
          ref[t * hidden + d] += weights[t * top_k + slot] * acc;
        }
      }
    }
    std::vector<float> out = Poisoned(tokens * hidden);
    MoEExperts(x.data(), tokens, hidden, weights.data(), indices.data(), top_k, gate.data(),
               up.data(), down.data(), experts, inter, UnaryOp::kSilu, out.data(), &pool);
    EXPECT_CLOSE(out, ref, kFp32Tolerance, rng) << "tokens " << tokens;
  }
}

}  // namespace
}  // namespace tessel::cpu
