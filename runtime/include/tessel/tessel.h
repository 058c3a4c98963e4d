/* tessel runtime C API: the stable surface serving binaries link against. */
/* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception */
#ifndef TESSEL_TESSEL_H_
#define TESSEL_TESSEL_H_

#include <stddef.h>
#include <stdint.h>

#if defined(TESSEL_BUILDING_RUNTIME)
#define TESSEL_API __attribute__((visibility("default")))
#else
#define TESSEL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes; values follow absl::StatusCode so they map one to one. */
typedef enum tessel_status_code_e {
  TESSEL_OK = 0,
  TESSEL_CANCELLED = 1,
  TESSEL_UNKNOWN = 2,
  TESSEL_INVALID_ARGUMENT = 3,
  TESSEL_DEADLINE_EXCEEDED = 4,
  TESSEL_NOT_FOUND = 5,
  TESSEL_ALREADY_EXISTS = 6,
  TESSEL_PERMISSION_DENIED = 7,
  TESSEL_RESOURCE_EXHAUSTED = 8,
  TESSEL_FAILED_PRECONDITION = 9,
  TESSEL_ABORTED = 10,
  TESSEL_OUT_OF_RANGE = 11,
  TESSEL_UNIMPLEMENTED = 12,
  TESSEL_INTERNAL = 13,
  TESSEL_UNAVAILABLE = 14,
  TESSEL_DATA_LOSS = 15,
} tessel_status_code_t;

/* An error: a code and a message. NULL means success. Release with tessel_status_release. */
typedef struct tessel_status_s* tessel_status_t;

TESSEL_API tessel_status_code_t tessel_status_code(tessel_status_t status);
/* The message, valid until the status is released; "" for NULL (success). */
TESSEL_API const char* tessel_status_message(tessel_status_t status);
TESSEL_API void tessel_status_release(tessel_status_t status);

/* Library version, e.g. "0.1.0". */
TESSEL_API const char* tessel_version_string(void);
TESSEL_API void tessel_version(int32_t* out_major, int32_t* out_minor, int32_t* out_patch);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TESSEL_TESSEL_H_
