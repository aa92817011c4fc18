"""Tests for byol_ref.optim (SGD, LARS, Adam, AdamW) and the byol_ref.tree helpers.

Expected values are worked out by hand (literal numbers, with the arithmetic in comments) or by a
scalar plain-Python oracle written here, never by calling the code under test.
"""
import math

import pytest
from hypothesis import assume, given, strategies as st

from byol_ref import optim, tree
from byol_ref.backend import host as np
from byol_ref.optim import exclude_bias_and_norm, make_optimizer, predictor_lr_mult

F64 = "float64"
# Adam's eps must be > 0; this one is exactly absorbed by any float64 sqrt(v_hat) above ~1e-284.
TINY_EPS = 1e-300

# Any numpy warning (0/0 in a trust ratio, r / lr at lr = 0, overflow) is a failure.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def arr(x, dtype=F64):
    return np.asarray(x, dtype=dtype)


def run(name, params, grads_seq, lr=1.0, **hyper):
    """Apply ``name`` for len(grads_seq) steps; returns the params after each step."""
    opt = make_optimizer(name, **hyper)
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        lr_k = lr(len(out)) if callable(lr) else lr
        params, state = opt.update(grads, state, params, lr=lr_k)
        out.append(params)
    return out


def assert_close(actual, expected, atol=1e-12):
    np.testing.assert_allclose(actual, arr(expected), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# Hand-computed trajectories
# ---------------------------------------------------------------------------------------------

def test_sgd_three_steps_by_hand():
    params = {"encoder.fc1.weight": arr([[1.0, -2.0]]), "encoder.fc1.bias": arr([0.5])}
    grads = {"encoder.fc1.weight": arr([[0.5, 1.0]]), "encoder.fc1.bias": arr([1.0])}
    steps = run("sgd", params, [grads] * 3, lr=0.1, momentum=0.5, weight_decay=0.1)
    # weight: u = g + 0.1 p
    #   1: u = [0.6, 0.8]         m = [0.6, 0.8]        p = [0.94, -2.08]
    #   2: u = [0.594, 0.792]     m = [0.894, 1.192]    p = [0.8506, -2.1992]
    #   3: u = [0.58506, 0.78008] m = [1.03206, 1.37608] p = [0.747394, -2.336808]
    assert_close(steps[0]["encoder.fc1.weight"], [[0.94, -2.08]])
    assert_close(steps[1]["encoder.fc1.weight"], [[0.8506, -2.1992]])
    assert_close(steps[2]["encoder.fc1.weight"], [[0.747394, -2.336808]])
    # bias: excluded from weight decay by name; m = 1, 1.5, 1.75
    assert_close([s["encoder.fc1.bias"][0] for s in steps], [0.4, 0.25, 0.075])


def test_sgd_nesterov_and_zero_momentum_by_hand():
    params = {"encoder.fc1.weight": arr([[1.0, -2.0]])}
    grads = {"encoder.fc1.weight": arr([[0.5, 1.0]])}
    steps = run("sgd", params, [grads] * 2, lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True)
    # 1: u = [0.6, 0.8], m = u, d = u + 0.5 m = [0.9, 1.2], p = [0.91, -2.12]
    # 2: u = [0.591, 0.788], m = [0.891, 1.188], d = [1.0365, 1.382], p = [0.80635, -2.2582]
    assert_close(steps[0]["encoder.fc1.weight"], [[0.91, -2.12]])
    assert_close(steps[1]["encoder.fc1.weight"], [[0.80635, -2.2582]])
    steps = run("sgd", params, [grads] * 2, lr=0.1, momentum=0.0)
    assert_close(steps[1]["encoder.fc1.weight"], [[0.9, -2.2]])  # plain SGD: p - 2 * 0.1 g


def lars_tiny():
    params = {
        "encoder.fc1.weight": arr([[3.0, 4.0]]),   # ||p|| = 5
        "encoder.fc1.bias": arr([2.0]),
        "encoder.norm1.gamma": arr([1.0, -1.0]),
        "classifier.weight": arr([[0.0, 0.0]]),    # ||p|| = 0 on the first step
    }
    grads = {
        "encoder.fc1.weight": arr([[0.3, 0.4]]),
        "encoder.fc1.bias": arr([1.0]),
        "encoder.norm1.gamma": arr([0.5, 0.25]),
        "classifier.weight": arr([[0.3, 0.4]]),
    }
    return params, grads


def test_lars_official_three_steps_by_hand():
    params, grads = lars_tiny()
    steps = run("lars", params, [grads] * 3, lr=1.0, momentum=0.9, weight_decay=0.1, eta=0.01)
    # weight, always parallel to [0.6, 0.8], so u*r = eta ||p|| [0.6, 0.8]:
    #   1: u = g + 0.1 p = [0.6, 0.8], ||u|| = 1, r = 0.01*5/1; m = [0.03, 0.04]; p = [2.97, 3.96]
    #   2: ||p|| = 4.95: u*r = [0.0297, 0.0396]; m = [0.0567, 0.0756]; p = [2.9133, 3.8844]
    #   3: ||p|| = 4.8555: u*r = [0.029133, 0.038844]; m = [0.080163, 0.106884]; p = [2.833137, 3.777516]
    w = [s["encoder.fc1.weight"] for s in steps]
    assert_close(w[0], [[2.97, 3.96]])
    assert_close(w[1], [[2.9133, 3.8844]])
    assert_close(w[2], [[2.833137, 3.777516]])
    # bias and norm gamma: no wd, no trust ratio; m = g, 1.9 g, 2.71 g
    assert_close([s["encoder.fc1.bias"][0] for s in steps], [1.0, -0.9, -3.61])
    assert_close(steps[0]["encoder.norm1.gamma"], [0.5, -1.25])
    assert_close(steps[1]["encoder.norm1.gamma"], [-0.45, -1.725])
    assert_close(steps[2]["encoder.norm1.gamma"], [-1.805, -2.4025])
    # classifier weight: included (official), but ||p|| = 0 at step 1 so r = 1:
    #   1: u = g, m = [0.3, 0.4], p = [-0.3, -0.4]
    #   2: ||p|| = 0.5, u = g + 0.1 p = [0.27, 0.36], ||u|| = 0.45, r = 1/90: u*r = [0.003, 0.004]
    #      m = [0.273, 0.364], p = [-0.573, -0.764]
    #   3: ||p|| = 0.955, u*r = 0.00955 [0.6, 0.8]; m = [0.25143, 0.33524]; p = [-0.82443, -1.09924]
    c = [s["classifier.weight"] for s in steps]
    assert_close(c[0], [[-0.3, -0.4]])
    assert_close(c[1], [[-0.573, -0.764]])
    assert_close(c[2], [[-0.82443, -1.09924]])


def test_lars_sum_of_norms_by_hand():
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]]), "classifier.weight": arr([[0.0, 0.0]])}
    grads = {"encoder.fc1.weight": arr([[0.4, -0.3]]), "classifier.weight": arr([[0.3, 0.4]])}
    hyper = dict(lr=1.0, momentum=0.9, weight_decay=0.1, eta=0.01)
    # g orthogonal to p, ||g|| = 0.5, ||p|| = 5, u = g + 0.1 p = [0.7, 0.1], ||u|| = sqrt(0.5)
    (s,) = run("lars", params, [grads], trust_ratio="sum_of_norms", **hyper)
    # r = 0.05 / (0.5 + 0.5) = 0.05: u r = [0.035, 0.005]
    assert_close(s["encoder.fc1.weight"], [[2.965, 3.995]])
    assert_close(s["classifier.weight"], [[-0.3, -0.4]])  # ||p|| = 0: u = g
    (s,) = run("lars", params, [grads], **hyper)
    # official: r = 0.05 / sqrt(0.5): u r = 0.05 [0.7, 0.1] / sqrt(0.5)
    assert_close(s["encoder.fc1.weight"], [[3 - 0.035 / math.sqrt(0.5), 4 - 0.005 / math.sqrt(0.5)]])
    # with eps = 1e-8 (solo-learn, lightly): r = 0.05 / (1 + 1e-8)
    (s,) = run("lars", params, [grads], trust_ratio="sum_of_norms", eps=1e-8, **hyper)
    assert_close(s["encoder.fc1.weight"], [[3 - 0.035 / (1 + 1e-8), 4 - 0.005 / (1 + 1e-8)]], atol=1e-15)


