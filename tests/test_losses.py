"""l2 normalisation and the regression loss: gradients for every eps convention and loss form,
identities (range, scale invariance, p . dl/dp = 0), the clamped regime."""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from byol_ref.gradcheck import grad_error, numerical_gradient
from byol_ref.losses import (l2_normalize_backward, l2_normalize_forward, regression_loss_backward,
                             regression_loss_dn, regression_loss_forward)

seeds = st.integers(0, 2**32 - 1)
modes = st.sampled_from(["sq_norm", "norm", "add"])
forms = st.sampled_from(["mse", "2-2cos", "neg_cos"])
lead = st.sampled_from([(3,), (2, 3), (1, 4)])


@given(seed=seeds, shape=lead, p=st.integers(2, 6), mode=modes, eps=st.sampled_from([None, 1e-3, 0.5]))
def test_l2_normalize_gradient(seed, shape, p, mode, eps):
    # Rows on both sides of the clamp: each row is clamped with probability 1/2 (when the clamp can be checked,
    # below), then drawn with a norm in [0.1, 0.5] of the kink's, else as before. The five-point stencil moves
    # one entry by up to 2h (h = 1e-4), so a row's norm by up to 2h: every row keeps |norm - kink| > 2h, and
    # the clamp is only checked where the kink's norm is >= 4h (not the defaults' 1e-6 and 1e-12; the
    # tiny-row test below covers those), so clamped rows stay >= 2h inside the clamped (linear) side.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*shape, p)) * rng.uniform(0.1, 3)
    h = 1e-4  # numerical_gradient's step for order 4
    kink = None if eps is None or mode == "add" else (np.sqrt(eps) if mode == "sq_norm" else eps)  # as a norm
    if kink is not None and kink >= 4 * h:
        rows = x.reshape(-1, p)  # (a view of x)
        for i in np.flatnonzero(rng.random(len(rows)) < 0.5):
            rows[i] *= kink * rng.uniform(0.1, 0.5) / np.linalg.norm(rows[i])
    if kink is not None:  # stay away from the clamp's kink
        norm = np.linalg.norm(x, axis=-1)
        assume(np.abs(norm**2 / kink**2 - 1).min() > 0.05 and np.abs(norm - kink).min() > 2 * h)
    n, cache = l2_normalize_forward(x, eps=eps, eps_mode=mode)
    if kink is not None:  # the rows drawn below the kink are the clamped ones
        np.testing.assert_array_equal(cache.clamped[..., 0], norm < kink)
    dn = rng.standard_normal(n.shape)
    dx = l2_normalize_backward(dn, cache)
    num = numerical_gradient(lambda x_: l2_normalize_forward(x_, eps=eps, eps_mode=mode)[0], x, dn, h=h)
    assert grad_error(dx, num) < 1e-6
    # row by row too: a clamped row's gradient, 1/kink times dn, would otherwise set the scale for the others
    for a, b in zip(dx.reshape(-1, p), num.reshape(-1, p)):
        assert grad_error(a, b) < 1e-6


@given(seed=seeds, p=st.integers(2, 6), mode=modes, dtype=st.sampled_from([np.float32, np.float64]),
       clamped=st.booleans(), scale=st.sampled_from([1e-4, 1e-9, 1e-13, 1e-16]))
