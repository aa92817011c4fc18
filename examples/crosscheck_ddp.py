"""Check ``bn_shards`` against PyTorch's own DistributedDataParallel and gradient accumulation.

    pip install torch            # byol-ref itself does not need it
    python examples/crosscheck_ddp.py [--shards 2] [--steps 3] [--workdir DIR] [--rows 3]
        [--views concat|separate|both] [--lr LR] [--momentum M] [--tau-base T] [--dims D,H,P,Q,PH] [--seed SEED]
        [--rtol 1e-9] [--atol 1e-10]

A BYOL step in byol-pytorch's conventions (views concatenated per replica, torch batch norm,
``2 - 2 cos`` summed over both directions, tau 0.99 after the optimiser step), with SGD (momentum
0.9), in float64, is run three ways from the same weights and views:

1. **DDP without SyncBN**: ``--shards`` processes (``torch.distributed``, gloo backend, on this
   machine), each with its own rows of the batch, the online and target networks inside one
   ``DistributedDataParallel`` module (``broadcast_buffers=True``, the default). The gradients are
   all-reduced; each replica's batch norm takes statistics over its own rows, and the first
   replica's running statistics are broadcast to the others at every forward. Recorded on rank 0.
2. **Gradient accumulation**: one process, the batch in ``--shards`` micro-batches, each loss
   divided by the number of micro-batches before its ``backward()``, one optimiser step.
3. byol-ref's ``trace`` with ``--set bn_shards=S`` and ``bn_shard_running`` ``first`` (against 1) and
   ``sequential`` (against 2).

The script requires each to agree (rtol 1e-9, atol 1e-10: ``--rtol``, ``--atol``) on the loss (the
mean over every replica), every gradient, the updated params, the EMA'd target and the running
statistics, and, so that the check could fail, that both disagree with byol-ref's unsharded step
(``bn_shards=1``). Exit status 0 when all of that holds, non-zero otherwise, 77 (skipped) without torch.

A shard of 2 rows is the hardest case for those tolerances: a few steps at a large ``--lr`` can bring
the two rows to nearly one value in some feature, and where a batch norm's variance falls below its
eps, rounding is amplified many times over. ``--steps 5 --seed 415 --shards 3 --rows 2 --views separate
--lr 0.5 --momentum 0 --dims 7,9,3,3,9`` agrees to 1e-13 for three steps; at step 3 a predictor
variance of 3e-6 turns that into 1e-9 in a gradient, and at step 4 a running mean of -1.1e-3 is
1.8e-10 apart from the accumulation loop's (``--atol 1e-9`` agrees). byol-ref moves from itself by as
much there (3.7e-10 in that gradient) when its initial weights move by 1 part in 1e15. Where a check
differs, the script prints that measure for the first differing tensor: a difference no larger is
rounding, one far above it is not.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from _args import add_workdir, make_workdir, number, parse_dims  # examples/_args.py: the settings they share
from _skip import skip  # examples/_skip.py: exit 77 (skipped) when this check cannot run here

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel
except ImportError as exc:  # pragma: no cover - the message is the point
    skip(f"this check runs PyTorch's DistributedDataParallel ({exc}); install it with `pip install torch`. "
         "byol-ref does not need it; see docs/verifying.md.", __doc__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.diff import diff_traces, format_report  # noqa: E402
from byol_ref.interchange import from_torch_layout, to_torch_layout, torch_mapping  # noqa: E402
from byol_ref.model import network_plan, param_shapes  # noqa: E402
from byol_ref.presets import get_preset  # noqa: E402
from byol_ref.trace import make_inputs, save_trace, trace_inputs  # noqa: E402

SIZES = dict(encoder_dim=6, hidden_size=8, projection_dim=4, predictor_dim=5, projector_hidden_dim=7)
LR, MOMENTUM, TAU = 0.1, 0.9, 0.99  # the defaults of --lr, --momentum and --tau-base


def _sequential(cfg, role, part):
    """An ``nn.Sequential`` laid out as byol-ref's ``network_plan``: module i is step i, the
    positions byol-ref's shipped mappings name."""
    shapes = param_shapes(cfg, role)
    layers = []
    for kind, name in network_plan(cfg, role)[part]:
        if kind == "linear":
            d, h = shapes[f"{name}.weight"]  # byol-ref's (in, out)
            layers.append(nn.Linear(d, h, bias=f"{name}.bias" in shapes))
        elif kind == "batch_norm":
            layers.append(nn.BatchNorm1d(shapes[f"{name}.gamma"][0], eps=cfg.bn_eps, momentum=1 - cfg.bn_decay))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _head(cfg, role, part):
    head = nn.Module()
    head.layers = _sequential(cfg, role, part)
    return head


