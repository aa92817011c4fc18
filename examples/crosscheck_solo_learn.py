"""Check solo-learn's BYOL building blocks, from a checkout of its source, against byol-ref, step by step.

    git clone https://github.com/vturrisi/solo-learn     # its main branch
    pip install torch                                     # all that the four files below import
    python examples/crosscheck_solo_learn.py --solo-src solo-learn [--steps 5] [--warmup 3] [--workdir DIR]
        [--total-steps K] [--start-step S] [--lr LR] [--weight-decay WD] [--momentum M] [--eta ETA] [--tau-base T]
        [--dims D,H,PH,P] [--batch N] [--seed SEED]

``--solo-src`` is the folder that holds ``solo/`` (or set ``SOLO_LEARN_SRC``). ``import solo`` pulls
in Lightning, timm, wandb and DALI, but its BYOL pieces need only torch, so the script loads these
files by path: ``solo/losses/byol.py`` (``byol_loss_func``), ``solo/utils/lars.py`` (``LARS``),
``solo/utils/lr_scheduler.py`` (``LinearWarmupCosineAnnealingLR``) and ``solo/utils/momentum.py``
(``MomentumUpdater``, ``initialize_momentum_params``). It trains the way ``solo/methods/byol.py``
and ``base.py`` do with the CIFAR recipe (``scripts/pretrain/cifar/byol.yaml``):

- a small MLP backbone (Linear -> BN -> ReLU, twice, with biases), and projector and predictor
  ``Linear -> BatchNorm1d -> ReLU -> Linear`` with biases, as ``byol.py`` builds them; the momentum
  backbone and projector copied with ``initialize_momentum_params``;
- each view through the networks on its own (per-view batch statistics), and the loss
  ``byol_loss_func(p[v2], z_momentum[v1])`` summed over the two ordered pairs ``v1 != v2``;
- ``LARS`` with lr 1.0 x N / 256, momentum 0.9, weight decay 1e-5, ``eta=0.02``, and its clip
  and 1-D exclusion switches on (``clip_lr`` / ``exclude_bias_n_norm``, later ``clip_lars_lr`` and then
  ``exclude_bias_n_norm_lars``, renamed one at a time: the script reads the signature); the 1-D tensors
  sit in a group with weight decay 0, as ``remove_bias_and_norm_from_weight_decay`` puts them with
  ``exclude_bias_n_norm_wd`` (no change here: LARS adds no weight decay to a 1-D tensor it skips);
- ``LinearWarmupCosineAnnealingLR(warmup_epochs=W, max_epochs=K, warmup_start_lr=3e-5)`` stepped
  after every optimiser step (``interval: step``), with ``warmup_start_lr`` the peak lr when ``W = 0``,
  as ``base.py`` passes it;
- after each step, ``MomentumUpdater(0.99, 1.0).update`` on backbone and projector, then
  ``update_tau(cur_step=S + k + 1, max_steps=K)`` (``on_train_batch_end``).

With ``--start-step S`` the first compared step is global step S, from a fresh optimiser state: the
scheduler is stepped S times before it and ``update_tau(cur_step=S, max_steps=K)`` sets its tau, so
both schedules read ``S + k`` at step k (``byol-ref trace --start-step S``); the trace names stay
``step<k>``, and ``--total-steps`` defaults to S + ``--steps``.

Everything runs in float64 from exported weights. The script records the loss, lr, tau, every
gradient, the updated online and momentum params, LARS's momentum buffers and every batch-norm
buffer under byol-ref's trace names, traces the same steps with ``byol-ref trace --preset
solo-learn`` (its weights read through a mapping the script writes, as you would for your own
model) and diffs at rtol 1e-9, atol 1e-10. Exit status 0 when everything agrees,
non-zero otherwise, 77 (skipped) without torch or without ``--solo-src``.

Where solo-learn differs from the official schedule: its warm-up divides by ``W - 1``
(``warmup_denominator="W-1"``) and starts at ``warmup_start=3e-5``; LARS's trust ratio is
``eta ||p|| / (||g|| + wd ||p|| + 1e-8)`` with ``clip_lr`` (``lars_trust_ratio="sum_of_norms"``,
``lars_clip_lr``), and the 1-D tensors skip both LARS and weight decay (``exclude="ndim"``).
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import sys
import tempfile

import numpy as np

from _args import (add_start_step, add_workdir, advance, make_workdir, number, parse_dims,  # examples/_args.py
                   schedule_steps)
from _skip import skip  # examples/_skip.py: exit 77 (skipped) when this check cannot run here

try:
    import torch
    import torch.nn as nn
except ImportError as exc:  # pragma: no cover - the message is the point
    skip(f"this check runs solo-learn's own code, which needs torch ({exc}); install it with `pip install torch`. "
         "byol-ref does not need it; see docs/verifying.md.", __doc__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.cli import main as byol_ref_cli  # noqa: E402
from byol_ref.interchange import from_torch_layout, torch_mapping  # noqa: E402
from byol_ref.presets import get_preset  # noqa: E402

torch.set_default_dtype(torch.float64)
N, D, H, PH, P = 8, 12, 16, 12, 6  # batch, input, backbone width, head hidden, projection
# (the defaults of --batch N and --dims D,H,PH,P; main() sets these module names from them)
FILES = {"loss": "solo/losses/byol.py", "lars": "solo/utils/lars.py", "scheduler": "solo/utils/lr_scheduler.py",
         "momentum": "solo/utils/momentum.py"}
LARS_CLIP, LARS_EXCLUDE = ("clip_lars_lr", "clip_lr"), ("exclude_bias_n_norm_lars", "exclude_bias_n_norm")
# byol-ref's lightly names are the closest shipped ones; this model's own module names replace them.
RENAME = {"backbone_momentum": "momentum_backbone", "projection_head_momentum.layers": "momentum_projector",
          "projection_head.layers": "projector", "prediction_head.layers": "predictor", "backbone": "backbone"}


def load_solo(src: str) -> dict:
    """The four solo-learn modules, loaded from their files (``import solo`` would need Lightning)."""
    modules = {}
    for key, rel in FILES.items():
        path = os.path.join(src, rel)
        if not os.path.isfile(path):
            raise SystemExit(f"--solo-src {src!r} does not hold {rel}; expected a checkout of vturrisi/solo-learn "
                             "(the folder with solo/ in it)")
        spec = importlib.util.spec_from_file_location(f"solo_{key}", path)
        modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[key])
    return modules


def lars_switches(names) -> dict:
    """LARS's clip and 1-D exclusion switches, both on, under the names this ``LARS`` takes.

    solo-learn renamed the two one at a time: ``clip_lr`` / ``exclude_bias_n_norm``, then
    ``clip_lars_lr`` / ``exclude_bias_n_norm``, then ``clip_lars_lr`` / ``exclude_bias_n_norm_lars``.
    """
    switches = {}
    for spellings in (LARS_CLIP, LARS_EXCLUDE):
        found = [name for name in spellings if name in names]
        if not found:
            raise SystemExit(f"solo/utils/lars.py: LARS takes none of {spellings}; its arguments are {list(names)}")
        switches[found[0]] = True
    return switches


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """solo-learn's ``byol.py`` projector and predictor."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def mapping_for_this_model() -> dict:
    """{byol-ref name: this model's state_dict name}: the lightly layout with this model's module names."""
    mapping = {}
    for ref, torch_name in torch_mapping("lightly", get_preset("solo-learn").config(encoder_dim=1)).items():
        for old, new in RENAME.items():  # longest prefixes first: "backbone_momentum" before "backbone"
            if torch_name.startswith(old + "."):
                mapping[ref] = new + torch_name[len(old):]
                break
    return mapping


