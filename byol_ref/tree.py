"""Tiny helpers over flat parameter dicts (the project's whole "tree" framework).

State in byol_ref is a plain flat dict with dotted string keys, e.g.
``{"encoder.fc1.weight": (D, H) array, "encoder.fc1.bias": (H,) array, ...}``
(STYLE.md 3). ``params``, ``grads``, ``buffers``, optimiser state and the target
params are all such dicts; these helpers replace a framework's pytree utilities.

Every helper is pure: it returns a new dict and never mutates its inputs. Arrays are
NumPy or CuPy; the array module is taken from the arrays themselves.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from .backend import get_array_module, to_numpy

Tree = Mapping[str, Any]


def check_same_keys(a: Tree, b: Tree, name_a: str = "a", name_b: str = "b") -> None:
    """Raise unless two flat dicts have exactly the same keys.

    Args:
        a: a flat dict.
        b: another flat dict.
        name_a: how to call ``a`` in the error message (e.g. ``"params"``).
        name_b: how to call ``b`` in the error message (e.g. ``"grads"``).

    Raises:
        TypeError: ``a`` or ``b`` is no dict.
        ValueError: listing the keys of ``a`` missing from ``b`` and the extra keys in ``b``.
    """
    for tree, name in ((a, name_a), (b, name_b)):
        if not isinstance(tree, Mapping):
            raise TypeError(f"{name} must be a dict name -> array, got {type(tree).__name__}")
    ka, kb = set(a), set(b)
    if ka != kb:
        missing = sorted(ka - kb)
        extra = sorted(kb - ka)
        raise ValueError(
            f"{name_b} must have exactly the keys of {name_a}; "
            f"missing from {name_b}: {missing}, extra in {name_b}: {extra}"
        )


def tree_map(fn: Callable[..., Any], *trees: Tree) -> dict:
    """Apply ``fn`` key by key: ``{k: fn(t0[k], t1[k], ...)}``.

    Args:
        fn: function of as many arrays as there are trees.
        *trees: one or more flat dicts with identical key sets.

    Returns:
        A new dict with the keys (and key order) of the first tree.

    Raises:
        ValueError: no tree given, or the key sets differ (missing/extra keys listed).
    """
    if not trees:
        raise ValueError("tree_map needs at least one tree, got none")
    first = trees[0]
    for i, t in enumerate(trees[1:], start=1):
        check_same_keys(first, t, "trees[0]", f"trees[{i}]")
    return {k: fn(*(t[k] for t in trees)) for k in first}


def zeros_like(tree: Tree) -> dict:
    """Zeros with the shape, dtype and device of every array in ``tree``."""
    return {k: get_array_module(v).zeros_like(v) for k, v in tree.items()}


def add(a: Tree, b: Tree) -> dict:
    """Key-wise ``a + b`` (same keys and, key by key, the same shape required: a (3, 1) entry
    would broadcast against a (3, 4) one into a sum of neither's shape)."""
    check_same_keys(a, b, "a", "b")
    for k in a:
        if tuple(a[k].shape) != tuple(b[k].shape):
            raise ValueError(f"b[{k!r}] has shape {tuple(b[k].shape)}, expected a[{k!r}]'s {tuple(a[k].shape)}")
    return {k: a[k] + b[k] for k in a}  # (keys checked above: tree_map would check them again)


def scale(tree: Tree, s: float) -> dict:
    """Key-wise ``s * tree``; ``s`` is a Python float, so float32 arrays stay float32."""
    s = float(s)
    return {k: v * s for k, v in tree.items()}


def copy(tree: Tree) -> dict:
    """A deep copy: new arrays that share no memory with ``tree``."""
    return {k: v.copy() for k, v in tree.items()}


def global_norm(tree: Tree):
    """The l2 norm of all arrays of ``tree`` taken together, sqrt(sum_k ||t_k||^2).

    The sum of squares is accumulated in the arrays' own dtype (float32 stays float32).

    Returns:
        A 0-d value in the trees' dtype and on their device (a NumPy scalar on NumPy, a 0-d
        CuPy array on CuPy; ``float(...)`` brings it to the host); ``0.0`` for an empty tree.
    """
    total = 0.0
    for v in tree.values():
        flat = v.ravel()
        total = total + get_array_module(v).vdot(flat, flat)  # sum of squares, no (size,) temporary
    if not tree:
        return total
    return get_array_module(*tree.values()).sqrt(total)


def tree_to_numpy(tree: Tree) -> dict:
    """Every array of ``tree`` as a host NumPy array (a no-op copy-free pass on NumPy)."""
    return {k: to_numpy(v) for k, v in tree.items()}


def describe(value) -> str:
    """An array as its dtype and shape, ``float64 (64, 256)`` (a 0-d one with its value, ``int64 5``;
    a CuPy one with ``cupy`` before it); anything else as its repr. For the reprs of the NamedTuples
    that hold parameter dicts (``Network``, ``LossAndGrads``, ``TrainState``): their values printed
    in full made ``online`` 24 KB in a notebook, and a ``fit`` result 245 KB."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if not isinstance(shape, tuple) or dtype is None:
        return repr(value)
    where = "cupy " if type(value).__module__.split(".")[0] == "cupy" else ""
    return f"{where}{dtype} {value.item()!r}" if shape == () else f"{where}{dtype} {shape}"


def describe_tree(tree) -> str:
    """A flat dict as ``{name: dtype shape, ...}`` (:func:`describe` of each value)."""
    if not isinstance(tree, Mapping):
        return describe(tree)
    return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in tree.items()) + "}"
