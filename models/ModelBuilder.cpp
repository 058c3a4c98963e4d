//===- ModelBuilder.cpp - building tessel graphs of decoder LLMs -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "models/ModelBuilder.h"

#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"

#include <cmath>

using namespace mlir;
using namespace ::tessel::models;
using ::tessel::DType;
using ::tessel::import::ModelConfig;
using ::tessel::import::WeightInfo;

namespace {
std::string shapeStr(llvm::ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (auto [i, dim] : llvm::enumerate(shape))
    s += (i ? ", " : "") + std::to_string(dim);
  return s + "]";
}

/// yarn_get_mscale of the DeepSeek reference code: 0.1 * m * ln(scale) + 1.
double yarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

constexpr size_t kMaxReportedErrors = 20;
} // namespace

ModelBuilder::ModelBuilder(MLIRContext *context, const ModelConfig &config,
                           const import::WeightSource &weights, int64_t maxContext)
    : context_(context), config_(config), weights_(weights), maxContext_(maxContext),
      builder_(context), loc_(UnknownLoc::get(context)),
      caches_(config.num_layers) {
  // Activations take the embedding table's float type, so a bf16 checkpoint computes in
  // bf16 and an f32 one (the tiny test models) in f32; quantized tables compute in f32.
  activation_ = builder_.getF32Type();
  if (auto embed = weights_.find("model.embed_tokens.weight")) {
    if (embed->dtype == DType::kBF16)
      activation_ = builder_.getBF16Type();
    else if (embed->dtype == DType::kF16)
      activation_ = builder_.getF16Type();
  }
}

void ModelBuilder::addError(const llvm::Twine &message) {
  errors_.push_back(message.str());
}

RankedTensorType ModelBuilder::actType(llvm::ArrayRef<int64_t> trailing) const {
  SmallVector<int64_t> shape = {ShapedType::kDynamic, seq_};
  shape.append(trailing.begin(), trailing.end());
  return RankedTensorType::get(shape, activation_);
}

bool ModelBuilder::hasWeight(llvm::StringRef name) const {
  return weights_.find(name.str()).has_value();
}

Type ModelBuilder::weightType(const WeightInfo &info, llvm::ArrayRef<int64_t> shape) {
  auto f16 = builder_.getF16Type();
  switch (info.dtype) {
  case DType::kF32:
    return RankedTensorType::get(shape, builder_.getF32Type());
  case DType::kF16:
    return RankedTensorType::get(shape, f16);
  case DType::kBF16:
    return RankedTensorType::get(shape, builder_.getBF16Type());
  // GGUF blocks of 32 with one f16 scale map exactly onto group-wise quantization.
  case DType::kQ8_0:
    return mlir::tessel::QuantizedTensorType::get(context_, shape, builder_.getIntegerType(8),
                                            mlir::tessel::QuantScheme::group, 32, f16);
  case DType::kQ4_0:
    return mlir::tessel::QuantizedTensorType::get(context_, shape, builder_.getIntegerType(4),
                                            mlir::tessel::QuantScheme::group, 32, f16);
  // Offsets (Q4_1) and super-block scales (K quants) have no tessel type: the weight
  // writer dequantizes them, so the graph sees f32.
  case DType::kQ4_1:
  case DType::kQ4_K:
  case DType::kQ6_K:
    return RankedTensorType::get(shape, builder_.getF32Type());
  default:
    return {};
  }
}

