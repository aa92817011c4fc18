"""Optimisers as pure ``init`` / ``update`` function pairs (optax style): SGD, LARS, Adam, AdamW.

Each optimiser ``<name>`` is two functions::

    state = <name>_init(params)
    new_params, new_state = <name>_update(grads, state, params, *, lr, <hyper>...,
                                          lr_mult=None, inplace=False)

``params``, ``grads`` and ``state`` are flat dicts with dotted keys (STYLE.md 3). The state
holds one buffer per parameter, keyed ``"<buffer>.<param key>"`` (``"momentum.encoder.fc1.weight"``),
and nothing else: the step count and the learning-rate schedule belong to the trainer, which
passes ``lr`` as a Python float each step. The one exception is Adam's bias correction, which
needs the number of updates so far; it is kept in the state as the 0-d integer array ``"count"``
so that an Adam state is self-contained.

Conventions shared by every update:

* ``lr`` is the scheduled learning rate (a Python float, >= 0); the learning rate multiplies the
  whole step and sits *outside* the momentum buffer (official LARS, torch SGD).
* ``lr_mult``: per-parameter multiplier of ``lr`` by key (a callable ``name -> float`` or a dict,
  missing keys meaning 1). :func:`predictor_lr_mult` gives the usual "predictor learns k times
  faster" rule. It plays the role of a torch param group's own ``lr``.
* ``exclude``: which tensors get no weight decay (and, for LARS, no trust ratio). ``"name"``
  (default, official BYOL): :func:`exclude_bias_and_norm`; ``"ndim"`` (solo-learn): ndim <= 1
  gets no weight decay, ndim == 1 gets no trust ratio; ``None``: nothing excluded (plain torch
  SGD/Adam); a callable ``(name, param) -> bool`` (True = excluded) for both; or a pair of
  callables ``(exclude_wd, exclude_lars)``.
* ``inplace=False`` (default) is pure: no input is mutated, and no output shares memory with an
  input. ``inplace=True`` overwrites the param and state arrays through ufunc ``out=`` arguments
  (a read-only one is refused by name before any is written).
  Either mode works without fresh weight-sized temporaries: on the CPU each tensor's update runs
  block by block (``kernels.blocks``) through block-sized scratch (two blocks for SGD and
  Adam/AdamW, one for LARS), and LARS keeps ``u = g + wd * p``, whose norm it needs whole, in one
  scratch buffer sized to the largest tensor and reused by every tensor; on CuPy each tensor's
  update is one fused kernel (LARS's after its two norms). Both modes run the very same sequence
  of ufunc calls (pure mode only points ``out=`` at new arrays), so their results are bitwise
  identical.
* dtype in = dtype out: all arithmetic is written into arrays of the param's dtype, and
  hyper-parameters are Python floats (weak scalars), so float32 params never pass through
  float64. Norms are reduced in the param's dtype.

Code works on NumPy and CuPy arrays alike (``xp`` from the arrays). LARS's "ratio = 1 when a
norm is 0" is computed with ``xp.where`` on 0-d arrays rather than a Python ``if``, so a GPU step
never waits for the device to answer a branch.

References:
    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, appendix C (LARS, weight decay
    1.5e-6, biases and BN parameters excluded). deepmind-research/byol ``utils/optimizers.py``
    (BYOL_FACTS a7); solo-learn ``solo/utils/lars.py`` and lightly ``lightly/utils/lars.py``
    (BYOL_FACTS d13-d15). You et al., "Large Batch Training of Convolutional Networks", 2017
    (LARS). Kingma & Ba, "Adam", 2015; Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", 2019 (AdamW).
"""
from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple, Union

from . import kernels
from .backend import FLOAT_DTYPES, get_array_module
from .backend import host as np
from .checks import check_bool, check_overwritable, check_plain, interval, same_dtype
from .tree import check_same_keys

__all__ = [
    "Optimizer", "make_optimizer", "exclude_bias_and_norm", "predictor_lr_mult",
    "sgd_init", "sgd_update", "lars_init", "lars_update",
    "adam_init", "adam_update", "adamw_init", "adamw_update",
]

LrMult = Union[Callable[[str], float], Mapping[str, float], None]
Exclude = Union[str, Callable[[str, Any], bool], tuple, None]


# ----------------------------------------------------------------------------------------------
# Filters and per-parameter learning-rate multipliers
# ----------------------------------------------------------------------------------------------

