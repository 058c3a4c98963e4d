// Built-in chat formats: Llama 3 / 3.1 and ChatML (Qwen2, Qwen2.5).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "runtime/tokenizer/chat_template.h"

#include <ctime>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status.h"

namespace tessel {
namespace {

constexpr absl::string_view kLlamaHeaderMarker = "<|start_header_id|>";
constexpr absl::string_view kChatMlMarker = "<|im_start|>";
constexpr absl::string_view kLlama31Marker = "Cutting Knowledge Date";

// Length of the Python-whitespace character (str.isspace, which Jinja's `trim`
// strips) at the start of `text`, or 0.
size_t WhitespaceAt(absl::string_view text) {
  if (text.empty()) return 0;
  const unsigned char c = static_cast<unsigned char>(text[0]);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f))
    return 1;
  for (absl::string_view space :
       {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\xA8", "\xE2\x80\xA9",
        "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"}) {
    if (absl::StartsWith(text, space)) return space.size();
  }
  // U+2000..U+200A: E2 80 80..8A.
  if (text.size() >= 3 && c == 0xE2 &&
      static_cast<unsigned char>(text[1]) == 0x80 &&
      static_cast<unsigned char>(text[2]) >= 0x80 &&
      static_cast<unsigned char>(text[2]) <= 0x8A) {
    return 3;
  }
  return 0;
}

// Jinja's `trim` filter: Python's str.strip().
std::string Trim(absl::string_view text) {
  while (size_t n = WhitespaceAt(text)) text.remove_prefix(n);
  for (bool trimmed = true; trimmed && !text.empty();) {
    trimmed = false;
    // Whitespace characters are 1 to 3 bytes long; try each ending.
    for (size_t n = 1; n <= 3 && n <= text.size(); ++n) {
      if (WhitespaceAt(text.substr(text.size() - n)) == n) {
        text.remove_suffix(n);
        trimmed = true;
        break;
      }
    }
  }
  return std::string(text);
}

// Today's date as the Llama 3.2 template renders it: strftime_now("%d %b %Y").
std::string Today() {
  std::time_t now = std::time(nullptr);
  std::tm local = {};
  localtime_r(&now, &local);
  char text[32];
  return std::string(text,
                     std::strftime(text, sizeof(text), "%d %b %Y", &local));
}

// The markers a template uses (<|...|>, <...>), for the unsupported-template
// error.
std::vector<std::string> FindMarkers(absl::string_view text) {
  std::vector<std::string> markers;
  for (size_t start = text.find('<');
       start != absl::string_view::npos && markers.size() < 4;
       start = text.find('<', start + 1)) {
    const size_t end = text.find('>', start);
    if (end == absl::string_view::npos || end - start > 40 || end - start < 2)
      continue;
    const absl::string_view candidate = text.substr(start, end - start + 1);
    bool plain = true;
    for (char c : candidate.substr(1, candidate.size() - 2)) {
      plain &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '_' || c == '|' || c == '/';
    }
    std::string marker(candidate);
    if (plain &&
        std::find(markers.begin(), markers.end(), marker) == markers.end()) {
      markers.push_back(std::move(marker));
    }
  }
  return markers;
}

// ChatML templates with a built-in system prompt spell it as one string
// literal, '<|im_start|>system\nPROMPT<|im_end|>\n' ("\n" as a newline or as
// a Jinja escape).
std::string FindDefaultSystemPrompt(absl::string_view text) {
  constexpr absl::string_view kSystemStart = "<|im_start|>system";
  for (size_t start = text.find(kSystemStart); start != absl::string_view::npos;
       start = text.find(kSystemStart, start + 1)) {
    absl::string_view rest = text.substr(start + kSystemStart.size());
    if (absl::StartsWith(rest, "\\n")) {
      rest.remove_prefix(2);
    } else if (absl::StartsWith(rest, "\n")) {
      rest.remove_prefix(1);
    } else {
      continue;
    }
    const size_t end = rest.find("<|im_end|>");
    if (end == absl::string_view::npos || end == 0) continue;
    const absl::string_view prompt = rest.substr(0, end);
    if (prompt.find_first_of("'\"{}+") != absl::string_view::npos)
      continue;  // not a literal
    return absl::StrReplaceAll(prompt, {{"\\n", "\n"}});
  }
  return "";
}

