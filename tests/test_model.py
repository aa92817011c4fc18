"""The whole objective: every online gradient of loss_and_grads checked numerically in float64
for each layout, norm and batch-statistics convention; the API; EMA identities."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import byol_ref as byol
from byol_ref.gradcheck import directional_check, grad_error, numerical_gradient, random_direction
from conventions import MODEL_PAIRS, model_conventions, pair_ids
from recorded import layer_inputs, recorded

seeds = st.integers(0, 2**32 - 1)

CONFIGS = [
    dict(layout="paper", norm="batch", views="separate"),
    dict(layout="paper", norm="batch", views="concat"),
    dict(layout="paper", norm="layer", predictor_dim=3),  # layer norm over 2 features is +-1: no gradient upstream
    dict(layout="paper", norm="none"),
    dict(layout="edifice"),
    dict(layout="edifice", symmetric=True),
    dict(layout="paper", norm="batch", head_bias=True, hidden_bias=False, sym_reduce="mean",
         loss_form="2-2cos", norm_eps_mode="norm", init="torch", bn_running="torch"),
    dict(layout="paper", norm="batch", target_bn="running", target_init="independent", bn_var="one_pass"),
    dict(layout="paper", norm="batch", hidden_bias=False, encoder_bias=True),  # lightly heads, biased backbone
    dict(layout="paper", norm="batch", use_predictor=False),
    # BN-free (Richemond et al.): group norm over 2 groups of 3 features, standardised weights
    dict(layout="paper", norm="group", norm_groups=2, weight_std=True, hidden_size=6, projector_hidden_dim=6,
         predictor_dim=6),
    dict(layout="paper", norm="batch", weight_std=True, ws_eps=1e-3),
    # BN-free with a per-feature affine in place of each norm (data-dependent init: train.data_init)
    dict(layout="paper", norm="affine"),
    # batch statistics per shard: data parallel without SyncBN, or gradient accumulation
    dict(layout="paper", norm="batch", bn_shards=2),
    dict(layout="paper", norm="batch", views="concat", bn_shards=3, bn_shard_running="sequential", bn_running="torch"),
    # byol-pytorch 0.9's default: a simplicial embedding (Linear -> BN -> grouped softmax) before the projector
    dict(layout="paper", norm="batch", views="concat", sem_simplices=2, sem_simplex_dim=3, sem_temperature=0.5,
         head_bias=True, bn_running="torch"),
    dict(layout="paper", norm="layer", predictor_dim=3, sem_simplices=3, sem_simplex_dim=2, sem_temperature=2.0),
]


def _randomize(network, rng):
    """Random gamma/beta and biases (never 1 and 0), and non-trivial running stats."""
    params = {k: (rng.standard_normal(v.shape) * 0.5 + (1.0 if k.endswith("gamma") else 0.0))
              if k.endswith(("gamma", "beta", "bias")) else v for k, v in network.params.items()}
    buffers = {k: (rng.uniform(0.5, 2, v.shape) if k.endswith("var") else
                   rng.standard_normal(v.shape) * 0.1 if k.endswith("mean") else v)
               for k, v in network.buffers.items()}
    return network._replace(params=params, buffers=buffers)


def _well_conditioned(online, target, v1, v2, roles=("online", "target")):
    """Avoid degenerate draws (STYLE.md 13): every batch-norm input feature must vary over
    its batch (a near-constant feature gives rstd ~ 1/sqrt(eps), a correct but so curved
    objective that no finite difference resolves it), and no ReLU input may sit within
    reach of the finite-difference step of its kink. Only the networks in ``roles`` are
    checked: those whose forward the finite differences perturb.

    A feature that is exactly 0 on every row is let through: a dead ReLU's (the edifice
    layout normalises after its ReLU), which stays 0 under every step the kink margin allows,
    so nothing curves and nothing rounds. Counted, it let 1 draw in 45 of batch norm after the
    edifice ReLU through (pair 22; 26 in 30 now), and that pair was all but never checked. The
    spread asked of the others, 5% of 1 + |mean|, is not lowered: the rounding of a narrow
    feature grows as 1/spread, and at 1% a bias before batch norm (true gradient 0) read
    1.3e-5 of the model's gradient in its differences at h=1e-5 (pair 9, seed 6222, n=3;
    2e-7 at h=1e-4: rounding)."""
    seen = recorded(online, target, v1, v2)
    for role in roles:
        for kind, _, x in layer_inputs(seen, online.config, role):
            if kind == "batch_norm" and _narrow(x, axis=-2):
                return False
            if kind == "group_norm" and _narrow(x.reshape(*x.shape[:-1], online.config.norm_groups, -1), axis=-1):
                return False  # (the same within each sample's feature group)
            if kind == "relu" and np.abs(x).min() < 1e-3:
                return False
    return True


def _narrow(x, axis):
    """Whether some slice of x along ``axis`` spreads over less than 5% of 1 + |its mean|, and is
    not exactly 0 throughout (see _well_conditioned)."""
    spread = x.std(axis=axis) / (1 + np.abs(x.mean(axis=axis)))
    return bool(np.where((x == 0).all(axis=axis), np.inf, spread).min() < 0.05)


def _relu_signs(seen, config):
    """Which of each online ReLU input's entries are positive, from a dict of recorded intermediates."""
    return [x > 0 for kind, _, x in layer_inputs(seen, config, "online") if kind == "relu"]


def _no_kink_crossed(online, target_of, v1, v2, u, h):
    """True when no online ReLU input changes sign between params - 2h u and params + 2h u, the
    interval the directional difference samples (the loss is smooth there; a crossing makes the
    difference quotient wrong while the gradient is right)."""
    ends = []
    for t in (-2 * h, 2 * h):
        params = {k: v + t * u[k] for k, v in online.params.items()}
        ends.append(_relu_signs(recorded(online._replace(params=params), target_of(params), v1, v2), online.config))
    return all(np.array_equal(a, b) for a, b in zip(*ends))


def _small(config_kw, seed):
    kw = {**dict(projection_dim=3, predictor_dim=2, hidden_size=5, projector_hidden_dim=4), **config_kw}
    online, target = byol.build(4, seed=seed, **kw)
    rng = np.random.default_rng(seed + 1)
    return _randomize(online, rng), _randomize(target, rng), rng


