// Tests of the SentencePiece tokenizer against HF LlamaTokenizer.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Data: tests/tokenizer/make_spm_test_data.py (a 512-piece Llama-2-style model
// and the ids and decodes HF `transformers.LlamaTokenizer` gives for it).
#include "runtime/tokenizer/sentencepiece_tokenizer.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace tessel {
namespace {

const std::string kData = TESSEL_TOKENIZER_TEST_DATA;

nlohmann::json ReadJson(const std::string &path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

std::unique_ptr<Tokenizer> LoadOrDie(const std::string &path) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(path);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

class SentencePieceTest : public ::testing::Test {
protected:
  void SetUp() override {
    expected_ = ReadJson(kData + "/spm_expected.json");
    ASSERT_FALSE(expected_.is_discarded());
    tokenizer_ = LoadOrDie(kData + "/spm_llama");
    ASSERT_NE(tokenizer_, nullptr);
  }
  nlohmann::json expected_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(SentencePieceTest, EncodesAsHuggingFace) {
  ASSERT_GE(expected_["cases"].size(), 50u);
  for (const nlohmann::json &item : expected_["cases"]) {
    const std::string text = item["text"];
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, item["ids"].get<std::vector<int32_t>>())
        << "text: '" << text << "'";
    absl::StatusOr<std::vector<int32_t>> plain =
        tokenizer_->Encode(text, false);
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ(*plain, item["ids_no_special"].get<std::vector<int32_t>>())
        << "text: '" << text << "'";
  }
}

TEST_F(SentencePieceTest, DecodesAsHuggingFace) {
  for (const nlohmann::json &item : expected_["cases"]) {
    const std::vector<int32_t> ids = item["ids"];
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, item["decoded"].get<std::string>());
    absl::StatusOr<std::string> skipped = tokenizer_->Decode(ids, true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, item["decoded_skip_special"].get<std::string>());
  }
  // Random ids: byte pieces that do not form UTF-8, specials anywhere.
  for (const nlohmann::json &item : expected_["random_decodes"]) {
    const std::vector<int32_t> ids = item["ids"];
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, item["decoded"].get<std::string>());
    absl::StatusOr<std::string> skipped = tokenizer_->Decode(ids, true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, item["decoded_skip_special"].get<std::string>());
  }
}

TEST_F(SentencePieceTest, SpecialTokensAndBytes) {
  EXPECT_EQ(tokenizer_->vocab_size(), expected_["vocab_size"].get<int32_t>());
  EXPECT_EQ(tokenizer_->TokenToId("<s>"), 1);
  EXPECT_EQ(tokenizer_->TokenToId("</s>"), 2);
  EXPECT_EQ(tokenizer_->TokenToId("no such piece"), std::nullopt);
  EXPECT_TRUE(tokenizer_->IsSpecial(0));
  EXPECT_TRUE(tokenizer_->IsSpecial(1));
  EXPECT_TRUE(tokenizer_->IsSpecial(2));
  EXPECT_FALSE(tokenizer_->IsSpecial(3));
  EXPECT_EQ(*tokenizer_->TokenBytes(1), "<s>");
  const std::optional<int32_t> byte_piece = tokenizer_->TokenToId("<0xE2>");
  ASSERT_TRUE(byte_piece.has_value());
  EXPECT_EQ(*tokenizer_->TokenBytes(*byte_piece), "\xE2");
  const std::optional<int32_t> space = tokenizer_->TokenToId("\xE2\x96\x81");
  ASSERT_TRUE(space.has_value());
  EXPECT_EQ(*tokenizer_->TokenBytes(*space), " ");
  EXPECT_FALSE(tokenizer_->TokenBytes(-1).ok());
  EXPECT_FALSE(tokenizer_->TokenBytes(tokenizer_->vocab_size()).ok());
  EXPECT_FALSE(tokenizer_->Decode(std::vector<int32_t>{3, 99999}).ok());
}

