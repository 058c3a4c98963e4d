// LoadTokenizer: picks the tokenizer for a directory or a file.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/bpe_tokenizer.h"
#include "runtime/tokenizer/gguf_tokenizer.h"
#include "runtime/tokenizer/sentencepiece_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tessel {
namespace {

bool IsRegularFile(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

// The first bytes of `path` (fewer if the file is shorter); empty if it cannot
// be read.
std::string ReadMagic(const std::string& path, size_t count) {
  std::string bytes(count, '\0');
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return {};
  bytes.resize(std::fread(bytes.data(), 1, count, file));
  std::fclose(file);
  return bytes;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFile(
    const std::string& path) {
  const std::string magic = ReadMagic(path, 4);
  if (magic == "GGUF" || absl::EndsWith(path, ".gguf"))
    return LoadGgufTokenizer(path);
  if (absl::EndsWith(path, ".json")) return LoadTokenizerJson(path);
  if (absl::EndsWith(path, ".model")) return LoadSentencePieceModel(path);
  // No telling suffix: a JSON document starts with '{' (after optional
  // whitespace); a SentencePiece ModelProto starts with its first `pieces`
  // entry, field 1 (tag 0x0a).
  const std::string head = ReadMagic(path, 64);
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && head[first] == '{')
    return LoadTokenizerJson(path);
  if (!head.empty() && head[0] == '\x0a') return LoadSentencePieceModel(path);
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      ": not a tokenizer file: expected tokenizer.json (JSON), tokenizer.model "
      "(SentencePiece) or a GGUF file"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISDIR(info.st_mode)) return LoadTokenizerFile(path);
  const std::string directory = absl::EndsWith(path, "/") ? path : path + "/";
  if (IsRegularFile(directory + "tokenizer.json")) {
    return LoadTokenizerJson(directory + "tokenizer.json");
  }
  if (IsRegularFile(directory + "tokenizer.model")) {
    return LoadSentencePieceModel(directory + "tokenizer.model");
  }
  // Artifacts compiled from GGUF files keep the vocabulary as a tensor-less GGUF file.
  if (IsRegularFile(directory + "tokenizer.gguf")) {
    return LoadTokenizerFile(directory + "tokenizer.gguf");
  }
  return absl::NotFoundError(absl::StrCat(
      "no tokenizer in ", path,
      ": none of tokenizer.json, tokenizer.model, tokenizer.gguf exists"));
}

}  // namespace tessel
