// Tests of --tessel-fuse: elementwise chains, residual + rms_norm, activation * gate, and
// the cases it must leave alone.
// RUN: tessel-opt %s --split-input-file --tessel-fuse | FileCheck %s
// RUN: tessel-opt %s --split-input-file --tessel-fuse | tessel-opt --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[G:.*]]: tensor<?x?x128xbf16>, %[[U:.*]]: tensor<?x?x128xbf16>)
func.func @swiglu(%gate: tensor<?x?x128xbf16>, %up: tensor<?x?x128xbf16>) -> tensor<?x?x128xbf16> {
  // CHECK: %[[R:.*]] = tessel.fusion "swiglu"(%[[G]], %[[U]] : tensor<?x?x128xbf16>, tensor<?x?x128xbf16>) -> (tensor<?x?x128xbf16>) {
  // CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<?x?x128xbf16>, %[[B:.*]]: tensor<?x?x128xbf16>):
  // CHECK-NEXT:   %[[S:.*]] = tessel.silu %[[A]]
  // CHECK-NEXT:   %[[M:.*]] = tessel.mul %[[S]], %[[B]]
  // CHECK-NEXT:   tessel.yield %[[M]] : tensor<?x?x128xbf16>
  // CHECK-NEXT: }
  // CHECK-NEXT: return %[[R]]
  %0 = tessel.silu %gate : tensor<?x?x128xbf16>
  %1 = tessel.mul %0, %up : tensor<?x?x128xbf16>
  return %1 : tensor<?x?x128xbf16>
}

// -----

