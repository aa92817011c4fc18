"""Metamorphic relations of the whole BYOL step: transform the inputs (or the parameters) in a way whose
effect on the outputs is known without knowing the outputs, and check that ``loss_and_grads`` (and
``train_step``) follow. They need no oracle, so hypothesis draws the Config freely: a preset as the base,
then any of the options that a relation allows, with shapes and seeds.

Relations, and the options under which each holds (each test's docstring says why):

* permuting the batch rows (the same permutation for both views) permutes every per-row output and
  leaves the loss, the gradients and the running statistics as they were: any options, with the rows
  kept within their shard when ``bn_shards > 1`` (moving whole shards keeps the loss and gradients,
  not the running statistics);
* swapping the two views swaps the per-view outputs and keeps the loss and gradients of a symmetric
  objective; a one-sided objective's two orders add up to the symmetric one, gradients included;
* duplicating the batch (each shard's rows twice) keeps every per-row output, the loss and the
  gradients (biased batch variance, batch-mean loss), and the running statistics except the
  ``bn_running="torch"`` variance, which is unbiased and so depends on the number of rows;
* relabelling the hidden units of every layer (online and target independently, the output
  coordinates of p and z' together) permutes the activations and gradients and keeps the loss;
* scaling the last Linear of the predictor (or of the target projector, or the online projector
  without a predictor) by c > 0 keeps the loss, scales that layer's gradient by 1/c and keeps every
  other gradient, where the l2 normalisation's eps is a clamp away from the draws (``sq_norm``,
  ``norm``); the additive eps (``add``) shifts the loss by about eps / ||p||^2;
* a ``train_step`` at learning rate 0 leaves the online parameters bit for bit, still moves the target
  to tau t + (1 - tau) o, the same whether the EMA comes before the forward or after the update, and
  still updates the running statistics.

Tolerances. The transformed computations differ from the originals only by the order of the sums over
rows (or over hidden units), each of at most a few dozen terms. Each sum's rounding is a few units of
float64's 2.2e-16 times the sum of the absolute terms, and batch norm's rstd amplifies it by the ratio
of a feature's size to its spread, which ``_conditioned`` keeps below 1e3. The comparisons therefore
use ``atol = 1e-10 x`` the largest entry of the whole gradient (or of the compared output) and
rtol 1e-9: some 250 times the worst disagreement seen over
thousands of draws (4e-13 relative).
"""
import copy

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import byol_ref as byol
from byol_ref.augment import VectorAug, two_views
from byol_ref.backend import get_backend
from byol_ref.model import NORMS, build_from_config, network_plan
from byol_ref.presets import get_preset, preset_names
from byol_ref.train import Schedules, init_state, make_optimizer_for, train_step
from recorded import layer_inputs, recorded

seeds = st.integers(0, 2**32 - 1)
TOL = 1e-10  # the tolerance of the module docstring, relative to the largest entry compared


@st.composite
def configs(draw, **fixed):
    """A Config: one of the presets, any of the options below overridden, small even widths (group norm
    takes 2 groups of every normalised width). ``fixed``: options a relation needs, applied last."""
    name = draw(st.sampled_from(preset_names()))
    over = draw(st.fixed_dictionaries({}, optional={
        "layout": st.sampled_from(["paper", "edifice"]), "norm": st.sampled_from(NORMS),
        "views": st.sampled_from(["separate", "concat"]), "bn_running": st.sampled_from(["haiku", "torch"]),
        "bn_var": st.sampled_from(["two_pass", "one_pass"]), "target_bn": st.sampled_from(["batch", "running"]),
        "loss_form": st.sampled_from(["mse", "2-2cos", "neg_cos"]), "symmetric": st.booleans(),
        "sym_reduce": st.sampled_from(["sum", "mean"]), "use_predictor": st.booleans(),
        "hidden_bias": st.booleans(), "head_bias": st.booleans(), "weight_std": st.booleans(),
        "stop_gradient": st.booleans(), "target_init": st.sampled_from(["copy", "independent", "copy_encoder"]),
        "norm_eps_mode": st.sampled_from(["sq_norm", "norm", "add"]), "sem_simplices": st.integers(0, 2),
    }))
    over.update(fixed)
    norm = over.get("norm", get_preset(name).norm)
    if norm == "batch":
        over.setdefault("bn_shards", draw(st.sampled_from([1, 1, 2, 3])))
        over.setdefault("bn_shard_running", draw(st.sampled_from(["first", "sequential"])))
    widths = dict(hidden_size=draw(st.sampled_from([4, 6])), projection_dim=draw(st.integers(2, 5)),
                  predictor_dim=draw(st.sampled_from([2, 4])), projector_hidden_dim=draw(st.sampled_from([4, 6])))
    return get_preset(name).config(encoder_dim=draw(st.integers(2, 4)), norm_groups=2, sem_simplex_dim=2,
                                   sem_temperature=0.5, **{**widths, **over})


