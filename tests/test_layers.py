"""Layers: float64 gradient checks (hypothesis draws shapes, seeds, eps, upstream gradients),
identities, a step-by-step "graph" backward as an oracle for the closed forms."""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from byol_ref.gradcheck import grad_error, numerical_gradient
from byol_ref.layers import (RunningStats, affine_backward, affine_forward, batch_norm_backward, batch_norm_forward,
                             group_norm_backward,
                             group_norm_forward, layer_norm_backward, layer_norm_forward, linear_backward,
                             linear_forward, relu_backward, relu_forward, simplex_backward, simplex_forward,
                             update_running_stats, weight_standardize_backward, weight_standardize_forward)
from memory import peak_bytes

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
groups = st.sampled_from([None, 1, 2])


def _shape(g, n, d):
    return (n, d) if g is None else (g, n, d)


def _running(d, rng):
    return RunningStats(rng.standard_normal(d), rng.uniform(0.5, 2, d), np.array(3))


def grad_err(analytic, numeric):
    """Elementwise relative error |a - n| / (|a| + |n|), with the denominator floored at
    1e-4 of the gradient's largest entry: entries that are exactly zero analytically
    (~1e-13 numerically) then pass only if |a - n| < 1e-10 * max|grad|."""
    return grad_error(analytic, numeric)


@given(seed=seeds, g=groups, n=st.integers(1, 5), d=st.integers(1, 5), h=st.integers(1, 5), bias=st.booleans())
def test_linear_gradients(seed, g, n, d, h, bias):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d))
    w = rng.standard_normal((d, h))
    b = rng.standard_normal(h) if bias else None
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = linear_backward(dout, cache)
    assert grad_err(dx, numerical_gradient(lambda x_: linear_forward(x_, w, b)[0], x, dout)) < TOL
    assert grad_err(dw, numerical_gradient(lambda w_: linear_forward(x, w_, b)[0], w, dout)) < TOL
    if bias:
        assert grad_err(db, numerical_gradient(lambda b_: linear_forward(x, w, b_)[0], b, dout)) < TOL
    else:
        assert db is None


@given(seed=seeds, g=groups, n=st.integers(1, 5), d=st.integers(1, 6))
def test_relu_gradient(seed, g, n, d):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d))
    assume(np.abs(x).min() > 1e-3)  # the kink is not differentiable
    out, cache = relu_forward(x)
    dout = rng.standard_normal(out.shape)
    dx = relu_backward(dout, cache)
    assert grad_err(dx, numerical_gradient(lambda x_: relu_forward(x_)[0], x, dout)) < TOL


# n >= 3: with two samples a normalised feature is always (-1, +1) up to eps, so its
# true gradient is O(eps) and a finite difference cannot resolve it to 1e-6 relative.
bn_hyper = dict(seed=seeds, g=groups, n=st.integers(3, 6), d=st.integers(1, 5),
                eps=st.sampled_from([1e-5, 1e-3, 0.1]), var_formula=st.sampled_from(["two_pass", "one_pass"]))


@given(**bn_hyper)
def test_batch_norm_train_gradients(seed, g, n, d, eps, var_formula):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d)) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
    # Near-constant features (std << |mean|) make the *finite difference* ill-conditioned
    # (the one-pass variance cancels), not the analytic gradient: keep the check meaningful.
    assume(x.std(axis=-2).min() > 0.1 * max(1.0, np.abs(x.mean(axis=-2)).max()))
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    running = _running(d, rng)

    def f(x_, gamma_, beta_):
        return batch_norm_forward(x_, gamma_, beta_, running, train=True, eps=eps, var_formula=var_formula)[0]

    out, cache, _ = batch_norm_forward(x, gamma, beta, running, train=True, eps=eps, var_formula=var_formula)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = batch_norm_backward(dout, cache)
    assert grad_err(dx, numerical_gradient(lambda x_: f(x_, gamma, beta), x, dout)) < TOL
    assert grad_err(dgamma, numerical_gradient(lambda g_: f(x, g_, beta), gamma, dout)) < TOL
    assert grad_err(dbeta, numerical_gradient(lambda b_: f(x, gamma, b_), beta, dout)) < TOL


@given(seed=seeds, g=groups, n=st.integers(1, 5), d=st.integers(1, 5), eps=st.sampled_from([1e-5, 0.1]))
def test_batch_norm_eval_gradients(seed, g, n, d, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d))
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    running = _running(d, rng)
    out, cache, new_running = batch_norm_forward(x, gamma, beta, running, train=False, eps=eps)
    assert new_running is running
    scaled = gamma * (x - running.mean) / np.sqrt(running.var + eps)
    # atol at the size of the two terms: where they cancel (out ~ 1e-4, seed-dependent) the two
    # orders of operations differ by an ulp of the terms, not of out
    np.testing.assert_allclose(out, scaled + beta, rtol=1e-12, atol=1e-12 * (np.abs(scaled).max() + np.abs(beta).max()))
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = batch_norm_backward(dout, cache)
    f = lambda x_: batch_norm_forward(x_, gamma, beta, running, train=False, eps=eps)[0]  # noqa: E731
    assert grad_err(dx, numerical_gradient(f, x, dout)) < TOL


var_formulas = st.sampled_from(["two_pass", "one_pass"])


# d >= 3 for the same reason as batch norm's n >= 3 (two features normalise to -1, +1).
@given(seed=seeds, g=groups, n=st.integers(1, 5), d=st.integers(3, 6), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       var=var_formulas)
def test_layer_norm_gradients(seed, g, n, d, eps, var):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d)) * 2 + 1
    assume(x.std(axis=-1).min() > 0.1 * max(1.0, np.abs(x.mean(axis=-1)).max()))
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)

    def f(x_, g_=gamma, b_=beta):
        return layer_norm_forward(x_, g_, b_, eps=eps, var_formula=var)[0]

    out, cache = layer_norm_forward(x, gamma, beta, eps=eps, var_formula=var)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = layer_norm_backward(dout, cache)
    assert grad_err(dx, numerical_gradient(f, x, dout)) < TOL
    assert grad_err(dgamma, numerical_gradient(lambda g_: f(x, g_), gamma, dout)) < TOL
    assert grad_err(dbeta, numerical_gradient(lambda b_: f(x, gamma, b_), beta, dout)) < TOL


