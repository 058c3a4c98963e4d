//===- Families.h - the model families tessel imports -----------*- C++ -*-===//
// Each family reads its config.json keys and builds its decoder layer (one file per
// family: Llama.cpp, Qwen2.cpp, Mixtral.cpp, DeepSeek.cpp).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_MODELS_FAMILIES_H
#define TESSEL_MODELS_FAMILIES_H

#include "models/HFConfig.h"
#include "models/ModelBuilder.h"

namespace tessel::models {

struct Family {
  /// config.json `model_type` values this family handles.
  std::vector<llvm::StringRef> model_types;
  /// Reads the family's keys (after readCommonConfig) and checks their invariants.
  void (*read_config)(ConfigReader &reader, import::ModelConfig &config);
  /// Builds decoder layer `layer`.
  DecoderLayerFn layer;
};

const Family &llamaFamily();
const Family &qwen2Family();
const Family &mixtralFamily();
const Family &deepseekFamily();

/// The family of `modelType`, or nullptr.
const Family *findFamily(llvm::StringRef modelType);
/// "deepseek_v2, deepseek_v3, llama, mistral, mixtral, qwen2".
std::string supportedModelTypes();

/// The standard pre-norm decoder layer of Llama-like families:
/// h = x + attn(norm(x)); out = h + mlp(norm(h)), with `mlp` given.
mlir::Value preNormDecoderLayer(ModelBuilder &b, int64_t layer, mlir::Value x, bool qkvBias,
                                bool outputBias,
                                const std::function<mlir::Value(mlir::Value,
                                                                const std::string &)> &mlp);

/// The SwiGLU MLP under `prefix` ("model.layers.N."): mlp.{gate,up,down}_proj.
mlir::Value gatedMlpOf(ModelBuilder &b, mlir::Value x, const std::string &prefix);

/// "model.layers.<layer>."
std::string layerPrefix(int64_t layer);

} // namespace tessel::models

#endif // TESSEL_MODELS_FAMILIES_H
