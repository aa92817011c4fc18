"""Input validation with messages that name the argument, what it got and what was expected."""
from __future__ import annotations

import contextlib
import errno
import math
import numbers
import operator
import os
import pathlib
import sys
import warnings
from collections.abc import Mapping

from .backend import get_array_module
from .backend import host as np


class ArgumentError(ValueError):
    """A refusal of one argument's value (``arg``, its name in the call), whose message keeps its
    parts apart: ``subject`` (how it names the value, ``"image_shape=(8, 9)"``), ``problem`` and
    ``advice`` (what to pass instead, in the call's terms), as ``"subject problem; advice"``. A
    caller that took the value another way (the command line, from a flag) gives its own subject
    or advice with :meth:`reworded` instead of matching the message's text."""

    def __init__(self, arg: str, problem: str, *, subject: str = "", advice: str = ""):
        self.arg, self.subject, self.problem, self.advice = arg, subject, problem, advice
        super().__init__(" ".join(filter(None, (subject, problem))) + (f"; {advice}" if advice else ""))

    def reworded(self, *, subject: str | None = None, advice: str | None = None) -> ArgumentError:
        """The same refusal with another ``subject`` or ``advice`` (None keeps this one's)."""
        return ArgumentError(self.arg, self.problem, subject=self.subject if subject is None else subject,
                             advice=self.advice if advice is None else advice)


def shown(value) -> str:
    """``value`` as a message shows what it got: its repr, but a NumPy scalar's as its number's or
    string's (``-1.0``, not ``np.float64(-1.0)``; ``'x'``, not ``np.str_('x')``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def check_choice(value, name, choices):
    """Raise ValueError unless ``value`` is one of ``choices``."""
    try:
        known = value in choices
    except TypeError:  # (a list, in a set of strings: unhashable)
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {shown(value)}")
    return value


def check_bool(value, name) -> bool:
    """``value`` as a Python bool (NumPy's bool too), else a TypeError naming it: 1 and "no" are
    not booleans, though Python would read them as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_positive_int(value, name, minimum=1):
    """``value`` as a Python int >= minimum: an int, a NumPy integer or a 0-d integer array, as
    :func:`check_real` takes a 0-d array (bools are refused)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def interval(lo=None, hi=None, lo_open=False, hi_open=False) -> str:
    """The interval as a message writes it: ``[0, 1)``, ``(0, inf)`` (an infinite end is never in it)."""
    lo = "-inf" if lo is None or lo == -math.inf else lo
    hi = "inf" if hi is None or hi == math.inf else hi
    return f"{'(' if lo_open or lo == '-inf' else '['}{lo}, {hi}{')' if hi_open or hi == 'inf' else ']'}"


def check_float_range(value, name, lo=None, hi=None, lo_open=False, hi_open=False):
    """Raise unless ``value`` is a real number inside the given range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    if v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {shown(value)}")
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
        hi is not None and (v > hi or (hi_open and v == hi)))
    if bad:
        raise ValueError(f"{name} must be in {interval(lo, hi, lo_open, hi_open)}, got {shown(value)}")
    return v


