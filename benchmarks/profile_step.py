"""Where a training step's CPU time goes: cProfile over a few of byol-ref's steps (the benchmark's step).

On a GPU, a step at a small batch is bound by the CPU that issues it: every CuPy call costs its Python
and driver time (on the H200 of 2026-12-04, 9 us for a fused element-wise kernel, 13 us for a ufunc,
16 us for a reduction; more for a matmul over broadcast batches or a CUB reduction), and byol-ref's
own checks and dispatch add theirs. The table below names the calls, with their count per step and
their own time, so that the next fusion or the next call to avoid is chosen from a measurement.
``make gpu-check`` runs it on CuPy; on NumPy it shows the Python overhead alone.

Usage:
    python benchmarks/profile_step.py --backend cupy --config wide --batch 256
    python benchmarks/profile_step.py --config smoke --steps 5 --top 15
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench_step  # noqa: E402  (its configs and its step: the step profiled is the step timed)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--config", default="wide", choices=sorted(bench_step.CONFIGS),
                    help="a config of benchmarks/bench_step.py")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    ap.add_argument("--steps", type=int, default=20, help="profiled steps (after 3 unprofiled ones)")
    ap.add_argument("--top", type=int, default=30, help="rows of each table")
    ap.add_argument("--out", type=os.path.expanduser, default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.top < 1 or (args.batch is not None and args.batch < 2):
        ap.error(f"--steps and --top must be >= 1 and --batch >= 2, got {args.steps}, {args.top}, {args.batch}")
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        ap.error(f"--out {args.out}: its folder does not exist")
    return args


def profile(args) -> str:
    """Run the step ``args.steps`` times under cProfile; return the report."""
    import numpy as np

    from byol_ref.backend import get_backend

    dims = bench_step.CONFIGS[args.config]
    dims = (args.batch or dims[0], *dims[1:])
    be = get_backend(args.backend, args.dtype, seed=0)
    step = bench_step.RefStep(dims, be)
    rng = np.random.default_rng(0)
    v1, v2 = (be.asarray(v) for v in rng.standard_normal((2, dims[0], dims[1])))
    for _ in range(3):  # (kernels compiled, memory pool filled)
        step(v1, v2)
    be.synchronize()

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(args.steps):
        step(v1, v2)
    prof.disable()
    issued = time.perf_counter() - t0
    be.synchronize()
    total = time.perf_counter() - t0

    out = io.StringIO()
    out.write(f"config {args.config} {dims}, backend {args.backend}, {args.dtype}, {args.steps} steps under "
              f"cProfile: {1e3 * issued / args.steps:.2f} ms a step issued, {1e3 * total / args.steps:.2f} ms "
              f"with the device's queue drained (cProfile's own cost included)\n")
    stats = pstats.Stats(prof, stream=out)
    for key in ("tottime", "cumulative"):
        out.write(f"\n--- by {key} (ncalls over {args.steps} steps) ---\n")
        stats.sort_stats(key).print_stats(args.top)
    return out.getvalue()


def main(argv=None) -> int:
    args = parse_args(argv)
    report = profile(args)
    print(report)
    if args.out is not None:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
