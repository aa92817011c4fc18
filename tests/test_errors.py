"""Bad input gets a ValueError or TypeError naming the argument, what it got and what was expected."""
import math
import re

import numpy as np
import pytest

import byol_ref as byol


@pytest.fixture(scope="module")
def nets():
    return byol.build(4, 3, 2, 5)


def _views(n=3, d=4, dtype="float64"):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((n, d)).astype(dtype)


def test_mismatched_view_shapes(nets):
    v1, _ = _views(3)
    _, v2 = _views(4)
    with pytest.raises(ValueError, match=r"view1 and view2 must have the same shape, got \(3, 4\) and \(4, 4\)"):
        byol.loss_and_grads(*nets, v1, v2)


def test_wrong_feature_width(nets):
    v1, v2 = _views(3, 5)
    with pytest.raises(ValueError, match=r"view1 must have 4 features .* got shape \(3, 5\)"):
        byol.loss_and_grads(*nets, v1, v2)


def test_wrong_rank(nets):
    v1, v2 = _views()
    with pytest.raises(ValueError, match=r"view1 must be a 2-D array, got shape \(12,\)"):
        byol.loss_and_grads(*nets, v1.reshape(-1), v2)
    with pytest.raises(ValueError, match="x must be a 2-D array"):
        byol.forward(nets[0], v1[None])


def test_mixed_dtypes(nets):
    v1, v2 = _views()
    with pytest.raises(TypeError, match="view2 has dtype float32, expected float64"):
        byol.loss_and_grads(*nets, v1, v2.astype("float32"))
    with pytest.raises(TypeError, match="view1 must be a floating array"):
        byol.loss_and_grads(*nets, v1.astype(int), v2)


def test_non_finite(nets):
    v1, v2 = _views()
    v2[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"view2 has 1 non-finite value\(s\).*first at index \(1, 2\)"):
        byol.loss_and_grads(*nets, v1, v2)


def test_batch_of_one_in_batch_norm_training(nets):
    v1, v2 = _views(1)
    with pytest.raises(ValueError, match=r"view1 must have at least 2 rows, got shape \(1, 4\): batch norm takes its "
                                         "statistics over the rows of a batch"):
        byol.loss_and_grads(*nets, v1, v2)
    with pytest.raises(ValueError, match=r"x must have at least 2 rows, got shape \(1, 4\): batch norm in training "
                                         r"mode .*\(train=False uses the running statistics\)"):
        byol.forward(nets[0], v1, train=True)
    byol.forward(nets[0], v1, train=False)  # evaluation with running statistics is fine
    for train in (False, True):  # an empty batch, in either mode; batch norm is not the reason in evaluation
        says = r"at least 2 rows, got shape \(0, 4\)" if train else r"^x must have at least 1 row, got shape \(0, 4\)$"
        with pytest.raises(ValueError, match=says):
            byol.forward(nets[0], v1[:0], train=train)


@pytest.mark.parametrize("views", ["separate", "concat"])
def test_a_training_forward_refuses_rows_that_its_shards_cannot_split(views):
    """forward(train=True) with bn_shards = 2 normalises each half of x by its own statistics: an odd
    number of rows, or 1 row a shard (concat joins two views in a step, but forward has one input), is
    refused by name. Found by scripts/mutation_sweep.py: the check run on x's columns, or with a step's
    two views counted, passed every test."""
    net = byol.build_online(6, projection_dim=4, predictor_dim=3, hidden_size=8, seed=0, bn_shards=2, views=views)
    x = np.random.default_rng(0).standard_normal((5, 6))
    for rows in (5, 2):
        with pytest.raises(ValueError, match=rf"^x has {rows} rows, which bn_shards=2 cannot split into equal shards "
                                             r"of at least 2 rows each .*a multiple of 2 and at least 4$"):
            byol.forward(net, x[:rows], train=True)
    byol.forward(net, x[:4], train=True)


def test_unknown_option_values():
    with pytest.raises(ValueError,
                       match=r"norm must be one of \('batch', 'layer', 'group', 'affine', 'none'\), got 'inst"):
        byol.build(4, norm="instance")
    with pytest.raises(ValueError, match="norm_groups=3 must divide every normalised width, but encoder.norm1 has 256"):
        byol.build(4, norm="group", norm_groups=3)
    with pytest.raises(ValueError, match="norm_groups must be an int >= 1"):
        byol.build(4, norm="group", norm_groups=0)
    with pytest.raises(TypeError, match="weight_std must be a bool, got 'yes'"):
        byol.build(4, weight_std="yes")
    with pytest.raises(ValueError, match="ws_eps must be in"):
        byol.build(4, weight_std=True, ws_eps=0.0)
    # one input per standardised unit: every weight standardises to 0 (the network ignored its input)
    with pytest.raises(ValueError, match=r"weight_std=True needs 2 or more inputs .* encoder.fc1.weight has 1"):
        byol.build(1, weight_std=True)
    with pytest.raises(ValueError, match=r"predictor.fc1.weight has 1 \(shape \(1, 5\)\)"):
        byol.build(3, weight_std=True, projection_dim=1, predictor_dim=5)
    byol.build(3, weight_std=True, projection_dim=1, use_predictor=False)  # heads' last Linears are not standardised
    with pytest.raises(ValueError, match="layout must be one of"):
        byol.build(4, layout="simclr")
    with pytest.raises(ValueError, match="views must be one of"):
        byol.build(4, views="both")
    with pytest.raises(TypeError, match="unexpected keyword argument 'nrom'"):
        byol.build(4, nrom="batch")
    with pytest.raises(ValueError, match="encoder_dim must be an int >= 1, got 0"):
        byol.build(0)
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        byol.build(4, hidden_size=2.5)
    with pytest.raises(ValueError, match="bn_decay must be in"):
        byol.build(4, bn_decay=1.0)


def test_wrong_network_roles_and_configs(nets):
    online, target = nets
    v1, v2 = _views()
    with pytest.raises(ValueError, match="online must be the online network, got a target network"):
        byol.loss_and_grads(target, target, v1, v2)
    with pytest.raises(TypeError, match="online must be a byol_ref Network"):
        byol.loss_and_grads(online.params, target, v1, v2)
    other = byol.build_target(4, 3, 2, 5, views="concat")
    with pytest.raises(ValueError, match="different configs: views"):
        byol.loss_and_grads(online, other, v1, v2)
    broken = online._replace(params={**online.params, "encoder.fc1.weight": np.zeros((4, 6))})
    with pytest.raises(ValueError, match=r"encoder.fc1.weight'\] has shape \(4, 6\), expected \(4, 5\)"):
        byol.loss_and_grads(broken, target, v1, v2)


def test_loss_errors():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="same shape"):
        byol.loss(a, np.ones((3, 5)))
    with pytest.raises(TypeError, match="target_proj has dtype float32, expected float64, the dtype of online_pred;"):
        byol.loss(a, a.astype("float32"))  # (loss has no parameters: the message once said it took their dtype)


# --------------------------------------------------------------------------- the checks themselves


def test_check_helpers_name_the_argument_and_refuse_each_bad_case():
    """byol_ref.checks, which every public function uses: each branch, with its message."""
    from dataclasses import dataclass

    from byol_ref.checks import (check_array, check_choice, check_float_range, check_positive_int,
                                 dataclass_from_dict)

    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode must be one of \('a', 'b'\), got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    with pytest.raises(ValueError, match="got None"):  # None is not a choice unless listed
        check_choice(None, "mode", ("a", "b"))

    assert check_positive_int(3, "steps") == 3 and check_positive_int(0, "k", minimum=0) == 0
    for bad in (True, 2.0, "2", None):  # a bool is an int to Python, never to us
        with pytest.raises(TypeError, match="steps must be an int >= 1"):
            check_positive_int(bad, "steps")
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        check_positive_int(0, "steps")

    assert check_float_range("0.5", "p", 0, 1) == 0.5 and check_float_range(0, "p", 0, 1) == 0.0
    with pytest.raises(ValueError, match="p must not be NaN"):
        check_float_range(float("nan"), "p", 0, 1)
    for inf in (float("inf"), -float("inf")):  # either sign, with no bound that would catch it
        with pytest.raises(ValueError, match="p must be finite"):
            check_float_range(inf, "p")
    with pytest.raises(TypeError, match="p must be a real number, got 'x'"):
        check_float_range("x", "p")
    for value, kw, shown in ((0, dict(lo_open=True), r"\(0, 1\]"), (1, dict(hi_open=True), r"\[0, 1\)"),
                             (-0.1, {}, r"\[0, 1\]"), (1.1, {}, r"\[0, 1\]")):
        with pytest.raises(ValueError, match=rf"p must be in {shown}, got {value}"):
            check_float_range(value, "p", 0, 1, **kw)
    assert check_float_range(-5.0, "x", None, 1) == -5.0  # an open-ended range

    from pathlib import Path

    from byol_ref.checks import check_path

    class BytesPath:  # an os.PathLike may give bytes, which every reader here would take for another thing
        def __fspath__(self):
            return b"run/checkpoint.npz"

    assert check_path(Path("a") / "b.npz") == str(Path("a") / "b.npz") and check_path("c.npz") == "c.npz"
    # an empty path names no file (readers said "weights file  does not exist"; a writer's rename took the folder)
    with pytest.raises(ValueError, match=r"^checkpoint is empty \(''\); expected a file path$"):
        check_path("", "checkpoint")
    from byol_ref import checkpoint, diff, interchange

    for read, name in ((interchange.load_arrays, "path"), (checkpoint.load, "path"),
                       (lambda p: diff.diff_files(p, "t.npz"), "path_a")):
        with pytest.raises(ValueError, match=f"^{name} is empty"):
            read("")
    for bad, shown in ((b"c.npz", "bytes"), (BytesPath(), "BytesPath"), (None, "NoneType")):
        with pytest.raises(TypeError, match=f"checkpoint must be a str or os.PathLike file path, got {shown}"):
            check_path(bad, "checkpoint")

    x = np.zeros((3, 4))
    assert check_array(x, "x", ndim=2, last_dim=4, dtype="float64", min_rows=3) is x
    with pytest.raises(TypeError, match="x must be a NumPy or CuPy array, got list"):
        check_array([1.0], "x")
    with pytest.raises(ValueError, match=r"x must be a 3-D array, got shape \(3, 4\) \(2-D\)"):
        check_array(x, "x", ndim=3)
    with pytest.raises(TypeError, match="x must be a floating array .* got dtype int64"):
        check_array(np.zeros(3, dtype="int64"), "x")
    with pytest.raises(TypeError, match="x has dtype float64, expected float32"):
        check_array(x, "x", dtype="float32")
    with pytest.raises(ValueError, match="x must have 5 features in its last axis"):
        check_array(x, "x", last_dim=5)
    with pytest.raises(ValueError, match="x must have at least 4 rows"):
        check_array(x, "x", min_rows=4)
    y = x.copy()
    y[1, 2], y[2, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"x has 2 non-finite value\(s\) \(NaN or inf\), first at index \(1, 2\)"):
        check_array(y, "x")
    assert check_array(y, "x", finite=False) is y

    @dataclass
    class Pair:
        a: int
        b: int = 2

    assert dataclass_from_dict(Pair, {"a": 1}) == Pair(1, 2)
    with pytest.raises(ValueError, match=r"unknown Pair field\(s\) \['c'\]; known fields: \['a', 'b'\]"):
        dataclass_from_dict(Pair, {"a": 1, "c": 3})


