// Cross-checks every CUDA kernel of runtime/cuda against the CPU reference kernels.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Fresh random inputs each run (seed from the clock, or TESSEL_TEST_SEED; printed in every
// failure), outputs poisoned with NaN before each launch and checked fully written, error
// measured as ||gpu - cpu|| / ||cpu|| with NaN always failing. Tolerances (METHOD.md): 1e-2
// where operands or results are bf16, 1e-5 for f32 paths. Prints SKIPPED (no CUDA device)
// and exits 77 (ctest: skipped) on a machine without a CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cuda/attention_decode.cuh"
#include "runtime/cuda/attention_prefill.cuh"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/elementwise.cuh"
#include "runtime/cuda/embedding.cuh"
#include "runtime/cuda/l2_prefetch.cuh"
#include "runtime/cuda/rms_norm.cuh"
#include "runtime/cuda/rope.cuh"
#include "runtime/cuda/sampling.cuh"
#include "runtime/cuda/skinny_gemm.cuh"
#include "runtime/cuda/skinny_gemm_tma.cuh"
#include "runtime/cuda/swiglu.cuh"
#include "tests/gpu/gpu_test_util.cuh"

namespace tessel::cuda {
namespace {

using namespace gpu_test;  // NOLINT: the harness (seeds, buffers, checks)

// --- embedding ------------------------------------------------------------------------------

TEST(CudaKernels, Embedding) {
  SEED_TRACE();
  auto rng = Rng("Embedding");
  for (const auto& [hidden, bf16_table] : std::vector<std::pair<int64_t, bool>>{
           {4096, true}, {4096, false}, {1000, true}, {77, false}}) {
    const int64_t vocab = 1000, tokens = 37;
    std::vector<float> table = RoundBf16(RandomFloats(vocab * hidden, rng));
    std::vector<int32_t> ids(tokens);
    std::uniform_int_distribution<int32_t> id_dist(0, vocab - 1);
    for (int32_t& id : ids) id = id_dist(rng);
    std::vector<float> ref(tokens * hidden);
    ASSERT_TRUE(cpu::Embedding(ids.data(), tokens, table.data(), vocab, hidden, ref.data()).ok());
    DeviceBuffer<int32_t> ids_d(ids), bad_d(std::vector<int32_t>{-1});
    DeviceBuffer<bf16> table_bf16(ToBf16(table)), out_d(tokens * hidden);
    DeviceBuffer<float> table_f32(table);
    const void* table_ptr = bf16_table ? static_cast<const void*>(table_bf16.get())
                                       : static_cast<const void*>(table_f32.get());
    ASSERT_STATUS_OK(LaunchEmbedding(ids_d.get(), tokens, table_ptr,
                                     bf16_table ? DType::kBF16 : DType::kF32, vocab, hidden,
                                     out_d.get(), bad_d.get(), nullptr));
    EXPECT_CLOSE("embedding", ToF32(out_d.Download()), ref, 0.0);
    EXPECT_EQ(bad_d.Download()[0], -1);
    // An id outside the vocabulary is reported through bad_token.
    ids[5] = static_cast<int32_t>(vocab);
    ids_d.Upload(ids);
    ASSERT_STATUS_OK(LaunchEmbedding(ids_d.get(), tokens, table_ptr,
                                     bf16_table ? DType::kBF16 : DType::kF32, vocab, hidden,
                                     out_d.get(), bad_d.get(), nullptr));
    EXPECT_EQ(bad_d.Download()[0], 5);
  }
}

// --- rms_norm -------------------------------------------------------------------------------

TEST(CudaKernels, RmsNormAndAddRmsNorm) {
  SEED_TRACE();
  auto rng = Rng("RmsNorm");
  for (const auto& [rows, dim] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 4096}, {7, 4096}, {64, 4096}, {3, 8192}, {5, 1000}, {2, 77}, {1, 30000}}) {
    const float eps = 1e-5f;
    std::vector<float> x = RoundBf16(RandomFloats(rows * dim, rng, 3.0f));
    std::vector<float> residual = RoundBf16(RandomFloats(rows * dim, rng, 3.0f));
    std::vector<float> weight = RoundBf16(RandomFloats(dim, rng));
    DeviceBuffer<bf16> x_d(ToBf16(x)), res_d(ToBf16(residual)), w_d(ToBf16(weight));
    DeviceBuffer<bf16> out_d(rows * dim);
    std::vector<float> ref(rows * dim);

    cpu::RMSNorm(x.data(), weight.data(), rows, dim, eps, ref.data());
    ASSERT_STATUS_OK(LaunchRmsNorm(x_d.get(), w_d.get(), rows, dim, eps, out_d.get(), nullptr));
    EXPECT_CLOSE("rms_norm", ToF32(out_d.Download()), ref, kBf16Tolerance);

    std::vector<float> sum(rows * dim);
    for (int64_t i = 0; i < rows * dim; ++i) sum[i] = residual[i] + x[i];
    sum = RoundBf16(sum);
    cpu::RMSNorm(sum.data(), weight.data(), rows, dim, eps, ref.data());
    out_d.Poison();
    ASSERT_STATUS_OK(
        LaunchAddRmsNorm(res_d.get(), x_d.get(), w_d.get(), rows, dim, eps, out_d.get(), nullptr));
    EXPECT_CLOSE("add_rms_norm (residual)", ToF32(res_d.Download()), sum, 0.0);
    EXPECT_CLOSE("add_rms_norm", ToF32(out_d.Download()), ref, kBf16Tolerance);
  }
}

// --- rope -----------------------------------------------------------------------------------

struct RopeCase {
  std::string name;
  cpu::RopeParams params;
  int64_t head_dim;
  int32_t max_position;
};

std::vector<RopeCase> RopeCases() {
  std::vector<RopeCase> cases;
  cpu::RopeParams p;
  p.theta = 500000.0;
  p.rotary_dim = 128;
  cases.push_back({"default", p, 128, 8000});
  p.scaling = cpu::RopeScalingKind::kLinear;
  p.factor = 4.0;
  cases.push_back({"linear", p, 128, 8000});
  p = {};
  p.theta = 10000.0;
  p.rotary_dim = 128;
  p.scaling = cpu::RopeScalingKind::kDynamic;
  p.factor = 2.0;
  p.original_max_position = 2048;
  cases.push_back({"dynamic", p, 128, 6000});
  p = {};
  p.theta = 500000.0;
  p.rotary_dim = 128;
  p.scaling = cpu::RopeScalingKind::kLlama3;
  p.factor = 8.0;
  p.original_max_position = 8192;
  p.low_freq_factor = 1.0;
  p.high_freq_factor = 4.0;
  cases.push_back({"llama3", p, 128, 100000});
  p = {};
  p.theta = 10000.0;
  p.rotary_dim = 128;
  p.scaling = cpu::RopeScalingKind::kYarn;
  p.factor = 4.0;
  p.original_max_position = 4096;
  p.attention_factor = 0.1 * std::log(4.0) + 1.0;
  cases.push_back({"yarn", p, 128, 16000});
  p = {};
  p.theta = 10000.0;
  p.rotary_dim = 32;
  cases.push_back({"partial", p, 80, 3000});
  p = {};
  p.theta = 10000.0;
  p.rotary_dim = 64;
  p.interleaved = true;
  p.scaling = cpu::RopeScalingKind::kYarn;
  p.factor = 40.0;
  p.original_max_position = 4096;
  p.beta_fast = 32.0;
  p.beta_slow = 1.0;
  p.attention_factor = 0.1 * std::log(40.0) + 1.0;
  cases.push_back({"interleaved_yarn", p, 64, 50000});
  return cases;
}

