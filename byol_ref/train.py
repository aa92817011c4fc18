"""Training BYOL: the step in the official order, the loop, checkpoints and resume.

One step (BYOL_FACTS a1):

1. draw two augmented views of the batch (independent per-sample draws, per-view settings);
2. ``loss_and_grads``: online forward on each view, target forward on each view (training-mode
   batch statistics), symmetrised loss, gradients of the online params;
3. the optimiser update with the scheduled learning rate lr_k;
4. the target EMA with tau_k, using the *updated* online params (``ema_when="pre_forward"``
   instead averages before step 2 with the old params, as lightly does).

The training state is plain data (:class:`TrainState`); the random generator, the
current epoch's data order and the position in it are part of it, which is what makes
``--resume`` bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import checkpoint as ckpt
from .augment import ImageAug, VectorAug, default_views_for, two_views, views_from_dicts, views_to_dicts
from .backend import Backend, check_dtype, get_array_module, get_backend
from .backend import host as np
from .backend import to_numpy
from .checks import (ArgumentError, check_array, check_bool, check_choice, check_finite, check_image_shape,
                     check_path, check_plain, check_positive_int, check_real, check_types, check_writable,
                     dataclass_from_dict, in_the_way, overflow_refusal, warn)
from .data import Dataset, feature_stats, pixel_full_scale, standardize
from .kernels import EMA_FORMS
from .model import (FILLED_IN, Config, Filled, Network, buffer_shapes, build_from_config, data_dependent_init,
                    ema_update, loss_and_grads, param_shapes, rows_per_shard, shards_of_at_least)
from .optim import Optimizer, make_optimizer, predictor_lr_mult
from .rundir import Replacing, RunLock, refuse_for_set_aside, remove_replaced, remove_stale
from .schedules import check_warmup_convention, target_tau, warmup_cosine_lr
from .tree import describe, describe_tree
from .version import __version__


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (the model's are in ``model.Config``).

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per step (each gives two views).
        optimizer: ``"lars"`` (official), ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr: base learning rate; the peak is ``lr * batch_size / lr_batch_scale``.
        lr_batch_scale: the linear-scaling denominator (256 officially; 0 disables scaling).
        weight_decay: decay on weights (biases and norm params are excluded by name).
        momentum: SGD/LARS momentum (0.9).
        nesterov: Nesterov momentum for SGD.
        lars_eta: LARS trust coefficient (1e-3).
        lars_trust_ratio: ``"norm_of_sum"`` (official: eta ||p|| / ||g + wd p||) or
            ``"sum_of_norms"`` (lightly, solo-learn: eta ||p|| / (||g|| + wd ||p|| + eps)).
        lars_eps: epsilon in the LARS denominator (official 0; lightly/solo-learn 1e-8).
        lars_clip_lr: solo-learn's ``clip_lr``.
        lars_only_with_wd: lightly's rule: a tensor without weight decay skips LARS (so
            ``weight_decay=0`` turns LARS into momentum SGD); see ``optim.lars_update``.
        exclude: which params skip weight decay and LARS: ``"name"`` (official: biases and
            anything with "norm" in its name), ``"ndim"`` (solo-learn: 1-D tensors) or ``"none"``.
        warmup_epochs: linear warm-up from 0 (official: 10 epochs, at any run length; None: 5% of epochs).
        final_lr: learning rate at the end of the cosine decay (official 0).
        warmup_start: learning rate at step 0 of the warm-up (official 0).
        warmup_offset: 0 (official: lr_k = peak k / W) or 1 (lightly: peak (k + 1) / W).
        warmup_denominator: ``"W"`` (official, lightly) or ``"W-1"`` (solo-learn: peak at W - 1).
        cosine_denominator: ``"K-W"`` (official, solo-learn) or ``"K-W-1"`` (lightly: final_lr
            from step K - 1 on). See ``schedules.warmup_cosine_lr``.
        lr_rounding: ``"exact"`` or ``"float32"`` (the official code's schedule is float32
            when it has a warm-up, even in a float64 run).
        lr_interval: ``"step"`` (the schedule advances every optimiser step: official, lightly's
            benchmarks, solo-learn's main) or ``"epoch"`` (it counts epochs, K = epochs and
            W = warmup_epochs, which must then be whole (its default rounds 5% of the run half up), and
            holds each value through its epoch: a scheduler stepped once per epoch, Lightning's
            default interval, as in solo-learn 1.0.2). ``byol-ref trace`` runs one batch per
            epoch, where the two coincide.
        tau_base: the target EMA rate at step 0 (0.996).
        tau_schedule: ``"cosine"`` (tau -> 1, official) or ``"constant"`` (byol-pytorch).
        tau_denominator: ``"K"`` (official) or ``"K-1"`` (lightly's cosine_schedule).
        tau_interval: ``"step"`` (official, lightly's benchmarks, solo-learn) or ``"epoch"``
            (lightly's BYOL example: ``cosine_schedule(epoch, max_epochs, 0.996, 1)`` at the start of
            each epoch, K = epochs; with one epoch and ``tau_denominator="K-1"`` that is tau = 1
            throughout, as lightly's ``cosine_schedule(0, 1, ...)`` gives).
        ema_when: ``"post_step"`` (official, with the updated online params) or ``"pre_forward"``.
        ema_form: ``"weighted"`` (tau t + (1 - tau) o: the paper, byol-pytorch, lightly, solo-learn)
            or ``"increment"`` (t + (1 - tau) (o - t): the official code); see ``model.ema_update``.
        predictor_lr_mult: learning-rate multiplier of the predictor (the paper's tau = 0 ablation).
        data_init: before the first step, set every ``norm="affine"`` layer from the batch
            statistics of the training inputs (``model.data_dependent_init``): the BN-free BYOL
            with a data-dependent initialisation of Richemond et al. 2020. Needs that norm.
        seed: seed of initialisation, data order and augmentations.
        dtype: ``"float64"`` or ``"float32"``.
        log_every: steps between metric records (metrics.jsonl).
        eval_every: steps between kNN monitors on the test split (0: ten per run).
        monitor_rows: the kNN monitor scores at most this many test rows against at most this
            many train rows, a subset of each split drawn once (by its own generator: the run's
            draws are untouched); 0 takes every row. The report's probes take every row. (On
            56,000 x 14,000 rows, ten monitors took most of a one-epoch run.)
        checkpoint_every: steps between checkpoints (0: only at the end).
    """

    epochs: int = 300
    batch_size: int = 256
    optimizer: str = "adamw"
    lr: float = 2e-3
    lr_batch_scale: int = 256
    weight_decay: float = 1e-6
    momentum: float = 0.9
    nesterov: bool = False
    lars_eta: float = 1e-3
    lars_trust_ratio: str = "norm_of_sum"
    lars_eps: float = 0.0
    lars_clip_lr: bool = False
    lars_only_with_wd: bool = False
    exclude: str = "name"
    warmup_epochs: Filled[float] = FILLED_IN
    final_lr: float = 0.0
    warmup_start: float = 0.0
    warmup_offset: int = 0
    warmup_denominator: str = "W"
    cosine_denominator: str = "K-W"
    lr_rounding: str = "exact"
    lr_interval: str = "step"
    tau_base: float = 0.996
    tau_schedule: str = "cosine"
    tau_denominator: str = "K"
    tau_interval: str = "step"
    ema_when: str = "post_step"
    ema_form: str = "weighted"
    predictor_lr_mult: float = 1.0
    data_init: bool = False
    seed: int = 0
    dtype: str = "float64"
    log_every: int = 10
    eval_every: int = 0
    monitor_rows: int = 10_000
    checkpoint_every: int = 500

    def __post_init__(self):
        object.__setattr__(self, "epochs", check_positive_int(self.epochs, "epochs"))
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size", minimum=2))
        check_choice(self.optimizer, "optimizer", ("lars", "sgd", "adam", "adamw"))
        object.__setattr__(self, "lr", check_real(self.lr, "lr", 0, None))
        object.__setattr__(self, "lr_batch_scale", check_positive_int(self.lr_batch_scale, "lr_batch_scale", minimum=0))
        object.__setattr__(self, "weight_decay", check_real(self.weight_decay, "weight_decay", 0, None))
        object.__setattr__(self, "momentum", check_real(self.momentum, "momentum", 0, 1, hi_open=True))
        object.__setattr__(self, "lars_eta", check_real(self.lars_eta, "lars_eta", 0, None, lo_open=True))
        check_choice(self.lars_trust_ratio, "lars_trust_ratio", ("norm_of_sum", "sum_of_norms"))
        object.__setattr__(self, "lars_eps", check_real(self.lars_eps, "lars_eps", 0, None))
        check_choice(self.exclude, "exclude", ("name", "ndim", "none"))
        object.__setattr__(self, "warmup_start", check_real(self.warmup_start, "warmup_start", 0, None))
        check_choice(self.lr_interval, "lr_interval", ("step", "epoch"))
        check_choice(self.tau_interval, "tau_interval", ("step", "epoch"))
        check_warmup_convention(self.warmup_offset, self.warmup_denominator, self.lr_rounding)
        object.__setattr__(self, "warmup_offset", int(self.warmup_offset))  # (a NumPy 0 is no JSON)
        check_choice(self.cosine_denominator, "cosine_denominator", ("K-W", "K-W-1"))
        if self.warmup_epochs is None:  # 5% of the run; whole epochs for a schedule stepped per epoch
            default = 0.05 * self.epochs
            whole = float(math.floor(default + 0.5))  # rounded half up: 10 epochs warm up over 1
            object.__setattr__(self, "warmup_epochs", whole if self.lr_interval == "epoch" else default)
        object.__setattr__(self, "warmup_epochs", check_real(self.warmup_epochs, "warmup_epochs", 0, self.epochs))
        if self.lr_interval == "epoch" and not self.warmup_epochs.is_integer():
            raise ValueError(f"warmup_epochs must be a whole number of epochs with lr_interval='epoch' (a schedule "
                             f"stepped once per epoch warms up over whole epochs), got {self.warmup_epochs!r}")
        object.__setattr__(self, "final_lr", check_real(self.final_lr, "final_lr", 0, None))
        object.__setattr__(self, "tau_base", check_real(self.tau_base, "tau_base", 0, 1))
        check_choice(self.tau_schedule, "tau_schedule", ("cosine", "constant"))
        check_choice(self.tau_denominator, "tau_denominator", ("K", "K-1"))
        check_choice(self.ema_when, "ema_when", ("post_step", "pre_forward"))
        check_choice(self.ema_form, "ema_form", EMA_FORMS)
        object.__setattr__(self, "predictor_lr_mult", check_real(self.predictor_lr_mult, "predictor_lr_mult", 0, None))
        # (as build takes it: "f4" or np.float32 too; kept as its name, which JSON holds, where np.dtype("float32"),
        # equal to "float32", passed, trained, and failed to be checkpointed at the end)
        object.__setattr__(self, "dtype", check_dtype(self.dtype, "dtype"))
        for name, least in (("seed", 0), ("log_every", 1), ("eval_every", 0), ("monitor_rows", 0),
                            ("checkpoint_every", 0)):
            object.__setattr__(self, name, check_positive_int(getattr(self, name), name, minimum=least))
        for name in ("nesterov", "lars_clip_lr", "lars_only_with_wd", "data_init"):
            if isinstance(getattr(self, name), np.bool_):  # (NumPy's, as train= takes it: kept as Python's)
                object.__setattr__(self, name, bool(getattr(self, name)))
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return dataclass_from_dict(cls, d)