# --------------------------------------------------------------------------- entry checks found by an audit


def test_forward_train_must_be_a_bool(nets):
    v1, _ = _views()
    for bad in ("no", 1, None):  # "no" is truthy: it used to run in training mode
        with pytest.raises(TypeError, match=f"train must be True or False, got {bad!r}"):
            byol.forward(nets[0], v1, train=bad)
    byol.forward(nets[0], v1, train=np.True_)  # NumPy's bool is a bool


def test_loss_eps_type_range_and_an_empty_batch():
    from byol_ref.losses import l2_normalize_forward, regression_loss_forward

    a = np.random.default_rng(0).standard_normal((3, 4))
    for bad, shown in ((-1, r"must be in \(0, inf\), got -1"), (0.0, r"must be in \(0, inf\), got 0.0"),
                       (float("nan"), "must not be NaN"), (float("inf"), "must be finite")):
        with pytest.raises(ValueError, match=f"eps {shown}"):
            byol.loss(a, a, eps=bad)
        with pytest.raises(ValueError, match=f"eps {shown}"):
            regression_loss_forward(a, a, eps=bad)
    for bad in ("a", "1e-8", True):
        with pytest.raises(TypeError, match=f"eps must be a real number, got {bad!r}"):
            byol.loss(a, a, eps=bad)
        with pytest.raises(TypeError, match="eps must be a real number"):
            l2_normalize_forward(a, eps=bad, eps_mode="add")
    with pytest.raises(ValueError, match=r"online_pred must have at least 1 row, got shape \(0, 4\)"):
        byol.loss(a[:0], a[:0])
    assert float(byol.loss(a, a, eps=np.float32(1e-8), eps_mode="add")) < 1e-12  # NumPy scalars are numbers


@pytest.mark.parametrize("dtype", ["float16"] + (["longdouble"] if np.dtype("longdouble").itemsize > 8 else []))
def test_parameters_and_views_must_be_float32_or_float64(dtype):
    online, target = byol.build(4, 3, 2, 5)
    cast = lambda net: net._replace(params={k: v.astype(dtype) for k, v in net.params.items()})  # noqa: E731
    v1, v2 = (v.astype(dtype) for v in _views())
    name = np.dtype(dtype).name
    expected = r"have dtype {}; byol_ref computes in one of \('float32', 'float64'\)".format(name)
    with pytest.raises(TypeError, match="network.params " + expected):
        byol.forward(cast(online), v1)
    with pytest.raises(TypeError, match="online.params " + expected):
        byol.loss_and_grads(cast(online), cast(target), v1, v2)
    with pytest.raises(TypeError, match="target.params " + expected):
        byol.loss_and_grads(online, cast(target), *_views())
    with pytest.raises(TypeError, match=rf"online_pred has dtype {name}, expected one of \('float32', 'float64'\)"):
        byol.loss(v1, v2)
    with pytest.raises(TypeError, match=rf"'encoder.fc1.weight' has dtype {name} in both online_params and "
                                        r"target_params, expected one of \('float32', 'float64'\)"):
        byol.ema_update(cast(online).params, cast(target).params)
    with pytest.raises(TypeError, match=r"view1 has dtype .*, expected float64"):
        byol.loss_and_grads(online, target, v1, v2)


def test_online_and_target_params_must_share_a_dtype():
    online, target = byol.build(4, 3, 2, 5)
    target32 = target._replace(params={k: v.astype("float32") for k, v in target.params.items()})
    with pytest.raises(TypeError, match="target.params have dtype float32, but online.params have float64"):
        byol.loss_and_grads(online, target32, *_views())


def test_ema_update_argument_types(nets):
    online, target = nets
    for bad in ("0.9", True, None):
        with pytest.raises(TypeError, match=f"momentum must be a real number, got {bad!r}"):
            byol.ema_update(online.params, target.params, bad)
    with pytest.raises(TypeError, match=r"online_params must be a dict name -> array \(pass online.params, not the "
                                        r"Network\), got Network"):
        byol.ema_update(online, target)
    with pytest.raises(TypeError, match=r"target_params must be a dict name -> array \(pass target.params"):
        byol.ema_update(online.params, target)
    ints = {k: v.astype("int64") for k, v in target.params.items()}
    online_ints = {k: v.astype("int64") for k, v in online.params.items()}
    for inplace in (True, False):
        with pytest.raises(TypeError, match="'encoder.fc1.weight' has dtype int64 in both online_params and "
                                            "target_params, expected one of"):
            byol.ema_update(online_ints, ints, inplace=inplace)
        with pytest.raises(TypeError, match="dtype mismatch for 'encoder.fc1.weight': online float64, target int64"):
            byol.ema_update(online.params, ints, inplace=inplace)
    lists = {k: v.tolist() for k, v in target.params.items()}
    with pytest.raises(TypeError, match=r"target_params\['encoder.fc1.weight'\] must be a NumPy or CuPy array, "
                                        "got list"):
        byol.ema_update(online.params, lists)
    new = byol.ema_update(online.params, target.params, np.float64(0.5))  # a NumPy scalar is a number
    np.testing.assert_array_equal(new["encoder.fc1.weight"], byol.ema_update(online.params, target.params, 0.5)[
        "encoder.fc1.weight"])


def test_seeds_are_ints_or_none():
    with pytest.raises(ValueError, match="seed must be an int >= 0 or None, got -1"):
        byol.build(4, 3, 2, 5, seed=-1)
    for bad in (1.5, "a", True):
        with pytest.raises(TypeError, match=f"seed must be an int >= 0 or None, got {bad!r}"):
            byol.build(4, 3, 2, 5, seed=bad)
    with pytest.raises(ValueError, match="seed must be an int >= 0 or None, got -2"):
        byol.build_online(4, 3, 2, 5, seed=-2)
    with pytest.raises(ValueError, match="seed must be an int >= 0 or None, got -3"):
        byol.build_target(4, 3, 2, 5, seed=-3)
    a = byol.build(4, 3, 2, 5, seed=np.int64(3))[0].params
    b = byol.build(4, 3, 2, 5, seed=3)[0].params
    assert all(np.array_equal(a[k], b[k]) for k in a)
    byol.build(4, 3, 2, 5, seed=None)
    # and wherever else a seed is taken (NumPy's own message names no argument)
    from byol_ref.data import synthetic
    from byol_ref.gradcheck import random_direction
    from byol_ref.presets import get_preset
    from byol_ref.trace import make_inputs

    for call, none in ((lambda seed: byol.get_backend("numpy", seed=seed), " or None"),
                       (lambda seed: synthetic(seed=seed), ""),
                       (lambda seed: random_direction({"w": np.ones(2)}, seed=seed), ""),
                       (lambda seed: make_inputs(get_preset("deepmind"), encoder_dim=4, hidden_size=3, projection_dim=2,
                                                 predictor_dim=5, seed=seed), " or None")):
        with pytest.raises(ValueError, match=f"seed must be an int >= 0{none}, got -1"):
            call(-1)
        with pytest.raises(TypeError, match=rf"seed must be an int >= 0{none}, got 1.5 \(float\)"):
            call(1.5)


