// Byte-level BPE tokenizer.json loader, encoder and decoder with HF `tokenizers` parity.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Encode follows HF tokenizers' Tokenizer::encode step for step, because id parity depends
// on the order: (1) added tokens that are not `normalized` are cut out of the raw text
// (leftmost-longest, then single_word/lstrip/rstrip), (2) every other piece is normalized,
// (3) `normalized` added tokens are cut out of it, (4) the pre-tokenizer splits the pieces,
// (5) each pre-token goes through BPE, (6) the post-processor adds its tokens.
//
// ByteLevel's byte -> printable-char mapping (GPT-2) is never materialized on the encode
// path: the vocabulary is re-keyed by raw bytes at load time, which is the same function
// and saves a UTF-8 re-encode of every byte.
//
// BPE (Sennrich et al. 2016, as HF word.rs merge_all): repeatedly merge the adjacent pair
// with the lowest merge rank, leftmost first, until no pair has a rank; a binary heap of
// candidate pairs over a linked list of symbols makes a word O(n log n). Words are cached,
// so the heap runs once per distinct word.

#include "runtime/tokenizer/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status.h"

namespace tessel {
namespace {

using Json = nlohmann::json;

// Ids are indexes of dense tables; a file asking for more is corrupt (Llama 3: 128256).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;
// Word cache bounds (HF caches 10k words); words longer than this are not cached.
constexpr size_t kCacheMaxEntries = 1 << 17;
constexpr size_t kCacheMaxWordBytes = 64;

// ---------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence at s[i] (Unicode Table 3-7), or 0 with `*invalid_len`
// set to the length of its maximal invalid subpart (what from_utf8_lossy replaces by one
// U+FFFD).
size_t Utf8SequenceLength(const unsigned char* s, size_t n, size_t i, size_t* invalid_len) {
  const unsigned char b = s[i];
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    *invalid_len = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= n) {
      *invalid_len = k;
      return 0;
    }
    const unsigned char c = s[i + k];
    if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) {
      *invalid_len = k;
      return 0;
    }
  }
  return need + 1;
}

// Byte offset of the first invalid UTF-8 sequence, or npos.
size_t FindInvalidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time: most text is mostly ASCII.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    size_t invalid_len = 0;
    const size_t len = Utf8SequenceLength(s, n, i, &invalid_len);
    if (len == 0) return i;
    i += len;
  }
  return absl::string_view::npos;
}

// Rust's String::from_utf8_lossy, which HF's ByteLevel decoder applies to the bytes.
std::string Utf8Lossy(absl::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    size_t invalid_len = 0;
    const size_t len = Utf8SequenceLength(s, n, i, &invalid_len);
    if (len != 0) {
      out.append(bytes.data() + i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      i += invalid_len;
    }
  }
  return out;
}

// Decodes the (valid) UTF-8 character at text[i]; returns its length.
size_t DecodeUtf8(absl::string_view text, size_t i, uint32_t* code_point) {
  utf8proc_int32_t cp = 0;
  const utf8proc_ssize_t len =
      utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                       static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  if (len <= 0) {
    *code_point = 0xFFFD;
    return 1;
  }
  *code_point = static_cast<uint32_t>(cp);
  return static_cast<size_t>(len);
}

