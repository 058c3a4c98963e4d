//===- PlanEmitter.cpp - tessel_exec to the FlatBuffers plan ----*- C++ -*-===//
// One plan value per buffer SSA value, one instruction per tessel_exec.launch; the
// attributes of each kernel go into its Attrs union member.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/emit/Artifact.h"

#include "dialects/tessel/IR/TesselDialect.h"
#include "dialects/tessel_exec/IR/TesselExecDialect.h"
#include "runtime/plan/format.h"
#include "runtime/schema/plan_generated.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
namespace fb = flatbuffers;
namespace codegen = ::tessel::codegen;
namespace tp = ::tessel::plan;

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::optional<tp::DType> dtypeOf(Type type) {
  if (type.isF32()) return tp::DType::F32;
  if (type.isF16()) return tp::DType::F16;
  if (type.isBF16()) return tp::DType::BF16;
  if (type.isSignlessInteger(32)) return tp::DType::I32;
  if (type.isSignlessInteger(64)) return tp::DType::I64;
  if (type.isSignlessInteger(8)) return tp::DType::I8;
  if (isa<Float8E4M3FNType>(type)) return tp::DType::F8E4M3;
  return std::nullopt;
}

std::optional<tp::OpCode> opcodeOf(StringRef kernel) {
  return llvm::StringSwitch<std::optional<tp::OpCode>>(kernel)
      .Case("embedding", tp::OpCode::Embedding)
      .Case("rms_norm", tp::OpCode::RMSNorm)
      .Case("layer_norm", tp::OpCode::LayerNorm)
      .Case("matmul", tp::OpCode::Matmul)
      .Case("add", tp::OpCode::Add)
      .Case("sub", tp::OpCode::Sub)
      .Case("mul", tp::OpCode::Mul)
      .Case("div", tp::OpCode::Div)
      .Case("max", tp::OpCode::Max)
      .Case("silu", tp::OpCode::Silu)
      .Case("sigmoid", tp::OpCode::Sigmoid)
      .Case("relu", tp::OpCode::Relu)
      .Case("exp", tp::OpCode::Exp)
      .Case("tanh", tp::OpCode::Tanh)
      .Case("neg", tp::OpCode::Neg)
      .Case("gelu", tp::OpCode::Gelu)
      .Case("scale", tp::OpCode::Scale)
      .Case("cast", tp::OpCode::Cast)
      .Case("softmax", tp::OpCode::Softmax)
      .Case("slice", tp::OpCode::Slice)
      .Case("concat", tp::OpCode::Concat)
      .Case("transpose", tp::OpCode::Transpose)
      .Case("rope", tp::OpCode::Rope)
      .Case("kv_cache_write", tp::OpCode::KVCacheWrite)
      .Case("attention", tp::OpCode::Attention)
      .Case("mla_attention", tp::OpCode::MLAAttention)
      .Case("moe_router", tp::OpCode::MoERouter)
      .Case("moe_experts", tp::OpCode::MoEExperts)
      .Default(std::nullopt);
}

double f64(Operation *op, StringRef name, double fallback = 0.0) {
  if (auto attr = op->getAttrOfType<FloatAttr>(name))
    return attr.getValueAsDouble();
  return fallback;
}

int64_t i64(Operation *op, StringRef name, int64_t fallback = 0) {
  if (auto attr = op->getAttrOfType<IntegerAttr>(name))
    return attr.getInt();
  return fallback;
}