def test_l2_normalize_gradient_of_tiny_rows_is_finite_and_scales(seed, p, mode, dtype, clamped, scale):
    # n(lambda x; lambda^k eps) = n(x; eps) in every mode (k = 1 for "norm", 2 for the squared
    # ones), so the gradient at lambda x is the gradient at x over lambda: about 1e16 for rows of
    # norm 1e-16, finite in float32 too. (The form dn rstd - x (x . dn) rstd^3 overflowed float32
    # for norms below 1.4e-13 and gave inf, or NaN for a zero row in "add".)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, p))
    x[0] = 0  # a zero row: clamped, or rstd = 1/sqrt(eps) in "add"
    if clamped and mode != "add":
        x[1] *= 0.5 / np.linalg.norm(x[1])  # norm 0.5 < 1 = the clamp (both clamp modes)
        eps = 1.0
    else:
        eps = 0.25 * (np.linalg.norm(x, axis=-1)[1:].min() ** 2)  # below every nonzero row's squared norm
        eps = np.sqrt(eps) if mode == "norm" else eps
    k = 1 if mode == "norm" else 2
    dn = rng.standard_normal(x.shape)
    _, ref_cache = l2_normalize_forward(x, eps=eps, eps_mode=mode)
    ref = l2_normalize_backward(dn, ref_cache)
    n, cache = l2_normalize_forward((x * scale).astype(dtype), eps=eps * scale**k, eps_mode=mode)
    dx = l2_normalize_backward(dn.astype(dtype), cache)
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx.astype(np.float64) * scale, ref, rtol=2e-4 if dtype == np.float32 else 1e-9,
                               atol=1e-5 * np.abs(ref).max())


def test_clamped_regime_is_linear_with_the_documented_slope():
    # Official: ||x|| <= 1e-6 -> n = x * 1e6 (rsqrt(1e-12)), dn/dx = 1e6 * I, no projection term.
    x = np.array([[3e-7, -4e-7]])
    n, cache = l2_normalize_forward(x, eps_mode="sq_norm")
    np.testing.assert_allclose(n, x * 1e6, rtol=1e-12)
    dn = np.array([[0.3, 0.7]])
    np.testing.assert_allclose(l2_normalize_backward(dn, cache), dn * 1e6, rtol=1e-12)
    # torch F.normalize: x / max(||x||, 1e-12): the clamp bites only below 1e-12
    n, _ = l2_normalize_forward(x, eps_mode="norm")
    np.testing.assert_allclose(np.linalg.norm(n), 1, rtol=1e-12)
    # Edifice: x / sqrt(s + 1e-8) shrinks small vectors
    n, _ = l2_normalize_forward(np.array([[1e-4, 0.0]]), eps_mode="add")
    np.testing.assert_allclose(n, [[1e-4 / np.sqrt(1e-8 + 1e-8), 0]], rtol=1e-12)


@given(seed=seeds, shape=lead, p=st.integers(2, 6), mode=modes, form=forms)
def test_regression_loss_gradients_both_inputs(seed, shape, p, mode, form):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*shape, p)) * rng.uniform(0.1, 3)
    b = rng.standard_normal((*shape, p)) * rng.uniform(0.1, 3)
    loss, cache = regression_loss_forward(a, b, form=form, eps_mode=mode)
    dloss = rng.standard_normal(loss.shape)
    da, db = regression_loss_backward(dloss, cache)
    f_a = lambda a_: regression_loss_forward(a_, b, form=form, eps_mode=mode)[0]  # noqa: E731
    f_b = lambda b_: regression_loss_forward(a, b_, form=form, eps_mode=mode)[0]  # noqa: E731
    # The step scales with the smallest row: n(x) = x / ||x|| curves on the scale ||x|| (its fifth
    # derivative ~ ||x||^-5), so a fixed h = 1e-4 next to a row of norm 3e-3 (seed 255591) is a
    # 3% step whose truncation error shows; 1e-3 ||x|| keeps it at ~1e-12 relative.
    h = min(1e-4, 1e-3 * float(np.linalg.norm(a, axis=-1).min()), 1e-3 * float(np.linalg.norm(b, axis=-1).min()))
    assert grad_error(da, numerical_gradient(f_a, a, dloss, h=h)) < 1e-6
    assert grad_error(db, numerical_gradient(f_b, b, dloss, h=h)) < 1e-6


