//===- Importer.cpp - checkpoints into the tessel dialect -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/import/Importer.h"

#include "compiler/import/GGUFSource.h"
#include "compiler/import/WeightSource.h"
#include "models/Families.h"
#include "runtime/weights/safetensors.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

using namespace tessel;
using namespace tessel::import;

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

llvm::Error fromStatus(const absl::Status &status) {
  return makeError(std::string(status.message()));
}

/// Safetensors tensors under their own (Hugging Face) names.
class SafetensorsSource : public WeightSource {
public:
  SafetensorsSource(std::unique_ptr<SafetensorsCheckpoint> checkpoint, bool tied)
      : checkpoint_(std::move(checkpoint)), tied_(tied) {}

  std::optional<WeightInfo> find(const std::string &name) const override {
    const TensorInfo *tensor = checkpoint_->Find(name);
    if (!tensor)
      return std::nullopt;
    return WeightInfo{tensor->name, tensor->dtype, tensor->shape};
  }
  std::vector<std::string> storedNames() const override {
    std::vector<std::string> names;
    names.reserve(checkpoint_->tensors().size());
    for (const TensorInfo &tensor : checkpoint_->tensors())
      names.push_back(tensor.name);
    return names;
  }
  /// Some exporters save lm_head even when it is tied to the embeddings.
  bool isIgnorable(const std::string &name) const override {
    return tied_ && name == "lm_head.weight";
  }
  std::span<const uint8_t> data(const std::string &name) const override {
    const TensorInfo *tensor = checkpoint_->Find(name);
    return tensor ? checkpoint_->Data(*tensor) : std::span<const uint8_t>();
  }

private:
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  bool tied_;
};

bool isGGUF(const std::string &path) {
  if (llvm::sys::fs::is_directory(path))
    return false;
  if (llvm::StringRef(path).ends_with(".gguf"))
    return true;
  auto buffer = llvm::MemoryBuffer::getFileSlice(path, 4, 0);
  return buffer && (*buffer)->getBuffer() == "GGUF";
}

llvm::Expected<ModelConfig> readHFConfig(const std::string &dir) {
  llvm::SmallString<256> configPath(dir);
  llvm::sys::path::append(configPath, "config.json");
  auto buffer = llvm::MemoryBuffer::getFile(configPath);
  if (!buffer)
    return makeError("cannot read " + configPath + ": " + buffer.getError().message() +
                     " (a Hugging Face checkpoint directory has a config.json)");
  llvm::Expected<llvm::json::Value> json = llvm::json::parse((*buffer)->getBuffer());
  if (!json)
    return makeError(configPath + " is not valid JSON: " + llvm::toString(json.takeError()));
  const llvm::json::Object *object = json->getAsObject();
  if (!object)
    return makeError(configPath + " must hold a JSON object");

  models::ConfigReader reader(*object, configPath.str().str());
  std::string modelType = reader.getString("model_type", "");
  if (llvm::Error error = reader.finish())
    return std::move(error);
  if (modelType.empty())
    return makeError(configPath + " has no 'model_type'; supported: " +
                     models::supportedModelTypes());
  const models::Family *family = models::findFamily(modelType);
  if (!family)
    return makeError(configPath + ": model_type '" + modelType +
                     "' is not supported; supported: " + models::supportedModelTypes());
  ModelConfig config;
  config.source = configPath.str().str();
  models::readCommonConfig(reader, config);
  family->read_config(reader, config);
  if (llvm::Error error = reader.finish())
    return std::move(error);
  return config;
}

} // namespace

llvm::Expected<ModelConfig> tessel::import::readModelConfig(const std::string &path) {
  if (!llvm::sys::fs::exists(path))
    return makeError("'" + path + "' does not exist");
  if (isGGUF(path)) {
    auto file = GgufFile::Open(path);
    if (!file.ok())
      return fromStatus(file.status());
    return readGGUFConfig(**file);
  }
  if (!llvm::sys::fs::is_directory(path))
    return makeError("'" + path +
                     "' is neither a Hugging Face checkpoint directory nor a GGUF file");
  return readHFConfig(path);
}

llvm::Expected<ImportedModel>
tessel::import::importCheckpoint(mlir::MLIRContext &context, const std::string &path,
                                 const ImportOptions &options) {
  context.loadDialect<mlir::tessel::TesselDialect, mlir::func::FuncDialect>();
  llvm::Expected<ModelConfig> config = readModelConfig(path);
  if (!config)
    return config.takeError();
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<GgufFile> gguf;
  if (isGGUF(path)) {
    auto file = GgufFile::Open(path);
    if (!file.ok())
      return fromStatus(file.status());
    weights = makeGGUFSource(std::move(*file), *config);
  } else {
    auto checkpoint = SafetensorsCheckpoint::Open(path);
    if (!checkpoint.ok())
      return fromStatus(checkpoint.status());
    weights = std::make_unique<SafetensorsSource>(std::move(*checkpoint),
                                                  config->tie_word_embeddings);
  }
  const models::Family *family = models::findFamily(config->model_type);
  if (!family)
    return makeError("model_type '" + config->model_type +
                     "' is not supported; supported: " + models::supportedModelTypes());
  int64_t maxContext =
      options.max_context > 0 ? options.max_context : config->max_position_embeddings;
  models::ModelBuilder builder(&context, *config, *weights, maxContext);
  auto module = builder.build(family->layer);
  if (!module)
    return makeError(path + ": " + llvm::toString(module.takeError()));
  ImportedModel imported;
  imported.module = std::move(*module);
  imported.weights = std::move(weights);
  imported.config = std::move(*config);
  imported.max_context = maxContext;
  return imported;
}