@given(seed=seeds, g=groups, n=st.integers(1, 4), n_groups=st.integers(1, 4), size=st.integers(3, 5),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]), var=var_formulas)
def test_group_norm_gradients(seed, g, n, n_groups, size, eps, var):
    """Each sample's feature groups (size >= 3, as layer norm's d >= 3) normalised on their own."""
    rng = np.random.default_rng(seed)
    d = n_groups * size
    x = rng.standard_normal(_shape(g, n, d)) * 2 + 1
    xg = x.reshape(*x.shape[:-1], n_groups, size)
    assume(xg.std(axis=-1).min() > 0.1 * max(1.0, np.abs(xg.mean(axis=-1)).max()))
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    out, cache = group_norm_forward(x, gamma, beta, groups=n_groups, eps=eps, var_formula=var)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = group_norm_backward(dout, cache)
    assert dx.shape == x.shape and dgamma.shape == dbeta.shape == (d,)

    def f(x_, g_=gamma, b_=beta):
        return group_norm_forward(x_, g_, b_, groups=n_groups, eps=eps, var_formula=var)[0]

    assert grad_err(dx, numerical_gradient(f, x, dout)) < TOL
    assert grad_err(dgamma, numerical_gradient(lambda g_: f(x, g_), gamma, dout)) < TOL
    assert grad_err(dbeta, numerical_gradient(lambda b_: f(x, gamma, b_), beta, dout)) < TOL
    # Each group is a layer norm of its own slice (gamma and beta sliced alike), bitwise.
    for k in range(n_groups):
        sl = slice(k * size, (k + 1) * size)
        want, _ = layer_norm_forward(x[..., sl], gamma[sl], beta[sl], eps=eps, var_formula=var)
        np.testing.assert_array_equal(out[..., sl], want)


