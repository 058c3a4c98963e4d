// Cross-checks the MoE (router, experts) and MLA attention CUDA kernels against the CPU
// reference kernels.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Same rules as cuda_kernels_test: fresh random inputs each run (seed from the clock, or
// TESSEL_TEST_SEED; printed in every failure), outputs poisoned (NaN / -1) before each launch,
// error ||gpu - cpu|| / ||cpu|| with NaN always failing, 1e-2 where operands or results are
// bf16, 1e-5 for f32 routing weights. The router's inputs are quantized so that every logit is
// exact in f32 on both sides (the CPU and GPU sum in different orders); its choices must then
// agree except on near-ties of the f32 scores, which are counted and checked to be ties.
// Prints SKIPPED (no CUDA device) and exits 77 (ctest: skipped) without a CUDA device.
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
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cuda/mla.cuh"
#include "runtime/cuda/moe.cuh"
#include "tests/gpu/gpu_test_util.cuh"

namespace tessel::cuda {
namespace {

using namespace gpu_test;  // NOLINT: the harness (seeds, buffers, checks)

cpu::ThreadPool* g_pool = nullptr;

// Uniform in [-scale, scale) from a xorshift stream seeded by rng: expert weights run to
// hundreds of millions of values, where std::normal_distribution would take seconds.
std::vector<float> FastUniform(int64_t n, std::mt19937_64& rng, float scale) {
  std::vector<float> out(n);
  uint64_t state = rng() | 1;
  for (float& x : out) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = scale * (static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
  return out;
}

// --- MoE router -----------------------------------------------------------------------------

struct RouterCase {
  const char* name;
  int64_t experts, hidden;
  cpu::RouterParams params;
  bool bias;
};

// Values k / 16 (|k| <= 8) for x and j / 256 (|j| <= 16) for the gate: every product is a
// multiple of 2^-12 and every partial sum of 2048+ terms stays below 2^12, so the logits are
// exact in f32 whatever the summation order.
std::vector<float> QuantizedRandom(int64_t n, std::mt19937_64& rng, int range, float unit) {
  std::uniform_int_distribution<int> dist(-range, range);
  std::vector<float> out(n);
  for (float& v : out) v = static_cast<float>(dist(rng)) * unit;
  return out;
}

TEST(MoEKernels, RouterMatchesCpu) {
  SEED_TRACE();
  auto rng = Rng("MoERouter");
  std::vector<RouterCase> cases;
  {
    cpu::RouterParams mixtral;  // softmax top-2, renormalized
    mixtral.top_k = 2;
    mixtral.norm_topk_prob = true;
    cases.push_back({"mixtral 8e top2", 8, 4096, mixtral, false});
    cpu::RouterParams qwen;  // Qwen1.5-MoE-A2.7B: 60 experts (partial lanes), softmax top-4
    qwen.top_k = 4;
    cases.push_back({"qwen1.5-moe 60e top4", 60, 2048, qwen, false});
    cpu::RouterParams lite;  // DeepSeek-V2-Lite: softmax top-6, no renormalization
    lite.top_k = 6;
    cases.push_back({"v2-lite 64e top6", 64, 2048, lite, false});
    cpu::RouterParams v2;  // DeepSeek-V2: group-limited greedy, scaled
    v2.top_k = 6;
    v2.n_group = 8;
    v2.topk_group = 3;
    v2.routed_scaling_factor = 16.0;
    cases.push_back({"v2 160e groups 8/3 top6", 160, 2048, v2, false});
    cpu::RouterParams v3;  // DeepSeek-V3: sigmoid + bias, groups 8/4, top-8, renormalized
    v3.top_k = 8;
    v3.n_group = 8;
    v3.topk_group = 4;
    v3.sigmoid = true;
    v3.norm_topk_prob = true;
    v3.routed_scaling_factor = 2.5;
    cases.push_back({"v3 256e sigmoid+bias groups 8/4 top8", 256, 2048, v3, true});
    cpu::RouterParams v3_small = v3;  // 64 experts, hidden not a multiple of 8 (scalar path)
    cases.push_back({"v3-style 64e hidden 1000", 64, 1000, v3_small, true});
  }
  for (const RouterCase& rc : cases) {
    // 1031 tokens: enough token groups that each block takes every expert (no slicing).
    for (int64_t tokens : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{512}, int64_t{1031}}) {
      SCOPED_TRACE(absl::StrCat(rc.name, ", tokens ", tokens));
      const int64_t e = rc.experts, hidden = rc.hidden, k = rc.params.top_k;
      std::vector<float> x = QuantizedRandom(tokens * hidden, rng, 8, 1.0f / 16);
      std::vector<float> gate = QuantizedRandom(e * hidden, rng, 16, 1.0f / 256);
      std::vector<float> bias;
      if (rc.bias) bias = QuantizedRandom(e, rng, 256, 1.0f / 1024);
      std::vector<float> ref_w(tokens * k);
      std::vector<int32_t> ref_i(tokens * k);
      cpu::MoERouter(x.data(), tokens, hidden, gate.data(), e, rc.bias ? bias.data() : nullptr,
                     rc.params, ref_w.data(), ref_i.data(), g_pool);

      DeviceBuffer<bf16> x_d(ToBf16(x)), gate_d(ToBf16(gate));
      DeviceBuffer<float> bias_d(bias), w_d(tokens * k);
      DeviceBuffer<int32_t> i_d(tokens * k);
      DeviceBuffer<unsigned char> workspace(MoERouterWorkspaceBytes(tokens, e));
      ASSERT_CUDA_OK(cudaMemset(workspace.get(), 0, MoERouterWorkspaceBytes(tokens, e)));
      MoERouterKernelParams p;
      p.top_k = static_cast<int>(k);
      p.n_group = static_cast<int>(rc.params.n_group);
      p.topk_group = static_cast<int>(rc.params.topk_group);
      p.sigmoid = rc.params.sigmoid;
      p.norm_topk_prob = rc.params.norm_topk_prob;
      p.routed_scaling_factor = static_cast<float>(rc.params.routed_scaling_factor);
      ASSERT_STATUS_OK(LaunchMoERouter(x_d.get(), tokens, hidden, gate_d.get(), e,
                                       rc.bias ? bias_d.get() : nullptr, p, workspace.get(),
                                       w_d.get(), i_d.get(), nullptr));
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      const std::vector<float> got_w = w_d.Download();
      const std::vector<int32_t> got_i = i_d.Download();
      // A second launch over the same workspace (its ticket counters reset themselves) gives
      // the same bits.
      w_d.Poison();
      i_d.Poison();
      ASSERT_STATUS_OK(LaunchMoERouter(x_d.get(), tokens, hidden, gate_d.get(), e,
                                       rc.bias ? bias_d.get() : nullptr, p, workspace.get(),
                                       w_d.get(), i_d.get(), nullptr));
      EXPECT_EQ(i_d.Download(), got_i) << "second launch chose differently";
      const std::vector<float> again_w = w_d.Download();
      EXPECT_EQ(std::memcmp(again_w.data(), got_w.data(), got_w.size() * sizeof(float)), 0)
          << "second launch weighted differently";

      // Choice values in double from the exact logits, to judge disagreements.
      auto choice_values = [&](int64_t t) {
        std::vector<double> logits(e), choice(e);
        for (int64_t j = 0; j < e; ++j) {
          double acc = 0.0;
          for (int64_t h = 0; h < hidden; ++h) acc += double{x[t * hidden + h]} * gate[j * hidden + h];
          logits[j] = acc;
        }
        const double max_logit = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        for (int64_t j = 0; j < e; ++j) sum += std::exp(logits[j] - max_logit);
        for (int64_t j = 0; j < e; ++j) {
          choice[j] = rc.params.sigmoid ? 1.0 / (1.0 + std::exp(-logits[j]))
                                        : std::exp(logits[j] - max_logit) / sum;
          if (rc.bias) choice[j] += bias[j];
        }
        return choice;
      };
      int64_t flipped = 0;
      std::vector<float> got_aligned, ref_aligned;
      for (int64_t t = 0; t < tokens; ++t) {
        std::map<int32_t, float> got_map, ref_map;
        bool valid = true;
        for (int64_t j = 0; j < k; ++j) {
          const int32_t gi = got_i[t * k + j];
          valid = valid && gi >= 0 && gi < e && !got_map.count(gi);
          got_map[gi] = got_w[t * k + j];
          ref_map[ref_i[t * k + j]] = ref_w[t * k + j];
        }
        ASSERT_TRUE(valid) << "token " << t << ": invalid or repeated expert index";
        bool same_set = got_map.size() == ref_map.size();
        for (const auto& [idx, w] : ref_map) same_set = same_set && got_map.count(idx);
        if (same_set) {
          for (const auto& [idx, w] : ref_map) {
            ref_aligned.push_back(w);
            got_aligned.push_back(got_map[idx]);
          }
          continue;
        }
        ++flipped;
        // A disagreement must be a near-tie: of the groups at the topk_group boundary, or of
        // the chosen experts (the k best choice values picked by either side agree to 1e-5).
        const std::vector<double> choice = choice_values(t);
        const int64_t n_group = rc.params.n_group;
        if (n_group > 1 && rc.params.topk_group < n_group) {
          const int64_t size = e / n_group;
          std::vector<double> group_scores(n_group);
          for (int64_t g = 0; g < n_group; ++g) {
            std::vector<double> member(choice.begin() + g * size, choice.begin() + (g + 1) * size);
            std::sort(member.rbegin(), member.rend());
            group_scores[g] = rc.bias && size >= 2 ? member[0] + member[1] : member[0];
          }
          std::sort(group_scores.rbegin(), group_scores.rend());
          const int64_t kept = rc.params.topk_group;
          if (group_scores[kept - 1] - group_scores[kept] < 1e-5) continue;  // group tie
        }
        std::vector<double> got_values, ref_values;
        for (const auto& [idx, w] : got_map) got_values.push_back(choice[idx]);
        for (const auto& [idx, w] : ref_map) ref_values.push_back(choice[idx]);
        std::sort(got_values.rbegin(), got_values.rend());
        std::sort(ref_values.rbegin(), ref_values.rend());
        for (size_t j = 0; j < got_values.size(); ++j) {
          EXPECT_NEAR(got_values[j], ref_values[j], 1e-5)
              << "token " << t << ": GPU and CPU chose different experts without a tie";
        }
      }
      EXPECT_LE(flipped, 1 + tokens / 64) << "too many routing disagreements";
      if (flipped > 0) std::printf("  %s tokens %ld: %ld near-tie flips\n", rc.name,
                                   static_cast<long>(tokens), static_cast<long>(flipped));
      EXPECT_CLOSE("moe_router weights", got_aligned, ref_aligned, kF32Tolerance);
    }
  }
}

TEST(MoEKernels, RouterTiesGoToLowerIndex) {
  SEED_TRACE();
  // Identical gate rows: all logits tie, so the chosen experts are 0..k-1 in order.
  const int64_t tokens = 3, hidden = 64, experts = 16;
  auto rng = Rng("MoERouterTies");
  std::vector<float> x = QuantizedRandom(tokens * hidden, rng, 8, 1.0f / 16);
  std::vector<float> row = QuantizedRandom(hidden, rng, 16, 1.0f / 256);
  std::vector<float> gate;
  for (int64_t e = 0; e < experts; ++e) gate.insert(gate.end(), row.begin(), row.end());
  DeviceBuffer<bf16> x_d(ToBf16(x)), gate_d(ToBf16(gate));
  DeviceBuffer<float> w_d(tokens * 4);
  DeviceBuffer<int32_t> i_d(tokens * 4);
  DeviceBuffer<unsigned char> workspace(MoERouterWorkspaceBytes(tokens, experts));
  ASSERT_CUDA_OK(cudaMemset(workspace.get(), 0, MoERouterWorkspaceBytes(tokens, experts)));
  MoERouterKernelParams p;
  p.top_k = 4;
  ASSERT_STATUS_OK(LaunchMoERouter(x_d.get(), tokens, hidden, gate_d.get(), experts, nullptr, p,
                                   workspace.get(), w_d.get(), i_d.get(), nullptr));
  const std::vector<int32_t> got = i_d.Download();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(got[t * 4 + j], j) << "token " << t;
  }
  for (float w : w_d.Download()) EXPECT_FLOAT_EQ(w, 1.0f / experts);
}

// --- MoE experts ----------------------------------------------------------------------------

struct ExpertsCase {
  const char* name;
  int64_t experts, top_k, hidden, inter;
};

enum class Routing { kRandom, kSkewed, kWithInvalid };

// One case's expert weights (bf16-rounded), on the host for the reference and on the device.
struct ExpertWeights {
  ExpertWeights(const ExpertsCase& ec, std::mt19937_64& rng)
      : gate(RoundBf16(FastUniform(ec.experts * ec.inter * ec.hidden, rng,
                                   std::sqrt(3.0f / ec.hidden)))),
        up(RoundBf16(FastUniform(ec.experts * ec.inter * ec.hidden, rng,
                                 std::sqrt(3.0f / ec.hidden)))),
        down(RoundBf16(FastUniform(ec.experts * ec.hidden * ec.inter, rng,
                                   2.0f * std::sqrt(3.0f / ec.inter)))),
        gate_d(ToBf16(gate)),
        up_d(ToBf16(up)),
        down_d(ToBf16(down)) {}
  std::vector<float> gate, up, down;
  DeviceBuffer<bf16> gate_d, up_d, down_d;
};

void CheckExperts(const ExpertsCase& ec, const ExpertWeights& w, int64_t tokens, Routing routing,
                  std::mt19937_64& rng, MoEActivation activation = MoEActivation::kSilu) {
  SCOPED_TRACE(absl::StrCat(ec.name, ", tokens ", tokens, ", routing ",
                            static_cast<int>(routing), ", activation ",
                            static_cast<int>(activation)));
  const cpu::UnaryOp cpu_activation = activation == MoEActivation::kSilu   ? cpu::UnaryOp::kSilu
                                      : activation == MoEActivation::kGelu ? cpu::UnaryOp::kGelu
                                      : activation == MoEActivation::kGeluTanh
                                          ? cpu::UnaryOp::kGeluTanh
                                          : cpu::UnaryOp::kRelu;
  const int64_t e = ec.experts, k = ec.top_k, hidden = ec.hidden, inter = ec.inter;
  std::vector<float> x = RoundBf16(RandomFloats(tokens * hidden, rng));
  // Routing: k distinct experts per token with weights in [0.05, 1).
  std::vector<int32_t> indices(tokens * k);
  std::vector<float> weights(tokens * k);
  std::vector<int32_t> order(e);
  std::iota(order.begin(), order.end(), 0);
  std::uniform_real_distribution<float> unit(0.05f, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    if (routing == Routing::kSkewed) {
      // Every token to the same few experts: many tiles for one expert, most experts idle.
      for (int64_t j = 0; j < k; ++j) order[j] = static_cast<int32_t>((3 + 5 * j) % e);
    } else {
      std::shuffle(order.begin(), order.end(), rng);
    }
    for (int64_t j = 0; j < k; ++j) {
      indices[t * k + j] = order[j];
      weights[t * k + j] = unit(rng);
    }
  }
  if (routing == Routing::kWithInvalid) {
    indices[0] = -1;  // slots outside [0, experts) add nothing
    if (tokens * k > 3) indices[3] = static_cast<int32_t>(e);
  }
  std::vector<float> ref(tokens * hidden);
  cpu::MoEExperts(x.data(), tokens, hidden, weights.data(), indices.data(), k, w.gate.data(),
                  w.up.data(), w.down.data(), e, inter, cpu_activation, ref.data(), g_pool);

  DeviceBuffer<bf16> x_d(ToBf16(x)), out_d(tokens * hidden), again_d(tokens * hidden);
  DeviceBuffer<float> w_d(weights);
  DeviceBuffer<int32_t> i_d(indices);
  // A plan for more tokens than this launch passes (as a captured graph of a larger batch).
  const MoEExpertsPlan plan = PlanMoEExperts(tokens + 5, k, e, hidden, inter);
  DeviceBuffer<unsigned char> workspace(plan.workspace_bytes);
  ASSERT_STATUS_OK(LaunchMoEExperts(x_d.get(), tokens, w_d.get(), i_d.get(), w.gate_d.get(),
                                    w.up_d.get(), w.down_d.get(), activation, plan,
                                    workspace.get(), out_d.get(), nullptr));
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  ASSERT_CUDA_OK(cudaGetLastError());
  const std::vector<bf16> first = out_d.Download();
  EXPECT_CLOSE(absl::StrCat("moe_experts block_m ", plan.block_m), ToF32(first), ref,
               kBf16Tolerance);
  // Deterministic: a second run over a poisoned workspace gives the same bits.
  workspace.Poison();
  ASSERT_STATUS_OK(LaunchMoEExperts(x_d.get(), tokens, w_d.get(), i_d.get(), w.gate_d.get(),
                                    w.up_d.get(), w.down_d.get(), activation, plan,
                                    workspace.get(), again_d.get(), nullptr));
  const std::vector<bf16> second = again_d.Download();
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(bf16)), 0)
      << "two runs differ";
}

