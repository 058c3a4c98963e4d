// Reader for safetensors weight files and sharded checkpoints: header parsing and validation.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/weights/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <set>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status.h"

namespace tessel {
namespace {

using Json = nlohmann::json;

// Every dtype name of the safetensors format. The supported subset is whatever
// DTypeFromSafetensorsName accepts, so error messages never drift from dtype.cc.
constexpr std::string_view kFormatDTypeNames[] = {
    "F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E3M2", "F6_E2M3", "F4",
    "I64", "I32", "I16", "I8",   "U64",     "U32",     "U16",     "U8",      "BOOL",    "C64"};

// Longest excerpt of a JSON value quoted in an error message.
constexpr size_t kMaxQuotedJsonChars = 80;

// Most tensor names listed in one error message.
constexpr size_t kMaxListedNames = 8;

const std::string& SupportedDTypeList() {
  static const std::string* const list = [] {
    auto* joined = new std::string;
    for (std::string_view name : kFormatDTypeNames) {
      if (!DTypeFromSafetensorsName(name).has_value()) continue;
      if (!joined->empty()) joined->append(", ");
      joined->append(name);
    }
    return joined;
  }();
  return *list;
}

const char* JsonTypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a floating-point number";
    case Json::value_t::binary: return "binary data";
    case Json::value_t::discarded: return "invalid";
  }
  return "unknown";
}

// The value as JSON text, cut to a length that fits in an error message.
std::string Quote(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > kMaxQuotedJsonChars) {
    text.resize(kMaxQuotedJsonChars);
    text += "...";
  }
  return text;
}

// A non-negative JSON integer, or nullopt for anything else (negative, fractional, text).
std::optional<uint64_t> NonNegativeInteger(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {
    const int64_t signed_value = value.get<int64_t>();
    if (signed_value >= 0) return static_cast<uint64_t>(signed_value);
  }
  return std::nullopt;
}

// Builds a JSON document from nlohmann's SAX events, the way nlohmann's own DOM builder does,
// plus three things a file-format reader needs:
//  - A key repeated in an object is an error. nlohmann keeps the last one, so two readers of
//    the same file could see different tensors.
//  - Nesting is limited: dump() and comparisons recurse, and a header needs three levels.
//  - Syntax errors keep their line and column, and nothing is thrown for them.
// (Parsing with a parser callback instead re-scans the parent object at every object end,
// which is quadratic in the number of tensors.) Cost: linear in the text, plus a map insert
// per key.
class StrictJsonBuilder {
 public:
  bool null() { return Place(nullptr); }
  bool boolean(bool value) { return Place(value); }
  bool number_integer(Json::number_integer_t value) { return Place(value); }
  bool number_unsigned(Json::number_unsigned_t value) { return Place(value); }
  bool number_float(Json::number_float_t value, const Json::string_t&) { return Place(value); }
  bool string(Json::string_t& value) { return Place(std::move(value)); }
  bool binary(Json::binary_t& value) { return Place(Json::binary(std::move(value))); }
  bool start_object(std::size_t) { return Open(Json::value_t::object); }
  bool start_array(std::size_t) { return Open(Json::value_t::array); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }

  bool key(Json::string_t& key) {
    if (open_.size() == 1) top_level_key_ = key;
    auto& object = open_.back()->get_ref<Json::object_t&>();
    // try_emplace leaves `key` intact when it is already there.
    const auto [slot, inserted] = object.try_emplace(std::move(key));
    if (!inserted) {
      error_ = open_.size() == 1
                   ? absl::StrCat("key '", key, "' appears more than once; each must be unique")
                   : absl::StrCat("the entry of '", top_level_key_, "' repeats key '", key,
                                  "'; each key must appear once");
      return false;
    }
    object_slot_ = &slot->second;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const Json::exception& error) {
    syntax_error_ = true;
    error_ = error.what();
    // Drop the "[json.exception.parse_error.101] " tag: it means nothing to a user.
    const size_t tag = error_.find("[json.exception.");
    const size_t tag_end = error_.find("] ", tag);
    if (tag != std::string::npos && tag_end != std::string::npos) {
      error_.erase(tag, tag_end + 2 - tag);
    }
    return false;
  }

  /// Why parsing stopped; empty after a successful parse.
  const std::string& error() const { return error_; }

  /// Whether parsing stopped because the text is not JSON (rather than strict JSON).
  bool syntax_error() const { return syntax_error_; }

  Json& root() { return root_; }

 private:
  // A safetensors header nests three deep (header, entry, shape); an index, two.
  static constexpr size_t kMaxDepth = 32;