def test_lars_zero_gradient_official_vs_sum_of_norms():
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]])}
    grads = {"encoder.fc1.weight": arr([[0.0, 0.0]])}
    hyper = dict(lr=1.0, weight_decay=0.1, eta=0.01)
    # official: u = 0.1 p, r = eta ||p|| / (0.1 ||p||) = 0.1, so the step is eta p = [0.03, 0.04]
    (s,) = run("lars", params, [grads], **hyper)
    assert_close(s["encoder.fc1.weight"], [[2.97, 3.96]])
    # sum_of_norms: ||g|| = 0 -> neither weight decay nor scaling: u = g = 0, nothing moves
    (s,) = run("lars", params, [grads], trust_ratio="sum_of_norms", **hyper)
    assert_close(s["encoder.fc1.weight"], [[3.0, 4.0]], atol=0)
    # official, wd = 0 and g = 0: ||u|| = 0 -> r = 1, u = 0 (no nan from 0/0)
    (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.0)
    assert_close(s["encoder.fc1.weight"], [[3.0, 4.0]], atol=0)


def test_lars_exclude_ndim_solo_learn():
    params = {
        "head.weight": arr([3.0, 4.0]),              # 1-d but not excluded by name
        "encoder.norm1.weight": arr([[3.0, 4.0]]),   # 2-d, excluded by name, not by ndim
        "scale": arr(5.0),                           # 0-d: LARS-scaled but no weight decay
    }
    grads = {"head.weight": arr([0.3, 0.4]), "encoder.norm1.weight": arr([[0.3, 0.4]]), "scale": arr(1.0)}
    (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.1, eta=0.01, exclude="ndim")
    assert_close(s["head.weight"], [2.7, 3.6])                # p - g: no wd, no ratio
    assert_close(s["encoder.norm1.weight"], [[2.97, 3.96]])   # u = [0.6, 0.8], r = 0.05
    assert_close(s["scale"], 4.95)                            # u = g = 1, r = 0.01 * 5 / 1
    (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.1, eta=0.01)  # by name
    assert_close(s["head.weight"], [2.97, 3.96])
    assert_close(s["encoder.norm1.weight"], [[2.7, 3.6]])
    # ndim <= 1 gets no weight decay in SGD too (0-d included); by name only the norm key is spared
    (s,) = run("sgd", params, [grads], lr=1.0, weight_decay=0.1, exclude="ndim")
    assert_close(s["scale"], 4.0)
    assert_close(s["encoder.norm1.weight"], [[2.4, 3.2]])     # p - (g + 0.1 p)
    (s,) = run("sgd", params, [grads], lr=1.0, weight_decay=0.1)
    assert_close(s["scale"], 3.5)                             # 5 - (1 + 0.5)
    assert_close(s["encoder.norm1.weight"], [[2.7, 3.6]])


def test_lars_clip_lr():
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]])}
    grads = {"encoder.fc1.weight": arr([[0.3, 0.4]])}
    hyper = dict(weight_decay=0.0, eta=0.1, trust_ratio="sum_of_norms", clip_lr=True)
    # r = 0.1 * 5 / 0.5 = 1. Step = min(r, lr) * u.
    (s,) = run("lars", params, [grads], lr=0.5, **hyper)        # r > lr: multiplier 1, step 0.5 u
    assert_close(s["encoder.fc1.weight"], [[2.85, 3.8]])
    (s,) = run("lars", params, [grads], lr=2.0, **hyper)        # r < lr: multiplier r/lr, step r u
    assert_close(s["encoder.fc1.weight"], [[2.7, 3.6]])
    (s,) = run("lars", params, [grads], lr=2.0, **dict(hyper, clip_lr=False))  # unclipped: lr r u
    assert_close(s["encoder.fc1.weight"], [[2.4, 3.2]])
    # ||p|| = 0: the r = 1 fallback is not clipped, the step is lr u (not min(1/lr, 1) lr u = u)
    zero = {"encoder.fc1.weight": arr([[0.0, 0.0]])}
    for variant in ("norm_of_sum", "sum_of_norms"):
        (s,) = run("lars", zero, [grads], lr=2.0, **dict(hyper, trust_ratio=variant))
        assert_close(s["encoder.fc1.weight"], [[-0.6, -0.8]])
    # lr = 0: the multiplier is 1 (torch: min(r / 0.0, 1)); params stay, the buffer gets u, not r u
    # (eta 0.05 makes r = 0.5: at eta 0.1, r = 1 and the buffer could not tell u from r u)
    opt = make_optimizer("lars", **dict(hyper, eta=0.05))
    p0, s0 = opt.update(grads, opt.init(params), params, lr=0.0)
    assert_close(p0["encoder.fc1.weight"], [[3.0, 4.0]], atol=0)
    assert_close(s0["momentum.encoder.fc1.weight"], [[0.3, 0.4]])
    (s,) = run("lars", params, [grads], lr=0.2, **dict(hyper, eta=0.05, clip_lr=False))  # the control: r u
    assert_close(s["encoder.fc1.weight"], [[3.0 - 0.2 * 0.15, 4.0 - 0.2 * 0.2]])


