// Declarations of every tessel pass; registration and base classes are generated.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_PASSES_TD
#define TESSEL_PASSES_TD

include "mlir/Pass/PassBase.td"

def TesselWeightStats : Pass<"tessel-weight-stats", "::mlir::ModuleOp"> {
  let summary = "Counts the parameters and weight bytes each entry point reads";
  let description = [{
    Walks every function and sums the distinct weights it references through
    `tessel.param` and `tessel.expert_params`: a weight referenced twice by name (tied
    embeddings) counts once. Quantized weights count their packed data plus their scales.
    The totals are attached to each function as `tessel.num_params` and
    `tessel.weight_bytes`, and to the module for the union over all functions. They are the
    numerator of the decode floor (weight bytes / HBM bandwidth) that benchmarks report.

    ```mlir
    // Before
    func.func @decode(...) { %w = tessel.param "lm_head.weight" : tensor<32000x4096xbf16> ... }
    // After --tessel-weight-stats
    func.func @decode(...) attributes {tessel.num_params = 131072000 : i64,
                                       tessel.weight_bytes = 262144000 : i64} { ... }
    ```
  }];
  let options = [
    Option<"emitRemarks", "emit-remarks", "bool", /*default=*/"false",
           "Also report the totals of each function as remarks">,
  ];
}

def TesselFuse : Pass<"tessel-fuse", "::mlir::func::FuncOp"> {
  let summary = "Groups elementwise chains, residual add + rms_norm and activation * gate";
  let description = [{
    Walks each function in order and grows groups of fusible ops along producer-consumer
    edges: elementwise ops (`add`, `sub`, `mul`, `div`, `max`, `silu`, `sigmoid`, `relu`,
    `exp`, `tanh`, `neg`, `gelu`, `scale`, `cast`) of one shape, closed by at most one
    `rms_norm` of a group value (residual + norm). `silu(a) * b` (SwiGLU) and the other
    activations times a gate fall out of the same rule. An op joins a group only when no
    op outside the group reads a group value before it (the group is replaced at its last
    op) and the group has no norm yet; groups of one op stay as they are. Each group
    becomes a `tessel.fusion` whose results are the group values read outside it (the sum
    of a residual add that later layers read, the normalized value); the rest live only
    inside the generated kernel and never get a buffer. Linear in the ops of the function
    times the readers of each group's values.

    ```mlir
    // Before
    %g = tessel.silu %gate : tensor<?x?x128xbf16>
    %h = tessel.mul %g, %up : tensor<?x?x128xbf16>
    // After
    %h = tessel.fusion "swiglu" (%gate, %up : tensor<?x?x128xbf16>, tensor<?x?x128xbf16>)
        -> (tensor<?x?x128xbf16>) {
    ^bb0(%a: tensor<?x?x128xbf16>, %b: tensor<?x?x128xbf16>):
      %0 = tessel.silu %a : tensor<?x?x128xbf16>
      %1 = tessel.mul %0, %b : tensor<?x?x128xbf16>
      tessel.yield %1 : tensor<?x?x128xbf16>
    }
    ```
  }];
  let options = [
    Option<"maxOps", "max-ops", "unsigned", /*default=*/"64",
           "Largest number of ops in one group (bounds the generated kernel's size)">,
  ];
}

def TesselLowerToExec : Pass<"tessel-lower-to-exec", "::mlir::ModuleOp"> {
  let summary = "Bufferizes tessel entry points into tessel_exec launches";
  let description = [{
    Rewrites every function from tensors to buffers in destination-passing style: each
    tessel op becomes a `tessel_exec.launch` of the kernel of the same name writing a
    fresh `tessel_exec.alloc`; `tessel.param` and `tessel.expert_params` become
    `tessel_exec.weight`; `tessel.reshape` becomes a `tessel_exec.view` (no copy);
    `tessel.kv_cache_write` writes its cache argument in place. Function arguments and
    results become memrefs of the same shapes.

    ```mlir
    // Before
    %w = tessel.param "w" : tensor<32x64xf32>
    %y = tessel.matmul %x, %w : (tensor<?x?x64xf32>, tensor<32x64xf32>) -> tensor<?x?x32xf32>
    // After
    %w = tessel_exec.weight "w" : memref<32x64xf32>
    %0 = tessel_exec.alloc : memref<?x?x32xf32>
    tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<32x64xf32>)
        outs(%0 : memref<?x?x32xf32>) {layout = #tessel.layout<out_in>}
    ```
  }];
  let dependentDialects = ["::mlir::tessel_exec::TesselExecDialect"];
}

def TesselMemoryPlan : Pass<"tessel-memory-plan", "::mlir::ModuleOp"> {
  let summary = "Places activations in one arena by liveness; reports the peak";
  let description = [{
    For each entry point, computes every `tessel_exec.alloc`'s lifetime (from the launch
    that first writes it to the last launch that reads it or a view of it; returned
    buffers live to the end), merges the output of a purely elementwise launch into an
    input that dies there (in-place reuse), then places the buffers greedily by size,
    largest first, at the lowest 64-byte aligned offset that overlaps no buffer alive at
    the same time (the greedy-by-size strategy of TFLite's arena planner, O(n^2) in the
    number of buffers). Offsets and sizes are in bytes per token. The peak is attached to
    the function as `tessel_exec.arena_bytes_per_token`.

    ```mlir
    // After --tessel-memory-plan
    func.func @decode(...) attributes {tessel_exec.arena_bytes_per_token = 1280 : i64} {
      %0 = tessel_exec.alloc {offset = 0 : i64} : memref<?x1x64xf32>
      %1 = tessel_exec.alloc {offset = 256 : i64} : memref<?x1x128xf32>
    ```
  }];
  let options = [
    Option<"emitRemarks", "emit-remarks", "bool", /*default=*/"false",
           "Report each entry point's arena peak as a remark">,
  ];
}

#endif // TESSEL_PASSES_TD