def check_real(value, name, lo=None, hi=None, lo_open=False, hi_open=False):
    """As :func:`check_float_range`, but only a real number is accepted: a string such as ``"0.9"``
    or a bool is a TypeError (check_float_range converts any value ``float()`` accepts, for
    settings read from text). A 0-d NumPy array of a real dtype is its number."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return check_float_range(value, name, lo, hi, lo_open=lo_open, hi_open=hi_open)


def check_seed(seed, name="seed", *, allow_none=False):
    """Raise unless ``seed`` is an int >= 0 (NumPy's seeds), or None when ``allow_none``; bools are refused."""
    if seed is None and allow_none:
        return None
    expected = "an int >= 0" + (" or None" if allow_none else "")
    try:
        if isinstance(seed, bool):
            raise TypeError
        value = operator.index(seed)  # int or a NumPy integer, never a float
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {seed!r} ({type(seed).__name__})") from None
    if value < 0:
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def check_operands(op: str, x, *, x_name: str = "x", per_feature: bool = False, **params) -> None:
    """Refuse what NumPy would take without a word: an ``x`` that is not a float array, a
    parameter in another dtype (the result would be promoted) or of a shape other than x's
    trailing axes, short of all of them (a 0-d or an x-shaped one would broadcast, and its
    gradient be summed wrongly), or, with ``per_feature``, other than ``(F,)``. Shapes
    and dtypes only: no data is read, so this costs no device synchronisation (the model
    checks its inputs' values once per step)."""
    check_plain({x_name: x}, op)  # (a torch tensor, say, before its dtype is read)
    if getattr(x, "dtype", None) is None or x.dtype.name not in ("float32", "float64"):
        raise TypeError(f"{op}: {x_name} must be a float32 or float64 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim == 0:  # (no feature axis: x.shape[-1] would be an IndexError, a norm over axis -1 a scalar's)
        raise ValueError(f"{op}: {x_name} must have a feature axis, shape (..., F), got a 0-d array")
    for name, a in params.items():
        if a is None:  # (check_same_dtype reads None as absent; a parameter here is never optional)
            raise TypeError(f"{op}: {name} must be an array in {x_name}'s dtype {x.dtype}, got None")
    check_same_dtype(op, x, x_name=x_name, **params)
    for name, a in params.items():
        if (tuple(a.shape) != tuple(x.shape[x.ndim - a.ndim:]) or a.ndim == 0 or (per_feature and a.ndim != 1)
                or (a.ndim >= 2 and a.ndim >= x.ndim)):  # (a scalar, or one value per element, would broadcast)
            one = per_feature or a.ndim == 0 or a.ndim >= x.ndim
            want = x.shape[-1:] if one else x.shape[x.ndim - a.ndim:]
            raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {tuple(want)} (the trailing "
                             f"{'axis' if one else 'axes'} of {x_name}, shape {tuple(x.shape)})")


def same_dtype(a, b) -> bool:
    """Whether dtypes ``a`` and ``b`` are one type, in either byte order: ``>f8`` (what
    ``np.save`` writes on a big-endian machine, or a FITS file holds) is float64 as ``<f8`` is;
    NumPy computes with the two alike, its results in the native order. (Equal dtypes answer at
    the first test: it runs on every operand of every step.) Another library's dtype (torch's
    ``torch.float64``) is never NumPy's."""
    return a == b or (isinstance(a, np.dtype) and isinstance(b, np.dtype)
                      and a.newbyteorder("=") == b.newbyteorder("="))


def native_order(a):
    """``a`` in this machine's byte order: ``a`` itself where it is already (or its dtype has none),
    else a copy. A file keeps the order of the machine that wrote it: ``np.load`` gives ``>f8``
    back from an ``np.save`` on a big-endian one, which CuPy cannot hold."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def read_only(a) -> bool:
    """Whether ``a`` is an array NumPy may not write into (its ``flags.writeable`` is False)."""
    return getattr(getattr(a, "flags", None), "writeable", True) is False


def check_overwritable(op: str, inplace: bool, **arrays) -> None:
    """Refuse, by name, an array that ``inplace=True`` would write the result into and that is
    read-only: NumPy said only "output array is read-only". ``np.asarray`` of a JAX array, a memory
    map opened with mode "r" and ``np.frombuffer`` give such arrays; CuPy's are always writable."""
    if not inplace:
        return
    for name, a in arrays.items():
        if read_only(a):
            raise ValueError(f"{op}: {name} is read-only, and inplace=True writes the result into it (np.asarray "
                             "of a JAX array, a memory map opened with mode 'r' and np.frombuffer are read-only); "
                             f"pass inplace=False, or a writable copy ({name}.copy())")


def check_same_dtype(op: str, x, *, x_name: str = "x", **arrays) -> None:
    """Refuse an array (None: absent) in another dtype than ``x``: NumPy would promote the result
    without a word."""
    for name, a in arrays.items():
        if a is None:
            continue
        if not (hasattr(a, "dtype") and hasattr(a, "shape")):  # (np.dtype("float64") == None is True)
            raise TypeError(f"{op}: {name} must be an array in {x_name}'s dtype {x.dtype}, got {type(a).__name__}")
        check_plain({name: a}, op)
        if not same_dtype(a.dtype, x.dtype):
            raise TypeError(f"{op}: {name} has dtype {a.dtype}, but {x_name} has {x.dtype}; byol_ref never mixes "
                            "dtypes")


def check_upstream(op: str, dout, shape, dtype, *, name: str = "dout") -> None:
    """Refuse an upstream gradient that is not of the forward output's ``shape`` and ``dtype``:
    NumPy would broadcast a (N, 1) or 0-d one against the cache, or promote another dtype, and
    return a gradient of the right shape for the wrong function. Metadata only, like
    ``check_operands``."""
    if not (hasattr(dout, "dtype") and hasattr(dout, "shape")):
        raise TypeError(f"{op}: {name} must be an array like the forward's output ({tuple(shape)}, {dtype}), got "
                        f"{type(dout).__name__}")
    check_plain({name: dout}, op)
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(dout.shape)}, expected {tuple(shape)} (the forward's "
                         "output's)")
    if not same_dtype(dout.dtype, dtype):
        raise TypeError(f"{op}: {name} has dtype {dout.dtype}, but the forward ran in {dtype}; byol_ref never mixes "
                        "dtypes")


def check_cache(op: str, cache, cls, forward: str) -> None:
    """Refuse a ``cache`` that is not the ``cls`` NamedTuple ``forward`` returned: unpacked or read
    by field, anything else fails as an AttributeError or an unpacking error that names nothing."""
    if not isinstance(cache, cls):
        raise TypeError(f"{op}: cache must be the {cls.__name__} that {forward} returned, got "
                        f"{type(cache).__name__}")


def check_types(**named) -> None:
    """A TypeError naming the first argument that is not of its class: ``name=(value, cls)``, or
    ``name=(value, cls, None)`` where None is allowed too. (A wrong one failed deep inside as an
    AttributeError naming nothing: "'NoneType' object has no attribute 'step'".)"""
    for name, (value, cls, *none) in named.items():
        if none and value is None or isinstance(value, cls):
            continue
        what = " or ".join(("a byol_ref " if c.__module__.startswith("byol_ref") else "a ") + c.__name__
                           for c in (cls if isinstance(cls, tuple) else (cls,)))
        raise TypeError(f"{name} must be {'None or ' if none else ''}{what}, got {type(value).__name__}")


def overflow_refusal(name: str, x, what: str) -> str:
    """The message refusing ``x`` (named ``name``) whose standardisation overflows: finite values
    so large (1e300) that their squares, and so the std, are inf; ``what`` is what to rescale."""
    return (f"{name} has values whose standardisation overflows to inf or NaN (largest magnitude "
            f"{float(np.abs(x).max()):.3g}); rescale the {what}")


def column_mean_std(x, name: str, what: str) -> tuple:
    """Per-column mean and biased (population) std of a finite float64 ``x`` (N, D), or a
    ValueError (:func:`overflow_refusal`) where either overflows, in words rather than NumPy's
    overflow warning: an inf std would zero the feature it standardises without a word."""
    with np.errstate(over="ignore", invalid="ignore"):  # (refused below)
        mean = x.mean(axis=0)  # (D,)
        std = x.std(axis=0)  # (D,), biased: divide by N
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(overflow_refusal(name, x, what))
    return mean, std


def check_path(path, name="path") -> str:
    """``path`` as a str (``os.fspath``), or a TypeError naming it: a str or an os.PathLike; an
    empty one is a ValueError (it names no file: a reader said "file  does not exist", and a
    writer's rename went for the working folder), and so is one holding a NUL character."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str or os.PathLike file path, got {type(path).__name__}")
    if not text:
        raise ValueError(f"{name} is empty (''); expected a file path")
    if "\0" in text:  # (the OS said only "embedded null byte")
        raise ValueError(f"{name} {text!r} holds a NUL character, which no file path can; expected a file path")
    return text


def check_writable(folder, what: str, advice: str) -> None:
    """Refuse a folder nothing can be written in (a read-only file system, one this user may not
    write in) before the work whose result would be lost: an eval found out after its probes.
    The PermissionError reads "{what} cannot be written: {why}; {advice}"."""
    if os.access(folder, os.W_OK | os.X_OK):  # (as the OS would decide a write: root may write in a 0o555 folder)
        return
    read_only = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    why = "it is on a file system mounted read-only" if read_only else "this user may not write in it"
    raise PermissionError(f"{what} cannot be written: {why}; {advice}")


def make_folder(folder, flag: str, replaces=()) -> None:
    """Make ``folder`` (with its parents) for a long job's results, and refuse it now where they could not
    be written at the end: the folder cannot be made, or written in, or a file of ``replaces`` in it (one
    the job writes in place) is there and may not be replaced. The OSError says which, what the OS gave
    as the reason and to choose another ``flag``."""
    if not os.fspath(folder):  # (an unset shell variable: the OS said "cannot make the folder : No such file ...")
        raise OSError(f"cannot make the folder '': an empty path names no folder; choose another {flag}")
    blocked = in_the_way(folder, folder=True)
    if blocked is not None:
        raise FileExistsError(f"cannot make the folder {folder}: {blocked}; choose another {flag}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        why = why_refused(exc) or exc.strerror or str(exc)
        raise OSError(f"cannot make the folder {folder}: {why}; choose another {flag}") from None
    check_writable(folder, f"the folder {folder}", f"choose another {flag}")
    for file in replaces:
        if os.path.lexists(file) and not os.access(file, os.W_OK):
            raise PermissionError(f"{file} cannot be replaced: this user may not write it; choose another {flag}")


#: The errors that mean "not allowed", not "not there": this user's rights, a read-only file system, a name
#: longer than the file system takes.
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG)


def _limit(folder: str, name: str, default: int) -> int:
    """The OS's ``name`` limit (``os.pathconf``) for paths in ``folder``, or ``default`` where it says none."""
    try:
        got = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):  # (AttributeError: no pathconf, on Windows)
        return default
    return got if got > 0 else default  # (-1: no limit set; 0 would refuse every name)


