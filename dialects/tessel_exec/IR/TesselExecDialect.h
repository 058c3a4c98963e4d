//===- TesselExecDialect.h - the tessel_exec dialect ------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_DIALECTS_TESSEL_EXEC_IR_TESSELEXECDIALECT_H
#define TESSEL_DIALECTS_TESSEL_EXEC_IR_TESSELEXECDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/tessel_exec/IR/TesselExecDialect.h.inc"

#define GET_OP_CLASSES
#include "dialects/tessel_exec/IR/TesselExecOps.h.inc"

namespace mlir::tessel_exec {
/// Arena offsets and per-token sizes are multiples of this (runtime/plan/format.h).
inline constexpr int64_t kArenaAlignment = 64;
/// Bytes of one element of `type` in a plan buffer (i4 rounds up to a byte).
int64_t elementBytes(Type type);
} // namespace mlir::tessel_exec

#endif // TESSEL_DIALECTS_TESSEL_EXEC_IR_TESSELEXECDIALECT_H
