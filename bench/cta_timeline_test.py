#!/usr/bin/env python3
# bench/cta_timeline.py on synthetic traces (ctest cta_timeline_rules): the figures it prints
# for the last replay of a step of known CTA times, whatever the earlier replays held, and its
# errors on truncated or mismatched files. Fresh random times each run.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cta_timeline import RECORD  # noqa: E402

rng = np.random.default_rng()
NAMES = ["skinny_tma qkv m=16 k=4096 n=4096 weights=3 split=2", "attention_decode b=16",
         "skinny_tma o m=16 k=4096 n=4096 weights=1 split=2"]
GRIDS = [12, 8, 10]
LAYERS = 2


def make_step(t0, scale):
  """One replay: LAYERS x the three launches in order; returns records and the expected rows."""
  rows, recs, prev_end, prev = [], [], None, None
  t = t0
  launch = 0
  for _ in range(LAYERS):
    for name, grid in zip(NAMES, GRIDS):
      start = t + rng.integers(0, 500, size=grid)
      ready = (prev_end if prev_end is not None else t) + rng.integers(300, 3000, size=grid)
      end = np.maximum(ready, start) + (rng.integers(2000, 20000, size=grid) * scale)
      sm = rng.integers(0, 7, size=grid)
      for b in range(grid):
        recs.append((launch, b, sm[b], 1, start[b], ready[b], end[b], 0, 0, 0))
      if prev_end is not None:
        # CTAs that start on an SM while one of the previous launch's runs there.
        beside = sum(any(psm == sm[b] and ps <= start[b] < pe for psm, ps, pe in prev)
                     for b in range(grid))
        rows.append(dict(launch=launch, span_us=(end.max() - prev_end) / 1e3,
                         first_ready_us=(ready.min() - prev_end) / 1e3,
                         median_ready_us=(int(np.median(ready)) - prev_end) / 1e3,
                         tail_after_median_us=(end.max() - int(np.median(end))) / 1e3,
                         beside_prev=beside))
      prev = list(zip(sm, start, end))
      prev_end = int(end.max())
      t = prev_end - int(rng.integers(0, 1000))
      launch += 1
  return recs, rows, prev_end


def run(records, names, extra=()):
  with tempfile.TemporaryDirectory() as d:
    trace = os.path.join(d, "trace.bin")
    records.tofile(trace)
    with open(trace + ".launches", "w") as f:
      f.write(names)
    out = os.path.join(d, "out.json")
    r = subprocess.run([sys.executable, os.path.join(HERE, "cta_timeline.py"), trace, "--json",
                        out, *extra], capture_output=True, text=True)
    result = json.load(open(out)) if r.returncode == 0 else None
    return r.returncode, r.stdout + r.stderr, result


def main():
  failures = 0
  names = "".join(f"{i} {NAMES[i % 3]}\n" for i in range(3 * LAYERS))
  # Three replays; the earlier ones ten times slower: only the last may show.
  recs, t = [], 1_000_000
  for replay in range(3):
    step, expected, t = make_step(t + 5000, 10 if replay < 2 else 1)
    recs += step
  records = np.array(recs, dtype=RECORD)
  rng.shuffle(records)  # the ring holds records in completion order, not launch order
  rc, text, result = run(records, names)
  if rc != 0:
    print("FAIL: a valid trace was refused:", text)
    return 1
  got = {row["launch"]: row for row in result["launches"]}
  for want in expected:
    row = got.get(want["launch"])
    for key in ("span_us", "first_ready_us", "median_ready_us", "tail_after_median_us",
                "beside_prev"):
      if row is None or abs(row[key] - want[key]) > 1e-3:
        print(f"FAIL: launch {want['launch']} {key}: got {row and row[key]}, want {want[key]}")
        failures += 1
  kinds = {k["name"]: k for k in result["kinds"]}
  o = kinds.get(NAMES[2])
  spans = [w["span_us"] for w in expected if w["launch"] % 3 == 2]
  if o is None or abs(o["span_us"] - np.mean(spans)) > 1e-3 or o["n"] != LAYERS:
    print("FAIL: o_proj's kind row", o, "want mean span", np.mean(spans))
    failures += 1
  want_gbs = 2 * 4096 * 4096 / (np.mean(spans) * 1e3)
  if o is None or abs(o["gb_per_s"] - want_gbs) > 1e-6 * want_gbs:
    print("FAIL: o_proj's GB/s", o and o["gb_per_s"], "want", want_gbs)
    failures += 1
  # Bad input: a clear error, never a traceback.
  single, _, _ = make_step(1_000_000, 1)
  for what, recs_bad, names_bad in (
      ("truncated records", None, names),
      ("a launch without a name", records, "0 x\n"),
      ("a malformed .launches line", records, "zero x\n"),
      ("no replayed launch (one replay only)", np.array(single, dtype=RECORD), names)):
    if recs_bad is None:
      with tempfile.TemporaryDirectory() as d:
        trace = os.path.join(d, "t.bin")
        with open(trace, "wb") as f:
          f.write(records.tobytes()[:-3])
        with open(trace + ".launches", "w") as f:
          f.write(names_bad)
        r = subprocess.run([sys.executable, os.path.join(HERE, "cta_timeline.py"), trace],
                           capture_output=True, text=True)
        rc, text = r.returncode, r.stdout + r.stderr
    else:
      rc, text, _ = run(recs_bad, names_bad)
    if rc == 0 or "Traceback" in text or "cta_timeline:" not in text:
      print(f"FAIL: {what}: rc {rc}, output {text[-300:]!r}")
      failures += 1
  print("cta_timeline rules:", "FAIL" if failures else "PASS")
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
