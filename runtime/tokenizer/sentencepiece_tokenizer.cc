// SentencePiece tokenizer.model files (Llama 2 style) via libsentencepiece.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/tokenizer/sentencepiece_tokenizer.h"

// sentencepiece_processor.h declares `namespace absl { using std::string_view;
// }`, which clashes with Abseil's own absl::string_view class (Abseil 20220623
// here does not alias std::string_view). Renaming the namespace while the
// header is read keeps its declarations intact: they still take
// std::string_view, as the library was built.
#define absl tessel_sentencepiece_absl
#include <sentencepiece_processor.h>
#undef absl

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status.h"

namespace tessel {
namespace {

constexpr absl::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"
constexpr absl::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// HF's ByteFallback decoder recognizes byte pieces by their spelling, "<0xAB>".
std::optional<uint8_t> ParseBytePiece(absl::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>')
    return std::nullopt;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return std::nullopt;
    }
  }
  return static_cast<uint8_t>(value);
}

std::string ReplaceSpaceMarkers(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i, kSpaceMarker.size()) == kSpaceMarker) {
      out.push_back(' ');
      i += kSpaceMarker.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

// Reads add_bos_token / add_eos_token from the tokenizer_config.json beside
// `model_path`. A missing file keeps the defaults; an unreadable one is an
// error.
absl::Status ReadAddTokenFlags(const std::string& model_path, bool* add_bos,
                               bool* add_eos) {
  const size_t slash = model_path.find_last_of('/');
  const std::string config_path =
      (slash == std::string::npos ? std::string()
                                  : model_path.substr(0, slash + 1)) +
      "tokenizer_config.json";
  std::ifstream file(config_path, std::ios::binary);
  if (!file) return absl::OkStatus();
  std::stringstream text;
  text << file.rdbuf();
  nlohmann::json config =
      nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": not a JSON object (tokenizer_config.json expected)"));
  }
  for (auto [key, flag] : {std::pair{"add_bos_token", add_bos},
                           std::pair{"add_eos_token", add_eos}}) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": '", key,
                                                     "' is ", it->type_name(),
                                                     ", expected a boolean"));
    }
    *flag = it->get<bool>();
  }
  return absl::OkStatus();
}