absl::Status CheckRole(const ChatMessage& message) {
  if (message.role.empty())
    return absl::InvalidArgumentError("a chat message has no role");
  return absl::OkStatus();
}

}  // namespace

std::string ChatTemplate::name() const {
  switch (format) {
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kLlama31:
      return "llama3.1";
    case ChatFormat::kChatMl:
      return "chatml";
  }
  return "unknown";
}

std::vector<std::string> ChatTemplate::stop_tokens() const {
  if (format == ChatFormat::kChatMl) return {"<|im_end|>"};
  return {"<|eot_id|>"};
}

ChatTemplate Llama3ChatTemplate() {
  ChatTemplate chat;
  chat.format = ChatFormat::kLlama3;
  chat.bos_token = "<|begin_of_text|>";
  return chat;
}

ChatTemplate Llama31ChatTemplate() {
  ChatTemplate chat = Llama3ChatTemplate();
  chat.format = ChatFormat::kLlama31;
  chat.date_string = "26 Jul 2024";
  return chat;
}

ChatTemplate ChatMlChatTemplate(std::string default_system_prompt) {
  ChatTemplate chat;
  chat.format = ChatFormat::kChatMl;
  chat.default_system_prompt = std::move(default_system_prompt);
  return chat;
}

absl::StatusOr<ChatTemplate> DetectChatTemplateFromString(
    absl::string_view chat_template, absl::string_view bos_token) {
  ChatTemplate chat;
  if (absl::StrContains(chat_template, kLlamaHeaderMarker)) {
    chat.bos_token = std::string(bos_token);
    if (!absl::StrContains(chat_template, kLlama31Marker)) {
      chat.format = ChatFormat::kLlama3;
      return chat;
    }
    chat.format = ChatFormat::kLlama31;
    constexpr absl::string_view kDateDefault = "set date_string = \"";
    if (!absl::StrContains(chat_template, "strftime_now")) {
      const size_t start = chat_template.find(kDateDefault);
      const size_t end =
          start == absl::string_view::npos
              ? start
              : chat_template.find('"', start + kDateDefault.size());
      if (end == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            "chat_template is a Llama 3.1-style template (\"Cutting Knowledge "
            "Date\") but sets "
            "no date_string default that tessel can read");
      }
      chat.date_string = std::string(chat_template.substr(
          start + kDateDefault.size(), end - start - kDateDefault.size()));
    }
    return chat;
  }
  if (absl::StrContains(chat_template, kChatMlMarker)) {
    return ChatMlChatTemplate(FindDefaultSystemPrompt(chat_template));
  }
  const std::vector<std::string> markers = FindMarkers(chat_template);
  return absl::InvalidArgumentError(absl::StrCat(
      "chat_template uses unsupported markers (",
      markers.empty() ? std::string("found none")
                      : absl::StrJoin(markers, ", "),
      "); supported: llama3 (<|start_header_id|>), chatml (<|im_start|>)"));
}

