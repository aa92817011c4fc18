"""Trace (byol_ref.trace): documented names in execution order, determinism, agreement with
train.train_step, file round trips, inputs layouts, and clear errors for bad inputs."""
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from byol_ref.model import network_plan
from byol_ref.presets import get_preset
from byol_ref.trace import (Trace, TraceError, load_trace, make_inputs, networks_from_inputs, save_trace, trace_inputs,
                            trace_networks)

SIZES = dict(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3, projector_hidden_dim=7)


def _inputs(preset="deepmind", steps=2, seed=0, **kw):
    return make_inputs(get_preset(preset), **SIZES, batch=4, steps=steps, seed=seed, **kw)


@pytest.mark.parametrize("name", ["deepmind", "byol-pytorch", "lightly", "solo-learn", "edifice"])
def test_traces_are_deterministic(name, tmp_path):
    a = trace_inputs(_inputs(name), name)
    b = trace_inputs(_inputs(name), name)
    assert list(a.arrays) == list(b.arrays)
    for k in a.arrays:
        assert a.arrays[k].dtype == b.arrays[k].dtype
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)
    path = save_trace(tmp_path / "t.npz", a)
    c = load_trace(path)
    assert list(c.arrays) == list(a.arrays) and c.meta == json.loads(json.dumps(a.meta))
    for k in a.arrays:
        np.testing.assert_array_equal(c.arrays[k], a.arrays[k])


def test_names_shapes_and_order():
    tr = trace_inputs(_inputs(), "deepmind")
    names = list(tr.arrays)
    n, d = 4, 5
    assert names[0] == "init.online.param.encoder.fc1.weight"
    assert tr.arrays["step0.input.view1"].shape == (n, d)
    assert tr.arrays["step0.online.view1.projector.norm1.out"].shape == (n, 7)
    assert tr.arrays["step0.online.view2.encoder.norm1.batch_mean"].shape == (6,)
    assert tr.arrays["step0.loss.per_sample"].shape == (2, n)
    assert tr.arrays["step0.loss.total"].shape == ()
    assert tr.arrays["step0.online.grad.encoder.fc1.weight"].shape == (d, 6)  # (in, out)
    assert tr.arrays["step1.opt.momentum.predictor.fc2.weight"].shape == (3, 4)
    assert tr.arrays["step0.online.buffer.encoder.norm1.count"] == 2  # two views, two updates
    order = [
        "step0.lr", "step0.tau", "step0.input.view1", "step0.online.view1.encoder.fc1.out",
        "step0.online.view1.encoder.norm1.batch_mean", "step0.online.view1.encoder.norm1.out",
        "step0.online.view1.predictor.fc2.out", "step0.target.view1.encoder.fc1.out",
        "step0.target.view2.projector.fc2.out", "step0.online.view1.p.normed", "step0.target.view2.z.normed",
        "step0.loss.per_sample", "step0.loss.total", "step0.online.view1.p.normed.grad", "step0.online.view1.p.grad",
        "step0.online.view1.predictor.fc2.dout", "step0.online.view1.encoder.fc1.dout",
        "step0.online.grad.encoder.fc1.weight", "step0.online.buffer.encoder.norm1.running_mean",
        "step0.target.buffer.encoder.norm1.running_mean", "step0.opt.momentum.encoder.fc1.weight",
        "step0.online.param.encoder.fc1.weight", "step0.target.param.encoder.fc1.weight", "step1.lr"]
    idx = [names.index(k) for k in order]
    assert idx == sorted(idx)
    # the recorded pieces are consistent with each other
    a = tr.arrays
    p1 = a["step0.online.view1.predictor.fc2.out"]
    np.testing.assert_allclose(a["step0.online.view1.p.normed"], p1 / np.linalg.norm(p1, axis=1, keepdims=True))
    np.testing.assert_allclose(a["step0.loss.total"], a["step0.loss.per_sample"].sum(0).mean())
    x = a["step0.online.view2.encoder.fc1.out"]
    np.testing.assert_allclose(a["step0.online.view2.encoder.norm1.batch_mean"], x.mean(0))
    np.testing.assert_allclose(a["step0.online.view2.encoder.norm1.batch_var"], x.var(0), rtol=1e-12)
    np.testing.assert_array_equal(a["step0.online.view1.p.grad"], a["step0.online.view1.predictor.fc2.dout"])
    # the official loss: dL/dn(p1) = 2 (n(p1) - n(z'2)) / N; dL/dp is its projection off n(p1), over ||p1||
    n1, nz2 = a["step0.online.view1.p.normed"], a["step0.target.view2.z.normed"]
    dn1 = a["step0.online.view1.p.normed.grad"]
    np.testing.assert_allclose(dn1, 2 * (n1 - nz2) / n, rtol=1e-12)
    proj = (dn1 - n1 * (n1 * dn1).sum(1, keepdims=True)) / np.linalg.norm(p1, axis=1, keepdims=True)
    np.testing.assert_allclose(a["step0.online.view1.p.grad"], proj, rtol=1e-10, atol=1e-15)
    assert not any(k.endswith("z.normed.grad") for k in names)  # stop-gradient: the target has none


def test_the_gradient_of_the_normalised_vectors_of_a_one_sided_and_a_no_stop_gradient_loss():
    a = trace_inputs(_inputs("edifice"), "edifice").arrays  # one-sided: l(p1, z'2) only, 2 - 2 cos
    np.testing.assert_array_equal(a["step0.online.view2.p.normed.grad"], 0)  # p2 is not in the loss
    np.testing.assert_allclose(a["step0.online.view1.p.normed.grad"], -2 * a["step0.target.view2.z.normed"] / 4,
                               rtol=1e-12)
    b = trace_inputs(_inputs(), "deepmind", model_extra={"stop_gradient": False}).arrays
    for v, other in ((1, 2), (2, 1)):  # mse: dL/dn(z'v) = -dL/dn(p_other), the pair it is the target of
        np.testing.assert_array_equal(b[f"step0.target.view{v}.z.normed.grad"],
                                      -b[f"step0.online.view{other}.p.normed.grad"])


def test_concat_views_names_and_split():
    tr = trace_inputs(_inputs("byol-pytorch"), "byol-pytorch")
    a = tr.arrays
    assert "step0.online.view12.encoder.norm1.batch_mean" in a
    assert "step0.online.view1.encoder.norm1.batch_mean" not in a
    x = np.concatenate([a["step0.online.view1.encoder.fc1.out"], a["step0.online.view2.encoder.fc1.out"]])
    np.testing.assert_allclose(a["step0.online.view12.encoder.norm1.batch_mean"], x.mean(0))
    assert a["step0.online.buffer.encoder.norm1.count"] == 1


