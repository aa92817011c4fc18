"""Tests for byol_ref.schedules: warm-up + cosine learning rate and the target EMA rate tau."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from byol_ref.schedules import target_tau, warmup_cosine_lr


def lr(k, **kw):
    base = dict(base_lr=0.2, batch_size=4096, total_steps=100, warmup_steps=10)
    base.update(kw)
    return warmup_cosine_lr(k, **base)


# ---------------------------------------------------------------------------------------------
# learning rate
# ---------------------------------------------------------------------------------------------

def test_lr_official_values():
    peak = 0.2 * 4096 / 256  # 3.2, BYOL_FACTS a6
    assert lr(0) == 0.0                          # eta_0 = 0: the first update is a no-op
    assert lr(5) == pytest.approx(peak / 2, rel=1e-15)
    assert lr(9) == pytest.approx(peak * 9 / 10, rel=1e-15)
    assert lr(10) == pytest.approx(peak, rel=1e-15)  # end of warm-up: the peak
    assert lr(55) == pytest.approx(peak / 2, rel=1e-12)  # half-way through the cosine
    assert lr(100) == 0.0                        # exactly final_lr at K ...
    assert lr(10_000) == 0.0                     # ... and after
    assert isinstance(lr(3), float) and isinstance(lr(50), float)


def test_lr_paper_schedule_1000_epochs():
    # B = 4096, 1000 epochs: K = 312,784, W = 3,127, peak 0.2 * 16 = 3.2 (BYOL_FACTS a6).
    kw = dict(base_lr=0.2, batch_size=4096, total_steps=312_784, warmup_steps=3_127)
    assert warmup_cosine_lr(0, **kw) == 0.0
    assert warmup_cosine_lr(3_127, **kw) == pytest.approx(3.2, rel=1e-15)
    assert warmup_cosine_lr(312_784, **kw) == 0.0


def test_lr_final_and_warmup_start():
    peak = 3.2
    assert lr(0, warmup_start=0.1) == 0.1
    assert lr(5, warmup_start=0.1) == pytest.approx(0.1 + (peak - 0.1) / 2, rel=1e-15)
    assert lr(10, final_lr=0.0032) == pytest.approx(peak, rel=1e-15)
    assert lr(55, final_lr=0.0032) == pytest.approx((peak + 0.0032) / 2, rel=1e-12)
    assert lr(100, final_lr=0.0032) == 0.0032
    assert lr(500, final_lr=0.0032) == 0.0032


def test_lr_warmup_offset_lightly():
    peak = 3.2
    assert lr(0, warmup_offset=1) == pytest.approx(peak / 10, rel=1e-15)  # (k + 1)/W
    assert lr(9, warmup_offset=1) == pytest.approx(peak, rel=1e-15)       # peak reached at W - 1
    assert lr(10, warmup_offset=1) == pytest.approx(peak, rel=1e-15)
    assert lr(20, warmup_offset=1) == lr(20)                              # cosine phase unchanged


def test_lr_rounding_float32_is_the_official_float32_schedule():
    """deepmind's learning_schedule under jax_enable_x64: the warm-up is float32 arithmetic,
    float32(float32(k) / W) * float32(peak), and jnp.where with that float32 branch makes the
    cosine phase float32 too (checked against the official code; see docs/verifying.md)."""
    f32 = np.float32
    kw = dict(base_lr=0.2, batch_size=96, total_steps=20, warmup_steps=3)  # peak 0.075: not a float32
    peak = 0.2 * 96 / 256
    for k in range(25):
        exact = warmup_cosine_lr(k, **kw)
        rounded = warmup_cosine_lr(k, **kw, lr_rounding="float32")
        if k < 3:
            want = float(f32(f32(k) / f32(3)) * f32(peak))  # the float32 operations themselves
        else:
            want = float(f32(exact))
        assert rounded == want and isinstance(rounded, float), k
        assert rounded == pytest.approx(exact, rel=1e-7)
    assert warmup_cosine_lr(1, **kw, lr_rounding="float32") != warmup_cosine_lr(1, **kw)  # 1/3 is not a float32
    # Without a warm-up the official value is a float64 (no float32 branch): nothing is rounded.
    no_warmup = dict(kw, warmup_steps=0)
    assert all(warmup_cosine_lr(k, **no_warmup, lr_rounding="float32") == warmup_cosine_lr(k, **no_warmup)
               for k in range(21))
    with pytest.raises(ValueError, match="lr_rounding must be 'exact' or 'float32'.*got 'float16'"):
        warmup_cosine_lr(0, **kw, lr_rounding="float16")
    # W = K: warm-up only, then the end value, rounded too (0.1 is not a float32).
    only = dict(kw, warmup_steps=20, final_lr=0.1)
    assert warmup_cosine_lr(25, **only, lr_rounding="float32") == float(f32(0.1)) != 0.1
    # A warmup_start (the official code has none) keeps every value a float32 as well.
    start = warmup_cosine_lr(0, **kw, warmup_start=1e-3, lr_rounding="float32")
    assert start == float(f32(1e-3)) != 1e-3
    with pytest.raises(ValueError, match="exceeds float32's largest value"):
        warmup_cosine_lr(1, base_lr=1e300, batch_size=256, total_steps=10, warmup_steps=3, lr_rounding="float32")
    assert warmup_cosine_lr(1, base_lr=1e300, batch_size=256, total_steps=10, warmup_steps=3) > 1e299  # exact: fine


def _solo_learn_lr(k, *, peak, start, K, W):
    """solo-learn's LinearWarmupCosineAnnealingLR as its chainable steps describe it: start at
    step 0, add (peak - start) / (W - 1) per warm-up step, the peak at step W, then cosine."""
    if k == 0:
        return start
    if k < W:
        return _solo_learn_lr(k - 1, peak=peak, start=start, K=K, W=W) + (peak - start) / (W - 1)
    return 0.5 * peak * (1 + math.cos(math.pi * (min(k, K) - W) / (K - W)))


def _lightly_lr(k, *, peak, K, W, end=0.001):
    """lightly's CosineWarmupScheduler (a factor on the peak): (k + 1) / W in the warm-up, then
    cosine_schedule(k - W, K - W), which divides by its max_steps - 1 and ends one step early."""
    if k < W:
        return peak * (k + 1) / W
    s, m = k - W, K - W
    if m <= 1 or s >= m - 1:
        return peak * end
    return peak * (end - (end - 1) * (math.cos(math.pi * s / (m - 1)) + 1) / 2)


@pytest.mark.parametrize("K, W", [(20, 4), (1000, 10), (7, 2), (5, 1)])
def test_lr_solo_learn_and_lightly_denominators(K, W):
    peak = 0.2 * 4096 / 256
    for k in range(K + 2):
        solo = warmup_cosine_lr(k, base_lr=0.2, batch_size=4096, total_steps=K, warmup_steps=W, warmup_start=3e-5,
                                warmup_denominator="W-1")
        assert solo == pytest.approx(_solo_learn_lr(k, peak=peak, start=3e-5, K=K, W=W), rel=1e-12, abs=1e-15), k
        light = warmup_cosine_lr(k, base_lr=0.2, batch_size=4096, total_steps=K, warmup_steps=W, warmup_offset=1,
                                 final_lr=0.001 * peak, cosine_denominator="K-W-1")
        assert light == pytest.approx(_lightly_lr(k, peak=peak, K=K, W=W), rel=1e-12), k
    # The default divides by W and K - W: solo-learn's peak comes one step earlier, lightly's end one step earlier.
    if W > 1:
        assert lr(W - 1, total_steps=K, warmup_steps=W) < peak
    assert lr(K - 1, total_steps=K, warmup_steps=W) > 0


def test_lr_no_warmup_and_warmup_only():
    assert lr(0, warmup_steps=0) == pytest.approx(3.2, rel=1e-15)
    assert lr(100, warmup_steps=0) == 0.0
    # W = K: the whole run is warm-up; at and after K the schedule sits at final_lr.
    assert lr(99, warmup_steps=100) == pytest.approx(3.2 * 99 / 100, rel=1e-15)
    assert lr(100, warmup_steps=100, final_lr=0.01) == 0.01
    assert lr(1000, warmup_steps=100) == 0.0


def test_lr_batch_scale():
    assert lr(10, batch_size=512, batch_scale=512) == pytest.approx(0.2, rel=1e-15)


@pytest.mark.parametrize("kw, arg", [
    (dict(warmup_steps=101), "warmup_steps"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(total_steps=0), "total_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(base_lr=-0.1), "base_lr"),
    (dict(base_lr=float("nan")), "base_lr"),
    (dict(final_lr=-1.0), "final_lr"),
    (dict(warmup_start=-1.0), "warmup_start"),
    (dict(warmup_offset=2), "warmup_offset"),
    (dict(warmup_denominator="W-2"), "warmup_denominator"),
    (dict(cosine_denominator="K"), "cosine_denominator"),
    (dict(warmup_offset=1, warmup_denominator="W-1"), "overshoot"),
    (dict(batch_scale=0), "batch_scale"),
    # a bool is no count and a string no rate, though int() and float() read them
    (dict(total_steps=True), r"total_steps must be an integer >= 1, got True"),
    (dict(warmup_steps=False), r"warmup_steps must be an integer >= 0, got False"),
    (dict(base_lr="0.2"), r"base_lr must be a real number in \[0.0, inf\), got '0.2'"),
    (dict(final_lr=True), r"final_lr must be a real number"),
    (dict(warmup_offset=0.0), r"warmup_offset must be 0 \(official\) or 1 \(lightly\), got 0.0"),
])
def test_lr_validation(kw, arg):
    with pytest.raises(ValueError, match=arg):
        lr(5, **kw)


@pytest.mark.parametrize("step", [-1, 1.5, "3"])
def test_lr_bad_step(step):
    # "step" alone would also match a message about total_steps or warmup_steps: pin the argument
    # itself (at the start), what it must be, and what it got.
    with pytest.raises(ValueError, match=rf"^step must be an integer >= 0, got {re.escape(repr(step))}$"):
        lr(step)


@given(
    K=st.integers(1, 300),
    frac=st.floats(0, 1),
    base_lr=st.floats(0, 5),
    B=st.integers(1, 8192),
    final_frac=st.floats(0, 1),
    start_frac=st.floats(0, 1),
    warmup=st.sampled_from([(0, "W"), (1, "W"), (0, "W-1")]),
    cosine_denominator=st.sampled_from(["K-W", "K-W-1"]),
    rounding=st.sampled_from(["exact", "float32"]),
)
def test_lr_monotone_and_bounded(K, frac, base_lr, B, final_frac, start_frac, warmup, cosine_denominator, rounding):
    W = int(frac * K)
    peak = base_lr * B / 256
    offset, warmup_denominator = warmup
    kw = dict(base_lr=base_lr, batch_size=B, total_steps=K, warmup_steps=W,
              final_lr=final_frac * peak, warmup_start=start_frac * peak, warmup_offset=offset,
              warmup_denominator=warmup_denominator, cosine_denominator=cosine_denominator, lr_rounding=rounding)
    vals = [warmup_cosine_lr(k, **kw) for k in range(K + 3)]
    f32 = rounding == "float32" and W > 0  # every value is a float32: allow its half-ulps (three roundings)
    rel = 2e-7 if f32 else 1e-12
    # float32's spacing is 2^-149 below its normal range (1.2e-38): a smaller rate rounds to a
    # subnormal or to 0, as the official float32 schedule's does (three roundings of half a spacing)
    atol = 1.5 * 2.0**-149 if f32 else 1e-300
    tol = rel * peak + atol
    # Non-decreasing during warm-up, non-increasing after, and inside [min(start, final), peak].
    assert all(b >= a - tol for a, b in zip(vals[:W], vals[1:W]))
    assert all(b <= a + tol for a, b in zip(vals[W:], vals[W + 1:]))
    assert all(min(kw["warmup_start"], kw["final_lr"]) - tol <= v <= peak + tol for v in vals)
    final = float(np.float32(kw["final_lr"])) if f32 else kw["final_lr"]
    assert vals[K] == vals[K + 2] == final
    if cosine_denominator == "K-W-1" and W < K:
        assert vals[K - 1] == final
    if W < K - (cosine_denominator == "K-W-1"):
        assert vals[W] == pytest.approx(peak, rel=rel, abs=atol)
    if f32:
        assert all(v == float(np.float32(v)) for v in vals)  # each one a float32


# ---------------------------------------------------------------------------------------------
# tau
# ---------------------------------------------------------------------------------------------

def test_tau_official_values():
    assert target_tau(0, tau_base=0.996, total_steps=1000) == pytest.approx(0.996, abs=1e-15)
    assert target_tau(500, tau_base=0.996, total_steps=1000) == pytest.approx(0.998, abs=1e-15)
    assert target_tau(1000, tau_base=0.996, total_steps=1000) == 1.0
    assert target_tau(5000, tau_base=0.996, total_steps=1000) == 1.0
    # k = 250: 1 - 0.004 * (cos(pi/4) + 1)/2
    assert target_tau(250, tau_base=0.996, total_steps=1000) == pytest.approx(
        1 - 0.004 * (math.sqrt(0.5) + 1) / 2, abs=1e-15)
    assert isinstance(target_tau(3, tau_base=0.99, total_steps=10), float)


def test_tau_lightly_k_minus_1():
    K = 11
    assert target_tau(0, tau_base=0.99, total_steps=K, denominator="K-1") == pytest.approx(0.99, abs=1e-15)
    assert target_tau(5, tau_base=0.99, total_steps=K, denominator="K-1") == pytest.approx(0.995, abs=1e-15)
    assert target_tau(K - 1, tau_base=0.99, total_steps=K, denominator="K-1") == 1.0  # exactly 1 at K - 1
    assert target_tau(K + 4, tau_base=0.99, total_steps=K, denominator="K-1") == 1.0
    assert target_tau(0, tau_base=0.99, total_steps=1, denominator="K-1") == 1.0     # K = 1
    # the two denominators differ before the end
    assert target_tau(5, tau_base=0.99, total_steps=K) < target_tau(5, tau_base=0.99, total_steps=K,
                                                                      denominator="K-1")


def test_tau_constant_and_extremes():
    assert target_tau(123, tau_base=0.99, total_steps=10, schedule="constant") == 0.99
    assert target_tau(3, tau_base=1.0, total_steps=10) == 1.0
    assert target_tau(0, tau_base=0.0, total_steps=10) == 0.0


@pytest.mark.parametrize("kw, arg", [
    (dict(tau_base=1.5), "tau_base"),
    (dict(tau_base=-0.1), "tau_base"),
    (dict(total_steps=0), "total_steps"),
    (dict(schedule="linear"), "schedule"),
    (dict(denominator="K+1"), "denominator"),
    (dict(tau_base="0.99"), r"tau_base must be a real number in \[0.0, 1.0\], got '0.99'"),
    (dict(total_steps=True), r"total_steps must be an integer >= 1, got True"),
])
def test_tau_validation(kw, arg):
    base = dict(tau_base=0.99, total_steps=10)
    base.update(kw)
    with pytest.raises(ValueError, match=arg):
        target_tau(1, **base)
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, got -1$"):
        target_tau(-1, tau_base=0.99, total_steps=10)


@given(K=st.integers(1, 400), tau_base=st.floats(0, 1), denom=st.sampled_from(["K", "K-1"]))
def test_tau_monotone_bounded(K, tau_base, denom):
    vals = [target_tau(k, tau_base=tau_base, total_steps=K, denominator=denom) for k in range(K + 2)]
    assert all(b >= a - 1e-15 for a, b in zip(vals, vals[1:]))
    assert all(tau_base - 1e-15 <= v <= 1.0 for v in vals)
    end = K if denom == "K" else K - 1
    assert vals[end] == vals[K + 1] == 1.0
    if end > 0:
        assert vals[0] == pytest.approx(tau_base, abs=1e-15)


def test_lr_rounding_float32_refuses_a_final_lr_beyond_float32_at_every_step():
    """final_lr is a rate the float32 schedule returns (from k = K on), so it is checked up front with
    the peak and warmup_start, not found at the first cosine step as struct's OverflowError."""
    for k in (0, 2, 10):
        with pytest.raises(ValueError, match=r"final_lr 1e\+39 or warmup_start 0.0 exceeds float32's largest"):
            warmup_cosine_lr(k, base_lr=0.2, batch_size=256, total_steps=10, warmup_steps=3, final_lr=1e39,
                             lr_rounding="float32")


