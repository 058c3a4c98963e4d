//===- GGUFSource.cpp - GGUF files as checkpoints ---------------*- C++ -*-===//
// llama.cpp's conventions: metadata under "<arch>.", tensors "blk.N.<name>", and for
// the llama architecture q/k rows permuted by the converter so that llama.cpp's
// adjacent-pair RoPE applies. tessel keeps the permuted weights and rotates adjacent
// pairs too (`interleaved`): attention scores q.k are unchanged because q and k carry
// the same permutation, and v/o are not permuted.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/import/GGUFSource.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSwitch.h"

using namespace tessel;
using namespace tessel::import;

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// Reads typed metadata, collecting every error.
class MetadataReader {
public:
  MetadataReader(const GgufFile &file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  int64_t getInt(const std::string &suffix, std::optional<int64_t> fallback = std::nullopt) {
    std::string key = arch_ + "." + suffix;
    if (!file_.Find(key)) {
      if (!fallback)
        errors_.push_back("GGUF key '" + key + "' is missing");
      return fallback.value_or(0);
    }
    auto value = file_.GetInt(key);
    if (!value.ok()) {
      errors_.push_back(std::string(value.status().message()));
      return 0;
    }
    return *value;
  }
  double getFloat(const std::string &suffix, double fallback) {
    std::string key = arch_ + "." + suffix;
    if (!file_.Find(key))
      return fallback;
    auto value = file_.GetFloat(key);
    if (!value.ok()) {
      errors_.push_back(std::string(value.status().message()));
      return fallback;
    }
    return *value;
  }
  llvm::Error finish() {
    if (errors_.empty())
      return llvm::Error::success();
    std::string message = file_.path() + ": ";
    for (size_t i = 0; i < errors_.size(); ++i)
      message += (i ? "; " : "") + errors_[i];
    return makeError(message);
  }
  std::vector<std::string> &errors() { return errors_; }

private:
  const GgufFile &file_;
  std::string arch_;
  std::vector<std::string> errors_;
};

class GGUFSource : public WeightSource {
public:
  explicit GGUFSource(std::unique_ptr<GgufFile> file) : file_(std::move(file)) {}

  std::optional<WeightInfo> find(const std::string &hfName) const override {
    std::string name = ggufTensorName(hfName);
    if (name.empty())
      return std::nullopt;
    const GgufTensorInfo *tensor = file_->FindTensor(name);
    if (!tensor)
      return std::nullopt;
    // Unsupported ggml types get an impossible dtype so the builder reports them by name.
    return WeightInfo{tensor->name, tensor->dtype.value_or(DType::kI64), tensor->shape};
  }
  std::vector<std::string> storedNames() const override {
    std::vector<std::string> names;
    for (const GgufTensorInfo &tensor : file_->tensors())
      names.push_back(tensor.name);
    return names;
  }
  std::span<const uint8_t> data(const std::string &name) const override {
    const GgufTensorInfo *tensor = file_->FindTensor(name);
    return tensor ? file_->Data(*tensor) : std::span<const uint8_t>();
  }
  llvm::Error dequantize(const std::string &name, std::span<float> out) const override {
    const GgufTensorInfo *tensor = file_->FindTensor(name);
    if (!tensor)
      return makeError("GGUF tensor '" + name + "' is missing");
    absl::Status status = DequantizeToF32(*tensor, file_->Data(*tensor), out);
    if (!status.ok())
      return makeError(std::string(status.message()));
    return llvm::Error::success();
  }

private:
  std::unique_ptr<GgufFile> file_;
};

} // namespace

std::string tessel::import::ggufTensorName(llvm::StringRef hfName) {
  if (hfName == "model.embed_tokens.weight")
    return "token_embd.weight";
  if (hfName == "model.norm.weight")
    return "output_norm.weight";
  if (hfName == "lm_head.weight")
    return "output.weight";
  llvm::StringRef rest = hfName;
  if (!rest.consume_front("model.layers."))
    return "";
  auto [index, leaf] = rest.split('.');
  std::string mapped = llvm::StringSwitch<std::string>(leaf)
                           .Case("input_layernorm.weight", "attn_norm.weight")
                           .Case("self_attn.q_proj.weight", "attn_q.weight")
                           .Case("self_attn.k_proj.weight", "attn_k.weight")
                           .Case("self_attn.v_proj.weight", "attn_v.weight")
                           .Case("self_attn.q_proj.bias", "attn_q.bias")
                           .Case("self_attn.k_proj.bias", "attn_k.bias")
                           .Case("self_attn.v_proj.bias", "attn_v.bias")
                           .Case("self_attn.o_proj.weight", "attn_output.weight")
                           .Case("post_attention_layernorm.weight", "ffn_norm.weight")
                           .Case("mlp.gate_proj.weight", "ffn_gate.weight")
                           .Case("mlp.up_proj.weight", "ffn_up.weight")
                           .Case("mlp.down_proj.weight", "ffn_down.weight")
                           .Default("");
  if (mapped.empty())
    return "";
  return "blk." + index.str() + "." + mapped;
}

