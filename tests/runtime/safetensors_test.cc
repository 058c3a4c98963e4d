// Tests of the safetensors reader: round trips, sharded checkpoints and every rejected input.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/weights/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace tessel {
namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define TESSEL_TEST_SANITIZED 1
#endif
#endif

// ---- Writing test files --------------------------------------------------------------------

/// A tensor to serialize: `bytes` is its raw data, sized by the caller.
struct TestTensor {
  std::string name;
  std::string dtype;  // safetensors name: "F32", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

int64_t DTypeSize(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "I64") return 8;
  return 1;  // F8_E4M3, I8
}

std::string ShapeJson(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

/// The 8-byte little-endian `header_length`, then `header`, then `data`.
std::string WithHeaderLength(uint64_t header_length, const std::string& header,
                             const std::string& data) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header_length >> (8 * i)) & 0xff);
  return file + header + data;
}

/// A file whose header is `header` (any text) followed by `data`.
std::string WithHeader(const std::string& header, const std::string& data = "") {
  return WithHeaderLength(header.size(), header, data);
}

/// A well-formed safetensors file with `tensors` laid out back to back in the given order.
std::string Serialize(const std::vector<TestTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  std::string header = "{";
  std::string data;
  if (!metadata.empty()) {
    header += "\"__metadata__\": {";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ", ";
      first = false;
      header += "\"" + key + "\": \"" + value + "\"";
    }
    header += "}";
  }
  for (const TestTensor& tensor : tensors) {
    if (header.size() > 1) header += ", ";
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
    header += "\"" + tensor.name + "\": {\"dtype\": \"" + tensor.dtype +
              "\", \"shape\": " + ShapeJson(tensor.shape) + ", \"data_offsets\": [" +
              std::to_string(begin) + ", " + std::to_string(data.size()) + "]}";
  }
  header += "}";
  // Pad like the reference writer so the data section starts 8-byte aligned.
  while ((8 + header.size()) % 8 != 0) header += ' ';
  return WithHeader(header, data);
}

/// A tensor of `dtype` and `shape` filled with random bytes.
TestTensor RandomTensor(std::mt19937& rng, std::string name, std::string dtype,
                        std::vector<int64_t> shape) {
  int64_t elements = 1;
  for (int64_t dim : shape) elements *= dim;
  std::vector<uint8_t> bytes(elements * DTypeSize(dtype));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  return {std::move(name), std::move(dtype), std::move(shape), std::move(bytes)};
}

/// One entry of a hand-written header: `{"dtype": .., "shape": .., "data_offsets": [b, e]}`.
std::string Entry(const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
  return "{\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data_offsets\": [" +
         std::to_string(begin) + ", " + std::to_string(end) + "]}";
}

// ---- Fixture: a fresh directory per test ---------------------------------------------------

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir();
    if (pattern.empty() || pattern.back() != '/') pattern += '/';
    pattern += "safetensors_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }

  void TearDown() override { RemoveTree(dir_); }

  static void RemoveTree(const std::string& path) {
    if (DIR* dir = ::opendir(path.c_str())) {
      while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        const std::string child = path + "/" + name;
        struct stat info;
        if (::lstat(child.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
          RemoveTree(child);
        } else {
          ::unlink(child.c_str());
        }
      }
      ::closedir(dir);
    }
    ::rmdir(path.c_str());
  }

  /// Writes `contents` to `name` inside the test directory and returns its path.
  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    EXPECT_TRUE(out.good()) << "cannot write " << path;
    return path;
  }

  std::string MakeSubdir(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    EXPECT_EQ(::mkdir(path.c_str(), 0755), 0) << std::strerror(errno);
    return path;
  }

  /// Parses `contents` from memory, the way the fuzzer does. The fixture keeps the bytes
  /// alive for the rest of the test, since `MappedFile::FromBytes` does not own them.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseBytes(std::string contents) {
    const std::string& kept = kept_bytes_.emplace_back(std::move(contents));
    return SafetensorsFile::Parse(MappedFile::FromBytes(
        {reinterpret_cast<const uint8_t*>(kept.data()), kept.size()}, "test.safetensors"));
  }

  /// Parses `contents` and checks that it fails with `code` and a message holding `phrases`.
  void ExpectParseError(std::string contents, absl::StatusCode code,
                        std::initializer_list<std::string> phrases) {
    ExpectError(ParseBytes(std::move(contents)).status(), code, phrases);
  }

  static void ExpectError(const absl::Status& status, absl::StatusCode code,
                          std::initializer_list<std::string> phrases) {
    EXPECT_EQ(status.code(), code) << status;
    for (const std::string& phrase : phrases) {
      EXPECT_TRUE(absl::StrContains(status.message(), phrase))
          << "message: " << status.message() << "\nlacks: " << phrase;
    }
  }

  std::string dir_;
  std::deque<std::string> kept_bytes_;  // a deque: growing it never moves the strings
};