def test_numpy_integers_are_sizes_and_are_stored_as_ints():
    """A size read off an array's shape arithmetic is often a NumPy integer: taken, and stored as an
    int, so that configs stay JSON (checkpoints, config.json) and equal to those built from ints."""
    import json

    from byol_ref.train import TrainConfig

    online, _ = byol.build(np.int64(4), np.int32(3), 2, 5)
    assert online.config == byol.build(4, 3, 2, 5)[0].config
    assert type(online.config.encoder_dim) is int and json.dumps(online.config.to_dict())
    assert byol.output_size(np.int64(3)) == 3
    tcfg = TrainConfig(epochs=np.int64(3), batch_size=np.int16(8), seed=np.uint8(2))
    assert (type(tcfg.epochs), type(tcfg.batch_size), type(tcfg.seed)) == (int, int, int)
    for bad in (True, 4.0, np.float64(4)):
        with pytest.raises(TypeError, match="encoder_dim must be an int >= 1"):
            byol.build(bad, 3, 2, 5)


def test_a_numpy_scalar_out_of_range_is_shown_as_its_number():
    """A setting read off an array (a sweep's np.linspace, say) was shown in NumPy 2's repr: "lr must be in
    [0, inf), got np.float64(-1.0)"."""
    from byol_ref.train import TrainConfig

    for kw, said in ((dict(lr=np.float64(-1)), "lr must be in [0, inf), got -1.0"),
                     (dict(tau_base=np.float32(2)), "tau_base must be in [0, 1], got 2.0"),
                     (dict(lr=np.float64("inf")), "lr must be finite, got inf"),
                     (dict(optimizer=np.str_("rmsprop")), "optimizer must be one of ('lars', 'sgd', 'adam', 'adamw'), "
                                                          "got 'rmsprop'")):
        with pytest.raises(ValueError, match=f"^{re.escape(said)}$"):
            TrainConfig(**kw)
    with pytest.raises(ValueError, match=r"^bn_eps must be in \(0, inf\), got -1\.0$"):
        byol.Config(8, bn_eps=np.float64(-1))


def test_missing_buffers_are_named(nets):
    online, target = nets
    v1, v2 = _views()
    key = "encoder.norm1.running_mean"
    drop = lambda net: net._replace(buffers={k: v for k, v in net.buffers.items() if k != key})  # noqa: E731
    shown = r"buffers is missing \['encoder.norm1.running_mean'\]: every batch-norm layer needs its running_mean"
    with pytest.raises(ValueError, match="online." + shown):
        byol.loss_and_grads(drop(online), target, v1, v2)
    with pytest.raises(ValueError, match="target." + shown):
        byol.loss_and_grads(online, drop(target), v1, v2)
    with pytest.raises(ValueError, match="network." + shown):
        byol.forward(drop(online), v1)
    with pytest.raises(TypeError, match="online.buffers must be a dict name -> array, got NoneType"):
        byol.loss_and_grads(online._replace(buffers=None), target, v1, v2)
    # a buffer of the wrong shape, or not an array, is named too (it would fail in a broadcast)
    width = online.buffers[key].shape[0]
    bad = online._replace(buffers={**online.buffers, key: np.zeros(width + 1)})
    with pytest.raises(ValueError, match=rf"online.buffers\['{key}'\] has shape \({width + 1},\), expected "
                                         rf"\({width},\)"):
        byol.loss_and_grads(bad, target, v1, v2)
    with pytest.raises(ValueError, match=rf"network.buffers\['{key}'\] has shape None, expected"):
        byol.forward(online._replace(buffers={**online.buffers, key: [0.0] * width}), v1)
    w = "encoder.fc1.weight"
    with pytest.raises(TypeError, match=rf"online.params\['{w}'\] must be a NumPy or CuPy array, got list"):
        byol.loss_and_grads(online._replace(params={**online.params, w: online.params[w].tolist()}), target, v1, v2)
    # running statistics in another dtype than the params (float32 in a float64 run would round it and
    # come back float64), and a count that is no integer, are named
    f32 = online._replace(buffers={**online.buffers, key: online.buffers[key].astype("float32")})
    with pytest.raises(TypeError, match=rf"online.buffers\['{key}'\] has dtype float32, expected float64 \(the "
                                        r"params' dtype\)"):
        byol.loss_and_grads(f32, target, v1, v2)
    with pytest.raises(TypeError, match=rf"network.buffers\['{key}'\] has dtype float32, expected float64"):
        byol.forward(f32, v1, train=True)
    count = "encoder.norm1.count"
    with pytest.raises(TypeError, match=rf"target.buffers\['{count}'\] has dtype float64, expected an integer "
                                        "count"):
        byol.loss_and_grads(online, target._replace(buffers={**target.buffers, count: np.array(1.5)}), v1, v2)
    o32, t32 = byol.build(4, 3, 2, 5, dtype="float32")  # float32 throughout is one dtype
    byol.loss_and_grads(o32, t32, *(v.astype("float32") for v in (v1, v2)))
    with pytest.raises(TypeError, match=rf"online.buffers\['{key}'\] has dtype float64, expected float32"):
        byol.loss_and_grads(o32._replace(buffers=online.buffers), t32, *(v.astype("float32") for v in (v1, v2)))
    # no batch norm, no buffers needed
    ln_online, ln_target = byol.build(4, 3, 2, 5, norm="layer")
    assert ln_online.buffers == {}
    byol.loss_and_grads(ln_online, ln_target, v1, v2)


def test_a_network_is_checked_before_its_config_is_read(nets):
    online, _ = nets
    v1, _ = _views()
    for call in (lambda bad: byol.forward(bad, v1), lambda bad: byol.data_dependent_init(bad, v1)):
        with pytest.raises(TypeError, match="network must be a byol_ref Network .* got dict"):
            call(online.params)
        with pytest.raises(TypeError, match="network.config must be a byol_ref Config, got NoneType"):
            call(online._replace(config=None))
    affine = byol.build(4, 3, 2, 5, norm="affine")[0]
    for eps, err in ((True, TypeError), ("1e-5", TypeError), (0.0, ValueError)):
        with pytest.raises(err, match=r"eps must be"):
            byol.data_dependent_init(affine, v1, eps=eps)


def test_record_must_be_callable(nets):
    for bad in (5, "trace"):
        with pytest.raises(TypeError, match=f"record must be None or a callable record\\(key, array\\), got {bad!r}"):
            byol.loss_and_grads(*nets, *_views(), record=bad)
    with pytest.raises(TypeError, match=r"record must take two arguments, record\(key, array\), got .* with "
                                        r"signature \(a\)"):
        byol.loss_and_grads(*nets, *_views(), record=lambda a: None)
    seen = []
    byol.loss_and_grads(*nets, *_views(), record=lambda key, a: seen.append(key))
    assert "loss.total" in seen
    byol.loss_and_grads(*nets, *_views(), record=lambda *args, **kw: None)


def test_configs_and_a_target_copy_are_checked():
    from byol_ref.model import Config

    for bad in ({"encoder_dim": 4}, None):
        with pytest.raises(TypeError, match=r"config must be a byol_ref Config \(Config\(...\) or "
                                            rf"Config.from_dict\(d\)\), got {type(bad).__name__}"):
            byol.build_from_config(bad)
    with pytest.raises(TypeError, match="a Config is made from a dict of its fields, got NoneType"):
        Config.from_dict(None)
    online32, _ = byol.build(4, 3, 2, 5, dtype="float32")
    with pytest.raises(ValueError, match="dtype='float64', but online's params are float32: the target copies them"):
        byol.build_target(4, online=online32, dtype="float64")
    for dtype in (None, "float32"):  # online's dtype, said or not
        assert byol.build_target(4, online=online32, dtype=dtype).params["encoder.fc1.weight"].dtype == np.float32
    bare = byol.build_target(4, online=online32._replace(buffers={}))  # fresh running statistics, in its dtype
    assert {v.dtype for k, v in bare.buffers.items() if not k.endswith(".count")} == {np.dtype(np.float32)}
    assert byol.build_target(4, 3, 2, 5).params["encoder.fc1.weight"].dtype == np.float64  # (the default)
    # With online given the encoder width is online's: it may be left out, but not contradicted.
    assert byol.build_target(online=online32).config == online32.config
    with pytest.raises(ValueError, match=r"^encoder_dim=5, but online takes 4 input features: the target copies it"):
        byol.build_target(5, online=online32)
    with pytest.raises(TypeError, match=r"^build_target needs encoder_dim \(the number of input features\), or "
                                        r"online=\.\.\. to copy$"):
        byol.build_target()


def test_check_real_seed_and_dtype_tuple_helpers():
    from byol_ref.checks import check_array, check_real, check_seed

    assert check_real(1, "x") == 1.0 and check_real(np.float32(0.5), "x", 0, 1) == 0.5
    for bad in ("0.5", True, None, np.ones(1)):
        with pytest.raises(TypeError, match="x must be a real number, got"):
            check_real(bad, "x")
    with pytest.raises(ValueError, match=r"x must be in \(0, 1\], got 0"):
        check_real(0, "x", 0, 1, lo_open=True)

    assert check_seed(0) == 0 and check_seed(np.int64(7), "s") == 7 and check_seed(None, allow_none=True) is None
    with pytest.raises(TypeError, match="seed must be an int >= 0, got None"):
        check_seed(None)
    with pytest.raises(TypeError, match=r"s must be an int >= 0 or None, got 2.0 \(float\)"):
        check_seed(2.0, "s", allow_none=True)
    with pytest.raises(TypeError, match="seed must be an int >= 0, got False"):
        check_seed(False)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        check_seed(-1)

    x = np.zeros((2, 3), dtype="float32")
    assert check_array(x, "x", dtype=("float32", "float64")) is x
    with pytest.raises(TypeError, match=r"x has dtype float16, expected one of \('float32', 'float64'\)"):
        check_array(x.astype("float16"), "x", dtype=("float32", "float64"))


