"""Bad input gets a ValueError or TypeError naming the argument, what it got and what was expected."""
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
    with pytest.raises(ValueError, match=r"view1 must have at least 2 rows, got shape \(1, 4\)"):
        byol.loss_and_grads(*nets, v1, v2)
    with pytest.raises(ValueError, match="x must have at least 2 rows"):
        byol.forward(nets[0], v1, train=True)
    byol.forward(nets[0], v1, train=False)  # evaluation with running statistics is fine


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
    with pytest.raises(TypeError, match="target_proj has dtype float32"):
        byol.loss(a, a.astype("float32"))


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
    with pytest.raises(ValueError, match="p must be finite"):
        check_float_range(float("inf"), "p")
    with pytest.raises(TypeError, match="p must be a real number, got 'x'"):
        check_float_range("x", "p")
    for value, kw, shown in ((0, dict(lo_open=True), r"\(0, 1\]"), (1, dict(hi_open=True), r"\[0, 1\)"),
                             (-0.1, {}, r"\[0, 1\]"), (1.1, {}, r"\[0, 1\]")):
        with pytest.raises(ValueError, match=rf"p must be in {shown}, got {value}"):
            check_float_range(value, "p", 0, 1, **kw)
    assert check_float_range(-5.0, "x", None, 1) == -5.0  # an open-ended range

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
