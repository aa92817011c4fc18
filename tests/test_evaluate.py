"""Tests of byol_ref.evaluate: hand-written logistic regression, probes, kNN, collapse monitors."""
import math
import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from byol_ref import evaluate as ev
from byol_ref.backend import host as np


# ---------------------------------------------------------------------------------------
# Local helpers
# ---------------------------------------------------------------------------------------


def num_grad(f, x, dout, h=1e-5):
    """Central-difference gradient of sum(f(x) * dout) with respect to x (float64).

    ``f`` may return a scalar (then ``dout`` is the scalar upstream gradient) or an array
    of dout's shape. ``x`` is perturbed in place and restored.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = np.sum(np.asarray(f(x)) * dout)
        x[i] = old - h
        fm = np.sum(np.asarray(f(x)) * dout)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
        it.iternext()
    return grad


def rel_error(a, b, floor=1e-12):
    """Norm-wise relative error ||a - b|| / max(||a|| + ||b||, floor) (the floor avoids 0/0, or
    sets the scale below which differences are measured absolutely)."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), floor))


def blobs(seed, n_per_class=30, c=3, d=5, spread=0.3, labels=None):
    """c well-separated Gaussian clusters on different directions. Returns (x, y)."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * np.eye(c, d) + 0.1 * rng.normal(size=(c, d))
    y = np.repeat(np.arange(c), n_per_class)
    x = centers[y] + spread * rng.normal(size=(y.size, d))
    perm = rng.permutation(y.size)
    x, y = x[perm], y[perm]
    if labels is not None:
        y = np.asarray(labels)[y]
    return x, y


upstream = st.floats(0.1, 3.0).flatmap(lambda m: st.sampled_from([m, -m]))
seeds = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------------------------------
# Softmax cross-entropy and the logistic-regression objective
# ---------------------------------------------------------------------------------------


@given(n=st.integers(1, 6), c=st.integers(2, 5), seed=seeds, scale=st.floats(0.1, 5.0), dloss=upstream)
def test_softmax_xent_gradient_matches_central_differences(n, c, seed, scale, dloss):
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n, c))
    y = rng.integers(0, c, size=n)
    loss, cache = ev.softmax_xent_forward(logits, y)
    dlogits = ev.softmax_xent_backward(dloss, cache)
    num = num_grad(lambda z: ev.softmax_xent_forward(z, y)[0], logits.copy(), dloss)
    assert dlogits.shape == (n, c)
    # Floored at the gradient's natural scale |dloss| / n (each entry is dloss (p - onehot) / n): a
    # saturated draw (seed 345967, scale 4: entries of 7e-7) has a central difference with ~1e-12
    # of rounding, which is 1e-6 of such a gradient but nothing next to the scale.
    assert rel_error(dlogits, num, floor=abs(dloss) / n) <= 1e-6
    # Identity: each row of d loss / d logits sums to 0 (softmax is shift invariant).
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=1e-14)
    assert loss >= 0.0


@given(n=st.integers(1, 6), c=st.integers(2, 5), seed=seeds, shift=st.floats(-1e3, 1e3))
def test_softmax_xent_is_invariant_to_per_row_shifts(n, c, seed, shift):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c))
    y = rng.integers(0, c, size=n)
    offsets = shift * rng.uniform(0.0, 1.0, size=(n, 1))  # a different shift per row
    loss0, cache0 = ev.softmax_xent_forward(logits, y)
    loss1, cache1 = ev.softmax_xent_forward(logits + offsets, y)
    assert loss1 == pytest.approx(loss0, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(
        ev.softmax_xent_backward(1.0, cache1), ev.softmax_xent_backward(1.0, cache0), atol=1e-10
    )


def test_softmax_xent_matches_the_naive_formula_and_survives_huge_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 4))
    y = rng.integers(0, 4, size=7)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    naive = -np.mean(np.log(p[np.arange(7), y]))
    assert ev.softmax_xent_forward(logits, y)[0] == pytest.approx(naive, rel=1e-12)
    # exp(1000) overflows; the stabilised loss is exactly the margin here.
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    loss, cache = ev.softmax_xent_forward(big, np.array([1, 1]))
    assert loss == pytest.approx(500.0)
    assert np.all(np.isfinite(cache.probs))


@given(n=st.integers(1, 6), d=st.integers(1, 4), c=st.integers(2, 4), seed=seeds,
       l2=st.one_of(st.just(0.0), st.floats(1e-4, 2.0)))
def test_logreg_gradient_matches_central_differences(n, d, c, seed, l2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, size=n)
    w = rng.normal(size=(d, c))
    b = rng.normal(size=c)  # random bias: a wrong (penalised) db would show
    loss, dw, db = ev.logreg_loss_and_grad(w, b, x, y, l2)
    num_w = num_grad(lambda v: ev.logreg_loss_and_grad(v, b, x, y, l2)[0], w.copy(), 1.0)
    num_b = num_grad(lambda v: ev.logreg_loss_and_grad(w, v, x, y, l2)[0], b.copy(), 1.0)
    assert rel_error(dw, num_w) <= 1e-6
    # db = mean_n (p - onehot) has entries of natural scale 1; floored there for saturated draws
    # (seed 14, n 1: db of 1.5e-6, whose central difference carries ~1e-11 of rounding)
    assert rel_error(db, num_b, floor=1.0) <= 1e-6
    # The penalty is 0.5 * l2 * ||w||^2 and does not touch b.
    xent = ev.softmax_xent_forward(x @ w + b, y)[0]
    assert loss == pytest.approx(xent + 0.5 * l2 * np.sum(w * w), rel=1e-12)


def test_evaluation_functions_do_not_mutate_inputs():
    rng = np.random.default_rng(1)
    x, y = blobs(1)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    copies = [a.copy() for a in (x, y, w, b)]
    ev.logreg_loss_and_grad(w, b, x, y, 0.1)
    ev.fit_logreg(x, y, l2=0.1)
    ev.knn_predict(x, y, x, k=3, temperature=0.1)
    ev.collapse_report(x, y)
    for a, a0 in zip((x, y, w, b), copies):
        np.testing.assert_array_equal(a, a0)


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------


@given(seed=seeds, n=st.integers(20, 60), d=st.integers(1, 8), c=st.integers(2, 4),
       l2=st.floats(1e-3, 1.0))
def test_fit_logreg_reaches_a_stationary_point(seed, n, d, c, l2):
    rng = np.random.default_rng(seed)
    x = 3.0 * rng.normal(size=(n, d)) + rng.normal(size=d)
    y = np.arange(n) % c  # every class present
    model = ev.fit_logreg(x, y, l2=l2, tol=1e-8)
    assert model.converged
    xs = (x - model.mean) / model.std
    _, dw, db = ev.logreg_loss_and_grad(model.w, model.b, xs, y, l2)
    assert max(np.abs(dw).max(), np.abs(db).max()) <= 1e-8
    # Optimality condition of the bias: predicted class frequencies match the labels.
    probs = ev.softmax_xent_forward(xs @ model.w + model.b, y)[1].probs
    np.testing.assert_allclose(probs.mean(axis=0), np.bincount(y, minlength=c) / n, atol=1e-7)


@given(seed=seeds)
def test_fit_logreg_separates_a_linearly_separable_set(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 6))
    scores = x @ rng.normal(size=(6, 3)) + rng.normal(size=3)
    top2 = np.sort(scores, axis=1)[:, -2:]
    keep = top2[:, 1] - top2[:, 0] > 0.3  # a margin, so separability is robust
    x, y = x[keep], np.argmax(scores[keep], axis=1)
    assume(np.unique(y).size >= 2)
    model = ev.fit_logreg(x, y, l2=1e-6, max_iter=2000)
    assert ev.accuracy(y, ev.predict(model, x)) == 1.0
    with pytest.raises(TypeError, match="model must be a LogReg from fit_logreg, got NoneType"):
        ev.predict(None, x)


def test_fit_logreg_standardises_so_feature_scale_and_offset_do_not_matter():
    x, y = blobs(2, labels=[3, 7, 11])
    scale = np.array([1e-3, 1.0, 1e3, 5.0, 0.2])
    m0 = ev.fit_logreg(x, y, l2=0.1, tol=1e-10)
    m1 = ev.fit_logreg(x * scale + 100.0, y, l2=0.1, tol=1e-10)
    np.testing.assert_allclose(m1.w, m0.w, atol=1e-6)
    np.testing.assert_allclose(m1.b, m0.b, atol=1e-6)
    np.testing.assert_array_equal(m0.classes, [3, 7, 11])
    np.testing.assert_array_equal(ev.predict(m1, x * scale + 100.0), ev.predict(m0, x))
    assert set(np.unique(ev.predict(m0, x))) <= {3, 7, 11}


def test_fit_logreg_standardises_with_the_biased_std():
    x, y = blobs(4)
    model = ev.fit_logreg(x, y, l2=0.1)
    np.testing.assert_allclose(model.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.std, x.std(axis=0), rtol=1e-12)  # ddof = 0, as documented


def test_predict_standardises_with_the_train_statistics_of_the_model():
    """argmax(((x - mean) / std) @ w + b) with the model's (train) mean and std, whatever the batch:
    standardising with the query batch's own mean or std would change these labels."""
    # logit_1 - logit_0 = 2 (z_1 - z_2), z = (x - [0, 0]) / [1, 10]
    model = ev.LogReg(w=np.array([[-1.0, 1.0], [1.0, -1.0]]), b=np.zeros(2), mean=np.zeros(2),
                      std=np.array([1.0, 10.0]), classes=np.array([3, 7]))
    x = np.array([[2.0, 15.0], [3.0, 16.0]])  # z = [2, 1.5], [3, 1.6]: class 7 both
    np.testing.assert_array_equal(ev.predict(model, x), [7, 7])
    np.testing.assert_array_equal(ev.predict(model, x[:1]), [7])  # one row alone: the same label
    # (the batch's mean [2.5, 15.5] gives z = [-0.5, -0.05] for the first row, class 3; its std [0.5, 0.5]
    # gives z = [4, 30], class 3 for both)


