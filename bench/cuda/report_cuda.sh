#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs semfocus_bench_cuda (the CUDA backend's tiled kernels; needs a GPU) and prints a Markdown
# table: one row per (policy, kernels, dtype, d, n) with forward and backward TFLOP/s.
#   "TFLOP/s" is the dense-equivalent ("effective") rate: forward 4 n^2 d, backward 10 n^2 d per
#   head (2.5 x forward, the FlashAttention convention), whatever the policy; "kept" columns charge
#   only the fraction of (query, key) pairs the policy keeps (causal (n+1)/(2n), banded k/n, top_k
#   k/n; "n/a" for threshold, whose kept count is data-dependent). See bench/cuda/bench_cuda.cu.
#   batch * heads = 262144 / n (the "B*H" column), so every n has the same number of tokens.
# Each benchmark runs 3 times (0.2 s of manual time each by default; pass --benchmark_min_time=X
# to change it); the table shows the medians of the CUDA-event (manual) times.
#
# Usage: bash bench/cuda/report_cuda.sh [BUILD_DIR] [extra Google Benchmark flags...]
#   BUILD_DIR is a build directory configured with -DSEMFOCUS_ENABLE_CUDA=ON
#   -DSEMFOCUS_BUILD_BENCHMARKS=ON (default: build/dev of this checkout, which builds it with the tests when nvcc is found); build the target
#   semfocus_bench_cuda first. SEMFOCUS_REPORT_FILTER=REGEX replaces the default
#   --benchmark_filter (default: everything, the naive n = 1024 comparison included).
# The raw results stay in BUILD_DIR/bench/cuda/cuda_report.csv and cuda_report.json. Needs bash and awk
# only. bench/cuda/sdpa_reference.py prints the same columns for PyTorch's SDPA.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/dev}"
if (($# > 0)); then shift; fi
exe="$build/bench/cuda/semfocus_bench_cuda"
if [ ! -x "$exe" ]; then
  echo "report_cuda.sh: $exe not found; configure with -DSEMFOCUS_ENABLE_CUDA=ON" >&2
  echo "  -DSEMFOCUS_BUILD_BENCHMARKS=ON and build the target semfocus_bench_cuda" >&2
  exit 1
fi

filter="${SEMFOCUS_REPORT_FILTER:-.}"
csv="$build/bench/cuda/cuda_report.csv"
json="$build/bench/cuda/cuda_report.json"

echo "report_cuda.sh: running $exe (3 repetitions per benchmark; this takes a while)" >&2
"$exe" --benchmark_filter="$filter" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 \
  --benchmark_format=csv --benchmark_out="$json" --benchmark_out_format=json \
  "$@" >"$csv"
if grep -q '^no CUDA device: skipped' "$csv"; then
  echo "report_cuda.sh: no CUDA device: nothing to report" >&2
  exit 0
fi

# CSV columns (Google Benchmark 1.7): name, iterations, real_time, cpu_time, time_unit,
# bytes_per_second, items_per_second, label, error_occurred, error_message, then the user
# counters (TFLOPs, kept_TFLOPs, kept_fraction); found by header name. Rows are
# <benchmark>_mean/_median/_stddev/_cv; names are
# <dir>/<policy>/<impl>/<dtype>/n:<n>/d:<d>/bh:<bh>/manual_time.
awk -F, '
  function unquote(s) { gsub(/"/, "", s); return s }
  function fmt(x) { return x == "" ? "n/a" : sprintf(x + 0 < 10 ? "%.2f" : "%.1f", x + 0) }
  !header && /^"?name"?,/ {
    for (i = 1; i <= NF; ++i) col[unquote($i)] = i
    header = 1
    next
  }
  !header { next }
  {
    name = unquote($col["name"])
    err = $col["error_occurred"] == "true"
    if (name !~ /_median$/ && !err) next
    sub(/_median$/, "", name)
    sub(/\/manual_time$/, "", name)
    split(name, part, "/")  # dir, policy, impl, dtype, n:N, d:D, bh:BH
    dir = part[1]
    key = part[2] "/" part[3] "/" part[4] "/" part[5] "/" part[6] "/" part[7]
    if (!(key in index_of)) {
      index_of[key] = ++count
      f_policy[count] = part[2]; f_impl[count] = part[3]; f_dtype[count] = part[4]
      n = part[5]; sub(/^n:/, "", n); f_n[count] = n
      d = part[6]; sub(/^d:/, "", d); f_d[count] = d
      bh = part[7]; sub(/^bh:/, "", bh); f_bh[count] = bh
    }
    r = index_of[key]
    if (err) { tf[r, dir] = "error"; kept[r, dir] = "error"; next }
    tf[r, dir] = fmt($col["TFLOPs"])
    kept[r, dir] = ("kept_TFLOPs" in col) ? fmt($col["kept_TFLOPs"]) : "n/a"
  }
  END {
    if (!count) { print "report_cuda.sh: no results (check the filter)" > "/dev/stderr"; exit 1 }
    print "| policy | kernels | dtype | d | seq | B*H | forward TFLOP/s | backward TFLOP/s | forward kept TFLOP/s | backward kept TFLOP/s |"
    print "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"
    for (r = 1; r <= count; ++r) {
      f = ((r, "fwd") in tf) ? tf[r, "fwd"] : "-"
      b = ((r, "bwd") in tf) ? tf[r, "bwd"] : "-"
      kf = ((r, "fwd") in kept) ? kept[r, "fwd"] : "-"
      kb = ((r, "bwd") in kept) ? kept[r, "bwd"] : "-"
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f_policy[r], f_impl[r],
             f_dtype[r], f_d[r], f_n[r], f_bh[r], f, b, kf, kb
    }
  }
' "$csv"