// ---- Good files ----------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripsEveryDType) {
  std::mt19937 rng(1234);
  // Written out of name order on purpose: tensors() must come back sorted by name.
  const std::vector<TestTensor> written = {
      RandomTensor(rng, "z.f32", "F32", {3, 5}),      RandomTensor(rng, "a.f16", "F16", {7}),
      RandomTensor(rng, "m.bf16", "BF16", {2, 3, 4}), RandomTensor(rng, "b.f8", "F8_E4M3", {17}),
      RandomTensor(rng, "c.i8", "I8", {1, 9}),        RandomTensor(rng, "d.i32", "I32", {4, 1}),
      RandomTensor(rng, "e.i64", "I64", {3}),         RandomTensor(rng, "scalar", "F32", {}),
      RandomTensor(rng, "empty", "BF16", {0, 4096}),
  };
  const std::string contents = Serialize(written);
  const std::string path = Write("model.safetensors", contents);

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  EXPECT_EQ((*file)->file_size(), contents.size());
  ASSERT_EQ((*file)->tensors().size(), written.size());
  for (size_t i = 1; i < (*file)->tensors().size(); ++i) {
    EXPECT_LT((*file)->tensors()[i - 1].name, (*file)->tensors()[i].name);
  }
  size_t data_section_bytes = 0;
  for (const TestTensor& tensor : written) data_section_bytes += tensor.bytes.size();
  // Serialize lays tensors out back to back in `written` order, right after the header.
  uint64_t expected_offset = contents.size() - data_section_bytes;
  for (const TestTensor& want : written) {
    SCOPED_TRACE(want.name);
    const TensorInfo* got = (*file)->Find(want.name);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->name, want.name);
    EXPECT_EQ(got->dtype, DTypeFromSafetensorsName(want.dtype));
    EXPECT_EQ(got->shape, want.shape);
    int64_t elements = 1;
    for (int64_t dim : want.shape) elements *= dim;
    EXPECT_EQ(got->element_count, elements);
    EXPECT_EQ(got->size_bytes, want.bytes.size());
    EXPECT_EQ(got->data_offset, expected_offset);
    EXPECT_EQ(got->file, path);
    expected_offset += want.bytes.size();
    const std::span<const uint8_t> data = (*file)->Data(*got);
    ASSERT_EQ(data.size(), want.bytes.size());
    EXPECT_TRUE(std::equal(data.begin(), data.end(), want.bytes.begin()));
  }
  EXPECT_EQ((*file)->Find("missing"), nullptr);
  EXPECT_EQ((*file)->Find(""), nullptr);
  EXPECT_TRUE((*file)->metadata().empty());
}