def test_fit_logreg_converges_in_few_iterations():
    """L-BFGS with the initial Hessian scaling gamma = s'y / y'y (Nocedal & Wright eq. 7.20) takes 12 to
    33 iterations here; without it (H0 = I) 43 to 256, every fit still converging, so only the
    iteration count tells."""
    for seed, spread, l2 in [(4, 0.3, 1e-2), (7, 1.5, 1e-3), (3, 1.0, 1e-4)]:
        x, y = blobs(seed, n_per_class=40, spread=spread)
        model = ev.fit_logreg(x, y, l2=l2)
        assert model.converged and model.n_iter <= 60, (seed, model.n_iter)


def test_fit_logreg_handles_constant_features():
    x, y = blobs(3)
    x = np.concatenate([x, np.zeros((x.shape[0], 1)), np.full((x.shape[0], 1), 0.1)], axis=1)
    model = ev.fit_logreg(x, y, l2=0.01)
    assert model.std[-2] == 1.0 and model.std[-1] == 1.0
    assert np.all(np.isfinite(model.w))
    assert ev.accuracy(y, ev.predict(model, x)) == 1.0


@pytest.mark.parametrize("l2", [3e21, 1e30, 1e300])
def test_fit_logreg_with_a_huge_l2_predicts_the_majority_class(l2):
    """A user swept l2 up to 3e21 and beyond, on 10 labels 3 and 40 labels 8: no step from w = 0, b = 0
    lowered the objective there, and the fit stayed at b = 0, predicting classes[0] = 3 everywhere (20%
    accuracy, converged False). It now starts from the intercept-only optimum, b at the centred log class
    frequencies, with w = -dw / l2: label 8 everywhere (80%), converged, the gradient at rounding level."""
    rng = np.random.default_rng(0)
    y = np.where(np.arange(50) % 5 == 0, 3, 8)
    x = rng.normal(size=(50, 3)) + 0.5 * (y == 8)[:, None]
    model = ev.fit_logreg(x, y, l2=l2)
    np.testing.assert_array_equal(ev.predict(model, x), np.full(50, 8))
    xs = (x - model.mean) / model.std
    y_idx = (y == 8).astype(np.int64)  # classes [3, 8] -> [0, 1]
    _, dw, db = ev.logreg_loss_and_grad(model.w, model.b, xs, y_idx, l2)
    assert model.converged and max(np.abs(dw).max(), np.abs(db).max()) <= 1e-6
    np.testing.assert_allclose(model.b, [-math.log(2), math.log(2)], rtol=1e-12)  # log(10/40) / 2 * [1, -1]
    probs = np.array([0.2, 0.8])  # softmax(b): the class frequencies
    dw_at_b = xs.T @ (probs - np.eye(2)[y_idx]) / 50  # (D, C): dw at w = 0
    np.testing.assert_allclose(model.w * l2, -dw_at_b, rtol=1e-9)


@given(seed=seeds, n=st.integers(10, 60), d=st.integers(1, 6), c=st.integers(2, 4),
       log10_l2=st.floats(8.0, 308.0))
@example(seed=176, n=10, d=2, c=3, log10_l2=19.0)  # (stalled from w = 0, b = 0: see below)
def test_fit_logreg_with_a_huge_l2_ends_at_the_intercept_only_optimum(seed, n, d, c, log10_l2):
    """A user fitted with any l2 from 1e8 up to float64's largest, on unbalanced classes: the model is
    finite, b sits at the centred log class frequencies, every prediction is the majority class, and
    converged says whether the gradient reached tol. Past ~1e21 (where the first L-BFGS step from w = 0,
    b = 0 stops being accepted) every l2 left b = 0 and predicted classes[0]; below it, from ~3e14, runs
    from w = 0, b = 0 could stall: the search profile drew seed 176, n=10, d=2, c=3 at l2 = 1e19, which
    ended at max_iter with b 0.21 from the optimum (converged False, and saying so)."""
    rng = np.random.default_rng(seed)
    l2 = 10.0 ** log10_l2
    y = rng.choice(c, size=n, p=rng.dirichlet(np.ones(c)))
    y[:c] = np.arange(c)  # every class present
    x = 3.0 * rng.normal(size=(n, d)) + rng.normal(size=d)
    model = ev.fit_logreg(x, y, l2=l2)
    assert np.all(np.isfinite(model.w)) and np.all(np.isfinite(model.b))
    xs = (x - model.mean) / model.std
    _, dw, db = ev.logreg_loss_and_grad(model.w, model.b, xs, y, l2)
    assert model.converged == (max(np.abs(dw).max(), np.abs(db).max()) <= 1e-6)
    counts = np.bincount(y, minlength=c)
    np.testing.assert_allclose(model.b, np.log(counts) - np.log(counts).mean(), atol=1e-5)
    if np.sum(counts == counts.max()) == 1:  # (a tie is broken by w, ~1 / l2)
        np.testing.assert_array_equal(ev.predict(model, x), np.full(n, np.argmax(counts)))


@given(seed=seeds, n=st.integers(10, 60), d=st.integers(1, 6), c=st.integers(2, 4),
       l2=st.sampled_from((0.0, 1e8) + ev.DEFAULT_L2_GRID) | st.floats(0.0, 1e8))
def test_fit_logreg_is_plain_lbfgs_from_zero_to_the_bit_where_a_first_step_is_taken(seed, n, d, c, l2):
    """A user fitted with an ordinary l2 (the probe grid's, 0, anything up to 1e8, FIRST_ORDER_L2): the fit
    is the one L-BFGS run from w = 0, b = 0 it always was, bit for bit (w, b, n_iter, converged); the start
    at the first-order optimum is for larger l2 alone, so no probe figure moves. The oracle is that run
    rebuilt from _lbfgs, not recorded numbers, which would tie the test to one BLAS build's rounding."""
    rng = np.random.default_rng(seed)
    x = 3.0 * rng.normal(size=(n, d)) + rng.normal(size=d)
    y = rng.permutation(np.arange(n) % c)
    model = ev.fit_logreg(x, y, l2=l2)
    xs = (x - model.mean) / model.std

    def fun(theta):
        loss, dw, db = ev.logreg_loss_and_grad(theta[: d * c].reshape(d, c), theta[d * c:], xs, y, l2)
        return loss, np.concatenate([dw.ravel(), db])

    theta, n_iter, converged = ev._lbfgs(fun, np.zeros(d * c + c), max_iter=500, tol=1e-6)
    assert n_iter > 0 or converged  # a first step was taken (or none was needed)
    assert (model.n_iter, model.converged) == (n_iter, converged)
    assert model.w.tobytes() == theta[: d * c].tobytes() and model.b.tobytes() == theta[d * c:].tobytes()


