// Tests the plan loader (verification, weight files, checksums) and the CPU
// executor on toy plans. SPDX-License-Identifier: Apache-2.0 WITH
// LLVM-exception
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/base/status.h"
#include "runtime/cpu/executor.h"
#include "runtime/plan/loader.h"
#include "tests/runtime/plan_test_util.h"

namespace tessel {
namespace {

using ::tessel::testing::BuildToyArtifact;
using ::tessel::testing::kToyVocab;
using ::tessel::testing::ToyArtifact;
using ::tessel::testing::ToyOptions;
using ::testing::HasSubstr;

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        std::filesystem::temp_directory_path() / "tessel_plan_test_XXXXXX";
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Loads from memory: the plan plus an in-memory weights.rank0.bin.
absl::StatusOr<std::unique_ptr<Artifact>> FromMemory(
    const std::vector<uint8_t>& plan, const std::vector<uint8_t>& weights,
    LoadOptions options = {}) {
  TESSEL_RETURN_IF_ERROR(VerifyPlan(plan));
  std::vector<std::unique_ptr<MappedFile>> files;
  const plan::Plan& parsed = *plan::GetPlan(plan.data());
  for (uint32_t i = 0;
       parsed.weight_files() && i < parsed.weight_files()->size(); ++i) {
    files.push_back(MappedFile::FromBytes(weights, "weights.rank0.bin"));
  }
  return Artifact::FromParts("", plan, std::move(files), options);
}

// `toy` must outlive the session: its f32 weights are used in place.
absl::StatusOr<std::unique_ptr<cpu::CpuSession>> MakeSession(
    const ToyArtifact& toy, int64_t context = 0) {
  TESSEL_ASSIGN_OR_RETURN(auto artifact, FromMemory(toy.plan, toy.weights));
  TESSEL_ASSIGN_OR_RETURN(
      auto model, cpu::CpuModel::Create(std::move(artifact), {.threads = 2}));
  cpu::CpuSessionOptions options;
  options.max_context = context;
  return cpu::CpuSession::Create(std::move(model), options);
}

void ExpectRow(std::span<const float> logits, int64_t row,
               const std::vector<float>& expected) {
  ASSERT_GE(logits.size(), static_cast<size_t>((row + 1) * kToyVocab));
  for (int64_t v = 0; v < kToyVocab; ++v) {
    EXPECT_NEAR(logits[row * kToyVocab + v], expected[v], 1e-5)
        << "row " << row << " id " << v;
  }
}

TEST(PlanLoaderTest, DensePlanRunsFromDisk) {
  TempDir dir;
  const ToyArtifact toy = BuildToyArtifact();
  testing::WriteToyArtifact(toy, dir.path());
  auto artifact = LoadArtifact(dir.path());
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_NE((*artifact)->FindEntryPoint("prefill"), nullptr);
  EXPECT_NE((*artifact)->FindEntryPoint("decode"), nullptr);
  EXPECT_EQ((*artifact)->FindEntryPoint("train"), nullptr);
  auto model = cpu::CpuModel::Create(std::move(*artifact));
  ASSERT_TRUE(model.ok()) << model.status();
  auto session = cpu::CpuSession::Create(std::move(*model));
  ASSERT_TRUE(session.ok()) << session.status();

  const std::vector<int32_t> prompt = {1, 3, 0};
  ASSERT_TRUE((*session)->Prefill(prompt).ok());
  EXPECT_EQ((*session)->position(), 3);
  EXPECT_EQ((*session)->logits_rows(), 3);
  for (int64_t row = 0; row < 3; ++row) {
    ExpectRow((*session)->logits(), row, testing::ToyDenseLogits(prompt[row]));
  }
  ASSERT_TRUE((*session)->Decode(2).ok());
  EXPECT_EQ((*session)->position(), 4);
  EXPECT_EQ((*session)->logits_rows(), 1);
  ExpectRow((*session)->logits(), 0, testing::ToyDenseLogits(2));
}

TEST(PlanLoaderTest, HandComputedDenseLogits) {
  // Token 0: embed = [0.125, 0.0625, 0, -0.0625]; mean square = 0.0234375 / 4.
  const float inv = 1.0f / std::sqrt(0.005859375f + 1e-5f);
  const float normed[4] = {0.125f * inv * 1.0f, 0.0625f * inv * 1.125f, 0.0f,
                           -0.0625f * inv * 1.375f};
  // head row 0 = [-0.5, -0.25, 0, 0.25].
  const float logit0 =
      -0.5f * normed[0] - 0.25f * normed[1] + 0.25f * normed[3];
  const ToyArtifact toy =
      BuildToyArtifact();  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Prefill(std::vector<int32_t>{0}).ok());
  EXPECT_NEAR((*session)->logits()[0], logit0, 1e-5);
}

TEST(PlanLoaderTest, Bf16WeightsAreWidened) {
  const ToyArtifact toy = BuildToyArtifact(
      {.bf16_embedding = true});  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Prefill(std::vector<int32_t>{4, 2}).ok());
  ExpectRow((*session)->logits(), 1, testing::ToyDenseLogits(2));
}

