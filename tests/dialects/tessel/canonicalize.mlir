// Folds and canonicalization patterns of the tessel dialect.
// RUN: tessel-opt %s --split-input-file --canonicalize --cse | FileCheck %s

// CHECK-LABEL: func.func @reshape_chain
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x64xf32>)
func.func @reshape_chain(%x: tensor<?x?x64xf32>) -> tensor<?x?x8x8xf32> {
  // CHECK: %[[R:.*]] = tessel.reshape %[[X]] : tensor<?x?x64xf32> to tensor<?x?x8x8xf32>
  // CHECK-NEXT: return %[[R]]
  %0 = tessel.reshape %x : tensor<?x?x64xf32> to tensor<?x?x4x16xf32>
  %1 = tessel.reshape %0 : tensor<?x?x4x16xf32> to tensor<?x?x8x8xf32>
  return %1 : tensor<?x?x8x8xf32>
}

// -----

// CHECK-LABEL: func.func @reshape_round_trip
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x64xf32>)
func.func @reshape_round_trip(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  // CHECK-NOT: tessel.reshape
  // CHECK: return %[[X]]
  %0 = tessel.reshape %x : tensor<?x?x64xf32> to tensor<?x?x4x16xf32>
  %1 = tessel.reshape %0 : tensor<?x?x4x16xf32> to tensor<?x?x64xf32>
  return %1 : tensor<?x?x64xf32>
}

// -----

// CHECK-LABEL: func.func @transpose_pair
// CHECK-SAME: (%[[X:.*]]: tensor<2x3x4xf32>)
func.func @transpose_pair(%x: tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<4x2x3xf32>) {
  // CHECK: %[[T:.*]] = tessel.transpose %[[X]] [2, 0, 1] : tensor<2x3x4xf32> to tensor<4x2x3xf32>
  // CHECK: return %[[X]], %[[T]]
  %0 = tessel.transpose %x [1, 0, 2] : tensor<2x3x4xf32> to tensor<3x2x4xf32>
  %1 = tessel.transpose %0 [1, 0, 2] : tensor<3x2x4xf32> to tensor<2x3x4xf32>
  %2 = tessel.transpose %0 [2, 1, 0] : tensor<3x2x4xf32> to tensor<4x2x3xf32>
  return %1, %2 : tensor<2x3x4xf32>, tensor<4x2x3xf32>
}

// -----

// CHECK-LABEL: func.func @identity_transpose
// CHECK-SAME: (%[[X:.*]]: tensor<2x3xf32>)
func.func @identity_transpose(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  // CHECK-NEXT: return %[[X]]
  %0 = tessel.transpose %x [0, 1] : tensor<2x3xf32> to tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @slices_and_concat
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>)
func.func @slices_and_concat(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x32xf32>) {
  // CHECK: %[[S:.*]] = tessel.slice %[[X]][1, 0, 32]
  // CHECK: return %[[X]], %[[X]], %[[S]]
  %0 = tessel.slice %x [1, 0, 64] : tensor<?x64xf32> to tensor<?x64xf32>
  %1 = tessel.concat %x {dim = 1 : i64} : (tensor<?x64xf32>) -> tensor<?x64xf32>
  %2 = tessel.slice %x [1, 0, 32] : tensor<?x64xf32> to tensor<?x32xf32>
  return %0, %1, %2 : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x32xf32>
}

// -----

// CHECK-LABEL: func.func @scales
// CHECK-SAME: (%[[X:.*]]: tensor<4xf32>)
func.func @scales(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  // CHECK: %[[S:.*]] = tessel.scale %[[X]] by 5.000000e+00
  // CHECK: return %[[X]], %[[S]]
  %0 = tessel.scale %x by 1.0 : tensor<4xf32>
  %1 = tessel.scale %x by 2.0 : tensor<4xf32>
  %2 = tessel.scale %1 by 2.5 : tensor<4xf32>
  return %0, %2 : tensor<4xf32>, tensor<4xf32>
}

// -----

// CHECK-LABEL: func.func @casts
// CHECK-SAME: (%[[B:.*]]: tensor<4xbf16>, %[[F:.*]]: tensor<4xf32>)
func.func @casts(%b: tensor<4xbf16>, %f: tensor<4xf32>) -> (tensor<4xbf16>, tensor<4xf32>, tensor<4xf32>) {
  // A widening round trip is exact and disappears; a narrowing one rounds and stays.
  // CHECK: %[[N:.*]] = tessel.cast %[[F]] : tensor<4xf32> to tensor<4xbf16>
  // CHECK: %[[W:.*]] = tessel.cast %[[N]] : tensor<4xbf16> to tensor<4xf32>
  // CHECK: return %[[B]], %[[W]], %[[F]]
  %0 = tessel.cast %b : tensor<4xbf16> to tensor<4xf32>
  %1 = tessel.cast %0 : tensor<4xf32> to tensor<4xbf16>
  %2 = tessel.cast %f : tensor<4xf32> to tensor<4xbf16>
  %3 = tessel.cast %2 : tensor<4xbf16> to tensor<4xf32>
  %4 = tessel.cast %f : tensor<4xf32> to tensor<4xf32>
  return %1, %3, %4 : tensor<4xbf16>, tensor<4xf32>, tensor<4xf32>
}

// -----

// Duplicate references to one weight (tied embeddings) merge: tessel.param is pure.
// CHECK-LABEL: func.func @tied
func.func @tied() -> (tensor<8x4xf32>, tensor<8x4xf32>) {
  // CHECK: %[[P:.*]] = tessel.param "embed"
  // CHECK-NOT: tessel.param
  // CHECK: return %[[P]], %[[P]]
  %0 = tessel.param "embed" : tensor<8x4xf32>
  %1 = tessel.param "embed" : tensor<8x4xf32>
  return %0, %1 : tensor<8x4xf32>, tensor<8x4xf32>
}
