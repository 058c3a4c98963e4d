// Streaming detokenization: ids in one at a time, complete UTF-8 out.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_TOKENIZER_DETOKENIZER_H_
#define TESSEL_RUNTIME_TOKENIZER_DETOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tessel {

/// Turns generated ids into text as they arrive. The concatenation of every
/// Feed result and Finish equals `tokenizer.Decode(all ids,
/// skip_special_tokens)`, and no chunk ends inside a UTF-8 character: text
/// whose last character is still incomplete (it would decode to a trailing
/// U+FFFD) is held back until later tokens complete it or Finish flushes it.
///
/// Algorithm (vLLM's detokenize_incrementally, HF TextStreamer): decode a
/// window of ids starting a little before the new ones, [prefix_offset, n), and
/// emit what it adds to the decode of [prefix_offset, read_offset). The window
/// makes context-dependent decoders (SentencePiece's leading-space strip,
/// byte-level UTF-8 assembly) agree with a full decode. A run of SentencePiece
/// byte pieces is held until it ends, since HF judges the whole run's validity
/// (skipped special tokens between byte pieces join their runs). Cost: two
/// decodes of a short window per id; the window only grows while text is held.
///
/// Not thread-safe; the tokenizer must outlive the detokenizer.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer,
                                bool skip_special_tokens = false);

  /// Adds one id; returns the text that is now complete (often empty). An id
  /// outside the vocabulary is an error and is not added.
  absl::StatusOr<std::string> Feed(int32_t id);

  /// Returns the text still held back (a dangling incomplete character becomes
  /// U+FFFD, as in Decode) and starts over for a new sequence.
  absl::StatusOr<std::string> Finish();

  /// The ids fed since the last Finish.
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  /// The text of the ids already emitted from `prefix_offset_` on, and of all ids from
  /// there: what is new is the second minus the first.
  struct Window {
    std::string prefix_text;
    std::string new_text;
  };
  absl::StatusOr<Window> DecodeWindow() const;

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  bool byte_pieces_;  // the tokenizer has SentencePiece byte-fallback pieces
  std::vector<int32_t> ids_;
  size_t prefix_offset_ =
      0;  // window start: ids already emitted, decoded for context
  size_t read_offset_ = 0;  // ids up to here have been emitted
};

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_DETOKENIZER_H_