def _networks(cfg, seed):
    """Online and target of ``cfg`` with random gamma, beta, biases and running statistics (never 1, 0),
    the target drawn apart from the online network."""
    online, target = build_from_config(cfg, seed=seed % 2**31)
    rng = np.random.default_rng(seed)

    def randomize(net, fresh):
        params = {k: (rng.standard_normal(v.shape) * 0.5 + k.endswith("gamma"))
                  if fresh or k.endswith(("gamma", "beta", "bias")) else v for k, v in net.params.items()}
        if fresh:  # weights of the size init gives, drawn anew
            params = {k: v * (0.5 if k.endswith("weight") else 1.0) for k, v in params.items()}
        buffers = {k: (rng.uniform(0.5, 2, v.shape) if k.endswith("var") else rng.standard_normal(v.shape) * 0.1
                       if k.endswith("mean") else v + int(rng.integers(0, 3))) for k, v in net.buffers.items()}
        return net._replace(params=params, buffers=buffers)

    return randomize(online, False), randomize(target, True), rng


def _views(cfg, rng, rows_per_shard):
    n = cfg.bn_shards * rows_per_shard
    return rng.standard_normal((n, cfg.encoder_dim)), rng.standard_normal((n, cfg.encoder_dim))


def _conditioned(online, target, v1, v2):
    """Avoid degenerate draws (STYLE.md 13): no ReLU input of either network within 1e-9 of its kink. Where
    the gradient passes (the online network; the target too without stop-gradient), a rounding-sized change
    would flip its mask, a gradient jump. Where none passes, such an input is still a value that is 0 in
    exact arithmetic, and its rounding decides whether what follows is exactly 0 or noise: a row of z' that
    is noise alone is a random direction, which the loss's normalisation scales up to the loss's size.
    (The search profile found both in configs with norm none, weight standardisation and a simplicial
    embedding: a dead target encoder row makes the embedding uniform, which meets a zero-mean standardised
    weight column in a target projector input of exactly 0 in exact arithmetic, +-1e-16 by rounding.
    Without stop-gradient, seed 2: swapping the views flipped that mask and moved a gradient column by
    1e-4. With it, seed 1: relabelling the hidden units left two rows of z' at 1.3e-17, and seed 10 turned
    three rows of z' from exactly 0 to noise; the loss moved by 2.6e-11 and 3.3e-12 relative, through a
    norm eps of 1e-12.) And every batch-norm input feature is
    spread by at least 1e-3 of its size (rstd amplifies the rounding of the mean by size / spread).
    With ``bn_var="one_pass"`` the variance E[x^2] - E[x]^2 also carries the rounding of E[x^2] times
    E[x^2] / var, so that ratio must stay below 1e3: at 2e4 (a spread of 3e-3 of the size) a mere
    reordering of 4 rows moved the loss by 1e-12 relative, which two_pass holds to 7e-15."""
    seen = recorded(online, target, v1, v2)
    for role in ("online", "target"):
        for kind, _, x in layer_inputs(seen, online.config, role):
            if kind == "relu" and np.abs(x).min() < 1e-9:
                return False
            batch_stats = role == "online" or online.config.target_bn == "batch"
            if kind == "batch_norm" and batch_stats and (x.std(axis=-2) < 1e-3 * (1 + np.abs(x).max(axis=-2))).any():
                return False
            if (kind == "batch_norm" and batch_stats and online.config.bn_var == "one_pass"
                    and ((x * x).mean(axis=-2) > 1e3 * x.var(axis=-2)).any()):
                return False
    return True


