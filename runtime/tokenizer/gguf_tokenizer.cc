// Tokenizers from the vocabulary embedded in GGUF files.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/tokenizer/gguf_tokenizer.h"

#include <cstdint>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status.h"
#include "runtime/tokenizer/bpe_tokenizer.h"
#include "runtime/tokenizer/sentencepiece_tokenizer.h"

namespace tessel {
namespace {

// llama.cpp's llama_token_type numbering (tokenizer.ggml.token_type).
enum GgufTokenType : int64_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// Split regexes (Oniguruma syntax, as in the published tokenizer.json files) by
// tokenizer.ggml.pre; llama.cpp's llama-vocab.cpp lists the same ones.
constexpr char kLlama3Split[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Split[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kGpt2Split[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|)"
    R"(\s+)";

struct PreTokenizerSpec {
  const char* split;
  bool ignore_merges;
};

std::optional<PreTokenizerSpec> FindPreTokenizer(std::string_view pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    return PreTokenizerSpec{kLlama3Split, true};
  }
  if (pre == "qwen2") return PreTokenizerSpec{kQwen2Split, false};
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    return PreTokenizerSpec{kGpt2Split, false};
  }
  return std::nullopt;
}

absl::string_view ToAbsl(std::string_view text) {
  return {text.data(), text.size()};
}

// A string array (tokenizer.ggml.tokens / merges).
absl::StatusOr<std::vector<std::string_view>> GetStrings(const GgufFile& file,
                                                         std::string_view key) {
  TESSEL_ASSIGN_OR_RETURN(const GgufArray* array,
                          file.GetArray(key, GgufType::kString));
  std::vector<std::string_view> strings;
  strings.reserve(array->elements.size());
  for (const GgufValue& value : array->elements)
    strings.push_back(*value.get_if<std::string>());
  return strings;
}

// An optional numeric array of `count` elements (scores, token types); empty if
// absent.
absl::StatusOr<std::vector<double>> GetNumbers(const GgufFile& file,
                                               std::string_view key,
                                               size_t count) {
  std::vector<double> numbers;
  if (file.Find(key) == nullptr) return numbers;
  TESSEL_ASSIGN_OR_RETURN(const GgufArray* array, file.GetArray(key));
  if (array->elements.size() != count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF key '%s' has %d elements but tokenizer.ggml.tokens has %d",
        file.path(), std::string(key), array->elements.size(), count));
  }
  numbers.reserve(count);
  for (const GgufValue& value : array->elements) {
    double number = 0;
    if (!std::visit(
            [&](const auto& v) {
              using T = std::decay_t<decltype(v)>;
              if constexpr (std::is_arithmetic_v<T> &&
                            !std::is_same_v<T, bool>) {
                number = static_cast<double>(v);
                return true;
              }
              return false;
            },
            value.storage())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: GGUF key '%s' holds %s elements, expected numbers", file.path(),
          std::string(key), std::string(GgufTypeName(value.type()))));
    }
    numbers.push_back(number);
  }
  return numbers;
}

// An optional token id key; checked against the vocabulary size.
absl::StatusOr<std::optional<int32_t>> GetTokenId(const GgufFile& file,
                                                  std::string_view key,
                                                  size_t vocab_size) {
  if (file.Find(key) == nullptr) return std::optional<int32_t>();
  TESSEL_ASSIGN_OR_RETURN(int64_t id, file.GetInt(key));
  if (id < 0)
    return std::optional<int32_t>();  // some converters write -1 for "none"
  if (static_cast<uint64_t>(id) >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF key '%s' is %d, outside the vocabulary of %d tokens",
        file.path(), std::string(key), id, vocab_size));
  }
  return std::optional<int32_t>(static_cast<int32_t>(id));
}

absl::StatusOr<bool> GetFlag(const GgufFile& file, std::string_view key,
                             bool default_value) {
  if (file.Find(key) == nullptr) return default_value;
  return file.GetBool(key);
}

/* llama.cpp's SentencePiece-BPE encoder (llama-vocab.cpp,
 * llm_tokenizer_spm_session): the text starts as one symbol per UTF-8
 * character; adjacent pairs whose concatenation is a token enter a max-heap by
 * that token's score (ties: leftmost first); popping merges the pair if both
 * sides are unchanged and queues the new neighbours. Symbols left that are not
 * tokens become byte pieces <0xXX>. Cost: O(n log n) for n characters. */