/// Raw little-endian bytes of `values` (the test hosts are little-endian, like the format).
template <typename T>
std::vector<uint8_t> BytesOf(const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

/// The bytes of `data` read back as values of T.
template <typename T>
std::vector<T> ValuesOf(std::span<const uint8_t> data) {
  std::vector<T> values(data.size() / sizeof(T));
  std::memcpy(values.data(), data.data(), values.size() * sizeof(T));
  return values;
}

TEST_F(SafetensorsTest, RoundTripsTypedValues) {
  const std::vector<float> floats = {1.5f, -2.25f, 3.14159f, 0.0f, -0.0f, 1e-30f};
  const std::vector<int64_t> longs = {0, -1, INT64_MAX, INT64_MIN};
  const std::vector<int32_t> ints = {7, -7, INT32_MAX};
  auto file = ParseBytes(Serialize({{"f", "F32", {2, 3}, BytesOf(floats)},
                                    {"l", "I64", {4}, BytesOf(longs)},
                                    {"i", "I32", {3}, BytesOf(ints)}}));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(ValuesOf<float>((*file)->Data(*(*file)->Find("f"))), floats);
  EXPECT_EQ(ValuesOf<int64_t>((*file)->Data(*(*file)->Find("l"))), longs);
  EXPECT_EQ(ValuesOf<int32_t>((*file)->Data(*(*file)->Find("i"))), ints);
}

TEST_F(SafetensorsTest, ReadsMetadata) {
  std::mt19937 rng(7);
  const std::string contents =
      Serialize({RandomTensor(rng, "w", "F16", {2, 2})}, {{"format", "pt"}, {"step", "1000"}});
  auto file = ParseBytes(contents);
  ASSERT_TRUE(file.ok()) << file.status();
  const std::map<std::string, std::string> expected = {{"format", "pt"}, {"step", "1000"}};
  EXPECT_EQ((*file)->metadata(), expected);
  EXPECT_EQ((*file)->tensors().size(), 1u);
  EXPECT_EQ((*file)->path(), "test.safetensors");
}

TEST_F(SafetensorsTest, AcceptsMetadataOnlyAndEmptyHeaders) {
  auto metadata_only = ParseBytes(WithHeader(R"({"__metadata__": {"a": "b"}})"));
  ASSERT_TRUE(metadata_only.ok()) << metadata_only.status();
  EXPECT_TRUE((*metadata_only)->tensors().empty());
  auto empty = ParseBytes(WithHeader("{}"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->tensors().empty());
}

TEST_F(SafetensorsTest, AcceptsZeroElementTensorsAnywhere) {
  // A zero-element tensor holds no byte, so it overlaps nothing even inside another's range;
  // its other dimensions may be huge without overflowing the element count.
  const std::string header =
      "{\"big\": " + Entry("F32", "[4]", 0, 16) + ", \"inside\": " + Entry("F32", "[0, 3]", 8, 8) +
      ", \"huge\": " + Entry("BF16", "[4611686018427387904, 4611686018427387904, 0]", 16, 16) + "}";
  auto file = ParseBytes(WithHeader(header, std::string(16, 'x')));
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* inside = (*file)->Find("inside");
  ASSERT_NE(inside, nullptr);
  EXPECT_EQ(inside->element_count, 0);
  EXPECT_EQ((*file)->Data(*inside).size(), 0u);
  EXPECT_EQ((*file)->Find("huge")->element_count, 0);
}

TEST_F(SafetensorsTest, AcceptsAdjacentTensorsGapsAndTrailingBytes) {
  const std::string header = "{\"a\": " + Entry("I8", "[4]", 0, 4) +
                             ", \"b\": " + Entry("I8", "[4]", 4, 8) +
                             ", \"c\": " + Entry("I8", "[2]", 12, 14) + "}";
  auto file = ParseBytes(WithHeader(header, "0123456789abcdefgh"));
  ASSERT_TRUE(file.ok()) << file.status();
  const auto c = (*file)->Data(*(*file)->Find("c"));
  EXPECT_EQ(std::string(c.begin(), c.end()), "cd");
}

TEST_F(SafetensorsTest, IgnoresUnknownKeysInEntries) {
  const std::string header =
      R"({"a": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2], "extra": {"x": 1}}})";
  auto file = ParseBytes(WithHeader(header, "xy"));
  ASSERT_TRUE(file.ok()) << file.status();
}

TEST_F(SafetensorsTest, HeaderOnlyParsingOfSparseFile) {
  // 8 GiB file that is almost all hole: parsing must look at the header only.
  constexpr uint64_t kTensorBytes = uint64_t{8} << 30;
  const std::string header = "{\"huge\": " + Entry("BF16", "[65536, 65536]", 0, kTensorBytes) + "}";
  const std::string path = Write("sparse.safetensors", WithHeader(header));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + header.size() + kTensorBytes)), 0)
      << std::strerror(errno);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* huge = (*file)->Find("huge");
  ASSERT_NE(huge, nullptr);
  EXPECT_EQ((*file)->Data(*huge).size(), kTensorBytes);
}

TEST_F(SafetensorsTest, DataOfForeignInfoIsEmpty) {
  auto file = ParseBytes(WithHeader("{\"a\": " + Entry("I8", "[2]", 0, 2) + "}", "xy"));
  ASSERT_TRUE(file.ok()) << file.status();
  TensorInfo foreign = *(*file)->Find("a");
  foreign.data_offset = 1000;
  EXPECT_TRUE((*file)->Data(foreign).empty());
  foreign.data_offset = UINT64_MAX;
  foreign.size_bytes = 2;
  EXPECT_TRUE((*file)->Data(foreign).empty());
}

