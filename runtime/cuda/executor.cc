// The CUDA plan executor: uploads weights, binds plan values to device buffers and
// instructions to kernel launchers, captures decode steps as CUDA graphs.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/executor.h"

#include <cuda_runtime_api.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status.h"
#include "runtime/cpu/plan_params.h"
#include "runtime/cuda/attention_decode.cuh"
#include "runtime/cuda/attention_prefill.cuh"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_info.h"
#include "runtime/cuda/elementwise.cuh"
#include "runtime/cuda/embedding.cuh"
#include "runtime/cuda/mla.cuh"
#include "runtime/cuda/moe.cuh"
#include "runtime/cuda/executor.cuh"
#include "runtime/cuda/generated_kernels.h"
#include "runtime/cuda/l2_prefetch.cuh"
#include "runtime/cuda/rms_norm.cuh"
#include "runtime/cuda/rope.cuh"
#include "runtime/cuda/sampling.cuh"
#include "runtime/cuda/skinny_gemm.cuh"
#include "runtime/cuda/swiglu.cuh"
#include "runtime/plan/format.h"

namespace tessel::cuda {
namespace {

using plan::OpCode;
using plan::ValueKind;

constexpr int64_t kBatchBuckets[] = {1, 2, 4, 8, 16, 32, 64};

// The smallest bucket holding `batch`; batch itself past the last bucket.
int64_t BatchBucket(int64_t batch) {
  for (int64_t bucket : kBatchBuckets)
    if (batch <= bucket) return bucket;
  return batch;
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint16_t FloatToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float magnitude;
  if (exp == 0) {
    magnitude = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    magnitude = mant ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t Product(const std::vector<int64_t>& shape, int begin, int end) {
  int64_t product = 1;
  for (int i = begin; i < end; ++i) product *= shape[i];
  return product;
}

// A value bound to device memory for one call shape.
struct Buffer {
  void* data = nullptr;
  std::vector<int64_t> shape;
  int64_t elements = 0;
  bool is_int = false;  // i32
  bool f32 = false;     // f32 storage (the logits); else bf16 for floating values
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int rank() const { return static_cast<int>(shape.size()); }
  bf16* b() const { return static_cast<bf16*>(data); }
  int element_bytes() const { return (is_int || f32) ? 4 : 2; }
  uint64_t bytes() const { return static_cast<uint64_t>(elements) * element_bytes(); }
};

// True when the byte ranges of a and b share a byte.
bool Overlaps(const Buffer& a, const Buffer& b) {
  const auto* pa = static_cast<const uint8_t*>(a.data);
  const auto* pb = static_cast<const uint8_t*>(b.data);
  return pa < pb + b.bytes() && pb < pa + a.bytes();
}

using Step = std::function<absl::Status(cudaStream_t)>;

bool FlashHeadDim(int64_t d) { return d == 64 || d == 128 || d == 256; }

// The kernels' masking and score options of an Attention or MLAAttention instruction.
AttentionKernelParams AttentionParamsOf(const plan::AttentionAttrs& attrs) {
  AttentionKernelParams params;
  params.scale = static_cast<float>(attrs.scale());
  params.causal = attrs.causal();
  params.sliding_window = attrs.sliding_window();
  params.logit_softcap = static_cast<float>(attrs.logit_softcap());
  return params;
}

}  // namespace

// A parallel branch of a bound entry point's steps (the L2 prefetches): its stream, created
// with the first event, and the events that fork it from the session's stream; Join appends
// the step that joins it back (a captured graph must end on its origin stream).
struct SideBranch {
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;

  SideBranch() = default;
  SideBranch(const SideBranch&) = delete;
  SideBranch& operator=(const SideBranch&) = delete;
  ~SideBranch() {
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  absl::StatusOr<cudaEvent_t> NewEvent() {
    if (stream == nullptr) {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    }
    cudaEvent_t event = nullptr;
    TESSEL_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    events.push_back(event);
    return event;
  }

  absl::Status Join(std::vector<Step>& steps) {
    if (stream == nullptr) return absl::OkStatus();
    TESSEL_ASSIGN_OR_RETURN(cudaEvent_t join, NewEvent());
    steps.push_back([side = stream, join](cudaStream_t s) -> absl::Status {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaEventRecord(join, side));
      TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(s, join, 0));
      return absl::OkStatus();
    });
    return absl::OkStatus();
  }
};

// An L2 prefetch on the side branch, forked from the session's stream where a step issues
// it (nothing when `event` is null).
struct L2PrefetchFork {
  cudaEvent_t event = nullptr;
  cudaStream_t side = nullptr;
  L2Prefetch range;
  int blocks = 0;

  absl::Status Issue(cudaStream_t s) const {
    if (event == nullptr) return absl::OkStatus();
    TESSEL_CUDA_RETURN_IF_ERROR(cudaEventRecord(event, s));
    TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side, event, 0));
    return LaunchL2Prefetch(range, blocks, side);
  }
};

// One entry point bound for one call shape: arena, input buffers, steps, captured graph.
struct CudaSession::Bound {
  int64_t batch = 0, seq = 0;
  void* arena = nullptr;
  int32_t* inputs = nullptr;  // ids [tokens] then positions [tokens]
  std::vector<void*> scratch;  // decode-attention workspaces, rope tables
  // Dynamic-NTK RoPE: the inverse frequencies depend on max(position) + 1 of each call; Run()
  // copies the host-computed table (cpu::RopeInverseFrequencies) into these before launching.
  std::vector<std::pair<cpu::RopeParams, float*>> dynamic_rope;
  std::vector<Buffer> buffers;
  std::vector<Step> steps;
  uint32_t logits_value = 0;
  bool ran_once = false;
  SideBranch side;  // destroyed after the graph that captured it
  cudaGraphExec_t graph = nullptr;
  ~Bound() {
    if (graph != nullptr) cudaGraphExecDestroy(graph);
    for (void* p : scratch) cudaFree(p);
    if (inputs != nullptr) cudaFree(inputs);
    if (arena != nullptr) cudaFree(arena);
  }
};

namespace {

// Unwraps a StatusOr<Step> inside StepBuilder (a GNU statement expression, as the switch
// below assigns from many builders).
#define TESSEL_TRY_STEP(expr)                               \
  ({                                                        \
    auto tessel_step_ = (expr);                             \
    if (!tessel_step_.ok()) return tessel_step_.status();   \
    std::move(*tessel_step_);                               \
  })

// Builds one instruction's step from bound buffers, checking every shape the launcher relies
// on; errors name the instruction. Fuses, when the intermediate values have no other reader:
// SiLU into the following Mul (SwiGLU); decode-sized projections (SkinnyGemmPreferred: up to
// 16 rows, or 2-3 weights of one x without the norm up to 64 on the TMA kernel) into the
// skinny GEMM together with up to two more projections of the same input (q/k/v),
// with the gate/up pair and its SwiGLU, or with the residual Add that follows, and with the
// RMSNorm before them when they are its only readers; and the attention prologue (RoPE of q
// and k, both KV-cache writes) into one launch.
class StepBuilder {
 public:
  StepBuilder(const plan::EntryPoint& entry, std::vector<Buffer>& buffers, CublasLtGemm* gemm,
              std::vector<void*>& scratch,
              std::vector<std::pair<cpu::RopeParams, float*>>& dynamic_rope, int64_t capacity,
              int64_t tokens,
              const std::vector<int>& uses, const GeneratedKernels* generated, SideBranch& side)
      : entry_(entry), buffers_(buffers), gemm_(gemm), scratch_(scratch),
        dynamic_rope_(dynamic_rope), capacity_(capacity),
        tokens_(tokens), uses_(uses), generated_(generated), side_(side) {}

  // Appends the steps of instruction n (and of n + 1 when fused); returns how many
  // instructions were consumed.
  absl::StatusOr<int> Build(uint32_t n, std::vector<Step>& steps) {
    inst_ = entry_.instructions()->Get(n);
    at_ = n;
    where_ = absl::StrCat("entry point '", entry_.name()->str(), "' instruction #", n, " (",
                          plan::EnumNameOpCode(inst_->op()), ")");
    const int operands = static_cast<int>(inst_->operands()->size());
    for (int i = 0; i < operands; ++i) {
      if (!In(i).is_int && In(i).data == nullptr) return Error("reads an unbound value");
    }
    if (inst_->op() == OpCode::Matmul) {
      TESSEL_ASSIGN_OR_RETURN(int fused, TrySkinnyGemm(n, steps));
      if (fused > 0) return fused;
      TESSEL_ASSIGN_OR_RETURN(fused, TryGemmResidual(n, steps));
      if (fused > 0) return fused;
    }
    if (inst_->op() == OpCode::Rope) {
      TESSEL_ASSIGN_OR_RETURN(const int fused, TryRopeAndCacheWrite(n, steps));
      if (fused > 0) return fused;
    }
    if (inst_->op() == OpCode::RMSNorm) {
      TESSEL_ASSIGN_OR_RETURN(const int fused, TryNormIntoSkinnyGemm(n, steps));
      if (fused > 0) return fused;
    }
    Step step;
    if (inst_->kernel() >= 0) {  // a fused group: its generated kernel (generated_kernels.h)
      auto fused = [&](const flatbuffers::Vector<uint32_t>& ids) {
        std::vector<FusedBuffer> list;
        for (uint32_t id : ids) {
          const Buffer& b = buffers_[id];
          list.push_back({b.data, b.elements, b.element_bytes() == 2});
        }
        return list;
      };
      TESSEL_ASSIGN_OR_RETURN(step, generated_->Bind(*inst_, fused(*inst_->operands()),
                                                     fused(*inst_->results()), where_));
      steps.push_back(std::move(step));
      return 1;
    }
    switch (inst_->op()) {
      case OpCode::Embedding: step = TESSEL_TRY_STEP(Embedding()); break;
      case OpCode::RMSNorm: step = TESSEL_TRY_STEP(RmsNorm()); break;
      case OpCode::Matmul: step = TESSEL_TRY_STEP(Matmul(operands)); break;
      case OpCode::Add: step = TESSEL_TRY_STEP(Binary(ElementwiseOp::kAdd)); break;
      case OpCode::Mul: step = TESSEL_TRY_STEP(Binary(ElementwiseOp::kMul)); break;
      case OpCode::Silu: {
        if (n + 1 < entry_.instructions()->size()) {
          const plan::Instruction* next = entry_.instructions()->Get(n + 1);
          const uint32_t silu_out = inst_->results()->Get(0);
          if (next->op() == OpCode::Mul && uses_[silu_out] == 1 &&
              (next->operands()->Get(0) == silu_out || next->operands()->Get(1) == silu_out)) {
            const uint32_t up = next->operands()->Get(0) == silu_out ? next->operands()->Get(1)
                                                                     : next->operands()->Get(0);
            TESSEL_ASSIGN_OR_RETURN(step, SwiGlu(buffers_[inst_->operands()->Get(0)],
                                                 buffers_[up], buffers_[next->results()->Get(0)]));
            steps.push_back(std::move(step));
            return 2;
          }
        }
        step = TESSEL_TRY_STEP(Silu());
        break;
      }
      case OpCode::Scale: step = TESSEL_TRY_STEP(Scale()); break;
      case OpCode::Cast: step = TESSEL_TRY_STEP(Cast()); break;
      case OpCode::Copy: step = TESSEL_TRY_STEP(Copy()); break;
      case OpCode::Slice: step = TESSEL_TRY_STEP(Slice()); break;
      case OpCode::Concat: step = TESSEL_TRY_STEP(Concat(operands)); break;
      case OpCode::Rope: step = TESSEL_TRY_STEP(Rope()); break;
      case OpCode::KVCacheWrite: step = TESSEL_TRY_STEP(CacheWrite()); break;
      case OpCode::Attention: step = TESSEL_TRY_STEP(Attention()); break;
      case OpCode::MoERouter: step = TESSEL_TRY_STEP(Router(operands)); break;
      case OpCode::MoEExperts: step = TESSEL_TRY_STEP(Experts()); break;
      case OpCode::MLAAttention: step = TESSEL_TRY_STEP(MlaAttention()); break;
      default:  // CudaModel::Load already refused plans with other ops (MoE, MLA, ...)
        return absl::UnimplementedError(absl::StrCat(
            where_, ": the CUDA executor does not run this op yet (dense llama/mistral/qwen2 "
                    "plans only)"));
    }
    steps.push_back(std::move(step));
    return 1;
  }