// Encodes with libsentencepiece. The model is loaded with add_dummy_prefix off,
// so the HF rule for the leading "▁" can be applied by hand.
class SentencePieceTokenizer final : public SentencePieceStyleTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(
      absl::string_view serialized_model, const std::string& name, bool add_bos,
      bool add_eos) {
    auto tokenizer =
        std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
    // The model's own add_dummy_prefix decides whether HF prepends a space at
    // all: an unpatched load shows it as a leading "▁" when encoding "a".
    const std::string_view original(serialized_model.data(),
                                    serialized_model.size());
    sentencepiece::util::Status loaded =
        tokenizer->processor_.LoadFromSerializedProto(original);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": not a SentencePiece model: ", loaded.ToString()));
    }
    std::vector<std::string> probe;
    if (tokenizer->processor_.Encode(std::string_view("a"), &probe).ok()) {
      tokenizer->add_dummy_prefix_ =
          !probe.empty() && absl::StartsWith(probe[0], kSpaceMarker);
    }
    // Then reload with the flag off. A ModelProto's normalizer_spec (field 3)
    // is a message and protobuf merges repeated occurrences of one, so
    // appending {add_dummy_prefix (field 3) = false} overrides the flag
    // without parsing the model.
    std::string patched(original);
    patched.append("\x1a\x02\x18\x00", 4);
    loaded = tokenizer->processor_.LoadFromSerializedProto(
        std::string_view(patched));
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": not a SentencePiece model: ", loaded.ToString()));
    }
    const sentencepiece::SentencePieceProcessor& processor =
        tokenizer->processor_;
    std::vector<Piece> pieces(processor.GetPieceSize());
    for (int id = 0; id < processor.GetPieceSize(); ++id) {
      Piece& piece = pieces[id];
      piece.text = processor.IdToPiece(id);
      piece.score = processor.GetScore(id);
      piece.kind = processor.IsUnknown(id)   ? PieceKind::kUnknown
                   : processor.IsControl(id) ? PieceKind::kControl
                   : processor.IsByte(id)    ? PieceKind::kByte
                   : processor.IsUnused(id)  ? PieceKind::kUnused
                                             : PieceKind::kNormal;
    }
    tokenizer->SetPieces(std::move(pieces));
    if (processor.bos_id() >= 0) tokenizer->bos_id_ = processor.bos_id();
    if (processor.eos_id() >= 0) tokenizer->eos_id_ = processor.eos_id();
    tokenizer->add_bos_ = add_bos;
    tokenizer->add_eos_ = add_eos;
    if (add_bos && !tokenizer->bos_id_) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": add_bos_token is set but the model has no BOS piece"));
    }
    if (add_eos && !tokenizer->eos_id_) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": add_eos_token is set but the model has no EOS piece"));
    }
    return tokenizer;
  }

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text, bool add_special_tokens) const override {
    TESSEL_RETURN_IF_ERROR(CheckUtf8(text));
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
    bool first = true;
    for (const Segment& segment : SplitAtSpecialPieces(text)) {
      if (segment.id) {
        ids.push_back(*segment.id);
      } else {
        // HF's Metaspace(prepend_scheme="first"): a "▁" before the text at
        // offset 0 only, unless it starts with a space already.
        std::string input;
        if (add_dummy_prefix_ && first && segment.text.data() == text.data() &&
            segment.text.front() != ' ') {
          input.push_back(' ');
        }
        input.append(segment.text.data(), segment.text.size());
        std::vector<int> piece_ids;
        const sentencepiece::util::Status status =
            processor_.Encode(std::string_view(input), &piece_ids);
        if (!status.ok()) {
          return absl::InternalError(
              absl::StrCat("sentencepiece: ", status.ToString()));
        }
        ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
      }
      first = false;
    }
    if (add_special_tokens && add_eos_) ids.push_back(*eos_id_);
    return ids;
  }

 private:
  SentencePieceTokenizer() = default;

  sentencepiece::SentencePieceProcessor processor_;
  bool add_dummy_prefix_ = true;  // normalizer_spec.add_dummy_prefix
};

}  // namespace

void SentencePieceStyleTokenizer::SetPieces(std::vector<Piece> pieces) {
  pieces_ = std::move(pieces);
  piece_to_id_.clear();
  special_ids_by_length_.clear();
  for (int32_t id = 0; id < static_cast<int32_t>(pieces_.size()); ++id) {
    // The first id of a duplicated text wins.
    piece_to_id_.emplace(pieces_[id].text, id);
    if ((pieces_[id].kind == PieceKind::kControl ||
         pieces_[id].kind == PieceKind::kUnknown) &&
        !pieces_[id].text.empty()) {
      special_ids_by_length_.push_back(id);
    }
  }
  special_first_bytes_.reset();
  for (int32_t id : special_ids_by_length_) {
    special_first_bytes_.set(static_cast<uint8_t>(pieces_[id].text[0]));
  }
  std::stable_sort(special_ids_by_length_.begin(), special_ids_by_length_.end(),
                   [&](int32_t a, int32_t b) {
                     return pieces_[a].text.size() > pieces_[b].text.size();
                   });
}

absl::Status SentencePieceStyleTokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "token id %d is outside the vocabulary [0, %d)", id, vocab_size()));
  }
  return absl::OkStatus();
}

absl::Status SentencePieceStyleTokenizer::CheckUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const uint8_t lead = static_cast<uint8_t>(text[i]);
    size_t length = 0;
    uint32_t min = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2, min = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3, min = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4, min = 0x10000;
    }
    bool valid = length != 0 && i + length <= text.size();
    uint32_t code_point = valid ? lead & (0x7F >> length) : 0;
    for (size_t k = 1; valid && k < length; ++k) {
      const uint8_t next = static_cast<uint8_t>(text[i + k]);
      valid = (next & 0xC0) == 0x80;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    valid = valid && code_point >= min && code_point <= 0x10FFFF &&
            !(code_point >= 0xD800 && code_point <= 0xDFFF);
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "text is not valid UTF-8: bad byte 0x%02X at offset %d", lead, i));
    }
    i += length;
  }
  return absl::OkStatus();
}

