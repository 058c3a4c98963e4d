// One case per user-facing verifier error of the tessel dialect.
// RUN: tessel-opt %s --split-input-file --verify-diagnostics

func.func @param_empty_name() {
  // expected-error @+1 {{needs a non-empty weight name}}
  %0 = tessel.param "" : tensor<4x4xf32>
  return
}

// -----

func.func @expert_params_pattern() {
  // expected-error @+1 {{name pattern must contain '{}' exactly once, got 'experts.gate.weight'}}
  %0 = tessel.expert_params "experts.gate.weight" count 4 : tensor<4x8x8xf32>
  return
}

// -----

func.func @expert_params_pattern_twice() {
  // expected-error @+1 {{name pattern must contain '{}' exactly once}}
  %0 = tessel.expert_params "e.{}.{}.w" count 4 : tensor<4x8x8xf32>
  return
}

// -----

func.func @expert_params_rank() {
  // expected-error @+1 {{expects a result of rank 2 or more (experts first)}}
  %0 = tessel.expert_params "e.{}.bias" count 4 : tensor<4xf32>
  return
}

// -----

func.func @expert_params_count() {
  // expected-error @+1 {{stacks 8 experts but the result's first dimension is 4}}
  %0 = tessel.expert_params "e.{}.w" count 8 : tensor<4x8x8xf32>
  return
}

// -----

// expected-error @+1 {{'tessel.mesh' op has 2 axes but 1 sizes}}
tessel.mesh @m axes ["dp", "tp"] shape [2]

// -----

// expected-error @+1 {{needs at least one axis}}
tessel.mesh @m axes [] shape []

// -----

// expected-error @+1 {{axis 'tp' appears twice}}
tessel.mesh @m axes ["tp", "tp"] shape [2, 2]

// -----

// expected-error @+1 {{axis 'tp' must have a positive size, got 0}}
tessel.mesh @m axes ["tp"] shape [0]

// -----