Value ModelBuilder::param(llvm::StringRef name, llvm::ArrayRef<int64_t> shape) {
  auto known = checked_.find(name);
  if (known != checked_.end()) {
    auto op = mlir::tessel::ParamOp::create(builder_, loc_, known->second.second,
                                            builder_.getStringAttr(known->second.first),
                                            mlir::tessel::ShardingAttr());
    if (std::optional<WeightInfo> info = weights_.find(name.str()))
      markDequantized(op, *info);
    return op;
  }
  std::optional<WeightInfo> info = weights_.find(name.str());
  Type type;
  std::string storedName = name.str();
  if (!info) {
    addError("missing tensor '" + name + "' (expected shape " + shapeStr(shape) + ")");
  } else {
    storedName = info->stored_name;
    if (info->shape != std::vector<int64_t>(shape.begin(), shape.end()))
      addError("tensor '" + info->stored_name + "' has shape " + shapeStr(info->shape) +
               " but the config implies " + shapeStr(shape));
    type = weightType(*info, shape);
    if (!type)
      addError("tensor '" + info->stored_name + "' has dtype " +
               std::string(::tessel::DTypeName(info->dtype)) +
               "; weights must be f32, f16 or bf16 (or GGUF Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)");
    used_.insert(info->stored_name);
  }
  if (!type)
    type = RankedTensorType::get(shape, activation_);
  checked_[name] = {storedName, type};
  auto op = mlir::tessel::ParamOp::create(builder_, loc_, type, builder_.getStringAttr(storedName),
                                    mlir::tessel::ShardingAttr());
  if (info)
    markDequantized(op, *info);
  return op;
}

void ModelBuilder::markDequantized(Operation *op, const WeightInfo &info) {
  if (info.dtype == DType::kQ4_1 || info.dtype == DType::kQ4_K || info.dtype == DType::kQ6_K)
    op->setAttr("tessel.dequantize", builder_.getStringAttr(::tessel::DTypeName(info.dtype)));
}

Value ModelBuilder::expertParams(llvm::StringRef pattern, int64_t count,
                                 llvm::ArrayRef<int64_t> shape) {
  auto known = checked_.find(pattern);
  if (known != checked_.end())
    return mlir::tessel::ExpertParamsOp::create(builder_, loc_, known->second.second,
                                                builder_.getStringAttr(known->second.first),
                                                builder_.getI64IntegerAttr(count));
  // Every expert must exist with the same shape and dtype; the stack takes the first's.
  // Expert weights keep their Hugging Face names (no renaming source maps experts), so
  // the stored pattern is the pattern itself.
  std::optional<WeightInfo> first;
  std::string storedPattern = pattern.str();
  for (int64_t e = 0; e < count; ++e) {
    std::string name = pattern.str();
    name.replace(name.find("{}"), 2, std::to_string(e));
    std::optional<WeightInfo> info = weights_.find(name);
    if (!info) {
      addError("missing tensor '" + name + "' (expected shape " + shapeStr(shape) + ")");
      continue;
    }
    used_.insert(info->stored_name);
    if (info->shape != std::vector<int64_t>(shape.begin(), shape.end()))
      addError("tensor '" + info->stored_name + "' has shape " + shapeStr(info->shape) +
               " but the config implies " + shapeStr(shape));
    if (!first) {
      first = info;
    } else if (info->dtype != first->dtype) {
      addError("expert tensor '" + info->stored_name + "' has dtype " +
               std::string(::tessel::DTypeName(info->dtype)) + " but expert 0 has " +
               std::string(::tessel::DTypeName(first->dtype)));
    }
  }
  SmallVector<int64_t> stacked = {count};
  stacked.append(shape.begin(), shape.end());
  Type type = first ? weightType(*first, stacked) : Type();
  if (first && !type)
    addError("expert tensors '" + storedPattern + "' have dtype " +
             std::string(::tessel::DTypeName(first->dtype)) + "; weights must be float");
  if (!type)
    type = RankedTensorType::get(stacked, activation_);
  checked_[pattern] = {storedPattern, type};
  return mlir::tessel::ExpertParamsOp::create(builder_, loc_, type,
                                        builder_.getStringAttr(storedPattern),
                                        builder_.getI64IntegerAttr(count));
}

Value ModelBuilder::rmsNorm(Value x, llvm::StringRef weight) {
  int64_t dim = cast<ShapedType>(x.getType()).getShape().back();
  Value w = param(weight, {dim});
  return mlir::tessel::RMSNormOp::create(builder_, loc_, x.getType(), x, w,
                                   builder_.getF64FloatAttr(config_.rms_norm_eps));
}