def test_layer_norm_variance_formulas():
    """'one_pass' is E[x^2] - mean^2 as Axon's ``mean_and_variance`` computes it in some versions, 'two_pass'
    mean((x - mean)^2) (``Nx.variance``): equal in exact arithmetic, far apart in float32 once the mean
    dwarfs the spread. Group norm passes the choice on."""
    rng = np.random.default_rng(0)
    x = (1000 + 0.05 * rng.standard_normal((4, 8))).astype(np.float32)
    ones, zeros = np.ones(8, np.float32), np.zeros(8, np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    for var, want in (("one_pass", (x * x).mean(axis=-1, keepdims=True) - mean * mean),
                      ("two_pass", ((x - mean) ** 2).mean(axis=-1, keepdims=True))):
        out, cache = layer_norm_forward(x, ones, zeros, eps=1e-5, var_formula=var)
        np.testing.assert_array_equal(cache.rstd, 1 / np.sqrt(np.maximum(want, 0) + np.float32(1e-5)))
        g_out, _ = group_norm_forward(x, ones, zeros, groups=1, eps=1e-5, var_formula=var)
        np.testing.assert_array_equal(g_out, out)
    one = layer_norm_forward(x, ones, zeros, var_formula="one_pass")[0]
    two = layer_norm_forward(x, ones, zeros, var_formula="two_pass")[0]
    assert np.abs(one - two).max() > 0.1  # cancellation: the float32 one-pass variance is off by far
    x64, ones64, zeros64 = x.astype(np.float64), ones.astype(np.float64), zeros.astype(np.float64)
    np.testing.assert_allclose(layer_norm_forward(x64, ones64, zeros64, var_formula="one_pass")[0],
                               layer_norm_forward(x64, ones64, zeros64, var_formula="two_pass")[0], atol=1e-6)
    # the default of both, for a direct caller, is the two-pass formula (Config.ln_var's default)
    np.testing.assert_array_equal(layer_norm_forward(x, ones, zeros)[0], two)
    np.testing.assert_array_equal(group_norm_forward(x, ones, zeros, groups=2)[0],
                                  group_norm_forward(x, ones, zeros, groups=2, var_formula="two_pass")[0])
    assert not np.array_equal(group_norm_forward(x, ones, zeros, groups=2)[0],
                              group_norm_forward(x, ones, zeros, groups=2, var_formula="one_pass")[0])
    with pytest.raises(ValueError, match="var_formula must be 'two_pass' or 'one_pass'"):
        layer_norm_forward(x, ones, zeros, var_formula="welford")


@given(seed=seeds, g=groups, n=st.integers(1, 4), d=st.integers(1, 6))
def test_affine_gradients(seed, g, n, d):
    """gamma * x + beta per feature; dgamma and dbeta summed over samples and stacked views."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d)) * 2 + 1
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    out, cache = affine_forward(x, gamma, beta)
    np.testing.assert_allclose(out, x * gamma + beta, rtol=1e-15)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = affine_backward(dout, cache)
    assert dx.shape == x.shape and dgamma.shape == dbeta.shape == (d,)
    assert grad_err(dx, numerical_gradient(lambda x_: affine_forward(x_, gamma, beta)[0], x, dout)) < TOL
    assert grad_err(dgamma, numerical_gradient(lambda g_: affine_forward(x, g_, beta)[0], gamma, dout)) < TOL
    assert grad_err(dbeta, numerical_gradient(lambda b_: affine_forward(x, gamma, b_)[0], beta, dout)) < TOL


@given(seed=seeds, g=groups, n=st.integers(1, 4), simplices=st.integers(1, 3), v=st.integers(2, 5),
       temperature=st.sampled_from([0.05, 0.1, 1.0, 3.0]), scale=st.sampled_from([0.3, 1.0, 2.5]))
def test_simplex_gradients(seed, g, n, simplices, v, temperature, scale):
    """Softmax over each group of V features at temperature tau (byol-pytorch's SEM). The logits
    x / tau are drawn with spread ``scale``: a saturated group (one probability ~1) has a gradient
    below the finite differences' rounding, which checks nothing (STYLE.md 13)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, simplices * v)) * scale * temperature
    out, cache = simplex_forward(x, simplex_dim=v, temperature=temperature)
    assume(out.min() > 1e-4)
    groups_ = out.reshape(*x.shape[:-1], simplices, v)
    np.testing.assert_allclose(groups_.sum(axis=-1), 1.0, rtol=1e-14)  # on the simplex
    e = np.exp(x.reshape(groups_.shape) / temperature)  # the formula itself (no overflow at these sizes)
    np.testing.assert_allclose(groups_, e / e.sum(axis=-1, keepdims=True), rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = simplex_backward(dout, cache)
    assert dx.shape == x.shape
    f = lambda x_: simplex_forward(x_, simplex_dim=v, temperature=temperature)[0]  # noqa: E731
    # The step is scaled with tau, as the logits are x / tau. Measured over 3,364 draws, the worst
    # error falls as 1/h (rounding: 2.9e-6 at h = 1e-5 tau, over TOL; 3.2e-7 at 1e-4 tau; 9.4e-9 at
    # 1e-3 tau), while the truncation, ~(h / tau)^4 / 30, stays below 1e-13.
    assert grad_err(dx, numerical_gradient(f, x, dout, h=1e-3 * temperature)) < TOL
    np.testing.assert_allclose(dx.reshape(groups_.shape).sum(axis=-1), 0.0, atol=1e-12 * np.abs(dx).max())


def test_simplex_is_shift_invariant_per_group_and_does_not_overflow():
    x = np.array([[1000.0, 1001.0, -5.0, -4.0]])  # exp(1000 / 0.1) overflows without the max shift
    out, _ = simplex_forward(x, simplex_dim=2, temperature=0.1)
    same, _ = simplex_forward(x - np.array([[1000.0, 1000.0, -5.0, -5.0]]), simplex_dim=2, temperature=0.1)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, same, rtol=1e-15)
    with pytest.raises(ValueError, match="simplex_dim=3 must divide the 4 features"):
        simplex_forward(x, simplex_dim=3, temperature=0.1)
    for kw, message in ((dict(simplex_dim=0, temperature=0.1), "simplex_dim must be an int >= 1, got 0"),
                        (dict(simplex_dim=True, temperature=0.1), "simplex_dim must be an int >= 1, got True"),
                        (dict(simplex_dim=2, temperature=0.0), r"temperature must be in \(0, inf\), got 0.0"),
                        (dict(simplex_dim=2, temperature=-1.0), "temperature must be in"),
                        (dict(simplex_dim=2, temperature="0.1"), "temperature must be a real number")):
        with pytest.raises((ValueError, TypeError), match=message):
            simplex_forward(x, **kw)
    # V = 1: every output is 1 and no gradient passes (the case the gradient check above leaves out).
    ones, cache = simplex_forward(x, simplex_dim=1, temperature=0.1)
    assert (ones == 1).all() and (simplex_backward(np.ones_like(x), cache) == 0).all()


def test_group_norm_refuses_groups_that_do_not_divide_the_features():
    x, p = np.ones((2, 6)), np.ones(6)
    for bad in (4, 0, 2.0, True):
        with pytest.raises(ValueError, match="groups must be a positive int dividing the 6 features"):
            group_norm_forward(x, p, p, groups=bad)


@given(seed=seeds, d=st.integers(3, 7), h=st.integers(1, 4), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       scale=st.sampled_from([0.05, 1.0, 20.0]))
def test_weight_standardization_gradients(seed, d, h, eps, scale):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, h)) * scale + rng.standard_normal(h)
    assume(w.std(axis=0).min() > 0.1 * scale)
    w_hat, cache = weight_standardize_forward(w, eps=eps)
    var = w.var(axis=0)
    np.testing.assert_allclose(w_hat.mean(axis=0), 0.0, atol=1e-12)  # per output unit: centred,
    np.testing.assert_allclose(w_hat.var(axis=0), var / (var + eps), rtol=1e-10)  # unit variance up to eps
    dw_hat = rng.standard_normal(w.shape)
    dw = weight_standardize_backward(dw_hat, cache)
    num = numerical_gradient(lambda w_: weight_standardize_forward(w_, eps=eps)[0], w, dw_hat, h=1e-4 * scale)
    assert grad_err(dw, num) < TOL
    # Shifting a column changes nothing (its mean is subtracted): dw sums to 0 over each column.
    np.testing.assert_allclose(dw.sum(axis=0), 0.0, atol=1e-10 * np.abs(dw).max())


# ----------------------------------------------------------------- graph-backward oracle


def graph_norm_backward(dout, x, gamma, eps, axis):
    """Step-by-step backward through mean -> centre -> var -> rstd -> x_hat -> affine
    (makemore part 4 / CS231n batchnorm_backward): independent of the closed form."""
    m = x.shape[axis]
    mean = x.mean(axis=axis, keepdims=True)
    xc = x - mean
    var = (xc**2).mean(axis=axis, keepdims=True)
    std = np.sqrt(var + eps)
    rstd = 1 / std
    x_hat = xc * rstd
    dx_hat = dout * gamma
    drstd = (dx_hat * xc).sum(axis=axis, keepdims=True)
    dxc = dx_hat * rstd
    dstd = -drstd / std**2
    dvar = dstd * 0.5 / std
    dxc = dxc + 2 * xc / m * dvar
    dmean = -dxc.sum(axis=axis, keepdims=True)
    dx = dxc + dmean / m
    red = tuple(range(dout.ndim - 1))
    return dx, (dout * x_hat).sum(axis=red), dout.sum(axis=red)