// GELU (tanh) times a gate: the other activations fuse the same way.
// CHECK-LABEL: func.func @geglu
// CHECK: tessel.fusion "geglu"
// CHECK:   tessel.gelu
// CHECK:   tessel.mul
// CHECK-NOT: tessel.gelu
func.func @geglu(%gate: tensor<?x?x128xf32>, %up: tensor<?x?x128xf32>) -> tensor<?x?x128xf32> {
  %0 = tessel.gelu %gate {approximation = #tessel.gelu_approximation<tanh>} : tensor<?x?x128xf32>
  %1 = tessel.mul %up, %0 : tensor<?x?x128xf32>
  return %1 : tensor<?x?x128xf32>
}

// -----

// Residual + norm: the sum is read again later (the next residual), so the group yields
// both the sum and the normalized value.
// CHECK-LABEL: func.func @residual_rms_norm
// CHECK-SAME: (%[[H:.*]]: tensor<?x?x64xbf16>, %[[X:.*]]: tensor<?x?x64xbf16>, %[[W:.*]]: tensor<64xbf16>, %[[WQ:.*]]: tensor<64x64xbf16>)
func.func @residual_rms_norm(%h: tensor<?x?x64xbf16>, %x: tensor<?x?x64xbf16>, %w: tensor<64xbf16>,
                             %wq: tensor<64x64xbf16>) -> tensor<?x?x64xbf16> {
  // CHECK: %[[F:.*]]:2 = tessel.fusion "residual_rms_norm"(%[[H]], %[[X]], %[[W]] : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>, tensor<64xbf16>) -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
  // CHECK:   %[[S:.*]] = tessel.add
  // CHECK:   %[[N:.*]] = tessel.rms_norm %[[S]], %{{.*}} {epsilon = 1.000000e-05 : f64}
  // CHECK:   tessel.yield %[[S]], %[[N]]
  // CHECK: %[[Q:.*]] = tessel.matmul %[[F]]#1, %[[WQ]]
  // CHECK: tessel.add %[[F]]#0, %[[Q]]
  %sum = tessel.add %h, %x : tensor<?x?x64xbf16>
  %n = tessel.rms_norm %sum, %w {epsilon = 1.0e-05 : f64}
      : (tensor<?x?x64xbf16>, tensor<64xbf16>) -> tensor<?x?x64xbf16>
  %q = tessel.matmul %n, %wq : (tensor<?x?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x?x64xbf16>
  %next = tessel.add %sum, %q : tensor<?x?x64xbf16>
  return %next : tensor<?x?x64xbf16>
}

// -----

// A sum with no later use (the final norm): still one kernel, but the sum stays inside
// the group and gets no buffer; only the normalized value leaves it.
// CHECK-LABEL: func.func @sum_without_later_use
// CHECK: %[[F:.*]] = tessel.fusion "residual_rms_norm"({{.*}}) -> (tensor<?x?x64xf32>) {
// CHECK:   %[[S:.*]] = tessel.add
// CHECK:   %[[N:.*]] = tessel.rms_norm %[[S]]
// CHECK:   tessel.yield %[[N]] : tensor<?x?x64xf32>
// CHECK: return %[[F]]
func.func @sum_without_later_use(%h: tensor<?x?x64xf32>, %x: tensor<?x?x64xf32>,
                                 %w: tensor<64xf32>) -> tensor<?x?x64xf32> {
  %sum = tessel.add %h, %x : tensor<?x?x64xf32>
  %n = tessel.rms_norm %sum, %w {epsilon = 1.0e-06 : f64}
      : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return %n : tensor<?x?x64xf32>
}

// -----

// A longer elementwise chain with a cast and a scale; the intermediate values stay inside.
// CHECK-LABEL: func.func @chain
// CHECK: %[[F:.*]] = tessel.fusion "elementwise"({{.*}}) -> (tensor<?x?x32xf32>) {
// CHECK:   tessel.sub
// CHECK:   tessel.exp
// CHECK:   tessel.scale
// CHECK:   tessel.cast
// CHECK:   tessel.max
// CHECK:   tessel.yield
// CHECK-NEXT: }
// CHECK-NEXT: return %[[F]]
func.func @chain(%a: tensor<?x?x32xf32>, %b: tensor<?x?x32xf32>) -> tensor<?x?x32xf32> {
  %0 = tessel.sub %a, %b : tensor<?x?x32xf32>
  %1 = tessel.exp %0 : tensor<?x?x32xf32>
  %2 = tessel.scale %1 by 0.5 : tensor<?x?x32xf32>
  %3 = tessel.cast %2 : tensor<?x?x32xf32> to tensor<?x?x32xbf16>
  %4 = tessel.cast %3 : tensor<?x?x32xbf16> to tensor<?x?x32xf32>
  %5 = tessel.max %4, %a : tensor<?x?x32xf32>
  return %5 : tensor<?x?x32xf32>
}

// -----

// A matmul between two elementwise ops breaks the chain: two groups, the matmul between.
// CHECK-LABEL: func.func @broken_by_matmul
// CHECK: %[[F1:.*]] = tessel.fusion "elementwise"
// CHECK:   tessel.add
// CHECK:   tessel.neg
// CHECK: %[[M:.*]] = tessel.matmul %[[F1]]
// CHECK: tessel.fusion "swiglu"(%[[M]], %{{.*}})
func.func @broken_by_matmul(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %w: tensor<64x64xf32>)
    -> tensor<?x?x64xf32> {
  %0 = tessel.add %a, %b : tensor<?x?x64xf32>
  %1 = tessel.neg %0 : tensor<?x?x64xf32>
  %2 = tessel.matmul %1, %w : (tensor<?x?x64xf32>, tensor<64x64xf32>) -> tensor<?x?x64xf32>
  %3 = tessel.silu %2 : tensor<?x?x64xf32>
  %4 = tessel.mul %3, %b : tensor<?x?x64xf32>
  return %4 : tensor<?x?x64xf32>
}

// -----

// The matmul reads the sum before the mul does: the mul cannot join the add's group (the
// group would replace the add after its reader), so nothing is fused.
// CHECK-LABEL: func.func @read_in_between
// CHECK-NOT: tessel.fusion
// CHECK: tessel.add
// CHECK: tessel.matmul
// CHECK: tessel.mul
func.func @read_in_between(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %w: tensor<64x64xf32>)
    -> tensor<?x?x64xf32> {
  %0 = tessel.add %a, %b : tensor<?x?x64xf32>
  %1 = tessel.matmul %0, %w : (tensor<?x?x64xf32>, tensor<64x64xf32>) -> tensor<?x?x64xf32>
  %2 = tessel.mul %0, %1 : tensor<?x?x64xf32>
  return %2 : tensor<?x?x64xf32>
}

// -----

// Different shapes never share a group; a lone op and a lone norm stay as they are.
// CHECK-LABEL: func.func @different_shapes
// CHECK-NOT: tessel.fusion
func.func @different_shapes(%a: tensor<?x?x64xf32>, %b: tensor<?x?x4x16xf32>, %w: tensor<64xf32>)
    -> (tensor<?x?x64xf32>, tensor<?x?x4x16xf32>) {
  %0 = tessel.silu %a : tensor<?x?x64xf32>
  %1 = tessel.reshape %0 : tensor<?x?x64xf32> to tensor<?x?x4x16xf32>
  %2 = tessel.mul %1, %b : tensor<?x?x4x16xf32>
  %3 = tessel.rms_norm %a, %w {epsilon = 1.0e-05 : f64}
      : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return %3, %2 : tensor<?x?x64xf32>, tensor<?x?x4x16xf32>
}

// -----

// A norm closes its group: the elementwise op after it starts a new one, and a second
// norm of the same sum is not fused into the first group.
// CHECK-LABEL: func.func @norm_closes_group
// CHECK: %[[F:.*]]:2 = tessel.fusion "residual_rms_norm"
// CHECK: tessel.rms_norm %[[F]]#0
// CHECK: tessel.scale %[[F]]#1
func.func @norm_closes_group(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %w: tensor<64xf32>)
    -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  %0 = tessel.add %a, %b : tensor<?x?x64xf32>
  %1 = tessel.rms_norm %0, %w {epsilon = 1.0e-05 : f64}
      : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  %2 = tessel.rms_norm %0, %w {epsilon = 1.0e-06 : f64}
      : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  %3 = tessel.scale %1 by 2.0 : tensor<?x?x64xf32>
  return %2, %3 : tensor<?x?x64xf32>, tensor<?x?x64xf32>
}
