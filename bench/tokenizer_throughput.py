#!/usr/bin/env python3
# Tokenizer encode throughput: tessel vs HF `tokenizers`, single-threaded, same file and text.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: tokenizer_throughput.py --bench BIN/tokenizer_bench [--python PY]
                                  [--tokenizer FILE ... --text FILE] [--chunk-bytes N]

Encodes the same text, split into the same chunks (at the first newline after every
--chunk-bytes bytes), with tessel (bench/tokenizer_bench.cc) and with HF tokenizers'
Tokenizer.encode on one thread (RAYON_NUM_THREADS=1), takes the best of --repeats passes,
checks that both produce the same ids, and prints MB/s of input for both and the ratio.
Without --tokenizer/--text it builds them with tests/tokenizer/make_test_tokenizers.py
--bench-out: 32k-vocab Llama 3-style and Qwen2-style BPEs and ~4.7 MB of mixed text. --python names an
interpreter with `tokenizers` (default: the one running this script).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HF_SCRIPT = r"""
import json, sys, time
from tokenizers import Tokenizer
tok_path, text_path, chunk_bytes, repeats, ids_out = sys.argv[1:6]
tok = Tokenizer.from_file(tok_path)
data = open(text_path, "rb").read()
chunks, begin, chunk_bytes = [], 0, int(chunk_bytes)
while begin < len(data):
    end = data.find(b"\n", min(len(data), begin + chunk_bytes))
    end = len(data) if end < 0 else end + 1
    chunks.append(data[begin:end].decode("utf-8"))
    begin = end
best, last = 1e30, None
for _ in range(int(repeats)):
    start = time.perf_counter()
    last = [tok.encode(c).ids for c in chunks]
    best = min(best, time.perf_counter() - start)
with open(ids_out, "w") as f:
    for ids in last:
        f.write(" ".join(map(str, ids)) + "\n")
print(json.dumps({"bytes": len(data), "seconds": best, "mb_per_s": len(data) / best / 1e6,
                  "tokens": sum(map(len, last))}))
"""


def measure(args, work, tokenizer, chunk_bytes):
    """Best-of-N single-threaded encode of the text by tessel and by HF, and id parity."""
    ours_ids, hf_ids = os.path.join(work, "ours.ids"), os.path.join(work, "hf.ids")
    ours = json.loads(subprocess.run(
        [args.bench, tokenizer, args.text, str(chunk_bytes), str(args.repeats), ours_ids],
        check=True, capture_output=True, text=True).stdout)
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    hf = json.loads(subprocess.run(
        [args.python, "-c", HF_SCRIPT, tokenizer, args.text, str(chunk_bytes),
         str(args.repeats), hf_ids], check=True, capture_output=True, text=True,
        env=env).stdout)
    with open(ours_ids) as a, open(hf_ids) as b:
        same = a.read() == b.read()
    label = "whole file" if chunk_bytes >= 1 << 30 else f"{chunk_bytes} B chunks"
    return {"tokenizer": os.path.basename(tokenizer), "input": label, "bytes": ours["bytes"],
            "tokens": ours["tokens"], "tessel_mb_s": ours["mb_per_s"],
            "hf_mb_s": hf["mb_per_s"], "ratio": ours["mb_per_s"] / hf["mb_per_s"],
            "ids_identical": same}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="path of the tokenizer_bench binary")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--tokenizer", action="append", help="tokenizer.json (repeatable)")
    parser.add_argument("--text")
    parser.add_argument("--chunk-bytes", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="tokbench")
    if not (args.tokenizer and args.text):
        here = os.path.dirname(os.path.abspath(__file__))
        script = os.path.join(here, "..", "tests", "tokenizer", "make_test_tokenizers.py")
        subprocess.run([args.python, script, "--bench-out", work], check=True)
        args.tokenizer = [os.path.join(work, name)
                          for name in ("bench_tokenizer.json", "bench_qwen2_tokenizer.json")]
        args.text = os.path.join(work, "bench_text.txt")

    rows = []
    for tokenizer in args.tokenizer:
        for chunk_bytes in sorted({args.chunk_bytes, 1 << 30}):
            rows.append(measure(args, work, tokenizer, chunk_bytes))

    print(f"text {args.text}")
    print(f"{'tokenizer':<28} {'input':<16} {'MB':>5} {'tokens':>8} {'tessel MB/s':>12} "
          f"{'HF MB/s':>8} {'ratio':>6}  ids")
    for r in rows:
        print(f"{r['tokenizer']:<28} {r['input']:<16} {r['bytes'] / 1e6:5.2f} "
              f"{r['tokens']:8d} {r['tessel_mb_s']:12.2f} {r['hf_mb_s']:8.2f} "
              f"{r['ratio']:6.2f}  {'identical' if r['ids_identical'] else 'DIFFERENT'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["ids_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