class Byol(nn.Module):
    """Online and target networks under lightly's module names (``backbone``,
    ``projection_head.layers``, ...), so that byol-ref's shipped ``lightly`` mapping
    (``byol_ref.interchange``) moves the weights in and every recorded tensor out."""

    def __init__(self, cfg, inputs):
        super().__init__()
        self.backbone = _sequential(cfg, "online", "encoder")
        self.projection_head = _head(cfg, "online", "projector")
        self.prediction_head = _head(cfg, "online", "predictor")
        self.backbone_momentum = _sequential(cfg, "target", "encoder")
        self.projection_head_momentum = _head(cfg, "target", "projector")
        self.mapping = torch_mapping("lightly", cfg)
        nets = {k: v for k, v in inputs.items() if k.startswith(("online.", "target."))}
        self.load_state_dict({t: torch.from_numpy(a) for t, a in to_torch_layout(nets, self.mapping).items()})
        for target in (self.backbone_momentum, self.projection_head_momentum):
            target.requires_grad_(False)
        self.views = cfg.views

    def forward(self, view1, view2):
        """byol-pytorch's loss on this replica's rows: both views as one batch (or one pass per
        view with ``views="separate"``), 2 - 2 cos, the two directions summed, the mean over the rows."""
        def online(x):
            return self.prediction_head.layers(self.projection_head.layers(self.backbone(x)))

        def target(x):
            with torch.no_grad():
                return self.projection_head_momentum.layers(self.backbone_momentum(x))

        n = view1.shape[0]
        if self.views == "concat":
            x = torch.cat([view1, view2])
            p, z = online(x), target(x)
            p1, p2, z1, z2 = p[:n], p[n:], z[:n], z[n:]
        else:
            p1, p2 = online(view1), online(view2)
            z1, z2 = target(view1), target(view2)

        def one(p, z):
            return 2 - 2 * (F.normalize(p, dim=-1, eps=1e-12) * F.normalize(z, dim=-1, eps=1e-12)).sum(-1)

        return (one(p1, z2) + one(p2, z1)).mean()


def _record(model, out, pre):
    """Params, buffers and online gradients under byol-ref's trace names, read back through the
    same mapping (weights to (in, out), counts to int64)."""
    state = {t: v.detach().numpy().copy() for t, v in model.state_dict().items()}
    out.update({pre + name: a for name, a in from_torch_layout(state, model.mapping).items()})
    grads = {t: p.grad.detach().numpy().copy() for t, p in model.named_parameters() if p.grad is not None}
    out.update({pre + name.replace(".param.", ".grad.", 1): a
                for name, a in from_torch_layout(grads, model.mapping, strict=False).items()})


def _ema(model, tau):
    with torch.no_grad():
        for online, target in ((model.backbone, model.backbone_momentum),
                               (model.projection_head, model.projection_head_momentum)):
            for o, t in zip(online.parameters(), target.parameters()):
                t.mul_(tau).add_(o, alpha=1 - tau)


def _views(inputs, step, rows):
    return tuple(torch.from_numpy(inputs[f"step{step}.input.view{v}"][rows]) for v in (1, 2))


def _ddp_worker(rank, world, inputs, cfg, steps, init_file, out_file, hyper):
    lr, momentum, tau = hyper  # passed in: a spawned process re-imports this module with its defaults
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = DistributedDataParallel(Byol(cfg, inputs))  # broadcast_buffers=True: rank 0's buffers win
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    b = inputs["step0.input.view1"].shape[0] // world
    out = {}
    for k in range(steps):
        opt.zero_grad()
        loss = model(*_views(inputs, k, slice(rank * b, (rank + 1) * b)))
        loss.backward()  # DDP all-reduces the mean of the replicas' gradients
        opt.step()
        _ema(model.module, tau)
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            out[f"step{k}.loss.total"] = (total / world).numpy()
            _record(model.module, out, f"step{k}.")
    if rank == 0:  # whole or not at all: a replica that aborts makes spawn kill the others, this one too
        np.savez(out_file + ".part.npz", **out)
        os.replace(out_file + ".part.npz", out_file)
    dist.barrier()  # no replica tears gloo down while another still talks to it (that aborted one at times)
    dist.destroy_process_group()