@given(seed=seeds, g=groups, n=st.integers(2, 8), d=st.integers(2, 6), eps=st.sampled_from([1e-5, 0.1]))
def test_closed_forms_match_graph_backward(seed, g, n, d, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d))
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    dout = rng.standard_normal(x.shape)
    out, cache, _ = batch_norm_forward(x, gamma, beta, _running(d, rng), train=True, eps=eps)
    for got, want in zip(batch_norm_backward(dout, cache), graph_norm_backward(dout, x, gamma, eps, -2)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    out, cache = layer_norm_forward(x, gamma, beta, eps=eps)
    for got, want in zip(layer_norm_backward(dout, cache), graph_norm_backward(dout, x, gamma, eps, -1)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------- identities


@given(seed=seeds, g=groups, n=st.integers(2, 16), d=st.integers(1, 6))
def test_batch_norm_identities(seed, g, n, d):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_shape(g, n, d)) * 3 + 5
    assume(x.std(axis=-2).min() > 0.05)
    ones, zeros = np.ones(d), np.zeros(d)
    # eps = 0: the identities below are exact only then. With eps the second is off by
    # rstd * sum(dout x_hat) * eps / (var + eps), which is 1e-8 at eps = 1e-12 for seed 607, n = 2.
    out, cache, _ = batch_norm_forward(x, ones, zeros, _running(d, rng), train=True, eps=0.0)
    np.testing.assert_allclose(out.mean(axis=-2), 0, atol=1e-10)
    np.testing.assert_allclose(out.var(axis=-2), 1, atol=1e-8)  # biased variance
    dout = rng.standard_normal(x.shape)
    dx, _, _ = batch_norm_backward(dout, cache)
    # shifting every sample of a feature by c leaves the output unchanged: dx sums to 0 over the batch
    np.testing.assert_allclose(dx.sum(axis=-2), 0, atol=1e-9)
    # and scaling a feature's batch leaves it unchanged too: sum(dx * x_hat) = 0
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=-2), 0, atol=1e-8)


def test_batch_norm_dout_ones_gives_zero_dx_so_tests_must_not_use_it():
    # Why upstream gradients are always random: with dout = 1 the true dx is exactly 0.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    out, cache, _ = batch_norm_forward(x, np.ones(3), np.zeros(3), _running(3, rng), train=True)
    dx, _, _ = batch_norm_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-12)


def test_running_stats_haiku_is_zero_debiased():
    rng = np.random.default_rng(1)
    d, decay = 4, 0.9
    running = RunningStats(np.zeros(d), np.ones(d), np.array(0))
    h_mean, h_var = np.zeros(d), np.zeros(d)
    for t in range(1, 6):
        m, v = rng.standard_normal(d), rng.uniform(0.1, 2, d)
        running = update_running_stats(running, m, v, 8, decay=decay, mode="haiku")
        h_mean = decay * h_mean + (1 - decay) * m
        h_var = decay * h_var + (1 - decay) * v
        np.testing.assert_allclose(running.mean, h_mean / (1 - decay**t), rtol=1e-12)
        np.testing.assert_allclose(running.var, h_var / (1 - decay**t), rtol=1e-12)
        assert int(running.count) == t
        if t == 1:  # the first debiased value is the batch value itself
            np.testing.assert_allclose(running.mean, m, rtol=1e-12)


def test_running_stats_torch_is_unbiased_and_not_debiased():
    m, v = np.array([1.0, -2.0]), np.array([0.5, 2.0])
    r = update_running_stats(RunningStats(np.zeros(2), np.ones(2), np.array(0)), m, v, 5, decay=0.9, mode="torch")
    np.testing.assert_allclose(r.mean, 0.1 * m, rtol=1e-12)
    np.testing.assert_allclose(r.var, 0.9 + 0.1 * v * 5 / 4, rtol=1e-12)


def test_two_views_update_running_stats_twice_in_order():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 3))
    start = RunningStats(np.zeros(3), np.ones(3), np.array(0))
    _, _, r_both = batch_norm_forward(x, np.ones(3), np.zeros(3), start, train=True, mode="torch")
    _, _, r1 = batch_norm_forward(x[0], np.ones(3), np.zeros(3), start, train=True, mode="torch")
    _, _, r2 = batch_norm_forward(x[1], np.ones(3), np.zeros(3), r1, train=True, mode="torch")
    np.testing.assert_allclose(r_both.mean, r2.mean, rtol=1e-12)
    np.testing.assert_allclose(r_both.var, r2.var, rtol=1e-12)
    assert int(r_both.count) == 2


def test_per_view_statistics_are_separate():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3))
    x[1] += 10  # a shifted second view
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    run = RunningStats(np.zeros(3), np.ones(3), np.array(0))
    out, _, _ = batch_norm_forward(x, g, b, run, train=True)
    for v in range(2):
        np.testing.assert_allclose(out[v], batch_norm_forward(x[v], g, b, run, train=True)[0], rtol=1e-12)


def test_one_pass_variance_matches_two_pass_in_float64():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 4))
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    run = RunningStats(np.zeros(4), np.ones(4), np.array(0))
    a = batch_norm_forward(x, g, b, run, train=True, var_formula="one_pass")[0]
    c = batch_norm_forward(x, g, b, run, train=True, var_formula="two_pass")[0]
    np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)


