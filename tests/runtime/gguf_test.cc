// Tests for the GGUF reader: header validation, metadata, tensor table, dequantization.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/weights/gguf.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/weights/mapped_file.h"

#ifndef TESSEL_TEST_DATA_DIR
#error "define TESSEL_TEST_DATA_DIR as the path of tests/runtime/data"
#endif

namespace tessel {
namespace {

// --- A GGUF writer for building test files byte by byte --------------------------------------

// Appends little-endian GGUF primitives.
class Encoder {
 public:
  template <typename T>
  Encoder& Put(T value) {
    const auto* raw = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
    return *this;
  }
  Encoder& String(std::string_view text) {
    Put<uint64_t>(text.size());
    bytes_.insert(bytes_.end(), text.begin(), text.end());
    return *this;
  }
  Encoder& Append(const std::vector<uint8_t>& bytes) {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

constexpr uint32_t TypeId(GgufType type) { return static_cast<uint32_t>(type); }

// A metadata entry: the value's type id and its encoding (without the type id).
struct TestKv {
  std::string key;
  uint32_t type;
  std::vector<uint8_t> value;
};

template <typename T>
TestKv Scalar(std::string key, GgufType type, T value) {
  return {std::move(key), TypeId(type), Encoder().Put<T>(value).bytes()};
}

TestKv StringKv(std::string key, std::string_view text) {
  return {std::move(key), TypeId(GgufType::kString), Encoder().String(text).bytes()};
}

// Encodes an array value from its already-encoded elements.
std::vector<uint8_t> ArrayValue(GgufType element_type, uint64_t count,
                                const std::vector<uint8_t>& elements) {
  return Encoder()
      .Put<uint32_t>(TypeId(element_type))
      .Put<uint64_t>(count)
      .Append(elements)
      .bytes();
}

// `levels` arrays nested inside each other around one uint8 array [7].
std::vector<uint8_t> NestedArrayValue(int levels) {
  std::vector<uint8_t> value = ArrayValue(GgufType::kUint8, 1, {7});
  for (int i = 1; i < levels; ++i) value = ArrayValue(GgufType::kArray, 1, value);
  return value;
}

struct TestTensor {
  std::string name;
  uint32_t ggml_type;
  std::vector<uint64_t> dims;
  std::vector<uint8_t> data;
  std::optional<uint64_t> offset = std::nullopt;  // in the data section; default: packed
};

struct BuiltFile {
  std::vector<uint8_t> bytes;
  size_t header_end = 0;   // end of the tensor infos
  size_t data_offset = 0;  // start of the data section
};

class GgufBuilder {
 public:
  uint32_t version = 3;
  uint32_t layout_alignment = 32;  // how Build() pads; set general.alignment to match
  std::optional<uint64_t> tensor_count;
  std::optional<uint64_t> kv_count;
  std::vector<TestKv> kvs;
  std::vector<TestTensor> tensors;

  // The file ends exactly where the last tensor's data ends.
  BuiltFile Build() const {
    Encoder header;
    header.Put<uint32_t>(0x46554747).Put<uint32_t>(version);  // "GGUF"
    header.Put<uint64_t>(tensor_count.value_or(tensors.size()));
    header.Put<uint64_t>(kv_count.value_or(kvs.size()));
    for (const TestKv& kv : kvs) header.String(kv.key).Put<uint32_t>(kv.type).Append(kv.value);
    std::vector<uint64_t> offsets;
    uint64_t cursor = 0;
    for (const TestTensor& tensor : tensors) {
      const uint64_t offset = tensor.offset.value_or(cursor);
      offsets.push_back(offset);
      cursor = AlignUp(std::max(cursor, offset + tensor.data.size()));
      header.String(tensor.name).Put<uint32_t>(tensor.dims.size());
      for (const uint64_t dim : tensor.dims) header.Put<uint64_t>(dim);
      header.Put<uint32_t>(tensor.ggml_type).Put<uint64_t>(offset);
    }
    BuiltFile file;
    file.bytes = header.bytes();
    file.header_end = file.bytes.size();
    file.data_offset = AlignUp(file.header_end);
    if (!tensors.empty()) file.bytes.resize(file.data_offset, 0);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const size_t start = file.data_offset + offsets[i];
      const std::vector<uint8_t>& data = tensors[i].data;
      if (file.bytes.size() < start + data.size()) file.bytes.resize(start + data.size(), 0);
      std::copy(data.begin(), data.end(), file.bytes.begin() + start);
    }
    return file;
  }

 private:
  uint64_t AlignUp(uint64_t value) const {
    return (value + layout_alignment - 1) / layout_alignment * layout_alignment;
  }
};

std::vector<uint8_t> Iota(size_t count, uint8_t start = 0) {
  std::vector<uint8_t> bytes(count);
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<uint8_t>(start + i);
  return bytes;
}

std::vector<uint8_t> F32Bytes(const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// Parses `bytes`, which must outlive the result (MappedFile::FromBytes does not copy).
absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::Parse(MappedFile::FromBytes(bytes, "test.gguf"));
}

// Checks the code and that the message names every phrase.
::testing::AssertionResult IsError(const absl::Status& status, absl::StatusCode code,
                                   std::initializer_list<std::string_view> phrases) {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected code " << absl::StatusCodeToString(code) << ", got " << status;
  }
  const std::string message(status.message());
  for (const std::string_view phrase : phrases) {
    if (message.find(phrase) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << message << "\" lacks \"" << phrase << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

absl::Status ParseStatus(const GgufBuilder& builder) {
  const BuiltFile file = builder.Build();
  return StatusOf(ParseBytes(file.bytes));
}

// A small valid file: metadata of several kinds and tensors of three types.
GgufBuilder SampleBuilder() {
  GgufBuilder builder;
  builder.kvs.push_back(StringKv("general.architecture", "llama"));
  builder.kvs.push_back(Scalar<uint32_t>("llama.block_count", GgufType::kUint32, 2));
  builder.kvs.push_back(
      {"tokenizer.ggml.tokens", TypeId(GgufType::kArray),
       ArrayValue(GgufType::kString, 2, Encoder().String("a").String("bc").bytes())});
  builder.kvs.push_back(Scalar<float>("llama.rope.freq_base", GgufType::kFloat32, 10000.0f));
  builder.tensors.push_back(
      {"token_embd.weight", 0, {4, 3}, F32Bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})});
  builder.tensors.push_back({"blk.0.attn_q.weight", 8, {64, 1}, Iota(68, 1)});
  builder.tensors.push_back({"output_norm.weight", 1, {5}, Iota(10, 100)});
  return builder;
}

// --- Metadata ----------------------------------------------------------------------------

TEST(GgufMetadataTest, ReadsEveryScalarType) {
  GgufBuilder builder;
  builder.kvs = {
      Scalar<uint8_t>("t.u8", GgufType::kUint8, 200),
      Scalar<int8_t>("t.i8", GgufType::kInt8, -100),
      Scalar<uint16_t>("t.u16", GgufType::kUint16, 60000),
      Scalar<int16_t>("t.i16", GgufType::kInt16, -30000),
      Scalar<uint32_t>("t.u32", GgufType::kUint32, 4000000000u),
      Scalar<int32_t>("t.i32", GgufType::kInt32, -2000000000),
      Scalar<float>("t.f32", GgufType::kFloat32, 1.5f),
      Scalar<uint8_t>("t.bool", GgufType::kBool, 1),
      StringKv("t.string", "h\xC3\xA9llo"),
      Scalar<uint64_t>("t.u64", GgufType::kUint64, 18000000000000000000ull),
      Scalar<int64_t>("t.i64", GgufType::kInt64, -9000000000000000000ll),
      Scalar<double>("t.f64", GgufType::kFloat64, -0.125),
      Scalar<uint8_t>("t.false", GgufType::kBool, 0),
  };
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;
  EXPECT_EQ(gguf.version(), 3u);
  ASSERT_EQ(gguf.metadata().size(), 13u);
  EXPECT_EQ(gguf.metadata()[0].key, "t.u8");
  EXPECT_EQ(gguf.metadata()[12].key, "t.false");

  EXPECT_EQ(*gguf.Find("t.u8")->get_if<uint8_t>(), 200);
  EXPECT_EQ(*gguf.Find("t.i8")->get_if<int8_t>(), -100);
  EXPECT_EQ(*gguf.Find("t.u16")->get_if<uint16_t>(), 60000);
  EXPECT_EQ(*gguf.Find("t.i16")->get_if<int16_t>(), -30000);
  EXPECT_EQ(*gguf.Find("t.u32")->get_if<uint32_t>(), 4000000000u);
  EXPECT_EQ(*gguf.Find("t.i32")->get_if<int32_t>(), -2000000000);
  EXPECT_EQ(*gguf.Find("t.f32")->get_if<float>(), 1.5f);
  EXPECT_EQ(*gguf.Find("t.bool")->get_if<bool>(), true);
  EXPECT_EQ(*gguf.Find("t.string")->get_if<std::string>(), "h\xC3\xA9llo");
  EXPECT_EQ(*gguf.Find("t.u64")->get_if<uint64_t>(), 18000000000000000000ull);
  EXPECT_EQ(*gguf.Find("t.i64")->get_if<int64_t>(), -9000000000000000000ll);
  EXPECT_EQ(*gguf.Find("t.f64")->get_if<double>(), -0.125);
  EXPECT_EQ(gguf.Find("t.u8")->type(), GgufType::kUint8);
  EXPECT_EQ(gguf.Find("t.f64")->type(), GgufType::kFloat64);
  EXPECT_EQ(gguf.Find("t.string")->type(), GgufType::kString);
  EXPECT_EQ(gguf.Find("t.u8")->get_if<int8_t>(), nullptr);
  EXPECT_EQ(gguf.Find("missing"), nullptr);

  EXPECT_EQ(*gguf.GetUint("t.u8"), 200u);
  EXPECT_EQ(*gguf.GetUint("t.u64"), 18000000000000000000ull);
  EXPECT_EQ(*gguf.GetUint("t.u16"), 60000u);
  EXPECT_FALSE(gguf.GetUint("t.i16").ok());
  EXPECT_EQ(*gguf.GetInt("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(*gguf.GetInt("t.u32"), 4000000000ll);
  EXPECT_EQ(*gguf.GetInt("t.i8"), -100);
  EXPECT_EQ(*gguf.GetFloat("t.f32"), 1.5);
  EXPECT_EQ(*gguf.GetFloat("t.f64"), -0.125);
  EXPECT_EQ(*gguf.GetBool("t.bool"), true);
  EXPECT_EQ(*gguf.GetBool("t.false"), false);
  EXPECT_EQ(*gguf.GetString("t.string"), "h\xC3\xA9llo");
}

TEST(GgufMetadataTest, ReadsArraysIncludingNestedAndEmpty) {
  GgufBuilder builder;
  builder.kvs.push_back(
      {"a.u8", TypeId(GgufType::kArray), ArrayValue(GgufType::kUint8, 3, {1, 2, 3})});
  builder.kvs.push_back(
      {"a.strings", TypeId(GgufType::kArray),
       ArrayValue(GgufType::kString, 3,
                  Encoder().String("<s>").String("").String("\xE2\x96\x81x").bytes())});
  builder.kvs.push_back(
      {"a.empty", TypeId(GgufType::kArray), ArrayValue(GgufType::kFloat64, 0, {})});
  builder.kvs.push_back(
      {"a.bools", TypeId(GgufType::kArray), ArrayValue(GgufType::kBool, 2, {0, 1})});
  // [[1, -2], [], [3]] as int32.
  const std::vector<uint8_t> inner =
      Encoder()
          .Append(
              ArrayValue(GgufType::kInt32, 2, Encoder().Put<int32_t>(1).Put<int32_t>(-2).bytes()))
          .Append(ArrayValue(GgufType::kInt32, 0, {}))
          .Append(ArrayValue(GgufType::kInt32, 1, Encoder().Put<int32_t>(3).bytes()))
          .bytes();
  builder.kvs.push_back(
      {"a.nested", TypeId(GgufType::kArray), ArrayValue(GgufType::kArray, 3, inner)});
  builder.kvs.push_back(
      {"a.deepest", TypeId(GgufType::kArray), NestedArrayValue(GgufFile::kMaxArrayDepth)});
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;

  auto u8 = gguf.GetArray("a.u8", GgufType::kUint8);
  ASSERT_TRUE(u8.ok()) << u8.status();
  ASSERT_EQ((*u8)->elements.size(), 3u);
  EXPECT_EQ(*(*u8)->elements[2].get_if<uint8_t>(), 3);

  auto strings = gguf.GetArray("a.strings", GgufType::kString);
  ASSERT_TRUE(strings.ok()) << strings.status();
  ASSERT_EQ((*strings)->elements.size(), 3u);
  EXPECT_EQ(*(*strings)->elements[0].get_if<std::string>(), "<s>");
  EXPECT_EQ(*(*strings)->elements[1].get_if<std::string>(), "");
  EXPECT_EQ(*(*strings)->elements[2].get_if<std::string>(), "\xE2\x96\x81x");

  auto empty = gguf.GetArray("a.empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->element_type, GgufType::kFloat64);
  EXPECT_TRUE((*empty)->elements.empty());

  auto bools = gguf.GetArray("a.bools", GgufType::kBool);
  ASSERT_TRUE(bools.ok());
  EXPECT_FALSE(*(*bools)->elements[0].get_if<bool>());
  EXPECT_TRUE(*(*bools)->elements[1].get_if<bool>());

  auto nested = gguf.GetArray("a.nested", GgufType::kArray);
  ASSERT_TRUE(nested.ok()) << nested.status();
  ASSERT_EQ((*nested)->elements.size(), 3u);
  const GgufArray& first = *(*nested)->elements[0].get_if<GgufArray>();
  EXPECT_EQ(first.element_type, GgufType::kInt32);
  ASSERT_EQ(first.elements.size(), 2u);
  EXPECT_EQ(*first.elements[1].get_if<int32_t>(), -2);
  EXPECT_TRUE((*nested)->elements[1].get_if<GgufArray>()->elements.empty());
  EXPECT_EQ(*(*nested)->elements[2].get_if<GgufArray>()->elements[0].get_if<int32_t>(), 3);
  EXPECT_EQ(gguf.Find("a.nested")->DebugString(), "[[1, -2], [], [3]]");

  const GgufValue* deepest = gguf.Find("a.deepest");
  ASSERT_NE(deepest, nullptr);
  for (int level = 1; level < GgufFile::kMaxArrayDepth; ++level) {
    deepest = &deepest->get_if<GgufArray>()->elements[0];
  }
  EXPECT_EQ(*deepest->get_if<GgufArray>()->elements[0].get_if<uint8_t>(), 7);
}

TEST(GgufMetadataTest, TypedGettersNameKeyAndTypes) {
  GgufBuilder builder = SampleBuilder();
  builder.kvs.push_back(StringKv("llama.block_count_str", "32"));
  builder.kvs.push_back(Scalar<int32_t>("t.negative", GgufType::kInt32, -3));
  builder.kvs.push_back(Scalar<uint64_t>("t.huge", GgufType::kUint64, ~0ull));
  builder.kvs.push_back(Scalar<uint8_t>("t.flag", GgufType::kBool, 1));
  builder.kvs.push_back(Scalar<int8_t>("t.i8", GgufType::kInt8, 5));
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;

  EXPECT_TRUE(IsError(gguf.GetUint("llama.block_count_str").status(),
                      absl::StatusCode::kInvalidArgument,
                      {"GGUF key 'llama.block_count_str' is a string, expected an integer"}));
  EXPECT_TRUE(IsError(gguf.GetUint("llama.context_length").status(), absl::StatusCode::kNotFound,
                      {"GGUF file 'test.gguf' has no metadata key 'llama.context_length'"}));
  EXPECT_TRUE(IsError(gguf.GetUint("t.negative").status(), absl::StatusCode::kInvalidArgument,
                      {"'t.negative' is an int32 holding -3, expected a non-negative integer"}));
  EXPECT_TRUE(
      IsError(gguf.GetInt("t.huge").status(), absl::StatusCode::kInvalidArgument,
              {"'t.huge' is a uint64 holding 18446744073709551615", "does not fit in int64"}));
  EXPECT_TRUE(IsError(gguf.GetString("llama.block_count").status(),
                      absl::StatusCode::kInvalidArgument,
                      {"GGUF key 'llama.block_count' is a uint32, expected a string"}));
  EXPECT_TRUE(IsError(gguf.GetFloat("t.i8").status(), absl::StatusCode::kInvalidArgument,
                      {"'t.i8' is an int8, expected a float"}));
  EXPECT_TRUE(IsError(gguf.GetBool("llama.rope.freq_base").status(),
                      absl::StatusCode::kInvalidArgument, {"is a float32, expected a bool"}));
  EXPECT_TRUE(IsError(gguf.GetUint("t.flag").status(), absl::StatusCode::kInvalidArgument,
                      {"is a bool, expected an integer"}));
  EXPECT_TRUE(IsError(gguf.GetArray("general.architecture").status(),
                      absl::StatusCode::kInvalidArgument, {"is a string, expected an array"}));
  EXPECT_TRUE(
      IsError(gguf.GetArray("tokenizer.ggml.tokens", GgufType::kInt32).status(),
              absl::StatusCode::kInvalidArgument,
              {"'tokenizer.ggml.tokens' is an array of string, expected an array of int32"}));
  EXPECT_EQ(*gguf.GetUint("t.i8"), 5u);
  EXPECT_EQ(*gguf.GetString("general.architecture"), "llama");
}

TEST(GgufMetadataTest, DebugStringElidesLongValues) {
  GgufBuilder builder;
  Encoder many;
  for (uint32_t i = 0; i < 20; ++i) many.Put<uint32_t>(i);
  builder.kvs.push_back(
      {"a", TypeId(GgufType::kArray), ArrayValue(GgufType::kUint32, 20, many.bytes())});
  builder.kvs.push_back(StringKv("s", std::string(100, 'x')));
  builder.kvs.push_back(StringKv("q", "a\"b\n"));
  builder.kvs.push_back(Scalar<int8_t>("i", GgufType::kInt8, -5));
  builder.kvs.push_back(Scalar<uint8_t>("b", GgufType::kBool, 0));
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("a")->DebugString(3), "[0, 1, 2, ... (20 elements)]");
  EXPECT_EQ((*file)->Find("s")->DebugString(), "\"" + std::string(64, 'x') + "\"... (100 bytes)");
  EXPECT_EQ((*file)->Find("q")->DebugString(), "\"a\\\"b\\n\"");
  EXPECT_EQ((*file)->Find("i")->DebugString(), "-5");
  EXPECT_EQ((*file)->Find("b")->DebugString(), "false");
}

// --- Tensor table ------------------------------------------------------------------------

TEST(GgufTensorTest, ReadsTensorTableAndData) {
  const GgufBuilder builder = SampleBuilder();
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;
  EXPECT_EQ(gguf.alignment(), 32u);
  EXPECT_EQ(gguf.data_offset(), bytes.data_offset);
  EXPECT_EQ(gguf.data_offset() % 32, 0u);
  EXPECT_GE(gguf.data_offset(), bytes.header_end);
  EXPECT_LT(gguf.data_offset(), bytes.header_end + 32);
  ASSERT_EQ(gguf.tensors().size(), 3u);

  const GgufTensorInfo& embd = gguf.tensors()[0];
  EXPECT_EQ(embd.name, "token_embd.weight");
  EXPECT_EQ(embd.ggml_type, 0u);
  EXPECT_EQ(embd.dtype, DType::kF32);
  EXPECT_EQ(embd.dims, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(embd.shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(embd.element_count, 12);
  EXPECT_EQ(embd.offset, bytes.data_offset);
  EXPECT_EQ(embd.size_bytes, 48u);

  const GgufTensorInfo* q = gguf.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ggml_type, 8u);
  EXPECT_EQ(q->dtype, DType::kQ8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{1, 64}));
  EXPECT_EQ(q->size_bytes, 68u);
  EXPECT_EQ(q->offset, bytes.data_offset + 64);  // 48 bytes padded to 64

  const GgufTensorInfo* norm = gguf.FindTensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->dtype, DType::kF16);
  EXPECT_EQ(norm->offset, bytes.data_offset + 160);  // 64 + 68 padded to 160
  EXPECT_EQ(gguf.FindTensor("missing"), nullptr);

  for (size_t i = 0; i < builder.tensors.size(); ++i) {
    const std::span<const uint8_t> data = gguf.Data(gguf.tensors()[i]);
    EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), builder.tensors[i].data)
        << gguf.tensors()[i].name;
  }
  std::vector<float> out(12);
  ASSERT_TRUE(DequantizeToF32(embd, gguf.Data(embd), out).ok());
  EXPECT_EQ(out[11], 11.0f);
}

TEST(GgufTensorTest, HonorsCustomAlignment) {
  GgufBuilder builder = SampleBuilder();
  builder.layout_alignment = 64;
  builder.kvs.push_back(Scalar<uint32_t>("general.alignment", GgufType::kUint32, 64));
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;
  EXPECT_EQ(gguf.alignment(), 64u);
  EXPECT_EQ(gguf.data_offset(), bytes.data_offset);
  EXPECT_EQ(gguf.data_offset() % 64, 0u);
  EXPECT_EQ(gguf.tensors()[1].offset, bytes.data_offset + 64);
  EXPECT_EQ(gguf.tensors()[2].offset, bytes.data_offset + 192);  // 64 + 68 padded to 192
  for (size_t i = 0; i < builder.tensors.size(); ++i) {
    EXPECT_EQ((gguf.tensors()[i].offset - gguf.data_offset()) % 64, 0u);
    const std::span<const uint8_t> data = gguf.Data(gguf.tensors()[i]);
    EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), builder.tensors[i].data);
  }
}

