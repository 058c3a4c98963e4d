// The harness of the GPU cross-check tests (cuda_kernels_test, cuda_moe_mla_test): seeds,
// host data, device buffers poisoned with NaN, relative error by norm, the per-kernel worst
// error table and the main() that skips without a CUDA device.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Rules (/work/.library/device/METHOD.md): fresh random inputs each run (seed from the clock,
// or TESSEL_TEST_SEED; printed in every failure), outputs poisoned before each launch and
// checked fully written, error ||gpu - cpu|| / ||cpu|| with NaN always failing.
#ifndef TESSEL_TESTS_GPU_GPU_TEST_UTIL_CUH_
#define TESSEL_TESTS_GPU_GPU_TEST_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tessel::cuda::gpu_test {

inline uint64_t g_seed = 0;
inline std::map<std::string, double>* g_max_error = new std::map<std::string, double>();

inline constexpr double kBf16Tolerance = 1e-2;
inline constexpr double kF32Tolerance = 1e-5;

/// ctest's SKIP_RETURN_CODE (tests/gpu/CMakeLists.txt): reported as "Skipped", not passed.
inline constexpr int kSkipExitCode = 77;

#define SEED_TRACE()                                                                  \
  SCOPED_TRACE(absl::StrCat("seed ", ::tessel::cuda::gpu_test::g_seed, " (rerun: " \
                            "TESSEL_TEST_SEED=", ::tessel::cuda::gpu_test::g_seed, ")"))

#define ASSERT_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr
#define ASSERT_STATUS_OK(expr)            \
  do {                                    \
    const absl::Status status_ = (expr);  \
    ASSERT_TRUE(status_.ok()) << status_; \
  } while (0)

/// A generator per test: the run's seed mixed with the test's name.
inline std::mt19937_64 Rng(const std::string& test) {
  return std::mt19937_64(g_seed ^ std::hash<std::string>()(test));
}

inline std::vector<float> RandomFloats(int64_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

// Rounds to bf16 (so the CPU reference sees exactly the GPU's operands).
inline std::vector<__nv_bfloat16> ToBf16(const std::vector<float>& x) {
  std::vector<__nv_bfloat16> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = __float2bfloat16_rn(x[i]);
  return out;
}
inline std::vector<float> ToF32(const std::vector<__nv_bfloat16>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = __bfloat162float(x[i]);
  return out;
}
inline std::vector<float> RoundBf16(const std::vector<float>& x) { return ToF32(ToBf16(x)); }

/// Device memory of n elements, all bytes 0xFF at creation (NaN for f32 and bf16, -1 for
/// int32) so that unwritten outputs fail the checks.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
    Poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { Upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  void Upload(const std::vector<T>& host) {
    cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  void Poison() { cudaMemset(ptr_, 0xFF, std::max<size_t>(n_, 1) * sizeof(T)); }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

/// The bit patterns of bf16 values (for bit-identity checks).
inline std::vector<uint16_t> AsBits(const std::vector<bf16>& values) {
  std::vector<uint16_t> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(uint16_t));
  return bits;
}

/// ||got - ref|| / ||ref|| (absolute norm when ref is all zeros); +inf if any value of `got`
/// is NaN or infinite (unwritten poisoned outputs included).
inline double RelativeError(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

inline void Record(const std::string& kernel, double error) {
  double& worst = (*g_max_error)[kernel];
  worst = std::max(worst, error);
}

#define EXPECT_CLOSE(kernel, got, ref, tolerance)                                        \
  do {                                                                                   \
    const std::string kernel_ = (kernel);                                                \
    const double error_ = ::tessel::cuda::gpu_test::RelativeError((got), (ref));        \
    ::tessel::cuda::gpu_test::Record(kernel_, error_);                                   \
    EXPECT_LE(error_, (tolerance)) << kernel_ << ": relative error " << error_;          \
  } while (0)

/// The test binary's main: SKIPPED without a device (exit 77), else the seed, the tests and
/// the table of worst errors per kernel.
inline int RunGpuTests(int argc, char** argv, const char* name) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED (no CUDA device)\n");
    return kSkipExitCode;
  }
  const char* seed_env = std::getenv("TESSEL_TEST_SEED");
  g_seed = seed_env != nullptr
               ? std::strtoull(seed_env, nullptr, 10)
               : static_cast<uint64_t>(
                     std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("%s seed %llu\n", name, static_cast<unsigned long long>(g_seed));
  testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  std::printf("\nmax relative error per kernel (seed %llu):\n",
              static_cast<unsigned long long>(g_seed));
  for (const auto& [kernel, error] : *g_max_error) {
    std::printf("  %-28s %.3e\n", kernel.c_str(), error);
  }
  return result;
}

}  // namespace tessel::cuda::gpu_test

#endif  // TESSEL_TESTS_GPU_GPU_TEST_UTIL_CUH_
