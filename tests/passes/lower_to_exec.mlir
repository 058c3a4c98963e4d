// --tessel-lower-to-exec: tensors become buffers; ops become launches (DPS).
// RUN: tessel-opt %s --split-input-file --tessel-lower-to-exec | FileCheck %s

// CHECK-LABEL: func.func @layer
// CHECK-SAME: (%[[X:.*]]: memref<?x?x64xf32>, %[[POS:.*]]: memref<?x?xi32>, %[[KC:.*]]: memref<?x32x2x16xf32>) -> (memref<?x?x32xf32>, memref<?x32x2x16xf32>)
func.func @layer(%x: tensor<?x?x64xf32>, %pos: tensor<?x?xi32>, %kc: tensor<?x32x2x16xf32>)
    -> (tensor<?x?x32xf32>, tensor<?x32x2x16xf32>) {
  // CHECK: %[[W:.*]] = tessel_exec.weight "w" : memref<32x64xf32>
  %w = tessel.param "w" : tensor<32x64xf32>
  // CHECK: %[[Y:.*]] = tessel_exec.alloc : memref<?x?x32xf32>
  // CHECK: tessel_exec.launch "matmul" ins(%[[X]], %[[W]] : memref<?x?x64xf32>, memref<32x64xf32>) outs(%[[Y]] : memref<?x?x32xf32>) {layout = #tessel.layout<out_in>}
  %y = tessel.matmul %x, %w : (tensor<?x?x64xf32>, tensor<32x64xf32>) -> tensor<?x?x32xf32>
  // Reshapes are views, no launch.
  // CHECK: %[[V:.*]] = tessel_exec.view %[[Y]] : memref<?x?x32xf32> to memref<?x?x2x16xf32>
  %k = tessel.reshape %y : tensor<?x?x32xf32> to tensor<?x?x2x16xf32>
  // The cache is written in place and returned.
  // CHECK: tessel_exec.launch "kv_cache_write" ins(%[[V]], %[[POS]] : memref<?x?x2x16xf32>, memref<?x?xi32>) outs(%[[KC]] : memref<?x32x2x16xf32>)
  %kc2 = tessel.kv_cache_write %kc, %k, %pos : (tensor<?x32x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x32x2x16xf32>
  // CHECK: return %[[Y]], %[[KC]]
  return %y, %kc2 : tensor<?x?x32xf32>, tensor<?x32x2x16xf32>
}

// -----

// Quantized and stacked weights keep what the artifact writer needs.
// CHECK-LABEL: func.func @weights
func.func @weights(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  // CHECK: tessel_exec.weight "q" {quant = !tessel.qtensor<32x64xi8, group = 32, scale = f16>} : memref<32x64xi8>
  %q = tessel.param "q" : !tessel.qtensor<32x64xi8, group = 32, scale = f16>
  // CHECK: tessel_exec.weight "k" {dequantize = "q4_k"} : memref<64x32xf32>
  %k = tessel.param "k" {tessel.dequantize = "q4_k"} : tensor<64x32xf32>
  // CHECK: tessel_exec.weight "e.{}.w" {experts = 4 : i64} : memref<4x8x64xf32>
  %e = tessel.expert_params "e.{}.w" count 4 : tensor<4x8x64xf32>
  %a = tessel.matmul %x, %q : (tensor<?x?x64xf32>, !tessel.qtensor<32x64xi8, group = 32, scale = f16>) -> tensor<?x?x32xf32>
  %b = tessel.matmul %a, %k : (tensor<?x?x32xf32>, tensor<64x32xf32>) -> tensor<?x?x64xf32>
  // Two results, two buffers.
  // CHECK: %[[RW:.*]] = tessel_exec.alloc : memref<?x?x2xf32>
  // CHECK: %[[RI:.*]] = tessel_exec.alloc : memref<?x?x2xi32>
  // CHECK: tessel_exec.launch "moe_router" {{.*}} outs(%[[RW]], %[[RI]] : memref<?x?x2xf32>, memref<?x?x2xi32>) {{{.*}}top_k = 2 : i64
  %g = tessel.param "g" : tensor<4x64xf32>
  %rw, %ri = tessel.moe_router %b, %g {top_k = 2 : i64} : (tensor<?x?x64xf32>, tensor<4x64xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  %u = tessel.expert_params "e.{}.u" count 4 : tensor<4x8x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x8xf32>
  %y = tessel.moe_experts %b, %rw, %ri, %e, %u, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<4x8x64xf32>, tensor<4x8x64xf32>, tensor<4x64x8xf32>) -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}

// -----

// A fusion becomes one "fusion" launch that carries the group as its body; only its
// results get buffers.
// CHECK-LABEL: func.func @fusion
// CHECK-SAME: (%[[H:.*]]: memref<?x?x64xf32>, %[[X:.*]]: memref<?x?x64xf32>)
// CHECK: %[[W:.*]] = tessel_exec.weight "w" : memref<64xf32>
// CHECK: %[[S:.*]] = tessel_exec.alloc : memref<?x?x64xf32>
// CHECK: %[[N:.*]] = tessel_exec.alloc : memref<?x?x64xf32>
// CHECK-NOT: tessel_exec.alloc
// CHECK: tessel_exec.launch "fusion" ins(%[[H]], %[[X]], %[[W]] : memref<?x?x64xf32>, memref<?x?x64xf32>, memref<64xf32>) outs(%[[S]], %[[N]] : memref<?x?x64xf32>, memref<?x?x64xf32>) {kind = "residual_rms_norm"} body {
// CHECK-NEXT: ^bb0(%{{.*}}: tensor<?x?x64xf32>, %{{.*}}: tensor<?x?x64xf32>, %{{.*}}: tensor<64xf32>):
// CHECK: tessel.add
// CHECK: tessel.rms_norm
// CHECK: tessel.yield
// CHECK: return %[[S]], %[[N]]
func.func @fusion(%h: tensor<?x?x64xf32>, %x: tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  %w = tessel.param "w" : tensor<64xf32>
  %s, %n = tessel.fusion "residual_rms_norm"(%h, %x, %w : tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<64xf32>)
      -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  ^bb0(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %g: tensor<64xf32>):
    %0 = tessel.add %a, %b : tensor<?x?x64xf32>
    %1 = tessel.rms_norm %0, %g {epsilon = 1.0e-05 : f64} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
    tessel.yield %0, %1 : tensor<?x?x64xf32>, tensor<?x?x64xf32>
  }
  return %s, %n : tensor<?x?x64xf32>, tensor<?x?x64xf32>
}