TEST(GgufTensorTest, AcceptsVersion2) {
  GgufBuilder builder = SampleBuilder();
  builder.version = 2;
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 2u);
  EXPECT_EQ((*file)->tensors().size(), 3u);
}

TEST(GgufTensorTest, AcceptsFileWithoutTensorsOrPadding) {
  GgufBuilder builder;
  builder.kvs.push_back(StringKv("general.architecture", "llama"));
  const BuiltFile bytes = builder.Build();
  ASSERT_NE(bytes.bytes.size() % 32, 0u);  // no data section, not even padding
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
}

TEST(GgufTensorTest, ScalarAndEmptyTensors) {
  GgufBuilder builder;
  builder.tensors.push_back({"scalar", 0, {}, F32Bytes({2.5f})});
  builder.tensors.push_back({"empty", 0, {8, 0}, {}});
  builder.tensors.push_back({"after", 0, {1}, F32Bytes({-1.0f})});
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufTensorInfo& scalar = (*file)->tensors()[0];
  EXPECT_TRUE(scalar.dims.empty());
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.element_count, 1);
  EXPECT_EQ(scalar.size_bytes, 4u);
  const GgufTensorInfo& empty = (*file)->tensors()[1];
  EXPECT_EQ(empty.element_count, 0);
  EXPECT_EQ(empty.size_bytes, 0u);
  EXPECT_TRUE((*file)->Data(empty).empty());
  std::vector<float> none;
  EXPECT_TRUE(DequantizeToF32(empty, (*file)->Data(empty), none).ok());
}

