"""A strict stand-in for CuPy, built on NumPy, so the CuPy code paths run where no GPU is.

CuPy-specific bugs are mostly bugs of the host/device boundary, and they can be caught without a
GPU if something behaves like CuPy at that boundary. This module is a fake ``cupy`` that:

* keeps "device" arrays in a wrapper (:class:`ndarray`) that is *not* a NumPy array: converting
  one to NumPy implicitly (``numpy.asarray``, ``numpy.savez``, ...) raises the TypeError CuPy
  raises, and ``.get()`` is the way back, as on CuPy;
* refuses NumPy arrays as operands of device ufuncs and functions (CuPy's "Unsupported type"),
  while accepting Python and NumPy scalars, and host arrays in ``asarray`` (a host-to-device copy);
* exposes only the names real CuPy has (``tests/cupy_namespace.json``, a snapshot taken from CuPy
  by ``scripts/snapshot_cupy_namespace.py``): a NumPy function that CuPy lacks is an
  AttributeError here, as on a GPU machine. The same holds for ``ndarray`` methods;
* returns 0-d device arrays where NumPy returns scalars, as CuPy does;
* runs ``ElementwiseKernel`` and ``ReductionKernel`` by evaluating their C bodies with NumPy
  (the tiny subset of C the kernels in byol_ref use: casts ``(T)`` and ``(double)``, declarations
  ``T x = ...`` and ``double x = ...``, arithmetic, comparisons, ``&&``, one ``c ? a : b`` a statement,
  ``sqrt`` and ``pow``), with CuPy's argument rules: inputs then optional outputs, one dtype per type
  placeholder ("Type is mismatched" otherwise, and for an array given to a parameter of a fixed type such
  as ``int64 t``), inputs read-only.

It is deliberately stricter than CuPy in one respect: a few CuPy functions fall back to NumPy for
host inputs (``cupy.sum(numpy_array)`` returns a NumPy scalar); here every host array reaching a
device function is an error, since in byol_ref it would be a host/device mix-up.

It also counts what it is asked (:data:`CALLS`, the calls that would launch work on a GPU; :data:`SYNCS`, the
transfers, each of which waits for the device), so that a test can hold a step's calls and transfers to a
budget: on a GPU a small-batch step is bound by the time its calls take to issue.

What it cannot show: that the CUDA sources compile (``tests/test_kernels.py`` compiles them with
NVRTC where CuPy is importable), CuPy's own numerics, speed, or memory. Those need a GPU
(``make gpu-check``).

Use :func:`install` (a context manager) to put it in ``sys.modules["cupy"]`` for a test.
"""
from __future__ import annotations

import collections
import contextlib
import json
import pathlib
import re
import sys
import types

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

_NAMES = json.loads((pathlib.Path(__file__).with_name("cupy_namespace.json")).read_text())
_TOP = frozenset(_NAMES["cupy"])
_LINALG = frozenset(_NAMES["cupy.linalg"])
_METHODS = frozenset(_NAMES["cupy.ndarray"])

#: What the code under test asked of the "device": ``CALLS[what]`` counts the calls that would each launch
#: work on a GPU (ufuncs, functions, ndarray methods, kernels, ``cupy.linalg``; not an allocation or a view),
#: by name; ``SYNCS[what]`` the transfers, each of which waits for the device's queue: reads back to the
#: host (``get``, ``float``, ``int``, ``bool``, ``item``, ``tolist``) and copies of host data to the device
#: (``asarray``). Reset them (``.clear()``) before the code to count.
CALLS: collections.Counter = collections.Counter()
SYNCS: collections.Counter = collections.Counter()
# Functions and ndarray methods that allocate or return a view, and launch nothing.
_NO_LAUNCH = frozenset({"empty", "empty_like", "reshape", "ravel", "view", "transpose", "swapaxes", "squeeze",
                        "expand_dims", "broadcast_to", "moveaxis", "atleast_1d", "atleast_2d", "atleast_3d"})

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")