def exclude_bias_and_norm(name: str, param: Any = None) -> bool:
    """True when a parameter is *excluded* from weight decay and the LARS trust ratio.

    A key is excluded when its last component is ``"bias"`` (or ``"b"``, Haiku's name) or when any
    component contains ``"norm"`` (every BN/LN gamma and beta, e.g. ``"encoder.norm1.gamma"``).
    Linear and conv weights are included, the online classifier's weight too.

    Note the sign: the official filter of the same name returns True for *included* params
    (``False`` when ``path[-1] == "b" or "norm" in path[-2]``); here True means excluded.

    Args:
        name: dotted parameter key.
        param: the array (unused; present so that every filter has the same signature).

    Returns:
        bool, True if excluded.

    References:
        deepmind-research/byol ``utils/optimizers.py`` ``exclude_bias_and_norm`` (BYOL_FACTS a7).
    """
    del param
    if not isinstance(name, str):
        raise TypeError(f"name must be a dotted parameter key (str), got {type(name).__name__} {name!r}")
    parts = name.split(".")
    return parts[-1] in ("bias", "b") or any("norm" in part for part in parts)


def _exclude_ndim_wd(name: str, param: Any) -> bool:
    # solo-learn `exclude_bias_n_norm_wd`: every tensor with ndim <= 1 goes to a wd = 0 group.
    return param.ndim <= 1


def _exclude_ndim_lars(name: str, param: Any) -> bool:
    # solo-learn LARS.step: `if p.ndim != 1 or not exclude_bias_n_norm` -> ndim == 1 skips LARS.
    return param.ndim == 1


def _never(name: str, param: Any) -> bool:
    return False


def _exclude_fns(exclude: Exclude) -> tuple[Callable, Callable]:
    """Turn ``exclude`` into ``(exclude_wd, exclude_lars)``, two ``(name, param) -> bool`` filters."""
    if exclude == "name":
        return exclude_bias_and_norm, exclude_bias_and_norm
    if exclude == "ndim":
        return _exclude_ndim_wd, _exclude_ndim_lars
    if exclude is None:
        return _never, _never
    if callable(exclude):
        return exclude, exclude
    if isinstance(exclude, tuple) and len(exclude) == 2 and all(callable(f) for f in exclude):
        return exclude
    raise (ValueError if isinstance(exclude, str) else TypeError)(
        "exclude must be 'name', 'ndim', None, a callable (name, param) -> bool or a pair of "
        f"such callables (exclude_wd, exclude_lars), got {exclude!r}"
    )


def predictor_lr_mult(mult: float) -> Callable[[str], float]:
    """An ``lr_mult`` giving every ``"predictor."`` key ``mult`` times the learning rate.

    Args:
        mult: finite multiplier >= 0 (e.g. 10 for a predictor that learns faster than the rest).

    Returns:
        ``fn(name) -> float``: ``mult`` for keys starting with ``"predictor."``, else 1.0.
    """
    mult = _check_float(mult, "mult")

    def lr_mult(name: str) -> float:
        return mult if name.startswith("predictor.") else 1.0

    return lr_mult


def _lr_mults(lr_mult: LrMult, params: Mapping[str, Any]) -> dict[str, float]:
    """Resolve ``lr_mult`` into ``{key: float}`` for every key of ``params``."""
    if lr_mult is None:
        return {k: 1.0 for k in params}
    if isinstance(lr_mult, Mapping):
        extra = sorted(set(lr_mult) - set(params))
        if extra:
            raise ValueError(f"lr_mult has keys that are not in params: {extra}")
        get = lambda k: lr_mult.get(k, 1.0)  # noqa: E731
    elif callable(lr_mult):
        get = lr_mult
    else:
        raise TypeError(
            f"lr_mult must be None, a dict or a callable name -> float, got {type(lr_mult).__name__}"
        )
    return {k: _check_float(_call_lr_mult(get, k), f"lr_mult({k!r})") for k in params}


def _call_lr_mult(get, key: str):
    try:
        return get(key)
    except TypeError as exc:  # (a callable of another signature)
        raise TypeError(f"lr_mult({key!r}) raised TypeError: {exc}; a callable lr_mult takes one param name and "
                        "returns a float") from exc


# ----------------------------------------------------------------------------------------------
# Validation and shared plumbing
# ----------------------------------------------------------------------------------------------

def _check_float(value: Any, name: str, lo: float = 0.0, hi: float = math.inf,
                 hi_open: bool = False) -> float:
    """``value`` as a finite Python float in [lo, hi] (or [lo, hi)).

    Not a number (a string, a bool, None) is a TypeError; a number outside the interval, NaN or
    infinity a ValueError. Both name ``name``, the value and the interval. A 0-d array (a schedule's
    value on either backend) is a number.
    """
    expected = f"{name} must be a finite number in {interval(lo, hi, hi_open=hi_open)}, got {value!r}"
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{expected} ({type(value).__name__})")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{expected} ({type(value).__name__})") from None
    if not (math.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi)):
        raise ValueError(expected)
    return v


