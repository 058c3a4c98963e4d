// libFuzzer target for the safetensors header parser: any bytes must parse or fail cleanly.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "runtime/weights/mapped_file.h"
#include "runtime/weights/safetensors.h"

namespace {

// Parses `bytes` and, when they are accepted, reads every byte of every tensor: a range that
// validation let through outside the input is caught by ASan. Returns a sum of what was read
// so the reads are not optimized away.
uint64_t ParseAndTouch(std::span<const uint8_t> bytes) {
  auto file =
      tessel::SafetensorsFile::Parse(tessel::MappedFile::FromBytes(bytes, "fuzz.safetensors"));
  if (!file.ok()) return file.status().message().size();
  uint64_t sum = 0;
  for (const tessel::TensorInfo& tensor : (*file)->tensors()) {
    const std::span<const uint8_t> data = (*file)->Data(tensor);
    if (data.size() != tensor.size_bytes) __builtin_trap();
    if ((*file)->Find(tensor.name) != &tensor) __builtin_trap();
    for (uint8_t byte : data) sum += byte;
  }
  for (const auto& [key, value] : (*file)->metadata()) sum += key.size() + value.size();
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. The input exactly as given.
  uint64_t sum = ParseAndTouch(std::span<const uint8_t>(data, size));

  // 2. The input with its header length rewritten to end the header at the first NUL byte
  // after the length prefix (raw NUL cannot occur in JSON text). Mutations that grow or
  // shrink the JSON would otherwise almost always break the length and stop at the first
  // check; this way they reach the per-tensor checks. A real file whose data section starts
  // with a NUL byte (like the seeds) reads the same both ways.
  if (size >= 8) {
    const void* nul = std::memchr(data + 8, 0, size - 8);
    const uint64_t header_size =
        nul == nullptr ? size - 8 : static_cast<const uint8_t*>(nul) - (data + 8);
    std::vector<uint8_t> rewritten(data, data + size);  // exact size: ASan sees any overrun
    for (int i = 0; i < 8; ++i) rewritten[i] = static_cast<uint8_t>(header_size >> (8 * i));
    sum += ParseAndTouch(rewritten);
  }

  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}
