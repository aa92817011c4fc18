"""Golden vectors for byol-ref, from an independent PyTorch implementation (autodiff, float64).

    /path/to/python-with-torch scripts/make_golden.py               # writes tests/golden/<preset>.npz
    /path/to/python-with-torch scripts/make_golden.py --out DIR --presets lightly

This script does NOT import byol_ref. It re-implements an MLP BYOL training step from the
conventions each implementation uses (BYOL_FACTS sections a, d, g), with PyTorch modules and
autograd: ``F.linear``, ``F.batch_norm`` (the real torch running statistics), a hand-written
Haiku-style batch norm with a zero-debiased EMA kept as hidden state plus counter, ``F.layer_norm``,
``F.group_norm`` and a weight-standardised Linear (the ``deepmind-gn-ws`` variant: BYOL without batch
statistics, Richemond et al. 2020),
``F.normalize`` / ``F.cosine_similarity``, ``torch.optim.Adam`` / ``AdamW``, and LARS written from
the deepmind and solo-learn/lightly formulas. Weights live in PyTorch's (out, in) layout and are
transposed only when written, so the golden files also check byol-ref's layout handling.

Each file is a trace (docs/trace-format.md): ``init.*``, then per step the schedules, the views,
every layer output per view, batch statistics, normalised vectors, losses, activation gradients
(``retain_grad``), parameter gradients, running buffers, optimiser state, updated online and target
params; plus ``__order__`` and ``__meta__`` (the conventions used, in byol-ref field names, so the
test can check byol-ref's presets say the same). Development-only: torch is never a runtime or
test requirement of byol-ref.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    sys.exit(f"make_golden.py: PyTorch is not installed for {sys.executable}; this development tool needs it "
             "(byol-ref and its tests never do): run it with a Python that has torch, as its docstring shows")

torch.set_default_dtype(torch.float64)
# One thread: a reduction's rounding depends on how many threads split it, and Adam turns the
# rounding noise of a zero gradient (a bias before batch norm) into an update of ~1e-12, so the
# goldens came out otherwise under OMP_NUM_THREADS=1 than on two threads.
torch.set_num_threads(1)

# Sizes: batch N, input D, encoder H, projector hidden PH, projection P, predictor hidden Q. The widths
# differ from each other (a transposed weight cannot go unnoticed), and the normalised ones (H, PH, Q)
# are even, for the 2 groups of the group-norm variant.
N, D, H, PH, P, Q = 5, 5, 6, 8, 3, 4
STEPS, TOTAL_STEPS = 4, 6  # W = 2 (WARMUP_STEPS): steps 2 and 3 are in the cosine phase, past the warm-up

# The generator's own reading of each implementation (BYOL_FACTS d), in byol-ref's field names.
CONVENTIONS = {
    "deepmind": dict(
        layout="paper", norm="batch", hidden_bias=True, head_bias=False, init="haiku", target_init="independent",
        bn_eps=1e-5, bn_decay=0.9, bn_running="haiku", bn_var="one_pass", views="separate",
        norm_eps_mode="sq_norm", norm_eps=1e-12, loss_form="mse", symmetric=True, sym_reduce="sum",
        optimizer="lars", lr=0.2, lr_batch_scale=256, weight_decay=1.5e-6, momentum=0.9, lars_eta=1e-3,
        lars_trust_ratio="norm_of_sum", lars_eps=0.0, lars_clip_lr=False, lars_only_with_wd=False, exclude="name",
        warmup_start=0.0,
        warmup_offset=0, warmup_denominator="W", cosine_denominator="K-W",
        lr_rounding="float32",
        final_lr_ratio=0.0, tau_base=0.996, tau_schedule="cosine", tau_denominator="K",
        ema_when="post_step", ema_form="increment", ema_scope="params"),
    "byol-pytorch": dict(
        layout="paper", norm="batch", hidden_bias=True, head_bias=True, init="torch", target_init="copy",
        bn_eps=1e-5, bn_decay=0.9, bn_running="torch", bn_var="two_pass", views="concat",
        norm_eps_mode="norm", norm_eps=1e-12, loss_form="2-2cos", symmetric=True, sym_reduce="sum",
        optimizer="adam", lr=3e-4, lr_batch_scale=0, weight_decay=0.0, exclude="none", warmup_start=0.0,
        warmup_offset=0, warmup_denominator="W", cosine_denominator="K-W", lr_rounding="exact",
        final_lr_ratio=1.0, tau_base=0.99, tau_schedule="constant", tau_denominator="K",
        ema_when="post_step", ema_form="weighted", ema_scope="params"),
    "lightly": dict(
        layout="paper", norm="batch", hidden_bias=False, head_bias=True, init="torch", target_init="copy_encoder",
        bn_eps=1e-5, bn_decay=0.9, bn_running="torch", bn_var="two_pass", views="separate",
        norm_eps_mode="norm", norm_eps=1e-8, loss_form="2-2cos", symmetric=True, sym_reduce="sum",
        optimizer="lars", lr=0.45, lr_batch_scale=256, weight_decay=1e-6, momentum=0.9, lars_eta=1e-3,
        lars_trust_ratio="sum_of_norms", lars_eps=1e-8, lars_clip_lr=False, lars_only_with_wd=True, exclude="name",
        warmup_start=0.0,
        warmup_offset=1, warmup_denominator="W", cosine_denominator="K-W-1", lr_rounding="exact",
        final_lr_ratio=0.001, tau_base=0.99, tau_schedule="cosine", tau_denominator="K-1",
        ema_when="pre_forward", ema_form="weighted", ema_scope="params"),
    "solo-learn": dict(
        layout="paper", norm="batch", hidden_bias=True, head_bias=True, init="torch", target_init="copy",
        bn_eps=1e-5, bn_decay=0.9, bn_running="torch", bn_var="two_pass", views="separate",
        norm_eps_mode="norm", norm_eps=1e-8, loss_form="2-2cos", symmetric=True, sym_reduce="sum",
        optimizer="lars", lr=1.0, lr_batch_scale=256, weight_decay=1e-5, momentum=0.9, lars_eta=0.02,
        lars_trust_ratio="sum_of_norms", lars_eps=1e-8, lars_clip_lr=True, lars_only_with_wd=False, exclude="ndim",
        warmup_start=3e-5,
        warmup_offset=0, warmup_denominator="W-1", cosine_denominator="K-W", lr_rounding="exact",
        final_lr_ratio=0.0, tau_base=0.99, tau_schedule="cosine", tau_denominator="K",
        ema_when="post_step", ema_form="weighted", ema_scope="params"),
    "edifice": dict(
        layout="edifice", norm="layer", hidden_bias=True, head_bias=True, init="glorot", target_init="copy",
        ln_eps=1e-5, views="separate", norm_eps_mode="add", norm_eps=1e-8, loss_form="2-2cos", symmetric=False,
        optimizer="adamw", lr=2e-3, lr_batch_scale=0, weight_decay=1e-6, exclude="name", warmup_start=0.0,
        warmup_offset=0, warmup_denominator="W", cosine_denominator="K-W", lr_rounding="exact",
        final_lr_ratio=1.0, tau_base=0.996, tau_schedule="constant", tau_denominator="K",
        ema_when="post_step", ema_form="weighted", ema_scope="params"),
}
# Variants: a preset's conventions with some changed, plus model fields no preset has.
CONVENTIONS["deepmind-gn-ws"] = dict(CONVENTIONS["deepmind"], norm="group", ln_eps=1e-5)
VARIANTS = {"deepmind-gn-ws": dict(preset="deepmind", preset_overrides=dict(norm="group", ln_eps=1e-5),
                                   model_extra=dict(norm_groups=2, weight_std=True, ws_eps=1e-5))}
WARMUP_STEPS = {"deepmind": 2, "byol-pytorch": 0, "lightly": 2, "solo-learn": 2, "edifice": 0, "deepmind-gn-ws": 2}


# ----------------------------------------------------------------------------- structure


def plan(c, role):
    """[(part, [(kind, name)])] in execution order (byol-ref's documented layer names)."""
    if c["layout"] == "paper":
        def blk(part, i):
            norm = {"batch": "bn", "layer": "ln", "group": "gn"}[c["norm"]]
            return [("linear", f"{part}.fc{i}"), (norm, f"{part}.norm{i}"), ("relu", f"{part}.relu{i}")]
        parts = [("encoder", blk("encoder", 1) + blk("encoder", 2)),
                 ("projector", blk("projector", 1) + [("linear", "projector.fc2")]),
                 ("predictor", blk("predictor", 1) + [("linear", "predictor.fc2")])]
    else:  # Edifice: Linear -> ReLU -> LayerNorm; predictor without norm
        parts = [("encoder", [("linear", "encoder.fc1"), ("relu", "encoder.relu1"), ("ln", "encoder.norm1"),
                              ("linear", "encoder.fc2"), ("relu", "encoder.relu2")]),
                 ("projector", [("linear", "projector.fc1"), ("relu", "projector.relu1"), ("ln", "projector.norm1"),
                                ("linear", "projector.fc2")]),
                 ("predictor", [("linear", "predictor.fc1"), ("relu", "predictor.relu1"),
                                ("linear", "predictor.fc2")])]
    return parts if role == "online" else parts[:2]


WIDTH = {"encoder.fc1": (D, H), "encoder.fc2": (H, H), "projector.fc1": (H, PH), "projector.fc2": (PH, P),
         "predictor.fc1": (P, Q), "predictor.fc2": (Q, P)}


def init_params(c, role, gen):
    """Torch-layout params {byol-ref name: tensor}; non-trivial gamma, beta and biases."""
    params = {}
    width = D
    for part, steps in plan(c, role):
        for kind, name in steps:
            if kind == "linear":
                fan_in, fan_out = WIDTH[name]
                lin = torch.nn.Linear(fan_in, fan_out)  # kaiming_uniform(a=sqrt 5): U(+-1/sqrt(fan_in))
                w = lin.weight.detach().clone()
                if c["init"] == "haiku":
                    std = 1 / math.sqrt(fan_in)
                    torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
                elif c["init"] == "glorot":  # Axon.dense's glorot_uniform kernel
                    torch.nn.init.xavier_uniform_(w)
                params[f"{name}.weight"] = w
                has_bias = c["head_bias"] if (part != "encoder" and name.endswith("fc2")) else c["hidden_bias"]
                if has_bias:
                    params[f"{name}.bias"] = lin.bias.detach().clone() + 0.1 * torch.randn(fan_out, generator=gen)
                width = fan_out
            elif kind in ("bn", "ln", "gn"):
                params[f"{name}.gamma"] = 1 + 0.2 * torch.randn(width, generator=gen)
                params[f"{name}.beta"] = 0.2 * torch.randn(width, generator=gen)
    return params


# ----------------------------------------------------------------------------- forward


class BNState:
    """Running statistics of one batch-norm layer: torch's (mean, var, num_batches_tracked), or
    Haiku's hidden EMA (h_mean, h_var, counter t) with the zero-debiased value on top."""

    def __init__(self, width):
        self.mean = torch.zeros(width)
        self.var = torch.ones(width)
        self.count = 0
        self.h_mean = torch.zeros(width)  # Haiku hidden state, h_0 = 0
        self.h_var = torch.zeros(width)


def batch_norm(x, gamma, beta, st: BNState, c, rec, key):
    if c["bn_running"] == "torch":
        # the real torch kernel: biased variance to normalise, unbiased into the running var
        out = F.batch_norm(x, st.mean, st.var, gamma, beta, training=True, momentum=1 - c["bn_decay"],
                           eps=c["bn_eps"])
        st.count += 1
        mean, var = x.detach().mean(0), x.detach().var(0, unbiased=False)
    else:
        mean = x.mean(0)
        if c["bn_var"] == "one_pass":
            var = (x * x).mean(0) - mean * mean  # Haiku: E[x^2] - mean^2
        else:
            var = ((x - mean) ** 2).mean(0)
        out = (x - mean) * torch.rsqrt(var + c["bn_eps"]) * gamma + beta
        mean, var = mean.detach(), var.detach()
        d = c["bn_decay"]
        st.count += 1
        st.h_mean = d * st.h_mean + (1 - d) * mean
        st.h_var = d * st.h_var + (1 - d) * var
        st.mean = st.h_mean / (1 - d ** st.count)
        st.var = st.h_var / (1 - d ** st.count)
    rec(key + ".batch_mean", mean)
    rec(key + ".batch_var", var)
    return out


def run_net(c, role, params, bn_states, x, group, rec, keep):
    """One pass of a network over x (one view, or both views concatenated); returns p (online) or z."""
    for part, steps in plan(c, role):
        for kind, name in steps:
            if kind == "linear":
                w = params[f"{name}.weight"]  # (out, in)
                if c.get("weight_std") and not (part != "encoder" and name.endswith("fc2")):
                    # weight standardisation: each output unit's incoming weights to mean 0, variance 1
                    mean = w.mean(dim=1, keepdim=True)
                    var = w.var(dim=1, unbiased=False, keepdim=True)
                    w = (w - mean) / torch.sqrt(var + c["ws_eps"])
                x = F.linear(x, w, params.get(f"{name}.bias"))
            elif kind == "gn":
                x = F.group_norm(x, c["norm_groups"], params[f"{name}.gamma"], params[f"{name}.beta"],
                                 eps=c["ln_eps"])
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "ln":
                x = F.layer_norm(x, (x.shape[-1],), params[f"{name}.gamma"], params[f"{name}.beta"], eps=c["ln_eps"])
            else:
                x = batch_norm(x, params[f"{name}.gamma"], params[f"{name}.beta"], bn_states[name], c,
                               rec, f"{role}.{group}.{name}")
            if x.requires_grad:
                x.retain_grad()
            keep.append((role, name, x))
    return x


def normalize(x, c):
    if c["norm_eps_mode"] == "sq_norm":  # deepmind helpers.l2_normalize
        return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=c["norm_eps"]))
    if c["norm_eps_mode"] == "norm":  # F.normalize
        return F.normalize(x, dim=-1, eps=c["norm_eps"])
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + c["norm_eps"])  # Edifice