  // Stores `value` where the grammar puts it: as the root, appended to the open array, or in
  // the slot the last key made in the open object. Returns where it went.
  template <typename T>
  Json* Store(T&& value) {
    if (open_.empty()) {
      root_ = Json(std::forward<T>(value));
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      auto& array = parent.get_ref<Json::array_t&>();
      array.emplace_back(std::forward<T>(value));
      return &array.back();
    }
    *object_slot_ = Json(std::forward<T>(value));
    return object_slot_;
  }

  template <typename T>
  bool Place(T&& value) {
    Store(std::forward<T>(value));
    return true;
  }

  // Containers on the stack never move while open: only the innermost one grows.
  bool Open(Json::value_t type) {
    if (open_.size() >= kMaxDepth) {
      error_ = absl::StrCat(
          "nesting is deeper than ", kMaxDepth, " levels",
          top_level_key_.empty() ? "" : absl::StrCat(" (in the entry of '", top_level_key_, "')"));
      return false;
    }
    open_.push_back(Store(Json(type)));
    return true;
  }

  bool Close() {
    open_.pop_back();
    return true;
  }

  Json root_;
  std::vector<Json*> open_;      // open containers, innermost last
  Json* object_slot_ = nullptr;  // where the value after the last key goes
  std::string top_level_key_;    // last key of the root object, for error context
  std::string error_;
  bool syntax_error_ = false;
};

// Parses `text` as a JSON object with `StrictJsonBuilder`. `what` says what the text is
// ("'x.safetensors': header") and starts every message.
absl::StatusOr<Json> ParseJsonObject(std::string_view text, const std::string& what) {
  StrictJsonBuilder builder;
  // sax_parse reports every failure through the builder, which records why; it throws nothing.
  if (!Json::sax_parse(text.begin(), text.end(), &builder)) {
    return absl::InvalidArgumentError(
        builder.syntax_error() ? absl::StrCat(what, " is not valid JSON: ", builder.error())
                               : absl::StrCat(what, ": ", builder.error()));
  }
  Json& root = builder.root();
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", JsonTypeName(root), ", not a JSON object"));
  }
  return std::move(root);
}

uint64_t ReadLittleEndian64(std::span<const uint8_t> bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// Validates one header entry and turns it into a TensorInfo. `data_start` is the file offset
// of the data section and `data_size` its length.
absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& path, const std::string& name,
                                            const Json& entry, uint64_t data_start,
                                            uint64_t data_size) {
  const std::string where = absl::StrCat("'", path, "': tensor '", name, "'");
  if (!entry.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": entry is ", JsonTypeName(entry),
                     ", not an object with \"dtype\", \"shape\" and \"data_offsets\""));
  }
  TensorInfo info;
  info.name = name;
  info.file = path;

  // dtype
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"dtype\""));
  }
  if (!dtype_it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": dtype ", Quote(*dtype_it), " is ",
                                                   JsonTypeName(*dtype_it), ", not a string"));
  }
  const auto& dtype_name = dtype_it->get_ref<const std::string&>();
  const std::optional<DType> dtype = DTypeFromSafetensorsName(dtype_name);
  if (!dtype.has_value()) {
    const bool in_format = std::find(std::begin(kFormatDTypeNames), std::end(kFormatDTypeNames),
                                     dtype_name) != std::end(kFormatDTypeNames);
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": dtype '", dtype_name, "' is ",
                     in_format ? "not supported by tessel" : "not a safetensors dtype",
                     " (supported: ", SupportedDTypeList(), ")"));
  }
  info.dtype = *dtype;

  // shape
  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"shape\""));
  }
  if (!shape_it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", Quote(*shape_it),
                                                   " is not an array of non-negative integers"));
  }
  info.shape.reserve(shape_it->size());
  bool has_zero_dim = false;
  for (const Json& dim_json : *shape_it) {
    const std::optional<uint64_t> dim = NonNegativeInteger(dim_json);
    if (!dim.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", Quote(*shape_it),
                                                     " has dimension ", Quote(dim_json),
                                                     ", not a non-negative integer"));
    }
    if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", Quote(*shape_it),
                                                     " has dimension ", *dim,
                                                     ", larger than the int64 maximum"));
    }
    has_zero_dim |= *dim == 0;
    info.shape.push_back(static_cast<int64_t>(*dim));
  }
  // With a zero dimension the product is 0 whatever the others are, so it cannot overflow.
  int64_t element_count = has_zero_dim ? 0 : 1;
  if (!has_zero_dim) {
    for (int64_t dim : info.shape) {
      if (__builtin_mul_overflow(element_count, dim, &element_count)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": element count of shape ", Quote(*shape_it), " overflows int64"));
      }
    }
  }
  info.element_count = element_count;

  // data_offsets
  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"data_offsets\""));
  }
  std::optional<uint64_t> begin, end;
  if (offsets_it->is_array() && offsets_it->size() == 2) {
    begin = NonNegativeInteger((*offsets_it)[0]);
    end = NonNegativeInteger((*offsets_it)[1]);
  }
  if (!begin.has_value() || !end.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": data_offsets ", Quote(*offsets_it),
                     " is not a pair of non-negative integers [begin, end]"));
  }
  if (*begin > *end) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": data_offsets [", *begin, ", ", *end,
                                                   "] are not ascending (begin > end)"));
  }

  // Size implied by dtype and shape must match the byte range exactly.
  const std::optional<int64_t> needed_bytes = StorageBytes(info.dtype, element_count);
  if (!needed_bytes.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", element_count, " elements of ",
                                                   dtype_name, " overflow an int64 byte count"));
  }
  const uint64_t range_bytes = *end - *begin;
  if (range_bytes != static_cast<uint64_t>(*needed_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": data_offsets [", *begin, ", ", *end, "] span ", range_bytes, " bytes but shape ",
        Quote(*shape_it), " of ", dtype_name, " needs ", *needed_bytes, " bytes (", element_count,
        " elements x ", BlockBytes(info.dtype), " bytes)"));
  }
  if (*end > data_size) {
    return absl::DataLossError(absl::StrCat(where, ": data_offsets [", *begin, ", ", *end,
                                            "] run past the end of the data section, which has ",
                                            data_size, " bytes (file size ", data_start + data_size,
                                            ", data starts at byte ", data_start,
                                            "); the file is truncated or the header is wrong"));
  }
  info.data_offset = data_start + *begin;
  info.size_bytes = range_bytes;
  return info;
}

