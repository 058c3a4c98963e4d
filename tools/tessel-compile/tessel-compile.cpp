//===- tessel-compile.cpp - the tessel compiler driver ----------*- C++ -*-===//
// Compiles a checkpoint (Hugging Face directory or GGUF file) into a deployment artifact,
// or prints its tessel IR at some stage.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
#include "compiler/codegen/FusionCodegen.h"
#include "compiler/emit/Artifact.h"
#include "compiler/import/Importer.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

#include <chrono>
#include <optional>

namespace cl = llvm::cl;

namespace {
cl::OptionCategory category("tessel-compile options");

cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                               cl::desc("<checkpoint: Hugging Face directory or .gguf file>"),
                               cl::cat(category));

enum class EmitKind { Artifact, MLIR, Exec, Cuda, Config };
cl::opt<EmitKind> emit(
    "emit",
    cl::desc("What to produce (default: an artifact with -o DIR, else --emit=mlir on stdout)"),
    cl::values(clEnumValN(EmitKind::Artifact, "artifact",
                          "a deployment artifact directory (plan.tsl, weights, manifest)"),
               clEnumValN(EmitKind::MLIR, "mlir", "the imported tessel module (prefill + decode)"),
               clEnumValN(EmitKind::Exec, "exec",
                          "the lowered, memory-planned tessel_exec module"),
               clEnumValN(EmitKind::Cuda, "cuda",
                          "the CUDA C++ of the generated (fused) kernels"),
               clEnumValN(EmitKind::Config, "config",
                          "the architecture read from the checkpoint")),
    cl::cat(category));

cl::opt<std::string> outputPath("o",
                                cl::desc("Output: the artifact directory, or a file for "
                                         "--emit=mlir/exec/config ('-' for stdout)"),
                                cl::value_desc("path"), cl::init("-"), cl::cat(category));

cl::opt<bool> quiet("quiet", cl::desc("Do not report progress"), cl::cat(category));

enum class WeightsKind { Write, None };
cl::opt<WeightsKind> weightsKind(
    "weights", cl::desc("Weights of the artifact"), cl::init(WeightsKind::Write),
    cl::values(clEnumValN(WeightsKind::Write, "write", "copy them into weights.rank0.bin"),
               clEnumValN(WeightsKind::None, "none",
                          "no weights file: the plan only (run with tessel-run --weights "
                          "dummy, for benchmarks of real-size models)")),
    cl::cat(category));

cl::opt<int64_t> maxContext("max-context",
                            cl::desc("KV cache capacity in tokens (default: the model's "
                                     "max_position_embeddings)"),
                            cl::init(0), cl::cat(category));

cl::opt<std::string> gpuArch(
    "gpu-arch",
    cl::desc("GPU architectures of the generated kernels: a comma list of sm_XY[a] (cubin "
             "for each, plus PTX of the lowest for newer GPUs), or 'none' for a CPU-only "
             "plan"),
    cl::value_desc("sm_90a,sm_80|none"), cl::init("sm_90a"), cl::cat(category));

cl::opt<bool> verbose("v", cl::desc("Report what was read and how long it took"),
                      cl::cat(category));

int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "tessel-compile") << message << "\n";
  return 1;
}