 private:
  Buffer& In(int i) { return buffers_[inst_->operands()->Get(i)]; }
  Buffer& Out(int i = 0) { return buffers_[inst_->results()->Get(i)]; }

  absl::Status Error(absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, " ", problem));
  }
  absl::Status Require(bool condition, absl::string_view problem) const {
    if (condition) return absl::OkStatus();
    std::vector<std::string> operands, results;
    for (uint32_t id : *inst_->operands()) operands.push_back(ShapeString(buffers_[id].shape));
    for (uint32_t id : *inst_->results()) results.push_back(ShapeString(buffers_[id].shape));
    return Error(absl::StrCat(problem, " (operands ", absl::StrJoin(operands, ", "),
                              "; results ", absl::StrJoin(results, ", "), ")"));
  }
  absl::Status RequireBf16(std::initializer_list<const Buffer*> list) const {
    for (const Buffer* b : list) {
      if (b->is_int || b->f32) return Error("needs bf16 operands and results on the GPU");
    }
    return absl::OkStatus();
  }

  // A Matmul the skinny GEMM can run (decode-sized rows, HF layout, bf16, aligned), or null.
  const plan::Instruction* SkinnyMatmulAt(uint32_t i) const {
    if (i >= entry_.instructions()->size()) return nullptr;
    const plan::Instruction* in = entry_.instructions()->Get(i);
    if (in->op() != OpCode::Matmul || in->attrs_as_MatmulAttrs() == nullptr ||
        in->attrs_as_MatmulAttrs()->layout() != plan::WeightLayout::OutIn ||
        in->operands()->size() < 2 || in->results()->size() != 1) {
      return nullptr;
    }
    const Buffer &x = buffers_[in->operands()->Get(0)], &w = buffers_[in->operands()->Get(1)];
    const Buffer& out = buffers_[in->results()->Get(0)];
    if (x.data == nullptr || w.data == nullptr || out.data == nullptr) return nullptr;
    if (x.is_int || x.f32 || out.is_int || w.rank() != 2 || x.rank() < 1 ||
        x.dim(-1) != w.dim(1)) {
      return nullptr;
    }
    const int64_t k = w.dim(1), rows = x.elements / k;
    if (!SkinnyGemmSupports(rows, k) || out.elements != rows * w.dim(0) ||
        !Aligned16(x.data) || !Aligned16(w.data) || Overlaps(out, x)) {
      return nullptr;
    }
    if (in->operands()->size() > 2) {
      const Buffer& bias = buffers_[in->operands()->Get(2)];
      if (out.f32 || bias.elements != w.dim(0) || bias.data == nullptr) return nullptr;
    }
    return in;
  }

  // The index of the first Matmul among the `lookahead` instructions after n, or -1.
  int64_t NextMatmul(uint32_t n, uint32_t lookahead) const {
    const auto* list = entry_.instructions();
    for (uint32_t i = n + 1; i < list->size() && i <= n + lookahead; ++i) {
      if (list->Get(i)->op() == OpCode::Matmul) return i;
    }
    return -1;
  }

  // The first bytes (up to L2PrefetchLimitBytes) of the weights of the first Matmul within a
  // few instructions after n: o_proj, after the attention prologue at n. Empty when the L2
  // prefetch is off or unavailable, or no such Matmul follows.
  L2Prefetch NextWeightsPrefetch(uint32_t n) const {
    if (!L2PrefetchEnabled() || !L2PrefetchAvailable()) return {};
    const int64_t i = NextMatmul(n, 8);
    if (i < 0) return {};
    const plan::Instruction* in = entry_.instructions()->Get(i);
    if (in->operands()->size() < 2) return {};
    const Buffer& w = buffers_[in->operands()->Get(1)];
    if (w.data == nullptr || !Aligned16(w.data)) return {};
    return {w.data, std::min<uint64_t>(w.bytes(), L2PrefetchLimitBytes()) / 16 * 16};
  }

  // Whether the first Matmul within a few instructions after n runs on the TMA skinny GEMM,
  // which stages its activations in shared memory and so does not need a large L1 (decode
  // attention may then let it launch early: LaunchAttentionDecode).
  bool NextProjectionInSharedMemory(uint32_t n) const {
    const int64_t i = NextMatmul(n, 4);
    const plan::Instruction* in = i < 0 ? nullptr : SkinnyMatmulAt(i);
    if (in == nullptr) return false;
    const Buffer &x = buffers_[in->operands()->Get(0)], &w = buffers_[in->operands()->Get(1)];
    SkinnyGemmArgs args;
    args.k = w.dim(1);
    args.m = x.elements / args.k;
    args.n[0] = w.dim(0);
    return SkinnyGemmPreferred(args) && ResolveSkinnyKernel(args) == SkinnyKernel::kTma;
  }

  const bf16* BiasOf(const plan::Instruction* in) const {
    return in->operands()->size() > 2 ? buffers_[in->operands()->Get(2)].b() : nullptr;
  }

  // The launch of a skinny-GEMM fusion starting at instruction n (see the class comment):
  // how many instructions it consumes (0: none applies) and how many of them read x.
  struct SkinnyPlan {
    SkinnyGemmArgs args;
    int consumed = 0;
    int x_readers = 0;
    std::vector<const Buffer*> outputs;
  };

  SkinnyPlan PlanSkinnyGemm(uint32_t n) {
    SkinnyPlan plan;
    const plan::Instruction* first = SkinnyMatmulAt(n);
    if (first == nullptr) return plan;
    const auto* list = entry_.instructions();
    const uint32_t x_id = first->operands()->Get(0);
    const Buffer& x = buffers_[x_id];
    SkinnyGemmArgs& args = plan.args;
    args.x = x.b();
    args.k = buffers_[first->operands()->Get(1)].dim(1);
    args.m = x.elements / args.k;
    const auto add_weight = [&](const plan::Instruction* in, void* out) {
      const int i = args.weights++;
      args.w[i] = buffers_[in->operands()->Get(1)].b();
      args.n[i] = buffers_[in->operands()->Get(1)].dim(0);
      args.bias[i] = BiasOf(in);
      args.out[i] = out;
    };
    args.weights = 0;
    const auto done = [&](int consumed, int x_readers, std::vector<const Buffer*> outputs) {
      plan.consumed = consumed;
      plan.x_readers = x_readers;
      plan.outputs = std::move(outputs);
      return plan;
    };

    // gate = x Wg^T, up = x Wu^T, silu(gate) * up — as SiLU and Mul, or as the group
    // --tessel-fuse made of them: one launch, gate and up never stored.
    const plan::Instruction* second = SkinnyMatmulAt(n + 1);
    if (second != nullptr && second->operands()->Get(0) == x_id) {
      const uint32_t a = first->results()->Get(0), b = second->results()->Get(0);
      const std::optional<SwiGluAfter> swiglu = MatchSwiGluAfter(n + 2, a, b);
      if (swiglu && uses_[a] == 1 && uses_[b] == 1) {
        const Buffer& out = buffers_[swiglu->out];
        if (buffers_[a].elements == buffers_[b].elements && !out.is_int && !out.f32 &&
            out.data != nullptr && out.elements == buffers_[a].elements && !Overlaps(out, x)) {
          const plan::Instruction* gate = swiglu->gate == a ? first : second;
          add_weight(gate, out.data);
          add_weight(gate == first ? second : first, out.data);
          args.epilogue = SkinnyEpilogue::kSwiGlu;
          return done(2 + swiglu->instructions, 2, {&out});
        }
      }
    }

    // y = x W^T; out = residual + y: the add happens in the epilogue, y is never stored.
    if (n + 1 < list->size() && list->Get(n + 1)->op() == OpCode::Add) {
      const plan::Instruction* add = list->Get(n + 1);
      const uint32_t y = first->results()->Get(0);
      const uint32_t a0 = add->operands()->Get(0), a1 = add->operands()->Get(1);
      const uint32_t r = a0 == y ? a1 : a0;
      const Buffer &res = buffers_[r], &out = buffers_[add->results()->Get(0)];
      if ((a0 == y || a1 == y) && r != y && uses_[y] == 1 && !res.is_int && !res.f32 &&
          !out.is_int && !out.f32 && res.elements == buffers_[y].elements &&
          out.elements == res.elements && Aligned16(res.data) &&
          (out.data == res.data || !Overlaps(out, res)) && !Overlaps(out, x)) {
        add_weight(first, out.data);
        args.epilogue = SkinnyEpilogue::kAddResidual;
        args.residual = res.b();
        return done(2, 1, {&out, &res});
      }
    }

    // Up to three projections of the same x (q, k, v), each into its own output.
    const Buffer& first_out = buffers_[first->results()->Get(0)];
    add_weight(first, first_out.data);
    args.out_f32 = first_out.f32;
    std::vector<const Buffer*> outs = {&first_out};
    int consumed = 1;
    while (!args.out_f32 && args.weights < kSkinnyMaxWeights) {
      const plan::Instruction* next = SkinnyMatmulAt(n + consumed);
      if (next == nullptr || next->operands()->Get(0) != x_id) break;
      const Buffer& out = buffers_[next->results()->Get(0)];
      if (out.f32 || std::any_of(outs.begin(), outs.end(),
                                 [&](const Buffer* o) { return Overlaps(*o, out); })) {
        break;
      }
      add_weight(next, out.data);
      outs.push_back(&out);
      ++consumed;
    }
    return done(consumed, consumed, outs);
  }

  absl::StatusOr<int> TrySkinnyGemm(uint32_t n, std::vector<Step>& steps) {
    if (const plan::Instruction* first = SkinnyMatmulAt(n); first != nullptr) {
      TESSEL_ASSIGN_OR_RETURN(const int fused, TryResidualNormAfterGemm(n, first, steps));
      if (fused > 0) return fused;
    }
    SkinnyPlan plan = PlanSkinnyGemm(n);
    return plan.consumed > 0 && PushSkinnyIfPreferred(plan.args, steps) ? plan.consumed : 0;
  }

  // Pushes the skinny GEMM of `args` when it is the better choice than cuBLASLt
  // (SkinnyGemmPreferred); false, nothing pushed, when it is not.
  static bool PushSkinnyIfPreferred(const SkinnyGemmArgs& args, std::vector<Step>& steps) {
    if (!SkinnyGemmPreferred(args)) return false;
    steps.push_back([args](cudaStream_t s) { return LaunchSkinnyGemm(args, s); });
    return true;
  }

  // A skinny-GEMM fusion at instruction `at` whose x is `normed` = RMSNorm(x_in, weight) and
  // which absorbs every reader of `normed`: pushed with the norm as its prologue (the
  // normalized activations are never stored). Returns the instructions consumed from `at`
  // (0: not applicable, nothing pushed).
  int PushNormPrologueGemm(uint32_t at, uint32_t normed, const Buffer& x_in,
                           const Buffer& weight, float eps, std::vector<Step>& steps) {
    if (at >= entry_.instructions()->size()) return 0;
    const plan::Instruction* next = entry_.instructions()->Get(at);
    if (next->operands()->size() == 0 || next->operands()->Get(0) != normed) return 0;
    if (x_in.is_int || x_in.f32 || weight.f32 || x_in.rank() < 1 ||
        weight.elements != x_in.dim(-1) || x_in.dim(-1) > kSkinnyMaxNormK ||
        !Aligned16(x_in.data) || !Aligned16(weight.data)) {
      return 0;
    }
    SkinnyPlan plan = PlanSkinnyGemm(at);
    if (plan.consumed == 0 || plan.x_readers != uses_[normed] || plan.args.k != x_in.dim(-1) ||
        plan.args.m * plan.args.k != x_in.elements ||
        std::any_of(plan.outputs.begin(), plan.outputs.end(),
                    [&](const Buffer* o) { return Overlaps(*o, x_in); })) {
      return 0;
    }
    plan.args.x = x_in.b();
    plan.args.norm_weight = weight.b();
    plan.args.norm_eps = eps;
    return PushSkinnyIfPreferred(plan.args, steps) ? plan.consumed : 0;
  }

  // RMSNorm whose every reader is absorbed by the skinny-GEMM fusion that follows it.
  absl::StatusOr<int> TryNormIntoSkinnyGemm(uint32_t n, std::vector<Step>& steps) {
    const Buffer &x = In(0), &weight = In(1), &out = Out();
    if (out.is_int || out.f32 || out.elements != x.elements) return 0;
    const float eps = static_cast<float>(inst_->attrs_as_NormAttrs()->epsilon());
    const int consumed =
        PushNormPrologueGemm(n + 1, inst_->results()->Get(0), x, weight, eps, steps);
    return consumed > 0 ? 1 + consumed : 0;
  }

  // The residual-then-RMSNorm fused group (--tessel-fuse's "residual_rms_norm": sum = a + b,
  // normed = RMSNorm(sum, weight)), recognized from its program.
  struct AddNorm {
    uint32_t a = 0, b = 0, weight = 0, normed = 0;
    int64_t sum = -1;  // value id of the sum when the group returns it
    float eps = 0.0f;
  };
  static std::optional<AddNorm> MatchAddNorm(const plan::Instruction* in) {
    const plan::FusedProgram* program = in->program();
    if (in->op() != OpCode::Fused || program == nullptr || program->ops() == nullptr ||
        program->results() == nullptr || program->ops()->size() != 2 ||
        program->results()->size() != in->results()->size()) {
      return std::nullopt;
    }
    const uint32_t n = in->operands()->size();
    const plan::FusedOp *add = program->ops()->Get(0), *norm = program->ops()->Get(1);
    if (add->op() != OpCode::Add || norm->op() != OpCode::RMSNorm ||
        add->operands()->size() != 2 || norm->operands()->size() != 2 ||
        add->operands()->Get(0) >= n || add->operands()->Get(1) >= n ||
        norm->operands()->Get(0) != n || norm->operands()->Get(1) >= n) {
      return std::nullopt;
    }
    AddNorm match;
    match.a = in->operands()->Get(add->operands()->Get(0));
    match.b = in->operands()->Get(add->operands()->Get(1));
    match.weight = in->operands()->Get(norm->operands()->Get(1));
    match.eps = static_cast<float>(norm->attr());
    bool have_norm = false;
    for (uint32_t i = 0; i < program->results()->size(); ++i) {
      const uint32_t v = program->results()->Get(i);
      if (v == n) {
        match.sum = in->results()->Get(i);
      } else if (v == n + 1) {
        match.normed = in->results()->Get(i);
        have_norm = true;
      } else {
        return std::nullopt;
      }
    }
    if (!have_norm) return std::nullopt;
    return match;
  }

  // silu(gate) * up as a fused group (--tessel-fuse's "swiglu"): {gate, up, out} value ids.
  static std::optional<std::array<uint32_t, 3>> MatchSwiGlu(const plan::Instruction* in) {
    const plan::FusedProgram* program = in->program();
    if (in->op() != OpCode::Fused || program == nullptr || program->ops() == nullptr ||
        program->results() == nullptr || program->ops()->size() != 2 ||
        program->results()->size() != 1 || in->results()->size() != 1) {
      return std::nullopt;
    }
    const uint32_t n = in->operands()->size();
    const plan::FusedOp *silu = program->ops()->Get(0), *mul = program->ops()->Get(1);
    if (silu->op() != OpCode::Silu || mul->op() != OpCode::Mul ||
        silu->operands()->size() != 1 || mul->operands()->size() != 2 ||
        silu->operands()->Get(0) >= n || program->results()->Get(0) != n + 1) {
      return std::nullopt;
    }
    const uint32_t m0 = mul->operands()->Get(0), m1 = mul->operands()->Get(1);
    const uint32_t up = m0 == n ? m1 : m0;
    if ((m0 != n && m1 != n) || up >= n) return std::nullopt;
    return std::array<uint32_t, 3>{in->operands()->Get(silu->operands()->Get(0)),
                                   in->operands()->Get(up), in->results()->Get(0)};
  }

  // silu(gate) * up over the values a and b (either one the gate) at instruction `at`: a
  // SiLU whose result only the following Mul reads, or a fused swiglu group. Which of a, b
  // is the gate, the value receiving the product, and how many instructions it spans.
  struct SwiGluAfter {
    uint32_t gate = 0, out = 0;
    int instructions = 0;
  };
  std::optional<SwiGluAfter> MatchSwiGluAfter(uint32_t at, uint32_t a, uint32_t b) const {
    const auto* list = entry_.instructions();
    if (at >= list->size()) return std::nullopt;
    uint32_t gate = 0, up = 0, out = 0;
    int instructions = 0;
    if (const std::optional<std::array<uint32_t, 3>> fused = MatchSwiGlu(list->Get(at))) {
      gate = (*fused)[0];
      up = (*fused)[1];
      out = (*fused)[2];
      instructions = 1;
    } else if (at + 1 < list->size() && list->Get(at)->op() == OpCode::Silu &&
               list->Get(at + 1)->op() == OpCode::Mul) {
      const plan::Instruction *silu = list->Get(at), *mul = list->Get(at + 1);
      const uint32_t silu_out = silu->results()->Get(0);
      const uint32_t m0 = mul->operands()->Get(0), m1 = mul->operands()->Get(1);
      if (uses_[silu_out] != 1 || (m0 != silu_out && m1 != silu_out)) return std::nullopt;
      gate = silu->operands()->Get(0);
      up = m0 == silu_out ? m1 : m0;
      out = mul->results()->Get(0);
      instructions = 2;
    } else {
      return std::nullopt;
    }
    if (!((gate == a && up == b) || (gate == b && up == a))) return std::nullopt;
    return SwiGluAfter{gate, out, instructions};
  }

  // The residual add that reads the result y of the projection `gemm`, at instruction `at`:
  // a plain Add, or a fused residual_rms_norm group (`norm` set). The sum goes to the Add's or
  // the group's result; a group that keeps its sum inside writes it over the residual when
  // nothing else reads that. What every GEMM epilogue needs is checked here: y read only by
  // the add, bf16 operands of y's size, the sum 16-byte aligned, apart from the GEMM's input
  // and either the residual itself or apart from it.
  struct ResidualAdd {
    const Buffer* residual = nullptr;
    const Buffer* sum = nullptr;
    std::optional<AddNorm> norm;
  };
  std::optional<ResidualAdd> MatchResidualAdd(const plan::Instruction* gemm, uint32_t at) const {
    const auto* list = entry_.instructions();
    if (at >= list->size()) return std::nullopt;
    const plan::Instruction* next = list->Get(at);
    const uint32_t y = gemm->results()->Get(0);
    ResidualAdd match;
    uint32_t a = 0, b = 0;
    if (next->op() == OpCode::Add && next->operands()->size() == 2) {
      a = next->operands()->Get(0);
      b = next->operands()->Get(1);
      match.sum = &buffers_[next->results()->Get(0)];
    } else if ((match.norm = MatchAddNorm(next))) {
      a = match.norm->a;
      b = match.norm->b;
    } else {
      return std::nullopt;
    }
    if ((a != y && b != y) || a == b || uses_[y] != 1) return std::nullopt;
    const uint32_t r = a == y ? b : a;
    const Buffer &x = buffers_[gemm->operands()->Get(0)], &res = buffers_[r], &out = buffers_[y];
    if (match.norm) {
      match.sum = match.norm->sum >= 0 ? &buffers_[match.norm->sum]
                                       : (uses_[r] == 1 ? &res : nullptr);
    }
    const Buffer* sum = match.sum;
    if (sum == nullptr || res.is_int || res.f32 || sum->is_int || sum->f32 || out.f32 ||
        res.elements != out.elements || sum->elements != out.elements ||
        (sum->data != res.data && Overlaps(*sum, res)) || Overlaps(*sum, x) ||
        !Aligned16(res.data) || !Aligned16(sum->data)) {
      return std::nullopt;
    }
    match.residual = &res;
    return match;
  }

  // y = x W^T followed by the fused residual_rms_norm group reading y: the skinny GEMM adds
  // the residual in its epilogue (writing the sum), and the norm becomes the prologue of the
  // projections that read it (or one RMSNorm launch when they cannot take it). A plain Add is
  // PlanSkinnyGemm's.
  absl::StatusOr<int> TryResidualNormAfterGemm(uint32_t n, const plan::Instruction* first,
                                               std::vector<Step>& steps) {
    const std::optional<ResidualAdd> match = MatchResidualAdd(first, n + 1);
    if (!match || !match->norm) return 0;
    const AddNorm& group = *match->norm;
    const Buffer &normed = buffers_[group.normed], &weight = buffers_[group.weight];
    if (normed.f32 || normed.is_int || normed.elements != match->sum->elements) return 0;
    const Buffer& x = buffers_[first->operands()->Get(0)];
    SkinnyGemmArgs args;
    args.x = x.b();
    args.k = buffers_[first->operands()->Get(1)].dim(1);
    args.m = x.elements / args.k;
    args.weights = 1;
    args.w[0] = buffers_[first->operands()->Get(1)].b();
    args.n[0] = buffers_[first->operands()->Get(1)].dim(0);
    args.bias[0] = BiasOf(first);
    args.out[0] = match->sum->data;
    args.epilogue = SkinnyEpilogue::kAddResidual;
    args.residual = match->residual->b();
    if (!PushSkinnyIfPreferred(args, steps)) return 0;
    const int consumed =
        PushNormPrologueGemm(n + 2, group.normed, *match->sum, weight, group.eps, steps);
    if (consumed > 0) return 2 + consumed;
    TESSEL_RETURN_IF_ERROR(PushGroupNorm(*match->sum, group, steps));
    return 2;
  }

  // The norm of a residual_rms_norm group as one RMSNorm launch from the stored sum.
  absl::Status PushGroupNorm(const Buffer& sum, const AddNorm& group, std::vector<Step>& steps) {
    const Buffer &normed = buffers_[group.normed], &weight = buffers_[group.weight];
    if (normed.data == nullptr || normed.f32 || normed.is_int || Overlaps(normed, sum) ||
        normed.elements != sum.elements || weight.elements <= 0 ||
        normed.elements % weight.elements != 0) {
      return Error("the fused residual_rms_norm group has an unbound or overlapping result");
    }
    const int64_t dim = weight.elements, rows = normed.elements / dim;
    const bf16 *sp = sum.b(), *wp = weight.b();
    bf16* op = normed.b();
    const float eps = group.eps;
    steps.push_back([=](cudaStream_t s) { return LaunchRmsNorm(sp, wp, rows, dim, eps, op, s); });
    return absl::OkStatus();
  }

  // Matmul (cuBLASLt) followed by the residual add — an Add, or the fused residual_rms_norm
  // group — of its result: the GEMM adds the residual before its one rounding (beta = 1), and
  // the norm of the group runs as one RMSNorm launch from the sum.
  absl::StatusOr<int> TryGemmResidual(uint32_t n, std::vector<Step>& steps) {
    if (inst_->operands()->size() != 2 || inst_->attrs_as_MatmulAttrs() == nullptr ||
        inst_->attrs_as_MatmulAttrs()->layout() != plan::WeightLayout::OutIn) {
      return 0;
    }
    const std::optional<ResidualAdd> match = MatchResidualAdd(inst_, n + 1);
    if (!match) return 0;
    const Buffer &x = In(0), &weight = In(1), &out = Out();
    if (x.is_int || x.f32 || weight.rank() != 2 || x.rank() < 1 || x.dim(-1) != weight.dim(1)) {
      return 0;
    }
    const int64_t k = weight.dim(1), rows = x.elements / k, n_out = weight.dim(0);
    if (out.elements != rows * n_out) return 0;
    CublasLtGemm* gemm = gemm_;
    const void *ap = x.data, *wp = weight.data, *rp = match->residual->data;
    void* sp = match->sum->data;
    steps.push_back([=](cudaStream_t s) {
      return gemm->Run(ap, wp, nullptr, sp, rows, n_out, k, GemmOutput::kBF16, s, rp);
    });
    if (match->norm) TESSEL_RETURN_IF_ERROR(PushGroupNorm(*match->sum, *match->norm, steps));
    return 2;
  }

  // rope(q) -> q_out, rope(k) -> k_rot, write k_rot and v into the caches: one launch, k_rot
  // never stored. 0 when the four instructions do not line up.
  absl::StatusOr<int> TryRopeAndCacheWrite(uint32_t n, std::vector<Step>& steps) {
    const auto* list = entry_.instructions();
    if (n + 3 >= list->size()) return 0;
    const plan::Instruction *rq = list->Get(n), *rk = list->Get(n + 1), *wk = list->Get(n + 2),
                            *wv = list->Get(n + 3);
    if (rk->op() != OpCode::Rope || wk->op() != OpCode::KVCacheWrite ||
        wv->op() != OpCode::KVCacheWrite) {
      return 0;
    }
    const uint32_t pos_id = rq->operands()->Get(1), k_rot = rk->results()->Get(0);
    if (rk->operands()->Get(1) != pos_id || wk->operands()->Get(1) != pos_id ||
        wv->operands()->Get(1) != pos_id || wk->operands()->Get(0) != k_rot ||
        uses_[k_rot] != 1) {
      return 0;
    }
    const Buffer &q = buffers_[rq->operands()->Get(0)], &q_out = buffers_[rq->results()->Get(0)];
    const Buffer &k = buffers_[rk->operands()->Get(0)], &v = buffers_[wv->operands()->Get(0)];
    const Buffer &k_cache = buffers_[wk->results()->Get(0)];
    const Buffer &v_cache = buffers_[wv->results()->Get(0)];
    const Buffer& positions = buffers_[pos_id];
    for (const Buffer* b : {&q, &q_out, &k, &v, &k_cache, &v_cache}) {
      if (b->data == nullptr || b->is_int || b->f32) return 0;
    }
    if (!positions.is_int || q.rank() < 2 || k.rank() < 2 || k_cache.rank() != 4 ||
        v_cache.rank() != 4) {
      return 0;
    }
    const int64_t q_heads = q.dim(-2), head_dim = q.dim(-1), kv_heads = k.dim(-2);
    const int64_t batch = k_cache.dim(0), capacity = k_cache.dim(1);
    if (k.dim(-1) != head_dim || batch <= 0 || positions.elements % batch != 0) return 0;
    const int64_t tokens = positions.elements, seq = tokens / batch;
    const int64_t kv_row = kv_heads * head_dim;
    if (q.elements != tokens * q_heads * head_dim || q_out.elements != q.elements ||
        k.elements != tokens * kv_row || v.elements != k.elements ||
        k_cache.dim(2) != kv_heads || k_cache.dim(3) != head_dim ||
        v_cache.shape != k_cache.shape) {
      return 0;
    }
    if ((q_out.data != q.data && Overlaps(q_out, q)) || Overlaps(q_out, k) ||
        Overlaps(q_out, v) || Overlaps(k_cache, v_cache)) {
      return 0;
    }
    const cpu::RopeParams pq = cpu::RopeParamsFromPlan(*rq->attrs_as_RopeAttrs(), head_dim);
    const cpu::RopeParams pk = cpu::RopeParamsFromPlan(*rk->attrs_as_RopeAttrs(), head_dim);
    const RopeKernelParams kq = MakeRopeKernelParams(pq), kk = MakeRopeKernelParams(pk);
    const std::vector<float> table = cpu::RopeInverseFrequencies(pq, capacity_);
    if (kq.rotary_dim != kk.rotary_dim || kq.interleaved != kk.interleaved ||
        kq.attention_factor != kk.attention_factor ||
        table != cpu::RopeInverseFrequencies(pk, capacity_) || kq.rotary_dim > head_dim) {
      return 0;
    }
    void* device_table = nullptr;
    TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&device_table, sizeof(float) * (table.size() + 1)));
    scratch_.push_back(device_table);
    TESSEL_RETURN_IF_ERROR(
        UploadRopeInverseFrequencies(pq, capacity_, static_cast<float*>(device_table)));
    if (pq.scaling == cpu::RopeScalingKind::kDynamic) {
      dynamic_rope_.emplace_back(pq, static_cast<float*>(device_table));
    }
    const bf16 *qp = q.b(), *kp = k.b(), *vp = v.b();
    bf16 *qo = q_out.b(), *kc = k_cache.b(), *vc = v_cache.b();
    const int32_t* pos = static_cast<const int32_t*>(positions.data);
    const float* inv = static_cast<const float*>(device_table);
    // Decode of up to 8 sequences: RoPE and attention leave HBM idle, and the projection after
    // them would wait for its weights: a parallel branch, forked once q/k/v are computed,
    // brings the first of them into L2 meanwhile (the chain never waits for it; SideBranch
    // joins it at the step's end). H100, Llama-3-8B, 16 MiB of o_proj's 32: batch 1 5.53 ->
    // 5.47 ms; at batch 16 (TMA projections) 5.87 either way, 5.94 with all 32 MiB; batch 64
    // 7.38 -> 7.57 with all. Not at prefill, whose projections are compute bound. Re-measured
    // at batch 16 with today's kernels (TESSEL_L2_PREFETCH_MAX_TOKENS=16): 5.55-5.56 ->
    // 5.59-5.63 (8 MiB 5.57, 32 MiB 5.68; docs/performance.md, eleventh round).
    L2PrefetchFork prefetch;
    prefetch.range = seq == 1 && tokens_ <= L2PrefetchMaxTokens() ? NextWeightsPrefetch(n + 3)
                                                                  : L2Prefetch{};
    if (prefetch.range.bytes > 0) {
      TESSEL_ASSIGN_OR_RETURN(prefetch.event, side_.NewEvent());
      prefetch.side = side_.stream;
      prefetch.blocks = L2PrefetchBlocks();
    }

    // Decode of up to 16 sequences: the attention right after, when it alone reads the rotated
    // q, takes the whole prologue (attention_decode.cuh's AttentionDecodeRope): one launch
    // fewer per layer. H100, Llama-3-8B, ms per step: batch 16 5.91 -> 5.88, batch 1 5.49
    // either way, batch 64 7.39 -> 7.43 (off there).
    constexpr int64_t kFuseRopeMaxBatch = 16;
    if (const plan::Instruction* att = n + 4 < list->size() ? list->Get(n + 4) : nullptr;
        seq == 1 && batch <= kFuseRopeMaxBatch && att != nullptr && FuseRopeIntoAttention() &&
        att->op() == OpCode::Attention && att->operands()->size() == 4 &&
        att->results()->size() == 1 && att->operands()->Get(0) == rq->results()->Get(0) &&
        uses_[att->operands()->Get(0)] == 1 && att->operands()->Get(3) == pos_id &&
        buffers_[att->operands()->Get(1)].data == k_cache.data &&
        buffers_[att->operands()->Get(2)].data == v_cache.data && FlashHeadDim(head_dim) &&
        q.dim(-2) == q_heads && Aligned16(q.data)) {
      // The kernel reads q, k and v while other blocks write the output: the output may be
      // q itself (each (sequence, head group) reads its q rows before writing the same rows),
      // but must not overlap k or v or any other part of q.
      const Buffer& out = buffers_[att->results()->Get(0)];
      const bool out_is_q = out.data == q.data && out.bytes() == q.bytes();
      if ((out_is_q || !Overlaps(out, q)) && !Overlaps(out, k) && !Overlaps(out, v)) {
        FusedRope fused;
        fused.q_raw = qp;
        fused.rope = AttentionDecodeRope{kp, vp, kc, vc, inv, kq};
        fused.prefetch = prefetch;
        inst_ = att;
        at_ = n + 4;
        where_ = absl::StrCat("entry point '", entry_.name()->str(), "' instruction #", n + 4,
                              " (Attention, with RoPE and the cache writes of #", n, "-#", n + 3,
                              ")");
        TESSEL_ASSIGN_OR_RETURN(Step step, Attention(&fused));
        steps.push_back(std::move(step));
        return 5;
      }
    }
    steps.push_back([=](cudaStream_t s) -> absl::Status {
      TESSEL_RETURN_IF_ERROR(prefetch.Issue(s));
      return LaunchRopeAndCacheWrite(qp, qo, kp, vp, pos, batch, seq, q_heads, kv_heads,
                                     head_dim, inv, kq, kc, vc, capacity, nullptr, s);
    });
    return 4;
  }

  // MoE routing: f32 weights and i32 expert indices per (token, k). A V3-style selection
  // bias is converted to f32 once here (the weights are held in bf16).
  absl::StatusOr<Step> Router(int operands) {
    Buffer &x = In(0), &gate = In(1), &weights = Out(0), &indices = Out(1);
    const Buffer* bias = operands > 2 ? &In(2) : nullptr;
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &gate}));
    TESSEL_RETURN_IF_ERROR(Require(weights.f32 && indices.is_int && gate.rank() == 2 &&
                                       x.rank() >= 1 && x.dim(-1) == gate.dim(1),
                                   "needs x [..., hidden], gate [experts, hidden], f32 "
                                   "weights and i32 indices"));
    const int64_t experts = gate.dim(0), hidden = gate.dim(1), tokens = x.elements / hidden;
    const plan::RouterAttrs& attrs = *inst_->attrs_as_RouterAttrs();
    MoERouterKernelParams params;
    params.top_k = static_cast<int>(attrs.top_k());
    params.n_group = static_cast<int>(attrs.n_group());
    params.topk_group = static_cast<int>(attrs.topk_group());
    params.sigmoid = attrs.scoring() == plan::RouterScoring::Sigmoid;
    params.norm_topk_prob = attrs.norm_topk_prob();
    params.routed_scaling_factor = static_cast<float>(attrs.routed_scaling_factor());
    TESSEL_RETURN_IF_ERROR(Require(weights.elements == tokens * params.top_k &&
                                       indices.elements == weights.elements &&
                                       (bias == nullptr || bias->elements == experts),
                                   "size mismatch"));
    float* bias_f32 = nullptr;
    if (bias != nullptr) {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&bias_f32, sizeof(float) * experts));
      scratch_.push_back(bias_f32);
      TESSEL_RETURN_IF_ERROR(LaunchCastBf16ToF32(bias->b(), experts, bias_f32, nullptr));
      TESSEL_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    }
    // The router's workspace holds self-resetting counters: zeroed once, here.
    void* workspace = nullptr;
    const size_t workspace_bytes = MoERouterWorkspaceBytes(tokens, experts);
    if (workspace_bytes > 0) {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, workspace_bytes));
      scratch_.push_back(workspace);
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMemset(workspace, 0, workspace_bytes));
    }
    const bf16 *xp = x.b(), *gp = gate.b();
    float* wp = static_cast<float*>(weights.data);
    int32_t* ip = static_cast<int32_t*>(indices.data);
    return Step([=](cudaStream_t s) {
      return LaunchMoERouter(xp, tokens, hidden, gp, experts, bias_f32, params, workspace, wp,
                             ip, s);
    });
  }

  // The routed experts: tokens sorted by expert on the device, grouped gate/up and down
  // GEMMs, deterministic combine (moe.cuh).
  absl::StatusOr<Step> Experts() {
    Buffer &x = In(0), &weights = In(1), &indices = In(2), &gate = In(3), &up = In(4),
           &down = In(5), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &gate, &up, &down, &out}));
    TESSEL_RETURN_IF_ERROR(Require(weights.f32 && indices.is_int && gate.rank() == 3 &&
                                       up.shape == gate.shape && down.rank() == 3 &&
                                       x.rank() >= 1 && x.dim(-1) == gate.dim(2),
                                   "needs x [..., hidden], f32 routing weights, i32 indices "
                                   "and [experts, ...] expert weights"));
    const int64_t experts = gate.dim(0), inter = gate.dim(1), hidden = gate.dim(2);
    const int64_t tokens = x.elements / hidden;
    TESSEL_RETURN_IF_ERROR(Require(tokens > 0 && weights.elements % tokens == 0 &&
                                       indices.elements == weights.elements &&
                                       down.dim(0) == experts && down.dim(1) == hidden &&
                                       down.dim(2) == inter && out.elements == x.elements,
                                   "shape mismatch"));
    const int64_t top_k = weights.elements / tokens;
    MoEActivation activation = MoEActivation::kSilu;
    switch (inst_->attrs_as_ExpertsAttrs()->activation()) {
      case plan::Activation::Silu: activation = MoEActivation::kSilu; break;
      case plan::Activation::Gelu: activation = MoEActivation::kGelu; break;
      case plan::Activation::GeluTanh: activation = MoEActivation::kGeluTanh; break;
    }
    const MoEExpertsPlan plan = PlanMoEExperts(tokens, top_k, experts, hidden, inter);
    void* workspace = nullptr;
    if (plan.workspace_bytes > 0) {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, plan.workspace_bytes));
      scratch_.push_back(workspace);
    }
    const bf16 *xp = x.b(), *gp = gate.b(), *upp = up.b(), *dp = down.b();
    const float* wp = static_cast<const float*>(weights.data);
    const int32_t* ip = static_cast<const int32_t*>(indices.data);
    bf16* op = out.b();
    return Step([=](cudaStream_t s) {
      return LaunchMoEExperts(xp, tokens, wp, ip, gp, upp, dp, activation, plan, workspace, op,
                              s);
    });
  }

  // DeepSeek MLA over the latent cache: mla.cuh's split-K kernel for DeepSeek's dims (rank
  // 512, rope 64, nope <= 256), the reference kernel for any other (tiny test models).
  absl::StatusOr<Step> MlaAttention() {
    Buffer &q_nope = In(0), &q_rope = In(1), &latent = In(2), &key_rope = In(3),
           &kv_b = In(4), &positions = In(5), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&q_nope, &q_rope, &latent, &key_rope, &kv_b, &out}));
    TESSEL_RETURN_IF_ERROR(Require(positions.is_int && q_nope.rank() == 4 &&
                                       q_rope.rank() == 4 && latent.rank() >= 3 &&
                                       key_rope.rank() >= 3 && out.rank() >= 1,
                                   "needs [B, S, H, d] queries and [B, L, ...] latent and "
                                   "key_rope"));
    const int64_t batch = q_nope.dim(0), seq = q_nope.dim(1), heads = q_nope.dim(2);
    const int64_t nope = q_nope.dim(3), rope = q_rope.dim(3);
    const int64_t kv_len = latent.dim(1), rank = latent.dim(-1), v_dim = out.dim(-1);
    TESSEL_RETURN_IF_ERROR(Require(
        q_rope.dim(0) == batch && q_rope.dim(1) == seq && q_rope.dim(2) == heads &&
            latent.dim(0) == batch && latent.elements == batch * kv_len * rank &&
            key_rope.dim(0) == batch && key_rope.dim(1) == kv_len &&
            key_rope.elements == batch * kv_len * rope &&
            kv_b.elements == heads * (nope + v_dim) * rank &&
            positions.elements == batch * seq && out.elements == batch * seq * heads * v_dim,
        "shape mismatch"));
    const AttentionKernelParams params = AttentionParamsOf(*inst_->attrs_as_AttentionAttrs());
    const bf16 *qn = q_nope.b(), *qr = q_rope.b(), *lat = latent.b(), *kr = key_rope.b(),
               *kvb = kv_b.b();
    const int32_t* pos = static_cast<const int32_t*>(positions.data);
    bf16* o = out.b();
    if (rank == 512 && rope == 64 && nope <= 256) {
      const MLAAttentionPlan plan = PlanMLAAttention(batch, seq, heads, kv_len);
      void* workspace = nullptr;
      if (plan.workspace_bytes > 0) {
        TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, plan.workspace_bytes));
        scratch_.push_back(workspace);
      }
      return Step([=](cudaStream_t s) {
        return LaunchMLAAttention(qn, qr, lat, kr, kvb, pos, batch, seq, heads, kv_len, nope,
                                  rope, rank, v_dim, params, plan, workspace, o, s);
      });
    }
    return Step([=](cudaStream_t s) {
      return LaunchMlaReference(qn, qr, lat, kr, kvb, pos, batch, seq, heads, kv_len, nope, rope,
                                rank, v_dim, params, o, s);
    });
  }

  absl::StatusOr<Step> Embedding() {
    Buffer &ids = In(0), &table = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(Require(ids.is_int && table.rank() == 2, "needs i32 ids and a 2-D table"));
    TESSEL_RETURN_IF_ERROR(RequireBf16({&out}));
    const int64_t vocab = table.dim(0), hidden = table.dim(1), tokens = ids.elements;
    TESSEL_RETURN_IF_ERROR(Require(out.elements == tokens * hidden, "output size mismatch"));
    const int32_t* id = static_cast<const int32_t*>(ids.data);
    const void* t = table.data;
    bf16* o = out.b();
    return Step([=](cudaStream_t s) {
      return LaunchEmbedding(id, tokens, t, DType::kBF16, vocab, hidden, o, nullptr, s);
    });
  }

  absl::StatusOr<Step> RmsNorm() {
    Buffer &x = In(0), &weight = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &weight, &out}));
    TESSEL_RETURN_IF_ERROR(Require(x.rank() >= 1 && x.dim(-1) > 0, "needs [..., dim] input"));
    const int64_t dim = x.dim(-1), rows = x.elements / dim;
    TESSEL_RETURN_IF_ERROR(
        Require(weight.elements == dim && out.elements == x.elements, "size mismatch"));
    const float eps = static_cast<float>(inst_->attrs_as_NormAttrs()->epsilon());
    const bf16 *xp = x.b(), *wp = weight.b();
    bf16* op = out.b();
    return Step([=](cudaStream_t s) { return LaunchRmsNorm(xp, wp, rows, dim, eps, op, s); });
  }

  absl::StatusOr<Step> Matmul(int operands) {
    Buffer &x = In(0), &weight = In(1), &out = Out();
    const Buffer* bias = operands > 2 ? &In(2) : nullptr;
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &weight}));
    if (inst_->attrs_as_MatmulAttrs()->layout() != plan::WeightLayout::OutIn) {
      return absl::UnimplementedError(
          absl::StrCat(where_, ": in x out weight layouts are not supported on the GPU yet"));
    }
    TESSEL_RETURN_IF_ERROR(Require(weight.rank() == 2, "needs a 2-D weight"));
    const int64_t n_out = weight.dim(0), k = weight.dim(1);
    TESSEL_RETURN_IF_ERROR(
        Require(x.rank() >= 1 && x.dim(-1) == k, "input features do not match the weight"));
    const int64_t rows = x.elements / k;
    TESSEL_RETURN_IF_ERROR(Require(
        out.elements == rows * n_out && (!bias || bias->elements == n_out), "size mismatch"));
    if (bias != nullptr && out.f32) {
      return absl::UnimplementedError(
          absl::StrCat(where_, ": a biased projection into f32 logits is not supported yet"));
    }
    const GemmOutput output = out.f32 ? GemmOutput::kF32 : GemmOutput::kBF16;
    CublasLtGemm* gemm = gemm_;
    const void *a = x.data, *w = weight.data, *b = bias ? bias->data : nullptr;
    void* c = out.data;
    return Step([=](cudaStream_t s) { return gemm->Run(a, w, b, c, rows, n_out, k, output, s); });
  }

  absl::StatusOr<Step> Binary(ElementwiseOp op) {
    Buffer &a = In(0), &b = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&a, &b, &out}));
    if (!(a.elements == b.elements && a.elements == out.elements)) {
      return absl::UnimplementedError(
          absl::StrCat(where_, ": broadcasting is not supported on the GPU yet"));
    }
    const void *ap = a.data, *bp = b.data;
    void* o = out.data;
    const int64_t n = a.elements;
    return Step([=](cudaStream_t s) { return LaunchBinary(op, DType::kBF16, ap, bp, n, o, s); });
  }

  absl::StatusOr<Step> Silu() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &out}));
    TESSEL_RETURN_IF_ERROR(Require(out.elements == x.elements, "size mismatch"));
    const bf16* xp = x.b();
    bf16* o = out.b();
    const int64_t n = x.elements;
    return Step([=](cudaStream_t s) { return LaunchSilu(xp, n, o, s); });
  }

  absl::StatusOr<Step> SwiGlu(const Buffer& gate, const Buffer& up, const Buffer& out) {
    TESSEL_RETURN_IF_ERROR(RequireBf16({&gate, &up, &out}));
    TESSEL_RETURN_IF_ERROR(Require(gate.rank() >= 1 && gate.elements == up.elements &&
                                       out.elements == gate.elements,
                                   "SiLU and Mul sizes differ"));
    const int64_t cols = gate.dim(-1), rows = gate.elements / cols;
    const bf16 *g = gate.b(), *u = up.b();
    bf16* o = out.b();
    return Step([=](cudaStream_t s) { return LaunchSwiGlu(g, u, cols, rows, cols, o, s); });
  }

  absl::StatusOr<Step> Scale() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(Require(out.elements == x.elements && !x.is_int &&
                                       x.f32 == out.f32,
                                   "size or type mismatch"));
    const double factor = inst_->attrs_as_ScaleAttrs()->factor();
    const DType type = x.f32 ? DType::kF32 : DType::kBF16;
    const void* xp = x.data;
    void* o = out.data;
    const int64_t n = x.elements;
    return Step([=](cudaStream_t s) { return LaunchScale(type, xp, factor, n, o, s); });
  }

  absl::StatusOr<Step> Cast() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(Require(out.elements == x.elements, "size mismatch"));
    if (x.is_int || out.is_int) {
      if (x.is_int && out.is_int) return Copy();
      return absl::UnimplementedError(
          absl::StrCat(where_, ": integer <-> float casts are not supported on the GPU yet"));
    }
    const void* xp = x.data;
    void* o = out.data;
    const int64_t n = x.elements;
    if (x.f32 == out.f32) return Copy();
    if (out.f32) {
      return Step([=](cudaStream_t s) {
        return LaunchCastBf16ToF32(static_cast<const bf16*>(xp), n, static_cast<float*>(o), s);
      });
    }
    return Step([=](cudaStream_t s) {
      return LaunchCastF32ToBf16(static_cast<const float*>(xp), n, static_cast<bf16*>(o), s);
    });
  }

  absl::StatusOr<Step> Copy() {
    Buffer &x = In(0), &out = Out();
    TESSEL_RETURN_IF_ERROR(Require(out.elements == x.elements &&
                                       x.element_bytes() == out.element_bytes(),
                                   "size or type mismatch"));
    const void* xp = x.data;
    void* o = out.data;
    const size_t bytes = static_cast<size_t>(x.elements) * x.element_bytes();
    return Step([=](cudaStream_t s) -> absl::Status {
      if (xp != o) TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(o, xp, bytes, cudaMemcpyDeviceToDevice, s));
      return absl::OkStatus();
    });
  }

  absl::Status Split(const Buffer& x, int64_t dim, int* axis, int64_t* outer,
                     int64_t* inner) const {
    const int64_t d = dim < 0 ? dim + x.rank() : dim;
    if (d < 0 || d >= x.rank()) return Error(absl::StrCat("has dim ", dim, " outside the rank"));
    *axis = static_cast<int>(d);
    *outer = Product(x.shape, 0, *axis);
    *inner = Product(x.shape, *axis + 1, x.rank());
    return absl::OkStatus();
  }

  absl::StatusOr<Step> Slice() {
    Buffer &x = In(0), &out = Out();
    const plan::SliceAttrs& attrs = *inst_->attrs_as_SliceAttrs();
    int axis;
    int64_t outer, inner;
    TESSEL_RETURN_IF_ERROR(Split(x, attrs.dim(), &axis, &outer, &inner));
    const int64_t dim = x.shape[axis], start = attrs.start(), size = attrs.size();
    TESSEL_RETURN_IF_ERROR(Require(start >= 0 && size >= 0 && start + size <= dim &&
                                       out.elements == outer * size * inner &&
                                       x.element_bytes() == out.element_bytes(),
                                   "bad slice"));
    const void* xp = x.data;
    void* o = out.data;
    const int bytes = x.element_bytes();
    return Step([=](cudaStream_t s) {
      return LaunchStridedCopy(xp, outer, dim, start, size, inner, size, 0, bytes, o, s);
    });
  }

  absl::StatusOr<Step> Concat(int operands) {
    Buffer& out = Out();
    int axis;
    int64_t outer, inner;
    TESSEL_RETURN_IF_ERROR(
        Split(In(0), inst_->attrs_as_ConcatAttrs()->dim(), &axis, &outer, &inner));
    std::vector<std::pair<const void*, int64_t>> parts;
    int64_t out_dim = 0;
    for (int i = 0; i < operands; ++i) {
      TESSEL_RETURN_IF_ERROR(Require(In(i).rank() == In(0).rank() &&
                                         In(i).element_bytes() == out.element_bytes(),
                                     "operands differ"));
      parts.emplace_back(In(i).data, In(i).shape[axis]);
      out_dim += In(i).shape[axis];
    }
    TESSEL_RETURN_IF_ERROR(Require(out.elements == outer * out_dim * inner, "size mismatch"));
    void* o = out.data;
    const int bytes = out.element_bytes();
    return Step([=](cudaStream_t s) -> absl::Status {
      int64_t offset = 0;
      for (const auto& [p, dim] : parts) {
        TESSEL_RETURN_IF_ERROR(
            LaunchStridedCopy(p, outer, dim, 0, dim, inner, out_dim, offset, bytes, o, s));
        offset += dim;
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<Step> Rope() {
    Buffer &x = In(0), &positions = In(1), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&x, &out}));
    TESSEL_RETURN_IF_ERROR(Require(positions.is_int && x.rank() >= 2, "needs [..., heads, dim]"));
    const int64_t heads = x.dim(-2), head_dim = x.dim(-1);
    const int64_t tokens = x.elements / (heads * head_dim);
    const plan::RopeAttrs& attrs = *inst_->attrs_as_RopeAttrs();
    cpu::RopeParams params = cpu::RopeParamsFromPlan(attrs, head_dim);
    TESSEL_RETURN_IF_ERROR(Require(params.rotary_dim <= head_dim && params.rotary_dim % 2 == 0 &&
                                       positions.elements == tokens &&
                                       out.elements == x.elements,
                                   "size mismatch"));
    void* table = nullptr;
    TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&table, sizeof(float) * (params.rotary_dim / 2 + 1)));
    scratch_.push_back(table);
    TESSEL_RETURN_IF_ERROR(
        UploadRopeInverseFrequencies(params, capacity_, static_cast<float*>(table)));
    if (params.scaling == cpu::RopeScalingKind::kDynamic) {
      dynamic_rope_.emplace_back(params, static_cast<float*>(table));
    }
    const RopeKernelParams kernel = MakeRopeKernelParams(params);
    const bf16* xp = x.b();
    const int32_t* pos = static_cast<const int32_t*>(positions.data);
    bf16* o = out.b();
    const float* inv = static_cast<const float*>(table);
    return Step([=](cudaStream_t s) {
      return LaunchRope(xp, pos, tokens, heads, head_dim, inv, kernel, o, s);
    });
  }

  absl::StatusOr<Step> CacheWrite() {
    Buffer &update = In(0), &positions = In(1), &cache = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&update, &cache}));
    TESSEL_RETURN_IF_ERROR(Require(positions.is_int && cache.rank() >= 2, "needs a cache"));
    const int64_t batch = cache.dim(0), capacity = cache.dim(1);
    const int64_t row = cache.elements / (batch * capacity);
    TESSEL_RETURN_IF_ERROR(Require(positions.elements % batch == 0, "positions do not split"));
    const int64_t seq = positions.elements / batch;
    TESSEL_RETURN_IF_ERROR(Require(update.elements == batch * seq * row, "update size mismatch"));
    const bf16* u = update.b();
    const int32_t* pos = static_cast<const int32_t*>(positions.data);
    bf16* c = cache.b();
    return Step([=](cudaStream_t s) {
      return LaunchKvCacheWrite(u, pos, batch, seq, row, c, capacity, s);
    });
  }

  // RoPE and the KV-cache write fused into decode attention (TryRopeAndCacheWrite): q_raw
  // is the unrotated q the attention's kernel reads instead of its q operand.
  struct FusedRope {
    const bf16* q_raw = nullptr;
    AttentionDecodeRope rope;
    L2PrefetchFork prefetch;  // issued before the launch
  };

  absl::StatusOr<Step> Attention(const FusedRope* fused = nullptr) {
    Buffer &q = In(0), &k = In(1), &v = In(2), &positions = In(3), &out = Out();
    TESSEL_RETURN_IF_ERROR(RequireBf16({&q, &k, &v, &out}));
    TESSEL_RETURN_IF_ERROR(Require(positions.is_int && q.rank() == 4 && k.rank() == 4 &&
                                       v.rank() == 4,
                                   "needs [batch, seq, heads, dim] q, k and v"));
    const int64_t batch = q.dim(0), seq = q.dim(1), heads = q.dim(2), dim = q.dim(3);
    const int64_t kv_len = k.dim(1), kv_heads = k.dim(2);
    TESSEL_RETURN_IF_ERROR(Require(
        k.dim(0) == batch && v.dim(0) == batch && v.dim(1) == kv_len && v.dim(2) == kv_heads &&
            k.dim(3) == dim && v.dim(3) == dim && kv_heads > 0 && heads % kv_heads == 0 &&
            positions.elements == batch * seq && out.elements == batch * seq * heads * dim,
        "shape mismatch (the GPU needs v_dim == head_dim)"));
    const AttentionKernelParams params = AttentionParamsOf(*inst_->attrs_as_AttentionAttrs());
    const bf16 *qp = q.b(), *kp = k.b(), *vp = v.b();
    const int32_t* pos = static_cast<const int32_t*>(positions.data);
    bf16* o = out.b();
    if (!FlashHeadDim(dim)) {
      return Step([=](cudaStream_t s) {
        return LaunchAttentionReference(qp, kp, vp, pos, batch, seq, heads, kv_len, kv_heads,
                                        dim, params, o, s);
      });
    }
    if (seq == 1) {
      const int64_t visible = params.sliding_window > 0
                                  ? std::min<int64_t>(kv_len, params.sliding_window)
                                  : kv_len;
      const AttentionDecodeSplit split =
          PlanAttentionDecode(batch, heads, kv_heads, dim, visible);
      void* workspace = nullptr;
      if (split.workspace_bytes > 0) {
        TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, split.workspace_bytes));
        scratch_.push_back(workspace);
        // Self-resetting split counters: zeroed once, here (attention_decode.cuh).
        TESSEL_CUDA_RETURN_IF_ERROR(cudaMemset(workspace, 0, split.workspace_bytes));
      }
      // Positions that are the step's input were copied in before its first kernel: the
      // kernel may read them (and the older cache rows) before waiting on RoPE.
      uint32_t pos_value = inst_->operands()->Get(3);
      while (entry_.values()->Get(pos_value)->kind() == ValueKind::View) {
        pos_value = entry_.values()->Get(pos_value)->base();
      }
      const bool settled = entry_.values()->Get(pos_value)->kind() == ValueKind::Input;
      const bool next_smem = NextProjectionInSharedMemory(at_);
      if (fused != nullptr) {
        const FusedRope f = *fused;
        return Step([=](cudaStream_t s) -> absl::Status {
          TESSEL_RETURN_IF_ERROR(f.prefetch.Issue(s));
          return LaunchAttentionDecode(f.q_raw, kp, vp, pos, batch, heads, kv_len, kv_heads,
                                       dim, params, split, workspace, o, s, settled, f.rope,
                                       next_smem);
        });
      }
      return Step([=](cudaStream_t s) {
        return LaunchAttentionDecode(qp, kp, vp, pos, batch, heads, kv_len, kv_heads, dim,
                                     params, split, workspace, o, s, settled, {}, next_smem);
      });
    }
    return Step([=](cudaStream_t s) {
      return LaunchAttentionPrefill(qp, kp, vp, pos, batch, seq, heads, kv_len, kv_heads, dim,
                                    params, o, s);
    });
  }

  const plan::EntryPoint& entry_;
  std::vector<Buffer>& buffers_;
  CublasLtGemm* gemm_;
  std::vector<void*>& scratch_;
  std::vector<std::pair<cpu::RopeParams, float*>>& dynamic_rope_;
  int64_t capacity_;
  int64_t tokens_;
  const std::vector<int>& uses_;
  const GeneratedKernels* generated_;
  SideBranch& side_;
  const plan::Instruction* inst_ = nullptr;
  uint32_t at_ = 0;  // inst_'s index
  std::string where_;
};

