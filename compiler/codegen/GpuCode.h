//===- GpuCode.h - generated GPU kernels of a plan --------------*- C++ -*-===//
// What the fusion code generator hands the plan emitter: one entry per distinct fused
// group (its entry function and launch shape) and the compiled module per architecture.
// Plain data, so the emitter needs no codegen or NVRTC headers.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_COMPILER_CODEGEN_GPUCODE_H
#define TESSEL_COMPILER_CODEGEN_GPUCODE_H

#include <cstdint>
#include <string>
#include <vector>

namespace tessel::codegen {

/// One generated kernel (tessel::plan::Kernel).
struct GeneratedKernel {
  std::string name;             // entry function in every image
  uint32_t block_threads = 0;   // threads per block
  uint64_t elements_per_block = 0; // 0: one block per row
};

/// One compiled module of every kernel (tessel::plan::KernelImage).
struct KernelImage {
  std::string arch;             // "sm_90a" (cubin) or "compute_90" (PTX, NUL-terminated)
  std::vector<uint8_t> image;
};

struct GpuCode {
  std::string source;           // the CUDA C++ of every kernel
  std::vector<GeneratedKernel> kernels;
  std::vector<KernelImage> images;
};

} // namespace tessel::codegen

#endif // TESSEL_COMPILER_CODEGEN_GPUCODE_H
