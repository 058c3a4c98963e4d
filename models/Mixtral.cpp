//===- Mixtral.cpp - Mixtral sparse MoE -------------------------*- C++ -*-===//
// The Llama layer with the MLP replaced by experts: softmax over all experts, top-k,
// weights renormalized over the chosen ones (w1 = gate, w3 = up, w2 = down).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/Families.h"

using namespace tessel::models;
using tessel::import::ModelConfig;

namespace {

void readMixtralConfig(ConfigReader &reader, ModelConfig &config) {
  ::tessel::import::MoEConfig moe;
  moe.num_experts = reader.getInt("num_local_experts");
  moe.top_k = reader.getInt("num_experts_per_tok");
  moe.intermediate_size = config.intermediate_size;
  moe.norm_topk_prob = true;
  reader.requirePositive("num_local_experts", moe.num_experts);
  reader.requirePositive("num_experts_per_tok", moe.top_k);
  if (moe.top_k > moe.num_experts)
    reader.error("'num_experts_per_tok' (" + llvm::Twine(moe.top_k) +
                 ") exceeds 'num_local_experts' (" + llvm::Twine(moe.num_experts) + ")");
  config.moe = moe;
  config.sliding_window = reader.getOptionalInt("sliding_window");
  if (config.sliding_window)
    reader.requirePositive("sliding_window", *config.sliding_window);
}

mlir::Value mixtralLayer(ModelBuilder &b, int64_t layer, mlir::Value x) {
  return preNormDecoderLayer(b, layer, x, /*qkvBias=*/false, /*outputBias=*/false,
                             [&](mlir::Value y, const std::string &p) {
                               std::string moe = p + "block_sparse_moe.";
                               return b.moe(y, moe + "gate.weight", std::nullopt,
                                            moe + "experts.{}.w1.weight",
                                            moe + "experts.{}.w3.weight",
                                            moe + "experts.{}.w2.weight");
                             });
}

} // namespace

const Family &tessel::models::mixtralFamily() {
  static const Family family{{"mixtral"}, readMixtralConfig, mixtralLayer};
  return family;
}