void printConfig(const tessel::import::ModelConfig &c, llvm::raw_ostream &os) {
  os << "model_type: " << c.model_type << "\nlayers: " << c.num_layers
     << "\nhidden_size: " << c.hidden_size << "\nintermediate_size: " << c.intermediate_size
     << "\nheads: " << c.num_heads << "\nkv_heads: " << c.num_kv_heads
     << "\nhead_dim: " << c.head_dim << "\nvocab_size: " << c.vocab_size
     << "\nmax_position_embeddings: " << c.max_position_embeddings
     << "\nrope_theta: " << c.rope.theta << "\nrotary_dim: " << c.rope.rotary_dim
     << "\nrope_interleaved: " << (c.rope.interleaved ? "true" : "false")
     << "\nrope_scaling: " << (c.rope.scaling ? c.rope.scaling->type : "none")
     << "\ntied_embeddings: " << (c.tie_word_embeddings ? "true" : "false") << "\n";
  if (c.sliding_window)
    os << "sliding_window: " << *c.sliding_window << "\n";
  if (c.moe)
    os << "experts: " << c.moe->num_experts << " (top " << c.moe->top_k << ", "
       << (c.moe->sigmoid_scoring ? "sigmoid" : "softmax") << ", groups " << c.moe->n_group
       << "/" << c.moe->topk_group << ", shared " << c.moe->num_shared_experts << ")\n";
  if (c.mla)
    os << "mla: q_lora_rank " << c.mla->q_lora_rank << ", kv_lora_rank "
       << c.mla->kv_lora_rank << ", nope " << c.mla->qk_nope_head_dim << ", rope "
       << c.mla->qk_rope_head_dim << ", v " << c.mla->v_head_dim << "\n";
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "tessel-compile: compile a transformer checkpoint\n\n"
      "  tessel-compile <hf-dir | model.gguf> -o <artifact-dir>\n"
      "  tessel-compile <hf-dir | model.gguf> --emit=mlir|exec|cuda|config [-o file]\n\n"
      "Supported model types: llama, mistral, qwen2, mixtral, deepseek_v2, deepseek_v3 "
      "(Hugging Face);\nllama, qwen2 (GGUF).\n");
  auto start = std::chrono::steady_clock::now();

  EmitKind kind = emit.getNumOccurrences()
                      ? emit.getValue()
                      : (outputPath == "-" ? EmitKind::MLIR : EmitKind::Artifact);
  if (kind == EmitKind::Artifact && outputPath == "-")
    return fail("an artifact needs a directory: give -o <artifact-dir> (or --emit=mlir to "
                "print the IR)");

  if (kind == EmitKind::Config) {
    auto config = ::tessel::import::readModelConfig(inputPath);
    if (!config)
      return fail(llvm::toString(config.takeError()));
    std::string errorMessage;
    auto output = mlir::openOutputFile(outputPath, &errorMessage);
    if (!output)
      return fail(errorMessage);
    printConfig(*config, output->os());
    output->keep();
    return 0;
  }

  mlir::MLIRContext context;
  context.loadDialect<mlir::tessel_exec::TesselExecDialect>();
  ::tessel::import::ImportOptions options;
  options.max_context = maxContext;
  auto imported = ::tessel::import::importCheckpoint(context, inputPath, options);
  if (!imported)
    return fail(llvm::toString(imported.takeError()));
  mlir::ModuleOp module = *imported->module;
  auto report = [&](llvm::StringRef what) {
    if (!verbose)
      return;
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    llvm::errs() << "tessel-compile: " << what << " after " << llvm::format("%.3f", seconds)
                 << " s\n";
  };
  report("imported " + inputPath);

  if (kind != EmitKind::MLIR) {
    mlir::PassManager pm(&context);
    mlir::tessel::buildCompilePipeline(pm, mlir::tessel::CompilePipelineOptions());
    if (mlir::failed(pm.run(module)))
      return fail("the compile pipeline failed (see the diagnostics above)");
    report("lowered and planned");
  }
  // Fused groups become CUDA kernels, compiled for --gpu-arch unless it is 'none'.
  std::optional<::tessel::codegen::GpuCode> gpuCode;
  if (kind == EmitKind::Cuda || kind == EmitKind::Artifact) {
    auto archs = ::tessel::codegen::parseGpuArchs(gpuArch);
    if (!archs)
      return fail(llvm::toString(archs.takeError()));
    if (kind == EmitKind::Cuda || !archs->empty()) {
      auto code = ::tessel::codegen::generateFusionKernels(module);
      if (!code)
        return fail(llvm::toString(code.takeError()));
      gpuCode = std::move(*code);
    }
    if (kind == EmitKind::Artifact && gpuCode) {
      if (llvm::Error error = ::tessel::codegen::compileWithNvrtc(*gpuCode, *archs))
        return fail(llvm::toString(std::move(error)));
      report("compiled " + std::to_string(gpuCode->kernels.size()) +
             " generated kernels for " + gpuArch);
    }
  }
  if (kind == EmitKind::Cuda) {
    std::string errorMessage;
    auto output = mlir::openOutputFile(outputPath, &errorMessage);
    if (!output)
      return fail(errorMessage);
    output->os() << gpuCode->source;
    output->keep();
    return 0;
  }
  if (kind == EmitKind::Artifact) {
    ::tessel::emit::ArtifactOptions artifact;
    artifact.gpu_code = gpuCode ? &*gpuCode : nullptr;
    artifact.output_dir = outputPath;
    artifact.checkpoint_path = inputPath;
    artifact.progress = !quiet;
    artifact.write_weights = weightsKind == WeightsKind::Write;
    if (llvm::Error error = ::tessel::emit::writeArtifact(module, *imported, artifact))
      return fail(llvm::toString(std::move(error)));
    report("wrote " + outputPath);
    if (!quiet)
      llvm::errs() << "tessel-compile: wrote " << outputPath << "\n";
    return 0;
  }
  std::string errorMessage;
  auto output = mlir::openOutputFile(outputPath, &errorMessage);
  if (!output)
    return fail(errorMessage);
  module->print(output->os());
  output->os() << "\n";
  output->keep();
  return 0;
}
