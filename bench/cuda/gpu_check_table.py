#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The table of bench/cuda/gpu_check.sh: semfocus's timings (the CSV of semfocus_gpu_check) beside
PyTorch SDPA on the same shapes (bf16, batch * heads * n = 262144, timed by sdpa_reference.run),
and the issue's targets as ratios measured in this run:
  dense forward and backward at least as fast as SDPA (FlashAttention-2 class);
  top_k(64) forward no slower than 1.3 x semfocus's dense forward;
  banded(256) at n = 16384 at least 10 x faster than semfocus's dense.
Without torch (or without CUDA in torch) the SDPA columns read n/a.

Usage: python3 bench/cuda/gpu_check_table.py SEMFOCUS_CSV
"""
import csv
import sys


def sdpa_times(shapes):
    """{(policy, n, d): (fwd_ms, bwd_ms)} for dense and banded:256, or {} without torch+CUDA."""
    try:
        import torch
        import sdpa_reference as ref
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    out = {}
    for policy, n, d in shapes:
        try:
            f, b, _ = ref.run(policy, torch.bfloat16, n, d, 2, 5)
            flops = 4.0 * (ref.TOKENS // n) * n * n * d
            out[(policy, n, d)] = (flops / (f * 1e9), 2.5 * flops / (b * 1e9))
        except RuntimeError as e:
            print(f"<!-- sdpa {policy} n={n} d={d}: {str(e).splitlines()[0]} -->")
        torch.cuda.empty_cache()
    return out


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    ms = {(r["policy"], r["dir"], int(r["n"]), int(r["d"])): float(r["ms"]) for r in rows}
    shapes = sorted({(p, n, d) for (p, _, n, d) in ms if p in ("dense", "banded:256")})
    sdpa = sdpa_times(shapes)
    print("| policy | dir | d | n | B*H | semfocus ms | semfocus TFLOP/s | SDPA TFLOP/s "
          "| semfocus / SDPA speed |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        key = (r["policy"], int(r["n"]), int(r["d"]))
        s = sdpa.get(key)
        theirs = s[0 if r["dir"] == "fwd" else 1] if s else None
        ratio = f"{float(r['tflops']) / theirs:.2f}" if theirs else "n/a"
        print(f"| {r['policy']} | {r['dir']} | {r['d']} | {r['n']} | {r['bh']} | {float(r['ms']):.3f} "
              f"| {float(r['tflops']):.1f} | {f'{theirs:.1f}' if theirs else 'n/a'} | {ratio} |")
    print()
    print("Targets (ratios of this run):")
    for d in sorted({k[3] for k in ms}):
        for n in sorted({k[2] for k in ms}):
            dense_f = ms.get(("dense", "fwd", n, d))
            top_f = ms.get(("top_k:64", "fwd", n, d))
            if dense_f and top_f:
                verdict = "met" if top_f <= 1.3 * dense_f else "MISSED"
                print(f"- d={d} n={n}: top_k(64) forward / dense forward = {top_f / dense_f:.2f} "
                      f"(target <= 1.3: {verdict})")
            for dr in ("fwd", "bwd"):
                band = ms.get(("banded:256", dr, n, d))
                dense = ms.get(("dense", dr, n, d))
                if n == 16384 and band and dense:
                    verdict = "met" if dense >= 10 * band else "MISSED"
                    print(f"- d={d} n={n} {dr}: dense / banded(256) = {dense / band:.1f} "
                          f"(target >= 10: {verdict})")
                s = sdpa.get(("dense", n, d))
                if s and dense:
                    ours = 1e3 * 4.0 * (262144 // n) * n * n * d * (1 if dr == "fwd" else 2.5) / (
                        dense * 1e12)
                    theirs = s[0 if dr == "fwd" else 1]
                    verdict = "met" if ours >= theirs else "MISSED"
                    print(f"- d={d} n={n} dense {dr}: semfocus / SDPA = {ours / theirs:.2f} "
                          f"(target >= 1: {verdict})")


if __name__ == "__main__":
    main()