class GgufSpmTokenizer final : public SentencePieceStyleTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(
      const GgufFile& file) {
    TESSEL_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                            GetStrings(file, "tokenizer.ggml.tokens"));
    TESSEL_ASSIGN_OR_RETURN(
        std::vector<double> scores,
        GetNumbers(file, "tokenizer.ggml.scores", tokens.size()));
    TESSEL_ASSIGN_OR_RETURN(
        std::vector<double> types,
        GetNumbers(file, "tokenizer.ggml.token_type", tokens.size()));
    auto tokenizer = std::unique_ptr<GgufSpmTokenizer>(new GgufSpmTokenizer());
    std::vector<Piece> pieces(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id) {
      pieces[id].text = std::string(tokens[id]);
      pieces[id].score = scores.empty() ? 0.0f : static_cast<float>(scores[id]);
      switch (types.empty() ? kTokenNormal : static_cast<int64_t>(types[id])) {
        case kTokenUnknown:
          pieces[id].kind = PieceKind::kUnknown;
          break;
        case kTokenControl:
          pieces[id].kind = PieceKind::kControl;
          break;
        case kTokenUserDefined:
          pieces[id].kind = PieceKind::kUserDefined;
          break;
        case kTokenUnused:
          pieces[id].kind = PieceKind::kUnused;
          break;
        case kTokenByte:
          pieces[id].kind = PieceKind::kByte;
          break;
        default:
          pieces[id].kind = PieceKind::kNormal;
          break;
      }
    }
    tokenizer->SetPieces(std::move(pieces));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->bos_id_,
        GetTokenId(file, "tokenizer.ggml.bos_token_id", tokens.size()));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->eos_id_,
        GetTokenId(file, "tokenizer.ggml.eos_token_id", tokens.size()));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->unk_id_,
        GetTokenId(file, "tokenizer.ggml.unknown_token_id", tokens.size()));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->add_bos_,
        GetFlag(file, "tokenizer.ggml.add_bos_token", true));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->add_eos_,
        GetFlag(file, "tokenizer.ggml.add_eos_token", false));
    TESSEL_ASSIGN_OR_RETURN(
        tokenizer->add_space_prefix_,
        GetFlag(file, "tokenizer.ggml.add_space_prefix", true));
    if (tokenizer->add_bos_ && !tokenizer->bos_id_) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(),
                       ": tokenizer.ggml.add_bos_token is set but there is no "
                       "bos_token_id"));
    }
    if (tokenizer->add_eos_ && !tokenizer->eos_id_) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(),
                       ": tokenizer.ggml.add_eos_token is set but there is no "
                       "eos_token_id"));
    }
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text, bool add_special_tokens) const override {
    TESSEL_RETURN_IF_ERROR(CheckUtf8(text));
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
    bool previous_special =
        true;  // llama.cpp: a space prefix at the start, after specials
    for (const Segment& segment : SplitAtSpecialPieces(text)) {
      if (segment.id) {
        ids.push_back(*segment.id);
        previous_special = true;
        continue;
      }
      std::string escaped;
      if (add_space_prefix_ && previous_special) escaped = "\xE2\x96\x81";
      for (char c : segment.text) {
        if (c == ' ') {
          escaped += "\xE2\x96\x81";
        } else {
          escaped.push_back(c);
        }
      }
      TESSEL_RETURN_IF_ERROR(EncodeSegment(escaped, &ids));
      previous_special = false;
    }
    if (add_special_tokens && add_eos_) ids.push_back(*eos_id_);
    return ids;
  }

 private:
  struct Symbol {
    int prev;
    int next;
    size_t offset;
    size_t size;
  };
  struct Bigram {
    int left;
    int right;
    float score;
    size_t size;
    bool operator<(
        const Bigram& other) const {  // priority_queue pops the largest
      return score < other.score || (score == other.score && left > other.left);
    }
  };

  GgufSpmTokenizer() = default;

  absl::Status EncodeSegment(const std::string& text,
                             std::vector<int32_t>* ids) const {
    std::vector<Symbol> symbols;
    for (size_t offset = 0; offset < text.size();) {
      const uint8_t lead = static_cast<uint8_t>(text[offset]);
      const size_t length = lead < 0x80   ? 1
                            : lead < 0xE0 ? 2
                            : lead < 0xF0 ? 3
                                          : 4;
      const size_t size = std::min(length, text.size() - offset);
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({index - 1,
                         offset + size == text.size() ? -1 : index + 1, offset,
                         size});
      offset += size;
    }
    std::priority_queue<Bigram> queue;
    std::unordered_map<std::string_view, std::pair<int, int>> reverse_merges;
    const std::string_view whole(text);
    auto try_add_bigram = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const std::string_view pair = whole.substr(
          symbols[left].offset, symbols[left].size + symbols[right].size);
      std::optional<int32_t> id = TokenToId(ToAbsl(pair));
      if (!id) return;
      queue.push({left, right, pieces()[*id].score, pair.size()});
      reverse_merges[pair] = {left, right};
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i)
      try_add_bigram(i - 1, i);
    while (!queue.empty()) {
      const Bigram bigram = queue.top();
      queue.pop();
      Symbol& left = symbols[bigram.left];
      Symbol& right = symbols[bigram.right];
      if (left.size == 0 || right.size == 0 ||
          left.size + right.size != bigram.size)
        continue;
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = bigram.left;
      try_add_bigram(left.prev, bigram.left);
      try_add_bigram(bigram.left, left.next);
    }
    // Resegment: a symbol that is not a token splits back along the merge that
    // made it, or falls back to byte pieces.
    std::vector<std::pair<size_t, size_t>> stack;
    for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
      stack.push_back({symbols[i].offset, symbols[i].size});
      while (!stack.empty()) {
        const auto [offset, size] = stack.back();
        stack.pop_back();
        const std::string_view piece = whole.substr(offset, size);
        if (std::optional<int32_t> id = TokenToId(ToAbsl(piece))) {
          ids->push_back(*id);
          continue;
        }
        if (auto merge = reverse_merges.find(piece);
            merge != reverse_merges.end()) {
          const Symbol& first = symbols[merge->second.first];
          const Symbol& second = symbols[merge->second.second];
          stack.push_back({second.offset, second.size});
          stack.push_back({first.offset, first.size});
          continue;
        }
        for (char c : piece) {
          const std::string byte_piece = absl::StrFormat(
              "<0x%02X>", static_cast<unsigned>(static_cast<uint8_t>(c)));
          std::optional<int32_t> id = TokenToId(byte_piece);
          if (!id) id = TokenToId(absl::string_view(&c, 1));
          if (!id) id = unk_id_;
          if (!id) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "the GGUF vocabulary has no piece for byte 0x%02X (no %s, no "
                "unknown token)",
                static_cast<unsigned>(static_cast<uint8_t>(c)), byte_piece));
          }
          ids->push_back(*id);
        }
      }
    }
    return absl::OkStatus();
  }

  std::optional<int32_t> unk_id_;
  bool add_space_prefix_ = true;
};

}  // namespace

