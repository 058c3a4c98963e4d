// Loads and launches the compiler-generated kernels of a plan (see generated_kernels.h).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/cuda/generated_kernels.h"

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "runtime/base/status.h"
#include "runtime/cuda/cuda_status.h"

namespace tessel::cuda {
namespace {

// "sm_90a" -> {cubin, 90, 'a'}; "compute_80" -> {ptx, 80, 0}.
struct ParsedArch {
  bool ptx = false;
  int number = 0;
  char suffix = 0;
};

bool ParseArch(absl::string_view arch, ParsedArch* out) {
  if (absl::ConsumePrefix(&arch, "sm_")) {
    out->ptx = false;
  } else if (absl::ConsumePrefix(&arch, "compute_")) {
    out->ptx = true;
  } else {
    return false;
  }
  out->suffix = 0;
  if (!arch.empty() && (arch.back() == 'a' || arch.back() == 'f')) {
    out->suffix = arch.back();
    arch.remove_suffix(1);
  }
  return absl::SimpleAtoi(arch, &out->number) && out->number > 0;
}

}  // namespace

absl::StatusOr<size_t> SelectKernelImage(std::span<const std::string> archs, int major,
                                         int minor, absl::string_view device_name) {
  const int device = major * 10 + minor;
  std::vector<ParsedArch> parsed(archs.size());
  std::vector<bool> valid(archs.size());
  for (size_t i = 0; i < archs.size(); ++i) valid[i] = ParseArch(archs[i], &parsed[i]);
  // Best candidate by preference: exact cubin, compatible cubin, PTX.
  int best = -1, best_rank = -1, best_number = -1;
  for (size_t i = 0; i < archs.size(); ++i) {
    if (!valid[i]) continue;
    const ParsedArch& a = parsed[i];
    int rank = -1;
    if (!a.ptx && a.number == device) {
      rank = 3;
    } else if (!a.ptx && a.suffix == 0 && a.number / 10 == major && a.number < device) {
      rank = 2;
    } else if (a.ptx && (a.number == device || (a.suffix == 0 && a.number < device))) {
      rank = 1;
    }
    if (rank > best_rank || (rank == best_rank && rank > 0 && a.number > best_number)) {
      best = static_cast<int>(i);
      best_rank = rank;
      best_number = a.number;
    }
  }
  if (best >= 0 && best_rank > 0) return static_cast<size_t>(best);
  const std::string sm = absl::StrCat("sm_", device);
  return absl::FailedPreconditionError(absl::StrCat(
      "plan has GPU code for ", archs.empty() ? "no architecture" : absl::StrJoin(archs, ", "),
      "; this GPU is ", sm, " (", device_name, "): recompile with --gpu-arch=", sm));
}

// The driver API entry points, resolved once through cudart (no libcuda link).
struct GeneratedKernels::Driver {
  CUresult (*get_error_string)(CUresult, const char**) = nullptr;
  CUresult (*module_load_data)(CUmodule*, const void*) = nullptr;
  CUresult (*module_get_function)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*module_unload)(CUmodule) = nullptr;
  CUresult (*launch_kernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                            unsigned, unsigned, CUstream, void**, void**) = nullptr;

  absl::Status Check(CUresult result, absl::string_view what) const {
    if (result == CUDA_SUCCESS) return absl::OkStatus();
    const char* message = nullptr;
    if (get_error_string == nullptr || get_error_string(result, &message) != CUDA_SUCCESS)
      message = "unknown error";
    return absl::InternalError(
        absl::StrCat(what, " failed: CUDA driver error ", static_cast<int>(result), " (",
                     message, ")"));
  }

  static absl::StatusOr<const Driver*> Get() {
    static std::once_flag once;
    static Driver driver;
    static absl::Status status;
    std::call_once(once, [] {
      auto bind = [](auto& fn, const char* symbol) -> absl::Status {
        absl::StatusOr<void*> pointer =
            DriverEntryPoint(symbol, "generated kernels need a CUDA 12+ driver");
        if (!pointer.ok()) return pointer.status();
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(*pointer);
        return absl::OkStatus();
      };
      for (absl::Status s :
           {bind(driver.get_error_string, "cuGetErrorString"),
            bind(driver.module_load_data, "cuModuleLoadData"),
            bind(driver.module_get_function, "cuModuleGetFunction"),
            bind(driver.module_unload, "cuModuleUnload"),
            bind(driver.launch_kernel, "cuLaunchKernel")}) {
        if (!s.ok() && status.ok()) status = s;
      }
    });
    if (!status.ok()) return status;
    return &driver;
  }
};

