// CUDA and cuBLASLt results as absl::Status: one macro for calls, one for kernel launches.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CUDA_CUDA_STATUS_H_
#define TESSEL_RUNTIME_CUDA_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessel::cuda {

/// "file:line: expr failed: cudaErrorX (message)"; OK for cudaSuccess. Out-of-memory maps to
/// ResourceExhausted, invalid arguments to InvalidArgument, everything else to Internal.
absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line);
/// The same for cuBLAS / cuBLASLt status codes (names from cublasLtGetStatusName).
absl::Status CudaStatus(cublasStatus_t status, const char* expr, const char* file, int line);

/// Error of the last kernel launch on this thread (cudaGetLastError, which also clears it),
/// naming the kernel.
absl::Status LaunchStatus(const char* kernel, const char* file, int line);

/// The CUDA driver API function `symbol` (its CUDA 12.0 version), found through the runtime
/// (cudaGetDriverEntryPointByVersion: no link to libcuda); FailedPrecondition naming it and
/// `needed_for` when the driver lacks it.
absl::StatusOr<void*> DriverEntryPoint(const char* symbol, const char* needed_for);

}  // namespace tessel::cuda

/// Returns from the enclosing function (which returns absl::Status or StatusOr) when a
/// cudaError_t or cublasStatus_t expression is not success.
#define TESSEL_CUDA_RETURN_IF_ERROR(expr)                                              \
  do {                                                                                 \
    ::absl::Status tessel_cuda_status_ =                                               \
        ::tessel::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__);                 \
    if (!tessel_cuda_status_.ok()) return tessel_cuda_status_;                         \
  } while (0)

/// After `kernel<<<...>>>(...)`: returns the launch error (bad configuration, no kernel image
/// for this device, ...) as a status.
#define TESSEL_CUDA_RETURN_IF_LAUNCH_ERROR(kernel_name)                                \
  do {                                                                                 \
    ::absl::Status tessel_cuda_status_ =                                               \
        ::tessel::cuda::LaunchStatus(kernel_name, __FILE__, __LINE__);                 \
    if (!tessel_cuda_status_.ok()) return tessel_cuda_status_;                         \
  } while (0)

#endif  // TESSEL_RUNTIME_CUDA_CUDA_STATUS_H_