TEST(GgufTensorTest, UnsupportedTypeParsesButCannotBeDequantized) {
  GgufBuilder builder;
  builder.kvs.push_back(StringKv("general.architecture", "llama"));
  builder.tensors.push_back({"blk.0.ffn_up.weight", 13, {256, 2}, Iota(2 * 176)});  // q5_K
  const BuiltFile bytes = builder.Build();
  auto file = ParseBytes(bytes.bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufTensorInfo& tensor = (*file)->tensors()[0];
  EXPECT_EQ(tensor.dtype, std::nullopt);
  EXPECT_EQ(tensor.size_bytes, 352u);
  EXPECT_EQ((*file)->Data(tensor).size(), 352u);
  std::vector<float> out(512);
  EXPECT_TRUE(IsError(DequantizeToF32(tensor, (*file)->Data(tensor), out),
                      absl::StatusCode::kUnimplemented,
                      {"'blk.0.ffn_up.weight'", "ggml type 13 (q5_K)", "cannot dequantize",
                       "supported: f32, f16, bf16, q8_0, q4_0, q4_1, q4_K, q6_K"}));
  EXPECT_EQ(GgmlTypeName(13), "q5_K");
  EXPECT_EQ(GgmlTypeName(30), "bf16");
  EXPECT_EQ(GgmlTypeName(1000), "unknown");
  EXPECT_EQ(DTypeFromGgmlType(14), DType::kQ6_K);
  EXPECT_EQ(DTypeFromGgmlType(24), std::nullopt);
}

// --- Header and layout errors ----------------------------------------------------------------

TEST(GgufErrorTest, BadMagicShowsTheBytes) {
  std::vector<uint8_t> bytes = SampleBuilder().Build().bytes;
  std::memcpy(bytes.data(), "PK\x03\x04", 4);
  EXPECT_TRUE(IsError(StatusOf(ParseBytes(bytes)), absl::StatusCode::kInvalidArgument,
                      {"GGUF file 'test.gguf'", "not a GGUF file", "50 4b 03 04 (\"PK..\")",
                       "expected 47 47 55 46 (\"GGUF\")"}));
  std::memcpy(bytes.data(), "tjgg", 4);
  EXPECT_TRUE(IsError(StatusOf(ParseBytes(bytes)), absl::StatusCode::kInvalidArgument,
                      {"pre-GGUF ggml/ggjt file"}));
}

TEST(GgufErrorTest, FileShorterThanMagic) {
  const std::vector<uint8_t> bytes = {'G', 'G'};
  EXPECT_TRUE(IsError(StatusOf(ParseBytes(bytes)), absl::StatusCode::kInvalidArgument,
                      {"2 bytes long", "4-byte magic"}));
  const std::vector<uint8_t> empty;
  EXPECT_FALSE(ParseBytes(empty).ok());
}

TEST(GgufErrorTest, RejectsUnsupportedVersions) {
  GgufBuilder builder = SampleBuilder();
  builder.version = 1;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"GGUF version 1 is not supported", "versions 2 and 3"}));
  builder.version = 4;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"GGUF version 4 is not supported"}));
  builder.version = 0x03000000;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"0x03000000", "big-endian"}));
}

