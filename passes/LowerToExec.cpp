//===- LowerToExec.cpp - tessel tensors to tessel_exec buffers --*- C++ -*-===//
// Implements --tessel-lower-to-exec (see Passes.td for before -> after).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"
#include "dialects/tessel_exec/IR/TesselExecDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::tessel {
#define GEN_PASS_DEF_TESSELLOWERTOEXEC
#include "passes/Passes.h.inc"
} // namespace mlir::tessel

using namespace mlir;
using namespace mlir::tessel;

namespace {

/// The buffer type of a tessel value type: same shape; quantized weights keep their
/// storage element type.
MemRefType toMemRef(Type type) {
  if (auto quantized = dyn_cast<QuantizedTensorType>(type))
    return MemRefType::get(quantized.getShape(), quantized.getStorageType());
  auto tensor = cast<RankedTensorType>(type);
  return MemRefType::get(tensor.getShape(), tensor.getElementType());
}

LogicalResult lowerFunction(func::FuncOp func) {
  if (func.isExternal())
    return success();
  if (!func.getBody().hasOneBlock())
    return func.emitOpError() << "must have a single block to be lowered to tessel_exec";
  Block &body = func.front();
  for (BlockArgument arg : body.getArguments()) {
    if (!isa<RankedTensorType>(arg.getType()))
      return func.emitOpError() << "argument #" << arg.getArgNumber()
                                << " is not a ranked tensor";
    arg.setType(toMemRef(arg.getType()));
  }

  OpBuilder b(func.getContext());
  IRMapping map;
  SmallVector<Operation *> lowered;
  auto launch = [&](Operation *op, StringRef kernel, ValueRange ins, ValueRange outs) {
    auto launchOp = tessel_exec::LaunchOp::create(b, op->getLoc(), b.getStringAttr(kernel),
                                                  ins, outs);
    for (NamedAttribute attr : op->getAttrDictionary())
      launchOp->setAttr(attr.getName(), attr.getValue());
    return launchOp;
  };
  auto mapped = [&](ValueRange values) {
    return llvm::map_to_vector(values, [&](Value v) { return map.lookupOrDefault(v); });
  };

  for (Operation &op : body) {
    b.setInsertionPoint(&op);
    Location loc = op.getLoc();
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](ParamOp param) {
              auto weight = tessel_exec::WeightOp::create(
                  b, loc, toMemRef(param.getType()), param.getNameAttr(),
                  b.getI64IntegerAttr(0),
                  isa<QuantizedTensorType>(param.getType()) ? TypeAttr::get(param.getType())
                                                            : TypeAttr(),
                  param->getAttrOfType<StringAttr>("tessel.dequantize"));
              map.map(param.getResult(), weight.getResult());
              return success();
            })
            .Case([&](ExpertParamsOp experts) {
              auto weight = tessel_exec::WeightOp::create(
                  b, loc, toMemRef(experts.getType()), experts.getNamePatternAttr(),
                  b.getI64IntegerAttr(experts.getCount()),
                  isa<QuantizedTensorType>(experts.getType()) ? TypeAttr::get(experts.getType())
                                                              : TypeAttr(),
                  StringAttr());
              map.map(experts.getResult(), weight.getResult());
              return success();
            })
            .Case([&](ReshapeOp reshape) {
              auto view = tessel_exec::ViewOp::create(b, loc, toMemRef(reshape.getType()),
                                                      map.lookupOrDefault(reshape.getInput()));
              map.map(reshape.getResult(), view.getResult());
              return success();
            })
            .Case([&](KVCacheWriteOp write) {
              Value cache = map.lookupOrDefault(write.getCache());
              launch(write, "kv_cache_write",
                     mapped({write.getUpdate(), write.getPositions()}), {cache});
              map.map(write.getResult(), cache);
              return success();
            })
            .Case([&](FusionOp fusion) {
              // The group's body moves into the launch unchanged; only its inputs and
              // results become buffers.
              SmallVector<Value> outs;
              for (Value r : fusion.getResults()) {
                auto alloc = tessel_exec::AllocOp::create(b, loc, toMemRef(r.getType()),
                                                          IntegerAttr());
                map.map(r, alloc.getResult());
                outs.push_back(alloc);
              }
              auto launchOp = launch(fusion, "fusion", mapped(fusion.getInputs()), outs);
              launchOp.getBody().takeBody(fusion.getBody());
              return success();
            })
            .Case([&](func::ReturnOp ret) {
              func::ReturnOp::create(b, loc, mapped(ret.getOperands()));
              return success();
            })
            .Default([&](Operation *other) -> LogicalResult {
              if (!isa<TesselDialect>(other->getDialect()))
                return other->emitOpError() << "cannot be lowered to tessel_exec";
              SmallVector<Value> outs;
              for (Value r : other->getResults()) {
                auto alloc = tessel_exec::AllocOp::create(b, loc, toMemRef(r.getType()),
                                                          IntegerAttr());
                map.map(r, alloc.getResult());
                outs.push_back(alloc);
              }
              StringRef kernel = other->getName().stripDialect();
              launch(other, kernel, mapped(other->getOperands()), outs);
              return success();
            });
    if (failed(result))
      return failure();
    lowered.push_back(&op);
  }
  for (Operation *op : llvm::reverse(lowered))
    op->erase();
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  func.setFunctionType(FunctionType::get(func.getContext(), body.getArgumentTypes(),
                                         ret.getOperandTypes()));
  return success();
}

struct TesselLowerToExecPass : mlir::tessel::impl::TesselLowerToExecBase<TesselLowerToExecPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(lowerFunction(func)))
        return signalPassFailure();
  }
};

} // namespace