class TrainState(NamedTuple):
    """Everything a run needs to continue bit-identically.

    Attributes:
        online, target: Networks (params and buffers).
        opt_state: the optimiser state (flat dict).
        step: optimiser steps taken so far (k).
        rng: numpy Generator for data order and augmentations (over PCG64, as ``default_rng``
            makes it, where the state is to be checkpointed: the one a checkpoint restores).
        epoch_perm: this epoch's sample order (host int64 array), or None before the first.
        epoch_pos: index of the next batch within epoch_perm.
    """

    online: Network
    target: Network
    opt_state: dict
    step: int
    rng: Any
    epoch_perm: Any
    epoch_pos: int

    def __repr__(self) -> str:
        return (f"TrainState(online={self.online!r}, target={self.target!r}, "
                f"opt_state={describe_tree(self.opt_state)}, step={self.step!r}, rng={self.rng!r}, "
                f"epoch_perm={describe(self.epoch_perm)}, epoch_pos={self.epoch_pos!r})")


class Schedules(NamedTuple):
    """Step -> learning rate and step -> tau, with the run's totals bound."""

    lr: Callable[[int], float]
    tau: Callable[[int], float]
    total_steps: int
    steps_per_epoch: int


def make_schedules(tcfg: TrainConfig, n_train: int) -> Schedules:
    """Bind the schedules of a run over ``n_train`` samples (the last partial batch is dropped).

    Per step (default) the lr and tau schedules run over K = epochs x floor(N / B) steps, the steps
    the run takes, and warm up over W = warmup_epochs x floor(N / B) rounded half up. (The deepmind
    code counts floor(epochs x N / B) steps of an endless stream and W = floor(10 x N / B), a few
    more; lightly and solo-learn count as byol-ref does. ``byol-ref trace`` takes K and W outright.)
    With ``lr_interval`` / ``tau_interval`` = ``"epoch"`` they run over the epochs and hold each
    value through its epoch.
    """
    check_types(tcfg=(tcfg, TrainConfig))
    n_train = check_positive_int(n_train, "n_train", minimum=0)
    steps_per_epoch = n_train // tcfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={tcfg.batch_size} exceeds the {n_train} training samples")
    total = tcfg.epochs * steps_per_epoch
    warmup = math.floor(tcfg.warmup_epochs * steps_per_epoch + 0.5)  # half up, as the default warm-up rounds
    scale = tcfg.lr_batch_scale or tcfg.batch_size  # 0 disables the linear scaling rule

    # "epoch": the schedule counts epochs (K = epochs, W = warm-up epochs) and holds each value
    # through its epoch, as a scheduler stepped once per epoch does.
    per_epoch_warmup = int(tcfg.warmup_epochs)  # a whole number with lr_interval="epoch" (TrainConfig)

    def lr(k):
        if tcfg.lr_interval == "epoch":
            k, K, W = k // steps_per_epoch, tcfg.epochs, per_epoch_warmup
        else:
            K, W = total, warmup
        return warmup_cosine_lr(k, base_lr=tcfg.lr, batch_size=tcfg.batch_size, total_steps=K,
                                warmup_steps=W, final_lr=tcfg.final_lr, batch_scale=scale,
                                warmup_start=tcfg.warmup_start, warmup_offset=tcfg.warmup_offset,
                                warmup_denominator=tcfg.warmup_denominator,
                                cosine_denominator=tcfg.cosine_denominator, lr_rounding=tcfg.lr_rounding)

    def tau(k):
        k, K = (k // steps_per_epoch, tcfg.epochs) if tcfg.tau_interval == "epoch" else (k, total)
        return target_tau(k, tau_base=tcfg.tau_base, total_steps=K, schedule=tcfg.tau_schedule,
                          denominator=tcfg.tau_denominator)

    lr(0), tau(0)  # the schedules check every setting at any step: refuse a bad one now, not mid-run
    return Schedules(lr, tau, total, steps_per_epoch)


def check_resume_length(step: int, sched: Schedules, tcfg: TrainConfig, where, flag: str = "resume=True") -> None:
    """Refuse to resume a checkpoint at ``step`` (of ``where``) with fewer steps than it has run
    (``flag``: how the caller's user asked to resume, which the message names)."""
    if step > sched.total_steps:
        raise ValueError(f"{flag}: {where} is at step {step}, past the {sched.total_steps} steps of "
                         f"{tcfg.epochs} epoch(s); a resumed run can be extended, not cut short: ask for at "
                         f"least {math.ceil(step / sched.steps_per_epoch)} epochs")


def make_optimizer_for(tcfg: TrainConfig):
    """The optimiser a TrainConfig asks for, with the predictor multiplier bound."""
    hyper = {"weight_decay": tcfg.weight_decay, "exclude": None if tcfg.exclude == "none" else tcfg.exclude}
    if tcfg.optimizer in ("sgd", "lars"):
        hyper["momentum"] = tcfg.momentum
    if tcfg.optimizer == "sgd":
        hyper["nesterov"] = tcfg.nesterov
    if tcfg.optimizer == "lars":
        hyper.update(eta=tcfg.lars_eta, trust_ratio=tcfg.lars_trust_ratio, eps=tcfg.lars_eps,
                     clip_lr=tcfg.lars_clip_lr, only_with_wd=tcfg.lars_only_with_wd)
    if tcfg.predictor_lr_mult != 1.0:
        hyper["lr_mult"] = predictor_lr_mult(tcfg.predictor_lr_mult)
    return make_optimizer(tcfg.optimizer, **hyper)


def check_configs(model_cfg: Config, tcfg: TrainConfig) -> None:
    """Refuse a model and training configuration that do not go together (or are not configs)."""
    check_types(model_cfg=(model_cfg, Config), tcfg=(tcfg, TrainConfig))
    if tcfg.data_init and model_cfg.norm != "affine":
        raise ValueError(f"data_init=True sets the norm='affine' layers from the data, but the model has "
                         f"norm={model_cfg.norm!r}; use norm='affine' (--norm affine) or drop data_init")
    s, least = model_cfg.bn_shards, rows_per_shard(model_cfg)
    if s > 1 and (tcfg.batch_size % s or tcfg.batch_size // s < least):
        raise ValueError(f"batch_size={tcfg.batch_size} cannot be split into bn_shards={s} equal shards of "
                         f"{shards_of_at_least(least)}; use a multiple of {s} that is at least {least * s}")


def init_state(model_cfg: Config, tcfg: TrainConfig, backend: Backend, x_init=None) -> TrainState:
    """Fresh networks (drawn from the backend's generator) and optimiser state.

    Args:
        x_init: with ``tcfg.data_init``, the network inputs whose statistics initialise the
            affine layers, (N, D) on the backend (see :func:`init_sample`). The target gets the
            same treatment: a copy of the initialised online net, or its own statistics when
            ``target_init="independent"`` (with ``"copy_encoder"`` its encoder's are the online
            encoder's, computed again from the same weights and inputs).
    """
    check_configs(model_cfg, tcfg)
    check_types(backend=(backend, Backend))
    online, target = build_from_config(model_cfg, backend=backend)
    if tcfg.data_init:
        if x_init is None:
            raise ValueError("TrainConfig.data_init needs x_init, a sample of the training inputs (init_sample)")
        online = data_dependent_init(online, x_init)
        if model_cfg.target_init == "copy":
            target = target._replace(params={k: online.params[k].copy() for k in target.params})
        else:
            target = data_dependent_init(target, x_init)
    opt = make_optimizer_for(tcfg)
    return TrainState(online, target, opt.init(online.params), 0, backend.rng, None, 0)


class InputNorm(NamedTuple):
    """Fixed affine input normalisation applied to each view after augmentation
    (the official code normalises images with the ImageNet mean and std inside the net)."""

    mean: Any
    std: Any

    def __call__(self, x):
        return (x - self.mean) / self.std


def train_step(state: TrainState, x, *, optimizer, schedules: Schedules, views: tuple, tcfg: TrainConfig,
               image_shape=None, input_norm: InputNorm | None = None, inplace: bool = False):
    """One BYOL step on a batch, in the official order.

    Args:
        state: TrainState before the step.
        x: (N, D) batch on the backend, in the run's dtype.
        optimizer: from make_optimizer_for.
        schedules: from make_schedules.
        views: pair of augmentation configs (ImageAug or VectorAug).
        tcfg: TrainConfig (ema_when, ema_form).
        image_shape: (H, W) or (C, H, W) when rows are flattened images.
        input_norm: applied to both views after augmentation.
        inplace: update the params, optimiser state and target arrays in place (no
            weight-sized temporaries; bitwise the same values). The given state is then
            consumed: ``fit`` uses it because it owns its state.

    Returns:
        (new_state, metrics): metrics has loss (float), lr, tau, and the stacked outputs.
    """
    check_types(state=(state, TrainState), optimizer=(optimizer, Optimizer), schedules=(schedules, Schedules),
                tcfg=(tcfg, TrainConfig), input_norm=(input_norm, InputNorm, None))
    k = state.step
    lr, tau = schedules.lr(k), schedules.tau(k)
    online, target = state.online, state.target
    if tcfg.ema_when == "pre_forward":  # lightly: average with theta_k before the forward
        target = target._replace(params=ema_update(online.params, target.params, tau, inplace=inplace,
                                                   form=tcfg.ema_form))
    # fit checked the training split once; a scan of every batch would make CuPy wait each step
    view1, view2 = two_views(x, state.rng, views, image_shape, check_finite=False)
    if input_norm is not None:
        view1, view2 = input_norm(view1), input_norm(view2)
    res = loss_and_grads(online, target, view1, view2)
    params, opt_state = optimizer.update(res.grads, state.opt_state, online.params, lr=lr, inplace=inplace)
    online = online._replace(params=params, buffers=res.online_buffers)
    target = target._replace(buffers=res.target_buffers)
    if tcfg.ema_when == "post_step":  # official: average with the updated theta_{k+1}
        target = target._replace(params=ema_update(online.params, target.params, tau, inplace=inplace,
                                                   form=tcfg.ema_form))
    new = state._replace(online=online, target=target, opt_state=opt_state, step=k + 1)
    return new, {"loss": float(res.loss), "lr": lr, "tau": tau, "outputs": res.outputs}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, state: TrainState, model_cfg: Config, tcfg: TrainConfig, extra: dict | None = None):
    """Write a TrainState (and the configs that made it) atomically to ``path``.

    ``meta`` holds the step, the position in the epoch, the generator state and both configs;
    :func:`fit` adds through ``extra`` the run's augmentations (``views``, so ``--resume``
    continues them), input statistics (``preprocessing``, so :func:`checkpoint_features`
    and ``byol-ref eval``/``embed`` treat new data as the run treated its own) and whether its
    warm-up was left at the default (``warmup_default``: 5% of its first length, kept by a resume
    for another length, see :func:`fit`).
    """
    check_types(state=(state, TrainState), model_cfg=(model_cfg, Config), tcfg=(tcfg, TrainConfig),
                extra=(extra, dict, None))
    arrays = {
        "online": state.online.params, "target": state.target.params,
        "online_buffers": state.online.buffers, "target_buffers": state.target.buffers,
        "opt": state.opt_state,
        "data": {} if state.epoch_perm is None else {"epoch_perm": state.epoch_perm},
    }
    meta = {"step": state.step, "epoch_pos": state.epoch_pos,
            "rng_state": _generator_state(state.rng, "state.rng"),
            "model_config": model_cfg.to_dict(), "train_config": asdict(tcfg), **(extra or {})}
    return ckpt.save(path, arrays, meta)


# What a checkpoint record that no run writes (fit's own checks refuse its values) says of the file.
EDITED = "the file is corrupt or was edited, and no run writes this"


def load_checkpoint(path, backend: Backend | None = None):
    """Read a checkpoint into (TrainState, model Config, TrainConfig, meta).

    The arrays go to ``backend`` (default: NumPy with the checkpoint's dtype).
    """
    check_types(backend=(backend, Backend, None))
    arrays, meta = ckpt.load(path)
    try:
        model_cfg = Config.from_dict(meta["model_config"])
        tcfg = TrainConfig.from_dict(meta["train_config"])
        step, pos = meta["step"], meta["epoch_pos"]
        rng_state = meta["rng_state"]
    except (KeyError, TypeError, ValueError) as exc:
        newer = ckpt.newer_writer(meta)
        if newer:
            raise ckpt.CheckpointError(f"{path} was written by {newer}, a later release than this one ({__version__})"
                                       f", with settings this one does not know ({exc}); upgrade byol-ref to read "
                                       "it") from None
        raise ckpt.CheckpointError(f"{path}: checkpoint metadata is incomplete or invalid ({exc})") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (step, pos)):
        raise ckpt.CheckpointError(f"{path}: step {step!r} and epoch position {pos!r} must be whole numbers; {EDITED}")
    if not isinstance(meta.get("warmup_default", False), bool):  # (a resume read anything but true as false)
        raise ckpt.CheckpointError(f"{path}: warmup_default {meta['warmup_default']!r} must be true or false; {EDITED}")
    be = backend or get_backend("numpy", tcfg.dtype, seed=None)
    dev = {g: {k: be.xp.asarray(v) for k, v in arrays[g].items()}
           for g in ("online", "target", "online_buffers", "target_buffers", "opt")}
    online = Network(model_cfg, "online", dev["online"], dev["online_buffers"])
    target = Network(model_cfg, "target", dev["target"], dev["target_buffers"])
    from .model import _check_network
    try:
        _check_network(online, "checkpoint online")
        _check_network(target, "checkpoint target")
    except ValueError as exc:
        raise ckpt.CheckpointError(f"{path}: {exc}") from None
    _check_checkpoint_arrays(path, arrays, model_cfg, tcfg, step, pos)
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:  # (OverflowError: a negative or too large
        raise ckpt.CheckpointError(f"{path}: invalid generator state ({exc})") from None  # uinteger or has_uint32)
    cached = {k: rng_state[k] for k in ("has_uint32", "uinteger")}  # (NumPy took -1 or true for a flag)
    if not all(type(v) is int for v in cached.values()) or cached["has_uint32"] not in (0, 1) \
            or not 0 <= cached["uinteger"] < 2**32:
        raise ckpt.CheckpointError(f"{path}: invalid generator state ({cached}: has_uint32 must be 0 or 1 and "
                                   "uinteger a 32-bit unsigned int); the file is corrupt or was edited, and no run "
                                   "writes this")
    perm = arrays["data"].get("epoch_perm")
    state = TrainState(online, target, dev["opt"], step, rng, perm, pos)
    return state, model_cfg, tcfg, meta


