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

#endif // TESSEL_PASSES_TD
