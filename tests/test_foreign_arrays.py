"""Arrays as other libraries and other machines hand them over: in the other byte order, read-only.

**The other byte order.** ``>f8`` is float64 as ``<f8`` is. A FITS image, some HDF5 files and what
``np.save`` wrote on a big-endian machine (s390x) come back from NumPy as ``>f8``, ``>f4``, ``>u2``.
NumPy computes with them as with their native twins, its results in the native order. So does
byol_ref: each entry point takes them and gives the twins' results bit for bit, and a file read (a
checkpoint, a trace, a data set) comes back native, which CuPy needs. Before, ``forward`` and
``loss`` failed inside a layer ("w has dtype float64, but x has >f8"), ``augment_images`` on a bare
assert, an optimiser and ``ema_update`` on a "dtype mismatch" of float64 with float64,
``diff_traces`` called two equal traces different ("dtype, float64 vs float64"), and a checkpoint
another machine wrote was refused as corrupt. ``swapped`` gives the other order of the machine the
tests run on, so each test means the same on a big-endian one.

**Read-only arrays.** ``np.asarray`` of a JAX array, a memory map opened with mode "r" and
``np.frombuffer`` are read-only. Everything that only reads them takes them; an op asked to write
its result into one (``inplace=True``) refuses it by name before it writes anything, where NumPy
said only "output array is read-only", and an in-place optimiser update had by then written the
params before the read-only one.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import byol_ref as byol
from byol_ref import augment, diff, kernels, layers, losses, optim
from byol_ref.data import load_file, synthetic
from byol_ref.train import TrainConfig, fit, load_checkpoint

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def swapped(a):
    """``a``'s values in the other byte order (a copy)."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("S"))


def assert_twins(got, want, what):
    """``got`` holds ``want``'s values bit for bit, in the same type (either byte order)."""
    if isinstance(want, dict):
        assert set(got) == set(want), what
        for k in want:
            assert_twins(got[k], want[k], f"{what}[{k!r}]")
        return
    if isinstance(want, tuple):
        assert len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            assert_twins(g, w, f"{what}[{i}]")
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype.name == want.dtype.name, f"{what}: {got.dtype} vs {want.dtype}"
    np.testing.assert_array_equal(got, want, err_msg=what)


def native_results(tree, what):
    """Every array a computation made is in the native order (not a copy of the caller's order)."""
    if isinstance(tree, (dict, tuple)):
        for k, v in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
            native_results(v, f"{what}[{k!r}]")
    else:
        assert np.asarray(tree).dtype.isnative, f"{what}: {np.asarray(tree).dtype}"


ROLES = ("view1", "view2", "online", "target")


@settings(deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), swap=st.sets(st.sampled_from(ROLES), min_size=1),
       tau=st.floats(0, 1), form=st.sampled_from(kernels.EMA_FORMS))
def test_the_model_api_gives_the_native_twins_results(seed, n, swap, tau, form):
    online, target = byol.build(6, projection_dim=3, predictor_dim=4, hidden_size=5, seed=seed)
    rng = np.random.default_rng(seed)
    view1, view2 = rng.standard_normal((2, n, 6))

    def maybe(role, a):
        return swapped(a) if role in swap else a

    def net(role, network):
        return network._replace(params={k: maybe(role, v) for k, v in network.params.items()},
                                buffers={k: maybe(role, v) for k, v in network.buffers.items()})

    s_online, s_target, s_view1, s_view2 = net("online", online), net("target", target), maybe("view1", view1), \
        maybe("view2", view2)
    want, got = byol.loss_and_grads(online, target, view1, view2), byol.loss_and_grads(s_online, s_target, s_view1,
                                                                                         s_view2)
    for field in want._fields:
        assert_twins(getattr(got, field), getattr(want, field), f"loss_and_grads .{field}")
    native_results((got.loss, got.grads, got.outputs), "loss_and_grads")
    for train in (False, True):
        outputs, buffers = byol.forward(s_online, s_view1, train=train)
        assert_twins((outputs, buffers), byol.forward(online, view1, train=train), f"forward(train={train})")
        native_results(outputs, f"forward(train={train})")
    p, z = want.outputs["online.p"][0], want.outputs["target.z"][1]
    assert_twins(byol.loss(maybe("view1", p), maybe("view2", z)), byol.loss(p, z), "loss")
    moved = {k: v + 1.0 for k, v in online.params.items()}
    s_moved = {k: maybe("online", v) for k, v in moved.items()}
    new = byol.ema_update(moved, target.params, tau, form=form)
    assert_twins(byol.ema_update(s_moved, s_target.params, tau, form=form), new, "ema_update")
    in_place = {k: v.copy() for k, v in s_target.params.items()}
    assert_twins(byol.ema_update(s_moved, in_place, tau, form=form, inplace=True), new, "ema_update(inplace=True)")
    assert_twins(in_place, new, "ema_update(inplace=True)'s target arrays")  # (written in the caller's order)


