//===- Nvrtc.cpp - compiles generated kernels with NVRTC --------*- C++ -*-===//
// NVRTC is loaded with dlopen when a plan needs GPU code, so tessel-compile starts (and
// compiles CPU-only plans with --gpu-arch=none) on machines without the CUDA toolkit.
// TESSEL_NVRTC_LIBRARY names the library to load instead of searching for it.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/codegen/FusionCodegen.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/Twine.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace tessel::codegen {
namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

// The part of nvrtc.h this file uses (the ABI is stable across CUDA 11-13).
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram *;

struct NvrtcApi {
  const char *(*getErrorString)(nvrtcResult);
  nvrtcResult (*version)(int *, int *);
  nvrtcResult (*createProgram)(nvrtcProgram *, const char *, const char *, int,
                               const char *const *, const char *const *);
  nvrtcResult (*destroyProgram)(nvrtcProgram *);
  nvrtcResult (*compileProgram)(nvrtcProgram, int, const char *const *);
  nvrtcResult (*getProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*getProgramLog)(nvrtcProgram, char *);
  nvrtcResult (*getPTXSize)(nvrtcProgram, size_t *);
  nvrtcResult (*getPTX)(nvrtcProgram, char *);
  nvrtcResult (*getCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*getCUBIN)(nvrtcProgram, char *);
};

/// Loads NVRTC once per process; the error says where it looked.
llvm::Expected<const NvrtcApi *> loadNvrtc() {
  static std::once_flag once;
  static NvrtcApi api;
  static std::string failure;
  std::call_once(once, [] {
    llvm::SmallVector<std::string> candidates;
    if (const char *path = std::getenv("TESSEL_NVRTC_LIBRARY")) {
      candidates.push_back(path);
    } else {
      candidates = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
      for (const char *var : {"CUDA_HOME", "CUDA_PATH"})
        if (const char *root = std::getenv(var))
          candidates.push_back(std::string(root) + "/lib64/libnvrtc.so");
      candidates.push_back("/usr/local/cuda/lib64/libnvrtc.so");
    }
    void *handle = nullptr;
    for (const std::string &name : candidates)
      if ((handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)))
        break;
    if (!handle) {
      failure = "NVRTC is not available (tried";
      for (const std::string &name : candidates)
        failure += " " + name;
      failure += "): install the CUDA toolkit's NVRTC to generate GPU kernels, or compile a "
                 "CPU-only plan with --gpu-arch=none";
      return;
    }
    bool ok = true;
    auto bind = [&](auto &fn, const char *symbol) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, symbol));
      if (!fn) {
        ok = false;
        failure = std::string("the NVRTC library lacks ") + symbol;
      }
    };
    bind(api.getErrorString, "nvrtcGetErrorString");
    bind(api.version, "nvrtcVersion");
    bind(api.createProgram, "nvrtcCreateProgram");
    bind(api.destroyProgram, "nvrtcDestroyProgram");
    bind(api.compileProgram, "nvrtcCompileProgram");
    bind(api.getProgramLogSize, "nvrtcGetProgramLogSize");
    bind(api.getProgramLog, "nvrtcGetProgramLog");
    bind(api.getPTXSize, "nvrtcGetPTXSize");
    bind(api.getPTX, "nvrtcGetPTX");
    bind(api.getCUBINSize, "nvrtcGetCUBINSize");
    bind(api.getCUBIN, "nvrtcGetCUBIN");
    if (!ok)
      dlclose(handle);
  });
  if (!failure.empty())
    return makeError(failure);
  return &api;
}

/// Compiles `source` for one architecture: a cubin for sm_*, NUL-terminated PTX for
/// compute_*.
llvm::Expected<std::vector<uint8_t>> compileOne(const NvrtcApi &api, const std::string &source,
                                                const std::string &arch) {
  nvrtcProgram program = nullptr;
  nvrtcResult result = api.createProgram(&program, source.c_str(), "tessel_fused.cu", 0,
                                         nullptr, nullptr);
  if (result != 0)
    return makeError(llvm::Twine("NVRTC cannot create a program: ") + api.getErrorString(result));
  std::string archFlag = "--gpu-architecture=" + arch;
  const char *options[] = {archFlag.c_str(), "--std=c++17", "--device-as-default-execution-space"};
  result = api.compileProgram(program, 3, options);
  if (result != 0) {
    size_t logSize = 0;
    api.getProgramLogSize(program, &logSize);
    std::string log(logSize, '\0');
    if (logSize)
      api.getProgramLog(program, log.data());
    api.destroyProgram(&program);
    return makeError("NVRTC cannot compile the fused kernels for " + arch + ": " +
                     api.getErrorString(result) + "\n" + log);
  }
  bool ptx = llvm::StringRef(arch).starts_with("compute_");
  size_t size = 0;
  result = ptx ? api.getPTXSize(program, &size) : api.getCUBINSize(program, &size);
  std::vector<uint8_t> image(size);
  if (result == 0 && size)
    result = ptx ? api.getPTX(program, reinterpret_cast<char *>(image.data()))
                 : api.getCUBIN(program, reinterpret_cast<char *>(image.data()));
  api.destroyProgram(&program);
  if (result != 0 || image.empty())
    return makeError("NVRTC produced no " + llvm::Twine(ptx ? "PTX" : "cubin") + " for " + arch);
  return image;
}

} // namespace

llvm::Error compileWithNvrtc(GpuCode &code, llvm::ArrayRef<std::string> archs) {
  if (archs.empty() || code.kernels.empty())
    return llvm::Error::success();
  auto api = loadNvrtc();
  if (!api)
    return api.takeError();
  std::vector<std::string> targets(archs.begin(), archs.end());
  targets.push_back(ptxArchFor(archs));
  for (const std::string &arch : targets) {
    auto image = compileOne(**api, code.source, arch);
    if (!image)
      return image.takeError();
    code.images.push_back({arch, std::move(*image)});
  }
  return llvm::Error::success();
}

} // namespace tessel::codegen
