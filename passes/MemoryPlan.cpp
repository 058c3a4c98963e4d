//===- MemoryPlan.cpp - liveness-based arena placement ----------*- C++ -*-===//
// Implements --tessel-memory-plan (see Passes.td for the algorithm and its cost).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "dialects/tessel/IR/TesselDialect.h"
#include "dialects/tessel_exec/IR/TesselExecDialect.h"
#include "passes/Passes.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/EquivalenceClasses.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringSet.h"

namespace mlir::tessel {
#define GEN_PASS_DEF_TESSELMEMORYPLAN
#include "passes/Passes.h.inc"
} // namespace mlir::tessel

using namespace mlir;
using namespace mlir::tessel_exec;

namespace {

/// Kernels whose output element i depends only on input element i, so the output may
/// overwrite an input that dies at this launch.
bool isElementwise(StringRef kernel) {
  static const llvm::StringSet<> kernels = {"add", "sub", "mul", "div", "max", "silu",
                                            "sigmoid", "relu", "exp", "tanh", "neg",
                                            "gelu", "scale"};
  return kernels.contains(kernel);
}

struct Interval {
  int64_t start = std::numeric_limits<int64_t>::max();
  int64_t end = -1;
  int64_t bytes = 0;
  bool overlaps(const Interval &other) const {
    return start <= other.end && other.start <= end;
  }
};

/// The allocation a buffer value belongs to (through views), or null.
AllocOp rootAlloc(Value value) {
  while (auto view = value.getDefiningOp<ViewOp>())
    value = view.getSource();
  return value.getDefiningOp<AllocOp>();
}

int64_t planFunction(func::FuncOp func) {
  Block &body = func.front();
  llvm::DenseMap<Operation *, int64_t> index;
  int64_t n = 0;
  for (Operation &op : body)
    index[&op] = n++;

  // Lifetimes of allocations, views counted for their root.
  llvm::MapVector<AllocOp, Interval> life;
  for (auto alloc : body.getOps<AllocOp>())
    life[alloc].bytes = alloc.getBytesPerToken();
  for (Operation &op : body) {
    auto touch = [&](Value v, bool written) {
      AllocOp alloc = rootAlloc(v);
      if (!alloc)
        return;
      Interval &interval = life[alloc];
      int64_t at = isa<func::ReturnOp>(op) ? n : index[&op];
      if (written)
        interval.start = std::min(interval.start, at);
      interval.end = std::max(interval.end, at);
    };
    if (auto launch = dyn_cast<LaunchOp>(op)) {
      for (Value v : launch.getIns())
        touch(v, false);
      for (Value v : launch.getOuts())
        touch(v, true);
    } else if (isa<func::ReturnOp>(op)) {
      for (Value v : op.getOperands())
        touch(v, false);
    }
  }
  for (auto &[alloc, interval] : life)
    if (interval.end < 0) // never used: occupies its own instant
      interval.start = interval.end = index[alloc];
    else if (interval.start > interval.end) // read but never written: live from the start
      interval.start = 0;

  // In-place reuse: merge an elementwise output with an input that dies there.
  llvm::EquivalenceClasses<Operation *> groups;
  for (auto &[alloc, interval] : life)
    groups.insert(alloc);
  for (auto launch : body.getOps<LaunchOp>()) {
    // A fusion's kernel reads element i (or row i) of every input before it writes
    // element i (row i) of any output, so each output may take over a dying input.
    bool fused = launch.getKernel() == "fusion";
    if (!fused && (!isElementwise(launch.getKernel()) || launch.getOuts().size() != 1))
      continue;
    llvm::SmallPtrSet<Operation *, 4> takenOver;
    for (Value outValue : launch.getOuts()) {
      AllocOp out = outValue.getDefiningOp<AllocOp>();
      if (!out)
        continue;
      for (Value in : launch.getIns()) {
        AllocOp source = rootAlloc(in);
        if (!source || source == out || life[source].end != index[launch] ||
            life[source].bytes != life[out].bytes || takenOver.contains(source))
          continue;
        // Only one output may take over a dying input.
        if (groups.getLeaderValue(source) != source.getOperation() &&
            groups.findLeader(source) != groups.findLeader(out))
          continue;
        groups.unionSets(source, out);
        takenOver.insert(source);
        break;
      }
    }
  }
  llvm::MapVector<Operation *, Interval> merged;
  for (auto &[alloc, interval] : life) {
    Interval &group = merged[groups.getLeaderValue(alloc)];
    group.start = std::min(group.start, interval.start);
    group.end = std::max(group.end, interval.end);
    group.bytes = std::max(group.bytes, interval.bytes);
  }

  // Greedy by size: largest first, lowest offset clear of every overlapping placed group.
  SmallVector<Operation *> order = llvm::to_vector(llvm::make_first_range(merged));
  llvm::stable_sort(order, [&](Operation *a, Operation *b) {
    return merged[a].bytes > merged[b].bytes;
  });
  llvm::DenseMap<Operation *, int64_t> offsets;
  SmallVector<Operation *> placed;
  int64_t peak = 0;
  for (Operation *group : order) {
    const Interval &interval = merged[group];
    SmallVector<std::pair<int64_t, int64_t>> busy;
    for (Operation *other : placed)
      if (merged[other].overlaps(interval))
        busy.push_back({offsets[other], offsets[other] + merged[other].bytes});
    llvm::sort(busy);
    int64_t offset = 0;
    for (auto [begin, end] : busy) {
      if (offset + interval.bytes <= begin)
        break;
      offset = std::max(offset, end);
    }
    offsets[group] = offset;
    placed.push_back(group);
    peak = std::max(peak, offset + interval.bytes);
  }
  Builder builder(func.getContext());
  for (auto &[alloc, interval] : life)
    alloc.setOffsetAttr(builder.getI64IntegerAttr(offsets[groups.getLeaderValue(alloc)]));
  func->setAttr("tessel_exec.arena_bytes_per_token", builder.getI64IntegerAttr(peak));
  return peak;
}

struct TesselMemoryPlanPass : mlir::tessel::impl::TesselMemoryPlanBase<TesselMemoryPlanPass> {
  using Base::Base;
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      int64_t peak = planFunction(func);
      if (emitRemarks)
        func.emitRemark() << "@" << func.getSymName() << " arena: " << peak
                          << " bytes per token";
    }
  }
};

} // namespace
