//===- TesselOps.cpp - tessel operation verifiers ---------------*- C++ -*-===//
// Verifiers of the `tessel` operations: every shape, head-count, routing and mesh
// invariant that a backend relies on is checked here with a message that names the
// values involved.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"

#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::tessel;

namespace {

/// True when two dimension sizes can be equal (either is dynamic, or they are).
bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// Prints a dimension size, `?` when dynamic.
std::string dimStr(int64_t dim) {
  return ShapedType::isDynamic(dim) ? std::string("?") : std::to_string(dim);
}

ArrayRef<int64_t> shapeOf(Value value) {
  return cast<ShapedType>(value.getType()).getShape();
}

int64_t rankOf(Value value) { return shapeOf(value).size(); }

/// Checks that `value` has rank `rank`; `what` names it in the message.
LogicalResult expectRank(Operation *op, Value value, int64_t rank, StringRef what) {
  if (rankOf(value) != rank)
    return op->emitOpError() << "expects " << what << " of rank " << rank
                             << ", got rank " << rankOf(value);
  return success();
}

/// Checks `actual` against `expected` dimension by dimension (dynamic matches anything).
LogicalResult expectShape(Operation *op, Value value, ArrayRef<int64_t> expected,
                          StringRef what) {
  ArrayRef<int64_t> actual = shapeOf(value);
  auto printShape = [](ArrayRef<int64_t> shape) {
    std::string s = "[";
    for (auto [i, dim] : llvm::enumerate(shape))
      s += (i ? ", " : "") + dimStr(dim);
    return s + "]";
  };
  bool ok = actual.size() == expected.size();
  for (size_t i = 0; ok && i < actual.size(); ++i)
    ok = dimsCompatible(actual[i], expected[i]);
  if (!ok)
    return op->emitOpError() << "expects " << what << " of shape "
                             << printShape(expected) << ", got "
                             << printShape(actual);
  return success();
}

/// Looks up the mesh `name` from `op`, with an error when it is missing.
FailureOr<MeshOp> lookupMesh(Operation *op, FlatSymbolRefAttr name,
                             SymbolTableCollection &symbolTable) {
  auto mesh = symbolTable.lookupNearestSymbolFrom<MeshOp>(op, name);
  if (!mesh)
    return op->emitOpError() << "refers to mesh " << name
                             << ", which is not defined";
  return mesh;
}

/// Checks a sharding of a tensor of `type` against its mesh: one entry per dimension,
/// every axis on the mesh, and every static split dimension divisible.
LogicalResult verifySharding(Operation *op, ShardingAttr sharding, ShapedType type,
                             SymbolTableCollection &symbolTable) {
  FailureOr<MeshOp> mesh = lookupMesh(op, sharding.getMesh(), symbolTable);
  if (failed(mesh))
    return failure();
  if (static_cast<int64_t>(sharding.getSplitAxes().size()) != type.getRank())
    return op->emitOpError() << "sharding has " << sharding.getSplitAxes().size()
                             << " entries but the tensor has rank "
                             << type.getRank();
  for (int64_t dim = 0; dim < type.getRank(); ++dim) {
    int64_t parts = 1;
    for (StringRef axis : sharding.getAxesOfDim(dim)) {
      std::optional<int64_t> size = mesh->getAxisSize(axis);
      if (!size)
        return op->emitOpError() << "sharding names axis '" << axis
                                 << "', which mesh @" << mesh->getSymName()
                                 << " does not have";
      parts *= *size;
    }
    int64_t extent = type.getDimSize(dim);
    if (!ShapedType::isDynamic(extent) && extent % parts != 0)
      return op->emitOpError() << "dimension " << dim << " of size " << extent
                               << " cannot be split into " << parts << " parts";
  }
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Weights and meshes
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError() << "needs a non-empty weight name";
  return success();
}

LogicalResult ParamOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  if (!getSharding())
    return success();
  return verifySharding(*this, *getSharding(), cast<ShapedType>(getType()),
                        symbolTable);
}