def normed_pair_loss(n_p, n_z, c):
    """The loss of one pair from its normalised vectors (what the loss form does after n(.))."""
    if c["loss_form"] == "mse":
        return ((n_p - n_z) ** 2).sum(-1)
    cos = (n_p * n_z).sum(-1)
    return 2 - 2 * cos if c["loss_form"] == "2-2cos" else -cos


def pair_loss(p, z, c):
    if c["norm_eps_mode"] == "norm" and c["norm_eps"] == 1e-8:
        cos = F.cosine_similarity(p, z, dim=-1, eps=1e-8)  # lightly / solo-learn
    else:
        cos = (normalize(p, c) * normalize(z, c)).sum(-1)
    if c["loss_form"] == "mse":
        return ((normalize(p, c) - normalize(z, c)) ** 2).sum(-1)
    return 2 - 2 * cos if c["loss_form"] == "2-2cos" else -cos


# ----------------------------------------------------------------------------- schedules, optimisers


def lr_at(k, c, K, W, B):
    peak = c["lr"] * B / (c["lr_batch_scale"] or B)
    final = c["final_lr_ratio"] * peak
    f32 = c["lr_rounding"] == "float32" and W > 0  # deepmind: a float32 schedule once it has a warm-up
    if k < W:  # solo-learn's scheduler adds (peak - start) / (W - 1) per warm-up step
        per = W if c["warmup_denominator"] == "W" else max(W - 1, 1)
        if f32:  # global_step.astype(float32) / W * scaled_lr
            ratio = torch.tensor(k + c["warmup_offset"], dtype=torch.float32) / per
            return c["warmup_start"] + float(ratio * torch.tensor(peak - c["warmup_start"], dtype=torch.float32))
        return c["warmup_start"] + (peak - c["warmup_start"]) * (k + c["warmup_offset"]) / per
    span = K - W if c["cosine_denominator"] == "K-W" else K - W - 1  # lightly: cosine_schedule's max_steps - 1
    value = final if span <= 0 else final + (peak - final) * 0.5 * (1 + math.cos(math.pi * min(k - W, span) / span))
    return float(torch.tensor(value, dtype=torch.float32)) if f32 else value


