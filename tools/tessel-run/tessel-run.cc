// tessel-run: generates tokens from an artifact through the C API.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
//   tessel-run <artifact> --prompt-ids 1,2,3 --max-new-tokens 16
// prints the generated ids space-separated on one line.
//   tessel-run <artifact> --prompt "Once upon a time" [--chat [--system TEXT]]
// tokenizes with the artifact's tokenizer (tokenizer.json, tokenizer.model or tokenizer.gguf,
// copied by tessel-compile) and streams the generated text. --logits-out writes
// the prompt's logits [T, vocab] as a NumPy .npy (v1.0, '<f4', C order): a
// stable interface used by the end-to-end tests to compare with Hugging Face
// transformers.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <memory>
#include <vector>

#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tessel/tessel.h"

namespace {

constexpr char kUsage[] =
    "usage: tessel-run <artifact-dir> (--prompt-ids ID,ID,... | --prompt TEXT) "
    "[options]\n"
    "\n"
    "Runs the prompt through the model, then generates tokens; prints the "
    "generated ids\n"
    "space-separated on one line, or with --prompt streams the generated "
    "text.\n"
    "\n"
    "options:\n"
    "  --prompt-ids LIST      comma-separated token ids\n"
    "  --prompt TEXT          text, tokenized with the artifact's tokenizer; "
    "the\n"
    "                         generated text is streamed to stdout\n"
    "  --chat                 wrap --prompt as a user message in the chat "
    "template\n"
    "                         of the artifact's tokenizer_config.json "
    "(llama3, chatml)\n"
    "  --system TEXT          with --chat: a system message first\n"
    "  --max-new-tokens N     tokens to generate (default 16; 0: only run the "
    "prompt)\n"
    "  --temperature T        sampling temperature; 0 = greedy (default 0)\n"
    "  --top-k K              sample among the K most likely tokens (default "
    "0: all)\n"
    "  --top-p P              nucleus sampling threshold in (0, 1] (default 1: "
    "off)\n"
    "  --seed S               sampler seed (default 0)\n"
    "  --logits-out FILE.npy  write the prompt's logits [T, vocab] as float32 "
    ".npy\n"
    "  --device cpu|cuda      executor (default cpu)\n"
    "  --threads N            CPU threads (default 0: all)\n"
    "  --max-context N        session context in tokens (default: the "
    "model's)\n"
    "  --stop-at-eos          stop after an end-of-sequence token (default)\n"
    "  --no-stop-at-eos       always generate --max-new-tokens tokens\n"
    "  --prefill-tokens N     prefill only the first N prompt tokens, decode the rest one\n"
    "                         at a time (--logits-out still covers every position)\n"
    "  --bench                print prefill and decode timings to stderr\n"
    "  --batch N              with --bench: run N copies of the prompt as one batch\n"
    "                         (lockstep sequences, greedy on the GPU; --device cuda) and\n"
    "                         print prefill time and decode ms/step (median after 3\n"
    "                         warm-up steps); every timer ends with the GPU idle\n"
    "  --prefill-repeats N    with --batch: after the first (cold) prefill, reset and\n"
    "                         prefill N more times and print their median (default 3)\n"
    "  --batch-prompt-ids FILE  instead of one prompt: one prompt of comma-separated\n"
    "                         ids per line, all of the same length, run as one batch of\n"
    "                         lockstep sequences (--device cuda): the first\n"
    "                         --prefill-tokens of every prompt in one batched prefill,\n"
    "                         then one batched decode step per remaining position;\n"
    "                         prints each sequence's greedy next id on one line;\n"
    "                         --logits-out writes [sequences x positions, vocab],\n"
    "                         sequence-major\n"
    "  --weights dummy        do not read the weights: random values on the GPU\n"
    "                         (--device cuda; for benchmarks of artifacts compiled\n"
    "                         with tessel-compile --weights=none)\n"
    "  --help                 show this help\n";

struct Options {
  std::string artifact;
  std::vector<int32_t> prompt;
  bool have_prompt = false;
  std::string prompt_text;
  bool have_prompt_text = false;
  bool chat = false;
  std::string system;
  bool have_system = false;
  int64_t max_new_tokens = 16;
  tessel_sampling_t sampling = {0.0f, 0, 1.0f, 0};
  std::string logits_out;
  int64_t prefill_tokens = 0;  // 0: the whole prompt
  tessel_device_t device = TESSEL_DEVICE_CPU;
  int32_t threads = 0;
  int64_t max_context = 0;
  bool stop_at_eos = true;
  bool bench = false;
  int64_t batch = 0;  // 0: the plain generation loop
  std::string batch_prompts_file;  // --batch-prompt-ids
  std::vector<std::vector<int32_t>> batch_prompts;
  int64_t prefill_repeats = 3;
  bool dummy_weights = false;
};

bool Fail(const std::string& message) {
  std::fprintf(stderr, "tessel-run: %s\n", message.c_str());
  return false;
}

bool ParseInt(const std::string& flag, const std::string& text, int64_t min,
              int64_t max, int64_t* out) {
  if (text.empty()) return Fail(flag + " needs an integer, got an empty value");
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE)
    return Fail(flag + ": '" + text + "' is not an integer");
  if (value < min || value > max) {
    return Fail(flag + ": " + text + " is outside [" + std::to_string(min) +
                ", " + std::to_string(max) + "]");
  }
  *out = value;
  return true;
}