std::vector<SentencePieceStyleTokenizer::Segment>
SentencePieceStyleTokenizer::SplitAtSpecialPieces(
    absl::string_view text) const {
  std::vector<Segment> segments;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    std::optional<int32_t> match;
    if (special_first_bytes_[static_cast<uint8_t>(text[i])]) {
      for (int32_t id : special_ids_by_length_) {
        const std::string& piece = pieces_[id].text;
        if (text.substr(i, piece.size()) == piece) {
          match = id;
          break;
        }
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    if (i > start)
      segments.push_back({text.substr(start, i - start), std::nullopt});
    segments.push_back({text.substr(i, pieces_[*match].text.size()), match});
    i += pieces_[*match].text.size();
    start = i;
  }
  if (start < text.size())
    segments.push_back({text.substr(start), std::nullopt});
  return segments;
}

absl::StatusOr<std::string> SentencePieceStyleTokenizer::Decode(
    absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  // HF's Llama decoder: Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1,
  // 0). A run of byte pieces becomes its bytes if they are valid UTF-8, else
  // one U+FFFD per piece.
  std::string text;
  std::string pending_bytes;
  size_t pending_pieces = 0;
  auto flush_bytes = [&] {
    if (pending_pieces == 0) return;
    if (CheckUtf8(pending_bytes).ok()) {
      text += pending_bytes;
    } else {
      for (size_t i = 0; i < pending_pieces; ++i)
        absl::StrAppend(&text, kReplacementCharacter);
    }
    pending_bytes.clear();
    pending_pieces = 0;
  };
  for (int32_t id : ids) {
    TESSEL_RETURN_IF_ERROR(CheckId(id));
    if (skip_special_tokens && IsSpecial(id)) continue;
    const std::string& piece = pieces_[id].text;
    if (std::optional<uint8_t> byte = ParseBytePiece(piece)) {
      pending_bytes.push_back(static_cast<char>(*byte));
      ++pending_pieces;
      continue;
    }
    flush_bytes();
    text += ReplaceSpaceMarkers(piece);
  }
  flush_bytes();
  if (!text.empty() && text.front() == ' ') text.erase(0, 1);
  return text;
}

absl::StatusOr<std::string> SentencePieceStyleTokenizer::TokenBytes(
    int32_t id) const {
  TESSEL_RETURN_IF_ERROR(CheckId(id));
  const std::string& piece = pieces_[id].text;
  if (std::optional<uint8_t> byte = ParseBytePiece(piece)) {
    return std::string(1, static_cast<char>(*byte));
  }
  if (IsSpecial(id)) return piece;
  return ReplaceSpaceMarkers(piece);
}

std::optional<int32_t> SentencePieceStyleTokenizer::TokenToId(
    absl::string_view token) const {
  auto it = piece_to_id_.find(std::string(token));
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

bool SentencePieceStyleTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return pieces_[id].kind == PieceKind::kControl ||
         pieces_[id].kind == PieceKind::kUnknown;
}

bool SentencePieceStyleTokenizer::IsBytePiece(int32_t id) const {
  return id >= 0 && id < vocab_size() &&
         ParseBytePiece(pieces_[id].text).has_value();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModelFromString(
    absl::string_view serialized_model, const std::string& name, bool add_bos,
    bool add_eos) {
  TESSEL_ASSIGN_OR_RETURN(
      std::unique_ptr<SentencePieceTokenizer> tokenizer,
      SentencePieceTokenizer::Create(serialized_model, name, add_bos, add_eos));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(
    const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad())
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  bool add_bos = true;
  bool add_eos = false;
  TESSEL_RETURN_IF_ERROR(ReadAddTokenFlags(path, &add_bos, &add_eos));
  return LoadSentencePieceModelFromString(contents.str(), path, add_bos,
                                          add_eos);
}

}  // namespace tessel
