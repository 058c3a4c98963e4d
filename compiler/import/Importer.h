//===- Importer.h - checkpoints into the tessel dialect ---------*- C++ -*-===//
// Imports a Hugging Face checkpoint directory (config.json + safetensors, sharded or
// not) or a GGUF file into a verified `tessel` module with `@prefill` and `@decode`.
// Weights stay in the files and are referenced by name; only headers are read.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_IMPORT_IMPORTER_H
#define TESSEL_COMPILER_IMPORT_IMPORTER_H

#include "compiler/import/ModelConfig.h"
#include "compiler/import/WeightSource.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>

namespace tessel::import {

struct ImportOptions {
  /// KV cache capacity in tokens; 0 takes the model's max_position_embeddings.
  int64_t max_context = 0;
};

/// An imported checkpoint: the module and the weights it references.
struct ImportedModel {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<WeightSource> weights;
  ModelConfig config;
  int64_t max_context = 0;
};

/// Reads the architecture of the checkpoint at `path` (HF directory or .gguf file).
llvm::Expected<ModelConfig> readModelConfig(const std::string &path);

/// Imports the checkpoint at `path`. Errors name the file and the problem: an unknown
/// model_type (with the supported ones), bad JSON, missing or unused tensors, shapes or
/// dtypes that disagree with the config, truncated or corrupt weight files.
llvm::Expected<ImportedModel>
importCheckpoint(mlir::MLIRContext &context, const std::string &path,
                 const ImportOptions &options = {});

} // namespace tessel::import

#endif // TESSEL_COMPILER_IMPORT_IMPORTER_H