TEST(GgufErrorTest, EveryTruncationIsAnErrorNotACrash) {
  GgufBuilder builder = SampleBuilder();
  builder.kvs.push_back({"a.nested", TypeId(GgufType::kArray), NestedArrayValue(3)});
  builder.kvs.push_back(Scalar<uint8_t>("t.bool", GgufType::kBool, 1));
  builder.kvs.push_back(Scalar<double>("t.f64", GgufType::kFloat64, 2.0));
  const std::vector<uint8_t> full = builder.Build().bytes;
  ASSERT_TRUE(ParseBytes(full).ok());
  for (size_t size = 0; size < full.size(); ++size) {
    // A fresh heap copy of exactly `size` bytes, so ASan flags any read past the end.
    const std::vector<uint8_t> cut(full.begin(), full.begin() + size);
    auto file = ParseBytes(cut);
    ASSERT_FALSE(file.ok()) << "a file cut to " << size << " of " << full.size() << " bytes parsed";
    if (size >= 4) {
      EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss)
          << "cut at " << size << ": " << file.status();
    }
  }
}

TEST(GgufErrorTest, TruncatedHeaderNamesWhatAndWhere) {
  const BuiltFile built = SampleBuilder().Build();
  const std::vector<uint8_t> cut(built.bytes.begin(), built.bytes.begin() + 20);
  EXPECT_TRUE(
      IsError(StatusOf(ParseBytes(cut)), absl::StatusCode::kDataLoss,
              {"truncated: metadata entry count at offset 16 needs 8 bytes", "ends after 4 more"}));
}

