// Tests the C API surface of libtessel_runtime: versions, statuses, models,
// sessions, sampling. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tessel/tessel.h"
#include "tessel/tessel.hpp"
#include "tests/runtime/plan_test_util.h"

namespace {

TEST(CApiTest, VersionStringMatchesNumbers) {
  int32_t major = -1, minor = -1, patch = -1;
  tessel_version(&major, &minor, &patch);
  EXPECT_GE(major, 0);
  EXPECT_GE(minor, 0);
  EXPECT_GE(patch, 0);
  std::string expected = std::to_string(major) + "." + std::to_string(minor) +
                         "." + std::to_string(patch);
  EXPECT_EQ(expected, tessel_version_string());
}

TEST(CApiTest, VersionAcceptsNullOutParameters) {
  int32_t minor = -1;
  tessel_version(nullptr, &minor, nullptr);
  EXPECT_GE(minor, 0);
}

TEST(CApiTest, NullStatusIsSuccess) {
  EXPECT_EQ(tessel_status_code(nullptr), TESSEL_OK);
  EXPECT_STREQ(tessel_status_message(nullptr), "");
  tessel_status_release(nullptr);  // must be a no-op
}

// --- Models and sessions
// -----------------------------------------------------------------

// Owns a status handle; reports code and message.
struct StatusHolder {
  explicit StatusHolder(tessel_status_t status) : status(status) {}
  ~StatusHolder() { tessel_status_release(status); }
  tessel_status_code_t code() const { return tessel_status_code(status); }
  std::string message() const { return tessel_status_message(status); }
  tessel_status_t status;
};

#define EXPECT_TESSEL_OK(expr)                                 \
  do {                                                         \
    StatusHolder holder_(expr);                                \
    EXPECT_EQ(holder_.code(), TESSEL_OK) << holder_.message(); \
  } while (0)

// Expects `expr` to fail with `code` and a message containing `text`.
#define EXPECT_TESSEL_ERROR(expr, expected_code, text)             \
  do {                                                             \
    StatusHolder holder_(expr);                                    \
    EXPECT_EQ(holder_.code(), expected_code) << holder_.message(); \
    EXPECT_NE(holder_.message().find(text), std::string::npos)     \
        << "message: " << holder_.message();                       \
  } while (0)

// A toy artifact (see tests/runtime/plan_test_util.h) in a temporary directory.
class CApiModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        std::filesystem::temp_directory_path() / "tessel_c_api_XXXXXX";
    dir_ = mkdtemp(pattern.data());
    tessel::testing::WriteToyArtifact(
        tessel::testing::BuildToyArtifact({.attention = true, .context = 8}),
        dir_);
    StatusHolder status(tessel_model_load(dir_.c_str(), nullptr, &model_));
    ASSERT_EQ(status.code(), TESSEL_OK) << status.message();
    StatusHolder session(tessel_session_create(model_, nullptr, &session_));
    ASSERT_EQ(session.code(), TESSEL_OK) << session.message();
  }
  void TearDown() override {
    tessel_session_release(session_);
    tessel_model_release(model_);
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  tessel_model_t model_ = nullptr;
  tessel_session_t session_ = nullptr;
};

