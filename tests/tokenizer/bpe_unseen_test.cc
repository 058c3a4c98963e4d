// Exact id parity with HF `tokenizers` on a tokenizer.json pair the main tests
// never load. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// tests/tokenizer/data/unseen_{llama3,qwen2}_tokenizer.json were trained on
// other text with other vocabulary sizes and store merges in the "a b" form;
// unseen_cases.json holds HF's ids (tests/tokenizer/make_test_tokenizers.py).
// Only this target reads them.
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/bpe_tokenizer.h"

#ifndef TESSEL_TOKENIZER_TEST_DATA
#error "TESSEL_TOKENIZER_TEST_DATA must name tests/tokenizer/data"
#endif

namespace tessel {
namespace {

using Json = nlohmann::json;

std::string DataPath(const std::string &name) {
  return std::string(TESSEL_TOKENIZER_TEST_DATA) + "/" + name;
}

class BpeUnseenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BpeUnseenTest, EncodeAndDecodeMatchHf) {
  std::ifstream file(DataPath("unseen_cases.json"), std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  const Json all = Json::parse(contents.str());
  auto tokenizer = LoadTokenizerJson(DataPath("unseen_" + GetParam() + "_tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Json &cases = all[GetParam()]["cases"];
  ASSERT_GE(cases.size(), 150u);
  int mismatches = 0;
  for (const Json &c : cases) {
    const std::string text = c["text"].get<std::string>();
    auto ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(*ids, expected) << "text: " << Json(text).dump();
    mismatches += (*ids != expected);
    auto plain = (*tokenizer)->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, c["ids_no_special"].get<std::vector<int32_t>>());
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size();
  for (const char *group : {"cases", "decode_cases"}) {
    for (const Json &c : all[GetParam()][group]) {
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(*(*tokenizer)->Decode(ids), c["decode"].get<std::string>());
      EXPECT_EQ(*(*tokenizer)->Decode(ids, true), c["decode_skip_special"].get<std::string>());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Unseen, BpeUnseenTest, ::testing::Values("llama3", "qwen2"));

}  // namespace
}  // namespace tessel