def test_lars_only_with_wd_lightly():
    """lightly's LARS.step scales only ``if weight_decay != 0`` (per param group): at weight_decay 0 the
    whole step is momentum SGD, where the official and solo-learn LARS still scale every weight."""
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]]), "encoder.fc1.bias": arr([1.0, 0.0])}
    grads = {"encoder.fc1.weight": arr([[0.3, 0.4]]), "encoder.fc1.bias": arr([0.5, 0.5])}
    hyper = dict(eta=0.1, trust_ratio="sum_of_norms", only_with_wd=True)
    s = run("lars", params, [grads, grads], lr=0.5, weight_decay=0.0, momentum=0.5, **hyper)
    assert_close(s[0]["encoder.fc1.weight"], [[2.85, 3.8]])          # p - lr g: no ratio
    assert_close(s[1]["encoder.fc1.weight"], [[2.85 - 0.225, 3.8 - 0.3]])  # m = 0.5 g + g
    assert_close(s[1]["encoder.fc1.bias"], [0.75 - 0.375, -0.25 - 0.375])
    (w,) = run("lars", params, [grads], lr=0.5, weight_decay=0.0, **dict(hyper, only_with_wd=False))
    assert_close(w["encoder.fc1.weight"], [[2.85, 3.8]])  # r = 0.1 * 5 / 0.5 = 1: the same step, by luck
    (w,) = run("lars", params, [grads], lr=0.5, weight_decay=0.0, **dict(hyper, eta=0.05, only_with_wd=False))
    assert_close(w["encoder.fc1.weight"], [[2.925, 3.9]])  # r = 0.5 scales it without the rule
    (w,) = run("lars", params, [grads], lr=0.5, weight_decay=0.0, **dict(hyper, eta=0.05))
    assert_close(w["encoder.fc1.weight"], [[2.85, 3.8]])  # and not with it
    # weight decay on: the weight is scaled as ever (r = 0.05 * 5 / (0.5 + 0.1 * 5) = 0.25, u = (g + 0.1 p) r);
    # the bias, excluded by name, has no weight decay and no ratio either way
    for only in (True, False):
        (w,) = run("lars", params, [grads], lr=0.5, weight_decay=0.1, **dict(hyper, eta=0.05, only_with_wd=only))
        assert_close(w["encoder.fc1.weight"], [[3.0 - 0.5 * 0.25 * 0.6, 4.0 - 0.5 * 0.25 * 0.8]])
        assert_close(w["encoder.fc1.bias"], [0.75, -0.25])
    with pytest.raises(TypeError, match=r"only_with_wd must be True or False, got 1 \(int\)"):
        run("lars", params, [grads], lr=0.5, only_with_wd=1)


def adam_oracle(p, gs, lr, b1, b2, eps, wd=0.0, decoupled=False):
    """Scalar Adam/AdamW in plain Python floats (Kingma & Ba, algorithm 1)."""
    m = v = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        u = g if decoupled else g + wd * p
        m = b1 * m + (1 - b1) * u
        v = b2 * v + (1 - b2) * u * u
        d = (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
        p = p - lr * (d + (wd * p if decoupled else 0.0))
        out.append(p)
    return out


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_three_steps(name):
    params = {"encoder.fc1.weight": arr([1.0, -2.0]), "encoder.fc1.bias": arr([0.5, 0.0])}
    g_w = [[0.1, -0.2], [0.3, 0.0], [-0.5, 0.4]]
    g_b = [[1.0, -1.0], [0.0, 2.0], [0.5, 0.5]]
    grads = [{"encoder.fc1.weight": arr(a), "encoder.fc1.bias": arr(b)} for a, b in zip(g_w, g_b)]
    hyper = dict(b1=0.5, b2=0.75, eps=1e-3, weight_decay=0.1)
    steps = run(name, params, grads, lr=0.1, **hyper)
    dec = name == "adamw"
    for i in range(2):
        w = adam_oracle([1.0, -2.0][i], [g[i] for g in g_w], 0.1, 0.5, 0.75, 1e-3, 0.1, dec)
        b = adam_oracle([0.5, 0.0][i], [g[i] for g in g_b], 0.1, 0.5, 0.75, 1e-3, 0.0, dec)  # bias: no wd
        assert_close([s["encoder.fc1.weight"][i] for s in steps], w, atol=1e-13)
        assert_close([s["encoder.fc1.bias"][i] for s in steps], b, atol=1e-13)


def test_adam_first_step_literal():
    params = {"encoder.fc1.weight": arr([1.0, -2.0])}
    grads = {"encoder.fc1.weight": arr([0.1, -0.2])}
    # step 1, eps ~ 0: m_hat = g, v_hat = g^2, so the direction is sign(g). eps must be > 0 (0 makes
    # a zero gradient 0/0); 1e-300 vanishes exactly next to |g| >= 0.1, so the step is the same.
    (s,) = run("adam", params, [grads], lr=0.1, eps=TINY_EPS)
    assert_close(s["encoder.fc1.weight"], [0.9, -1.9])
    # AdamW wd = 0.1: p - lr (sign(g) + 0.1 p) = [1 - 0.11, -2 + 0.12]
    (s,) = run("adamw", params, [grads], lr=0.1, eps=TINY_EPS, weight_decay=0.1)
    assert_close(s["encoder.fc1.weight"], [0.89, -1.88])
    # Adam L2 wd = 0.1: u = g + 0.1 p = [0.2, -0.4], still sign(u) = sign(g) on step 1
    (s,) = run("adam", params, [grads], lr=0.1, eps=TINY_EPS, weight_decay=0.1)
    assert_close(s["encoder.fc1.weight"], [0.9, -1.9])


def test_adam_count_in_state():
    params = {"encoder.fc1.weight": arr([1.0])}
    state = optim.adam_init(params)
    assert set(state) == {"mu.encoder.fc1.weight", "nu.encoder.fc1.weight", "count"}
    assert state["count"].shape == () and int(state["count"]) == 0
    _, state = optim.adam_update({"encoder.fc1.weight": arr([1.0])}, state, params, lr=0.1)
    assert int(state["count"]) == 1


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
@pytest.mark.parametrize("inplace", [False, True])
def test_an_update_returns_the_state_in_its_inits_key_order(name, inplace):
    """Adam's update returned "count" first and each parameter's moments side by side, where its
    init gives every "mu." key, then every "nu." key, then "count": a run's optimiser state changed
    order at its first step, so a checkpoint of step 0 and one of step 1 listed it otherwise."""
    params = {"encoder.fc1.weight": arr([1.0, 2.0]), "encoder.fc1.bias": arr([0.5]),
              "projector.fc2.weight": arr([-1.0])}
    grads = {k: v + 0.25 for k, v in params.items()}
    opt = make_optimizer(name)
    state = opt.init(params)
    order = list(state)
    for _ in range(2):
        params, state = opt.update(grads, state, params, lr=0.1, inplace=inplace)
        assert list(state) == order
        assert list(params) == list(grads)


# ---------------------------------------------------------------------------------------------
# Filters, lr_mult, make_optimizer
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, excluded", [
    ("encoder.fc1.weight", False),
    ("encoder.fc1.bias", True),
    ("encoder.norm1.gamma", True),
    ("encoder.norm1.beta", True),
    ("projector.batchnorm.gamma", True),
    ("projector.layer_norm.weight", True),
    ("predictor.fc2.weight", False),
    ("classifier.weight", False),
    ("classifier.bias", True),
    ("encoder.conv1.b", True),          # Haiku's name for a bias
    ("encoder.bias_net.weight", False),  # "bias" only counts as the last component
])
def test_exclude_bias_and_norm(name, excluded):
    assert exclude_bias_and_norm(name, None) is excluded


@pytest.mark.parametrize("name", [3, None, ("encoder", "bias"), b"encoder.bias"])
def test_exclude_bias_and_norm_names_a_key_that_is_not_a_str(name):
    with pytest.raises(TypeError, match=rf"name must be a dotted parameter key \(str\), got {type(name).__name__}"):
        exclude_bias_and_norm(name)


def test_predictor_lr_mult():
    f = predictor_lr_mult(10.0)
    assert f("predictor.fc1.weight") == 10.0
    assert f("projector.fc1.weight") == 1.0
    assert f("encoder.predictor.weight") == 1.0
    assert f("predictor_head.weight") == 1.0  # the first component is "predictor", not a prefix of it
    with pytest.raises(ValueError, match="mult"):
        predictor_lr_mult(-1.0)


