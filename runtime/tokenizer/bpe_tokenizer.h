// Byte-level BPE tokenizers from HF tokenizer.json files (Llama 3, Qwen2/2.5), id for id.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Supported tokenizer.json constructs (anything else is an InvalidArgument error naming the
// JSON path, what was found and what is supported):
//   normalizer      null, NFC, NFD, NFKC, NFKD, or a Sequence of those
//   pre_tokenizer   Split (Regex or String pattern, every behavior, invert) and ByteLevel
//                   (add_prefix_space, use_regex), alone or in a Sequence ending in ByteLevel
//   model           BPE: vocab, merges ("a b" or ["a", "b"]), ignore_merges, unk_token,
//                   fuse_unk; byte_fallback false, no dropout, no subword prefix/suffix
//   added_tokens    special and not, with lstrip, rstrip, single_word and normalized
//   post_processor  null, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing,
//                   or a Sequence of those
//   decoder         ByteLevel
// Split regexes are Oniguruma syntax in the file (HF's engine); they run on PCRE2 (UTF, UCP,
// JIT) after translating the escapes whose meaning differs (\s, \S, \h, \H).
#ifndef TESSEL_RUNTIME_TOKENIZER_BPE_TOKENIZER_H_
#define TESSEL_RUNTIME_TOKENIZER_BPE_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tessel {

/// Loads a byte-level BPE tokenizer from a tokenizer.json file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);

/// Same, from the file's contents; `name` (e.g. the path) prefixes error messages.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromTokenizerJsonString(
    absl::string_view json, std::string name);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_BPE_TOKENIZER_H_
