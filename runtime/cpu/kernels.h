// The CPU reference kernels: every plan instruction in fp32, multithreaded where it pays.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Semantics follow Hugging Face transformers 5.x exactly (the tests compare logits with
// it to 1e-4): shapes are row-major, activations [tokens, features] with tokens = batch *
// seq flattened where the batch does not matter, [batch, seq, ...] where it does.
#ifndef TESSEL_RUNTIME_CPU_KERNELS_H_
#define TESSEL_RUNTIME_CPU_KERNELS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"

namespace tessel::cpu {

/// A fixed pool of worker threads; ParallelFor splits [0, n) into contiguous chunks.
class ThreadPool {
 public:
  /// `threads` <= 0: one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  /// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel; returns when
  /// all are done. Chunks are at least `grain` long.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Dense -------------------------------------------------------------------------------

/// out[t, :] = table[ids[t], :]. Error (InvalidArgument, naming the id) if an id is outside
/// [0, vocab).
absl::Status Embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t vocab,
                       int64_t hidden, float* out);

/// out = x / sqrt(mean(x^2) + eps) * weight, per row of `dim`.
void RMSNorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
             float* out);
/// out = (x - mean) / sqrt(var + eps) * weight + bias (bias may be null), per row.
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out);

/// out[r, n] = sum_k x[r, k] * W(n, k) + bias[n]; W is [n_out, k] (`weight_out_in`) or
/// [k, n_out]. bias may be null. Blocked and multithreaded over rows and columns.
void Matmul(const float* x, int64_t rows, int64_t k, const float* weight, int64_t n_out,
            bool weight_out_in, const float* bias, float* out, ThreadPool* pool);

// --- Elementwise -------------------------------------------------------------------------

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kMax };
enum class UnaryOp { kSilu, kSigmoid, kRelu, kExp, kTanh, kNeg, kGelu, kGeluTanh };

void Binary(BinaryOp op, const float* a, const float* b, int64_t n, float* out);
void Unary(UnaryOp op, const float* x, int64_t n, float* out);
void Scale(const float* x, double factor, int64_t n, float* out);

/// Softmax over the middle axis of x viewed as [outer, dim, inner].
void Softmax(const float* x, int64_t outer, int64_t dim, int64_t inner, float* out);

// --- Layout ------------------------------------------------------------------------------

/// x viewed as [outer, dim, inner]: out = x[:, start:start+size, :].
void Slice(const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t start,
           int64_t size, float* out);
/// Writes x ([outer, dim, inner]) into out ([outer, out_dim, inner]) at `offset` along the
/// middle axis; concat is one call per input.
void ConcatInto(const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t out_dim,
                int64_t offset, float* out);
/// General transpose: out.shape[i] = shape[perm[i]].
void Transpose(const float* x, const int64_t* shape, const int64_t* perm, int rank, float* out);

// --- Rotary position embeddings ------------------------------------------------------------

enum class RopeScalingKind { kNone, kLinear, kDynamic, kLlama3, kYarn };

struct RopeParams {
  double theta = 10000.0;
  int64_t rotary_dim = 0;  // rotated features per head (<= head_dim, even)
  bool interleaved = false;  // pairs (2i, 2i+1) instead of (i, i + rotary_dim/2)
  RopeScalingKind scaling = RopeScalingKind::kNone;
  double factor = 1.0;
  int64_t original_max_position = 0;  // llama3, yarn; dynamic: the trained context
  double low_freq_factor = 1.0;       // llama3
  double high_freq_factor = 4.0;      // llama3
  double beta_fast = 32.0;            // yarn
  double beta_slow = 1.0;             // yarn
  double attention_factor = 0.0;      // yarn: cos/sin multiplier (already derived)
};

/// Rotates x [batch * seq, heads, head_dim] in place-safe fashion into out: token t uses
/// positions[t]. Inverse frequencies as transformers' modeling_rope_utils computes them
/// (default, linear, dynamic NTK with seq_len = max(positions) + 1, llama3, yarn with
/// truncated correction range); features past rotary_dim are copied.
void Rope(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
          int64_t head_dim, const RopeParams& params, float* out);