LogicalResult ExpertParamsOp::verify() {
  StringRef pattern = getNamePattern();
  size_t first = pattern.find("{}");
  if (first == StringRef::npos || pattern.find("{}", first + 1) != StringRef::npos)
    return emitOpError() << "name pattern must contain '{}' exactly once, got '"
                         << pattern << "'";
  auto type = cast<ShapedType>(getType());
  if (type.getRank() < 2)
    return emitOpError() << "expects a result of rank 2 or more (experts first)";
  if (type.getDimSize(0) != static_cast<int64_t>(getCount()))
    return emitOpError() << "stacks " << getCount()
                         << " experts but the result's first dimension is "
                         << dimStr(type.getDimSize(0));
  return success();
}

std::string ExpertParamsOp::getExpertName(int64_t index) {
  StringRef pattern = getNamePattern();
  size_t at = pattern.find("{}");
  return (pattern.take_front(at) + std::to_string(index) + pattern.drop_front(at + 2))
      .str();
}

LogicalResult MeshOp::verify() {
  if (getAxes().empty())
    return emitOpError() << "needs at least one axis";
  if (getAxes().size() != getShape().size())
    return emitOpError() << "has " << getAxes().size() << " axes but "
                         << getShape().size() << " sizes";
  llvm::StringSet<> names;
  for (auto [axis, size] : llvm::zip(getAxes(), getShape())) {
    StringRef name = cast<StringAttr>(axis).getValue();
    if (!names.insert(name).second)
      return emitOpError() << "axis '" << name << "' appears twice";
    if (size <= 0)
      return emitOpError() << "axis '" << name << "' must have a positive size, got "
                           << size;
  }
  return success();
}

std::optional<int64_t> MeshOp::getAxisSize(StringRef name) {
  for (auto [axis, size] : llvm::zip(getAxes(), getShape()))
    if (cast<StringAttr>(axis).getValue() == name)
      return size;
  return std::nullopt;
}

LogicalResult ShardOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifySharding(*this, getSharding(), getType(), symbolTable);
}

//===----------------------------------------------------------------------===//
// Embedding and normalization
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto table = cast<ShapedType>(getTable().getType());
  if (table.getRank() != 2)
    return emitOpError() << "expects a [vocab, hidden] table, got rank "
                         << table.getRank();
  SmallVector<int64_t> expected(shapeOf(getIds()));
  expected.push_back(table.getDimSize(1));
  if (failed(expectShape(*this, getResult(), expected, "a result")))
    return failure();
  if (isa<FloatType>(table.getElementType()) &&
      table.getElementType() != getType().getElementType())
    return emitOpError() << "result element type " << getType().getElementType()
                         << " differs from the table's " << table.getElementType();
  return success();
}

/// Shared by rms_norm and layer_norm: a [hidden] weight (and bias) for [..., hidden].
static LogicalResult verifyNormParams(Operation *op, Value input, Value weight,
                                      Value bias) {
  if (rankOf(input) < 1)
    return op->emitOpError() << "expects an input of rank 1 or more";
  int64_t hidden = shapeOf(input).back();
  if (failed(expectShape(op, weight, {hidden}, "a weight")))
    return failure();
  if (bias && failed(expectShape(op, bias, {hidden}, "a bias")))
    return failure();
  return success();
}

LogicalResult RMSNormOp::verify() {
  return verifyNormParams(*this, getInput(), getWeight(), nullptr);
}

LogicalResult LayerNormOp::verify() {
  return verifyNormParams(*this, getInput(), getWeight(), getBias());
}

//===----------------------------------------------------------------------===//
// Projections
//===----------------------------------------------------------------------===//

int64_t MatmulOp::getReductionSize() {
  ArrayRef<int64_t> w = shapeOf(getWeight());
  return getLayout() == WeightLayout::out_in ? w[1] : w[0];
}

int64_t MatmulOp::getOutputSize() {
  ArrayRef<int64_t> w = shapeOf(getWeight());
  return getLayout() == WeightLayout::out_in ? w[0] : w[1];
}