TEST(GgufErrorTest, StringLengthPastEnd) {
  GgufBuilder builder;
  builder.kvs.push_back({"k", TypeId(GgufType::kString), Encoder().Put<uint64_t>(1000).bytes()});
  EXPECT_TRUE(
      IsError(ParseStatus(builder), absl::StatusCode::kDataLoss,
              {"metadata key 'k'", "string value at offset", "length 1000", "only 0 bytes"}));
  builder.kvs = {{"k", TypeId(GgufType::kString), Encoder().Put<uint64_t>(~0ull).bytes()}};
  EXPECT_TRUE(
      IsError(ParseStatus(builder), absl::StatusCode::kDataLoss, {"length 18446744073709551615"}));
  // A key whose length runs past the end.
  std::vector<uint8_t> bytes = Encoder()
                                   .Put<uint32_t>(0x46554747)
                                   .Put<uint32_t>(3)
                                   .Put<uint64_t>(0)
                                   .Put<uint64_t>(1)
                                   .Put<uint64_t>(40)
                                   .Append(std::vector<uint8_t>(20, 'k'))
                                   .bytes();
  EXPECT_TRUE(
      IsError(StatusOf(ParseBytes(bytes)), absl::StatusCode::kDataLoss,
              {"metadata entry #0", "metadata key at offset 24 has length 40", "only 20 bytes"}));
}

TEST(GgufErrorTest, AbsurdCountsAreRejectedBeforeAllocating) {
  GgufBuilder builder = SampleBuilder();
  builder.tensor_count = 1ull << 60;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kDataLoss,
                      {"claims 1152921504606846976 tensors", "truncated or corrupt"}));
  builder = SampleBuilder();
  builder.kv_count = ~0ull;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kDataLoss,
                      {"18446744073709551615 metadata entries"}));
  builder = SampleBuilder();
  builder.kvs.push_back(
      {"a.huge", TypeId(GgufType::kArray), ArrayValue(GgufType::kUint64, 1ull << 61, {})});
  EXPECT_TRUE(
      IsError(ParseStatus(builder), absl::StatusCode::kDataLoss,
              {"metadata key 'a.huge'", "claims 2305843009213693952 elements of type uint64"}));
  builder = SampleBuilder();
  builder.kvs.push_back(
      {"a.strings", TypeId(GgufType::kArray), ArrayValue(GgufType::kString, 1ull << 40, {})});
  EXPECT_TRUE(
      IsError(ParseStatus(builder), absl::StatusCode::kDataLoss, {"elements of type string"}));
}

TEST(GgufErrorTest, ArrayNestingDepthIsCapped) {
  GgufBuilder builder;
  builder.kvs.push_back(
      {"a.deep", TypeId(GgufType::kArray), NestedArrayValue(GgufFile::kMaxArrayDepth + 1)});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"metadata key 'a.deep'", "nested more than 8 levels deep"}));
}

