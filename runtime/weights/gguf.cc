// GGUF reader: bounds-checked header parsing, tensor-table validation, ggml dequantization.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/weights/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status.h"

// GGUF is little-endian; values are copied out of the mapping with memcpy as host values.
static_assert(std::endian::native == std::endian::little,
              "the GGUF reader assumes a little-endian host");

namespace tessel {
namespace {

// --- ggml tensor types --------------------------------------------------------------------

struct GgmlTypeTraits {
  std::string_view name;
  int64_t block_elements;  // 0: an id ggml has removed (its files cannot be read anywhere)
  int64_t block_bytes;
};

// Indexed by ggml_type id (ggml.h `enum ggml_type`, gguf-py GGML_QUANT_SIZES).
constexpr GgmlTypeTraits kGgmlTypes[] = {
    {"f32", 1, 4},         // 0
    {"f16", 1, 2},         // 1
    {"q4_0", 32, 18},      // 2
    {"q4_1", 32, 20},      // 3
    {"q4_2", 0, 0},        // 4, removed
    {"q4_3", 0, 0},        // 5, removed
    {"q5_0", 32, 22},      // 6
    {"q5_1", 32, 24},      // 7
    {"q8_0", 32, 34},      // 8
    {"q8_1", 32, 40},      // 9
    {"q2_K", 256, 84},     // 10
    {"q3_K", 256, 110},    // 11
    {"q4_K", 256, 144},    // 12
    {"q5_K", 256, 176},    // 13
    {"q6_K", 256, 210},    // 14
    {"q8_K", 256, 292},    // 15
    {"iq2_xxs", 256, 66},  // 16
    {"iq2_xs", 256, 74},   // 17
    {"iq3_xxs", 256, 98},  // 18
    {"iq1_s", 256, 50},    // 19
    {"iq4_nl", 32, 18},    // 20
    {"iq3_s", 256, 110},   // 21
    {"iq2_s", 256, 82},    // 22
    {"iq4_xs", 256, 136},  // 23
    {"i8", 1, 1},          // 24
    {"i16", 1, 2},         // 25
    {"i32", 1, 4},         // 26
    {"i64", 1, 8},         // 27
    {"f64", 1, 8},         // 28
    {"iq1_m", 256, 56},    // 29
    {"bf16", 1, 2},        // 30
    {"q4_0_4_4", 0, 0},    // 31, removed (repacked at load time now)
    {"q4_0_4_8", 0, 0},    // 32, removed
    {"q4_0_8_8", 0, 0},    // 33, removed
    {"tq1_0", 256, 54},    // 34
    {"tq2_0", 256, 66},    // 35
    {"iq4_nl_4_4", 0, 0},  // 36, removed
    {"iq4_nl_4_8", 0, 0},  // 37, removed
    {"iq4_nl_8_8", 0, 0},  // 38, removed
    {"mxfp4", 32, 17},     // 39
    {"nvfp4", 64, 36},     // 40
    {"q1_0", 128, 18},     // 41
};
constexpr uint32_t kGgmlTypeCount = sizeof(kGgmlTypes) / sizeof(kGgmlTypes[0]);

enum GgmlTypeId : uint32_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ4_1 = 3,
  kGgmlQ8_0 = 8,
  kGgmlQ4_K = 12,
  kGgmlQ6_K = 14,
  kGgmlBF16 = 30,
};

constexpr char kSupportedTypes[] = "f32, f16, bf16, q8_0, q4_0, q4_1, q4_K, q6_K";

// The Debian Abseil build has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW=0),
// which std::string_view does not convert to implicitly; StrCat needs this bridge.
absl::string_view AsAbsl(std::string_view text) { return {text.data(), text.size()}; }

std::string DescribeGgmlType(uint32_t ggml_type) {
  return absl::StrCat(ggml_type, " (", AsAbsl(GgmlTypeName(ggml_type)), ")");
}

// --- Metadata values ----------------------------------------------------------------------

constexpr uint32_t kGgufTypeCount = 13;

// DebugString shows at most this many bytes of a string.
constexpr size_t kMaxDebugStringBytes = 64;

// "a uint32", "an int8", "an array of string": the phrase used in type-mismatch errors.
std::string DescribeValueType(const GgufValue& value) {
  if (const GgufArray* array = value.get_if<GgufArray>()) {
    return absl::StrCat("an array of ", AsAbsl(GgufTypeName(array->element_type)));
  }
  const std::string_view name = GgufTypeName(value.type());
  const bool vowel = name.front() == 'i' || name.front() == 'a';
  return absl::StrCat(vowel ? "an " : "a ", AsAbsl(name));
}

// Smallest encoding of one value of `type`: bounds how many elements a count can claim.
uint64_t MinEncodedBytes(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString: return 8;  // u64 length
    case GgufType::kArray: return 12;  // u32 element type + u64 count
  }
  return 1;
}

