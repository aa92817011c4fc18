"""The shipped gradient checkers (byol_ref.gradcheck) checked themselves: every other gradient
test leans on them, so their stencils, steps, error measures and refusals are pinned here on
functions whose exact answers are known."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from byol_ref.gradcheck import directional_check, grad_error, numerical_gradient, random_direction, rel_error


def test_rel_error_values_floor_and_refusals():
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 4.2, rel=1e-12)
    assert rel_error([2.0, 2.2], [1.0, 2.0]) == pytest.approx(1.0 / 3.0, rel=1e-12)  # the worst entry, not the mean
    assert rel_error([0.0], [1e-13]) == pytest.approx(0.1, rel=1e-9)  # |a| + |b| below the floor 1e-12
    assert rel_error([0.0], [0.0]) == 0.0 and rel_error(np.zeros(0), np.zeros(0)) == 0.0
    # taken in float64 whatever the inputs: uint8 1 - 2 would wrap to 255, float16 round the quotient
    one, two = np.array([1], dtype=np.uint8), np.array([2], dtype=np.uint8)
    assert rel_error(one, two) == rel_error(two, one) == pytest.approx(1 / 3, rel=1e-15)
    assert rel_error(np.float16([1.0]), np.float16([1.5])) == pytest.approx(0.2, rel=1e-15)
    with pytest.raises(ValueError, match=r"rel_error: shapes differ, \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_grad_error_floors_at_a_fraction_of_the_gradients_scale():
    # entry 1 is a true zero with 1e-5 of noise: |a - n| / max(1e-5, 1e-4 * 1) = 0.1
    assert grad_error([1.0, 0.0], [1.0, 1e-5]) == pytest.approx(0.1, rel=1e-9)
    assert grad_error([1.0, 0.0], [1.0, 1e-5], floor=1e-2) == pytest.approx(1e-3, rel=1e-9)
    # the scale is the gradient's own largest entry, whatever its size (here 1e-3, floor 1e-7)
    assert grad_error([1e-3, 0.0], [1e-3, 1e-9]) == pytest.approx(1e-2, rel=1e-9)
    # a given scale replaces it (a tensor whose own gradient is zero everywhere)
    assert grad_error([0.0, 0.0], [1e-9, 0.0], scale=1.0) == pytest.approx(1e-5, rel=1e-9)
    # any scale >= 0 is taken, below 1 too (a model whose gradient is small, or zero everywhere)
    assert grad_error([0.0, 0.0], [1e-9, 0.0], scale=0.01) == pytest.approx(1e-3, rel=1e-9)
    assert grad_error([1.0, 0.0], [1.0, 0.0], scale=0.0) == 0.0
    assert grad_error([0.0, 0.0], [0.0, 0.0]) == 0.0 and grad_error(np.zeros(0), np.zeros(0)) == 0.0
    # however small the gradient, its entries are compared relatively (the scale's own floor, 1e-300, is
    # only there so that an all-zero pair divides 0 by a positive number): a 1e-12 gradient off by half fails
    assert grad_error([1e-12, 0.0], [2e-12, 0.0]) == pytest.approx(1 / 3, rel=1e-12)
    # the maximum over entries, not the mean: one bad entry among good ones fails
    assert grad_error([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 2.0]) == pytest.approx(1 / 3, rel=1e-12)
    with pytest.raises(ValueError, match=r"grad_error: shapes differ"):
        grad_error(np.zeros((2, 1)), np.zeros(2))


@given(x=st.lists(st.floats(-3, 3), min_size=1, max_size=5), h=st.sampled_from([0.1, 0.05, 0.01]))
def test_stencils_are_the_documented_ones(x, h):
    """On f(x) = x^3 the classic central difference is 3x^2 + h^2 exactly, and the five-point
    stencil (exact up to degree 4) gives 3x^2."""
    x = np.array(x)
    dout = np.linspace(0.5, 1.5, x.size)
    want = 3 * x**2 * dout
    two = numerical_gradient(lambda v: v**3, x, dout, h=h, order=2)
    four = numerical_gradient(lambda v: v**3, x, dout, h=h, order=4)
    np.testing.assert_allclose(two, want + h**2 * dout, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(four, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("order, offsets", [(4, {-2e-4, -1e-4, 1e-4, 2e-4}), (2, {-1e-6, 1e-6})])
def test_default_steps_and_that_x_is_restored(order, offsets):
    x = np.array([0.5, -1.25])
    seen = []

    def f(v):
        seen.append(v.copy())
        return float((v**2).sum())  # a scalar: dout None

    g = numerical_gradient(f, x, order=order)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)
    np.testing.assert_array_equal(x, [0.5, -1.25])  # perturbed in place, then restored
    steps = {round(float(v[0] - 0.5), 12) for v in seen if v[0] != 0.5}
    assert steps == {round(s, 12) for s in offsets}


@given(fails_at=st.integers(1, 12), order=st.sampled_from([2, 4]))  # (6 entries: 12 or 24 calls)
def test_x_is_restored_where_f_raises(fails_at, order):
    """x is the caller's (a parameter that f reads by closure, say); an f that raised at its k-th call
    left one entry of it moved by a step, silently, for whatever the caller did next."""
    x = np.array([[0.5, -1.25, 3.0], [2.0, 0.0, -0.75]])
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == fails_at:
            raise RuntimeError("f failed")
        return float((v**3).sum())

    with pytest.raises(RuntimeError, match="f failed"):
        numerical_gradient(f, x, order=order)
    np.testing.assert_array_equal(x, [[0.5, -1.25, 3.0], [2.0, 0.0, -0.75]])


class _TorchLikeScalar:
    """What a torch function returns: a 0-d tensor whose ``size`` is a method, not a number."""

    shape, dtype = (), "torch.float64"

    def __init__(self, value):
        self.value = value

    def size(self):
        return ()

    def __float__(self):
        return self.value


def test_f_of_another_library_or_in_float32():
    """A torch f(x) was refused as "f(x) has shape (); without dout f must return a scalar" (its size is a
    method); an f computing in float32 (JAX's default) gave a derivative good to about 1e-3, without a word."""
    x = np.array([0.5, -1.25])
    g = numerical_gradient(lambda v: _TorchLikeScalar(float((v**2).sum())), x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)
    for f in (lambda v: (v.astype(np.float32) ** 2).sum(), lambda v: (v**2).astype(np.float16)):
        with pytest.raises(TypeError, match=r"^numerical_gradient: f\(x\) returned float(32|16), whose rounding "
                                            r"swamps the check as a float32 x would"):
            numerical_gradient(f, x, dout=None if f(x).ndim == 0 else np.ones(2))


def test_a_direction_of_no_length_is_refused():
    """A zero direction passed any gradient (both derivatives 0, the error 0): 123 for a true 2."""
    params, wrong = {"w": np.array([1.0, 2.0])}, {"w": np.array([123.0, -7.0])}
    for d, norm in ((np.zeros(2), "0"), (np.array([np.inf, 0.0]), "inf"), (np.array([np.nan, 1.0]), "nan")):
        with pytest.raises(ValueError, match=rf"^direction has norm {norm}; expected a direction of norm > 0 and "
                                             "finite"):
            directional_check(lambda p: float((p["w"] ** 2).sum()), params, wrong, direction={"w": d})


def test_the_errors_refuse_masked_values_and_complex_numbers():
    """rel_error and grad_error compared a masked array's hidden values (0.98 for 1 vs 1 with 100 masked)
    and dropped a complex array's imaginary part (1+1j vs 1: 0)."""
    hidden = np.ma.masked_array([1.0, 100.0], mask=[False, True])
    for fn, names in ((rel_error, ("a", "b")), (grad_error, ("analytic", "numerical"))):
        with pytest.raises(TypeError, match=rf"^{fn.__name__}: {names[0]} is a masked array with 1 value\(s\) masked"):
            fn(hidden, np.ones(2))
        with pytest.raises(TypeError, match=rf"^{fn.__name__}: {names[1]} is complex \(complex128\)"):
            fn(np.ones(2), np.array([1 + 1j, 1.0]))
        assert fn(np.ma.masked_array([1.0, 2.0]), [1.0, 2.0]) == 0.0  # (nothing masked; a list: as before)


def test_numerical_gradient_refusals():
    x = np.zeros(2)
    x.flags.writeable = False  # (np.asarray of a JAX array, a memory map opened "r")
    with pytest.raises(ValueError, match=r"^numerical_gradient: x is read-only, and it is perturbed in place, one "
                                         r"element at a time \(f may read it by closure\); pass a writable copy"):
        numerical_gradient(lambda v: v.sum(), x)
    with pytest.raises(TypeError, match="needs a float64 array x"):
        numerical_gradient(lambda v: v.sum(), np.zeros(2, dtype="float32"))
    with pytest.raises(TypeError, match=r"needs a float64 array x \(got list\)"):
        numerical_gradient(lambda v: sum(v), [0.0, 1.0])
    for order in (3, 6, 1):  # (6 would have run the order-4 stencil under another name)
        with pytest.raises(ValueError, match=f"order must be 2 or 4, got {order}"):
            numerical_gradient(lambda v: v.sum(), np.zeros(2), order=order)
    for h, err, says in ((0, ValueError, r"h must be in \(0, inf\), got 0"), (-1e-4, ValueError, "h must be in"),
                         (float("nan"), ValueError, "h must not be NaN"), ("1e-4", TypeError, "h must be a real")):
        with pytest.raises(err, match=says):
            numerical_gradient(lambda v: v.sum(), np.zeros(2), h=h)


@pytest.mark.parametrize("layout", ["fortran", "transposed", "strided", "0-d"])
def test_numerical_gradient_of_an_array_in_any_memory_layout(layout):
    """x is perturbed in place: an F-ordered, transposed or strided x must be stepped itself (a flat
    reshape of it is a copy, whose steps never reach f, and the gradient read 0 everywhere)."""
    base = np.arange(1.0, 13.0).reshape(3, 4) / 7
    x = {"fortran": np.asfortranarray(base), "transposed": base.T, "strided": base[:, ::2],
         "0-d": np.array(0.75)}[layout]
    before = x.copy()
    dout = np.cos(np.arange(x.size)).reshape(x.shape)
    g = numerical_gradient(lambda v: v**3, x, dout)
    np.testing.assert_allclose(g, 3 * before**2 * dout, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(x, before)  # restored


def test_random_direction_is_a_seeded_unit_gaussian_direction():
    params = {"w": np.zeros((50, 40)), "b": np.zeros(7)}
    u = random_direction(params, seed=3)
    assert sum(float((d * d).sum()) for d in u.values()) == pytest.approx(1.0, rel=1e-12)
    again = random_direction(params, seed=3)
    assert all(np.array_equal(u[k], again[k]) for k in params)
    assert not np.array_equal(u["w"], random_direction(params, seed=4)["w"])
    w = u["w"].ravel() * np.sqrt(u["w"].size)  # ~ standard normal entries
    assert abs(w.mean()) < 0.1 and 0.9 < w.std() < 1.1 and (w < 0).mean() > 0.4


def test_directional_check_on_a_quadratic_and_a_wrong_gradient():
    rng = np.random.default_rng(0)
    a = {"w": rng.uniform(0.5, 2, (3, 2)), "b": rng.uniform(0.5, 2, 4)}
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}

    def loss(p):
        return sum(float((a[k] * p[k] ** 2).sum()) for k in p)

    grads = {k: 2 * a[k] * params[k] for k in params}
    analytic, numerical, err = directional_check(loss, params, grads, seed=1)
    u = random_direction(params, seed=1)
    assert analytic == pytest.approx(sum(float((grads[k] * u[k]).sum()) for k in params), rel=1e-12)
    assert numerical == pytest.approx(analytic, rel=1e-9) and err < 1e-9
    _, _, bad = directional_check(loss, params, {k: 2 * g for k, g in grads.items()}, seed=1)
    assert bad == pytest.approx(1 / 3, rel=1e-6)  # |2D - D| / (|2D| + |D|)
    own = {k: np.ones_like(v) for k, v in params.items()}  # a given direction is used as is
    analytic, _, _ = directional_check(loss, params, grads, direction=own)
    assert analytic == pytest.approx(sum(float(g.sum()) for g in grads.values()), rel=1e-12)
    with pytest.raises(ValueError, match=r"params and grads keys differ: \['b'\]"):
        directional_check(loss, params, {"w": grads["w"]})
    with pytest.raises(ValueError, match=r"direction and params keys differ: \['b'\]"):
        directional_check(loss, params, grads, direction={"w": own["w"]})
    with pytest.raises(TypeError, match=r"needs float64 params .* got \{'w': 'float32'\}"):
        directional_check(loss, {**params, "w": params["w"].astype("float32")}, grads)
    with pytest.raises(ValueError, match=r"h must be in \(0, inf\), got 0"):
        directional_check(loss, params, grads, h=0)


def test_directional_check_uses_the_five_point_stencil_and_a_tiny_floor():
    """t -> sum((p + t u)^4) is a quartic: the five-point difference is exact at any h, where
    the classic one would be off by h^2 L'''(0) / 6. The relative error keeps working for
    derivatives of any size (its floor is 1e-12)."""
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal(5)}

    def quartic(p):
        return float((p["w"] ** 4).sum())

    grads = {"w": 4 * params["w"] ** 3}
    analytic, numerical, err = directional_check(quartic, params, grads, h=0.1, seed=0)
    assert err < 1e-12 and numerical == pytest.approx(analytic, rel=1e-12)
    tiny = 1e-9  # a loss scaled down: a wrong gradient must still be seen as wrong
    _, _, bad = directional_check(lambda p: tiny * quartic(p), params, {"w": 2 * tiny * grads["w"]}, h=0.1)
    assert bad == pytest.approx(1 / 3, rel=1e-6)
    # below the floor the error is absolute: a loss flat along u (numerical 0) against an analytic 1e-13
    # gives 1e-13 / max(1e-13, 1e-12) = 0.1
    flat = directional_check(lambda p: 0.0, {"w": np.zeros(1)}, {"w": np.array([1e-13])},
                             direction={"w": np.ones(1)})
    assert flat[1] == 0.0 and flat[2] == pytest.approx(0.1, rel=1e-12)