@pytest.mark.parametrize("views", ["separate", "concat"])
def test_bn_shards_names_and_split(views):
    """Per-shard batch statistics are named per shard; activations still come back per view, in
    the input's row order."""
    extra = dict(bn_shards=2, views=views)
    inputs = make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=1, seed=0, model_extra=extra)
    a = trace_inputs(inputs, "deepmind", model_extra=extra).arrays
    plain = trace_inputs(inputs, "deepmind", model_extra=dict(views=views)).arrays
    groups = ["view1", "view2"] if views == "separate" else ["view12"]
    for g in groups:
        assert f"step0.online.{g}.encoder.norm1.batch_mean" not in a
    for v in (1, 2):  # before the first batch norm nothing depends on the shards
        x = a[f"step0.online.view{v}.encoder.fc1.out"]
        assert x.shape == (4, 6)
        np.testing.assert_array_equal(x, plain[f"step0.online.view{v}.encoder.fc1.out"])
    for s, rows in enumerate((slice(0, 2), slice(2, 4))):  # shard s: rows 2s, 2s + 1 of each view
        for g in groups:
            views_in = [1, 2] if g == "view12" else [int(g[-1])]
            x = np.concatenate([a[f"step0.online.view{v}.encoder.fc1.out"][rows] for v in views_in])
            np.testing.assert_allclose(a[f"step0.online.{g}.shard{s}.encoder.norm1.batch_mean"], x.mean(0),
                                       rtol=1e-12)
            np.testing.assert_allclose(a[f"step0.online.{g}.shard{s}.encoder.norm1.batch_var"], x.var(0),
                                       rtol=1e-12)
            assert f"step0.target.{g}.shard{s}.encoder.norm1.batch_mean" in a
    # each shard normalises with its own statistics, and shard 0's alone update the buffers (DDP)
    assert not np.allclose(a[f"step0.online.{groups[0]}.shard0.encoder.norm1.batch_mean"],
                           a[f"step0.online.{groups[0]}.shard1.encoder.norm1.batch_mean"])
    assert a["step0.online.buffer.encoder.norm1.count"] == len(groups)


@pytest.mark.parametrize("name", ["deepmind", "lightly"])
def test_trace_matches_train_step(name, monkeypatch):
    """The traced step is train.train_step with fixed views (augmentation replaced by the given views)."""
    import byol_ref.train as train_mod
    from byol_ref.train import TrainState, make_optimizer_for, make_schedules, train_step

    preset = get_preset(name)
    online, target, views, _ = networks_from_inputs(_inputs(name, steps=1), preset)
    tr = trace_networks(online, target, views, preset=preset, total_steps=5, warmup_steps=2)
    tcfg = preset.train_config(epochs=5, batch_size=4, warmup_epochs=2)
    opt = make_optimizer_for(tcfg)
    state = TrainState(online, target, opt.init(online.params), 0, np.random.default_rng(0), None, 0)
    v1, v2 = views[0]
    monkeypatch.setattr(train_mod, "two_views", lambda x, rng, vs, shape, **kw: (v1, v2))
    new, m = train_step(state, v1, optimizer=opt, schedules=make_schedules(tcfg, 4), views=(None, None), tcfg=tcfg)
    assert float(tr.arrays["step0.loss.total"]) == m["loss"]
    for k, v in new.online.params.items():
        np.testing.assert_array_equal(tr.arrays[f"step0.online.param.{k}"], v)
    for k, v in new.target.params.items():
        np.testing.assert_array_equal(tr.arrays[f"step0.target.param.{k}"], v)
    for k, v in new.opt_state.items():
        np.testing.assert_array_equal(tr.arrays[f"step0.opt.{k}"], v)


def test_float32_trace():
    tr = trace_inputs(_inputs(), "deepmind", dtype="float32")
    assert tr.arrays["step0.online.view1.encoder.fc1.out"].dtype == np.float32
    assert tr.meta["dtype"] == "float32"


# Float32 against float64. Per-step budget of float32 roundings, in units of float32 eps u = 2^-23 (the
# llm.c `atol + |ref| * eps` check with |ref| replaced by the tensor's own scale S). A step is ~40 dependent ops
# (14 layers forward, the l2 normalisation and the loss, 14 layers backward, the optimiser), each a dot product
# or a batch reduction over at most ~8 terms (widths <= 7, 2N = 8 rows) whose worst-case relative error is
# ~8 u of the sum of |terms|: 40 * 8 = 320 u per step, and a step's error carries into the next (K_i = 320 (i + 1)).
# No amplification beyond that is assumed: with these seeds every batch variance is O(0.1-1), so BN's division by
# the batch std does not blow rounding up. A float16 rounding anywhere (2^-11 = 4096 u) is ~13x over K_0.
_F32_OPS_PER_STEP, _F32_TERMS = 40, 8


def _biases_before_batch_norm(chain):
    """Linear layers, in the (kind, name) chain of network_plan, whose bias reaches a batch norm through Linear
    layers only: the norm subtracts the batch mean, removing any constant shift, so dL/d(bias) is exactly 0."""
    out = set()
    for i, (kind, name) in enumerate(chain):
        rest = [k for k, _ in chain[i + 1:]]
        after = next((k for k in rest if k != "linear"), None)
        if kind == "linear" and after == "batch_norm":
            out.add(name)
    return out


def _adam_step_bound(t, b1=0.9, b2=0.999):
    """max |m_hat / (sqrt(v_hat) + eps)| at Adam step t (byol_ref.optim's default betas), whatever the grads.

    m_hat = sum_j w_j g_j and v_hat = sum_j c_j g_j^2 with w_j = (1 - b1) b1^(t-j) / (1 - b1^t) and
    c_j = (1 - b2) b2^(t-j) / (1 - b2^t); Cauchy-Schwarz gives |m_hat| <= sqrt(v_hat) sqrt(sum_j w_j^2 / c_j).
    """
    j = np.arange(1, t + 1)
    w = (1 - b1) * b1 ** (t - j) / (1 - b1 ** t)
    c = (1 - b2) * b2 ** (t - j) / (1 - b2 ** t)
    return float(np.sqrt((w * w / c).sum()))