def test_make_optimizer_binds_hyper():
    params, grads = lars_tiny()
    opt = make_optimizer("lars", momentum=0.8, weight_decay=0.1, eta=0.01)
    assert opt.name == "lars" and opt.hyper == dict(momentum=0.8, weight_decay=0.1, eta=0.01)
    a, sa = opt.update(grads, opt.init(params), params, lr=0.5)
    b, sb = optim.lars_update(grads, optim.lars_init(params), params, lr=0.5, momentum=0.8,
                              weight_decay=0.1, eta=0.01)
    for k in params:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(sa["momentum." + k], sb["momentum." + k])
    assert set(sa) == {"momentum." + k for k in params}


@pytest.mark.parametrize("name, hyper, arg", [
    ("rmsprop", {}, "name"),
    ("sgd", dict(eta=0.1), "eta"),
    ("sgd", dict(momentum=1.0), "momentum"),
    ("sgd", dict(momentum=-0.1), "momentum"),
    ("sgd", dict(weight_decay=-1e-6), "weight_decay"),
    ("lars", dict(eta=0.0), "eta"),
    ("lars", dict(eps=-1.0), "eps"),
    ("lars", dict(trust_ratio="trust"), "trust_ratio"),
    ("lars", dict(exclude="bias"), "exclude"),
    ("adam", dict(b1=1.0), "b1"),
    ("adam", dict(b2=float("nan")), "b2"),
    ("adamw", dict(eps=-1e-8), "eps"),
])
def test_make_optimizer_validates(name, hyper, arg):
    with pytest.raises(ValueError, match=arg):
        make_optimizer(name, **hyper)


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
@pytest.mark.parametrize("bad", ["lr", "grads", "state", "params", "momentun"])
def test_make_optimizer_refuses_lr_and_the_update_arguments_as_hyper_parameters(name, bad):
    """lr is given at each step, and grads, state and params are the update's operands: none is a
    hyper-parameter to bind. No test asked this: with the filter of keyword-only arguments other than lr
    loosened (``... or q.name != "lr"``) each was taken, and failed later, as a TypeError of another kind."""
    allowed = [k for k in ("momentum", "weight_decay", "b1", "b2", "eps", "eta") if k in
               {"sgd": ("momentum", "weight_decay"), "lars": ("momentum", "weight_decay", "eta", "eps"),
                "adam": ("b1", "b2", "eps", "weight_decay"), "adamw": ("b1", "b2", "eps", "weight_decay")}[name]]
    with pytest.raises(ValueError, match=rf"^unknown hyper-parameter\(s\) \['{bad}'\] for '{name}'; expected some of "
                                         rf"\[[^]]*\]$") as info:
        make_optimizer(name, **{bad: 0.1})
    listed = str(info.value).split("expected some of ", 1)[1]
    assert all(f"'{k}'" in listed for k in allowed) and "'lr'" not in listed
    assert not any(f"'{k}'" in listed for k in ("grads", "state", "params"))


@pytest.mark.parametrize("name, hyper, message", [
    ("sgd", dict(nesterov=1), r"nesterov must be True or False, got 1 \(int\)"),
    ("lars", dict(clip_lr="yes"), r"clip_lr must be True or False, got 'yes' \(str\)"),
    ("lars", dict(inplace="yes"), r"inplace must be True or False, got 'yes' \(str\)"),
    ("sgd", dict(inplace=1), r"inplace must be True or False, got 1 \(int\)"),
    ("adam", dict(inplace=1), r"inplace must be True or False, got 1 \(int\)"),
    ("lars", dict(lr_mult=3.0), r"lr_mult must be None, a dict or a callable name -> float, got float"),
    ("lars", dict(exclude=3), r"exclude must be 'name', 'ndim', None, a callable .* got 3"),
    ("sgd", dict(momentum="0.9"), r"momentum must be a finite number in \[0.0, 1.0\), got '0.9' \(str\)"),
    ("sgd", dict(momentum=True), r"momentum must be a finite number in \[0.0, 1.0\), got True \(bool\)"),
    ("adam", dict(eps=None), r"eps must be a finite number in \[0.0, inf\), got None \(NoneType\)"),
    ("sgd", dict(momentum=np.True_), r"momentum must be a finite number in \[0.0, 1.0\), got .*True.* \(bool"),
    ("lars", dict(trust_ratio=3), r"trust_ratio must be 'norm_of_sum' \(official\) or 'sum_of_norms'"),
])
def test_make_optimizer_refuses_wrong_types(name, hyper, message):
    """A value of the wrong type is a TypeError naming the argument, the value and its type."""
    with pytest.raises(TypeError, match=message):
        make_optimizer(name, **hyper)


def test_numpy_bools_are_bools():
    """A flag read from an array (np.True_) is a bool, and stays one in the bound hyper-parameters' effect."""
    params, grads = {"w": arr([1.0, -2.0])}, {"w": arr([0.5, 0.25])}
    a = make_optimizer("sgd", momentum=0.9, nesterov=True)
    b = make_optimizer("sgd", momentum=0.9, nesterov=np.True_)
    np.testing.assert_array_equal(a.update(grads, a.init(params), params, lr=0.1)[0]["w"],
                                  b.update(grads, b.init(params), params, lr=0.1)[0]["w"])
    c = make_optimizer("sgd", momentum=0.9, nesterov=False)
    assert not np.array_equal(a.update(grads, a.init(params), params, lr=0.1)[0]["w"],
                              c.update(grads, c.init(params), params, lr=0.1)[0]["w"])


