"""Fused element-wise kernels, each beside the plain-``xp`` formula it replaces (STYLE.md 6).

Every op here comes in two forms with the same arguments:

* ``<op>_ref(xp, ...)``: the readable formula, written with ``xp`` ufuncs. It is what NumPy
  runs, and the twin each fused kernel is tested against (``tests/test_kernels.py``).
* ``<op>(...)``: the dispatcher the layers call. On CuPy arrays, with fusion enabled, it
  runs one CUDA ``ElementwiseKernel`` that reads each input once and writes each output once
  (a chain of k CuPy ufuncs launches k kernels and makes k - 1 round trips through device
  memory); otherwise it runs the reference.

Kernels are compiled lazily, the first time CuPy arrays reach them, from the ``cupy`` module
the arrays came from: importing this module never imports CuPy (STYLE.md 5), and on a machine
without a GPU nothing is ever compiled. :func:`set_fused` turns fusion off (the reference
formulas then run on CuPy too), which is how the parity tests get the xp twin on the device.

On the CPU the same idea, "read and write each array as few times as possible", is served by
:func:`blocks`: a chain of in-place ufuncs applied block by block over flat views, so that a
block stays in cache between the ops of the chain (used by the optimiser and the in-place EMA;
element-wise ops give bitwise the same result blocked or not).

The fused kernels let the CUDA compiler contract ``a * b + c`` into one fused multiply-add, so
they can differ from their reference by an ulp or so per op; the parity tests allow
``atol + |ref| * k * eps(dtype)``.
"""
from __future__ import annotations

import contextlib
import functools
import os

from .backend import get_array_module

_FUSED = True

#: Elements per block for :func:`blocks`: 32768 float32 values are 128 KiB per array, so a
#: chain touching four arrays stays within a 1-2 MiB L2 cache.
BLOCK = 1 << 15


def set_fused(enabled: bool) -> bool:
    """Turn the fused CuPy kernels on or off; returns the previous setting."""
    global _FUSED
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    previous, _FUSED = _FUSED, enabled
    return previous


@contextlib.contextmanager
def fused(enabled: bool):
    """Context manager form of :func:`set_fused`."""
    previous = set_fused(enabled)
    try:
        yield
    finally:
        set_fused(previous)


def run_blocked(fn, *arrays, scratch_dtype=None, n_scratch=1):
    """Call ``fn(*blocks, *scratches)`` over :func:`blocks` of ``arrays``; with ``scratch_dtype``,
    ``n_scratch`` scratches shaped like each block (views of buffers allocated once, at the first
    block's size, and reused by every block)."""
    bufs = ()
    for b in blocks(*arrays):
        if scratch_dtype is not None and not bufs:
            xp = get_array_module(arrays[0])
            bufs = tuple(xp.empty(b[0].size, dtype=scratch_dtype) for _ in range(n_scratch))
        fn(*b, *(buf[: b[0].size].reshape(b[0].shape) for buf in bufs))


def use_fused(xp) -> bool:
    """True when ``xp`` is CuPy and fusion is enabled."""
    return _FUSED and getattr(xp, "__name__", "") == "cupy"


def blocks(*arrays, block: int = BLOCK):
    """Yield tuples of matching flat blocks of same-sized C-contiguous arrays.

    Used for chains of in-place ufuncs (``out=`` the block itself), so that each block is
    read from memory once for the whole chain. If any array is not C-contiguous (a reshape
    would copy, and writes would be lost), or the arrays live on a GPU, the whole arrays are
    yielded once instead.
    """
    on_device = type(arrays[0]).__module__.startswith("cupy")  # a GPU wants one launch, not many
    if on_device or not all(a.flags.c_contiguous for a in arrays):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    for start in range(0, n, block):
        yield tuple(f[start:start + block] for f in flat)


# --------------------------------------------------------------------------- kernel sources


@functools.lru_cache(maxsize=None)
def _kernel(xp, name: str):
    """Build (once per CuPy module) the ElementwiseKernel called ``name``."""
    in_params, out_params, body = _SOURCES[name]
    return xp.ElementwiseKernel(in_params, out_params, body, f"byol_{name}")