# (edifice is left out: at these sizes and seed 0 its predictor has one live ReLU unit, so p is rank 1 and its
# loss gradient, orthogonal to p, cancels exactly in W2^T: every parameter gradient is rounding noise in both
# dtypes, and Adam turns that noise into O(lr) steps everywhere. Nothing there for a float32 check to compare.)
@pytest.mark.parametrize("name", ["deepmind", "byol-pytorch", "lightly", "solo-learn"])
def test_float32_trace_values_match_float64(name):
    """Every tensor of a 2-step float32 trace is the float64 trace's within a float32 rounding budget.

    |x32 - x64| <= K_i u S + D, where u is float32 eps, K_i the per-step budget above, and S the tensor's own
    scale, max |x64| (a max over the tensor, not per element: entries of a cancelling sum, a BN output near 0,
    carry the absolute error of the tensor's large entries). Two kinds of tensor need more thought:

    * The bias of a Linear that reaches batch norm through Linears only (encoder.fc1; projector.fc2 before
      predictor.fc1): BN subtracts the batch mean, so the bias's gradient is a sum of terms that cancel exactly;
      float64 leaves ~1e-16, float32 ~u times the terms. Its gradient, momentum and mu get the scale of the
      same layer's weight gradient, summed over the steps so far (the layer's inputs are O(1): standard normal
      views, BN-ReLU outputs, so max |dW| is the size of the summed dout terms); nu the square of that; the
      param the weight's magnitude.
    * Adam divides by sqrt(v_hat) + eps (eps = 1e-8): for such a bias float32's gradient noise (~1e-7) is far
      above eps, float64's (~1e-16) far below, so float32 steps the bias by up to lr_k C_t (C_t: the
      Cauchy-Schwarz bound on |m_hat| / sqrt(v_hat), ~1) where float64 barely moves it. The drift
      D_i = sum_{k<=i} lr_k C_{k+1} is allowed on those biases' params (online and target: the EMA is a convex
      combination); D_{i-1}, carried through the Linears in between, on the outputs of step i's Linears up to
      the next BN and on that BN's batch mean and running mean. BN subtracts it exactly: nothing after the
      norm sees it. (The target's projector.fc2.bias reaches z unnormalised, but moves only (1 - tau) D,
      ~1e-6 here, under K_1 u.) LARS and SGD steps are linear in the gradient, so their bias steps are lr times
      float32 noise, inside K_i u S.
    opt.nu is a square: twice the relative error of the gradient, so twice the budget.
    """
    preset = get_preset(name)
    inputs = make_inputs(preset, **SIZES, batch=4, steps=2, seed=0)
    ref = trace_inputs(inputs, preset).arrays
    got = trace_inputs(inputs, preset, dtype="float32").arrays
    assert list(got) == list(ref)
    chain = [step for steps in network_plan(preset.config(**SIZES), "online").values() for step in steps]
    kinds = {layer: kind for kind, layer in chain}
    before_bn = {k for k in _biases_before_batch_norm(chain) if f"init.online.param.{k}.bias" in ref}
    assert before_bn
    adam = preset.train_config(epochs=2, batch_size=4).optimizer in ("adam", "adamw")
    u, u64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)

    def biggest(pattern, i):  # max |x| over the float64 tensors pattern.format(j), j = 0 .. i
        return max(np.abs(ref[pattern.format(j)]).max() for j in range(i + 1))

    def shifts(i, drift):
        """Layer -> the largest shift of its output's entries that a bias drift of at most `drift` makes at step i:
        each drifting bias adds it, and a Linear after it multiplies a shift s by max_k sum_j |W[j, k]| (x W)."""
        out, carried = {}, 0.0
        for kind, layer in chain:
            if kind == "linear":
                ws = [ref[f"init.online.param.{layer}.weight"]] + [ref[f"step{j}.online.param.{layer}.weight"]
                                                                   for j in range(i + 1)]
                carried = carried * max(np.abs(w).sum(0).max() for w in ws) + (drift if layer in before_bn else 0)
            out[layer] = carried
            if kind != "linear":  # a batch norm takes the shift into its batch mean and removes it
                carried = 0.0
        return out

    checked, bad = 0, []
    for k, r in ref.items():
        g = got[k]
        if r.dtype.kind != "f" or re.fullmatch(r"step\d+\.(lr|tau)", k):  # counters; lr and tau are float64 in both
            assert g.dtype == r.dtype, k
            np.testing.assert_array_equal(g, r, err_msg=k)
            continue
        assert g.dtype == np.float32, k
        m = re.match(r"step(\d+)\.", k)
        i = int(m.group(1)) if m else 0  # init.*: the inputs, rounded to float32 once
        budget = (2 if ".opt.nu." in k else 1) * _F32_OPS_PER_STEP * _F32_TERMS * (i + 1)
        scale = np.abs(r).max() if r.size else 0.0
        # D_i: Adam's bias drift after step i's update (the params); step i's forward used the params of step i - 1
        drift, before = (sum(float(ref[f"step{j}.lr"]) * _adam_step_bound(j + 1) for j in range(n))
                         for n in (i + 1, i)) if adam and m else (0.0, 0.0)
        d = 0.0
        for layer in before_bn:
            if k.endswith(f".{layer}.bias") and m:
                grads = biggest("step{}.online.grad." + layer + ".weight", i)
                if ".grad." in k:  # the premise: float64 leaves rounding only
                    assert np.abs(r).max() <= 1e3 * u64 * grads, k
                if ".param." in k:  # the weight's magnitude, and Adam's drift
                    scale, d = max(scale, np.abs(ref[k[:-len("bias")] + "weight"]).max()), drift
                else:  # grad, momentum and mu: sums of <= i + 1 gradients; nu: of their squares
                    scale = max(scale, (i + 1) * grads ** (2 if ".opt.nu." in k else 1))
        if adam and m and k.endswith((".out", ".batch_mean", ".running_mean")):
            layer = k.rsplit(".", 1)[0].split(".", 3)[-1]  # step0.online.view1.encoder.fc1.out -> encoder.fc1
            if kinds.get(layer) == ("linear" if k.endswith(".out") else "batch_norm"):  # (not a BN's own .out)
                d = shifts(i, before)[layer]
        err = np.abs(g.astype(np.float64) - r).max() if r.size else 0.0
        if not err <= budget * u * scale + d:
            bad.append(f"{k}: |float32 - float64| = {err:.3g} > {budget} u * {scale:.3g} + drift {d:.3g}")
        checked += 1
    assert not bad, f"{len(bad)} of {checked} tensors:\n" + "\n".join(bad)
    assert checked > 300


def test_shared_views_and_trace_as_inputs():
    inputs = _inputs(steps=1)
    shared = {k: v for k, v in inputs.items() if ".input." not in k}
    shared["view1"], shared["view2"] = inputs["step0.input.view1"], inputs["step0.input.view2"]
    tr = trace_inputs(shared, "deepmind", steps=3)
    np.testing.assert_array_equal(tr.arrays["step2.input.view1"], inputs["step0.input.view1"])
    again = trace_inputs(tr.arrays, "deepmind")  # a trace is a valid inputs file (init.* and step<i>.input.*)
    for k in tr.arrays:
        np.testing.assert_array_equal(again.arrays[k], tr.arrays[k])


