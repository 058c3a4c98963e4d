// One case per user-facing verifier error of tessel_exec.
// RUN: tessel-opt %s --split-input-file --verify-diagnostics

func.func @alloc_rank() {
  // expected-error @+1 {{expects a [batch, seq, ...] buffer of rank 2 or more}}
  %0 = tessel_exec.alloc : memref<?xf32>
  return
}

// -----

func.func @alloc_dynamic() {
  // expected-error @+1 {{expects static dimensions after [batch, seq]}}
  %0 = tessel_exec.alloc : memref<?x?x?xf32>
  return
}

// -----

func.func @alloc_offset() {
  // expected-error @+1 {{offset 100 is not a multiple of 64}}
  %0 = tessel_exec.alloc {offset = 100 : i64} : memref<?x?x64xf32>
  return
}

// -----

func.func @view_element(%a: memref<?x?x64xf32>) {
  // expected-error @+1 {{cannot change the element type}}
  %0 = tessel_exec.view %a : memref<?x?x64xf32> to memref<?x?x64xf16>
  return
}

// -----

func.func @view_count(%a: memref<?x?x64xf32>) {
  // expected-error @+1 {{changes the number of elements}}
  %0 = tessel_exec.view %a : memref<?x?x64xf32> to memref<?x?x4x8xf32>
  return
}

// -----

func.func @launch_name(%a: memref<?x?x64xf32>) {
  // expected-error @+1 {{needs a kernel name}}
  tessel_exec.launch "" ins(%a : memref<?x?x64xf32>) outs(%a : memref<?x?x64xf32>)
  return
}

// -----

func.func @launch_outputs(%a: memref<?x?x64xf32>) {
  // expected-error @+1 {{writes no output}}
  "tessel_exec.launch"(%a) <{kernel = "silu", operandSegmentSizes = array<i32: 1, 0>}> ({}) : (memref<?x?x64xf32>) -> ()
  return
}