@pytest.mark.parametrize("config_kw", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@settings(max_examples=6)  # each example is ~600 objective evaluations
@given(seed=st.integers(0, 10_000), n=st.integers(3, 6))
def test_every_online_gradient_matches_finite_differences(config_kw, seed, n):
    _check_online_gradients(config_kw, seed, n)


@pytest.mark.parametrize("config_kw", MODEL_PAIRS, ids=pair_ids(MODEL_PAIRS))
@settings(max_examples=max(settings.default.max_examples // 40, 1))  # (1 in CI, ~1.7 s each; 3 in a search)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 5))
def test_every_online_gradient_matches_finite_differences_at_every_pair_of_conventions(config_kw, seed, n):
    """CONFIGS holds a few conventions in each line; tests/conventions.py's MODEL_PAIRS, a few dozen lines in which
    every value of every convention (layout, norm, biases, init, target init, batch-norm statistics, shards and
    running averages, views, eps modes, loss form, symmetry, the simplicial embedding) meets every value of every
    other, so that no two that interact go unchecked for want of a line that holds both. The no-stop-gradient
    ablation has a test of its own, below."""
    _check_online_gradients_at(config_kw, seed, n)


@settings(max_examples=max(settings.default.max_examples // 10, 1))
@given(config_kw=model_conventions(), seed=st.integers(0, 10_000), n=st.integers(3, 5))
def test_every_online_gradient_matches_finite_differences_at_drawn_conventions(config_kw, seed, n):
    """The conventions drawn at random, a tenth of the profile's examples (4 in CI, 15 under the search profile),
    beyond the pairs above. (A sweep of 2,000 draws, 1,598 of them conditioned well enough to check,
    found every gradient right; most of the rest put a batch or group norm after the edifice layout's ReLU, whose
    zeros leave a feature or a group without spread on 3 to 5 rows.)"""
    _check_online_gradients_at(config_kw, seed, n)


def _check_online_gradients_at(config_kw, seed, n):
    config_kw = {**config_kw, "stop_gradient": True}
    if config_kw.get("norm") == "group" or config_kw.get("weight_std"):  # (even widths: any norm_groups drawn)
        config_kw = {**config_kw, "hidden_size": 6, "projector_hidden_dim": 6, "predictor_dim": 6}
    # (20 networks: a simplicial embedding at temperature 2 before batch norm narrows that norm's input, and 1
    # network in 10 to 100 has views conditioned well enough in 5 draws (pair 9; 19 seeds in 30 with 20 networks).
    # With 1, hypothesis 6.80 failed that pair for filtering too much: 50 draws, none checked.)
    _check_online_gradients(config_kw, seed, n, tries=5, networks=20)


@pytest.mark.parametrize("config_kw", [c for c in CONFIGS if c.get("views") == "concat"],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@settings(max_examples=4)
@given(seed=st.integers(0, 10_000))
def test_concat_views_take_one_row_of_each_view_per_shard(config_kw, seed):
    """views="concat" takes batch statistics over both views' rows: one row of each (per shard) is 2 rows
    for batch norm, as a DDP replica with a batch of 1 per GPU and concatenated views has (torch takes it;
    byol-ref refused it). Separate statistics still need 2 rows of each view. (Two rows put a batch-norm
    feature's values close together more often than 3 to 6 do: the views are drawn until they are not, and
    the networks too. With one network a seed, the simplicial embedding's config found well-conditioned views
    for 30 seeds of 150, and the search profile once drew 3 such seeds in 53, which hypothesis refuses as
    filtering too much; with 10 networks a seed, 50 seeds of 60 had one.)"""
    _check_online_gradients(config_kw, seed, 1, tries=30, networks=10)
    online, target, rng = _small({**config_kw, "views": "separate"}, seed)
    v1, v2 = rng.standard_normal((config_kw.get("bn_shards", 1), 4)), rng.standard_normal((1, 4))
    with pytest.raises(ValueError, match=r"^view1 must have at least 2 rows" if v1.shape[0] == 1 else
                       r"^view1 has 3 rows, which bn_shards=3 cannot split into equal shards of at least 2 rows"):
        byol.loss_and_grads(online, target, v1, v2 if v1.shape[0] == 1 else v1)


def _resolvable(loss, scale, config):
    """Whether central differences at h = 1e-5 can resolve, to the check's 1e-5, a gradient whose largest entry
    is ``scale`` at this loss.

    A dead draw (scale 0: with norm="none", the predictor's 2 hidden ReLUs off on every row, so p = 0 and no small
    change of a parameter moves the loss; 56 networks of 200 at pair 1) checks nothing. The finite differences carry
    the rounding of each evaluation of L, delta: the five-point stencil weighs four losses by 1, 8, 8 and 1 over
    12 h, so at worst 1.5 delta / h an entry. An entry whose true gradient is about 0 is held to 1e-5 of
    grad_error's floor, 1e-4 of the scale, so that worst case must stay within half of 1e-9 scale. delta is eps
    times the size of what L is computed from, not of L itself; the per-sample terms weigh W in all (2 for a
    symmetric sum, else 1):

    - 2 - 2 cos and -cos subtract cos, rounded to about eps |n(p)| |n(z)| <= eps, from a constant: delta is at
      most 2 eps W (2 - 2 cos) or eps W (-cos), however small L is, and scale > 0.067 W (2 - 2 cos: 0.13 W) is
      asked. (A floor of 0.01 on |L| stood for that constant before, after pair 4, seed 2850, n=3: L 4.6e-7,
      scale 2.4e-6. The search profile then drew pair 4, seed 61, n=3, 2 - 2 cos summed over both views: L
      2.1e-5, scale 0.011, an encoder.fc1 entry off by 3.0e-11 at h = 1e-5, 1.4e-11 at 3e-5 and 4e-13 at
      1e-3, rounding growing as 1/h, against 1.1e-11 allowed; delta was 2e-16. The same draw with mse was off
      by 5e-14.)
    - ||n(p) - n(z)||^2 squares differences that each carry the rounding of n(p), eps |n(p)_j|: delta is at
      most eps (|L| + 2 sum_rows w sqrt(L_row)) <= eps (|L| + 2 sqrt(W |L|)). (The sqrt term is new: the bound
      before took delta as eps |L|, after an empirical guard of scale > 0.02 |L| had passed batch norm's seed
      9870, n=3, at 0.024 |L|: an encoder.fc1 entry off by 1.0e-10 at h = 1e-5, 3.3e-11 at 3e-5 and 1.0e-12
      at 1e-3, against 9.2e-11 allowed.)

    Of the first well-conditioned networks of 1,490 drawn conventions, this sets aside 45, where the bound
    before set aside 28: 19 of 498 with mse, 14 of 583 with 2 - 2 cos and 12 of 409 with -cos (the check then
    draws the next network).
    """
    eps, weight = np.finfo(np.float64).eps, 2.0 if config.symmetric and config.sym_reduce == "sum" else 1.0
    size = abs(float(loss))
    if config.loss_form == "mse":
        delta = eps * (size + 2 * np.sqrt(weight * size))
    else:
        delta = eps * weight * (2 if config.loss_form == "2-2cos" else 1)
    return scale > 1e-6 and 1.5 * delta / 1e-5 < 0.5 * 1e-5 * 1e-4 * scale


def test_a_cosine_loss_whose_constant_outrounds_a_small_gradient_is_not_resolvable():
    """The search profile's draw of _resolvable's docstring (pair 4, seed 61, n=3): 2 - 2 cos summed over both
    views, L 2.1e-5 and a gradient of 0.011 at its largest. Taking L's rounding as that of max(|L|, 0.01), the
    check passed it as resolvable, and its differences were rounding past the 1e-5 asked; the rounding is that
    of the constant 2, as with mse the same draw is resolved (off by 5e-14)."""
    kw = dict(layout="paper", norm="layer", ln_var="one_pass", use_predictor=False, target_init="copy",
              target_bn="running", loss_form="2-2cos", symmetric=True, sym_reduce="sum", head_bias=False,
              norm_eps_mode="add", sem_simplices=2, sem_simplex_dim=2, sem_temperature=2.0)
    online, target, rng = _small(kw, 61)
    v1, v2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert _well_conditioned(online, target, v1, v2, roles=("online",))  # (the draw the check took)
    res = byol.loss_and_grads(online, target, v1, v2)
    scale = max(float(np.abs(g).max()) for g in res.grads.values())
    assert 1e-5 < float(res.loss) < 1e-4 and 0.01 < scale < 0.02
    assert not _resolvable(res.loss, scale, online.config)
    mse = online.config.replace(loss_form="mse")
    res = byol.loss_and_grads(online._replace(config=mse), target._replace(config=mse), v1, v2)
    assert _resolvable(res.loss, max(float(np.abs(g).max()) for g in res.grads.values()), mse)


def _check_online_gradients(config_kw, seed, n, tries=1, networks=1):
    """Every online gradient of loss_and_grads against central differences, for ``n`` rows per view and
    shard; the first of ``tries`` draws of the views (from the seed) that is well conditioned, for the
    first of ``networks`` draws of the networks (the seed's, then seed + 10_001 k) that has one and a gradient
    the differences resolve."""
    n *= config_kw.get("bn_shards", 1)  # n rows per shard
    for k in range(networks):
        online, target, rng = _small(config_kw, seed + 10_001 * k)
        # Under stop-gradient the target has its own parameters and its forward does not move when an
        # online parameter is perturbed, so only the online network must be away from kinks.
        views = ((rng.standard_normal((n, 4)), rng.standard_normal((n, 4))) for _ in range(tries))
        v1, v2 = next((v for v in views if _well_conditioned(online, target, *v, roles=("online",))), (None, None))
        if v1 is None:
            continue
        res = byol.loss_and_grads(online, target, v1, v2)
        # A bias followed by batch norm has a true gradient of exactly 0, so errors are
        # measured against the scale of the whole model's gradient.
        scale = max(float(np.abs(g).max()) for g in res.grads.values())
        if _resolvable(res.loss, scale, online.config):
            break
    else:
        assume(False)
    assert list(res.grads) == list(online.params)

    def loss_of(params, crossed=None):
        """The loss; with a list ``crossed``, noting there whether an online ReLU input changed sign."""
        if crossed is None:
            return byol.loss_and_grads(online._replace(params=params), target, v1, v2).loss
        seen = recorded(online._replace(params=params), target, v1, v2)
        if not all(np.array_equal(a, b) for a, b in zip(signs, _relu_signs(seen, online.config))):
            crossed.append(True)
        return seen["loss.total"]

    for key, value in online.params.items():
        def f(x, key=key, crossed=None):
            return loss_of({**online.params, key: x}, crossed)
        num = numerical_gradient(f, value.copy(), h=1e-5)  # small: _well_conditioned keeps ReLUs 1e-3 from kinks
        error = grad_error(res.grads[key], num, scale=scale)
        if error >= 1e-5:
            # A difference quotient across a kink measures nothing (the gradient is right, the oracle is
            # not): such a draw is rejected, never passed. 1e-3 from a kink is not always far enough
            # (search seed 6188, n=5, the torch-init config: a ReLU input 1.8e-3 from its kink, behind
            # three batch norms, moved past it when one encoder.fc1 weight moved by 2e-5; h=1e-6 agreed).
            # The same differences again, watching the signs: only here, where the comparison failed
            # (the assume or the assert ends the example, so this runs once at most).
            signs = _relu_signs(recorded(online, target, v1, v2), online.config)  # (read by loss_of)
            crossed = []
            numerical_gradient(lambda x: f(x, crossed=crossed), value.copy(), h=1e-5)
            assume(not crossed)
        assert error < 1e-5, key


@given(seed=st.integers(0, 10_000), n=st.integers(3, 5), views=st.sampled_from(["separate", "concat"]))
def test_no_stop_gradient_ablation_is_the_gradient_with_shared_weights(seed, n, views):
    # With stop_gradient=False and the target sharing the online weights (tau = 0), the
    # returned gradient is the full derivative of L(theta) through both branches.
    online, _, rng = _small(dict(stop_gradient=False, views=views), seed)
    target_keys = [k for k in online.params if not k.startswith("predictor.")]

    def target_of(params):
        return byol.build_target(4, online=online._replace(params=params))

    v1, v2 = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    assume(_well_conditioned(online, target_of(online.params), v1, v2))
    u = random_direction(online.params, seed)
    assume(_no_kink_crossed(online, target_of, v1, v2, u, 1e-5))
    res = byol.loss_and_grads(online, target_of(online.params), v1, v2)
    # a dead draw (seed 1045, n = 3: the loss is flat, the gradient rounding noise) checks nothing
    assume(max(float(np.abs(g).max()) for g in res.grads.values()) > 1e-6)

    def loss_fn(params):
        return byol.loss_and_grads(online._replace(params=params), target_of(params), v1, v2).loss

    a, num, err = directional_check(loss_fn, online.params, res.grads, direction=u, h=1e-5)
    assert err < 1e-6, (a, num)
    assert set(target_keys) < set(online.params)


@settings(max_examples=3)  # ~100k parameters: a few draws are enough for this one
@given(seed=st.integers(0, 10_000))
def test_directional_check_on_a_default_size_network(seed):
    online, target = byol.build(12, seed=seed)  # the defaults: H 256, P 256, Q 64
    rng = np.random.default_rng(seed)
    v1, v2 = rng.standard_normal((8, 12)), rng.standard_normal((8, 12))
    u = random_direction(online.params, seed)
    # ~13k ReLU inputs: now and then one sits within the stencil's reach of its kink (seed 449
    # has one at 7e-8); such a draw checks nothing. h = 1e-4: with 1e-5 the rounding of the loss
    # (~1e-15 / h) is 2e-7 of a small directional derivative (seed 2798: 6.5e-5); with 1e-4 the
    # accepted draws agree to 2e-9 or better.
    h = 1e-4
    assume(_no_kink_crossed(online, lambda p: target, v1, v2, u, h))
    res = byol.loss_and_grads(online, target, v1, v2)
    loss_fn = lambda p: byol.loss_and_grads(online._replace(params=p), target, v1, v2).loss  # noqa: E731
    _, _, err = directional_check(loss_fn, online.params, res.grads, direction=u, h=h)
    assert err < 1e-7


def test_directional_check_next_to_a_relu_kink():
    """The draw hypothesis found (seed 449): a ReLU input at 7e-8 from its kink. The h = 1e-5
    stencil crosses it and disagrees (1e-3); a stencil that stays on one side agrees, so the
    gradient is right and the guard above is what the default-size check needs."""
    online, target = byol.build(12, seed=449)
    rng = np.random.default_rng(449)
    v1, v2 = rng.standard_normal((8, 12)), rng.standard_normal((8, 12))
    u = random_direction(online.params, 449)
    assert not _no_kink_crossed(online, lambda p: target, v1, v2, u, 1e-5)
    assert _no_kink_crossed(online, lambda p: target, v1, v2, u, 1e-7)
    res = byol.loss_and_grads(online, target, v1, v2)
    loss_fn = lambda p: byol.loss_and_grads(online._replace(params=p), target, v1, v2).loss  # noqa: E731
    assert directional_check(loss_fn, online.params, res.grads, direction=u, h=1e-5)[2] > 1e-4
    assert directional_check(loss_fn, online.params, res.grads, direction=u, h=1e-7)[2] < 1e-6


def test_loss_is_the_symmetrised_official_objective():
    online, target, rng = _small({}, 3)
    v1, v2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    res = byol.loss_and_grads(online, target, v1, v2)
    p1 = byol.forward(online, v1, train=True)[0]["p"]
    p2 = byol.forward(online, v2, train=True)[0]["p"]
    z1 = byol.forward(target, v1, train=True)[0]["z"]
    z2 = byol.forward(target, v2, train=True)[0]["z"]

    def ell(p, z):  # official: x * rsqrt(max(sum x^2, 1e-12)); a dead sample has p = 0 exactly
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-6)
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)
        return ((p - z) ** 2).sum(1)

    want = np.mean(ell(p1, z2) + ell(p2, z1))
    assert float(res.loss) == pytest.approx(want, rel=1e-12)
    assert 0 <= float(res.loss) <= 8
    # the public one-sided loss is one of the two terms
    assert float(byol.loss(p1, z2)) == pytest.approx(np.mean(ell(p1, z2)), rel=1e-12)


def test_concat_views_share_batch_statistics():
    online, target, rng = _small(dict(views="concat"), 4)
    v1, v2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    res = byol.loss_and_grads(online, target, v1, v2)
    out, _ = byol.forward(online, np.concatenate([v1, v2]), train=True)
    np.testing.assert_allclose(res.outputs["online.p"].reshape(10, -1), out["p"], rtol=1e-12)
    # one running-stat update per step with concatenated views, two with separate views
    assert int(res.online_buffers["encoder.norm1.count"]) == 1
    online2, target2, _ = _small({}, 4)
    assert int(byol.loss_and_grads(online2, target2, v1, v2).online_buffers["encoder.norm1.count"]) == 2


def test_to_groups_lays_out_shards_in_execution_order():
    from byol_ref.model import Config, from_groups, to_groups

    x = np.arange(2 * 6).reshape(2, 6, 1)  # view v, row i holds 6 v + i
    sep = Config(encoder_dim=1, bn_shards=3)
    # separate: shard by shard, each view in turn (s0 v1, s0 v2, s1 v1, ...), N/S rows each
    np.testing.assert_array_equal(to_groups(x, sep)[..., 0], [[0, 1], [6, 7], [2, 3], [8, 9], [4, 5], [10, 11]])
    cat = sep.replace(views="concat")
    # concat: one group per shard, its rows of view 1 then of view 2 (each replica concatenates its own)
    np.testing.assert_array_equal(to_groups(x, cat)[..., 0], [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]])
    for cfg in (sep, cat, sep.replace(bn_shards=1), cat.replace(bn_shards=1)):
        np.testing.assert_array_equal(from_groups(to_groups(x, cfg), cfg, 2), x)
    one = to_groups(x, cat.replace(bn_shards=1))
    assert one.shape == (1, 12, 1) and np.shares_memory(one, x)  # S = 1: a reshape, no copy


@settings(max_examples=25)
@given(seed=seeds, shards=st.integers(2, 3), rows=st.integers(2, 4), views=st.sampled_from(["separate", "concat"]),
       mode=st.sampled_from(["first", "sequential"]), bn_running=st.sampled_from(["haiku", "torch"]),
       target_bn=st.sampled_from(["batch", "running"]))
def test_bn_shards_is_the_mean_of_per_shard_steps(seed, shards, rows, views, mode, bn_running, target_bn):
    """S shards = S replicas (or micro-batches) each running the unsharded step on its own rows:
    the loss and every gradient are the mean of theirs; the running statistics are those of
    shard 0 ("first", DDP) or of the shards chained in order ("sequential", accumulation)."""
    kw = dict(views=views, bn_running=bn_running, target_bn=target_bn, bn_shard_running=mode)
    online, target, rng = _small({**kw, "bn_shards": shards}, seed % 10_000)
    n = shards * rows
    v1, v2 = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    res = byol.loss_and_grads(online, target, v1, v2)
    # A draw whose predictions all lie on one line (Q = 2 hidden units, one alive after the ReLU) has n(p)
    # constant, so every gradient upstream of predictor.fc2 is exactly 0: both sides are then rounding
    # noise (amplified by 1/||p||, to 1e-13 at seed 376), and there is nothing to compare.
    assume(np.abs(res.grads["encoder.fc1.weight"]).max() > 1e-10)

    one = online.config.replace(bn_shards=1)
    on, tg = online._replace(config=one), target._replace(config=one)
    parts = []
    for s in range(shards):
        rows_s = slice(s * rows, (s + 1) * rows)
        r = byol.loss_and_grads(on, tg, v1[rows_s], v2[rows_s])
        parts.append(r)
        if mode == "sequential":
            on, tg = on._replace(buffers=r.online_buffers), tg._replace(buffers=r.target_buffers)
    assert float(res.loss) == pytest.approx(np.mean([float(r.loss) for r in parts]), rel=1e-12)
    for key, g in res.grads.items():
        np.testing.assert_allclose(g, np.mean([r.grads[key] for r in parts], axis=0), rtol=1e-9, atol=1e-13)
    last = parts[0] if mode == "first" else parts[-1]
    for got, want in ((res.online_buffers, last.online_buffers), (res.target_buffers, last.target_buffers)):
        for key in got:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15, err_msg=key)
    if mode == "first":  # one update per view of shard 0, as without shards
        assert int(res.online_buffers["encoder.norm1.count"]) == (2 if views == "separate" else 1)
    for key in ("online.p", "target.z"):  # outputs come back in the input's row order
        np.testing.assert_allclose(res.outputs[key], np.concatenate([r.outputs[key] for r in parts], axis=1),
                                   rtol=1e-12, atol=1e-15)


def test_forward_with_bn_shards_takes_statistics_per_shard():
    online, _, rng = _small(dict(bn_shards=2, bn_shard_running="sequential"), 6)
    x = rng.standard_normal((6, 4))
    out, buffers = byol.forward(online, x, train=True)
    one = online._replace(config=online.config.replace(bn_shards=1))
    a, mid = byol.forward(one, x[:3], train=True)
    b, last = byol.forward(one._replace(buffers=mid), x[3:], train=True)
    np.testing.assert_allclose(out["p"], np.concatenate([a["p"], b["p"]]), rtol=1e-12)
    for key in buffers:
        np.testing.assert_allclose(buffers[key], last[key], rtol=1e-12, err_msg=key)
    # evaluation mode has no batch statistics: shards change nothing
    ev, _ = byol.forward(online, x, train=False)
    np.testing.assert_allclose(ev["p"], byol.forward(one, x, train=False)[0]["p"], rtol=1e-12)


@pytest.mark.parametrize("rows", [6, 8])
@pytest.mark.parametrize("mode", ["first", "sequential"])
def test_forward_with_bn_shards_updates_running_statistics_as_configured(mode, rows):
    """With 8 rows too: at 6, the rows of a shard (3) divided by the shards (2) is 1 as well, and a count
    of shard 0's groups taken from the rows passed (found by scripts/mutation_sweep.py)."""
    online, _, rng = _small(dict(bn_shards=2, bn_shard_running=mode), 7)
    x = rng.standard_normal((rows, 4))
    _, buffers = byol.forward(online, x, train=True)
    one = online._replace(config=online.config.replace(bn_shards=1))
    _, first = byol.forward(one, x[:rows // 2], train=True)
    _, both = byol.forward(one._replace(buffers=first), x[rows // 2:], train=True)
    want = first if mode == "first" else both
    for key in buffers:
        np.testing.assert_allclose(buffers[key], want[key], rtol=1e-12, err_msg=key)


def test_bn_shards_errors():
    with pytest.raises(ValueError, match=r"bn_shards=2 .*norm='layer'"):
        byol.build(4, norm="layer", bn_shards=2)
    with pytest.raises(TypeError, match="bn_shards must be an int"):
        byol.build(4, bn_shards=2.0)
    with pytest.raises(ValueError, match="bn_shard_running"):
        byol.build(4, bn_shards=2, bn_shard_running="last")
    online, target = byol.build(4, bn_shards=3, projection_dim=3, predictor_dim=2, hidden_size=5)
    rng = np.random.default_rng(0)
    for n in (4, 3):  # not a multiple of 3; a multiple with one row per shard
        v = rng.standard_normal((n, 4))
        with pytest.raises(ValueError, match=rf"view1 has {n} rows, which bn_shards=3 cannot split"):
            byol.loss_and_grads(online, target, v, v)
    with pytest.raises(ValueError, match="x has 4 rows"):
        byol.forward(online, rng.standard_normal((4, 4)), train=True)
    byol.forward(online, rng.standard_normal((4, 4)), train=False)  # evaluation takes any batch


@pytest.mark.parametrize("bn_running", ["haiku", "torch"])
def test_fresh_buffers_are_mean_0_var_1_and_eval_uses_them(bn_running):
    """Running statistics start at mean 0, var 1, count 0 (torch's BatchNorm1d): an evaluation
    before any step normalises by sqrt(1 + eps), not by sqrt(eps)."""
    online, _ = byol.build(4, 3, 2, 5, seed=0, bn_running=bn_running, projector_hidden_dim=4)
    for key, value in online.buffers.items():
        want = {"running_mean": 0, "running_var": 1, "count": 0}[key.rsplit(".", 1)[1]]
        np.testing.assert_array_equal(value, np.full(value.shape, want), err_msg=key)
    x = np.random.default_rng(0).standard_normal((3, 4))
    out, buffers = byol.forward(online, x, train=False)
    p = online.params
    h = (x @ p["encoder.fc1.weight"] + p["encoder.fc1.bias"]) / np.sqrt(1 + online.config.bn_eps)
    h = np.maximum(h * p["encoder.norm1.gamma"] + p["encoder.norm1.beta"], 0)
    h = (h @ p["encoder.fc2.weight"] + p["encoder.fc2.bias"]) / np.sqrt(1 + online.config.bn_eps)
    np.testing.assert_allclose(out["y"], np.maximum(h * p["encoder.norm2.gamma"] + p["encoder.norm2.beta"], 0),
                               rtol=1e-12)
    assert buffers is online.buffers or all(np.array_equal(buffers[k], v) for k, v in online.buffers.items())


def test_sym_reduce_mean_halves_the_loss_and_every_gradient():
    online, target, rng = _small({}, 8)
    v1, v2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    total = byol.loss_and_grads(online, target, v1, v2)
    cfg = online.config.replace(sym_reduce="mean")
    mean = byol.loss_and_grads(online._replace(config=cfg), target._replace(config=cfg), v1, v2)
    assert float(mean.loss) == pytest.approx(float(total.loss) / 2, rel=1e-12)
    for key, g in total.grads.items():
        np.testing.assert_allclose(mean.grads[key], g / 2, rtol=1e-12, atol=1e-300)


def test_target_bn_running_projects_with_the_running_statistics():
    """target_bn="running": the target runs in evaluation mode (its running statistics, left
    unchanged); "batch" (every implementation) uses each view's batch statistics."""
    online, target, rng = _small(dict(target_bn="running"), 9)
    v1, v2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    res = byol.loss_and_grads(online, target, v1, v2)
    for v, view in enumerate((v1, v2)):
        out, _ = byol.forward(target, view, train=False)
        np.testing.assert_allclose(res.outputs["target.z"][v], out["z"], rtol=1e-12)
    for key, value in target.buffers.items():
        np.testing.assert_array_equal(res.target_buffers[key], value, err_msg=key)
    cfg = online.config.replace(target_bn="batch")
    batch = byol.loss_and_grads(online._replace(config=cfg), target._replace(config=cfg), v1, v2)
    np.testing.assert_allclose(batch.outputs["target.z"][0],
                               byol.forward(target._replace(config=cfg), v1, train=True)[0]["z"], rtol=1e-12)
    assert int(batch.target_buffers["encoder.norm1.count"]) == int(target.buffers["encoder.norm1.count"]) + 2


def test_inputs_never_mutated_and_grads_never_alias():
    online, target, rng = _small({}, 5)
    v1, v2 = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    saved = {k: v.copy() for k, v in {**online.params, **{"t." + k: v for k, v in target.params.items()},
                                      **{"b." + k: v for k, v in online.buffers.items()}}.items()}
    s1, s2 = v1.copy(), v2.copy()
    res = byol.loss_and_grads(online, target, v1, v2)
    for k, v in online.params.items():
        np.testing.assert_array_equal(v, saved[k])
    for k, v in target.params.items():
        np.testing.assert_array_equal(v, saved["t." + k])
    for k, v in online.buffers.items():
        np.testing.assert_array_equal(v, saved["b." + k])
    np.testing.assert_array_equal(v1, s1)
    np.testing.assert_array_equal(v2, s2)
    everything = [*online.params.values(), *target.params.values(), v1, v2]
    for g in res.grads.values():
        assert not any(np.shares_memory(g, a) for a in everything)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtypes_are_kept(dtype):
    online, target = byol.build(6, 8, 4, 10, dtype=dtype)
    rng = np.random.default_rng(0)
    v1, v2 = (rng.standard_normal((4, 6)).astype(dtype) for _ in range(2))
    res = byol.loss_and_grads(online, target, v1, v2)
    assert res.loss.dtype == dtype
    assert all(g.dtype == dtype for g in res.grads.values())
    assert all(b.dtype == dtype for k, b in res.online_buffers.items() if not k.endswith("count"))


# ----------------------------------------------------------------- EMA


@given(seed=seeds, tau=st.floats(0, 1))
def test_ema_formula_and_identities(seed, tau):
    online, _ = byol.build(3, 4, 2, 5, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    target = {k: rng.standard_normal(v.shape) for k, v in online.params.items() if not k.startswith("predictor")}
    saved = {k: v.copy() for k, v in target.items()}
    new = byol.ema_update(online.params, target, momentum=tau)
    assert set(new) == set(target)
    for k in target:
        np.testing.assert_allclose(new[k], tau * target[k] + (1 - tau) * online.params[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(target[k], saved[k])  # pure
        assert not np.shares_memory(new[k], target[k])
    keep = byol.ema_update(online.params, target, momentum=1.0)
    copy = byol.ema_update(online.params, target, momentum=0.0)
    for k in target:
        np.testing.assert_array_equal(keep[k], target[k])
        np.testing.assert_array_equal(copy[k], online.params[k])


def test_ema_errors():
    online, target = byol.build(3, 4, 2, 5)
    with pytest.raises(ValueError, match="no online twin"):
        byol.ema_update({k: v for k, v in online.params.items() if k != "encoder.fc1.weight"}, target.params)
    bad = dict(target.params, **{"encoder.fc1.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="shape mismatch.*encoder.fc1.weight"):
        byol.ema_update(online.params, bad)
    with pytest.raises(ValueError, match="momentum"):
        byol.ema_update(online.params, target.params, momentum=1.5)


def test_ema_refuses_mixed_dtypes():
    online, target = byol.build(3, 4, 2, 5)
    half = {k: v.astype("float32") for k, v in target.params.items()}
    with pytest.raises(TypeError, match="dtype mismatch for 'encoder.fc1.weight': online float64, target float32"):
        byol.ema_update(online.params, half)


# ----------------------------------------------------------------- API


def test_defaults_and_output_size():
    assert byol.default_projection_dim() == 256
    assert byol.default_predictor_dim() == 64
    assert byol.default_hidden_size() == 256
    assert byol.default_momentum() == 0.996
    assert byol.output_size() == 256
    assert byol.output_size(projection_dim=32) == 32
    opts = dict(encoder_dim=10, projection_dim=24, hidden_size=16, layout="edifice", seed=3, dtype="float32")
    assert byol.output_size(**opts) == 24 == byol.build(**opts)[0].params["predictor.fc2.weight"].shape[1]
    every = {f.name: getattr(byol.Config(encoder_dim=5), f.name) for f in dataclasses.fields(byol.Config)}
    del every["projection_dim"]  # every other option build takes is taken, and ignored
    assert byol.output_size(projection_dim=7, seed=1, dtype="float32", backend="numpy", **every) == 7
    with pytest.raises(TypeError, match=r"output_size got option\(s\) \['projection_size'\] that build does not take"):
        byol.output_size(projection_size=32)  # (a misspelling, not the default 256)
    online, target = byol.build(10)
    assert online.params["encoder.fc1.weight"].shape == (10, 256)
    assert online.params["projector.fc2.weight"].shape == (256, 256)
    assert online.params["predictor.fc1.weight"].shape == (256, 64)
    assert online.params["predictor.fc2.weight"].shape == (64, 256)
    out, _ = byol.forward(online, np.zeros((3, 10)) + np.arange(3)[:, None], train=True)
    assert out["y"].shape == (3, 256) and out["z"].shape == (3, 256) and out["p"].shape == (3, 256)
    assert online.params["encoder.fc1.weight"].dtype == np.float64


def test_paper_layout_names():
    online, target = byol.build(5, 6, 3, 7, projector_hidden_dim=9)
    assert list(online.params) == [
        "encoder.fc1.weight", "encoder.fc1.bias", "encoder.norm1.gamma", "encoder.norm1.beta",
        "encoder.fc2.weight", "encoder.fc2.bias", "encoder.norm2.gamma", "encoder.norm2.beta",
        "projector.fc1.weight", "projector.fc1.bias", "projector.norm1.gamma", "projector.norm1.beta",
        "projector.fc2.weight",
        "predictor.fc1.weight", "predictor.fc1.bias", "predictor.norm1.gamma", "predictor.norm1.beta",
        "predictor.fc2.weight"]
    assert online.params["projector.fc1.weight"].shape == (7, 9)
    assert online.params["projector.fc2.weight"].shape == (9, 6)
    assert list(target.params) == [k for k in online.params if not k.startswith("predictor")]
    assert "encoder.norm1.running_mean" in online.buffers and "encoder.norm1.running_var" in online.buffers
    assert not any("running" in k for k in online.params)
    with_bias = byol.build_online(5, 6, 3, 7, head_bias=True)
    assert "projector.fc2.bias" in with_bias.params and "predictor.fc2.bias" in with_bias.params


def test_edifice_layout_names_and_order():
    online, target = byol.build(5, 6, 3, 7, layout="edifice")
    assert list(online.params) == [
        "encoder.fc1.weight", "encoder.fc1.bias", "encoder.norm1.gamma", "encoder.norm1.beta",
        "encoder.fc2.weight", "encoder.fc2.bias",
        "projector.fc1.weight", "projector.fc1.bias", "projector.norm1.gamma", "projector.norm1.beta",
        "projector.fc2.weight", "projector.fc2.bias",
        "predictor.fc1.weight", "predictor.fc1.bias", "predictor.fc2.weight", "predictor.fc2.bias"]
    assert online.buffers == {}
    from byol_ref.model import network_plan
    assert network_plan(online.config, "online")["encoder"] == [
        ("linear", "encoder.fc1"), ("relu", "encoder.relu1"), ("layer_norm", "encoder.norm1"),
        ("linear", "encoder.fc2"), ("relu", "encoder.relu2")]
    # and its loss: one-sided 2 - 2 mean(p_hat . z_hat) with x / sqrt(sum x^2 + 1e-8)
    rng = np.random.default_rng(0)
    v1, v2 = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    res = byol.loss_and_grads(online, target, v1, v2)
    p = byol.forward(online, v1)[0]["p"]
    z = byol.forward(target, v2)[0]["z"]
    nrm = lambda x: x / np.sqrt((x * x).sum(1, keepdims=True) + 1e-8)  # noqa: E731
    assert float(res.loss) == pytest.approx(2 - 2 * np.mean((nrm(p) * nrm(z)).sum(1)), rel=1e-13)
    assert float(byol.loss(p, z, eps_mode="add", form="2-2cos")) == pytest.approx(float(res.loss), rel=1e-13)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_ln_var_reaches_every_layer_and_group_norm(norm):
    """Config.ln_var is the variance formula of the networks' layer and group norms: the two formulas round
    differently (so the forward is not bitwise the same) and agree to float64 rounding."""
    opts = dict(norm=norm, norm_groups=2, layout="edifice" if norm == "layer" else "paper")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)) * 3 + 2
    outs = {}
    for var in ("two_pass", "one_pass"):
        online, _ = byol.build(5, 6, 4, 8, seed=2, ln_var=var, **opts)
        outs[var] = byol.forward(online, x, train=True)[0]
    for k in ("y", "z", "p"):
        assert not np.array_equal(outs["one_pass"][k], outs["two_pass"][k])
        np.testing.assert_allclose(outs["one_pass"][k], outs["two_pass"][k], rtol=1e-9, atol=1e-12)
    online, _ = byol.build(5, 6, 4, 8, seed=2, **opts)  # the default: two_pass, as before ln_var existed
    assert online.config.ln_var == "two_pass"
    for k, v in byol.forward(online, x, train=True)[0].items():
        np.testing.assert_array_equal(v, outs["two_pass"][k])
    with pytest.raises(ValueError, match="ln_var"):
        byol.Config(encoder_dim=3, ln_var="welford")


def test_target_starts_as_copy_or_independent():
    online, target = byol.build(5, 6, 3, 7, seed=1)
    for k, v in target.params.items():
        np.testing.assert_array_equal(v, online.params[k])
        assert not np.shares_memory(v, online.params[k])
    online2, target2 = byol.build(5, 6, 3, 7, seed=1, target_init="independent")
    assert not np.allclose(target2.params["encoder.fc1.weight"], online2.params["encoder.fc1.weight"])
    # lightly's benchmark: the encoder copied, the projector drawn apart (the same draw as independent's)
    online3, target3 = byol.build(5, 6, 3, 7, seed=1, target_init="copy_encoder")
    for k, v in target3.params.items():
        np.testing.assert_array_equal(v, (online3 if k.startswith("encoder.") else target2).params[k])
        assert not np.shares_memory(v, online3.params[k])
    assert not np.allclose(target3.params["projector.fc1.weight"], online3.params["projector.fc1.weight"])
    t3 = byol.build_target(5, online=online)
    for k, v in t3.params.items():
        np.testing.assert_array_equal(v, online.params[k])
    # same seed, same draw
    again, _ = byol.build(5, 6, 3, 7, seed=1)
    for k in online.params:
        np.testing.assert_array_equal(again.params[k], online.params[k])


@settings(max_examples=20)
@given(seed=seeds, n=st.integers(2, 9), layout=st.sampled_from(["paper", "edifice"]),
       eps=st.sampled_from([None, 1e-5, 1e-2]), role=st.sampled_from(["online", "target"]))
def test_data_dependent_init_reproduces_batch_norm_on_its_batch(seed, n, layout, eps, role):
    """After data_dependent_init(x), an affine net (no statistics) computes on x exactly what
    the same weights with training-mode batch norm compute (the BN's gamma/beta random)."""
    rng = np.random.default_rng(seed)
    kw = dict(projection_dim=3, predictor_dim=4, hidden_size=5, projector_hidden_dim=6, layout=layout, seed=seed % 1000)
    bn = _randomize(byol.build(7, norm="batch", **kw)[0 if role == "online" else 1], rng)
    bn = bn._replace(params={k: (v + 0.5 if k.endswith("gamma") else v) for k, v in bn.params.items()})
    affine_net = byol.build(7, norm="affine", **kw)[0 if role == "online" else 1]
    assert list(affine_net.params) == list(bn.params) and not affine_net.buffers
    affine_net = affine_net._replace(params=dict(bn.params))  # the same weights, gamma and beta
    x = rng.standard_normal((n, 7)) * rng.uniform(0.5, 3) + rng.standard_normal(7)
    before = {k: v.copy() for k, v in affine_net.params.items()}
    init = byol.data_dependent_init(affine_net, x, eps=eps)
    for k, v in affine_net.params.items():  # the input network is left alone
        np.testing.assert_array_equal(v, before[k])
    bn_eps = 1e-5 if eps is None else eps
    want, _ = byol.forward(bn._replace(config=bn.config.replace(bn_eps=bn_eps)), x, train=True)
    got, _ = byol.forward(init, x)
    for key in want:
        scale = 1 + np.abs(want[key]).max()
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-10 * scale, err_msg=key)
    # Only gamma and beta of the affine layers moved.
    changed = {k for k in before if not np.array_equal(init.params[k], before[k])}
    assert changed and all(k.endswith((".gamma", ".beta")) for k in changed)


def test_data_dependent_init_defaults_to_the_batch_norm_eps():
    online, _ = byol.build(4, 5, 3, 6, seed=0, norm="affine", bn_eps=1e-2, ln_eps=1e-4)
    x = np.random.default_rng(1).standard_normal((5, 4))
    got = byol.data_dependent_init(online, x)
    for eps, same in ((1e-2, True), (1e-4, False)):
        other = byol.data_dependent_init(online, x, eps=eps)
        assert all(np.array_equal(got.params[k], v) for k, v in other.params.items()) == same


def test_data_dependent_init_errors():
    online, _ = byol.build(4, 5, 3, 6, seed=0)
    with pytest.raises(ValueError, match="sets norm='affine' layers, but this network has norm='batch'"):
        byol.data_dependent_init(online, np.ones((3, 4)))
    online, _ = byol.build(4, 5, 3, 6, seed=0, norm="affine")
    with pytest.raises(ValueError, match="x must have at least 2 rows, got shape .*: each scale and shift is set from"):
        byol.data_dependent_init(online, np.ones((1, 4)))
    with pytest.raises(ValueError, match="x must have 4 features"):
        byol.data_dependent_init(online, np.ones((3, 5)))
    with pytest.raises(TypeError, match="x has dtype float32, expected float64"):
        byol.data_dependent_init(online, np.ones((3, 4), dtype="float32"))
    with pytest.raises(ValueError, match="eps must be"):
        byol.data_dependent_init(online, np.ones((3, 4)), eps=0.0)


def test_encoder_bias_overrides_hidden_bias_both_ways():
    from byol_ref.model import param_shapes

    for hidden, enc in ((True, False), (False, True), (True, None), (False, None)):
        cfg = byol.Config(encoder_dim=3, hidden_bias=hidden, encoder_bias=enc)
        names = param_shapes(cfg, "online")
        want = hidden if enc is None else enc
        assert ("encoder.fc1.bias" in names) == want and ("encoder.fc2.bias" in names) == want
        assert ("projector.fc1.bias" in names) == hidden and ("predictor.fc1.bias" in names) == hidden


def test_config_refuses_a_zero_eps():
    import dataclasses

    for name in ("bn_eps", "ln_eps", "ws_eps", "norm_eps"):
        with pytest.raises(ValueError, match=name):
            byol.Config(encoder_dim=3, **{name: 0.0})
    floats = [f.name for f in dataclasses.fields(byol.Config) if f.type in ("float", "float | None", "Filled[float]")]
    assert len(floats) >= 6
    for name in floats:  # not stored as a str, and numpy scalars become Python floats (config.json holds them)
        with pytest.raises(TypeError, match=f"{name} must be a real number, got '0.5'"):
            byol.Config(encoder_dim=3, **{name: "0.5"})
        assert type(getattr(byol.Config(encoder_dim=3, **{name: np.float32(0.5)}), name)) is float


def test_a_field_the_layout_fills_in_takes_none_and_reads_as_optional_at_run_time():
    """A user who passes Config(loss_form=None) gets the layout's default, as before the field was typed
    Filled[str] (a type checker reads cfg.loss_form as str, and takes None for it in Config(...)); a tool
    that reads the annotations at run time (typing.get_type_hints) is told what the constructor takes."""
    import typing

    cfg = byol.Config(encoder_dim=4, norm=None, loss_form=None, norm_eps=None, symmetric=None)
    assert cfg == byol.Config(encoder_dim=4) and (cfg.loss_form, cfg.norm_eps) == ("mse", 1e-12)
    assert dataclasses.replace(cfg, loss_form=None) == cfg == byol.Config.from_dict({**cfg.to_dict(), "norm": None})
    hints = typing.get_type_hints(byol.Config)
    for name, kind in (("projector_hidden_dim", int), ("norm", str), ("head_bias", bool), ("norm_eps", float)):
        assert set(typing.get_args(hints[name])) == {kind, type(None)}, (name, hints[name])


def test_config_replace_derives_again_what_it_derived():
    """replace(norm_eps_mode="add") kept sq_norm's eps 1e-12, and replace(layout="edifice") the paper's batch norm,
    mse loss and symmetric objective: a mix no implementation computes."""
    paper = byol.Config(encoder_dim=4)
    edifice = byol.Config(encoder_dim=4, layout="edifice")
    assert paper.replace(layout="edifice") == edifice and edifice.replace(layout="paper") == paper
    assert (paper.replace(norm_eps_mode="add").norm_eps, paper.replace(norm_eps_mode="norm").norm_eps) == (1e-8, 1e-12)
    assert paper.replace(projection_dim=8).projector_hidden_dim == 8
    # what was set to other than the derived value, or is changed too, stays as set
    assert byol.Config(encoder_dim=4, norm_eps=1e-9).replace(norm_eps_mode="add").norm_eps == 1e-9
    assert paper.replace(norm_eps_mode="add", norm_eps=1e-3).norm_eps == 1e-3
    assert byol.Config(encoder_dim=4, norm="group", norm_groups=1).replace(layout="edifice").norm == "group"
    assert paper.replace(layout="edifice", symmetric=True).symmetric is True
    assert byol.Config(encoder_dim=4, projector_hidden_dim=32).replace(projection_dim=8).projector_hidden_dim == 32
    assert paper.replace(bn_eps=1e-3) == byol.Config(encoder_dim=4, bn_eps=1e-3)
    with pytest.raises(ValueError, match="layout must be one of"):
        paper.replace(layout="simclr")


def test_simplicial_embedding_config_and_names():
    from byol_ref.model import network_plan, param_shapes

    cfg = byol.Config(encoder_dim=3, hidden_size=5, projector_hidden_dim=6, sem_simplices=4, sem_simplex_dim=2)
    plan = network_plan(cfg, "target")
    assert [name for _, name in plan["projector"]] == ["projector.sem_fc", "projector.sem_norm", "projector.sem",
                                                       "projector.fc1", "projector.norm1", "projector.relu1",
                                                       "projector.fc2"]
    shapes = param_shapes(cfg, "online")
    assert shapes["projector.sem_fc.weight"] == (5, 8) and shapes["projector.fc1.weight"] == (8, 6)
    assert "projector.sem" not in {k.rsplit(".", 1)[0] for k in shapes}  # the softmax has no parameters
    assert [name for _, name in network_plan(cfg.replace(norm="none"), "online")["projector"]][:2] == [
        "projector.sem_fc", "projector.sem"]
    for field, value, error in (("sem_simplices", -1, ValueError), ("sem_simplices", 1.5, TypeError),
                                ("sem_simplex_dim", 0, ValueError), ("sem_temperature", 0.0, ValueError),
                                ("sem_temperature", float("inf"), ValueError)):
        with pytest.raises(error, match=field):
            byol.Config(encoder_dim=3, **{field: value})


def test_target_built_from_a_float32_online_keeps_integer_counts():
    online, _ = byol.build(4, 5, 3, 6, seed=0, dtype="float32")
    target = byol.build_target(4, online=online)
    for key, value in target.buffers.items():
        assert value.dtype == ("int64" if key.endswith(".count") else "float32"), key
    assert all(v.dtype == "float32" for v in target.params.values())


def test_init_schemes():
    online, _ = byol.build(400, 4, 2, 300, seed=0)
    w = online.params["encoder.fc1.weight"]
    assert np.abs(w).max() <= 2 / np.sqrt(400)  # truncated at 2 std
    assert w.std() == pytest.approx(0.88 / np.sqrt(400), rel=0.03)  # truncation shrinks the std
    assert np.all(online.params["encoder.fc1.bias"] == 0)
    torch_like, _ = byol.build(400, 4, 2, 300, seed=0, init="torch")
    w = torch_like.params["encoder.fc1.weight"]
    assert np.abs(w).max() <= 1 / np.sqrt(400)
    assert w.std() == pytest.approx(1 / np.sqrt(3 * 400), rel=0.03)
    assert np.any(torch_like.params["encoder.fc1.bias"] != 0)
    axon_like, _ = byol.build(400, 4, 2, 300, seed=0, init="glorot")  # Axon.dense: glorot_uniform, zeros
    w = axon_like.params["encoder.fc1.weight"]
    assert w.shape == (400, 300) and np.abs(w).max() <= np.sqrt(6 / 700)  # (fan_in + fan_out, not fan_in alone)
    assert w.std() == pytest.approx(np.sqrt(2 / 700), rel=0.03)
    assert w.min() < -0.95 * np.sqrt(6 / 700) and w.max() > 0.95 * np.sqrt(6 / 700)
    assert np.all(axon_like.params["encoder.fc1.bias"] == 0)
    assert np.all(axon_like.params["projector.norm1.gamma"] == 1)


def test_each_layout_has_its_own_init_unless_one_is_given():
    """The Elixir module's layout draws as Axon.dense does; the paper's as Haiku does."""
    assert byol.Config(encoder_dim=3).init == "haiku"
    assert byol.Config(encoder_dim=3, layout="edifice").init == "glorot"
    assert byol.Config(encoder_dim=3, layout="edifice", init="torch").init == "torch"
    with pytest.raises(ValueError, match="init"):
        byol.Config(encoder_dim=3, init="xavier")


@pytest.mark.parametrize("init", ["haiku", "torch", "glorot"])
def test_an_independent_target_draws_with_the_configs_init(init):
    """Found by a mutation audit: a glorot draw made for the online network only (the target falling back
    to haiku's) passed every test, as the default target_init copies the online weights."""
    online, target = byol.build(400, 4, 2, 300, seed=0, init=init, target_init="independent")
    w_online, w_target = online.params["encoder.fc1.weight"], target.params["encoder.fc1.weight"]
    assert not np.array_equal(w_online, w_target)  # (a draw of its own)
    assert np.abs(w_target).max() <= np.abs(w_online).max() * 1.01 + 1e-12
    assert w_target.std() == pytest.approx(w_online.std(), rel=0.03)
    assert np.any(target.params["encoder.fc1.bias"] != 0) == (init == "torch")


def _python_blocks():
    """The ```python blocks of README.md and docs/*.md, one parameter per file: a page's blocks run in
    order in one namespace, as a reader runs them (a later block may use what an earlier one defined)."""
    import pathlib
    import re
    root = pathlib.Path(__file__).parents[1]
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
        if blocks:
            yield pytest.param(blocks, id=path.name)


def test_docs_have_python_examples():
    names = {p.id for p in _python_blocks()}
    assert {"README.md", "derivations.md", "verifying.md", "step-by-hand.md"} <= names


@pytest.mark.parametrize("blocks", list(_python_blocks()))
def test_docs_python_examples_run(blocks, capsys):
    """Every ```python block of README.md and docs/*.md runs as written (their asserts included)."""
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"<doc block {i}>", "exec"), namespace)



@pytest.mark.parametrize("kw, expected", [
    (dict(), ("||n(p) - n(z)||^2, both directions summed", 0.0, 8.0)),
    (dict(loss_form="2-2cos", sym_reduce="mean"), ("2 - 2 cos, mean of both directions", 0.0, 4.0)),
    (dict(loss_form="neg_cos", sym_reduce="mean"), ("-cos, mean of both directions", -1.0, 1.0)),
    (dict(loss_form="neg_cos"), ("-cos, both directions summed", -2.0, 2.0)),
    (dict(layout="edifice"), ("2 - 2 cos, one direction", 0.0, 4.0)),
])
def test_loss_range_names_the_loss_and_its_ends(kw, expected):
    """One direction's loss at aligned and at opposed vectors, combined as the config combines
    the directions, gives the two ends."""
    from byol_ref.losses import regression_loss_forward
    from byol_ref.model import loss_range

    cfg = byol.Config(encoder_dim=3, **kw)
    assert loss_range(cfg) == expected
    z = np.array([[1.0, 2.0, 2.0]])
    ends = [float(regression_loss_forward(p, z, form=cfg.loss_form)[0][0]) for p in (z, -z)]
    factor = 2.0 if cfg.symmetric and cfg.sym_reduce == "sum" else 1.0
    assert sorted(factor * e for e in ends) == pytest.approx(expected[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edifice_with_batch_norm_gradients_match_finite_differences(seed):
    """Edifice's ReLU comes before the norm; with batch norm there the norm overwrote the ReLU output that the
    ReLU's backward masks by (loss_and_grads without ``record``): the gradient was off by 1e-5 relative along a
    random direction. (Not in CONFIGS: a ReLU output column of 3 to 6 rows is often all 0, a batch-norm input
    with no spread, so the hypothesis draws there are mostly refused.)"""
    online, target = byol.build(7, 6, 3, 8, projector_hidden_dim=9, layout="edifice", norm="batch", seed=seed)
    v1, v2 = np.random.default_rng(seed + 1).standard_normal((2, 16, 7))
    res = byol.loss_and_grads(online, target, v1, v2)

    def loss_of(params):
        return byol.loss_and_grads(online._replace(params=params), target, v1, v2).loss

    for direction in range(3):
        analytic, numerical, err = directional_check(loss_of, online.params, res.grads, h=1e-6, seed=direction)
        assert err < 1e-8, (analytic, numerical, err)


# ----------------------------------------------------------------- found by a mutation audit (model.py)


def test_encoder_bias_must_be_a_bool_or_none():
    """encoder_bias decides which Linears get a bias: a truthy non-bool ("no", 0) would silently pick one."""
    for bad in ("no", 0, 1):
        with pytest.raises(TypeError, match=r"encoder_bias must be a bool or None \(as hidden_bias\), got"):
            byol.Config(encoder_dim=3, encoder_bias=bad)


def test_group_norm_groups_must_divide_the_predictor_width_too():
    """The predictor exists only in the online network: its hidden width (3 here, every other width 4)
    must be checked against norm_groups as well, or group_norm_forward fails at the first step."""
    kw = dict(encoder_dim=3, norm="group", norm_groups=2, hidden_size=4, projector_hidden_dim=4, projection_dim=4)
    with pytest.raises(ValueError, match="norm_groups=2 must divide every normalised width, but predictor.norm1 has 3"):
        byol.Config(predictor_dim=3, **kw)
    byol.Config(predictor_dim=3, use_predictor=False, **kw)  # no predictor: nothing to divide
    byol.Config(predictor_dim=6, **kw)


def test_group_norm_takes_the_layer_norm_eps():
    """norm="group" normalises each sample's groups of consecutive features with ln_eps (the per-sample
    eps), never bn_eps: (h - mean_g) / sqrt(var_g + ln_eps) over each half of the 6 features of h = x @ w + b
    (gamma 1, beta 0 at build). The eps are set far apart so that either choice shows."""
    online, target = byol.build(3, 4, 2, 6, seed=0, norm="group", norm_groups=2, ln_eps=0.5, bn_eps=1e-3)
    rng = np.random.default_rng(3)
    v1, v2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    seen = {}
    byol.loss_and_grads(online, target, v1, v2, record=lambda k, a: seen.setdefault(k, np.array(a, copy=True)))
    w, b = online.params["encoder.fc1.weight"], online.params["encoder.fc1.bias"]
    h = np.stack([v1 @ w + b, v2 @ w + b]).reshape(2, 5, 2, 3)  # (view, row, group, feature)
    want = (h - h.mean(axis=-1, keepdims=True)) / np.sqrt(h.var(axis=-1, keepdims=True) + 0.5)
    np.testing.assert_allclose(seen["online.encoder.norm1.out"], want.reshape(2, 5, 6), rtol=1e-12, atol=1e-13)


def test_build_target_from_online_copies_without_sharing_memory():
    """The target copies the online encoder and projector: it must own its arrays, or the in-place EMA
    (and any optimiser step in place on the online params) would write one network through the other."""
    online, _ = byol.build(5, 6, 3, 7, seed=1)
    target = byol.build_target(5, online=online)
    for k, v in target.params.items():
        np.testing.assert_array_equal(v, online.params[k])
        assert not np.shares_memory(v, online.params[k]), k
    saved = {k: v.copy() for k, v in online.params.items()}
    byol.ema_update(online.params, target.params, 0.5, inplace=True)  # no-op on values (t == o), but writes t
    target.params["encoder.fc1.weight"][...] = 7.0
    for k, v in online.params.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_build_target_from_online_puts_buffers_in_onlines_dtype_and_module(backend):
    """Without a backend argument build_target(online=...) makes the target's running statistics where
    and in what the online network lives (its array module, its params' dtype, integer counts), whatever
    the backend passed says: a float64 backend for a float32 online network still gives float32 buffers,
    and a device online network (the CuPy stand-in) device buffers, so that the pair can take a step."""
    online, target_ref = byol.build(4, 3, 2, 5, seed=0, backend=backend)
    target = byol.build_target(4, online=online)
    param_type = type(online.params["encoder.fc1.weight"])
    for key, value in target.buffers.items():
        assert type(value) is param_type, key
        assert value.dtype == ("int64" if key.endswith(".count") else "float64"), key
    v = backend.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    byol.loss_and_grads(online, target, v, v + 1)  # host and device never mix
    online32, _ = byol.build(4, 3, 2, 5, seed=0, dtype="float32")
    from byol_ref.backend import get_backend
    t32 = byol.build_target(4, online=online32, backend=get_backend("numpy", "float64"))
    for key, value in t32.buffers.items():
        assert value.dtype == ("int64" if key.endswith(".count") else "float32"), key


def test_output_size_checks_and_normalises_projection_dim():
    """output_size is the width of the output, an int >= 1: a bad projection_dim is refused as build
    refuses it, and a NumPy integer comes back as a Python int (as Config stores it)."""
    with pytest.raises(ValueError, match="projection_dim must be an int >= 1, got 0"):
        byol.output_size(0)
    for bad in (2.5, "8", True):
        with pytest.raises(TypeError, match="projection_dim must be an int"):
            byol.output_size(bad)
    assert type(byol.output_size(np.int64(3))) is int


def test_params_of_mixed_dtypes_are_refused():
    """One float32 tensor among float64 params is named as a mix, not computed with in whichever dtype
    the check happened to pick."""
    online, target = byol.build(4, 3, 2, 5, seed=0)
    mixed = online._replace(params={**online.params,
                                    "encoder.fc1.weight": online.params["encoder.fc1.weight"].astype("float32")})
    v = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(TypeError, match=r"online.params mix dtypes \['float32', 'float64'\]"):
        byol.loss_and_grads(mixed, target, v, v)
    with pytest.raises(TypeError, match=r"network.params mix dtypes"):
        byol.forward(mixed, v)


def test_params_the_config_does_not_have_are_refused():
    """A parameter the config gives no layer (a stray name, a checkpoint of another architecture) is
    named, as a missing one is: it would otherwise be carried along, never used and never trained."""
    online, target = byol.build(4, 3, 2, 5, seed=0)
    stray = online._replace(params={**online.params, "encoder.fc3.weight": np.zeros((5, 5))})
    v = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"online.params do not match the config: missing \[\], unexpected "
                                         r"\['encoder.fc3.weight'\]"):
        byol.loss_and_grads(stray, target, v, v)
    with pytest.raises(ValueError, match=r"network.params do not match the config"):
        byol.forward(stray, v)


@pytest.mark.parametrize("options", [{}, dict(layout="edifice"), dict(target_init="independent")])
def test_build_online_and_build_target_are_the_halves_of_build(options):
    """build_online is build's online network (the same draw: params first), running statistics for
    every batch-norm layer including the predictor's; build_target alone draws a target's parameters
    (encoder and projector, no predictor) and its buffers. Both can take a training step."""
    online, target = byol.build(4, 3, 2, 5, seed=3, **options)
    alone = byol.build_online(4, 3, 2, 5, seed=3, **options)
    assert list(alone.params) == list(online.params) and alone.role == "online"
    for k, v in online.params.items():
        np.testing.assert_array_equal(alone.params[k], v, err_msg=k)
    assert sorted(alone.buffers) == sorted(online.buffers)
    t = byol.build_target(4, 3, 2, 5, seed=3, **options)
    assert list(t.params) == list(target.params) and t.role == "target"
    assert sorted(t.buffers) == sorted(target.buffers)
    v = np.random.default_rng(0).standard_normal((2, 3, 4))
    byol.loss_and_grads(alone, t, v[0], v[1])
    byol.forward(alone, v[0], train=True)


def test_weight_std_standardises_every_linear_but_the_heads_last_with_the_configs_eps():
    """weight_std: each Linear except projector.fc2 and predictor.fc2 computes x @ w_hat (+ b) with
    w_hat = (w - mean_in(w)) / sqrt(var_in(w) + ws_eps) (biased, per output unit), ws_eps the config's
    (0.5 here, far from the 1e-5 default); the two head outputs use the raw weight. Each layer's input
    is the recorded output of the step before it, so every Linear is checked on its own."""
    online, target = byol.build(3, 4, 3, 6, seed=0, norm="layer", weight_std=True, ws_eps=0.5, head_bias=True)
    rng = np.random.default_rng(4)
    v1, v2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    seen = {}
    byol.loss_and_grads(online, target, v1, v2, record=lambda k, a: seen.setdefault(k, np.array(a, copy=True)))
    inputs = {"encoder.fc1": np.stack([v1, v2]), "encoder.fc2": seen["online.encoder.relu1.out"],
              "projector.fc1": seen["online.encoder.relu2.out"], "projector.fc2": seen["online.projector.relu1.out"],
              "predictor.fc1": seen["online.projector.fc2.out"], "predictor.fc2": seen["online.predictor.relu1.out"]}
    p = online.params
    for name, x in inputs.items():
        w = p[f"{name}.weight"]
        if not name.endswith("fc2") or name.startswith("encoder"):
            w = (w - w.mean(axis=0)) / np.sqrt(w.var(axis=0) + 0.5)
        np.testing.assert_allclose(seen[f"online.{name}.out"], x @ w + p[f"{name}.bias"], rtol=1e-12, atol=1e-13,
                                   err_msg=name)


def test_concat_shards_that_do_not_split_evenly_are_refused_with_the_rows_they_need():
    """views="concat": a shard needs 1 row of each view (2 for its batch norm, over both views), so the
    message asks for a multiple of S that is at least S, not 2 S."""
    online, target, rng = _small(dict(views="concat", bn_shards=2), 0)
    v = rng.standard_normal((3, 4))
    with pytest.raises(ValueError) as info:
        byol.loss_and_grads(online, target, v, v)
    assert str(info.value) == ("view1 has 3 rows, which bn_shards=2 cannot split into equal shards of at least 1 row "
                               "each (batch-norm statistics are taken per shard, over both views); use a batch size "
                               "that is a multiple of 2 and at least 2")
    byol.loss_and_grads(online, target, v[:2], v[1:])  # (1 row of each view per shard)


def test_a_weight_no_array_can_hold_names_the_width_behind_it():
    """Config refuses a weight of more than sys.maxsize // 8 values (NumPy's own limit for float64)
    and names the larger of its two widths: the input's field when the input is the larger (the
    previous Linear's output), and of the simplicial embedding's two factors the one that is large.
    A weight of exactly the limit is a config (its allocation is another matter)."""
    import sys

    limit = sys.maxsize // 8
    ones = dict(encoder_dim=1, hidden_size=1, projection_dim=1, predictor_dim=1)
    assert byol.Config(**ones, projector_hidden_dim=limit).projector_hidden_dim == limit
    with pytest.raises(ValueError, match=rf"^projector_hidden_dim must leave every weight within what one array "
                                         rf"holds \({limit} values\), got {limit + 1}: projector\.fc1\.weight would "
                                         rf"have shape \(1, {limit + 1}\)$"):
        byol.Config(**ones, projector_hidden_dim=limit + 1)
    # projector.fc2 is (projector_hidden_dim, projection_dim): its input, the larger, is the culprit
    with pytest.raises(ValueError, match=rf"^projector_hidden_dim must .*, got {2**40}: projector\.fc2\.weight "
                                         rf"would have shape \({2**40}, {2**30}\)$"):
        byol.Config(**{**ones, "projection_dim": 2**30}, projector_hidden_dim=2**40)
    for simplices, dim, named in ((1, 2**61, "sem_simplex_dim"), (2**61, 1, "sem_simplices")):
        with pytest.raises(ValueError, match=rf"^{named} must .*, got {2**61}: projector\.sem_fc\.weight"):
            byol.Config(**ones, sem_simplices=simplices, sem_simplex_dim=dim)


def test_the_batch_norm_settings_reach_every_batch_norm_of_both_networks():
    """bn_eps, bn_decay, bn_running and bn_var are the config's in every batch-norm layer, online and
    target, checked against the formulas on each layer's recorded input: per-view biased statistics,
    eps = 0.25 inside the root, then two torch updates (decay 0.6 on the old value, unbiased variance)."""
    online, target = byol.build(4, 3, 2, 5, seed=0, projector_hidden_dim=4, bn_eps=0.25, bn_decay=0.6,
                                bn_running="torch", target_init="independent")
    rng = np.random.default_rng(1)
    v1, v2 = rng.standard_normal((2, 6, 4))
    seen = {}
    res = byol.loss_and_grads(online, target, v1, v2, record=lambda k, a: seen.__setitem__(k, np.array(a)))
    layers = 0
    for role, net, new in (("online", online, res.online_buffers), ("target", target, res.target_buffers)):
        for key in net.buffers:
            if not key.endswith(".running_mean"):
                continue
            layer = key[:-len(".running_mean")]  # e.g. encoder.norm1, whose input is encoder.fc1's output
            h = seen[f"{role}.{layer.replace('norm', 'fc')}.out"]  # (2 views, 6, F)
            mean, var = h.mean(axis=1, keepdims=True), h.var(axis=1, keepdims=True)
            want = (h - mean) / np.sqrt(var + 0.25) * net.params[f"{layer}.gamma"] + net.params[f"{layer}.beta"]
            np.testing.assert_allclose(seen[f"{role}.{layer}.out"], want, rtol=1e-12, atol=1e-14)
            m, v = np.zeros(h.shape[-1]), np.ones(h.shape[-1])
            for view in range(2):
                m, v = 0.6 * m + 0.4 * mean[view, 0], 0.6 * v + 0.4 * var[view, 0] * 6 / 5
            np.testing.assert_allclose(new[key], m, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(new[f"{layer}.running_var"], v, rtol=1e-12)
            assert int(new[f"{layer}.count"]) == 2
            layers += 1
    assert layers == 7  # encoder.norm1, encoder.norm2, projector.norm1 (both nets), predictor.norm1
    # bn_var: in float32, inputs far from 0 make E[x^2] - mean^2 cancel, so the two formulas differ
    from byol_ref.layers import RunningStats, batch_norm_forward
    x1, x2 = (100 + rng.standard_normal((2, 6, 4))).astype("float32")
    for bn_var in ("one_pass", "two_pass"):
        cfg = online.config.replace(bn_var=bn_var, bn_eps=1e-5)
        on32 = online._replace(config=cfg, params={k: v.astype("float32") for k, v in online.params.items()},
                               buffers={k: v if k.endswith("count") else v.astype("float32")
                                        for k, v in online.buffers.items()})
        seen.clear()
        byol.loss_and_grads(on32, byol.build_target(online=on32), x1, x2,
                            record=lambda k, a: seen.__setitem__(k, np.array(a)))
        h, run = seen["online.encoder.fc1.out"], RunningStats(np.zeros(5, "float32"), np.ones(5, "float32"), 0)
        p = on32.params
        outs = {f: batch_norm_forward(h, p["encoder.norm1.gamma"], p["encoder.norm1.beta"], run, train=True,
                                      var_formula=f)[0] for f in ("one_pass", "two_pass")}
        assert not np.array_equal(outs["one_pass"], outs["two_pass"])  # (else this part could not fail)
        np.testing.assert_array_equal(seen["online.encoder.norm1.out"], outs[bn_var])


def test_the_reprs_show_the_arrays_as_dtype_and_shape():
    """A Network printed every array's values (24 KB for the default sizes, in a notebook cell that
    ends with ``online``), a LossAndGrads more; they now show each array as its dtype and shape, and
    a 0-d one (the loss) with its value, so the structure can be read."""
    online, target = byol.build(64, seed=0)
    assert len(repr(online)) < 3000 and repr(online).startswith("Network(config=Config(encoder_dim=64, ")
    assert "role='online', params={'encoder.fc1.weight': float64 (64, 256), 'encoder.fc1.bias': float64 (256,)" \
        in repr(online)
    assert "buffers={'encoder.norm1.running_mean': float64 (256,)" in repr(online)
    rng = np.random.default_rng(0)
    res = byol.loss_and_grads(online, target, rng.standard_normal((8, 64)), rng.standard_normal((8, 64)))
    text = repr(res)
    assert text.startswith(f"LossAndGrads(loss=float64 {float(res.loss)!r}, grads={{'encoder.fc1.weight': float64 "
                           "(64, 256), ") and "outputs={'online.y': float64 (2, 8, 256)" in text and len(text) < 6000


def test_a_config_given_to_build_is_sent_to_build_from_config():
    """build(64, config=cfg) (and build_online, build_target) was told "pass either a config
    (build_from_config) or keyword options, not both", when the config was the only option given: it is
    now told that config is no option of these builders, what it gave, and the two ways that work."""
    cfg = byol.Config(encoder_dim=4, hidden_size=6, projection_dim=4, predictor_dim=3)
    for build in (byol.build, byol.build_online, byol.build_target):
        with pytest.raises(TypeError, match=r"^config is not an option here \(got Config\): pass a Config to "
                                            r"build_from_config\(config\), or the sizes and other Config fields as "
                                            r"keyword options$"):
            build(4, config=cfg)


def test_the_reprs_show_what_is_no_array_or_no_dict_as_it_is():
    """A Network put together by hand, with params=None or a list where an array belongs (refused once it
    is used, but printed first, in a notebook cell): its repr shows those values as their own repr, where
    it would fail on None or print a list as 'None None'."""
    online, _ = byol.build(4, 4, 3, 6, seed=0)
    odd = online._replace(params=None, buffers={"encoder.norm1.running_mean": [0.0, 0.0]})
    assert repr(odd).endswith("params=None, buffers={'encoder.norm1.running_mean': [0.0, 0.0]})")


def test_every_builder_draws_from_seed_0_by_default():
    """build, build_online, build_target and build_from_config: a call without a seed is reproducible, the
    draw of seed 0 (init_params on a backend seeded 0), as its docstring says. Any other default passed
    every test before (found by scripts/mutation_sweep.py)."""
    from byol_ref.model import build_from_config, init_params

    cfg = byol.Config(encoder_dim=3, hidden_size=5, projection_dim=4, predictor_dim=2)
    be = byol.get_backend("numpy", "float64", 0)
    want = init_params(cfg, "online", be.rng, be)
    sizes = dict(projection_dim=4, predictor_dim=2, hidden_size=5)
    for online in (byol.build(3, **sizes)[0], byol.build_online(3, **sizes), build_from_config(cfg)[0]):
        assert list(online.params) == list(want)
        assert all(np.array_equal(online.params[k], want[k]) for k in want)
    be = byol.get_backend("numpy", "float64", 0)
    want = init_params(cfg, "target", be.rng, be)  # (a target built on its own draws its params as the online does)
    target = byol.build_target(3, **sizes)
    assert all(np.array_equal(target.params[k], want[k]) for k in want) and list(target.params) == list(want)