@given(seed=seeds, n=st.integers(1, 8), p=st.integers(1, 8), c1=st.floats(0.01, 100), c2=st.floats(0.01, 100))
def test_loss_range_scale_invariance_and_orthogonality(seed, n, p, c1, c2):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, p)), rng.standard_normal((n, p))
    assume(min(np.linalg.norm(a, axis=1).min(), np.linalg.norm(b, axis=1).min()) > 1e-3)
    loss, cache = regression_loss_forward(a, b)
    assert np.all(loss >= 0) and np.all(loss <= 4 + 1e-12)
    # equal to 2 - 2 cos away from the clamp
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(loss, 2 - 2 * cos, atol=1e-12)
    # invariant to positive rescaling of either side
    np.testing.assert_allclose(regression_loss_forward(c1 * a, c2 * b)[0], loss, atol=1e-11)
    # the gradient is orthogonal to p: sum(p * dl/dp) = 0 (rescaling p changes nothing)
    da, db = regression_loss_backward(rng.standard_normal(n), cache)
    np.testing.assert_allclose((a * da).sum(1), 0, atol=1e-10)
    np.testing.assert_allclose((b * db).sum(1), 0, atol=1e-10)


def test_loss_extremes():
    a = np.array([[1.0, 2.0, -1.0]])
    assert regression_loss_forward(a, 3 * a)[0][0] == pytest.approx(0, abs=1e-15)
    assert regression_loss_forward(a, -a)[0][0] == pytest.approx(4, abs=1e-15)
    assert regression_loss_forward(a, a, form="neg_cos")[0][0] == pytest.approx(-1, abs=1e-15)


def test_bad_options():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="eps_mode"):
        l2_normalize_forward(x, eps_mode="nope")
    with pytest.raises(ValueError, match="form"):
        regression_loss_forward(x, x, form="cosine")


def test_one_dimensional_vectors_have_zero_gradient():
    # p = 1: n(x) = sign(x) away from 0, so the true gradient is exactly 0 (the
    # hypothesis tests start at p = 2, where relative errors mean something).
    x = np.array([[0.3], [-2.0]])
    n, cache = l2_normalize_forward(x)
    np.testing.assert_allclose(n, [[1.0], [-1.0]])
    np.testing.assert_allclose(l2_normalize_backward(np.array([[0.7], [1.3]]), cache), 0, atol=1e-14)


def test_the_loss_backwards_refuse_an_upstream_gradient_unlike_the_forward_output():
    """A 0-d dloss (the mean's gradient, not the per-sample one) would broadcast over the batch,
    a (P,) dn over the rows: each names what it got and what it expected."""
    rng = np.random.default_rng(0)
    p, z = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    _, cache = regression_loss_forward(p, z)
    regression_loss_backward(np.ones((2, 3)), cache)
    for bad, shape in ((np.array(1.0), r"\(\)"), (np.ones((2, 1)), r"\(2, 1\)"), (np.ones((3, 2)), r"\(3, 2\)")):
        with pytest.raises(ValueError, match=rf"regression_loss_backward: dloss has shape {shape}, expected \(2, 3\)"):
            regression_loss_backward(bad, cache)
    with pytest.raises(TypeError, match="regression_loss_backward: dloss has dtype float32, but the forward ran in "
                                        "float64"):
        regression_loss_backward(np.ones((2, 3), np.float32), cache)
    with pytest.raises(TypeError, match="regression_loss_backward: dloss must be an array like the forward's output "
                                        r"\(\(2, 3\), float64\), got float"):
        regression_loss_backward(1.0, cache)
    _, cache = l2_normalize_forward(p)
    for bad in (np.ones(4), np.ones((2, 1, 4)), np.ones((2, 3, 1))):
        with pytest.raises(ValueError, match=r"l2_normalize_backward: dn has shape .*, expected \(2, 3, 4\)"):
            l2_normalize_backward(bad, cache)
    with pytest.raises(TypeError, match="l2_normalize_backward: dn has dtype float32"):
        l2_normalize_backward(p.astype(np.float32), cache)


def test_the_loss_refuses_what_numpy_would_broadcast_or_promote():
    p = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"regression_loss_forward: z has shape \(1, 4\), p \(3, 4\); one target per "
                                         "prediction"):
        regression_loss_forward(p, p[:1])
    with pytest.raises(TypeError, match="regression_loss_forward: z has dtype float32, but p has float64"):
        regression_loss_forward(p, p.astype(np.float32))
    with pytest.raises(TypeError, match="l2_normalize_forward: x must be a float32 or float64 array, got int64"):
        l2_normalize_forward(np.ones((2, 3), dtype=np.int64))