TEST(GgufErrorTest, InvalidValueTypes) {
  GgufBuilder builder;
  builder.kvs.push_back({"k", 13, {0}});
  EXPECT_TRUE(IsError(
      ParseStatus(builder), absl::StatusCode::kInvalidArgument,
      {"metadata key 'k'", "value type at offset", "is 13", "not a GGUF value type (0-12)"}));
  builder.kvs = {
      {"k", TypeId(GgufType::kArray), Encoder().Put<uint32_t>(99).Put<uint64_t>(0).bytes()}};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"array element type", "is 99"}));
  builder.kvs = {Scalar<uint8_t>("t.bool", GgufType::kBool, 2)};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"metadata key 't.bool'", "bool value", "is 2"}));
  builder.kvs = {{"a.bools", TypeId(GgufType::kArray), ArrayValue(GgufType::kBool, 3, {0, 1, 7})}};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"array element 2", "is 7"}));
}

TEST(GgufErrorTest, DuplicateAndEmptyKeys) {
  GgufBuilder builder;
  builder.kvs.push_back(Scalar<uint32_t>("k", GgufType::kUint32, 1));
  builder.kvs.push_back(StringKv("other", "x"));
  builder.kvs.push_back(Scalar<uint32_t>("k", GgufType::kUint32, 2));
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"duplicate metadata key 'k' (entries #0 and #2)"}));
  builder.kvs = {Scalar<uint32_t>("", GgufType::kUint32, 1)};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"metadata entry #0", "empty key"}));
  builder.kvs = {Scalar<uint8_t>(std::string(70000, 'k'), GgufType::kUint8, 1)};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"key of 70000 bytes", "at most 65535"}));
}

TEST(GgufErrorTest, BadAlignment) {
  GgufBuilder builder = SampleBuilder();
  builder.kvs.push_back(Scalar<uint32_t>("general.alignment", GgufType::kUint32, 48));
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"'general.alignment' is 48, which is not a power of two"}));
  builder.kvs.back() = Scalar<uint32_t>("general.alignment", GgufType::kUint32, 0);
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"'general.alignment' is 0"}));
  builder.kvs.back() = Scalar<uint64_t>("general.alignment", GgufType::kUint64, 32);
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"'general.alignment' is a uint64, expected a uint32"}));
}

TEST(GgufErrorTest, TooManyDimensions) {
  GgufBuilder builder;
  builder.tensors.push_back({"w", 0, std::vector<uint64_t>(9, 1), F32Bytes({1.0f})});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 'w' (#0", "has 9 dimensions; at most 8"}));
  builder.tensors[0].dims = std::vector<uint64_t>(8, 1);
  EXPECT_TRUE(ParseStatus(builder).ok());
}

TEST(GgufErrorTest, DimensionOverflow) {
  GgufBuilder builder;
  builder.tensors.push_back({"w", 0, {1ull << 32, 1ull << 32}, {}});
  EXPECT_TRUE(IsError(
      ParseStatus(builder), absl::StatusCode::kInvalidArgument,
      {"tensor 'w'", "dims [4294967296, 4294967296] have more elements than fit in int64"}));
  builder.tensors[0].dims = {1ull << 63};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"dims[0] is 9223372036854775808, larger than the int64 maximum"}));
  // Elements fit in int64 but bytes do not.
  builder.tensors[0].dims = {1ull << 62};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"take more bytes than fit in int64"}));
}

TEST(GgufErrorTest, RowNotAWholeNumberOfBlocks) {
  GgufBuilder builder;
  builder.tensors.push_back({"blk.0.ffn_down.weight", 12, {100, 2}, std::vector<uint8_t>(144)});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 'blk.0.ffn_down.weight'",
                       "row length dims[0] = 100 is not a multiple of the q4_K block size 256"}));
  builder.tensors[0] = {"q", 8, {48}, std::vector<uint8_t>(68)};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"dims[0] = 48", "q8_0 block size 32"}));
}

TEST(GgufErrorTest, ScalarOfBlockType) {
  GgufBuilder builder;
  builder.tensors.push_back({"s", 8, {}, std::vector<uint8_t>(34)});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 's'", "0-dimensional (scalar) tensor of block type q8_0"}));
}

TEST(GgufErrorTest, NamesInMessagesAreEscapedAndShortened) {
  GgufBuilder builder;
  builder.tensors.push_back({std::string("bad\x01\n", 5), 99, {4}, {}});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 'bad\\x01\\n' (#0"}));
  builder.tensors[0].name = std::string(1000, 'n');
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {std::string(128, 'n') + "'... (1000 bytes)"}));
}

TEST(GgufErrorTest, UnknownAndRemovedGgmlTypes) {
  GgufBuilder builder;
  builder.tensors.push_back({"w", 99, {4}, std::vector<uint8_t>(16)});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 'w'", "ggml type 99", "(0-41)"}));
  builder.tensors[0].ggml_type = 4;
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"ggml type 4 (q4_2)", "removed"}));
}

TEST(GgufErrorTest, TensorDataPastEndOfFile) {
  // The last tensor ends exactly at the end of the file; drop its last byte.
  std::vector<uint8_t> bytes = SampleBuilder().Build().bytes;
  bytes.pop_back();
  EXPECT_TRUE(IsError(StatusOf(ParseBytes(bytes)), absl::StatusCode::kDataLoss,
                      {"tensor 'output_norm.weight' (#2)", "data at offset 160 (10 bytes)",
                       "runs past the end of the file"}));
}

TEST(GgufErrorTest, TensorOffsetFarPastEnd) {
  // Offsets are patched after building so the file itself stays small.
  GgufBuilder builder;
  builder.tensors.push_back({"w", 0, {4}, F32Bytes({1, 2, 3, 4})});
  BuiltFile built = builder.Build();
  for (const uint64_t offset : {uint64_t{4096}, uint64_t{1} << 40, ~uint64_t{0} - 31}) {
    // The last one is aligned and makes offset + size overflow uint64.
    std::memcpy(built.bytes.data() + built.header_end - 8, &offset, 8);
    EXPECT_TRUE(IsError(StatusOf(ParseBytes(built.bytes)), absl::StatusCode::kDataLoss,
                        {"tensor 'w' (#0)", absl::StrCat("data at offset ", offset, " (16 bytes)"),
                         "runs past the end of the file"}));
  }
}