TEST(CudaKernels, RopeAndCacheWriteAllVariants) {
  SEED_TRACE();
  auto rng = Rng("Rope");
  for (const RopeCase& c : RopeCases()) {
    SCOPED_TRACE(c.name);
    const int64_t batch = 2, seq = 19, q_heads = 32, kv_heads = 8, head_dim = c.head_dim;
    const int64_t capacity = c.max_position + 1, tokens = batch * seq;
    // Distinct positions per sequence, so each cache row is written once.
    std::vector<int32_t> positions(tokens);
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<int32_t> all(capacity);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      std::copy(all.begin(), all.begin() + seq, positions.begin() + b * seq);
    }
    positions[0] = c.max_position;  // the largest position appears
    if (std::find(positions.begin() + 1, positions.begin() + seq, c.max_position) !=
        positions.begin() + seq) {
      positions[0] = 0;
    }
    int64_t seq_len = 0;
    for (int32_t pos : positions) seq_len = std::max<int64_t>(seq_len, pos + 1);
    std::vector<float> q = RoundBf16(RandomFloats(tokens * q_heads * head_dim, rng));
    std::vector<float> k = RoundBf16(RandomFloats(tokens * kv_heads * head_dim, rng));
    std::vector<float> v = RoundBf16(RandomFloats(tokens * kv_heads * head_dim, rng));
    const int64_t row = kv_heads * head_dim;

    std::vector<float> q_ref(q.size()), k_rot(k.size());
    cpu::Rope(q.data(), positions.data(), tokens, q_heads, head_dim, c.params, q_ref.data());
    cpu::Rope(k.data(), positions.data(), tokens, kv_heads, head_dim, c.params, k_rot.data());

    DeviceBuffer<float> inv_freq(c.params.rotary_dim / 2);
    ASSERT_STATUS_OK(UploadRopeInverseFrequencies(c.params, seq_len, inv_freq.get()));
    DeviceBuffer<bf16> q_d(ToBf16(q)), k_d(ToBf16(k)), v_d(ToBf16(v));
    DeviceBuffer<bf16> k_cache(batch * capacity * row), v_cache(batch * capacity * row);
    DeviceBuffer<int32_t> pos_d(positions), bad_d(std::vector<int32_t>{-1});
    const RopeKernelParams kp = MakeRopeKernelParams(c.params);

    // Standalone rope, out of place (the pass-through features are copied).
    DeviceBuffer<bf16> rope_out(q.size());
    ASSERT_STATUS_OK(LaunchRope(q_d.get(), pos_d.get(), tokens, q_heads, head_dim,
                                inv_freq.get(), kp, rope_out.get(), nullptr));
    EXPECT_CLOSE("rope", ToF32(rope_out.Download()), q_ref, kBf16Tolerance);

    ASSERT_STATUS_OK(LaunchRopeAndCacheWrite(q_d.get(), q_d.get(), k_d.get(), v_d.get(), pos_d.get(), batch,
                                             seq, q_heads, kv_heads, head_dim, inv_freq.get(),
                                             kp, k_cache.get(), v_cache.get(), capacity,
                                             bad_d.get(), nullptr));
    EXPECT_CLOSE("rope+cache (q)", ToF32(q_d.Download()), q_ref, kBf16Tolerance);
    EXPECT_EQ(bad_d.Download()[0], -1);
    // The written cache rows against cpu::KVCacheWrite; every other row untouched (NaN).
    const std::vector<float> k_cache_h = ToF32(k_cache.Download());
    const std::vector<float> v_cache_h = ToF32(v_cache.Download());
    std::vector<float> k_got, k_want, v_got, v_want;
    std::vector<bool> written(batch * capacity, false);
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t cache_row = (t / seq) * capacity + positions[t];
      written[cache_row] = true;
      k_got.insert(k_got.end(), k_cache_h.begin() + cache_row * row,
                   k_cache_h.begin() + (cache_row + 1) * row);
      k_want.insert(k_want.end(), k_rot.begin() + t * row, k_rot.begin() + (t + 1) * row);
      v_got.insert(v_got.end(), v_cache_h.begin() + cache_row * row,
                   v_cache_h.begin() + (cache_row + 1) * row);
      v_want.insert(v_want.end(), v.begin() + t * row, v.begin() + (t + 1) * row);
    }
    EXPECT_CLOSE("rope+cache (k)", k_got, k_want, kBf16Tolerance);
    EXPECT_CLOSE("rope+cache (v)", v_got, v_want, 0.0);
    int64_t touched = 0;
    for (int64_t r = 0; r < batch * capacity; ++r) {
      if (!written[r] && !std::isnan(k_cache_h[r * row])) ++touched;
    }
    EXPECT_EQ(touched, 0) << "cache rows written that no position names";
  }
}

// --- swiglu and elementwise -----------------------------------------------------------------

TEST(CudaKernels, SwiGlu) {
  SEED_TRACE();
  auto rng = Rng("SwiGlu");
  for (const auto& [rows, cols, fused] : std::vector<std::tuple<int64_t, int64_t, bool>>{
           {1, 14336, false}, {5, 14336, true}, {3, 1001, false}, {2, 1001, true}}) {
    const int64_t stride = fused ? 2 * cols : cols;
    std::vector<float> gate_up = RoundBf16(RandomFloats(rows * stride * (fused ? 1 : 2), rng, 2.0f));
    DeviceBuffer<bf16> in_d(ToBf16(gate_up)), out_d(rows * cols);
    const bf16* gate = in_d.get();
    const bf16* up = fused ? in_d.get() + cols : in_d.get() + rows * cols;
    std::vector<float> ref(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        float g = gate_up[r * stride + c];
        const float u = fused ? gate_up[r * stride + cols + c] : gate_up[rows * cols + r * cols + c];
        cpu::Unary(cpu::UnaryOp::kSilu, &g, 1, &g);
        ref[r * cols + c] = g * u;
      }
    }
    ASSERT_STATUS_OK(LaunchSwiGlu(gate, up, stride, rows, cols, out_d.get(), nullptr));
    EXPECT_CLOSE("swiglu", ToF32(out_d.Download()), ref, kBf16Tolerance);
  }
}

TEST(CudaKernels, Elementwise) {
  SEED_TRACE();
  auto rng = Rng("Elementwise");
  for (int64_t n : {int64_t{4096 * 3}, int64_t{1001}}) {
    std::vector<float> a = RoundBf16(RandomFloats(n, rng)), b = RoundBf16(RandomFloats(n, rng));
    std::vector<float> ref(n);
    for (const auto& [op, cpu_op, name] :
         std::vector<std::tuple<ElementwiseOp, cpu::BinaryOp, std::string>>{
             {ElementwiseOp::kAdd, cpu::BinaryOp::kAdd, "add"},
             {ElementwiseOp::kMul, cpu::BinaryOp::kMul, "mul"}}) {
      cpu::Binary(cpu_op, a.data(), b.data(), n, ref.data());
      DeviceBuffer<float> a32(a), b32(b), out32(n);
      ASSERT_STATUS_OK(LaunchBinary(op, DType::kF32, a32.get(), b32.get(), n, out32.get(), nullptr));
      EXPECT_CLOSE(name + " f32", out32.Download(), ref, kF32Tolerance);
      DeviceBuffer<bf16> a16(ToBf16(a)), b16(ToBf16(b)), out16(n);
      ASSERT_STATUS_OK(LaunchBinary(op, DType::kBF16, a16.get(), b16.get(), n, out16.get(), nullptr));
      EXPECT_CLOSE(name + " bf16", ToF32(out16.Download()), ref, kBf16Tolerance);
    }
    cpu::Scale(a.data(), 0.125 * 3, n, ref.data());
    DeviceBuffer<float> a32(a), out32(n);
    ASSERT_STATUS_OK(LaunchScale(DType::kF32, a32.get(), 0.125 * 3, n, out32.get(), nullptr));
    EXPECT_CLOSE("scale f32", out32.Download(), ref, kF32Tolerance);
    DeviceBuffer<bf16> a16(ToBf16(a)), out16(n);
    ASSERT_STATUS_OK(LaunchScale(DType::kBF16, a16.get(), 0.125 * 3, n, out16.get(), nullptr));
    EXPECT_CLOSE("scale bf16", ToF32(out16.Download()), ref, kBf16Tolerance);
    // Casts: f32 -> bf16 rounds to nearest even (as the host conversion), bf16 -> f32 exact.
    std::vector<float> x = RandomFloats(n, rng);
    DeviceBuffer<float> x32(x), back32(n);
    DeviceBuffer<bf16> x16(n);
    ASSERT_STATUS_OK(LaunchCastF32ToBf16(x32.get(), n, x16.get(), nullptr));
    EXPECT_CLOSE("cast f32->bf16", ToF32(x16.Download()), RoundBf16(x), 0.0);
    ASSERT_STATUS_OK(LaunchCastBf16ToF32(x16.get(), n, back32.get(), nullptr));
    EXPECT_CLOSE("cast bf16->f32", back32.Download(), RoundBf16(x), 0.0);
  }
}