def test_the_overflow_checks_refuse_exactly_what_overflows():
    """The two guards at their edges. lr_rounding="float32" takes float32's largest value as a peak and
    refuses the next double up (struct could not round it: OverflowError); the warm-up guard refuses a
    (peak - warmup_start) * W that overflows, and takes one that does not however large peak and
    warmup_start are. Found by scripts/mutation_sweep.py: float32's largest value doubled, or the guard
    on (peak + warmup_start), passed every test."""
    f32_max = float(np.finfo(np.float32).max)
    one = dict(batch_size=1, batch_scale=1, total_steps=10, warmup_steps=4)
    for k in (0, 2, 4, 9):
        assert warmup_cosine_lr(k, base_lr=f32_max, lr_rounding="float32", **one) <= f32_max
        with pytest.raises(ValueError, match="exceeds float32's largest value 3.403e"):
            warmup_cosine_lr(k, base_lr=math.nextafter(f32_max, math.inf), lr_rounding="float32", **one)
    # warm-up from 1e308 to 1e308: (peak - warmup_start) * W = 0, a constant rate however large
    assert [warmup_cosine_lr(k, base_lr=1e308, warmup_start=1e308, **one) for k in range(4)] == [1e308] * 4
    half = 0.6 * np.finfo(np.float64).max
    assert warmup_cosine_lr(0, base_lr=half, **{**one, "warmup_steps": 1}) == 0.0  # (half * 1 is finite)
    with pytest.raises(ValueError, match=r"overflow in the warm-up \(\(peak - warmup_start\) \* warmup_steps=2\)"):
        warmup_cosine_lr(0, base_lr=half, **{**one, "warmup_steps": 2})


def test_lr_refuses_a_peak_rate_that_is_not_finite():
    """base_lr * batch_size / batch_scale overflowed to inf (or the warm-up to nan) without a word."""
    with pytest.raises(ValueError, match=r"the peak learning rate base_lr \* batch_size / batch_scale = "
                                         r"1e\+308 \* 8 / 256 = inf is not finite"):
        warmup_cosine_lr(5, base_lr=1e308, batch_size=8, total_steps=10, warmup_steps=2)
    # A finite peak whose warm-up product (peak - warmup_start) * W overflows is refused at every step too.
    for k in (0, 15000):
        with pytest.raises(ValueError, match=r"= 1e\+305 and warmup_start=0.0 overflow in the warm-up"):
            warmup_cosine_lr(k, base_lr=1e305, batch_size=256, total_steps=20000, warmup_steps=10000)
    # Huge but representable schedules still work, and every value is finite.
    for k in (0, 5, 9, 10, 50, 100):
        assert math.isfinite(lr(k, base_lr=1e300))