// Start of the last character of a non-empty valid UTF-8 string.
size_t LastCharStart(absl::string_view text) {
  size_t i = text.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Rust char::is_whitespace (the Unicode White_Space property), used by lstrip/rstrip.
bool IsWhiteSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Rust char::is_alphanumeric (single_word), approximated by the letter and number
// categories (Rust also counts Other_Alphabetic marks).
bool IsAlphanumeric(uint32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool IsAscii(absl::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// GPT-2 byte <-> char mapping (ByteLevel): printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100.. in byte order.
// ---------------------------------------------------------------------------------------

struct ByteLevelMap {
  uint32_t byte_to_char[256];
  int16_t char_to_byte[324];  // chars are < U+0144
  ByteLevelMap() {
    std::fill(std::begin(char_to_byte), std::end(char_to_byte), -1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_char[b] = printable ? static_cast<uint32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelMap& ByteLevel() {
  static const ByteLevelMap* const map = new ByteLevelMap();
  return *map;
}

// The raw bytes a byte-level token string stands for, or nullopt when a char is outside the
// mapping (such a token can never come out of byte-level input).
std::optional<std::string> ByteLevelToBytes(absl::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    uint32_t cp;
    i += DecodeUtf8(token, i, &cp);
    if (cp >= 324 || ByteLevel().char_to_byte[cp] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(ByteLevel().char_to_byte[cp]));
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Regexes: Oniguruma patterns (what HF runs) on PCRE2.
// ---------------------------------------------------------------------------------------

// Oniguruma's \s is White_Space; PCRE2's \s with UCP also matches U+180E. Oniguruma's \h is
// a hex digit; PCRE2's is horizontal space. Both are rewritten to explicit classes.
constexpr char kWhiteSpaceClassBody[] =
    "\\t\\n\\x0B\\f\\r\\x20\\x85\\xA0\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string TranslateOnigurumaPattern(absl::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() * 2);
  int class_depth = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      const bool in_class = class_depth > 0;
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpaceClassBody)
                        : absl::StrCat("[", kWhiteSpaceClassBody, "]");
      } else if (e == 'S' && !in_class) {
        out += absl::StrCat("[^", kWhiteSpaceClassBody, "]");
      } else if (e == 'h') {
        out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (e == 'H' && !in_class) {
        out += "[^0-9a-fA-F]";
      } else {
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (c == '[') {
      if (class_depth > 0 && i + 1 < pattern.size() && pattern[i + 1] == ':') {
        // POSIX class [:name:] inside a bracket: copy through.
        const size_t close = pattern.find(":]", i + 2);
        if (close != absl::string_view::npos) {
          out.append(pattern.data() + i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      ++class_depth;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out.push_back(c);
  }
  return out;
}

// Per-thread PCRE2 match state: JIT stack and match data reused across calls.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context != nullptr && stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

MatchScratch& ThreadMatchScratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view oniguruma_pattern) {
    const std::string pattern = TranslateOnigurumaPattern(oniguruma_pattern);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", oniguruma_pattern,
                                                     "': ", reinterpret_cast<const char*>(message),
                                                     " at offset ", error_offset));
    }
    auto regex = std::unique_ptr<Regex>(new Regex(code));
    regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return regex;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Appends the matches of `subject` as (start, end) byte offsets, in the order and with
  /// the empty-match rule of the onig crate's find_iter that HF uses.
  absl::Status FindAll(absl::string_view subject,
                       std::vector<std::pair<uint32_t, uint32_t>>* matches) const {
    MatchScratch& scratch = ThreadMatchScratch();
    if (scratch.data == nullptr) return absl::ResourceExhaustedError("out of memory in PCRE2");
    const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
    const size_t n = subject.size();
    size_t last_end = 0;
    bool have_last_match = false;
    size_t last_match_end = 0;
    while (last_end <= n) {
      const int rc = jit_ ? pcre2_jit_match(code_, text, n, last_end, PCRE2_NO_UTF_CHECK,
                                            scratch.data, scratch.context)
                          : pcre2_match(code_, text, n, last_end, PCRE2_NO_UTF_CHECK, scratch.data,
                                        scratch.context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        return absl::ResourceExhaustedError(
            absl::StrCat("regex match failed: ", reinterpret_cast<const char*>(message)));
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
      const size_t start = ovector[0], end = ovector[1];
      if (start == end && have_last_match && last_match_end == end) {
        // An empty match right after the previous match is skipped; step one char.
        if (last_end >= n) break;
        uint32_t cp;
        last_end += DecodeUtf8(subject, last_end, &cp);
        continue;
      }
      last_end = end;
      have_last_match = true;
      last_match_end = end;
      matches->emplace_back(static_cast<uint32_t>(start), static_cast<uint32_t>(end));
    }
    return absl::OkStatus();
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
  bool jit_ = false;
};

// HF ByteLevel's own regex (GPT-2), used when ByteLevel.use_regex is true.
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------
// Added tokens: leftmost-longest matching over a byte trie (HF uses Aho-Corasick with
// MatchKind::LeftmostLongest, which yields the same matches).
// ---------------------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

class AddedTokenMatcher {
 public:
  void Add(absl::string_view pattern, int token_index) {
    if (pattern.empty()) return;
    if (nodes_.empty()) nodes_.push_back(-1);
    int32_t node = 0;
    for (unsigned char b : pattern) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        nodes_.push_back(-1);
        it = edges_.emplace(key, static_cast<int32_t>(nodes_.size() - 1)).first;
      }
      node = it->second;
    }
    if (nodes_[node] < 0) nodes_[node] = token_index;  // first definition wins
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }

  /// Finds the leftmost match at or after `from`, the longest among those starting there.
  bool FindNext(absl::string_view text, size_t from, size_t* start, size_t* end,
                int* token_index) const {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = from; i < text.size(); ++i) {
      if (!first_byte_[s[i]]) continue;
      int32_t node = 0;
      int best = -1;
      size_t best_end = 0;
      for (size_t j = i; j < text.size(); ++j) {
        const auto it = edges_.find((static_cast<uint64_t>(node) << 8) | s[j]);
        if (it == edges_.end()) break;
        node = it->second;
        if (nodes_[node] >= 0) best = nodes_[node], best_end = j + 1;
      }
      if (best >= 0) {
        *start = i;
        *end = best_end;
        *token_index = best;
        return true;
      }
    }
    return false;
  }

 private:
  std::vector<int32_t> nodes_;  // token index ending at each node, or -1
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  bool first_byte_[256] = {};
};

// A piece of text split by added tokens: a token id, or a text range [begin, end).
struct Segment {
  int32_t token_id;  // -1 for text
  size_t begin, end;
};

// ---------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  bool is_byte_level = false;
  // Split: a regex or a literal; ByteLevel: the GPT-2 regex when use_regex.
  std::unique_ptr<Regex> regex;
  std::string literal;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;
};

struct MergeInfo {
  int32_t rank;
  int32_t new_id;
};

// Per-call scratch of Encode.
struct EncodeState {
  std::vector<int32_t>* ids;
  std::deque<std::string> arena;  // pieces that are not views of the input
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> matches;  // per pre-tokenizer step
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> pieces;   // per pre-tokenizer step
  std::vector<int32_t> word_ids;
};

class BpeTokenizer final : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(token_strings_.size()); }
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && is_special_[id] != 0;
  }

 private:
  friend class TokenizerJsonLoader;

  void SplitAddedTokens(absl::string_view text, const AddedTokenMatcher& matcher,
                        std::vector<Segment>* segments) const;
  absl::Status Normalize(absl::string_view text, std::string* out) const;
  absl::Status PreTokenizeAndEncode(size_t step, absl::string_view piece, EncodeState* state) const;
  void EncodeWord(absl::string_view word, EncodeState* state) const;
  void MergeWord(absl::string_view word, std::vector<int32_t>* out) const;

  // Vocabulary. Ids without a token have an empty string and `has_token_` false.
  std::vector<std::string> token_strings_;  // id -> token as written in the file
  std::vector<std::string> decoded_bytes_;  // id -> bytes by the ByteLevel decoder
  std::vector<uint8_t> has_token_;
  std::vector<uint8_t> is_special_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  absl::flat_hash_map<std::string, int32_t> model_by_string_;
  // Model, keyed by raw bytes.
  absl::flat_hash_map<std::string, int32_t> model_by_bytes_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;  // (left id << 32 | right id)
  int32_t byte_ids_[256];
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;

  std::vector<AddedToken> added_tokens_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher_;  // normalized == true, by normalized content
  std::vector<int> normalizations_;       // utf8proc option sets, applied in order
  std::vector<PreTokenizerStep> pre_tokenizer_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // post-processor, around the sequence

  // Word cache: word bytes -> ids in `cache_ids_`.
  mutable std::mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> cache_;
  mutable std::vector<int32_t> cache_ids_;
};

