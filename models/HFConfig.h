//===- HFConfig.h - reading Hugging Face config.json ------------*- C++ -*-===//
// Typed access to config.json keys with errors that name the key, and the shared
// parts every family reads (sizes, RoPE in both the old `rope_scaling` and the new
// `rope_parameters` spelling, special token ids).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_MODELS_HFCONFIG_H
#define TESSEL_MODELS_HFCONFIG_H

#include "compiler/import/ModelConfig.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <string>
#include <vector>

namespace tessel::models {

/// Reads keys of one JSON object. Getters never fail: they record an error and
/// return a default, so one pass over a config reports every problem at once;
/// `finish()` turns the recorded errors into an llvm::Error.
class ConfigReader {
public:
  ConfigReader(const llvm::json::Object &object, std::string source)
      : object_(object), source_(std::move(source)) {}

  bool has(llvm::StringRef key) const { return object_.get(key) != nullptr; }
  int64_t getInt(llvm::StringRef key);
  int64_t getInt(llvm::StringRef key, int64_t fallback);
  std::optional<int64_t> getOptionalInt(llvm::StringRef key);
  double getDouble(llvm::StringRef key, double fallback);
  bool getBool(llvm::StringRef key, bool fallback);
  std::string getString(llvm::StringRef key, llvm::StringRef fallback);
  /// Token ids given as an integer or a list of integers (`eos_token_id`).
  std::vector<int64_t> getIntList(llvm::StringRef key);
  const llvm::json::Object *getObject(llvm::StringRef key);

  /// Records an error about this config.
  void error(const llvm::Twine &message);
  /// Requires `value > 0` for a size read from `key`.
  void requirePositive(llvm::StringRef key, int64_t value);

  const std::string &source() const { return source_; }
  llvm::Error finish();

private:
  const llvm::json::Object &object_;
  std::string source_;
  std::vector<std::string> errors_;
};

/// Reads the keys every decoder-only family shares into `config`: sizes, layer and
/// head counts, head_dim (explicit or hidden / heads), norm epsilon, tied embeddings,
/// special tokens, and RoPE (theta, scaling from `rope_parameters` or the older
/// `rope_scaling` + `rope_theta`).
void readCommonConfig(ConfigReader &reader, import::ModelConfig &config);

/// Reads RoPE theta and scaling; `rotaryDim` is the rotated width per head.
void readRope(ConfigReader &reader, int64_t rotaryDim, import::RopeConfig &rope);

} // namespace tessel::models

#endif // TESSEL_MODELS_HFCONFIG_H