def test_one_pass_variance_is_clamped_where_float32_cancels():
    """E[x^2] - mean^2 of a float32 feature with |mean| >> std cancels, and can come out negative
    (six rows of 1000.1 give -0.125 unclamped): var + eps would then be negative and the output
    NaN. The clamp at 0 keeps it finite (the constant feature normalises to beta)."""
    x = np.stack([np.full(6, 1000.1), np.linspace(-1, 1, 6)], axis=1).astype("float32")  # (6, 2)
    xs = x.astype("float64")
    assert ((x * x).mean(axis=0) - x.mean(axis=0) ** 2)[0] < 0  # the cancellation is real
    g, b = np.ones(2, "float32"), np.array([0.5, 0.0], "float32")
    run = RunningStats(np.zeros(2, "float32"), np.ones(2, "float32"), np.array(0))
    out, _, new = batch_norm_forward(x, g, b, run, train=True, var_formula="one_pass")
    assert np.isfinite(out).all() and (new.var >= 0).all()
    # x - mean is float32 rounding there (~6e-5), scaled by 1/sqrt(eps) ~ 316: near beta, not exact
    np.testing.assert_allclose(out[:, 0], 0.5, atol=0.05)
    np.testing.assert_allclose(out[:, 1], (xs[:, 1] - xs[:, 1].mean()) / np.sqrt(xs[:, 1].var() + 1e-5), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layers_keep_dtype_and_never_alias_or_mutate(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3)).astype(dtype)
    w = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    g, be = np.ones(5, dtype), np.zeros(5, dtype)
    run = RunningStats(np.zeros(5, dtype), np.ones(5, dtype), np.array(0))
    saved = [a.copy() for a in (x, w, b)]
    h, c1 = linear_forward(x, w, b)
    y, c2, run2 = batch_norm_forward(h, g, be, run, train=True)
    r, c3 = relu_forward(y)
    ln, c4 = layer_norm_forward(r, g, be)
    dout = rng.standard_normal(ln.shape).astype(dtype)
    d4 = layer_norm_backward(dout, c4)
    d3 = relu_backward(d4[0], c3)
    d2 = batch_norm_backward(d3, c2)
    d1 = linear_backward(d2[0], c1)
    for a in (h, y, r, ln, run2.mean, run2.var, *d4, d3, *d2, *d1):
        assert a.dtype == dtype
    for a, s in zip((x, w, b), saved):
        np.testing.assert_array_equal(a, s)
    for grad in (*d1, *d2, d3, *d4):
        for inp in (x, w, b, g, be, dout):
            assert not np.shares_memory(grad, inp)


@given(seed=seeds, g=st.sampled_from([1, 2]), n=st.integers(2, 6), d=st.integers(1, 4),
       decay=st.floats(0.0, 0.999), mode=st.sampled_from(["haiku", "torch"]), t0=st.integers(0, 5))
def test_running_stats_updates_follow_their_formulas(seed, g, n, d, decay, mode, t0):
    """Hypothesis draws the momentum (decay), the mode, the starting count and the groups;
    each group's update is checked against a from-scratch formula."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g, n, d))
    start = RunningStats(rng.standard_normal(d), rng.uniform(0.5, 2, d), np.array(t0))
    _, _, got = batch_norm_forward(x, np.ones(d), np.zeros(d), start, train=True, decay=decay, mode=mode)
    mean, var, t = start.mean.copy(), start.var.copy(), t0
    for v in range(g):
        m, s2 = x[v].mean(0), x[v].var(0)
        t += 1
        if mode == "torch":
            mean = decay * mean + (1 - decay) * m
            var = decay * var + (1 - decay) * s2 * n / (n - 1)
        else:  # recover the hidden zero-initialised EMA, update it, debias again
            h_mean, h_var = mean * (1 - decay ** (t - 1)), var * (1 - decay ** (t - 1))
            mean = (decay * h_mean + (1 - decay) * m) / (1 - decay**t)
            var = (decay * h_var + (1 - decay) * s2) / (1 - decay**t)
    np.testing.assert_allclose(got.mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.var, var, rtol=1e-10, atol=1e-12)
    assert int(got.count) == t0 + g


def test_the_ops_refuse_what_numpy_would_take_without_a_word():
    """Called directly (as docs/step-by-hand.md does), an op checks the shapes and dtypes of its
    operands: NumPy would broadcast a wrong shape, promote a mixed dtype, or normalise a single
    row to beta. Only metadata is read (no device synchronisation)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    ones, zeros = np.ones(3), np.zeros(3)
    run = _running(3, rng)
    for call, err, says in (
            (lambda: linear_forward(x, np.ones((3, 2), np.float32)), TypeError,
             "linear_forward: w has dtype float32, but x has float64; byol_ref never mixes dtypes"),
            (lambda: linear_forward(x, np.ones((5, 2))), ValueError,
             r"w must be a \(3, H\) array for x of shape \(4, 3\), got \(5, 2\)"),
            (lambda: linear_forward(x, np.ones((3, 2)), np.ones(3)), ValueError,
             r"linear_forward: b must be a \(2,\) array, got \(3,\)"),
            (lambda: affine_forward(x, 2.0, zeros), TypeError,
             "affine_forward: gamma must be an array in x's dtype float64, got float"),
            (lambda: linear_forward(x.astype(int), np.ones((3, 2))), TypeError,
             "linear_forward: x must be a float32 or float64 array, got int64"),
            (lambda: batch_norm_forward(x[:1], ones, zeros, run, train=True), ValueError,
             r"training needs batch statistics over at least 2 rows, x has shape \(1, 3\)"),
            (lambda: batch_norm_forward(x, ones, zeros, run, train="no"), TypeError,
             "train must be True or False, got 'no'"),
            (lambda: batch_norm_forward(x, ones.astype(np.float32), zeros, run, train=True), TypeError,
             "batch_norm_forward: gamma has dtype float32, but x has float64"),
            (lambda: batch_norm_forward(x, np.ones((4, 3)), zeros, run, train=True), ValueError,
             r"batch_norm_forward: gamma has shape \(4, 3\), expected \(3,\)"),
            (lambda: batch_norm_forward(x, ones, zeros, run, train=True, eps=-1.0), ValueError, "eps must be in"),
            # (-1 was a slice: every group but the last updated the running statistics)
            (lambda: batch_norm_forward(x, ones, zeros, run, train=True, running_groups=-1), ValueError,
             "running_groups must be an int >= 0, got -1"),
            (lambda: batch_norm_forward(x, ones, zeros, run, train=True, running_groups=1.5), TypeError,
             r"running_groups must be an int >= 0, got 1.5 \(float\)"),
            (lambda: batch_norm_forward(x, ones, zeros, run, train=True, running_groups=2), ValueError,
             r"running_groups=2, but x of shape \(4, 3\) has 1 group\(s\); expected None \(all\) or 0 to 1"),
            (lambda: batch_norm_forward(x, ones, zeros, run, train=True, decay=1.5), ValueError,
             r"decay must be in \[0, 1\)"),
            (lambda: update_running_stats(run, zeros, ones, 1, decay=0.9, mode="torch"), ValueError,
             "the unbiased variance needs n >= 2 samples, got n=1"),
            (lambda: update_running_stats(run, zeros, ones, 4, decay=1.0, mode="haiku"), ValueError,
             r"decay must be in \[0, 1\)"),
            (lambda: layer_norm_forward(x, np.ones(4), zeros), ValueError,
             r"layer_norm_forward: gamma has shape \(4,\), expected \(3,\)"),
            (lambda: group_norm_forward(x, ones, zeros.astype(np.float32), groups=1), TypeError,
             "group_norm_forward: beta has dtype float32"),
            (lambda: affine_forward(x, ones, np.zeros(1)), ValueError,
             r"affine_forward: beta has shape \(1,\), expected \(3,\)"),
            (lambda: simplex_forward(x.astype(int), simplex_dim=3, temperature=1.0), TypeError,
             "simplex_forward: x must be a float32 or float64 array"),
            (lambda: weight_standardize_forward(np.ones(5)), ValueError,
             r"weight_standardize_forward: w must be a \(D, H\) weight, got shape \(5,\)"),
            (lambda: weight_standardize_forward(np.ones((1, 3))), ValueError,  # (it was silently all zeros)
             r"w must have D >= 2 inputs per column, got shape \(1, 3\); a single weight standardises to 0")):
        with pytest.raises(err, match=says):
            call()
    # what is right still works: NumPy integers as sizes, eps = 0 (the exact formula), float32 throughout
    group_norm_forward(x, ones, zeros, groups=np.int64(3))
    batch_norm_forward(x, ones, zeros, run, train=True, eps=0.0)
    x32 = x.astype(np.float32)
    assert linear_forward(x32, np.ones((3, 2), np.float32), np.zeros(2, np.float32))[0].dtype == np.float32