TEST(PlanLoaderTest, Bf16ActivationsScaleTheArena) {
  const ToyArtifact toy = BuildToyArtifact({.bf16_activations = true});
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  const std::vector<int32_t> prompt = {0, 1, 2, 3, 4};
  ASSERT_TRUE((*session)->Prefill(prompt).ok());
  for (int64_t row = 0; row < 5; ++row) {
    ExpectRow((*session)->logits(), row, testing::ToyDenseLogits(prompt[row]));
  }
}

// Reference roundings, written differently from the executor's: through the bit
// patterns of the narrow formats, with ties to even decided by explicit
// comparison.
float ReferenceBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t low = bits & 0xffff, high = bits & 0xffff0000u;
  uint32_t rounded = high;
  if (low > 0x8000 || (low == 0x8000 && (high & 0x10000))) rounded += 0x10000;
  float out;
  std::memcpy(&out, &rounded, 4);
  return out;
}
float ReferenceF16(float x) {
  // Candidates are multiples of 2^(e-10) for x's binade (normal halves in our
  // range).
  int exponent;
  std::frexp(x, &exponent);
  const double quantum = std::ldexp(1.0, std::max(exponent - 11, -24));
  const double scaled = x / quantum;
  double lower = std::floor(scaled);
  const double fraction = scaled - lower;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(lower, 2.0) != 0.0))
    lower += 1.0;
  return static_cast<float>(lower * quantum);
}

TEST(PlanLoaderTest, CastRoundsToTheTargetPrecision) {
  for (plan::DType dtype : {plan::DType::BF16, plan::DType::F16}) {
    const ToyArtifact toy = BuildToyArtifact({.cast_normed_to = dtype});
    auto session = MakeSession(toy);
    ASSERT_TRUE(session.ok()) << session.status();
    const std::vector<int32_t> prompt = {0, 1, 2, 3, 4};
    ASSERT_TRUE((*session)->Prefill(prompt).ok());
    for (int64_t row = 0; row < 5; ++row) {
      const auto expected = testing::ToyDenseLogits(
          prompt[row],
          dtype == plan::DType::BF16 ? &ReferenceBf16 : &ReferenceF16);
      ExpectRow((*session)->logits(), row, expected);
    }
    // The cast is visible: unrounded logits differ for some token.
    bool differs = false;
    for (int64_t row = 0; row < 5; ++row) {
      const auto exact = testing::ToyDenseLogits(prompt[row]);
      for (int64_t v = 0; v < kToyVocab; ++v) {
        differs |= std::fabs((*session)->logits()[row * kToyVocab + v] -
                             exact[v]) > 1e-6;
      }
    }
    EXPECT_TRUE(differs) << plan::EnumNameDType(dtype);
  }
}

TEST(PlanLoaderTest, AttentionPlanUsesTheCacheAcrossCalls) {
  const ToyArtifact toy = BuildToyArtifact(
      {.attention = true});  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<int32_t> ids = {3, 1, 4};
  ASSERT_TRUE((*session)->Prefill(ids).ok());
  for (size_t row = 0; row < ids.size(); ++row) {
    ExpectRow((*session)->logits(), row,
              testing::ToyAttentionLogits(
                  std::vector<int32_t>(ids.begin(), ids.begin() + row + 1)));
  }
  for (int32_t next : {0, 2, 2}) {
    ASSERT_TRUE((*session)->Decode(next).ok());
    ids.push_back(next);
    ExpectRow((*session)->logits(), 0, testing::ToyAttentionLogits(ids));
  }
  // A second prefill continues the sequence (chunked prefill).
  const std::vector<int32_t> chunk = {1, 0};
  ASSERT_TRUE((*session)->Prefill(chunk).ok());
  ids.insert(ids.end(), chunk.begin(), chunk.end());
  ExpectRow((*session)->logits(), 1, testing::ToyAttentionLogits(ids));
  EXPECT_EQ((*session)->position(), 8);

  (*session)->Reset();
  EXPECT_EQ((*session)->position(), 0);
  ASSERT_TRUE((*session)->Prefill(std::vector<int32_t>{2}).ok());
  ExpectRow((*session)->logits(), 0, testing::ToyAttentionLogits({2}));
}

