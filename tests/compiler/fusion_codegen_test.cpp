//===- fusion_codegen_test.cpp - generated fusion kernels -------*- C++ -*-===//
// Runs --tessel-fuse and --tessel-lower-to-exec on small graphs, generates their CUDA
// kernels and compiles them with NVRTC (where the build has CUDA): every op the
// generator knows, rows that allow no 16-byte accesses, norms over long rows, sharing of
// identical groups, and the --gpu-arch parser.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/codegen/FusionCodegen.h"
#include "dialects/tessel/IR/TesselDialect.h"
#include "dialects/tessel_exec/IR/TesselExecDialect.h"
#include "passes/Passes.h"

#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "gtest/gtest.h"

using namespace mlir;
namespace codegen = ::tessel::codegen;

namespace {

class FusionCodegenTest : public ::testing::Test {
protected:
  FusionCodegenTest() {
    context.loadDialect<mlir::tessel::TesselDialect, mlir::tessel_exec::TesselExecDialect,
                        func::FuncDialect>();
  }

  /// Fuses and lowers `source`, then generates its kernels.
  codegen::GpuCode generate(llvm::StringRef source) {
    module = parseSourceString<ModuleOp>(source, &context);
    EXPECT_TRUE(module);
    PassManager pm(&context);
    pm.addNestedPass<func::FuncOp>(mlir::tessel::createTesselFuse());
    pm.addPass(mlir::tessel::createTesselLowerToExec());
    EXPECT_TRUE(succeeded(pm.run(*module)));
    auto code = codegen::generateFusionKernels(*module);
    EXPECT_TRUE(static_cast<bool>(code)) << llvm::toString(code.takeError());
    return code ? std::move(*code) : codegen::GpuCode();
  }

  /// Compiles for sm_90a and sm_80 (+ compute_80 PTX) where NVRTC is part of the build.
  void compile(codegen::GpuCode &code) {
#ifdef TESSEL_TEST_NVRTC
    llvm::Error error = codegen::compileWithNvrtc(code, {"sm_90a", "sm_80"});
    ASSERT_FALSE(error) << llvm::toString(std::move(error)) << "\n" << code.source;
    ASSERT_EQ(code.images.size(), 3u);
    EXPECT_EQ(code.images[2].arch, "compute_80");
    // PTX is shipped NUL-terminated, as cuModuleLoadData reads it.
    EXPECT_EQ(code.images[2].image.back(), 0);
#else
    (void)code;
#endif
  }

