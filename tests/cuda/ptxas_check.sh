#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ptxas's resource report of the tensor-core kernels (tests/cuda/ptxas_kernels.cu), for sm_80 and
# sm_90: fails unless every tc_* kernel has no local memory (0-byte stack frame, no spill stores
# or loads), at most 255 registers per thread (the __launch_bounds__(128, 1) of tc_launch.cuh),
# no static shared memory (the launch passes all of it dynamically; ptxas_kernels.cu
# static_asserts those sizes against the 99 KiB every sm_80+ GPU offers) and the expected
# number of kernels. Needs nvcc only, no GPU.
#   bash tests/cuda/ptxas_check.sh NVCC SOURCE_DIR WORK_DIR
set -euo pipefail
nvcc=$1 src=$2 work=$3
mkdir -p "$work"
status=0
for arch in 80 90; do
  log="$work/ptxas_sm_$arch.log"
  "$nvcc" -std=c++20 -arch=sm_$arch -cubin -o "$work/kernels_sm_$arch.cubin" -Xptxas -v \
    -I"$src/include" -I"$src/tests" "$src/tests/cuda/ptxas_kernels.cu" >"$log" 2>&1 || {
    cat "$log"
    exit 1
  }
  # One line per entry: kernel, tile config, registers, stack, spill stores, spill loads, smem.
  awk -v arch="$arch" '
    /Compiling entry function/ { name = $0; stack = spill_s = spill_l = 0; smem = 0 }
    /bytes stack frame/ { stack = $1; spill_s = $5; spill_l = $9 }
    /Used [0-9]+ registers/ {
      regs = $5
      smem = 0
      if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH) + 0
      match(name, /tc_[a-z_]+/); kernel = substr(name, RSTART, RLENGTH)
      if (kernel == "") next
      tiles = "-"
      if (match(name, /tilesILi[0-9]+ELi[0-9]+/)) tiles = substr(name, RSTART + 8, RLENGTH - 8)
      sub(/ELi/, "x", tiles)
      print kernel, tiles, regs, stack, spill_s, spill_l, smem
    }' "$log" >"$work/ptxas_sm_$arch.txt"
  n=$(wc -l <"$work/ptxas_sm_$arch.txt")
  bad=$(awk '$3 > 255 || $4 != 0 || $5 != 0 || $6 != 0 || $7 != 0' "$work/ptxas_sm_$arch.txt")
  echo "sm_$arch: $n tensor-core kernels; most registers per kernel and tile configuration:"
  sort -k1,1 -k2,2 -k3,3n "$work/ptxas_sm_$arch.txt" |
    awk '{ key = $1 " " $2; most[key] = $3 } END { for (k in most) print "  " k, most[k] }' | sort
  if [ "$n" -ne 80 ]; then
    echo "sm_$arch: expected 80 kernels in the report, found $n" >&2
    status=1
  fi
  if [ -n "$bad" ]; then
    echo "sm_$arch: kernels over the limits (kernel tiles registers stack spill_st spill_ld smem):" >&2
    echo "$bad" >&2
    status=1
  fi
done
exit $status
