// Tests of the choice of a plan's generated-kernel image for a GPU (no GPU needed).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/cuda/generated_kernels.h"

namespace tessel::cuda {
namespace {

using ::testing::HasSubstr;

size_t Pick(const std::vector<std::string>& archs, int major, int minor) {
  auto picked = SelectKernelImage(archs, major, minor, "test GPU");
  EXPECT_TRUE(picked.ok()) << picked.status();
  return picked.ok() ? *picked : archs.size();
}

TEST(SelectKernelImageTest, ExactCubinFirst) {
  const std::vector<std::string> archs = {"sm_90a", "sm_80", "compute_80"};
  EXPECT_EQ(Pick(archs, 9, 0), 0u);  // H100: the sm_90a cubin
  EXPECT_EQ(Pick(archs, 8, 0), 1u);  // A100: the sm_80 cubin
}

TEST(SelectKernelImageTest, CompatibleCubinOfTheSameMajor) {
  // sm_80 machine code runs on 8.6 and 8.9; sm_90a (arch-specific) only on 9.0.
  EXPECT_EQ(Pick({"sm_90a", "sm_80", "compute_80"}, 8, 6), 1u);
  EXPECT_EQ(Pick({"compute_80", "sm_80", "sm_86"}, 8, 9), 2u);
}

TEST(SelectKernelImageTest, PtxForNewerGpus) {
  // Blackwell (10.0) and 12.0 JIT the compute_90 PTX of the default plan.
  EXPECT_EQ(Pick({"sm_90a", "compute_90"}, 10, 0), 1u);
  EXPECT_EQ(Pick({"sm_90a", "compute_90"}, 12, 0), 1u);
  // The newest PTX that fits.
  EXPECT_EQ(Pick({"compute_70", "compute_80", "compute_90"}, 8, 9), 1u);
}

TEST(SelectKernelImageTest, NothingFitsNamesArchsGpuAndFix) {
  auto picked = SelectKernelImage({{"sm_90a", "compute_90"}}, 8, 6, "NVIDIA A10");
  ASSERT_FALSE(picked.ok());
  EXPECT_EQ(picked.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(picked.status().message(),
            "plan has GPU code for sm_90a, compute_90; this GPU is sm_86 (NVIDIA A10): "
            "recompile with --gpu-arch=sm_86");
}

TEST(SelectKernelImageTest, ArchSpecificCodeRunsOnlyOnItsArch) {
  // sm_90a cubin / compute_90a PTX use Hopper-only features: not on 10.0.
  auto picked = SelectKernelImage({{"sm_90a", "compute_90a"}}, 10, 0, "B200");
  ASSERT_FALSE(picked.ok());
  EXPECT_THAT(std::string(picked.status().message()), HasSubstr("this GPU is sm_100 (B200)"));
  // A newer cubin never runs on an older GPU.
  EXPECT_FALSE(SelectKernelImage({{"sm_90"}}, 8, 0, "A100").ok());
}

TEST(SelectKernelImageTest, UnknownArchStringsAreSkipped) {
  EXPECT_EQ(Pick({"gfx942", "sm_x", "compute_80"}, 9, 0), 2u);
  auto none = SelectKernelImage({}, 9, 0, "H100");
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("no architecture"));
}

}  // namespace
}  // namespace tessel::cuda
