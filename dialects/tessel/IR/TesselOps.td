// Operations of the `tessel` dialect.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_OPS_TD
#define TESSEL_OPS_TD

include "dialects/tessel/IR/TesselTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/CommonAttrConstraints.td"

def Tessel_Tensor : RankedTensorOf<[AnyType]>;
def Tessel_FloatTensor : RankedTensorOf<[AnyFloat]>;
def Tessel_IndexTensor : RankedTensorOf<[AnySignlessInteger]>;
def F64PositiveAttr : AttrConstraint<
    CPred<"::llvm::cast<::mlir::FloatAttr>($_self).getValueAsDouble() > 0.0">,
    "whose value is positive">;
def Tessel_Weight : AnyTypeOf<[RankedTensorOf<[AnyFloat]>, Tessel_QuantizedTensorType],
                              "float tensor or quantized tensor">;

//===----------------------------------------------------------------------===//
// Weights and meshes
//===----------------------------------------------------------------------===//

def Tessel_ParamOp : Tessel_Op<"param", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "A named weight of the checkpoint";
  let description = [{
    References a weight by its checkpoint name; the data stays in the checkpoint and is
    never inlined into the IR. A quantized weight has a `!tessel.qtensor` type. The
    optional sharding says how the weight is split over a mesh.

    ```mlir
    %w = tessel.param "model.layers.0.self_attn.q_proj.weight" : tensor<4096x4096xbf16>
    %q = tessel.param "model.layers.0.mlp.down_proj.weight"
        sharded <@mesh, [[], ["tp"]]> : !tessel.qtensor<4096x14336xi4, group = 128, scale = f16>
    ```
  }];
  let arguments = (ins StrAttr:$name, OptionalAttr<Tessel_ShardingAttr>:$sharding);
  let results = (outs Tessel_Weight:$result);
  let assemblyFormat = "$name (`sharded` $sharding^)? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Tessel_ExpertParamsOp : Tessel_Op<"expert_params", [Pure]> {
  let summary = "The weights of all experts of one MoE layer, stacked";
  let description = [{
    Stacks `count` checkpoint weights whose names differ only in the expert index into
    one tensor with a leading expert dimension. `{}` in the name pattern stands for the
    index, from 0 to `count - 1`.

    ```mlir
    %gate = tessel.expert_params "model.layers.1.mlp.experts.{}.gate_proj.weight" count 8
        : tensor<8x14336x4096xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$name_pattern, ConfinedAttr<I64Attr, [IntPositive]>:$count);
  let results = (outs Tessel_Weight:$result);
  let assemblyFormat = "$name_pattern `count` $count attr-dict `:` type($result)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The checkpoint name of expert `index`'s weight.
    std::string getExpertName(int64_t index);
  }];
}

def Tessel_MeshOp : Tessel_Op<"mesh", [Symbol]> {
  let summary = "A logical grid of devices with named axes";
  let description = [{
    Declares a device mesh: axis names and their sizes. Shardings and collectives name a
    mesh and some of its axes.

    ```mlir
    tessel.mesh @mesh axes ["pp", "tp"] shape [2, 4]
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, StrArrayAttr:$axes,
                       DenseI64ArrayAttr:$shape);
  let assemblyFormat = "$sym_name `axes` $axes `shape` $shape attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Size of axis `name`, or std::nullopt if the mesh has no such axis.
    std::optional<int64_t> getAxisSize(::llvm::StringRef name);
  }];
}

