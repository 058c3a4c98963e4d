// libFuzzer target: arbitrary bytes as text to BPE Encode and as a tokenizer.json file.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// The first input byte picks the mode: encode with the Llama 3-style or the Qwen2-style test
// tokenizer (then decode the ids; the Llama 3 one, which has no normalizer, must round-trip
// exactly), or load the rest as a tokenizer.json and, when it loads, encode and decode with
// it. Any error must come back as a status; crashes, sanitizer reports and broken round trips
// are bugs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/tokenizer/bpe_tokenizer.h"

#ifndef TESSEL_TOKENIZER_TEST_DATA
#error "TESSEL_TOKENIZER_TEST_DATA must name tests/tokenizer/data"
#endif

namespace {

std::unique_ptr<tessel::Tokenizer> TestTokenizer(const char* kind) {
  auto tokenizer = tessel::LoadTokenizerJson(std::string(TESSEL_TOKENIZER_TEST_DATA) + "/" + kind +
                                             "_tokenizer.json");
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "cannot load the %s test tokenizer: %s\n", kind,
                 std::string(tokenizer.status().message()).c_str());
    std::abort();
  }
  return *std::move(tokenizer);
}

void EncodeDecode(const tessel::Tokenizer& tokenizer, absl::string_view text,
                  bool must_round_trip) {
  auto ids = tokenizer.Encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) return;  // invalid UTF-8
  auto decoded = tokenizer.Decode(*ids);
  if (!decoded.ok()) {
    std::fprintf(stderr, "decode of encoded ids failed: %s\n",
                 std::string(decoded.status().message()).c_str());
    std::abort();
  }
  if (must_round_trip && *decoded != text) {
    std::fprintf(stderr, "round trip changed the text\n");
    std::abort();
  }
  (void)tokenizer.Encode(text, /*add_special_tokens=*/true);
  (void)tokenizer.Decode(*ids, /*skip_special_tokens=*/true);
  for (int32_t id : *ids) (void)tokenizer.TokenBytes(id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<tessel::Tokenizer> llama3 = TestTokenizer("llama3");
  static const std::unique_ptr<tessel::Tokenizer> qwen2 = TestTokenizer("qwen2");
  if (size == 0) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      // <tool> strips the whitespace around it, so only text without it round-trips.
      EncodeDecode(*llama3, rest, rest.find("<tool>") == absl::string_view::npos);
      break;
    case 1:
      EncodeDecode(*qwen2, rest, /*must_round_trip=*/false);
      break;
    default: {
      auto loaded = tessel::LoadTokenizerFromTokenizerJsonString(rest, "fuzz.json");
      if (!loaded.ok()) return 0;
      const tessel::Tokenizer& tokenizer = **loaded;
      EncodeDecode(tokenizer, "Hello, world! 123 \xE4\xBD\xA0\xE5\xA5\xBD  \n\t x", false);
      EncodeDecode(tokenizer, rest, false);
      std::vector<int32_t> ids;
      for (int32_t id = 0; id < tokenizer.vocab_size() && id < 64; ++id) ids.push_back(id);
      (void)tokenizer.Decode(ids);
      break;
    }
  }
  return 0;
}