@given(seed=seeds, p=st.integers(1, 6), m=st.integers(0, 4), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_two_loop_is_minus_the_lbfgs_inverse_hessian_times_g(seed, p, m, scale):
    """The two-loop recursion against the matrix it stands for (Nocedal & Wright eq. 7.19): H0 = gamma I with
    gamma = s'y / y'y of the newest pair, then H <- (I - rho s y') H (I - rho y s') + rho s s' for each pair,
    oldest first. With no pair, steepest descent cut to unit length: -g / max(1, |g|), bit for bit."""
    rng = np.random.default_rng(seed)
    g = scale * rng.normal(size=p)
    pairs = []
    for _ in range(m):
        s = rng.normal(size=p)
        yv = rng.normal(size=p)
        yv += (1.0 - min(0.0, float(s @ yv))) * s / float(s @ s)  # s'y >= 1: positive curvature
        pairs.append((s, yv, 1.0 / float(s @ yv)))
    d = ev._two_loop(g, pairs)
    assert d.shape == (p,) and d is not g and np.all(g == scale * np.random.default_rng(seed).normal(size=p))
    if not pairs:
        np.testing.assert_array_equal(d, -g / max(1.0, np.linalg.norm(g)))
        return
    s, yv, _ = pairs[-1]
    h = float(s @ yv) / float(yv @ yv) * np.eye(p)
    for s, yv, rho in pairs:
        v = np.eye(p) - rho * np.outer(yv, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    np.testing.assert_allclose(d, -h @ g, rtol=1e-9, atol=1e-12 * scale * np.abs(h).max())
    assert float(g @ d) < 0  # H is positive definite: a descent direction


def test_lbfgs_restarts_from_steepest_descent_when_the_direction_goes_uphill(monkeypatch):
    """The branch that rounding alone reaches: a quasi-Newton direction that is not a descent direction.
    With the two-loop made to point uphill whenever it has a pair, _lbfgs must drop its pairs and step along
    -g at once, so the run is the steepest-descent one (memory=0) to the bit, with the same calls to fun: no
    line search is wasted along the uphill direction, and the fit still converges."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)
    b = rng.normal(size=4)

    def run(**kw):
        points = []

        def fun(theta):
            points.append(theta.copy())
            return 0.5 * float(theta @ a @ theta) - float(b @ theta), a @ theta - b

        theta, n_iter, converged = ev._lbfgs(fun, np.zeros(4), max_iter=500, tol=1e-8, **kw)
        return theta, n_iter, converged, points

    want = run(memory=0)
    two_loop = ev._two_loop
    monkeypatch.setattr(ev, "_two_loop", lambda g, pairs: -two_loop(g, pairs) if pairs else two_loop(g, pairs))
    got = run()
    assert got[2] and 0 < got[1] == want[1]
    np.testing.assert_allclose(got[0], np.linalg.solve(a, b), atol=1e-7)
    assert len(got[3]) == len(want[3])
    for x, w in zip(got[3], want[3]):
        np.testing.assert_array_equal(x, w)
    assert got[0].tobytes() == want[0].tobytes()


def _scripted(table):
    """fun for _lbfgs that answers (f, g) for the points in ``table`` (tuple(theta) -> (f, g)); any other point
    gets f = 1, above every f the tables hold, so that a line search fails there (and its gradient, 0, is
    never used)."""
    def fun(theta):
        f, g = table.get(tuple(theta.tolist()), (1.0, [0.0] * theta.size))
        return f, np.array(g, dtype=np.float64)

    return fun


@pytest.mark.parametrize("drop, accepted", [(1.5e-4, True), (0.5e-4, False)])
def test_lbfgs_accepts_a_step_that_lowers_f_by_1e_4_of_the_slope_and_no_less(drop, accepted):
    """Armijo's rule with c1 = 1e-4 (Nocedal & Wright's usual constant, as the code says): from theta = 0 with
    g = 1, the first step is d = -1 (slope -1). A point where f has dropped by 1.5e-4 is taken at once; a
    function that drops by 0.5e-4 per unit of step never drops enough at any halving, and the fit stops
    where it began, unconverged, after 60 halvings (the trial steps 1, 1/2, ..., 2**-59)."""
    table = _scripted({(0.0,): (0.0, [1.0])} | {(-0.5 ** k,): (-drop * 0.5 ** k, [1.0]) for k in range(61)})
    points = []

    def fun(theta):
        points.append(float(theta[0]))
        return table(theta)

    theta, n_iter, converged = ev._lbfgs(fun, np.zeros(1), max_iter=1, tol=1e-6)
    assert not converged and theta.tolist() == ([-1.0] if accepted else [0.0]) and n_iter == (1 if accepted else 0)
    assert points == [0.0, -1.0] if accepted else points == [0.0] + [-0.5 ** k for k in range(60)]


@pytest.mark.parametrize("ratio, kept", [(1.5e-10, True), (0.5e-10, False)])
def test_lbfgs_keeps_a_curvature_pair_only_above_1e_10_of_its_norms(monkeypatch, ratio, kept):
    """The rounding guard: a pair (s, y) is kept only if s'y > 1e-10 |s| |y|. Scripted: from theta = (0, 0)
    with g = (1, 0) the first step is s = (-1, 0), and the gradient there makes y = (-ratio, 1), so that
    s'y / (|s| |y|) = ratio (|y| is 1 to the last bit)."""
    seen = []
    two_loop = ev._two_loop
    monkeypatch.setattr(ev, "_two_loop", lambda g, pairs: seen.append(len(pairs)) or two_loop(g, pairs))
    fun = _scripted({(0.0, 0.0): (0.0, [1.0, 0.0]), (-1.0, 0.0): (-1.0, [1.0 - ratio, 1.0])})
    ev._lbfgs(fun, np.zeros(2), max_iter=2, tol=1e-12)
    assert seen[:2] == [0, 1 if kept else 0]


@pytest.mark.parametrize("memory", [None, 3])
def test_lbfgs_keeps_the_newest_memory_pairs_10_by_default(monkeypatch, memory):
    """On a problem that takes more iterations than memory, the two-loop sees 0, 1, 2, ... pairs, then exactly
    memory of them (10 unless told): each step adds its pair and, past memory, the oldest goes."""
    calls = []
    two_loop = ev._two_loop

    def spy(g, pairs):
        calls.append([s.tobytes() for s, _, _ in pairs])
        return two_loop(g, pairs)

    monkeypatch.setattr(ev, "_two_loop", spy)
    a = np.diag(np.logspace(0, 3, 30))

    def fun(theta):
        return 0.5 * float(theta @ a @ theta) - float(theta.sum()), a @ theta - 1.0

    kw = {} if memory is None else {"memory": memory}
    _, n_iter, converged = ev._lbfgs(fun, np.zeros(30), max_iter=500, tol=1e-6, **kw)
    m = 10 if memory is None else memory
    assert converged and n_iter > m + 2 and [len(c) for c in calls] == [min(k, m) for k in range(len(calls))]
    for before, after in zip(calls, calls[1:]):
        assert after[:-1] == before[-(m - 1):] if len(before) == m else after[:-1] == before


def test_lbfgs_restarts_where_the_slope_is_exactly_0(monkeypatch):
    """A direction along which f neither rises nor falls to first order (g'd = 0) is no descent direction
    either: the next point tried is along -g (cut to unit length), not along d. Scripted with dyadic numbers,
    so that g'd is 0 to the bit: the first step s = (-1, 0) gives g = (0.5, 1), and the two-loop is made to
    answer d = (-1, 0.5)."""
    two_loop = ev._two_loop
    monkeypatch.setattr(ev, "_two_loop", lambda g, pairs: np.array([-1.0, 0.5]) if pairs else two_loop(g, pairs))
    points = []
    table = _scripted({(0.0, 0.0): (0.0, [1.0, 0.0]), (-1.0, 0.0): (-1.0, [0.5, 1.0])})

    def fun(theta):
        points.append(theta.tolist())
        return table(theta)

    ev._lbfgs(fun, np.zeros(2), max_iter=2, tol=1e-12)
    g = np.array([0.5, 1.0])
    assert points[:2] == [[0.0, 0.0], [-1.0, 0.0]]
    assert points[2] == (np.array([-1.0, 0.0]) - g / np.linalg.norm(g)).tolist()


@pytest.mark.parametrize("g, converged", [(1e-6, True), (-1e-6, True), (np.nextafter(1e-6, 1), False)])
def test_lbfgs_stops_at_a_gradient_of_exactly_tol(g, converged):
    """'stop when max |g| <= tol', at the boundary, both where the loop begins and where max_iter ends it."""
    fun = _scripted({(0.0,): (0.0, [g])})
    for max_iter in (0, 50):
        theta, n_iter, ok = ev._lbfgs(fun, np.zeros(1), max_iter=max_iter, tol=1e-6)
        assert ok == converged and theta.tolist() == [0.0]
        assert n_iter == (0 if converged or max_iter == 0 else n_iter)


# ---------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------


@given(seed=seeds, counts=st.lists(st.integers(1, 12), min_size=2, max_size=5),
       frac=st.floats(0.05, 0.95))
def test_stratified_split_partitions_every_class(seed, counts, frac):
    y = np.repeat(np.arange(len(counts)), counts)
    tr, va = ev.stratified_split(y, frac, seed)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(y.size))
    for cls, n_c in enumerate(counts):
        n_val = int(np.sum(y[va] == cls))
        if n_c >= 2:
            assert 1 <= n_val <= n_c - 1
        else:
            assert n_val == 0
    tr2, va2 = ev.stratified_split(y, frac, seed)
    np.testing.assert_array_equal(va, va2)


def test_stratified_split_rounds_each_class_share_to_the_nearest_integer():
    y = np.repeat([0, 1, 2], [8, 3, 13])
    tr, va = ev.stratified_split(y, 0.2, seed=0)
    # round(1.6) = 2 (not floor 1), round(0.6) = 1, round(2.6) = 3
    np.testing.assert_array_equal(np.bincount(y[va]), [2, 1, 3])
    np.testing.assert_array_equal(np.bincount(y[tr]), [6, 2, 10])


def test_linear_probe_on_separable_blobs():
    x, y = blobs(4, n_per_class=40)
    xt, yt = blobs(5, n_per_class=20)
    out = ev.linear_probe(x, y, xt, yt, l2_grid=(1e-3, 1e-1), seed=0)
    assert set(out) == {"accuracy", "l2", "val_accuracy", "converged"}
    assert out["accuracy"] == 1.0 and out["val_accuracy"] == 1.0 and out["converged"] is True
    assert out["l2"] == 1e-1  # ties go to the larger l2
    assert ev.linear_probe(x, y, xt, yt, l2_grid=(1e-3, 1e-1), seed=0) == out


def test_a_probe_that_stops_at_its_iteration_cap_says_so():
    """Non-convergence was accepted without a word (the fit's converged flag was never read)."""
    from byol_ref.report import format_convergence

    x, y = blobs(4, n_per_class=40)
    xt, yt = blobs(5, n_per_class=20)
    assert ev.linear_probe(x, y, xt, yt, l2_grid=(1e-3,), max_iter=1)["converged"] is False
    assert ev.low_label_probe(x, y, xt, yt, labels_per_class=4, repeats=2, max_iter=1)["converged"] is False
    assert ev.low_label_probe(x, y, xt, yt, labels_per_class=4, repeats=2)["converged"] is True
    rows = [{"name": "raw inputs", "converged": True}, {"name": "BYOL encoder (y)", "converged": False}]
    assert format_convergence(rows).startswith("Note: a logistic-regression fit of the probes of BYOL encoder (y) "
                                               "stopped at its iteration cap")
    assert format_convergence(rows[:1]) == ""


def test_linear_probe_chooses_strong_regularisation_for_pure_noise_features():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(80, 40)), np.arange(80) % 2
    xt, yt = rng.normal(size=(40, 40)), np.arange(40) % 2
    out = ev.linear_probe(x, y, xt, yt)
    assert 0.0 <= out["accuracy"] <= 1.0
    assert out["l2"] in ev.DEFAULT_L2_GRID


def test_low_label_probe_is_seeded_and_uses_few_labels():
    x, y = blobs(7, n_per_class=50, spread=1.5)
    xt, yt = blobs(8, n_per_class=30, spread=1.5)
    a = ev.low_label_probe(x, y, xt, yt, labels_per_class=4, repeats=3, seed=1)
    b = ev.low_label_probe(x, y, xt, yt, labels_per_class=4, repeats=3, seed=1)
    c = ev.low_label_probe(x, y, xt, yt, labels_per_class=4, repeats=2, seed=1)
    assert a == b
    assert c["accuracies"] == a["accuracies"][:2]  # repeat r does not depend on `repeats`
    assert len(a["accuracies"]) == 3 and len(a["l2"]) == 3
    assert a["accuracy"] == pytest.approx(np.mean(a["accuracies"]))
    assert a["accuracy_std"] == pytest.approx(np.std(a["accuracies"], ddof=1))
    assert 0.5 < a["accuracy"] <= 1.0
    # Only the drawn examples are used: overwriting every train row outside all three
    # subsets with garbage changes nothing.
    drawn = set()
    for r in range(3):
        drawn |= set(ev._sample_per_class(y, 4, np.random.default_rng([1, r])).tolist())
    assert len(drawn) <= 3 * 3 * 4
    others = np.array(sorted(set(range(y.size)) - drawn))
    x_garbage = x.copy()
    x_garbage[others] = 1e3 * np.random.default_rng(0).normal(size=(others.size, x.shape[1]))
    assert ev.low_label_probe(x_garbage, y, xt, yt, labels_per_class=4, repeats=3, seed=1) == a


def test_low_label_probe_cross_validation_folds_are_stratified(monkeypatch):
    """Each fold holds out the same number of examples of every class, and every labelled example is
    held out once, also when labels_per_class (4) is not a multiple of the number of folds (3)."""
    x, y = blobs(7, n_per_class=20)
    xt, yt = blobs(8, n_per_class=5)
    seen = []
    select = ev._select_l2

    def spy(folds, xs, ys, grid, max_iter):
        seen.append((folds, ys))
        return select(folds, xs, ys, grid, max_iter)

    monkeypatch.setattr(ev, "_select_l2", spy)
    ev.low_label_probe(x, y, xt, yt, labels_per_class=4, n_folds=3, repeats=1, l2_grid=(0.1,))
    ((folds, ys),) = seen
    assert len(folds) == 3
    np.testing.assert_array_equal(np.sort(np.concatenate([va for _, va in folds])), np.arange(ys.size))
    for tr, va in folds:
        counts = np.bincount(ys[va], minlength=3)
        assert counts.min() == counts.max() >= 1, counts  # folds of 2, 1, 1 examples per class
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(ys.size))


