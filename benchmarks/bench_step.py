#!/usr/bin/env python3
"""Time one full BYOL training step of byol-ref, against the step's own matmuls and PyTorch eager.

One step is what ``train.train_step`` does after augmentation, in float32 by default: the online
and target forward on both views (stacked into one GEMM per layer), the symmetrised official loss,
the backward, the official LARS update (``inplace=True``) and the EMA of the target (in place).

For each config the script interleaves, round after round, (A) a byol-ref step, (B) the same step
in PyTorch eager (``torch_step.py``, only when torch is importable), (C) the step's own matmuls
alone, with the same shapes and transposes, on the same BLAS: the *matmul bound*, and (D) the same
matmuls in torch (its own BLAS), which splits the ratio to torch into BLAS and the rest. Drift on a
shared machine then hits all four alike. On the CPU each timed call comes after a pause (``--gap``,
0.3 s): after its last op a BLAS or OpenMP thread pool keeps its idle threads spinning for a while
before they sleep (OpenBLAS's ``OPENBLAS_THREAD_TIMEOUT``, OpenMP's wait policy), and on a 2-core
machine those threads take a core from whichever contender runs next (figures in
docs/benchmarks.md, *Why the pause*). Before timing, one
float64 step of (A) and of (B) from the same start must change the params alike (:func:`same_step`),
or the ratio to PyTorch is withheld: a ratio is only worth printing for the same work. It prints, per
config: the median and the interquartile range of ms/step over ``--steps`` timed rounds after
``--warmup``, the achieved GFLOP/s (the step's matmul FLOPs over the median time), the ratio to the
matmul bound and to PyTorch, the median of (D), and the peak memory (NumPy:
``tracemalloc``, which sees every NumPy allocation, in a separate, untimed step; CuPy: the memory
pool's high-water mark) against what the step needs (params, grads, optimiser state, target
params and the activations cached for the backward, counted from the shapes).

Usage (``make bench`` runs the first line, the CPU table of docs/benchmarks.md; the second is its 1-thread table):
    python benchmarks/bench_step.py --threads 2 --steps 25 --out benchmarks/results/cpu-2t  # float32, all configs
    python benchmarks/bench_step.py --threads 1 --steps 25 --out benchmarks/results/cpu-1t
    python benchmarks/bench_step.py --backend cupy --batch 256,4096 --out benchmarks/results/gpu
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (batch, encoder_dim, hidden_size, projector_hidden_dim, projection_dim, predictor_dim)
CONFIGS = {
    "seed": (256, 287, 256, 256, 256, 64),
    "wide": (512, 784, 1024, 2048, 256, 2048),
    "paper_head": (256, 2048, 2048, 4096, 256, 4096),
    "smoke": (16, 12, 16, 24, 8, 12),  # for the smoke test only
}
LR, TAU = 0.2, 0.99


def _int_at_least(least: int):
    """An argparse type: an int >= ``least`` (its error names the value and the bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants an integer >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"wants an integer >= {least}, got {value}")
        return value
    return parse


