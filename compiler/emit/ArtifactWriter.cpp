//===- ArtifactWriter.cpp - deployment artifact directories -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/emit/Artifact.h"

#include "dialects/tessel/IR/TesselDialect.h"
#include "dialects/tessel_exec/IR/TesselExecDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "runtime/plan/format.h"
#include "runtime/weights/gguf.h"
#include "runtime/schema/plan_generated.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace mlir;
namespace tp = ::tessel::plan;
using ::tessel::emit::WeightRecord;
using ::tessel::import::ImportedModel;

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// What the writer needs to know of one weight of the module.
struct WeightSpec {
  std::string name;
  int64_t experts = 0;
  MemRefType type;
  std::optional<std::string> dequantize;
  Type quant;
};

std::string formatBytes(uint64_t bytes) {
  std::string s;
  if (bytes >= 1000000000)
    llvm::raw_string_ostream(s) << llvm::format("%.2f GB", bytes / 1e9);
  else
    llvm::raw_string_ostream(s) << llvm::format("%.1f MB", bytes / 1e6);
  return s;
}

/// Collects the distinct weights of every entry point, in first-use order.
std::vector<WeightSpec> collectWeights(ModuleOp module) {
  std::vector<WeightSpec> specs;
  llvm::StringSet<> seen;
  module.walk([&](tessel_exec::WeightOp weight) {
    if (!seen.insert(weight.getName()).second)
      return;
    WeightSpec spec;
    spec.name = weight.getName().str();
    spec.experts = weight.getExperts();
    spec.type = cast<MemRefType>(weight.getType());
    if (auto dq = weight.getDequantize())
      spec.dequantize = dq->str();
    if (auto quant = weight.getQuant())
      spec.quant = *quant;
    specs.push_back(spec);
  });
  return specs;
}

/// Writes `bytes` at the end of `os`, aligned; returns its record fields.
class WeightFileWriter {
public:
  /// `os` null: lay out offsets only (a plan without a weights file).
  explicit WeightFileWriter(llvm::raw_fd_ostream *os) : os_(os) {}
  /// Pads to the weight alignment; returns the offset the next weight starts at.
  uint64_t align() {
    uint64_t pad = (::tessel::plan_format::kWeightAlignment -
                    offset_ % ::tessel::plan_format::kWeightAlignment) %
                   ::tessel::plan_format::kWeightAlignment;
    static const char zeros[256] = {};
    if (os_)
      os_->write(zeros, pad);
    offset_ += pad;
    return offset_;
  }
  uint64_t append(std::span<const uint8_t> bytes, uint64_t *checksum, uint64_t hash) {
    uint64_t at = align();
    appendContiguous(bytes, &hash);
    *checksum = hash;
    return at;
  }
  /// Appends without padding (the next part of a stacked weight).
  void appendContiguous(std::span<const uint8_t> bytes, uint64_t *checksum) {
    if (os_)
      os_->write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    offset_ += bytes.size();
    *checksum = ::tessel::plan_format::Fnv1a64(bytes.data(), bytes.size(), *checksum);
  }
  /// Reserves `size` bytes at an aligned offset without writing them.
  uint64_t reserve(uint64_t size) {
    uint64_t at = align();
    offset_ += size;
    return at;
  }
  uint64_t offset() const { return offset_; }

private:
  llvm::raw_fd_ostream *os_;
  uint64_t offset_ = 0;
};

/// How the weights file stores `spec`: its plan dtype.
llvm::Expected<tp::DType> storedDType(const WeightSpec &spec) {
  if (spec.dequantize)
    return tp::DType::F32;
  Type element = spec.type.getElementType();
  if (spec.quant) {
    auto q = cast<mlir::tessel::QuantizedTensorType>(spec.quant);
    bool gguf32 = q.getScheme() == mlir::tessel::QuantScheme::group &&
                  q.getGroupSize() == 32 && q.getScaleType().isF16();
    if (gguf32 && element.isSignlessInteger(8))
      return tp::DType::Q8_0;
    if (gguf32 && element.isSignlessInteger(4))
      return tp::DType::Q4_0;
    return makeError("weight '" + spec.name + "' has a quantized type the plan cannot store yet");
  }
  if (element.isF32())
    return tp::DType::F32;
  if (element.isF16())
    return tp::DType::F16;
  if (element.isBF16())
    return tp::DType::BF16;
  return makeError("weight '" + spec.name + "' has an element type the plan cannot store");
}

