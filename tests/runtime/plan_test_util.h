// Builds tiny tessel plans and weight files in memory for runtime tests and
// fuzzer seeds. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Two toy models over a vocabulary of 5 and a hidden size of 4, f32 unless
// asked:
//   dense:     logits = head @ rms_norm(embed[id]) (weights embed [5, 4], norm
//   [4], head [5, 4]) attention: x = embed[id]; cache[pos] = x; a =
//   attention(x, cache, cache) (1 head, causal,
//              scale 1/2); logits = head @ a (one KV cache slot [context, 1,
//              4])
// Both have "prefill" (seq_len -1) and "decode" (seq_len 1) entry points.
// `ToyOptions` injects the defects the loader tests expect it to catch.
#ifndef TESSEL_TESTS_RUNTIME_PLAN_TEST_UTIL_H_
#define TESSEL_TESTS_RUNTIME_PLAN_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "runtime/plan/format.h"
#include "runtime/schema/plan_generated.h"

namespace tessel::testing {

inline constexpr int64_t kToyVocab = 5;
inline constexpr int64_t kToyHidden = 4;
inline constexpr double kToyEpsilon = 1e-5;

struct ToyOptions {
  bool attention = false;
  uint32_t major = plan_format::kMajor;
  uint32_t minor = plan_format::kMinor;
  int64_t context = 16;
  bool bf16_embedding =
      false;  // store the embedding table as bf16 (values exact in bf16)
  uint32_t matmul_weight_operand =
      UINT32_MAX;  // override the Matmul's weight operand id
  uint64_t arena_peak =
      0;  // override arena_bytes_per_token (0: the correct peak)
  bool view_cycle = false;  // add two views of each other
  uint32_t view_chain = 0;  // add this many chained views, each before its base
  bool wrong_attrs = false;   // give the Matmul NormAttrs
  bool bad_checksum = false;  // store a wrong checksum for the head
  // Dense toy only: declare the hidden activations bf16 (half the bytes per
  // token; the CPU executor still computes in f32 and must scale the arena
  // layout).
  bool bf16_activations = false;
  // Dense toy only: Cast the normed activations to this dtype before the head
  // (F32: no cast).
  plan::DType cast_normed_to = plan::DType::F32;
  // Dense toy only: run the norm as a Fused instruction (format 1.1) whose program
  // is rms_norm(scale(x, 1.0)), which computes the same logits.
  bool fused_norm = false;
  int32_t fused_kernel = -1;           // the Fused instruction's kernel index
  uint32_t fused_norm_input = UINT32_MAX;  // override the norm's program operand
};

// Deterministic weights, exactly representable in bf16 (multiples of 1/16,
// small).
inline float ToyEmbed(int64_t v, int64_t h) {
  return 0.125f * (v + 1) - 0.0625f * h;
}
inline float ToyNorm(int64_t h) { return 1.0f + 0.125f * h; }
inline float ToyHead(int64_t v, int64_t h) {
  return 0.25f * static_cast<float>((v * 3 + h) % 5 - 2);
}

struct ToyArtifact {
  std::vector<uint8_t> plan;
  std::vector<uint8_t> weights;  // weights.rank0.bin
};

inline ToyArtifact BuildToyArtifact(const ToyOptions& options = {}) {
  namespace fb = flatbuffers;
  using namespace tessel::plan;  // NOLINT: generated schema names
  using DType = tessel::plan::DType;
  ToyArtifact out;

  // Weights file: each tensor at a 256-byte boundary.
  struct WeightSpec {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<WeightSpec> specs;
  auto f32_bytes = [](const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  };
  std::vector<float> embed, norm, head;
  for (int64_t v = 0; v < kToyVocab; ++v)
    for (int64_t h = 0; h < kToyHidden; ++h) embed.push_back(ToyEmbed(v, h));
  for (int64_t h = 0; h < kToyHidden; ++h) norm.push_back(ToyNorm(h));
  for (int64_t v = 0; v < kToyVocab; ++v)
    for (int64_t h = 0; h < kToyHidden; ++h) head.push_back(ToyHead(v, h));
  if (options.bf16_embedding) {
    std::vector<uint8_t> bytes;
    for (float value : embed) {
      uint32_t bits;
      std::memcpy(&bits, &value, 4);
      bytes.push_back(static_cast<uint8_t>(bits >> 16));
      bytes.push_back(static_cast<uint8_t>(bits >> 24));
    }
    specs.push_back({"model.embed_tokens.weight",
                     DType::BF16,
                     {kToyVocab, kToyHidden},
                     bytes});
  } else {
    specs.push_back({"model.embed_tokens.weight",
                     DType::F32,
                     {kToyVocab, kToyHidden},
                     f32_bytes(embed)});
  }
  specs.push_back(
      {"model.norm.weight", DType::F32, {kToyHidden}, f32_bytes(norm)});
  specs.push_back(
      {"lm_head.weight", DType::F32, {kToyVocab, kToyHidden}, f32_bytes(head)});

  fb::FlatBufferBuilder builder(4096);
  std::vector<fb::Offset<Weight>> weights;
  for (size_t i = 0; i < specs.size(); ++i) {
    const WeightSpec& spec = specs[i];
    const uint64_t offset = out.weights.size();
    out.weights.insert(out.weights.end(), spec.bytes.begin(), spec.bytes.end());
    out.weights.resize((out.weights.size() + 255) / 256 * 256, 0);
    uint64_t checksum =
        plan_format::Fnv1a64(spec.bytes.data(), spec.bytes.size());
    if (options.bad_checksum && i == 2) checksum ^= 1;
    weights.push_back(CreateWeightDirect(builder, spec.name.c_str(), spec.dtype,
                                         &spec.shape, 0, offset,
                                         spec.bytes.size(), checksum));
  }

  const int64_t B = plan_format::kBatch, S = plan_format::kSeq;
  const int64_t H = kToyHidden, V = kToyVocab;
  auto arena = [&](std::vector<int64_t> shape, uint64_t offset, uint64_t bytes,
                   DType dtype = DType::F32) {
    return CreateValueDirect(builder, ValueKind::Arena, dtype, &shape, offset,
                             bytes);
  };
  auto weight_value = [&](uint32_t index) {
    return CreateValueDirect(builder, ValueKind::Weight, specs[index].dtype,
                             &specs[index].shape, 0, 0, index);
  };
  auto input = [&](uint32_t which) {
    std::vector<int64_t> shape = {B, S};
    return CreateValueDirect(builder, ValueKind::Input, DType::I32, &shape, 0,
                             0, 0, which);
  };
  auto view = [&](uint32_t base, std::vector<int64_t> shape) {
    return CreateValueDirect(builder, ValueKind::View, DType::F32, &shape, 0, 0,
                             0, 0, 0, base);
  };
  auto instruction = [&](OpCode op, std::vector<uint32_t> operands,
                         std::vector<uint32_t> results, Attrs attrs_type,
                         fb::Offset<void> attrs) {
    return CreateInstructionDirect(builder, op, &operands, &results, attrs_type,
                                   attrs);
  };
  auto matmul_attrs = [&]() -> std::pair<Attrs, fb::Offset<void>> {
    if (options.wrong_attrs)
      return {Attrs::NormAttrs, CreateNormAttrs(builder, 1e-5).Union()};
    return {Attrs::MatmulAttrs,
            CreateMatmulAttrs(builder, WeightLayout::OutIn).Union()};
  };

  std::vector<fb::Offset<EntryPoint>> entries;
  for (const char* name : {"prefill", "decode"}) {
    const int64_t seq_len = std::string(name) == "prefill" ? -1 : 1;
    std::vector<fb::Offset<Value>> values;
    std::vector<fb::Offset<Instruction>> instructions;
    std::vector<uint32_t> inputs, outputs;
    uint64_t peak = 0;
    if (!options.attention) {
      values.push_back(input(0));         // 0 ids
      values.push_back(input(1));         // 1 positions
      values.push_back(weight_value(0));  // 2 embed
      values.push_back(weight_value(1));  // 3 norm
      values.push_back(weight_value(2));  // 4 head
      const DType act = options.bf16_activations ? DType::BF16 : DType::F32;
      const uint64_t act_bytes = options.bf16_activations ? 2 : 4;
      values.push_back(arena({B, S, H}, 0, act_bytes * H, act));   // 5 hidden
      values.push_back(arena({B, S, H}, 64, act_bytes * H, act));  // 6 normed
      values.push_back(arena({B, S, V}, 128, 4 * V));              // 7 logits
      peak = 128 + 4 * V;
      uint32_t head_input = 6;
      if (options.cast_normed_to != DType::F32) {
        values.push_back(
            arena({B, S, H}, 192, 4 * H, options.cast_normed_to));  // 8 cast
        peak = 192 + 4 * H;
        head_input = 8;
      }
      instructions.push_back(
          instruction(OpCode::Embedding, {0, 2}, {5}, Attrs::NONE, 0));
      if (options.fused_norm) {
        // Program values: 0 hidden, 1 norm weight, 2 scaled, 3 normed.
        std::vector<uint32_t> scale_operands = {0};
        std::vector<uint32_t> norm_operands = {
            options.fused_norm_input != UINT32_MAX ? options.fused_norm_input
                                                   : 2u,
            1};
        std::vector<fb::Offset<FusedOp>> ops = {
            CreateFusedOpDirect(builder, OpCode::Scale, &scale_operands, 1.0),
            CreateFusedOpDirect(builder, OpCode::RMSNorm, &norm_operands,
                                kToyEpsilon)};
        std::vector<uint32_t> program_results = {3};
        auto program =
            CreateFusedProgramDirect(builder, &ops, &program_results, H);
        std::vector<uint32_t> operands = {5, 3}, results = {6};
        instructions.push_back(CreateInstructionDirect(
            builder, OpCode::Fused, &operands, &results, Attrs::NONE, 0,
            options.fused_kernel, program));
      } else {
        instructions.push_back(
            instruction(OpCode::RMSNorm, {5, 3}, {6}, Attrs::NormAttrs,
                        CreateNormAttrs(builder, kToyEpsilon).Union()));
      }
      if (head_input == 8) {
        instructions.push_back(
            instruction(OpCode::Cast, {6}, {8}, Attrs::NONE, 0));
      }
      const auto [type, attrs] = matmul_attrs();
      const uint32_t w = options.matmul_weight_operand != UINT32_MAX
                             ? options.matmul_weight_operand
                             : 4;
      instructions.push_back(
          instruction(OpCode::Matmul, {head_input, w}, {7}, type, attrs));
      inputs = {0, 1};
      outputs = {7};
    } else {
      std::vector<int64_t> cache_shape = {B, options.context, 1, H};
      values.push_back(input(0));                    // 0 ids
      values.push_back(input(1));                    // 1 positions
      values.push_back(weight_value(0));             // 2 embed
      values.push_back(weight_value(2));             // 3 head
      values.push_back(arena({B, S, H}, 0, 4 * H));  // 4 x
      values.push_back(view(4, {B, S, 1, H}));  // 5 x as [B, S, heads, dim]
      values.push_back(CreateValueDirect(builder, ValueKind::Cache, DType::F32,
                                         &cache_shape, 0, 0, 0, 0,
                                         0));            // 6 cache
      values.push_back(arena({B, S, 1, H}, 64, 4 * H));  // 7 attention out
      values.push_back(view(7, {B, S, H}));              // 8 as [B, S, H]
      values.push_back(arena({B, S, V}, 128, 4 * V));    // 9 logits
      peak = 128 + 4 * V;
      instructions.push_back(
          instruction(OpCode::Embedding, {0, 2}, {4}, Attrs::NONE, 0));
      instructions.push_back(
          instruction(OpCode::KVCacheWrite, {5, 1}, {6}, Attrs::NONE, 0));
      instructions.push_back(instruction(
          OpCode::Attention, {5, 6, 6, 1}, {7}, Attrs::AttentionAttrs,
          CreateAttentionAttrs(builder, 0.5, true).Union()));
      const auto [type, attrs] = matmul_attrs();
      const uint32_t w = options.matmul_weight_operand != UINT32_MAX
                             ? options.matmul_weight_operand
                             : 3;
      instructions.push_back(
          instruction(OpCode::Matmul, {8, w}, {9}, type, attrs));
      inputs = {0, 1, 6};
      outputs = {9, 6};
    }
    if (options.view_chain > 0) {
      // Value first + i views value first + i + 1; the last views value 4 (an
      // input-free weight in both toys).
      const uint32_t first = static_cast<uint32_t>(values.size());
      for (uint32_t i = 0; i < options.view_chain; ++i) {
        const uint32_t base = i + 1 < options.view_chain ? first + i + 1 : 4;
        values.push_back(view(base, {B, S, H}));
      }
    }
    if (options.view_cycle) {
      const uint32_t first = static_cast<uint32_t>(values.size());
      values.push_back(view(first + 1, {B, S, H}));
      values.push_back(view(first, {B, S, H}));
    }
    entries.push_back(CreateEntryPointDirect(
        builder, name, seq_len, &values, &inputs, &outputs, &instructions,
        options.arena_peak ? options.arena_peak : peak));
  }

  std::vector<int64_t> eos = {4};
  auto model = CreateModelInfoDirect(
      builder, options.attention ? "toy-attention" : "toy-dense", V, H, 1,
      options.context, 0, &eos, "plan_test_util.h");
  std::vector<fb::Offset<fb::String>> files = {
      builder.CreateString("weights.rank0.bin")};
  std::vector<fb::Offset<CacheSlot>> slots;
  if (options.attention) {
    std::vector<int64_t> slot_shape = {options.context, 1, H};
    slots.push_back(CreateCacheSlotDirect(builder, 0, DType::F32, &slot_shape));
  }
  auto plan =
      CreatePlan(builder, options.major, options.minor, model,
                 builder.CreateVector(entries), builder.CreateVector(weights),
                 builder.CreateVector(files), builder.CreateVector(slots));
  builder.Finish(plan, PlanIdentifier());
  out.plan.assign(builder.GetBufferPointer(),
                  builder.GetBufferPointer() + builder.GetSize());
  return out;
}

/// Writes plan.tsl and weights.rank0.bin into `dir` (which must exist).
inline void WriteToyArtifact(const ToyArtifact& artifact,
                             const std::string& dir) {
  std::ofstream(dir + "/plan.tsl", std::ios::binary)
      .write(reinterpret_cast<const char*>(artifact.plan.data()),
             artifact.plan.size());
  std::ofstream(dir + "/weights.rank0.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(artifact.weights.data()),
             artifact.weights.size());
}

/// The dense toy's logits for one token, computed directly from the formulas;
/// `round` models a Cast of the normed activations.
inline std::vector<float> ToyDenseLogits(int32_t id,
                                         float (*round)(float) = nullptr) {
  float sum = 0;
  for (int64_t h = 0; h < kToyHidden; ++h)
    sum += ToyEmbed(id, h) * ToyEmbed(id, h);
  const float inv =
      1.0f / std::sqrt(sum / kToyHidden + static_cast<float>(kToyEpsilon));
  std::vector<float> logits(kToyVocab, 0.0f);
  for (int64_t v = 0; v < kToyVocab; ++v)
    for (int64_t h = 0; h < kToyHidden; ++h)
      logits[v] +=
          ToyHead(v, h) * (round ? round(ToyEmbed(id, h) * inv * ToyNorm(h))
                                 : ToyEmbed(id, h) * inv * ToyNorm(h));
  return logits;
}

/// The attention toy's logits for the last token of `ids` (positions 0..n-1).
inline std::vector<float> ToyAttentionLogits(const std::vector<int32_t>& ids) {
  const size_t last = ids.size() - 1;
  std::vector<double> scores(ids.size());
  double max_score = -1e30;
  for (size_t j = 0; j <= last; ++j) {
    double dot = 0;
    for (int64_t h = 0; h < kToyHidden; ++h)
      dot += ToyEmbed(ids[last], h) * ToyEmbed(ids[j], h);
    scores[j] = 0.5 * dot;
    max_score = std::max(max_score, scores[j]);
  }
  double total = 0;
  for (double& s : scores) total += (s = std::exp(s - max_score));
  std::vector<double> attended(kToyHidden, 0.0);
  for (size_t j = 0; j <= last; ++j)
    for (int64_t h = 0; h < kToyHidden; ++h)
      attended[h] += scores[j] / total * ToyEmbed(ids[j], h);
  std::vector<float> logits(kToyVocab, 0.0f);
  for (int64_t v = 0; v < kToyVocab; ++v) {
    double sum = 0;
    for (int64_t h = 0; h < kToyHidden; ++h) sum += ToyHead(v, h) * attended[h];
    logits[v] = static_cast<float>(sum);
  }
  return logits;
}

}  // namespace tessel::testing

#endif  // TESSEL_TESTS_RUNTIME_PLAN_TEST_UTIL_H_