def why_refused(exc: BaseException) -> str | None:
    """Why the OS refused ``exc``'s file, as the end of a sentence ("this user may not read it", "this
    user may not write in /data", "this user may not enter /home/ann", "it is on a file system mounted
    read-only", "a name in the path is longer than ...", "the path is longer than ..."), found by asking
    the OS about the file and the folders above it; None when ``exc`` is no such refusal or names no
    file. Python's own "[Errno 13] Permission denied: 'x'" says neither which it was nor where the
    missing right is: a run directory under a folder this user may not enter, say."""
    if not isinstance(exc, OSError) or exc.errno not in _REFUSED or not exc.filename:
        return None
    path = os.path.abspath(os.fsdecode(exc.filename))
    if exc.errno == errno.EROFS:
        return "it is on a file system mounted read-only"
    # The nearest folder above it that this user can see: a folder they may not enter hides all below it,
    # so where the right missing is entering a folder on the way, it is this one's.
    folder = os.path.dirname(path)
    while folder != os.path.dirname(folder) and not os.access(folder, os.F_OK):
        folder = os.path.dirname(folder)
    if exc.errno == errno.ENAMETOOLONG:  # (one name over the file system's limit, or the whole path over the OS's)
        longest = max(len(os.fsencode(part)) for part in path.split(os.sep))
        given = len(os.fsencode(exc.filename))
        name_max, path_max = _limit(folder, "PC_NAME_MAX", 255), _limit(folder, "PC_PATH_MAX", 4096)
        if longest <= name_max and given >= path_max:  # (PATH_MAX counts the closing NUL)
            return f"the path is longer than the system takes ({given} bytes; at most {path_max - 1})"
        return (f"a name in the path is longer than the file system takes (the longest is {longest} bytes; most "
                "take 255)")
    if os.access(path, os.F_OK):
        if os.path.isdir(path):
            if not os.access(path, os.R_OK | os.X_OK):
                return "this user may not read this folder"
            return "this user may not write in this folder"
        return "this user may not read it" if not os.access(path, os.R_OK) else "this user may not write it"
    if not os.access(folder, os.X_OK):
        return f"this user may not enter {folder}"
    return f"this user may not write in {folder}" + ("" if folder == os.path.dirname(path) else ", the nearest "
                                                    "folder of the path that exists")


