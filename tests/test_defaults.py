"""The documented default of each numeric argument of the layers, optimisers and model: a caller
who leaves one out gets the convention the docstring names (the official code's, Haiku's, optax's,
Axon's). Each is checked against a number worked out by hand or a plain formula written here,
never by calling the code with the argument spelled out. A mutation audit found every one of these
defaults could change with no test failing: the model and the trainer pass most of them explicitly.
"""
import math

import numpy as np

import byol_ref as byol
from byol_ref.layers import RunningStats, batch_norm_forward, weight_standardize_forward
from byol_ref.optim import make_optimizer


# --------------------------------------------------------------------------- backend


def test_get_backend_defaults_to_numpy_float64_and_seed_0():
    """``get_backend()`` is NumPy in float64 (a reference), its generator PCG64 seeded with 0: the same
    draws as ``numpy.random.default_rng(0)``."""
    be = byol.get_backend()
    assert (be.name, be.dtype) == ("numpy", "float64")
    np.testing.assert_array_equal(be.rng.standard_normal(4), np.random.default_rng(0).standard_normal(4))


# --------------------------------------------------------------------------- layers


def test_batch_norm_default_decay_is_haikus_0_9():
    """Two views from count 0: the zero-debiased EMA of batch means 1 then 0 is, at decay 0.9,
    (0.9 * 0.1 * 1 + 0.1 * 0) / (1 - 0.9^2) = 0.09 / 0.19 = 9/19 (decay 0.99 gives 0.0099/0.0199).
    The first update alone cannot tell: at t = 1 the debiased value is the batch's, whatever the decay."""
    x = np.stack([np.array([[0.0], [2.0]]), np.array([[-1.0], [1.0]])])  # (2, 2, 1): means 1 and 0
    run = RunningStats(np.zeros(1), np.ones(1), np.array(0))
    _, _, new = batch_norm_forward(x, np.ones(1), np.zeros(1), run, train=True)
    np.testing.assert_allclose(new.mean, [9 / 19], rtol=1e-13)
    # biased variances 1 and 1: any decay averages them to 1; the count is 2
    np.testing.assert_allclose(new.var, [1.0], rtol=1e-13)
    assert int(new.count) == 2