bool ParseFloat(const std::string& flag, const std::string& text, double min,
                double max, float* out) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE ||
      !(value >= min && value <= max)) {
    return Fail(flag + ": '" + text + "' is not a number in [" +
                std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  *out = static_cast<float>(value);
  return true;
}

// `flag`: the option (or file and line) the ids came from, for the error message.
bool ParseIds(const std::string& flag, const std::string& text, std::vector<int32_t>* out) {
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? comma : comma - start);
    int64_t id = 0;
    if (!ParseInt(flag, item, 0, INT32_MAX, &id)) return false;
    out->push_back(static_cast<int32_t>(id));
    if (comma == std::string::npos) return true;
    start = comma + 1;
  }
}

// --batch-prompt-ids: one prompt per non-empty line, 1-1024 prompts of one length.
bool ReadBatchPrompts(const std::string& path, std::vector<std::vector<int32_t>>* prompts) {
  std::ifstream file(path);
  if (!file) {
    return Fail("--batch-prompt-ids: cannot open " + path + ": " + std::strerror(errno));
  }
  std::string line;
  for (int64_t line_number = 1; std::getline(file, line); ++line_number) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    const std::string where =
        "--batch-prompt-ids: " + path + " line " + std::to_string(line_number);
    std::vector<int32_t> ids;
    if (!ParseIds(where, line, &ids)) return false;
    if (!prompts->empty() && ids.size() != prompts->front().size()) {
      return Fail(where + " has " + std::to_string(ids.size()) + " ids, the first prompt " +
                  std::to_string(prompts->front().size()) +
                  " (a batch's prompts advance in lockstep: one length)");
    }
    prompts->push_back(std::move(ids));
  }
  if (prompts->empty()) return Fail("--batch-prompt-ids: " + path + " holds no prompt");
  if (prompts->size() > 1024) {
    return Fail("--batch-prompt-ids: " + std::to_string(prompts->size()) +
                " prompts (at most 1024)");
  }
  return true;
}