Value ModelBuilder::linear(Value x, llvm::StringRef weight, int64_t out,
                           std::optional<llvm::StringRef> bias) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t in = type.getShape().back();
  Value w = param(weight, {out, in});
  Value b = bias ? param(*bias, {out}) : Value();
  SmallVector<int64_t> shape(type.getShape().drop_back());
  shape.push_back(out);
  return mlir::tessel::MatmulOp::create(
      builder_, loc_, RankedTensorType::get(shape, type.getElementType()), x, w, b,
      mlir::tessel::WeightLayoutAttr::get(context_, mlir::tessel::WeightLayout::out_in));
}

Value ModelBuilder::add(Value a, Value b) {
  return mlir::tessel::AddOp::create(builder_, loc_, a, b);
}

Value ModelBuilder::gatedMlp(Value x, llvm::StringRef gate, llvm::StringRef up,
                             llvm::StringRef down, int64_t intermediate) {
  int64_t hidden = cast<ShapedType>(x.getType()).getShape().back();
  Value g = linear(x, gate, intermediate);
  Value u = linear(x, up, intermediate);
  Value act = mlir::tessel::SiluOp::create(builder_, loc_, g);
  Value gated = mlir::tessel::MulOp::create(builder_, loc_, act, u);
  return linear(gated, down, hidden);
}

Value ModelBuilder::reshape(Value x, llvm::ArrayRef<int64_t> trailing) {
  return mlir::tessel::ReshapeOp::create(builder_, loc_, actType(trailing), x);
}

Value ModelBuilder::slice(Value x, int64_t dim, int64_t start, int64_t size) {
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[dim] = size;
  return mlir::tessel::SliceOp::create(builder_, loc_, RankedTensorType::get(shape, type.getElementType()),
                                 x, builder_.getI64IntegerAttr(dim),
                                 builder_.getI64IntegerAttr(start),
                                 builder_.getI64IntegerAttr(size));
}

Value ModelBuilder::rope(Value x, const import::RopeConfig &rope) {
  mlir::tessel::RopeScalingAttr scaling;
  if (rope.scaling) {
    const import::RopeScaling &s = *rope.scaling;
    std::optional<mlir::tessel::RopeScalingKind> kind = mlir::tessel::symbolizeRopeScalingKind(s.type);
    scaling = mlir::tessel::RopeScalingAttr::getChecked(
        [&] { return emitError(loc_); }, context_, *kind, llvm::APFloat(s.factor),
        s.original_max_position, llvm::APFloat(s.low_freq_factor),
        llvm::APFloat(s.high_freq_factor), llvm::APFloat(s.beta_fast),
        llvm::APFloat(s.beta_slow), llvm::APFloat(s.mscale), llvm::APFloat(s.mscale_all_dim),
        llvm::APFloat(s.attention_factor));
    if (!scaling)
      addError("invalid rope scaling in the config (see the diagnostic above)");
  }
  return mlir::tessel::RopeOp::create(builder_, loc_, x.getType(), x, positions_,
                                builder_.getF64FloatAttr(rope.theta),
                                builder_.getI64IntegerAttr(rope.rotary_dim),
                                rope.interleaved ? builder_.getUnitAttr() : UnitAttr(),
                                scaling);
}

llvm::SmallVector<RankedTensorType, 2> ModelBuilder::cacheTypes() const {
  int64_t dyn = ShapedType::kDynamic;
  if (config_.mla)
    return {RankedTensorType::get({dyn, maxContext_, config_.mla->kv_lora_rank}, activation_),
            RankedTensorType::get({dyn, maxContext_, config_.mla->qk_rope_head_dim},
                                  activation_)};
  auto kv = RankedTensorType::get({dyn, maxContext_, config_.num_kv_heads, config_.head_dim},
                                  activation_);
  return {kv, kv};
}

