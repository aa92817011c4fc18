"""Layers as pure forward/backward pairs: linear, ReLU, batch norm, layer norm, group norm,
per-feature affine, simplicial embedding, weight standardisation.

Every op is ``<op>_forward(...) -> (out, cache)`` and ``<op>_backward(dout, cache) ->
(dx, dparams...)`` (CS231n ``layers.py``). Nothing is stored on objects: BYOL runs the
same online network on two views in one step, and a per-call cache is what makes that
safe. Derivations, with these variable names, are in ``docs/derivations.md``.

Shapes. Activations are ``(N, F)`` or ``(G, N, F)``: ``G`` independent batches that
share parameters (BYOL's two views, stacked). Linear layers and ReLU do not care;
batch norm takes its statistics over ``N`` separately for each of the ``G`` groups
(per-view statistics, as the official code gets by calling the network once per view).
Weights are stored ``(in, out)`` so that a layer is ``x @ w + b``. Every forward but ReLU's
checks the shapes and dtypes of its operands (``checks.check_operands``: metadata only, no
data read), and every backward its upstream gradient against the forward's output
(``checks.check_upstream``), as NumPy would otherwise broadcast a wrong shape or promote a
mixed dtype without a word; the values (NaN, say) are the model's to check, once per step.

Speed without a second implementation. The functions never mutate their inputs by default.
Model code that owns a fresh temporary (the output of the previous step, which nothing else
holds) passes ``inplace=True`` and the layer reuses that memory instead of allocating another
activation-sized array; the arithmetic is the same ufunc for ufunc. On CuPy the element-wise
chains run as fused kernels (``kernels.py``), each beside its xp reference formula.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from . import kernels
from .backend import get_array_module
from .checks import (check_bool, check_cache, check_operands, check_overwritable, check_positive_int, check_real,
                     check_same_dtype, check_upstream)


# --------------------------------------------------------------------------- linear


class LinearCache(NamedTuple):
    """What linear_backward needs: the input (for dw) and the weight (for dx)."""

    x: Any  # (..., N, D)
    w: Any  # (D, H)
    has_bias: bool


def linear_forward(x, w, b=None):
    """Affine map ``out = x @ w + b``.

    Args:
        x: input, shape (N, D) or (G, N, D).
        w: weight, shape (D, H) (stored (in, out)).
        b: bias, shape (H,), or None for a layer without bias.

    Returns:
        out: shape (N, H) or (G, N, H).
        cache: LinearCache.
    """
    check_operands("linear_forward", x)
    if getattr(w, "ndim", None) != 2 or w.shape[0] != x.shape[-1]:
        raise ValueError(f"linear_forward: w must be a ({x.shape[-1]}, H) array for x of shape {tuple(x.shape)}, got "
                         f"{getattr(w, 'shape', type(w).__name__)}")
    if b is not None and getattr(b, "shape", None) != (w.shape[1],):
        raise ValueError(f"linear_forward: b must be a ({w.shape[1]},) array, got "
                         f"{getattr(b, 'shape', type(b).__name__)}")
    check_same_dtype("linear_forward", x, w=w, b=b)
    # One matmul over all groups: (G*N, D) @ (D, H) is a bigger, faster GEMM than G small ones.
    out = (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])  # (..., N, H)
    if b is not None:
        out += b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache, *, need_dx=True) -> tuple[Any, Any, Any]:  # (Any: dx is None with need_dx=False)
    """Backward of ``out = x @ w + b``.

    dx = dout @ w.T,  dw = x.T @ dout,  db = sum of dout over every row.
    With stacked views the row sums run over both views at once, which *is* the sum of
    the per-view gradients, with no extra temporary.

    Args:
        dout: upstream gradient, shape of out (..., N, H).
        cache: LinearCache from linear_forward.
        need_dx: False skips the input gradient (a third of the layer's backward FLOPs), for
            a first layer whose input is data; dx is then None.

    Returns:
        (dx, dw, db): shapes (..., N, D), (D, H), (H,) (db is None without bias).
    """
    check_cache("linear_backward", cache, LinearCache, "linear_forward")
    x, w, has_bias = cache
    check_upstream("linear_backward", dout, (*x.shape[:-1], w.shape[1]), x.dtype)
    dout2 = dout.reshape(-1, dout.shape[-1])  # (G*N, H)
    # w.T and x.T are transposed views: BLAS reads them with a transpose flag, no copy.
    dx = (dout2 @ w.T).reshape(x.shape) if need_dx else None  # (..., N, D)
    dw = x.reshape(-1, x.shape[-1]).T @ dout2  # (D, H)
    db = kernels.sum_over(get_array_module(dout2), dout2, -2).reshape(-1) if has_bias else None  # (H,): the rows' sum
    return dx, dw, db


# --------------------------------------------------------------------------- ReLU


class ReluCache(NamedTuple):
    """The ReLU output; its sign is the mask (out > 0 exactly where x > 0)."""

    out: Any


def relu_forward(x, *, inplace=False):
    """``out = max(x, 0)``. Returns (out, ReluCache). ``inplace``: x is overwritten by out."""
    check_operands("relu_forward", x)
    check_overwritable("relu_forward", inplace, x=x)
    xp = get_array_module(x)
    out = xp.maximum(x, 0, out=x if inplace else None)
    return out, ReluCache(out)


def relu_backward(dout, cache, *, inplace=False):
    """``dx = dout * [x > 0]``; the subgradient at exactly 0 is taken as 0 (as in JAX and PyTorch).

    The mask multiplies (``xp.where`` on a random mask is ~10x slower on the CPU: it branches).
    ``inplace``: dout is overwritten by dx.
    """
    check_cache("relu_backward", cache, ReluCache, "relu_forward")
    check_upstream("relu_backward", dout, cache.out.shape, cache.out.dtype)
    check_overwritable("relu_backward", inplace, dout=dout)
    xp = get_array_module(dout)
    return kernels.relu_backward(xp, dout, cache.out, out=dout if inplace else None)


# --------------------------------------------------------------------------- normalisation


class NormCache(NamedTuple):
    """Cached for batch and layer norm backward.

    x_hat and rstd are kept; x and the mean are not (x_hat carries everything the
    closed-form backward needs). ``axis`` is the axis the statistics ran over: -2
    (the batch) for batch norm, -1 (the features) for layer norm. In batch-norm eval
    mode the statistics are constants, and ``train`` is False.
    """

    x_hat: Any  # same shape as x
    rstd: Any  # 1 / sqrt(var + eps), broadcastable to x
    gamma: Any  # (F,)
    axis: int
    train: bool


def _moments(x, axis, var_formula):
    """Mean and *biased* variance of x over ``axis`` (kept as a broadcastable dim).

    ``two_pass``: var = mean((x - mean)^2), numerically stable.
    ``one_pass``: var = mean(x^2) - mean^2, what the official Haiku code computes (it
    lets the two moments be all-reduced together across devices); it cancels
    catastrophically in float32 when |mean| >> std, and can even come out slightly
    negative, so it is clamped at 0 (as Haiku does not, but negative var + eps is
    already a bug report).
    """
    mean, var, _ = _moments_centered(x, axis, var_formula)
    return mean, var


def _moments_centered(x, axis, var_formula, *, inplace=False):
    """``_moments`` that also returns ``xc = x - mean`` when the formula computed it (else None).

    The normalisation reuses xc for x_hat = xc * rstd (the same arithmetic as (x - mean) * rstd),
    and the squares' buffer is returned for reuse as well. ``inplace``: x is overwritten by xc.
    Returns (mean, var, (xc, scratch)) with xc None for ``one_pass``.
    """
    xp = get_array_module(x)
    mean = kernels.mean_over(xp, x, axis)  # (x.mean(axis, keepdims=True); over the rows a GEMM on CuPy)
    if var_formula == "two_pass":
        xc = xp.subtract(x, mean, out=x if inplace else None)
        sq = xc * xc
        var = kernels.mean_over(xp, sq, axis)
        return mean, var, (xc, sq)
    if var_formula == "one_pass":
        sq = x * x
        var = xp.maximum(kernels.mean_over(xp, sq, axis) - mean * mean, 0)
        return mean, var, (None, sq)
    raise ValueError(f"var_formula must be 'two_pass' or 'one_pass', got {var_formula!r}")


def _normalize_backward(dout, cache):
    """Shared closed-form backward of x_hat = (x - mean) * rstd followed by gamma * x_hat + beta.

    With m the size of the normalised axis and means taken over that axis:
        dx_hat = dout * gamma
        dx     = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
    The two subtracted terms are the paths through the mean and through the variance.
    In eval mode (constant statistics) both vanish: dx = rstd * dx_hat.
    """
    x_hat, rstd, gamma, axis, train = cache
    dx_hat = dout * gamma  # same shape as x
    if train:
        dx = rstd * (
            dx_hat
            - dx_hat.mean(axis=axis, keepdims=True)
            - x_hat * (dx_hat * x_hat).mean(axis=axis, keepdims=True)
        )
    else:
        dx = rstd * dx_hat
    sum_axes = tuple(range(dout.ndim - gamma.ndim))  # every axis but gamma's (the features)
    dgamma = (dout * x_hat).sum(axis=sum_axes)  # like gamma
    dbeta = dout.sum(axis=sum_axes)  # like gamma
    return dx, dgamma, dbeta


class RunningStats(NamedTuple):
    """Batch-norm running statistics (the buffers), returned, never hidden.

    mean, var: (F,) arrays, the values eval mode uses.
    count: 0-d integer array, how many updates have been made (the zero-debiased EMA needs it).
    """

    mean: Any
    var: Any
    count: Any


def _check_running(op: str, running) -> None:
    """Refuse ``running`` unless it is a RunningStats whose count is an integer scalar (a Python int or a 0-d
    integer array): a float count of 1.5 would debias with 1 - decay**2.5, a (F,) one broadcast into a (F,)
    count, and a plain tuple was an AttributeError. Metadata only (a count's value is checked where it is
    read from a file: ``checks.check_count``)."""
    if not isinstance(running, RunningStats):
        raise TypeError(f"{op}: running must be a RunningStats(mean, var, count), got {type(running).__name__}")
    count = running.count
    if isinstance(count, bool) or not (isinstance(count, numbers.Integral) or (
            getattr(count, "ndim", None) == 0 and count.dtype.kind in "iu")):
        raise TypeError(f"{op}: running.count must be an integer scalar (a 0-d integer array), got "
                        f"{getattr(count, 'dtype', type(count).__name__)} of shape {getattr(count, 'shape', ())}")


def update_running_stats(running, batch_mean, batch_var, n, *, decay, mode):
    """One EMA update of batch-norm running statistics.

    Args:
        running: RunningStats before the update.
        batch_mean, batch_var: this batch's mean and *biased* variance, shape (F,).
        n: number of samples the batch statistics came from.
        decay: weight on the old value (Haiku ``decay_rate`` 0.9; PyTorch ``momentum`` 0.1
            is decay 0.9).
        mode: ``"haiku"``: the biased variance is averaged by a zero-debiased EMA,
            h_t = decay * h_{t-1} + (1 - decay) * v with h_0 = 0 and value h_t / (1 - decay^t)
            (``hk.ExponentialMovingAverage``). We store the debiased value, so the hidden
            h_{t-1} is value_{t-1} * (1 - decay^{t-1}).
            ``"torch"``: value <- decay * value + (1 - decay) * v, with the *unbiased*
            variance v * n / (n - 1) (``nn.BatchNorm1d``; initial mean 0, var 1).

    Returns:
        RunningStats after the update.
    """
    _check_ema(decay, mode)
    _check_running("update_running_stats", running)
    check_operands("update_running_stats", running.mean, x_name="running.mean", batch_mean=batch_mean,
                   batch_var=batch_var)
    n = check_positive_int(n, "n")
    if mode == "torch" and n < 2:
        raise ValueError(f"the unbiased variance needs n >= 2 samples, got n={n!r}")
    return _ema_running_stats(running, batch_mean, batch_var, n, decay=decay, mode=mode)


def _check_ema(decay, mode) -> None:
    """The running statistics' EMA settings, checked once per public call."""
    check_real(decay, "decay", 0, 1, hi_open=True)  # (decay 1 would be 0/0 in the haiku debiasing)
    if mode not in ("haiku", "torch"):
        raise ValueError(f"running-stats mode must be 'haiku' or 'torch', got {mode!r}")


def _ema_running_stats(running, batch_mean, batch_var, n: int, *, decay, mode):
    """``update_running_stats`` without its checks, for ``batch_norm_forward``, which has made them
    (its operands, its running statistics and ``n`` = its rows, at least 2)."""
    xp = get_array_module(batch_mean)
    t = running.count + 1
    # haiku: the zero-debiased weights (in float64, rounded to the buffers' dtype, so float32 stays float32);
    # torch: decay and the unbiased variance. The formulas: kernels.running_stats_ref.
    mean, var = kernels.running_stats(xp, running.mean, running.var, batch_mean, batch_var, t, n, decay, mode)
    return RunningStats(mean, var, t)


def batch_norm_forward(x, gamma, beta, running, *, train, eps=1e-5, decay=0.9,
                       mode="haiku", var_formula="two_pass", inplace=False, need_cache=True,
                       running_groups=None) -> tuple[Any, Any, RunningStats]:  # (Any: no cache with need_cache=False)
    """Batch normalisation.

    Train mode: statistics over the batch axis N, separately for each group G (each
    view), with the *biased* variance (divide by N), as every BYOL implementation
    normalises. out = gamma * (x - mean) / sqrt(var + eps) + beta.
    The running statistics get one update per group, in order, so with two stacked
    views they are updated twice per call, the second update seeing the first (as the
    official code, which calls the network once per view).
    Eval mode: the running statistics are used and returned unchanged.

    Args:
        x: (N, F) or (G, N, F).
        gamma, beta: (F,).
        running: RunningStats (mean, var, count).
        train: batch statistics (True) or running statistics (False).
        eps: added to the variance inside the square root (1e-5 in Haiku and PyTorch).
        decay: weight on the old running value.
        mode: ``"haiku"`` or ``"torch"`` running-statistics convention (update_running_stats).
        var_formula: ``"two_pass"`` or ``"one_pass"`` (see ``_moments``).
        inplace: x may be overwritten (it then holds x_hat, or out without a cache): for a
            temporary nobody else holds, such as the output of the previous linear layer.
        need_cache: False for a forward that will not be differentiated (the BYOL target):
            no x_hat is kept, out is computed in the memory of x_hat, and the cache is None.
        running_groups: only the first this many groups update the running statistics (None:
            every group). Data-parallel training without synchronised statistics keeps the
            first replica's running statistics (``Config.bn_shard_running="first"``).

    Returns:
        out: same shape as x.
        cache: NormCache (None when need_cache is False).
        running: updated RunningStats (the same object in eval mode).

    References:
        Ioffe & Szegedy 2015, Algorithm 1; Haiku ``batch_norm.py``.
    """
    _check_running("batch_norm_forward", running)
    check_operands("batch_norm_forward", x, per_feature=True, gamma=gamma, beta=beta, running_mean=running.mean,
                   running_var=running.var)
    train = check_bool(train, "train")
    inplace, need_cache = check_bool(inplace, "inplace"), check_bool(need_cache, "need_cache")
    check_overwritable("batch_norm_forward", inplace, x=x)
    if train and (x.ndim < 2 or x.shape[-2] < 2):  # (one row: its own mean, variance 0, out = beta)
        raise ValueError(f"batch_norm_forward: training needs batch statistics over at least 2 rows, x has shape "
                         f"{tuple(x.shape)} ((N, F) or (G, N, F))")
    check_real(eps, "eps", 0, None)  # (0 is the formula without it: exact identities, NaN on a constant)
    n_groups = math.prod(x.shape[:-2])  # G (1 for (N, F))
    if running_groups is not None and check_positive_int(running_groups, "running_groups", 0) > n_groups:
        raise ValueError(f"batch_norm_forward: running_groups={running_groups}, but x of shape {tuple(x.shape)} has "
                         f"{n_groups} group(s); expected None (all) or 0 to {n_groups}")
    xp = get_array_module(x)
    src, center, overwrite, scratch = x, None, inplace, None
    if train:
        n = x.shape[-2]
        mean, var, (xc, scratch) = _moments_centered(x, -2, var_formula, inplace=inplace)  # (..., 1, F)
        group_means, group_vars = mean.reshape(-1, x.shape[-1]), var.reshape(-1, x.shape[-1])  # (G, F)
        updates = list(zip(group_means, group_vars))[:running_groups]
        if updates:
            _check_ema(decay, mode)
        for g_mean, g_var in updates:
            running = _ema_running_stats(running, g_mean, g_var, n, decay=decay, mode=mode)
        if xc is None:
            center = mean
        else:  # two-pass already made xc = x - mean (our own array): x_hat = xc * rstd
            src, overwrite = xc, True
    else:
        mean, var = running.mean, running.var  # (F,)
        center = mean
    rstd = kernels.rstd(xp, var, eps)  # 1 / sqrt(var + eps): eps inside the root bounds rstd by 1/sqrt(eps)
    # x_hat = (x - mean) * rstd;  out = gamma * x_hat + beta
    out, x_hat = kernels.bn_apply(xp, src, center, rstd, gamma, beta, need_cache=need_cache,
                                  overwrite_x=overwrite, out=scratch)
    cache = NormCache(x_hat, rstd, gamma, -2, train) if need_cache else None
    return out, cache, running


def batch_norm_backward(dout, cache, *, inplace=False):
    """Backward of batch_norm_forward.

    The closed form of ``_normalize_backward`` with gamma taken out of the batch means (it is
    constant along the batch axis), so that the per-group sums the parameter gradients need
    are also the two means of the input gradient, each computed once (means over N, per group):

        s1 = sum_N dout,  s2 = sum_N dout * x_hat          (..., 1, F)
        dbeta = sum over groups of s1,  dgamma = sum over groups of s2
        dx = rstd * gamma * (dout - s1 / N - x_hat * s2 / N)
    In eval mode (constant statistics) dx = rstd * gamma * dout.

    Args:
        dout: (N, F) or (G, N, F).
        cache: NormCache.
        inplace: dout may be overwritten by dx.

    Returns:
        (dx, dgamma, dbeta): dx like dout; dgamma, dbeta (F,) summed over groups and batch.
    """
    if cache is None:
        raise ValueError("batch_norm_backward: cache is None, from a forward run with need_cache=False (one that is "
                         "not to be differentiated)")
    check_cache("batch_norm_backward", cache, NormCache, "batch_norm_forward")
    x_hat, rstd, gamma, axis, train = cache
    check_upstream("batch_norm_backward", dout, x_hat.shape, x_hat.dtype)
    check_overwritable("batch_norm_backward", check_bool(inplace, "inplace"), dout=dout)
    xp = get_array_module(dout)
    f, n = dout.shape[-1], dout.shape[-2]
    s1 = kernels.sum_over(xp, dout, -2)  # (..., 1, F)
    s2 = kernels.sum_of_product(xp, dout, x_hat, -2)  # (..., 1, F)
    dbeta = s1.reshape(-1, f).sum(axis=0)  # (F,)
    dgamma = s2.reshape(-1, f).sum(axis=0)  # (F,)
    scale = rstd * gamma  # (..., 1, F) or (F,)
    if train:
        dx = kernels.bn_backward_dx(xp, dout, x_hat, s1, s2, scale, n, out=dout if inplace else None)
    else:
        dx = xp.multiply(dout, scale, out=dout if inplace else None)
    return dx, dgamma, dbeta


def layer_norm_forward(x, gamma, beta, *, eps=1e-5, var_formula="two_pass"):
    """Layer normalisation over the feature axis (biased variance; Axon's eps is 1e-5).

    Args:
        x: (..., F).
        gamma, beta: (F,).
        eps: added to the variance inside the square root.
        var_formula: ``"two_pass"`` mean((x - mean)^2) or ``"one_pass"`` mean(x^2) - mean^2 (see
            ``_moments``; Axon's ``mean_and_variance`` has computed each, depending on its version).
            The backward is the same for both: they are one function, rounded differently.

    Returns:
        out: like x.
        cache: NormCache.

    References:
        Ba, Kiros & Hinton 2016.
    """
    check_operands("layer_norm_forward", x, gamma=gamma, beta=beta)
    check_real(eps, "eps", 0, None)  # (0 allowed: see batch_norm_forward)
    xp = get_array_module(x)
    mean, var = _moments(x, -1, var_formula)  # (..., 1)
    rstd = kernels.rstd(xp, var, eps)  # 1 / sqrt(var + eps)
    x_hat = (x - mean) * rstd
    return gamma * x_hat + beta, NormCache(x_hat, rstd, gamma, -1, True)


def layer_norm_backward(dout, cache):
    """Backward of layer_norm_forward, per row, with means over its F features::

        dx_hat = dout * gamma
        dx     = rstd * (dx_hat - mean_F(dx_hat) - x_hat * mean_F(dx_hat * x_hat))
        dgamma = sum over rows of dout * x_hat,   dbeta = sum over rows of dout

    Returns:
        (dx like dout, dgamma (F,), dbeta (F,)).
    """
    check_cache("layer_norm_backward", cache, NormCache, "layer_norm_forward")
    check_upstream("layer_norm_backward", dout, cache.x_hat.shape, cache.x_hat.dtype)
    return _normalize_backward(dout, cache)


def group_norm_forward(x, gamma, beta, *, groups, eps=1e-5, var_formula="two_pass"):
    """Group normalisation: layer norm within each of ``groups`` equal slices of the features.

    x (..., F) is viewed as (..., G, F/G) and each sample's group is normalised on its own
    (biased variance); gamma and beta stay per feature. G = 1 is layer norm, G = F instance
    norm. With weight standardisation it is the batch-statistics-free BYOL of Richemond et
    al. (2020), no sample's output depending on any other sample.

    Args:
        x: (..., F) with F divisible by ``groups``.
        gamma, beta: (F,).
        groups: G, the number of groups.
        eps: added to each group's variance inside the square root (PyTorch and Haiku 1e-5).
        var_formula: ``"two_pass"`` or ``"one_pass"`` (see ``layer_norm_forward``).

    Returns:
        out: like x.
        cache: NormCache over the grouped view (x_hat (..., G, F/G), gamma (G, F/G)).

    References:
        Wu & He, "Group Normalization", ECCV 2018.
    """
    check_operands("group_norm_forward", x, per_feature=True, gamma=gamma, beta=beta)
    f = x.shape[-1]
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1 or f % groups:
        raise ValueError(f"groups must be a positive int dividing the {f} features, got {groups!r}")
    groups = int(groups)
    grouped = (*x.shape[:-1], groups, f // groups)
    out, cache = layer_norm_forward(x.reshape(grouped), gamma.reshape(groups, -1), beta.reshape(groups, -1), eps=eps,
                                    var_formula=var_formula)
    return out.reshape(x.shape), cache


def group_norm_backward(dout, cache):
    """Backward of group_norm_forward: layer norm's (see layer_norm_backward) on the grouped view,
    the means over the F/G features of each group. Returns (dx, dgamma (F,), dbeta (F,))."""
    check_cache("group_norm_backward", cache, NormCache, "group_norm_forward")
    *lead, g, size = cache.x_hat.shape  # (..., G, F/G)
    check_upstream("group_norm_backward", dout, (*lead, g * size), cache.x_hat.dtype)
    dx, dgamma, dbeta = _normalize_backward(dout.reshape(cache.x_hat.shape), cache)
    return dx.reshape(dout.shape), dgamma.reshape(-1), dbeta.reshape(-1)


# --------------------------------------------------------------------------- per-feature affine


class AffineCache(NamedTuple):
    x: Any  # the input, for dgamma (x_hat of the norm layers has no counterpart here)
    gamma: Any  # (F,)


def affine_forward(x, gamma, beta):
    """A learnable per-feature scale and shift, ``out = gamma * x + beta``: batch norm with
    its statistics taken away (no sample sees another, nothing is normalised).

    With ``gamma = 1 / sqrt(var + eps)`` and ``beta = -mean * gamma`` from a batch of data at
    initialisation (``model.data_dependent_init``) it computes what batch norm computed on
    that batch, and then trains as an ordinary parameterised layer: the BN-free BYOL with a
    data-dependent initialisation of Richemond et al. (2020).

    Args:
        x: (..., F).
        gamma, beta: (F,).

    Returns:
        out: like x.
        cache: AffineCache.
    """
    check_operands("affine_forward", x, per_feature=True, gamma=gamma, beta=beta)
    return gamma * x + beta, AffineCache(x, gamma)


def affine_backward(dout, cache):
    """Backward of affine_forward: dx = gamma * dout; dgamma, dbeta summed over every axis but
    the features (samples, and the views of a (G, N, F) stack).

    Returns:
        (dx like dout, dgamma (F,), dbeta (F,)).
    """
    check_cache("affine_backward", cache, AffineCache, "affine_forward")
    x, gamma = cache
    check_upstream("affine_backward", dout, x.shape, x.dtype)
    f = dout.shape[-1]
    dgamma = (dout * x).reshape(-1, f).sum(axis=0)  # (F,)
    dbeta = dout.reshape(-1, f).sum(axis=0)  # (F,)
    return gamma * dout, dgamma, dbeta


# --------------------------------------------------------------------------- simplicial embedding


class SimplexCache(NamedTuple):
    s: Any  # (..., L, V): the softmax of every simplex, what the backward needs
    temperature: float


def simplex_forward(x, *, simplex_dim, temperature):
    """Simplicial embedding (Lavoie et al. 2022, "Simplicial Embeddings in Self-Supervised
    Learning"): split the features into L = F / V groups of ``simplex_dim`` V and map each group
    onto the probability simplex with a softmax at temperature tau::

        s[l, v] = exp(x[l, v] / tau) / sum_u exp(x[l, u] / tau)

    byol-pytorch 0.9 puts it in front of the projector by default (``SEM``: softmax over the
    last axis of ``x`` reshaped to ``(..., L, V)``). The maximum of each group is subtracted
    before ``exp`` (the value is unchanged; nothing overflows).

    Args:
        x: (..., F) with F a multiple of ``simplex_dim``.
        simplex_dim: V >= 1.
        temperature: tau > 0.

    Returns:
        out: like x, each group of V summing to 1; a view of the cached ``s``, so the step after it
            must not overwrite its input (in a network it is always a Linear).
        cache: SimplexCache.

    References:
        Lavoie et al., "Simplicial Embeddings in Self-Supervised Learning and Downstream
        Classification", ICLR 2023 (arXiv 2204.00616); lucidrains/byol-pytorch ``SEM``.
    """
    check_operands("simplex_forward", x)
    simplex_dim = check_positive_int(simplex_dim, "simplex_dim")
    check_real(temperature, "temperature", 0, None, lo_open=True)
    xp = get_array_module(x)
    f = x.shape[-1]
    if f % simplex_dim:
        raise ValueError(f"simplex_dim={simplex_dim} must divide the {f} features of x (shape {x.shape})")
    a = x.reshape(*x.shape[:-1], f // simplex_dim, simplex_dim) / temperature  # (..., L, V)
    a -= a.max(axis=-1, keepdims=True)
    e = xp.exp(a, out=a)
    s = e / e.sum(axis=-1, keepdims=True)  # (..., L, V)
    return s.reshape(x.shape), SimplexCache(s, temperature)


def simplex_backward(dout, cache):
    """Backward of simplex_forward, per group: the softmax Jacobian diag(s) - s s^T, and 1/tau::

        dx = s * (dout - sum_v dout * s) / tau

    Args:
        dout: upstream gradient, like the forward's out (..., F).
        cache: SimplexCache from simplex_forward.

    Returns:
        dx like dout (each group of V sums to 0: shifting a group changes nothing).
    """
    check_cache("simplex_backward", cache, SimplexCache, "simplex_forward")
    s, temperature = cache
    check_upstream("simplex_backward", dout, (*s.shape[:-2], s.shape[-2] * s.shape[-1]), s.dtype)
    ds = dout.reshape(s.shape)  # (..., L, V)
    dx = s * (ds - (ds * s).sum(axis=-1, keepdims=True))  # (..., L, V)
    dx /= temperature
    return dx.reshape(dout.shape)


# --------------------------------------------------------------------------- weight standardisation


class WeightStdCache(NamedTuple):
    w_hat: Any  # (D, H), the standardised weight
    rstd: Any  # (1, H)


def weight_standardize_forward(w, *, eps=1e-5):
    """Weight standardisation of a Linear weight stored (in, out): each output unit's incoming
    weights get mean 0 and variance 1,

        w_hat = (w - mean_D(w)) / sqrt(var_D(w) + eps)        (statistics over axis 0, per column)

    and the layer computes ``x @ w_hat + b``. The parameter stays ``w``; only its use changes.

    Args:
        w: (D, H), D >= 2.
        eps: added to each column's (biased) variance inside the square root.

    Returns:
        (w_hat (D, H), WeightStdCache).

    References:
        Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
        Standardization", 2019; Richemond et al., "BYOL works even without batch statistics", 2020.
    """
    check_operands("weight_standardize_forward", w, x_name="w")
    if w.ndim != 2:
        raise ValueError(f"weight_standardize_forward: w must be a (D, H) weight, got shape {tuple(w.shape)}")
    if w.shape[0] < 2:  # (var_D = 0 and w_hat = 0: the layer would ignore its input, with zero gradient)
        raise ValueError(f"weight_standardize_forward: w must have D >= 2 inputs per column, got shape "
                         f"{tuple(w.shape)}; a single weight standardises to 0")
    check_real(eps, "eps", 0, None)  # (0 allowed: see batch_norm_forward)
    xp = get_array_module(w)
    mean, var = _moments(w, 0, "two_pass")  # (1, H)
    rstd = 1 / xp.sqrt(var + eps)
    w_hat = (w - mean) * rstd
    return w_hat, WeightStdCache(w_hat, rstd)


def weight_standardize_backward(dw_hat, cache):
    """Backward of weight_standardize_forward: the normalisation backward over axis 0 (D), with
    no gamma,

        dw = rstd * (dw_hat - mean_D(dw_hat) - w_hat * mean_D(dw_hat * w_hat))
    """
    check_cache("weight_standardize_backward", cache, WeightStdCache, "weight_standardize_forward")
    w_hat, rstd = cache
    check_upstream("weight_standardize_backward", dw_hat, w_hat.shape, w_hat.dtype, name="dw_hat")
    return rstd * (dw_hat - dw_hat.mean(axis=0, keepdims=True)
                   - w_hat * (dw_hat * w_hat).mean(axis=0, keepdims=True))