def test_update_validates_inputs():
    params, grads = lars_tiny()
    state = optim.lars_init(params)
    with pytest.raises(ValueError, match="lr"):
        optim.lars_update(grads, state, params, lr=-0.1)
    with pytest.raises(ValueError, match="missing from grads.*encoder.fc1.bias"):
        optim.lars_update({k: v for k, v in grads.items() if k != "encoder.fc1.bias"}, state, params, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\['encoder.fc1.weight'\].*dtype"):
        optim.lars_update(dict(grads, **{"encoder.fc1.weight": arr([[0.3, 0.4]], "float32")}),
                          state, params, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\['encoder.fc1.weight'\].*shape"):
        optim.lars_update(dict(grads, **{"encoder.fc1.weight": arr([0.3, 0.4])}), state, params, lr=0.1)
    with pytest.raises(ValueError, match="state"):
        optim.lars_update(grads, optim.adam_init(params), params, lr=0.1)
    with pytest.raises(ValueError, match="lr_mult has keys that are not in params"):
        optim.lars_update(grads, state, params, lr=0.1, lr_mult={"predictor.typo": 2.0})
    with pytest.raises(ValueError, match="lr_mult"):
        optim.lars_update(grads, state, params, lr=0.1, lr_mult=lambda k: -1.0)
    with pytest.raises(ValueError, match="floating"):
        optim.sgd_update({"w": arr([1], "int64")}, {"momentum.w": arr([1], "int64")}, {"w": arr([1], "int64")},
                         lr=0.1)


def test_tree_helpers():
    a = {"x.weight": arr([[1.0, 2.0]]), "x.bias": arr([2.0])}
    b = tree.scale(a, 2.0)
    assert_close(tree.add(a, b)["x.weight"], [[3.0, 6.0]])
    assert_close(tree.global_norm(a), 3.0)
    c = tree.copy(a)
    assert not np.shares_memory(c["x.weight"], a["x.weight"])
    assert_close(tree.zeros_like(a)["x.bias"], [0.0], atol=0)
    assert tree.tree_to_numpy(a)["x.bias"].dtype == np.float64
    assert tree.scale({"w": arr([1.0], "float32")}, 0.5)["w"].dtype == np.float32
    assert tree.scale({"w": arr([1.0], "float32")}, np.float64(0.5))["w"].dtype == np.float32  # a NumPy scalar too
    # a (1, 1) entry broadcast against (1, 2) into a sum of neither tree's shape, without a word
    with pytest.raises(ValueError, match=r"^b\['x.weight'\] has shape \(1, 1\), expected a\['x.weight'\]'s \(1, 2\)$"):
        tree.add(a, {"x.weight": arr([[1.0]]), "x.bias": arr([2.0])})
    with pytest.raises(ValueError, match="missing from b"):
        tree.add(a, {"x.weight": arr([[1.0, 2.0]])})
    assert_close(tree.global_norm({"a": arr([3.0]), "b": arr([[4.0]])}), 5.0)
    with pytest.raises(ValueError, match=r"missing from trees\[1\]: \['x.bias'\], extra in trees\[1\]: \['y'\]"):
        tree.tree_map(lambda u, v: u, a, {"x.weight": 1, "y": 2})
    with pytest.raises(ValueError, match="grads"):
        tree.check_same_keys(a, {}, "params", "grads")


def test_the_global_norm_of_an_empty_tree_is_a_host_zero():
    """An empty tree (grads filtered down to nothing, say) has norm 0.0, a Python float, as documented:
    no array is there to say which device and dtype the norm would have."""
    n = tree.global_norm({})
    assert n == 0.0 and type(n) is float


def test_tree_map_keeps_the_first_trees_order_and_dtypes_and_refuses_extra_keys_or_no_tree():
    a = {"z.weight": arr([1.0], "float32"), "a.bias": arr([2.0], "float32")}
    assert list(tree.tree_map(lambda u, v: u + v, a, a)) == ["z.weight", "a.bias"]  # (not sorted)
    assert {k: v.dtype for k, v in tree.zeros_like(a).items()} == {"z.weight": np.float32, "a.bias": np.float32}
    with pytest.raises(ValueError, match=r"missing from grads: \[\], extra in grads: \['extra'\]"):
        tree.check_same_keys(a, {**a, "extra": arr([0.0])}, "params", "grads")
    with pytest.raises(ValueError, match="tree_map needs at least one tree, got none"):
        tree.tree_map(lambda: 0)


def test_describe_names_an_array_by_dtype_and_shape_and_anything_else_by_its_repr():
    """Only what has both a tuple ``shape`` and a ``dtype`` is an array here. Found by
    scripts/mutation_sweep.py: with the two tests joined by ``and``, every test passed, though a NumPy
    dtype (shape (), no dtype of its own) would then raise AttributeError in a repr, and an object with a
    shape alone be printed "None (2, 3)"."""
    assert tree.describe(np.zeros((2, 3))) == "float64 (2, 3)"
    assert tree.describe(np.array(5)) == "int64 5"
    assert tree.describe(np.dtype("float32")) == "dtype('float32')"

    class ShapeOnly:
        shape = (2, 3)

        def __repr__(self):
            return "ShapeOnly()"

    class ListShape(ShapeOnly):
        shape, dtype = [2, 3], "float64"

    assert tree.describe(ShapeOnly()) == "ShapeOnly()" and tree.describe(ListShape()) == "ShapeOnly()"
    assert tree.describe_tree({"w": np.zeros(2, "float32"), "n": 3}) == "{'w': float32 (2,), 'n': 3}"


# ---------------------------------------------------------------------------------------------
# Property tests (hypothesis)
# ---------------------------------------------------------------------------------------------

KEYS = ("encoder.fc1.weight", "encoder.fc1.bias", "encoder.norm1.gamma", "encoder.norm1.beta",
        "projector.fc2.weight", "predictor.fc1.weight", "predictor.fc1.bias", "classifier.weight")


def make_tree(seed, dims, dtype, n_grads=3):
    """Random params and ``n_grads`` gradient dicts with BYOL-like keys and shapes."""
    D, H, P, Q = dims
    shapes = {"encoder.fc1.weight": (D, H), "encoder.fc1.bias": (H,), "encoder.norm1.gamma": (H,),
              "encoder.norm1.beta": (H,), "projector.fc2.weight": (H, P), "predictor.fc1.weight": (P, Q),
              "predictor.fc1.bias": (Q,), "classifier.weight": (H, 3)}
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(n_grads)]
    return params, grads


dims_st = st.tuples(*[st.integers(1, 5)] * 4)

optimizer_st = st.one_of(
    st.fixed_dictionaries({"name": st.just("sgd"), "momentum": st.sampled_from([0.0, 0.5, 0.9]),
                           "weight_decay": st.sampled_from([0.0, 1e-4, 0.1]), "nesterov": st.booleans()}),
    st.fixed_dictionaries({"name": st.just("lars"), "momentum": st.sampled_from([0.0, 0.9]),
                           "weight_decay": st.sampled_from([0.0, 1e-6, 0.1]),
                           "eta": st.sampled_from([1e-3, 0.02]),
                           "trust_ratio": st.sampled_from(["norm_of_sum", "sum_of_norms"]),
                           "eps": st.sampled_from([0.0, 1e-8]),
                           "exclude": st.sampled_from(["name", "ndim", None]),
                           "clip_lr": st.booleans()}),
    st.fixed_dictionaries({"name": st.sampled_from(["adam", "adamw"]), "b1": st.sampled_from([0.0, 0.9]),
                           "b2": st.sampled_from([0.5, 0.999]),
                           "eps": st.sampled_from([1e-30, 1e-8]),  # Adam's eps must be > 0 (in float32 too)
                           "weight_decay": st.sampled_from([0.0, 0.01])}),
)


def build(cfg):
    cfg = dict(cfg)
    return make_optimizer(cfg.pop("name"), **cfg)


def float_leaves(tree_):
    return {k: v for k, v in tree_.items() if v.dtype.kind == "f"}


@given(cfg=optimizer_st, seed=st.integers(0, 2**32 - 1), dims=dims_st, dtype=st.sampled_from(["float32", F64]))
def test_lr_zero_leaves_params_unchanged(cfg, seed, dims, dtype):
    opt = build(cfg)
    params, grads = make_tree(seed, dims, dtype)
    state = opt.init(params)
    p = params
    for g in grads:
        p, state = opt.update(g, state, p, lr=0.0)
    for k in params:
        np.testing.assert_array_equal(p[k], params[k])


@given(cfg=optimizer_st, seed=st.integers(0, 2**32 - 1), dims=dims_st, dtype=st.sampled_from(["float32", F64]),
       mult=st.sampled_from([None, 0.0, 10.0]))
def test_inplace_equals_pure_and_pure_does_not_mutate(cfg, seed, dims, dtype, mult):
    opt = build(cfg)
    lr_mult = None if mult is None else predictor_lr_mult(mult)
    params, grads = make_tree(seed, dims, dtype)
    p_pure, s_pure = params, opt.init(params)
    p_in, s_in = tree.copy(params), opt.init(params)
    for i, g in enumerate(grads):
        before = (tree.copy(p_pure), tree.copy(s_pure), tree.copy(g))
        new_p, new_s = opt.update(g, s_pure, p_pure, lr=0.3 + i, lr_mult=lr_mult)
        # pure: inputs untouched, outputs own their memory
        for old, now in zip(before, (p_pure, s_pure, g)):
            for k in old:
                np.testing.assert_array_equal(now[k], old[k])
        inputs = [*p_pure.values(), *s_pure.values(), *g.values()]
        for out in (*new_p.values(), *new_s.values()):
            assert not any(np.shares_memory(out, x) for x in inputs)
        p_pure, s_pure = new_p, new_s
        # in place: same arrays come back, overwritten
        ids = {k: id(v) for k, v in {**p_in, **s_in}.items()}
        p_in, s_in = opt.update(g, s_in, p_in, lr=0.3 + i, lr_mult=lr_mult, inplace=True)
        assert {k: id(v) for k, v in {**p_in, **s_in}.items()} == ids
    for k in params:
        np.testing.assert_array_equal(p_in[k], p_pure[k])  # bitwise identical
    for k in s_pure:
        np.testing.assert_array_equal(s_in[k], s_pure[k])
    # dtype in = dtype out, for params and every float state buffer
    assert all(v.dtype == np.dtype(dtype) for v in (*p_pure.values(), *float_leaves(s_pure).values()))


@given(seed=st.integers(0, 2**32 - 1), dims=dims_st, lr=st.floats(1e-3, 10), eta=st.floats(1e-4, 0.1),
       wd=st.sampled_from([0.0, 1e-6, 0.5]), momentum=st.sampled_from([0.0, 0.9]),
       trust_ratio=st.sampled_from(["norm_of_sum", "sum_of_norms"]), eps=st.sampled_from([0.0, 1e-8]))
def test_lars_first_step_norm(seed, dims, lr, eta, wd, momentum, trust_ratio, eps):
    params, (grads, *_) = make_tree(seed, dims, F64)
    new, _ = optim.lars_update(grads, optim.lars_init(params), params, lr=lr, eta=eta, weight_decay=wd,
                               momentum=momentum, trust_ratio=trust_ratio, eps=eps)
    for k, p in params.items():
        step, g = params[k] - new[k], grads[k]
        if exclude_bias_and_norm(k):
            # excluded by name: no weight decay, no trust ratio, m = g on the first step
            np.testing.assert_allclose(step, lr * g, rtol=1e-12, atol=1e-15)
            continue
        pn, gn, un = (float(np.linalg.norm(x)) for x in (p, g, g + wd * p))
        if trust_ratio == "norm_of_sum":
            expected = lr * eta * pn * un / (un + eps)             # = lr eta ||p|| when eps = 0
        else:
            expected = lr * eta * pn * un / (gn + wd * pn + eps)
        # the step is recovered as p - new, exact to ~eps*||p|| (cancellation), hence the abs term
        assert float(np.linalg.norm(step)) == pytest.approx(expected, rel=1e-10, abs=1e-14 * pn)
        # and the step points along g + wd p
        np.testing.assert_allclose(step * un, (g + wd * p) * float(np.linalg.norm(step)), rtol=1e-9, atol=1e-12)


@given(cfg=optimizer_st, seed=st.integers(0, 2**32 - 1), dims=dims_st, mult=st.floats(0, 20))
def test_lr_mult_only_scales_predictor_steps(cfg, seed, dims, mult):
    assume(not cfg.get("clip_lr"))  # clip_lr makes the step non-linear in lr
    opt = build(cfg)
    params, grads = make_tree(seed, dims, F64)
    state = opt.init(params)
    for g in grads[:2]:  # two steps so that momentum and Adam moments are non-trivial
        params, state = opt.update(g, state, params, lr=0.1)
    base_p, base_s = opt.update(grads[2], state, params, lr=0.1)
    mult_p, mult_s = opt.update(grads[2], state, params, lr=0.1, lr_mult=predictor_lr_mult(mult))
    dict_p, _ = opt.update(grads[2], state, params, lr=0.1,
                           lr_mult={k: mult for k in params if k.startswith("predictor.")})
    for k in params:
        np.testing.assert_array_equal(mult_p[k], dict_p[k])
        if k.startswith("predictor."):
            np.testing.assert_allclose(params[k] - mult_p[k], mult * (params[k] - base_p[k]),
                                       rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_array_equal(mult_p[k], base_p[k])
    for k in base_s:  # the lr sits outside the buffers: state is the same
        np.testing.assert_array_equal(mult_s[k], base_s[k])


@given(name=st.sampled_from(["adam", "adamw"]), seed=st.integers(0, 2**32 - 1), dims=dims_st,
       lr=st.floats(1e-4, 1.0))
def test_adam_first_step_moves_lr_per_coordinate(name, seed, dims, lr):
    params, (grads, *_) = make_tree(seed, dims, F64)
    new, _ = make_optimizer(name, eps=TINY_EPS, weight_decay=0.0).update(
        grads, optim.adam_init(params), params, lr=lr)
    for k in params:
        # p - new loses ~eps*|p| to cancellation when lr is small: allow that much absolutely
        np.testing.assert_allclose(params[k] - new[k], lr * np.sign(grads[k]), rtol=1e-12,
                                   atol=4e-16 * float(np.abs(params[k]).max()))


def test_float32_never_upcast_in_lars_scalars():
    # the trust ratio and the norms are float32 0-d values, so no float64 creeps in
    params, grads = make_tree(0, (3, 4, 2, 5), "float32")
    for variant in ("norm_of_sum", "sum_of_norms"):
        new, st_ = optim.lars_update(grads[0], optim.lars_init(params), params, lr=np.float64(0.5),
                                     trust_ratio=variant, clip_lr=True, eps=1e-8)
        assert all(v.dtype == np.float32 for v in (*new.values(), *st_.values()))


# ---------------------------------------------------------------------------------------------
# Backends (the cupy case is gpu-marked and skipped without a device)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
def test_backend_matches_numpy(backend, name):
    hyper = {"lars": dict(weight_decay=0.1, eta=0.01), "sgd": dict(weight_decay=0.1, nesterov=True)}.get(name, {})
    params, grads = make_tree(1, (4, 6, 3, 5), F64)
    opt = make_optimizer(name, lr_mult=predictor_lr_mult(5.0), **hyper)
    ref_p, ref_s = params, opt.init(params)
    dev_p = {k: backend.asarray(v) for k, v in params.items()}
    dev_s, dev_in_p = opt.init(dev_p), tree.copy(dev_p)
    dev_in_s = opt.init(dev_in_p)
    for g in grads:
        ref_p, ref_s = opt.update(g, ref_s, ref_p, lr=0.2)
        dg = {k: backend.asarray(v) for k, v in g.items()}
        dev_p, dev_s = opt.update(dg, dev_s, dev_p, lr=0.2)
        dev_in_p, dev_in_s = opt.update(dg, dev_in_s, dev_in_p, lr=0.2, inplace=True)
    got, got_in = tree.tree_to_numpy(dev_p), tree.tree_to_numpy(dev_in_p)
    for k in params:
        np.testing.assert_allclose(got[k], ref_p[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(got_in[k], got[k])


# ---------------------------------------------------------------------------------------------
# Corners a mutation audit found unpinned
# ---------------------------------------------------------------------------------------------

def test_lars_exclusions_none_and_a_custom_pair():
    params = {"encoder.fc1.bias": arr([3.0, 4.0])}
    grads = {"encoder.fc1.bias": arr([0.3, 0.4])}
    hyper = dict(lr=1.0, weight_decay=0.1, eta=0.01)
    # exclude=None: a bias is decayed and scaled like a weight: u = [0.6, 0.8], r = 0.05 / 1
    (s,) = run("lars", params, [grads], exclude=None, **hyper)
    assert_close(s["encoder.fc1.bias"], [2.97, 3.96])
    for variant in ("norm_of_sum", "sum_of_norms"):  # by name: excluded from both, p - g
        (s,) = run("lars", params, [grads], trust_ratio=variant, **hyper)
        assert_close(s["encoder.fc1.bias"], [2.7, 3.6])
    # a (wd filter, lars filter) pair is applied as two filters: no decay, but the ratio
    everything, nothing = (lambda k, p: True), (lambda k, p: False)
    (s,) = run("lars", params, [grads], exclude=(everything, nothing), **hyper)
    assert_close(s["encoder.fc1.bias"], [2.97, 3.96])  # u = g, r = 0.05 / 0.5 = 0.1: step 0.1 g
    (s,) = run("lars", params, [grads], exclude=(nothing, everything), **hyper)
    assert_close(s["encoder.fc1.bias"], [2.4, 3.2])  # u = g + 0.1 p, no ratio
    # solo-learn/lightly (sum_of_norms): a LARS-excluded tensor gets neither ratio nor decay
    (s,) = run("lars", params, [grads], exclude=(nothing, everything), trust_ratio="sum_of_norms", **hyper)
    assert_close(s["encoder.fc1.bias"], [2.7, 3.6])


def test_lars_clip_lr_with_a_zero_lr_multiplier_moves_nothing():
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]]), "predictor.fc1.weight": arr([[3.0, 4.0]])}
    grads = {k: arr([[0.3, 0.4]]) for k in params}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # predictor lr 0: no r / 0 (whatever the warning filters)
        (s,) = run("lars", params, [grads], lr=2.0, weight_decay=0.0, eta=0.1, trust_ratio="sum_of_norms",
                   clip_lr=True, lr_mult=predictor_lr_mult(0.0))
    assert_close(s["predictor.fc1.weight"], [[3.0, 4.0]], atol=0)
    assert_close(s["encoder.fc1.weight"], [[2.7, 3.6]])