// --- gemm -----------------------------------------------------------------------------------

TEST(CudaKernels, CublasLtGemm) {
  SEED_TRACE();
  auto rng = Rng("Gemm");
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  cpu::ThreadPool pool;
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape& s : std::vector<Shape>{{1, 4096, 4096}, {1, 14336, 4096}, {3, 4096, 14336},
                                           {7, 1024, 4096}, {128, 512, 1024}, {33, 96, 80},
                                           {2048, 256, 512}}) {
    for (bool bias : {false, true}) {
      for (GemmOutput output : {GemmOutput::kBF16, GemmOutput::kF32}) {
        SCOPED_TRACE(absl::StrCat("M=", s.m, " N=", s.n, " K=", s.k, " bias=", bias,
                                  " f32=", output == GemmOutput::kF32));
        std::vector<float> a = RoundBf16(RandomFloats(s.m * s.k, rng));
        std::vector<float> w = RoundBf16(RandomFloats(s.n * s.k, rng, 0.05f));
        std::vector<float> b = RoundBf16(RandomFloats(s.n, rng));
        std::vector<float> ref(s.m * s.n);
        cpu::Matmul(a.data(), s.m, s.k, w.data(), s.n, true, bias ? b.data() : nullptr,
                    ref.data(), &pool);
        DeviceBuffer<bf16> a_d(ToBf16(a)), w_d(ToBf16(w)), b16(ToBf16(b)), c16(s.m * s.n);
        DeviceBuffer<float> b32(b), c32(s.m * s.n);
        const bool f32 = output == GemmOutput::kF32;
        const void* bias_ptr = !bias ? nullptr
                               : f32 ? static_cast<const void*>(b32.get())
                                     : static_cast<const void*>(b16.get());
        void* c_ptr = f32 ? static_cast<void*>(c32.get()) : static_cast<void*>(c16.get());
        ASSERT_STATUS_OK((*gemm)->Run(a_d.get(), w_d.get(), bias_ptr, c_ptr, s.m, s.n, s.k,
                                      output, nullptr));
        const std::vector<float> got = f32 ? c32.Download() : ToF32(c16.Download());
        // bf16 operands: 1e-2 either way; the f32 output holds the exact products' sum up to
        // f32 accumulation order.
        EXPECT_CLOSE(f32 ? "gemm (f32 out)" : "gemm (bf16 out)", got, ref,
                     f32 ? 1e-5 : kBf16Tolerance);
      }
    }
  }
  // A second call with another M of the same bucket reuses the plan.
  const size_t plans = (*gemm)->cached_plans();
  DeviceBuffer<bf16> a_d(3 * 512), w_d(256 * 512), c_d(3 * 256);
  ASSERT_STATUS_OK((*gemm)->Run(a_d.get(), w_d.get(), nullptr, c_d.get(), 4, 256, 512,
                                GemmOutput::kBF16, nullptr) );
  EXPECT_EQ((*gemm)->cached_plans(), plans + 1);
  ASSERT_STATUS_OK((*gemm)->Run(a_d.get(), w_d.get(), nullptr, c_d.get(), 3, 256, 512,
                                GemmOutput::kBF16, nullptr));
  EXPECT_EQ((*gemm)->cached_plans(), plans + 1);
}

