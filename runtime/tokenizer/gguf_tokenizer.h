// Tokenizers from the vocabulary embedded in GGUF files.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// tokenizer.ggml.model:
//  "llama"  SentencePiece-style: tokens, scores, token_type. Encoded with
//           llama.cpp's llm_tokenizer_spm (bigram merges by descending piece
//           score, byte fallback for what no piece covers); text gets a space
//           prefix at the start and after each special token when
//           tokenizer.ggml.add_space_prefix (default true). Decoded as HF's
//           Llama decoder does (see sentencepiece_tokenizer.h).
//  "gpt2"   byte-level BPE: tokens + tokenizer.ggml.merges. The equivalent
//           tokenizer.json is generated and loaded by the BPE tokenizer, with
//           the Split regex of tokenizer.ggml.pre: "llama-bpe"/"llama3"
//           (Llama 3), "qwen2", "gpt-2"/"default".
// Both read bos/eos ids and add_bos/add_eos from
// tokenizer.ggml.{bos,eos}_token_id and tokenizer.ggml.add_{bos,eos}_token.
// Control tokens (token_type 3) and, for "llama", the unknown token are
// special; in text they are matched and become their ids. Other models
// ("bert", "t5", "rwkv") and pre-tokenizers are Unimplemented errors naming
// what the file has and what is supported.
#ifndef TESSEL_RUNTIME_TOKENIZER_GGUF_TOKENIZER_H_
#define TESSEL_RUNTIME_TOKENIZER_GGUF_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/weights/gguf.h"

namespace tessel {

/// The tokenizer embedded in an opened GGUF file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(
    const GgufFile& file);

/// Opens `path` and loads its embedded tokenizer.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(
    const std::string& path);

/// The tokenizer.json text equivalent to a GGUF "gpt2" vocabulary (exposed for
/// tests and for tools that export the vocabulary).
absl::StatusOr<std::string> GgufBpeTokenizerJson(const GgufFile& file);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_GGUF_TOKENIZER_H_
