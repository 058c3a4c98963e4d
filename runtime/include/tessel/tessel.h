/* tessel runtime C API: the stable surface serving binaries link against. */
/* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception */
#ifndef TESSEL_TESSEL_H_
#define TESSEL_TESSEL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(TESSEL_BUILDING_RUNTIME)
#define TESSEL_API __attribute__((visibility("default")))
#else
#define TESSEL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes; values follow absl::StatusCode so they map one to one. */
typedef enum tessel_status_code_e {
  TESSEL_OK = 0,
  TESSEL_CANCELLED = 1,
  TESSEL_UNKNOWN = 2,
  TESSEL_INVALID_ARGUMENT = 3,
  TESSEL_DEADLINE_EXCEEDED = 4,
  TESSEL_NOT_FOUND = 5,
  TESSEL_ALREADY_EXISTS = 6,
  TESSEL_PERMISSION_DENIED = 7,
  TESSEL_RESOURCE_EXHAUSTED = 8,
  TESSEL_FAILED_PRECONDITION = 9,
  TESSEL_ABORTED = 10,
  TESSEL_OUT_OF_RANGE = 11,
  TESSEL_UNIMPLEMENTED = 12,
  TESSEL_INTERNAL = 13,
  TESSEL_UNAVAILABLE = 14,
  TESSEL_DATA_LOSS = 15,
} tessel_status_code_t;

/* An error: a code and a message. NULL means success. Release with
 * tessel_status_release. */
typedef struct tessel_status_s* tessel_status_t;

TESSEL_API tessel_status_code_t tessel_status_code(tessel_status_t status);
/* The message, valid until the status is released; "" for NULL (success). */
TESSEL_API const char* tessel_status_message(tessel_status_t status);
TESSEL_API void tessel_status_release(tessel_status_t status);

/* Library version, e.g. "0.1.0". */
TESSEL_API const char* tessel_version_string(void);
TESSEL_API void tessel_version(int32_t* out_major, int32_t* out_minor,
                               int32_t* out_patch);

/* ---- Models and sessions
 * --------------------------------------------------------------- A model is a
 * loaded artifact (plan + weights) on a device; a session is one sequence
 * decoding with it (its KV cache, position and last logits). Create/release
 * pairs; a session keeps its model alive, so either may be released first.
 * Sessions of one model may live on different threads; their calls run one at a
 * time. Every function returns NULL on success or a status the caller releases;
 * NULL arguments give TESSEL_INVALID_ARGUMENT naming the argument.
 * Zero-initialized option structs mean the defaults. */

typedef struct tessel_model_s* tessel_model_t;
typedef struct tessel_session_s* tessel_session_t;

typedef enum tessel_device_e {
  TESSEL_DEVICE_CPU = 0, /* the f32 reference executor */
  TESSEL_DEVICE_CUDA = 1, /* one NVIDIA GPU, bf16 (llama/mistral/qwen2/mixtral plans);
                            builds without CUDA give TESSEL_UNIMPLEMENTED */
} tessel_device_t;

typedef struct tessel_model_options_s {
  tessel_device_t device; /* default TESSEL_DEVICE_CPU */
  int32_t threads;        /* CPU worker threads; 0 = one per hardware thread */
  int32_t
      skip_checksums; /* nonzero: do not verify the weights' FNV-1a checksums */
  bool dummy_weights;  /* TESSEL_DEVICE_CUDA only: read no weights file; fill every
                          weight on the GPU with seeded random values (normal, std 0.02;
                          norm weights around 1). For benchmarks at real sizes, with
                          artifacts from tessel-compile --weights=none. The outputs are
                          meaningless. */
} tessel_model_options_t;

#define TESSEL_MAX_EOS_TOKENS 8

typedef struct tessel_model_info_s {
  int64_t vocab_size;
  int64_t max_context; /* the longest context a session can hold, in tokens */
  int64_t num_layers;
  int32_t bos_token_id; /* -1 if none */
  int32_t num_eos_token_ids;
  int32_t eos_token_ids[TESSEL_MAX_EOS_TOKENS];
  const char*
      model_type; /* "llama", "qwen2", ...; valid while the model lives */
} tessel_model_info_t;

