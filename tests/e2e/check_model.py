#!/usr/bin/env python3
# End-to-end check of one tiny checkpoint: compile, run on the CPU, compare with HF.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: check_model.py --bin BUILD/bin --case DIR [--artifact OUT] [--gguf FILE]

Compiles the checkpoint with tessel-compile, runs tessel-run, and checks against the
references that tests/models/make_tiny_checkpoints.py recorded with HF transformers:
  1. prompt logits ([T, vocab], fp32) match reference_logits.npy: relative error by
     norm <= 1e-4 (and no NaN);
  2. the greedy continuation equals reference.json's greedy_ids;
  3. decode-step logits (prompt prefilled, then one token at a time) match the logits a
     single prefill of the same tokens gives, and HF's reference_full_logits.npy.
Standard library only.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

TOLERANCE = 1e-4


def read_npy(path):
    """Returns (shape, flat list of floats) of a little-endian float32 .npy file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = data[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", data[8:10])
        start = 10
    else:
        (header_len,) = struct.unpack("<I", data[8:12])
        start = 12
    header = data[start:start + header_len].decode("latin1")
    meta = eval(header, {"__builtins__": {}}, {"True": True, "False": False})  # dict literal
    if meta["descr"] != "<f4" or meta["fortran_order"]:
        raise ValueError(f"{path}: expected C-order <f4, got {meta}")
    shape = tuple(meta["shape"])
    count = 1
    for dim in shape:
        count *= dim
    body = data[start + header_len:]
    values = struct.unpack(f"<{count}f", body[:4 * count])
    return shape, values


def relative_error(actual, expected):
    """||actual - expected|| / ||expected||; inf if any value is NaN."""
    if len(actual) != len(expected):
        return math.inf
    num = den = 0.0
    for a, e in zip(actual, expected):
        if math.isnan(a) or math.isnan(e):
            return math.inf
        num += (a - e) ** 2
        den += e * e
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="directory with tessel-compile, tessel-run")
    parser.add_argument("--case", required=True, help="tiny checkpoint dir with references")
    parser.add_argument("--gguf", help="compile this GGUF file instead of the HF directory")
    parser.add_argument("--reference-logits", help="override the reference logits .npy")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--max-context", type=int,
                        help="tessel-compile --max-context (a prompt longer than the model's "
                             "max_position_embeddings, as dynamic NTK RoPE allows)")
    parser.add_argument("--prompt-only", action="store_true",
                        help="check the prompt logits only (dynamic NTK RoPE: HF's cached "
                             "decoding disagrees with its own prefill, see "
                             "tests/models/README.md)")
    parser.add_argument("--gpu-arch", default=None,
                        help="tessel-compile --gpu-arch (none: a CPU-only plan, for builds "
                             "without NVRTC)")
    args = parser.parse_args()

    reference = json.load(open(os.path.join(args.case, "reference.json")))
    prompt = reference["prompt_ids"]
    greedy = reference["greedy_ids"]
    compile_bin = os.path.join(args.bin, "tessel-compile")
    run_bin = os.path.join(args.bin, "tessel-run")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        artifact = os.path.join(tmp, "artifact")
        compile_cmd = [compile_bin, args.gguf or args.case, "-o", artifact, "--quiet"]
        if args.max_context:
            compile_cmd += ["--max-context", str(args.max_context)]
        if args.gpu_arch:
            compile_cmd += ["--gpu-arch", args.gpu_arch]
        run(compile_cmd)
        ids = ",".join(map(str, prompt))

        # 1. Prompt logits vs HF.
        logits_path = os.path.join(tmp, "logits.npy")
        out = run([run_bin, artifact, "--prompt-ids", ids, "--max-new-tokens",
                   str(len(greedy)), "--no-stop-at-eos", "--logits-out", logits_path])
        shape, logits = read_npy(logits_path)
        ref_path = args.reference_logits or os.path.join(args.case, "reference_logits.npy")
        ref_shape, ref = read_npy(ref_path)
        err = relative_error(logits, ref)
        print(f"prompt logits {shape} vs HF {ref_shape}: relative error {err:.3e}")
        if shape != ref_shape or not err <= args.tolerance:
            failures.append(f"prompt logits differ from HF: {err:.3e} > {args.tolerance}")

        if args.prompt_only:
            if failures:
                sys.exit("FAILED: " + "; ".join(failures))
            print("PASSED (prompt logits only)")
            return

        # 2. Greedy continuation.
        generated = [int(t) for t in out.split()]
        print(f"greedy: tessel {generated}\n        HF     {greedy}")
        if generated != greedy:
            failures.append("greedy continuation differs from HF")

        # 3. Decode steps vs one prefill of the same tokens (and vs HF's full logits).
        tokens = prompt + greedy[:-1]
        steps_path = os.path.join(tmp, "steps.npy")
        run([run_bin, artifact, "--prompt-ids", ",".join(map(str, tokens)),
             "--prefill-tokens", "1", "--logits-out", steps_path])
        full_path = os.path.join(tmp, "full.npy")
        run([run_bin, artifact, "--prompt-ids", ",".join(map(str, tokens)),
             "--logits-out", full_path])
        _, steps = read_npy(steps_path)
        _, full = read_npy(full_path)
        err = relative_error(steps, full)
        print(f"decode steps vs prefill ({len(tokens)} positions): relative error {err:.3e}")
        if not err <= args.tolerance:
            failures.append(f"decode-step logits differ from prefill: {err:.3e}")
        hf_full = os.path.join(args.case, "reference_full_logits.npy")
        if os.path.exists(hf_full):
            _, ref_full = read_npy(hf_full)
            err = relative_error(steps, ref_full)
            print(f"decode steps vs HF full-sequence logits: relative error {err:.3e}")
            if not err <= args.tolerance:
                failures.append(f"decode-step logits differ from HF: {err:.3e}")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))
    print("PASSED")


if __name__ == "__main__":
    main()
