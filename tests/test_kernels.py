"""Fast paths against their references (STYLE.md 6).

CPU part (always runs): the in-place / cache-free / blocked paths the model uses for speed give the
same numbers as the plain calls, and the batch-norm backward that ships (gamma factored out of the
batch means) agrees with the general closed form it replaces.

GPU part (``-m gpu``, skipped with a reason when no GPU answers): every fused CuPy kernel against its
xp twin run on the device with fusion off, and both against CPU NumPy, with the dtype-aware
tolerance ``atol + |ref| * k * eps(dtype)`` (llm.c ``dev/cuda``).
"""
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import byol_ref as byol
from byol_ref import kernels
from byol_ref.layers import (RunningStats, _normalize_backward, batch_norm_backward, batch_norm_forward,
                             linear_backward, linear_forward, relu_backward, relu_forward)
from byol_ref.losses import regression_loss_backward, regression_loss_forward
from byol_ref.model import ema_update, loss_and_grads, mlp_backward, mlp_forward, network_plan
from byol_ref.optim import make_optimizer
from conventions import MODEL_PAIRS, model_conventions, pair_ids
from memory import peak_bytes
from recorded import layer_inputs

DTYPES = ["float32", "float64"]


def _bn_inputs(seed, g, n, f, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((g, n, f)) * rng.uniform(0.5, 2, f) + rng.standard_normal(f)).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, f).astype(dtype)
    beta = rng.standard_normal(f).astype(dtype)
    run = RunningStats(np.zeros(f, dtype), np.ones(f, dtype), np.array(0))
    dout = rng.standard_normal((g, n, f)).astype(dtype)
    return x, gamma, beta, run, dout


# --------------------------------------------------------------------------- CPU: blocks


def test_blocks_cover_contiguous_arrays_and_fall_back_to_whole_arrays():
    a, b = np.arange(10.0), np.arange(10.0) * 2
    got = list(kernels.blocks(a, b, block=4))
    assert [len(x) for x, _ in got] == [4, 4, 2]
    for x, y in got:
        x += y  # writes reach the original
    np.testing.assert_array_equal(a, np.arange(10.0) * 3)
    c = np.zeros((4, 6))[:, ::2]
    assert len(list(kernels.blocks(c, c.copy(), block=2))) == 1  # not contiguous: one whole-array block


# --------------------------------------------------------------------------- CPU: layers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("var_formula", ["two_pass", "one_pass"])
@pytest.mark.parametrize("train", [True, False])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9), f=st.integers(1, 7), g=st.integers(1, 2))
def test_batch_norm_inplace_and_cache_free_forward_equal_the_plain_call(dtype, var_formula, train, seed, n, f, g):
    x, gamma, beta, run, _ = _bn_inputs(seed, g, n, f, dtype)
    out, cache, r1 = batch_norm_forward(x, gamma, beta, run, train=train, var_formula=var_formula)
    x2 = x.copy()
    out2, cache2, r2 = batch_norm_forward(x2, gamma, beta, run, train=train, var_formula=var_formula, inplace=True)
    out3, cache3, r3 = batch_norm_forward(x.copy(), gamma, beta, run, train=train, var_formula=var_formula,
                                          inplace=True, need_cache=False)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(out3, out)
    np.testing.assert_array_equal(cache2.x_hat, cache.x_hat)
    assert cache3 is None
    for a, b in ((r1, r2), (r1, r3)):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.var, b.var)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9), f=st.integers(1, 7), g=st.integers(1, 2))
def test_batch_norm_backward_matches_the_general_closed_form(dtype, train, seed, n, f, g):
    """The shipped backward (gamma out of the means, per-group sums shared with dgamma, dbeta) is
    the general ``_normalize_backward`` formula rearranged; in place it gives the same bits."""
    x, gamma, beta, run, dout = _bn_inputs(seed, g, n, f, dtype)
    _, cache, _ = batch_norm_forward(x, gamma, beta, run, train=train)
    got = batch_norm_backward(dout, cache)
    want = _normalize_backward(dout, cache)
    eps = np.finfo(dtype).eps
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=64 * eps, atol=64 * eps * (1 + np.abs(b).max()))
    d2 = dout.copy()
    got2 = batch_norm_backward(d2, cache, inplace=True)
    for a, b in zip(got2, got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("g", [1, 2])
def test_batch_norm_backward_runs_over_row_blocks_through_one_block_sized_scratch(g):
    """On the CPU bn_backward_dx_ref takes the rows in blocks of BLOCK * 4 // F through one block-sized
    scratch. With more rows than two blocks (the last one cut short) it gives the bits of the whole-array
    formula, and it allocates dx and the scratch, never a second activation-sized temporary (a count of
    bytes, not a time). Found by scripts/mutation_sweep.py: every test had fewer rows than a block, so a
    block size computed with / for // (a float: a TypeError past one block) or a scratch of all N rows
    passed."""
    rng = np.random.default_rng(0)
    f = 64
    rows = kernels.BLOCK * 4 // f
    n = 2 * rows + 37
    x = rng.standard_normal((g, n, f)[2 - g:])  # (N, F) or (G, N, F)
    gamma, beta = rng.standard_normal(f), rng.standard_normal(f)
    _, cache, _ = batch_norm_forward(x, gamma, beta, RunningStats(np.zeros(f), np.ones(f), np.array(0)), train=True)
    dout, x_hat = rng.standard_normal(x.shape), cache.x_hat
    s1, s2 = dout.sum(axis=-2, keepdims=True), (dout * x_hat).sum(axis=-2, keepdims=True)  # (..., 1, F)
    scale = cache.rstd * gamma
    want = scale * (dout - s1 / n - x_hat * (s2 / n))
    got, peak = peak_bytes(lambda: kernels.bn_backward_dx_ref(np, dout, x_hat, s1, s2, scale, n))
    np.testing.assert_array_equal(got, want)
    scratch = rows * f * dout.itemsize
    assert dout.nbytes + scratch <= peak < dout.nbytes + 1.25 * scratch, (peak - dout.nbytes) / scratch
    # A row wider than a block: one row at a time (a block of 0 rows would be a range of step 0).
    f = kernels.BLOCK * 4 + 1
    x_hat, dout = rng.standard_normal((2, 3, f))
    s1, s2, scale = dout.sum(axis=0, keepdims=True), (dout * x_hat).sum(axis=0, keepdims=True), np.ones((1, f))
    np.testing.assert_array_equal(kernels.bn_backward_dx_ref(np, dout, x_hat, s1, s2, scale, 3),
                                  scale * (dout - s1 / 3 - x_hat * (s2 / 3)))


def test_a_heads_forward_and_backward_overwrite_their_own_temporaries():
    """mlp_forward and mlp_backward let a step overwrite an input that the step before made (batch norm
    the linear output, ReLU the batch-norm output, each backward its dout). On a projector whose hidden
    layer A = (2, 2048, 512) dwarfs the rest, the forward keeps x_hat and the ReLU output (2 A) and peaks
    there, and the backward peaks at one A above what it started with; without the overwrites they
    peak at 3 A and 2 A. A count of bytes (tracemalloc), not a time. Found by scripts/mutation_sweep.py:
    with either loop never overwriting, every test passed (the step's peak-memory test included: there
    the weights dominate)."""
    online, _ = byol.build(64, 64, 16, 64, seed=0, projector_hidden_dim=512)
    steps = network_plan(online.config, "online")["projector"]
    assert [kind for kind, _ in steps] == ["linear", "batch_norm", "relu", "linear"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2048, 64))
    a = 2 * 2048 * 512 * x.itemsize
    (out, caches, _), forward_peak = peak_bytes(
        lambda: mlp_forward(steps, online.params, online.buffers, x, config=online.config, train=True))
    dout = rng.standard_normal(out.shape)
    _, backward_peak = peak_bytes(lambda: mlp_backward(dout, caches, {}))
    assert 2 * a <= forward_peak < 2.5 * a, forward_peak / a
    assert a <= backward_peak < 1.5 * a, backward_peak / a


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_the_step_skips_the_gradient_of_its_views_and_only_that(stop_gradient, monkeypatch):
    """The views are data: loss_and_grads asks the first linear layer of each network it differentiates
    for no dx (one GEMM of the input's width saved per network), and every other layer for its dx.
    Found by scripts/mutation_sweep.py: asking for the views' gradient too gives the same numbers, so
    every test passed."""
    from byol_ref import model

    asked = []
    original = model.linear_backward

    def spy(dout, cache, *, need_dx=True):
        asked.append((tuple(cache.x.shape), need_dx))
        return original(dout, cache, need_dx=need_dx)

    monkeypatch.setattr(model, "linear_backward", spy)
    online, target = byol.build(5, 4, 3, 6, seed=0, stop_gradient=stop_gradient)
    v1, v2 = np.random.default_rng(0).standard_normal((2, 4, 5))
    byol.loss_and_grads(online, target, v1, v2)
    views = (2, 4, 5)  # (the only layer input of this width: the others are 6, 4 and 3 wide)
    assert [shape for shape, need in asked if not need] == [views] * (1 if stop_gradient else 2), asked
    assert all(need for shape, need in asked if shape != views), asked