def run_ddp(inputs, cfg, shards, steps, workdir, hyper=(LR, MOMENTUM, TAU)):
    out_file = os.path.join(workdir, "ddp.npz")
    if os.path.exists(out_file):  # (a run before, in the same --workdir)
        os.remove(out_file)
    try:
        mp.spawn(_ddp_worker, args=(shards, inputs, cfg, steps, os.path.join(workdir, "rendezvous"), out_file,
                                    hyper), nprocs=shards, join=True)
    except mp.ProcessExitedException as exc:
        # gloo still aborts a replica now and then as the group is torn down ("terminate called without an
        # active exception"), after every step. Rank 0 writes its record once every step's all-reduce is done,
        # so a record there is whole; without one, the run itself failed.
        if not os.path.exists(out_file):
            raise
        print(f"note: a DDP replica ended abnormally after the last step ({exc}); rank 0's record of every step "
              "was written before it, and is compared", file=sys.stderr)
    with np.load(out_file, allow_pickle=False) as f:
        return dict(f)


def _rounding_reach(rep, record, inputs, preset, model_extra) -> str:
    """How far the first differing tensor lies from byol-ref's, next to how far byol-ref's own moves
    when its initial weights are moved by 1 part in 1e15: what rounding alone can do at this point."""
    name = rep.first_divergence
    if name is None or name not in record:
        return f"first divergence {name}: not a recorded tensor, so no rounding measure"
    ref = trace_inputs(inputs, preset, model_extra=model_extra).arrays
    rng = np.random.default_rng(0)
    nudged = {k: v * (1 + 1e-15 * rng.choice([-1.0, 1.0], size=v.shape)) if ".param." in k and v.dtype.kind == "f"
              else v for k, v in inputs.items()}
    moved = trace_inputs(nudged, preset, model_extra=model_extra).arrays
    apart = float(np.max(np.abs(np.asarray(record[name], np.float64) - ref[name])))
    itself = float(np.max(np.abs(moved[name] - ref[name])))
    return (f"rounding reach at {name}: the record is {apart:.3g} from byol-ref; byol-ref moves {itself:.3g} from "
            "itself when its initial weights move by 1 part in 1e15 (a difference no larger is rounding)")