// Ops the executor runs; anything else is reported at load.
absl::Status CheckSupported(const plan::Plan& plan) {
  for (const plan::EntryPoint* entry : *plan.entry_points()) {
    for (const plan::Instruction* inst : *entry->instructions()) {
      switch (inst->op()) {
        case OpCode::Embedding: case OpCode::RMSNorm: case OpCode::Matmul: case OpCode::Add:
        case OpCode::Mul: case OpCode::Silu: case OpCode::Scale: case OpCode::Cast:
        case OpCode::Copy: case OpCode::Slice: case OpCode::Concat: case OpCode::Rope:
        case OpCode::KVCacheWrite: case OpCode::Attention: case OpCode::Fused:
          break;
        case OpCode::MoERouter:
        case OpCode::MoEExperts:
        case OpCode::MLAAttention:
          break;
        default:
          return absl::UnimplementedError(absl::StrCat(
              "plan uses op ", plan::EnumNameOpCode(inst->op()),
              ", which the CUDA executor does not run yet (llama/mistral/qwen2/mixtral/deepseek "
              "plans only)"));
      }
    }
  }
  return absl::OkStatus();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// --- CudaModel ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Load(const std::string& dir,
                                                           const LoadOptions& load_options,
                                                           const CudaModelOptions& options) {
  if (!options.dummy_weights) {
    TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact, LoadArtifact(dir, load_options));
    return Create(std::move(artifact), options);
  }
  // Dummy weights: read and verify the plan, stand in for each weight file with a reserved
  // (PROT_NONE) address range as long as the file would be, so the extent checks still run
  // while nothing is read.
  const std::string path = dir + "/plan.tsl";
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                             std::istreambuf_iterator<char>());
  TESSEL_RETURN_IF_ERROR(VerifyPlan(bytes, path));
  const plan::Plan* plan = plan::GetPlan(bytes.data());
  const uint32_t files = plan->weight_files() ? plan->weight_files()->size() : 0;
  std::vector<uint64_t> extent(files, 0);
  if (plan->weights() != nullptr) {
    for (const plan::Weight* w : *plan->weights()) {
      if (w->file() < files) extent[w->file()] = std::max(extent[w->file()], w->offset() + w->size());
    }
  }
  const uint64_t reserve = std::max<uint64_t>(
      4096, extent.empty() ? 0 : *std::max_element(extent.begin(), extent.end()));
  void* range = mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
  if (range == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve ", reserve, " bytes of address space for dummy weights"));
  }
  std::vector<std::unique_ptr<MappedFile>> mapped;
  for (uint32_t f = 0; f < files; ++f) {
    mapped.push_back(MappedFile::FromBytes({static_cast<const uint8_t*>(range), extent[f]},
                                           "<dummy weights>"));
  }
  LoadOptions no_checksums = load_options;
  no_checksums.verify_checksums = false;
  absl::StatusOr<std::unique_ptr<Artifact>> artifact =
      Artifact::FromParts(dir, std::move(bytes), std::move(mapped), no_checksums);
  if (!artifact.ok()) {
    munmap(range, reserve);
    return artifact.status();
  }
  absl::StatusOr<std::unique_ptr<CudaModel>> model = Create(std::move(*artifact), options);
  if (!model.ok()) {
    munmap(range, reserve);
    return model.status();
  }
  (*model)->reservation_ = range;
  (*model)->reservation_bytes_ = reserve;
  return model;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Create(std::unique_ptr<Artifact> artifact,
                                                             const CudaModelOptions& options) {
  if (artifact == nullptr) return absl::InvalidArgumentError("CudaModel::Create: no artifact");
  const plan::Plan& plan = artifact->plan();
  if (plan.ranks() != 1) {
    return absl::UnimplementedError(absl::StrCat(
        "the plan is sharded over ", plan.ranks(),
        " ranks; the CUDA executor runs single-rank plans so far (compile with --gpus 1)"));
  }
  if (artifact->FindEntryPoint("prefill") == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("the plan in '", artifact->dir(), "' has no \"prefill\" entry point"));
  }
  TESSEL_RETURN_IF_ERROR(CheckSupported(plan));
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError("no CUDA device is available; use device cpu");
  }
  if (options.device < 0 || options.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", devices, " found)"));
  }
  TESSEL_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  std::unique_ptr<CudaModel> model(new CudaModel());
  TESSEL_ASSIGN_OR_RETURN(model->generated_kernels_, GeneratedKernels::Load(plan, options.device));
  model->options_ = options;
  model->device_ = options.device;
  model->max_context_ = plan.model()->max_context();
  if (plan.kv_cache() != nullptr) {
    for (const plan::CacheSlot* slot : *plan.kv_cache())
      model->max_context_ = std::min<int64_t>(model->max_context_, slot->shape()->Get(0));
  }
  model->artifact_ = std::move(artifact);

  // One allocation for every weight, each at a 256-byte boundary (cuBLASLt and vector loads).
  const uint32_t count = plan.weights() ? plan.weights()->size() : 0;
  std::vector<uint64_t> offsets(count);
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    offsets[i] = total;
    total += AlignUp(static_cast<uint64_t>(model->artifact_->WeightElements(i)) * 2, 256);
  }
  model->weight_bytes_ = total;
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&model->weight_memory_, std::max<uint64_t>(total, 256)));
  model->weights_.resize(count);
  for (uint32_t i = 0; i < count; ++i)
    model->weights_[i] = static_cast<uint8_t*>(model->weight_memory_) + offsets[i];

  const auto start = std::chrono::steady_clock::now();
  TESSEL_RETURN_IF_ERROR(options.dummy_weights ? model->FillDummy(options.dummy_seed)
                                               : model->Upload());
  model->load_seconds_ = SecondsSince(start);
  return model;
}