// Returns false (after printing why) on bad arguments; sets *help for --help.
bool ParseArgs(int argc, char** argv, Options* options, bool* help) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return Fail(arg + " needs a value");
      *out = argv[++i];
      return true;
    };
    std::string text;
    int64_t number = 0;
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return true;
    } else if (arg == "--prompt-ids") {
      if (!value(&text) || !ParseIds(arg, text, &options->prompt)) return false;
      options->have_prompt = true;
    } else if (arg == "--prompt") {
      if (!value(&options->prompt_text)) return false;
      options->have_prompt_text = true;
    } else if (arg == "--chat") {
      options->chat = true;
    } else if (arg == "--system") {
      if (!value(&options->system)) return false;
      options->have_system = true;
    } else if (arg == "--max-new-tokens") {
      if (!value(&text) ||
          !ParseInt(arg, text, 0, INT32_MAX, &options->max_new_tokens))
        return false;
    } else if (arg == "--temperature") {
      if (!value(&text) ||
          !ParseFloat(arg, text, 0.0, 1e6, &options->sampling.temperature))
        return false;
    } else if (arg == "--top-k") {
      if (!value(&text) || !ParseInt(arg, text, 0, INT32_MAX, &number))
        return false;
      options->sampling.top_k = static_cast<int32_t>(number);
    } else if (arg == "--top-p") {
      if (!value(&text) ||
          !ParseFloat(arg, text, 0.0, 1.0, &options->sampling.top_p))
        return false;
    } else if (arg == "--seed") {
      if (!value(&text) || !ParseInt(arg, text, 0, INT64_MAX, &number))
        return false;
      options->sampling.seed = static_cast<uint64_t>(number);
    } else if (arg == "--prefill-tokens") {
      if (!value(&text) ||
          !ParseInt(arg, text, 1, INT32_MAX, &options->prefill_tokens)) {
        return false;
      }
    } else if (arg == "--logits-out") {
      if (!value(&options->logits_out)) return false;
    } else if (arg == "--device") {
      if (!value(&text)) return false;
      if (text == "cpu") {
        options->device = TESSEL_DEVICE_CPU;
      } else if (text == "cuda") {
        options->device = TESSEL_DEVICE_CUDA;
      } else {
        return Fail("--device: '" + text + "' is not cpu or cuda");
      }
    } else if (arg == "--threads") {
      if (!value(&text) || !ParseInt(arg, text, 0, 4096, &number)) return false;
      options->threads = static_cast<int32_t>(number);
    } else if (arg == "--max-context") {
      if (!value(&text) ||
          !ParseInt(arg, text, 1, INT32_MAX, &options->max_context))
        return false;
    } else if (arg == "--stop-at-eos") {
      options->stop_at_eos = true;
    } else if (arg == "--no-stop-at-eos") {
      options->stop_at_eos = false;
    } else if (arg == "--prefill-repeats") {
      if (!value(&text) || !ParseInt(arg, text, 0, 1000, &options->prefill_repeats))
        return false;
    } else if (arg == "--bench") {
      options->bench = true;
    } else if (arg == "--batch") {
      if (!value(&text) || !ParseInt(arg, text, 1, 1024, &options->batch))
        return false;
    } else if (arg == "--batch-prompt-ids") {
      if (!value(&options->batch_prompts_file)) return false;
    } else if (arg == "--weights") {
      if (!value(&text)) return false;
      if (text != "dummy")
        return Fail("--weights: '" + text + "' is not 'dummy'");
      options->dummy_weights = true;
    } else if (!arg.empty() && arg[0] == '-') {
      return Fail("unknown option '" + arg + "' (see --help)");
    } else if (options->artifact.empty()) {
      options->artifact = arg;
    } else {
      return Fail("unexpected argument '" + arg +
                  "' (one artifact directory expected)");
    }
  }
  if (options->artifact.empty())
    return Fail("no artifact directory given (see --help)");
  if (!options->batch_prompts_file.empty()) {
    if (options->have_prompt || options->have_prompt_text)
      return Fail("--batch-prompt-ids replaces --prompt-ids and --prompt");
    if (options->bench) return Fail("--batch-prompt-ids does not take --bench (see --batch)");
    if (options->device != TESSEL_DEVICE_CUDA)
      return Fail("--batch-prompt-ids needs --device cuda (batches run on the GPU)");
    return ReadBatchPrompts(options->batch_prompts_file, &options->batch_prompts);
  }
  if (options->have_prompt == options->have_prompt_text)
    return Fail("give either --prompt-ids or --prompt (see --help)");
  if (options->chat && !options->have_prompt_text)
    return Fail("--chat needs --prompt");
  if (options->have_system && !options->chat)
    return Fail("--system needs --chat");
  if (options->batch > 0 && !options->bench)
    return Fail("--batch needs --bench");
  if (options->dummy_weights && options->device != TESSEL_DEVICE_CUDA)
    return Fail("--weights dummy needs --device cuda");
  return true;
}

// Text mode: the artifact's tokenizer, the prompt's ids and the ids that end
// generation (the model's EOS ids plus the chat stop tokens the vocabulary
// has).
struct TextMode {
  std::unique_ptr<tessel::Tokenizer> tokenizer;
  std::vector<int32_t> stop_ids;
};

