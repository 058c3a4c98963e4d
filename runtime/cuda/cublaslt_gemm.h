// Dense projections through cuBLASLt: bf16 activations x HF-layout bf16 weights, f32 accumulate.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_CUBLASLT_GEMM_H_
#define TESSEL_RUNTIME_CUDA_CUBLASLT_GEMM_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessel::cuda {

/// Output element type of a projection.
enum class GemmOutput { kBF16, kF32 };

/// C [M, N] = A [M, K] @ W[N, K]^T (+ bias [N]), all row-major (W as stored by HF:
/// out_features x in_features), bf16 operands, f32 accumulation and scaling, C bf16 or f32
/// (bias of the same type as C). One handle per device and stream user; not thread-safe.
///
/// Initialize once, execute many: the matmul descriptor and the heuristic's algorithm are
/// chosen on the first call of each (M bucket, N, K, output, bias) — M rounded up to a power
/// of two, so decode (M = batch) and prefill chunks reuse a few entries — and the matrix
/// layouts once per exact M; the workspace is allocated once at creation.
class CublasLtGemm {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  /// Creates the cuBLASLt handle and allocates the workspace on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(
      size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  /// Enqueues C = A W^T (+ bias) (+ accumulate) on `stream`. Pointers 16-byte aligned; bias
  /// may be null; accumulate (null: none) is an [M, N] matrix of the output type added before
  /// the one rounding to it (the residual add of a transformer block); it may be c itself.
  absl::Status Run(const void* a, const void* w, const void* bias, void* c, int64_t m,
                   int64_t n, int64_t k, GemmOutput output, cudaStream_t stream,
                   const void* accumulate = nullptr);

  /// Number of cached (bucket, N, K, ...) plans, for tests.
  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Layouts {
    cublasLtMatrixLayout_t a = nullptr, w = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;  // the bucket's algorithm, or one found for this M
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatmulAlgo_t algo;
    std::map<int64_t, Layouts> by_m;
  };
  using PlanKey = std::tuple<int64_t, int64_t, int64_t, int, bool>;

  CublasLtGemm() = default;
  absl::StatusOr<Plan*> GetPlan(int64_t m_bucket, int64_t n, int64_t k, GemmOutput output,
                                bool has_bias);
  absl::StatusOr<const Layouts*> GetLayouts(Plan& plan, int64_t m, int64_t n, int64_t k,
                                            GemmOutput output);
  absl::Status Heuristic(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                         cublasLtMatrixLayout_t w, cublasLtMatrixLayout_t c,
                         cublasLtMatmulAlgo_t* algo);

  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulPreference_t preference_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<PlanKey, Plan> plans_;
};

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_CUBLASLT_GEMM_H_