def test_every_backward_refuses_an_upstream_gradient_unlike_the_forward_output():
    """A (N, 1) or (F,) upstream gradient would broadcast against the cache, and a float32 one
    against a float64 forward be promoted: each backward would return a gradient of the right
    shape for another function. Each backward names the op, what it got and what it expected."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6))  # (G, N, F)
    ones, zeros = np.ones(6), np.zeros(6)
    for _, backward, cache, good in _pairs(x, rng):  # (good: shaped like the forward's output)
        op, shape = backward.__name__, good.shape
        name = "dw_hat" if op.startswith("weight") else "dout"
        backward(good, cache)  # the right one is taken
        for bad in (good[..., :1], good[..., :1, :], good[0], good.T):
            if bad.shape == shape:
                continue
            says = f"{op}: {name} has shape {bad.shape}, expected {shape} (the forward's output's)"
            with pytest.raises(ValueError, match=re.escape(says)):
                backward(bad, cache)
        with pytest.raises(TypeError, match=f"{op}: {name} has dtype float32, but the forward ran in float64"):
            backward(good.astype(np.float32), cache)
        for not_array in (good.tolist(), memoryview(good)):  # (a memoryview has a shape, but no dtype)
            with pytest.raises(TypeError, match=f"{op}: {name} must be an array like the forward's output"):
                backward(not_array, cache)
    no_cache = batch_norm_forward(x, ones, zeros, _running(6, rng), train=True, need_cache=False)[1]
    with pytest.raises(ValueError, match="batch_norm_backward: cache is None, from a forward run with "
                                         "need_cache=False"):
        batch_norm_backward(x, no_cache)


def test_what_the_mutation_audit_found_no_test_for_in_the_ops():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    ones, zeros = np.ones(6), np.zeros(6)
    with pytest.raises(ValueError, match=r"training needs batch statistics over at least 2 rows, x has shape \(6,\)"):
        batch_norm_forward(x[0], ones, zeros, _running(6, rng), train=True)
    stale = RunningStats(np.zeros(6), np.ones(6, np.float32), np.array(3))  # read in evaluation too
    with pytest.raises(TypeError, match="running_var has dtype float32, but x has float64"):
        batch_norm_forward(x, ones, zeros, stale, train=False)
    layer_norm_forward(x, ones, zeros, eps=0.0)  # eps = 0 is the exact formula, as in batch norm
    weight_standardize_forward(x, eps=0.0)
    for w in (x.astype(np.int64), x.astype(np.float16)):
        with pytest.raises(TypeError, match="weight_standardize_forward: w must be a float32 or float64 array"):
            weight_standardize_forward(w)
    for gamma, beta in ((np.array(2.0), np.array(0.0)), (np.ones((4, 6)), np.zeros((4, 6)))):  # would broadcast
        with pytest.raises(ValueError, match=r"layer_norm_forward: gamma has shape .*, expected \(6,\) \(the trailing "
                                             r"axis of x, shape \(4, 6\)\)"):
            layer_norm_forward(x, gamma, beta)
    out, _ = layer_norm_forward(x.reshape(4, 2, 3), np.ones((2, 3)), np.zeros((2, 3)))  # group norm's grouped view
    np.testing.assert_array_equal(out.reshape(4, 6), group_norm_forward(x, ones, zeros, groups=2)[0])


def _pairs(x, rng):
    """(name, backward, cache, upstream gradient) for every op, run forward on x (G, N, F) with F even;
    the upstream gradient is shaped like the forward's output."""
    f = x.shape[-1]
    gamma, beta = rng.standard_normal(f), rng.standard_normal(f)
    run = _running(f, rng)
    forwards = {
        "linear": (linear_backward, linear_forward(x, rng.standard_normal((f, 3)), rng.standard_normal(3))),
        "relu": (relu_backward, relu_forward(x)),
        "batch_norm train": (batch_norm_backward, batch_norm_forward(x, gamma, beta, run, train=True)[:2]),
        "batch_norm eval": (batch_norm_backward, batch_norm_forward(x, gamma, beta, run, train=False)[:2]),
        "layer_norm": (layer_norm_backward, layer_norm_forward(x, gamma, beta)),
        "group_norm": (group_norm_backward, group_norm_forward(x, gamma, beta, groups=2)),
        "affine": (affine_backward, affine_forward(x, gamma, beta)),
        "simplex": (simplex_backward, simplex_forward(x, simplex_dim=2, temperature=0.7)),
        "weight_standardize": (weight_standardize_backward, weight_standardize_forward(x[0])),
    }
    return [(name, backward, cache, rng.standard_normal(out.shape))
            for name, (backward, (out, cache)) in forwards.items()]


