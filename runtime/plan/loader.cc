// Loads a tessel artifact: plan verification (structure, then semantics) and
// weight mapping. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/plan/loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "flatbuffers/flatbuffers.h"
#include "runtime/base/status.h"
#include "runtime/plan/format.h"
#include "runtime/weights/gguf.h"

namespace tessel {
namespace {

using plan::Attrs;
using plan::OpCode;
using plan::ValueKind;

// The Verifier's limits: plans nest tables only a few levels deep (Plan >
// EntryPoint > Instruction > Attrs); the table cap bounds verification time on
// hostile inputs while leaving room for the largest models (DeepSeek-V3: ~10^5
// values and instructions).
constexpr uint32_t kMaxVerifierDepth = 16;
constexpr uint32_t kMaxVerifierTables = 1u << 24;
// The smallest buffer that holds a root offset and a file identifier.
constexpr size_t kMinPlanBytes = 8;
constexpr int kMaxRank = 8;

// FlatBuffers 2.0.8's Verifier checks a vector's length word, not the alignment
// of its 8-byte elements; reading a misaligned one is undefined behavior, so
// plans must align them (FlatBufferBuilder always does).
bool IsAligned(const flatbuffers::Vector<int64_t>* vector) {
  return vector == nullptr ||
         reinterpret_cast<uintptr_t>(vector->data()) % alignof(int64_t) == 0;
}

std::string VersionString(uint32_t major, uint32_t minor) {
  return absl::StrCat(major, ".", minor);
}

// Operand and result counts and the attrs table each opcode takes.
struct OpSignature {
  int min_operands;
  int max_operands;  // -1: unbounded
  int results;
  Attrs attrs;
};

bool GetSignature(OpCode op, OpSignature* out) {
  switch (op) {
    case OpCode::Embedding:
      *out = {2, 2, 1, Attrs::NONE};
      return true;
    case OpCode::RMSNorm:
      *out = {2, 2, 1, Attrs::NormAttrs};
      return true;
    case OpCode::LayerNorm:
      *out = {2, 3, 1, Attrs::NormAttrs};
      return true;
    case OpCode::Matmul:
      *out = {2, 3, 1, Attrs::MatmulAttrs};
      return true;
    case OpCode::Add:
    case OpCode::Sub:
    case OpCode::Mul:
    case OpCode::Div:
    case OpCode::Max:
      *out = {2, 2, 1, Attrs::NONE};
      return true;
    case OpCode::Silu:
    case OpCode::Sigmoid:
    case OpCode::Relu:
    case OpCode::Exp:
    case OpCode::Tanh:
    case OpCode::Neg:
    case OpCode::Cast:
    case OpCode::Copy:
      *out = {1, 1, 1, Attrs::NONE};
      return true;
    case OpCode::Gelu:
      *out = {1, 1, 1, Attrs::GeluAttrs};
      return true;
    case OpCode::Scale:
      *out = {1, 1, 1, Attrs::ScaleAttrs};
      return true;
    case OpCode::Softmax:
      *out = {1, 1, 1, Attrs::SoftmaxAttrs};
      return true;
    case OpCode::Slice:
      *out = {1, 1, 1, Attrs::SliceAttrs};
      return true;
    case OpCode::Concat:
      *out = {1, -1, 1, Attrs::ConcatAttrs};
      return true;
    case OpCode::Transpose:
      *out = {1, 1, 1, Attrs::TransposeAttrs};
      return true;
    case OpCode::Rope:
      *out = {2, 2, 1, Attrs::RopeAttrs};
      return true;
    case OpCode::KVCacheWrite:
      *out = {2, 2, 1, Attrs::NONE};
      return true;
    case OpCode::Attention:
      *out = {4, 4, 1, Attrs::AttentionAttrs};
      return true;
    case OpCode::MLAAttention:
      *out = {6, 6, 1, Attrs::AttentionAttrs};
      return true;
    case OpCode::MoERouter:
      *out = {2, 3, 2, Attrs::RouterAttrs};
      return true;
    case OpCode::MoEExperts:
      *out = {6, 6, 1, Attrs::ExpertsAttrs};
      return true;
    case OpCode::Fused:
      *out = {1, -1, -1, Attrs::NONE};
      return true;
  }
  return false;
}

std::string OpName(OpCode op) {
  const char* name = plan::EnumNameOpCode(op);
  if (name == nullptr || *name == '\0')
    return absl::StrCat("opcode ", static_cast<int>(op));
  return name;
}

std::string DTypeString(plan::DType dtype) {
  const char* name = plan::EnumNameDType(dtype);
  if (name == nullptr || *name == '\0')
    return absl::StrCat("dtype ", static_cast<int>(dtype));
  return name;
}

// Operand count of an op inside a fused program (the op's own, from GetSignature: every
// op that may be fused takes a fixed count); 0 if it may not appear there.
int FusedOpArity(OpCode op) {
  switch (op) {
    case OpCode::Add:
    case OpCode::Sub:
    case OpCode::Mul:
    case OpCode::Div:
    case OpCode::Max:
    case OpCode::RMSNorm:
    case OpCode::Silu:
    case OpCode::Sigmoid:
    case OpCode::Relu:
    case OpCode::Exp:
    case OpCode::Tanh:
    case OpCode::Neg:
    case OpCode::Gelu:
    case OpCode::Scale:
    case OpCode::Cast: {
      OpSignature signature;
      return GetSignature(op, &signature) ? signature.min_operands : 0;
    }
    default:
      return 0;
  }
}

// Checks a Fused instruction's program (see plan.fbs): every op known, every
// operand an earlier value, at most one RMSNorm, one program value per result.
absl::Status CheckFusedProgram(const plan::Instruction& inst,
                               const std::string& what) {
  const plan::FusedProgram* program = inst.program();
  if (inst.op() != OpCode::Fused) {
    return program == nullptr
               ? absl::OkStatus()
               : absl::DataLossError(absl::StrCat(
                     what, " has a fused program but is not a Fused op"));
  }
  if (program == nullptr || program->ops() == nullptr ||
      program->ops()->size() == 0 || program->results() == nullptr) {
    return absl::DataLossError(absl::StrCat(what, " has no fused program"));
  }
  if (program->row_size() <= 0) {
    return absl::DataLossError(absl::StrCat(
        what, " has a fused program with row size ", program->row_size()));
  }
  const uint32_t inputs = inst.operands()->size();
  const uint32_t ops = program->ops()->size();
  int norms = 0;
  for (uint32_t i = 0; i < ops; ++i) {
    const plan::FusedOp& op = *program->ops()->Get(i);
    const std::string step = absl::StrCat(what, " fused op #", i);
    const int arity = FusedOpArity(op.op());
    if (arity == 0) {
      return absl::DataLossError(
          absl::StrCat(step, " is ", OpName(op.op()), ", which cannot be fused"));
    }
    const uint32_t count = op.operands() ? op.operands()->size() : 0;
    if (count != static_cast<uint32_t>(arity)) {
      return absl::DataLossError(absl::StrCat(step, " (", OpName(op.op()),
                                              ") has ", count,
                                              " operands, expected ", arity));
    }
    for (uint32_t k = 0; k < count; ++k) {
      if (op.operands()->Get(k) >= inputs + i) {
        return absl::DataLossError(absl::StrCat(
            step, " operand #", k, " is program value #", op.operands()->Get(k),
            "; only ", inputs + i, " are defined before it"));
      }
    }
    if (op.op() == OpCode::RMSNorm && (++norms > 1 || !(op.attr() > 0.0))) {
      return absl::DataLossError(absl::StrCat(
          step, norms > 1 ? " is a second RMSNorm" : " has a non-positive epsilon"));
    }
    if (op.op() == OpCode::Cast && op.dtype() != plan::DType::F32 &&
        op.dtype() != plan::DType::F16 && op.dtype() != plan::DType::BF16) {
      return absl::DataLossError(absl::StrCat(step, " casts to ",
                                              DTypeString(op.dtype())));
    }
  }
  const uint32_t results = inst.results() ? inst.results()->size() : 0;
  if (program->results()->size() != results) {
    return absl::DataLossError(
        absl::StrCat(what, " fused program yields ", program->results()->size(),
                     " values for ", results, " results"));
  }
  for (uint32_t r = 0; r < results; ++r) {
    const uint32_t id = program->results()->Get(r);
    if (id < inputs || id >= inputs + ops) {
      return absl::DataLossError(absl::StrCat(
          what, " fused program result #", r, " is program value #", id,
          ", not one of its ops' results (#", inputs, "..#", inputs + ops - 1,
          ")"));
    }
  }
  return absl::OkStatus();
}

// Collects the semantic checks of one plan; every error names the plan and the
// object.
class PlanChecker {
 public:
  PlanChecker(const plan::Plan& plan, absl::string_view name)
      : plan_(plan), name_(name) {}

