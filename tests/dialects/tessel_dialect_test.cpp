//===- tessel_dialect_test.cpp - C++ API tests of the dialect ---*- C++ -*-===//
// Builds tessel IR through the C++ API the importers use, checks verifier
// diagnostics programmatically, and runs a pass through a PassManager.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "gtest/gtest.h"

using namespace mlir;
using namespace mlir::tessel;

namespace {

class TesselDialectTest : public ::testing::Test {
protected:
  TesselDialectTest() {
    context.loadDialect<TesselDialect, func::FuncDialect>();
  }

  /// Verifies `op`, returning the concatenated diagnostics ("" when it verifies).
  std::string verifyAndCollect(Operation *op) {
    std::string messages;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      messages += diag.str();
      return success();
    });
    if (succeeded(mlir::verify(op)))
      return "";
    return messages;
  }

  MLIRContext context;
};

TEST_F(TesselDialectTest, BuildsAProjection) {
  OpBuilder builder(&context);
  Location loc = builder.getUnknownLoc();
  ModuleOp module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module.getBody());
  Type bf16 = builder.getBF16Type();
  auto act = RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic, 64}, bf16);
  auto out = RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic, 32}, bf16);
  auto fn = func::FuncOp::create(builder, loc, "f", builder.getFunctionType({act}, {out}));
  Block *body = fn.addEntryBlock();
  builder.setInsertionPointToEnd(body);
  Value w = ParamOp::create(builder, loc, RankedTensorType::get({32, 64}, bf16),
                            builder.getStringAttr("proj.weight"), ShardingAttr());
  Value y = MatmulOp::create(builder, loc, out, body->getArgument(0), w, Value(),
                             WeightLayoutAttr::get(&context, WeightLayout::out_in));
  func::ReturnOp::create(builder, loc, y);
  EXPECT_EQ(verifyAndCollect(module), "");
  EXPECT_EQ(cast<MatmulOp>(y.getDefiningOp()).getReductionSize(), 64);
  EXPECT_EQ(cast<MatmulOp>(y.getDefiningOp()).getOutputSize(), 32);
  module->erase();
}

TEST_F(TesselDialectTest, MismatchedReductionDimensionIsReported) {
  OpBuilder builder(&context);
  Location loc = builder.getUnknownLoc();
  ModuleOp module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module.getBody());
  Type f32 = builder.getF32Type();
  auto act = RankedTensorType::get({4, 48}, f32);
  auto fn = func::FuncOp::create(builder, loc, "f", builder.getFunctionType({act}, {}));
  Block *body = fn.addEntryBlock();
  builder.setInsertionPointToEnd(body);
  Value w = ParamOp::create(builder, loc, RankedTensorType::get({32, 64}, f32),
                            builder.getStringAttr("w"), ShardingAttr());
  MatmulOp::create(builder, loc, RankedTensorType::get({4, 32}, f32), body->getArgument(0), w,
                   Value(), WeightLayoutAttr::get(&context, WeightLayout::out_in));
  func::ReturnOp::create(builder, loc);
  std::string diag = verifyAndCollect(module);
  EXPECT_NE(diag.find("weight reduction dimension (64) does not match the input's last "
                      "dimension (48)"),
            std::string::npos)
      << diag;
  module->erase();
}

TEST_F(TesselDialectTest, QuantizedTypeReportsStorage) {
  auto f16 = Float16Type::get(&context);
  auto i4 = IntegerType::get(&context, 4);
  auto type = QuantizedTensorType::getChecked(
      [&] { return emitError(UnknownLoc::get(&context)); }, &context,
      ArrayRef<int64_t>{256, 512}, Type(i4), QuantScheme::group, int64_t{128}, Type(f16));
  ASSERT_TRUE(type);
  EXPECT_EQ(type.getNumScales(), 256 * 512 / 128);
  EXPECT_EQ(type.getStorageBytes(), 256 * 512 / 2 + 256 * 4 * 2);

  std::string messages;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    messages += diag.str();
    return success();
  });
  auto bad = QuantizedTensorType::getChecked(
      [&] { return emitError(UnknownLoc::get(&context)); }, &context,
      ArrayRef<int64_t>{256, 500}, Type(i4), QuantScheme::group, int64_t{128}, Type(f16));
  EXPECT_FALSE(bad);
  EXPECT_NE(messages.find("group size 128 does not divide the reduction dimension 500"),
            std::string::npos)
      << messages;

  // Only reachable through the C++ API: the textual syntax has no place for it.
  messages.clear();
  auto stray = QuantizedTensorType::getChecked(
      [&] { return emitError(UnknownLoc::get(&context)); }, &context,
      ArrayRef<int64_t>{256, 512}, Type(IntegerType::get(&context, 8)), QuantScheme::per_channel,
      int64_t{64}, Type(f16));
  EXPECT_FALSE(stray);
  EXPECT_NE(messages.find("a group size is only allowed with the 'group' scheme"),
            std::string::npos)
      << messages;
}

TEST_F(TesselDialectTest, WeightStatsCountsTiedWeightsOnce) {
  const char *source = R"mlir(
    func.func @f(%ids: tensor<?x?xi32>) -> tensor<?x?x100xf32> {
      %e = tessel.param "embed.weight" : tensor<100x16xf32>
      %h = tessel.embedding %ids, %e : (tensor<?x?xi32>, tensor<100x16xf32>) -> tensor<?x?x16xf32>
      %e2 = tessel.param "embed.weight" : tensor<100x16xf32>
      %l = tessel.matmul %h, %e2 : (tensor<?x?x16xf32>, tensor<100x16xf32>) -> tensor<?x?x100xf32>
      return %l : tensor<?x?x100xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  PassManager pm(&context);
  pm.addPass(createTesselWeightStats());
  ASSERT_TRUE(succeeded(pm.run(*module)));
  auto fn = module->lookupSymbol<func::FuncOp>("f");
  EXPECT_EQ(fn->getAttrOfType<IntegerAttr>("tessel.num_params").getInt(), 1600);
  EXPECT_EQ(fn->getAttrOfType<IntegerAttr>("tessel.weight_bytes").getInt(), 6400);
}

} // namespace
