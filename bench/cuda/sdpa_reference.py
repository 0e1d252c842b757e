#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch reference for bench/cuda/bench_cuda.cu: times torch.nn.functional.scaled_dot_product_attention
(SDPA) on the shapes semfocus_bench_cuda uses and prints the Markdown columns of
bench/cuda/report_cuda.sh, so the two tables can be put side by side.

Runs only on a machine with a CUDA GPU and PyTorch (>= 2.0); the library itself never needs Python.

Shapes: q, k, v, dO of shape [1, H, n, d] with H = 262144 / n (batch * heads * n = 16 * 16384
tokens for every n), n in {1024, ..., 16384}, d in {64, 128}, float32 and bfloat16, unit-normal
values, the default scale 1/sqrt(d).

Policies:
  dense       SDPA without a mask.
  causal      is_causal=True.
  banded:256  an explicit boolean attn_mask [n, n] (True = keep) with semfocus::banded's window:
              row i keeps [start(i), start(i) + k), start(i) = clamp(i - (k-1)//2, 0, n - k).
              A mask disables the flash kernel, so SDPA runs its memory-efficient or math kernel.
  top_k / threshold: no SDPA counterpart (the kept set depends on the scores); not timed.

Timing: torch.cuda.Event around each call on the current stream; median of --iters after
--warmup calls. "forward" times the SDPA call with autograd on (the training forward, which keeps
the log-sum-exp as semfocus's record does); "backward" times out.backward(dO) alone, after an
untimed forward each iteration (the backward that bench_cuda times, from a saved forward).
FLOP convention as bench_cuda.cu: forward 4 n^2 d per head, backward 2.5 x forward = 10 n^2 d
(dense-equivalent "TFLOP/s" whatever the mask); "kept" columns multiply by the kept fraction
(causal (n+1)/(2n), banded k/n, dense 1). SDPA picks its own kernel (flash, memory-efficient,
cuDNN or math) per dtype and mask; PyTorch's choice is not printed.

Usage: python3 bench/cuda/sdpa_reference.py [--seqs 1024 2048] [--dims 64] [--dtypes bf16]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F

TOKENS = 16 * 16384  # batch * heads * n, as kTokens in bench_cuda.cu
BAND_K = 256  # as kBandK
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def banded_mask(n, k, device):
    """Boolean [n, n] mask of semfocus::banded(k) for n_q = n_k = n (True = keep)."""
    i = torch.arange(n, device=device)
    start = (i - (k - 1) // 2).clamp(0, n - k)
    j = torch.arange(n, device=device)
    return (j[None, :] >= start[:, None]) & (j[None, :] < start[:, None] + k)


def median_ms(fn, warmup, iters, before=None):
    """Median milliseconds of fn() between two CUDA events; before() runs untimed each time."""
    times = []
    for it in range(warmup + iters):
        if before is not None:
            before()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        if it >= warmup:
            times.append(start.elapsed_time(stop))
    return statistics.median(times)


def run(policy, dtype, n, d, warmup, iters):
    """(forward TFLOP/s, backward TFLOP/s, kept fraction) of SDPA for one shape."""
    heads = TOKENS // n
    gen = torch.Generator(device="cuda").manual_seed(1)
    shape = (1, heads, n, d)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, generator=gen).requires_grad_()
               for _ in range(3))
    d_out = torch.randn(shape, device="cuda", dtype=dtype, generator=gen)
    kwargs, kept = {}, 1.0
    if policy == "causal":
        kwargs, kept = {"is_causal": True}, (n + 1) / (2 * n)
    elif policy.startswith("banded"):
        kwargs, kept = {"attn_mask": banded_mask(n, BAND_K, "cuda")}, BAND_K / n

    def forward():
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    fwd_ms = median_ms(forward, warmup, iters)  # with autograd on: saves what backward needs
    state = {}

    def make_graph():
        q.grad = k.grad = v.grad = None
        state["out"] = forward()

    bwd_ms = median_ms(lambda: state["out"].backward(d_out), warmup, iters, before=make_graph)
    flops = 4.0 * heads * n * n * d
    return flops / (fwd_ms * 1e9), 2.5 * flops / (bwd_ms * 1e9), kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--policies", nargs="+", default=["dense", "causal", f"banded:{BAND_K}"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    print(f"<!-- {torch.cuda.get_device_name()}, torch {torch.__version__}; "
          "top_k and threshold have no SDPA counterpart -->")
    print("| policy | kernels | dtype | d | seq | B*H | forward TFLOP/s | backward TFLOP/s "
          "| forward kept TFLOP/s | backward kept TFLOP/s |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for dt in args.dtypes:
        for policy in args.policies:
            for n in args.seqs:
                for d in args.dims:
                    try:
                        f, b, kept = run(policy, DTYPES[dt], n, d, args.warmup, args.iters)
                        cells = [f"{f:.1f}", f"{b:.1f}", f"{f * kept:.1f}", f"{b * kept:.1f}"]
                    except RuntimeError as e:  # torch.cuda.OutOfMemoryError included
                        cells = ["error"] * 4
                        print(f"<!-- {policy} {dt} n={n} d={d}: {str(e).splitlines()[0]} -->")
                    torch.cuda.empty_cache()
                    print(f"| {policy} | sdpa | {dt} | {d} | {n} | {TOKENS // n} | "
                          + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