// Header records: key (u64 length + >= 1 byte) + u32 type + >= 1 byte of value, and
// name (u64 length + >= 1 byte) + u32 n_dims + u32 type + u64 offset.
constexpr uint64_t kMinKeyValueBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;

// --- Bounds-checked reading ---------------------------------------------------------------

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return bytes_.size() - offset_; }

  absl::Status Need(uint64_t count, absl::string_view what) const {
    if (count <= remaining()) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("truncated: ", what, " at offset ", offset_, " needs ",
                                            count, " bytes but the file ends after ", remaining(),
                                            " more"));
  }

  absl::Status Skip(uint64_t count, absl::string_view what) {
    TESSEL_RETURN_IF_ERROR(Need(count, what));
    offset_ += count;
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    TESSEL_RETURN_IF_ERROR(Need(sizeof(T), what));
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  // A GGUF string: u64 byte length, then that many bytes (UTF-8 by convention; not checked,
  // since tokenizer vocabularies hold raw byte tokens).
  absl::StatusOr<std::string> ReadString(absl::string_view what) {
    const uint64_t start = offset_;
    TESSEL_ASSIGN_OR_RETURN(const uint64_t length, Read<uint64_t>(what));
    if (length > remaining()) {
      return absl::DataLossError(absl::StrCat(what, " at offset ", start, " has length ", length,
                                              " but only ", remaining(),
                                              " bytes of the file follow"));
    }
    std::string text(reinterpret_cast<const char*>(bytes_.data() + offset_), length);
    offset_ += length;
    return text;
  }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t offset_ = 0;
};

absl::StatusOr<GgufType> ReadValueType(ByteReader& reader, absl::string_view what) {
  const uint64_t at = reader.offset();
  TESSEL_ASSIGN_OR_RETURN(const uint32_t raw, reader.Read<uint32_t>(what));
  if (raw >= kGgufTypeCount) {
    return absl::InvalidArgumentError(absl::StrCat(what, " at offset ", at, " is ", raw,
                                                   ", which is not a GGUF value type (0-12)"));
  }
  return static_cast<GgufType>(raw);
}

template <typename T>
absl::StatusOr<GgufValue> ReadScalar(ByteReader& reader, absl::string_view what) {
  TESSEL_ASSIGN_OR_RETURN(const T value, reader.Read<T>(what));
  return GgufValue(GgufValue::Storage(value));
}

absl::StatusOr<GgufValue> ReadValue(ByteReader& reader, GgufType type, int depth) {
  switch (type) {
    case GgufType::kUint8: return ReadScalar<uint8_t>(reader, "uint8 value");
    case GgufType::kInt8: return ReadScalar<int8_t>(reader, "int8 value");
    case GgufType::kUint16: return ReadScalar<uint16_t>(reader, "uint16 value");
    case GgufType::kInt16: return ReadScalar<int16_t>(reader, "int16 value");
    case GgufType::kUint32: return ReadScalar<uint32_t>(reader, "uint32 value");
    case GgufType::kInt32: return ReadScalar<int32_t>(reader, "int32 value");
    case GgufType::kFloat32: return ReadScalar<float>(reader, "float32 value");
    case GgufType::kUint64: return ReadScalar<uint64_t>(reader, "uint64 value");
    case GgufType::kInt64: return ReadScalar<int64_t>(reader, "int64 value");
    case GgufType::kFloat64: return ReadScalar<double>(reader, "float64 value");
    case GgufType::kBool: {
      const uint64_t at = reader.offset();
      TESSEL_ASSIGN_OR_RETURN(const uint8_t raw, reader.Read<uint8_t>("bool value"));
      if (raw > 1) {
        return absl::InvalidArgumentError(absl::StrCat("bool value at offset ", at, " is ", raw,
                                                       "; GGUF bools are 0 (false) or 1 (true)"));
      }
      return GgufValue(GgufValue::Storage(raw == 1));
    }
    case GgufType::kString: {
      TESSEL_ASSIGN_OR_RETURN(std::string text, reader.ReadString("string value"));
      return GgufValue(GgufValue::Storage(std::move(text)));
    }
    case GgufType::kArray: {
      const uint64_t at = reader.offset();
      if (depth >= GgufFile::kMaxArrayDepth) {
        return absl::InvalidArgumentError(absl::StrCat("array at offset ", at,
                                                       " is nested more than ",
                                                       GgufFile::kMaxArrayDepth, " levels deep"));
      }
      GgufArray array;
      TESSEL_ASSIGN_OR_RETURN(array.element_type, ReadValueType(reader, "array element type"));
      TESSEL_ASSIGN_OR_RETURN(const uint64_t count, reader.Read<uint64_t>("array length"));
      // Every element takes at least MinEncodedBytes in the file, so a count the rest of the
      // file cannot hold is rejected before anything is allocated for it.
      const uint64_t min_bytes = MinEncodedBytes(array.element_type);
      if (count > reader.remaining() / min_bytes) {
        return absl::DataLossError(absl::StrCat(
            "array at offset ", at, " claims ", count, " elements of type ",
            AsAbsl(GgufTypeName(array.element_type)), " (at least ", min_bytes,
            " bytes each) but only ", reader.remaining(), " bytes of the file follow"));
      }
      array.elements.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        auto element = ReadValue(reader, array.element_type, depth + 1);
        if (!element.ok()) {
          return Annotate(element.status(), absl::StrCat("array element ", i));
        }
        array.elements.push_back(*std::move(element));
      }
      return GgufValue(GgufValue::Storage(std::move(array)));
    }
  }
  return absl::InternalError("unreachable GGUF value type");
}

