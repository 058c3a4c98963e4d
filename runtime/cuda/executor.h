// The CUDA plan executor: runs a verified plan's entry points in bf16 on one GPU.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// A CudaModel owns the weights on the device, all bf16 (bf16 copied, f32/f16 rounded on the
// host, GGUF Q8_0/Q4_0 dequantized on the host), uploaded from the mapped files through two
// pinned staging buffers on a copy stream so that converting one chunk overlaps copying the
// previous one. With `dummy_weights` no weights file is read: every weight is filled on the
// device with seeded normal values (std 0.02; norm weights around 1), for benchmarks of
// real-size models from artifacts compiled with `tessel-compile --weights=none`.
//
// A CudaSession owns bf16 KV caches for `max_batch` sequences of `max_context` tokens and,
// per call shape (entry point, batch, seq), a bound step list: every instruction's launcher,
// cuBLASLt plan, decode-attention split and device pointers are resolved once ("initialize
// once, execute many"); a call copies ids and positions into fixed device buffers and only
// launches. Decode steps are captured as one CUDA graph per batch bucket (1, 2, 4, ..., 64)
// on first use and replayed afterwards.
//
// Storage: every floating activation is bf16 except the plan's f32 results (the logits),
// which stay f32; a plan compiled from an f32 checkpoint therefore runs in bf16 as well.
// Arena offsets are the plan's (bytes per token x tokens of the call): bf16 storage of an
// f32 plan value uses the first half of its slot, so the planner's disjointness holds.
// Sequences of one session advance in lockstep (same position), which is what batched
// benchmarks need; independent per-sequence positions are future work.
#ifndef TESSEL_RUNTIME_CUDA_EXECUTOR_H_
#define TESSEL_RUNTIME_CUDA_EXECUTOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/plan/loader.h"

typedef struct CUstream_st* cudaStream_t;

namespace tessel::cuda {

class CublasLtGemm;
class GeneratedKernels;

struct CudaModelOptions {
  /// CUDA device ordinal.
  int device = 0;
  /// Fill the weights with seeded random values on the device instead of reading them (the
  /// artifact may have no weights file; see the file comment).
  bool dummy_weights = false;
  uint64_t dummy_seed = 0;
  /// Bytes of each of the two pinned staging buffers of the upload.
  uint64_t staging_bytes = uint64_t{64} << 20;
};

/// A model on one GPU. Sessions share it (shared_ptr); their calls run one at a time.
class CudaModel {
 public:
  /// Uploads (or fills) every weight. Unimplemented for multi-rank plans, MoE and MLA plans
  /// and ops the executor does not run; InvalidArgument if the plan has no "prefill".
  static absl::StatusOr<std::unique_ptr<CudaModel>> Create(std::unique_ptr<Artifact> artifact,
                                                           const CudaModelOptions& options = {});
  /// Loads `dir` for the GPU: with dummy_weights the weight files the plan names need not
  /// exist (the plan is still verified against a reserved, never-read address range).
  static absl::StatusOr<std::unique_ptr<CudaModel>> Load(const std::string& dir,
                                                         const LoadOptions& load_options,
                                                         const CudaModelOptions& options);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const Artifact& artifact() const { return *artifact_; }
  const plan::ModelInfo& info() const { return *artifact_->plan().model(); }
  int64_t vocab_size() const { return info().vocab_size(); }
  int64_t max_context() const { return max_context_; }
  int device() const { return device_; }
  /// weights[index] on the device, bf16.
  const void* weight(uint32_t index) const { return weights_[index]; }
  /// Bytes of all weights on the device.
  uint64_t weight_bytes() const { return weight_bytes_; }
  /// Seconds the upload (or fill) took, synchronized.
  double load_seconds() const { return load_seconds_; }

 private:
  friend class CudaSession;
  CudaModel() = default;
  absl::Status Upload();
  absl::Status FillDummy(uint64_t seed);