llvm::Expected<ModelConfig> tessel::import::readGGUFConfig(const GgufFile &file) {
  auto archOr = file.GetString("general.architecture");
  if (!archOr.ok())
    return makeError(file.path() + ": " + std::string(archOr.status().message()));
  std::string arch(*archOr);
  if (arch != "llama" && arch != "qwen2")
    return makeError(file.path() + ": GGUF architecture '" + arch +
                     "' is not supported; supported: llama, qwen2");
  MetadataReader reader(file, arch);
  ModelConfig config;
  config.model_type = arch;
  config.source = file.path();
  config.hidden_size = reader.getInt("embedding_length");
  config.intermediate_size = reader.getInt("feed_forward_length");
  config.num_layers = reader.getInt("block_count");
  config.num_heads = reader.getInt("attention.head_count");
  config.num_kv_heads = reader.getInt("attention.head_count_kv", config.num_heads);
  config.max_position_embeddings = reader.getInt("context_length");
  config.rms_norm_eps = reader.getFloat("attention.layer_norm_rms_epsilon", 1e-5);
  if (config.num_heads > 0)
    config.head_dim = reader.getInt("attention.key_length",
                                    config.hidden_size / config.num_heads);
  config.rope.theta = reader.getFloat("rope.freq_base", 10000.0);
  config.rope.rotary_dim = reader.getInt("rope.dimension_count", config.head_dim);
  // llama.cpp's converter permutes llama q/k rows for adjacent-pair rotation; qwen2 uses
  // the GPT-NeoX halves and is stored unpermuted.
  config.rope.interleaved = arch == "llama";
  config.attention_bias = arch == "qwen2";
  if (file.Find(arch + ".rope.scaling.type")) {
    auto type = file.GetString(arch + ".rope.scaling.type");
    if (type.ok() && *type != "none") {
      if (*type != "linear" && *type != "yarn")
        reader.errors().push_back("rope scaling type '" + std::string(*type) +
                                  "' is not supported in GGUF files (linear, yarn)");
      RopeScaling scaling;
      scaling.type = std::string(*type);
      scaling.factor = reader.getFloat("rope.scaling.factor", 1.0);
      scaling.original_max_position = reader.getInt("rope.scaling.original_context_length",
                                                    config.max_position_embeddings);
      config.rope.scaling = scaling;
    }
  }
  if (file.FindTensor("rope_freqs.weight"))
    reader.errors().push_back("per-frequency RoPE factors ('rope_freqs.weight', Llama 3.1 "
                              "in GGUF) are not supported; import the Hugging Face "
                              "checkpoint instead");
  if (const GgufTensorInfo *embed = file.FindTensor("token_embd.weight"))
    config.vocab_size = embed->shape.empty() ? 0 : embed->shape[0];
  else
    reader.errors().push_back("tensor 'token_embd.weight' is missing");
  config.vocab_size = reader.getInt("vocab_size", config.vocab_size);
  config.tie_word_embeddings = file.FindTensor("output.weight") == nullptr;
  if (auto bos = file.GetInt("tokenizer.ggml.bos_token_id"); bos.ok())
    config.bos_token_id = *bos;
  if (auto eos = file.GetInt("tokenizer.ggml.eos_token_id"); eos.ok())
    config.eos_token_ids = {*eos};
  for (auto [value, name] : {std::pair{config.hidden_size, "embedding_length"},
                             {config.num_layers, "block_count"},
                             {config.num_heads, "attention.head_count"},
                             {config.num_kv_heads, "attention.head_count_kv"},
                             {config.intermediate_size, "feed_forward_length"}})
    if (value <= 0 && file.Find(arch + "." + name))
      reader.errors().push_back("GGUF key '" + arch + "." + name + "' must be positive");
  if (config.num_heads > 0 && config.num_kv_heads > 0 &&
      config.num_heads % config.num_kv_heads != 0)
    reader.errors().push_back("head_count (" + std::to_string(config.num_heads) +
                              ") must be a multiple of head_count_kv (" +
                              std::to_string(config.num_kv_heads) + ")");
  if (llvm::Error error = reader.finish())
    return std::move(error);
  return config;
}

std::unique_ptr<WeightSource>
tessel::import::makeGGUFSource(std::unique_ptr<GgufFile> file, const ModelConfig &) {
  return std::make_unique<GGUFSource>(std::move(file));
}