/// Bytes of `elements` values stored as `dtype` (GGUF blocks of 32 with an f16 scale).
uint64_t storedBytes(tp::DType dtype, uint64_t elements) {
  switch (dtype) {
  case tp::DType::F32:
  case tp::DType::I32: return elements * 4;
  case tp::DType::F16:
  case tp::DType::BF16: return elements * 2;
  case tp::DType::Q8_0: return elements / 32 * 34;
  case tp::DType::Q4_0: return elements / 32 * 18;
  case tp::DType::I64: return elements * 8;
  default: return elements;
  }
}

/// Writes the weights file at `path` (none when `path` is empty: offsets only).
llvm::Expected<std::vector<WeightRecord>>
writeWeights(const std::vector<WeightSpec> &specs, const ImportedModel &model,
             const std::string &path, bool progress) {
  std::error_code ec;
  std::unique_ptr<llvm::raw_fd_ostream> os;
  if (!path.empty()) {
    os = std::make_unique<llvm::raw_fd_ostream>(path, ec);
    if (ec)
      return makeError("cannot create " + path + ": " + ec.message());
  }
  WeightFileWriter writer(os.get());
  std::vector<WeightRecord> records;
  uint64_t total = 0;
  for (const WeightSpec &spec : specs)
    total += spec.type.getNumElements() *
             std::max<int64_t>(1, tessel_exec::elementBytes(spec.type.getElementType()));
  auto lastReport = std::chrono::steady_clock::now();
  const ::tessel::import::WeightSource &source = *model.weights;
  for (auto [i, spec] : llvm::enumerate(specs)) {
    WeightRecord record;
    record.name = spec.name;
    record.shape.assign(spec.type.getShape().begin(), spec.type.getShape().end());
    std::vector<std::string> parts;
    if (spec.experts > 0) {
      for (int64_t e = 0; e < spec.experts; ++e) {
        std::string name = spec.name;
        name.replace(name.find("{}"), 2, std::to_string(e));
        parts.push_back(name);
      }
    } else {
      parts.push_back(spec.name);
    }
    llvm::Expected<tp::DType> dtype = storedDType(spec);
    if (!dtype)
      return dtype.takeError();
    record.dtype = static_cast<uint8_t>(*dtype);
    // Weights carry their stored names (GGUF's differ from Hugging Face's), which is
    // what data() and dequantize() look up.
    if (!os) {
      record.size = storedBytes(*dtype, spec.type.getNumElements());
      record.offset = writer.reserve(record.size);
    } else if (spec.dequantize) {
      std::vector<float> values(spec.type.getNumElements());
      if (llvm::Error error = source.dequantize(spec.name, values))
        return std::move(error);
      record.size = values.size() * sizeof(float);
      record.offset = writer.append(
          {reinterpret_cast<const uint8_t *>(values.data()), record.size}, &record.checksum,
          0xcbf29ce484222325ull);
    } else {
      for (auto [p, part] : llvm::enumerate(parts)) {
        std::span<const uint8_t> bytes = source.data(part);
        if (bytes.empty())
          return makeError("weight '" + part + "' has no data in the checkpoint");
        if (p == 0)
          record.offset = writer.append(bytes, &record.checksum, 0xcbf29ce484222325ull);
        else
          writer.appendContiguous(bytes, &record.checksum);
        record.size += bytes.size();
      }
    }
    records.push_back(record);
    auto now = std::chrono::steady_clock::now();
    if (os && progress && (now - lastReport > std::chrono::seconds(1) || i + 1 == specs.size())) {
      llvm::errs() << "tessel-compile: wrote weights " << (i + 1) << "/" << specs.size() << " ("
                   << formatBytes(writer.offset()) << " of ~" << formatBytes(total) << ")\n";
      lastReport = now;
    }
  }
  if (os) {
    os->close();
    if (os->has_error())
      return makeError("writing " + path + " failed: " + os->error().message());
  }
  return records;
}

llvm::Error writeFile(const std::string &path, llvm::StringRef contents) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    return makeError("cannot create " + path + ": " + ec.message());
  os << contents;
  os.close();
  if (os.has_error())
    return makeError("writing " + path + " failed: " + os.error().message());
  return llvm::Error::success();
}