// A key or tensor name as shown in messages: C-escaped, and cut after 128 bytes so a
// corrupt multi-megabyte name cannot flood a log.
std::string Quote(std::string_view name) {
  constexpr size_t kMaxShownBytes = 128;
  const absl::string_view shown = AsAbsl(name.substr(0, kMaxShownBytes));
  return absl::StrCat(
      "'", absl::CHexEscape(shown), "'",
      name.size() > kMaxShownBytes ? absl::StrCat("... (", name.size(), " bytes)") : "");
}

std::string RenderMagic(std::span<const uint8_t> magic) {
  std::string hex;
  std::string text;
  for (const uint8_t byte : magic) {
    absl::StrAppend(&hex, hex.empty() ? "" : " ", absl::Hex(byte, absl::kZeroPad2));
    text.push_back(byte >= 0x20 && byte < 0x7f ? static_cast<char>(byte) : '.');
  }
  return absl::StrCat(hex, " (\"", text, "\")");
}

}  // namespace

// --- Names ----------------------------------------------------------------------------------

std::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

std::string_view GgmlTypeName(uint32_t ggml_type) {
  return ggml_type < kGgmlTypeCount ? kGgmlTypes[ggml_type].name : "unknown";
}

std::optional<DType> DTypeFromGgmlType(uint32_t ggml_type) {
  switch (ggml_type) {
    case kGgmlF32: return DType::kF32;
    case kGgmlF16: return DType::kF16;
    case kGgmlBF16: return DType::kBF16;
    case kGgmlQ8_0: return DType::kQ8_0;
    case kGgmlQ4_0: return DType::kQ4_0;
    case kGgmlQ4_1: return DType::kQ4_1;
    case kGgmlQ4_K: return DType::kQ4_K;
    case kGgmlQ6_K: return DType::kQ6_K;
    default: return std::nullopt;
  }
}

// --- GgufValue ------------------------------------------------------------------------------

bool GgufValue::is_integer() const {
  switch (type()) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64: return true;
    default: return false;
  }
}

std::string GgufValue::DebugString(size_t max_elements) const {
  return std::visit(
      [max_elements](const auto& value) -> std::string {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, bool>) {
          return value ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (value.size() <= kMaxDebugStringBytes)
            return absl::StrCat("\"", absl::CHexEscape(value), "\"");
          return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kMaxDebugStringBytes)),
                              "\"... (", value.size(), " bytes)");
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          std::string text = "[";
          const size_t shown = std::min(max_elements, value.elements.size());
          for (size_t i = 0; i < shown; ++i) {
            absl::StrAppend(&text, i == 0 ? "" : ", ", value.elements[i].DebugString(max_elements));
          }
          if (shown < value.elements.size()) {
            absl::StrAppend(&text, shown == 0 ? "" : ", ", "... (", value.elements.size(),
                            " elements)");
          }
          return absl::StrCat(text, "]");
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          return absl::StrCat(static_cast<int>(value));
        } else {
          return absl::StrCat(value);
        }
      },
      storage_);
}

// --- Parsing --------------------------------------------------------------------------------