def _seconds(text: str) -> float:
    """An argparse type: seconds from 0 to 10."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number of seconds from 0 to 10, got {text!r}") from None
    if not 0.0 <= value <= 10.0:  # (NaN fails this too)
        raise argparse.ArgumentTypeError(f"wants a number of seconds from 0 to 10, got {text}")
    return value


def _config_names(text: str) -> list:
    names = text.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown config(s) {unknown}; choose from {sorted(CONFIGS)}, "
                                         "comma-separated")
    return names


def _batch_sizes(text: str) -> list:
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:  # batch norm takes its statistics over the rows: 2 at least
        raise argparse.ArgumentTypeError(f"wants comma-separated integers >= 2 (batch norm needs 2 rows), got {text!r}")
    return sizes


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=_config_names, default="seed,wide,paper_head",
                    help=f"comma-separated names from {sorted(CONFIGS)}")
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=_int_at_least(1), default=2, help="BLAS / torch threads (CPU)")
    ap.add_argument("--steps", type=_int_at_least(1), default=20, help="timed rounds per config (>= 20 for the table)")
    ap.add_argument("--warmup", type=_int_at_least(0), default=3)
    ap.add_argument("--gap", type=_seconds, default=None,
                    help="seconds of pause before each timed call, so that the thread pools of the call before "
                         "have gone idle (default: 0.3 on the CPU, 0 on CuPy)")
    ap.add_argument("--batch", type=_batch_sizes, default=None,
                    help="comma-separated batch sizes overriding each config's")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    ap.add_argument("--tf32", action="store_true", help="CuPy: let float32 matmuls use TF32 (CUPY_TF32=1)")
    ap.add_argument("--out", type=os.path.expanduser, default=None, help="write <out>.json and <out>.md")
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.backend == "numpy":
    # Thread counts must be fixed before NumPy (OpenBLAS) or torch (OpenMP) load.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
if ARGS is not None and ARGS.tf32:
    os.environ["CUPY_TF32"] = "1"  # read by CuPy when it loads

sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402  (the benchmark is not part of the package)

import byol_ref as byol  # noqa: E402
from byol_ref.backend import get_backend  # noqa: E402
from byol_ref.checks import make_folder  # noqa: E402
from byol_ref.model import ema_update, loss_and_grads, param_shapes  # noqa: E402
from byol_ref.optim import make_optimizer  # noqa: E402


# --------------------------------------------------------------------------- shapes and budgets


def layer_dims(dims):
    """(d_in, d_out) of the online linears in order; the target runs the first four."""
    _, d, h, ph, p, q = dims
    return [(d, h), (h, h), (h, ph), (ph, p), (p, q), (q, p)]


def matmul_list(dims):
    """The step's GEMMs as (m, k, n, kind): kind 'nn' (x @ w), 'tn' (x.T @ dout), 'nt' (dout @ w.T)."""
    n = dims[0]
    m = 2 * n  # both views in one GEMM
    online = layer_dims(dims)
    gemms = [(m, a, b, "nn") for a, b in online]  # online forward
    gemms += [(m, a, b, "nn") for a, b in online[:4]]  # target forward
    for i, (a, b) in enumerate(online):  # backward: dw for every layer, dx for all but the first
        gemms.append((a, m, b, "tn"))
        if i > 0:
            gemms.append((m, b, a, "nt"))
    return gemms


def step_flops(dims):
    return sum(2 * m * k * n for m, k, n, _ in matmul_list(dims))


def needed_bytes(dims, itemsize):
    """Params + grads + LARS momentum + target params + activations cached for the backward."""
    n, d, h, ph, p, q = dims
    cfg = byol.Config(encoder_dim=d, hidden_size=h, projector_hidden_dim=ph, projection_dim=p, predictor_dim=q)
    n_online = sum(int(np.prod(s)) for s in param_shapes(cfg, "online").values())
    n_target = sum(int(np.prod(s)) for s in param_shapes(cfg, "target").values())
    m = 2 * n
    acts = m * d  # the two views (input of the first linear)
    acts += sum(2 * m * f for f in (h, h, ph, q))  # each BN -> ReLU block keeps x_hat and the ReLU output
    acts += 2 * m * p  # online z and p (the last linears' outputs)
    acts += m * p  # target z
    acts += 2 * m * p  # the loss: n(p), n(z)
    state = 3 * n_online + n_target  # params, grads, momentum; target params
    return (state + acts) * itemsize, state * itemsize, acts * itemsize


# --------------------------------------------------------------------------- the three contenders


