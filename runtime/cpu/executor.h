// The CPU reference executor: runs a verified plan's entry points in f32 on a
// thread pool. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// A CpuModel owns the f32 weights (widened or dequantized once at load; f32
// weights are read straight from the mapped file) and the thread pool. A
// CpuSession owns one sequence's KV cache (batch 1), its position and the
// logits of its last call. Each entry point is resolved once per call shape
// into a list of steps whose pointers and sizes are fixed ("initialize once,
// execute many"); a call with the same shape only runs the steps.
//
// Arena layout: a value's byte offset is arena_offset * scale * tokens, its
// size bytes_per_token * scale * tokens, where tokens = batch * seq of the call
// and scale = max over arena values of 4 / bytes(dtype) (1 for f32 plans, 2 for
// bf16/f16 plans): every element is stored as 4 bytes (f32, or i32 for integer
// values), so narrower plans keep a disjoint layout.
#ifndef TESSEL_RUNTIME_CPU_EXECUTOR_H_
#define TESSEL_RUNTIME_CPU_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cpu/kernels.h"
#include "runtime/plan/loader.h"

namespace tessel::cpu {

struct CpuModelOptions {
  /// Worker threads; <= 0: one per hardware thread.
  int threads = 0;
};

/// A loaded model: plan, f32 weights and thread pool. Sessions share it; it
/// must outlive them (they hold a shared_ptr). Calls of sessions of one model
/// run one at a time.
class CpuModel {
 public:
  /// Takes the artifact, widens every weight to f32 (verifying checksums if the
  /// artifact's options ask) and starts the pool. Unimplemented for multi-rank
  /// plans and weights the CPU cannot widen; InvalidArgument if the plan has no
  /// "prefill" entry point.
  static absl::StatusOr<std::unique_ptr<CpuModel>> Create(
      std::unique_ptr<Artifact> artifact, const CpuModelOptions& options = {});

  CpuModel(const CpuModel&) = delete;
  CpuModel& operator=(const CpuModel&) = delete;

  const Artifact& artifact() const { return *artifact_; }
  const plan::ModelInfo& info() const { return *artifact_->plan().model(); }
  int64_t vocab_size() const { return info().vocab_size(); }
  /// The longest context a session can hold: the plan's max_context, bounded by
  /// the KV cache slots' capacity.
  int64_t max_context() const { return max_context_; }
  ThreadPool* pool() const { return pool_.get(); }
  /// weights[index] as f32 (its element count long).
  const float* weight(uint32_t index) const { return weight_data_[index]; }
  /// The arena scale of an entry point (see the file comment).
  uint64_t arena_scale(const plan::EntryPoint& entry) const;

 private:
  friend class CpuSession;
  CpuModel() = default;

  std::unique_ptr<Artifact> artifact_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::vector<float>>
      converted_;  // widened copies of non-f32 weights
  std::vector<const float*>
      weight_data_;  // per weight: converted_ or the mapped file
  int64_t max_context_ = 0;
  mutable std::mutex run_mutex_;
};

struct CpuSessionOptions {
  /// KV cache capacity in tokens; <= 0 or more than the model's: the model's
  /// max_context.
  int64_t max_context = 0;
  /// Upper bound on the session's KV cache plus arena bytes; 0: none. Exceeding
  /// it is ResourceExhausted (fuzzers and embedders with a memory budget set
  /// it).
  uint64_t memory_limit_bytes = 0;
};

/// One sequence (batch 1) decoding with a model: KV cache, position, last
/// logits.
class CpuSession {
 public:
  static absl::StatusOr<std::unique_ptr<CpuSession>> Create(
      std::shared_ptr<const CpuModel> model,
      const CpuSessionOptions& options = {});
  ~CpuSession();
  CpuSession(const CpuSession&) = delete;
  CpuSession& operator=(const CpuSession&) = delete;

  /// Runs "prefill" on `tokens` at positions position()..position()+n-1.
  /// OutOfRange
  /// ("context of N tokens is full") if they do not fit; InvalidArgument for an
  /// empty span or an id outside the vocabulary. On error the position and
  /// cache stay usable.
  absl::Status Prefill(std::span<const int32_t> tokens);
  /// Runs "decode" (or "prefill" with one token if the plan has no decode entry
  /// point).
  absl::Status Decode(int32_t token);
  /// Forgets the sequence: position 0, no logits.
  void Reset();

  int64_t position() const { return position_; }
  int64_t capacity() const { return capacity_; }
  /// The last call's logits, [rows, vocab] row-major; empty before the first
  /// call.
  std::span<const float> logits() const { return logits_; }
  int64_t logits_rows() const { return logits_rows_; }
  int64_t vocab_size() const { return model_->vocab_size(); }
  const CpuModel& model() const { return *model_; }

 private:
  struct Bound;
  CpuSession() = default;

  absl::Status Run(const plan::EntryPoint& entry, Bound& bound,
                   std::span<const int32_t> tokens);
  absl::Status Bind(const plan::EntryPoint& entry, int64_t seq, Bound& bound);

  std::shared_ptr<const CpuModel> model_;
  CpuSessionOptions options_;
  int64_t capacity_ = 0;
  int64_t position_ = 0;
  uint64_t cache_bytes_ = 0;
  std::vector<std::vector<float>>
      caches_;  // per KV cache slot: [capacity, row...]
  const plan::EntryPoint* prefill_ = nullptr;
  const plan::EntryPoint* decode_ = nullptr;
  std::unique_ptr<Bound> prefill_bound_;
  std::unique_ptr<Bound> decode_bound_;
  std::vector<float> logits_;
  int64_t logits_rows_ = 0;
};

}  // namespace tessel::cpu

#endif  // TESSEL_RUNTIME_CPU_EXECUTOR_H_