def test_directional_check_defaults_step_1e_5_along_the_seed_0_direction():
    """Left out, h is 1e-5 and the direction is random_direction's of seed 0 (itself seed 0 by default):
    the loss is called at params + t u for t = -2h, -h, h, 2h, with u standard normal draws of
    default_rng(0) in the dict's order, scaled to unit norm."""
    params = {"w": np.zeros((2, 3)), "b": np.zeros(4)}
    seen = []

    def loss(p):
        seen.append({k: v.copy() for k, v in p.items()})
        return 0.0

    directional_check(loss, params, {k: np.zeros_like(v) for k, v in params.items()})
    rng = np.random.default_rng(0)
    draws = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(4)}
    norm = np.sqrt(sum((d**2).sum() for d in draws.values()))
    assert len(seen) == 4
    for got, t in zip(seen, (-2e-5, -1e-5, 1e-5, 2e-5)):
        for k in params:
            np.testing.assert_allclose(got[k], t * draws[k] / norm, rtol=1e-12, atol=0)
    u = random_direction(params)
    for k in params:
        np.testing.assert_allclose(u[k], draws[k] / norm, rtol=1e-15, atol=0)


@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 6), rel=st.floats(1e-6, 1e-2), zero=st.floats(1e-9, 1e-3))
def test_grad_error_is_symmetric_in_its_two_gradients(seed, size, rel, zero):
    """The floor is a fraction of the larger of the two gradients' scales, so which side is called
    analytic does not matter. Two nearly equal gradients, one entry exactly 0 on one side: the floor
    decides that entry's error, and both orders must agree to the last bit."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(size)
    n = a * (1 + rel * rng.standard_normal(size))
    a[0], n[0] = 0.0, zero
    assert grad_error(a, n) == grad_error(n, a)


def test_grad_error_floor_uses_the_larger_scale():
    """a = [1, 0], n = [3, 1e-4]: scale 3, floor 3e-4. Entry 0: 2 / 4 = 0.5; entry 1: 1e-4 / 3e-4."""
    assert grad_error(np.array([1.0, 0.0]), np.array([3.0, 1e-4])) == pytest.approx(0.5, rel=1e-15)


def test_a_dout_grads_or_direction_that_would_broadcast_is_refused():
    """Found by an API audit: a (3, 1) dout or grads entry broadcast against a (3, 4) one and
    numerical_gradient / directional_check returned the numbers of another function, without a word."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    for dout in (np.ones((3, 1)), np.ones(4), np.array(1.0)):
        with pytest.raises(ValueError, match=r"dout has shape .*, but f\(x\) has shape \(3, 4\)"):
            numerical_gradient(lambda v: 2 * v, x.copy(), dout)
    for dout, says in ((np.ones((3, 4), dtype="float32"), "float32"), (np.ones((3, 4)).tolist(), "list")):
        with pytest.raises(TypeError, match=f"needs dout as a float64 array .*got {says}"):
            numerical_gradient(lambda v: 2 * v, x.copy(), dout)
    with pytest.raises(ValueError, match=r"f\(x\) has shape \(3, 4\); without dout f must return a scalar"):
        numerical_gradient(lambda v: 2 * v, x.copy())
    params = {"w": x, "b": np.ones(4)}
    grads = {"w": 2 * x, "b": 2 * np.ones(4)}

    def loss(p):
        return float((p["w"] ** 2).sum() + (p["b"] ** 2).sum())

    assert directional_check(loss, params, grads)[2] < 1e-9
    for bad in (np.ones((3, 1)), np.array(1.0), (2 * x).tolist()):
        with pytest.raises(ValueError, match=r"grads\['w'\] must be an array of params\['w'\]'s shape \(3, 4\)"):
            directional_check(loss, params, {**grads, "w": bad})
    with pytest.raises(ValueError, match=r"direction\['b'\] must be an array of params\['b'\]'s shape \(4,\)"):
        directional_check(loss, params, grads, direction={"w": x, "b": np.ones(1)})
    for args, name in (((loss, [x], grads), "params"), ((loss, params, None), "grads")):
        with pytest.raises(TypeError, match=f"{name} must be a dict name -> array"):
            directional_check(*args)
    with pytest.raises(TypeError, match="params must be a dict name -> array, got list"):
        random_direction([x])


