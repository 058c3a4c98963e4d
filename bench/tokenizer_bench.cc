// Encode throughput of tessel's tokenizer on a text file (driven by tokenizer_throughput.py).
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Usage: tokenizer_bench TOKENIZER_JSON TEXT_FILE CHUNK_BYTES REPEATS [IDS_OUT]
// Splits the text into chunks at the first '\n' after every CHUNK_BYTES bytes (as the
// Python driver does for HF), encodes every chunk REPEATS times on one thread and prints
// one JSON line: bytes, best seconds, MB/s, tokens. IDS_OUT gets the ids of the last pass,
// one chunk a line, for the parity check.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/tokenizer/bpe_tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: tokenizer_bench TOKENIZER_JSON TEXT_FILE CHUNK_BYTES REPEATS "
                 "[IDS_OUT]\n");
    return 2;
  }
  auto tokenizer = tessel::LoadTokenizerJson(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  std::ifstream file(argv[2], std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  const std::string text = contents.str();
  const size_t chunk_bytes = std::strtoull(argv[3], nullptr, 10);
  const int repeats = std::atoi(argv[4]);
  std::vector<std::string> chunks;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', std::min(text.size(), begin + chunk_bytes));
    end = end == std::string::npos ? text.size() : end + 1;
    chunks.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  double best = 1e30;
  size_t tokens = 0;
  std::vector<std::vector<int32_t>> last;
  for (int r = 0; r < repeats; ++r) {
    last.clear();
    tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& chunk : chunks) {
      auto ids = (*tokenizer)->Encode(chunk);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s\n", std::string(ids.status().message()).c_str());
        return 1;
      }
      tokens += ids->size();
      last.push_back(*std::move(ids));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, seconds);
  }
  if (argc > 5) {
    std::ofstream out(argv[5]);
    for (const auto& ids : last) {
      for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
      out << "\n";
    }
  }
  std::printf(
      "{\"bytes\": %zu, \"chunks\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f, "
      "\"tokens\": %zu}\n",
      text.size(), chunks.size(), best, text.size() / best / 1e6, tokens);
  return 0;
}
