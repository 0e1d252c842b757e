#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The paper's experiments at the paper's settings (PAPER.md, "Experiments"), one command per figure
# family. Each builds the examples (demo preset) when needed and runs examples/compare, which
# writes summary.md, the per-epoch band CSVs, the two figures and every run's CSV.
#
#   bash cmake/experiments.sh four TASK         full, topk:5, banded:5, block:5 x 10 seeds on TASK
#   bash cmake/experiments.sh synthetic TASK    15 variants x 10 seeds on parity, even_pairs,
#                                               missing_duplicates, stack_manipulation,
#                                               modular_arithmetic, solve_equation or
#                                               cycle_navigation
#   bash cmake/experiments.sh listops           ListOps: 10 blocks, lr 1.0, decay 0.99, 200 epochs
#   bash cmake/experiments.sh ablations TASK    full/top-k/banded/block-local (k = 5) under depth
#                                               1, 3, 10; heads 2, 4; lr 0.05, 0.5; decay 1, 0.99;
#                                               Adam (lr 1e-3)
#   bash cmake/experiments.sh activations TASK  the same four policies with GELU and with Mish
#   bash cmake/experiments.sh list [FAMILY [TASK]]  print the commands and the expected time only
#
# Every command runs the authors' protocol (dropout 0.01, sequences padded to a multiple of the
# mask size) and is resumable: each run writes a checkpoint every 10 epochs and compare --reuse
# keeps finished runs and resumes interrupted ones with the same bits, so running the same command
# again continues where it was stopped (also with a larger EPOCHS).
# Environment: SEEDS (default 10), EPOCHS (default: the paper's for the task), JOBS (parallel
# train processes, default all cores), OUT (default results/paper), SAVE=1 to keep every run's
# parameters (train --save) for examples/theory, STOP_AFTER=N to stop each run N epochs after it
# converges (train --stop-after; default: never).
# Output: $OUT/<family>/<task>[/<setting>]/ as compare writes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

family=${1:-}
shift || true
listing=0
if [ "$family" = list ]; then
  listing=1
  family=${1:-all}
  shift || true
fi
task=${1:-}

seeds=${SEEDS:-10}
jobs=${JOBS:-$(nproc)}
out=${OUT:-results/paper}
all15="full,topk:5,topk:9,banded:5,banded:9,block:5,block:9"
all15+=",banded:5+g1,banded:5+g3,banded:9+g1,banded:9+g3"
all15+=",block:5+g1,block:5+g3,block:9+g1,block:9+g3"
four="full,topk:5,banded:5,block:5"
paper="--blocks 5 --d 64 --d-mlp 64 --heads 1 --lr 0.1 --decay 0.9995 --clip 0.5 --batch 25"
paper+=" --train 5000 --test 2000 --dropout 0.01 --pad-to-mask --checkpoint-every 10 --reuse"
[ -n "${STOP_AFTER:-}" ] && paper+=" --stop-after $STOP_AFTER"

# The paper's epochs per task (PAPER.md gives 200-750 for the four Deletang tasks without saying
# which; we use 500 for each of them).
paper_epochs() {
  case "$1" in
    parity) echo 1000 ;;
    even_pairs) echo 100 ;;
    missing_duplicates) echo 250 ;;
    stack_manipulation | modular_arithmetic | solve_equation | cycle_navigation) echo 500 ;;
    listops) echo 200 ;;
    *)
      echo "experiments: unknown task '$1'" >&2
      exit 2
      ;;
  esac
}

# Seconds per epoch of one run on one core of the development machine (2-core Zen 3, SIMD
# backend; 200 steps of batch 25 plus the evaluation of 7000 sequences), measured with the
# trainer: length-40 tasks at 5 blocks, d 64 ~ 7 s; ListOps (length 500-600, 10 blocks) ~ 450 s.
# Deeper or wider settings (the depth and heads ablations) take proportionally longer.
seconds_per_epoch() {
  case "$1" in
    listops) echo 450 ;;
    *) echo 7 ;;
  esac
}

commands=()
add() { # add TASK POLICIES DIR EXTRA-ARGS...
  local t=$1 policies=$2 dir=$3
  shift 3
  local epochs=${EPOCHS:-$(paper_epochs "$t")}
  local save=""
  [ "${SAVE:-0}" = 1 ] && save="--save"
  commands+=("./build/demo/examples/compare --task $t --policies $policies --seeds $seeds \
--jobs $jobs --epochs $epochs $paper $* $save --out $out/$dir")
  local runs=$(($(tr ',' '\n' <<<"$policies" | wc -l) * $(seq_count)))
  total=$((total + runs * epochs * $(seconds_per_epoch "$t")))
}
seq_count() {
  case "$seeds" in
    *,*) tr ',' '\n' <<<"$seeds" | wc -l ;;
    *-*) echo $((${seeds#*-} - ${seeds%-*} + 1)) ;;
    *) echo "$seeds" ;;
  esac
}
need_task() {
  if [ -z "$task" ]; then
    echo "experiments: $family needs a TASK (parity, even_pairs, missing_duplicates, ...)" >&2
    exit 2
  fi
  paper_epochs "$task" >/dev/null
}

total=0
plan() {
  case "$1" in
    four)
      need_task
      add "$task" "$four" "four/$task"
      ;;
    synthetic)
      need_task
      add "$task" "$all15" "synthetic/$task"
      ;;
    listops)
      task=listops
      add listops "$all15" listops --blocks 10 --lr 1.0 --decay 0.99
      ;;
    ablations)
      need_task
      for b in 1 3 10; do add "$task" "$four" "ablations/$task/blocks$b" --blocks "$b"; done
      for h in 2 4; do add "$task" "$four" "ablations/$task/heads$h" --heads "$h"; done
      for lr in 0.05 0.5; do add "$task" "$four" "ablations/$task/lr$lr" --lr "$lr"; done
      for dc in 1 0.99; do add "$task" "$four" "ablations/$task/decay$dc" --decay "$dc"; done
      add "$task" "$four" "ablations/$task/adam" --optimizer adam --lr 0.001
      ;;
    activations)
      need_task
      for a in gelu mish; do add "$task" "$four" "activations/$task/$a" --activation "$a"; done
      ;;
    *)
      echo "usage: bash cmake/experiments.sh four TASK | synthetic TASK | listops |" \
        "ablations TASK |" \
        "activations TASK | list [FAMILY [TASK]]" >&2
      exit 2
      ;;
  esac
}

if [ "$family" = all ]; then
  for f in four synthetic ablations activations; do
    for t in parity even_pairs missing_duplicates; do
      task=$t
      commands=()
      total=0
      plan "$f"
      printf '%-12s %-20s %3d command(s), about %.0f h with %d jobs\n' "$f" "$t" \
        "${#commands[@]}" "$(awk "BEGIN { print $total / $jobs / 3600 }")" "$jobs"
    done
  done
  commands=()
  total=0
  plan listops
  printf '%-12s %-20s %3d command(s), about %.0f h with %d jobs\n' listops listops \
    "${#commands[@]}" "$(awk "BEGIN { print $total / $jobs / 3600 }")" "$jobs"
  exit 0
fi

plan "$family"
hours=$(awk "BEGIN { printf \"%.1f\", $total / $jobs / 3600 }")
echo "experiments: ${#commands[@]} compare command(s), about $hours h on this machine with $jobs jobs"
for c in "${commands[@]}"; do echo "  $c"; done
[ "$listing" = 1 ] && exit 0

bash cmake/run.sh deps
cmake --workflow --preset demo
for c in "${commands[@]}"; do
  echo "+ $c"
  $c
done