TEST_F(CApiModelTest, NullArgumentsAreInvalidAndNamed) {
  tessel_model_t model = nullptr;
  tessel_session_t session = nullptr;
  tessel_model_info_t info;
  const float* logits;
  size_t rows, vocab;
  int32_t token;
  int64_t position;
  const int32_t ids[1] = {1};
  tessel_sampling_t sampling = {};
  EXPECT_TESSEL_ERROR(tessel_model_load(nullptr, nullptr, &model),
                      TESSEL_INVALID_ARGUMENT, "artifact_dir");
  EXPECT_TESSEL_ERROR(tessel_model_load(dir_.c_str(), nullptr, nullptr),
                      TESSEL_INVALID_ARGUMENT, "out_model");
  EXPECT_TESSEL_ERROR(tessel_model_get_info(nullptr, &info),
                      TESSEL_INVALID_ARGUMENT, "model");
  EXPECT_TESSEL_ERROR(tessel_model_get_info(model_, nullptr),
                      TESSEL_INVALID_ARGUMENT, "out_info");
  EXPECT_TESSEL_ERROR(tessel_session_create(nullptr, nullptr, &session),
                      TESSEL_INVALID_ARGUMENT, "'model'");
  EXPECT_TESSEL_ERROR(tessel_session_create(model_, nullptr, nullptr),
                      TESSEL_INVALID_ARGUMENT, "out_session");
  EXPECT_TESSEL_ERROR(tessel_session_prefill(nullptr, ids, 1),
                      TESSEL_INVALID_ARGUMENT, "session");
  EXPECT_TESSEL_ERROR(tessel_session_prefill(session_, nullptr, 1),
                      TESSEL_INVALID_ARGUMENT, "tokens");
  EXPECT_TESSEL_ERROR(tessel_session_prefill(session_, ids, 0),
                      TESSEL_INVALID_ARGUMENT, "count");
  EXPECT_TESSEL_ERROR(tessel_session_decode(nullptr, 1),
                      TESSEL_INVALID_ARGUMENT, "session");
  EXPECT_TESSEL_ERROR(
      tessel_session_get_logits(nullptr, &logits, &rows, &vocab),
      TESSEL_INVALID_ARGUMENT, "session");
  EXPECT_TESSEL_ERROR(
      tessel_session_get_logits(session_, nullptr, &rows, &vocab),
      TESSEL_INVALID_ARGUMENT, "out_logits");
  EXPECT_TESSEL_ERROR(
      tessel_session_get_logits(session_, &logits, nullptr, &vocab),
      TESSEL_INVALID_ARGUMENT, "out_rows");
  EXPECT_TESSEL_ERROR(
      tessel_session_get_logits(session_, &logits, &rows, nullptr),
      TESSEL_INVALID_ARGUMENT, "out_vocab");
  EXPECT_TESSEL_ERROR(tessel_session_sample(nullptr, &sampling, &token),
                      TESSEL_INVALID_ARGUMENT, "session");
  EXPECT_TESSEL_ERROR(tessel_session_sample(session_, nullptr, &token),
                      TESSEL_INVALID_ARGUMENT, "params");
  EXPECT_TESSEL_ERROR(tessel_session_sample(session_, &sampling, nullptr),
                      TESSEL_INVALID_ARGUMENT, "out_token");
  EXPECT_TESSEL_ERROR(tessel_session_reset(nullptr), TESSEL_INVALID_ARGUMENT,
                      "session");
  EXPECT_TESSEL_ERROR(tessel_session_position(nullptr, &position),
                      TESSEL_INVALID_ARGUMENT, "session");
  EXPECT_TESSEL_ERROR(tessel_session_position(session_, nullptr),
                      TESSEL_INVALID_ARGUMENT, "out_position");
  tessel_model_release(nullptr);
  tessel_session_release(nullptr);
}

TEST_F(CApiModelTest, MissingDirectoryIsNotFound) {
  tessel_model_t model = nullptr;
  EXPECT_TESSEL_ERROR(
      tessel_model_load("/nonexistent/artifact", nullptr, &model),
      TESSEL_NOT_FOUND, "/nonexistent/artifact");
  EXPECT_EQ(model, nullptr);
}

TEST_F(CApiModelTest, CudaDeviceWithoutGpuIsAClearError) {
  tessel_model_options_t options = {};
  options.device = TESSEL_DEVICE_CUDA;
  tessel_model_t model = nullptr;
  tessel_status_t status = tessel_model_load(dir_.c_str(), &options, &model);
  if (status == nullptr) {
    // A machine with a GPU and a CUDA build: the model loads.
    ASSERT_NE(model, nullptr);
    tessel_model_release(model);
    return;
  }
  // Without CUDA in the build: UNIMPLEMENTED; with it but no GPU: FAILED_PRECONDITION.
  const std::string message = tessel_status_message(status);
  const tessel_status_code_t code = tessel_status_code(status);
  tessel_status_release(status);
  EXPECT_EQ(model, nullptr);
  if (code == TESSEL_UNIMPLEMENTED) {
    EXPECT_EQ(message, "the CUDA executor is not part of this build yet; use device cpu");
  } else {
    EXPECT_EQ(code, TESSEL_FAILED_PRECONDITION) << message;
    EXPECT_NE(message.find("no CUDA device is available; use device cpu"), std::string::npos)
        << message;
  }
}