def _check_checkpoint_arrays(path, arrays: dict, model_cfg: Config, tcfg: TrainConfig, step: int, pos: int) -> None:
    """Refuse a checkpoint whose contents no run could have written: buffers or optimiser state
    that do not fit the configs, non-finite values, a negative running variance, a bad step or
    data order. (Parameter names and shapes are checked with the networks.)"""

    def bad(what):
        return ckpt.CheckpointError(f"{path}: {what}; {EDITED}")

    if step < 0 or pos < 0:
        raise bad(f"step {step} and epoch position {pos} must be >= 0")
    # (shape, dtype kind) of every buffer and optimiser-state entry the configs make
    expected = {f"{role}_buffers": {k: (shape, "i" if k.endswith(".count") else "f")
                                    for k, shape in buffer_shapes(model_cfg, role)} for role in ("online", "target")}
    params = {k: np.zeros(v, dtype=tcfg.dtype) for k, v in param_shapes(model_cfg, "online").items()}
    expected["opt"] = {k: (tuple(v.shape), v.dtype.kind) for k, v in make_optimizer_for(tcfg).init(params).items()}
    for group, want in expected.items():
        got = arrays[group]
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise bad(f"{group} does not match the configs: missing {missing[:4]}, unexpected {extra[:4]}")
        for k, (shape, kind) in want.items():
            if tuple(got[k].shape) != shape or got[k].dtype.kind != kind:
                raise bad(f"{group}/{k} has shape {tuple(got[k].shape)} and dtype {got[k].dtype}, expected "
                          f"{shape} and a {'float' if kind == 'f' else 'integer'} array")
    for group in ("online", "target", "online_buffers", "target_buffers", "opt"):
        for k, a in arrays[group].items():
            if (group in ("online", "target") or a.dtype.kind == "f") and a.dtype != np.dtype(tcfg.dtype):
                raise bad(f"{group}/{k} has dtype {a.dtype}, but the run computes in {tcfg.dtype}")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise bad(f"{group}/{k} holds {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
            if k.endswith(".running_var") and np.any(a < 0):
                raise bad(f"{group}/{k} holds a negative variance")
            if (group == "opt" and (k == "count" or k.startswith("nu.")) or k.endswith(".count")) and np.any(a < 0):
                raise bad(f"{group}/{k} holds a negative value (a step count or a mean of squares)")
    extra = sorted(set(arrays["data"]) - {"epoch_perm"})
    if extra:
        raise bad(f"data holds {extra[:4]}, expected only epoch_perm (this epoch's sample order)")
    perm = arrays["data"].get("epoch_perm")
    if perm is None and pos > 0:  # (a resume would draw a new order mid-epoch, silently not the run's)
        raise bad(f"epoch position {pos} is inside an epoch, but data/epoch_perm, that epoch's sample order, is "
                  "missing")
    if perm is not None and (perm.ndim != 1 or perm.dtype.kind not in "iu"
                             or not np.array_equal(np.sort(perm), np.arange(perm.size))):
        raise bad(f"data/epoch_perm must be a permutation of 0..N-1, got a {perm.dtype} array of shape {perm.shape}")
    if perm is not None and pos > perm.size // tcfg.batch_size:  # (resume began a new epoch there, unannounced)
        raise bad(f"epoch position {pos} is past the {perm.size // tcfg.batch_size} batches of {tcfg.batch_size} in "
                  f"data/epoch_perm ({perm.size} samples)")


def _generator_state(rng, what: str) -> dict:
    """The state of ``rng`` as a checkpoint stores it (plain JSON): that of a NumPy Generator over
    PCG64 (``numpy.random.default_rng``'s, and every backend's), the one :func:`load_checkpoint`
    restores. Another is refused, naming ``what`` (over MT19937, Philox or SFC64, whose states hold
    arrays, it failed on "can only convert an array of size 1 to a Python scalar"; over PCG64DXSM it
    was written, and the resume refused it)."""
    bits = rng.bit_generator if isinstance(rng, np.random.Generator) else None
    if type(bits) is not np.random.PCG64:
        got = f"a Generator over {type(bits).__name__}" if bits is not None else type(rng).__name__
        raise TypeError(f"{what} must be a NumPy Generator over PCG64 (numpy.random.default_rng's), the one a "
                        f"checkpoint restores, got {got}")
    return bits.state


# --------------------------------------------------------------------------- progress


def _duration(seconds: float) -> str:
    """``seconds`` as "57s", "16m37s" or "2h05m"."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A dependency-free progress bar: redrawn in place on a terminal and in a notebook (ipykernel's
    output, in Jupyter, VS Code or Colab, draws a carriage return as a terminal does, but is no tty:
    it had a line every 10%), a line every 10% elsewhere (a file, a pipe).
    A terminal that has closed under it (the window of a notebook server or a script, shut while it
    trains) ends the bar, not the training: the write failed with "[Errno 5] Input/output error".
    Where there is no stderr at all (``sys.stderr`` is None under pythonw, a GUI or a service) there
    is no bar: fit's default ``progress=True`` failed there on "'NoneType' object has no attribute
    'write'".
    The rate and the time left count the steps after the first update, as tqdm's do: the first step's
    time held the step-0 kNN monitor, and a log's first line had said "9 it/s  eta 3280s" of a run that
    went at 26 it/s and ended 1180 s later. Until a second update there is no rate to tell: "? it/s  eta ?"."""

    def __init__(self, total: int, *, enabled: bool = True, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.enabled = total, enabled and self.stream is not None
        self.tty = (hasattr(self.stream, "isatty") and self.stream.isatty()
                    or type(self.stream).__module__.partition(".")[0] == "ipykernel")
        self.first: tuple[int, float] | None = None  # (step, time) of the first update
        self.last_decile = -1
        self.last_draw = 0.0

    def update(self, step: int, **fields):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)
        frac = step / max(self.total, 1)
        done, took = step - self.first[0], now - self.first[1]
        if done > 0 and took > 0:
            rate = done / took  # (below one step a second, seconds a step: "0 it/s" told nothing)
            speed = f"{rate:.0f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"
            speed += f"  eta {_duration((self.total - step) / rate)}"
        else:
            speed = f"? it/s  eta {'0s' if step >= self.total else '?'}"
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = f"[{bar}] {step}/{self.total}  {info}  {speed}"
        if self.tty:
            if now - self.last_draw > 0.1 or step == self.total:
                width = min(shutil.get_terminal_size().columns - 1, 150)  # (a wrapped line is not redrawn)
                self._write("\r" + line[:width].ljust(width))
                self.last_draw = now
        else:
            decile = int(frac * 10)
            if decile != self.last_decile:
                self.last_decile = decile
                self._write(line + "\n")

    def close(self):
        if self.enabled and self.tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as exc:
            if exc.errno != errno.EIO:  # (a full disk under a redirected stream, say, is the caller's to hear of)
                raise
            self.enabled = False  # the terminal is gone: nobody is left to read the bar


# --------------------------------------------------------------------------- the loop


class _Overflows:
    """The floating-point errors NumPy reports in a fit's steps (an overflow, an invalid value, a
    division by zero: ``numpy.errstate(call=...)``), told once, in a warning of byol-ref's own,
    where the step's loss stayed finite: weights grown beyond the dtype's range while batch norm
    kept the loss in bounds, or a first sign of a divergence a step later. Where the loss is not
    finite the divergence message says it all; NumPy's warnings (five of them, with lines of
    byol-ref's code) came before it."""

    def __init__(self):
        self.seen, self.told = set(), False
        # Only what NumPy would have warned of: a caller's np.seterr(all="raise") (to find where a NaN is
        # born) raises as it did, and a handler of the caller's own ("call", or "log" to its write) stays theirs.
        modes = np.geterr()
        self.modes = {} if {"call", "log"} & set(modes.values()) else {
            kind: "call" for kind in ("over", "invalid", "divide") if modes[kind] == "warn"}

    def watching(self):
        """A context in which NumPy's floating-point errors are noted here rather than warned of."""
        return np.errstate(**self.modes, call=self.note) if self.modes else contextlib.nullcontext()

    def note(self, kind: str, flag: int) -> None:
        self.seen.add(kind)

    def tell(self, step: int, m: dict, dtype: str) -> None:
        """After step ``step`` (its metrics ``m``) whose loss is finite: warn of what it reported, once."""
        if self.seen and not self.told:
            self.told = True
            warn(f"step {step} overflowed {dtype} (NumPy reported: {', '.join(sorted(self.seen))}), though "
                 f"its loss is finite ({m['loss']:.4g}): the weights may be growing without bound; lower "
                 f"the learning rate (lr {m['lr']:.3g})")
        self.seen.clear()


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    ``dataset`` is the data as the networks see it before augmentation (feature vectors
    standardised with the train statistics, images unchanged), and ``input_norm`` the
    per-view normalisation of images, so ``evaluate_features(result.state.online,
    result.dataset, result.input_norm, backend)`` probes what was trained.
    ``preprocessing`` is the JSON form of both (:func:`fit_preprocessing`). ``start_step`` is
    the step the call began at (the checkpoint's on resume), so ``state.step - start_step``
    steps ran in it.
    """

    state: TrainState
    history: list
    model_config: Config
    train_config: TrainConfig
    input_norm: InputNorm | None
    dataset: Dataset
    preprocessing: dict
    start_step: int = 0

    def __repr__(self) -> str:  # (245 KB printed in full, for a run on the digits)
        steps = [h["step"] for h in self.history if isinstance(h, dict) and "step" in h]
        history = f"<{len(self.history)} records" + (f", steps {steps[0]}..{steps[-1]}>" if steps else ">")
        return (f"FitResult(state={self.state!r}, history={history}, model_config={self.model_config!r}, "
                f"train_config={self.train_config!r}, input_norm={self.input_norm!r}, dataset={self.dataset!r}, "
                f"preprocessing={_describe_preprocessing(self.preprocessing)}, start_step={self.start_step!r})")


def _describe_preprocessing(prep) -> str:
    """:func:`fit_preprocessing`'s dict for a repr: its per-feature lists as their length."""
    if not isinstance(prep, dict):
        return repr(prep)
    return "{" + ", ".join(f"{k!r}: " + (f"<{len(v)} floats>" if isinstance(v, list) and len(v) > 4 else repr(v))
                           for k, v in prep.items()) + "}"


def fit_preprocessing(dataset: Dataset) -> dict:
    """How a run turns the data set's features into network inputs, fitted on its train split.

    Images are augmented in pixel space (values in [0, 1]) and only then normalised with
    the train set's scalar mean and std (an :class:`InputNorm` on each view). Feature
    vectors are standardised per feature first (:func:`byol_ref.data.feature_stats`) and
    augmented afterwards. The result is plain JSON, stored in every checkpoint so that
    features of new data are computed with the training statistics.

    Returns:
        ``{"kind": "image", "mean": m, "std": s}`` with floats, or
        ``{"kind": "standardize", "mean": [...], "std": [...]}`` with D floats each.
    """
    if dataset.image_shape is None:
        mean, std = feature_stats(dataset.x_train)
        return {"kind": "standardize", "mean": mean.tolist(), "std": std.tolist()}
    return {"kind": "image", "mean": float(dataset.x_train.mean()), "std": float(dataset.x_train.std())}


def preprocess(x, prep: dict, what: str = "x") -> tuple:
    """Apply a run's preprocessing (from :func:`fit_preprocessing`) to raw features.

    Args:
        x: host features (N, D).
        prep: the preprocessing dict (possibly another data set's: a checkpoint's).
        what: the name of ``x`` in error messages.

    Returns:
        (x as the networks see it before augmentation: standardised float64 rows, or the pixels
        unchanged; the per-view InputNorm for images, else None).
    """
    kind, mean, std = _preprocessing_record(prep)
    if kind == "image":
        return x, InputNorm(float(mean), float(std))
    if mean.shape != (x.shape[1],):
        raise ValueError(f"the preprocessing standardises {mean.size} features, but {what} has {x.shape[1]}")
    return standardize(x, mean, std), None


def _preprocessing_record(prep) -> tuple:
    """(kind, mean, std as float64 arrays) of a :func:`fit_preprocessing` dict, or a ValueError
    saying what is wrong with it (a checkpoint's: corrupt, or edited)."""
    try:
        kind = prep["kind"]
        if kind not in ("image", "standardize"):
            raise ValueError(f"unknown kind {kind!r}")
        mean, std = np.asarray(prep["mean"], dtype=np.float64), np.asarray(prep["std"], dtype=np.float64)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("mean and std must be finite and std > 0")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"preprocessing must come from fit_preprocessing, got {prep!r:.200} ({exc})") from None
    if kind == "image" and (mean.ndim or std.ndim):
        raise ValueError(f"an image preprocessing holds one mean and one std, got shapes {mean.shape}, {std.shape}")
    if std.shape != mean.shape:
        raise ValueError(f"preprocessing must come from fit_preprocessing: its mean has shape {mean.shape} but its "
                         f"std {std.shape}")
    return kind, mean, std


def apply_preprocessing(dataset: Dataset, prep: dict) -> tuple[Dataset, InputNorm | None]:
    """(the data set as the networks see it before augmentation, the per-view InputNorm or None).

    ``prep`` is from :func:`fit_preprocessing` (possibly another data set's: a checkpoint's).
    An image run's preprocessing also applies to the same pixels loaded as plain rows (a CSV
    export of the digits, say): the networks only need the values, not the image shape.
    """
    x_train, norm = preprocess(dataset.x_train, prep, f"{dataset.name} x_train")
    x_test, _ = preprocess(dataset.x_test, prep, f"{dataset.name} x_test")
    image_shape = dataset.image_shape if norm is not None else None  # standardised values are not pixels
    return dataset._replace(x_train=x_train, x_test=x_test, image_shape=image_shape), norm


def prepare_training_data(dataset: Dataset, views) -> tuple[dict, Dataset, InputNorm | None]:
    """Refuse data the run would silently mistreat, then preprocess them.

    * Image views clip every augmented view to [0, 1], so image pixels must already lie
      there (8-bit images divided by 255, the digits' counts by 16).
    * Standardising feature vectors must not overflow (values near the float64 limit).

    Args:
        dataset: the Dataset to train on.
        views: the pair of view configs the run will use.

    Returns:
        (``fit_preprocessing(dataset)``, then :func:`apply_preprocessing`'s data and InputNorm).
    """
    if any(isinstance(v, ImageAug) for v in views):
        span = pixels_outside(dataset.x_train)
        if span is not None:
            raise ArgumentError("scale_pixels", "image pixels must lie in [0, 1] (the image augmentations clip "
                                f"each view to that range), but x_train spans {span}", subject=f"{dataset.name}:",
                                advice="divide them by their full scale (255 for 8-bit images; load_file(..., "
                                "scale_pixels=True) and the command line read a file of uint8 or uint16 images so), "
                                "or load the rows as plain feature vectors (a 2-D table, augmented with VectorAug)")
    with np.errstate(over="ignore", invalid="ignore"):  # (an overflow is refused below, in words of its own)
        try:
            prep = fit_preprocessing(dataset)
        except ValueError as exc:  # (feature_stats refuses an overflowing std, naming x_train: say whose)
            raise ValueError(f"{dataset.name}: {exc}") from None
        data = input_norm = None
        if np.isfinite(np.asarray(prep["mean"])).all() and np.isfinite(np.asarray(prep["std"])).all():
            data, input_norm = apply_preprocessing(dataset, prep)
    if data is None or not np.isfinite(data.x_train).all():
        raise ValueError(f"{dataset.name}: {overflow_refusal('x_train', dataset.x_train, 'data')}")
    return prep, data, input_norm


def fit(dataset: Dataset, model_cfg: Config, tcfg: TrainConfig, *, backend: str | Backend = "numpy",
        out_dir=None, resume: bool = False, overwrite: bool = False, progress: bool = True,
        views: tuple | None = None, state: TrainState | None = None, stop_at: int | None = None, log=None,
        on_checkpoint=None, stop_requested=None, replacing: Replacing | None = None) -> FitResult:
    """Train BYOL on ``dataset.x_train``.

    Args:
        dataset: a Dataset (see ``byol_ref.data``).
        model_cfg: the networks' Config (its encoder_dim must match the data).
        tcfg: TrainConfig.
        backend: ``"numpy"``, ``"cupy"`` or a Backend (its dtype must match ``tcfg.dtype``).
        out_dir: run directory for metrics.jsonl and checkpoint.npz (None: nothing written).
        resume: continue from ``out_dir/checkpoint.npz``. ``tcfg`` must be the run's own but for
            ``epochs`` (a longer run); a ``warmup_epochs`` left at its default, there and here,
            keeps the run's warm-up (5% of its first length, not of the new one).
        overwrite: start a new run in an ``out_dir`` that holds one (its checkpoint.npz or
            metrics.jsonl), replacing it; without it, or ``resume``, that is refused. The run
            replaced waits in ``out_dir/.replaced`` until this one's first checkpoint, and comes
            back whole if this one stops before it (no file of the two runs mixes). A folder
            where a run still waits there (an overwrite killed outright before its first
            checkpoint left it) is refused without ``overwrite``, saying where that run is and how
            to put it back; ``overwrite`` replaces it.
        progress: show a progress bar on stderr (redrawn in place on a terminal and in a notebook,
            a line every 10% in a file or pipe).
        views: pair of augmentation configs (default: ``default_views_for(dataset)``; on resume,
            the ones stored in the checkpoint, and passing different ones is an error).
        state: start from (a copy of) this TrainState instead of a fresh one; it is left as it was.
        stop_at: stop after this many total steps (for tests of interrupted runs), with a checkpoint
            and a record of that step whether the logging cadence falls on it or not (so the
            metrics.jsonl of a run resumed from there holds that record besides the uninterrupted
            run's; a Ctrl-C or ``stop_requested`` adds none).
        log: callable for one-line messages (default: print to stderr).
        on_checkpoint: called with the step after each checkpoint is written.
        stop_requested: called after each step: None, or an exception to raise once the step's
            checkpoint is written (the CLI's Ctrl-C or SIGTERM, held off until the step is whole:
            ``byol_ref.rundir.interrupt_after_step``).
        replacing: a ``byol_ref.rundir.Replacing`` that has set aside the run ``out_dir`` held
            (the CLI's ``train --overwrite``, which writes the new run's config.json first): fit
            starts beside it and commits it at its first checkpoint (the replaced run goes);
            putting it back if the run stops before then is the caller's.

    Returns:
        FitResult.

    Raises:
        TrainingDiverged: a non-finite loss; the last good checkpoint is left in place.
        RunDirectoryBusy: another process is writing in ``out_dir`` (``byol_ref.rundir.RunLock``).

    Warns:
        UserWarning: once, at the first step whose loss is finite but which overflowed the dtype's
            range (NumPy's floating-point errors, which are not shown as NumPy's warnings).

    Examples:
        Two epochs of 52 training rows in batches of 16 are 6 steps (the last partial batch is dropped):

        >>> from byol_ref import Config
        >>> from byol_ref.data import synthetic
        >>> from byol_ref.train import TrainConfig, fit
        >>> data = synthetic(n=64, dim=8, n_classes=2, seed=0)
        >>> model_cfg = Config(encoder_dim=8, hidden_size=16, projection_dim=8, predictor_dim=8)
        >>> result = fit(data, model_cfg, TrainConfig(epochs=2, batch_size=16), out_dir=None, progress=False)
        >>> result.state.step, sorted(result.history[-1])
        (6, ['epoch', 'knn', 'loss', 'lr', 'step', 'tau', 'y_rank', 'z_rank', 'z_std', 'z_std_healthy'])
    """
    with RunLock("out_dir") as lock:  # out_dir is this process's alone while the run writes there
        return _fit(dataset, model_cfg, tcfg, backend=backend, out_dir=out_dir, resume=resume, overwrite=overwrite,
                    progress=progress, views=views, state=state, stop_at=stop_at, log=log,
                    on_checkpoint=on_checkpoint, stop_requested=stop_requested, replacing=replacing, lock=lock)


def _fit(dataset, model_cfg, tcfg, *, backend, out_dir, resume, overwrite, progress, views, state, stop_at, log,
         on_checkpoint, stop_requested, replacing, lock) -> FitResult:
    _check_fit_args(dataset, model_cfg, tcfg, out_dir=out_dir, progress=progress, views=views, state=state,
                    stop_at=stop_at, log=log, on_checkpoint=on_checkpoint, stop_requested=stop_requested)
    # Rows in C order, whatever the caller's layout: the same data train to the same bits (a Fortran-ordered
    # x_train, as torch's t.T.numpy() gives, summed its statistics in another order: 1e-11 apart in 6 steps).
    dataset = dataset._replace(x_train=np.ascontiguousarray(dataset.x_train),
                               x_test=np.ascontiguousarray(dataset.x_test))
    log = log or (lambda msg: print(msg, file=sys.stderr))
    overwrite = check_bool(overwrite, "overwrite")
    if check_bool(resume, "resume") and overwrite:
        raise ValueError("resume=True continues the run in out_dir, overwrite=True starts a new one over it: pass "
                         "one of them")
    if replacing is not None and (resume or overwrite or out_dir is None):
        raise ValueError("replacing: the run a caller set aside is replaced by a new run in out_dir; not with "
                         f"resume=True, overwrite=True or out_dir=None (got resume={resume}, overwrite={overwrite}, "
                         f"out_dir={out_dir!r})")
    if replacing is not None and Path(replacing.out) != Path(out_dir):
        raise ValueError(f"replacing set aside the run in {replacing.out}, not in out_dir {out_dir}")
    check_configs(model_cfg, tcfg)
    if model_cfg.encoder_dim != dataset.x_train.shape[1]:
        raise ValueError(f"model_cfg.encoder_dim is {model_cfg.encoder_dim}, but dataset.x_train has "
                         f"{dataset.x_train.shape[1]} features; the encoder takes one input per feature: expected "
                         f"Config(encoder_dim={dataset.x_train.shape[1]})")
    be = backend if isinstance(backend, Backend) else get_backend(backend, tcfg.dtype, tcfg.seed)
    if be.dtype != tcfg.dtype:
        raise ValueError(f"backend dtype {be.dtype} differs from TrainConfig.dtype {tcfg.dtype}")
    if out_dir is not None and not resume:  # (refused before the steps, not at their first checkpoint)
        _generator_state(*((be.rng, "backend.rng") if state is None else (state.rng, "state.rng")))
    requested_views = views
    views = views if views is not None else default_views_for(dataset)
    prep, data, input_norm = prepare_training_data(dataset, views)
    sched = make_schedules(tcfg, data.x_train.shape[0])
    if not (dataset.x_train != dataset.x_train[:1]).any():  # (a blank image file, a column of ones: it trained)
        warn(f"{dataset.name}: its {dataset.x_train.shape[0]} training rows are one and the same (every "
             "feature holds a single value): there is nothing in them to learn, and the collapse monitors "
             "read 0 whatever is trained")
    optimizer = make_optimizer_for(tcfg)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.npz" if out is not None else None
    if out is not None and out.is_dir():  # before its checkpoint is read
        lock.take(out)
        held = [name for name in ("checkpoint.npz", "metrics.jsonl") if (out / name).exists()]
        if held and not (resume or overwrite):
            raise FileExistsError(f"out_dir {out} holds a run ({', '.join(held)}); pass resume=True to continue it, "
                                  "overwrite=True to replace it, or choose another out_dir")
        if not (resume or overwrite) and replacing is None:  # a run an overwrite killed outright set aside:
            # not beside it (its checkpoint would be taken for the killed overwrite's, and the run set aside removed)
            refuse_for_set_aside(out, "out_dir ", overwrite="overwrite=True", error=FileExistsError)

    warmup_default = tcfg.warmup_epochs == _default_warmup(tcfg)  # (a fresh run's; a resumed run's is its own)
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            if out is not None:  # (a run a killed overwrite set aside: where it is, and how to put it back)
                refuse_for_set_aside(out, "resume=True: ", overwrite="overwrite=True")
            raise FileNotFoundError(f"resume=True: no checkpoint at {ckpt_path} (a run stopped before its first "
                                    "checkpoint has nothing to continue: start it again with overwrite=True)")
        state, saved_model, saved_train, meta = load_checkpoint(ckpt_path, be)
        if saved_model != model_cfg:
            raise ValueError(f"resume=True: the checkpoint's model config differs: {saved_model} vs {model_cfg}")
        # The run's warm-up was left at its default: 5% of its first length, which a run resumed for another
        # length holds on to (and then records, as it is no longer 5% of the length the checkpoint holds).
        # (a checkpoint from before meta recorded it: judged by its value, 5% of the length it holds)
        warmup_default = meta["warmup_default"] is True if "warmup_default" in meta else \
            saved_train.warmup_epochs == _default_warmup(saved_train)
        if tcfg.warmup_epochs == _default_warmup(tcfg) and warmup_default:
            # Both left at the default (5% of the run): the run's warm-up goes on, not 5% of the new length
            # (a TrainConfig made afresh for a longer run was refused, naming a warmup_epochs nobody set).
            tcfg = replace(tcfg, warmup_epochs=saved_train.warmup_epochs)
            sched = make_schedules(tcfg, data.x_train.shape[0])
        if replace(saved_train, epochs=tcfg.epochs) != tcfg:
            a, b = asdict(saved_train), asdict(tcfg)
            diff = "; ".join(f"{k}: {a[k]!r} in the checkpoint, {b[k]!r} requested" for k in a
                             if k != "epochs" and a[k] != b[k])
            raise ValueError(f"resume=True: the checkpoint's training config differs from the requested one ({diff}); "
                             "only epochs may change")
        if "views" in meta:  # the run's augmentations continue unless others are asked for (an error)
            saved_views = recorded_views(meta, ckpt_path)
            if requested_views is not None and tuple(requested_views) != saved_views:
                raise ValueError(f"resume=True: the checkpoint was trained with other augmentations: {saved_views} "
                                 f"vs {tuple(requested_views)}")
            views = saved_views
        check_same_training_data(state, meta, prep, data.x_train.shape[0], ckpt_path)
        check_resume_length(state.step, sched, tcfg, ckpt_path)
        remove_stale(out)
        remove_replaced(out)  # (one beside the checkpoint: an overwrite killed after its first left its old run)
        log(f"resuming from {ckpt_path} at step {state.step}")
    elif state is None:
        x_init = init_sample(data.x_train.astype(tcfg.dtype), input_norm, be) if tcfg.data_init else None
        state = init_state(model_cfg, tcfg, be, x_init)
    else:  # the caller's stays as it was (the steps work in place): a second run from it starts where this did
        state = _copy_state(state)

    # The run's augmentations (for --resume) and input preprocessing (for features of new data).
    ckpt_extra = {"views": views_to_dicts(views), "preprocessing": prep, "warmup_default": warmup_default,
                  "total_steps": sched.total_steps}  # (eval and embed tell a checkpoint short of it)
    history = []
    metrics_file = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        lock.take(out)
        if resume:  # records past the checkpoint (an interrupted run logs ahead of it) are written again
            _drop_records_after(out / "metrics.jsonl", state.step)
    eval_every = tcfg.eval_every or max(sched.total_steps // 10, 1)
    watched = monitor_subset(data, tcfg.monitor_rows)  # what the kNN monitor scores
    x_train = data.x_train.astype(tcfg.dtype)
    bar = Progress(sched.total_steps, enabled=progress)
    end = sched.total_steps if stop_at is None else min(stop_at, sched.total_steps)
    n, B = x_train.shape[0], tcfg.batch_size
    start_step = state.step
    # overwrite: the run in out_dir goes whole at this run's first checkpoint, and comes back whole if this one
    # stops before it; its checkpoint beside this run's metrics would be offered to a resume (rundir.Replacing).
    own = Replacing(out, "fit(overwrite=True)") if out is not None and overwrite and not resume else None
    if own is not None:
        own.set_aside()
    put_back = own is not None and own.aside is not None  # (when this run stops before a checkpoint)
    replacing = own if replacing is None else replacing  # (the caller's, or this call's own)
    try:
        if out is not None:
            metrics_file = open(out / "metrics.jsonl", "a" if resume else "w", encoding="utf-8")
        overflows = _Overflows()  # (NumPy's own warnings of them came before the divergence message, in its words)
        if state.step == 0:  # where the encoder starts: the kNN of the random init
            first = {"step": 0, "epoch": 0.0, **knn_monitor(state.online, watched, input_norm, be)}
            if "knn" in first:
                history.append(first)
                if metrics_file is not None:
                    _log_record(metrics_file, first)
        while state.step < end:
            if state.epoch_perm is None or state.epoch_pos >= sched.steps_per_epoch:
                state = state._replace(epoch_perm=state.rng.permutation(n).astype(np.int64), epoch_pos=0)
            idx = state.epoch_perm[state.epoch_pos * B:(state.epoch_pos + 1) * B]
            xb = be.asarray(x_train[idx])
            with overflows.watching():
                state, m = train_step(state._replace(epoch_pos=state.epoch_pos + 1), xb, optimizer=optimizer,
                                      schedules=sched, views=views, tcfg=tcfg, image_shape=data.image_shape,
                                      input_norm=input_norm, inplace=True)
            # (the messages count steps as metrics.jsonl, the progress bar and checkpoints do: step k is the
            # k-th, after which k are done; its lr and tau are the ones that step used)
            if not math.isfinite(m["loss"]):
                kept = ("" if ckpt_path is None else
                        f" The last good checkpoint {ckpt_path} is untouched." if ckpt_path.is_file() else
                        " No checkpoint was written before it." + (" The run it replaces (overwrite=True) is "
                                                                   "put back." if put_back else ""))
                raise TrainingDiverged(
                    f"the loss became {m['loss']} at step {state.step} (lr {m['lr']:.3g}, tau {m['tau']:.5f}); "
                    f"stopping.{kept} Lower the learning rate or check the data.")
            k = state.step
            monitor = k % eval_every == 0 or k == sched.total_steps  # the kNN, about ten times a run
            if k % tcfg.log_every == 0 or k == end or monitor:
                record = _step_record(k, sched, m)
                if monitor:
                    with overflows.watching():
                        record.update(knn_monitor(state.online, watched, input_norm, be))
                history.append(record)
                if metrics_file is not None:
                    _log_record(metrics_file, record)
            overflows.tell(k, m, tcfg.dtype)
            bar.update(k, loss=m["loss"], lr=m["lr"], tau=m["tau"])
            stop = stop_requested() if stop_requested is not None else None
            due = stop is not None or (tcfg.checkpoint_every and k % tcfg.checkpoint_every == 0) or k == end
            if due:  # every array a checkpoint holds, as load_checkpoint checks them: a running variance or
                # an Adam second moment can overflow while the loss and the params stay finite
                bad = _first_non_finite(state)
                if bad is not None:
                    kept = ("" if ckpt_path is None else
                            f" without overwriting the last good checkpoint {ckpt_path}" if ckpt_path.is_file() else
                            " (no checkpoint was written before it" + ("; the run it replaces (overwrite=True) "
                                                                       "is put back" if put_back else "") + ")")
                    raise TrainingDiverged(f"{bad} became non-finite by step {k} (lr {m['lr']:.3g}), the loss "
                                           f"still {m['loss']:.4g}; stopping{kept}. Lower the learning rate.")
            if ckpt_path is not None and due:
                if metrics_file is not None:  # on disk before the checkpoint is: a resume after a power cut
                    with ckpt.naming_file(metrics_file.name):  # finds every record up to the checkpoint's step
                        os.fsync(metrics_file.fileno())
                save_checkpoint(ckpt_path, state, model_cfg, tcfg, extra=ckpt_extra)
                if replacing is not None:
                    replacing.commit()
                if on_checkpoint is not None:
                    on_checkpoint(k)
            if stop is not None:
                raise stop
    except BaseException:
        if own is not None:  # without a checkpoint of this run, the run it replaces comes back
            if metrics_file is not None:
                metrics_file.close()  # (this run's metrics.jsonl goes)
            own.stopped()
        raise
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
    return FitResult(state, history, model_cfg, tcfg, input_norm, data, prep, start_step)


def _check_fit_args(dataset, model_cfg, tcfg, *, out_dir, progress, views, state, stop_at, **callbacks) -> None:
    """Refuse an argument of :func:`fit` that would fail deep inside it, naming nothing (an
    AttributeError, "'int' object is not callable" after the first checkpoint), or be taken quietly
    (``progress=1``, an empty ``views`` read as the default, ``out_dir=""`` writing into the working
    folder, a negative ``stop_at`` training nothing)."""
    check_types(dataset=(dataset, Dataset), model_cfg=(model_cfg, Config), tcfg=(tcfg, TrainConfig))
    # (fit copies the data to its backend: a torch tensor or a matrix is copied as a plain array, but a mask
    # would be dropped, and the values it hides trained on)
    check_plain({f"dataset.{k}": getattr(dataset, k) for k in ("x_train", "y_train", "x_test", "y_test")},
                host_copy=True)
    for split in ("x_train", "x_test"):  # (x_test: None failed on "'NoneType' object has no attribute 'shape'")
        x = getattr(dataset, split)
        kind, copied = getattr(getattr(x, "dtype", None), "kind", None), ""
        if kind is None and getattr(x, "ndim", None) == 2:  # a DataFrame's dtypes, a torch tensor's: what they copy to
            try:  # (a bare object with a shape copied to a 0-d object array: "tuple index out of range")
                dtype = np.asarray(x).dtype
                kind, copied = dtype.kind, f", which copies to an array of dtype {dtype}"
            except Exception as exc:  # (the copy fit would make: a torch tensor that requires grad refuses it)
                copied = f", which does not copy to an array ({type(exc).__name__}: {exc})"
        if getattr(x, "ndim", None) != 2 or kind not in ("f", "i", "u", "b"):
            got = f"{type(x).__name__} of shape {x.shape} and dtype {x.dtype}" if hasattr(x, "dtype") and hasattr(
                x, "shape") else type(x).__name__
            got += copied
            shape = "(N, D)" if split == "x_train" else "(N_test, D), where N_test may be 0,"
            raise TypeError(f"dataset.{split} must be a 2-D array {shape} of real numbers, got {got}")
    x = dataset.x_train
    if dataset.x_test.shape[1] != x.shape[1]:
        raise ValueError(f"dataset.x_test has {dataset.x_test.shape[1]} features per row, but dataset.x_train has "
                         f"{x.shape[1]}; expected the same features")
    check_finite(dataset.x_test, "dataset.x_test")  # (it was "x has ... non-finite", from the preprocessing)
    if not isinstance(dataset.name, str) or not dataset.name.strip():  # (every message about the data leads with it)
        raise TypeError(f"dataset.name must be a non-empty str (what messages call the data), got {dataset.name!r}")
    if dataset.image_shape is not None:
        shape = check_image_shape(dataset.image_shape, "dataset.image_shape")
        if math.prod(shape) != x.shape[1]:
            raise ValueError(f"dataset.image_shape {shape} has {math.prod(shape)} pixels, but dataset.x_train has "
                             f"{x.shape[1]} features per row; expected image_shape to fold a row, or None")
    if out_dir is not None:
        check_path(out_dir, "out_dir")
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise FileExistsError(f"out_dir {os.fspath(out_dir)} is a file, not a run directory; choose another "
                                  "out_dir")
        blocked = in_the_way(out_dir, folder=True)  # (a link to nothing: "[Errno 17] File exists")
        if blocked is not None:
            raise FileExistsError(f"out_dir {os.fspath(out_dir)}: {blocked}; choose another out_dir")
        if os.path.isdir(out_dir):  # (before the training whose checkpoint it could not hold)
            check_writable(out_dir, f"out_dir {os.fspath(out_dir)}", "choose another out_dir")
    check_bool(progress, "progress")
    if views is not None:
        if not isinstance(views, (tuple, list)) or len(views) != 2:
            raise TypeError(f"views must be None or a pair of augmentation configs (view 1, view 2), got "
                            f"{views!r:.200}")
        for i, v in enumerate(views):
            if not isinstance(v, (ImageAug, VectorAug)):
                raise TypeError(f"views[{i}] must be an ImageAug or a VectorAug, got {type(v).__name__}")
    check_types(state=(state, TrainState, None))
    if stop_at is not None:
        check_positive_int(stop_at, "stop_at", minimum=0)
    for name, fn in callbacks.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be None or a callable, got {fn!r:.100} ({type(fn).__name__})")


def recorded_views(meta: dict, ckpt_path) -> tuple:
    """The augmentations that the meta of checkpoint ``ckpt_path`` records, or a CheckpointError naming
    it where they do not read back (the file is corrupt or was edited)."""
    try:
        return views_from_dicts(meta["views"])
    except (TypeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{ckpt_path}: invalid augmentation settings ({exc})") from None


def check_same_training_data(state: TrainState, meta: dict, prep: dict, n: int, ckpt_path,
                             flag: str = "resume=True") -> None:
    """Refuse to resume a run on a training split other than its own: the checkpoint's epoch order
    would index rows the split does not have, or quietly use only its first rows for the rest of
    the epoch, and the schedules would count other epochs. The split's size is the epoch order's;
    its input statistics (``preprocessing``) are what the checkpoint recorded, up to the last bits
    that another NumPy build may round differently.

    Args:
        state, meta: the checkpoint's TrainState and meta (``load_checkpoint``), of ``ckpt_path``.
        prep: :func:`fit_preprocessing` of the data to resume on; ``n``: its training rows.
        flag: how the caller's user asked to resume, which the messages name.
    """
    perm = state.epoch_perm
    if perm is not None and perm.size != n:
        raise ValueError(f"{flag}: {ckpt_path} was trained on {perm.size} training samples, but the data has "
                         f"{n}: resume with the data the run trained on")
    if meta.get("preprocessing") is None:
        return
    try:  # (a record no run writes is the checkpoint's fault, where it was told as other data)
        saved = _preprocessing_record(meta["preprocessing"])
    except ValueError as exc:
        raise ckpt.CheckpointError(f"{ckpt_path}: {exc}; {EDITED}") from None
    if not _same_statistics(saved, prep):
        raise ValueError(f"{flag}: the data is not what {ckpt_path} was trained on (its training split's "
                         "statistics differ from those the checkpoint recorded): resume with the data the run "
                         "trained on")


def _same_statistics(saved: tuple, prep: dict) -> bool:
    """Whether a checkpoint's ``fit_preprocessing`` record (as :func:`_preprocessing_record` reads
    it) and this one are of one training split (the same kind, and the same mean and std to within
    1e-9 of each value)."""
    kind, mean, std = saved
    if kind != prep["kind"]:
        return False
    for got, k in ((mean, "mean"), (std, "std")):
        want = np.asarray(prep[k], dtype=np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            return False
    return True


def _default_warmup(tcfg: TrainConfig) -> float:
    """The warmup_epochs a TrainConfig of this length gets when it is not given."""
    return replace(tcfg, warmup_epochs=None).warmup_epochs


def _log_record(f, record: dict) -> None:
    """Append one record to the open metrics.jsonl ``f``, and flush it: a write that finds the disk
    full fails here, naming the file, not later in a ``close``."""
    with ckpt.naming_file(f.name):
        f.write(json.dumps(record) + "\n")
        f.flush()


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite a metrics.jsonl without the records of steps after ``step`` (atomically), and without
    a line that is not a JSON record: the torn end of a write cut off (a crash, a full disk), onto
    which the next record would otherwise be appended."""
    if not path.is_file():
        return
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        at = record.get("step", 0) if isinstance(record, dict) else None
        if isinstance(at, (int, float)) and at <= step:  # else past the checkpoint, or no record of ours
            keep.append(line)
    if len(keep) != len(lines) or (text and not text.endswith("\n")):
        ckpt.atomic_write_text(path, "".join(line + "\n" for line in keep))


def _copy_state(state: TrainState) -> TrainState:
    """A TrainState that shares no array, nor the generator, with ``state``."""
    def tree(d):
        return {k: v.copy() if hasattr(v, "copy") else v for k, v in d.items()}

    nets = [n._replace(params=tree(n.params), buffers=tree(n.buffers)) for n in (state.online, state.target)]
    return state._replace(online=nets[0], target=nets[1], opt_state=tree(state.opt_state),
                          rng=copy.deepcopy(state.rng),
                          epoch_perm=None if state.epoch_perm is None else state.epoch_perm.copy())


def _first_non_finite(state: TrainState) -> str | None:
    """The first array of the state (params, buffers, optimiser state) with a NaN or an inf, named, or None."""
    for what, tree in (("online.params", state.online.params), ("target.params", state.target.params),
                       ("online.buffers", state.online.buffers), ("target.buffers", state.target.buffers),
                       ("the optimiser state", state.opt_state)):
        for k, v in tree.items():
            if getattr(v, "dtype", None) is not None and v.dtype.kind == "f" \
                    and not bool(get_array_module(v).isfinite(v).all()):
                return f"{what}[{k!r}]"
    return None


def _step_record(k, sched, m):
    from .evaluate import effective_rank, normalized_std

    z = to_numpy(m["outputs"]["online.z"][0])  # (N, P), view 1
    y = to_numpy(m["outputs"]["online.y"][0])
    if not (np.isfinite(z).all() and np.isfinite(y).all()):
        return {"step": k, "epoch": k / sched.steps_per_epoch, "loss": m["loss"], "lr": m["lr"], "tau": m["tau"]}
    return {"step": k, "epoch": k / sched.steps_per_epoch, "loss": m["loss"], "lr": m["lr"], "tau": m["tau"],
            "z_std": normalized_std(z), "z_std_healthy": 1 / math.sqrt(z.shape[1]),
            "z_rank": effective_rank(z), "y_rank": effective_rank(y)}


# --------------------------------------------------------------------------- features


def encode(network: Network, x, input_norm: InputNorm | None, backend: Backend, *, batch: int = 2048,
           which: str = "y", finite: bool = False):
    """Features of ``x`` (host array) from an eval-mode network: ``y`` (encoder) or ``z`` (projector);
    ``finite``: refuse rows whose features are inf or NaN (inputs beyond what the network's sums hold),
    naming the first, where they are returned otherwise (a diverging run's monitor skips them)."""
    from .model import network_forward

    # (a batch of -1 returned no rows for any x, 0 and 2.5 failed inside range(); which="q", a 1-D x or no
    # backend failed as KeyError or AttributeError)
    check_types(network=(network, Network), input_norm=(input_norm, InputNorm, None), backend=(backend, Backend))
    check_choice(which, "which", ("y", "z"))
    batch = check_positive_int(batch, "batch")
    check_array(x, "x", ndim=2, last_dim=network.config.encoder_dim)
    outs, bad_rows = [], []
    for i in range(0, x.shape[0], batch):
        xb = backend.asarray(x[i:i + batch])
        with np.errstate(**({"over": "ignore", "invalid": "ignore"} if finite else {})):  # (refused below)
            if input_norm is not None:
                xb = input_norm(xb)
            o, _, _ = network_forward(network.config, network.role, network.params, network.buffers, xb,
                                      train=False)
        out = to_numpy(o[which])  # (B, H) or (B, P)
        if finite:  # (finite inputs too large for the network's sums: embed wrote inf/NaN)
            bad_rows.extend(i + np.flatnonzero(~np.isfinite(out).all(axis=1)))  # every batch's: all are counted
        outs.append(out)
    if bad_rows:
        row = int(bad_rows[0])
        seen = backend.asarray(x[row:row + 1])  # the row as the network took it, input normalisation included
        with np.errstate(over="ignore", invalid="ignore"):
            seen = to_numpy(input_norm(seen) if input_norm is not None else seen)
        raise ValueError(f"the network's features of {len(bad_rows)} row(s) are not finite (inf or NaN), the "
                         f"first row {row}, whose largest input magnitude after the run's preprocessing is "
                         f"{float(np.abs(seen.astype(np.float64)).max()):.3g}: values beyond what "
                         f"the network computes in {backend.dtype}; rescale these data as the run's were")
    if not outs:  # no rows (an empty test split): (0, width), the width that of one row's features
        return encode(network, np.zeros((1, x.shape[1])), None, backend, which=which)[:0]
    return np.concatenate(outs)


def checkpoint_file(path) -> Path:
    """The checkpoint of ``path``: the file itself, or ``checkpoint.npz`` in a run directory."""
    path = Path(path)
    return path / "checkpoint.npz" if path.is_dir() else path


def checkpoint_features(path, x, *, which: str = "y", backend: Backend | None = None, batch: int = 2048):
    """Features of new inputs from a saved run: its online network in eval mode, after the
    run's own input preprocessing (stored in the checkpoint, see :func:`fit_preprocessing`).

    Args:
        path: a checkpoint ``.npz`` or a run directory holding ``checkpoint.npz``.
        x: host array (N, D), the same kind of values the run trained on (for the embedded
            digits: ``pixel / 16`` in [0, 1], as :func:`byol_ref.data.load_digits` returns).
            An image run also takes 8-bit or 16-bit pixels (uint8, uint16), divided by their full
            scale as :func:`byol_ref.data.load_file` reads them, and warns of pixels outside [0, 1].
        which: ``"y"`` (encoder output, the representation) or ``"z"`` (projector output).
        backend: where to run (default: NumPy in the checkpoint's dtype).
        batch: rows per forward pass.

    Returns:
        NumPy array (N, H) for ``"y"`` or (N, P) for ``"z"``, in the checkpoint's dtype.
    """
    ckpt_path = checkpoint_file(path)
    check_choice(which, "which", ("y", "z"))
    batch = check_positive_int(batch, "batch")  # (-1 returned no rows, 0 failed inside range())
    state, model_cfg, tcfg, meta = load_checkpoint(ckpt_path, backend)
    if "preprocessing" not in meta:
        raise ckpt.CheckpointError(f"{ckpt_path} holds no input statistics (meta 'preprocessing'): it predates "
                                   "them, or save_checkpoint wrote it without extra={'preprocessing': "
                                   "fit_preprocessing(dataset)}; use `byol-ref eval` or `byol-ref embed`, which refit "
                                   "them on the run's data")
    x = np.asarray(x)
    images = isinstance(meta["preprocessing"], dict) and meta["preprocessing"].get("kind") == "image"
    if images and x.dtype.kind == "u" and x.dtype.itemsize <= 2:  # (8-bit or 16-bit pixels, as load_file reads them)
        x = x / (pixel_full_scale(x) or 1)
    x = check_array(x, "x", ndim=2, last_dim=model_cfg.encoder_dim)
    if images:
        _warn_of_other_pixels(x, ckpt_path)
    raw = x
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # (what overflows is refused just below)
            x, input_norm = preprocess(x, meta["preprocessing"])
    except ValueError as exc:
        raise ckpt.CheckpointError(f"{ckpt_path}: {exc}; {EDITED}") from None
    beyond = values_beyond(x, input_norm, tcfg.dtype)
    if beyond is not None:  # (the network's check said x was not finite, of the x given, which was)
        n, at, limit = beyond
        raise ValueError(f"x has {n} value(s) that the run's input standardisation (its training data's mean and "
                         f"std, recorded in {ckpt_path}) takes beyond {tcfg.dtype}'s range (magnitude {limit:.3g}), "
                         f"the first at index {at} (raw value {float(raw[at]):.3g}); the network would compute inf "
                         "and NaN features from them: rescale these data as the run's were")
    be = backend or get_backend("numpy", tcfg.dtype, seed=None)
    return encode(state.online, x.astype(tcfg.dtype), input_norm, be, batch=batch, which=which)


def values_beyond(x, input_norm: InputNorm | None, dtype: str) -> tuple | None:
    """Where preprocessed rows ``x`` (N, D), once an image run's per-view ``input_norm`` is applied,
    hold values a network computing in ``dtype`` cannot (beyond its largest magnitude, or NaN):
    ``(how many, the index of the first, that largest magnitude)``; None where there are none."""
    limit = float(np.finfo(dtype).max)
    if input_norm is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            x = input_norm(x)
    big = ~(np.abs(x) <= limit)  # (NaN too, should one ever arise)
    if not big.any():
        return None
    return int(big.sum()), tuple(int(i) for i in np.argwhere(big)[0]), limit


def pixels_outside(x) -> str | None:
    """The span ``[lo, hi]`` of pixels ``x`` as messages write it, where it leaves [0, 1], the range
    the image augmentations clip each view to (and so the only pixels an image run has seen); None
    where it does not (or ``x`` is empty). Train refuses such pixels; new inputs of a saved run are
    warned of.

    >>> pixels_outside(np.array([0.0, 0.5, 1.0])), pixels_outside(np.array([0, 255]))
    (None, '[0, 255]')
    """
    if not x.size:
        return None
    lo, hi = float(x.min()), float(x.max())
    return f"[{lo:.4g}, {hi:.4g}]" if lo < 0.0 or hi > 1.0 else None


def _warn_of_other_pixels(x, ckpt_path) -> None:
    """Warn where an image run's new inputs lie outside [0, 1]: the run never saw such pixels, and
    its features of them mean little."""
    span = pixels_outside(x)
    if span is not None:
        warn(f"x spans {span}, but {ckpt_path} trained on image pixels in [0, 1]: its features of "
             "these mean little; divide them by their full scale (255 for 8-bit images)")


def init_sample(x, input_norm, backend: Backend, *, max_rows: int = 4096):
    """The network inputs of a data-dependent initialisation: up to ``max_rows`` evenly spaced
    rows of ``x`` (all of them for the digits), on the backend, with the run's input
    normalisation; un-augmented, so that no random draw is spent on it."""
    rows = np.unique(np.linspace(0, x.shape[0] - 1, min(x.shape[0], max_rows)).round().astype(np.int64))
    xb = backend.asarray(x[rows])
    return input_norm(xb) if input_norm is not None else xb


def calibrate_batch_norm(network: Network, x, input_norm, backend: Backend) -> Network:
    """Set batch-norm running statistics to the statistics of ``x`` (one training-mode pass
    over the whole set), e.g. for a random-init baseline whose running stats are still 0/1."""
    from .model import network_forward

    fresh = {k: (v * 0 if k.endswith("count") else v) for k, v in network.buffers.items()}
    xb = backend.asarray(x)
    if input_norm is not None:
        xb = input_norm(xb)
    cfg = replace(network.config, bn_running="haiku")  # one debiased update = the batch value
    _, _, buffers = network_forward(cfg, network.role, network.params, fresh, xb, train=True)
    return network._replace(buffers=buffers)


#: The kNN monitor's neighbours (k): the report's default, 20 (fewer where the train split, or the subset the
#: monitor scores, has fewer rows).
MONITOR_K = 20


def monitor_sizes(data: Dataset, rows: int) -> tuple[int, int]:
    """(train rows, test rows) that :func:`monitor_subset` keeps: at most ``rows`` of each split (0: all)."""
    return tuple(min(x.shape[0], rows) if rows else x.shape[0] for x in (data.x_train, data.x_test))


def monitor_subset(data: Dataset, rows: int) -> Dataset:
    """``data`` with at most ``rows`` rows in each split (0: all), for the kNN monitor: a subset
    drawn by a generator of its own seed (the same rows on every resume, and the run's draws
    untouched), in the splits' order. ``data`` itself where no split is larger."""
    take = {}
    picker = np.random.default_rng(0)
    for split, size in zip(("train", "test"), monitor_sizes(data, rows)):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if size < x.shape[0]:
            keep = np.sort(picker.choice(x.shape[0], size, replace=False))
            take[f"x_{split}"], take[f"y_{split}"] = x[keep], None if y is None else y[keep]
    return data._replace(**take) if take else data


def knn_monitor(online: Network, data: Dataset, input_norm, backend: Backend) -> dict:
    """kNN (cosine, k = 20, or every train row where there are fewer) test accuracy of the online encoder,
    if the data are labelled."""
    from .evaluate import knn_accuracy

    if data.y_train is None or data.y_test is None or len(data.y_test) == 0:
        return {}
    tr = encode(online, data.x_train, input_norm, backend)
    te = encode(online, data.x_test, input_norm, backend)
    if not (np.isfinite(tr).all() and np.isfinite(te).all()):
        return {}  # diverging: the loss check or the checkpoint guard reports it
    k = min(MONITOR_K, tr.shape[0])  # (18 train rows, or monitor_rows=5: k = 20 was refused before step 0)
    return {"knn": knn_accuracy(tr, data.y_train, te, data.y_test, k=k)}