TEST(GgufErrorTest, MisalignedOffset) {
  GgufBuilder builder;
  builder.tensors.push_back({"a", 0, {4}, F32Bytes({1, 2, 3, 4})});
  builder.tensors.push_back({"b", 0, {4}, F32Bytes({1, 2, 3, 4}), 48});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor 'b' (#1)", "data offset 48 is not a multiple of the alignment 32"}));
}

TEST(GgufErrorTest, OverlappingTensorsNameBoth) {
  GgufBuilder builder;
  builder.tensors.push_back({"a", 0, {16}, F32Bytes(std::vector<float>(16, 1.0f)), 0});
  builder.tensors.push_back({"small", 0, {1}, F32Bytes({2.0f}), 128});
  builder.tensors.push_back({"b", 0, {16}, F32Bytes(std::vector<float>(16, 2.0f)), 32});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensors 'a' (data bytes [0, 64)) and 'b' (data bytes [32, 96)) overlap"}));
  // A tensor inside a larger one that ends later than the tensors between them.
  builder.tensors = {{"big", 0, {64}, F32Bytes(std::vector<float>(64, 1.0f)), 0},
                     {"x", 0, {1}, F32Bytes({2.0f}), 32},
                     {"y", 0, {1}, F32Bytes({2.0f}), 96}};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"'big'", "'x'", "overlap"}));
}

TEST(GgufErrorTest, DuplicateAndEmptyTensorNames) {
  GgufBuilder builder;
  builder.tensors.push_back({"w", 0, {4}, F32Bytes({1, 2, 3, 4})});
  builder.tensors.push_back({"w", 0, {4}, F32Bytes({1, 2, 3, 4})});
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"duplicate tensor name 'w' (tensors #0 and #1)"}));
  builder.tensors = {{"", 0, {4}, F32Bytes({1, 2, 3, 4})}};
  EXPECT_TRUE(IsError(ParseStatus(builder), absl::StatusCode::kInvalidArgument,
                      {"tensor info #0", "empty name"}));
}

TEST(GgufErrorTest, OpenMissingFile) {
  EXPECT_EQ(GgufFile::Open("/nonexistent/model.gguf").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(GgufFile::Parse(nullptr).ok());
}

// --- Dequantization ----------------------------------------------------------------------

GgufTensorInfo InfoFor(uint32_t ggml_type, int64_t elements, uint64_t size_bytes) {
  GgufTensorInfo info;
  info.name = absl::StrCat("vector.", std::string(GgmlTypeName(ggml_type)));
  info.ggml_type = ggml_type;
  info.dtype = DTypeFromGgmlType(ggml_type);
  info.dims = {elements};
  info.shape = {elements};
  info.element_count = elements;
  info.size_bytes = size_bytes;
  return info;
}

struct QuantVector {
  uint32_t ggml_type = 0;
  std::vector<uint8_t> data;
  std::vector<float> expected;
};

// Reads tests/runtime/data/gguf_quant_vectors.bin (format: make_gguf_quant_vectors.py).
std::vector<QuantVector> LoadQuantVectors() {
  const std::string path = std::string(TESSEL_TEST_DATA_DIR) + "/gguf_quant_vectors.bin";
  auto mapped = MappedFile::Open(path);
  EXPECT_TRUE(mapped.ok()) << mapped.status();
  if (!mapped.ok()) return {};
  const std::span<const uint8_t> bytes = (*mapped)->bytes();
  size_t at = 0;
  auto u32 = [&]() {
    uint32_t value = 0;
    if (at + 4 <= bytes.size()) std::memcpy(&value, bytes.data() + at, 4);
    at += 4;
    return value;
  };
  EXPECT_TRUE(bytes.size() >= 8 && std::memcmp(bytes.data(), "TQV1", 4) == 0) << path;
  at = 4;
  const uint32_t count = u32();
  std::vector<QuantVector> vectors;
  for (uint32_t r = 0; r < count; ++r) {
    QuantVector vector;
    vector.ggml_type = u32();
    const uint32_t elements = u32();
    const uint32_t byte_count = u32();
    if (at + byte_count + 4ull * elements > bytes.size()) {
      ADD_FAILURE() << path << " is truncated in record " << r;
      return {};
    }
    vector.data.assign(bytes.begin() + at, bytes.begin() + at + byte_count);
    at += byte_count;
    vector.expected.resize(elements);
    std::memcpy(vector.expected.data(), bytes.data() + at, 4ull * elements);
    at += 4ull * elements;
    vectors.push_back(std::move(vector));
  }
  EXPECT_EQ(at, bytes.size()) << path << " has trailing bytes";
  return vectors;
}

TEST(GgufDequantizeTest, MatchesGgufPyBitForBit) {
  const std::vector<QuantVector> vectors = LoadQuantVectors();
  std::vector<uint32_t> seen;
  for (const QuantVector& vector : vectors) {
    seen.push_back(vector.ggml_type);
    const GgufTensorInfo info =
        InfoFor(vector.ggml_type, static_cast<int64_t>(vector.expected.size()), vector.data.size());
    std::vector<float> out(vector.expected.size(), -12345.0f);
    const absl::Status status = DequantizeToF32(info, vector.data, out);
    ASSERT_TRUE(status.ok()) << status;
    int mismatches = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const uint32_t got = std::bit_cast<uint32_t>(out[i]);
      const uint32_t want = std::bit_cast<uint32_t>(vector.expected[i]);
      if (got != want && ++mismatches <= 5) {
        ADD_FAILURE() << GgmlTypeName(vector.ggml_type) << " element " << i << ": got " << out[i]
                      << " (0x" << std::hex << got << "), want " << vector.expected[i] << " (0x"
                      << want << std::dec << ")";
      }
    }
    EXPECT_EQ(mismatches, 0) << GgmlTypeName(vector.ggml_type) << ": " << mismatches << " of "
                             << out.size() << " elements differ";
  }
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1, 30, 8, 2, 3, 12, 14}));
}

TEST(GgufDequantizeTest, HalfPrecisionSpecialValues) {
  const std::vector<uint16_t> halves = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00,
                                        0xc000, 0x7bff, 0x7c00, 0xfc00, 0x7c01, 0xfe00};
  std::vector<uint8_t> data(halves.size() * 2);
  std::memcpy(data.data(), halves.data(), data.size());
  std::vector<float> out(halves.size());
  ASSERT_TRUE(DequantizeToF32(InfoFor(1, halves.size(), data.size()), data, out).ok());
  EXPECT_EQ(std::bit_cast<uint32_t>(out[0]), 0x00000000u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out[1]), 0x80000000u);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(out[3], std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(out[4], std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(out[5], 1.0f);
  EXPECT_EQ(out[6], -2.0f);
  EXPECT_EQ(out[7], 65504.0f);
  EXPECT_EQ(out[8], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[9], -std::numeric_limits<float>::infinity());
  // Signaling NaN 0x7c01 is quieted with its payload kept, as F16C does.
  EXPECT_EQ(std::bit_cast<uint32_t>(out[10]), 0x7fc02000u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out[11]), 0xffc00000u);
}

