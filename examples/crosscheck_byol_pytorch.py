"""Check the installed byol-pytorch package, its own ``BYOL`` class, against byol-ref.

    pip install byol-pytorch     # brings torch and torchvision; byol-ref itself needs neither
    python examples/crosscheck_byol_pytorch.py [--steps 3] [--workdir DIR] [--lr LR] [--tau-base T]
        [--dims S,H,PH,P] [--batch N] [--seed SEED]

Where ``examples/verify_pytorch.py`` shows the verification loop on a small model written in the
style of byol-pytorch, this script runs lucidrains' real code:

1. wraps a small MLP encoder (Linear -> BN -> ReLU, twice; the representation is the last ReLU,
   ``hidden_layer=-2``) in ``byol_pytorch.BYOL`` (with ``use_simplicial_embeddings=False`` where
   the version has it: 0.9 turned that non-BYOL block on by default), in float64, with fixed views per step handed in
   through its ``augment_fn``/``augment_fn2`` hooks, and exports the weights right after
   construction (the constructor's mock forward has already moved the running statistics);
2. trains ``--steps`` steps the way its README does (Adam 3e-4; ``loss.backward()``,
   ``opt.step()``, ``update_moving_average()``) and records, under byol-ref's trace names, the loss,
   every gradient, the updated online params, Adam's moments, the EMA'd target params and every
   batch-norm buffer;
3. traces the same steps with byol-ref under the ``byol-pytorch`` preset, once with each way the
   views can meet batch norm: byol-pytorch concatenates them into one batch since commit 40565b7
   (2023-11) and forwarded them one at a time before;
4. diffs each trace against the recorded one and says which convention the installed version
   follows. Exit status 0 when exactly one agrees, non-zero otherwise, 77 (skipped) without torch and
   byol-pytorch.

Tolerance: rtol 1e-9, atol 1e-10 (docs/verifying.md section 5; ``--rtol``, ``--atol``): the biases in
front of batch norm have a true gradient of exactly zero, so both sides hold rounding noise there,
which Adam scales up to a step of about ``lr g / (|g| + 1e-8)`` (at most lr): the two sides' biases move
apart by ~3e-8 x lr a step at the defaults, and by up to 1e-5 x lr where the noise is larger, as in the
simplicial embedding's 256-wide layer. Measured with it: ``--steps 5 --dims 5,2,4,2 --batch 7 --seed
680`` at the default lr parts by 1.6e-8 at step 4, in one element of ``projector.sem_fc.bias``; at
``--lr 0.01``, ``--steps 3 --dims 2,2,5,5 --batch 4 --seed 163 --tau-base 0.9`` by 5.7e-8 at step 0,
and ``--steps 4 --dims 2,6,7,2 --batch 8 --seed 74`` by 1.1e-8 in ``predictor.fc1.bias``; then the
running means and, through
them, other tensors, more so with a tiny batch (``--batch 2``) or ``--tau-base 0`` (the target copies
the noisy biases). With a larger ``--lr`` raise ``--atol`` (and ``--rtol``) to match: a DIFFER whose
first divergence is ``online.param.<bias in front of a batch norm>`` is that noise. Some weights are
more sensitive to it than others: at the default lr, ``--seed 2 --batch 5 --dims 3,10,7,4`` differs
by 2e-8 relative in a step-2 gradient, as much as byol-ref moves from itself when those biases are
moved by 1e-11.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from inspect import signature

import numpy as np

from _args import add_workdir, make_workdir, number, parse_dims  # examples/_args.py: the settings they share
from _skip import skip  # examples/_skip.py: exit 77 (skipped) when this check cannot run here

try:
    import torch
    import torch.nn as nn
    from byol_pytorch import BYOL
except ImportError as exc:  # pragma: no cover - the message is the point
    skip(f"this check runs the byol-pytorch package itself ({exc}); install it with `pip install byol-pytorch`. "
         "byol-ref does not need it; see docs/verifying.md.", __doc__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.cli import main as byol_ref_cli  # noqa: E402
from byol_ref.interchange import from_torch_layout, torch_mapping  # noqa: E402
from byol_ref.presets import get_preset  # noqa: E402

torch.set_default_dtype(torch.float64)
N, S, H, PH, P = 8, 2, 16, 12, 6  # batch, image side (3 x S x S inputs), encoder width, MLP hidden, projection
D = 3 * S * S
# (the defaults of --batch N and --dims S,H,PH,P; main() sets these module names from them)


class FlatLinear(nn.Linear):
    """The first Linear of the encoder, flattening the (N, 3, S, S) images byol-pytorch passes around."""

    def forward(self, x):
        return super().forward(x.reshape(x.shape[0], -1))


SEM = dict(sem_simplices=32, sem_simplex_dim=8, sem_temperature=0.1)  # byol-pytorch 0.9's defaults


def has_sem() -> bool:
    """Whether the installed byol-pytorch has simplicial embeddings (0.9 and later)."""
    return "use_simplicial_embeddings" in signature(BYOL).parameters


def run_byol_pytorch(steps: int, seed: int = 0, sem: bool = False, *, lr: float = 3e-4, tau: float = 0.99):
    """The package's BYOL for ``steps`` steps: (weights and views to export, what it computed).
    ``sem``: with its simplicial embedding at its default settings (32 simplices of 8, tau 0.1)."""
    torch.manual_seed(seed)
    net = nn.Sequential(FlatLinear(D, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, H), nn.BatchNorm1d(H), nn.ReLU(),
                        nn.Linear(H, 10))  # a classifier head the hook skips, as with a ResNet's fc
    gen = torch.Generator().manual_seed(seed + 1)
    views = [(torch.randn(N, 3, S, S, generator=gen) * 1.5 + 0.3, torch.randn(N, 3, S, S, generator=gen))
             for _ in range(steps)]
    step = {"k": None}  # None during construction: the mock forward sees its own random images
    # byol-pytorch 0.9 (2026-04) puts simplicial embeddings (Lavoie et al., 2022) in front of the
    # projector by default: a Linear -> BN -> softmax block that is not BYOL. Set the switch where
    # the installed version has it; older versions are plain BYOL already.
    extra = {"use_simplicial_embeddings": sem} if has_sem() else {}
    learner = BYOL(net, image_size=S, hidden_layer=-2, projection_size=P, projection_hidden_size=PH,
                   moving_average_decay=tau, augment_fn=lambda x: x if step["k"] is None else views[step["k"]][0],
                   augment_fn2=lambda x: x if step["k"] is None else views[step["k"]][1], **extra)
    exported = {k: v.detach().numpy().copy() for k, v in learner.state_dict().items()}
    for k, (v1, v2) in enumerate(views):
        exported[f"step{k}.input.view1"] = v1.reshape(N, D).numpy()
        exported[f"step{k}.input.view2"] = v2.reshape(N, D).numpy()

    # Torch names -> byol-ref names (and (out, in) -> (in, out)) by byol-ref's own reader; the
    # mapping does not depend on the views setting. The classifier head has no byol-ref name.
    mapping = torch_mapping("byol-pytorch", get_preset("byol-pytorch").config(encoder_dim=1, **SEM if sem else {}))

    def as_ref(tensors, prefix, *, keep_role=False):
        arrays = {t: v.detach().numpy().copy() for t, v in tensors.items()}
        renamed = from_torch_layout(arrays, mapping, strict=False)  # "online.param.encoder.fc1.weight": ...
        return {prefix + (name if keep_role else name.split(".param.", 1)[1]): v for name, v in renamed.items()}

    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=lr)
    # remove_duplicate=False: BYOL also registers the encoder as ``net``, and the deduplicated list
    # would name the encoder's parameters only by that alias, which the mapping leaves out.
    trained = {t: p for t, p in learner.named_parameters(remove_duplicate=False) if p.requires_grad}
    seen = {}
    for k in range(steps):
        step["k"] = k
        loss = learner(torch.zeros(N, 3, S, S))
        opt.zero_grad()
        loss.backward()
        seen[f"step{k}.loss.total"] = loss.detach().numpy()
        seen.update(as_ref({t: p.grad for t, p in trained.items() if p.grad is not None}, f"step{k}.online.grad."))
        opt.step()
        learner.update_moving_average()
        seen.update(as_ref(learner.state_dict(), f"step{k}.", keep_role=True))  # params and buffers of both networks
        for moment, name in (("exp_avg", "mu"), ("exp_avg_sq", "nu")):
            seen.update(as_ref({t: opt.state[p][moment] for t, p in trained.items() if p in opt.state},
                               f"step{k}.opt.{name}."))
    return exported, seen


def main(argv=None) -> int:
    global N, S, H, PH, P, D
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=number(int, 1), default=3, help="training steps to compare (default 3)")
    ap.add_argument("--lr", type=number(float, 0), default=3e-4, help="Adam's lr (default 3e-4, the README's)")
    ap.add_argument("--tau-base", type=number(float, 0, 1), default=0.99,
                    help="BYOL(moving_average_decay=...) (default 0.99)")
    ap.add_argument("--dims", default=f"{S},{H},{PH},{P}",
                    help=f"S,H,PH,P: image side (3 x S x S inputs), encoder width, projector and predictor hidden, "
                         f"projection (default {S},{H},{PH},{P})")
    ap.add_argument("--batch", type=number(int, 2), default=N, help=f"batch size N per view (default {N})")
    ap.add_argument("--seed", type=number(int, 0), default=0,
                    help="seed of the torch init and of the views (default 0)")
    ap.add_argument("--rtol", type=number(float, 0), default=1e-9, help="relative tolerance of the diff (default 1e-9)")
    ap.add_argument("--atol", type=number(float, 0), default=1e-10,
                    help="absolute tolerance of the diff (default 1e-10; raise it with --lr and --steps: Adam moves "
                         "the biases in front of batch norm, whose true gradient is 0, by up to ~1e-5 x lr of "
                         "rounding noise a step, as measured)")
    add_workdir(ap)
    args = ap.parse_args(argv)
    make_workdir(ap, args.workdir)
    S, H, PH, P = parse_dims(ap, args.dims, "S,H,PH,P")
    N, D = args.batch, 3 * S * S
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        traced = {}  # (sem, views) -> byol-ref trace file
        theirs = {}
        for sem in (False, True) if has_sem() else (False,):
            tag = "sem" if sem else "byol"
            exported, seen = run_byol_pytorch(args.steps, args.seed, sem=sem, lr=args.lr, tau=args.tau_base)
            weights, theirs[sem] = os.path.join(work, f"weights_{tag}.npz"), os.path.join(work, f"theirs_{tag}.npz")
            np.savez(weights, **exported)
            np.savez(theirs[sem], **seen)
            sets = [f"lr={args.lr!r}", f"tau_base={args.tau_base!r}", *([f"{k}={v}" for k, v in SEM.items()] if sem
                                                                           else [])]
            for views in ("concat", "separate"):
                traced[sem, views] = os.path.join(work, f"byol_ref_{tag}_{views}.npz")
                status = byol_ref_cli(["trace", "--inputs", weights, "--layout", "torch", "--mapping", "byol-pytorch",
                                       "--preset", "byol-pytorch", "--set", f"views={views}",
                                       *[a for kv in sets for a in ("--set", kv)], "--steps", str(args.steps),
                                       "--overwrite", "--out", traced[sem, views]])
                if status != 0:
                    print(f"\nbyol-ref trace failed (exit status {status}); see its message above.")
                    return 2
        agree = {}
        for (sem, views), ref in traced.items():
            print(f"\n--- {'simplicial embedding on' if sem else 'plain BYOL'}, views={views} ---", flush=True)
            if byol_ref_cli(["diff", theirs[sem], ref, "--subset", "--rtol", repr(args.rtol),
                             "--atol", repr(args.atol)]) == 0:
                agree.setdefault(sem, []).append(views)
    if all(len(agree.get(sem, [])) == 1 for sem, _ in traced):
        with_sem = (f"; with its simplicial embedding (sem_simplices=32, views={agree[True][0]}) too"
                    if True in agree else "")
        print(f"\nbyol-pytorch agrees with byol-ref (preset byol-pytorch, views={agree[False][0]}) on every recorded "
              f"tensor of {args.steps} step(s){with_sem}.")
        return 0
    print(f"\nbyol-pytorch agrees with byol-ref under these views settings: {agree or 'none'}; want exactly one "
          "each: see the reports above.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
