// Read-only memory mapping of a whole file, the way weights are read without copying.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_WEIGHTS_MAPPED_FILE_H_
#define TESSEL_RUNTIME_WEIGHTS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace tessel {

/// A file mapped read-only into memory; unmapped on destruction. Move-only.
class MappedFile {
 public:
  /// Maps `path`. Errors name the path and the OS reason. An empty file maps to an empty span.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  /// Wraps bytes already in memory (tests, fuzzers); the caller keeps them alive.
  static std::unique_ptr<MappedFile> FromBytes(std::span<const uint8_t> bytes,
                                               std::string name = "<memory>");

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(const uint8_t* data, size_t size, bool owned, std::string path)
      : data_(data), size_(size), owned_(owned), path_(std::move(path)) {}

  const uint8_t* data_;
  size_t size_;
  bool owned_;  // true when data_ came from mmap and must be unmapped.
  std::string path_;
};

}  // namespace tessel

#endif  // TESSEL_RUNTIME_WEIGHTS_MAPPED_FILE_H_