LogicalResult MatmulOp::verify() {
  if (rankOf(getWeight()) != 2)
    return emitOpError() << "expects a rank-2 weight, got rank " << rankOf(getWeight());
  if (rankOf(getInput()) < 1)
    return emitOpError() << "expects an input of rank 1 or more";
  int64_t inFeatures = shapeOf(getInput()).back();
  if (!dimsCompatible(inFeatures, getReductionSize()))
    return emitOpError() << "weight reduction dimension (" << getReductionSize()
                         << ") does not match the input's last dimension ("
                         << inFeatures << ")";
  SmallVector<int64_t> expected(shapeOf(getInput()).drop_back());
  expected.push_back(getOutputSize());
  if (failed(expectShape(*this, getResult(), expected, "a result")))
    return failure();
  if (getBias() && failed(expectShape(*this, getBias(), {getOutputSize()}, "a bias")))
    return failure();
  if (auto q = dyn_cast<QuantizedTensorType>(getWeight().getType()))
    if (q.getScheme() == QuantScheme::group && getLayout() != WeightLayout::out_in)
      return emitOpError() << "group-quantized weights need the out_in layout, so "
                              "groups run along the reduction dimension";
  return success();
}

//===----------------------------------------------------------------------===//
// Elementwise and shapes
//===----------------------------------------------------------------------===//

LogicalResult SoftmaxOp::verify() {
  int64_t rank = rankOf(getInput());
  int64_t dim = static_cast<int64_t>(getDim());
  if (dim < -rank || dim >= rank)
    return emitOpError() << "dimension " << dim << " is out of range for rank " << rank;
  return success();
}

LogicalResult ReshapeOp::verify() {
  auto in = cast<ShapedType>(getInput().getType());
  auto out = cast<ShapedType>(getType());
  if (in.getElementType() != out.getElementType())
    return emitOpError() << "cannot change the element type (" << in.getElementType()
                         << " to " << out.getElementType() << "); use tessel.cast";
  auto staticProduct = [](ArrayRef<int64_t> shape) {
    int64_t product = 1;
    for (int64_t dim : shape)
      if (!ShapedType::isDynamic(dim))
        product *= dim;
    return product;
  };
  int64_t inDynamic = llvm::count_if(in.getShape(), ShapedType::isDynamic);
  int64_t outDynamic = llvm::count_if(out.getShape(), ShapedType::isDynamic);
  if (outDynamic > inDynamic)
    return emitOpError() << "result has more dynamic dimensions (" << outDynamic
                         << ") than the input (" << inDynamic << ")";
  if (outDynamic == inDynamic &&
      staticProduct(in.getShape()) != staticProduct(out.getShape()))
    return emitOpError() << "static sizes do not match: " << staticProduct(in.getShape())
                         << " elements become " << staticProduct(out.getShape());
  return success();
}

LogicalResult TransposeOp::verify() {
  ArrayRef<int64_t> perm = getPermutation();
  int64_t rank = rankOf(getInput());
  if (static_cast<int64_t>(perm.size()) != rank)
    return emitOpError() << "permutation has " << perm.size()
                         << " entries for an input of rank " << rank;
  SmallVector<bool> used(rank, false);
  SmallVector<int64_t> expected;
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || used[p])
      return emitOpError() << "permutation is not a permutation of 0.." << rank - 1;
    used[p] = true;
    expected.push_back(shapeOf(getInput())[p]);
  }
  if (getElementTypeOrSelf(getInput()) != getElementTypeOrSelf(getResult()))
    return emitOpError() << "cannot change the element type";
  return expectShape(*this, getResult(), expected, "a result");
}