@pytest.mark.parametrize("form", ["weighted", "increment"])
def test_ema_scope_buffers_average_running_stats(form):
    """The running statistics are averaged with the params' EMA, rounding (ema_form) included, bit for
    bit; an ema_form given as a TrainConfig override (train_extra) reaches the trace as a preset's does."""
    p = get_preset("deepmind", ema_scope="params+buffers")
    for tr in (trace_inputs(_inputs(), p.replace(ema_form=form)),
               trace_inputs(_inputs(), p, train_extra={"ema_form": form})):
        a = tr.arrays
        tau = float(a["step0.tau"])
        for key in ("encoder.norm1.running_mean", "projector.norm1.running_var"):
            t, o = a[f"step0.target.buffer.{key}"], a[f"step0.online.buffer.{key}"]
            want = tau * t + (1 - tau) * o if form == "weighted" else t + (1 - tau) * (o - t)
            np.testing.assert_array_equal(a[f"step0.target.buffer_ema.{key}"], want, err_msg=key)
        for key in ("encoder.fc1.weight", "projector.norm1.gamma"):
            t = a[f"init.target.param.{key}"]
            o = a[f"step0.online.param.{key}"]
            want = tau * t + (1 - tau) * o if form == "weighted" else t + (1 - tau) * (o - t)
            np.testing.assert_array_equal(a[f"step0.target.param.{key}"], want, err_msg=key)
        # the update counts are not averaged: they stay the target's own integers
        count = a["step0.target.buffer_ema.encoder.norm1.count"]
        assert count.dtype == np.int64 and count == a["step0.target.buffer.encoder.norm1.count"]


def test_start_step_and_the_default_warmup_set_lr_and_tau():
    """A trace that starts at global step k takes lr(k) and tau(k); W defaults to 0 (a trace has no epochs for
    the preset's warmup_epochs), and --warmup-steps sets it."""
    from byol_ref.train import make_schedules

    preset = get_preset("lightly")
    inputs = _inputs("lightly", steps=2)
    for w in (None, 2, 6):
        tr = trace_inputs(inputs, preset, total_steps=16, start_step=5, warmup_steps=w)
        assert tr.meta["warmup_steps"] == (w or 0)
        sched = make_schedules(preset.train_config(epochs=16, batch_size=4, warmup_epochs=w or 0), 4)
        for i in range(2):
            assert float(tr.arrays[f"step{i}.lr"]) == pytest.approx(sched.lr(5 + i), rel=1e-12)
            assert float(tr.arrays[f"step{i}.tau"]) == pytest.approx(sched.tau(5 + i), rel=1e-12)
        assert float(tr.arrays["step0.lr"]) != pytest.approx(sched.lr(0))


def test_input_errors(tmp_path):
    inputs = _inputs()
    bad = {k: v for k, v in inputs.items() if k != "online.param.encoder.fc1.bias"}
    with pytest.raises(TraceError, match="missing.*encoder.fc1.bias.*hidden_bias"):
        trace_inputs(bad, "deepmind")
    with pytest.raises(TraceError, match="projector.fc1.weight"):
        trace_inputs({k: v for k, v in inputs.items() if "projector.fc1.weight" not in k}, "deepmind")
    with pytest.raises(TraceError, match="without gaps"):
        trace_inputs({k: v for k, v in inputs.items() if k != "step0.input.view2"}, "deepmind")
    three = _inputs(steps=3)
    with pytest.raises(TraceError, match=r"without gaps; got steps \[0, 2\]"):
        trace_inputs({k: v for k, v in three.items() if not k.startswith("step1.")}, "deepmind")
    shared = {k: v for k, v in inputs.items() if ".input." not in k}
    with pytest.raises(TraceError, match="view1 and view2 must be given together"):
        trace_inputs(dict(shared, view1=inputs["step0.input.view1"]), "deepmind", steps=2)
    with pytest.raises(TraceError, match="only 2 step"):
        trace_inputs(inputs, "deepmind", steps=3)
    with pytest.raises(TraceError, match="no views"):
        trace_inputs({k: v for k, v in inputs.items() if ".input." not in k}, "deepmind")
    with pytest.raises(ValueError, match="total_steps"):
        trace_inputs(inputs, "deepmind", total_steps=1)
    with pytest.raises(ValueError, match="warmup_steps"):
        trace_inputs(inputs, "deepmind", warmup_steps=9)
    wrong = dict(inputs, **{"step0.input.view1": inputs["step0.input.view1"][:, :3]})
    with pytest.raises(ValueError, match="view1"):
        trace_inputs(wrong, "deepmind")
    with pytest.raises(ValueError, match="preset must be one of"):
        trace_inputs(inputs, "nope")
    with pytest.raises(ValueError, match="data_init initialises a training run's weights.*data_dependent_init"):
        trace_inputs(inputs, "deepmind", train_extra={"data_init": True})


def test_input_weights_in_another_layout_are_named_with_the_fix():
    """A weight stored (out, in), a norm scale stored (1, F) as Haiku keeps it, and a target
    predictor (the official code keeps one) each get a message that says what to do, and the shape
    it names as expected is the true one."""
    inputs = _inputs()
    key = "online.param.predictor.fc1.weight"  # (projection_dim, predictor_dim): its transpose skews the sizes
    with pytest.raises(TraceError, match=r"online.param.projector.fc2.weight has shape \(\d+, (\d+)\), so \1 outputs, "
                                         r"but online.param.predictor.fc1.weight, shape .*--layout torch"):
        trace_inputs(dict(inputs, **{key: inputs[key].T}), "deepmind")
    key = "target.param.projector.fc2.weight"  # its transpose does not change the sizes read
    shape = inputs[key].shape
    with pytest.raises(TraceError, match=rf"target.param.projector.fc2.weight has shape \({shape[1]}, {shape[0]}\), "
                                         rf"but the sizes read off the online weights \(.*\) make it "
                                         rf"\({shape[0]}, {shape[1]}\); byol-ref stores a Linear weight \(in, out\), "
                                         r"PyTorch \(out, in\)"):
        trace_inputs(dict(inputs, **{key: inputs[key].T}), "deepmind")
    key = "online.param.projector.norm1.gamma"
    with pytest.raises(TraceError, match=rf"has shape \(1, {inputs[key].size}\), .*; it holds the right number of "
                                         rf"values: reshape it to \({inputs[key].size},\)"):
        trace_inputs(dict(inputs, **{key: inputs[key][None]}), "deepmind")
    key = "target.param.encoder.norm1.gamma"  # another width: neither a transpose nor a reshape
    with pytest.raises(TraceError, match=r"target.param.encoder.norm1.gamma has shape \(7,\), .* make it \(6,\) "
                                         r"\(a network of other sizes than the online weights', or a transposed"):
        trace_inputs(dict(inputs, **{key: np.ones(7)}), "deepmind")
    extra = {k.replace("online.", "target."): v for k, v in inputs.items() if k.startswith("online.param.predictor.")}
    with pytest.raises(TraceError, match="the target network has no predictor .*leave the target's predictor out"):
        trace_inputs(dict(inputs, **extra), "deepmind")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(TraceError, match="not an .npz"):
        load_trace(tmp_path / "text.npz")
    (tmp_path / "m.pt").write_bytes(b"\x80\x02")
    with pytest.raises(TraceError, match="never reads pickles.*np.savez"):
        load_trace(tmp_path / "m.pt")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(TraceError, match="pickle"):
        load_trace(tmp_path / "obj.npz")
    with zipfile.ZipFile(tmp_path / "torchlike.npz", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02")
    with pytest.raises(TraceError, match="PyTorch zip checkpoint"):
        load_trace(tmp_path / "torchlike.npz")
    np.savez(tmp_path / "order.npz", a=np.zeros(2), __order__=np.array(["a", "b"]))
    with pytest.raises(TraceError, match="__order__ names"):
        load_trace(tmp_path / "order.npz")
    np.savez(tmp_path / "partial.npz", a=np.zeros(2), b=np.ones(1), c=np.ones(3), __order__=np.array(["b"]))
    assert list(load_trace(tmp_path / "partial.npz").arrays) == ["b", "a", "c"]  # unlisted arrays kept, after
    tr = trace_inputs(_inputs(), "deepmind")
    path = save_trace(tmp_path / "t.npz", tr)
    raw = Path(path).read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TraceError):
        load_trace(tmp_path / "cut.npz")


