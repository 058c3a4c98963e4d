// Implements the C API of runtime/include/tessel/tessel.h on top of the C++
// runtime. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include "tessel/tessel.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <new>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/executor.h"
#include "runtime/plan/loader.h"
#if defined(TESSEL_HAVE_CUDA)
#include "runtime/cuda/executor.h"
#endif

struct tessel_status_s {
  tessel_status_code_t code;
  std::string message;
};

// Exactly one of the executors' models is set.
struct tessel_model_s {
  std::shared_ptr<const tessel::cpu::CpuModel> model;
#if defined(TESSEL_HAVE_CUDA)
  std::shared_ptr<const tessel::cuda::CudaModel> cuda;
#endif
  std::string model_type;
  const tessel::plan::ModelInfo& info() const {
#if defined(TESSEL_HAVE_CUDA)
    if (cuda) return cuda->info();
#endif
    return model->info();
  }
  int64_t max_context() const {
#if defined(TESSEL_HAVE_CUDA)
    if (cuda) return cuda->max_context();
#endif
    return model->max_context();
  }
};

struct tessel_session_s {
  std::unique_ptr<tessel::cpu::CpuSession> session;  // CPU
#if defined(TESSEL_HAVE_CUDA)
  std::unique_ptr<tessel::cuda::CudaSession> cuda;  // or CUDA
#endif
  // The sampler's generator: SplitMix64 (Steele et al., "Fast splittable
  // pseudorandom number generators", OOPSLA 2014), chosen for identical streams
  // on every platform, which std::uniform_real_distribution does not promise.
  uint64_t rng_state = 0;
  uint64_t rng_seed = 0;
  bool rng_seeded = false;
};

namespace tessel {

/// Converts an absl::Status into a C status handle (NULL for OK).
tessel_status_t ToCStatus(const absl::Status& status) {
  if (status.ok()) return nullptr;
  return new (std::nothrow)
      tessel_status_s{static_cast<tessel_status_code_t>(status.code()),
                      std::string(status.message())};
}

namespace {

tessel_status_t NullArgument(const char* function, const char* argument) {
  return ToCStatus(absl::InvalidArgumentError(
      absl::StrCat(function, ": argument '", argument, "' is NULL")));
}

// Runs `body` so that no exception (an allocation failure in the standard
// library) crosses the C boundary.
template <typename Body>
tessel_status_t Guard(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return ToCStatus(absl::ResourceExhaustedError("out of memory"));
  } catch (const std::exception& e) {
    return ToCStatus(
        absl::InternalError(absl::StrCat("unexpected error: ", e.what())));
  }
}

uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A uniform double in [0, 1) from the top 53 bits.
double NextUniform(uint64_t& state) {
  return static_cast<double>(NextRandom(state) >> 11) * 0x1.0p-53;
}

int32_t Argmax(const float* row, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (row[i] > row[best] || std::isnan(row[best])) best = i;
  }
  return static_cast<int32_t>(best);
}

// Temperature, then top-k, then top-p (nucleus; Holtzman et al. 2019) over one
// row of logits. O(vocab log k) for the top-k selection.
int32_t SampleRow(const float* row, int64_t vocab,
                  const tessel_sampling_t& params, uint64_t& rng) {
  if (params.temperature <= 0.0f || params.top_k == 1)
    return Argmax(row, vocab);
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  const auto more_likely = [row](int32_t a, int32_t b) {
    const float la = std::isnan(row[a]) ? -INFINITY : row[a];
    const float lb = std::isnan(row[b]) ? -INFINITY : row[b];
    return la > lb || (la == lb && a < b);
  };
  const int64_t keep =
      params.top_k > 0 ? std::min<int64_t>(params.top_k, vocab) : vocab;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), more_likely);
  ids.resize(keep);

  std::vector<double> probs(keep);
  const double top = row[ids[0]];
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    const double logit = std::isnan(row[ids[i]]) ? -INFINITY : row[ids[i]];
    probs[i] = std::exp((logit - top) / params.temperature);
    total += probs[i];
  }
  int64_t kept = keep;
  if (params.top_p > 0.0f && params.top_p < 1.0f) {
    double cumulative = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= params.top_p) {
        kept = i + 1;
        break;
      }
    }
    total = std::accumulate(probs.begin(), probs.begin() + kept, 0.0);
  }
  if (!(total > 0.0) || !std::isfinite(total)) return ids[0];
  double target = NextUniform(rng) * total;
  for (int64_t i = 0; i < kept; ++i) {
    target -= probs[i];
    if (target < 0.0) return ids[i];
  }
  return ids[kept - 1];
}

}  // namespace
}  // namespace tessel