bool PrepareTextPrompt(const Options& options, TextMode* text,
                       std::vector<int32_t>* prompt) {
  absl::StatusOr<std::unique_ptr<tessel::Tokenizer>> tokenizer =
      tessel::LoadTokenizer(options.artifact);
  if (!tokenizer.ok()) {
    if (tokenizer.status().code() == absl::StatusCode::kNotFound) {
      return Fail("--prompt: the artifact " + options.artifact +
                  " has no tokenizer (none of tokenizer.json, tokenizer.model, "
                  "tokenizer.gguf): pass --prompt-ids");
    }
    return Fail("--prompt: cannot load the tokenizer: " +
                std::string(tokenizer.status().message()));
  }
  text->tokenizer = std::move(*tokenizer);
  std::string prompt_text = options.prompt_text;
  std::vector<std::string> stop_tokens = {"<|eot_id|>", "<|im_end|>",
                                          "<|end_of_text|>", "<|endoftext|>"};
  if (options.chat) {
    const std::string config = options.artifact + "/tokenizer_config.json";
    absl::StatusOr<tessel::ChatTemplate> chat =
        tessel::DetectChatTemplate(config);
    if (!chat.ok())
      return Fail("--chat: " + std::string(chat.status().message()));
    std::vector<tessel::ChatMessage> messages;
    if (options.have_system) messages.push_back({"system", options.system});
    messages.push_back({"user", options.prompt_text});
    absl::StatusOr<std::string> rendered =
        tessel::ApplyChatTemplate(*chat, messages,
                                  /*add_generation_prompt=*/true);
    if (!rendered.ok())
      return Fail("--chat: " + std::string(rendered.status().message()));
    prompt_text = *rendered;
    for (const std::string& token : chat->stop_tokens())
      stop_tokens.push_back(token);
  }
  // A chat template spells out its BOS itself (as HF's apply_chat_template with
  // tokenize=True, which encodes without special tokens).
  absl::StatusOr<std::vector<int32_t>> ids =
      text->tokenizer->Encode(prompt_text,
                              /*add_special_tokens=*/!options.chat);
  if (!ids.ok())
    return Fail("--prompt: " + std::string(ids.status().message()));
  *prompt = std::move(*ids);
  for (const std::string& token : stop_tokens) {
    if (std::optional<int32_t> id = text->tokenizer->TokenToId(token))
      text->stop_ids.push_back(*id);
  }
  return true;
}

// Prints a failed status; true if `status` was an error.
bool Failed(tessel_status_t status, const char* what) {
  if (status == nullptr) return false;
  std::fprintf(stderr, "tessel-run: %s: %s\n", what,
               tessel_status_message(status));
  tessel_status_release(status);
  return true;
}

// NumPy format 1.0: magic, version, u16 header length, a dict padded with
// spaces to a 64-byte boundary and ended by '\n', then the raw little-endian
// data.
bool WriteNpy(const std::string& path, const float* data, size_t rows,
              size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) +
                       "), }";
  const size_t preamble = 10;  // magic (6) + version (2) + header length (2)
  header.append(64 - (preamble + header.size() + 1) % 64, ' ');
  header += '\n';
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr)
    return Fail("cannot write '" + path + "': " + std::strerror(errno));
  const uint16_t length = static_cast<uint16_t>(header.size());
  const unsigned char prefix[10] = {0x93,
                                    'N',
                                    'U',
                                    'M',
                                    'P',
                                    'Y',
                                    1,
                                    0,
                                    static_cast<unsigned char>(length & 0xff),
                                    static_cast<unsigned char>(length >> 8)};
  bool ok =
      std::fwrite(prefix, 1, sizeof(prefix), file) == sizeof(prefix) &&
      std::fwrite(header.data(), 1, header.size(), file) == header.size() &&
      std::fwrite(data, sizeof(float), rows * cols, file) == rows * cols;
  ok = (std::fclose(file) == 0) && ok;
  if (!ok) return Fail("cannot write '" + path + "': " + std::strerror(errno));
  return true;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// --bench --batch N: N copies of the prompt prefilled as one batch, then greedy decode