// Every epilogue of the skinny GEMM against cpu::Matmul (+ the unfused ops), at decode shapes
// (m = 1..16, both n-tile variants and both occupancy variants), ragged n, and q/k/v-sized
// triples with bias.
TEST(CudaKernels, SkinnyGemm) {
  SEED_TRACE();
  auto rng = Rng("SkinnyGemm");
  cpu::ThreadPool pool;
  struct Shape {
    int64_t m, k;
    std::vector<int64_t> n;
  };
  const auto silu = [](float g) { return g / (1.0f + std::exp(-g)); };
  for (const Shape& s : std::vector<Shape>{{1, 4096, {4096, 1024, 1024}},
                                           {16, 4096, {4096}},
                                           {5, 14336, {4096}},
                                           {9, 64, {40}},
                                           {8, 128, {512, 24, 8}},
                                           {12, 256, {520, 40, 8}},
                                           {2, 1024, {1000}},
                                           {3, 320, {200, 64, 72}},
                                           // n not a multiple of 8: the epilogue's
                                           // element-wise stores.
                                           {5, 128, {100, 36, 12}},
                                           // Above 16 rows: the TMA kernel only (x 32 or 64
                                           // rows wide).
                                           {64, 4096, {4096}},
                                           {33, 320, {200, 64, 72}},
                                           {24, 1024, {1000}},
                                           {48, 256, {520, 40, 8}},
                                           {20, 192, {1001, 12, 4}},
                                           // Many waves (split 2: 2188 CTAs): lm_head's
                                           // three-CTA-per-SM rings.
                                           {16, 256, {70016}}}) {
    // The shape's weights, drawn once per run and shared by its epilogues and variants (drawn
    // for each launch, the 58M-element ones took most of the test's 176 s on the H100
    // machine); x, the norm weight, the biases and the residual are drawn for every launch.
    struct Weight {
      std::vector<float> host;
      std::unique_ptr<DeviceBuffer<bf16>> device;
    };
    std::map<std::pair<int, int64_t>, Weight> shape_weights;  // (weight index, n)
    auto weight = [&](int index, int64_t n) -> const Weight& {
      Weight& w = shape_weights[{index, n}];
      if (w.device == nullptr) {
        w.host = RoundBf16(RandomFloats(n * s.k, rng, 0.05f));
        w.device = std::make_unique<DeviceBuffer<bf16>>(ToBf16(w.host));
      }
      return w;
    };
    for (SkinnyEpilogue epilogue :
         {SkinnyEpilogue::kStore, SkinnyEpilogue::kAddResidual, SkinnyEpilogue::kSwiGlu}) {
      // Variants 1 and 2: the register kernel sized for that many CTAs per SM; 3, 4, 5, 6, 7:
      // the TMA kernel (sm_90 only) with each tile's k split over 1, 2, 4, 8, 3 CTAs of a
      // cluster (3: o_proj's default, k not split evenly).
      for (int variant : {1, 2, 3, 4, 5, 6, 7}) {
        if (variant >= 3 && !SkinnyGemmTmaAvailable()) {
          static bool said = false;
          if (!std::exchange(said, true)) std::printf("SKIPPED (no sm_90 device): TMA skinny GEMM\n");
          continue;
        }
        if (variant < 3 && s.m > kSkinnyMaxRows) continue;
        const int occupancy = variant < 3 ? variant : 0;
        const int weights = epilogue == SkinnyEpilogue::kStore    ? static_cast<int>(s.n.size())
                            : epilogue == SkinnyEpilogue::kSwiGlu ? 2
                                                                  : 1;
        const bool bias = epilogue == SkinnyEpilogue::kStore && weights == 3;
        const bool f32 = epilogue == SkinnyEpilogue::kStore && weights == 1;
        // The RMSNorm prologue on the occupancy-2 runs (k within its limit; beyond it the
        // launch is refused, checked below): the reference normalizes first.
        const bool norm = variant >= 2 && s.k <= kSkinnyMaxNormK;
        SCOPED_TRACE(absl::StrCat("m=", s.m, " k=", s.k, " n0=", s.n[0], " weights=", weights,
                                  " epilogue=", static_cast<int>(epilogue),
                                  " variant=", variant, " norm=", norm));
        std::vector<float> x_in = RoundBf16(RandomFloats(s.m * s.k, rng, 3.0f));
        std::vector<float> norm_w = RoundBf16(RandomFloats(s.k, rng, 0.5f));
        std::vector<float> x = x_in;
        if (norm) {
          cpu::RMSNorm(x_in.data(), norm_w.data(), s.m, s.k, 1e-5, x.data());
          x = RoundBf16(x);
        }
        DeviceBuffer<bf16> norm_d(ToBf16(norm_w));
        std::vector<std::vector<float>> b(weights), ref(weights);
        std::vector<std::unique_ptr<DeviceBuffer<bf16>>> b_d, out16;
        std::vector<std::unique_ptr<DeviceBuffer<float>>> out32;
        SkinnyGemmArgs args;
        DeviceBuffer<bf16> x_d(ToBf16(norm ? x_in : x));
        args.x = x_d.get();
        if (norm) {
          args.norm_weight = norm_d.get();
          args.norm_eps = 1e-5f;
        }
        args.m = s.m;
        args.k = s.k;
        args.weights = weights;
        args.epilogue = epilogue;
        args.out_f32 = f32;
        args.occupancy = occupancy;
        args.kernel = variant >= 3 ? SkinnyKernel::kTma : SkinnyKernel::kRegisters;
        args.split = variant == 7 ? 3 : variant >= 3 ? 1 << (variant - 3) : 0;
        for (int i = 0; i < weights; ++i) {
          const int64_t n = epilogue == SkinnyEpilogue::kSwiGlu ? s.n[0] : s.n[i];
          const Weight& w = weight(i, n);
          b[i] = RoundBf16(RandomFloats(n, rng));
          ref[i].resize(s.m * n);
          cpu::Matmul(x.data(), s.m, s.k, w.host.data(), n, true, bias ? b[i].data() : nullptr,
                      ref[i].data(), &pool);
          b_d.push_back(std::make_unique<DeviceBuffer<bf16>>(ToBf16(b[i])));
          out16.push_back(std::make_unique<DeviceBuffer<bf16>>(s.m * n));
          out32.push_back(std::make_unique<DeviceBuffer<float>>(s.m * n));
          args.w[i] = w.device->get();
          args.bias[i] = bias ? b_d.back()->get() : nullptr;
          args.n[i] = n;
          args.out[i] = f32 ? static_cast<void*>(out32.back()->get())
                            : static_cast<void*>(out16.back()->get());
        }
        std::vector<float> residual;
        if (epilogue == SkinnyEpilogue::kAddResidual) {
          // In place, as the executor runs it: out_0 is the residual stream.
          residual = RoundBf16(RandomFloats(s.m * s.n[0], rng));
          out16[0]->Upload(ToBf16(residual));
          args.residual = out16[0]->get();
          for (size_t j = 0; j < ref[0].size(); ++j) ref[0][j] += residual[j];
        }
        if (epilogue == SkinnyEpilogue::kSwiGlu) {
          for (size_t j = 0; j < ref[0].size(); ++j) ref[0][j] = silu(ref[0][j]) * ref[1][j];
        }
        ASSERT_STATUS_OK(LaunchSkinnyGemm(args, nullptr));
        if (variant >= 4 && epilogue != SkinnyEpilogue::kAddResidual && !f32) {
          // The cluster's partial sums are added in a fixed order: a relaunch gives the
          // same bits.
          const int outputs = epilogue == SkinnyEpilogue::kStore ? weights : 1;
          std::vector<std::vector<uint16_t>> first;
          for (int i = 0; i < outputs; ++i) first.push_back(AsBits(out16[i]->Download()));
          ASSERT_STATUS_OK(LaunchSkinnyGemm(args, nullptr));
          for (int i = 0; i < outputs; ++i) {
            EXPECT_EQ(AsBits(out16[i]->Download()), first[i]) << "relaunch, output " << i;
          }
        }
        const int outputs = epilogue == SkinnyEpilogue::kStore ? weights : 1;
        for (int i = 0; i < outputs; ++i) {
          const std::vector<float> got = f32 ? out32[i]->Download() : ToF32(out16[i]->Download());
          // f32 output without the norm: exact products, f32 sums, whose rounding error grows
          // as sqrt(k) (wgmma measured 1.6e-5 at k = 14336). With the norm the reference
          // rounds RMSNorm(x) to bf16 and the kernel rounds x * weight: bf16 terms.
          const double f32_tolerance = std::max(1e-5, 3e-7 * std::sqrt(double(s.k)));
          EXPECT_CLOSE(f32 ? (norm ? "skinny gemm (f32 out, norm)" : "skinny gemm (f32 out)")
                           : "skinny gemm (bf16 out)",
                       got, ref[i], f32 && !norm ? f32_tolerance : kBf16Tolerance);
        }
      }
    }
  }
  // Shapes it refuses rather than computing wrongly.
  SkinnyGemmArgs bad;
  bad.m = kSkinnyTmaMaxRows + 1;
  bad.k = 64;
  EXPECT_FALSE(LaunchSkinnyGemm(bad, nullptr).ok());
  // The register kernel asked for more rows than it holds.
  DeviceBuffer<bf16> rows(64 * 64);
  SkinnyGemmArgs tall;
  tall.x = rows.get();
  tall.m = kSkinnyMaxRows + 1;
  tall.k = 64;
  tall.w[0] = rows.get();
  tall.n[0] = 8;
  tall.out[0] = rows.get() + 32 * 64;
  tall.kernel = SkinnyKernel::kRegisters;
  EXPECT_EQ(LaunchSkinnyGemm(tall, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad.m = 1;
  bad.k = 100;
  EXPECT_FALSE(LaunchSkinnyGemm(bad, nullptr).ok());
  // A split past the cluster limit (or negative) is refused, not launched.
  for (int split : {-1, kSkinnyMaxSplit + 1}) {
    SkinnyGemmArgs wide;
    wide.m = 1;
    wide.k = 64;
    wide.split = split;
    EXPECT_EQ(LaunchSkinnyGemm(wide, nullptr).code(), absl::StatusCode::kInvalidArgument);
  }
  // The RMSNorm prologue past its k limit (weight staged in shared memory).
  DeviceBuffer<bf16> big(kSkinnyMaxNormK + 64);
  SkinnyGemmArgs wide;
  wide.x = big.get();
  wide.m = 1;
  wide.k = kSkinnyMaxNormK + 64;
  wide.weights = 1;
  wide.w[0] = big.get();
  wide.n[0] = 1;
  wide.out[0] = big.get();
  wide.norm_weight = big.get();
  const absl::Status status = LaunchSkinnyGemm(wide, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("RMSNorm prologue"), std::string_view::npos) << status;
}

// --- attention ------------------------------------------------------------------------------

// The kernels' form of the CPU reference's options.
AttentionKernelParams KernelParams(const cpu::AttentionParams& params) {
  AttentionKernelParams kp;
  kp.scale = static_cast<float>(params.scale);
  kp.causal = params.causal;
  kp.sliding_window = params.sliding_window;
  kp.logit_softcap = static_cast<float>(params.logit_softcap);
  return kp;
}

struct AttentionCase {
  std::string name;
  int64_t batch, seq, heads, kv_heads, head_dim, kv_len, first_position;
  int64_t window;
  double softcap;
};

TEST(CudaKernels, AttentionPrefill) {
  SEED_TRACE();
  auto rng = Rng("AttentionPrefill");
  cpu::ThreadPool pool;
  for (const AttentionCase& c : std::vector<AttentionCase>{
           {"llama3-8b", 1, 300, 32, 8, 128, 300, 0, 0, 0.0},
           {"qwen2-window-softcap", 2, 77, 14, 2, 64, 77, 0, 32, 30.0},
           {"chunked-prefill-cache", 2, 40, 8, 8, 256, 160, 100, 0, 0.0},
           {"chunked-window", 3, 65, 16, 4, 128, 512, 200, 100, 0.0}}) {
    SCOPED_TRACE(c.name);
    const int64_t q_size = c.batch * c.seq * c.heads * c.head_dim;
    const int64_t kv_size = c.batch * c.kv_len * c.kv_heads * c.head_dim;
    std::vector<float> q = RoundBf16(RandomFloats(q_size, rng));
    std::vector<float> k = RoundBf16(RandomFloats(kv_size, rng));
    std::vector<float> v = RoundBf16(RandomFloats(kv_size, rng));
    std::vector<int32_t> positions(c.batch * c.seq);
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t s = 0; s < c.seq; ++s)
        positions[b * c.seq + s] = static_cast<int32_t>(c.first_position + s);
    const int64_t last = c.first_position + c.seq - 1;
    // Cache rows past the last position hold NaN: they must never reach the result.
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t j = last + 1; j < c.kv_len; ++j)
        for (int64_t i = 0; i < c.kv_heads * c.head_dim; ++i) {
          k[(b * c.kv_len + j) * c.kv_heads * c.head_dim + i] = NAN;
          v[(b * c.kv_len + j) * c.kv_heads * c.head_dim + i] = NAN;
        }
    cpu::AttentionParams params;
    params.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    params.sliding_window = c.window;
    params.logit_softcap = c.softcap;
    std::vector<float> ref(q_size);
    cpu::Attention(q.data(), k.data(), v.data(), positions.data(), c.batch, c.seq, c.heads,
                   c.kv_len, c.kv_heads, c.head_dim, c.head_dim, params, ref.data(), &pool);
    DeviceBuffer<bf16> q_d(ToBf16(q)), k_d(ToBf16(k)), v_d(ToBf16(v)), out_d(q_size);
    DeviceBuffer<int32_t> pos_d(positions);
    const AttentionKernelParams kp = KernelParams(params);
    ASSERT_STATUS_OK(LaunchAttentionPrefill(q_d.get(), k_d.get(), v_d.get(), pos_d.get(), c.batch,
                                            c.seq, c.heads, c.kv_len, c.kv_heads, c.head_dim, kp,
                                            out_d.get(), nullptr));
    EXPECT_CLOSE("attention_prefill", ToF32(out_d.Download()), ref, kBf16Tolerance);
  }
}