def test_cli_trace_generated_and_from_inputs(tmp_path, capsys):
    from byol_ref.cli import main

    out = tmp_path / "a.npz"
    assert main(["trace", "--dims", "5,6,4,3,7", "--batch", "4", "--preset", "lightly", "--set", "views=concat",
                 "--set", "predictor_lr_mult=2", "--out", str(out)]) == 0
    tr = load_trace(out)
    assert tr.meta["preset"]["views"] == "concat" and tr.meta["train_extra"] == {"predictor_lr_mult": 2.0}
    assert tr.meta["steps"] == 2
    out2 = tmp_path / "b.npz"
    assert main(["trace", "--inputs", str(out), "--preset", "lightly", "--set", "views=concat",
                 "--set", "predictor_lr_mult=2", "--out", str(out2)]) == 0
    tr2 = load_trace(out2)
    for k in tr.arrays:
        np.testing.assert_array_equal(tr.arrays[k], tr2.arrays[k])
    assert main(["trace", "--out", str(out2)]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["trace", "--dims", "5,6", "--out", str(out2)]) == 2
    assert main(["trace", "--dims", "5,6,4,3", "--set", "wat=1", "--out", str(out2)]) == 2
    assert "unknown field 'wat'" in capsys.readouterr().err


def test_non_finite_inputs_and_a_step_count_below_one_are_refused():
    preset = get_preset("deepmind")
    inputs = make_inputs(preset, encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3, batch=4, steps=1)
    name = next(k for k in inputs if k.startswith("online.param.") and k.endswith(".weight"))
    bad = {**inputs, name: inputs[name].copy()}
    bad[name][0, 0] = np.nan
    with pytest.raises(TraceError, match=rf"the inputs \['{name}'\] hold non-finite values"):
        trace_inputs(bad, preset)
    for steps in (0, -1, True):
        with pytest.raises(TraceError, match="steps must be an int >= 1"):
            trace_inputs(inputs, preset, steps=steps)
    # a negative variance, as a checkpoint's is refused (it traced NaN from the first running-statistics step)
    var = "target.buffer.projector.norm1.running_var"
    bad = {**inputs, var: -np.abs(inputs[var]) - 1}
    with pytest.raises(TraceError, match=rf"{var[:-len('.running_var')].replace('.', '[.]')}.running_var holds 4 "
                                         r"negative value\(s\), the first -\d.*; a variance or a mean of squares is >= 0"):
        trace_inputs(bad, preset)


def test_the_python_entry_points_name_what_they_were_given():
    """trace_networks, make_inputs, networks_from_inputs, trace_inputs and save_trace check their
    arguments' kinds; a step of another batch size would be traced with step 0's learning rate."""
    preset = get_preset("deepmind")
    inputs = _inputs()
    online, target, views, _ = networks_from_inputs(inputs, "deepmind")  # a preset name is taken too
    pair = views[0]
    for bad, says in (([pair[:1]], r"views\[0\] \(step 0\) must be a \(view1, view2\) pair, got tuple of length 1"),
                      ([pair, (pair[0][:3], pair[1][:3])], r"views\[1\]\[0\] \(step 1, view 1\) has 3 rows, but step "
                                                          r"0's view 1 has 4: a trace takes one batch size"),
                      (pair[0], r"views must be a list of \(view1, view2\) pairs, one per step, got 'ndarray'"),
                      ([], r"views must be a list of \(view1, view2\) pairs, one per step, got \[\]"),
                      ([(*pair, pair[0])], r"views\[0\] \(step 0\) must be a \(view1, view2\) pair, got tuple of "
                                           "length 3")):
        with pytest.raises(ValueError, match=says):
            trace_networks(online, target, bad, preset=preset)
    for kw, says in ((dict(start_step=True), "start_step must be an int >= 0, got True"),
                     (dict(total_steps=True), "total_steps must be an int >= start_step"),
                     (dict(warmup_steps=True), r"warmup_steps must be an int in \[0, total_steps=1\], got True")):
        with pytest.raises(ValueError, match=says):
            trace_networks(online, target, [pair], preset=preset, **kw)
    sizes = dict(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3)
    for kw, err, says in ((dict(batch=1), ValueError, "batch must be an int >= 2, got 1"),
                          (dict(steps=0), ValueError, "steps must be an int >= 1, got 0"),
                          (dict(steps=True), ValueError, "steps must be an int >= 1, got True")):
        with pytest.raises(err, match=says):
            make_inputs(preset, **sizes, **kw)
    with pytest.raises(TypeError, match="preset must be a byol_ref.presets.Preset or a preset name, got NoneType"):
        make_inputs(None, **sizes)
    for call in (lambda: networks_from_inputs([1], preset), lambda: trace_inputs(None, preset),
                 lambda: trace_inputs({1: np.zeros(2)}, preset)):  # (a key that is no name)
        with pytest.raises(TypeError, match="inputs must be a dict name -> array"):
            call()
    with pytest.raises(TypeError, match="preset must be a byol_ref.presets.Preset or a preset name, got int"):
        networks_from_inputs(inputs, 3)
    with pytest.raises(TypeError, match="trace must be a byol_ref.trace.Trace .* got dict"):
        save_trace("unused.npz", {"step0.loss.total": np.zeros(())})


def test_cli_trace_with_a_simplicial_embedding(tmp_path):
    """--set sem_simplices=L: the projector starts with Linear -> BN -> softmax over L groups of V, traced
    under their own names, and its rows lie on the simplices."""
    from byol_ref.cli import main

    out = tmp_path / "sem.npz"
    assert main(["trace", "--dims", "5,6,4,3", "--set", "sem_simplices=2", "--set", "sem_simplex_dim=3",
                 "--set", "sem_temperature=0.5", "--out", str(out)]) == 0
    a = load_trace(out).arrays
    s = a["step0.online.view1.projector.sem.out"]
    assert a["init.online.param.projector.sem_fc.weight"].shape == (6, 6)  # encoder width -> L * V
    assert a["init.target.param.projector.fc1.weight"].shape == (6, 4)  # the MLP reads the L * V simplex features
    np.testing.assert_allclose(s.reshape(4, 2, 3).sum(-1), 1.0, rtol=1e-14)
    logits = a["step0.online.view1.projector.sem_norm.out"].reshape(4, 2, 3) / 0.5
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(s.reshape(4, 2, 3), e / e.sum(-1, keepdims=True), rtol=1e-13)
    assert "step0.online.grad.projector.sem_norm.gamma" in a and "step0.target.buffer.projector.sem_norm.count" in a