/// The rotary_dim / 2 inverse frequencies Rope uses for a call whose largest position is
/// seq_len - 1 (seq_len matters only for dynamic NTK), rounded step by step as torch does.
/// The CUDA backend uploads this table so both backends rotate by the same angles.
std::vector<float> RopeInverseFrequencies(const RopeParams& params, int64_t seq_len);

// --- KV cache and attention ----------------------------------------------------------------

/// cache [batch, capacity, row] with row = product of trailing dims; update
/// [batch, seq, row]: cache[b, positions[b, s], :] = update[b, s, :]. Error (OutOfRange,
/// naming the position and capacity) if a position is outside [0, capacity).
absl::Status KVCacheWrite(float* cache, int64_t batch, int64_t capacity, int64_t row,
                          const float* update, int64_t seq, const int32_t* positions);

struct AttentionParams {
  double scale = 1.0;
  bool causal = true;
  int64_t sliding_window = 0;  // 0: none; else key j visible iff j > pos - window
  double logit_softcap = 0.0;  // 0: none; else s = cap * tanh(s / cap)
};

/// q [batch, seq, heads, dim], k [batch, kv_len, kv_heads, dim], v [batch, kv_len, kv_heads,
/// v_dim], positions [batch, seq] (absolute position of each query; key j is the token at
/// position j). Key j is visible to query (b, s) iff j <= positions[b, s] (causal) and the
/// window allows it; keys past the sequence are never visible. out [batch, seq, heads, v_dim].
void Attention(const float* q, const float* k, const float* v, const int32_t* positions,
               int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t kv_heads,
               int64_t dim, int64_t v_dim, const AttentionParams& params, float* out,
               ThreadPool* pool);

/// DeepSeek MLA over the compressed cache. q_nope [B, S, H, nope], q_rope [B, S, H, rope],
/// latent [B, L, rank] (normalized c_kv), key_rope [B, L, rope], kv_b [H * (nope + v_dim),
/// rank] (rows per head: nope key rows then v_dim value rows). Per head h:
/// k_nope[j] = kv_b[h, :nope] @ latent[j], value[j] = kv_b[h, nope:] @ latent[j],
/// score = (q_nope . k_nope[j] + q_rope . key_rope[j]) * scale. out [B, S, H, v_dim].
void MLAAttention(const float* q_nope, const float* q_rope, const float* latent,
                  const float* key_rope, const float* kv_b, const int32_t* positions,
                  int64_t batch, int64_t seq, int64_t heads, int64_t kv_len, int64_t nope,
                  int64_t rope, int64_t rank, int64_t v_dim, const AttentionParams& params,
                  float* out, ThreadPool* pool);

// --- Mixture of experts ----------------------------------------------------------------------

struct RouterParams {
  int64_t top_k = 1;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool sigmoid = false;          // scoring: sigmoid, else softmax over experts
  bool norm_topk_prob = false;   // renormalize the chosen weights to sum to 1
  double routed_scaling_factor = 1.0;
};

/// logits = x [tokens, hidden] @ gate [experts, hidden]^T; scores by softmax or sigmoid;
/// with `bias` (may be null) choice scores = scores + bias, group score = sum of the top 2
/// choice scores in the group, else group score = max score in the group; keep the
/// topk_group best groups, choose top_k experts in them by choice score; weights = the
/// unbiased scores of the chosen (renormalized if asked, + 1e-20 in the sum as DeepSeek-V3),
/// times routed_scaling_factor. Outputs [tokens, top_k], experts in descending choice score.
void MoERouter(const float* x, int64_t tokens, int64_t hidden, const float* gate,
               int64_t experts, const float* bias, const RouterParams& params, float* weights,
               int32_t* indices, ThreadPool* pool);

/// out[t] = sum_k weights[t, k] * down[e] @ (act(gate[e] @ x[t]) * (up[e] @ x[t])),
/// e = indices[t, k]; gate/up [experts, inter, hidden], down [experts, hidden, inter].
void MoEExperts(const float* x, int64_t tokens, int64_t hidden, const float* weights,
                const int32_t* indices, int64_t top_k, const float* gate, const float* up,
                const float* down, int64_t experts, int64_t inter, UnaryOp activation,
                float* out, ThreadPool* pool);

}  // namespace tessel::cpu

#endif  // TESSEL_RUNTIME_CPU_KERNELS_H_