// Rejects two tensors sharing a byte: sorted by start, disjoint ranges never reach into the
// next one. Empty tensors hold no byte and are skipped. O(n log n).
absl::Status CheckNoOverlap(const std::string& path, const std::vector<TensorInfo>& tensors,
                            uint64_t data_start) {
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors.size());
  for (const TensorInfo& tensor : tensors) {
    if (tensor.size_bytes > 0) by_offset.push_back(&tensor);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->data_offset, a->size_bytes) < std::tie(b->data_offset, b->size_bytes);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& previous = *by_offset[i - 1];
    const TensorInfo& current = *by_offset[i];
    if (previous.data_offset + previous.size_bytes > current.data_offset) {
      const auto range = [data_start](const TensorInfo& t) {
        return absl::StrCat("[", t.data_offset - data_start, ", ",
                            t.data_offset - data_start + t.size_bytes, ")");
      };
      return absl::InvalidArgumentError(absl::StrCat(
          "'", path, "': tensors '", previous.name, "' (data_offsets ", range(previous), ") and '",
          current.name, "' (data_offsets ", range(current), ") overlap"));
    }
  }
  return absl::OkStatus();
}

// Parses and validates the whole header of `bytes`, the contents of the file `path`.
absl::Status ParseHeader(std::span<const uint8_t> bytes, const std::string& path,
                         std::vector<TensorInfo>* tensors,
                         std::map<std::string, std::string>* metadata) {
  const uint64_t file_size = bytes.size();
  if (file_size < 8) {
    return absl::DataLossError(absl::StrCat(
        "'", path, "' has ", file_size,
        " bytes, too few for a safetensors file (it starts with an 8-byte header length)"));
  }
  const uint64_t header_size = ReadLittleEndian64(bytes.first(8));
  if (header_size > SafetensorsFile::kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "': header length ", header_size, " exceeds the limit of ",
        SafetensorsFile::kMaxHeaderBytes, " bytes; the file is corrupt or not safetensors"));
  }
  if (header_size > file_size - 8) {
    return absl::DataLossError(absl::StrCat("'", path, "': header length ", header_size,
                                            " runs past the end of the file: the header needs ",
                                            8 + header_size, " bytes but the file has ", file_size,
                                            "; the file is truncated"));
  }
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data()) + 8, header_size);
  TESSEL_ASSIGN_OR_RETURN(const Json header,
                          ParseJsonObject(header_text, absl::StrCat("'", path, "': header")));

  tensors->clear();
  metadata->clear();
  tensors->reserve(header.size());
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", path, "': __metadata__ is ", JsonTypeName(value), ", not an object of strings"));
      }
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("'", path, "': __metadata__ entry '", meta_key, "' is ",
                           JsonTypeName(meta_value), " (", Quote(meta_value), "), not a string"));
        }
        metadata->emplace(meta_key, meta_value.get_ref<const std::string&>());
      }
      continue;
    }
    TESSEL_ASSIGN_OR_RETURN(TensorInfo info,
                            ParseTensorEntry(path, key, value, data_start, data_size));
    tensors->push_back(std::move(info));
  }
  // `tensors` is sorted by name already: objects iterate in std::map key order.
  static_assert(std::is_same_v<Json::object_t, std::map<std::string, Json, std::less<>>>,
                "tensors() order relies on JSON objects being std::map");
  return CheckNoOverlap(path, *tensors, data_start);
}