def test_simplicial_embedding_is_read_off_the_weights():
    """Inputs with projector.sem_fc give L = width / V (V as set, else 8); a width that does not fit, or
    sem_simplices without the weights, is refused by name."""
    preset = get_preset("byol-pytorch")
    sizes = dict(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3, batch=4, steps=1, seed=0)
    inputs = make_inputs(preset, **sizes, model_extra=dict(sem_simplices=2, sem_simplex_dim=8))
    online, _, _, _ = networks_from_inputs(inputs, preset)  # V = 8 by default: L = 16 / 8
    assert (online.config.sem_simplices, online.config.sem_simplex_dim) == (2, 8)
    online, _, _, _ = networks_from_inputs(inputs, preset, model_extra=dict(sem_simplex_dim=4))
    assert online.config.sem_simplices == 4  # V cannot be read off the weights: as set
    with pytest.raises(TraceError, match="has 16 outputs.*sem_simplex_dim=3 does not divide"):
        networks_from_inputs(inputs, preset, model_extra=dict(sem_simplex_dim=3))
    with pytest.raises(TraceError, match=r"sem_simplices=3 x sem_simplex_dim=8 = 24, but .* has 16 outputs"):
        networks_from_inputs(inputs, preset, model_extra=dict(sem_simplices=3))
    plain = make_inputs(preset, **sizes)
    with pytest.raises(TraceError, match="sem_simplices=2 asks for a simplicial embedding, but the inputs have no"):
        networks_from_inputs(plain, preset, model_extra=dict(sem_simplices=2))


def test_inputs_with_a_misspelt_group_or_a_malformed_view_are_refused():
    """A misspelt group (online.buffers.*) used to be skipped, so the trace ran from default running
    statistics; a view that is not a 2-D array of real numbers failed deep inside, or was cast."""
    inputs = _inputs()
    buffers = {k.replace("online.buffer.", "online.buffers."): v for k, v in inputs.items()
               if k.startswith("online.buffer.")}
    assert buffers  # the deepmind preset has batch-norm buffers to misspell
    with pytest.raises(TraceError, match=r"names byol-ref does not read: \['online.buffers.encoder"):
        trace_inputs({**inputs, **buffers})
    with pytest.raises(TraceError, match=r"names byol-ref does not read: \['optimizer.count'\]"):
        trace_inputs({**inputs, "optimizer.count": np.array(0)})
    view = inputs["step0.input.view1"]
    for bad in (np.array(1.0), view[0], view[None], view.astype(complex), view.astype(str)):
        with pytest.raises(TraceError, match=r"step0.input.view1 must be a 2-D \(batch, features\) array of real "
                                             r"numbers, got shape " + re.escape(f"{bad.shape} and dtype {bad.dtype}")):
            trace_inputs({**inputs, "step0.input.view1": bad})
    shared = {k: v for k, v in inputs.items() if ".input." not in k}
    with pytest.raises(TraceError, match=r"view2 must be a 2-D"):
        trace_inputs({**shared, "view1": view, "view2": np.array(0.5)}, steps=1)
    trace_inputs({**inputs, "step0.online.out.z": np.zeros(3)})  # a trace's own outputs are not inputs: skipped
    from byol_ref.trace import trace_networks

    online, target, views, _ = networks_from_inputs(inputs, get_preset("deepmind"))
    with pytest.raises(ValueError, match=r"views\[0\]\[1\] \(step 0, view 2\) must be a 2-D \(batch, features\) "
                                         r"array, got shape \(5,\)"):
        trace_networks(online, target, [(views[0][0], views[0][1][0])], preset=get_preset("deepmind"))


def test_a_simplicial_weight_that_is_not_2d_is_named():
    inputs = _inputs()
    with pytest.raises(TraceError, match=r"projector.sem_fc.weight must be a 2-D \(in, L \* V\) weight, got shape "
                                         r"\(3,\)"):
        trace_inputs({**inputs, "online.param.projector.sem_fc.weight": np.zeros(3)})


def test_a_buffer_count_that_is_no_count_is_refused():
    inputs = _inputs()
    name = next(k for k in inputs if k.endswith(".count"))
    for bad in (1e30, 1.5, -1.0):
        with pytest.raises(ValueError, match=re.escape(name) + " must"):
            trace_inputs({**inputs, name: np.array(bad)})


def test_a_misspelt_view_of_a_step_is_refused():
    inputs = _inputs()
    with pytest.raises(TraceError, match=r"names byol-ref does not read: \['step0.input.view3'\]"):
        trace_inputs({**inputs, "step0.input.view3": inputs["step0.input.view1"]})


@pytest.mark.parametrize("meta, says", [
    ("[1, 2]", r"__meta__ holds a JSON list, expected an object"),
    ('{"a": 1, "a": 2}', r"__meta__ gives \['a'\] more than once"),
    ("{", r"__meta__ is not valid JSON \(JSONDecodeError"),
    (np.array(["{}", "{}"]), r"__meta__ must be one string of JSON, got dtype <U2, shape \(2,\)"),
])
def test_a_trace_meta_that_is_no_json_object_is_refused(tmp_path, meta, says):
    np.savez(tmp_path / "t.npz", __meta__=np.asarray(meta), x=np.ones(3))
    with pytest.raises(TraceError, match=r"t.npz: " + says):
        load_trace(tmp_path / "t.npz")


def test_a_zip_trace_of_an_unsupported_version_is_a_named_error(tmp_path):
    """zipfile raises NotImplementedError for a central-directory entry that needs a newer zip."""
    np.savez(tmp_path / "t.npz", x=np.ones(3))
    raw = bytearray((tmp_path / "t.npz").read_bytes())
    at = raw.find(b"PK\x01\x02")
    raw[at + 6:at + 8] = (90).to_bytes(2, "little")  # "version needed to extract": 9.0
    (tmp_path / "v.npz").write_bytes(bytes(raw))
    with pytest.raises(TraceError, match=r"v.npz is truncated or corrupt"):
        load_trace(tmp_path / "v.npz")


def test_the_normed_grads_keep_the_input_row_order_under_bn_shards():
    # mse: dL/dn(p_v) = 2 (n(p_v) - n(z'_o)) g and dL/dn(z'_o) = -dL/dn(p_v), row by row, whatever the shards
    extra = dict(bn_shards=2, stop_gradient=False)
    a = trace_inputs(_inputs(model_extra=extra), "deepmind", model_extra=extra).arrays
    for v, o in ((1, 2), (2, 1)):
        diff = a[f"step0.online.view{v}.p.normed"] - a[f"step0.target.view{o}.z.normed"]
        for name in (f"step0.online.view{v}.p.normed.grad", f"step0.target.view{o}.z.normed.grad"):
            k = a[name] / diff  # one constant, 2 g (or -2 g)
            np.testing.assert_allclose(k, k.flat[0], rtol=1e-9, err_msg=name)


