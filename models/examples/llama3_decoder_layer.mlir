// A Llama-3-8B decoder layer (layer 0) in the tessel dialect: RMSNorm, GQA attention
// (32 query heads, 8 KV heads, head_dim 128) with llama3-scaled RoPE and a KV cache of
// 8192 positions, and the SwiGLU MLP. Printed by tessel-opt: the file round-trips
// byte-identically (tests/models/examples.test).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
module {
  func.func @llama3_8b_decoder_layer_0(%arg0: tensor<?x?x4096xbf16>, %arg1: tensor<?x?xi32>, %arg2: tensor<?x8192x8x128xbf16>, %arg3: tensor<?x8192x8x128xbf16>) -> (tensor<?x?x4096xbf16>, tensor<?x8192x8x128xbf16>, tensor<?x8192x8x128xbf16>) {
    %0 = tessel.param "model.layers.0.input_layernorm.weight" : tensor<4096xbf16>
    %1 = tessel.rms_norm %arg0, %0 {epsilon = 1.000000e-05 : f64} : (tensor<?x?x4096xbf16>, tensor<4096xbf16>) -> tensor<?x?x4096xbf16>
    %2 = tessel.param "model.layers.0.self_attn.q_proj.weight" : tensor<4096x4096xbf16>
    %3 = tessel.param "model.layers.0.self_attn.k_proj.weight" : tensor<1024x4096xbf16>
    %4 = tessel.param "model.layers.0.self_attn.v_proj.weight" : tensor<1024x4096xbf16>
    %5 = tessel.matmul %1, %2 : (tensor<?x?x4096xbf16>, tensor<4096x4096xbf16>) -> tensor<?x?x4096xbf16>
    %6 = tessel.matmul %1, %3 : (tensor<?x?x4096xbf16>, tensor<1024x4096xbf16>) -> tensor<?x?x1024xbf16>
    %7 = tessel.matmul %1, %4 : (tensor<?x?x4096xbf16>, tensor<1024x4096xbf16>) -> tensor<?x?x1024xbf16>
    %8 = tessel.reshape %5 : tensor<?x?x4096xbf16> to tensor<?x?x32x128xbf16>
    %9 = tessel.reshape %6 : tensor<?x?x1024xbf16> to tensor<?x?x8x128xbf16>
    %10 = tessel.reshape %7 : tensor<?x?x1024xbf16> to tensor<?x?x8x128xbf16>
    %11 = tessel.rope %8, %arg1 {rotary_dim = 128 : i64, scaling = #tessel.rope_scaling<kind = llama3, factor = 8.000000e+00, original_max_position = 8192>, theta = 5.000000e+05 : f64} : (tensor<?x?x32x128xbf16>, tensor<?x?xi32>) -> tensor<?x?x32x128xbf16>
    %12 = tessel.rope %9, %arg1 {rotary_dim = 128 : i64, scaling = #tessel.rope_scaling<kind = llama3, factor = 8.000000e+00, original_max_position = 8192>, theta = 5.000000e+05 : f64} : (tensor<?x?x8x128xbf16>, tensor<?x?xi32>) -> tensor<?x?x8x128xbf16>
    %13 = tessel.kv_cache_write %arg2, %12, %arg1 : (tensor<?x8192x8x128xbf16>, tensor<?x?x8x128xbf16>, tensor<?x?xi32>) -> tensor<?x8192x8x128xbf16>
    %14 = tessel.kv_cache_write %arg3, %10, %arg1 : (tensor<?x8192x8x128xbf16>, tensor<?x?x8x128xbf16>, tensor<?x?xi32>) -> tensor<?x8192x8x128xbf16>
    %15 = tessel.attention %11, %13, %14, %arg1 {causal, scale = 0.088388347648318447 : f64} : (tensor<?x?x32x128xbf16>, tensor<?x8192x8x128xbf16>, tensor<?x8192x8x128xbf16>, tensor<?x?xi32>) -> tensor<?x?x32x128xbf16>
    %16 = tessel.reshape %15 : tensor<?x?x32x128xbf16> to tensor<?x?x4096xbf16>
    %17 = tessel.param "model.layers.0.self_attn.o_proj.weight" : tensor<4096x4096xbf16>
    %18 = tessel.matmul %16, %17 : (tensor<?x?x4096xbf16>, tensor<4096x4096xbf16>) -> tensor<?x?x4096xbf16>
    %19 = tessel.add %arg0, %18 : tensor<?x?x4096xbf16>
    %20 = tessel.param "model.layers.0.post_attention_layernorm.weight" : tensor<4096xbf16>
    %21 = tessel.rms_norm %19, %20 {epsilon = 1.000000e-05 : f64} : (tensor<?x?x4096xbf16>, tensor<4096xbf16>) -> tensor<?x?x4096xbf16>
    %22 = tessel.param "model.layers.0.mlp.gate_proj.weight" : tensor<14336x4096xbf16>
    %23 = tessel.param "model.layers.0.mlp.up_proj.weight" : tensor<14336x4096xbf16>
    %24 = tessel.param "model.layers.0.mlp.down_proj.weight" : tensor<4096x14336xbf16>
    %25 = tessel.matmul %21, %22 : (tensor<?x?x4096xbf16>, tensor<14336x4096xbf16>) -> tensor<?x?x14336xbf16>
    %26 = tessel.matmul %21, %23 : (tensor<?x?x4096xbf16>, tensor<14336x4096xbf16>) -> tensor<?x?x14336xbf16>
    %27 = tessel.silu %25 : tensor<?x?x14336xbf16>
    %28 = tessel.mul %27, %26 : tensor<?x?x14336xbf16>
    %29 = tessel.matmul %28, %24 : (tensor<?x?x14336xbf16>, tensor<4096x14336xbf16>) -> tensor<?x?x4096xbf16>
    %30 = tessel.add %19, %29 : tensor<?x?x4096xbf16>
    return %30, %13, %14 : tensor<?x?x4096xbf16>, tensor<?x8192x8x128xbf16>, tensor<?x8192x8x128xbf16>
  }
}