def test_lars_one_callable_exclude_gates_both_weight_decay_and_the_ratio():
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]])}
    grads = {"encoder.fc1.weight": arr([[0.3, 0.4]])}
    for variant in ("norm_of_sum", "sum_of_norms"):
        # excluded from both: p - lr g (were the ratio kept, r = 0.01 * 5 / 0.5 = 0.1: [2.97, 3.96])
        (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.1, eta=0.01, trust_ratio=variant,
                   exclude=lambda k, p: True)
        assert_close(s["encoder.fc1.weight"], [[2.7, 3.6]])


def test_lars_only_with_wd_follows_the_weight_decay_filter_not_the_hyper_parameter():
    """only_with_wd skips LARS for a tensor whose *own* weight decay is 0, here one the weight-decay
    filter of a pair excludes while weight_decay itself is 0.1."""
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]])}
    grads = {"encoder.fc1.weight": arr([[0.3, 0.4]])}
    no_wd = (lambda k, p: True, lambda k, p: False)
    for variant in ("norm_of_sum", "sum_of_norms"):
        (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.1, eta=0.01, trust_ratio=variant,
                   exclude=no_wd, only_with_wd=True)
        assert_close(s["encoder.fc1.weight"], [[2.7, 3.6]])  # p - g (with the ratio 0.1: [2.97, 3.96])