Value ModelBuilder::attention(int64_t layer, Value x, llvm::StringRef prefix, bool qkvBias,
                              bool outputBias) {
  const ModelConfig &c = config_;
  std::string p = prefix.str();
  std::string qb = p + "q_proj.bias", kb = p + "k_proj.bias", vb = p + "v_proj.bias",
              ob = p + "o_proj.bias";
  Value q = linear(x, p + "q_proj.weight", c.num_heads * c.head_dim,
                   qkvBias ? std::optional<llvm::StringRef>(qb) : std::nullopt);
  Value k = linear(x, p + "k_proj.weight", c.num_kv_heads * c.head_dim,
                   qkvBias ? std::optional<llvm::StringRef>(kb) : std::nullopt);
  Value v = linear(x, p + "v_proj.weight", c.num_kv_heads * c.head_dim,
                   qkvBias ? std::optional<llvm::StringRef>(vb) : std::nullopt);
  q = rope(reshape(q, {c.num_heads, c.head_dim}), c.rope);
  k = rope(reshape(k, {c.num_kv_heads, c.head_dim}), c.rope);
  v = reshape(v, {c.num_kv_heads, c.head_dim});
  LayerCache &cache = caches_[layer];
  Value kc = mlir::tessel::KVCacheWriteOp::create(builder_, loc_, cache.in[0].getType(),
                                            cache.in[0], k, positions_);
  Value vc = mlir::tessel::KVCacheWriteOp::create(builder_, loc_, cache.in[1].getType(),
                                            cache.in[1], v, positions_);
  cache.out = {kc, vc};
  IntegerAttr window = c.sliding_window ? builder_.getI64IntegerAttr(*c.sliding_window)
                                        : IntegerAttr();
  Value attn = mlir::tessel::AttentionOp::create(
      builder_, loc_, actType({c.num_heads, c.head_dim}), q, kc, vc, positions_,
      builder_.getF64FloatAttr(1.0 / std::sqrt(static_cast<double>(c.head_dim))),
      builder_.getUnitAttr(), window, FloatAttr());
  return linear(reshape(attn, {c.num_heads * c.head_dim}), p + "o_proj.weight",
                c.hidden_size,
                outputBias ? std::optional<llvm::StringRef>(ob) : std::nullopt);
}

Value ModelBuilder::mlaAttention(int64_t layer, Value x, llvm::StringRef prefix) {
  const ModelConfig &c = config_;
  const import::MLAConfig &m = *c.mla;
  std::string p = prefix.str();
  int64_t qkHead = m.qk_nope_head_dim + m.qk_rope_head_dim;
  // Queries: a low-rank pair with a norm in between (V3, V2), or one projection (V2-Lite).
  Value q;
  if (m.q_lora_rank > 0) {
    q = linear(x, p + "q_a_proj.weight", m.q_lora_rank);
    q = rmsNorm(q, p + "q_a_layernorm.weight");
    q = linear(q, p + "q_b_proj.weight", c.num_heads * qkHead);
  } else {
    q = linear(x, p + "q_proj.weight", c.num_heads * qkHead);
  }
  q = reshape(q, {c.num_heads, qkHead});
  Value qNope = slice(q, 3, 0, m.qk_nope_head_dim);
  Value qRope = rope(slice(q, 3, m.qk_nope_head_dim, m.qk_rope_head_dim), c.rope);
  // Keys and values: one projection to the latent plus the shared rotary key.
  Value kv = linear(x, p + "kv_a_proj_with_mqa.weight", m.kv_lora_rank + m.qk_rope_head_dim);
  Value latent = rmsNorm(slice(kv, 2, 0, m.kv_lora_rank), p + "kv_a_layernorm.weight");
  Value keyRope = reshape(slice(kv, 2, m.kv_lora_rank, m.qk_rope_head_dim),
                          {1, m.qk_rope_head_dim});
  keyRope = reshape(rope(keyRope, c.rope), {m.qk_rope_head_dim});
  LayerCache &cache = caches_[layer];
  Value latentCache = mlir::tessel::KVCacheWriteOp::create(builder_, loc_, cache.in[0].getType(),
                                                     cache.in[0], latent, positions_);
  Value ropeCache = mlir::tessel::KVCacheWriteOp::create(builder_, loc_, cache.in[1].getType(),
                                                   cache.in[1], keyRope, positions_);
  cache.out = {latentCache, ropeCache};
  Value kvB = param(p + "kv_b_proj.weight",
                    {c.num_heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank});
  // Softmax scale: qk_head_dim^-0.5, times mscale^2 under YaRN with mscale_all_dim
  // (DeepSeek's attention temperature).
  double scale = 1.0 / std::sqrt(static_cast<double>(qkHead));
  if (c.rope.scaling && c.rope.scaling->mscale_all_dim != 0.0) {
    double mscale = yarnMscale(c.rope.scaling->factor, c.rope.scaling->mscale_all_dim);
    scale *= mscale * mscale;
  }
  Value attn = mlir::tessel::MLAAttentionOp::create(
      builder_, loc_, actType({c.num_heads, m.v_head_dim}), qNope, qRope, latentCache,
      ropeCache, kvB, positions_, builder_.getF64FloatAttr(scale), builder_.getUnitAttr());
  return linear(reshape(attn, {c.num_heads * m.v_head_dim}), p + "o_proj.weight",
                c.hidden_size);
}

