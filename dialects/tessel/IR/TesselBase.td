// The `tessel` dialect: definition and shared ODS base classes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_BASE_TD
#define TESSEL_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Tessel_Dialect : Dialect {
  let name = "tessel";
  let cppNamespace = "::mlir::tessel";
  let summary = "Graph-level IR for transformer language models";
  let description = [{
    The `tessel` dialect describes whole transformer LLM graphs (Llama 3, Qwen2, Mixtral,
    DeepSeek-V2/V3) at the level a model author thinks in: embeddings, normalizations,
    projections, rotary embeddings, attention with a KV cache, mixture-of-experts routing
    and the multi-head latent attention of DeepSeek. Activations are builtin tensors with
    static hidden sizes and dynamic batch and sequence dimensions; weights are referenced by
    name with `tessel.param` and never inlined, so a 70B-parameter graph stays small.

    Quantized weights have their own type (`!tessel.qtensor`), tensors can carry a
    `#tessel.sharding` over a `tessel.mesh`, and collectives (`all_reduce`, `all_gather`,
    `reduce_scatter`, `all_to_all`, `send`, `recv`) express the communication that the
    sharding passes insert.

    Layout conventions: activations are `[batch, seq, ...]`; per-head tensors are
    `[batch, seq, heads, head_dim]`; KV caches are `[batch, capacity, ...]`; weights keep the
    layout of the checkpoint (`[out, in]` for Hugging Face linear layers).
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
  let hasCanonicalizer = 0;
}

class Tessel_Op<string mnemonic, list<Trait> traits = []>
    : Op<Tessel_Dialect, mnemonic, traits>;

class Tessel_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Tessel_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

class Tessel_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Tessel_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

/// An f64 parameter printed in its shortest round-tripping form (8.0, 1.0e-05).
class Tessel_F64Param<string default, string desc = "">
    : DefaultValuedParameter<"::llvm::APFloat", "::llvm::APFloat(" # default # ")", desc> {
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
      double value;
      if ($_parser.parseFloat(value)) return ::mlir::failure();
      return ::llvm::APFloat(value);
    }() }];
  let printer = [{ $_printer.printFloat($_self) }];
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
}

#endif // TESSEL_BASE_TD
