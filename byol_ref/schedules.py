"""Learning-rate and target-EMA schedules, as pure functions of the step.

Both schedules take the global step ``k`` *before* the update it is used for (the
first update uses ``k = 0``), as the official code does, and return Python floats.
They are plain ``math`` code: no arrays, so they cost nothing on either backend.

References:
    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020: its implementation details
    (Optimization: the warm-up and cosine learning rate, and tau's schedule).
    deepmind-research/byol ``utils/schedules.py`` (``learning_schedule``, ``target_ema``);
    BYOL_FACTS a5, a6 and d10, d16.
"""
from __future__ import annotations

import math
import numbers
import operator
import struct

from .checks import interval

__all__ = ["warmup_cosine_lr", "target_tau", "check_warmup_convention"]


_FLOAT32_MAX = 3.4028234663852886e38


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (round half to even), as a Python float.

    One rounding of an exact (or double-precision) result gives the float32 operation's
    result: the product of two float32 values is exact in a double, and a double quotient
    rounded to float32 is the correctly rounded float32 quotient (53 >= 2 * 24 + 2 bits).
    """
    return struct.unpack("f", struct.pack("f", x))[0]


def _check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming ``name``."""
    try:
        if isinstance(value, bool):  # (True is no step count)
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def _check_float(value, name: str, lo: float = 0.0, hi: float = math.inf) -> float:
    """``value`` as a finite Python float in [lo, hi], or a ValueError naming ``name``."""
    try:
        if isinstance(value, (bool, str, bytes)):  # (float() reads "0.99" and True; a schedule takes numbers)
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number in {interval(lo, hi)}, got {value!r}") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name} must be a finite number in {interval(lo, hi)}, got {value!r}")
    return v


def check_warmup_convention(warmup_offset, warmup_denominator, lr_rounding="exact") -> None:
    """Raise a ValueError unless (offset, denominator, lr_rounding) is a schedule some implementation uses.

    ``warmup_offset`` is 0 (official) or 1 (lightly); ``warmup_denominator`` is ``"W"``
    (official, lightly) or ``"W-1"`` (solo-learn); ``lr_rounding`` is ``"exact"`` or
    ``"float32"`` (the official float32 schedule). Offset 1 with ``"W-1"`` would reach
    ``(W - 1 + 1) / (W - 1) > 1`` times the peak at ``k = W - 1``, so it is refused. Used by
    ``warmup_cosine_lr`` and, to refuse a bad ``TrainConfig`` before a run starts, by train.
    """
    if (isinstance(warmup_offset, bool) or not isinstance(warmup_offset, numbers.Integral)
            or warmup_offset not in (0, 1)):
        raise ValueError(f"warmup_offset must be 0 (official) or 1 (lightly), got {warmup_offset!r}")
    if warmup_denominator not in ("W", "W-1"):
        raise ValueError(f"warmup_denominator must be 'W' (official) or 'W-1' (solo-learn), got {warmup_denominator!r}")
    if lr_rounding not in ("exact", "float32"):
        raise ValueError(f"lr_rounding must be 'exact' or 'float32' (the official code's float32 schedule), "
                         f"got {lr_rounding!r}")
    if warmup_offset == 1 and warmup_denominator == "W-1":
        raise ValueError("warmup_offset=1 with warmup_denominator='W-1' would overshoot the peak at step W - 1; "
                         "no implementation combines them")