// HF AddedVocabulary::find_matches.
void BpeTokenizer::SplitAddedTokens(absl::string_view text, const AddedTokenMatcher& matcher,
                                    std::vector<Segment>* segments) const {
  segments->clear();
  size_t start_offset = 0;
  size_t from = 0;
  size_t start, stop;
  int token_index;
  while (!matcher.empty() && matcher.FindNext(text, from, &start, &stop, &token_index)) {
    from = stop;
    const AddedToken& token = added_tokens_[token_index];
    if (token.single_word) {
      bool start_space = true, stop_space = true;
      if (start > 0) {
        uint32_t cp;
        DecodeUtf8(text, LastCharStart(text.substr(0, start)), &cp);
        start_space = !IsAlphanumeric(cp);
      }
      if (stop < text.size()) {
        uint32_t cp;
        DecodeUtf8(text, stop, &cp);
        stop_space = !IsAlphanumeric(cp);
      }
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        const size_t prev = LastCharStart(text.substr(0, new_start));
        uint32_t cp;
        DecodeUtf8(text, prev, &cp);
        if (!IsWhiteSpace(cp)) break;
        new_start = prev;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        uint32_t cp;
        const size_t len = DecodeUtf8(text, stop, &cp);
        if (!IsWhiteSpace(cp)) break;
        stop += len;
      }
    }
    if (start_offset < start) segments->push_back({-1, start_offset, start});
    segments->push_back({token.id, start, stop});
    start_offset = stop;
  }
  if (start_offset != text.size()) segments->push_back({-1, start_offset, text.size()});
}

absl::Status BpeTokenizer::Normalize(absl::string_view text, std::string* out) const {
  out->assign(text.data(), text.size());
  if (IsAscii(text)) return absl::OkStatus();  // ASCII is fixed by every normal form
  for (int options : normalizations_) {
    utf8proc_uint8_t* result = nullptr;
    const utf8proc_ssize_t len =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(out->data()),
                     static_cast<utf8proc_ssize_t>(out->size()), &result,
                     static_cast<utf8proc_option_t>(options));
    if (len < 0) {
      std::free(result);
      return absl::InvalidArgumentError(
          absl::StrCat("Unicode normalization failed: ", utf8proc_errmsg(len)));
    }
    out->assign(reinterpret_cast<const char*>(result), static_cast<size_t>(len));
    std::free(result);
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::PreTokenizeAndEncode(size_t step, absl::string_view piece,
                                                EncodeState* state) const {
  if (piece.empty()) return absl::OkStatus();  // HF drops empty splits
  if (step == pre_tokenizer_.size()) {
    EncodeWord(piece, state);
    return absl::OkStatus();
  }
  const PreTokenizerStep& pre = pre_tokenizer_[step];
  if (pre.is_byte_level) {
    if (pre.add_prefix_space && piece[0] != ' ') {
      state->arena.push_back(absl::StrCat(" ", piece));
      piece = state->arena.back();
    }
    if (pre.regex == nullptr) return PreTokenizeAndEncode(step + 1, piece, state);
  }
  auto& matches = state->matches[step];
  auto& pieces = state->pieces[step];
  matches.clear();
  pieces.clear();
  if (pre.regex != nullptr) {
    TESSEL_RETURN_IF_ERROR(pre.regex->FindAll(piece, &matches));
  } else if (!pre.literal.empty()) {
    size_t at = 0;
    while ((at = piece.find(pre.literal, at)) != absl::string_view::npos) {
      matches.emplace_back(static_cast<uint32_t>(at),
                           static_cast<uint32_t>(at + pre.literal.size()));
      at += pre.literal.size();
    }
  }
  if (matches.empty() && !pre.invert && pre.behavior != SplitBehavior::kRemoved) {
    // Fast path of the common case below: nothing to split.
    return PreTokenizeAndEncode(step + 1, piece, state);
  }
  // HF Pattern::find_matches: the whole piece as (range, is_match), then invert.
  struct Part {
    uint32_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  parts.reserve(matches.size() * 2 + 1);
  uint32_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (prev != begin) parts.push_back({prev, begin, false});
    parts.push_back({begin, end, true});
    prev = end;
  }
  if (prev != piece.size()) parts.push_back({prev, static_cast<uint32_t>(piece.size()), false});
  if (pre.invert) {
    for (Part& part : parts) part.is_match = !part.is_match;
  }
  // HF SplitDelimiterBehavior, as in NormalizedString::split.
  switch (pre.behavior) {
    case SplitBehavior::kIsolated:
      for (const Part& part : parts) pieces.emplace_back(part.begin, part.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Part& part : parts) {
        if (!part.is_match) pieces.emplace_back(part.begin, part.end);
      }
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Part& part : parts) {
        if (part.is_match && previous_match && !pieces.empty()) {
          pieces.back().second = part.end;
        } else {
          pieces.emplace_back(part.begin, part.end);
        }
        previous_match = part.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Part& part : parts) {
        if (part.is_match && !previous_match && !pieces.empty()) {
          pieces.back().second = part.end;
        } else {
          pieces.emplace_back(part.begin, part.end);
        }
        previous_match = part.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      std::vector<std::pair<uint32_t, uint32_t>> reversed;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !reversed.empty()) {
          reversed.back().first = it->begin;
        } else {
          reversed.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      pieces.assign(reversed.rbegin(), reversed.rend());
      break;
    }
  }
  // Recursion may reuse deeper scratch only, so iterating `pieces` by index is safe.
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto [begin, end] = pieces[i];
    TESSEL_RETURN_IF_ERROR(PreTokenizeAndEncode(step + 1, piece.substr(begin, end - begin), state));
  }
  return absl::OkStatus();
}