  MLIRContext context;
  OwningOpRef<ModuleOp> module;
};

TEST_F(FusionCodegenTest, EveryElementwiseOpOnRowsWithoutVectorAccess) {
  // Rows of 36: no 16-byte path, only the element-at-a-time body.
  codegen::GpuCode code = generate(R"mlir(
    func.func @f(%a: tensor<?x?x36xf32>, %b: tensor<?x?x36xf32>) -> tensor<?x?x36xf32> {
      %0 = tessel.sub %a, %b : tensor<?x?x36xf32>
      %1 = tessel.div %0, %b : tensor<?x?x36xf32>
      %2 = tessel.max %1, %a : tensor<?x?x36xf32>
      %3 = tessel.exp %2 : tensor<?x?x36xf32>
      %4 = tessel.tanh %3 : tensor<?x?x36xf32>
      %5 = tessel.neg %4 : tensor<?x?x36xf32>
      %6 = tessel.relu %5 : tensor<?x?x36xf32>
      %7 = tessel.sigmoid %6 : tensor<?x?x36xf32>
      %8 = tessel.gelu %7 : tensor<?x?x36xf32>
      %9 = tessel.gelu %8 {approximation = #tessel.gelu_approximation<tanh>} : tensor<?x?x36xf32>
      %10 = tessel.scale %9 by 0.125 : tensor<?x?x36xf32>
      %11 = tessel.cast %10 : tensor<?x?x36xf32> to tensor<?x?x36xf16>
      %12 = tessel.cast %11 : tensor<?x?x36xf16> to tensor<?x?x36xbf16>
      %13 = tessel.cast %12 : tensor<?x?x36xbf16> to tensor<?x?x36xf32>
      %14 = tessel.silu %13 : tensor<?x?x36xf32>
      %15 = tessel.add %14, %a : tensor<?x?x36xf32>
      return %15 : tensor<?x?x36xf32>
    })mlir");
  ASSERT_EQ(code.kernels.size(), 1u);
  EXPECT_EQ(code.kernels[0].block_threads, 256u);
  EXPECT_GT(code.kernels[0].elements_per_block, 0u);
  const std::string &s = code.source;
  for (const char *expected :
       {"fmaxf(v1[k], a0[k])", "expf(v2[k])", "tanhf(v3[k])", "-v4[k]", "fmaxf(v5[k], 0.0f)",
        "tessel_sigmoid(v6[k])", "tessel_gelu(v7[k])", "tessel_gelu_tanh(v8[k])",
        "v9[k] * 1.250000000e-01f", "tessel_round_f16(v10[k])", "tessel_round_bf16(v11[k])",
        "v13[k] = v12[k];", "tessel_silu(v13[k])", "tessel_fused_0_body<1>("})
    EXPECT_NE(s.find(expected), std::string::npos) << expected << "\n" << s;
  EXPECT_EQ(s.find("tessel_fused_0_body<8>("), std::string::npos);
  compile(code);
}

TEST_F(FusionCodegenTest, NormsOverLongRows) {
  // 4096: 256 threads, two 8-element vectors each; 20480: 1024 threads.
  codegen::GpuCode code = generate(R"mlir(
    func.func @f(%a: tensor<?x?x4096xbf16>, %b: tensor<?x?x4096xbf16>, %w: tensor<4096xbf16>,
                 %c: tensor<?x?x20480xbf16>, %d: tensor<?x?x20480xbf16>, %v: tensor<20480xbf16>)
        -> (tensor<?x?x4096xbf16>, tensor<?x?x4096xbf16>, tensor<?x?x20480xbf16>) {
      %s = tessel.add %a, %b : tensor<?x?x4096xbf16>
      %n = tessel.rms_norm %s, %w {epsilon = 1.0e-06 : f64}
          : (tensor<?x?x4096xbf16>, tensor<4096xbf16>) -> tensor<?x?x4096xbf16>
      %t = tessel.mul %c, %d : tensor<?x?x20480xbf16>
      %m = tessel.rms_norm %t, %v {epsilon = 1.0e-05 : f64}
          : (tensor<?x?x20480xbf16>, tensor<20480xbf16>) -> tensor<?x?x20480xbf16>
      return %s, %n, %m : tensor<?x?x4096xbf16>, tensor<?x?x4096xbf16>, tensor<?x?x20480xbf16>
    })mlir");
  ASSERT_EQ(code.kernels.size(), 2u);
  EXPECT_EQ(code.kernels[0].block_threads, 256u);
  EXPECT_EQ(code.kernels[0].elements_per_block, 0u);  // one block per row
  EXPECT_EQ(code.kernels[1].block_threads, 1024u);
  EXPECT_NE(code.source.find("constexpr int ROW = 4096, THREADS = 256"), std::string::npos);
  EXPECT_NE(code.source.find("constexpr int ROW = 20480, THREADS = 1024"), std::string::npos);
  compile(code);
}

TEST_F(FusionCodegenTest, IdenticalGroupsShareOneKernel) {
  // Two SwiGLUs of one shape share a kernel; a third of another row size does not, nor
  // does a norm with another epsilon.
  codegen::GpuCode code = generate(R"mlir(
    func.func @f(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %c: tensor<?x?x32xf32>,
                 %w: tensor<64xf32>)
        -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x64xf32>,
            tensor<?x?x64xf32>) {
      %0 = tessel.silu %a : tensor<?x?x64xf32>
      %1 = tessel.mul %0, %b : tensor<?x?x64xf32>
      %2 = tessel.silu %b : tensor<?x?x64xf32>
      %3 = tessel.mul %2, %a : tensor<?x?x64xf32>
      %4 = tessel.silu %c : tensor<?x?x32xf32>
      %5 = tessel.mul %4, %c : tensor<?x?x32xf32>
      %6 = tessel.add %a, %b : tensor<?x?x64xf32>
      %7 = tessel.rms_norm %6, %w {epsilon = 1.0e-05 : f64}
          : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
      %8 = tessel.add %b, %a : tensor<?x?x64xf32>
      %9 = tessel.rms_norm %8, %w {epsilon = 1.0e-06 : f64}
          : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
      return %1, %3, %5, %7, %9 : tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<?x?x32xf32>,
          tensor<?x?x64xf32>, tensor<?x?x64xf32>
    })mlir");
  EXPECT_EQ(code.kernels.size(), 4u);
  SmallVector<int64_t> indices;
  module->walk([&](mlir::tessel_exec::LaunchOp launch) {
    if (auto index = launch->getAttrOfType<IntegerAttr>("tessel_exec.kernel_index"))
      indices.push_back(index.getInt());
  });
  EXPECT_EQ(indices, (SmallVector<int64_t>{0, 0, 1, 2, 3}));
}

TEST(GpuArchTest, ParsesListsAndPicksThePtxArch) {
  auto archs = codegen::parseGpuArchs("sm_90a, sm_80,sm_90a");
  ASSERT_TRUE(static_cast<bool>(archs));
  EXPECT_EQ(*archs, (std::vector<std::string>{"sm_90a", "sm_80"}));
  EXPECT_EQ(codegen::ptxArchFor(*archs), "compute_80");
  EXPECT_EQ(codegen::ptxArchFor({"sm_90a"}), "compute_90");
  EXPECT_EQ(codegen::ptxArchFor({"sm_120", "sm_100f"}), "compute_100");
  auto none = codegen::parseGpuArchs("none");
  ASSERT_TRUE(static_cast<bool>(none));
  EXPECT_TRUE(none->empty());
  for (const char *bad : {"", "sm90", "compute_90", "sm_", "sm_9x", "sm_35"}) {
    auto parsed = codegen::parseGpuArchs(bad);
    EXPECT_FALSE(static_cast<bool>(parsed)) << bad;
    if (!parsed)
      llvm::consumeError(parsed.takeError());
  }
}

} // namespace