CudaModel::~CudaModel() {
  if (weight_memory_ != nullptr) cudaFree(weight_memory_);
  if (reservation_ != nullptr) munmap(reservation_, reservation_bytes_);
}

absl::Status CudaModel::FillDummy(uint64_t seed) {
  const plan::Plan& plan = artifact_->plan();
  for (uint32_t i = 0; i < weights_.size(); ++i) {
    const plan::Weight* w = plan.weights()->Get(i);
    const std::string name = w->name() ? w->name()->str() : "";
    // Norm gains around 1 keep activations at their trained scale; everything else (embedding,
    // projections, biases) N(0, 0.02), the initializer_range of the Llama family.
    const bool norm = w->shape()->size() == 1 && name.find("norm") != std::string::npos;
    TESSEL_RETURN_IF_ERROR(LaunchFillNormalBf16(static_cast<bf16*>(weights_[i]),
                                                artifact_->WeightElements(i), seed + i,
                                                norm ? 1.0f : 0.0f, 0.02f, nullptr));
  }
  TESSEL_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return absl::OkStatus();
}

// mmap -> bf16 in one of two pinned staging buffers (host conversion) -> device on a copy
// stream: the host converts chunk i + 1 while the copy engine moves chunk i.
absl::Status CudaModel::Upload() {
  const plan::Plan& plan = artifact_->plan();
  const uint64_t chunk_elements = std::max<uint64_t>(options_.staging_bytes / 2, 4096);
  cudaStream_t copy = nullptr;
  void* staging[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  bool recorded[2] = {false, false};
  absl::Status status = [&]() -> absl::Status {
    TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    for (int s = 0; s < 2; ++s) {
      TESSEL_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&staging[s], chunk_elements * 2, cudaHostAllocDefault));
      TESSEL_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&done[s], cudaEventDisableTiming));
    }
    int slot = 0;
    std::vector<float> widened;
    for (uint32_t i = 0; i < weights_.size(); ++i) {
      const plan::Weight* w = plan.weights()->Get(i);
      const uint64_t elements = static_cast<uint64_t>(artifact_->WeightElements(i));
      const std::span<const uint8_t> bytes = artifact_->WeightBytes(i);
      const plan::DType type = w->dtype();
      const bool direct = type == plan::DType::BF16 || type == plan::DType::F32 ||
                          type == plan::DType::F16;
      if (direct) {
        TESSEL_RETURN_IF_ERROR(artifact_->VerifyWeightChecksum(i));
      } else {
        // Block-quantized (Q8_0, Q4_0) and anything else the loader can widen: dequantized on
        // the host, then rounded to bf16 like the rest.
        widened.resize(elements);
        TESSEL_RETURN_IF_ERROR(artifact_->ReadWeightF32(i, widened));
      }
      for (uint64_t begin = 0; begin < elements; begin += chunk_elements) {
        const uint64_t n = std::min(chunk_elements, elements - begin);
        if (recorded[slot]) TESSEL_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done[slot]));
        uint16_t* dst = static_cast<uint16_t*>(staging[slot]);
        if (!direct) {
          for (uint64_t e = 0; e < n; ++e) dst[e] = FloatToBf16(widened[begin + e]);
        } else if (type == plan::DType::BF16) {
          std::memcpy(dst, bytes.data() + begin * 2, n * 2);
        } else if (type == plan::DType::F32) {
          const uint8_t* src = bytes.data() + begin * 4;
          for (uint64_t e = 0; e < n; ++e) {
            float v;
            std::memcpy(&v, src + e * 4, 4);
            dst[e] = FloatToBf16(v);
          }
        } else {
          const uint8_t* src = bytes.data() + begin * 2;
          for (uint64_t e = 0; e < n; ++e) {
            uint16_t h;
            std::memcpy(&h, src + e * 2, 2);
            dst[e] = FloatToBf16(HalfToFloat(h));
          }
        }
        TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<uint8_t*>(weights_[i]) + begin * 2,
                                                    dst, n * 2, cudaMemcpyHostToDevice, copy));
        TESSEL_CUDA_RETURN_IF_ERROR(cudaEventRecord(done[slot], copy));
        recorded[slot] = true;
        slot ^= 1;
      }
    }
    TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy));
    return absl::OkStatus();
  }();
  if (copy != nullptr) cudaStreamSynchronize(copy);
  for (int s = 0; s < 2; ++s) {
    if (done[s] != nullptr) cudaEventDestroy(done[s]);
    if (staging[s] != nullptr) cudaFreeHost(staging[s]);
  }
  if (copy != nullptr) cudaStreamDestroy(copy);
  return status;
}