# Functions that accept host data (they copy it to the device).
_FROM_HOST = frozenset({"asarray", "array", "asanyarray", "asnumpy", "get_array_module"})
# Names CuPy re-exports from NumPy unchanged (dtype helpers): called with unwrapped arguments.
_DTYPE_HELPERS = frozenset({"dtype", "finfo", "iinfo", "result_type", "can_cast", "promote_types",
                            "issubdtype", "isscalar", "ndim", "shape"})


def _host_array_error(where):
    return TypeError(f"Unsupported type <class 'numpy.ndarray'> in {where} "
                     "(a host NumPy array reached a device function; move it with asarray first)")


class ndarray(NDArrayOperatorsMixin):
    """A "device" array: a NumPy array behind a wall, with CuPy's conversion rules."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a):
        assert isinstance(a, numpy.ndarray)
        object.__setattr__(self, "_a", a)

    # -- the wall
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def get(self, stream=None, order="C", out=None, blocking=True):
        SYNCS["get"] += 1
        return self._a.copy(order=order)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        CALLS[f"{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")] += 1
        args = [_unwrap_operand(x, f"numpy.{ufunc.__name__}") for x in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap_out(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        # NumPy functions on device arrays dispatch to CuPy's, where CuPy has them.
        name = func.__name__
        if name not in _TOP:
            raise TypeError(f"numpy.{name} called on a device array, and CuPy has no {name}")
        return _function(name)(*args, **kwargs)

    # -- indexing, attributes
    def __getitem__(self, index):
        return _wrap(self._a[_unwrap_index(index)])

    def __setitem__(self, index, value):
        if isinstance(value, numpy.ndarray) and value.ndim > 0:
            raise _host_array_error("__setitem__")
        self._a[_unwrap_index(index)] = _unwrap(value)

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                if name in ("item", "tolist"):
                    SYNCS[name] += 1
                elif name not in _NO_LAUNCH:
                    CALLS[f"ndarray.{name}"] += 1
                args = [_unwrap_operand(a, f"ndarray.{name}") for a in args]
                kwargs = {k: _unwrap_operand(v, f"ndarray.{name}") for k, v in kwargs.items()}
                return _wrap(attr(*args, **kwargs))
            return method
        return _wrap(attr)

    def __setattr__(self, name, value):
        if name == "shape":
            self._a.shape = value
        else:
            raise AttributeError(f"cannot set {name!r} on a cupy.ndarray stand-in")

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __float__(self):
        SYNCS["float"] += 1
        return float(self._a)

    def __int__(self):
        SYNCS["int"] += 1
        return int(self._a)

    def __bool__(self):
        SYNCS["bool"] += 1
        return bool(self._a)

    def __repr__(self):
        return "standin." + repr(self._a)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())


ndarray.__module__ = "cupy"  # byol_ref recognises device arrays by their module


def _wrap(x):
    if isinstance(x, numpy.ndarray):
        return ndarray(x)
    if isinstance(x, numpy.generic):
        return ndarray(numpy.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _unwrap_operand(x, where):
    """Device arrays -> their storage; host arrays -> the error CuPy raises, 0-d ones too (CuPy takes Python
    and NumPy *scalars*, ``type(x)`` in its scalar types, and a 0-d ``numpy.ndarray`` is not one of them)."""
    if isinstance(x, numpy.ndarray):
        raise _host_array_error(where)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap_operand(v, where) for v in x)
    return _unwrap(x)


def _unwrap_out(o):
    if not isinstance(o, ndarray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(o).__name__}")
    return o._a


def _unwrap_index(index):
    # CuPy accepts device arrays, host integer/bool arrays and lists as indices.
    if isinstance(index, tuple):
        return tuple(_unwrap(i) for i in index)
    return _unwrap(index)


def _function(name):
    """The stand-in for ``cupy.<name>``."""
    if name not in _TOP:
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (CuPy {_NAMES['version']} lacks it)")
    target = getattr(numpy, name)
    if isinstance(target, type) or not callable(target):
        return target  # dtypes/scalar types and constants are NumPy's in CuPy too
    if name in _DTYPE_HELPERS:
        return lambda *a, **k: target(*_unwrap(list(a)), **{kk: _unwrap(v) for kk, v in k.items()})
    if name in ("asarray", "array", "asanyarray"):
        def to_device(a, dtype=None, *args, **kwargs):
            if isinstance(a, ndarray):
                if name == "asarray" and (dtype is None or numpy.dtype(dtype) == a._a.dtype):
                    return a  # no copy, as CuPy
                CALLS[name] += 1  # (a copy on the device)
                return ndarray(numpy.array(a._a, dtype=dtype, copy=True))
            SYNCS[f"{name} from the host"] += 1
            return ndarray(numpy.array(_unwrap(a), dtype=dtype, copy=True))  # host -> device copy
        return to_device
    if name == "asnumpy":
        return lambda a, *args, **kwargs: a.get() if isinstance(a, ndarray) else numpy.asarray(a)

    def device_function(*args, **kwargs):
        if name not in _NO_LAUNCH:
            CALLS[name] += 1
        if "out" in kwargs and kwargs["out"] is not None:
            out = kwargs["out"]
            kwargs["out"] = tuple(_unwrap_out(o) for o in out) if isinstance(out, tuple) else _unwrap_out(out)
        args = [_unwrap_operand(a, f"cupy.{name}") for a in args]
        kwargs = {k: (v if k == "out" else _unwrap_operand(v, f"cupy.{name}")) for k, v in kwargs.items()}
        result = target(*args, **kwargs)
        return _wrap(result)

    device_function.__name__ = name
    return device_function


# --------------------------------------------------------------------------- kernels

_PARAM = re.compile(r"^\s*(?:raw\s+)?(\w+)\s+(\w+)\s*$")


def _parse_params(spec):
    params = []
    for p in spec.split(","):
        m = _PARAM.match(p)
        if not m:
            raise ValueError(f"cannot parse kernel parameter {p!r}")
        t = m.group(1)
        if len(t) > 1 and (t not in numpy.sctypeDict or numpy.dtype(t).name != t):
            raise ValueError(f"Wrong type {t}")  # (CuPy: one letter is a placeholder, else a NumPy dtype's name)
        params.append((t, m.group(2)))
    return params


# C types a kernel may name besides its type placeholders, and the NumPy dtype each stands for.
_C_TYPES = {"double": "float64", "float": "float32", "int": "int32", "bool": "bool",
            "float64": "float64", "float32": "float32", "int64": "int64", "int32": "int32"}


def _casts(s, types):
    """``(type)operand`` -> ``_cast_type(operand)``, the operand a name or a number (negated or not) or a
    parenthesised group."""
    out, i = "", 0
    pattern = re.compile(r"\((" + "|".join(map(re.escape, types)) + r")\)\s*")
    while True:
        m = pattern.search(s, i)
        if not m:
            return out + s[i:]
        out += s[i:m.start()] + f"_cast_{m.group(1)}("
        j = m.end()
        if s[j] == "(":  # a balanced group
            depth = 0
            for k in range(j, len(s)):
                depth += {"(": 1, ")": -1}.get(s[k], 0)
                if depth == 0:
                    break
            out += "(" + _casts(s[j + 1:k], types) + "))"  # (casts inside the group too)
            i = k + 1
        else:
            name = re.match(r"-?[\w.]+", s[j:]).group(0)  # (a name or a number, negated or not: (T)-1)
            out += name + ")"
            i = j + len(name)


def _expression(e, types):
    """A C expression as Python: ``c ? a : b`` (one, outermost) is ``_where(c, a, b)``, both sides evaluated;
    ``&&`` joins parenthesised operands with ``&`` (comparisons bind tighter than ``&&`` in C, looser than
    ``&`` in Python); casts are calls that round."""
    if e.count("?") > 1 or "||" in e:
        raise NotImplementedError(f"the stand-in does not translate {e!r}")
    if "?" in e:
        cond, rest = e.split("?")
        a, b = rest.split(":")
        e = f"_where({_expression(cond, types)}, {_expression(a, types)}, {_expression(b, types)})"
    elif "&&" in e:
        e = "((" + ") & (".join(e.split("&&")) + "))"
    return _casts(e, types)


def _c_to_python(body, type_names, inputs):
    """Translate the kernel bodies byol_ref uses (C arithmetic) into Python statements: ``T x = e`` is
    ``x = (T)(e)`` (a declaration rounds to its type, as a cast does), expressions as :func:`_expression`."""
    statements = []
    types = [*type_names, *_C_TYPES]
    for s in body.split(";"):
        s = s.strip()
        if not s:
            continue
        if "{" in s:
            raise NotImplementedError(f"the stand-in does not translate {s!r}")
        decl = re.match(r"^(" + "|".join(map(re.escape, types)) + r")\s+(\w+)\s*=(?!=)(.*)$", s, re.S)
        assign = re.match(r"^(\w+)\s*=(?!=)(.*)$", s, re.S)
        if decl:
            s = f"{decl.group(2)} = _cast_{decl.group(1)}({_expression(decl.group(3), types)})"
        elif assign:
            if assign.group(1) in inputs:
                raise SyntaxError(f"kernel body assigns to input {assign.group(1)!r} (a const reference in CUDA)")
            s = f"{assign.group(1)} = {_expression(assign.group(2), types)}"
        else:
            raise NotImplementedError(f"the stand-in does not translate {s!r}")
        statements.append(s)
    return compile("\n".join(statements), "<kernel>", "exec")


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        self.in_params = _parse_params(in_params)
        self.out_params = _parse_params(out_params)
        self.name = name
        types_ = {t for t, _ in self.in_params + self.out_params}
        self.type_names = sorted(t for t in types_ if t not in _C_TYPES)
        self.code = _c_to_python(operation, self.type_names, {n for _, n in self.in_params})

    def __call__(self, *args, size=None, **kwargs):
        CALLS[self.name] += 1
        n_in, n_out = len(self.in_params), len(self.out_params)
        if len(args) not in (n_in, n_in + n_out):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {len(args)} "
                            f"(expected {n_in} or {n_in + n_out})")
        for a in args:
            if isinstance(a, numpy.ndarray):
                raise _host_array_error(self.name)
        bound = list(zip(self.in_params + self.out_params, args))
        dtypes = {}
        for (t, pname), a in bound:
            if isinstance(a, ndarray) and t in self.type_names:
                if t in dtypes and dtypes[t] != a._a.dtype:
                    raise TypeError(f"Type is mismatched. {pname} {a._a.dtype} {dtypes[t]}")
                dtypes[t] = a._a.dtype
        missing = [t for t in self.type_names if t not in dtypes]
        if missing:
            raise TypeError(f"Cannot determine type {missing[0]!r} in {self.name!r}")
        env = {"_where": numpy.where, "pow": numpy.power, "sqrt": numpy.sqrt}
        env.update({f"_cast_{t}": numpy.dtype(dtypes[t]).type for t in self.type_names})
        env.update({f"_cast_{t}": numpy.dtype(dt).type for t, dt in _C_TYPES.items()})
        for (t, pname), a in bound[:n_in]:
            dt = dtypes.get(t, _C_TYPES.get(t))
            if isinstance(a, ndarray):
                if t in _C_TYPES and a._a.dtype != dt:
                    raise TypeError(f"Type is mismatched. {pname} {a._a.dtype} {dt}")
                env[pname] = a._a
            else:
                env[pname] = numpy.asarray(a, dtype=dt)[()]
        # CuPy broadcasts inputs and given outputs together; each output must have that shape.
        shape = numpy.broadcast_shapes(*(a._a.shape for a in args if isinstance(a, ndarray)))
        for a in args[n_in:]:
            if not isinstance(a, ndarray):
                raise TypeError(f"Output arguments type must be cupy.ndarray, not {type(a)}")
            if a._a.shape != shape:
                raise ValueError(f"Out shape is mismatched: {a._a.shape} while {shape} is expected.")
        with numpy.errstate(all="ignore"):  # (a GPU does not warn; where() computes the branch not taken too)
            exec(self.code, env)  # (CUDA's sqrt and pow keep the arguments' float type, as NumPy's)
        outs = []
        for i, (t, pname) in enumerate(self.out_params):
            value = env[pname]
            if len(args) == n_in + n_out:
                out = args[n_in + i]
                out._a[...] = value
            else:
                out = ndarray(numpy.empty(shape, dtype=dtypes[t]))
                out._a[...] = value
            outs.append(out)
        return outs[0] if n_out == 1 else tuple(outs)


class ReductionKernel:
    """Sum reductions only (``reduce_expr == "a + b"``, ``post_map_expr == "y = a"``)."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce",
                 **kwargs):
        if reduce_expr.replace(" ", "") != "a+b" or post_map_expr.replace(" ", "") != "y=a" or identity != "0":
            raise NotImplementedError("the stand-in runs sum reductions only")
        self.in_params = _parse_params(in_params)
        self.name = name
        self.code = compile(map_expr.replace("(T)", ""), "<map>", "eval")

    def __call__(self, *args, axis=None, keepdims=False, **kwargs):
        CALLS[self.name] += 1
        if len(args) != len(self.in_params):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        for a in args:
            if not isinstance(a, ndarray):
                raise _host_array_error(self.name)
        if len({a._a.dtype for a in args}) > 1:
            raise TypeError(f"Type is mismatched in {self.name!r}")
        env = {pname: a._a for (_, pname), a in zip(self.in_params, args)}
        mapped = eval(self.code, {}, env)
        return ndarray(numpy.asarray(mapped.sum(axis=axis, keepdims=keepdims), dtype=args[0]._a.dtype))