// ---- Rejected files: one test per error --------------------------------------------------

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthPrefix) {
  ExpectParseError(std::string("\x05\0\0\0\0", 5), absl::StatusCode::kDataLoss,
                   {"test.safetensors", "has 5 bytes", "8-byte header length"});
  ExpectParseError("", absl::StatusCode::kDataLoss, {"has 0 bytes"});
  const std::string path = Write("empty.safetensors", "");
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss, {path});
}

TEST_F(SafetensorsTest, RejectsHeaderPastEndOfFile) {
  ExpectParseError(WithHeaderLength(1000, "{}", "abc"), absl::StatusCode::kDataLoss,
                   {"test.safetensors", "header length 1000", "needs 1008 bytes", "the file has 13",
                    "truncated"});
}

TEST_F(SafetensorsTest, RejectsAbsurdHeaderLength) {
  ExpectParseError(WithHeaderLength(uint64_t{1} << 40, "{}", ""),
                   absl::StatusCode::kInvalidArgument,
                   {"header length 1099511627776", "limit of 100000000"});
  ExpectParseError(WithHeaderLength(UINT64_MAX, "{}", ""), absl::StatusCode::kInvalidArgument,
                   {"header length 18446744073709551615"});
}

TEST_F(SafetensorsTest, RejectsInvalidJson) {
  ExpectParseError(WithHeader("{\"a\": {\"dtype\": }"), absl::StatusCode::kInvalidArgument,
                   {"test.safetensors", "header is not valid JSON", "line 1, column"});
  ExpectParseError(WithHeader(""), absl::StatusCode::kInvalidArgument, {"not valid JSON"});
  ExpectParseError(WithHeader("{\"a\": \"\xff\xfe\"}"), absl::StatusCode::kInvalidArgument,
                   {"not valid JSON"});
  ExpectParseError(WithHeader("{} trailing"), absl::StatusCode::kInvalidArgument,
                   {"not valid JSON"});
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
  ExpectParseError(WithHeader("[1, 2]"), absl::StatusCode::kInvalidArgument,
                   {"header is an array, not a JSON object"});
  ExpectParseError(WithHeader("42"), absl::StatusCode::kInvalidArgument, {"header is an integer"});
}

TEST_F(SafetensorsTest, RejectsEntryThatIsNotAnObject) {
  ExpectParseError(WithHeader(R"({"w": [1, 2]})"), absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "entry is an array, not an object"});
}

TEST_F(SafetensorsTest, RejectsMissingOrNonStringDType) {
  ExpectParseError(WithHeader(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"),
                   absl::StatusCode::kInvalidArgument, {"tensor 'w'", "missing \"dtype\""});
  ExpectParseError(
      WithHeader(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "abcd"),
      absl::StatusCode::kInvalidArgument, {"tensor 'w'", "dtype 4 is an integer, not a string"});
}

TEST_F(SafetensorsTest, RejectsUnknownDType) {
  ExpectParseError(WithHeader("{\"w\": " + Entry("U8", "[4]", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "dtype 'U8' is not supported by tessel",
                    "supported: F32, F16, BF16, F8_E4M3, I64, I32, I8"});
  ExpectParseError(WithHeader("{\"w\": " + Entry("FLOAT", "[4]", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "dtype 'FLOAT' is not a safetensors dtype", "BF16"});
}

TEST_F(SafetensorsTest, RejectsBadShape) {
  ExpectParseError(WithHeader(R"({"w": {"dtype": "I8", "data_offsets": [0, 4]}})", "abcd"),
                   absl::StatusCode::kInvalidArgument, {"tensor 'w'", "missing \"shape\""});
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "4", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "shape 4 is not an array of non-negative integers"});
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "[2, -2]", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "has dimension -2, not a non-negative integer"});
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "[2.5]", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument, {"tensor 'w'", "has dimension 2.5"});
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "[\"4\"]", 0, 4) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument, {"tensor 'w'", "has dimension \"4\""});
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "[9223372036854775808]", 0, 4) + "}"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "dimension 9223372036854775808, larger than the int64"});
}

TEST_F(SafetensorsTest, RejectsElementCountOverflow) {
  ExpectParseError(
      WithHeader("{\"w\": " + Entry("I8", "[4294967296, 4294967296]", 0, 4) + "}", "abcd"),
      absl::StatusCode::kInvalidArgument, {"tensor 'w'", "element count", "overflows int64"});
  // The element count fits but its byte size does not.
  ExpectParseError(WithHeader("{\"w\": " + Entry("I64", "[4611686018427387904]", 0, 4) + "}"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "4611686018427387904 elements of I64", "overflow"});
}

