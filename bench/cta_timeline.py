#!/usr/bin/env python3
"""Where a traced decode step's time goes, per launch kind (TESSEL_CTA_TRACE).

Reads a per-CTA trace (runtime/cuda/cta_trace.cuh; a build configured with
-DTESSEL_CTA_TRACE=ON) of a tessel-run --bench decode and prints, for the last complete
replay of the captured step, per launch kind (averaged over its launches in the step): the
CTAs and SMs, the span it adds to the step (from the previous traced launch's last CTA end to
its own), the wait from that end to its first and median CTA with inputs in, its tail (last
CTA end after the median one, and after fewer than half the SMs still ran one of its CTAs),
the median CTA's life, its weight bytes per span, and how many of its CTAs started on an SM
while a CTA of the launch before it still ran there (where the scheduler put a chained launch:
beside the previous one's CTAs, or on SMs they left free).

Usage: bench/cta_timeline.py TRACE [--sms N] [--qkv-n N] [--json OUT]
  TRACE: the file TESSEL_CTA_TRACE named (TRACE.launches beside it).
"""
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
import argparse
import json
import os
import re
import sys
from collections import OrderedDict

import numpy as np

RECORD = np.dtype([("launch", "<u4"), ("block", "<u4"), ("smid", "<u4"), ("flags", "<u4"),
                   ("start", "<u8"), ("ready", "<u8"), ("end", "<u8"),
                   ("clock_start", "<u8"), ("clock_end", "<u8"), ("reserved", "<u8")])


