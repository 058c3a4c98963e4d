// libFuzzer target for the GGUF reader: parse arbitrary bytes, read all metadata, dequantize.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Run: gguf_fuzzer /tmp/gguf_corpus tests/fuzz/corpus/gguf -runs=1000000
// (libFuzzer adds new inputs to the first directory: keep the committed seeds out of it).
// Beyond memory safety (ASan/UBSan), it traps when a parsed file breaks the reader's
// promises: a tensor's bytes lie inside the input, lookups find what the tables list, and
// every tensor of a supported type dequantizes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/weights/gguf.h"
#include "runtime/weights/mapped_file.h"

namespace {

// Caps the floats dequantized per input so one input cannot take seconds.
constexpr int64_t kMaxDequantizedElements = int64_t{1} << 20;

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void ReadEveryGetter(const tessel::GgufFile& file, const std::string& key) {
  (void)file.GetString(key);
  (void)file.GetUint(key);
  (void)file.GetInt(key);
  (void)file.GetFloat(key);
  (void)file.GetBool(key);
  (void)file.GetArray(key);
  (void)file.GetArray(key, tessel::GgufType::kString);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  auto parsed = tessel::GgufFile::Parse(tessel::MappedFile::FromBytes(input, "fuzz.gguf"));
  if (!parsed.ok()) {
    Check(!parsed.status().message().empty());
    return 0;
  }
  const tessel::GgufFile& file = **parsed;
  Check(file.version() == 2 || file.version() == 3);

  for (const tessel::GgufKeyValue& entry : file.metadata()) {
    Check(file.Find(entry.key) == &entry.value);
    ReadEveryGetter(file, entry.key);
    (void)entry.value.DebugString();
  }

  int64_t budget = kMaxDequantizedElements;
  std::vector<float> out;
  for (const tessel::GgufTensorInfo& tensor : file.tensors()) {
    Check(file.FindTensor(tensor.name) == &tensor);
    Check(tensor.offset % file.alignment() == 0);
    const std::span<const uint8_t> bytes = file.Data(tensor);
    Check(bytes.size() == tensor.size_bytes);
    if (!bytes.empty()) {
      Check(bytes.data() >= data && bytes.data() + bytes.size() <= data + size);
    }
    if (tensor.element_count > budget) continue;
    budget -= tensor.element_count;
    out.assign(static_cast<size_t>(tensor.element_count), 0.0f);
    const absl::Status status = tessel::DequantizeToF32(tensor, bytes, out);
    Check(status.ok() == tensor.dtype.has_value());
  }
  return 0;
}
