// Built-in chat formats: Llama 3 / 3.1 and ChatML (Qwen2, Qwen2.5).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// tessel does not run Jinja. DetectChatTemplate recognizes the published
// templates in a tokenizer_config.json by their markers, and
// ApplyChatTemplate renders the text HF's `apply_chat_template(messages,
// tokenize=False, add_generation_prompt=...)` does for plain
// system/user/assistant turns (no tools, tool calls or images):
//  llama3    <|start_header_id|>, no "Cutting Knowledge Date" (Llama 3):
//            bos_token, then per message
//            "<|start_header_id|>ROLE<|end_header_id|>\n\n" + trim(content)
//            + "<|eot_id|>".
//  llama3.1  <|start_header_id|> and "Cutting Knowledge Date" (Llama 3.1,
//            3.2, 3.3): bos_token, then always a system turn
//            "Cutting Knowledge Date: December 2023\nToday Date: DATE\n\n" +
//            trim(system message or ""), then the other messages as llama3.
//            DATE is the template's date_string default ("26 Jul 2024" in
//            3.1) or, for templates that call strftime_now (3.2), today.
//  chatml    <|im_start|>: "<|im_start|>ROLE\n" + content + "<|im_end|>\n"
//            per message; when the first message is not a system message,
//            the template's default system prompt if it spells one (Qwen2:
//            "You are a helpful assistant.", Qwen2.5: "You are Qwen, created
//            by Alibaba Cloud. You are a helpful assistant.").
// The generation prompt is "<|start_header_id|>assistant<|end_header_id|>\n\n"
// or "<|im_start|>assistant\n".
#ifndef TESSEL_RUNTIME_TOKENIZER_CHAT_TEMPLATE_H_
#define TESSEL_RUNTIME_TOKENIZER_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tessel {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { kLlama3, kLlama31, kChatMl };

/// A recognized chat template and the values it reads from
/// tokenizer_config.json.
struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatMl;
  std::string bos_token;    // llama3: prepended to the conversation
  std::string date_string;  // llama3.1: "Today Date: ..."; empty: today
  std::string
      default_system_prompt;  // chatml: used when no system message comes first

  /// "llama3", "llama3.1" or "chatml".
  std::string name() const;
  /// Token texts that end an assistant turn: "<|eot_id|>" / "<|im_end|>".
  std::vector<std::string> stop_tokens() const;
};

/// The built-in templates, as published (Llama 3: bos_token
/// "<|begin_of_text|>"; Llama 3.1: date "26 Jul 2024"; Qwen2.5's default system
/// prompt).
ChatTemplate Llama3ChatTemplate();
ChatTemplate Llama31ChatTemplate();
ChatTemplate ChatMlChatTemplate(std::string default_system_prompt = "");

/// Recognizes the `chat_template` of a tokenizer_config.json (a string, or a
/// list of {name, template} whose "default" entry is used; or, when the key is
/// absent, a chat_template.jinja beside the file). NotFound if there is no
/// template; InvalidArgument "chat_template uses unsupported markers (...);
/// supported: llama3, chatml" naming the markers found, for any other template.
absl::StatusOr<ChatTemplate> DetectChatTemplate(
    const std::string& tokenizer_config_path);

/// Same, from the template text and the config's bos_token.
absl::StatusOr<ChatTemplate> DetectChatTemplateFromString(
    absl::string_view chat_template, absl::string_view bos_token);

/// Renders `messages` as the template does. InvalidArgument for a role the
/// format cannot render (llama3.1: "tool"/"ipython"; any format: an empty role)
/// or, for llama3.1, an empty conversation (HF's template fails on it too).
absl::StatusOr<std::string> ApplyChatTemplate(
    const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
    bool add_generation_prompt);

}  // namespace tessel

#endif  // TESSEL_RUNTIME_TOKENIZER_CHAT_TEMPLATE_H_