# ---------------------------------------------------------------------------------------
# kNN
# ---------------------------------------------------------------------------------------


def knn_reference(x_train, y_train, x_query, k, temperature):
    """Slow, obvious kNN: full sort per query, dict of votes."""
    tn = x_train / np.linalg.norm(x_train, axis=1, keepdims=True)
    out = []
    for q in x_query:
        sim = tn @ (q / np.linalg.norm(q))
        nn = np.argsort(-sim, kind="stable")[:k]
        votes = {}
        for j in nn:
            w = 1.0 if temperature is None else math.exp(sim[j] / temperature)
            votes[y_train[j]] = votes.get(y_train[j], 0.0) + w
        out.append(max(votes, key=votes.get))
    return np.array(out)


def test_knn_on_a_toy_problem():
    x, y = blobs(9, labels=[10, 20, 30])
    xt, yt = blobs(10, n_per_class=10, labels=[10, 20, 30])
    for t in (None, 0.1, 0.07):
        assert ev.knn_accuracy(x, y, xt, yt, k=5, temperature=t) == 1.0
    pred = ev.knn_predict(x, y, xt, k=5)
    assert set(pred.tolist()) <= {10, 20, 30}


@given(seed=seeds, n=st.integers(2, 40), d=st.integers(2, 6), t=st.sampled_from([None, 0.1, 0.07]))
def test_knn_k1_on_the_train_set_is_perfect(seed, n, d, t):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, 4, size=n)
    assert ev.knn_accuracy(x, y, x, y, k=1, temperature=t) == 1.0


@given(seed=seeds, k=st.integers(1, 9), t=st.sampled_from([None, 0.5, 0.1, 0.07]),
       batch=st.integers(1, 7))
def test_knn_matches_a_slow_reference_for_any_batch_size(seed, k, t, batch):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    xq = rng.normal(size=(11, 4))
    got = ev.knn_predict(x, y, xq, k=k, temperature=t, batch_size=batch)
    if t is not None:  # continuous weights: ties have probability 0
        np.testing.assert_array_equal(got, knn_reference(x, y, xq, k, t))
    else:  # majority vote: agree wherever the vote count is not tied
        ref = knn_reference(x, y, xq, k, None)
        sim = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (xq / np.linalg.norm(xq, axis=1, keepdims=True)).T
        for i in range(xq.shape[0]):
            counts = np.bincount(y[np.argsort(-sim[:, i])[:k]], minlength=3)
            if np.sum(counts == counts.max()) == 1:
                assert got[i] == ref[i]
    # Cosine similarity ignores the length of each row.
    scale = rng.uniform(0.1, 10.0, size=(30, 1))
    np.testing.assert_array_equal(ev.knn_predict(x * scale, y, xq, k=k, temperature=t), got)


@given(seed=seeds, k=st.integers(1, 30), t=st.sampled_from([0.5, 0.1]), batch=st.integers(1, 4))
def test_knn_neighbours_tied_for_the_kth_place_are_the_first_train_rows(seed, k, t, batch):
    """Duplicate train rows tie exactly, and argpartition kept any of those tied for the k-th place: the
    vote then depended on its internals (a stable sort's choice was lost in about a third of such cases)."""
    rng = np.random.default_rng(seed)
    x = np.eye(3)[rng.integers(0, 3, size=200)]  # three distinct rows, each many times
    y = rng.integers(0, 4, size=200)
    xq = np.eye(3)
    got = ev.knn_predict(x, y, xq, k=k, temperature=t, batch_size=batch)
    ref = []
    for q in xq:  # knn_reference (a stable sort), with class ties to the smaller label as knn_predict has them
        sim = x @ q
        votes = {}
        for j in np.argsort(-sim, kind="stable")[:k]:
            votes[y[j]] = votes.get(y[j], 0.0) + math.exp(sim[j] / t)
        ref.append(max(sorted(votes), key=votes.get))
    np.testing.assert_array_equal(got, ref)


def test_knn_blocks_are_sized_by_the_train_rows_by_default(monkeypatch):
    """Blocks of 1024 queries against 56,000 train rows were 458 MB a copy (sim, its negation, the
    indices), and the selection in them took twice as long as in blocks of 32 MiB. By default a
    block now holds about KNN_BLOCK similarities (from 1 to 1024 queries), and gives the labels that
    block size given outright gives."""
    rng = np.random.default_rng(0)
    x, y, xq = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30), rng.normal(size=(50, 4))
    real, blocks = np.argpartition, []

    def argpartition(a, kth, axis=-1, **kw):
        blocks.append(a.shape)
        return real(a, kth, axis=axis, **kw)

    monkeypatch.setattr(np, "argpartition", argpartition)
    for limit, rows in ((100, 3), (10, 1), (10**9, 50)):
        monkeypatch.setattr(ev, "KNN_BLOCK", limit)
        blocks.clear()
        got = ev.knn_predict(x, y, xq, k=5)
        assert max(b[0] for b in blocks) == rows and {b[1] for b in blocks} == {30}
        np.testing.assert_array_equal(got, ev.knn_predict(x, y, xq, k=5, batch_size=rows))
    assert blocks[0] == (50, 30)  # (1024 at most: here every query at once)
    monkeypatch.setattr(ev, "KNN_BLOCK", 2**22)
    blocks.clear()
    ev.knn_predict(rng.normal(size=(5000, 2)), rng.integers(0, 3, size=5000), rng.normal(size=(2000, 2)), k=3)
    assert [b[0] for b in blocks] == [838, 838, 324]  # 2**22 // 5000 = 838 queries a block


def test_knn_temperature_weighting_can_overturn_the_majority():
    angle = lambda a: [math.cos(a), math.sin(a)]  # noqa: E731
    # One train point of class 1 almost on the query, two of class 0 further away.
    x = np.array([angle(0.05), angle(1.0), angle(-1.0), angle(3.0)])
    y = np.array([1, 0, 0, 2])
    q = np.array([angle(0.0)])
    assert ev.knn_predict(x, y, q, k=3)[0] == 0  # majority: 2 votes to 1
    assert ev.knn_predict(x, y, q, k=3, temperature=0.1)[0] == 1  # e^{10} >> 2 e^{5.4}
    assert ev.knn_predict(x, y, q, k=3, temperature=100.0)[0] == 0  # T -> inf: majority again
    # A tiny T would overflow exp(sim / T) without the max-subtraction.
    assert ev.knn_predict(x, y, q, k=3, temperature=1e-4)[0] == 1


def test_knn_majority_beats_summed_similarity_at_its_extreme():
    """The similarity tie-break only orders equal vote counts: 3 neighbours at similarity -1 still
    outvote 2 at +1 (k = 5 = N). A tie-break of sim_sum / k would tie them there (3 - 3/5 = 2 + 2/5)
    and hand the query to the smaller class index, the minority."""
    x = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    y = np.array([0, 0, 1, 1, 1])
    assert ev.knn_predict(x, y, np.array([[1.0, 0.0]]), k=5)[0] == 1


def test_knn_majority_ties_go_to_the_more_similar_class():
    x = np.array([[1.0, 0.1], [1.0, -0.5]])
    y = np.array([5, 2])
    assert ev.knn_predict(x, y, np.array([[1.0, 0.0]]), k=2)[0] == 5


# ---------------------------------------------------------------------------------------
# Collapse monitors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [8, 32, 128])
def test_normalized_std_of_isotropic_gaussian_is_about_one_over_sqrt_d(d):
    z = np.random.default_rng(d).normal(size=(4000, d))
    assert ev.normalized_std(z) == pytest.approx(1.0 / math.sqrt(d), rel=0.05)
    # Rescaling rows does not change it (it works on l2-normalised rows).
    scale = np.random.default_rng(0).uniform(0.01, 100.0, size=(4000, 1))
    assert ev.normalized_std(z * scale) == pytest.approx(ev.normalized_std(z), rel=1e-12)


def test_normalized_std_matches_the_formula_with_unbiased_std():
    z = np.array([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0]])
    zn = np.array([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    col = [np.sqrt(np.sum((zn[:, j] - zn[:, j].mean()) ** 2) / 2) for j in range(2)]  # ddof=1
    assert ev.normalized_std(z) == pytest.approx(np.mean(col), rel=1e-12)


@given(seed=seeds, n=st.integers(2, 20), d=st.integers(1, 10), scale=st.floats(1e-3, 1e3))
def test_normalized_std_is_zero_for_identical_rows(seed, n, d, scale):
    row = np.random.default_rng(seed).normal(size=d)
    assume(np.linalg.norm(row) > 1e-6)
    z = np.tile(scale * row, (n, 1))
    assert ev.normalized_std(z) <= 1e-12
    rep = ev.collapse_report(z)
    assert rep["mean_cos"] == pytest.approx(1.0, abs=1e-12)
    assert rep["effective_rank"] == 0.0


def centred_orthonormal(rng, n, r):
    """n x r matrix with orthonormal columns, each orthogonal to the all-ones vector."""
    a = rng.normal(size=(n, r))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    return q


@given(seed=seeds, r=st.integers(1, 6), extra_n=st.integers(2, 10), extra_d=st.integers(0, 6),
       s=st.floats(1e-2, 1e3))
def test_effective_rank_counts_equal_singular_values(seed, r, extra_n, extra_d, s):
    rng = np.random.default_rng(seed)
    n, d = r + extra_n, r + extra_d
    u = centred_orthonormal(rng, n, r)  # (N, r)
    v, _ = np.linalg.qr(rng.normal(size=(d, r)))  # (D, r)
    x = s * u @ v.T + rng.normal(size=d)  # r equal singular values after centring, plus an offset
    assert ev.effective_rank(x) == pytest.approx(r, rel=1e-9)


def test_effective_rank_of_a_known_unequal_spectrum():
    """Singular values 3 and 1 (not their squares): p = (3/4, 1/4), erank = exp(H(p))."""
    u = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]) / 2  # centred, orthonormal columns
    x = u @ np.diag([3.0, 1.0]) @ np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) + 7.0
    p = np.array([0.75, 0.25])
    assert ev.effective_rank(x) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-12)  # 1.7548