class RefStep:
    """byol-ref's step: loss_and_grads, LARS (in place), EMA (in place)."""

    def __init__(self, dims, be):
        n, d, h, ph, p, q = dims
        self.online, self.target = byol.build(d, p, q, h, projector_hidden_dim=ph, backend=be)
        self.opt = make_optimizer("lars", inplace=True)
        self.state = self.opt.init(self.online.params)
        self.be = be

    def __call__(self, v1, v2):
        res = loss_and_grads(self.online, self.target, v1, v2)
        params, self.state = self.opt.update(res.grads, self.state, self.online.params, lr=LR)
        self.online = self.online._replace(params=params, buffers=res.online_buffers)
        tparams = ema_update(self.online.params, self.target.params, TAU, inplace=True)
        self.target = self.target._replace(params=tparams, buffers=res.target_buffers)
        return res.loss


class MatmulBound:
    """The step's GEMMs alone, on arrays of the right shapes and layouts."""

    def __init__(self, dims, xp, dtype, rng):
        self.xp = xp
        self.ops = []
        for m, k, n, kind in matmul_list(dims):
            if kind == "nn":
                a, b = xp.asarray(rng.standard_normal((m, k)), dtype), xp.asarray(rng.standard_normal((k, n)), dtype)
            elif kind == "tn":  # x.T @ dout, x stored (rows, k-dim)
                a = xp.asarray(rng.standard_normal((k, m)), dtype).T
                b = xp.asarray(rng.standard_normal((k, n)), dtype)
            else:  # dout @ w.T, w stored (n, k)
                a = xp.asarray(rng.standard_normal((m, k)), dtype)
                b = xp.asarray(rng.standard_normal((n, k)), dtype).T
            self.ops.append((a, b))

    def __call__(self):
        for a, b in self.ops:
            a @ b


class TorchMatmulBound(MatmulBound):
    """The same GEMMs in torch (its BLAS: MKL or oneDNN on the CPU, cuBLAS on the GPU), so that the
    ratio to torch splits into BLAS against BLAS and everything else."""

    def __init__(self, dims, torch_mod, dtype, rng, device):
        super().__init__(dims, _TorchAsXp(torch_mod, device), getattr(torch_mod, dtype), rng)


class _TorchAsXp:
    """Just enough of an array module for MatmulBound: ``asarray(host, dtype)``."""

    def __init__(self, torch_mod, device):
        self.torch, self.device = torch_mod, device

    def asarray(self, host, dtype):
        return self.torch.as_tensor(host, dtype=dtype, device=self.device)


def blas_info():
    """Which BLAS library, core type (kernel) and thread count NumPy's OpenBLAS reports."""
    info = {}
    try:
        import ctypes
        libs = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}
        for path in libs:
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", ""):
                    try:
                        core = getattr(lib, f"{prefix}get_corename{suffix}")
                        core.restype = ctypes.c_char_p
                        info["blas"] = Path(path).name
                        info["blas_core"] = core().decode()
                        threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
                        info["blas_threads"] = int(threads())
                        return info
                    except AttributeError:
                        continue
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- measuring


def peak_memory_numpy(dims, be, v1, v2):
    """tracemalloc peak of one step (after one warm step), everything the run holds included."""
    import tracemalloc
    tracemalloc.start()
    try:
        step = RefStep(dims, be)
        step(v1, v2)
        tracemalloc.reset_peak()
        step(v1, v2)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def peak_memory_cupy(dims, be, v1, v2):
    """CuPy's pool keeps every block it ever needed (until freed): its total after two steps,
    less what was held before, approximates the peak (block rounding included)."""
    pool = be.xp.get_default_memory_pool()
    be.synchronize()
    pool.free_all_blocks()
    base = pool.total_bytes()
    step = RefStep(dims, be)
    step(v1, v2)
    step(v1, v2)
    be.synchronize()
    peak = pool.total_bytes() - base
    del step
    pool.free_all_blocks()
    return peak


