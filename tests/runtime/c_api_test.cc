// Tests the C API surface of libtessel_runtime: versions and status handles.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "tessel/tessel.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace {

TEST(CApiTest, VersionStringMatchesNumbers) {
  int32_t major = -1, minor = -1, patch = -1;
  tessel_version(&major, &minor, &patch);
  EXPECT_GE(major, 0);
  EXPECT_GE(minor, 0);
  EXPECT_GE(patch, 0);
  std::string expected =
      std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  EXPECT_EQ(expected, tessel_version_string());
}

TEST(CApiTest, VersionAcceptsNullOutParameters) {
  int32_t minor = -1;
  tessel_version(nullptr, &minor, nullptr);
  EXPECT_GE(minor, 0);
}

TEST(CApiTest, NullStatusIsSuccess) {
  EXPECT_EQ(tessel_status_code(nullptr), TESSEL_OK);
  EXPECT_STREQ(tessel_status_message(nullptr), "");
  tessel_status_release(nullptr);  // must be a no-op
}

}  // namespace