using tessel::Guard;
using tessel::NullArgument;
using tessel::ToCStatus;

extern "C" {

tessel_status_code_t tessel_status_code(tessel_status_t status) {
  return status ? status->code : TESSEL_OK;
}

const char* tessel_status_message(tessel_status_t status) {
  return status ? status->message.c_str() : "";
}

void tessel_status_release(tessel_status_t status) { delete status; }

const char* tessel_version_string(void) { return TESSEL_VERSION_STRING; }

void tessel_version(int32_t* out_major, int32_t* out_minor,
                    int32_t* out_patch) {
  if (out_major) *out_major = TESSEL_VERSION_MAJOR;
  if (out_minor) *out_minor = TESSEL_VERSION_MINOR;
  if (out_patch) *out_patch = TESSEL_VERSION_PATCH;
}

tessel_status_t tessel_model_load(const char* artifact_dir,
                                  const tessel_model_options_t* options,
                                  tessel_model_t* out_model) {
  if (out_model == nullptr)
    return NullArgument("tessel_model_load", "out_model");
  *out_model = nullptr;
  if (artifact_dir == nullptr)
    return NullArgument("tessel_model_load", "artifact_dir");
  const tessel_model_options_t defaults = {TESSEL_DEVICE_CPU, 0, 0, false};
  if (options == nullptr) options = &defaults;
  return Guard([&]() -> tessel_status_t {
    if (options->device == TESSEL_DEVICE_CUDA) {
#if defined(TESSEL_HAVE_CUDA)
      tessel::LoadOptions load_options;
      load_options.verify_checksums = options->skip_checksums == 0;
      tessel::cuda::CudaModelOptions cuda_options;
      cuda_options.dummy_weights = options->dummy_weights;
      auto model =
          tessel::cuda::CudaModel::Load(artifact_dir, load_options, cuda_options);
      if (!model.ok()) return ToCStatus(model.status());
      auto handle = std::make_unique<tessel_model_s>();
      const flatbuffers::String* type = (*model)->info().model_type();
      handle->model_type = type ? type->str() : "";
      handle->cuda = std::move(*model);
      *out_model = handle.release();
      return nullptr;
#else
      return ToCStatus(absl::UnimplementedError(
          "the CUDA executor is not part of this build yet; use device cpu"));
#endif
    }
    if (options->dummy_weights) {
      return ToCStatus(absl::InvalidArgumentError(
          "tessel_model_load: dummy_weights needs TESSEL_DEVICE_CUDA"));
    }
    if (options->device != TESSEL_DEVICE_CPU) {
      return ToCStatus(absl::InvalidArgumentError(
          absl::StrCat("tessel_model_load: unknown device ",
                       static_cast<int>(options->device))));
    }
    tessel::LoadOptions load_options;
    load_options.verify_checksums = options->skip_checksums == 0;
    auto artifact = tessel::LoadArtifact(artifact_dir, load_options);
    if (!artifact.ok()) return ToCStatus(artifact.status());
    tessel::cpu::CpuModelOptions model_options;
    model_options.threads = options->threads;
    auto model =
        tessel::cpu::CpuModel::Create(std::move(*artifact), model_options);
    if (!model.ok()) return ToCStatus(model.status());
    auto handle = std::make_unique<tessel_model_s>();
    const flatbuffers::String* type = (*model)->info().model_type();
    handle->model_type = type ? type->str() : "";
    handle->model = std::move(*model);
    *out_model = handle.release();
    return nullptr;
  });
}

void tessel_model_release(tessel_model_t model) { delete model; }

tessel_status_t tessel_model_get_info(tessel_model_t model,
                                      tessel_model_info_t* out_info) {
  if (model == nullptr) return NullArgument("tessel_model_get_info", "model");
  if (out_info == nullptr)
    return NullArgument("tessel_model_get_info", "out_info");
  const tessel::plan::ModelInfo& info = model->info();
  *out_info = tessel_model_info_t{};
  out_info->vocab_size = info.vocab_size();
  out_info->max_context = model->max_context();
  out_info->num_layers = info.num_layers();
  out_info->bos_token_id = static_cast<int32_t>(info.bos_token_id());
  if (info.eos_token_ids() != nullptr) {
    for (int64_t eos : *info.eos_token_ids()) {
      if (out_info->num_eos_token_ids == TESSEL_MAX_EOS_TOKENS) break;
      out_info->eos_token_ids[out_info->num_eos_token_ids++] =
          static_cast<int32_t>(eos);
    }
  }
  out_info->model_type = model->model_type.c_str();
  return nullptr;
}

tessel_status_t tessel_session_create(tessel_model_t model,
                                      const tessel_session_options_t* options,
                                      tessel_session_t* out_session) {
  if (out_session == nullptr)
    return NullArgument("tessel_session_create", "out_session");
  *out_session = nullptr;
  if (model == nullptr) return NullArgument("tessel_session_create", "model");
  return Guard([&]() -> tessel_status_t {
    tessel::cpu::CpuSessionOptions session_options;
    int64_t max_batch = 1;
    if (options != nullptr) {
      if (options->max_context < 0) {
        return ToCStatus(absl::InvalidArgumentError(
            absl::StrCat("tessel_session_create: max_context is ",
                         options->max_context, ", expected >= 0")));
      }
      if (options->max_batch < 0) {
        return ToCStatus(absl::InvalidArgumentError(
            absl::StrCat("tessel_session_create: max_batch is ",
                         options->max_batch, ", expected >= 0")));
      }
      session_options.max_context = options->max_context;
      max_batch = std::max<int64_t>(1, options->max_batch);
    }
#if defined(TESSEL_HAVE_CUDA)
    if (model->cuda) {
      tessel::cuda::CudaSessionOptions cuda_options;
      cuda_options.max_context = session_options.max_context;
      cuda_options.max_batch = max_batch;
      auto session = tessel::cuda::CudaSession::Create(model->cuda, cuda_options);
      if (!session.ok()) return ToCStatus(session.status());
      auto handle = std::make_unique<tessel_session_s>();
      handle->cuda = std::move(*session);
      *out_session = handle.release();
      return nullptr;
    }
#endif
    if (max_batch > 1) {
      return ToCStatus(absl::UnimplementedError(
          "tessel_session_create: max_batch > 1 needs TESSEL_DEVICE_CUDA"));
    }
    auto session =
        tessel::cpu::CpuSession::Create(model->model, session_options);
    if (!session.ok()) return ToCStatus(session.status());
    auto handle = std::make_unique<tessel_session_s>();
    handle->session = std::move(*session);
    *out_session = handle.release();
    return nullptr;
  });
}

void tessel_session_release(tessel_session_t session) { delete session; }

tessel_status_t tessel_session_prefill(tessel_session_t session,
                                       const int32_t* tokens, size_t count) {
  if (session == nullptr)
    return NullArgument("tessel_session_prefill", "session");
  if (tokens == nullptr)
    return NullArgument("tessel_session_prefill", "tokens");
  if (count == 0) {
    return ToCStatus(
        absl::InvalidArgumentError("tessel_session_prefill: count is 0"));
  }
  return Guard([&] {
#if defined(TESSEL_HAVE_CUDA)
    if (session->cuda) return ToCStatus(session->cuda->Prefill({tokens, count}));
#endif
    return ToCStatus(session->session->Prefill({tokens, count}));
  });
}

tessel_status_t tessel_session_decode(tessel_session_t session, int32_t token) {
  if (session == nullptr)
    return NullArgument("tessel_session_decode", "session");
  return Guard([&] {
#if defined(TESSEL_HAVE_CUDA)
    if (session->cuda) return ToCStatus(session->cuda->Decode(token));
#endif
    return ToCStatus(session->session->Decode(token));
  });
}

tessel_status_t tessel_session_get_logits(tessel_session_t session,
                                          const float** out_logits,
                                          size_t* out_rows, size_t* out_vocab) {
  if (session == nullptr)
    return NullArgument("tessel_session_get_logits", "session");
  if (out_logits == nullptr)
    return NullArgument("tessel_session_get_logits", "out_logits");
  if (out_rows == nullptr)
    return NullArgument("tessel_session_get_logits", "out_rows");
  if (out_vocab == nullptr)
    return NullArgument("tessel_session_get_logits", "out_vocab");
#if defined(TESSEL_HAVE_CUDA)
  if (session->cuda) {
    if (session->cuda->logits_rows() == 0) {
      return ToCStatus(absl::FailedPreconditionError(
          "tessel_session_get_logits: no logits yet; call tessel_session_prefill or "
          "tessel_session_decode first"));
    }
    return Guard([&]() -> tessel_status_t {
      auto logits = session->cuda->Logits();
      if (!logits.ok()) return ToCStatus(logits.status());
      *out_logits = logits->data();
      *out_rows = static_cast<size_t>(session->cuda->logits_rows());
      *out_vocab = static_cast<size_t>(session->cuda->vocab_size());
      return nullptr;
    });
  }
#endif
  if (session->session->logits_rows() == 0) {
    return ToCStatus(
        absl::FailedPreconditionError("tessel_session_get_logits: no logits "
                                      "yet; call tessel_session_prefill or "
                                      "tessel_session_decode first"));
  }
  *out_logits = session->session->logits().data();
  *out_rows = static_cast<size_t>(session->session->logits_rows());
  *out_vocab = static_cast<size_t>(session->session->vocab_size());
  return nullptr;
}

tessel_status_t tessel_session_sample(tessel_session_t session,
                                      const tessel_sampling_t* params,
                                      int32_t* out_token) {
  if (session == nullptr)
    return NullArgument("tessel_session_sample", "session");
  if (params == nullptr) return NullArgument("tessel_session_sample", "params");
  if (out_token == nullptr)
    return NullArgument("tessel_session_sample", "out_token");
#if defined(TESSEL_HAVE_CUDA)
  if (session->cuda) {
    if (session->cuda->logits_rows() == 0) {
      return ToCStatus(absl::FailedPreconditionError(
          "tessel_session_sample: no logits yet; call tessel_session_prefill or "
          "tessel_session_decode first"));
    }
    if (std::isnan(params->temperature) || params->top_k < 0 ||
        std::isnan(params->top_p) || params->top_p < 0.0f) {
      return ToCStatus(absl::InvalidArgumentError(
          "tessel_session_sample: invalid parameters; expected temperature >= 0, "
          "top_k >= 0, top_p in [0, 1]"));
    }
    if (!session->rng_seeded || session->rng_seed != params->seed) {
      session->rng_state = params->seed;
      session->rng_seed = params->seed;
      session->rng_seeded = true;
    }
    return Guard([&]() -> tessel_status_t {
      if (params->temperature <= 0.0f || params->top_k == 1) {
        // Greedy: argmax on the GPU, only the id comes back (the logits stay there).
        auto tokens = session->cuda->GreedyTokens();
        if (!tokens.ok()) return ToCStatus(tokens.status());
        *out_token = tokens->back();
        return nullptr;
      }
      auto logits = session->cuda->Logits();
      if (!logits.ok()) return ToCStatus(logits.status());
      const int64_t vocab = session->cuda->vocab_size();
      *out_token = tessel::SampleRow(logits->data() + logits->size() - vocab, vocab,
                                     *params, session->rng_state);
      return nullptr;
    });
  }
#endif
  const tessel::cpu::CpuSession& s = *session->session;
  if (s.logits_rows() == 0) {
    return ToCStatus(absl::FailedPreconditionError(
        "tessel_session_sample: no logits yet; call tessel_session_prefill or "
        "tessel_session_decode first"));
  }
  if (std::isnan(params->temperature) || params->top_k < 0 ||
      std::isnan(params->top_p) || params->top_p < 0.0f) {
    return ToCStatus(absl::InvalidArgumentError(absl::StrCat(
        "tessel_session_sample: invalid parameters (temperature ",
        params->temperature, ", top_k ", params->top_k, ", top_p ",
        params->top_p,
        "); expected temperature >= 0, top_k >= 0, top_p in [0, 1]")));
  }
  if (!session->rng_seeded || session->rng_seed != params->seed) {
    session->rng_state = params->seed;
    session->rng_seed = params->seed;
    session->rng_seeded = true;
  }
  return Guard([&]() -> tessel_status_t {
    const int64_t vocab = s.vocab_size();
    const float* last_row = s.logits().data() + (s.logits_rows() - 1) * vocab;
    *out_token =
        tessel::SampleRow(last_row, vocab, *params, session->rng_state);
    return nullptr;
  });
}

tessel_status_t tessel_session_reset(tessel_session_t session) {
  if (session == nullptr)
    return NullArgument("tessel_session_reset", "session");
#if defined(TESSEL_HAVE_CUDA)
  if (session->cuda) session->cuda->Reset();
#endif
  if (session->session) session->session->Reset();
  session->rng_seeded = false;
  return nullptr;
}

tessel_status_t tessel_session_position(tessel_session_t session,
                                        int64_t* out_position) {
  if (session == nullptr)
    return NullArgument("tessel_session_position", "session");
  if (out_position == nullptr)
    return NullArgument("tessel_session_position", "out_position");
#if defined(TESSEL_HAVE_CUDA)
  if (session->cuda) {
    *out_position = session->cuda->position();
    return nullptr;
  }
#endif
  *out_position = session->session->position();
  return nullptr;
}

tessel_status_t tessel_session_prefill_batch(tessel_session_t session,
                                             const int32_t* tokens, size_t batch,
                                             size_t count) {
  if (session == nullptr)
    return NullArgument("tessel_session_prefill_batch", "session");
  if (tokens == nullptr)
    return NullArgument("tessel_session_prefill_batch", "tokens");
  if (batch == 0 || count == 0) {
    return ToCStatus(absl::InvalidArgumentError(
        "tessel_session_prefill_batch: batch and count must be >= 1"));
  }
  return Guard([&]() -> tessel_status_t {
#if defined(TESSEL_HAVE_CUDA)
    if (session->cuda) {
      return ToCStatus(session->cuda->PrefillBatch(
          {tokens, batch * count}, static_cast<int64_t>(batch)));
    }
#endif
    if (batch != 1) {
      return ToCStatus(absl::UnimplementedError(
          "tessel_session_prefill_batch: batches need TESSEL_DEVICE_CUDA"));
    }
    return ToCStatus(session->session->Prefill({tokens, count}));
  });
}

tessel_status_t tessel_session_decode_batch(tessel_session_t session,
                                            const int32_t* tokens, size_t batch) {
  if (session == nullptr)
    return NullArgument("tessel_session_decode_batch", "session");
  if (tokens == nullptr)
    return NullArgument("tessel_session_decode_batch", "tokens");
  if (batch == 0) {
    return ToCStatus(absl::InvalidArgumentError(
        "tessel_session_decode_batch: batch must be >= 1"));
  }
  return Guard([&]() -> tessel_status_t {
#if defined(TESSEL_HAVE_CUDA)
    if (session->cuda)
      return ToCStatus(session->cuda->DecodeBatch({tokens, batch}));
#endif
    if (batch != 1) {
      return ToCStatus(absl::UnimplementedError(
          "tessel_session_decode_batch: batches need TESSEL_DEVICE_CUDA"));
    }
    return ToCStatus(session->session->Decode(tokens[0]));
  });
}

tessel_status_t tessel_session_greedy_batch(tessel_session_t session,
                                            int32_t* out_tokens, size_t batch) {
  if (session == nullptr)
    return NullArgument("tessel_session_greedy_batch", "session");
  if (out_tokens == nullptr)
    return NullArgument("tessel_session_greedy_batch", "out_tokens");
  return Guard([&]() -> tessel_status_t {
#if defined(TESSEL_HAVE_CUDA)
    if (session->cuda) {
      auto tokens = session->cuda->GreedyTokens();
      if (!tokens.ok()) return ToCStatus(tokens.status());
      if (tokens->size() != batch) {
        return ToCStatus(absl::InvalidArgumentError(absl::StrCat(
            "tessel_session_greedy_batch: the last call ran ", tokens->size(),
            " sequences, not ", batch)));
      }
      std::copy(tokens->begin(), tokens->end(), out_tokens);
      return nullptr;
    }
#endif
    const tessel::cpu::CpuSession& s = *session->session;
    if (s.logits_rows() == 0 || batch != 1) {
      return ToCStatus(absl::FailedPreconditionError(
          "tessel_session_greedy_batch: no logits of one sequence yet"));
    }
    out_tokens[0] = tessel::Argmax(
        s.logits().data() + (s.logits_rows() - 1) * s.vocab_size(), s.vocab_size());
    return nullptr;
  });
}

}  // extern "C"