def test_read_only_is_said_of_numpy_arrays_that_may_not_be_written_only():
    """CuPy's arrays have ``flags`` but no ``writeable`` (they are always writable), a list has no flags at
    all: neither is read-only. Found by scripts/mutation_sweep.py: the default of the lookup read as
    "read-only" passed every test, and then an in-place op on a CuPy array would have been refused."""
    from byol_ref.checks import read_only

    class CupyLikeFlags:
        c_contiguous, f_contiguous, owndata = True, True, True

    class CupyLike:
        flags = CupyLikeFlags()

    frozen = np.zeros(2)
    frozen.flags.writeable = False
    assert read_only(frozen) and not read_only(np.zeros(2))
    assert not read_only(CupyLike()) and not read_only([1.0]) and not read_only(None)


def test_odd_array_refuses_what_byol_ref_computes_on_by_default():
    """``host_copy`` is False unless the caller says it only copies to the host: a numpy.matrix and a masked
    array are refused by default, taken with ``host_copy``."""
    import warnings

    from byol_ref.checks import odd_array

    with warnings.catch_warnings():  # (NumPy's PendingDeprecationWarning for np.matrix itself)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.matrix([[1.0]])
    assert odd_array(matrix, "x").startswith("x is a numpy.matrix")
    assert odd_array(np.ma.masked_array([1.0]), "x") == "x is a masked array (nothing masked); pass np.asarray(x)"
    assert odd_array(matrix, "x", host_copy=True) is None
    assert odd_array(np.ma.masked_array([1.0]), "x", host_copy=True) is None


def test_check_writable_tells_a_read_only_file_system_from_a_missing_right(tmp_path, monkeypatch):
    """The two reasons a folder cannot be written in, from statvfs's ST_RDONLY flag (1 where the os module
    does not name it). Found by scripts/mutation_sweep.py: the flag's test could go either way with no test
    failing where the tests run as root (no folder is unwritable to root) or on a writable disk."""
    import os
    from types import SimpleNamespace

    from byol_ref.checks import check_writable
    from user_standin import as_a_user

    check_writable(tmp_path, "the folder T", "choose another")  # (writable: nothing said)
    as_a_user(monkeypatch, unwritable=[tmp_path])
    for flags, why in ((0, "this user may not write in it"), (1, "it is on a file system mounted read-only"),
                       (1 | 1024, "it is on a file system mounted read-only")):
        monkeypatch.setattr(os, "statvfs", lambda folder, flags=flags: SimpleNamespace(f_flag=flags))
        with pytest.raises(PermissionError, match=f"^the folder T cannot be written: {why}; choose another$"):
            check_writable(tmp_path, "the folder T", "choose another")
    monkeypatch.delattr(os, "ST_RDONLY", raising=False)
    with pytest.raises(PermissionError, match="mounted read-only"):  # (statvfs flag 1 still)
        check_writable(tmp_path, "the folder T", "choose another")


def test_make_folder_makes_a_new_one_takes_one_there_and_names_a_file_in_the_way(tmp_path):
    from byol_ref.checks import make_folder

    make_folder(tmp_path / "a" / "b", "--out")
    make_folder(tmp_path / "a" / "b", "--out")  # there already: taken as it is
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("mine")
    for folder, blocker in ((tmp_path / "f", tmp_path / "f"), (tmp_path / "f" / "c", tmp_path / "f")):
        with pytest.raises(FileExistsError, match=f"^cannot make the folder {re.escape(str(folder))}: "
                                                  f"{re.escape(str(blocker))} is a file, not a folder; "
                                                  "choose another --out$"):
            make_folder(folder, "--out")
    assert (tmp_path / "f").read_text() == "mine"


def test_the_os_limits_on_names_and_paths_and_what_a_name_too_long_is_told_as(tmp_path, monkeypatch):
    """``_limit`` takes pathconf's answer where it is a limit (> 0) and the default where it gives -1 (none
    set) or fails; ``why_refused`` tells a path over PATH_MAX (which counts the closing NUL) from a name
    over NAME_MAX at their edges. Found by scripts/mutation_sweep.py: each bound moved by one, the
    defaults 255 and 4096 among them, passed every test."""
    import errno
    import os

    from byol_ref.checks import _limit, why_refused

    for answer, got in ((-1, 77), (0, 77), (1, 1), (300, 300)):
        monkeypatch.setattr(os, "pathconf", lambda folder, name, answer=answer: answer)
        assert _limit(str(tmp_path), "PC_NAME_MAX", 77) == got

    def fails(folder, name):
        raise OSError(errno.EINVAL, "Invalid argument")

    def too_long(longest: int, total: int):
        """The reason for an ENAMETOOLONG on a path of ``total`` bytes whose longest name has ``longest``."""
        path = str(tmp_path / ("n" * longest))
        while len(os.fsencode(path)) < total:
            room = total - len(os.fsencode(path))
            path += "m" if room == 1 else "/" + "m" * min(room - 1, 200)  # (a name of 201 at most)
        assert len(os.fsencode(path)) == total
        return why_refused(OSError(errno.ENAMETOOLONG, "File name too long", path))

    def name_msg(longest):
        return (f"a name in the path is longer than the file system takes (the longest is {longest} bytes; most "
                "take 255)")

    for pathconf in (lambda folder, name: {"PC_NAME_MAX": 255, "PC_PATH_MAX": 4096}[name], fails):
        monkeypatch.setattr(os, "pathconf", pathconf)
        # each at its limit: the path is the one over (PATH_MAX 4096 counts the closing NUL)
        assert too_long(255, 4096) == "the path is longer than the system takes (4096 bytes; at most 4095)"
        assert too_long(255, 4095) == name_msg(255)  # (neither over: the OS said a name, then)
        assert too_long(256, 4096) == name_msg(256)  # (both over: the name is the one to shorten)
        assert too_long(256, 600) == name_msg(256)


def test_numpy_scalars_are_taken_wherever_python_ones_are():
    """NumPy's bools, integers and 0-d arrays come out of array code everywhere: where a bool, an int
    or a real number is asked for, they are taken (and stored as Python values, which JSON writes)."""
    import json
    from dataclasses import asdict

    from byol_ref import augment, data, diff, layers, trace
    from byol_ref.presets import get_preset
    from byol_ref.train import TrainConfig

    rng = np.random.default_rng(0)
    list(data.batches(10, 4, rng, drop_last=np.False_))
    augment.augment_images(rng.random((4, 64)), rng, augment.ImageAug(), (8, 8), check_finite=np.True_)
    x = rng.standard_normal((4, 3))
    run = layers.RunningStats(np.zeros(3), np.ones(3), np.array(0))
    layers.batch_norm_forward(x, np.ones(3), np.zeros(3), run, train=np.True_)
    rep = diff.diff_traces({"a": np.ones(2)}, {"a": np.zeros(2)}, subset=np.False_)
    assert "a" in diff.format_report(rep, max_rows=np.int64(5))
    inputs = trace.make_inputs("deepmind", encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                               batch=np.int64(4), steps=np.int64(2))  # (a preset name, as trace_inputs takes)
    tr = trace.trace_inputs(inputs, get_preset("deepmind"), steps=np.int64(1), start_step=np.int64(1),
                            total_steps=np.int64(4))
    json.dumps(tr.meta)
    online, target, views, _ = trace.networks_from_inputs(inputs, "deepmind")
    trace.trace_networks(online, target, [np.stack(views[0])], preset=get_preset("deepmind"))  # a (2, N, D) pair
    online, target = byol.build(4, 3, 2, 5)
    byol.ema_update(online.params, target.params, np.array(0.5))  # a 0-d array is its number
    assert json.dumps(asdict(TrainConfig(warmup_offset=np.int64(1))))
    # and what is no such value is still named
    with pytest.raises(TypeError, match="drop_last must be True or False, got 'no'"):
        list(data.batches(10, 4, rng, drop_last="no"))
    with pytest.raises(ValueError, match=r"layout must be one of .* got \['paper'\]"):
        byol.build(4, layout=["paper"])  # (an unhashable choice was Python's "unhashable type")
    with pytest.raises(TypeError, match="linear_forward: x must be a float32 or float64 array, got float16"):
        layers.linear_forward(x.astype(np.float16), np.ones((3, 2), np.float16))


def test_a_file_argument_that_is_no_path_is_named(tmp_path):
    from byol_ref import checkpoint, diff, interchange, trace

    for call, name in ((lambda: checkpoint.load(None), "path"), (lambda: trace.load_trace(3), "path"),
                       (lambda: interchange.load_arrays(None), "path"),
                       (lambda: interchange.read_safetensors(b"w"), "path"),
                       (lambda: interchange.save_arrays(None, {}), "path"),
                       (lambda: interchange.load_networks(None), "path"),
                       (lambda: diff.diff_files(tmp_path / "a.npz", None), "path_b"),
                       (lambda: checkpoint.atomic_write_text(None, "x"), "path")):
        with pytest.raises(TypeError, match=f"^{name} must be a str or os.PathLike file path, got "):
            call()


