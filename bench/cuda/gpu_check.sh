#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One call that proves the CUDA backend on a machine with an NVIDIA GPU (sm_80 or newer), within
# 8 minutes: builds the CUDA tests and the timing program with nvcc alone (no CMake packages
# needed), runs the tests, times semfocus's bf16 kernels (dense, top_k(64), banded(256); d 64 and
# 128; n 4096 and 16384; forward and backward) and PyTorch SDPA on the same shapes when torch
# with CUDA is importable, and prints one table with the issue's targets as ratios.
#
#   bash bench/cuda/gpu_check.sh [WORK_DIR]          (default build/gpu_check)
#   SEMFOCUS_CUDA_ARCH=90 bash bench/cuda/gpu_check.sh --build-only [WORK_DIR]
#
# --build-only builds without a GPU (nvcc only) and stops, so that scarce device time is not
# spent compiling: carry WORK_DIR to the GPU machine and run the script there. The binaries are
# reused when they were built for the same architecture from the same sources (a SHA-1 of
# include/, tests/ and bench/cuda/ recorded in WORK_DIR/built.txt), rebuilt otherwise.
#
# Needs nvcc (CUDA 12.4+ for C++20) and doctest's single header: /usr/include/doctest/doctest.h,
# or a folder named by $DOCTEST_INCLUDE holding doctest/doctest.h (for a machine without it,
# copy it beside the checkout first: mkdir -p .gpu/doctest && cp /usr/include/doctest/doctest.h
# .gpu/doctest/, and set DOCTEST_INCLUDE=.gpu). Architecture: $SEMFOCUS_CUDA_ARCH (default: the
# first GPU's compute capability from nvidia-smi, e.g. 90). Exits 2 without a GPU, 1 when a
# build or a test fails; the timings still print after a failed test.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_only=0
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
fi
work="${1:-$root/build/gpu_check}"
mkdir -p "$work"
start=$SECONDS
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [ $build_only -eq 1 ]; then
  arch="${SEMFOCUS_CUDA_ARCH:-90}"
else
  if ! nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader \
    >"$work/gpu.txt" 2>/dev/null; then
    echo "gpu_check: no GPU (nvidia-smi failed)" >&2
    exit 2
  fi
  echo "gpu_check: $(head -1 "$work/gpu.txt"); $("$nvcc" --version 2>/dev/null | tail -1)"
  arch="${SEMFOCUS_CUDA_ARCH:-$(head -1 "$work/gpu.txt" | awk -F', ' '{gsub(/\./, "", $2); print $2}')}"
fi
doctest="${DOCTEST_INCLUDE:-/usr/include}"
programs=(test_policies_device test_naive test_flash gpu_check)

# What the binaries are built from: the architecture and every source they include.
built="sm_$arch $(cd "$root" && find include tests bench/cuda -type f \( -name '*.hpp' -o \
  -name '*.cuh' -o -name '*.cu' -o -name '*.h' \) | LC_ALL=C sort | xargs cat | sha1sum | cut -c1-40)"
reuse=1
for t in "${programs[@]}"; do [ -x "$work/$t" ] || reuse=0; done
[ -f "$work/built.txt" ] && [ "$(cat "$work/built.txt")" = "$built" ] || reuse=0
status=0
if [ $reuse -eq 1 ]; then
  echo "gpu_check: reusing the binaries in $work (built for sm_$arch from these sources)"
else
  [ -f "$doctest/doctest/doctest.h" ] || { echo "gpu_check: no doctest/doctest.h under $doctest" >&2; exit 1; }
  rm -f "$work/built.txt"
  # Builds in parallel, one nvcc per translation unit.
  flags=(-std=c++20 -O3 -arch=sm_$arch -I"$root/include" -I"$root/tests" -I"$doctest")
  pids=()
  for t in "${programs[@]}"; do
    src="$root/tests/cuda/$t.cu"
    [ "$t" = gpu_check ] && src="$root/bench/cuda/gpu_check.cu"
    "$nvcc" "${flags[@]}" "$src" -o "$work/$t" >"$work/$t.build.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  if [ $status -ne 0 ]; then
    cat "$work"/*.build.log >&2
    echo "gpu_check: build failed" >&2
    exit 1
  fi
  echo "$built" >"$work/built.txt"
  echo "gpu_check: built for sm_$arch in $((SECONDS - start)) s"
fi
[ $build_only -eq 1 ] && exit 0

for t in test_policies_device test_naive test_flash; do
  if "$work/$t" --minimal >"$work/$t.log" 2>&1; then
    echo "gpu_check: $t passed ($(grep -o 'assertions: *[0-9]*' "$work/$t.log" | head -1))"
  else
    status=1
    echo "gpu_check: $t FAILED" >&2
    tail -40 "$work/$t.log" >&2
  fi
done
echo "gpu_check: tests done at $((SECONDS - start)) s"

"$work/gpu_check" --iters 10 >"$work/semfocus.csv" || status=1
echo "gpu_check: timed at $((SECONDS - start)) s"
(cd "$root/bench/cuda" && python3 gpu_check_table.py "$work/semfocus.csv") || status=1
echo "gpu_check: done in $((SECONDS - start)) s (status $status)"
exit $status