def test_lars_sum_of_norms_denominator_uses_the_filtered_weight_decay():
    """solo-learn's ratio eta ||p|| / (||g|| + wd ||p|| + eps) takes its param group's wd: 0 for a tensor
    the weight-decay filter excludes but the LARS filter keeps (its classifier)."""
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]])}
    grads = {"encoder.fc1.weight": arr([[0.3, 0.4]])}
    (s,) = run("lars", params, [grads], lr=1.0, weight_decay=0.1, eta=0.01, trust_ratio="sum_of_norms",
               exclude=(lambda k, p: True, lambda k, p: False))
    # u = g, r = 0.01 * 5 / 0.5 = 0.1 (with weight_decay in the denominator: 0.05 / 1.0, [2.985, 3.98])
    assert_close(s["encoder.fc1.weight"], [[2.97, 3.96]])


def test_lars_clip_lr_divides_by_the_tensors_own_lr():
    """solo-learn's clip is min(r / lr_p, 1) with lr_p the param group's lr: the lr_mult is in it."""
    params = {"encoder.fc1.weight": arr([[3.0, 4.0]]), "predictor.fc1.weight": arr([[3.0, 4.0]])}
    grads = {k: arr([[0.3, 0.4]]) for k in params}
    (s,) = run("lars", params, [grads], lr=0.5, weight_decay=0.0, eta=0.1, trust_ratio="sum_of_norms",
               clip_lr=True, lr_mult=predictor_lr_mult(4.0))
    # r = 0.1 * 5 / 0.5 = 1. Encoder: lr_p 0.5, min(1 / 0.5, 1) = 1, step 0.5 u.
    assert_close(s["encoder.fc1.weight"], [[2.85, 3.8]])
    # Predictor: lr_p 2, min(1 / 2, 1) = 0.5, step 2 * 0.5 u = u (min(1 / 0.5, 1) would give 2 u: [2.4, 3.2]).
    assert_close(s["predictor.fc1.weight"], [[2.7, 3.6]])


def test_momentum_and_b2_of_one_are_refused():
    params = {"w": arr([1.0])}
    with pytest.raises(ValueError, match="momentum"):
        run("lars", params, [{"w": arr([1.0])}], momentum=1.0)
    with pytest.raises(ValueError, match="b2"):
        run("adam", params, [{"w": arr([1.0])}], b2=1.0)


def test_adam_count_is_an_int64_and_a_float_count_is_refused():
    params = {"w": arr([1.0])}
    state = optim.adam_init(params)
    assert state["count"].dtype == np.int64
    with pytest.raises(ValueError, match="count"):
        optim.adam_update({"w": arr([1.0])}, dict(state, count=np.asarray(0.0)), params, lr=0.1)
    # a count that is no count of updates would make the bias correction 1 - b**t zero: inf and NaN params
    for count, got in ((np.asarray(-1), "-1"), (np.asarray(255, dtype=np.uint8), "255")):
        with pytest.raises(ValueError, match=rf"state\['count'\] must count the updates so far \(>= 0, with room for "
                                             rf"one more in its {count.dtype}\), got {got}"):
            optim.adam_update({"w": arr([1.0])}, dict(state, count=count), params, lr=0.1)
    new, st = optim.adam_update({"w": arr([1.0])}, dict(state, count=np.asarray(254, dtype=np.uint8)), params, lr=0.1)
    assert int(st["count"]) == 255 and np.isfinite(new["w"]).all()


