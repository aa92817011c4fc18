"""The CuPy code paths without a GPU: the stand-in of tests/cupy_standin.py, and whole runs on it.

First the stand-in itself: it must fail where CuPy fails (a checker that cannot fail is a defect).
Then everything the ``cuda`` device touches, end to end through the CLI: train (with checkpoints,
metrics, the final report), resume, eval. The backend-parametrised tests of the other files run on
it too (the ``backend`` fixture in conftest.py and the ``cp`` fixture in test_kernels.py).
"""
import json
import re

import numpy as np
import pytest
from cupy_standin import install

from byol_ref import kernels
from byol_ref.backend import get_array_module, get_backend, to_numpy
from byol_ref.cli import main


@pytest.fixture
def cp():
    with install() as module:
        yield module


def test_standin_refuses_what_cupy_refuses(cp):
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(3)  # a host array in a device ufunc
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.concatenate([a, np.ones((1, 3))])
    with pytest.raises(AttributeError, match="no attribute 'errstate'"):
        cp.errstate  # NumPy has it, CuPy does not
    with pytest.raises(AttributeError, match="no attribute 'itemset'"):
        a.itemset
    k = cp.ElementwiseKernel("T x, T y", "T z", "z = x + y", "add")
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(a, cp.asarray(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        k(a, a, cp.asarray(np.zeros((1, 3))))
    with pytest.raises(SyntaxError, match="assigns to input"):
        cp.ElementwiseKernel("T x", "T z", "x = 1; z = x", "bad")


def test_standin_behaves_like_cupy_where_cupy_works(cp):
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert type(a).__module__ == "cupy" and get_array_module(a) is cp
    b = a * 2 + 1.0  # Python and NumPy scalars are fine
    b += np.float64(1)
    s = b.sum()
    assert isinstance(s, cp.ndarray) and s.shape == () and float(s) == 42.0  # 0-d, not a scalar
    v = a.reshape(-1)
    v[0] = 7.0  # views write through
    np.testing.assert_array_equal(to_numpy(a)[0], [7.0, 1.0, 2.0])
    assert cp.asarray(a) is a and cp.asarray(a, dtype=np.float32) is not a
    np.testing.assert_array_equal(a.get(), to_numpy(a))
    k = cp.ElementwiseKernel("T x, T w", "T y, T z", "T h = x * w; y = h; z = h + (T)1", "k")
    y, z = k(a, 2.0)
    np.testing.assert_array_equal(to_numpy(z), to_numpy(a) * 2 + 1)
    r = cp.ReductionKernel("T a, T b", "T y", "a * b", "a + b", "y = a", "0", "dot")(a, a, axis=-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(r), (to_numpy(a) ** 2).sum(-1, keepdims=True))


def test_standin_kernel_bodies_read_as_c_reads_them(cp):
    """The C the stand-in translates means what it means in C: ``&&`` binds looser than a comparison (a bare
    ``&`` in Python binds tighter: ``x > 0 & y > 0`` is ``x > (0 & y) > 0``), a declaration or a cast rounds to
    its type, ``pow`` takes doubles, the ternary picks per element; a parameter of a fixed type takes only
    arrays of it; and a type CuPy refuses to parse is refused here too (CuPy: "Wrong type double")."""
    x = np.array([1.0, 1.0, -1.0, 2.0], np.float32)
    y = np.array([1.0, -1.0, 1.0, 0.5], np.float32)
    k = cp.ElementwiseKernel("T x, T y", "T z", "z = (x > (T)0 && y > (T)0) ? x * y : (T)-1", "both")
    np.testing.assert_array_equal(k(cp.asarray(x), cp.asarray(y)).get(), [1.0, -1.0, -1.0, 1.0])
    # r is declared T (float32): rounded there, before the double product that follows.
    third = cp.ElementwiseKernel("T x, int64 t, float64 d", "T z",
                                 "double q = (double)(x) / 3.0; T r = q * pow(d, (double)(t)); "
                                 "z = (T)((double)(r) * 3.0)", "third")
    v = np.random.default_rng(0).uniform(0.5, 2.0, 64).astype(np.float32)
    got = third(cp.asarray(v), cp.asarray(np.asarray(2, np.int64)), 0.5).get()
    r = (v.astype(np.float64) / 3.0 * 0.25).astype(np.float32)
    np.testing.assert_array_equal(got, (r.astype(np.float64) * 3.0).astype(np.float32))
    assert got.dtype == np.float32 and (got != v * np.float32(0.25)).any()  # (unrounded, it would be v / 4)
    with pytest.raises(TypeError, match="Type is mismatched"):  # (an int32 count for an int64 parameter)
        third(cp.asarray(v), cp.asarray(np.asarray(2, np.int32)), 0.5)
    with pytest.raises(ValueError, match="Wrong type double"):
        cp.ElementwiseKernel("T x, double d", "T z", "z = x * d", "bad_type")


SMALL = ["--epochs", "2", "--batch-size", "128", "--hidden-size", "32", "--projection-dim", "16",
         "--predictor-dim", "16", "--no-progress", "--no-plots", "--checkpoint-every", "5", "--log-every", "5", "--set", "hidden_bias=false"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cli_train_and_eval_on_the_device(tmp_path, capsys, dtype):
    """`byol-ref train/eval --device cuda` through the stand-in: the same run, checkpoint and report as
    on the CPU, fused kernels on. (Bit-exact resume on the device: test_train.py, backend-parametrised.)
    No biases before batch norm: with Adam their rounding noise makes lr-sized steps of arbitrary sign
    (see test_fit_gives_the_same_run_on_every_backend)."""
    cpu, dev = tmp_path / "cpu", tmp_path / "dev"
    assert main(["train", "--data", "digits", "--dtype", dtype, "--out", str(cpu), *SMALL]) == 0
    with install():
        assert kernels.use_fused(get_backend("cupy").xp)
        assert main(["train", "--data", "digits", "--dtype", dtype, "--device", "cuda", "--out", str(dev),
                     "--no-eval", *SMALL]) == 0
        capsys.readouterr()
        assert main(["eval", str(dev), "--device", "cuda", "--json"]) == 0
        dev_eval = json.loads(capsys.readouterr().out)
        assert main(["embed", str(dev), "--device", "cuda", "--out", str(tmp_path / "dev.npz")]) == 0
    assert main(["embed", str(dev), "--out", str(tmp_path / "host.npz")]) == 0  # the same weights on the CPU
    with np.load(tmp_path / "dev.npz", allow_pickle=False) as d, np.load(tmp_path / "host.npz") as h:
        assert d.files == h.files
        for name in d.files:
            np.testing.assert_allclose(d[name], h[name], rtol=1e-12 if dtype == "float64" else 1e-5,
                                       atol=1e-12 if dtype == "float64" else 1e-5, err_msg=name)
    rtol = 1e-9 if dtype == "float64" else 2e-3
    ref = dict(np.load(cpu / "checkpoint.npz", allow_pickle=False))
    got = dict(np.load(dev / "checkpoint.npz", allow_pickle=False))
    assert set(got) == set(ref)
    for name, want in ref.items():
        if want.dtype.kind != "f":
            np.testing.assert_array_equal(got[name], want, err_msg=name)
            continue
        scale = np.abs(want).max() + 1.0
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=rtol * scale, err_msg=name)
    cpu_report = json.loads((cpu / "report.json").read_text())
    assert dev_eval["collapse"].keys() == cpu_report["collapse"].keys()
    for key, want in cpu_report["collapse"].items():
        assert dev_eval["collapse"][key] == pytest.approx(want, rel=1e-3, abs=1e-6), key


def test_arrays_split_between_host_and_gpu_are_named_not_left_to_cupy():
    """Views on the GPU and networks built on the host (the default), or the reverse: CuPy's own
    refusal, "Unsupported type <class 'numpy.ndarray'>", names neither array nor says what to do (the
    stand-in raises it as CuPy does). The entries that take arrays from the user now name the two
    and the ways to put them in one place."""
    import byol_ref as byol

    online, target = byol.build(6, projection_dim=4, predictor_dim=3, hidden_size=5)  # on the host
    x = np.random.default_rng(0).normal(size=(8, 6))
    with install() as cp:
        gx = cp.asarray(x)
        calls = [(lambda: byol.loss_and_grads(online, target, gx, gx), "view1", "online.params['encoder.fc1.weight']"),
                 (lambda: byol.loss_and_grads(online, target, x, gx), "view2", "view1"),
                 (lambda: byol.forward(online, gx), "x", "network.params['encoder.fc1.weight']"),
                 (lambda: byol.loss(x, gx), "target_proj", "online_pred"),
                 (lambda: byol.ema_update({k: cp.asarray(v) for k, v in online.params.items()}, target.params),
                  "ema_update: online_params['encoder.fc1.weight']", "target_params['encoder.fc1.weight']")]
        for call, device, host in calls:
            says = re.escape(f"{device} is a CuPy array (on the GPU), but {host} is a NumPy array (on the host); ")
            with pytest.raises(TypeError, match=says + ".*cupy.asarray.*cupy.asnumpy"):
                call()
        gpu_online, gpu_target = byol.build(6, projection_dim=4, predictor_dim=3, hidden_size=5, backend="cupy")
        on_gpu = byol.loss_and_grads(gpu_online, gpu_target, gx, gx).loss  # (all in one place: no refusal)
        assert float(on_gpu) == pytest.approx(float(byol.loss_and_grads(online, target, x, x).loss), rel=1e-12)