def test_what_the_mutation_audit_found_no_test_for():
    """Each assertion fails on a one-line change of a check that no test caught."""
    import inspect

    from byol_ref import layers
    from byol_ref.checks import check_bool, check_image_shape, check_real
    from byol_ref.model import Config

    assert check_bool(np.True_, "flag") is True  # a Python bool back, not NumPy's
    assert check_real(np.array(3), "x") == 3 and check_real(np.array(0.5), "x") == 0.5  # 0-d int and float arrays
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(C, H, W\)"):
        check_image_shape((1, 1, 2, 5))
    with pytest.raises(ValueError, match="bn_shards must be an int >= 1, got 0"):
        Config(encoder_dim=4, bn_shards=0)
    x = np.ones((4, 3))
    for w in (np.ones(3), np.ones((3, 2, 2))):  # a weight of another rank than 2
        with pytest.raises(ValueError, match=r"linear_forward: w must be a \(3, H\) array for x of shape \(4, 3\)"):
            layers.linear_forward(x, w)
    run = layers.RunningStats(np.zeros(3), np.ones(3, np.float32), np.array(0))
    with pytest.raises(TypeError, match="batch_norm_forward: running_var has dtype float32, but x has float64"):
        layers.batch_norm_forward(x, np.ones(3), np.zeros(3), run, train=True)

    class NoSignature:  # a callable whose signature cannot be read (some builtins): taken as it is
        def __init__(self):
            self.keys = []

        def __call__(self, key, array):
            self.keys.append(key)

        @property
        def __signature__(self):
            raise ValueError("no signature found")

    record = NoSignature()
    with pytest.raises(ValueError):
        inspect.signature(record)
    byol.loss_and_grads(*byol.build(4, 3, 2, 5), *_views(), record=record)
    assert "loss.total" in record.keys


def test_interval_never_puts_an_infinite_end_inside():
    from byol_ref.checks import check_float_range, interval

    assert interval() == "(-inf, inf)"
    assert interval(None, 1) == "(-inf, 1]"
    assert interval(-math.inf, 1, hi_open=True) == "(-inf, 1)"
    assert interval(0, math.inf) == "[0, inf)"
    with pytest.raises(ValueError, match=r"x must be in \(-inf, 0\], got 1"):
        check_float_range(1, "x", hi=0)


@pytest.mark.parametrize("norm", ["layer", "affine"])
def test_a_batch_of_one_is_fine_without_batch_norm(norm):
    online, target = byol.build(4, 3, 2, 6, norm=norm)
    v1, v2 = np.random.default_rng(0).standard_normal((2, 1, 4))
    res = byol.loss_and_grads(online, target, v1, v2)
    assert np.isfinite(float(res.loss))


# ---------------------------------------------------------------------------------------
# A boolean step count (a mutation audit found this unpinned).
# ---------------------------------------------------------------------------------------


def test_a_boolean_step_count_is_refused():
    """True is no step count (a cast would read it as 1)."""
    from byol_ref.checks import check_count

    with pytest.raises(TypeError, match="must hold whole numbers \\(a step count\\), got dtype bool"):
        check_count(np.array([True, False]), "count")
    assert check_count(np.array([3], dtype=np.int32), "count").dtype == np.int64


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_every_file_reader_names_a_link_to_nothing_and_a_pipe(tmp_path):
    """A link whose file is gone (a disk not mounted) does not exist(), and a pipe is no is_file():
    each reader said "does not exist" of a path that stands there (convert given such a weights file
    did). Every reader names what stands there (checks.odd_entry), with a FileNotFoundError."""
    import os

    from byol_ref.checkpoint import load as load_checkpoint_file
    from byol_ref.data import load_file
    from byol_ref.interchange import load_arrays, resolve_mapping
    from byol_ref.trace import load_trace

    readers = [("checkpoint not found: {p} ", load_checkpoint_file, ".npz"),
               ("trace {p} ", load_trace, ".npz"),
               ("weights file {p} ", load_arrays, ".npz"),
               ("weights file {p} ", load_arrays, ".safetensors"),
               ("mapping file {p} ", resolve_mapping, ".json"),
               ("path: '{p}' ", load_file, ".csv")]
    for i, (prefix, read, ext) in enumerate(readers):
        link, pipe = tmp_path / f"link{i}{ext}", tmp_path / f"pipe{i}{ext}"
        link.symlink_to(tmp_path / "gone" / f"x{ext}")
        os.mkfifo(pipe)
        for p, says in ((link, f"is a link to {tmp_path / 'gone' / f'x{ext}'}, which leads to no file (a disk not "
                                "mounted, a file moved?)"),
                        (pipe, "is not a regular file (a pipe, device or socket)")):
            with pytest.raises(FileNotFoundError) as info:
                read(p)
            assert str(info.value).startswith(prefix.format(p=p) + says), (read.__name__, str(info.value))
    folder = tmp_path / "w.safetensors"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"^weights file {folder} is a directory; expected a .safetensors file$"):
        load_arrays(folder)  # (it was said not to exist)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_odd_entry_names_only_what_stands_there_but_is_no_file_nor_folder(tmp_path):
    """checks.odd_entry: None for a file, a folder or nothing (each reader names those in its own words),
    also through a link; a link whose end is gone, or a chain of them, is a link to nothing; a pipe,
    also through a link, is no regular file. (A mutation audit found none of this pinned beyond the readers'
    plain link and pipe.)"""
    import os

    from byol_ref.checks import odd_entry

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for name, to in (("to_file", "file"), ("to_folder", "folder"), ("to_pipe", "pipe"), ("to_gone", "gone"),
                     ("chain", "to_gone")):
        (tmp_path / name).symlink_to(tmp_path / to)
    for name in ("file", "folder", "gone", "to_file", "to_folder"):
        assert odd_entry(tmp_path / name) is None, name
        assert odd_entry(str(tmp_path / name)) is None, name
    for name in ("pipe", "to_pipe"):
        assert odd_entry(tmp_path / name) == "is not a regular file (a pipe, device or socket)", name
    for name, to in (("to_gone", "gone"), ("chain", "to_gone")):
        assert odd_entry(tmp_path / name) == (f"is a link to {tmp_path / to}, which leads to no file (a disk not "
                                              "mounted, a file moved?)"), name
    # a loop: no file moved nor disk unmounted, but a link that leads back round (ELOOP)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "ping").symlink_to(tmp_path / "pong")
    (tmp_path / "pong").symlink_to(tmp_path / "ping")
    for name, to in (("loop", "loop"), ("ping", "pong")):
        assert odd_entry(tmp_path / name) == (f"is a link to {tmp_path / to}, which leads round a loop of links, "
                                              "to no file"), name


def test_an_empty_batch_without_batch_statistics_is_not_blamed_on_batch_norm():
    """With norm="layer" (or group, none) or concatenated views a view needs 1 row; the empty one was refused
    as batch norm taking its statistics over the rows, which a layer-norm model has none of."""
    for kw in (dict(norm="layer"), dict(norm="batch", views="concat")):
        online, target = byol.build(4, 3, 2, 5, **kw)
        empty = np.zeros((0, 4))
        with pytest.raises(ValueError, match=r"^view1 must have at least 1 row, got shape \(0, 4\)$"):
            byol.loss_and_grads(online, target, empty, empty)
    online, target = byol.build(4, 3, 2, 5)
    one = np.ones((1, 4))
    with pytest.raises(ValueError, match=r"^view1 must have at least 2 rows, got shape \(1, 4\): batch norm takes its "
                                         r"statistics over the rows of a batch$"):
        byol.loss_and_grads(online, target, one, one)


# --------------------------------------------------------------------------- found by a bad-input fuzz of the API


def test_relu_forward_and_the_backwards_refuse_what_they_cannot_use():
    """relu_forward took int, bool, complex and float16 arrays and lists without a word; a backward given
    anything but its forward's cache failed as an AttributeError or an unpacking error naming nothing."""
    from byol_ref import layers, losses

    for bad in (np.ones((2, 3), dtype="int64"), np.ones((2, 3), dtype="complex128"), np.ones((2, 3), "float16")):
        with pytest.raises(TypeError, match="relu_forward: x must be a float32 or float64 array"):
            layers.relu_forward(bad)
    with pytest.raises(TypeError, match="relu_forward: x must be a float32 or float64 array, got list"):
        layers.relu_forward([1.0, -1.0])
    x, g = np.ones((2, 3)), np.ones(3)
    for op, cls in ((layers.linear_backward, "LinearCache"), (layers.relu_backward, "ReluCache"),
                    (layers.batch_norm_backward, "NormCache"), (layers.layer_norm_backward, "NormCache"),
                    (layers.group_norm_backward, "NormCache"), (layers.affine_backward, "AffineCache"),
                    (layers.simplex_backward, "SimplexCache"), (layers.weight_standardize_backward, "WeightStdCache"),
                    (losses.l2_normalize_backward, "NormalizeCache"), (losses.regression_loss_dn, "RegressionCache"),
                    (losses.regression_loss_backward, "RegressionCache")):
        for bad in ("cache", (x, g), {}):
            with pytest.raises(TypeError, match=rf"{op.__name__}: cache must be the {cls} that \w+ returned, got "
                                                f"{type(bad).__name__}"):
                op(x, bad)


