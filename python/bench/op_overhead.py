# SPDX-License-Identifier: MIT
"""The operator's overhead over the C++ backend it calls, measured in one run: semfocus_torch's
forward and backward (through torch.ops, autograd and the record's tensors) against
`semfocus_bench_simd` running the same shapes directly (float32, batch 1, 2 heads,
n_q = n_k = n, d = d_v, 1 thread), interleaved over rounds, medians. The timing of both sides is
bench/peers.py's (the operator takes the place of PyTorch's SDPA there).

Usage: python python/bench/op_overhead.py [--build build/bench] [--n 1024] [--d 64] [--rounds 7]
Needs the bench preset built (bash cmake/run.sh bench) and semfocus_torch installed.
"""
import argparse
import pathlib
import statistics
import sys

import torch

import semfocus_torch as st

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import peers  # noqa: E402


class OperatorSide(peers.TorchSide):
    """peers.py's PyTorch side, with semfocus_torch.attention as the forward."""

    def _forward(self, case, q, k, v):
        policy = st.dense() if case.policy == "dense" else st.top_k(int(case.policy.split(":")[1]))
        return st.attention(q, k, v, policy)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/bench")
    ap.add_argument("--n", type=int, default=1024, choices=(256, 1024, 4096))
    ap.add_argument("--d", type=int, default=64, choices=(64, 128))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    op = OperatorSide(torch, args.n)
    cases = [peers.Case(direction, policy, args.d, 1, args.n)
             for policy in ("dense", "top_k:64") for direction in ("fwd", "bwd")]
    cpp = {c.label: [] for c in cases}
    ours = {c.label: [] for c in cases}
    for _ in range(args.rounds):
        for c in cases:
            cpp[c.label].append(peers.ours_ms(args.build, c, args.reps))
            ours[c.label].append(op.ms(c, args.reps))
    print(f"torch {op.torch.__version__}; n = {args.n}, d = {args.d}, float32, batch 1, 2 heads, "
          f"1 thread; medians of {args.rounds} interleaved rounds\n")
    print("| case | C++ (ms) | semfocus_torch (ms) | overhead |")
    print("|---|--:|--:|--:|")
    total_c = total_o = 0.0
    for c in cases:
        a, b = statistics.median(cpp[c.label]), statistics.median(ours[c.label])
        total_c, total_o = total_c + a, total_o + b
        print(f"| {c.label} | {a:.2f} | {b:.2f} | {100 * (b / a - 1):+.1f}% |")
    print(f"| all four | {total_c:.2f} | {total_o:.2f} | {100 * (total_o / total_c - 1):+.1f}% |")


if __name__ == "__main__":
    main()