@given(seed=seeds, n=st.integers(2, 15), d=st.integers(1, 8))
def test_effective_rank_is_one_for_rank_one_and_bounded_for_any_data(seed, n, d):
    rng = np.random.default_rng(seed)
    a, v = rng.normal(size=(n, 1)), rng.normal(size=(1, d))
    assume(np.ptp(a) > 1e-3)
    assert ev.effective_rank(a @ v + rng.normal(size=d)) == pytest.approx(1.0, rel=1e-9)
    x = rng.normal(size=(n, d))
    assert 1.0 - 1e-12 <= ev.effective_rank(x) <= min(n - 1, d) + 1e-9


def test_collapse_report_against_a_brute_force_gram_matrix():
    rng = np.random.default_rng(11)
    z, y = rng.normal(size=(25, 6)) + 0.5, rng.integers(0, 3, size=25)
    rep = ev.collapse_report(z, y)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    g = zn @ zn.T
    off = ~np.eye(25, dtype=bool)
    same = (y[:, None] == y[None, :]) & off
    diff = y[:, None] != y[None, :]
    assert rep["mean_cos"] == pytest.approx(g[off].mean(), rel=1e-10)
    assert rep["cos_within"] == pytest.approx(g[same].mean(), rel=1e-10)
    assert rep["cos_between"] == pytest.approx(g[diff].mean(), rel=1e-10)
    assert rep["healthy_std"] == pytest.approx(1 / math.sqrt(6))
    assert rep["std_ratio"] == pytest.approx(rep["normalized_std"] * math.sqrt(6))
    assert rep["max_rank"] == 6
    assert rep["mean_norm"] == pytest.approx(np.linalg.norm(z, axis=1).mean())
    few = ev.collapse_report(z[:4])  # 4 centred rows span 3 dimensions, not min(N, D) = 4
    assert few["max_rank"] == 3 and few["effective_rank"] <= 3 + 1e-9


# ---------------------------------------------------------------------------------------
# Report and table
# ---------------------------------------------------------------------------------------


def test_probe_report_and_format_table():
    x, y = blobs(12, n_per_class=30, spread=0.8)
    xt, yt = blobs(13, n_per_class=15, spread=0.8)
    rng = np.random.default_rng(0)
    feats = {"good": (x, xt), "noise": (rng.normal(size=x.shape), rng.normal(size=xt.shape))}
    rows = ev.probe_report(feats, y, yt, labels_per_class=5, k=5, repeats=2)
    assert [r["name"] for r in rows] == ["good", "noise"]
    for r in rows:
        for key in ("knn", "low_label", "linear"):
            assert 0.0 <= r[key] <= 1.0
        # each draw of the low-label probe is kept (report.json), and they are what its mean and sd are of
        assert len(r["low_label_draws"]) == len(r["low_label_l2"]) == 2
        assert r["low_label"] == pytest.approx(np.mean(r["low_label_draws"]))
        assert r["low_label_std"] == pytest.approx(np.std(r["low_label_draws"], ddof=1))
    assert rows[0]["knn"] > rows[1]["knn"] and rows[0]["linear"] > rows[1]["linear"]
    table = ev.format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # fixed width
    assert "kNN" in lines[0] and "low-label" in lines[0] and "linear" in lines[0]
    assert lines[2].startswith("good") and f"{100 * rows[0]['linear']:.1f}" in lines[2]
    assert "+-" in lines[2]
    assert ev.format_table([{"name": "x", "knn": 0.5}]).splitlines()[2].split() == ["x", "50.0", "-", "-"]


def test_collapse_report_pair_means_are_nan_without_such_pairs():
    """All labels distinct: no same-class pair, so cos_within is nan (not 0) and cos_between is the mean over all
    pairs; one class: no pair of different classes, so cos_between is nan."""
    z = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    cos = [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)]  # pairs (0, 1), (0, 2), (1, 2)
    rep = ev.collapse_report(z, np.array([0, 1, 2]))
    assert math.isnan(rep["cos_within"]) and rep["cos_between"] == pytest.approx(np.mean(cos), rel=1e-12)
    rep = ev.collapse_report(z, np.array([4, 4, 4]))
    assert math.isnan(rep["cos_between"]) and rep["cos_within"] == pytest.approx(np.mean(cos), rel=1e-12)


def test_format_table_layout_exactly():
    """Names left-aligned, numbers right-aligned in percent with one decimal (an accuracy of 0 and an sd of 0 are
    values, not missing), two spaces between columns, a rule of dashes, headers with their unit."""
    rows = [{"name": "BYOL", "knn": 0.9, "low_label": 0.825, "low_label_std": 0.0, "linear": 0.0},
            {"name": "raw pixels", "knn": 0.123, "low_label": 0.5, "low_label_std": 0.0312}]
    assert ev.format_table(rows).split("\n") == [
        "features    kNN (%)  low-label (%)  linear (%)",
        "----------  -------  -------------  ----------",
        "BYOL           90.0    82.5 +- 0.0         0.0",
        "raw pixels     12.3    50.0 +- 3.1           -",
    ]


def test_probe_report_rows_come_from_the_three_probes_with_its_settings(monkeypatch):
    """Each row holds exactly what the kNN, low-label and linear probes return for that feature set, each probe
    called with the report's k, temperature, seed, repeats, labels per class and l2 grid; a row is converged only
    if both probes' fits are. Its defaults are the README's protocol, and it reports progress as its docstring
    says."""
    calls = []

    def knn(x_tr, y_tr, x_te, y_te, **kw):
        calls.append(("knn", float(x_tr[0, 0]), kw))
        return 0.25 + x_tr[0, 0]

    def low(x_tr, y_tr, x_te, y_te, **kw):
        calls.append(("low", float(x_tr[0, 0]), kw))
        return {"accuracy": 0.5 + x_tr[0, 0], "accuracy_std": 0.03, "converged": x_tr[0, 0] > 0.05,
                "accuracies": [0.4 + x_tr[0, 0], 0.6 + x_tr[0, 0]], "l2": [0.1, 1.0]}

    def lin(x_tr, y_tr, x_te, y_te, **kw):
        calls.append(("lin", float(x_tr[0, 0]), kw))
        return {"accuracy": 0.75 + x_tr[0, 0], "l2": 0.01, "converged": True}

    monkeypatch.setattr(ev, "knn_accuracy", knn)
    monkeypatch.setattr(ev, "low_label_probe", low)
    monkeypatch.setattr(ev, "linear_probe", lin)
    y = np.arange(4) % 2
    feats = {"b": (np.full((4, 2), 0.1), np.zeros((4, 2))), "a": (np.zeros((4, 2)), np.zeros((4, 2)))}
    rows = ev.probe_report(feats, y, y, labels_per_class=3, k=7, seed=9, temperature=0.2, repeats=4,
                           l2_grid=(0.5,))
    assert rows == [
        {"name": "b", "knn": 0.35, "low_label": 0.6, "low_label_std": 0.03, "low_label_draws": [0.5, 0.7],
         "low_label_l2": [0.1, 1.0], "linear": 0.85, "linear_l2": 0.01, "converged": True},
        {"name": "a", "knn": 0.25, "low_label": 0.5, "low_label_std": 0.03, "low_label_draws": [0.4, 0.6],
         "low_label_l2": [0.1, 1.0], "linear": 0.75, "linear_l2": 0.01, "converged": False},
    ]
    by = {(what, x): kw for what, x, kw in calls}
    for x in (0.1, 0.0):
        assert by[("knn", x)] == {"k": 7, "temperature": 0.2}
        assert by[("low", x)] == {"labels_per_class": 3, "seed": 9, "repeats": 4, "l2_grid": (0.5,)}
        assert by[("lin", x)] == {"l2_grid": (0.5,), "seed": 9}
    # its defaults (kNN k = 20 by majority vote, 10 labels a class over 5 draws, seed 0, the l2 grid), and the
    # progress callback: before each probe, then once at the end
    calls.clear()
    seen = []
    ev.probe_report(feats, y, y, progress=lambda *args: seen.append(args))
    by = {(what, x): kw for what, x, kw in calls}
    grid = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
    assert by[("knn", 0.0)] == {"k": 20, "temperature": None}
    assert by[("low", 0.0)] == {"labels_per_class": 10, "seed": 0, "repeats": 5, "l2_grid": grid}
    assert by[("lin", 0.0)] == {"l2_grid": grid, "seed": 0}
    assert seen == [(0, 6, "b: low-label probe"), (1, 6, "b: linear probe"), (2, 6, "b: kNN"),
                    (3, 6, "a: low-label probe"), (4, 6, "a: linear probe"), (5, 6, "a: kNN"), (6, 6, "done")]


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


