//===- WeightSource.h - checkpoint tensors as the importer sees them -*- C++ -*-===//
// The importer's view of a checkpoint: tensors looked up by their Hugging Face name,
// whatever the file format stores them under.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H
#define TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H

#include "runtime/weights/dtype.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace tessel::import {

struct WeightInfo {
  std::string stored_name;     // the name in the file (GGUF names differ from HF's)
  DType dtype;
  std::vector<int64_t> shape;  // row-major, outermost first
};

class WeightSource {
public:
  virtual ~WeightSource() = default;
  /// The tensor the family calls `hfName` (Hugging Face naming), if present.
  virtual std::optional<WeightInfo> find(const std::string &hfName) const = 0;
  /// Every tensor name in the checkpoint, as stored.
  virtual std::vector<std::string> storedNames() const = 0;
  /// Stored names the graph need not use (e.g. a saved lm_head of a tied model).
  virtual bool isIgnorable(const std::string &storedName) const { return false; }
  /// The stored bytes of tensor `storedName` (mapped, not copied); empty if absent.
  virtual std::span<const uint8_t> data(const std::string &storedName) const = 0;
  /// Expands a block-quantized tensor (GGUF Q4_1, Q4_K, Q6_K, ...) to f32 into `out`.
  virtual llvm::Error dequantize(const std::string &storedName, std::span<float> out) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "tensor '" + storedName + "' cannot be dequantized");
  }
};

} // namespace tessel::import

#endif // TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H