def test_a_weight_decay_term_is_skipped_for_the_python_float_0_only():
    """add_scaled (u = p * wd + g, the optimisers' first link) skips the product for a Python 0.0, so a
    zero decay gives g exactly even where p is not finite; any other wd, 1.0 included, is computed.
    Found by scripts/mutation_sweep.py: a skip for 1.0 in place of 0.0 passed every test."""
    p, g = np.array([2.0, np.inf, -3.0]), np.array([0.5, 0.25, 1.0])
    with np.errstate(invalid="ignore"):  # (inf * 0 = nan, where the 0-d array's term is computed)
        for wd, want in ((0.0, g), (1.0, p + g), (np.array(0.0), [0.5, np.nan, 1.0])):
            u = np.empty(3)
            kernels.add_scaled(np, g, p, wd, u)
            np.testing.assert_array_equal(u, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_linear_fast_paths(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4)).astype(dtype)
    out, cache = relu_forward(x)
    out2, cache2 = relu_forward(x.copy(), inplace=True)
    np.testing.assert_array_equal(out2, out)
    dout = rng.standard_normal(x.shape).astype(dtype)
    want = np.where(x > 0, dout, 0)
    np.testing.assert_array_equal(relu_backward(dout, cache), want)
    np.testing.assert_array_equal(relu_backward(dout.copy(), cache, inplace=True), want)
    w = rng.standard_normal((4, 3)).astype(dtype)
    h, lc = linear_forward(x, w, None)
    dx, dw, db = linear_backward(rng.standard_normal(h.shape).astype(dtype), lc, need_dx=False)
    assert dx is None and db is None and dw.shape == w.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_loss_backward_without_dz(dtype):
    rng = np.random.default_rng(4)
    p, z = rng.standard_normal((2, 2, 6, 5)).astype(dtype)
    for form in ("mse", "2-2cos"):
        _, cache = regression_loss_forward(p, z, form=form)
        dl = rng.standard_normal((2, 6)).astype(dtype)
        dp, dz = regression_loss_backward(dl, cache)
        dp2, dz2 = regression_loss_backward(dl, cache, need_dz=False)
        np.testing.assert_array_equal(dp2, dp)
        assert dz2 is None and dz.shape == z.shape


# --------------------------------------------------------------------------- CPU: model and EMA


# Every block order with every norm (edifice's ReLU before a batch norm once let the norm overwrite the
# ReLU output its cache masks with: wrong gradients on the fast path only), and the options that change
# which temporaries exist.
FAST_PATH_OPTIONS = [{"layout": layout, "norm": norm, **({"norm_groups": 1} if norm == "group" else {})}
                     for layout in ("paper", "edifice") for norm in ("batch", "layer", "group", "affine", "none")]
