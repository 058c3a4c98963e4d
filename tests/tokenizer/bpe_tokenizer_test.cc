// Byte-level BPE tokenizer.json: id and decode parity with HF `tokenizers`, and
// errors. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Expected ids come from tests/tokenizer/make_test_tokenizers.py (HF tokenizers
// 0.23) and are stored in tests/tokenizer/data/cases.json.
#include "runtime/tokenizer/bpe_tokenizer.h"

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#ifndef TESSEL_TOKENIZER_TEST_DATA
#error "TESSEL_TOKENIZER_TEST_DATA must name tests/tokenizer/data"
#endif

namespace tessel {
namespace {

using Json = nlohmann::json;

std::string DataPath(const std::string &name) {
  return std::string(TESSEL_TOKENIZER_TEST_DATA) + "/" + name;
}

std::string ReadFile(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

const Json &Cases() {
  static const Json *const cases = new Json(Json::parse(ReadFile(DataPath("cases.json"))));
  return *cases;
}

std::unique_ptr<Tokenizer> Load(const std::string &kind) {
  auto tokenizer = LoadTokenizerJson(DataPath(kind + "_tokenizer.json"));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

bool IsValidUtf8(const std::string &text) {
  // Python's json writes lone surrogates as \ud800 escapes, which nlohmann
  // rejects, so every case string here is valid UTF-8; still guard the round
  // trip.
  size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    const size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (b >= 0x80 && b < 0xC2) return false;
    i += len;
  }
  return i == text.size();
}

class BpeParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BpeParityTest, EncodeMatchesHf) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const Json &cases = Cases()[GetParam()]["cases"];
  ASSERT_GE(cases.size(), 150u);
  int mismatches = 0;
  for (const Json &c : cases) {
    const std::string text = c["text"].get<std::string>();
    auto ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const std::vector<int32_t> expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(*ids, expected) << "text: " << Json(text).dump();
    auto plain = tokenizer->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ(*plain, c["ids_no_special"].get<std::vector<int32_t>>())
        << "text: " << Json(text).dump();
    mismatches += (*ids != expected);
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size() << " cases";
}

TEST_P(BpeParityTest, DecodeMatchesHf) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  for (const char *group : {"cases", "decode_cases"}) {
    for (const Json &c : Cases()[GetParam()][group]) {
      const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
      auto text = tokenizer->Decode(ids);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_EQ(*text, c["decode"].get<std::string>()) << "ids: " << c["ids"].dump();
      auto skipped = tokenizer->Decode(ids, /*skip_special_tokens=*/true);
      ASSERT_TRUE(skipped.ok()) << skipped.status();
      EXPECT_EQ(*skipped, c["decode_skip_special"].get<std::string>())
          << "ids: " << c["ids"].dump();
    }
  }
}

TEST_P(BpeParityTest, RoundTrip) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  for (const Json &c : Cases()[GetParam()]["cases"]) {
    const std::string text = c["text"].get<std::string>();
    // <tool> strips the whitespace around it (lstrip/rstrip), which HF does not
    // give back.
    if (!IsValidUtf8(text) || text.find("<tool>") != std::string::npos) continue;
    auto ids = tokenizer->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto decoded = tokenizer->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    // The Qwen2 normalizer is NFC, so round trips give the NFC form; compare
    // with HF's.
    EXPECT_EQ(*decoded, GetParam() == "qwen2" ? c["decode"].get<std::string>() : text)
        << Json(text).dump();
  }
}

TEST_P(BpeParityTest, TokenBytesConcatenateToDecode) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("héllo 👨‍👩‍👧 世界",
                               /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  std::string bytes;
  for (int32_t id : *ids) {
    auto piece = tokenizer->TokenBytes(id);
    ASSERT_TRUE(piece.ok()) << piece.status();
    bytes += *piece;
  }
  EXPECT_EQ(bytes, "héllo 👨‍👩‍👧 世界");
}

TEST_P(BpeParityTest, InvalidUtf8IsAnError) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  for (const std::string &bad : {std::string("ab\xff"), std::string("abc\xe6\x9d"),
                                 std::string("\xed\xa0\x80"), std::string("x\xc0\xafy")}) {
    auto ids = tokenizer->Encode(bad);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("not valid UTF-8"), std::string::npos);
  }
  auto ids = tokenizer->Encode("abc\xe6\x9d");
  EXPECT_NE(ids.status().message().find("byte offset 3"), std::string::npos) << ids.status();
}