def odd_entry(path) -> str | None:
    """What stands at ``path`` where it is there but is neither a regular file nor a folder, as the
    end of a sentence ("is a link to X, which leads to no file ...", "... round a loop of links, to no
    file", "is not a regular file (a pipe, device or socket)"); None for a file, a folder or nothing
    at all, which each reader names in its own words. (A link to nothing does not exist(), and a pipe
    is no is_file(): "does not exist" sent the user looking for a file that stands there.)"""
    if os.path.islink(path) and not os.path.exists(path):  # (a link chain included)
        try:
            os.stat(path)
        except OSError as exc:  # a loop of links leads back to itself, not to a file gone
            if exc.errno == errno.ELOOP:
                return f"is a link to {os.readlink(path)}, which leads round a loop of links, to no file"
        return f"is a link to {os.readlink(path)}, which leads to no file (a disk not mounted, a file moved?)"
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        return "is not a regular file (a pipe, device or socket)"
    return None


def in_the_way(path, *, folder: bool) -> str | None:
    """What stands in the way of writing ``path`` (a folder, with ``folder``; else a file) and making the
    folders above it, as a clause that names where: "/a/b is a file, not a folder", "/a/run is a link to
    /mnt/x, which leads to no file (...)", "/a/f.npz is not a regular file (a pipe, device or socket)";
    None where nothing does. (The OS said "[Errno 17] File exists" for a folder made at a link to
    nothing, "[Errno 40] Too many levels of symbolic links" below a loop of links; and a file written at
    a pipe or a device replaced it with a regular file.) A file or a folder at ``path`` itself, where the
    caller writes a file, is the caller's to judge (there is an --overwrite to ask for)."""
    path = os.fspath(path)
    for here in (path, *map(os.fspath, pathlib.PurePath(path).parents)):
        odd = odd_entry(here)
        if odd is not None:
            return f"{here} {odd}"
        if os.path.exists(here):
            if os.path.isdir(here) or here == path and not folder:
                return None
            return f"{here} is a file, not a folder"
    return None