LogicalResult SliceOp::verify() {
  int64_t rank = rankOf(getInput());
  int64_t dim = getDim();
  if (dim < 0 || dim >= rank)
    return emitOpError() << "dimension " << dim << " is out of range for rank " << rank;
  int64_t start = getStart(), size = getSize();
  if (start < 0 || size <= 0)
    return emitOpError() << "needs start >= 0 and size > 0, got start " << start
                         << " and size " << size;
  int64_t extent = shapeOf(getInput())[dim];
  if (!ShapedType::isDynamic(extent) && start + size > extent)
    return emitOpError() << "range [" << start << ", " << start + size
                         << ") exceeds dimension " << dim << " of size " << extent;
  if (getElementTypeOrSelf(getInput()) != getElementTypeOrSelf(getResult()))
    return emitOpError() << "cannot change the element type";
  SmallVector<int64_t> expected(shapeOf(getInput()));
  expected[dim] = size;
  return expectShape(*this, getResult(), expected, "a result");
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError() << "needs at least one input";
  int64_t rank = rankOf(getResult());
  int64_t dim = getDim();
  if (dim < 0 || dim >= rank)
    return emitOpError() << "dimension " << dim << " is out of range for rank " << rank;
  int64_t total = 0;
  for (Value input : getInputs()) {
    if (rankOf(input) != rank)
      return emitOpError() << "expects all inputs of rank " << rank;
    if (getElementTypeOrSelf(input) != getElementTypeOrSelf(getResult()))
      return emitOpError() << "expects all inputs to have the result's element type";
    for (int64_t i = 0; i < rank; ++i)
      if (i != dim && !dimsCompatible(shapeOf(input)[i], shapeOf(getResult())[i]))
        return emitOpError() << "input dimension " << i << " (" << dimStr(shapeOf(input)[i])
                             << ") differs from the result's ("
                             << dimStr(shapeOf(getResult())[i]) << ")";
    int64_t extent = shapeOf(input)[dim];
    total = (ShapedType::isDynamic(extent) || ShapedType::isDynamic(total))
                ? ShapedType::kDynamic
                : total + extent;
  }
  if (!dimsCompatible(total, shapeOf(getResult())[dim]))
    return emitOpError() << "inputs add up to " << total << " along dimension " << dim
                         << " but the result has " << shapeOf(getResult())[dim];
  return success();
}

//===----------------------------------------------------------------------===//
// Rotary embeddings, KV cache, attention
//===----------------------------------------------------------------------===//

/// Positions are [batch, seq] and must agree with the activation's first two dims.
static LogicalResult verifyPositions(Operation *op, Value positions, Value activation) {
  ArrayRef<int64_t> act = shapeOf(activation);
  return expectShape(op, positions, {act[0], act[1]}, "positions");
}

LogicalResult RopeOp::verify() {
  if (failed(expectRank(*this, getInput(), 4, "an input [batch, seq, heads, head_dim]")))
    return failure();
  if (failed(verifyPositions(*this, getPositions(), getInput())))
    return failure();
  int64_t headDim = shapeOf(getInput())[3];
  int64_t rotary = getRotaryDim();
  if (ShapedType::isDynamic(headDim))
    return emitOpError() << "needs a static head dimension";
  if (rotary <= 0 || rotary % 2 != 0)
    return emitOpError() << "rotary dimension (" << rotary
                         << ") must be positive and even";
  if (rotary > headDim)
    return emitOpError() << "rotary dimension (" << rotary
                         << ") exceeds the head dimension (" << headDim << ")";
  return success();
}

LogicalResult KVCacheWriteOp::verify() {
  int64_t rank = rankOf(getCache());
  if (rank < 3)
    return emitOpError() << "expects a cache [batch, capacity, ...] of rank 3 or more";
  SmallVector<int64_t> expected(shapeOf(getCache()));
  expected[1] = shapeOf(getUpdate()).size() > 1 ? shapeOf(getUpdate())[1]
                                                : ShapedType::kDynamic;
  if (failed(expectShape(*this, getUpdate(), expected, "an update")))
    return failure();
  if (getElementTypeOrSelf(getCache()) != getElementTypeOrSelf(getUpdate()))
    return emitOpError() << "update element type " << getElementTypeOrSelf(getUpdate())
                         << " differs from the cache's " << getElementTypeOrSelf(getCache());
  return verifyPositions(*this, getPositions(), getUpdate());
}

