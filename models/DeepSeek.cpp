//===- DeepSeek.cpp - DeepSeek-V2 and DeepSeek-V3 ---------------*- C++ -*-===//
// Multi-head latent attention (optional q LoRA) with interleaved YaRN RoPE on the
// rotary slice; dense MLPs for the first `first_k_dense_replace` layers, then MoE:
// V2 softmax scoring with group-limited greedy top-k (group score: max), V3 sigmoid
// scoring with a score-correction bias (group score: sum of top 2), optional
// renormalization, routed scaling, plus shared experts as one wider MLP.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/Families.h"

using namespace tessel::models;
using tessel::import::ModelConfig;

namespace {

void readDeepseekConfig(ConfigReader &reader, ModelConfig &config) {
  bool v3 = config.model_type == "deepseek_v3";
  ::tessel::import::MLAConfig mla;
  mla.q_lora_rank = reader.getOptionalInt("q_lora_rank").value_or(0);
  mla.kv_lora_rank = reader.getInt("kv_lora_rank");
  mla.qk_nope_head_dim = reader.getInt("qk_nope_head_dim");
  mla.qk_rope_head_dim = reader.getInt("qk_rope_head_dim");
  mla.v_head_dim = reader.getInt("v_head_dim");
  for (llvm::StringRef key : {"kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                              "v_head_dim"})
    reader.requirePositive(key, reader.getInt(key, 1));
  if (mla.q_lora_rank < 0)
    reader.error("'q_lora_rank' must be positive or null, got " +
                 llvm::Twine(mla.q_lora_rank));
  config.mla = mla;
  // RoPE covers only the rotary slice; DeepSeek rotates interleaved pairs (V2 through
  // complex multiplication, V3 through `rope_interleave`).
  config.rope.rotary_dim = mla.qk_rope_head_dim;
  config.rope.interleaved = v3 ? reader.getBool("rope_interleave", true) : true;

  if (!reader.getOptionalInt("n_routed_experts"))
    return;  // a dense DeepSeek
  ::tessel::import::MoEConfig moe;
  moe.num_experts = reader.getInt("n_routed_experts");
  moe.top_k = reader.getInt("num_experts_per_tok");
  moe.intermediate_size = reader.getInt("moe_intermediate_size");
  moe.num_shared_experts = reader.getInt("n_shared_experts", 0);
  moe.first_dense_layers = reader.getInt("first_k_dense_replace", 0);
  moe.moe_layer_freq = reader.getInt("moe_layer_freq", 1);
  moe.routed_scaling_factor = reader.getDouble("routed_scaling_factor", 1.0);
  std::string method = reader.getString("topk_method", v3 ? "noaux_tc" : "greedy");
  std::string scoring = reader.getString("scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring != "softmax" && scoring != "sigmoid")
    reader.error("'scoring_func' '" + scoring + "' is not supported (softmax, sigmoid)");
  moe.sigmoid_scoring = scoring == "sigmoid";
  if (method == "greedy") {
    moe.n_group = moe.topk_group = 1;
  } else if (method == "group_limited_greedy" || method == "noaux_tc") {
    moe.n_group = reader.getInt("n_group", 1);
    moe.topk_group = reader.getInt("topk_group", 1);
  } else {
    reader.error("'topk_method' '" + method +
                 "' is not supported (greedy, group_limited_greedy, noaux_tc)");
  }
  moe.correction_bias = method == "noaux_tc";
  // HF's DeepSeek-V2 never renormalizes the chosen weights, whatever the config says.
  moe.norm_topk_prob = v3 && reader.getBool("norm_topk_prob", false);
  for (llvm::StringRef key : {"n_routed_experts", "num_experts_per_tok",
                              "moe_intermediate_size", "moe_layer_freq"})
    reader.requirePositive(key, reader.getInt(key, 1));
  if (moe.n_group > 0 && moe.num_experts % moe.n_group != 0)
    reader.error("'n_group' (" + llvm::Twine(moe.n_group) + ") must divide " +
                 "'n_routed_experts' (" + llvm::Twine(moe.num_experts) + ")");
  if (moe.topk_group < 1 || moe.topk_group > moe.n_group)
    reader.error("'topk_group' (" + llvm::Twine(moe.topk_group) +
                 ") must be between 1 and 'n_group' (" + llvm::Twine(moe.n_group) + ")");
  if (moe.n_group > 0 && moe.top_k > moe.topk_group * (moe.num_experts / moe.n_group))
    reader.error("'num_experts_per_tok' (" + llvm::Twine(moe.top_k) +
                 ") exceeds the experts of the 'topk_group' selected groups");
  config.moe = moe;
}

bool isMoELayer(const ModelConfig &c, int64_t layer) {
  return c.moe && layer >= c.moe->first_dense_layers && layer % c.moe->moe_layer_freq == 0;
}

mlir::Value deepseekLayer(ModelBuilder &b, int64_t layer, mlir::Value x) {
  const ModelConfig &c = b.config();
  std::string p = layerPrefix(layer);
  mlir::Value attn =
      b.mlaAttention(layer, b.rmsNorm(x, p + "input_layernorm.weight"), p + "self_attn.");
  mlir::Value h = b.add(x, attn);
  mlir::Value y = b.rmsNorm(h, p + "post_attention_layernorm.weight");
  std::string mlp = p + "mlp.";
  mlir::Value out;
  if (!isMoELayer(c, layer)) {
    out = gatedMlpOf(b, y, p);
  } else {
    std::string bias = mlp + "gate.e_score_correction_bias";
    out = b.moe(y, mlp + "gate.weight",
                c.moe->correction_bias ? std::optional<llvm::StringRef>(bias) : std::nullopt,
                mlp + "experts.{}.gate_proj.weight", mlp + "experts.{}.up_proj.weight",
                mlp + "experts.{}.down_proj.weight");
    if (c.moe->num_shared_experts > 0)
      out = b.add(out, b.gatedMlp(y, mlp + "shared_experts.gate_proj.weight",
                                  mlp + "shared_experts.up_proj.weight",
                                  mlp + "shared_experts.down_proj.weight",
                                  c.moe->intermediate_size * c.moe->num_shared_experts));
  }
  return b.add(h, out);
}

} // namespace

const Family &tessel::models::deepseekFamily() {
  static const Family family{{"deepseek_v2", "deepseek_v3"}, readDeepseekConfig,
                             deepseekLayer};
  return family;
}
