"""Trace: run BYOL training steps on fixed views and keep every intermediate, in order.

A trace is a flat, ordered dict ``name -> array``: the initial state, then for each step
the learning rate and tau, the views, every layer output of both networks for each view,
batch statistics, normalised vectors, per-sample and total loss, the gradient of every
activation and every parameter, the new running statistics, the optimiser state, the new
online params and the new target params. Names and shapes are documented in
``docs/trace-format.md``; a trace file is a plain ``.npz`` (never pickled) with two extra
entries: ``__order__`` (1-D string array, the names in execution order) and ``__meta__``
(0-d string, JSON: format, version, preset, configs, step counts, dtype).

A step runs in the order of :func:`byol_ref.train.train_step` (BYOL_FACTS a1), with fixed
views instead of augmentation:

1. ``lr_k`` and ``tau_k`` from the schedules (``k = start_step + i``);
2. with ``ema_when="pre_forward"`` (lightly), the target EMA with the *old* online params;
3. ``loss_and_grads``: online then target forward, loss, online backward;
4. the optimiser update;
5. with ``ema_when="post_step"`` (official), the target EMA with the *updated* online params.

``ema_scope="params+buffers"`` also averages the running mean and variance (no preset does).

Usage::

    from byol_ref.presets import get_preset
    from byol_ref.trace import make_inputs, trace_inputs, save_trace
    preset = get_preset("deepmind")
    inputs = make_inputs(preset, encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                         batch=4, steps=2, seed=0)
    tr = trace_inputs(inputs, preset, steps=2)
    save_trace("deepmind.npz", tr)
"""
from __future__ import annotations

import json
import numbers
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict
from typing import NamedTuple

from .backend import get_backend, to_numpy
from .backend import host as np
from .checkpoint import atomic_savez, parse_json, read_npz
from .checks import check_count, check_path, not_a_file
from .layers import _moments
from .losses import l2_normalize_forward
from .model import (Config, Network, _check_network, build_from_config, ema_update, from_groups, init_buffers,
                    loss_and_grads, network_plan, param_mismatch)
from .presets import Preset, get_preset
from .train import make_optimizer_for, make_schedules

__all__ = ["Trace", "TraceError", "trace_networks", "trace_inputs", "make_inputs", "networks_from_inputs",
           "save_trace", "load_trace", "load_npz", "FORMAT", "VERSION"]

FORMAT = "byol-ref-trace"
VERSION = 1
ORDER_KEY = "__order__"
META_KEY = "__meta__"
_VIEW_RE = re.compile(r"^step(\d+)\.input\.view([12])$")


class TraceError(ValueError):
    """A trace or inputs file that cannot be used; the message names the file and the problem."""


class Trace(NamedTuple):
    """A trace: ``arrays`` (ordered dict name -> host NumPy array) and ``meta`` (JSON-able dict)."""

    arrays: dict
    meta: dict


# --------------------------------------------------------------------------- recording