TEST_F(SafetensorsTest, RejectsBadDataOffsets) {
  ExpectParseError(WithHeader(R"({"w": {"dtype": "I8", "shape": [4]}})", "abcd"),
                   absl::StatusCode::kInvalidArgument, {"tensor 'w'", "missing \"data_offsets\""});
  for (const std::string offsets : {"[0]", "[0, 2, 4]", "[-1, 3]", "[0, 4.0]", "{}", "\"0,4\""}) {
    SCOPED_TRACE(offsets);
    ExpectParseError(
        WithHeader(R"({"w": {"dtype": "I8", "shape": [4], "data_offsets": )" + offsets + "}}",
                   "abcd"),
        absl::StatusCode::kInvalidArgument,
        {"tensor 'w'", "is not a pair of non-negative integers [begin, end]"});
  }
  ExpectParseError(WithHeader("{\"w\": " + Entry("I8", "[0]", 4, 0) + "}", "abcd"),
                   absl::StatusCode::kInvalidArgument,
                   {"tensor 'w'", "data_offsets [4, 0] are not ascending"});
}

TEST_F(SafetensorsTest, RejectsSizeMismatch) {
  ExpectParseError(
      WithHeader("{\"w\": " + Entry("F32", "[2, 3]", 0, 20) + "}", std::string(24, 'x')),
      absl::StatusCode::kInvalidArgument,
      {"tensor 'w'", "data_offsets [0, 20] span 20 bytes", "needs 24 bytes",
       "6 elements x 4 bytes"});
}

TEST_F(SafetensorsTest, RejectsRangePastEndOfFile) {
  const std::string header = "{\"w\": " + Entry("F32", "[4]", 8, 24) + "}";
  ExpectParseError(WithHeader(header, std::string(20, 'x')), absl::StatusCode::kDataLoss,
                   {"tensor 'w'", "data_offsets [8, 24] run past the end of the data section",
                    "has 20 bytes", "truncated"});
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string header = "{\"first\": " + Entry("I8", "[8]", 0, 8) +
                             ", \"second\": " + Entry("I8", "[4]", 6, 10) +
                             ", \"third\": " + Entry("I8", "[2]", 10, 12) + "}";
  ExpectParseError(
      WithHeader(header, std::string(12, 'x')), absl::StatusCode::kInvalidArgument,
      {"tensors 'first' (data_offsets [0, 8))", "'second' (data_offsets [6, 10)) overlap"});
  // Same start, and one range inside another.
  const std::string same =
      "{\"a\": " + Entry("I8", "[4]", 0, 4) + ", \"b\": " + Entry("I8", "[4]", 0, 4) + "}";
  ExpectParseError(WithHeader(same, "abcd"), absl::StatusCode::kInvalidArgument,
                   {"'a'", "'b'", "overlap"});
  const std::string nested =
      "{\"outer\": " + Entry("I8", "[8]", 0, 8) + ", \"inner\": " + Entry("I8", "[2]", 2, 4) + "}";
  ExpectParseError(WithHeader(nested, std::string(8, 'x')), absl::StatusCode::kInvalidArgument,
                   {"'outer'", "'inner'", "overlap"});
}

TEST_F(SafetensorsTest, RejectsBadMetadata) {
  ExpectParseError(WithHeader(R"({"__metadata__": ["pt"]})"), absl::StatusCode::kInvalidArgument,
                   {"__metadata__ is an array, not an object of strings"});
  ExpectParseError(WithHeader(R"({"__metadata__": {"format": "pt", "step": 1000}})"),
                   absl::StatusCode::kInvalidArgument,
                   {"__metadata__ entry 'step' is an integer (1000), not a string"});
}

TEST_F(SafetensorsTest, RejectsRepeatedKeys) {
  // nlohmann would keep the last "w"; two readers could then disagree about the file.
  const std::string twice =
      "{\"w\": " + Entry("I8", "[2]", 0, 2) + ", \"w\": " + Entry("I8", "[2]", 2, 4) + "}";
  ExpectParseError(WithHeader(twice, "abcd"), absl::StatusCode::kInvalidArgument,
                   {"header: key 'w' appears more than once"});
  ExpectParseError(
      WithHeader(R"({"w": {"dtype": "I8", "dtype": "F32", "shape": [2], "data_offsets": [0, 2]}})",
                 "ab"),
      absl::StatusCode::kInvalidArgument, {"header: the entry of 'w' repeats key 'dtype'"});
  ExpectParseError(WithHeader(R"({"__metadata__": {"a": "1", "a": "2"}})"),
                   absl::StatusCode::kInvalidArgument,
                   {"the entry of '__metadata__' repeats key 'a'"});
}