def warmup_cosine_lr(
    step: int,
    *,
    base_lr: float,
    batch_size: int,
    total_steps: int,
    warmup_steps: int,
    final_lr: float = 0.0,
    warmup_start: float = 0.0,
    batch_scale: int = 256,
    warmup_offset: int = 0,
    warmup_denominator: str = "W",
    cosine_denominator: str = "K-W",
    lr_rounding: str = "exact",
) -> float:
    """Linear warm-up then cosine decay, with the linear batch-size scaling rule.

    With peak ``eta* = base_lr * batch_size / batch_scale``, ``W = warmup_steps`` and
    ``K = total_steps``::

        k <  W:  eta_k = warmup_start + (eta* - warmup_start) * (k + warmup_offset) / W
        k >= W:  eta_k = final_lr + (eta* - final_lr) * (1 + cos(pi * min(k - W, C) / C)) / 2,   C = K - W

    so the schedule ends at ``final_lr`` at ``k = K`` and stays there for every ``k >= K``.
    Edge cases: ``W = 0`` has no warm-up (``eta_0 = eta*``); ``W = K`` is warm-up only, and
    ``eta_k = final_lr`` for ``k >= K`` (the cosine phase has zero length, so the formula
    above would be 0/0).

    Two denominators differ between implementations: ``warmup_denominator="W-1"`` divides the
    warm-up by ``max(W - 1, 1)`` (the peak is reached at ``k = W - 1`` and held at ``k = W``), and
    ``cosine_denominator="K-W-1"`` sets ``C = K - W - 1`` (``final_lr`` from ``k = K - 1`` on;
    ``C <= 0`` gives ``final_lr`` at once).

    ``lr_rounding="float32"`` returns what the official ``learning_schedule`` returns, even
    under ``jax_enable_x64``: with a warm-up (``W > 0``) the warm-up is float32 arithmetic,
    ``float32(float32(k / W) * float32(eta*))`` (it casts the step to float32 before dividing),
    and its ``jnp.where`` between that float32 branch and the cosine makes every value float32;
    with ``W = 0`` nothing is rounded. (With a ``warmup_start``, which the official code does not
    have, the warm-up is ``float32(warmup_start + float32(float32(k / W) * float32(eta* -
    warmup_start)))``: every value stays a float32.) The official code trains in float32, where
    this is below rounding; a float64 run of it differs from the exact formula by up to ~1.5e-7
    relative in the warm-up (three float32 roundings) and ~6e-8 after it, which a 1e-9
    comparison sees (docs/verifying.md section 5).

    Implementation presets (BYOL_FACTS d16):

    * official BYOL: ``warmup_start=0, warmup_offset=0, final_lr=0``. Then ``eta_0 = 0``:
      the first update moves nothing, although LARS's momentum buffer starts to fill.
    * lightly: ``warmup_offset=1`` (``eta* (k + 1) / W``, so the first step is not a no-op and
      ``eta_{W-1} = eta*``), ``final_lr = 0.001 * eta*`` and ``cosine_denominator="K-W-1"``
      (``CosineWarmupScheduler`` calls ``cosine_schedule(k - W, K - W)``, which divides by its
      ``max_steps - 1``).
    * solo-learn: ``warmup_start=3e-5`` and ``warmup_denominator="W-1"`` (its
      ``LinearWarmupCosineAnnealingLR`` adds ``(eta* - warmup_start) / (W - 1)`` per warm-up
      step). With ``W = 0`` solo-learn's ``BaseMethod`` hands that scheduler the peak as its
      ``warmup_start_lr``, so its runs start at the peak, as this function does.

    Args:
        step: global step ``k >= 0`` before the update.
        base_lr: learning rate per ``batch_scale`` examples (0.2 to 0.45 for BYOL, a6).
        batch_size: examples per step ``B > 0``.
        total_steps: ``K > 0``, the number of optimiser steps in the run.
        warmup_steps: ``W`` with ``0 <= W <= K``.
        final_lr: value reached at ``k = K`` (absolute, not a fraction of the peak).
        warmup_start: value at ``k = 0`` when ``warmup_offset = 0``.
        batch_scale: the batch size at which ``base_lr`` applies (256 in the paper).
        warmup_offset: 0 (official) or 1 (lightly); added to ``k`` in the warm-up only.
        warmup_denominator: ``"W"`` (official, lightly) or ``"W-1"`` (solo-learn).
        cosine_denominator: ``"K-W"`` (official, solo-learn) or ``"K-W-1"`` (lightly).
        lr_rounding: ``"exact"`` (the formula; lightly, solo-learn) or ``"float32"`` (the
            official code's float32 schedule).

    Returns:
        The learning rate ``eta_k`` as a Python float.

    Raises:
        ValueError: a negative step, ``W > K``, a non-positive batch size, a negative rate, a peak
            rate that is not finite,
            ``warmup_offset`` not in {0, 1}, an unknown denominator or ``lr_rounding``, offset 1
            with ``"W-1"`` (``check_warmup_convention``), or, with ``"float32"``, a rate beyond
            float32's range.

    Examples:
        A peak of 0.2 * 512 / 256 = 0.4, reached after 10 warm-up steps, half way down the cosine at
        step 55 and 0 at the end:

        >>> from byol_ref.schedules import warmup_cosine_lr
        >>> [round(warmup_cosine_lr(k, base_lr=0.2, batch_size=512, total_steps=100, warmup_steps=10), 6)
        ...  for k in (0, 5, 10, 55, 100)]
        [0.0, 0.2, 0.4, 0.2, 0.0]

    References:
        BYOL paper appendix C (LARS, cosine decay, 10 warm-up epochs, lr = 0.2 x B/256);
        deepmind-research/byol ``utils/schedules.py`` ``learning_schedule`` (BYOL_FACTS a6).
    """
    k = _check_int(step, "step", 0)
    K = _check_int(total_steps, "total_steps", 1)
    W = _check_int(warmup_steps, "warmup_steps", 0)
    if W > K:
        raise ValueError(f"warmup_steps must be <= total_steps ({K}), got {W}")
    base_lr = _check_float(base_lr, "base_lr")
    B = _check_int(batch_size, "batch_size", 1)
    scale = _check_int(batch_scale, "batch_scale", 1)
    final_lr = _check_float(final_lr, "final_lr")
    warmup_start = _check_float(warmup_start, "warmup_start")
    check_warmup_convention(warmup_offset, warmup_denominator, lr_rounding)
    if cosine_denominator not in ("K-W", "K-W-1"):
        raise ValueError(f"cosine_denominator must be 'K-W' (official) or 'K-W-1' (lightly), "
                         f"got {cosine_denominator!r}")

    peak = base_lr * B / scale
    # The warm-up multiplies (peak - warmup_start) by up to W before dividing: refuse an overflow there too.
    if not (math.isfinite(peak) and math.isfinite((peak - warmup_start) * W)):
        what = ("is not finite" if not math.isfinite(peak) else
                f"and warmup_start={warmup_start!r} overflow in the warm-up ((peak - warmup_start) * warmup_steps={W})")
        raise ValueError(f"the peak learning rate base_lr * batch_size / batch_scale = {base_lr!r} * {B} / {scale} "
                         f"= {peak!r} {what}; expected a finite rate (BYOL: base_lr 0.2-0.45 per 256 examples)")
    # deepmind: jnp.where(k < W, <float32 warm-up>, <cosine>) is float32 as soon as there is a warm-up
    rounded = _f32 if lr_rounding == "float32" and W > 0 else float
    if rounded is _f32 and max(peak, final_lr, warmup_start) > _FLOAT32_MAX:
        raise ValueError(f"lr_rounding='float32' rounds every learning rate to float32, but the peak {peak!r}, "
                         f"final_lr {final_lr!r} or warmup_start {warmup_start!r} exceeds float32's largest value "
                         f"{_FLOAT32_MAX:.4g}; expected rates a float32 holds, or lr_rounding='exact'")
    if k < W:
        steps = W if warmup_denominator == "W" else max(W - 1, 1)
        if rounded is _f32:  # deepmind: global_step.astype(float32) / W * scaled_lr, all in float32
            return _f32(warmup_start + _f32(_f32((k + warmup_offset) / steps) * _f32(peak - warmup_start)))
        return warmup_start + (peak - warmup_start) * (k + warmup_offset) / steps
    C = K - W if cosine_denominator == "K-W" else K - W - 1
    if C <= 0:  # warm-up only (W = K), or lightly's one-step cosine: the run is at its end value
        return rounded(final_lr)
    t = min(k - W, C)  # clamp: constant final_lr after the run
    # At t = C, cos(pi) = -1.0 exactly, so the factor is exactly 0.0 and the value final_lr.
    return rounded(final_lr + (peak - final_lr) * 0.5 * (1.0 + math.cos(math.pi * t / C)))