TEST_P(BpeParityTest, UnknownIdIsAnError) {
  const std::unique_ptr<Tokenizer> tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const int32_t n = tokenizer->vocab_size();
  for (int32_t id : {-1, n, n + 1000}) {
    auto text = tokenizer->Decode(std::vector<int32_t>{1, id});
    ASSERT_FALSE(text.ok());
    EXPECT_NE(text.status().message().find("not in the vocabulary"), std::string::npos);
    EXPECT_FALSE(tokenizer->TokenBytes(id).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, BpeParityTest, ::testing::Values("llama3", "qwen2"));

TEST(BpeTokenizerTest, SpecialTokens) {
  const std::unique_ptr<Tokenizer> llama = Load("llama3");
  ASSERT_NE(llama, nullptr);
  const auto bos = llama->TokenToId("<|begin_of_text|>");
  const auto eot = llama->TokenToId("<|eot_id|>");
  ASSERT_TRUE(bos.has_value());
  ASSERT_TRUE(eot.has_value());
  EXPECT_TRUE(llama->IsSpecial(*bos));
  EXPECT_TRUE(llama->IsSpecial(*eot));
  EXPECT_FALSE(llama->IsSpecial(*llama->TokenToId("<tool>")));
  EXPECT_FALSE(llama->TokenToId("<|no_such_token|>").has_value());
  auto ids = llama->Encode("hi<|eot_id|>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), *bos);
  EXPECT_EQ(ids->back(), *eot);
  EXPECT_EQ(*llama->TokenBytes(*eot), "<|eot_id|>");
  EXPECT_EQ(*llama->Decode(*ids, /*skip_special_tokens=*/true), "hi");
  // Byte-level vocabulary strings resolve too ("Ġ" is the space byte).
  EXPECT_TRUE(llama->TokenToId("\xC4\xA0").has_value());
}

// --- errors on unsupported or broken files
// ---------------------------------------------

Json LlamaJson() { return Json::parse(ReadFile(DataPath("llama3_tokenizer.json"))); }

std::string LoadError(const Json &json) {
  auto tokenizer = LoadTokenizerFromTokenizerJsonString(json.dump(), "test.json");
  return tokenizer.ok() ? "(loaded)" : std::string(tokenizer.status().message());
}

struct UnsupportedCase {
  const char *name;
  void (*edit)(Json &);
  const char *message;
};

TEST(BpeTokenizerErrorTest, UnsupportedConstructsNameThePath) {
  const UnsupportedCase cases[] = {
      {"wordpiece", [](Json &j) { j["model"]["type"] = "WordPiece"; },
       "model.type: found \"WordPiece\"; supported: \"BPE\""},
      {"unigram", [](Json &j) { j["model"]["type"] = "Unigram"; },
       "model.type: found \"Unigram\"; supported: \"BPE\""},
      {"byte_fallback", [](Json &j) { j["model"]["byte_fallback"] = true; },
       "model.byte_fallback: found true; supported: false"},
      {"dropout", [](Json &j) { j["model"]["dropout"] = 0.1; },
       "model.dropout: found 0.1; supported: null"},
      {"subword_prefix", [](Json &j) { j["model"]["continuing_subword_prefix"] = "##"; },
       "model.continuing_subword_prefix: found \"##\"; supported: null or "
       "\"\""},
      {"normalizer",
       [](Json &j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       "normalizer.type: found \"Lowercase\"; supported: \"NFC\", \"NFD\", "
       "\"NFKC\", "
       "\"NFKD\", \"Sequence\""},
      {"normalizer_in_sequence",
       [](Json &j) {
         j["normalizer"] = {{"type", "Sequence"},
                            {"normalizers", {{{"type", "NFC"}}, {{"type", "Strip"}}}}};
       },
       "normalizer.normalizers[1].type: found \"Strip\""},
      {"pre_tokenizer",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Whitespace"}};
       },
       "pre_tokenizer.pretokenizers[0].type: found \"Whitespace\"; supported: "
       "\"Split\", "
       "\"ByteLevel\", \"Sequence\" of those"},
      {"no_byte_level",
       [](Json &j) { j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0]; },
       "pre_tokenizer: found {\"behavior\":\"Isolated\""},
      {"split_after_byte_level",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"].push_back(j["pre_tokenizer"]["pretokenizers"][0]);
       },
       "pre_tokenizer.pretokenizers[2]: found"},
      {"split_behavior",
       [](Json &j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
       "pre_tokenizer.pretokenizers[0].behavior: found \"Sideways\"; "
       "supported: \"Removed\""},
      {"bad_regex",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(a"}};
       },
       "pre_tokenizer.pretokenizers[0].pattern: cannot compile regex '(a'"},
      {"post_processor",
       [](Json &j) {
         j["post_processor"] = {{"type", "Fancy"}};
       },
       "post_processor.type: found \"Fancy\"; supported: "
       "\"TemplateProcessing\""},
      {"template_pair_only",
       [](Json &j) {
         j["post_processor"]["processors"][1]["single"][1] = {
             {"Sequence", {{"id", "B"}, {"type_id", 0}}}};
       },
       "post_processor.processors[1].single[1]: found"},
      {"decoder",
       [](Json &j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       "decoder: found {\"type\":\"WordPiece\"}; supported: {\"type\": "
       "\"ByteLevel\"}"},
      {"no_decoder", [](Json &j) { j.erase("decoder"); }, "decoder: found null; supported"},
      {"truncation",
       [](Json &j) {
         j["truncation"] = {{"max_length", 8}};
       },
       "truncation: found {\"max_length\":8}; supported: null"},
      {"padding",
       [](Json &j) {
         j["padding"] = {{"length", 8}};
       },
       "padding: found {\"length\":8}; supported: null"},
      {"merge_out_of_vocab",
       [](Json &j) {
         j["model"]["merges"].push_back({"\xE2\x82\xAC", "x"});
       },
       "is not in model.vocab"},
      {"bad_merge", [](Json &j) { j["model"]["merges"][0] = 7; },
       "model.merges[0]: expected \"a b\" or [\"a\", \"b\"], found 7"},
      {"bad_id", [](Json &j) { j["model"]["vocab"]["!"] = -4; },
       "model.vocab[\"!\"]: expected a token id"},
      {"duplicate_id", [](Json &j) { j["model"]["vocab"]["zzzzzz"] = 5; }, "is also given to"},
      {"added_token_content", [](Json &j) { j["added_tokens"][0].erase("content"); },
       "added_tokens[0].content: missing"},
      {"not_object",
       [](Json &j) {
         j = Json::array({1, 2});
       },
       "the top level: expected an object"},
  };
  for (const UnsupportedCase &c : cases) {
    Json json = LlamaJson();
    c.edit(json);
    const std::string message = LoadError(json);
    EXPECT_NE(message.find(c.message), std::string::npos)
        << c.name << ": got \"" << message << "\"";
    EXPECT_NE(message.find("tokenizer.json 'test.json'"), std::string::npos) << c.name;
  }
}

TEST(BpeTokenizerErrorTest, MalformedJson) {
  const std::string text = ReadFile(DataPath("llama3_tokenizer.json"));
  for (size_t length : {size_t{0}, size_t{1}, size_t{100}, text.size() / 2, text.size() - 2}) {
    auto tokenizer = LoadTokenizerFromTokenizerJsonString(text.substr(0, length), "truncated.json");
    ASSERT_FALSE(tokenizer.ok()) << length;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tokenizer.status().message().find("not valid JSON"), std::string::npos)
        << tokenizer.status();
  }
  auto missing = LoadTokenizerJson(DataPath("no_such_tokenizer.json"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(BpeTokenizerErrorTest, MergesInStringForm) {
  Json json = LlamaJson();
  for (Json &merge : json["model"]["merges"]) {
    merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
  }
  auto tokenizer = LoadTokenizerFromTokenizerJsonString(json.dump(), "strings.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::unique_ptr<Tokenizer> reference = Load("llama3");
  for (const Json &c : Cases()["llama3"]["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(*(*tokenizer)->Encode(text), *reference->Encode(text));
  }
}

}  // namespace
}  // namespace tessel
