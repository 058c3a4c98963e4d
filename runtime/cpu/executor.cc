// The CPU reference executor: binds plan values to buffers and instructions to
// kernels. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cpu/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status.h"
#include "runtime/cpu/plan_params.h"
#include "runtime/plan/format.h"

namespace tessel::cpu {
namespace {

using plan::OpCode;
using plan::ValueKind;

// A value bound to memory for one call shape: every element takes 4 bytes (f32
// or i32).
struct Buffer {
  void* data = nullptr;
  std::vector<int64_t> shape;
  int64_t elements = 0;
  plan::DType dtype = plan::DType::F32;

  float* f() const { return static_cast<float*>(data); }
  int32_t* i() const { return static_cast<int32_t*>(data); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int rank() const { return static_cast<int>(shape.size()); }
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t Product(const std::vector<int64_t>& shape, int begin, int end) {
  int64_t product = 1;
  for (int i = begin; i < end; ++i) product *= shape[i];
  return product;
}

// Rounds to the nearest bf16 (ties to even), kept in an f32.
float RoundToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return x;  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  bits &= 0xffff0000u;
  std::memcpy(&x, &bits, 4);
  return x;
}

// Rounds to the nearest IEEE half (ties to even; overflow to infinity), kept in
// an f32.
float RoundToF16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t sign = bits & 0x80000000u;
  const uint32_t magnitude = bits ^ sign;
  if (magnitude >= 0x7f800000u) return x;  // inf, NaN
  float result;
  if (magnitude < 0x38800000u) {
    // Below the smallest normal half (2^-14): subnormal halves are multiples of
    // 2^-24, and the scaling by 2^24 is exact, so nearbyint's ties-to-even is
    // the half rounding.
    result = std::nearbyint(std::fabs(x) * 16777216.0f) / 16777216.0f;
  } else {
    uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
    rounded &= ~0x1fffu;
    if (rounded >= 0x47800000u) rounded = 0x7f800000u;  // past 65504: infinity
    std::memcpy(&result, &rounded, 4);
  }
  return sign ? -result : result;
}

AttentionParams ToAttentionParams(const plan::AttentionAttrs& attrs) {
  AttentionParams params;
  params.scale = attrs.scale();
  params.causal = attrs.causal();
  params.sliding_window = attrs.sliding_window();
  params.logit_softcap = attrs.logit_softcap();
  return params;
}

// Keys past the last query position are masked for every query, so a batch-1
// call needs only the first max(position) + 1 rows of a cache-sized key buffer.
int64_t VisibleKeys(const Buffer& positions, int64_t batch, int64_t kv_len) {
  if (batch != 1) return kv_len;
  int32_t last = -1;
  for (int64_t i = 0; i < positions.elements; ++i)
    last = std::max(last, positions.i()[i]);
  return std::min<int64_t>(kv_len, static_cast<int64_t>(last) + 1);
}

using Step = std::function<absl::Status()>;

// Fused programs run over blocks of rows of about this many elements; a program
// whose scratch values would need more than kMaxFusedScratchBytes is refused.
constexpr int64_t kFusedBlockElements = 16384;
constexpr double kMaxFusedScratchBytes = 256.0 * (1 << 20);

// Builds the step of one instruction from bound buffers, checking every shape
// the kernel relies on; errors name the instruction.
class StepBuilder {
 public:
  StepBuilder(const plan::Instruction& inst, std::vector<Buffer>& buffers,
              ThreadPool* pool, std::string where)
      : inst_(inst), buffers_(buffers), pool_(pool), where_(std::move(where)) {}

  absl::StatusOr<Step> Build() {
    const int operands = static_cast<int>(inst_.operands()->size());
    switch (inst_.op()) {
      case OpCode::Embedding:
        return Embedding();
      case OpCode::RMSNorm:
      case OpCode::LayerNorm:
        return Norm(operands);
      case OpCode::Matmul:
        return Matmul(operands);
      case OpCode::Add:
        return Binary(BinaryOp::kAdd);
      case OpCode::Sub:
        return Binary(BinaryOp::kSub);
      case OpCode::Mul:
        return Binary(BinaryOp::kMul);
      case OpCode::Div:
        return Binary(BinaryOp::kDiv);
      case OpCode::Max:
        return Binary(BinaryOp::kMax);
      case OpCode::Silu:
        return Unary(UnaryOp::kSilu);
      case OpCode::Sigmoid:
        return Unary(UnaryOp::kSigmoid);
      case OpCode::Relu:
        return Unary(UnaryOp::kRelu);
      case OpCode::Exp:
        return Unary(UnaryOp::kExp);
      case OpCode::Tanh:
        return Unary(UnaryOp::kTanh);
      case OpCode::Neg:
        return Unary(UnaryOp::kNeg);
      case OpCode::Gelu:
        return Unary(inst_.attrs_as_GeluAttrs()->tanh_approximation()
                         ? UnaryOp::kGeluTanh
                         : UnaryOp::kGelu);
      case OpCode::Scale:
        return Scale();
      case OpCode::Cast:
        return Cast();
      case OpCode::Softmax:
        return Softmax();
      case OpCode::Slice:
        return Slice();
      case OpCode::Concat:
        return Concat(operands);
      case OpCode::Transpose:
        return Transpose();
      case OpCode::Copy:
        return Copy();
      case OpCode::Rope:
        return Rope();
      case OpCode::KVCacheWrite:
        return CacheWrite();
      case OpCode::Attention:
        return Attention();
      case OpCode::MLAAttention:
        return MLAAttention();
      case OpCode::MoERouter:
        return Router(operands);
      case OpCode::MoEExperts:
        return Experts();
      case OpCode::Fused:
        return Fused();
    }
    return Error("has an unknown opcode");
  }

 private:
  Buffer& In(int i) { return buffers_[inst_.operands()->Get(i)]; }
  Buffer& Out(int i = 0) { return buffers_[inst_.results()->Get(i)]; }