def Tessel_ShardOp : Tessel_Op<"shard", [Pure, AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Annotates the sharding a value must have";
  let description = [{
    Identity on values; constrains the sharding of `%input` for sharding propagation.

    ```mlir
    %y = tessel.shard %x to <@mesh, [[], [], ["tp"]]> : tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, Tessel_ShardingAttr:$sharding);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$input `to` $sharding attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Embedding and normalization
//===----------------------------------------------------------------------===//

def Tessel_EmbeddingOp : Tessel_Op<"embedding", [Pure]> {
  let summary = "Looks up token embeddings";
  let description = [{
    `result[b, s, :] = table[ids[b, s], :]`.

    ```mlir
    %h = tessel.embedding %ids, %table
        : (tensor<?x?xi32>, tensor<128256x4096xbf16>) -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_IndexTensor:$ids, Tessel_Weight:$table);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$ids `,` $table attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_RMSNormOp : Tessel_Op<"rms_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Root-mean-square normalization over the last dimension";
  let description = [{
    `y = x / sqrt(mean(x^2, -1) + epsilon) * weight` (Zhang & Sennrich 2019), computed in
    f32 whatever the storage type.

    ```mlir
    %y = tessel.rms_norm %x, %w {epsilon = 1.0e-05 : f64}
        : (tensor<?x?x4096xbf16>, tensor<4096xbf16>) -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_FloatTensor:$weight,
                       ConfinedAttr<F64Attr, [F64PositiveAttr]>:$epsilon);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_LayerNormOp : Tessel_Op<"layer_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Layer normalization over the last dimension";
  let description = [{
    `y = (x - mean) / sqrt(var + epsilon) * weight + bias` (Ba et al. 2016); the bias is
    optional.

    ```mlir
    %y = tessel.layer_norm %x, %w, %b {epsilon = 1.0e-05 : f64}
        : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_FloatTensor:$weight,
                       Optional<Tessel_FloatTensor>:$bias,
                       ConfinedAttr<F64Attr, [F64PositiveAttr]>:$epsilon);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat =
      "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Projections
//===----------------------------------------------------------------------===//

def Tessel_MatmulOp : Tessel_Op<"matmul", [Pure]> {
  let summary = "Multiplies activations by a weight matrix, with an optional bias";
  let description = [{
    `result[..., n] = sum_k input[..., k] * W[n, k] + bias[n]` for the `out_in` layout
    (Hugging Face `nn.Linear`), `W[k, n]` for `in_out`. The weight may be quantized;
    group-wise quantization requires `out_in`, so groups run along the reduction
    dimension.

    ```mlir
    %q = tessel.matmul %x, %wq, %bq {layout = #tessel.layout<out_in>}
        : (tensor<?x?x896xbf16>, tensor<896x896xbf16>, tensor<896xbf16>) -> tensor<?x?x896xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_Weight:$weight,
                       Optional<Tessel_FloatTensor>:$bias,
                       DefaultValuedAttr<Tessel_WeightLayoutAttr,
                                         "::mlir::tessel::WeightLayout::out_in">:$layout);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat =
      "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Reduction (K) and output (N) sizes read from the weight according to the layout.
    int64_t getReductionSize();
    int64_t getOutputSize();
  }];
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Tessel_UnaryOp<string mnemonic, string formula, list<Trait> traits = []>
    : Tessel_Op<mnemonic, !listconcat(traits, [Pure, Elementwise, SameOperandsAndResultType])> {
  let summary = "Elementwise " # mnemonic;
  let description = "`y = " # formula # "` elementwise.\n\n```mlir\n%y = tessel." # mnemonic #
                    " %x : tensor<?x?x14336xbf16>\n```";
  let arguments = (ins Tessel_FloatTensor:$input);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Tessel_SiluOp : Tessel_UnaryOp<"silu", "x * sigmoid(x)">;
def Tessel_SigmoidOp : Tessel_UnaryOp<"sigmoid", "1 / (1 + exp(-x))">;
def Tessel_ReluOp : Tessel_UnaryOp<"relu", "max(x, 0)">;
def Tessel_ExpOp : Tessel_UnaryOp<"exp", "exp(x)">;
def Tessel_TanhOp : Tessel_UnaryOp<"tanh", "tanh(x)">;
def Tessel_NegOp : Tessel_UnaryOp<"neg", "-x">;

def Tessel_GeluOp : Tessel_Op<"gelu", [Pure, Elementwise, SameOperandsAndResultType]> {
  let summary = "Elementwise GELU, exact or tanh-approximated";
  let description = [{
    `y = x * Phi(x)` (Hendrycks & Gimpel 2016), or its tanh approximation.

    ```mlir
    %y = tessel.gelu %x {approximation = #tessel.gelu_approximation<tanh>} : tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input,
      DefaultValuedAttr<Tessel_GeluApproximationAttr,
                        "::mlir::tessel::GeluApproximation::none">:$approximation);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Tessel_ScaleOp : Tessel_Op<"scale", [Pure, Elementwise, SameOperandsAndResultType]> {
  let summary = "Multiplies by a constant";
  let description = [{
    `y = x * factor`; used for embedding multipliers and attention temperatures.

    ```mlir
    %y = tessel.scale %x by 2.5 : tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, F64Attr:$factor);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input `by` $factor attr-dict `:` type($result)";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

class Tessel_BinaryOp<string mnemonic, string formula, list<Trait> traits = []>
    : Tessel_Op<mnemonic, !listconcat(traits, [Pure, Elementwise, SameOperandsAndResultType])> {
  let summary = "Elementwise " # mnemonic;
  let description = "`y = " # formula # "` elementwise; both operands have the result's type.\n\n" #
                    "```mlir\n%y = tessel." # mnemonic # " %a, %b : tensor<?x?x4096xbf16>\n```";
  let arguments = (ins Tessel_FloatTensor:$lhs, Tessel_FloatTensor:$rhs);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Tessel_AddOp : Tessel_BinaryOp<"add", "a + b", [Commutative]>;
def Tessel_SubOp : Tessel_BinaryOp<"sub", "a - b">;
def Tessel_MulOp : Tessel_BinaryOp<"mul", "a * b", [Commutative]>;
def Tessel_DivOp : Tessel_BinaryOp<"div", "a / b">;
def Tessel_MaxOp : Tessel_BinaryOp<"max", "max(a, b)", [Commutative]>;

def Tessel_CastOp : Tessel_Op<"cast", [Pure, Elementwise, SameOperandsAndResultShape]> {
  let summary = "Converts the element type (e.g. bf16 to f32)";
  let description = [{
    Rounds to nearest even when narrowing.

    ```mlir
    %y = tessel.cast %x : tensor<?x?x4096xbf16> to tensor<?x?x4096xf32>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Tessel_SoftmaxOp : Tessel_Op<"softmax", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Softmax along one dimension";
  let description = [{
    `y = exp(x - max(x)) / sum(exp(x - max(x)))` along `dim` (negative counts from the end).

    ```mlir
    %p = tessel.softmax %x {dim = -1 : i64} : tensor<?x?x8xf32>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, DefaultValuedAttr<I64Attr, "-1">:$dim);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Shapes
//===----------------------------------------------------------------------===//

def Tessel_ReshapeOp : Tessel_Op<"reshape", [Pure]> {
  let summary = "Reinterprets a tensor with another shape of the same size";
  let description = [{
    Row-major reinterpretation; no data moves. At most the dynamic dimensions of the input
    may appear dynamic in the result, and the static sizes must agree.

    ```mlir
    %h = tessel.reshape %q : tensor<?x?x4096xbf16> to tensor<?x?x32x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Tessel_TransposeOp : Tessel_Op<"transpose", [Pure]> {
  let summary = "Permutes dimensions";
  let description = [{
    `result.shape[i] = input.shape[permutation[i]]`.

    ```mlir
    %t = tessel.transpose %x [0, 2, 1, 3] : tensor<?x?x32x128xbf16> to tensor<?x32x?x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, DenseI64ArrayAttr:$permutation);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$input $permutation attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Tessel_SliceOp : Tessel_Op<"slice", [Pure]> {
  let summary = "Takes a contiguous range of one dimension";
  let description = [{
    `result = input[..., start : start + size, ...]` along `dim`; used to split fused
    projections (MLA's latent and rotary parts, fused gate/up weights).

    ```mlir
    %pe = tessel.slice %kv [2, 512, 64] : tensor<?x?x576xbf16> to tensor<?x?x64xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, I64Attr:$dim, I64Attr:$start, I64Attr:$size);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$input `[` $dim `,` $start `,` $size `]` attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Tessel_ConcatOp : Tessel_Op<"concat", [Pure]> {
  let summary = "Joins tensors along one dimension";
  let description = [{
    ```mlir
    %k = tessel.concat %nope, %pe {dim = 3 : i64}
        : (tensor<?x?x16x128xbf16>, tensor<?x?x16x64xbf16>) -> tensor<?x?x16x192xbf16>
    ```
  }];
  let arguments = (ins Variadic<Tessel_Tensor>:$inputs, I64Attr:$dim);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` functional-type($inputs, results)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Rotary embeddings, KV cache and attention
//===----------------------------------------------------------------------===//

def Tessel_RopeOp : Tessel_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Rotary position embedding (default, linear, dynamic, llama3, yarn; partial)";
  let description = [{
    Rotates pairs of the first `rotary_dim` features of every head by
    `position * theta^(-2i / rotary_dim)` (Su et al. 2021), with the frequencies rescaled
    by `scaling` when given. Pairs are `(i, i + rotary_dim/2)` (GPT-NeoX / Hugging Face
    Llama) or, with `interleaved`, `(2i, 2i + 1)` (GPT-J, DeepSeek). Features past
    `rotary_dim` pass through (partial rotary).

    Operands: `input` is `[batch, seq, heads, head_dim]`, `positions` `[batch, seq]`.

    ```mlir
    %q = tessel.rope %x, %pos {theta = 500000.0 : f64, rotary_dim = 128 : i64,
        scaling = #tessel.rope_scaling<kind = llama3, factor = 8.0, original_max_position = 8192>}
        : (tensor<?x?x32x128xbf16>, tensor<?x?xi32>) -> tensor<?x?x32x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_IndexTensor:$positions,
                       ConfinedAttr<F64Attr, [F64PositiveAttr]>:$theta,
                       I64Attr:$rotary_dim, UnitAttr:$interleaved,
                       OptionalAttr<Tessel_RopeScalingAttr>:$scaling);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_KVCacheWriteOp : Tessel_Op<"kv_cache_write", [Pure,
    AllTypesMatch<["cache", "result"]>]> {
  let summary = "Writes new keys or values into a KV cache at their positions";
  let description = [{
    `result = cache` with `result[b, positions[b, s], ...] = update[b, s, ...]`. The cache
    is `[batch, capacity, ...]` and the update `[batch, seq, ...]` with the same trailing
    dimensions: `[heads, head_dim]` for standard attention, `[latent]` for MLA. The runtime
    may store the cache in pages; the graph sees one tensor per layer.

    ```mlir
    %kc2 = tessel.kv_cache_write %kc, %k, %pos
        : (tensor<?x8192x8x128xbf16>, tensor<?x?x8x128xbf16>, tensor<?x?xi32>) -> tensor<?x8192x8x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$cache, Tessel_FloatTensor:$update,
                       Tessel_IndexTensor:$positions);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat =
      "$cache `,` $update `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_AttentionOp : Tessel_Op<"attention", [Pure]> {
  let summary = "Scaled dot-product attention: causal, GQA/MQA, sliding window";
  let description = [{
    `softmax(q k^T * scale + mask) v` per head. Query head `h` reads key/value head
    `h / (query_heads / kv_heads)` (grouped-query attention; MQA with one KV head). The
    keys are `[batch, kv_len, kv_heads, head_dim]`: the fresh keys in a prefill without
    cache, or a KV cache. Key `j` is visible to query `i` when `j <= positions[b, i]`
    (`causal`) and `j > positions[b, i] - sliding_window` (when given); keys past the
    sequence are never visible because their position exceeds every query's.

    ```mlir
    %o = tessel.attention %q, %kc, %vc, %pos {causal, scale = 0.08838834764831845 : f64}
        : (tensor<?x?x32x128xbf16>, tensor<?x8192x8x128xbf16>, tensor<?x8192x8x128xbf16>,
           tensor<?x?xi32>) -> tensor<?x?x32x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$query, Tessel_FloatTensor:$key,
                       Tessel_FloatTensor:$value, Tessel_IndexTensor:$positions,
                       ConfinedAttr<F64Attr, [F64PositiveAttr]>:$scale, UnitAttr:$causal,
                       OptionalAttr<I64Attr>:$sliding_window,
                       OptionalAttr<F64Attr>:$logit_softcap);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$query `,` $key `,` $value `,` $positions attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_MLAAttentionOp : Tessel_Op<"mla_attention", [Pure]> {
  let summary = "DeepSeek multi-head latent attention over a compressed KV cache";
  let description = [{
    Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434) reading the compressed
    cache: `latent` `[batch, kv_len, kv_lora_rank]` (the normalized `c_kv`) and `key_rope`
    `[batch, kv_len, qk_rope_head_dim]` (the rotated shared key part). `kv_b` is the
    `kv_b_proj` weight, `[heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank]`, which
    expands the latent into per-head keys (no-RoPE part) and values; a backend may instead
    absorb it into the query and output (the MLA decode trick). Queries arrive split into
    `query_nope` `[batch, seq, heads, qk_nope_head_dim]` and the rotated `query_rope`
    `[batch, seq, heads, qk_rope_head_dim]`. Masking follows `tessel.attention`.

    ```mlir
    %o = tessel.mla_attention %qn, %qr, %lat, %kr, %kvb, %pos {causal, scale = 0.1 : f64}
        : (tensor<?x?x16x128xbf16>, tensor<?x?x16x64xbf16>, tensor<?x4096x512xbf16>,
           tensor<?x4096x64xbf16>, tensor<4096x512xbf16>, tensor<?x?xi32>)
        -> tensor<?x?x16x128xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$query_nope, Tessel_FloatTensor:$query_rope,
                       Tessel_FloatTensor:$latent, Tessel_FloatTensor:$key_rope,
                       Tessel_Weight:$kv_b, Tessel_IndexTensor:$positions,
                       ConfinedAttr<F64Attr, [F64PositiveAttr]>:$scale, UnitAttr:$causal);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$query_nope `,` $query_rope `,` $latent `,` $key_rope `,` $kv_b `,` "
                       "$positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Tessel_MoERouterOp : Tessel_Op<"moe_router", [Pure]> {
  let summary = "Scores experts and picks the top-k per token";
  let description = [{
    `logits = input @ gate^T` (`gate` is `[experts, hidden]`), scored by `softmax` or
    `sigmoid`. With a `correction_bias` (DeepSeek-V3 `e_score_correction_bias`) the bias
    is added to the scores for choosing experts only; weights use the unbiased scores.
    Group-limited routing (DeepSeek) splits the experts into `n_group` groups, keeps the
    `topk_group` best groups (by their top-2 sum with a bias, by their max otherwise) and
    chooses `top_k` experts inside them. With `norm_topk_prob` the chosen weights are
    renormalized to sum to one; finally they are multiplied by `routed_scaling_factor`.

    Results: `weights` `[..., top_k]` (f32) and `indices` `[..., top_k]` (i32).

    ```mlir
    %w, %i = tessel.moe_router %x, %gate, %bias {top_k = 8 : i64, n_group = 8 : i64,
        topk_group = 4 : i64, scoring = #tessel.scoring<sigmoid>, norm_topk_prob,
        routed_scaling_factor = 2.5 : f64}
        : (tensor<?x?x7168xbf16>, tensor<256x7168xbf16>, tensor<256xf32>)
        -> (tensor<?x?x8xf32>, tensor<?x?x8xi32>)
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_Weight:$gate,
                       Optional<Tessel_FloatTensor>:$correction_bias,
                       I64Attr:$top_k,
                       DefaultValuedAttr<I64Attr, "1">:$n_group,
                       DefaultValuedAttr<I64Attr, "1">:$topk_group,
                       DefaultValuedAttr<Tessel_RouterScoringAttr,
                                         "::mlir::tessel::RouterScoring::softmax">:$scoring,
                       UnitAttr:$norm_topk_prob,
                       DefaultValuedAttr<F64Attr, "1.0">:$routed_scaling_factor);
  let results = (outs Tessel_FloatTensor:$weights, Tessel_IndexTensor:$indices);
  let assemblyFormat = "$input `,` $gate (`,` $correction_bias^)? attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tessel_MoEExpertsOp : Tessel_Op<"moe_experts", [Pure]> {
  let summary = "Runs each token through its chosen experts and sums the weighted results";
  let description = [{
    For each token and each of its `top_k` choices `e = indices[..., k]`:
    `out += weights[..., k] * down[e] @ (act(gate[e] @ x) * (up[e] @ x))`. Expert weights
    are stacked: `gate` and `up` `[experts, intermediate, hidden]`, `down`
    `[experts, hidden, intermediate]`. Shared experts (DeepSeek, Qwen-MoE) are ordinary
    gated MLPs beside this op.

    ```mlir
    %y = tessel.moe_experts %x, %w, %i, %gate, %up, %down
        : (tensor<?x?x4096xbf16>, tensor<?x?x2xf32>, tensor<?x?x2xi32>, tensor<8x14336x4096xbf16>,
           tensor<8x14336x4096xbf16>, tensor<8x4096x14336xbf16>) -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_FloatTensor:$input, Tessel_FloatTensor:$weights,
                       Tessel_IndexTensor:$indices, Tessel_Weight:$gate, Tessel_Weight:$up,
                       Tessel_Weight:$down,
                       DefaultValuedAttr<Tessel_ActivationAttr,
                                         "::mlir::tessel::Activation::silu">:$activation);
  let results = (outs Tessel_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weights `,` $indices `,` $gate `,` $up `,` $down attr-dict "
                       "`:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

class Tessel_CollectiveOp<string mnemonic, list<Trait> traits = []>
    : Tessel_Op<mnemonic, !listconcat(traits,
          [DeclareOpInterfaceMethods<SymbolUserOpInterface>])> {
  code collectiveClassDecl = [{
    /// Number of devices in each group: the product of the sizes of `mesh_axes`.
    /// Valid once the symbol uses verify.
    int64_t getGroupSize();
  }];
  let extraClassDeclaration = collectiveClassDecl;
}

def Tessel_AllReduceOp : Tessel_CollectiveOp<"all_reduce", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "Reduces a tensor across the devices of mesh axes; all get the result";
  let description = [{
    ```mlir
    %y = tessel.all_reduce %x on @mesh ["tp"] {reduction = #tessel.reduction<sum>}
        : tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes,
                       DefaultValuedAttr<Tessel_ReductionKindAttr,
                                         "::mlir::tessel::ReductionKind::sum">:$reduction);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "$input `on` $mesh $mesh_axes attr-dict `:` type($result)";
}

def Tessel_AllGatherOp : Tessel_CollectiveOp<"all_gather", [Pure]> {
  let summary = "Concatenates every device's tensor along one dimension";
  let description = [{
    The result's `dim` is the input's times the group size.

    ```mlir
    %y = tessel.all_gather %x on @mesh ["tp"] {dim = 2 : i64}
        : tensor<?x?x1024xbf16> to tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes,
                       I64Attr:$dim);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat =
      "$input `on` $mesh $mesh_axes attr-dict `:` type($input) `to` type($result)";
}

def Tessel_ReduceScatterOp : Tessel_CollectiveOp<"reduce_scatter", [Pure]> {
  let summary = "Reduces across devices and leaves each device one slice";
  let description = [{
    The input's `dim` must divide by the group size; the result's is the quotient.

    ```mlir
    %y = tessel.reduce_scatter %x on @mesh ["tp"] {dim = 1 : i64}
        : tensor<?x4096x4096xbf16> to tensor<?x1024x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes,
                       I64Attr:$dim,
                       DefaultValuedAttr<Tessel_ReductionKindAttr,
                                         "::mlir::tessel::ReductionKind::sum">:$reduction);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat =
      "$input `on` $mesh $mesh_axes attr-dict `:` type($input) `to` type($result)";
}

def Tessel_AllToAllOp : Tessel_CollectiveOp<"all_to_all", [Pure]> {
  let summary = "Splits along one dimension, exchanges, concatenates along another";
  let description = [{
    Expert parallelism's token exchange: `split_dim` is divided by the group size and
    `concat_dim` multiplied by it.

    ```mlir
    %y = tessel.all_to_all %x on @mesh ["ep"] {split_dim = 0 : i64, concat_dim = 1 : i64}
        : tensor<64x128x4096xbf16> to tensor<8x1024x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes,
                       I64Attr:$split_dim, I64Attr:$concat_dim);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat =
      "$input `on` $mesh $mesh_axes attr-dict `:` type($input) `to` type($result)";
}

def Tessel_SendOp : Tessel_CollectiveOp<"send"> {
  let summary = "Sends a tensor to the device at index `peer` of a mesh axis";
  let description = [{
    Point-to-point transfer between pipeline stages; `peer` is the receiver's index along
    the single axis in `mesh_axes`.

    ```mlir
    tessel.send %x on @mesh ["pp"] {peer = 1 : i64} : tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Tessel_Tensor:$input, FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes,
                       I64Attr:$peer);
  let assemblyFormat = "$input `on` $mesh $mesh_axes attr-dict `:` type($input)";
}

def Tessel_RecvOp : Tessel_CollectiveOp<"recv"> {
  let summary = "Receives a tensor from the device at index `peer` of a mesh axis";
  let description = [{
    ```mlir
    %x = tessel.recv on @mesh ["pp"] {peer = 0 : i64} : tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$mesh, StrArrayAttr:$mesh_axes, I64Attr:$peer);
  let results = (outs Tessel_Tensor:$result);
  let assemblyFormat = "`on` $mesh $mesh_axes attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

def Tessel_FusionOp : Tessel_Op<"fusion", [Pure, IsolatedFromAbove, SingleBlock]> {
  let summary = "A group of elementwise ops (and at most one rms_norm) run as one kernel";
  let description = [{
    Made by `--tessel-fuse`. The body computes the results from the block arguments
    (one per input, same types) with elementwise ops (`add`, `sub`, `mul`, `div`, `max`,
    `silu`, `sigmoid`, `relu`, `exp`, `tanh`, `neg`, `gelu`, `scale`, `cast`) over one
    shape and at most one `rms_norm` over its last dimension; `tessel.yield` names the
    values that leave the group. Inputs are either of the group's shape or a vector of
    its last dimension (the norm weight). Values inside the body never get a buffer: the
    generated kernel keeps them in registers. `kind` names the pattern for readers
    (`elementwise`, `residual_rms_norm`, `swiglu`, ...); it does not change semantics.

    ```mlir
    %sum, %normed = tessel.fusion "residual_rms_norm"
        (%h, %attn, %w : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>, tensor<64xbf16>)
        -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
    ^bb0(%a: tensor<?x?x64xbf16>, %b: tensor<?x?x64xbf16>, %g: tensor<64xbf16>):
      %s = tessel.add %a, %b : tensor<?x?x64xbf16>
      %n = tessel.rms_norm %s, %g {epsilon = 1.0e-05 : f64}
          : (tensor<?x?x64xbf16>, tensor<64xbf16>) -> tensor<?x?x64xbf16>
      tessel.yield %s, %n : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
    }
    ```
  }];
  let arguments = (ins StrAttr:$kind, Variadic<Tessel_FloatTensor>:$inputs);
  let results = (outs Variadic<Tessel_FloatTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $kind `(` $inputs `:` type($inputs) `)` `->` `(` type($results) `)` $body attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The terminator of the body.
    YieldOp getYield();
    /// The last dimension every input and result shares (the row of a norm).
    int64_t getRowSize();
    /// Whether `op` may be part of a fusion body: an elementwise op of the list above
    /// or an rms_norm.
    static bool isFusible(::mlir::Operation *op);
  }];
}

def Tessel_YieldOp : Tessel_Op<"yield", [Pure, Terminator]> {
  let summary = "The values a tessel.fusion group returns";
  let description = [{
    Ends the body of a `tessel.fusion` (or of the `tessel_exec.launch "fusion"` it is
    lowered to).

    ```mlir
    tessel.yield %s, %n : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
    ```
  }];
  let arguments = (ins Variadic<Tessel_FloatTensor>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let hasVerifier = 1;
}

#endif // TESSEL_OPS_TD
