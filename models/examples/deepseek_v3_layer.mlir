// A DeepSeek-V3 MoE decoder layer (layer 3) in the tessel dialect: multi-head latent
// attention (q_lora_rank 1536, kv_lora_rank 512, 128 heads, YaRN RoPE on the 64 rotary
// dims, a compressed latent cache) and the MoE block: sigmoid router with score-correction
// bias, group-limited top-8 of 256 experts, routed scaling 2.5, plus one shared expert.
// Printed by tessel-opt: the file round-trips byte-identically (tests/models/examples.test).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
module {
  func.func @deepseek_v3_decoder_layer_3(%arg0: tensor<?x?x7168xbf16>, %arg1: tensor<?x?xi32>, %arg2: tensor<?x4096x512xbf16>, %arg3: tensor<?x4096x64xbf16>) -> (tensor<?x?x7168xbf16>, tensor<?x4096x512xbf16>, tensor<?x4096x64xbf16>) {
    %0 = tessel.param "model.layers.3.input_layernorm.weight" : tensor<7168xbf16>
    %1 = tessel.rms_norm %arg0, %0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x?x7168xbf16>, tensor<7168xbf16>) -> tensor<?x?x7168xbf16>
    %2 = tessel.param "model.layers.3.self_attn.q_a_proj.weight" : tensor<1536x7168xbf16>
    %3 = tessel.matmul %1, %2 : (tensor<?x?x7168xbf16>, tensor<1536x7168xbf16>) -> tensor<?x?x1536xbf16>
    %4 = tessel.param "model.layers.3.self_attn.q_a_layernorm.weight" : tensor<1536xbf16>
    %5 = tessel.rms_norm %3, %4 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x?x1536xbf16>, tensor<1536xbf16>) -> tensor<?x?x1536xbf16>
    %6 = tessel.param "model.layers.3.self_attn.q_b_proj.weight" : tensor<24576x1536xbf16>
    %7 = tessel.matmul %5, %6 : (tensor<?x?x1536xbf16>, tensor<24576x1536xbf16>) -> tensor<?x?x24576xbf16>
    %8 = tessel.reshape %7 : tensor<?x?x24576xbf16> to tensor<?x?x128x192xbf16>
    %9 = tessel.slice %8[3, 0, 128] : tensor<?x?x128x192xbf16> to tensor<?x?x128x128xbf16>
    %10 = tessel.slice %8[3, 128, 64] : tensor<?x?x128x192xbf16> to tensor<?x?x128x64xbf16>
    %11 = tessel.rope %10, %arg1 {interleaved, rotary_dim = 64 : i64, scaling = #tessel.rope_scaling<kind = yarn, factor = 4.000000e+01, original_max_position = 4096, mscale_all_dim = 1.000000e+00>, theta = 1.000000e+04 : f64} : (tensor<?x?x128x64xbf16>, tensor<?x?xi32>) -> tensor<?x?x128x64xbf16>
    %12 = tessel.param "model.layers.3.self_attn.kv_a_proj_with_mqa.weight" : tensor<576x7168xbf16>
    %13 = tessel.matmul %1, %12 : (tensor<?x?x7168xbf16>, tensor<576x7168xbf16>) -> tensor<?x?x576xbf16>
    %14 = tessel.slice %13[2, 0, 512] : tensor<?x?x576xbf16> to tensor<?x?x512xbf16>
    %15 = tessel.slice %13[2, 512, 64] : tensor<?x?x576xbf16> to tensor<?x?x64xbf16>
    %16 = tessel.param "model.layers.3.self_attn.kv_a_layernorm.weight" : tensor<512xbf16>
    %17 = tessel.rms_norm %14, %16 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x?x512xbf16>, tensor<512xbf16>) -> tensor<?x?x512xbf16>
    %18 = tessel.reshape %15 : tensor<?x?x64xbf16> to tensor<?x?x1x64xbf16>
    %19 = tessel.rope %18, %arg1 {interleaved, rotary_dim = 64 : i64, scaling = #tessel.rope_scaling<kind = yarn, factor = 4.000000e+01, original_max_position = 4096, mscale_all_dim = 1.000000e+00>, theta = 1.000000e+04 : f64} : (tensor<?x?x1x64xbf16>, tensor<?x?xi32>) -> tensor<?x?x1x64xbf16>
    %20 = tessel.reshape %19 : tensor<?x?x1x64xbf16> to tensor<?x?x64xbf16>
    %21 = tessel.kv_cache_write %arg2, %17, %arg1 : (tensor<?x4096x512xbf16>, tensor<?x?x512xbf16>, tensor<?x?xi32>) -> tensor<?x4096x512xbf16>
    %22 = tessel.kv_cache_write %arg3, %20, %arg1 : (tensor<?x4096x64xbf16>, tensor<?x?x64xbf16>, tensor<?x?xi32>) -> tensor<?x4096x64xbf16>
    %23 = tessel.param "model.layers.3.self_attn.kv_b_proj.weight" : tensor<32768x512xbf16>
    %24 = tessel.mla_attention %9, %11, %21, %22, %23, %arg1 {causal, scale = 0.13523377880000001 : f64} : (tensor<?x?x128x128xbf16>, tensor<?x?x128x64xbf16>, tensor<?x4096x512xbf16>, tensor<?x4096x64xbf16>, tensor<32768x512xbf16>, tensor<?x?xi32>) -> tensor<?x?x128x128xbf16>
    %25 = tessel.reshape %24 : tensor<?x?x128x128xbf16> to tensor<?x?x16384xbf16>
    %26 = tessel.param "model.layers.3.self_attn.o_proj.weight" : tensor<7168x16384xbf16>
    %27 = tessel.matmul %25, %26 : (tensor<?x?x16384xbf16>, tensor<7168x16384xbf16>) -> tensor<?x?x7168xbf16>
    %28 = tessel.add %arg0, %27 : tensor<?x?x7168xbf16>
    %29 = tessel.param "model.layers.3.post_attention_layernorm.weight" : tensor<7168xbf16>
    %30 = tessel.rms_norm %28, %29 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x?x7168xbf16>, tensor<7168xbf16>) -> tensor<?x?x7168xbf16>
    %31 = tessel.param "model.layers.3.mlp.gate.weight" : tensor<256x7168xbf16>
    %32 = tessel.param "model.layers.3.mlp.gate.e_score_correction_bias" : tensor<256xf32>
    %weights, %indices = tessel.moe_router %30, %31, %32 {n_group = 8 : i64, norm_topk_prob, routed_scaling_factor = 2.500000e+00 : f64, scoring = #tessel.scoring<sigmoid>, top_k = 8 : i64, topk_group = 4 : i64} : (tensor<?x?x7168xbf16>, tensor<256x7168xbf16>, tensor<256xf32>) -> (tensor<?x?x8xf32>, tensor<?x?x8xi32>)
    %33 = tessel.expert_params "model.layers.3.mlp.experts.{}.gate_proj.weight" count 256 : tensor<256x2048x7168xbf16>
    %34 = tessel.expert_params "model.layers.3.mlp.experts.{}.up_proj.weight" count 256 : tensor<256x2048x7168xbf16>
    %35 = tessel.expert_params "model.layers.3.mlp.experts.{}.down_proj.weight" count 256 : tensor<256x7168x2048xbf16>
    %36 = tessel.moe_experts %30, %weights, %indices, %33, %34, %35 : (tensor<?x?x7168xbf16>, tensor<?x?x8xf32>, tensor<?x?x8xi32>, tensor<256x2048x7168xbf16>, tensor<256x2048x7168xbf16>, tensor<256x7168x2048xbf16>) -> tensor<?x?x7168xbf16>
    %37 = tessel.param "model.layers.3.mlp.shared_experts.gate_proj.weight" : tensor<2048x7168xbf16>
    %38 = tessel.param "model.layers.3.mlp.shared_experts.up_proj.weight" : tensor<2048x7168xbf16>
    %39 = tessel.param "model.layers.3.mlp.shared_experts.down_proj.weight" : tensor<7168x2048xbf16>
    %40 = tessel.matmul %30, %37 : (tensor<?x?x7168xbf16>, tensor<2048x7168xbf16>) -> tensor<?x?x2048xbf16>
    %41 = tessel.matmul %30, %38 : (tensor<?x?x7168xbf16>, tensor<2048x7168xbf16>) -> tensor<?x?x2048xbf16>
    %42 = tessel.silu %40 : tensor<?x?x2048xbf16>
    %43 = tessel.mul %42, %41 : tensor<?x?x2048xbf16>
    %44 = tessel.matmul %43, %39 : (tensor<?x?x2048xbf16>, tensor<7168x2048xbf16>) -> tensor<?x?x7168xbf16>
    %45 = tessel.add %36, %44 : tensor<?x?x7168xbf16>
    %46 = tessel.add %28, %45 : tensor<?x?x7168xbf16>
    return %46, %21, %22 : tensor<?x?x7168xbf16>, tensor<?x4096x512xbf16>, tensor<?x4096x64xbf16>
  }
}