Value ModelBuilder::moe(Value x, llvm::StringRef gate, std::optional<llvm::StringRef> bias,
                        llvm::StringRef gatePattern, llvm::StringRef upPattern,
                        llvm::StringRef downPattern) {
  const import::MoEConfig &m = *config_.moe;
  int64_t hidden = config_.hidden_size;
  Value router = param(gate, {m.num_experts, hidden});
  Value biasValue = bias ? param(*bias, {m.num_experts}) : Value();
  SmallVector<int64_t> routedShape = {ShapedType::kDynamic, seq_, m.top_k};
  auto weightsType = RankedTensorType::get(routedShape, builder_.getF32Type());
  auto indicesType = RankedTensorType::get(routedShape, builder_.getI32Type());
  auto route = mlir::tessel::MoERouterOp::create(
      builder_, loc_, weightsType, indicesType, x, router, biasValue,
      builder_.getI64IntegerAttr(m.top_k), builder_.getI64IntegerAttr(m.n_group),
      builder_.getI64IntegerAttr(m.topk_group),
      mlir::tessel::RouterScoringAttr::get(context_, m.sigmoid_scoring
                                                   ? mlir::tessel::RouterScoring::sigmoid
                                                   : mlir::tessel::RouterScoring::softmax),
      m.norm_topk_prob ? builder_.getUnitAttr() : UnitAttr(),
      builder_.getF64FloatAttr(m.routed_scaling_factor));
  Value g = expertParams(gatePattern, m.num_experts, {m.intermediate_size, hidden});
  Value u = expertParams(upPattern, m.num_experts, {m.intermediate_size, hidden});
  Value d = expertParams(downPattern, m.num_experts, {hidden, m.intermediate_size});
  return mlir::tessel::MoEExpertsOp::create(
      builder_, loc_, x.getType(), x, route.getWeights(), route.getIndices(), g, u, d,
      mlir::tessel::ActivationAttr::get(context_, mlir::tessel::Activation::silu));
}