TEST(MoEKernels, ExpertsMatchCpu) {
  SEED_TRACE();
  auto rng = Rng("MoEExperts");
  const std::vector<ExpertsCase> cases = {
      {"mixtral-like 8e top2 (1024/3584)", 8, 2, 1024, 3584},
      {"v2-lite 64e top6 (2048/1408)", 64, 6, 2048, 1408},
      {"v3-like 256e top8 (512/256)", 256, 8, 512, 256},
      {"ragged 16e top3 (776/360)", 16, 3, 776, 360},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    const ExpertsCase& ec = cases[c];
    const ExpertWeights weights(ec, rng);
    for (int64_t tokens : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{512}}) {
      CheckExperts(ec, weights, tokens, Routing::kRandom, rng);
    }
    if (c == 1) CheckExperts(ec, weights, 512, Routing::kSkewed, rng);
    if (c == 3) {
      CheckExperts(ec, weights, 64, Routing::kSkewed, rng);
      CheckExperts(ec, weights, 7, Routing::kWithInvalid, rng);
      for (MoEActivation activation :
           {MoEActivation::kGelu, MoEActivation::kGeluTanh, MoEActivation::kRelu}) {
        CheckExperts(ec, weights, 64, Routing::kRandom, rng, activation);
      }
    }
    if (c == 0) CheckExperts(ec, weights, 33, Routing::kWithInvalid, rng);
  }
}