class _Recorder:
    """Turns ``loss_and_grads``'s ``record(key, array)`` calls into per-view trace names.

    Activations arrive in batch norm's groups (``model.to_groups``): G = 2 views, or G = 1
    group of 2N rows with ``views="concat"`` (view 1 first), or those per shard with
    ``bn_shards``. Each is split into ``<net>.view1.<key>`` and ``<net>.view2.<key>`` (N rows
    each, in the input's order). After every training-mode batch norm, the batch mean and
    biased variance it normalised with are added (recomputed from the recorded layer input
    with the same formula, ``layers._moments``), per view or for the joint batch
    (``view12``), and per shard (``view1.shard0``, ...) when there are several. Just before
    the loss, the l2-normalised p and z of each view are added.
    """

    def __init__(self, out: dict, prefix: str, cfg):
        self.out, self.prefix, self.cfg = out, prefix, cfg
        self.last = {}  # net -> last recorded (G, N, F) output, the input of the next layer
        self.stacked = {}  # record key -> stacked array (for p and z)
        self.bn = {f"{role}.{name}" for role in ("online", "target")
                   for steps in network_plan(cfg, role).values() for kind, name in steps if kind == "batch_norm"}
        if cfg.target_bn != "batch":
            self.bn = {k for k in self.bn if not k.startswith("target.")}

    def put(self, name, value):
        self.out[self.prefix + name] = to_numpy(value).copy()

    def split(self, net, key, a, *, grouped=True):
        """Record ``a`` per view: ``a`` in batch norm's groups, or (2, N, F) if not ``grouped``."""
        a = to_numpy(a)
        views = from_groups(a, self.cfg, 2) if grouped else a  # (2, N, F)
        for v, part in enumerate(views, start=1):
            self.put(f"{net}.view{v}.{key}", part)

    def group_names(self):
        """Trace names of batch norm's groups, in ``to_groups`` order."""
        views = ["view1", "view2"] if self.cfg.views == "separate" else ["view12"]
        if self.cfg.bn_shards == 1:
            return views
        return [f"{v}.shard{s}" for s in range(self.cfg.bn_shards) for v in views]

    def __call__(self, key, value):
        if key == "loss.per_sample":
            self._normalised()
            self.put(key, value)
            return
        if key == "loss.total":
            self.put(key, value)
            return
        net, _, rest = key.partition(".")  # "online" / "target"
        if rest in ("p.grad", "p.normed.grad", "z.normed.grad"):  # (2, N, P): the loss's layout, not batch norm's
            self.split(net, rest, value, grouped=False)
            return
        layer, _, what = rest.rpartition(".")  # "encoder.norm1", "out"/"dout"
        if what == "out":
            if f"{net}.{layer}" in self.bn:
                x = self.last[net]  # the batch-norm input, (G, N, F)
                mean, var = _moments(x, -2, self.cfg.bn_var)  # (G, 1, F) each
                for g, m, s in zip(self.group_names(), to_numpy(mean)[:, 0], to_numpy(var)[:, 0]):
                    self.put(f"{net}.{g}.{layer}.batch_mean", m)
                    self.put(f"{net}.{g}.{layer}.batch_var", s)
            self.last[net] = value
            self.stacked[key] = value
        self.split(net, f"{layer}.{what}", value)

    def _normalised(self):
        cfg = self.cfg
        p_key = "online.predictor.fc2.out" if cfg.use_predictor else "online.projector.fc2.out"
        for net, key, short in (("online", p_key, "p"), ("target", "target.projector.fc2.out", "z")):
            n, _ = l2_normalize_forward(self.stacked[key], eps=cfg.norm_eps, eps_mode=cfg.norm_eps_mode)
            self.split(net, f"{short}.normed", n)


def _put_tree(out, prefix, tree):
    for k, v in tree.items():
        out[f"{prefix}{k}"] = to_numpy(v).copy()


# --------------------------------------------------------------------------- running steps