typedef struct tessel_session_options_s {
  int64_t max_context; /* KV cache capacity in tokens; 0 = the model's
                          max_context */
  int64_t max_batch;   /* sequences for the batched calls below; 0 or 1 = one.
                          More than one needs TESSEL_DEVICE_CUDA. */
} tessel_session_options_t;

typedef struct tessel_sampling_s {
  float temperature; /* <= 0: greedy (argmax; ties pick the lowest id) */
  int32_t top_k;     /* keep the k most likely tokens; 0 = all */
  float top_p;   /* keep the smallest set with probability >= top_p; 0 or >= 1 =
                    all */
  uint64_t seed; /* seeds the session's generator (see tessel_session_sample) */
} tessel_sampling_t;

/* Loads the artifact directory (plan.tsl + weight files). options may be NULL
 * (defaults). */
TESSEL_API tessel_status_t tessel_model_load(
    const char* artifact_dir, const tessel_model_options_t* options,
    tessel_model_t* out_model);
/* Releases the caller's reference; NULL is a no-op. */
TESSEL_API void tessel_model_release(tessel_model_t model);
TESSEL_API tessel_status_t tessel_model_get_info(tessel_model_t model,
                                                 tessel_model_info_t* out_info);

/* options may be NULL (context = the model's max_context). */
TESSEL_API tessel_status_t tessel_session_create(
    tessel_model_t model, const tessel_session_options_t* options,
    tessel_session_t* out_session);
TESSEL_API void tessel_session_release(tessel_session_t session);

/* Runs count (>= 1) tokens at the session's position and advances it; the
 * logits of every token are kept. TESSEL_OUT_OF_RANGE if the context would
 * overflow (nothing changes), TESSEL_INVALID_ARGUMENT for ids outside [0,
 * vocab_size). */
TESSEL_API tessel_status_t tessel_session_prefill(tessel_session_t session,
                                                  const int32_t* tokens,
                                                  size_t count);
/* Runs one token (the decode entry point). */
TESSEL_API tessel_status_t tessel_session_decode(tessel_session_t session,
                                                 int32_t token);
/* The last call's logits, [rows, vocab] row-major f32, valid until the next
 * call on the session. TESSEL_FAILED_PRECONDITION before the first call. */
TESSEL_API tessel_status_t tessel_session_get_logits(tessel_session_t session,
                                                     const float** out_logits,
                                                     size_t* out_rows,
                                                     size_t* out_vocab);
/* Samples a token from the last row of logits. The generator is seeded with
 * params->seed on the first call, whenever the seed differs from the previous
 * call's, and after tessel_session_reset: equal seeds and calls give equal
 * tokens on every platform. */
TESSEL_API tessel_status_t
tessel_session_sample(tessel_session_t session, const tessel_sampling_t* params,
                      int32_t* out_token);
/* Forgets the sequence: position 0, no logits. */
TESSEL_API tessel_status_t tessel_session_reset(tessel_session_t session);
/* ---- Batched calls (experimental; TESSEL_DEVICE_CUDA; used by tessel-run --bench)
 * The session's max_batch sequences advance in lockstep: one position for all of
 * them. tokens is [batch, count] row-major (batch <= max_batch, every prompt of
 * the same length). tessel_session_greedy_batch writes the argmax of each
 * sequence's last logits row (computed on the GPU; it waits for the GPU, so it
 * also bounds timings). tessel_session_get_logits returns [batch * count, vocab]
 * after a batched call. */
TESSEL_API tessel_status_t tessel_session_prefill_batch(tessel_session_t session,
                                                        const int32_t* tokens,
                                                        size_t batch, size_t count);
TESSEL_API tessel_status_t tessel_session_decode_batch(tessel_session_t session,
                                                       const int32_t* tokens,
                                                       size_t batch);
TESSEL_API tessel_status_t tessel_session_greedy_batch(tessel_session_t session,
                                                       int32_t* out_tokens,
                                                       size_t batch);

/* Tokens in the session's context so far. */
TESSEL_API tessel_status_t tessel_session_position(tessel_session_t session,
                                                   int64_t* out_position);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TESSEL_TESSEL_H_