FAST_PATH_OPTIONS += [{"stop_gradient": False}, {"bn_var": "one_pass", "views": "concat"},
                      {"layout": "edifice", "norm": "batch", "bn_var": "one_pass"},
                      {"norm": "group", "norm_groups": 1, "weight_std": True}, {"sem_simplices": 2, "sem_simplex_dim": 3},
                      {"layout": "edifice", "norm": "batch", "stop_gradient": False}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", FAST_PATH_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_fast_loss_and_grads_equals_the_allocating_path(dtype, options):
    """Without ``record`` the model overwrites its own temporaries; with it nothing is overwritten.
    Both must give the same bits."""
    online, target = byol.build(7, 6, 3, 8, projector_hidden_dim=9, dtype=dtype, seed=2, **options)
    rng = np.random.default_rng(0)
    _assert_fast_path_is_the_allocating_path(online, target, *rng.standard_normal((2, 5, 7)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", range(len(MODEL_PAIRS)), ids=pair_ids(MODEL_PAIRS))
def test_fast_loss_and_grads_equals_the_allocating_path_at_every_pair_of_conventions(dtype, row):
    """FAST_PATH_OPTIONS lists the block orders and the options that change which temporaries exist; the
    combination of two once broke the fast path alone. tests/conventions.py's MODEL_PAIRS hold every value of
    every convention next to every value of every other."""
    _assert_fast_path_agrees_at(MODEL_PAIRS[row], dtype, n=(4, 6, 8)[row % 3], seed=row)


# (five times the profile's examples, 200 in CI, a few ms each)
@settings(max_examples=5 * settings.default.max_examples)
@given(options=model_conventions(), dtype=st.sampled_from(DTYPES), n=st.sampled_from([4, 6, 8]),
       seed=st.integers(0, 1000))
def test_fast_loss_and_grads_equals_the_allocating_path_at_drawn_conventions(options, dtype, n, seed):
    """The conventions drawn at random, beyond the pairs above. (A sweep of 1,500 draws found the two paths
    equal, bit for bit, in every one.)"""
    _assert_fast_path_agrees_at(options, dtype, n=n, seed=seed)


def _assert_fast_path_agrees_at(options, dtype, *, n, seed):
    online, target = byol.build(7, 6, 4, 8, projector_hidden_dim=10, dtype=dtype, seed=seed,
                                **options)  # (even widths: any norm_groups drawn)
    rng = np.random.default_rng(seed)
    _assert_fast_path_is_the_allocating_path(online, target, *rng.standard_normal((2, n, 7)).astype(dtype))


def _assert_fast_path_is_the_allocating_path(online, target, v1, v2):
    fast = loss_and_grads(online, target, v1, v2)
    slow = loss_and_grads(online, target, v1, v2, record=lambda key, value: None)
    assert float(fast.loss) == float(slow.loss)
    for k in slow.grads:
        np.testing.assert_array_equal(fast.grads[k], slow.grads[k])
    for k in slow.online_buffers:
        np.testing.assert_array_equal(fast.online_buffers[k], slow.online_buffers[k])
        np.testing.assert_array_equal(fast.target_buffers.get(k, 0), slow.target_buffers.get(k, 0))


def test_mlp_backward_without_input_grad():
    online, _ = byol.build(6, 5, 3, 7, seed=1)
    cfg = online.config
    steps = network_plan(cfg, "online")["encoder"]
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    out, caches, _ = mlp_forward(steps, online.params, online.buffers, x, config=cfg, train=True)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    g1, g2 = {}, {}
    dx = mlp_backward(dout, caches, g1)
    none = mlp_backward(dout, caches, g2, need_input_grad=False)
    assert dx.shape == x.shape and none is None
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.0, 0.37, 0.996, 1.0])
@pytest.mark.parametrize("form", ["weighted", "increment"])
def test_ema_in_place_equals_pure(dtype, tau, form):
    online, target = byol.build(9, 6, 3, 40, dtype=dtype, seed=0, target_init="independent")
    pure = ema_update(online.params, target.params, tau, form=form)
    for k, t in target.params.items():  # each form is its own formula, rounding included
        o = online.params[k]
        want = tau * t + (1 - tau) * o if form == "weighted" else t + (1 - tau) * (o - t)
        np.testing.assert_array_equal(pure[k], want)
        if tau == 1.0:
            np.testing.assert_array_equal(pure[k], t)
        if tau == 0.0 and form == "weighted":
            np.testing.assert_array_equal(pure[k], o)
    ids = {k: id(v) for k, v in target.params.items()}
    saved_online = {k: v.copy() for k, v in online.params.items()}
    new = ema_update(online.params, target.params, tau, inplace=True, form=form)
    for k in pure:
        np.testing.assert_array_equal(new[k], pure[k])
        assert id(new[k]) == ids[k] and new[k].dtype == dtype
        np.testing.assert_array_equal(online.params[k], saved_online[k])
    with pytest.raises(TypeError, match="inplace must be True or False, got .yes."):
        ema_update(online.params, target.params, tau, inplace="yes")


def test_ema_in_place_on_blocks_larger_than_one():
    rng = np.random.default_rng(0)
    o = {"w": rng.standard_normal((300, 250)).astype("float32")}  # 75000 > one block
    t = {"w": rng.standard_normal((300, 250)).astype("float32")}
    for form in ("weighted", "increment"):
        want = ema_update(o, t, 0.9, form=form)
        np.testing.assert_array_equal(ema_update(o, {"w": t["w"].copy()}, 0.9, inplace=True, form=form)["w"],
                                      want["w"])
    # the two forms round differently (which is why the official code's own is an option)
    weighted, increment = (ema_update(o, t, 0.9, form=f)["w"] for f in ("weighted", "increment"))
    assert not np.array_equal(weighted, increment)
    np.testing.assert_allclose(weighted, increment, rtol=0, atol=4 * np.finfo("float32").eps)
    with pytest.raises(ValueError, match="form must be one of"):
        ema_update(o, t, 0.9, form="lerp")


def test_the_fused_ema_of_each_form_is_that_form():
    """The dispatcher picks the kernel of the form asked for: on the stand-in, which runs each kernel
    body with NumPy in its written order, each form equals its reference bit for bit (the two forms
    are only an ulp or so apart, closer than the device tests' tolerance)."""
    from cupy_standin import install

    rng = np.random.default_rng(0)
    t, o = rng.standard_normal((2, 4096))
    with install() as cp:
        assert kernels.use_fused(cp)
        for form in kernels.EMA_FORMS:
            got = kernels.ema(cp, cp.asarray(t), cp.asarray(o), 0.99, cp.empty_like(cp.asarray(t)), form=form)
            np.testing.assert_array_equal(got.get(), kernels.ema_ref(np, t, o, 0.99, np.empty_like(t), form=form),
                                          err_msg=form)


# --------------------------------------------------------------------------- GPU


@pytest.fixture(scope="module", params=["standin", pytest.param("cupy", marks=pytest.mark.gpu)])
def cp(request):
    """The device array module: real CuPy (gpu-marked), or the CPU stand-in of tests/cupy_standin.py,
    which runs the kernel bodies with NumPy under CuPy's argument rules, so the dispatch around every
    fused kernel is exercised in CI too. (Module scope: hypothesis rejects function-scoped fixtures.)"""
    if request.param == "standin":
        from cupy_standin import install

        with install() as module:
            yield module
        return
    from byol_ref.backend import cupy_status

    ok, reason = cupy_status()
    if not ok:
        pytest.skip(reason)
    import cupy

    yield cupy


def _tol(ref, dtype, k=8, atol=None):
    eps = np.finfo(dtype).eps
    atol = k * eps if atol is None else atol
    return atol + np.abs(ref) * k * eps


def _close(got, want, dtype, k=8, atol=None):
    got = np.asarray(got.get() if hasattr(got, "get") else got)
    want = np.asarray(want.get() if hasattr(want, "get") else want)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = _tol(want.astype(np.float64), dtype, k, atol)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)} (max err {err.max()})"


def _both(cp, fn, *host_args):
    """Run ``fn(xp, *args)`` fused on cupy, unfused on cupy, and on numpy."""
    dev = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in host_args]
    with kernels.fused(True):
        fused_out = fn(cp, *[a.copy() if hasattr(a, "copy") else a for a in dev])
    with kernels.fused(False):
        twin_out = fn(cp, *[a.copy() if hasattr(a, "copy") else a for a in dev])
    host_out = fn(np, *[a.copy() if hasattr(a, "copy") else a for a in host_args])
    return fused_out, twin_out, host_out


shapes = st.tuples(st.integers(1, 2), st.integers(2, 33), st.integers(1, 70))


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes)
def test_device_relu_backward(cp, dtype, seed, shape):
    rng = np.random.default_rng(seed)
    dout, y = rng.standard_normal((2, *shape)).astype(dtype)
    y = np.maximum(y, 0)
    f, t, h = _both(cp, lambda xp, a, b: kernels.relu_backward(xp, a, b), dout, y)
    _close(f, h, dtype, k=0, atol=0)  # a mask multiply is exact
    _close(t, h, dtype, k=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_cache", [True, False])
@given(seed=st.integers(0, 2**31 - 1), shape=shapes)
def test_device_bn_apply(cp, dtype, need_cache, seed, shape):
    x, gamma, beta, _, _ = _bn_inputs(seed, *shape, dtype)
    mean = x.mean(axis=-2, keepdims=True)
    rstd = (1 / np.sqrt(x.var(axis=-2, keepdims=True) + 1e-5)).astype(dtype)

    def fn(xp, x, mean, rstd, gamma, beta):
        out, x_hat = kernels.bn_apply(xp, x, mean, rstd, gamma, beta, need_cache=need_cache)
        return out if x_hat is None else xp.stack([out, x_hat])

    f, t, h = _both(cp, fn, x, mean, rstd, gamma, beta)
    _close(f, h, dtype, atol=64 * np.finfo(dtype).eps)
    _close(t, h, dtype, atol=64 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes)
def test_device_bn_backward_and_sum_of_product(cp, dtype, seed, shape):
    x, gamma, beta, run, dout = _bn_inputs(seed, *shape, dtype)
    _, cache, _ = batch_norm_forward(x, gamma, beta, run, train=True)
    n = shape[1]

    def sums(xp, dout, x_hat):
        return kernels.sum_of_product(xp, dout, x_hat, -2)

    f, t, h = _both(cp, sums, dout, cache.x_hat)
    scale_sum = n * 8 * np.finfo(dtype).eps * (1 + np.abs(dout).max())
    _close(f, h, dtype, atol=scale_sum)
    _close(t, h, dtype, atol=scale_sum)
    s1 = dout.sum(axis=-2, keepdims=True)
    s2 = (dout * cache.x_hat).sum(axis=-2, keepdims=True)
    scale = (cache.rstd * gamma).astype(dtype)

    def dx(xp, dout, x_hat, s1, s2, scale):
        return kernels.bn_backward_dx(xp, dout, x_hat, s1, s2, scale, n)

    f, t, h = _both(cp, dx, dout, cache.x_hat, s1, s2, scale)
    atol = 64 * np.finfo(dtype).eps * float(np.abs(h).max() + 1)
    _close(f, h, dtype, atol=atol)
    _close(t, h, dtype, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes)
def test_device_l2_normalise_and_loss_gradient(cp, dtype, seed, shape):
    rng = np.random.default_rng(seed)
    p, z = rng.standard_normal((2, *shape)).astype(dtype)
    g = rng.uniform(0.1, 1, (*shape[:-1], 1)).astype(dtype)
    f, t, h = _both(cp, lambda xp, a, b, c: kernels.mse_dn(xp, a, b, c), p, z, g)
    _close(f, h, dtype)
    _close(t, h, dtype)
    rstd = (1 / np.sqrt((p * p).sum(-1, keepdims=True))).astype(dtype)
    c = rng.standard_normal((*shape[:-1], 1)).astype(dtype)
    f, t, h = _both(cp, lambda xp, a, b, r, c: kernels.l2n_backward(xp, a, b, r, c), z, p, rstd, c)
    atol = 16 * np.finfo(dtype).eps * float(np.abs(z * rstd).max() + np.abs(p * c).max())
    _close(f, h, dtype, atol=atol)
    _close(t, h, dtype, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 5000))
