//===- Artifact.h - writing deployment artifacts ----------------*- C++ -*-===//
// Turns a lowered, memory-planned module into an artifact directory: plan.tsl (the
// FlatBuffers plan), weights.rank0.bin (every weight at a 256-byte aligned offset, expert
// stacks concatenated, GGUF K-quants expanded to f32), the checkpoint's tokenizer files,
// and a readable manifest.json. Written under a temporary name and renamed when complete,
// so an interrupted compile never leaves an artifact that looks whole.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_EMIT_ARTIFACT_H
#define TESSEL_COMPILER_EMIT_ARTIFACT_H

#include "compiler/codegen/GpuCode.h"
#include "compiler/import/Importer.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tessel::emit {

/// One entry of the weight manifest as laid out in a weights file.
struct WeightRecord {
  std::string name;   // checkpoint name (or expert pattern)
  uint8_t dtype = 0;  // tessel::plan::DType
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
};

/// Serializes the plan of `module` (after --tessel-lower-to-exec and
/// --tessel-memory-plan) with the given weight manifest. Fusion launches become Fused
/// instructions with their op program; `gpu` (null: none) supplies Plan.kernels and
/// Plan.kernel_images, and each launch's `tessel_exec.kernel_index` its kernel.
llvm::Expected<std::vector<uint8_t>> emitPlan(mlir::ModuleOp module,
                                              const import::ImportedModel &model,
                                              const std::vector<WeightRecord> &weights,
                                              const codegen::GpuCode *gpu = nullptr);

struct ArtifactOptions {
  std::string output_dir;
  std::string checkpoint_path;  // tokenizer files are copied from here (if a directory)
  bool progress = true;         // report weight writing on stderr
  /// false: write the plan and manifest but no weights file (benchmarks fill weights
  /// with `--weights dummy` at load); the plan still lays out every weight's offset.
  bool write_weights = true;
  /// Generated GPU kernels of the module's fusions (null: a CPU-only plan).
  const codegen::GpuCode *gpu_code = nullptr;
};

/// Writes the artifact for `module` (lowered and planned) of `model`.
llvm::Error writeArtifact(mlir::ModuleOp module, const import::ImportedModel &model,
                          const ArtifactOptions &options);

} // namespace tessel::emit

#endif // TESSEL_COMPILER_EMIT_ARTIFACT_H
