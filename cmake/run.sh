#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The project's entry point on Debian 12: installs the missing packages (apt-get), then runs CMake
# presets.
#   bash cmake/run.sh demo       build and run the quickstart and a small policy comparison
#                                (draws its figures with gnuplot, and prints their paths at the end)
#   bash cmake/run.sh test       build tests and examples (CUDA parts too when nvcc is found), print
#                                the SIMD arch the tests exercise, run ctest; then build the PyTorch
#                                package (python/) into build/venv (torch from PyPI) and run pytest
#   bash cmake/run.sh sanitize   tests and examples under AddressSanitizer + UBSan, built with
#                                clang++ (-O1): the project's clang build
#   bash cmake/run.sh strict [PRESET...]
#                                compile-only builds with -Werror (default: strict-x86-64-v3 and
#                                strict-x86-64-v4 with g++)
#   bash cmake/run.sh fuzz [S]   the SIMD-vs-reference fuzz driver of the test build for S seconds
#                                (default 150, seed from the commit); failing inputs go to
#                                build/dev/fuzz-failures/
#   bash cmake/run.sh bench      build the benchmarks, print the README's SIMD table
#   bash cmake/run.sh bench-peers [ARGS]
#                                the benchmarks beside PyTorch on the same shapes, same run
#                                (bench/peers.py; installs torch into build/venv from PyPI, or
#                                prints our side alone without network); ARGS go to peers.py
#   bash cmake/run.sh deps       only install the dependencies
# Warnings are shown, never errors, unless SEMFOCUS_WERROR=ON is in the environment (CI sets it):
# a new compiler's or CPU's false positive in a third-party header must not break these commands.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake ninja-build g++ libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev)
case "${1:-}" in
  demo) packages+=(gnuplot-nox) ;;
  sanitize) packages+=(clang) ;;
  test | deps) packages+=(python3 python3-venv python3-dev) ;;
  bench-peers) command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 ||
    packages+=(python3 python3-venv) ;;
esac
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

# build/venv with torch (PyPI; SEMFOCUS_TORCH_SPEC overrides the spec) and the given extra
# packages; returns 1 when they cannot be installed (no network).
torch_venv() {
  local venv=build/venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "semfocus: installing torch into $venv (PyPI; SEMFOCUS_TORCH_SPEC overrides the spec)"
    # shellcheck disable=SC2086  # the spec may hold several pip arguments
    "$venv/bin/pip" install --quiet ${SEMFOCUS_TORCH_SPEC:-torch} || return 1
  fi
  (($# == 0)) || "$venv/bin/pip" install --quiet "$@" || return 1
}

# The PyTorch package (python/): built against build/venv's torch, then its pytest suite.
python_tests() {
  # setuptools >= 70.1 builds wheels without the `wheel` package (a venv of Debian 12 has 65.5).
  if ! torch_venv pytest ninja "setuptools>=70.1"; then
    echo "semfocus: could not install torch, pytest, ninja and setuptools into build/venv" \
      "(no network?): the Python tests did not run" >&2
    return 1
  fi
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" build/venv/bin/pip install --quiet --no-build-isolation ./python
  build/venv/bin/python -m pytest -q python/tests
}

# configure + build (+ test) one preset; extra arguments go to the configure step.
build_preset() {
  local preset="$1"
  shift
  cmake --preset "$preset" "$@"
  cmake --build --preset "$preset"
}

case "${1:-}" in
  demo)
    cmake --preset demo
    cmake --build --preset demo --target quickstart compare  # the two programs it runs
    ./build/demo/examples/quickstart
    # The paper's effect at a small scale (README, "The demo"): about 2 minutes on 2 cores.
    ./build/demo/examples/compare --task even_pairs --policies full,topk:5,banded:5,block:5 \
      --seeds 3 --blocks 2 --d 32 --d-mlp 32 --epochs 60 --train 2000 --test 500 \
      --out build/demo/even_pairs
    echo "demo: figures drawn:"
    for png in build/demo/even_pairs/train_loss.png build/demo/even_pairs/test_acc.png; do
      [ -s "$png" ] || { echo "demo: $png was not drawn" >&2; exit 1; }
      echo "  $(pwd)/$png"
    done
    ;;
  test)
    build_preset dev
    ./build/dev/tests/semfocus_tests --simd-arch
    ctest --preset dev
    python_tests
    ;;
  sanitize)
    build_preset sanitize
    ./build/sanitize/tests/semfocus_tests --simd-arch
    ctest --preset sanitize
    ;;
  strict)
    presets=("${@:2}")
    ((${#presets[@]})) || presets=(strict-x86-64-v3 strict-x86-64-v4)
    for preset in "${presets[@]}"; do
      echo "semfocus: compile-only -Werror build: $preset"
      build_preset "$preset"
    done
    ;;
  fuzz)
    fuzz=build/dev/tests/fuzz/semfocus_simd_fuzz
    if [ ! -x "$fuzz" ]; then
      cmake --preset dev --log-level=WARNING
      cmake --build --preset dev --target semfocus_simd_fuzz
    fi
    # Seeded from the commit: reproducible for a commit, new cases for each (ctest runs seed 1).
    seed=$((0x$(git rev-parse --short=8 HEAD 2>/dev/null || echo 2)))
    "$fuzz" --seconds "${2:-150}" --seed "$seed" --save-dir build/dev/fuzz-failures
    ;;
  bench)
    cmake --workflow --preset bench
    bash bench/report.sh build/bench
    ;;
  bench-peers)
    cmake --workflow --preset bench
    peer_args=()
    torch_venv || { echo "semfocus: could not install torch (no network?): our side alone"; peer_args=(--no-torch); }
    build/venv/bin/python bench/peers.py --build build/bench "${peer_args[@]}" "${@:2}"
    ;;
  deps) ;;
  *)
    echo "usage: bash cmake/run.sh demo|test|sanitize|strict|fuzz [seconds]|bench|bench-peers|deps" >&2
    exit 2
    ;;
esac