void BpeTokenizer::EncodeWord(absl::string_view word, EncodeState* state) const {
  std::vector<int32_t>& ids = *state->ids;
  if (word.size() == 1) {
    const int32_t id = byte_ids_[static_cast<unsigned char>(word[0])];
    if (id >= 0) {
      ids.push_back(id);
    } else if (unk_id_ >= 0) {
      ids.push_back(unk_id_);
    }
    return;
  }
  if (ignore_merges_) {
    const auto it = model_by_bytes_.find(word);
    if (it != model_by_bytes_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), cache_ids_.begin() + it->second.first,
                 cache_ids_.begin() + it->second.first + it->second.second);
      return;
    }
  }
  state->word_ids.clear();
  MergeWord(word, &state->word_ids);
  ids.insert(ids.end(), state->word_ids.begin(), state->word_ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheMaxEntries) {
      const auto offset = static_cast<uint32_t>(cache_ids_.size());
      if (cache_.try_emplace(word, offset, static_cast<uint32_t>(state->word_ids.size())).second) {
        cache_ids_.insert(cache_ids_.end(), state->word_ids.begin(), state->word_ids.end());
      }
    }
  }
}

// HF word.rs Word::merge_all: a min-heap of (rank, position) over a linked list of symbols;
// stale heap entries are skipped when the pair at their position no longer merges into
// their new id.
void BpeTokenizer::MergeWord(absl::string_view word, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (unsigned char b : word) {
    int32_t id = byte_ids_[b];
    if (id < 0) {
      if (unk_id_ < 0) continue;  // no unk token: the char is dropped, as HF does
      if (fuse_unk_ && !symbols.empty() && symbols.back().id == unk_id_) continue;
      id = unk_id_;
    }
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, false});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  const auto find_merge = [this](int32_t left, int32_t right) -> const MergeInfo* {
    const auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
                                 static_cast<uint32_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  };
  const auto greater = std::greater<Candidate>();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeInfo* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      heap.push_back({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), greater);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    const MergeInfo* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;  // stale
    left.id = top.new_id;
    left.next = right.next;
    symbols[right_pos].removed = true;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* m = find_merge(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), greater);
      }
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = find_merge(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), greater);
      }
    }
  }
  for (const Symbol& symbol : symbols) {
    if (!symbol.removed) out->push_back(symbol.id);
  }
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(absl::string_view text,
                                                          bool add_special_tokens) const {
  const size_t invalid = FindInvalidUtf8(text);
  if (invalid != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8: invalid byte 0x",
                     absl::Hex(static_cast<unsigned char>(text[invalid]), absl::kZeroPad2),
                     " at byte offset ", invalid));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = prefix_ids_;
  EncodeState state;
  state.ids = &ids;
  state.matches.resize(pre_tokenizer_.size());
  state.pieces.resize(pre_tokenizer_.size());
  std::vector<Segment> raw_segments, normalized_segments;
  std::string normalized;
  SplitAddedTokens(text, raw_matcher_, &raw_segments);
  for (const Segment& segment : raw_segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    absl::string_view piece = text.substr(segment.begin, segment.end - segment.begin);
    if (!normalizations_.empty()) {
      TESSEL_RETURN_IF_ERROR(Normalize(piece, &normalized));
      piece = normalized;
    }
    if (normalized_matcher_.empty()) {
      TESSEL_RETURN_IF_ERROR(PreTokenizeAndEncode(0, piece, &state));
      continue;
    }
    SplitAddedTokens(piece, normalized_matcher_, &normalized_segments);
    for (const Segment& inner : normalized_segments) {
      if (inner.token_id >= 0) {
        ids.push_back(inner.token_id);
      } else {
        TESSEL_RETURN_IF_ERROR(
            PreTokenizeAndEncode(0, piece.substr(inner.begin, inner.end - inner.begin), &state));
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids,
                                                 bool skip_special_tokens) const {
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || !has_token_[id]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " at index ", i, " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special_tokens && is_special_[id]) continue;
    bytes += decoded_bytes_[id];
  }
  return Utf8Lossy(bytes);
}

absl::StatusOr<std::string> BpeTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !has_token_[id]) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is not in the vocabulary (size ", vocab_size(), ")"));
  }
  if (is_special_[id]) return token_strings_[id];
  return decoded_bytes_[id];
}

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  if (const auto it = added_by_content_.find(token); it != added_by_content_.end()) {
    return it->second;
  }
  if (const auto it = model_by_string_.find(token); it != model_by_string_.end()) {
    return it->second;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------

std::string Brief(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 80) text = absl::StrCat(text.substr(0, 77), "...");
  return text;
}