@pytest.mark.parametrize("key", ["online.param.encoder.fc1.weight", "online.param.projector.fc1.weight"])
def test_a_transposed_weight_inside_the_encoder_or_projector_is_named(key):
    inputs = _inputs()
    with pytest.raises(TraceError, match=r"has shape \(\d+, (\d+)\), so \1 outputs, but online.param.\S+, shape "
                                         r"\((\d+), \d+\), takes \2 inputs: .*transpose yours, or pass --layout torch"):
        trace_inputs(dict(inputs, **{key: inputs[key].T}), "deepmind")


def test_an_unexpected_param_name_is_refused_and_the_sizes_read_are_listed():
    inputs = _inputs()
    with pytest.raises(TraceError, match=r"online.params do not match the config: missing \[\], unexpected "
                                         r"\['encoder.extra.weight'\]"):
        trace_inputs(dict(inputs, **{"online.param.encoder.extra.weight": np.ones((6, 6))}), "deepmind")
    key = "target.param.encoder.fc2.weight"  # 2-D, another width: no transpose advice
    with pytest.raises(TraceError, match=r"target.param.encoder.fc2.weight has shape \(7, 7\), but the sizes read off "
                                         r"the online weights \(encoder_dim=5, hidden_size=6, projector_hidden_dim=7, "
                                         r"projection_dim=4, predictor_dim=3\) make it \(6, 6\) \(a network of "
                                         "other") as e:
        trace_inputs(dict(inputs, **{key: np.ones((7, 7))}), "deepmind")
    assert "transpose yours" not in str(e.value)


def test_cli_trace_of_inputs_that_do_not_fit_the_preset_names_the_fix(tmp_path, capsys):
    # a TraceError from a byol-ref-layout --inputs file (no --layout axon, so no Edifice note) is a clean refusal
    from byol_ref.cli import main
    inputs = _inputs()
    key = "target.param.projector.fc2.weight"
    np.savez(tmp_path / "in.npz", **dict(inputs, **{key: inputs[key].T}))
    assert main(["trace", "--inputs", str(tmp_path / "in.npz"), "--steps", "1", "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert "target.param.projector.fc2.weight has shape" in err and "transpose yours" in err and "note:" not in err


def test_a_one_sided_loss_without_stop_gradient_credits_only_the_target_of_view_2():
    # edifice: l(p1, z'2) only; without stop-gradient dL/dn(z'2) = -2 n(p1) g and z'1 gets none
    a = trace_inputs(make_inputs(get_preset("edifice"), **SIZES, batch=4, steps=1, seed=0,
                                 model_extra={"stop_gradient": False}),
                     "edifice", model_extra={"stop_gradient": False}).arrays
    np.testing.assert_array_equal(a["step0.target.view1.z.normed.grad"], 0)
    np.testing.assert_allclose(a["step0.target.view2.z.normed.grad"], -2 * a["step0.online.view1.p.normed"] / 4,
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------
# What a trace records without a predictor, and its meta (a mutation audit found these unpinned).
# ---------------------------------------------------------------------------------------


def test_without_a_predictor_p_normed_is_the_online_projection_normalised():
    inputs = make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=1, seed=0,
                         model_extra=dict(use_predictor=False))
    a = trace_inputs(inputs, "deepmind", model_extra=dict(use_predictor=False)).arrays
    for v in (1, 2):
        x = a[f"step0.online.view{v}.projector.fc2.out"]
        by_hand = x / np.sqrt(np.maximum((x * x).sum(1, keepdims=True), 1e-12))  # sq_norm, eps 1e-12
        np.testing.assert_allclose(a[f"step0.online.view{v}.p.normed"], by_hand, rtol=1e-12, atol=0)
        z = a[f"step0.target.view{v}.projector.fc2.out"]
        np.testing.assert_allclose(a[f"step0.target.view{v}.z.normed"],
                                   z / np.sqrt(np.maximum((z * z).sum(1, keepdims=True), 1e-12)), rtol=1e-12, atol=0)


def test_the_meta_records_the_schedule_arguments_the_trace_ran_with():
    """Re-running a trace (as test_golden does) reads K, W and the first step from its meta."""
    tr = trace_inputs(make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=2, seed=0), "deepmind",
                      total_steps=16, start_step=5, warmup_steps=3)
    m = tr.meta
    assert (m["steps"], m["start_step"], m["total_steps"], m["warmup_steps"], m["batch"]) == (2, 5, 16, 3, 4)
    tr = trace_inputs(make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=2, seed=0), "deepmind",
                      start_step=5)
    assert (tr.meta["start_step"], tr.meta["total_steps"], tr.meta["warmup_steps"]) == (5, 7, 0)


def test_a_trace_is_a_snapshot_that_shares_no_memory_with_its_inputs_or_the_layers():
    """Every recorded tensor is a copy: the caller editing their inputs afterwards, or a layer updating
    an array it cached in place, cannot change what the trace says (aliasing)."""
    inputs = _inputs()
    tr = trace_inputs(inputs, "deepmind")
    snapshot = {k: v.copy() for k, v in tr.arrays.items()}
    for v in inputs.values():
        v += 1  # (int counts too)
    for k, v in tr.arrays.items():
        np.testing.assert_array_equal(v, snapshot[k], err_msg=k)
        assert v.base is None, f"{k} is a view of another array"


def test_steps_views_are_taken_in_step_order_whatever_the_inputs_order():
    """A file sorted by name lists step10 before step2: the views still go to their own steps."""
    inputs = _inputs(steps=3)
    shuffled = {k: v for k, v in inputs.items() if ".input." not in k}
    for i in (2, 0, 1):
        for j in (1, 2):
            shuffled[f"step{i}.input.view{j}"] = inputs[f"step{i}.input.view{j}"]
    tr = trace_inputs(shuffled, "deepmind")
    for i in range(3):
        np.testing.assert_array_equal(tr.arrays[f"step{i}.input.view1"], inputs[f"step{i}.input.view1"])
    assert float(tr.arrays["step2.loss.total"]) == float(trace_inputs(inputs, "deepmind").arrays["step2.loss.total"])


@pytest.mark.parametrize("name", ["deepmind", "byol-pytorch", "solo-learn"])
def test_every_step_records_the_whole_optimiser_state(name):
    """stepI.opt.<k> has the keys of init.opt.<k>; Adam's count goes 0, 1, 2."""
    tr = trace_inputs(_inputs(name), name)
    init = {k[len("init.opt."):] for k in tr.arrays if k.startswith("init.opt.")}
    assert init
    for i in (0, 1):
        assert {k[len(f"step{i}.opt."):] for k in tr.arrays if k.startswith(f"step{i}.opt.")} == init
    if "count" in init:
        assert [int(tr.arrays[f"{p}opt.count"]) for p in ("init.", "step0.", "step1.")] == [0, 1, 2]