// Shapes chosen to break the tensor-core kernel's index math loudly: every head_dim (64, 128,
// 256), sequences shorter than, equal to and not a multiple of the tiles (1, 17, 64, 100, 300,
// 2048), GQA groups 4, 1 and 6, KV caches larger than needed (NaN past the written rows),
// chunked prefill (positions from an offset), batches at different offsets, sliding windows,
// soft caps, non-causal attention, shuffled positions and rows with no visible key. Each row
// is also checked on its own (a wrong mask on one diagonal element would hide in the global
// norm of a 2048-token case).
struct PrefillCase {
  std::string name;
  int64_t batch, seq, heads, kv_heads, head_dim, kv_len;
  std::vector<int64_t> first_positions;  // per batch entry (the last repeats)
  int64_t window = 0;
  double softcap = 0.0;
  bool causal = true;
  bool shuffle = false;       // positions a random permutation within each batch entry
  double scale_factor = 1.0;  // scale = scale_factor / sqrt(head_dim)
};

// Runs every case (head_dim <= max_head_dim) through one tile shape of the prefill kernel.
void CheckPrefillShapes(AttentionPrefillTiles tiles, const std::string& tiles_name,
                        int64_t max_head_dim) {
  SEED_TRACE();
  SCOPED_TRACE(tiles_name);
  // The same inputs for every tile shape (the seed does not depend on the shape).
  auto rng = Rng("AttentionPrefillShapes");
  cpu::ThreadPool pool;
  constexpr double kRowTolerance = 2e-2;
  std::vector<PrefillCase> cases = {
      {"d64-seq1-gqa4", 1, 1, 32, 8, 64, 1, {0}},
      {"d128-seq1-gqa4-cache", 2, 1, 32, 8, 128, 64, {0, 40}},
      {"d256-seq1-group6", 1, 1, 12, 2, 256, 1, {0}},
      {"d64-seq17-mha", 1, 17, 8, 8, 64, 17, {0}},
      {"d128-seq17-group6", 1, 17, 12, 2, 128, 17, {0}},
      {"d256-seq17-gqa4", 1, 17, 32, 8, 256, 17, {0}},
      {"d64-seq64-gqa4", 1, 64, 32, 8, 64, 64, {0}},
      {"d128-seq64-mha", 1, 64, 8, 8, 128, 64, {0}},
      {"d256-seq64-group6", 1, 64, 12, 2, 256, 64, {0}},
      {"d64-seq100-group6-cache", 1, 100, 12, 2, 64, 256, {0}},
      {"d128-seq100-gqa4-cache", 1, 100, 32, 8, 128, 256, {0}},
      {"d256-seq100-mha-cache", 1, 100, 8, 8, 256, 256, {0}},
      {"d64-seq300-gqa4", 1, 300, 32, 8, 64, 300, {0}},
      {"d128-seq300-group6-cache", 1, 300, 12, 2, 128, 384, {0}},
      {"d256-seq300-group6", 1, 300, 12, 2, 256, 320, {0}},
      {"d128-seq2048-gqa4", 1, 2048, 32, 8, 128, 2048, {0}},
      // Chunked prefill: 37 queries at positions 50..86, the cache filled before.
      {"d64-chunk37-at50", 1, 37, 32, 8, 64, 128, {50}},
      {"d128-chunk37-at50", 1, 37, 32, 8, 128, 128, {50}},
      {"d256-chunk37-at50", 1, 37, 32, 8, 256, 128, {50}},
      {"d128-chunk200-at333", 1, 200, 8, 2, 128, 1024, {333}},
      // Sliding window 16.
      {"d64-window16-chunk", 1, 37, 12, 2, 64, 128, {50}, 16},
      {"d128-window16", 1, 100, 8, 8, 128, 100, {0}, 16},
      {"d128-window16-long", 1, 300, 8, 2, 128, 300, {0}, 16},
      {"d256-window16", 1, 150, 8, 2, 256, 160, {0}, 16},
      // Batch 2 at different offsets.
      {"d64-batch2-offsets", 2, 100, 12, 2, 64, 256, {7, 130}},
      {"d128-batch2-offsets", 2, 37, 32, 8, 128, 192, {0, 90}},
      {"d256-batch2-offsets", 2, 37, 8, 8, 256, 128, {50, 0}},
      // Soft cap (Gemma 2) with a window; a peaky softmax; a negative scale.
      {"d128-softcap30-window32", 2, 77, 12, 2, 128, 77, {0}, 32, 30.0},
      {"d256-softcap50", 1, 65, 8, 2, 256, 65, {0}, 0, 50.0},
      {"d128-peaky-scale4", 1, 130, 8, 2, 128, 130, {0}, 0, 0.0, true, false, 4.0},
      {"d64-negative-scale", 1, 70, 8, 8, 64, 70, {0}, 0, 0.0, true, false, -1.0},
      // Non-causal: every key below kv_len is visible (window still applies).
      {"d128-bidirectional", 1, 50, 8, 8, 128, 80, {30}, 0, 0.0, false},
      {"d64-bidirectional-window16", 1, 65, 8, 2, 64, 100, {10}, 16, 0.0, false},
      // Positions in any order (per-element masks, per-tile key ranges).
      {"d128-shuffled", 2, 200, 8, 2, 128, 256, {0, 40}, 0, 0.0, true, true},
      {"d64-shuffled-window16", 1, 150, 8, 8, 64, 160, {5}, 16, 0.0, true, true},
      {"d256-shuffled", 1, 140, 4, 1, 256, 140, {0}, 0, 0.0, true, true},
      // Batch entry 1 at positions 60..76 with kv_len 64 and window 8: positions 71..76 see
      // no key at all (zeros).
      {"d128-no-visible-keys", 2, 17, 8, 2, 128, 64, {0, 60}, 8},
      {"d64-no-visible-keys", 1, 20, 8, 8, 64, 16, {20}, 4},
  };
  for (const PrefillCase& c : cases) {
    SCOPED_TRACE(c.name);
    if (c.head_dim > max_head_dim) continue;
    const int64_t q_size = c.batch * c.seq * c.heads * c.head_dim;
    const int64_t row = c.kv_heads * c.head_dim;
    const int64_t kv_size = c.batch * c.kv_len * row;
    std::vector<float> q = RoundBf16(RandomFloats(q_size, rng));
    std::vector<float> k = RoundBf16(RandomFloats(kv_size, rng));
    std::vector<float> v = RoundBf16(RandomFloats(kv_size, rng));
    std::vector<int32_t> positions(c.batch * c.seq);
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t first =
          c.first_positions[std::min<size_t>(b, c.first_positions.size() - 1)];
      for (int64_t s = 0; s < c.seq; ++s)
        positions[b * c.seq + s] = static_cast<int32_t>(first + s);
      if (c.shuffle) {
        std::shuffle(positions.begin() + b * c.seq, positions.begin() + (b + 1) * c.seq, rng);
      }
      // Causal: cache rows past the batch entry's last position hold NaN; they must never
      // reach the result.
      if (c.causal) {
        for (int64_t j = first + c.seq; j < c.kv_len; ++j)
          for (int64_t i = 0; i < row; ++i) {
            k[(b * c.kv_len + j) * row + i] = NAN;
            v[(b * c.kv_len + j) * row + i] = NAN;
          }
      }
    }
    cpu::AttentionParams params;
    params.scale = c.scale_factor / std::sqrt(static_cast<double>(c.head_dim));
    params.causal = c.causal;
    params.sliding_window = c.window;
    params.logit_softcap = c.softcap;
    std::vector<float> ref(q_size);
    cpu::Attention(q.data(), k.data(), v.data(), positions.data(), c.batch, c.seq, c.heads,
                   c.kv_len, c.kv_heads, c.head_dim, c.head_dim, params, ref.data(), &pool);
    DeviceBuffer<bf16> q_d(ToBf16(q)), k_d(ToBf16(k)), v_d(ToBf16(v)), out_d(q_size);
    DeviceBuffer<int32_t> pos_d(positions);
    const AttentionKernelParams kp = KernelParams(params);
    {
      out_d.Poison();
      ASSERT_STATUS_OK(LaunchAttentionPrefillWithTiles(
          q_d.get(), k_d.get(), v_d.get(), pos_d.get(), c.batch, c.seq, c.heads, c.kv_len,
          c.kv_heads, c.head_dim, kp, tiles, out_d.get(), nullptr));
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      ASSERT_CUDA_OK(cudaGetLastError());
      const std::vector<float> got = ToF32(out_d.Download());
      EXPECT_CLOSE("attention_prefill " + tiles_name, got, ref, kBf16Tolerance);

      // Row by row: a query with no visible key must be exactly zero, any other within
      // kRowTolerance of its own norm.
      int bad_rows = 0, empty_rows = 0;
      double worst_row = 0.0;
      for (int64_t bs = 0; bs < c.batch * c.seq; ++bs) {
        const int64_t position = positions[bs];
        const int64_t hi = c.causal ? std::min<int64_t>(position, c.kv_len - 1) : c.kv_len - 1;
        const int64_t lo = c.window > 0 ? std::max<int64_t>(0, position - c.window + 1) : 0;
        for (int64_t h = 0; h < c.heads; ++h) {
          const int64_t base = (bs * c.heads + h) * c.head_dim;
          double diff = 0.0, norm = 0.0;
          bool nonzero = false;
          for (int64_t d = 0; d < c.head_dim; ++d) {
            const double g = got[base + d], r = ref[base + d];
            if (!std::isfinite(g)) diff = INFINITY;
            diff += (g - r) * (g - r);
            norm += r * r;
            nonzero |= g != 0.0;
          }
          double error;
          if (hi < lo) {
            ++empty_rows;
            error = nonzero ? INFINITY : 0.0;
          } else {
            error = norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
          }
          worst_row = std::max(worst_row, error);
          if (!(error <= kRowTolerance) && ++bad_rows <= 5) {
            ADD_FAILURE() << "row b=" << bs / c.seq << " s=" << bs % c.seq << " h=" << h
                          << " position " << position << " (visible keys " << lo << ".."
                          << hi << "): relative error " << error;
          }
        }
      }
      Record("attention_prefill " + tiles_name + " (worst row)", worst_row);
      EXPECT_EQ(bad_rows, 0) << bad_rows << " rows over " << kRowTolerance;
      if (c.name.find("no-visible") != std::string::npos) EXPECT_GT(empty_rows, 0);
    }
  }
}