def not_a_file(path, *, folder: str = "is a directory", missing: str | None = "does not exist") -> str | None:
    """What stands at ``path`` when it is no regular file, as the end of a sentence: ``folder`` for a
    folder, ``odd_entry``'s words for a link to nothing or a pipe, device or socket, ``missing`` for
    nothing at all; None for a regular file (and for nothing at all when ``missing`` is None)."""
    if os.path.isfile(path):
        return None
    if os.path.isdir(path):
        return folder
    return odd_entry(path) or missing


def check_image_shape(image_shape, name="image_shape") -> tuple:
    """``image_shape`` as a tuple of Python ints, (H, W) or (C, H, W), each >= 1 (bools are refused)."""
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in image_shape):
        raise ValueError(f"{name} must be (H, W) or (C, H, W) of positive ints, got {image_shape!r}")
    return tuple(int(s) for s in image_shape)


def check_count(value, name):
    """A step count read from a file (a batch-norm ``count``, torch's ``num_batches_tracked``, an
    optimiser's ``count``) as an int64 array: every entry a whole number in [0, 2**62], else an
    error naming it. (A cast alone would turn NaN, inf or 1e300 into -2**63 and 1.5 into 1.)"""
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold whole numbers (a step count), got dtype {a.dtype}")
    if a.dtype.kind == "f":
        a = a.astype(np.float64)  # compared with 2**62 below, which float16 cannot hold
        if not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise ValueError(f"{name} must hold whole numbers (a step count), got {a.ravel()[:4].tolist()}")
    if (a < 0).any() or (a > 2**62).any():
        raise ValueError(f"{name} must be a step count in [0, 2**62], got {a.ravel()[:4].tolist()}")
    return a.astype("int64")