/// Masking attributes shared by attention and MLA attention.
static LogicalResult verifyMasking(Operation *op, std::optional<int64_t> window,
                                   std::optional<double> softcap) {
  if (window && *window <= 0)
    return op->emitOpError() << "sliding window must be positive, got " << *window;
  if (softcap && !(*softcap > 0.0))
    return op->emitOpError() << "logit softcap must be positive, got " << *softcap;
  return success();
}

LogicalResult AttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), 4, "a query [batch, seq, heads, head_dim]")) ||
      failed(expectRank(*this, getKey(), 4, "a key [batch, kv_len, kv_heads, head_dim]")) ||
      failed(expectRank(*this, getValue(), 4, "a value [batch, kv_len, kv_heads, head_dim]")))
    return failure();
  ArrayRef<int64_t> q = shapeOf(getQuery()), k = shapeOf(getKey()), v = shapeOf(getValue());
  int64_t heads = q[2], kvHeads = k[2];
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(kvHeads))
    return emitOpError() << "needs static head counts";
  if (heads % kvHeads != 0)
    return emitOpError() << "query heads (" << heads
                         << ") must be a multiple of key/value heads (" << kvHeads << ")";
  if (failed(expectShape(*this, getValue(), {k[0], k[1], kvHeads, v[3]}, "a value")))
    return failure();
  if (!dimsCompatible(q[3], k[3]))
    return emitOpError() << "query head dimension (" << dimStr(q[3])
                         << ") differs from the key's (" << dimStr(k[3]) << ")";
  if (!dimsCompatible(q[0], k[0]))
    return emitOpError() << "query batch (" << dimStr(q[0]) << ") differs from the key's ("
                         << dimStr(k[0]) << ")";
  if (failed(verifyPositions(*this, getPositions(), getQuery())))
    return failure();
  if (failed(expectShape(*this, getResult(), {q[0], q[1], heads, v[3]}, "a result")))
    return failure();
  std::optional<double> softcap;
  if (std::optional<APFloat> cap = getLogitSoftcap())
    softcap = cap->convertToDouble();
  std::optional<int64_t> window;
  if (std::optional<uint64_t> w = getSlidingWindow())
    window = static_cast<int64_t>(*w);
  return verifyMasking(*this, window, softcap);
}