// One test per tile shape (gtest filters can pick them); the wgmma shapes run last in this
// file so that a fault there cannot poison the CUDA context of the other kernels' tests.
TEST(CudaKernels, AttentionPrefillShapesRows16) {
  CheckPrefillShapes(AttentionPrefillTiles::kRows16PerWarp, "rows16", 256);
}
TEST(CudaKernels, AttentionPrefillShapesRows32) {
  CheckPrefillShapes(AttentionPrefillTiles::kRows32PerWarp, "rows32", 128);
}

struct DecodeCase {
  std::string name;
  std::vector<int32_t> positions;
  int64_t heads, kv_heads, head_dim, capacity, window;
  int expect_splits;         // 1: one split, 2: more than one
  float softcap = 0.0f;
  bool causal = true;
  int64_t forced_splits = 0;  // > 0: a hand-made plan of that many splits
};

// Group sizes 1..32 (32: two head groups), head_dim 64/128/256, one split and many (more
// splits than visible 16-key tiles included), visible ranges off the tile grid, sliding
// window, soft cap, non-causal, per-sequence positions (0 included). Cache rows outside each
// sequence's visible range are NaN: reading one fails the check. Every case launches three
// times on one workspace (zeroed once, as the executor does): a second query checks that the
// first launch reset the merge counters, a third launch of the same inputs must reproduce the
// second bit for bit (the split merge does not depend on which block finishes last).
TEST(CudaKernels, AttentionDecode) {
  SEED_TRACE();
  auto rng = Rng("AttentionDecode");
  cpu::ThreadPool pool;
  std::vector<int32_t> many(64);
  for (int32_t& p : many) p = static_cast<int32_t>(rng() % 300);
  many[5] = 0;
  std::vector<int32_t> mixed16(16);
  for (int32_t& p : mixed16) p = static_cast<int32_t>(rng() % 512);
  mixed16[0] = 0;
  mixed16[1] = 127;
  mixed16[2] = 511;
  for (const DecodeCase& c : std::vector<DecodeCase>{
           {"llama3-8b-8k", {0, 900, 8191}, 32, 8, 128, 8192, 0, 2},
           {"llama3-8b-long-batch1", {5000}, 32, 8, 128, 8192, 0, 2},
           {"llama3-8b-b1-128-keys", {127}, 32, 8, 128, 512, 0, 1},
           {"llama3-8b-b16-short", mixed16, 32, 8, 128, 512, 0, 1},
           {"qwen2-group7-window", {5, 3000, 4095}, 28, 4, 64, 4096, 256, 2, 0.0f, true, 4},
           {"group7-head128", {700, 33}, 28, 4, 128, 1024, 0, 2},
           {"group16-head256", {17, 1000}, 16, 1, 256, 1024, 0, 2},
           {"batch64-one-split", many, 32, 8, 128, 300, 0, 1},
           {"mha-group1", {1, 77, 700}, 16, 16, 128, 1024, 0, 2},
           {"group2-head64", {3, 1500}, 4, 2, 64, 2048, 0, 2},
           {"group8-softcap", {1500, 40}, 64, 8, 128, 2048, 0, 2, 30.0f},
           {"group32-two-head-groups", {600, 1023}, 32, 1, 128, 1024, 0, 2},
           {"group16-head64-noncausal-softcap", {10, 200}, 16, 1, 64, 256, 0, 2, 20.0f, false, 8},
           {"group4-noncausal-window-empty", {40, 250, 900}, 8, 2, 128, 600, 100, 1, 0.0f, false},
           {"group2-head256-window-softcap", {100, 5000}, 16, 8, 256, 8192, 4096, 2, 50.0f},
           {"group8-head256", {0, 1333}, 8, 1, 256, 2048, 0, 2},
           {"more-splits-than-tiles", {0, 5, 130, 299}, 32, 8, 128, 300, 0, 2, 0.0f, true, 200},
           {"head64-forced-64-splits", {1000}, 16, 4, 64, 1024, 0, 2, 0.0f, true, 64}}) {
    SCOPED_TRACE(c.name);
    const int64_t batch = c.positions.size();
    const int64_t row = c.kv_heads * c.head_dim;
    cpu::AttentionParams params;
    params.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    params.sliding_window = c.window;
    params.logit_softcap = c.softcap;
    params.causal = c.causal;
    std::vector<float> k = RoundBf16(RandomFloats(batch * c.capacity * row, rng));
    std::vector<float> v = RoundBf16(RandomFloats(batch * c.capacity * row, rng));
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t pos = c.positions[b];
      const int64_t hi = c.causal ? std::min(pos, c.capacity - 1) : c.capacity - 1;
      const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
      for (int64_t j = 0; j < c.capacity; ++j) {
        if (j >= lo && j <= hi) continue;
        for (int64_t i = 0; i < row; ++i) {
          k[(b * c.capacity + j) * row + i] = NAN;
          v[(b * c.capacity + j) * row + i] = NAN;
        }
      }
    }
    const int64_t max_context = c.window > 0 ? std::min(c.window, c.capacity) : c.capacity;
    AttentionDecodeSplit plan =
        PlanAttentionDecode(batch, c.heads, c.kv_heads, c.head_dim, max_context);
    if (c.forced_splits > 0) {
      plan.splits = c.forced_splits;
      plan.chunk = CeilDiv(CeilDiv(max_context, plan.splits), 32) * 32;
      plan.workspace_bytes = AttentionDecodeWorkspaceBytes(batch, c.heads, c.kv_heads,
                                                           c.head_dim, plan.splits);
    }
    if (c.expect_splits == 1) {
      EXPECT_EQ(plan.splits, 1);
      EXPECT_EQ(plan.workspace_bytes, 0u);
    } else {
      EXPECT_GT(plan.splits, 1);
      EXPECT_GT(plan.workspace_bytes, 0u);
    }
    DeviceBuffer<bf16> k_d(ToBf16(k)), v_d(ToBf16(v)), q_d(batch * c.heads * c.head_dim),
        out_d(batch * c.heads * c.head_dim);
    DeviceBuffer<int32_t> pos_d(c.positions);
    DeviceBuffer<unsigned char> workspace(std::max<size_t>(plan.workspace_bytes, 16));
    ASSERT_CUDA_OK(cudaMemset(workspace.get(), 0, std::max<size_t>(plan.workspace_bytes, 16)));
    const AttentionKernelParams kp = KernelParams(params);
    std::vector<bf16> previous;
    std::vector<float> q;
    for (int launch = 0; launch < 4; ++launch) {
      // Launches 2 and 3 repeat launch 1's query with settled positions (the first K/V tiles
      // loaded before the PDL wait): the same bits.
      const bool settled = launch >= 2;
      SCOPED_TRACE(absl::StrCat("launch ", launch, settled ? " (settled positions)" : ""));
      if (launch < 2) q = RoundBf16(RandomFloats(batch * c.heads * c.head_dim, rng));
      q_d.Upload(ToBf16(q));
      std::vector<float> ref(q.size());
      cpu::Attention(q.data(), k.data(), v.data(), c.positions.data(), batch, 1, c.heads,
                     c.capacity, c.kv_heads, c.head_dim, c.head_dim, params, ref.data(), &pool);
      out_d.Poison();
      ASSERT_STATUS_OK(LaunchAttentionDecode(q_d.get(), k_d.get(), v_d.get(), pos_d.get(),
                                             batch, c.heads, c.capacity, c.kv_heads, c.head_dim,
                                             kp, plan, workspace.get(), out_d.get(), nullptr,
                                             settled));
      const std::vector<bf16> got = out_d.Download();
      EXPECT_CLOSE("attention_decode", ToF32(got), ref, kBf16Tolerance);
      if (launch >= 2) {
        EXPECT_EQ(std::memcmp(got.data(), previous.data(), got.size() * sizeof(bf16)), 0)
            << "a repeated launch gave different bits";
      }
      previous = got;
    }

    // RoPE and the cache write fused (the executor's decode step): q unrotated, each
    // sequence's new key and value at its position. The same bits as RoPE's kernel followed
    // by this attention, in the output and in both caches, with positions read late and
    // early. Rotary variants: full (head_dim 128), partial (64: 32 rotated features),
    // interleaved with yarn's attention factor (256).
    cpu::RopeParams rp;
    rp.theta = 500000.0;
    rp.rotary_dim = c.head_dim == 64 ? 32 : c.head_dim;
    if (c.head_dim == 256) {
      rp.interleaved = true;
      rp.scaling = cpu::RopeScalingKind::kYarn;
      rp.factor = 4.0;
      rp.original_max_position = 4096;
      rp.attention_factor = 0.1 * std::log(4.0) + 1.0;
    }
    const RopeKernelParams rkp = MakeRopeKernelParams(rp);
    DeviceBuffer<float> inv_freq(rp.rotary_dim / 2);
    ASSERT_STATUS_OK(UploadRopeInverseFrequencies(rp, c.capacity, inv_freq.get()));
    DeviceBuffer<bf16> q_raw(ToBf16(RoundBf16(RandomFloats(q.size(), rng)))), q_rot(q.size());
    DeviceBuffer<bf16> k_new(ToBf16(RoundBf16(RandomFloats(batch * row, rng))));
    DeviceBuffer<bf16> v_new(ToBf16(RoundBf16(RandomFloats(batch * row, rng))));
    DeviceBuffer<bf16> k_ref(ToBf16(k)), v_ref(ToBf16(v)), k_fused(ToBf16(k)), v_fused(ToBf16(v));
    DeviceBuffer<bf16> out_ref(q.size()), out_fused(q.size());
    ASSERT_STATUS_OK(LaunchRopeAndCacheWrite(q_raw.get(), q_rot.get(), k_new.get(), v_new.get(),
                                             pos_d.get(), batch, 1, c.heads, c.kv_heads,
                                             c.head_dim, inv_freq.get(), rkp, k_ref.get(),
                                             v_ref.get(), c.capacity, nullptr, nullptr));
    ASSERT_STATUS_OK(LaunchAttentionDecode(q_rot.get(), k_ref.get(), v_ref.get(), pos_d.get(),
                                           batch, c.heads, c.capacity, c.kv_heads, c.head_dim,
                                           kp, plan, workspace.get(), out_ref.get(), nullptr));
    const std::vector<uint16_t> want = AsBits(out_ref.Download());
    const AttentionDecodeRope fused{k_new.get(), v_new.get(), k_fused.get(), v_fused.get(),
                                    inv_freq.get(), rkp};
    for (const bool settled : {false, true}) {
      SCOPED_TRACE(settled ? "fused RoPE, settled positions" : "fused RoPE");
      out_fused.Poison();
      ASSERT_STATUS_OK(LaunchAttentionDecode(q_raw.get(), k_fused.get(), v_fused.get(),
                                             pos_d.get(), batch, c.heads, c.capacity,
                                             c.kv_heads, c.head_dim, kp, plan, workspace.get(),
                                             out_fused.get(), nullptr, settled, fused));
      EXPECT_EQ(AsBits(out_fused.Download()), want) << "fused RoPE: attention output differs";
      EXPECT_EQ(AsBits(k_fused.Download()), AsBits(k_ref.Download())) << "K cache differs";
      EXPECT_EQ(AsBits(v_fused.Download()), AsBits(v_ref.Download())) << "V cache differs";
    }
    ASSERT_CUDA_OK(cudaGetLastError());
  }
}

