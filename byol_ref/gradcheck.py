"""Numerical gradient checks, shipped so that other implementations can be verified too.

- :func:`numerical_gradient`: central differences of ``sum(f(x) * dout)``, one element
  at a time (CS231n ``eval_numerical_gradient_array``): the gradient of a
  vector-valued function contracted with an upstream gradient. The default is the
  fourth-order central stencil (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h, whose
  truncation error O(h^4) stays far below 1e-6 relative even where batch norm is
  strongly curved (small variance); ``order=2`` gives the classic (f(x+h) - f(x-h)) / 2h.
- :func:`directional_check`: a whole-model check along one random direction in
  parameter space (Chainer ``gradient_check.check_backward``): two forward passes,
  whatever the parameter count.
- :func:`rel_error`: max |a - b| / max(|a| + |b|, tiny), elementwise.
- :func:`grad_error`: the same with the floor at a fraction of the gradient's scale.

Choosing h. The stencil's error is truncation, about h^4 |f^(5)| / 30, plus rounding, about
eps * F / h, where F is the magnitude of the terms summed into ``sum(f(x) * dout)`` (not the
sum itself: 50 outputs of size 1 give F ~ 50). In float64 the default h = 1e-4 keeps both
near 1e-11 for smooth layers (truncation 1e-16 |f^(5)|, rounding 2e-12 F); h = 1e-5 made
the rounding term 1e-10 on a batch norm with F ~ 50, enough to fail a 1e-6 check on its
smallest gradient entries. Piecewise-smooth functions (ReLU networks) need the stencil not
to straddle a kink: pass a smaller h there and keep the inputs away from the kinks. In
float32 the rounding error is ~1e-3 or worse and a gradient check proves nothing.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from .backend import get_array_module, host
from .checks import check_plain, check_real, check_seed, read_only


def _real64(xp, v, name: str, op: str):
    """``v`` (an array, a list, a number) as float64 for a comparison: a masked array with values masked
    is refused (its hidden values were compared), and a complex one (its imaginary part was dropped,
    with a ComplexWarning)."""
    check_plain({name: v}, op, host_copy=True)
    a = xp.asarray(v)
    if a.dtype.kind == "c":
        raise TypeError(f"{op}: {name} is complex ({a.dtype}); compare its real and imaginary parts as two real "
                        "arrays")
    return a.astype("float64", copy=False)


def rel_error(a, b, floor: float = 1e-12) -> float:
    """Maximum elementwise relative error |a - b| / max(|a| + |b|, floor)."""
    floor = check_real(floor, "floor", lo=0, lo_open=True)  # (0 would make two zeros 0/0 = NaN)
    xp = get_array_module(a, b)
    a, b = _real64(xp, a, "a", "rel_error"), _real64(xp, b, "b", "rel_error")
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float((xp.abs(a - b) / xp.maximum(xp.abs(a) + xp.abs(b), floor)).max())


def grad_error(analytic, numerical, floor: float = 1e-4, scale: float | None = None) -> float:
    """Relative error of a gradient check: max |a - n| / max(|a| + |n|, floor * max|.|).

    Plain elementwise relative error is meaningless for entries whose true value is 0
    (a ReLU mask, a bias before batch norm): the numerical side is rounding noise of
    ~1e-13. Flooring the denominator at ``floor`` times the gradient's largest entry
    turns those entries into an absolute test, |a - n| < tol * floor * max|grad|.
    Pass ``scale`` (e.g. the largest entry of the whole model's gradient) when a tensor's
    own gradient may be exactly zero everywhere (a Linear bias followed by batch norm).
    """
    floor = check_real(floor, "floor", lo=0, lo_open=True)  # (0 would make two zero entries 0/0 = NaN)
    if scale is not None:
        scale = check_real(scale, "scale", lo=0)
    xp = get_array_module(analytic, numerical)
    a, n = _real64(xp, analytic, "analytic", "grad_error"), _real64(xp, numerical, "numerical", "grad_error")
    if a.shape != n.shape:
        raise ValueError(f"grad_error: shapes differ, {a.shape} vs {n.shape}")
    if a.size == 0:
        return 0.0
    if scale is None:
        scale = max(float(xp.abs(a).max()), float(xp.abs(n).max()))
    scale = max(scale, 1e-300)
    return float((xp.abs(a - n) / xp.maximum(xp.abs(a) + xp.abs(n), floor * scale)).max())


def numerical_gradient(f, x, dout=None, h: float | None = None, order: int = 4):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to x.

    Args:
        f: function of x returning an array (or a scalar if dout is None).
        x: float64 array; perturbed in place one element at a time (``f`` may read it by closure, as
            CS231n's ``eval_numerical_gradient`` has it) and restored, also where ``f`` raises.
        dout: upstream gradient, shape of f(x); None means f returns a scalar.
        h: step (default 1e-4 for order 4, 1e-6 for order 2; see the module docstring).
        order: 4 (five-point stencil, default) or 2 (classic central difference).

    Returns:
        Array like x.
    """
    xp = get_array_module(x)
    check_plain({"x": x, "dout": dout}, "numerical_gradient")  # (a torch tensor, say, before its dtype is read)
    if not hasattr(x, "dtype") or x.dtype.name != "float64":
        raise TypeError(f"numerical_gradient needs a float64 array x (got {getattr(x, 'dtype', type(x).__name__)}): "
                        "float32 rounding swamps the check")
    # (a read-only x: NumPy said only "assignment destination is read-only", at the first step)
    if read_only(x):
        raise ValueError("numerical_gradient: x is read-only, and it is perturbed in place, one element at a "
                         "time (f may read it by closure); pass a writable copy (x.copy()), and have f read that")
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    h = (1e-4 if order == 4 else 1e-6) if h is None else _check_step(h)
    if dout is not None and (getattr(dout, "dtype", None) is None or dout.dtype.name != "float64"):
        raise TypeError(f"numerical_gradient needs dout as a float64 array of f(x)'s shape, got "
                        f"{getattr(dout, 'dtype', type(dout).__name__)}")
    grad = xp.zeros_like(x)

    def value():
        out = f(x)
        # f(x)'s shape, every call (metadata only): a dout of another shape would broadcast against it, and
        # the result be the gradient of another function; an array out without dout has no one value.
        shape = tuple(getattr(out, "shape", ()))
        kind = str(getattr(out, "dtype", ""))  # (NumPy's, CuPy's, torch's "torch.float32" or JAX's)
        if kind.endswith(("float32", "float16")):  # (bfloat16 too)
            raise TypeError(f"numerical_gradient: f(x) returned {kind}, whose rounding swamps the check as a "
                            "float32 x would (a derivative good to about 1e-3); compute f in float64 (JAX computes "
                            "in float32 unless jax_enable_x64 is set)")
        if dout is None:
            if math.prod(shape) != 1:  # (not out.size: a torch tensor's is a method)
                raise ValueError(f"numerical_gradient: f(x) has shape {shape}; without dout f must return a "
                                 "scalar (pass dout, the upstream gradient of f(x)'s shape)")
            return float(out)
        if shape != tuple(dout.shape):
            raise ValueError(f"numerical_gradient: dout has shape {tuple(dout.shape)}, but f(x) has shape {shape}; "
                             "expected dout of f(x)'s shape")
        return float((xp.asarray(out) * dout).sum())

    def at(i, old, step):
        x[i] = old + step
        return value()

    # Index x itself (not a flat reshape of it, which is a copy when x is not C-contiguous: the
    # steps would never reach it and every entry would read 0).
    for i in host.ndindex(x.shape):
        old = float(x[i])  # (exact: a float64)
        try:
            if order == 2:
                grad[i] = (at(i, old, h) - at(i, old, -h)) / (2 * h)
            else:
                grad[i] = (at(i, old, -2 * h) - 8 * at(i, old, -h) + 8 * at(i, old, h) - at(i, old, 2 * h)) / (12 * h)
        finally:  # (an f that raises, or a Ctrl-C, leaves the caller's x as it was, not one entry moved by h)
            x[i] = old
    return grad


def _check_step(h) -> float:
    """The finite-difference step: a real number > 0 (0 divides by zero; a negative one flips the stencil)."""
    return check_real(h, "h", lo=0, lo_open=True)


def random_direction(params: dict, seed: int = 0) -> dict:
    """A random unit direction over all of ``params`` (standard normal, drawn on the host in
    the dict's order, then scaled to unit l2 norm over every entry together)."""
    if not isinstance(params, Mapping) or not all(hasattr(v, "shape") for v in params.values()):
        raise TypeError(f"params must be a dict name -> array, got {type(params).__name__}")
    xp = get_array_module(*params.values())
    rng = host.random.default_rng(check_seed(seed))
    u = {k: xp.asarray(rng.standard_normal(v.shape)) for k, v in params.items()}
    norm = sum(float((d * d).sum()) for d in u.values()) ** 0.5
    return {k: d / norm for k, d in u.items()}


def directional_check(loss_fn, params: dict, grads: dict, *, h: float = 1e-5, seed: int = 0,
                      direction: dict | None = None):
    """Check a whole gradient along one random direction.

    Takes a unit direction u over all params (:func:`random_direction` with ``seed``, or
    ``direction``) and compares the analytic directional derivative ``sum_k <grads[k], u[k]>``
    with the fourth-order central difference of t -> L(params + t u) at t = 0, which samples
    t in [-2h, 2h]. A network with ReLUs is only piecewise smooth: if a ReLU input changes
    sign inside that interval the difference quotient is wrong by O(1) while the gradient is
    right, so callers should make sure none does (the tests compare the ReLU input signs at
    t = -2h and t = +2h).

    Args:
        loss_fn: function of a params dict returning a scalar loss.
        params: float64 params dict.
        grads: analytic gradients, same keys.
        h: step.
        seed: seed of the direction (ignored when ``direction`` is given).
        direction: the direction, same keys and shapes as params (not normalised here).

    Returns:
        (analytic, numerical, relative_error).
    """
    for tree, name in ((params, "params"), (grads, "grads"), (direction, "direction")):
        if not isinstance(tree, Mapping) and not (tree is None and name == "direction"):
            raise TypeError(f"{name} must be a dict name -> array, got {type(tree).__name__}")
    if set(params) != set(grads):
        raise ValueError(f"params and grads keys differ: {sorted(set(params) ^ set(grads))}")
    not64 = {k: str(getattr(v, "dtype", type(v).__name__)) for k, v in params.items()
             if getattr(v, "dtype", None) is None or v.dtype.name != "float64"}
    if not64:
        raise TypeError(f"directional_check needs float64 params (float32 rounding swamps the check), got {not64}")
    h = _check_step(h)
    u = random_direction(params, seed) if direction is None else direction
    if set(u) != set(params):
        raise ValueError(f"direction and params keys differ: {sorted(set(u) ^ set(params))}")
    for tree, name in ((grads, "grads"), (u, "direction")):  # (one of another shape would broadcast in the sum)
        for k, p in params.items():
            if tuple(getattr(tree[k], "shape", ())) != tuple(p.shape) or not hasattr(tree[k], "dtype"):
                raise ValueError(f"{name}[{k!r}] must be an array of params[{k!r}]'s shape {tuple(p.shape)}, got "
                                 f"{getattr(tree[k], 'shape', type(tree[k]).__name__)}")
    norm = math.sqrt(sum(float((u[k] * u[k]).sum()) for k in params))
    if not 0 < norm < math.inf:  # (a zero direction passed any gradient: both sides are 0, the error 0)
        raise ValueError(f"direction has norm {norm:g}; expected a direction of norm > 0 and finite (random_direction "
                         "draws a unit one)")
    analytic = sum(float((grads[k] * u[k]).sum()) for k in params)

    def at(t):
        return float(loss_fn({k: params[k] + t * u[k] for k in params}))

    numerical = (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)
    err = abs(analytic - numerical) / max(abs(analytic) + abs(numerical), 1e-12)
    return analytic, numerical, err