/// The union member of a launch's attributes.
std::pair<tp::Attrs, fb::Offset<void>> emitAttrs(fb::FlatBufferBuilder &fbb, Operation *op,
                                                  tp::OpCode code) {
  switch (code) {
  case tp::OpCode::RMSNorm:
  case tp::OpCode::LayerNorm:
    return {tp::Attrs::NormAttrs, tp::CreateNormAttrs(fbb, f64(op, "epsilon")).Union()};
  case tp::OpCode::Matmul: {
    auto layout = op->getAttrOfType<mlir::tessel::WeightLayoutAttr>("layout");
    bool inOut = layout && layout.getValue() == mlir::tessel::WeightLayout::in_out;
    return {tp::Attrs::MatmulAttrs,
            tp::CreateMatmulAttrs(fbb, inOut ? tp::WeightLayout::InOut : tp::WeightLayout::OutIn)
                .Union()};
  }
  case tp::OpCode::Scale:
    return {tp::Attrs::ScaleAttrs, tp::CreateScaleAttrs(fbb, f64(op, "factor")).Union()};
  case tp::OpCode::Gelu: {
    auto approx = op->getAttrOfType<mlir::tessel::GeluApproximationAttr>("approximation");
    bool tanh = approx && approx.getValue() == mlir::tessel::GeluApproximation::tanh;
    return {tp::Attrs::GeluAttrs, tp::CreateGeluAttrs(fbb, tanh).Union()};
  }
  case tp::OpCode::Softmax:
    return {tp::Attrs::SoftmaxAttrs, tp::CreateSoftmaxAttrs(fbb, i64(op, "dim", -1)).Union()};
  case tp::OpCode::Slice:
    return {tp::Attrs::SliceAttrs,
            tp::CreateSliceAttrs(fbb, i64(op, "dim"), i64(op, "start"), i64(op, "size"))
                .Union()};
  case tp::OpCode::Concat:
    return {tp::Attrs::ConcatAttrs, tp::CreateConcatAttrs(fbb, i64(op, "dim")).Union()};
  case tp::OpCode::Transpose: {
    std::vector<int64_t> perm;
    if (auto attr = op->getAttrOfType<DenseI64ArrayAttr>("permutation"))
      perm.assign(attr.asArrayRef().begin(), attr.asArrayRef().end());
    return {tp::Attrs::TransposeAttrs,
            tp::CreateTransposeAttrsDirect(fbb, &perm).Union()};
  }
  case tp::OpCode::Rope: {
    tp::RopeAttrsBuilder rope(fbb);
    rope.add_theta(f64(op, "theta"));
    rope.add_rotary_dim(i64(op, "rotary_dim"));
    rope.add_interleaved(op->hasAttr("interleaved"));
    if (auto s = op->getAttrOfType<mlir::tessel::RopeScalingAttr>("scaling")) {
      tp::RopeScaling kind = tp::RopeScaling::None;
      switch (s.getKind()) {
      case mlir::tessel::RopeScalingKind::linear: kind = tp::RopeScaling::Linear; break;
      case mlir::tessel::RopeScalingKind::dynamic: kind = tp::RopeScaling::Dynamic; break;
      case mlir::tessel::RopeScalingKind::llama3: kind = tp::RopeScaling::Llama3; break;
      case mlir::tessel::RopeScalingKind::yarn: kind = tp::RopeScaling::Yarn; break;
      }
      rope.add_scaling(kind);
      rope.add_factor(s.getFactor().convertToDouble());
      rope.add_original_max_position(s.getOriginalMaxPosition());
      rope.add_low_freq_factor(s.getLowFreqFactor().convertToDouble());
      rope.add_high_freq_factor(s.getHighFreqFactor().convertToDouble());
      rope.add_beta_fast(s.getBetaFast().convertToDouble());
      rope.add_beta_slow(s.getBetaSlow().convertToDouble());
      rope.add_mscale(s.getMscale().convertToDouble());
      rope.add_mscale_all_dim(s.getMscaleAllDim().convertToDouble());
      rope.add_attention_factor(s.getAttentionFactor().convertToDouble());
    }
    return {tp::Attrs::RopeAttrs, rope.Finish().Union()};
  }
  case tp::OpCode::Attention:
  case tp::OpCode::MLAAttention:
    return {tp::Attrs::AttentionAttrs,
            tp::CreateAttentionAttrs(fbb, f64(op, "scale"), op->hasAttr("causal"),
                                     i64(op, "sliding_window"), f64(op, "logit_softcap"))
                .Union()};
  case tp::OpCode::MoERouter: {
    auto scoring = op->getAttrOfType<mlir::tessel::RouterScoringAttr>("scoring");
    bool sigmoid = scoring && scoring.getValue() == mlir::tessel::RouterScoring::sigmoid;
    return {tp::Attrs::RouterAttrs,
            tp::CreateRouterAttrs(fbb, i64(op, "top_k"), i64(op, "n_group", 1),
                                  i64(op, "topk_group", 1),
                                  sigmoid ? tp::RouterScoring::Sigmoid : tp::RouterScoring::Softmax,
                                  op->hasAttr("norm_topk_prob"),
                                  f64(op, "routed_scaling_factor", 1.0))
                .Union()};
  }
  case tp::OpCode::MoEExperts: {
    auto act = op->getAttrOfType<mlir::tessel::ActivationAttr>("activation");
    tp::Activation activation = tp::Activation::Silu;
    if (act && act.getValue() == mlir::tessel::Activation::gelu)
      activation = tp::Activation::Gelu;
    if (act && act.getValue() == mlir::tessel::Activation::gelu_tanh)
      activation = tp::Activation::GeluTanh;
    return {tp::Attrs::ExpertsAttrs, tp::CreateExpertsAttrs(fbb, activation).Union()};
  }
  default:
    return {tp::Attrs::NONE, 0};
  }
}