absl::Status Unsupported(absl::string_view path, const Json& found, absl::string_view supported) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": found ", Brief(found), "; supported: ", supported));
}

absl::Status WrongType(absl::string_view path, const Json& found, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": expected ", expected, ", found ", Brief(found)));
}

// Optional boolean member; absent or null gives `fallback`.
absl::StatusOr<bool> GetBool(const Json& object, const char* key, absl::string_view path,
                             bool fallback) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return WrongType(absl::StrCat(path, ".", key), *it, "a boolean");
  return it->get<bool>();
}

absl::StatusOr<std::string> GetString(const Json& object, const char* key, absl::string_view path) {
  const auto it = object.find(key);
  if (it == object.end()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, ": missing"));
  }
  if (!it->is_string()) return WrongType(absl::StrCat(path, ".", key), *it, "a string");
  return it->get<std::string>();
}

absl::StatusOr<int32_t> ToId(const Json& value, absl::string_view path) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() > kMaxTokenId) {
    return WrongType(path, value, absl::StrCat("a token id in [0, ", kMaxTokenId, "]"));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

class TokenizerJsonLoader {
 public:
  absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const Json& root);

 private:
  absl::Status LoadModel(const Json& model);
  absl::Status LoadAddedTokens(const Json& added);
  absl::Status LoadNormalizer(const Json& normalizer, const std::string& path);
  absl::Status LoadPreTokenizer(const Json& pre, const std::string& path);
  absl::Status LoadPostProcessor(const Json& post, const std::string& path);
  absl::Status LoadDecoder(const Json& decoder);
  absl::Status SetToken(int32_t id, const std::string& token, absl::string_view path);

  std::unique_ptr<BpeTokenizer> tok_ = std::make_unique<BpeTokenizer>();
};

