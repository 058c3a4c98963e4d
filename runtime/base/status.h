// Status helpers shared by the runtime: errors are values (absl::Status) with actionable text.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_BASE_STATUS_H_
#define TESSEL_RUNTIME_BASE_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

/// Returns early from the enclosing function when `expr` yields a non-OK status.
#define TESSEL_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::absl::Status tessel_status_ = (expr);       \
    if (!tessel_status_.ok()) return tessel_status_; \
  } while (0)

#define TESSEL_STATUS_CONCAT_INNER_(a, b) a##b
#define TESSEL_STATUS_CONCAT_(a, b) TESSEL_STATUS_CONCAT_INNER_(a, b)

/// `TESSEL_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define TESSEL_ASSIGN_OR_RETURN(lhs, expr) \
  TESSEL_ASSIGN_OR_RETURN_IMPL_(TESSEL_STATUS_CONCAT_(tessel_statusor_, __LINE__), lhs, expr)
#define TESSEL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

namespace tessel {

/// Prefixes `status`'s message with `context` ("while reading X: ..."), keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_BASE_STATUS_H_