TEST_F(SafetensorsTest, RejectsDeepNesting) {
  // dump() and comparisons recurse, so nesting is bounded; a real header needs three levels.
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  ExpectParseError(
      WithHeader(R"({"w": {"dtype": "I8", "shape": )" + deep + R"(, "data_offsets": [0, 0]}})"),
      absl::StatusCode::kInvalidArgument,
      {"header: nesting is deeper than 32 levels (in the entry of 'w')"});
}

TEST_F(SafetensorsTest, ReportsUnopenableFiles) {
  ExpectError(SafetensorsFile::Open(dir_ + "/missing.safetensors").status(),
              absl::StatusCode::kNotFound, {dir_ + "/missing.safetensors"});
  ExpectError(SafetensorsFile::Parse(nullptr).status(), absl::StatusCode::kInvalidArgument,
              {"no file given"});
}

TEST_F(SafetensorsTest, EveryTruncationIsAnError) {
  std::mt19937 rng(99);
  const std::string good =
      Serialize({RandomTensor(rng, "a", "BF16", {3, 4}), RandomTensor(rng, "b", "I64", {5}),
                 RandomTensor(rng, "c", "F8_E4M3", {7})},
                {{"format", "pt"}});
  ASSERT_TRUE(ParseBytes(good).ok());
  for (size_t cut = 0; cut < good.size(); ++cut) {
    SCOPED_TRACE(cut);
    // A copy of exactly `cut` bytes, so reading past it is caught by ASan.
    const std::vector<uint8_t> prefix(good.begin(), good.begin() + cut);
    auto file = SafetensorsFile::Parse(MappedFile::FromBytes(prefix, "cut.safetensors"));
    EXPECT_FALSE(file.ok());
  }
}

// ---- Checkpoints ---------------------------------------------------------------------------

/// The text of an index whose weight_map is `weight_map`, in that order.
std::string IndexJson(const std::vector<std::pair<std::string, std::string>>& weight_map) {
  std::string text = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  for (size_t i = 0; i < weight_map.size(); ++i) {
    if (i > 0) text += ", ";
    text += "\"" + weight_map[i].first + "\": \"" + weight_map[i].second + "\"";
  }
  return text + "}}";
}

class SafetensorsCheckpointTest : public SafetensorsTest {
 protected:
  /// Writes two shards ("a", "b" in shard 1; "c" in shard 2) and returns their tensors.
  std::vector<TestTensor> WriteTwoShards() {
    std::mt19937 rng(5);
    std::vector<TestTensor> tensors = {RandomTensor(rng, "a", "F32", {4}),
                                       RandomTensor(rng, "b", "BF16", {2, 8}),
                                       RandomTensor(rng, "c", "I32", {3})};
    Write("model-00001-of-00002.safetensors", Serialize({tensors[0], tensors[1]}));
    Write("model-00002-of-00002.safetensors", Serialize({tensors[2]}));
    return tensors;
  }
};

TEST_F(SafetensorsCheckpointTest, OpensShardedCheckpoint) {
  const std::vector<TestTensor> tensors = WriteTwoShards();
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"},
                                                   {"b", "model-00001-of-00002.safetensors"}}));
  for (const std::string& target : {dir_, dir_ + "/", dir_ + "/model.safetensors.index.json"}) {
    SCOPED_TRACE(target);
    auto checkpoint = SafetensorsCheckpoint::Open(target);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    ASSERT_EQ((*checkpoint)->shards().size(), 2u);
    EXPECT_LT((*checkpoint)->shards()[0]->path(), (*checkpoint)->shards()[1]->path());
    ASSERT_EQ((*checkpoint)->tensors().size(), 3u);
    EXPECT_EQ((*checkpoint)->tensors()[0].name, "a");
    EXPECT_EQ((*checkpoint)->tensors()[2].name, "c");
    for (const TestTensor& want : tensors) {
      SCOPED_TRACE(want.name);
      const TensorInfo* got = (*checkpoint)->Find(want.name);
      ASSERT_NE(got, nullptr);
      EXPECT_EQ(got->file, dir_ + (want.name == "c" ? "/model-00002-of-00002.safetensors"
                                                    : "/model-00001-of-00002.safetensors"));
      const auto data = (*checkpoint)->Data(*got);
      ASSERT_EQ(data.size(), want.bytes.size());
      EXPECT_TRUE(std::equal(data.begin(), data.end(), want.bytes.begin()));
    }
    EXPECT_EQ((*checkpoint)->Find("d"), nullptr);
    TensorInfo foreign = *(*checkpoint)->Find("a");
    foreign.file = "elsewhere.safetensors";
    EXPECT_TRUE((*checkpoint)->Data(foreign).empty());
  }
}