TEST(PlanLoaderTest, ContextOverflowIsOutOfRange) {
  const ToyArtifact toy = BuildToyArtifact(
      {.attention = true,
       .context = 4});  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->capacity(), 4);
  ASSERT_TRUE((*session)->Prefill(std::vector<int32_t>{1, 2, 3}).ok());
  const absl::Status full = (*session)->Prefill(std::vector<int32_t>{1, 2});
  EXPECT_EQ(full.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(full.message()),
              HasSubstr("context of 4 tokens is full"));
  EXPECT_EQ((*session)->position(), 3);  // nothing changed
  ASSERT_TRUE((*session)->Decode(0).ok());
  EXPECT_EQ((*session)->Decode(0).code(), absl::StatusCode::kOutOfRange);
}

TEST(PlanLoaderTest, SessionContextOptionBoundsTheCache) {
  const ToyArtifact toy = BuildToyArtifact(
      {.attention = true,
       .context = 16});  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy, 2);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->capacity(), 2);
  EXPECT_EQ((*session)->Prefill(std::vector<int32_t>{1, 2, 3}).code(),
            absl::StatusCode::kOutOfRange);
}

TEST(PlanLoaderTest, TokenOutsideVocabularyIsInvalid) {
  const ToyArtifact toy =
      BuildToyArtifact();  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok());
  const absl::Status status = (*session)->Prefill(std::vector<int32_t>{1, 5});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("token id 5"));
  EXPECT_EQ((*session)->Decode(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*session)->Prefill({}).code(), absl::StatusCode::kInvalidArgument);
}

// --- Corruption
// ---------------------------------------------------------------------------

// Loads a damaged plan and, if it still verifies, runs it: nothing may crash,
// and every error carries a message.
void LoadAndRunNeverCrashes(const std::vector<uint8_t>& plan,
                            const std::vector<uint8_t>& weights) {
  auto artifact = FromMemory(plan, weights);
  if (!artifact.ok()) {
    EXPECT_FALSE(artifact.status().message().empty());
    return;
  }
  auto model = cpu::CpuModel::Create(std::move(*artifact), {.threads = 1});
  if (!model.ok()) return;
  cpu::CpuSessionOptions options;
  options.memory_limit_bytes = 64 << 20;
  auto session = cpu::CpuSession::Create(std::move(*model), options);
  if (!session.ok()) return;
  (void)(*session)->Prefill(std::vector<int32_t>{1, 2});
  (void)(*session)->Decode(3);
}

TEST(PlanCorruptionTest, FlippedBytesNeverCrash) {
  for (bool attention : {false, true}) {
    const ToyArtifact toy = BuildToyArtifact({.attention = attention});
    int rejected = 0;
    for (size_t offset = 0; offset < toy.plan.size(); ++offset) {
      for (uint8_t mask : {0x01, 0x80, 0xff}) {
        std::vector<uint8_t> plan = toy.plan;
        plan[offset] ^= mask;
        rejected += !VerifyPlan(plan).ok();
        LoadAndRunNeverCrashes(plan, toy.weights);
      }
    }
    EXPECT_GT(rejected, 0);
  }
}

