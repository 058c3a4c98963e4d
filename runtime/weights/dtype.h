// Element types of weight tensors as stored on disk (safetensors, GGUF) and in plans.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_WEIGHTS_DTYPE_H_
#define TESSEL_RUNTIME_WEIGHTS_DTYPE_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace tessel {

/// Storage element types. Block-quantized GGUF types have no per-element byte size:
/// use `BlockElements`/`BlockBytes` for them.
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kI8,
  kI32,
  kI64,
  // GGUF block-quantized types (llama.cpp ggml names).
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ4_K,
  kQ6_K,
};

/// Canonical lowercase name ("f32", "bf16", "q4_k", ...).
std::string_view DTypeName(DType type);

/// Parses a safetensors dtype string ("F32", "BF16", "F8_E4M3", "I8", ...).
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);

/// Elements per storage block: 1 for plain types, 32 or 256 for GGUF block types.
int64_t BlockElements(DType type);

/// Bytes per storage block (for plain types, bytes per element).
int64_t BlockBytes(DType type);

/// Bytes needed to store `elements` values, or nullopt if `elements` is not a whole number
/// of blocks or the size overflows int64.
std::optional<int64_t> StorageBytes(DType type, int64_t elements);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_WEIGHTS_DTYPE_H_
