// Round trip of every tessel op, attribute and type through the printer and parser.
// RUN: tessel-opt %s --split-input-file | tessel-opt --split-input-file | FileCheck %s
// RUN: tessel-opt %s --split-input-file --mlir-print-op-generic | tessel-opt --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<64x32xbf16>, !tessel.qtensor<64x256xi4, group = 128, scale = f16>,
                         !tessel.qtensor<64x32xi8, per_channel, scale = f32>,
                         !tessel.qtensor<64x32xf8E4M3FN, per_tensor, scale = f32>,
                         tensor<8x16x32xbf16>) {
  // CHECK: tessel.param "model.embed_tokens.weight" : tensor<64x32xbf16>
  %0 = tessel.param "model.embed_tokens.weight" : tensor<64x32xbf16>
  // CHECK: tessel.param "w4" : !tessel.qtensor<64x256xi4, group = 128, scale = f16>
  %1 = tessel.param "w4" : !tessel.qtensor<64x256xi4, group = 128, scale = f16>
  // CHECK: tessel.param "w8" : !tessel.qtensor<64x32xi8, per_channel, scale = f32>
  %2 = tessel.param "w8" : !tessel.qtensor<64x32xi8, per_channel, scale = f32>
  // CHECK: tessel.param "wf8" : !tessel.qtensor<64x32xf8E4M3FN, per_tensor, scale = f32>
  %3 = tessel.param "wf8" : !tessel.qtensor<64x32xf8E4M3FN, per_tensor, scale = f32>
  // CHECK: tessel.expert_params "layers.1.mlp.experts.{}.gate_proj.weight" count 8 : tensor<8x16x32xbf16>
  %4 = tessel.expert_params "layers.1.mlp.experts.{}.gate_proj.weight" count 8 : tensor<8x16x32xbf16>
  return %0, %1, %2, %3, %4 : tensor<64x32xbf16>, !tessel.qtensor<64x256xi4, group = 128, scale = f16>,
      !tessel.qtensor<64x32xi8, per_channel, scale = f32>,
      !tessel.qtensor<64x32xf8E4M3FN, per_tensor, scale = f32>, tensor<8x16x32xbf16>
}

// -----

