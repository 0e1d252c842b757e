#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the README table's subset of semfocus_bench_simd and prints it as a Markdown table:
#   dense forward and backward at n = 4096, d in {64, 128}, 1 and 2 threads, with the Eigen
#   baseline of each shape; causal, banded:64 and top_k:64 forward and backward at n = 4096,
#   d = 128, 1 thread.
# Each benchmark runs 3 times; the table shows the medians. "vs Eigen" is the Eigen baseline's time
# for the same direction and shape (dense, 1 thread) divided by the row's time: > 1 is faster than
# Eigen. GFLOP/s uses the dense FLOP count for every policy (see bench/bench_simd.cpp).
#
# Usage: bash bench/report.sh [BUILD_DIR] [extra Google Benchmark flags...]
#   BUILD_DIR is the bench preset's build directory (default: build/bench of this checkout); build
#   it first with  cmake --workflow --preset bench  (or bash cmake/run.sh bench).
#   SEMFOCUS_REPORT_FILTER=REGEX replaces the default --benchmark_filter.
# The raw results stay in BUILD_DIR/bench/simd_report.csv and simd_report.json. Needs bash and awk
# only (the CSV output is parsed; the JSON file is kept for other tools).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build/bench}"
if (($# > 0)); then shift; fi
exe="$build/bench/semfocus_bench_simd"
if [ ! -x "$exe" ]; then
  echo "report.sh: $exe not found; build it with: cmake --workflow --preset bench" >&2
  echo "  (it exists only when xsimd is found: libxsimd-dev)" >&2
  exit 1
fi

default_filter='^(fwd|bwd)/dense/(simd|eigen)/n:4096/d:(64|128)/t:[12]/'
default_filter+='|^(fwd|bwd)/(causal|banded:64|top_k:64)/simd/n:4096/d:128/t:1/'
filter="${SEMFOCUS_REPORT_FILTER:-$default_filter}"
csv="$build/bench/simd_report.csv"
json="$build/bench/simd_report.json"

echo "report.sh: running $exe (3 repetitions per benchmark; this takes a few minutes)" >&2
"$exe" --benchmark_filter="$filter" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_format=csv --benchmark_out="$json" --benchmark_out_format=json \
  "$@" >"$csv"

# CSV columns (Google Benchmark 1.7): name, iterations, real_time, cpu_time, time_unit,
# bytes_per_second, items_per_second, label, error_occurred, error_message, then the user
# counters; found by header name. Rows are <benchmark>_mean/_median/_stddev/_cv.
awk -F, '
  function unquote(s) { gsub(/"/, "", s); return s }
  function key_of(dir, policy, impl, n, d, t) { return dir "/" policy "/" impl "/" n "/" d "/" t }
  !header && /^"?name"?,/ {
    for (i = 1; i <= NF; ++i) col[unquote($i)] = i
    header = 1
    next
  }
  !header { next }
  {
    name = unquote($col["name"])
    if (name !~ /_median$/ && $col["error_occurred"] != "true") next
    sub(/_median$/, "", name)
    sub(/\/real_time$/, "", name)
    if (name in seen) next
    seen[name] = 1
    split(name, part, "/")  # dir, policy, impl, n:N, d:D, t:T
    dir = part[1]; policy = part[2]; impl = part[3]
    n = part[4]; sub(/^n:/, "", n)
    d = part[5]; sub(/^d:/, "", d)
    t = part[6]; sub(/^t:/, "", t)
    rows[++count] = key_of(dir, policy, impl, n, d, t)
    f_dir[count] = dir; f_policy[count] = policy; f_impl[count] = impl
    f_n[count] = n; f_d[count] = d; f_t[count] = t
    if ($col["error_occurred"] == "true") { f_err[count] = 1; next }
    ms = $col["real_time"] + 0
    unit = $col["time_unit"]
    if (unit == "s") ms *= 1000; else if (unit == "us") ms /= 1000; else if (unit == "ns") ms /= 1e6
    f_time[count] = ms
    f_gflops[count] = $col["dense_GFLOPs"] + 0
    time_of[rows[count]] = f_time[count]
  }
  END {
    if (!count) { print "report.sh: no results (check the filter)" > "/dev/stderr"; exit 1 }
    print "| direction | policy | backend | n | d | threads | time (ms) | GFLOP/s (dense count) | vs Eigen |"
    print "|---|---|---|--:|--:|--:|--:|--:|--:|"
    for (r = 1; r <= count; ++r) {
      if (f_err[r]) {
        printf "| %s | %s | %s | %s | %s | %s | error | | |\n", f_dir[r], f_policy[r], f_impl[r],
               f_n[r], f_d[r], f_t[r]
        continue
      }
      base = key_of(f_dir[r], "dense", "eigen", f_n[r], f_d[r], 1)
      ratio = (base in time_of && f_time[r] > 0) ? sprintf("%.2fx", time_of[base] / f_time[r]) : "n/a"
      ms = sprintf(f_time[r] < 10 ? "%.3f" : "%.1f", f_time[r])
      printf "| %s | %s | %s | %s | %s | %s | %s | %.1f | %s |\n", f_dir[r], f_policy[r],
             f_impl[r], f_n[r], f_d[r], f_t[r], ms, f_gflops[r], ratio
    }
  }
' "$csv"