/// Appends the GGUF encoding of `value` (GGUF v3: little-endian, strings as u64 length +
/// bytes, arrays as u32 element type + u64 count + elements).
void appendGgufValue(const ::tessel::GgufValue &value, std::string &out) {
  auto raw = [&](const auto &v) { out.append(reinterpret_cast<const char *>(&v), sizeof(v)); };
  std::visit(
      [&](const auto &v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          raw(static_cast<uint64_t>(v.size()));
          out += v;
        } else if constexpr (std::is_same_v<T, ::tessel::GgufArray>) {
          raw(static_cast<uint32_t>(v.element_type));
          raw(static_cast<uint64_t>(v.elements.size()));
          for (const ::tessel::GgufValue &element : v.elements)
            appendGgufValue(element, out);
        } else if constexpr (std::is_same_v<T, bool>) {
          raw(static_cast<uint8_t>(v ? 1 : 0));
        } else {
          raw(v);
        }
      },
      value.storage());
}

/// Writes the vocabulary of a GGUF checkpoint (`general.architecture` and every
/// `tokenizer.*` key, no tensors) as a small GGUF file the runtime's tokenizer loader reads.
llvm::Error writeGgufVocabulary(const std::string &checkpoint, const std::string &path,
                                bool *written) {
  *written = false;
  auto file = ::tessel::GgufFile::Open(checkpoint);
  if (!file.ok())
    return makeError(std::string(file.status().message()));
  std::vector<const ::tessel::GgufKeyValue *> keys;
  bool hasVocabulary = false;
  for (const ::tessel::GgufKeyValue &kv : (*file)->metadata()) {
    bool tokenizer = llvm::StringRef(kv.key).starts_with("tokenizer.");
    hasVocabulary |= kv.key == "tokenizer.ggml.tokens";
    if (tokenizer || kv.key == "general.architecture")
      keys.push_back(&kv);
  }
  if (!hasVocabulary)
    return llvm::Error::success();
  std::string out = "GGUF";
  auto raw = [&](const auto &v) { out.append(reinterpret_cast<const char *>(&v), sizeof(v)); };
  raw(static_cast<uint32_t>(3));
  raw(static_cast<uint64_t>(0));  // tensors
  raw(static_cast<uint64_t>(keys.size()));
  for (const ::tessel::GgufKeyValue *kv : keys) {
    raw(static_cast<uint64_t>(kv->key.size()));
    out += kv->key;
    raw(static_cast<uint32_t>(kv->value.type()));
    appendGgufValue(kv->value, out);
  }
  out.resize((out.size() + 31) / 32 * 32, '\0');  // the (empty) data section's alignment
  if (llvm::Error error = writeFile(path, out))
    return error;
  *written = true;
  return llvm::Error::success();
}

std::string manifestJson(ModuleOp module, const ImportedModel &model,
                         const std::vector<WeightRecord> &weights, bool weightsWritten,
                         const ::tessel::codegen::GpuCode *gpu) {
  const ::tessel::import::ModelConfig &c = model.config;
  llvm::json::Array entries;
  for (auto func : module.getOps<func::FuncOp>()) {
    int64_t launches = llvm::range_size(func.front().getOps<tessel_exec::LaunchOp>());
    int64_t fused = llvm::count_if(func.front().getOps<tessel_exec::LaunchOp>(),
                                   [](auto launch) { return launch.getKernel() == "fusion"; });
    auto peak = func->getAttrOfType<IntegerAttr>("tessel_exec.arena_bytes_per_token");
    entries.push_back(llvm::json::Object{
        {"name", func.getSymName()},
        {"instructions", launches},
        {"fused_instructions", fused},
        {"arena_bytes_per_token", peak ? peak.getInt() : 0}});
  }
  llvm::json::Array archs, kernelNames;
  if (gpu) {
    for (const auto &image : gpu->images)
      archs.push_back(image.arch);
    for (const auto &kernel : gpu->kernels)
      kernelNames.push_back(kernel.name);
  }
  uint64_t bytes = 0, elements = 0;
  for (const WeightRecord &w : weights) {
    bytes += w.size;
    uint64_t count = 1;
    for (int64_t dim : w.shape)
      count *= dim;
    elements += count;
  }
  llvm::json::Object manifest{
      {"format", llvm::json::Object{{"major", ::tessel::plan_format::kMajor},
                                    {"minor", ::tessel::plan_format::kMinor}}},
      {"model", llvm::json::Object{{"model_type", c.model_type},
                                   {"source", c.source},
                                   {"layers", c.num_layers},
                                   {"hidden_size", c.hidden_size},
                                   {"vocab_size", c.vocab_size},
                                   {"max_context", model.max_context}}},
      {"entry_points", std::move(entries)},
      {"gpu_code", llvm::json::Object{{"archs", std::move(archs)},
                                      {"kernels", std::move(kernelNames)}}},
      {"weights", llvm::json::Object{{"count", static_cast<int64_t>(weights.size())},
                                     {"bytes", static_cast<int64_t>(bytes)},
                                     {"parameters", static_cast<int64_t>(elements)},
                                     {"files", weightsWritten
                                                   ? llvm::json::Array{"weights.rank0.bin"}
                                                   : llvm::json::Array{}}}}};
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(manifest))) << "\n";
  return text;
}

} // namespace