TEST(MoEKernels, ExpertsRefuseBadShapes) {
  const MoEExpertsPlan plan = PlanMoEExperts(4, 2, 8, 100, 64);  // hidden not a multiple of 8
  DeviceBuffer<unsigned char> workspace(plan.workspace_bytes);
  DeviceBuffer<bf16> buf(1 << 16);
  DeviceBuffer<float> w(8);
  DeviceBuffer<int32_t> i(8);
  EXPECT_FALSE(LaunchMoEExperts(buf.get(), 4, w.get(), i.get(), buf.get(), buf.get(), buf.get(),
                                MoEActivation::kSilu, plan, workspace.get(), buf.get(), nullptr)
                   .ok());
  const MoEExpertsPlan small = PlanMoEExperts(2, 2, 8, 64, 64);  // launch passes more tokens
  EXPECT_FALSE(LaunchMoEExperts(buf.get(), 4, w.get(), i.get(), buf.get(), buf.get(), buf.get(),
                                MoEActivation::kSilu, small, workspace.get(), buf.get(), nullptr)
                   .ok());
}

// --- MLA attention --------------------------------------------------------------------------

struct MlaCase {
  const char* name;
  int64_t batch, seq, heads, kv_len;
  std::vector<int32_t> positions;  // [batch * seq]
  int64_t force_chunk;             // 0: the planner's split; else chunks of this many keys
};

