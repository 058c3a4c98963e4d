// --tessel-memory-plan: liveness-based offsets (bytes per token), in-place reuse, peak.
// RUN: tessel-opt %s --split-input-file --tessel-memory-plan | FileCheck %s
// RUN: tessel-opt %s --split-input-file --tessel-memory-plan=emit-remarks=true --verify-diagnostics -o /dev/null

// A chain a -> b -> c -> d of 256 B/token buffers: b and d may share a's bytes once a
// and c are dead; the peak is two buffers.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: tessel_exec.arena_bytes_per_token = 512
// expected-remark @+1 {{@chain arena: 512 bytes per token}}
func.func @chain(%x: memref<?x?x64xf32>, %w: memref<64x64xf32>) -> memref<?x?x64xf32> {
  // CHECK: %[[A:.*]] = tessel_exec.alloc {offset = [[OA:[0-9]+]] : i64}
  %a = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%a : memref<?x?x64xf32>)
  // CHECK: %[[B:.*]] = tessel_exec.alloc {offset = [[OB:[0-9]+]] : i64}
  %b = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%a, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%b : memref<?x?x64xf32>)
  // CHECK: %[[C:.*]] = tessel_exec.alloc {offset = [[OA]] : i64}
  %c = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%b, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%c : memref<?x?x64xf32>)
  // CHECK: %[[D:.*]] = tessel_exec.alloc {offset = [[OB]] : i64}
  %d = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%c, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%d : memref<?x?x64xf32>)
  return %d : memref<?x?x64xf32>
}

// -----

// In-place: the add writes over %a, which dies there; the matmul cannot (it reads whole
// rows), and a buffer still alive later is never overwritten.
// CHECK-LABEL: func.func @in_place
// CHECK-SAME: tessel_exec.arena_bytes_per_token = 512
// expected-remark @+1 {{@in_place arena: 512 bytes per token}}
func.func @in_place(%x: memref<?x?x64xf32>, %w: memref<64x64xf32>) -> (memref<?x?x64xf32>, memref<?x?x64xf32>) {
  // CHECK: tessel_exec.alloc {offset = [[OA:[0-9]+]] : i64}
  %a = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%a : memref<?x?x64xf32>)
  // CHECK: tessel_exec.alloc {offset = [[OB:[0-9]+]] : i64}
  %b = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "silu" ins(%x : memref<?x?x64xf32>) outs(%b : memref<?x?x64xf32>)
  // CHECK: tessel_exec.alloc {offset = [[OA]] : i64}
  %c = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "add" ins(%a, %b : memref<?x?x64xf32>, memref<?x?x64xf32>) outs(%c : memref<?x?x64xf32>)
  return %b, %c : memref<?x?x64xf32>, memref<?x?x64xf32>
}

// -----

// Views keep their buffer alive; sizes round up to 64 bytes; returned buffers live to the end.
// CHECK-LABEL: func.func @views
// CHECK-SAME: tessel_exec.arena_bytes_per_token = 320
// expected-remark @+1 {{@views arena: 320 bytes per token}}
func.func @views(%x: memref<?x?x64xf32>, %w: memref<2x64xf32>) -> memref<?x?x2xf32> {
  // CHECK: tessel_exec.alloc {offset = 0 : i64} : memref<?x?x64xf32>
  %a = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "silu" ins(%x : memref<?x?x64xf32>) outs(%a : memref<?x?x64xf32>)
  %v = tessel_exec.view %a : memref<?x?x64xf32> to memref<?x?x4x16xf32>
  // 2 x f32 = 8 bytes per token, rounded to 64.
  // CHECK: tessel_exec.alloc {offset = 256 : i64} : memref<?x?x2xf32>
  %b = tessel_exec.alloc : memref<?x?x2xf32>
  tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<2x64xf32>) outs(%b : memref<?x?x2xf32>)
  %c = tessel_exec.alloc : memref<?x?x4x16xf32>
  tessel_exec.launch "neg" ins(%v : memref<?x?x4x16xf32>) outs(%c : memref<?x?x4x16xf32>)
  return %b : memref<?x?x2xf32>
}

// -----

// A fusion reads each row of its inputs before it writes that row of any output, so each
// of its outputs may take over a different dying input: the sum takes %a's bytes and the
// normalized value %b's; the peak stays two buffers.
// CHECK-LABEL: func.func @fusion_in_place
// CHECK-SAME: tessel_exec.arena_bytes_per_token = 512
// expected-remark @+1 {{@fusion_in_place arena: 512 bytes per token}}
func.func @fusion_in_place(%x: memref<?x?x64xf32>, %w: memref<64x64xf32>, %g: memref<64xf32>)
    -> (memref<?x?x64xf32>, memref<?x?x64xf32>) {
  // CHECK: tessel_exec.alloc {offset = [[OA:[0-9]+]] : i64}
  %a = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%a : memref<?x?x64xf32>)
  // CHECK: tessel_exec.alloc {offset = [[OB:[0-9]+]] : i64}
  %b = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "matmul" ins(%x, %w : memref<?x?x64xf32>, memref<64x64xf32>) outs(%b : memref<?x?x64xf32>)
  // CHECK: tessel_exec.alloc {offset = [[OA]] : i64}
  // CHECK: tessel_exec.alloc {offset = [[OB]] : i64}
  %s = tessel_exec.alloc : memref<?x?x64xf32>
  %n = tessel_exec.alloc : memref<?x?x64xf32>
  tessel_exec.launch "fusion" ins(%a, %b, %g : memref<?x?x64xf32>, memref<?x?x64xf32>, memref<64xf32>)
      outs(%s, %n : memref<?x?x64xf32>, memref<?x?x64xf32>) {kind = "residual_rms_norm"} body {
  ^bb0(%p: tensor<?x?x64xf32>, %q: tensor<?x?x64xf32>, %r: tensor<64xf32>):
    %0 = tessel.add %p, %q : tensor<?x?x64xf32>
    %1 = tessel.rms_norm %0, %r {epsilon = 1.0e-05 : f64} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
    tessel.yield %0, %1 : tensor<?x?x64xf32>, tensor<?x?x64xf32>
  }
  return %s, %n : memref<?x?x64xf32>, memref<?x?x64xf32>
}
