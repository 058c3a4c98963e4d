//===- Fuse.cpp - groups elementwise chains and norms -----------*- C++ -*-===//
// Implements --tessel-fuse (see Passes.td): elementwise chains, residual add + rms_norm,
// activation * gate, each group moved into one tessel.fusion op.
//
//   %s = tessel.add %h, %a : tensor<?x?x64xbf16>
//   %n = tessel.rms_norm %s, %w {epsilon = 1.0e-05 : f64} : (...) -> tensor<?x?x64xbf16>
//   ... uses of %n, later uses of %s
// becomes
//   %r:2 = tessel.fusion "residual_rms_norm" (%h, %a, %w : ...) -> (...) {
//   ^bb0(%x: ..., %y: ..., %g: ...):
//     %s = tessel.add %x, %y ...
//     %n = tessel.rms_norm %s, %g ...
//     tessel.yield %s, %n ...
//   }
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::tessel {
#define GEN_PASS_DEF_TESSELFUSE
#include "passes/Passes.h.inc"
} // namespace mlir::tessel

using namespace mlir;
using namespace mlir::tessel;

namespace {

/// A group under construction: its ops in block order, their common shape, and whether
/// an rms_norm closed it (the norm is always a group's last op).
struct Group {
  SmallVector<Operation *> ops;
  ArrayRef<int64_t> shape;
  bool closed = false;
  bool dead = false; // merged into another group
};

ArrayRef<int64_t> shapeOf(Value v) { return cast<ShapedType>(v.getType()).getShape(); }

/// Greedy producer-consumer grouping in block order (linear in the number of ops times
/// the uses of each group's values). An op joins the groups of its operands' producers when
/// they have its shape, none is closed by a norm, and no op outside the group that reads a
/// group value comes before it: the fusion op replaces the group at its last op, so every
/// outside reader must follow that op (this also rules out cycles through outside ops).
class Grouper {
public:
  Grouper(Block &block, unsigned maxOps) : block_(block), maxOps_(maxOps) {}

  SmallVector<Group *> run() {
    for (Operation &op : block_) {
      if (!FusionOp::isFusible(&op))
        continue;
      ArrayRef<int64_t> shape = shapeOf(op.getResult(0));
      if (shape.empty() || ShapedType::isDynamic(shape.back()))
        continue;
      auto norm = dyn_cast<RMSNormOp>(op);
      // Groups producing this op's full-shape operands (a norm joins through its input only).
      llvm::SetVector<Group *> producers;
      SmallVector<Value> operands =
          norm ? SmallVector<Value>{norm.getInput()} : llvm::to_vector(op.getOperands());
      for (Value operand : operands) {
        Operation *def = operand.getDefiningOp();
        auto it = def ? groupOf_.find(def) : groupOf_.end();
        if (it != groupOf_.end())
          producers.insert(find(it->second));
      }
      Group *target = nullptr;
      size_t size = 1;
      bool ok = !producers.empty();
      for (Group *g : producers) {
        size += g->ops.size();
        ok = ok && !g->closed && g->shape == shape && outsideReadersFollow(*g, &op);
      }
      ok = ok && size <= maxOps_;
      if (ok) {
        target = producers[0];
        for (Group *g : llvm::drop_begin(producers)) {
          target->ops.append(g->ops);
          g->dead = true;
          g->ops.clear();
          forward_[g] = target;
        }
        llvm::sort(target->ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
      } else {
        groups_.push_back(std::make_unique<Group>());
        target = groups_.back().get();
        target->shape = shape;
      }
      target->ops.push_back(&op);
      target->closed = target->closed || norm;
      groupOf_[&op] = target;
    }
    SmallVector<Group *> result;
    for (auto &g : groups_)
      if (!g->dead && g->ops.size() >= 2)
        result.push_back(g.get());
    return result;
  }

private:
  Group *find(Group *g) {
    while (forward_.count(g))
      g = forward_[g];
    return g;
  }

  bool outsideReadersFollow(const Group &g, Operation *next) {
    llvm::SmallPtrSet<Operation *, 16> members(g.ops.begin(), g.ops.end());
    for (Operation *op : g.ops)
      for (Operation *user : op->getUsers())
        if (user != next && !members.contains(user) && user->isBeforeInBlock(next))
          return false;
    return true;
  }

  Block &block_;
  unsigned maxOps_;
  std::vector<std::unique_ptr<Group>> groups_;
  llvm::DenseMap<Operation *, Group *> groupOf_;
  llvm::DenseMap<Group *, Group *> forward_;
};

/// A name for readers of the IR and of the generated code.
StringRef kindOf(const Group &g) {
  Operation *last = g.ops.back();
  if (auto norm = dyn_cast<RMSNormOp>(last))
    return norm.getInput().getDefiningOp<AddOp>() ? "residual_rms_norm" : "rms_norm";
  if (g.ops.size() == 2 && isa<MulOp>(last)) {
    Operation *act = g.ops.front();
    if (isa<SiluOp>(act)) return "swiglu";
    if (isa<GeluOp>(act)) return "geglu";
    if (isa<SigmoidOp, ReluOp, TanhOp>(act)) return "gated_activation";
  }
  return "elementwise";
}

void materialize(const Group &g) {
  llvm::SmallPtrSet<Operation *, 16> members(g.ops.begin(), g.ops.end());
  llvm::SetVector<Value> inputs;
  SmallVector<Value> results;
  for (Operation *op : g.ops) {
    for (Value operand : op->getOperands()) {
      Operation *def = operand.getDefiningOp();
      if (!def || !members.contains(def))
        inputs.insert(operand);
    }
    for (Value result : op->getResults())
      if (llvm::any_of(result.getUsers(),
                       [&](Operation *user) { return !members.contains(user); }))
        results.push_back(result);
  }
  Operation *last = g.ops.back();
  OpBuilder b(last);
  auto fusion = FusionOp::create(b, last->getLoc(), ValueRange(results).getTypes(),
                                 b.getStringAttr(kindOf(g)), inputs.getArrayRef());
  Block *body = b.createBlock(&fusion.getBody());
  IRMapping map;
  for (Value input : inputs)
    map.map(input, body->addArgument(input.getType(), input.getLoc()));
  for (Operation *op : g.ops)
    b.clone(*op, map);
  YieldOp::create(b, last->getLoc(),
                  llvm::map_to_vector(results, [&](Value v) { return map.lookup(v); }));
  for (auto [result, replacement] : llvm::zip(results, fusion.getResults()))
    result.replaceUsesWithIf(replacement, [&](OpOperand &use) {
      return !members.contains(use.getOwner());
    });
  for (Operation *op : llvm::reverse(g.ops))
    op->erase();
}

struct TesselFusePass : mlir::tessel::impl::TesselFuseBase<TesselFusePass> {
  using Base::Base;
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    for (Block &block : func.getBody()) {
      Grouper grouper(block, maxOps);
      for (Group *g : grouper.run())
        materialize(*g);
    }
  }
};

} // namespace