// steps for all N in lockstep. tessel_session_greedy_batch copies the ids back, which waits
// for the GPU, so each timer is bounded by a synchronization.
int RunBatchBench(const Options& options, tessel_session_t session,
                  const std::vector<int32_t>& prompt, double load_seconds) {
  const size_t batch = static_cast<size_t>(options.batch);
  std::vector<int32_t> tokens;
  for (size_t b = 0; b < batch; ++b)
    tokens.insert(tokens.end(), prompt.begin(), prompt.end());
  std::vector<int32_t> next(batch);
  const auto prefill_start = std::chrono::steady_clock::now();
  if (Failed(tessel_session_prefill_batch(session, tokens.data(), batch,
                                          prompt.size()),
             "batched prefill failed") ||
      Failed(tessel_session_greedy_batch(session, next.data(), batch),
             "greedy failed")) {
    return 1;
  }
  const double prefill_seconds = Seconds(prefill_start);
  // Warm prefills: the first call bound the shape (arena, cuBLASLt plans); these measure the
  // steady state. Each ends with the greedy ids on the host (the GPU idle).
  std::vector<double> warm_ms;
  for (int64_t r = 0; r < options.prefill_repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (Failed(tessel_session_reset(session), "reset failed") ||
        Failed(tessel_session_prefill_batch(session, tokens.data(), batch, prompt.size()),
               "batched prefill failed") ||
        Failed(tessel_session_greedy_batch(session, next.data(), batch), "greedy failed")) {
      return 1;
    }
    warm_ms.push_back(1e3 * Seconds(start));
  }
  const int64_t warmup = 3;
  std::vector<double> step_ms;
  for (int64_t i = 0; i < options.max_new_tokens + warmup; ++i) {
    const auto start = std::chrono::steady_clock::now();
    tessel_status_t status = tessel_session_decode_batch(session, next.data(), batch);
    if (tessel_status_code(status) == TESSEL_OUT_OF_RANGE) {
      tessel_status_release(status);
      break;
    }
    if (Failed(status, "batched decode failed") ||
        Failed(tessel_session_greedy_batch(session, next.data(), batch),
               "greedy failed")) {
      return 1;
    }
    if (i >= warmup) step_ms.push_back(1e3 * Seconds(start));
  }
  double total_ms = 0.0;
  for (double ms : step_ms) total_ms += ms;
  const double median = Median(step_ms);
  std::printf("%d\n", next[0]);
  std::fprintf(stderr,
               "bench: batch %zu | load %.3f s | prefill %zu x %zu tokens %.2f ms "
               "(warm median %.2f ms of %zu) | "
               "decode %zu steps: median %.3f ms/step, mean %.3f ms/step, "
               "%.1f tok/s (all sequences)\n",
               batch, load_seconds, batch, prompt.size(), 1e3 * prefill_seconds,
               Median(warm_ms), warm_ms.size(),
               step_ms.size(), median,
               step_ms.empty() ? 0.0 : total_ms / step_ms.size(),
               median > 0 ? 1e3 * batch / median : 0.0);
  return 0;
}