def test_device_lars_apply_and_ema(cp, dtype, seed, size):
    rng = np.random.default_rng(seed)
    u, m, p, t = rng.standard_normal((4, size)).astype(dtype)
    r = np.asarray(rng.uniform(1e-3, 2), dtype=dtype)

    def lars(xp, u, r, m, p):
        m_out, p_out = xp.empty_like(m), xp.empty_like(p)
        kernels.lars_apply(xp, u, r, m, p, 0.9, 0.3, m_out, p_out)
        return xp.stack([m_out, p_out])

    f, tw, h = _both(cp, lars, u, r, m, p)
    atol = 16 * np.finfo(dtype).eps * float(np.abs(h).max() + 1)
    _close(f, h, dtype, atol=atol)
    _close(tw, h, dtype, atol=atol)

    for form in kernels.EMA_FORMS:
        def ema(xp, t, o):
            return kernels.ema(xp, t, o, 0.99, xp.empty_like(t), form=form)

        f, tw, h = _both(cp, ema, t, p)
        _close(f, h, dtype)
        _close(tw, h, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["haiku", "torch"])
@given(seed=st.integers(0, 2**31 - 1), f=st.integers(1, 300), count=st.one_of(st.integers(0, 3), st.integers(0, 10**6)),
       decay=st.floats(0.0, 0.999))
def test_device_running_stats(cp, dtype, mode, seed, f, count, decay):
    """The fused update of batch-norm running statistics (one kernel where the reference makes some twenty
    launches on 0-d arrays, the Haiku debiasing weights of a device count) against its reference, from the
    first update (t = 1: the weight on the old value is 0) to the millionth (the weights near decay and
    1 - decay)."""
    rng = np.random.default_rng(seed)
    mean, batch_mean = rng.standard_normal((2, f)).astype(dtype)
    var, batch_var = rng.uniform(0, 3, (2, f)).astype(dtype)
    t = np.asarray(count + 1, dtype=np.int64)  # the update's number, as a Network's int64 count makes it

    def update(xp, mean, var, batch_mean, batch_var, t):
        return xp.stack(kernels.running_stats(xp, mean, var, batch_mean, batch_var, t, 16, decay, mode))

    f_, tw, h = _both(cp, update, mean, var, batch_mean, batch_var, t)
    atol = 16 * np.finfo(dtype).eps * 4  # (|values| <= 3, and the two products may fuse into one FMA)
    _close(f_, h, dtype, atol=atol)
    _close(tw, h, dtype, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes, eps=st.floats(1e-8, 1e-2))
def test_device_rstd_and_add_scaled(cp, dtype, seed, shape, eps):
    """rstd = 1 / sqrt(var + eps) and u = p wd + g, one kernel each on the device, against their references:
    at var = 0 (rstd's largest, 1 / sqrt(eps)), and with wd a Python 0.0 (the reference's exact copy of g, no
    kernel), a Python float, or a 0-d array (as LARS's sum_of_norms passes it)."""
    rng = np.random.default_rng(seed)
    var = rng.uniform(0, 3, shape).astype(dtype)
    var.flat[0] = 0  # (rstd is then 1 / sqrt(eps), its largest)
    f, tw, h = _both(cp, lambda xp, v: kernels.rstd(xp, v, eps), var)
    _close(f, h, dtype)
    _close(tw, h, dtype)

    g, p = rng.standard_normal((2, *shape)).astype(dtype)
    for wd in (0.0, 1e-4, 0.1, np.asarray(0.1, dtype=dtype)):  # (a 0-d wd: LARS's sum_of_norms passes one)
        def add_scaled(xp, g, p, wd):
            u = xp.empty_like(g)
            kernels.add_scaled(xp, g, p, wd, u)
            return u

        f, tw, h = _both(cp, add_scaled, g, p, wd)
        _close(f, h, dtype, atol=4 * np.finfo(dtype).eps * float(np.abs(h).max()))
        _close(tw, h, dtype, atol=4 * np.finfo(dtype).eps * float(np.abs(h).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), shape=st.tuples(st.integers(2, 40), st.integers(1, 50)),
       groups=st.sampled_from([(), (1,), (2,), (2, 3)]), strided=st.booleans())