def trace_networks(online: Network, target: Network, views, *, preset: Preset | str, total_steps: int | None = None,
                   warmup_steps: int | None = None, opt_state: dict | None = None, start_step: int = 0,
                   train_extra: dict | None = None) -> Trace:
    """Run ``len(views)`` training steps and record everything.

    Args:
        online, target: Networks (from ``build_from_config`` or :func:`networks_from_inputs`), whose
            Config carries the model conventions (build it with ``preset.config(...)``).
        views: list of (view1, view2) pairs, one per step, each (N, D) in the params' dtype.
        preset: the training conventions (optimiser, LARS, schedules, EMA timing and scope): a Preset
            or a preset name.
        total_steps: K of the schedules (default: start_step + number of steps).
        warmup_steps: W (default 0: a trace has no epochs for the preset's warmup_epochs; pass the W
            of the run it is compared with).
        opt_state: optimiser state to start from (default: a fresh one).
        start_step: the global step k of the first traced step.
        train_extra: other TrainConfig fields (e.g. ``predictor_lr_mult``, ``nesterov``).

    Returns:
        Trace; names in docs/trace-format.md.
    """
    preset = _as_preset(preset)  # (a name was refused here alone: make_inputs, trace_inputs and the rest take one)
    _check_network(online, "online", role="online")
    _check_network(target, "target", role="target")
    if not isinstance(views, (list, tuple)) or not views:
        raise ValueError(f"views must be a list of (view1, view2) pairs, one per step, got "
                         f"{views if isinstance(views, (list, tuple)) else type(views).__name__!r}")
    for i, pair in enumerate(views):
        if not hasattr(pair, "__len__") or len(pair) != 2:  # (a (2, N, D) stack is a pair too)
            raise ValueError(f"views[{i}] (step {i}) must be a (view1, view2) pair, got "
                             f"{type(pair).__name__} of length {len(pair) if hasattr(pair, '__len__') else '?'}")
        for j, v in enumerate(pair, 1):
            if getattr(v, "ndim", None) != 2:
                raise ValueError(f"views[{i}][{j - 1}] (step {i}, view {j}) must be a 2-D (batch, features) array, "
                                 f"got shape {getattr(v, 'shape', None)}")
            if v.shape[0] != views[0][0].shape[0]:  # (the learning rate is scaled by one batch size)
                raise ValueError(f"views[{i}][{j - 1}] (step {i}, view {j}) has {v.shape[0]} rows, but step 0's "
                                 f"view 1 has {views[0][0].shape[0]}: a trace takes one batch size")
    cfg = online.config
    n = views[0][0].shape[0]
    dtype = online.params[next(iter(online.params))].dtype.name

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not is_int(start_step) or start_step < 0:
        raise ValueError(f"start_step must be an int >= 0, got {start_step!r}")
    start_step = int(start_step)
    K = start_step + len(views) if total_steps is None else total_steps
    if not is_int(K) or K < start_step + len(views):
        raise ValueError(f"total_steps must be an int >= start_step + steps = {start_step + len(views)}, got {K!r}")
    W = 0 if warmup_steps is None else warmup_steps
    if not is_int(W) or not 0 <= W <= K:
        raise ValueError(f"warmup_steps must be an int in [0, total_steps={K}], got {W!r}")
    K, W = int(K), int(W)  # (the trace's meta is JSON)
    tcfg = preset.train_config(epochs=K, batch_size=n, **{"warmup_epochs": W, "dtype": dtype, **(train_extra or {})})
    if tcfg.data_init:  # silently tracing un-initialised weights would mislead
        raise ValueError("data_init initialises a training run's weights from its data; a trace steps from the "
                         "weights it is given: apply byol_ref.data_dependent_init to them first (and pass them "
                         "with --inputs on the command line)")
    sched = make_schedules(tcfg, n)  # one batch per "epoch": K steps, W warm-up steps
    optimizer = make_optimizer_for(tcfg)
    if opt_state is None:
        opt_state = optimizer.init(online.params)

    out = {}
    _put_tree(out, "init.online.param.", online.params)
    _put_tree(out, "init.online.buffer.", online.buffers)
    _put_tree(out, "init.target.param.", target.params)
    _put_tree(out, "init.target.buffer.", target.buffers)
    _put_tree(out, "init.opt.", opt_state)

    def ema(online, target, tau, pre):
        target = target._replace(params=ema_update(online.params, target.params, tau, form=tcfg.ema_form))
        _put_tree(out, pre + "target.param.", target.params)
        if preset.ema_scope == "params+buffers":
            stats = {k: v for k, v in target.buffers.items() if not k.endswith(".count")}
            bufs = {**target.buffers, **ema_update(online.buffers, stats, tau, form=tcfg.ema_form)}
            target = target._replace(buffers=bufs)
            _put_tree(out, pre + "target.buffer_ema.", bufs)
        return target

    for i, (view1, view2) in enumerate(views):
        k = start_step + i
        pre = f"step{i}."
        lr, tau = sched.lr(k), sched.tau(k)
        out[pre + "lr"] = np.asarray(lr, dtype="float64")
        out[pre + "tau"] = np.asarray(tau, dtype="float64")
        if tcfg.ema_when == "pre_forward":  # lightly: average with theta_k before the forward
            target = ema(online, target, tau, pre)
        out[pre + "input.view1"] = to_numpy(view1).copy()
        out[pre + "input.view2"] = to_numpy(view2).copy()
        res = loss_and_grads(online, target, view1, view2, record=_Recorder(out, pre, cfg))
        _put_tree(out, pre + "online.grad.", res.grads)
        _put_tree(out, pre + "online.buffer.", res.online_buffers)
        _put_tree(out, pre + "target.buffer.", res.target_buffers)
        params, opt_state = optimizer.update(res.grads, opt_state, online.params, lr=lr)
        _put_tree(out, pre + "opt.", opt_state)
        _put_tree(out, pre + "online.param.", params)
        online = online._replace(params=params, buffers=res.online_buffers)
        target = target._replace(buffers=res.target_buffers)
        if tcfg.ema_when == "post_step":  # official: average with the updated theta_{k+1}
            target = ema(online, target, tau, pre)

    meta = {"format": FORMAT, "version": VERSION, "preset": preset.to_dict(), "config": cfg.to_dict(),
            "train_config": asdict(tcfg), "steps": len(views), "start_step": start_step, "total_steps": K,
            "warmup_steps": W, "batch": n, "dtype": dtype}
    return Trace(out, meta)


