//===- TesselCanonicalize.cpp - folders and canonical patterns --*- C++ -*-===//
// Folds and canonicalization patterns of the `tessel` shape and elementwise ops:
//   reshape(reshape(x))          -> reshape(x)        reshape to the same type -> x
//   transpose(transpose(x, p), q) -> transpose(x, p∘q) identity transpose     -> x
//   slice covering a whole dim   -> x                 concat of one input    -> x
//   scale(scale(x, a), b)        -> scale(x, a*b)     scale by 1.0           -> x
//   cast(cast(x: T -> wider) -> T) -> x               cast to the same type  -> x
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::tessel;

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (auto producer = getInput().getDefiningOp<ReshapeOp>()) {
    getInputMutable().assign(producer.getInput());
    if (getInput().getType() == getType())
      return getInput();
    return getResult();
  }
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  ArrayRef<int64_t> perm = getPermutation();
  for (auto [i, p] : llvm::enumerate(perm))
    if (static_cast<int64_t>(i) != p)
      return {};
  return getInput().getType() == getType() ? getInput() : OpFoldResult();
}

namespace {
/// transpose(transpose(x, inner), outer) -> transpose(x, inner[outer[i]]).
struct ComposeTransposes : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<TransposeOp>();
    if (!inner)
      return failure();
    SmallVector<int64_t> composed;
    for (int64_t p : op.getPermutation())
      composed.push_back(inner.getPermutation()[p]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, op.getType(), inner.getInput(),
                                             rewriter.getDenseI64ArrayAttr(composed));
    return success();
  }
};
} // namespace

void TransposeOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<ComposeTransposes>(context);
}

OpFoldResult SliceOp::fold(FoldAdaptor) {
  auto inType = cast<ShapedType>(getInput().getType());
  if (getStart() == 0 && inType.getDimSize(getDim()) == static_cast<int64_t>(getSize()) &&
      inType == getType())
    return getInput();
  return {};
}

OpFoldResult ConcatOp::fold(FoldAdaptor) {
  if (getInputs().size() == 1 && getInputs().front().getType() == getType())
    return getInputs().front();
  return {};
}

OpFoldResult ScaleOp::fold(FoldAdaptor) {
  if (getFactor().convertToDouble() == 1.0)
    return getInput();
  return {};
}

namespace {
/// scale(scale(x, a), b) -> scale(x, a * b).
struct MergeScales : OpRewritePattern<ScaleOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ScaleOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<ScaleOp>();
    if (!inner)
      return failure();
    double factor = inner.getFactor().convertToDouble() * op.getFactor().convertToDouble();
    rewriter.replaceOpWithNewOp<ScaleOp>(op, op.getType(), inner.getInput(),
                                         rewriter.getF64FloatAttr(factor));
    return success();
  }
};
} // namespace

void ScaleOp::getCanonicalizationPatterns(RewritePatternSet &results, MLIRContext *context) {
  results.add<MergeScales>(context);
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

namespace {
/// cast(cast(x : T -> W) : W -> T) -> x when W represents every value of T exactly
/// (W is at least as wide in both mantissa and exponent, e.g. bf16 -> f32 -> bf16).
struct DropWideningRoundTrip : OpRewritePattern<CastOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CastOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<CastOp>();
    if (!inner || inner.getInput().getType() != op.getType())
      return failure();
    auto narrow = cast<FloatType>(getElementTypeOrSelf(inner.getInput()));
    auto wide = cast<FloatType>(getElementTypeOrSelf(inner.getResult()));
    const llvm::fltSemantics &n = narrow.getFloatSemantics();
    const llvm::fltSemantics &w = wide.getFloatSemantics();
    if (!llvm::APFloat::isRepresentableBy(n, w))
      return failure();
    rewriter.replaceOp(op, inner.getInput());
    return success();
  }
};
} // namespace

void CastOp::getCanonicalizationPatterns(RewritePatternSet &results, MLIRContext *context) {
  results.add<DropWideningRoundTrip>(context);
}
