//===- ModelConfig.h - a transformer's hyper-parameters ---------*- C++ -*-===//
// Plain data describing one checkpoint's architecture, filled from a Hugging Face
// config.json or GGUF metadata and read by the family graph builders in models/.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_IMPORT_MODELCONFIG_H
#define TESSEL_COMPILER_IMPORT_MODELCONFIG_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessel::import {

/// RoPE frequency scaling, as `rope_scaling` / `rope_parameters` describe it.
struct RopeScaling {
  std::string type;  // "linear", "dynamic", "llama3" or "yarn"
  double factor = 1.0;
  int64_t original_max_position = 0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  double beta_fast = 32.0;        // yarn
  double beta_slow = 1.0;         // yarn
  double mscale = 1.0;            // yarn (DeepSeek)
  double mscale_all_dim = 0.0;    // yarn (DeepSeek)
  double attention_factor = 0.0;  // yarn; 0: derived from factor
};

struct RopeConfig {
  double theta = 10000.0;
  int64_t rotary_dim = 0;    // features rotated per head (partial rotary when < head_dim)
  bool interleaved = false;  // (2i, 2i+1) pairs instead of (i, i + d/2)
  std::optional<RopeScaling> scaling;
};

/// Mixture of experts: Mixtral (softmax top-k) and DeepSeek (groups, bias, shared).
struct MoEConfig {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t intermediate_size = 0;  // per routed expert
  bool sigmoid_scoring = false;   // softmax otherwise
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  bool correction_bias = false;   // DeepSeek-V3 e_score_correction_bias
  int64_t num_shared_experts = 0; // DeepSeek: one MLP of num_shared * intermediate
  int64_t first_dense_layers = 0; // DeepSeek first_k_dense_replace
  int64_t moe_layer_freq = 1;
};

/// DeepSeek multi-head latent attention.
struct MLAConfig {
  int64_t q_lora_rank = 0;  // 0: a single q_proj (DeepSeek-V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
};

struct ModelConfig {
  std::string model_type;  // config.json's model_type or GGUF's general.architecture
  std::string source;      // where it was read from, for messages

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // bias on q/k/v projections (Qwen2)
  std::optional<int64_t> sliding_window;
  RopeConfig rope;
  std::optional<MoEConfig> moe;
  std::optional<MLAConfig> mla;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
};

}  // namespace tessel::import

#endif  // TESSEL_COMPILER_IMPORT_MODELCONFIG_H