def step_difference(ref, tstep, v1, v2, tv1, tv2) -> dict:
    """One step of each implementation from the same start, compared: for the online params and for
    the target params, ``||d_ref - d_torch|| / ||d_ref||`` over all their tensors, ``d`` the change
    the step made to them (the optimiser's update; the EMA's), on the host in float64."""
    be = ref.be
    start = {role: {k: be.to_numpy(v).astype(np.float64) for k, v in net.params.items()}
             for role, net in (("online", ref.online), ("target", ref.target))}
    ref(v1, v2)
    tstep.step(tv1, tv2)
    out = {}
    for role, net, named in (("online", ref.online, tstep.named), ("target", ref.target, tstep.target_named)):
        num = den = 0.0
        for key, tensor in named:
            theirs = tensor.detach().cpu().numpy().astype(np.float64)
            theirs = theirs.T if theirs.ndim == 2 else theirs  # torch keeps Linear weights (out, in)
            d_ref = be.to_numpy(net.params[key]).astype(np.float64) - start[role][key]
            num += float(((d_ref - (theirs - start[role][key])) ** 2).sum())
            den += float((d_ref**2).sum())
        out[role] = (num / den) ** 0.5 if den > 0 else num**0.5
    return out


#: The most :func:`same_step` takes for the same step. Two float64 implementations of one step differ by
#: the order of their arithmetic only: 1e-14 relative for the online params and 1e-11 for the target's
#: (its EMA change is 100x smaller than the update), measured on the three configs. A step with other
#: settings differs by far more (measured on the smoke config): lr x1.01 by 1e-2, tau 0.991 for 0.99
#: by 1e-1 (the target's), the trust ratio's eta x1.1 by 7e-4, and weight decay 1e-4 for 1e-6 (next to
#: the gradient, LARS's weight decay is small) by 1e-6.
SAME_STEP_TOL = 1e-8


def same_step(dims, args, torch_mod) -> dict:
    """Whether torch_step.py does byol-ref's step: one step of each, in float64 (where rounding does not
    hide a difference in the formulas), from the same fresh networks and views, compared by
    :func:`step_difference`. This is what makes the ratio to torch a ratio for *the same work*."""
    import torch_step

    be = get_backend(args.backend, "float64", seed=1)
    rng = np.random.default_rng(1)
    v1_host, v2_host = (rng.standard_normal((dims[0], dims[1])) for _ in range(2))
    ref = RefStep(dims, be)
    device = "cuda" if args.backend == "cupy" else "cpu"
    previous = torch_mod.get_default_dtype()
    torch_mod.set_default_dtype(torch_mod.float64)
    try:
        host = {k: be.to_numpy(v) for k, v in ref.online.params.items()}
        thost = {k: be.to_numpy(v) for k, v in ref.target.params.items()}
        tstep = torch_step.TorchStep(dims[1:], host, thost, device=device, lr=LR, tau=TAU)
        diff = step_difference(ref, tstep, be.asarray(v1_host), be.asarray(v2_host),
                               torch_mod.as_tensor(v1_host, device=device), torch_mod.as_tensor(v2_host, device=device))
    finally:
        torch_mod.set_default_dtype(previous)
    return diff


def quartiles(ts):
    a = np.sort(np.asarray(ts)) * 1e3
    return float(np.median(a)), float(np.percentile(a, 25)), float(np.percentile(a, 75))


def pause_between_calls(args) -> float:
    """``--gap``, or its default: 0.3 s on the CPU, where idle thread pools keep spinning after their
    last op (on a 2-core VM 0.3 s took OpenBLAS's seed GEMMs timed after torch's from 14.6 to 8.8 ms,
    near their time in a process of their own); 0 on CuPy, whose timed calls end in a device
    synchronisation and whose run must fit the GPU budget of ``make gpu-check``."""
    if args.gap is not None:
        return args.gap
    return 0.3 if args.backend == "numpy" else 0.0