def test_evaluate_names_x_test_w_and_b():
    """knn_accuracy's width mismatch was told of x_query (knn_predict's name); logreg_loss_and_grad cast w and b
    without a check: a str failed in NumPy's words, complex lost its imaginary part, NaN was blamed on the logits."""
    from byol_ref.evaluate import knn_accuracy, logreg_loss_and_grad

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), np.arange(8) % 2
    with pytest.raises(ValueError, match="x_train has 3 features but x_test has 4"):
        knn_accuracy(x, y, rng.standard_normal((4, 4)), y[:4], k=3)
    w, b = np.zeros((3, 2)), np.zeros(2)
    for bad_w, err, shown in (("abc", TypeError, "w must be a real numeric array"),
                              (w.astype(complex), TypeError, "w must be a real numeric array, got dtype complex"),
                              (np.full((3, 2), np.nan), ValueError, "w must be finite, got 6 NaN"),
                              (np.zeros(6), ValueError, r"w must be 2-D \(D, C\), got shape \(6,\)")):
        with pytest.raises(err, match=shown):
            logreg_loss_and_grad(bad_w, b, x, y, 0.1)
    with pytest.raises(ValueError, match=r"b must be finite, got 1 NaN/inf value\(s\) in shape \(2,\)"):
        logreg_loss_and_grad(w, np.array([0.0, np.inf]), x, y, 0.1)
    with pytest.raises(TypeError, match="b must be a real numeric array"):
        logreg_loss_and_grad(w, {}, x, y, 0.1)


def test_interchange_writers_and_strict_check_their_arguments(tmp_path, nets):
    """save_arrays took an arrays that was no dict to an AttributeError ('NoneType' object has no attribute
    'items'), and an empty path to an OSError from renaming its temporary onto the working folder; strict='no'
    was read as true by load_networks, save_networks, to_layout and from_layout."""
    from byol_ref import interchange

    with pytest.raises(TypeError, match="arrays must be a dict name -> array, got NoneType"):
        interchange.save_arrays(tmp_path / "a.npz", None)
    with pytest.raises(ValueError, match=r"^path is empty \(''\); expected a file path$"):
        interchange.save_arrays("", {"a": np.ones(2)})
    path = interchange.save_networks(tmp_path / "n.npz", *nets)
    for bad in ("no", 1, None):
        with pytest.raises(TypeError, match="strict must be True or False"):
            interchange.load_networks(path, strict=bad)
        with pytest.raises(TypeError, match="strict must be True or False"):
            interchange.save_networks(tmp_path / "m.npz", *nets, strict=bad)
        with pytest.raises(TypeError, match="strict must be True or False"):
            interchange.to_layout({}, {}, layout="torch", strict=bad)
        with pytest.raises(TypeError, match="strict must be True or False"):
            interchange.from_layout({}, {}, layout="torch", strict=bad)


def test_get_backend_refuses_an_unhashable_name():
    with pytest.raises(ValueError, match=r"backend name must be one of .* got \['numpy'\]"):
        byol.get_backend(["numpy"])


def test_checkpoint_save_names_an_object_array_and_meta_nested_too_deep(tmp_path):
    # Found by a bad-input fuzz of checkpoint.save: an object array (or None) was NumPy's "Object arrays
    # cannot be saved when allow_pickle=False", naming no array, and a meta nested deeper than Python's
    # JSON encoder goes a RecursionError. The file already there is kept.
    from byol_ref import checkpoint as ckpt
    path = tmp_path / "c.npz"
    path.write_bytes(b"mine")
    for value in (np.array([object()]), None):
        with pytest.raises(ValueError, match=r"arrays\['opt'\]\['a'\] is a \w+ of dtype object, which a checkpoint "
                                            r"cannot hold without pickle; expected a numeric array"):
            ckpt.save(path, {"opt": {"a": value}}, {})
    # How deep Python's JSON goes depends on its version (3.13 wrote a meta 5000 deep, which 3.11 cannot
    # read, and then a walk of its keys was the RecursionError): a fixed limit, far below every Python's.
    def nested(depth, inner=1.0):
        for level in range(depth):
            inner = {"a": inner} if level % 2 else [inner]
        return inner

    looped = {"a": [1.0]}
    looped["a"].append(looped)  # (a list that holds itself: the walk went round it for ever, growing)
    for x in (nested(101), nested(5000), nested(50_000), looped, [looped]):
        with pytest.raises(TypeError, match=r"meta must hold JSON values nested at most 100 deep, which every Python "
                                            r"reads back; \['x'\] are nested deeper \(or hold themselves\)$"):
            ckpt.save(path, {}, {"x": x, "y": nested(100)})
    assert path.read_bytes() == b"mine"
    ckpt.save(path, {}, {"x": nested(100)})
    assert ckpt.load(path)[1]["x"] == nested(100)


@pytest.mark.parametrize("meta, says", [
    ({"lr": float("nan")}, r"meta must hold JSON values \(numbers, strings, lists, dicts; finite numbers\); \['lr'\] "
                           r"do not \(Out of range float"),
    ({"views": [{"sigma": [0.1, float("inf")]}]}, r"\['views'\] do not \(Out of range float"),
    ({1: "one"}, r"whose keys are strings; it has the key 1$"),
    ({"extra": [{"a": 1, None: 2}]}, r"whose keys are strings; it has the key None$"),
    ({"extra": {"ok": {(1, 2): 3}}}, r"\[\'extra\'\] do not \(keys must be str")])
def test_checkpoint_save_refuses_a_meta_json_would_change(tmp_path, meta, says):
    """A NaN or inf in meta was written as ``NaN``, which is no JSON (Python read it back; jq and
    JavaScript do not), and a key that is not a str came back a str (``{1: ...}`` as ``{"1": ...}``):
    a checkpoint whose meta is not the one saved. Both are refused, naming the value or the key, and
    the file already there is kept; a tuple (written as a list) is still taken."""
    from byol_ref import checkpoint as ckpt
    path = tmp_path / "c.npz"
    path.write_bytes(b"mine")
    with pytest.raises(TypeError, match=says):
        ckpt.save(path, {}, meta)
    assert path.read_bytes() == b"mine"
    ckpt.save(path, {}, {"scale": (0.08, 1.0), "nested": {"k": [{"a": 1}]}})
    assert ckpt.load(path)[1]["scale"] == [0.08, 1.0]


def _matrix(a):
    import warnings

    with warnings.catch_warnings():  # (NumPy's PendingDeprecationWarning for np.matrix itself)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


@pytest.mark.parametrize("kind", ["matrix", "masked", "masked-some"])
def test_a_numpy_matrix_or_a_masked_array_is_refused_by_name_at_every_entry(kind, nets):
    """A numpy.matrix (always 2-D, * a matrix product) and a masked array (whose mask the arithmetic
    here does not keep) are NumPy arrays to a hasattr check: loss_and_grads said "shape too large to be
    a matrix" or "operands could not be broadcast together with shapes (16,6) (6,5)", the layers took a
    matrix and returned one, and the probes dropped a mask without a word, scoring the values it hid.
    Each entry that computes on them now refuses them by name and says what to pass. The probes and
    the data, which copy their inputs to a plain host array, take a matrix (or a masked array with
    nothing masked) as that copy, and refuse only masked values. An np.memmap stays an array."""
    from byol_ref import augment, data, evaluate, layers, losses, optim, train
    from byol_ref.model import Config

    online, target = nets
    rng = np.random.default_rng(0)
    x, w, y = rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), np.arange(6) % 2

    def odd(a):
        if kind == "matrix":
            return _matrix(a)
        mask = np.zeros(a.shape, bool)
        mask[0, 0] = kind == "masked-some"
        return np.ma.masked_array(a, mask=mask)

    says = {"matrix": r"is a numpy\.matrix, whose operators are not an array's .*; pass np\.asarray\({}\)$",
            "masked": r"is a masked array \(nothing masked\); pass np\.asarray\({}\)$",
            "masked-some": r"is a masked array with 1 value\(s\) masked, and byol_ref has no notion of a missing "
                           r"value: fill them \({}\.filled\(value\)\) or drop the rows that hold them$"}[kind]
    params = {k: odd(v) if v.ndim == 2 and k == "encoder.fc1.weight" else v for k, v in online.params.items()}
    ds = data.synthetic(n=64, dim=4, seed=0)
    calls = [
        ("view1", lambda: byol.loss_and_grads(online, target, odd(x), x)),
        ("x", lambda: byol.forward(online, odd(x))),
        ("online_pred", lambda: byol.loss(odd(x), x)),
        ("x", lambda: layers.linear_forward(odd(x), w)),
        ("w", lambda: layers.linear_forward(x, odd(w))),
        ("dout", lambda: layers.linear_backward(odd(x[:, :3] @ np.ones((3, 3))), layers.linear_forward(x, w)[1])),
        ("x", lambda: layers.relu_forward(odd(x))),
        ("p", lambda: losses.regression_loss_forward(odd(x), x)),
        ("x", lambda: augment.augment_vectors(odd(x), np.random.default_rng(0), augment.VectorAug())),
        ("online_params['encoder.fc1.weight']", lambda: byol.ema_update(params, target.params)),
        ("params['encoder.fc1.weight']", lambda: optim.adam_update(
            {k: np.zeros_like(v) for k, v in params.items()}, optim.adam_init(online.params), params, lr=0.1)),
    ]
    for name, call in calls:
        with pytest.raises(TypeError, match=says.format(re.escape(name))):
            call()

    def trained(a):  # (the weights one step on a trains)
        result = train.fit(ds._replace(x_train=a), Config(encoder_dim=4), train.TrainConfig(epochs=1, batch_size=32),
                           progress=False)
        return result.state.online.params["encoder.fc1.weight"]

    host_copies = [  # (each copies its input to a plain host array)
        ("dataset.x_train", trained),
        ("x_train", lambda a: evaluate.knn_accuracy(a, y, x, y, k=3)),
        ("x", lambda a: evaluate.fit_logreg(a, y, l2=0.1).w),
        ("z", lambda a: evaluate.normalized_std(a)),
        ("x_train", lambda a: data.feature_stats(a)[1]),
    ]
    for name, call in host_copies:
        if kind == "masked-some":
            with pytest.raises(TypeError, match=says.format(re.escape(name))):
                call(odd(ds.x_train if name == "dataset.x_train" else x))
        else:
            plain = ds.x_train if name == "dataset.x_train" else x
            np.testing.assert_array_equal(call(odd(plain)), call(plain))