TEST_F(CApiModelTest, ModelInfo) {
  tessel_model_info_t info;
  EXPECT_TESSEL_OK(tessel_model_get_info(model_, &info));
  EXPECT_EQ(info.vocab_size, 5);
  EXPECT_EQ(info.max_context, 8);
  EXPECT_EQ(info.num_layers, 1);
  EXPECT_EQ(info.bos_token_id, 0);
  ASSERT_EQ(info.num_eos_token_ids, 1);
  EXPECT_EQ(info.eos_token_ids[0], 4);
  EXPECT_STREQ(info.model_type, "toy-attention");
}

TEST_F(CApiModelTest, PrefillDecodeAndLogits) {
  const float* logits = nullptr;
  size_t rows = 0, vocab = 0;
  EXPECT_TESSEL_ERROR(
      tessel_session_get_logits(session_, &logits, &rows, &vocab),
      TESSEL_FAILED_PRECONDITION, "no logits yet");
  const std::vector<int32_t> ids = {3, 1, 4};
  EXPECT_TESSEL_OK(tessel_session_prefill(session_, ids.data(), ids.size()));
  EXPECT_TESSEL_OK(tessel_session_get_logits(session_, &logits, &rows, &vocab));
  ASSERT_EQ(rows, 3u);
  ASSERT_EQ(vocab, 5u);
  const std::vector<float> expected = tessel::testing::ToyAttentionLogits(ids);
  for (size_t v = 0; v < vocab; ++v)
    EXPECT_NEAR(logits[2 * vocab + v], expected[v], 1e-5);

  EXPECT_TESSEL_OK(tessel_session_decode(session_, 2));
  EXPECT_TESSEL_OK(tessel_session_get_logits(session_, &logits, &rows, &vocab));
  EXPECT_EQ(rows, 1u);
  int64_t position = 0;
  EXPECT_TESSEL_OK(tessel_session_position(session_, &position));
  EXPECT_EQ(position, 4);
  EXPECT_TESSEL_ERROR(tessel_session_decode(session_, 5),
                      TESSEL_INVALID_ARGUMENT, "token id 5");
  EXPECT_TESSEL_OK(tessel_session_reset(session_));
  EXPECT_TESSEL_OK(tessel_session_position(session_, &position));
  EXPECT_EQ(position, 0);
}

TEST_F(CApiModelTest, ContextOverflowIsOutOfRange) {
  const std::vector<int32_t> ids(8, 1);
  EXPECT_TESSEL_OK(tessel_session_prefill(session_, ids.data(), ids.size()));
  EXPECT_TESSEL_ERROR(tessel_session_decode(session_, 1), TESSEL_OUT_OF_RANGE,
                      "context of 8 tokens is full");
  tessel_session_options_t options = {};
  options.max_context = 2;
  tessel_session_t small = nullptr;
  EXPECT_TESSEL_OK(tessel_session_create(model_, &options, &small));
  EXPECT_TESSEL_ERROR(tessel_session_prefill(small, ids.data(), 3),
                      TESSEL_OUT_OF_RANGE, "context of 2 tokens is full");
  tessel_session_release(small);
}

// Samples `steps` tokens, feeding each back with decode.
std::vector<int32_t> Generate(tessel_session_t session,
                              const tessel_sampling_t& params, int steps) {
  std::vector<int32_t> out;
  const int32_t prompt[2] = {1, 2};
  EXPECT_TESSEL_OK(tessel_session_reset(session));
  EXPECT_TESSEL_OK(tessel_session_prefill(session, prompt, 2));
  for (int i = 0; i < steps; ++i) {
    int32_t token = -1;
    EXPECT_TESSEL_OK(tessel_session_sample(session, &params, &token));
    EXPECT_GE(token, 0);
    EXPECT_LT(token, 5);
    out.push_back(token);
    if (i + 1 < steps) EXPECT_TESSEL_OK(tessel_session_decode(session, token));
  }
  return out;
}