absl::StatusOr<std::string> GgufBpeTokenizerJson(const GgufFile& file) {
  std::string pre = "default";
  if (file.Find("tokenizer.ggml.pre") != nullptr) {
    TESSEL_ASSIGN_OR_RETURN(std::string_view value,
                            file.GetString("tokenizer.ggml.pre"));
    pre = std::string(value);
  }
  std::optional<PreTokenizerSpec> spec = FindPreTokenizer(pre);
  if (!spec) {
    return absl::UnimplementedError(absl::StrCat(
        file.path(), ": GGUF pre-tokenizer tokenizer.ggml.pre = \"", pre,
        "\" is not supported; supported: llama-bpe (llama3), qwen2, gpt-2 "
        "(default)"));
  }
  TESSEL_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                          GetStrings(file, "tokenizer.ggml.tokens"));
  TESSEL_ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                          GetStrings(file, "tokenizer.ggml.merges"));
  TESSEL_ASSIGN_OR_RETURN(
      std::vector<double> types,
      GetNumbers(file, "tokenizer.ggml.token_type", tokens.size()));
  TESSEL_ASSIGN_OR_RETURN(
      std::optional<int32_t> bos_id,
      GetTokenId(file, "tokenizer.ggml.bos_token_id", tokens.size()));
  TESSEL_ASSIGN_OR_RETURN(
      std::optional<int32_t> eos_id,
      GetTokenId(file, "tokenizer.ggml.eos_token_id", tokens.size()));
  TESSEL_ASSIGN_OR_RETURN(bool add_bos,
                          GetFlag(file, "tokenizer.ggml.add_bos_token", false));
  TESSEL_ASSIGN_OR_RETURN(bool add_eos,
                          GetFlag(file, "tokenizer.ggml.add_eos_token", false));
  if ((add_bos && !bos_id) || (add_eos && !eos_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": tokenizer.ggml.add_",
                     add_bos && !bos_id ? "bos" : "eos",
                     "_token is set but the token id is missing"));
  }
  // nlohmann::json::dump throws on invalid UTF-8: check every string first.
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (absl::Status status =
            SentencePieceStyleTokenizer::CheckUtf8(ToAbsl(tokens[id]));
        !status.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: token %d: %s", file.path(), id, status.message()));
    }
  }
  for (size_t i = 0; i < merges.size(); ++i) {
    if (!SentencePieceStyleTokenizer::CheckUtf8(ToAbsl(merges[i])).ok() ||
        merges[i].find(' ') == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: merge %d is not two UTF-8 tokens separated by a space",
          file.path(), i));
    }
  }

  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string token(tokens[id]);
    if (!vocab.contains(token)) vocab[token] = id;
    const int64_t type =
        types.empty() ? kTokenNormal : static_cast<int64_t>(types[id]);
    if (type == kTokenControl || type == kTokenUserDefined) {
      added.push_back({{"id", id},
                       {"content", token},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == kTokenControl}});
    }
  }
  nlohmann::json merge_list = nlohmann::json::array();
  for (std::string_view merge : merges)
    merge_list.push_back(std::string(merge));

  nlohmann::json post_processor;
  if (add_bos || add_eos) {
    nlohmann::json single = nlohmann::json::array();
    nlohmann::json pair = nlohmann::json::array();
    nlohmann::json special_tokens = nlohmann::json::object();
    auto add_special = [&](int32_t id, nlohmann::json* sequence, int type_id) {
      const std::string token(tokens[id]);
      sequence->push_back(
          {{"SpecialToken", {{"id", token}, {"type_id", type_id}}}});
      special_tokens[token] = {
          {"id", token}, {"ids", {id}}, {"tokens", {token}}};
    };
    for (int part = 0; part < 2; ++part) {
      if (add_bos) add_special(*bos_id, &pair, part);
      pair.push_back(
          {{"Sequence", {{"id", part == 0 ? "A" : "B"}, {"type_id", part}}}});
      if (add_eos) add_special(*eos_id, &pair, part);
    }
    if (add_bos) add_special(*bos_id, &single, 0);
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos) add_special(*eos_id, &single, 0);
    post_processor = {{"type", "TemplateProcessing"},
                      {"single", single},
                      {"pair", pair},
                      {"special_tokens", special_tokens}};
  } else {
    post_processor = {{"type", "ByteLevel"},
                      {"add_prefix_space", false},
                      {"trim_offsets", false},
                      {"use_regex", false}};
  }

  nlohmann::json tokenizer = {{"version", "1.0"},
                              {"truncation", nullptr},
                              {"padding", nullptr},
                              {"added_tokens", added},
                              {"normalizer", nullptr},
                              {"pre_tokenizer",
                               {{"type", "Sequence"},
                                {"pretokenizers",
                                 {{{"type", "Split"},
                                   {"pattern", {{"Regex", spec->split}}},
                                   {"behavior", "Isolated"},
                                   {"invert", false}},
                                  {{"type", "ByteLevel"},
                                   {"add_prefix_space", false},
                                   {"trim_offsets", true},
                                   {"use_regex", false}}}}}},
                              {"post_processor", post_processor},
                              {"decoder",
                               {{"type", "ByteLevel"},
                                {"add_prefix_space", true},
                                {"trim_offsets", true},
                                {"use_regex", true}}},
                              {"model",
                               {{"type", "BPE"},
                                {"dropout", nullptr},
                                {"unk_token", nullptr},
                                {"continuing_subword_prefix", nullptr},
                                {"end_of_word_suffix", nullptr},
                                {"fuse_unk", false},
                                {"byte_fallback", false},
                                {"ignore_merges", spec->ignore_merges},
                                {"vocab", vocab},
                                {"merges", merge_list}}}};
  return tokenizer.dump(-1, ' ', false,
                        nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(
    const GgufFile& file) {
  if (file.Find("tokenizer.ggml.model") == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        file.path(),
        ": the GGUF file has no embedded tokenizer (no tokenizer.ggml.model)"));
  }
  TESSEL_ASSIGN_OR_RETURN(std::string_view model,
                          file.GetString("tokenizer.ggml.model"));
  if (model == "llama") return GgufSpmTokenizer::Create(file);
  if (model == "gpt2") {
    TESSEL_ASSIGN_OR_RETURN(std::string json, GgufBpeTokenizerJson(file));
    return LoadTokenizerFromTokenizerJsonString(
        json, file.path() + " (embedded gpt2 vocabulary)");
  }
  return absl::UnimplementedError(absl::StrCat(
      file.path(), ": GGUF tokenizer model tokenizer.ggml.model = \"",
      ToAbsl(model),
      "\" is not supported; supported: llama (SentencePiece), gpt2 (byte-level "
      "BPE)"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(
    const std::string& path) {
  TESSEL_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  return LoadGgufTokenizer(*file);
}

}  // namespace tessel