def test_a_normalize_cache_of_the_old_layout_is_refused():
    # The cache once held (x, rstd, drstd/ds): built by position in that order it would give wrong
    # gradients silently; its third field is no boolean mask, and that is named.
    from byol_ref.losses import NormalizeCache

    x = np.array([[0.3, -0.4, 1.2]])
    _, cache = l2_normalize_forward(x)
    old = NormalizeCache(x, cache.rstd, -0.5 * cache.rstd**3)
    with pytest.raises(TypeError, match=r"cache must be the NormalizeCache\(n, rstd, clamped\) .* got a third field "
                                        "of ndarray"):
        l2_normalize_backward(np.ones_like(x), old)


@pytest.mark.parametrize("mode, x, eps", [("sq_norm", [[0.5, 0.0, 0.0]], 0.25), ("norm", [[1.0, 0.0, 0.0]], 1.0)])
def test_l2_normalize_takes_the_clamped_side_at_an_exact_tie(mode, x, eps):
    # docs/derivations.md section 5: at s == eps (sqrt(s) == eps) the derivative of rstd is 0, so dx = rstd dn
    x = np.array(x)
    n, cache = l2_normalize_forward(x, eps=eps, eps_mode=mode)
    assert cache.clamped.all()
    dn = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(l2_normalize_backward(dn, cache), dn * cache.rstd)


def test_regression_loss_dn_refuses_an_upstream_gradient_unlike_the_forward_output():
    p, z = np.random.default_rng(0).standard_normal((2, 3, 4))
    _, cache = regression_loss_forward(p, z)
    for bad in (np.array(1.0), np.ones(1), np.ones((3, 1))):
        with pytest.raises(ValueError, match=r"regression_loss_dn: dloss has shape .*, expected \(3,\)"):
            regression_loss_dn(bad, cache)