def weight_bytes(name):
  """Weight bytes a skinny_tma launch streams (bf16), from its name; 0 for others."""
  m = re.match(r"skinny_tma (\w+) m=\d+ k=(\d+) n=(\d+) weights=(\d+)", name)
  if not m:
    return 0
  kind, k, n, weights = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
  if kind == "qkv":
    return None  # the three n are not in the name; filled by the caller from the spans
  return 2 * k * n * (2 if kind == "gateup" else weights)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("trace")
  parser.add_argument("--sms", type=int, default=132, help="the GPU's SMs (H100 SXM: 132)")
  parser.add_argument("--qkv-n", type=int, default=6144,
                      help="q/k/v's summed rows (Llama-3-8B: 4096 + 2 x 1024)")
  parser.add_argument("--json", help="also write the per-kind table here")
  args = parser.parse_args()
  try:
    size = os.path.getsize(args.trace)
    if size % RECORD.itemsize != 0:
      sys.exit(f"cta_timeline: {args.trace}: {size} bytes is not a whole number of "
               f"{RECORD.itemsize}-byte records (truncated?)")
    records = np.fromfile(args.trace, dtype=RECORD)
    names = {}
    with open(args.trace + ".launches") as f:
      for number, line in enumerate(f, 1):
        if not line.strip():
          continue
        fields = line.rstrip("\n").split(" ", 1)
        if len(fields) != 2 or not fields[0].isdigit():
          sys.exit(f"cta_timeline: {args.trace}.launches line {number}: expected 'id name'")
        names[int(fields[0])] = fields[1].strip()
  except OSError as e:
    sys.exit(f"cta_timeline: cannot read the trace: {e}")
  if records.size == 0:
    sys.exit("cta_timeline: the trace holds no records")
  unknown = set(np.unique(records["launch"]).tolist()) - set(names)
  if unknown:
    sys.exit(f"cta_timeline: records of launches {sorted(unknown)[:5]} have no name: "
             "a trace and a .launches file of different runs?")

  # The decode step: the launches of a captured CUDA graph, replayed once per step (a launch
  # id of the capture records its grid once per replay), in capture order, which is the
  # order they run in. Their last replay: each one's latest grid of records.
  order = np.argsort(records["end"], kind="stable")
  records = records[order]
  replays, latest = {}, {}
  for launch in np.unique(records["launch"]):
    mine = records[records["launch"] == launch]
    grid = len(np.unique(mine["block"]))
    replays[int(launch)] = mine.size // grid
    latest[int(launch)] = mine[-grid:]
  most = max(replays.values())
  if most < 2:
    sys.exit("cta_timeline: no launch was replayed: trace a run with a captured decode step")
  step = [(launch, latest[launch]) for launch in sorted(latest) if replays[launch] >= most - 1]
  resolution = np.diff(np.unique(records["end"][-20000:]))
  tick = int(resolution[resolution > 0].min()) if resolution.size else 0

  rows = []
  prev_end = None
  prev_recs = None
  step_start = int(step[0][1]["start"].min())
  for launch, recs in step:
    name = names[launch]
    end = recs["end"].astype(np.int64)
    ready = recs["ready"].astype(np.int64)
    start = recs["start"].astype(np.int64)
    has_ready = recs["flags"] == 1
    last_end = int(end.max())
    median_end = int(np.median(end))
    # Fewer than half the SMs busy with this launch: from the time the count of running CTAs
    # (those started and not ended) last drops below SMs / 2 to the last end.
    events = sorted([(int(t), 1) for t in start] + [(int(t), -1) for t in end])
    running, low_since = 0, None
    sms = len(np.unique(recs["smid"]))
    for t, d in events:
      running += d
      if running < args.sms // 2 and d < 0 and low_since is None:
        low_since = t
      elif running >= args.sms // 2:
        low_since = None
    # CTAs started on an SM while a CTA of the previous launch ran on it.
    beside = 0
    if prev_recs is not None:
      prev_sm = prev_recs["smid"]
      prev_start = prev_recs["start"].astype(np.int64)
      prev_stop = prev_recs["end"].astype(np.int64)
      for sm in np.unique(recs["smid"]):
        mine = start[recs["smid"] == sm]
        on = prev_sm == sm
        if on.any():
          running = ((mine[:, None] >= prev_start[on][None, :]) &
                     (mine[:, None] < prev_stop[on][None, :]))
          beside += int(running.any(axis=1).sum())
    bytes_ = weight_bytes(name)
    if bytes_ is None:
      k = int(re.search(r"k=(\d+)", name).group(1))
      bytes_ = 2 * k * args.qkv_n
    row = OrderedDict(
        launch=launch, name=name, ctas=int(recs.size), sms=sms,
        span_us=(last_end - prev_end) / 1e3 if prev_end is not None else float("nan"),
        first_ready_us=(int(ready[has_ready].min()) - prev_end) / 1e3
        if prev_end is not None and has_ready.any() else float("nan"),
        median_ready_us=(int(np.median(ready[has_ready])) - prev_end) / 1e3
        if prev_end is not None and has_ready.any() else float("nan"),
        first_start_us=(int(start.min()) - prev_end) / 1e3 if prev_end is not None else float("nan"),
        tail_after_median_us=(last_end - median_end) / 1e3,
        tail_below_half_us=(last_end - low_since) / 1e3 if low_since is not None else 0.0,
        cta_us_median=float(np.median(end - start)) / 1e3,
        beside_prev=beside if prev_recs is not None else float("nan"),
        bytes=bytes_,
    )
    rows.append(row)
    prev_end = last_end
    prev_recs = recs
  step_us = (prev_end - step_start) / 1e3

  # Per kind: launches with the same name (one per layer).
  kinds = OrderedDict()
  for row in rows[1:]:
    kinds.setdefault(row["name"], []).append(row)
  print(f"traced launches in the step: {len(rows)}; step span (first traced start to last end): "
        f"{step_us:.1f} us; timer tick {tick} ns")
  print("| launch kind | n | CTAs | SMs | span us | first ready us | median ready us | "
        f"tail after median us | tail < {args.sms // 2} CTAs us | CTA us | GB/s over span | "
        "CTAs started beside the previous launch's |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  table = []
  for name, group in kinds.items():
    mean = lambda key: float(np.mean([r[key] for r in group]))
    gbs = group[0]["bytes"] / (mean("span_us") * 1e3) if group[0]["bytes"] else 0.0
    entry = OrderedDict(name=name, n=len(group), ctas=group[0]["ctas"], sms=group[0]["sms"],
                        span_us=mean("span_us"), first_ready_us=mean("first_ready_us"),
                        median_ready_us=mean("median_ready_us"),
                        tail_after_median_us=mean("tail_after_median_us"),
                        tail_below_half_us=mean("tail_below_half_us"),
                        cta_us=mean("cta_us_median"), gb_per_s=gbs,
                        beside_prev=mean("beside_prev"))
    table.append(entry)
    print(f"| {name} | {entry['n']} | {entry['ctas']} | {entry['sms']} | {entry['span_us']:.2f} | "
          f"{entry['first_ready_us']:.2f} | {entry['median_ready_us']:.2f} | "
          f"{entry['tail_after_median_us']:.2f} | {entry['tail_below_half_us']:.2f} | "
          f"{entry['cta_us']:.2f} | {gbs:.0f} | {entry['beside_prev']:.1f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"step_us": step_us, "tick_ns": tick, "kinds": table, "launches": rows}, f,
                indent=1)


if __name__ == "__main__":
  main()