def _scale(res):
    """The largest gradient entry, floored at 1e-3: a dead draw (layer norm over 2 features is +-1, and no
    gradient passes it) has a gradient of pure rounding noise, ~1e-15 next to the O(1) terms it came from."""
    return max(1e-3, *(float(np.abs(g).max()) for g in res.grads.values()))


def _assert_same(got, want, scale, what):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=TOL * scale + 1e-300, err_msg=what)


def _assert_same_step(a, b, *, buffers=True, outputs=None):
    """a and b (LossAndGrads) agree: the loss, every gradient, the running statistics (``buffers``) and,
    with ``outputs`` = (index of b's rows for each of a's), every per-row output."""
    scale = _scale(a)
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-12, abs=1e-13)
    for key, g in a.grads.items():
        _assert_same(b.grads[key], g, scale, key)
    if buffers:
        for got, want in ((b.online_buffers, a.online_buffers), (b.target_buffers, a.target_buffers)):
            for key, value in want.items():
                _assert_same(got[key], value, float(np.abs(value).max()), key)
    if outputs is not None:
        for key, value in a.outputs.items():
            _assert_same(b.outputs[key][:, outputs], value, float(np.abs(value).max()), key)


# ----------------------------------------------------------------- rows


@given(cfg=configs(), seed=seeds, rows=st.integers(2, 4), move_shards=st.booleans())
def test_permuting_the_rows_permutes_the_outputs_and_keeps_loss_gradients_and_running_statistics(
        cfg, seed, rows, move_shards):
    """Every batch statistic is a mean over the rows of a group (a view, both views with ``concat``, a
    shard's rows with ``bn_shards``), the loss a mean over the rows: reordering the rows within each
    group (the same order for both views, so that pairs stay pairs) reorders the per-row outputs and
    changes nothing else. Moving whole shards (``move_shards``) keeps the loss and gradients (a mean of
    per-shard means) but not the running statistics: shard 0's (``"first"``), or an EMA in shard order
    (``"sequential"``), are another shard's then."""
    online, target, rng = _networks(cfg, seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    s = cfg.bn_shards
    order = rng.permutation(s) if move_shards and s > 1 else np.arange(s)
    perm = np.concatenate([b * rows + rng.permutation(rows) for b in order])  # new row i is old row perm[i]
    a = byol.loss_and_grads(online, target, v1, v2)
    b = byol.loss_and_grads(online, target, v1[perm], v2[perm])
    inv = np.argsort(perm)
    _assert_same_step(a, b, buffers=(order == np.arange(s)).all(), outputs=inv)


@given(cfg=configs(), seed=seeds, rows=st.integers(2, 4))
def test_duplicating_the_batch_keeps_the_outputs_loss_and_gradients(cfg, seed, rows):
    """Each shard's rows twice over (the whole batch twice without shards): every batch mean and
    *biased* variance is the same, so every per-row output is; the loss is a batch mean and the
    gradient of a mean, so both are the same too. The running statistics are the same except with
    ``bn_running="torch"``, whose variance is the unbiased v n / (n - 1): n doubles, the factor
    changes (with ``target_bn="running"`` the target's statistics are not updated at all)."""
    online, target, rng = _networks(cfg, seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    twice = np.arange(cfg.bn_shards * rows).reshape(cfg.bn_shards, 1, rows).repeat(2, axis=1).reshape(-1)
    a = byol.loss_and_grads(online, target, v1, v2)
    b = byol.loss_and_grads(online, target, v1[twice], v2[twice])
    biased = cfg.bn_running == "haiku"
    _assert_same_step(a, b, buffers=biased, outputs=np.argsort(twice, kind="stable")[::2])
    for key, value in a.online_buffers.items():  # the running mean is always kept
        if key.endswith("running_mean"):
            _assert_same(b.online_buffers[key], value, float(np.abs(value).max()), key)
        if key.endswith("running_var") and not biased and cfg.norm == "batch":
            assert not np.allclose(b.online_buffers[key], value, rtol=1e-6, atol=0), key


# ----------------------------------------------------------------- views


@given(cfg=configs(symmetric=True), seed=seeds, rows=st.integers(2, 4))
def test_swapping_the_views_of_a_symmetric_objective_swaps_the_outputs_and_keeps_loss_and_gradients(cfg, seed,
                                                                                                   rows):
    """l(p1, z'2) + l(p2, z'1) is symmetric in the views, and so is everything that computes p and z':
    per-view statistics are each view's own whichever comes first, joint ones (``concat``) a mean over
    both. The running statistics are kept with ``concat`` (the same rows, in another order) and not with
    per-view statistics, which update in view order (an EMA of two updates is not symmetric in them)."""
    online, target, rng = _networks(cfg, seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    a = byol.loss_and_grads(online, target, v1, v2)
    b = byol.loss_and_grads(online, target, v2, v1)
    _assert_same_step(a._replace(outputs={k: v[::-1] for k, v in a.outputs.items()}), b,
                      buffers=cfg.views == "concat", outputs=slice(None))


@given(cfg=configs(), seed=seeds, rows=st.integers(2, 4))
def test_a_one_sided_objective_in_both_orders_adds_up_to_the_symmetric_one(cfg, seed, rows):
    """One-sided, the loss is l(p1, z'2); the forward runs on both views as the symmetric one does, so
    L_one(v1, v2) + L_one(v2, v1) = L_sym (``sym_reduce="sum"``; twice it for ``"mean"``), gradients
    included (the gradient is linear in the loss), and each order's per-sample losses are one row of the
    symmetric objective's. (A single one-sided order is not symmetric in the views, which is why the
    swap relation above draws ``symmetric=True`` only.)"""
    online, target, rng = _networks(cfg.replace(symmetric=False), seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    one, other = byol.loss_and_grads(online, target, v1, v2), byol.loss_and_grads(online, target, v2, v1)
    sym_cfg = cfg.replace(symmetric=True)
    both = byol.loss_and_grads(online._replace(config=sym_cfg), target._replace(config=sym_cfg), v1, v2)
    half = 1.0 if cfg.sym_reduce == "sum" else 0.5
    scale = _scale(both)
    assert float(both.loss) == pytest.approx(half * (float(one.loss) + float(other.loss)), rel=1e-12, abs=1e-13)
    for key, g in both.grads.items():
        _assert_same(half * (one.grads[key] + other.grads[key]), g, scale, key)
    # (atol as for the total above: loss_form="2-2cos" computes 2 - 2 cos, whose rounding is absolute, a few
    # eps of its range [0, 4]; search seed 211 with two shards of concatenated views: 8.9e-16 on a loss of
    # 6.3e-4, 1.4e-12 relative, as the swapped views reorder the rows each shard's statistics sum.)
    np.testing.assert_allclose(one.outputs["loss_per_sample"][0], both.outputs["loss_per_sample"][0], rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(other.outputs["loss_per_sample"][0], both.outputs["loss_per_sample"][1], rtol=1e-12,
                               atol=1e-13)


# ----------------------------------------------------------------- hidden units


def _unit_perms(cfg, rng):
    """A relabelling of the units of every Linear's output, (role, name) -> permutation: the target's hidden
    units apart from the online's, the last output (p, and the target's z') one permutation for both.
    Group norm: groups move whole, units stay in their group. The simplicial embedding's Linear: its
    simplices move whole, units stay in their simplex (kept in place under group norm)."""
    last = {"online": "predictor.fc2" if cfg.use_predictor else "projector.fc2", "target": "projector.fc2"}
    shared = rng.permutation(cfg.projection_dim)

    def grouped(groups, size):
        return np.concatenate([g * size + rng.permutation(size) for g in rng.permutation(groups)])

    perms = {}
    for role in ("online", "target"):
        for kind, name in (s for part in network_plan(cfg, role).values() for s in part):
            if kind != "linear":
                continue
            width = byol.model.param_shapes(cfg, role)[f"{name}.weight"][1]
            if name == last[role] or (name == "projector.fc2" and not cfg.stop_gradient):
                perms[role, name] = shared
            elif role == "target" and not cfg.stop_gradient:  # the ablation adds the target's gradient by name
                perms[role, name] = perms["online", name]
            elif name == "projector.sem_fc":
                perms[role, name] = (np.arange(width) if cfg.norm == "group"
                                     else grouped(cfg.sem_simplices, cfg.sem_simplex_dim))
            elif cfg.norm == "group" and width % cfg.norm_groups == 0:  # (P, odd, is never normalised)
                perms[role, name] = grouped(cfg.norm_groups, width // cfg.norm_groups)
            else:
                perms[role, name] = rng.permutation(width)
    return perms


def _relabelled(cfg, role, tensors, perms):
    """``tensors`` (params, grads or buffers of a ``role`` network) under the relabelling ``perms``: each
    Linear's columns (and bias) by its own permutation and its rows by the previous Linear's, each
    norm's gamma, beta and running statistics by the previous Linear's."""
    out, prev = dict(tensors), None
    for kind, name in (s for part in network_plan(cfg, role).values() for s in part):
        if kind == "linear":
            pi = perms[role, name]
            if f"{name}.weight" in out:
                w = out[f"{name}.weight"]
                out[f"{name}.weight"] = (w if prev is None else w[prev])[:, pi]
            if f"{name}.bias" in out:
                out[f"{name}.bias"] = out[f"{name}.bias"][pi]
            prev = pi
        elif kind not in ("relu", "simplex"):  # (a softmax over each simplex: its units moved with the Linear's)
            for key in ("gamma", "beta", "running_mean", "running_var"):
                if f"{name}.{key}" in out:
                    out[f"{name}.{key}"] = out[f"{name}.{key}"][prev]
    return out


@given(cfg=configs(), seed=seeds, rows=st.integers(2, 4))
def test_relabelling_the_hidden_units_keeps_the_loss_and_permutes_the_gradients(cfg, seed, rows):
    """A network's hidden units have no order: permuting the outputs of a Linear together with the norm
    after it and the inputs of the next Linear computes the same function. Every statistic is per
    feature (batch norm, the affine), over a unit's inputs (weight standardisation) or over all the
    features of a sample (layer norm), or of a group (group norm: groups move whole); the simplicial
    embedding's softmax runs over groups of V units, which move whole. The output coordinates of p and
    z' need one permutation for both (the loss takes their dot product); the target's hidden units may
    be relabelled apart from the online's. The loss is kept, each gradient and each output is permuted
    as its parameter."""
    online, target, rng = _networks(cfg, seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    perms = _unit_perms(cfg, rng)
    on2 = online._replace(params=_relabelled(cfg, "online", online.params, perms),
                          buffers=_relabelled(cfg, "online", online.buffers, perms))
    tg2 = target._replace(params=_relabelled(cfg, "target", target.params, perms),
                          buffers=_relabelled(cfg, "target", target.buffers, perms))
    a = byol.loss_and_grads(online, target, v1, v2)
    b = byol.loss_and_grads(on2, tg2, v1, v2)
    scale = _scale(a)
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-12, abs=1e-13)
    for key, g in _relabelled(cfg, "online", a.grads, perms).items():
        _assert_same(b.grads[key], g, scale, key)
    for role, got, want in (("online", b.online_buffers, a.online_buffers), ("target", b.target_buffers,
                                                                              a.target_buffers)):
        for key, value in _relabelled(cfg, role, want, perms).items():
            _assert_same(got[key], value, float(np.abs(value).max()), key)
    y_last = [n for k, n in network_plan(cfg, "online")["encoder"] if k == "linear"][-1]
    p_last = "predictor.fc2" if cfg.use_predictor else "projector.fc2"
    outs = {"online.y": perms["online", y_last], "online.p": perms["online", p_last],
            "online.z": perms["online", "projector.fc2"], "target.z": perms["target", "projector.fc2"]}
    for key, pi in outs.items():
        _assert_same(b.outputs[key], a.outputs[key][..., pi], float(np.abs(a.outputs[key]).max()), key)
    np.testing.assert_allclose(b.outputs["loss_per_sample"], a.outputs["loss_per_sample"], rtol=1e-9, atol=1e-13)


# ----------------------------------------------------------------- scale of the heads


@given(cfg=configs(stop_gradient=True), seed=seeds, rows=st.integers(2, 4),
       which=st.sampled_from(["predictor", "target projector", "projector, no predictor"]),
       c=st.floats(1e-2, 1e2).filter(lambda c: abs(c - 1) > 1e-3))
def test_scaling_the_last_linear_keeps_the_loss_and_scales_only_its_own_gradient(cfg, seed, rows, which, c):
    """p (or z') goes straight into the l2 normalisation: scaling the last Linear of the predictor, of
    the target projector, or of the online projector without a predictor (p = z), weight and bias by
    c > 0, scales p (or z') by c and n(p) not at all, where the eps is a clamp that no row reaches
    (``sq_norm``, ``norm``; an all-zero row stays 0). The loss and every other gradient are then the
    same (the layer's input is), and the layer's own gradient is 1/c of what it was (dL/d(cW) = dL/dW / c).
    The additive eps (``add``) is not scale-free: n(x) = x / sqrt(|x|^2 + eps) moves by up to eps / 2|x|^2
    relative, and each direction's loss by up to 2 eps / |x|^2, which the test bounds. (Under the
    ``stop_gradient=False`` ablation the target's last Linear would get a gradient too: not drawn.)"""
    if which == "projector, no predictor":
        cfg = cfg.replace(use_predictor=False)
    online, target, rng = _networks(cfg, seed)
    v1, v2 = _views(cfg, rng, rows)
    assume(_conditioned(online, target, v1, v2))
    layer = "predictor.fc2" if which == "predictor" and cfg.use_predictor else "projector.fc2"
    net = target if which == "target projector" else online
    params = {k: v * c if k.startswith(layer + ".") else v for k, v in net.params.items()}
    on2, tg2 = (online, target._replace(params=params)) if net is target else (online._replace(params=params), target)
    a = byol.loss_and_grads(online, target, v1, v2)
    key = "target.z" if net is target else "online.p"
    s = (a.outputs[key] ** 2).sum(-1)
    clamp = cfg.norm_eps if cfg.norm_eps_mode == "sq_norm" else cfg.norm_eps ** 2
    assume(((s == 0) | (min(c, 1) ** 2 * s > 1e6 * clamp)).all() or cfg.norm_eps_mode == "add")
    b = byol.loss_and_grads(on2, tg2, v1, v2)
    _assert_same(b.outputs[key], c * a.outputs[key], float(np.abs(c * a.outputs[key]).max()), key)
    if cfg.norm_eps_mode == "add":
        # (an all-zero row is 0 before and after, whatever c: it moves nothing, and its |x|^2 = 0 would make the
        # bound infinite, a check that cannot fail, so the bound is taken over the other rows)
        live = s[s > 0]
        per = (4 if cfg.symmetric and cfg.sym_reduce == "sum" else 2) * cfg.norm_eps
        bound = per / (min(c, 1) ** 2 * live.min()) if live.size else 0.0
        assert abs(float(b.loss) - float(a.loss)) <= bound + 1e-13
        return
    scale = _scale(a)
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-12, abs=1e-13)
    for k, g in a.grads.items():
        _assert_same(b.grads[k], g / c if net is online and k.startswith(layer + ".") else g, scale, k)


# ----------------------------------------------------------------- a step at learning rate 0


@given(cfg=configs(), preset=st.sampled_from(preset_names()), seed=seeds, rows=st.integers(2, 4),
       tau=st.sampled_from([0.0, 0.5, 0.99, 1.0]) | st.floats(0, 1), weight_decay=st.sampled_from([0.0, 1e-2]),
       ema_form=st.sampled_from(["weighted", "increment"]), inplace=st.booleans())
def test_a_step_at_learning_rate_0_moves_only_the_target_and_the_running_statistics(
        cfg, preset, seed, rows, tau, weight_decay, ema_form, inplace):
    """Every optimiser (the preset's: SGD, LARS, Adam, AdamW, with weight decay) moves a parameter by lr
    times its update, so at lr = 0 the online parameters stay bit for bit. The step still averages the
    target, t <- tau t + (1 - tau) o, and since o does not move, averaging before the forward (lightly)
    or after the update (official) gives the same target. The running statistics still come from the
    step's training-mode forwards (the target's from the target that ran: averaged first or not)."""
    online, target, rng = _networks(cfg, seed)
    n = cfg.bn_shards * rows
    tcfg = get_preset(preset).train_config(epochs=1, batch_size=n, weight_decay=weight_decay, ema_form=ema_form,
                                           seed=0)
    state = init_state(cfg, tcfg, get_backend("numpy", "float64", seed=seed))
    opt = make_optimizer_for(tcfg)
    state = state._replace(online=online, target=target, opt_state=opt.init(online.params))
    sched = Schedules(lr=lambda k: 0.0, tau=lambda k: tau, total_steps=1, steps_per_epoch=1)
    x = rng.standard_normal((n, cfg.encoder_dim))
    views = (VectorAug(), VectorAug(noise_std=0.3))
    want_target = byol.ema_update(online.params, target.params, tau, form=ema_form)
    v1, v2 = two_views(x, copy.deepcopy(state.rng), views)
    news = {}
    for when in ("post_step", "pre_forward"):
        ran = target._replace(params=want_target) if when == "pre_forward" else target
        res = byol.loss_and_grads(online, ran, v1, v2)
        start = state._replace(rng=copy.deepcopy(state.rng))
        if inplace:  # the step consumes its state: give it copies
            start = start._replace(online=online._replace(params={k: v.copy() for k, v in online.params.items()}),
                                   target=target._replace(params={k: v.copy() for k, v in target.params.items()}),
                                   opt_state={k: v.copy() for k, v in state.opt_state.items()})
        new, metrics = train_step(start, x, optimizer=opt, schedules=sched, views=views,
                                  tcfg=tcfg.replace(ema_when=when), inplace=inplace)
        assert metrics["loss"] == float(res.loss)
        for k, v in online.params.items():
            np.testing.assert_array_equal(new.online.params[k], v, err_msg=k)
        for k, v in want_target.items():
            np.testing.assert_array_equal(new.target.params[k], v, err_msg=f"{when}: {k}")
        for got, want in ((new.online.buffers, res.online_buffers), (new.target.buffers, res.target_buffers)):
            for k, v in want.items():
                np.testing.assert_array_equal(got[k], v, err_msg=f"{when}: {k}")
        news[when] = new
    for k, v in online.buffers.items():
        if k.endswith("count") and cfg.norm == "batch":
            assert int(news["post_step"].online.buffers[k]) > int(v), k