@given(seed=seeds, shape=st.sampled_from([(3,), (2, 3), (2, 1, 3)]), p=st.integers(1, 5), form=forms)
def test_regression_loss_dn_gives_both_gradients_by_default_at_any_leading_shape(seed, shape, p, form):
    """dn_p and dn_z by their formulas (the docstring's table), the upstream gradient checked against
    every leading axis, not the first. Found by scripts/mutation_sweep.py: ``need_dz=False`` as the
    default, and a check of ``shape[:1]`` for ``shape[:-1]``, passed every test (all were 2-D)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, *shape, p))
    loss, cache = regression_loss_forward(a, b, form=form)
    g = rng.standard_normal(loss.shape)
    n_p, n_z = cache.n_p, cache.n_z
    want_p = {"mse": 2 * (n_p - n_z), "2-2cos": -2 * n_z, "neg_cos": -n_z}[form] * g[..., None]
    want_z = {"mse": -2 * (n_p - n_z), "2-2cos": -2 * n_p, "neg_cos": -n_p}[form] * g[..., None]
    dn_p, dn_z = regression_loss_dn(g, cache)
    np.testing.assert_allclose(dn_p, want_p, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dn_z, want_z, rtol=1e-14, atol=1e-15)
    assert regression_loss_dn(g, cache, need_dz=False)[1] is None
    for bad in (g[:1], g.reshape(-1)[:shape[0]], g[..., None]):
        if bad.shape == g.shape:
            continue
        says = "regression_loss_dn: dloss has shape .*, expected " + re.escape(str(tuple(shape)))
        with pytest.raises(ValueError, match=says):
            regression_loss_dn(bad, cache)


def test_the_mse_form_is_the_distance_of_the_normalised_vectors_where_they_are_not_unit():
    """"mse" is ||n(p) - n(z)||^2, not 2 - 2 cos: the two differ wherever a normalised vector is not
    unit (a clamped row, or any row under "add"), which is the collapse regime where the conventions
    matter (BYOL_FACTS d1, d3). Hand values: n(0) = 0 in every mode; under "add" with s = eps,
    ||n||^2 = s / (s + eps) = 1/2."""
    z = np.array([[3.0, 4.0]])
    zero = np.zeros((1, 2))
    for mode, unit in (("sq_norm", 1.0), ("norm", 1.0), ("add", 25 / (25 + 1e-8))):  # ||n(z)||^2
        assert regression_loss_forward(zero, z, eps_mode=mode)[0][0] == pytest.approx(unit, rel=1e-14)
        assert regression_loss_forward(zero, z, form="2-2cos", eps_mode=mode)[0][0] == 2.0
        assert regression_loss_forward(zero, z, form="neg_cos", eps_mode=mode)[0][0] == 0.0
    p, q = np.array([[1e-4, 0.0]]), np.array([[0.0, 1e-4]])  # orthogonal, each ||n||^2 = 1/2 under "add"
    assert regression_loss_forward(p, q, eps_mode="add")[0][0] == pytest.approx(1.0, rel=1e-12)
    assert regression_loss_forward(p, q, form="2-2cos", eps_mode="add")[0][0] == pytest.approx(2.0, rel=1e-12)
    assert regression_loss_forward(p, p, eps_mode="add")[0][0] == 0.0
    assert regression_loss_forward(p, p, form="2-2cos", eps_mode="add")[0][0] == pytest.approx(1.0, rel=1e-12)


def test_the_given_eps_normalises_both_sides():
    """eps and eps_mode reach z as well as p. eps = 4 clamps a row of norm 1 in both clamp modes
    (sq_norm: s = 1 <= 4, rstd 1/2; norm: ||x|| = 1 <= 4, rstd 1/4) and not a row of norm 5."""
    big, small = np.array([[3.0, 4.0]]), np.array([[1.0, 0.0]])
    for mode, n_small in (("sq_norm", 0.5), ("norm", 0.25), ("add", 1 / np.sqrt(5.0))):
        n_big = 1 / np.sqrt(1 + 4 / 25) if mode == "add" else 1.0  # ||n(big)||
        cos = 0.6 * n_big * n_small  # n(big) . n(small)
        want = n_big**2 + n_small**2 - 2 * cos
        for p, z in ((big, small), (small, big)):
            assert regression_loss_forward(p, z, eps=4.0, eps_mode=mode)[0][0] == pytest.approx(want, rel=1e-14)


def test_each_modes_default_eps_by_its_clamp_on_a_row_of_norm_1e_minus_10():
    """Defaults (BYOL_FACTS d1): sq_norm clamps ||x||^2 at 1e-12 (||x|| >= 1e-6), norm clamps ||x|| at
    1e-12 (F.normalize), add adds 1e-8 to ||x||^2. A row of norm 1e-10 lies between the clamps."""
    x = np.array([[1e-10, 0.0]])
    want = {"sq_norm": 1e-10 * 1e6, "norm": 1.0, "add": 1e-10 / np.sqrt(1e-20 + 1e-8)}
    for mode, first in want.items():
        n, cache = l2_normalize_forward(x, eps_mode=mode)
        assert n[0, 0] == pytest.approx(first, rel=1e-12) and n[0, 1] == 0
        assert bool(cache.clamped[0, 0]) == (mode == "sq_norm")
    # Each clamp at its value: half as much is clamped, 1.5 times as much is not. Found by
    # scripts/mutation_sweep.py: norm's default doubled (2e-12) passed every test.
    for mode, at in (("sq_norm", 1e-12), ("norm", 1e-12)):
        for factor in (0.5, 1.5):
            value = np.sqrt(factor * at) if mode == "sq_norm" else factor * at  # (sq_norm clamps ||x||^2)
            n, cache = l2_normalize_forward(np.array([[value, 0.0]]), eps_mode=mode)
            assert bool(cache.clamped[0, 0]) == (factor < 1), (mode, factor)
            want = 1.0 if factor > 1 else (np.sqrt(factor) if mode == "sq_norm" else factor)
            assert n[0, 0] == pytest.approx(want, rel=1e-12), (mode, factor)
