//===- GGUFSource.h - GGUF files as checkpoints -----------------*- C++ -*-===//
// Reads the architecture from GGUF metadata (llama.cpp keys) and presents GGUF tensors
// under their Hugging Face names, for the llama and qwen2 architectures.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_IMPORT_GGUFSOURCE_H
#define TESSEL_COMPILER_IMPORT_GGUFSOURCE_H

#include "compiler/import/ModelConfig.h"
#include "compiler/import/WeightSource.h"
#include "runtime/weights/gguf.h"

#include "llvm/Support/Error.h"

#include <memory>

namespace tessel::import {

/// The model described by a GGUF file's metadata.
llvm::Expected<ModelConfig> readGGUFConfig(const GgufFile &file);

/// The GGUF name of a Hugging Face tensor name ("model.layers.3.self_attn.q_proj.weight"
/// -> "blk.3.attn_q.weight"), or "" when llama.cpp has no such tensor.
std::string ggufTensorName(llvm::StringRef hfName);

std::unique_ptr<WeightSource> makeGGUFSource(std::unique_ptr<GgufFile> file,
                                             const ModelConfig &config);

} // namespace tessel::import

#endif // TESSEL_COMPILER_IMPORT_GGUFSOURCE_H
