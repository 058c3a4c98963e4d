// libFuzzer target for the plan loader and the CPU executor: arbitrary bytes as
// plan.tsl. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Run: plan_fuzzer /tmp/plan_corpus tests/fuzz/corpus/plan -runs=1000000
// (libFuzzer adds new inputs to the first directory: keep the committed seeds
// out of it). Seeds: the dense and attention toy plans of
// tests/runtime/plan_test_util.h, written by plan_loader_test (PlanFuzzSeeds;
// see there). The weights file is fixed: the toy weights, in memory, so a plan
// that verifies is also bound and run (prefill of 2 tokens, one decode) under a
// memory limit. Beyond memory safety (ASan/UBSan), it traps when a verified
// plan breaks the loader's promises or an error comes without a message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/cpu/executor.h"
#include "runtime/plan/loader.h"
#include "runtime/weights/mapped_file.h"
#include "tests/runtime/plan_test_util.h"

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void CheckError(const absl::Status& status) {
  if (!status.ok()) Check(!status.message().empty());
}

const std::vector<uint8_t>& ToyWeights() {
  static const std::vector<uint8_t>* weights =
      new std::vector<uint8_t>(tessel::testing::BuildToyArtifact().weights);
  return *weights;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> plan_bytes(data, data + size);
  const absl::Status verified = tessel::VerifyPlan(plan_bytes);
  CheckError(verified);
  if (!verified.ok()) return 0;

  const tessel::plan::Plan& plan = *tessel::plan::GetPlan(plan_bytes.data());
  std::vector<std::unique_ptr<tessel::MappedFile>> files;
  const uint32_t file_count =
      plan.weight_files() ? plan.weight_files()->size() : 0;
  if (file_count > 16) return 0;
  for (uint32_t i = 0; i < file_count; ++i) {
    files.push_back(
        tessel::MappedFile::FromBytes(ToyWeights(), "weights.rank0.bin"));
  }
  auto artifact =
      tessel::Artifact::FromParts("fuzz", plan_bytes, std::move(files), {});
  if (!artifact.ok()) {
    CheckError(artifact.status());
    return 0;
  }
  // Names are unique, so each entry point is found by its own name.
  for (const tessel::plan::EntryPoint* entry :
       *(*artifact)->plan().entry_points()) {
    Check((*artifact)->FindEntryPoint(entry->name()->str()) == entry);
  }

  auto model =
      tessel::cpu::CpuModel::Create(std::move(*artifact), {.threads = 1});
  if (!model.ok()) {
    CheckError(model.status());
    return 0;
  }
  tessel::cpu::CpuSessionOptions options;
  options.max_context = 8;
  options.memory_limit_bytes = 16 << 20;
  auto session = tessel::cpu::CpuSession::Create(std::move(*model), options);
  if (!session.ok()) {
    CheckError(session.status());
    return 0;
  }
  const int32_t prompt[2] = {1, 2};
  const absl::Status prefill = (*session)->Prefill(prompt);
  CheckError(prefill);
  if (prefill.ok()) {
    Check((*session)->position() == 2);
    Check((*session)->logits().size() ==
          static_cast<size_t>(2 * (*session)->vocab_size()));
  }
  CheckError((*session)->Decode(0));
  return 0;
}