def test_a_memory_mapped_array_is_an_array(nets, tmp_path):
    """np.load(..., mmap_mode="r") gives an np.memmap, an ndarray subclass that behaves as one: it is
    taken, read-only as it is, and gives the loss of the array it maps."""
    online, target = nets
    v1, v2 = _views(n=6)
    np.save(tmp_path / "v1.npy", v1)
    mapped = np.load(tmp_path / "v1.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert byol.loss_and_grads(online, target, mapped, v2).loss == byol.loss_and_grads(online, target, v1, v2).loss


def _foreign(kind, a):
    """A stand-in of a torch tensor or a JAX array holding ``a``: a shape and a dtype, and the class
    and module names the message reads (torch is not a test dependency)."""
    if kind == "torch":
        dtype = type("dtype", (), {"__module__": "torch", "is_floating_point": True})()  # (no .kind, no .name)
        cls = type("Tensor", (), {"__module__": "torch"})
    else:
        dtype = a.dtype  # (a JAX array's dtype is NumPy's)
        cls = type("ArrayImpl", (), {"__module__": "jaxlib.xla_extension"})
    obj = cls()
    obj.shape, obj.dtype, obj.ndim = a.shape, dtype, a.ndim
    return obj


def test_a_torch_tensor_is_refused_by_name_with_the_conversion_and_a_jax_array_computes_as_before(nets):
    """Someone checking a PyTorch BYOL against byol_ref passes a tensor by mistake: it has a shape and a
    dtype, so it passed the array checks and failed on "'torch.dtype' object has no attribute 'kind'".
    Each computing entry now names the argument, the type and the conversion. A JAX array has NumPy's
    dtypes, and byol_ref computed with it before (loss_and_grads, loss, ema_update, checked with the real
    packages where they are installed): it is not refused. The probes copy either to the host."""
    from byol_ref import layers, optim
    from byol_ref.checks import odd_array

    online, target = nets
    x = np.random.default_rng(0).normal(size=(6, 4))
    params = {**online.params, "encoder.fc1.weight": _foreign("torch", online.params["encoder.fc1.weight"])}
    calls = [
        ("view1", lambda: byol.loss_and_grads(online, target, _foreign("torch", x), x)),
        ("online_pred", lambda: byol.loss(_foreign("torch", x), x)),
        ("x", lambda: byol.forward(online, _foreign("torch", x))),
        ("x", lambda: layers.linear_forward(_foreign("torch", x), np.ones((4, 2)))),
        ("w", lambda: layers.linear_forward(x, _foreign("torch", np.ones((4, 2))))),
        ("online_params['encoder.fc1.weight']", lambda: byol.ema_update(params, target.params)),
        ("params['encoder.fc1.weight']", lambda: optim.sgd_update(
            {k: np.zeros_like(v) if k != "encoder.fc1.weight" else v for k, v in online.params.items()},
            optim.sgd_init(online.params), params, lr=0.1)),
    ]
    for name, call in calls:
        with pytest.raises(TypeError, match=rf"{re.escape(name)} must be a NumPy or CuPy array, got torch\.Tensor, "
                                            rf"whose dtype is not NumPy's; pass {re.escape(name)}\.detach\(\)\.cpu"
                                            r"\(\)\.numpy\(\)$"):
            call()
    assert odd_array(_foreign("jax", x), "x") is None
    assert odd_array(_foreign("torch", x), "x", host_copy=True) is None

def test_what_a_sweep_of_the_api_found_networks_options_and_empty_vectors_refused_by_name(nets):
    """Found by a sweep of the Python API with other libraries' arrays: params=None failed on "'NoneType'
    object has no attribute 'items'"; a uint8 batch-norm count of 255 went on as 0 (and the running mean
    to NaN); build_target(online=..., norm="layer") built a batch-norm target without a word; the loss of
    vectors of no features read 0, perfect agreement."""
    online, _ = nets
    v1, _ = _views()
    for params in (None, [1, 2]):
        with pytest.raises(TypeError, match=rf"^network.params must be a dict name -> array, got "
                                            rf"{type(params).__name__}$"):
            byol.forward(online._replace(params=params), v1)
    key = next(k for k in online.buffers if k.endswith(".count"))
    for narrow in ("uint8", "int8", "int16"):
        buffers = {**online.buffers, key: np.array(3, narrow)}
        with pytest.raises(TypeError, match=rf"network.buffers\['{re.escape(key)}'\] has dtype {narrow}, expected an "
                                            "integer count of the batches seen, of 32 bits or more"):
            byol.forward(online._replace(buffers=buffers), v1, train=True)
    wide = byol.forward(online._replace(buffers={**online.buffers, key: np.array(3, "int32")}), v1, train=True)
    assert int(wide[1][key]) == 4
    with pytest.raises(ValueError, match=r"^norm='layer', but online's config has norm='batch': the target copies "
                                         r"online's config \(leave norm out\)$"):
        byol.build_target(online=online, norm="layer")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        byol.build_target(online=online, bogus=1)
    assert byol.build_target(online=online, norm="batch").config == online.config  # (online's own: taken)
    with pytest.raises(ValueError, match=r"^online_pred and target_proj have no features \(shape \(3, 0\)\): the "
                                         "cosine of empty vectors is undefined"):
        byol.loss(np.ones((3, 0)), np.ones((3, 0)))


def test_numpy_bools_and_0_d_integers_are_the_values_they_hold_in_the_configs():
    """A 0-d array was taken for seed, eps and lr but refused for dims, k and epochs; a NumPy bool was
    taken for train= but refused for the Config and TrainConfig switches. Each is kept as the Python
    value (the configs are written as JSON)."""
    import json

    from byol_ref.train import TrainConfig

    cfg = byol.Config(encoder_dim=np.array(6), projection_dim=np.int32(4), predictor_dim=4, hidden_size=8,
                      use_predictor=np.bool_(True), encoder_bias=np.bool_(False))
    assert cfg == byol.Config(encoder_dim=6, projection_dim=4, predictor_dim=4, hidden_size=8, encoder_bias=False)
    assert type(cfg.encoder_dim) is int and type(cfg.use_predictor) is bool and type(cfg.encoder_bias) is bool
    tcfg = TrainConfig(epochs=np.array(3), nesterov=np.bool_(True))
    assert (tcfg.epochs, tcfg.nesterov) == (3, True) and type(tcfg.nesterov) is bool
    json.dumps([cfg.to_dict(), tcfg.__dict__])
    assert byol.output_size(np.array(16)) == 16
    for bad in (np.array(2.5), np.array([3]), np.array(True)):
        with pytest.raises(TypeError, match=r"^epochs must be an int >= 1, got"):
            TrainConfig(epochs=bad)


def test_make_folder_names_an_empty_path_a_name_too_long_and_what_else_the_os_refused(tmp_path, monkeypatch):
    """make_folder, what plot_run's out_dir and the scripts' --workdir and --out go through. A folder
    the OS will not make is named with the OS's reason, said in words where it is a refusal; an empty
    path (``--workdir "$DIR"``, the variable unset) said "cannot make the folder : No such file or
    directory", the folder shown as nothing at all."""
    import errno
    import os

    from byol_ref.checks import in_the_way, make_folder

    with pytest.raises(OSError, match=r"^cannot make the folder '': an empty path names no folder; choose another "
                                      r"--workdir$"):
        make_folder("", "--workdir")
    assert in_the_way("", folder=True) is None  # (nothing stands in the way of nothing: its callers refuse it)
    long = tmp_path / ("n" * 300) / "run"  # (the OS's own refusal, which root gets too)
    with pytest.raises(OSError, match=rf"^cannot make the folder {re.escape(str(long))}: a name in the path is longer "
                                      r"than the file system takes \(the longest is 300 bytes; most take 255\); "
                                      r"choose another out_dir$"):
        make_folder(long, "out_dir")
    full = tmp_path / "full"

    def no_room(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(os, "makedirs", no_room)  # (no refusal: the OS's own words, without its "[Errno 28]")
    with pytest.raises(OSError, match=rf"^cannot make the folder {re.escape(str(full))}: "
                                      rf"{re.escape(os.strerror(errno.ENOSPC))}; choose another --out$"):
        make_folder(full, "--out")


def test_why_refused_names_a_folder_this_user_may_not_read_or_write_in_and_a_system_without_limits(
        tmp_path, monkeypatch):
    """The OS refusing a folder itself (opened to be read or locked, as RunLock does; or changed) is
    told by which right is missing there; and a name too long is told where the OS gives no limits
    (os.pathconf refusing the question, unknown to the system, or absent, as on Windows): 255 bytes a
    name and 4096 a path, those of most systems."""
    import errno
    import os

    from user_standin import as_a_user

    from byol_ref.checks import why_refused

    folder = tmp_path / "run"
    folder.mkdir()
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    with monkeypatch.context() as m:
        as_a_user(m, unreadable=[folder])
        assert why_refused(denied) == "this user may not read this folder"
    with monkeypatch.context() as m:
        as_a_user(m, unwritable=[folder])
        assert why_refused(denied) == "this user may not write in this folder"
    name = tmp_path / ("n" * 300)
    path = tmp_path / "/".join(["d" * 200] * 21)  # (names of 200 bytes, a path over 4096)

    def too_long(p):
        return OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(p))

    for refusal in (OSError(errno.EINVAL, "Invalid argument"), ValueError("unrecognized configuration name")):
        def pathconf(folder, what, refusal=refusal):
            raise refusal

        monkeypatch.setattr(os, "pathconf", pathconf)
        assert why_refused(too_long(name)) == ("a name in the path is longer than the file system takes (the longest "
                                               "is 300 bytes; most take 255)")
        given = len(os.fsencode(str(path)))
        assert why_refused(too_long(path)) == (f"the path is longer than the system takes ({given} bytes; at most "
                                               "4095)")
    monkeypatch.delattr(os, "pathconf")
    assert why_refused(too_long(path)).startswith("the path is longer than the system takes (")


def test_a_json_integer_beyond_a_floats_range_is_refused_naming_the_file(tmp_path, capsys):
    """A hand-edited checkpoint meta or config.json holding an integer no float holds ("lr": 1 and 400
    zeros): the checkpoint's readers, and train --resume reading config.json, failed on Python's
    OverflowError ("int too large to convert to float"), a traceback. Each JSON byol-ref reads
    (checkpoint.parse_json) refuses it, naming the file and the integer, shortened."""
    import json
    import zipfile

    from byol_ref import checkpoint as ckpt
    from byol_ref.cli import main
    from byol_ref.train import load_checkpoint

    out = tmp_path / "run"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(24, 4)))
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--batch-size", "4", "--hidden-size",
                 "2", "--projection-dim", "2", "--predictor-dim", "2", "--no-progress", "--no-eval", "--no-plots",
                 "--out", str(out)]) == 0
    huge = "1" + "0" * 400
    says = r"holds the integer 100000000000\.\.\. \(401 digits\), larger than any number byol-ref reads"
    with zipfile.ZipFile(out / "checkpoint.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(str(np.load(out / "checkpoint.npz")["meta"]))
    edited = tmp_path / "edited.npz"
    with zipfile.ZipFile(edited, "w") as z:
        for name, raw in members.items():
            if name == "meta.npy":
                text = json.dumps({**meta, "train_config": {**meta["train_config"], "lr": 0}}).replace(
                    '"lr": 0', f'"lr": {huge}')
                with z.open(name, "w") as f:
                    np.lib.format.write_array(f, np.array(text))
            else:
                z.writestr(name, raw)
    with pytest.raises(ckpt.CheckpointError, match=rf"^{re.escape(str(edited))}: its meta entry {says}"):
        load_checkpoint(edited)
    config = (out / "config.json").read_text()
    (out / "config.json").write_text(config.replace('"epochs": 1', f'"epochs": {huge}'))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--no-eval", "--no-plots"]) == 2
    assert re.match(rf"byol-ref train: error: {re.escape(str(out / 'config.json'))}, a run's config.json, {says}",
                    capsys.readouterr().err)


@pytest.mark.parametrize("key", [b"b'shape'", b"(1,)", b"[1]"])
def test_an_npy_header_with_a_key_that_is_no_string_is_refused_naming_the_file(tmp_path, key):
    """A checkpoint, trace or weights .npz one of whose members has a mangled .npy header, a key that is
    bytes or a tuple (NumPy sorts the keys to name them: "'<' not supported between instances of 'bytes'
    and 'str'") or a list (Python cannot build the dict: "unhashable type: 'list'"): each reader let
    NumPy's TypeError out, which named no file. Each says the file is truncated or corrupt, with NumPy's
    words after."""
    import zipfile

    from byol_ref.checkpoint import CheckpointError
    from byol_ref.checkpoint import load as load_checkpoint_file
    from byol_ref.interchange import load_arrays
    from byol_ref.trace import TraceError, load_trace

    header = b"{'descr': '<f8', 'fortran_order': False, " + key + b": (2,), }"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16)
    path = tmp_path / "mangled.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("online/encoder.fc1.bias.npy", member)
    for read, error, prefix in ((load_checkpoint_file, CheckpointError, ""), (load_trace, TraceError, "trace "),
                                (load_arrays, TraceError, "weights file ")):
        with pytest.raises(error, match=rf"^{prefix}{re.escape(str(path))} is truncated or corrupt \(TypeError: "):
            read(path)