// Builds a GgufFile from its mapped bytes; a friend of GgufFile so it can fill it in.
class GgufParser {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::unique_ptr<MappedFile> mapped) {
    const std::string path = mapped->path();
    std::unique_ptr<GgufFile> file(new GgufFile(std::move(mapped)));
    absl::Status status = ParseInto(*file);
    if (!status.ok()) return Annotate(status, absl::StrCat("GGUF file '", path, "'"));
    return file;
  }

 private:
  static absl::Status ParseInto(GgufFile& file) {
    const std::span<const uint8_t> bytes = file.file_->bytes();
    ByteReader reader(bytes);
    TESSEL_RETURN_IF_ERROR(ParseMagicAndVersion(reader, file));
    TESSEL_ASSIGN_OR_RETURN(const uint64_t tensor_count, reader.Read<uint64_t>("tensor count"));
    TESSEL_ASSIGN_OR_RETURN(const uint64_t kv_count, reader.Read<uint64_t>("metadata entry count"));
    // Cap both counts by what the rest of the file can hold before reserving anything.
    if (tensor_count > reader.remaining() / kMinTensorInfoBytes ||
        kv_count > reader.remaining() / kMinKeyValueBytes ||
        tensor_count * kMinTensorInfoBytes + kv_count * kMinKeyValueBytes > reader.remaining()) {
      return absl::DataLossError(absl::StrCat(
          "header claims ", tensor_count, " tensors and ", kv_count,
          " metadata entries, more than the remaining ", reader.remaining(),
          " bytes can describe (a tensor info takes at least ", kMinTensorInfoBytes,
          " bytes, a metadata entry ", kMinKeyValueBytes, "): the file is truncated or corrupt"));
    }
    TESSEL_RETURN_IF_ERROR(ParseMetadata(reader, kv_count, file));
    TESSEL_RETURN_IF_ERROR(ParseAlignment(file));
    TESSEL_RETURN_IF_ERROR(ParseTensorInfos(reader, tensor_count, file));
    // The data section starts at the next multiple of the alignment after the header.
    const uint64_t header_end = reader.offset();
    file.data_offset_ = (header_end + file.alignment_ - 1) / file.alignment_ * file.alignment_;
    return PlaceTensors(file, bytes.size());
  }

  static absl::Status ParseMagicAndVersion(ByteReader& reader, GgufFile& file) {
    const std::span<const uint8_t> bytes = file.file_->bytes();
    if (bytes.size() < 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a GGUF file: it is ", bytes.size(),
                       " bytes long, shorter than the 4-byte magic \"GGUF\""));
    }
    const std::span<const uint8_t> magic = bytes.first(4);
    if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
      const std::string_view text(reinterpret_cast<const char*>(magic.data()), 4);
      const bool legacy = text == "lmgg" || text == "fmgg" || text == "tjgg" || text == "algg";
      return absl::InvalidArgumentError(absl::StrCat(
          "not a GGUF file: magic bytes are ", RenderMagic(magic), ", expected ",
          RenderMagic(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("GGUF"), 4)),
          legacy ? "; this is a pre-GGUF ggml/ggjt file: convert it to GGUF with llama.cpp" : ""));
    }
    TESSEL_RETURN_IF_ERROR(reader.Skip(4, "magic"));
    TESSEL_ASSIGN_OR_RETURN(const uint32_t version, reader.Read<uint32_t>("version"));
    if (version == 2 || version == 3) {
      file.version_ = version;
      return absl::OkStatus();
    }
    const uint32_t swapped = __builtin_bswap32(version);
    if (swapped == 2 || swapped == 3) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "version field reads 0x%08x: this is a big-endian GGUF file, which tessel does not "
          "read; convert it with gguf-py's gguf_convert_endian.py",
          version));
    }
    if (version == 1) {
      return absl::InvalidArgumentError(
          "GGUF version 1 is not supported (tessel reads versions 2 and 3): re-convert the "
          "model with a current llama.cpp");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "GGUF version ", version, " is not supported (tessel reads versions 2 and 3)"));
  }

  static absl::Status ParseMetadata(ByteReader& reader, uint64_t kv_count, GgufFile& file) {
    file.metadata_.reserve(kv_count);
    for (uint64_t i = 0; i < kv_count; ++i) {
      const uint64_t at = reader.offset();
      auto key = reader.ReadString("metadata key");
      if (!key.ok()) {
        return Annotate(key.status(), absl::StrCat("metadata entry #", i));
      }
      if (key->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata entry #", i, " at offset ", at, " has an empty key"));
      }
      if (key->size() > GgufFile::kMaxKeyBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata entry #", i, " at offset ", at, " has a key of ", key->size(),
                         " bytes; GGUF keys are at most ", GgufFile::kMaxKeyBytes, " bytes"));
      }
      const std::string context =
          absl::StrCat("metadata key ", Quote(*key), " (entry #", i, " at offset ", at, ")");
      auto type = ReadValueType(reader, "value type");
      if (!type.ok()) return Annotate(type.status(), context);
      auto value = ReadValue(reader, *type, /*depth=*/0);
      if (!value.ok()) return Annotate(value.status(), context);
      const auto [it, inserted] = file.metadata_index_.emplace(*key, file.metadata_.size());
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(
            "duplicate metadata key ", Quote(*key), " (entries #", it->second, " and #", i, ")"));
      }
      file.metadata_.push_back(GgufKeyValue{*std::move(key), *std::move(value)});
    }
    return absl::OkStatus();
  }

  static absl::Status ParseAlignment(GgufFile& file) {
    const GgufValue* value = file.Find("general.alignment");
    if (value == nullptr) return absl::OkStatus();
    const uint32_t* alignment = value->get_if<uint32_t>();
    if (alignment == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("metadata key 'general.alignment' is ",
                                                     DescribeValueType(*value),
                                                     ", expected a uint32"));
    }
    if (!std::has_single_bit(*alignment)) {
      return absl::InvalidArgumentError(absl::StrCat("metadata key 'general.alignment' is ",
                                                     *alignment, ", which is not a power of two"));
    }
    file.alignment_ = *alignment;
    return absl::OkStatus();
  }

  static absl::Status ParseTensorInfos(ByteReader& reader, uint64_t tensor_count, GgufFile& file) {
    file.tensors_.reserve(tensor_count);
    for (uint64_t i = 0; i < tensor_count; ++i) {
      const uint64_t at = reader.offset();
      auto name = reader.ReadString("tensor name");
      if (!name.ok()) return Annotate(name.status(), absl::StrCat("tensor info #", i));
      if (name->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor info #", i, " at offset ", at, " has an empty name"));
      }
      const std::string context =
          absl::StrCat("tensor ", Quote(*name), " (#", i, " at offset ", at, ")");
      auto info = ParseTensorInfo(reader, *std::move(name));
      if (!info.ok()) return Annotate(info.status(), context);
      const auto [it, inserted] = file.tensor_index_.emplace(info->name, file.tensors_.size());
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name ", Quote(info->name),
                                                       " (tensors #", it->second, " and #", i,
                                                       ")"));
      }
      file.tensors_.push_back(*std::move(info));
    }
    return absl::OkStatus();
  }

  // Reads one tensor info after its name; `offset` is left relative to the data section.
  static absl::StatusOr<GgufTensorInfo> ParseTensorInfo(ByteReader& reader, std::string name) {
    GgufTensorInfo info;
    info.name = std::move(name);
    TESSEL_ASSIGN_OR_RETURN(const uint32_t n_dims, reader.Read<uint32_t>("dimension count"));
    if (n_dims > GgufFile::kMaxDims) {
      return absl::InvalidArgumentError(absl::StrCat("has ", n_dims, " dimensions; at most ",
                                                     GgufFile::kMaxDims, " are supported"));
    }
    info.dims.reserve(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      TESSEL_ASSIGN_OR_RETURN(const uint64_t dim, reader.Read<uint64_t>("dimension"));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(
            absl::StrCat("dims[", d, "] is ", dim, ", larger than the int64 maximum"));
      }
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    info.shape.assign(info.dims.rbegin(), info.dims.rend());
    const bool empty = std::find(info.dims.begin(), info.dims.end(), 0) != info.dims.end();
    info.element_count = empty ? 0 : 1;
    for (const int64_t dim : info.dims) {
      if (empty) break;
      if (info.element_count > std::numeric_limits<int64_t>::max() / dim) {
        return absl::InvalidArgumentError(absl::StrCat("dims [", absl::StrJoin(info.dims, ", "),
                                                       "] have more elements than fit in int64"));
      }
      info.element_count *= dim;
    }

    TESSEL_ASSIGN_OR_RETURN(info.ggml_type, reader.Read<uint32_t>("ggml type"));
    if (info.ggml_type >= kGgmlTypeCount) {
      return absl::InvalidArgumentError(absl::StrCat(
          "has ggml type ", info.ggml_type, ", which is not a ggml type tessel knows (0-",
          kGgmlTypeCount - 1, "): the file is corrupt or newer than this reader"));
    }
    const GgmlTypeTraits& traits = kGgmlTypes[info.ggml_type];
    if (traits.block_elements == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("has ggml type ", DescribeGgmlType(info.ggml_type),
                       ", which ggml has removed: re-quantize the model with a current llama.cpp"));
    }
    info.dtype = DTypeFromGgmlType(info.ggml_type);
    // ggml quantizes row by row, so the row (dims[0]) must hold whole blocks.
    if (info.dims.empty() && traits.block_elements != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("is a 0-dimensional (scalar) tensor of block type ", AsAbsl(traits.name),
                       ", which needs rows of ", traits.block_elements, " elements"));
    }
    const int64_t row = info.dims.empty() ? 1 : info.dims[0];
    if (row % traits.block_elements != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("row length dims[0] = ", row, " is not a multiple of the ",
                       AsAbsl(traits.name), " block size ", traits.block_elements));
    }
    const int64_t blocks = info.element_count / traits.block_elements;
    if (blocks > std::numeric_limits<int64_t>::max() / traits.block_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(info.element_count, " elements of type ",
                                                     AsAbsl(traits.name),
                                                     " take more bytes than fit in int64"));
    }
    info.size_bytes = static_cast<uint64_t>(blocks * traits.block_bytes);
    TESSEL_ASSIGN_OR_RETURN(info.offset, reader.Read<uint64_t>("data offset"));
    return info;
  }

  // Checks every tensor's alignment and range against the file and turns offsets absolute.
  static absl::Status PlaceTensors(GgufFile& file, uint64_t file_size) {
    const uint64_t data_size = file.data_offset_ <= file_size ? file_size - file.data_offset_ : 0;
    for (size_t i = 0; i < file.tensors_.size(); ++i) {
      GgufTensorInfo& tensor = file.tensors_[i];
      const std::string context = absl::StrCat("tensor ", Quote(tensor.name), " (#", i, ")");
      if (tensor.offset % file.alignment_ != 0) {
        return absl::InvalidArgumentError(absl::StrCat(context, ": data offset ", tensor.offset,
                                                       " is not a multiple of the alignment ",
                                                       file.alignment_));
      }
      if (file.data_offset_ > file_size || tensor.offset > data_size ||
          tensor.size_bytes > data_size - tensor.offset) {
        return absl::DataLossError(absl::StrCat(
            context, ": data at offset ", tensor.offset, " (", tensor.size_bytes,
            " bytes) runs past the end of the file: the data section starts at ", file.data_offset_,
            " and the file is ", file_size, " bytes (truncated download?)"));
      }
      tensor.offset += file.data_offset_;
    }
    // Sort by start; any tensor that starts before the furthest end seen so far overlaps the
    // tensor owning that end. Empty tensors occupy no bytes and cannot overlap.
    std::vector<size_t> order(file.tensors_.size());
    std::iota(order.begin(), order.end(), 0);
    // Ties go by file order, so the error names tensors deterministically.
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::pair(file.tensors_[a].offset, a) < std::pair(file.tensors_[b].offset, b);
    });
    const GgufTensorInfo* furthest = nullptr;
    for (const size_t index : order) {
      const GgufTensorInfo& tensor = file.tensors_[index];
      if (tensor.size_bytes == 0) continue;
      if (furthest != nullptr && tensor.offset < furthest->offset + furthest->size_bytes) {
        const uint64_t base = file.data_offset_;
        return absl::InvalidArgumentError(absl::StrCat(
            "tensors ", Quote(furthest->name), " (data bytes [", furthest->offset - base, ", ",
            furthest->offset - base + furthest->size_bytes, ")) and ", Quote(tensor.name),
            " (data bytes [", tensor.offset - base, ", ", tensor.offset - base + tensor.size_bytes,
            ")) overlap"));
      }
      if (furthest == nullptr ||
          tensor.offset + tensor.size_bytes > furthest->offset + furthest->size_bytes) {
        furthest = &tensor;
      }
    }
    return absl::OkStatus();
  }
};