TEST(PlanCorruptionTest, EveryTruncationIsRejected) {
  const ToyArtifact toy = BuildToyArtifact({.attention = true});
  // The builder pads the end of the buffer for alignment; dropping only that
  // padding leaves every referenced byte in place, so such a plan may still
  // verify.
  size_t padding = 0;
  while (padding < toy.plan.size() &&
         toy.plan[toy.plan.size() - 1 - padding] == 0)
    ++padding;
  for (size_t length = 0; length < toy.plan.size(); ++length) {
    const std::vector<uint8_t> prefix(toy.plan.begin(),
                                      toy.plan.begin() + length);
    const absl::Status status = VerifyPlan(prefix);
    if (length + padding < toy.plan.size()) {
      EXPECT_FALSE(status.ok()) << "length " << length;
      EXPECT_FALSE(status.message().empty());
    }
  }
  EXPECT_TRUE(VerifyPlan(toy.plan).ok());
}

TEST(PlanCorruptionTest, TooSmallFile) {
  const absl::Status status = VerifyPlan(std::vector<uint8_t>{1, 2, 3});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("3 bytes long"));
}

TEST(PlanCorruptionTest, WrongIdentifierSaysWhatWasFound) {
  ToyArtifact toy = BuildToyArtifact();
  std::memcpy(toy.plan.data() + 4, "GGUF", 4);
  const absl::Status status = VerifyPlan(toy.plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not a tessel plan"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"GGUF\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"TSLP\""));
}

TEST(PlanCorruptionTest, NewerMajorVersionNamesBothVersions) {
  TempDir dir;
  testing::WriteToyArtifact(BuildToyArtifact({.major = 2, .minor = 0}), dir.path());
  auto artifact = LoadArtifact(dir.path());
  ASSERT_FALSE(artifact.ok());
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(artifact.status().message()),
              HasSubstr(absl::StrCat("plan format 2.0 is newer than this "
                                     "runtime's 1.",
                                     plan_format::kMinor, "; ")));
  EXPECT_THAT(std::string(artifact.status().message()),
              HasSubstr("rebuild the artifact or update tessel"));
  EXPECT_THAT(std::string(artifact.status().message()), HasSubstr("plan.tsl"));
}

TEST(PlanCorruptionTest, NewerMinorVersionIsRejected) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.minor = plan_format::kMinor + 1}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("is newer than this runtime's"));
}

// Format 1.1: a Fused instruction runs its op program on the CPU with the same
// numerics as the unfused ops.
TEST(FusedPlanTest, FusedProgramComputesTheUnfusedLogits) {
  const testing::ToyArtifact toy = BuildToyArtifact({.fused_norm = true});
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  const std::vector<int32_t> ids = {3, 1};
  ASSERT_TRUE((*session)->Prefill(ids).ok());
  ExpectRow((*session)->logits(), 0, testing::ToyDenseLogits(3));
  ExpectRow((*session)->logits(), 1, testing::ToyDenseLogits(1));
}

// More rows than one block of the CPU's fused evaluation (16K elements): every
// block gets the same logits.
TEST(FusedPlanTest, LongPromptsRunInBlocksOfRows) {
  const int64_t tokens = 4500;  // rows of 4 elements: two blocks and a part
  const testing::ToyArtifact toy =
      BuildToyArtifact({.context = tokens, .fused_norm = true});
  auto artifact = FromMemory(toy.plan, toy.weights);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  auto model = cpu::CpuModel::Create(std::move(*artifact), {.threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  auto session = cpu::CpuSession::Create(std::move(*model));
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<int32_t> ids(tokens);
  for (int64_t i = 0; i < tokens; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % 5);
  ASSERT_TRUE((*session)->Prefill(ids).ok());
  for (int64_t row : {int64_t{0}, int64_t{4095}, int64_t{4096}, int64_t{4099}, tokens - 1})
    ExpectRow((*session)->logits(), row, testing::ToyDenseLogits(ids[row]));
}

TEST(FusedPlanTest, KernelIndexOutOfRangeIsRejected) {
  const absl::Status status = VerifyPlan(
      BuildToyArtifact({.fused_norm = true, .fused_kernel = 0}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()), HasSubstr("uses kernel #0 of 0"));
}

TEST(FusedPlanTest, ProgramOperandOutOfRangeIsRejected) {
  // The norm (op #1, program value #3) may read values #0..#2 only.
  for (uint32_t operand : {3u, 7u, 0xffffffffu - 1}) {
    const absl::Status status = VerifyPlan(
        BuildToyArtifact({.fused_norm = true, .fused_norm_input = operand})
            .plan);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("fused op #1 operand #0 is program value"));
  }
}

TEST(PlanCorruptionTest, OlderMajorVersionIsRejected) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.major = 0, .minor = 0}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plan format 0.0 is older"));
}