void ModelBuilder::buildEntryPoint(ModuleOp module, llvm::StringRef name, int64_t seq,
                                   const DecoderLayerFn &layerFn) {
  const ModelConfig &c = config_;
  seq_ = seq;
  auto idsType = RankedTensorType::get({ShapedType::kDynamic, seq}, builder_.getI32Type());
  SmallVector<Type> inputs = {idsType, idsType};
  SmallVector<RankedTensorType, 2> perLayer = cacheTypes();
  for (int64_t l = 0; l < c.num_layers; ++l)
    inputs.append(perLayer.begin(), perLayer.end());
  auto logitsType =
      RankedTensorType::get({ShapedType::kDynamic, seq, c.vocab_size}, builder_.getF32Type());
  SmallVector<Type> results = {logitsType};
  results.append(inputs.begin() + 2, inputs.end());

  builder_.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(builder_, loc_, name,
                                   builder_.getFunctionType(inputs, results));
  Block *body = func.addEntryBlock();
  builder_.setInsertionPointToEnd(body);
  positions_ = body->getArgument(1);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    caches_[l].in.assign(body->args_begin() + 2 + 2 * l, body->args_begin() + 4 + 2 * l);
    caches_[l].out.clear();
  }

  Value embed = param("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  Value hidden = mlir::tessel::EmbeddingOp::create(builder_, loc_, actType({c.hidden_size}),
                                             body->getArgument(0), embed);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    hidden = layerFn(*this, l, hidden);
    if (caches_[l].out.size() != caches_[l].in.size())
      caches_[l].out = caches_[l].in;  // a layer without attention leaves its cache as is
  }
  hidden = rmsNorm(hidden, "model.norm.weight");
  Value head = c.tie_word_embeddings ? embed
                                     : param("lm_head.weight", {c.vocab_size, c.hidden_size});
  Value logits = mlir::tessel::MatmulOp::create(
      builder_, loc_, actType({c.vocab_size}), hidden, head, Value(),
      mlir::tessel::WeightLayoutAttr::get(context_, mlir::tessel::WeightLayout::out_in));
  if (activation_ != builder_.getF32Type())
    logits = mlir::tessel::CastOp::create(builder_, loc_, logitsType, logits);
  SmallVector<Value> returned = {logits};
  for (LayerCache &cache : caches_)
    returned.append(cache.out.begin(), cache.out.end());
  func::ReturnOp::create(builder_, loc_, returned);
}

llvm::Expected<OwningOpRef<ModuleOp>> ModelBuilder::build(const DecoderLayerFn &layerFn) {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc_);
  const ModelConfig &c = config_;
  SmallVector<NamedAttribute> info = {
      builder_.getNamedAttr("model_type", builder_.getStringAttr(c.model_type)),
      builder_.getNamedAttr("vocab_size", builder_.getI64IntegerAttr(c.vocab_size)),
      builder_.getNamedAttr("hidden_size", builder_.getI64IntegerAttr(c.hidden_size)),
      builder_.getNamedAttr("num_layers", builder_.getI64IntegerAttr(c.num_layers)),
      builder_.getNamedAttr("max_context", builder_.getI64IntegerAttr(maxContext_)),
      builder_.getNamedAttr("eos_token_ids",
                            builder_.getDenseI64ArrayAttr(c.eos_token_ids))};
  if (c.bos_token_id)
    info.push_back(
        builder_.getNamedAttr("bos_token_id", builder_.getI64IntegerAttr(*c.bos_token_id)));
  (*module)->setAttr("tessel.model", builder_.getDictionaryAttr(info));

  buildEntryPoint(*module, "prefill", ShapedType::kDynamic, layerFn);
  buildEntryPoint(*module, "decode", 1, layerFn);

  std::vector<std::string> unused;
  for (const std::string &name : weights_.storedNames())
    if (!used_.contains(name) && !weights_.isIgnorable(name))
      unused.push_back(name);
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < std::min<size_t>(unused.size(), 8); ++i)
      list += (i ? ", '" : "'") + unused[i] + "'";
    if (unused.size() > 8)
      list += ", ... (" + std::to_string(unused.size() - 8) + " more)";
    addError(std::to_string(unused.size()) + " checkpoint tensor(s) not used by the " +
             c.model_type + " graph: " + list);
  }
  if (!errors_.empty()) {
    std::string message;
    for (size_t i = 0; i < std::min(errors_.size(), kMaxReportedErrors); ++i)
      message += "\n  " + errors_[i];
    if (errors_.size() > kMaxReportedErrors)
      message += "\n  ... and " + std::to_string(errors_.size() - kMaxReportedErrors) +
                 " more";
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the checkpoint does not match its config:" + message);
  }
  if (failed(mlir::verify(*module)))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the imported graph does not verify (see diagnostics)");
  return module;
}