// Binary search in a vector sorted by name.
const TensorInfo* FindByName(const std::vector<TensorInfo>& tensors, std::string_view name) {
  const auto it = std::lower_bound(
      tensors.begin(), tensors.end(), name,
      [](const TensorInfo& tensor, std::string_view key) { return tensor.name < key; });
  if (it == tensors.end() || it->name != name) return nullptr;
  return &*it;
}

// Turns the exception being handled (only std::bad_alloc is expected) into a status: library
// code never lets one through. Call only from a catch block.
absl::Status StatusFromException(const std::string& context) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of memory"));
  } catch (const std::exception& error) {
    return absl::InternalError(absl::StrCat(context, ": unexpected error: ", error.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(context, ": unexpected error"));
  }
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return absl::StrCat(dir, "/", name);
}

// The directory part of `path` ("" when it has none, so joining gives a relative path).
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A shard must be a file beside the index: anything that could leave the directory
// (a separator, a parent reference) is refused, so an index cannot point at arbitrary files.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name.find("..") == std::string::npos &&
         name.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::unique_ptr<MappedFile> file) {
  if (file == nullptr) return absl::InvalidArgumentError("SafetensorsFile::Parse: no file given");
  auto result = absl::WrapUnique(new SafetensorsFile(std::move(file)));
  try {
    TESSEL_RETURN_IF_ERROR(ParseHeader(result->file_->bytes(), result->file_->path(),
                                       &result->tensors_, &result->metadata_));
  } catch (...) {
    return StatusFromException(absl::StrCat("'", result->file_->path(), "'"));
  }
  return result;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  return FindByName(tensors_, name);
}