def test_batch_norm_default_variance_is_two_pass():
    """The default variance is the stable mean((x - mean)^2): on float32 rows 4096..4101 the one-pass
    E[x^2] - mean^2 loses the variance to cancellation (x^2 ~ 1.7e7 is rounded to even integers) and
    normalises to +-1.25 where the true value is +-1.464."""
    col = 4096.0 + np.arange(6.0)
    x = np.stack([col, np.linspace(-1, 1, 6)], axis=1).astype("float32")  # (6, 2), exact in float32
    g, b = np.ones(2, "float32"), np.zeros(2, "float32")
    run = RunningStats(np.zeros(2, "float32"), np.ones(2, "float32"), np.array(0))
    out, _, _ = batch_norm_forward(x, g, b, run, train=True)
    xs = x.astype("float64")
    want = (xs - xs.mean(axis=0)) / np.sqrt(xs.var(axis=0) + 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_weight_standardize_default_eps_is_1e_5():
    """Columns [1, -1] and [2, 0] have mean 0 and 1, biased variance 1: w_hat = (w - mean) / sqrt(1 + 1e-5)."""
    w = np.array([[1.0, 2.0], [-1.0, 0.0]])
    w_hat, _ = weight_standardize_forward(w)
    np.testing.assert_allclose(w_hat, np.array([[1.0, 1.0], [-1.0, -1.0]]) / math.sqrt(1 + 1e-5), rtol=1e-14)


# --------------------------------------------------------------------------- optimisers


def _update_twice(name, params, grads, lr):
    """Two steps of ``name`` with every hyper-parameter left at its default."""
    opt = make_optimizer(name)
    state = opt.init(params)
    for _ in range(2):
        params, state = opt.update(grads, state, params, lr=lr)
    return params


def test_lars_defaults_are_the_official_momentum_weight_decay_and_eta():
    """Official LARS (BYOL_FACTS a7): momentum 0.9, weight decay 1e-6, eta 1e-3. The gradient is
    orthogonal to p and as small as wd * p, so the direction of u = g + wd p, and so the step, shows wd
    (wd cancels from the step whenever u is parallel to p); two steps show the momentum."""
    p0, g = [3.0, 4.0], [4e-6, -3e-6]
    p, m = list(p0), [0.0, 0.0]
    for _ in range(2):  # the official formula in plain Python floats
        u = [gi + 1e-6 * pi for gi, pi in zip(g, p)]
        r = 1e-3 * math.hypot(*p) / math.hypot(*u)
        m = [0.9 * mi + r * ui for mi, ui in zip(m, u)]
        p = [pi - 1.0 * mi for pi, mi in zip(p, m)]
    got = _update_twice("lars", {"encoder.fc1.weight": np.array([p0])}, {"encoder.fc1.weight": np.array([g])}, 1.0)
    np.testing.assert_allclose(got["encoder.fc1.weight"], [p], rtol=0, atol=1e-14)


def test_sgd_default_momentum_is_0_9():
    """g = 1, lr = 1 from p = 0: m = 1 then 1.9, so p = -1 then -2.9 (no weight decay by default)."""
    got = _update_twice("sgd", {"encoder.fc1.weight": np.zeros(1)}, {"encoder.fc1.weight": np.ones(1)}, 1.0)
    np.testing.assert_allclose(got["encoder.fc1.weight"], [-2.9], rtol=0, atol=1e-14)


def test_adam_defaults_are_torchs_betas_eps_and_no_weight_decay():
    """Adam's defaults are torch.optim.Adam's (byol-pytorch's optimiser): b1 0.9, b2 0.999, eps 1e-8
    and no weight decay. Two steps from p = 1 (g = 0.5, then -0.2; lr 0.1) in plain Python floats: the
    second step shows both betas, the decay would show in the first. Found by scripts/mutation_sweep.py:
    a default weight decay of 1.0 passed every test."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    p, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate((0.5, -0.2), start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p -= 0.1 * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
    opt = make_optimizer("adam")
    params = {"encoder.fc1.weight": np.ones(1)}
    state = opt.init(params)
    for g in (0.5, -0.2):
        params, state = opt.update({"encoder.fc1.weight": np.full(1, g)}, state, params, lr=0.1)
    np.testing.assert_allclose(params["encoder.fc1.weight"], [p], rtol=0, atol=1e-15)


def test_adamw_default_weight_decay_is_optaxs_1e_4():
    """AdamW's default decoupled decay is optax's 1e-4 (torch's is 1e-2). One step from p = 1 with
    g = 0.5, lr = 0.1: m_hat = 0.5, v_hat = 0.25, so p = 1 - 0.1 (0.5 / (0.5 + 1e-8) + 1e-4 * 1)."""
    opt = make_optimizer("adamw")
    params = {"encoder.fc1.weight": np.ones(1)}
    new, _ = opt.update({"encoder.fc1.weight": np.full(1, 0.5)}, opt.init(params), params, lr=0.1)
    np.testing.assert_allclose(new["encoder.fc1.weight"], [1 - 0.1 * (0.5 / (0.5 + 1e-8) + 1e-4)], rtol=0,
                               atol=1e-15)


# --------------------------------------------------------------------------- model


def test_forward_evaluates_by_default():
    """``forward(network, x)`` is evaluation: the running statistics normalise, so a row's output does
    not depend on the other rows, and the buffers come back unchanged. Found by scripts/mutation_sweep.py:
    ``train=True`` as the default passed every test (the docstring's example prints shapes only)."""
    net = byol.build_online(6, projection_dim=4, predictor_dim=3, hidden_size=8, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 6))
    outputs, buffers = byol.forward(net, x)
    alone, _ = byol.forward(net, x[:2])
    np.testing.assert_allclose(outputs["p"][:2], alone["p"], rtol=1e-12, atol=1e-14)
    for key, value in net.buffers.items():
        np.testing.assert_array_equal(buffers[key], value)


def test_network_backward_returns_the_inputs_gradient_by_default():
    """``network_backward(dout, caches, grads)`` chains into the input (need_input_grad=True): the
    returned dx matches finite differences of the forward (evaluation mode: the running statistics are
    constants). Found by scripts/mutation_sweep.py: False as the default (dx None) passed every test,
    as the step passes False for its data."""
    from byol_ref.gradcheck import grad_error, numerical_gradient
    from byol_ref.model import network_backward, network_forward

    net = byol.build_online(5, projection_dim=4, predictor_dim=3, hidden_size=6, seed=0)
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((3, 5)), rng.standard_normal((3, 4))

    def p_of(x_):
        return network_forward(net.config, "online", net.params, net.buffers, x_, train=False)[0]["p"]

    _, caches, _ = network_forward(net.config, "online", net.params, net.buffers, x, train=False)
    dx = network_backward(dout, caches, {})
    assert dx is not None and dx.shape == x.shape
    assert grad_error(dx, numerical_gradient(p_of, x, dout)) < 1e-6


def test_model_default_bn_decay_is_haikus_0_9():
    """A training step runs the online encoder on each view in turn, so its first batch norm's running
    mean gets two zero-debiased updates with Haiku's decay 0.9 (BYOL_FACTS a4):
    (0.9 * 0.1 * m1 + 0.1 * m2) / (1 - 0.9^2), m_v the batch mean of view v's first Linear output."""
    online, target = byol.build(3, 4, 2, 5, seed=0)
    rng = np.random.default_rng(0)
    v1, v2 = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 1.0
    res = byol.loss_and_grads(online, target, v1, v2)
    w, b = online.params["encoder.fc1.weight"], online.params["encoder.fc1.bias"]
    m1, m2 = (v1 @ w + b).mean(axis=0), (v2 @ w + b).mean(axis=0)
    np.testing.assert_allclose(res.online_buffers["encoder.norm1.running_mean"], (0.09 * m1 + 0.1 * m2) / 0.19,
                               rtol=1e-12, atol=1e-14)
    assert int(res.online_buffers["encoder.norm1.count"]) == 2


def test_model_default_ws_eps_is_1e_5():
    """With weight_std, the encoder's first Linear computes x @ w_hat + b with
    w_hat = (w - mean_D(w)) / sqrt(var_D(w) + 1e-5) (biased variance over the inputs), the default eps."""
    online, target = byol.build(3, 4, 2, 6, seed=0, norm="layer", weight_std=True)
    rng = np.random.default_rng(1)
    v1, v2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    seen = {}
    byol.loss_and_grads(online, target, v1, v2, record=lambda k, a: seen.setdefault(k, np.array(a, copy=True)))
    w, b = online.params["encoder.fc1.weight"], online.params["encoder.fc1.bias"]
    w_hat = (w - w.mean(axis=0)) / np.sqrt(w.var(axis=0) + 1e-5)
    np.testing.assert_allclose(seen["online.encoder.fc1.out"], np.stack([v1 @ w_hat + b, v2 @ w_hat + b]),
                               rtol=1e-12, atol=1e-13)


def test_model_default_ln_eps_is_axons_1e_5():
    """With norm="layer", the encoder's first norm is a layer norm of h = x @ w + b over its features,
    (h - mean_F(h)) / sqrt(var_F(h) + 1e-5) (gamma 1, beta 0 at build), Axon's default eps."""
    online, target = byol.build(3, 4, 2, 6, seed=0, norm="layer")
    rng = np.random.default_rng(2)
    v1, v2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    seen = {}
    byol.loss_and_grads(online, target, v1, v2, record=lambda k, a: seen.setdefault(k, np.array(a, copy=True)))
    w, b = online.params["encoder.fc1.weight"], online.params["encoder.fc1.bias"]
    h = np.stack([v1 @ w + b, v2 @ w + b])
    want = (h - h.mean(axis=-1, keepdims=True)) / np.sqrt(h.var(axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(seen["online.encoder.norm1.out"], want, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- report


def test_report_defaults_are_knn_k_20_ten_labels_per_class_seed_0_and_no_features():
    """``evaluate_features`` without its options probes as the module's docstring says: a kNN of k = 20
    (majority vote), 10 labels per class, the probes' draws seeded 0, and no features returned; its
    random-init encoder, as ``random_init_baseline`` draws it by default, has the weights of seed
    0 + 1_000_003."""
    from byol_ref.data import synthetic
    from byol_ref.model import build_from_config
    from byol_ref.report import evaluate_features, random_init_baseline
    from byol_ref.train import apply_preprocessing, fit_preprocessing

    data = synthetic(n=120, dim=6, n_classes=2, seed=0)
    data, input_norm = apply_preprocessing(data, fit_preprocessing(data))
    online, _ = build_from_config(byol.Config(encoder_dim=6, hidden_size=8, projection_dim=4, predictor_dim=4),
                                  seed=7)
    be = byol.get_backend()
    rep = evaluate_features(online, data, input_norm, be)
    assert {k: rep["probe"][k] for k in ("k", "labels_per_class", "temperature", "seed")} == {
        "k": 20, "labels_per_class": 10, "temperature": None, "seed": 0}
    assert "features" not in rep
    drawn = random_init_baseline(online, data.x_train, input_norm, be)
    want, _ = build_from_config(online.config, seed=1_000_003)
    assert drawn.params.keys() == want.params.keys()
    for k, v in want.params.items():
        np.testing.assert_array_equal(drawn.params[k], v, err_msg=k)