  std::unique_ptr<Artifact> artifact_;
  CudaModelOptions options_;
  int device_ = 0;
  int64_t max_context_ = 0;
  void* weight_memory_ = nullptr;  // one allocation for every weight
  std::vector<void*> weights_;
  uint64_t weight_bytes_ = 0;
  double load_seconds_ = 0.0;
  std::unique_ptr<GeneratedKernels> generated_kernels_;  // the plan's fused kernels
  void* reservation_ = nullptr;  // dummy weights: the address range standing in for files
  uint64_t reservation_bytes_ = 0;
  mutable std::mutex run_mutex_;
};

struct CudaSessionOptions {
  /// KV cache capacity in tokens; <= 0 or more than the model's: the model's max_context.
  int64_t max_context = 0;
  /// Sequences decoded together (PrefillBatch/DecodeBatch); 1 for the C API.
  int64_t max_batch = 1;
  /// Capture decode steps as CUDA graphs (off: plain launches, for debugging).
  bool use_graphs = true;
};

/// `max_batch` sequences decoding in lockstep with a model: KV caches, position, logits.
class CudaSession {
 public:
  static absl::StatusOr<std::unique_ptr<CudaSession>> Create(
      std::shared_ptr<const CudaModel> model, const CudaSessionOptions& options = {});
  ~CudaSession();
  CudaSession(const CudaSession&) = delete;
  CudaSession& operator=(const CudaSession&) = delete;

  /// Sequence 0 only (the C API): like cpu::CpuSession.
  absl::Status Prefill(std::span<const int32_t> tokens) { return PrefillBatch(tokens, 1); }
  absl::Status Decode(int32_t token) { return DecodeBatch({&token, 1}); }
  /// `tokens` [batch, seq] row-major, batch <= max_batch: the prompts of sequences 0..batch-1,
  /// all of the same length, at positions position()..position()+seq-1.
  absl::Status PrefillBatch(std::span<const int32_t> tokens, int64_t batch);
  /// One token per sequence (tokens.size() sequences).
  absl::Status DecodeBatch(std::span<const int32_t> tokens);
  /// Forgets the sequences: position 0, no logits.
  void Reset();

  int64_t position() const { return position_; }
  int64_t capacity() const { return capacity_; }
  int64_t vocab_size() const { return model_->vocab_size(); }
  /// Rows of the last call's logits (batch * seq); 0 before the first call.
  int64_t logits_rows() const { return logits_rows_; }
  /// The last call's logits [rows, vocab] f32, copied to the host on first use after a call.
  absl::StatusOr<std::span<const float>> Logits();
  /// Greedy tokens (argmax of each sequence's last row) computed on the GPU; only the ids
  /// come back to the host.
  absl::StatusOr<std::vector<int32_t>> GreedyTokens();
  /// Waits for the session's stream.
  absl::Status Synchronize();

 private:
  struct Bound;
  CudaSession() = default;
  absl::Status Run(const plan::EntryPoint& entry, std::span<const int32_t> tokens,
                   int64_t batch, int64_t seq, bool graph);
  absl::StatusOr<Bound*> GetBound(const plan::EntryPoint& entry, int64_t batch, int64_t seq);
  absl::Status Bind(const plan::EntryPoint& entry, int64_t batch, int64_t seq, Bound& bound);

  std::shared_ptr<const CudaModel> model_;
  CudaSessionOptions options_;
  int64_t capacity_ = 0;
  int64_t cache_batch_ = 1;  // sequences the caches hold: max_batch rounded up to a bucket
  int64_t position_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasLtGemm> gemm_;
  std::vector<void*> caches_;  // per KV cache slot: [cache_batch, capacity, row...] bf16
  const plan::EntryPoint* prefill_ = nullptr;
  const plan::EntryPoint* decode_ = nullptr;
  std::map<std::tuple<const plan::EntryPoint*, int64_t, int64_t>, std::unique_ptr<Bound>> bound_;
  Bound* last_ = nullptr;  // the bound of the last call (its logits)
  int64_t last_batch_ = 0;
  int64_t logits_rows_ = 0;
  bool host_logits_valid_ = false;
  float* host_logits_ = nullptr;  // pinned
  int64_t host_logits_capacity_ = 0;
  int32_t* host_tokens_ = nullptr;  // pinned: ids + positions staging, then argmax results
  int64_t host_tokens_capacity_ = 0;
  int32_t* device_argmax_ = nullptr;
};

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_EXECUTOR_H_