TEST_F(SafetensorsCheckpointTest, OpensSingleFileCheckpoint) {
  std::mt19937 rng(3);
  const TestTensor tensor = RandomTensor(rng, "w", "F16", {5});
  const std::string path = Write("model.safetensors", Serialize({tensor}, {{"format", "pt"}}));
  for (const std::string& target : {dir_, path}) {
    SCOPED_TRACE(target);
    auto checkpoint = SafetensorsCheckpoint::Open(target);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    ASSERT_EQ((*checkpoint)->shards().size(), 1u);
    EXPECT_EQ((*checkpoint)->shards()[0]->metadata().at("format"), "pt");
    const TensorInfo* got = (*checkpoint)->Find("w");
    ASSERT_NE(got, nullptr);
    const auto data = (*checkpoint)->Data(*got);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), tensor.bytes.begin(), tensor.bytes.end()));
  }
}

TEST_F(SafetensorsCheckpointTest, OpensAnyFileByName) {
  std::mt19937 rng(3);
  const std::string path =
      Write("other.safetensors", Serialize({RandomTensor(rng, "w", "I8", {1})}));
  auto checkpoint = SafetensorsCheckpoint::Open(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->tensors().size(), 1u);
}

TEST_F(SafetensorsCheckpointTest, PrefersIndexOverSingleFile) {
  WriteTwoShards();
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"b", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"}}));
  Write("model.safetensors", "garbage");
  auto checkpoint = SafetensorsCheckpoint::Open(dir_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->shards().size(), 2u);
}

TEST_F(SafetensorsCheckpointTest, NotFoundSaysWhatWasLookedFor) {
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kNotFound,
              {dir_, "model.safetensors.index.json", "model.safetensors"});
  ExpectError(SafetensorsCheckpoint::Open(dir_ + "/nope").status(), absl::StatusCode::kNotFound,
              {dir_ + "/nope", "model.safetensors.index.json"});
}

TEST_F(SafetensorsCheckpointTest, RejectsMalformedIndex) {
  const std::string index = dir_ + "/model.safetensors.index.json";
  Write("model.safetensors.index.json", "{\"weight_map\": ");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "not valid JSON"});
  Write("model.safetensors.index.json", "[]");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "is an array, not a JSON object"});
  Write("model.safetensors.index.json", R"({"metadata": {}})");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "no \"weight_map\" object"});
  Write("model.safetensors.index.json", R"({"weight_map": {}})");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "lists no tensor"});
  Write("model.safetensors.index.json", R"({"weight_map": {"a": 1}})");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "tensor 'a' is an integer (1), not a file name"});
  Write("model.safetensors.index.json", R"({"weight_map": {"a": "x", "a": "y"}})");
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {index, "the entry of 'weight_map' repeats key 'a'"});
}

TEST_F(SafetensorsCheckpointTest, RejectsPathTraversal) {
  WriteTwoShards();
  MakeSubdir("sub");
  Write("sub/model.safetensors", Serialize({}));
  for (const std::string shard : {"../model-00001-of-00002.safetensors", "sub/model.safetensors",
                                  "/etc/passwd", "..", ".", "", "a\\\\b.safetensors"}) {
    SCOPED_TRACE(shard);
    Write("model.safetensors.index.json", IndexJson({{"a", shard}}));
    ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
                {"tensor 'a' names shard", "not a plain file name"});
  }
}

TEST_F(SafetensorsCheckpointTest, RejectsMissingShardFile) {
  WriteTwoShards();
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"b", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00003-of-00002.safetensors"}}));
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kNotFound,
              {"shard 'model-00003-of-00002.safetensors' listed in index", "cannot open"});
}

TEST_F(SafetensorsCheckpointTest, RejectsCorruptShard) {
  WriteTwoShards();
  Write("model-00002-of-00002.safetensors", WithHeader("{\"c\": 1}"));
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"b", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"}}));
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {"shard 'model-00002-of-00002.safetensors'", "tensor 'c'", "not an object"});
}

