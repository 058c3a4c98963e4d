// --tessel-weight-stats: distinct weights per function and module, quantized sizes.
// RUN: tessel-opt %s --split-input-file --tessel-weight-stats | FileCheck %s
// RUN: tessel-opt %s --split-input-file --tessel-weight-stats=emit-remarks=true --verify-diagnostics -o /dev/null

// Tied embeddings count once; the module sums the union of both functions.
// CHECK: module attributes {tessel.num_params = 2112 : i64, tessel.weight_bytes = 4224 : i64}
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: tessel.num_params = 2048 : i64, tessel.weight_bytes = 4096 : i64
// expected-remark @+1 {{@prefill reads 1 weights: 2048 parameters, 4096 bytes}}
func.func @prefill(%ids: tensor<?x?xi32>) -> tensor<?x?x128xbf16> {
  %e = tessel.param "embed" : tensor<128x16xbf16>
  %h = tessel.embedding %ids, %e : (tensor<?x?xi32>, tensor<128x16xbf16>) -> tensor<?x?x16xbf16>
  %e2 = tessel.param "embed" : tensor<128x16xbf16>
  %l = tessel.matmul %h, %e2 : (tensor<?x?x16xbf16>, tensor<128x16xbf16>) -> tensor<?x?x128xbf16>
  return %l : tensor<?x?x128xbf16>
}
// CHECK-LABEL: func.func @decode
// CHECK-SAME: tessel.num_params = 2112 : i64, tessel.weight_bytes = 4224 : i64
// expected-remark @+1 {{@decode reads 2 weights: 2112 parameters, 4224 bytes}}
func.func @decode(%ids: tensor<?x1xi32>) -> tensor<?x1x16xbf16> {
  %e = tessel.param "embed" : tensor<128x16xbf16>
  %h = tessel.embedding %ids, %e : (tensor<?x1xi32>, tensor<128x16xbf16>) -> tensor<?x1x16xbf16>
  %n = tessel.param "norm" : tensor<64xbf16>
  return %h : tensor<?x1x16xbf16>
}

// -----

// int4 group-wise: 64*256/2 data bytes + (64*256/128) f16 scales; int8 per channel:
// 64*64 bytes + 64 f32 scales; fp8 per tensor: 64*64 bytes + one f32 scale; two stacked bf16 experts.
// CHECK: tessel.num_params = 28672 : i64, tessel.weight_bytes = 25092 : i64
// expected-remark @+1 {{@quantized reads 4 weights: 28672 parameters, 25092 bytes}}
func.func @quantized() {
  %a = tessel.param "a" : !tessel.qtensor<64x256xi4, group = 128, scale = f16>
  %b = tessel.param "b" : !tessel.qtensor<64x64xi8, per_channel, scale = f32>
  %c = tessel.param "c" : !tessel.qtensor<64x64xf8E4M3FN, per_tensor, scale = f32>
  %d = tessel.expert_params "e.{}.w" count 2 : tensor<2x32x64xbf16>
  return
}