/// The op program of a fusion launch (see FusedProgram in plan.fbs): block arguments are
/// values 0..n-1, the body's ops n, n+1, ...
llvm::Expected<fb::Offset<tp::FusedProgram>> emitProgram(fb::FlatBufferBuilder &fbb,
                                                         tessel_exec::LaunchOp launch) {
  Block &body = launch.getBody().front();
  llvm::DenseMap<Value, uint32_t> ids;
  for (BlockArgument arg : body.getArguments())
    ids[arg] = arg.getArgNumber();
  std::vector<fb::Offset<tp::FusedOp>> ops;
  for (Operation &op : body.without_terminator()) {
    std::optional<tp::OpCode> code = opcodeOf(op.getName().stripDialect());
    if (!code || op.getNumResults() != 1)
      return makeError("'" + op.getName().getStringRef() + "' cannot be part of a fused program");
    std::vector<uint32_t> operands;
    for (Value v : op.getOperands())
      operands.push_back(ids.at(v));
    double attr = 0.0;
    if (*code == tp::OpCode::Scale)
      attr = f64(&op, "factor");
    else if (*code == tp::OpCode::RMSNorm)
      attr = f64(&op, "epsilon");
    auto approx = op.getAttrOfType<mlir::tessel::GeluApproximationAttr>("approximation");
    bool tanh = approx && approx.getValue() == mlir::tessel::GeluApproximation::tanh;
    Type element = cast<ShapedType>(op.getResult(0).getType()).getElementType();
    tp::DType dtype = dtypeOf(element).value_or(tp::DType::F32);
    ids[op.getResult(0)] = body.getNumArguments() + ops.size();
    ops.push_back(tp::CreateFusedOpDirect(fbb, *code, &operands, attr, tanh, dtype));
  }
  std::vector<uint32_t> results;
  for (Value v : body.getTerminator()->getOperands())
    results.push_back(ids.at(v));
  int64_t rowSize = cast<ShapedType>(launch.getOuts()[0].getType()).getShape().back();
  return tp::CreateFusedProgramDirect(fbb, &ops, &results, rowSize);
}

/// Plan shape of a buffer: dynamic batch / seq become kBatch / kSeq.
std::vector<int64_t> planShape(MemRefType type) {
  std::vector<int64_t> shape(type.getShape().begin(), type.getShape().end());
  for (size_t i = 0; i < shape.size(); ++i)
    if (ShapedType::isDynamic(shape[i]))
      shape[i] = i == 0 ? ::tessel::plan_format::kBatch : ::tessel::plan_format::kSeq;
  return shape;
}

} // namespace

