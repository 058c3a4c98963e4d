#!/usr/bin/env python3
# CPU decode benchmark: tessel's CPU executor vs the memory-bandwidth floor and HF eager.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: cpu_decode.py --bin build/bin [--python PY] [--json OUT]

For each model: compile with tessel-compile, run `tessel-run --bench` (prompt 16 tokens,
64 greedy steps), and compare the decode time per token with
  floor = bytes of weights as the CPU executor holds them (f32) / measured copy bandwidth
(bench/cpu_membw.cc, read + write bytes per second over 512 MiB buffers), and with HF
transformers eager on the same CPU (float32, same threads) when --python names an
interpreter with torch and transformers. Models:
  tiny-llama3   tests/models/tiny/llama3 (the bundled test checkpoint)
  llama-200m    a random Llama made by transformers (hidden 1024, 12 layers, GQA 16/4,
                vocab 32000, bf16 on disk); needs --python
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = list(range(10, 26))
NEW_TOKENS = 64

MAKE_LLAMA_200M = r'''
import sys, torch
from transformers import LlamaConfig, AutoModelForCausalLM
torch.manual_seed(0)
config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                     num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=4,
                     max_position_embeddings=2048, tie_word_embeddings=False)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
for p in model.parameters():
    torch.nn.init.normal_(p, std=0.02)
model.to(torch.bfloat16).save_pretrained(sys.argv[1], safe_serialization=True)
'''

HF_EAGER = r'''
import sys, time, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(int(sys.argv[3]))
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32,
                                             attn_implementation="eager").eval()
ids = torch.tensor([list(map(int, sys.argv[2].split(",")))])
with torch.no_grad():
    model.generate(ids, max_new_tokens=4, do_sample=False)  # warm up
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=int(sys.argv[4]), do_sample=False,
                         min_new_tokens=int(sys.argv[4]))
    total = time.perf_counter() - start
    start = time.perf_counter()
    model(ids)
    prefill = time.perf_counter() - start
print((total - prefill) / (int(sys.argv[4]) - 1))
'''


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result


def weight_bytes_f32(artifact):
    """Bytes the CPU executor reads per decode step: every weight held as f32."""
    manifest = json.load(open(os.path.join(artifact, "manifest.json")))
    return 4 * manifest["weights"]["parameters"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--python", help="python with torch + transformers (peer, llama-200m)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    bandwidth = float(run([os.path.join(args.bin, "tessel-membw"), "512",
                           str(args.threads)]).stdout) * 1e9
    models = {"tiny-llama3": os.path.join(ROOT, "tests", "models", "tiny", "llama3")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.python:
            path = os.path.join(tmp, "llama-200m")
            run([args.python, "-c", MAKE_LLAMA_200M, path])
            models["llama-200m"] = path
        for name, checkpoint in models.items():
            artifact = os.path.join(tmp, name + ".tessel")
            start = time.perf_counter()
            run([os.path.join(args.bin, "tessel-compile"), checkpoint, "-o", artifact, "--quiet"])
            compile_s = time.perf_counter() - start
            f32_bytes = weight_bytes_f32(artifact)
            out = run([os.path.join(args.bin, "tessel-run"), artifact, "--prompt-ids",
                       ",".join(map(str, PROMPT)), "--max-new-tokens", str(NEW_TOKENS),
                       "--no-stop-at-eos", "--bench", "--threads", str(args.threads)])
            match = re.search(r"decode (\d+) steps ([\d.]+) s", out.stderr)
            steps, seconds = int(match.group(1)), float(match.group(2))
            ours = seconds / steps
            row = {"model": name, "compile_s": compile_s, "weight_bytes_f32": f32_bytes,
                   "decode_ms": ours * 1e3}
            row["floor_ms"] = f32_bytes / bandwidth * 1e3
            row["floor_ratio"] = row["floor_ms"] / row["decode_ms"]
            if args.python:
                peer = run([args.python, "-c", HF_EAGER, checkpoint, ",".join(map(str, PROMPT)),
                            str(args.threads), str(NEW_TOKENS)])
                row["hf_eager_ms"] = float(peer.stdout.split()[-1]) * 1e3
            results.append(row)

    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read + write), {args.threads} threads")
    header = f"{'model':<12} {'compile s':>9} {'weights MB':>10} {'decode ms':>9} " \
             f"{'floor ms':>8} {'floor/ours':>10} {'HF eager ms':>11}"
    print(header)
    for r in results:
        peer = f"{r['hf_eager_ms']:.2f}" if "hf_eager_ms" in r else "n/a"
        print(f"{r['model']:<12} {r['compile_s']:>9.3f} {r['weight_bytes_f32'] / 1e6:>10.1f} "
              f"{r['decode_ms']:>9.3f} {r['floor_ms']:>8.3f} {r['floor_ratio']:>10.2f} "
              f"{peer:>11}")
    if args.json:
        json.dump({"bandwidth_bytes_per_s": bandwidth, "threads": args.threads,
                   "results": results}, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
