//===- WeightStats.cpp - parameter and weight-byte totals -------*- C++ -*-===//
// Implements --tessel-weight-stats: distinct weights per function and their bytes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"
#include "passes/Passes.h"

#include "llvm/ADT/StringMap.h"

namespace mlir::tessel {
#define GEN_PASS_DEF_TESSELWEIGHTSTATS
#include "passes/Passes.h.inc"
} // namespace mlir::tessel

using namespace mlir;
using namespace mlir::tessel;

namespace {

struct WeightSize {
  int64_t params = 0;
  int64_t bytes = 0;
};

/// Elements and bytes of one weight of `type`; failure for dynamic shapes.
FailureOr<WeightSize> sizeOfWeight(Type type) {
  if (auto quantized = dyn_cast<QuantizedTensorType>(type))
    return WeightSize{ShapedType::getNumElements(quantized.getShape()),
                      quantized.getStorageBytes()};
  auto tensor = cast<RankedTensorType>(type);
  if (!tensor.hasStaticShape())
    return failure();
  int64_t elements = tensor.getNumElements();
  int64_t bits = tensor.getElementType().getIntOrFloatBitWidth();
  return WeightSize{elements, (elements * bits + 7) / 8};
}

/// Adds the weights that `root` references to `seen` (keyed by checkpoint name).
LogicalResult collectWeights(Operation *root, llvm::StringMap<WeightSize> &seen) {
  WalkResult result = root->walk([&](Operation *op) -> WalkResult {
    if (auto param = dyn_cast<ParamOp>(op)) {
      FailureOr<WeightSize> size = sizeOfWeight(param.getType());
      if (failed(size))
        return param.emitOpError() << "has a dynamic shape; weights must be static";
      seen.try_emplace(param.getName(), *size);
    } else if (auto experts = dyn_cast<ExpertParamsOp>(op)) {
      FailureOr<WeightSize> size = sizeOfWeight(experts.getType());
      if (failed(size))
        return experts.emitOpError() << "has a dynamic shape; weights must be static";
      seen.try_emplace(experts.getNamePattern(), *size);
    }
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

WeightSize total(const llvm::StringMap<WeightSize> &weights) {
  WeightSize sum;
  for (const auto &entry : weights) {
    sum.params += entry.second.params;
    sum.bytes += entry.second.bytes;
  }
  return sum;
}

struct TesselWeightStatsPass
    : mlir::tessel::impl::TesselWeightStatsBase<TesselWeightStatsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder builder(module.getContext());
    llvm::StringMap<WeightSize> moduleWeights;
    for (auto func : module.getOps<func::FuncOp>()) {
      llvm::StringMap<WeightSize> funcWeights;
      if (failed(collectWeights(func, funcWeights)))
        return signalPassFailure();
      WeightSize sum = total(funcWeights);
      func->setAttr("tessel.num_params", builder.getI64IntegerAttr(sum.params));
      func->setAttr("tessel.weight_bytes", builder.getI64IntegerAttr(sum.bytes));
      if (emitRemarks)
        func.emitRemark() << "@" << func.getSymName() << " reads " << funcWeights.size()
                          << " weights: " << sum.params << " parameters, " << sum.bytes
                          << " bytes";
      for (auto &entry : funcWeights)
        moduleWeights.try_emplace(entry.first(), entry.second);
    }
    WeightSize sum = total(moduleWeights);
    module->setAttr("tessel.num_params", builder.getI64IntegerAttr(sum.params));
    module->setAttr("tessel.weight_bytes", builder.getI64IntegerAttr(sum.bytes));
  }
};

} // namespace