namespace tessel::emit {
llvm::Expected<std::vector<uint8_t>> emitPlan(mlir::ModuleOp module,
                                              const import::ImportedModel &model,
                                              const std::vector<WeightRecord> &weights,
                                              const codegen::GpuCode *gpu) {
  fb::FlatBufferBuilder fbb(1 << 16);
  llvm::StringMap<uint32_t> weightIndex;
  for (auto [i, w] : llvm::enumerate(weights))
    weightIndex[w.name] = i;

  std::vector<fb::Offset<tp::EntryPoint>> entries;
  std::vector<fb::Offset<tp::CacheSlot>> cacheSlots;
  for (auto func : module.getOps<func::FuncOp>()) {
    llvm::DenseMap<Value, uint32_t> ids;
    std::vector<fb::Offset<tp::Value>> values;
    auto add = [&](Value v, fb::Offset<tp::Value> value) {
      ids[v] = values.size();
      values.push_back(value);
    };
    auto bufferType = [&](Value v) -> llvm::Expected<std::pair<tp::DType, std::vector<int64_t>>> {
      auto type = cast<MemRefType>(v.getType());
      std::optional<tp::DType> dtype = dtypeOf(type.getElementType());
      if (!dtype)
        return makeError("@" + func.getSymName() + ": buffers of element type have no plan "
                         "dtype");
      return std::make_pair(*dtype, planShape(type));
    };
    /// Adds a buffer value: dtype and shape from its memref type; `index` is the weight,
    /// input, cache or base value id, as `kind` says.
    auto addBuffer = [&](Value v, tp::ValueKind kind, uint32_t index,
                         uint64_t arenaOffset = 0, uint64_t bytesPerToken = 0) -> llvm::Error {
      auto typeOr = bufferType(v);
      if (!typeOr)
        return typeOr.takeError();
      auto shape = fbb.CreateVector(typeOr->second);
      auto pick = [&](tp::ValueKind k) { return kind == k ? index : 0u; };
      add(v, tp::CreateValue(fbb, kind, typeOr->first, shape, arenaOffset, bytesPerToken,
                             pick(tp::ValueKind::Weight), pick(tp::ValueKind::Input),
                             pick(tp::ValueKind::Cache), pick(tp::ValueKind::View)));
      return llvm::Error::success();
    };
    std::vector<uint32_t> inputs;
    Block &body = func.front();
    for (BlockArgument arg : body.getArguments()) {
      unsigned n = arg.getArgNumber();
      // Arguments: token ids, positions, then the KV cache slots.
      if (llvm::Error error = n < 2 ? addBuffer(arg, tp::ValueKind::Input, n)
                                    : addBuffer(arg, tp::ValueKind::Cache, n - 2))
        return std::move(error);
      inputs.push_back(ids[arg]);
      if (n >= 2 && func.getSymName() == "prefill") {
        auto typeOr = bufferType(arg);
        std::vector<int64_t> slotShape(typeOr->second.begin() + 1, typeOr->second.end());
        cacheSlots.push_back(tp::CreateCacheSlotDirect(fbb, (n - 2) / 2, typeOr->first,
                                                       &slotShape));
      }
    }
    std::vector<fb::Offset<tp::Instruction>> instructions;
    std::vector<uint32_t> outputs;
    for (Operation &op : body) {
      llvm::Error error = llvm::Error::success();
      if (auto weight = dyn_cast<tessel_exec::WeightOp>(op)) {
        auto it = weightIndex.find(weight.getName());
        if (it == weightIndex.end())
          return makeError("weight '" + weight.getName() + "' is not in the manifest");
        // The manifest's dtype and shape: what the weights file stores (block formats
        // and stacked experts included), not the buffer's element type.
        const WeightRecord &record = weights[it->second];
        auto shape = fbb.CreateVector(record.shape);
        add(weight, tp::CreateValue(fbb, tp::ValueKind::Weight,
                                    static_cast<tp::DType>(record.dtype), shape, 0, 0,
                                    it->second));
      } else if (auto alloc = dyn_cast<tessel_exec::AllocOp>(op)) {
        if (!alloc.getOffset())
          return makeError("@" + func.getSymName() +
                           ": a buffer has no arena offset; run --tessel-memory-plan first");
        error = addBuffer(alloc, tp::ValueKind::Arena, 0, *alloc.getOffset(),
                          alloc.getBytesPerToken());
      } else if (auto view = dyn_cast<tessel_exec::ViewOp>(op)) {
        error = addBuffer(view, tp::ValueKind::View, ids[view.getSource()]);
      } else if (auto launch = dyn_cast<tessel_exec::LaunchOp>(op);
                 launch && launch.getKernel() == "fusion") {
        std::vector<uint32_t> operands, results;
        for (Value v : launch.getIns())
          operands.push_back(ids.at(v));
        for (Value v : launch.getOuts())
          results.push_back(ids.at(v));
        auto program = emitProgram(fbb, launch);
        if (!program)
          return program.takeError();
        int32_t kernel = -1;
        if (auto index = launch->getAttrOfType<IntegerAttr>("tessel_exec.kernel_index"))
          kernel = index.getInt();
        if (kernel >= 0 && (!gpu || static_cast<size_t>(kernel) >= gpu->kernels.size()))
          return makeError("a fusion names generated kernel #" + llvm::Twine(kernel) +
                           ", which was not generated");
        instructions.push_back(tp::CreateInstructionDirect(fbb, tp::OpCode::Fused, &operands,
                                                           &results, tp::Attrs::NONE, 0,
                                                           kernel, *program));
      } else if (auto launch = dyn_cast<tessel_exec::LaunchOp>(op)) {
        std::optional<tp::OpCode> code = opcodeOf(launch.getKernel());
        if (!code)
          return makeError("kernel '" + launch.getKernel() + "' has no plan instruction");
        std::vector<uint32_t> operands, results;
        for (Value v : launch.getIns())
          operands.push_back(ids.at(v));
        for (Value v : launch.getOuts())
          results.push_back(ids.at(v));
        auto [attrType, attrs] = emitAttrs(fbb, launch, *code);
        instructions.push_back(tp::CreateInstructionDirect(fbb, *code, &operands, &results,
                                                           attrType, attrs));
      } else if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        for (Value v : ret.getOperands())
          outputs.push_back(ids.at(v));
      } else {
        return makeError("@" + func.getSymName() + ": '" + op.getName().getStringRef() +
                         "' cannot be emitted; run --tessel-lower-to-exec first");
      }
      if (error)
        return std::move(error);
    }
    auto peak = func->getAttrOfType<IntegerAttr>("tessel_exec.arena_bytes_per_token");
    if (!peak)
      return makeError("@" + func.getSymName() + " has no memory plan");
    int64_t seq = cast<MemRefType>(body.getArgument(0).getType()).getDimSize(1);
    entries.push_back(tp::CreateEntryPointDirect(
        fbb, func.getSymName().str().c_str(), ShapedType::isDynamic(seq) ? -1 : seq, &values,
        &inputs, &outputs, &instructions, peak.getInt()));
  }

