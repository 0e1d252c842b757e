#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The project's entry point on Debian 12: installs the missing build dependencies (apt-get),
# then runs one CMake workflow preset.
#   bash cmake/run.sh demo       build the examples, run the quickstart and a small policy comparison
#   bash cmake/run.sh test       build tests and examples (CUDA parts too when nvcc is found), run ctest
#   bash cmake/run.sh sanitize   the tests under AddressSanitizer + UBSan
#   bash cmake/run.sh bench      build the benchmarks, print the README's SIMD table
#   bash cmake/run.sh deps       only install the dependencies
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake ninja-build g++ libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "semfocus: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

case "${1:-}" in
  demo)
    cmake --workflow --preset demo
    ./build/demo/examples/quickstart
    # The paper's effect at a small scale (README, "The demo"): about 2 minutes on 2 cores.
    ./build/demo/examples/compare --task even_pairs --policies full,topk:5,banded:5,block:5 \
      --seeds 3 --blocks 2 --d 32 --d-mlp 32 --epochs 60 --train 2000 --test 500 \
      --out build/demo/even_pairs
    ;;
  test) cmake --workflow --preset dev ;;
  sanitize) cmake --workflow --preset sanitize ;;
  bench)
    cmake --workflow --preset bench
    bash bench/report.sh build/bench
    ;;
  deps) ;;
  *)
    echo "usage: bash cmake/run.sh demo|test|sanitize|bench|deps" >&2
    exit 2
    ;;
esac
