// Element types of weight tensors: names and storage sizes.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/weights/dtype.h"

#include <limits>

namespace tessel {

std::string_view DTypeName(DType type) {
  switch (type) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF8E4M3: return "f8e4m3";
    case DType::kI8: return "i8";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kQ8_0: return "q8_0";
    case DType::kQ4_0: return "q4_0";
    case DType::kQ4_1: return "q4_1";
    case DType::kQ4_K: return "q4_k";
    case DType::kQ6_K: return "q6_k";
  }
  return "?";
}

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "F8_E4M3") return DType::kF8E4M3;
  if (name == "I8") return DType::kI8;
  if (name == "I32") return DType::kI32;
  if (name == "I64") return DType::kI64;
  return std::nullopt;
}

int64_t BlockElements(DType type) {
  switch (type) {
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1: return 32;
    case DType::kQ4_K:
    case DType::kQ6_K: return 256;
    default: return 1;
  }
}

int64_t BlockBytes(DType type) {
  switch (type) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI8: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kQ8_0: return 34;   // f16 scale + 32 x int8
    case DType::kQ4_0: return 18;   // f16 scale + 16 bytes of nibbles
    case DType::kQ4_1: return 20;   // f16 scale + f16 min + 16 bytes of nibbles
    case DType::kQ4_K: return 144;  // 2 x f16 + 12 bytes of 6-bit scales + 128 bytes of nibbles
    case DType::kQ6_K: return 210;  // 128 low nibbles + 64 high bits + 16 int8 scales + f16
  }
  return 0;
}

std::optional<int64_t> StorageBytes(DType type, int64_t elements) {
  const int64_t block = BlockElements(type);
  if (elements < 0 || elements % block != 0) return std::nullopt;
  const int64_t blocks = elements / block;
  const int64_t bytes = BlockBytes(type);
  if (blocks > std::numeric_limits<int64_t>::max() / bytes) return std::nullopt;
  return blocks * bytes;
}

}  // namespace tessel