# --------------------------------------------------------------------------- the module


class _Stream:
    def synchronize(self):
        pass


class _Device(contextlib.nullcontext):
    """``cupy.cuda.Device(i)``: the one device, 0 (its ``id``), and a context manager that selects it."""

    def __init__(self, device=0):
        super().__init__()
        self.id = 0 if device is None else int(device)


class _MemoryPool:
    """The calls the benchmark makes; the stand-in has no pool, so it holds 0 bytes."""

    def free_all_blocks(self):
        pass

    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0


def _make_module():
    mod = types.ModuleType("cupy")
    mod.__version__ = _NAMES["version"] + "+standin"
    mod.ndarray = ndarray
    mod.ElementwiseKernel = ElementwiseKernel
    mod.ReductionKernel = ReductionKernel
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1,
                                    getDeviceProperties=lambda i: {"name": b"CuPy stand-in (CPU)"})
    mod.cuda = types.SimpleNamespace(runtime=runtime, get_current_stream=lambda: _Stream(), Device=_Device)
    mod.get_default_memory_pool = lambda: _MemoryPool()
    linalg = types.ModuleType("cupy.linalg")

    def linalg_getattr(name):
        if name not in _LINALG:
            raise AttributeError(f"module 'cupy.linalg' has no attribute {name!r}")
        target = getattr(numpy.linalg, name)

        def f(*args, **kwargs):
            CALLS[f"linalg.{name}"] += 1
            args = [_unwrap_operand(a, f"cupy.linalg.{name}") for a in args]
            return _wrap(target(*args, **kwargs))
        return f

    linalg.__getattr__ = linalg_getattr
    mod.linalg = linalg

    def module_getattr(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _function(name)

    mod.__getattr__ = module_getattr
    return mod


_DISPLACED = []  # what each active install() took out of sys.modules["cupy"] (None: nothing), innermost last


def displaced():
    """The module the innermost active :func:`install` put aside (a real CuPy, where one was imported), or None."""
    return _DISPLACED[-1] if _DISPLACED else None


@contextlib.contextmanager
def install():
    """Put the stand-in in ``sys.modules["cupy"]`` (restoring what was there afterwards)."""
    previous = sys.modules.get("cupy")
    sys.modules["cupy"] = module = _make_module()
    _DISPLACED.append(previous)
    try:
        yield module
    finally:
        _DISPLACED.pop()
        if previous is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = previous