namespace tessel::emit {
llvm::Error writeArtifact(mlir::ModuleOp module, const import::ImportedModel &model,
                          const ArtifactOptions &options) {
  std::string finalDir = options.output_dir;
  while (finalDir.size() > 1 && finalDir.back() == '/')
    finalDir.pop_back();
  std::string tmpDir = finalDir + ".tmp-" + std::to_string(llvm::sys::Process::getProcessId());
  llvm::sys::fs::remove_directories(tmpDir);
  if (std::error_code ec = llvm::sys::fs::create_directories(tmpDir))
    return makeError("cannot create " + tmpDir + ": " + ec.message());
  auto fail = [&](llvm::Error error) {
    llvm::sys::fs::remove_directories(tmpDir);
    return error;
  };

  std::vector<WeightSpec> specs = collectWeights(module);
  auto records = writeWeights(specs, model,
                              options.write_weights ? tmpDir + "/weights.rank0.bin" : "",
                              options.progress);
  if (!records)
    return fail(records.takeError());
  auto plan = emitPlan(module, model, *records, options.gpu_code);
  if (!plan)
    return fail(plan.takeError());
  if (llvm::Error error = writeFile(
          tmpDir + "/plan.tsl",
          llvm::StringRef(reinterpret_cast<const char *>(plan->data()), plan->size())))
    return fail(std::move(error));
  if (llvm::Error error =
          writeFile(tmpDir + "/manifest.json", manifestJson(module, model, *records, options.write_weights,
                                                options.gpu_code)))
    return fail(std::move(error));
  if (!llvm::sys::fs::is_directory(options.checkpoint_path)) {
    // A GGUF file carries its vocabulary in its metadata: keep that part.
    bool written = false;
    if (llvm::Error error = writeGgufVocabulary(options.checkpoint_path,
                                                tmpDir + "/tokenizer.gguf", &written))
      return fail(std::move(error));
  } else {
    for (const char *name : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                             "special_tokens_map.json", "generation_config.json"}) {
      llvm::SmallString<256> from(options.checkpoint_path);
      llvm::sys::path::append(from, name);
      if (!llvm::sys::fs::exists(from))
        continue;
      if (std::error_code ec = llvm::sys::fs::copy_file(from, tmpDir + "/" + name))
        return fail(makeError("cannot copy " + from + ": " + ec.message()));
    }
  }
  // Swap into place: an existing artifact of the same name is replaced only now.
  std::string oldDir;
  if (llvm::sys::fs::exists(finalDir)) {
    oldDir = finalDir + ".old-" + std::to_string(llvm::sys::Process::getProcessId());
    if (std::error_code ec = llvm::sys::fs::rename(finalDir, oldDir))
      return fail(makeError("cannot replace " + finalDir + ": " + ec.message()));
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmpDir, finalDir))
    return fail(makeError("cannot rename " + tmpDir + " to " + finalDir + ": " + ec.message()));
  if (!oldDir.empty())
    llvm::sys::fs::remove_directories(oldDir);
  return llvm::Error::success();
}
} // namespace tessel::emit
