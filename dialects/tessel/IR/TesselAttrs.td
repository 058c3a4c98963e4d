// Enums and attributes of the `tessel` dialect: RoPE scaling, sharding, routing choices.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_ATTRS_TD
#define TESSEL_ATTRS_TD

include "dialects/tessel/IR/TesselBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Tessel_WeightLayout : I32EnumAttr<"WeightLayout", "layout of a matmul weight", [
    I32EnumAttrCase<"out_in", 0>,   // [out_features, in_features]: Hugging Face nn.Linear
    I32EnumAttrCase<"in_out", 1>,   // [in_features, out_features]
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}
def Tessel_WeightLayoutAttr : EnumAttr<Tessel_Dialect, Tessel_WeightLayout, "layout"> {
  let assemblyFormat = "`<` $value `>`";
}

def Tessel_RopeScalingKind : I32EnumAttr<"RopeScalingKind", "RoPE frequency scaling", [
    I32EnumAttrCase<"linear", 0>,
    I32EnumAttrCase<"dynamic", 1>,   // dynamic NTK
    I32EnumAttrCase<"llama3", 2>,
    I32EnumAttrCase<"yarn", 3>,
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}

def Tessel_RouterScoring : I32EnumAttr<"RouterScoring", "MoE router scoring function", [
    I32EnumAttrCase<"softmax", 0>,
    I32EnumAttrCase<"sigmoid", 1>,
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}
def Tessel_RouterScoringAttr : EnumAttr<Tessel_Dialect, Tessel_RouterScoring, "scoring"> {
  let assemblyFormat = "`<` $value `>`";
}

def Tessel_Activation : I32EnumAttr<"Activation", "gated MLP activation", [
    I32EnumAttrCase<"silu", 0>,
    I32EnumAttrCase<"gelu", 1>,
    I32EnumAttrCase<"gelu_tanh", 2>,
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}
def Tessel_ActivationAttr : EnumAttr<Tessel_Dialect, Tessel_Activation, "activation"> {
  let assemblyFormat = "`<` $value `>`";
}

def Tessel_GeluApproximation : I32EnumAttr<"GeluApproximation", "GELU formula", [
    I32EnumAttrCase<"none", 0>,
    I32EnumAttrCase<"tanh", 1>,
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}
def Tessel_GeluApproximationAttr
    : EnumAttr<Tessel_Dialect, Tessel_GeluApproximation, "gelu_approximation"> {
  let assemblyFormat = "`<` $value `>`";
}

def Tessel_ReductionKind : I32EnumAttr<"ReductionKind", "collective reduction", [
    I32EnumAttrCase<"sum", 0>,
    I32EnumAttrCase<"max", 1>,
    I32EnumAttrCase<"min", 2>,
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}
def Tessel_ReductionKindAttr : EnumAttr<Tessel_Dialect, Tessel_ReductionKind, "reduction"> {
  let assemblyFormat = "`<` $value `>`";
}

def Tessel_QuantScheme : I32EnumAttr<"QuantScheme", "how quantization scales are shared", [
    I32EnumAttrCase<"per_tensor", 0>,
    I32EnumAttrCase<"per_channel", 1>,   // one scale per row (dimension 0)
    I32EnumAttrCase<"group", 2>,         // one scale per `group_size` elements of the last dim
  ]> {
  let cppNamespace = "::mlir::tessel";
  let genSpecializedAttr = 0;
}

//===----------------------------------------------------------------------===//
// RoPE scaling
//===----------------------------------------------------------------------===//

def Tessel_RopeScalingAttr : Tessel_Attr<"RopeScaling", "rope_scaling"> {
  let summary = "Frequency scaling of rotary position embeddings";
  let description = [{
    How RoPE frequencies are rescaled for long context, as Hugging Face's
    `rope_scaling` / `rope_parameters` describe it:
    - `linear`: positions divided by `factor`.
    - `dynamic`: NTK-aware base rescaling once the sequence exceeds
      `original_max_position`.
    - `llama3`: Llama 3.1 wavelength-dependent smoothing between `low_freq_factor` and
      `high_freq_factor`.
    - `yarn`: YaRN (Peng et al. 2023) ramp between `beta_fast` and `beta_slow` with an
      attention temperature from `mscale` / `mscale_all_dim` or `attention_factor`.

    Parameters a kind does not use keep their defaults and are not printed.

    ```mlir
    #tessel.rope_scaling<kind = llama3, factor = 8.0, low_freq_factor = 1.0,
                         high_freq_factor = 4.0, original_max_position = 8192>
    ```
  }];
  let parameters = (ins
    EnumParameter<Tessel_RopeScalingKind>:$kind,
    Tessel_F64Param<"1.0", "frequency scaling factor">:$factor,
    DefaultValuedParameter<"int64_t", "0", "context length of pre-training">:$original_max_position,
    Tessel_F64Param<"1.0">:$low_freq_factor,
    Tessel_F64Param<"4.0">:$high_freq_factor,
    Tessel_F64Param<"32.0">:$beta_fast,
    Tessel_F64Param<"1.0">:$beta_slow,
    Tessel_F64Param<"1.0">:$mscale,
    Tessel_F64Param<"0.0">:$mscale_all_dim,
    Tessel_F64Param<"0.0", "explicit attention factor (0: derived)">:$attention_factor
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

//===----------------------------------------------------------------------===//
// Sharding
//===----------------------------------------------------------------------===//

def Tessel_ShardingAttr : Tessel_Attr<"Sharding", "sharding"> {
  let summary = "How a tensor is split over the axes of a device mesh";
  let description = [{
    One entry per tensor dimension: the mesh axes that dimension is split over, in order
    (major to minor); an empty entry means the dimension is replicated. Axes not named by
    any dimension replicate the whole tensor.

    ```mlir
    // [out, in] weight split by rows over `tp` (Megatron column parallel).
    #tessel.sharding<@mesh, [["tp"], []]>
    ```
  }];
  let parameters = (ins
    "::mlir::FlatSymbolRefAttr":$mesh,
    "::mlir::ArrayAttr":$split_axes
  );
  let assemblyFormat = "`<` $mesh `,` $split_axes `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Mesh axes that dimension `dim` is split over.
    ::llvm::SmallVector<::llvm::StringRef> getAxesOfDim(unsigned dim) const;
  }];
}

#endif // TESSEL_ATTRS_TD
