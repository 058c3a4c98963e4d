//===- WeightSource.h - checkpoint tensors as the importer sees them -*- C++ -*-===//
// The importer's view of a checkpoint: tensors looked up by their Hugging Face name,
// whatever the file format stores them under.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H
#define TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H

#include "runtime/weights/dtype.h"

#include <cstdint>
#include <optional>
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
};

} // namespace tessel::import

#endif // TESSEL_COMPILER_IMPORT_WEIGHTSOURCE_H