def run_config(name, dims, args, torch_mod):
    be = get_backend(args.backend, args.dtype, seed=0)
    xp = be.xp
    rng = np.random.default_rng(0)
    n, d = dims[0], dims[1]
    v1_host = rng.standard_normal((n, d)).astype(args.dtype)
    v2_host = rng.standard_normal((n, d)).astype(args.dtype)
    v1, v2 = be.asarray(v1_host), be.asarray(v2_host)
    peak = None  # measured first, while nothing else of this config is allocated
    if not args.no_memory:
        peak = (peak_memory_numpy if args.backend == "numpy" else peak_memory_cupy)(dims, be, v1, v2)
    ref = RefStep(dims, be)
    bound = MatmulBound(dims, xp, args.dtype, rng)

    tstep = tbound = None
    check = None
    if torch_mod is not None:
        import torch_step
        same = same_step(dims, args, torch_mod)  # (its float64 networks are freed when it returns)
        device = "cuda" if args.backend == "cupy" else "cpu"
        tdtype = getattr(torch_mod, args.dtype)
        torch_mod.set_default_dtype(tdtype)
        host = {k: be.to_numpy(v) for k, v in ref.online.params.items()}
        thost = {k: be.to_numpy(v) for k, v in ref.target.params.items()}
        tstep = torch_step.TorchStep(dims[1:], host, thost, device=device, lr=LR, tau=TAU)
        tv1 = torch_mod.as_tensor(v1_host, device=device)
        tv2 = torch_mod.as_tensor(v2_host, device=device)
        tbound = TorchMatmulBound(dims, torch_mod, args.dtype, rng, device)
        with torch_mod.no_grad():
            t_loss = float(tstep.loss(tv1, tv2))
        r_loss = float(loss_and_grads(ref.online, ref.target, v1, v2).loss)
        check = (r_loss, t_loss, same)

    def sync():
        be.synchronize()
        if tstep is not None and args.backend == "cupy":
            torch_mod.cuda.synchronize()

    gap = pause_between_calls(args)

    def timed(fn):
        sync()
        time.sleep(gap)  # the previous call's idle threads stop spinning (module docstring)
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        ref(v1, v2)
        if tstep is not None:
            tstep.step(tv1, tv2)
            tbound()
        bound()
    times = {"ref": [], "torch": [], "bound": [], "torch_bound": []}
    for _ in range(args.steps):  # A B C D, A B C D, ...: drift hits every contender alike
        times["ref"].append(timed(lambda: ref(v1, v2)))
        if tstep is not None:
            times["torch"].append(timed(lambda: tstep.step(tv1, tv2)))
            times["torch_bound"].append(timed(tbound))
        times["bound"].append(timed(bound))

    flops = step_flops(dims)
    itemsize = np.dtype(args.dtype).itemsize
    need, state_b, acts_b = needed_bytes(dims, itemsize)
    torch_peak = None
    if tstep is not None and args.backend == "cupy":
        torch_mod.cuda.reset_peak_memory_stats()
        tstep.step(tv1, tv2)
        torch_mod.cuda.synchronize()
        torch_peak = torch_mod.cuda.max_memory_allocated()

    med, q1, q3 = quartiles(times["ref"])
    bmed, _, _ = quartiles(times["bound"])
    row = {
        "config": name, "dims": list(dims), "ms_median": med, "ms_p25": q1, "ms_p75": q3,
        "gflops": flops / (med * 1e-3) / 1e9, "step_gflop": flops / 1e9,
        "bound_ms": bmed, "ratio_bound": med / bmed,
        "peak_mb": None if peak is None else peak / 2**20, "needed_mb": need / 2**20,
        "state_mb": state_b / 2**20, "acts_mb": acts_b / 2**20,
        "ratio_memory": None if peak is None else peak / need,
        "final_loss": float(ref(v1, v2)),
    }
    if tstep is not None:
        tmed, tq1, tq3 = quartiles(times["torch"])
        differ = max(check[2].values())
        row.update({"torch_ms_median": tmed, "torch_ms_p25": tq1, "torch_ms_p75": tq3,
                    "torch_bound_ms": quartiles(times["torch_bound"])[0],
                    "ratio_torch": med / tmed if differ <= SAME_STEP_TOL else None, "first_loss_ref": check[0],
                    "first_loss_torch": check[1], "same_step_online": check[2]["online"],
                    "same_step_target": check[2]["target"],
                    "torch_peak_mb": None if torch_peak is None else torch_peak / 2**20})
        if differ > SAME_STEP_TOL:
            print(f"{name}: benchmarks/torch_step.py does not do byol-ref's step (one float64 step of each from "
                  f"the same start changes the online params by {check[2]['online']:.3g} relative to each other, "
                  f"the target params by {check[2]['target']:.3g}; the same step differs by {SAME_STEP_TOL:g} "
                  "at most): the ratio to torch is withheld", flush=True)
    return row


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(rows, meta):
    lines = [
        "| config | batch | ms/step median (p25-p75) | GFLOP/s | matmul bound ms | / bound | "
        "torch ms median (p25-p75) | torch matmul bound ms | / torch | peak MB | needed MB | peak / needed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = (f"{r['torch_ms_median']:.1f} ({r['torch_ms_p25']:.1f}-{r['torch_ms_p75']:.1f})"
             if "torch_ms_median" in r else "n/a")
        lines.append(
            f"| {r['config']} | {r['dims'][0]} | {r['ms_median']:.1f} ({r['ms_p25']:.1f}-{r['ms_p75']:.1f}) | "
            f"{r['gflops']:.0f} | {r['bound_ms']:.1f} | {r['ratio_bound']:.2f} | {t} | "
            f"{fmt(r.get('torch_bound_ms'), '.1f')} | "
            f"{fmt(r.get('ratio_torch'), '.2f')} | {fmt(r['peak_mb'], '.0f')} | {r['needed_mb']:.0f} | "
            f"{fmt(r['ratio_memory'], '.2f')} |")
    checked = [r for r in rows if "same_step_online" in r]
    if checked:  # what makes "/ torch" a ratio for the same work (same_step)
        lines += ["", "Same step as torch (one float64 step of each from the same start; relative difference of the "
                  "changes to the online / target params): " + ", ".join(
                      f"{r['config']} {r['same_step_online']:.0e} / {r['same_step_target']:.0e}" for r in checked)
                  + f" (at most {SAME_STEP_TOL:g}, or the ratio is withheld)."]
    head = ", ".join(f"{k}={v}" for k, v in meta.items())
    return "\n".join([f"<!-- {head} -->", *lines])