_SOURCES = {
    # ReLU backward: dx = dout * [y > 0] (y the ReLU output; the mask multiplies, as the reference).
    "relu_backward": ("T dout, T y", "T dx", "dx = dout * (T)(y > (T)0)"),
    # Batch-norm apply: x_hat = (x - mean) * rstd; out = gamma * x_hat + beta.
    "bn_apply": ("T x, T mean, T rstd, T gamma, T beta", "T x_hat, T y",
                 "T h = (x - mean) * rstd; x_hat = h; y = gamma * h + beta"),
    "bn_apply_nocache": ("T x, T mean, T rstd, T gamma, T beta", "T y",
                         "y = gamma * ((x - mean) * rstd) + beta"),
    # Normalisation: rstd = 1 / sqrt(var + eps), eps inside the root.
    "rstd": ("T var, T eps", "T rstd", "rstd = (T)1 / sqrt(var + eps)"),
    # Batch-norm backward, with per-group sums s1 = sum_N dout, s2 = sum_N dout * x_hat:
    # dx = rstd * gamma * (dout - s1 / N - x_hat * s2 / N).
    "bn_backward": ("T dout, T x_hat, T s1, T s2, T scale, T inv_n", "T dx",
                    "dx = scale * ((dout - s1 * inv_n) - x_hat * (s2 * inv_n))"),
    # The official regression loss's gradient with respect to n(p): dn = 2 (n_p - n_z) g.
    "mse_dn": ("T n_p, T n_z, T g", "T dn", "dn = (T)2 * (n_p - n_z) * g"),
    # l2-normalise backward: dx = dn * rstd + n * c, with c = -rstd (n . dn) per row (0 where clamped).
    "l2n_backward": ("T dn, T n, T rstd, T c", "T dx", "dx = dn * rstd + n * c"),
    # The first link of the optimisers' chains: u = p wd + g.
    "add_scaled": ("T p, T wd, T g", "T u", "u = p * wd + g"),
    # SGD with momentum: u = g + wd p; m <- momentum m + u; p <- p - lr m (Nesterov: p - lr (u + momentum m)).
    "sgd_apply": ("T g, T p, T m, T wd, T momentum, T lr", "T m_out, T p_out",
                  "T u = p * wd + g; T m_new = m * momentum + u; m_out = m_new; p_out = p - m_new * lr"),
    "sgd_nesterov_apply": ("T g, T p, T m, T wd, T momentum, T lr", "T m_out, T p_out",
                           "T u = p * wd + g; T m_new = m * momentum + u; m_out = m_new; "
                           "p_out = p - (u + m_new * momentum) * lr"),
    # Adam / AdamW: u = g + wd_l2 p; m, v their moving averages; d = m_hat / (sqrt(v_hat) + eps) + wd_dec p.
    "adam_apply": ("T g, T p, T m, T v, T b1, T one_minus_b1, T b2, T one_minus_b2, T bc1, T bc2, T eps, "
                   "T wd_l2, T wd_dec, T lr", "T m_out, T v_out, T p_out",
                   "T u = p * wd_l2 + g; T m_new = m * b1 + u * one_minus_b1; "
                   "T v_new = v * b2 + (u * u) * one_minus_b2; m_out = m_new; v_out = v_new; "
                   "p_out = p - ((m_new / bc1) / (sqrt(v_new / bc2) + eps) + p * wd_dec) * lr"),
    # Batch-norm running statistics, one update (layers.update_running_stats). Haiku's zero-debiased EMA: the
    # weights on the old value and on this batch, keep = decay (1 - decay^(t-1)) / (1 - decay^t) and
    # new = (1 - decay) / (1 - decay^t), in double (as NumPy takes a float to an integer power), then rounded to T.
    "bn_running_haiku": ("T mean, T var, T batch_mean, T batch_var, int64 t, float64 decay", "T mean_out, T var_out",
                         "double b = pow(decay, (double)(t - 1)); double c = pow(decay, (double)(t)); "
                         "T keep = (T)(decay * (1.0 - b) / (1.0 - c)); T new_w = (T)((1.0 - decay) / (1.0 - c)); "
                         "mean_out = keep * mean + new_w * batch_mean; var_out = keep * var + new_w * batch_var"),
    # PyTorch's: value <- decay value + (1 - decay) v, with the unbiased variance v = batch_var * n / (n - 1).
    "bn_running_torch": ("T mean, T var, T batch_mean, T batch_var, T decay, T one_minus_decay, T unbias",
                         "T mean_out, T var_out",
                         "mean_out = decay * mean + one_minus_decay * batch_mean; "
                         "var_out = decay * var + one_minus_decay * (batch_var * unbias)"),
    # LARS with the official trust ratio, after the two squared norms: r = eta ||p|| / (||u|| + eps) where both
    # norms are > 0, else 1; m <- momentum m + r u; p <- p - lr m.
    "lars_trust_apply": ("T u, T sq_p, T sq_u, T eta, T eps, T m, T p, T momentum, T lr", "T m_out, T p_out",
                         "T p_norm = sqrt(sq_p); T u_norm = sqrt(sq_u); "
                         "T r = (p_norm > (T)0 && u_norm > (T)0) ? eta * p_norm / (u_norm + eps) : (T)1; "
                         "T m_new = m * momentum + u * r; m_out = m_new; p_out = p - m_new * lr"),
    # LARS, after the norms: m <- momentum m + r u; p <- p - lr m.
    "lars_apply": ("T u, T r, T m, T p, T momentum, T lr", "T m_out, T p_out",
                   "T m_new = m * momentum + u * r; m_out = m_new; p_out = p - m_new * lr"),
    # EMA of the target: t <- tau t + (1 - tau) o (the paper's eq. 1), or the official code's
    # t <- t + (1 - tau) (o - t): the same average, rounded differently.
    "ema": ("T t, T o, T tau, T one_minus_tau", "T t_out", "t_out = tau * t + one_minus_tau * o"),
    "ema_increment": ("T t, T o, T one_minus_tau", "T t_out", "t_out = t + one_minus_tau * (o - t)"),
}


