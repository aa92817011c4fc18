"""The backend boundary: only backend.py imports numpy/cupy; import byol_ref never imports cupy;
asking for cupy without it (or without a GPU) gives a clear error; numpy and cupy agree."""
import ast
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import byol_ref as byol
from byol_ref.backend import cupy_status, get_array_module, get_backend

PKG = pathlib.Path(byol.__file__).parent


def test_only_backend_imports_numpy_or_cupy():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("numpy", "cupy")]
    assert offenders == [], offenders


def test_the_package_keeps_its_line_length_and_never_unpickles():
    """House rules a reviewer would otherwise check by eye: lines of at most 120 characters in the
    package, and no ``allow_pickle=True`` anywhere in it (data from disk is never unpickled)."""
    long_lines, pickles = [], []
    for path in sorted(PKG.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if len(line) > 120:
                long_lines.append(f"{path.name}:{number} ({len(line)})")
            if re.search(r"allow_pickle\s*=\s*True", line):
                pickles.append(f"{path.name}:{number}")
    assert long_lines == [] and pickles == [], (long_lines, pickles)


def test_import_and_a_tiny_step_never_import_cupy():
    code = (
        "import sys, byol_ref as b\n"
        "from byol_ref.backend import host as np\n"
        "on, tg = b.build(4, 3, 2, 5)\n"
        "r = np.random.default_rng(0)\n"
        "res = b.loss_and_grads(on, tg, r.standard_normal((3, 4)), r.standard_normal((3, 4)))\n"
        "b.ema_update(on.params, tg.params)\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PKG.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_numpy_backend_and_errors():
    be = get_backend("numpy", "float32", seed=3)
    assert be.xp is np and be.dtype == "float32"
    assert be.asarray([1, 2]).dtype == np.float32
    assert get_array_module(np.zeros(2)) is np
    with pytest.raises(ValueError, match=r"^backend name must be one of 'numpy'/'cpu' or 'cupy'/'cuda', got 'tpu'$"):
        get_backend("tpu")
    with pytest.raises(ValueError, match=r"^dtype must be one of \('float32', 'float64'\), got 'float16'$"):
        get_backend("numpy", "float16")


def test_backend_aliases_and_asarray_dtype():
    from byol_ref.backend import get_backend

    be = get_backend("cpu", "float32")
    assert be.name == "numpy" and be.asarray([1, 2]).dtype == np.float32
    assert be.asarray([1, 2], dtype="int64").dtype == np.int64  # an explicit dtype wins


def test_cupy_request_without_a_gpu_says_what_to_do():
    ok, reason = cupy_status()
    if ok:
        pytest.skip("a GPU answers here")
    for name in ("cupy", "cuda", "gpu"):
        # the error must carry cupy_status's reason (what failed and what to install), not just name cupy
        with pytest.raises(RuntimeError, match="^" + re.escape(f"backend 'cupy' is not available: {reason}") + "$"):
            get_backend(name)
    if reason.startswith("CuPy is not installed"):
        assert "pip install cupy-cuda12x" in reason
    else:
        assert "no CUDA device" in reason


@pytest.mark.parametrize("options", [{}, dict(norm="group", norm_groups=1, weight_std=True), dict(norm="affine"),
                                     dict(views="concat", bn_shards=3, bn_shard_running="sequential"),
                                     dict(views="concat", sem_simplices=3, sem_simplex_dim=2)],
                         ids=["batch-norm", "group-norm+ws", "affine+data-init", "concat+bn-shards",
                              "simplicial-embedding"])
def test_backend_fixture_objective_matches_numpy(backend, options):
    """The same seed gives the same step on numpy and cupy (float64)."""
    online, target = byol.build(6, 5, 3, 7, backend=get_backend(backend.name, "float64", seed=1), **options)
    ref_on, ref_tg = byol.build(6, 5, 3, 7, seed=1, **options)
    rng = np.random.default_rng(0)
    v1, v2 = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    if options.get("norm") == "affine":  # the data-dependent initialisation runs on the backend too
        online, target = (byol.data_dependent_init(n, backend.asarray(v1)) for n in (online, target))
        ref_on, ref_tg = (byol.data_dependent_init(n, v1) for n in (ref_on, ref_tg))
        for k, v in ref_on.params.items():
            np.testing.assert_allclose(backend.to_numpy(online.params[k]), v, rtol=1e-12, atol=1e-12, err_msg=k)
    res = byol.loss_and_grads(online, target, backend.asarray(v1), backend.asarray(v2))
    ref = byol.loss_and_grads(ref_on, ref_tg, v1, v2)
    assert float(res.loss) == pytest.approx(float(ref.loss), rel=1e-12)
    for k in ref.grads:
        np.testing.assert_allclose(backend.to_numpy(res.grads[k]), ref.grads[k], rtol=1e-10, atol=1e-13)
    for k in ref.online_buffers:
        np.testing.assert_allclose(backend.to_numpy(res.online_buffers[k]), ref.online_buffers[k], rtol=1e-12,
                                   atol=1e-14, err_msg=k)


# --------------------------------------------------------------------------- found by a mutation audit (backend.py)


def test_get_array_module_is_cupy_if_any_array_is():
    """A host array first and a device array after it is still a device computation (the CPU stand-in
    plays CuPy); with only host arrays, or none, the answer is NumPy."""
    from cupy_standin import install

    with install() as cp:
        assert get_array_module(np.zeros(2), cp.zeros(2)) is cp
        assert get_array_module(cp.zeros(2), np.zeros(2)) is cp
        assert get_array_module(np.zeros(2), np.ones(2)) is np
        assert get_array_module() is np


def test_backend_seed_resets_the_generator_to_that_seed():
    """Backend.seed(s) restarts the host PCG64 stream at s: the same draws as a fresh default_rng(s)."""
    be = get_backend("numpy", seed=5)
    be.rng.standard_normal(4)
    be.seed(7)
    np.testing.assert_array_equal(be.rng.standard_normal(3), np.random.default_rng(7).standard_normal(3))


def test_an_older_numpy_than_the_floor_is_refused_at_import_in_words():
    """pyproject.toml asks for NumPy >= 2.0, but byol_ref on a path (PYTHONPATH, a clone) imported on
    NumPy 1.26 and ran, until an Adam update failed on "Cannot cast ufunc 'add' output from
    dtype('int64') to dtype('uint8')"; what else differs under the old promotion rules did so silently."""
    from byol_ref.backend import NUMPY_LEAST

    floor = re.search(r'"numpy>=([0-9.]+)"', (PKG.parent / "pyproject.toml").read_text()).group(1).split(".")
    assert NUMPY_LEAST.split(".") == floor + ["0"] * (3 - len(floor))  # (the two say the same: 2.0 is 2.0.0)
    code = "import numpy; numpy.__version__ = '1.26.4'; import byol_ref"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        "ImportError: byol-ref needs NumPy >= 2.0.0 (its type promotion rules, NEP 50), but NumPy 1.26.4 is "
        f"installed (at {np.__file__}); upgrade it: pip install --upgrade 'numpy>=2'")


def test_a_backend_pickles_and_deep_copies_with_its_generator_where_it_was():
    """``fit(..., backend=be)`` sent to a worker process (a spawned pool: macOS's and Windows' default)
    failed on "cannot pickle 'module' object", as did copy.deepcopy of a backend; a copy now draws what
    the original would have, from its own generator."""
    import copy
    import pickle

    be = get_backend("numpy", "float32", seed=3)
    be.rng.standard_normal(5)  # (mid-stream: the copy goes on from here)
    for twin in (pickle.loads(pickle.dumps(be)), copy.deepcopy(be)):
        assert (twin.name, twin.dtype, twin.xp) == ("numpy", "float32", np) and twin.rng is not be.rng
        np.testing.assert_array_equal(twin.rng.standard_normal(3), copy.deepcopy(be.rng).standard_normal(3))
    assert copy.copy(be).rng is be.rng  # (a shallow copy shares the generator, as a dataclass's does)
    if not cupy_status()[0]:  # read back where no GPU answers: get_backend's own words
        gpu = pickle.dumps(byol.Backend("cupy", np, "float32", np.random.default_rng(0)))
        with pytest.raises(RuntimeError, match="backend 'cupy' is not available: "):
            pickle.loads(gpu)


def test_a_cupy_that_does_not_import_is_told_with_what_to_install(monkeypatch):
    """cupy_status's first answer, held on every machine: the test above skips where a GPU answers, and so
    skipped, and passed, when a mutant made a failed import read as a GPU (scripts/mutation_sweep.py).
    ``sys.modules["cupy"] = None`` makes ``import cupy`` fail as a missing one does."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    ok, reason = cupy_status()
    assert not ok and reason.startswith("CuPy is not installed or failed to import (ModuleNotFoundError: ")
    assert reason.endswith("install the CuPy that matches your CUDA toolkit: pip install cupy-cuda12x (or "
                           "cupy-cuda13x), or from a byol-ref checkout pip install -e '.[cuda12]' (or '.[cuda13]')")
    with pytest.raises(RuntimeError, match="^" + re.escape(f"backend 'cupy' is not available: {reason}") + "$"):
        get_backend("cupy")


def test_synchronize_waits_on_cupys_stream_and_is_a_no_op_on_numpy():
    """NumPy has no ``cuda``: synchronize must not reach for it there (scripts/mutation_sweep.py: with its test
    of the backend's name inverted, every test passed, as none called it)."""
    from cupy_standin import install

    assert get_backend("numpy").synchronize() is None
    with install() as cp:
        waited = []

        class Stream:
            def synchronize(self):
                waited.append(1)

        cp.cuda.get_current_stream = Stream
        get_backend("cupy").synchronize()
        assert waited == [1]


def test_a_backends_repr_leaves_out_its_generator():
    """The generator's repr is an address (``Generator(PCG64) at 0x7f...``), which tells nothing and differs
    from run to run."""
    text = repr(get_backend("numpy", "float32"))
    assert text.startswith("Backend(name='numpy', xp=<module 'numpy'") and text.endswith(", dtype='float32')")
    assert "rng" not in text and "Generator" not in text


def test_to_numpy_calls_get_on_cupy_arrays_only():
    """Only a CuPy array is brought to the host with ``.get()``: anything else with a ``get`` method (a
    pandas Series, a dict) is handed to ``numpy.asarray``, where ``get()`` would raise or be something else."""
    from byol_ref.backend import to_numpy
    from cupy_standin import install

    class SeriesLike:
        def get(self, key, default=None):
            raise AssertionError("get was called")

        def __array__(self, dtype=None, copy=None):
            return np.array([1.0, 2.0])

    np.testing.assert_array_equal(to_numpy(SeriesLike()), [1.0, 2.0])
    with install() as cp:
        a = to_numpy(cp.asarray([3.0, 4.0]))
        assert type(a) is np.ndarray and a.tolist() == [3.0, 4.0]


def test_check_dtype_refuses_what_numpy_cannot_read():
    """A dtype spec NumPy does not understand is named, not read as the float64 default."""
    from byol_ref.backend import check_dtype

    for bad in ("bogus", "flo", object()):
        with pytest.raises(ValueError, match="dtype must be one of"):
            check_dtype(bad)
    assert check_dtype(np.float32) == "float32" and check_dtype("f8") == "float64"


def test_cupy_that_imports_but_finds_no_device_says_which_and_get_backend_refuses_with_it():
    """CuPy importable is not a GPU answering (STYLE.md 5): a machine with CuPy but no driver, or whose
    devices are hidden (CUDA_VISIBLE_DEVICES=""), raises in getDeviceCount or counts none. Each is
    told in its own words, which get_backend("cupy") passes on (the CPU stand-in plays CuPy)."""
    from cupy_standin import install

    class CUDARuntimeError(RuntimeError):  # (as cupy_backends.cuda.api.runtime raises it)
        pass

    def no_driver():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    with install() as cp:
        assert cupy_status() == (True, "1 CUDA device(s)")
        for count, reason in (
                (no_driver, "CuPy is installed but no CUDA device answered (CUDARuntimeError: "
                            "cudaErrorInsufficientDriver: CUDA driver version is insufficient)"),
                (lambda: 0, "CuPy is installed but no CUDA device was found")):
            cp.cuda.runtime.getDeviceCount = count
            assert cupy_status() == (False, reason)
            with pytest.raises(RuntimeError, match="^" + re.escape(f"backend 'cupy' is not available: {reason}") + "$"):
                get_backend("cupy")