X, Y = blobs(14, n_per_class=12)
XT, YT = blobs(15, n_per_class=4)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: ev.softmax_xent_forward(np.zeros((3, 2)), np.array([0, 1])), ValueError, "y"),
    (lambda: ev.softmax_xent_forward(np.zeros((3, 2)), np.array([0, 1, 2])), ValueError, "[0, 2)"),
    (lambda: ev.softmax_xent_forward(np.zeros(3), np.array([0, 1, 2])), ValueError, "logits"),
    (lambda: ev.logreg_loss_and_grad(np.zeros((4, 3)), np.zeros(3), X, Y, 0.1), ValueError, "w"),
    (lambda: ev.logreg_loss_and_grad(np.zeros((5, 3)), np.zeros(2), X, Y, 0.1), ValueError, "b"),
    (lambda: ev.fit_logreg(X, Y[:-1], l2=0.1), ValueError, "y"),
    (lambda: ev.fit_logreg(X, Y.astype(float), l2=0.1), TypeError, "integer"),
    (lambda: ev.fit_logreg(np.where(X > 2, np.nan, X), Y, l2=0.1), ValueError, "finite"),
    (lambda: ev.fit_logreg(np.where(X > 2, np.inf, X), Y, l2=0.1), ValueError, "x"),
    (lambda: ev.fit_logreg(X, Y, l2=-1.0), ValueError, "l2"),
    (lambda: ev.fit_logreg(X, Y, l2=float("nan")), ValueError, "l2"),
    (lambda: ev.fit_logreg(X, np.zeros_like(Y), l2=0.1), ValueError, "2 classes"),
    (lambda: ev.fit_logreg(X, Y, l2=0.1, max_iter=0), ValueError, "max_iter"),
    (lambda: ev.predict(ev.fit_logreg(X, Y, l2=0.1), X[:, :3]), ValueError, "features"),
    (lambda: ev.linear_probe(X, Y, XT[:, :3], YT), ValueError, "x_test"),
    (lambda: ev.linear_probe(X, Y, XT, YT[:-1]), ValueError, "y_test"),
    (lambda: ev.linear_probe(X, Y, XT, YT, val_fraction=1.0), ValueError, "val_fraction"),
    (lambda: ev.linear_probe(X, Y, XT, YT, l2_grid=()), ValueError, "l2_grid"),
    (lambda: ev.low_label_probe(X, Y, XT, YT, labels_per_class=13), ValueError, "only 12"),
    (lambda: ev.low_label_probe(X, Y, XT, YT, labels_per_class=1), ValueError, "labels_per_class"),
    (lambda: ev.low_label_probe(X, Y, XT, YT, repeats=0), ValueError, "repeats"),
    (lambda: ev.knn_predict(X, Y, XT, k=0), ValueError, "k must"),
    (lambda: ev.knn_predict(X, Y, XT, k=2.0), TypeError, "k must"),
    (lambda: ev.knn_predict(X, Y, XT, k=X.shape[0] + 1), ValueError, "k must"),
    (lambda: ev.knn_predict(X, Y, XT, temperature=0.0), ValueError, "temperature"),
    (lambda: ev.knn_predict(X, Y, XT, temperature=-0.1), ValueError, "temperature"),
    (lambda: ev.knn_predict(X, Y, XT[:, :2]), ValueError, "x_query"),
    (lambda: ev.knn_predict(X, Y[:5], XT), ValueError, "y_train"),
    (lambda: ev.knn_predict(X[None], Y, XT), ValueError, "x_train"),
    (lambda: ev.knn_accuracy(X, Y, XT, YT, batch_size=0), ValueError, "batch_size"),
    (lambda: ev.normalized_std(np.ones((1, 4))), ValueError, "z"),
    (lambda: ev.effective_rank(np.ones(4)), ValueError, "x"),
    (lambda: ev.collapse_report(X, Y[:3]), ValueError, "y"),
    (lambda: ev.probe_report({}, Y, YT), TypeError, "feats_by_name"),
    (lambda: ev.probe_report({"a": X}, Y, YT), TypeError, "feats_by_name['a']"),
    (lambda: ev.format_table([{"knn": 0.5}]), TypeError, "rows[0]"),
])
def test_bad_input_raises_a_clear_error(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value)


# ---------------------------------------------------------------------------------------
# Found by an audit
# ---------------------------------------------------------------------------------------


def knn_previous(x_train, y_train, x_query, k, temperature):
    """The weighted vote as computed before: exp(sim / T - max(sim / T)), which is inf - inf = NaN
    once sim / T overflows (T below ~1e-308)."""
    classes, y_idx = np.unique(y_train, return_inverse=True)
    sim = (x_query / np.linalg.norm(x_query, axis=1, keepdims=True)) @ (
        x_train / np.linalg.norm(x_train, axis=1, keepdims=True)).T
    rows = np.arange(x_query.shape[0])[:, None]
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    logits = sim[rows, nn] / temperature
    votes = np.zeros((x_query.shape[0], classes.size))
    np.add.at(votes, (rows, y_idx[nn]), np.exp(logits - logits.max(axis=1, keepdims=True)))
    return classes[np.argmax(votes, axis=1)]


@given(seed=seeds, k=st.integers(1, 25), t=st.sampled_from([1e-3, 0.01, 0.07, 0.1, 0.5, 1.0, 10.0]))
def test_knn_stable_weights_give_the_same_labels_as_before(seed, k, t):
    """The max similarity is now subtracted before dividing by T: the same labels for usual T."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(40, 6)), rng.integers(0, 5, size=40)
    xq = rng.normal(size=(25, 6))
    np.testing.assert_array_equal(ev.knn_predict(x, y, xq, k=k, temperature=t), knn_previous(x, y, xq, k, t))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("t", [1e-320, 5e-324, 1e-310, 1e-300])
def test_knn_tiny_temperatures_vote_for_the_nearest_neighbour(t):
    """T -> 0 leaves only the most similar neighbour's weight (exp(0) = 1): no NaN, no overflow warning."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 5)), rng.integers(0, 4, size=60)
    xq = rng.normal(size=(30, 5))
    np.testing.assert_array_equal(ev.knn_predict(x, y, xq, k=9, temperature=t), ev.knn_predict(x, y, xq, k=1))


ONE_PER_CLASS = [int(np.flatnonzero(Y == c)[0]) for c in np.unique(Y)]


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ev.linear_probe(X, Y, XT, YT, seed="a"), TypeError, "seed must be an int, got str 'a'"),
    (lambda: ev.linear_probe(X, Y, XT, YT, seed=-1), ValueError, "seed must be >= 0, got -1"),
    (lambda: ev.linear_probe(X, Y, XT, YT, seed=1.0), TypeError, "seed must be an int, got float 1.0"),
    (lambda: ev.low_label_probe(X, Y, XT, YT, seed=None), TypeError, "seed must be an int, got NoneType None"),
    (lambda: ev.low_label_probe(X, Y, XT, YT, seed=-1), ValueError, "seed must be >= 0, got -1"),
    (lambda: ev.stratified_split(Y, 0.2, seed="a"), TypeError, "seed must be an int, got str 'a'"),
    (lambda: ev.linear_probe(X[ONE_PER_CLASS], Y[ONE_PER_CLASS], XT, YT), ValueError,
     r"linear_probe's validation split is empty: every class of y_train has only 1 example, and the split "
     r"needs at least 2 examples per class \(one to fit, one to validate the l2 choice\)"),
])
def test_probe_seeds_and_an_empty_validation_split(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_probes_accept_numpy_integer_seeds():
    a = ev.linear_probe(X, Y, XT, YT, seed=np.int64(3))
    assert a == ev.linear_probe(X, Y, XT, YT, seed=3)


# ---------------------------------------------------------------------------------------
# What a mutation audit found untested: the probes' refit, l2 choice and folds, the labelled subsets.
# ---------------------------------------------------------------------------------------


def _noisy(seed, n, d=5):
    r = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = r.standard_normal((n, d)) + 0.7 * np.eye(3, d)[y]
    return x, y


def test_linear_probe_refits_on_the_whole_train_set():
    xtr, ytr = _noisy(0, 45)
    xte, yte = _noisy(1, 600)
    res = ev.linear_probe(xtr, ytr, xte, yte)
    model = ev.fit_logreg(xtr, ytr, l2=res["l2"])
    assert res["accuracy"] == np.mean(ev.predict(model, xte) == yte)


def test_linear_probe_chooses_l2_without_the_test_labels():
    xtr, ytr = _noisy(2, 60)
    xte, yte = _noisy(3, 200)
    a = ev.linear_probe(xtr, ytr, xte, yte)
    b = ev.linear_probe(xtr, ytr, xte, np.random.default_rng(4).permutation(yte))
    assert (a["l2"], a["val_accuracy"]) == (b["l2"], b["val_accuracy"])


def test_low_label_repeats_draw_different_subsets():
    xtr, ytr = _noisy(5, 150)
    xte, yte = _noisy(6, 300)
    res = ev.low_label_probe(xtr, ytr, xte, yte, labels_per_class=4, repeats=3, l2_grid=(0.1,))
    assert len(set(res["accuracies"])) > 1 and res["accuracy_std"] > 0


def test_labelled_subsets_are_drawn_without_replacement():
    from byol_ref.evaluate import _sample_per_class

    y = np.repeat([0, 1, 2], 6)
    sub = _sample_per_class(y, 6, np.random.default_rng(7))
    np.testing.assert_array_equal(np.sort(sub), np.arange(18))


def test_a_zero_row_stays_zero_in_the_collapse_monitor_and_the_knn():
    from byol_ref.evaluate import knn_predict, normalized_std

    z = np.random.default_rng(8).standard_normal((6, 4))
    z[2] = 0.0
    assert np.isfinite(normalized_std(z))
    pred = knn_predict(z, np.arange(6) % 2, np.vstack([np.zeros(4), z[0]]), k=1)
    assert pred[1] == 0  # the query equal to row 0 finds it, and the zero query gives no NaN-driven answer


def test_stratified_split_returns_sorted_indices():
    from byol_ref.evaluate import stratified_split

    tr, va = stratified_split(np.arange(40) % 4, 0.25, seed=3)
    np.testing.assert_array_equal(tr, np.sort(tr))
    np.testing.assert_array_equal(va, np.sort(va))


def test_stratified_split_is_a_seeded_permutation_within_each_class():
    y = np.arange(40) % 4
    vals = [ev.stratified_split(y, 0.25, seed=s)[1] for s in range(4)]
    assert len({tuple(v) for v in vals}) == 4  # each seed holds out other examples
    assert not any(np.array_equal(v, np.sort(np.concatenate([np.flatnonzero(y == c)[:3] for c in range(4)])))
                   for v in vals)  # (the first 3 of each class would be no permutation at all)


def test_linear_probe_validates_on_the_split_of_its_seed():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 3  # noise: the validation accuracy depends on the split
    x[:, 0] += y
    for seed in (1, 2, 3):
        out = ev.linear_probe(x, y, x[:5], y[:5], l2_grid=(0.1,), seed=seed)
        tr, va = ev.stratified_split(y, 0.2, seed)
        model = ev.fit_logreg(x[tr], y[tr], l2=0.1)
        assert out["val_accuracy"] == ev.accuracy(y[va], ev.predict(model, x[va]))


def test_low_label_folds_hold_out_one_part_and_fit_on_the_rest(monkeypatch):
    import byol_ref.evaluate as ev

    seen = []
    real = ev._select_l2

    def spy(folds, *a, **k):
        seen.append(folds)
        return real(folds, *a, **k)

    monkeypatch.setattr(ev, "_select_l2", spy)
    xtr, ytr = _noisy(9, 90)
    ev.low_label_probe(xtr, ytr, xtr[:30], ytr[:30], labels_per_class=10, repeats=1, n_folds=5, l2_grid=(0.1,))
    (folds,) = seen
    assert len(folds) == 5
    for tr, va in folds:
        assert tr.size == 24 and va.size == 6 and np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([va for _, va in folds])), np.arange(30))


