//===- Passes.h - tessel passes ---------------------------------*- C++ -*-===//
// Declares the tessel passes and their registration.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_PASSES_PASSES_H
#define TESSEL_PASSES_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include "dialects/tessel_exec/IR/TesselExecDialect.h"

namespace mlir::tessel {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

struct CompilePipelineOptions {
  /// Run canonicalization and CSE on the imported graph first.
  bool canonicalize = true;
  /// Group elementwise chains and residual + norm into tessel.fusion (--tessel-fuse).
  bool fuse = true;
};

/// The compile pipeline from an imported tessel module to a planned tessel_exec module:
/// canonicalize, CSE, --tessel-fuse, --tessel-lower-to-exec, --tessel-memory-plan.
void buildCompilePipeline(OpPassManager &pm, const CompilePipelineOptions &options);

/// Registers `--tessel-compile-pipeline` for tessel-opt.
void registerCompilePipeline();

} // namespace mlir::tessel

#endif // TESSEL_PASSES_PASSES_H