// --- CudaSession ----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<CudaSession>> CudaSession::Create(
    std::shared_ptr<const CudaModel> model, const CudaSessionOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("CudaSession::Create: no model");
  if (options.max_batch < 1 || options.max_batch > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch is ", options.max_batch, ", expected 1..1024"));
  }
  TESSEL_CUDA_RETURN_IF_ERROR(cudaSetDevice(model->device()));
  std::unique_ptr<CudaSession> session(new CudaSession());
  session->options_ = options;
  session->capacity_ = options.max_context > 0
                           ? std::min(options.max_context, model->max_context())
                           : model->max_context();
  session->cache_batch_ = BatchBucket(options.max_batch);
  const Artifact& artifact = model->artifact();
  session->prefill_ = artifact.FindEntryPoint("prefill");
  session->decode_ = artifact.FindEntryPoint("decode");
  if (session->decode_ != nullptr && session->decode_->seq_len() != 1 &&
      session->decode_->seq_len() != -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the plan's \"decode\" entry point takes ", session->decode_->seq_len(), " tokens, not 1"));
  }
  TESSEL_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&session->stream_, cudaStreamNonBlocking));
  TESSEL_ASSIGN_OR_RETURN(session->gemm_, CublasLtGemm::Create());
  const plan::Plan& plan = artifact.plan();
  if (plan.kv_cache() != nullptr) {
    for (uint32_t i = 0; i < plan.kv_cache()->size(); ++i) {
      const auto& shape = *plan.kv_cache()->Get(i)->shape();
      uint64_t elements = static_cast<uint64_t>(session->cache_batch_ * session->capacity_);
      for (uint32_t d = 1; d < shape.size(); ++d) elements *= static_cast<uint64_t>(shape.Get(d));
      void* cache = nullptr;
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&cache, std::max<uint64_t>(elements * 2, 256)));
      session->caches_.push_back(cache);
      TESSEL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(cache, 0, elements * 2, session->stream_));
    }
  }
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&session->device_argmax_, sizeof(int32_t) * 1024));
  TESSEL_CUDA_RETURN_IF_ERROR(
      cudaHostAlloc(&session->host_tokens_, sizeof(int32_t) * 1024, cudaHostAllocDefault));
  session->model_ = std::move(model);
  return session;
}