def test_device_sums_over_rows(cp, dtype, seed, shape, groups, strided):
    """mean_over and sum_over the rows (axis -2), a GEMM with a row of 1/N or of ones on the device
    (CuPy's reduction reads each column with a stride of F), against NumPy's reduction, for (N, F) and
    stacked groups, from a non-contiguous view too; over another axis, the reduction itself."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*groups, shape[0], 2 * shape[1] if strided else shape[1])).astype(dtype)
    a = a[..., ::2] if strided else a  # (a view with a stride of 2 along F)
    for fn in (kernels.mean_over, kernels.sum_over):
        for axis in (-2, -1):
            f, tw, h = _both(cp, lambda xp, x: fn(xp, x, axis), a)
            assert f.shape == tw.shape == h.shape == (*a.shape[:-2], *((1, a.shape[-1]) if axis == -2 else
                                                                        (a.shape[-2], 1)))
            atol = 4 * shape[0] * np.finfo(dtype).eps * float(np.abs(a).max())  # (sums of N terms, any order)
            _close(f, h, dtype, atol=atol)
            _close(tw, h, dtype, atol=atol)


def test_sums_over_rows_keep_the_reduction_where_tf32_may_round_them(monkeypatch):
    """With CUPY_TF32=1 a float32 GEMM may round its inputs to 10 bits: the batch statistics would be
    rounded so, so the rows are summed by CuPy's reduction there (exactly NumPy's values on the stand-in)."""
    from cupy_standin import install

    a = np.random.default_rng(0).standard_normal((2, 7, 5)).astype("float32")
    monkeypatch.setenv("CUPY_TF32", "1")
    with install() as cp:
        got = kernels.mean_over(cp, cp.asarray(a), -2)
    np.testing.assert_array_equal(got.get(), a.mean(axis=-2, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 5000), zero=st.sampled_from([None, "p", "u"]),
       eta=st.floats(1e-4, 1e-2), eps=st.sampled_from([0.0, 1e-9]))
def test_device_lars_trust_apply(cp, dtype, seed, size, zero, eta, eps):
    """The official trust ratio and the LARS step in two reductions and one kernel, against the reference
    (norms, the ratio or 1, then lars_apply), a zero p or u included: the ratio is then 1, not 0 / 0."""
    rng = np.random.default_rng(seed)
    u, m, p = rng.standard_normal((3, size)).astype(dtype)
    if zero == "p":
        p[:] = 0
    elif zero == "u":
        u[:] = 0

    def lars(xp, u, m, p):
        m_out, p_out = xp.empty_like(m), xp.empty_like(p)
        kernels.lars_trust_apply(xp, u, m, p, eta, eps, 0.9, 0.3, m_out, p_out)
        return xp.stack([m_out, p_out])

    f, tw, h = _both(cp, lars, u, m, p)
    atol = 16 * np.finfo(dtype).eps * float(np.abs(h).max() + 1)
    _close(f, h, dtype, atol=atol)
    _close(tw, h, dtype, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 5000), nesterov=st.booleans(),
       wd=st.sampled_from([0.0, 1e-4, 0.1]), decoupled=st.booleans())
def test_device_sgd_and_adam_apply(cp, dtype, seed, size, nesterov, wd, decoupled):
    rng = np.random.default_rng(seed)
    g, p, m = rng.standard_normal((3, size)).astype(dtype)
    v = rng.uniform(0, 2, size).astype(dtype)  # a second moment is >= 0

    def sgd(xp, g, p, m):
        m_out, p_out = xp.empty_like(m), xp.empty_like(p)
        kernels.sgd_apply(xp, g, p, m, wd, 0.9, 0.3, nesterov, m_out, p_out)
        return xp.stack([m_out, p_out])

    f, tw, h = _both(cp, sgd, g, p, m)
    atol = 16 * np.finfo(dtype).eps * float(np.abs(h).max() + 1)
    _close(f, h, dtype, atol=atol)
    _close(tw, h, dtype, atol=atol)

    wd_l2, wd_dec = (0.0, wd) if decoupled else (wd, 0.0)

    def adam(xp, g, p, m, v):
        outs = xp.empty_like(m), xp.empty_like(v), xp.empty_like(p)
        kernels.adam_apply(xp, g, p, m, v, 0.9, 0.999, 1 - 0.9**3, 1 - 0.999**3, 1e-8, wd_l2, wd_dec, 0.01, *outs)
        return xp.stack(outs)

    f, tw, h = _both(cp, adam, g, p, m, v)
    atol = 16 * np.finfo(dtype).eps * float(np.abs(h).max() + 1)
    _close(f, h, dtype, atol=atol)
    _close(tw, h, dtype, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["lars", "sgd", "adamw"])
def test_device_whole_step_fused_matches_numpy(cp, dtype, optimizer):
    """loss_and_grads + the optimiser (in place) + EMA (in place) on CuPy with the fused kernels,
    against the same step on CPU NumPy. (Adam's step is lr * sign(g) for a gradient of rounding
    noise, such as a bias's before batch norm, so its network has none: hidden_bias=False.) The draw must be
    one that its precision determines to a tenth of rtol, as _set_aside asks of the drawn ones. In float32
    the views of seed 0 put a prediction row at |p| = 0.015, a hundredth of the median, and the rounding of
    its direction, amplified by 1 / |p|, left NumPy's gradient 2.9e-5 of its scale from float64, and 3.9e-5
    from the same step with its rows reordered; a GPU rounds as much its own way. (The views of seeds 1 to
    7: 0.9e-6 to 1.9e-6 from float64.)"""
    from byol_ref.backend import get_backend

    rng = np.random.default_rng(1)
    v1, v2 = rng.standard_normal((2, 16, 12)).astype(dtype)
    results = []
    for name in ("cupy", "numpy"):
        be = get_backend(name, dtype, seed=3)
        online, target = byol.build(12, 8, 6, 16, projector_hidden_dim=24, backend=be,
                                    hidden_bias=optimizer != "adamw")
        opt = make_optimizer(optimizer, inplace=True, **({"nesterov": True} if optimizer == "sgd" else {}))
        state = opt.init(online.params)
        if name == "numpy":  # (before the update and the EMA overwrite the params in place)
            others = _computed_otherwise(online, target, v1, v2, seed=5)
        res = loss_and_grads(online, target, be.asarray(v1), be.asarray(v2))
        params, state = opt.update(res.grads, state, online.params, lr=0.2)
        tparams = ema_update(params, target.params, 0.99, inplace=True)
        results.append((float(res.loss), {k: be.to_numpy(v) for k, v in res.grads.items()},
                        {k: be.to_numpy(v) for k, v in params.items()},
                        {k: be.to_numpy(v) for k, v in tparams.items()}))
    (l_dev, g_dev, p_dev, t_dev), (l_host, g_host, p_host, t_host) = results
    rtol = 1e-4 if dtype == "float32" else 1e-10
    scale = max(np.abs(v).max() for v in g_host.values())
    for other in others:  # (a draw this precision holds: _set_aside's "its own rounding")
        assert max(np.abs(other[k] - g_host[k]).max() for k in g_host) < rtol / 10 * scale
    assert l_dev == pytest.approx(l_host, rel=rtol)
    for dev, host in ((g_dev, g_host), (p_dev, p_host), (t_dev, t_host)):
        # atol from the scale of the whole tree, not of each entry: the gradient of a bias that feeds
        # batch norm is exactly zero in exact arithmetic, so each side holds only rounding noise
        # (~eps * |dout|), which no per-entry relative tolerance can compare.
        scale = max(np.abs(v).max() for v in host.values())
        for k in host:
            np.testing.assert_allclose(dev[k], host[k], rtol=rtol, atol=rtol * scale, err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", range(len(MODEL_PAIRS)), ids=pair_ids(MODEL_PAIRS))
def test_device_loss_and_grads_matches_numpy_at_every_pair_of_conventions(cp, dtype, row):
    """loss_and_grads on the device (the fused kernels and their dispatch) against CPU NumPy at
    tests/conventions.py's MODEL_PAIRS, where every value of every convention meets every value of every other;
    the whole-step test above runs byol-ref's defaults. Each row is compared at the first of ten fixed seeds
    whose draw _set_aside keeps. All rows but one are compared at their first; pair 9, in float32,
    at its sixth: it takes one-pass batch-norm variances, E[x^2] - E[x]^2, of features that its simplicial
    embedding (near uniform at temperature 2) leaves nearly constant (E[x^2] / var of the online batch norms'
    inputs reached 3e2 to 1.8e4), and its first five float32 steps are 1.6e-5 to 7e-4 of their scale from the
    same steps in float64."""
    reasons = []
    for seed in range(row, row + 10 * len(MODEL_PAIRS), len(MODEL_PAIRS)):
        reasons.append(_assert_device_agrees_at(MODEL_PAIRS[row], dtype, n=(4, 6, 8)[row % 3], seed=seed))
        if reasons[-1] is None:
            return
    pytest.fail(f"pair {row} was never compared: its ten draws were set aside, {reasons}")


# (the profile's examples: under make gpu-check each costs device time, within the 150 s its tests have)
@given(options=model_conventions(), dtype=st.sampled_from(DTYPES), n=st.sampled_from([4, 6, 8]),
       seed=st.integers(0, 1000))
def test_device_loss_and_grads_matches_numpy_at_drawn_conventions(cp, options, dtype, n, seed):
    """The conventions drawn at random, beyond the pairs above. (A sweep of 1,500 draws on the stand-in, of which
    _set_aside set aside 1 in 10, and of 300 two-epoch fits at drawn model and training conventions, agreed to
    rounding.)"""
    assume(_assert_device_agrees_at(options, dtype, n=n, seed=seed) is None)


def test_a_draw_with_a_row_on_a_ray_is_set_aside_not_compared(cp):
    """The search profile's draw of _set_aside's docstring, a row on a ray: in float32 the step's gradient along
    the one live unit is rounding alone, 7.5e-5 on the device and 1.0e-5 on NumPy against 3.6e-5 allowed, so the
    draw is set aside; in float64 its rounding, 1e-13 of the scale, is far inside 1e-10: it is compared. (Its
    float32 step is also 2.8e-5 of its scale from float64, which alone would set it aside: the ray is looked
    for first, so that the reason given is the row, not only its effect.)"""
    options = dict(layout="paper", norm="affine", hidden_bias=False, encoder_bias=True, init="torch", sem_simplices=2,
                   sem_simplex_dim=2, sem_temperature=0.5)
    assert _assert_device_agrees_at(options, "float32", n=4, seed=22) == "a row on a ray"
    assert _assert_device_agrees_at(options, "float64", n=4, seed=22) is None


def test_a_float32_draw_that_rounds_past_a_tenth_of_the_tolerance_is_set_aside_not_compared(cp):
    """The search profile's draw of _set_aside's docstring (seed 161) whose float32 step nearly cancels: it was
    compared, and the stand-in and NumPy differed by 1.8e-4 of its gradient's scale, past the 1e-4 allowed,
    though both are correct float32 steps. Measured against the same step in float64, NumPy's is 2.0e-4 of
    its scale away (the stand-in's 6.4e-5), so it is set aside; in float64 it is compared."""
    options = dict(layout="edifice", norm="affine", use_predictor=False, target_init="copy", sem_simplices=2,
                   sem_simplex_dim=3, sem_temperature=2.0, head_bias=False, init="torch", norm_eps_mode="add",
                   loss_form="2-2cos", symmetric=True, sym_reduce="mean", target_bn="running")
    assert _assert_device_agrees_at(options, "float32", n=6, seed=161) == "its own rounding"
    assert _assert_device_agrees_at(options, "float64", n=6, seed=161) is None


def _set_aside(online, target, seen, grads, rtol, others):
    """Why some part of this draw's step is rounding alone, which no tolerance relative to the gradient's scale
    holds, or None: read from NumPy's step (its networks, every intermediate, ``seen``, as ``record`` gives
    them, and its gradients) and from the gradients of the same step computed otherwise (``others``: with the
    batch's rows reordered, and in float32 in float64). The reasons, in the order they are looked for:

    - "a dead draw": a gradient 0 in exact arithmetic, whose largest entry is below 1e-6. (Drawn with the
      edifice layout, batch norm and no predictor, both networks' projections were 0 on every row, and
      the loss 2 - 2 cos exactly 2: the float64 gradient was 1e-15 but for a batch norm's gamma at 8.6e-11,
      rounding amplified, which the two sides rounded 4e-19 apart, past the 8.6e-21 allowed.)
    - "a ReLU input at its kink": one, of either network, within 100 eps of its kink (a few times the
      rounding of a sum of a few terms of order 1, the size of these networks' values). Where the gradient
      passes, the two sides' rounding may flip its mask, a jump in the gradient; where none passes (the
      target under stop-gradient), such an input is usually 0 in exact arithmetic (a dead row makes a
      simplicial embedding uniform, which meets a zero-mean standardised weight column), and its rounding
      decides whether a row of z' is exactly 0 or a direction of noise that the normalisation scales to the
      loss's size. With norm none, weight standardisation, an embedding and no biases drawn together, 18
      draws of 3,500 differed so (float32 gradients of projector.fc1.weight up to 4x apart between the
      stand-in and NumPy); this check sets aside 1 in 10 of those configs, after which none of 1,870
      differed, and 1 in 14 of all drawn ones.
    - "a row on a ray": a row with only one live unit, of activation a, where it enters a network's
      bias-free output layer. Its output is a w, on a ray from 0, and its l2 normalisation drops a: the
      gradient along that unit is 0 in exact arithmetic, and each side holds only its own rounding,
      amplified by 1 / a. The search profile drew one in float32: affine norms, no biases in the heads, a
      predictor row with one unit alive at a = 1.1e-3; predictor.norm1.beta's gradient, -3.9e-14 in
      float64, read 7.5e-5 on the stand-in and 1.0e-5 on NumPy, past the 3.6e-5 allowed. The rounding there
      was 1.7 eps / a of the gradient's scale; a > 20 eps / rtol keeps it a tenth of rtol. Only the
      networks the gradient passes are looked at.
    - "its own rounding": a step whose own rounding passes a tenth of rtol of the gradient's scale, measured
      as the distance of NumPy's gradient from each of ``others``: the same step with the batch's rows
      reordered within each shard, which changes only the order of its sums (as a GPU's own order does), and
      in float32 the same step in float64 (the same params and views, widened exactly). Two correct steps
      may then differ by more than rtol, each rounding its own way; on the stand-in, the device's distance
      from float64 was up to 12 times NumPy's. The search profile drew one (seed 161: edifice, affine norms,
      an embedding, no predictor, 2 - 2 cos): at initialisation that network maps the two independent views
      to directions 0.2 to 1.4 degrees apart, so the loss's gradient (z/|z| - cos p/|p|) / |p| is the
      difference of two unit vectors that nearly agree, 8.5e-4 at its largest; the stand-in and NumPy
      differed by 1.8e-4 of it. Of 1,446 drawn configs of that kind, 18 differed past rtol; the distance
      from float64 sets aside 10% of them, after which the largest difference was 2.2e-5 of the scale, and
      5% more of all drawn conventions in float32. That distance alone can be small by chance: of 4,000
      float32 draws it kept, reordering the rows moved the gradient of one by 1.3e-4 of its scale, and of
      another (one-pass batch-norm variances over shards) by 3.9e-5, 16 times its distance from float64.
      NumPy and the stand-in mostly share their order of summation, and agree even where float32 is far
      from float64 (seed 18: 7e-4 from it, 1.7e-6 apart); a GPU does not. In float64, reordering moved no kept draw's
      gradient by more than 4e-13 of its scale (its rtol is 4.5e5 eps, float32's 840 eps).
    """
    scale = max(float(np.abs(g).max()) for g in grads.values())
    if scale < 1e-6:
        return "a dead draw"
    eps = np.finfo(next(iter(grads.values())).dtype).eps
    for role, net in (("online", online), ("target", target)):
        inputs = list(layer_inputs(seen, net.config, role))
        if any(kind == "relu" and np.abs(x).min() < 100 * eps for kind, _, x in inputs):
            return "a ReLU input at its kink"
        if role == "target" and net.config.stop_gradient:
            continue
        _, last, x = inputs[-1]
        if f"{last}.bias" not in net.params:
            one_live = (x != 0).sum(axis=-1) == 1
            if one_live.any() and np.abs(x[one_live]).max(axis=-1).min() <= 20 * eps / rtol:
                return "a row on a ray"
    for other in others:
        if max(float(np.abs(other[k] - g).max()) for k, g in grads.items()) > scale * rtol / 10:
            return "its own rounding"
    return None


def _computed_otherwise(online, target, v1, v2, seed):
    """The gradients of loss_and_grads at these NumPy networks and views, computed otherwise: with the rows of
    the batch reordered within each shard (a reordering drawn from ``seed``), which changes only the order of
    its sums; and, in float32, in float64, every value widened exactly. In exact arithmetic each is the step's
    own gradient."""
    n, shards = v1.shape[0], online.config.bn_shards
    rng = np.random.default_rng(seed)
    order = np.concatenate([s * (n // shards) + rng.permutation(n // shards) for s in range(shards)])
    others = [loss_and_grads(online, target, v1[order], v2[order]).grads]
    if v1.dtype == np.float32:
        def widen(net):
            return net._replace(params={k: v.astype("float64") for k, v in net.params.items()},
                                buffers={k: v if k.endswith(".count") else v.astype("float64")
                                         for k, v in net.buffers.items()})
        others.append(loss_and_grads(widen(online), widen(target), v1.astype("float64"), v2.astype("float64")).grads)
    return others


def _assert_device_agrees_at(options, dtype, *, n, seed):
    """loss_and_grads on the device against NumPy at these conventions: None once they agree; for a draw whose
    step is rounding alone somewhere, with nothing compared, the reason _set_aside gives."""
    from byol_ref.backend import get_backend

    rng = np.random.default_rng(seed)
    v1, v2 = rng.standard_normal((2, n, 7)).astype(dtype)
    results, seen = [], {}  # (seen: every intermediate of the host's step, for _set_aside)
    for name in ("cupy", "numpy"):
        be = get_backend(name, dtype, seed=seed)
        online, target = byol.build(7, 6, 4, 8, projector_hidden_dim=10, backend=be, **options)
        record = seen.__setitem__ if name == "numpy" else None
        res = loss_and_grads(online, target, be.asarray(v1), be.asarray(v2), record=record)
        results.append((float(res.loss), {k: be.to_numpy(v) for k, v in res.grads.items()},
                        {k: be.to_numpy(v) for k, v in {**res.online_buffers, **res.target_buffers}.items()}))
    (l_dev, g_dev, b_dev), (l_host, g_host, b_host) = results
    rtol = 1e-4 if dtype == "float32" else 1e-10
    reason = _set_aside(online, target, seen, g_host, rtol, _computed_otherwise(online, target, v1, v2, seed))
    if reason is not None:
        return reason  # (nothing compared)
    assert l_dev == pytest.approx(l_host, rel=rtol, abs=rtol)
    scale = max(np.abs(v).max() for v in g_host.values())  # (a bias before batch norm: rounding noise on each side)
    for k in g_host:
        np.testing.assert_allclose(g_dev[k], g_host[k], rtol=rtol, atol=rtol * scale, err_msg=k)
    for k in b_host:
        np.testing.assert_allclose(b_dev[k], b_host[k], rtol=rtol, atol=rtol, err_msg=k)
    return None


def test_a_device_step_makes_few_calls_and_reads_back_only_the_views_finiteness():
    """On a GPU each array call costs its issue time (9 to 16 us on the H200 host of docs/benchmarks.md), and
    a small-batch step is bound by that time; so the calls of one step of the benchmark's (loss_and_grads,
    LARS and the EMA in place) are counted here, on the stand-in, and held under a ceiling. The step made 541
    calls until the running statistics' update (some twenty launches on 0-d arrays a layer and view, for
    Haiku's debiasing weights) and LARS's ratio were fused; it makes 221 (459 with the running statistics'
    reference). Its only transfers are the two reads of the views' finiteness (check_array): each waits for
    the device."""
    from cupy_standin import CALLS, SYNCS, install
    from repo_modules import repo_module

    from byol_ref.backend import get_backend

    bench_step = repo_module("benchmarks", "bench_step")
    with install():
        be = get_backend("cupy", "float32", seed=0)
        step = bench_step.RefStep(bench_step.CONFIGS["smoke"], be)
        v1, v2 = (be.asarray(v) for v in np.random.default_rng(0).standard_normal((2, 16, 12)))
        step(v1, v2)  # (first use: kernels built, rows of ones cached)
        CALLS.clear()
        SYNCS.clear()
        step(v1, v2)
    calls = sum(CALLS.values())
    assert calls <= 230, f"{calls} device calls a step; the most frequent: {CALLS.most_common(12)}"
    assert SYNCS == {"bool": 2}, f"transfers in a step: {dict(SYNCS)}"


def test_device_fusion_switch_and_lazy_compilation(cp):
    assert kernels.use_fused(cp)
    with kernels.fused(False):
        assert not kernels.use_fused(cp)
    assert kernels.use_fused(cp) and not kernels.use_fused(np)


# --------------------------------------------------------------------------- CUDA sources

# The kernel inputs the dispatchers pass as Python scalars (CuPy then declares them by value).
_SCALAR_INPUTS = {"mean", "inv_n", "r", "momentum", "lr", "tau", "one_minus_tau", "wd", "b1", "one_minus_b1", "b2",
                  "one_minus_b2", "bc1", "bc2", "eps", "wd_l2", "wd_dec", "decay", "one_minus_decay", "unbias", "eta"}


def _cupy_codegen():
    """Real CuPy's code generator for ElementwiseKernel, and NVRTC: both work without a GPU.

    The module-scoped ``cp`` fixture keeps the stand-in in ``sys.modules["cupy"]`` for the rest of this
    module: importorskip then returned it, and these checks skipped as "this CuPy's internals differ"
    (the stand-in is no package) wherever they ran after it, with a real CuPy installed too. The
    stand-in is set aside while the real CuPy is looked for (the one it displaced, where CuPy was
    already imported, so that CuPy's package is not run a second time), and put back after."""
    from cupy_standin import displaced

    held = sys.modules.get("cupy")
    standin = held is not None and str(getattr(held, "__version__", "")).endswith("+standin")
    if standin:
        if displaced() is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = displaced()
    try:
        cupy = pytest.importorskip("cupy", reason="CuPy is not installed (the stand-in covers the Python side)")
        try:
            from cupy._core import _kernel
            from cupy.cuda import compiler

            _kernel._ArgInfo, _kernel._TypeMap, _kernel._get_elementwise_kernel_code, compiler._NVRTCProgram
        except (ImportError, AttributeError) as exc:
            pytest.skip(f"this CuPy's internals differ from 14.x ({exc}); the GPU run compiles the kernels anyway")
        try:
            from cupy._core import _reduction
        except ImportError:
            _reduction = None
    finally:
        if standin:
            sys.modules["cupy"] = held
    return cupy, _kernel, compiler, _reduction


def _nvrtc_compile(cupy, compiler, src, name):
    """Compile ``src`` for sm_90 with NVRTC and CuPy's headers; fail with the log and the source."""
    import glob
    import os

    root = os.path.dirname(cupy.__file__)
    includes = [os.path.join(root, "_core", "include")]
    includes += glob.glob(os.path.join(os.path.dirname(root), "nvidia", "*", "include"))
    cuda_path = cupy.cuda.get_cuda_path()
    if cuda_path and os.path.isdir(os.path.join(cuda_path, "include")):
        includes.append(os.path.join(cuda_path, "include"))
    try:
        compiler._NVRTCProgram("#include <cupy/carray.cuh>\n" + src, f"{name}.cu").compile(
            ("-arch=compute_90", "-std=c++17", *(f"-I{d}" for d in includes)))
    except Exception as exc:  # NVRTCError carries the compiler log
        pytest.fail(f"{name} does not compile:\n{exc}\n--- source ---\n{src}")


@pytest.mark.parametrize("name", sorted(kernels._SOURCES))
def test_kernel_sources_compile_with_nvrtc(name):
    """Each fused kernel, as the C++ CuPy generates for it, compiles for sm_90 in float and double, with
    its scalar inputs passed as arrays or as scalars (a body that writes an input, uses an undeclared
    name or mistypes a cast fails here, on a machine with CuPy and no GPU, instead of on the GPU)."""
    cupy, _kernel, compiler, _ = _cupy_codegen()
    in_params, out_params, body = kernels._SOURCES[name]
    k = cupy.ElementwiseKernel(in_params, out_params, body, f"byol_{name}")
    n_in = len(in_params.split(","))
    for t_dtype in (np.dtype("float32"), np.dtype("float64")):
        for scalars in (False, True):
            infos = []
            for i, p in enumerate(k.params[:-1]):  # the last parameter is CuPy's indexer
                dtype = t_dtype if p.dtype is None else np.dtype(p.dtype)  # T, or a fixed type (int64 t)
                if i < n_in and scalars and p.name in _SCALAR_INPUTS:
                    infos.append(_kernel._ArgInfo(3, dtype.type, dtype, 0, True, True))
                else:
                    infos.append(_kernel._ArgInfo(1, cupy.ndarray, dtype, 2, True, True))
            infos.append(_kernel._ArgInfo(2, None, None, 2, True, True))
            src = _kernel._get_elementwise_kernel_code(
                tuple(infos), _kernel._TypeMap((("T", t_dtype),)), k.params, k.operation, k.name, k.preamble)
            _nvrtc_compile(cupy, compiler, src, f"{name}_{t_dtype}_{'scalars' if scalars else 'arrays'}")


def test_reduction_kernel_source_compiles_with_nvrtc():
    """The fused sum-of-product reduction (batch-norm backward), as CuPy generates it, compiles."""
    cupy, _kernel, compiler, _reduction = _cupy_codegen()
    try:
        if _reduction is None:
            raise ImportError("cannot import name '_reduction' from 'cupy._core'")
        codegen = _reduction._ReductionKernel_get_cached_function_code
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"this CuPy's internals differ from 14.x ({exc})")
    rk = kernels._reduction(cupy, "sum_of_product")
    for dtype in (np.dtype("float32"), np.dtype("float64")):
        array = _kernel._ArgInfo(1, cupy.ndarray, dtype, 2, True, True)
        indexer = _kernel._ArgInfo(2, None, None, 2, True, True)
        stride = _kernel._ArgInfo(3, np.int32, np.dtype("int32"), 0, True, True)  # _block_stride
        type_map = _kernel._TypeMap((("T", dtype), ("IndexT", np.dtype("int32"))))
        src = codegen(rk.nin, rk.nout, rk._params, (array, array, array, indexer, indexer, stride), type_map,
                      rk.name, 128, rk.reduce_type, rk.identity, rk.map_expr, rk.reduce_expr, rk.post_map_expr,
                      rk.preamble, ())
        _nvrtc_compile(cupy, compiler, src, f"sum_of_product_{dtype}")


# --------------------------------------------------------------------------- CPU: the fusion switch


def test_set_fused_takes_only_a_bool_and_fused_restores_the_previous_setting():
    """set_fused refuses a truthy non-bool (a typo'd "false" would turn fusion on), and the context
    manager puts back the setting it found, False included, also when its block raises: the parity tests
    nest fused(False) inside runs with fusion off."""
    with pytest.raises(ValueError, match="enabled must be True or False, got 'false'"):
        kernels.set_fused("false")
    with pytest.raises(ValueError, match="enabled must be True or False"):
        kernels.set_fused(0)
    before = kernels.set_fused(False)
    try:
        with kernels.fused(True):
            assert kernels._FUSED is True
        assert kernels._FUSED is False  # back to off, not on
        with pytest.raises(RuntimeError):
            with kernels.fused(True):
                raise RuntimeError
        assert kernels.set_fused(True) is False  # set_fused returns the previous setting
        assert kernels.set_fused(True) is True
    finally:
        kernels.set_fused(before)


def test_sum_of_product_values_and_axes():
    """sum(a * b) over the last axis (per row) or the rows (per feature), kept as a dim; any other axis is
    refused rather than reduced over the wrong one."""
    a = np.arange(6.0).reshape(2, 3)
    b = np.array([[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]])
    np.testing.assert_array_equal(kernels.sum_of_product(np, a, b, -1), [[0 - 1 + 4], [1.5 + 12 - 10]])
    np.testing.assert_array_equal(kernels.sum_of_product(np, a, b, -2), [[0 + 1.5, -1 + 12, 4 - 10]])
    for axis in (0, 1, -3):
        with pytest.raises(ValueError, match=f"axis must be -1 or -2, got {axis}"):
            kernels.sum_of_product(np, a, b, axis)


@pytest.mark.parametrize("center", [True, False], ids=["mean", "centred"])
def test_bn_apply_leaves_x_alone_unless_told_it_may_overwrite(center):
    """overwrite_x=False (the default) promises the caller's x is untouched: batch norm passes it the
    previous step's output, which ``record`` (the trace) may still hold. x_hat = (x - mean) * rstd and
    out = gamma x_hat + beta, worked with plain ufuncs; with overwrite_x=True x may hold x_hat."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3))
    mean = x.mean(axis=-2, keepdims=True) if center else None
    rstd, gamma, beta = rng.uniform(0.5, 2, (2, 1, 3)), rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    x_hat_want = ((x - mean) if center else x) * rstd
    saved = x.copy()
    for need_cache in (True, False):
        out, x_hat = kernels.bn_apply_ref(np, x, mean, rstd, gamma, beta, need_cache=need_cache)
        np.testing.assert_array_equal(x, saved)
        np.testing.assert_allclose(out, gamma * x_hat_want + beta, rtol=1e-14)
        if need_cache:
            np.testing.assert_allclose(x_hat, x_hat_want, rtol=1e-14)
    out, x_hat = kernels.bn_apply_ref(np, x.copy(), mean, rstd, gamma, beta, overwrite_x=True)
    np.testing.assert_allclose(x_hat, x_hat_want, rtol=1e-14)


def test_device_bn_apply_leaves_x_alone_unless_told_it_may_overwrite(cp):
    """The fused bn_apply keeps the same promise: with a cache and overwrite_x=False, x_hat goes to a new
    array, not into x (the eval-mode and one-pass batch norm pass the previous step's output as x)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3))
    mean = x.mean(axis=-2, keepdims=True)
    rstd, gamma, beta = rng.uniform(0.5, 2, (2, 1, 3)), rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    dx = cp.asarray(x)
    with kernels.fused(True):
        out, x_hat = kernels.bn_apply(cp, dx, cp.asarray(mean), cp.asarray(rstd), cp.asarray(gamma), cp.asarray(beta))
    np.testing.assert_array_equal(dx.get(), x)
    _close(x_hat, (x - mean) * rstd, "float64")
    _close(out, gamma * (x - mean) * rstd + beta, "float64")