TEST_F(SentencePieceTest, InvalidUtf8NamesTheOffset) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode("ab\xC3(");
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ids.status().message().find("offset 2"), std::string::npos)
      << ids.status();
}

TEST_F(SentencePieceTest, AddBosFromTokenizerConfig) {
  std::unique_ptr<Tokenizer> no_bos =
      LoadOrDie(kData + "/spm_llama_nobos/tokenizer.model");
  ASSERT_NE(no_bos, nullptr);
  absl::StatusOr<std::vector<int32_t>> with = tokenizer_->Encode("Hello");
  absl::StatusOr<std::vector<int32_t>> without = no_bos->Encode("Hello");
  ASSERT_TRUE(with.ok() && without.ok());
  ASSERT_EQ(with->size(), without->size() + 1);
  EXPECT_EQ(with->front(), 1);
  EXPECT_EQ(std::vector<int32_t>(with->begin() + 1, with->end()), *without);
}

TEST(TokenizerLoaderTest, ErrorsNameWhatIsMissing) {
  char directory[] = "/tmp/tessel_tokenizer_test_XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  absl::StatusOr<std::unique_ptr<Tokenizer>> empty = LoadTokenizer(directory);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(empty.status().message().find("tokenizer.json"), std::string::npos);
  EXPECT_NE(empty.status().message().find("tokenizer.model"),
            std::string::npos);
  const std::string junk = std::string(directory) + "/junk.bin";
  std::ofstream(junk) << "junk";
  absl::StatusOr<std::unique_ptr<Tokenizer>> bad = LoadTokenizer(junk);
  EXPECT_FALSE(bad.ok());
  const std::string bad_model = std::string(directory) + "/tokenizer.model";
  std::ofstream(bad_model) << "\x0a\x05garbage";
  absl::StatusOr<std::unique_ptr<Tokenizer>> broken = LoadTokenizer(directory);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("tokenizer.model"),
            std::string::npos)
      << broken.status();
  std::remove(junk.c_str());
  std::remove(bad_model.c_str());
  rmdir(directory);
}

void CopyFile(const std::string &from, const std::string &to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
}

TEST(TokenizerLoaderTest, PicksByNameAndMagic) {
  char directory[] = "/tmp/tessel_tokenizer_test_XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string dir = directory;
  // A directory with both files: tokenizer.json wins.
  CopyFile(kData + "/spm_llama/tokenizer.model", dir + "/tokenizer.model");
  CopyFile(kData + "/llama3_tokenizer.json", dir + "/tokenizer.json");
  absl::StatusOr<std::unique_ptr<Tokenizer>> both = LoadTokenizer(dir);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_NE((*both)->vocab_size(), 512);
  EXPECT_TRUE((*both)->TokenToId("<|begin_of_text|>").has_value());
  // Files without telling names: by their first bytes.
  CopyFile(kData + "/spm_llama/tokenizer.model", dir + "/vocab.bin");
  absl::StatusOr<std::unique_ptr<Tokenizer>> spm =
      LoadTokenizer(dir + "/vocab.bin");
  ASSERT_TRUE(spm.ok()) << spm.status();
  EXPECT_EQ((*spm)->vocab_size(), 512);
  CopyFile(kData + "/gguf_qwen2_vocab.gguf", dir + "/model.bin");
  absl::StatusOr<std::unique_ptr<Tokenizer>> gguf =
      LoadTokenizer(dir + "/model.bin");
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_TRUE((*gguf)->TokenToId("<|im_end|>").has_value());
  CopyFile(kData + "/llama3_tokenizer.json", dir + "/vocab.txt");
  EXPECT_TRUE(LoadTokenizer(dir + "/vocab.txt").ok());
  for (const char *name : {"/tokenizer.model", "/tokenizer.json", "/vocab.bin",
                           "/model.bin", "/vocab.txt"}) {
    std::remove((dir + name).c_str());
  }
  rmdir(directory);
  EXPECT_EQ(LoadTokenizer("/nonexistent/tokenizer").status().code(),
            absl::StatusCode::kNotFound);
}

} // namespace
} // namespace tessel