absl::StatusOr<ChatTemplate> DetectChatTemplate(
    const std::string& tokenizer_config_path) {
  auto read_file = [](const std::string& path, std::string* text) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return false;
    std::stringstream contents;
    contents << file.rdbuf();
    *text = contents.str();
    return !file.bad();
  };
  std::string text;
  if (!read_file(tokenizer_config_path, &text)) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", tokenizer_config_path));
  }
  const nlohmann::json config =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_config_path, ": not a JSON object"));
  }
  std::string bos_token;
  if (auto bos = config.find("bos_token"); bos != config.end()) {
    if (bos->is_string()) {
      bos_token = bos->get<std::string>();
    } else if (bos->is_object() && bos->contains("content") &&
               (*bos)["content"].is_string()) {
      bos_token = (*bos)["content"].get<std::string>();  // an AddedToken dict
    }
  }
  std::string chat_template;
  auto entry = config.find("chat_template");
  if (entry == config.end() || entry->is_null()) {
    // transformers >= 4.43 may save the template beside the config instead.
    const size_t slash = tokenizer_config_path.find_last_of('/');
    const std::string jinja =
        (slash == std::string::npos
             ? std::string()
             : tokenizer_config_path.substr(0, slash + 1)) +
        "chat_template.jinja";
    if (!read_file(jinja, &chat_template)) {
      return absl::NotFoundError(
          absl::StrCat(tokenizer_config_path,
                       " has no chat_template (and there is no ", jinja, ")"));
    }
  } else if (entry->is_string()) {
    chat_template = entry->get<std::string>();
  } else if (entry->is_array()) {
    for (const nlohmann::json& named : *entry) {
      if (named.is_object() && named.value("name", "") == "default" &&
          named.contains("template") && named["template"].is_string()) {
        chat_template = named["template"].get<std::string>();
      }
    }
    if (chat_template.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          tokenizer_config_path,
          ": chat_template is a list without a \"default\" entry"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_config_path, ": chat_template is ",
                     entry->type_name(), ", expected a string"));
  }
  absl::StatusOr<ChatTemplate> chat =
      DetectChatTemplateFromString(chat_template, bos_token);
  if (!chat.ok()) return Annotate(chat.status(), tokenizer_config_path);
  return chat;
}

absl::StatusOr<std::string> ApplyChatTemplate(
    const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
    bool add_generation_prompt) {
  std::string text;
  switch (chat_template.format) {
    case ChatFormat::kLlama3:
    case ChatFormat::kLlama31: {
      absl::Span<const ChatMessage> turns = messages;
      if (chat_template.format == ChatFormat::kLlama31) {
        if (messages.empty()) {
          return absl::InvalidArgumentError(
              "the llama3.1 chat template needs at least one message");
        }
        std::string system;
        if (messages[0].role == "system") {
          system = Trim(messages[0].content);
          turns.remove_prefix(1);
        }
        const std::string date = chat_template.date_string.empty()
                                     ? Today()
                                     : chat_template.date_string;
        absl::StrAppend(&text, chat_template.bos_token,
                        "<|start_header_id|>system<|end_header_id|>\n\n",
                        "Cutting Knowledge Date: December 2023\n",
                        "Today Date: ", date, "\n\n", system, "<|eot_id|>");
      } else if (!messages.empty()) {
        text = chat_template.bos_token;
      }
      for (const ChatMessage& message : turns) {
        TESSEL_RETURN_IF_ERROR(CheckRole(message));
        if (chat_template.format == ChatFormat::kLlama31 &&
            (message.role == "tool" || message.role == "ipython")) {
          return absl::InvalidArgumentError(absl::StrCat(
              "the built-in llama3.1 chat template does not render '",
              message.role, "' messages (tool calls are not supported)"));
        }
        absl::StrAppend(&text, "<|start_header_id|>", message.role,
                        "<|end_header_id|>\n\n", Trim(message.content),
                        "<|eot_id|>");
      }
      if (add_generation_prompt) {
        absl::StrAppend(&text,
                        "<|start_header_id|>assistant<|end_header_id|>\n\n");
      }
      return text;
    }
    case ChatFormat::kChatMl: {
      if (!chat_template.default_system_prompt.empty() &&
          (messages.empty() || messages[0].role != "system")) {
        absl::StrAppend(&text, "<|im_start|>system\n",
                        chat_template.default_system_prompt, "<|im_end|>\n");
      }
      for (const ChatMessage& message : messages) {
        TESSEL_RETURN_IF_ERROR(CheckRole(message));
        absl::StrAppend(&text, "<|im_start|>", message.role, "\n",
                        message.content, "<|im_end|>\n");
      }
      if (add_generation_prompt)
        absl::StrAppend(&text, "<|im_start|>assistant\n");
      return text;
    }
  }
  return absl::InternalError("unknown chat format");
}

}  // namespace tessel