@pytest.mark.parametrize("shape", ["(4, 218446744073709551615)", "(300000000,)"])
def test_a_member_not_named_npy_is_size_checked_as_numpy_reads_it_as_an_array(tmp_path, shape):
    """A weights, trace or checkpoint .npz whose member is named without ".npy" but holds an .npy array
    (NumPy reads it as one): its header was not checked against the bytes it holds, so a header claiming
    more than int64 counts failed on NumPy's OverflowError ("Python int too large to convert to C long"),
    a traceback, and one claiming 2.4 GB had NumPy allocate them before it found 16 bytes. Both are told
    as the member's header claiming other than it holds, as a member named .npy is."""
    import zipfile

    from byol_ref.interchange import load_arrays
    from byol_ref.trace import TraceError

    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    path = tmp_path / "weights.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("online.param.encoder.fc1.bias", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                   + header + bytes(16))
    with pytest.raises(TraceError, match=rf"^weights file {re.escape(str(path))} is corrupt: its member "
                                         rf"'online.param.encoder.fc1.bias': its header claims shape "
                                         rf"{re.escape(shape)} of float64 \(\d+ bytes\) but it holds 16 bytes of "
                                         "data$"):
        load_arrays(path)


def test_an_empty_array_with_a_dimension_beyond_int64_is_refused_naming_the_file(tmp_path):
    """An .npy, or an .npz member, whose header claims an empty array with a dimension beyond int64,
    shape (0, 2**70): its 0 bytes are what the shape needs, so the size check passed it, and NumPy then
    failed on its OverflowError ("Python int too large to convert to C long"), a traceback from every
    reader (weights, trace, checkpoint, data). It is told as a corrupt file, naming it."""
    import zipfile

    from byol_ref.data import load_file
    from byol_ref.interchange import load_arrays
    from byol_ref.trace import TraceError

    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1180591620717411303424), }"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    (tmp_path / "x.npy").write_bytes(member)
    with zipfile.ZipFile(tmp_path / "weights.npz", "w") as z:
        z.writestr("online.param.encoder.fc1.bias.npy", member)
    says = r" is truncated or corrupt \(OverflowError: Python int too large to convert to C long\)$"
    with pytest.raises(TraceError, match=rf"^weights file {re.escape(str(tmp_path / 'weights.npz'))}{says}"):
        load_arrays(tmp_path / "weights.npz")
    with pytest.raises(ValueError, match=rf"{re.escape(repr(str(tmp_path / 'x.npy')))}{says}"):
        load_file(tmp_path / "x.npy")


def test_a_refusal_a_caller_rewords_keeps_its_parts_and_its_class(tmp_path):
    """The command line gives its own advice for a refusal of load_file's test_fraction or image_shape and
    prepare_training_data's pixel range, which it used to find by matching the message's text (a change
    of the library's words would have let the Python advice through). The refusal now carries the
    argument and the message's parts, and a rewording is the same refusal, a ValueError still."""
    from byol_ref.checks import ArgumentError
    from byol_ref.data import load_file

    exc = ArgumentError("image_shape", "has 72 pixels but x has D=64 features", subject="image_shape=(8, 9)",
                        advice="pass (8, 8)")
    assert str(exc) == "image_shape=(8, 9) has 72 pixels but x has D=64 features; pass (8, 8)"
    again = exc.reworded(subject="--image-shape 8x9")
    assert isinstance(again, ValueError) and again.arg == "image_shape"
    assert str(again) == "--image-shape 8x9 has 72 pixels but x has D=64 features; pass (8, 8)"
    assert str(ArgumentError("x", "is bad")) == "is bad" and str(exc.reworded(advice="")).endswith("features")
    np.save(tmp_path / "x.npy", np.zeros((4, 64)))
    np.save(tmp_path / "y.npy", np.arange(4))  # four classes of one sample: no stratified test split
    for kw, arg in ((dict(labels=str(tmp_path / "y.npy")), "test_fraction"), (dict(image_shape=(8, 9)), "image_shape")):
        with pytest.raises(ArgumentError) as info:
            load_file(tmp_path / "x.npy", **kw)
        assert info.value.arg == arg and str(info.value).startswith(info.value.subject)


@pytest.mark.parametrize("field, least", [("encoder_dim", 1), ("hidden_size", 1), ("projection_dim", 1),
                                          ("predictor_dim", 1), ("projector_hidden_dim", 1), ("norm_groups", 1),
                                          ("sem_simplices", 0), ("sem_simplex_dim", 1), ("bn_shards", 1)])
def test_every_width_and_count_of_a_config_is_refused_below_its_least_value(field, least):
    """Each of Config's sizes at its own floor: a width of 0 (an empty layer) is refused naming the field,
    where 0 for hidden_size, projection_dim, predictor_dim or projector_hidden_dim passed every test before
    (found by scripts/mutation_sweep.py); no simplicial embedding, sem_simplices=0, is the default."""
    from byol_ref.model import Config

    with pytest.raises(ValueError, match=rf"^{field} must be an int >= {least}, got {least - 1}"):
        Config(**{"encoder_dim": 4, field: least - 1})
    Config(**{"encoder_dim": 4, field: least})