def test_softmax_xent_backward_checks_dloss_and_cache_and_a_split_needs_labels():
    """Found by an API audit: dloss "1" and True were taken as numbers, NaN and inf gave a NaN or
    inf gradient, a (N,) dloss was 'only 0-dimensional arrays can be converted to Python scalars',
    a cache of None 'cannot unpack'; stratified_split of no labels was 'need at least one array to
    concatenate'."""
    logits = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0]])
    _, cache = ev.softmax_xent_forward(logits, np.array([0, 1, 1]))
    np.testing.assert_array_equal(ev.softmax_xent_backward(np.array(2.0), cache), ev.softmax_xent_backward(2.0, cache))
    np.testing.assert_array_equal(ev.softmax_xent_backward(np.float32(2.0), cache), ev.softmax_xent_backward(2, cache))
    for dloss in ("1", True, None, np.ones(3), np.ones(1)):
        with pytest.raises(TypeError, match="dloss must be a real number"):
            ev.softmax_xent_backward(dloss, cache)
    for dloss in (float("nan"), float("inf"), np.array(-np.inf)):
        with pytest.raises(ValueError, match="dloss must be finite"):
            ev.softmax_xent_backward(dloss, cache)
    for bad in (None, tuple(cache)):
        with pytest.raises(TypeError, match="cache must be the SoftmaxXentCache of softmax_xent_forward"):
            ev.softmax_xent_backward(1.0, bad)
    with pytest.raises(ValueError, match="y must hold at least one label, got 0"):
        ev.stratified_split(np.zeros(0, dtype=int), 0.5)


# ---------------------------------------------------------------------------------------
# Optional cross-check against scikit-learn (skipped where it is not installed, as in CI)
# ---------------------------------------------------------------------------------------