def test_the_meta_records_the_model_and_train_overrides():
    extra = dict(bn_shards=2)
    tr = trace_inputs(_inputs(model_extra=extra), "deepmind", model_extra=extra, train_extra={"nesterov": True})
    assert tr.meta["model_extra"] == {"bn_shards": 2} and tr.meta["train_extra"] == {"nesterov": True}
    assert tr.meta["config"]["bn_shards"] == 2


def test_trace_networks_takes_a_preset_name_as_the_other_entry_points_do():
    """trace_networks(..., preset="deepmind") was refused ("preset must be a byol_ref.presets.Preset, got
    str") where make_inputs, networks_from_inputs and trace_inputs take the name: it now traces what the
    Preset of that name traces, and what is neither is refused naming both."""
    online, target, views, _ = networks_from_inputs(_inputs(), "deepmind")
    by_name = trace_networks(online, target, views, preset="deepmind")
    by_preset = trace_networks(online, target, views, preset=get_preset("deepmind"))
    assert list(by_name.arrays) == list(by_preset.arrays) and by_name.meta == by_preset.meta
    for k, v in by_preset.arrays.items():
        np.testing.assert_array_equal(by_name.arrays[k], v, err_msg=k)
    with pytest.raises(TypeError, match=r"^preset must be a byol_ref.presets.Preset or a preset name, got NoneType$"):
        trace_networks(online, target, views, preset=None)
    with pytest.raises(ValueError, match="preset must be one of"):
        trace_networks(online, target, views, preset="deepmnid")


@pytest.mark.parametrize("key, bad, says", [
    ("online.param.encoder.fc1.weight", lambda a: a.ravel(),
     r"^online.param.encoder.fc1.weight must be 2-D \(in, out\), got shape \(30,\)$"),
    ("online.param.predictor.fc1.weight", lambda a: a[None],
     r"^online.param.predictor.fc1.weight must be 2-D \(in, out\), got shape \(1, 4, 3\)$"),
    ("online.param.encoder.fc1.bias", lambda a: a.astype(complex),
     r"^online.param.encoder.fc1.bias must be numeric, got dtype complex128$"),
    ("target.param.projector.fc2.weight", lambda a: a.astype(str),
     r"^target.param.projector.fc2.weight must be numeric, got dtype <U\d+$"),
    ("online.buffer.encoder.norm1.running_mean", None,
     r"^online buffers do not match the config: missing \['encoder.norm1.running_mean'\], unexpected \[\]$"),
    ("target.buffer.encoder.norm9.running_mean", lambda a: np.zeros(6),
     r"^target buffers do not match the config: missing \[\], unexpected \['encoder.norm9.running_mean'\]$"),
])
def test_inputs_with_a_weight_of_another_rank_non_numbers_or_other_buffers_are_named(key, bad, says):
    """An inputs file (byol-ref trace --inputs) whose weight has lost or gained an axis, whose array holds
    complex numbers or strings, or whose buffers are not the config's: the array is named, with what it
    has and what a trace needs."""
    inputs = _inputs()
    if bad is None:
        del inputs[key]
    else:
        inputs[key] = bad(inputs.get(key, np.zeros(1)))
    with pytest.raises(TraceError, match=says):
        networks_from_inputs(inputs, "deepmind")


def test_inputs_of_one_shared_view_pair_need_the_number_of_steps():
    """view1/view2 (one pair for every step) say nothing of how many steps to trace: without steps the
    user is told to pass it (--steps N on the command line); with it, each step takes that pair."""
    inputs = {k: v for k, v in _inputs(steps=1).items() if ".input." not in k}
    inputs.update(view1=_inputs(steps=1)["step0.input.view1"], view2=_inputs(steps=1)["step0.input.view2"])
    with pytest.raises(TraceError, match=r"^the inputs hold one view1/view2 pair, used for every step: pass steps "
                                         r"\(--steps N\)$"):
        trace_inputs(inputs, "deepmind")
    tr = trace_inputs(inputs, "deepmind", steps=2)
    np.testing.assert_array_equal(tr.arrays["step1.input.view2"], inputs["view2"])


def test_a_trace_name_a_file_cannot_hold_is_refused_before_anything_is_written(tmp_path):
    """save_trace keeps __order__ and __meta__ for itself, and a '/' would be a folder inside the .npz:
    such a name is refused, naming it, and no file is written."""
    for name in ("__order__", "step0/loss"):
        with pytest.raises(ValueError, match=rf"^trace names must not start with '__' or contain '/', got "
                                             rf"\['{name}'\]$"):
            save_trace(tmp_path / "t.npz", Trace({"x": np.ones(2), name: np.ones(1)}, {}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("order, says", [
    (np.array([1, 2]), r"dtype int64, shape \(2,\)"),
    (np.array([["x"]]), r"dtype <U1, shape \(1, 1\)"),
    (np.array([b"x"]), r"dtype \|S1, shape \(1,\)"),
])
def test_a_trace_order_that_is_no_list_of_names_is_refused(tmp_path, order, says):
    """A trace file (anyone's .npz) whose __order__ is not a 1-D array of names: the file is named, with
    the dtype and shape it holds."""
    np.savez(tmp_path / "t.npz", __order__=order, x=np.ones(3))
    with pytest.raises(TraceError, match=r"t.npz: __order__ must be a 1-D string array, got " + says):
        load_trace(tmp_path / "t.npz")


def test_inputs_without_predictor_weights_trace_a_network_without_a_predictor():
    """use_predictor is read off the weights as the sizes are: a file without predictor.* needs no
    model_extra to say so (a no-predictor ablation's own export)."""
    inputs = make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=1, seed=0,
                         model_extra=dict(use_predictor=False))
    assert not any(".predictor." in k for k in inputs)
    tr = trace_inputs(inputs, "deepmind")
    assert tr.meta["config"]["use_predictor"] is False and not any(".predictor." in k for k in tr.arrays)
    ablation = trace_inputs(inputs, "deepmind", model_extra=dict(use_predictor=False))
    assert list(tr.arrays) == list(ablation.arrays)


def test_make_inputs_defaults_to_2_steps_of_4_rows_from_seed_0_and_the_meta_to_version_1():
    """Its signature's defaults, pinned, and the version docs/trace-format.md gives."""
    inputs = make_inputs(get_preset("deepmind"), **SIZES)
    drawn = make_inputs(get_preset("deepmind"), **SIZES, batch=4, steps=2, seed=0)
    assert list(inputs) == list(drawn) and all(np.array_equal(inputs[k], drawn[k]) for k in inputs)
    assert inputs["step1.input.view2"].shape == (4, 5) and "step2.input.view1" not in inputs
    meta = trace_inputs(inputs, "deepmind").meta
    assert (meta["format"], meta["version"]) == ("byol-ref-trace", 1)
