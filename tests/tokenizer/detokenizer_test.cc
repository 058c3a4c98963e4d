// Tests of StreamingDetokenizer against Decode.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/tokenizer/detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "runtime/tokenizer/sentencepiece_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace tessel {
namespace {

const std::string kData = TESSEL_TOKENIZER_TEST_DATA;

// Streams `ids`, checks every chunk is whole UTF-8 and that they add up to
// Decode.
void ExpectStreamsLikeDecode(const Tokenizer &tokenizer,
                             const std::vector<int32_t> &ids,
                             bool skip_special_tokens) {
  StreamingDetokenizer detokenizer(tokenizer, skip_special_tokens);
  std::string streamed;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> chunk = detokenizer.Feed(id);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    EXPECT_TRUE(SentencePieceStyleTokenizer::CheckUtf8(*chunk).ok())
        << "chunk splits a character after id " << id;
    streamed += *chunk;
  }
  absl::StatusOr<std::string> rest = detokenizer.Finish();
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_TRUE(SentencePieceStyleTokenizer::CheckUtf8(*rest).ok());
  streamed += *rest;
  absl::StatusOr<std::string> decoded =
      tokenizer.Decode(ids, skip_special_tokens);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(streamed, *decoded)
      << "skip_special_tokens=" << skip_special_tokens;
}

class DetokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DetokenizerTest, RandomSequencesStreamLikeDecode) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(kData + "/" + GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const int32_t vocab = (*tokenizer)->vocab_size();
  std::mt19937 rng(42);
  for (int round = 0; round < 1000; ++round) {
    std::vector<int32_t> ids(1 + rng() % 40);
    // Mostly low ids: the byte pieces and single bytes live there, so partial
    // characters and invalid runs are common.
    for (int32_t &id : ids)
      id = static_cast<int32_t>(rng() % (round % 2 ? 300 : vocab));
    ExpectStreamsLikeDecode(**tokenizer, ids, false);
    ExpectStreamsLikeDecode(**tokenizer, ids, true);
  }
}

TEST_P(DetokenizerTest, EncodedTextStreamsBack) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(kData + "/" + GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (const char *text :
       {"Hello world", " café 東京 😀🚀 done", "a\n\nb  c", "𝔘𝔫𝔦 x"}) {
    absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ExpectStreamsLikeDecode(**tokenizer, *ids, false);
    ExpectStreamsLikeDecode(**tokenizer, *ids, true);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, DetokenizerTest,
                         ::testing::Values("spm_llama", "gguf_llama_vocab.gguf",
                                           "gguf_gpt2_vocab.gguf",
                                           "gguf_qwen2_vocab.gguf",
                                           "llama3_tokenizer.json",
                                           "qwen2_tokenizer.json"),
                         [](const auto &info) {
                           std::string name = info.param;
                           for (char &c : name)
                             c = isalnum(c) ? c : '_';
                           return name;
                         });

TEST(DetokenizerTest, HoldsIncompleteCharacters) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(kData + "/spm_llama");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer &spm = **tokenizer;
  const int32_t e2 = *spm.TokenToId("<0xE2>");
  const int32_t x82 = *spm.TokenToId("<0x82>");
  const int32_t xac = *spm.TokenToId("<0xAC>");
  const std::vector<int32_t> hello = *spm.Encode("Hello", false);
  StreamingDetokenizer detokenizer(spm);
  std::string text;
  for (int32_t id : hello)
    text += *detokenizer.Feed(id);
  EXPECT_EQ(text, "Hello");
  EXPECT_EQ(*detokenizer.Feed(e2), "");
  EXPECT_EQ(*detokenizer.Feed(x82), "");
  EXPECT_EQ(*detokenizer.Feed(xac), ""); // the byte run may still grow
  const std::vector<int32_t> world = *spm.Encode(" x", false);
  std::string after;
  for (int32_t id : world)
    after += *detokenizer.Feed(id);
  EXPECT_EQ(after, "\xE2\x82\xAC x"); // "€ x"
  EXPECT_EQ(*detokenizer.Finish(), "");
  // A dangling incomplete character is flushed as U+FFFD per byte piece, as
  // Decode does.
  EXPECT_EQ(*detokenizer.Feed(e2), "");
  EXPECT_EQ(*detokenizer.Feed(x82), "");
  EXPECT_EQ(*detokenizer.Finish(), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_FALSE(detokenizer.Feed(spm.vocab_size()).ok());
}

} // namespace
} // namespace tessel