def tau_at(k, c, K):
    if c["tau_schedule"] == "constant":
        return c["tau_base"]
    n = K if c["tau_denominator"] == "K" else K - 1
    return 1 - (1 - c["tau_base"]) * (math.cos(math.pi * min(k, n) / n) + 1) / 2


def excluded(name, p, c):
    if c["exclude"] == "none":
        return False
    if c["exclude"] == "ndim":
        return p.ndim == 1
    return name.endswith(".bias") or "norm" in name


@torch.no_grad()
def lars_step(params, grads, mom, lr, c):
    for name, p in params.items():
        g = grads[name]
        skip = excluded(name, p, c)
        wd = 0.0 if skip else c["weight_decay"]
        if c["lars_only_with_wd"] and wd == 0:  # lightly's LARS.step: `if weight_decay != 0` gates it all
            skip = True
        if c["lars_trust_ratio"] == "norm_of_sum":  # deepmind: add_weight_decay -> scale_by_lars
            u = g + wd * p
            if not skip:
                pn, un = torch.linalg.norm(p), torch.linalg.norm(u)
                r = c["lars_eta"] * pn / (un + c["lars_eps"]) if (pn > 0 and un > 0) else 1.0
                u = u * r
        else:  # solo-learn / lightly LARS.step
            u = g
            if not skip:
                pn, gn = torch.linalg.norm(p), torch.linalg.norm(g)
                if pn != 0 and gn != 0:
                    r = c["lars_eta"] * pn / (gn + pn * wd + c["lars_eps"])
                    if c["lars_clip_lr"]:
                        r = min(r / lr, 1)
                    u = (g + wd * p) * r
        mom[name] = c["momentum"] * mom[name] + u
        params[name] = p - lr * mom[name]