  absl::Status Check() {
    TESSEL_RETURN_IF_ERROR(CheckModel());
    TESSEL_RETURN_IF_ERROR(CheckWeightFiles());
    TESSEL_RETURN_IF_ERROR(CheckWeights());
    TESSEL_RETURN_IF_ERROR(CheckCacheSlots());
    TESSEL_RETURN_IF_ERROR(CheckKernels());
    if (plan_.ranks() < 1) return Error("declares 0 ranks");
    if (plan_.entry_points() == nullptr || plan_.entry_points()->size() == 0) {
      return Error("has no entry points");
    }
    std::set<std::string, std::less<>> names;
    for (uint32_t i = 0; i < plan_.entry_points()->size(); ++i) {
      const plan::EntryPoint* entry = plan_.entry_points()->Get(i);
      if (entry->name() == nullptr || entry->name()->size() == 0) {
        return Error(absl::StrCat("entry point #", i, " has no name"));
      }
      if (!names.insert(entry->name()->str()).second) {
        return Error(absl::StrCat("has two entry points called '",
                                  entry->name()->str(), "'"));
      }
      TESSEL_RETURN_IF_ERROR(CheckEntryPoint(*entry));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view problem) const {
    return absl::DataLossError(
        absl::StrCat(name_, " is invalid: it ", problem));
  }

  // Generated kernels (format 1.1): named, launchable, with code for at least
  // one architecture; every image names its architecture.
  absl::Status CheckKernels() {
    const uint32_t kernels = plan_.kernels() ? plan_.kernels()->size() : 0;
    const uint32_t images =
        plan_.kernel_images() ? plan_.kernel_images()->size() : 0;
    for (uint32_t i = 0; i < kernels; ++i) {
      const plan::Kernel& kernel = *plan_.kernels()->Get(i);
      if (kernel.name() == nullptr || kernel.name()->size() == 0)
        return Error(absl::StrCat("has kernel #", i, " without a name"));
      if (kernel.block_threads() < 1 || kernel.block_threads() > 1024) {
        return Error(absl::StrCat("has kernel #", i, " with ",
                                  kernel.block_threads(),
                                  " threads per block"));
      }
    }
    if (kernels > 0 && images == 0)
      return Error(absl::StrCat("has ", kernels, " kernels but no GPU code"));
    for (uint32_t i = 0; i < images; ++i) {
      const plan::KernelImage& image = *plan_.kernel_images()->Get(i);
      if (image.arch() == nullptr || image.arch()->size() == 0 ||
          image.image() == nullptr || image.image()->size() == 0) {
        return Error(absl::StrCat("has kernel image #", i,
                                  " without an architecture or code"));
      }
      // GPU code goes to the driver as is: a damaged image must not get there.
      if (plan_format::Fnv1a64(image.image()->data(), image.image()->size()) !=
          image.checksum()) {
        return Error(absl::StrCat("has kernel image #", i, " (",
                                  image.arch()->str(),
                                  ") whose checksum does not match"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckModel() {
    const plan::ModelInfo* model = plan_.model();
    if (model == nullptr) return Error("has no model info");
    if (model->vocab_size() <= 0) {
      return Error(absl::StrCat("declares a vocabulary of ",
                                model->vocab_size(), " tokens"));
    }
    if (model->vocab_size() > std::numeric_limits<int32_t>::max()) {
      return Error(
          absl::StrCat("declares a vocabulary of ", model->vocab_size(),
                       " tokens, more than 32-bit token ids can name"));
    }
    if (model->max_context() <= 0 ||
        model->max_context() > std::numeric_limits<int32_t>::max()) {
      return Error(absl::StrCat("declares a context of ", model->max_context(),
                                " tokens"));
    }
    if (model->num_layers() < 0) {
      return Error(absl::StrCat("declares ", model->num_layers(), " layers"));
    }
    const int64_t vocab = model->vocab_size();
    if (model->bos_token_id() < -1 || model->bos_token_id() >= vocab) {
      return Error(absl::StrCat("declares BOS token ", model->bos_token_id(),
                                ", outside the vocabulary of ", vocab));
    }
    if (!IsAligned(model->eos_token_ids()))
      return Error("has a misaligned EOS token vector");
    if (model->eos_token_ids() != nullptr) {
      for (int64_t eos : *model->eos_token_ids()) {
        if (eos < 0 || eos >= vocab) {
          return Error(absl::StrCat("declares EOS token ", eos,
                                    ", outside the vocabulary of ", vocab));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckWeightFiles() {
    if (plan_.weight_files() == nullptr) return absl::OkStatus();
    for (uint32_t i = 0; i < plan_.weight_files()->size(); ++i) {
      const flatbuffers::String* file = plan_.weight_files()->Get(i);
      const absl::string_view path(file->c_str(), file->size());
      if (path.empty() || path.front() == '/' ||
          path.find('\0') != absl::string_view::npos) {
        return Error(absl::StrCat("names weight file #", i, " '",
                                  absl::CEscape(path),
                                  "', which is not a relative path"));
      }
      for (absl::string_view part : absl::StrSplit(path, '/')) {
        if (part == "..") {
          return Error(absl::StrCat("names weight file '", absl::CEscape(path),
                                    "', which leaves the artifact directory"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckShape(const flatbuffers::Vector<int64_t>* shape,
                          bool allow_symbolic, absl::string_view what,
                          int64_t* static_elements) const {
    if (shape == nullptr) return Error(absl::StrCat(what, " has no shape"));
    if (!IsAligned(shape))
      return Error(absl::StrCat(what, " has a misaligned shape vector"));
    if (shape->size() > kMaxRank) {
      return Error(absl::StrCat(what, " has rank ", shape->size(),
                                ", more than ", kMaxRank));
    }
    int64_t elements = 1;
    for (int64_t dim : *shape) {
      const bool symbolic =
          dim == plan_format::kBatch || dim == plan_format::kSeq;
      if (dim < 0 && !(allow_symbolic && symbolic)) {
        return Error(absl::StrCat(what, " has dimension ", dim));
      }
      if (symbolic) continue;
      if (__builtin_mul_overflow(elements, dim, &elements)) {
        return Error(absl::StrCat(what, " has too many elements"));
      }
    }
    if (static_elements != nullptr) *static_elements = elements;
    return absl::OkStatus();
  }

  absl::Status CheckWeights() {
    if (plan_.weights() == nullptr) return absl::OkStatus();
    const uint32_t files =
        plan_.weight_files() ? plan_.weight_files()->size() : 0;
    for (uint32_t i = 0; i < plan_.weights()->size(); ++i) {
      const plan::Weight* weight = plan_.weights()->Get(i);
      const std::string what = absl::StrCat(
          "weight '",
          weight->name() ? absl::CEscape(weight->name()->str()) : "", "' (#", i,
          ")");
      DType dtype;
      if (!ToWeightsDType(weight->dtype(), &dtype)) {
        return Error(absl::StrCat(what, " has unsupported ",
                                  DTypeString(weight->dtype())));
      }
      int64_t elements = 0;
      TESSEL_RETURN_IF_ERROR(
          CheckShape(weight->shape(), false, what, &elements));
      const std::optional<int64_t> bytes = StorageBytes(dtype, elements);
      if (!bytes.has_value() ||
          static_cast<uint64_t>(*bytes) != weight->size()) {
        return Error(absl::StrCat(
            what, " of ", elements, " ", std::string(DTypeName(dtype)),
            " elements declares ", weight->size(), " bytes, expected ",
            bytes.has_value() ? absl::StrCat(*bytes) : "a whole block"));
      }
      if (weight->file() >= files) {
        return Error(absl::StrCat(what, " is in weight file #", weight->file(),
                                  " but the plan lists ", files,
                                  " weight files"));
      }
      if (weight->offset() % plan_format::kWeightAlignment != 0) {
        return Error(absl::StrCat(what, " starts at offset ", weight->offset(),
                                  ", not a multiple of ",
                                  plan_format::kWeightAlignment));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckCacheSlots() {
    if (plan_.kv_cache() == nullptr) return absl::OkStatus();
    for (uint32_t i = 0; i < plan_.kv_cache()->size(); ++i) {
      const plan::CacheSlot* slot = plan_.kv_cache()->Get(i);
      const std::string what = absl::StrCat("KV cache slot #", i);
      const plan::DType dtype = slot->dtype();
      if (dtype != plan::DType::F32 && dtype != plan::DType::F16 &&
          dtype != plan::DType::BF16) {
        return Error(
            absl::StrCat(what, " has unsupported ", DTypeString(dtype)));
      }
      TESSEL_RETURN_IF_ERROR(CheckShape(slot->shape(), false, what, nullptr));
      if (slot->shape()->size() < 1 || slot->shape()->Get(0) < 1) {
        return Error(absl::StrCat(
            what, " has no capacity (its shape must be [capacity, ...])"));
      }
    }
    return absl::OkStatus();
  }

  // The kind of the value a view chain ends in; Check() has rejected cycles
  // before.
  // The kind of the value each view chain ends in, per value id; computed once
  // per entry point by RootKinds(), which also rejects cycles.
  std::vector<ValueKind> root_kinds_;

  // Resolves every value's root kind in O(values): each chain is walked once,
  // marking values in progress, so a chain that meets a value in progress is a
  // cycle.
  absl::Status RootKinds(
      const flatbuffers::Vector<flatbuffers::Offset<plan::Value>>& values,
      absl::string_view where) {
    enum : uint8_t { kUnvisited, kInProgress, kDone };
    const uint32_t count = values.size();
    std::vector<uint8_t> state(count, kUnvisited);
    root_kinds_.assign(count, ValueKind::Arena);
    std::vector<uint32_t> chain;
    for (uint32_t id = 0; id < count; ++id) {
      chain.clear();
      uint32_t current = id;
      while (state[current] == kUnvisited &&
             values.Get(current)->kind() == ValueKind::View) {
        state[current] = kInProgress;
        chain.push_back(current);
        current = values.Get(current)->base();
      }
      if (state[current] == kInProgress) {
        return Error(absl::StrCat(where, " value #", id,
                                  " is a view in a cycle of views"));
      }
      const ValueKind root = state[current] == kDone
                                 ? root_kinds_[current]
                                 : values.Get(current)->kind();
      state[current] = kDone;
      root_kinds_[current] = root;
      for (uint32_t member : chain) {
        state[member] = kDone;
        root_kinds_[member] = root;
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckValue(const plan::EntryPoint& entry, uint32_t id,
                          const plan::Value& value, absl::string_view where) {
    const std::string what = absl::StrCat(where, " value #", id);
    const plan::DType dtype = value.dtype();
    // Weights (and views, which may alias them) keep their storage dtype, quantized ones
    // included; activations are f32, f16, bf16 or i32.
    DType storage;
    const bool activation = dtype == plan::DType::F32 ||
                            dtype == plan::DType::F16 ||
                            dtype == plan::DType::BF16 ||
                            dtype == plan::DType::I32;
    const bool may_be_stored = value.kind() == ValueKind::Weight ||
                               value.kind() == ValueKind::View;
    if (!activation && !(may_be_stored && ToWeightsDType(dtype, &storage))) {
      return Error(absl::StrCat(what, " has unsupported ",
                                may_be_stored ? "" : "activation ",
                                DTypeString(dtype)));
    }
    TESSEL_RETURN_IF_ERROR(CheckShape(
        value.shape(), value.kind() != ValueKind::Weight, what, nullptr));
    const uint32_t num_values = entry.values()->size();
    switch (value.kind()) {
      case ValueKind::Arena: {
        if (value.arena_offset() % plan_format::kArenaAlignment != 0) {
          return Error(absl::StrCat(
              what, " is at arena offset ", value.arena_offset(),
              ", not a multiple of ", plan_format::kArenaAlignment));
        }
        uint64_t end = 0;
        if (__builtin_add_overflow(value.arena_offset(),
                                   value.bytes_per_token(), &end) ||
            end > entry.arena_bytes_per_token()) {
          return Error(absl::StrCat(
              what, " occupies arena bytes [", value.arena_offset(), ", ",
              value.arena_offset(), " + ", value.bytes_per_token(),
              ") per token, beyond the peak of ",
              entry.arena_bytes_per_token()));
        }
        return absl::OkStatus();
      }
      case ValueKind::Weight: {
        const uint32_t weights = plan_.weights() ? plan_.weights()->size() : 0;
        if (value.weight() >= weights) {
          return Error(absl::StrCat(what, " refers to weight #", value.weight(),
                                    " of ", weights));
        }
        int64_t value_elements = 0, weight_elements = 0;
        TESSEL_RETURN_IF_ERROR(
            CheckShape(value.shape(), false, what, &value_elements));
        TESSEL_RETURN_IF_ERROR(
            CheckShape(plan_.weights()->Get(value.weight())->shape(), false,
                       what, &weight_elements));
        if (value_elements != weight_elements) {
          return Error(absl::StrCat(what, " has ", value_elements,
                                    " elements but weight #", value.weight(),
                                    " has ", weight_elements));
        }
        return absl::OkStatus();
      }
      case ValueKind::Input:
        if (value.input() > 1) {
          return Error(absl::StrCat(what, " is input ", value.input(),
                                    " (0: token ids, 1: positions)"));
        }
        if (dtype != plan::DType::I32)
          return Error(absl::StrCat(what, " (an input) is not i32"));
        return absl::OkStatus();
      case ValueKind::Cache: {
        const uint32_t slots = plan_.kv_cache() ? plan_.kv_cache()->size() : 0;
        if (value.cache() >= slots) {
          return Error(absl::StrCat(what, " refers to KV cache slot #",
                                    value.cache(), " of ", slots));
        }
        const plan::CacheSlot* slot = plan_.kv_cache()->Get(value.cache());
        const auto& shape = *value.shape();
        const auto& slot_shape = *slot->shape();
        bool matches = shape.size() == slot_shape.size() + 1 &&
                       shape.Get(0) == plan_format::kBatch;
        for (uint32_t d = 0; matches && d < slot_shape.size(); ++d) {
          matches = shape.Get(d + 1) == slot_shape.Get(d);
        }
        if (!matches) {
          return Error(absl::StrCat(
              what,
              " does not have the shape [batch] + the shape of KV cache slot #",
              value.cache()));
        }
        if (dtype != slot->dtype()) {
          return Error(absl::StrCat(what, " is ", DTypeString(dtype),
                                    " but KV cache slot #", value.cache(),
                                    " is ", DTypeString(slot->dtype())));
        }
        return absl::OkStatus();
      }
      case ValueKind::View:
        if (value.base() >= num_values) {
          return Error(absl::StrCat(what, " is a view of value #", value.base(),
                                    " of ", num_values));
        }
        return absl::OkStatus();
    }
    return Error(absl::StrCat(what, " has unknown kind ",
                              static_cast<int>(value.kind())));
  }

  absl::Status CheckEntryPoint(const plan::EntryPoint& entry) {
    const std::string where =
        absl::StrCat("entry point '", entry.name()->str(), "'");
    if (entry.seq_len() != -1 && entry.seq_len() < 1) {
      return Error(absl::StrCat(where, " has seq_len ", entry.seq_len()));
    }
    if (entry.values() == nullptr || entry.inputs() == nullptr ||
        entry.outputs() == nullptr) {
      return Error(absl::StrCat(where, " lacks values, inputs or outputs"));
    }
    const auto& values = *entry.values();
    const uint32_t num_values = values.size();
    for (uint32_t id = 0; id < num_values; ++id) {
      TESSEL_RETURN_IF_ERROR(CheckValue(entry, id, *values.Get(id), where));
    }
    TESSEL_RETURN_IF_ERROR(RootKinds(values, where));

    // Inputs: ids, positions, then each cache slot in order; outputs: logits,
    // then caches.
    const uint32_t slots = plan_.kv_cache() ? plan_.kv_cache()->size() : 0;
    if (entry.inputs()->size() != 2 + slots) {
      return Error(absl::StrCat(where, " takes ", entry.inputs()->size(),
                                " inputs, expected 2 (ids, positions) + ",
                                slots, " KV cache slots"));
    }
    if (entry.outputs()->size() != 1 + slots) {
      return Error(absl::StrCat(where, " returns ", entry.outputs()->size(),
                                " outputs, expected 1 (logits) + ", slots,
                                " KV cache slots"));
    }
    for (uint32_t i = 0; i < entry.inputs()->size(); ++i) {
      const uint32_t id = entry.inputs()->Get(i);
      if (id >= num_values) {
        return Error(absl::StrCat(where, " input #", i, " is value #", id,
                                  " of ", num_values));
      }
      const plan::Value& value = *values.Get(id);
      const bool ok =
          i < 2 ? value.kind() == ValueKind::Input && value.input() == i
                : value.kind() == ValueKind::Cache && value.cache() == i - 2;
      if (!ok) {
        return Error(
            absl::StrCat(where, " input #", i, " (value #", id, ") is not ",
                         i == 0   ? "the token ids input"
                         : i == 1 ? "the positions input"
                                  : absl::StrCat("KV cache slot #", i - 2)));
      }
    }
    for (uint32_t i = 0; i < entry.outputs()->size(); ++i) {
      const uint32_t id = entry.outputs()->Get(i);
      if (id >= num_values) {
        return Error(absl::StrCat(where, " output #", i, " is value #", id,
                                  " of ", num_values));
      }
      const plan::Value& value = *values.Get(id);
      if (i == 0) {
        const int64_t vocab = plan_.model()->vocab_size();
        if (root_kinds_[id] != ValueKind::Arena ||
            value.dtype() != plan::DType::F32 || value.shape()->size() < 1 ||
            value.shape()->Get(value.shape()->size() - 1) != vocab) {
          return Error(absl::StrCat(where, " output #0 (value #", id,
                                    ") is not f32 logits [..., ", vocab,
                                    "] in the arena"));
        }
      } else if (value.kind() != ValueKind::Cache || value.cache() != i - 1) {
        return Error(absl::StrCat(where, " output #", i, " (value #", id,
                                  ") is not KV cache slot #", i - 1));
      }
    }

    if (entry.instructions() == nullptr)
      return Error(absl::StrCat(where, " has no instructions"));
    const uint32_t kernels = plan_.kernels() ? plan_.kernels()->size() : 0;
    for (uint32_t n = 0; n < entry.instructions()->size(); ++n) {
      const plan::Instruction& inst = *entry.instructions()->Get(n);
      const std::string what = absl::StrCat(where, " instruction #", n, " (",
                                            OpName(inst.op()), ")");
      OpSignature sig;
      if (!GetSignature(inst.op(), &sig)) {
        return Error(absl::StrCat(where, " instruction #", n, " has unknown ",
                                  OpName(inst.op())));
      }
      const uint32_t operands = inst.operands() ? inst.operands()->size() : 0;
      const uint32_t results = inst.results() ? inst.results()->size() : 0;
      if (operands < static_cast<uint32_t>(sig.min_operands) ||
          (sig.max_operands >= 0 &&
           operands > static_cast<uint32_t>(sig.max_operands))) {
        return Error(absl::StrCat(
            what, " has ", operands, " operands, expected ",
            sig.min_operands == sig.max_operands
                ? absl::StrCat(sig.min_operands)
            : sig.max_operands < 0
                ? absl::StrCat("at least ", sig.min_operands)
                : absl::StrCat(sig.min_operands, " to ", sig.max_operands)));
      }
      if (sig.results < 0 ? results == 0
                          : results != static_cast<uint32_t>(sig.results)) {
        return Error(absl::StrCat(what, " has ", results, " results, expected ",
                                  sig.results));
      }
      if (inst.attrs_type() != sig.attrs ||
          (sig.attrs != Attrs::NONE && inst.attrs() == nullptr)) {
        return Error(
            absl::StrCat(what, " has attrs ",
                         plan::EnumNameAttrs(inst.attrs_type())[0] != '\0'
                             ? plan::EnumNameAttrs(inst.attrs_type())
                             : "of an unknown type",
                         ", expected ", plan::EnumNameAttrs(sig.attrs)));
      }
      if (inst.attrs_type() == Attrs::TransposeAttrs &&
          !IsAligned(inst.attrs_as_TransposeAttrs()->permutation())) {
        return Error(
            absl::StrCat(what, " has a misaligned permutation vector"));
      }
      if (inst.kernel() < -1 ||
          inst.kernel() >= static_cast<int64_t>(kernels)) {
        return Error(absl::StrCat(what, " uses kernel #", inst.kernel(), " of ",
                                  kernels));
      }
      if (absl::Status program = CheckFusedProgram(inst, what); !program.ok())
        return Error(program.message());
      for (uint32_t i = 0; i < operands; ++i) {
        if (inst.operands()->Get(i) >= num_values) {
          return Error(absl::StrCat(what, " operand #", i, " is value #",
                                    inst.operands()->Get(i), " of ",
                                    num_values));
        }
      }
      for (uint32_t i = 0; i < results; ++i) {
        const uint32_t id = inst.results()->Get(i);
        if (id >= num_values) {
          return Error(absl::StrCat(what, " result #", i, " is value #", id,
                                    " of ", num_values));
        }
        const ValueKind root = root_kinds_[id];
        const bool writes_cache = inst.op() == OpCode::KVCacheWrite;
        if (writes_cache ? values.Get(id)->kind() != ValueKind::Cache
                         : root != ValueKind::Arena) {
          return Error(absl::StrCat(
              what, " result #", i, " (value #", id, ") is not ",
              writes_cache ? "a KV cache value" : "an arena value"));
        }
      }
    }
    return absl::OkStatus();
  }

  const plan::Plan& plan_;
  absl::string_view name_;
};

}  // namespace

uint64_t PlanDTypeBytes(plan::DType dtype) {
  switch (dtype) {
    case plan::DType::F32:
    case plan::DType::I32:
      return 4;
    case plan::DType::F16:
    case plan::DType::BF16:
      return 2;
    case plan::DType::F8E4M3:
    case plan::DType::I8:
      return 1;
    case plan::DType::I64:
      return 8;
    default:
      return 0;
  }
}

bool ToWeightsDType(plan::DType dtype, DType* out) {
  switch (dtype) {
    case plan::DType::F32:
      *out = DType::kF32;
      return true;
    case plan::DType::F16:
      *out = DType::kF16;
      return true;
    case plan::DType::BF16:
      *out = DType::kBF16;
      return true;
    case plan::DType::F8E4M3:
      *out = DType::kF8E4M3;
      return true;
    case plan::DType::I8:
      *out = DType::kI8;
      return true;
    case plan::DType::I32:
      *out = DType::kI32;
      return true;
    case plan::DType::I64:
      *out = DType::kI64;
      return true;
    case plan::DType::Q8_0:
      *out = DType::kQ8_0;
      return true;
    case plan::DType::Q4_0:
      *out = DType::kQ4_0;
      return true;
  }
  return false;
}

absl::Status VerifyPlan(std::span<const uint8_t> bytes,
                        absl::string_view name) {
  if (bytes.size() < kMinPlanBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not a tessel plan: it is ", bytes.size(),
                     " bytes long, too small for a plan"));
  }
  if (!flatbuffers::BufferHasIdentifier(bytes.data(),
                                        plan_format::kIdentifier)) {
    const absl::string_view found(
        reinterpret_cast<const char*>(bytes.data()) + 4, 4);
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not a tessel plan: its file identifier is \"",
                     absl::CEscape(found), "\", expected \"",
                     plan_format::kIdentifier, "\""));
  }
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " is ", bytes.size(), " bytes long, more than a plan can be"));
  }

  // The version decides whether the rest can be read at all, so it is read
  // before the full verification, through a Verifier check of just the root
  // table and its two fields.
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), kMaxVerifierDepth,
                                 kMaxVerifierTables);
  const uint32_t root_offset =
      flatbuffers::ReadScalar<flatbuffers::uoffset_t>(bytes.data());
  if (root_offset > bytes.size() - sizeof(flatbuffers::soffset_t)) {
    return absl::DataLossError(
        absl::StrCat(name, " is corrupt: its root table offset ", root_offset,
                     " is outside the file"));
  }
  const auto* root = flatbuffers::GetRoot<flatbuffers::Table>(bytes.data());
  if (!root->VerifyTableStart(verifier) ||
      !root->VerifyField<uint32_t>(verifier, plan::Plan::VT_FORMAT_MAJOR, 4) ||
      !root->VerifyField<uint32_t>(verifier, plan::Plan::VT_FORMAT_MINOR, 4)) {
    return absl::DataLossError(
        absl::StrCat(name, " is corrupt: its root table is malformed"));
  }
  const uint32_t major =
      root->GetField<uint32_t>(plan::Plan::VT_FORMAT_MAJOR, 0);
  const uint32_t minor =
      root->GetField<uint32_t>(plan::Plan::VT_FORMAT_MINOR, 0);
  const std::string ours =
      VersionString(plan_format::kMajor, plan_format::kMinor);
  if (major > plan_format::kMajor ||
      (major == plan_format::kMajor && minor > plan_format::kMinor)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": plan format ", VersionString(major, minor),
                     " is newer than this runtime's ", ours,
                     "; rebuild the artifact or update tessel"));
  }
  if (major < plan_format::kMajor) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": plan format ", VersionString(major, minor),
                     " is older than this runtime's ", ours,
                     " and no longer supported; rebuild the artifact"));
  }

  flatbuffers::Verifier full(bytes.data(), bytes.size(), kMaxVerifierDepth,
                             kMaxVerifierTables);
  if (!plan::VerifyPlanBuffer(full)) {
    return absl::DataLossError(
        absl::StrCat(name,
                     " is corrupt: the FlatBuffers verifier rejects it "
                     "(truncated or damaged file)"));
  }
  return PlanChecker(*plan::GetPlan(bytes.data()), name).Check();
}

absl::StatusOr<std::unique_ptr<Artifact>> Artifact::FromParts(
    std::string dir, std::vector<uint8_t> plan_bytes,
    std::vector<std::unique_ptr<MappedFile>> weight_files,
    const LoadOptions& options) {
  const std::string plan_name =
      dir.empty() ? "plan.tsl" : absl::StrCat(dir, "/plan.tsl");
  TESSEL_RETURN_IF_ERROR(VerifyPlan(plan_bytes, plan_name));
  std::unique_ptr<Artifact> artifact(new Artifact());
  artifact->dir_ = std::move(dir);
  artifact->plan_bytes_ = std::move(plan_bytes);
  artifact->plan_ = plan::GetPlan(artifact->plan_bytes_.data());
  artifact->options_ = options;
  const plan::Plan& plan = *artifact->plan_;
  const uint32_t files = plan.weight_files() ? plan.weight_files()->size() : 0;
  if (weight_files.size() != files) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the plan lists ", files, " weight files, got ", weight_files.size()));
  }
  if (plan.weights() != nullptr) {
    for (uint32_t i = 0; i < plan.weights()->size(); ++i) {
      const plan::Weight* weight = plan.weights()->Get(i);
      const MappedFile& file = *weight_files[weight->file()];
      uint64_t end = 0;
      if (__builtin_add_overflow(weight->offset(), weight->size(), &end) ||
          end > file.size()) {
        return absl::DataLossError(absl::StrCat(
            "weight '", weight->name() ? weight->name()->str() : "", "' (#", i,
            ") at offset ", weight->offset(), " with size ", weight->size(),
            " lies beyond the end of '", file.path(), "' (", file.size(),
            " bytes); the weights file is truncated or stale"));
      }
    }
  }
  artifact->weight_files_ = std::move(weight_files);
  return artifact;
}

const plan::EntryPoint* Artifact::FindEntryPoint(absl::string_view name) const {
  for (const plan::EntryPoint* entry : *plan_->entry_points()) {
    if (absl::string_view(entry->name()->c_str(), entry->name()->size()) ==
        name)
      return entry;
  }
  return nullptr;
}

std::span<const uint8_t> Artifact::WeightBytes(uint32_t index) const {
  const plan::Weight* weight = plan_->weights()->Get(index);
  return weight_files_[weight->file()]->bytes().subspan(weight->offset(),
                                                        weight->size());
}

int64_t Artifact::WeightElements(uint32_t index) const {
  int64_t elements = 1;
  for (int64_t dim : *plan_->weights()->Get(index)->shape()) elements *= dim;
  return elements;
}

absl::Status Artifact::VerifyWeightChecksum(uint32_t index) const {
  if (!options_.verify_checksums) return absl::OkStatus();
  const plan::Weight* weight = plan_->weights()->Get(index);
  const std::span<const uint8_t> bytes = WeightBytes(index);
  const uint64_t checksum = plan_format::Fnv1a64(bytes.data(), bytes.size());
  if (checksum == weight->checksum()) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      "weight '",
      weight->name() ? weight->name()->str() : absl::StrCat("#", index),
      "' in '", weight_files_[weight->file()]->path(), "' at offset ",
      weight->offset(), " has checksum ", absl::Hex(checksum, absl::kZeroPad16),
      ", the plan expects ", absl::Hex(weight->checksum(), absl::kZeroPad16),
      "; the weights file does not belong to this plan or is damaged"));
}

absl::Status Artifact::ReadWeightF32(uint32_t index,
                                     std::span<float> out) const {
  TESSEL_RETURN_IF_ERROR(VerifyWeightChecksum(index));
  const plan::Weight* weight = plan_->weights()->Get(index);
  const std::string name =
      weight->name() ? weight->name()->str() : absl::StrCat("#", index);
  const std::span<const uint8_t> bytes = WeightBytes(index);
  GgufTensorInfo info;
  info.name = name;
  switch (weight->dtype()) {
    case plan::DType::F32:
      info.ggml_type = 0;
      break;
    case plan::DType::F16:
      info.ggml_type = 1;
      break;
    case plan::DType::Q4_0:
      info.ggml_type = 2;
      break;
    case plan::DType::Q8_0:
      info.ggml_type = 8;
      break;
    case plan::DType::BF16:
      info.ggml_type = 30;
      break;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "weight '", name, "' has dtype ", DTypeString(weight->dtype()),
          ", which cannot be widened to f32"));
  }
  info.dtype = DTypeFromGgmlType(info.ggml_type);
  info.shape.assign(weight->shape()->begin(), weight->shape()->end());
  info.dims.assign(info.shape.rbegin(), info.shape.rend());
  info.element_count = WeightElements(index);
  info.offset = weight->offset();
  info.size_bytes = weight->size();
  return DequantizeToF32(info, bytes, out);
}

absl::StatusOr<std::unique_ptr<Artifact>> LoadArtifact(
    const std::string& dir, const LoadOptions& options) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(
        "artifact directory '", dir, "' does not exist or is not a directory"));
  }
  const std::string plan_path = absl::StrCat(dir, "/plan.tsl");
  auto plan_file = MappedFile::Open(plan_path);
  if (!plan_file.ok()) {
    if (absl::IsNotFound(plan_file.status())) {
      return absl::NotFoundError(absl::StrCat(
          "'", dir, "' is not a tessel artifact: it has no plan.tsl"));
    }
    return plan_file.status();
  }
  // The plan is small: copy it so the FlatBuffers accessors see aligned, owned
  // memory.
  const std::span<const uint8_t> bytes = (*plan_file)->bytes();
  std::vector<uint8_t> plan_bytes(bytes.begin(), bytes.end());
  plan_file->reset();
  TESSEL_RETURN_IF_ERROR(VerifyPlan(plan_bytes, plan_path));

  const plan::Plan& plan = *plan::GetPlan(plan_bytes.data());
  std::vector<std::unique_ptr<MappedFile>> weight_files;
  if (plan.weight_files() != nullptr) {
    for (const flatbuffers::String* name : *plan.weight_files()) {
      const std::string path = absl::StrCat(dir, "/", name->str());
      auto file = MappedFile::Open(path);
      if (!file.ok()) {
        if (absl::IsNotFound(file.status())) {
          return absl::NotFoundError(absl::StrCat(
              "weights file '", path, "' named by the plan is missing"));
        }
        return file.status();
      }
      weight_files.push_back(std::move(*file));
    }
  }
  return Artifact::FromParts(dir, std::move(plan_bytes),
                             std::move(weight_files), options);
}

}  // namespace tessel
