//===- Families.cpp - family registry and the shared decoder layer -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/Families.h"

#include "llvm/ADT/StringExtras.h"

#include <algorithm>

using namespace tessel::models;

namespace {
const Family *const kFamilies[] = {&llamaFamily(), &qwen2Family(), &mixtralFamily(),
                                   &deepseekFamily()};
} // namespace

const Family *::tessel::models::findFamily(llvm::StringRef modelType) {
  for (const Family *family : kFamilies)
    if (llvm::is_contained(family->model_types, modelType))
      return family;
  return nullptr;
}

std::string tessel::models::supportedModelTypes() {
  std::vector<std::string> names;
  for (const Family *family : kFamilies)
    for (llvm::StringRef type : family->model_types)
      names.push_back(type.str());
  std::sort(names.begin(), names.end());
  return llvm::join(names, ", ");
}

std::string tessel::models::layerPrefix(int64_t layer) {
  return "model.layers." + std::to_string(layer) + ".";
}

mlir::Value tessel::models::preNormDecoderLayer(
    ModelBuilder &b, int64_t layer, mlir::Value x, bool qkvBias, bool outputBias,
    const std::function<mlir::Value(mlir::Value, const std::string &)> &mlp) {
  std::string p = layerPrefix(layer);
  mlir::Value attn =
      b.attention(layer, b.rmsNorm(x, p + "input_layernorm.weight"), p + "self_attn.", qkvBias, outputBias);
  mlir::Value h = b.add(x, attn);
  return b.add(h, mlp(b.rmsNorm(h, p + "post_attention_layernorm.weight"), p));
}

mlir::Value tessel::models::gatedMlpOf(ModelBuilder &b, mlir::Value x,
                                       const std::string &prefix) {
  return b.gatedMlp(x, prefix + "mlp.gate_proj.weight", prefix + "mlp.up_proj.weight",
                    prefix + "mlp.down_proj.weight", b.config().intermediate_size);
}
