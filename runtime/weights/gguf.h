// GGUF (llama.cpp model file) reader: metadata, tensor table, and dequantization to f32.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_WEIGHTS_GGUF_H_
#define TESSEL_RUNTIME_WEIGHTS_GGUF_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/weights/dtype.h"
#include "runtime/weights/mapped_file.h"

namespace tessel {

/// Metadata value types, numbered as in the GGUF spec (`gguf_metadata_value_type`).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

/// The spec's name of a value type: "uint8", "int32", "float32", "bool", "string", "array".
std::string_view GgufTypeName(GgufType type);

/// ggml's name of a tensor type id ("f32", "q4_0", "q4_K", "bf16", ...); for ids ggml has
/// removed or never had, "unknown".
std::string_view GgmlTypeName(uint32_t ggml_type);

/// The tessel DType of a ggml tensor type, for the types tessel reads: F32 (0), F16 (1),
/// Q4_0 (2), Q4_1 (3), Q8_0 (8), Q4_K (12), Q6_K (14), BF16 (30). nullopt for all others.
std::optional<DType> DTypeFromGgmlType(uint32_t ggml_type);

class GgufValue;

/// A metadata array. Every element has type `element_type`; arrays may nest (an array of
/// arrays), up to `GgufFile::kMaxArrayDepth` levels.
struct GgufArray {
  GgufType element_type = GgufType::kUint8;
  std::vector<GgufValue> elements;
};

/// One metadata value. The variant's alternatives are listed in GgufType order, so the
/// index of the active alternative is the value's GGUF type number.
class GgufValue {
 public:
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;

  explicit GgufValue(Storage storage) : storage_(std::move(storage)) {}

  GgufType type() const { return static_cast<GgufType>(storage_.index()); }
  const Storage& storage() const { return storage_; }

  /// The value if it holds exactly `T` (e.g. `get_if<uint32_t>()`), else nullptr.
  template <typename T>
  const T* get_if() const {
    return std::get_if<T>(&storage_);
  }

  /// True for the eight integer types (not bool).
  bool is_integer() const;

  /// Short rendering for logs and tools: 7, -1.5, true, "llama", [1, 2, 3] (arrays longer
  /// than `max_elements` and strings longer than 64 bytes are elided).
  std::string DebugString(size_t max_elements = 8) const;

 private:
  Storage storage_;
};

/// One metadata entry, in file order.
struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

/// One entry of the tensor table.
struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;  // ggml_type id as stored in the file
  // The tessel element type; nullopt for ggml types tessel cannot dequantize (their
  // metadata and raw bytes are still readable).
  std::optional<DType> dtype;
  std::vector<int64_t> dims;   // ggml order: dims[0] varies fastest (the row length)
  std::vector<int64_t> shape;  // row-major (PyTorch/numpy) order: `dims` reversed
  int64_t element_count = 0;
  uint64_t offset = 0;      // absolute byte offset of the data in the file
  uint64_t size_bytes = 0;  // bytes of data: element_count / block elements * block bytes
};

/// A parsed GGUF file (versions 2 and 3, little-endian). Parsing validates the whole header
/// and the tensor table against the file size, so every `Data()` span lies inside the file.
/// Immutable after parsing; safe to read from many threads.
///
/// Layout (llama.cpp docs/gguf.md): "GGUF" magic, u32 version, u64 tensor count, u64
/// metadata count, metadata entries (u64-length key, u32 type, value), tensor infos
/// (name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset), then padding to
/// `general.alignment` (default 32) and the data section the offsets are relative to.
class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  static constexpr uint32_t kMaxDims = 8;
  static constexpr int kMaxArrayDepth = 8;
  static constexpr uint64_t kMaxKeyBytes = 65535;

  /// Maps and parses `path`.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  /// Parses an already mapped file, taking ownership of it. Errors name the file, the entry
  /// (key or tensor) and the offending numbers.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::unique_ptr<MappedFile> file);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  /// Absolute file offset of the data section; tensor offsets in the file are relative to it.
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return file_->path(); }

  /// All metadata entries in file order.
  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }

  /// The value of `key`, or nullptr if the file has no such key.
  const GgufValue* Find(std::string_view key) const;

  /// Typed getters. NotFound if the key is missing; InvalidArgument naming the key and both
  /// types if the value has another type ("GGUF key 'llama.block_count' is a string,
  /// expected an integer").
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  /// Any integer type holding a non-negative value.
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  /// Any integer type holding a value that fits int64.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  /// float32 or float64.
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  /// An array; with `element_type`, also checks the type of its elements.
  absl::StatusOr<const GgufArray*> GetArray(
      std::string_view key, std::optional<GgufType> element_type = std::nullopt) const;

  /// The tensor table in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  /// The tensor called `name`, or nullptr.
  const GgufTensorInfo* FindTensor(std::string_view name) const;

  /// The raw bytes of `tensor`, which must come from this file's `tensors()` (an entry that
  /// does not lie inside this file yields an empty span). Pass them to `DequantizeToF32`.
  std::span<const uint8_t> Data(const GgufTensorInfo& tensor) const;

 private:
  explicit GgufFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

  absl::StatusOr<const GgufValue*> FindOrError(std::string_view key) const;

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;

  friend class GgufParser;
};

/// Expands `data` (the tensor's bytes, `tensor.size_bytes` long) into `out`
/// (`tensor.element_count` floats, in storage order) exactly as ggml's `dequantize_row_*`
/// reference functions do. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K;
/// Unimplemented for other ggml types, naming the type; InvalidArgument on size mismatches.
absl::Status DequantizeToF32(const GgufTensorInfo& tensor, std::span<const uint8_t> data,
                             std::span<float> out);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_WEIGHTS_GGUF_H_