def run_accumulation(inputs, cfg, shards, steps, hyper=(LR, MOMENTUM, TAU)):
    lr, momentum, tau = hyper
    torch.set_default_dtype(torch.float64)
    model = Byol(cfg, inputs)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    b = inputs["step0.input.view1"].shape[0] // shards
    out = {}
    for k in range(steps):
        opt.zero_grad()
        total = 0.0
        for s in range(shards):  # each micro-batch's batch norm sees only its rows
            loss = model(*_views(inputs, k, slice(s * b, (s + 1) * b))) / shards
            loss.backward()
            total += loss.item()
        opt.step()
        _ema(model, tau)
        out[f"step{k}.loss.total"] = np.asarray(total)
        _record(model, out, f"step{k}.")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=number(int, 1), default=2, help="replicas (and micro-batches)")
    ap.add_argument("--rows", type=number(int, 1), default=3,
                    help="rows of each view per replica (1 with --views concat)")
    ap.add_argument("--steps", type=number(int, 1), default=3)
    ap.add_argument("--views", choices=["concat", "separate", "both"], default="both",
                    help="byol-pytorch's concatenated views, one pass per view, or both in turn")
    ap.add_argument("--lr", type=number(float, 0), default=LR, help=f"SGD lr (default {LR})")
    ap.add_argument("--momentum", type=number(float, 0, 1, hi_open=True), default=MOMENTUM,
                    help=f"SGD momentum (default {MOMENTUM})")
    ap.add_argument("--tau-base", type=number(float, 0, 1), default=TAU, help=f"the constant EMA tau (default {TAU})")
    ap.add_argument("--dims", default="{encoder_dim},{hidden_size},{projection_dim},{predictor_dim},"
                    "{projector_hidden_dim}".format(**SIZES),
                    help="D,H,P,Q,PH: input, encoder width, projection, predictor hidden, projector hidden "
                         "(default {encoder_dim},{hidden_size},{projection_dim},{predictor_dim},"
                         "{projector_hidden_dim})".format(**SIZES))
    ap.add_argument("--seed", type=number(int, 0), default=0, help="seed of byol-ref's params and views (default 0)")
    ap.add_argument("--rtol", type=number(float, 0), default=1e-9, help="relative tolerance of the diff (default 1e-9)")
    ap.add_argument("--atol", type=number(float, 0), default=1e-10,
                    help="absolute tolerance of the diff (default 1e-10; raise it with --lr on 2-row shards, where "
                         "a batch norm's variance below its eps amplifies rounding: module docstring)")
    add_workdir(ap, "keep the traces here")
    args = ap.parse_args(argv)
    make_workdir(ap, args.workdir)
    sizes = dict(zip(SIZES, parse_dims(ap, args.dims, "D,H,P,Q,PH")))
    if args.shards < 2:
        ap.error(f"--shards must be 2 or more, got {args.shards}: one replica shards nothing, and the check that "
                 "the sharded conventions differ from the unsharded one could not hold")
    if args.rows < (1 if args.views == "concat" else 2):
        ap.error(f"--rows must be 2 or more with --views {args.views}, got {args.rows}: batch norm takes statistics "
                 "over 2 rows or more, and with separate views a replica's batch norm sees its rows of one view "
                 "(with --views concat, 1 row of each view makes 2)")
    hyper = (args.lr, args.momentum, args.tau_base)
    ok = True
    for views in (["concat", "separate"] if args.views == "both" else [args.views]):
        preset = get_preset("byol-pytorch", tau_base=args.tau_base, optimizer="sgd", lr=args.lr,
                            momentum=args.momentum, views=views)
        inputs = make_inputs(preset, **sizes, batch=args.shards * args.rows, steps=args.steps, seed=args.seed,
                             model_extra=dict(bn_shards=args.shards))
        cfg = preset.config(**sizes)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = os.path.join(args.workdir or tmp, views)
            os.makedirs(workdir, exist_ok=True)
            theirs = {"DDP without SyncBN": (run_ddp(inputs, cfg, args.shards, args.steps, workdir, hyper), "first"),
                      "gradient accumulation": (run_accumulation(inputs, cfg, args.shards, args.steps, hyper),
                                                "sequential")}
            refs = {running: trace_inputs(inputs, preset, model_extra=dict(bn_shards=args.shards,
                                                                            bn_shard_running=running))
                    for running in ("first", "sequential")}
            refs["unsharded"] = trace_inputs(inputs, preset)
            for running, ref in refs.items():
                save_trace(os.path.join(workdir, f"byol-ref-{running}.npz"), ref)
            for label, (record, running) in theirs.items():
                rep = diff_traces(record, refs[running], a_label=f"{label} ({views})",
                                  b_label=f"byol-ref bn_shards={args.shards} {running}", rtol=args.rtol,
                                  atol=args.atol, subset=True)  # every recorded tensor compared
                print(format_report(rep, max_rows=5))
                if not rep.ok:
                    print(_rounding_reach(rep, record, inputs, preset, dict(bn_shards=args.shards,
                                                                            bn_shard_running=running)))
                common = sum(t.status not in ("only_a", "only_b") for t in rep.tensors)
                agrees = rep.ok
                # The check must be able to fail: the other conventions differ from this record.
                others = {other: diff_traces(record, refs[other], rtol=1e-9, atol=1e-10, subset=True)
                          for other in refs if other != running}
                print(f"{label}, views={views}: {common} tensors {'agree' if agrees else 'DIFFER'} with byol-ref "
                      f"(bn_shards={args.shards}, bn_shard_running={running!r}); first divergence from " +
                      ", ".join(f"{o}: {r.first_divergence}" for o, r in others.items()) + "\n")
                ok &= agrees and not any(r.ok for r in others.values())
    print("DDP and gradient accumulation agree with byol-ref's bn_shards" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
