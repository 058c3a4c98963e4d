//===- Llama.cpp - Llama 2/3/3.1/3.2, SmolLM, Mistral -----------*- C++ -*-===//
// Pre-norm decoder: RMSNorm, GQA attention with RoPE (any scaling), SwiGLU MLP;
// Mistral adds a sliding window. Tied embeddings and explicit head_dim come from the
// shared config reader.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/Families.h"

using namespace tessel::models;
using tessel::import::ModelConfig;

namespace {

void readLlamaConfig(ConfigReader &reader, ModelConfig &config) {
  config.attention_bias = reader.getBool("attention_bias", false);
  if (reader.getBool("mlp_bias", false))
    reader.error("'mlp_bias': true is not supported (no Llama checkpoint uses it)");
  std::string act = reader.getString("hidden_act", "silu");
  if (act != "silu")
    reader.error("'hidden_act' '" + act + "' is not supported for llama (only silu)");
  config.sliding_window = reader.getOptionalInt("sliding_window");
  if (config.sliding_window)
    reader.requirePositive("sliding_window", *config.sliding_window);
}

mlir::Value llamaLayer(ModelBuilder &b, int64_t layer, mlir::Value x) {
  const ModelConfig &c = b.config();
  return preNormDecoderLayer(b, layer, x, c.attention_bias, c.attention_bias,
                             [&](mlir::Value y, const std::string &p) {
                               return gatedMlpOf(b, y, p);
                             });
}

} // namespace

const Family &tessel::models::llamaFamily() {
  static const Family family{{"llama", "mistral"}, readLlamaConfig, llamaLayer};
  return family;
}