def _buffers_init(params: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict:
    """Zero buffers ``"<prefix>.<key>"`` shaped like each param."""
    if not isinstance(params, Mapping) or not all(hasattr(p, "shape") for p in params.values()):
        raise TypeError(f"params must be a dict name -> array, got {type(params).__name__}"
                        + (" holding " + ", ".join(sorted({type(p).__name__ for p in params.values()}))
                           if isinstance(params, Mapping) else ""))
    bad = {k: p.dtype.name for k, p in params.items() if getattr(p.dtype, "name", None) not in FLOAT_DTYPES}
    if bad:  # (int buffers would only be refused at the first update; complex ones hold no real step)
        raise ValueError(f"params must be {' or '.join(FLOAT_DTYPES)} arrays, got {bad}")
    return {f"{pre}.{k}": get_array_module(p).zeros_like(p) for pre in prefixes for k, p in params.items()}


def _check_inputs(grads, state, params, prefixes: tuple[str, ...], extra=(), *, op: str, inplace: bool) -> None:
    """Same keys, shapes and floating dtypes across params, grads and the optimiser state; in place,
    every array written is writable, checked before any is written (half an update is worse than
    none)."""
    check_same_keys(params, grads, "params", "grads")
    expected = {f"{pre}.{k}": k for pre in prefixes for k in params}  # state key -> param key
    check_same_keys(dict.fromkeys([*expected, *extra]), state, "the expected optimiser state", "state")
    for k, p in params.items():
        check_plain({f"params[{k!r}]": p, f"grads[{k!r}]": grads[k]})  # (before their dtypes are read)
        # (float16 too is refused: byol_ref computes in FLOAT_DTYPES, and Adam's eps 1e-8 is 0 in it)
        if getattr(p, "dtype", None) is None or p.dtype.name not in FLOAT_DTYPES:
            raise ValueError(f"params[{k!r}] must be a floating-point array ({' or '.join(FLOAT_DTYPES)}), got "
                             f"{type(p).__name__} of dtype {getattr(p, 'dtype', None)}")
        _check_like(grads[k], p, f"grads[{k!r}]", k)
    for sk, k in expected.items():
        _check_like(state[sk], params[k], f"state[{sk!r}]", k)
    check_overwritable(op, inplace, **{f"params[{k!r}]": p for k, p in params.items()},
                       **{f"state[{k!r}]": a for k, a in state.items()})


def _check_like(a, p, what: str, key: str) -> None:
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    if shape != p.shape or dtype is None or not same_dtype(dtype, p.dtype):
        raise ValueError(f"{what} must match params[{key!r}] (shape {p.shape}, dtype {p.dtype}), "
                         f"got shape {shape}, dtype {dtype}")


def _scratch(xp, params: Mapping[str, Any], n_slots: int) -> Callable[[Any], list]:
    """Preallocated scratch: ``n_slots`` flat buffers per dtype, sized to the largest tensor.

    Returns ``views(p)``: ``n_slots`` contiguous views shaped like ``p`` (first ``p.size`` entries
    of each buffer). Every tensor reuses the same memory, so a whole update allocates
    ``n_slots`` weight-sized arrays in total instead of several per tensor.
    """
    sizes: dict = {}
    for p in params.values():
        sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
    bufs = {dt: [xp.empty(n, dtype=dt) for _ in range(n_slots)] for dt, n in sizes.items()}
    return lambda p: [b[: p.size].reshape(p.shape) for b in bufs[p.dtype]]


def _out(a, inplace: bool):
    """Where a result goes: ``a`` itself when in place, otherwise a new array like ``a``."""
    return a if inplace else get_array_module(a).empty_like(a)


def _add_scaled(xp, g, p, wd, out) -> None:
    """``out = g + wd * p`` (computed as ``wd*p`` then ``+ g``, block by block: p, g read once, out
    written once). ``wd`` is a Python float or a 0-d array; a Python 0.0 copies ``g`` exactly."""
    kernels.run_blocked(lambda gb, pb, ob: kernels.add_scaled(xp, gb, pb, wd, ob), g, p, out)


def _norm(xp, a):
    """l2 norm of the whole tensor, in its own dtype (numpy: a 0-d scalar; cupy: a 0-d array)."""
    return xp.linalg.norm(a)


# ----------------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------------

def sgd_init(params: Mapping[str, Any]) -> dict:
    """Zero momentum buffers ``{"momentum.<key>": zeros_like(params[key])}``.

    Args:
        params: flat dict of parameter arrays.

    Returns:
        The SGD state (also kept when ``momentum = 0``, so the state's keys never depend on
        hyper-parameters).
    """
    return _buffers_init(params, ("momentum",))


def sgd_update(
    grads: Mapping[str, Any],
    state: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    exclude: Exclude = "name",
    lr_mult: LrMult = None,
    inplace: bool = False,
) -> tuple[dict, dict]:
    """One step of SGD with heavy-ball momentum and coupled (L2) weight decay, as torch.optim.SGD.

    For each tensor p with gradient g, buffer m (m_0 = 0) and learning rate lr_p = lr * lr_mult(key)::

        u = g + wd * p               (wd = 0 for excluded tensors)
        m <- momentum * m + u        (no dampening; the first step gives m = u, as torch's clone)
        p <- p - lr_p * m            or, Nesterov:  p <- p - lr_p * (u + momentum * m)

    Args:
        grads: gradients, exactly the keys, shapes and dtypes of ``params``.
        state: from :func:`sgd_init` or a previous update.
        params: current parameters.
        lr: learning rate (Python float >= 0).
        momentum: in [0, 1); 0 is plain SGD.
        weight_decay: L2 coefficient >= 0, added to the gradient.
        nesterov: use the Nesterov form of the step.
        exclude: tensors without weight decay (see the module docstring); default by name.
        lr_mult: per-key learning-rate multiplier (callable or dict), or None.
        inplace: overwrite params and state arrays instead of returning new ones.

    Returns:
        ``(new_params, new_state)``.

    Raises:
        ValueError: a hyper-parameter out of range, or keys/shapes/dtypes that do not match.
        TypeError: a hyper-parameter of the wrong type (a string for a number, 1 for True).

    References:
        torch.optim.SGD (momentum, nesterov, weight_decay); Sutskever et al. 2013.
    """
    lr = _check_float(lr, "lr")
    momentum = _check_float(momentum, "momentum", 0.0, 1.0, hi_open=True)
    weight_decay = _check_float(weight_decay, "weight_decay")
    nesterov = check_bool(nesterov, "nesterov")
    inplace = check_bool(inplace, "inplace")
    exclude_wd, _ = _exclude_fns(exclude)
    _check_inputs(grads, state, params, ("momentum",), op="sgd_update", inplace=inplace)
    mults = _lr_mults(lr_mult, params)
    xp = get_array_module(*params.values())

    new_params, new_state = {}, {}  # new dicts; in place they hold the same arrays
    for k, p in params.items():
        g, m = grads[k], state["momentum." + k]
        p_out, m_out = _out(p, inplace), _out(m, inplace)
        wd = 0.0 if exclude_wd(k, p) else weight_decay
        # u = g + wd*p;  m = momentum*m + u;  p = p - lr_p*m  (Nesterov: p - lr_p*(u + momentum*m))
        # (blocked on the CPU, one fused kernel on CuPy)
        kernels.sgd_apply(xp, g, p, m, wd, momentum, lr * mults[k], nesterov, m_out, p_out)
        new_params[k], new_state["momentum." + k] = p_out, m_out
    return new_params, new_state


# ----------------------------------------------------------------------------------------------
# LARS
# ----------------------------------------------------------------------------------------------

def lars_init(params: Mapping[str, Any]) -> dict:
    """Zero momentum buffers ``{"momentum.<key>": zeros_like(params[key])}`` (official m_0 = 0).

    Examples:
        >>> import numpy as np
        >>> from byol_ref.optim import lars_init
        >>> state = lars_init({"fc.weight": np.ones((2, 3)), "fc.bias": np.ones(3)})
        >>> sorted(state), float(state["momentum.fc.weight"].sum())
        (['momentum.fc.bias', 'momentum.fc.weight'], 0.0)
    """
    return _buffers_init(params, ("momentum",))


def lars_update(
    grads: Mapping[str, Any],
    state: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-6,
    eta: float = 1e-3,
    trust_ratio: str = "norm_of_sum",
    eps: float = 0.0,
    exclude: Exclude = "name",
    clip_lr: bool = False,
    only_with_wd: bool = False,
    lr_mult: LrMult = None,
    inplace: bool = False,
) -> tuple[dict, dict]:
    """One LARS step, exactly as the official BYOL code by default.

    Official (``trust_ratio="norm_of_sum"``, BYOL_FACTS a7), per tensor, norms over the whole
    tensor, lr_p = lr * lr_mult(key)::

        u = g + wd * p                           only if the weight-decay filter passes
        u <- u * r,  r = eta ||p|| / ||u||       only if the LARS filter passes;
                                                 r = 1 when ||p|| = 0 or ||u|| = 0 (no eps)
        m <- momentum * m + u                    heavy ball, m_0 = 0, no dampening, no Nesterov
        p <- p - lr_p * m                        the learning rate sits outside the buffer

    Note that u already holds the weight-decay term when the trust ratio is taken, and that
    a tensor with a zero norm still gets weight decay. On the first step (m = 0) a
    non-excluded tensor moves by exactly ``lr_p * eta * ||p||``.

    Variants, to reproduce other implementations (BYOL_FACTS d13, d14):

    * ``trust_ratio="sum_of_norms"`` (solo-learn, lightly): ``r = eta ||p|| / (||g|| + wd ||p|| + eps)``
      and ``u = (g + wd p) * r``. Weight decay lives inside this LARS branch as in their ``step``:
      when ``||p|| = 0`` or ``||g|| = 0``, or when the LARS filter excludes the tensor, neither
      weight decay nor scaling is applied (u = g). The weight-decay filter still zeroes ``wd``
      for the tensors it excludes (solo-learn's classifier: no wd, still LARS-scaled).
      solo-learn and lightly use ``eps=1e-8``.
    * ``eps``: added to the trust-ratio denominator in either mode (official: 0). The
      "ratio = 1 when a norm is 0" rule is kept regardless.
    * ``exclude="ndim"`` (solo-learn): ndim == 1 skips LARS, ndim <= 1 gets wd = 0. lightly
      excludes by param group (groups with wd = 0 skip LARS): pass one callable that returns
      True for the wd = 0 tensors, so that it gates both, or ``exclude="name"`` with
      ``only_with_wd``.
    * ``only_with_wd=True`` (lightly: its ``step`` scales only ``if weight_decay != 0``): a tensor
      whose weight decay is 0 (``weight_decay=0``, or the weight-decay filter excludes it) skips
      LARS too, so ``weight_decay=0`` makes the whole step plain momentum SGD.
    * ``clip_lr=True`` (solo-learn, used with eta = 0.02 on CIFAR): the multiplier becomes
      ``min(r / lr_p, 1)``, so the step is ``min(r, lr_p) * u`` instead of ``lr_p * r * u``.
      Only a computed ratio is clipped (not the r = 1 fallback), and with ``lr_p = 0`` the
      multiplier is 1, as torch's ``min(r / 0.0, 1)`` gives.

    Args:
        grads: gradients, exactly the keys, shapes and dtypes of ``params``.
        state: from :func:`lars_init` or a previous update.
        params: current parameters.
        lr: scheduled learning rate (Python float >= 0).
        momentum: in [0, 1) (0.9 everywhere).
        weight_decay: >= 0 (official 1e-6; 1.5e-6 for 1000 epochs; solo-learn CIFAR 1e-5).
        eta: trust coefficient > 0 (1e-3; solo-learn CIFAR 0.02).
        trust_ratio: ``"norm_of_sum"`` (official) or ``"sum_of_norms"`` (solo-learn, lightly).
        eps: >= 0, added to the ratio's denominator.
        exclude: ``"name"`` (official), ``"ndim"`` (solo-learn), None, a callable or a pair.
        clip_lr: solo-learn's clipping of the multiplier.
        only_with_wd: lightly's rule: no LARS for a tensor without weight decay.
        lr_mult: per-key learning-rate multiplier (callable or dict), or None.
        inplace: overwrite params and state arrays instead of returning new ones.

    Returns:
        ``(new_params, new_state)``.

    Raises:
        ValueError: a hyper-parameter out of range, or keys/shapes/dtypes that do not match.
        TypeError: a hyper-parameter of the wrong type (a string for a number, 1 for True).

    Examples:
        On the first step the weight moves by ``lr * eta * ||p||`` in norm (0.1 * 1e-3 * 6 = 6e-4, so 3e-4
        per entry); the bias, excluded by its name, takes a plain step of ``lr * g``:

        >>> import numpy as np
        >>> from byol_ref.optim import lars_init, lars_update
        >>> params = {"fc.weight": np.full((2, 2), 3.0), "fc.bias": np.ones(2)}
        >>> grads = {"fc.weight": np.ones((2, 2)), "fc.bias": np.ones(2)}
        >>> new_params, state = lars_update(grads, lars_init(params), params, lr=0.1)
        >>> round(float(new_params["fc.weight"][0, 0]), 6), [round(b, 6) for b in new_params["fc.bias"].tolist()]
        (2.9997, [0.9, 0.9])

    References:
        deepmind-research/byol ``utils/optimizers.py`` (``add_weight_decay``, ``scale_by_lars``,
        ``lars``); solo-learn ``solo/utils/lars.py``; lightly ``lightly/utils/lars.py``;
        You et al. 2017.
    """
    lr = _check_float(lr, "lr")
    momentum = _check_float(momentum, "momentum", 0.0, 1.0, hi_open=True)
    weight_decay = _check_float(weight_decay, "weight_decay")
    eta = _check_float(eta, "eta")
    if eta == 0.0:
        raise ValueError("eta must be > 0, got 0.0")
    eps = _check_float(eps, "eps")
    if trust_ratio not in ("norm_of_sum", "sum_of_norms"):
        error = ValueError if isinstance(trust_ratio, str) else TypeError
        raise error(f"trust_ratio must be 'norm_of_sum' (official) or 'sum_of_norms' (solo-learn, lightly), "
                    f"got {trust_ratio!r}")
    clip_lr = check_bool(clip_lr, "clip_lr")
    only_with_wd = check_bool(only_with_wd, "only_with_wd")
    inplace = check_bool(inplace, "inplace")
    exclude_wd, exclude_lars = _exclude_fns(exclude)
    _check_inputs(grads, state, params, ("momentum",), op="lars_update", inplace=inplace)
    mults = _lr_mults(lr_mult, params)
    xp = get_array_module(*params.values())
    views = _scratch(xp, params, 1)

    new_params, new_state = {}, {}  # new dicts; in place they hold the same arrays
    for k, p in params.items():
        g, m = grads[k], state["momentum." + k]
        p_out, m_out = _out(p, inplace), _out(m, inplace)
        (u,) = views(p)
        lr_p = lr * mults[k]
        wd = 0.0 if exclude_wd(k, p) else weight_decay
        use_lars = not exclude_lars(k, p) and (wd != 0.0 or not only_with_wd)

        if not use_lars and (trust_ratio == "sum_of_norms" or kernels.python_zero(wd)):
            u, r = g, None                                        # the plain gradient: read, never written
        elif trust_ratio == "norm_of_sum":
            _add_scaled(xp, g, p, wd, out=u)                      # u = g + wd*p
            if use_lars and not clip_lr:
                # r = eta||p||/(||u|| + eps), or 1;  u = u*r;  m = momentum*m + u;  p = p - lr_p*m
                # (on CuPy: the two squared norms, then one fused kernel)
                kernels.lars_trust_apply(xp, u, m, p, eta, eps, momentum, lr_p, m_out, p_out)
                new_params[k], new_state["momentum." + k] = p_out, m_out
                continue
            r, ok = kernels.lars_trust_ratio_ref(xp, p, u, eta, eps) if use_lars else (None, None)
        else:           # sum_of_norms with LARS
            p_norm, g_norm = _norm(xp, p), _norm(xp, g)
            ok = (p_norm > 0) & (g_norm > 0)
            r = kernels.ratio_or_one(xp, ok, eta * p_norm, g_norm + wd * p_norm + eps)
            # Weight decay only together with the ratio: where a norm is 0, wd -> 0 and u = g.
            _add_scaled(xp, g, p, xp.where(ok, xp.asarray(wd, dtype=p.dtype), xp.zeros((), p.dtype)), out=u)

        if use_lars and clip_lr:  # min(r/lr, 1): step = min(r, lr)*u; at lr 0 it is 1, as torch's min(r / 0.0, 1)
            one = xp.ones((), dtype=p.dtype)
            r = xp.where(ok, xp.minimum(r / lr_p, one), one) if lr_p > 0.0 else one
        # u = u*r;  m = momentum*m + u;  p = p - lr_p*m   (blocked on the CPU, one fused kernel on CuPy)
        kernels.lars_apply(xp, u, r, m, p, momentum, lr_p, m_out, p_out)
        new_params[k], new_state["momentum." + k] = p_out, m_out
    return new_params, new_state


# ----------------------------------------------------------------------------------------------
# Adam / AdamW
# ----------------------------------------------------------------------------------------------

def adam_init(params: Mapping[str, Any]) -> dict:
    """Zero moments ``"mu.<key>"``, ``"nu.<key>"`` and the update count ``"count"``.

    ``"count"`` (a 0-d int64 array, 0 here) is the one state entry that is not a per-parameter
    buffer: Adam's bias correction needs the number of updates applied so far, and keeping it in
    the state makes the state self-contained (optax's ``ScaleByAdamState.count`` likewise).

    Args:
        params: flat dict of parameter arrays.

    Returns:
        The Adam/AdamW state.
    """
    state = _buffers_init(params, ("mu", "nu"))
    xp = get_array_module(*params.values())
    state["count"] = xp.zeros((), dtype=xp.int64)
    return state


adamw_init = adam_init


def _adam_update(grads, state, params, *, lr, b1, b2, eps, weight_decay, decoupled, exclude,
                 lr_mult, inplace):
    """Adam (``decoupled=False``: L2 weight decay in the gradient) or AdamW (decoupled)."""
    lr = _check_float(lr, "lr")
    b1 = _check_float(b1, "b1", 0.0, 1.0, hi_open=True)
    b2 = _check_float(b2, "b2", 0.0, 1.0, hi_open=True)
    eps = _check_float(eps, "eps")
    weight_decay = _check_float(weight_decay, "weight_decay")
    inplace = check_bool(inplace, "inplace")
    exclude_wd, _ = _exclude_fns(exclude)
    _check_inputs(grads, state, params, ("mu", "nu"), extra=("count",), op="adamw_update" if decoupled else
                  "adam_update", inplace=inplace)
    # eps > 0 in the params' own dtype (eps is added as a weak scalar: 1e-50 is 0 in float32): a
    # parameter whose gradient is exactly zero, such as a Linear bias before batch norm, has
    # m_hat = sqrt(v_hat) = 0, so eps = 0 would make its step 0/0 = NaN. A scalar check per dtype.
    why = ("a parameter with an exactly-zero gradient (a bias before batch norm) would get "
           "m_hat / (sqrt(v_hat) + eps) = 0/0 = NaN")
    if eps == 0.0:
        raise ValueError(f"eps must be > 0, got {eps!r}: {why}")
    for dtype in {p.dtype for p in params.values()}:
        if np.dtype(dtype).type(eps) == 0:
            raise ValueError(f"eps={eps!r} is 0 in the {np.dtype(dtype).name} params (it must be > 0 there): {why}")
    count = state["count"]
    if getattr(count, "shape", None) != () or count.dtype.kind not in "iu":
        raise ValueError(f"state['count'] must be a 0-d integer array, got {count!r}")
    t = int(count) + 1                       # this update's number, 1 on the first step
    if not 1 <= t <= np.iinfo(count.dtype).max:  # (a bias correction 1 - b**t of 0 would divide by zero)
        raise ValueError(f"state['count'] must count the updates so far (>= 0, with room for one more in its "
                         f"{count.dtype}), got {int(count)}")
    mults = _lr_mults(lr_mult, params)
    xp = get_array_module(*params.values(), count)

    new_params, mu, nu = {}, {}, {}  # new dicts; in place they hold the same arrays
    count_out = _out(count, inplace)
    xp.add(count, 1, out=count_out)
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t      # bias corrections (Python floats)

    for k, p in params.items():
        g, m, v = grads[k], state["mu." + k], state["nu." + k]
        p_out, m_out, v_out = _out(p, inplace), _out(m, inplace), _out(v, inplace)
        wd = 0.0 if exclude_wd(k, p) else weight_decay
        wd_l2, wd_dec = (0.0, wd) if decoupled else (wd, 0.0)  # Adam: in the gradient; AdamW: in the step
        # u = g + wd_l2*p;  m = b1*m + (1-b1)*u;  v = b2*v + (1-b2)*u^2;
        # p = p - lr_p*(m_hat / (sqrt(v_hat) + eps) + wd_dec*p)  (blocked on the CPU, one fused kernel on CuPy)
        kernels.adam_apply(xp, g, p, m, v, b1, b2, bc1, bc2, eps, wd_l2, wd_dec, lr * mults[k], m_out, v_out, p_out)
        new_params[k], mu["mu." + k], nu["nu." + k] = p_out, m_out, v_out
    return new_params, {**mu, **nu, "count": count_out}  # adam_init's keys, in its order


def adam_update(
    grads: Mapping[str, Any],
    state: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    lr: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    exclude: Exclude = "name",
    lr_mult: LrMult = None,
    inplace: bool = False,
) -> tuple[dict, dict]:
    """One Adam step with optional L2 weight decay added to the gradient (torch.optim.Adam).

    With t the update number (1 on the first step) and lr_p = lr * lr_mult(key)::

        u = g + wd * p                            (wd = 0 for excluded tensors)
        m <- b1 m + (1 - b1) u ;  v <- b2 v + (1 - b2) u^2
        p <- p - lr_p * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    byol-pytorch trains with Adam(lr=3e-4). Note that torch applies weight decay to every
    tensor; pass ``exclude=None`` to match it.

    Args:
        grads: gradients, exactly the keys, shapes and dtypes of ``params``.
        state: from :func:`adam_init` or a previous update (includes ``"count"``).
        params: current parameters.
        lr: learning rate (Python float >= 0).
        b1: first-moment decay in [0, 1).
        b2: second-moment decay in [0, 1).
        eps: > 0, added to sqrt(v_hat) (outside the square root); 0 would make a parameter
            with an exactly-zero gradient NaN (0/0).
        weight_decay: L2 coefficient >= 0.
        exclude: tensors without weight decay; default by name.
        lr_mult: per-key learning-rate multiplier (callable or dict), or None.
        inplace: overwrite params and state arrays instead of returning new ones.

    Returns:
        ``(new_params, new_state)``.

    References:
        Kingma & Ba 2015, algorithm 1; torch.optim.Adam; optax.adam.
    """
    return _adam_update(grads, state, params, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                        decoupled=False, exclude=exclude, lr_mult=lr_mult, inplace=inplace)


def adamw_update(
    grads: Mapping[str, Any],
    state: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    lr: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    exclude: Exclude = "name",
    lr_mult: LrMult = None,
    inplace: bool = False,
) -> tuple[dict, dict]:
    """One AdamW step: Adam on the raw gradient plus decoupled weight decay.

    As :func:`adam_update` with ``u = g``, and the decay applied to the old params, scaled by the
    learning rate (optax.adamw's form; torch's ``p *= 1 - lr*wd`` first is the same to rounding)::

        p <- p - lr_p * (m_hat / (sqrt(v_hat) + eps) + wd * p)

    Args:
        grads: gradients, exactly the keys, shapes and dtypes of ``params``.
        state: from :func:`adamw_init` or a previous update (includes ``"count"``).
        params: current parameters.
        lr: learning rate (Python float >= 0).
        b1: first-moment decay in [0, 1).
        b2: second-moment decay in [0, 1).
        eps: > 0, added to sqrt(v_hat) (outside the square root); 0 would make a parameter
            with an exactly-zero gradient NaN (0/0).
        weight_decay: decoupled coefficient >= 0 (default 1e-4, optax's; torch's is 1e-2).
        exclude: tensors without weight decay; default by name.
        lr_mult: per-key learning-rate multiplier (callable or dict), or None.
        inplace: overwrite params and state arrays instead of returning new ones.

    Returns:
        ``(new_params, new_state)``.

    References:
        Loshchilov & Hutter 2019, algorithm 2; optax.adamw; torch.optim.AdamW.
    """
    return _adam_update(grads, state, params, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                        decoupled=True, exclude=exclude, lr_mult=lr_mult, inplace=inplace)


# ----------------------------------------------------------------------------------------------
# Binding hyper-parameters
# ----------------------------------------------------------------------------------------------

class Optimizer(NamedTuple):
    """An optimiser with its hyper-parameters bound.

    Attributes:
        init: ``init(params) -> state``.
        update: ``update(grads, state, params, *, lr, **overrides) -> (new_params, new_state)``.
        name: ``"sgd"``, ``"lars"``, ``"adam"`` or ``"adamw"``.
        hyper: the bound hyper-parameters (those given to :func:`make_optimizer`).
    """

    init: Callable
    update: Callable
    name: str
    hyper: dict


_OPTIMIZERS = {
    "sgd": (sgd_init, sgd_update),
    "lars": (lars_init, lars_update),
    "adam": (adam_init, adam_update),
    "adamw": (adamw_init, adamw_update),
}


def make_optimizer(name: str, **hyper: Any) -> Optimizer:
    """Bind hyper-parameters to one of the optimisers, so a trainer calls ``opt.update(..., lr=lr_k)``.

    Args:
        name: ``"sgd"``, ``"lars"``, ``"adam"`` or ``"adamw"``.
        **hyper: keyword arguments of ``<name>_update`` other than ``lr`` (e.g. ``momentum``,
            ``weight_decay``, ``eta``, ``exclude``, ``lr_mult``, ``inplace``).

    Returns:
        An :class:`Optimizer`.

    Raises:
        ValueError: unknown name, unknown hyper-parameter, or a value out of range (checked here,
            not at the first step).
        TypeError: a value of the wrong type (a string for a number, 1 for True).
    """
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise ValueError(f"name must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
    init, update = _OPTIMIZERS[name]
    allowed = [q.name for q in inspect.signature(update).parameters.values()
               if q.kind is inspect.Parameter.KEYWORD_ONLY and q.name != "lr"]
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown} for {name!r}; expected some of {allowed}")
    # Validate every value now, with a dry run on empty trees. A dict lr_mult is left out of the
    # dry run (its keys can only be checked against real params); its type is checked here.
    if not isinstance(hyper.get("lr_mult"), Mapping):
        _lr_mults(hyper.get("lr_mult"), {})
    update({}, init({}), {}, lr=0.0, **{k: v for k, v in hyper.items() if k != "lr_mult"})
    return Optimizer(init=init, update=partial(update, **hyper), name=name, hyper=dict(hyper))
