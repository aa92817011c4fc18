"""Tests for byol_ref.augment: shapes, dtypes, ranges, determinism, identities, formulas, config checks."""
import math
import re
from dataclasses import FrozenInstanceError, asdict, replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from byol_ref.augment import (
    ImageAug,
    VectorAug,
    augment_images,
    augment_vectors,
    crop_resize,
    default_views_for,
    digits_views,
    erase_mask,
    gaussian_blur,
    solarize,
    two_views,
)
from byol_ref.backend import host as np
from byol_ref.data import load_digits, synthetic

IDENTITY = ImageAug.identity()
DTYPES = ["float32", "float64"]


def images(seed, shape, dtype="float64"):
    """Random images in [0, 1] with some exact 0s and 1s (digit-like), generated from a seed."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    x = np.where(x < 0.2, 0.0, np.where(x > 0.9, 1.0, x))
    return x.astype(dtype)


def rng_(seed=0):
    return np.random.default_rng(seed)


layouts = st.sampled_from(["ND", "NHW", "NCHW"])


def _make(layout, n, c, h, w, seed, dtype):
    """(x, image_shape) for one of the three accepted layouts."""
    if layout == "ND":
        return images(seed, (n, c * h * w), dtype), ((h, w) if c == 1 else (c, h, w))
    if layout == "NHW":
        return images(seed, (n, h, w), dtype), None
    return images(seed, (n, c, h, w), dtype), None


# --------------------------------------------------------------------------- shapes, dtypes, range, purity


@given(
    layout=layouts,
    n=st.integers(1, 5),
    c=st.integers(1, 3),
    h=st.integers(3, 10),
    w=st.integers(3, 10),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
    view=st.sampled_from([0, 1]),
)
def test_image_shape_dtype_range_purity_determinism(layout, n, c, h, w, seed, dtype, view):
    if layout == "NHW":
        c = 1
    x, shape = _make(layout, n, c, h, w, seed, dtype)
    x0 = x.copy()
    cfg = replace(digits_views()[view], p_blur=0.7, p_solarize=0.5, p_flip=0.5)
    out = augment_images(x, rng_(seed), cfg, shape)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(x, x0)  # input not mutated
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, augment_images(x, rng_(seed), cfg, shape))  # same seed
    assert not np.array_equal(out, augment_images(x, rng_(seed + 1), cfg, shape))  # other seed


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_stays_float32_through_every_op(dtype):
    x = images(0, (6, 2, 8, 8), dtype)
    cfg = ImageAug(p_flip=0.5, p_jitter=1, p_blur=1, p_solarize=1, p_noise=1)
    assert augment_images(x, rng_(), cfg).dtype == dtype
    n = x.shape[0]
    assert crop_resize(x, np.tile([1.0, 1.0, 5.0, 6.0], (n, 1)), np.full(n, 7.0), np.ones(n, bool)).dtype == dtype
    assert gaussian_blur(x, np.full(n, 0.8), 2).dtype == dtype
    assert solarize(x).dtype == dtype
    v = images(0, (6, 5), dtype)
    assert augment_vectors(v, rng_(), VectorAug()).dtype == dtype


def test_empty_batch():
    x = images(0, (0, 64))
    assert augment_images(x, rng_(), ImageAug(), (8, 8)).shape == (0, 64)


# --------------------------------------------------------------------------- randomness


def test_identical_images_get_different_augmentations():
    digit = load_digits().x_train[:1]
    x = np.repeat(digit, 16, axis=0)
    for cfg in digits_views():
        out = augment_images(x, rng_(0), cfg, (8, 8))
        assert len({row.tobytes() for row in out}) == 16


def test_two_views_differ_and_are_reproducible():
    x = load_digits().x_train[:32]
    v1, v2 = two_views(x, rng_(5), digits_views(), (8, 8))
    assert v1.shape == v2.shape == x.shape
    assert np.all(np.abs(v1 - v2).sum(axis=1) > 0)  # every sample differs between views
    w1, w2 = two_views(x, rng_(5), digits_views(), (8, 8))
    np.testing.assert_array_equal(v1, w1)
    np.testing.assert_array_equal(v2, w2)


def test_two_views_draw_view1_then_view2_from_one_generator():
    x = load_digits().x_train[:8]
    c1, c2 = digits_views()
    v1, v2 = two_views(x, rng_(3), (c1, c2), (8, 8))
    g = rng_(3)
    np.testing.assert_array_equal(v1, augment_images(x, g, c1, (8, 8)))
    np.testing.assert_array_equal(v2, augment_images(x, g, c2, (8, 8)))


def test_per_sample_independence_of_batch_position():
    # Sample i's output depends only on its own parameters: a constant batch made from
    # different images is augmented like each image alone would be with the same draws.
    x = images(1, (4, 8, 8))
    out = augment_images(x, rng_(9), ImageAug(p_blur=1, p_solarize=0.5), None)
    swapped = x.copy()
    swapped[[0, 1]] = x[[1, 0]]
    out2 = augment_images(swapped, rng_(9), ImageAug(p_blur=1, p_solarize=0.5), None)
    np.testing.assert_array_equal(out[2:], out2[2:])
    assert not np.array_equal(out[0], out2[0])


# --------------------------------------------------------------------------- identities


@given(
    layout=layouts,
    c=st.integers(1, 3),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from(DTYPES),
)
@example(layout="NCHW", c=1, h=7, w=9, seed=0, dtype="float64")  # sqrt(A * W/H) once missed W by an ulp
def test_identity_settings_return_input(layout, c, h, w, seed, dtype):
    if layout == "NHW":
        c = 1
    x, shape = _make(layout, 3, c, h, w, seed, dtype)
    # Any ratio range: a crop of area fraction 1 must be the full image.
    cfg = replace(IDENTITY, crop_ratio=(0.5, 2.0))
    out = augment_images(x, rng_(seed), cfg, shape)
    np.testing.assert_array_equal(out, x)  # the input itself, not a resample of it (7x9 once missed by 7e-16)


@given(h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 1000), dtype=st.sampled_from(DTYPES))
def test_crop_of_full_image_is_identity(h, w, seed, dtype):
    x = images(seed, (3, 2, h, w), dtype)
    boxes = np.tile([0.0, 0.0, w, h], (3, 1))
    np.testing.assert_array_equal(crop_resize(x, boxes), x)
    np.testing.assert_array_equal(crop_resize(x, boxes, np.zeros(3), np.zeros(3, bool)), x)


def test_full_box_flip_and_quarter_turn():
    x = images(0, (2, 1, 6, 6))
    full = np.tile([0.0, 0.0, 6.0, 6.0], (2, 1))
    np.testing.assert_array_equal(crop_resize(x, full, flips=np.ones(2, bool)), x[..., ::-1])
    # Rotating the sampling grid by +90 degrees about the centre reads x[j, W-1-i]: np.rot90.
    rot = crop_resize(x, full, angles=np.full(2, 90.0))
    np.testing.assert_allclose(rot, np.rot90(x, 1, axes=(2, 3)), atol=1e-12)


@given(
    x0=st.floats(0.5, 2.0), y0=st.floats(0.5, 2.0), bw=st.floats(2.0, 4.5), bh=st.floats(2.0, 4.5),
    a=st.floats(-1, 1), b=st.floats(-1, 1),
)
def test_crop_reproduces_a_linear_ramp(x0, y0, bw, bh, a, b):
    # Bilinear interpolation is exact on a linear function, so the crop of the ramp
    # f(i, j) = a j + b i samples it at sx = x0 + (j + 0.5) w / W - 0.5 (and likewise sy).
    h = w = 8
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = (a * j + b * i)[None, None].astype(np.float64)
    out = crop_resize(x, np.array([[x0, y0, bw, bh]]))
    sx = x0 + (j + 0.5) * bw / w - 0.5
    sy = y0 + (i + 0.5) * bh / h - 0.5
    np.testing.assert_allclose(out[0, 0], a * sx + b * sy, atol=1e-12)


def test_crop_area_fraction_and_box_inside():
    # Crop boxes are inside the image and have the drawn area: check through the sampler on a
    # constant image (any sample point outside the image would read a zero).
    x = np.ones((64, 1, 8, 8))
    out = augment_images(x, rng_(0), replace(IDENTITY, crop_scale=(0.3, 1.0), crop_ratio=(0.5, 2.0)))
    np.testing.assert_allclose(out, 1.0, atol=1e-12)


# --------------------------------------------------------------------------- ops


@given(sigma=st.floats(0.1, 3.0), r=st.integers(1, 3), c=st.floats(0.0, 1.0))
def test_blur_keeps_constant_interior(sigma, r, c):
    h, w = 9, 10
    x = np.full((1, 1, h, w), c)
    out = gaussian_blur(x, np.array([sigma]), r)
    np.testing.assert_allclose(out[..., r:h - r, r:w - r], c, atol=1e-12)
    assert np.all(out <= c + 1e-12)  # zero padding only removes mass at the border


@given(seed=st.integers(0, 1000), r=st.integers(1, 2), dtype=st.sampled_from(DTYPES))
def test_blur_mass(seed, r, dtype):
    x = images(seed, (3, 2, 8, 8), dtype)
    sigma = np.random.default_rng(seed).uniform(0.1, 2.0, size=3)
    tol = 1e-12 if dtype == "float64" else 1e-4
    out = gaussian_blur(x, sigma, r)
    # Never more mass than before (non-negative image, zero padding) ...
    assert np.all(out.sum(axis=(2, 3)) <= x.sum(axis=(2, 3)) + tol)
    # ... and exactly the same mass when nothing is within r pixels of the border.
    inner = np.zeros_like(x)
    inner[..., r:-r, r:-r] = x[..., r:-r, r:-r]
    np.testing.assert_allclose(gaussian_blur(inner, sigma, r).sum(axis=(2, 3)), inner.sum(axis=(2, 3)),
                               rtol=tol, atol=tol)


def test_blur_per_sample_sigma_and_kernel():
    x = np.zeros((3, 1, 5, 5))
    x[:, 0, 2, 2] = 1.0  # an impulse gives the 2-D kernel back
    sigma = np.array([0.5, 1.0, 1e-3])
    out = gaussian_blur(x, sigma, 1)
    for n, s in enumerate(sigma):
        k = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * s * s))
        k /= k.sum()
        np.testing.assert_allclose(out[n, 0, 1:4, 1:4], np.outer(k, k), atol=1e-15)
    np.testing.assert_allclose(out[2], x[2], atol=1e-12)  # tiny sigma: identity
    np.testing.assert_array_equal(gaussian_blur(x, sigma, 0), x)


@given(seed=st.integers(0, 1000), t=st.floats(0.0, 1.0), dtype=st.sampled_from(DTYPES))
def test_solarize_formula(seed, t, dtype):
    x = images(seed, (4, 7), dtype)
    out = solarize(x, t)
    expected = np.where(x < t, x, 1 - x)
    np.testing.assert_array_equal(out, expected)
    assert out.min() >= 0 and out.max() <= 1


def test_vector_ops_off_draw_nothing():
    """augment_vectors draws its mask and its noise only when they are on: with both off, a view takes
    its N scale draws and nothing else, and view 2 of a pair draws what it would alone after them."""
    n, d = 6, 3
    for cfg, draws in ((VectorAug(p_mask=0.0, noise_std=0.0), n), (VectorAug(p_mask=0.5, noise_std=0.0), n + n * d)):
        rng, want = rng_(2), rng_(2)
        augment_vectors(np.ones((n, d)), rng, cfg)
        want.uniform(size=draws)
        assert rng.bit_generator.state == want.bit_generator.state, cfg


def test_solarize_default_threshold_is_one_half():
    x = np.array([0.25, 0.5, 0.75])
    np.testing.assert_array_equal(solarize(x), [0.25, 0.5, 0.25])  # (0.5 is not below 0.5: 1 - 0.5)


def test_solarize_in_pipeline_uses_threshold():
    x = np.linspace(0, 1, 64).reshape(1, 8, 8)
    out = augment_images(x, rng_(), replace(IDENTITY, p_solarize=1.0, solarize_threshold=0.5))
    np.testing.assert_allclose(out, np.where(x < 0.5, x, 1 - x), atol=1e-15)


def test_brightness_is_additive_and_contrast_scales_about_the_mean():
    x = np.full((20, 1, 4, 4), 0.5)
    x[:, :, :2] = 0.4
    bright = augment_images(x, rng_(1), replace(IDENTITY, p_jitter=1.0, brightness=0.05, contrast=(1.0, 1.0)))
    delta = bright - x
    np.testing.assert_allclose(delta, delta[:, :, :1, :1] * np.ones_like(x), atol=1e-12)  # one delta per image
    assert np.abs(delta).max() <= 0.05 and np.unique(np.round(delta[:, 0, 0, 0], 12)).size == 20
    con = augment_images(x, rng_(1), replace(IDENTITY, p_jitter=1.0, brightness=0.0, contrast=(1.5, 1.5)))
    mean = x.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(con, (x - mean) * 1.5 + mean, atol=1e-12)
    np.testing.assert_allclose(con.mean(axis=(2, 3)), mean[..., 0, 0], atol=1e-12)


def test_contrast_pivots_on_each_channels_own_mean():
    """Colour images: contrast scales each channel about that channel's mean (a constant channel
    is left alone), not about the mean over all channels."""
    x = np.empty((5, 3, 4, 4))
    x[:, 0], x[:, 1] = 0.2, 0.8  # two constant channels
    x[:, 2] = 0.5
    x[:, 2, :2] = 0.4
    con = augment_images(x, rng_(2), replace(IDENTITY, p_jitter=1.0, brightness=0.0, contrast=(1.5, 1.5)))
    np.testing.assert_allclose(con[:, :2], x[:, :2], atol=1e-12)
    mean = x[:, 2].mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(con[:, 2], (x[:, 2] - mean) * 1.5 + mean, atol=1e-12)


def test_brightness_and_contrast_run_in_a_random_order_per_sample():
    """With clipping the two orders differ; each sample takes one of them, each with probability 1/2."""
    from byol_ref.augment import _draw_image_params, _jitter

    p = _draw_image_params(rng_(3), 20_000, IDENTITY, (1, 2, 2))
    assert abs(p.bright_first.mean() - 0.5) < 0.015  # 4.2 standard errors
    x = np.array([0.1, 0.5, 0.9, 0.9]).reshape(1, 1, 2, 2).repeat(2, axis=0)
    delta, factor = np.full((2, 1, 1, 1), 0.3), np.full((2, 1, 1, 1), 2.0)
    out = _jitter(x, delta, factor, np.array([True, False]).reshape(2, 1, 1, 1))

    def contrast(a):
        m = a.mean(axis=(2, 3), keepdims=True)
        return np.clip((a - m) * 2.0 + m, 0, 1)

    np.testing.assert_allclose(out[0], contrast(np.clip(x[:1] + 0.3, 0, 1))[0], atol=1e-12)
    np.testing.assert_allclose(out[1], np.clip(contrast(x[1:]) + 0.3, 0, 1)[0], atol=1e-12)
    assert not np.allclose(out[0], out[1])


def test_crop_offsets_are_uniform_over_the_free_range():
    """A box of side 4 in an 8x8 image may start anywhere in [0, 4]: uniform offsets (mean 2, and
    both ends reached), not biased towards a corner."""
    from byol_ref.augment import _draw_image_params

    p = _draw_image_params(rng_(5), 20_000, replace(IDENTITY, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0)),
                           (1, 8, 8))
    np.testing.assert_allclose(p.boxes[:, 2:], 4.0, rtol=1e-12)  # side sqrt(0.25 * 64)
    for offset in (p.boxes[:, 0], p.boxes[:, 1]):
        assert abs(offset.mean() - 2.0) < 0.035  # standard error 4 / sqrt(12 * 20000) = 0.008
        assert offset.min() < 0.01 and offset.max() > 3.99
        assert abs((offset > 3.0).mean() - 0.25) < 0.015


@pytest.mark.parametrize("op", ["p_jitter", "p_blur", "p_noise"])
def test_each_op_runs_on_its_drawn_share_of_samples(op):
    """Every op is applied per sample with its own probability, not to the whole batch."""
    x = np.full((2000, 1, 5, 5), 0.5)
    x[:, :, 2, 2] = 0.9  # an edge for the blur to soften
    settings = {"p_jitter": dict(brightness=0.2, contrast=(1.0, 1.0)), "p_blur": dict(blur_sigma=(0.5, 1.0)),
                "p_noise": dict(noise_std=0.05)}[op]
    out = augment_images(x, rng_(6), replace(IDENTITY, **{op: 0.3}, **settings))
    changed = np.abs(out - x).reshape(len(x), -1).max(axis=1) > 1e-12
    assert 0.26 < changed.mean() < 0.34


def test_random_parameters_span_their_ranges():
    """Angles and brightness shifts are symmetric about 0, blur sigmas fill [low, high], and the
    crop aspect ratio is log-uniform (median 1 for a range symmetric in log, such as (1/2, 2))."""
    from byol_ref.augment import _draw_image_params

    cfg = replace(IDENTITY, rotation=10.0, brightness=0.3, blur_sigma=(0.2, 0.9), crop_scale=(0.1, 0.1),
                  crop_ratio=(0.5, 2.0))
    p = _draw_image_params(rng_(7), 20_000, cfg, (1, 16, 16))
    for values, bound in ((p.angle, 10.0), (p.delta, 0.3)):
        assert values.min() < -0.99 * bound and values.max() > 0.99 * bound and abs(values.mean()) < 0.02 * bound
    assert p.sigma.min() < 0.21 and p.sigma.max() > 0.89
    ratio = p.boxes[:, 2] / p.boxes[:, 3]  # box width / height = the drawn ratio
    assert abs(np.median(ratio) - 1.0) < 0.03 and ratio.min() < 0.51 and ratio.max() > 1.99


def test_noise_std():
    x = np.full((200, 8, 8), 0.5)
    out = augment_images(x, rng_(2), replace(IDENTITY, p_noise=1.0, noise_std=0.05))
    assert abs((out - x).std() - 0.05) < 0.003


@given(seed=st.integers(0, 1000), size=st.integers(1, 4), dtype=st.sampled_from(DTYPES))
def test_erase_zeroes_one_square_patch_per_erased_sample(seed, size, dtype):
    x = np.full((300, 1, 6, 7), 0.5, dtype=dtype)
    out = augment_images(x, rng_(seed), replace(IDENTITY, p_erase=0.4, erase_size=size))
    assert out.dtype == dtype
    zero = out[:, 0] == 0
    erased = zero.any(axis=(1, 2))
    assert 0.25 < erased.mean() < 0.55
    for z in zero[erased]:  # a size x size square of zeros, everything else untouched
        rows, cols = np.flatnonzero(z.any(1)), np.flatnonzero(z.any(0))
        assert z.sum() == size * size and len(rows) == len(cols) == size
        assert rows[-1] - rows[0] == cols[-1] - cols[0] == size - 1
    np.testing.assert_array_equal(out[~erased], x[~erased])
    # every position of the patch occurs (uniform top-left corner)
    corners = {(int(np.argmax(z.any(1))), int(np.argmax(z.any(0)))) for z in zero[erased]}
    assert len(corners) > 0.8 * (6 - size + 1) * (7 - size + 1) or erased.sum() < 20


def test_erase_that_does_not_fit_is_an_error():
    with pytest.raises(ValueError, match="erase_size 5 does not fit in 4x4"):
        augment_images(np.zeros((2, 4, 4)), rng_(), replace(IDENTITY, p_erase=0.5, erase_size=5))


def test_zoom_and_shift_move_a_dot_as_drawn():
    # A centred 2x2 block on a 0 background: zoom z scales its extent by z about the centre,
    # shift moves it by up to `shift` pixels; zooming out reads zeros past the edge.
    x = np.zeros((400, 1, 8, 8))
    x[:, :, 3:5, 3:5] = 1.0
    out = augment_images(x, rng_(3), replace(IDENTITY, zoom=(0.5, 2.0)))
    mass = out.sum(axis=(1, 2, 3)) / 4.0  # area relative to the original block: ~ z ** 2
    assert mass.min() < 0.5 and mass.max() > 2.0 and np.all((mass > 0.2) & (mass < 4.5))
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    cy = (out[:, 0] * i).sum(axis=(1, 2)) / out[:, 0].sum(axis=(1, 2))
    np.testing.assert_allclose(cy, 3.5, atol=1e-9)  # zoom alone keeps the centre
    moved = augment_images(x, rng_(3), replace(IDENTITY, shift=1.5))
    cy = (moved[:, 0] * i).sum(axis=(1, 2)) / moved[:, 0].sum(axis=(1, 2))
    cx = (moved[:, 0] * j).sum(axis=(1, 2)) / moved[:, 0].sum(axis=(1, 2))
    for c in (cx, cy):
        assert np.all(np.abs(c - 3.5) <= 1.5 + 1e-9) and c.std() > 0.5


def test_new_ops_off_keep_the_random_stream():
    """zoom, shift, erase and pixel noise draw nothing when off, so runs with older settings are unchanged:
    a view then takes exactly its 14 per-sample uniforms (flip, scale, ratio, two offsets, angle, jitter,
    brightness, contrast, their order, blur, sigma, solarize, noise), and each op turned on draws more.
    (This test compared two configs with these ops off both times, so it could not fail: a zoom drawn
    when off, a shift of 1 px taken as off, or noise drawn at p_noise 0 all passed it.)"""
    from byol_ref.augment import _draw_image_params

    n, chw = 5, (1, 8, 8)
    off = replace(digits_views()[0], zoom=(1.0, 1.0), shift=0.0, p_erase=0.0, p_noise=0.0)
    want = rng_(5)
    want.uniform(size=14 * n)
    for cfg in (off, replace(off, p_noise=0.5, noise_std=0.0), replace(off, noise_std=0.5)):
        rng = rng_(5)
        _draw_image_params(rng, n, cfg, chw)
        assert rng.bit_generator.state == want.bit_generator.state, cfg
    for on in (dict(zoom=(1.0, 1.1)), dict(shift=1.0), dict(p_erase=0.5), dict(p_noise=0.5, noise_std=0.05)):
        rng = rng_(5)
        _draw_image_params(rng, n, replace(off, **on), chw)
        assert rng.bit_generator.state != want.bit_generator.state, on
    # and a view with noise on at std 0 is the view without it (no eps was drawn to add)
    x = images(0, (n, 8, 8))
    np.testing.assert_array_equal(augment_images(x, rng_(5), replace(off, p_noise=0.5, noise_std=0.0), (8, 8)),
                                  augment_images(x, rng_(5), off, (8, 8)))


def test_probabilities_select_samples():
    x = np.full((2000, 1, 2, 2), 0.75)
    out = augment_images(x, rng_(4), replace(IDENTITY, p_solarize=0.3))
    frac = (out[:, 0, 0, 0] == 0.25).mean()
    assert 0.25 < frac < 0.35
    assert set(np.round(np.unique(out), 12)) == {0.25, 0.75}


# --------------------------------------------------------------------------- vectors


@given(seed=st.integers(0, 1000), dtype=st.sampled_from(DTYPES), n=st.integers(1, 6), d=st.integers(1, 9))
def test_vector_aug(seed, dtype, n, d):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)
    x0 = x.copy()
    out = augment_vectors(x, rng_(seed), VectorAug())
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(out, augment_vectors(x, rng_(seed), VectorAug()))
    np.testing.assert_array_equal(augment_vectors(x, rng_(seed), VectorAug.identity()), x)


def test_vector_mask_and_scale():
    x = np.ones((400, 50))
    out = augment_vectors(x, rng_(0), VectorAug(noise_std=0.0, p_mask=0.25, scale=(0.5, 2.0)))
    assert abs((out == 0).mean() - 0.25) < 0.02
    per_sample = np.where(out == 0, np.nan, out)
    np.testing.assert_allclose(np.nanmax(per_sample, 1), np.nanmin(per_sample, 1))  # one scale per row
    assert np.nanmin(per_sample) >= 0.5 and np.nanmax(per_sample) <= 2.0
    scales = np.nanmax(per_sample, 1)
    assert scales.min() < 0.6 and scales.max() > 1.9  # drawn per sample over the whole range
    x = np.arange(1.0, 6.0)[None].repeat(300, 0)
    out = augment_vectors(x, rng_(1), VectorAug(noise_std=0.0, p_mask=0.5, scale=(2.0, 2.0)))
    assert set(np.unique(out)) <= {0.0, *(2 * np.arange(1.0, 6.0))}  # the kept entries are the scaled ones


def test_two_views_on_vectors():
    ds = synthetic(64, 8, 2)
    v1, v2 = two_views(ds.x_train, rng_(), default_views_for(ds))
    assert v1.shape == ds.x_train.shape and not np.array_equal(v1, v2)


# --------------------------------------------------------------------------- defaults


def test_digits_views_are_asymmetric_and_mild():
    """Every field of the `make run` views, as digits_views' docstring gives them; view 2 differs in its
    blur and solarize only. (Once only some fields were checked: a doubled crop ratio or blur sigma passed
    every test; found by scripts/mutation_sweep.py.) VectorAug's defaults are its docstring's."""
    v1, v2 = digits_views()
    assert v1 == ImageAug() and v2 == replace(v1, p_blur=0.1, p_solarize=0.2)
    assert asdict(v1) == dict(crop_scale=(0.6, 1.0), crop_ratio=(3 / 4, 4 / 3), rotation=10.0, p_flip=0.0,
                              p_jitter=0.8, brightness=0.2, contrast=(0.7, 1.3), p_blur=0.5, blur_sigma=(0.1, 0.7),
                              blur_radius=1, p_solarize=0.0, solarize_threshold=0.5, p_noise=0.5, noise_std=0.05,
                              zoom=(1.0, 1.0), shift=0.0, p_erase=0.0, erase_size=2)
    assert asdict(VectorAug()) == dict(noise_std=0.1, p_mask=0.1, scale=(0.8, 1.2))


def test_affine_recipe_is_the_facts_h_recipe():
    v1, v2 = digits_views("affine")
    assert v1 == v2 and v1.crop_scale == (1.0, 1.0) and v1.zoom == (1 / 1.1, 1.1) and v1.shift == 1.0
    assert (v1.rotation, v1.p_jitter, v1.p_noise, v1.p_erase, v1.erase_size) == (10.0, 0.8, 0.5, 0.5, 2)
    assert v1.p_blur == v1.p_solarize == v1.p_flip == 0.0
    x = load_digits().x_train[:32]
    a, b = two_views(x, rng_(0), (v1, v2), (8, 8))
    assert a.shape == b.shape == x.shape and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="recipe must be"):
        digits_views("strong")


def test_default_views_for():
    assert default_views_for(load_digits()) == digits_views()
    assert all(isinstance(v, VectorAug) for v in default_views_for(synthetic(16, 4, 2)))
    big = synthetic(16, 4, 2)._replace(image_shape=(3, 64, 64))
    assert default_views_for(big)[0].blur_radius == 3
    with pytest.raises(TypeError, match="image_shape"):
        default_views_for(object())


# --------------------------------------------------------------------------- bad input


PROB = "is a probability and must be in [0, 1]"


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("p_flip", -0.1, PROB), ("p_jitter", 1.5, PROB), ("p_blur", 2.0, PROB), ("p_solarize", -1.0, PROB),
        ("p_noise", 1.01, PROB),
        ("crop_scale", (0.0, 1.0), "must satisfy low <= high within (0.0, 1.0]"),
        ("crop_scale", (0.8, 0.5), "must satisfy low <= high within (0.0, 1.0]"),
        ("crop_scale", (0.5, 1.2), "must satisfy low <= high within (0.0, 1.0]"),
        ("crop_scale", (0.5,), "must be a (low, high) pair"),
        ("crop_ratio", (0.0, 1.0), "must satisfy low <= high within (0.0, inf)"),
        ("crop_ratio", (2.0, 1.0), "must satisfy low <= high within (0.0, inf)"),
        ("rotation", -1.0, "must be in [0, 180.0]"), ("rotation", 200.0, "must be in [0, 180.0]"),
        ("brightness", -0.1, "must be in [0, inf)"),
        ("contrast", (1.2, 0.8), "must satisfy low <= high within [0.0, inf)"),
        ("blur_sigma", (0.0, 1.0), "must satisfy low <= high within (0.0, inf)"),
        ("blur_radius", -1, "must be an integer >= 0"), ("blur_radius", 1.5, "must be an integer >= 0"),
        ("solarize_threshold", 1.5, "must be in [0, 1.0]"), ("noise_std", -0.01, "must be in [0, inf)"),
        ("noise_std", float("nan"), "must be finite"),
        ("zoom", (0.0, 1.0), "must satisfy low <= high within (0.0, inf)"),
        ("zoom", (1.2, 0.9), "must satisfy low <= high within (0.0, inf)"),
        ("shift", -1.0, "must be in [0, inf)"), ("p_erase", 1.5, PROB),
        ("erase_size", 0, "must be an integer >= 1"), ("erase_size", 2.0, "must be an integer >= 1"),
    ],
)
def test_image_config_errors_name_the_field(field, value, expected):
    # The whole message: the class and field, what was expected, and the value got (match=field alone
    # took any ValueError that named the field, e.g. a NaN reported as out of range).
    with pytest.raises(ValueError, match="^" + re.escape(f"ImageAug.{field} {expected}, got {value!r}") + "$"):
        ImageAug(**{field: value})


def test_config_type_errors():
    with pytest.raises(TypeError, match="p_blur"):
        ImageAug(p_blur="0.5")
    with pytest.raises(TypeError, match="p_mask"):
        VectorAug(p_mask=True)


@pytest.mark.parametrize("field,value,expected", [("noise_std", -1.0, "must be in [0, inf)"), ("p_mask", 1.5, PROB),
                                                  ("scale", (2.0, 1.0), "must satisfy low <= high within [0.0, inf)")])
def test_vector_config_errors_name_the_field(field, value, expected):
    with pytest.raises(ValueError, match="^" + re.escape(f"VectorAug.{field} {expected}, got {value!r}") + "$"):
        VectorAug(**{field: value})


def test_configs_are_frozen_and_lists_become_tuples():
    cfg = ImageAug(crop_scale=[0.5, 1])
    assert cfg.crop_scale == (0.5, 1.0)
    hash(cfg)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'p_blur'"):
        cfg.p_blur = 0.2
    assert cfg.p_blur == 0.5
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'p_mask'"):
        VectorAug().p_mask = 0.5


def test_numpy_scalars_in_configs_are_stored_as_python_numbers():
    # A run's checkpoint records its views as JSON: a NumPy scalar kept as given (np.int64 blur_radius,
    # np.float32 p_blur) once passed the checks and failed json.dumps at the first checkpoint.
    import json

    from byol_ref.augment import views_from_dicts, views_to_dicts
    image = ImageAug(blur_radius=np.int64(2), erase_size=np.int32(3), p_blur=np.float32(0.5),
                     rotation=np.float32(5), brightness=np.int64(0), crop_scale=(np.float32(0.5), np.int64(1)))
    vector = VectorAug(noise_std=np.float32(0.25), p_mask=np.float16(0.5), scale=(np.int8(1), np.float64(2)))
    for cfg in (image, vector):
        for name, v in asdict(cfg).items():
            for x in v if isinstance(v, tuple) else (v,):
                assert type(x) in (int, float), (name, type(x))
    dicts = json.loads(json.dumps(views_to_dicts((image, vector))))
    assert views_from_dicts(dicts) == (image, vector)
    assert (image.blur_radius, image.erase_size, image.p_blur, vector.p_mask) == (2, 3, 0.5, 0.5)


def test_bad_image_shapes():
    x = images(0, (2, 64))
    with pytest.raises(ValueError, match="image_shape"):
        augment_images(x, rng_(), ImageAug(), (7, 7))
    with pytest.raises(ValueError, match="image_shape is required"):
        augment_images(x, rng_(), ImageAug())
    with pytest.raises(ValueError, match="image_shape"):
        augment_images(images(0, (2, 8, 8)), rng_(), ImageAug(), (4, 16))
    with pytest.raises(ValueError, match="image_shape"):
        augment_images(x, rng_(), ImageAug(), (8, -8))
    with pytest.raises(ValueError, match="shape"):
        augment_images(images(0, (64,)), rng_(), ImageAug(), (8, 8))


def test_bad_arguments():
    x = images(0, (2, 64))
    with pytest.raises(TypeError, match="float32 or float64"):
        augment_images((x * 16).astype(np.int64), rng_(), ImageAug(), (8, 8))
    with pytest.raises(TypeError, match="rng"):
        augment_images(x, 0, ImageAug(), (8, 8))
    with pytest.raises(TypeError, match="cfg"):
        augment_images(x, rng_(), VectorAug(), (8, 8))
    with pytest.raises(TypeError, match="x must be"):
        augment_vectors([[0.0]], rng_(), VectorAug())
    with pytest.raises(ValueError, match="cfgs"):
        two_views(x, rng_(), ImageAug(), (8, 8))
    with pytest.raises(TypeError, match=r"cfgs\[1\]"):
        two_views(x, rng_(), (ImageAug(), "x"), (8, 8))


# --------------------------------------------------------------------------- numpy vs cupy


@pytest.mark.parametrize("dtype", DTYPES)
def test_backend_matches_numpy(backend, dtype):
    """Same seed, same views on the device: parameters are drawn on the host."""
    x = load_digits().x_train[:64].astype(dtype)
    cfgs = (replace(digits_views()[0], p_flip=0.5, zoom=(0.9, 1.1), shift=1.0, p_erase=0.5), digits_views()[1])
    ref = two_views(x, rng_(7), cfgs, (8, 8))
    got = two_views(backend.asarray(x, dtype=dtype), rng_(7), cfgs, (8, 8))
    eps = np.finfo(dtype).eps
    for r, g in zip(ref, got):
        g = backend.to_numpy(g)
        assert g.dtype == dtype
        # Dtype-aware tolerance (atol + |ref| * eps): a few ops per pixel, all O(1) values.
        np.testing.assert_allclose(g, r, rtol=64 * eps, atol=64 * eps)
    vx = synthetic(32, 8, 2).x_train.astype(dtype)
    ref_v = augment_vectors(vx, rng_(1), VectorAug())
    got_v = backend.to_numpy(augment_vectors(backend.asarray(vx, dtype=dtype), rng_(1), VectorAug()))
    np.testing.assert_allclose(got_v, ref_v, rtol=64 * eps, atol=64 * eps)


# --------------------------------------------------------------------------- bad input found by an audit


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad):
    x = images(0, (3, 64))
    x[1, 5] = bad
    with pytest.raises(ValueError, match=r"x has 1 non-finite value\(s\) \(NaN or inf\), first at index \(1, 5\)"):
        augment_images(x, rng_(), ImageAug.identity(), (8, 8))
    with pytest.raises(ValueError, match=r"x has 1 non-finite value\(s\) \(NaN or inf\), first at index \(1, 5\)"):
        augment_vectors(x, rng_(), VectorAug())
    with pytest.raises(ValueError, match="non-finite"):
        two_views(x, rng_(), digits_views(), (8, 8))
    # the training step skips the scan (fit checked the split once): NaN then flows through
    v1, _ = two_views(x, rng_(), (VectorAug(), VectorAug()), check_finite=False)
    assert np.isnan(v1[1, 5]) or np.isinf(v1[1, 5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_tiny_blur_sigma_is_the_identity_not_nan(dtype):
    """sigma^2 underflowing to 0 made the centre tap 0/0 = NaN; below 0.01 px the kernel is exactly
    the identity anyway, so raising sigma to 0.01 px changes no result."""
    x = images(1, (4, 2, 6, 5), dtype)
    for s in (1e-300, 1e-30, 1e-20, 0.005, 0.01):
        np.testing.assert_array_equal(gaussian_blur(x, np.full(4, s), 1), x)
        np.testing.assert_array_equal(gaussian_blur(x, np.full(4, s), 3), x)
    # through the config: a view blurred with a tiny sigma equals the same draw not blurred
    tiny = ImageAug(blur_sigma=(1e-300, 1e-300), p_blur=1.0)
    got = augment_images(x, rng_(3), tiny)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, augment_images(x, rng_(3), replace(tiny, p_blur=0.0)))


def test_gaussian_blur_arguments():
    x = images(2, (3, 1, 5, 5))
    # one sigma for every image is the same as that sigma repeated
    np.testing.assert_array_equal(gaussian_blur(x, 0.8, 1), gaussian_blur(x, np.full(3, 0.8), 1))
    with pytest.raises(ValueError, match=r"sigma must be one number or one per image, shape \(3,\), got shape \(2,\)"):
        gaussian_blur(x, np.ones(2), 1)
    for bad in (0.0, -1.0, np.nan, np.array([1.0, np.inf, 1.0])):
        with pytest.raises(ValueError, match="sigma must be finite and > 0"):
            gaussian_blur(x, bad, 1)
    with pytest.raises(TypeError, match="sigma must be a number or an array of numbers, got 'a'"):
        gaussian_blur(x, "a", 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=f"radius must be an integer >= 0, got {bad!r}"):
            gaussian_blur(x, 1.0, bad)
    with pytest.raises(ValueError, match=r"x must be images of shape \(N, C, H, W\), got \(3, 25\)"):
        gaussian_blur(x.reshape(3, 25), 1.0, 1)
    with pytest.raises(TypeError, match="x must be a numpy or cupy array, got list"):
        gaussian_blur(x.tolist(), 1.0, 1)

    assert np.isfinite(gaussian_blur(x, 0.8, 5)).all()  # a radius as wide as the image is taken
    with pytest.raises(ValueError, match=r"radius=1000000000 is wider than the 5x5 images: taps beyond them read only "
                                         r"the zero padding; use a radius <= 5"):
        gaussian_blur(x, 1.0, 10**9)  # (it would allocate and loop over 2e9 taps)
    for p in (1.0, 0.5, 1e-9):  # checked before any draw, not only when a blur is drawn
        wide = ImageAug(p_blur=p, blur_radius=6)
        with pytest.raises(ValueError, match=r"cfg.blur_radius=6 is wider than the 5x5 images"):
            augment_images(x, np.random.default_rng(0), wide)
    tall = np.random.default_rng(0).uniform(size=(1, 1, 4, 16))  # H x W, and the wider side bounds the radius
    says = "is wider than the 4x16 images: taps beyond them read only the zero padding; use a radius <= 16 " \
           "(official: H / 20)"
    with pytest.raises(ValueError, match=re.escape("radius=17 " + says)):
        gaussian_blur(tall, 1.0, 17)
    with pytest.raises(ValueError, match=re.escape("cfg.blur_radius=17 " + says)):
        augment_images(tall, np.random.default_rng(0), ImageAug(p_blur=0.5, blur_radius=17))
    augment_images(x, np.random.default_rng(0), replace(wide, p_blur=0.0))  # never blurs: nothing to say


def test_check_finite_is_a_bool():
    x = images(5, (2, 1, 4, 4))
    for call in (lambda flag: augment_images(x, np.random.default_rng(0), ImageAug(), check_finite=flag),
                 lambda flag: augment_vectors(x.reshape(2, 16), np.random.default_rng(0), VectorAug(),
                                              check_finite=flag)):
        with pytest.raises(TypeError, match="check_finite must be True or False, got 'no'"):
            call("no")


def test_crop_resize_arguments():
    """The boxes, angles and flips are host numbers drawn per image: checked, as a NaN box would
    index out of bounds and a box of negative size would read zeros without a word."""
    x = images(4, (2, 1, 4, 4))
    full = np.tile([0.0, 0.0, 4.0, 4.0], (2, 1))
    np.testing.assert_array_equal(crop_resize(x, full), x)  # the identity
    for boxes, err, says in (
            (np.array([[0, 0, 4, 4], [np.nan, 0, 4, 4]]), ValueError, r"boxes must be finite, got \[\[nan"),
            (np.array([[0, 0, -4, -4], [0, 0, 4, 4.0]]), ValueError, r"boxes must have a width and height > 0"),
            (np.tile([0, 0, 4, 4.0], (3, 1)), ValueError, r"boxes must have shape \(2, 4\), one per image, got "
                                                          r"\(3, 4\)"),
            ("abc", TypeError, "boxes must be an array of numbers, got str")):
        with pytest.raises(err, match=says):
            crop_resize(x, boxes)
    for kw, says in ((dict(angles=np.zeros(3)), r"angles must have shape \(2,\), one per image, got \(3,\)"),
                     (dict(angles=np.array([np.inf, 0.0])), r"angles must be finite, got \[inf\]"),
                     (dict(flips=np.zeros(3, bool)), r"flips must have shape \(2,\), one per image, got \(3,\)")):
        with pytest.raises(ValueError, match=says):
            crop_resize(x, full, **kw)
    with pytest.raises(TypeError, match="x must be float32 or float64, got dtype uint8"):
        crop_resize((x * 255).astype(np.uint8), full)
    with pytest.raises(ValueError, match=r"x must be images of shape \(N, C, H, W\), got \(2, 16\)"):
        crop_resize(x.reshape(2, 16), full)


def test_solarize_arguments():
    x = images(3, (2, 1, 4, 4))
    np.testing.assert_array_equal(solarize(x, np.float32(0.5)), solarize(x, 0.5))
    for bad in ("a", None, True):
        with pytest.raises(TypeError, match=f"threshold must be a real number, got {bad!r}"):
            solarize(x, bad)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="threshold must"):
            solarize(x, bad)
    with pytest.raises(TypeError, match="x must be float32 or float64, got dtype int64"):
        solarize((x * 16).astype(np.int64), 8)


def test_views_come_in_pairs():
    from byol_ref.augment import views_from_dicts, views_to_dicts

    pair = views_to_dicts(digits_views())
    assert views_from_dicts(pair) == digits_views()
    for dicts in ([{"kind": "vector"}], [], pair + pair[:1]):
        with pytest.raises(ValueError, match=rf"dicts must hold 2 view configs \(view 1, view 2\), got {len(dicts)}"):
            views_from_dicts(dicts)
    with pytest.raises(ValueError, match=r"views must hold 2 view configs \(view 1, view 2\), got 1"):
        views_to_dicts([ImageAug()])
    with pytest.raises(TypeError, match="each view must be a dict with a 'kind'"):
        views_from_dicts(["image", "image"])
    # one config, or one dict, is not a pair (iterating them failed, or gave the dict's keys as "views")
    with pytest.raises(TypeError, match=r"views must be a list or tuple of 2 ImageAug or VectorAug configs "
                                        r"\(view 1, view 2\), got ImageAug"):
        views_to_dicts(ImageAug())
    with pytest.raises(TypeError, match=r"dicts must be a list or tuple of 2 view dicts \(view 1, view 2\), got dict"):
        views_from_dicts(pair[0])


def test_what_the_mutation_audit_found_no_test_for_in_the_augmentations():
    x = images(6, (2, 1, 4, 4))
    with pytest.raises(ValueError, match="boxes must have a width and height > 0"):
        crop_resize(x, np.array([[0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 4.0, 4.0]]))  # a box of width 0
    wide = images(7, (1, 1, 4, 16))
    assert np.isfinite(gaussian_blur(wide, 1.0, 10)).all()  # the radius is bounded by the longer side
    square = images(8, (3, 8, 8))
    augment_images(square, np.random.default_rng(0), ImageAug(p_blur=1.0, blur_radius=8))  # = H: taken
    with pytest.raises(TypeError, match="check_finite must be True or False, got 1"):
        two_views(square.reshape(3, 64), np.random.default_rng(0), digits_views(), (8, 8), check_finite=1)


# ---------------------------------------------------------------------------------------
# What a mutation audit found untested: the draws' distributions, a flip on its own, per-channel noise.
# ---------------------------------------------------------------------------------------


def test_crop_area_fraction_is_uniform_not_log_uniform():
    """BYOL_FACTS a8: area fraction s ~ U[low, high] (log-uniform would have mean 0.8 / ln 9 = 0.36 here)."""
    from byol_ref.augment import _draw_image_params

    p = _draw_image_params(rng_(1), 20_000, replace(IDENTITY, crop_scale=(0.1, 0.9), crop_ratio=(1.0, 1.0)),
                           (1, 16, 16))
    area = p.boxes[:, 2] * p.boxes[:, 3] / 256.0
    np.testing.assert_allclose(area.min(), 0.1, atol=1e-3)
    assert abs(area.mean() - 0.5) < 0.01 and abs(np.median(area) - 0.5) < 0.02


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.7])  # (q = r H / W within [s, 1 / s]: no clamp)
def test_crop_aspect_ratio_is_the_boxes_own_on_non_square_images(ratio):
    """The drawn ratio is the box's width / height in pixels, whatever the image's own shape (8 x 10 here)."""
    from byol_ref.augment import _draw_image_params

    cfg = replace(IDENTITY, crop_scale=(0.5, 0.5), crop_ratio=(ratio, ratio))
    p = _draw_image_params(rng_(2), 50, cfg, (1, 8, 10))
    np.testing.assert_allclose(p.boxes[:, 2] / p.boxes[:, 3], ratio, rtol=1e-12)
    np.testing.assert_allclose(p.boxes[:, 2] * p.boxes[:, 3], 0.5 * 80, rtol=1e-12)


def test_zoom_is_log_uniform():
    """zoom (1/2, 2) is drawn log-uniformly: median magnification 1 (a uniform draw's would be 1.25)."""
    from byol_ref.augment import _draw_image_params

    p = _draw_image_params(rng_(3), 20_000, replace(IDENTITY, zoom=(0.5, 2.0)), (1, 8, 8))
    z = 8.0 / p.boxes[:, 2]  # the box shrinks to 8 / z
    assert abs(np.median(np.log(z))) < 0.03 and z.min() < 0.51 and z.max() > 1.99


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_flip_alone_mirrors_the_image(dtype):
    """Full box, no rotation, p_flip 1: every image comes back mirrored (not skipped as the identity)."""
    x = rng_(4).random((5, 2, 6, 7)).astype(dtype)
    out = augment_images(x, rng_(5), replace(IDENTITY, p_flip=1.0))
    np.testing.assert_array_equal(out, x[..., ::-1])


def test_default_blur_radius_follows_the_shorter_side():
    ds = synthetic(16, 4, 2)._replace(image_shape=(1, 40, 100))
    assert default_views_for(ds)[0].blur_radius == 2  # int(min(40, 100) / 20)


def test_pixel_noise_is_drawn_per_channel():
    x = np.full((400, 3, 4, 4), 0.5)
    d = augment_images(x, rng_(6), replace(IDENTITY, p_noise=1.0, noise_std=0.05)) - x
    c = np.corrcoef(d[:, 0].ravel(), d[:, 1].ravel())[0, 1]
    assert abs(c) < 0.1


def test_vector_noise_has_the_configured_std():
    from byol_ref.augment import VectorAug, augment_vectors

    out = augment_vectors(np.zeros((400, 50)), rng_(15), VectorAug(noise_std=0.3, p_mask=0.0, scale=(1.0, 1.0)))
    assert abs(out.std() - 0.3) < 0.01


def test_crop_blur_and_erase_arguments_of_the_wrong_kind_are_named():
    """Found by an API audit: float flips were read as truthiness (0.3 and NaN mirrored the image),
    complex angles or boxes lost their imaginary part with only a ComplexWarning, object ones were
    parsed, a sigma of "1" was taken, and erase_mask took a negative size (no patch) and answered an
    (M, 2) ``at`` with a broadcasting error."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 1, 8, 8))
    boxes = np.tile([0.0, 0.0, 8.0, 8.0], (3, 1))
    for flips in (np.array([0.3, 0.0, np.nan]), np.array([2, 0, 1]), np.array([1j, 0, 0])):
        with pytest.raises(TypeError, match=r"flips must be bools \(or 0/1\), one per image"):
            crop_resize(x, boxes, None, flips)
    for flips in (np.array([True, False, True]), [1, 0, 1]):  # bools, or 0/1
        np.testing.assert_array_equal(crop_resize(x, boxes, None, flips)[1], x[1])
    for name, args in (("angles", (boxes, np.array([1j, 0, 0]))), ("angles", (boxes, np.array([1.0, 2, 3], object))),
                       ("boxes", (boxes.astype(complex),)), ("boxes", (boxes > 0,))):
        with pytest.raises(TypeError, match=f"{name} must be an array of numbers, got ndarray of dtype"):
            crop_resize(x, *args)
    for sigma in ("1", ["1", "2", "3"], 1 + 0j):
        with pytest.raises(TypeError, match="sigma must be a number or an array of numbers, got .*dtype"):
            gaussian_blur(x, sigma, 1)
    erase, at = np.array([True, False, True]), np.zeros((3, 2), dtype=int)
    assert erase_mask(erase, at, 2, (8, 8)).sum() == 8
    with pytest.raises(ValueError, match=r"at must be an integer array of shape \(3, 2\).* of shape \(2, 2\)"):
        erase_mask(erase, at[:2], 2, (8, 8))
    with pytest.raises(ValueError, match="size must be an int >= 1, got -1"):
        erase_mask(erase, at, -1, (8, 8))
    with pytest.raises(TypeError, match="erase must be a"):
        erase_mask(erase.astype(float), at, 2, (8, 8))


def test_float_flips_and_erase_mask_arguments_of_the_wrong_shape_or_kind_are_refused():
    """Found by a mutation audit: with its check dropped, each of these passed every test: flips of floats
    that are exactly 0.0 and 1.0 (a flip is a bool or a 0/1 integer, whatever a float's value), an erase of
    shape (N, 1), an ``at`` of floats, an hw of three sizes (C read as H) or of sizes no image has."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 1, 8, 8))
    boxes = np.tile([0.0, 0.0, 8.0, 8.0], (3, 1))
    with pytest.raises(TypeError, match=r"flips must be bools \(or 0/1\), one per image, got dtype float64$"):
        crop_resize(x, boxes, None, np.array([1.0, 0.0, 1.0]))
    erase, at = np.array([True, False, True]), np.zeros((3, 2), dtype=int)
    with pytest.raises(TypeError, match=r"erase must be a \(N,\) bool array, got dtype bool of shape \(3, 1\)"):
        erase_mask(erase[:, None], at, 2, (8, 8))
    with pytest.raises(ValueError, match=r"at must be an integer array of shape \(3, 2\).*got dtype float64 of "
                                         r"shape \(3, 2\)"):
        erase_mask(erase, at.astype(float), 2, (8, 8))
    with pytest.raises(ValueError, match=r"hw must be the images' \(H, W\), got \(1, 8, 8\)"):
        erase_mask(erase, at, 2, (1, 8, 8))  # (its C would be read as H)
    for hw in ((8, 0), (8.0, 8), [8, True]):
        with pytest.raises(ValueError, match=r"hw must be \(H, W\) or \(C, H, W\) of positive ints, got "):
            erase_mask(erase, at, 2, hw)


# ---------------------------------------------------------------------------------------
# A second mutation audit: the zoom's centre, every per-sample draw's range, the blur's padding on both axes.
# ---------------------------------------------------------------------------------------


def test_zoom_magnifies_about_the_box_centre():
    """A zoom shrinks or grows the box about its centre: with the full crop and no shift, every box stays
    centred on the image (8 x 10 here, so the two axes are told apart), and zoom 2 is the middle half."""
    from byol_ref.augment import _draw_image_params

    p = _draw_image_params(rng_(8), 500, replace(IDENTITY, zoom=(0.5, 2.0)), (1, 8, 10))
    np.testing.assert_allclose(p.boxes[:, 0] + p.boxes[:, 2] / 2, 5.0, rtol=1e-12)
    np.testing.assert_allclose(p.boxes[:, 1] + p.boxes[:, 3] / 2, 4.0, rtol=1e-12)
    p = _draw_image_params(rng_(8), 3, replace(IDENTITY, zoom=(2.0, 2.0)), (1, 8, 10))
    np.testing.assert_allclose(p.boxes, np.tile([2.5, 2.0, 5.0, 4.0], (3, 1)), rtol=1e-12)


def test_each_per_sample_draw_stays_in_its_range_and_differs_per_sample():
    """Every per-sample scalar is drawn uniformly in its own [low, high] (never beyond it), once per sample,
    not once per batch: 20 000 samples give 20 000 distinct values with the range's midpoint as their mean."""
    from byol_ref.augment import _draw_image_params

    cfg = replace(IDENTITY, rotation=10.0, brightness=0.3, contrast=(0.6, 1.4), blur_sigma=(0.2, 0.9))
    p = _draw_image_params(rng_(9), 20_000, cfg, (1, 16, 16))
    for name, values, lo, hi in (("angle", p.angle, -10.0, 10.0), ("delta", p.delta, -0.3, 0.3),
                                 ("factor", p.factor, 0.6, 1.4), ("sigma", p.sigma, 0.2, 0.9)):
        span = hi - lo
        assert lo <= values.min() < lo + 0.01 * span and hi - 0.01 * span < values.max() <= hi, name
        assert abs(values.mean() - (lo + hi) / 2) < 0.01 * span, name  # standard error 0.002 * span
        assert np.unique(values).size == values.size, name


def test_blur_zero_pads_rows_and_columns():
    """BYOL_FACTS a8: 'SAME' zero padding on both passes. A constant image loses the outer tap's weight at
    every edge, so the blur of ones is the outer product of (1 - k1, 1, ..., 1, 1 - k1) with itself."""
    k1 = math.exp(-0.5) / (1 + 2 * math.exp(-0.5))  # the outer tap of sigma 1, radius 1, normalised
    rows, cols = (np.array([1 - k1] + [1.0] * (m - 2) + [1 - k1]) for m in (5, 6))
    out = gaussian_blur(np.ones((1, 1, 5, 6)), np.array([1.0]), 1)
    np.testing.assert_allclose(out[0, 0], np.outer(rows, cols), atol=1e-15)


def test_ragged_boxes_angles_and_sigmas_are_refused_by_name():
    """Boxes, angles or sigmas given as a ragged list (rows of different lengths), which NumPy cannot
    make an array of, are named with their type, as one that is no array of numbers."""
    x = images(10, (2, 1, 4, 4))
    full = [[0.0, 0.0, 4.0, 4.0]] * 2
    with pytest.raises(TypeError, match=r"^boxes must be an array of numbers, got list$"):
        crop_resize(x, [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0]])
    with pytest.raises(TypeError, match=r"^angles must be an array of numbers, got list$"):
        crop_resize(x, full, angles=[1.0, [2.0, 3.0]])
    with pytest.raises(TypeError, match=r"^sigma must be a number or an array of numbers, got \[1.0, \[2.0, 3.0\]\]$"):
        gaussian_blur(x, [1.0, [2.0, 3.0]], 1)


def test_augment_vectors_refuses_an_image_config_and_images():
    """augment_vectors takes a VectorAug and (N, D) features: an ImageAug (a view of digits_views) or a
    batch of images is named, with what was got."""
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"^cfg must be a VectorAug, got ImageAug$"):
        augment_vectors(np.zeros((3, 4)), rng, digits_views()[0])
    for x in (np.zeros(4), images(11, (2, 1, 4, 4))):
        with pytest.raises(ValueError, match=rf"^x must be feature vectors of shape \(N, D\), got "
                                             rf"{re.escape(str(x.shape))}$"):
            augment_vectors(x, rng, VectorAug())