def main(args):
    if args.out:  # made now, not found unwritable after minutes of timing
        try:
            make_folder(Path(args.out).parent, "--out")
        except OSError as exc:
            print(f"bench_step.py: error: argument --out: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    torch_mod = None
    if not args.no_torch:
        try:
            import torch as torch_mod
            if args.backend == "numpy":
                torch_mod.set_num_threads(args.threads)
            elif not torch_mod.cuda.is_available():
                torch_mod = None
        except ImportError:
            torch_mod = None
        if torch_mod is None:
            print("bench_step.py: torch is not importable (or has no CUDA device for --backend cupy): the torch "
                  "columns stay n/a; install torch in this environment for the comparison", flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    meta = {"backend": args.backend, "dtype": args.dtype, "steps": args.steps, "warmup": args.warmup,
            "gap_s": pause_between_calls(args),
            "python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch": getattr(torch_mod, "__version__", None)}
    if args.backend == "numpy":
        meta.update(threads=args.threads, **blas_info())
        meta["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
        if torch_mod is not None:
            meta["torch_threads"] = torch_mod.get_num_threads()
    else:
        import cupy
        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        meta.update(cupy=cupy.__version__, tf32=args.tf32,
                    gpu=gpu.decode() if isinstance(gpu, bytes) else str(gpu))
    print(" ".join(f"{k}={v}" for k, v in meta.items()), flush=True)

    batches = args.batch or [None]
    rows = []
    for name in args.configs:
        for batch in batches:
            dims = CONFIGS[name] if batch is None else (batch, *CONFIGS[name][1:])
            row = run_config(name, dims, args, torch_mod)
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    md = table(rows, meta)
    print(md)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        out.with_suffix(".md").write_text(md + "\n")
    return rows


if __name__ == "__main__":
    main(ARGS)
