//===- TesselDialect.cpp - The tessel dialect -------------------*- C++ -*-===//
// Registers the dialect's operations, types and attributes; attribute and type
// verifiers and the custom type syntax.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::tessel;

#include "dialects/tessel/IR/TesselDialect.cpp.inc"
#include "dialects/tessel/IR/TesselEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/tessel/IR/TesselAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/tessel/IR/TesselTypes.cpp.inc"

void TesselDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/tessel/IR/TesselOps.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/tessel/IR/TesselTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/tessel/IR/TesselAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// RopeScalingAttr
//===----------------------------------------------------------------------===//

LogicalResult
RopeScalingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        RopeScalingKind kind, APFloat factorValue,
                        int64_t originalMaxPosition, APFloat lowFreqValue,
                        APFloat highFreqValue, APFloat betaFastValue,
                        APFloat betaSlowValue, APFloat mscale,
                        APFloat mscaleAllDim, APFloat attentionFactorValue) {
  double factor = factorValue.convertToDouble();
  double lowFreqFactor = lowFreqValue.convertToDouble();
  double highFreqFactor = highFreqValue.convertToDouble();
  double betaFast = betaFastValue.convertToDouble();
  double betaSlow = betaSlowValue.convertToDouble();
  double attentionFactor = attentionFactorValue.convertToDouble();
  if (!(factor > 0.0))
    return emitError() << "rope scaling factor must be positive, got " << factor;
  if (originalMaxPosition < 0)
    return emitError() << "original_max_position must not be negative, got "
                       << originalMaxPosition;
  switch (kind) {
  case RopeScalingKind::linear:
    break;
  case RopeScalingKind::dynamic:
  case RopeScalingKind::yarn:
    if (originalMaxPosition == 0)
      return emitError() << "'" << stringifyRopeScalingKind(kind)
                         << "' rope scaling needs original_max_position";
    if (kind == RopeScalingKind::yarn && !(betaFast > betaSlow))
      return emitError() << "yarn beta_fast (" << betaFast
                         << ") must exceed beta_slow (" << betaSlow << ")";
    break;
  case RopeScalingKind::llama3:
    if (originalMaxPosition == 0)
      return emitError() << "'llama3' rope scaling needs original_max_position";
    if (!(lowFreqFactor > 0.0) || !(highFreqFactor > lowFreqFactor))
      return emitError() << "llama3 rope scaling needs 0 < low_freq_factor < "
                            "high_freq_factor, got "
                         << lowFreqFactor << " and " << highFreqFactor;
    break;
  }
  if (attentionFactor < 0.0)
    return emitError() << "attention_factor must not be negative, got "
                       << attentionFactor;
  (void)mscale;
  (void)mscaleAllDim;
  return success();
}

//===----------------------------------------------------------------------===//
// ShardingAttr
//===----------------------------------------------------------------------===//

LogicalResult ShardingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   FlatSymbolRefAttr mesh, ArrayAttr splitAxes) {
  llvm::StringSet<> seen;
  for (Attribute dimAxes : splitAxes) {
    auto axes = dyn_cast<ArrayAttr>(dimAxes);
    if (!axes)
      return emitError() << "sharding entries must be arrays of mesh axis names";
    for (Attribute axis : axes) {
      auto name = dyn_cast<StringAttr>(axis);
      if (!name)
        return emitError() << "sharding entries must be arrays of mesh axis names";
      if (!seen.insert(name.getValue()).second)
        return emitError() << "mesh axis '" << name.getValue()
                           << "' shards more than one dimension";
    }
  }
  return success();
}

SmallVector<StringRef> ShardingAttr::getAxesOfDim(unsigned dim) const {
  SmallVector<StringRef> names;
  if (dim >= getSplitAxes().size())
    return names;
  for (Attribute axis : cast<ArrayAttr>(getSplitAxes()[dim]))
    names.push_back(cast<StringAttr>(axis).getValue());
  return names;
}

//===----------------------------------------------------------------------===//
// QuantizedTensorType
//===----------------------------------------------------------------------===//