def target_tau(
    step: int,
    *,
    tau_base: float,
    total_steps: int,
    schedule: str = "cosine",
    denominator: str = "K",
) -> float:
    """The target-network EMA rate tau_k (the weight on the *old* target).

    The target update is ``xi <- tau_k * xi + (1 - tau_k) * theta``. The cosine schedule
    raises tau from ``tau_base`` at ``k = 0`` to 1 at ``k = K``::

        tau_k = 1 - (1 - tau_base) * (cos(pi * min(k, K) / K) + 1) / 2      (denominator "K")

    Variants (BYOL_FACTS d10):

    * ``denominator="K"``: official BYOL and solo-learn (k = optimiser steps so far, from 0).
    * ``denominator="K-1"``: lightly's ``cosine_schedule``: ``K - 1`` replaces ``K``, so
      tau is exactly 1 from ``k = K - 1`` on (the last training step copies nothing from
      the online net). ``K = 1`` gives 1. For ``k > K - 1`` the step is clamped (lightly
      itself only warns there).
    * ``schedule="constant"``: byol-pytorch's fixed ``tau = tau_base`` (0.99).

    Args:
        step: global step ``k >= 0`` before this EMA update.
        tau_base: tau at ``k = 0``, in [0, 1] (0.996 in the paper; 0.99 for 300 epochs).
        total_steps: ``K >= 1``.
        schedule: ``"cosine"`` or ``"constant"``.
        denominator: ``"K"`` (official) or ``"K-1"`` (lightly); cosine schedule only.

    Returns:
        tau_k as a Python float in [tau_base, 1].

    Raises:
        ValueError: a negative step, ``tau_base`` outside [0, 1], ``total_steps < 1``, or an
            unknown ``schedule`` / ``denominator``.

    Examples:
        >>> from byol_ref.schedules import target_tau
        >>> [round(target_tau(k, tau_base=0.996, total_steps=100), 6) for k in (0, 50, 100)]
        [0.996, 0.998, 1.0]

    References:
        The BYOL paper's implementation details (Optimization), "tau = 1 - (1 - tau_base)(cos(pi k / K) + 1)/2";
        deepmind-research/byol ``utils/schedules.py`` ``target_ema`` (BYOL_FACTS a5).
    """
    k = _check_int(step, "step", 0)
    K = _check_int(total_steps, "total_steps", 1)
    tau_base = _check_float(tau_base, "tau_base", 0.0, 1.0)
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if denominator not in ("K", "K-1"):
        raise ValueError(f"denominator must be 'K' (official) or 'K-1' (lightly), got {denominator!r}")
    if schedule == "constant":
        return tau_base
    n = K if denominator == "K" else K - 1
    if n == 0:  # lightly, K = 1: avoid 0/0, the schedule is already at its end value
        return 1.0
    # At k >= n, cos(pi) = -1.0 exactly, so tau is exactly 1.0.
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * min(k, n) / n) + 1.0) / 2.0