absl::StatusOr<std::unique_ptr<GeneratedKernels>> GeneratedKernels::Load(
    const plan::Plan& plan, int device) {
  std::unique_ptr<GeneratedKernels> loaded(new GeneratedKernels());
  const uint32_t kernels = plan.kernels() ? plan.kernels()->size() : 0;
  for (const plan::EntryPoint* entry : *plan.entry_points()) {
    for (const plan::Instruction* inst : *entry->instructions()) {
      if (inst->op() == plan::OpCode::Fused && inst->kernel() < 0) {
        return absl::FailedPreconditionError(
            "the plan's fused instructions have no GPU code (it was compiled with "
            "--gpu-arch=none): recompile it with --gpu-arch for this GPU to run it on CUDA, "
            "or use device cpu");
      }
    }
  }
  if (kernels == 0) return loaded;

  int major = 0, minor = 0;
  TESSEL_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSEL_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  cudaDeviceProp props{};
  TESSEL_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props, device));
  std::vector<std::string> archs;
  for (const plan::KernelImage* image : *plan.kernel_images())
    archs.push_back(image->arch()->str());
  TESSEL_ASSIGN_OR_RETURN(size_t pick, SelectKernelImage(archs, major, minor, props.name));
  const plan::KernelImage& image = *plan.kernel_images()->Get(pick);

  TESSEL_ASSIGN_OR_RETURN(loaded->driver_, Driver::Get());
  const Driver& driver = *loaded->driver_;
  // The runtime API makes the device's primary context current; the module lives there.
  TESSEL_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  TESSEL_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));
  CUmodule module = nullptr;
  TESSEL_RETURN_IF_ERROR(
      driver.Check(driver.module_load_data(&module, image.image()->data()),
                   absl::StrCat("loading the plan's ", image.arch()->str(),
                                " generated kernels (cuModuleLoadData)")));
  loaded->module_ = module;
  loaded->arch_ = image.arch()->str();
  for (const plan::Kernel* kernel : *plan.kernels()) {
    CUfunction function = nullptr;
    TESSEL_RETURN_IF_ERROR(driver.Check(
        driver.module_get_function(&function, module, kernel->name()->c_str()),
        absl::StrCat("finding generated kernel '", kernel->name()->str(), "'")));
    loaded->kernels_.push_back({function, kernel->block_threads(),
                                kernel->elements_per_block(), kernel->name()->str()});
  }
  return loaded;
}

GeneratedKernels::~GeneratedKernels() {
  if (module_ != nullptr && driver_ != nullptr)
    driver_->module_unload(static_cast<CUmodule>(module_));
}

absl::StatusOr<std::function<absl::Status(cudaStream_t)>> GeneratedKernels::Bind(
    const plan::Instruction& inst, std::span<const FusedBuffer> operands,
    std::span<const FusedBuffer> results, absl::string_view where) const {
  auto error = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat(where, " ", problem));
  };
  if (inst.kernel() < 0 || static_cast<size_t>(inst.kernel()) >= kernels_.size() ||
      inst.program() == nullptr)
    return error("has no loaded generated kernel");
  const Kernel& kernel = kernels_[inst.kernel()];
  const int64_t row_size = inst.program()->row_size();
  if (results.empty()) return error("has no results");
  const int64_t elements = results[0].elements;
  for (const FusedBuffer& b : results) {
    if (!b.bf16)
      return absl::UnimplementedError(absl::StrCat(
          where, ": generated kernels write bf16 only; this group writes an f32 or integer "
                 "value"));
    if (b.elements != elements) return error("has results of different sizes");
  }
  for (const FusedBuffer& b : operands) {
    if (!b.bf16)
      return absl::UnimplementedError(absl::StrCat(
          where, ": generated kernels read bf16 only; this group reads an f32 or integer "
                 "value"));
    if (b.elements != elements && b.elements != row_size)
      return error("has an operand that is neither the group's size nor one row");
  }
  if (row_size <= 0 || elements % row_size != 0) return error("is not whole rows");
  const long long rows = elements / row_size;
  std::vector<const void*> pointers;
  for (const FusedBuffer& b : operands) pointers.push_back(b.data);
  for (const FusedBuffer& b : results) pointers.push_back(b.data);

  // Grid: one block per row, or enough blocks for elements_per_block each (the kernel
  // loops over the rest).
  const uint64_t blocks =
      kernel.elements_per_block == 0
          ? static_cast<uint64_t>(rows)
          : (static_cast<uint64_t>(elements) + kernel.elements_per_block - 1) /
                kernel.elements_per_block;
  if (blocks > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
    return error("needs more blocks than a grid holds");
  const unsigned grid = static_cast<unsigned>(blocks);
  const unsigned block = kernel.block_threads;
  const Driver* driver = driver_;
  CUfunction function = static_cast<CUfunction>(kernel.function);
  std::string name = kernel.name;
  return std::function<absl::Status(cudaStream_t)>(
      [=](cudaStream_t stream) -> absl::Status {
        if (grid == 0) return absl::OkStatus();
        // Parameters: each pointer, then rows (the driver copies them at launch).
        std::vector<const void*> values = pointers;
        long long row_count = rows;
        std::vector<void*> params;
        for (const void*& value : values) params.push_back(&value);
        params.push_back(&row_count);
        return driver->Check(
            driver->launch_kernel(function, grid, 1, 1, block, 1, 1, 0,
                                  reinterpret_cast<CUstream>(stream), params.data(), nullptr),
            absl::StrCat("launching generated kernel '", name, "'"));
      });
}

}  // namespace tessel::cuda