@settings(deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 5), swap=st.lists(st.booleans(), min_size=4, max_size=4))
def test_the_layers_give_the_native_twins_results(seed, n, swap):
    rng = np.random.default_rng(seed)
    x, w, b, dout = rng.standard_normal((n, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3), \
        rng.standard_normal((n, 3))
    sx, sw, sb, sdout = (swapped(a) if s else a for a, s in zip((x, w, b, dout), swap))

    out, cache = layers.linear_forward(x, w, b)
    s_out, s_cache = layers.linear_forward(sx, sw, sb)
    assert_twins(s_out, out, "linear_forward")
    assert_twins(layers.linear_backward(sdout, s_cache), layers.linear_backward(dout, cache), "linear_backward")

    gamma, beta = 1 + rng.random(3), rng.standard_normal(3)
    running = layers.RunningStats(np.zeros(3), np.ones(3), np.zeros((), np.int64))
    s_running = layers.RunningStats(*(swapped(a) if s else a for a, s in zip(running, swap)))
    out, cache, running2 = layers.batch_norm_forward(dout, gamma, beta, running, train=True)
    s_out, s_cache, s_running2 = layers.batch_norm_forward(sdout, swapped(gamma) if swap[0] else gamma,
                                                           swapped(beta) if swap[1] else beta, s_running, train=True)
    assert_twins((s_out, tuple(s_running2)), (out, tuple(running2)), "batch_norm_forward")
    assert_twins(layers.batch_norm_backward(sx[:, :3], s_cache), layers.batch_norm_backward(x[:, :3], cache),
                 "batch_norm_backward")

    p, z, dloss = dout, x[:, :3], rng.standard_normal(n)
    loss, cache = losses.regression_loss_forward(p, z)
    s_loss, s_cache = losses.regression_loss_forward(sdout, sx[:, :3])
    assert_twins(s_loss, loss, "regression_loss_forward")
    s_dloss = swapped(dloss) if swap[2] else dloss
    assert_twins(losses.regression_loss_backward(s_dloss, s_cache), losses.regression_loss_backward(dloss, cache),
                 "regression_loss_backward")


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
@pytest.mark.parametrize("swap", ["params", "grads", "both"])
def test_the_optimisers_give_the_native_twins_results(name, swap):
    online = byol.build_online(6, projection_dim=3, predictor_dim=4, hidden_size=5, seed=0)
    rng = np.random.default_rng(1)
    grads = [{k: rng.standard_normal(v.shape) for k, v in online.params.items()} for _ in range(3)]
    opt = optim.make_optimizer(name)

    def run(params, grads_seq):
        state = opt.init(params)
        for g in grads_seq:
            params, state = opt.update(g, state, params, lr=0.1)
        return params, state

    s_params = {k: swapped(v) for k, v in online.params.items()} if swap != "grads" else online.params
    s_grads = [{k: swapped(v) for k, v in g.items()} for g in grads] if swap != "params" else grads
    assert_twins(run(s_params, s_grads), run(online.params, grads), f"{name} with {swap} swapped")


def test_another_librarys_dtype_is_still_told_apart_from_numpys():
    """same_dtype reads a byte order of NumPy's dtypes only: optimiser state of another library's
    dtype (torch.float64, equal to no NumPy dtype) failed on an AttributeError (it has no
    newbyteorder) once the comparison looked past equality, where it had been refused by name."""
    from byol_ref.checks import same_dtype

    online = byol.build_online(6, projection_dim=3, predictor_dim=4, hidden_size=5, seed=0)

    class Foreign:  # (shape and dtype as a torch tensor has them)
        def __init__(self, a):
            self.shape, self.dtype = a.shape, "torch.float64"

    opt = optim.make_optimizer("sgd")
    state = opt.init(online.params)
    key = next(iter(state))
    state[key] = Foreign(state[key])
    with pytest.raises(ValueError, match=rf"^state\['{key}'\] must match params\[.*got shape .*, dtype torch.float64$"):
        opt.update({k: np.ones_like(v) for k, v in online.params.items()}, state, online.params, lr=0.1)
    assert not same_dtype(np.dtype("float64"), "torch.float64") and same_dtype(np.dtype(">f8"), np.dtype("<f8"))


def test_the_augmentations_give_the_native_twins_views():
    x = np.random.default_rng(0).random((5, 64))
    for views, shape in ((augment.digits_views(), (8, 8)), (augment.default_views_for(synthetic(n=40, dim=64)), None)):
        want = augment.two_views(x, np.random.default_rng(3), views, shape)
        assert_twins(augment.two_views(swapped(x), np.random.default_rng(3), views, shape), want, "two_views")


def test_diff_finds_a_trace_and_its_twin_agree(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4))
    report = diff.diff_traces({"online.z": swapped(x)}, {"online.z": x})
    assert report.ok, diff.format_report(report)
    np.savez(tmp_path / "other.npz", **{"online.z": swapped(x)})
    np.savez(tmp_path / "ours.npz", **{"online.z": x})
    report = diff.diff_files(tmp_path / "other.npz", tmp_path / "ours.npz")
    assert report.ok, diff.format_report(report)


