// Dense projections through cuBLASLt (see cublaslt_gemm.h).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Row-major C[M,N] = A[M,K] W[N,K]^T, read column-major, is C^T[N,M] = W A^T: cuBLASLt's
// D = op(X) Y with X = W viewed column-major as [K, N] (ld K) and transposed, Y = A viewed
// column-major as [K, M] (ld K), D column-major [N, M] (ld N); no data moves. The bias
// epilogue adds a vector over D's rows, i.e. over the N output features.
#include "runtime/cuda/cublaslt_gemm.h"

#include <bit>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

cudaDataType_t OutputType(GemmOutput output) {
  return output == GemmOutput::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
}

int64_t Bucket(int64_t m) { return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(m))); }

}  // namespace

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(size_t workspace_bytes) {
  std::unique_ptr<CublasLtGemm> gemm(new CublasLtGemm());
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtCreate(&gemm->handle_));
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&gemm->preference_));
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      gemm->preference_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
      sizeof(workspace_bytes)));
  if (workspace_bytes > 0) {
    TESSEL_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->workspace_, workspace_bytes));
  }
  gemm->workspace_bytes_ = workspace_bytes;
  return gemm;
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, plan] : plans_) {
    for (auto& [m, layouts] : plan.by_m) {
      cublasLtMatrixLayoutDestroy(layouts.a);
      cublasLtMatrixLayoutDestroy(layouts.w);
      cublasLtMatrixLayoutDestroy(layouts.c);
    }
    cublasLtMatmulDescDestroy(plan.desc);
  }
  if (preference_ != nullptr) cublasLtMatmulPreferenceDestroy(preference_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
  if (workspace_ != nullptr) cudaFree(workspace_);
}

absl::Status CublasLtGemm::Heuristic(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                     cublasLtMatrixLayout_t w, cublasLtMatrixLayout_t c,
                                     cublasLtMatmulAlgo_t* algo) {
  cublasLtMatmulHeuristicResult_t result = {};
  int found = 0;
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(handle_, desc, w, a, c, c,
                                                             preference_, 1, &result, &found));
  if (found == 0) return absl::UnimplementedError("cuBLASLt has no algorithm for this GEMM");
  *algo = result.algo;
  return absl::OkStatus();
}

absl::StatusOr<const CublasLtGemm::Layouts*> CublasLtGemm::GetLayouts(Plan& plan, int64_t m,
                                                                      int64_t n, int64_t k,
                                                                      GemmOutput output) {
  auto it = plan.by_m.find(m);
  if (it != plan.by_m.end()) return &it->second;
  Layouts layouts;
  // Column-major views (see the file comment): W^T as [K, N] ld K, A^T as [K, M] ld K,
  // C^T as [N, M] ld N.
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&layouts.w, CUDA_R_16BF, k, n, k));
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&layouts.a, CUDA_R_16BF, k, m, k));
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&layouts.c, OutputType(output), n, m, n));
  layouts.algo = plan.algo;
  // The bucket's algorithm was chosen for M rounded up; keep it if it supports this M.
  cublasLtMatmulHeuristicResult_t check = {};
  const cublasStatus_t supported = cublasLtMatmulAlgoCheck(handle_, plan.desc, layouts.w,
                                                           layouts.a, layouts.c, layouts.c,
                                                           &plan.algo, &check);
  if (supported != CUBLAS_STATUS_SUCCESS || check.workspaceSize > workspace_bytes_) {
    if (absl::Status status =
            Heuristic(plan.desc, layouts.a, layouts.w, layouts.c, &layouts.algo);
        !status.ok()) {
      cublasLtMatrixLayoutDestroy(layouts.a);
      cublasLtMatrixLayoutDestroy(layouts.w);
      cublasLtMatrixLayoutDestroy(layouts.c);
      return status;
    }
  }
  return &plan.by_m.emplace(m, layouts).first->second;
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int64_t m_bucket, int64_t n, int64_t k,
                                                          GemmOutput output, bool has_bias) {
  const PlanKey key{m_bucket, n, k, static_cast<int>(output), has_bias};
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  Plan plan;
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_transpose, sizeof(no_transpose)));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    const cudaDataType_t bias_type = OutputType(output);
    TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  // The algorithm for the bucket's largest M.
  cublasLtMatrixLayout_t a = nullptr, w = nullptr, c = nullptr;
  absl::Status status = [&]() -> absl::Status {
    TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&w, CUDA_R_16BF, k, n, k));
    TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, k, m_bucket, k));
    TESSEL_CUDA_RETURN_IF_ERROR(
        cublasLtMatrixLayoutCreate(&c, OutputType(output), n, m_bucket, n));
    return Heuristic(plan.desc, a, w, c, &plan.algo);
  }();
  if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
  if (w != nullptr) cublasLtMatrixLayoutDestroy(w);
  if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
  if (!status.ok()) {
    cublasLtMatmulDescDestroy(plan.desc);
    return absl::Status(status.code(), absl::StrCat("GEMM M<=", m_bucket, " N=", n, " K=", k,
                                                    ": ", status.message()));
  }
  return &plans_.emplace(key, std::move(plan)).first->second;
}

absl::Status CublasLtGemm::Run(const void* a, const void* w, const void* bias, void* c,
                               int64_t m, int64_t n, int64_t k, GemmOutput output,
                               cudaStream_t stream, const void* accumulate) {
  if (m <= 0 || n <= 0) return absl::OkStatus();
  if (k <= 0) return absl::InvalidArgumentError("GEMM: K must be positive");
  absl::StatusOr<Plan*> plan = GetPlan(Bucket(m), n, k, output, bias != nullptr);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<const Layouts*> layouts = GetLayouts(**plan, m, n, k, output);
  if (!layouts.ok()) return layouts.status();
  if (bias != nullptr) {
    TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        (*plan)->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.0f, beta = accumulate != nullptr ? 1.0f : 0.0f;
  const void* c_in = accumulate != nullptr ? accumulate : c;
  TESSEL_CUDA_RETURN_IF_ERROR(cublasLtMatmul(handle_, (*plan)->desc, &alpha, w, (*layouts)->w, a,
                                             (*layouts)->a, &beta, c_in, (*layouts)->c, c,
                                             (*layouts)->c, &(*layouts)->algo, workspace_,
                                             workspace_bytes_, stream));
  return absl::OkStatus();
}

}  // namespace tessel::cuda
