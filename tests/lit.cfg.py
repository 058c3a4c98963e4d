# lit configuration of the tessel test suite (dialects, passes, models, tools).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
import os
import sys

import lit.formats

config.name = "tessel"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.join(config.tessel_src_root, "tests")
config.test_exec_root = os.path.join(config.tessel_obj_root, "tests")
config.excludes = ["Output", "CMakeLists.txt", "lit.cfg.py", "runtime", "fuzz", "gpu", "build", "tiny", "README.md"]

config.environment["PATH"] = os.pathsep.join(
    [config.tessel_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
config.substitutions.append(("%tessel_src", config.tessel_src_root))
config.substitutions.append(("FileCheck", config.filecheck))
config.substitutions.append(("%python", sys.executable))

# Generated GPU kernels need NVRTC at compile time (builds with a CUDA toolkit): tests of
# them say `REQUIRES: nvrtc`; elsewhere every tessel-compile compiles a CPU-only plan.
config.substitutions.append(("%gpu_arch", config.tessel_test_gpu_arch))
if config.tessel_test_gpu_arch != "none":
    config.available_features.add("nvrtc")
else:
    config.substitutions.append(
        (r"(?<![\w./-])tessel-compile(?=\s)", "tessel-compile --gpu-arch=none"))