def test_entries_that_are_no_arrays_are_refused_by_name():
    """Found by a mutation audit: random_direction of a dict of lists, and a Python number as the gradient
    of a 0-d parameter (shape () by default, as a 0-d array's), were refused with no test of either."""
    with pytest.raises(TypeError, match="params must be a dict name -> array, got dict"):
        random_direction({"w": [1.0, 2.0]})
    params = {"w": np.array(1.5)}

    def loss(p):
        return float(p["w"] ** 2)

    assert directional_check(loss, params, {"w": np.array(3.0)})[2] < 1e-9
    for tree in ("grads", "direction"):
        trees = {"grads": {"w": np.array(3.0)}, "direction": None, tree: {"w": 3.0}}
        with pytest.raises(ValueError, match=rf"{tree}\['w'\] must be an array of params\['w'\]'s shape \(\), "
                                             "got float"):
            directional_check(loss, params, trees["grads"], direction=trees["direction"])


@pytest.mark.parametrize("fn", [rel_error, grad_error])
def test_error_floors_and_scale_are_positive_real_numbers(fn):
    for floor, err in ((0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("a", TypeError),
                       (None, TypeError)):
        with pytest.raises(err, match="floor"):
            fn([1.0, 0.0], [1.0, 0.0], floor)
    for scale, err in ((-1.0, ValueError), (float("nan"), ValueError), ("a", TypeError)):
        with pytest.raises(err, match="scale"):
            grad_error([1.0], [1.0], scale=scale)