// Argument checks of the decode launcher: clear errors instead of a launch.
// The L2 prefetch is a hint: every cut of ragged ranges into blocks completes without an
// error and leaves the bytes as they were; bad arguments are refused before a launch.
TEST(CudaKernels, L2Prefetch) {
  SEED_TRACE();
  auto rng = Rng("L2Prefetch");
  const std::vector<bf16> host = ToBf16(RandomFloats((5 << 20) / 2 + 3, rng));
  DeviceBuffer<bf16> data(host);
  for (const auto& [offset, bytes, blocks] : std::vector<std::tuple<int64_t, uint64_t, int>>{
           {0, host.size() * sizeof(bf16), 32}, {8, (3 << 20) + 6, 7}, {8, 48, 1024},
           {0, 15, 1}, {0, 64 * 1024 * 3 + 16, 1}}) {
    SCOPED_TRACE(absl::StrCat("offset ", offset, " bytes ", bytes, " blocks ", blocks));
    ASSERT_STATUS_OK(LaunchL2Prefetch(L2Prefetch{data.get() + offset, bytes}, blocks, nullptr));
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
  }
  EXPECT_EQ(AsBits(data.Download()), AsBits(host));
  EXPECT_EQ(LaunchL2Prefetch(L2Prefetch{data.get() + 1, 1024}, 4, nullptr).code(),
            absl::StatusCode::kInvalidArgument);  // misaligned
  EXPECT_EQ(LaunchL2Prefetch(L2Prefetch{data.get(), 1024}, 0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchL2Prefetch(L2Prefetch{data.get(), 1024}, 1025, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_CUDA_OK(cudaGetLastError());
}

TEST(CudaKernels, AttentionDecodeRejects) {
  const AttentionDecodeSplit plan = PlanAttentionDecode(1, 32, 8, 128, 8192);
  ASSERT_GT(plan.splits, 1);
  DeviceBuffer<bf16> buffer(1 << 20);
  DeviceBuffer<int32_t> pos(1);
  bf16* p = buffer.get();
  AttentionKernelParams kp;
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 30, 8192, 8, 128, kp, plan, p, p,
                                  nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);  // heads not a multiple of kv_heads
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, plan, nullptr, p,
                                  nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);  // splits without a workspace
  EXPECT_EQ(LaunchAttentionDecode(p + 1, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, plan, p, p,
                                  nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);  // misaligned q
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 96, kp, plan, p, p,
                                  nullptr)
                .code(),
            absl::StatusCode::kUnimplemented);  // head_dim 96
  AttentionDecodeRope rope;
  rope.k_new = p;
  rope.v_new = p;
  rope.inv_freq = reinterpret_cast<const float*>(p);
  rope.k_cache = p + 64;  // not the cache attention reads
  rope.v_cache = p;
  rope.params.rotary_dim = 128;
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, plan, p, p,
                                  nullptr, false, rope)
                .code(),
            absl::StatusCode::kInvalidArgument);
  rope.k_cache = p;
  rope.params.rotary_dim = 130;
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, plan, p, p,
                                  nullptr, false, rope)
                .code(),
            absl::StatusCode::kInvalidArgument);  // rotary_dim > head_dim
  rope.params.rotary_dim = 128;
  rope.v_new = p + 4;
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, plan, p, p,
                                  nullptr, false, rope)
                .code(),
            absl::StatusCode::kInvalidArgument);  // misaligned new value rows (16-byte copies)
  AttentionDecodeSplit too_many = plan;
  too_many.splits = 100000;
  EXPECT_EQ(LaunchAttentionDecode(p, p, p, pos.get(), 1, 32, 8192, 8, 128, kp, too_many, p, p,
                                  nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// --- sampling -------------------------------------------------------------------------------

int32_t CpuArgmax(const float* row, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (row[i] > row[best]) best = i;
  return static_cast<int32_t>(best);
}

// The ids the CPU sampler may draw from (runtime/api/tessel.cc SampleRow), with their
// probabilities.
std::map<int32_t, double> AllowedSet(const float* row, int64_t vocab, const SamplingKernelParams& p) {
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [row](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  const int64_t keep = p.top_k > 0 ? std::min<int64_t>(p.top_k, vocab) : vocab;
  std::vector<double> probs(keep);
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((static_cast<double>(row[ids[i]]) - row[ids[0]]) / p.temperature);
    total += probs[i];
  }
  int64_t kept = keep;
  if (p.top_p > 0.0f && p.top_p < 1.0f) {
    double cumulative = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= p.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  double kept_total = 0.0;
  for (int64_t i = 0; i < kept; ++i) kept_total += probs[i];
  std::map<int32_t, double> allowed;
  for (int64_t i = 0; i < kept; ++i) allowed[ids[i]] = probs[i] / kept_total;
  return allowed;
}

TEST(CudaKernels, ArgmaxMatchesCpu) {
  SEED_TRACE();
  auto rng = Rng("Argmax");
  for (int64_t vocab : {int64_t{128256}, int64_t{151936}, int64_t{1001}}) {
    const int64_t rows = 6;
    std::vector<float> logits = RandomFloats(rows * vocab, rng, 4.0f);
    // Ties: the lower id wins.
    logits[1 * vocab + 7] = logits[1 * vocab + vocab - 3] = 1e4f;
    std::vector<int32_t> ref(rows);
    for (int64_t r = 0; r < rows; ++r) ref[r] = CpuArgmax(logits.data() + r * vocab, vocab);
    DeviceBuffer<float> l_d(logits);
    DeviceBuffer<int32_t> out_d(rows);
    ASSERT_STATUS_OK(LaunchArgmax(l_d.get(), rows, vocab, out_d.get(), nullptr));
    EXPECT_EQ(out_d.Download(), ref);
    SamplingKernelParams greedy;
    greedy.temperature = 0.0f;
    out_d.Poison();
    ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, greedy, out_d.get(), nullptr));
    EXPECT_EQ(out_d.Download(), ref);
    greedy.temperature = 0.7f;
    greedy.top_k = 1;
    out_d.Poison();
    ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, greedy, out_d.get(), nullptr));
    EXPECT_EQ(out_d.Download(), ref);
  }
}

