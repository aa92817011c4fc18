"""Check the installed lightly package's BYOL building blocks against byol-ref, step by step.

    pip install lightly          # brings torch; byol-ref itself needs neither
    python examples/crosscheck_lightly.py [--steps 5] [--warmup 2] [--weight-decay 1e-6] [--workdir DIR]
        [--total-steps K] [--start-step S] [--lr LR] [--momentum M] [--eta ETA] [--tau-base T]
        [--dims D,H,PH,P] [--batch N] [--seed SEED]

The model is put together from lightly's own pieces the way its BYOL benchmark trains
(``benchmarks/imagenet/resnet50/byol.py``), around a small MLP backbone with no biases (like a
ResNet's convolutions): ``BYOLProjectionHead`` / ``BYOLPredictionHead``, the momentum backbone a
``copy.deepcopy`` and the momentum projection head a fresh ``BYOLProjectionHead``
(``target_init="copy_encoder"``), both with ``deactivate_requires_grad``, ``update_momentum`` with
``cosine_schedule(k, K, 0.99, 1)`` *before* the forward, the benchmark's loss
``2 * criterion(z0, p1) + 2 * criterion(z1, p0)`` with ``criterion = NegativeCosineSimilarity()``
(byol-ref's ``2 - 2 cos`` summed, 4 more: recorded plus 4, every gradient the same), lightly's
``LARS`` (lr 0.45 x N / 256, momentum 0.9, weight decay 1e-6 except on biases and norm
parameters, from ``get_weight_decay_parameters``) and its ``CosineWarmupScheduler`` stepped after
every optimiser step. Everything runs in float64 from exported weights; the script records the
loss, lr, tau, every gradient, the updated online and momentum params and the batch-norm
buffers under byol-ref's trace names, traces the same steps with ``byol-ref trace --preset
lightly`` and diffs (rtol 1e-9, atol 1e-10). Exit status 0 when everything agrees,
non-zero otherwise, 77 (skipped) without torch and lightly.

The schedules are where implementations differ most quietly: lightly's warm-up is
``(k + 1) / W`` (``warmup_offset=1``), its cosine divides by ``K - W - 1``
(``cosine_denominator="K-W-1"``) and its tau schedule by ``K - 1`` (``tau_denominator="K-1"``);
``--warmup 2`` with the default 5 steps crosses all three. ``--weight-decay 0`` checks that
lightly's LARS then scales nothing (``lars_only_with_wd``), where the official one still would.
"""
from __future__ import annotations

import argparse
import copy
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
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, get_weight_decay_parameters, update_momentum
    from lightly.utils.lars import LARS
    from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