// --- GgufFile -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  return Parse(std::move(mapped));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::unique_ptr<MappedFile> file) {
  if (file == nullptr) return absl::InvalidArgumentError("GgufFile::Parse got a null file");
  return GgufParser::Parse(std::move(file));
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

absl::StatusOr<const GgufValue*> GgufFile::FindOrError(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("GGUF file '", path(), "' has no metadata key '", AsAbsl(key), "'"));
  }
  return value;
}

namespace {

absl::Status TypeMismatch(std::string_view key, const GgufValue& value,
                          absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "GGUF key '", AsAbsl(key), "' is ", DescribeValueType(value), ", expected ", expected));
}

// The value of an integer-typed GgufValue, widened; nullopt for the other types.
std::optional<std::variant<uint64_t, int64_t>> WidenInteger(const GgufValue& value) {
  return std::visit(
      [](const auto& v) -> std::optional<std::variant<uint64_t, int64_t>> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_signed_v<T>) {
            return std::variant<uint64_t, int64_t>(static_cast<int64_t>(v));
          } else {
            return std::variant<uint64_t, int64_t>(static_cast<uint64_t>(v));
          }
        } else {
          return std::nullopt;
        }
      },
      value.storage());
}

}  // namespace

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  const std::string* text = value->get_if<std::string>();
  if (text == nullptr) return TypeMismatch(key, *value, "a string");
  return std::string_view(*text);
}

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  const auto widened = WidenInteger(*value);
  if (!widened.has_value()) return TypeMismatch(key, *value, "an integer");
  if (const int64_t* signed_value = std::get_if<int64_t>(&*widened)) {
    if (*signed_value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF key '", AsAbsl(key), "' is ", DescribeValueType(*value), " holding ",
                       *signed_value, ", expected a non-negative integer"));
    }
    return static_cast<uint64_t>(*signed_value);
  }
  return std::get<uint64_t>(*widened);
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  const auto widened = WidenInteger(*value);
  if (!widened.has_value()) return TypeMismatch(key, *value, "an integer");
  if (const uint64_t* unsigned_value = std::get_if<uint64_t>(&*widened)) {
    if (*unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF key '", AsAbsl(key), "' is ", DescribeValueType(*value), " holding ",
                       *unsigned_value, ", which does not fit in int64"));
    }
    return static_cast<int64_t>(*unsigned_value);
  }
  return std::get<int64_t>(*widened);
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  if (const float* f = value->get_if<float>()) return static_cast<double>(*f);
  if (const double* d = value->get_if<double>()) return *d;
  return TypeMismatch(key, *value, "a float");
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  const bool* flag = value->get_if<bool>();
  if (flag == nullptr) return TypeMismatch(key, *value, "a bool");
  return *flag;
}