LogicalResult MLAAttentionOp::verify() {
  if (failed(expectRank(*this, getQueryNope(), 4, "query_nope [batch, seq, heads, nope_dim]")) ||
      failed(expectRank(*this, getQueryRope(), 4, "query_rope [batch, seq, heads, rope_dim]")) ||
      failed(expectRank(*this, getLatent(), 3, "a latent cache [batch, kv_len, kv_lora_rank]")) ||
      failed(expectRank(*this, getKeyRope(), 3, "key_rope [batch, kv_len, rope_dim]")) ||
      failed(expectRank(*this, getKvB(), 2, "a kv_b weight")))
    return failure();
  ArrayRef<int64_t> qn = shapeOf(getQueryNope()), qr = shapeOf(getQueryRope());
  ArrayRef<int64_t> lat = shapeOf(getLatent()), kvb = shapeOf(getKvB());
  int64_t heads = qn[2], nope = qn[3], rank = lat[2];
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(nope) ||
      ShapedType::isDynamic(rank))
    return emitOpError() << "needs static heads, nope dimension and latent rank";
  if (failed(expectShape(*this, getQueryRope(), {qn[0], qn[1], heads, qr[3]}, "query_rope")))
    return failure();
  if (failed(expectShape(*this, getKeyRope(), {lat[0], lat[1], qr[3]}, "key_rope")))
    return failure();
  if (kvb[1] != rank)
    return emitOpError() << "kv_b input dimension (" << kvb[1]
                         << ") differs from the latent rank (" << rank << ")";
  if (kvb[0] % heads != 0 || kvb[0] / heads <= nope)
    return emitOpError() << "kv_b rows (" << kvb[0] << ") must be heads (" << heads
                         << ") x (qk_nope_head_dim (" << nope << ") + v_head_dim)";
  int64_t valueDim = kvb[0] / heads - nope;
  if (failed(verifyPositions(*this, getPositions(), getQueryNope())))
    return failure();
  return expectShape(*this, getResult(), {qn[0], qn[1], heads, valueDim}, "a result");
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult MoERouterOp::verify() {
  if (rankOf(getGate()) != 2)
    return emitOpError() << "expects a [experts, hidden] gate weight";
  int64_t experts = shapeOf(getGate())[0];
  int64_t hidden = shapeOf(getInput()).back();
  if (!dimsCompatible(hidden, shapeOf(getGate())[1]))
    return emitOpError() << "gate hidden size (" << shapeOf(getGate())[1]
                         << ") differs from the input's (" << dimStr(hidden) << ")";
  int64_t topK = getTopK(), groups = getNGroup(), topkGroup = getTopkGroup();
  if (topK < 1 || topK > experts)
    return emitOpError() << "top-k (" << topK << ") must be between 1 and the number of "
                         << "experts (" << experts << ")";
  if (groups < 1 || experts % groups != 0)
    return emitOpError() << "expert groups (" << groups
                         << ") must divide the number of experts (" << experts << ")";
  if (topkGroup < 1 || topkGroup > groups)
    return emitOpError() << "topk_group (" << topkGroup << ") must be between 1 and n_group ("
                         << groups << ")";
  if (topK > topkGroup * (experts / groups))
    return emitOpError() << "top-k (" << topK << ") exceeds the " << topkGroup * (experts / groups)
                         << " experts in the " << topkGroup << " selected groups";
  if (!(getRoutedScalingFactor().convertToDouble() > 0.0))
    return emitOpError() << "routed_scaling_factor must be positive";
  if (getCorrectionBias() &&
      failed(expectShape(*this, getCorrectionBias(), {experts}, "a correction bias")))
    return failure();
  SmallVector<int64_t> expected(shapeOf(getInput()).drop_back());
  expected.push_back(topK);
  if (failed(expectShape(*this, getWeights(), expected, "weights")) ||
      failed(expectShape(*this, getIndices(), expected, "indices")))
    return failure();
  return success();
}