func.func @sharding_unknown_mesh() {
  // expected-error @+1 {{refers to mesh @nowhere, which is not defined}}
  %0 = tessel.param "w" sharded <@nowhere, [[], []]> : tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @sharding_rank() {
  // expected-error @+1 {{sharding has 1 entries but the tensor has rank 2}}
  %0 = tessel.param "w" sharded <@m, [["tp"]]> : tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @sharding_unknown_axis() {
  // expected-error @+1 {{sharding names axis 'ep', which mesh @m does not have}}
  %0 = tessel.param "w" sharded <@m, [["ep"], []]> : tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [3]
func.func @sharding_indivisible() {
  // expected-error @+1 {{dimension 0 of size 8 cannot be split into 3 parts}}
  %0 = tessel.param "w" sharded <@m, [["tp"], []]> : tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [2]
func.func @sharding_axis_twice(%x: tensor<8x8xf32>) {
  // expected-error @+1 {{mesh axis 'tp' shards more than one dimension}}
  %0 = tessel.shard %x to <@m, [["tp"], ["tp"]]> : tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [2]
func.func @sharding_entries(%x: tensor<8x8xf32>) {
  // expected-error @+1 {{sharding entries must be arrays of mesh axis names}}
  %0 = tessel.shard %x to <@m, ["tp", []]> : tensor<8x8xf32>
  return
}

// -----

func.func @qtensor_storage() {
  // expected-error @+1 {{quantized storage type must be i8, i4 or f8E4M3FN, got 'i16'}}
  %0 = tessel.param "w" : !tessel.qtensor<8x8xi16, per_channel, scale = f16>
  return
}

// -----

func.func @qtensor_scale() {
  // expected-error @+1 {{quantization scale type must be f16, bf16 or f32, got 'f64'}}
  %0 = tessel.param "w" : !tessel.qtensor<8x8xi8, per_channel, scale = f64>
  return
}

// -----

func.func @qtensor_group_divides() {
  // expected-error @+1 {{group size 128 does not divide the reduction dimension 200}}
  %0 = tessel.param "w" : !tessel.qtensor<64x200xi4, group = 128, scale = f16>
  return
}

// -----

func.func @qtensor_group_positive() {
  // expected-error @+1 {{group size must be positive, got 0}}
  %0 = tessel.param "w" : !tessel.qtensor<64x256xi4, group = 0, scale = f16>
  return
}

// -----

func.func @qtensor_int4_groupwise() {
  // expected-error @+1 {{i4 weights must be quantized group-wise}}
  %0 = tessel.param "w" : !tessel.qtensor<64x256xi4, per_channel, scale = f16>
  return
}

// -----

func.func @qtensor_fp8_scheme() {
  // expected-error @+1 {{f8E4M3FN weights take per-tensor or per-channel scales}}
  %0 = tessel.param "w" : !tessel.qtensor<64x256xf8E4M3FN, group = 128, scale = f32>
  return
}

// -----

func.func @qtensor_dims() {
  // expected-error @+1 {{quantized tensor dimensions must be positive}}
  %0 = tessel.param "w" : !tessel.qtensor<0x256xi8, per_channel, scale = f32>
  return
}

// -----

func.func @qtensor_scheme_keyword() {
  // expected-error @+1 {{expected 'per_tensor', 'per_channel' or 'group', got 'blockwise'}}
  %0 = tessel.param "w" : !tessel.qtensor<64x256xi8, blockwise, scale = f32>
  return
}

// -----

func.func @embedding_table(%ids: tensor<?x?xi32>) {
  %t = tessel.param "t" : tensor<64xf32>
  // expected-error @+1 {{expects a [vocab, hidden] table, got rank 1}}
  %0 = tessel.embedding %ids, %t : (tensor<?x?xi32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @embedding_result(%ids: tensor<?x?xi32>) {
  %t = tessel.param "t" : tensor<64x32xf32>
  // expected-error @+1 {{expects a result of shape [?, ?, 32], got [?, ?, 16]}}
  %0 = tessel.embedding %ids, %t : (tensor<?x?xi32>, tensor<64x32xf32>) -> tensor<?x?x16xf32>
  return
}

// -----

func.func @embedding_element(%ids: tensor<?x?xi32>) {
  %t = tessel.param "t" : tensor<64x32xbf16>
  // expected-error @+1 {{result element type 'f32' differs from the table's 'bf16'}}
  %0 = tessel.embedding %ids, %t : (tensor<?x?xi32>, tensor<64x32xbf16>) -> tensor<?x?x32xf32>
  return
}

// -----

func.func @rms_norm_weight(%x: tensor<?x?x64xf32>) {
  %w = tessel.param "w" : tensor<32xf32>
  // expected-error @+1 {{expects a weight of shape [64], got [32]}}
  %0 = tessel.rms_norm %x, %w {epsilon = 1.0e-5 : f64} : (tensor<?x?x64xf32>, tensor<32xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @rms_norm_epsilon(%x: tensor<?x?x64xf32>) {
  %w = tessel.param "w" : tensor<64xf32>
  // expected-error @+1 {{attribute 'epsilon' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %0 = tessel.rms_norm %x, %w {epsilon = 0.0 : f64} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @rms_norm_rank(%x: tensor<f32>) {
  %w = tessel.param "w" : tensor<1xf32>
  // expected-error @+1 {{expects an input of rank 1 or more}}
  %0 = tessel.rms_norm %x, %w {epsilon = 1.0e-5 : f64} : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return
}

// -----

func.func @layer_norm_bias(%x: tensor<?x64xf32>) {
  %w = tessel.param "w" : tensor<64xf32>
  %b = tessel.param "b" : tensor<63xf32>
  // expected-error @+1 {{expects a bias of shape [64], got [63]}}
  %0 = tessel.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : (tensor<?x64xf32>, tensor<64xf32>, tensor<63xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @matmul_reduction(%x: tensor<?x48xf32>) {
  %w = tessel.param "w" : tensor<32x64xf32>
  // expected-error @+1 {{weight reduction dimension (64) does not match the input's last dimension (48)}}
  %0 = tessel.matmul %x, %w : (tensor<?x48xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @matmul_weight_rank(%x: tensor<?x48xf32>) {
  %w = tessel.param "w" : tensor<2x32x48xf32>
  // expected-error @+1 {{expects a rank-2 weight, got rank 3}}
  %0 = tessel.matmul %x, %w : (tensor<?x48xf32>, tensor<2x32x48xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @matmul_input_rank(%x: tensor<f32>) {
  %w = tessel.param "w" : tensor<32x48xf32>
  // expected-error @+1 {{expects an input of rank 1 or more}}
  %0 = tessel.matmul %x, %w : (tensor<f32>, tensor<32x48xf32>) -> tensor<32xf32>
  return
}

// -----

func.func @matmul_result(%x: tensor<?x48xf32>) {
  %w = tessel.param "w" : tensor<48x32xf32>
  // expected-error @+1 {{expects a result of shape [?, 32], got [?, 48]}}
  %0 = tessel.matmul %x, %w {layout = #tessel.layout<in_out>} : (tensor<?x48xf32>, tensor<48x32xf32>) -> tensor<?x48xf32>
  return
}

// -----

func.func @matmul_bias(%x: tensor<?x48xf32>) {
  %w = tessel.param "w" : tensor<32x48xf32>
  %b = tessel.param "b" : tensor<48xf32>
  // expected-error @+1 {{expects a bias of shape [32], got [48]}}
  %0 = tessel.matmul %x, %w, %b : (tensor<?x48xf32>, tensor<32x48xf32>, tensor<48xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @matmul_group_layout(%x: tensor<?x64xf32>) {
  %w = tessel.param "w" : !tessel.qtensor<64x32xi4, group = 16, scale = f16>
  // expected-error @+1 {{group-quantized weights need the out_in layout, so groups run along the reduction dimension}}
  %0 = tessel.matmul %x, %w {layout = #tessel.layout<in_out>} : (tensor<?x64xf32>, !tessel.qtensor<64x32xi4, group = 16, scale = f16>) -> tensor<?x32xf32>
  return
}

// -----

func.func @softmax_dim(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{dimension 2 is out of range for rank 2}}
  %0 = tessel.softmax %x {dim = 2 : i64} : tensor<?x8xf32>
  return
}

// -----

func.func @reshape_element(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{cannot change the element type ('f32' to 'bf16'); use tessel.cast}}
  %0 = tessel.reshape %x : tensor<?x64xf32> to tensor<?x4x16xbf16>
  return
}

// -----

func.func @reshape_dynamic(%x: tensor<4x64xf32>) {
  // expected-error @+1 {{result has more dynamic dimensions (1) than the input (0)}}
  %0 = tessel.reshape %x : tensor<4x64xf32> to tensor<?x64xf32>
  return
}

// -----

func.func @reshape_size(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{static sizes do not match: 64 elements become 48}}
  %0 = tessel.reshape %x : tensor<?x64xf32> to tensor<?x4x12xf32>
  return
}

// -----

func.func @transpose_length(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{permutation has 2 entries for an input of rank 3}}
  %0 = tessel.transpose %x [1, 0] : tensor<2x3x4xf32> to tensor<3x2x4xf32>
  return
}

// -----

func.func @transpose_perm(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{permutation is not a permutation of 0..2}}
  %0 = tessel.transpose %x [1, 1, 0] : tensor<2x3x4xf32> to tensor<3x3x2xf32>
  return
}

// -----

func.func @transpose_element(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{cannot change the element type}}
  %0 = tessel.transpose %x [1, 0] : tensor<2x3xf32> to tensor<3x2xf16>
  return
}

// -----

func.func @transpose_result(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{expects a result of shape [3, 2], got [2, 3]}}
  %0 = tessel.transpose %x [1, 0] : tensor<2x3xf32> to tensor<2x3xf32>
  return
}

// -----

func.func @slice_dim(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{dimension 2 is out of range for rank 2}}
  %0 = tessel.slice %x [2, 0, 8] : tensor<?x64xf32> to tensor<?x8xf32>
  return
}

// -----

func.func @slice_range(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{range [60, 68) exceeds dimension 1 of size 64}}
  %0 = tessel.slice %x [1, 60, 8] : tensor<?x64xf32> to tensor<?x8xf32>
  return
}

// -----

func.func @slice_size(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{needs start >= 0 and size > 0, got start 0 and size 0}}
  %0 = tessel.slice %x [1, 0, 0] : tensor<?x64xf32> to tensor<?x0xf32>
  return
}

// -----

func.func @slice_element(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{cannot change the element type}}
  %0 = tessel.slice %x [1, 0, 8] : tensor<?x64xf32> to tensor<?x8xf16>
  return
}

// -----

func.func @concat_sum(%a: tensor<?x8xf32>, %b: tensor<?x8xf32>) {
  // expected-error @+1 {{inputs add up to 16 along dimension 1 but the result has 24}}
  %0 = tessel.concat %a, %b {dim = 1 : i64} : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @concat_other_dim(%a: tensor<2x8xf32>, %b: tensor<3x8xf32>) {
  // expected-error @+1 {{input dimension 0 (3) differs from the result's (2)}}
  %0 = tessel.concat %a, %b {dim = 1 : i64} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @concat_rank(%a: tensor<2x8xf32>, %b: tensor<2x8x1xf32>) {
  // expected-error @+1 {{expects all inputs of rank 2}}
  %0 = tessel.concat %a, %b {dim = 1 : i64} : (tensor<2x8xf32>, tensor<2x8x1xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @concat_element(%a: tensor<2x8xf32>, %b: tensor<2x8xf16>) {
  // expected-error @+1 {{expects all inputs to have the result's element type}}
  %0 = tessel.concat %a, %b {dim = 1 : i64} : (tensor<2x8xf32>, tensor<2x8xf16>) -> tensor<2x16xf32>
  return
}

// -----

func.func @concat_dim(%a: tensor<2x8xf32>) {
  // expected-error @+1 {{dimension 5 is out of range for rank 2}}
  %0 = tessel.concat %a {dim = 5 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @concat_empty() {
  // expected-error @+1 {{needs at least one input}}
  %0 = tessel.concat {dim = 0 : i64} : () -> tensor<2x8xf32>
  return
}

// -----

func.func @rope_rank(%x: tensor<?x?x64xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects an input [batch, seq, heads, head_dim] of rank 4, got rank 3}}
  %0 = tessel.rope %x, %p {theta = 10000.0 : f64, rotary_dim = 64 : i64} : (tensor<?x?x64xf32>, tensor<?x?xi32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @rope_odd(%x: tensor<?x?x4x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{rotary dimension (7) must be positive and even}}
  %0 = tessel.rope %x, %p {theta = 10000.0 : f64, rotary_dim = 7 : i64} : (tensor<?x?x4x16xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @rope_too_wide(%x: tensor<?x?x4x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{rotary dimension (32) exceeds the head dimension (16)}}
  %0 = tessel.rope %x, %p {theta = 10000.0 : f64, rotary_dim = 32 : i64} : (tensor<?x?x4x16xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @rope_dynamic_head(%x: tensor<?x?x4x?xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{needs a static head dimension}}
  %0 = tessel.rope %x, %p {theta = 10000.0 : f64, rotary_dim = 16 : i64} : (tensor<?x?x4x?xf32>, tensor<?x?xi32>) -> tensor<?x?x4x?xf32>
  return
}

// -----

func.func @rope_positions(%x: tensor<2x5x4x16xf32>, %p: tensor<2x6xi32>) {
  // expected-error @+1 {{expects positions of shape [2, 5], got [2, 6]}}
  %0 = tessel.rope %x, %p {theta = 10000.0 : f64, rotary_dim = 16 : i64} : (tensor<2x5x4x16xf32>, tensor<2x6xi32>) -> tensor<2x5x4x16xf32>
  return
}

// -----

func.func @rope_theta(%x: tensor<?x?x4x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{attribute 'theta' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %0 = tessel.rope %x, %p {theta = -1.0 : f64, rotary_dim = 16 : i64} : (tensor<?x?x4x16xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @rope_scaling_factor() attributes {
  // expected-error @+1 {{rope scaling factor must be positive, got 0.000000e+00}}
  s = #tessel.rope_scaling<kind = linear, factor = 0.0>} {
  return
}

// -----

func.func @rope_scaling_original() attributes {
  // expected-error @+1 {{'dynamic' rope scaling needs original_max_position}}
  s = #tessel.rope_scaling<kind = dynamic, factor = 2.0>} {
  return
}

// -----

func.func @rope_scaling_negative_original() attributes {
  // expected-error @+1 {{original_max_position must not be negative, got -4}}
  s = #tessel.rope_scaling<kind = linear, original_max_position = -4>} {
  return
}

// -----

func.func @rope_scaling_yarn_betas() attributes {
  // expected-error @+1 {{yarn beta_fast (1.000000e+00) must exceed beta_slow (3.200000e+01)}}
  s = #tessel.rope_scaling<kind = yarn, factor = 4.0, original_max_position = 4096, beta_fast = 1.0, beta_slow = 32.0>} {
  return
}

// -----

func.func @rope_scaling_llama3_original() attributes {
  // expected-error @+1 {{'llama3' rope scaling needs original_max_position}}
  s = #tessel.rope_scaling<kind = llama3, factor = 8.0>} {
  return
}

// -----

func.func @rope_scaling_llama3_freqs() attributes {
  // expected-error @+1 {{llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor, got 4.000000e+00 and 1.000000e+00}}
  s = #tessel.rope_scaling<kind = llama3, factor = 8.0, original_max_position = 8192, low_freq_factor = 4.0, high_freq_factor = 1.0>} {
  return
}

// -----

func.func @rope_scaling_attention_factor() attributes {
  // expected-error @+1 {{attention_factor must not be negative, got -1.000000e+00}}
  s = #tessel.rope_scaling<kind = linear, attention_factor = -1.0>} {
  return
}

// -----

func.func @kv_cache_rank(%c: tensor<?x64xf32>, %u: tensor<?x1xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects a cache [batch, capacity, ...] of rank 3 or more}}
  %0 = tessel.kv_cache_write %c, %u, %p : (tensor<?x64xf32>, tensor<?x1xf32>, tensor<?x?xi32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @kv_cache_update(%c: tensor<?x64x2x16xf32>, %u: tensor<?x?x4x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects an update of shape [?, ?, 2, 16], got [?, ?, 4, 16]}}
  %0 = tessel.kv_cache_write %c, %u, %p : (tensor<?x64x2x16xf32>, tensor<?x?x4x16xf32>, tensor<?x?xi32>) -> tensor<?x64x2x16xf32>
  return
}

// -----

func.func @kv_cache_element(%c: tensor<?x64x2x16xbf16>, %u: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{update element type 'f32' differs from the cache's 'bf16'}}
  %0 = tessel.kv_cache_write %c, %u, %p : (tensor<?x64x2x16xbf16>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x64x2x16xbf16>
  return
}

// -----

func.func @attention_heads(%q: tensor<?x?x8x16xf32>, %k: tensor<?x?x3x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{query heads (8) must be a multiple of key/value heads (3)}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<?x?x8x16xf32>, tensor<?x?x3x16xf32>, tensor<?x?x3x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @attention_rank(%q: tensor<?x?x128xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects a query [batch, seq, heads, head_dim] of rank 4, got rank 3}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<?x?x128xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @attention_dynamic_heads(%q: tensor<?x?x?x16xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{needs static head counts}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<?x?x?x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x?x16xf32>
  return
}

// -----

func.func @attention_value(%q: tensor<?x?x8x16xf32>, %k: tensor<?x?x2x16xf32>, %v: tensor<?x?x4x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects a value of shape [?, ?, 2, 16], got [?, ?, 4, 16]}}
  %0 = tessel.attention %q, %k, %v, %p {causal, scale = 0.25 : f64} : (tensor<?x?x8x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x4x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<?x?x8x32xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{query head dimension (32) differs from the key's (16)}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<?x?x8x32xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @attention_batch(%q: tensor<2x?x8x16xf32>, %k: tensor<3x?x2x16xf32>, %p: tensor<2x?xi32>) {
  // expected-error @+1 {{query batch (2) differs from the key's (3)}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<2x?x8x16xf32>, tensor<3x?x2x16xf32>, tensor<3x?x2x16xf32>, tensor<2x?xi32>) -> tensor<2x?x8x16xf32>
  return
}

// -----

func.func @attention_result(%q: tensor<?x?x8x16xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{expects a result of shape [?, ?, 8, 16], got [?, ?, 2, 16]}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64} : (tensor<?x?x8x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x2x16xf32>
  return
}

// -----

func.func @attention_window(%q: tensor<?x?x8x16xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{sliding window must be positive, got -4}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64, sliding_window = -4 : i64} : (tensor<?x?x8x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @attention_softcap(%q: tensor<?x?x8x16xf32>, %k: tensor<?x?x2x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error @+1 {{logit softcap must be positive, got 0}}
  %0 = tessel.attention %q, %k, %k, %p {causal, scale = 0.25 : f64, logit_softcap = 0.0 : f64} : (tensor<?x?x8x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?xi32>) -> tensor<?x?x8x16xf32>
  return
}

// -----

func.func @mla_kv_b_rows(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<130x32xf32>
  // expected-error @+1 {{kv_b rows (130) must be heads (4) x (qk_nope_head_dim (16) + v_head_dim)}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x32xf32>, tensor<?x64x8xf32>, tensor<130x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_kv_b_rank(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x48xf32>
  // expected-error @+1 {{kv_b input dimension (48) differs from the latent rank (32)}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x32xf32>, tensor<?x64x8xf32>, tensor<128x48xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_key_rope(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x4xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x32xf32>
  // expected-error @+1 {{expects key_rope of shape [?, 64, 8], got [?, 64, 4]}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x32xf32>, tensor<?x64x4xf32>, tensor<128x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_query_rope(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x2x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x32xf32>
  // expected-error @+1 {{expects query_rope of shape [?, ?, 4, 8], got [?, ?, 2, 8]}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x2x8xf32>, tensor<?x64x32xf32>, tensor<?x64x8xf32>, tensor<128x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_latent_rank(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x1x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x32xf32>
  // expected-error @+1 {{expects a latent cache [batch, kv_len, kv_lora_rank] of rank 3, got rank 4}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x1x32xf32>, tensor<?x64x8xf32>, tensor<128x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_dynamic(%qn: tensor<?x?x?x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x32xf32>
  // expected-error @+1 {{needs static heads, nope dimension and latent rank}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x?x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x32xf32>, tensor<?x64x8xf32>, tensor<128x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x16xf32>
  return
}

// -----

func.func @mla_result(%qn: tensor<?x?x4x16xf32>, %qr: tensor<?x?x4x8xf32>, %lat: tensor<?x64x32xf32>, %kr: tensor<?x64x8xf32>, %p: tensor<?x?xi32>) {
  %kvb = tessel.param "kv_b" : tensor<128x32xf32>
  // expected-error @+1 {{expects a result of shape [?, ?, 4, 16], got [?, ?, 4, 8]}}
  %0 = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %p {causal, scale = 0.1 : f64} : (tensor<?x?x4x16xf32>, tensor<?x?x4x8xf32>, tensor<?x64x32xf32>, tensor<?x64x8xf32>, tensor<128x32xf32>, tensor<?x?xi32>) -> tensor<?x?x4x8xf32>
  return
}

// -----

func.func @router_top_k(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{top-k (9) must be between 1 and the number of experts (8)}}
  %w, %i = tessel.moe_router %x, %g {top_k = 9 : i64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x9xf32>, tensor<?x?x9xi32>)
  return
}

// -----

func.func @router_groups(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{expert groups (3) must divide the number of experts (8)}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64, n_group = 3 : i64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_topk_group(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{topk_group (5) must be between 1 and n_group (4)}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64, n_group = 4 : i64, topk_group = 5 : i64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_selected_groups(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{top-k (3) exceeds the 2 experts in the 1 selected groups}}
  %w, %i = tessel.moe_router %x, %g {top_k = 3 : i64, n_group = 4 : i64, topk_group = 1 : i64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x3xf32>, tensor<?x?x3xi32>)
  return
}

// -----

func.func @router_gate_rank(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<512xf32>
  // expected-error @+1 {{expects a [experts, hidden] gate weight}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64} : (tensor<?x?x64xf32>, tensor<512xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_hidden(%x: tensor<?x?x32xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{gate hidden size (64) differs from the input's (32)}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64} : (tensor<?x?x32xf32>, tensor<8x64xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_scaling(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{routed_scaling_factor must be positive}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64, routed_scaling_factor = 0.0 : f64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_bias(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  %b = tessel.param "b" : tensor<4xf32>
  // expected-error @+1 {{expects a correction bias of shape [8], got [4]}}
  %w, %i = tessel.moe_router %x, %g, %b {top_k = 2 : i64, scoring = #tessel.scoring<sigmoid>} : (tensor<?x?x64xf32>, tensor<8x64xf32>, tensor<4xf32>) -> (tensor<?x?x2xf32>, tensor<?x?x2xi32>)
  return
}

// -----

func.func @router_results(%x: tensor<?x?x64xf32>) {
  %g = tessel.param "g" : tensor<8x64xf32>
  // expected-error @+1 {{expects weights of shape [?, ?, 2], got [?, ?, 3]}}
  %w, %i = tessel.moe_router %x, %g {top_k = 2 : i64} : (tensor<?x?x64xf32>, tensor<8x64xf32>) -> (tensor<?x?x3xf32>, tensor<?x?x3xi32>)
  return
}

// -----

func.func @experts_result(%x: tensor<?x?x64xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x2xi32>) {
  %g = tessel.expert_params "e.{}.g" count 4 : tensor<4x32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x32xf32>
  // expected-error @+1 {{result type must equal the input type}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %g, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x?x32xf32>
  return
}

// -----

func.func @experts_rank(%x: tensor<?x?x64xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x2xi32>) {
  %g = tessel.param "g" : tensor<32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x32xf32>
  // expected-error @+1 {{expects stacked expert weights of rank 3}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %g, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @experts_hidden(%x: tensor<?x?x48xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x2xi32>) {
  %g = tessel.expert_params "e.{}.g" count 4 : tensor<4x32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x32xf32>
  // expected-error @+1 {{expert hidden size (64) differs from the input's (48)}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %g, %d : (tensor<?x?x48xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x?x48xf32>
  return
}

// -----

func.func @experts_down(%x: tensor<?x?x64xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x2xi32>) {
  %g = tessel.expert_params "e.{}.g" count 4 : tensor<4x32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x16xf32>
  // expected-error @+1 {{expects a down weight of shape [4, 64, 32], got [4, 64, 16]}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %g, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x16xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @experts_up(%x: tensor<?x?x64xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x2xi32>) {
  %g = tessel.expert_params "e.{}.g" count 4 : tensor<4x32x64xf32>
  %u = tessel.expert_params "e.{}.u" count 8 : tensor<8x32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x32xf32>
  // expected-error @+1 {{expects an up weight of shape [4, 32, 64], got [8, 32, 64]}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %u, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<4x32x64xf32>, tensor<8x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @experts_routing(%x: tensor<?x?x64xf32>, %w: tensor<?x?x2xf32>, %i: tensor<?x?x3xi32>) {
  %g = tessel.expert_params "e.{}.g" count 4 : tensor<4x32x64xf32>
  %d = tessel.expert_params "e.{}.d" count 4 : tensor<4x64x32xf32>
  // expected-error @+1 {{expects routing weights of shape [?, ?, 3], got [?, ?, 2]}}
  %0 = tessel.moe_experts %x, %w, %i, %g, %g, %d : (tensor<?x?x64xf32>, tensor<?x?x2xf32>, tensor<?x?x3xi32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x?x64xf32>
  return
}

// -----

func.func @collective_mesh(%x: tensor<8xf32>) {
  // expected-error @+1 {{refers to mesh @absent, which is not defined}}
  %0 = tessel.all_reduce %x on @absent ["tp"] : tensor<8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @collective_axis(%x: tensor<8xf32>) {
  // expected-error @+1 {{names axis 'ep', which mesh @m does not have}}
  %0 = tessel.all_reduce %x on @m ["ep"] : tensor<8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @collective_no_axis(%x: tensor<8xf32>) {
  // expected-error @+1 {{needs at least one mesh axis}}
  %0 = tessel.all_reduce %x on @m [] : tensor<8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @collective_axis_twice(%x: tensor<8xf32>) {
  // expected-error @+1 {{names axis 'tp' twice}}
  %0 = tessel.all_reduce %x on @m ["tp", "tp"] : tensor<8xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @all_gather_result(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{expects a result of shape [?, 32], got [?, 16]}}
  %0 = tessel.all_gather %x on @m ["tp"] {dim = 1 : i64} : tensor<?x8xf32> to tensor<?x16xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @all_gather_dim(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{dim 2 is out of range for rank 2}}
  %0 = tessel.all_gather %x on @m ["tp"] {dim = 2 : i64} : tensor<?x8xf32> to tensor<?x32xf32>
  return
}

// -----

tessel.mesh @m axes ["tp"] shape [4]
func.func @reduce_scatter_divides(%x: tensor<?x6xf32>) {
  // expected-error @+1 {{dimension 1 of size 6 does not divide among 4 devices}}
  %0 = tessel.reduce_scatter %x on @m ["tp"] {dim = 1 : i64} : tensor<?x6xf32> to tensor<?x1xf32>
  return
}

// -----

tessel.mesh @m axes ["ep"] shape [4]
func.func @all_to_all_split(%x: tensor<6x8xf32>) {
  // expected-error @+1 {{dimension 0 of size 6 does not divide among 4 devices}}
  %0 = tessel.all_to_all %x on @m ["ep"] {split_dim = 0 : i64, concat_dim = 1 : i64} : tensor<6x8xf32> to tensor<1x32xf32>
  return
}

// -----

tessel.mesh @m axes ["ep"] shape [4]
func.func @all_to_all_dims(%x: tensor<8x8xf32>) {
  // expected-error @+1 {{split_dim and concat_dim must be in [0, 2)}}
  %0 = tessel.all_to_all %x on @m ["ep"] {split_dim = 0 : i64, concat_dim = 2 : i64} : tensor<8x8xf32> to tensor<2x32xf32>
  return
}

// -----

tessel.mesh @m axes ["ep"] shape [4]
func.func @all_to_all_result(%x: tensor<8x8xf32>) {
  // expected-error @+1 {{expects a result of shape [2, 32], got [8, 8]}}
  %0 = tessel.all_to_all %x on @m ["ep"] {split_dim = 0 : i64, concat_dim = 1 : i64} : tensor<8x8xf32> to tensor<8x8xf32>
  return
}

// -----

tessel.mesh @m axes ["pp", "tp"] shape [2, 2]
func.func @send_axes(%x: tensor<8xf32>) {
  // expected-error @+1 {{needs exactly one mesh axis, got 2}}
  tessel.send %x on @m ["pp", "tp"] {peer = 1 : i64} : tensor<8xf32>
  return
}

// -----

tessel.mesh @m axes ["pp"] shape [2]
func.func @recv_peer() {
  // expected-error @+1 {{peer 2 is outside the axis of size 2}}
  %0 = tessel.recv on @m ["pp"] {peer = 2 : i64} : tensor<8xf32>
  return
}

// -----

func.func @qtensor_rank() {
  // expected-error @+1 {{quantized tensor must have at least one dimension}}
  %0 = tessel.param "w" : !tessel.qtensor<i8, per_tensor, scale = f32>
  return
}

// -----

func.func @fusion_matmul(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  // expected-error @+1 {{body holds 'tessel.softmax', which cannot be fused}}
  %0 = tessel.fusion "elementwise"(%x : tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>) {
  ^bb0(%a: tensor<?x?x64xf32>):
    %m = tessel.softmax %a : tensor<?x?x64xf32>
    tessel.yield %m : tensor<?x?x64xf32>
  }
  return %0 : tensor<?x?x64xf32>
}

// -----

func.func @fusion_two_norms(%x: tensor<?x?x64xf32>, %w: tensor<64xf32>) -> tensor<?x?x64xf32> {
  // expected-error @+1 {{body holds more than one rms_norm}}
  %0 = tessel.fusion "rms_norm"(%x, %w : tensor<?x?x64xf32>, tensor<64xf32>) -> (tensor<?x?x64xf32>) {
  ^bb0(%a: tensor<?x?x64xf32>, %g: tensor<64xf32>):
    %n = tessel.rms_norm %a, %g {epsilon = 1.0e-05 : f64} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
    %m = tessel.rms_norm %n, %g {epsilon = 1.0e-05 : f64} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
    tessel.yield %m : tensor<?x?x64xf32>
  }
  return %0 : tensor<?x?x64xf32>
}

// -----

func.func @fusion_vector_operand(%x: tensor<?x?x64xf32>, %w: tensor<32xf32>) -> tensor<?x?x64xf32> {
  // expected-error @+1 {{input of type 'tensor<32xf32>' is neither of the result shape nor a vector of its last dimension}}
  %0 = tessel.fusion "elementwise"(%x, %w : tensor<?x?x64xf32>, tensor<32xf32>) -> (tensor<?x?x64xf32>) {
  ^bb0(%a: tensor<?x?x64xf32>, %g: tensor<32xf32>):
    tessel.yield %a : tensor<?x?x64xf32>
  }
  return %0 : tensor<?x?x64xf32>
}

// -----

func.func @fusion_yield_types(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xbf16> {
  // expected-error @+1 {{yields 1 values whose types differ from the results}}
  %0 = tessel.fusion "elementwise"(%x : tensor<?x?x64xf32>) -> (tensor<?x?x64xbf16>) {
  ^bb0(%a: tensor<?x?x64xf32>):
    %s = tessel.silu %a : tensor<?x?x64xf32>
    tessel.yield %s : tensor<?x?x64xf32>
  }
  return %0 : tensor<?x?x64xbf16>
}
