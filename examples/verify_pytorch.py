"""Verify one PyTorch BYOL training step against byol-ref, end to end (docs/verifying.md).

    pip install torch            # development only; byol-ref itself never needs it
    python examples/verify_pytorch.py [--bug] [--workdir DIR]

The PyTorch side is a small model laid out like lucidrains/byol-pytorch 0.9 (``online_encoder.net``,
``online_encoder.projector``, ``online_predictor``, ``target_encoder``; both views concatenated through
batch norm; loss 2 - 2 cos summed over the two directions; Adam 3e-4; EMA 0.99 after the step). It

1. exports the weights (its ``state_dict``, with ``np.savez``) and the two views;
2. runs one step and writes what it saw as a trace: layer outputs per view, the loss, the gradient of
   the prediction and of every parameter, Adam's state, the updated online and target params, all
   under byol-ref's trace names (docs/trace-format.md), weights left in torch's (out, in) layout;
3. runs ``byol-ref trace`` on the exported weights under the ``byol-pytorch`` preset;
4. runs ``byol-ref diff`` and prints the report (exit status 0 when everything agrees, non-zero otherwise,
   77 (skipped) without torch).

``--bug`` plants a common mistake in the PyTorch step (averaging the two loss directions instead of
summing them): the diff then names ``step0.loss.total`` as the first divergence.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the message is the point
    # Written out rather than imported from examples/_skip.py, so that a copy of this template runs anywhere.
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    print("skipped: this example needs PyTorch (pip install torch): it compares a PyTorch BYOL step with byol-ref. "
          "byol-ref itself does not need torch; see docs/verifying.md for the steps.", file=sys.stderr)
    sys.exit(77)  # a skip (automake, meson), never 0: a check that did not run has not passed

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.cli import main as byol_ref_cli  # noqa: E402
from byol_ref.interchange import torch_mapping  # noqa: E402
from byol_ref.presets import get_preset  # noqa: E402

torch.set_default_dtype(torch.float64)
N, D, H, PH, P = 8, 10, 16, 12, 6  # batch, input, encoder width, projector/predictor hidden, projection


def mlp(dim, out, hidden):  # byol-pytorch's MLP
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))


class Wrapper(nn.Module):  # byol-pytorch's NetWrapper, representation = net output (hidden_layer=-1)
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.projector = mlp(H, P, PH)

    def forward(self, x):
        return self.projector(self.net(x))


class BYOL(nn.Module):
    def __init__(self):
        super().__init__()
        net = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, H), nn.BatchNorm1d(H),
                            nn.ReLU())
        self.online_encoder = Wrapper(net)
        self.online_predictor = mlp(P, P, PH)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)


def loss_fn(x, y):
    return 2 - 2 * (F.normalize(x, dim=-1) * F.normalize(y, dim=-1)).sum(-1)


def torch_step(model, view1, view2, bug):
    """One byol-pytorch-style step; returns the trace it recorded (byol-ref names, torch layout)."""
    trace = {}
    mapping = torch_mapping("byol-pytorch", get_preset("byol-pytorch").config(encoder_dim=1))
    ref_of = {t: r for r, t in mapping.items()}  # torch name -> "online.param.encoder.fc1.weight" etc.
    layer_of = {}  # module -> (net, byol-ref layer name)
    for t_name, module in model.named_modules():
        key = f"{t_name}.weight" if hasattr(module, "weight") else None
        for r, t in mapping.items():
            if key is not None and t == key:
                net, _, rest = r.partition(".param.")
                layer_of[module] = (net, rest.rsplit(".", 1)[0])
    for seq in (model.online_encoder.net, model.online_encoder.projector, model.online_predictor,
                model.target_encoder.net, model.target_encoder.projector):
        for i, m in enumerate(seq):  # ReLUs: name them after the layer before (fc1 -> relu1)
            if isinstance(m, nn.ReLU):
                net, prev = layer_of[seq[i - 1]]  # "encoder.norm1" -> "encoder.relu1"
                layer_of[m] = (net, prev.replace("norm", "relu"))
    outs = {}

    def hook(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
        outs[layer_of[module]] = output

    handles = [m.register_forward_hook(hook) for m in layer_of]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    x = torch.cat([view1, view2])  # byol-pytorch 0.9: both views through batch norm together
    p = model.online_predictor(model.online_encoder(x))
    p.retain_grad()
    with torch.no_grad():
        z = model.target_encoder(x)
    l1, l2 = loss_fn(p[:N], z[N:]), loss_fn(p[N:], z[:N])
    loss = (l1 + l2).mean() if not bug else ((l1 + l2) / 2).mean()
    trace["step0.loss.per_sample"] = torch.stack([l1, l2]).detach().numpy()
    trace["step0.loss.total"] = loss.detach().numpy()
    loss.backward()
    for (net, layer), t in outs.items():
        for v, rows in ((1, slice(0, N)), (2, slice(N, 2 * N))):
            trace[f"step0.{net}.view{v}.{layer}.out"] = t[rows].detach().numpy()
            if net == "online":
                trace[f"step0.online.view{v}.{layer}.dout"] = t.grad[rows].numpy()
    trace["step0.online.view1.p.grad"], trace["step0.online.view2.p.grad"] = p.grad[:N].numpy(), p.grad[N:].numpy()
    named = dict(model.named_parameters())
    for t_name, prm in named.items():
        if prm.requires_grad:
            trace[f"step0.online.grad.{ref_of[t_name].split('.param.')[1]}"] = prm.grad.numpy().copy()
    opt.step()
    for t_name, prm in named.items():
        if prm.requires_grad:
            key = ref_of[t_name].split(".param.")[1]
            trace[f"step0.opt.mu.{key}"] = opt.state[prm]["exp_avg"].numpy().copy()
            trace[f"step0.opt.nu.{key}"] = opt.state[prm]["exp_avg_sq"].numpy().copy()
            trace[f"step0.online.param.{key}"] = prm.detach().numpy().copy()
    with torch.no_grad():  # byol-pytorch update_moving_average, after opt.step()
        for o, t in zip(model.online_encoder.parameters(), model.target_encoder.parameters()):
            t.copy_(0.99 * t + 0.01 * o)
    for t_name, buf in model.state_dict().items():
        r = ref_of.get(t_name)
        if r is not None and ".buffer." in r:
            net, _, key = r.partition(".buffer.")
            trace[f"step0.{net}.buffer.{key}"] = buf.numpy().copy()
    for t_name, prm in named.items():
        if t_name.startswith("target_encoder."):
            trace[f"step0.target.param.{ref_of[t_name].split('.param.')[1]}"] = prm.detach().numpy().copy()
    for h in handles:
        h.remove()
    return trace


def run(workdir, bug=False) -> int:
    torch.manual_seed(0)
    model = BYOL()
    gen = torch.Generator().manual_seed(1)
    view1, view2 = torch.randn(N, D, generator=gen), torch.randn(N, D, generator=gen)

    # 1. export weights (state_dict as plain arrays: no pickle) and the views
    weights = os.path.join(workdir, "weights.npz")
    np.savez(weights, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
             view1=view1.numpy(), view2=view2.numpy())
    # 2. the PyTorch step, traced under byol-ref's names (weights stay (out, in))
    mine = os.path.join(workdir, "torch_trace.npz")
    np.savez(mine, **torch_step(model, view1, view2, bug))
    # 3. byol-ref's trace of the same step from the same weights
    ref = os.path.join(workdir, "byol_ref_trace.npz")
    status = byol_ref_cli(["trace", "--inputs", weights, "--layout", "torch", "--mapping", "byol-pytorch",
                           "--preset", "byol-pytorch", "--steps", "1", "--overwrite", "--out", ref])
    if status != 0:  # (a diff against a trace left from an earlier run would compare the wrong step)
        print(f"\nbyol-ref trace failed (exit status {status}); see its message above.")
        return 2
    # 4. compare: only what the PyTorch side recorded; its 2-D weights are (out, in)
    return byol_ref_cli(["diff", mine, ref, "--subset", "--transpose-weights", "a", "--rtol", "1e-9",
                         "--atol", "1e-10"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bug", action="store_true", help="plant a bug (mean instead of sum of the two directions)")
    ap.add_argument("--workdir", type=os.path.expanduser, default=None,  # (~ after "=" is the script's to read)
                    help="where to write the files (default: a temporary folder)")
    args = ap.parse_args()
    if args.workdir:
        try:
            os.makedirs(args.workdir, exist_ok=True)
        except OSError as exc:
            ap.error(f"--workdir {args.workdir}: cannot make the folder: {exc.strerror or exc}")
        sys.exit(run(args.workdir, args.bug))
    with tempfile.TemporaryDirectory() as d:
        sys.exit(run(d, args.bug))