# --------------------------------------------------------------------------- inputs


def make_inputs(preset: Preset | str, *, encoder_dim: int, hidden_size: int, projection_dim: int, predictor_dim: int,
                projector_hidden_dim: int | None = None, batch: int = 4, steps: int = 2, seed: int = 0,
                dtype: str = "float64", model_extra: dict | None = None) -> dict:
    """Inputs for a trace drawn from a seed: params (preset init and target_init), fresh buffers,
    and standard-normal views for each step.

    Returns:
        dict in the inputs layout (see :func:`networks_from_inputs`): ``online.param.<name>``,
        ``online.buffer.<name>``, ``target.param.<name>``, ``target.buffer.<name>``,
        ``step<i>.input.view1``, ``step<i>.input.view2`` (host arrays).
    """
    preset = _as_preset(preset)
    for name, value, least in (("batch", batch, 2), ("steps", steps, 1)):  # (batch norm needs 2 rows)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    batch, steps = int(batch), int(steps)
    cfg = preset.config(encoder_dim=encoder_dim, hidden_size=hidden_size, projection_dim=projection_dim,
                        predictor_dim=predictor_dim, projector_hidden_dim=projector_hidden_dim, **(model_extra or {}))
    be = get_backend("numpy", dtype, seed)
    online, target = build_from_config(cfg, backend=be)
    inputs = {}
    _put_tree(inputs, "online.param.", online.params)
    _put_tree(inputs, "online.buffer.", online.buffers)
    _put_tree(inputs, "target.param.", target.params)
    _put_tree(inputs, "target.buffer.", target.buffers)
    for i in range(steps):
        for v in (1, 2):
            inputs[f"step{i}.input.view{v}"] = be.rng.standard_normal((batch, encoder_dim)).astype(dtype)
    return inputs


_TRANSPOSE = "byol-ref stores a Linear weight (in, out), PyTorch (out, in): transpose yours, or pass --layout torch"


