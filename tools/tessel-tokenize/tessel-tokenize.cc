// tessel-tokenize: text on stdin to token ids (or ids to text), exactly as HF tokenizers.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace {

constexpr char kUsage[] =
    "usage: tessel-tokenize --tokenizer FILE (--encode [--no-special] | --decode "
    "[--skip-special])\n"
    "\n"
    "  --tokenizer FILE  tokenizer.json, tokenizer.model, a .gguf file, or a directory\n"
    "  --encode          read UTF-8 text on stdin, print its token ids on one line,\n"
    "                    space-separated (HF Tokenizer.encode(text).ids)\n"
    "  --no-special      with --encode: do not add the post-processor's special tokens\n"
    "  --decode          read whitespace-separated token ids on stdin, print the text\n"
    "  --skip-special    with --decode: leave special tokens out of the text\n"
    "  --help            print this help\n";

int Fail(const std::string& message) {
  std::cerr << "tessel-tokenize: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path;
  bool encode = false, decode = false, no_special = false, skip_special = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--tokenizer" && i + 1 < argc) {
      tokenizer_path = argv[++i];
    } else if (arg.rfind("--tokenizer=", 0) == 0) {
      tokenizer_path = arg.substr(12);
    } else if (arg == "--encode") {
      encode = true;
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--no-special") {
      no_special = true;
    } else if (arg == "--skip-special") {
      skip_special = true;
    } else {
      return Fail("unknown or incomplete argument '" + arg + "'\n" + kUsage);
    }
  }
  if (tokenizer_path.empty()) return Fail(std::string("--tokenizer FILE is required\n") + kUsage);
  if (encode == decode)
    return Fail(std::string("give exactly one of --encode, --decode\n") + kUsage);

  auto tokenizer = tessel::LoadTokenizer(tokenizer_path);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));

  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  if (encode) {
    auto ids = (*tokenizer)->Encode(input, /*add_special_tokens=*/!no_special);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    std::string line;
    for (size_t i = 0; i < ids->size(); ++i) {
      if (i > 0) line += ' ';
      line += std::to_string((*ids)[i]);
    }
    std::cout << line << "\n";
    return 0;
  }
  std::vector<int32_t> ids;
  std::istringstream stream(input);
  std::string word;
  while (stream >> word) {
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0' || errno != 0 || value < INT32_MIN ||
        value > INT32_MAX) {
      return Fail("'" + word + "' is not a token id (expected integers separated by spaces)");
    }
    ids.push_back(static_cast<int32_t>(value));
  }
  auto text = (*tokenizer)->Decode(ids, skip_special);
  if (!text.ok()) return Fail(std::string(text.status().message()));
  std::cout << *text;
  return 0;
}