except ImportError as exc:  # pragma: no cover - the message is the point
    skip(f"this check runs the lightly package itself ({exc}); install it with `pip install lightly`. "
         "byol-ref does not need it; see docs/verifying.md.", __doc__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.cli import main as byol_ref_cli  # noqa: E402
from byol_ref.interchange import from_torch_layout, torch_mapping  # noqa: E402
from byol_ref.presets import get_preset  # noqa: E402

torch.set_default_dtype(torch.float64)
N, D, H, PH, P = 8, 12, 16, 12, 6  # batch, input, backbone width, head hidden, projection
# (the defaults of --batch N and --dims D,H,PH,P; main() sets these module names from them)


class Model(nn.Module):
    """The module names byol-ref's ``lightly`` mapping expects (``byol_ref.interchange``)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(D, H, bias=False), nn.BatchNorm1d(H), nn.ReLU(),
                                      nn.Linear(H, H, bias=False), nn.BatchNorm1d(H), nn.ReLU())
        self.projection_head = BYOLProjectionHead(H, PH, P)
        self.prediction_head = BYOLPredictionHead(P, PH, P)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = BYOLProjectionHead(H, PH, P)  # the benchmark's: fresh, not a copy
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def online(self, x):
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def target(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()


def run_lightly(steps: int, warmup: int, weight_decay: float = 1e-6, seed: int = 0, *, total: int | None = None,
                lr: float = 0.45, momentum: float = 0.9, eta: float = 1e-3, tau_base: float = 0.99, start: int = 0):
    """``steps`` lightly-style training steps: (weights and views to export, what they computed).

    ``total`` is K of both schedules (default ``start + steps``). ``start`` is the global step of the
    first one (byol-ref's ``--start-step``): ``cosine_schedule`` reads ``start + k`` and the scheduler
    is stepped ``start`` times first, from a fresh optimiser state; the trace names stay ``step<k>``.
    """
    total = start + steps if total is None else total
    torch.manual_seed(seed)
    model = Model().train()
    gen = torch.Generator().manual_seed(seed + 1)
    views = [(torch.randn(N, D, generator=gen) * 1.5 + 0.3, torch.randn(N, D, generator=gen)) for _ in range(steps)]
    exported = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    for k, (v1, v2) in enumerate(views):
        exported[f"step{k}.input.view1"], exported[f"step{k}.input.view2"] = v1.numpy(), v2.numpy()

    decay, no_decay = get_weight_decay_parameters([model.backbone, model.projection_head, model.prediction_head])
    opt = LARS([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr * N / 256, momentum=momentum,
               weight_decay=weight_decay, trust_coefficient=eta)
    sched = CosineWarmupScheduler(opt, warmup_epochs=warmup, max_epochs=total)
    advance(sched, start)  # (from a fresh optimiser state)
    criterion = NegativeCosineSimilarity()
    mapping = torch_mapping("lightly", get_preset("lightly").config(encoder_dim=1))

    def as_ref(tensors, prefix, *, keep_role=False):  # torch names and layout -> byol-ref's, by byol-ref's own reader
        arrays = {t: v.detach().numpy().copy() for t, v in tensors.items()}
        renamed = from_torch_layout(arrays, mapping, strict=False)  # "online.param.encoder.fc1.weight": ...
        return {prefix + (name if keep_role else name.split(".param.", 1)[1]): v for name, v in renamed.items()}

    seen = {}
    for k, (x0, x1) in enumerate(views):
        tau = cosine_schedule(start + k, total, tau_base, 1.0)
        seen[f"step{k}.tau"] = np.asarray(tau)
        seen[f"step{k}.lr"] = np.asarray(opt.param_groups[0]["lr"])
        update_momentum(model.backbone, model.backbone_momentum, m=tau)  # before the forward, with theta_k
        update_momentum(model.projection_head, model.projection_head_momentum, m=tau)
        p0, z0, p1, z1 = model.online(x0), model.target(x0), model.online(x1), model.target(x1)
        loss = 2 * criterion(z0, p1) + 2 * criterion(z1, p0)  # (the benchmark's; its examples' is 4x smaller)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        seen[f"step{k}.loss.total"] = loss.detach().numpy() + 4  # 2 (-c1) + 2 (-c2) + 4 = (2 - 2 c1) + (2 - 2 c2)
        seen.update(as_ref({t: p.grad for t, p in model.named_parameters() if p.grad is not None},
                           f"step{k}.online.grad."))
        seen.update(as_ref(model.state_dict(), f"step{k}.", keep_role=True))  # params and buffers of both networks
    return exported, seen


def main(argv=None) -> int:
    global N, D, H, PH, P
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=number(int, 1), default=5, help="training steps to compare (default 5)")
    ap.add_argument("--total-steps", type=number(int, 1), default=None,
                    help="K of the lr and tau schedules (default: --start-step + --steps)")
    add_start_step(ap)
    ap.add_argument("--warmup", type=number(int, 0), default=2, help="warm-up steps W (default 2)")
    ap.add_argument("--weight-decay", type=number(float, 0), default=1e-6, help="LARS weight decay (default 1e-6, the "
                    "benchmark's; 0 turns lightly's LARS into momentum SGD)")
    ap.add_argument("--lr", type=number(float, 0), default=0.45, help="base lr (peak lr x N/256; default 0.45)")
    ap.add_argument("--momentum", type=number(float, 0, 1, hi_open=True), default=0.9,
                    help="LARS momentum (default 0.9)")
    ap.add_argument("--eta", type=number(float, 0, lo_open=True), default=1e-3,
                    help="LARS trust_coefficient (default 1e-3)")
    ap.add_argument("--tau-base", type=number(float, 0, 1), default=0.99,
                    help="tau at step 0 of cosine_schedule (default 0.99)")
    ap.add_argument("--dims", default=f"{D},{H},{PH},{P}",
                    help=f"D,H,PH,P: input, backbone width, head hidden, projection (default {D},{H},{PH},{P})")
    ap.add_argument("--batch", type=number(int, 2), default=N, help=f"batch size N per view (default {N})")
    ap.add_argument("--seed", type=number(int, 0), default=0,
                    help="seed of the torch init and of the views (default 0)")
    add_workdir(ap)
    args = ap.parse_args(argv)
    make_workdir(ap, args.workdir)
    D, H, PH, P = parse_dims(ap, args.dims, "D,H,PH,P")
    N = args.batch
    start, total = schedule_steps(ap, args)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        exported, seen = run_lightly(args.steps, args.warmup, args.weight_decay, args.seed, total=total, lr=args.lr,
                                     momentum=args.momentum, eta=args.eta, tau_base=args.tau_base,
                                     start=start)
        weights, theirs = os.path.join(work, "weights.npz"), os.path.join(work, "lightly_trace.npz")
        ref = os.path.join(work, "byol_ref_trace.npz")
        np.savez(weights, **exported)
        np.savez(theirs, **seen)
        settings = dict(weight_decay=args.weight_decay, lr=args.lr, momentum=args.momentum, lars_eta=args.eta,
                        tau_base=args.tau_base)
        status = byol_ref_cli(["trace", "--inputs", weights, "--layout", "torch", "--mapping", "lightly", "--preset",
                               "lightly", "--steps", str(args.steps), "--total-steps", str(total),
                               "--start-step", str(start), "--warmup-steps", str(args.warmup),
                               "--overwrite", "--out", ref,
                               *(a for k, v in settings.items() for a in ("--set", f"{k}={v!r}"))])
        if status != 0:
            print(f"\nbyol-ref trace failed (exit status {status}); see its message above.")
            return 2
        status = byol_ref_cli(["diff", theirs, ref, "--subset", "--rtol", "1e-9", "--atol", "1e-10"])
    if status == 0:
        print(f"\nlightly agrees with byol-ref (preset lightly) on every recorded tensor of {args.steps} step(s).")
    return status


if __name__ == "__main__":
    sys.exit(main())