/// Syntax: `<` dims `x` storage `,` (`per_tensor` | `per_channel` | `group` `=` N)
///         `,` `scale` `=` type `>`
Type QuantizedTensorType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  Type storage;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/false,
                                /*withTrailingX=*/true) ||
      parser.parseType(storage) || parser.parseComma())
    return {};
  StringRef keyword;
  SMLoc schemeLoc = parser.getCurrentLocation();
  if (parser.parseKeyword(&keyword))
    return {};
  std::optional<QuantScheme> scheme = symbolizeQuantScheme(keyword);
  if (!scheme) {
    parser.emitError(schemeLoc, "expected 'per_tensor', 'per_channel' or "
                                "'group', got '")
        << keyword << "'";
    return {};
  }
  int64_t groupSize = 0;
  if (*scheme == QuantScheme::group &&
      (parser.parseEqual() || parser.parseInteger(groupSize)))
    return {};
  Type scale;
  if (parser.parseComma() || parser.parseKeyword("scale") ||
      parser.parseEqual() || parser.parseType(scale) || parser.parseGreater())
    return {};
  return parser.getChecked<QuantizedTensorType>(parser.getContext(), shape,
                                                storage, *scheme, groupSize,
                                                scale);
}

void QuantizedTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  printer.printDimensionList(getShape());
  printer << "x" << getStorageType() << ", "
          << stringifyQuantScheme(getScheme());
  if (getScheme() == QuantScheme::group)
    printer << " = " << getGroupSize();
  printer << ", scale = " << getScaleType() << ">";
}

LogicalResult
QuantizedTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                            ArrayRef<int64_t> shape, Type storageType,
                            QuantScheme scheme, int64_t groupSize,
                            Type scaleType) {
  if (shape.empty())
    return emitError() << "quantized tensor must have at least one dimension";
  for (int64_t dim : shape)
    if (dim <= 0)
      return emitError() << "quantized tensor dimensions must be positive";
  bool isInt8 = storageType.isSignlessInteger(8);
  bool isInt4 = storageType.isSignlessInteger(4);
  bool isFp8 = isa<Float8E4M3FNType>(storageType);
  if (!isInt8 && !isInt4 && !isFp8)
    return emitError() << "quantized storage type must be i8, i4 or f8E4M3FN, got "
                       << storageType;
  if (!scaleType.isF16() && !scaleType.isBF16() && !scaleType.isF32())
    return emitError() << "quantization scale type must be f16, bf16 or f32, got "
                       << scaleType;
  if (scheme == QuantScheme::group) {
    if (groupSize <= 0)
      return emitError() << "group size must be positive, got " << groupSize;
    if (shape.back() % groupSize != 0)
      return emitError() << "group size " << groupSize
                         << " does not divide the reduction dimension "
                         << shape.back();
  } else if (groupSize != 0) {
    return emitError() << "a group size is only allowed with the 'group' scheme";
  }
  if (isInt4 && scheme != QuantScheme::group)
    return emitError() << "i4 weights must be quantized group-wise";
  if (isFp8 && scheme == QuantScheme::group)
    return emitError() << "f8E4M3FN weights take per-tensor or per-channel scales";
  return success();
}

Type QuantizedTensorType::getElementType() const { return getStorageType(); }

bool QuantizedTensorType::hasRank() const { return true; }

ShapedType QuantizedTensorType::cloneWith(std::optional<ArrayRef<int64_t>> shape,
                                          Type elementType) const {
  return QuantizedTensorType::get(getContext(), shape ? *shape : getShape(),
                                  elementType ? elementType : getStorageType(),
                                  getScheme(), getGroupSize(), getScaleType());
}

int64_t QuantizedTensorType::getNumScales() const {
  switch (getScheme()) {
  case QuantScheme::per_tensor:
    return 1;
  case QuantScheme::per_channel:
    return getShape().front();
  case QuantScheme::group:
    return ShapedType::getNumElements(getShape()) / getGroupSize();
  }
  return 0;
}

int64_t QuantizedTensorType::getStorageBytes() const {
  int64_t elements = ShapedType::getNumElements(getShape());
  int64_t dataBits = elements * getStorageType().getIntOrFloatBitWidth();
  int64_t scaleBytes = getNumScales() * getScaleType().getIntOrFloatBitWidth() / 8;
  return (dataBits + 7) / 8 + scaleBytes;
}