  absl::Status Error(absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, " ", problem));
  }
  absl::Status ShapeError(absl::string_view problem) const {
    std::vector<std::string> operands, results;
    for (uint32_t id : *inst_.operands())
      operands.push_back(ShapeString(buffers_[id].shape));
    for (uint32_t id : *inst_.results())
      results.push_back(ShapeString(buffers_[id].shape));
    return Error(absl::StrCat(problem, " (operands ",
                              absl::StrJoin(operands, ", "), "; results ",
                              absl::StrJoin(results, ", "), ")"));
  }
  // Each Require* returns an error when its condition fails.
  absl::Status Require(bool condition, absl::string_view problem) const {
    return condition ? absl::OkStatus() : ShapeError(problem);
  }
  absl::Status RequireInt(const Buffer& b, absl::string_view role) const {
    return b.dtype == plan::DType::I32
               ? absl::OkStatus()
               : Error(absl::StrCat("needs i32 ", role));
  }
  absl::Status RequireFloat(const Buffer& b, absl::string_view role) const {
    return b.dtype != plan::DType::I32
               ? absl::OkStatus()
               : Error(absl::StrCat("needs a floating-point ", role));
  }

  absl::StatusOr<Step> Embedding() {
    Buffer &ids = In(0), &table = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(ids, "token ids"));
    TESSEL_RETURN_IF_ERROR(RequireFloat(table, "table"));
    TESSEL_RETURN_IF_ERROR(
        Require(table.rank() == 2, "needs a [vocab, hidden] table"));
    const int64_t vocab = table.dim(0), hidden = table.dim(1),
                  tokens = ids.elements;
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == tokens * hidden, "output size mismatch"));
    return Step([=, &ids, &table, &out] {
      return cpu::Embedding(ids.i(), tokens, table.f(), vocab, hidden, out.f());
    });
  }

  absl::StatusOr<Step> Norm(int operands) {
    Buffer &x = In(0), &weight = In(1), &out = Out();
    const Buffer* bias = operands > 2 ? &In(2) : nullptr;
    TESSEL_RETURN_IF_ERROR(
        Require(x.rank() >= 1 && x.dim(-1) > 0, "needs [..., dim] input"));
    const int64_t dim = x.dim(-1), rows = x.elements / dim;
    TESSEL_RETURN_IF_ERROR(Require(weight.elements == dim &&
                                       (!bias || bias->elements == dim) &&
                                       out.elements == x.elements,
                                   "size mismatch"));
    const double eps = inst_.attrs_as_NormAttrs()->epsilon();
    if (inst_.op() == OpCode::RMSNorm) {
      return Step([=, &x, &weight, &out] {
        cpu::RMSNorm(x.f(), weight.f(), rows, dim, eps, out.f());
        return absl::OkStatus();
      });
    }
    return Step([=, &x, &weight, &out] {
      cpu::LayerNorm(x.f(), weight.f(), bias ? bias->f() : nullptr, rows, dim,
                     eps, out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Matmul(int operands) {
    Buffer &x = In(0), &weight = In(1), &out = Out();
    const Buffer* bias = operands > 2 ? &In(2) : nullptr;
    TESSEL_RETURN_IF_ERROR(Require(weight.rank() == 2, "needs a 2-D weight"));
    const bool out_in =
        inst_.attrs_as_MatmulAttrs()->layout() == plan::WeightLayout::OutIn;
    const int64_t n_out = out_in ? weight.dim(0) : weight.dim(1);
    const int64_t k = out_in ? weight.dim(1) : weight.dim(0);
    TESSEL_RETURN_IF_ERROR(Require(x.rank() >= 1 && k > 0 && x.dim(-1) == k,
                                   "input features do not match the weight"));
    const int64_t rows = x.elements / k;
    TESSEL_RETURN_IF_ERROR(Require(
        out.elements == rows * n_out && (!bias || bias->elements == n_out),
        "size mismatch"));
    ThreadPool* pool = pool_;
    return Step([=, &x, &weight, &out] {
      cpu::Matmul(x.f(), rows, k, weight.f(), n_out, out_in,
                  bias ? bias->f() : nullptr, out.f(), pool);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Binary(BinaryOp op) {
    Buffer &a = In(0), &b = In(1), &out = Out();
    if (a.elements == b.elements && a.elements == out.elements) {
      return Step([=, &a, &b, &out] {
        cpu::Binary(op, a.f(), b.f(), a.elements, out.f());
        return absl::OkStatus();
      });
    }
    // NumPy broadcasting: shapes aligned at the right, size-1 dims repeat.
    const int rank = std::max(a.rank(), b.rank());
    std::vector<int64_t> shape(rank), a_strides(rank, 0), b_strides(rank, 0);
    int64_t a_stride = 1, b_stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      const int ad = d - (rank - a.rank()), bd = d - (rank - b.rank());
      const int64_t as = ad >= 0 ? a.shape[ad] : 1,
                    bs = bd >= 0 ? b.shape[bd] : 1;
      TESSEL_RETURN_IF_ERROR(
          Require(as == bs || as == 1 || bs == 1, "shapes do not broadcast"));
      shape[d] = std::max(as, bs);
      if (as != 1) a_strides[d] = a_stride;
      if (bs != 1) b_strides[d] = b_stride;
      a_stride *= as;
      b_stride *= bs;
    }
    const int64_t total = Product(shape, 0, rank);
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == total, "output size mismatch"));
    return Step([=, &a, &b, &out] {
      std::vector<int64_t> index(rank, 0);
      int64_t ai = 0, bi = 0;
      for (int64_t n = 0; n < total; ++n) {
        const float x = a.f()[ai], y = b.f()[bi];
        float r = 0.0f;
        switch (op) {
          case BinaryOp::kAdd:
            r = x + y;
            break;
          case BinaryOp::kSub:
            r = x - y;
            break;
          case BinaryOp::kMul:
            r = x * y;
            break;
          case BinaryOp::kDiv:
            r = x / y;
            break;
          case BinaryOp::kMax:
            r = std::max(x, y);
            break;
        }
        out.f()[n] = r;
        for (int d = rank - 1; d >= 0; --d) {
          ai += a_strides[d];
          bi += b_strides[d];
          if (++index[d] < shape[d]) break;
          ai -= a_strides[d] * shape[d];
          bi -= b_strides[d] * shape[d];
          index[d] = 0;
        }
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Unary(UnaryOp op) {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    return Step([=, &x, &out] {
      cpu::Unary(op, x.f(), x.elements, out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Scale() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    const double factor = inst_.attrs_as_ScaleAttrs()->factor();
    return Step([=, &x, &out] {
      cpu::Scale(x.f(), factor, x.elements, out.f());
      return absl::OkStatus();
    });
  }

  // Cast rounds to the target's precision but keeps f32 storage (i32 converts
  // exactly).
  absl::StatusOr<Step> Cast() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    const bool from_int = x.dtype == plan::DType::I32;
    const plan::DType to = out.dtype;
    return Step([=, &x, &out] {
      for (int64_t i = 0; i < x.elements; ++i) {
        if (to == plan::DType::I32) {
          if (from_int) {
            out.i()[i] = x.i()[i];
          } else {
            const float v = x.f()[i];
            out.i()[i] =
                std::isnan(v)         ? 0
                : v >= 2147483647.0f  ? std::numeric_limits<int32_t>::max()
                : v <= -2147483648.0f ? std::numeric_limits<int32_t>::min()
                                      : static_cast<int32_t>(v);
          }
          continue;
        }
        const float v = from_int ? static_cast<float>(x.i()[i]) : x.f()[i];
        out.f()[i] = to == plan::DType::BF16  ? RoundToBf16(v)
                     : to == plan::DType::F16 ? RoundToF16(v)
                                              : v;
      }
      return absl::OkStatus();
    });
  }

  // A fused group (plan.fbs FusedProgram): each op runs with the kernel of the
  // unfused op into a scratch value of the step, so the numerics are the unfused
  // plan's; the results are copied out after the ops, which keeps in-place
  // outputs (the memory planner may alias a result with a dying operand) from
  // clobbering an operand a later op still reads.
  absl::StatusOr<Step> Fused() {
    const plan::FusedProgram& program = *inst_.program();
    const int inputs = static_cast<int>(inst_.operands()->size());
    const int64_t row = program.row_size();
    const int64_t elements = Out(0).elements;
    TESSEL_RETURN_IF_ERROR(Require(elements % row == 0, "size is not whole rows"));
    for (uint32_t r = 0; r < inst_.results()->size(); ++r) {
      TESSEL_RETURN_IF_ERROR(RequireFloat(Out(r), "result"));
      TESSEL_RETURN_IF_ERROR(
          Require(Out(r).elements == elements, "results differ in size"));
    }
    struct FusedStep {
      plan::OpCode op;
      UnaryOp unary = UnaryOp::kSilu;
      BinaryOp binary = BinaryOp::kAdd;
      double attr = 0.0;
      plan::DType dtype = plan::DType::F32;
      std::vector<uint32_t> operands;
    };
    std::vector<FusedStep> steps;
    for (const plan::FusedOp* op : *program.ops()) {
      FusedStep step{op->op()};
      step.attr = op->attr();
      step.dtype = op->dtype();
      for (uint32_t k = 0; k < op->operands()->size(); ++k) {
        const uint32_t id = op->operands()->Get(k);
        step.operands.push_back(id);
        if (id >= static_cast<uint32_t>(inputs)) continue;
        // Operands are whole groups, or row vectors read as a norm weight.
        const Buffer& in = In(id);
        TESSEL_RETURN_IF_ERROR(RequireFloat(in, "operand"));
        const bool weight = op->op() == OpCode::RMSNorm && k == 1;
        TESSEL_RETURN_IF_ERROR(
            Require(in.elements == (weight ? row : elements),
                    weight ? "norm weight is not one row long"
                           : "operand is not the size of the group"));
      }
      switch (op->op()) {
        case OpCode::Add: step.binary = BinaryOp::kAdd; break;
        case OpCode::Sub: step.binary = BinaryOp::kSub; break;
        case OpCode::Mul: step.binary = BinaryOp::kMul; break;
        case OpCode::Div: step.binary = BinaryOp::kDiv; break;
        case OpCode::Max: step.binary = BinaryOp::kMax; break;
        case OpCode::Silu: step.unary = UnaryOp::kSilu; break;
        case OpCode::Sigmoid: step.unary = UnaryOp::kSigmoid; break;
        case OpCode::Relu: step.unary = UnaryOp::kRelu; break;
        case OpCode::Exp: step.unary = UnaryOp::kExp; break;
        case OpCode::Tanh: step.unary = UnaryOp::kTanh; break;
        case OpCode::Neg: step.unary = UnaryOp::kNeg; break;
        case OpCode::Gelu:
          step.unary = op->tanh_approximation() ? UnaryOp::kGeluTanh : UnaryOp::kGelu;
          break;
        default: break;
      }
      steps.push_back(std::move(step));
    }
    std::vector<const float*> in_data;
    for (int i = 0; i < inputs; ++i) in_data.push_back(In(i).f());
    std::vector<float*> out_data;
    std::vector<uint32_t> out_values;
    for (uint32_t r = 0; r < inst_.results()->size(); ++r) {
      out_data.push_back(Out(r).f());
      out_values.push_back(program.results()->Get(r));
    }
    // Rows go through the program in blocks of about 16K elements, so the scratch
    // values stay small (and in cache) whatever the call's token count; a block's
    // results are written after all of its operands are read.
    const int64_t rows = elements / row;
    const int64_t block_rows =
        std::max<int64_t>(1, std::min<int64_t>(rows, kFusedBlockElements / row));
    const int64_t block_elements = block_rows * row;
    if (static_cast<double>(steps.size()) * block_elements * sizeof(float) >
        kMaxFusedScratchBytes) {
      return Error(absl::StrCat("has a fused program of ", steps.size(),
                                " ops over rows of ", row,
                                " elements, more than the CPU executor buffers"));
    }
    std::vector<bool> is_row_vector;
    for (int i = 0; i < inputs; ++i)
      is_row_vector.push_back(In(i).elements < elements);
    auto scratch = std::make_shared<std::vector<float>>(
        static_cast<size_t>(steps.size() * block_elements));
    return Step([=] {
      std::vector<const float*> values(in_data.size() + steps.size());
      for (int64_t first = 0; first < rows; first += block_rows) {
        const int64_t count = std::min(block_rows, rows - first);
        const int64_t n = count * row, offset = first * row;
        for (size_t i = 0; i < in_data.size(); ++i)
          values[i] = is_row_vector[i] ? in_data[i] : in_data[i] + offset;
        for (size_t i = 0; i < steps.size(); ++i) {
          const FusedStep& step = steps[i];
          float* dst = scratch->data() + i * block_elements;
          const float* a = values[step.operands[0]];
          const float* b =
              step.operands.size() > 1 ? values[step.operands[1]] : nullptr;
          switch (step.op) {
            case OpCode::Add: case OpCode::Sub: case OpCode::Mul:
            case OpCode::Div: case OpCode::Max:
              cpu::Binary(step.binary, a, b, n, dst);
              break;
            case OpCode::Scale:
              cpu::Scale(a, step.attr, n, dst);
              break;
            case OpCode::Cast:
              for (int64_t e = 0; e < n; ++e) {
                dst[e] = step.dtype == plan::DType::BF16  ? RoundToBf16(a[e])
                         : step.dtype == plan::DType::F16 ? RoundToF16(a[e])
                                                          : a[e];
              }
              break;
            case OpCode::RMSNorm:
              cpu::RMSNorm(a, b, count, row, step.attr, dst);
              break;
            default:
              cpu::Unary(step.unary, a, n, dst);
              break;
          }
          values[in_data.size() + i] = dst;
        }
        for (size_t r = 0; r < out_data.size(); ++r) {
          std::memcpy(out_data[r] + offset, values[out_values[r]],
                      static_cast<size_t>(n) * sizeof(float));
        }
      }
      return absl::OkStatus();
    });
  }

  // Splits x's shape around `dim` (negative counts from the end) into outer,
  // dim, inner.
  absl::Status Split(const Buffer& x, int64_t dim, int* axis, int64_t* outer,
                     int64_t* inner) const {
    const int64_t d = dim < 0 ? dim + x.rank() : dim;
    if (d < 0 || d >= x.rank()) {
      return ShapeError(absl::StrCat("has dim ", dim,
                                     " outside the operand's rank ", x.rank()));
    }
    *axis = static_cast<int>(d);
    *outer = Product(x.shape, 0, *axis);
    *inner = Product(x.shape, *axis + 1, x.rank());
    return absl::OkStatus();
  }

  absl::StatusOr<Step> Softmax() {
    Buffer &x = In(0), &out = Out();
    int axis;
    int64_t outer, inner;
    TESSEL_RETURN_IF_ERROR(
        Split(x, inst_.attrs_as_SoftmaxAttrs()->dim(), &axis, &outer, &inner));
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    const int64_t dim = x.shape[axis];
    return Step([=, &x, &out] {
      cpu::Softmax(x.f(), outer, dim, inner, out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Slice() {
    Buffer &x = In(0), &out = Out();
    const plan::SliceAttrs& attrs = *inst_.attrs_as_SliceAttrs();
    int axis;
    int64_t outer, inner;
    TESSEL_RETURN_IF_ERROR(Split(x, attrs.dim(), &axis, &outer, &inner));
    const int64_t dim = x.shape[axis], start = attrs.start(),
                  size = attrs.size();
    TESSEL_RETURN_IF_ERROR(
        Require(start >= 0 && size >= 0 && start <= dim && size <= dim - start,
                absl::StrCat("slices [", start, ", +", size, ") of ", dim)));
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == outer * size * inner, "output size mismatch"));
    return Step([=, &x, &out] {
      cpu::Slice(x.f(), outer, dim, inner, start, size, out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Concat(int operands) {
    Buffer& out = Out();
    int axis;
    int64_t outer, inner;
    TESSEL_RETURN_IF_ERROR(Split(In(0), inst_.attrs_as_ConcatAttrs()->dim(),
                                 &axis, &outer, &inner));
    std::vector<std::pair<Buffer*, int64_t>>
        parts;  // buffer, its size along the axis
    int64_t out_dim = 0;
    for (int i = 0; i < operands; ++i) {
      Buffer& x = In(i);
      bool same = x.rank() == In(0).rank();
      for (int d = 0; same && d < x.rank(); ++d)
        same = d == axis || x.shape[d] == In(0).shape[d];
      TESSEL_RETURN_IF_ERROR(
          Require(same, "operands differ outside the concatenated dim"));
      parts.emplace_back(&x, x.shape[axis]);
      out_dim += x.shape[axis];
    }
    TESSEL_RETURN_IF_ERROR(Require(out.elements == outer * out_dim * inner,
                                   "output size mismatch"));
    return Step([=, &out] {
      int64_t offset = 0;
      for (const auto& [x, dim] : parts) {
        cpu::ConcatInto(x->f(), outer, dim, inner, out_dim, offset, out.f());
        offset += dim;
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Transpose() {
    Buffer &x = In(0), &out = Out();
    const auto* perm = inst_.attrs_as_TransposeAttrs()->permutation();
    TESSEL_RETURN_IF_ERROR(
        Require(perm != nullptr && static_cast<int>(perm->size()) == x.rank(),
                "permutation does not match the operand's rank"));
    std::vector<int64_t> permutation(perm->begin(), perm->end());
    std::vector<bool> seen(x.rank(), false);
    for (int64_t p : permutation) {
      TESSEL_RETURN_IF_ERROR(
          Require(p >= 0 && p < x.rank() && !seen[p], "invalid permutation"));
      seen[p] = true;
    }
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    return Step([=, &x, &out] {
      cpu::Transpose(x.f(), x.shape.data(), permutation.data(), x.rank(),
                     out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Copy() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(
        Require(out.elements == x.elements, "size mismatch"));
    return Step([&x, &out] {
      if (x.data != out.data) std::memmove(out.data, x.data, 4 * x.elements);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Rope() {
    Buffer &x = In(0), &positions = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(positions, "positions"));
    TESSEL_RETURN_IF_ERROR(
        Require(x.rank() >= 2 && x.dim(-1) > 0 && x.dim(-2) > 0,
                "needs [..., heads, head_dim] input"));
    const int64_t heads = x.dim(-2), head_dim = x.dim(-1);
    const int64_t tokens = x.elements / (heads * head_dim);
    const plan::RopeAttrs& attrs = *inst_.attrs_as_RopeAttrs();
    RopeParams params = RopeParamsFromPlan(attrs, head_dim);
    TESSEL_RETURN_IF_ERROR(
        Require(params.rotary_dim <= head_dim && params.rotary_dim % 2 == 0,
                "rotary_dim must be even and at most head_dim"));
    TESSEL_RETURN_IF_ERROR(
        Require(positions.elements == tokens && out.elements == x.elements,
                "size mismatch"));
    return Step([=, &x, &positions, &out] {
      cpu::Rope(x.f(), positions.i(), tokens, heads, head_dim, params, out.f());
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> CacheWrite() {
    Buffer &update = In(0), &positions = In(1), &cache = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(positions, "positions"));
    TESSEL_RETURN_IF_ERROR(
        Require(cache.rank() >= 2 && cache.dim(0) > 0 && cache.dim(1) > 0,
                "needs a [batch, capacity, ...] cache"));
    const int64_t batch = cache.dim(0), capacity = cache.dim(1);
    const int64_t row = cache.elements / (batch * capacity);
    TESSEL_RETURN_IF_ERROR(Require(positions.elements % batch == 0,
                                   "positions do not split by batch"));
    const int64_t seq = positions.elements / batch;
    TESSEL_RETURN_IF_ERROR(
        Require(update.elements == batch * seq * row, "update size mismatch"));
    return Step([=, &update, &positions, &cache] {
      return cpu::KVCacheWrite(cache.f(), batch, capacity, row, update.f(), seq,
                               positions.i());
    });
  }

  absl::StatusOr<Step> Attention() {
    Buffer &q = In(0), &k = In(1), &v = In(2), &positions = In(3), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(positions, "positions"));
    TESSEL_RETURN_IF_ERROR(
        Require(q.rank() == 4 && k.rank() == 4 && v.rank() == 4,
                "needs [batch, seq, heads, dim] q, k and v"));
    const int64_t batch = q.dim(0), seq = q.dim(1), heads = q.dim(2),
                  dim = q.dim(3);
    const int64_t kv_len = k.dim(1), kv_heads = k.dim(2), v_dim = v.dim(3);
    TESSEL_RETURN_IF_ERROR(Require(
        k.dim(0) == batch && v.dim(0) == batch && v.dim(1) == kv_len &&
            v.dim(2) == kv_heads && k.dim(3) == dim && kv_heads > 0 &&
            heads % kv_heads == 0 && positions.elements == batch * seq &&
            out.elements == batch * seq * heads * v_dim,
        "shape mismatch"));
    const AttentionParams params =
        ToAttentionParams(*inst_.attrs_as_AttentionAttrs());
    ThreadPool* pool = pool_;
    return Step([=, &q, &k, &v, &positions, &out] {
      const int64_t keys = VisibleKeys(positions, batch, kv_len);
      cpu::Attention(q.f(), k.f(), v.f(), positions.i(), batch, seq, heads,
                     keys, kv_heads, dim, v_dim, params, out.f(), pool);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> MLAAttention() {
    Buffer &q_nope = In(0), &q_rope = In(1), &latent = In(2), &key_rope = In(3),
           &kv_b = In(4), &positions = In(5), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(positions, "positions"));
    TESSEL_RETURN_IF_ERROR(Require(
        q_nope.rank() == 4 && q_rope.rank() == 4 && latent.rank() >= 3 &&
            key_rope.rank() >= 3 && out.rank() >= 1,
        "needs [B, S, H, d] queries and [B, L, ...] latent and key_rope"));
    const int64_t batch = q_nope.dim(0), seq = q_nope.dim(1),
                  heads = q_nope.dim(2);
    const int64_t nope = q_nope.dim(3), rope = q_rope.dim(3);
    const int64_t kv_len = latent.dim(1), rank = latent.dim(-1),
                  v_dim = out.dim(-1);
    TESSEL_RETURN_IF_ERROR(
        Require(q_rope.dim(0) == batch && q_rope.dim(1) == seq &&
                    q_rope.dim(2) == heads && latent.dim(0) == batch &&
                    latent.elements == batch * kv_len * rank &&
                    key_rope.dim(0) == batch && key_rope.dim(1) == kv_len &&
                    key_rope.elements == batch * kv_len * rope &&
                    kv_b.elements == heads * (nope + v_dim) * rank &&
                    positions.elements == batch * seq &&
                    out.elements == batch * seq * heads * v_dim,
                "shape mismatch"));
    const AttentionParams params =
        ToAttentionParams(*inst_.attrs_as_AttentionAttrs());
    ThreadPool* pool = pool_;
    return Step(
        [=, &q_nope, &q_rope, &latent, &key_rope, &kv_b, &positions, &out] {
          const int64_t keys = VisibleKeys(positions, batch, kv_len);
          cpu::MLAAttention(q_nope.f(), q_rope.f(), latent.f(), key_rope.f(),
                            kv_b.f(), positions.i(), batch, seq, heads, keys,
                            nope, rope, rank, v_dim, params, out.f(), pool);
          return absl::OkStatus();
        });
  }

  absl::StatusOr<Step> Router(int operands) {
    Buffer &x = In(0), &gate = In(1), &weights = Out(0), &indices = Out(1);
    const Buffer* bias = operands > 2 ? &In(2) : nullptr;
    TESSEL_RETURN_IF_ERROR(RequireInt(indices, "expert indices"));
    TESSEL_RETURN_IF_ERROR(
        Require(gate.rank() == 2 && gate.dim(1) > 0 && x.rank() >= 1 &&
                    x.dim(-1) == gate.dim(1),
                "needs x [..., hidden] and gate [experts, hidden]"));
    const int64_t experts = gate.dim(0), hidden = gate.dim(1),
                  tokens = x.elements / hidden;
    const plan::RouterAttrs& attrs = *inst_.attrs_as_RouterAttrs();
    RouterParams params;
    params.top_k = attrs.top_k();
    params.n_group = attrs.n_group();
    params.topk_group = attrs.topk_group();
    params.sigmoid = attrs.scoring() == plan::RouterScoring::Sigmoid;
    params.norm_topk_prob = attrs.norm_topk_prob();
    params.routed_scaling_factor = attrs.routed_scaling_factor();
    TESSEL_RETURN_IF_ERROR(Require(
        params.top_k >= 1 && params.n_group >= 1 &&
            experts % params.n_group == 0 && params.topk_group >= 1 &&
            params.topk_group <= params.n_group &&
            params.top_k <= params.topk_group * (experts / params.n_group),
        absl::StrCat("router attrs (top_k ", params.top_k, ", n_group ",
                     params.n_group, ", topk_group ", params.topk_group,
                     ") do not fit ", experts, " experts")));
    TESSEL_RETURN_IF_ERROR(
        Require((!bias || bias->elements == experts) &&
                    weights.elements == tokens * params.top_k &&
                    indices.elements == tokens * params.top_k,
                "size mismatch"));
    ThreadPool* pool = pool_;
    return Step([=, &x, &gate, &weights, &indices] {
      cpu::MoERouter(x.f(), tokens, hidden, gate.f(), experts,
                     bias ? bias->f() : nullptr, params, weights.f(),
                     indices.i(), pool);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Experts() {
    Buffer &x = In(0), &weights = In(1), &indices = In(2), &gate = In(3),
           &up = In(4), &down = In(5), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireInt(indices, "expert indices"));
    TESSEL_RETURN_IF_ERROR(Require(
        gate.rank() == 3 && up.rank() == 3 && down.rank() == 3 &&
            x.rank() >= 1 && gate.dim(2) > 0 && x.dim(-1) == gate.dim(2),
        "needs x [..., hidden] and [experts, ...] expert weights"));
    const int64_t experts = gate.dim(0), inter = gate.dim(1),
                  hidden = gate.dim(2);
    const int64_t tokens = x.elements / hidden;
    TESSEL_RETURN_IF_ERROR(
        Require(tokens > 0 && weights.elements % tokens == 0, "size mismatch"));
    const int64_t top_k = weights.elements / tokens;
    TESSEL_RETURN_IF_ERROR(Require(
        up.shape == gate.shape && down.dim(0) == experts &&
            down.dim(1) == hidden && down.dim(2) == inter &&
            indices.elements == weights.elements && out.elements == x.elements,
        "shape mismatch"));
    UnaryOp activation = UnaryOp::kSilu;
    switch (inst_.attrs_as_ExpertsAttrs()->activation()) {
      case plan::Activation::Silu:
        activation = UnaryOp::kSilu;
        break;
      case plan::Activation::Gelu:
        activation = UnaryOp::kGelu;
        break;
      case plan::Activation::GeluTanh:
        activation = UnaryOp::kGeluTanh;
        break;
    }
    ThreadPool* pool = pool_;
    const std::string where = where_;
    return Step(
        [=, &x, &weights, &indices, &gate, &up, &down, &out]() -> absl::Status {
          // The indices are data: check them before the kernel uses them as
          // addresses.
          for (int64_t i = 0; i < indices.elements; ++i) {
            if (indices.i()[i] < 0 || indices.i()[i] >= experts) {
              return absl::InternalError(
                  absl::StrCat(where, " got expert index ", indices.i()[i],
                               ", outside [0, ", experts, ")"));
            }
          }
          cpu::MoEExperts(x.f(), tokens, hidden, weights.f(), indices.i(),
                          top_k, gate.f(), up.f(), down.f(), experts, inter,
                          activation, out.f(), pool);
          return absl::OkStatus();
        });
  }

  const plan::Instruction& inst_;
  std::vector<Buffer>& buffers_;
  ThreadPool* pool_;
  std::string where_;
};

// Frees with the alignment it was allocated with.
struct AlignedDelete {
  void operator()(uint8_t* p) const {
    ::operator delete[](p, std::align_val_t{64});
  }
};

}  // namespace

// One entry point bound for one call shape: arena, buffers, steps.
struct CpuSession::Bound {
  int64_t seq = -1;  // the shape bound; -1: nothing yet
  std::unique_ptr<uint8_t[], AlignedDelete> arena;
  uint64_t arena_bytes = 0;
  std::vector<Buffer> buffers;
  std::vector<Step> steps;
  std::vector<int32_t> ids;
  std::vector<int32_t> positions;
  uint32_t logits_value = 0;
};

uint64_t CpuModel::arena_scale(const plan::EntryPoint& entry) const {
  uint64_t scale = 1;
  for (const plan::Value* value : *entry.values()) {
    if (value->kind() != ValueKind::Arena) continue;
    const uint64_t bytes = PlanDTypeBytes(value->dtype());
    if (bytes > 0 && bytes < 4) scale = std::max<uint64_t>(scale, 4 / bytes);
  }
  return scale;
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Create(
    std::unique_ptr<Artifact> artifact, const CpuModelOptions& options) {
  if (artifact == nullptr)
    return absl::InvalidArgumentError("CpuModel::Create: no artifact");
  const plan::Plan& plan = artifact->plan();
  if (plan.ranks() != 1) {
    return absl::UnimplementedError(
        absl::StrCat("the plan is sharded over ", plan.ranks(),
                     " ranks; the CPU executor runs single-rank plans (compile "
                     "with --gpus 1)"));
  }
  if (artifact->FindEntryPoint("prefill") == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the plan in '", artifact->dir(), "' has no \"prefill\" entry point"));
  }
  std::unique_ptr<CpuModel> model(new CpuModel());
  model->pool_ = std::make_unique<ThreadPool>(options.threads);

  model->max_context_ = plan.model()->max_context();
  if (plan.kv_cache() != nullptr) {
    for (const plan::CacheSlot* slot : *plan.kv_cache()) {
      model->max_context_ =
          std::min<int64_t>(model->max_context_, slot->shape()->Get(0));
    }
  }

  // f32 weights are used in place (the mapping is 256-byte aligned); the others
  // are widened in parallel, one weight per task. Checksums are verified either
  // way.
  const uint32_t count = plan.weights() ? plan.weights()->size() : 0;
  model->converted_.resize(count);
  model->weight_data_.assign(count, nullptr);
  std::vector<bool> in_place(count, false);
  for (uint32_t i = 0; i < count; ++i) {
    const std::span<const uint8_t> bytes = artifact->WeightBytes(i);
    if (plan.weights()->Get(i)->dtype() == plan::DType::F32 &&
        reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) == 0) {
      in_place[i] = true;
      model->weight_data_[i] = reinterpret_cast<const float*>(bytes.data());
      continue;
    }
    try {
      model->converted_[i].resize(artifact->WeightElements(i));
    } catch (const std::bad_alloc&) {
      const plan::Weight* weight = plan.weights()->Get(i);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", artifact->WeightElements(i),
                       " floats for weight '",
                       weight->name() ? weight->name()->str() : "", "'"));
    }
    model->weight_data_[i] = model->converted_[i].data();
  }
  std::vector<absl::Status> statuses(count);
  model->pool_->ParallelFor(count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t index = static_cast<uint32_t>(i);
      statuses[i] = in_place[i]
                        ? artifact->VerifyWeightChecksum(index)
                        : artifact->ReadWeightF32(index, model->converted_[i]);
    }
  });
  for (uint32_t i = 0; i < count; ++i) {
    if (!statuses[i].ok()) return statuses[i];
  }
  model->artifact_ = std::move(artifact);
  return model;
}

absl::StatusOr<std::unique_ptr<CpuSession>> CpuSession::Create(
    std::shared_ptr<const CpuModel> model, const CpuSessionOptions& options) {
  if (model == nullptr)
    return absl::InvalidArgumentError("CpuSession::Create: no model");
  std::unique_ptr<CpuSession> session(new CpuSession());
  session->options_ = options;
  session->capacity_ = options.max_context > 0
                           ? std::min(options.max_context, model->max_context())
                           : model->max_context();
  const plan::Plan& plan = model->artifact().plan();
  session->prefill_ = model->artifact().FindEntryPoint("prefill");
  session->decode_ = model->artifact().FindEntryPoint("decode");
  if (session->decode_ != nullptr && session->decode_->seq_len() != 1 &&
      session->decode_->seq_len() != -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the plan's \"decode\" entry point takes ",
                     session->decode_->seq_len(), " tokens, not 1"));
  }
  session->prefill_bound_ = std::make_unique<Bound>();
  session->decode_bound_ = std::make_unique<Bound>();

  if (plan.kv_cache() != nullptr) {
    for (uint32_t i = 0; i < plan.kv_cache()->size(); ++i) {
      const auto& shape = *plan.kv_cache()->Get(i)->shape();
      uint64_t elements = static_cast<uint64_t>(session->capacity_);
      for (uint32_t d = 1; d < shape.size(); ++d) {
        if (__builtin_mul_overflow(
                elements, static_cast<uint64_t>(shape.Get(d)), &elements)) {
          return absl::ResourceExhaustedError(
              absl::StrCat("KV cache slot #", i, " is too large"));
        }
      }
      if (elements > (uint64_t{1} << 61) ||
          __builtin_add_overflow(session->cache_bytes_, elements * 4,
                                 &session->cache_bytes_) ||
          (options.memory_limit_bytes != 0 &&
           session->cache_bytes_ > options.memory_limit_bytes)) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the KV cache of ", session->capacity_,
                         " tokens needs more than the session's limit of ",
                         options.memory_limit_bytes, " bytes"));
      }
      try {
        session->caches_.emplace_back(elements, 0.0f);
      } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "cannot allocate ", elements * 4, " bytes for KV cache slot #", i));
      }
    }
  }
  session->model_ = std::move(model);
  return session;
}

CpuSession::~CpuSession() = default;

void CpuSession::Reset() {
  position_ = 0;
  logits_.clear();
  logits_rows_ = 0;
}

absl::Status CpuSession::Bind(const plan::EntryPoint& entry, int64_t seq,
                              Bound& bound) {
  bound.seq = -1;
  bound.steps.clear();
  const std::string where =
      absl::StrCat("entry point '", entry.name()->str(), "'");
  const int64_t batch = 1, tokens = batch * seq;
  const uint64_t scale = model_->arena_scale(entry);

  // The arena: bytes per token * scale * tokens, kept when a later call needs
  // no more.
  uint64_t arena_bytes = 0;
  if (__builtin_mul_overflow(entry.arena_bytes_per_token(), scale,
                             &arena_bytes) ||
      __builtin_mul_overflow(arena_bytes, static_cast<uint64_t>(tokens),
                             &arena_bytes) ||
      arena_bytes > (uint64_t{1} << 46) ||
      (options_.memory_limit_bytes != 0 &&
       arena_bytes + cache_bytes_ > options_.memory_limit_bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(where, " needs ", entry.arena_bytes_per_token(), " x ",
                     scale, " arena bytes per token for ", tokens,
                     " tokens, more than this session may allocate"));
  }
  if (arena_bytes > bound.arena_bytes || bound.arena == nullptr) {
    bound.arena.reset();
    bound.arena_bytes = 0;
    const uint64_t allocate = std::max<uint64_t>(arena_bytes, 64);
    uint8_t* memory = static_cast<uint8_t*>(
        ::operator new[](allocate, std::align_val_t{64}, std::nothrow));
    if (memory == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          where, " cannot allocate an arena of ", arena_bytes, " bytes"));
    }
    std::memset(memory, 0, allocate);
    bound.arena.reset(memory);
    bound.arena_bytes = allocate;
  }
  bound.ids.assign(tokens, 0);
  bound.positions.assign(tokens, 0);

  // Values: concrete shapes and addresses. Views resolve after their base (any
  // order in the plan; chains are acyclic by verification).
  const auto& values = *entry.values();
  const uint32_t count = values.size();
  bound.buffers.assign(count, Buffer());
  std::vector<uint8_t> resolved(count, 0);
  // Binds one value whose base (for a view) is already bound.
  const auto resolve = [&](uint32_t id) -> absl::Status {
    const plan::Value& value = *values.Get(id);
    Buffer& buffer = bound.buffers[id];
    buffer.dtype = value.dtype();
    const std::string what = absl::StrCat(where, " value #", id);
    int64_t elements = 1;
    for (uint32_t d = 0; d < value.shape()->size(); ++d) {
      int64_t dim = value.shape()->Get(d);
      if (dim == plan_format::kBatch) dim = batch;
      if (dim == plan_format::kSeq) dim = seq;
      if (value.kind() == ValueKind::Cache && d == 1) dim = capacity_;
      if (__builtin_mul_overflow(elements, dim, &elements) ||
          elements > (int64_t{1} << 46)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " has too many elements"));
      }
      buffer.shape.push_back(dim);
    }
    buffer.elements = elements;
    const uint64_t needed = static_cast<uint64_t>(elements) * 4;
    switch (value.kind()) {
      case ValueKind::Arena: {
        const uint64_t offset = value.arena_offset() * scale * tokens;
        const uint64_t size = value.bytes_per_token() * scale * tokens;
        if (needed > size) {
          return absl::InvalidArgumentError(absl::StrCat(
              what, " of shape ", ShapeString(buffer.shape), " needs ", needed,
              " bytes as f32 but its arena slot holds ", size, " (",
              value.bytes_per_token(), " bytes per token x ", scale, " x ",
              tokens, " tokens)"));
        }
        buffer.data = bound.arena.get() + offset;
        break;
      }
      case ValueKind::Weight:
        buffer.data = const_cast<float*>(model_->weight(value.weight()));
        break;
      case ValueKind::Input:
        if (elements != tokens) {
          return absl::InvalidArgumentError(absl::StrCat(
              what, " (an input) has shape ", ShapeString(buffer.shape),
              ", not [", batch, ", ", seq, "]"));
        }
        buffer.data =
            value.input() == 0 ? bound.ids.data() : bound.positions.data();
        break;
      case ValueKind::Cache:
        buffer.data = caches_[value.cache()].data();
        break;
      case ValueKind::View: {
        const Buffer& base = bound.buffers[value.base()];
        if (elements > base.elements) {
          return absl::InvalidArgumentError(
              absl::StrCat(what, " views ", elements, " elements of value #",
                           value.base(), ", which has ", base.elements));
        }
        buffer.data = base.data;
        break;
      }
    }
    resolved[id] = 1;
    return absl::OkStatus();
  };
  TESSEL_RETURN_IF_ERROR(BindValuesBasesFirst(values, resolved, resolve));

  bound.logits_value = entry.outputs()->Get(0);
  const Buffer& logits = bound.buffers[bound.logits_value];
  if (logits.elements != tokens * model_->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " returns logits of shape ", ShapeString(logits.shape),
        ", not [", tokens, ", ", model_->vocab_size(), "]"));
  }

  for (uint32_t n = 0; n < entry.instructions()->size(); ++n) {
    const plan::Instruction& inst = *entry.instructions()->Get(n);
    StepBuilder builder(inst, bound.buffers, model_->pool(),
                        absl::StrCat(where, " instruction #", n, " (",
                                     plan::EnumNameOpCode(inst.op()), ")"));
    TESSEL_ASSIGN_OR_RETURN(Step step, builder.Build());
    bound.steps.push_back(std::move(step));
  }
  bound.seq = seq;
  return absl::OkStatus();
}

absl::Status CpuSession::Run(const plan::EntryPoint& entry, Bound& bound,
                             std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("no tokens to run");
  if (entry.seq_len() > 0 && entry.seq_len() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry point '", entry.name()->str(), "' takes ",
                     entry.seq_len(), " tokens per call, got ", n));
  }
  if (n > capacity_ - position_) {
    return absl::OutOfRangeError(
        absl::StrCat("context of ", capacity_, " tokens is full: ", position_,
                     " tokens are in it and ", n, " more do not fit"));
  }
  const int64_t vocab = model_->vocab_size();
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", tokens[i], " (at index ", i,
                       ") is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (bound.seq != n) TESSEL_RETURN_IF_ERROR(Bind(entry, n, bound));
  std::copy(tokens.begin(), tokens.end(), bound.ids.begin());
  for (int64_t i = 0; i < n; ++i)
    bound.positions[i] = static_cast<int32_t>(position_ + i);
  {
    std::lock_guard<std::mutex> lock(model_->run_mutex_);
    for (const Step& step : bound.steps) TESSEL_RETURN_IF_ERROR(step());
  }
  const Buffer& logits = bound.buffers[bound.logits_value];
  logits_.assign(logits.f(), logits.f() + n * vocab);
  logits_rows_ = n;
  position_ += n;
  return absl::OkStatus();
}

absl::Status CpuSession::Prefill(std::span<const int32_t> tokens) {
  return Run(*prefill_, *prefill_bound_, tokens);
}

absl::Status CpuSession::Decode(int32_t token) {
  const int32_t tokens[1] = {token};
  if (decode_ != nullptr) return Run(*decode_, *decode_bound_, tokens);
  return Run(*prefill_, *prefill_bound_, tokens);
}

}  // namespace tessel::cpu