  std::vector<fb::Offset<tp::Weight>> weightTable;
  for (const WeightRecord &w : weights)
    weightTable.push_back(tp::CreateWeightDirect(fbb, w.name.c_str(),
                                                 static_cast<tp::DType>(w.dtype), &w.shape, 0,
                                                 w.offset, w.size, w.checksum));
  std::vector<fb::Offset<fb::String>> files = {fbb.CreateString("weights.rank0.bin")};
  const ::tessel::import::ModelConfig &c = model.config;
  auto modelInfo = tp::CreateModelInfoDirect(
      fbb, c.model_type.c_str(), c.vocab_size, c.hidden_size, c.num_layers, model.max_context,
      c.bos_token_id.value_or(-1), &c.eos_token_ids, c.source.c_str());
  std::vector<fb::Offset<tp::Kernel>> kernels;
  std::vector<fb::Offset<tp::KernelImage>> images;
  if (gpu) {
    for (const codegen::GeneratedKernel &k : gpu->kernels)
      kernels.push_back(tp::CreateKernelDirect(fbb, k.name.c_str(), nullptr, nullptr,
                                               k.block_threads, k.elements_per_block));
    for (const codegen::KernelImage &image : gpu->images)
      images.push_back(tp::CreateKernelImageDirect(
          fbb, image.arch.c_str(), &image.image,
          ::tessel::plan_format::Fnv1a64(image.image.data(), image.image.size())));
  }
  auto plan = tp::CreatePlanDirect(fbb, ::tessel::plan_format::kMajor,
                                   ::tessel::plan_format::kMinor, modelInfo, &entries,
                                   &weightTable, &files, &cacheSlots, &kernels, 1, &images);
  fbb.Finish(plan, ::tessel::plan_format::kIdentifier);
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}
} // namespace tessel::emit
