// The `tessel_exec` dialect: buffers in one arena per rank and kernel launches; it maps
// one to one onto the plan schema (runtime/schema/plan.fbs).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_EXEC_OPS_TD
#define TESSEL_EXEC_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def TesselExec_Dialect : Dialect {
  let name = "tessel_exec";
  let cppNamespace = "::mlir::tessel_exec";
  let summary = "Executable form of tessel programs: arena buffers and kernel launches";
  let description = [{
    After `--tessel-lower-to-exec`, an entry point is a sequence of `tessel_exec.launch`
    operations over memrefs: entry arguments (token ids, positions, KV cache slots),
    weights (`tessel_exec.weight`), activations (`tessel_exec.alloc`, placed in the
    rank's arena by `--tessel-memory-plan`) and reshaped views of them
    (`tessel_exec.view`). Every activation is `[batch, seq, ...]`, so its size is a whole
    number of bytes per token and the arena offsets are counted in bytes per token; the
    runtime multiplies them by the token capacity of a call. The plan emitter writes one
    plan instruction per launch.
  }];
}

class TesselExec_Op<string mnemonic, list<Trait> traits = []>
    : Op<TesselExec_Dialect, mnemonic, traits>;

def TesselExec_AllocOp : TesselExec_Op<"alloc"> {
  let summary = "An activation buffer in the arena";
  let description = [{
    A `[batch, seq, ...]` buffer. `offset` (bytes per token, a multiple of 64) is set by
    `--tessel-memory-plan`; buffers whose lifetimes overlap never share bytes.

    ```mlir
    %0 = tessel_exec.alloc {offset = 256 : i64} : memref<?x?x64xf32>
    ```
  }];
  let arguments = (ins OptionalAttr<I64Attr>:$offset);
  let results = (outs AnyMemRef:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Bytes one token of this buffer takes, rounded up to the arena alignment (64).
    int64_t getBytesPerToken();
  }];
}

def TesselExec_WeightOp : TesselExec_Op<"weight", [Pure]> {
  let summary = "A weight of the weight manifest";
  let description = [{
    `experts` > 0 stacks the tensors named by the pattern (`{}` = expert index) into one
    weight. Quantized weights keep their storage type as the element type and carry
    `quant` (the `!tessel.qtensor` type they came from); `dequantize` names a GGUF block
    format the artifact writer expands to f32.

    ```mlir
    %w = tessel_exec.weight "model.layers.0.mlp.up_proj.weight" : memref<128x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, DefaultValuedAttr<I64Attr, "0">:$experts,
                       OptionalAttr<TypeAttr>:$quant, OptionalAttr<StrAttr>:$dequantize);
  let results = (outs AnyMemRef:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

def TesselExec_ViewOp : TesselExec_Op<"view", [Pure]> {
  let summary = "The same bytes under another shape";
  let description = [{
    ```mlir
    %v = tessel_exec.view %0 : memref<?x?x64xf32> to memref<?x?x4x16xf32>
    ```
  }];
  let arguments = (ins AnyMemRef:$source);
  let results = (outs AnyMemRef:$result);
  let assemblyFormat = "$source attr-dict `:` type($source) `to` type($result)";
  let hasVerifier = 1;
}

def TesselExec_LaunchOp : TesselExec_Op<"launch", [AttrSizedOperandSegments]> {
  let summary = "Runs one kernel: reads `ins`, writes `outs`";
  let description = [{
    `kernel` names the computation (the tessel op it came from: "matmul", "rope", ...);
    the remaining attributes are that op's attributes. Outputs are written in full; a
    KV cache written in place appears in `outs`.

    A `"fusion"` launch (from `tessel.fusion`) carries the group as its `body`: the
    tessel ops over one tensor argument per input, yielding one value per output. The
    plan emitter writes the body as the instruction's op program, and the compiler
    generates a CUDA kernel for it (`tessel_exec.kernel_index` names it in Plan.kernels).

    ```mlir
    tessel_exec.launch "rms_norm" ins(%x, %w : memref<?x?x64xf32>, memref<64xf32>)
        outs(%0 : memref<?x?x64xf32>) {epsilon = 1.0e-05 : f64}
    tessel_exec.launch "fusion" ins(%g, %u : memref<?x?x128xf32>, memref<?x?x128xf32>)
        outs(%1 : memref<?x?x128xf32>) {kind = "swiglu"} body {
    ^bb0(%a: tensor<?x?x128xf32>, %b: tensor<?x?x128xf32>):
      %s = tessel.silu %a : tensor<?x?x128xf32>
      %m = tessel.mul %s, %b : tensor<?x?x128xf32>
      tessel.yield %m : tensor<?x?x128xf32>
    }
    ```
  }];
  let arguments = (ins StrAttr:$kernel, Variadic<AnyMemRef>:$ins, Variadic<AnyMemRef>:$outs);
  let regions = (region AnyRegion:$body);
  let assemblyFormat = "$kernel `ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)` attr-dict (`body` $body^)?";
  let hasVerifier = 1;
}

#endif // TESSEL_EXEC_OPS_TD