CudaSession::~CudaSession() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  bound_.clear();
  gemm_.reset();
  for (void* cache : caches_) cudaFree(cache);
  if (device_argmax_ != nullptr) cudaFree(device_argmax_);
  if (host_tokens_ != nullptr) cudaFreeHost(host_tokens_);
  if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaSession::Reset() {
  position_ = 0;
  logits_rows_ = 0;
  last_ = nullptr;
  host_logits_valid_ = false;
}

absl::StatusOr<CudaSession::Bound*> CudaSession::GetBound(const plan::EntryPoint& entry,
                                                          int64_t batch, int64_t seq) {
  auto key = std::make_tuple(&entry, batch, seq);
  auto it = bound_.find(key);
  if (it != bound_.end()) return it->second.get();
  auto bound = std::make_unique<Bound>();
  TESSEL_RETURN_IF_ERROR(Bind(entry, batch, seq, *bound));
  Bound* result = bound.get();
  // Prefill shapes vary with the prompt: keep at most a few prefill bindings.
  if (seq > 1) {
    int prefills = 0;
    for (auto i = bound_.begin(); i != bound_.end();) {
      if (std::get<2>(i->first) > 1 && ++prefills >= 4 && i->second.get() != last_) {
        i = bound_.erase(i);
      } else {
        ++i;
      }
    }
  }
  bound_.emplace(key, std::move(bound));
  return result;
}