# ----------------------------------------------------------------------------- one preset


def make(preset, seed):
    variant = VARIANTS.get(preset, {})
    c = {**CONVENTIONS[preset], **variant.get("model_extra", {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    K, W = TOTAL_STEPS, WARMUP_STEPS[preset]
    out = {}
    T = lambda t: t.detach().numpy().copy()  # noqa: E731

    def put(key, t, weight=False):
        a = T(t) if isinstance(t, torch.Tensor) else np.asarray(t)
        out[key] = a.T.copy() if weight and a.ndim == 2 else a

    def put_params(prefix, params):
        for k, v in params.items():
            put(prefix + k, v, weight=k.endswith(".weight"))

    online = init_params(c, "online", gen)
    target = {k: v.clone() for k, v in online.items() if not k.startswith("predictor.")} \
        if c["target_init"] == "copy" else init_params(c, "target", gen)
    if c["target_init"] == "copy_encoder":  # lightly's benchmark: deepcopy(backbone), a fresh projection head
        target.update({k: v.clone() for k, v in online.items() if k.startswith("encoder.")})
    widths = {}
    for role, params in (("online", online), ("target", target)):
        for k, v in params.items():
            if k.endswith(".gamma"):
                widths[(role, k[:-len(".gamma")])] = v.shape[0]
    bn = {role: {lyr: BNState(widths[(role, lyr)]) for part, steps in plan(c, role) for kind, lyr in steps
                 if kind == "bn"} for role in ("online", "target")}
    views = [(torch.randn(N, D, generator=gen), torch.randn(N, D, generator=gen)) for _ in range(STEPS)]

    def put_bufs(prefix, states):
        for lyr, st in states.items():
            put(f"{prefix}{lyr}.running_mean", st.mean)
            put(f"{prefix}{lyr}.running_var", st.var)
            out[f"{prefix}{lyr}.count"] = np.asarray(st.count, dtype="int64")

    put_params("init.online.param.", online)
    put_bufs("init.online.buffer.", bn["online"])
    put_params("init.target.param.", target)
    put_bufs("init.target.buffer.", bn["target"])

    # optimiser
    leaves = {k: v.clone().requires_grad_(True) for k, v in online.items()}
    if c["optimizer"] in ("adam", "adamw"):
        decay = [v for k, v in leaves.items() if not excluded(k, v, c)]
        no_decay = [v for k, v in leaves.items() if excluded(k, v, c)]
        cls = torch.optim.Adam if c["optimizer"] == "adam" else torch.optim.AdamW
        opt = cls([{"params": decay, "weight_decay": c["weight_decay"]},
                   {"params": no_decay, "weight_decay": 0.0}], lr=c["lr"], betas=(0.9, 0.999), eps=1e-8)
        for k, v in online.items():
            put(f"init.opt.mu.{k}", torch.zeros_like(v), weight=k.endswith(".weight"))
        for k, v in online.items():
            put(f"init.opt.nu.{k}", torch.zeros_like(v), weight=k.endswith(".weight"))
        out["init.opt.count"] = np.asarray(0, dtype="int64")
    else:
        mom = {k: torch.zeros_like(v) for k, v in online.items()}
        put_params("init.opt.momentum.", mom)

    def ema(tau, pre):
        for k in target:  # the same average, rounded as each implementation writes it
            if c["ema_form"] == "increment":  # deepmind: x + (1 - tau) * (y - x)
                target[k] = target[k] + (1 - tau) * (leaves[k].detach() - target[k])
            else:  # tau * old + (1 - tau) * new
                target[k] = tau * target[k] + (1 - tau) * leaves[k].detach()
        put_params(pre + "target.param.", target)

    for i, (v1, v2) in enumerate(views):
        pre = f"step{i}."
        k = i
        lr, tau = lr_at(k, c, K, W, N), tau_at(k, c, K)
        out[pre + "lr"] = np.asarray(lr)
        out[pre + "tau"] = np.asarray(tau)
        if c["ema_when"] == "pre_forward":
            ema(tau, pre)
        put(pre + "input.view1", v1)
        put(pre + "input.view2", v2)
        rec = lambda key, t: put(pre + key, t)  # noqa: E731
        keep = []
        if c["views"] == "concat":
            p_cat = run_net(c, "online", leaves, bn["online"], torch.cat([v1, v2]), "view12", rec, keep)
            p1, p2 = p_cat[:N], p_cat[N:]
            with torch.no_grad():
                tkeep = []
                z_cat = run_net(c, "target", target, bn["target"], torch.cat([v1, v2]), "view12", rec, tkeep)
            z1, z2 = z_cat[:N], z_cat[N:]
        else:
            p1 = run_net(c, "online", leaves, bn["online"], v1, "view1", rec, keep)
            p2 = run_net(c, "online", leaves, bn["online"], v2, "view2", rec, keep)
            tkeep = []
            with torch.no_grad():
                z1 = run_net(c, "target", target, bn["target"], v1, "view1", rec, tkeep)
                z2 = run_net(c, "target", target, bn["target"], v2, "view2", rec, tkeep)
        for role, name, t in keep + tkeep:  # layer outputs per view
            if c["views"] == "concat":
                put(f"{pre}{role}.view1.{name}.out", t[:N])
                put(f"{pre}{role}.view2.{name}.out", t[N:])
        if c["views"] != "concat":
            per_view = {}
            for role, name, t in keep + tkeep:
                per_view.setdefault((role, name), []).append(t)
            for (role, name), ts in per_view.items():
                for v, t in enumerate(ts, start=1):
                    put(f"{pre}{role}.view{v}.{name}.out", t)
        with torch.no_grad():
            for role, short, a, b in (("online", "p", p1, p2), ("target", "z", z1, z2)):
                put(f"{pre}{role}.view1.{short}.normed", normalize(a, c))
                put(f"{pre}{role}.view2.{short}.normed", normalize(b, c))
        if c["symmetric"]:
            l1, l2 = pair_loss(p1, z2.detach(), c), pair_loss(p2, z1.detach(), c)
            per_sample = torch.stack([l1, l2])
            loss = l1.mean() + l2.mean()
            if c["sym_reduce"] == "mean":
                loss = 0.5 * loss
        else:
            l1 = pair_loss(p1, z2.detach(), c)
            per_sample = l1[None]
            loss = l1.mean()
        put(pre + "loss.per_sample", per_sample)
        put(pre + "loss.total", loss)
        # dL/dn(p): the same objective written on the normalised vectors, differentiated on its own
        # (cosine_similarity never forms n(p), so there is no tensor of the graph above to read it from)
        n_p = [normalize(t.detach(), c).requires_grad_(True) for t in (p1, p2)]
        n_z1, n_z2 = normalize(z1, c), normalize(z2, c)
        pairs = [(n_p[0], n_z2), (n_p[1], n_z1)] if c["symmetric"] else [(n_p[0], n_z2)]
        total = sum(normed_pair_loss(a, b, c).mean() for a, b in pairs)
        total = 0.5 * total if c["symmetric"] and c["sym_reduce"] == "mean" else total
        dn = torch.autograd.grad(total, n_p, allow_unused=True)
        for v, g in enumerate(dn, start=1):
            put(f"{pre}online.view{v}.p.normed.grad", g if g is not None else torch.zeros_like(n_p[v - 1]))
        loss.backward()

        def grad_of(t):
            return t.grad if t.grad is not None else torch.zeros_like(t)

        if c["views"] == "concat":
            g = grad_of(p_cat)
            put(pre + "online.view1.p.grad", g[:N])
            put(pre + "online.view2.p.grad", g[N:])
            for role, name, t in keep:
                put(f"{pre}online.view1.{name}.dout", grad_of(t)[:N])
                put(f"{pre}online.view2.{name}.dout", grad_of(t)[N:])
        else:
            put(pre + "online.view1.p.grad", grad_of(p1))
            put(pre + "online.view2.p.grad", grad_of(p2))
            seen = {}
            for role, name, t in keep:
                v = seen[name] = seen.get(name, 0) + 1
                put(f"{pre}online.view{v}.{name}.dout", grad_of(t))
        grads = {k: (v.grad.detach().clone() if v.grad is not None else torch.zeros_like(v))
                 for k, v in leaves.items()}
        put_params(pre + "online.grad.", grads)
        put_bufs(pre + "online.buffer.", bn["online"])
        put_bufs(pre + "target.buffer.", bn["target"])

        if c["optimizer"] in ("adam", "adamw"):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            opt.zero_grad()
            for k, v in leaves.items():
                put(f"{pre}opt.mu.{k}", opt.state[v]["exp_avg"], weight=k.endswith(".weight"))
            for k, v in leaves.items():
                put(f"{pre}opt.nu.{k}", opt.state[v]["exp_avg_sq"], weight=k.endswith(".weight"))
            out[pre + "opt.count"] = np.asarray(int(opt.state[next(iter(leaves.values()))]["step"]), dtype="int64")
        else:
            values = {k: v.detach() for k, v in leaves.items()}
            lars_step(values, grads, mom, lr, c)
            put_params(pre + "opt.momentum.", mom)
            leaves = {k: v.clone().requires_grad_(True) for k, v in values.items()}
        put_params(pre + "online.param.", {k: v.detach() for k, v in leaves.items()})
        if c["ema_when"] == "post_step":
            ema(tau, pre)

    meta = {"format": "byol-ref-trace", "version": 1, "generator": "scripts/make_golden.py",
            "torch_version": torch.__version__, "preset": variant.get("preset", preset),
            "conventions": CONVENTIONS[preset], "steps": STEPS,
            "start_step": 0, "total_steps": K, "warmup_steps": W, "batch": N, "dtype": "float64",
            "sizes": dict(encoder_dim=D, hidden_size=H, projector_hidden_dim=PH, projection_dim=P, predictor_dim=Q),
            "seed": seed}
    if variant:
        meta.update(variant=preset, preset_overrides=variant["preset_overrides"], model_extra=variant["model_extra"])
    return out, meta


def write(path, out, meta):
    arrays = dict(out)
    arrays["__order__"] = np.asarray(list(out), dtype=str)
    arrays["__meta__"] = np.asarray(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "golden"))
    ap.add_argument("--presets", nargs="*", default=list(CONVENTIONS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name in args.presets:
        out, meta = make(name, args.seed)
        path = os.path.join(args.out, f"{name}.npz")
        write(path, out, meta)
        print(f"{path}: {len(out)} tensors, loss {[float(out[f'step{i}.loss.total']) for i in range(STEPS)]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