TEST(PlanCorruptionTest, OlderOrEqualMinorVersionLoads) {
  for (uint32_t minor = 0; minor <= plan_format::kMinor; ++minor) {
    EXPECT_TRUE(VerifyPlan(BuildToyArtifact({.minor = minor}).plan).ok())
        << minor;
  }
}

TEST(PlanCorruptionTest, MissingDirectoryAndPlan) {
  auto missing = LoadArtifact("/nonexistent/tessel/artifact");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  TempDir dir;
  auto empty = LoadArtifact(dir.path());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no plan.tsl"));
}

TEST(PlanCorruptionTest, MissingWeightsFileIsNotFound) {
  TempDir dir;
  WriteFile(dir.path() + "/plan.tsl", BuildToyArtifact().plan);
  auto artifact = LoadArtifact(dir.path());
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(artifact.status().message()),
              HasSubstr("weights.rank0.bin"));
}

TEST(PlanCorruptionTest, ShortWeightsFileIsDataLoss) {
  TempDir dir;
  ToyArtifact toy = BuildToyArtifact();
  toy.weights.resize(540);  // the head starts at 512 and needs 80 bytes
  testing::WriteToyArtifact(toy, dir.path());
  auto artifact = LoadArtifact(dir.path());
  ASSERT_FALSE(artifact.ok());
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kDataLoss);
  const std::string message(artifact.status().message());
  EXPECT_THAT(message, HasSubstr("lm_head.weight"));
  EXPECT_THAT(message, HasSubstr("offset 512"));
  EXPECT_THAT(message, HasSubstr("size 80"));
  EXPECT_THAT(message, HasSubstr("(540 bytes)"));
}

TEST(PlanCorruptionTest, ChecksumMismatchIsDataLoss) {
  const ToyArtifact toy = BuildToyArtifact({.bad_checksum = true});
  auto artifact = FromMemory(toy.plan, toy.weights);
  ASSERT_TRUE(artifact.ok())
      << artifact.status();  // checksums are checked on conversion
  auto model = cpu::CpuModel::Create(std::move(*artifact));
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(model.status().message()),
              HasSubstr("lm_head.weight"));

  // Without verification the same artifact loads.
  auto unchecked =
      FromMemory(toy.plan, toy.weights, {.verify_checksums = false});
  ASSERT_TRUE(unchecked.ok());
  EXPECT_TRUE(cpu::CpuModel::Create(std::move(*unchecked)).ok());
}

TEST(PlanCorruptionTest, DamagedWeightBytesFailTheChecksum) {
  ToyArtifact toy = BuildToyArtifact({.bf16_embedding = true});
  toy.weights[3] ^= 0x10;
  auto artifact = FromMemory(toy.plan, toy.weights);
  ASSERT_TRUE(artifact.ok());
  auto model = cpu::CpuModel::Create(std::move(*artifact));
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(model.status().message()),
              HasSubstr("model.embed_tokens.weight"));
}

TEST(PlanCorruptionTest, OperandOutOfRange) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.matmul_weight_operand = 99}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("instruction #2 (Matmul) operand #1 is value #99"));
}

TEST(PlanCorruptionTest, ArenaRangeBeyondThePeak) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.arena_peak = 100}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("beyond the peak of 100"));
}

TEST(PlanCorruptionTest, ViewCycle) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.view_cycle = true}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()), HasSubstr("cycle of views"));
}

TEST(PlanLoaderTest, LongViewChainsVerifyAndBindInLinearTime) {
  // 200k views, each listed before its base: recursion or quadratic walks would
  // overflow the stack or take minutes.
  const ToyArtifact toy = BuildToyArtifact({.view_chain = 200000});
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Prefill(std::vector<int32_t>{2}).ok());
  ExpectRow((*session)->logits(), 0, testing::ToyDenseLogits(2));
}

TEST(PlanCorruptionTest, AttrsOfTheWrongType) {
  const absl::Status status =
      VerifyPlan(BuildToyArtifact({.wrong_attrs = true}).plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("has attrs NormAttrs, expected MatmulAttrs"));
}