absl::Status CudaSession::Bind(const plan::EntryPoint& entry, int64_t batch, int64_t seq,
                               Bound& bound) {
  const std::string where = absl::StrCat("entry point '", entry.name()->str(), "'");
  const int64_t tokens = batch * seq;
  bound.batch = batch;
  bound.seq = seq;
  const uint64_t arena_bytes = std::max<uint64_t>(entry.arena_bytes_per_token() * tokens, 256);
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&bound.arena, arena_bytes));
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&bound.inputs, sizeof(int32_t) * 2 * tokens));

  const auto& values = *entry.values();
  const uint32_t count = values.size();
  // f32 storage: the logits (the first result) and the values it views.
  std::vector<uint8_t> f32(count, 0);
  for (uint32_t id = entry.outputs()->Get(0);;) {
    if (values.Get(id)->dtype() == plan::DType::F32) f32[id] = 1;
    if (values.Get(id)->kind() != ValueKind::View) break;
    id = values.Get(id)->base();
  }
  // f32 storage also for MoE routing weights (the experts read them in f32).
  for (const plan::Instruction* inst : *entry.instructions()) {
    if (inst->op() == OpCode::MoERouter && inst->results()->size() >= 1) {
      f32[inst->results()->Get(0)] = 1;
    }
  }
  bound.buffers.assign(count, Buffer());
  std::vector<uint8_t> resolved(count, 0);
  const auto resolve = [&](uint32_t id) -> absl::Status {
    const plan::Value& value = *values.Get(id);
    Buffer& buffer = bound.buffers[id];
    buffer.is_int = value.dtype() == plan::DType::I32;
    buffer.f32 = f32[id] != 0;
    const std::string what = absl::StrCat(where, " value #", id);
    int64_t elements = 1;
    for (uint32_t d = 0; d < value.shape()->size(); ++d) {
      int64_t dim = value.shape()->Get(d);
      if (dim == plan_format::kBatch) dim = batch;
      if (dim == plan_format::kSeq) dim = seq;
      if (value.kind() == ValueKind::Cache && d == 1) dim = capacity_;
      elements *= dim;
      buffer.shape.push_back(dim);
    }
    buffer.elements = elements;
    if (!buffer.is_int && value.dtype() != plan::DType::F32 && value.dtype() != plan::DType::BF16 &&
        value.dtype() != plan::DType::F16 && value.kind() != ValueKind::Weight) {
      return absl::UnimplementedError(absl::StrCat(
          what, " has dtype ", plan::EnumNameDType(value.dtype()), ", not supported on the GPU"));
    }
    switch (value.kind()) {
      case ValueKind::Arena: {
        const uint64_t needed = static_cast<uint64_t>(elements) * buffer.element_bytes();
        const uint64_t size = value.bytes_per_token() * tokens;
        if (needed > size) {
          return absl::InvalidArgumentError(absl::StrCat(
              what, " of shape ", ShapeString(buffer.shape), " needs ", needed,
              " bytes but its arena slot holds ", size));
        }
        buffer.data = static_cast<uint8_t*>(bound.arena) + value.arena_offset() * tokens;
        break;
      }
      case ValueKind::Weight:
        buffer.is_int = false;
        buffer.f32 = false;
        buffer.data = const_cast<void*>(model_->weight(value.weight()));
        break;
      case ValueKind::Input:
        if (elements != tokens) {
          return absl::InvalidArgumentError(absl::StrCat(what, " (an input) has shape ",
                                                         ShapeString(buffer.shape)));
        }
        buffer.data = bound.inputs + (value.input() == 0 ? 0 : tokens);
        break;
      case ValueKind::Cache:
        buffer.data = caches_[value.cache()];
        break;
      case ValueKind::View: {
        const Buffer& base = bound.buffers[value.base()];
        if (elements > base.elements) {
          return absl::InvalidArgumentError(
              absl::StrCat(what, " views more elements than its base has"));
        }
        buffer.data = base.data;
        buffer.is_int = base.is_int;
        buffer.f32 = base.f32;
        break;
      }
    }
    resolved[id] = 1;
    return absl::OkStatus();
  };
  TESSEL_RETURN_IF_ERROR(BindValuesBasesFirst(values, resolved, resolve));
  bound.logits_value = entry.outputs()->Get(0);
  const Buffer& logits = bound.buffers[bound.logits_value];
  if (!logits.f32 || logits.elements != tokens * model_->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " returns logits of shape ", ShapeString(logits.shape),
        logits.f32 ? "" : " (not f32)", ", not [", tokens, ", ", model_->vocab_size(), "] f32"));
  }

  // Readers per value (a view's readers count for its base) for fusion decisions.
  std::vector<int> uses(count, 0);
  for (const plan::Instruction* inst : *entry.instructions())
    for (uint32_t id : *inst->operands()) ++uses[id];
  for (uint32_t id : *entry.outputs()) ++uses[id];
  for (uint32_t id = 0; id < count; ++id) {
    if (values.Get(id)->kind() == ValueKind::View) uses[values.Get(id)->base()] += 1 + uses[id];
  }

  StepBuilder builder(entry, bound.buffers, gemm_.get(), bound.scratch, bound.dynamic_rope,
                      capacity_, tokens, uses,
                      model_->generated_kernels_.get(), bound.side);
  for (uint32_t n = 0; n < entry.instructions()->size();) {
    TESSEL_ASSIGN_OR_RETURN(int consumed, builder.Build(n, bound.steps));
    n += consumed;
  }
  return bound.side.Join(bound.steps);
}

