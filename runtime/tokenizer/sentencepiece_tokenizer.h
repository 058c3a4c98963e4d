// SentencePiece tokenizer.model files (Llama 2 style) via libsentencepiece.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Encoding and decoding follow HF `transformers.LlamaTokenizer` (the
// `tokenizers` port, legacy=False), not raw sentencepiece, where they differ:
//  - the text is split at the special pieces (<unk>, <s>, </s>, other control
//    pieces), which become their ids; sentencepiece would spell them out;
//  - when the model has add_dummy_prefix, a "▁" is prepended to the first
//    segment only, and only if it does not start with a space already
//    (sentencepiece prepends one to every text);
//  - Decode runs HF's decoder chain: "▁" -> " ", byte fallback (a run of
//    <0xXX> pieces that is not valid UTF-8 gives one U+FFFD per piece), fuse,
//    strip one leading space; special pieces are written as their text unless
//    skipped.
// Supported: BPE and Unigram models with identity normalization (Llama 2,
// Mistral v0.1, TinyLlama). Models whose normalizer rewrites text (NFKC
// charsmaps, T5) are encoded by sentencepiece's own normalizer and may differ
// from HF in spacing; user-defined pieces are left to sentencepiece.
#ifndef TESSEL_RUNTIME_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define TESSEL_RUNTIME_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tessel {

/// A vocabulary of SentencePiece pieces ("▁the", "<0x0A>", "<s>") with HF's
/// Llama decoder. Shared by the tokenizer.model tokenizer and GGUF "llama"
/// vocabularies, which differ only in how they encode.
class SentencePieceStyleTokenizer : public Tokenizer {
 public:
  enum class PieceKind : uint8_t {
    kNormal,
    kUnknown,
    kControl,
    kUserDefined,
    kByte,
    kUnused
  };
  struct Piece {
    std::string text;  // as stored, with "▁" for spaces
    float score = 0.0f;
    PieceKind kind = PieceKind::kNormal;
  };

  absl::StatusOr<std::string> Decode(
      absl::Span<const int32_t> ids,
      bool skip_special_tokens = false) const override;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const override;
  int32_t vocab_size() const override {
    return static_cast<int32_t>(pieces_.size());
  }
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  bool IsSpecial(int32_t id) const override;

  /// Whether `id` is a byte-fallback piece <0xXX>. Decode judges a run of them
  /// as a whole, so a streaming decoder must not emit text while such a run may
  /// still grow.
  bool IsBytePiece(int32_t id) const;

  /// InvalidArgument naming the byte offset of the first invalid UTF-8 sequence
  /// in `text`.
  static absl::Status CheckUtf8(absl::string_view text);

  const std::vector<Piece>& pieces() const { return pieces_; }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }

 protected:
  /// Takes the piece table; ids are indexes. Builds the lookup maps.
  void SetPieces(std::vector<Piece> pieces);
  absl::Status CheckId(int32_t id) const;
  /// Splits `text` at the special pieces' texts (longest match first), in
  /// order: segments of plain text (`id` unset) and special ids.
  struct Segment {
    absl::string_view text;
    std::optional<int32_t> id;
  };
  std::vector<Segment> SplitAtSpecialPieces(absl::string_view text) const;

  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  bool add_bos_ = true;
  bool add_eos_ = false;

 private:
  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::vector<int32_t>
      special_ids_by_length_;             // longest text first, for splitting
  std::bitset<256> special_first_bytes_;  // first bytes of those texts
};

/// Loads a tokenizer.model. add_bos_token/add_eos_token come from a
/// tokenizer_config.json beside it when present (defaults: true, false, as HF's
/// LlamaTokenizer).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(
    const std::string& path);

/// Same, from the serialized ModelProto; `name` prefixes error messages.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModelFromString(
    absl::string_view serialized_model, const std::string& name, bool add_bos,
    bool add_eos);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
