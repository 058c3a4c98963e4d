// The compiler-generated (fused) kernels of a plan on one GPU: picks the plan's image
// for the device, loads it through the CUDA driver API and launches its kernels.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Plan.kernel_images holds one module of every generated kernel per architecture: a
// cubin per `--gpu-arch` target ("sm_90a") and PTX ("compute_90") that the driver
// compiles for newer GPUs. The driver API is reached through cudart's
// cudaGetDriverEntryPointByVersion, so nothing here links libcuda: the runtime keeps
// loading on machines without a driver (libcuda.so.1), where only the CPU executor runs.
#ifndef TESSEL_RUNTIME_CUDA_GENERATED_KERNELS_H_
#define TESSEL_RUNTIME_CUDA_GENERATED_KERNELS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/schema/plan_generated.h"

typedef struct CUstream_st* cudaStream_t;

namespace tessel::cuda {

/// Which of `archs` (the arch strings of Plan.kernel_images) a GPU of compute capability
/// major.minor runs: the cubin built for exactly its sm ("sm_86" on 8.6; "sm_90a" only
/// on 9.0), else a cubin of the same major and a lower minor without an a/f suffix
/// (binary compatible), else the newest PTX whose compute arch is not above the GPU's.
/// None fits: FailedPrecondition naming the plan's archs, the GPU and the fix ("plan has
/// GPU code for sm_90a, compute_90; this GPU is sm_86 (NVIDIA A10): recompile with
/// --gpu-arch=sm_86"). Pure: no GPU needed.
absl::StatusOr<size_t> SelectKernelImage(std::span<const std::string> archs, int major,
                                         int minor, absl::string_view device_name);

/// One operand or result of a fused instruction, bound to device memory.
struct FusedBuffer {
  const void* data = nullptr;
  int64_t elements = 0;
  bool bf16 = false;  // generated kernels read and write bf16 only
};

/// The loaded kernels of one plan on one device; immutable after Load, so sessions may
/// launch from any thread.
class GeneratedKernels {
 public:
  /// Loads the image SelectKernelImage picks for `device` (the current device; the
  /// primary context must be current, as after cudaSetDevice). A plan without
  /// generated kernels loads as an empty set; a plan whose Fused instructions have no
  /// kernel (compiled with --gpu-arch=none) is FailedPrecondition.
  static absl::StatusOr<std::unique_ptr<GeneratedKernels>> Load(const plan::Plan& plan,
                                                                int device);
  ~GeneratedKernels();
  GeneratedKernels(const GeneratedKernels&) = delete;
  GeneratedKernels& operator=(const GeneratedKernels&) = delete;

  /// The arch of the loaded image ("sm_90a"); empty when the plan has no kernels.
  const std::string& arch() const { return arch_; }

  /// Resolves the launch of a Fused instruction once ("initialize once, execute many"):
  /// checks that every buffer is bf16, results are whole rows of the program's row size
  /// and operands are either that size or one row (the norm weight). The returned step
  /// launches the kernel on the stream it gets (capturable into CUDA graphs). `where`
  /// names the instruction in errors.
  absl::StatusOr<std::function<absl::Status(cudaStream_t)>> Bind(
      const plan::Instruction& inst, std::span<const FusedBuffer> operands,
      std::span<const FusedBuffer> results, absl::string_view where) const;

 private:
  struct Driver;
  struct Kernel {
    void* function = nullptr;  // CUfunction
    uint32_t block_threads = 0;
    uint64_t elements_per_block = 0;
    std::string name;
  };
  GeneratedKernels() = default;

  const Driver* driver_ = nullptr;
  void* module_ = nullptr;  // CUmodule
  std::string arch_;
  std::vector<Kernel> kernels_;
};

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_GENERATED_KERNELS_H_
