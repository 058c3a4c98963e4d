//===- TesselExecDialect.cpp - the tessel_exec dialect ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel_exec/IR/TesselExecDialect.h"

#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::tessel_exec;

#include "dialects/tessel_exec/IR/TesselExecDialect.cpp.inc"

void TesselExecDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/tessel_exec/IR/TesselExecOps.cpp.inc"
      >();
}

int64_t mlir::tessel_exec::elementBytes(Type type) {
  return (type.getIntOrFloatBitWidth() + 7) / 8;
}

int64_t AllocOp::getBytesPerToken() {
  auto type = cast<MemRefType>(getType());
  int64_t bytes = elementBytes(type.getElementType());
  for (int64_t dim : type.getShape().drop_front(2))
    bytes *= dim;
  return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
}

LogicalResult AllocOp::verify() {
  auto type = cast<MemRefType>(getType());
  if (type.getRank() < 2)
    return emitOpError() << "expects a [batch, seq, ...] buffer of rank 2 or more";
  for (int64_t dim : type.getShape().drop_front(2))
    if (ShapedType::isDynamic(dim))
      return emitOpError() << "expects static dimensions after [batch, seq]";
  if (std::optional<uint64_t> offset = getOffset())
    if (static_cast<int64_t>(*offset) % kArenaAlignment != 0)
      return emitOpError() << "offset " << *offset << " is not a multiple of "
                           << kArenaAlignment;
  return success();
}

LogicalResult ViewOp::verify() {
  auto from = cast<MemRefType>(getSource().getType());
  auto to = cast<MemRefType>(getType());
  if (from.getElementType() != to.getElementType())
    return emitOpError() << "cannot change the element type";
  auto staticProduct = [](MemRefType type) {
    int64_t product = 1;
    for (int64_t dim : type.getShape())
      if (!ShapedType::isDynamic(dim))
        product *= dim;
    return product;
  };
  if (from.getNumDynamicDims() == to.getNumDynamicDims() &&
      staticProduct(from) != staticProduct(to))
    return emitOpError() << "changes the number of elements";
  return success();
}

LogicalResult LaunchOp::verify() {
  if (getKernel().empty())
    return emitOpError() << "needs a kernel name";
  if (getOuts().empty())
    return emitOpError() << "writes no output";
  if (getBody().empty()) {
    if (getKernel() == "fusion")
      return emitOpError() << "of a fusion needs a body";
    return success();
  }
  if (getKernel() != "fusion")
    return emitOpError() << "has a body but its kernel is not \"fusion\"";
  Block &body = getBody().front();
  if (body.getNumArguments() != getIns().size())
    return emitOpError() << "has " << getIns().size() << " inputs but its body takes "
                         << body.getNumArguments() << " arguments";
  for (auto [i, in, arg] : llvm::enumerate(getIns(), body.getArguments())) {
    auto memref = cast<MemRefType>(in.getType());
    auto tensor = dyn_cast<RankedTensorType>(arg.getType());
    if (!tensor || tensor.getShape() != memref.getShape() ||
        tensor.getElementType() != memref.getElementType())
      return emitOpError() << "body argument #" << i << " does not match input type "
                           << memref;
  }
  if (body.empty() || body.back().getNumOperands() != getOuts().size())
    return emitOpError() << "body must yield one value per output";
  return success();
}

#define GET_OP_CLASSES
#include "dialects/tessel_exec/IR/TesselExecOps.cpp.inc"
