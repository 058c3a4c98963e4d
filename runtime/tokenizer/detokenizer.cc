// Streaming detokenization: ids in one at a time, complete UTF-8 out.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/tokenizer/detokenizer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "runtime/base/status.h"
#include "runtime/tokenizer/sentencepiece_tokenizer.h"

namespace tessel {
namespace {

constexpr absl::string_view kReplacementCharacter = "\xEF\xBF\xBD";

}  // namespace

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer,
                                           bool skip_special_tokens)
    : tokenizer_(tokenizer),
      skip_special_tokens_(skip_special_tokens),
      byte_pieces_(dynamic_cast<const SentencePieceStyleTokenizer*>(
                       &tokenizer) != nullptr) {}

absl::StatusOr<std::string> StreamingDetokenizer::Feed(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id,
                                              " is outside the vocabulary [0, ",
                                              tokenizer_.vocab_size(), ")"));
  }
  ids_.push_back(id);
  // A run of byte pieces may go on; a skipped special token is invisible to the
  // decoder, so the runs on both sides of it join.
  if (byte_pieces_ &&
      (static_cast<const SentencePieceStyleTokenizer&>(tokenizer_)
           .IsBytePiece(id) ||
       (skip_special_tokens_ && tokenizer_.IsSpecial(id)))) {
    return std::string();
  }
  TESSEL_ASSIGN_OR_RETURN(Window window, DecodeWindow());
  const std::string& prefix_text = window.prefix_text;
  const std::string& new_text = window.new_text;
  if (new_text.size() <= prefix_text.size() ||
      !absl::StartsWith(new_text, prefix_text) ||
      absl::EndsWith(new_text, kReplacementCharacter)) {
    return std::string();
  }
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return new_text.substr(prefix_text.size());
}

absl::StatusOr<StreamingDetokenizer::Window> StreamingDetokenizer::DecodeWindow() const {
  const absl::Span<const int32_t> ids(ids_);
  Window window;
  TESSEL_ASSIGN_OR_RETURN(
      window.prefix_text,
      tokenizer_.Decode(ids.subspan(prefix_offset_, read_offset_ - prefix_offset_),
                        skip_special_tokens_));
  TESSEL_ASSIGN_OR_RETURN(window.new_text,
                          tokenizer_.Decode(ids.subspan(prefix_offset_), skip_special_tokens_));
  return window;
}

absl::StatusOr<std::string> StreamingDetokenizer::Finish() {
  TESSEL_ASSIGN_OR_RETURN(Window window, DecodeWindow());
  const std::string& prefix_text = window.prefix_text;
  const std::string& new_text = window.new_text;
  ids_.clear();
  prefix_offset_ = read_offset_ = 0;
  if (!absl::StartsWith(new_text, prefix_text)) {
    return absl::InternalError(
        "streaming detokenization diverged from Decode: the tokenizer's "
        "decoder is not "
        "prefix-stable for this sequence");
  }
  return new_text.substr(prefix_text.size());
}

}  // namespace tessel