def test_no_backward_overwrites_its_upstream_gradient_or_its_cache_by_default():
    """STYLE 14: inputs are never mutated. A backward called without ``inplace`` leaves dout and every
    array of its cache as they were, returns nothing that shares their memory, and so gives the same
    gradients when called again (BYOL's step runs each backward once, but a user checking gradients
    calls it many times). Found by scripts/mutation_sweep.py: relu_backward with ``inplace=True`` as its
    default overwrote dout, and no test saw it (the dtype test above checks the forward inputs only)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4))
    for name, backward, cache, dout in _pairs(x, rng):
        saved = dout.copy(), [a.copy() if isinstance(a, np.ndarray) else a for a in cache]
        first = backward(dout, cache)
        np.testing.assert_array_equal(dout, saved[0], err_msg=f"{name}: dout was overwritten")
        for field, a, s in zip(cache._fields, cache, saved[1]):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, s, err_msg=f"{name}: the cache's {field} was overwritten")
        first = first if isinstance(first, tuple) else (first,)
        for grad in first:
            assert not np.shares_memory(grad, dout), f"{name}: a gradient shares dout's memory"
            assert not any(np.shares_memory(grad, a) for a in cache if isinstance(a, np.ndarray)), name
        again = backward(dout, cache)
        for g1, g2 in zip(first, again if isinstance(again, tuple) else (again,)):
            np.testing.assert_array_equal(g1, g2, err_msg=f"{name}: a second call gave other gradients")


def test_the_per_feature_ops_refuse_a_gamma_per_sample():
    """Batch norm, group norm and the affine layer scale each feature: a (N, F) gamma, which matches
    x's trailing axes and would broadcast, is refused by name (layer norm's case is in the test above).
    Found by scripts/mutation_sweep.py: with ``per_feature`` dropped from their checks every test passed."""
    rng = np.random.default_rng(2)
    for shape in ((4, 6), (2, 4, 6)):
        x = rng.standard_normal(shape)
        calls = {
            "batch_norm_forward": lambda g, b: batch_norm_forward(x, g, b, _running(6, rng), train=True),
            "group_norm_forward": lambda g, b: group_norm_forward(x, g, b, groups=2),
            "affine_forward": lambda g, b: affine_forward(x, g, b),
        }
        for op, call in calls.items():
            says = f"{op}: gamma has shape (4, 6), expected (6,) (the trailing axis of x, shape {shape})"
            with pytest.raises(ValueError, match=re.escape(says)):
                call(np.ones((4, 6)), np.zeros(6))
            call(np.ones(6), np.zeros(6))  # (the right one is taken)


@pytest.mark.parametrize("var_formula", ["two_pass", "one_pass"])
@pytest.mark.parametrize("inplace", [False, True])
def test_batch_norm_training_forward_allocates_only_out_and_x_hat(inplace, var_formula):
    """The train forward's activation-sized allocations: the squares' buffer (later out) and x - mean
    (later x_hat, normalised where it lies); with ``inplace`` x itself holds x_hat. So the peak is 2 arrays
    the size of x, or 1 in place, and a third is a regression of the memory the step's peak is counted
    from (tests/test_bench_smoke.py). A count of bytes (tracemalloc sees every NumPy allocation), not a time.
    Found by scripts/mutation_sweep.py: normalising the centred copy into a new array passed every test."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 256, 128))
    gamma, beta, run = rng.standard_normal(128), rng.standard_normal(128), _running(128, rng)
    work = x.copy()
    batch_norm_forward(x[:, :2, :2], gamma[:2], beta[:2], RunningStats(*(a[:2] for a in run[:2]), run.count),
                       train=True)  # (a first call imports what the input checks use, numpy.ma: not the op's memory)
    (out, cache, _), peak = peak_bytes(
        lambda: batch_norm_forward(work, gamma, beta, run, train=True, inplace=inplace, var_formula=var_formula))
    arrays = 1 if inplace else 2
    assert arrays * x.nbytes <= peak < (arrays + 0.25) * x.nbytes, (peak / x.nbytes, arrays)
    want = batch_norm_forward(x, gamma, beta, run, train=True, var_formula=var_formula)[0]
    np.testing.assert_array_equal(out, want)