TEST_F(CApiModelTest, SamplingIsDeterministicForASeed) {
  tessel_sampling_t params = {};
  params.temperature = 5.0f;  // flat enough that the seed matters
  params.seed = 1234;
  const std::vector<int32_t> first = Generate(session_, params, 6);
  const std::vector<int32_t> second = Generate(session_, params, 6);
  EXPECT_EQ(first, second);
  // Another session with the same seed agrees too.
  tessel_session_t other = nullptr;
  EXPECT_TESSEL_OK(tessel_session_create(model_, nullptr, &other));
  EXPECT_EQ(Generate(other, params, 6), first);
  tessel_session_release(other);
  // Some seed gives another sequence.
  bool differs = false;
  for (uint64_t seed = 1; seed < 20 && !differs; ++seed) {
    params.seed = seed;
    differs = Generate(session_, params, 6) != first;
  }
  EXPECT_TRUE(differs);
}

TEST_F(CApiModelTest, TopKOneAndZeroTemperatureAreGreedy) {
  const int32_t prompt[2] = {1, 2};
  EXPECT_TESSEL_OK(tessel_session_prefill(session_, prompt, 2));
  const float* logits;
  size_t rows, vocab;
  EXPECT_TESSEL_OK(tessel_session_get_logits(session_, &logits, &rows, &vocab));
  const float* last = logits + (rows - 1) * vocab;
  int32_t argmax = 0;
  for (size_t v = 1; v < vocab; ++v) {
    if (last[v] > last[argmax]) argmax = static_cast<int32_t>(v);
  }
  tessel_sampling_t greedy = {};
  int32_t token = -1;
  EXPECT_TESSEL_OK(tessel_session_sample(session_, &greedy, &token));
  EXPECT_EQ(token, argmax);
  tessel_sampling_t top1 = {};
  top1.temperature = 10.0f;
  top1.top_k = 1;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    top1.seed = seed;
    EXPECT_TESSEL_OK(tessel_session_sample(session_, &top1, &token));
    EXPECT_EQ(token, argmax);
  }
  // A tiny nucleus keeps only the most likely token as well.
  tessel_sampling_t nucleus = {};
  nucleus.temperature = 1.0f;
  nucleus.top_p = 1e-6f;
  EXPECT_TESSEL_OK(tessel_session_sample(session_, &nucleus, &token));
  EXPECT_EQ(token, argmax);
  tessel_sampling_t invalid = {};
  invalid.top_k = -1;
  EXPECT_TESSEL_ERROR(tessel_session_sample(session_, &invalid, &token),
                      TESSEL_INVALID_ARGUMENT, "top_k");
}

TEST_F(CApiModelTest, SessionOutlivesItsModelHandle) {
  tessel_model_release(model_);
  model_ = nullptr;
  const int32_t ids[1] = {3};
  EXPECT_TESSEL_OK(tessel_session_prefill(session_, ids, 1));
}

TEST_F(CApiModelTest, CppWrapper) {
  tessel::Model model;
  tessel::Status status = tessel::Model::Load(dir_, nullptr, &model);
  ASSERT_TRUE(status.ok()) << status.message();
  tessel::Session session;
  ASSERT_TRUE(tessel::Session::Create(model, nullptr, &session).ok());
  const std::vector<int32_t> ids = {3, 1};
  ASSERT_TRUE(session.Prefill(ids).ok());
  int32_t token = -1;
  ASSERT_TRUE(session.Sample(tessel_sampling_t{}, &token).ok());
  EXPECT_GE(token, 0);
  tessel::Status bad = session.Decode(-3);
  EXPECT_EQ(bad.code(), TESSEL_INVALID_ARGUMENT);
  EXPECT_NE(bad.message().find("-3"), std::string::npos);
  tessel::Model missing;
  EXPECT_EQ(tessel::Model::Load("/nonexistent", nullptr, &missing).code(),
            TESSEL_NOT_FOUND);
}

}  // namespace
