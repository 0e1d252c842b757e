# SPDX-License-Identifier: MIT
"""semfocus's SIMD backend beside PyTorch on the same shapes, measured in the same run.

Cases (float32, batch 1, 2 heads, n_q = n_k = n, d = d_v, q, k, v, dO unit normal):
  dense and causal attention, forward and backward, 1 and 2 threads, d = 128 (and d = 64
  forward): ours is `semfocus_bench_simd` (exec::simd), PyTorch's is its fused CPU
  torch.nn.functional.scaled_dot_product_attention;
  top_k(64) forward and backward, 1 thread: PyTorch's is what a user writes without a kernel,
  s = q k^T scale, torch.topk, scatter of the k values into a -inf matrix, softmax, p v.
Backward times the backward alone: ours from a record made before the timed loop, PyTorch's
torch.autograd.grad on a graph kept with retain_graph=True (its forward is not timed).

The two sides are interleaved: every round runs each case once on our side (one benchmark
process, median of its own repetitions) and then on PyTorch's (median of `--reps` calls after a
warm-up call), so that a slow phase of the machine hits both; the table shows the medians over
the rounds. "speed-up" is PyTorch's time over ours (> 1: we are faster). "% of peak" divides
the dense FLOP count (forward 4 n^2 d, backward 10 n^2 d per head; causal and top-k are charged
the same count, so their figure is not the arithmetic done) by the time and by the FMA peak that
`semfocus_fma_peak` measures on this machine for that thread count. Each round also runs
bench_simd's gemm/ cases, the GEMM calls of the dense kernels alone with operands in cache: the
ceiling that the softmax passes and operand streaming take the full kernels below.

Usage: python bench/peers.py [--build build/bench] [--n 4096] [--rounds 3] [--reps 3]
                             [--quick] [--no-torch] [--markdown FILE]
Without torch (not installed, or no network to install it) it prints our side alone.
Run through `bash cmake/run.sh bench-peers`, which builds the benchmarks and installs torch into
build/venv first.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fma_peak(build):
    """{threads: float GFLOP/s} from semfocus_fma_peak --csv."""
    exe = os.path.join(build, "bench", "semfocus_fma_peak")
    out = subprocess.run([exe, "--csv", "--threads", "2"], check=True, capture_output=True,
                         text=True).stdout
    peak = {}
    for line in out.splitlines()[1:]:
        kind, threads, gflops = line.split(",")
        if kind == "float":
            peak[int(threads)] = float(gflops)
    arch = subprocess.run([exe, "--threads", "1", "--seconds", "0.01"], check=True,
                          capture_output=True, text=True).stdout.splitlines()[0]
    return peak, arch


class Case:
    def __init__(self, direction, policy, d, threads, n):
        self.direction, self.policy, self.d, self.threads, self.n = direction, policy, d, threads, n

    @property
    def label(self):
        return f"{self.policy} {self.direction}, d={self.d}, {self.threads} thread" + (
            "s" if self.threads > 1 else "")

    @property
    def bench_name(self):
        return (f"{self.direction}/{self.policy}/simd/n:{self.n}/d:{self.d}/t:{self.threads}/"
                "real_time")

    def dense_gflop(self):
        per_head = self.n * self.n * self.d
        return (4 if self.direction == "fwd" else 10) * per_head * 2 * 1e-9


def gemm_ceiling(build):
    """{(direction, d): GFLOP/s} of bench_simd's gemm/ cases: the dense kernels' GEMM calls alone,
    operands in cache, no softmax (one process, median of 3 repetitions)."""
    exe = os.path.join(build, "bench", "semfocus_bench_simd")
    out = subprocess.run(
        [exe, "--benchmark_filter=^gemm/", "--benchmark_repetitions=3",
         "--benchmark_min_time=0.05", "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    rates = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "iteration":
            _, direction, d = b["run_name"].split("/")[:3]
            rates.setdefault((direction, int(d.split(":")[1])), []).append(b["dense_GFLOPs"])
    return {key: statistics.median(v) for key, v in rates.items()}


def ours_ms(build, case, reps):
    """Median wall time (ms) of one benchmark process running this case `reps` times."""
    exe = os.path.join(build, "bench", "semfocus_bench_simd")
    name = case.bench_name.replace("/real_time", "/")
    out = subprocess.run(
        [exe, f"--benchmark_filter=^{name}", f"--benchmark_repetitions={reps}",
         "--benchmark_min_time=0.01", "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    times = [b["real_time"] for b in json.loads(out)["benchmarks"]
             if b.get("run_type") == "iteration"]
    if not times:
        raise RuntimeError(f"semfocus_bench_simd ran no benchmark for {name}")
    return statistics.median(times)  # time_unit is ms (bench_simd.cpp)


class TorchSide:
    def __init__(self, torch, n):
        self.torch, self.n, self.inputs = torch, n, {}

    def _inputs(self, d):
        if d not in self.inputs:
            g = self.torch.Generator().manual_seed(1)
            shape = (1, 2, self.n, d)
            self.inputs[d] = [self.torch.randn(shape, generator=g) for _ in range(4)]
        return self.inputs[d]

    def _forward(self, case, q, k, v):
        torch = self.torch
        F = torch.nn.functional
        if case.policy in ("dense", "causal"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=case.policy == "causal")
        top = int(case.policy.split(":")[1])
        s = (q @ k.transpose(-1, -2)) * (1.0 / case.d ** 0.5)
        vals, idx = s.topk(top, dim=-1)
        masked = torch.full_like(s, float("-inf")).scatter(-1, idx, vals)
        return torch.softmax(masked, dim=-1) @ v

    def ms(self, case, reps):
        torch = self.torch
        torch.set_num_threads(case.threads)
        q, k, v, d_out = self._inputs(case.d)
        times = []
        if case.direction == "fwd":
            with torch.no_grad():
                self._forward(case, q, k, v)  # warm-up
                for _ in range(reps):
                    t0 = time.perf_counter()
                    self._forward(case, q, k, v)
                    times.append(time.perf_counter() - t0)
        else:
            leaves = [x.detach().requires_grad_(True) for x in (q, k, v)]
            out = self._forward(case, *leaves)
            torch.autograd.grad(out, leaves, d_out, retain_graph=True)  # warm-up
            for _ in range(reps):
                t0 = time.perf_counter()
                torch.autograd.grad(out, leaves, d_out, retain_graph=True)
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                     "bench"))
    ap.add_argument("--n", type=int, default=4096, choices=(256, 1024, 4096))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="dense and top-k, 1 thread, d = 128 only")
    ap.add_argument("--no-torch", action="store_true", help="our side only")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()
    if args.rounds < 1 or args.reps < 1:
        ap.error("--rounds and --reps must be >= 1")

    torch = None
    why_alone = "--no-torch given"
    if not args.no_torch:
        try:
            import torch  # noqa: F811
        except ImportError as e:
            why_alone = f"PyTorch is not importable ({e}); install it, or run bash cmake/run.sh " \
                        "bench-peers, which does (it needs network access to PyPI)"
    peer = TorchSide(torch, args.n) if torch else None

    n = args.n
    cases = []
    for direction in ("fwd", "bwd"):
        for policy in ("dense", "causal"):
            for threads in (1, 2):
                cases.append(Case(direction, policy, 128, threads, n))
    cases.insert(2, Case("fwd", "dense", 64, 1, n))
    cases += [Case("fwd", "top_k:64", 128, 1, n), Case("bwd", "top_k:64", 128, 1, n)]
    if args.quick:
        cases = [c for c in cases if c.threads == 1 and c.d == 128 and c.policy != "causal"]

    peak, arch = fma_peak(args.build)
    ceiling = []
    ours = {c.label: [] for c in cases}
    theirs = {c.label: [] for c in cases}
    for r in range(args.rounds):
        print(f"peers.py: round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
        ceiling.append(gemm_ceiling(args.build))
        for c in cases:
            ours[c.label].append(ours_ms(args.build, c, args.reps))
            if peer:
                theirs[c.label].append(peer.ms(c, args.reps))

    lines = [f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; {arch}",
             "FMA peak (semfocus_fma_peak, float): " +
             ", ".join(f"{peak[t]:.1f} GFLOP/s on {t} thread" + ("s" if t > 1 else "")
                       for t in sorted(peak)),
             f"PyTorch: {torch.__version__}" if torch else f"PyTorch: none ({why_alone})",
             f"n = {n}, float32, batch 1, 2 heads; medians of {args.rounds} interleaved rounds",
             ""]
    gemm = {key: statistics.median(r[key] for r in ceiling) for key in ceiling[0]}
    lines.insert(2, "GEMM ceiling (bench_simd gemm/: the dense kernels' GEMM calls alone, operands "
                 "in cache, no softmax; 1 thread): " + ", ".join(
                     f"{key[0]} d={key[1]} {g:.1f} GFLOP/s ({100 * g / peak[1]:.0f}% of peak)"
                     for key, g in sorted(gemm.items())))
    if peer:
        lines += ["| case | semfocus (ms) | PyTorch (ms) | speed-up | semfocus % of peak | "
                  "PyTorch % of peak |", "|---|--:|--:|--:|--:|--:|"]
    else:
        lines += ["| case | semfocus (ms) | semfocus % of peak |", "|---|--:|--:|"]
    for c in cases:
        t = statistics.median(ours[c.label])
        pct = 100 * c.dense_gflop() / (t * 1e-3) / peak.get(c.threads, peak[max(peak)])
        pct_s = f"{pct:.0f}%" if c.policy in ("dense",) else f"({pct:.0f}%)"
        if peer:
            p = statistics.median(theirs[c.label])
            pct_p = pct * t / p
            pct_p_s = f"{pct_p:.0f}%" if c.policy in ("dense",) else f"({pct_p:.0f}%)"
            lines.append(f"| {c.label} | {t:.1f} | {p:.1f} | {p / t:.2f}x | {pct_s} | {pct_p_s} |")
        else:
            lines.append(f"| {c.label} | {t:.1f} | {pct_s} |")
    lines.append("")
    lines.append("% of peak in parentheses: causal and top-k charged the dense FLOP count.")
    if args.rounds > 1:
        spread = max(max(x) / min(x) for x in ours.values())
        lines.append(f"Round-to-round spread (slowest / fastest round of one case, ours): up to "
                     f"{spread:.2f}x on this machine in this run.")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