def test_trees_of_the_wrong_kind_and_a_callable_of_the_wrong_signature_are_named():
    params = {"w": arr([1.0, 2.0])}
    for init in (optim.sgd_init, optim.lars_init, optim.adam_init):
        with pytest.raises(TypeError, match="params must be a dict name -> array, got NoneType"):
            init(None)
        with pytest.raises(TypeError, match="params must be a dict name -> array, got dict holding list"):
            init({"w": [1.0]})
    state = optim.sgd_init(params)
    with pytest.raises(TypeError, match="params must be a dict name -> array, got NoneType"):
        optim.sgd_update(params, state, None, lr=0.1)
    with pytest.raises(TypeError, match="grads must be a dict name -> array, got list"):
        optim.sgd_update([params["w"]], state, params, lr=0.1)
    with pytest.raises(TypeError, match=r"lr_mult\('w'\) raised TypeError: .*; a callable lr_mult takes one param "
                                        "name and returns a float"):
        optim.sgd_update(params, state, params, lr=0.1, lr_mult=lambda name, param: 1.0)
    with pytest.raises(ValueError, match=r"name must be one of \['adam', 'adamw', 'lars', 'sgd'\], got \['sgd'\]"):
        optim.make_optimizer(["sgd"])


# ---------------------------------------------------------------------------------------------
# Hyper-parameter holes found by an audit
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_eps_must_be_positive_in_the_params_dtype(name):
    update = getattr(optim, f"{name}_update")
    why = r"a parameter with an exactly-zero gradient \(a bias before batch norm\) would get .* = 0/0 = NaN"
    with pytest.raises(ValueError, match=r"eps must be > 0, got 0.0: " + why):
        make_optimizer(name, eps=0.0)
    # A bias before batch norm has an exactly-zero gradient: m_hat = sqrt(v_hat) = 0.
    for dtype in ("float32", F64):
        params = {"encoder.fc1.bias": arr([0.5, -0.5], dtype)}
        grads = {"encoder.fc1.bias": arr([0.0, 0.0], dtype)}
        with pytest.raises(ValueError, match=r"eps must be > 0, got 0.0"):
            update(grads, optim.adam_init(params), params, lr=0.1, eps=0)
        new, _ = update(grads, optim.adam_init(params), params, lr=0.1)  # default eps: it stays put
        np.testing.assert_array_equal(new["encoder.fc1.bias"], params["encoder.fc1.bias"])
    # eps is added as a weak scalar, so it must not round to 0 in the params' dtype
    params = {"encoder.fc1.bias": arr([0.5], "float32")}
    with pytest.raises(ValueError, match=r"eps=1e-50 is 0 in the float32 params \(it must be > 0 there\): " + why):
        update({"encoder.fc1.bias": arr([0.0], "float32")}, optim.adam_init(params), params, lr=0.1, eps=1e-50)


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "fast", None, "0.1", False])
def test_every_optimiser_refuses_a_bad_lr(name, bad):
    params = {"w": arr([1.0])}
    opt = make_optimizer(name)
    error = ValueError if isinstance(bad, float) else TypeError
    with pytest.raises(error, match=r"lr must be a finite number in \[0.0, inf\), got " + repr(bad)):
        opt.update({"w": arr([1.0])}, opt.init(params), params, lr=bad)


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
def test_every_optimiser_takes_a_0d_array_lr(name):
    """A schedule's value may arrive as a NumPy scalar or a 0-d array: that is a number."""
    params, grads = {"w": arr([1.0])}, {"w": arr([0.5])}
    opt = make_optimizer(name)
    a, _ = opt.update(grads, opt.init(params), params, lr=0.1)
    for lr in (np.float64(0.1), np.array(0.1)):
        b, _ = opt.update(grads, opt.init(params), params, lr=lr)
        np.testing.assert_array_equal(a["w"], b["w"])


@pytest.mark.parametrize("name, arg", [("sgd", "momentum"), ("lars", "momentum"), ("adam", "b1"), ("adam", "b2"),
                                       ("adamw", "b1"), ("adamw", "b2")])
@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_decay_rates_must_lie_in_zero_one(name, arg, bad):
    with pytest.raises(ValueError, match=rf"{arg} must be a finite number in \[0.0, 1.0\), got {bad!r}"):
        make_optimizer(name, **{arg: bad})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step_is_bitwise_the_whole_array_formula_in_the_params_dtype(dtype, nesterov):
    # the blocked CPU chain computes in the parameters' dtype, in the documented order
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal(5000).astype(dtype) for _ in range(3))
    lr, mom, wd = 0.3, 0.9, 1e-4
    new_p, new_s = optim.sgd_update({"w": g}, {"momentum.w": m}, {"w": p}, lr=lr, momentum=mom, weight_decay=wd,
                              nesterov=nesterov, exclude=None)
    u = p * wd + g
    m_new = m * mom + u
    d = u + m_new * mom if nesterov else m_new
    np.testing.assert_array_equal(new_s["momentum.w"], m_new)
    np.testing.assert_array_equal(new_p["w"], p - d * lr)
    assert new_p["w"].dtype == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_step_is_bitwise_the_whole_array_formula_in_the_params_dtype(dtype, decoupled):
    rng = np.random.default_rng(1)
    p, g, m = (rng.standard_normal(5000).astype(dtype) for _ in range(3))
    v = rng.uniform(0, 2, 5000).astype(dtype)
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
    update = optim.adamw_update if decoupled else optim.adam_update
    state = {"count": np.array(2, dtype=np.int64), "mu.w": m, "nu.w": v}
    new_p, new_s = update({"w": g}, state, {"w": p}, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, exclude=None)
    bc1, bc2 = 1 - b1**3, 1 - b2**3
    u = g if decoupled else p * wd + g
    m_new = m * b1 + u * (1 - b1)
    v_new = v * b2 + (u * u) * (1 - b2)
    d = (m_new / bc1) / (np.sqrt(v_new / bc2) + eps)
    if decoupled:
        d = d + p * wd
    np.testing.assert_array_equal(new_s["mu.w"], m_new)
    np.testing.assert_array_equal(new_s["nu.w"], v_new)
    np.testing.assert_array_equal(new_p["w"], p - d * lr)


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
def test_params_outside_float32_and_float64_are_refused_at_init_and_update(name):
    """Found by an API audit: SGD and LARS stepped float16 params without a word (byol_ref computes
    in float32 or float64; Adam refused them only through its eps, which is 0 in float16), and every
    init made int or complex buffers, refused only at the first update."""
    init, update = getattr(optim, f"{name}_init"), getattr(optim, f"{name}_update")
    for dtype in ("float16", "int64", "complex128"):
        params = {"encoder.fc1.weight": np.ones((2, 3), dtype=dtype)}
        with pytest.raises(ValueError, match=rf"params must be float32 or float64 arrays, got "
                                             rf"\{{'encoder.fc1.weight': '{dtype}'\}}"):
            init(params)
        state = init({"encoder.fc1.weight": np.ones((2, 3))})
        with pytest.raises(ValueError, match=rf"params\['encoder.fc1.weight'\] must be a floating-point array "
                                             rf"\(float32 or float64\), got ndarray of dtype {dtype}"):
            update(params, state, params, lr=0.1)
