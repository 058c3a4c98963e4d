// Reader for safetensors weight files and sharded Hugging Face checkpoints, without copies.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_WEIGHTS_SAFETENSORS_H_
#define TESSEL_RUNTIME_WEIGHTS_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/weights/dtype.h"
#include "runtime/weights/mapped_file.h"

namespace tessel {

/// One tensor of a safetensors file, as described by its header. Plain data: the bytes stay
/// in the mapped file and are reached through `SafetensorsFile::Data` or
/// `SafetensorsCheckpoint::Data`.
struct TensorInfo {
  /// Name as written in the header ("model.layers.0.self_attn.q_proj.weight").
  std::string name;
  /// Element type.
  DType dtype = DType::kF32;
  /// Dimensions, outermost first; empty for a scalar.
  std::vector<int64_t> shape;
  /// Product of `shape` (1 for a scalar, 0 when a dimension is 0).
  int64_t element_count = 0;
  /// Offset of the first byte from the start of the file (not of the data section).
  uint64_t data_offset = 0;
  /// Number of bytes: `element_count` times the dtype's size.
  uint64_t size_bytes = 0;
  /// Path of the file holding the bytes (the name given to `MappedFile` for in-memory data).
  std::string file;
};

/// A parsed, fully validated safetensors file, mapped read-only.
///
/// Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length N, N bytes of JSON header, then the data section. The header maps each tensor name
/// to {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the data
/// section (byte 8 + N of the file); the optional "__metadata__" entry maps strings to
/// strings. Every range is checked against the file size and against the other tensors, so
/// `Data` never reaches outside the mapping. Parsing reads the header only: the cost is
/// linear in the header size and independent of the data size (sparse files are fine).
///
/// Stricter than the reference reader in three ways: a key repeated in any JSON object is an
/// error (instead of the last one silently winning), so is JSON nested deeper than 32 levels
/// (a header needs three), and so are overlapping tensors.
/// Unknown keys inside a tensor entry are ignored, like the reference reader does; gaps
/// between tensors and trailing bytes after the last one are allowed.
class SafetensorsFile {
 public:
  /// Largest header accepted, in bytes (the reference reader's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  /// Maps `path` and parses its header. Errors name the path and, where one is at fault,
  /// the tensor: NotFound/PermissionDenied when the file cannot be opened, DataLoss when it
  /// is truncated, InvalidArgument when the header is malformed.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  /// Parses a file already mapped (or wrapped with `MappedFile::FromBytes`); takes ownership.
  /// Errors are those of `Open`, naming `file->path()`.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::unique_ptr<MappedFile> file);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// All tensors, sorted by name (byte-wise), so the order does not depend on how the
  /// writer laid out the data.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  /// The tensor called `name`, or nullptr. O(log n).
  const TensorInfo* Find(std::string_view name) const;

  /// The bytes of `tensor`, which must come from this file's `tensors()`; a view into the
  /// mapping, valid as long as this object lives. An info whose range is not inside this
  /// file yields an empty span.
  std::span<const uint8_t> Data(const TensorInfo& tensor) const;

  /// The "__metadata__" entries (empty when the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// Path of the file (or the name of the in-memory bytes).
  const std::string& path() const { return file_->path(); }

  /// Size of the whole file in bytes.
  uint64_t file_size() const { return file_->size(); }

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

  std::unique_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;  // sorted by name
  std::map<std::string, std::string> metadata_;
};

/// A checkpoint directory: either sharded, with "model.safetensors.index.json" whose
/// "weight_map" names the shard of every tensor, or a single "model.safetensors".
///
/// Opening checks that the index and the shards agree exactly: every tensor of the map is in
/// the shard it names, every tensor of a shard is in the map, no tensor is in two shards, and
/// every shard name is a plain file name in the checkpoint directory. Shards stay mapped; no
/// tensor data is read or copied.
class SafetensorsCheckpoint {
 public:
  /// File name of the index of a sharded checkpoint.
  static constexpr char kIndexFileName[] = "model.safetensors.index.json";
  /// File name of a single-file checkpoint.
  static constexpr char kSingleFileName[] = "model.safetensors";

  /// Opens `dir_or_file`:
  ///  - a directory: its `kIndexFileName` if present, else its `kSingleFileName`, else
  ///    NotFound saying what was looked for;
  ///  - a file whose name ends in ".index.json": that index, shards beside it;
  ///  - any other file: that single safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(
      const std::string& dir_or_file);

  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;

  /// All tensors of all shards, sorted by name (byte-wise); `TensorInfo::file` tells the shard.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  /// The tensor called `name`, or nullptr. O(log n).
  const TensorInfo* Find(std::string_view name) const;

  /// The bytes of `tensor`, which must come from this checkpoint's `tensors()`; a view into
  /// the shard's mapping, valid as long as this object lives. An info naming no shard of
  /// this checkpoint, or a range outside it, yields an empty span.
  std::span<const uint8_t> Data(const TensorInfo& tensor) const;

  /// The shard files, sorted by path (one for a single-file checkpoint). Each shard's own
  /// `metadata()` is available here.
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

 private:
  SafetensorsCheckpoint() = default;

  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenIndex(
      const std::string& index_path);
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenSingle(const std::string& path);

  std::vector<std::unique_ptr<SafetensorsFile>> shards_;  // sorted by path
  std::vector<TensorInfo> tensors_;                       // sorted by name
};

}  // namespace tessel

#endif  // TESSEL_RUNTIME_WEIGHTS_SAFETENSORS_H_
