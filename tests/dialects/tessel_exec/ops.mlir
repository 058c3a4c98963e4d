// Round trip of the tessel_exec ops.
// RUN: tessel-opt %s | tessel-opt | FileCheck %s
// RUN: tessel-opt %s --mlir-print-op-generic | tessel-opt | FileCheck %s

// CHECK-LABEL: func.func @program
func.func @program(%ids: memref<?x?xi32>, %kc: memref<?x64x2x16xf32>) -> memref<?x?x64xf32> {
  // CHECK: %[[E:.*]] = tessel_exec.weight "embed" : memref<512x64xf32>
  %e = tessel_exec.weight "embed" : memref<512x64xf32>
  // CHECK: tessel_exec.weight "q" {quant = !tessel.qtensor<64x64xi8, group = 32, scale = f16>} : memref<64x64xi8>
  %q = tessel_exec.weight "q" {quant = !tessel.qtensor<64x64xi8, group = 32, scale = f16>} : memref<64x64xi8>
  // CHECK: tessel_exec.weight "e.{}.w" {experts = 4 : i64} : memref<4x8x64xf32>
  %x = tessel_exec.weight "e.{}.w" {experts = 4 : i64} : memref<4x8x64xf32>
  // CHECK: %[[A:.*]] = tessel_exec.alloc {offset = 64 : i64} : memref<?x?x64xf32>
  %a = tessel_exec.alloc {offset = 64 : i64} : memref<?x?x64xf32>
  // CHECK: tessel_exec.launch "embedding" ins(%{{.*}}, %[[E]] : memref<?x?xi32>, memref<512x64xf32>) outs(%[[A]] : memref<?x?x64xf32>)
  tessel_exec.launch "embedding" ins(%ids, %e : memref<?x?xi32>, memref<512x64xf32>) outs(%a : memref<?x?x64xf32>)
  // CHECK: tessel_exec.view %[[A]] : memref<?x?x64xf32> to memref<?x?x4x16xf32>
  %v = tessel_exec.view %a : memref<?x?x64xf32> to memref<?x?x4x16xf32>
  // CHECK: tessel_exec.launch "rms_norm" {{.*}} {epsilon = 1.000000e-05 : f64}
  tessel_exec.launch "rms_norm" ins(%a, %e : memref<?x?x64xf32>, memref<512x64xf32>) outs(%a : memref<?x?x64xf32>) {epsilon = 1.0e-05 : f64}
  return %a : memref<?x?x64xf32>
}
