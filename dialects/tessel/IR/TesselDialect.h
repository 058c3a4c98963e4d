//===- TesselDialect.h - The tessel dialect ----------------------*- C++ -*-===//
// Declares the `tessel` dialect, its enums, attributes, types and operations.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#ifndef TESSEL_DIALECTS_TESSEL_IR_TESSELDIALECT_H
#define TESSEL_DIALECTS_TESSEL_IR_TESSELDIALECT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/tessel/IR/TesselDialect.h.inc"
#include "dialects/tessel/IR/TesselEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/tessel/IR/TesselAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/tessel/IR/TesselTypes.h.inc"

#define GET_OP_CLASSES
#include "dialects/tessel/IR/TesselOps.h.inc"

#endif // TESSEL_DIALECTS_TESSEL_IR_TESSELDIALECT_H