def _infer_sizes(params: dict, extra: dict) -> dict:
    """The Config sizes read off the online weights (``extra``: the Config fields set by hand)."""
    need = ["encoder.fc1.weight", "projector.fc1.weight", "projector.fc2.weight"]
    missing = [k for k in need if k not in params]
    if missing:
        raise TraceError(f"inputs lack online.param.{missing[0]} (needed to infer the network sizes); "
                         f"got online params {sorted(params)[:8]}")
    for k in need + ["predictor.fc1.weight"]:
        if k in params and np.ndim(params[k]) != 2:
            raise TraceError(f"online.param.{k} must be 2-D (in, out), got shape {np.shape(params[k])}")
    # Each of these layers takes the one before's outputs: a weight stored (out, in) breaks a link.
    for before, after in (("encoder.fc1.weight", "encoder.fc2.weight"),
                          ("projector.fc1.weight", "projector.fc2.weight"),
                          ("projector.fc2.weight", "predictor.fc1.weight")):
        if before in params and after in params and np.ndim(params[after]) == 2 \
                and np.shape(params[before])[1] != np.shape(params[after])[0]:
            raise TraceError(f"online.param.{before} has shape {np.shape(params[before])}, so "
                             f"{np.shape(params[before])[1]} outputs, but online.param.{after}, shape "
                             f"{np.shape(params[after])}, takes {np.shape(params[after])[0]} inputs: {_TRANSPOSE}")
    sizes = dict(encoder_dim=int(params["encoder.fc1.weight"].shape[0]),
                 hidden_size=int(params["encoder.fc1.weight"].shape[1]),
                 projector_hidden_dim=int(params["projector.fc1.weight"].shape[1]),
                 projection_dim=int(params["projector.fc2.weight"].shape[1]))
    if "predictor.fc1.weight" in params:
        sizes["predictor_dim"] = int(params["predictor.fc1.weight"].shape[1])
    else:
        sizes["use_predictor"] = False
    sizes.update(_infer_simplices(params, extra))
    return sizes