TEST(CudaKernels, SamplingDeterministicAndInAllowedSet) {
  SEED_TRACE();
  auto rng = Rng("Sampling");
  const int64_t rows = 64, vocab = 128256;
  std::vector<float> logits = RandomFloats(rows * vocab, rng, 3.0f);
  DeviceBuffer<float> l_d(logits);
  for (const auto& [temperature, top_k, top_p] : std::vector<std::tuple<float, int, float>>{
           {0.8f, 50, 0.9f}, {1.0f, 0, 0.5f}, {1.3f, 20, 1.0f}, {0.6f, 0, 0.0f}}) {
    SCOPED_TRACE(absl::StrCat("T=", temperature, " k=", top_k, " p=", top_p));
    SamplingKernelParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = rng();
    p.offset = 17;
    DeviceBuffer<int32_t> first(rows), second(rows), other(rows);
    ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, p, first.get(), nullptr));
    ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, p, second.get(), nullptr));
    const std::vector<int32_t> tokens = first.Download();
    EXPECT_EQ(tokens, second.Download()) << "same seed and offset, different tokens";
    p.offset = 18;
    ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, p, other.get(), nullptr));
    const std::vector<int32_t> next = other.Download();
    if (top_k == 0 && top_p == 0.0f) {
      EXPECT_NE(tokens, next) << "a new offset should draw new tokens";
    }
    for (int64_t r = 0; r < rows; ++r) {
      const auto allowed = AllowedSet(logits.data() + r * vocab, vocab, p);
      EXPECT_TRUE(allowed.count(tokens[r])) << "row " << r << " drew " << tokens[r]
                                            << " outside the top-k/top-p set of "
                                            << allowed.size();
    }
  }
}

TEST(CudaKernels, SamplingDistribution) {
  SEED_TRACE();
  auto rng = Rng("SamplingDistribution");
  const int64_t vocab = 24, rows = 40000;
  std::vector<float> row = RandomFloats(vocab, rng, 1.5f);
  std::vector<float> logits;
  for (int64_t r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  SamplingKernelParams p;
  p.temperature = 0.9f;
  p.top_k = 12;
  p.top_p = 0.8f;
  p.seed = rng();
  DeviceBuffer<float> l_d(logits);
  DeviceBuffer<int32_t> out_d(rows);
  ASSERT_STATUS_OK(LaunchSample(l_d.get(), rows, vocab, p, out_d.get(), nullptr));
  const std::vector<int32_t> tokens = out_d.Download();
  const auto allowed = AllowedSet(row.data(), vocab, p);
  std::map<int32_t, int64_t> counts;
  for (int32_t t : tokens) ++counts[t];
  for (const auto& [id, count] : counts) EXPECT_TRUE(allowed.count(id)) << "drew " << id;
  for (const auto& [id, prob] : allowed) {
    const double expected = prob * rows;
    const double sigma = std::sqrt(rows * prob * (1.0 - prob)) + 1.0;
    EXPECT_NEAR(static_cast<double>(counts[id]), expected, 5.0 * sigma) << "id " << id;
  }
}

// --- prefill attention on wgmma (last: see AttentionPrefillShapesRows16) ---------------------

TEST(CudaKernels, AttentionPrefillShapesWgmma) {
  CheckPrefillShapes(AttentionPrefillTiles::kWgmma, "wgmma", 128);
}
TEST(CudaKernels, AttentionPrefillShapesWgmmaPipelined) {
  CheckPrefillShapes(AttentionPrefillTiles::kWgmmaPipelined, "wgmma-pipelined", 128);
}

}  // namespace
}  // namespace tessel::cuda

int main(int argc, char** argv) {
  return tessel::cuda::gpu_test::RunGpuTests(argc, argv, "cuda_kernels_test");
}
