#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The paper's Parity configuration (5 blocks, d = d_mlp = 64, 1 head, batch 25, length 40, 5000
# training and 2000 held-out sequences, SGD lr 0.1), trained by the authors' PyTorch code on one
# thread (github.com/rithram/spartan, ch.py: run from a checkout, never copied here) and by
# examples/train, full and top-k 5, in one run on one machine, both with dropout 0.01 (ch.py's
# default; train --dropout), train on 1 and on 2 threads (the same bits), and on 2 threads with
# --groups 2 (data-parallel steps: other bits, the same on 1 and 2 threads). Prints training
# steps/s and seconds per epoch (200 steps plus evaluating the 7000 sequences) of each.
#   bash bench/authors_trainer.sh SPARTAN_CHECKOUT [EPOCHS]
# Needs build/dev/examples/train (bash cmake/run.sh test) and build/venv with torch (the same
# command), plus numpy and pandas there (installed if missing). The authors' datasets.py imports
# torchtext, which torch 2.15 cannot load: a stand-in module (torchtext.vocab, used only by
# ListOps and PTB) is put on PYTHONPATH. Their seconds per epoch: the wall time of an
# EPOCHS-epoch run minus that of a 2-epoch run (ch.py's least), over EPOCHS - 2 (start-up and
# data generation cancel); their steps/s: the median of the ms/batch they print every 25 batches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
spartan=$(realpath "${1:?usage: bash bench/authors_trainer.sh SPARTAN_CHECKOUT [EPOCHS]}")
epochs=${2:-5}
((epochs >= 3)) || { echo "EPOCHS must be >= 3" >&2; exit 2; }
py=build/venv/bin/python
train=build/dev/examples/train
[ -x "$train" ] && [ -x "$py" ] || { echo "run bash cmake/run.sh test first" >&2; exit 2; }
[ -f "$spartan/ch.py" ] || { echo "$spartan/ch.py not found" >&2; exit 2; }
"$py" -c "import numpy, pandas" 2>/dev/null || build/venv/bin/pip install --quiet numpy pandas
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/shim/torchtext"
: >"$work/shim/torchtext/__init__.py"
cat >"$work/shim/torchtext/vocab.py" <<'PY'
def build_vocab_from_iterator(*args, **kwargs):
    raise NotImplementedError("torchtext stand-in (bench/authors_trainer.sh)")
class Vocab:
    pass
PY
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# authors MASK_ARGS EPOCHS -> "wall_seconds median_ms_per_batch"
authors() {
  local log="$work/authors.log" start end
  start=$(date +%s.%N)
  (cd "$spartan" && PYTHONPATH="$work/shim" "$OLDPWD/$py" ch.py --ntrain 5000 --nval 2000 \
    --min_len 40 --max_len 40 --len_step 0 --data parity -e 64 -m 64 -B 5 -H 1 $1 -E "$2" \
    --seed 1111 --bsz 25 -l 0.1 --mlpa relu) >"$log" 2>&1 ||
    { tail -20 "$log" >&2; exit 1; }
  end=$(date +%s.%N)
  "$py" - "$log" "$start" "$end" <<'PY'
import re, statistics, sys
ms = [float(m) for m in re.findall(r"ms/batch\s+([0-9.]+)", open(sys.argv[1]).read())]
print(float(sys.argv[3]) - float(sys.argv[2]), statistics.median(ms))
PY
}

echo "| trainer | policy | steps/s | s/epoch |"
echo "|---|---|--:|--:|"
for policy in full topk:5; do
  mask="-M none"
  [ "$policy" = full ] || mask="-M topk --mask_size 5"
  two=$(authors "$mask" 2) || exit 1
  many=$(authors "$mask" "$epochs") || exit 1
  read -r t2 _ <<<"$two"
  read -r tn ms <<<"$many"
  "$py" -c "print(f'| authors ch.py | $policy | {1000 / $ms:.1f} | {($tn - $t2) / ($epochs - 2):.2f} |')"
  for run in "1 1" "2 1" "2 2"; do
    read -r threads groups <<<"$run"
    line=$("$train" --task parity --policy "$policy" --epochs "$epochs" --threads "$threads" \
      --groups "$groups" --quiet --dropout 0.01 --out "$work/ours$threads$groups" | tail -1)
    steps=$(sed -E 's/.* ([0-9.]+) steps\/s.*/\1/' <<<"$line")
    secs=$(sed -E 's/.* ([0-9.]+) s\/epoch.*/\1/' <<<"$line")
    echo "| semfocus train, $threads thread(s), --groups $groups | $policy | $steps | $secs |"
  done
done
echo
echo "(ch.py on 1 thread; $epochs epochs each; $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores)"