def _infer_simplices(params: dict, extra: dict) -> dict:
    """The simplicial embedding's L from ``projector.sem_fc.weight`` (width L * V). V is not in the
    weights: ``sem_simplex_dim`` as set, else Config's default 8 (byol-pytorch's)."""
    v = extra.get("sem_simplex_dim", Config.__dataclass_fields__["sem_simplex_dim"].default)
    given = extra.get("sem_simplices")
    if "projector.sem_fc.weight" not in params:
        if given:
            raise TraceError(f"sem_simplices={given} asks for a simplicial embedding, but the inputs have no "
                             "online.param.projector.sem_fc.weight")
        return {}
    shape = np.shape(params["projector.sem_fc.weight"])
    if len(shape) != 2:
        raise TraceError(f"online.param.projector.sem_fc.weight must be a 2-D (in, L * V) weight, got shape {shape}")
    width = int(shape[1])
    if given is None:
        if not isinstance(v, int) or v < 1 or width % v:
            raise TraceError(f"online.param.projector.sem_fc.weight has {width} outputs, the simplicial embedding's "
                             f"L * V, which sem_simplex_dim={v!r} does not divide; set --set sem_simplex_dim=V "
                             "(byol-pytorch: 8)")
        return {"sem_simplices": width // v}
    if isinstance(given, int) and isinstance(v, int) and given * v != width:
        raise TraceError(f"sem_simplices={given} x sem_simplex_dim={v} = {given * v}, but "
                         f"online.param.projector.sem_fc.weight has {width} outputs")
    return {}


def _check_param_names_and_shapes(params: dict, cfg: Config, role: str, sizes: dict) -> None:
    """The inputs' params against the config (its sizes read off the online weights): a name
    missing or extra is a bias setting or a network part the preset lacks; a wrong shape is
    usually a weight stored (out, in)."""
    missing, extra, reshaped = param_mismatch({k: np.asarray(v) for k, v in params.items()}, cfg, role)
    if role == "target" and any(k.startswith("predictor.") for k in extra):
        raise TraceError(f"target.param holds {[k for k in extra if k.startswith('predictor.')][:4]}, but the target "
                         "network has no predictor (BYOL never uses the target's; the official code keeps one that "
                         "nothing reads): leave the target's predictor out of the inputs")
    if missing or extra:
        raise TraceError(f"{role}.params do not match the config: missing {missing}, unexpected {extra} (the "
                         f"preset's hidden_bias={cfg.hidden_bias}, encoder_bias={cfg.encoder_bias} and "
                         f"head_bias={cfg.head_bias} decide which biases exist; override them to match your weights)")
    if reshaped:
        key, got, shape = reshaped[0]
        read = ", ".join(f"{k}={v}" for k, v in sizes.items())
        if len(shape) == 2 and got == shape[::-1]:
            why = f"; {_TRANSPOSE}"
        elif int(np.prod(got)) == int(np.prod(shape)):
            why = f"; it holds the right number of values: reshape it to {shape} (Haiku keeps a norm's scale as (1, F))"
        else:
            why = " (a network of other sizes than the online weights', or a transposed online weight?)"
        raise TraceError(f"{role}.param.{key} has shape {got}, but the sizes read off the online weights ({read}) make "
                         f"it {shape}{why}")


def networks_from_inputs(inputs: dict, preset: Preset | str, *, dtype: str = "float64",
                         model_extra: dict | None = None):
    """Networks, views and optional state from an inputs dict.

    The inputs layout (any trace is also valid: its ``init.`` prefix is stripped):
    ``online.param.<name>`` and ``target.param.<name>`` (required, byol-ref layout: weights
    ``(in, out)``), ``online.buffer.<name>`` / ``target.buffer.<name>`` (optional; default mean 0,
    var 1, count 0), ``opt.<key>`` (optional optimiser state), ``step<i>.input.view1`` and
    ``...view2`` for i = 0, 1, ... (or ``view1`` / ``view2``, used for every step). Sizes are read
    off the weight shapes; the preset decides every convention.

    Returns:
        (online, target, views, opt_state or None): views is a list of (view1, view2) pairs, one
        per step, or ``{"shared": (view1, view2)}`` when the inputs hold only ``view1``/``view2``.
    """
    preset = _as_preset(preset)
    _check_inputs_mapping(inputs)
    groups = {"online.param.": {}, "target.param.": {}, "online.buffer.": {}, "target.buffer.": {}, "opt.": {}}
    steps = {}
    shared = {}
    unknown = []
    for name, value in inputs.items():
        if name.startswith("__"):
            continue
        key = name[len("init."):] if name.startswith("init.") else name
        m = _VIEW_RE.match(key)
        if m:
            steps.setdefault(int(m.group(1)), {})[int(m.group(2))] = value
            continue
        if key in ("view1", "view2"):
            shared[int(key[-1])] = value
            continue
        for g in groups:
            if key.startswith(g):
                groups[g][key[len(g):]] = value
                break
        else:  # a trace's step<i>.* outputs are not inputs; anything else, or a misspelt view, is a typo
            if not key.startswith("step") or ".input." in key:
                unknown.append(name)
    if unknown:
        raise TraceError(f"the inputs hold names byol-ref does not read: {unknown[:6]}"
                         f"{' ...' if len(unknown) > 6 else ''}; expected online.param.*, target.param.*, "
                         "online.buffer.*, target.buffer.*, opt.*, step<i>.input.view1/2 or view1/view2 (a misspelt "
                         "group would otherwise be left out without a word)")
    for name, value in [*((f"step{i}.input.view{j}", v) for i, s in steps.items() for j, v in s.items()),
                        *((f"view{j}", v) for j, v in shared.items())]:
        a = np.asarray(value)
        if a.dtype.kind not in "fiu" or a.ndim != 2:
            raise TraceError(f"{name} must be a 2-D (batch, features) array of real numbers, got shape {a.shape} "
                             f"and dtype {a.dtype}")
    sizes = _infer_sizes(groups["online.param."], model_extra or {})
    cfg = preset.config(**{**sizes, **(model_extra or {})})
    be = get_backend("numpy", dtype, seed=None)

    def as_dev(tree, what):
        out = {}
        for k, v in tree.items():
            a = np.asarray(v)
            if k.endswith(".count") or what == "opt" and k == "count":
                out[k] = check_count(a, f"{what}.{k}")
            else:
                if a.dtype.kind not in "fiu":
                    raise TraceError(f"{what}.{k} must be numeric, got dtype {a.dtype}")
                if (k.endswith(".running_var") or what == "opt" and k.startswith("nu.")) and np.any(a < 0):
                    # (a checkpoint with one is refused as corrupt; here it traced NaN from the first eval step)
                    raise TraceError(f"{what}.{k} holds {int(np.sum(a < 0))} negative value(s), the first "
                                     f"{a[a < 0][0]}; a variance or a mean of squares is >= 0")
                out[k] = be.asarray(a)
        return out

    nets = []
    for role in ("online", "target"):
        params = as_dev(groups[f"{role}.param."], f"{role}.param")
        buffers = as_dev(groups[f"{role}.buffer."], f"{role}.buffer") or init_buffers(cfg, role, be)
        expected = set(init_buffers(cfg, role, be))
        if set(buffers) != expected:
            raise TraceError(f"{role} buffers do not match the config: missing {sorted(expected - set(buffers))}, "
                             f"unexpected {sorted(set(buffers) - expected)}")
        _check_param_names_and_shapes(params, cfg, role, sizes)
        nets.append(Network(cfg, role, params, buffers))
    if sorted(steps) != list(range(len(steps))) or any(set(s) != {1, 2} for s in steps.values()):
        raise TraceError(f"views must be step<i>.input.view1 and .view2 for i = 0, 1, ... without gaps; "
                         f"got steps {sorted(steps)}")
    if shared and set(shared) != {1, 2}:
        raise TraceError("view1 and view2 must be given together")
    views = [(be.asarray(s[1]), be.asarray(s[2])) for _, s in sorted(steps.items())]
    if shared and not views:
        views = {"shared": (be.asarray(shared[1]), be.asarray(shared[2]))}
    return nets[0], nets[1], views, as_dev(groups["opt."], "opt") or None


def trace_inputs(inputs: dict, preset: Preset | str = "deepmind", *, steps: int | None = None,
                 dtype: str = "float64", model_extra: dict | None = None, train_extra: dict | None = None,
                 total_steps: int | None = None, warmup_steps: int | None = None, start_step: int = 0) -> Trace:
    """Trace ``steps`` training steps from an inputs dict (see :func:`networks_from_inputs`).

    Args:
        inputs: params, optional buffers and optimiser state, and views.
        preset: a Preset or a preset name.
        steps: number of steps (default: the number of per-step views in the inputs).
        dtype: ``"float64"`` (default) or ``"float32"``: everything is cast to it.
        model_extra, train_extra: other Config / TrainConfig fields.
        total_steps, warmup_steps, start_step: see :func:`trace_networks`.

    Returns:
        Trace.
    """
    preset = _as_preset(preset)
    _check_inputs_mapping(inputs)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1):
        raise TraceError(f"steps must be an int >= 1, got {steps!r}")
    steps = None if steps is None else int(steps)
    bad = [k for k, v in inputs.items() if np.asarray(v).dtype.kind in "fc" and not np.isfinite(v).all()]
    if bad:
        raise TraceError(f"the inputs {bad[:4]} hold non-finite values (NaN or inf); a trace starts from finite "
                         "params, state and views")
    online, target, views, opt_state = networks_from_inputs(inputs, preset, dtype=dtype, model_extra=model_extra)
    if isinstance(views, dict):  # one pair for every step
        if steps is None:
            raise TraceError("the inputs hold one view1/view2 pair, used for every step: pass steps (--steps N)")
        views = [views["shared"]] * steps
    elif steps is None:
        steps = len(views)
    elif steps > len(views):
        raise TraceError(f"steps={steps} but the inputs hold views for only {len(views)} step(s)")
    views = views[:steps]
    if not views:
        raise TraceError("the inputs hold no views: add step0.input.view1 and step0.input.view2 (or view1/view2)")
    tr = trace_networks(online, target, views, preset=preset, total_steps=total_steps, warmup_steps=warmup_steps,
                        opt_state=opt_state, start_step=start_step, train_extra=train_extra)
    tr.meta["model_extra"] = dict(model_extra or {})
    tr.meta["train_extra"] = dict(train_extra or {})
    return tr


