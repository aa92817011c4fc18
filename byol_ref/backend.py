"""The one place that imports NumPy or CuPy.

Everything else in byol_ref works on an array module ``xp`` that it either gets from
its arrays (layer functions, via :func:`get_array_module`) or from a :class:`Backend`
chosen once (model-level code). ``import byol_ref`` never imports CuPy: CuPy is loaded
only when a user asks for the ``"cupy"`` backend, and :func:`get_array_module`
recognises CuPy arrays only if CuPy is already in ``sys.modules``.

"CuPy importable" and "a GPU answers" are different conditions: :func:`cupy_status`
tells them apart so tests can skip with the right reason.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy

#: The oldest NumPy byol_ref runs on (pyproject.toml's floor): its promotion rules (NEP 50) are the
#: ones the dtype handling relies on. On NumPy 1.26 an Adam update fails ("Cannot cast ufunc 'add'
#: output from dtype('int64') to dtype('uint8')"), and what else differs would differ silently.
NUMPY_LEAST = "2.0.0"
if numpy.lib.NumpyVersion(numpy.__version__) < NUMPY_LEAST:
    raise ImportError(f"byol-ref needs NumPy >= {NUMPY_LEAST} (its type promotion rules, NEP 50), but NumPy "
                      f"{numpy.__version__} is installed (at {numpy.__file__}); upgrade it: pip install --upgrade "
                      "'numpy>=2'")

#: The host array module (NumPy). Other modules use it for file I/O and CPU-only
#: work (data loading, checkpoints, evaluation) instead of importing NumPy themselves.
host = numpy

FLOAT_DTYPES = ("float32", "float64")


def get_array_module(*arrays: Any):
    """Return the array module (numpy or cupy) that owns ``arrays``.

    Chainer's ``get_array_module`` idiom, done without importing CuPy: if CuPy has
    never been imported, no array can be a CuPy array, so the answer is NumPy.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def cupy_status() -> tuple[bool, str]:
    """Say whether the CuPy backend can run here.

    Returns:
        (ok, reason): ``ok`` is True when CuPy imports *and* a CUDA device answers;
        otherwise ``reason`` says which of the two failed and what to do about it.
    """
    try:
        import cupy  # noqa: F401  (the only CuPy import in the package)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, (
            f"CuPy is not installed or failed to import ({type(exc).__name__}: {exc}); "
            "install the CuPy that matches your CUDA toolkit: pip install cupy-cuda12x (or cupy-cuda13x), "
            "or from a byol-ref checkout pip install -e '.[cuda12]' (or '.[cuda13]')"
        )
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy is installed but no CUDA device answered ({type(exc).__name__}: {exc})"
    if n < 1:
        return False, "CuPy is installed but no CUDA device was found"
    return True, f"{n} CUDA device(s)"


def check_dtype(dtype: Any, name: str = "dtype") -> str:
    """Normalise a floating dtype spec to ``"float32"`` or ``"float64"``, or raise."""
    try:
        s = numpy.dtype(dtype).name
    except TypeError:
        s = str(dtype)
    if s not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be one of {FLOAT_DTYPES}, got {dtype!r}")
    return s


@dataclass
class Backend:
    """An array module chosen once, with a dtype and a seeded random generator.

    Random numbers are always drawn on the host with NumPy's PCG64 generator and then
    moved to the device, so a given seed gives the same parameters, views and
    augmentations on NumPy and on CuPy (the GPU path pays one small transfer).

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        xp: the array module.
        dtype: ``"float32"`` or ``"float64"``.
        rng: ``numpy.random.Generator`` (host).
    """

    name: str
    xp: Any
    dtype: str
    rng: Any = field(repr=False)

    def asarray(self, a, dtype=None):
        """Move ``a`` to this backend's device, cast to ``dtype`` (default: the backend's)."""
        return self.xp.asarray(a, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, a):
        """Return ``a`` as a host NumPy array (a no-op on the NumPy backend)."""
        return to_numpy(a)

    def synchronize(self) -> None:
        """Block until queued device work is done (for timing); a no-op on NumPy."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def seed(self, seed: int) -> None:
        """Reset the random generator."""
        self.rng = numpy.random.default_rng(seed)

    def __reduce__(self):
        """Pickled (for a worker process: ``fit(..., backend=be)`` in a spawned pool) and deep-copied as
        its name, dtype and generator; a module itself cannot be ("cannot pickle 'module' object").
        A CuPy backend read back where no GPU answers says so (``get_backend``)."""
        return _rebuilt, (self.name, self.dtype, self.rng)


def _rebuilt(name: str, dtype: str, rng) -> Backend:
    """A Backend as ``Backend.__reduce__`` wrote it: the array module found again, the generator as it was."""
    backend = get_backend(name, dtype, seed=None)
    backend.rng = rng
    return backend


def to_numpy(a):
    """Return ``a`` (NumPy or CuPy array, or scalar) as a host NumPy array."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


def get_backend(name: str = "numpy", dtype: Any = "float64", seed: int | None = 0) -> Backend:
    """Choose an array backend.

    Args:
        name: ``"numpy"`` (CPU) or ``"cupy"`` (CUDA GPU); ``"cpu"`` and ``"cuda"`` are aliases.
        dtype: ``"float64"`` (default: this is a reference) or ``"float32"``.
        seed: seed of the host random generator, an int >= 0 or None (fresh entropy).

    Returns:
        A :class:`Backend`.

    Raises:
        ValueError: unknown name or dtype.
        RuntimeError: ``"cupy"`` asked for, but CuPy is missing or no GPU answers.

    Examples:
        >>> import byol_ref as byol
        >>> be = byol.get_backend("numpy", "float32", seed=0)
        >>> be.name, be.dtype, be.asarray([1.0, 2.0]).dtype.name
        ('numpy', 'float32', 'float32')
        >>> online, target = byol.build(16, backend=be)  # its dtype and generator
        >>> online.params["encoder.fc1.weight"].dtype.name
        'float32'
    """
    aliases = {"numpy": "numpy", "cpu": "numpy", "cupy": "cupy", "cuda": "cupy", "gpu": "cupy"}
    if not isinstance(name, str) or name not in aliases:  # (a list in the dict: unhashable, named nothing)
        raise ValueError(f"backend name must be one of 'numpy'/'cpu' or 'cupy'/'cuda', got {name!r}")
    from .checks import check_seed  # (checks imports this module)

    dtype = check_dtype(dtype)
    rng = numpy.random.default_rng(check_seed(seed, allow_none=True))
    if aliases[name] == "numpy":
        return Backend("numpy", numpy, dtype, rng)
    ok, reason = cupy_status()
    if not ok:
        raise RuntimeError(f"backend 'cupy' is not available: {reason}")
    import cupy

    return Backend("cupy", cupy, dtype, rng)
