// Tokenizers: text to token ids and back, exactly as Hugging Face `tokenizers` does.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Implementations: tokenizer.json byte-level BPE (Llama 3, Qwen2; bpe_tokenizer.h),
// SentencePiece tokenizer.model (sentencepiece_tokenizer.h) and the vocabulary embedded in
// GGUF files (gguf_tokenizer.h). LoadTokenizer picks one for a path.
#ifndef TESSEL_RUNTIME_TOKENIZER_TOKENIZER_H_
#define TESSEL_RUNTIME_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tessel {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Token ids of `text` (UTF-8; invalid UTF-8 is an InvalidArgument error naming the
  /// byte offset). With `add_special_tokens`, the post-processor's tokens are added
  /// (e.g. Llama 3's <|begin_of_text|>), as HF's `Tokenizer.encode(text).ids` does.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      bool add_special_tokens = true) const = 0;

  /// Text of `ids` (HF `Tokenizer.decode`); an id outside the vocabulary is an error.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special_tokens = false) const = 0;

  /// The raw bytes one token stands for (after the decoder's byte mapping), possibly a
  /// partial UTF-8 sequence; special tokens give their text. Used for streaming.
  virtual absl::StatusOr<std::string> TokenBytes(int32_t id) const = 0;

  /// Number of ids, including added tokens.
  virtual int32_t vocab_size() const = 0;
  /// Id of a token's string form (e.g. "<|eot_id|>"), if it exists.
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  /// Whether `id` is a special (control) token.
  virtual bool IsSpecial(int32_t id) const = 0;
};

/// Loads a tokenizer from a directory (tokenizer.json, else tokenizer.model), or a file:
/// tokenizer.json, tokenizer.model or a .gguf file with an embedded vocabulary.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_TOKENIZER_H_