def _as_preset(preset) -> Preset:
    """A Preset, or a preset name's."""
    if isinstance(preset, str):
        return get_preset(preset)
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a byol_ref.presets.Preset or a preset name, got {type(preset).__name__}")
    return preset


def _check_inputs_mapping(inputs) -> None:
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
        raise TypeError(f"inputs must be a dict name -> array (see networks_from_inputs), got "
                        f"{type(inputs).__name__}")


# --------------------------------------------------------------------------- files


def save_trace(path, trace: Trace) -> str:
    """Write a trace as ``.npz`` with ``__order__`` and ``__meta__`` (no pickle; exact path kept).

    Returns:
        The path written.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a byol_ref.trace.Trace (from trace_networks, trace_inputs or load_trace), "
                        f"got {type(trace).__name__}")
    arrays = {k: np.asarray(v) for k, v in trace.arrays.items()}
    bad = [k for k in arrays if k.startswith("__") or "/" in k]
    if bad:
        raise ValueError(f"trace names must not start with '__' or contain '/', got {bad[:3]}")
    arrays[ORDER_KEY] = np.asarray(list(trace.arrays), dtype=str)
    arrays[META_KEY] = np.asarray(json.dumps(trace.meta))
    path = os.fspath(path)
    atomic_savez(path, arrays)  # np.savez would add ".npz" to a bare path; the exact path is kept
    return path


def load_npz(path, what: str = "file") -> dict:
    """Read every array of an ``.npz`` (never unpickling), in file order, with clear errors."""
    path = check_path(path)
    found = not_a_file(path, folder="is a directory; expected an .npz file")
    if found:
        raise FileNotFoundError(f"{what} {path} {found}")
    lower = path.lower()
    if lower.endswith((".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")):
        raise TraceError(f"{path}: byol-ref never reads pickles (PyTorch .pt/.pth/.bin files are pickles); export "
                         "plain arrays instead: np.savez(path, **{k: v.detach().cpu().numpy() for k, v in "
                         "state_dict.items()})")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError):
            names = []  # read_npz says what is wrong with it
        if any(n.endswith(".pkl") for n in names):
            raise TraceError(f"{path} looks like a PyTorch zip checkpoint (it holds a .pkl), which is a pickle; "
                             "byol-ref never unpickles. Export with np.savez(path, **{k: v.detach().cpu().numpy() "
                             "for k, v in state_dict.items()})")
    return read_npz(path, f"{what} {path}", TraceError)


def load_trace(path) -> Trace:
    """Read a trace file (byol-ref's or anyone's ``.npz``).

    The order is ``__order__`` when present (names in it must exist), else the file order;
    ``meta`` is ``__meta__`` parsed, or ``{}``.
    """
    arrays = load_npz(path, "trace")
    meta = {}
    if META_KEY in arrays:
        raw = arrays.pop(META_KEY)
        if raw.shape != () or raw.dtype.kind != "U":
            raise TraceError(f"{path}: __meta__ must be one string of JSON, got dtype {raw.dtype}, shape {raw.shape}")
        meta = parse_json(str(raw[()]), f"{path}: __meta__", TraceError)
        if not isinstance(meta, dict):
            raise TraceError(f"{path}: __meta__ holds a JSON {type(meta).__name__}, expected an object")
    order = list(arrays)
    if ORDER_KEY in arrays:
        raw = arrays.pop(ORDER_KEY)
        if raw.ndim != 1 or raw.dtype.kind != "U":
            raise TraceError(f"{path}: __order__ must be a 1-D string array, got dtype {raw.dtype}, shape {raw.shape}")
        order = [str(s) for s in raw]
        missing = [n for n in order if n not in arrays]
        if missing:
            raise TraceError(f"{path}: __order__ names {len(missing)} array(s) the file lacks, e.g. {missing[:3]}")
        order += [n for n in arrays if n not in set(order)]
    else:
        order = [n for n in order if n != ORDER_KEY]
    return Trace({n: arrays[n] for n in order}, meta)
