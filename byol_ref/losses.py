"""L2 normalisation and BYOL's regression loss, forward and backward.

The loss of one pair is ``l(p, z) = || n(p) - n(z) ||^2`` where n is l2 normalisation:
``2 - 2 cos(p, z)`` when both norms are away from zero. Derivations in
``docs/derivations.md``.

Three normalisation epsilon conventions are in use (BYOL_FACTS d1):

=========== ============================== ============ ======================================
eps_mode    formula                        default eps  who
=========== ============================== ============ ======================================
``sq_norm`` x * rsqrt(max(sum x^2, eps))   1e-12        official BYOL (``helpers.l2_normalize``)
``norm``    x / max(||x||, eps)            1e-12        PyTorch ``F.normalize`` (byol-pytorch)
``add``     x / sqrt(sum x^2 + eps)        1e-8         the Elixir/Axon module (Edifice)
=========== ============================== ============ ======================================

``norm`` with eps 1e-8 is also ``F.cosine_similarity`` as PyTorch >= 1.12 computes it (each norm
clamped), which lightly and solo-learn use (d2): the same loss, and the same gradient except for a
row whose norm is at or below eps, where PyTorch's no-grad clamp leaves the norm's own derivative in
(``docs/derivations.md`` section 5).

All three are ``n = x * rstd(s)`` with ``s = sum x^2``, so one backward serves them all:
``dx = dn * rstd + 2 x (x . dn) * drstd/ds``, where ``drstd/ds = -rstd^3 / 2`` except
where the clamp is active (then rstd is a constant and the derivative is 0). The code computes
the same as ``dx = rstd (dn - n (n . dn))`` (``rstd dn`` where clamped), which never forms
rstd^3: that overflows once rstd > 7e12 in float32 (a norm below 1.4e-13), where dx is finite.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from . import kernels
from .backend import get_array_module
from .checks import check_cache, check_operands, check_real, check_same_dtype, check_upstream

EPS_MODES = ("sq_norm", "norm", "add")
DEFAULT_EPS = {"sq_norm": 1e-12, "norm": 1e-12, "add": 1e-8}
LOSS_FORMS = ("mse", "2-2cos", "neg_cos")


def eps_for_new_mode(old_mode, old_eps, new_mode):
    """The eps a copy keeps when its ``norm_eps_mode`` changes and its eps is not given anew.

    An eps that is ``old_mode``'s default was derived, not chosen, so the copy takes ``new_mode``'s
    default (sq_norm's 1e-12 does not carry over to add, whose default is 1e-8); any other eps was
    chosen and stays. One rule for ``Config.replace`` and ``Preset.replace``."""
    if new_mode != old_mode and new_mode in DEFAULT_EPS and old_eps == DEFAULT_EPS.get(old_mode):
        return DEFAULT_EPS[new_mode]
    return old_eps


class NormalizeCache(NamedTuple):
    """The output n = x * rstd (the array returned, not a copy) and two per-row values."""

    n: Any  # (..., P)
    rstd: Any  # (..., 1)
    clamped: Any  # (..., 1) bool: where rstd is the clamp's constant (drstd/ds = 0 there)


def l2_normalize_forward(x, *, eps=None, eps_mode="sq_norm"):
    """Normalise each row of x to unit l2 norm.

    Args:
        x: (..., P).
        eps: the clamp or additive epsilon, a finite real > 0 (with 0 an all-zero row would
            be 0 * inf = NaN in every mode); None for the mode's default.
        eps_mode: ``"sq_norm"`` (official), ``"norm"`` (PyTorch), ``"add"`` (Edifice).

    Returns:
        n: like x.
        cache: NormalizeCache.
    """
    if eps_mode not in EPS_MODES:
        raise ValueError(f"eps_mode must be one of {EPS_MODES}, got {eps_mode!r}")
    # A scalar check only (this runs every step): the Python float keeps x's dtype (weak scalar).
    eps = DEFAULT_EPS[eps_mode] if eps is None else check_real(eps, "eps", 0, None, lo_open=True)
    check_operands("l2_normalize_forward", x)
    xp = get_array_module(x)
    s = (x * x).sum(axis=-1, keepdims=True)  # (..., 1) squared norm
    if eps_mode == "sq_norm":
        # The clamp is on the *squared* norm: rstd = 1/sqrt(max(s, eps)), i.e. ||x|| >= 1e-6.
        clamped = s <= eps
        rstd = 1 / xp.sqrt(xp.maximum(s, eps))
    elif eps_mode == "norm":
        # The clamp is on the norm itself: rstd = 1/max(||x||, eps).
        norm = xp.sqrt(s)
        clamped = norm <= eps
        rstd = 1 / xp.maximum(norm, eps)
    else:
        # Additive: never clamped, slightly shrinks every vector (||n||^2 = s/(s+eps) < 1).
        clamped = xp.zeros(s.shape, dtype=bool)
        rstd = 1 / xp.sqrt(s + eps)
    n = x * rstd
    return n, NormalizeCache(n, rstd, clamped)


def l2_normalize_backward(dn, cache):
    """Backward of n = x * rstd(sum x^2).

    dx = dn * rstd + 2 * x * (x . dn) * drstd/ds. Unclamped, drstd/ds = -rstd^3 / 2 and this
    is rstd (dn - n (n . dn)): with a unit n (the clamp modes), the component of dn along n is
    removed, since moving x along itself does not change n. Clamped, it is rstd dn. The code
    computes these two forms (rstd^3 would overflow float32 for norms below 1.4e-13).

    Args:
        dn: (..., P).
        cache: NormalizeCache.

    Returns:
        dx: (..., P).
    """
    check_cache("l2_normalize_backward", cache, NormalizeCache, "l2_normalize_forward")
    n, rstd, clamped = cache
    if getattr(getattr(clamped, "dtype", None), "kind", None) != "b":  # (an older cache held x, rstd, drstd/ds)
        raise TypeError(f"l2_normalize_backward: cache must be the NormalizeCache(n, rstd, clamped) that "
                        f"l2_normalize_forward returned, got a third field of {type(clamped).__name__}")
    check_upstream("l2_normalize_backward", dn, n.shape, n.dtype, name="dn")
    xp = get_array_module(dn)
    n_dot_dn = kernels.sum_of_product(xp, n, dn, -1)  # (..., 1)
    # dn * rstd + n * c, c = -rstd (n . dn) (0 where clamped): one fused kernel on CuPy
    return kernels.l2n_backward(xp, dn, n, rstd, xp.where(clamped, 0, -rstd * n_dot_dn))


class RegressionCache(NamedTuple):
    """Caches of both normalisations plus the normalised vectors and the loss form."""

    p_cache: NormalizeCache
    z_cache: NormalizeCache
    n_p: Any  # (..., P)
    n_z: Any  # (..., P)
    form: str


def regression_loss_forward(p, z, *, form="mse", eps=None, eps_mode="sq_norm"):
    """Per-sample BYOL regression loss between predictions p and projections z.

    Forms (BYOL_FACTS d3):
      ``"mse"``:     || n(p) - n(z) ||^2, official (``helpers.regression_loss``), in [0, 4];
      ``"2-2cos"``:  2 - 2 n(p) . n(z), byol-pytorch, the Elixir module;
      ``"neg_cos"``: - n(p) . n(z), lightly's ``NegativeCosineSimilarity``.
    "mse" and "2-2cos" agree exactly when both vectors are away from the eps clamp and
    eps_mode is not ``"add"``.

    Args:
        p: online predictions, (..., P).
        z: target projections, (..., P).
        form: one of the forms above.
        eps, eps_mode: as in l2_normalize_forward.

    Returns:
        loss: per-sample loss, shape (...,).
        cache: RegressionCache.

    References:
        Grill et al. 2020, eq. 2.
    """
    if form not in LOSS_FORMS:
        raise ValueError(f"form must be one of {LOSS_FORMS}, got {form!r}")
    if getattr(z, "shape", None) != getattr(p, "shape", None):  # (a z of one row would broadcast over p's)
        raise ValueError(f"regression_loss_forward: z has shape {getattr(z, 'shape', type(z).__name__)}, p "
                         f"{getattr(p, 'shape', type(p).__name__)}; one target per prediction")
    check_operands("regression_loss_forward", p, x_name="p")
    check_same_dtype("regression_loss_forward", p, x_name="p", z=z)
    n_p, p_cache = l2_normalize_forward(p, eps=eps, eps_mode=eps_mode)
    n_z, z_cache = l2_normalize_forward(z, eps=eps, eps_mode=eps_mode)
    if form == "mse":
        diff = n_p - n_z
        loss = (diff * diff).sum(axis=-1)
    else:
        cos = (n_p * n_z).sum(axis=-1)
        loss = 2 - 2 * cos if form == "2-2cos" else -cos
    return loss, RegressionCache(p_cache, z_cache, n_p, n_z, form)


def regression_loss_dn(dloss, cache, *, need_dz=True) -> tuple[Any, Any]:  # (the second: None if not need_dz)
    """The gradient of regression_loss_forward with respect to the normalised vectors n(p), n(z).

    With g the upstream gradient of each sample's loss::

        mse:     dn_p = 2 (n_p - n_z) g,   dn_z = -dn_p
        2-2cos:  dn_p = -2 n_z g,          dn_z = -2 n_p g
        neg_cos: dn_p = -n_z g,            dn_z = -n_p g

    Args:
        dloss: upstream gradient of the per-sample loss, (...,).
        cache: RegressionCache.
        need_dz: False under stop-gradient: dn_z is then None.

    Returns:
        (dn_p, dn_z): each (..., P).
    """
    check_cache("regression_loss_dn", cache, RegressionCache, "regression_loss_forward")
    n_p = cache.n_p
    check_upstream("regression_loss_dn", dloss, n_p.shape[:-1], n_p.dtype, name="dloss")
    return _loss_dn(dloss, cache, need_dz)


def _loss_dn(dloss, cache, need_dz):
    """regression_loss_dn's formulas, after its check (regression_loss_backward makes its own)."""
    _, _, n_p, n_z, form = cache
    g = dloss[..., None]  # (..., 1)
    if form == "mse":
        dn_p = kernels.mse_dn(get_array_module(n_p), n_p, n_z, g)  # 2 (n_p - n_z) g
        return dn_p, (-dn_p if need_dz else None)
    scale = -2 * g if form == "2-2cos" else -g
    return n_z * scale, (n_p * scale if need_dz else None)


def regression_loss_backward(dloss, cache, *, need_dz=True) -> tuple[Any, Any]:  # (dz: None if not need_dz)
    """Backward of regression_loss_forward with respect to both inputs: regression_loss_dn, then
    each through its normalisation, ``dp = l2_normalize_backward(dn_p)`` and the same for z.

    In BYOL the target side gets no gradient (stop-gradient), but the gradient exists
    and the no-stop-gradient ablation needs it, so both are returned.

    Args:
        dloss: upstream gradient of the per-sample loss, (...,).
        cache: RegressionCache.
        need_dz: False under stop-gradient: dz is then not computed and None is returned.

    Returns:
        (dp, dz): each (..., P).
    """
    check_cache("regression_loss_backward", cache, RegressionCache, "regression_loss_forward")
    p_cache, z_cache, n_p, _, _ = cache
    check_upstream("regression_loss_backward", dloss, n_p.shape[:-1], n_p.dtype, name="dloss")
    dn_p, dn_z = _loss_dn(dloss, cache, need_dz)
    dz = l2_normalize_backward(dn_z, z_cache) if need_dz else None
    return l2_normalize_backward(dn_p, p_cache), dz