LogicalResult MoEExpertsOp::verify() {
  if (getInput().getType() != getResult().getType())
    return emitOpError() << "result type must equal the input type";
  if (rankOf(getGate()) != 3 || rankOf(getUp()) != 3 || rankOf(getDown()) != 3)
    return emitOpError() << "expects stacked expert weights of rank 3";
  ArrayRef<int64_t> gate = shapeOf(getGate());
  int64_t experts = gate[0], inter = gate[1], hidden = gate[2];
  if (!dimsCompatible(hidden, shapeOf(getInput()).back()))
    return emitOpError() << "expert hidden size (" << hidden
                         << ") differs from the input's (" << shapeOf(getInput()).back()
                         << ")";
  if (failed(expectShape(*this, getUp(), {experts, inter, hidden}, "an up weight")) ||
      failed(expectShape(*this, getDown(), {experts, hidden, inter}, "a down weight")))
    return failure();
  SmallVector<int64_t> routed(shapeOf(getInput()).drop_back());
  routed.push_back(shapeOf(getIndices()).back());
  if (failed(expectShape(*this, getWeights(), routed, "routing weights")) ||
      failed(expectShape(*this, getIndices(), routed, "routing indices")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

/// Checks the mesh and axes of a collective; returns the group size.
static FailureOr<int64_t> verifyCollectiveGroup(Operation *op, FlatSymbolRefAttr meshName,
                                                ArrayAttr axes,
                                                SymbolTableCollection &symbolTable) {
  FailureOr<MeshOp> mesh = lookupMesh(op, meshName, symbolTable);
  if (failed(mesh))
    return failure();
  if (axes.empty())
    return op->emitOpError() << "needs at least one mesh axis";
  int64_t group = 1;
  llvm::StringSet<> seen;
  for (Attribute axis : axes) {
    StringRef name = cast<StringAttr>(axis).getValue();
    std::optional<int64_t> size = mesh->getAxisSize(name);
    if (!size)
      return op->emitOpError() << "names axis '" << name << "', which mesh @"
                               << mesh->getSymName() << " does not have";
    if (!seen.insert(name).second)
      return op->emitOpError() << "names axis '" << name << "' twice";
    group *= *size;
  }
  return group;
}

static int64_t groupSizeOf(Operation *op, FlatSymbolRefAttr meshName, ArrayAttr axes) {
  auto mesh = SymbolTable::lookupNearestSymbolFrom<MeshOp>(op, meshName);
  int64_t group = 1;
  for (Attribute axis : axes)
    group *= mesh ? mesh.getAxisSize(cast<StringAttr>(axis).getValue()).value_or(1) : 1;
  return group;
}

/// Checks that `result` is `input` with dimension `dim` multiplied (or divided) by
/// `factor`, all other dimensions equal.
static LogicalResult verifyScaledDim(Operation *op, Value input, Value result, int64_t dim,
                                     int64_t factor, bool divide, StringRef attrName) {
  int64_t rank = rankOf(input);
  if (dim < 0 || dim >= rank)
    return op->emitOpError() << attrName << " " << dim << " is out of range for rank " << rank;
  SmallVector<int64_t> expected(shapeOf(input));
  int64_t extent = expected[dim];
  if (!ShapedType::isDynamic(extent)) {
    if (divide && extent % factor != 0)
      return op->emitOpError() << "dimension " << dim << " of size " << extent
                               << " does not divide among " << factor << " devices";
    expected[dim] = divide ? extent / factor : extent * factor;
  }
  return expectShape(op, result, expected, "a result");
}

#define TESSEL_COLLECTIVE_GROUP_SIZE(OP)                                       \
  int64_t OP::getGroupSize() {                                                 \
    return groupSizeOf(*this, getMeshAttr(), getMeshAxes());                   \
  }
TESSEL_COLLECTIVE_GROUP_SIZE(AllReduceOp)
TESSEL_COLLECTIVE_GROUP_SIZE(AllGatherOp)
TESSEL_COLLECTIVE_GROUP_SIZE(ReduceScatterOp)
TESSEL_COLLECTIVE_GROUP_SIZE(AllToAllOp)
TESSEL_COLLECTIVE_GROUP_SIZE(SendOp)
TESSEL_COLLECTIVE_GROUP_SIZE(RecvOp)
#undef TESSEL_COLLECTIVE_GROUP_SIZE

LogicalResult AllReduceOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyCollectiveGroup(*this, getMeshAttr(), getMeshAxes(), symbolTable);
}

LogicalResult AllGatherOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> group =
      verifyCollectiveGroup(*this, getMeshAttr(), getMeshAxes(), symbolTable);
  if (failed(group))
    return failure();
  return verifyScaledDim(*this, getInput(), getResult(), getDim(), *group,
                         /*divide=*/false, "dim");
}

LogicalResult ReduceScatterOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> group =
      verifyCollectiveGroup(*this, getMeshAttr(), getMeshAxes(), symbolTable);
  if (failed(group))
    return failure();
  return verifyScaledDim(*this, getInput(), getResult(), getDim(), *group,
                         /*divide=*/true, "dim");
}

LogicalResult AllToAllOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> group =
      verifyCollectiveGroup(*this, getMeshAttr(), getMeshAxes(), symbolTable);
  if (failed(group))
    return failure();
  int64_t rank = rankOf(getInput());
  int64_t split = getSplitDim(), concat = getConcatDim();
  if (split < 0 || split >= rank || concat < 0 || concat >= rank)
    return emitOpError() << "split_dim and concat_dim must be in [0, " << rank << ")";
  SmallVector<int64_t> expected(shapeOf(getInput()));
  if (!ShapedType::isDynamic(expected[split])) {
    if (expected[split] % *group != 0)
      return emitOpError() << "dimension " << split << " of size " << expected[split]
                           << " does not divide among " << *group << " devices";
    expected[split] /= *group;
  }
  if (!ShapedType::isDynamic(expected[concat]))
    expected[concat] *= *group;
  return expectShape(*this, getResult(), expected, "a result");
}