void CheckMla(const MlaCase& mc, std::mt19937_64& rng) {
  SCOPED_TRACE(mc.name);
  const int64_t nope = 128, rope = 64, rank = 512, v_dim = 128;
  const int64_t b = mc.batch, s = mc.seq, h = mc.heads, l = mc.kv_len;
  std::vector<float> q_nope = RoundBf16(RandomFloats(b * s * h * nope, rng));
  std::vector<float> q_rope = RoundBf16(RandomFloats(b * s * h * rope, rng));
  std::vector<float> latent = RoundBf16(RandomFloats(b * l * rank, rng));
  std::vector<float> key_rope = RoundBf16(RandomFloats(b * l * rope, rng));
  std::vector<float> kv_b = RoundBf16(RandomFloats(h * (nope + v_dim) * rank, rng, 0.1f));
  cpu::AttentionParams params;
  params.scale = 1.0 / std::sqrt(static_cast<double>(nope + rope));
  params.causal = true;
  std::vector<float> ref(b * s * h * v_dim);
  cpu::MLAAttention(q_nope.data(), q_rope.data(), latent.data(), key_rope.data(), kv_b.data(),
                    mc.positions.data(), b, s, h, l, nope, rope, rank, v_dim, params, ref.data(),
                    g_pool);

  DeviceBuffer<bf16> qn_d(ToBf16(q_nope)), qr_d(ToBf16(q_rope)), lat_d(ToBf16(latent)),
      kr_d(ToBf16(key_rope)), kvb_d(ToBf16(kv_b)), out_d(b * s * h * v_dim);
  DeviceBuffer<int32_t> pos_d(mc.positions);
  MLAAttentionPlan plan = PlanMLAAttention(b, s, h, l);
  if (mc.force_chunk > 0) {
    plan.chunk = mc.force_chunk;
    plan.splits = (l + mc.force_chunk - 1) / mc.force_chunk;
    // The planner's workspace for one split, plus the partials of the forced split count.
    plan.workspace_bytes = PlanMLAAttention(b, s, h, 1).workspace_bytes +
                           sizeof(float) * b * s * h * plan.splits * (rank + 2) + 1024;
  }
  DeviceBuffer<unsigned char> workspace(plan.workspace_bytes);
  AttentionKernelParams kp;
  kp.scale = static_cast<float>(params.scale);
  kp.causal = true;
  ASSERT_STATUS_OK(LaunchMLAAttention(qn_d.get(), qr_d.get(), lat_d.get(), kr_d.get(),
                                      kvb_d.get(), pos_d.get(), b, s, h, l, nope, rope, rank,
                                      v_dim, kp, plan, workspace.get(), out_d.get(), nullptr));
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  ASSERT_CUDA_OK(cudaGetLastError());
  EXPECT_CLOSE(s == 1 ? "mla_attention decode" : "mla_attention prefill", ToF32(out_d.Download()),
               ref, kBf16Tolerance);
  std::printf("  %s: %ld splits of %ld keys\n", mc.name, static_cast<long>(plan.splits),
              static_cast<long>(plan.chunk));
}