absl::Status TokenizerJsonLoader::SetToken(int32_t id, const std::string& token,
                                           absl::string_view path) {
  if (static_cast<size_t>(id) >= tok_->token_strings_.size()) {
    tok_->token_strings_.resize(id + 1);
    tok_->has_token_.resize(id + 1, 0);
  }
  tok_->token_strings_[id] = token;
  tok_->has_token_[id] = 1;
  (void)path;
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadModel(const Json& model) {
  if (!model.is_object()) return WrongType("model", model, "an object");
  const auto type = model.find("type");
  if (type != model.end() && !(type->is_string() && type->get<std::string>() == "BPE")) {
    return Unsupported("model.type", *type, "\"BPE\"");
  }
  TESSEL_ASSIGN_OR_RETURN(tok_->ignore_merges_, GetBool(model, "ignore_merges", "model", false));
  TESSEL_ASSIGN_OR_RETURN(tok_->fuse_unk_, GetBool(model, "fuse_unk", "model", false));
  TESSEL_ASSIGN_OR_RETURN(const bool byte_fallback,
                          GetBool(model, "byte_fallback", "model", false));
  if (byte_fallback) return Unsupported("model.byte_fallback", true, "false");
  if (const auto it = model.find("dropout");
      it != model.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0.0)) {
    return Unsupported("model.dropout", *it, "null");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return Unsupported(absl::StrCat("model.", key), *it, "null or \"\"");
    }
  }
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return WrongType("model.vocab", vocab == model.end() ? Json() : *vocab,
                     "an object of token -> id");
  }
  for (const auto& [token, id_value] : vocab->items()) {
    const std::string path = absl::StrCat(
        "model.vocab[", Json(token).dump(-1, ' ', false, Json::error_handler_t::replace), "]");
    TESSEL_ASSIGN_OR_RETURN(const int32_t id, ToId(id_value, path));
    if (static_cast<size_t>(id) < tok_->has_token_.size() && tok_->has_token_[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": id ", id, " is also given to ", Brief(tok_->token_strings_[id])));
    }
    TESSEL_RETURN_IF_ERROR(SetToken(id, token, path));
    tok_->model_by_string_.emplace(token, id);
    if (std::optional<std::string> bytes = ByteLevelToBytes(token)) {
      tok_->model_by_bytes_.emplace(*std::move(bytes), id);
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string one_char;
    AppendUtf8(ByteLevel().byte_to_char[b], &one_char);
    const auto it = tok_->model_by_string_.find(one_char);
    tok_->byte_ids_[b] = it == tok_->model_by_string_.end() ? -1 : it->second;
  }
  if (const auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) return WrongType("model.unk_token", *it, "a string or null");
    const auto found = tok_->model_by_string_.find(it->get<std::string>());
    if (found == tok_->model_by_string_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.unk_token: ", Brief(*it), " is not in model.vocab"));
    }
    tok_->unk_id_ = found->second;
  }
  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return WrongType("model.merges", merges == model.end() ? Json() : *merges,
                     "an array of \"a b\" strings or [a, b] pairs");
  }
  tok_->merges_.reserve(merges->size());
  int32_t rank = 0;
  for (const Json& merge : *merges) {
    const std::string path = absl::StrCat("model.merges[", rank, "]");
    std::string left, right;
    if (merge.is_string()) {
      const std::string& text = merge.get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos) {
        return WrongType(path, merge, "\"a b\" (two tokens separated by a space)");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return WrongType(path, merge, "\"a b\" or [\"a\", \"b\"]");
    }
    const auto left_it = tok_->model_by_string_.find(left);
    const auto right_it = tok_->model_by_string_.find(right);
    const auto merged_it = tok_->model_by_string_.find(left + right);
    for (const auto& [it, what] : {std::pair{left_it, &left}, std::pair{right_it, &right}}) {
      if (it == tok_->model_by_string_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": token ", Brief(*what), " is not in model.vocab"));
      }
    }
    if (merged_it == tok_->model_by_string_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": merged token ", Brief(left + right), " is not in model.vocab"));
    }
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left_it->second)) << 32) |
                         static_cast<uint32_t>(right_it->second);
    tok_->merges_[key] = MergeInfo{rank, merged_it->second};  // a later duplicate wins
    ++rank;
  }
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadAddedTokens(const Json& added) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) return WrongType("added_tokens", added, "an array");
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    const Json& entry = added[i];
    if (!entry.is_object()) return WrongType(path, entry, "an object");
    AddedToken token;
    const auto id = entry.find("id");
    if (id == entry.end()) return absl::InvalidArgumentError(absl::StrCat(path, ".id: missing"));
    TESSEL_ASSIGN_OR_RETURN(token.id, ToId(*id, absl::StrCat(path, ".id")));
    TESSEL_ASSIGN_OR_RETURN(token.content, GetString(entry, "content", path));
    TESSEL_ASSIGN_OR_RETURN(token.special, GetBool(entry, "special", path, false));
    TESSEL_ASSIGN_OR_RETURN(token.single_word, GetBool(entry, "single_word", path, false));
    TESSEL_ASSIGN_OR_RETURN(token.lstrip, GetBool(entry, "lstrip", path, false));
    TESSEL_ASSIGN_OR_RETURN(token.rstrip, GetBool(entry, "rstrip", path, false));
    TESSEL_ASSIGN_OR_RETURN(token.normalized, GetBool(entry, "normalized", path, !token.special));
    tok_->added_tokens_.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadNormalizer(const Json& normalizer, const std::string& path) {
  if (normalizer.is_null()) return absl::OkStatus();
  if (!normalizer.is_object()) return WrongType(path, normalizer, "an object or null");
  constexpr char kSupported[] = "\"NFC\", \"NFD\", \"NFKC\", \"NFKD\", \"Sequence\"";
  const auto type = normalizer.find("type");
  if (type == normalizer.end() || !type->is_string()) {
    return Unsupported(absl::StrCat(path, ".type"), type == normalizer.end() ? Json() : *type,
                       kSupported);
  }
  const std::string& name = type->get_ref<const std::string&>();
  if (name == "Sequence") {
    const auto list = normalizer.find("normalizers");
    if (list == normalizer.end() || !list->is_array()) {
      return WrongType(absl::StrCat(path, ".normalizers"),
                       list == normalizer.end() ? Json() : *list, "an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TESSEL_RETURN_IF_ERROR(
          LoadNormalizer((*list)[i], absl::StrCat(path, ".normalizers[", i, "]")));
    }
    return absl::OkStatus();
  }
  int options = UTF8PROC_STABLE;
  if (name == "NFC") {
    options |= UTF8PROC_COMPOSE;
  } else if (name == "NFD") {
    options |= UTF8PROC_DECOMPOSE;
  } else if (name == "NFKC") {
    options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  } else if (name == "NFKD") {
    options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  } else {
    return Unsupported(absl::StrCat(path, ".type"), *type, kSupported);
  }
  tok_->normalizations_.push_back(options);
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadPreTokenizer(const Json& pre, const std::string& path) {
  constexpr char kSupported[] = "\"Split\", \"ByteLevel\", \"Sequence\" of those";
  if (!pre.is_object()) return WrongType(path, pre, "an object");
  const auto type = pre.find("type");
  if (type == pre.end() || !type->is_string()) {
    return Unsupported(absl::StrCat(path, ".type"), type == pre.end() ? Json() : *type, kSupported);
  }
  const std::string& name = type->get_ref<const std::string&>();
  if (name == "Sequence") {
    const auto list = pre.find("pretokenizers");
    if (list == pre.end() || !list->is_array()) {
      return WrongType(absl::StrCat(path, ".pretokenizers"), list == pre.end() ? Json() : *list,
                       "an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TESSEL_RETURN_IF_ERROR(
          LoadPreTokenizer((*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (!tok_->pre_tokenizer_.empty() && tok_->pre_tokenizer_.back().is_byte_level) {
    // After ByteLevel the text is in mapped chars, which this encoder never materializes.
    return Unsupported(path, pre, "ByteLevel as the last pre-tokenizer");
  }
  PreTokenizerStep step;
  if (name == "ByteLevel") {
    step.is_byte_level = true;
    TESSEL_ASSIGN_OR_RETURN(step.add_prefix_space, GetBool(pre, "add_prefix_space", path, true));
    TESSEL_ASSIGN_OR_RETURN(const bool use_regex, GetBool(pre, "use_regex", path, true));
    if (use_regex) {
      TESSEL_ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern));
    }
  } else if (name == "Split") {
    const auto pattern = pre.find("pattern");
    const std::string pattern_path = absl::StrCat(path, ".pattern");
    if (pattern == pre.end() || !pattern->is_object() || pattern->size() != 1) {
      return WrongType(pattern_path, pattern == pre.end() ? Json() : *pattern,
                       "{\"Regex\": ...} or {\"String\": ...}");
    }
    if (const auto regex = pattern->find("Regex"); regex != pattern->end()) {
      if (!regex->is_string()) {
        return WrongType(absl::StrCat(pattern_path, ".Regex"), *regex, "a string");
      }
      auto compiled = Regex::Compile(regex->get<std::string>());
      if (!compiled.ok()) return Annotate(compiled.status(), pattern_path);
      step.regex = *std::move(compiled);
    } else if (const auto literal = pattern->find("String"); literal != pattern->end()) {
      if (!literal->is_string()) {
        return WrongType(absl::StrCat(pattern_path, ".String"), *literal, "a string");
      }
      step.literal = literal->get<std::string>();
    } else {
      return WrongType(pattern_path, *pattern, "{\"Regex\": ...} or {\"String\": ...}");
    }
    TESSEL_ASSIGN_OR_RETURN(const std::string behavior, GetString(pre, "behavior", path));
    if (behavior == "Removed") {
      step.behavior = SplitBehavior::kRemoved;
    } else if (behavior == "Isolated") {
      step.behavior = SplitBehavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = SplitBehavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step.behavior = SplitBehavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      step.behavior = SplitBehavior::kContiguous;
    } else {
      return Unsupported(absl::StrCat(path, ".behavior"), behavior,
                         "\"Removed\", \"Isolated\", \"MergedWithPrevious\", "
                         "\"MergedWithNext\", \"Contiguous\"");
    }
    TESSEL_ASSIGN_OR_RETURN(step.invert, GetBool(pre, "invert", path, false));
  } else {
    return Unsupported(absl::StrCat(path, ".type"), *type, kSupported);
  }
  tok_->pre_tokenizer_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadPostProcessor(const Json& post, const std::string& path) {
  constexpr char kSupported[] =
      "\"TemplateProcessing\", \"ByteLevel\", \"RobertaProcessing\", \"BertProcessing\", "
      "\"Sequence\" of those";
  if (post.is_null()) return absl::OkStatus();
  if (!post.is_object()) return WrongType(path, post, "an object or null");
  const auto type = post.find("type");
  if (type == post.end() || !type->is_string()) {
    return Unsupported(absl::StrCat(path, ".type"), type == post.end() ? Json() : *type,
                       kSupported);
  }
  const std::string& name = type->get_ref<const std::string&>();
  std::vector<int32_t> prefix, suffix;
  if (name == "Sequence") {
    const auto list = post.find("processors");
    if (list == post.end() || !list->is_array()) {
      return WrongType(absl::StrCat(path, ".processors"), list == post.end() ? Json() : *list,
                       "an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TESSEL_RETURN_IF_ERROR(
          LoadPostProcessor((*list)[i], absl::StrCat(path, ".processors[", i, "]")));
    }
    return absl::OkStatus();
  } else if (name == "ByteLevel") {
    return absl::OkStatus();  // only moves offsets
  } else if (name == "RobertaProcessing" || name == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const auto it = post.find(key);
      const std::string key_path = absl::StrCat(path, ".", key);
      if (it == post.end() || !it->is_array() || it->size() != 2) {
        return WrongType(key_path, it == post.end() ? Json() : *it, "[token, id]");
      }
      TESSEL_ASSIGN_OR_RETURN(const int32_t id, ToId((*it)[1], absl::StrCat(key_path, "[1]")));
      (std::string(key) == "cls" ? prefix : suffix).push_back(id);
    }
  } else if (name == "TemplateProcessing") {
    const auto single = post.find("single");
    const std::string single_path = absl::StrCat(path, ".single");
    if (single == post.end() || !single->is_array()) {
      return WrongType(single_path, single == post.end() ? Json() : *single, "an array");
    }
    const auto specials = post.find("special_tokens");
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const Json& item = (*single)[i];
      const std::string item_path = absl::StrCat(single_path, "[", i, "]");
      if (item.is_object() && item.contains("Sequence")) {
        const Json& sequence = item["Sequence"];
        if (!sequence.is_object() || !sequence.contains("id") || sequence["id"] != "A" ||
            seen_sequence) {
          return Unsupported(item_path, item, "one {\"Sequence\": {\"id\": \"A\"}}");
        }
        seen_sequence = true;
      } else if (item.is_object() && item.contains("SpecialToken")) {
        const Json& special = item["SpecialToken"];
        if (!special.is_object() || !special.contains("id") || !special["id"].is_string()) {
          return WrongType(item_path, item, "{\"SpecialToken\": {\"id\": name}}");
        }
        const std::string& special_name = special["id"].get_ref<const std::string&>();
        if (specials == post.end() || !specials->is_object() || !specials->contains(special_name)) {
          return absl::InvalidArgumentError(absl::StrCat(item_path, ": special token ",
                                                         Brief(special_name), " is not in ", path,
                                                         ".special_tokens"));
        }
        const Json& entry = (*specials)[special_name];
        const std::string ids_path =
            absl::StrCat(path, ".special_tokens[", Brief(special_name), "].ids");
        if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array()) {
          return WrongType(ids_path, entry, "an object with an \"ids\" array");
        }
        for (const Json& id_value : entry["ids"]) {
          TESSEL_ASSIGN_OR_RETURN(const int32_t id, ToId(id_value, ids_path));
          (seen_sequence ? suffix : prefix).push_back(id);
        }
      } else {
        return Unsupported(item_path, item, "{\"SpecialToken\": ...}, {\"Sequence\": ...}");
      }
    }
    if (!seen_sequence) {
      return absl::InvalidArgumentError(absl::StrCat(single_path, ": has no $A sequence"));
    }
  } else {
    return Unsupported(absl::StrCat(path, ".type"), *type, kSupported);
  }
  // A later processor wraps the output of the earlier ones.
  tok_->prefix_ids_.insert(tok_->prefix_ids_.begin(), prefix.begin(), prefix.end());
  tok_->suffix_ids_.insert(tok_->suffix_ids_.end(), suffix.begin(), suffix.end());
  return absl::OkStatus();
}

absl::Status TokenizerJsonLoader::LoadDecoder(const Json& decoder) {
  if (!decoder.is_object() || !decoder.contains("type") || decoder["type"] != "ByteLevel") {
    return Unsupported("decoder", decoder, "{\"type\": \"ByteLevel\"}");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerJsonLoader::Load(const Json& root) {
  if (!root.is_object()) return WrongType("the top level", root, "an object");
  for (const char* key : {"truncation", "padding"}) {
    const auto it = root.find(key);
    if (it != root.end() && !it->is_null()) return Unsupported(key, *it, "null");
  }
  const auto member = [&root](const char* key) {
    const auto it = root.find(key);
    return it == root.end() ? Json() : *it;
  };
  if (!root.contains("model")) return absl::InvalidArgumentError("model: missing");
  TESSEL_RETURN_IF_ERROR(LoadModel(root["model"]));
  TESSEL_RETURN_IF_ERROR(LoadNormalizer(member("normalizer"), "normalizer"));
  const Json pre = member("pre_tokenizer");
  if (pre.is_null()) {
    return Unsupported("pre_tokenizer", pre, "a pre-tokenizer ending in ByteLevel");
  }
  TESSEL_RETURN_IF_ERROR(LoadPreTokenizer(pre, "pre_tokenizer"));
  if (tok_->pre_tokenizer_.empty() || !tok_->pre_tokenizer_.back().is_byte_level) {
    return Unsupported("pre_tokenizer", pre,
                       "a pre-tokenizer ending in ByteLevel (byte-level BPE only)");
  }
  TESSEL_RETURN_IF_ERROR(LoadPostProcessor(member("post_processor"), "post_processor"));
  TESSEL_RETURN_IF_ERROR(LoadDecoder(member("decoder")));
  TESSEL_RETURN_IF_ERROR(LoadAddedTokens(member("added_tokens")));

  BpeTokenizer& tok = *tok_;
  for (size_t i = 0; i < tok.added_tokens_.size(); ++i) {
    const AddedToken& token = tok.added_tokens_[i];
    TESSEL_RETURN_IF_ERROR(SetToken(token.id, token.content, "added_tokens"));
    tok.added_by_content_.emplace(token.content, token.id);
    if (!token.normalized) {
      tok.raw_matcher_.Add(token.content, static_cast<int>(i));
    } else {
      std::string normalized_content;
      TESSEL_RETURN_IF_ERROR(tok.Normalize(token.content, &normalized_content));
      tok.normalized_matcher_.Add(normalized_content, static_cast<int>(i));
    }
  }
  const size_t size = tok.token_strings_.size();
  tok.is_special_.assign(size, 0);
  for (const AddedToken& token : tok.added_tokens_) {
    if (token.special) tok.is_special_[token.id] = 1;
  }
  for (int32_t id : tok.prefix_ids_) {
    if (static_cast<size_t>(id) >= size || !tok.has_token_[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("post_processor: token id ", id, " is not in the vocabulary"));
    }
  }
  for (int32_t id : tok.suffix_ids_) {
    if (static_cast<size_t>(id) >= size || !tok.has_token_[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("post_processor: token id ", id, " is not in the vocabulary"));
    }
  }
  // HF ByteLevel decoder: a token maps char by char to bytes, or stays as its UTF-8 text
  // when some char is outside the byte mapping.
  tok.decoded_bytes_.resize(size);
  for (size_t id = 0; id < size; ++id) {
    std::optional<std::string> bytes = ByteLevelToBytes(tok.token_strings_[id]);
    tok.decoded_bytes_[id] = bytes ? *std::move(bytes) : tok.token_strings_[id];
  }
  return std::unique_ptr<Tokenizer>(std::move(tok_));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromTokenizerJsonString(
    absl::string_view json, std::string name) {
  const auto annotate = [&name](const absl::Status& status) {
    return Annotate(status, absl::StrCat("tokenizer.json '", name, "'"));
  };
  try {
    Json root;
    try {
      root = Json::parse(json.begin(), json.end());
    } catch (const Json::exception& e) {
      return annotate(absl::InvalidArgumentError(
          absl::StrCat("not valid JSON (truncated or corrupt file?): ", e.what())));
    }
    TokenizerJsonLoader loader;
    auto tokenizer = loader.Load(root);
    if (!tokenizer.ok()) return annotate(tokenizer.status());
    return tokenizer;
  } catch (const std::bad_alloc&) {
    return annotate(absl::ResourceExhaustedError("out of memory while loading"));
  } catch (const std::exception& e) {
    return annotate(absl::InvalidArgumentError(absl::StrCat("malformed: ", e.what())));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot open tokenizer.json '", path, "'"));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read tokenizer.json '", path, "'"));
  }
  return LoadTokenizerFromTokenizerJsonString(contents.str(), path);
}

}  // namespace tessel