/// Point-to-point ops name one axis and a peer index on it.
static LogicalResult verifyPeer(Operation *op, FlatSymbolRefAttr mesh, ArrayAttr axes,
                                int64_t peer, SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> group = verifyCollectiveGroup(op, mesh, axes, symbolTable);
  if (failed(group))
    return failure();
  if (axes.size() != 1)
    return op->emitOpError() << "needs exactly one mesh axis, got " << axes.size();
  if (peer < 0 || peer >= *group)
    return op->emitOpError() << "peer " << peer << " is outside the axis of size " << *group;
  return success();
}

LogicalResult SendOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyPeer(*this, getMeshAttr(), getMeshAxes(), getPeer(), symbolTable);
}

LogicalResult RecvOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyPeer(*this, getMeshAttr(), getMeshAxes(), getPeer(), symbolTable);
}

#define GET_OP_CLASSES
#include "dialects/tessel/IR/TesselOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

bool FusionOp::isFusible(Operation *op) {
  return isa<AddOp, SubOp, MulOp, DivOp, MaxOp, SiluOp, SigmoidOp, ReluOp, ExpOp, TanhOp,
             NegOp, GeluOp, ScaleOp, CastOp, RMSNormOp>(op);
}

YieldOp FusionOp::getYield() { return cast<YieldOp>(getBody().front().getTerminator()); }

int64_t FusionOp::getRowSize() {
  return cast<RankedTensorType>(getResult(0).getType()).getShape().back();
}

LogicalResult FusionOp::verify() {
  if (getResults().empty())
    return emitOpError() << "must return at least one value";
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError() << "has " << getInputs().size() << " inputs but its body takes "
                         << body.getNumArguments() << " arguments";
  for (auto [i, input, arg] : llvm::enumerate(getInputs(), body.getArguments()))
    if (input.getType() != arg.getType())
      return emitOpError() << "input #" << i << " has type " << input.getType()
                           << " but body argument #" << i << " has type " << arg.getType();
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError() << "body must end with tessel.yield";
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError() << "yields " << yield.getValues().size()
                         << " values whose types differ from the results";
  // One shape for every full value; inputs may also be a vector of the last dimension.
  auto shape = cast<RankedTensorType>(getResult(0).getType()).getShape();
  if (shape.empty() || ShapedType::isDynamic(shape.back()))
    return emitOpError() << "results need a static last dimension";
  auto fullShape = [&](Type type) { return cast<ShapedType>(type).getShape() == shape; };
  for (Type type : getResultTypes())
    if (!fullShape(type))
      return emitOpError() << "results must all have one shape";
  for (Type type : getInputs().getTypes()) {
    auto s = cast<ShapedType>(type).getShape();
    if (!fullShape(type) && !(s.size() == 1 && s[0] == shape.back()))
      return emitOpError() << "input of type " << type << " is neither of the result shape "
                           << "nor a vector of its last dimension";
  }
  int norms = 0;
  for (Operation &op : body.without_terminator()) {
    if (!isFusible(&op))
      return emitOpError() << "body holds '" << op.getName() << "', which cannot be fused";
    if (isa<RMSNormOp>(op) && ++norms > 1)
      return emitOpError() << "body holds more than one rms_norm";
    if (!fullShape(op.getResult(0).getType()))
      return emitOpError() << "body value of type " << op.getResult(0).getType()
                           << " does not have the group's shape";
    for (Value operand : op.getOperands()) {
      // Vectors (the norm weight) are only read as the weight of the rms_norm.
      if (!fullShape(operand.getType()) &&
          !(isa<RMSNormOp>(op) && operand == cast<RMSNormOp>(op).getWeight()))
        return emitOpError() << "body op '" << op.getName()
                             << "' reads a vector operand other than a norm weight";
    }
  }
  return success();
}

LogicalResult YieldOp::verify() {
  Operation *parent = (*this)->getParentOp();
  if (!isa_and_nonnull<FusionOp>(parent) &&
      !(parent && parent->getName().getStringRef() == "tessel_exec.launch"))
    return emitOpError() << "must end the body of a tessel.fusion";
  return success();
}