TEST(MlaKernels, DecodeMatchesCpu) {
  SEED_TRACE();
  auto rng = Rng("MlaDecode");
  // DeepSeek-V2-Lite: 16 heads. Contexts 1, 100 and 4096 (two sequences at different
  // positions in a 4096-row cache), with the planner's split, one split, and 64-key chunks.
  const int64_t cap = 4096;
  for (int64_t chunk : {int64_t{0}, cap, int64_t{64}}) {
    for (int64_t context : {int64_t{1}, int64_t{100}, int64_t{4096}}) {
      const int32_t last = static_cast<int32_t>(context - 1);
      CheckMla({"v2-lite decode", 2, 1, 16, cap, {last, std::max(0, last - 37)}, chunk}, rng);
    }
  }
  // Batch 16 at mixed contexts; 128 heads (DeepSeek-V3) and 20 heads (a partial head group).
  std::vector<int32_t> mixed(16);
  for (int i = 0; i < 16; ++i) mixed[i] = (i * 997 + 13) % 1024;
  CheckMla({"v2-lite decode b16 mixed", 16, 1, 16, 1024, mixed, 0}, rng);
  CheckMla({"v3 decode 128 heads", 1, 1, 128, 300, {299}, 0}, rng);
  CheckMla({"decode 20 heads", 2, 1, 20, 200, {150, 199}, 96}, rng);
}

TEST(MlaKernels, PrefillMatchesCpu) {
  SEED_TRACE();
  auto rng = Rng("MlaPrefill");
  // 64 new tokens after a 37-token prefix (the cache holds all 101), causal.
  for (int64_t offset : {int64_t{0}, int64_t{37}}) {
    const int64_t seq = 64, batch = 2;
    std::vector<int32_t> positions;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < seq; ++s) positions.push_back(static_cast<int32_t>(offset + s));
    for (int64_t chunk : {int64_t{0}, int64_t{32}}) {
      CheckMla({offset == 0 ? "v2-lite prefill 64" : "v2-lite prefill 64 at offset 37", batch,
                seq, 16, offset + seq, positions, chunk},
               rng);
    }
  }
}

}  // namespace
}  // namespace tessel::cuda

int main(int argc, char** argv) {
  tessel::cpu::ThreadPool pool;
  tessel::cuda::g_pool = &pool;
  return tessel::cuda::gpu_test::RunGpuTests(argc, argv, "cuda_moe_mla_test");
}
