// Types of the `tessel` dialect: quantized weight tensors.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_TYPES_TD
#define TESSEL_TYPES_TD

include "dialects/tessel/IR/TesselAttrs.td"
include "mlir/IR/BuiltinTypeInterfaces.td"

def Tessel_QuantizedTensorType : Tessel_Type<"QuantizedTensor", "qtensor",
    [DeclareTypeInterfaceMethods<ShapedTypeInterface, ["cloneWith"]>]> {
  let summary = "A weight tensor stored quantized, with its scales";
  let description = [{
    A weight stored in a narrow type with scales that recover real values:
    `value = stored * scale`. Supported storage types and schemes:
    - `i8` per channel (one scale per row, dimension 0) or per tensor;
    - `i4` group-wise: one scale per `group_size` consecutive elements of the last
      dimension (the reduction dimension of an `[out, in]` weight);
    - `f8E4M3FN` per tensor or per channel.

    ```mlir
    !tessel.qtensor<4096x4096xi8, per_channel, scale = f16>
    !tessel.qtensor<4096x14336xi4, group = 128, scale = f16>
    !tessel.qtensor<4096x4096xf8E4M3FN, per_tensor, scale = f32>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$shape,
    "::mlir::Type":$storageType,
    EnumParameter<Tessel_QuantScheme>:$scheme,
    "int64_t":$groupSize,
    "::mlir::Type":$scaleType
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Number of scale values stored beside the data.
    int64_t getNumScales() const;
    /// Bytes of data plus scales.
    int64_t getStorageBytes() const;
  }];
}

#endif // TESSEL_TYPES_TD
