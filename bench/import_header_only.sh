#!/usr/bin/env bash
# Benchmarks tessel-compile's import of full-size Hugging Face checkpoints made of safetensors
# headers only (sparse shards, no weight data): wall time and peak memory per model.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
# Usage: bash bench/import_header_only.sh        (builds nothing; needs build/bin/tessel-compile)
#   TESSEL_COMPILE=path  the binary (default: $BUILD_DIR/bin/tessel-compile, BUILD_DIR=build)
#   MODELS="a b"         configs under models/configs (default: llama3-70b llama3-8b qwen2.5-7b
#                        deepseek-v3)
#   RUNS=3               imports per model; the table shows the median wall time and the
#                        largest max RSS
#   TMPDIR               where the checkpoints go ($TMPDIR/tessel-header-only/<model>; a few MB
#                        of disk for 1.5 TB of logical size)
# Acceptance (the import issue): the llama3-70b import takes <= 5 s and <= 1 GiB; the script
# exits 1 when it does not, or when any import fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
compile=${TESSEL_COMPILE:-${BUILD_DIR:-$root/build}/bin/tessel-compile}
models=${MODELS:-llama3-70b llama3-8b qwen2.5-7b deepseek-v3}
runs=${RUNS:-3}
work=${TMPDIR:-/tmp}/tessel-header-only
limit_s=5
limit_mib=1024

[[ -x $compile ]] || { echo "error: $compile not found; build tessel first (scripts/build.sh)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time) is needed for -v" >&2; exit 1; }
mkdir -p "$work"

# Seconds from GNU time's "h:mm:ss" or "m:ss.ss".
to_seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"; }

rows=()
status=0
for model in $models; do
  dir=$work/$model
  summary=$(python3 "$root/bench/make_header_only_checkpoint.py" "$root/models/configs/$model" "$dir" --json)
  read -r tensors shards bytes < <(python3 -c \
    'import json,sys; s=json.loads(sys.argv[1]); print(s["tensors"], s["shards"], s["total_size"])' "$summary")
  disk=$(du -sh "$dir" | cut -f1)
  walls=()
  rss_max=0
  for ((i = 1; i <= runs; i++)); do
    log=$work/$model.time.$i
    if ! /usr/bin/time -v -o "$log" "$compile" "$dir" --emit=mlir -o /dev/null 2>"$work/$model.err"; then
      echo "error: importing $model failed:" >&2; cat "$work/$model.err" >&2; status=1; continue 2
    fi
    wall=$(to_seconds "$(sed -n 's/^.*Elapsed (wall clock) time.*: //p' "$log")")
    rss_kb=$(sed -n 's/^.*Maximum resident set size (kbytes): //p' "$log")
    walls+=("$wall")
    if ((rss_kb > rss_max)); then rss_max=$rss_kb; fi
  done
  median=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  rss_mib=$(awk -v k="$rss_max" 'BEGIN { printf "%.0f", k / 1024 }')
  gb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e9 }')
  rows+=("$(printf '| %-16s | %7s | %6s | %9s | %8s | %9s | %4s |' \
    "$model" "$tensors" "$shards" "$gb" "$median" "$rss_mib" "$disk")")
  if [[ $model == llama3-70b ]]; then
    verdict=$(awk -v w="$median" -v m="$rss_mib" -v ls="$limit_s" -v lm="$limit_mib" \
      'BEGIN { print (w <= ls && m <= lm) ? "PASS" : "FAIL" }')
    acceptance="llama3-70b acceptance (<= ${limit_s} s, <= ${limit_mib} MiB): $verdict (median ${median} s, max RSS ${rss_mib} MiB)"
    [[ $verdict == PASS ]] || status=1
  fi
done

echo "tessel-compile --emit=mlir -o /dev/null on header-only checkpoints ($runs runs each; $(nproc) CPUs)"
echo "| model            | tensors | shards | size (GB) | wall (s) | RSS (MiB) | disk |"
echo "| ---------------- | ------: | -----: | --------: | -------: | --------: | ---: |"
printf '%s\n' "${rows[@]}"
[[ -n ${acceptance:-} ]] && echo "$acceptance"
echo "checkpoints: $work/<model> (size = logical bytes of weights; disk = actual use)"
exit $status
