// Loads a tessel artifact: verifies plan.tsl and maps the weight files it
// names. SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Nothing in a plan is trusted before it is verified. `VerifyPlan` checks, in
// order: the size and file identifier, the format version, the FlatBuffers
// Verifier, then every semantic invariant an executor relies on (indices in
// range, operand counts and attrs per opcode, arena slots inside the peak,
// acyclic views, cache slots matching the cache values). After it succeeds,
// executors may read any field without further bounds checks on indices; shapes
// with symbolic dims are still checked when they are resolved.
#ifndef TESSEL_RUNTIME_PLAN_LOADER_H_
#define TESSEL_RUNTIME_PLAN_LOADER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/schema/plan_generated.h"
#include "runtime/weights/dtype.h"
#include "runtime/weights/mapped_file.h"

namespace tessel {

struct LoadOptions {
  /// Verify each weight's FNV-1a 64 checksum when it is converted
  /// (`Artifact::ReadWeightF32`).
  bool verify_checksums = true;
};

/// Verifies the bytes of a plan (see the file comment). `name` names the plan
/// in errors. Does not look at weight files: `LoadArtifact` checks those.
absl::Status VerifyPlan(std::span<const uint8_t> bytes,
                        absl::string_view name = "plan.tsl");

/// Bytes per element of a plain dtype (f32 4, bf16 2, i32 4, ...); 0 for
/// block-quantized and unknown dtypes.
uint64_t PlanDTypeBytes(plan::DType dtype);

/// The plan's dtype as a weights dtype (for block sizes and dequantization);
/// false if unknown.
bool ToWeightsDType(plan::DType dtype, DType* out);

/// A loaded artifact: the verified plan and its mapped weight files. Immutable;
/// safe to read from many threads.
class Artifact {
 public:
  Artifact(const Artifact&) = delete;
  Artifact& operator=(const Artifact&) = delete;

  /// Builds an artifact from plan bytes and already opened weight files (one
  /// per entry of Plan.weight_files, in order): verifies the plan, then that
  /// every weight lies inside its file. `dir` is only used in messages. Used by
  /// `LoadArtifact`, tests and fuzzers.
  static absl::StatusOr<std::unique_ptr<Artifact>> FromParts(
      std::string dir, std::vector<uint8_t> plan_bytes,
      std::vector<std::unique_ptr<MappedFile>> weight_files,
      const LoadOptions& options);

  const std::string& dir() const { return dir_; }
  const plan::Plan& plan() const { return *plan_; }
  std::span<const uint8_t> plan_bytes() const { return plan_bytes_; }
  const LoadOptions& options() const { return options_; }

  /// The entry point called `name`, or nullptr.
  const plan::EntryPoint* FindEntryPoint(absl::string_view name) const;

  /// The raw bytes of weights[index] in its mapped file (index must be in
  /// range).
  std::span<const uint8_t> WeightBytes(uint32_t index) const;

  /// Checks weights[index] against its FNV-1a 64 checksum when the options ask
  /// (OK otherwise); a mismatch is DataLoss naming the weight and its file.
  absl::Status VerifyWeightChecksum(uint32_t index) const;

  /// Converts weights[index] to f32 into `out` (its element count): F32 as is,
  /// F16/BF16 widened, Q8_0/Q4_0 dequantized. Verifies the checksum first when
  /// the options ask; a mismatch is DataLoss naming the weight.
  absl::Status ReadWeightF32(uint32_t index, std::span<float> out) const;

  /// Element count of weights[index] (the product of its shape).
  int64_t WeightElements(uint32_t index) const;

 private:
  Artifact() = default;

  std::string dir_;
  std::vector<uint8_t> plan_bytes_;
  const plan::Plan* plan_ = nullptr;
  std::vector<std::unique_ptr<MappedFile>> weight_files_;
  LoadOptions options_;
};

/// Reads `dir`/plan.tsl, verifies it, and maps the weight files it names.
/// Errors name the file and the problem: NotFound for a missing file,
/// InvalidArgument for a file that is not a tessel plan, FailedPrecondition for
/// an unsupported format version, DataLoss for a corrupt plan or weights
/// outside their file.
absl::StatusOr<std::unique_ptr<Artifact>> LoadArtifact(
    const std::string& dir, const LoadOptions& options = {});

/// Calls `bind(id)` once for every value id of `values` such that a View's base is bound
/// before the View. Views may precede their base in the plan; each chain (acyclic by
/// verification) is walked once to its first bound value and bound from there back to the
/// view, without recursion (chains can be as long as the plan). `bind` must set
/// `bound[id] = 1`; `bound` has one entry per value, zero for values not yet bound.
template <typename Bind>
absl::Status BindValuesBasesFirst(
    const flatbuffers::Vector<flatbuffers::Offset<plan::Value>>& values,
    std::vector<uint8_t>& bound, Bind&& bind) {
  std::vector<uint32_t> chain;
  for (uint32_t id = 0; id < values.size(); ++id) {
    chain.clear();
    for (uint32_t current = id; !bound[current];) {
      chain.push_back(current);
      if (values.Get(current)->kind() != plan::ValueKind::View) break;
      current = values.Get(current)->base();
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      absl::Status status = bind(*it);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace tessel

#endif  // TESSEL_RUNTIME_PLAN_LOADER_H_