def rewrite_swapped(path):
    """``path`` as a machine of the other byte order writes it (np.savez keeps each array's order)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(path, **{k: swapped(v) for k, v in arrays.items()})
    with np.load(path, allow_pickle=False) as f:
        assert not any(f[k].dtype.isnative for k in f.files if f[k].dtype.byteorder != "|")


def test_a_checkpoint_another_machine_wrote_resumes_bit_identical(tmp_path):
    data = synthetic(n=96, dim=8, n_classes=3, seed=0)
    cfg = byol.Config(encoder_dim=8, hidden_size=16, projection_dim=4, predictor_dim=8)
    tcfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, checkpoint_every=2, seed=1)
    full = fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "full")
    part = tmp_path / "part"
    fit(data, cfg, tcfg, progress=False, out_dir=part, stop_at=4)
    rewrite_swapped(part / "checkpoint.npz")
    state = load_checkpoint(part / "checkpoint.npz")[0]
    native_results((state.online.params, state.target.buffers, state.opt_state), "load_checkpoint")
    resumed = fit(data, cfg, tcfg, progress=False, out_dir=part, resume=True)
    assert resumed.state.step == full.state.step
    for field in ("params", "buffers"):
        assert_twins(getattr(resumed.state.online, field), getattr(full.state.online, field), f"online.{field}")
        assert_twins(getattr(resumed.state.target, field), getattr(full.state.target, field), f"target.{field}")
    assert_twins(resumed.state.opt_state, full.state.opt_state, "opt_state")


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int32"])
def test_a_data_file_another_machine_wrote_reads_as_its_twin(tmp_path, dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((12, 4, 4)) * (65535 if dtype == "uint16" else 1)).astype(dtype)
    if dtype == "int32":
        x = rng.integers(0, 2, (12, 4, 4)).astype(dtype)
    y = (np.arange(12) % 3).astype(">i8")
    for name, arrays in (("npz", dict(x=x, y=y)), ("npy", dict(x=x))):
        np.savez(tmp_path / f"ours.{name}", **arrays) if name == "npz" else np.save(tmp_path / "ours.npy", x)
        other = {k: swapped(v) for k, v in arrays.items()}
        np.savez(tmp_path / f"other.{name}", **other) if name == "npz" else np.save(tmp_path / "other.npy", other["x"])
        want = load_file(tmp_path / f"ours.{name}", scale_pixels=True)
        got = load_file(tmp_path / f"other.{name}", scale_pixels=True)
        assert got.full_scale == want.full_scale and got.image_shape == want.image_shape
        for field in ("x_train", "y_train", "x_test", "y_test"):
            if getattr(want, field) is not None:
                assert_twins(getattr(got, field), getattr(want, field), f"{name} {field}")
                native_results(getattr(got, field), f"{name} {field}")


def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_what_only_reads_a_read_only_array_takes_it():
    online, target = byol.build(6, projection_dim=3, predictor_dim=4, hidden_size=5, seed=0)
    view1, view2 = np.random.default_rng(0).standard_normal((2, 8, 6))

    def frozen(network):
        return network._replace(params={k: read_only(v) for k, v in network.params.items()},
                                buffers={k: read_only(v) for k, v in network.buffers.items()})

    want = byol.loss_and_grads(online, target, view1, view2)
    got = byol.loss_and_grads(frozen(online), frozen(target), read_only(view1), read_only(view2))
    for field in want._fields:
        assert_twins(getattr(got, field), getattr(want, field), f"loss_and_grads .{field}")
    assert_twins(byol.ema_update(frozen(online).params, frozen(target).params, 0.9),
                 byol.ema_update(online.params, target.params, 0.9), "ema_update")
    frozen_online = frozen(online)  # (in place, only the target is written: the online params are read)
    assert_twins(byol.ema_update(frozen_online.params, {k: v.copy() for k, v in target.params.items()}, 0.9,
                                 inplace=True), byol.ema_update(online.params, target.params, 0.9), "ema_update")
    opt = optim.make_optimizer("lars")
    assert_twins(opt.update({k: read_only(g) for k, g in want.grads.items()}, opt.init(frozen_online.params),
                            frozen_online.params, lr=0.1),
                 opt.update(want.grads, opt.init(online.params), online.params, lr=0.1), "lars update")
    x = np.random.default_rng(1).random((5, 64))
    assert_twins(augment.two_views(read_only(x), np.random.default_rng(3), augment.digits_views(), (8, 8)),
                 augment.two_views(x, np.random.default_rng(3), augment.digits_views(), (8, 8)), "two_views")


def _in_place_ops():
    """(op, argument name, call with that argument read-only): each writes into that argument."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 4, 3))
    gamma, beta = np.ones(3), np.zeros(3)

    def running():
        return layers.RunningStats(np.zeros(3), np.ones(3), np.zeros((), np.int64))

    _, relu_cache = layers.relu_forward(x)
    _, bn_cache, _ = layers.batch_norm_forward(x, gamma, beta, running(), train=True)
    yield "relu_forward", "x", lambda: layers.relu_forward(read_only(x), inplace=True)
    yield "relu_backward", "dout", lambda: layers.relu_backward(read_only(dout), relu_cache, inplace=True)
    yield "batch_norm_forward", "x", lambda: layers.batch_norm_forward(read_only(x), gamma, beta, running(),
                                                                        train=True, inplace=True)
    yield "batch_norm_backward", "dout", lambda: layers.batch_norm_backward(read_only(dout), bn_cache, inplace=True)