absl::Status CudaSession::Run(const plan::EntryPoint& entry, std::span<const int32_t> tokens,
                              int64_t batch, int64_t seq, bool graph) {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to run");
  if (batch < 1 || batch > options_.max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", batch, " sequences; the session holds ",
                                                   options_.max_batch, " (max_batch)"));
  }
  if (static_cast<int64_t>(tokens.size()) != batch * seq) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens.size(), " tokens do not split into ", batch, " sequences"));
  }
  if (seq > capacity_ - position_) {
    return absl::OutOfRangeError(absl::StrCat("context of ", capacity_, " tokens is full: ",
                                              position_, " tokens are in it and ", seq,
                                              " more do not fit"));
  }
  const int64_t vocab = model_->vocab_size();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " (at index ", i,
                                                     ") is outside the vocabulary [0, ", vocab,
                                                     ")"));
    }
  }
  std::lock_guard<std::mutex> lock(model_->run_mutex_);
  TESSEL_CUDA_RETURN_IF_ERROR(cudaSetDevice(model_->device()));
  // Decode runs the bucket's graph; padding sequences compute on token 0 and are ignored.
  const int64_t run_batch = graph ? BatchBucket(batch) : batch;
  TESSEL_ASSIGN_OR_RETURN(Bound * bound, GetBound(entry, run_batch, seq));
  const int64_t run_tokens = run_batch * seq;
  // Pageable staging: cudaMemcpyAsync returns once the bytes are staged, so the vector can go.
  std::vector<int32_t> inputs(2 * run_tokens, 0);
  std::copy(tokens.begin(), tokens.end(), inputs.begin());
  for (int64_t b = 0; b < run_batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      inputs[run_tokens + b * seq + s] = static_cast<int32_t>(position_ + s);
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(bound->inputs, inputs.data(),
                                              sizeof(int32_t) * inputs.size(),
                                              cudaMemcpyHostToDevice, stream_));
  // Dynamic NTK: this call's tables, for seq_len = max(position) + 1 as cpu::Rope computes
  // them (pageable copies: the vectors can go once cudaMemcpyAsync returns).
  for (const auto& [params, table] : bound->dynamic_rope) {
    const std::vector<float> host = cpu::RopeInverseFrequencies(params, position_ + seq);
    TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(table, host.data(), sizeof(float) * host.size(),
                                                cudaMemcpyHostToDevice, stream_));
  }
  if (!graph || !options_.use_graphs || !bound->ran_once) {
    // Plain launches; the first run of a shape also creates cuBLASLt plans outside capture.
    for (const Step& step : bound->steps) TESSEL_RETURN_IF_ERROR(step(stream_));
    bound->ran_once = true;
  } else {
    if (bound->graph == nullptr) {
      cudaGraph_t captured = nullptr;
      TESSEL_CUDA_RETURN_IF_ERROR(
          cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      absl::Status status = absl::OkStatus();
      for (const Step& step : bound->steps) {
        status = step(stream_);
        if (!status.ok()) break;
      }
      const cudaError_t end = cudaStreamEndCapture(stream_, &captured);
      if (!status.ok()) {
        if (captured != nullptr) cudaGraphDestroy(captured);
        return status;
      }
      TESSEL_CUDA_RETURN_IF_ERROR(end);
      const cudaError_t inst = cudaGraphInstantiate(&bound->graph, captured, 0);
      cudaGraphDestroy(captured);
      TESSEL_CUDA_RETURN_IF_ERROR(inst);
    }
    TESSEL_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(bound->graph, stream_));
  }
  position_ += seq;
  last_ = bound;
  last_batch_ = batch;
  logits_rows_ = batch * seq;
  host_logits_valid_ = false;
  return absl::OkStatus();
}

absl::Status CudaSession::PrefillBatch(std::span<const int32_t> tokens, int64_t batch) {
  if (batch < 1) return absl::InvalidArgumentError("batch must be >= 1");
  return Run(*prefill_, tokens, batch, static_cast<int64_t>(tokens.size()) / batch,
             /*graph=*/false);
}

absl::Status CudaSession::DecodeBatch(std::span<const int32_t> tokens) {
  const int64_t batch = static_cast<int64_t>(tokens.size());
  if (decode_ != nullptr) return Run(*decode_, tokens, batch, 1, /*graph=*/true);
  return Run(*prefill_, tokens, batch, 1, /*graph=*/false);
}

absl::Status CudaSession::Synchronize() {
  TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<std::span<const float>> CudaSession::Logits() {
  if (last_ == nullptr || logits_rows_ == 0)
    return absl::FailedPreconditionError("no logits yet");
  const int64_t elements = logits_rows_ * model_->vocab_size();
  if (!host_logits_valid_) {
    if (elements > host_logits_capacity_) {
      if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
      host_logits_ = nullptr;
      host_logits_capacity_ = 0;
      TESSEL_CUDA_RETURN_IF_ERROR(
          cudaHostAlloc(&host_logits_, sizeof(float) * elements, cudaHostAllocDefault));
      host_logits_capacity_ = elements;
    }
    // Rows of the first last_batch_ sequences are the first logits_rows_ rows (padding
    // sequences come after them).
    TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_logits_,
                                                last_->buffers[last_->logits_value].data,
                                                sizeof(float) * elements,
                                                cudaMemcpyDeviceToHost, stream_));
    TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    host_logits_valid_ = true;
  }
  return std::span<const float>(host_logits_, elements);
}

absl::StatusOr<std::vector<int32_t>> CudaSession::GreedyTokens() {
  if (last_ == nullptr || logits_rows_ == 0)
    return absl::FailedPreconditionError("no logits yet");
  const int64_t vocab = model_->vocab_size(), seq = last_->seq, batch = last_batch_;
  if (batch > 1024) return absl::UnimplementedError("greedy tokens for more than 1024 sequences");
  const float* logits = static_cast<const float*>(last_->buffers[last_->logits_value].data);
  if (seq == 1) {
    TESSEL_RETURN_IF_ERROR(LaunchArgmax(logits, batch, vocab, device_argmax_, stream_));
  } else {
    for (int64_t b = 0; b < batch; ++b) {
      TESSEL_RETURN_IF_ERROR(LaunchArgmax(logits + (b * seq + seq - 1) * vocab, 1, vocab,
                                          device_argmax_ + b, stream_));
    }
  }
  TESSEL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_tokens_, device_argmax_,
                                              sizeof(int32_t) * batch, cudaMemcpyDeviceToHost,
                                              stream_));
  TESSEL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return std::vector<int32_t>(host_tokens_, host_tokens_ + batch);
}

}  // namespace tessel::cuda