# ---------------------------------------------------------------------------------------
# What scripts/mutation_sweep.py found untested (2026-12-02).
# ---------------------------------------------------------------------------------------


def test_a_read_outside_the_image_is_background_and_the_half_pixel_band_is_the_border():
    """_bilinear: the image fills [-0.5, W - 0.5] x [-0.5, H - 0.5] in index coordinates; inside, a point
    in the outer half-pixel band reads the border pixel (clamped), outside it reads 0 (the corners a
    rotation uncovers). Read at the band's ends and a quarter pixel beyond them, on an image of ones.
    Every change to the inside test (strict for loose, a band of 1 for 0.5, W + 0.5 for W - 0.5) passed
    every test: nothing read there."""
    from byol_ref.augment import _bilinear

    h, w = 3, 5
    x = np.ones((1, 1, h, w))
    ends = {"x": [-0.5, w - 0.5], "y": [-0.5, h - 0.5]}
    beyond = {"x": [-0.75, w - 0.25], "y": [-0.75, h - 0.25]}
    for axis in ("x", "y"):
        for where, want in ((ends, 1.0), (beyond, 0.0)):
            for v in where[axis]:
                sx, sy = (np.full((1, 1, 1), v), np.full((1, 1, 1), 1.0))[:: 1 if axis == "x" else -1]
                assert _bilinear(x, sx, sy)[0, 0, 0, 0] == want, (axis, v)
    # a full-box 45-degree turn: the corners come from outside the image
    turned = crop_resize(np.ones((1, 1, 8, 8)), np.array([[0.0, 0.0, 8.0, 8.0]]), angles=np.array([45.0]))
    assert turned[0, 0, 0, 0] == 0.0 and turned[0, 0, 4, 4] == 1.0


def test_the_config_checks_take_the_ends_of_their_intervals():
    """Each documented closed end is taken: rotation 180, a probability of 0 or 1, a threshold of 1,
    contrast and vector scale from 0, a crop of the whole image; an open end (crop scale, ratio, zoom,
    sigma at 0) is refused. A check made strict at a closed end passed every test."""
    ImageAug(rotation=180.0, p_flip=1.0, p_jitter=0.0, solarize_threshold=1.0, contrast=(0.0, 0.0),
             crop_scale=(1.0, 1.0), brightness=0.0, noise_std=0.0, shift=0.0)
    VectorAug(scale=(0.0, 0.0), p_mask=1.0, noise_std=0.0)
    for field in ("crop_scale", "crop_ratio", "zoom", "blur_sigma"):
        with pytest.raises(ValueError, match=rf"ImageAug\.{field} must satisfy low <= high within \(0.0, "):
            ImageAug(**{field: (0.0, 1.0)})