TEST(PlanCorruptionTest, WeightOperandOfTheWrongShapeFailsAtBind) {
  // Operand 2 is the [5, 4] embedding in place of the [5, 4] head: verifies and
  // runs. Operand 3 (the [4] norm) verifies but cannot be a Matmul weight: the
  // bind step says so.
  const ToyArtifact toy = BuildToyArtifact(
      {.matmul_weight_operand = 3});  // FromBytes does not copy: keep it alive
  auto session = MakeSession(toy);
  ASSERT_TRUE(session.ok()) << session.status();
  const absl::Status status = (*session)->Prefill(std::vector<int32_t>{1});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("Matmul"));
}

}  // namespace
}  // namespace tessel

namespace tessel {
namespace {

// The plan fuzzer's seeds (tests/fuzz/corpus/plan/) are the two toy plans.
// Regenerate them after a schema change with
//   TESSEL_WRITE_FUZZ_SEEDS=tests/fuzz/corpus/plan plan_loader_test
//   --gtest_filter='PlanFuzzSeeds.*'
TEST(PlanFuzzSeeds, ToyPlansVerifyAndCanBeWritten) {
  const ToyArtifact dense = BuildToyArtifact();
  const ToyArtifact attention = BuildToyArtifact({.attention = true});
  ASSERT_TRUE(VerifyPlan(dense.plan).ok());
  ASSERT_TRUE(VerifyPlan(attention.plan).ok());
  EXPECT_EQ(dense.weights,
            attention.weights);  // the fuzzer's fixed weights file
  if (const char* dir = std::getenv("TESSEL_WRITE_FUZZ_SEEDS")) {
    WriteFile(std::string(dir) + "/toy_dense.tsl", dense.plan);
    WriteFile(std::string(dir) + "/toy_attention.tsl", attention.plan);
  }
}

// A seed of format 1.1 with a Fused instruction (toy_dense.tsl and
// toy_attention.tsl stay frozen plans of format 1.0): write it with
//   TESSEL_WRITE_FUZZ_SEEDS=tests/fuzz/corpus/plan plan_loader_test
//   --gtest_filter='PlanFuzzSeeds.FusedToyPlan'
TEST(PlanFuzzSeeds, FusedToyPlan) {
  const ToyArtifact fused = BuildToyArtifact({.fused_norm = true});
  ASSERT_TRUE(VerifyPlan(fused.plan).ok());
  EXPECT_EQ(fused.weights, BuildToyArtifact().weights);
  if (const char* dir = std::getenv("TESSEL_WRITE_FUZZ_SEEDS"))
    WriteFile(std::string(dir) + "/toy_fused.tsl", fused.plan);
}

}  // namespace
}  // namespace tessel

namespace tessel {
namespace {

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(file), {});
}

// The seeds double as frozen plans of format 1.0: every later runtime of major
// version 1 must keep loading and running them unchanged.
TEST(FrozenPlanTest, FormatOnePointZeroPlansStillRun) {
#ifndef TESSEL_SOURCE_DIR
  GTEST_SKIP() << "TESSEL_SOURCE_DIR is not defined";
#else
  const std::string dir =
      std::string(TESSEL_SOURCE_DIR) + "/tests/fuzz/corpus/plan/";
  const std::vector<uint8_t> weights = BuildToyArtifact().weights;
  for (const char* name : {"toy_dense.tsl", "toy_attention.tsl"}) {
    const std::vector<uint8_t> plan = ReadFile(dir + name);
    ASSERT_FALSE(plan.empty()) << dir << name;
    auto artifact = FromMemory(plan, weights);
    ASSERT_TRUE(artifact.ok()) << artifact.status();
    EXPECT_EQ((*artifact)->plan().format_major(), 1u);
    EXPECT_EQ((*artifact)->plan().format_minor(), 0u);
    auto model = cpu::CpuModel::Create(std::move(*artifact));
    ASSERT_TRUE(model.ok()) << model.status();
    auto session = cpu::CpuSession::Create(std::move(*model));
    ASSERT_TRUE(session.ok()) << session.status();
    const std::vector<int32_t> ids = {3, 1};
    ASSERT_TRUE((*session)->Prefill(ids).ok());
    ExpectRow((*session)->logits(), 1,
              std::string(name) == "toy_dense.tsl"
                  ? testing::ToyDenseLogits(1)
                  : testing::ToyAttentionLogits(ids));
  }
#endif
}

}  // namespace
}  // namespace tessel