TEST(GgufDequantizeTest, RejectsMismatchedSizes) {
  const GgufTensorInfo info = InfoFor(12, 256, 144);
  std::vector<uint8_t> data(144);
  std::vector<float> out(256);
  EXPECT_TRUE(DequantizeToF32(info, data, out).ok());
  EXPECT_TRUE(
      IsError(DequantizeToF32(info, std::span<const uint8_t>(data).first(100), out),
              absl::StatusCode::kInvalidArgument,
              {"'vector.q4_K'", "(256 elements of q4_K) needs 144 bytes of data, got 100"}));
  EXPECT_TRUE(IsError(DequantizeToF32(info, data, std::span<float>(out).first(255)),
                      absl::StatusCode::kInvalidArgument,
                      {"has 256 elements but the output holds 255 floats"}));
  // An info whose element count is not whole blocks, whatever its size_bytes claims.
  EXPECT_TRUE(IsError(DequantizeToF32(InfoFor(12, 300, 144), data, out),
                      absl::StatusCode::kInvalidArgument,
                      {"300 elements, not a whole number of q4_K blocks of 256"}));
}

// --- A file written by gguf-py's GGUFWriter --------------------------------------------------

TEST(GgufTinyFileTest, ReadsFileWrittenByGgufPy) {
  auto file = GgufFile::Open(std::string(TESSEL_TEST_DATA_DIR) + "/tiny.gguf");
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& gguf = **file;
  EXPECT_EQ(gguf.version(), 3u);
  EXPECT_EQ(gguf.alignment(), 32u);
  EXPECT_EQ(*gguf.GetString("general.architecture"), "llama");
  EXPECT_EQ(*gguf.GetString("general.name"), "tiny");
  EXPECT_EQ(gguf.Find("llama.block_count")->type(), GgufType::kUint32);
  EXPECT_EQ(*gguf.GetUint("llama.block_count"), 2u);
  EXPECT_EQ(gguf.Find("llama.context_length")->type(), GgufType::kUint64);
  EXPECT_EQ(*gguf.GetUint("llama.context_length"), 4096u);
  EXPECT_EQ(gguf.Find("llama.rope.freq_base")->type(), GgufType::kFloat32);
  EXPECT_EQ(*gguf.GetFloat("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(*gguf.GetFloat("tessel.test.f64"), -2.5);
  EXPECT_EQ(*gguf.GetInt("tessel.test.i8"), -7);
  EXPECT_EQ(*gguf.GetBool("tessel.test.flag"), true);

  auto tokens = gguf.GetArray("tokenizer.ggml.tokens", GgufType::kString);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  std::vector<std::string> token_text;
  for (const GgufValue& token : (*tokens)->elements)
    token_text.push_back(*token.get_if<std::string>());
  EXPECT_EQ(token_text, (std::vector<std::string>{"<s>", "</s>", "hello", "\xE2\x96\x81world"}));
  auto scores = gguf.GetArray("tokenizer.ggml.scores", GgufType::kFloat32);
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ((*scores)->elements.size(), 4u);
  EXPECT_EQ(*(*scores)->elements[3].get_if<float>(), -3.25f);
  EXPECT_EQ(gguf.Find("tessel.test.nested")->DebugString(), "[[1, 2], [3]]");

  ASSERT_EQ(gguf.tensors().size(), 4u);
  auto dequantize = [&](std::string_view name, std::vector<int64_t> shape) {
    const GgufTensorInfo* tensor = gguf.FindTensor(name);
    std::vector<float> out;
    EXPECT_NE(tensor, nullptr) << name;
    if (tensor == nullptr) return out;
    EXPECT_EQ(tensor->shape, shape) << name;
    EXPECT_EQ(tensor->offset % 32, 0u) << name;
    out.resize(tensor->element_count);
    const absl::Status status = DequantizeToF32(*tensor, gguf.Data(*tensor), out);
    EXPECT_TRUE(status.ok()) << status;
    return out;
  };

  const std::vector<float> embd = dequantize("token_embd.weight", {3, 4});
  ASSERT_EQ(embd.size(), 12u);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) EXPECT_EQ(embd[r * 4 + c], r * 10 + c + 0.5f);
  }
  EXPECT_EQ(gguf.FindTensor("token_embd.weight")->dims, (std::vector<int64_t>{4, 3}));

  const std::vector<float> norm = dequantize("output_norm.weight", {8});
  ASSERT_EQ(norm.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(norm[i], (i - 4) / 4.0f);

  const std::vector<float> q8 = dequantize("blk.0.attn_q.weight", {2, 64});
  ASSERT_EQ(q8.size(), 128u);
  for (int i = 0; i < 128; ++i) {
    const int q = i % 32 == 0 ? 127 : (i * 7) % 255 - 127;
    EXPECT_EQ(q8[i], q / 64.0f) << i;
  }
  EXPECT_EQ(gguf.FindTensor("blk.0.attn_q.weight")->dtype, DType::kQ8_0);

  const std::vector<float> q4k = dequantize("blk.0.ffn_down.weight", {2, 256});
  ASSERT_EQ(q4k.size(), 512u);
  for (int r = 0; r < 2; ++r) {
    for (int j = 0; j < 8; ++j) {
      const float scale = static_cast<float>(8 * j + 3 + r);
      const float min = static_cast<float>(7 * j + r);
      for (int l = 0; l < 32; ++l) {
        const float q = static_cast<float>((l + j + r) % 16);
        EXPECT_EQ(q4k[r * 256 + j * 32 + l], 0.25f * scale * q - 0.5f * min)
            << "row " << r << " sub-block " << j << " element " << l;
      }
    }
  }
  EXPECT_EQ(gguf.FindTensor("blk.0.ffn_down.weight")->dtype, DType::kQ4_K);
}

}  // namespace
}  // namespace tessel