// CHECK: tessel.mesh @mesh axes ["pp", "tp"] shape [2, 4]
tessel.mesh @mesh axes ["pp", "tp"] shape [2, 4]
// CHECK-LABEL: func.func @sharding_and_collectives
func.func @sharding_and_collectives(%x: tensor<?x?x1024xbf16>) -> tensor<?x?x4096xbf16> {
  // CHECK: tessel.param "w" sharded <@mesh, {{\[}}["tp"], []]> : tensor<4096x1024xbf16>
  %w = tessel.param "w" sharded <@mesh, [["tp"], []]> : tensor<4096x1024xbf16>
  // CHECK: tessel.shard %{{.*}} to <@mesh, {{\[}}[], [], ["tp"]]> : tensor<?x?x1024xbf16>
  %s = tessel.shard %x to <@mesh, [[], [], ["tp"]]> : tensor<?x?x1024xbf16>
  // CHECK: tessel.all_reduce %{{.*}} on @mesh ["tp"] : tensor<?x?x1024xbf16>
  %r = tessel.all_reduce %s on @mesh ["tp"] : tensor<?x?x1024xbf16>
  // CHECK: tessel.all_reduce %{{.*}} on @mesh ["tp"] {reduction = #tessel.reduction<max>} : tensor<?x?x1024xbf16>
  %m = tessel.all_reduce %r on @mesh ["tp"] {reduction = #tessel.reduction<max>} : tensor<?x?x1024xbf16>
  // CHECK: tessel.all_gather %{{.*}} on @mesh ["tp"] {dim = 2 : i64} : tensor<?x?x1024xbf16> to tensor<?x?x4096xbf16>
  %g = tessel.all_gather %m on @mesh ["tp"] {dim = 2 : i64} : tensor<?x?x1024xbf16> to tensor<?x?x4096xbf16>
  // CHECK: tessel.reduce_scatter %{{.*}} on @mesh ["tp"] {dim = 2 : i64} : tensor<?x?x4096xbf16> to tensor<?x?x1024xbf16>
  %rs = tessel.reduce_scatter %g on @mesh ["tp"] {dim = 2 : i64} : tensor<?x?x4096xbf16> to tensor<?x?x1024xbf16>
  // CHECK: tessel.send %{{.*}} on @mesh ["pp"] {peer = 1 : i64} : tensor<?x?x1024xbf16>
  tessel.send %rs on @mesh ["pp"] {peer = 1 : i64} : tensor<?x?x1024xbf16>
  // CHECK: tessel.recv on @mesh ["pp"] {peer = 0 : i64} : tensor<?x?x4096xbf16>
  %v = tessel.recv on @mesh ["pp"] {peer = 0 : i64} : tensor<?x?x4096xbf16>
  return %v : tensor<?x?x4096xbf16>
}

// -----

tessel.mesh @ep axes ["ep"] shape [8]
// CHECK-LABEL: func.func @all_to_all
func.func @all_to_all(%x: tensor<64x128x32xbf16>) -> tensor<8x1024x32xbf16> {
  // CHECK: tessel.all_to_all %{{.*}} on @ep ["ep"] {concat_dim = 1 : i64, split_dim = 0 : i64} : tensor<64x128x32xbf16> to tensor<8x1024x32xbf16>
  %y = tessel.all_to_all %x on @ep ["ep"] {split_dim = 0 : i64, concat_dim = 1 : i64} : tensor<64x128x32xbf16> to tensor<8x1024x32xbf16>
  return %y : tensor<8x1024x32xbf16>
}

// -----

// CHECK-LABEL: func.func @dense_ops
func.func @dense_ops(%ids: tensor<?x?xi32>, %x: tensor<?x?x32xf32>) -> tensor<?x?x32xf32> {
  %table = tessel.param "embed" : tensor<64x32xf32>
  // CHECK: tessel.embedding %{{.*}}, %{{.*}} : (tensor<?x?xi32>, tensor<64x32xf32>) -> tensor<?x?x32xf32>
  %h = tessel.embedding %ids, %table : (tensor<?x?xi32>, tensor<64x32xf32>) -> tensor<?x?x32xf32>
  %nw = tessel.param "norm" : tensor<32xf32>
  // CHECK: tessel.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64}
  %n = tessel.rms_norm %h, %nw {epsilon = 1.0e-05 : f64} : (tensor<?x?x32xf32>, tensor<32xf32>) -> tensor<?x?x32xf32>
  // CHECK: tessel.layer_norm %{{.*}}, %{{.*}}, %{{.*}} {epsilon = {{.*}} : f64}
  %ln = tessel.layer_norm %n, %nw, %nw {epsilon = 1.0e-06 : f64} : (tensor<?x?x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<?x?x32xf32>
  %w = tessel.param "w" : tensor<48x32xf32>
  %b = tessel.param "b" : tensor<48xf32>
  // CHECK: tessel.matmul %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x?x32xf32>, tensor<48x32xf32>, tensor<48xf32>) -> tensor<?x?x48xf32>
  %p = tessel.matmul %ln, %w, %b : (tensor<?x?x32xf32>, tensor<48x32xf32>, tensor<48xf32>) -> tensor<?x?x48xf32>
  %wt = tessel.param "wt" : tensor<48x32xf32>
  // CHECK: tessel.matmul %{{.*}}, %{{.*}} {layout = #tessel.layout<in_out>} : (tensor<?x?x48xf32>, tensor<48x32xf32>) -> tensor<?x?x32xf32>
  %o = tessel.matmul %p, %wt {layout = #tessel.layout<in_out>} : (tensor<?x?x48xf32>, tensor<48x32xf32>) -> tensor<?x?x32xf32>
  %q4 = tessel.param "q4" : !tessel.qtensor<48x32xi4, group = 16, scale = f16>
  // CHECK: tessel.matmul %{{.*}}, %{{.*}} : (tensor<?x?x32xf32>, !tessel.qtensor<48x32xi4, group = 16, scale = f16>) -> tensor<?x?x48xf32>
  %oq = tessel.matmul %o, %q4 : (tensor<?x?x32xf32>, !tessel.qtensor<48x32xi4, group = 16, scale = f16>) -> tensor<?x?x48xf32>
  // CHECK: tessel.silu %{{.*}} : tensor<?x?x32xf32>
  %a = tessel.silu %o : tensor<?x?x32xf32>
  // CHECK: tessel.gelu %{{.*}} {approximation = #tessel.gelu_approximation<tanh>} : tensor<?x?x32xf32>
  %g = tessel.gelu %a {approximation = #tessel.gelu_approximation<tanh>} : tensor<?x?x32xf32>
  %s1 = tessel.sigmoid %g : tensor<?x?x32xf32>
  %s2 = tessel.relu %s1 : tensor<?x?x32xf32>
  %s3 = tessel.exp %s2 : tensor<?x?x32xf32>
  %s4 = tessel.tanh %s3 : tensor<?x?x32xf32>
  %s5 = tessel.neg %s4 : tensor<?x?x32xf32>
  // CHECK: tessel.scale %{{.*}} by 2.500000e+00 : tensor<?x?x32xf32>
  %s6 = tessel.scale %s5 by 2.5 : tensor<?x?x32xf32>
  // CHECK: tessel.add
  %e1 = tessel.add %s6, %x : tensor<?x?x32xf32>
  // CHECK: tessel.sub
  %e2 = tessel.sub %e1, %x : tensor<?x?x32xf32>
  // CHECK: tessel.mul
  %e3 = tessel.mul %e2, %x : tensor<?x?x32xf32>
  // CHECK: tessel.div
  %e4 = tessel.div %e3, %x : tensor<?x?x32xf32>
  // CHECK: tessel.max
  %e5 = tessel.max %e4, %x : tensor<?x?x32xf32>
  // CHECK: tessel.cast %{{.*}} : tensor<?x?x32xf32> to tensor<?x?x32xbf16>
  %c = tessel.cast %e5 : tensor<?x?x32xf32> to tensor<?x?x32xbf16>
  %c2 = tessel.cast %c : tensor<?x?x32xbf16> to tensor<?x?x32xf32>
  // CHECK: tessel.softmax %{{.*}} {dim = 2 : i64} : tensor<?x?x32xf32>
  %sm = tessel.softmax %c2 {dim = 2 : i64} : tensor<?x?x32xf32>
  return %sm : tensor<?x?x32xf32>
}

// -----

// CHECK-LABEL: func.func @shape_ops
func.func @shape_ops(%x: tensor<?x?x64xf32>) -> tensor<?x?x4x24xf32> {
  // CHECK: tessel.reshape %{{.*}} : tensor<?x?x64xf32> to tensor<?x?x4x16xf32>
  %r = tessel.reshape %x : tensor<?x?x64xf32> to tensor<?x?x4x16xf32>
  // CHECK: tessel.transpose %{{.*}} [0, 2, 1, 3] : tensor<?x?x4x16xf32> to tensor<?x4x?x16xf32>
  %t = tessel.transpose %r [0, 2, 1, 3] : tensor<?x?x4x16xf32> to tensor<?x4x?x16xf32>
  %t2 = tessel.transpose %t [0, 2, 1, 3] : tensor<?x4x?x16xf32> to tensor<?x?x4x16xf32>
  // CHECK: tessel.slice %{{.*}}[3, 8, 8] : tensor<?x?x4x16xf32> to tensor<?x?x4x8xf32>
  %s = tessel.slice %t2 [3, 8, 8] : tensor<?x?x4x16xf32> to tensor<?x?x4x8xf32>
  // CHECK: tessel.concat %{{.*}}, %{{.*}} {dim = 3 : i64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>) -> tensor<?x?x4x24xf32>
  %c = tessel.concat %t2, %s {dim = 3 : i64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>) -> tensor<?x?x4x24xf32>
  return %c : tensor<?x?x4x24xf32>
}

// -----

// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<?x?x8x16xbf16>, %k: tensor<?x?x2x16xbf16>, %v: tensor<?x?x2x16xbf16>,
                     %pos: tensor<?x?xi32>, %kc: tensor<?x512x2x16xbf16>, %vc: tensor<?x512x2x16xbf16>)
    -> tensor<?x?x8x16xbf16> {
  // CHECK: tessel.rope %{{.*}}, %{{.*}} {rotary_dim = 16 : i64, scaling = #tessel.rope_scaling<kind = llama3, factor = 8.000000e+00, original_max_position = 8192>, theta = 5.000000e+05 : f64}
  %qr = tessel.rope %q, %pos {theta = 500000.0 : f64, rotary_dim = 16 : i64,
      scaling = #tessel.rope_scaling<kind = llama3, factor = 8.0, original_max_position = 8192>}
      : (tensor<?x?x8x16xbf16>, tensor<?x?xi32>) -> tensor<?x?x8x16xbf16>
  // CHECK: tessel.rope %{{.*}}, %{{.*}} {interleaved, rotary_dim = 8 : i64, scaling = #tessel.rope_scaling<kind = yarn, factor = 4.000000e+00, original_max_position = 4096, mscale = 7.070000e-01, mscale_all_dim = 7.070000e-01>, theta = 1.000000e+04 : f64}
  %kr = tessel.rope %k, %pos {theta = 10000.0 : f64, rotary_dim = 8 : i64, interleaved,
      scaling = #tessel.rope_scaling<kind = yarn, factor = 4.0, original_max_position = 4096, mscale = 0.707, mscale_all_dim = 0.707>}
      : (tensor<?x?x2x16xbf16>, tensor<?x?xi32>) -> tensor<?x?x2x16xbf16>
  // CHECK: tessel.kv_cache_write %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x512x2x16xbf16>, tensor<?x?x2x16xbf16>, tensor<?x?xi32>) -> tensor<?x512x2x16xbf16>
  %kc2 = tessel.kv_cache_write %kc, %kr, %pos : (tensor<?x512x2x16xbf16>, tensor<?x?x2x16xbf16>, tensor<?x?xi32>) -> tensor<?x512x2x16xbf16>
  %vc2 = tessel.kv_cache_write %vc, %v, %pos : (tensor<?x512x2x16xbf16>, tensor<?x?x2x16xbf16>, tensor<?x?xi32>) -> tensor<?x512x2x16xbf16>
  // CHECK: tessel.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {causal, scale = 2.500000e-01 : f64, sliding_window = 128 : i64}
  %o = tessel.attention %qr, %kc2, %vc2, %pos {causal, scale = 0.25 : f64, sliding_window = 128 : i64}
      : (tensor<?x?x8x16xbf16>, tensor<?x512x2x16xbf16>, tensor<?x512x2x16xbf16>, tensor<?x?xi32>) -> tensor<?x?x8x16xbf16>
  return %o : tensor<?x?x8x16xbf16>
}

// -----

// CHECK-LABEL: func.func @mla_and_moe
func.func @mla_and_moe(%qn: tensor<?x?x4x16xbf16>, %qr: tensor<?x?x4x8xbf16>, %lat: tensor<?x256x32xbf16>,
                       %kr: tensor<?x256x8xbf16>, %pos: tensor<?x?xi32>, %x: tensor<?x?x64xbf16>)
    -> (tensor<?x?x4x24xbf16>, tensor<?x?x64xbf16>) {
  %kvb = tessel.param "kv_b_proj.weight" : tensor<160x32xbf16>
  // CHECK: tessel.mla_attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {causal, scale = 1.250000e-01 : f64}
  %o = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %pos {causal, scale = 0.125 : f64}
      : (tensor<?x?x4x16xbf16>, tensor<?x?x4x8xbf16>, tensor<?x256x32xbf16>, tensor<?x256x8xbf16>,
         tensor<160x32xbf16>, tensor<?x?xi32>) -> tensor<?x?x4x24xbf16>
  %gate = tessel.param "gate.weight" : tensor<8x64xbf16>
  %bias = tessel.param "gate.e_score_correction_bias" : tensor<8xf32>
  // CHECK: tessel.moe_router %{{.*}}, %{{.*}}, %{{.*}} {n_group = 4 : i64, norm_topk_prob, routed_scaling_factor = 2.500000e+00 : f64, scoring = #tessel.scoring<sigmoid>, top_k = 2 : i64, topk_group = 2 : i64}
  %w, %i = tessel.moe_router %x, %gate, %bias {top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64,
      scoring = #tessel.scoring<sigmoid>, norm_topk_prob, routed_scaling_factor = 2.5 : f64}
      : (tensor<?x?x64xbf16>, tensor<8x64xbf16>, tensor<8xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  %g = tessel.expert_params "experts.{}.gate_proj.weight" count 8 : tensor<8x32x64xbf16>
  %u = tessel.expert_params "experts.{}.up_proj.weight" count 8 : tensor<8x32x64xbf16>
  %d = tessel.expert_params "experts.{}.down_proj.weight" count 8 : tensor<8x64x32xbf16>
  // CHECK: tessel.moe_experts %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x?x64xbf16>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x?x64xbf16>
  %y = tessel.moe_experts %x, %w, %i, %g, %u, %d
      : (tensor<?x?x64xbf16>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<8x32x64xbf16>,
         tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x?x64xbf16>
  return %o, %y : tensor<?x?x4x24xbf16>, tensor<?x?x64xbf16>
}

// -----

// CHECK-LABEL: func.func @fusion
func.func @fusion(%h: tensor<?x?x64xbf16>, %x: tensor<?x?x64xbf16>, %w: tensor<64xbf16>)
    -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
  // CHECK: tessel.fusion "residual_rms_norm"(%{{.*}}, %{{.*}}, %{{.*}} : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>, tensor<64xbf16>) -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
  // CHECK: tessel.yield %{{.*}}, %{{.*}} : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
  %s, %n = tessel.fusion "residual_rms_norm"(%h, %x, %w : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>, tensor<64xbf16>)
      -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
  ^bb0(%a: tensor<?x?x64xbf16>, %b: tensor<?x?x64xbf16>, %g: tensor<64xbf16>):
    %0 = tessel.add %a, %b : tensor<?x?x64xbf16>
    %1 = tessel.rms_norm %0, %g {epsilon = 1.0e-05 : f64} : (tensor<?x?x64xbf16>, tensor<64xbf16>) -> tensor<?x?x64xbf16>
    tessel.yield %0, %1 : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
  }
  return %s, %n : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
}