# --------------------------------------------------------------------------- ReLU


def relu_backward_ref(xp, dout, y, out=None):
    """dx = dout * [y > 0] (y: ReLU output), written into ``out`` when given."""
    return xp.multiply(dout, y > 0, out=out)


def relu_backward(xp, dout, y, out=None):
    if use_fused(xp):
        return _kernel(xp, "relu_backward")(dout, y, out) if out is not None else \
            _kernel(xp, "relu_backward")(dout, y)
    return relu_backward_ref(xp, dout, y, out)


# --------------------------------------------------------------------------- batch norm


def rstd_ref(xp, var, eps):
    """rstd = 1 / sqrt(var + eps): eps inside the root bounds rstd by 1/sqrt(eps)."""
    return 1 / xp.sqrt(var + eps)


def rstd(xp, var, eps):
    if use_fused(xp):
        return _kernel(xp, "rstd")(var, eps)
    return rstd_ref(xp, var, eps)


def bn_apply_ref(xp, x, mean, rstd, gamma, beta, *, need_cache=True, overwrite_x=False, out=None):
    """x_hat = (x - mean) * rstd, out = gamma * x_hat + beta; returns (out, x_hat or None).

    ``mean`` None: x is already centred. ``overwrite_x``: x may be used as storage (for x_hat,
    or for out without a cache). ``out``: storage for out (with a cache), or None.
    """
    if mean is None:
        x_hat = xp.multiply(x, rstd, out=x if overwrite_x else None)  # (..., N, F)
    else:
        x_hat = xp.subtract(x, mean, out=x if overwrite_x else None)  # (..., N, F)
        xp.multiply(x_hat, rstd, out=x_hat)
    if not need_cache:
        xp.multiply(x_hat, gamma, out=x_hat)
        xp.add(x_hat, beta, out=x_hat)
        return x_hat, None
    y = xp.multiply(x_hat, gamma, out=out)
    y += beta
    return y, x_hat


def bn_apply(xp, x, mean, rstd, gamma, beta, *, need_cache=True, overwrite_x=False, out=None):
    if use_fused(xp):
        center = 0.0 if mean is None else mean
        if not need_cache:
            k = _kernel(xp, "bn_apply_nocache")
            return (k(x, center, rstd, gamma, beta, x) if overwrite_x else k(x, center, rstd, gamma, beta)), None
        x_hat = x if overwrite_x else xp.empty_like(x)
        y = out if out is not None else xp.empty_like(x)
        _kernel(xp, "bn_apply")(x, center, rstd, gamma, beta, x_hat, y)
        return y, x_hat
    return bn_apply_ref(xp, x, mean, rstd, gamma, beta, need_cache=need_cache, overwrite_x=overwrite_x, out=out)


