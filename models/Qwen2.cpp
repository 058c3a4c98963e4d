//===- Qwen2.cpp - Qwen2 and Qwen2.5 ----------------------------*- C++ -*-===//
// The Llama layer with biases on the q/k/v projections; small models tie embeddings.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/Families.h"

using namespace tessel::models;
using tessel::import::ModelConfig;

namespace {

void readQwen2Config(ConfigReader &reader, ModelConfig &config) {
  config.attention_bias = true;  // Qwen2 always has q/k/v biases
  if (reader.getBool("use_sliding_window", false))
    reader.error("'use_sliding_window': true is not supported for qwen2 (released Qwen2 "
                 "and Qwen2.5 checkpoints set it to false)");
  std::string act = reader.getString("hidden_act", "silu");
  if (act != "silu")
    reader.error("'hidden_act' '" + act + "' is not supported for qwen2 (only silu)");
}

mlir::Value qwen2Layer(ModelBuilder &b, int64_t layer, mlir::Value x) {
  return preNormDecoderLayer(b, layer, x, /*qkvBias=*/true, /*outputBias=*/false,
                             [&](mlir::Value y, const std::string &p) {
                               return gatedMlpOf(b, y, p);
                             });
}

} // namespace

const Family &tessel::models::qwen2Family() {
  static const Family family{{"qwen2"}, readQwen2Config, qwen2Layer};
  return family;
}
