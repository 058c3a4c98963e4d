// Tests of the tokenizers built from GGUF vocabularies.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Data: tests/tokenizer/make_spm_test_data.py writes GGUF files
// (gguf.GGUFWriter) holding the SentencePiece test model's vocabulary and two
// byte-level BPE vocabularies trained with HF `tokenizers`, with the ids
// sentencepiece / `tokenizers` give.
#include "runtime/tokenizer/gguf_tokenizer.h"

#include <unistd.h>

#include <cstdint>
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

class GgufTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufTokenizerTest, EncodesAsReference) {
  const nlohmann::json expected = ReadJson(kData + "/gguf_expected.json");
  ASSERT_TRUE(expected.is_object());
  const std::string model = GetParam();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(kData + "/gguf_" + model + "_vocab.gguf");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_GE(expected[model].size(), 50u);
  for (const nlohmann::json &item : expected[model]) {
    const std::string text = item["text"];
    absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, item["ids"].get<std::vector<int32_t>>())
        << model << ": '" << text << "'";
    if (item.contains("decoded")) {
      absl::StatusOr<std::string> decoded = (*tokenizer)->Decode(*ids);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(*decoded, item["decoded"].get<std::string>());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GgufTokenizerTest,
                         ::testing::Values("llama", "gpt2", "qwen2"));

TEST(GgufTokenizerTest, LlamaVocabularyDecodesLikeTheSentencePieceModel) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> gguf =
      LoadTokenizer(kData + "/gguf_llama_vocab.gguf");
  absl::StatusOr<std::unique_ptr<Tokenizer>> spm =
      LoadTokenizer(kData + "/spm_llama");
  ASSERT_TRUE(gguf.ok() && spm.ok());
  ASSERT_EQ((*gguf)->vocab_size(), (*spm)->vocab_size());
  std::vector<int32_t> all;
  for (int32_t id = 0; id < (*gguf)->vocab_size(); ++id) {
    EXPECT_EQ(*(*gguf)->TokenBytes(id), *(*spm)->TokenBytes(id)) << id;
    EXPECT_EQ((*gguf)->IsSpecial(id), (*spm)->IsSpecial(id)) << id;
    all.push_back(id);
  }
  EXPECT_EQ(*(*gguf)->Decode(all), *(*spm)->Decode(all));
  EXPECT_EQ(*(*gguf)->Decode(all, true), *(*spm)->Decode(all, true));
  EXPECT_EQ((*gguf)->TokenToId("</s>"), 2);
}

TEST(GgufTokenizerTest, Gpt2VocabularySpecialTokens) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(kData + "/gguf_gpt2_vocab.gguf");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::optional<int32_t> eot = (*tokenizer)->TokenToId("<|eot_id|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_TRUE((*tokenizer)->IsSpecial(*eot));
  EXPECT_EQ(*(*tokenizer)->TokenBytes(*eot), "<|eot_id|>");
}

// The generated tokenizer.json uses the published Split regexes: those of the
// Llama 3 and Qwen2 tokenizer.json test files.
TEST(GgufTokenizerTest, GeneratedTokenizerJsonUsesThePublishedRegexes) {
  for (const auto &[gguf, json] :
       {std::pair{"gguf_gpt2_vocab.gguf", "llama3_tokenizer.json"},
        std::pair{"gguf_qwen2_vocab.gguf", "qwen2_tokenizer.json"}}) {
    absl::StatusOr<std::unique_ptr<GgufFile>> file =
        GgufFile::Open(kData + "/" + gguf);
    ASSERT_TRUE(file.ok()) << file.status();
    absl::StatusOr<std::string> generated = GgufBpeTokenizerJson(**file);
    ASSERT_TRUE(generated.ok()) << generated.status();
    const nlohmann::json ours =
        nlohmann::json::parse(*generated, nullptr, false);
    const nlohmann::json published = ReadJson(kData + "/" + json);
    ASSERT_FALSE(ours.is_discarded());
    ASSERT_FALSE(published.is_discarded());
    EXPECT_EQ(ours["pre_tokenizer"]["pretokenizers"][0]["pattern"],
              published["pre_tokenizer"]["pretokenizers"][0]["pattern"])
        << gguf;
    EXPECT_EQ(ours["model"]["ignore_merges"],
              published["model"].value("ignore_merges", false))
        << gguf;
  }
}

// A minimal GGUF v3 file with string and string-array metadata and no tensors.
class GgufBuilder {
public:
  void String(const std::string &key, const std::string &value) {
    Key(key, 8);
    Str(value);
    ++count_;
  }
  void Strings(const std::string &key, const std::vector<std::string> &values) {
    Key(key, 9);
    U32(8);
    U64(values.size());
    for (const std::string &value : values)
      Str(value);
    ++count_;
  }
  std::string Write() const {
    char path[] = "/tmp/tessel_gguf_tokenizer_XXXXXX";
    const int fd = mkstemp(path);
    close(fd);
    std::string header = "GGUF";
    AppendInt(&header, uint32_t{3});
    AppendInt(&header, uint64_t{0});
    AppendInt(&header, count_);
    std::string bytes = header + body_;
    bytes.append((32 - bytes.size() % 32) % 32, '\0');
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

private:
  template <typename T> static void AppendInt(std::string *out, T value) {
    out->append(reinterpret_cast<const char *>(&value), sizeof(value));
  }
  void U32(uint32_t value) { AppendInt(&body_, value); }
  void U64(uint64_t value) { AppendInt(&body_, value); }
  void Str(const std::string &text) {
    U64(text.size());
    body_ += text;
  }
  void Key(const std::string &key, uint32_t type) {
    Str(key);
    U32(type);
  }
  std::string body_;
  uint64_t count_ = 0;
};

TEST(GgufTokenizerTest, UnsupportedModelsAreClearErrors) {
  GgufBuilder bert;
  bert.String("general.architecture", "bert");
  bert.String("tokenizer.ggml.model", "bert");
  bert.Strings("tokenizer.ggml.tokens", {"[PAD]", "a"});
  const std::string bert_path = bert.Write();
  absl::StatusOr<std::unique_ptr<Tokenizer>> result = LoadTokenizer(bert_path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(result.status().message().find("\"bert\""), std::string::npos)
      << result.status();
  EXPECT_NE(result.status().message().find("supported: llama"),
            std::string::npos);

  GgufBuilder deepseek;
  deepseek.String("general.architecture", "llama");
  deepseek.String("tokenizer.ggml.model", "gpt2");
  deepseek.String("tokenizer.ggml.pre", "deepseek-llm");
  deepseek.Strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
  deepseek.Strings("tokenizer.ggml.merges", {"a b"});
  const std::string deepseek_path = deepseek.Write();
  result = LoadTokenizer(deepseek_path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(result.status().message().find("deepseek-llm"), std::string::npos)
      << result.status();

  GgufBuilder empty;
  empty.String("general.architecture", "llama");
  const std::string empty_path = empty.Write();
  result = LoadTokenizer(empty_path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(result.status().message().find("no embedded tokenizer"),
            std::string::npos);
  for (const std::string &path : {bert_path, deepseek_path, empty_path})
    std::remove(path.c_str());
}

} // namespace
} // namespace tessel
