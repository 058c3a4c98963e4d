//===- HFConfig.cpp - reading Hugging Face config.json ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/HFConfig.h"

#include "llvm/ADT/StringExtras.h"

#include <cmath>

using namespace tessel::models;
using tessel::import::ModelConfig;
using tessel::import::RopeConfig;
using tessel::import::RopeScaling;

namespace {
const char *kindOf(const llvm::json::Value &value) {
  switch (value.kind()) {
  case llvm::json::Value::Null: return "null";
  case llvm::json::Value::Boolean: return "a boolean";
  case llvm::json::Value::Number: return "a number";
  case llvm::json::Value::String: return "a string";
  case llvm::json::Value::Array: return "an array";
  case llvm::json::Value::Object: return "an object";
  }
  return "a value";
}
} // namespace

void ConfigReader::error(const llvm::Twine &message) { errors_.push_back(message.str()); }

int64_t ConfigReader::getInt(llvm::StringRef key) {
  if (!has(key)) {
    error("'" + key + "' is missing");
    return 0;
  }
  return getInt(key, 0);
}

int64_t ConfigReader::getInt(llvm::StringRef key, int64_t fallback) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return fallback;
  if (std::optional<int64_t> integer = value->getAsInteger())
    return *integer;
  // Some configs write integral values as floats (1e4 style); accept exact ones.
  if (std::optional<double> number = value->getAsNumber())
    if (*number == static_cast<double>(static_cast<int64_t>(*number)))
      return static_cast<int64_t>(*number);
  error("'" + key + "' must be an integer, got " + kindOf(*value));
  return fallback;
}

std::optional<int64_t> ConfigReader::getOptionalInt(llvm::StringRef key) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return std::nullopt;
  return getInt(key, 0);
}

double ConfigReader::getDouble(llvm::StringRef key, double fallback) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return fallback;
  if (std::optional<double> number = value->getAsNumber())
    return *number;
  error("'" + key + "' must be a number, got " + kindOf(*value));
  return fallback;
}

bool ConfigReader::getBool(llvm::StringRef key, bool fallback) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return fallback;
  if (std::optional<bool> flag = value->getAsBoolean())
    return *flag;
  error("'" + key + "' must be true or false, got " + kindOf(*value));
  return fallback;
}

std::string ConfigReader::getString(llvm::StringRef key, llvm::StringRef fallback) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return fallback.str();
  if (std::optional<llvm::StringRef> text = value->getAsString())
    return text->str();
  error("'" + key + "' must be a string, got " + kindOf(*value));
  return fallback.str();
}

std::vector<int64_t> ConfigReader::getIntList(llvm::StringRef key) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return {};
  if (std::optional<int64_t> single = value->getAsInteger())
    return {*single};
  std::vector<int64_t> ids;
  if (const llvm::json::Array *list = value->getAsArray()) {
    for (const llvm::json::Value &item : *list) {
      std::optional<int64_t> id = item.getAsInteger();
      if (!id) {
        error("'" + key + "' must hold integers, got " + kindOf(item));
        return {};
      }
      ids.push_back(*id);
    }
    return ids;
  }
  error("'" + key + "' must be an integer or a list of integers, got " + kindOf(*value));
  return {};
}

const llvm::json::Object *ConfigReader::getObject(llvm::StringRef key) {
  const llvm::json::Value *value = object_.get(key);
  if (!value || value->kind() == llvm::json::Value::Null)
    return nullptr;
  if (const llvm::json::Object *object = value->getAsObject())
    return object;
  error("'" + key + "' must be an object, got " + kindOf(*value));
  return nullptr;
}

void ConfigReader::requirePositive(llvm::StringRef key, int64_t value) {
  if (value <= 0 && has(key))
    error("'" + key + "' must be positive, got " + llvm::Twine(value));
}