def _scaled_problem(seed, n=120, d=6, c=4):
    """Overlapping classes (so the optimum is finite) on features of very different scales and
    offsets (so the standardisation matters), and queries from another distribution."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    scale, offset = rng.uniform(0.1, 10.0, size=d), rng.normal(0.0, 5.0, size=d)
    x = (rng.normal(size=(n, d)) + 0.8 * np.eye(c, d)[y]) * scale + offset
    xq = rng.normal(size=(60, d)) * scale
    return x, y, xq


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logreg_matches_scikit_learn_at_a_fixed_l2(seed):
    """fit_logreg is sklearn's StandardScaler + LogisticRegression(C=1 / (l2 * N)): same optimum.

    byol-ref minimises mean_i CE_i + l2/2 ||w||^2 on standardised features (bias unpenalised);
    sklearn minimises C sum_i CE_i + 1/2 ||w||^2 (intercept unpenalised), the same objective times
    1/(C N) when C = 1/(l2 N). Both fits are run to a max-abs gradient of about 1e-10, and the
    objective is strongly convex in w (l2 >= 1e-3) and in the sum-zero part of b (the only part
    either fit moves: every gradient's b-part sums to 0 over the classes, and both start at 0;
    b is centred anyway before comparing), so the solutions differ by about gradient / curvature,
    well under 1e-7 (measured: <= 1e-9; sklearn's lbfgs, which stops on a relative decrease of
    the loss rather than on the gradient, is only good to ~1e-7, hence newton-cg). The 1e-8 on
    byol-ref's gradient at sklearn's solution is the same statement from the other side: sklearn's
    optimum is a stationary point of byol-ref's objective, so the two objectives are one.
    The test-set labels then agree too: the top two logits of every query are >= 2e-3 apart.
    """
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (an optional cross-check; CI has none)")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, xq = _scaled_problem(seed)
    for l2 in (1e-3, 1e-2, 1e-1):
        model = ev.fit_logreg(x, y, l2=l2, tol=1e-10, max_iter=2000)
        assert model.converged
        sk = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / (l2 * x.shape[0]), solver="newton-cg",
                                                                tol=1e-11, max_iter=10_000)).fit(x, y)
        scaler, lr = sk[0], sk[1]
        np.testing.assert_allclose(model.mean, scaler.mean_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model.std, scaler.scale_, rtol=1e-12)  # both the biased (ddof=0) std
        w_sk, b_sk = lr.coef_.T, lr.intercept_  # (D, C), (C,)
        np.testing.assert_allclose(model.w, w_sk, rtol=0, atol=1e-7)
        np.testing.assert_allclose(model.b - model.b.mean(), b_sk - b_sk.mean(), rtol=0, atol=1e-7)
        xs = (x - model.mean) / model.std
        loss, dw, db = ev.logreg_loss_and_grad(w_sk, b_sk, xs, y, l2)
        assert max(np.abs(dw).max(), np.abs(db).max()) <= 1e-8
        assert abs(loss - ev.logreg_loss_and_grad(model.w, model.b, xs, y, l2)[0]) <= 1e-12
        np.testing.assert_array_equal(ev.predict(model, xq), sk.predict(xq))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_matches_scikit_learn_up_to_its_tie_break(seed):
    """knn_predict is sklearn's KNeighborsClassifier(metric="cosine", algorithm="brute").

    Majority vote (weights="uniform"): the same label wherever one class has the most votes. Where
    two classes tie, sklearn takes the smaller label and byol-ref the class with the larger summed
    similarity (documented in knn_predict), so there the test only asks that byol-ref's label is
    one of the tied classes; k = 4 and 7 make such ties common (k even: 2-2 splits). With a
    temperature T, sklearn's weights=exp((1 - d) / T) of the cosine distance d = 1 - sim are
    byol-ref's exp(sim / T) times the constant exp(1 / T), the same vote: every label must agree
    (the top two weighted votes of these draws are >= 6e-4 of the total apart, far from rounding; no two
    neighbour similarities are equal in continuous data, so both take the same k neighbours).
    """
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (an optional cross-check; CI has none)")
    from sklearn.neighbors import KNeighborsClassifier

    x, y, xq = _scaled_problem(seed)
    n_tied = 0
    for k in (4, 7):
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(x, y)
        votes = sk.predict_proba(xq)  # (M, C): vote counts / k
        tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1  # (M,)
        pred = ev.knn_predict(x, y, xq, k=k)
        np.testing.assert_array_equal(pred[~tied], sk.predict(xq)[~tied])
        assert np.all(votes[np.flatnonzero(tied), pred[tied]] == votes[tied].max(axis=1))
        n_tied += int(tied.sum())
        for t in (0.5, 0.1, 0.07):
            sk_t = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                        weights=lambda dist, t=t: np.exp((1.0 - dist) / t)).fit(x, y)
            np.testing.assert_array_equal(ev.knn_predict(x, y, xq, k=k, temperature=t), sk_t.predict(xq))
    assert n_tied > 0  # the tie rule above was exercised


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_features_too_large_to_square_are_normalised_for_knn_and_refused_by_the_linear_probe():
    """Finite features whose squares overflow (entries near 1e300): the kNN's row norm was inf, so the
    row became zero, a neighbour of nothing, after NumPy's overflow warning; it is now a unit row in its
    own direction (other rows bit for bit as before). The probe's std was inf, so the fit and every
    prediction zeroed that feature without a word; it is refused, naming x, as training refuses it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 4))
    y = np.arange(30) % 3
    big = x.copy()
    big[0] *= 1e306  # |row|^2 ~ 1e612
    big[1] = 1.7e308  # its norm, 3.4e308, is beyond float64 itself
    n = ev._l2_normalize_rows(big)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(n[0], x[0] / np.linalg.norm(x[0]), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(n[1], 0.5, rtol=1e-15)
    assert np.array_equal(n[2:], ev._l2_normalize_rows(x[2:]))  # the others: as before, bit for bit
    # each scaled row is still its own nearest neighbour (as a zero row it matched none)
    assert ev.knn_accuracy(big, np.arange(30), big, np.arange(30), k=1) == 1.0
    with pytest.raises(ValueError, match=r"^x has values whose standardisation overflows to inf or NaN \(largest "
                                         r"magnitude 1\.7e\+308\); rescale the features$"):
        ev.fit_logreg(big, y, l2=0.1)
    for probe in (ev.linear_probe, ev.low_label_probe):  # (the probes' argument is x_train: it said "x")
        with pytest.raises(ValueError, match=r"^x_train has values whose standardisation overflows"):
            probe(big, np.arange(30) % 2, x, np.arange(30) % 2)


def test_knn_rows_are_divided_by_their_norm_clamped_at_1e_12_as_torch_s_normalize():
    """max(||row||, 1e-12), as the docstring and F.normalize have it: a row of norm 5e-13 comes out of norm
    0.5, a zero row stays zero, a row of norm 1e-12 is a unit row."""
    n = ev._l2_normalize_rows(np.array([[3e-13, 4e-13], [0.0, 0.0], [6e-13, 8e-13], [3.0, 4.0]]))
    np.testing.assert_allclose(n, [[0.3, 0.4], [0.0, 0.0], [0.6, 0.8], [0.6, 0.8]], rtol=1e-15, atol=0)


def test_the_collapse_monitors_of_features_beyond_1e150_read_as_the_features_scaled_down():
    """Features of 1e154 (finite, their squares not) read effective rank 0, "no spread at all", and
    mean_norm inf: the norm in the rank's tolerance overflowed. Both now hold what the same features
    read at another exponent; below 1e150 nothing changes, bit for bit."""
    z = np.random.default_rng(0).standard_normal((64, 16))
    want = ev.collapse_report(z, np.arange(64) % 4)
    for scale in (1e154, 2.0**600, 1e300):
        got = ev.collapse_report(z * scale, np.arange(64) % 4)
        assert got["effective_rank"] == pytest.approx(want["effective_rank"], rel=1e-12)
        assert got["mean_norm"] == pytest.approx(want["mean_norm"] * scale, rel=1e-12)
        for key in ("normalized_std", "mean_cos", "cos_within", "cos_between"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-15), key



@pytest.mark.parametrize("scale", [1e-160, 2.0**-700, 1e-300, 2.0**-1040])
def test_the_collapse_monitors_of_features_below_1e_150_read_as_the_features_scaled_up(scale):
    """Features whose every value is below 1e-150 have squares that underflow: mean_norm read 0 (or a
    subnormal of few digits), and with the norm in the rank's tolerance at 0, rows equal but for
    rounding read an effective rank of 1.6, not 0 ("no spread at all"). Both now read what the same
    features read at 1 (scaled by a power of two, exactly: even subnormal inputs, 2**-1040, keep their
    digits). normalized_std and the cosines keep the 1e-12 floor of every l2 normalisation here, as
    lightly's and torch's do: rows that short are not scaled up."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 16))
    want = ev.collapse_report(z, np.arange(64) % 4)
    got = ev.collapse_report(z * scale, np.arange(64) % 4)
    assert got["effective_rank"] == pytest.approx(want["effective_rank"], rel=1e-12)
    # (approx's default abs of 1e-12 would pass any number this small: one subnormal step instead, the
    # rounding of a result as small as 2**-1040's)
    assert got["mean_norm"] == pytest.approx(want["mean_norm"] * scale, rel=1e-12, abs=2.0**-1074)
    assert got["normalized_std"] < 1e-100 < want["normalized_std"]  # (the floor, as before)
    same = np.tile(0.1 * rng.standard_normal((1, 8)), (20, 1))
    same[:, 0] += 1e-17 * rng.standard_normal(20)  # (rounding-level spread: 1e-16 of the values)
    assert ev.effective_rank(same) == 0.0
    assert ev.effective_rank(same * scale) == 0.0
    assert ev.effective_rank(np.zeros((4, 3))) == 0.0  # (all zero: no scale to find, nothing divided)

# ---------------------------------------------------------------------------------------
# Paths no test ran (a coverage audit)
# ---------------------------------------------------------------------------------------


def test_fit_logreg_with_tol_0_on_separable_data_stops_where_the_loss_has_rounded_to_0():
    """A user asked for tol=0 (any tol below float64's reach does the same) with l2=0 on separable data:
    the optimum is at infinity and no gradient reaches tol. Once every margin is past ~37 the loss rounds
    to exactly 0 and no step can lower it: the line search fails along the quasi-Newton direction, then
    along steepest descent (L-BFGS's two fallbacks). The fit stops there, long before max_iter, says
    converged=False, and holds a model that separates the set, at the loss's infimum 0 with a gradient at
    rounding level: nothing was left to gain. (Without the last fallback it spun on to max_iter.)"""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    model = ev.fit_logreg(x, y, l2=0.0, tol=0.0, max_iter=500)
    assert not model.converged and model.n_iter < 200, model.n_iter
    loss, dw, db = ev.logreg_loss_and_grad(model.w, model.b, (x - model.mean) / model.std, y, 0.0)
    assert loss == 0.0 and max(np.abs(dw).max(), np.abs(db).max()) < 1e-15
    assert ev.accuracy(y, ev.predict(model, x)) == 1.0


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ev.accuracy(np.zeros((2, 2), np.int64), np.zeros(2, np.int64)), ValueError,
     r"^y_true must be 1-D \(N,\), got shape \(2, 2\)$"),
    (lambda: ev.fit_logreg(X, Y[:, None], l2=0.1), ValueError, r"^y must be 1-D \(N,\), got shape \(36, 1\)$"),
    (lambda: ev.accuracy(np.zeros(0, np.int64), np.zeros(0, np.int64)), ValueError,
     r"^y_true must hold at least one label, got 0$"),
    (lambda: ev.fit_logreg(X, Y, l2="0.1"), TypeError, r"^l2 must be a real number, got str '0.1'$"),
    (lambda: ev.fit_logreg(X, Y, l2=0.1, tol=None), TypeError, r"^tol must be a real number, got NoneType None$"),
    (lambda: ev.linear_probe(X, Y, XT, YT, l2_grid=0.1), TypeError,
     r"^l2_grid must be a sequence of numbers, got float$"),
    (lambda: ev.probe_report({"a": (X, XT)}, Y, YT, progress=3), TypeError,
     r"^progress must be None or a callable, got int$"),
    (lambda: ev.format_table({"name": "a", "knn": 0.5}), TypeError, r"^rows must be a list of dicts, got dict$"),
])
def test_labels_numbers_grids_progress_and_rows_of_the_wrong_kind_are_named(call, exc, match):
    """A label array of another rank, no labels at all, an l2 or tol that is no number, one l2 for the
    grid, a progress that cannot be called, one row for the table: each is refused naming the argument,
    what it got and what was expected."""
    with pytest.raises(exc, match=match):
        call()


def test_an_l2_grid_written_as_a_string_is_named_as_a_whole():
    """l2_grid="0.1,1" (a grid copied from a command line or a config file) was taken as the sequence of
    its characters, and refused as "l2_grid entry must be a real number, got str '0'": a message about a
    '0' the user never wrote. The string is now refused as the grid it was meant to be."""
    for grid in ("0.1,1", "0.1", b"0.1"):
        with pytest.raises(TypeError, match=rf"^l2_grid must be a sequence of numbers, got "
                                            rf"{type(grid).__name__} {re.escape(repr(grid))}$"):
            ev.linear_probe(X, Y, XT, YT, l2_grid=grid)


# ---------------------------------------------------------------------------------------
# What scripts/mutation_sweep.py found untested (2026-12-02).
# ---------------------------------------------------------------------------------------


def test_the_probe_protocol_is_the_one_the_readme_gives():
    """README: l2 from 1e-4, 1e-3, 1e-2, 0.1 and 1; a fifth of each class to validate the full probe;
    5-fold cross-validation, five times, for the low-label probe. Any of them changed passed every test."""
    assert ev.DEFAULT_L2_GRID == (1e-4, 1e-3, 1e-2, 0.1, 1.0)
    assert (ev.DEFAULT_VAL_FRACTION, ev.DEFAULT_REPEATS, ev.DEFAULT_N_FOLDS) == (0.2, 5, 5)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # (numpy.matrix's own)
def test_the_probes_copy_plain_arrays_of_any_kind_and_count_what_is_not_finite():
    """The probes only copy their inputs to the host, so a numpy.matrix or a masked array with nothing
    masked is taken as its values (the step refuses them: it computes on them as given); an empty
    feature array is refused, and a non-finite one by its count of NaN and inf values."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 3)), np.arange(12) % 3
    want = ev.knn_accuracy(x, y, x, y, k=3)
    assert ev.knn_accuracy(np.asmatrix(x), np.ma.masked_array(y), np.ma.masked_array(x), y, k=3) == want
    with pytest.raises(ValueError, match=r"x_train must have at least 1 row\(s\) and 1 column, got shape \(0, 3\)"):
        ev.knn_accuracy(x[:0], y[:0], x, y, k=3)
    bad = x.copy()
    bad[0, :2] = np.nan
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"x_test must be finite, got 3 NaN/inf value\(s\) in shape \(12, 3\)"):
        ev.knn_accuracy(x, y, bad, y, k=3)


def test_a_constant_feature_of_large_magnitude_is_not_amplified():
    """A feature whose computed spread is rounding noise of its magnitude (12345.6789 in every row, a
    std of about 1e-12 after the mean's rounding) standardises to 0 with std 1, however large the
    value: the threshold is relative to the feature's magnitude (1e-12 of it), not an absolute 1e-12."""
    col = np.full(7, 12345.6789) + np.array([0, 0, 0, 0, 0, 0, 1]) * 1e-11
    x = np.stack([col, np.arange(7.0)], axis=1)
    mean, std = ev._standardise_stats(x)
    assert 0 < x[:, 0].std() <= 1e-12 * 12345.6789 and std[0] == 1.0 and std[1] == x[:, 1].std()


def test_the_probes_defaults_and_their_smallest_settings():
    """The defaults the README's table was made with (kNN k 20, 10 labels a class, seed 0, at most 500
    L-BFGS iterations), and the smallest settings each check takes: 2 labels a class, 2 folds, 1
    iteration, 1 draw (whose sd is 0, not the NaN of a one-sample sd). Each passed every test changed."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 12)
    x = rng.standard_normal((36, 4)) + y[:, None]
    assert np.array_equal(ev.knn_predict(x, y, x), ev.knn_predict(x, y, x, k=20))
    assert ev.knn_accuracy(x, y, x, y) == ev.knn_accuracy(x, y, x, y, k=20)
    assert ev.linear_probe(x, y, x, y) == ev.linear_probe(x, y, x, y, seed=0, max_iter=500)
    assert ev.low_label_probe(x, y, x, y) == ev.low_label_probe(x, y, x, y, labels_per_class=10, seed=0,
                                                                max_iter=500)
    for a, b in zip(ev.stratified_split(y, 0.25), ev.stratified_split(y, 0.25, seed=0)):
        assert np.array_equal(a, b)
    assert ev.stratified_split(y, 0.25)[0].tolist() != ev.stratified_split(y, 0.25, seed=1)[0].tolist()
    one = ev.low_label_probe(x, y, x, y, labels_per_class=2, n_folds=2, repeats=1, max_iter=1)
    assert one["accuracy_std"] == 0.0 and math.isfinite(one["accuracy"])
    for name, bad in (("labels_per_class", 1), ("n_folds", 1), ("max_iter", 0)):
        with pytest.raises(ValueError, match=f"{name} must be >= {2 if name != 'max_iter' else 1}, got {bad}"):
            ev.low_label_probe(x, y, x, y, **{name: bad})
    with pytest.raises(ValueError, match="max_iter must be >= 1, got 0"):
        ev.linear_probe(x, y, x, y, max_iter=0)


def test_knn_takes_the_first_train_rows_tied_at_the_kth_place_and_no_more():
    """k = 2: one train row above the k-th similarity, three tied at it. The first tied row joins the one
    above (one vote each, the tie going to the larger summed similarity: class 0); taking more than
    k - above of the tied rows gave a wrong-sized neighbour list and no test reached it. An empty
    query gets no labels."""
    x_train = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    y_train = np.array([0, 1, 1, 1])
    query = np.array([[1.0, 0.0]])
    assert ev.knn_predict(x_train, y_train, query, k=2).tolist() == [0]
    assert ev.knn_predict(x_train, y_train, query, k=4).tolist() == [1]  # (all four vote)
    assert ev.knn_predict(x_train, y_train, query[:0], k=2).shape == (0,)
