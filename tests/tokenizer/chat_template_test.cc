// Tests of the built-in chat templates against HF apply_chat_template.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Data: tests/tokenizer/make_spm_test_data.py (tokenizer_config.json files with
// the published Llama 3, Llama 3.1, Qwen2 and Qwen2.5 templates, and what HF
// renders).
#include "runtime/tokenizer/chat_template.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "gtest/gtest.h"

namespace tessel {
namespace {

const std::string kData = TESSEL_TOKENIZER_TEST_DATA;

TEST(ChatTemplateTest, RendersAsHuggingFace) {
  std::ifstream file(kData + "/chat_expected.json");
  std::stringstream text;
  text << file.rdbuf();
  const nlohmann::json expected =
      nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_TRUE(expected.is_object());
  const std::map<std::string, std::string> formats = {
      {"chat_llama3", "llama3"},
      {"chat_llama31", "llama3.1"},
      {"chat_qwen2", "chatml"},
      {"chat_qwen25", "chatml"}};
  ASSERT_EQ(expected.size(), formats.size());
  for (const auto &[name, format] : formats) {
    absl::StatusOr<ChatTemplate> chat =
        DetectChatTemplate(kData + "/" + name + "/tokenizer_config.json");
    ASSERT_TRUE(chat.ok()) << chat.status();
    EXPECT_EQ(chat->name(), format) << name;
    for (const nlohmann::json &item : expected[name]) {
      std::vector<ChatMessage> messages;
      for (const nlohmann::json &message : item["messages"]) {
        messages.push_back({message["role"], message["content"]});
      }
      absl::StatusOr<std::string> rendered = ApplyChatTemplate(
          *chat, messages, item["add_generation_prompt"].get<bool>());
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      EXPECT_EQ(*rendered, item["text"].get<std::string>())
          << name << ": " << item["messages"].dump();
    }
  }
}

TEST(ChatTemplateTest, BuiltInTemplates) {
  const std::vector<ChatMessage> messages = {{"user", " Hi "}};
  EXPECT_EQ(*ApplyChatTemplate(Llama3ChatTemplate(), messages, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|"
            "eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(*ApplyChatTemplate(ChatMlChatTemplate(), messages, false),
            "<|im_start|>user\n Hi <|im_end|>\n");
  EXPECT_EQ(Llama31ChatTemplate().stop_tokens(),
            std::vector<std::string>{"<|eot_id|>"});
  EXPECT_EQ(ChatMlChatTemplate().stop_tokens(),
            std::vector<std::string>{"<|im_end|>"});
  // Llama 3's trim is Python's str.strip(): Unicode spaces too.
  EXPECT_EQ(*ApplyChatTemplate(Llama3ChatTemplate(),
                               {{"user", "\xE3\x80\x80x\xC2\xA0\n"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|"
            "eot_id|>");
}

TEST(ChatTemplateTest, UnsupportedTemplatesAreClearErrors) {
  absl::StatusOr<ChatTemplate> gemma =
      DetectChatTemplate(kData + "/chat_unsupported/tokenizer_config.json");
  ASSERT_FALSE(gemma.ok());
  EXPECT_EQ(gemma.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      gemma.status().message().find("chat_template uses unsupported markers"),
      std::string::npos);
  EXPECT_NE(gemma.status().message().find("<start_of_turn>"), std::string::npos)
      << gemma.status();
  EXPECT_NE(gemma.status().message().find("supported: llama3"),
            std::string::npos);
  EXPECT_NE(gemma.status().message().find("chatml"), std::string::npos);

  absl::StatusOr<ChatTemplate> none =
      DetectChatTemplate(kData + "/spm_llama/tokenizer_config.json");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("no chat_template"),
            std::string::npos);

  EXPECT_EQ(DetectChatTemplate(kData + "/missing/tokenizer_config.json")
                .status()
                .code(),
            absl::StatusCode::kNotFound);

  absl::StatusOr<ChatTemplate> llama31 =
      DetectChatTemplate(kData + "/chat_llama31/tokenizer_config.json");
  ASSERT_TRUE(llama31.ok());
  EXPECT_FALSE(ApplyChatTemplate(*llama31, {{"tool", "{}"}}, false).ok());
  EXPECT_FALSE(ApplyChatTemplate(*llama31, {}, false).ok());
}

TEST(ChatTemplateTest, Llama32UsesToday) {
  absl::StatusOr<ChatTemplate> chat = DetectChatTemplateFromString(
      "{%- if not date_string is defined %}{%- set date_string = "
      "strftime_now(\"%d %b %Y\") %}"
      "{%- endif %}<|start_header_id|>system<|end_header_id|>Cutting Knowledge "
      "Date: ...",
      "<|begin_of_text|>");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->name(), "llama3.1");
  EXPECT_TRUE(chat->date_string.empty());
  absl::StatusOr<std::string> text =
      ApplyChatTemplate(*chat, {{"user", "x"}}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("Today Date: "), std::string::npos);
}

} // namespace
} // namespace tessel
