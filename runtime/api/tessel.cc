// Implements the C API of runtime/include/tessel/tessel.h on top of the C++ runtime.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "tessel/tessel.h"

#include <string>

#include "absl/status/status.h"

struct tessel_status_s {
  tessel_status_code_t code;
  std::string message;
};

namespace tessel {

/// Converts an absl::Status into a C status handle (NULL for OK).
tessel_status_t ToCStatus(const absl::Status& status) {
  if (status.ok()) return nullptr;
  return new tessel_status_s{static_cast<tessel_status_code_t>(status.code()),
                             std::string(status.message())};
}

}  // namespace tessel

extern "C" {

tessel_status_code_t tessel_status_code(tessel_status_t status) {
  return status ? status->code : TESSEL_OK;
}

const char* tessel_status_message(tessel_status_t status) {
  return status ? status->message.c_str() : "";
}

void tessel_status_release(tessel_status_t status) { delete status; }

const char* tessel_version_string(void) { return TESSEL_VERSION_STRING; }

void tessel_version(int32_t* out_major, int32_t* out_minor, int32_t* out_patch) {
  if (out_major) *out_major = TESSEL_VERSION_MAJOR;
  if (out_minor) *out_minor = TESSEL_VERSION_MINOR;
  if (out_patch) *out_patch = TESSEL_VERSION_PATCH;
}

}  // extern "C"
