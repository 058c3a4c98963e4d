//===- FusionCodegen.h - CUDA C++ for tessel fusions ------------*- C++ -*-===//
// Generates one CUDA kernel per distinct fused group of a lowered module and compiles
// them with NVRTC (cubin per requested architecture plus PTX for later GPUs).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_CODEGEN_FUSIONCODEGEN_H
#define TESSEL_COMPILER_CODEGEN_FUSIONCODEGEN_H

#include "compiler/codegen/GpuCode.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace tessel::codegen {

/// Writes the CUDA C++ of every distinct `tessel_exec.launch "fusion"` body of `module`
/// (after --tessel-lower-to-exec) and numbers the kernels: each launch gets a
/// `tessel_exec.kernel_index` attribute; launches with the same body (same ops,
/// attributes and shapes) share one kernel. Storage is bf16, math f32; a group with an
/// rms_norm runs one block per row. Fills `source` and `kernels`, not `images`.
llvm::Expected<GpuCode> generateFusionKernels(mlir::ModuleOp module);

/// Parses `--gpu-arch`: a comma list of `sm_XY` / `sm_XYa`; "none" gives an empty list.
llvm::Expected<std::vector<std::string>> parseGpuArchs(llvm::StringRef list);

/// The PTX architecture shipped with cubins for `archs`: compute_ of the lowest one
/// (compute_90 for sm_90a), so GPUs newer than every cubin still run the plan.
std::string ptxArchFor(llvm::ArrayRef<std::string> archs);

/// Compiles `code.source` with NVRTC (loaded at run time from libnvrtc.so) into a cubin
/// for each of `archs` and PTX for ptxArchFor(archs); appends them to `code.images`.
/// Errors say when NVRTC is missing (compile with --gpu-arch=none for a CPU-only plan)
/// and carry the NVRTC log when a kernel does not compile.
llvm::Error compileWithNvrtc(GpuCode &code, llvm::ArrayRef<std::string> archs);

} // namespace tessel::codegen

#endif // TESSEL_COMPILER_CODEGEN_FUSIONCODEGEN_H