def check_array(x, name, *, ndim=None, last_dim=None, dtype=None, finite=True, min_rows=None, rows_for=None,
                dtype_of="the parameters"):
    """Validate an array argument.

    Args:
        x: the array (NumPy or CuPy).
        name: argument name for the message.
        ndim: required rank.
        last_dim: required size of the last axis (feature width).
        dtype: required dtype name (``"float32"``/``"float64"``), a tuple of allowed names
            (``backend.FLOAT_DTYPES``: the two byol_ref computes in), or None for any float.
        finite: refuse NaN and infinity.
        min_rows: required minimum size of the first axis.
        rows_for: why it needs them, said after the shape (``"batch norm ..."``).
        dtype_of: whose dtype a required ``dtype`` name is, for the message.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    check_plain({name: x})
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {tuple(x.shape)} ({x.ndim}-D)")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating array (float32 or float64), got dtype {x.dtype}")
    if isinstance(dtype, tuple) and x.dtype.name not in dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected one of {dtype}; cast it first")
    if isinstance(dtype, str) and x.dtype.name != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {dtype}, the dtype of {dtype_of}; "
                        "cast it first, byol_ref never mixes dtypes silently")
    if last_dim is not None and x.shape[-1] != last_dim:
        raise ValueError(f"{name} must have {last_dim} features in its last axis, got shape {tuple(x.shape)}")
    if min_rows is not None and x.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row{'s' * (min_rows != 1)}, got shape {tuple(x.shape)}"
                         + (f": {rows_for}" if rows_for else ""))
    if finite:
        xp = get_array_module(x)
        ok = xp.isfinite(x)
        if not bool(ok.all()):
            bad = int((~ok).sum())
            first = tuple(int(i) for i in xp.argwhere(~ok)[0])
            raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf), first at index {first}")
    return x


def check_finite(x, what: str) -> None:
    """Refuse a host array holding NaN or inf, naming ``what``, how many and the first's index."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{what} has {int(bad.sum())} non-finite value(s) (NaN or inf); the first is at "
            f"index {first}; expected finite numbers"
        )


def odd_array(x, name: str, *, host_copy: bool = False) -> str | None:
    """Why ``x`` is refused, as a message naming ``name``; None for a NumPy or CuPy array (an
    ``np.memmap`` included), for an array of another library with NumPy's dtypes (a JAX array, which
    byol_ref computed with before these checks, and still does), and for what has no shape and dtype
    at all (a list, None, a str: each caller refuses those in its own words, or takes them).

    Refused where byol_ref computes on ``x`` as given: an array whose dtype is not NumPy's (a torch
    tensor: it failed on "'torch.dtype' object has no attribute 'kind'"); a ``numpy.matrix`` (it stays
    2-D and its ``*`` is a matrix product: "shape too large to be a matrix"); a masked array (the
    arithmetic here, on every value, does not keep its mask: shapes that did not broadcast). Where the
    caller only copies ``x`` to the host (``host_copy``: the probes, the data, ``fit``'s dataset),
    ``np.asarray`` makes a plain array of each of them, but of a masked array with values masked,
    whose hidden values it would use without a word."""
    if isinstance(x, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(x))
        if masked:
            return (f"{name} is a masked array with {masked} value(s) masked, and byol_ref has no notion of a "
                    f"missing value: fill them ({name}.filled(value)) or drop the rows that hold them")
        return None if host_copy else f"{name} is a masked array (nothing masked); pass np.asarray({name})"
    if host_copy:
        return None
    if isinstance(x, np.matrix):
        return (f"{name} is a numpy.matrix, whose operators are not an array's (it stays 2-D, and * is a matrix "
                f"product); pass np.asarray({name})")
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x.dtype, np.dtype):
        kind = type(x)
        fix = f"{name}.detach().cpu().numpy()" if kind.__module__.startswith("torch") else f"np.asarray({name})"
        got = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
        return f"{name} must be a NumPy or CuPy array, got {got}, whose dtype is not NumPy's; pass {fix}"
    return None