TEST_F(SafetensorsCheckpointTest, RejectsMappedTensorMissingFromItsShard) {
  WriteTwoShards();
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"b", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"},
                                                   {"d", "model-00002-of-00002.safetensors"}}));
  ExpectError(
      SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kDataLoss,
      {"puts tensor 'd' in shard 'model-00002-of-00002.safetensors'", "has no such tensor"});
  // Mapped to the wrong shard.
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"b", "model-00002-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"}}));
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kDataLoss,
              {"tensor 'b'", "shard 'model-00002-of-00002.safetensors'"});
}

TEST_F(SafetensorsCheckpointTest, RejectsShardTensorMissingFromMap) {
  WriteTwoShards();
  Write("model.safetensors.index.json", IndexJson({{"a", "model-00001-of-00002.safetensors"},
                                                   {"c", "model-00002-of-00002.safetensors"}}));
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {"shard 'model-00001-of-00002.safetensors' holds 1 tensor(s) missing from the "
               "weight_map",
               "'b'"});
}

TEST_F(SafetensorsCheckpointTest, RejectsTensorInTwoShards) {
  std::mt19937 rng(11);
  const TestTensor shared = RandomTensor(rng, "shared", "I8", {4});
  Write("s1.safetensors", Serialize({shared, RandomTensor(rng, "x", "I8", {1})}));
  Write("s2.safetensors", Serialize({shared}));
  Write("model.safetensors.index.json",
        IndexJson({{"shared", "s1.safetensors"}, {"x", "s1.safetensors"}}));
  // s2 is not referenced by the map, so it is not opened: the checkpoint is consistent.
  ASSERT_TRUE(SafetensorsCheckpoint::Open(dir_).ok());
  Write("model.safetensors.index.json",
        IndexJson({{"shared", "s1.safetensors"}, {"x", "s2.safetensors"}}));
  Write("s2.safetensors", Serialize({shared, RandomTensor(rng, "x", "I8", {1})}));
  Write("s1.safetensors", Serialize({shared}));
  ExpectError(SafetensorsCheckpoint::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {"tensor 'shared' is stored in both shard 's1.safetensors' and shard "
               "'s2.safetensors'"});
}

// A 70B-class checkpoint: 30 shards of ~700 tensors each (about 21,000 header entries), with
// sparse data so the test costs header parsing only.
TEST_F(SafetensorsCheckpointTest, LargeShardedHeaderOpensQuickly) {
  constexpr int kShards = 30;
  constexpr int kTensorsPerShard = 700;
  constexpr uint64_t kTensorBytes = 8192 * 1024 * 2;  // [8192, 1024] BF16
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (int shard = 0; shard < kShards; ++shard) {
    char shard_name[64];
    std::snprintf(shard_name, sizeof(shard_name), "model-%05d-of-%05d.safetensors", shard + 1,
                  kShards);
    std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
    for (int t = 0; t < kTensorsPerShard; ++t) {
      const std::string name =
          "model.layers." + std::to_string(shard * kTensorsPerShard + t) + ".mlp.down_proj.weight";
      header += ", \"" + name +
                "\": " + Entry("BF16", "[8192, 1024]", t * kTensorBytes, (t + 1) * kTensorBytes);
      weight_map.emplace_back(name, shard_name);
    }
    header += "}";
    const std::string path = Write(shard_name, WithHeader(header));
    ASSERT_EQ(::truncate(path.c_str(),
                         static_cast<off_t>(8 + header.size() + kTensorsPerShard * kTensorBytes)),
              0);
  }
  Write("model.safetensors.index.json", IndexJson(weight_map));

  const auto start = std::chrono::steady_clock::now();
  auto checkpoint = SafetensorsCheckpoint::Open(dir_);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->tensors().size(), size_t{kShards} * kTensorsPerShard);
  EXPECT_EQ((*checkpoint)->shards().size(), size_t{kShards});
  const TensorInfo* last = (*checkpoint)->Find("model.layers.20999.mlp.down_proj.weight");
  ASSERT_NE(last, nullptr);
  EXPECT_EQ((*checkpoint)->Data(*last).size(), kTensorBytes);
  std::printf("opened %d shards x %d tensors in %.3f s\n", kShards, kTensorsPerShard, seconds);
  // Speed is measured by bench/import_header_only.sh, not asserted here.
}

}  // namespace
}  // namespace tessel