// --batch-prompt-ids: the prompts as one batch of lockstep sequences through the C API's
// batched calls (the serving path's kernels: at 9-16 sequences the decode projections run
// on the TMA skinny GEMM, which a single sequence never reaches).
int RunBatchPrompts(const Options& options, tessel_session_t session) {
  const std::vector<std::vector<int32_t>>& prompts = options.batch_prompts;
  const size_t batch = prompts.size(), length = prompts.front().size();
  const size_t head = options.prefill_tokens > 0
                          ? std::min(length, static_cast<size_t>(options.prefill_tokens))
                          : length;
  std::vector<float> all;  // [batch, length, vocab]
  size_t vocab = 0;
  // The last call's logits rows [batch, count] at positions t0..t0+count-1.
  auto collect = [&](size_t t0, size_t count) {
    if (options.logits_out.empty()) return true;
    const float* logits = nullptr;
    size_t rows = 0;
    if (Failed(tessel_session_get_logits(session, &logits, &rows, &vocab), "no logits"))
      return false;
    if (rows != batch * count) {
      return Fail("the batched call gave " + std::to_string(rows) + " logits rows, not " +
                  std::to_string(batch * count));
    }
    all.resize(batch * length * vocab);
    for (size_t b = 0; b < batch; ++b) {
      std::copy(logits + b * count * vocab, logits + (b + 1) * count * vocab,
                all.begin() + (b * length + t0) * vocab);
    }
    return true;
  };
  std::vector<int32_t> tokens;  // [batch, head]
  for (const std::vector<int32_t>& p : prompts)
    tokens.insert(tokens.end(), p.begin(), p.begin() + head);
  if (Failed(tessel_session_prefill_batch(session, tokens.data(), batch, head),
             "batched prefill failed") ||
      !collect(0, head)) {
    return 1;
  }
  std::vector<int32_t> step(batch);
  for (size_t t = head; t < length; ++t) {
    for (size_t b = 0; b < batch; ++b) step[b] = prompts[b][t];
    if (Failed(tessel_session_decode_batch(session, step.data(), batch),
               "batched decode failed") ||
        !collect(t, 1)) {
      return 1;
    }
  }
  std::vector<int32_t> next(batch);
  if (Failed(tessel_session_greedy_batch(session, next.data(), batch), "greedy failed"))
    return 1;
  if (!options.logits_out.empty() &&
      !WriteNpy(options.logits_out, all.data(), batch * length, vocab)) {
    return 1;
  }
  for (size_t b = 0; b < batch; ++b) std::printf(b == 0 ? "%" PRId32 : " %" PRId32, next[b]);
  std::printf("\n");
  return 0;
}