std::span<const uint8_t> SafetensorsFile::Data(const TensorInfo& tensor) const {
  const std::span<const uint8_t> bytes = file_->bytes();
  if (tensor.data_offset > bytes.size() || tensor.size_bytes > bytes.size() - tensor.data_offset) {
    return {};
  }
  return bytes.subspan(tensor.data_offset, tensor.size_bytes);
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir_or_file) {
  struct stat info;
  if (::stat(dir_or_file.c_str(), &info) != 0) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot open checkpoint '", dir_or_file, "': ", std::strerror(err),
                     " (expected a directory with ", kIndexFileName, " or ", kSingleFileName,
                     ", an index file, or a .safetensors file)");
    return err == ENOENT || err == ENOTDIR ? absl::NotFoundError(message)
                                           : absl::PermissionDeniedError(message);
  }
  if (S_ISDIR(info.st_mode)) {
    const std::string index_path = JoinPath(dir_or_file, kIndexFileName);
    struct stat unused;
    if (::stat(index_path.c_str(), &unused) == 0) return OpenIndex(index_path);
    const std::string single_path = JoinPath(dir_or_file, kSingleFileName);
    if (::stat(single_path.c_str(), &unused) == 0) return OpenSingle(single_path);
    return absl::NotFoundError(absl::StrCat("checkpoint directory '", dir_or_file, "' has neither ",
                                            kIndexFileName, " (sharded checkpoint) nor ",
                                            kSingleFileName, " (single file)"));
  }
  if (absl::EndsWith(dir_or_file, ".index.json")) return OpenIndex(dir_or_file);
  return OpenSingle(dir_or_file);
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenSingle(
    const std::string& path) {
  TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  auto checkpoint = absl::WrapUnique(new SafetensorsCheckpoint());
  try {
    checkpoint->tensors_ = file->tensors();
    checkpoint->shards_.push_back(std::move(file));
  } catch (...) {
    return StatusFromException(absl::StrCat("'", path, "'"));
  }
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenIndex(
    const std::string& index_path) {
  TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> index_file, MappedFile::Open(index_path));
  const std::string where = absl::StrCat("index '", index_path, "'");
  if (index_file->size() > SafetensorsFile::kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has ", index_file->size(),
                                                   " bytes, more than the limit of ",
                                                   SafetensorsFile::kMaxHeaderBytes));
  }
  auto checkpoint = absl::WrapUnique(new SafetensorsCheckpoint());
  try {
    const std::span<const uint8_t> index_bytes = index_file->bytes();
    TESSEL_ASSIGN_OR_RETURN(
        const Json index,
        ParseJsonObject(
            std::string_view(reinterpret_cast<const char*>(index_bytes.data()), index_bytes.size()),
            where));
    const auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " has no \"weight_map\" object (mapping each tensor name to its shard file)"));
    }
    const Json& weight_map = *map_it;
    if (weight_map.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"weight_map\" lists no tensor"));
    }

    // Validate every shard name before touching the file system.
    std::set<std::string> shard_names;
    for (const auto& [tensor_name, shard] : weight_map.items()) {
      if (!shard.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": weight_map entry of tensor '",
                                                       tensor_name, "' is ", JsonTypeName(shard),
                                                       " (", Quote(shard), "), not a file name"));
      }
      const auto& shard_name = shard.get_ref<const std::string&>();
      if (!IsPlainFileName(shard_name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": tensor '", tensor_name, "' names shard '", shard_name,
            "', which is not a plain file name in the checkpoint directory (no '/', '\\', "
            "'..' or NUL allowed)"));
      }
      shard_names.insert(shard_name);
    }

    // Open each shard once. Names are sorted and share the directory, so paths are sorted too.
    const std::string dir = DirectoryOf(index_path);
    std::map<std::string, const SafetensorsFile*, std::less<>> shard_by_name;
    checkpoint->shards_.reserve(shard_names.size());
    for (const std::string& shard_name : shard_names) {
      auto shard = SafetensorsFile::Open(JoinPath(dir, shard_name));
      if (!shard.ok()) {
        return Annotate(shard.status(), absl::StrCat("shard '", shard_name, "' listed in ", where));
      }
      shard_by_name.emplace(shard_name, shard->get());
      checkpoint->shards_.push_back(std::move(shard).value());
    }

    // Every tensor of the map is in the shard the map names.
    for (const auto& [tensor_name, shard] : weight_map.items()) {
      const auto& shard_name = shard.get_ref<const std::string&>();
      if (shard_by_name.at(shard_name)->Find(tensor_name) == nullptr) {
        return absl::DataLossError(absl::StrCat(where, " puts tensor '", tensor_name,
                                                "' in shard '", shard_name,
                                                "', but that shard has no such tensor"));
      }
    }

    // Every tensor of a shard is in the map, under that shard. With the check above this also
    // makes names unique across shards: a tensor in two shards is mapped to only one of them.
    size_t total_tensors = 0;
    for (const auto& [shard_name, shard] : shard_by_name) {
      std::vector<std::string> unlisted;
      for (const TensorInfo& tensor : shard->tensors()) {
        const auto listed = weight_map.find(tensor.name);
        if (listed == weight_map.end()) {
          unlisted.push_back(tensor.name);
          continue;
        }
        const auto& listed_shard = listed->get_ref<const std::string&>();
        if (listed_shard != shard_name) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensor '", tensor.name, "' is stored in both shard '", listed_shard,
                           "' and shard '", shard_name, "' of ", where, "; names must be unique"));
        }
      }
      if (!unlisted.empty()) {
        const size_t shown = std::min(unlisted.size(), kMaxListedNames);
        return absl::InvalidArgumentError(
            absl::StrCat("shard '", shard_name, "' holds ", unlisted.size(),
                         " tensor(s) missing from the weight_map of ", where, ": '",
                         absl::StrJoin(unlisted.begin(), unlisted.begin() + shown, "', '"), "'",
                         unlisted.size() > shown ? ", ..." : ""));
      }
      total_tensors += shard->tensors().size();
    }

    checkpoint->tensors_.reserve(total_tensors);
    for (const auto& shard : checkpoint->shards_) {
      checkpoint->tensors_.insert(checkpoint->tensors_.end(), shard->tensors().begin(),
                                  shard->tensors().end());
    }
    std::sort(checkpoint->tensors_.begin(), checkpoint->tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  } catch (...) {
    return StatusFromException(where);
  }
  return checkpoint;
}

const TensorInfo* SafetensorsCheckpoint::Find(std::string_view name) const {
  return FindByName(tensors_, name);
}

std::span<const uint8_t> SafetensorsCheckpoint::Data(const TensorInfo& tensor) const {
  const auto it = std::lower_bound(shards_.begin(), shards_.end(), tensor.file,
                                   [](const std::unique_ptr<SafetensorsFile>& shard,
                                      const std::string& path) { return shard->path() < path; });
  if (it == shards_.end() || (*it)->path() != tensor.file) return {};
  return (*it)->Data(tensor);
}

}  // namespace tessel