@pytest.mark.parametrize("op, name, call", list(_in_place_ops()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_layer_told_to_write_into_a_read_only_array_names_it(op, name, call):
    with pytest.raises(ValueError, match=rf"^{op}: {name} is read-only, and inplace=True writes the result into it "
                                         rf".*pass inplace=False, or a writable copy \({name}.copy\(\)\)$"):
        call()


@settings(deadline=None)
@given(name=st.sampled_from(["sgd", "lars", "adam", "adamw", "ema"]), which=st.integers(0, 10**6),
       in_state=st.booleans())
def test_an_in_place_update_with_a_read_only_array_names_it_and_writes_nothing(name, which, in_state):
    """The read-only array may come last: each array before it was written, in place, before."""
    online, target = byol.build(6, projection_dim=3, predictor_dim=4, hidden_size=5, seed=0)
    grads = {k: np.full_like(v, 0.5) for k, v in online.params.items()}
    params = {k: v.copy() for k, v in (target.params if name == "ema" else online.params).items()}
    opt = None if name == "ema" else optim.make_optimizer(name)
    state = {} if opt is None else opt.init(params)
    if opt is not None:
        state = {k: v + 0.25 for k, v in state.items()}  # (not all zeros, so a write shows)
    tree, label = (state, "state") if in_state and state else (params, "target_params" if name == "ema" else "params")
    key = sorted(tree)[which % len(tree)]
    tree[key] = read_only(tree[key])
    before = {k: v.copy() for k, v in {**params, **{"state." + k: v for k, v in state.items()}}.items()}
    op = "ema_update" if name == "ema" else f"{name}_update"
    with pytest.raises(ValueError, match=rf"^{op}: {label}\[{key!r}\] is read-only, and inplace=True writes"):
        if opt is None:
            byol.ema_update(online.params, params, 0.9, inplace=True)
        else:
            opt.update(grads, state, params, lr=0.1, inplace=True)
    assert_twins({**params, **{"state." + k: v for k, v in state.items()}}, before, "after the refusal")