def check_one_place(arrays, op: str | None = None) -> None:
    """A TypeError (led by ``op``, where given) where ``arrays`` (name -> array, or a function of no
    arguments that returns them) are split between the host (NumPy) and the GPU (CuPy): CuPy's own
    "Unsupported type <class 'numpy.ndarray'>" names neither. Nothing is checked (nor the function
    called) until CuPy has been imported: before that no array is on the GPU."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return
    arrays = arrays() if callable(arrays) else arrays
    device = [name for name, a in arrays.items() if isinstance(a, cupy.ndarray)]
    if device and len(device) < len(arrays):
        host = next(name for name, a in arrays.items() if not isinstance(a, cupy.ndarray))
        raise TypeError(f"{op + ': ' if op else ''}{device[0]} is a CuPy array (on the GPU), but {host} is a NumPy "
                        "array (on the host); byol_ref computes where its arrays are, so all must be in one place: "
                        "move them with cupy.asarray (to the GPU) or cupy.asnumpy (to the host), or build the "
                        "networks with backend='cupy'")


def check_plain(arrays: dict, op: str | None = None, *, host_copy: bool = False) -> None:
    """A TypeError (led by ``op``, where given) for the first of ``arrays`` (name -> array) that
    :func:`odd_array` refuses (``host_copy``: where the caller only copies them to the host)."""
    for name, a in arrays.items():
        odd = odd_array(a, name, host_copy=host_copy)
        if odd is not None:
            raise TypeError(f"{op}: {odd}" if op else odd)


def dataclass_from_dict(cls, d: dict):
    """Build dataclass ``cls`` from a dict, naming any key that is not one of its fields."""
    from dataclasses import fields

    if not isinstance(d, Mapping):
        raise TypeError(f"a {cls.__name__} is made from a dict of its fields, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**d)


# --------------------------------------------------------------------------- warnings


class ByolRefWarning(UserWarning):
    """A warning byol-ref gives of what it was handed (data it reads one way that may be meant another,
    a run that overflowed): ``warnings.filterwarnings("ignore", category=ByolRefWarning)`` silences
    them all, and the command line shows them as its other messages."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_CONTEXTLIB = os.path.abspath(contextlib.__file__)


def warn(message: str) -> None:
    """Warn of ``message`` as a :class:`ByolRefWarning` that names the line that called into byol-ref
    (the user's, in a script or notebook), however deep inside the package it is raised: the first
    frame up the stack outside it (``contextlib``'s, of a ``with`` block ending, passed over too; under
    ``python -m byol_ref``, runpy's). A fixed ``stacklevel`` named the caller of the function that
    warned, which was a line of byol-ref's where that function was called from deeper in."""
    frame, level = sys._getframe(1), 2  # (level 2: this function's caller, the one warning)
    while frame.f_back is not None and _inside(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, ByolRefWarning, stacklevel=level)


def _inside(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path == _CONTEXTLIB or os.path.dirname(path) == _PACKAGE