absl::StatusOr<const GgufArray*> GgufFile::GetArray(std::string_view key,
                                                    std::optional<GgufType> element_type) const {
  TESSEL_ASSIGN_OR_RETURN(const GgufValue* value, FindOrError(key));
  const GgufArray* array = value->get_if<GgufArray>();
  if (element_type.has_value()) {
    if (array == nullptr || array->element_type != *element_type) {
      return TypeMismatch(key, *value,
                          absl::StrCat("an array of ", AsAbsl(GgufTypeName(*element_type))));
    }
  } else if (array == nullptr) {
    return TypeMismatch(key, *value, "an array");
  }
  return array;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::Data(const GgufTensorInfo& tensor) const {
  const std::span<const uint8_t> bytes = file_->bytes();
  if (tensor.offset > bytes.size() || tensor.size_bytes > bytes.size() - tensor.offset) {
    return {};
  }
  return bytes.subspan(tensor.offset, tensor.size_bytes);
}

// --- Dequantization -------------------------------------------------------------------------
//
// Bit-exact ports of ggml's reference `dequantize_row_*` (ggml-quants.c), keeping its order of
// operations: f16 scales times small integers, then at most one subtraction or addition, all
// in float32. FP contraction is off so `d * q + m` is never fused into an FMA whatever -march
// says (for today's formats the products are exact so fusing would not change results, but
// the ported order, not that accident, is what keeps them bit-exact). Cost: one pass over
// the data, O(elements).
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace {

uint16_t LoadU16(const uint8_t* bytes) {
  uint16_t value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

// IEEE binary16 to binary32, exact for every finite value. NaNs keep their payload and are
// made quiet, as x86 F16C (ggml's GGML_FP16_TO_FP32 on x86) and Arm FCVT do.
float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) {
    const uint32_t quiet = mantissa != 0 ? 0x00400000u : 0u;
    return std::bit_cast<float>(sign | 0x7f800000u | quiet | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in binary32 (a normal number there).
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
  }
  return std::bit_cast<float>(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// block_q8_0: f16 d, int8 qs[32]. y = qs * d.
void DequantizeQ8_0(const uint8_t* block, float* out) {
  const float d = HalfToFloat(LoadU16(block));
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
}

// block_q4_0: f16 d, qs[16]; low nibbles are elements 0-15, high nibbles 16-31. y = (q - 8) * d.
void DequantizeQ4_0(const uint8_t* block, float* out) {
  const float d = HalfToFloat(LoadU16(block));
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
    out[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// block_q4_1: f16 d, f16 m, qs[16] as in q4_0. y = q * d + m.
void DequantizeQ4_1(const uint8_t* block, float* out) {
  const float d = HalfToFloat(LoadU16(block));
  const float m = HalfToFloat(LoadU16(block + 2));
  const uint8_t* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
    out[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q4_K's 12 scale bytes hold eight 6-bit scales and eight 6-bit mins (ggml
// get_scale_min_k4): sub-blocks 0-3 use the low 6 bits of bytes 0-3 (scales) and 4-7
// (mins); sub-blocks 4-7 take their low 4 bits from bytes 8-11 and their top 2 bits from
// the top 2 bits of bytes 0-3 (scales) and 4-7 (mins).
void ScaleMinK4(int j, const uint8_t* scales, int* scale, int* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
    *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// block_q4_K (256 elements): f16 d, f16 dmin, scales[12], qs[128]. Each 64 elements use 32
// bytes of qs: low nibbles for the first 32 (sub-block 2i), high nibbles for the next 32
// (sub-block 2i+1). y = (d * scale) * q - (dmin * min).
void DequantizeQ4_K(const uint8_t* block, float* out) {
  const float d = HalfToFloat(LoadU16(block));
  const float dmin = HalfToFloat(LoadU16(block + 2));
  const uint8_t* scales = block + 4;
  const uint8_t* qs = block + 16;
  for (int group = 0; group < 4; ++group) {
    int scale = 0;
    int min = 0;
    ScaleMinK4(2 * group, scales, &scale, &min);
    const float d1 = d * static_cast<float>(scale);
    const float m1 = dmin * static_cast<float>(min);
    ScaleMinK4(2 * group + 1, scales, &scale, &min);
    const float d2 = d * static_cast<float>(scale);
    const float m2 = dmin * static_cast<float>(min);
    for (int l = 0; l < 32; ++l) out[l] = d1 * static_cast<float>(qs[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) out[l + 32] = d2 * static_cast<float>(qs[l] >> 4) - m2;
    qs += 32;
    out += 64;
  }
}

// block_q6_K (256 elements): ql[128] low 4 bits, qh[64] high 2 bits, int8 scales[16] (one
// per 16 elements), f16 d. Each 128-element half uses 64 bytes of ql and 32 of qh: element
// l + 32k takes ql's low (k even) or high (k odd) nibble and bits 2k..2k+1 of qh[l].
// y = (d * scale) * (q - 32).
void DequantizeQ6_K(const uint8_t* block, float* out) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192);
  const float d = HalfToFloat(LoadU16(block + 208));
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * static_cast<float>(scales[is]) * static_cast<float>(q1);
      out[l + 32] = d * static_cast<float>(scales[is + 2]) * static_cast<float>(q2);
      out[l + 64] = d * static_cast<float>(scales[is + 4]) * static_cast<float>(q3);
      out[l + 96] = d * static_cast<float>(scales[is + 6]) * static_cast<float>(q4);
    }
    ql += 64;
    qh += 32;
    scales += 8;
    out += 128;
  }
}

template <void (*kDequantizeBlock)(const uint8_t*, float*)>
void DequantizeBlocks(std::span<const uint8_t> data, int64_t block_bytes, int64_t block_elements,
                      std::span<float> out) {
  const int64_t blocks = static_cast<int64_t>(out.size()) / block_elements;
  for (int64_t b = 0; b < blocks; ++b) {
    kDequantizeBlock(data.data() + b * block_bytes, out.data() + b * block_elements);
  }
}

}  // namespace

absl::Status DequantizeToF32(const GgufTensorInfo& tensor, std::span<const uint8_t> data,
                             std::span<float> out) {
  if (!DTypeFromGgmlType(tensor.ggml_type).has_value()) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor ", Quote(tensor.name), " has ggml type ", DescribeGgmlType(tensor.ggml_type),
        ", which tessel cannot dequantize (supported: ", kSupportedTypes, ")"));
  }
  const GgmlTypeTraits& traits = kGgmlTypes[tensor.ggml_type];
  // Sizes are checked against the element count and type alone, so a hand-made info with
  // inconsistent dims or size_bytes cannot make the loops below leave `data` or `out`.
  if (tensor.element_count < 0 || tensor.element_count % traits.block_elements != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", Quote(tensor.name), " has ", tensor.element_count,
                     " elements, not a whole number of ", AsAbsl(traits.name), " blocks of ",
                     traits.block_elements));
  }
  const int64_t blocks = tensor.element_count / traits.block_elements;
  if (blocks > std::numeric_limits<int64_t>::max() / traits.block_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", Quote(tensor.name), " has too many elements (", tensor.element_count, ")"));
  }
  const uint64_t expected_bytes = static_cast<uint64_t>(blocks * traits.block_bytes);
  if (data.size() != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", Quote(tensor.name), " (", tensor.element_count, " elements of ",
        AsAbsl(traits.name), ") needs ", expected_bytes, " bytes of data, got ", data.size()));
  }
  if (out.size() != static_cast<uint64_t>(tensor.element_count)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", Quote(tensor.name), " has ", tensor.element_count,
                     " elements but the output holds ", out.size(), " floats"));
  }
  switch (tensor.ggml_type) {
    case kGgmlF32:
      if (!out.empty()) std::memcpy(out.data(), data.data(), data.size());
      break;
    case kGgmlF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(LoadU16(data.data() + 2 * i));
      break;
    case kGgmlBF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(LoadU16(data.data() + 2 * i));
      break;
    case kGgmlQ8_0:
      DequantizeBlocks<DequantizeQ8_0>(data, traits.block_bytes, traits.block_elements, out);
      break;
    case kGgmlQ4_0:
      DequantizeBlocks<DequantizeQ4_0>(data, traits.block_bytes, traits.block_elements, out);
      break;
    case kGgmlQ4_1:
      DequantizeBlocks<DequantizeQ4_1>(data, traits.block_bytes, traits.block_elements, out);
      break;
    case kGgmlQ4_K:
      DequantizeBlocks<DequantizeQ4_K>(data, traits.block_bytes, traits.block_elements, out);
      break;
    case kGgmlQ6_K:
      DequantizeBlocks<DequantizeQ6_K>(data, traits.block_bytes, traits.block_elements, out);
      break;
    default:
      return absl::InternalError(absl::StrCat("no dequantizer for supported ggml type ",
                                              DescribeGgmlType(tensor.ggml_type)));
  }
  return absl::OkStatus();
}

}  // namespace tessel