int Run(const Options& options) {
  std::vector<int32_t> prompt = options.prompt;
  TextMode text_mode;
  const bool text = options.have_prompt_text;
  if (text && !PrepareTextPrompt(options, &text_mode, &prompt)) return 1;
  tessel_model_options_t model_options = {};
  model_options.device = options.device;
  model_options.threads = options.threads;
  model_options.dummy_weights = options.dummy_weights;
  tessel_model_t model = nullptr;
  const auto load_start = std::chrono::steady_clock::now();
  if (Failed(
          tessel_model_load(options.artifact.c_str(), &model_options, &model),
          "cannot load")) {
    return 1;
  }
  const double load_seconds = Seconds(load_start);
  tessel_model_info_t info;
  const int64_t sequences = !options.batch_prompts.empty()
                                ? static_cast<int64_t>(options.batch_prompts.size())
                                : std::max<int64_t>(options.batch, 1);
  tessel_session_options_t session_options = {options.max_context, sequences};
  tessel_session_t session = nullptr;
  int rc = 1;
  bool prompt_failed_early = false;
  do {
    if (Failed(tessel_model_get_info(model, &info),
               "cannot read the model info"))
      break;
    if (Failed(tessel_session_create(model, &session_options, &session),
               "cannot create a session")) {
      break;
    }
    if (!options.batch_prompts.empty()) {
      rc = RunBatchPrompts(options, session);
      break;
    }
    if (prompt.empty()) {
      Fail(text ? "--prompt: the prompt is empty (the tokenizer adds no BOS)"
                : "--prompt-ids: the prompt is empty");
      break;
    }
    if (options.batch > 0) {
      rc = RunBatchBench(options, session, prompt, load_seconds);
      break;
    }
    if (text) {
      for (int32_t id : prompt) {
        if (id >= info.vocab_size) {
          Fail("--prompt: the tokenizer gave id " + std::to_string(id) +
               ", outside the model's vocabulary of " +
               std::to_string(info.vocab_size) + " (wrong tokenizer?)");
          prompt_failed_early = true;
          break;
        }
      }
      if (prompt_failed_early) break;
    }
    // The prompt: one prefill of the first `head` tokens, then one decode per
    // remaining token; the logits of every prompt position are collected for
    // --logits-out.
    const size_t head =
        options.prefill_tokens > 0
            ? std::min(prompt.size(),
                       static_cast<size_t>(options.prefill_tokens))
            : prompt.size();
    std::vector<float> prompt_logits;
    size_t vocab = 0;
    bool prompt_failed = false;
    const auto prefill_start = std::chrono::steady_clock::now();
    for (size_t next = 0; next < prompt.size() && !prompt_failed;) {
      tessel_status_t status =
          next == 0
              ? tessel_session_prefill(session, prompt.data(), head)
              : tessel_session_decode(session, prompt[next]);
      next += next == 0 ? head : 1;
      if (Failed(status, "running the prompt failed")) {
        prompt_failed = true;
        break;
      }
      if (options.logits_out.empty()) continue;
      const float* logits = nullptr;
      size_t rows = 0;
      prompt_failed =
          Failed(tessel_session_get_logits(session, &logits, &rows, &vocab),
                 "no logits");
      if (!prompt_failed) {
        prompt_logits.insert(prompt_logits.end(), logits,
                             logits + rows * vocab);
      }
    }
    if (prompt_failed) break;
    const double prefill_seconds = Seconds(prefill_start);
    if (!options.logits_out.empty() &&
        !WriteNpy(options.logits_out, prompt_logits.data(),
                  prompt.size(), vocab)) {
      break;
    }

    std::vector<int32_t> generated;
    bool failed = false;
    // Special tokens are not shown (HF TextStreamer, skip_special_tokens=True).
    std::unique_ptr<tessel::StreamingDetokenizer> detokenizer;
    if (text) {
      detokenizer = std::make_unique<tessel::StreamingDetokenizer>(
          *text_mode.tokenizer, /*skip_special_tokens=*/true);
    }
    const auto decode_start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
      int32_t token = -1;
      if (Failed(tessel_session_sample(session, &options.sampling, &token),
                 "sampling failed")) {
        failed = true;
        break;
      }
      generated.push_back(token);
      bool eos = false;
      for (int32_t e = 0; e < info.num_eos_token_ids; ++e)
        eos |= info.eos_token_ids[e] == token;
      if (text) {
        eos |= std::find(text_mode.stop_ids.begin(), text_mode.stop_ids.end(),
                         token) != text_mode.stop_ids.end();
        // The stop token itself is not shown; everything else streams as
        // soon as its characters are complete.
        if (!(eos && options.stop_at_eos)) {
          absl::StatusOr<std::string> chunk = detokenizer->Feed(token);
          if (!chunk.ok()) {
            Fail("cannot detokenize: " + std::string(chunk.status().message()));
            failed = true;
            break;
          }
          std::fputs(chunk->c_str(), stdout);
          std::fflush(stdout);
        }
      }
      if ((eos && options.stop_at_eos) || i + 1 == options.max_new_tokens)
        break;
      tessel_status_t status = tessel_session_decode(session, token);
      if (tessel_status_code(status) == TESSEL_OUT_OF_RANGE) {
        std::fprintf(stderr, "tessel-run: stopping: %s\n",
                     tessel_status_message(status));
        tessel_status_release(status);
        break;
      }
      if (Failed(status, "decode failed")) {
        failed = true;
        break;
      }
    }
    const double decode_seconds = Seconds(decode_start);
    if (text) {
      absl::StatusOr<std::string> rest = detokenizer->Finish();
      if (rest.ok()) {
        std::fputs(rest->c_str(), stdout);
      } else {
        Fail("cannot detokenize: " + std::string(rest.status().message()));
        failed = true;
      }
    } else {
      for (size_t i = 0; i < generated.size(); ++i) {
        std::printf(i == 0 ? "%" PRId32 : " %" PRId32, generated[i]);
      }
    }
    std::printf("\n");
    std::fflush(stdout);
    if (failed) break;
    if (options.bench) {
      const size_t steps = generated.empty() ? 0 : generated.size() - 1;
      std::fprintf(stderr,
                   "load %.3f s | prefill %zu tokens %.3f s (%.1f tok/s) | "
                   "decode %zu steps "
                   "%.3f s (%.1f tok/s)\n",
                   load_seconds, prompt.size(), prefill_seconds,
                   prompt.size() / prefill_seconds, steps,
                   decode_seconds, steps > 0 ? steps / decode_seconds : 0.0);
    }
    rc = 0;
  } while (false);
  tessel_session_release(session);
  tessel_model_release(model);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  bool help = false;
  if (!ParseArgs(argc, argv, &options, &help)) return 2;
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return Run(options);
}