def run_solo(solo: dict, steps: int, warmup: int, seed: int = 0, *, total: int | None = None, lr: float = 1.0,
             weight_decay: float = 1e-5, momentum: float = 0.9, eta: float = 0.02, tau_base: float = 0.99,
             start: int = 0):
    """``steps`` solo-learn training steps: (weights and views to export, what they computed).

    ``total`` is K of both schedules (default ``start + steps``). ``start`` is the global step of the
    first one (byol-ref's ``--start-step``): the scheduler is stepped ``start`` times first, from a
    fresh optimiser state, and ``update_tau(cur_step=start)`` sets tau, so both read ``start + k``;
    the trace names stay ``step<k>``.
    """
    total = start + steps if total is None else total
    torch.manual_seed(seed)
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, H),
                                   nn.BatchNorm1d(H), nn.ReLU())
    model.projector, model.predictor = mlp(H, PH, P), mlp(P, PH, P)
    model.momentum_backbone = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, H),
                                            nn.BatchNorm1d(H), nn.ReLU())
    model.momentum_projector = mlp(H, PH, P)
    solo["momentum"].initialize_momentum_params(model.backbone, model.momentum_backbone)
    solo["momentum"].initialize_momentum_params(model.projector, model.momentum_projector)
    model.train()
    gen = torch.Generator().manual_seed(seed + 1)
    views = [(torch.randn(N, D, generator=gen) * 1.5 + 0.3, torch.randn(N, D, generator=gen)) for _ in range(steps)]
    exported = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    for k, (v1, v2) in enumerate(views):
        exported[f"step{k}.input.view1"], exported[f"step{k}.input.view2"] = v1.numpy(), v2.numpy()

    online = [p for m in (model.backbone, model.projector, model.predictor) for p in m.parameters()]
    groups = [{"params": [p for p in online if p.ndim > 1]},
              {"params": [p for p in online if p.ndim <= 1], "weight_decay": 0.0}]
    switches = lars_switches(inspect.signature(solo["lars"].LARS).parameters)
    opt = solo["lars"].LARS(groups, lr=lr * N / 256, momentum=momentum, weight_decay=weight_decay, eta=eta,
                            **switches)
    # base.py's configure_optimizers: warmup_start_lr=self.warmup_start_lr if self.warmup_epochs > 0 else self.lr
    # (the scaled lr): without a warm-up the class alone would start at 3e-5 and scale the whole cosine by it
    sched = solo["scheduler"].LinearWarmupCosineAnnealingLR(opt, warmup_epochs=warmup, max_epochs=total,
                                                            warmup_start_lr=3e-5 if warmup > 0 else lr * N / 256,
                                                            eta_min=0.0)
    advance(sched, start)  # (from a fresh optimiser state)
    updater = solo["momentum"].MomentumUpdater(base_tau=tau_base, final_tau=1.0)
    if start:  # (at 0, update_tau would give base_tau up to rounding; solo-learn starts from base_tau itself)
        updater.update_tau(cur_step=start, max_steps=total)
    mapping = mapping_for_this_model()

    def as_ref(tensors, prefix, *, keep_role=False):  # this model's names and layout -> byol-ref's
        arrays = {t: v.detach().numpy().copy() for t, v in tensors.items()}
        renamed = from_torch_layout(arrays, mapping, strict=False)
        return {prefix + (name if keep_role else name.split(".param.", 1)[1]): v for name, v in renamed.items()}

    names = {p: t for t, p in model.named_parameters()}
    seen = {}
    for k, crops in enumerate(views):
        seen[f"step{k}.lr"] = np.asarray(opt.param_groups[0]["lr"])
        seen[f"step{k}.tau"] = np.asarray(updater.cur_tau)
        z = [model.projector(model.backbone(x)) for x in crops]
        p = [model.predictor(zi) for zi in z]
        with torch.no_grad():
            z_momentum = [model.momentum_projector(model.momentum_backbone(x)) for x in crops]
        loss = sum(solo["loss"].byol_loss_func(p[v2], z_momentum[v1]) for v1 in range(2) for v2 in range(2)
                   if v1 != v2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        updater.update(model.backbone, model.momentum_backbone)  # on_train_batch_end: EMA with tau_k ...
        updater.update(model.projector, model.momentum_projector)
        updater.update_tau(cur_step=start + k + 1, max_steps=total)  # ... then tau_{k+1}
        seen[f"step{k}.loss.total"] = loss.detach().numpy()
        seen.update(as_ref({t: q.grad for t, q in model.named_parameters() if q.grad is not None},
                           f"step{k}.online.grad."))
        seen.update(as_ref(model.state_dict(), f"step{k}.", keep_role=True))  # params and buffers of both networks
        if momentum:  # (with momentum 0, solo-learn's LARS keeps no momentum buffer)
            seen.update(as_ref({names[q]: opt.state[q]["momentum_buffer"] for q in online if q in opt.state},
                               f"step{k}.opt.momentum."))
    return exported, seen, mapping


def main(argv=None) -> int:
    global N, D, H, PH, P
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solo-src", default=os.environ.get("SOLO_LEARN_SRC"),
                    help="checkout of vturrisi/solo-learn (default: $SOLO_LEARN_SRC)")
    ap.add_argument("--steps", type=number(int, 1), default=5, help="training steps to compare (default 5)")
    ap.add_argument("--total-steps", type=number(int, 1), default=None,
                    help="K of the lr and tau schedules (default: --start-step + --steps)")
    add_start_step(ap)
    ap.add_argument("--warmup", type=number(int, 0), default=3, help="warm-up steps W (default 3)")
    ap.add_argument("--lr", type=number(float, 0), default=1.0,
                    help="base lr (peak lr x N/256; default 1.0, the CIFAR recipe)")
    ap.add_argument("--weight-decay", type=number(float, 0), default=1e-5, help="LARS weight decay (default 1e-5)")
    ap.add_argument("--momentum", type=number(float, 0, 1, hi_open=True), default=0.9,
                    help="LARS momentum (default 0.9)")
    ap.add_argument("--eta", type=number(float, 0, lo_open=True), default=0.02,
                    help="LARS eta (default 0.02, the CIFAR recipe)")
    ap.add_argument("--tau-base", type=number(float, 0, 1), default=0.99,
                    help="MomentumUpdater base_tau (default 0.99)")
    ap.add_argument("--dims", default=f"{D},{H},{PH},{P}",
                    help=f"D,H,PH,P: input, backbone width, head hidden, projection (default {D},{H},{PH},{P})")
    ap.add_argument("--batch", type=number(int, 2), default=N, help=f"batch size N per view (default {N})")
    ap.add_argument("--seed", type=number(int, 0), default=0,
                    help="seed of the torch init and of the views (default 0)")
    add_workdir(ap)
    args = ap.parse_args(argv)
    make_workdir(ap, args.workdir)
    if not args.solo_src:
        skip("this check runs solo-learn's own code: clone vturrisi/solo-learn and pass --solo-src (or set "
             "SOLO_LEARN_SRC). byol-ref does not need it; see docs/verifying.md.", __doc__)
    D, H, PH, P = parse_dims(ap, args.dims, "D,H,PH,P")
    N = args.batch
    start, total = schedule_steps(ap, args)
    solo = load_solo(args.solo_src)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        exported, seen, mapping = run_solo(solo, args.steps, args.warmup, args.seed, total=total, lr=args.lr,
                                           weight_decay=args.weight_decay, momentum=args.momentum, eta=args.eta,
                                           tau_base=args.tau_base, start=start)
        weights, theirs = os.path.join(work, "weights.npz"), os.path.join(work, "solo_learn_trace.npz")
        ref, mapping_file = os.path.join(work, "byol_ref_trace.npz"), os.path.join(work, "mapping.json")
        np.savez(weights, **exported)
        np.savez(theirs, **seen)
        with open(mapping_file, "w") as f:
            json.dump(mapping, f, indent=1)
        settings = dict(lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum, lars_eta=args.eta,
                        tau_base=args.tau_base)
        status = byol_ref_cli(["trace", "--inputs", weights, "--layout", "torch", "--mapping", mapping_file,
                               "--preset", "solo-learn", "--steps", str(args.steps), "--total-steps", str(total),
                               "--start-step", str(start),
                               "--warmup-steps", str(args.warmup), "--overwrite", "--out", ref,
                               *(a for k, v in settings.items() for a in ("--set", f"{k}={v!r}"))])
        if status != 0:
            print(f"\nbyol-ref trace failed (exit status {status}); see its message above.")
            return 2
        status = byol_ref_cli(["diff", theirs, ref, "--subset", "--rtol", "1e-9", "--atol", "1e-10"])
    if status == 0:
        print(f"\nsolo-learn agrees with byol-ref (preset solo-learn) on every recorded tensor of {args.steps} "
              "step(s).")
    return status


if __name__ == "__main__":
    sys.exit(main())