def bn_backward_dx_ref(xp, dout, x_hat, s1, s2, scale, n, out=None):
    """dx = scale * (dout - s1 / n - x_hat * (s2 / n)), scale = rstd * gamma; into ``out`` if given.

    s1, s2: per-group sums over the batch of dout and dout * x_hat, shape (..., 1, F); scale the same
    shape (the training statistics' rstd is per group).
    On the CPU the chain runs over blocks of rows through a block-sized scratch, so the
    x_hat * (s2 / n) term never takes an activation-sized temporary (same values as whole-array
    ufuncs: each element sees the same operations).
    """
    c1, c2 = s1 / n, s2 / n  # (..., 1, F)
    dx = xp.empty_like(dout) if out is None else out
    f = dout.shape[-1]
    d3, x3, o3 = (a.reshape(-1, n, f) for a in (dout, x_hat, dx))  # (G, N, F) views
    c1, c2 = c1.reshape(-1, 1, f), c2.reshape(-1, 1, f)
    sc = scale.reshape(-1, 1, f)  # (G, 1, F)
    rows = n if getattr(xp, "__name__", "") == "cupy" else max(1, min(n, (BLOCK * 4) // f))
    t = xp.empty((rows, f), dtype=dout.dtype)
    for g in range(d3.shape[0]):
        for r in range(0, n, rows):
            d, tb = o3[g, r:r + rows], t[: min(rows, n - r)]
            xp.subtract(d3[g, r:r + rows], c1[g], out=d)
            xp.multiply(x3[g, r:r + rows], c2[g], out=tb)
            d -= tb
            d *= sc[g]
    return dx


def bn_backward_dx(xp, dout, x_hat, s1, s2, scale, n, out=None):
    if use_fused(xp):
        k = _kernel(xp, "bn_backward")
        inv_n = 1.0 / n
        return k(dout, x_hat, s1, s2, scale, inv_n, out) if out is not None else \
            k(dout, x_hat, s1, s2, scale, inv_n)
    return bn_backward_dx_ref(xp, dout, x_hat, s1, s2, scale, n, out)


def running_stats_ref(xp, mean, var, batch_mean, batch_var, t, n, decay, mode):
    """The t-th EMA update of batch-norm running statistics (``layers.update_running_stats`` gives the two
    conventions); returns the new (mean, var), shape (F,).

    ``"haiku"``: the zero-debiased EMA's weights on the old value and on this batch, computed in float64
    (t an integer, or a 0-d integer array) and rounded to the buffers' dtype, so float32 stays float32.
    ``"torch"``: decay on the old value, and the unbiased variance batch_var * n / (n - 1).
    """
    if mode == "haiku":
        keep = decay * (1 - decay ** (t - 1)) / (1 - decay**t)  # weight on the old value
        new = (1 - decay) / (1 - decay**t)  # weight on this batch
        keep = xp.asarray(keep, dtype=batch_mean.dtype)
        new = xp.asarray(new, dtype=batch_mean.dtype)
        return keep * mean + new * batch_mean, keep * var + new * batch_var
    unbiased = batch_var * (n / (n - 1))
    return decay * mean + (1 - decay) * batch_mean, decay * var + (1 - decay) * unbiased


def running_stats(xp, mean, var, batch_mean, batch_var, t, n, decay, mode):
    # One kernel instead of some twenty launches on 0-d arrays (the debiasing weights of a device count). The
    # kernel takes the int64 count a Network's buffers hold; another integer dtype, or a Python int, takes the
    # reference.
    if use_fused(xp) and get_array_module(t) is xp and t.dtype.name == "int64":
        if mode == "haiku":
            return _kernel(xp, "bn_running_haiku")(mean, var, batch_mean, batch_var, t, decay)
        return _kernel(xp, "bn_running_torch")(mean, var, batch_mean, batch_var, decay, 1 - decay, n / (n - 1))
    return running_stats_ref(xp, mean, var, batch_mean, batch_var, t, n, decay, mode)


@functools.lru_cache(maxsize=None)
def _row(xp, n: int, value: float, dtype: str, device: int):
    """A (1, n) row of ``value`` on ``device``, made once (the row that turns a sum over rows into a GEMM)."""
    return xp.full((1, n), value, dtype=dtype)


def _rows_by_gemm(xp) -> bool:
    """Whether sums over rows run as a product with a row of ones: on CuPy, with fusion on, unless float32
    matmuls may use TF32 (``CUPY_TF32=1``), which would round the batch statistics to 10 bits."""
    return use_fused(xp) and os.environ.get("CUPY_TF32", "0") == "0"


def mean_over(xp, a, axis):
    """``a.mean(axis, keepdims=True)``. On CuPy, over the rows (axis -2) it is the product of a row of 1 / N
    with each (N, F) group, (1, N) @ (..., N, F): cuBLAS reads the rows whole, where CuPy's reduction reads
    each column with a stride of F (a third of a step's GPU time at batch 4096)."""
    if axis == -2 and _rows_by_gemm(xp):
        n = a.shape[-2]
        return xp.matmul(_row(xp, n, 1.0 / n, a.dtype.name, xp.cuda.Device().id), a)
    return a.mean(axis=axis, keepdims=True)


def sum_over(xp, a, axis):
    """``a.sum(axis, keepdims=True)``; over the rows on CuPy, (1, N) @ (..., N, F) with a row of ones
    (:func:`mean_over`)."""
    if axis == -2 and _rows_by_gemm(xp):
        return xp.matmul(_row(xp, a.shape[-2], 1.0, a.dtype.name, xp.cuda.Device().id), a)
    return a.sum(axis=axis, keepdims=True)


def sum_of_product(xp, a, b, axis):
    """sum(a * b) over ``axis`` (-1 or -2), kept as a dim, without an array for a * b.

    NumPy: ``einsum`` (one pass, no temporary); CuPy: one reduction kernel over the features (-1), the
    product and a GEMM over the rows (-2, :func:`sum_over`).
    """
    if axis not in (-1, -2):
        raise ValueError(f"axis must be -1 or -2, got {axis!r}")
    if axis == -2 and _rows_by_gemm(xp):
        return sum_over(xp, a * b, -2)  # (the product, then a GEMM: see mean_over)
    if use_fused(xp):
        return _reduction(xp, "sum_of_product")(a, b, axis=axis, keepdims=True)
    if axis == -1:
        return xp.einsum("...p,...p->...", a, b)[..., None]
    return xp.einsum("...nf,...nf->...f", a, b)[..., None, :]


@functools.lru_cache(maxsize=None)
def _reduction(xp, name: str):
    assert name == "sum_of_product"
    return xp.ReductionKernel("T a, T b", "T y", "a * b", "a + b", "y = a", "0", "byol_sum_of_product")


# --------------------------------------------------------------------------- l2 normalisation / loss


def mse_dn_ref(xp, n_p, n_z, g):
    """dn_p = 2 (n_p - n_z) g: gradient of ||n_p - n_z||^2 * g with respect to n_p."""
    dn = n_p - n_z
    dn *= 2
    dn *= g
    return dn


def mse_dn(xp, n_p, n_z, g):
    if use_fused(xp):
        return _kernel(xp, "mse_dn")(n_p, n_z, g)
    return mse_dn_ref(xp, n_p, n_z, g)


def l2n_backward_ref(xp, dn, n, rstd, c):
    """dx = dn * rstd + n * c (c = -rstd (n . dn), or 0 where clamped: one value per row)."""
    dx = dn * rstd
    dx += n * c
    return dx


def l2n_backward(xp, dn, n, rstd, c):
    if use_fused(xp):
        return _kernel(xp, "l2n_backward")(dn, n, rstd, c)
    return l2n_backward_ref(xp, dn, n, rstd, c)


# --------------------------------------------------------------------------- optimiser and EMA


def python_zero(w) -> bool:
    """Whether ``w`` is the Python float 0.0 (a term to skip; a 0-d array 0 is computed with)."""
    return isinstance(w, float) and w == 0.0


def add_scaled_ref(xp, gb, pb, wd, ub):
    """ub = pb * wd + gb, computed in that order into ``ub`` (wd a Python 0.0: a copy of gb, exactly);
    one block of a blocked chain, or whole arrays."""
    if python_zero(wd):
        xp.copyto(ub, gb)
    else:
        xp.multiply(pb, wd, out=ub)
        xp.add(ub, gb, out=ub)


def add_scaled(xp, gb, pb, wd, ub):
    if use_fused(xp) and not python_zero(wd):
        _kernel(xp, "add_scaled")(pb, wd, gb, ub)
        return
    add_scaled_ref(xp, gb, pb, wd, ub)


def sgd_apply_ref(xp, g, p, m, wd, momentum, lr, nesterov, m_out, p_out):
    """u = g + wd * p; m_out = momentum * m + u; p_out = p - lr * m_out, or with ``nesterov``
    p_out = p - lr * (u + momentum * m_out); block by block through two block-sized scratches."""
    def chain(gb, pb, mb, mob, pob, ub, sb):
        add_scaled_ref(xp, gb, pb, wd, ub)
        xp.multiply(mb, momentum, out=mob)
        xp.add(mob, ub, out=mob)
        d = mob
        if nesterov:
            xp.multiply(mob, momentum, out=sb)
            xp.add(ub, sb, out=ub)
            d = ub
        xp.multiply(d, lr, out=sb)
        xp.subtract(pb, sb, out=pob)

    run_blocked(chain, g, p, m, m_out, p_out, scratch_dtype=p.dtype, n_scratch=2)


def sgd_apply(xp, g, p, m, wd, momentum, lr, nesterov, m_out, p_out):
    if use_fused(xp):
        _kernel(xp, "sgd_nesterov_apply" if nesterov else "sgd_apply")(g, p, m, wd, momentum, lr, m_out, p_out)
        return
    sgd_apply_ref(xp, g, p, m, wd, momentum, lr, nesterov, m_out, p_out)


def adam_apply_ref(xp, g, p, m, v, b1, b2, bc1, bc2, eps, wd_l2, wd_dec, lr, m_out, v_out, p_out):
    """u = g + wd_l2 * p (Adam's L2); m_out = b1 m + (1 - b1) u; v_out = b2 v + (1 - b2) u^2;
    d = (m_out / bc1) / (sqrt(v_out / bc2) + eps) + wd_dec * p (AdamW's decay, the old p);
    p_out = p - lr * d. Block by block through two block-sized scratches."""
    def chain(gb, pb, mb, vb, mob, vob, pob, s1, s2):
        u = gb
        if not python_zero(wd_l2):
            add_scaled_ref(xp, gb, pb, wd_l2, s1)
            u = s1
        xp.multiply(u, 1.0 - b1, out=s2)
        xp.multiply(mb, b1, out=mob)
        xp.add(mob, s2, out=mob)                   # m = b1*m + (1-b1)*u
        xp.multiply(u, u, out=s2)
        xp.multiply(s2, 1.0 - b2, out=s2)
        xp.multiply(vb, b2, out=vob)
        xp.add(vob, s2, out=vob)                   # v = b2*v + (1-b2)*u^2
        # eps goes *outside* the square root, after bias correction: m_hat / (sqrt(v_hat) + eps)
        xp.divide(vob, bc2, out=s1)
        xp.sqrt(s1, out=s1)
        xp.add(s1, eps, out=s1)                    # sqrt(v_hat) + eps
        xp.divide(mob, bc1, out=s2)
        xp.divide(s2, s1, out=s2)                  # d = m_hat / (sqrt(v_hat) + eps)
        if not python_zero(wd_dec):
            xp.multiply(pb, wd_dec, out=s1)
            xp.add(s2, s1, out=s2)                 # AdamW: d += wd*p (old p; scaled by lr below)
        xp.multiply(s2, lr, out=s2)
        xp.subtract(pb, s2, out=pob)               # p = p - lr_p*d

    run_blocked(chain, g, p, m, v, m_out, v_out, p_out, scratch_dtype=p.dtype, n_scratch=2)


def adam_apply(xp, g, p, m, v, b1, b2, bc1, bc2, eps, wd_l2, wd_dec, lr, m_out, v_out, p_out):
    if use_fused(xp):
        _kernel(xp, "adam_apply")(g, p, m, v, b1, 1.0 - b1, b2, 1.0 - b2, bc1, bc2, eps, wd_l2, wd_dec, lr,
                                  m_out, v_out, p_out)
        return
    adam_apply_ref(xp, g, p, m, v, b1, b2, bc1, bc2, eps, wd_l2, wd_dec, lr, m_out, v_out, p_out)


def ratio_or_one(xp, ok, num, den):
    """``num / den`` where ``ok`` else 1, as a 0-d array of den's dtype, never dividing by 0."""
    one = xp.ones((), dtype=den.dtype)
    return xp.where(ok, num / xp.where(ok, den, one), one)


def lars_trust_ratio_ref(xp, p, u, eta, eps):
    """The official trust ratio: (r, ok) with ok = ||p|| > 0 and ||u|| > 0 (0-d arrays) and
    r = eta ||p|| / (||u|| + eps) where ok, else 1; the norms l2 over the whole tensor, in its dtype."""
    p_norm, u_norm = xp.linalg.norm(p), xp.linalg.norm(u)
    ok = (p_norm > 0) & (u_norm > 0)
    return ratio_or_one(xp, ok, eta * p_norm, u_norm + eps), ok


def lars_trust_apply_ref(xp, u, m, p, eta, eps, momentum, lr, m_out, p_out):
    """r from :func:`lars_trust_ratio_ref`, then :func:`lars_apply_ref` (u <- u r, u overwritten)."""
    r, _ = lars_trust_ratio_ref(xp, p, u, eta, eps)
    lars_apply_ref(xp, u, r, m, p, momentum, lr, m_out, p_out)


def lars_trust_apply(xp, u, m, p, eta, eps, momentum, lr, m_out, p_out):
    # The two squared norms, then one kernel, instead of some fifteen launches; u is not written. (vdot: CuPy's
    # vector dot, a CUB device-wide reduction where that accelerator is on, CuPy 14's default. A ReductionKernel
    # to one value runs on one thread block: at paper_head's sizes it made the step three times slower.)
    if use_fused(xp):
        _kernel(xp, "lars_trust_apply")(u, xp.vdot(p, p), xp.vdot(u, u), eta, eps, m, p, momentum, lr, m_out, p_out)
        return
    lars_trust_apply_ref(xp, u, m, p, eta, eps, momentum, lr, m_out, p_out)


def lars_apply_ref(xp, u, r, m, p, momentum, lr, m_out, p_out):
    """u <- u * r (skipped when r is None); m_out = momentum * m + u; p_out = p - lr * m_out.

    Written block by block (:func:`run_blocked`), so that on the CPU each block of u, m, p stays
    in cache for the whole chain, and every array is read or written once; the result is
    bitwise that of whole-array ufuncs.
    """
    def chain(ub, mb, pb, mob, pob, sb):
        if r is not None:
            xp.multiply(ub, r, out=ub)
        xp.multiply(mb, momentum, out=mob)
        xp.add(mob, ub, out=mob)
        xp.multiply(mob, lr, out=sb)
        xp.subtract(pb, sb, out=pob)

    run_blocked(chain, u, m, p, m_out, p_out, scratch_dtype=p.dtype)


def lars_apply(xp, u, r, m, p, momentum, lr, m_out, p_out):
    if use_fused(xp):
        _kernel(xp, "lars_apply")(u, 1.0 if r is None else r, m, p, momentum, lr, m_out, p_out)
        return
    lars_apply_ref(xp, u, r, m, p, momentum, lr, m_out, p_out)


EMA_FORMS = ("weighted", "increment")


def ema_ref(xp, t, o, tau, out, form="weighted"):
    """out = tau * t + (1 - tau) * o (``"weighted"``) or t + (1 - tau) * (o - t) (``"increment"``),
    block by block through a block-sized scratch."""
    def weighted(tb, ob, outb, sb):
        xp.multiply(ob, 1 - tau, out=sb)
        xp.multiply(tb, tau, out=outb)
        xp.add(outb, sb, out=outb)

    def increment(tb, ob, outb, sb):
        xp.subtract(ob, tb, out=sb)
        xp.multiply(sb, 1 - tau, out=sb)
        xp.add(tb, sb, out=outb)

    run_blocked(weighted if form == "weighted" else increment, t, o, out, scratch_dtype=t.dtype)
    return out


def ema(xp, t, o, tau, out, form="weighted"):
    if use_fused(xp):
        if form == "weighted":
            return _kernel(xp, "ema")(t, o, tau, 1 - tau, out)
        return _kernel(xp, "ema_increment")(t, o, 1 - tau, out)
    return ema_ref(xp, t, o, tau, out, form)