def test_a_0d_input_a_missing_parameter_and_bad_running_stats_are_named():
    """Found by an API audit: a 0-d x was an IndexError (linear, simplex) or read as one feature
    (l2 normalisation), a None gamma an AttributeError, a plain tuple of running statistics an
    AttributeError, a float or (F,) count taken (1 - decay**2.5; a (F,) count back), a (5,) batch
    mean a broadcasting error and a float32 one promoted float64 running statistics."""
    from byol_ref.losses import l2_normalize_forward

    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((4, 3)), rng.uniform(0.5, 2, 3)
    for call in (lambda: linear_forward(np.array(1.0), np.ones((1, 2))), lambda: l2_normalize_forward(np.array(2.0)),
                 lambda: simplex_forward(np.float64(1.0), simplex_dim=1, temperature=1.0),
                 lambda: layer_norm_forward(np.array(1.0), np.ones(1), np.ones(1))):
        with pytest.raises(ValueError, match=r"x must have a feature axis, shape \(\.\.\., F\), got a 0-d array"):
            call()
    for call, name in ((lambda: batch_norm_forward(x, None, g, _running(3, rng), train=True), "gamma"),
                       (lambda: layer_norm_forward(x, g, None), "beta"), (lambda: affine_forward(x, None, g), "gamma")):
        with pytest.raises(TypeError, match=f"{name} must be an array in x's dtype float64, got None"):
            call()
    mean, var = np.zeros(3), np.ones(3)
    for running in (None, (mean, var, np.array(0))):
        with pytest.raises(TypeError, match=r"batch_norm_forward: running must be a RunningStats\(mean, var, count\)"):
            batch_norm_forward(x, g, g, running, train=True)
        with pytest.raises(TypeError, match="update_running_stats: running must be a RunningStats"):
            update_running_stats(running, mean, var, 4, decay=0.9, mode="haiku")
    for count in (1.5, np.array(1.0), np.zeros(3, dtype=np.int64), None, True):
        with pytest.raises(TypeError, match="running.count must be an integer scalar"):
            batch_norm_forward(x, g, g, RunningStats(mean, var, count), train=True)
    for count in (3, np.int64(3), np.array(3, dtype=np.int32)):  # an int of any kind is a count
        batch_norm_forward(x, g, g, RunningStats(mean, var, count), train=True)
    ok = RunningStats(mean, var, np.array(0))
    with pytest.raises(ValueError, match=r"update_running_stats: batch_mean has shape \(5,\), expected \(3,\)"):
        update_running_stats(ok, np.zeros(5), np.ones(5), 4, decay=0.9, mode="haiku")
    with pytest.raises(TypeError, match="batch_var has dtype float32, but running.mean has float64"):
        update_running_stats(ok, mean, var.astype("float32"), 4, decay=0.9, mode="haiku")
    for n, err in ((2.5, TypeError), (None, TypeError), (0, ValueError)):
        with pytest.raises(err, match="n must be an int >= 1"):
            update_running_stats(ok, mean, var, n, decay=0.9, mode="torch")
    for flag in ("inplace", "need_cache"):
        with pytest.raises(TypeError, match=f"{flag} must be True or False, got 'yes'"):
            batch_norm_forward(x, g, g, ok, train=True, **{flag: "yes"})


@pytest.mark.parametrize("g", [None, 2])
def test_batch_norm_refuses_a_bad_running_stats_mode_or_decay_when_it_updates_them(g):
    """Found by a mutation audit: with the mode check dropped, mode="bogus" was updated as "torch"
    without a word (update_running_stats and batch_norm_forward alike), and batch_norm_forward's one
    check of decay and mode, made before its per-group updates, had no test of its own."""
    rng = np.random.default_rng(0)
    x, g1 = rng.standard_normal(_shape(g, 4, 3)), rng.uniform(0.5, 2, 3)
    run = _running(3, rng)
    with pytest.raises(ValueError, match="running-stats mode must be 'haiku' or 'torch', got 'bogus'"):
        update_running_stats(run, np.zeros(3), np.ones(3), 4, decay=0.9, mode="bogus")
    for kw, says in (({"mode": "bogus"}, "running-stats mode must be 'haiku' or 'torch', got 'bogus'"),
                     ({"decay": 1.0}, r"decay must be in \[0, 1\), got 1.0"),
                     ({"decay": -0.5}, r"decay must be in \[0, 1\), got -0.5")):
        with pytest.raises(ValueError, match=says):
            batch_norm_forward(x, g1, g1, run, train=True, **kw)
    for mode in ("haiku", "torch"):  # (what is right still works)
        assert int(batch_norm_forward(x, g1, g1, run, train=True, mode=mode)[2].count) == 3 + (g or 1)


def test_the_normalisations_forward_values_by_hand():
    """The conventions as numbers, not only as a forward consistent with its backward: rows 1 and 3
    have mean 2 and *biased* variance 1 (unbiased: 2), and eps = 3 goes *inside* the root, so
    x_hat = (x - 2) / sqrt(1 + 3) = -/+ 1/2 exactly (eps outside: 1/4; max(var, eps): 1/sqrt(3)).
    The same in every path: both variance formulas, without a cache (the target's forward), in
    evaluation from running statistics (2, 1), layer norm, group norm over *contiguous* feature
    groups, and weight standardisation."""
    x = np.array([[1.0, 10.0], [3.0, 12.0]])  # (N, F): each column has biased variance 1
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    want = np.array([[-0.5, -0.5], [0.5, 0.5]]) * gamma + beta
    fresh = RunningStats(np.zeros(2), np.ones(2), np.array(0))
    for var_formula in ("two_pass", "one_pass"):
        for need_cache in (True, False):
            out, _, _ = batch_norm_forward(x, gamma, beta, fresh, train=True, eps=3.0, var_formula=var_formula,
                                           need_cache=need_cache)
            np.testing.assert_allclose(out, want, rtol=1e-14, atol=1e-15)
    stats = RunningStats(np.array([2.0, 11.0]), np.array([1.0, 1.0]), np.array(5))
    for need_cache in (True, False):
        out, _, _ = batch_norm_forward(x, gamma, beta, stats, train=False, eps=3.0, need_cache=need_cache)
        np.testing.assert_allclose(out, want, rtol=1e-14, atol=1e-15)
    g, b = np.array([2.0, -1.0, 3.0, 1.0]), np.array([0.5, 0.25, 0.0, -1.0])
    out, _ = layer_norm_forward(x.T.copy(), gamma, beta, eps=3.0)  # rows (1, 3), (10, 12)
    np.testing.assert_allclose(out, [[-1 + 0.5, -0.5 + 0.25], [-1 + 0.5, -0.5 + 0.25]], rtol=1e-14)
    out, _ = group_norm_forward(np.array([[1.0, 3.0, 10.0, 12.0]]), g, b, groups=2, eps=3.0)  # (1, 3), (10, 12)
    np.testing.assert_allclose(out, [[-1 + 0.5, 0.5 * -1 + 0.25, -1.5, 0.5 - 1]], rtol=1e-14)
    w_hat, _ = weight_standardize_forward(x, eps=3.0)  # per column (output unit), over its inputs
    np.testing.assert_allclose(w_hat, [[-0.5, -0.5], [0.5, 0.5]], rtol=1e-14)
