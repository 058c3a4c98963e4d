//===- Pipeline.cpp - the tessel compile pipeline ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

void mlir::tessel::buildCompilePipeline(OpPassManager &pm,
                                        const CompilePipelineOptions &options) {
  if (options.canonicalize) {
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
  }
  if (options.fuse)
    pm.addNestedPass<func::FuncOp>(createTesselFuse());
  pm.addPass(createTesselLowerToExec());
  pm.addPass(createTesselMemoryPlan());
}

void mlir::tessel::registerCompilePipeline() {
  PassPipelineRegistration<>(
      "tessel-compile-pipeline",
      "Imported tessel module to a planned tessel_exec module (what tessel-compile runs)",
      [](OpPassManager &pm) { buildCompilePipeline(pm, CompilePipelineOptions()); });
}