llvm::Error ConfigReader::finish() {
  if (errors_.empty())
    return llvm::Error::success();
  std::string message = source_ + ": ";
  message += llvm::join(errors_, "; ");
  errors_.clear();
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

void tessel::models::readCommonConfig(ConfigReader &reader, ModelConfig &config) {
  config.model_type = reader.getString("model_type", "");
  config.vocab_size = reader.getInt("vocab_size");
  config.hidden_size = reader.getInt("hidden_size");
  config.intermediate_size = reader.getInt("intermediate_size");
  config.num_layers = reader.getInt("num_hidden_layers");
  config.num_heads = reader.getInt("num_attention_heads");
  config.num_kv_heads = reader.getInt("num_key_value_heads", config.num_heads);
  config.max_position_embeddings = reader.getInt("max_position_embeddings", 2048);
  config.rms_norm_eps = reader.getDouble("rms_norm_eps", 1e-6);
  config.tie_word_embeddings = reader.getBool("tie_word_embeddings", false);
  config.bos_token_id = reader.getOptionalInt("bos_token_id");
  config.eos_token_ids = reader.getIntList("eos_token_id");
  for (llvm::StringRef key : {"vocab_size", "hidden_size", "intermediate_size",
                              "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "max_position_embeddings"})
    reader.requirePositive(key, reader.getInt(key, 1));
  if (config.num_heads > 0 && config.num_kv_heads > 0 &&
      config.num_heads % config.num_kv_heads != 0)
    reader.error("num_attention_heads (" + llvm::Twine(config.num_heads) +
                 ") must be a multiple of num_key_value_heads (" +
                 llvm::Twine(config.num_kv_heads) + ")");
  std::optional<int64_t> headDim = reader.getOptionalInt("head_dim");
  if (headDim) {
    config.head_dim = *headDim;
    reader.requirePositive("head_dim", *headDim);
  } else if (config.num_heads > 0) {
    if (config.hidden_size % config.num_heads != 0)
      reader.error("hidden_size (" + llvm::Twine(config.hidden_size) +
                   ") is not a multiple of num_attention_heads (" +
                   llvm::Twine(config.num_heads) + ") and no head_dim is given");
    config.head_dim = config.hidden_size / config.num_heads;
  }
  double partial = reader.getDouble("partial_rotary_factor", 1.0);
  if (const llvm::json::Object *params = reader.getObject("rope_parameters")) {
    ConfigReader nested(*params, reader.source() + " rope_parameters");
    partial = nested.getDouble("partial_rotary_factor", partial);
  }
  if (!(partial > 0.0 && partial <= 1.0))
    reader.error("'partial_rotary_factor' must be in (0, 1], got " + llvm::Twine(std::to_string(partial)));
  readRope(reader, static_cast<int64_t>(config.head_dim * partial), config.rope);
}

void tessel::models::readRope(ConfigReader &reader, int64_t rotaryDim, RopeConfig &rope) {
  rope.rotary_dim = rotaryDim;
  rope.theta = reader.getDouble("rope_theta", 10000.0);
  // transformers 5 writes `rope_parameters` (with rope_theta inside); older files write
  // `rope_scaling` next to a top-level `rope_theta`.
  const llvm::json::Object *params = reader.getObject("rope_parameters");
  if (!params)
    params = reader.getObject("rope_scaling");
  if (!params)
    return;
  ConfigReader nested(*params, reader.source());
  rope.theta = nested.getDouble("rope_theta", rope.theta);
  std::string type = nested.getString("rope_type", nested.getString("type", "default"));
  if (llvm::Error error = nested.finish())
    reader.error(llvm::toString(std::move(error)));
  if (type == "default")
    return;
  if (type != "linear" && type != "dynamic" && type != "llama3" && type != "yarn") {
    reader.error("rope type '" + type +
                 "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
    return;
  }
  RopeScaling scaling;
  scaling.type = type;
  scaling.factor = nested.getDouble("factor", 1.0);
  scaling.original_max_position = nested.getInt(
      "original_max_position_embeddings", reader.getInt("max_position_embeddings", 0));
  scaling.low_freq_factor = nested.getDouble("low_freq_factor", 1.0);
  scaling.high_freq_factor = nested.getDouble("high_freq_factor", 4.0);
  scaling.beta_fast = nested.getDouble("beta_fast", 32.0);
  scaling.beta_slow = nested.getDouble("beta_slow", 1.0);
  scaling.mscale = nested.getDouble("mscale", 1.0);
  scaling.mscale_all_dim = nested.getDouble("mscale_all_dim", 0.0);
  scaling.attention_factor = nested.getDouble("attention_factor", 0.0);
  if (type == "yarn" && !nested.has("factor") && scaling.original_max_position > 0)
    scaling.factor = static_cast<double>(reader.getInt("max_position_embeddings", 0)) /
                     static_cast<double>(scaling.original_max_position);
  if (type == "yarn" && scaling.attention_factor == 0.0) {
    // The cos/sin scale of YaRN as transformers derives it (modeling_rope_utils.py):
    // mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are given and
    // non-zero, else mscale(factor); mscale(s, m) = 0.1 * m * ln(s) + 1 for s > 1, else 1.
    auto mscaleOf = [](double scale, double m) {
      return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
    };
    bool both = nested.getDouble("mscale", 0.0) != 0.0 && scaling.mscale_all_dim != 0.0;
    scaling.attention_factor = both ? mscaleOf(scaling.factor, scaling.mscale) /
                                          mscaleOf(scaling.factor, scaling.mscale_all_dim)
                                    : mscaleOf(scaling.factor, 1.0);
  }
  if (llvm::Error error = nested.finish())
    reader.error(llvm::toString(std::move(error)));
  if (!(scaling.factor > 0.0))
    reader.error("rope scaling factor must be positive, got " + llvm::Twine(std::to_string(scaling.factor)));
  rope.scaling = scaling;
}
