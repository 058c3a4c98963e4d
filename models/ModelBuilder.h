//===- ModelBuilder.h - building tessel graphs of decoder LLMs --*- C++ -*-===//
// The blocks every family is made of (embedding, RMSNorm, projections, attention with
// a KV cache, MLA, gated MLPs, MoE) and the entry points (`prefill`, `decode`) around a
// family's decoder layer. Weights are checked against the checkpoint as they are
// referenced: a missing tensor, a shape that disagrees with the config or an
// unsupported dtype is recorded and reported together at the end.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_MODELS_MODELBUILDER_H
#define TESSEL_MODELS_MODELBUILDER_H

#include "compiler/import/ModelConfig.h"
#include "compiler/import/WeightSource.h"
#include "dialects/tessel/IR/TesselDialect.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Error.h"

#include <functional>

namespace tessel::models {

/// The KV cache of one layer inside an entry point: inputs, and outputs once written.
struct LayerCache {
  llvm::SmallVector<mlir::Value, 2> in;
  llvm::SmallVector<mlir::Value, 2> out;
};

class ModelBuilder;

/// Builds one decoder layer: `hidden` in, hidden out; writes its caches' outputs.
using DecoderLayerFn =
    std::function<mlir::Value(ModelBuilder &, int64_t layer, mlir::Value hidden)>;

class ModelBuilder {
public:
  ModelBuilder(mlir::MLIRContext *context, const import::ModelConfig &config,
               const import::WeightSource &weights, int64_t maxContext);

  const import::ModelConfig &config() const { return config_; }
  mlir::OpBuilder &builder() { return builder_; }
  mlir::Location loc() const { return loc_; }
  /// The activation element type (the embedding table's float type, or f32).
  mlir::Type activationType() const { return activation_; }
  mlir::Value positions() const { return positions_; }
  LayerCache &cache(int64_t layer) { return caches_[layer]; }

  // --- Weights -------------------------------------------------------------------------
  /// `tessel.param` for checkpoint tensor `name` of the given shape.
  mlir::Value param(llvm::StringRef name, llvm::ArrayRef<int64_t> shape);
  /// Whether the checkpoint has tensor `name` (for optional weights such as biases).
  bool hasWeight(llvm::StringRef name) const;
  /// `tessel.expert_params` stacking `count` tensors named by `pattern` ("{}" = index).
  mlir::Value expertParams(llvm::StringRef pattern, int64_t count,
                           llvm::ArrayRef<int64_t> shape);

  // --- Blocks on [batch, seq, features] activations --------------------------------------
  mlir::Value rmsNorm(mlir::Value x, llvm::StringRef weight);
  /// x @ W^T (+ bias) with W [out, in] named `weight`.
  mlir::Value linear(mlir::Value x, llvm::StringRef weight, int64_t out,
                     std::optional<llvm::StringRef> bias = std::nullopt);
  /// down(act(gate(x)) * up(x)).
  mlir::Value gatedMlp(mlir::Value x, llvm::StringRef gate, llvm::StringRef up,
                       llvm::StringRef down, int64_t intermediate);
  mlir::Value add(mlir::Value a, mlir::Value b);
  mlir::Value reshape(mlir::Value x, llvm::ArrayRef<int64_t> trailing);
  mlir::Value slice(mlir::Value x, int64_t dim, int64_t start, int64_t size);
  mlir::Value rope(mlir::Value x, const import::RopeConfig &rope);
  /// Standard attention of layer `layer` with projections under `prefix`
  /// ("model.layers.N.self_attn."): q/k/v (+ biases), RoPE, cache write, o_proj (+ bias).
  mlir::Value attention(int64_t layer, mlir::Value x, llvm::StringRef prefix, bool qkvBias,
                        bool outputBias);
  /// DeepSeek MLA of layer `layer` under `prefix`.
  mlir::Value mlaAttention(int64_t layer, mlir::Value x, llvm::StringRef prefix);
  /// Routed experts: router over `gate` (+ bias) and stacked expert weights.
  mlir::Value moe(mlir::Value x, llvm::StringRef gate, std::optional<llvm::StringRef> bias,
                  llvm::StringRef gatePattern, llvm::StringRef upPattern,
                  llvm::StringRef downPattern);

  /// Builds the module: `@prefill` and `@decode` around `layerFn`, checks every
  /// checkpoint tensor was used, and verifies. Errors list every problem found.
  llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>> build(const DecoderLayerFn &layerFn);

private:
  mlir::RankedTensorType actType(llvm::ArrayRef<int64_t> trailing) const;
  mlir::Type weightType(const import::WeightInfo &info, llvm::ArrayRef<int64_t> shape);
  void buildEntryPoint(mlir::ModuleOp module, llvm::StringRef name, int64_t seq,
                       const DecoderLayerFn &layerFn);
  llvm::SmallVector<mlir::RankedTensorType, 2> cacheTypes() const;
  void addError(const llvm::Twine &message);
  /// Marks params whose GGUF block format the weight writer must dequantize.
  void markDequantized(mlir::Operation *op, const import::WeightInfo &info);

  mlir::MLIRContext *context_;
  const import::ModelConfig &config_;
  const import::WeightSource &weights_;
  int64_t maxContext_;
  mlir::OpBuilder builder_;
  mlir::Location loc_;
  mlir::Type activation_;
  int64_t seq_ = mlir::ShapedType::kDynamic;
  mlir::Value positions_;
  std::vector<LayerCache> caches_;
  llvm::StringSet<> used_;
  /// Weights already checked (each entry point references them again), by name.
  llvm::StringMap<std::pair<std::string, mlir::Type>> checked_;
  std::vector<std::string> errors_;
};

} // namespace tessel::models

#endif // TESSEL_MODELS_MODELBUILDER_H
